/* SPDX-License-Identifier: MIT */
/*
 * Adaptive polling (section 3 of the specification): the window
 * arithmetic as a pure function, then the same rules observed through real
 * handlers with a fake clock, poll-mode transitions, when polling must be
 * skipped, and /nested-aio-poll (section 7.4).
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <semaphore.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "fdmon.h"
#include "postq.h"
#include "harness.h"

/* ---- the pure rule ---- */

static const IotPollParams defaults = { .max_ns = 32768 };

static void test_adjust_start(void)
{
    /* Growth from 0 starts at exactly 4000 ns. */
    T_ASSERT_EQ(iot__poll_adjust(0, 1000, &defaults), 4000);
    T_ASSERT_EQ(iot__poll_adjust(0, 30000, &defaults), 4000);
}

static void test_adjust_grow(void)
{
    IotPollParams x3 = { .max_ns = 1000000, .grow = 3 };

    /* grow 0 means x2. */
    T_ASSERT_EQ(iot__poll_adjust(4000, 5000, &defaults), 8000);
    T_ASSERT_EQ(iot__poll_adjust(8000, 9000, &defaults), 16000);
    T_ASSERT_EQ(iot__poll_adjust(4000, 5000, &x3), 12000);
    T_ASSERT_EQ(iot__poll_adjust(12000, 13000, &x3), 36000);
}

static void test_adjust_clamp(void)
{
    IotPollParams huge = { .max_ns = INT64_MAX - 1, .grow = INT64_MAX };

    /* 16000 x 2 = 32000 < 32768; 32000 x 2 clamps to 32768. */
    T_ASSERT_EQ(iot__poll_adjust(16000, 20000, &defaults), 32000);
    T_ASSERT_EQ(iot__poll_adjust(32000, 32100, &defaults), 32768);
    /* At the max and block between window and max: no change. */
    T_ASSERT_EQ(iot__poll_adjust(32768, 32768, &defaults), 32768);
    /* An overflowing product clamps instead of wrapping. */
    T_ASSERT_EQ(iot__poll_adjust(1 << 20, (1 << 20) + 1, &huge), INT64_MAX - 1);
}

static void test_adjust_sweet_spot(void)
{
    /* block_ns <= window: polling caught it, no change. */
    T_ASSERT_EQ(iot__poll_adjust(16000, 16000, &defaults), 16000);
    T_ASSERT_EQ(iot__poll_adjust(16000, 10, &defaults), 16000);
}

static void test_adjust_shrink(void)
{
    IotPollParams div2 = { .max_ns = 32768, .shrink = 2 };
    IotPollParams div3 = { .max_ns = 32768, .shrink = 3 };

    /* Beyond the max: shrink 0 resets to 0, else divides. */
    T_ASSERT_EQ(iot__poll_adjust(16000, 50000, &defaults), 0);
    T_ASSERT_EQ(iot__poll_adjust(16000, 50000, &div2), 8000);
    T_ASSERT_EQ(iot__poll_adjust(16000, 50000, &div3), 5333);
    T_ASSERT_EQ(iot__poll_adjust(0, 50000, &div2), 0);
}

static void test_adjust_edges(void)
{
    /* block_ns == max exactly is neither shrink nor grow (section 3.5 step 4).
     */
    T_ASSERT_EQ(iot__poll_adjust(8000, 32768, &defaults), 8000);
    T_ASSERT_EQ(iot__poll_adjust(0, 32768, &defaults), 0);
}

/* ---- a fake clock that advances STEP per reading ---- */

static int64_t fake_now, fake_step = 1000;
static int fake_reads; /* readings so far */

static int64_t fake_clock(void)
{
    fake_reads++;
    fake_now += fake_step;
    return fake_now;
}

/* A pollable event notifier with counters. */
typedef struct Probe {
    IotEvent e;
    int reads, polls, ready_calls, begins, ends;
    int ready_at_poll; /* io_poll returns true from this call on; 0: never */
    int reads_at_hit, reads_at_ready; /* fake_reads then */
    bool ready_on_end;                /* io_poll returns true after poll_end */
    bool ended;
} Probe;

static Probe *probe_of(IotEvent *e)
{
    return (Probe *)e;
}

static void probe_read(IotEvent *e)
{
    probe_of(e)->reads++;
    iot_event_test_and_clear(e);
}

static bool probe_poll(IotEvent *e)
{
    Probe *p = probe_of(e);

    p->polls++;
    if (p->ready_on_end && p->ended) {
        return true;
    }
    p->reads_at_hit = fake_reads;
    return p->ready_at_poll && p->polls >= p->ready_at_poll;
}

static void probe_ready(IotEvent *e)
{
    Probe *p = probe_of(e);

    p->ready_calls++;
    p->reads_at_ready = fake_reads;
    p->ready_at_poll = 0;
    p->ready_on_end = false;
}

static void probe_begin(IotEvent *e)
{
    probe_of(e)->begins++;
    probe_of(e)->ended = false;
}

static void probe_end(IotEvent *e)
{
    probe_of(e)->ends++;
    probe_of(e)->ended = true;
}

/* The rules of section 3 as poll and epoll apply them (io_uring differs
 * on purpose, see the io_uring cases at the end). */
static IotFdmonKind kind = IOT_FDMON_POLL;

static IotCtx *setup(int64_t max_ns, int64_t grow, int64_t shrink)
{
    IotCtxOptions opts = { .fdmon = kind };
    IotError *err = NULL;
    IotCtx *ctx = iot_ctx_new_full(&opts, &err);

    T_ASSERT(ctx);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, max_ns, grow, shrink), 0);
    iot__test_clock = fake_clock;
    return ctx;
}

static void probe_add(IotCtx *ctx, Probe *p)
{
    T_ASSERT_EQ(iot_event_init(&p->e, false), 0);
    T_ASSERT_EQ(
        iot_ctx_set_event(ctx, &p->e, probe_read, probe_poll, probe_ready), 0);
    T_ASSERT_EQ(iot_ctx_set_event_poll(ctx, &p->e, probe_begin, probe_end), 0);
}

static void probe_remove(IotCtx *ctx, Probe *p)
{
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &p->e, NULL, NULL, NULL), 0);
    iot_event_cleanup(&p->e);
}

/* One iteration in which @p fires through its fd, with block_ns = @block. */
static void fire(IotCtx *ctx, Probe *p, int64_t block)
{
    int reads = p->reads;

    /* Without busy polling the iteration reads the clock twice (start
     * and after the wait), so block_ns is exactly one step. */
    fake_step = block;
    T_ASSERT_EQ(iot_event_set(&p->e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(p->reads, reads + 1);
}

/* Drains a pipe when it has one (opaque: the read fd), else nothing. */
static void nopoll_read(void *opaque)
{
    char buf[64];

    if (opaque && read(*(int *)opaque, buf, sizeof(buf)) < 0) {
        T_ASSERT(errno == EAGAIN);
    }
}

/* Removes the pipe handler, closes the pipe, drops the fake clock and
 * the context. */
static void pipe_teardown(IotCtx *ctx, int pipefd[2])
{
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], NULL, NULL, NULL, NULL, NULL), 0);
    close(pipefd[0]);
    close(pipefd[1]);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

