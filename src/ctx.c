/* SPDX-License-Identifier: MIT */
/*
 * The loop context: creation, references, the current and main contexts,
 * notify, and parameters.  The iteration itself is in poll.c.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctx-internal.h"
#include "fdmon.h"
#include <iothread/pool.h>

static IOT_TLS IotCtx *current_ctx;
static _Atomic(IotCtx *) main_ctx;

int64_t (*iot__test_clock)(void);

int64_t iot__now_ns(void)
{
    struct timespec ts;

    if (__builtin_expect(iot__test_clock != NULL, 0)) {
        return iot__test_clock();
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * IOT_NS_PER_S + ts.tv_nsec;
}

int64_t iot__stats_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * IOT_NS_PER_S + ts.tv_nsec;
}

IotCtx *iot_ctx_new(IotError **errp)
{
    return iot_ctx_new_full(NULL, errp);
}

/* Any thread. */
IotCtx *iot_ctx_new_full(const IotCtxOptions *opts, IotError **errp)
{
    IotCtx *ctx;
    int ret;

    /* Its hot fields sit on lines of their own (_Alignas(64)): calloc
     * does not promise that alignment. */
    ctx = aligned_alloc(_Alignof(IotCtx), sizeof(*ctx));
    if (!ctx) {
        iot_error_setg_errno(errp, ENOMEM, "Failed to allocate a context");
        return NULL;
    }
    memset(ctx, 0, sizeof(*ctx));
    atomic_init(&ctx->refcnt, 1);
    ctx->epollfd = -1;
    atomic_init(&ctx->epollfd_dead, -1);
    ctx->pool_max = IOT_POOL_MAX_DEFAULT;
    iot__lockcnt_init(&ctx->list_lock);
    pthread_mutex_init(&ctx->param_lock, NULL);
    ret = iot__bh_ctx_init(ctx);
    iot__timers_init(ctx);
    if (ret < 0) {
        iot_error_setg_errno(errp, ENOMEM, "Failed to allocate a context");
        goto fail;
    }
    if (iot__fdmon_setup(ctx, opts ? opts->fdmon : IOT_FDMON_AUTO, errp) < 0) {
        goto fail;
    }
    ret = iot__fd_notifier_init(ctx);
    if (ret < 0) {
        iot_error_setg_errno(errp, -ret, "Failed to initialize event notifier");
        goto fail;
    }
    /* Registering the notifier notified; nobody is waiting yet, and no
     * loop saw it: not counted either. */
    atomic_store_explicit(&ctx->notified, false, memory_order_relaxed);
    atomic_store_explicit(&ctx->notify_elided, 0, memory_order_relaxed);
    return ctx;

fail:
    iot__fdmon_teardown(ctx);
    iot__timers_finalize(ctx);
    iot__bh_ctx_finalize(ctx);
    pthread_mutex_destroy(&ctx->param_lock);
    iot__lockcnt_destroy(&ctx->list_lock);
    free(ctx);
    return NULL;
}

void iot_ctx_ref(IotCtx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refcnt, 1, memory_order_relaxed);
}

/* Any thread, with no poll running: the last reference is gone. */
static void ctx_finalize(IotCtx *ctx)
{
    /* The pool first: it waits for its workers and deletes its BHs. */
    iot__pool_free(ctx);
    /* BHs next: a leaked BH aborts with its name before anything else is
     * torn down, so the report is not buried under secondary failures. */
    iot__bh_ctx_finalize(ctx);
    iot__timers_finalize(ctx);
    iot__fd_ctx_finalize(ctx);
    iot__fdmon_teardown(ctx);
    free(ctx->pfds);
    free(ctx->pfd_handlers);
    pthread_mutex_destroy(&ctx->param_lock);
    iot__lockcnt_destroy(&ctx->list_lock);
    free(ctx);
}

