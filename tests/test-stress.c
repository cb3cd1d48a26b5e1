/* SPDX-License-Identifier: MIT */
/*
 * Stress: many producers into one blocking loop, and handlers and timers
 * changed from other threads while the loop runs.  Quick by default (the
 * sizes shrink further under sanitizers, IOT_TEST_SLOW=1); IOT_TEST_LONG=1
 * runs ten times longer.  A lost wake-up shows up as a hang, which the
 * harness turns into a failure.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "postq.h"
#include "harness.h"

#define NPRODUCERS 4
#define NREUSED    64 /* reused BHs per producer */

static long stress_count(long quick)
{
    long n = t_scale(quick, 20);
    return t_long() ? n * 10 : n;
}

/* ---- 4 producers x N BHs, one-shot and reused, into a blocking loop ---- */

typedef struct Reused {
    IotBh *bh;
    atomic_long scheduled; /* producer: schedules handed to the loop */
    atomic_long ran;       /* loop: runs */
} Reused;

typedef struct Producer {
    IotCtx *ctx;
    long n;
    unsigned seed;
    uint8_t *oneshot_runs; /* one byte per one-shot id, loop writes */
    Reused reused[NREUSED];
    pthread_t tid;
} Producer;

static atomic_long total_runs;

static void oneshot_cb(void *opaque)
{
    uint8_t *slot = opaque;

    (*slot)++; /* home thread only */
    atomic_fetch_add_explicit(&total_runs, 1, memory_order_relaxed);
}

static void reused_cb(void *opaque)
{
    Reused *r = opaque;

    /* Release pairs with the producer's acquire: it may schedule again. */
    atomic_fetch_add_explicit(&r->ran, 1, memory_order_release);
    atomic_fetch_add_explicit(&total_runs, 1, memory_order_relaxed);
}

static void *producer_main(void *opaque)
{
    Producer *p = opaque;
    long oneshots = 0;

    for (long i = 0; i < p->n; i++) {
        if (rand_r(&p->seed) & 1) {
            T_ASSERT_EQ(iot_bh_schedule_oneshot(p->ctx, oneshot_cb,
                                                &p->oneshot_runs[oneshots]),
                        0);
            oneshots++;
            continue;
        }
        /* A reused BH whose last schedule has run, so that this schedule
         * cannot coalesce with it: every schedule must give one run. */
        for (;;) {
            Reused *r = &p->reused[rand_r(&p->seed) % NREUSED];
            long s = atomic_load_explicit(&r->scheduled, memory_order_relaxed);
            if (atomic_load_explicit(&r->ran, memory_order_acquire) == s) {
                atomic_store_explicit(&r->scheduled, s + 1,
                                      memory_order_relaxed);
                iot_bh_schedule(r->bh);
                break;
            }
        }
    }
    return NULL;
}

static void test_bh_producers(void)
{
    IotCtx *ctx = iot_ctx_new(NULL);
    long n = stress_count(1000000);
    Producer *ps = calloc(NPRODUCERS, sizeof(*ps));

    T_ASSERT(ctx && ps);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    atomic_store(&total_runs, 0);
    for (int i = 0; i < NPRODUCERS; i++) {
        ps[i].ctx = ctx;
        ps[i].n = n;
        ps[i].seed = 1234 + i;
        ps[i].oneshot_runs = calloc((size_t)n, 1);
        T_ASSERT(ps[i].oneshot_runs);
        for (int j = 0; j < NREUSED; j++) {
            ps[i].reused[j].bh = iot_bh_new(ctx, reused_cb, &ps[i].reused[j]);
        }
    }
    for (int i = 0; i < NPRODUCERS; i++) {
        T_ASSERT_EQ(pthread_create(&ps[i].tid, NULL, producer_main, &ps[i]), 0);
    }
    /* The loop blocks whenever it runs dry: producers must wake it. */
    while (atomic_load(&total_runs) < NPRODUCERS * n) {
        iot_ctx_poll(ctx, true);
    }
    for (int i = 0; i < NPRODUCERS; i++) {
        pthread_join(ps[i].tid, NULL);
    }
    /* Nothing more runs: every schedule ran exactly once. */
    while (iot_ctx_poll(ctx, false)) {
    }
    T_ASSERT_EQ(atomic_load(&total_runs), NPRODUCERS * n);
    for (int i = 0; i < NPRODUCERS; i++) {
        long oneshot_total = 0, reused_total = 0;
        for (long k = 0; k < n; k++) {
            T_ASSERT(ps[i].oneshot_runs[k] <= 1);
            oneshot_total += ps[i].oneshot_runs[k];
        }
        for (int j = 0; j < NREUSED; j++) {
            T_ASSERT_EQ(atomic_load(&ps[i].reused[j].ran),
                        atomic_load(&ps[i].reused[j].scheduled));
            reused_total += atomic_load(&ps[i].reused[j].ran);
            iot_bh_delete(ps[i].reused[j].bh);
        }
        T_ASSERT_EQ(oneshot_total + reused_total, n);
        free(ps[i].oneshot_runs);
    }
    iot_ctx_poll(ctx, false); /* frees the deleted BHs */
    free(ps);
    iot_ctx_unref(ctx);
}