static void test_window_rules(void)
{
    IotCtx *ctx = setup(32768, 0, 0);
    Probe p = { 0 };
    int pipefd[2];

    /* A handler without io_poll keeps the loop from busy polling, so the
     * fake clock is read exactly twice per iteration. */
    T_ASSERT_EQ(pipe(pipefd), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], nopoll_read, NULL, NULL, NULL, NULL),
        0);
    probe_add(ctx, &p);
    /* Not polled until it fires through its fd once. */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 0);

    fire(ctx, &p, 1000); /* joins polling, grows from 0 */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 4000);
    fire(ctx, &p, 1000); /* block <= window: unchanged */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 4000);
    fire(ctx, &p, 10000); /* grows x2 */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 8000);
    fire(ctx, &p, 10000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 16000);
    fire(ctx, &p, 20000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 32000);
    fire(ctx, &p, 32500); /* clamps to the max */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 32768);
    fire(ctx, &p, 40000); /* beyond the max, shrink 0: reset */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 0);

    /* A shrink divisor divides instead. */
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 32768, 0, 2), 0);
    fire(ctx, &p, 1000);
    fire(ctx, &p, 5000);
    fire(ctx, &p, 10000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 16000);
    fire(ctx, &p, 50000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 8000);

    /* Any parameter change resets every window to 0 (in the next
     * iteration of the home thread, which applies it). */
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 32768, 0, 2), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 0);

    /* poll-max-ns 0: no adjustment at all. */
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 0, 0, 0), 0);
    fire(ctx, &p, 1000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 0);

    probe_remove(ctx, &p);
    pipe_teardown(ctx, pipefd);
}

/* Section 9 item 5: the budget is the largest window among polled
 * handlers; each round of busy polling calls every io_poll once. */
static void test_budget_largest_window(void)
{
    IotCtx *ctx = setup(32768, 0, 0);
    Probe a = { 0 }, b = { 0 };
    int pipefd[2];

    T_ASSERT_EQ(pipe(pipefd), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], nopoll_read, NULL, NULL, NULL, NULL),
        0);
    probe_add(ctx, &a);
    probe_add(ctx, &b);
    fire(ctx, &a, 1000);  /* a: 4000 */
    fire(ctx, &b, 1000);  /* b: 4000 */
    fire(ctx, &b, 5000);  /* b: 8000 */
    fire(ctx, &b, 10000); /* b: 16000 */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, a.e.rfd), 4000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, b.e.rfd), 16000);

    /* Now allow busy polling by removing the handler without io_poll.
     * Removing it changes no poll parameter, so windows stay. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], NULL, NULL, NULL, NULL, NULL), 0);
    T_ASSERT_FALSE(
        iot_ctx_poll(ctx, false)); /* a non-blocking call: no busy poll */
    T_ASSERT_EQ(a.polls, 0);
    T_ASSERT_EQ(b.polls, 0);

    /* Blocking: rounds of 1000 ns until 16000 ns have passed, then the
     * final io_poll of leaving poll mode, which hits (ready_on_end). */
    fake_step = 1000;
    a.ready_on_end = true;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(a.begins, 1);
    T_ASSERT_EQ(a.ends, 1);
    T_ASSERT_EQ(a.ready_calls, 1);
    T_ASSERT_EQ(b.polls, a.polls);
    T_ASSERT_EQ(a.polls, 16 + 1);

    probe_remove(ctx, &a);
    probe_remove(ctx, &b);
    close(pipefd[0]);
    close(pipefd[1]);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* A busy-poll hit goes to its callback without another reading of the
 * clock: in a KVM guest one costs ~32 ns, a fifth of a polled hand-off.
 * The window still adapts, from the last round's reading. */
static void test_hit_reads_no_clock(void)
{
    IotCtx *ctx = setup(32768, 0, 0);
    Probe p = { 0 };

    probe_add(ctx, &p);
    fire(ctx, &p, 1000); /* window 4000 */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 4000);

    fake_step = 100;
    p.ready_at_poll = p.polls + 3;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.ready_calls, 1);
    T_ASSERT_EQ(p.reads_at_ready, p.reads_at_hit);
    /* Caught within the window: it stays. */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 4000);

    probe_remove(ctx, &p);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* Section 9 item 6: io_poll_begin before the first busy poll; io_poll_end
 * and one last io_poll before blocking; no toggling for a non-blocking
 * wait or when busy polling found work. */
static void test_transitions(void)
{
    IotCtx *ctx = setup(1000000, 0, 0);
    Probe p = { 0 };

    probe_add(ctx, &p);
    fire(ctx, &p, 1000); /* joins polling at 4000 */
    T_ASSERT_EQ(p.begins, 0);
    T_ASSERT_EQ(p.polls, 0);

    /* Busy polling finds it on the second round: begin, no end. */
    fake_step = 1000;
    p.ready_at_poll = 2;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.begins, 1);
    T_ASSERT_EQ(p.ends, 0);
    T_ASSERT_EQ(p.ready_calls, 1);
    T_ASSERT_EQ(p.reads, 1); /* poll-ready, not the fd path */

    /* Non-blocking: poll mode stays on, no begin or end. */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(p.begins, 1);
    T_ASSERT_EQ(p.ends, 0);

    /* Blocking with nothing found: end, then the last io_poll catches an
     * event that raced with re-enabling notifications. */
    p.ready_on_end = true;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.begins, 1);
    T_ASSERT_EQ(p.ends, 1);
    T_ASSERT_EQ(p.ready_calls, 2);

    probe_remove(ctx, &p);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

static IotHandler *handler_of(IotCtx *ctx, int fd)
{
    for (IotHandler *h = atomic_load(&ctx->handlers); h;
         h = atomic_load(&h->next)) {
        if (h->fd == fd && !atomic_load(&h->deleted)) {
            return h;
        }
    }
    return NULL;
}

/* iot_ctx_set_event_poll() while poll mode is on (left on by a hit):
 * QEMU changes the callbacks in place, so the handler stays polled, keeps
 * its window, and the loop calls its (new) io_poll_end before blocking.
 * Here the change makes a new handler; it used to lose the old one's
 * place on the poll list, so no io_poll_end came at all: a device whose
 * notifications io_poll_begin had turned off never woke the loop again. */
static int other_ends;

static void flag_cb(void *opaque)
{
    *(bool *)opaque = true;
}

static void probe_other_end(IotEvent *e)
{
    other_ends++;
    probe_of(e)->ended = true;
}

/* @p joins polling, a busy-poll hit leaves poll mode on, and then its
 * io_poll_end is replaced by probe_other_end(). */
static void replace_in_poll_mode(IotCtx *ctx, Probe *p)
{
    probe_add(ctx, p);
    fire(ctx, p, 1000); /* joins polling at 4000 */
    fake_step = 1000;
    p->ready_at_poll = 2;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true)); /* a hit: poll mode stays on */
    T_ASSERT_EQ(p->begins, 1);
    T_ASSERT_EQ(p->ends, 0);

    other_ends = 0;
    T_ASSERT_EQ(
        iot_ctx_set_event_poll(ctx, &p->e, probe_begin, probe_other_end), 0);
}