void iot_ctx_unref(IotCtx *ctx)
{
    if (!ctx) {
        return;
    }
    /* acq_rel: the thread that finalizes sees every other holder's writes. */
    if (atomic_fetch_sub_explicit(&ctx->refcnt, 1, memory_order_acq_rel) == 1) {
        if (current_ctx == ctx) {
            current_ctx = NULL;
        }
        ctx_finalize(ctx);
    }
}

IotCtx *iot_ctx_current(void)
{
    return current_ctx;
}

int iot_ctx_set_current(IotCtx *ctx)
{
    if (ctx && current_ctx && current_ctx != ctx) {
        return -EBUSY;
    }
    current_ctx = ctx;
    if (ctx) {
        iot__pool_home_taken(ctx); /* after an IOThread's end, see pool.c */
    }
    return 0;
}

IotCtx *iot_ctx_main_init(IotError **errp)
{
    IotCtx *ctx, *expect = NULL;

    if (atomic_load(&main_ctx)) {
        iot_error_setg(errp, "the main context already exists");
        return NULL;
    }
    ctx = iot_ctx_new(errp);
    if (!ctx) {
        return NULL;
    }
    if (!atomic_compare_exchange_strong(&main_ctx, &expect, ctx)) {
        iot_ctx_unref(ctx);
        iot_error_setg(errp, "the main context already exists");
        return NULL;
    }
    if (iot_ctx_set_current(ctx) < 0) {
        atomic_store(&main_ctx, NULL);
        iot_ctx_unref(ctx);
        iot_error_setg(errp, "this thread already has a current context");
        return NULL;
    }
    return ctx;
}

IotCtx *iot_ctx_main(void)
{
    return atomic_load_explicit(&main_ctx, memory_order_acquire);
}

void iot_ctx_main_fini(void)
{
    IotCtx *ctx = atomic_exchange(&main_ctx, NULL);

    if (ctx) {
        if (current_ctx == ctx) {
            current_ctx = NULL;
        }
        iot_ctx_unref(ctx);
    }
}

/*
 * Any thread.  The producer half of the notify handshake (section 2.3,
 * modelled in docs/spin/notify.promela).  The caller has published its
 * work (a post, a BH's flags) before calling, with a seq_cst store or
 * read-modify-write, or a store and then a full barrier (a post's slot,
 * iot__postq_push_fenced()); iot_ctx_notify() adds the barrier for any other
 * publication (a timer, a handler change, a caller's flag).
 *
 * While `notified` is set the loop cannot block (notify_me_raise() checks
 * it) and has not yet accepted: its accept comes later in the single order
 * of seq_cst operations, and so does the BH take that follows it, which
 * therefore sees our push (seq_cst, or fenced); mutex-published work is seen
 * through the mutex.  So a producer that finds it set does nothing more: one
 * load, no write to a shared line, while the loop is busy.  Otherwise only the
 * caller that flips it from false to true looks at notify_me.
 */
void iot__ctx_notify_published(IotCtx *ctx)
{
    if (atomic_load_explicit(&ctx->notified, memory_order_seq_cst)) {
        return;
    }
    /* seq_cst exchange, then seq_cst load: the Dekker pair with
     * notify_me_raise() in poll.c (its seq_cst store of notify_me, then
     * seq_cst load of `notified`).  In the single order of seq_cst
     * operations one side comes first, so either the loop sees `notified`
     * and does not block, or we see notify_me and kick the eventfd. */
    if (atomic_exchange_explicit(&ctx->notified, true, memory_order_seq_cst)) {
        return;
    }
    if (atomic_load_explicit(&ctx->notify_me, memory_order_seq_cst)) {
        /* The slow path only, beside a system call: when the work came,
         * for the loop's block_ns. */
        atomic_store_explicit(&ctx->kick_ns, iot__now_ns(),
                              memory_order_relaxed);
        iot_event_set(&ctx->notifier);
        /* Counted after the write: a loop that drains the eventfd after
         * seeing this count (kicks_drained, fd.c) drains this write too,
         * so a readable eventfd always has a count it has not drained
         * (need_fd_wait() in poll.c relies on it). */
        atomic_fetch_add_explicit(&ctx->notify_kicks, 1, memory_order_relaxed);
    } else {
        /* Counted by the flipper, not derived from the loop's accepts: a
         * loop can accept a flip before its producer has counted the
         * write, and accepts minus writes then went 1 and back to 0. */
        atomic_fetch_add_explicit(&ctx->notify_elided, 1, memory_order_relaxed);
    }
}

