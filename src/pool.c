/* SPDX-License-Identifier: MIT */
/*
 * The per-context thread pool (section 5 of the specification).
 *
 * Work flows one way, and no step of it takes the pool lock.  The home
 * thread appends the work to a ring of pointers and publishes the new
 * tail; a worker claims the oldest index with a CAS on head, runs the work
 * and pushes it on a lock-free done list; the done BH moves it to a
 * home-thread FIFO and runs its completion.  The lock guards the workers'
 * lives instead: how many there are, the stack of idle ones, start-up and
 * exit.  The home thread takes it only to wake an idle worker or to start
 * one, a worker only to go idle or to exit, so a busy pool hands work over
 * without a lock per item.
 *
 *                  ring          done list (CAS)   done FIFO   workers
 * home thread      push, grow    take              yes         lock
 * workers          claim         push              no          lock
 *
 * The wake-up is a Dekker pair: the home thread stores the tail, then
 * loads the idle count and cur; a worker going idle raises the count,
 * then loads the tail, and one leaving on its idle timeout lowers cur,
 * then loads the tail.  All seq_cst, so one side sees the other (model:
 * docs/spin/pool.promela).
 *
 * A cancel races with the claim on the work's state: QUEUED -> CANCELLED
 * against QUEUED -> ACTIVE, and one CAS wins.  Cancelled work stays in the
 * ring until a worker claims its index (or the pool is freed), so from the
 * cancel on its memory has two owners, the ring and the completion, and
 * the last one frees it.
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

enum { WORK_QUEUED, WORK_ACTIVE, WORK_DONE, WORK_CANCELLED };

struct IotWork {
    IotPool *pool;         /* [const] */
    IotWorkFunc *func;     /* [const] */
    void *arg;             /* [const] */
    IotWorkDoneFunc *done; /* [const] */
    void *opaque;          /* [const] */
    /* WORK_*: QUEUED -> ACTIVE by the worker that claimed it, QUEUED ->
     * CANCELLED by a cancel (a CAS each: one wins), ACTIVE -> DONE by that
     * worker. */
    atomic_int state;
    /* Counted only once CANCELLED: the ring's and the completion's. */
    atomic_int refs;
    int ret;        /* [the worker, or the cancel; then home] */
    IotWork *dnext; /* done list, then the home FIFO */
};

/*
 * The request ring.  Index i lives in slot[i & mask]; indices count up for
 * the pool's life (64 bits do not wrap).  A full ring is replaced by a
 * copy twice its size; the old one stays until the pool is freed, since a
 * worker may still be reading it.
 */
typedef struct PoolRing {
    struct PoolRing *older;    /* [home] the ring this one replaced */
    uint64_t mask;             /* [const] */
    _Atomic(IotWork *) slot[]; /* [home writes, workers read] */
} PoolRing;

#define POOL_RING_MIN 64 /* slots in a new pool's ring */

/* A worker waiting for work, on the pool's stack of idle workers. */
typedef struct PoolWaiter {
    pthread_cond_t cond;     /* its own: a wake-up picks one worker */
    struct PoolWaiter *next; /* [lock] */
    bool woken;              /* [lock] taken off the stack by a waker */
    /* [the worker's own] when its idle timeout runs out, if has_deadline:
     * set at its first timed sleep since it last ran work, and kept
     * through wake-ups that found nothing to run (a resize, work another
     * worker took), so that those do not restart its idle clock. */
    struct timespec deadline;
    bool has_deadline;
} PoolWaiter;

struct IotPool {
    IotCtx *ctx;           /* [const] */
    IotBh *spawn_bh;       /* [const] starts the backlog */
    IotTimer *retry_timer; /* [const] starts workers again after a failure */
    IotBh *done_bh;        /* [const] runs completions */
    uint64_t head_seen;    /* [home] head at its last look */
    IotWork *fifo_head, *fifo_tail; /* [home] completions to run */
    size_t fifo_n;                  /* [home] how many */
    long outstanding;               /* [home] submitted, not completed */

    /* [home stores; workers load].  The tail's store is seq_cst: release
     * for the slots and the work behind them (pairs with the acquire in
     * ring_claim()), and the first half of the wake-up's Dekker pair. */
    _Alignas(64) _Atomic uint64_t tail;
    _Atomic(PoolRing *) ring; /* release: pairs with ring_claim() */
    /* Cancelled work not claimed yet.  A claimer's decrement may come
     * before the cancel's increment: it can be -1 for a moment. */
    atomic_int tombstones;