static void test_set_event_poll_in_poll_mode(void)
{
    IotCtx *ctx = setup(1000000, 0, 0);
    Probe p = { 0 };
    IotTimer *t;
    bool fired = false;

    replace_in_poll_mode(ctx, &p);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 4000);

    /* Blocking with nothing found: the new io_poll_end, then the last
     * io_poll finds the event that raced with it.  A real timer bounds
     * the wait if neither comes. */
    t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, flag_cb, &fired);
    iot_timer_mod(t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + 10 * IOT_NS_PER_MS);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false)); /* takes the timer's notify */
    T_ASSERT_EQ(other_ends, 0);
    p.ready_on_end = true;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(other_ends, 1);
    T_ASSERT_EQ(p.ends, 0);
    T_ASSERT_EQ(p.ready_calls, 2);
    T_ASSERT_FALSE(fired);

    iot_timer_free(t);
    probe_remove(ctx, &p);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* The same, blocking straight after the change, on every backend: the
 * replaced handler's place must pass on before that iteration leaves poll
 * mode.  On io_uring the replaced handler is freed only once the kernel
 * lets go of it, inside the wait, and the place passed on at that free
 * came too late: no io_poll_end, no last io_poll, and the loop slept for
 * good (the case's time limit). */
static void need_io_uring(void);

static void set_event_poll_then_block(IotFdmonKind k)
{
    IotCtx *ctx;
    Probe p = { 0 };

    kind = k;
    ctx = setup(1000000, 0, 0);
    replace_in_poll_mode(ctx, &p);
    p.ready_on_end = true; /* raced with io_poll_begin: seen only after */
    while (p.ready_calls < 2) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT_EQ(other_ends, 1);
    T_ASSERT_EQ(p.ends, 0);

    probe_remove(ctx, &p);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

static void test_set_event_poll_then_block(void)
{
    set_event_poll_then_block(IOT_FDMON_POLL);
    set_event_poll_then_block(IOT_FDMON_EPOLL);
    need_io_uring(); /* poll and epoll passed: the rest is skipped */
    set_event_poll_then_block(IOT_FDMON_IO_URING);
}

/* A handler that joins polling while poll mode is on (left on by another
 * handler's busy-poll hit) gets its io_poll_begin at once, so that the
 * io_poll_end every handler on the list gets when the loop blocks is
 * paired for it too. */
static void test_join_while_polling(void)
{
    IotCtx *ctx = setup(1000000, 0, 0);
    Probe a = { 0 }, b = { 0 };

    probe_add(ctx, &a);
    probe_add(ctx, &b);
    fire(ctx, &a, 1000); /* a joins polling */
    fake_step = 1000;
    a.ready_at_poll = 2;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true)); /* a hit: poll mode stays on */
    T_ASSERT(ctx->poll_started);
    T_ASSERT_EQ(a.begins, 1);

    fire(ctx, &b, 1000); /* b joins, poll mode on */
    T_ASSERT(ctx->poll_started);
    T_ASSERT_EQ(b.begins, 1);
    T_ASSERT_EQ(b.ends, 0);

    /* Blocking with nothing found: both end (b's last io_poll finds an
     * event, so the poll returns). */
    fake_step = 1000;
    b.ready_on_end = true;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(a.begins, 1);
    T_ASSERT_EQ(a.ends, 1);
    T_ASSERT_EQ(b.begins, 1);
    T_ASSERT_EQ(b.ends, 1);

    probe_remove(ctx, &a);
    probe_remove(ctx, &b);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* Section 9 item 7: on poll/epoll, one handler without io_poll disables
 * busy polling entirely; poll-max-ns 0 disables it too. */
static void test_skip_polling(void)
{
    IotCtx *ctx = setup(1000000, 0, 0);
    Probe p = { 0 };
    int pipefd[2];

    probe_add(ctx, &p);
    fire(ctx, &p, 1000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 4000);

    T_ASSERT_EQ(pipe(pipefd), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], nopoll_read, NULL, NULL, NULL, NULL),
        0);
    /* The iteration must go straight to the fd wait; make the wait return
     * at once through the probe's own fd. */
    T_ASSERT_EQ(iot_event_set(&p.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.polls, 0);
    T_ASSERT_EQ(p.begins, 0);

    /* Gone again: busy polling resumes. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], NULL, NULL, NULL, NULL, NULL), 0);
    p.ready_at_poll = 1;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.polls, 1);
    T_ASSERT_EQ(p.begins, 1);

    /* poll-max-ns 0: never busy polls, however large the windows were. */
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 0, 0, 0), 0);
    /* The change notifies: this non-blocking call takes it, and leaves
     * poll mode alone (the next wait is not blocking). */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(p.ends, 0);
    p.polls = 0;
    T_ASSERT_EQ(iot_event_set(&p.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    /* Leaving poll mode (begun above) runs one last io_poll; nothing else. */
    T_ASSERT_EQ(p.ends, 1);
    T_ASSERT_EQ(p.polls, 1);
    p.polls = 0;
    T_ASSERT_EQ(iot_event_set(&p.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.polls, 0);

    probe_remove(ctx, &p);
    close(pipefd[0]);
    close(pipefd[1]);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* ---- /nested-aio-poll (section 7.4) ---- */

typedef struct Nested {
    IotEvent e;
    IotCtx *ctx;
    int depth, polls, polls_while_nested, ready_calls, nested_bh_runs;
} Nested;

static void nested_bh(void *opaque)
{
    ((Nested *)opaque)->nested_bh_runs++;
}

static void nested_read(IotEvent *e)
{
    iot_event_test_and_clear(e);
}

static bool nested_poll(IotEvent *e)
{
    Nested *n = (Nested *)e;

    n->polls++;
    if (n->depth > 0) {
        n->polls_while_nested++;
    }
    return true; /* always ready: level-triggered and never cleared */
}

static void nested_ready(IotEvent *e)
{
    Nested *n = (Nested *)e;

    n->ready_calls++;
    if (n->depth > 0) {
        return; /* recursion: the failure we test for */
    }
    n->depth++;
    /* A nested blocking poll; the BH gives it something to do. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(n->ctx, nested_bh, n), 0);
    T_ASSERT_TRUE(iot_ctx_poll(n->ctx, true));
    n->depth--;
}

static void test_nested_aio_poll(void)
{
    /* QEMU's test parameters: max 1 ms, grow 2, shrink 2. */
    IotCtx *ctx = setup(1000000, 2, 2);
    Nested n = { .ctx = ctx };

    T_ASSERT_EQ(iot_event_init(&n.e, false), 0);
    T_ASSERT_EQ(
        iot_ctx_set_event(ctx, &n.e, nested_read, nested_poll, nested_ready),
        0);
    /* Polling takes effect the first time the handler is active: one
     * fd event puts it on the poll list with a window > 0. */
    fake_step = 1000;
    T_ASSERT_EQ(iot_event_set(&n.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT(iot_fd_poll_window(ctx, n.e.rfd) > 0);

    /* Busy polling finds it; its io_poll_ready polls again, nested. The
     * nested poll must not poll or dispatch the same handler. */
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(n.ready_calls, 1);
    T_ASSERT_EQ(n.polls_while_nested, 0);
    T_ASSERT_EQ(n.nested_bh_runs, 1);

    T_ASSERT_EQ(iot_ctx_set_event(ctx, &n.e, NULL, NULL, NULL), 0);
    iot_event_cleanup(&n.e);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* ---- the poll_hits and poll_misses statistics ---- */

static bool use_io_uring(void);

static IotCtxStats stats_of(IotCtx *ctx)
{
    IotCtxStats st;

    iot_ctx_get_stats(ctx, &st);
    return st;
}

/* A busy-poll stretch that finds its handler ready is a hit; one that
 * runs out while the fd has the event (io_poll saying no) is a miss. */
static void stats_hit_and_miss(IotFdmonKind k)
{
    IotCtx *ctx;
    IotCtxStats s0, s1, s2;
    Probe p = { 0 };

    kind = k;
    ctx = setup(1000000, 0, 0);
    probe_add(ctx, &p);
    fire(ctx, &p, 1000); /* a window of 4000 ns */
    s0 = stats_of(ctx);

    fake_step = 1000;
    p.ready_at_poll = p.polls + 2;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.ready_calls, 1);
    s1 = stats_of(ctx);
    T_ASSERT_EQ(s1.poll_hits, s0.poll_hits + 1);
    T_ASSERT_EQ(s1.poll_misses, s0.poll_misses);

    T_ASSERT_EQ(iot_event_set(&p.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true)); /* polls 4 rounds, then reads */
    T_ASSERT_EQ(p.reads, 2);
    s2 = stats_of(ctx);
    T_ASSERT_EQ(s2.poll_hits, s1.poll_hits);
    T_ASSERT_EQ(s2.poll_misses, s1.poll_misses + 1);

    probe_remove(ctx, &p);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
    kind = IOT_FDMON_POLL;
}

static void test_stats_hit_and_miss(void)
{
    stats_hit_and_miss(IOT_FDMON_POLL);
    stats_hit_and_miss(IOT_FDMON_EPOLL);
}

/* io_uring: a stretch ended by the backend's own work (here a handler
 * added from inside io_poll, a change to submit) found nothing and ran
 * out of nothing: neither a hit nor a miss.  It was counted a hit. */
typedef struct Changer {
    IotEvent e;
    IotCtx *ctx;
    int fd;
    int polls;
} Changer;

static void changer_read(IotEvent *e)
{
    iot_event_test_and_clear(e);
}

static void changer_ready(IotEvent *e)
{
    (void)e;
}

static bool changer_poll(IotEvent *e)
{
    Changer *c = (Changer *)e;

    if (c->polls++ == 0) {
        T_ASSERT_EQ(iot_fd_set_handler(c->ctx, c->fd, nopoll_read, NULL, NULL,
                                       NULL, &c->fd),
                    0);
    }
    return false;
}

static bool use_io_uring(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };
    IotCtx *c = iot_ctx_new_full(&opts, NULL);

    iot_ctx_unref(c);
    kind = IOT_FDMON_IO_URING;
    return c != NULL;
}

/* The rest of the case needs io_uring: skipped where it cannot be set up. */
static void need_io_uring(void)
{
    if (!use_io_uring()) {
        t_skip("io_uring cannot be set up here");
    }
}

static void test_io_uring_stats_chore(void)
{
    IotCtxStats s0, s1;
    Changer c = { .fd = -1 };
    int pipefd[2];

    need_io_uring();
    c.ctx = setup(1000000, 0, 0);
    T_ASSERT_EQ(pipe(pipefd), 0);
    T_ASSERT_EQ(iot_event_init(&c.e, false), 0);
    T_ASSERT_EQ(iot_ctx_set_event(c.ctx, &c.e, changer_read, changer_poll,
                                  changer_ready),
                0);
    fake_step = 1000;
    c.polls = -1; /* the first io_poll, before a window, changes nothing */
    T_ASSERT_EQ(iot_event_set(&c.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(c.ctx, false)); /* a window of 4000 ns */
    T_ASSERT(iot_fd_poll_window(c.ctx, iot_event_fd(&c.e)) > 0);
    /* Settle the ring (the re-armed poll's task work), so that nothing
     * but the change ends the stretch. */
    for (int i = 0; i < 3; i++) {
        iot_ctx_poll(c.ctx, false);
    }
    c.polls = 0;
    c.fd = pipefd[0];
    s0 = stats_of(c.ctx);
    iot_ctx_poll(c.ctx, true); /* the change ends the stretch */
    T_ASSERT(c.polls >= 1);
    s1 = stats_of(c.ctx);
    T_ASSERT_EQ(s1.poll_hits, s0.poll_hits);
    T_ASSERT_EQ(s1.poll_misses, s0.poll_misses);

    T_ASSERT_EQ(
        iot_fd_set_handler(c.ctx, pipefd[0], NULL, NULL, NULL, NULL, NULL), 0);
    T_ASSERT_EQ(iot_ctx_set_event(c.ctx, &c.e, NULL, NULL, NULL), 0);
    iot_event_cleanup(&c.e);
    close(pipefd[0]);
    close(pipefd[1]);
    iot__test_clock = NULL;
    iot_ctx_unref(c.ctx);
}

/* ---- io_uring: completions are visible from user space ---- */

/* A handler without io_poll does not stop busy polling (section 3.7):
 * the ring's completions are checked in the same loop. */
static void test_io_uring_polls_with_nonpollable(void)
{
    IotCtx *ctx;
    Probe p = { 0 };
    int pipefd[2];

    need_io_uring();
    ctx = setup(1000000, 0, 0);
    T_ASSERT_EQ(pipe(pipefd), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], nopoll_read, NULL, NULL, NULL, NULL),
        0);
    T_ASSERT_EQ(atomic_load(&ctx->poll_disable_cnt), 1);
    probe_add(ctx, &p);
    fire(ctx, &p, 1000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 4000);

    fake_step = 1000;
    p.ready_at_poll = 2;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.begins, 1);
    T_ASSERT_EQ(p.polls, 2);
    T_ASSERT_EQ(p.ready_calls, 1);

    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], NULL, NULL, NULL, NULL, NULL), 0);
    probe_remove(ctx, &p);
    close(pipefd[0]);
    close(pipefd[1]);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* Section 3.6: a polled handler not ready for 7 s leaves the poll list,
 * with io_poll_end and one last io_poll.  The context's notifier, polled
 * from the start, never does. */
