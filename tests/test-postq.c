/* SPDX-License-Identifier: MIT */
/*
 * Post queues (src/postq.h): FIFO per scheduling thread across chunks and
 * passes, relaxed posting under a stream and the way back to blocking,
 * and the queues' lifetime (threads that exit, contexts that go away,
 * a new context at a freed one's address).
 */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "harness.h"
#include "postq.h"

static IotCtx *ctx_setup(void)
{
    IotCtx *ctx = iot_ctx_new(NULL);

    T_ASSERT(ctx != NULL);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    return ctx;
}

static void ctx_teardown(IotCtx *ctx)
{
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
}

static pthread_t start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t tid;

    T_ASSERT_EQ(pthread_create(&tid, NULL, fn, arg), 0);
    return tid;
}

static int queue_count(IotCtx *ctx)
{
    int n = 0;

    for (IotPostQ *q = atomic_load(&ctx->postqs); q;
         q = atomic_load(&q->next)) {
        n++;
    }
    return n;
}

/* ---- order ---- */

typedef struct Seq {
    long next; /* [home] the number the next callback must carry */
    long bad;  /* [home] callbacks out of order */
} Seq;

static Seq seq;

static void seq_cb(void *opaque)
{
    long n = (long)(intptr_t)opaque;

    seq.bad += n != seq.next;
    seq.next = n + 1;
}

/* Busy polling sees a lone post by its slot, before the post's notify:
 * that store is one more cache-line transfer on the hand-off's path.  The
 * slot is published here without the notify that follows it. */
static int lone_ran;

static void lone_cb(void *opaque)
{
    (void)opaque;
    lone_ran++;
}

static void test_lone_post_seen_by_slot(void)
{
    IotCtx *ctx = ctx_setup();
    IotHandler *nh = ctx->notifier_h;

    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, lone_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(lone_ran, 1);
    T_ASSERT_FALSE(nh->ops.poll(nh->opaque));

    T_ASSERT(iot__postq_last != NULL && iot__postq_last->ctx_id == ctx->id);
    iot__postq_put(iot__postq_last, lone_cb, NULL);
    T_ASSERT_FALSE(atomic_load(&ctx->notified));
    T_ASSERT_FALSE(atomic_load(&ctx->post_relaxed));
    T_ASSERT_TRUE(nh->ops.poll(nh->opaque));
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(lone_ran, 2);
    T_ASSERT_FALSE(nh->ops.poll(nh->opaque));
    ctx_teardown(ctx);
}

/* More slots than several chunks hold, and than one pass takes: they run
 * in posting order, IOT_POSTQ_TAKE per pass, and nothing is left. */
static void test_fifo_across_chunks(void)
{
    IotCtx *ctx = ctx_setup();
    long n = IOT_POSTQ_TAKE * 2 + IOT_POSTQ_SLOTS + 3;
    int passes = 0;

    seq = (Seq){ 0, 0 };
    for (long i = 0; i < n; i++) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, seq_cb, (void *)(intptr_t)i),
                    0);
    }
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(seq.next, IOT_POSTQ_TAKE);
    T_ASSERT_EQ(iot__bh_timeout(ctx), 0); /* the rest is due */
    passes = 1;
    while (iot_ctx_poll(ctx, false)) {
        passes++;
    }
    T_ASSERT_EQ(seq.next, n);
    T_ASSERT_EQ(seq.bad, 0);
    T_ASSERT_EQ(passes, 3);
    T_ASSERT_EQ(iot__bh_timeout(ctx), -1);
    ctx_teardown(ctx);
}

/* A chunk the loop handed back is cleared before it is written again: a
 * slot is published by filling it, so a stale one would run a second
 * time, out of order.  Rounds of posts, each drained, through the same
 * few chunks; each round ends in a different place of a chunk. */
static void test_reused_chunk_cleared(void)
{
    IotCtx *ctx = ctx_setup();
    long n = 0;

    seq = (Seq){ 0, 0 };
    for (int round = 0; round < 8; round++) {
        long k = IOT_POSTQ_SLOTS * 2 + 1 + round * 37;

        for (long i = 0; i < k; i++, n++) {
            T_ASSERT_EQ(
                iot_bh_schedule_oneshot(ctx, seq_cb, (void *)(intptr_t)n), 0);
        }
        while (iot_ctx_poll(ctx, false)) {
        }
        T_ASSERT_EQ(seq.next, n);
        T_ASSERT_EQ(seq.bad, 0);
        T_ASSERT_EQ(iot__bh_timeout(ctx), -1);
        T_ASSERT_EQ(iot__postq_published(ctx), (uint64_t)n);
    }
    ctx_teardown(ctx);
}

