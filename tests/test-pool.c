/* SPDX-License-Identifier: MIT */
/*
 * The per-context thread pool: section 5 of the specification, the rows
 * of its section 7.3 checklist, and the library's own promises on top of
 * them (FIFO completions, thread-pool-min kept warm, sizes applied at once
 * to a running pool, nested polls from completions, the outstanding-work
 * abort).
 *
 * Every case makes its own context the calling thread's current one
 * (submission and polling are home-thread only) and lets every completion
 * run before dropping it: the last unref frees the pool, waits for its
 * workers, and aborts if a request is still outstanding.
 *
 * Waiting: work functions call iot_ctx_notify() after they have recorded
 * that they ran, and completions are BHs, so most conditions are awaited
 * with plain blocking polls.  Worker start-up and exit wake nobody; those
 * few waits poll with a short timer tick.  Every wait has a generous
 * deadline (a guard timer) so that a lost wake-up fails with a message
 * instead of running into the harness's time limit.  Work that must stay
 * busy blocks on a gate the test opens, never on a sleep.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "harness.h"

/* ---- helpers ---- */

#define WAIT_LIMIT_NS (30 * IOT_NS_PER_S)
#define TICK_NS       (2 * IOT_NS_PER_MS)

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
    /* Accept whatever notification creating it may have left. */
    iot_ctx_poll(ctx, false);
    return ctx;
}

/* Every completion has run. */
static void ctx_teardown(IotCtx *ctx)
{
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
}

static IotPoolStats pool_stats(IotCtx *ctx)
{
    IotPoolStats s;

    iot_ctx_pool_stats(ctx, &s);
    return s;
}

static void tick_cb(void *opaque)
{
    (void)opaque;
}

/*
 * Polls @ctx (blocking) until a condition holds.  @tick_ns 0: the
 * condition comes with a wake-up (a BH or an iot_ctx_notify()); otherwise
 * a timer wakes the loop every @tick_ns to look again.  Either way a guard
 * timer ends the wait with a failure after WAIT_LIMIT_NS.
 */
typedef struct Waiter {
    IotCtx *ctx;
    IotTimer *timer;
    int64_t tick_ns, deadline;
    const char *what, *file;
    int line;
} Waiter;

static void waiter_init(Waiter *w, IotCtx *ctx, int64_t tick_ns,
                        const char *what, const char *file, int line)
{
    *w = (Waiter){ .ctx = ctx,
                   .tick_ns = tick_ns,
                   .deadline = t_now_ns() + WAIT_LIMIT_NS,
                   .what = what,
                   .file = file,
                   .line = line };
    w->timer = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, tick_cb, NULL);
    if (!w->timer) {
        t_fail(file, line, "iot_timer_new failed");
    }
    if (!tick_ns) {
        iot_timer_mod(w->timer, w->deadline);
    }
}

static void waiter_poll(Waiter *w)
{
    int64_t now = t_now_ns();

    if (now >= w->deadline) {
        t_fail(w->file, w->line, "timed out waiting for %s", w->what);
    }
    if (w->tick_ns && !iot_timer_pending(w->timer)) {
        int64_t next = now + w->tick_ns;
        iot_timer_mod(w->timer, next < w->deadline ? next : w->deadline);
    }
    iot_ctx_poll(w->ctx, true);
}

#define POLL_UNTIL_TICK(ctx, cond, tick)                                       \
    do {                                                                       \
        Waiter w_;                                                             \
        waiter_init(&w_, (ctx), (tick), #cond, __FILE__, __LINE__);            \
        while (!(cond)) {                                                      \
            waiter_poll(&w_);                                                  \
        }                                                                      \
        iot_timer_free(w_.timer);                                              \
    } while (0)

#define POLL_UNTIL(ctx, cond) POLL_UNTIL_TICK(ctx, cond, 0)

/* Polls for about @ns with nothing to wait for: only where a property
 * must keep holding (nothing may happen), never to let something happen. */
static void poll_for(IotCtx *ctx, int64_t ns)
{
    int64_t end = t_now_ns() + ns;
    IotTimer *t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, tick_cb, NULL);

    T_ASSERT(t != NULL);
    while (t_now_ns() < end) {
        iot_timer_mod(t, end);
        iot_ctx_poll(ctx, true);
    }
    iot_timer_free(t);
}

/* T_ASSERT* from any thread ends the case: t_fail() exits the process. */
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

/* A gate that work waits on until the test opens it. */
typedef struct Gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
} Gate;

static void gate_init(Gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = false;
}

static void gate_wait(Gate *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->open) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(Gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/*
 * One context's bookkeeping, and one job: the work records that it ran,
 * wakes the loop, optionally posts a semaphore when it starts, waits on a
 * gate, posts a semaphore when it ends, and returns its index.  The
 * completion checks that it runs on the home thread, once.
 */
typedef struct Run {
    IotCtx *ctx;
    pthread_t home;
    atomic_int started;   /* work functions entered */
    atomic_int completed; /* completions run */
    int *order;           /* if set, completion order (indices) */
    int norder;
} Run;

typedef struct Job {
    Run *run;
    int idx;
    Gate *gate;          /* wait on it while running */
    sem_t *on_start;     /* posted when the work starts */
    sem_t *on_end;       /* posted when the work is about to return */
    IotWorkDoneFunc *cb; /* extra completion hook, after the bookkeeping */
    atomic_int ran;      /* times the work ran */
    atomic_int done;     /* times the completion ran */
    int ret;             /* what the completion got */
    IotWork *work;
} Job;

static void run_init(Run *r, IotCtx *ctx)
{
    *r = (Run){ .ctx = ctx, .home = pthread_self() };
}

static int job_work(void *arg)
{
    Job *j = arg;

    atomic_fetch_add(&j->ran, 1);
    atomic_fetch_add(&j->run->started, 1);
    iot_ctx_notify(j->run->ctx);
    if (j->on_start) {
        sem_post(j->on_start);
    }
    if (j->gate) {
        gate_wait(j->gate);
    }
    if (j->on_end) {
        sem_post(j->on_end);
    }
    return j->idx;
}

static void job_done(void *opaque, int ret)
{
    Job *j = opaque;
    Run *r = j->run;

    T_ASSERT(pthread_equal(pthread_self(), r->home));
    T_ASSERT(iot_ctx_current() == r->ctx);
    T_ASSERT_EQ(atomic_fetch_add(&j->done, 1), 0);
    j->ret = ret;
    if (r->order) {
        r->order[r->norder++] = j->idx;
    }
    atomic_fetch_add(&r->completed, 1);
    if (j->cb) {
        j->cb(j, ret);
    }
}

static void job_init(Job *j, Run *r, int idx)
{
    *j = (Job){ .run = r, .idx = idx };
}

static void job_submit(Job *j)
{
    j->work = iot_pool_submit(j->run->ctx, job_work, j, job_done, j);
    T_ASSERT(j->work != NULL);
}

/* Starts @n workers (the caller has set min to @n) and waits until they
 * are all idle, so that later work starts without the loop's help: a
 * case can then let work run and finish without polling, and know that
 * its completion has not run. */
static void warm_up(IotCtx *ctx, unsigned n)
{
    Run wr;
    Job warm;

    run_init(&wr, ctx);
    job_init(&warm, &wr, 1000);
    job_submit(&warm);
    POLL_UNTIL(ctx, atomic_load(&warm.done) == 1);
    T_ASSERT_EQ(warm.ret, 1000);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).idle == n, TICK_NS);
}

/*
 * The cancel accounting of section 7.3: every completion ran once; a job
 * that got -ECANCELED never ran ("never started but not cancelled" is a
 * job that did not run yet completed with something else); a job that ran
 * completed with its own return value ("cancelled while running" would be
 * -ECANCELED after running).  Returns the number cancelled.
 */
static int check_cancel_accounting(Job *jobs, int n)
{
    int cancelled = 0;

    for (int i = 0; i < n; i++) {
        Job *j = &jobs[i];

        T_ASSERT_EQ(atomic_load(&j->done), 1);
        if (j->ret == -ECANCELED) {
            T_ASSERT_EQ(atomic_load(&j->ran), 0);
            cancelled++;
        } else {
            T_ASSERT_EQ(atomic_load(&j->ran), 1);
            T_ASSERT_EQ(j->ret, j->idx);
        }
    }
    return cancelled;
}

/* ---- /thread-pool/submit-no-complete ---- */