    /* [workers CAS]: indices below it are claimed. */
    _Alignas(64) _Atomic uint64_t head;

    _Alignas(64) _Atomic(IotWork *) done_list; /* [any pushes, home takes] */

    /* Written under the lock; those that are atomic are also read
     * without it, as hints that the lock confirms. */
    _Alignas(64) pthread_mutex_t lock;
    pthread_cond_t stopped_cond; /* [lock] a worker exited */
    PoolWaiter *waiters;         /* [lock] idle workers, LIFO */
    atomic_uint idle;            /* waiters on the stack; see ring_push() */
    atomic_uint cur;             /* workers alive or being started */
    atomic_uint backlog;         /* workers still to start */
    bool start_failed; /* [lock] no worker could start since the last did */
    _Atomic int64_t min, max;
    atomic_bool stopping;
    /* [lock] nobody runs the spawn BH (the IOThread has ended, and no
     * thread has taken the context since): sizes are stored, no worker
     * is asked for (iot__pool_loop_ended(), iot__pool_home_taken()) */
    bool loop_ended;
    atomic_uint active; /* [the worker running it, atomic] */
};

/* The pool whose worker the calling thread is, or NULL. */
static IOT_TLS IotPool *tls_worker_pool;

bool iot__pool_is_worker_of(IotCtx *ctx)
{
    return tls_worker_pool && tls_worker_pool->ctx == ctx;
}

/* Tests shorten the idle timeout; 10 s as in QEMU otherwise. */
int64_t iot__pool_idle_ns = 10 * IOT_NS_PER_S;
/* No worker could start and none is left: how long before trying again. */
int64_t iot__pool_retry_ns = 10 * IOT_NS_PER_MS;
void (*_Atomic iot__pool_timeout_hook)(void);
int (*iot__pool_thread_create)(pthread_t *, const pthread_attr_t *,
                               void *(*)(void *), void *) = pthread_create;

static IotPool *ctx_pool(IotCtx *ctx)
{
    /* Acquire pairs with the release in pool_get(). */
    return atomic_load_explicit(&ctx->pool, memory_order_acquire);
}

/* Shorthands for the counters written under the lock. */
#define LOAD(f)     atomic_load_explicit(&(f), memory_order_relaxed)
#define STORE(f, v) atomic_store_explicit(&(f), (v), memory_order_relaxed)

/* ---- the request ring ---- */

static PoolRing *ring_new(uint64_t slots)
{
    PoolRing *r = calloc(1, sizeof(*r) + slots * sizeof(r->slot[0]));

    if (r) {
        r->mask = slots - 1;
    }
    return r;
}

/* Home thread.  Replaces the full ring @old by one twice its size that
 * holds the same unclaimed indices, head_seen to @tail. */
static PoolRing *ring_grow(IotPool *p, PoolRing *old, uint64_t tail)
{
    PoolRing *r = ring_new((old->mask + 1) * 2);

    if (!r) {
        return NULL;
    }
    for (uint64_t i = p->head_seen; i != tail; i++) {
        atomic_store_explicit(&r->slot[i & r->mask],
                              atomic_load_explicit(&old->slot[i & old->mask],
                                                   memory_order_relaxed),
                              memory_order_relaxed);
    }
    r->older = old;
    /* Release pairs with the acquire in ring_claim(): a worker that sees
     * this ring sees its slots. */
    atomic_store_explicit(&p->ring, r, memory_order_release);
    return r;
}

/* Home thread.  Appends @w and publishes it; false if the ring is full
 * and cannot grow. */
static bool ring_push(IotPool *p, IotWork *w)
{
    PoolRing *r = atomic_load_explicit(&p->ring, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&p->tail, memory_order_relaxed);

    if (t - p->head_seen > r->mask) {
        /* Acquire pairs with the release CAS in ring_claim(): the claimer
         * of the index whose slot is reused below has read it. */
        p->head_seen = atomic_load_explicit(&p->head, memory_order_acquire);
        if (t - p->head_seen > r->mask && !(r = ring_grow(p, r, t))) {
            return false;
        }
    }
    atomic_store_explicit(&r->slot[t & r->mask], w, memory_order_relaxed);
    /* seq_cst: see the tail's comment.  Its Dekker partner is the idle
     * count's seq_cst increment and tail load in worker_wait(). */
    atomic_store_explicit(&p->tail, t + 1, memory_order_seq_cst);
    return true;
}

