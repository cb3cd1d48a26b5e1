/* SPDX-License-Identifier: MIT */
/*
 * One loop iteration, iot_ctx_poll(), and adaptive busy polling
 * (sections 2.6 and 3 of the specification).  The steps:
 *
 *   1. become a walker of the handler list; pick up new poll parameters
 *   2. timeout = 0 if non-blocking, else from BHs and timers
 *   3. busy poll the polled handlers for up to their largest window
 *   4. if we may block: announce it (notify_me), re-check `notified`
 *   5. if we may block: leave poll mode (io_poll_end + a last io_poll)
 *   6. wait for fds in the backend (a zero timeout still checks them)
 *   7. withdraw the announcement; accept the notification
 *   8. run bottom halves
 *   9. dispatch ready handlers, then adjust each one's poll window
 *  10. free retired handlers; stop walking
 *  11. run timers
 */
#include <assert.h>

#include "ctx-internal.h"
#include "fdmon.h"
#include "postq.h"

/* ---- poll parameters and windows ---- */

/* Home thread.  Take parameters changed by iot_ctx_set_poll_params(); a
 * change resets every window to 0, as QEMU does. */
static void params_refresh(IotCtx *ctx)
{
    /* Acquire pairs with the release in iot_ctx_set_poll_params(). */
    unsigned gen = atomic_load_explicit(&ctx->param_gen, memory_order_acquire);
    IotHandler *h;

    if (gen == ctx->param_seen) {
        return;
    }
    pthread_mutex_lock(&ctx->param_lock);
    ctx->param = ctx->param_set;
    ctx->param_seen =
        atomic_load_explicit(&ctx->param_gen, memory_order_relaxed);
    pthread_mutex_unlock(&ctx->param_lock);
    for (h = atomic_load_explicit(&ctx->handlers, memory_order_acquire); h;
         h = atomic_load_explicit(&h->next, memory_order_acquire)) {
        h->poll_ns = 0;
    }
    ctx->ring_max_ns = 0;
    ctx->timer_poll_ns = 0;
    ctx->ring_max_cnt = ctx->ring_len;
    ctx->ring_max_stale = false;
}

void iot__ctx_params_refresh(IotCtx *ctx)
{
    iot__lockcnt_inc(&ctx->list_lock);
    params_refresh(ctx);
    iot__lockcnt_dec(&ctx->list_lock);
}

/* The rule of section 3.5, for one handler that was ready this iteration. */
int64_t iot__poll_adjust(int64_t window, int64_t block_ns,
                         const IotPollParams *p)
{
    if (block_ns <= window) {
        return window; /* polling long enough caught it */
    }
    if (block_ns > p->max_ns) {
        return p->shrink ? window / p->shrink : 0;
    }
    if (window < p->max_ns && block_ns < p->max_ns) {
        int64_t grown;
        if (window == 0) {
            grown = IOT_POLL_START_NS;
        } else if (__builtin_mul_overflow(window, p->grow ? p->grow : 2,
                                          &grown)) {
            grown = p->max_ns;
        }
        return grown < p->max_ns ? grown : p->max_ns;
    }
    return window;
}

/*
 * block_ns of section 3.5: from the start of the iteration to the event.
 * QEMU takes the end of the wait, which for a loop that slept includes
 * its own wake-up (~15-50 us here), so a hand-off that came inside
 * poll-max-ns can count as beyond it and reset the window.  When the loop
 * slept and was kicked through its eventfd after @start, the kick's time
 * (taken by the producer) is used instead: QEMU's arithmetic on when the
 * work arrived.  A wait that ended without a kick keeps QEMU's measure.
 */
int64_t iot__poll_block_ns(int64_t start, int64_t end, int64_t kick, bool slept)
{
    if (slept && kick > start && kick < end) {
        end = kick;
    }
    return end - start;
}

/* Does @h go on the ring list (see ctx->ring_head)? */
static bool ring_polled(IotCtx *ctx, IotHandler *h)
{
    return iot__fdmon(ctx)->userspace_poll && !h->ops.poll &&
           !h->ops.poll_begin && !h->ops.poll_end;
}