/* An idle BH waits its period: at the head of a queue it is not work
 * that busy polling (iot__postq_hot_pending()) or a paced loop
 * (iot__postq_pending()) should go round for, or one that schedules
 * itself again, always queued, spins the loop.  A one-shot behind it is
 * due. */
static void idle_nop_cb(void *opaque)
{
    (void)opaque;
}

static void test_idle_bh_not_pending(void)
{
    IotCtx *ctx = ctx_setup();
    IotBh *bh = iot_bh_new(ctx, idle_nop_cb, NULL);

    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, idle_nop_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false)); /* the queue is now the hot one */
    T_ASSERT_FALSE(iot__postq_pending(ctx));
    iot_bh_schedule_idle(bh);
    T_ASSERT_FALSE(iot__postq_pending(ctx));
    T_ASSERT_FALSE(iot__postq_hot_pending(ctx));
    T_ASSERT_EQ(iot__bh_timeout(ctx), IOT_IDLE_BH_PERIOD_NS);
    /* A one-shot behind the idle BH is due. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, idle_nop_cb, NULL), 0);
    T_ASSERT_TRUE(iot__postq_pending(ctx));
    T_ASSERT_TRUE(iot__postq_hot_pending(ctx));
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    iot_bh_schedule_idle(bh);
    T_ASSERT_FALSE(iot__postq_pending(ctx));
    iot_bh_schedule(bh); /* no longer idle: due */
    T_ASSERT_TRUE(iot__postq_pending(ctx));
    T_ASSERT_TRUE(iot__postq_hot_pending(ctx));
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    iot_bh_delete(bh);
    while (iot_ctx_poll(ctx, false)) {
    }
    ctx_teardown(ctx);
}

static int partial_runs;

static void partial_cb(void *opaque)
{
    (void)opaque;
    partial_runs++;
}

/* Posts @n one-shots from a thread of its own, which stays alive (its
 * queue is a live producer's) until released. */
typedef struct LinePoster {
    IotCtx *ctx;
    int n;
    sem_t posted, release;
    pthread_t thread;
} LinePoster;

static void *line_poster_main(void *opaque)
{
    LinePoster *p = opaque;

    for (int i = 0; i < p->n; i++) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(p->ctx, partial_cb, NULL), 0);
    }
    sem_post(&p->posted);
    while (sem_wait(&p->release) < 0) {
    }
    return NULL;
}

static void line_poster_start(LinePoster *p, IotCtx *ctx, int n)
{
    *p = (LinePoster){ .ctx = ctx, .n = n };
    sem_init(&p->posted, 0, 0);
    sem_init(&p->release, 0, 0);
    T_ASSERT_EQ(pthread_create(&p->thread, NULL, line_poster_main, p), 0);
    while (sem_wait(&p->posted) < 0) {
    }
}

static void line_poster_end(LinePoster *p)
{
    sem_post(&p->release);
    T_ASSERT_EQ(pthread_join(p->thread, NULL), 0);
    sem_destroy(&p->posted);
    sem_destroy(&p->release);
}

/* A pass takes everything published when it looks, to the last slot of
 * a line the producer is still filling, stream or not, from another
 * thread's queue and from the loop's own: holding such slots back for
 * the next pass would save no transfer (the look has read the line) and
 * only delay them. */
static void test_pass_takes_all(void)
{
    IotCtx *ctx = ctx_setup();
    LinePoster p;

    for (int relaxed = 0; relaxed <= 1; relaxed++) {
        partial_runs = 0;
        atomic_store(&ctx->post_relaxed, (bool)relaxed);
        line_poster_start(&p, ctx, 10);
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(partial_runs, 10);
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        line_poster_end(&p);

        for (int i = 0; i < 10; i++) {
            T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, partial_cb, NULL), 0);
        }
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(partial_runs, 20);
        atomic_store(&ctx->post_relaxed, false);
        while (iot_ctx_poll(ctx, false)) {
        }
    }
    ctx_teardown(ctx);
}

/* ---- many producers, with relaxed posting allowed or not ---- */

#define PRODUCERS 4