/* Any thread.  Is there unclaimed work?  seq_cst: worker_wait()'s half of
 * the Dekker pair. */
static bool ring_pending(IotPool *p)
{
    uint64_t h = atomic_load_explicit(&p->head, memory_order_relaxed);

    return atomic_load_explicit(&p->tail, memory_order_seq_cst) != h;
}

/* Worker.  Claims the oldest unclaimed index and returns its work; NULL
 * if there is none. */
static IotWork *ring_claim(IotPool *p)
{
    /* Acquire, here and when the CAS fails, pairs with the release CAS of
     * the worker that moved head to h: it had seen a tail past h, so the
     * tail loaded below is at least h.  Relaxed, a weakly ordered CPU
     * could pair a new head with an old tail and claim an index never
     * published. */
    uint64_t h = atomic_load_explicit(&p->head, memory_order_acquire);

    for (;;) {
        /* The tail before the ring, both acquire (ring_push() and
         * ring_grow()): a ring that predates index h cannot be seen once
         * a tail past h is. */
        uint64_t t = atomic_load_explicit(&p->tail, memory_order_acquire);
        PoolRing *r;
        IotWork *w;

        if (h == t) {
            return NULL;
        }
        r = atomic_load_explicit(&p->ring, memory_order_acquire);
        /* Read before the claim: until head passes h nothing reuses the
         * slot.  A stale h reads garbage, and its CAS fails. */
        w = atomic_load_explicit(&r->slot[h & r->mask], memory_order_relaxed);
        /* Release pairs with ring_push()'s acquire load of head (the
         * slot was read first) and with the next claimer's acquire. */
        if (atomic_compare_exchange_weak_explicit(&p->head, &h, h + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            return w;
        }
    }
}

/* Any thread.  Work submitted and neither claimed nor cancelled; a
 * snapshot, for statistics and the decision to start a worker. */
static unsigned ring_queued(IotPool *p)
{
    uint64_t h = atomic_load_explicit(&p->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&p->tail, memory_order_relaxed);
    int dead = LOAD(p->tombstones);
    uint64_t d = dead > 0 ? (uint64_t)dead : 0;

    return t > h + d ? (unsigned)(t - h - d) : 0;
}

/* ---- work ---- */

/* Any thread.  Drops one of a cancelled work's two references. */
static void work_unref(IotWork *w)
{
    /* acq_rel: the last owner frees after the other is done with it. */
    if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1) {
        free(w);
    }
}

/* Any thread.  Hands finished (or cancelled) work to the home thread. */
static void work_complete(IotPool *p, IotWork *w)
{
    IotWork *head = atomic_load_explicit(&p->done_list, memory_order_relaxed);

    do {
        w->dnext = head;
        /* Release pairs with the acquire exchange in pool_take_done(): the
         * home thread sees w->ret, w->state and w->dnext. */
    } while (!atomic_compare_exchange_weak_explicit(
        &p->done_list, &head, w, memory_order_release, memory_order_relaxed));
    iot_bh_schedule(p->done_bh);
}

/* Worker.  Runs claimed work, unless a cancel got it first. */
static void work_run(IotPool *p, IotWork *w)
{
    int queued = WORK_QUEUED;

    if (!atomic_compare_exchange_strong_explicit(
            &w->state, &queued, WORK_ACTIVE, memory_order_relaxed,
            memory_order_relaxed)) {
        /* Cancelled: its completion is on its way; drop the ring's
         * reference. */
        atomic_fetch_sub_explicit(&p->tombstones, 1, memory_order_relaxed);
        work_unref(w);
        return;
    }
    atomic_fetch_add_explicit(&p->active, 1, memory_order_relaxed);
    w->ret = w->func(w->arg);
    atomic_store_explicit(&w->state, WORK_DONE, memory_order_relaxed);
    atomic_fetch_sub_explicit(&p->active, 1, memory_order_relaxed);
    work_complete(p, w);
}

/* ---- workers ---- */

/* Lock held.  Takes the most recently idle worker off the stack and wakes
 * it; false if none is idle. */
static bool wake_one_locked(IotPool *p)
{
    PoolWaiter *w = p->waiters;

    if (!w) {
        return false;
    }
    p->waiters = w->next;
    atomic_fetch_sub_explicit(&p->idle, 1, memory_order_relaxed);
    w->woken = true;
    pthread_cond_signal(&w->cond);
    return true;
}

