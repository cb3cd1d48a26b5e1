/* SPDX-License-Identifier: MIT */
/*
 * The loop context's insides, shared by the files of src/.
 *
 * Every field below says who writes it and what protects it:
 *   [home]    the home thread only (inside iot_ctx_poll or its callbacks);
 *   [list]    written under list_lock's mutex, read by walkers;
 *   [any]     any thread, through the atomic operations named at the use;
 *   [const]   written before the context is shared, then read-only.
 */
#ifndef IOT_CTX_INTERNAL_H
#define IOT_CTX_INTERNAL_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <iothread/bh.h>
#include <iothread/ctx.h>
#include <iothread/fd.h>
#include <iothread/timer.h>

#include "lockcnt.h"

/* Thread-local state of the library.  Built as a shared library, the
 * default (general dynamic) model calls __tls_get_addr() on every access,
 * e.g. on every post.  initial-exec (the default, meson option
 * initial_exec_tls) is a plain %fs-relative load: 40 bytes of static TLS,
 * which glibc's surplus provides even to a dlopen(), unless other
 * libraries used it up first; for such programs, -Dinitial_exec_tls=false
 * builds with TLS descriptors instead (a load and a cheap call). */
#ifdef IOT_TLS_INITIAL_EXEC
#define IOT_TLS __thread __attribute__((tls_model("initial-exec")))
#else
#define IOT_TLS __thread
#endif

#define IOT_POLL_START_NS     4000     /* first window when polling grows */
#define IOT_IDLE_BH_PERIOD_NS 10000000 /* idle BHs run at least every 10 ms */
#define IOT_EPOLL_THRESHOLD   64       /* AUTO moves to epoll at 64 fds */
#define IOT_FDMON_RETRY_NS    10000000 /* a refused wait: again in 10 ms */
#define IOT_POLL_IDLE_NS                                                       \
    7000000000LL /* io_uring: idle handlers stop polling                       \
                  */

typedef struct IotHandler IotHandler;
typedef struct IotBhSlice IotBhSlice;
typedef struct IotPostQ IotPostQ;
typedef struct IotFdmonOps IotFdmonOps;
typedef struct IotPool IotPool;

/* A list of ready handlers.  [home]; it lives on the stack of one
 * iot_ctx_poll() call, and a handler is on at most one such list. */
/* The callbacks of an iot_ctx_set_event() handler. */
typedef struct IotEventOps {
    IotEventFunc *read, *poll_ready, *poll_begin, *poll_end;
    IotEventPollFunc *poll;
} IotEventOps;

typedef struct IotReadyList {
    IotHandler *head, *tail;
} IotReadyList;

struct IotHandler {
    /* [const] after the handler is published; a change of callbacks makes
     * a new handler. */
    int fd;
    short events;     /* POLLIN|POLLHUP|POLLERR, POLLOUT|POLLERR */
    bool is_notifier; /* the context's own notifier: never progress */
    bool pollable;    /* has io_poll and io_poll_ready */
    IotFdOps ops;
    void *opaque;
    IotEvent *event; /* set for iot_ctx_set_event handlers */
    IotEventOps ev;  /* their callbacks */

    /* [list] the handler list (newest first), walked without the lock. */
    _Atomic(IotHandler *) next;
    IotHandler *prev; /* [list] only writers use it: unlinking is O(1) */
    /* [list] set when the handler is removed or replaced; read by walkers
     * (acquire pairs with the release in fd.c handler_retire()). */
    atomic_bool deleted;
    IotHandler *deleted_next; /* [list] ctx->deleted */

    /* [home] one iteration's state. */
    short revents;
    bool poll_ready;           /* io_poll reported ready */
    IotReadyList *ready_owner; /* the ready list it is on, or NULL */
    IotHandler *ready_prev, *ready_next;