static atomic_int side_effect;

static int set_side_effect(void *arg)
{
    (void)arg;
    atomic_fetch_add(&side_effect, 1);
    return 0;
}

/* Work with a NULL completion runs; its item is still freed by the done
 * BH, so unref must not report it outstanding.  The pool has one worker so
 * that a later job's completion proves the first item went through the
 * done BH too (completions run in the order the work finished). */
static void test_submit_no_complete(void)
{
    IotCtx *ctx = ctx_setup();
    Run r;
    Job barrier;

    run_init(&r, ctx);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 1), 0);
    T_ASSERT(iot_pool_submit(ctx, set_side_effect, NULL, NULL, NULL) != NULL);
    /* The done BH is scheduled after the side effect: no tick needed. */
    POLL_UNTIL(ctx, atomic_load(&side_effect) == 1 &&
                        pool_stats(ctx).queued == 0 &&
                        pool_stats(ctx).active == 0);
    for (int i = 0; i < 3; i++) {
        iot_ctx_poll(ctx, false);
    }

    job_init(&barrier, &r, 7);
    job_submit(&barrier);
    POLL_UNTIL(ctx, atomic_load(&barrier.done) == 1);
    T_ASSERT_EQ(barrier.ret, 7);
    T_ASSERT_EQ(atomic_load(&side_effect), 1);
    /* No function: refused here, not called (NULL) by a worker. */
    errno = 0;
    T_ASSERT(iot_pool_submit(ctx, NULL, NULL, NULL, NULL) == NULL);
    T_ASSERT_EQ(errno, EINVAL);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/submit-aio ---- */

static pthread_t aio_worker;
static atomic_int aio_ran;

static int aio_work(void *arg)
{
    sem_t *sem = arg;

    aio_worker = pthread_self();
    atomic_fetch_add(&aio_ran, 1);
    sem_post(sem);
    return 0;
}

static int aio_done_n, aio_ret = 1234;
static pthread_t aio_done_thread;

static void aio_done(void *opaque, int ret)
{
    T_ASSERT(opaque == &aio_done_n);
    aio_done_n++;
    aio_ret = ret;
    aio_done_thread = pthread_self();
}

static void test_submit_aio(void)
{
    IotCtx *ctx = ctx_setup();
    pthread_t home = pthread_self();
    sem_t sem;
    IotWork *w;

    sem_init(&sem, 0, 0);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 1), 0);
    warm_up(ctx, 1);
    w = iot_pool_submit(ctx, aio_work, &sem, aio_done, &aio_done_n);
    T_ASSERT(w != NULL);
    T_ASSERT_EQ(aio_done_n, 0);

    /* The worker is there: wait (without polling) for the work to have
     * run.  Its completion must still wait for the loop. */
    sem_wait(&sem);
    T_ASSERT_EQ(atomic_load(&aio_ran), 1);
    T_ASSERT_EQ(aio_done_n, 0);
    POLL_UNTIL(ctx, aio_done_n == 1);
    T_ASSERT_EQ(aio_done_n, 1);
    T_ASSERT_EQ(aio_ret, 0);
    T_ASSERT_EQ(atomic_load(&aio_ran), 1);
    T_ASSERT(pthread_equal(aio_done_thread, home));
    T_ASSERT(!pthread_equal(aio_worker, home));

    for (int i = 0; i < 3; i++) {
        iot_ctx_poll(ctx, false);
    }
    T_ASSERT_EQ(aio_done_n, 1);
    T_ASSERT_EQ(atomic_load(&aio_ran), 1);
    sem_destroy(&sem);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/submit-many ---- */

static void many_done(void *opaque, int ret)
{
    Job *j = opaque;
    IotPoolStats s = pool_stats(j->run->ctx);

    (void)ret;
    /* max is fixed at 4 in this case: never more workers. */
    T_ASSERT(s.threads <= 4);
}

static void test_submit_many(void)
{
    enum { N = 100 };
    IotCtx *ctx = ctx_setup();
    Run r;
    static Job jobs[N];
    int64_t min, max;

    run_init(&r, ctx);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 4), 0);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, 0);
    T_ASSERT_EQ(max, 4);
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], &r, i);
        jobs[i].cb = many_done;
        job_submit(&jobs[i]);
        T_ASSERT(pool_stats(ctx).threads <= 4);
    }
    POLL_UNTIL(ctx, atomic_load(&r.completed) == N);
    for (int i = 0; i < N; i++) {
        T_ASSERT_EQ(atomic_load(&jobs[i].ran), 1);
        T_ASSERT_EQ(atomic_load(&jobs[i].done), 1);
        T_ASSERT_EQ(jobs[i].ret, i);
    }
    for (int i = 0; i < 3; i++) {
        iot_ctx_poll(ctx, false);
    }
    T_ASSERT_EQ(atomic_load(&r.completed), N);
    T_ASSERT(pool_stats(ctx).threads <= 4);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/cancel ---- */

/* Fill a pool of 4 with work blocked on a gate, queue 100 more, cancel all
 * 104: the 4 running ones finish with their own value, the 100 queued
 * ones get -ECANCELED, before the running ones are let go. */
static void test_cancel(void)
{
    enum { BUSY = 4, QUEUED = 100, N = BUSY + QUEUED };
    IotCtx *ctx = ctx_setup();
    static Job jobs[N];
    Gate gate;
    Run r;
    IotPoolStats s;

    run_init(&r, ctx);
    gate_init(&gate);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, BUSY), 0);
    for (int i = 0; i < BUSY; i++) {
        job_init(&jobs[i], &r, i);
        jobs[i].gate = &gate;
        job_submit(&jobs[i]);
    }
    POLL_UNTIL(ctx, atomic_load(&r.started) == BUSY);
    for (int i = BUSY; i < N; i++) {
        job_init(&jobs[i], &r, i);
        jobs[i].gate = &gate;
        job_submit(&jobs[i]);
    }
    s = pool_stats(ctx);
    T_ASSERT_EQ(s.threads, BUSY);
    T_ASSERT_EQ(s.active, BUSY);
    T_ASSERT_EQ(s.queued, QUEUED);

    for (int i = 0; i < N; i++) {
        iot_pool_cancel(jobs[i].work);
    }
    /* Completions run later, from the loop. */
    T_ASSERT_EQ(atomic_load(&r.completed), 0);
    s = pool_stats(ctx);
    T_ASSERT_EQ(s.queued, 0);
    T_ASSERT_EQ(s.active, BUSY);

    /* The cancelled ones complete while the running ones still block. */
    POLL_UNTIL(ctx, atomic_load(&r.completed) == QUEUED);
    for (int i = 0; i < BUSY; i++) {
        T_ASSERT_EQ(atomic_load(&jobs[i].done), 0);
    }
    gate_open(&gate);
    POLL_UNTIL(ctx, atomic_load(&r.completed) == N);

    T_ASSERT_EQ(check_cancel_accounting(jobs, N), QUEUED);
    for (int i = 0; i < BUSY; i++) {
        T_ASSERT_EQ(jobs[i].ret, i);
    }
    T_ASSERT_EQ(atomic_load(&r.started), BUSY);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/cancel-async ---- */

enum { CA_BUSY = 3, CA_QUEUED = 100, CA_N = CA_BUSY + 1 + CA_QUEUED };
static Job ca_jobs[CA_N];
static int ca_cancelled_in_cb;

/* The trigger's completion cancels everybody else, from the loop. */
static void ca_trigger_done(void *opaque, int ret)
{
    Job *trigger = opaque;
    int before = atomic_load(&trigger->run->completed);

    T_ASSERT_EQ(ret, trigger->idx);
    for (int i = 0; i < CA_N; i++) {
        if (&ca_jobs[i] != trigger) {
            iot_pool_cancel(ca_jobs[i].work);
            ca_cancelled_in_cb++;
        }
    }
    /* Not synchronously, not even from inside a completion. */
    T_ASSERT_EQ(atomic_load(&trigger->run->completed), before);
}

