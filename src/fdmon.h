/* SPDX-License-Identifier: MIT */
/*
 * fd monitoring backends behind one small ops table.
 *
 * The context starts on the backend asked for (IotCtxOptions.fdmon, or the
 * IOTHREAD_FDMON environment variable for AUTO).  AUTO starts on poll(2):
 * a context that only runs BHs and timers watches nothing but its own
 * eventfd, and a ring would cost its setup and teardown (~50 us) for
 * nothing.  The first wait that sees a handler besides the notifier moves
 * it to io_uring (QEMU 10.2's default), set up by the home thread; if
 * io_uring is not built or cannot be set up (sysctl io_uring_disabled,
 * seccomp, ENOMEM, an old kernel) it stays on poll, whose per-wait cost
 * grows with the number of fds but needs no extra fd, and which moves to
 * epoll for good when a wait sees 64 or more live handlers (QEMU's
 * threshold).  epoll falls back to poll if an epoll_ctl fails (keeping
 * its fd open if GLib watches it: glib.c then does not sleep, until the
 * refused handlers are gone and epoll comes back).  A GLib
 * source on an AUTO context that has no ring yet moves it to epoll.
 */
#ifndef IOT_FDMON_H
#define IOT_FDMON_H

#include "ctx-internal.h"

struct IotFdmonOps {
    const char *name;
    /* List mutex held.  @old is being removed or replaced by @new; either
     * may be NULL.  Must not fail: a backend that cannot follow the change
     * hands over to poll, which needs no registration. */
    void (*update)(IotCtx *ctx, IotHandler *old, IotHandler *new_);
    /* Home thread, as a walker.  Waits up to @timeout_ns (-1: no limit, 0:
     * do not block), then pushes each ready handler, with its revents set,
     * onto @ready.  Returns how many, or a negative errno. */
    int (*wait)(IotCtx *ctx, IotReadyList *ready, int64_t timeout_ns);
    /* Home thread.  True if busy polling must give way to wait(): poll and
     * epoll cannot see fds from user space, so any live handler without
     * io_poll stops busy polling. */
    bool (*need_wait)(IotCtx *ctx);
    /* List mutex held, optional.  @h was removed or replaced: true if the
     * backend frees it later (io_uring, once its poll request is gone);
     * false to let the generic code free it when no walker can see it. */
    bool (*retire)(IotCtx *ctx, IotHandler *h);
    /* Home thread, optional.  Hand queued changes to the kernel before
     * GLib's poll (the GSource's prepare). */
    void (*prepare)(IotCtx *ctx);
    /* Home thread, optional (with userspace_poll).  After need_wait():
     * true if it stopped busy polling for events (completions to reap),
     * false if only for the backend's own work (requests to submit,
     * changes to queue), which is neither a hit nor a miss. */
    bool (*has_events)(IotCtx *ctx);
    /* True if completions can be seen from user space, so that handlers
     * without io_poll take part in busy polling (need_wait watches them)
     * and idle polled handlers may leave the poll list. */
    bool userspace_poll;
};

extern const IotFdmonOps iot__fdmon_poll_ops;
extern const IotFdmonOps iot__fdmon_epoll_ops;
extern const IotFdmonOps iot__fdmon_io_uring_ops;

/* Any thread, before the context is shared.  Picks the backend. */
int iot__fdmon_setup(IotCtx *ctx, IotFdmonKind kind, IotError **errp);
void iot__fdmon_teardown(IotCtx *ctx);

/* List mutex held.  Registers every live handler with a new epoll fd and
 * switches to it.  Returns 0 or a negative errno (and stays on poll).
 * Under a GLib source (gsource_pinned), a handler epoll refuses does not
 * fail it: the fd is made for GLib, and the context stays on poll until
 * the refused handlers are gone (iot__fdmon_epoll_refused_gone()). */
int iot__fdmon_epoll_enable(IotCtx *ctx);
/* List mutex held, any thread.  Back to poll.  The epoll fd stays open if
 * a GLib source watches it; else the home thread closes it at its next
 * wait (iot__fdmon_epoll_reap()), as it may be waiting on it now. */
void iot__fdmon_epoll_disable(IotCtx *ctx);
/* Home thread (or finalize).  Closes an instance iot__fdmon_epoll_disable()
 * retired. */
void iot__fdmon_epoll_reap(IotCtx *ctx);
/* List mutex held.  A handler epoll refused under a GLib source is gone;
 * with the last of them the context goes back to epoll, behind the same
 * fd number. */
void iot__fdmon_epoll_refused_gone(IotCtx *ctx);
/* List mutex held, any thread: a handler was retired (deleted set), not
 * yet freed.  If a failed DEL left the epoll instance able to report it,
 * a new instance replaces it now, before the handler can be freed. */
void iot__fdmon_epoll_unstale(IotCtx *ctx);
/* List mutex held, after a handler change.  Replaces an epoll instance
 * that may report a removed handler (a DEL that failed), and tries again
 * a rebuild that failed (see above); cheap when neither is due. */
void iot__fdmon_epoll_retry(IotCtx *ctx);

bool iot__fdmon_poll_disabled(IotCtx *ctx);
/* Tests: while set, the poll backend's array cannot grow (ENOMEM). */
extern bool iot__fdmon_poll_fail_grow;
/* How long a backend refused by the kernel or memory waits before it
 * tries again: IOT_FDMON_RETRY_NS; tests may change it. */
extern int64_t iot__fdmon_retry_ns;
/* Tests: epoll instances made so far (setups and rebuilds). */
extern atomic_ulong iot__epoll_instances;

/* Any thread, before the context is shared.  Sets up io_uring; 0 or a
 * negative errno (-ENOSYS when built without liburing). */
int iot__fdmon_io_uring_setup(IotCtx *ctx);
/* Home thread, list mutex held.  AUTO: moves the context from poll to a
 * new ring, registering every live handler.  0 or a negative errno (and
 * stays on poll). */
int iot__fdmon_io_uring_enable(IotCtx *ctx);
/* Any thread, no poll running.  The ring goes to the ring cache if
 * nothing is in flight on it, else it is closed. */
void iot__fdmon_io_uring_teardown(IotCtx *ctx);
/* Home thread, which polls the context no more (an IOThread on its way
 * out).  Cancels every request on the ring and reaps the completions,
 * dropping their events, so that the ring can be reused.  A later poll
 * re-arms the handlers. */
void iot__fdmon_io_uring_quiesce(IotCtx *ctx);
/* Tests: the next N poll requests are refused by the kernel (EINVAL). */
extern int iot__io_uring_poll_fail;
/* Tests: called by the backend's prepare after it took the queued fd
 * changes (a window for another thread to queue one behind them). */
extern void (*iot__io_uring_prepare_hook)(IotCtx *ctx);
/* Home thread, tests: submissions forced by aio-max-batch so far. */
unsigned long iot__io_uring_batch_submits(IotCtx *ctx);
/* Home thread.  The fd GLib should watch: the ring's, or the epoll fd
 * (switching poll to epoll).  Negative errno on failure. */
int iot__fdmon_gsource_fd(IotCtx *ctx);

#endif