    /* [home, or list with FREEING] busy polling.  A handler is on at most
     * one of the two poll lists (see ctx->ring_head). */
    bool in_poll_list;
    bool on_ring_list;
    IotHandler *poll_prev, *poll_next;
    int64_t poll_ns;            /* adaptive window */
    int64_t poll_idle_deadline; /* [home] io_uring: leave polling after */
    /* [list] replaced by iot_ctx_set_event_poll(): its place on the poll
     * list and its window go to its fd's live handler, as QEMU changes
     * those callbacks in place: at the home thread's next iteration
     * (iot__fd_poll_carry()), or when it is unlinked if that is sooner. */
    bool poll_carry;

    /* [list] backend state. */
    bool epoll_added;
    bool epoll_refused; /* [list] epoll refused it under a GLib source */
    /* io_uring: [list] queued changes, [home] request state. */
    unsigned iou_ops;     /* [list] IOU_ADD / IOU_REMOVE queued */
    IotHandler *iou_next; /* [list] on the change list */
    bool iou_armed;       /* [home] a POLL_ADD is in flight */
    /* [home] poll said POLLNVAL (the fd was closed under it): reported
     * once as an error, then no longer watched; a new handler for the fd
     * watches again.  (io_uring does the same on EBADF.) */
    bool fd_invalid;
    bool iou_removed;           /* [home] its removal was processed */
    IotHandler *iou_rearm_next; /* [home] on the re-arm list */
};

typedef struct IotPollParams {
    int64_t max_ns, grow, shrink;
} IotPollParams;

typedef struct IotTimerList {
    pthread_mutex_t lock;
    IotTimer **heap;    /* [lock] min-heap on (expire, seq) */
    size_t len;         /* [lock] armed timers */
    size_t cap;         /* [lock] slots; >= number of timers */
    size_t ntimers;     /* [lock] timers created on this clock */
    uint64_t seq;       /* [lock] arming counter, FIFO among equals */
    IotTimer *deferred; /* [lock] due timers armed during a running pass */
} IotTimerList;

struct IotCtx {
    atomic_int refcnt; /* [any] */

    /* ---- notify (section 2.3; model: docs/spin/notify.promela) ---- */
    /* [home writes, any reads] bits 1..31: +2 per poll that may block. */
    _Alignas(64) atomic_uint notify_me;
    /* [any sets, home clears] "notified since the loop last accepted". */
    atomic_bool notified;
    IotEvent notifier;         /* [const] */
    IotHandler *notifier_h;    /* [const] its handler, never replaced */
    atomic_ulong notify_kicks; /* [any] eventfd writes done */
    /* [any] flips of `notified` that found the loop awake (no write);
     * on this line, which the flipping producer has just taken. */
    atomic_ulong notify_elided;
    /* [any] when the last eventfd write was decided (iot__now_ns()): the
     * work's arrival, for block_ns (see iot__poll_block_ns()). */
    _Atomic int64_t kick_ns;
    unsigned long kicks_drained; /* [home] notify_kicks at the last drain */
    /* [const] the eventfd blocks, and drains take RWF_NOWAIT: a wait on
     * nothing but the notifier is one read (iot__fd_notifier_wait()) */
    bool notifier_blocks;
    /* [home] that read drained the eventfd: the notifier's dispatch
     * must not read again.  Cleared at every fd wait (poll.c), so that a
     * dispatch dropped or nested away cannot leave it for a later one. */
    bool notifier_drained;
    /* [home] GLib saw the fd it watches readable (glib.c check): the
     * next fd wait is not skipped, whatever the kick counts say */
    bool gsource_saw_fd;
    /* [home] a handler changed on the home thread, which does not notify
     * itself (fd.c handler_set()): the next fd wait must look at the new
     * set, so busy polling ends after one round, as a notify's would.
     * Cleared as the fd wait begins (poll.c). */
    bool fds_changed;
    /* [list sets, home clears] a handler with poll_carry was replaced:
     * the next iteration passes its place on (iot__fd_poll_carry()) */
    atomic_bool poll_carry_pending;
    /* [home writes, tests read] sleeps in that read, counted before */
    atomic_ulong notifier_sleeps;