static void wake_all_locked(IotPool *p)
{
    while (wake_one_locked(p)) {
    }
}

/* Lock held.  Takes @self off the stack (it timed out). */
static void waiter_unlink_locked(IotPool *p, PoolWaiter *self)
{
    PoolWaiter **pw = &p->waiters;

    while (*pw != self) {
        pw = &(*pw)->next;
    }
    *pw = self->next;
    atomic_fetch_sub_explicit(&p->idle, 1, memory_order_relaxed);
}

/* Worker, lock held or not (then a hint).  Must it exit? */
static bool worker_surplus(IotPool *p)
{
    return LOAD(p->stopping) || (int64_t)LOAD(p->cur) > LOAD(p->max);
}

static void deadline_after(struct timespec *ts, int64_t ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ns += ts->tv_nsec;
    ts->tv_sec += ns / IOT_NS_PER_S;
    ts->tv_nsec = ns % IOT_NS_PER_S;
}

/* Worker, lock held.  Takes this worker out of cur: it is leaving.
 * seq_cst, for the idle timeout's Dekker pair (worker_wait()). */
static bool worker_leave(IotPool *p)
{
    atomic_store_explicit(&p->cur, LOAD(p->cur) - 1, memory_order_seq_cst);
    return false;
}

/* Worker, lock held, on the idle stack.  Sleeps until woken; true if
 * instead the idle timeout ran out.  Only a worker above min has one: at
 * or below it, an idle worker never wakes on its own (the pool costs
 * nothing while idle), and a resize wakes it to look again. */
static bool worker_sleep(IotPool *p, PoolWaiter *self)
{
    int ret = 0;

    if ((int64_t)LOAD(p->cur) <= LOAD(p->min)) {
        /* No clock below min: a min lowered later starts it afresh. */
        self->has_deadline = false;
        pthread_cond_wait(&self->cond, &p->lock);
        return false;
    }
    if (!self->has_deadline) {
        deadline_after(&self->deadline, iot__pool_idle_ns);
        self->has_deadline = true;
    }
    while (!self->woken && ret != ETIMEDOUT) {
        ret = pthread_cond_timedwait(&self->cond, &p->lock, &self->deadline);
    }
    return !self->woken;
}

/* Worker, lock held, off the idle stack after its timeout.  Leaves the
 * pool unless work came; false once it has left.  Leaving (a seq_cst
 * store of cur) before the second look at the tail pairs with
 * pool_kick(), which stores the tail, then loads idle and cur: either it
 * sees this worker gone and starts another, or this worker sees the work
 * and stays. */
static bool worker_time_out(IotPool *p)
{
    void (*hook)(void) = atomic_load(&iot__pool_timeout_hook);

    if (hook) {
        hook();
    }
    worker_leave(p);
    if (!ring_pending(p)) {
        return false;
    }
    STORE(p->cur, LOAD(p->cur) + 1);
    return true;
}

/* Worker, lock held.  Waits until there may be work; false once this
 * worker has left the pool (worker_leave()) and must exit. */
static bool worker_wait(IotPool *p, PoolWaiter *self)
{
    if (worker_surplus(p)) {
        return worker_leave(p);
    }
    self->woken = false;
    self->next = p->waiters;
    p->waiters = self;
    /* seq_cst, then the tail's seq_cst load in ring_pending(): the
     * worker's half of the Dekker pair with ring_push()/pool_kick(). */
    atomic_fetch_add_explicit(&p->idle, 1, memory_order_seq_cst);
    while (!self->woken) {
        if (ring_pending(p)) {
            waiter_unlink_locked(p, self);
            return true;
        }
        /* Woken, or down to min, or work came: it stays on the stack and
         * looks again.  Otherwise its idle timeout ran out. */
        if (worker_sleep(p, self) && (int64_t)LOAD(p->cur) > LOAD(p->min) &&
            !ring_pending(p)) {
            waiter_unlink_locked(p, self);
            if (!worker_time_out(p)) {
                return false;
            }
            break;
        }
    }
    return worker_surplus(p) ? worker_leave(p) : true;
}

/* Idle timeouts are measured on the monotonic clock. */
static void cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

