/* SPDX-License-Identifier: MIT */
/*
 * Bottom halves: section 2.2 of the specification, the BH rows of its
 * section 7.1 checklist, and the library's own promises on top of them
 * (FIFO within a batch, nested polls draining their parents, the idle
 * cap, cross-thread wake-ups, leak aborts that name the BH).
 *
 * Every case makes its own context the calling thread's current one
 * (iot_ctx_poll() asserts it runs on the home thread), deletes its BHs
 * and drops the context.  In an AddressSanitizer build the teardown also
 * runs LeakSanitizer by hand: the harness ends each case with _exit(),
 * which skips the leak check that would otherwise run at exit, and some
 * cases (one-shots, BHs deleted while pending) are only about freeing.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "harness.h"

/* ---- helpers ---- */

/* A new context, current for the calling thread, with nothing to do. */
static IotCtx *ctx_setup(void)
{
    IotError *err = NULL;
    IotCtx *ctx = iot_ctx_new(&err);

    if (!ctx) {
        t_fail(__FILE__, __LINE__, "iot_ctx_new: %s",
               err ? iot_error_message(err) : "(no error)");
    }
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT(iot_ctx_current() == ctx);
    /* A fresh context has no work.  This also accepts any notification
     * that creating it may have left, so a later blocking poll blocks. */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(iot__bh_timeout(ctx), -1);
    return ctx;
}

/* The caller has deleted its BHs (one-shots free themselves). */
static void ctx_teardown(IotCtx *ctx)
{
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
}

/* Spins (yielding) until @ctx's home thread has announced that its poll
 * may block: a notify from now on must wake it through the eventfd. */
static void wait_until_blocking(IotCtx *ctx)
{
    while (atomic_load(&ctx->notify_me) == 0) {
        sched_yield();
    }
}

static pthread_t start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t tid;

    T_ASSERT_EQ(pthread_create(&tid, NULL, fn, arg), 0);
    return tid;
}

static void join_thread(pthread_t tid)
{
    T_ASSERT_EQ(pthread_join(tid, NULL), 0);
}

/*
 * A counting BH: it reschedules itself until it has run @max times, and
 * then, if @delete_at_max, deletes itself.
 */
typedef struct BhData {
    IotBh *bh;
    int n;
    int max;
    bool delete_at_max;
} BhData;

static void bh_data_cb(void *opaque)
{
    BhData *d = opaque;

    d->n++;
    if (d->n < d->max) {
        iot_bh_schedule(d->bh);
    } else if (d->delete_at_max) {
        iot_bh_delete(d->bh);
        d->bh = NULL;
    }
}

static void bh_data_init(IotCtx *ctx, BhData *d, int max, bool delete_at_max)
{
    *d = (BhData){ .max = max, .delete_at_max = delete_at_max };
    d->bh = iot_bh_new(ctx, bh_data_cb, d);
    T_ASSERT(d->bh != NULL);
}

/*
 * A logging BH: appends its tag to a shared log, then on its first run
 * does what it was set up to do to other BHs, in this order: schedule,
 * cancel, delete, nested poll.
 */
typedef struct Log {
    char buf[64];
    size_t len;
} Log;

typedef struct LogBh {
    IotCtx *ctx;
    Log *log;
    char tag;
    int n;
    IotBh *bh;
    IotBh *schedule;      /* iot_bh_schedule() it */
    IotBh *cancel;        /* iot_bh_cancel() it */
    IotBh *del;           /* iot_bh_delete() it */
    bool delete_self;     /* iot_bh_delete(self->bh) */
    int nested;           /* 1: nested iot_ctx_poll(false), 2: (true) */
    bool nested_progress; /* what the nested poll returned */
    char seen[64];        /* the log when the nested poll returned */
} LogBh;

static void log_append(Log *log, char c)
{
    T_ASSERT(log->len + 1 < sizeof(log->buf));
    log->buf[log->len++] = c;
    log->buf[log->len] = '\0';
}

static void log_reset(Log *log)
{
    log->len = 0;
    log->buf[0] = '\0';
}

static void log_cb(void *opaque)
{
    LogBh *x = opaque;

    log_append(x->log, x->tag);
    if (x->n++ > 0) {
        return;
    }
    if (x->schedule) {
        iot_bh_schedule(x->schedule);
    }
    if (x->cancel) {
        iot_bh_cancel(x->cancel);
    }
    if (x->del) {
        iot_bh_delete(x->del);
    }
    if (x->delete_self) {
        iot_bh_delete(x->bh);
        x->bh = NULL;
    }
    if (x->nested) {
        x->nested_progress = iot_ctx_poll(x->ctx, x->nested == 2);
        memcpy(x->seen, x->log->buf, sizeof(x->seen));
    }
}

static void log_bh_init(IotCtx *ctx, LogBh *x, Log *log, char tag)
{
    *x = (LogBh){ .ctx = ctx, .log = log, .tag = tag };
    x->bh = iot_bh_new(ctx, log_cb, x);
    T_ASSERT(x->bh != NULL);
}

