/* SPDX-License-Identifier: MIT */
/*
 * Timer tests (specification sections 2.7, 7.1 /aio/timer/schedule and
 * 9 item 10).  Timing is never asserted except "not early", which is a
 * correctness property: a callback checks the clock against its deadline.
 * Waiting is done by polling, never by sleeping.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "harness.h"
#include "ctx-internal.h"

#define MS   IOT_NS_PER_MS
#define MONO IOT_CLOCK_MONOTONIC
#define WALL IOT_CLOCK_WALL

/* ---- helpers ---- */

static IotCtx *ctx_setup(void)
{
    IotError *err = NULL;
    IotCtx *ctx = iot_ctx_new(&err);

    if (!ctx) {
        t_fail(__FILE__, __LINE__, "iot_ctx_new: %s",
               err ? iot_error_message(err) : "?");
    }
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    /* Whatever creation did, start from a quiet loop. */
    while (iot_ctx_poll(ctx, false)) {
    }
    return ctx;
}

static void ctx_teardown(IotCtx *ctx)
{
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
}

static IotTimer *timer_new(IotCtx *ctx, IotClock clock, IotTimerFunc *cb,
                           void *opaque)
{
    IotTimer *t = iot_timer_new(ctx, clock, cb, opaque);

    T_ASSERT(t != NULL);
    return t;
}

/* xorshift64*: a small, fixed-seed generator, one state per user. */
static uint64_t rnd_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static bool notified(IotCtx *ctx)
{
    return atomic_load(&ctx->notified);
}

/* ---- /aio/timer/schedule ---- */

typedef struct SchedData {
    IotTimer *t;
    int64_t deadline; /* the current arming */
    int fired;
    int64_t fired_at; /* clock read inside the callback */
} SchedData;

static void sched_cb(void *opaque)
{
    SchedData *d = opaque;
    int64_t now = iot_clock_ns(MONO);

    T_ASSERT(now >= d->deadline); /* never early */
    T_ASSERT_FALSE(iot_timer_pending(d->t));
    d->fired++;
    d->fired_at = now;
    if (d->fired == 1) {
        /* Re-arm from the callback, as the QEMU test does. */
        d->deadline = now + 100 * MS;
        iot_timer_mod(d->t, d->deadline);
    }
}

static void dummy_event_cb(IotEvent *e)
{
    (void)e;
    t_fail(__FILE__, __LINE__, "dummy notifier fired");
}

/* Non-blocking poll; if the clock read right after it is still before
 * @deadline, nothing may have fired. */
static void check_not_early(IotCtx *ctx, SchedData *d, int fired_before)
{
    bool r = iot_ctx_poll(ctx, false);
    int64_t after = iot_clock_ns(MONO);

    if (after < d->deadline) {
        T_ASSERT_FALSE(r);
        T_ASSERT_EQ(d->fired, fired_before);
    }
}

static void test_schedule(void)
{
    IotCtx *ctx = ctx_setup();
    SchedData d = { 0 };
    IotEvent e;

    /* No timer on a clock that does not exist, or without a callback. */
    T_ASSERT(iot_timer_new(ctx, IOT_CLOCK_COUNT, sched_cb, &d) == NULL);
    T_ASSERT(iot_timer_new(ctx, (IotClock)-1, sched_cb, &d) == NULL);
    T_ASSERT(iot_timer_new(ctx, MONO, NULL, &d) == NULL);

    T_ASSERT_EQ(iot_event_init(&e, false), 0);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, dummy_event_cb, NULL, NULL), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    d.t = timer_new(ctx, MONO, sched_cb, &d);
    d.deadline = iot_clock_ns(MONO) + 100 * MS;
    iot_timer_mod(d.t, d.deadline);
    T_ASSERT_TRUE(iot_timer_pending(d.t));
    T_ASSERT_EQ(iot_timer_expire_ns(d.t), d.deadline);

    /* Not fired early. */
    check_not_early(ctx, &d, 0);

    /* A blocking poll waits for the deadline and fires it. */
    if (d.fired == 0) {
        T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    }
    T_ASSERT_EQ(d.fired, 1);

    /* The callback re-armed it; it is not due yet. */
    T_ASSERT_TRUE(iot_timer_pending(d.t));
    T_ASSERT_EQ(iot_timer_expire_ns(d.t), d.deadline);
    check_not_early(ctx, &d, 1);

    /* A blocking poll waits for it and fires it, no earlier than due. */
    if (d.fired == 1) {
        T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    }
    T_ASSERT_EQ(d.fired, 2);
    T_ASSERT(d.fired_at >= d.deadline);
    T_ASSERT(iot_clock_ns(MONO) >= d.deadline);

    /* Then nothing more. */
    T_ASSERT_FALSE(iot_timer_pending(d.t));
    T_ASSERT_EQ(iot_timer_expire_ns(d.t), -1);
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.fired, 2);

    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, NULL, NULL, NULL), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_event_cleanup(&e);
    iot_timer_free(d.t);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/order-100k ---- */

typedef struct OrdTimer {
    IotTimer *t;
    int64_t deadline;
    int fired;
} OrdTimer;

static int64_t ord_last;
static long ord_count;

