/* SPDX-License-Identifier: MIT */
/*
 * The per-context thread pool (section 5 of the specification).
 *
 * Work flows one way: the home thread queues it (under the pool mutex), a
 * worker pops it (under the mutex), runs it and pushes it on a lock-free
 * done list without taking the mutex again, and the done BH moves it to a
 * home-thread FIFO and runs its completion.  One lock per item on each
 * side; a cancel needs the lock only while the work is still queued.
 *
 *                  queue (lock)   done list (CAS)   done FIFO   counters
 * home thread      push, cancel   take              yes         lock
 * workers          pop            push              no          atomic
 *
 * New workers are started from a BH on the home thread, so they inherit
 * its CPU affinity and no lock is held while a thread is created.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iothread/pool.h>

#include "ctx-internal.h"

enum { WORK_QUEUED, WORK_ACTIVE, WORK_DONE };

struct IotWork {
    IotPool *pool;         /* [const] */
    IotWorkFunc *func;     /* [const] */
    void *arg;             /* [const] */
    IotWorkDoneFunc *done; /* [const] */
    void *opaque;          /* [const] */
    /* WORK_*: QUEUED -> ACTIVE (a worker's pop) and QUEUED -> DONE (a
     * cancel) under the pool lock; ACTIVE -> DONE by the worker alone. */
    atomic_int state;
    int ret; /* [the worker, or a cancel under the lock; then home] */
    IotWork *qprev, *qnext; /* [pool lock] the request queue */
    IotWork *dnext;         /* done list, then the home FIFO */
};

struct IotPool {
    IotCtx *ctx;
    pthread_mutex_t lock;
    pthread_cond_t request_cond;  /* [lock] work queued, or resize/stop */
    pthread_cond_t stopped_cond;  /* [lock] a worker exited */
    IotWork *qhead, *qtail;       /* [lock] FIFO of QUEUED work */
    unsigned cur;                 /* [lock] workers alive or being started */
    unsigned idle;                /* [lock] workers waiting for work */
    unsigned backlog;             /* [lock] workers still to start */
    unsigned queued;              /* [lock] */
    atomic_uint active;           /* [lock increments; the worker decrements] */
    int64_t min, max;             /* [lock] */
    bool stopping;                /* [lock] */
    IotBh *spawn_bh;              /* [const] starts the backlog */
    IotBh *done_bh;               /* [const] runs completions */
    _Atomic(IotWork *) done_list; /* [any pushes, home takes] LIFO */
    IotWork *fifo_head, *fifo_tail; /* [home] completions to run */
    long outstanding;               /* [home] submitted, not completed */
};

/* The pool whose worker the calling thread is, or NULL. */
static __thread IotPool *tls_worker_pool;

bool iot__pool_is_worker_of(IotCtx *ctx)
{
    return tls_worker_pool && tls_worker_pool->ctx == ctx;
}

/* Tests shorten the idle timeout; 10 s as in QEMU otherwise. */
int64_t iot__pool_idle_ns = 10 * IOT_NS_PER_S;

static IotPool *ctx_pool(IotCtx *ctx)
{
    /* Acquire pairs with the release in pool_get(). */
    return atomic_load_explicit(&ctx->pool, memory_order_acquire);
}

/* ---- workers ---- */

/* Lock held.  Unlinks @w from the request queue. */
static void queue_unlink(IotPool *p, IotWork *w)
{
    if (w->qprev) {
        w->qprev->qnext = w->qnext;
    } else {
        p->qhead = w->qnext;
    }
    if (w->qnext) {
        w->qnext->qprev = w->qprev;
    } else {
        p->qtail = w->qprev;
    }
    w->qprev = w->qnext = NULL;
    p->queued--;
}

/* Any thread.  Hands finished (or cancelled) work to the home thread. */
static void work_complete(IotPool *p, IotWork *w)
{
    IotWork *head = atomic_load_explicit(&p->done_list, memory_order_relaxed);

    do {
        w->dnext = head;
        /* Release pairs with the acquire exchange in pool_done_bh(): the
         * home thread sees w->ret and w->dnext. */
    } while (!atomic_compare_exchange_weak_explicit(
        &p->done_list, &head, w, memory_order_release, memory_order_relaxed));
    iot_bh_schedule(p->done_bh);
}

static void deadline_after(struct timespec *ts, int64_t ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ns += ts->tv_nsec;
    ts->tv_sec += ns / IOT_NS_PER_S;
    ts->tv_nsec = ns % IOT_NS_PER_S;
}

/* Lock held.  Waits for work; false if this worker should exit. */
static bool worker_wait(IotPool *p)
{
    while (!p->qhead) {
        struct timespec ts;
        int ret;

        if (p->stopping || p->cur > p->max) {
            return false;
        }
        deadline_after(&ts, iot__pool_idle_ns);
        p->idle++;
        ret = pthread_cond_timedwait(&p->request_cond, &p->lock, &ts);
        p->idle--;
        if (ret == ETIMEDOUT && !p->qhead && p->cur > p->min) {
            return false;
        }
    }
    return !p->stopping && p->cur <= p->max;
}