/* Any thread.  The caller's work may have been published by any store,
 * even a plain one (a flag an AIO_WAIT_WHILE()-style loop re-checks).  On
 * x86 the load of `notified` may pass such a store while it waits in the
 * store buffer, and finding `notified` set ends the notify: the loop could
 * accept, miss the work and block.  The barrier puts the store first
 * (-DPLAIN_PUBLISH in docs/spin/notify.promela; without it, Spin finds
 * the lost wake-up). */
void iot_ctx_notify(IotCtx *ctx)
{
    iot__smp_mb();
    iot__ctx_notify_published(ctx);
}

int iot_ctx_set_poll_params(IotCtx *ctx, int64_t max_ns, int64_t grow,
                            int64_t shrink)
{
    if (max_ns < 0 || grow < 0 || shrink < 0) {
        return -EINVAL;
    }
    pthread_mutex_lock(&ctx->param_lock);
    ctx->param_set = (IotPollParams){ max_ns, grow, shrink };
    /* Release pairs with the acquire in poll.c params_refresh(). */
    atomic_fetch_add_explicit(&ctx->param_gen, 1, memory_order_release);
    pthread_mutex_unlock(&ctx->param_lock);
    iot_ctx_notify(ctx);
    return 0;
}

void iot_ctx_get_poll_params(IotCtx *ctx, int64_t *max_ns, int64_t *grow,
                             int64_t *shrink)
{
    IotPollParams p;

    pthread_mutex_lock(&ctx->param_lock);
    p = ctx->param_set;
    pthread_mutex_unlock(&ctx->param_lock);
    if (max_ns) {
        *max_ns = p.max_ns;
    }
    if (grow) {
        *grow = p.grow;
    }
    if (shrink) {
        *shrink = p.shrink;
    }
}

int iot_ctx_set_max_batch(IotCtx *ctx, int64_t max_batch)
{
    if (max_batch < 0) {
        return -EINVAL;
    }
    atomic_store_explicit(&ctx->max_batch, max_batch, memory_order_relaxed);
    iot_ctx_notify(ctx);
    return 0;
}

int64_t iot_ctx_get_max_batch(IotCtx *ctx)
{
    return atomic_load_explicit(&ctx->max_batch, memory_order_relaxed);
}

const char *iot_ctx_fdmon_name(IotCtx *ctx)
{
    return iot__fdmon(ctx)->name;
}

#define STAT(field)                                                            \
    atomic_load_explicit(&ctx->stats.field, memory_order_relaxed)

/*
 * A seqlock (Boehm's C11 form) around each change of the wait state, and
 * around the end (iot__stats_end()): the odd count, a barrier, the
 * fields, the even count with release; iot__stats_idle() pairs with it.  The
 * clock is read inside, after a full barrier (the odd count is visible before
 * the reading), and the reader reads it inside too: a reader that overlaps the
 * update retries, one that does not read the clock wholly before or wholly
 * after it. So idle_ns and busy_ns never go back, and a wait is never counted
 * twice or missed.  Two full barriers per blocking wait, which costs a system
 * call anyway.
 */
enum { STATS_WAIT_BEGIN, STATS_WAIT_END, STATS_END };