static void ord_cb(void *opaque)
{
    OrdTimer *o = opaque;
    int64_t now = iot_clock_ns(MONO);

    T_ASSERT(now >= o->deadline);      /* not early */
    T_ASSERT(o->deadline >= ord_last); /* nondecreasing deadlines */
    ord_last = o->deadline;
    o->fired++;
    ord_count++;
}

static void test_order(void)
{
    IotCtx *ctx = ctx_setup();
    long n = t_scale(100000, 10);
    OrdTimer *ts = calloc((size_t)n, sizeof(*ts));
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    long ncancel = 0;
    int64_t base;

    T_ASSERT(ts != NULL);
    for (long i = 0; i < n; i++) {
        ts[i].t = timer_new(ctx, MONO, ord_cb, &ts[i]);
    }
    base = iot_clock_ns(MONO) + 5 * MS;
    for (long i = 0; i < n; i++) {
        ts[i].deadline = base + (int64_t)(rnd_next(&seed) % (200 * MS));
        iot_timer_mod(ts[i].t, ts[i].deadline);
    }
    /* Move a quarter of them and cancel an eighth (removal from the middle
     * of the heap), leaving them armed for the ones kept. */
    for (long i = 0; i < n; i++) {
        uint64_t r = rnd_next(&seed);
        if (r % 8 == 0) {
            iot_timer_del(ts[i].t);
            ts[i].deadline = -1;
            ncancel++;
        } else if (r % 4 == 1) {
            ts[i].deadline = base + (int64_t)((r >> 8) % (200 * MS));
            iot_timer_mod(ts[i].t, ts[i].deadline);
        }
        T_ASSERT_EQ(iot_timer_expire_ns(ts[i].t), ts[i].deadline);
    }
    while (ord_count < n - ncancel) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT_EQ(ord_count, n - ncancel);
    T_ASSERT(ncancel > 0);
    for (long i = 0; i < n; i++) {
        T_ASSERT_EQ(ts[i].fired, ts[i].deadline < 0 ? 0 : 1);
        T_ASSERT_FALSE(iot_timer_pending(ts[i].t));
    }
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(ord_count, n - ncancel);

    for (long i = 0; i < n; i++) {
        iot_timer_free(ts[i].t);
    }
    free(ts);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/fifo-equal ---- */

#define FIFO_N 1000

typedef struct FifoTimer {
    IotTimer *t;
    int id;
} FifoTimer;

static int fifo_order[FIFO_N];
static int fifo_count;
static int64_t fifo_deadline;

static void fifo_cb(void *opaque)
{
    FifoTimer *f = opaque;

    T_ASSERT(iot_clock_ns(MONO) >= fifo_deadline);
    T_ASSERT(fifo_count < FIFO_N);
    fifo_order[fifo_count++] = f->id;
}

static void test_fifo_equal(void)
{
    IotCtx *ctx = ctx_setup();
    static FifoTimer fs[FIFO_N];
    int perm[FIFO_N], expect[FIFO_N];
    uint64_t seed = 12345;

    for (int i = 0; i < FIFO_N; i++) {
        fs[i].id = i;
        fs[i].t = timer_new(ctx, MONO, fifo_cb, &fs[i]);
        perm[i] = i;
    }
    /* Arm in a shuffled order, so that creation order is no hint. */
    for (int i = FIFO_N - 1; i > 0; i--) {
        int j = (int)(rnd_next(&seed) % (uint64_t)(i + 1));
        int tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    fifo_deadline = iot_clock_ns(MONO) + 2 * MS;
    for (int i = 0; i < FIFO_N; i++) {
        iot_timer_mod(fs[perm[i]].t, fifo_deadline);
    }
    /* Re-arming the first one to the same deadline is a new arming: it
     * goes behind the others. */
    iot_timer_mod(fs[perm[0]].t, fifo_deadline);
    for (int i = 0; i < FIFO_N - 1; i++) {
        expect[i] = perm[i + 1];
    }
    expect[FIFO_N - 1] = perm[0];

    while (fifo_count == 0) {
        iot_ctx_poll(ctx, true);
    }
    /* All were due at the same sampled "now": one pass ran them all. */
    T_ASSERT_EQ(fifo_count, FIFO_N);
    for (int i = 0; i < FIFO_N; i++) {
        if (fifo_order[i] != expect[i]) {
            t_fail(__FILE__, __LINE__,
                   "position %d: timer %d fired, expected %d", i, fifo_order[i],
                   expect[i]);
        }
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    for (int i = 0; i < FIFO_N; i++) {
        iot_timer_free(fs[i].t);
    }
    ctx_teardown(ctx);
}

/* ---- /aio/timer/rearm-and-cancel ---- */

typedef struct CountTimer {
    IotTimer *t;
    int fired;
} CountTimer;

static void count_cb(void *opaque)
{
    CountTimer *c = opaque;

    /* A timer is no longer pending while its callback runs. */
    T_ASSERT_FALSE(iot_timer_pending(c->t));
    T_ASSERT_EQ(iot_timer_expire_ns(c->t), -1);
    c->fired++;
}

static void test_rearm_and_cancel(void)
{
    IotCtx *ctx = ctx_setup();
    CountTimer c = { 0 };
    int64_t now, far;

    c.t = timer_new(ctx, MONO, count_cb, &c);
    T_ASSERT_FALSE(iot_timer_pending(c.t));
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), -1);

    /* Due, then re-armed far away: the old (due) deadline is not used. */
    now = iot_clock_ns(MONO);
    far = now + 3600 * IOT_NS_PER_S;
    iot_timer_mod(c.t, now - 1);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), now - 1);
    iot_timer_mod(c.t, far);
    T_ASSERT_TRUE(iot_timer_pending(c.t));
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), far);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 0);

    /* Far, then re-armed into the past: fires once, on the next poll, and
     * is not left armed at the far deadline. */
    iot_timer_mod(c.t, now - 1);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), now - 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 1);
    T_ASSERT_FALSE(iot_timer_pending(c.t));
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), -1);
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 1);

    /* Cancel: a due timer that is deleted never fires. */
    iot_timer_mod(c.t, now - 1);
    T_ASSERT_TRUE(iot_timer_pending(c.t));
    iot_timer_del(c.t);
    T_ASSERT_FALSE(iot_timer_pending(c.t));
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), -1);
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 1);
    /* Deleting an unarmed timer is a no-op. */
    iot_timer_del(c.t);
    T_ASSERT_FALSE(iot_timer_pending(c.t));

    /* mod_anticipate arms an unarmed timer... */
    now = iot_clock_ns(MONO);
    iot_timer_mod_anticipate(c.t, now + 3600 * IOT_NS_PER_S);
    T_ASSERT_TRUE(iot_timer_pending(c.t));
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), now + 3600 * IOT_NS_PER_S);
    /* ...never moves it later... */
    iot_timer_mod_anticipate(c.t, now + 7200 * IOT_NS_PER_S);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), now + 3600 * IOT_NS_PER_S);
    iot_timer_mod_anticipate(c.t, now + 3600 * IOT_NS_PER_S);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), now + 3600 * IOT_NS_PER_S);
    /* ...and moves it earlier. */
    iot_timer_mod_anticipate(c.t, now + 1800 * IOT_NS_PER_S);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), now + 1800 * IOT_NS_PER_S);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 1);
    /* A plain mod may move it later again. */
    iot_timer_mod(c.t, now + 7200 * IOT_NS_PER_S);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), now + 7200 * IOT_NS_PER_S);
    /* Anticipated into the past: due at once. */
    iot_timer_mod_anticipate(c.t, now - 1);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), now - 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 2);
    T_ASSERT_FALSE(iot_timer_pending(c.t));

    /* A negative deadline counts as 0 and fires on the next poll. */
    iot_timer_mod(c.t, -5);
    T_ASSERT_TRUE(iot_timer_pending(c.t));
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), 0);
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 3);
    iot_timer_mod(c.t, INT64_MIN);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true)); /* due: does not block */
    T_ASSERT_EQ(c.fired, 4);
    iot_timer_mod_anticipate(c.t, -100); /* unarmed: arms at 0 */
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), 0);
    iot_timer_mod_anticipate(c.t, -1); /* 0 is not later than 0 */
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 5);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 5);

    /* The largest deadline is far, not negative: it never fires and the
     * remaining time does not overflow. */
    iot_timer_mod(c.t, INT64_MAX);
    T_ASSERT_EQ(iot_timer_expire_ns(c.t), INT64_MAX);
    T_ASSERT(iot_ctx_timer_deadline_ns(ctx) > 3600 * IOT_NS_PER_S);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 5);

    /* Freeing an armed timer cancels it. */
    iot_timer_mod(c.t, 0);
    iot_timer_free(c.t);
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(c.fired, 5);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/wall-clock ---- */

