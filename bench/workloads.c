/* SPDX-License-Identifier: MIT */
/*
 * The workloads of shared/BENCH.md, each written once against bimpl.
 * The poster (the main thread) runs on CPU 0 and the loop on CPU 1 where
 * the machine has two; W5 (a pool) and W6 (idle) are not pinned.
 *
 * Exit status of run_workload: 0 done, 2 not applicable to this
 * implementation (it lacks timers, a pool or fd watches).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "bench.h"

#define POSTER_CPU 0
#define LOOP_CPU   1
#define NA         2

static char wname[64]; /* the workload's name in the records */

static void set_name(const char *base)
{
    if (cfg.variant && *cfg.variant) {
        snprintf(wname, sizeof(wname), "%s-%s", base, cfg.variant);
    } else {
        snprintf(wname, sizeof(wname), "%s", base);
    }
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = { ns / 1000000000LL, ns % 1000000000LL };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Waits until *counter reaches @target (the loop counts); false on
 * timeout.  Polls every 200 us: only used where the loop records the end
 * time itself. */
static bool wait_count(atomic_llong *counter, long long target, double max_s)
{
    int64_t deadline = now_ns() + (int64_t)(max_s * 1e9);

    while (atomic_load_explicit(counter, memory_order_acquire) < target) {
        if (now_ns() > deadline) {
            return false;
        }
        sleep_ns(200000);
    }
    return true;
}

static void ctxsw(bloop *l, long *vol)
{
    long invol;

    proc_ctxsw(l->tid, vol, &invol);
}

/* ---------------------------------------------------------------- W1 -- */

typedef struct w1st {
    bsig reply;
} w1st;

static void w1_cb(void *arg)
{
    w1st *st = arg;

    bsig_set(&st->reply);
}

static int w1(const bimpl *impl, bool reused)
{
    long n = cfg.quick ? 5000 : 200000, warm = n / 10;
    int64_t *s = xcalloc((size_t)n, sizeof(*s));
    w1st st = { 0 };
    bnode node = { .fn = w1_cb, .arg = &st };
    void *h = NULL;
    long v0, v1;
    bloop l;

    if (reused && !impl->handle_new) {
        return NA;
    }
    set_name(reused ? "W1-reused" : "W1");
    pin_self(POSTER_CPU);
    bloop_start(&l, impl, LOOP_CPU);
    if (reused) {
        h = impl->handle_new(l.loop, w1_cb, &st);
    }
    for (long i = -warm; i < n; i++) {
        int64_t t0;

        if (i == 0) {
            ctxsw(&l, &v0);
        }
        bsig_reset(&st.reply);
        t0 = now_ns();
        if (h) {
            impl->handle_post(h);
        } else {
            impl->post(l.loop, &node);
        }
        bsig_wait(&st.reply, impl->poster_spins, "W1 reply");
        if (i >= 0) {
            s[i] = now_ns() - t0;
        }
    }
    ctxsw(&l, &v1);
    if (h) {
        impl->handle_free(h);
    }
    bloop_stop(&l);
    sort_i64(s, (size_t)n);
    emit(wname, impl->name, "rtt_median_ns", (double)pct_i64(s, (size_t)n, 0.5),
         "ns");
    emit(wname, impl->name, "rtt_p99_ns", (double)pct_i64(s, (size_t)n, 0.99),
         "ns");
    emit(wname, impl->name, "rtt_p999_ns", (double)pct_i64(s, (size_t)n, 0.999),
         "ns");
    emit(wname, impl->name, "loop_sleeps",
         100.0 * (double)(v1 - v0) / (double)n, "%");
    write_dist(s, (size_t)n);
    free(s);
    return 0;
}

/* ---------------------------------------------------------------- W2 -- */

typedef struct w2item {
    bnode n;
    unsigned seen; /* [loop] */
} w2item;

static struct {
    /* Read by the producers: apart from what the loop writes, or every
     * post would pay a cache miss for the benchmark's own bookkeeping. */
    w2item *items;
    long long total;
    bool shared; /* W2-shared: every post carries w2_shared */
    atomic_int go;
    _Alignas(64) atomic_llong executed; /* [loop writes] */
    int64_t t_end;                      /* [loop] */
} w2s;

static void w2_cb(void *arg)
{
    w2item *it = arg;
    long long e = atomic_load_explicit(&w2s.executed, memory_order_relaxed) + 1;

    it->seen++;
    if (e == w2s.total) {
        w2s.t_end = now_ns();
    }
    atomic_store_explicit(&w2s.executed, e, memory_order_release);
}

/* W2-shared: the one node of every post, on a line of its own (the loop
 * writes w2s.executed; sharing its line would cost a miss per post). */
static _Alignas(64) bnode w2_shared;

/* W2-shared: touches no item (the producer reads the shared node). */
static void w2_shared_cb(void *arg)
{
    long long e = atomic_load_explicit(&w2s.executed, memory_order_relaxed) + 1;

    (void)arg;
    if (e == w2s.total) {
        w2s.t_end = now_ns();
    }
    atomic_store_explicit(&w2s.executed, e, memory_order_release);
}

typedef struct w2prod {
    pthread_t thr;
    const bimpl *impl;
    void *loop;
    long long from, to;
    int64_t t_start; /* when it saw the start signal */
    int64_t t_done;  /* when its last post returned */
} w2prod;

static void *w2_producer(void *opaque)
{
    w2prod *p = opaque;
    /* Locals: the post is an opaque call, after which globals reload. */
    void (*post)(void *, bnode *) = p->impl->post;
    void *loop = p->loop;
    w2item *items = w2s.items;

    pin_self(POSTER_CPU);
    while (!atomic_load_explicit(&w2s.go, memory_order_acquire)) {
        cpu_relax();
    }
    p->t_start = now_ns();
    if (w2s.shared) {
        /* W2-shared: one node for every post (the implementation must
         * copy the callback and its argument, as one-shot BHs do). */
        for (long long i = p->from; i < p->to; i++) {
            post(loop, &w2_shared);
        }
    } else {
        for (long long i = p->from; i < p->to; i++) {
            post(loop, &items[i].n);
        }
    }
    p->t_done = now_ns();
    return NULL;
}

static int w2(const bimpl *impl, bool shared)
{
    long long n = cfg.quick ? 200000 : 1000000, lost = 0, dup = 0;
    int np = cfg.producers > 0 ? cfg.producers : 1;
    w2prod *prod = xcalloc((size_t)np, sizeof(*prod));
    char base[16];
    int64_t t0, t_posted = 0;
    bool done;
    bloop l;

    snprintf(base, sizeof(base), np > 1 ? "%s-%dp" : "%s",
             shared ? "W2-shared" : "W2", np);
    w2s.shared = shared;
    w2_shared = (bnode){ .fn = w2_shared_cb, .arg = NULL };
    set_name(base);
    w2s.items = xcalloc((size_t)n, sizeof(*w2s.items));
    w2s.total = n;
    for (long long i = 0; i < n; i++) {
        w2s.items[i].n = (bnode){ .fn = w2_cb, .arg = &w2s.items[i] };
    }
    pin_self(POSTER_CPU);
    bloop_start(&l, impl, LOOP_CPU);
    for (int k = 0; k < np; k++) {
        prod[k] = (w2prod){ .impl = impl,
                            .loop = l.loop,
                            .from = n * k / np,
                            .to = n * (k + 1) / np };
        if (pthread_create(&prod[k].thr, NULL, w2_producer, &prod[k]) != 0) {
            die("pthread_create");
        }
    }
    sleep_ns(1000000); /* let the producers reach the start line */
    atomic_store_explicit(&w2s.go, 1, memory_order_release);
    /* The clock starts when the first producer starts, not here: the
     * producers spin on this thread's CPU, which may lose it for a time
     * slice right after setting `go` (that made W2 bimodal). */
    t0 = INT64_MAX;
    for (int k = 0; k < np; k++) {
        pthread_join(prod[k].thr, NULL);
        if (prod[k].t_done > t_posted) {
            t_posted = prod[k].t_done;
        }
        if (prod[k].t_start < t0) {
            t0 = prod[k].t_start;
        }
    }
    done = wait_count(&w2s.executed, n, cfg.timeout_s);
    bloop_stop(&l);
    if (shared) {
        long long ran = atomic_load(&w2s.executed);
        lost = ran < n ? n - ran : 0;
        dup = ran > n ? ran - n : 0;
    }
    for (long long i = 0; !shared && i < n; i++) {
        lost += w2s.items[i].seen == 0;
        dup += w2s.items[i].seen > 1 ? w2s.items[i].seen - 1 : 0;
    }
    if (done) {
        emit(wname, impl->name, "posts_per_s",
             (double)n * 1e9 / (double)(w2s.t_end - t0), "posts/s");
        /* the producers' side alone: ns per post (per producer) */
        emit(wname, impl->name, "post_ns",
             (double)(t_posted - t0) * np / (double)n, "ns");
    } else {
        fprintf(stderr, "W2: timeout, %lld of %lld ran\n",
                (long long)atomic_load(&w2s.executed), n);
    }
    emit(wname, impl->name, "lost", (double)lost, "posts");
    emit(wname, impl->name, "dup", (double)dup, "posts");
    free(w2s.items);
    free(prod);
    return done && !lost && !dup ? 0 : 3;
}

/* ---------------------------------------------------------------- W3 -- */

static struct {
    int a[2], b[2]; /* a: L1 -> L2, b: L2 -> L1 */
    long n, warm, count;
    int64_t t_sent, t_start, t_end;
    int64_t *s;
    bsig done;
} w3s;

static void w3_send(void)
{
    char c = 'x';

    w3s.t_sent = now_ns();
    if (write(w3s.a[1], &c, 1) != 1) {
        die("W3: write: %m");
    }
}

/* L2: bounce every byte back. */
static void w3_l2_read(void *arg)
{
    char buf[64];
    ssize_t r = read(w3s.a[0], buf, sizeof(buf));

    (void)arg;
    for (ssize_t i = 0; i < r; i++) {
        if (write(w3s.b[1], buf + i, 1) != 1) {
            die("W3: write: %m");
        }
    }
}

/* L1: one round trip done; send the next. */
static void w3_l1_read(void *arg)
{
    char buf[64];
    ssize_t r = read(w3s.b[0], buf, sizeof(buf));

    (void)arg;
    for (ssize_t i = 0; i < r; i++) {
        int64_t t = now_ns();
        long k = w3s.count++ - w3s.warm;

        if (k == 0) {
            w3s.t_start = w3s.t_sent;
        }
        if (k >= 0) {
            w3s.s[k] = t - w3s.t_sent;
        }
        if (k + 1 < w3s.n) {
            w3_send();
        } else {
            w3s.t_end = t;
            bsig_set(&w3s.done);
        }
    }
}

static void w3_start(void *arg)
{
    (void)arg;
    w3_send();
}

typedef struct w3watch {
    const bimpl *impl;
    void *loop;
    int fd;
    bench_cb *cb;
    void *w;
} w3watch;

static void w3_watch(void *arg)
{
    w3watch *w = arg;

    w->w = w->impl->fd_watch(w->loop, w->fd, cfg.flags, w->cb, NULL);
}

static void w3_unwatch(void *arg)
{
    w3watch *w = arg;

    w->impl->fd_unwatch(w->loop, w->w);
}

static void *w3_pipe_peer(void *arg)
{
    char c;

    (void)arg;
    pin_self(LOOP_CPU);
    for (long i = 0; i < w3s.n + w3s.warm; i++) {
        if (read(w3s.a[0], &c, 1) != 1 || write(w3s.b[1], &c, 1) != 1) {
            die("W3: pipes: %m");
        }
    }
    return NULL;
}

static void w3_pipes(void)
{
    pthread_t thr;
    char c = 'x';

    if (pthread_create(&thr, NULL, w3_pipe_peer, NULL) != 0) {
        die("pthread_create");
    }
    for (long i = -w3s.warm; i < w3s.n; i++) {
        int64_t t0 = now_ns();

        if (i == 0) {
            w3s.t_start = t0;
        }
        if (write(w3s.a[1], &c, 1) != 1 || read(w3s.b[0], &c, 1) != 1) {
            die("W3: pipes: %m");
        }
        if (i >= 0) {
            w3s.s[i] = now_ns() - t0;
        }
    }
    w3s.t_end = now_ns();
    pthread_join(thr, NULL);
}

static int w3(const bimpl *impl)
{
    if (!impl->fd_watch && !impl->pipe_pingpong) {
        return NA;
    }
    set_name("W3");
    w3s.n = cfg.quick ? 5000 : 200000;
    w3s.warm = w3s.n / 20;
    w3s.s = xcalloc((size_t)w3s.n, sizeof(*w3s.s));
    if (pipe(w3s.a) < 0 || pipe(w3s.b) < 0) {
        die("pipe: %m");
    }
    pin_self(POSTER_CPU);
    if (impl->pipe_pingpong) {
        w3_pipes();
    } else {
        bloop l1, l2;
        w3watch ww1, ww2;

        fcntl(w3s.a[0], F_SETFL, O_NONBLOCK);
        fcntl(w3s.b[0], F_SETFL, O_NONBLOCK);
        bloop_start(&l1, impl, POSTER_CPU);
        bloop_start(&l2, impl, LOOP_CPU);
        ww1 = (w3watch){ impl, l1.loop, w3s.b[0], w3_l1_read, NULL };
        ww2 = (w3watch){ impl, l2.loop, w3s.a[0], w3_l2_read, NULL };
        bloop_call(&l1, w3_watch, &ww1);
        bloop_call(&l2, w3_watch, &ww2);
        unpin_self(); /* the main thread only waits */
        bloop_call(&l1, w3_start, NULL);
        bsig_wait(&w3s.done, false, "W3");
        bloop_call(&l1, w3_unwatch, &ww1);
        bloop_call(&l2, w3_unwatch, &ww2);
        bloop_stop(&l1);
        bloop_stop(&l2);
    }
    sort_i64(w3s.s, (size_t)w3s.n);
    emit(wname, impl->name, "rt_per_s",
         (double)w3s.n * 1e9 / (double)(w3s.t_end - w3s.t_start), "rt/s");
    emit(wname, impl->name, "rtt_median_ns",
         (double)pct_i64(w3s.s, (size_t)w3s.n, 0.5), "ns");
    emit(wname, impl->name, "rtt_p99_ns",
         (double)pct_i64(w3s.s, (size_t)w3s.n, 0.99), "ns");
    free(w3s.s);
    return 0;
}

/* ---------------------------------------------------------------- W4 -- */

static struct {
    const bimpl *impl;
    void *loop;
    long n;
    void **t;
    int64_t *off, *deadline, *late;
    long fired;
    int64_t arm_ns, cancel_ns;
    int64_t armed_at; /* when the last timer was armed */
    bsig done;
} w4s;

static void w4_fire(void *arg)
{
    long i = (long)(intptr_t)arg;

    w4s.late[i] = now_ns() - w4s.deadline[i];
    if (++w4s.fired == w4s.n) {
        bsig_set(&w4s.done);
    }
}

static void w4_new(void *arg)
{
    (void)arg;
    for (long i = 0; i < w4s.n; i++) {
        w4s.t[i] = w4s.impl->timer_new(w4s.loop, w4_fire, (void *)(intptr_t)i);
        if (!w4s.t[i]) {
            die("timer_new");
        }
    }
}

static void w4_free(void *arg)
{
    (void)arg;
    for (long i = 0; i < w4s.n; i++) {
        w4s.impl->timer_free(w4s.loop, w4s.t[i]);
    }
}

static void w4_arm(void *arg)
{
    int64_t t0, t1;

    (void)arg;
    if (w4s.impl->timer_batch_begin) {
        w4s.impl->timer_batch_begin(w4s.loop);
    }
    t0 = now_ns();
    for (long i = 0; i < w4s.n; i++) {
        w4s.deadline[i] = t0 + w4s.off[i];
        w4s.impl->timer_arm(w4s.loop, w4s.t[i], w4s.deadline[i]);
    }
    t1 = now_ns();
    w4s.arm_ns = t1 - t0;
    w4s.armed_at = t1;
}

/* Lateness is measured on the timers due after the last one was armed:
 * one due while the loop was still arming could not fire on time on any
 * implementation, and how many fall in that window depends on how fast
 * arming went (~0.5 % of them here, so the p99 swung between tens of us
 * and milliseconds with the arming time).  Sorts w4s.late; returns how
 * many timers count, which are first in w4s.late. */
static long w4_late_counted(void)
{
    long k = 0;

    for (long i = 0; i < w4s.n; i++) {
        if (w4s.deadline[i] >= w4s.armed_at) {
            w4s.late[k++] = w4s.late[i];
        }
    }
    sort_i64(w4s.late, (size_t)k);
    return k;
}

static void w4_arm_cancel(void *arg)
{
    int64_t t0, t1, t2;

    (void)arg;
    if (w4s.impl->timer_batch_begin) {
        w4s.impl->timer_batch_begin(w4s.loop);
    }
    t0 = now_ns();
    for (long i = 0; i < w4s.n; i++) {
        w4s.impl->timer_arm(w4s.loop, w4s.t[i], t0 + w4s.off[i]);
    }
    t1 = now_ns();
    for (long i = 0; i < w4s.n; i++) {
        w4s.impl->timer_cancel(w4s.loop, w4s.t[i]);
    }
    t2 = now_ns();
    w4s.arm_ns = t1 - t0;
    w4s.cancel_ns = t2 - t1;
}

static void w4_alloc(long n, int64_t span, uint64_t *rng)
{
    w4s.n = n;
    w4s.t = xcalloc((size_t)n, sizeof(*w4s.t));
    w4s.off = xcalloc((size_t)n, sizeof(*w4s.off));
    w4s.deadline = xcalloc((size_t)n, sizeof(*w4s.deadline));
    w4s.late = xcalloc((size_t)n, sizeof(*w4s.late));
    for (long i = 0; i < n; i++) {
        w4s.off[i] = (int64_t)(rng_unit(rng) * (double)span);
    }
}

static void w4_release(void)
{
    free(w4s.t);
    free(w4s.off);
    free(w4s.deadline);
    free(w4s.late);
}

static int w4(const bimpl *impl)
{
    long n = cfg.quick ? 20000 : 100000, m = cfg.quick ? 100000 : 1000000, k;
    int64_t span = cfg.quick ? 250000000LL : 1000000000LL;
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    bloop l;

    if (!impl->timer_new) {
        return NA;
    }
    set_name("W4");
    pin_self(POSTER_CPU);
    bloop_start(&l, impl, LOOP_CPU);
    w4s.impl = impl;
    w4s.loop = l.loop;

    /* n one-shot timers in the next span: ns per arm, lateness */
    w4_alloc(n, span, &rng);
    bloop_call(&l, w4_new, NULL);
    bloop_call(&l, w4_arm, NULL);
    bsig_wait(&w4s.done, false, "W4 timers");
    bloop_call(&l, w4_free, NULL);
    k = w4_late_counted();
    emit(wname, impl->name, "arm_ns", (double)w4s.arm_ns / (double)n, "ns");
    emit(wname, impl->name, "late_median_ns",
         (double)pct_i64(w4s.late, (size_t)k, 0.5), "ns");
    emit(wname, impl->name, "late_p99_ns",
         (double)pct_i64(w4s.late, (size_t)k, 0.99), "ns");
    emit(wname, impl->name, "late_max_ns", k ? (double)w4s.late[k - 1] : 0,
         "ns");
    emit(wname, impl->name, "due_while_arming", (double)(n - k), "timers");
    w4_release();

    /* m timers armed, then all cancelled: ns per operation */
    w4_alloc(m, span, &rng);
    bloop_call(&l, w4_new, NULL);
    bloop_call(&l, w4_arm_cancel, NULL);
    bloop_call(&l, w4_free, NULL);
    emit(wname, impl->name, "arm_cancel_ns",
         (double)(w4s.arm_ns + w4s.cancel_ns) / (2.0 * (double)m), "ns");
    w4_release();
    bloop_stop(&l);
    return 0;
}

/* ---------------------------------------------------------------- W5 -- */

static struct {
    const bimpl *impl;
    void *loop;
    long n, completed;
    bwork *w;
    int64_t t_start, t_end;
    bsig done;
} w5s;

static void w5_done(void *arg)
{
    (void)arg;
    if (++w5s.completed == w5s.n) {
        w5s.t_end = now_ns();
        bsig_set(&w5s.done);
    }
}

static void w5_submit(void *arg)
{
    (void)arg;
    w5s.t_start = now_ns();
    for (long i = 0; i < w5s.n; i++) {
        if (w5s.impl->pool_submit(w5s.loop, &w5s.w[i]) < 0) {
            die("pool_submit");
        }
    }
}

static int w5(const bimpl *impl)
{
    bloop l;

    if (!impl->pool_submit) {
        return NA;
    }
    set_name("W5");
    w5s.impl = impl;
    w5s.n = cfg.quick ? 50000 : 200000;
    w5s.w = xcalloc((size_t)w5s.n, sizeof(*w5s.w));
    for (long i = 0; i < w5s.n; i++) {
        w5s.w[i] = (bwork){ .work = NULL, .done = w5_done, .arg = NULL };
    }
    bloop_start(&l, impl, -1);
    w5s.loop = l.loop;
    bloop_call(&l, w5_submit, NULL);
    bsig_wait(&w5s.done, false, "W5");
    bloop_stop(&l);
    emit(wname, impl->name, "items_per_s",
         (double)w5s.n * 1e9 / (double)(w5s.t_end - w5s.t_start), "items/s");
    free(w5s.w);
    return 0;
}

/* ---------------------------------------------------------------- W6 -- */

static struct {
    atomic_llong executed;
    bsig reply;
} w6s;

static void w6_count(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&w6s.executed, 1, memory_order_release);
}