    /* ---- bottom halves (bh.c) and post queues (postq.h) ---- */
    /* Read by every post; written rarely: a line of its own. */
    _Alignas(64) uint64_t id; /* [const] unique for the process's life */
    atomic_bool post_relaxed; /* [home writes, any reads] see postq.h */
    /* [postq_lock writes, the home thread walks without it] one queue per
     * thread that has posted here, newest first. */
    _Alignas(64) _Atomic(IotPostQ *) postqs;
    pthread_mutex_t postq_lock;
    IotBhSlice *slice_head, *slice_tail; /* [home] batches being run */
    struct IotBhBuf *bh_bufs;            /* [home] a slot array per depth */
    unsigned bh_bufs_n, bh_depth;        /* [home] */
    size_t bh_taken;                     /* [home] slots the latest pass took */
    int64_t postq_look_ns; /* [home] paced stream: next look at the queues */
    IotPostQ *postq_hot;   /* [home] the queue the latest pass took from */
    /* [home] where the next pass starts, after one cut short by a lack
     * of memory (NULL: at the head); see iot__postq_take() */
    IotPostQ *postq_resume;
    int64_t poll_now_ns; /* [home] busy polling's clock, once a round */
    pthread_mutex_t bh_all_lock;
    IotBh *bh_all; /* [bh_all_lock] every BH, for the leak check */
    /* BHs whose post found no memory for the queue (a thread's first
     * post, a new chunk): they wait here instead, oldest first, so that a
     * schedule never fails (bh.c).  [bh_spill_lock]; bh_spill_pending is
     * stored seq_cst under it, before the notify, and read by the home
     * thread after the accept (the Dekker pair of the notify). */
    pthread_mutex_t bh_spill_lock;
    IotBh *bh_spill_head, *bh_spill_tail;
    atomic_bool bh_spill_pending;
    /* [bh_spill_lock] spills made and taken so far; [home] the made
     * count at iot__postq_mark(): a stop waits only for the spills made
     * before it, as for the queues' slots. */
    uint64_t bh_spill_made, bh_spill_taken, bh_spill_mark;

    /* ---- fd handlers ---- */
    IotLockCnt list_lock;
    _Atomic(IotHandler *) handlers; /* [list] */
    IotHandler *deleted;            /* [list] to free, no walker */
    IotHandler **fd_live;           /* [list] the live handler of each fd */
    unsigned epoll_refused_n;       /* [list] live handlers epoll refused */
    /* [list writes, home reads] epoll may come back: a rebuild failed */
    atomic_bool epoll_rebuild_pending;
    unsigned fd_live_n;          /* [list] entries in fd_live */
    atomic_bool deleted_pending; /* [list writes, any reads] */
    atomic_int poll_disable_cnt; /* [list] live without io_poll */
    atomic_int live_cnt;         /* [list] live handlers */
    atomic_int pollable_cnt;     /* [list] live with io_poll */
    /* The poll lists and their counts: [home], or the thread that frees a
     * handler while it holds the list in the FREEING state (no walker, so
     * not the home thread either: handler_unlink() in fd.c). */
    IotHandler *poll_head; /* polled handlers */
    int poll_len;
    /* io_uring: polled handlers without any io_poll callbacks.
     * Busy polling sees their completions in the ring, so they are never
     * walked while polling: only their windows count, through ring_max_ns
     * and the number of handlers at it (the list is walked again only when
     * the last of those shrinks or leaves).  Their 7 s idle rule is
     * checked every IOT_POLL_IDLE_NS / 8 at most. */
    IotHandler *ring_head;
    int ring_len;
    int64_t ring_max_ns;
    int ring_max_cnt;
    bool ring_max_stale;
    int64_t ring_idle_scan_ns;
    bool poll_started; /* [home] io_poll_begin called */
    /* [home] The window of a near timer: a timer due within it is busy
     * polled for instead of slept for (try_poll_mode()).  It adapts as a
     * handler's does, with the time from an iteration's start to the
     * timer that fired in it (poll.c timer_window_adapt()). */
    int64_t timer_poll_ns;
    /* [home] Running an iteration's callbacks (its BHs, fd handlers and
     * timers), after which the iteration returns and the next one
     * computes its timeout afresh: work the home thread publishes now
     * needs no notify (iot__ctx_in_own_dispatch()).  Not while busy
     * polling (io_poll), leaving poll mode (io_poll_end) or outside an
     * iteration (GLib's prepare of another source): the timeout is
     * already computed there. */
    bool dispatching;

