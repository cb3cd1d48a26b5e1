/* SPDX-License-Identifier: MIT */
/*
 * The io_uring backend (section 4.5 of the specification).
 *
 * Each handler is watched by a one-shot IORING_OP_POLL_ADD whose user data
 * is the handler; a completion makes it ready and re-arms it, which gives
 * level-triggered behaviour like poll and epoll (multishot polls are edge
 * triggered).  The ring is single-issuer: only the home thread prepares
 * SQEs.  Other threads queue changes on a list under the handler-list
 * mutex (update); the home thread turns them into SQEs before each wait.
 *
 * A removed handler stays allocated until the kernel has let go of it: its
 * POLL_REMOVE is queued, and only when its POLL_ADD completes (cancelled
 * or fired) does it go on the context's deleted list, to be freed when no
 * walker can see it.  The kernel sees the completion ring from user space,
 * so busy polling can watch every fd, including those without io_poll.
 *
 * Rings are reused.  Setting one up and tearing it down costs ~50 us here,
 * more than starting a thread, so a torn-down context's ring goes to a
 * small process-wide cache if nothing is in flight on it, and the next
 * context takes it from there.  Nothing is in flight once an IOThread has
 * quiesced its ring on its way out: it cancels every request and reaps the
 * completions itself, which the kernel posts on that thread's return to
 * user space (a cancel from any other thread would leave them to a kernel
 * worker, later).  fork() holds the cache's lock across, and the child
 * drops the rings it inherited.
 *
 *                  change list   SQ ring   CQ ring   iou_armed/removed
 * any thread       mutex         no        no        no
 * home thread      mutex         yes       yes       yes
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fdmon.h"

#ifdef IOT_HAVE_IO_URING

#include <liburing.h>

#define IOU_ENTRIES   128
#define IOU_CACHE_MAX 4 /* idle rings kept for reuse */
#define IOU_ADD       1u
#define IOU_REMOVE    2u

typedef struct IouState {
    struct io_uring ring;     /* [home] */
    unsigned queued;          /* [home] SQEs since the last submit */
    unsigned inflight;        /* [home] SQEs whose completion is not reaped */
    unsigned long submits;    /* [home] batch submissions (for tests) */
    IotHandler *changes;      /* [list] handlers with iou_ops */
    atomic_bool have_changes; /* [list writes, home reads] */
    IotHandler *rearm;        /* [home] completed polls to re-arm */
    IotHandler *retry; /* [home] refused polls, armed at ctx->fdmon_retry_at */
    unsigned long gen; /* [const] cache_gen when the ring was made */
} IouState;

static IouState *iou(IotCtx *ctx)
{
    return ctx->iou;
}

/* Mutex held.  Queues @h for the home thread with @op. */
static void change_queue(IotCtx *ctx, IotHandler *h, unsigned op)
{
    IouState *s = iou(ctx);

    if (!h->iou_ops) {
        h->iou_next = s->changes;
        s->changes = h;
    }
    h->iou_ops |= op;
    atomic_store_explicit(&s->have_changes, true, memory_order_release);
}

static void iou_update(IotCtx *ctx, IotHandler *old, IotHandler *new_)
{
    if (new_ && new_->events) {
        change_queue(ctx, new_, IOU_ADD);
    }
    if (old) {
        change_queue(ctx, old, IOU_REMOVE);
    }
}

/* The backend frees every retired handler itself (deleted_push). */
static bool iou_retire(IotCtx *ctx, IotHandler *h)
{
    (void)ctx;
    (void)h;
    return true;
}

/* Mutex held.  Hands @h to the generic deferred free. */
static void deleted_push(IotCtx *ctx, IotHandler *h)
{
    h->deleted_next = ctx->deleted;
    ctx->deleted = h;
    atomic_store_explicit(&ctx->deleted_pending, true, memory_order_relaxed);
}

/* Home thread.  Hands the queued SQEs to the kernel. */
static void submit(IouState *s)
{
    int ret = io_uring_submit(&s->ring);

    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        fprintf(stderr, "libiothread: io_uring_submit: %s\n", strerror(-ret));
        abort();
    }
    s->queued = 0;
}

/* Home thread.  A free SQE.  aio-max-batch limits how many requests one
 * io_uring_enter() submits (0: the ring's size, IOU_ENTRIES): reaching it
 * submits at once, as a full ring does. */
