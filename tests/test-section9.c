/* SPDX-License-Identifier: MIT */
/*
 * Section 9 of the specification: the behaviours a new implementation
 * most often gets wrong.  One case (or more) per item, named after it.
 * Items 5, 6 and 7 (adaptive polling) are in test-poll.c under the same
 * /section9/itemN/ names; 8 and 9 belong to IOThread objects.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "harness.h"

static IotCtx *new_current(void)
{
    IotCtx *ctx = iot_ctx_new(NULL);

    T_ASSERT(ctx);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    return ctx;
}

/* ---- item 1: the lost-wakeup handshake ---- */

typedef struct PingPong {
    IotCtx *ctx;
    IotBh *bh;
    long rounds;
    atomic_long sent, ran;
} PingPong;

static void pingpong_cb(void *opaque)
{
    PingPong *pp = opaque;
    /* Release pairs with the producer's acquire load. */
    atomic_fetch_add_explicit(&pp->ran, 1, memory_order_release);
}

static void *pingpong_producer(void *opaque)
{
    PingPong *pp = opaque;

    for (long i = 0; i < pp->rounds; i++) {
        /* Schedule only after the last run: each schedule then meets a
         * loop that is going to sleep, or asleep, or polling. */
        while (atomic_load_explicit(&pp->ran, memory_order_acquire) != i) {
        }
        atomic_store(&pp->sent, i + 1);
        iot_bh_schedule(pp->bh);
    }
    return NULL;
}

/* Every hand-off to a loop that blocks whenever it runs dry is seen: a
 * lost wake-up hangs this test (and the harness fails it). */
static void test_item1_no_lost_wakeup(void)
{
    IotCtx *ctx = new_current();
    PingPong pp = { .ctx = ctx, .rounds = t_scale(100000, 20) };
    pthread_t tid;

    pp.bh = iot_bh_new(ctx, pingpong_cb, &pp);
    T_ASSERT_EQ(pthread_create(&tid, NULL, pingpong_producer, &pp), 0);
    while (atomic_load(&pp.ran) < pp.rounds) {
        iot_ctx_poll(ctx, true);
    }
    pthread_join(tid, NULL);
    T_ASSERT_EQ(atomic_load(&pp.ran), pp.rounds);
    iot_bh_delete(pp.bh);
    iot_ctx_poll(ctx, false);
    iot_ctx_unref(ctx);
}

/* Skipping the eventfd write while the loop is awake is allowed (and done):
 * notifies from callbacks never kick; a notify to a blocked loop does. */
static void test_item1_kick_only_when_blocking(void)
{
    IotCtx *ctx = new_current();
    unsigned long kicks0 = atomic_load(&ctx->notify_kicks);

    /* Awake (not in a poll): notify_me is 0, no write. */
    for (int i = 0; i < 10; i++) {
        iot_ctx_notify(ctx);
    }
    T_ASSERT_EQ(atomic_load(&ctx->notify_kicks), kicks0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    /* The flag is consumed by the accept of each iteration. */
    T_ASSERT_FALSE(atomic_load(&ctx->notified));
    iot_ctx_unref(ctx);
}

/* ---- item 2: BH scheduling semantics ---- */

typedef struct Order {
    IotCtx *ctx;
    IotBh *bh[4];
    int log[16];
    int n;
    int nested_at; /* bh index whose callback polls nested, or -1 */
} Order;

static Order *order;

static void order_cb(void *opaque)
{
    int id = (int)(intptr_t)opaque;

    order->log[order->n++] = id;
    if (id == order->nested_at) {
        order->nested_at = -1;
        iot_ctx_poll(order->ctx, false);
    }
}

static void test_item2_bh_order(void)
{
    IotCtx *ctx = new_current();
    Order o = { .ctx = ctx, .nested_at = -1 };

    order = &o;
    for (int i = 0; i < 4; i++) {
        o.bh[i] = iot_bh_new(ctx, order_cb, (void *)(intptr_t)i);
    }
    /* FIFO within a batch; a second schedule neither duplicates nor moves. */
    iot_bh_schedule(o.bh[2]);
    iot_bh_schedule(o.bh[0]);
    iot_bh_schedule(o.bh[3]);
    iot_bh_schedule(o.bh[2]);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(o.n, 3);
    T_ASSERT_EQ(o.log[0], 2);
    T_ASSERT_EQ(o.log[1], 0);
    T_ASSERT_EQ(o.log[2], 3);

    /* A nested poll from BH 0 drains its parent's pending BHs (1, 3),
     * which then do not run again in the parent. */
    o.n = 0;
    o.nested_at = 0;
    iot_bh_schedule(o.bh[0]);
    iot_bh_schedule(o.bh[1]);
    iot_bh_schedule(o.bh[3]);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(o.n, 3);
    T_ASSERT_EQ(o.log[0], 0);
    T_ASSERT_EQ(o.log[1], 1);
    T_ASSERT_EQ(o.log[2], 3);

    /* Cancel clears only "scheduled"; delete is asynchronous. */
    o.n = 0;
    iot_bh_schedule(o.bh[1]);
    iot_bh_cancel(o.bh[1]);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(o.n, 0);
    for (int i = 0; i < 4; i++) {
        iot_bh_delete(o.bh[i]);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false)); /* frees; not progress */
    iot_ctx_unref(ctx);
}

