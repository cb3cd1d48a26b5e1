/* SPDX-License-Identifier: MIT */
/*
 * libiothread: the per-context thread pool (section 5 of the
 * specification).
 *
 * Blocking work submitted on a context's home thread runs on a worker
 * thread; its completion callback runs back on the home thread.  The pool
 * is created on first use, keeps thread-pool-min workers alive, never runs
 * more than thread-pool-max, and lets idle workers above the minimum exit
 * after 10 s.  Completions run in the order the work finished.  A pass of
 * the loop runs those that had finished when it began; work that finishes
 * meanwhile waits for the next pass (QEMU's completion BH goes on until
 * none is left, so completions that submit more work can hold its loop).
 */
#ifndef IOTHREAD_POOL_H
#define IOTHREAD_POOL_H

#include <stdint.h>
#include <iothread/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct IotWork IotWork;
/* Runs on a worker thread; its return value is passed to the completion. */
typedef int IotWorkFunc(void *arg);
/* Runs on the home thread, exactly once per submitted work item. */
typedef void IotWorkDoneFunc(void *opaque, int ret);

#define IOT_POOL_MAX_DEFAULT 64

/* Home thread.  Queues @func(@arg); @done(@opaque, ret) runs on the home
 * thread when it has finished (or was cancelled).  @done may be NULL.
 * Returns the work item, valid until its completion has run, or NULL with
 * errno set if memory is exhausted (ENOMEM) or @func is NULL (EINVAL). */
IOT_API IotWork *iot_pool_submit(IotCtx *ctx, IotWorkFunc *func, void *arg,
                                 IotWorkDoneFunc *done, void *opaque);

/* Home thread.  Work that has not started completes with -ECANCELED;
 * work that has started runs to the end.  Either way its completion runs
 * exactly once, later, from the loop.  Only valid before the completion. */
IOT_API void iot_pool_cancel(IotWork *work);

/* Any thread.  thread-pool-min and thread-pool-max: 0 <= min <= max,
 * 1 <= max <= INT_MAX, else -EINVAL and nothing changes.  Applied at once
 * to a running pool: workers are started up to @min, and surplus idle
 * workers above @max exit. */
IOT_API int iot_ctx_set_pool_size(IotCtx *ctx, int64_t min, int64_t max);
IOT_API void iot_ctx_get_pool_size(IotCtx *ctx, int64_t *min, int64_t *max);

typedef struct IotPoolStats {
    unsigned threads; /* workers alive (and being started) */
    unsigned idle;    /* waiting for work */
    unsigned queued;  /* submitted, not started */
    unsigned active;  /* running on a worker */
} IotPoolStats;

/* Any thread.  All zero if the pool has not been created. */
IOT_API void iot_ctx_pool_stats(IotCtx *ctx, IotPoolStats *stats);

#ifdef __cplusplus
}
#endif
#endif
