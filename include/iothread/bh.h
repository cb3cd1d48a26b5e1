/* SPDX-License-Identifier: MIT */
/*
 * libiothread: bottom halves.
 *
 * A bottom half (BH) is a callback that runs once on its context's home
 * thread each time it is scheduled.  Scheduling may happen from any
 * thread and is lock-free: each thread posts into its own queue into the
 * context.  BHs run in the order their thread first scheduled them (FIFO
 * per scheduling thread within a batch; QEMU is LIFO by accident); BHs
 * scheduled by different threads run in no promised order.  Scheduling,
 * cancelling and deleting a BH never fail: where the queue cannot grow
 * (memory exhausted), the BH waits on a list of the context's under a
 * lock instead, and still runs, but after what its pass took from the
 * queues (so not in its thread's order); a one-shot, which has no object
 * to wait in, returns -ENOMEM.
 *
 * Rules (section 2.2 of the specification):
 *  - a BH scheduled while BHs run waits for the next iteration, except that
 *    a nested iot_ctx_poll() from a callback also runs its parents' pending
 *    BHs;
 *  - scheduling a BH that is already pending neither duplicates nor moves it;
 *  - idle BHs run at least every 10 ms and are never progress;
 *  - delete is asynchronous: the loop frees the BH, and the BH must not be
 *    used after iot_bh_delete();
 *  - a BH that is neither deleted nor one-shot when its context is
 *    finalized aborts the program with the BH's name.
 */
#ifndef IOTHREAD_BH_H
#define IOTHREAD_BH_H

#include <iothread/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct IotBh IotBh;
typedef void IotBhFunc(void *opaque);

/* Any thread.  @name is kept by pointer (use a string literal) and names
 * the BH in leak reports.  NULL with errno set if memory is exhausted
 * (ENOMEM) or @cb is NULL (EINVAL). */
IOT_API IotBh *iot_bh_new_full(IotCtx *ctx, IotBhFunc *cb, void *opaque,
                               const char *name);
#define iot_bh_new(ctx, cb, opaque) iot_bh_new_full((ctx), (cb), (opaque), #cb)

/* Any thread.  Run the callback once, in the next iteration.  A BH
 * pending as idle becomes a normal one. */
IOT_API void iot_bh_schedule(IotBh *bh);
/* Any thread.  Like schedule (it wakes the loop too), but running it is
 * not progress, and while it is the only work pending the loop sleeps at
 * most 10 ms at a time.  A BH already pending as a normal one stays so. */
IOT_API void iot_bh_schedule_idle(IotBh *bh);
/* Any thread.  Undo a schedule that has not run yet.  It races with a
 * running loop unless the caller orders itself with the home thread. */
IOT_API void iot_bh_cancel(IotBh *bh);
/* Any thread.  No run starts after it; the loop frees the BH.  On the
 * home thread (the callback included) nothing of it runs any more.  From
 * another thread, a run the loop has already begun (it took the BH, and
 * may not have called the callback yet) still completes after the delete
 * returns, as in QEMU: before freeing what the callback uses, order
 * yourself with the home thread, e.g. by waiting for a one-shot
 * scheduled after the delete. */
IOT_API void iot_bh_delete(IotBh *bh);

/* Any thread.  Run @cb(@opaque) once in the next iteration; the BH frees
 * itself.  Returns 0, -ENOMEM, or -EINVAL if @cb is NULL. */
IOT_API int iot_bh_schedule_oneshot_full(IotCtx *ctx, IotBhFunc *cb,
                                         void *opaque, const char *name);
#define iot_bh_schedule_oneshot(ctx, cb, opaque)                               \
    iot_bh_schedule_oneshot_full((ctx), (cb), (opaque), #cb)

/* Any thread.  The name given at creation. */
IOT_API const char *iot_bh_name(const IotBh *bh);

#ifdef __cplusplus
}
#endif
#endif