static int resched_runs;

static void resched_cb(void *opaque)
{
    resched_runs++;
    iot_bh_schedule((IotBh *)*(IotBh **)opaque);
}

/* A BH that reschedules itself runs once per iteration, never in a loop. */
static void test_item2_self_reschedule_next_iteration(void)
{
    IotCtx *ctx = new_current();
    IotBh *bh = NULL;

    bh = iot_bh_new(ctx, resched_cb, &bh);
    iot_bh_schedule(bh);
    for (int i = 1; i <= 5; i++) {
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(resched_runs, i);
    }
    iot_bh_delete(bh);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_ctx_unref(ctx);
}

/* ---- item 3: what counts as progress ---- */

static int plain_runs, idle_runs;

static void plain_cb(void *opaque)
{
    (void)opaque;
    plain_runs++;
}

static void idle_cb(void *opaque)
{
    (void)opaque;
    idle_runs++;
}

static void drain_event(IotEvent *e)
{
    iot_event_test_and_clear(e);
}

static bool event_is_set(void *opaque)
{
    (void)opaque;
    return false;
}

static void test_item3_progress(void)
{
    IotCtx *ctx = new_current();
    IotBh *idle = iot_bh_new(ctx, idle_cb, NULL);
    IotTimer *t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, plain_cb, NULL);
    IotEvent e;

    /* Nothing: false.  A notify: false. */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_ctx_notify(ctx);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    /* An idle BH runs but is not progress. */
    iot_bh_schedule_idle(idle);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(idle_runs, 1);
    /* A normal schedule of a BH pending as idle makes it normal... */
    iot_bh_schedule_idle(idle);
    iot_bh_schedule(idle);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(idle_runs, 2);
    /* ...and an idle schedule does not demote a pending normal one. */
    iot_bh_schedule(idle);
    iot_bh_schedule_idle(idle);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(idle_runs, 3);
    /* A one-shot BH is. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, plain_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    /* An fd callback is. */
    T_ASSERT_EQ(iot_event_init(&e, true), 0);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, drain_event, NULL, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, NULL, NULL, NULL), 0);
    iot_event_cleanup(&e);
    /* A fired timer is. */
    iot_timer_mod(t, 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(plain_runs, 2);

    iot_timer_free(t);
    iot_bh_delete(idle);
    iot_ctx_poll(ctx, false);
    iot_ctx_unref(ctx);
}

/* ---- item 4: changing handlers during dispatch ---- */

typedef struct Pair {
    IotCtx *ctx;
    int fds[2];
    int reads, writes;
} Pair;

static void pair_read_removes(void *opaque)
{
    Pair *p = opaque;

    p->reads++;
    T_ASSERT_EQ(
        iot_fd_set_handler(p->ctx, p->fds[0], NULL, NULL, NULL, NULL, NULL), 0);
}

static void pair_write(void *opaque)
{
    ((Pair *)opaque)->writes++;
}

static void test_item4_removed_in_read_no_write(void)
{
    IotCtx *ctx = new_current();
    Pair p = { .ctx = ctx };
    int sv[2];

    /* A socket is readable and writable at once. */
    T_ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p.fds[0] = sv[0];
    T_ASSERT_EQ(write(sv[1], "x", 1), 1);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, sv[0], pair_read_removes, pair_write,
                                   NULL, NULL, &p),
                0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(p.reads, 1);
    T_ASSERT_EQ(p.writes, 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(p.reads, 1);
    close(sv[0]);
    close(sv[1]);
    iot_ctx_unref(ctx);
}

static int replaced_old, replaced_new;

static void old_read(void *opaque)
{
    (void)opaque;
    replaced_old++;
}

static void new_read(void *opaque)
{
    (void)opaque;
    replaced_new++;
}