static void test_cancel_async(void)
{
    IotCtx *ctx = ctx_setup();
    Gate gate, trigger_gate;
    Job *trigger = &ca_jobs[CA_BUSY];
    Run r;
    int cancelled;

    run_init(&r, ctx);
    gate_init(&gate);
    gate_init(&trigger_gate);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, CA_BUSY + 1), 0);
    for (int i = 0; i < CA_BUSY; i++) {
        job_init(&ca_jobs[i], &r, i);
        ca_jobs[i].gate = &gate;
        job_submit(&ca_jobs[i]);
    }
    job_init(trigger, &r, CA_BUSY);
    trigger->gate = &trigger_gate;
    trigger->cb = ca_trigger_done;
    job_submit(trigger);
    POLL_UNTIL(ctx, atomic_load(&r.started) == CA_BUSY + 1);
    for (int i = CA_BUSY + 1; i < CA_N; i++) {
        job_init(&ca_jobs[i], &r, i);
        ca_jobs[i].gate = &gate;
        job_submit(&ca_jobs[i]);
    }
    T_ASSERT_EQ(pool_stats(ctx).queued, CA_QUEUED);

    /* The trigger's worker finishes and (maybe) picks up the first queued
     * job, which then blocks on the gate: at most one of the queued jobs
     * is running when the trigger's completion cancels. */
    gate_open(&trigger_gate);
    POLL_UNTIL(ctx, atomic_load(&trigger->done) == 1);
    T_ASSERT_EQ(ca_cancelled_in_cb, CA_N - 1);
    POLL_UNTIL(ctx, atomic_load(&r.completed) >= CA_QUEUED);
    gate_open(&gate);
    POLL_UNTIL(ctx, atomic_load(&r.completed) == CA_N);

    cancelled = check_cancel_accounting(ca_jobs, CA_N);
    T_ASSERT(cancelled == CA_QUEUED || cancelled == CA_QUEUED - 1);
    for (int i = 0; i <= CA_BUSY; i++) {
        T_ASSERT_EQ(ca_jobs[i].ret, i);
    }
    ctx_teardown(ctx);
}

/* ---- /thread-pool/cancel-after-finish, cancel-twice ---- */

/* Work that has finished, but whose completion has not run, is not
 * cancelled: it completes with its own value. */
static void test_cancel_after_finish(void)
{
    IotCtx *ctx = ctx_setup();
    Job j;
    Run r;
    sem_t end;

    run_init(&r, ctx);
    sem_init(&end, 0, 0);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 1), 0);
    warm_up(ctx, 1);
    job_init(&j, &r, 42);
    j.on_end = &end;
    job_submit(&j);
    sem_wait(&end);
    /* The worker marks the work done (active 0) before handing it to the
     * loop; wait for that without polling. */
    while (pool_stats(ctx).active != 0 || pool_stats(ctx).queued != 0) {
        sched_yield();
    }
    T_ASSERT_EQ(atomic_load(&j.done), 0);
    iot_pool_cancel(j.work);
    iot_pool_cancel(j.work);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    T_ASSERT_EQ(j.ret, 42);
    T_ASSERT_EQ(atomic_load(&j.ran), 1);
    for (int i = 0; i < 3; i++) {
        iot_ctx_poll(ctx, false);
    }
    T_ASSERT_EQ(atomic_load(&j.done), 1);
    sem_destroy(&end);
    ctx_teardown(ctx);
}

/* Cancelling a queued job twice completes it once, with -ECANCELED. */
static void test_cancel_twice(void)
{
    IotCtx *ctx = ctx_setup();
    Job busy, queued;
    Gate gate;
    Run r;

    run_init(&r, ctx);
    gate_init(&gate);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 1), 0);
    job_init(&busy, &r, 1);
    busy.gate = &gate;
    job_submit(&busy);
    POLL_UNTIL(ctx, atomic_load(&r.started) == 1);
    job_init(&queued, &r, 2);
    job_submit(&queued);
    iot_pool_cancel(queued.work);
    iot_pool_cancel(queued.work);
    iot_pool_cancel(busy.work);
    iot_pool_cancel(busy.work);
    POLL_UNTIL(ctx, atomic_load(&queued.done) == 1);
    T_ASSERT_EQ(queued.ret, -ECANCELED);
    T_ASSERT_EQ(atomic_load(&busy.done), 0);
    gate_open(&gate);
    POLL_UNTIL(ctx, atomic_load(&busy.done) == 1);
    T_ASSERT_EQ(busy.ret, 1);
    for (int i = 0; i < 3; i++) {
        iot_ctx_poll(ctx, false);
    }
    T_ASSERT_EQ(atomic_load(&queued.done), 1);
    T_ASSERT_EQ(atomic_load(&queued.ran), 0);
    T_ASSERT_EQ(atomic_load(&r.completed), 2);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/cancel-racing ---- */

/* Cancel while the workers are racing through short jobs: whatever state
 * each job was in, the accounting holds. */
static void test_cancel_racing(void)
{
    enum { ROUNDS = 20, N = 200 };
    IotCtx *ctx = ctx_setup();
    static Job jobs[N];
    Run r;

    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 2, 4), 0);
    for (int round = 0; round < t_scale(ROUNDS, 4); round++) {
        run_init(&r, ctx);
        for (int i = 0; i < N; i++) {
            job_init(&jobs[i], &r, i);
            job_submit(&jobs[i]);
        }
        /* Let the workers get going, without running completions (a
         * cancel is only valid before the completion). */
        for (int i = 0; i < round * 5 && atomic_load(&r.started) < N; i++) {
            sched_yield();
        }
        for (int i = N - 1; i >= 0; i--) {
            iot_pool_cancel(jobs[i].work);
        }
        POLL_UNTIL(ctx, atomic_load(&r.completed) == N);
        check_cancel_accounting(jobs, N);
    }
    ctx_teardown(ctx);
}

/* ---- /thread-pool/busy-no-lock ---- */

/*
 * While every worker is busy, the hand-off takes no pool lock: with the
 * lock held by the test, the home thread submits (past the ring's first
 * size, so it grows) and cancels work, and the workers claim and run all
 * of it.  Were any of that to take the lock, the case would hang and fail
 * on the harness's time limit (or on its own deadline, for the workers).
 */
static void test_busy_no_lock(void)
{
    enum { BUSY = 2, N = 1000, CANCELLED = (N + 2) / 3 };
    IotCtx *ctx = ctx_setup();
    static Job busy[BUSY], jobs[N];
    int64_t deadline = t_now_ns() + WAIT_LIMIT_NS;
    Gate gate;
    Run r;

    iot__pool_idle_ns = 3600 * IOT_NS_PER_S;
    run_init(&r, ctx);
    gate_init(&gate);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, BUSY, BUSY), 0);
    warm_up(ctx, BUSY);
    for (int i = 0; i < BUSY; i++) {
        job_init(&busy[i], &r, N + i);
        busy[i].gate = &gate;
        job_submit(&busy[i]);
    }
    POLL_UNTIL(ctx, atomic_load(&r.started) == BUSY);

    iot__pool_lock_for_test(ctx, true);
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], &r, i);
        job_submit(&jobs[i]);
    }
    T_ASSERT_EQ(iot__pool_queued(ctx), N);
    for (int i = 0; i < N; i += 3) {
        iot_pool_cancel(jobs[i].work);
    }
    T_ASSERT_EQ(iot__pool_queued(ctx), N - CANCELLED);
    gate_open(&gate);
    while (atomic_load(&r.started) < BUSY + N - CANCELLED) {
        if (t_now_ns() > deadline) {
            t_fail(__FILE__, __LINE__, "workers stuck: %d of %d started",
                   atomic_load(&r.started), BUSY + N - CANCELLED);
        }
        sched_yield();
    }
    iot__pool_lock_for_test(ctx, false);

    POLL_UNTIL(ctx, atomic_load(&r.completed) == BUSY + N);
    T_ASSERT_EQ(check_cancel_accounting(jobs, N), CANCELLED);
    for (int i = 0; i < N; i++) {
        T_ASSERT_EQ(jobs[i].ret == -ECANCELED, i % 3 == 0);
    }
    ctx_teardown(ctx);
}

/* ---- /thread-pool/timeout-race ---- */

/*
 * The only worker's idle timeout expires just as work is submitted: it
 * has left the idle stack, so the submitter sees no idle worker and a
 * full pool (1 of 1) and takes no lock.  The worker must see the work
 * and stay: were it to exit, nothing would run the work.  The hook holds
 * the worker at that point while the home thread submits.
 */
static sem_t tr_at_timeout, tr_submitted;

static void tr_hook(void)
{
    atomic_store(&iot__pool_timeout_hook, NULL);
    sem_post(&tr_at_timeout);
    sem_wait(&tr_submitted);
}