    /* ---- fd monitoring backend ---- */
    _Atomic(const IotFdmonOps *) fdmon; /* [list writes, any reads] */
    IotFdmonKind fdmon_kind;            /* [const] as requested */
    void *iou;           /* [list: set once, before fdmon] io_uring state */
    bool iou_failed;     /* [home] AUTO: the ring could not be set up */
    bool epoll_failed;   /* [home] AUTO: epoll could not take every fd */
    bool gsource_pinned; /* [list] a GLib source watches the backend's fd */
    /* [list writes; the home thread reads it once per wait, and only it
     * closes an instance it may be waiting on: see epollfd_dead] or -1 */
    _Atomic int epollfd;
    /* [list writes, home closes] an instance another thread retired while
     * the home thread might be waiting on it, or -1 */
    atomic_int epollfd_dead;
    /* [list] an EPOLL_CTL_DEL failed (the fd was closed before its
     * handler was removed): the instance may still report that handler */
    bool epoll_stale;
    /* [home] io_uring: when polls the kernel refused are armed again
     * (iot__stats_now_ns()), 0 if none waits; iot__ctx_timeout() wakes
     * the loop (or GLib) for it */
    int64_t fdmon_retry_at;
    struct pollfd *pfds;       /* [home] poll backend arrays */
    IotHandler **pfd_handlers; /* [home] */
    size_t pfd_cap;            /* [home] */

    /* ---- polling parameters ---- */
    pthread_mutex_t param_lock;
    IotPollParams param_set;    /* [param_lock] as configured */
    atomic_uint param_gen;      /* [param_lock writes, any reads] */
    IotPollParams param;        /* [home] in force */
    unsigned param_seen;        /* [home] gen of param */
    atomic_llong max_batch;     /* [any] */
    int64_t pool_min, pool_max; /* [param_lock] */
    _Atomic(IotPool *) pool;    /* [param_lock writes] created lazily */

    /* ---- timers ---- */
    IotTimerList timers[IOT_CLOCK_COUNT];

    /* ---- statistics: [home] writes with IOT_STAT_ADD, [any] reads ---- */
    struct {
        _Atomic uint64_t iterations, idle_ns, poll_hits, poll_misses, poll_ns,
            bh_runs, fd_events, timer_fires;
        _Atomic int64_t poll_window_ns;
        _Atomic int64_t epoch_ns;      /* first poll; 0 before */
        _Atomic int64_t wait_start_ns; /* blocked since; 0 when not */
        /* When the home thread stopped driving the context for good (an
         * IOThread's end), 0 before: the clock of busy_ns stops there. */
        _Atomic int64_t end_ns;
        /* Odd while the home thread ends a wait (wait_start_ns back to 0,
         * idle_ns grown by it), so that a reader never sees one change
         * without the other (iot__stats_idle(), ctx.c). */
        _Atomic uint64_t idle_seq;
    } stats;
};

/* Home thread only: a single writer, so a relaxed load and store (no
 * read-modify-write) keep the counter exact and the hot path cheap. */
#define IOT_STAT_ADD(ctx, field, n)                                            \
    atomic_store_explicit(                                                     \
        &(ctx)->stats.field,                                                   \
        atomic_load_explicit(&(ctx)->stats.field, memory_order_relaxed) + (n), \
        memory_order_relaxed)
#define IOT_STAT_SET(ctx, field, v)                                            \
    atomic_store_explicit(&(ctx)->stats.field, (v), memory_order_relaxed)

/* Home thread: the loop starts or ends waiting (blocked in the fd wait,
 * or in GLib's poll), for idle_ns; _end: it will never poll again (an
 * IOThread's last act), and busy_ns stops growing.  Any thread: the time
 * blocked so far, with the wait in progress, and the clock read with it
 * (end_ns once set). */
void iot__stats_wait_begin(IotCtx *ctx);
void iot__stats_wait_end(IotCtx *ctx);
/* Home thread.  Ends an idle wait that is open, if one is: an iteration
 * that runs between GLib's prepare and its poll is busy time. */