static void *worker_main(void *opaque)
{
    IotPool *p = opaque;
    PoolWaiter self = { .next = NULL };

    pthread_setname_np(pthread_self(), "worker");
    tls_worker_pool = p;
    cond_init_monotonic(&self.cond);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        IotWork *w;

        if (!worker_wait(p, &self)) {
            break;
        }
        pthread_mutex_unlock(&p->lock);
        /* Busy: claim and run without the lock until the ring is empty,
         * or the pool shrinks under this worker. */
        while ((w = ring_claim(p))) {
            self.has_deadline = false; /* busy: idle afresh after this */
            work_run(p, w);
            if (worker_surplus(p)) {
                break;
            }
        }
        pthread_mutex_lock(&p->lock);
    }
    pthread_cond_signal(&p->stopped_cond);
    /* The wake-up this worker took may have been meant for work. */
    if (ring_pending(p)) {
        wake_one_locked(p);
    }
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&self.cond);
    return NULL;
}

/* Lock held.  Asks for @n more workers, started by the spawn BH. */
static void spawn_locked(IotPool *p, unsigned n)
{
    if (!n || p->loop_ended) {
        return;
    }
    STORE(p->cur, LOAD(p->cur) + n);
    STORE(p->backlog, LOAD(p->backlog) + n);
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
    while (LOAD(p->backlog) && !LOAD(p->stopping)) {
        pthread_t tid;
        int ret;

        STORE(p->backlog, LOAD(p->backlog) - 1);
        pthread_mutex_unlock(&p->lock);
        ret = iot__pool_thread_create(&tid, &attr, worker_main, p);
        pthread_mutex_lock(&p->lock);
        if (ret != 0) {
            /* No thread: give up this slot and the rest of the backlog
             * (the next would most likely fail too, and a large
             * thread-pool-min would make this loop long).  Queued work
             * waits for a later submit to try again; with nobody left to
             * run it, the retry timer tries again by itself, or it would
             * wait for ever. */
            STORE(p->cur, LOAD(p->cur) - 1 - LOAD(p->backlog));
            STORE(p->backlog, 0);
            if (LOAD(p->cur) == 0) {
                if (!p->start_failed) {
                    fprintf(stderr,
                            "libiothread: cannot start a pool worker: "
                            "%s (trying again)\n",
                            strerror(ret));
                }
                p->start_failed = true;
                iot_timer_mod(p->retry_timer,
                              iot_clock_ns(IOT_CLOCK_MONOTONIC) +
                                  iot__pool_retry_ns);
            }
        } else {
            p->start_failed = false;
        }
    }
    pthread_mutex_unlock(&p->lock);
    pthread_attr_destroy(&attr);
}

/* Home thread: the retry timer.  Every worker failed to start: ask for
 * the ones the work (or thread-pool-min) needs, one at least. */
static void pool_retry_cb(void *opaque)
{
    IotPool *p = opaque;

    pthread_mutex_lock(&p->lock);
    if (!LOAD(p->stopping) && LOAD(p->cur) == 0 &&
        (ring_queued(p) || LOAD(p->min) > 0)) {
        int64_t want = LOAD(p->min) > 1 ? LOAD(p->min) : 1;

        spawn_locked(p, (unsigned)want);
    }
    pthread_mutex_unlock(&p->lock);
}

/* Home thread, after a push.  Sees that a worker will take the work: wakes
 * an idle one, or else starts one while the pool may grow and the workers
 * being started are fewer than the queued work.  Takes the lock only for
 * that, so a pool whose workers are all busy, or all started, costs the
 * submitter none. */
