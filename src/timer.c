/* SPDX-License-Identifier: MIT */
/*
 * Timers: one binary min-heap per clock and context, ordered by
 * (deadline, arming sequence) so that equal deadlines fire in arming order.
 * Each list has its own mutex: arming and cancelling may come from any
 * thread.  Every timer owns a heap slot from creation on, so arming never
 * allocates and cannot fail.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "ctx-internal.h"

struct IotTimer {
    IotCtx *ctx;      /* [const] */
    IotClock clock;   /* [const] */
    IotTimerFunc *cb; /* [const] */
    void *opaque;     /* [const] */
    int64_t expire;   /* [list lock] deadline; -1 when not armed */
    uint64_t seq;     /* [list lock] when it was armed */
    size_t idx;       /* [list lock] heap slot, NOT_ARMED or DEFERRED */
    /* [list lock] on tl->deferred while DEFERRED: the next one, and the
     * link that points here (a cancel unlinks in O(1)) */
    IotTimer *dnext, **dprev;
};

#define NOT_ARMED SIZE_MAX
/* Armed and due, but armed during the running pass: set aside until the
 * pass ends (timers_run_clock), so it runs next iteration. */
#define DEFERRED (SIZE_MAX - 1)

int64_t iot_clock_ns(IotClock clock)
{
    struct timespec ts;

    clock_gettime(clock == IOT_CLOCK_WALL ? CLOCK_REALTIME : CLOCK_MONOTONIC,
                  &ts);
    return ts.tv_sec * IOT_NS_PER_S + ts.tv_nsec;
}

/* ---- the heap (list lock held) ---- */

static bool heap_less(const IotTimer *a, const IotTimer *b)
{
    return a->expire < b->expire || (a->expire == b->expire && a->seq < b->seq);
}

static void heap_place(IotTimerList *tl, IotTimer *t, size_t i)
{
    tl->heap[i] = t;
    t->idx = i;
}

static void heap_up(IotTimerList *tl, size_t i)
{
    IotTimer *t = tl->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(t, tl->heap[parent])) {
            break;
        }
        heap_place(tl, tl->heap[parent], i);
        i = parent;
    }
    heap_place(tl, t, i);
}

static void heap_down(IotTimerList *tl, size_t i)
{
    IotTimer *t = tl->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= tl->len) {
            break;
        }
        if (child + 1 < tl->len &&
            heap_less(tl->heap[child + 1], tl->heap[child])) {
            child++;
        }
        if (!heap_less(tl->heap[child], t)) {
            break;
        }
        heap_place(tl, tl->heap[child], i);
        i = child;
    }
    heap_place(tl, t, i);
}

static void heap_insert(IotTimerList *tl, IotTimer *t)
{
    tl->heap[tl->len] = t;
    t->idx = tl->len++;
    heap_up(tl, t->idx);
}

static void heap_remove(IotTimerList *tl, IotTimer *t)
{
    size_t i = t->idx;
    IotTimer *last = tl->heap[--tl->len];

    t->idx = NOT_ARMED;
    if (last == t) {
        return;
    }
    heap_place(tl, last, i);
    if (i > 0 && heap_less(last, tl->heap[(i - 1) / 2])) {
        heap_up(tl, i);
    } else {
        heap_down(tl, i);
    }
}

/* ---- arming state (list lock held) ---- */

static void deferred_push(IotTimerList *tl, IotTimer *t)
{
    t->idx = DEFERRED;
    t->dnext = tl->deferred;
    if (t->dnext) {
        t->dnext->dprev = &t->dnext;
    }
    t->dprev = &tl->deferred;
    tl->deferred = t;
}

static void deferred_unlink(IotTimer *t)
{
    *t->dprev = t->dnext;
    if (t->dnext) {
        t->dnext->dprev = t->dprev;
    }
}

static bool timer_armed(const IotTimer *t)
{
    return t->idx != NOT_ARMED;
}