typedef struct Stream {
    IotCtx *ctx;
    long per_thread;
    long next[PRODUCERS]; /* [home] */
    long bad;             /* [home] */
    long ran;             /* [home] */
    bool saw_relaxed;     /* [home] relaxed posting was on at some point */
} Stream;

typedef struct StreamArg {
    Stream *s;
    int k;
} StreamArg;

static Stream stream;

static void stream_cb(void *opaque)
{
    long v = (long)(intptr_t)opaque;
    int k = (int)(v % PRODUCERS);
    long i = v / PRODUCERS;

    stream.bad += i != stream.next[k];
    stream.next[k] = i + 1;
    stream.ran++;
    stream.saw_relaxed |= atomic_load(&stream.ctx->post_relaxed);
}

static void *stream_thread(void *opaque)
{
    StreamArg *a = opaque;

    for (long i = 0; i < a->s->per_thread; i++) {
        T_ASSERT_EQ(
            iot_bh_schedule_oneshot(a->s->ctx, stream_cb,
                                    (void *)(intptr_t)(i * PRODUCERS + a->k)),
            0);
    }
    return NULL;
}

static void stream_run(bool relaxed)
{
    IotCtx *ctx = ctx_setup();
    StreamArg args[PRODUCERS];
    pthread_t tid[PRODUCERS];

    iot__postq_relaxed_allowed = relaxed;
    stream = (Stream){ .ctx = ctx, .per_thread = t_scale(200000, 10) };
    for (int k = 0; k < PRODUCERS; k++) {
        args[k] = (StreamArg){ &stream, k };
        tid[k] = start_thread(stream_thread, &args[k]);
    }
    /* A lost wake-up blocks here for good (the harness times out). */
    while (stream.ran < stream.per_thread * PRODUCERS) {
        iot_ctx_poll(ctx, true);
    }
    for (int k = 0; k < PRODUCERS; k++) {
        pthread_join(tid[k], NULL);
        T_ASSERT_EQ(stream.next[k], stream.per_thread);
    }
    T_ASSERT_EQ(stream.bad, 0);
    T_ASSERT_EQ(stream.ran, stream.per_thread * PRODUCERS);
    if (!relaxed) {
        T_ASSERT_FALSE(stream.saw_relaxed);
    }
    /* Exited producers' queues go once they are empty. */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(queue_count(ctx), 0);
    ctx_teardown(ctx);
}

/* Producers in bursts of 1 to 300 posts with pauses of up to 50 us
 * between some of them: the loop blocks and wakes again and again while
 * chunks are reused and lines are read half filled.  FIFO per producer,
 * each post once.  (From the review of the slot publication.) */
static void *burst_thread(void *opaque)
{
    StreamArg *a = opaque;
    unsigned seed = (unsigned)a->k * 7919u + 1;

    for (long i = 0; i < a->s->per_thread;) {
        long b = 1 + (long)(rand_r(&seed) % 300);

        for (long j = 0; j < b && i < a->s->per_thread; j++, i++) {
            T_ASSERT_EQ(iot_bh_schedule_oneshot(
                            a->s->ctx, stream_cb,
                            (void *)(intptr_t)(i * PRODUCERS + a->k)),
                        0);
        }
        if (rand_r(&seed) % 4 == 0) {
            usleep(rand_r(&seed) % 50);
        }
    }
    return NULL;
}

static void test_stream_bursts(void)
{
    IotCtx *ctx = ctx_setup();
    StreamArg args[PRODUCERS];
    pthread_t tid[PRODUCERS];

    stream = (Stream){ .ctx = ctx, .per_thread = t_scale(100000, 10) };
    for (int k = 0; k < PRODUCERS; k++) {
        args[k] = (StreamArg){ &stream, k };
        tid[k] = start_thread(burst_thread, &args[k]);
    }
    /* A lost wake-up blocks here for good (the harness times out). */
    while (stream.ran < stream.per_thread * PRODUCERS) {
        iot_ctx_poll(ctx, true);
    }
    for (int k = 0; k < PRODUCERS; k++) {
        T_ASSERT_EQ(pthread_join(tid[k], NULL), 0);
        T_ASSERT_EQ(stream.next[k], stream.per_thread);
    }
    T_ASSERT_EQ(stream.bad, 0);
    T_ASSERT_EQ(stream.ran, stream.per_thread * PRODUCERS);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    ctx_teardown(ctx);
}

static void test_stream_fenced(void)
{
    stream_run(false);
}