static void test_io_uring_idle_removal(void)
{
    IotCtx *ctx;
    IotTimer *t;
    Probe p = { 0 };

    need_io_uring();
    ctx = setup(1000000, 0, 0);
    bool fired = false;

    t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, flag_cb, &fired);
    probe_add(ctx, &p);
    fire(ctx, &p, 1000);
    T_ASSERT_EQ(ctx->poll_len, 2); /* with the notifier, always polled */

    /* A stretch that finds nothing starts the idle clock; a real timer
     * 1 ms away ends the blocking poll. */
    fake_step = 1000;
    iot_timer_mod(t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + IOT_NS_PER_MS);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false)); /* takes the timer's notify */
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(p.begins, 1);
    T_ASSERT_EQ(ctx->poll_len, 2);
    T_ASSERT_EQ(p.ends, 1);

    /* 8 s later (fake), still idle: it leaves the poll list. */
    fake_step = 8 * IOT_NS_PER_S;
    fired = false;
    iot_timer_mod(t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + IOT_NS_PER_MS);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    /* The fake 8 s eat the (real) timeout: poll until the timer fires. */
    while (!fired) {
        iot_ctx_poll(ctx, true);
    }
    /* The notifier stays: busy polling sees a notify only through it. */
    T_ASSERT_EQ(ctx->poll_len, 1);
    T_ASSERT_TRUE(ctx->notifier_h->in_poll_list);
    T_ASSERT_EQ(p.ends, 2);

    /* Its fd still works through the ring, and brings it back. */
    fire(ctx, &p, 1000);
    T_ASSERT_EQ(ctx->poll_len, 2);

    iot_timer_free(t);
    probe_remove(ctx, &p);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* One iteration in which the pipe handler fires, with block_ns = @block. */