static struct io_uring_sqe *sqe_get(IotCtx *ctx)
{
    IouState *s = iou(ctx);
    int64_t batch = iot_ctx_get_max_batch(ctx);
    struct io_uring_sqe *sqe;

    if (batch > 0 && s->queued >= (uint64_t)batch) {
        submit(s);
        s->submits++;
    }
    while (!(sqe = io_uring_get_sqe(&s->ring))) {
        submit(s);
    }
    s->queued++;
    return sqe;
}

int iot__io_uring_poll_fail;

static void arm(IotCtx *ctx, IotHandler *h)
{
    struct io_uring_sqe *sqe = sqe_get(ctx);

    io_uring_prep_poll_add(sqe, h->fd, (unsigned)h->events);
    if (iot__io_uring_poll_fail > 0) {
        iot__io_uring_poll_fail--;
        sqe->len = ~0u; /* poll flags no kernel knows: -EINVAL */
    }
    io_uring_sqe_set_data(sqe, h);
    h->iou_armed = true;
    iou(ctx)->inflight++;
}

/* Home thread.  Re-arms the polls that completed last time.  This runs
 * after their handlers were dispatched, never while completions are being
 * reaped: a poll re-armed on an fd still readable completes at once, and
 * re-arming (and submitting, when the ring is full) during the reap would
 * feed it forever.  A handler removed meanwhile is left alone; its
 * removal is processed next, in fill_sq(). */
static void rearm_completed(IotCtx *ctx)
{
    IouState *s = iou(ctx);
    IotHandler *h;

    if (ctx->fdmon_retry_at && iot__stats_now_ns() >= ctx->fdmon_retry_at) {
        IotHandler **tail = &s->retry;

        while (*tail) {
            tail = &(*tail)->iou_rearm_next;
        }
        *tail = s->rearm;
        s->rearm = s->retry;
        s->retry = NULL;
        ctx->fdmon_retry_at = 0;
    }
    h = s->rearm;
    s->rearm = NULL;
    while (h) {
        IotHandler *next = h->iou_rearm_next;
        h->iou_rearm_next = NULL;
        if (!atomic_load_explicit(&h->deleted, memory_order_acquire) &&
            !h->iou_armed) {
            arm(ctx, h);
        }
        h = next;
    }
}

/* Home thread.  @h is being removed: off the list of refused polls, if
 * it waits there, before it can be freed. */
static void retry_forget(IotCtx *ctx, IouState *s, IotHandler *h)
{
    for (IotHandler **p = &s->retry; *p; p = &(*p)->iou_rearm_next) {
        if (*p == h) {
            *p = h->iou_rearm_next;
            h->iou_rearm_next = NULL;
            break;
        }
    }
    if (!s->retry) {
        ctx->fdmon_retry_at = 0; /* nothing to wake up for */
    }
}

/* Home thread.  Turns queued changes into SQEs. */
static void fill_sq(IotCtx *ctx)
{
    IouState *s = iou(ctx);
    IotHandler *h, *next;

    rearm_completed(ctx);

    /* Acquire pairs with the release in change_queue(): a cheap look. */
    if (!atomic_load_explicit(&s->have_changes, memory_order_acquire)) {
        return;
    }
    iot__lockcnt_lock(&ctx->list_lock);
    h = s->changes;
    s->changes = NULL;
    atomic_store_explicit(&s->have_changes, false, memory_order_relaxed);
    for (; h; h = next) {
        unsigned ops = h->iou_ops;
        next = h->iou_next;
        h->iou_ops = 0;
        if (ops & IOU_REMOVE) {
            h->iou_removed = true;
            if (h->iou_armed) {
                struct io_uring_sqe *sqe = sqe_get(ctx);
                io_uring_prep_poll_remove(sqe, (__u64)(uintptr_t)h);
                io_uring_sqe_set_data(sqe, NULL);
                s->inflight++;
            } else {
                retry_forget(ctx, s, h);
                deleted_push(ctx, h);
            }
        } else if (ops & IOU_ADD) {
            arm(ctx, h);
        }
    }
    iot__lockcnt_unlock(&ctx->list_lock);
}

static short revents_of(int res)
{
    return (short)(res & (POLLIN | POLLOUT | POLLHUP | POLLERR | POLLPRI));
}

/* Home thread.  Queues @h to be re-armed by the next fill_sq(). */
static void rearm_later(IotCtx *ctx, IotHandler *h)
{
    IouState *s = iou(ctx);

    h->iou_rearm_next = s->rearm;
    s->rearm = h;
}