static void test_timeout_race(void)
{
    IotCtx *ctx = ctx_setup();
    struct timespec ts;
    Job j;
    Run r;

    iot__pool_idle_ns = 20 * IOT_NS_PER_MS;
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 1), 0);
    warm_up(ctx, 1);
    sem_init(&tr_at_timeout, 0, 0);
    sem_init(&tr_submitted, 0, 0);
    atomic_store(&iot__pool_timeout_hook, tr_hook);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_LIMIT_NS / IOT_NS_PER_S;
    T_ASSERT_EQ(sem_timedwait(&tr_at_timeout, &ts), 0);

    run_init(&r, ctx);
    job_init(&j, &r, 7);
    job_submit(&j);
    sem_post(&tr_submitted);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    T_ASSERT_EQ(j.ret, 7);
    T_ASSERT_EQ(pool_stats(ctx).threads, 1);
    sem_destroy(&tr_at_timeout);
    sem_destroy(&tr_submitted);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/completion-order ---- */

/* One worker: the work finishes in submission order, and so must the
 * completions run, also when many are handed over in one batch. */
static void test_completion_order(void)
{
    enum { N = 50 };
    IotCtx *ctx = ctx_setup();
    static Job jobs[N];
    int order[N];
    Gate gate;
    sem_t last;
    Run r;

    run_init(&r, ctx);
    r.order = order;
    gate_init(&gate);
    sem_init(&last, 0, 0);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 1), 0);
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], &r, i);
    }
    jobs[0].gate = &gate;
    jobs[N - 1].on_end = &last;
    job_submit(&jobs[0]);
    POLL_UNTIL(ctx, atomic_load(&r.started) == 1);
    for (int i = 1; i < N; i++) {
        job_submit(&jobs[i]);
    }
    gate_open(&gate);
    /* All the work finishes before the loop looks: one big batch. */
    sem_wait(&last);
    POLL_UNTIL(ctx, atomic_load(&r.completed) == N);
    T_ASSERT_EQ(r.norder, N);
    for (int i = 0; i < N; i++) {
        T_ASSERT_EQ(order[i], i);
        T_ASSERT_EQ(jobs[i].ret, i);
    }

    /* And one at a time: submit, complete, submit... */
    run_init(&r, ctx);
    r.order = order;
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], &r, i);
        job_submit(&jobs[i]);
        if (i % 7 == 0) {
            iot_ctx_poll(ctx, false);
        }
    }
    POLL_UNTIL(ctx, atomic_load(&r.completed) == N);
    for (int i = 0; i < N; i++) {
        T_ASSERT_EQ(order[i], i);
    }
    sem_destroy(&last);
    ctx_teardown(ctx);
}

/* Once every completion of a batch has run, the loop has nothing left to
 * do: the done BH that a completion with others behind it reschedules
 * (for nested polls) is cancelled again after the callback returns, as
 * in section 5 ("reschedule the BH first; call cb; cancel the BH"), so a
 * non-blocking poll reports no progress. */
static void test_no_spurious_progress(void)
{
    enum { N = 5 };
    IotCtx *ctx = ctx_setup();
    static Job jobs[N + 1];
    sem_t sentinel_started;
    Gate gate;
    Run r;

    run_init(&r, ctx);
    sem_init(&sentinel_started, 0, 0);
    gate_init(&gate);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 1), 0);
    warm_up(ctx, 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* One job: one completion, then nothing. */
    job_init(&jobs[0], &r, 0);
    job_submit(&jobs[0]);
    POLL_UNTIL(ctx, atomic_load(&jobs[0].done) == 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* Several handed over together: one batch, then nothing.  The one
     * worker has handed over the N jobs once it starts the sentinel,
     * which then blocks until the batch has been checked. */
    run_init(&r, ctx);
    for (int i = 0; i <= N; i++) {
        job_init(&jobs[i], &r, i);
    }
    jobs[N].on_start = &sentinel_started;
    jobs[N].gate = &gate;
    for (int i = 0; i <= N; i++) {
        job_submit(&jobs[i]);
    }
    sem_wait(&sentinel_started);
    POLL_UNTIL(ctx, atomic_load(&r.completed) == N);
    T_ASSERT_EQ(atomic_load(&jobs[N].done), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    gate_open(&gate);
    POLL_UNTIL(ctx, atomic_load(&jobs[N].done) == 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    sem_destroy(&sentinel_started);
    ctx_teardown(ctx);
}

/* Two workers finishing out of submission order: completions follow the
 * order the work finished in, not the order it was submitted in. */
static void test_completion_order_finish(void)
{
    IotCtx *ctx = ctx_setup();
    Job a, b;
    Gate gate_a;
    int order[2];
    Run r;

    run_init(&r, ctx);
    r.order = order;
    gate_init(&gate_a);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 2), 0);
    job_init(&a, &r, 0);
    a.gate = &gate_a;
    job_init(&b, &r, 1);
    job_submit(&a);
    job_submit(&b);
    POLL_UNTIL(ctx, atomic_load(&b.done) == 1);
    T_ASSERT_EQ(atomic_load(&a.done), 0);
    gate_open(&gate_a);
    POLL_UNTIL(ctx, atomic_load(&a.done) == 1);
    T_ASSERT_EQ(r.norder, 2);
    T_ASSERT_EQ(order[0], 1);
    T_ASSERT_EQ(order[1], 0);
    T_ASSERT_EQ(a.ret, 0);
    T_ASSERT_EQ(b.ret, 1);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/min-threads ---- */

static void test_min_threads(void)
{
    enum { BURST = 8 };
    IotCtx *ctx = ctx_setup();
    static Job jobs[1 + BURST];
    Gate gate;
    Run r;
    IotPoolStats s;

    /* Set before any worker exists: workers read it without a lock. */
    iot__pool_idle_ns = 20 * IOT_NS_PER_MS;
    run_init(&r, ctx);
    gate_init(&gate);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 3, 8), 0);
    /* No pool yet. */
    s = pool_stats(ctx);
    T_ASSERT_EQ(s.threads, 0);
    T_ASSERT_EQ(s.idle, 0);

    job_init(&jobs[0], &r, 0);
    job_submit(&jobs[0]);
    /* Workers being started count too: min is there at once. */
    T_ASSERT(pool_stats(ctx).threads >= 3);
    POLL_UNTIL(ctx, atomic_load(&jobs[0].done) == 1);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).idle == 3, TICK_NS);
    T_ASSERT_EQ(pool_stats(ctx).threads, 3);

    /* A burst of 8 jobs that block: 8 workers. */
    for (int i = 1; i <= BURST; i++) {
        job_init(&jobs[i], &r, i);
        jobs[i].gate = &gate;
        job_submit(&jobs[i]);
    }
    POLL_UNTIL(ctx, atomic_load(&r.started) == 1 + BURST);
    s = pool_stats(ctx);
    T_ASSERT_EQ(s.threads, BURST);
    T_ASSERT_EQ(s.active, BURST);
    gate_open(&gate);
    POLL_UNTIL(ctx, atomic_load(&r.completed) == 1 + BURST);

    /* The five above min time out and exit; min stays. */
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).threads == 3, TICK_NS);
    poll_for(ctx, 10 * iot__pool_idle_ns);
    s = pool_stats(ctx);
    T_ASSERT_EQ(s.threads, 3);
    T_ASSERT_EQ(s.idle, 3);
    T_ASSERT_EQ(s.queued, 0);
    T_ASSERT_EQ(s.active, 0);
    for (int i = 0; i <= BURST; i++) {
        T_ASSERT_EQ(atomic_load(&jobs[i].done), 1);
        T_ASSERT_EQ(jobs[i].ret, i);
    }
    ctx_teardown(ctx);
}

/* With min 0, every worker times out; the next submit starts one again. */
static void test_idle_exit_respawn(void)
{
    IotCtx *ctx = ctx_setup();
    Job a, b;
    Run r;

    iot__pool_idle_ns = 20 * IOT_NS_PER_MS;
    run_init(&r, ctx);
    job_init(&a, &r, 1);
    job_submit(&a);
    POLL_UNTIL(ctx, atomic_load(&a.done) == 1);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).threads == 0, TICK_NS);
    job_init(&b, &r, 2);
    job_submit(&b);
    T_ASSERT_EQ(pool_stats(ctx).threads, 1);
    POLL_UNTIL(ctx, atomic_load(&b.done) == 1);
    T_ASSERT_EQ(b.ret, 2);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/resize-under-load ---- */

