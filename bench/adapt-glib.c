/* SPDX-License-Identifier: MIT */
/* GLib: a GMainLoop on its own GMainContext and thread.  A post is
 * g_main_context_invoke (an idle source per call: no coalescing, so no
 * queue in front).  Timers are g_timeout_source_new (ms), the pool is a
 * GThreadPool of 4 threads (libuv's default) completing through
 * g_main_context_invoke, fd watches are g_unix_fd_source_new. */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include <glib-unix.h>
#include <glib.h>

#include "bench.h"

typedef struct gll {
    GMainContext *ctx;
    GMainLoop *loop;
    GThreadPool *pool;
    pthread_t thr;
    sem_t ready;
    int64_t batch_now;
} gll;

static void *gll_main(void *opaque)
{
    gll *l = opaque;

    g_main_context_push_thread_default(l->ctx);
    sem_post(&l->ready);
    g_main_loop_run(l->loop);
    g_main_context_pop_thread_default(l->ctx);
    return NULL;
}

static void *gll_create(const bimpl *impl)
{
    gll *l = xcalloc(1, sizeof(*l));

    (void)impl;
    l->ctx = g_main_context_new();
    l->loop = g_main_loop_new(l->ctx, FALSE);
    sem_init(&l->ready, 0, 0);
    if (pthread_create(&l->thr, NULL, gll_main, l) != 0) {
        die("pthread_create");
    }
    sem_wait(&l->ready);
    return l;
}

static gboolean gll_tramp(gpointer data)
{
    bnode *n = data;

    n->fn(n->arg);
    return G_SOURCE_REMOVE;
}

static void gll_post(void *loop, bnode *n)
{
    gll *l = loop;

    g_main_context_invoke(l->ctx, gll_tramp, n);
}

static void gll_stop_cb(void *arg)
{
    gll *l = arg;

    g_main_loop_quit(l->loop);
}

static void gll_destroy(void *loop)
{
    gll *l = loop;
    bnode stop = { .fn = gll_stop_cb, .arg = l };

    gll_post(l, &stop);
    pthread_join(l->thr, NULL);
    if (l->pool) {
        g_thread_pool_free(l->pool, FALSE, TRUE);
    }
    g_main_loop_unref(l->loop);
    g_main_context_unref(l->ctx);
    sem_destroy(&l->ready);
    free(l);
}

/* ---- timers ---- */

typedef struct glt {
    GSource *src;
    bench_cb *fn;
    void *arg;
} glt;

static gboolean glt_cb(gpointer data)
{
    glt *t = data;

    t->fn(t->arg);
    return G_SOURCE_REMOVE;
}

static void gll_timer_batch_begin(void *loop)
{
    gll *l = loop;

    l->batch_now = now_ns();
}

static void *gll_timer_new(void *loop, bench_cb *fn, void *arg)
{
    glt *t = xcalloc(1, sizeof(*t));

    (void)loop;
    t->fn = fn;
    t->arg = arg;
    return t;
}

static void glt_drop(glt *t)
{
    if (t->src) {
        g_source_destroy(t->src);
        g_source_unref(t->src);
        t->src = NULL;
    }
}

static void gll_timer_arm(void *loop, void *t_, int64_t deadline_ns)
{
    gll *l = loop;
    glt *t = t_;
    int64_t rel = deadline_ns - l->batch_now;
    guint ms = rel > 0 ? (guint)((rel + 999999) / 1000000) : 0;

    glt_drop(t);
    t->src = g_timeout_source_new(ms);
    g_source_set_callback(t->src, glt_cb, t, NULL);
    g_source_attach(t->src, l->ctx);
}

static void gll_timer_cancel(void *loop, void *t)
{
    (void)loop;
    glt_drop(t);
}

static void gll_timer_free(void *loop, void *t)
{
    (void)loop;
    glt_drop(t);
    free(t);
}

/* ---- pool ---- */

static gboolean gll_work_done(gpointer data)
{
    bwork *w = data;

    w->done(w->arg);
    return G_SOURCE_REMOVE;
}

static void gll_worker(gpointer data, gpointer user_data)
{
    bwork *w = data;
    gll *l = user_data;

    if (w->work) {
        w->work(w->arg);
    }
    g_main_context_invoke(l->ctx, gll_work_done, w);
}

static int gll_pool_submit(void *loop, bwork *w)
{
    gll *l = loop;

    if (!l->pool) {
        l->pool = g_thread_pool_new(gll_worker, l, 4, FALSE, NULL);
        if (!l->pool) {
            return -1;
        }
    }
    return g_thread_pool_push(l->pool, w, NULL) ? 0 : -1;
}

/* ---- fd watch ---- */

typedef struct glw {
    GSource *src;
    bench_cb *cb;
    void *arg;
} glw;

static gboolean glw_cb(gint fd, GIOCondition cond, gpointer data)
{
    glw *w = data;

    (void)fd;
    (void)cond;
    w->cb(w->arg);
    return G_SOURCE_CONTINUE;
}

static void *gll_fd_watch(void *loop, int fd, unsigned flags, bench_cb *cb,
                          void *arg)
{
    gll *l = loop;
    glw *w = xcalloc(1, sizeof(*w));

    (void)flags;
    w->cb = cb;
    w->arg = arg;
    w->src = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(w->src, G_SOURCE_FUNC(glw_cb), w, NULL);
    g_source_attach(w->src, l->ctx);
    return w;
}

static void gll_fd_unwatch(void *loop, void *w_)
{
    glw *w = w_;

    (void)loop;
    g_source_destroy(w->src);
    g_source_unref(w->src);
    free(w);
}

static void gll_describe(void *loop, char *buf, size_t len)
{
    (void)loop;
    snprintf(buf, len, "GLib %u.%u.%u, g_main_context_invoke",
             glib_major_version, glib_minor_version, glib_micro_version);
}

const bimpl bench_glib = {
    .name = "glib",
    .create = gll_create,
    .destroy = gll_destroy,
    .post = gll_post,
    .timer_batch_begin = gll_timer_batch_begin,
    .timer_new = gll_timer_new,
    .timer_arm = gll_timer_arm,
    .timer_cancel = gll_timer_cancel,
    .timer_free = gll_timer_free,
    .pool_submit = gll_pool_submit,
    .fd_watch = gll_fd_watch,
    .fd_unwatch = gll_fd_unwatch,
    .describe = gll_describe,
};