static void list_link(IotHandler **head, IotHandler *h)
{
    h->poll_prev = NULL;
    h->poll_next = *head;
    if (*head) {
        (*head)->poll_prev = h;
    }
    *head = h;
}

static void list_unlink(IotHandler **head, IotHandler *h)
{
    if (h->poll_prev) {
        h->poll_prev->poll_next = h->poll_next;
    } else {
        *head = h->poll_next;
    }
    if (h->poll_next) {
        h->poll_next->poll_prev = h->poll_prev;
    }
    h->poll_prev = h->poll_next = NULL;
}

/* Home thread.  The ring list's largest window and how many handlers have
 * it, kept as windows come and go; only when the last of them shrinks or
 * leaves is the list walked again (ring_max()). */
static void ring_track_in(IotCtx *ctx, int64_t ns)
{
    if (ctx->ring_max_stale) {
        return;
    }
    if (ns > ctx->ring_max_ns) {
        ctx->ring_max_ns = ns;
        ctx->ring_max_cnt = 1;
    } else if (ns == ctx->ring_max_ns) {
        ctx->ring_max_cnt++;
    }
}

static void ring_track_out(IotCtx *ctx, int64_t ns)
{
    if (!ctx->ring_max_stale && ns == ctx->ring_max_ns &&
        --ctx->ring_max_cnt == 0) {
        ctx->ring_max_stale = true;
    }
}

/* Home thread, walker.  Starts polling @h, which has just been ready. */
void iot__poll_list_add(IotCtx *ctx, IotHandler *h)
{
    h->in_poll_list = true;
    h->on_ring_list = ring_polled(ctx, h);
    if (h->on_ring_list) {
        list_link(&ctx->ring_head, h);
        ctx->ring_len++;
        ring_track_in(ctx, h->poll_ns);
        return;
    }
    list_link(&ctx->poll_head, h);
    ctx->poll_len++;
}

/* Home thread as a walker, or a writer in the FREEING state. */
void iot__poll_list_remove(IotCtx *ctx, IotHandler *h)
{
    if (h->on_ring_list) {
        list_unlink(&ctx->ring_head, h);
        ctx->ring_len--;
        ring_track_out(ctx, h->poll_ns);
    } else {
        list_unlink(&ctx->poll_head, h);
        ctx->poll_len--;
    }
    h->in_poll_list = false;
    h->on_ring_list = false;
}

/* Home thread.  The largest window on the ring list. */
static int64_t ring_max(IotCtx *ctx)
{
    if (ctx->ring_max_stale) {
        ctx->ring_max_ns = 0;
        ctx->ring_max_cnt = 0;
        ctx->ring_max_stale = false;
        for (IotHandler *h = ctx->ring_head; h; h = h->poll_next) {
            ring_track_in(ctx, h->poll_ns);
        }
    }
    return ctx->ring_max_ns;
}

/* Home thread.  @h's window changes to @ns. */
static void poll_window_set(IotCtx *ctx, IotHandler *h, int64_t ns)
{
    if (h->on_ring_list && ns != h->poll_ns) {
        ring_track_out(ctx, h->poll_ns);
        ring_track_in(ctx, ns);
    }
    h->poll_ns = ns;
}

static bool handler_live(IotHandler *h)
{
    /* Acquire pairs with the release in fd.c handler_retire(). */
    return !atomic_load_explicit(&h->deleted, memory_order_acquire);
}

/* Home thread.  Marks @h ready through io_poll. */
static void poll_hit(IotHandler *h, IotReadyList *ready)
{
    h->poll_ready = true;
    iot__ready_push(ready, h);
}

/* Home thread, walker.  Enter or leave poll mode.  Leaving runs one last
 * io_poll per handler: an event may have slipped in while notifications
 * were off.  Returns true if that found real work (not the notifier). */
static bool poll_set_started(IotCtx *ctx, IotReadyList *ready, bool started)
{
    bool progress = false;
    IotHandler *h;

    if (ctx->poll_started == started) {
        return false;
    }
    ctx->poll_started = started;
    for (h = ctx->poll_head; h; h = h->poll_next) {
        if (!handler_live(h)) {
            continue;
        }
        if (started) {
            if (h->ops.poll_begin) {
                h->ops.poll_begin(h->opaque);
            }
            continue;
        }
        if (h->ops.poll_end) {
            h->ops.poll_end(h->opaque);
        }
        if (h->ops.poll && h->ops.poll(h->opaque)) {
            poll_hit(h, ready);
            progress |= !h->is_notifier;
        }
    }
    return progress;
}