typedef struct ClockTimer {
    IotTimer *t;
    IotClock clock;
    int64_t deadline;
    int fired;
} ClockTimer;

static void clock_cb(void *opaque)
{
    ClockTimer *c = opaque;

    T_ASSERT(iot_clock_ns(c->clock) >= c->deadline);
    c->fired++;
}

static void test_wall_clock(void)
{
    IotCtx *ctx = ctx_setup();
    ClockTimer w = { .clock = WALL }, m = { .clock = MONO };
    int64_t before, d;

    /* The two clocks are different clocks. */
    T_ASSERT(iot_clock_ns(WALL) > 0);
    T_ASSERT(iot_clock_ns(MONO) > 0);

    w.t = timer_new(ctx, WALL, clock_cb, &w);
    m.t = timer_new(ctx, MONO, clock_cb, &m);
    /* A far monotonic timer must not hide the near wall-clock one from the
     * loop's timeout. */
    m.deadline = iot_clock_ns(MONO) + 3600 * IOT_NS_PER_S;
    iot_timer_mod(m.t, m.deadline);
    before = iot_clock_ns(WALL);
    w.deadline = before + 20 * MS;
    iot_timer_mod(w.t, w.deadline);
    d = iot_ctx_timer_deadline_ns(ctx);
    T_ASSERT(d >= 0 && d <= 20 * MS);

    while (!w.fired) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT_EQ(w.fired, 1);
    T_ASSERT_EQ(m.fired, 0);
    T_ASSERT_FALSE(iot_timer_pending(w.t));
    T_ASSERT_TRUE(iot_timer_pending(m.t));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* A wall-clock deadline in the past fires on the next poll. */
    w.deadline = iot_clock_ns(WALL) - 1;
    iot_timer_mod(w.t, w.deadline);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(w.fired, 2);

    iot_timer_free(w.t);
    iot_timer_free(m.t);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/deadline ---- */

static void never_cb(void *opaque)
{
    (void)opaque;
    t_fail(__FILE__, __LINE__, "timer fired");
}

static void test_deadline(void)
{
    IotCtx *ctx = ctx_setup();
    IotTimer *a, *b, *c;
    int64_t before, after, exp, d;

    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    a = timer_new(ctx, MONO, never_cb, NULL);
    b = timer_new(ctx, WALL, never_cb, NULL);
    c = timer_new(ctx, MONO, never_cb, NULL);
    /* Timers that exist but are not armed do not count. */
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);

    /* One armed: the remaining time, bracketed by clock reads. */
    before = iot_clock_ns(MONO);
    exp = before + 500 * MS;
    iot_timer_mod(a, exp);
    d = iot_ctx_timer_deadline_ns(ctx);
    after = iot_clock_ns(MONO);
    T_ASSERT(d >= 0);
    T_ASSERT(d <= exp - before);
    T_ASSERT(d >= exp - after || exp - after < 0);

    /* An earlier deadline on the other clock wins (-1 is not the min). */
    before = iot_clock_ns(WALL);
    exp = before + 100 * MS;
    iot_timer_mod(b, exp);
    d = iot_ctx_timer_deadline_ns(ctx);
    after = iot_clock_ns(WALL);
    T_ASSERT(d >= 0);
    T_ASSERT(d <= exp - before);
    T_ASSERT(d >= exp - after || exp - after < 0);

    /* Only the wall-clock one: the monotonic list is empty (-1). */
    iot_timer_del(a);
    d = iot_ctx_timer_deadline_ns(ctx);
    T_ASSERT(d >= 0 && d <= 100 * MS);

    /* Due: 0. */
    iot_timer_mod(a, iot_clock_ns(MONO) - 1);
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), 0);
    iot_timer_del(a);
    iot_timer_mod(a, 0);
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), 0);
    iot_timer_del(a);

    /* All cancelled: -1 again. */
    iot_timer_del(b);
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    iot_timer_free(a);
    iot_timer_free(b);
    iot_timer_free(c);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/wake-only-when-earlier ---- */