static void *worker_main(void *opaque)
{
    IotPool *p = opaque;

    pthread_setname_np(pthread_self(), "worker");
    tls_worker_pool = p;
    pthread_mutex_lock(&p->lock);
    while (worker_wait(p)) {
        IotWork *w = p->qhead;

        queue_unlink(p, w);
        atomic_store_explicit(&w->state, WORK_ACTIVE, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->active, 1, memory_order_relaxed);
        pthread_mutex_unlock(&p->lock);

        /* Only this worker touches active work: no lock until the next
         * pop.  work_complete() publishes ret to the home thread. */
        w->ret = w->func(w->arg);
        atomic_store_explicit(&w->state, WORK_DONE, memory_order_relaxed);
        atomic_fetch_sub_explicit(&p->active, 1, memory_order_relaxed);
        work_complete(p, w);
        pthread_mutex_lock(&p->lock);
    }
    p->cur--;
    pthread_cond_signal(&p->stopped_cond);
    /* This wake-up may have been meant for a worker that stays. */
    pthread_cond_signal(&p->request_cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Lock held.  Asks for @n more workers, started by the spawn BH. */
static void spawn_locked(IotPool *p, unsigned n)
{
    if (!n) {
        return;
    }
    p->cur += n;
    p->backlog += n;
    iot_bh_schedule(p->spawn_bh);
}

/* Home thread.  Starts the backlog of workers. */
static void pool_spawn_bh(void *opaque)
{
    IotPool *p = opaque;
    pthread_attr_t attr;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&p->lock);
    while (p->backlog && !p->stopping) {
        pthread_t tid;
        int ret;

        p->backlog--;
        pthread_mutex_unlock(&p->lock);
        ret = pthread_create(&tid, &attr, worker_main, p);
        pthread_mutex_lock(&p->lock);
        if (ret != 0) {
            /* No thread: give up the slot.  Queued work waits for a later
             * submit to try again, unless nobody is left to run it. */
            p->cur--;
            if (p->cur == 0) {
                fprintf(stderr,
                        "libiothread: cannot start a pool worker: "
                        "%s\n",
                        strerror(ret));
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
    pthread_attr_destroy(&attr);
}

/* Home thread.  Moves finished work from the done list to the FIFO. */
static void pool_take_done(IotPool *p)
{
    IotWork *w, *fifo = NULL;

    /* Acquire pairs with the release in work_complete(). */
    w = atomic_exchange_explicit(&p->done_list, NULL, memory_order_acquire);
    while (w) { /* reverse: oldest first */
        IotWork *next = w->dnext;
        w->dnext = fifo;
        fifo = w;
        w = next;
    }
    if (!fifo) {
        return;
    }
    if (p->fifo_tail) {
        p->fifo_tail->dnext = fifo;
    } else {
        p->fifo_head = fifo;
    }
    for (p->fifo_tail = fifo; p->fifo_tail->dnext;
         p->fifo_tail = p->fifo_tail->dnext) {
    }
}

/* Home thread.  Runs completions, oldest first. */
static void pool_done_bh(void *opaque)
{
    IotPool *p = opaque;
    IotWork *w;

    for (;;) {
        pool_take_done(p);
        w = p->fifo_head;
        if (!w) {
            break;
        }
        p->fifo_head = w->dnext;
        if (!p->fifo_head) {
            p->fifo_tail = NULL;
        } else {
            /* The completion may poll nested, waiting for one of these. */
            iot_bh_schedule(p->done_bh);
        }
        p->outstanding--;
        if (w->done) {
            w->done(w->opaque, w->ret);
        }
        free(w);
        /* Whatever the reschedule was for is handled by this loop; leave
         * no BH behind that would run for nothing (and count as progress).
         * The cancel synchronises with a worker's schedule (acq_rel in
         * iot_bh_cancel), so work pushed before that schedule is seen by
         * pool_take_done() at the top of the loop. */
        iot_bh_cancel(p->done_bh);
    }
}

/* ---- the pool ---- */

/* Idle timeouts are measured on the monotonic clock. */
static void cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* Home thread.  The pool, created on first use. */
static IotPool *pool_get(IotCtx *ctx)
{
    IotPool *p = ctx_pool(ctx);

    if (p) {
        return p;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        return NULL;
    }
    p->ctx = ctx;
    pthread_mutex_init(&p->lock, NULL);
    cond_init_monotonic(&p->request_cond);
    pthread_cond_init(&p->stopped_cond, NULL);
    p->spawn_bh = iot_bh_new_full(ctx, pool_spawn_bh, p, "pool-spawn");
    p->done_bh = iot_bh_new_full(ctx, pool_done_bh, p, "pool-done");
    if (!p->spawn_bh || !p->done_bh) {
        if (p->spawn_bh) {
            iot_bh_delete(p->spawn_bh);
        }
        if (p->done_bh) {
            iot_bh_delete(p->done_bh);
        }
        free(p);
        return NULL;
    }
    /* The sizes and the pointer change together under param_lock, so a
     * concurrent iot_ctx_set_pool_size() is applied here or to the pool. */
    pthread_mutex_lock(&ctx->param_lock);
    p->min = ctx->pool_min;
    p->max = ctx->pool_max;
    pthread_mutex_lock(&p->lock);
    spawn_locked(p, (unsigned)p->min);
    pthread_mutex_unlock(&p->lock);
    atomic_store_explicit(&ctx->pool, p, memory_order_release);
    pthread_mutex_unlock(&ctx->param_lock);
    return p;
}

IotWork *iot_pool_submit(IotCtx *ctx, IotWorkFunc *func, void *arg,
                         IotWorkDoneFunc *done, void *opaque)
{
    IotPool *p = pool_get(ctx);
    IotWork *w;

    if (!p || !(w = calloc(1, sizeof(*w)))) {
        return NULL;
    }
    *w = (IotWork){ .pool = p,
                    .func = func,
                    .arg = arg,
                    .done = done,
                    .opaque = opaque,
                    .state = WORK_QUEUED };
    p->outstanding++;

    pthread_mutex_lock(&p->lock);
    w->qprev = p->qtail;
    if (p->qtail) {
        p->qtail->qnext = w;
    } else {
        p->qhead = w;
    }
    p->qtail = w;
    p->queued++;
    /* Start a worker unless one is idle (or starting) for it. */
    if (p->idle + p->backlog < p->queued && p->cur < p->max) {
        spawn_locked(p, 1);
    }
    pthread_cond_signal(&p->request_cond);
    pthread_mutex_unlock(&p->lock);
    return w;
}

void iot_pool_cancel(IotWork *w)
{
    IotPool *p = w->pool;
    bool cancelled = false;

    pthread_mutex_lock(&p->lock);
    if (atomic_load_explicit(&w->state, memory_order_relaxed) == WORK_QUEUED) {
        queue_unlink(p, w);
        atomic_store_explicit(&w->state, WORK_DONE, memory_order_relaxed);
        w->ret = -ECANCELED;
        cancelled = true;
    }
    pthread_mutex_unlock(&p->lock);
    if (cancelled) {
        work_complete(p, w);
    }
}

/* Lock held.  Applies new sizes to a running pool. */
static void pool_resize_locked(IotPool *p, int64_t min, int64_t max)
{
    p->min = min;
    p->max = max;
    if ((int64_t)p->cur < min) {
        spawn_locked(p, (unsigned)(min - (int64_t)p->cur));
    }
    /* Surplus workers exit when they wake and see cur > max. */
    pthread_cond_broadcast(&p->request_cond);
}

int iot_ctx_set_pool_size(IotCtx *ctx, int64_t min, int64_t max)
{
    IotPool *p;

    if (min < 0 || max <= 0 || min > max || min > INT_MAX || max > INT_MAX) {
        return -EINVAL;
    }
    pthread_mutex_lock(&ctx->param_lock);
    ctx->pool_min = min;
    ctx->pool_max = max;
    p = ctx_pool(ctx);
    if (p) {
        pthread_mutex_lock(&p->lock);
        pool_resize_locked(p, min, max);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&ctx->param_lock);
    return 0;
}

void iot_ctx_get_pool_size(IotCtx *ctx, int64_t *min, int64_t *max)
{
    pthread_mutex_lock(&ctx->param_lock);
    if (min) {
        *min = ctx->pool_min;
    }
    if (max) {
        *max = ctx->pool_max;
    }
    pthread_mutex_unlock(&ctx->param_lock);
}

void iot_ctx_pool_stats(IotCtx *ctx, IotPoolStats *s)
{
    IotPool *p = ctx_pool(ctx);

    *s = (IotPoolStats){ 0 };
    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    s->threads = p->cur;
    s->idle = p->idle;
    s->queued = p->queued;
    s->active = atomic_load_explicit(&p->active, memory_order_relaxed);
    pthread_mutex_unlock(&p->lock);
}

/* Context finalize: no poll runs.  Waits for every worker to exit. */
void iot__pool_free(IotCtx *ctx)
{
    IotPool *p = ctx_pool(ctx);

    if (!p) {
        return;
    }
    if (p->outstanding) {
        fprintf(stderr,
                "%s: %ld thread pool requests still outstanding, "
                "aborting...\n",
                __func__, p->outstanding);
        abort();
    }
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    p->cur -= p->backlog; /* never started */
    p->backlog = 0;
    pthread_cond_broadcast(&p->request_cond);
    while (p->cur) {
        pthread_cond_wait(&p->stopped_cond, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    iot_bh_delete(p->spawn_bh);
    iot_bh_delete(p->done_bh);
    pthread_cond_destroy(&p->request_cond);
    pthread_cond_destroy(&p->stopped_cond);
    pthread_mutex_destroy(&p->lock);
    atomic_store(&ctx->pool, NULL);
    free(p);
}