/* Home thread.  Queues @h, whose poll the kernel refused, to be re-armed
 * iot__fdmon_retry_ns from now: at once, a refusal that lasts (no memory)
 * would come back at once, and the loop would spin on it. */
static void rearm_after_refusal(IotCtx *ctx, IotHandler *h)
{
    IouState *s = iou(ctx);

    h->iou_rearm_next = s->retry;
    s->retry = h;
    if (!ctx->fdmon_retry_at) {
        ctx->fdmon_retry_at = iot__stats_now_ns() + iot__fdmon_retry_ns;
    }
}

/* Home thread, walker.  One completion. */
static int complete(IotCtx *ctx, struct io_uring_cqe *cqe, IotReadyList *ready)
{
    IotHandler *h = io_uring_cqe_get_data(cqe);

    if (!h) {
        return 0; /* a POLL_REMOVE's own completion */
    }
    h->iou_armed = false;
    if (atomic_load_explicit(&h->deleted, memory_order_acquire)) {
        if (h->iou_removed) {
            /* Its removal was processed: the kernel is done with it. */
            iot__lockcnt_lock(&ctx->list_lock);
            deleted_push(ctx, h);
            iot__lockcnt_unlock(&ctx->list_lock);
        }
        /* Else fill_sq() will see it unarmed and free it. */
        return 0;
    }
    if (cqe->res == -ECANCELED) {
        rearm_later(ctx, h); /* not ours: the kernel gave up, watch again */
        return 0;
    }
    if (cqe->res == -EBADF) {
        /* Closed while watched: report an error once.  Watching again
         * would fail again at once, for ever. */
        h->revents = POLLERR;
    } else if (cqe->res < 0) {
        /* The kernel could not watch the fd this time (no memory, say):
         * the handler hears of it as an error, and the fd is watched
         * again a little later, or it would never be heard from again.
         * (QEMU re-arms at once.) */
        h->revents = POLLERR;
        rearm_after_refusal(ctx, h);
    } else {
        h->revents = revents_of(cqe->res);
        rearm_later(ctx, h); /* one-shot: level-triggered via re-arm */
    }
    iot__ready_push(ready, h);
    return 1;
}

static int reap(IotCtx *ctx, IotReadyList *ready)
{
    IouState *s = iou(ctx);
    struct io_uring_cqe *cqe;
    unsigned head, seen;
    int n = 0;

    do {
        unsigned ours = 0;

        seen = 0;
        io_uring_for_each_cqe(&s->ring, head, cqe)
        {
            seen++;
            /* liburing's own timeout request, on kernels without
             * IORING_FEAT_EXT_ARG (before 5.11): not a handler. */
            if (cqe->user_data == LIBURING_UDATA_TIMEOUT) {
                continue;
            }
            n += complete(ctx, cqe, ready);
            ours++;
        }
        io_uring_cq_advance(&s->ring, seen);
        s->inflight -= ours;
        /* Completions the kernel could not fit are fetched with a syscall. */
        if (io_uring_cq_has_overflow(&s->ring)) {
            io_uring_get_events(&s->ring);
            seen = 1;
        }
    } while (seen);
    return n;
}

/* Home thread.  Completions are waiting for us to enter the kernel
 * (COOP_TASKRUN): the kernel sets the flag, the next enter clears it. */
static bool taskrun_due(IouState *s)
{
    return IO_URING_READ_ONCE(*s->ring.sq.kflags) & IORING_SQ_TASKRUN;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * IOT_NS_PER_S + ts.tv_nsec;
}

/* Submits, waits for one completion unless @timeout is 0, reaps.  Returns
 * the number of ready handlers.  A blocking wait woken only by the ring's
 * own completions (a POLL_REMOVE, a cancelled poll) waits again, so that,
 * as on the other backends, only an fd event, a notify, the timeout or a
 * signal (EINTR, as ppoll and epoll_wait end) ends it. */