/* The test thread arms as a thread other than the loop's (the context is
 * not its current one), and takes the loop's place only to poll. */
static IotTimer *arm_t;
static int64_t arm_at;

static void arm_bh(void *opaque)
{
    (void)opaque;
    iot_timer_mod(arm_t, arm_at);
}

static bool poll_home(IotCtx *ctx)
{
    bool progress;

    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    progress = iot_ctx_poll(ctx, false);
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    return progress;
}

static void test_wake_only_when_earlier(void)
{
    IotCtx *ctx = ctx_setup();
    IotTimer *a, *b, *c, *d;
    int64_t now;

    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);

    a = timer_new(ctx, MONO, never_cb, NULL);
    b = timer_new(ctx, MONO, never_cb, NULL);
    c = timer_new(ctx, MONO, never_cb, NULL);
    d = timer_new(ctx, MONO, never_cb, NULL);

    T_ASSERT_FALSE(poll_home(ctx));
    T_ASSERT_FALSE(notified(ctx));

    now = iot_clock_ns(MONO);
    /* The first timer is a new earliest deadline: wake. */
    iot_timer_mod(a, now + 10 * IOT_NS_PER_S);
    T_ASSERT_TRUE(notified(ctx));
    T_ASSERT_FALSE(poll_home(ctx));
    T_ASSERT_FALSE(notified(ctx));

    /* Later than the earliest: no wake. */
    iot_timer_mod(b, now + 20 * IOT_NS_PER_S);
    T_ASSERT_FALSE(notified(ctx));

    /* Equal to the earliest: it does not move earlier, no wake. */
    iot_timer_mod(d, now + 10 * IOT_NS_PER_S);
    T_ASSERT_FALSE(notified(ctx));
    iot_timer_del(d);
    T_ASSERT_FALSE(notified(ctx));

    /* Earlier: wake. */
    iot_timer_mod(c, now + 5 * IOT_NS_PER_S);
    T_ASSERT_TRUE(notified(ctx));
    T_ASSERT_FALSE(poll_home(ctx));
    T_ASSERT_FALSE(notified(ctx));

    /* Re-arming the earliest later while it stays the earliest: no wake
     * (c from 5 s to 6 s; a at 10 s). */
    iot_timer_mod(c, now + 6 * IOT_NS_PER_S);
    T_ASSERT_FALSE(notified(ctx));

    /* Re-arming a non-earliest timer later: no wake. */
    iot_timer_mod(b, now + 30 * IOT_NS_PER_S);
    T_ASSERT_FALSE(notified(ctx));

    /* Re-arming the earliest later (the earliest moves later): no wake. */
    iot_timer_mod(c, now + 40 * IOT_NS_PER_S);
    T_ASSERT_FALSE(notified(ctx));
    /* Cancelling the earliest moves it later: no wake. */
    iot_timer_del(a);
    T_ASSERT_FALSE(notified(ctx));
    /* mod_anticipate that changes nothing: no wake. */
    iot_timer_mod_anticipate(b, now + 50 * IOT_NS_PER_S);
    T_ASSERT_FALSE(notified(ctx));

    /* Re-arming a non-earliest timer so that it becomes the earliest:
     * wake (b at 30 s, c at 40 s; b to 2 s). */
    iot_timer_mod(b, now + 2 * IOT_NS_PER_S);
    T_ASSERT_TRUE(notified(ctx));
    T_ASSERT_FALSE(poll_home(ctx));
    T_ASSERT_FALSE(notified(ctx));

    /* mod_anticipate to a new earliest: wake. */
    iot_timer_mod_anticipate(c, now + 1 * IOT_NS_PER_S);
    T_ASSERT_TRUE(notified(ctx));
    atomic_store(&ctx->notified, false);

    /* Re-arming the earliest to an earlier time: wake. */
    iot_timer_mod(c, now + IOT_NS_PER_S / 2);
    T_ASSERT_TRUE(notified(ctx));
    atomic_store(&ctx->notified, false);

    /* The loop running its callbacks does not notify itself: its next
     * timeout computation sees the timer.  Elsewhere on its thread (here
     * between iterations; an io_poll; GLib's prepare of another source)
     * it does: the timeout may be computed already. */
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    arm_t = c;
    arm_at = now + IOT_NS_PER_S / 4;
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, arm_bh, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false)); /* accepts, then runs arm_bh */
    T_ASSERT_FALSE(notified(ctx));
    T_ASSERT(iot_ctx_timer_deadline_ns(ctx) <= IOT_NS_PER_S / 4);
    iot_timer_mod(c, now + IOT_NS_PER_S / 8);
    T_ASSERT_TRUE(notified(ctx));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    iot_timer_free(a);
    iot_timer_free(b);
    iot_timer_free(c);
    iot_timer_free(d);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/cross-thread-arm ---- */