/* One handler per fd; replacing keeps the no-io_poll count straight. */
static void test_item4_replace_and_count(void)
{
    IotCtx *ctx = new_current();
    int base = atomic_load(&ctx->poll_disable_cnt);
    IotEvent e;

    T_ASSERT_EQ(iot_event_init(&e, true), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, e.rfd, old_read, NULL, NULL, NULL, NULL), 0);
    T_ASSERT_EQ(atomic_load(&ctx->poll_disable_cnt), base + 1);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, e.rfd, new_read, NULL, NULL, NULL, NULL), 0);
    T_ASSERT_EQ(atomic_load(&ctx->poll_disable_cnt), base + 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(replaced_old, 0);
    T_ASSERT_EQ(replaced_new, 1);
    /* io_poll without io_poll_ready counts as no io_poll. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, e.rfd, new_read, NULL, event_is_set,
                                   NULL, NULL),
                0);
    T_ASSERT_EQ(atomic_load(&ctx->poll_disable_cnt), base + 1);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, e.rfd, NULL, NULL, NULL, NULL, NULL),
                0);
    T_ASSERT_EQ(atomic_load(&ctx->poll_disable_cnt), base);
    /* Removing again is a quiet no-op. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, e.rfd, NULL, NULL, NULL, NULL, NULL),
                0);
    iot_event_cleanup(&e);
    iot_ctx_unref(ctx);
}

/* ---- item 7: a non-blocking poll still checks fds ---- */

static bool never_ready(void *opaque)
{
    (void)opaque;
    return false;
}

static void nothing(void *opaque)
{
    (void)opaque;
}

static void test_item7_nonblocking_checks_fds(void)
{
    IotCtx *ctx = new_current();
    IotEvent e;
    int reads = 0;

    /* Every handler polls, so QEMU would skip the fd check here. */
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 32768, 0, 0), 0);
    T_ASSERT_EQ(iot_event_init(&e, true), 0);
    replaced_new = 0;
    T_ASSERT_EQ(iot_fd_set_handler(ctx, e.rfd, new_read, NULL, never_ready,
                                   nothing, &reads),
                0);
    T_ASSERT_EQ(atomic_load(&ctx->poll_disable_cnt), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(replaced_new, 1);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, e.rfd, NULL, NULL, NULL, NULL, NULL),
                0);
    iot_event_cleanup(&e);
    iot_ctx_unref(ctx);
}

/* ---- item 10: timers and timeouts ---- */

typedef struct Rearm {
    IotTimer *t;
    int runs;
} Rearm;

static void rearm_into_past(void *opaque)
{
    Rearm *r = opaque;

    r->runs++;
    iot_timer_mod(r->t, 0); /* already due */
}

static IotTimer *item10_t;
static int64_t item10_at;

static void item10_arm_bh(void *opaque)
{
    (void)opaque;
    iot_timer_mod(item10_t, item10_at);
}

static void test_item10_timers(void)
{
    IotCtx *ctx = new_current();
    Rearm r = { 0 };
    int64_t now;

    /* -1 means no deadline. */
    T_ASSERT_EQ(iot_ctx_timer_deadline_ns(ctx), -1);
    T_ASSERT_EQ(iot__timeout_min(-1, 5), 5);
    T_ASSERT_EQ(iot__timeout_min(7, -1), 7);
    T_ASSERT_EQ(iot__timeout_min(-1, -1), -1);

    /* ns resolution: a deadline 3 s + 500 us + 123 ns away is reported to
     * the ns, bracketed by clock reads (a result rounded to ms is off by
     * far more than the bracket). */
    r.t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, rearm_into_past, &r);
    {
        int64_t exp, d, after;

        now = iot_clock_ns(IOT_CLOCK_MONOTONIC);
        exp = now + 3 * IOT_NS_PER_S + 500 * IOT_NS_PER_US + 123;
        iot_timer_mod(r.t, exp);
        d = iot_ctx_timer_deadline_ns(ctx);
        after = iot_clock_ns(IOT_CLOCK_MONOTONIC);
        T_ASSERT(d <= exp - now);
        T_ASSERT(d >= exp - after);
    }

    /* Re-arming into the past from the callback: runs again in the next
     * iteration, never twice in one pass (no livelock). */
    iot_timer_mod(r.t, 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(r.runs, 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(r.runs, 2);
    iot_timer_del(r.t);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(r.runs, 2);

    /* Wake only when the earliest deadline moves earlier: the test thread
     * arms with the context not current, then takes it back to poll.  The
     * loop running its callbacks does not notify itself (its next timeout
     * sees the timer): item10_arm_bh below. */
    now = iot_clock_ns(IOT_CLOCK_MONOTONIC);
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_timer_mod(r.t, now + 10 * IOT_NS_PER_S);
    T_ASSERT_TRUE(atomic_load(&ctx->notified));
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_timer_mod(r.t, now + 20 * IOT_NS_PER_S);
    T_ASSERT_FALSE(atomic_load(&ctx->notified));
    iot_timer_mod(r.t, now + 5 * IOT_NS_PER_S);
    T_ASSERT_TRUE(atomic_load(&ctx->notified));
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    item10_t = r.t;
    item10_at = now + 2 * IOT_NS_PER_S;
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, item10_arm_bh, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_FALSE(atomic_load(&ctx->notified));

    iot_timer_free(r.t);
    iot_ctx_unref(ctx);
}

int main(int argc, char **argv)
{
    t_add("/section9/item1/no-lost-wakeup", test_item1_no_lost_wakeup);
    t_add("/section9/item1/kick-only-when-blocking",
          test_item1_kick_only_when_blocking);
    t_add("/section9/item2/bh-order-and-nesting", test_item2_bh_order);
    t_add("/section9/item2/self-reschedule-next-iteration",
          test_item2_self_reschedule_next_iteration);
    t_add("/section9/item3/progress", test_item3_progress);
    t_add("/section9/item4/removed-in-read-no-write",
          test_item4_removed_in_read_no_write);
    t_add("/section9/item4/replace-and-count", test_item4_replace_and_count);
    t_add("/section9/item7/nonblocking-poll-checks-fds",
          test_item7_nonblocking_checks_fds);
    t_add("/section9/item10/timers", test_item10_timers);
    return t_run(argc, argv);
}