static void stats_wait_set(IotCtx *ctx, int what)
{
    uint64_t seq = STAT(idle_seq);
    int64_t now;

    atomic_store_explicit(&ctx->stats.idle_seq, seq + 1, memory_order_relaxed);
    iot__smp_mb();
    now = iot__stats_now_ns();
    switch (what) {
    case STATS_WAIT_BEGIN:
        if (STAT(wait_start_ns)) {
            /* A GLib prepare whose check never came (its source was
             * destroyed while GLib polled): that wait counts up to now,
             * or restarting its clock would take idle_ns back. */
            IOT_STAT_ADD(ctx, idle_ns, (uint64_t)(now - STAT(wait_start_ns)));
        }
        IOT_STAT_SET(ctx, wait_start_ns, now);
        break;
    case STATS_WAIT_END:
        IOT_STAT_ADD(ctx, idle_ns, (uint64_t)(now - STAT(wait_start_ns)));
        IOT_STAT_SET(ctx, wait_start_ns, 0);
        break;
    default:
        IOT_STAT_SET(ctx, end_ns, now);
        break;
    }
    atomic_store_explicit(&ctx->stats.idle_seq, seq + 2, memory_order_release);
}

void iot__stats_wait_begin(IotCtx *ctx)
{
    stats_wait_set(ctx, STATS_WAIT_BEGIN);
}

void iot__stats_wait_end(IotCtx *ctx)
{
    stats_wait_set(ctx, STATS_WAIT_END);
}

void iot__stats_wait_close(IotCtx *ctx)
{
    if (STAT(wait_start_ns)) {
        iot__stats_wait_end(ctx);
    }
}

void iot__ctx_gsource_poll_end(IotCtx *ctx)
{
    unsigned me = atomic_load_explicit(&ctx->notify_me, memory_order_relaxed);

    /* Release: GLib's poll is over before producers may skip the kick. */
    atomic_store_explicit(&ctx->notify_me, me & ~1u, memory_order_release);
    iot__stats_wait_close(ctx);
}

void iot__stats_end(IotCtx *ctx)
{
    stats_wait_set(ctx, STATS_END);
}

uint64_t iot__stats_idle(IotCtx *ctx, int64_t *now)
{
    for (;;) {
        uint64_t seq =
            atomic_load_explicit(&ctx->stats.idle_seq, memory_order_acquire);
        int64_t waiting = STAT(wait_start_ns);
        int64_t end = STAT(end_ns);
        uint64_t idle = STAT(idle_ns);

        /* Stopped for good: the clock stops with it. */
        *now = end ? end : iot__stats_now_ns();
        atomic_thread_fence(memory_order_acquire);
        if (!(seq & 1) && STAT(idle_seq) == seq) {
            /* Blocked right now: that counts too. */
            return idle +
                   (waiting && *now > waiting ? (uint64_t)(*now - waiting) : 0);
        }
        sched_yield(); /* the home thread is inside a few stores */
    }
}

void iot_ctx_get_stats(IotCtx *ctx, IotCtxStats *s)
{
    int64_t epoch = STAT(epoch_ns), now;
    IotPoolStats pool;

    *s = (IotCtxStats){ 0 };
    s->iterations = STAT(iterations);
    s->idle_ns = iot__stats_idle(ctx, &now);
    if (epoch) {
        uint64_t total = (uint64_t)(now - epoch);
        s->busy_ns = total > s->idle_ns ? total - s->idle_ns : 0;
    }
    s->poll_hits = STAT(poll_hits);
    s->poll_misses = STAT(poll_misses);
    s->poll_ns = STAT(poll_ns);
    s->poll_window_ns = STAT(poll_window_ns);
    /* Each flip of `notified` either wrote the eventfd or did not need
     * to; both are counted by the flipping producer. */
    s->notify_sent =
        atomic_load_explicit(&ctx->notify_kicks, memory_order_relaxed);
    s->notify_elided =
        atomic_load_explicit(&ctx->notify_elided, memory_order_relaxed);
    s->bh_runs = STAT(bh_runs);
    s->fd_events = STAT(fd_events);
    s->timer_fires = STAT(timer_fires);
    iot_ctx_pool_stats(ctx, &pool);
    s->pool_threads = pool.threads;
    s->pool_queued = pool.queued;
    s->pool_active = pool.active;
    s->backend = iot_ctx_fdmon_name(ctx);
}