typedef struct CrossData {
    IotCtx *ctx;
    pid_t home_tid;
    ClockTimer ct;
} CrossData;

static void *cross_thread(void *opaque)
{
    CrossData *cd = opaque;

    /* Wait until the home thread has announced that it may block
     * (notify_me) and is asleep in the kernel: it is in its fd wait. */
    while (!(atomic_load(&cd->ctx->notify_me) &&
             t_thread_sleeping(cd->home_tid))) {
        sched_yield();
    }
    cd->ct.deadline = iot_clock_ns(MONO) + 20 * MS;
    iot_timer_mod(cd->ct.t, cd->ct.deadline);
    return NULL;
}

static void cross_run(CrossData *cd)
{
    pthread_t th;

    cd->ct.fired = 0;
    T_ASSERT_EQ(pthread_create(&th, NULL, cross_thread, cd), 0);
    /* With no other deadline (or a far one) only the arming can wake us;
     * if it does not, the case hangs and the harness times it out. */
    while (!cd->ct.fired) {
        iot_ctx_poll(cd->ctx, true);
    }
    T_ASSERT_EQ(pthread_join(th, NULL), 0);
    T_ASSERT_EQ(cd->ct.fired, 1);
    T_ASSERT_FALSE(iot_timer_pending(cd->ct.t));
}