/* Home thread, walker.  Calls every polled handler's io_poll until one is
 * ready or @max_ns passes.  Returns true if any handler was ready; the
 * caller's *timeout is then 0, else reduced by the time spent.  With
 * io_uring a completion also ends the stretch, with *timeout 0, so that
 * the wait that follows does not block and poll mode stays on. */
static bool run_poll_handlers(IotCtx *ctx, IotReadyList *ready, int64_t max_ns,
                              int64_t *timeout)
{
    const IotFdmonOps *ops = iot__fdmon(ctx);
    int64_t start = iot__now_ns(), elapsed;
    bool hit = false, completion = false, chore = false;

    ctx->poll_now_ns = start;
    for (;;) {
        for (IotHandler *h = ctx->poll_head; h; h = h->poll_next) {
            if (h->ops.poll && handler_live(h) && h->ops.poll(h->opaque)) {
                poll_hit(h, ready);
                h->poll_idle_deadline = start + IOT_POLL_IDLE_NS;
                hit = true;
            }
        }
        /* A hit goes straight to its callback: the clock (32 ns in a KVM
         * guest) keeps the previous round's reading, off the hand-off's
         * path. */
        if (hit) {
            break;
        }
        ctx->poll_now_ns = iot__now_ns();
        if (ops->need_wait(ctx)) {
            completion = ops->userspace_poll;
            /* Stopped for the backend's own work (submissions, changes):
             * the wait after does not block, and the stretch counts as
             * neither a hit nor a miss. */
            chore = completion && ops->has_events && !ops->has_events(ctx);
            break;
        }
        if (ctx->fds_changed) {
            /* A handler changed (by io_poll): the fd wait looks at the
             * new set at once, and the stretch is neither. */
            completion = chore = true;
            break;
        }
        if (ctx->poll_now_ns - start >= max_ns) {
            break;
        }
    }
    elapsed = ctx->poll_now_ns - start;

    IOT_STAT_ADD(ctx, poll_ns, elapsed);
    if (hit || completion) {
        IOT_STAT_ADD(ctx, poll_hits, !chore);
        *timeout = 0;
    } else if (*timeout != -1 && elapsed >= *timeout) {
        /* Polled until the timeout: a timer is due (the timer window),
         * which is what the stretch waited for. */
        IOT_STAT_ADD(ctx, poll_hits, 1);
        *timeout = 0;
    } else {
        IOT_STAT_ADD(ctx, poll_misses, 1);
        if (*timeout != -1) {
            *timeout -= elapsed;
        }
    }
    return hit;
}

/* Home thread, walker.  The idle rule for the ring list: these handlers
 * have no callbacks to end, and the scan is rare, as 7 s is coarse. */
static void ring_remove_idle(IotCtx *ctx, int64_t now)
{
    IotHandler *h, *next;

    ctx->ring_idle_scan_ns = now + IOT_POLL_IDLE_NS / 8;
    for (h = ctx->ring_head; h; h = next) {
        next = h->poll_next;
        if (h->poll_idle_deadline == 0) {
            h->poll_idle_deadline = now + IOT_POLL_IDLE_NS;
        } else if (now >= h->poll_idle_deadline) {
            h->poll_idle_deadline = 0;
            iot__poll_list_remove(ctx, h);
        }
    }
}

/* Home thread, walker; io_uring only (section 3.6).  A polled handler that
 * was not ready for IOT_POLL_IDLE_NS leaves the poll list, so that many
 * idle handlers do not slow every stretch of busy polling.  Its fd is
 * still watched through the ring, so it cannot starve.  Returns true if
 * the last io_poll of one that left found it ready. */