static void w6_reply(void *arg)
{
    (void)arg;
    bsig_set(&w6s.reply);
}

static int w6(const bimpl *impl)
{
    long burst = 10000;
    int64_t idle = cfg.quick ? 2000000000LL : 5000000000LL, c0, c1;
    bnode *nodes = xcalloc((size_t)burst, sizeof(*nodes));
    bnode rt = { .fn = w6_reply, .arg = NULL };
    long v0, v1;
    bloop l;

    set_name("W6");
    bloop_start(&l, impl, -1);
    /* The burst: round trips (polling windows grow), then a flood. */
    for (long i = 0; i < 2000; i++) {
        bsig_reset(&w6s.reply);
        impl->post(l.loop, &rt);
        bsig_wait(&w6s.reply, false, "W6 burst");
    }
    for (long i = 0; i < burst; i++) {
        nodes[i] = (bnode){ .fn = w6_count };
        impl->post(l.loop, &nodes[i]);
    }
    if (!wait_count(&w6s.executed, burst, cfg.timeout_s)) {
        die("W6: burst timed out");
    }
    /* Idle. */
    c0 = bloop_cpu_ns(&l);
    ctxsw(&l, &v0);
    sleep_ns(idle);
    c1 = bloop_cpu_ns(&l);
    ctxsw(&l, &v1);
    bloop_stop(&l);
    emit(wname, impl->name, "idle_cpu_ms", (double)(c1 - c0) / 1e6, "ms");
    emit(wname, impl->name, "idle_wakeups", (double)(v1 - v0), "wakeups");
    free(nodes);
    return 0;
}

