/* SPDX-License-Identifier: MIT */
/*
 * libiothread: timers.
 *
 * Each context keeps one min-heap per clock (O(log n) arm and cancel),
 * ordered by deadline and, among equal deadlines, by arming order (FIFO).
 * Timers run on the home thread after BHs and fd handlers.  Arming,
 * re-arming and cancelling are allowed from any thread; the loop is woken
 * only when the context's earliest deadline on that clock moves earlier.
 *
 * A pass over a clock samples "now" once and runs every timer due by then.
 * A timer re-armed from a callback to a deadline that is already due runs
 * in the next iteration, not in the same pass, so re-arming at "now" cannot
 * livelock the loop (QEMU runs it again in the same pass).
 */
#ifndef IOTHREAD_TIMER_H
#define IOTHREAD_TIMER_H

#include <stdbool.h>
#include <stdint.h>
#include <iothread/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum IotClock {
    IOT_CLOCK_MONOTONIC = 0, /* CLOCK_MONOTONIC (QEMU's REALTIME clock) */
    IOT_CLOCK_WALL = 1,      /* CLOCK_REALTIME: jumps with the system time */
    IOT_CLOCK_COUNT
} IotClock;

#define IOT_NS_PER_US 1000LL
#define IOT_NS_PER_MS 1000000LL
#define IOT_NS_PER_S  1000000000LL

typedef struct IotTimer IotTimer;
typedef void IotTimerFunc(void *opaque);

/* Any thread.  The current time of @clock in ns. */
IOT_API int64_t iot_clock_ns(IotClock clock);

/* Any thread.  A timer that is not armed.  NULL on -ENOMEM or a bad clock. */
IOT_API IotTimer *iot_timer_new(IotCtx *ctx, IotClock clock, IotTimerFunc *cb,
                                void *opaque);
/* Home thread, or any thread once nothing can arm or run the timer any
 * more.  Cancels it first. */
IOT_API void iot_timer_free(IotTimer *t);

/* Any thread.  Arms (or re-arms) the timer to fire at @expire_ns on its
 * clock; a negative deadline counts as 0. */
IOT_API void iot_timer_mod(IotTimer *t, int64_t expire_ns);
/* Any thread.  Like iot_timer_mod, but only ever moves the deadline
 * earlier (or arms a timer that is not armed). */
IOT_API void iot_timer_mod_anticipate(IotTimer *t, int64_t expire_ns);
/* Any thread.  Cancels; no-op if not armed. */
IOT_API void iot_timer_del(IotTimer *t);
/* Any thread. */
IOT_API bool iot_timer_pending(IotTimer *t);
/* Any thread.  The deadline, or -1 if not armed. */
IOT_API int64_t iot_timer_expire_ns(IotTimer *t);

/* Any thread.  ns until the context's earliest timer is due (0 if one is
 * due now), or -1 if none is armed. */
IOT_API int64_t iot_ctx_timer_deadline_ns(IotCtx *ctx);

#ifdef __cplusplus
}
#endif
#endif