static bool remove_idle_poll_handlers(IotCtx *ctx, IotReadyList *ready)
{
    /* The clock of busy polling's last round: 7 s is coarse. */
    int64_t now = ctx->poll_now_ns;
    bool progress = false;
    IotHandler *h, *next;

    if (now >= ctx->ring_idle_scan_ns) {
        ring_remove_idle(ctx, now);
    }
    for (h = ctx->poll_head; h; h = next) {
        next = h->poll_next;
        if (h->is_notifier) {
            continue; /* always polled (fd.c iot__fd_notifier_init()) */
        }
        if (h->poll_idle_deadline == 0) {
            h->poll_idle_deadline = now + IOT_POLL_IDLE_NS;
            continue;
        }
        if (now < h->poll_idle_deadline) {
            continue;
        }
        h->poll_idle_deadline = 0;
        iot__poll_list_remove(ctx, h);
        if (ctx->poll_started && handler_live(h)) {
            if (h->ops.poll_end) {
                h->ops.poll_end(h->opaque);
            }
            if (h->ops.poll && h->ops.poll(h->opaque)) {
                poll_hit(h, ready);
                progress = true;
            }
        }
    }
    return progress;
}

/* Home thread, walker.  Busy polls if the windows, the timeout and the
 * backend allow it.  Returns true if a polled handler was ready. */
static bool try_poll_mode(IotCtx *ctx, IotReadyList *ready, int64_t *timeout)
{
    int64_t max_ns = 0;

    if ((!ctx->poll_head && !ctx->ring_head) || ctx->param.max_ns == 0) {
        IOT_STAT_SET(ctx, poll_window_ns, 0);
        return false;
    }
    max_ns = ring_max(ctx);
    for (IotHandler *h = ctx->poll_head; h; h = h->poll_next) {
        if (h->poll_ns > max_ns) {
            max_ns = h->poll_ns;
        }
    }
    IOT_STAT_SET(ctx, poll_window_ns, max_ns);
    if (*timeout > max_ns && *timeout <= ctx->timer_poll_ns) {
        max_ns = *timeout; /* poll until the timer is due */
    }
    if (iot__postq_paced(ctx)) {
        /* A stream: poll at least until the queues' next look.  The
         * window may be anything up to INT64_MAX (poll-max-ns): saturate. */
        int64_t wait, left = ctx->postq_look_ns - iot__now_ns();

        if (__builtin_add_overflow(left, max_ns, &wait)) {
            wait = INT64_MAX; /* both positive: a negative sum cannot */
        }

        if (wait > max_ns) {
            max_ns = wait;
        }
    }
    max_ns = iot__timeout_min(max_ns, *timeout);
    if (max_ns > 0 && iot__fdmon(ctx)->prepare) {
        /* io_uring: hand queued requests (re-arms, changes) to the kernel
         * first, so that every fd is watched while we poll. */
        iot__fdmon(ctx)->prepare(ctx);
    }
    if (max_ns > 0 && !iot__fdmon(ctx)->need_wait(ctx)) {
        bool hit;

        poll_set_started(ctx, ready, true);
        hit = run_poll_handlers(ctx, ready, max_ns, timeout);
        if (iot__fdmon(ctx)->userspace_poll &&
            remove_idle_poll_handlers(ctx, ready)) {
            *timeout = 0;
            hit = true;
        }
        return hit;
    }
    return false;
}

/* ---- dispatch ---- */