typedef struct PJob {
    long idx;
    atomic_int ran;
    int done;
} PJob;

static IotCtx *rs_ctx;
static pthread_t rs_home;
static atomic_bool rs_stop;
static atomic_long rs_submitted, rs_completed;

static int pjob_work(void *arg)
{
    PJob *j = arg;

    atomic_fetch_add(&j->ran, 1);
    sched_yield();
    return (int)(j->idx & INT_MAX);
}

static void pjob_submit(void);

static void pjob_done(void *opaque, int ret)
{
    PJob *j = opaque;

    T_ASSERT(pthread_equal(pthread_self(), rs_home));
    T_ASSERT_EQ(ret, j->idx & INT_MAX);
    T_ASSERT_EQ(atomic_load(&j->ran), 1);
    T_ASSERT_EQ(j->done, 0);
    j->done = 1;
    free(j);
    atomic_fetch_add(&rs_completed, 1);
    if (!atomic_load(&rs_stop)) {
        pjob_submit();
    }
}

static void pjob_submit(void)
{
    PJob *j = calloc(1, sizeof(*j));

    T_ASSERT(j != NULL);
    j->idx = atomic_fetch_add(&rs_submitted, 1);
    T_ASSERT(iot_pool_submit(rs_ctx, pjob_work, j, pjob_done, j) != NULL);
}

static void *resizer_main(void *arg)
{
    long n = t_scale(1000, 10);
    unsigned seed = 0x5eed;

    (void)arg;
    for (long i = 0; i < n; i++) {
        int64_t min = rand_r(&seed) % 5;
        int64_t max = 1 + rand_r(&seed) % 8;
        long seen = atomic_load(&rs_completed);

        if (min > max) {
            int64_t t = min;
            min = max;
            max = t;
        }
        T_ASSERT_EQ(iot_ctx_set_pool_size(rs_ctx, min, max), 0);
        /* Let some work through between two changes. */
        for (int k = 0; k < 1000 && atomic_load(&rs_completed) == seen; k++) {
            sched_yield();
        }
    }
    atomic_store(&rs_stop, true);
    iot_ctx_notify(rs_ctx);
    return NULL;
}

static void test_resize_under_load(void)
{
    enum { IN_FLIGHT = 50 };
    IotCtx *ctx = ctx_setup();
    pthread_t resizer;
    IotPoolStats s;
    int64_t min, max;

    rs_ctx = ctx;
    rs_home = pthread_self();
    /* The resizer starts before the pool exists: it races its creation. */
    resizer = start_thread(resizer_main, NULL);
    for (int i = 0; i < IN_FLIGHT; i++) {
        pjob_submit();
    }
    POLL_UNTIL(ctx, atomic_load(&rs_stop) && atomic_load(&rs_completed) ==
                                                 atomic_load(&rs_submitted));
    join_thread(resizer);
    T_ASSERT(atomic_load(&rs_submitted) >= IN_FLIGHT);

    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 2, 2), 0);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, 2);
    T_ASSERT_EQ(max, 2);
    POLL_UNTIL_TICK(ctx,
                    pool_stats(ctx).threads == 2 && pool_stats(ctx).idle == 2,
                    TICK_NS);
    s = pool_stats(ctx);
    T_ASSERT_EQ(s.queued, 0);
    T_ASSERT_EQ(s.active, 0);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/lower-max-retires, raise-min-spawns ---- */

/* Idle workers above a lowered max are woken and exit: the idle timeout
 * is an hour here, so only the wake-up can make them go. */
static void test_lower_max_retires(void)
{
    IotCtx *ctx = ctx_setup();
    Job j;
    Run r;
    IotPoolStats s;

    iot__pool_idle_ns = 3600 * IOT_NS_PER_S;
    run_init(&r, ctx);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 8, 8), 0);
    job_init(&j, &r, 0);
    job_submit(&j);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).idle == 8, TICK_NS);
    T_ASSERT_EQ(pool_stats(ctx).threads, 8);

    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 2), 0);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).threads == 2, TICK_NS);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).idle == 2, TICK_NS);
    s = pool_stats(ctx);
    T_ASSERT_EQ(s.threads, 2);

    /* The two left still work. */
    job_init(&j, &r, 5);
    job_submit(&j);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    T_ASSERT_EQ(j.ret, 5);
    T_ASSERT(pool_stats(ctx).threads <= 2);
    ctx_teardown(ctx);
}

/* A max lowered while every worker is busy: the surplus exit as they
 * finish, without taking more work; the queued work still all runs, one
 * job at a time (the new max): a queued job's work never starts while
 * another work function is running. */
static atomic_int lmb_running;
static atomic_int lmb_overlaps;

static int lmb_work(void *arg)
{
    Job *j = arg;

    if (atomic_fetch_add(&lmb_running, 1) != 0 && !j->gate) {
        atomic_fetch_add(&lmb_overlaps, 1);
    }
    job_work(j);
    atomic_fetch_sub(&lmb_running, 1);
    return j->idx;
}

static void test_lower_max_busy(void)
{
    enum { BUSY = 6, MORE = 30, N = BUSY + MORE };
    IotCtx *ctx = ctx_setup();
    static Job jobs[N];
    Gate gate;
    Run r;

    iot__pool_idle_ns = 3600 * IOT_NS_PER_S;
    run_init(&r, ctx);
    gate_init(&gate);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, BUSY), 0);
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], &r, i);
        if (i < BUSY) {
            jobs[i].gate = &gate;
        }
    }
    for (int i = 0; i < BUSY; i++) {
        jobs[i].work =
            iot_pool_submit(ctx, lmb_work, &jobs[i], job_done, &jobs[i]);
        T_ASSERT(jobs[i].work != NULL);
    }
    POLL_UNTIL(ctx, atomic_load(&r.started) == BUSY);
    for (int i = BUSY; i < N; i++) {
        jobs[i].work =
            iot_pool_submit(ctx, lmb_work, &jobs[i], job_done, &jobs[i]);
        T_ASSERT(jobs[i].work != NULL);
    }
    T_ASSERT_EQ(pool_stats(ctx).queued, MORE);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 1), 0);
    gate_open(&gate);
    POLL_UNTIL(ctx, atomic_load(&r.completed) == N);
    for (int i = 0; i < N; i++) {
        T_ASSERT_EQ(jobs[i].ret, i);
        T_ASSERT_EQ(atomic_load(&jobs[i].ran), 1);
    }
    T_ASSERT_EQ(atomic_load(&lmb_overlaps), 0);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).threads == 1, TICK_NS);
    ctx_teardown(ctx);
}

/* A min lowered on a running pool: the idle workers above the new min
 * time out and exit, down to it. */
static void test_lower_min_idle_exit(void)
{
    IotCtx *ctx = ctx_setup();

    iot__pool_idle_ns = 20 * IOT_NS_PER_MS;
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 4, 8), 0);
    warm_up(ctx, 4);
    T_ASSERT_EQ(pool_stats(ctx).threads, 4);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 8), 0);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).threads == 1, TICK_NS);
    poll_for(ctx, 5 * iot__pool_idle_ns);
    T_ASSERT_EQ(pool_stats(ctx).threads, 1);
    T_ASSERT_EQ(pool_stats(ctx).idle, 1);
    ctx_teardown(ctx);
}

/* ---- out of memory for a post ---- */

extern _Atomic int iot__postq_fail_push_at;

static void pool_noop(void *opaque)
{
    (void)opaque;
}

/* The pool's own BHs are scheduled where a post can find no memory: the
 * home thread's first post (the spawn BH, in the submit) and a worker's
 * first (the completion BH).  Neither may abort or lose the work. */