static void test_stream_relaxed(void)
{
    stream_run(true);
    /* Where membarrier works, a stream this long turns relaxed posting on
     * (passes that take more than one post). */
    if (iot__postq_relaxed_available()) {
        T_ASSERT_TRUE(stream.saw_relaxed);
    }
}

/* IOTHREAD_MEMBARRIER=0 (design.md): posting is never relaxed, however
 * long the stream, and nothing is lost.  Read once, at the first context
 * of the process: this case's process has made none before. */
static void test_stream_membarrier_off(void)
{
    T_ASSERT_EQ(setenv("IOTHREAD_MEMBARRIER", "0", 1), 0);
    T_ASSERT_FALSE(iot__postq_relaxed_available());
    stream_run(true);
    T_ASSERT_FALSE(stream.saw_relaxed);
}

/*
 * Pacing (postq.h): on a context that busy-polls, a pass that took a
 * stream's share makes the loop look at the queues again only
 * IOT_POSTQ_PACE_NS later, waiting in busy polling, not blocking; a pass
 * that took one post holds nothing back.  Driven by a clock that advances
 * PACE_STEP per reading.
 */
#define PACE_STEP 10

static int64_t pace_now;
static int64_t pace_ran_at[4]; /* the clock when each callback ran */
static int pace_ran;

static int64_t pace_clock(void)
{
    return pace_now += PACE_STEP;
}

static void pace_cb(void *opaque)
{
    (void)opaque;
    T_ASSERT(pace_ran < 4);
    pace_ran_at[pace_ran++] = pace_now;
}

/* Pacing needs the notifier busy-polled: it is, from the start. */
static void notifier_polled(IotCtx *ctx)
{
    T_ASSERT_TRUE(ctx->notifier_h->in_poll_list);
}

static void test_stream_paced(void)
{
    IotCtx *ctx = ctx_setup();
    int64_t look;

    if (!iot__postq_relaxed_available()) {
        ctx_teardown(ctx); /* no relaxed posting, nothing to pace */
        return;
    }
    iot__postq_relaxed_allowed = 1;
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 32768, 0, 0), 0);
    notifier_polled(ctx);
    iot__test_clock = pace_clock;

    /* Two posts taken in one pass: a stream. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pace_ran, 2);
    T_ASSERT_TRUE(atomic_load(&ctx->post_relaxed));
    look = ctx->postq_look_ns;
    T_ASSERT(look > pace_now);

    /* The next post of the stream waits for that look, polling: posting
     * stays relaxed (the loop never went towards blocking). */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pace_ran, 3);
    T_ASSERT(pace_ran_at[2] >= look);
    T_ASSERT_TRUE(atomic_load(&ctx->post_relaxed));

    /* That pass took one post: the next one is taken at the first look. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pace_ran, 4);
    T_ASSERT(pace_ran_at[3] - pace_ran_at[2] < IOT_POSTQ_PACE_NS / 2);

    iot__test_clock = NULL;
    ctx_teardown(ctx);
}

/* A window as large as the properties allow (poll-max-ns and poll-grow at
 * INT64_MAX clamp a grown window to INT64_MAX): the poll until the next
 * look saturates instead of overflowing (UBSan says so). */
static void test_stream_paced_huge_window(void)
{
    IotCtx *ctx = ctx_setup();

    if (!iot__postq_relaxed_available()) {
        ctx_teardown(ctx);
        return;
    }
    iot__postq_relaxed_allowed = 1;
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, INT64_MAX, INT64_MAX, 0), 0);
    notifier_polled(ctx);
    ctx->notifier_h->poll_ns = INT64_MAX;
    iot__test_clock = pace_clock;
    pace_ran = 0;

    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_TRUE(atomic_load(&ctx->post_relaxed));
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pace_ran, 3);

    iot__test_clock = NULL;
    ctx_teardown(ctx);
}

/* A stream's second pass on @ctx, where nothing can be paced: the post
 * runs at once (not after a poll window or a pace) and posting stays
 * relaxed (no way round through the barrier of iot__postq_relaxed_end()). */
static void stream_second_pass(IotCtx *ctx)
{
    int64_t t0;

    iot__test_clock = pace_clock;
    pace_ran = 0;
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pace_ran, 2);
    T_ASSERT_TRUE(atomic_load(&ctx->post_relaxed));
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pace_cb, NULL), 0);
    t0 = pace_now;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pace_ran, 3);
    T_ASSERT(pace_ran_at[2] - t0 < IOT_POSTQ_PACE_NS / 2);
    T_ASSERT_TRUE(atomic_load(&ctx->post_relaxed));
    iot__test_clock = NULL;
}