/* Home thread, walker.  Runs @h's callbacks for this iteration. */
static bool dispatch_handler(IotCtx *ctx, IotHandler *h)
{
    short revents = h->revents & h->events;
    bool poll_ready = h->poll_ready;
    bool progress = false;

    h->revents = 0;
    h->poll_ready = false;
    if (!handler_live(h)) {
        return false;
    }
    /* A handler that fires through its fd starts polling: activity is
     * likely to continue.  With io_uring that includes handlers without
     * io_poll: their completions are seen from user space while polling,
     * and their windows count towards the polling budget. */
    if (h->on_ring_list) {
        /* Active: the next idle scan starts its 7 s again. */
        h->poll_idle_deadline = 0;
    }
    if (!h->in_poll_list && (h->pollable || iot__fdmon(ctx)->userspace_poll)) {
        iot__poll_list_add(ctx, h);
        if (ctx->poll_started && h->ops.poll_begin) {
            h->ops.poll_begin(h->opaque);
        }
    }
    if (poll_ready && revents == 0) {
        /* Off the poll list while it runs: a nested poll from io_poll_ready
         * must not see the same level-triggered condition and recurse. */
        iot__poll_list_remove(ctx, h);
        h->ops.poll_ready(h->opaque);
        IOT_STAT_ADD(ctx, fd_events, !h->is_notifier);
        if (!h->in_poll_list && handler_live(h)) {
            iot__poll_list_add(ctx, h);
        }
        return !h->is_notifier;
    }
    if ((revents & (POLLIN | POLLHUP | POLLERR)) && h->ops.read) {
        h->ops.read(h->opaque);
        progress |= !h->is_notifier;
        IOT_STAT_ADD(ctx, fd_events, !h->is_notifier);
    }
    /* The read callback may have removed the handler. */
    if ((revents & (POLLOUT | POLLERR)) && h->ops.write && handler_live(h)) {
        h->ops.write(h->opaque);
        progress = true;
        IOT_STAT_ADD(ctx, fd_events, 1);
    }
    return progress;
}

/* Home thread, walker.  Dispatches every ready handler, then adapts the
 * poll window of each that is polled, with this iteration's block_ns. */
static bool dispatch_ready(IotCtx *ctx, IotReadyList *ready, int64_t block_ns)
{
    bool progress = false;
    IotHandler *h;

    while ((h = iot__ready_pop(ready))) {
        progress |= dispatch_handler(ctx, h);
        if (ctx->param.max_ns && h->in_poll_list) {
            poll_window_set(
                ctx, h, iot__poll_adjust(h->poll_ns, block_ns, &ctx->param));
        }
    }
    return progress;
}

/* ---- the notify handshake, loop side (docs/spin/notify.promela) ---- */

/* Home thread.  Announce that we may block; false if already notified. */
static bool notify_me_raise(IotCtx *ctx)
{
    unsigned me = atomic_load_explicit(&ctx->notify_me, memory_order_relaxed);

    /* Only the home thread writes notify_me, so a load and a store do.
     * seq_cst store then seq_cst load: the Dekker pair with
     * iot_ctx_notify() (its exchange of `notified`, then load of
     * notify_me). */
    atomic_store_explicit(&ctx->notify_me, me + 2, memory_order_seq_cst);
    return !atomic_load_explicit(&ctx->notified, memory_order_seq_cst);
}

static void notify_me_lower(IotCtx *ctx)
{
    unsigned me = atomic_load_explicit(&ctx->notify_me, memory_order_relaxed);

    /* Release: the wait is over before producers may skip the kick. */
    atomic_store_explicit(&ctx->notify_me, me - 2, memory_order_release);
}

/* Home thread.  Consume the notification.  The exchange reads the value
 * stored by the iot_ctx_notify() it consumes (acquire pairs with that
 * exchange), so the work published before that notify is visible to the
 * BH, handler and timer reads that follow.  A notify whose store comes
 * later leaves `notified` set for the next iteration, which then cannot
 * block.  So does one the first, plain load misses: the exchange, which
 * takes the line from a producer about to write it, is only done when
 * there is something to consume (a post seen by its slot is often
 * accepted before its notify lands). */
void iot__ctx_notify_accept(IotCtx *ctx)
{
    if (atomic_load_explicit(&ctx->notified, memory_order_relaxed) &&
        atomic_exchange_explicit(&ctx->notified, false, memory_order_seq_cst)) {
        /* The work's reads that follow may be plain or relaxed: QEMU's
         * smp_mb() after its accept. */
        iot__smp_mb_after_rmw();
    }
}

/* ---- the iteration ---- */

int64_t iot__ctx_timeout(IotCtx *ctx)
{
    int64_t timeout = iot__bh_timeout(ctx);

    if (timeout == 0) {
        return 0;
    }
    if (ctx->fdmon_retry_at) {
        int64_t left = ctx->fdmon_retry_at - iot__stats_now_ns();

        timeout = iot__timeout_min(timeout, left > 0 ? left : 0);
    }
    return iot__timeout_min(timeout, iot__timers_deadline(ctx));
}

