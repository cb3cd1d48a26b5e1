/* SPDX-License-Identifier: MIT */
/*
 * The poll(2) backend: no registration; each wait builds an array of the
 * live handlers and calls ppoll() with a ns timeout.  In AUTO mode it moves
 * the context to io_uring once a wait sees a handler besides the notifier,
 * or, without io_uring, to epoll once a wait sees IOT_EPOLL_THRESHOLD
 * handlers (fdmon.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "fdmon.h"

static void poll_update(IotCtx *ctx, IotHandler *old, IotHandler *new_)
{
    (void)ctx;
    (void)old;
    (void)new_;
}

bool iot__fdmon_poll_disabled(IotCtx *ctx)
{
    return atomic_load_explicit(&ctx->poll_disable_cnt, memory_order_relaxed) !=
           0;
}

bool iot__fdmon_poll_fail_grow;

/* Home thread.  Makes room for @n entries; false on ENOMEM. */
static bool pfds_reserve(IotCtx *ctx, size_t n)
{
    struct pollfd *pfds;
    IotHandler **hs;
    size_t cap = ctx->pfd_cap ? ctx->pfd_cap : 8;

    if (n <= ctx->pfd_cap) {
        return true;
    }
    if (iot__fdmon_poll_fail_grow) {
        return false;
    }
    while (cap < n) {
        cap *= 2;
    }
    pfds = realloc(ctx->pfds, cap * sizeof(*pfds));
    if (!pfds) {
        return false;
    }
    ctx->pfds = pfds;
    hs = realloc(ctx->pfd_handlers, cap * sizeof(*hs));
    if (!hs) {
        return false;
    }
    ctx->pfd_handlers = hs;
    ctx->pfd_cap = cap;
    return true;
}

static struct timespec *ns_to_timespec(int64_t ns, struct timespec *ts)
{
    if (ns < 0) {
        return NULL;
    }
    /* Cap the seconds so that a huge timeout cannot overflow. */
    ts->tv_sec = ns / IOT_NS_PER_S > INT32_MAX ? INT32_MAX : ns / IOT_NS_PER_S;
    ts->tv_nsec = ns % IOT_NS_PER_S;
    return ts;
}

/* Home thread.  AUTO: move to io_uring or epoll now?  True if it moved. */
static bool auto_upgrade(IotCtx *ctx, size_t nfds)
{
    int ret = -1;

    if (ctx->fdmon_kind != IOT_FDMON_AUTO) {
        return false;
    }
    if (nfds >= 2 && !ctx->iou_failed) {
        iot__lockcnt_lock(&ctx->list_lock);
        ret = iot__fdmon_io_uring_enable(ctx);
        iot__lockcnt_unlock(&ctx->list_lock);
        ctx->iou_failed = ret < 0;
    }
    /* Once epoll has refused (an fd it cannot watch, no memory), stay:
     * every wait would otherwise make an instance and register every
     * handler again only to fail (QEMU does not retry either). */
    if (ret < 0 && nfds >= IOT_EPOLL_THRESHOLD && !ctx->epoll_failed) {
        iot__lockcnt_lock(&ctx->list_lock);
        ret = iot__fdmon_epoll_enable(ctx);
        iot__lockcnt_unlock(&ctx->list_lock);
        ctx->epoll_failed = ret < 0;
    }
    return ret == 0;
}

/* Home thread.  No memory for the array: waits on the notifier alone, and
 * not longer than iot__fdmon_retry_ns, so that the loop neither spins
 * (an error at once would send a blocking loop straight back) nor sleeps
 * through a kick.  The other fds are level-triggered: whatever they have
 * waits for the next wait, which tries to grow the array again. */
static int poll_wait_starved(IotCtx *ctx, IotReadyList *ready,
                             int64_t timeout_ns)
{
    struct pollfd pfd = { .fd = ctx->notifier.rfd, .events = POLLIN };
    struct timespec ts;
    int ret;

    if (timeout_ns < 0 || timeout_ns > iot__fdmon_retry_ns) {
        timeout_ns = iot__fdmon_retry_ns;
    }
    ret = ppoll(&pfd, 1, ns_to_timespec(timeout_ns, &ts), NULL);
    if (ret < 0) {
        return -errno;
    }
    if (pfd.revents) {
        ctx->notifier_h->revents = pfd.revents;
        iot__ready_push(ready, ctx->notifier_h);
    }
    return ret;
}

static int poll_wait(IotCtx *ctx, IotReadyList *ready, int64_t timeout_ns)
{
    struct timespec ts;
    size_t n = 0, count = 0;
    unsigned long kicks;
    bool starved = false;
    int ret;

    iot__fdmon_epoll_reap(ctx); /* back from epoll: its instance */
    for (IotHandler *h =
             atomic_load_explicit(&ctx->handlers, memory_order_acquire);
         h; h = atomic_load_explicit(&h->next, memory_order_acquire)) {
        if (!h->events || h->fd_invalid ||
            atomic_load_explicit(&h->deleted, memory_order_acquire)) {
            continue;
        }
        /* Out of room: counted still, for the move to another backend,
         * which needs no array. */
        starved = starved || !pfds_reserve(ctx, n + 1);
        if (!starved) {
            ctx->pfds[n] = (struct pollfd){ .fd = h->fd, .events = h->events };
            ctx->pfd_handlers[n] = h;
        }
        n++;
    }

    if (auto_upgrade(ctx, n)) {
        return iot__fdmon(ctx)->wait(ctx, ready, timeout_ns);
    }
    if (starved) {
        return poll_wait_starved(ctx, ready, timeout_ns);
    }
    if (n == 1 && timeout_ns <= 0 && ctx->notifier_blocks &&
        ctx->pfd_handlers[0] == ctx->notifier_h) {
        /* One call, not two: see fd.c. */
        return iot__fd_notifier_wait(ctx, ready, timeout_ns < 0);
    }

    kicks = atomic_load_explicit(&ctx->notify_kicks, memory_order_relaxed);
    ret = ppoll(ctx->pfds, n, ns_to_timespec(timeout_ns, &ts), NULL);
    if (ret < 0) {
        return -errno;
    }
    for (size_t i = 0; i < n; i++) {
        IotHandler *h = ctx->pfd_handlers[i];

        if (ctx->pfds[i].revents & POLLNVAL) {
            /* Closed under us: an error once, not a spin for ever (the
             * fd would be invalid in every wait from now on). */
            h->fd_invalid = true;
            h->revents = POLLERR;
            iot__ready_push(ready, h);
            count++;
        } else if (ctx->pfds[i].revents) {
            h->revents = ctx->pfds[i].revents;
            iot__ready_push(ready, h);
            count++;
        } else if (h == ctx->notifier_h) {
            iot__fd_notifier_quiet(ctx, kicks);
        }
    }
    return (int)count;
}

const IotFdmonOps iot__fdmon_poll_ops = {
    .name = "poll",
    .update = poll_update,
    .wait = poll_wait,
    .need_wait = iot__fdmon_poll_disabled,
};
