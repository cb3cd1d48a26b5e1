/* SPDX-License-Identifier: MIT */
/*
 * libiothread: the loop context (QEMU's AioContext).
 *
 * A context is an event loop: bottom halves (bh.h), fd handlers and event
 * notifiers (fd.h) and timers (timer.h), run by iot_ctx_poll() on the
 * context's home thread.  The home thread is the thread whose current
 * context it is (iot_ctx_set_current()); an IOThread (iothread.h) makes its
 * own thread the home of its context.
 *
 * Thread rules, repeated on each function:
 *  - "any thread": safe to call concurrently from any thread, including
 *    from callbacks running on the context;
 *  - "home thread": only the context's home thread, and never
 *    concurrently with itself except by nesting from a callback.
 */
#ifndef IOTHREAD_CTX_H
#define IOTHREAD_CTX_H

#include <stdbool.h>
#include <stdint.h>
#include <iothread/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct IotCtx IotCtx;

/* fd monitoring backends.  AUTO starts with poll(2) and moves to io_uring,
 * where it can be set up, once a handler besides the context's own is
 * registered; without io_uring it moves to epoll for good once 64 fds are
 * registered (see docs/design.md).  A backend asked for by name that
 * cannot be set up makes iot_ctx_new_full() fail. */
typedef enum IotFdmonKind {
    IOT_FDMON_AUTO = 0,
    IOT_FDMON_POLL,
    IOT_FDMON_EPOLL,
    IOT_FDMON_IO_URING,
} IotFdmonKind;

typedef struct IotCtxOptions {
    /* Which backend to use.  AUTO honours the IOTHREAD_FDMON environment
     * variable ("auto", "poll", "epoll", "io_uring") when it is set. */
    IotFdmonKind fdmon;
    /* Reserved; set to zero. */
    uint64_t reserved[7];
} IotCtxOptions;

/* Any thread.  A new context with one reference, polling disabled
 * (poll-max-ns 0, as in QEMU; IOThreads enable it), no home thread yet.
 * Returns NULL and sets *errp on failure. */
IOT_API IotCtx *iot_ctx_new(IotError **errp);
IOT_API IotCtx *iot_ctx_new_full(const IotCtxOptions *opts, IotError **errp);

/* Any thread. */
IOT_API void iot_ctx_ref(IotCtx *ctx);
/* Any thread.  The last unref finalizes the context: the thread pool is
 * freed, deleted BHs are freed, and a BH that was never deleted aborts the
 * program with its name.  One-shots still queued are dropped without
 * running (their opaque is not freed: QEMU aborts instead).  It must not be
 * polled concurrently, and its home thread must have detached first
 * (iot_ctx_set_current(NULL)): only the finalizing thread's own current pointer
 * is cleared. */
IOT_API void iot_ctx_unref(IotCtx *ctx);

/* Home thread.  One loop iteration, in QEMU's order: busy polling, the fd
 * wait (never blocking unless @blocking), bottom halves, fd handlers,
 * then timers.  Returns true if any observable work ran: a non-idle BH,
 * an fd callback, an io_poll_ready callback or a timer.  Waking up through
 * iot_ctx_notify() and idle BHs are never progress, so a blocking call may
 * return false.  May be nested from callbacks.  A signal need not end a
 * blocking wait (a wait in read(2) restarts under SA_RESTART): a handler
 * that wants the loop to look calls iot_ctx_notify(). */
IOT_API bool iot_ctx_poll(IotCtx *ctx, bool blocking);

/* Any thread, and async-signal-safe.  Makes the context's current or next
 * iot_ctx_poll() return instead of blocking.  Costs no system call while
 * the loop is awake.
 * Whatever the caller stored before calling, with any store, is visible
 * to the loop thread once that iot_ctx_poll() returns (a condition a loop
 * re-checks around iot_ctx_poll(), as QEMU's AIO_WAIT_WHILE does). */
IOT_API void iot_ctx_notify(IotCtx *ctx);