static int iou_wait(IotCtx *ctx, IotReadyList *ready, int64_t timeout)
{
    IouState *s = iou(ctx);
    int64_t deadline;

    /* A timer at INT64_MAX gives INT64_MAX - now: capped as epoll and
     * ppoll cap it (68 years), so that the deadline cannot overflow. */
    if (timeout > (int64_t)INT32_MAX * IOT_NS_PER_S) {
        timeout = (int64_t)INT32_MAX * IOT_NS_PER_S;
    }
    deadline = timeout > 0 ? now_ns() + timeout : 0;

    for (;;) {
        struct io_uring_cqe *cqe;
        bool waited = false;
        int ret, n;

        fill_sq(ctx);
        if (taskrun_due(s)) {
            /* Run the completions' task work (and submit): no waiting. */
            ret = io_uring_submit_and_get_events(&s->ring);
            s->queued = 0;
        } else if (timeout == 0 || io_uring_cq_ready(&s->ring)) {
            ret = io_uring_sq_ready(&s->ring) ? io_uring_submit(&s->ring) : 0;
            s->queued = 0;
        } else if (timeout < 0) {
            ret = io_uring_submit_and_wait(&s->ring, 1);
            s->queued = 0;
            waited = true;
        } else {
            struct __kernel_timespec ts = { .tv_sec = timeout / IOT_NS_PER_S,
                                            .tv_nsec = timeout % IOT_NS_PER_S };
            ret =
                io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
            s->queued = 0;
            waited = true;
        }
        if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EAGAIN &&
            ret != -EBUSY) {
            return ret;
        }
        if (waited && ret >= 0 && !io_uring_cq_ready(&s->ring)) {
            /* A wait for one completion that ends without any: a signal.
             * An enter that also submitted returns the number submitted,
             * not -EINTR, so that is the only sign of it. */
            ret = -EINTR;
        }
        n = reap(ctx, ready);
        if (n > 0 || timeout == 0 || ret == -ETIME || ret == -EINTR) {
            return n;
        }
        if (timeout > 0) {
            timeout = deadline - now_ns();
            if (timeout <= 0) {
                return 0;
            }
        }
    }
}

/* Completions to reap, requests to submit or changes to queue: busy
 * polling must stop and wait() run (without blocking, timeout 0). */
static bool iou_need_wait(IotCtx *ctx)
{
    IouState *s = iou(ctx);

    return io_uring_cq_ready(&s->ring) || taskrun_due(s) ||
           io_uring_sq_ready(&s->ring) || s->rearm ||
           atomic_load_explicit(&s->have_changes, memory_order_relaxed);
}

static bool iou_has_events(IotCtx *ctx)
{
    IouState *s = iou(ctx);

    return io_uring_cq_ready(&s->ring) || taskrun_due(s);
}

void (*iot__io_uring_prepare_hook)(IotCtx *ctx);

static void iou_prepare(IotCtx *ctx)
{
    IouState *s = iou(ctx);

    fill_sq(ctx);
    if (iot__io_uring_prepare_hook) {
        iot__io_uring_prepare_hook(ctx);
    }
    if (io_uring_sq_ready(&s->ring)) {
        submit(s);
    }
}

const IotFdmonOps iot__fdmon_io_uring_ops = {
    .name = "io_uring",
    .update = iou_update,
    .wait = iou_wait,
    .need_wait = iou_need_wait,
    .has_events = iou_has_events,
    .retire = iou_retire,
    .prepare = iou_prepare,
    .userspace_poll = true,
};

/* Tests: fail the setup as if the kernel had refused it. */
int iot__io_uring_setup_fail;

/* ---- the ring cache ---- */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static IouState *cache[IOU_CACHE_MAX]; /* [cache_lock] idle rings */
static unsigned cache_n;               /* [cache_lock] */
/* [cache_lock] forks this process's line has been through: a ring made
 * before the last one is shared with a parent, and is never kept */
static unsigned long cache_gen;
unsigned iot__io_uring_cache_max = IOU_CACHE_MAX;
atomic_ulong iot__io_uring_cache_hits;

/* Lock held.  Closes every cached ring. */
static void cache_flush_locked(void)
{
    while (cache_n) {
        IouState *s = cache[--cache_n];

        io_uring_queue_exit(&s->ring);
        free(s);
    }
}

void iot__io_uring_cache_flush(void)
{
    pthread_mutex_lock(&cache_lock);
    cache_flush_locked();
    pthread_mutex_unlock(&cache_lock);
}

/* fork(): the lock is held across it, so that no other thread holds it
 * in the child, and the child drops the rings it inherited (they are its
 * parent's too: sharing one would mix two processes' requests). */
static void cache_fork_prepare(void)
{
    pthread_mutex_lock(&cache_lock);
}

static void cache_fork_parent(void)
{
    pthread_mutex_unlock(&cache_lock);
}

static void cache_fork_child(void)
{
    cache_flush_locked();
    /* A live context inherited from the parent holds a ring of the
     * parent's too: when the child tears it down, it is not kept. */
    cache_gen++;
    pthread_mutex_unlock(&cache_lock);
}