static void test_post_oom(void)
{
    IotCtx *ctx = ctx_setup();
    Job j1, j2;
    Run r;

    iot__pool_idle_ns = 20 * IOT_NS_PER_MS; /* before any worker exists */
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 1), 0);
    run_init(&r, ctx);
    /* The submit's spawn BH is this thread's first post here. */
    atomic_store(&iot__postq_fail_push_at, 1);
    job_init(&j1, &r, 1);
    job_submit(&j1);
    T_ASSERT_EQ(atomic_load(&iot__postq_fail_push_at), 0);
    POLL_UNTIL(ctx, atomic_load(&j1.done) == 1);
    T_ASSERT_EQ(j1.ret, 1);

    /* A new worker's first post is its completion (the first worker has
     * timed out; this thread's queue exists, so the spawn posts). */
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).threads == 0, TICK_NS);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, pool_noop, NULL), 0);
    while (iot_ctx_poll(ctx, false)) {
    }
    atomic_store(&iot__postq_fail_push_at, 1);
    job_init(&j2, &r, 2);
    job_submit(&j2);
    POLL_UNTIL(ctx, atomic_load(&j2.done) == 1);
    T_ASSERT_EQ(j2.ret, 2);
    T_ASSERT_EQ(atomic_load(&iot__postq_fail_push_at), 0);
    ctx_teardown(ctx);
}

/* Sets the sizes to what they already are; returns the workers left. */
static unsigned resize_same(IotCtx *ctx, int64_t min, int64_t max)
{
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, min, max), 0);
    return pool_stats(ctx).threads;
}

/* Sizes set again and again, more often than the idle timeout (a monitor
 * that re-applies its configuration): the idle workers above min still
 * exit, for a resize does not restart their idle clock.  They used to be
 * woken by every resize and wait a whole timeout again, for good. */
static void test_resize_keeps_idle_clock(void)
{
    IotCtx *ctx = ctx_setup();

    iot__pool_idle_ns = 20 * IOT_NS_PER_MS;
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 4, 4), 0);
    warm_up(ctx, 4);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 4), 0);
    /* Every TICK_NS, a tenth of the timeout. */
    POLL_UNTIL_TICK(ctx, resize_same(ctx, 1, 4) == 1, TICK_NS);
    /* The last resize woke the one left: it goes back to sleep. */
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).idle == 1, TICK_NS);
    T_ASSERT_EQ(pool_stats(ctx).threads, 1);
    ctx_teardown(ctx);
}

/* The one thread of this process named "worker" (each case runs in its
 * own process). */
static pid_t sole_worker_tid(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    pid_t tid = 0;
    int found = 0;

    T_ASSERT(d != NULL);
    while ((e = readdir(d))) {
        char path[300], comm[32] = "";
        FILE *f;

        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        if (!(f = fopen(path, "r"))) {
            continue; /* exited meanwhile */
        }
        if (fgets(comm, sizeof(comm), f) && !strcmp(comm, "worker\n")) {
            tid = (pid_t)atoi(e->d_name);
            found++;
        }
        fclose(f);
    }
    closedir(d);
    T_ASSERT_EQ(found, 1);
    return tid;
}

/* How many times thread @tid has gone to sleep. */
static long task_sleeps(pid_t tid)
{
    char path[96], line[128];
    long n = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
    f = fopen(path, "r");
    T_ASSERT(f != NULL);
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1) {
            break;
        }
    }
    fclose(f);
    T_ASSERT(n >= 0);
    return n;
}

/* An idle worker the pool keeps for its min has no idle timeout: it
 * sleeps until work or a resize comes, and no wake-up ends the sleep.
 * It may still be on its way to sleep when the count is first read: at
 * most one more. */
static void test_min_worker_sleeps(void)
{
    IotCtx *ctx = ctx_setup();
    pid_t tid;
    long before;

    iot__pool_idle_ns = IOT_NS_PER_MS;
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 8), 0);
    warm_up(ctx, 1);
    tid = sole_worker_tid();
    before = task_sleeps(tid);
    poll_for(ctx, 50 * iot__pool_idle_ns);
    T_ASSERT(task_sleeps(tid) <= before + 1);
    T_ASSERT_EQ(pool_stats(ctx).threads, 1);
    T_ASSERT_EQ(pool_stats(ctx).idle, 1);
    ctx_teardown(ctx);
}

/* A min raised on a running pool starts workers at once. */
static void test_raise_min_spawns(void)
{
    IotCtx *ctx = ctx_setup();
    Job j;
    Run r;

    iot__pool_idle_ns = 3600 * IOT_NS_PER_S;
    run_init(&r, ctx);
    job_init(&j, &r, 0);
    job_submit(&j);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    T_ASSERT_EQ(pool_stats(ctx).threads, 1);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 4, 8), 0);
    T_ASSERT_EQ(pool_stats(ctx).threads, 4);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).idle == 4, TICK_NS);
    T_ASSERT_EQ(pool_stats(ctx).threads, 4);
    ctx_teardown(ctx);
}

/* A worker that cannot start gives up the rest of its batch: one failed
 * pthread_create, not one per slot of a large thread-pool-min.  The
 * workers that did start run the work. */
static atomic_int create_calls;

static int create_two(pthread_t *tid, const pthread_attr_t *attr,
                      void *(*fn)(void *), void *arg)
{
    if (atomic_fetch_add(&create_calls, 1) >= 2) {
        return EAGAIN;
    }
    return pthread_create(tid, attr, fn, arg);
}

static void test_spawn_failure_stops(void)
{
    IotCtx *ctx = ctx_setup();
    Job j;
    Run r;

    iot__pool_idle_ns = 3600 * IOT_NS_PER_S;
    iot__pool_thread_create = create_two;
    run_init(&r, ctx);
    job_init(&j, &r, 0);
    job_submit(&j); /* the pool, and its first worker */
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    T_ASSERT_EQ(atomic_load(&create_calls), 1);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 100000, 100000), 0);
    iot_ctx_poll(ctx, false); /* the spawn BH */
    T_ASSERT_EQ(atomic_load(&create_calls), 3);
    T_ASSERT_EQ(pool_stats(ctx).threads, 2);
    /* The two run work; with one of them idle, a submit starts no one
     * (a submit that finds none idle may try again: that is allowed). */
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).idle == 2, TICK_NS);
    job_init(&j, &r, 1);
    job_submit(&j);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    T_ASSERT_EQ(atomic_load(&create_calls), 3);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/spawn-failure-retried ---- */

/* No worker can start at first (out of threads): the work is not left
 * waiting for a submit that may never come; the pool tries again by
 * itself, and the work runs once a worker starts. */
static atomic_int fail_first;

static int create_after_failures(pthread_t *tid, const pthread_attr_t *attr,
                                 void *(*fn)(void *), void *arg)
{
    if (atomic_fetch_sub(&fail_first, 1) > 0) {
        return EAGAIN;
    }
    return pthread_create(tid, attr, fn, arg);
}

static void test_spawn_failure_retried(void)
{
    IotCtx *ctx = ctx_setup();
    Job j;
    Run r;

    iot__pool_retry_ns = IOT_NS_PER_MS;
    atomic_store(&fail_first, 3);
    iot__pool_thread_create = create_after_failures;
    run_init(&r, ctx);
    job_init(&j, &r, 0);
    job_submit(&j);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1); /* hangs without a retry */
    T_ASSERT(atomic_load(&fail_first) < 0);     /* three failed, one started */
    T_ASSERT_EQ(pool_stats(ctx).threads, 1);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/cancelled-never-claimed ---- */

/* No worker ever starts, and the queued work is cancelled: each
 * completion runs once with -ECANCELED, the work never runs, and the
 * teardown frees what is left in the ring (LeakSanitizer checks it). */
static int create_never(pthread_t *tid, const pthread_attr_t *attr,
                        void *(*fn)(void *), void *arg)
{
    (void)tid, (void)attr, (void)fn, (void)arg;
    return EAGAIN;
}

static void test_cancelled_never_claimed(void)
{
    IotCtx *ctx = ctx_setup();
    Job j[3];
    Run r;

    iot__pool_retry_ns = 3600 * IOT_NS_PER_S;
    iot__pool_thread_create = create_never;
    run_init(&r, ctx);
    for (int i = 0; i < 3; i++) {
        job_init(&j[i], &r, i);
        job_submit(&j[i]);
    }
    iot_ctx_poll(ctx, false); /* the spawn fails */
    T_ASSERT_EQ(pool_stats(ctx).threads, 0);
    T_ASSERT_EQ(pool_stats(ctx).queued, 3);
    for (int i = 0; i < 3; i++) {
        iot_pool_cancel(j[i].work);
    }
    POLL_UNTIL(ctx, atomic_load(&j[0].done) + atomic_load(&j[1].done) +
                            atomic_load(&j[2].done) ==
                        3);
    for (int i = 0; i < 3; i++) {
        T_ASSERT_EQ(j[i].ret, -ECANCELED);
        T_ASSERT_EQ(atomic_load(&j[i].ran), 0);
    }
    T_ASSERT_EQ(pool_stats(ctx).queued, 0);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/bad-sizes ---- */

static void check_size(IotCtx *ctx, int64_t emin, int64_t emax)
{
    int64_t min = -7, max = -7;

    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, emin);
    T_ASSERT_EQ(max, emax);
}

