/* SPDX-License-Identifier: MIT */
/* libiothread: an IOThread (default properties, or poll-max-ns=param).
 * Posts are one-shot BHs; the reusable handle is a BH; timers, the pool
 * and fd handlers are the library's own.  The backend follows
 * IOTHREAD_FDMON (main.c sets it from --fdmon). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include <iothread/all.h>

#include "bench.h"

/* Read by every post: on a line of its own, or a neighbouring allocation
 * that the loop thread writes costs the poster a miss per post. */
typedef struct iotl {
    _Alignas(64) IotThread *t;
    IotCtx *ctx;
} iotl;

static void *iot_create(const bimpl *impl)
{
    static atomic_uint seq;
    IotThreadProps *props = iot_thread_props_new();
    IotError *err = NULL;
    iotl *l = aligned_alloc(_Alignof(iotl), sizeof(iotl));
    char id[32];

    if (!props || !l) {
        die("iot_thread_props_new");
    }
    if (impl->param >= 0 &&
        iot_thread_props_set_int(props, "poll-max-ns", impl->param, &err) < 0) {
        die("poll-max-ns: %s", iot_error_message(err));
    }
    snprintf(id, sizeof(id), "bench%u", atomic_fetch_add(&seq, 1));
    l->t = iot_thread_new(id, props, &err);
    iot_thread_props_free(props);
    if (!l->t) {
        fprintf(stderr, "iot_thread_new: %s\n", iot_error_message(err));
        iot_error_free(err);
        free(l);
        return NULL;
    }
    l->ctx = iot_thread_ctx(l->t);
    return l;
}

static void iot_destroy(void *loop)
{
    iotl *l = loop;
    IotError *err = NULL;

    if (iot_thread_destroy(l->t, &err) < 0) {
        die("iot_thread_destroy: %s", iot_error_message(err));
    }
    free(l);
}

/* Runs a posted node on the loop.  The loop reads the node, as with every
 * other implementation (libuv's and libevent's queues link it, GLib's
 * invoke passes it): the poster touches no line of it. */
static void iot_run_node(void *opaque)
{
    bnode *n = opaque;

    n->fn(n->arg);
}

static void iot_post(void *loop, bnode *n)
{
    iotl *l = loop;

    if (iot_bh_schedule_oneshot(l->ctx, iot_run_node, n) < 0) {
        die("iot_bh_schedule_oneshot: out of memory");
    }
}

static void *iot_handle_new(void *loop, bench_cb *fn, void *arg)
{
    iotl *l = loop;

    return iot_bh_new(l->ctx, fn, arg);
}

static void iot_handle_post(void *h)
{
    iot_bh_schedule(h);
}

static void iot_handle_free(void *h)
{
    iot_bh_delete(h);
}

static void *iot_timer_new_(void *loop, bench_cb *fn, void *arg)
{
    iotl *l = loop;

    return iot_timer_new(l->ctx, IOT_CLOCK_MONOTONIC, fn, arg);
}

static void iot_timer_arm(void *loop, void *t, int64_t deadline_ns)
{
    (void)loop;
    iot_timer_mod(t, deadline_ns);
}

static void iot_timer_cancel(void *loop, void *t)
{
    (void)loop;
    iot_timer_del(t);
}

static void iot_timer_free_(void *loop, void *t)
{
    (void)loop;
    iot_timer_free(t);
}

static int iot_work(void *arg)
{
    bwork *w = arg;

    if (w->work) {
        w->work(w->arg);
    }
    return 0;
}

static void iot_work_done(void *opaque, int ret)
{
    bwork *w = opaque;

    (void)ret;
    w->done(w->arg);
}

static int iot_pool_submit_(void *loop, bwork *w)
{
    iotl *l = loop;

    return iot_pool_submit(l->ctx, iot_work, w, iot_work_done, w) ? 0 : -1;
}

typedef struct iotw {
    int fd;
    bench_cb *cb;
    void *arg;
} iotw;

static void iot_fd_read(void *opaque)
{
    iotw *w = opaque;

    w->cb(w->arg);
}

/* io_poll for a pipe: readable bytes, one ioctl, no side effect. */
static bool iot_fd_poll(void *opaque)
{
    iotw *w = opaque;
    int n = 0;

    return ioctl(w->fd, FIONREAD, &n) == 0 && n > 0;
}

static void *iot_fd_watch(void *loop, int fd, unsigned flags, bench_cb *cb,
                          void *arg)
{
    iotl *l = loop;
    iotw *w = xcalloc(1, sizeof(*w));
    bool iopoll = flags & BFD_IOPOLL;

    *w = (iotw){ fd, cb, arg };
    if (iot_fd_set_handler(l->ctx, fd, iot_fd_read, NULL,
                           iopoll ? iot_fd_poll : NULL,
                           iopoll ? iot_fd_read : NULL, w) < 0) {
        die("iot_fd_set_handler");
    }
    return w;
}

static void iot_fd_unwatch(void *loop, void *w_)
{
    iotl *l = loop;
    iotw *w = w_;

    iot_fd_set_handler(l->ctx, w->fd, NULL, NULL, NULL, NULL, NULL);
    free(w);
}

static void iot_describe(void *loop, char *buf, size_t len)
{
    iotl *l = loop;
    int64_t max_ns = -1;

    iot_thread_get_int(l->t, "poll-max-ns", &max_ns, NULL);
    snprintf(buf, len, "libiothread %d.%d.%d, backend %s, poll-max-ns %lld",
             IOT_VERSION_MAJOR, IOT_VERSION_MINOR, IOT_VERSION_PATCH,
             iot_ctx_fdmon_name(l->ctx), (long long)max_ns);
}

#define IOT_IMPL(NAME, PARAM)                                                  \
    {                                                                          \
        .name = NAME, .param = PARAM, .create = iot_create,                    \
        .destroy = iot_destroy, .post = iot_post,                              \
        .handle_new = iot_handle_new, .handle_post = iot_handle_post,          \
        .handle_free = iot_handle_free, .timer_new = iot_timer_new_,           \
        .timer_arm = iot_timer_arm, .timer_cancel = iot_timer_cancel,          \
        .timer_free = iot_timer_free_, .pool_submit = iot_pool_submit_,        \
        .fd_watch = iot_fd_watch, .fd_unwatch = iot_fd_unwatch,                \
        .describe = iot_describe,                                              \
    }

const bimpl bench_iothread = IOT_IMPL("iothread", -1);
const bimpl bench_iothread_nopoll = IOT_IMPL("iothread-nopoll", 0);