/* At load, not at first use: a fork() between pthread_atfork() and the
 * end of a pthread_once() would run the once again in the child and
 * register the handlers twice (its next fork would then lock twice). */
__attribute__((constructor)) static void cache_init(void)
{
    pthread_atfork(cache_fork_prepare, cache_fork_parent, cache_fork_child);
}

/* Any thread.  An idle ring, or NULL. */
static IouState *cache_get(void)
{
    IouState *s = NULL;

    pthread_mutex_lock(&cache_lock);
    if (cache_n) {
        s = cache[--cache_n];
        atomic_fetch_add_explicit(&iot__io_uring_cache_hits, 1,
                                  memory_order_relaxed);
    }
    pthread_mutex_unlock(&cache_lock);
    return s;
}

/* Context teardown.  Keeps @s for a later context if nothing is in
 * flight on it and the cache has room; false if not kept. */
static bool cache_put(IouState *s)
{
    struct io_uring ring = s->ring;
    bool kept = false;

    unsigned long gen = s->gen;

    if (s->inflight || io_uring_sq_ready(&ring) || io_uring_cq_ready(&ring) ||
        io_uring_cq_has_overflow(&ring)) {
        return false;
    }
    *s = (IouState){ .ring = ring, .gen = gen };
    pthread_mutex_lock(&cache_lock);
    if (gen == cache_gen && cache_n < iot__io_uring_cache_max &&
        cache_n < IOU_CACHE_MAX) {
        cache[cache_n++] = s;
        kept = true;
    }
    pthread_mutex_unlock(&cache_lock);
    return kept;
}

/* Sets up the ring in ctx->iou; 0 or a negative errno. */
static int ring_new(IotCtx *ctx)
{
    IouState *s;
    int ret;

    if (iot__io_uring_setup_fail) {
        return -iot__io_uring_setup_fail;
    }
    s = cache_get();
    if (s) {
        ctx->iou = s;
        return 0;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        return -ENOMEM;
    }
    /* COOP_TASKRUN: a poll request that fires does not interrupt the home
     * thread with an IPI to post its completion; the completion waits for
     * the thread's next kernel entry, and TASKRUN_FLAG tells busy polling
     * (iou_need_wait) that such an entry is due.  A thread blocked in
     * io_uring_enter() is still woken at once.  Kernels before 5.19
     * refuse the flags: plain setup then. */
    ret = io_uring_queue_init(IOU_ENTRIES, &s->ring,
                              IORING_SETUP_COOP_TASKRUN |
                                  IORING_SETUP_TASKRUN_FLAG);
    if (ret == -EINVAL) {
        ret = io_uring_queue_init(IOU_ENTRIES, &s->ring, 0);
    }
    if (ret < 0) {
        free(s);
        return ret;
    }
    pthread_mutex_lock(&cache_lock);
    s->gen = cache_gen;
    pthread_mutex_unlock(&cache_lock);
    ctx->iou = s;
    return 0;
}

int iot__fdmon_io_uring_setup(IotCtx *ctx)
{
    int ret = ring_new(ctx);

    if (ret == 0) {
        atomic_init(&ctx->fdmon, &iot__fdmon_io_uring_ops);
    }
    return ret;
}

int iot__fdmon_io_uring_enable(IotCtx *ctx)
{
    int ret;

    /* Only from poll, and never under a GLib source's feet. */
    if (ctx->iou || ctx->gsource_pinned ||
        iot__fdmon(ctx) != &iot__fdmon_poll_ops) {
        return -EBUSY;
    }
    ret = ring_new(ctx);
    if (ret < 0) {
        return ret;
    }
    /* Every live handler gets its poll request at the next fill_sq(). */
    for (IotHandler *h =
             atomic_load_explicit(&ctx->handlers, memory_order_relaxed);
         h; h = atomic_load_explicit(&h->next, memory_order_relaxed)) {
        if (h->events &&
            !atomic_load_explicit(&h->deleted, memory_order_relaxed)) {
            change_queue(ctx, h, IOU_ADD);
        }
    }
    /* Release pairs with the acquire in iot__fdmon(). */
    atomic_store_explicit(&ctx->fdmon, &iot__fdmon_io_uring_ops,
                          memory_order_release);
    return 0;
}