/* Should the backend be asked for fds?  Always when we may block or the
 * backend needs it.  A non-blocking call also checks fds (QEMU skips them
 * when every handler polls), unless busy polling already found work and
 * every pollable handler takes part in polling. */
static bool need_fd_wait(IotCtx *ctx, int64_t timeout, bool poll_hit)
{
    if (timeout != 0 || ctx->gsource_saw_fd || ctx->fds_changed ||
        iot__fdmon(ctx)->need_wait(ctx)) {
        return true;
    }
    /* Only the notifier is registered and no kick is waiting in its
     * eventfd: there is no fd to look at.  (A kick counted later is seen
     * by the next iteration, or by a blocking wait, as the eventfd is
     * readable.)  This spares a context that runs only BHs and timers on
     * poll or epoll a system call in each iteration that finds work at
     * once. */
    if (atomic_load_explicit(&ctx->live_cnt, memory_order_relaxed) <= 1 &&
        atomic_load_explicit(&ctx->notify_kicks, memory_order_relaxed) ==
            ctx->kicks_drained) {
        return false;
    }
    /* A handler retired but not yet freed (inside a nested iteration, it
     * waits for the outermost one) is still on the poll list: the count
     * would hide a new handler that never polled. */
    return !poll_hit ||
           atomic_load_explicit(&ctx->deleted_pending, memory_order_relaxed) ||
           ctx->poll_len <
               atomic_load_explicit(&ctx->pollable_cnt, memory_order_relaxed);
}

/* The backend's wait; time spent blocked counts as idle. */
static void fd_wait(IotCtx *ctx, IotReadyList *ready, int64_t timeout)
{
    ctx->notifier_drained = false; /* only this wait may set it */
    ctx->gsource_saw_fd = false;
    ctx->fds_changed = false; /* the wait looks at the set as it is now */
    if (timeout == 0) {
        iot__fdmon(ctx)->wait(ctx, ready, 0);
        return;
    }
    iot__stats_wait_begin(ctx);
    iot__fdmon(ctx)->wait(ctx, ready, timeout);
    iot__stats_wait_end(ctx);
}

/* Home thread.  One iteration; @gsource: GLib's dispatch (non-blocking),
 * which leaves poll mode (GLib never busy polls) into this iteration's
 * ready list and adjusts no polling window (block_ns 0, as QEMU's
 * aio_dispatch). */
/* Home thread.  A timer fired in an iteration that was to wait @due ns
 * for it (the timeout at the iteration's start): the timer window adapts
 * with that as block_ns, by the rule of a handler's.  Not the end of the
 * wait, which for a loop that slept includes its own wake-up (as in
 * iot__poll_block_ns()): timers 10 us apart would count as 35 us on this
 * kind of machine and shrink the window they need.  Dense timers thus
 * grow it, and the loop busy polls from one to the next (W4); a timer
 * further away than poll-max-ns shrinks it, as an idle handler's. */
static void timer_window_adapt(IotCtx *ctx, int64_t due)
{
    ctx->timer_poll_ns = iot__poll_adjust(ctx->timer_poll_ns, due, &ctx->param);
}