static void pool_kick(IotPool *p)
{
    /* seq_cst, after ring_push()'s seq_cst store of the tail: the home
     * thread's half of the Dekker pairs with worker_wait() (a worker
     * going idle raises idle; one leaving on its idle timeout lowers
     * cur), both then look at the tail. */
    unsigned idle = atomic_load_explicit(&p->idle, memory_order_seq_cst);
    unsigned cur = atomic_load_explicit(&p->cur, memory_order_seq_cst);

    if (!idle &&
        ((int64_t)cur >= LOAD(p->max) || LOAD(p->backlog) >= ring_queued(p))) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (!wake_one_locked(p) && (int64_t)LOAD(p->cur) < LOAD(p->max) &&
        LOAD(p->backlog) < ring_queued(p)) {
        spawn_locked(p, 1);
    }
    pthread_mutex_unlock(&p->lock);
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
        p->fifo_n++;
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

/* Home thread.  Runs completions, oldest first: those finished when it
 * starts.  Work that finishes meanwhile waits for the next pass, after
 * the loop's timers, fd handlers and other BHs, where QEMU's BH scans
 * again until nothing is left: a pipeline whose completions submit the
 * next request, with workers that keep up, would hold the loop (and a
 * stop) for as long as it lasts. */
static void pool_done_bh(void *opaque)
{
    IotPool *p = opaque;
    size_t budget;
    IotWork *w;

    pool_take_done(p);
    /* A nested pass (a completion that polls) runs some of these itself:
     * the budget only bounds this call. */
    for (budget = p->fifo_n; budget && (w = p->fifo_head); budget--) {
        p->fifo_head = w->dnext;
        p->fifo_n--;
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
        if (atomic_load_explicit(&w->state, memory_order_relaxed) ==
            WORK_CANCELLED) {
            work_unref(w); /* the ring may still hold it */
        } else {
            free(w);
        }
        /* Whatever the reschedule was for is handled by this loop or the
         * look below; leave no BH behind that would run for nothing (and
         * count as progress). */
        iot_bh_cancel(p->done_bh);
    }
    /* The cancel synchronises with a worker's schedule (acq_rel in
     * iot_bh_cancel): work pushed before a schedule it undid is seen
     * here, and gets the BH again; a later schedule stands. */
    pool_take_done(p);
    if (p->fifo_head) {
        iot_bh_schedule(p->done_bh);
    }
}

/* Tests, home thread.  Finished work not taken by the BH yet: only the
 * home thread unlinks from the done list, so its links are stable. */
size_t iot__pool_done_waiting(IotCtx *ctx)
{
    IotPool *p = ctx_pool(ctx);
    size_t n = 0;

    if (!p) {
        return 0;
    }
    for (IotWork *w = atomic_load_explicit(&p->done_list, memory_order_acquire);
         w; w = w->dnext) {
        n++;
    }
    return n;
}

/* ---- the pool ---- */

/* Home thread.  The pool, created on first use. */
static IotPool *pool_get(IotCtx *ctx)
{
    IotPool *p = ctx_pool(ctx);
    PoolRing *ring;

    if (p) {
        return p;
    }
    p = aligned_alloc(_Alignof(IotPool), sizeof(*p));
    ring = ring_new(POOL_RING_MIN);
    if (!p || !ring) {
        free(p);
        free(ring);
        return NULL;
    }
    memset(p, 0, sizeof(*p));
    p->ctx = ctx;
    atomic_init(&p->ring, ring);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->stopped_cond, NULL);
    p->spawn_bh = iot_bh_new_full(ctx, pool_spawn_bh, p, "pool-spawn");
    p->done_bh = iot_bh_new_full(ctx, pool_done_bh, p, "pool-done");
    p->retry_timer = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, pool_retry_cb, p);
    if (!p->spawn_bh || !p->done_bh || !p->retry_timer) {
        if (p->spawn_bh) {
            iot_bh_delete(p->spawn_bh);
        }
        if (p->done_bh) {
            iot_bh_delete(p->done_bh);
        }
        if (p->retry_timer) {
            iot_timer_free(p->retry_timer);
        }
        pthread_cond_destroy(&p->stopped_cond);
        pthread_mutex_destroy(&p->lock);
        free(ring);
        free(p);
        return NULL;
    }
    /* The sizes and the pointer change together under param_lock, so a
     * concurrent iot_ctx_set_pool_size() is applied here or to the pool. */
    pthread_mutex_lock(&ctx->param_lock);
    pthread_mutex_lock(&p->lock);
    STORE(p->min, ctx->pool_min);
    STORE(p->max, ctx->pool_max);
    spawn_locked(p, (unsigned)ctx->pool_min);
    pthread_mutex_unlock(&p->lock);
    atomic_store_explicit(&ctx->pool, p, memory_order_release);
    pthread_mutex_unlock(&ctx->param_lock);
    return p;
}

IotWork *iot_pool_submit(IotCtx *ctx, IotWorkFunc *func, void *arg,
                         IotWorkDoneFunc *done, void *opaque)
{
    IotPool *p;
    IotWork *w;

    if (!func) { /* refused here, not when a worker would call it */
        errno = EINVAL;
        return NULL;
    }
    p = pool_get(ctx);
    if (!p || !(w = malloc(sizeof(*w)))) {
        return NULL;
    }
    *w = (IotWork){ .pool = p,
                    .func = func,
                    .arg = arg,
                    .done = done,
                    .opaque = opaque,
                    .state = WORK_QUEUED,
                    .refs = 2 };
    if (!ring_push(p, w)) {
        free(w);
        return NULL;
    }
    p->outstanding++;
    pool_kick(p);
    return w;
}