static void fire_pipe(IotCtx *ctx, int wfd, int64_t block)
{
    fake_step = block;
    T_ASSERT_EQ(write(wfd, "x", 1), 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
}

/* The largest window at the last busy poll (a blocking poll on a pipe
 * that is already readable: it polls, sees the completion, returns). */
static int64_t budget(IotCtx *ctx, int wfd)
{
    IotCtxStats st;

    fake_step = 1000;
    T_ASSERT_EQ(write(wfd, "x", 1), 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    iot_ctx_get_stats(ctx, &st);
    return st.poll_window_ns;
}

/* Handlers without io_poll callbacks poll through the ring: they go on
 * the ring list, never walked while polling; their windows still set the
 * budget, also after the largest one shrinks; and they leave after 7 s
 * idle like the others. */
static void test_io_uring_ring_list(void)
{
    IotCtx *ctx;
    IotTimer *t;
    IotHandler *h;
    Probe p = { 0 };
    bool fired = false;
    int pipefd[2];

    need_io_uring();
    ctx = setup(32768, 0, 0);
    T_ASSERT_EQ(pipe(pipefd), 0);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, pipefd[0], nopoll_read, NULL, NULL,
                                   NULL, &pipefd[0]),
                0);
    fire_pipe(ctx, pipefd[1], 1000);
    h = handler_of(ctx, pipefd[0]);
    T_ASSERT(h && h->in_poll_list && h->on_ring_list);
    T_ASSERT_EQ(ctx->ring_len, 1);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, pipefd[0]), 4000);

    fire_pipe(ctx, pipefd[1], 10000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, pipefd[0]), 8000);
    T_ASSERT_EQ(budget(ctx, pipefd[1]), 8000);

    /* A pollable handler is on the main list; the budget is the larger. */
    probe_add(ctx, &p);
    fire(ctx, &p, 1000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, p.e.rfd), 4000);
    T_ASSERT(!handler_of(ctx, p.e.rfd)->on_ring_list);
    T_ASSERT_EQ(budget(ctx, pipefd[1]), 8000);

    /* The ring list's largest window shrinks (beyond the max: reset to
     * 0): the budget falls back to the probe's. */
    fire_pipe(ctx, pipefd[1], 40000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, pipefd[0]), 0);
    T_ASSERT_EQ(budget(ctx, pipefd[1]), 4000);

    /* 8 s idle (fake): the ring list's scan drops it. */
    t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, flag_cb, &fired);
    fake_step = 8 * IOT_NS_PER_S;
    for (int i = 0; i < 3 && ctx->ring_len; i++) {
        fired = false;
        iot_timer_mod(t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + IOT_NS_PER_MS);
        while (!fired) {
            iot_ctx_poll(ctx, true);
        }
    }
    T_ASSERT_EQ(ctx->ring_len, 0);
    T_ASSERT(!h->in_poll_list);
    /* Its fd still works through the ring, and brings it back. */
    fire_pipe(ctx, pipefd[1], 1000);
    T_ASSERT_EQ(ctx->ring_len, 1);

    iot_timer_free(t);
    probe_remove(ctx, &p);
    pipe_teardown(ctx, pipefd);
}

/* Two ring-list handlers at the largest window: one shrinking leaves the
 * budget alone, the second brings it down. */
static void test_io_uring_ring_max_count(void)
{
    IotCtx *ctx;
    int a[2], b[2];

    need_io_uring();
    ctx = setup(32768, 0, 0);
    T_ASSERT_EQ(pipe(a), 0);
    T_ASSERT_EQ(pipe(b), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, a[0], nopoll_read, NULL, NULL, NULL, &a[0]), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, b[0], nopoll_read, NULL, NULL, NULL, &b[0]), 0);
    fire_pipe(ctx, a[1], 1000); /* a: 4000 */
    fire_pipe(ctx, b[1], 1000); /* b: 4000 */
    fire_pipe(ctx, a[1], 5000); /* a: 8000 */
    fire_pipe(ctx, b[1], 5000); /* b: 8000 */
    T_ASSERT_EQ(ctx->ring_len, 2);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, a[0]), 8000);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, b[0]), 8000);
    T_ASSERT_EQ(budget(ctx, b[1]), 8000);
    T_ASSERT_EQ(ctx->ring_max_cnt, 2);
    fire_pipe(ctx, a[1], 40000); /* a: reset to 0 */
    T_ASSERT_EQ(iot_fd_poll_window(ctx, a[0]), 0);
    T_ASSERT_FALSE(ctx->ring_max_stale);
    T_ASSERT_EQ(budget(ctx, b[1]), 8000);
    fire_pipe(ctx, b[1], 40000); /* b: reset to 0 */
    T_ASSERT_EQ(budget(ctx, b[1]), 0);

    T_ASSERT_EQ(iot_fd_set_handler(ctx, a[0], NULL, NULL, NULL, NULL, NULL), 0);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, b[0], NULL, NULL, NULL, NULL, NULL), 0);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    iot__test_clock = NULL;
    iot_ctx_unref(ctx);
}

/* block_ns from the work's arrival: the producer's kick time replaces the
 * end of the wait when the loop slept and was kicked after it started. */
static void test_block_ns_from_kick(void)
{
    IotPollParams p = { 32768, 0, 0 };

    T_ASSERT_EQ(iot__poll_block_ns(1000, 50000, 20000, false), 49000);
    T_ASSERT_EQ(iot__poll_block_ns(1000, 50000, 20000, true), 19000);
    T_ASSERT_EQ(iot__poll_block_ns(1000, 50000, 500, true), 49000);
    T_ASSERT_EQ(iot__poll_block_ns(1000, 50000, 60000, true), 49000);
    /* Work that came at 20 us, seen at 40 us because the loop had to wake
     * up: the window grows (QEMU's measure would reset it). */
    T_ASSERT_EQ(
        iot__poll_adjust(16000, iot__poll_block_ns(0, 40000, 20000, true), &p),
        32000);
    T_ASSERT_EQ(
        iot__poll_adjust(16000, iot__poll_block_ns(0, 40000, 20000, false), &p),
        0);
}