static void log_bh_delete(LogBh *x)
{
    if (x->bh) {
        iot_bh_delete(x->bh);
        x->bh = NULL;
    }
}

/* ---- section 7.1 rows ---- */

/* A scheduled BH waits for the loop; a blocking poll runs it once. */
static void test_schedule(void)
{
    IotCtx *ctx = ctx_setup();
    BhData d;

    bh_data_init(ctx, &d, 0, false);
    iot_bh_schedule(d.bh);
    T_ASSERT_EQ(d.n, 0);
    T_ASSERT_EQ(iot__bh_timeout(ctx), 0);

    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(d.n, 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);

    iot_bh_delete(d.bh);
    ctx_teardown(ctx);
}

/* A BH rescheduling itself runs once per iteration, never twice in one. */
static void test_schedule10(void)
{
    IotCtx *ctx = ctx_setup();
    BhData d;

    bh_data_init(ctx, &d, 10, false);
    iot_bh_schedule(d.bh);
    T_ASSERT_EQ(d.n, 0);
    for (int i = 1; i <= 10; i++) {
        /* One blocking call, as in QEMU's test: a pending BH makes the
         * timeout 0, so it must not block either. */
        T_ASSERT_TRUE(iot_ctx_poll(ctx, i == 2));
        T_ASSERT_EQ(d.n, i);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 10);

    iot_bh_delete(d.bh);
    ctx_teardown(ctx);
}

static void test_cancel(void)
{
    IotCtx *ctx = ctx_setup();
    LogBh a, b, c;
    Log log = { "", 0 };
    BhData d;

    /* Cancel after schedule: never runs, no progress, not due. */
    bh_data_init(ctx, &d, 0, false);
    iot_bh_schedule(d.bh);
    iot_bh_cancel(d.bh);
    T_ASSERT_EQ(iot__bh_timeout(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 0);

    /* A cancelled BH can be scheduled again. */
    iot_bh_schedule(d.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);

    /* Re-scheduling a cancelled BH that is still pending keeps its place
     * and runs it once. */
    log_bh_init(ctx, &a, &log, 'A');
    log_bh_init(ctx, &b, &log, 'B');
    iot_bh_schedule(a.bh);
    iot_bh_schedule(b.bh);
    iot_bh_cancel(a.bh);
    iot_bh_schedule(a.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "AB");
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* Cancel from a callback, of a BH later in the same batch. */
    log_reset(&log);
    log_bh_init(ctx, &c, &log, 'C');
    c.cancel = b.bh;
    iot_bh_schedule(c.bh);
    iot_bh_schedule(b.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "C");
    T_ASSERT_EQ(b.n, 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "C");

    iot_bh_delete(d.bh);
    log_bh_delete(&a);
    log_bh_delete(&b);
    log_bh_delete(&c);
    ctx_teardown(ctx);
}

static void test_delete(void)
{
    IotCtx *ctx = ctx_setup();
    LogBh a, b;
    Log log = { "", 0 };
    BhData d;

    /* Delete after schedule: the callback never runs, and the delete's
     * wake-up is not progress. */
    bh_data_init(ctx, &d, 0, false);
    iot_bh_schedule(d.bh);
    iot_bh_delete(d.bh);
    T_ASSERT_EQ(iot__bh_timeout(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* Delete from a callback, of a BH later in the same batch: it is
     * freed without running. */
    log_bh_init(ctx, &a, &log, 'A');
    log_bh_init(ctx, &b, &log, 'B');
    a.del = b.bh;
    iot_bh_schedule(a.bh);
    iot_bh_schedule(b.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "A");
    T_ASSERT_EQ(b.n, 0);
    b.bh = NULL;
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    log_bh_delete(&a);
    ctx_teardown(ctx);
}

static void test_callback_delete_one(void)
{
    IotCtx *ctx = ctx_setup();
    BhData d;

    bh_data_init(ctx, &d, 1, true);
    iot_bh_schedule(d.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);
    T_ASSERT(d.bh == NULL);
    /* The loop frees it; no callback, no progress. */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);
    ctx_teardown(ctx);
}

static void test_callback_delete_many(void)
{
    static const int max[4] = { 1, 3, 2, 4 };
    IotCtx *ctx = ctx_setup();
    BhData d[4];
    int round = 0;
    bool live;

    for (int i = 0; i < 4; i++) {
        bh_data_init(ctx, &d[i], max[i], true);
    }
    for (int i = 0; i < 4; i++) {
        iot_bh_schedule(d[i].bh);
    }
    do {
        round++;
        T_ASSERT(round <= 4);
        /* Every live BH runs exactly once per non-blocking poll. */
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        live = false;
        for (int i = 0; i < 4; i++) {
            int want = round < max[i] ? round : max[i];
            T_ASSERT_EQ(d[i].n, want);
            T_ASSERT_EQ(d[i].bh == NULL, round >= max[i]);
            live |= d[i].bh != NULL;
        }
    } while (live);
    T_ASSERT_EQ(round, 4);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    for (int i = 0; i < 4; i++) {
        T_ASSERT_EQ(d[i].n, max[i]);
    }
    ctx_teardown(ctx);
}

/* A self-deleted BH freed by a nested poll inside its own callback: the
 * outer loop must not touch it afterwards (ASan would see it). */
static void test_callback_delete_nested(void)
{
    IotCtx *ctx = ctx_setup();
    LogBh x;
    Log log = { "", 0 };

    log_bh_init(ctx, &x, &log, 'X');
    x.delete_self = true;
    x.nested = 1;
    iot_bh_schedule(x.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "X");
    /* The nested poll only freed a deleted BH: no progress. */
    T_ASSERT_FALSE(x.nested_progress);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(x.n, 1);
    ctx_teardown(ctx);
}

static void test_flush(void)
{
    IotCtx *ctx = ctx_setup();
    BhData d;

    bh_data_init(ctx, &d, 0, false);
    iot_bh_schedule(d.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(d.n, 1);
    /* Nothing pending any more. */
    T_ASSERT_EQ(iot__bh_timeout(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);

    iot_bh_delete(d.bh);
    ctx_teardown(ctx);
}

/* ---- the library's ordering promises ---- */

static void test_fifo(void)
{
    IotCtx *ctx = ctx_setup();
    LogBh x[4];
    Log log = { "", 0 };

    for (int i = 0; i < 4; i++) {
        log_bh_init(ctx, &x[i], &log, (char)('A' + i));
    }

    /* First-schedule order, within one poll. */
    for (int i = 0; i < 4; i++) {
        iot_bh_schedule(x[i].bh);
    }
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "ABCD");
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* Rescheduling a pending BH neither duplicates nor moves it. */
    log_reset(&log);
    iot_bh_schedule(x[0].bh);
    iot_bh_schedule(x[1].bh);
    iot_bh_schedule(x[2].bh);
    iot_bh_schedule(x[0].bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "ABC");
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "ABC");

    /* The order is the schedule order, not the creation order. */
    log_reset(&log);
    iot_bh_schedule(x[3].bh);
    iot_bh_schedule(x[2].bh);
    iot_bh_schedule(x[0].bh);
    iot_bh_schedule(x[3].bh);
    iot_bh_schedule(x[1].bh);
    iot_bh_schedule(x[2].bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "DCAB");
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    for (int i = 0; i < 4; i++) {
        log_bh_delete(&x[i]);
    }
    ctx_teardown(ctx);
}

static Log oneshot_log;

static void log_oneshot_cb(void *opaque)
{
    log_append(&oneshot_log, *(const char *)opaque);
}

static void schedule_oneshot_cb(void *opaque)
{
    static const char tag = 'O';
    IotCtx *ctx = opaque;

    log_append(&oneshot_log, 'S');
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, log_oneshot_cb, (void *)&tag), 0);
}