/* ---- handlers and timers changed under a running loop ---- */

#define NCHURN     2
#define NCHURN_FDS 8
#define NTIMERS    32

typedef struct Churn {
    IotCtx *ctx;
    long rounds;
    unsigned seed;
    IotEvent events[NCHURN_FDS];
    atomic_long fired[NCHURN_FDS];
    pthread_t tid;
} Churn;

static atomic_int churn_done;
static atomic_long timer_fires;
static Churn *churns; /* [NCHURN], for churn_read() to find its counter */

static void churn_read(IotEvent *e)
{
    iot_event_test_and_clear(e);
    for (int i = 0; i < NCHURN; i++) {
        if (e >= churns[i].events && e < churns[i].events + NCHURN_FDS) {
            atomic_fetch_add(&churns[i].fired[e - churns[i].events], 1);
        }
    }
}

static void *churn_main(void *opaque)
{
    Churn *c = opaque;

    for (long i = 0; i < c->rounds; i++) {
        int k = rand_r(&c->seed) % NCHURN_FDS;
        if (rand_r(&c->seed) & 1) {
            T_ASSERT_EQ(iot_ctx_set_event(c->ctx, &c->events[k], churn_read,
                                          NULL, NULL),
                        0);
            iot_event_set(&c->events[k]);
        } else {
            T_ASSERT_EQ(
                iot_ctx_set_event(c->ctx, &c->events[k], NULL, NULL, NULL), 0);
        }
    }
    for (int k = 0; k < NCHURN_FDS; k++) {
        T_ASSERT_EQ(iot_ctx_set_event(c->ctx, &c->events[k], NULL, NULL, NULL),
                    0);
    }
    atomic_fetch_add(&churn_done, 1);
    iot_ctx_notify(c->ctx);
    return NULL;
}

typedef struct Rearm {
    IotCtx *ctx;
    IotTimer **timers;
    long rounds;
    pthread_t tid;
} Rearm;

static void timer_cb(void *opaque)
{
    (void)opaque;
    atomic_fetch_add_explicit(&timer_fires, 1, memory_order_relaxed);
}

static void *rearm_main(void *opaque)
{
    Rearm *r = opaque;
    unsigned seed = 99;

    for (long i = 0; i < r->rounds; i++) {
        IotTimer *t = r->timers[rand_r(&seed) % NTIMERS];
        int64_t now = iot_clock_ns(IOT_CLOCK_MONOTONIC);
        switch (rand_r(&seed) % 3) {
        case 0:
            iot_timer_mod(t, now + rand_r(&seed) % 2000000);
            break;
        case 1:
            iot_timer_mod_anticipate(t, now + rand_r(&seed) % 2000000);
            break;
        default:
            iot_timer_del(t);
        }
    }
    atomic_fetch_add(&churn_done, 1);
    iot_ctx_notify(r->ctx);
    return NULL;
}