void iot_pool_cancel(IotWork *w)
{
    IotPool *p = w->pool;
    int queued = WORK_QUEUED;

    /* Against the claimer's CAS in work_run(): one of them wins. */
    if (atomic_compare_exchange_strong_explicit(
            &w->state, &queued, WORK_CANCELLED, memory_order_relaxed,
            memory_order_relaxed)) {
        atomic_fetch_add_explicit(&p->tombstones, 1, memory_order_relaxed);
        w->ret = -ECANCELED;
        work_complete(p, w);
    }
}

/* Lock held.  Applies new sizes to a running pool. */
static void pool_resize_locked(IotPool *p, int64_t min, int64_t max)
{
    STORE(p->min, min);
    STORE(p->max, max);
    if ((int64_t)LOAD(p->cur) < min) {
        spawn_locked(p, (unsigned)(min - (int64_t)LOAD(p->cur)));
    }
    /* Surplus idle workers exit as they wake, busy ones after their
     * current work; the others wait again, on the idle clock they had
     * (PoolWaiter.deadline), so that sizes set again and again do not
     * keep idle workers above min alive. */
    wake_all_locked(p);
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

void iot__pool_home_taken(IotCtx *ctx)
{
    IotPool *p = ctx_pool(ctx);

    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (p->loop_ended) {
        /* A context that outlived its IOThread has a home again: its
         * pool starts workers as before, thread-pool-min's first. */
        p->loop_ended = false;
        if ((int64_t)LOAD(p->cur) < LOAD(p->min)) {
            spawn_locked(p, (unsigned)(LOAD(p->min) - (int64_t)LOAD(p->cur)));
        } else if (LOAD(p->cur) == 0 && ring_queued(p)) {
            spawn_locked(p, 1);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

void iot__pool_loop_ended(IotCtx *ctx)
{
    IotPool *p = ctx_pool(ctx);

    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->loop_ended = true;
    /* Asked for, never to be started: not counted as workers. */
    STORE(p->cur, LOAD(p->cur) - LOAD(p->backlog));
    STORE(p->backlog, 0);
    pthread_mutex_unlock(&p->lock);
}

void iot_ctx_pool_stats(IotCtx *ctx, IotPoolStats *s)
{
    IotPool *p = ctx_pool(ctx);

    *s = (IotPoolStats){ 0 };
    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    s->threads = LOAD(p->cur);
    s->idle = LOAD(p->idle);
    s->queued = ring_queued(p);
    s->active = LOAD(p->active);
    pthread_mutex_unlock(&p->lock);
}

void iot__pool_lock_for_test(IotCtx *ctx, bool lock)
{
    IotPool *p = ctx_pool(ctx);

    if (lock) {
        pthread_mutex_lock(&p->lock);
    } else {
        pthread_mutex_unlock(&p->lock);
    }
}

unsigned iot__pool_queued(IotCtx *ctx)
{
    IotPool *p = ctx_pool(ctx);

    return p ? ring_queued(p) : 0;
}

/* Pool free, no worker left.  Frees the cancelled work still in the ring
 * (its completion has run), then the rings. */
static void ring_free(IotPool *p)
{
    PoolRing *r = atomic_load_explicit(&p->ring, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&p->tail, memory_order_relaxed);

    for (uint64_t i = atomic_load_explicit(&p->head, memory_order_acquire);
         i != t; i++) {
        work_unref(
            atomic_load_explicit(&r->slot[i & r->mask], memory_order_relaxed));
    }
    while (r) {
        PoolRing *older = r->older;

        free(r);
        r = older;
    }
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
    STORE(p->stopping, true);
    STORE(p->cur, LOAD(p->cur) - LOAD(p->backlog)); /* never started */
    STORE(p->backlog, 0);
    wake_all_locked(p);
    while (LOAD(p->cur)) {
        pthread_cond_wait(&p->stopped_cond, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    ring_free(p);
    iot_bh_delete(p->spawn_bh);
    iot_bh_delete(p->done_bh);
    iot_timer_free(p->retry_timer);
    pthread_cond_destroy(&p->stopped_cond);
    pthread_mutex_destroy(&p->lock);
    atomic_store(&ctx->pool, NULL);
    free(p);
}
