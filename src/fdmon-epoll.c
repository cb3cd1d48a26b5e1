/* SPDX-License-Identifier: MIT */
/*
 * The epoll backend: handlers are registered on change (under the list
 * mutex) with the handler pointer as user data, so a wait costs O(ready)
 * rather than O(registered).  Timeouts keep ns precision with
 * epoll_pwait2() where the kernel has it (5.11+), else a ppoll() on the
 * epoll fd first, as QEMU does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fdmon.h"

#define EPOLL_MAX_EVENTS 128

atomic_ulong iot__epoll_instances;

static uint32_t epoll_events_of(short events)
{
    return (events & POLLIN ? EPOLLIN : 0) | (events & POLLOUT ? EPOLLOUT : 0) |
           (events & POLLHUP ? EPOLLHUP : 0) |
           (events & POLLERR ? EPOLLERR : 0);
}

static short poll_events_of(uint32_t ev)
{
    return (ev & EPOLLIN ? POLLIN : 0) | (ev & EPOLLOUT ? POLLOUT : 0) |
           (ev & EPOLLHUP ? POLLHUP : 0) | (ev & EPOLLERR ? POLLERR : 0);
}

/* Mutex held.  Returns 0 or a negative errno. */
static int epoll_register(IotCtx *ctx, int op, IotHandler *h)
{
    struct epoll_event ev = { .events = epoll_events_of(h->events),
                              .data.ptr = h };

    return epoll_ctl(ctx->epollfd, op, h->fd, &ev) < 0 ? -errno : 0;
}

static void epoll_update(IotCtx *ctx, IotHandler *old, IotHandler *new_)
{
    bool old_in = old && old->epoll_added;
    bool new_in = new_ && new_->events;
    int ret = 0;

    if (old_in && new_in) {
        ret = epoll_register(ctx, EPOLL_CTL_MOD, new_);
    } else if (old_in) {
        struct epoll_event ev = { 0 };
        /* A DEL fails when the fd was closed first (EBADF) or its number
         * reused (ENOENT).  If the file is still open elsewhere (a dup, a
         * child), epoll keeps the registration, and its events would hand
         * us @old after it is freed: a new instance replaces this one once
         * @old is retired (iot__fdmon_epoll_retry()). */
        if (epoll_ctl(ctx->epollfd, EPOLL_CTL_DEL, old->fd, &ev) < 0) {
            ctx->epoll_stale = true;
        }
    } else if (new_in) {
        ret = epoll_register(ctx, EPOLL_CTL_ADD, new_);
    }
    if (old) {
        old->epoll_added = false;
    }
    if (new_) {
        new_->epoll_added = new_in && ret == 0;
    }
    if (ret < 0) {
        /* Cannot follow the change: fall back to poll, which needs no
         * registration and so cannot miss this fd.  Under a GLib source,
         * epoll comes back once the refused handlers are gone. */
        if (ctx->gsource_pinned) {
            new_->epoll_refused = true;
            ctx->epoll_refused_n++;
        }
        iot__fdmon_epoll_disable(ctx);
    }
}