static IotCtx *poll_ctx_setup(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_POLL };
    IotCtx *ctx = iot_ctx_new_full(&opts, NULL);

    T_ASSERT(ctx != NULL);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 32768, 0, 0), 0);
    iot__postq_relaxed_allowed = 1;
    return ctx;
}

static void pipe_read_noop(void *opaque)
{
    (void)opaque;
}

/* A handler without io_poll turns busy polling off (poll backend): the
 * loop must look at the queues itself, not skip them and go round. */
static void test_stream_paced_poll_disabled(void)
{
    IotCtx *ctx = poll_ctx_setup();
    int p[2];

    if (!iot__postq_relaxed_available()) {
        ctx_teardown(ctx);
        return;
    }
    notifier_polled(ctx);
    T_ASSERT_EQ(pipe(p), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p[0], pipe_read_noop, NULL, NULL, NULL, NULL),
        0);
    stream_second_pass(ctx);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p[0], NULL, NULL, NULL, NULL, NULL), 0);
    close(p[0]);
    close(p[1]);
    ctx_teardown(ctx);
}

/* A callback that waits in nested polls for two posts of its own: each
 * nested pass takes one, which must not pace the next. */
static IotCtx *nest_ctx;
static int64_t nest_gap; /* clock from the second post to its run */

static void nest_cb(void *opaque)
{
    int64_t t0;

    (void)opaque;
    T_ASSERT_EQ(iot_bh_schedule_oneshot(nest_ctx, pace_cb, NULL), 0);
    while (pace_ran < 1) {
        iot_ctx_poll(nest_ctx, true);
    }
    T_ASSERT_EQ(iot_bh_schedule_oneshot(nest_ctx, pace_cb, NULL), 0);
    t0 = pace_now;
    while (pace_ran < 2) {
        iot_ctx_poll(nest_ctx, true);
    }
    nest_gap = pace_ran_at[1] - t0;
}

static void nest_other(void *opaque)
{
    (void)opaque;
}

static void test_stream_paced_nested(void)
{
    IotCtx *ctx = poll_ctx_setup();

    if (!iot__postq_relaxed_available()) {
        ctx_teardown(ctx);
        return;
    }
    notifier_polled(ctx);
    iot__test_clock = pace_clock;
    nest_ctx = ctx;
    pace_ran = 0;
    /* The outer pass takes two (a stream); nest_cb's passes take one. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, nest_cb, NULL), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, nest_other, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pace_ran, 2);
    T_ASSERT(nest_gap < IOT_POSTQ_PACE_NS / 2);
    iot__test_clock = NULL;
    ctx_teardown(ctx);
}

/*
 * After a stream, relaxed posting is on; the loop must turn it off (and
 * run membarrier) before it blocks, so that a post that comes while it
 * sleeps takes the fenced path and wakes it.
 */
typedef struct Tail {
    IotCtx *ctx;
    long burst;
    atomic_long ran;
} Tail;

static Tail tail;

static void tail_cb(void *opaque)
{
    (void)opaque;
    atomic_fetch_add(&tail.ran, 1);
}

static void *tail_thread(void *opaque)
{
    (void)opaque;
    for (long i = 0; i < tail.burst; i++) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(tail.ctx, tail_cb, NULL), 0);
    }
    /* Wait until the loop has run the burst and announced it may block. */
    while (atomic_load(&tail.ran) < tail.burst ||
           atomic_load(&tail.ctx->notify_me) == 0) {
        sched_yield();
    }
    T_ASSERT_FALSE(atomic_load(&tail.ctx->post_relaxed));
    T_ASSERT_EQ(iot_bh_schedule_oneshot(tail.ctx, tail_cb, NULL), 0);
    return NULL;
}

static void test_relaxed_then_block(void)
{
    IotCtx *ctx = ctx_setup();
    pthread_t tid;

    tail.ctx = ctx;
    tail.burst = t_scale(100000, 10);
    atomic_store(&tail.ran, 0);
    tid = start_thread(tail_thread, NULL);
    while (atomic_load(&tail.ran) < tail.burst + 1) {
        iot_ctx_poll(ctx, true);
    }
    pthread_join(tid, NULL);
    T_ASSERT_FALSE(atomic_load(&ctx->post_relaxed));
    ctx_teardown(ctx);
}

/* ---- lifetime ---- */