static void test_cross_thread_arm(void)
{
    IotCtx *ctx = ctx_setup();
    CrossData cd = { .ctx = ctx, .home_tid = (pid_t)syscall(SYS_gettid) };
    IotTimer *far;

    cd.ct.clock = MONO;
    cd.ct.t = timer_new(ctx, MONO, clock_cb, &cd.ct);

    /* 1: nothing else armed, nothing pending: the poll would block
     * forever. */
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    cross_run(&cd);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* 2: a far timer armed: the loop sleeps towards it, and a new earlier
     * deadline armed from another thread must wake it. */
    far = timer_new(ctx, MONO, never_cb, NULL);
    iot_timer_mod(far, iot_clock_ns(MONO) + 3600 * IOT_NS_PER_S);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    cross_run(&cd);
    T_ASSERT_TRUE(iot_timer_pending(far));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    iot_timer_free(far);
    iot_timer_free(cd.ct.t);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/rearm-now-no-livelock ---- */

#define RN_ITER 100

static struct {
    IotTimer *t;
    IotBh *bh;
    int timer_runs, bh_runs;
    bool past; /* re-arm at a past deadline instead of "now" */
} rn;

static void rn_bh_cb(void *opaque)
{
    (void)opaque;
    rn.bh_runs++;
}

static void rn_timer_cb(void *opaque)
{
    (void)opaque;
    rn.timer_runs++;
    /* The BH scheduled by the previous run ran in between. */
    T_ASSERT_EQ(rn.bh_runs, rn.timer_runs - 1);
    if (rn.timer_runs < RN_ITER) {
        iot_timer_mod(rn.t, rn.past ? 0 : iot_clock_ns(MONO));
        iot_bh_schedule(rn.bh);
    }
}

static void rn_run(IotCtx *ctx, bool past)
{
    rn.past = past;
    rn.timer_runs = rn.bh_runs = 0;
    iot_timer_mod(rn.t, iot_clock_ns(MONO));
    for (int i = 1; i <= RN_ITER; i++) {
        /* Each iteration runs the timer exactly once (the BH of the
         * previous run first), blocking or not. */
        T_ASSERT_TRUE(iot_ctx_poll(ctx, i % 2 == 0));
        T_ASSERT_EQ(rn.timer_runs, i);
        T_ASSERT_EQ(rn.bh_runs, i - 1);
    }
    T_ASSERT_FALSE(iot_timer_pending(rn.t));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(rn.timer_runs, RN_ITER);
    T_ASSERT_EQ(rn.bh_runs, RN_ITER - 1);
}

static void test_rearm_now_no_livelock(void)
{
    IotCtx *ctx = ctx_setup();

    rn.t = timer_new(ctx, MONO, rn_timer_cb, NULL);
    rn.bh = iot_bh_new(ctx, rn_bh_cb, NULL);
    T_ASSERT(rn.bh != NULL);

    rn_run(ctx, false); /* re-armed at iot_clock_ns() */
    rn_run(ctx, true);  /* re-armed at 0: due at the sampled "now" */

    iot_bh_delete(rn.bh);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_timer_free(rn.t);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/rearm-past-no-starve ---- */

/* A timer that keeps re-arming itself into the past must not keep other
 * timers that were due at the start of the pass from running: the header
 * promises that a pass "runs every timer due by then", and that only the
 * re-armed timer waits for the next iteration. */

static struct {
    IotTimer *self, *other;
    int self_runs, other_runs;
} st;

static void st_self_cb(void *opaque)
{
    (void)opaque;
    st.self_runs++;
    if (st.self_runs < RN_ITER) {
        iot_timer_mod(st.self, 0);
    }
}

static void st_other_cb(void *opaque)
{
    (void)opaque;
    st.other_runs++;
}

static void test_rearm_past_no_starve(void)
{
    IotCtx *ctx = ctx_setup();
    int other_poll = 0;

    st.self = timer_new(ctx, MONO, st_self_cb, NULL);
    st.other = timer_new(ctx, MONO, st_other_cb, NULL);
    /* Both due; self first (deadline 1 < 2). */
    iot_timer_mod(st.self, 1);
    iot_timer_mod(st.other, 2);

    for (int i = 1; i <= RN_ITER; i++) {
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(st.self_runs, i);
        if (st.other_runs && !other_poll) {
            other_poll = i;
        }
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(st.self_runs, RN_ITER);
    T_ASSERT_EQ(st.other_runs, 1);
    /* other was due when the first pass sampled "now" and was armed
     * before that pass began: it must have run in that pass. */
    if (other_poll != 1) {
        t_fail(__FILE__, __LINE__,
               "a due timer ran only in poll %d: starved while another "
               "timer re-armed itself into the past",
               other_poll);
    }
    iot_timer_free(st.self);
    iot_timer_free(st.other);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/deferred-cancel ---- */

/* Timers armed due during a pass are set aside; a later callback of the
 * same pass cancels, frees and re-arms some of them, from the middle and
 * both ends of that list: the others run in the next iteration, once. */

#define DC_N 5

static struct {
    IotTimer *d[DC_N];
    int runs[DC_N];
} dc;

static void dc_arm_cb(void *opaque)
{
    (void)opaque;
    for (int i = 0; i < DC_N; i++) {
        iot_timer_mod(dc.d[i], 0); /* due, armed during the pass */
    }
}

static void dc_change_cb(void *opaque)
{
    (void)opaque;
    /* All five are set aside now, d[4] at the head of the list. */
    iot_timer_del(dc.d[2]);
    iot_timer_free(dc.d[0]); /* the tail */
    dc.d[0] = NULL;
    iot_timer_del(dc.d[4]);    /* the head */
    iot_timer_mod(dc.d[3], 0); /* set aside again, at the head */
}

static void dc_run_cb(void *opaque)
{
    dc.runs[(intptr_t)opaque]++;
}

static void test_deferred_cancel(void)
{
    IotCtx *ctx = ctx_setup();
    IotTimer *arm = timer_new(ctx, MONO, dc_arm_cb, NULL);
    IotTimer *change = timer_new(ctx, MONO, dc_change_cb, NULL);

    for (intptr_t i = 0; i < DC_N; i++) {
        dc.d[i] = timer_new(ctx, MONO, dc_run_cb, (void *)i);
        dc.runs[i] = 0;
    }
    iot_timer_mod(arm, 1); /* both due, the arming first; the five (due
                            * at 0) are taken before the change (at 2) */
    iot_timer_mod(change, 2);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    for (int i = 0; i < DC_N; i++) {
        T_ASSERT_EQ(dc.runs[i], 0);
    }
    T_ASSERT_TRUE(iot_timer_pending(dc.d[1]));
    T_ASSERT_FALSE(iot_timer_pending(dc.d[2]));
    T_ASSERT_TRUE(iot_timer_pending(dc.d[3]));
    T_ASSERT_FALSE(iot_timer_pending(dc.d[4]));
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), 0);

    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(dc.runs[1], 1);
    T_ASSERT_EQ(dc.runs[2], 0);
    T_ASSERT_EQ(dc.runs[3], 1);
    T_ASSERT_EQ(dc.runs[4], 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    for (int i = 1; i < DC_N; i++) {
        iot_timer_free(dc.d[i]);
    }
    iot_timer_free(arm);
    iot_timer_free(change);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/nested-poll-runs-deferred ---- */

/* A timer armed due during a pass is set aside for the next iteration;
 * a blocking poll nested in a later callback of the same pass is such an
 * iteration.  It must run the timer, not spin on it: the deadline says
 * "due" while the timer is set aside. */

static struct {
    IotCtx *ctx;
    IotTimer *a, *b, *c;
    int c_runs;
    long nested_polls;
} np;

static void np_a_cb(void *opaque)
{
    (void)opaque;
    iot_timer_mod(np.c, 0); /* due at once, armed during the pass */
}

static void np_b_cb(void *opaque)
{
    (void)opaque;
    while (!np.c_runs && np.nested_polls < 1000) {
        iot_ctx_poll(np.ctx, true);
        np.nested_polls++;
    }
}

static void np_c_cb(void *opaque)
{
    (void)opaque;
    np.c_runs++;
}

static void test_nested_poll_runs_deferred(void)
{
    IotCtx *ctx = ctx_setup();

    np.ctx = ctx;
    np.a = timer_new(ctx, MONO, np_a_cb, NULL);
    np.b = timer_new(ctx, MONO, np_b_cb, NULL);
    np.c = timer_new(ctx, MONO, np_c_cb, NULL);
    iot_timer_mod(np.a, 1); /* both due; a first */
    iot_timer_mod(np.b, 2);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(np.c_runs, 1);
    T_ASSERT(np.nested_polls <= 2);
    T_ASSERT_FALSE(iot_timer_pending(np.c));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_timer_free(np.a);
    iot_timer_free(np.b);
    iot_timer_free(np.c);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/callback-dels-other ---- */

static struct {
    IotTimer *a, *b;
    int a_runs, b_runs;
    int mode; /* 0 del b, 1 re-arm b far, 2 free b, 3 free a (self) */
    int64_t far;
} cdo;

static void cd_a_cb(void *opaque)
{
    (void)opaque;
    cdo.a_runs++;
    switch (cdo.mode) {
    case 0:
        T_ASSERT_TRUE(iot_timer_pending(cdo.b));
        iot_timer_del(cdo.b);
        break;
    case 1:
        iot_timer_mod(cdo.b, cdo.far);
        break;
    case 2:
        iot_timer_free(cdo.b);
        cdo.b = NULL;
        break;
    case 3:
        iot_timer_free(cdo.a);
        cdo.a = NULL;
        break;
    }
}

static void cd_b_cb(void *opaque)
{
    (void)opaque;
    cdo.b_runs++;
}

static void test_callback_dels_other(void)
{
    IotCtx *ctx = ctx_setup();

    for (int mode = 0; mode < 4; mode++) {
        /* Deadlines: b after a, or equal to it (FIFO puts b second). */
        for (int equal = 0; equal < 2; equal++) {
            int64_t now = iot_clock_ns(MONO);

            cdo.mode = mode;
            cdo.a_runs = cdo.b_runs = 0;
            cdo.far = now + 3600 * IOT_NS_PER_S;
            if (!cdo.a) {
                cdo.a = timer_new(ctx, MONO, cd_a_cb, NULL);
            }
            if (!cdo.b) {
                cdo.b = timer_new(ctx, MONO, cd_b_cb, NULL);
            }
            iot_timer_mod(cdo.a, now - 10);
            iot_timer_mod(cdo.b, equal ? now - 10 : now - 5);

            T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
            T_ASSERT_EQ(cdo.a_runs, 1);
            if (mode == 3) {
                /* a freed itself; b still runs in the same pass. */
                T_ASSERT_EQ(cdo.b_runs, 1);
            } else {
                T_ASSERT_EQ(cdo.b_runs, 0);
            }
            T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
            T_ASSERT_EQ(cdo.a_runs, 1);
            T_ASSERT_EQ(cdo.b_runs, mode == 3 ? 1 : 0);
            if (mode == 1) {
                T_ASSERT_TRUE(iot_timer_pending(cdo.b));
                T_ASSERT_EQ(iot_timer_expire_ns(cdo.b), cdo.far);
                iot_timer_del(cdo.b);
            } else if (cdo.b) {
                T_ASSERT_FALSE(iot_timer_pending(cdo.b));
            }
            T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
        }
    }
    iot_timer_free(cdo.a);
    iot_timer_free(cdo.b);
    ctx_teardown(ctx);
}

/* ---- /aio/timer/many-threads-arm ---- */

#define MT_THREADS   4
#define MT_TIMERS    100
#define MT_MIN_FIRES 4000 /* random phase: fires overlapping the arming */

typedef struct MtTimer {
    IotTimer *t;
    int phase1; /* [home] fires during the random phase */
    int phase2; /* [home] fires during the final phase */
} MtTimer;

static struct {
    IotCtx *ctx;
    MtTimer timers[MT_THREADS][MT_TIMERS];
    atomic_int phase1_done;
    atomic_long phase1_fires;
    atomic_bool go2;
    int phase;   /* [home] */
    long fired2; /* [home] */
} mt;

static void mt_cb(void *opaque)
{
    MtTimer *m = opaque;

    if (mt.phase == 1) {
        m->phase1++;
        atomic_fetch_add(&mt.phase1_fires, 1);
    } else {
        m->phase2++;
        mt.fired2++;
    }
}

static void *mt_thread(void *opaque)
{
    int id = (int)(intptr_t)opaque;
    MtTimer *mine = mt.timers[id];
    uint64_t seed = 0xC0FFEEULL + (uint64_t)id * 7919;
    long ops = t_scale(10000, 10);

    /* At least @ops operations, and on until the loop has fired enough
     * timers meanwhile that firing really overlapped with arming. */
    for (long i = 0; i < ops || atomic_load(&mt.phase1_fires) < MT_MIN_FIRES;
         i++) {
        uint64_t r = rnd_next(&seed);
        IotTimer *t = mine[r % MT_TIMERS].t;
        int64_t now = iot_clock_ns(MONO);
        /* From 1 ms in the past to 4 ms ahead: some fire meanwhile. */
        int64_t when = now - MS + (int64_t)((r >> 16) % (5 * MS));

        switch ((r >> 8) % 6) {
        case 0:
        case 1:
            iot_timer_mod(t, when);
            break;
        case 2:
            iot_timer_mod_anticipate(t, when);
            break;
        case 3:
            iot_timer_del(t);
            break;
        case 4:
            iot_timer_mod(t, now + 3600 * IOT_NS_PER_S);
            break;
        case 5: {
            /* Only the owner arms it, but the loop may fire it between
             * the two reads: check each on its own. */
            int64_t e = iot_timer_expire_ns(t);
            T_ASSERT(e >= -1);
            (void)iot_timer_pending(t);
            break;
        }
        }
    }
    for (int i = 0; i < MT_TIMERS; i++) {
        iot_timer_del(mine[i].t);
        T_ASSERT_FALSE(iot_timer_pending(mine[i].t));
    }
    atomic_fetch_add(&mt.phase1_done, 1);
    iot_ctx_notify(mt.ctx);

    while (!atomic_load(&mt.go2)) {
        sched_yield();
    }
    for (int i = 0; i < MT_TIMERS; i++) {
        int64_t now = iot_clock_ns(MONO);
        uint64_t r = rnd_next(&seed);
        /* In the past, or a little ahead. */
        iot_timer_mod(mine[i].t, now - MS + (int64_t)(r % (3 * MS)));
    }
    return NULL;
}

static void test_many_threads_arm(void)
{
    IotCtx *ctx = ctx_setup();
    pthread_t th[MT_THREADS];
    long total = MT_THREADS * MT_TIMERS;

    mt.ctx = ctx;
    mt.phase = 1;
    for (int i = 0; i < MT_THREADS; i++) {
        for (int j = 0; j < MT_TIMERS; j++) {
            mt.timers[i][j].t = timer_new(ctx, MONO, mt_cb, &mt.timers[i][j]);
        }
    }
    for (int i = 0; i < MT_THREADS; i++) {
        T_ASSERT_EQ(
            pthread_create(&th[i], NULL, mt_thread, (void *)(intptr_t)i), 0);
    }
    /* Random phase: poll while they arm, re-arm and cancel. */
    while (atomic_load(&mt.phase1_done) < MT_THREADS) {
        iot_ctx_poll(ctx, true);
    }
    /* Every timer is cancelled by its owner: nothing may fire now. */
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* Final phase: each timer armed once; each fires exactly once. */
    mt.phase = 2;
    atomic_store(&mt.go2, true);
    while (mt.fired2 < total) {
        iot_ctx_poll(ctx, true);
    }
    for (int i = 0; i < MT_THREADS; i++) {
        T_ASSERT_EQ(pthread_join(th[i], NULL), 0);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(mt.fired2, total);
    for (int i = 0; i < MT_THREADS; i++) {
        for (int j = 0; j < MT_TIMERS; j++) {
            if (mt.timers[i][j].phase2 != 1) {
                t_fail(__FILE__, __LINE__, "thread %d timer %d fired %d times",
                       i, j, mt.timers[i][j].phase2);
            }
            T_ASSERT_FALSE(iot_timer_pending(mt.timers[i][j].t));
        }
    }
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);

    for (int i = 0; i < MT_THREADS; i++) {
        for (int j = 0; j < MT_TIMERS; j++) {
            iot_timer_free(mt.timers[i][j].t);
        }
    }
    ctx_teardown(ctx);
}

int main(int argc, char **argv)
{
    t_add("/aio/timer/schedule", test_schedule);
    t_add("/aio/timer/order-100k", test_order);
    t_add("/aio/timer/fifo-equal", test_fifo_equal);
    t_add("/aio/timer/rearm-and-cancel", test_rearm_and_cancel);
    t_add("/aio/timer/wall-clock", test_wall_clock);
    t_add("/aio/timer/deadline", test_deadline);
    t_add("/aio/timer/wake-only-when-earlier", test_wake_only_when_earlier);
    t_add("/aio/timer/cross-thread-arm", test_cross_thread_arm);
    t_add("/aio/timer/rearm-now-no-livelock", test_rearm_now_no_livelock);
    t_add("/aio/timer/rearm-past-no-starve", test_rearm_past_no_starve);
    t_add("/aio/timer/deferred-cancel", test_deferred_cancel);
    t_add("/aio/timer/nested-poll-runs-deferred",
          test_nested_poll_runs_deferred);
    t_add("/aio/timer/callback-dels-other", test_callback_dels_other);
    t_add("/aio/timer/many-threads-arm", test_many_threads_arm);
    return t_run(argc, argv);
}
