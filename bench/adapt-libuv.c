/* SPDX-License-Identifier: MIT */
/* libuv: a uv_loop_t on its own thread.  uv_async_send coalesces, so a
 * post is an MPSC push followed by uv_async_send (as a real user would
 * write it); the async callback drains the queue.  Timers are uv_timer_t
 * (ms resolution), the pool is uv_queue_work, fd watches are uv_poll_t. */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "bench.h"

typedef struct uvl {
    uv_loop_t loop;
    uv_async_t async;
    mpsc q;
    pthread_t thr;
    sem_t ready;
    bool stop;
} uvl;

static void uvl_async_cb(uv_async_t *a)
{
    uvl *l = a->data;

    mpsc_run(&l->q);
    if (l->stop) {
        uv_stop(&l->loop);
    }
}

static void uvl_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void *uvl_main(void *opaque)
{
    uvl *l = opaque;

    sem_post(&l->ready);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    uv_walk(&l->loop, uvl_close_walk, NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&l->loop) != 0) {
        fprintf(stderr, "uv_loop_close: busy\n");
    }
    return NULL;
}

static void *uvl_create(const bimpl *impl)
{
    uvl *l = xcalloc(1, sizeof(*l));

    (void)impl;
    if (uv_loop_init(&l->loop) != 0 ||
        uv_async_init(&l->loop, &l->async, uvl_async_cb) != 0) {
        free(l);
        return NULL;
    }
    l->async.data = l;
    sem_init(&l->ready, 0, 0);
    if (pthread_create(&l->thr, NULL, uvl_main, l) != 0) {
        die("pthread_create");
    }
    sem_wait(&l->ready);
    return l;
}

static void uvl_post(void *loop, bnode *n)
{
    uvl *l = loop;

    /* Only the post that finds the queue empty sends: the async callback
     * takes everything queued by then (as libevent's adapter does). */
    if (mpsc_push(&l->q, n)) {
        uv_async_send(&l->async);
    }
}

static void uvl_stop_cb(void *arg)
{
    uvl *l = arg;

    l->stop = true;
}

static void uvl_destroy(void *loop)
{
    uvl *l = loop;
    bnode stop = { .fn = uvl_stop_cb, .arg = l };

    uvl_post(l, &stop);
    pthread_join(l->thr, NULL);
    sem_destroy(&l->ready);
    free(l);
}

/* ---- timers ---- */

typedef struct uvt {
    uv_timer_t t;
    bench_cb *fn;
    void *arg;
} uvt;

static void uvt_cb(uv_timer_t *h)
{
    uvt *t = h->data;

    t->fn(t->arg);
}

static void uvl_timer_batch_begin(void *loop)
{
    uvl *l = loop;

    uv_update_time(&l->loop);
}

static void *uvl_timer_new(void *loop, bench_cb *fn, void *arg)
{
    uvl *l = loop;
    uvt *t = xcalloc(1, sizeof(*t));

    uv_timer_init(&l->loop, &t->t);
    t->t.data = t;
    t->fn = fn;
    t->arg = arg;
    return t;
}

static void uvl_timer_arm(void *loop, void *t_, int64_t deadline_ns)
{
    uvl *l = loop;
    uvt *t = t_;
    /* Relative to the loop's cached ms clock, rounded up: never early. */
    int64_t rel = deadline_ns - (int64_t)uv_now(&l->loop) * 1000000;
    uint64_t ms = rel > 0 ? (uint64_t)(rel + 999999) / 1000000 : 0;

    uv_timer_start(&t->t, uvt_cb, ms, 0);
}

static void uvl_timer_cancel(void *loop, void *t_)
{
    uvt *t = t_;

    (void)loop;
    uv_timer_stop(&t->t);
}

static void uvt_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void uvl_timer_free(void *loop, void *t_)
{
    uvt *t = t_;

    (void)loop;
    uv_close((uv_handle_t *)&t->t, uvt_free_cb);
}

/* ---- pool ---- */

typedef struct uvw {
    uv_work_t req;
    bwork *w;
} uvw;

static void uvw_work(uv_work_t *req)
{
    uvw *u = req->data;

    if (u->w->work) {
        u->w->work(u->w->arg);
    }
}

static void uvw_after(uv_work_t *req, int status)
{
    uvw *u = req->data;
    bwork *w = u->w;

    (void)status;
    free(u);
    w->done(w->arg);
}

static int uvl_pool_submit(void *loop, bwork *w)
{
    uvl *l = loop;
    uvw *u = malloc(sizeof(*u));

    if (!u) {
        return -1;
    }
    u->req.data = u;
    u->w = w;
    return uv_queue_work(&l->loop, &u->req, uvw_work, uvw_after) == 0 ? 0 : -1;
}

/* ---- fd watch ---- */

typedef struct uvp {
    uv_poll_t p;
    bench_cb *cb;
    void *arg;
} uvp;

static void uvp_cb(uv_poll_t *h, int status, int events)
{
    uvp *p = h->data;

    (void)status;
    (void)events;
    p->cb(p->arg);
}

static void *uvl_fd_watch(void *loop, int fd, unsigned flags, bench_cb *cb,
                          void *arg)
{
    uvl *l = loop;
    uvp *p = xcalloc(1, sizeof(*p));

    (void)flags;
    if (uv_poll_init(&l->loop, &p->p, fd) != 0) {
        die("uv_poll_init");
    }
    p->p.data = p;
    p->cb = cb;
    p->arg = arg;
    uv_poll_start(&p->p, UV_READABLE, uvp_cb);
    return p;
}

static void uvl_fd_unwatch(void *loop, void *w)
{
    uvp *p = w;

    (void)loop;
    uv_poll_stop(&p->p);
    uv_close((uv_handle_t *)&p->p, uvt_free_cb);
}

static void uvl_describe(void *loop, char *buf, size_t len)
{
    (void)loop;
    snprintf(buf, len, "libuv %s, uv_async_send + MPSC queue",
             uv_version_string());
}

const bimpl bench_libuv = {
    .name = "libuv",
    .create = uvl_create,
    .destroy = uvl_destroy,
    .post = uvl_post,
    .timer_batch_begin = uvl_timer_batch_begin,
    .timer_new = uvl_timer_new,
    .timer_arm = uvl_timer_arm,
    .timer_cancel = uvl_timer_cancel,
    .timer_free = uvl_timer_free,
    .pool_submit = uvl_pool_submit,
    .fd_watch = uvl_fd_watch,
    .fd_unwatch = uvl_fd_unwatch,
    .describe = uvl_describe,
};
