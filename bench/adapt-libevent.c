/* SPDX-License-Identifier: MIT */
/* libevent 2.1: an event_base (pthreads locking, precise timers) on its
 * own thread.  event_active coalesces, so a post is an MPSC push followed
 * by event_active on one user event; its callback drains the queue.
 * Timers are evtimers (us resolution); libevent has no thread pool. */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/thread.h>

#include "bench.h"

typedef struct evl {
    struct event_base *base;
    struct event post_ev;
    mpsc q;
    pthread_t thr;
    bool stop;
    int64_t batch_now; /* timers: now at the start of a batch */
} evl;

static void evl_post_cb(evutil_socket_t fd, short what, void *arg)
{
    evl *l = arg;

    (void)fd;
    (void)what;
    mpsc_run(&l->q);
    if (l->stop) {
        event_base_loopbreak(l->base);
    }
}

static void *evl_main(void *opaque)
{
    evl *l = opaque;

    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void evl_threads_init(void)
{
    if (evthread_use_pthreads() < 0) {
        die("evthread_use_pthreads");
    }
}

static void *evl_create(const bimpl *impl)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct event_config *c;
    evl *l = xcalloc(1, sizeof(*l));

    (void)impl;
    pthread_once(&once, evl_threads_init);
    c = event_config_new();
    event_config_set_flag(c, EVENT_BASE_FLAG_PRECISE_TIMER);
    l->base = event_base_new_with_config(c);
    event_config_free(c);
    if (!l->base) {
        free(l);
        return NULL;
    }
    event_assign(&l->post_ev, l->base, -1, 0, evl_post_cb, l);
    if (pthread_create(&l->thr, NULL, evl_main, l) != 0) {
        die("pthread_create");
    }
    return l;
}

static void evl_post(void *loop, bnode *n)
{
    evl *l = loop;

    /* Only the post that finds the queue empty activates the event: the
     * callback takes everything queued by then (event_active() takes the
     * base's lock, which a post per item would pay for nothing). */
    if (mpsc_push(&l->q, n)) {
        event_active(&l->post_ev, EV_READ, 0);
    }
}

static void evl_stop_cb(void *arg)
{
    evl *l = arg;

    l->stop = true;
}

static void evl_destroy(void *loop)
{
    evl *l = loop;
    bnode stop = { .fn = evl_stop_cb, .arg = l };

    evl_post(l, &stop);
    pthread_join(l->thr, NULL);
    event_base_free(l->base);
    free(l);
}

/* ---- timers ---- */

typedef struct evt {
    struct event ev;
    bench_cb *fn;
    void *arg;
} evt;

static void evt_cb(evutil_socket_t fd, short what, void *arg)
{
    evt *t = arg;

    (void)fd;
    (void)what;
    t->fn(t->arg);
}

static void evl_timer_batch_begin(void *loop)
{
    evl *l = loop;

    event_base_update_cache_time(l->base);
    l->batch_now = now_ns();
}

static void *evl_timer_new(void *loop, bench_cb *fn, void *arg)
{
    evl *l = loop;
    evt *t = xcalloc(1, sizeof(*t));

    evtimer_assign(&t->ev, l->base, evt_cb, t);
    t->fn = fn;
    t->arg = arg;
    return t;
}

static void evl_timer_arm(void *loop, void *t_, int64_t deadline_ns)
{
    evl *l = loop;
    evt *t = t_;
    int64_t rel = deadline_ns - l->batch_now;
    struct timeval tv;

    if (rel < 0) {
        rel = 0;
    }
    rel = (rel + 999) / 1000; /* us, rounded up */
    tv.tv_sec = rel / 1000000;
    tv.tv_usec = rel % 1000000;
    evtimer_add(&t->ev, &tv);
}

static void evl_timer_cancel(void *loop, void *t_)
{
    evt *t = t_;

    (void)loop;
    evtimer_del(&t->ev);
}

static void evl_timer_free(void *loop, void *t_)
{
    evt *t = t_;

    (void)loop;
    evtimer_del(&t->ev);
    free(t);
}

/* ---- fd watch ---- */

typedef struct evw {
    struct event ev;
    bench_cb *cb;
    void *arg;
} evw;

static void evw_cb(evutil_socket_t fd, short what, void *arg)
{
    evw *w = arg;

    (void)fd;
    (void)what;
    w->cb(w->arg);
}

static void *evl_fd_watch(void *loop, int fd, unsigned flags, bench_cb *cb,
                          void *arg)
{
    evl *l = loop;
    evw *w = xcalloc(1, sizeof(*w));

    (void)flags;
    w->cb = cb;
    w->arg = arg;
    event_assign(&w->ev, l->base, fd, EV_READ | EV_PERSIST, evw_cb, w);
    event_add(&w->ev, NULL);
    return w;
}

static void evl_fd_unwatch(void *loop, void *w_)
{
    evw *w = w_;

    (void)loop;
    event_del(&w->ev);
    free(w);
}

static void evl_describe(void *loop, char *buf, size_t len)
{
    evl *l = loop;

    snprintf(buf, len, "libevent %s, method %s, event_active + MPSC queue",
             event_get_version(), event_base_get_method(l->base));
}

const bimpl bench_libevent = {
    .name = "libevent",
    .create = evl_create,
    .destroy = evl_destroy,
    .post = evl_post,
    .timer_batch_begin = evl_timer_batch_begin,
    .timer_new = evl_timer_new,
    .timer_arm = evl_timer_arm,
    .timer_cancel = evl_timer_cancel,
    .timer_free = evl_timer_free,
    .fd_watch = evl_fd_watch,
    .fd_unwatch = evl_fd_unwatch,
    .describe = evl_describe,
};