void iot__stats_wait_close(IotCtx *ctx);
/* Home thread, GLib's check.  GLib's poll that our prepare began is over:
 * clears prepare's bit of notify_me (release: producers may skip the kick
 * from now on) and ends its idle wait. */
void iot__ctx_gsource_poll_end(IotCtx *ctx);
/* Home thread, walker (fd.c).  Replaced handlers still on the poll list
 * (their free waits, for io_uring, until the kernel lets go) pass their
 * place and window to their fd's live handler now, before poll mode can
 * end without either of them. */
void iot__fd_poll_carry(IotCtx *ctx);
void iot__stats_end(IotCtx *ctx);
uint64_t iot__stats_idle(IotCtx *ctx, int64_t *now);

/* bh.c */
int iot__bh_ctx_init(IotCtx *ctx);    /* 0 or -ENOMEM */
bool iot__bh_poll(IotCtx *ctx);       /* home thread */
int64_t iot__bh_timeout(IotCtx *ctx); /* home thread; 0, idle, -1 */
void iot__bh_ctx_finalize(IotCtx *ctx);

/* fd.c */
int iot__fd_notifier_init(IotCtx *ctx);
/* Home thread, from the backends' waits: see fd.c. */
int iot__fd_notifier_wait(IotCtx *ctx, IotReadyList *ready, bool block);
void iot__fd_notifier_quiet(IotCtx *ctx, unsigned long kicks);
extern int iot__notifier_blocks_allowed; /* tests: 0 keeps it non-blocking */
void iot__fd_ctx_finalize(IotCtx *ctx);
void iot__handlers_free_deleted(IotCtx *ctx); /* home thread, walker */
void iot__ready_push(IotReadyList *list, IotHandler *h);
IotHandler *iot__ready_pop(IotReadyList *list);

/* fdmon-io_uring.c: the ring cache.  Tests: how many rings it may keep
 * (at most 4), how many contexts took one, and closing them all. */
extern unsigned iot__io_uring_cache_max;
extern atomic_ulong iot__io_uring_cache_hits;
void iot__io_uring_cache_flush(void);
/* Tests, home thread: a NOP on the context's ring with @user_data, which
 * the ring does not count as its own (as liburing's timeout requests). */
int iot__io_uring_nop(IotCtx *ctx, uint64_t user_data);

/* pool.c */
void iot__pool_free(IotCtx *ctx); /* finalize: waits for the workers */
/* The home thread, its last act as an IOThread: nobody runs the spawn BH
 * now, so sizes set from now on start no worker (nor count one), until
 * a thread takes the context (iot_ctx_set_current() calls
 * iot__pool_home_taken(), which starts what the sizes and the queued
 * work then need). */
void iot__pool_loop_ended(IotCtx *ctx);
void iot__pool_home_taken(IotCtx *ctx);
bool iot__pool_is_worker_of(IotCtx *ctx); /* any thread: is it ours? */
extern int64_t iot__pool_idle_ns;  /* idle worker timeout; tests shorten it */
extern int64_t iot__pool_retry_ns; /* no worker could start: again after */
/* Tests: called by a worker whose idle timeout expired with nothing
 * queued, lock held, off the idle stack, just before it leaves. */
extern void (*_Atomic iot__pool_timeout_hook)(void);
/* Tests: how the pool starts a worker (pthread_create); set it before
 * the pool exists. */
extern int (*iot__pool_thread_create)(pthread_t *, const pthread_attr_t *,
                                      void *(*)(void *), void *);
/* Tests: hold or release the pool's lock (the pool must exist), and the
 * queued count read without it. */
void iot__pool_lock_for_test(IotCtx *ctx, bool lock);
unsigned iot__pool_queued(IotCtx *ctx);
size_t iot__pool_done_waiting(IotCtx *ctx); /* home thread; tests */

/* iothread.c.  Tests: called in each property update, between the copy
 * of the stored values and the store of the new ones. */
extern void (*iot__thread_update_hook)(void);