static int epoll_wait_ns(int epfd, struct epoll_event *evs, int64_t ns)
{
#ifdef SYS_epoll_pwait2
    static atomic_bool no_pwait2;

    if (ns > 0 && !atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = { .tv_sec = ns / IOT_NS_PER_S,
                               .tv_nsec = ns % IOT_NS_PER_S };
        long ret = syscall(SYS_epoll_pwait2, epfd, evs, EPOLL_MAX_EVENTS, &ts,
                           NULL, 0);
        /* Not there: ENOSYS; or refused by a seccomp filter that does not
         * know it, which commonly answers EPERM (container runtimes).
         * Either way every later call would fail too, and a loop that
         * cannot wait on its fds would spin. */
        if (ret >= 0 || (errno != ENOSYS && errno != EPERM)) {
            return (int)ret;
        }
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
#endif
    if (ns > 0) {
        struct pollfd pfd = { .fd = epfd, .events = POLLIN };
        struct timespec ts = { .tv_sec = ns / IOT_NS_PER_S,
                               .tv_nsec = ns % IOT_NS_PER_S };
        int ret = ppoll(&pfd, 1, &ts, NULL);
        if (ret <= 0) {
            return ret;
        }
        ns = 0;
    }
    return epoll_wait(epfd, evs, EPOLL_MAX_EVENTS, ns < 0 ? -1 : 0);
}

static int epoll_wait_ready(IotCtx *ctx, IotReadyList *ready, int64_t timeout)
{
    struct epoll_event evs[EPOLL_MAX_EVENTS];
    unsigned long kicks;
    bool notifier = false;
    int n, epfd;

    if (timeout > (int64_t)INT32_MAX * IOT_NS_PER_S) {
        timeout = (int64_t)INT32_MAX * IOT_NS_PER_S;
    }
    kicks = atomic_load_explicit(&ctx->notify_kicks, memory_order_relaxed);
    iot__fdmon_epoll_reap(ctx); /* one retired before epoll came back */
    /* Read once: another thread may retire it meanwhile; the number then
     * stays ours until this thread closes it (iot__fdmon_epoll_reap()).
     * Retired before this read: poll is the backend now, and the next
     * iteration uses it (ppoll would sleep on fd -1 for the timeout). */
    epfd = atomic_load_explicit(&ctx->epollfd, memory_order_relaxed);
    if (epfd < 0) {
        return 0;
    }
    n = epoll_wait_ns(epfd, evs, timeout);
    if (n < 0) {
        return -errno;
    }
    for (int i = 0; i < n; i++) {
        IotHandler *h = evs[i].data.ptr;
        h->revents = poll_events_of(evs[i].events);
        iot__ready_push(ready, h);
        notifier |= h == ctx->notifier_h;
    }
    /* The notifier is registered (level-triggered) while this backend is
     * in use; a full array may have left it out. */
    if (!notifier && n < EPOLL_MAX_EVENTS) {
        iot__fd_notifier_quiet(ctx, kicks);
    }
    return n;
}

const IotFdmonOps iot__fdmon_epoll_ops = {
    .name = "epoll",
    .update = epoll_update,
    .wait = epoll_wait_ready,
    .need_wait = iot__fdmon_poll_disabled,
};

/* Mutex held.  No handler is registered with epoll any more. */
static void epoll_forget(IotCtx *ctx)
{
    for (IotHandler *h =
             atomic_load_explicit(&ctx->handlers, memory_order_relaxed);
         h; h = atomic_load_explicit(&h->next, memory_order_relaxed)) {
        h->epoll_added = false;
    }
}

/* Mutex held.  Closes the epoll fd and forgets every registration. */
static void epoll_close(IotCtx *ctx)
{
    if (ctx->epollfd >= 0) {
        close(ctx->epollfd);
        ctx->epollfd = -1;
    }
    epoll_forget(ctx);
}

int iot__fdmon_epoll_enable(IotCtx *ctx)
{
    bool refused = false;
    int ret = 0;

    if (iot__fdmon(ctx) == &iot__fdmon_epoll_ops) {
        return 0;
    }
    if (ctx->iou) {
        return -EBUSY; /* io_uring is never replaced */
    }
    if (ctx->epollfd >= 0) {
        return -EBUSY; /* fell back to poll under GLib: see below */
    }
    atomic_fetch_add_explicit(&iot__epoll_instances, 1, memory_order_relaxed);
    ctx->epollfd = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->epollfd < 0) {
        ret = -errno;
        fprintf(stderr, "Failed to create epoll instance: %s\n",
                strerror(-ret));
        return ret;
    }
    for (IotHandler *h =
             atomic_load_explicit(&ctx->handlers, memory_order_relaxed);
         h && ret == 0;
         h = atomic_load_explicit(&h->next, memory_order_relaxed)) {
        if (h->events &&
            !atomic_load_explicit(&h->deleted, memory_order_relaxed)) {
            ret = epoll_register(ctx, EPOLL_CTL_ADD, h);
            h->epoll_added = ret == 0;
            if (ret < 0 && ctx->gsource_pinned) {
                /* A GLib source asks for the fd to watch, and a handler
                 * epoll refuses (a regular file) was there first: as if
                 * it had come after the source (epoll_update()). */
                h->epoll_refused = true;
                ctx->epoll_refused_n++;
                refused = true;
                ret = 0;
            }
        }
    }
    if (refused) {
        /* GLib gets the instance and the context stays on poll, until
         * the refused handlers are gone (epoll_try_back()). */
        iot__fdmon_epoll_disable(ctx);
        return 0;
    }
    if (ret < 0) {
        epoll_close(ctx); /* nobody watches it yet: still on poll */
        return ret;
    }
    /* Release pairs with the acquire in iot__fdmon(). */
    atomic_store_explicit(&ctx->fdmon, &iot__fdmon_epoll_ops,
                          memory_order_release);
    return 0;
}

/* Mutex held; a GLib source watches ctx->epollfd and the context fell
 * back to poll, or the instance may hold a stale registration
 * (epoll_stale).  Registers every live handler with a new epoll instance
 * and puts it behind the fd number GLib watches (dup3 replaces the file
 * at once; a GLib poll already waiting on the old one is woken by the
 * notify that follows every handler change).  If epoll refuses a handler
 * again, that one is marked and the context stays on poll.  Returns
 * false if that or anything else failed. */