typedef struct Kick {
    IotCtx *ctx;
    atomic_bool done;
} Kick;

static void kick_cb(void *opaque)
{
    atomic_store(&((Kick *)opaque)->done, true);
}

static void *kick_loop(void *opaque)
{
    Kick *k = opaque;

    T_ASSERT_EQ(iot_ctx_set_current(k->ctx), 0);
    while (!atomic_load(&k->done)) {
        iot_ctx_poll(k->ctx, true);
    }
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    return NULL;
}

/* A producer that has to write the eventfd records when it did so. */
static void test_kick_time_recorded(void)
{
    IotCtx *ctx = iot_ctx_new(NULL);
    Kick k = { .ctx = ctx };
    pthread_t tid;
    int64_t t0, t1;

    T_ASSERT(ctx != NULL);
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 0, 0, 0), 0); /* just sleep */
    T_ASSERT_EQ(pthread_create(&tid, NULL, kick_loop, &k), 0);
    /* Blocking, or about to: the parameter change's own notification
     * accepted, then (read in this order) an announcement, which can only
     * come from a later iteration: ours must write the eventfd. */
    while (atomic_load(&ctx->notified) || atomic_load(&ctx->notify_me) == 0) {
        sched_yield();
    }
    t0 = iot__now_ns();
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, kick_cb, &k), 0);
    t1 = iot__now_ns();
    pthread_join(tid, NULL);
    T_ASSERT(atomic_load(&ctx->notify_kicks) >= 1);
    T_ASSERT(atomic_load(&ctx->kick_ns) >= t0);
    T_ASSERT(atomic_load(&ctx->kick_ns) <= t1);
    iot_ctx_unref(ctx);
}

static void ev_read(IotEvent *e)
{
    iot_event_test_and_clear(e);
}

/* aio-max-batch caps the requests one io_uring_enter() submits. */
static void test_io_uring_max_batch(void)
{
    IotEvent ev[16];
    IotCtx *ctx;

    need_io_uring();
    ctx = setup(0, 0, 0);
    iot__test_clock = NULL;
    for (int i = 0; i < 16; i++) {
        T_ASSERT_EQ(iot_event_init(&ev[i], false), 0);
    }
    /* Default (0): one submission for all the new polls. */
    for (int i = 0; i < 8; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &ev[i], ev_read, NULL, NULL), 0);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(iot__io_uring_batch_submits(ctx), 0);
    /* 2: every second request goes in at once. */
    T_ASSERT_EQ(iot_ctx_set_max_batch(ctx, 2), 0);
    for (int i = 8; i < 16; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &ev[i], ev_read, NULL, NULL), 0);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT(iot__io_uring_batch_submits(ctx) >= 3);
    /* Everything still works. */
    T_ASSERT_EQ(iot_event_set(&ev[12]), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    for (int i = 0; i < 16; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &ev[i], NULL, NULL, NULL), 0);
        iot_event_cleanup(&ev[i]);
    }
    iot_ctx_unref(ctx);
}

/* A notify while the loop busy polls another handler's long window,
 * in a context whose notifier never fired through its fd (every notify
 * so far came while it was awake): a post ends the stretch at once.  The
 * notifier used to join the poll list only on its first fd event, and
 * until then polling looked at nothing that a notify changes: here the
 * stretch, and the test, would last 1000 s. */
static atomic_bool stretch_polling, far_ran;

static void stretch_read(IotEvent *e)
{
    iot_event_test_and_clear(e);
}

static bool stretch_poll(IotEvent *e)
{
    (void)e;
    atomic_store(&stretch_polling, true);
    return false;
}

static void stretch_ready(IotEvent *e)
{
    (void)e;
}

static void far_bh(void *opaque)
{
    (void)opaque;
    atomic_store(&far_ran, true);
}

static void *far_post(void *opaque)
{
    while (!atomic_load(&stretch_polling)) {
        sched_yield();
    }
    T_ASSERT_EQ(iot_bh_schedule_oneshot((IotCtx *)opaque, far_bh, NULL), 0);
    return NULL;
}

/* @e gets a handler that joins polling and then has a 1000 s window. */
static void long_window_handler(IotCtx *ctx, IotEvent *e)
{
    T_ASSERT_EQ(iot_event_init(e, false), 0);
    T_ASSERT_EQ(
        iot_ctx_set_event(ctx, e, stretch_read, stretch_poll, stretch_ready),
        0);
    T_ASSERT_EQ(iot_event_set(e), 0);
    while (!handler_of(ctx, e->rfd)->in_poll_list) {
        iot_ctx_poll(ctx, true); /* joins polling through its fd */
    }
    handler_of(ctx, e->rfd)->poll_ns = 1000 * IOT_NS_PER_S;
}

static void notify_ends_stretch(IotFdmonKind k)
{
    IotCtx *ctx;
    IotEvent e;
    pthread_t tid;

    kind = k;
    ctx = setup(INT64_MAX, 0, 0);
    iot__test_clock = NULL;
    T_ASSERT_TRUE(ctx->notifier_h->in_poll_list);
    long_window_handler(ctx, &e);
    atomic_store(&stretch_polling, false);
    atomic_store(&far_ran, false);
    T_ASSERT_EQ(pthread_create(&tid, NULL, far_post, ctx), 0);
    while (!atomic_load(&far_ran)) {
        iot_ctx_poll(ctx, true);
    }
    pthread_join(tid, NULL);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, NULL, NULL, NULL), 0);
    iot_event_cleanup(&e);
    iot_ctx_unref(ctx);
}

static void test_notify_ends_stretch(void)
{
    notify_ends_stretch(IOT_FDMON_POLL);
    notify_ends_stretch(IOT_FDMON_EPOLL);
    need_io_uring(); /* poll and epoll passed: the rest is skipped */
    notify_ends_stretch(IOT_FDMON_IO_URING);
}

/* A handler that the home thread adds (from a BH) while another has a
 * long window: the home thread does not notify itself, and the stretch
 * that follows would run the whole window (1000 s: the test's time limit)
 * before the fd wait saw the new handler's readable fd.  The change ends
 * it instead, as a chore: neither a hit nor a miss. */
static IotEvent added_e;
static atomic_bool added_read;

static void added_read_cb(IotEvent *e)
{
    iot_event_test_and_clear(e);
    atomic_store(&added_read, true);
}

static void add_handler_bh(void *opaque)
{
    T_ASSERT_EQ(iot_ctx_set_event((IotCtx *)opaque, &added_e, added_read_cb,
                                  stretch_poll, stretch_ready),
                0);
}