/* ---------------------------------------------------------------- W7 -- */

typedef struct w7item {
    bnode n;
    int64_t t_post;
    long idx;
} w7item;

static struct {
    int64_t *lat;
    atomic_llong executed;
} w7s;

static void w7_cb(void *arg)
{
    w7item *it = arg;

    w7s.lat[it->idx] = now_ns() - it->t_post;
    atomic_fetch_add_explicit(&w7s.executed, 1, memory_order_release);
}

/* Until @t: sleep while far, then spin (the poster's own CPU). */
static void w7_until(int64_t t)
{
    int64_t left = t - now_ns();

    if (left > 300000) {
        struct timespec ts = { (t - 200000) / 1000000000LL,
                               (t - 200000) % 1000000000LL };
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    while (now_ns() < t) {
        cpu_relax();
    }
}

static int w7(const bimpl *impl)
{
    int64_t gap = cfg.gap_ns > 0 ? cfg.gap_ns : 5000;
    int64_t dur = cfg.quick ? 300000000LL : 3000000000LL;
    long cap = (long)(dur / gap) * 2 + 1000, i = 0;
    w7item *items = xcalloc((size_t)cap, sizeof(*items));
    uint64_t rng = 0xD1B54A32D192ED03ULL;
    int64_t t_start, t_end, c0, c1, next;
    char base[32];
    bloop l;

    if (gap % 1000000 == 0) {
        snprintf(base, sizeof(base), "W7-%lldms", (long long)(gap / 1000000));
    } else if (gap % 1000 == 0) {
        snprintf(base, sizeof(base), "W7-%lldus", (long long)(gap / 1000));
    } else {
        snprintf(base, sizeof(base), "W7-%lldns", (long long)gap);
    }
    set_name(base);
    w7s.lat = xcalloc((size_t)cap, sizeof(*w7s.lat));
    pin_self(POSTER_CPU);
    bloop_start(&l, impl, LOOP_CPU);
    /* The poster's sleeps to the us.  Only this thread: threads inherit
     * the slack, and the loops under test keep the default. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    sleep_ns(20000000); /* start from a settled, idle loop */
    t_start = next = now_ns();
    c0 = bloop_cpu_ns(&l);
    while (i < cap) {
        next += (int64_t)(-log(rng_unit(&rng)) * (double)gap);
        if (next >= t_start + dur) {
            break;
        }
        w7_until(next);
        items[i] = (w7item){ .n = { .fn = w7_cb, .arg = &items[i] }, .idx = i };
        items[i].t_post = now_ns();
        impl->post(l.loop, &items[i].n);
        i++;
    }
    w7_until(t_start + dur);
    t_end = now_ns();
    c1 = bloop_cpu_ns(&l);
    if (!wait_count(&w7s.executed, i, cfg.timeout_s)) {
        die("W7: timeout");
    }
    bloop_stop(&l);
    sort_i64(w7s.lat, (size_t)i);
    emit(wname, impl->name, "latency_median_ns",
         (double)pct_i64(w7s.lat, (size_t)i, 0.5), "ns");
    emit(wname, impl->name, "latency_p99_ns",
         (double)pct_i64(w7s.lat, (size_t)i, 0.99), "ns");
    emit(wname, impl->name, "cpu_share",
         100.0 * (double)(c1 - c0) / (double)(t_end - t_start), "%");
    write_dist(w7s.lat, (size_t)i);
    free(w7s.lat);
    free(items);
    return 0;
}

/* ------------------------------------------------------------- scale -- */

static struct {
    const bimpl *impl;
    void *loop;
    int nfd, active, rounds, round, hits;
    int *fds;
    void **w;
    uint64_t rng;
    int64_t t0, t1, budget_ns;
    bsig done;
} scs;

static void sc_round(void)
{
    uint64_t one = 1;

    scs.hits = 0;
    for (int k = 0; k < scs.active; k++) {
        /* random fds; a repeat adds 2 to one eventfd, counted once read */
        int i = (int)((rng_next(&scs.rng) % (uint64_t)scs.nfd));
        if (write(scs.fds[i], &one, sizeof(one)) != sizeof(one)) {
            die("scale: write: %m");
        }
    }
}

static void sc_ready(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t v;

    if (read(scs.fds[i], &v, sizeof(v)) != sizeof(v)) {
        return; /* spurious */
    }
    scs.hits += (int)v;
    if (scs.hits < scs.active) {
        return;
    }
    ++scs.round;
    if (scs.round < scs.rounds &&
        (scs.round < 10 || now_ns() - scs.t0 < scs.budget_ns)) {
        sc_round();
    } else {
        scs.t1 = now_ns();
        bsig_set(&scs.done);
    }
}

static void sc_watch(void *arg)
{
    (void)arg;
    for (int i = 0; i < scs.nfd; i++) {
        scs.w[i] = scs.impl->fd_watch(scs.loop, scs.fds[i], 0, sc_ready,
                                      (void *)(intptr_t)i);
    }
}

static void sc_unwatch(void *arg)
{
    (void)arg;
    for (int i = 0; i < scs.nfd; i++) {
        scs.impl->fd_unwatch(scs.loop, scs.w[i]);
    }
}

static void sc_start(void *arg)
{
    (void)arg;
    scs.round = 0;
    scs.t0 = now_ns();
    sc_round();
}

/* ns per iteration with @nfd fds watched, 100 of them made ready (and
 * read) per iteration: 1% of 10k, or 10% of 1k, the same work on top of
 * a different number of idle fds.  Bounded in rounds and in time. */
static double sc_fds(const bimpl *impl, int nfd)
{
    bloop l;

    memset(&scs, 0, sizeof(scs));
    scs.impl = impl;
    scs.nfd = nfd;
    scs.rng = 42;
    scs.active = 100;
    scs.rounds = cfg.quick ? 300 : 3000;
    scs.budget_ns = cfg.quick ? 500000000LL : 3000000000LL;
    scs.fds = xcalloc((size_t)nfd, sizeof(*scs.fds));
    scs.w = xcalloc((size_t)nfd, sizeof(*scs.w));
    for (int i = 0; i < nfd; i++) {
        scs.fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (scs.fds[i] < 0) {
            die("eventfd (%d fds): %m", i);
        }
    }
    bloop_start(&l, impl, LOOP_CPU);
    scs.loop = l.loop;
    bloop_call(&l, sc_watch, NULL);
    bloop_call(&l, sc_start, NULL);
    bsig_wait(&scs.done, false, "scale fds");
    bloop_call(&l, sc_unwatch, NULL);
    bloop_stop(&l);
    for (int i = 0; i < nfd; i++) {
        close(scs.fds[i]);
    }
    free(scs.fds);
    free(scs.w);
    return (double)(scs.t1 - scs.t0) / scs.round;
}

static void sc_emit(const bimpl *impl, const char *metric, double v,
                    const char *unit)
{
    char m[64];

    if (cfg.fdmon) {
        snprintf(m, sizeof(m), "%s_%s", metric, cfg.fdmon);
    } else {
        snprintf(m, sizeof(m), "%s", metric);
    }
    emit("scale", impl->name, m, v, unit);
}

static int scale(const bimpl *impl)
{
    int k = cfg.quick ? 200 : 1000;
    void **loops;
    long rss0, rss1;
    int64_t t0, t1;

    if (impl->loop_spins) {
        return NA; /* k spinning threads measure nothing */
    }
    pin_self(POSTER_CPU);
    /* k create+destroy pairs, one at a time */
    t0 = now_ns();
    for (int i = 0; i < k; i++) {
        void *lp = impl->create(impl);
        if (!lp) {
            die("create #%d", i);
        }
        impl->destroy(lp);
    }
    t1 = now_ns();
    sc_emit(impl, "create_destroy_us", (double)(t1 - t0) / k / 1e3, "us");

    /* k alive at once: memory */
    loops = xcalloc((size_t)k, sizeof(*loops));
    rss0 = proc_status_kb("VmRSS");
    for (int i = 0; i < k; i++) {
        loops[i] = impl->create(impl);
        if (!loops[i]) {
            die("create #%d of %d alive", i, k);
        }
    }
    sleep_ns(100000000);
    rss1 = proc_status_kb("VmRSS");
    for (int i = 0; i < k; i++) {
        impl->destroy(loops[i]);
    }
    free(loops);
    sc_emit(impl, "mem_per_loop_kb", (double)(rss1 - rss0) / k, "KiB");
    sc_emit(impl, "peak_rss_kb", (double)proc_status_kb("VmHWM"), "KiB");

    if (impl->fd_watch) {
        sc_emit(impl, "iter_ns_1kfds", sc_fds(impl, 1000), "ns");
        sc_emit(impl, "iter_ns_10kfds", sc_fds(impl, 10000), "ns");
    }
    return 0;
}

/* ---------------------------------------------------------------------- */

int run_workload(const char *name, const bimpl *impl)
{
    if (!strcmp(name, "W1")) {
        return w1(impl, false);
    } else if (!strcmp(name, "W1-reused")) {
        return w1(impl, true);
    } else if (!strcmp(name, "W2")) {
        return w2(impl, false);
    } else if (!strcmp(name, "W2-shared")) {
        return w2(impl, true);
    } else if (!strcmp(name, "W3")) {
        return w3(impl);
    } else if (!strcmp(name, "W4")) {
        return w4(impl);
    } else if (!strcmp(name, "W5")) {
        return w5(impl);
    } else if (!strcmp(name, "W6")) {
        return w6(impl);
    } else if (!strcmp(name, "W7")) {
        return w7(impl);
    } else if (!strcmp(name, "scale")) {
        return scale(impl);
    }
    fprintf(stderr, "unknown workload '%s'\n", name);
    return 1;
}