static void test_churn(void)
{
    IotCtx *ctx = iot_ctx_new(NULL);
    long rounds = stress_count(200000);
    Churn cs[NCHURN];
    Rearm rearm = { .ctx = ctx, .rounds = rounds };
    IotTimer *timers[NTIMERS];

    T_ASSERT(ctx);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    atomic_store(&churn_done, 0);
    for (int i = 0; i < NTIMERS; i++) {
        timers[i] = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, timer_cb, NULL);
        T_ASSERT(timers[i]);
    }
    rearm.timers = timers;
    churns = cs;
    for (int i = 0; i < NCHURN; i++) {
        cs[i] = (Churn){ .ctx = ctx, .rounds = rounds / 4, .seed = 7 + i };
        for (int k = 0; k < NCHURN_FDS; k++) {
            T_ASSERT_EQ(iot_event_init(&cs[i].events[k], false), 0);
        }
        T_ASSERT_EQ(pthread_create(&cs[i].tid, NULL, churn_main, &cs[i]), 0);
    }
    T_ASSERT_EQ(pthread_create(&rearm.tid, NULL, rearm_main, &rearm), 0);

    while (atomic_load(&churn_done) < NCHURN + 1) {
        iot_ctx_poll(ctx, true);
    }
    for (int i = 0; i < NCHURN; i++) {
        pthread_join(cs[i].tid, NULL);
    }
    pthread_join(rearm.tid, NULL);

    /* The loop still works: every timer armed now fires exactly once. */
    atomic_store(&timer_fires, 0);
    for (int i = 0; i < NTIMERS; i++) {
        iot_timer_mod(timers[i], iot_clock_ns(IOT_CLOCK_MONOTONIC));
    }
    while (atomic_load(&timer_fires) < NTIMERS) {
        iot_ctx_poll(ctx, true);
    }
    while (iot_ctx_poll(ctx, false)) {
    }
    T_ASSERT_EQ(atomic_load(&timer_fires), NTIMERS);
    /* Only the context's own notifier is left. */
    T_ASSERT_EQ(atomic_load(&ctx->live_cnt), 1);

    /* And every handler installed again runs once per event: none was
     * lost or left half-installed by the churn. */
    for (int i = 0; i < NCHURN; i++) {
        for (int k = 0; k < NCHURN_FDS; k++) {
            atomic_store(&cs[i].fired[k], 0);
            T_ASSERT_EQ(iot_ctx_set_event(ctx, &cs[i].events[k], churn_read,
                                          NULL, NULL),
                        0);
            T_ASSERT_EQ(iot_event_set(&cs[i].events[k]), 0);
        }
    }
    for (int i = 0; i < NCHURN; i++) {
        for (int k = 0; k < NCHURN_FDS; k++) {
            while (atomic_load(&cs[i].fired[k]) == 0) {
                iot_ctx_poll(ctx, true);
            }
        }
    }
    while (iot_ctx_poll(ctx, false)) {
    }
    for (int i = 0; i < NCHURN; i++) {
        for (int k = 0; k < NCHURN_FDS; k++) {
            T_ASSERT_EQ(atomic_load(&cs[i].fired[k]), 1);
            T_ASSERT_EQ(
                iot_ctx_set_event(ctx, &cs[i].events[k], NULL, NULL, NULL), 0);
        }
    }

    for (int i = 0; i < NTIMERS; i++) {
        iot_timer_free(timers[i]);
    }
    for (int i = 0; i < NCHURN; i++) {
        for (int k = 0; k < NCHURN_FDS; k++) {
            iot_event_cleanup(&cs[i].events[k]);
        }
    }
    iot_ctx_unref(ctx);
}

/* ---- short-lived producer threads into a running IOThread ---- */

#define WAVE 4 /* threads alive at once */

typedef struct PChurn {
    IotCtx *ctx;
    long per_thread;
    atomic_long ran;
} PChurn;

static void pchurn_post_cb(void *opaque)
{
    atomic_fetch_add_explicit(&((PChurn *)opaque)->ran, 1,
                              memory_order_relaxed);
}

static void *pchurn_producer(void *opaque)
{
    PChurn *c = opaque;

    for (long i = 0; i < c->per_thread; i++) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(c->ctx, pchurn_post_cb, c), 0);
    }
    return NULL; /* its queue is orphaned here, mid-stream */
}

typedef struct QueueCount {
    IotCtx *ctx;
    atomic_int n; /* -1 until the BH ran */
} QueueCount;

static void count_queues_cb(void *opaque)
{
    QueueCount *qc = opaque;
    int n = 0;

    for (IotPostQ *q = atomic_load(&qc->ctx->postqs); q;
         q = atomic_load(&q->next)) {
        n++;
    }
    atomic_store(&qc->n, n);
}

/* Threads that post a stream and exit, a few at a time, while the IOThread
 * takes from their queues and reaps them: every post runs once, and no
 * queue of an exited thread is left (LSan and TSan watch the rest). */
static void test_producer_churn(void)
{
    IotThread *t = iot_thread_new("churn", NULL, NULL);
    PChurn c = { .per_thread = stress_count(2000) };
    long threads = t_scale(64, 4);
    QueueCount qc;

    T_ASSERT(t != NULL);
    c.ctx = iot_thread_ctx(t);
    atomic_init(&c.ran, 0);
    for (long k = 0; k < threads; k += WAVE) {
        pthread_t tid[WAVE];
        for (int i = 0; i < WAVE; i++) {
            T_ASSERT_EQ(pthread_create(&tid[i], NULL, pchurn_producer, &c), 0);
        }
        for (int i = 0; i < WAVE; i++) {
            pthread_join(tid[i], NULL);
        }
    }
    while (atomic_load(&c.ran) < c.per_thread * threads) {
        sched_yield();
    }
    T_ASSERT_EQ(atomic_load(&c.ran), c.per_thread * threads);
    /* Only this thread's queue remains once the loop has looked again. */
    for (;;) {
        qc = (QueueCount){ .ctx = c.ctx };
        atomic_init(&qc.n, -1);
        T_ASSERT_EQ(iot_bh_schedule_oneshot(c.ctx, count_queues_cb, &qc), 0);
        while (atomic_load(&qc.n) < 0) {
            sched_yield();
        }
        if (atomic_load(&qc.n) <= 1) {
            break;
        }
    }
    T_ASSERT_EQ(iot_thread_destroy(t, NULL), 0);
}

int main(int argc, char **argv)
{
    t_add("/stress/bh/4-producers", test_bh_producers);
    t_add("/stress/churn/handlers-and-timers", test_churn);
    t_add("/stress/bh/short-lived-producers", test_producer_churn);
    return t_run(argc, argv);
}
