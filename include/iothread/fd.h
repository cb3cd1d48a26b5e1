/* SPDX-License-Identifier: MIT */
/*
 * libiothread: fd handlers and event notifiers.
 *
 * A context has at most one handler per fd.  Setting a handler for an fd
 * that has one replaces it; setting one with no callbacks removes it.  Both
 * are allowed from any thread and from inside callbacks.  A handler removed
 * or replaced while the loop dispatches never has another of its callbacks
 * called, and its memory lives until no walker of the handler list can see
 * it.  fd handlers are level-triggered.
 *
 * Polling callbacks (section 3 of the specification): io_poll(opaque)
 * checks readiness without a system call and returns true if ready; the
 * loop then calls io_poll_ready(opaque) to do the work.  io_poll without
 * io_poll_ready is ignored.  io_poll_begin/io_poll_end bracket a stretch of
 * busy polling (e.g. to turn a device's notifications off and on again);
 * begin is not always paired with end if the handler goes away meanwhile.
 */
#ifndef IOTHREAD_FD_H
#define IOTHREAD_FD_H

#include <stdbool.h>
#include <stdint.h>
#include <iothread/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void IotFdFunc(void *opaque);
typedef bool IotPollFunc(void *opaque);

typedef struct IotFdOps {
    IotFdFunc *read;       /* fd readable, or hung up, or in error */
    IotFdFunc *write;      /* fd writable, or in error */
    IotPollFunc *poll;     /* ready?  no system call, no side effect */
    IotFdFunc *poll_ready; /* do the work that poll found */
    IotFdFunc *poll_begin; /* busy polling starts */
    IotFdFunc *poll_end;   /* busy polling ends */
} IotFdOps;

/* Any thread.  Sets, replaces (@ops with any callback) or removes (@ops
 * NULL or without read, write and poll) the handler of @fd.  Removing an
 * fd that has no handler is a no-op.  Returns 0 or a negative errno
 * (-ENOMEM, -EINVAL for a negative fd, -EBADF for one that is not open;
 * a removal needs no open fd).  An fd closed while watched is reported
 * once as an error where the backend can see it (poll: POLLNVAL; io_uring:
 * EBADF at a re-arm; epoll drops it by itself), and then no longer
 * watched until its handler is set again. */
IOT_API int iot_fd_set(IotCtx *ctx, int fd, const IotFdOps *ops, void *opaque);

/* QEMU's aio_set_fd_handler() shape. */
IOT_API int iot_fd_set_handler(IotCtx *ctx, int fd, IotFdFunc *io_read,
                               IotFdFunc *io_write, IotPollFunc *io_poll,
                               IotFdFunc *io_poll_ready, void *opaque);

/* Home thread.  The adaptive busy-poll window of @fd's handler in ns, or
 * -1 if it has no handler.  For tests and statistics. */
IOT_API int64_t iot_fd_poll_window(IotCtx *ctx, int fd);

/*
 * Event notifiers: an eventfd used as a level-triggered doorbell.
 * The struct is the caller's; its fields are private.
 */
typedef struct IotEvent {
    int rfd; /* private */
    int wfd; /* private: == rfd for an eventfd, a pipe's write end else */
} IotEvent;

typedef void IotEventFunc(IotEvent *e);
typedef bool IotEventPollFunc(IotEvent *e);

/* Any thread.  Returns 0 or a negative errno.  @active starts it set. */
IOT_API int iot_event_init(IotEvent *e, bool active);
IOT_API void iot_event_cleanup(IotEvent *e);
/* Any thread, async-signal-safe.  Returns 0 or a negative errno. */
IOT_API int iot_event_set(IotEvent *e);
/* Any thread.  Drains the counter; true if it was set. */
IOT_API bool iot_event_test_and_clear(IotEvent *e);
IOT_API int iot_event_fd(const IotEvent *e);

/* Any thread.  An fd handler on @e's fd whose callbacks get @e: @read when
 * set, @poll/@poll_ready for busy polling.  All NULL removes it. */
IOT_API int iot_ctx_set_event(IotCtx *ctx, IotEvent *e, IotEventFunc *read,
                              IotEventPollFunc *poll, IotEventFunc *poll_ready);
/* Any thread.  Adds io_poll_begin/io_poll_end to @e's handler.  Returns
 * -ENOENT if @e has no handler on @ctx. */
IOT_API int iot_ctx_set_event_poll(IotCtx *ctx, IotEvent *e,
                                   IotEventFunc *poll_begin,
                                   IotEventFunc *poll_end);

#ifdef __cplusplus
}
#endif
#endif