/* timer.c */
void iot__timers_init(IotCtx *ctx);
void iot__timers_finalize(IotCtx *ctx);
int64_t iot__timers_deadline(IotCtx *ctx); /* any thread */
bool iot__timers_run(IotCtx *ctx);         /* home thread */

/* poll.c: the adaptive polling rule of section 3.5, pure for testing. */
int64_t iot__poll_adjust(int64_t window, int64_t block_ns,
                         const IotPollParams *p);
int64_t iot__poll_block_ns(int64_t start, int64_t end, int64_t kick,
                           bool slept);
void iot__poll_list_add(IotCtx *ctx, IotHandler *h);    /* home */
void iot__poll_list_remove(IotCtx *ctx, IotHandler *h); /* home or FREEING */

/* poll.c, for the GLib source */
/* Home thread: GLib's dispatch, a non-blocking iteration that leaves
 * poll mode (running what the last io_poll finds) and adjusts no window. */
bool iot__ctx_poll_gsource(IotCtx *ctx);
int64_t iot__ctx_timeout(IotCtx *ctx); /* home thread: BHs and timers */
/* Home thread: consumes a notification (`notified`), with the barrier
 * after which the work it announced is seen. */
void iot__ctx_notify_accept(IotCtx *ctx);
/* Home thread: takes poll parameters set since the last iteration (every
 * window back to 0), as an iteration's start does. */
void iot__ctx_params_refresh(IotCtx *ctx);

/* ctx.c */
static inline const IotFdmonOps *iot__fdmon(IotCtx *ctx)
{
    return atomic_load_explicit(&ctx->fdmon, memory_order_acquire);
}
int64_t iot__now_ns(void); /* CLOCK_MONOTONIC: busy polling and block_ns */
int64_t iot__stats_now_ns(void); /* CLOCK_MONOTONIC, never the test clock */
/* Tests only: when set, iot__now_ns() returns what this returns, so that
 * the adaptive-polling arithmetic can be driven exactly.  Set it before
 * any thread polls, and before any stream of posts (a pace set by the
 * real clock is far in a fake clock's future); it is not synchronised. */
extern int64_t (*iot__test_clock)(void);

/* Any thread.  Is the caller @ctx's home thread, running an iteration's
 * callbacks (ctx->dispatching)?  Then what it publishes is seen by the
 * next timeout computation, and a notify would only leave `notified` set
 * (a self-rescheduling idle BH would spin the loop on it).  The home
 * test comes first: only that thread may read the flag. */
static inline bool iot__ctx_in_own_dispatch(IotCtx *ctx)
{
    return iot_ctx_current() == ctx && ctx->dispatching;
}

/* A full barrier: every earlier store, even a plain one, is visible
 * before any later load (smp_mb()).  TSan does not take
 * atomic_thread_fence(), but its code still runs on a CPU with a store
 * buffer: there the same instruction is spelt out (TSan does not see it,
 * and has no store buffer of its own to model). */
static inline void iot__smp_mb(void)
{
#if !defined(__SANITIZE_THREAD__)
    atomic_thread_fence(memory_order_seq_cst);
#elif defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("mfence" ::: "memory");
#elif defined(__aarch64__)
    __asm__ volatile("dmb ish" ::: "memory");
#else
#error "a full barrier for this CPU under TSan"
#endif
}

/* After a seq_cst read-modify-write: a full barrier for the plain and
 * relaxed loads that follow (Linux's smp_mb__after_atomic()).  On x86 the
 * locked instruction already is one. */
static inline void iot__smp_mb_after_rmw(void)
{
#if defined(__x86_64__) || defined(__i386__)
    atomic_signal_fence(memory_order_seq_cst);
#else
    iot__smp_mb();
#endif
}

/* Any thread.  iot_ctx_notify() without its first barrier, for a caller
 * whose publication was a seq_cst store or read-modify-write (a post, a
 * BH's flags), which already comes before the load of `notified` in the
 * single order. */
void iot__ctx_notify_published(IotCtx *ctx);

/* Smaller of two timeouts where -1 means infinite. */
static inline int64_t iot__timeout_min(int64_t a, int64_t b)
{
    return (uint64_t)a < (uint64_t)b ? a : b;
}

#endif