static void check_bad_sizes(IotCtx *ctx, int64_t emin, int64_t emax)
{
    static const int64_t bad[][2] = {
        { 3, 2 },
        { 0, 0 },
        { 1, 0 },
        { -1, 4 },
        { 0, -1 },
        { -5, -1 },
        { 0, (int64_t)INT_MAX + 1 },
        { (int64_t)INT_MAX + 1, (int64_t)INT_MAX + 1 },
        { (int64_t)INT_MAX + 1, (int64_t)INT_MAX },
        { INT64_MIN, 1 },
        { 0, INT64_MAX },
        { INT64_MAX, INT64_MAX },
    };
    IotPoolStats before = pool_stats(ctx), after;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, bad[i][0], bad[i][1]), -EINVAL);
        check_size(ctx, emin, emax);
    }
    after = pool_stats(ctx);
    T_ASSERT_EQ(after.threads, before.threads);
}

static void test_bad_sizes(void)
{
    IotCtx *ctx = ctx_setup();
    Job j;
    Run r;

    iot__pool_idle_ns = 3600 * IOT_NS_PER_S;
    run_init(&r, ctx);
    check_size(ctx, 0, IOT_POOL_MAX_DEFAULT);
    check_bad_sizes(ctx, 0, IOT_POOL_MAX_DEFAULT);

    /* The edges that are valid. */
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, INT_MAX), 0);
    check_size(ctx, 0, INT_MAX);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 1), 0);
    check_size(ctx, 1, 1);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 2, 5), 0);
    check_size(ctx, 2, 5);
    check_bad_sizes(ctx, 2, 5);
    T_ASSERT_EQ(pool_stats(ctx).threads, 0);

    /* The same on a running pool, which keeps its workers. */
    job_init(&j, &r, 3);
    job_submit(&j);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).idle == 2, TICK_NS);
    check_bad_sizes(ctx, 2, 5);
    poll_for(ctx, 20 * IOT_NS_PER_MS);
    T_ASSERT_EQ(pool_stats(ctx).threads, 2);
    T_ASSERT_EQ(pool_stats(ctx).idle, 2);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/nested-poll-in-completion ---- */

static Job np_jobs[3];
static bool np_nested_done;

/* A's completion waits, in a nested loop, for B's: B's work finished
 * before A's completion started, so B sits in the same batch. */
static void np_a_done(void *opaque, int ret)
{
    Job *a = opaque, *b = &np_jobs[1];

    T_ASSERT_EQ(ret, 0);
    T_ASSERT_EQ(atomic_load(&b->ran), 1);
    T_ASSERT_EQ(atomic_load(&b->done), 0);
    POLL_UNTIL(a->run->ctx, atomic_load(&b->done) == 1);
    T_ASSERT_EQ(b->ret, 1);
    np_nested_done = true;
}

static void test_nested_poll_in_completion(void)
{
    IotCtx *ctx = ctx_setup();
    sem_t c_end;
    Run r;

    run_init(&r, ctx);
    sem_init(&c_end, 0, 0);
    /* One worker, started and idle before the three jobs come. */
    iot__pool_idle_ns = 3600 * IOT_NS_PER_S;
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 1), 0);
    warm_up(ctx, 1);

    for (int i = 0; i < 3; i++) {
        job_init(&np_jobs[i], &r, i);
    }
    np_jobs[0].cb = np_a_done;
    np_jobs[2].on_end = &c_end;
    for (int i = 0; i < 3; i++) {
        job_submit(&np_jobs[i]);
    }
    /* The one worker has handed A and B over once C runs. */
    sem_wait(&c_end);
    POLL_UNTIL(ctx, np_nested_done);
    POLL_UNTIL(ctx, atomic_load(&r.completed) == 3);
    for (int i = 0; i < 3; i++) {
        T_ASSERT_EQ(atomic_load(&np_jobs[i].done), 1);
        T_ASSERT_EQ(np_jobs[i].ret, i);
    }
    sem_destroy(&c_end);
    ctx_teardown(ctx);
}

static Gate npl_gate;
static Job npl_jobs[2];
static bool npl_nested_done;

/* A's completion lets B go and waits for B's completion, nested. */
static void npl_a_done(void *opaque, int ret)
{
    Job *a = opaque, *b = &npl_jobs[1];

    T_ASSERT_EQ(ret, 0);
    T_ASSERT_EQ(atomic_load(&b->done), 0);
    gate_open(&npl_gate);
    POLL_UNTIL(a->run->ctx, atomic_load(&b->done) == 1);
    T_ASSERT_EQ(b->ret, 1);
    npl_nested_done = true;
}

static void test_nested_poll_in_completion_later(void)
{
    IotCtx *ctx = ctx_setup();
    Run r;

    run_init(&r, ctx);
    gate_init(&npl_gate);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 2), 0);
    job_init(&npl_jobs[0], &r, 0);
    npl_jobs[0].cb = npl_a_done;
    job_init(&npl_jobs[1], &r, 1);
    npl_jobs[1].gate = &npl_gate;
    job_submit(&npl_jobs[1]);
    job_submit(&npl_jobs[0]);
    POLL_UNTIL(ctx, npl_nested_done);
    T_ASSERT_EQ(atomic_load(&r.completed), 2);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/completions-bounded ---- */

#define CB_FIRST 8
#define CB_TOTAL (4 * CB_FIRST)

static int cb_ran, cb_submitted;
static IotCtx *cb_ctx;

static int cb_work(void *arg)
{
    (void)arg;
    return 0;
}

/* Home thread, without polling (which would run the completion BH): until
 * @n finished works wait on the done list. */
static void cb_wait_done(size_t n)
{
    int64_t end = t_now_ns() + WAIT_LIMIT_NS;

    while (iot__pool_done_waiting(cb_ctx) < n) {
        T_ASSERT(t_now_ns() < end);
        sched_yield();
    }
}

/* Each completion submits the next work, and returns only once that one
 * has finished too: the workers always keep up with the completions. */
static void cb_done(void *opaque, int ret)
{
    (void)opaque;
    T_ASSERT_EQ(ret, 0);
    cb_ran++;
    if (cb_submitted < CB_TOTAL) {
        cb_submitted++;
        T_ASSERT(iot_pool_submit(cb_ctx, cb_work, NULL, cb_done, NULL));
        cb_wait_done(1);
    }
}

/* A pipeline of completions that submit the next work, with workers that
 * keep up: a pass runs the completions that had finished when it began,
 * and the rest wait for the next pass, so that the loop's timers, fds and
 * other BHs (and a stop) get their turn.  QEMU's completion BH scans
 * again until nothing is left, and would run all CB_TOTAL here. */
static void test_completions_bounded(void)
{
    IotCtx *ctx = cb_ctx = ctx_setup();

    cb_ran = 0;
    cb_submitted = CB_FIRST;
    /* Workers started and idle (min 2: for good), since the test then
     * does not poll, which starts them, until the works have finished. */
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 2, 2), 0);
    warm_up(ctx, 2);
    for (int i = 0; i < CB_FIRST; i++) {
        T_ASSERT(iot_pool_submit(ctx, cb_work, NULL, cb_done, NULL));
    }
    cb_wait_done(CB_FIRST);
    /* The BH's schedule follows the last push: one pass runs it. */
    while (cb_ran == 0) {
        iot_ctx_poll(ctx, true); /* a hang fails the case */
    }
    T_ASSERT_EQ(cb_ran, CB_FIRST);
    /* The rest, one pass after another; none lost. */
    POLL_UNTIL(ctx, cb_ran == CB_TOTAL);
    T_ASSERT_EQ(cb_submitted, CB_TOTAL);
    T_ASSERT_EQ(pool_stats(ctx).queued, 0);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/outstanding-aborts ---- */