static void timer_disarm(IotTimerList *tl, IotTimer *t)
{
    if (t->idx == DEFERRED) {
        deferred_unlink(t);
    } else if (t->idx != NOT_ARMED) {
        heap_remove(tl, t);
    }
    t->idx = NOT_ARMED;
    t->expire = -1;
}

/* ---- timers ---- */

void iot__timers_init(IotCtx *ctx)
{
    for (int c = 0; c < IOT_CLOCK_COUNT; c++) {
        pthread_mutex_init(&ctx->timers[c].lock, NULL);
    }
}

void iot__timers_finalize(IotCtx *ctx)
{
    for (int c = 0; c < IOT_CLOCK_COUNT; c++) {
        IotTimerList *tl = &ctx->timers[c];
        /* Timers still armed are disarmed; the timers themselves belong to
         * their creators, who must free them before the context goes. */
        while (tl->len) {
            timer_disarm(tl, tl->heap[0]);
        }
        free(tl->heap);
        tl->heap = NULL;
        pthread_mutex_destroy(&tl->lock);
    }
}

IotTimer *iot_timer_new(IotCtx *ctx, IotClock clock, IotTimerFunc *cb,
                        void *opaque)
{
    IotTimerList *tl;
    IotTimer *t;

    if ((unsigned)clock >= IOT_CLOCK_COUNT || !cb) {
        return NULL;
    }
    t = malloc(sizeof(*t));
    if (!t) {
        return NULL;
    }
    *t = (IotTimer){ .ctx = ctx,
                     .clock = clock,
                     .cb = cb,
                     .opaque = opaque,
                     .expire = -1,
                     .idx = NOT_ARMED };
    tl = &ctx->timers[clock];
    pthread_mutex_lock(&tl->lock);
    if (tl->ntimers == tl->cap) {
        size_t cap = tl->cap ? tl->cap * 2 : 16;
        IotTimer **heap = realloc(tl->heap, cap * sizeof(*heap));
        if (!heap) {
            pthread_mutex_unlock(&tl->lock);
            free(t);
            return NULL;
        }
        tl->heap = heap;
        tl->cap = cap;
    }
    tl->ntimers++;
    pthread_mutex_unlock(&tl->lock);
    return t;
}

void iot_timer_free(IotTimer *t)
{
    IotTimerList *tl;

    if (!t) {
        return;
    }
    tl = &t->ctx->timers[t->clock];
    pthread_mutex_lock(&tl->lock);
    timer_disarm(tl, t);
    tl->ntimers--;
    pthread_mutex_unlock(&tl->lock);
    free(t);
}

/* Any thread.  Arms @t at @expire unless @anticipate and it is armed
 * earlier already; wakes the loop if the earliest deadline moved earlier. */
static void timer_arm(IotTimer *t, int64_t expire, bool anticipate)
{
    IotTimerList *tl = &t->ctx->timers[t->clock];
    int64_t old_first;
    bool wake;

    if (expire < 0) {
        expire = 0;
    }
    pthread_mutex_lock(&tl->lock);
    if (anticipate && timer_armed(t) && t->expire <= expire) {
        pthread_mutex_unlock(&tl->lock);
        return;
    }
    old_first = tl->len ? tl->heap[0]->expire : INT64_MAX;
    timer_disarm(tl, t);
    t->expire = expire;
    t->seq = ++tl->seq;
    heap_insert(tl, t);
    wake = tl->heap[0] == t && expire < old_first;
    pthread_mutex_unlock(&tl->lock);

    /* The loop may be sleeping towards the old, later deadline; not if
     * this is the loop running its callbacks, whose next timeout
     * computation sees the timer: a notify to itself would only cost a
     * barrier and end its next busy-poll stretch for nothing.  Anywhere
     * else on the home thread (an io_poll during busy polling, GLib's
     * prepare of another source) the timeout is already computed: the
     * notify is what ends the wait. */
    if (wake && !iot__ctx_in_own_dispatch(t->ctx)) {
        iot_ctx_notify(t->ctx);
    }
}