void iot__fdmon_io_uring_quiesce(IotCtx *ctx)
{
    struct io_uring_sync_cancel_reg reg = {
        .flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL,
        .timeout = { .tv_sec = -1, .tv_nsec = -1 },
    };
    IotReadyList ready = { NULL, NULL };
    IouState *s = iou(ctx);

    if (!s || iot__fdmon(ctx) != &iot__fdmon_io_uring_ops) {
        return;
    }
    iot__lockcnt_inc(&ctx->list_lock);
    if (io_uring_sq_ready(&s->ring)) {
        submit(s);
    }
    /* Kernels before 6.0 refuse the synchronous cancel: the ring then
     * keeps its requests and is not reused. */
    if (s->inflight && io_uring_register_sync_cancel(&s->ring, &reg) >= 0) {
        io_uring_get_events(&s->ring);
    }
    reap(ctx, &ready);
    /* Nobody dispatches these: the handlers were queued for re-arming
     * (but for one whose fd went bad), so a context polled again reports
     * their events anew, and nothing of this round stays with them. */
    for (IotHandler *h; (h = iot__ready_pop(&ready));) {
        h->revents = 0;
        h->poll_ready = false;
    }
    iot__lockcnt_dec(&ctx->list_lock);
}

void iot__fdmon_io_uring_teardown(IotCtx *ctx)
{
    IouState *s = iou(ctx);

    if (s) {
        ctx->iou = NULL;
        if (!cache_put(s)) {
            io_uring_queue_exit(&s->ring);
            free(s);
        }
    }
}

unsigned long iot__io_uring_batch_submits(IotCtx *ctx)
{
    return ctx->iou ? iou(ctx)->submits : 0;
}

int iot__io_uring_nop(IotCtx *ctx, uint64_t user_data)
{
    struct io_uring_sqe *sqe;

    if (!ctx->iou || !(sqe = io_uring_get_sqe(&iou(ctx)->ring))) {
        return -EBUSY;
    }
    io_uring_prep_nop(sqe);
    sqe->user_data = user_data;
    return io_uring_submit(&iou(ctx)->ring) == 1 ? 0 : -EIO;
}

int iot__fdmon_gsource_fd(IotCtx *ctx)
{
    int ret;

    /* Decided under the list mutex, which every backend switch holds, and
     * pinned: AUTO must not move the context away from the fd GLib
     * watches (fdmon-poll.c auto_upgrade()). */
    iot__lockcnt_lock(&ctx->list_lock);
    ctx->gsource_pinned = true;
    if (ctx->iou) {
        ret = iou(ctx)->ring.ring_fd;
    } else if (ctx->epollfd >= 0) {
        ret = ctx->epollfd; /* epoll, or poll after an epoll failure */
    } else {
        ret = iot__fdmon_epoll_enable(ctx);
        ret = ret < 0 ? ret : ctx->epollfd;
    }
    iot__lockcnt_unlock(&ctx->list_lock);
    return ret;
}

#else /* !IOT_HAVE_IO_URING */

int iot__io_uring_poll_fail;
void (*iot__io_uring_prepare_hook)(IotCtx *ctx);
int iot__io_uring_setup_fail;

unsigned long iot__io_uring_batch_submits(IotCtx *ctx)
{
    (void)ctx;
    return 0;
}

int iot__io_uring_nop(IotCtx *ctx, uint64_t user_data)
{
    (void)ctx;
    (void)user_data;
    return -ENOSYS;
}

int iot__fdmon_io_uring_setup(IotCtx *ctx)
{
    (void)ctx;
    return -ENOSYS;
}

int iot__fdmon_io_uring_enable(IotCtx *ctx)
{
    (void)ctx;
    return -ENOSYS;
}

void iot__fdmon_io_uring_teardown(IotCtx *ctx)
{
    (void)ctx;
}

void iot__fdmon_io_uring_quiesce(IotCtx *ctx)
{
    (void)ctx;
}

unsigned iot__io_uring_cache_max;
atomic_ulong iot__io_uring_cache_hits;

void iot__io_uring_cache_flush(void)
{
}

int iot__fdmon_gsource_fd(IotCtx *ctx)
{
    int ret;

    iot__lockcnt_lock(&ctx->list_lock);
    ctx->gsource_pinned = true;
    ret = ctx->epollfd >= 0 ? 0 : iot__fdmon_epoll_enable(ctx);
    ret = ret < 0 ? ret : ctx->epollfd;
    iot__lockcnt_unlock(&ctx->list_lock);
    return ret;
}

#endif