/* The work has finished; its completion has not run. */
static void test_outstanding_aborts(void)
{
    IotCtx *ctx = ctx_setup();
    Job j;
    sem_t end;
    Run r;

    run_init(&r, ctx);
    sem_init(&end, 0, 0);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 1, 1), 0);
    warm_up(ctx, 1);
    job_init(&j, &r, 0);
    j.on_end = &end;
    job_submit(&j);
    /* The work runs and finishes; the loop never runs its completion. */
    sem_wait(&end);
    T_ASSERT_EQ(atomic_load(&j.done), 0);
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
    t_fail(__FILE__, __LINE__, "unref with an outstanding request returned");
}

/* The work is still running (blocked for good). */
static void test_outstanding_aborts_running(void)
{
    IotCtx *ctx = ctx_setup();
    static Gate never;
    Job j;
    Run r;

    run_init(&r, ctx);
    gate_init(&never);
    job_init(&j, &r, 0);
    j.gate = &never;
    job_submit(&j);
    POLL_UNTIL(ctx, atomic_load(&r.started) == 1);
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
    t_fail(__FILE__, __LINE__, "unref with an outstanding request returned");
}

/* Never started (no worker yet), NULL completion. */
static void test_outstanding_aborts_queued(void)
{
    IotCtx *ctx = ctx_setup();

    T_ASSERT(iot_pool_submit(ctx, set_side_effect, NULL, NULL, NULL) != NULL);
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
    t_fail(__FILE__, __LINE__, "unref with an outstanding request returned");
}

/* ---- /thread-pool/unref-with-backlog ---- */

/* Workers asked for (min raised) but not started yet when the context
 * goes: unref drops them and does not wait for them. */
static void test_unref_with_backlog(void)
{
    IotCtx *ctx = ctx_setup();
    Job j;
    Run r;

    run_init(&r, ctx);
    job_init(&j, &r, 0);
    job_submit(&j);
    POLL_UNTIL(ctx, atomic_load(&j.done) == 1);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 6, 8), 0);
    T_ASSERT_EQ(pool_stats(ctx).threads, 6);
    ctx_teardown(ctx);
}

/* ---- /thread-pool/per-context ---- */

/* Two contexts on two threads, each with its own pool: completions run
 * on their own home thread. */
static void *per_ctx_main(void *arg)
{
    enum { N = 200 };
    IotCtx *ctx = ctx_setup();
    Job *jobs = calloc(N, sizeof(*jobs));
    Run r;

    (void)arg;
    T_ASSERT(jobs != NULL);
    run_init(&r, ctx);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 3), 0);
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], &r, i);
        job_submit(&jobs[i]);
    }
    POLL_UNTIL(ctx, atomic_load(&r.completed) == N);
    for (int i = 0; i < N; i++) {
        T_ASSERT_EQ(atomic_load(&jobs[i].done), 1);
        T_ASSERT_EQ(jobs[i].ret, i);
    }
    T_ASSERT(pool_stats(ctx).threads <= 3);
    ctx_teardown(ctx);
    free(jobs);
    return NULL;
}

static void test_per_context(void)
{
    pthread_t a = start_thread(per_ctx_main, NULL);
    pthread_t b = start_thread(per_ctx_main, NULL);

    join_thread(a);
    join_thread(b);
}

/* ---- /thread-pool/stress ---- */

static int stress_barrier_work(void *arg)
{
    (void)arg;
    return 77;
}

static int stress_barrier_ret = -1;

static void stress_barrier_done(void *opaque, int ret)
{
    (void)opaque;
    stress_barrier_ret = ret;
}

/* 100k jobs on 4 workers, a quarter with no completion; every work runs
 * once and every completion runs once with its value.  At the end the
 * pool goes down to one worker and a last job's completion proves that
 * the items without a completion went through the loop too (FIFO). */
static void test_stress(void)
{
    long n = t_scale(100000, 20);
    IotCtx *ctx = ctx_setup();
    Job *jobs = calloc((size_t)n, sizeof(*jobs));
    long with_cb = 0;
    Run r;

    T_ASSERT(jobs != NULL);
    run_init(&r, ctx);
    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 4), 0);
    for (long i = 0; i < n; i++) {
        job_init(&jobs[i], &r, (int)i);
        if (i % 4 == 3) {
            T_ASSERT(iot_pool_submit(ctx, job_work, &jobs[i], NULL, NULL));
        } else {
            job_submit(&jobs[i]);
            with_cb++;
        }
        if (i % 1000 == 999) {
            iot_ctx_poll(ctx, false);
        }
    }
    POLL_UNTIL(ctx, atomic_load(&r.completed) == with_cb &&
                        atomic_load(&r.started) == n);
    T_ASSERT(pool_stats(ctx).threads <= 4);

    T_ASSERT_EQ(iot_ctx_set_pool_size(ctx, 0, 1), 0);
    POLL_UNTIL_TICK(ctx, pool_stats(ctx).threads == 1, TICK_NS);
    T_ASSERT(iot_pool_submit(ctx, stress_barrier_work, NULL,
                             stress_barrier_done, NULL) != NULL);
    POLL_UNTIL(ctx, stress_barrier_ret == 77);
    T_ASSERT_EQ(atomic_load(&r.completed), with_cb);
    for (long i = 0; i < n; i++) {
        T_ASSERT_EQ(atomic_load(&jobs[i].ran), 1);
        T_ASSERT_EQ(atomic_load(&jobs[i].done), i % 4 == 3 ? 0 : 1);
        if (i % 4 != 3) {
            T_ASSERT_EQ(jobs[i].ret, i);
        }
    }
    ctx_teardown(ctx);
    free(jobs);
}

int main(int argc, char **argv)
{
    t_add("/thread-pool/submit-no-complete", test_submit_no_complete);
    t_add("/thread-pool/submit-aio", test_submit_aio);
    t_add("/thread-pool/submit-many", test_submit_many);
    t_add("/thread-pool/cancel", test_cancel);
    t_add("/thread-pool/cancel-async", test_cancel_async);
    t_add("/thread-pool/cancel-after-finish", test_cancel_after_finish);
    t_add("/thread-pool/cancel-twice", test_cancel_twice);
    t_add("/thread-pool/cancel-racing", test_cancel_racing);
    t_add("/thread-pool/busy-no-lock", test_busy_no_lock);
    t_add("/thread-pool/timeout-race", test_timeout_race);
    t_add("/thread-pool/completion-order", test_completion_order);
    t_add("/thread-pool/completion-order-finish", test_completion_order_finish);
    t_add("/thread-pool/no-spurious-progress", test_no_spurious_progress);
    t_add("/thread-pool/min-threads", test_min_threads);
    t_add("/thread-pool/idle-exit-respawn", test_idle_exit_respawn);
    t_add("/thread-pool/resize-under-load", test_resize_under_load);
    t_add("/thread-pool/lower-max-retires", test_lower_max_retires);
    t_add("/thread-pool/lower-max-busy", test_lower_max_busy);
    t_add("/thread-pool/raise-min-spawns", test_raise_min_spawns);
    t_add("/thread-pool/spawn-failure-stops", test_spawn_failure_stops);
    t_add("/thread-pool/spawn-failure-retried", test_spawn_failure_retried);
    t_add("/thread-pool/lower-min-idle-exit", test_lower_min_idle_exit);
    t_add("/thread-pool/resize-keeps-idle-clock", test_resize_keeps_idle_clock);
    t_add("/thread-pool/post-oom", test_post_oom);
    t_add("/thread-pool/min-worker-sleeps", test_min_worker_sleeps);
    t_add("/thread-pool/bad-sizes", test_bad_sizes);
    t_add("/thread-pool/nested-poll-in-completion",
          test_nested_poll_in_completion);
    t_add("/thread-pool/nested-poll-in-completion-later",
          test_nested_poll_in_completion_later);
    t_add_abort("/thread-pool/outstanding-aborts", test_outstanding_aborts,
                "outstanding");
    t_add_abort("/thread-pool/outstanding-aborts-running",
                test_outstanding_aborts_running, "outstanding");
    t_add_abort("/thread-pool/outstanding-aborts-queued",
                test_outstanding_aborts_queued, "outstanding");
    t_add("/thread-pool/unref-with-backlog", test_unref_with_backlog);
    t_add("/thread-pool/cancelled-never-claimed", test_cancelled_never_claimed);
    t_add("/thread-pool/completions-bounded", test_completions_bounded);
    t_add("/thread-pool/per-context", test_per_context);
    t_add("/thread-pool/stress", test_stress);
    return t_run(argc, argv);
}