void iot_timer_mod(IotTimer *t, int64_t expire_ns)
{
    timer_arm(t, expire_ns, false);
}

void iot_timer_mod_anticipate(IotTimer *t, int64_t expire_ns)
{
    timer_arm(t, expire_ns, true);
}

void iot_timer_del(IotTimer *t)
{
    IotTimerList *tl = &t->ctx->timers[t->clock];

    pthread_mutex_lock(&tl->lock);
    timer_disarm(tl, t);
    pthread_mutex_unlock(&tl->lock);
}

int64_t iot_timer_expire_ns(IotTimer *t)
{
    IotTimerList *tl = &t->ctx->timers[t->clock];
    int64_t expire;

    pthread_mutex_lock(&tl->lock);
    expire = t->expire;
    pthread_mutex_unlock(&tl->lock);
    return expire;
}

bool iot_timer_pending(IotTimer *t)
{
    return iot_timer_expire_ns(t) >= 0;
}

/* Any thread.  ns until the earliest deadline, 0 if due, -1 if none. */
int64_t iot__timers_deadline(IotCtx *ctx)
{
    int64_t deadline = -1;

    for (int c = 0; c < IOT_CLOCK_COUNT; c++) {
        IotTimerList *tl = &ctx->timers[c];
        int64_t first = -1;

        pthread_mutex_lock(&tl->lock);
        if (tl->deferred) {
            first = 0; /* a pass is running and has due timers set aside */
        } else if (tl->len) {
            first = tl->heap[0]->expire;
        }
        pthread_mutex_unlock(&tl->lock);
        if (first >= 0) {
            int64_t left = first - iot_clock_ns((IotClock)c);
            deadline = iot__timeout_min(deadline, left > 0 ? left : 0);
        }
    }
    return deadline;
}

int64_t iot_ctx_timer_deadline_ns(IotCtx *ctx)
{
    return iot__timers_deadline(ctx);
}

/* List lock held.  The timers a pass set aside go back into the heap. */
static void timers_undefer(IotTimerList *tl)
{
    while (tl->deferred) {
        IotTimer *t = tl->deferred;
        deferred_unlink(t);
        heap_insert(tl, t);
    }
}

/* Home thread.  Runs the timers of one clock due at the sampled "now".
 * A timer armed during the pass (by a callback or another thread) to a due
 * deadline is set aside and put back when the pass ends: it runs in the
 * next iteration, and the timers due behind it still run in this one.
 * A pass nested in a callback is such a next iteration: it takes back
 * what the outer pass set aside (which iot__timers_deadline() reports as
 * due, so a nested blocking poll that left it aside would spin). */
static bool timers_run_clock(IotCtx *ctx, IotClock c)
{
    IotTimerList *tl = &ctx->timers[c];
    bool progress = false;
    uint64_t pass_seq;
    int64_t now;

    pthread_mutex_lock(&tl->lock);
    timers_undefer(tl);
    if (!tl->len) {
        pthread_mutex_unlock(&tl->lock);
        return false;
    }
    now = iot_clock_ns(c);
    pass_seq = tl->seq;
    while (tl->len && tl->heap[0]->expire <= now) {
        IotTimer *t = tl->heap[0];
        heap_remove(tl, t);
        if (t->seq > pass_seq) {
            deferred_push(tl, t);
            continue;
        }
        t->expire = -1;
        pthread_mutex_unlock(&tl->lock);
        t->cb(t->opaque);
        IOT_STAT_ADD(ctx, timer_fires, 1);
        progress = true;
        pthread_mutex_lock(&tl->lock);
    }
    timers_undefer(tl);
    pthread_mutex_unlock(&tl->lock);
    return progress;
}

bool iot__timers_run(IotCtx *ctx)
{
    bool progress = false;

    for (int c = 0; c < IOT_CLOCK_COUNT; c++) {
        progress |= timers_run_clock(ctx, (IotClock)c);
    }
    return progress;
}