static void test_next_iteration(void)
{
    IotCtx *ctx = ctx_setup();
    LogBh a, b, c;
    Log log = { "", 0 };
    IotBh *s;

    /* A BH scheduled from a callback runs in the next poll. */
    log_bh_init(ctx, &a, &log, 'A');
    log_bh_init(ctx, &b, &log, 'B');
    a.schedule = b.bh;
    iot_bh_schedule(a.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "A");
    T_ASSERT_EQ(b.n, 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "AB");
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* ...unless it is already pending in the running batch: then it runs
     * once, in this batch, at its place. */
    log_reset(&log);
    log_bh_init(ctx, &c, &log, 'C');
    c.schedule = b.bh;
    iot_bh_schedule(c.bh);
    iot_bh_schedule(b.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "CB");
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "CB");

    /* The same for a one-shot scheduled from a callback. */
    s = iot_bh_new(ctx, schedule_oneshot_cb, ctx);
    T_ASSERT(s != NULL);
    iot_bh_schedule(s);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(oneshot_log.buf, "S");
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(oneshot_log.buf, "SO");
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    iot_bh_delete(s);
    log_bh_delete(&a);
    log_bh_delete(&b);
    log_bh_delete(&c);
    ctx_teardown(ctx);
}

/*
 * X, Y, Z scheduled in that order; X polls from its callback.  The nested
 * poll runs its parent's pending Y and Z (oldest slice first), then W,
 * which X scheduled just before polling; none of them runs twice.
 */
static void test_nested_drains_parent(void)
{
    IotCtx *ctx = ctx_setup();
    LogBh w, x, y, z;
    Log log = { "", 0 };

    log_bh_init(ctx, &w, &log, 'W');
    log_bh_init(ctx, &x, &log, 'X');
    log_bh_init(ctx, &y, &log, 'Y');
    log_bh_init(ctx, &z, &log, 'Z');
    x.schedule = w.bh;
    x.nested = 1;
    iot_bh_schedule(x.bh);
    iot_bh_schedule(y.bh);
    iot_bh_schedule(z.bh);

    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(x.seen, "XYZW");
    T_ASSERT_TRUE(x.nested_progress);
    T_ASSERT_STR(log.buf, "XYZW");
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "XYZW");
    T_ASSERT_EQ(w.n + x.n + y.n + z.n, 4);

    log_bh_delete(&w);
    log_bh_delete(&x);
    log_bh_delete(&y);
    log_bh_delete(&z);
    ctx_teardown(ctx);
}

