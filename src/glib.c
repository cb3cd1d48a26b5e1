/* SPDX-License-Identifier: MIT */
/*
 * The loop context as a GSource (section 6.1 of the specification).
 *
 * GLib watches one fd: the io_uring ring's, readable when completions are
 * waiting, or else the epoll fd, readable whenever a registered fd (the
 * context's own notifier included) is.  If epoll cannot register an fd
 * (a regular file, say), the context falls back to poll, the epoll fd
 * stays open for GLib, and prepare does not let GLib sleep until that
 * fd's handler is gone and epoll is back (fdmon-epoll.c).  prepare sets
 * bit 0 of notify_me, so producers kick the notifier while GLib may sleep,
 * then takes a notification that came without a kick and looks at the
 * work (docs/spin/notify.promela, -DGLIB_PREPARE); check clears it and accepts
 * the notification; dispatch runs one non-blocking iteration, which leaves poll
 * mode if a blocking iot_ctx_poll() left it on (GLib never busy polls) and runs
 * what the handlers' last io_poll finds; prepare does not let GLib sleep before
 * that.  The bit is separate from the +2 counter of
 * iot_ctx_poll(), and only check clears it: an iteration may run between
 * prepare and GLib's poll (from another source's prepare, or an
 * application's code between g_main_context_prepare() and its poll), and
 * must leave the bit for that poll (docs/spin/notify.promela,
 * -DGLIB_NESTED_POLL); it ends prepare's idle wait only.  GLib skips check
 * for a source destroyed while it polled: the bit then stays until a
 * later prepare and check, and a notify meanwhile costs a needless
 * eventfd write, never a lost one.
 */
#include <iothread/glib.h>

#include "ctx-internal.h"
#include "fdmon.h"
#include "postq.h"

typedef struct CtxSource {
    GSource source;
    IotCtx *ctx;
    gpointer tag; /* the watched fd's tag */
} CtxSource;

/* Home thread.  ns -> ms for GLib, rounded up: better to wait a little too
 * long than to spin. */
static gint timeout_ms(int64_t ns)
{
    int64_t ms;

    if (ns < 0) {
        return -1;
    }
    ms = (ns + IOT_NS_PER_MS - 1) / IOT_NS_PER_MS;
    return ms > G_MAXINT32 ? G_MAXINT32 : (gint)ms;
}

static gboolean ctx_source_prepare(GSource *source, gint *timeout)
{
    IotCtx *ctx = ((CtxSource *)source)->ctx;
    unsigned me = atomic_load_explicit(&ctx->notify_me, memory_order_relaxed);
    int64_t ns;

    /* seq_cst: the same Dekker pair as notify_me_raise() in poll.c. */
    atomic_store_explicit(&ctx->notify_me, me | 1, memory_order_seq_cst);
    /* A notification that came while GLib was not waiting (so without a
     * kick) is taken here, and the queues and timers then show what it
     * was for: a BH to run makes the timeout 0, an idle one's the idle
     * period (QEMU's prepare does not look at `notified` either; an idle
     * BH that schedules itself again would otherwise spin).  The seq_cst
     * load after the store of notify_me is the Dekker pair of
     * iot__ctx_notify_published(): a notify it misses sees the bit and
     * kicks; one it sees is consumed, and what the notify published is
     * visible to every look that follows (the accept's barrier): so
     * before the backend takes queued fd changes (io_uring's submit), not
     * after, or a change queued in between, whose notify found `notified`
     * set and did not kick, would wait for the next wake-up. */
    if (atomic_load_explicit(&ctx->notified, memory_order_seq_cst)) {
        iot__ctx_notify_accept(ctx);
        /* Poll parameters, whose set notified: taken now, not at the
         * next dispatch, which may be long in coming. */
        iot__ctx_params_refresh(ctx);
    }
    if (atomic_load_explicit(&ctx->epoll_rebuild_pending,
                             memory_order_relaxed)) {
        iot__lockcnt_lock(&ctx->list_lock);
        iot__fdmon_epoll_retry(ctx); /* back to epoll, so GLib can sleep */
        iot__lockcnt_unlock(&ctx->list_lock);
    }
    if (iot__fdmon(ctx)->prepare) {
        iot__fdmon(ctx)->prepare(ctx); /* io_uring: submit queued changes */
    }
    /* On poll, the fd GLib watches (an epoll fd kept after epoll failed
     * to register an fd) does not cover the handlers: never sleep.  Nor
     * in poll mode (left by a blocking iot_ctx_poll): handlers may have
     * work their fds do not show, which the dispatch's last io_poll
     * finds as it leaves poll mode. */
    ns = iot__postq_relaxed_end(ctx) ||
                 iot__fdmon(ctx) == &iot__fdmon_poll_ops || ctx->poll_started
             ? 0
             : iot__ctx_timeout(ctx);
    *timeout = timeout_ms(ns);
    if (ns != 0) {
        iot__stats_wait_begin(ctx); /* GLib polls: idle until check */
    }
    return ns == 0;
}

static gboolean ctx_source_check(GSource *source)
{
    CtxSource *cs = (CtxSource *)source;
    IotCtx *ctx = cs->ctx;

    iot__ctx_gsource_poll_end(ctx);
    /* Readable: the dispatch must look, even if no kick is counted yet (a
     * producer between its eventfd write and its count, need_fd_wait()),
     * or the fd stays readable and GLib spins until the count comes. */
    ctx->gsource_saw_fd = g_source_query_unix_fd(source, cs->tag) & G_IO_IN;
    /* Any scheduled BH, an idle one too (prepare let GLib wait its
     * period): as QEMU's check.  An idle BH left in a queue (a take stops
     * at IOT_POSTQ_TAKE) would otherwise never run. */
    return ctx->gsource_saw_fd || ctx->poll_started ||
           iot__bh_timeout(ctx) >= 0 || iot__timers_deadline(ctx) == 0 ||
           atomic_load_explicit(&ctx->notified, memory_order_relaxed);
}

static gboolean ctx_source_dispatch(GSource *source, GSourceFunc cb,
                                    gpointer data)
{
    (void)cb;
    (void)data;
    iot__ctx_poll_gsource(((CtxSource *)source)->ctx);
    return G_SOURCE_CONTINUE;
}

static void ctx_source_finalize(GSource *source)
{
    iot_ctx_unref(((CtxSource *)source)->ctx);
}

static GSourceFuncs ctx_source_funcs = {
    .prepare = ctx_source_prepare,
    .check = ctx_source_check,
    .dispatch = ctx_source_dispatch,
    .finalize = ctx_source_finalize,
};

GSource *iot_ctx_new_gsource(IotCtx *ctx)
{
    CtxSource *cs;
    int fd = iot__fdmon_gsource_fd(ctx);

    if (fd < 0) {
        return NULL;
    }
    cs = (CtxSource *)g_source_new(&ctx_source_funcs, sizeof(*cs));
    iot_ctx_ref(ctx);
    cs->ctx = ctx;
    g_source_set_name(&cs->source, "iothread-ctx");
    g_source_set_can_recurse(&cs->source, TRUE);
    cs->tag = g_source_add_unix_fd(&cs->source, fd, G_IO_IN);
    return &cs->source;
}