static void home_add_ends_stretch(IotFdmonKind k)
{
    IotCtx *ctx;
    IotEvent e;
    IotCtxStats s0, s1;

    kind = k;
    ctx = setup(INT64_MAX, 0, 0);
    iot__test_clock = NULL;
    long_window_handler(ctx, &e);
    T_ASSERT_EQ(iot_event_init(&added_e, true), 0); /* readable already */
    atomic_store(&added_read, false);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, add_handler_bh, ctx), 0);
    iot_ctx_get_stats(ctx, &s0);
    while (!atomic_load(&added_read)) {
        iot_ctx_poll(ctx, true);
    }
    iot_ctx_get_stats(ctx, &s1);
    T_ASSERT_EQ(s1.poll_misses, s0.poll_misses);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &added_e, NULL, NULL, NULL), 0);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, NULL, NULL, NULL), 0);
    iot_event_cleanup(&added_e);
    iot_event_cleanup(&e);
    iot_ctx_unref(ctx);
}

static void test_home_add_ends_stretch(void)
{
    home_add_ends_stretch(IOT_FDMON_POLL);
    home_add_ends_stretch(IOT_FDMON_EPOLL);
    need_io_uring(); /* poll and epoll passed: the rest is skipped */
    home_add_ends_stretch(IOT_FDMON_IO_URING);
}

/* Timers 200 us apart, each armed by the one before (poll-max-ns 1 ms):
 * the timer window grows to cover the gap, and the loop then busy polls
 * from one timer to the next instead of sleeping for each (W4: a sleeping
 * wake-up made the timers ~25 us late on this kind of machine).  Without
 * the window every gap is spent blocked. */
#define CHAIN_GAP_NS 200000
#define CHAIN_RUNS   40

typedef struct TimerChain {
    IotTimer *t;
    int fired;
} TimerChain;

static void chain_cb(void *opaque)
{
    TimerChain *c = opaque;

    if (++c->fired < CHAIN_RUNS) {
        iot_timer_mod(c->t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + CHAIN_GAP_NS);
    }
}

static void timer_window(IotFdmonKind k)
{
    TimerChain c = { NULL, 0 };
    IotCtxStats s0, s1;
    IotCtx *ctx;

    kind = k;
    ctx = setup(1000000, 0, 0);
    iot__test_clock = NULL;
    c.t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, chain_cb, &c);
    T_ASSERT(c.t != NULL);
    iot_timer_mod(c.t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + CHAIN_GAP_NS);
    while (c.fired < CHAIN_RUNS / 2) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT(ctx->timer_poll_ns >= CHAIN_GAP_NS);
    iot_ctx_get_stats(ctx, &s0);
    while (c.fired < CHAIN_RUNS) {
        iot_ctx_poll(ctx, true);
    }
    iot_ctx_get_stats(ctx, &s1);
    /* Blocked for less than half of the last 20 gaps (all of them
     * without the window). */
    T_ASSERT(s1.idle_ns - s0.idle_ns <
             (uint64_t)CHAIN_GAP_NS * (CHAIN_RUNS / 2) / 2);
    /* A stretch that polls until its timer is a hit, not a miss; the
     * re-arm, made by the loop's own thread, notifies nobody, so no
     * stretch ends at once on the notifier either. */
    T_ASSERT(s1.poll_misses - s0.poll_misses < CHAIN_RUNS / 4);
    T_ASSERT(s1.poll_hits - s0.poll_hits >= CHAIN_RUNS / 4);
    T_ASSERT(s1.poll_hits - s0.poll_hits <= CHAIN_RUNS / 2 + 2);
    /* A timer further away than poll-max-ns shrinks it (poll-shrink 0:
     * to nothing), as an idle handler's. */
    iot_timer_mod(c.t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + 2000000);
    while (c.fired < CHAIN_RUNS + 1) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT_EQ(ctx->timer_poll_ns, 0);
    iot_timer_free(c.t);
    iot_ctx_unref(ctx);
}

static void test_timer_window(void)
{
    timer_window(IOT_FDMON_POLL);
    timer_window(IOT_FDMON_EPOLL);
    need_io_uring(); /* poll and epoll passed: the rest is skipped */
    timer_window(IOT_FDMON_IO_URING);
}

/* An idle BH that schedules itself again from its callback runs once per
 * idle period (10 ms), as in QEMU's loop, not in a spin: the schedule is
 * the loop thread's own and notifies nobody (a notify would leave
 * `notified` set, and the loop does not block on it).  Polling off, so
 * the loop's only way to wait is to block. */
typedef struct IdleLoop {
    IotBh *bh;
    int runs;
} IdleLoop;

static void idle_again(void *opaque)
{
    IdleLoop *l = opaque;

    l->runs++;
    iot_bh_schedule_idle(l->bh);
}

static void test_idle_bh_reschedules_itself(void)
{
    IdleLoop l = { NULL, 0 };
    IotCtxStats s0, s1;
    int64_t t0;
    IotCtx *ctx;

    kind = IOT_FDMON_EPOLL;
    ctx = setup(0, 0, 0);
    iot__test_clock = NULL;
    l.bh = iot_bh_new(ctx, idle_again, &l);
    iot_bh_schedule_idle(l.bh);
    iot_ctx_get_stats(ctx, &s0);
    t0 = iot_clock_ns(IOT_CLOCK_MONOTONIC);
    while (iot_clock_ns(IOT_CLOCK_MONOTONIC) - t0 < 200 * IOT_NS_PER_MS) {
        iot_ctx_poll(ctx, true);
    }
    iot_ctx_get_stats(ctx, &s1);
    /* About 20 runs, each after 10 ms asleep (a spin: hundreds of
     * thousands, never asleep). */
    T_ASSERT(l.runs >= 1);
    T_ASSERT(l.runs < 100);
    T_ASSERT(s1.idle_ns - s0.idle_ns > 100 * IOT_NS_PER_MS);
    /* From another thread, the schedule still wakes a loop that sleeps
     * with no timeout: section9/item3 and the cross-thread BH tests. */
    iot_bh_delete(l.bh);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_ctx_unref(ctx);
}

/* ---- work the loop's own thread publishes from io_poll ---- */

/* A handler whose io_poll, once armed (rv_arm), arms a timer 2 ms ahead
 * (or schedules an idle BH) from inside the busy-poll stretch: code the
 * home thread runs after the iteration computed its timeout.  The timer
 * or idle BH must run within ms; a watchdog thread notifies at 2 s. */
static IotTimer *rv_timer;
static IotBh *rv_idle;
static atomic_bool rv_arm, rv_fired;
static int64_t rv_t0;
static sem_t rv_done; /* ends the watchdog early */

static void rv_timer_cb(void *opaque)
{
    (void)opaque;
    atomic_store(&rv_fired, true);
}

static bool rv_poll(IotEvent *e)
{
    (void)e;
    if (atomic_exchange(&rv_arm, false)) {
        if (rv_timer) {
            iot_timer_mod(rv_timer, iot_clock_ns(IOT_CLOCK_MONOTONIC) +
                                        2 * IOT_NS_PER_MS);
        } else {
            iot_bh_schedule_idle(rv_idle);
        }
    }
    return false;
}

static void *rv_watchdog(void *opaque)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    while (sem_timedwait(&rv_done, &ts) < 0 && errno == EINTR) {
    }
    atomic_store(&rv_fired, true); /* ends the loop below in any case */
    iot_ctx_notify((IotCtx *)opaque);
    return NULL;
}