static bool epoll_rebuild(IotCtx *ctx)
{
    int fd = epoll_create1(EPOLL_CLOEXEC), ret = fd < 0 ? -errno : 0;
    IotHandler *h;

    atomic_fetch_add_explicit(&iot__epoll_instances, 1, memory_order_relaxed);
    for (h = atomic_load_explicit(&ctx->handlers, memory_order_relaxed);
         h && ret == 0;
         h = atomic_load_explicit(&h->next, memory_order_relaxed)) {
        if (h->events &&
            !atomic_load_explicit(&h->deleted, memory_order_relaxed)) {
            struct epoll_event ev = { .events = epoll_events_of(h->events),
                                      .data.ptr = h };
            if (epoll_ctl(fd, EPOLL_CTL_ADD, h->fd, &ev) < 0) {
                ret = -errno;
                h->epoll_refused = true;
                ctx->epoll_refused_n++;
            }
        }
    }
    if (ret == 0 && dup3(fd, ctx->epollfd, O_CLOEXEC) < 0) {
        ret = -errno;
    }
    if (fd >= 0) {
        close(fd);
    }
    if (ret < 0) {
        return false;
    }
    for (h = atomic_load_explicit(&ctx->handlers, memory_order_relaxed); h;
         h = atomic_load_explicit(&h->next, memory_order_relaxed)) {
        h->epoll_added = h->events && !atomic_load_explicit(
                                          &h->deleted, memory_order_relaxed);
    }
    /* Release pairs with the acquire in iot__fdmon(). */
    atomic_store_explicit(&ctx->fdmon, &iot__fdmon_epoll_ops,
                          memory_order_release);
    return true;
}

/* Mutex held.  Back to epoll if nothing refused is left; a failed
 * rebuild (EMFILE, ENOMEM) is tried again later. */
static void epoll_try_back(IotCtx *ctx)
{
    bool pending =
        ctx->epoll_refused_n == 0 && ctx->gsource_pinned && ctx->epollfd >= 0 &&
        iot__fdmon(ctx) == &iot__fdmon_poll_ops && !epoll_rebuild(ctx);

    atomic_store_explicit(&ctx->epoll_rebuild_pending, pending,
                          memory_order_relaxed);
}

void iot__fdmon_epoll_refused_gone(IotCtx *ctx)
{
    ctx->epoll_refused_n--;
    epoll_try_back(ctx);
}

void iot__fdmon_epoll_unstale(IotCtx *ctx)
{
    if (!ctx->epoll_stale) {
        return;
    }
    /* Called before the removed handler can be freed: a home thread
     * that waits on the old instance meanwhile is a walker, so the free
     * waits for it, and deleted handlers are not dispatched. */
    ctx->epoll_stale = false;
    if (iot__fdmon(ctx) == &iot__fdmon_epoll_ops && !epoll_rebuild(ctx)) {
        iot__fdmon_epoll_disable(ctx);
        if (ctx->gsource_pinned) {
            epoll_try_back(ctx); /* pending: GLib's prepare tries again */
        }
    }
}

void iot__fdmon_epoll_retry(IotCtx *ctx)
{
    iot__fdmon_epoll_unstale(ctx);
    if (atomic_load_explicit(&ctx->epoll_rebuild_pending,
                             memory_order_relaxed)) {
        epoll_try_back(ctx);
    }
}

void iot__fdmon_epoll_reap(IotCtx *ctx)
{
    int fd;

    /* Every wait comes here: a plain load first, the locked exchange only
     * when there is something to close.  The exchange pairs with the one
     * in iot__fdmon_epoll_disable(), so each retired fd is closed once. */
    if (atomic_load_explicit(&ctx->epollfd_dead, memory_order_relaxed) < 0) {
        return;
    }
    fd = atomic_exchange_explicit(&ctx->epollfd_dead, -1, memory_order_relaxed);
    if (fd >= 0) {
        close(fd);
    }
}

void iot__fdmon_epoll_disable(IotCtx *ctx)
{
    if (ctx->gsource_pinned) {
        /* A GLib source watches the epoll fd.  Closed, its number could
         * go to another file under GLib's feet: it stays open, and GLib
         * stops sleeping on it (glib.c), as it no longer covers every
         * handler, until the refused handlers are gone and
         * epoll_rebuild() puts a complete instance behind it. */
        fprintf(stderr,
                "libiothread: epoll cannot watch an fd; a context driven "
                "by GLib polls without sleeping until that fd is gone\n");
        epoll_forget(ctx);
    } else if (ctx->epollfd >= 0) {
        /* Not closed here: the home thread may be waiting on it, and the
         * number, reused, would have it wait on someone else's file.  The
         * home thread closes it at its next wait (either backend's). */
        int old = atomic_exchange_explicit(&ctx->epollfd_dead, ctx->epollfd,
                                           memory_order_relaxed);
        if (old >= 0) {
            /* Retired before an enable by a GLib source's creator: the
             * wait that could use it is over, as the context went to
             * epoll and back since, each time under the mutex. */
            close(old);
        }
        ctx->epollfd = -1;
        epoll_forget(ctx);
    }
    atomic_store_explicit(&ctx->fdmon, &iot__fdmon_poll_ops,
                          memory_order_release);
}