/* Any thread.  The context whose home is the calling thread, or NULL. */
IOT_API IotCtx *iot_ctx_current(void);
/* Any thread, for itself.  Makes the calling thread the home of @ctx
 * (NULL detaches).  A thread has one current context: setting another
 * while one is set returns -EBUSY.  The caller keeps the reference. */
IOT_API int iot_ctx_set_current(IotCtx *ctx);

/* The main context: the program's main thread's loop.
 * iot_ctx_main_init(): main thread, once; creates the context and makes it
 * current for the calling thread.  iot_ctx_main(): any thread; the main
 * context or NULL.  iot_ctx_main_fini(): main thread; drops it. */
IOT_API IotCtx *iot_ctx_main_init(IotError **errp);
IOT_API IotCtx *iot_ctx_main(void);
IOT_API void iot_ctx_main_fini(void);

/* Adaptive polling parameters (section 3 of the specification):
 * @max_ns: longest busy-poll window, 0 disables polling;
 * @grow: multiplier when a window grows, 0 means 2;
 * @shrink: divisor when a window shrinks, 0 means reset to 0.
 * Any thread.  All three are stored together; the home thread picks them
 * up at the start of its next iteration, and then resets every handler's
 * window to 0.  Negative values return -EINVAL and change nothing. */
IOT_API int iot_ctx_set_poll_params(IotCtx *ctx, int64_t max_ns, int64_t grow,
                                    int64_t shrink);
/* Any thread.  The values last set (configured, not effective). */
IOT_API void iot_ctx_get_poll_params(IotCtx *ctx, int64_t *max_ns,
                                     int64_t *grow, int64_t *shrink);

/* aio-max-batch: the most requests submitted in one batch by an I/O
 * engine on this context, 0 meaning the engine's default.  Any thread.
 * Negative returns -EINVAL. */
IOT_API int iot_ctx_set_max_batch(IotCtx *ctx, int64_t max_batch);
IOT_API int64_t iot_ctx_get_max_batch(IotCtx *ctx);

/* Any thread.  The fd monitoring backend in use: "poll", "epoll" or
 * "io_uring". */
IOT_API const char *iot_ctx_fdmon_name(IotCtx *ctx);

/* Live statistics of a context.  Each counter is written only by the home
 * thread and read with relaxed atomics: a snapshot may mix values from
 * two iterations, never torn ones.  busy_ns and idle_ns are read together
 * and never go back; once an IOThread has stopped, they stay as they were.
 * Times are CLOCK_MONOTONIC ns. */
typedef struct IotCtxStats {
    uint64_t iterations;    /* iot_ctx_poll() calls, nested ones and GLib
                               dispatches too */
    uint64_t busy_ns;       /* since the first poll, minus idle_ns */
    uint64_t idle_ns;       /* blocked in the fd wait, or in GLib's poll */
    uint64_t poll_hits;     /* busy-poll stretches that found work, or
                               lasted until the iteration's timeout (a
                               timer, or an idle BH's period, is due) */
    uint64_t poll_misses;   /* busy-poll stretches that ended empty (one
                               that io_uring ends for its own submissions
                               is neither) */
    uint64_t poll_ns;       /* time spent busy polling */
    int64_t poll_window_ns; /* largest handler window at the last poll */
    uint64_t notify_sent;   /* eventfd writes to wake the loop */
    /* Notifications that needed no write (the loop was awake) */
    uint64_t notify_elided;
    uint64_t bh_runs;     /* BH callbacks run */
    uint64_t fd_events;   /* fd and poll-ready callbacks run */
    uint64_t timer_fires; /* timer callbacks run */
    unsigned pool_threads, pool_queued, pool_active;
    const char *backend; /* "poll", "epoll" or "io_uring" */
} IotCtxStats;

/* Any thread. */
IOT_API void iot_ctx_get_stats(IotCtx *ctx, IotCtxStats *stats);

#ifdef __cplusplus
}
#endif
#endif