static void count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

typedef struct Poster {
    IotCtx *ctx;
    int *count;
} Poster;

static void *post_once_thread(void *opaque)
{
    Poster *p = opaque;

    T_ASSERT_EQ(iot_bh_schedule_oneshot(p->ctx, count_cb, p->count), 0);
    return NULL;
}

/* A thread posts and exits: its post still runs, then its queue goes. */
static void test_exited_thread(void)
{
    IotCtx *ctx = ctx_setup();
    int count = 0;
    Poster p = { ctx, &count };

    pthread_join(start_thread(post_once_thread, &p), NULL);
    T_ASSERT_EQ(queue_count(ctx), 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(count, 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(queue_count(ctx), 0);
    /* It was the queue taken from last, which busy polling looks at: not
     * any more (under ASan, a look would be a use after free). */
    T_ASSERT(ctx->postq_hot == NULL);
    T_ASSERT_FALSE(ctx->notifier_h->ops.poll(ctx->notifier_h->opaque));
    ctx_teardown(ctx);
}

/* Busy polling reads one queue's tail a round, the queue the latest pass
 * took from, however many threads post: a slot published on another
 * queue without its notify is left to that notify (here, to the next
 * pass). */
static void test_busy_poll_one_queue(void)
{
    IotCtx *ctx = ctx_setup();
    IotHandler *nh = ctx->notifier_h;
    int count = 0;
    Poster p = { ctx, &count };

    /* The home thread's queue, then a thread's, taken from last. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, count_cb, &count), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    pthread_join(start_thread(post_once_thread, &p), NULL);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(count, 2);
    T_ASSERT(ctx->postq_hot != NULL && ctx->postq_hot != iot__postq_last);

    iot__postq_put(iot__postq_last, count_cb, &count);
    T_ASSERT_FALSE(atomic_load(&ctx->notified));
    T_ASSERT_FALSE(nh->ops.poll(nh->opaque));
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(count, 3);
    ctx_teardown(ctx);
}

/* A thread posts, then another library's thread-specific-data destructor
 * posts once more as the thread exits, after the post queues' own
 * destructor had its turn (a key created later runs later in each round):
 * the last post still comes last, in the same queue. */
enum { TSD_POSTS = 100 };
static IotCtx *tsd_ctx;
static pthread_key_t tsd_key;

static void tsd_destructor(void *value)
{
    (void)value;
    T_ASSERT_EQ(
        iot_bh_schedule_oneshot(tsd_ctx, seq_cb, (void *)(intptr_t)TSD_POSTS),
        0);
}

static void *tsd_thread(void *opaque)
{
    (void)opaque;
    for (long i = 0; i < TSD_POSTS; i++) {
        T_ASSERT_EQ(
            iot_bh_schedule_oneshot(tsd_ctx, seq_cb, (void *)(intptr_t)i), 0);
    }
    T_ASSERT_EQ(pthread_setspecific(tsd_key, (void *)1), 0);
    return NULL;
}

static void test_post_from_tsd_destructor(void)
{
    IotCtx *ctx = ctx_setup();
    int count = 0;
    Poster p = { ctx, &count };

    /* The library's key first (a thread's first post makes it), then
     * ours, so that ours runs after it. */
    pthread_join(start_thread(post_once_thread, &p), NULL);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(count, 1);
    T_ASSERT_EQ(pthread_key_create(&tsd_key, tsd_destructor), 0);
    tsd_ctx = ctx;
    seq = (Seq){ 0 };
    pthread_join(start_thread(tsd_thread, NULL), NULL);
    while (iot_ctx_poll(ctx, false)) {
    }
    T_ASSERT_EQ(seq.next, TSD_POSTS + 1);
    T_ASSERT_EQ(seq.bad, 0);
    T_ASSERT_EQ(queue_count(ctx), 0);
    pthread_key_delete(tsd_key);
    ctx_teardown(ctx);
}

/* This thread posts into a context that then goes away, and into a new
 * one (perhaps at the same address): the new one gets its own queue and
 * runs the post; the old queue is freed (ASan and LSan watch). */
static void test_context_gone(void)
{
    int count = 0;

    for (int round = 0; round < 8; round++) {
        IotCtx *ctx = ctx_setup();

        T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, count_cb, &count), 0);
        T_ASSERT_EQ(queue_count(ctx), 1);
        if (round % 2) {
            T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        }
        ctx_teardown(ctx); /* an unrun one-shot is dropped */
    }
    T_ASSERT_EQ(count, 4);
}

/* A producer thread outlives the context it posted into. */
typedef struct Outlive {
    IotCtx *ctx;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stage; /* 1: posted, 2: context gone */
} Outlive;

static void *outlive_thread(void *opaque)
{
    Outlive *o = opaque;
    int count = 0;

    T_ASSERT_EQ(iot_bh_schedule_oneshot(o->ctx, count_cb, &count), 0);
    pthread_mutex_lock(&o->lock);
    o->stage = 1;
    pthread_cond_broadcast(&o->cond);
    while (o->stage != 2) {
        pthread_cond_wait(&o->cond, &o->lock);
    }
    pthread_mutex_unlock(&o->lock);
    /* Our queue's context is gone: posting elsewhere prunes it. */
    {
        IotCtx *other = iot_ctx_new(NULL);
        T_ASSERT(other != NULL);
        T_ASSERT_EQ(iot_bh_schedule_oneshot(other, count_cb, &count), 0);
        iot_ctx_unref(other);
    }
    return NULL;
}

static void test_thread_outlives_context(void)
{
    IotCtx *ctx = ctx_setup();
    Outlive o = { .ctx = ctx, .stage = 0 };
    pthread_t tid;

    pthread_mutex_init(&o.lock, NULL);
    pthread_cond_init(&o.cond, NULL);
    tid = start_thread(outlive_thread, &o);
    pthread_mutex_lock(&o.lock);
    while (o.stage != 1) {
        pthread_cond_wait(&o.cond, &o.lock);
    }
    pthread_mutex_unlock(&o.lock);
    ctx_teardown(ctx);
    pthread_mutex_lock(&o.lock);
    o.stage = 2;
    pthread_cond_broadcast(&o.cond);
    pthread_mutex_unlock(&o.lock);
    pthread_join(tid, NULL);
    pthread_cond_destroy(&o.cond);
    pthread_mutex_destroy(&o.lock);
}

static int count_chunks(IotPostChunk *c)
{
    int n = 0;

    for (; c; c = c->next) {
        n++;
    }
    return n;
}

static void nop_cb(void *opaque)
{
    (void)opaque;
}

/* A burst's backlog is not kept for good: at most IOT_POSTQ_KEEP drained
 * chunks wait for reuse. */
static void test_burst_memory_returned(void)
{
    IotCtx *ctx = ctx_setup();
    long n = (long)IOT_POSTQ_SLOTS * (IOT_POSTQ_KEEP * 4);
    IotPostQ *q;

    for (long i = 0; i < n; i++) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, nop_cb, NULL), 0);
    }
    while (iot_ctx_poll(ctx, false)) {
    }
    q = atomic_load(&ctx->postqs);
    T_ASSERT(q != NULL);
    T_ASSERT(count_chunks(atomic_load(&q->returned)) <= IOT_POSTQ_KEEP);
    T_ASSERT(count_chunks(q->p_free) == 0);
    ctx_teardown(ctx);
}