static bool ctx_iterate(IotCtx *ctx, bool blocking, bool gsource)
{
    IotReadyList ready = { NULL, NULL };
    bool progress, may_block, polled, paced;
    /* A nested iteration's callbacks' caller was in its dispatch. */
    bool outer_dispatching = ctx->dispatching;
    int64_t timeout, due, start = 0, block_ns = 0;

    assert(iot_ctx_current() == ctx);
    ctx->dispatching = false;

    iot__lockcnt_inc(&ctx->list_lock);
    IOT_STAT_ADD(ctx, iterations, 1);
    if (atomic_load_explicit(&ctx->notify_me, memory_order_relaxed) & 1) {
        /* Bit 0 is GLib's prepare's (glib.c): this iteration may run
         * between that prepare and GLib's poll (called from another
         * source's prepare, or by an application between
         * g_main_context_prepare() and its poll), and GLib then sleeps
         * on prepare's timeout: only its check may clear the bit, or a
         * notify meanwhile would skip the kick that poll waits for
         * (docs/spin/notify.promela, -DGLIB_NESTED_POLL).  The idle wait
         * prepare began is over, though: we are busy. */
        iot__stats_wait_close(ctx);
    }
    if (!atomic_load_explicit(&ctx->stats.epoch_ns, memory_order_relaxed)) {
        IOT_STAT_SET(ctx, epoch_ns, iot__stats_now_ns());
    }
    params_refresh(ctx);
    /* Relaxed: set under the list mutex, which iot__fd_poll_carry() takes
     * (a change whose flag comes later is caught at the next iteration,
     * or at its free). */
    if (atomic_load_explicit(&ctx->poll_carry_pending, memory_order_relaxed)) {
        atomic_store_explicit(&ctx->poll_carry_pending, false,
                              memory_order_relaxed);
        iot__fd_poll_carry(ctx);
    }
    if (ctx->param.max_ns && !gsource) {
        start = iot__now_ns();
    }
    if (gsource) {
        /* What the handlers' last io_poll finds runs here: it came while
         * their notifications were off (io_poll_begin), so their fds
         * may never say so. */
        poll_set_started(ctx, &ready, false);
    }

    /* Paced (postq.h), the timeout does not look at the queues. */
    paced = blocking && iot__postq_paced(ctx);
    timeout = blocking ? iot__ctx_timeout(ctx) : 0;
    due = timeout;
    /* Handlers found ready here run in dispatch_ready(), which counts
     * their progress (the notifier's never counts). */
    polled = try_poll_mode(ctx, &ready, &timeout);
    if (paced && !polled && timeout != 0 && iot__postq_pending(ctx)) {
        timeout = 0; /* busy polling did not run, or ended before a look */
    }

    /* Relaxed posts (postq.h) may hide in store buffers: make them
     * visible, and go round once more instead of blocking. */
    if (timeout != 0 && iot__postq_relaxed_end(ctx)) {
        timeout = 0;
    }
    may_block = timeout != 0;
    if (may_block && !notify_me_raise(ctx)) {
        timeout = 0;
    }
    if (need_fd_wait(ctx, timeout, polled)) {
        if (timeout != 0 && poll_set_started(ctx, &ready, false)) {
            timeout = 0;
        }
        fd_wait(ctx, &ready, timeout);
    }
    if (may_block) {
        notify_me_lower(ctx);
    }
    iot__ctx_notify_accept(ctx);

    if (ctx->param.max_ns && !gsource) {
        /* Busy polling caught the event: it came within the round after
         * the last clock reading, which is then the end of the wait. */
        block_ns = iot__poll_block_ns(
            start, polled ? ctx->poll_now_ns : iot__now_ns(),
            atomic_load_explicit(&ctx->kick_ns, memory_order_relaxed),
            timeout != 0);
    }

    ctx->dispatching = true;
    progress = iot__bh_poll(ctx);
    if (blocking && progress) {
        iot__postq_relaxed_begin(ctx);
    } else if (blocking && ctx->bh_taken > 0) {
        /* Only idle (or cancelled) BHs: no stream.  Relaxed posting and
         * its pacing end here, or an idle BH that schedules itself again
         * would stay pending for ever, and a paced loop, which goes round
         * on anything pending, would spin on it instead of waiting the
         * idle period.  The next iteration looks at the queues before it
         * may block (iot__postq_relaxed_end()'s contract). */
        iot__postq_relaxed_end(ctx);
    }
    progress |= dispatch_ready(ctx, &ready, block_ns);

    iot__handlers_free_deleted(ctx);
    iot__lockcnt_dec(&ctx->list_lock);

    if (iot__timers_run(ctx)) {
        progress = true;
        if (due > 0 && ctx->param.max_ns && !gsource) {
            timer_window_adapt(ctx, due);
        }
    }
    ctx->dispatching = outer_dispatching;
    return progress;
}

bool iot_ctx_poll(IotCtx *ctx, bool blocking)
{
    return ctx_iterate(ctx, blocking, false);
}

bool iot__ctx_poll_gsource(IotCtx *ctx)
{
    return ctx_iterate(ctx, false, true);
}