static void rv_from_io_poll(bool timer)
{
    IotCtx *ctx;
    IotEvent e;
    pthread_t tid;
    bool ran = false;
    int64_t took;

    kind = IOT_FDMON_EPOLL;
    ctx = setup(32768, 0, 0);
    iot__test_clock = NULL;
    T_ASSERT_EQ(iot_event_init(&e, false), 0);
    T_ASSERT_EQ(
        iot_ctx_set_event(ctx, &e, stretch_read, rv_poll, stretch_ready), 0);
    T_ASSERT_EQ(iot_event_set(&e), 0);
    while (!handler_of(ctx, e.rfd)->in_poll_list) {
        iot_ctx_poll(ctx, true); /* joins polling through its fd */
    }
    handler_of(ctx, e.rfd)->poll_ns = 20000; /* a 20 us stretch */
    if (timer) {
        rv_timer = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, rv_timer_cb, NULL);
    } else {
        rv_idle = iot_bh_new(ctx, rv_timer_cb, NULL);
    }
    while (iot_ctx_poll(ctx, false)) {
    }
    atomic_store(&rv_fired, false);
    atomic_store(&rv_arm, true);
    T_ASSERT_EQ(sem_init(&rv_done, 0, 0), 0);
    T_ASSERT_EQ(pthread_create(&tid, NULL, rv_watchdog, ctx), 0);
    rv_t0 = t_now_ns();
    while (!atomic_load(&rv_fired)) {
        iot_ctx_poll(ctx, true);
    }
    took = t_now_ns() - rv_t0;
    ran = timer ? !iot_timer_pending(rv_timer) : true;
    fprintf(stderr, "# %s armed from io_poll: ran after %" PRId64 " us\n",
            timer ? "timer" : "idle BH", took / 1000);
    T_ASSERT(ran);
    T_ASSERT(took < 500 * IOT_NS_PER_MS);
    T_ASSERT_EQ(sem_post(&rv_done), 0);
    T_ASSERT_EQ(pthread_join(tid, NULL), 0);
    sem_destroy(&rv_done);
    if (timer) {
        iot_timer_free(rv_timer);
    } else {
        iot_bh_delete(rv_idle);
    }
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, NULL, NULL, NULL), 0);
    iot_event_cleanup(&e);
    while (iot_ctx_poll(ctx, false)) {
    }
    iot_ctx_unref(ctx);
}

static void test_rv_timer_from_io_poll(void)
{
    rv_from_io_poll(true);
}

static void test_rv_idle_from_io_poll(void)
{
    rv_from_io_poll(false);
}

/* The idle BH that schedules itself again, on a context that busy polls
 * (an IOThread's default) once posting is relaxed: the first pass takes
 * it and one other post (a stream of two).  The loop must still wait the
 * idle period between runs. */
static void test_rv_idle_bh_reschedules_itself_paced(void)
{
    IdleLoop l = { NULL, 0 };
    IotCtxStats s0, s1;
    int64_t t0;
    IotCtx *ctx;
    uint64_t iters;

    if (!iot__postq_relaxed_available()) {
        t_skip("no membarrier: posting is never relaxed");
    }
    kind = IOT_FDMON_EPOLL;
    ctx = setup(32768, 0, 0);
    iot__test_clock = NULL;
    l.bh = iot_bh_new(ctx, idle_again, &l);
    iot_bh_schedule_idle(l.bh);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, rv_timer_cb, NULL), 0);
    iot_ctx_get_stats(ctx, &s0);
    t0 = iot_clock_ns(IOT_CLOCK_MONOTONIC);
    while (iot_clock_ns(IOT_CLOCK_MONOTONIC) - t0 < 200 * IOT_NS_PER_MS) {
        iot_ctx_poll(ctx, true);
    }
    iot_ctx_get_stats(ctx, &s1);
    iters = s1.iterations - s0.iterations;
    fprintf(stderr,
            "# paced: %d runs, %" PRIu64 " iterations, idle %" PRIu64
            " us, post_relaxed %d\n",
            l.runs, iters, (s1.idle_ns - s0.idle_ns) / 1000,
            (int)atomic_load(&ctx->post_relaxed));
    T_ASSERT(l.runs < 100);
    T_ASSERT(s1.idle_ns - s0.idle_ns > 100 * IOT_NS_PER_MS);
    iot_bh_delete(l.bh);
    while (iot_ctx_poll(ctx, false)) {
    }
    iot_ctx_unref(ctx);
}

int main(int argc, char **argv)
{
    t_add("/poll/adjust/start-4000", test_adjust_start);
    t_add("/poll/adjust/grow", test_adjust_grow);
    t_add("/poll/adjust/clamp", test_adjust_clamp);
    t_add("/poll/adjust/sweet-spot", test_adjust_sweet_spot);
    t_add("/poll/adjust/shrink", test_adjust_shrink);
    t_add("/poll/adjust/edges", test_adjust_edges);
    t_add("/section9/item5/adaptive-window-rules", test_window_rules);
    t_add("/section9/item5/budget-largest-window", test_budget_largest_window);
    t_add("/section9/item6/poll-mode-transitions", test_transitions);
    t_add("/section9/item6/join-while-polling", test_join_while_polling);
    t_add("/section9/item6/set-event-poll-in-poll-mode",
          test_set_event_poll_in_poll_mode);
    t_add("/section9/item6/set-event-poll-then-block",
          test_set_event_poll_then_block);
    t_add("/poll/hit-reads-no-clock", test_hit_reads_no_clock);
    t_add("/section9/item7/no-busy-poll-without-io_poll", test_skip_polling);
    t_add("/nested-aio-poll", test_nested_aio_poll);
    t_add("/poll/io_uring/polls-with-nonpollable-fd",
          test_io_uring_polls_with_nonpollable);
    t_add("/poll/io_uring/idle-handler-removal", test_io_uring_idle_removal);
    t_add("/poll/io_uring/ring-list", test_io_uring_ring_list);
    t_add("/poll/io_uring/ring-max-count", test_io_uring_ring_max_count);
    t_add("/poll/block-ns/from-kick", test_block_ns_from_kick);
    t_add("/poll/block-ns/kick-recorded", test_kick_time_recorded);
    t_add("/poll/io_uring/aio-max-batch", test_io_uring_max_batch);
    t_add("/poll/stats/hit-and-miss", test_stats_hit_and_miss);
    t_add("/poll/io_uring/stats-chore", test_io_uring_stats_chore);
    t_add("/poll/notify-ends-stretch", test_notify_ends_stretch);
    t_add("/poll/home-add-ends-stretch", test_home_add_ends_stretch);
    t_add("/poll/timer-window", test_timer_window);
    t_add("/poll/idle-bh-reschedules-itself", test_idle_bh_reschedules_itself);
    t_add("/poll/home-thread/timer-from-io-poll", test_rv_timer_from_io_poll);
    t_add("/poll/home-thread/idle-bh-from-io-poll", test_rv_idle_from_io_poll);
    t_add("/poll/idle-bh-reschedules-itself/paced",
          test_rv_idle_bh_reschedules_itself_paced);
    return t_run(argc, argv);
}