/* ---- out of memory ---- */

static int oom_next[2], oom_bad, bh_runs_oom;

static void oom_cb(void *opaque)
{
    int v = (int)(intptr_t)opaque, q = v / 100, i = v % 100;

    oom_bad += i != oom_next[q];
    oom_next[q] = i + 1;
}

static void oom_bh_cb(void *opaque)
{
    (void)opaque;
    bh_runs_oom++;
}

static void *oom_thread(void *opaque)
{
    IotCtx *ctx = opaque;

    for (int i = 0; i < 60; i++) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, oom_cb, (void *)(intptr_t)i),
                    0);
    }
    return NULL;
}

/* The slot array (64 slots, made with the context) cannot grow for the
 * second queue of a pass: the pass takes what fits, 64 of the 66 slots
 * (one-shots of two threads and a BH), and the rest runs in the next
 * pass, each queue in its order; the BH can be scheduled again. */
static void test_take_enomem(void)
{
    IotCtx *ctx = ctx_setup();
    IotBh *bh = iot_bh_new(ctx, oom_bh_cb, NULL);
    int first;

    oom_next[0] = oom_next[1] = oom_bad = bh_runs_oom = 0;
    pthread_join(start_thread(oom_thread, ctx), NULL);
    for (int i = 0; i < 5; i++) {
        T_ASSERT_EQ(
            iot_bh_schedule_oneshot(ctx, oom_cb, (void *)(intptr_t)(100 + i)),
            0);
    }
    iot_bh_schedule(bh);
    T_ASSERT_EQ(queue_count(ctx), 2);
    iot__postq_fail_grow_at = 2;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    first = oom_next[0] + oom_next[1] + bh_runs_oom;
    T_ASSERT_EQ(first, 64);
    T_ASSERT_EQ(iot__bh_timeout(ctx), 0); /* the rest is due */
    while (iot_ctx_poll(ctx, false)) {
    }
    T_ASSERT_EQ(oom_next[0], 60);
    T_ASSERT_EQ(oom_next[1], 5);
    T_ASSERT_EQ(oom_bad, 0);
    T_ASSERT_EQ(bh_runs_oom, 1);
    iot_bh_schedule(bh);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(bh_runs_oom, 2);
    iot_bh_delete(bh);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    ctx_teardown(ctx);
}