/* The same with a blocking nested poll: the parent's pending BHs make its
 * timeout 0 (they were announced before the outer poll accepted the
 * notification, so nothing else would wake it). */
static void test_nested_drains_parent_blocking(void)
{
    IotCtx *ctx = ctx_setup();
    LogBh x, y, z;
    Log log = { "", 0 };

    log_bh_init(ctx, &x, &log, 'X');
    log_bh_init(ctx, &y, &log, 'Y');
    log_bh_init(ctx, &z, &log, 'Z');
    x.nested = 2;
    iot_bh_schedule(x.bh);
    iot_bh_schedule(y.bh);
    iot_bh_schedule(z.bh);

    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_STR(x.seen, "XYZ");
    T_ASSERT_TRUE(x.nested_progress);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(log.buf, "XYZ");

    log_bh_delete(&x);
    log_bh_delete(&y);
    log_bh_delete(&z);
    ctx_teardown(ctx);
}

/* ---- idle BHs ---- */

static void test_idle(void)
{
    IotCtx *ctx = ctx_setup();
    BhData idle, normal;
    bool progress;

    bh_data_init(ctx, &idle, 0, false);
    bh_data_init(ctx, &normal, 0, false);

    /* Running an idle BH is not progress. */
    iot_bh_schedule_idle(idle.bh);
    T_ASSERT_EQ(iot__bh_timeout(ctx), IOT_IDLE_BH_PERIOD_NS);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(idle.n, 1);
    T_ASSERT_EQ(iot__bh_timeout(ctx), -1);

    /* With only an idle BH pending, a blocking poll waits at most the
     * idle period.  Scheduling notified the context; take that back, as a
     * loop that had already accepted it would, so that the poll really
     * computes its timeout from the idle BH (else it would not block). */
    iot_bh_schedule_idle(idle.bh);
    atomic_store(&ctx->notified, false);
    T_ASSERT_EQ(iot__bh_timeout(ctx), IOT_IDLE_BH_PERIOD_NS);
    progress = iot_ctx_poll(ctx, true); /* uncapped: the case times out */
    T_ASSERT_FALSE(progress);
    T_ASSERT_EQ(idle.n, 2);

    /* An idle BH and a normal one: progress, and no waiting. */
    iot_bh_schedule_idle(idle.bh);
    iot_bh_schedule(normal.bh);
    T_ASSERT_EQ(iot__bh_timeout(ctx), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(idle.n, 3);
    T_ASSERT_EQ(normal.n, 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* A cancelled idle BH neither runs nor caps the timeout. */
    iot_bh_schedule_idle(idle.bh);
    iot_bh_cancel(idle.bh);
    T_ASSERT_EQ(iot__bh_timeout(ctx), -1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(idle.n, 3);

    iot_bh_delete(idle.bh);
    iot_bh_delete(normal.bh);
    ctx_teardown(ctx);
}

/* ---- one-shots ---- */

typedef struct OneshotData {
    IotCtx *ctx;
    pthread_t home;
    atomic_int n;
} OneshotData;

static void oneshot_cb(void *opaque)
{
    OneshotData *o = opaque;

    T_ASSERT(pthread_equal(pthread_self(), o->home));
    atomic_fetch_add(&o->n, 1);
}

static void *oneshot_thread(void *opaque)
{
    OneshotData *o = opaque;

    wait_until_blocking(o->ctx);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(o->ctx, oneshot_cb, o), 0);
    return NULL;
}

static void test_oneshot(void)
{
    IotCtx *ctx = ctx_setup();
    OneshotData o = { .ctx = ctx, .home = pthread_self() };
    pthread_t tid;
    bool progress;

    /* Runs once, in the next iteration; frees itself (teardown checks). */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, oneshot_cb, &o), 0);
    T_ASSERT_EQ(atomic_load(&o.n), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(atomic_load(&o.n), 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(atomic_load(&o.n), 1);

    /* From another thread, into a poll that is blocked: it wakes up and
     * runs the one-shot on the home thread. */
    tid = start_thread(oneshot_thread, &o);
    do {
        progress = iot_ctx_poll(ctx, true);
    } while (atomic_load(&o.n) == 1);
    T_ASSERT_TRUE(progress);
    join_thread(tid);
    T_ASSERT_EQ(atomic_load(&o.n), 2);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* No callback: refused, and nothing is queued (a NULL callback is
     * how a slot carries an IotBh: @opaque would be taken for one). */
    {
        char not_a_bh[64];

        memset(not_a_bh, 0x5a, sizeof(not_a_bh));
        T_ASSERT_EQ(iot_bh_schedule_oneshot_full(ctx, NULL, not_a_bh, "x"),
                    -EINVAL);
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        for (size_t i = 0; i < sizeof(not_a_bh); i++) {
            T_ASSERT_EQ(not_a_bh[i], 0x5a);
        }
    }
    /* Nor a BH without one, which the loop would call. */
    errno = 0;
    T_ASSERT(iot_bh_new_full(ctx, NULL, NULL, "x") == NULL);
    T_ASSERT_EQ(errno, EINVAL);

    ctx_teardown(ctx);
}

/* ---- cross-thread scheduling ---- */

#define PING_COUNT 10000

/* One producer, one reused BH, and a handshake: each schedule waits for
 * the run it caused before the next one. */
typedef struct Ping {
    IotCtx *ctx;
    IotBh *bh;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    long scheduled; /* [lock] */
    long runs;      /* [lock] */
} Ping;

static void ping_cb(void *opaque)
{
    Ping *p = opaque;

    pthread_mutex_lock(&p->lock);
    /* No run without a schedule. */
    T_ASSERT(p->runs < p->scheduled);
    p->runs++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void *ping_thread(void *opaque)
{
    Ping *p = opaque;

    for (long i = 1; i <= PING_COUNT; i++) {
        pthread_mutex_lock(&p->lock);
        p->scheduled = i;
        pthread_mutex_unlock(&p->lock);
        iot_bh_schedule(p->bh);
        pthread_mutex_lock(&p->lock);
        while (p->runs < i) {
            pthread_cond_wait(&p->cond, &p->lock);
        }
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

static void test_cross_thread(void)
{
    IotCtx *ctx = ctx_setup();
    Ping p = { .ctx = ctx };
    pthread_t tid;
    long runs;

    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);
    p.bh = iot_bh_new(ctx, ping_cb, &p);
    T_ASSERT(p.bh != NULL);

    tid = start_thread(ping_thread, &p);
    for (;;) {
        pthread_mutex_lock(&p.lock);
        runs = p.runs;
        pthread_mutex_unlock(&p.lock);
        if (runs == PING_COUNT) {
            break;
        }
        /* A lost wake-up would block here for good. */
        iot_ctx_poll(ctx, true);
    }
    join_thread(tid);
    T_ASSERT_EQ(p.runs, PING_COUNT);
    T_ASSERT_EQ(p.scheduled, PING_COUNT);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    iot_bh_delete(p.bh);
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.lock);
    ctx_teardown(ctx);
}

/*
 * No handshake: producers schedule one shared BH as fast as they can,
 * each after publishing a sequence number.  A schedule either pushes the
 * BH (and notifies) or finds it pending and scheduled, in which case the
 * run that clears PENDING comes after it and sees its number.  So the loop
 * sees every producer's last number, or blocks for ever on a lost wake-up
 * (the library skips the notify for an already pending BH).
 */
#define BURST_THREADS 4

typedef struct Burst {
    IotCtx *ctx;
    IotBh *bh;
    long count;
    atomic_long seq[BURST_THREADS];
    long seen[BURST_THREADS]; /* [home] */
    long runs;                /* [home] */
} Burst;

typedef struct BurstArg {
    Burst *b;
    int k;
} BurstArg;

static void burst_cb(void *opaque)
{
    Burst *b = opaque;

    for (int k = 0; k < BURST_THREADS; k++) {
        long s = atomic_load_explicit(&b->seq[k], memory_order_acquire);
        T_ASSERT(s >= b->seen[k]);
        b->seen[k] = s;
    }
    b->runs++;
}

static void *burst_thread(void *opaque)
{
    BurstArg *a = opaque;
    Burst *b = a->b;

    for (long i = 1; i <= b->count; i++) {
        atomic_store_explicit(&b->seq[a->k], i, memory_order_release);
        iot_bh_schedule(b->bh);
    }
    return NULL;
}

static void burst_run(int nthreads)
{
    IotCtx *ctx = ctx_setup();
    Burst b = { .ctx = ctx, .count = t_scale(PING_COUNT * 2, 4) };
    BurstArg args[BURST_THREADS];
    pthread_t tid[BURST_THREADS];
    bool done;

    for (int k = 0; k < BURST_THREADS; k++) {
        atomic_init(&b.seq[k], 0);
    }
    b.bh = iot_bh_new(ctx, burst_cb, &b);
    T_ASSERT(b.bh != NULL);
    for (int k = 0; k < nthreads; k++) {
        args[k] = (BurstArg){ &b, k };
        tid[k] = start_thread(burst_thread, &args[k]);
    }
    do {
        iot_ctx_poll(ctx, true);
        done = true;
        for (int k = 0; k < nthreads; k++) {
            done &= b.seen[k] == b.count;
        }
    } while (!done);
    for (int k = 0; k < nthreads; k++) {
        join_thread(tid[k]);
    }
    /* At most one run per schedule; then it settles. */
    T_ASSERT(b.runs >= 1);
    T_ASSERT(b.runs <= b.count * nthreads);
    while (iot_ctx_poll(ctx, false)) {
    }
    T_ASSERT(b.runs <= b.count * nthreads);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    iot_bh_delete(b.bh);
    ctx_teardown(ctx);
}

static void test_cross_thread_burst(void)
{
    burst_run(1);
}

static void test_cross_thread_many_producers(void)
{
    burst_run(BURST_THREADS);
}

/*
 * A schedule that finds its BH pending but cancelled must notify.  A runs
 * first in a batch with B behind it, cancels B and then waits in a nested
 * blocking poll: nothing is due (B is cancelled) and the outer poll has
 * accepted the notification, so the nested poll really blocks.  Another
 * thread then schedules B.  B is still pending in the parent's batch, so
 * the schedule pushes nothing, but it must still wake the loop, and the
 * nested poll then runs B from its parent's batch.
 */
typedef struct Resched {
    IotCtx *ctx;
    IotBh *a, *b;
    atomic_int b_runs;
    int polls;            /* [home] nested polls done */
    bool nested_progress; /* [home] what the last one returned */
} Resched;

static void resched_b_cb(void *opaque)
{
    Resched *r = opaque;

    atomic_fetch_add(&r->b_runs, 1);
}

static void resched_a_cb(void *opaque)
{
    Resched *r = opaque;

    iot_bh_cancel(r->b);
    do {
        r->nested_progress = iot_ctx_poll(r->ctx, true);
        r->polls++;
    } while (atomic_load(&r->b_runs) == 0);
}

static void *resched_thread(void *opaque)
{
    Resched *r = opaque;

    wait_until_blocking(r->ctx);
    iot_bh_schedule(r->b);
    return NULL;
}

static void test_cross_thread_reschedule_cancelled(void)
{
    IotCtx *ctx = ctx_setup();
    Resched r = { .ctx = ctx };
    pthread_t tid;

    atomic_init(&r.b_runs, 0);
    r.a = iot_bh_new(ctx, resched_a_cb, &r);
    r.b = iot_bh_new(ctx, resched_b_cb, &r);
    T_ASSERT(r.a && r.b);
    tid = start_thread(resched_thread, &r);
    iot_bh_schedule(r.a);
    iot_bh_schedule(r.b);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    join_thread(tid);
    T_ASSERT_EQ(atomic_load(&r.b_runs), 1);
    T_ASSERT(r.polls >= 1);
    T_ASSERT_TRUE(r.nested_progress);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(atomic_load(&r.b_runs), 1);

    iot_bh_delete(r.a);
    iot_bh_delete(r.b);
    ctx_teardown(ctx);
}

/* Deleting a BH from another thread wakes a blocked poll, which then
 * returns false: the delete is not progress. */
typedef struct DelArg {
    IotCtx *ctx;
    IotBh *bh;
    atomic_bool deleting;
} DelArg;

static void *delete_thread(void *opaque)
{
    DelArg *a = opaque;

    wait_until_blocking(a->ctx);
    /* Before the delete: once the delete has woken the loop, the loop
     * must see the flag, or it would block again with nothing to come. */
    atomic_store(&a->deleting, true);
    iot_bh_delete(a->bh);
    return NULL;
}

static void test_delete_wakes(void)
{
    IotCtx *ctx = ctx_setup();
    DelArg a = { .ctx = ctx };
    unsigned long kicks = atomic_load(&ctx->notify_kicks);
    pthread_t tid;
    BhData d;

    bh_data_init(ctx, &d, 0, false);
    a.bh = d.bh;
    atomic_init(&a.deleting, false);
    tid = start_thread(delete_thread, &a);
    /* Nothing is due: this blocks until the delete wakes it (a lost
     * wake-up would block for good).  A spurious early return would not
     * be progress either. */
    do {
        T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    } while (!atomic_load(&a.deleting));
    join_thread(tid);
    T_ASSERT_EQ(d.n, 0);
    /* The delete found the loop blocking and kicked its eventfd. */
    T_ASSERT(atomic_load(&ctx->notify_kicks) > kicks);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 0);
    ctx_teardown(ctx);
}

/* ---- finalize: leaks abort, deleted and one-shot BHs are freed ---- */

static void leaky_cb(void *opaque)
{
    (void)opaque;
    t_fail(__FILE__, __LINE__, "a leaked BH ran");
}

static void leaky_scheduled_cb(void *opaque)
{
    leaky_cb(opaque);
}

static void leaky_cancelled_cb(void *opaque)
{
    leaky_cb(opaque);
}

static void deleted_cb(void *opaque)
{
    leaky_cb(opaque);
}

static void unref_expecting_abort(IotCtx *ctx)
{
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
    t_fail(__FILE__, __LINE__, "finalizing with a live BH did not abort");
}

/* Created, never scheduled, never deleted. */
static void test_leak_aborts(void)
{
    IotCtx *ctx = ctx_setup();

    T_ASSERT(iot_bh_new(ctx, leaky_cb, NULL) != NULL);
    unref_expecting_abort(ctx);
}

/* Scheduled, not deleted, next to deleted BHs that finalize frees first:
 * the report names the leaked one. */
static void test_leak_aborts_scheduled(void)
{
    IotCtx *ctx = ctx_setup();
    IotBh *leaky, *d1, *d2;

    d1 = iot_bh_new(ctx, deleted_cb, NULL);
    leaky = iot_bh_new(ctx, leaky_scheduled_cb, NULL);
    d2 = iot_bh_new(ctx, deleted_cb, NULL);
    T_ASSERT(d1 && leaky && d2);
    iot_bh_schedule(d1);
    iot_bh_schedule(leaky);
    iot_bh_schedule(d2);
    iot_bh_delete(d1);
    iot_bh_delete(d2);
    unref_expecting_abort(ctx);
}

static void test_leak_aborts_cancelled(void)
{
    IotCtx *ctx = ctx_setup();
    IotBh *leaky = iot_bh_new(ctx, leaky_cancelled_cb, NULL);

    T_ASSERT(leaky != NULL);
    iot_bh_schedule(leaky);
    iot_bh_cancel(leaky);
    unref_expecting_abort(ctx);
}

/* A BH that has run (and so is not pending) but was not deleted. */
static void test_leak_aborts_ran(void)
{
    IotCtx *ctx = ctx_setup();
    BhData d;

    bh_data_init(ctx, &d, 0, false);
    iot_bh_schedule(d.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);
    unref_expecting_abort(ctx);
}

/* The report uses the name given to iot_bh_new_full(). */
static void test_leak_aborts_full_name(void)
{
    IotCtx *ctx = ctx_setup();

    T_ASSERT(iot_bh_new_full(ctx, leaky_cb, NULL, "my-device-bh") != NULL);
    unref_expecting_abort(ctx);
}

/* Deleted BHs still pending at the last unref are freed without running
 * and without an abort: deleted after a schedule, deleted without ever
 * being scheduled, and deleted from their own callback. */
static void test_unref_frees_deleted(void)
{
    IotCtx *ctx = ctx_setup();
    IotBh *scheduled = iot_bh_new(ctx, deleted_cb, NULL);
    IotBh *unscheduled = iot_bh_new(ctx, deleted_cb, NULL);
    BhData self;

    T_ASSERT(scheduled && unscheduled);
    bh_data_init(ctx, &self, 1, true);
    iot_bh_schedule(self.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT(self.bh == NULL);

    iot_bh_schedule(scheduled);
    iot_bh_delete(scheduled);
    iot_bh_delete(unscheduled);
    ctx_teardown(ctx);
    T_ASSERT_EQ(self.n, 1);
}

static void never_cb(void *opaque)
{
    (void)opaque;
    t_fail(__FILE__, __LINE__, "a one-shot ran without a poll");
}

/* A one-shot that never ran is freed at finalize, without running. */
static void test_unref_frees_oneshot(void)
{
    IotCtx *ctx = ctx_setup();

    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, never_cb, NULL), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot_full(ctx, never_cb, NULL, "named"), 0);
    ctx_teardown(ctx);
}

/* ---- names ---- */

static void name_cb(void *opaque)
{
    (void)opaque;
}

static void test_name(void)
{
    static const char custom[] = "custom-name";
    IotCtx *ctx = ctx_setup();
    IotBh *a = iot_bh_new(ctx, name_cb, NULL);
    IotBh *b = iot_bh_new_full(ctx, name_cb, NULL, custom);
    IotBh *c = iot_bh_new_full(ctx, name_cb, NULL, NULL);

    T_ASSERT(a && b && c);
    T_ASSERT_STR(iot_bh_name(a), "name_cb");
    T_ASSERT_STR(iot_bh_name(b), "custom-name");
    /* Kept by pointer, as documented. */
    T_ASSERT(iot_bh_name(b) == custom);
    /* Leak reports print the name with %s: never NULL. */
    T_ASSERT(iot_bh_name(c) != NULL);
    /* Scheduling and running do not change it. */
    iot_bh_schedule(a);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_STR(iot_bh_name(a), "name_cb");

    iot_bh_delete(a);
    iot_bh_delete(b);
    iot_bh_delete(c);
    ctx_teardown(ctx);
}

/* ---- out of memory: BHs wait on the spill list ---- */

extern _Atomic int iot__postq_fail_push_at;

typedef struct SpillData {
    IotCtx *ctx;
    IotBh *bh;
    int runs; /* [home] */
    int what; /* 0: schedule twice, 1: delete, 2: schedule and one-shot */
} SpillData;

static void spill_cb(void *opaque)
{
    ((SpillData *)opaque)->runs++;
}

/* A thread whose first post into the context finds no memory. */
static void *spill_thread(void *opaque)
{
    SpillData *d = opaque;

    atomic_store(&iot__postq_fail_push_at, 1);
    switch (d->what) {
    case 0:
        iot_bh_schedule(d->bh);
        iot_bh_schedule(d->bh); /* pending: not posted again */
        break;
    case 1:
        iot_bh_delete(d->bh);
        break;
    default:
        iot_bh_schedule(d->bh);
        /* The one-shot's post finds memory again, and makes the queue. */
        T_ASSERT_EQ(iot_bh_schedule_oneshot(d->ctx, spill_cb, d), 0);
        break;
    }
    T_ASSERT_EQ(atomic_load(&iot__postq_fail_push_at), 0);
    return NULL;
}

static void spill_run(IotCtx *ctx, SpillData *d)
{
    pthread_t th;

    T_ASSERT_EQ(pthread_create(&th, NULL, spill_thread, d), 0);
    T_ASSERT_EQ(pthread_join(th, NULL), 0);
    T_ASSERT(atomic_load(&ctx->bh_spill_pending));
}

/* A BH scheduled (twice) by a thread whose post cannot get memory: no
 * abort, it waits on the spill list, is due, wakes the loop, runs once. */
static void test_spill_schedule(void)
{
    IotCtx *ctx = ctx_setup();
    SpillData d = { .ctx = ctx, .what = 0 };

    d.bh = iot_bh_new(ctx, spill_cb, &d);
    spill_run(ctx, &d);
    T_ASSERT_EQ(iot__bh_timeout(ctx), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(d.runs, 1);
    T_ASSERT_FALSE(atomic_load(&ctx->bh_spill_pending));
    T_ASSERT_EQ(iot__bh_timeout(ctx), -1);
    /* It can be scheduled again, now through a queue. */
    iot_bh_schedule(d.bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.runs, 2);
    iot_bh_delete(d.bh);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    ctx_teardown(ctx);
}

/* A delete that spills: the loop frees the BH (no leak report at
 * finalize, no leak for LeakSanitizer), and it is not progress. */
static void test_spill_delete(void)
{
    IotCtx *ctx = ctx_setup();
    SpillData d = { .ctx = ctx, .what = 1 };

    d.bh = iot_bh_new(ctx, spill_cb, &d);
    spill_run(ctx, &d);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_FALSE(atomic_load(&ctx->bh_spill_pending));
    T_ASSERT_EQ(d.runs, 0);
    ctx_teardown(ctx);
}

/* A spilled BH beside a queue: both run. */
static void test_spill_beside_queue(void)
{
    IotCtx *ctx = ctx_setup();
    SpillData d = { .ctx = ctx, .what = 2 };

    d.bh = iot_bh_new(ctx, spill_cb, &d);
    spill_run(ctx, &d);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.runs, 2);
    iot_bh_delete(d.bh);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    ctx_teardown(ctx);
}

/* A spilled delete still waiting when the context goes: freed then. */
static void test_spill_finalize(void)
{
    IotCtx *ctx = ctx_setup();
    SpillData d = { .ctx = ctx, .what = 1 };

    d.bh = iot_bh_new(ctx, spill_cb, &d);
    spill_run(ctx, &d);
    ctx_teardown(ctx);
}

int main(int argc, char **argv)
{
    t_add("/aio/bh/schedule", test_schedule);
    t_add("/aio/bh/schedule10", test_schedule10);
    t_add("/aio/bh/cancel", test_cancel);
    t_add("/aio/bh/delete", test_delete);
    t_add("/aio/bh/callback-delete/one", test_callback_delete_one);
    t_add("/aio/bh/callback-delete/many", test_callback_delete_many);
    t_add("/aio/bh/callback-delete/nested", test_callback_delete_nested);
    t_add("/aio/bh/flush", test_flush);
    t_add("/aio/bh/fifo", test_fifo);
    t_add("/aio/bh/next-iteration", test_next_iteration);
    t_add("/aio/bh/nested-drains-parent", test_nested_drains_parent);
    t_add("/aio/bh/nested-drains-parent/blocking",
          test_nested_drains_parent_blocking);
    t_add("/aio/bh/idle", test_idle);
    t_add("/aio/bh/oneshot", test_oneshot);
    t_add("/aio/bh/cross-thread", test_cross_thread);
    t_add("/aio/bh/cross-thread/burst", test_cross_thread_burst);
    t_add("/aio/bh/cross-thread/many-producers",
          test_cross_thread_many_producers);
    t_add("/aio/bh/cross-thread/reschedule-cancelled",
          test_cross_thread_reschedule_cancelled);
    t_add("/aio/bh/delete-wakes", test_delete_wakes);
    t_add_abort("/aio/bh/leak-aborts", test_leak_aborts,
                "BH 'leaky_cb' leaked, aborting");
    t_add_abort("/aio/bh/leak-aborts/scheduled", test_leak_aborts_scheduled,
                "BH 'leaky_scheduled_cb' leaked, aborting");
    t_add_abort("/aio/bh/leak-aborts/cancelled", test_leak_aborts_cancelled,
                "BH 'leaky_cancelled_cb' leaked, aborting");
    t_add_abort("/aio/bh/leak-aborts/ran", test_leak_aborts_ran,
                "BH 'bh_data_cb' leaked, aborting");
    t_add_abort("/aio/bh/leak-aborts/full-name", test_leak_aborts_full_name,
                "BH 'my-device-bh' leaked, aborting");
    t_add("/aio/bh/unref-frees/deleted", test_unref_frees_deleted);
    t_add("/aio/bh/unref-frees/oneshot", test_unref_frees_oneshot);
    t_add("/aio/bh/name", test_name);
    t_add("/aio/bh/spill/schedule", test_spill_schedule);
    t_add("/aio/bh/spill/delete", test_spill_delete);
    t_add("/aio/bh/spill/beside-queue", test_spill_beside_queue);
    t_add("/aio/bh/spill/finalize", test_spill_finalize);
    return t_run(argc, argv);
}