/* ---- out of memory for good: no queue starves ---- */

static int starve_home_runs, starve_other_runs;
static IotCtx *starve_ctx;

/* The home thread's queue: each run posts one more, so that it always
 * holds more than the pass's array can take. */
static void starve_home_cb(void *opaque)
{
    (void)opaque;
    starve_home_runs++;
    if (starve_home_runs < 2000) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(starve_ctx, starve_home_cb, NULL),
                    0);
    }
}

static void starve_other_cb(void *opaque)
{
    (void)opaque;
    starve_other_runs++;
}

static void *starve_other(void *opaque)
{
    for (int i = 0; i < 5; i++) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(opaque, starve_other_cb, NULL), 0);
    }
    return NULL;
}

/* The pass's array cannot grow at all, and the newest queue (the head of
 * the list) always has more than it holds: a pass cut short hands the
 * next one to the queues behind, which used to wait for as long as the
 * shortage lasted. */
static void test_take_enomem_no_starving(void)
{
    IotCtx *ctx = ctx_setup();

    starve_ctx = ctx;
    starve_home_runs = starve_other_runs = 0;
    pthread_join(start_thread(starve_other, ctx), NULL); /* the older queue */
    for (int i = 0; i < 100; i++) {                      /* the newer one */
        T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, starve_home_cb, NULL), 0);
    }
    iot__postq_fail_grow_at = -1;
    for (int pass = 0; pass < 3; pass++) {
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    }
    T_ASSERT_EQ(starve_other_runs, 5);
    T_ASSERT(starve_home_runs >= 64);
    iot__postq_fail_grow_at = 0;
    while (iot_ctx_poll(ctx, false)) {
    }
    T_ASSERT(starve_home_runs >= 2000); /* and the chains in flight */
    ctx_teardown(ctx);
}

int main(int argc, char **argv)
{
    t_add("/postq/fifo-across-chunks", test_fifo_across_chunks);
    t_add("/postq/lone-post-seen-by-slot", test_lone_post_seen_by_slot);
    t_add("/postq/reused-chunk-cleared", test_reused_chunk_cleared);
    t_add("/postq/busy-poll-reads-one-queue", test_busy_poll_one_queue);
    t_add("/postq/pass-takes-all", test_pass_takes_all);
    t_add("/postq/idle-bh-not-pending", test_idle_bh_not_pending);
    t_add("/postq/stream/fenced", test_stream_fenced);
    t_add("/postq/stream/bursts", test_stream_bursts);
    t_add("/postq/stream/relaxed", test_stream_relaxed);
    t_add("/postq/stream/membarrier-off", test_stream_membarrier_off);
    t_add("/postq/stream/paced", test_stream_paced);
    t_add("/postq/stream/paced/huge-window", test_stream_paced_huge_window);
    t_add("/postq/stream/paced/poll-disabled", test_stream_paced_poll_disabled);
    t_add("/postq/stream/paced/nested", test_stream_paced_nested);
    t_add("/postq/relaxed-then-block", test_relaxed_then_block);
    t_add("/postq/exited-thread", test_exited_thread);
    t_add("/postq/post-from-tsd-destructor", test_post_from_tsd_destructor);
    t_add("/postq/take-enomem", test_take_enomem);
    t_add("/postq/take-enomem/no-starving", test_take_enomem_no_starving);
    t_add("/postq/burst-memory-returned", test_burst_memory_returned);
    t_add("/postq/context-gone", test_context_gone);
    t_add("/postq/thread-outlives-context", test_thread_outlives_context);
    return t_run(argc, argv);
}
