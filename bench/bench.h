/* SPDX-License-Identifier: MIT */
/*
 * libiothread benchmarks: the adapter interface and the harness helpers.
 *
 * Every workload (workloads.c) is written once against struct bimpl; each
 * implementation (adapt-*.c) fills one in.  A "loop" is an event loop
 * running on a thread of its own; the harness talks to it only by posting
 * callbacks from other threads (post), and does everything else (timers,
 * the thread pool, fd watches) from callbacks that run on the loop thread.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

typedef void bench_cb(void *arg);

/* One posted callback.  The poster owns the node; it must stay valid
 * until fn has run, and may be posted again after that.  `next` belongs
 * to the adapter (its queue link). */
typedef struct bnode {
    struct bnode *next;
    bench_cb *fn;
    void *arg;
} bnode;

/* One thread-pool item: work(arg) on a worker, done(arg) on the loop. */
typedef struct bwork {
    bench_cb *work;
    bench_cb *done;
    void *arg;
} bwork;

/* fd watch flags */
enum {
    BFD_IOPOLL = 1, /* iothread: add an io_poll callback (ioctl FIONREAD) */
};

typedef struct bimpl bimpl;
struct bimpl {
    const char *name;
    int64_t param;      /* adapter's own (iothread: poll-max-ns, -1 default;
                           floors: the mode) */
    bool poster_spins;  /* W1: the poster spins for the reply (floor-spin) */
    bool loop_spins;    /* the loop thread never sleeps (spin floors) */
    bool pipe_pingpong; /* W3 is the two-thread blocking-pipe floor */

    /* Any thread.  A running loop on a new thread; NULL on failure. */
    void *(*create)(const bimpl *impl);
    /* Any thread but the loop's.  Stops and joins; pending posts may be
     * dropped. */
    void (*destroy)(void *loop);
    /* Any thread but the loop's.  Runs n->fn(n->arg) once on the loop. */
    void (*post)(void *loop, bnode *n);

    /* Optional: a reusable posting handle (a BH), any thread. */
    void *(*handle_new)(void *loop, bench_cb *fn, void *arg);
    void (*handle_post)(void *h);
    void (*handle_free)(void *h);

    /* Optional timers; loop thread only.  Deadlines are CLOCK_MONOTONIC
     * ns.  batch_begin is called before a batch of arms (adapters with a
     * cached loop time refresh it there). */
    void (*timer_batch_begin)(void *loop);
    void *(*timer_new)(void *loop, bench_cb *fn, void *arg);
    void (*timer_arm)(void *loop, void *t, int64_t deadline_ns);
    void (*timer_cancel)(void *loop, void *t);
    void (*timer_free)(void *loop, void *t);

    /* Optional thread pool; loop thread only.  0 or -1. */
    int (*pool_submit)(void *loop, bwork *w);

    /* Optional fd watch for readability; loop thread only. */
    void *(*fd_watch)(void *loop, int fd, unsigned flags, bench_cb *cb,
                      void *arg);
    void (*fd_unwatch)(void *loop, void *w);

    /* Optional: one line about the loop for stderr (backend...). */
    void (*describe)(void *loop, char *buf, size_t len);
};

/* The implementations (adapt-*.c), and lookup by name (main.c). */
extern const bimpl bench_iothread, bench_iothread_nopoll, bench_libuv,
    bench_libevent, bench_glib, bench_floor_spin, bench_floor_polls,
    bench_floor_futex, bench_floor_eventfd, bench_floor_pipes;
const bimpl *bench_impl_find(const char *name);
void bench_impl_list(void);

/* ---- configuration (main.c) ---- */
typedef struct bcfg {
    bool quick;
    unsigned flags;      /* BFD_* for W3 */
    int64_t gap_ns;      /* W7 */
    int producers;       /* W2 */
    const char *variant; /* suffix of the workload name, or NULL */
    const char *dist;    /* write the latency distribution here */
    double timeout_s;    /* bound of each wait */
    const char *fdmon;   /* iothread backend (IOTHREAD_FDMON), or NULL */
    int ncpu;
} bcfg;
extern bcfg cfg;

/* ---- time, CPU, /proc ---- */
int64_t now_ns(void);
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
/* Pins the calling thread to @cpu if the machine has more than one. */
void pin_self(int cpu);
void unpin_self(void);
int64_t clock_ns(clockid_t clk);
/* voluntary and involuntary context switches of a thread of ours */
void proc_ctxsw(pid_t tid, long *vol, long *invol);
long proc_status_kb(const char *field); /* "VmRSS", "VmHWM" */

/* ---- futex-based signals (W1's wait: sleep unless already set) ---- */
typedef struct bsig {
    atomic_int v;
    atomic_int waiters;
} bsig;
void bsig_reset(bsig *s);
void bsig_set(bsig *s);
/* Waits for the signal; exits the process on timeout.  With @spin, spins
 * instead of sleeping. */
void bsig_wait(bsig *s, bool spin, const char *what);
void futex_wait(atomic_int *a, int val, int64_t timeout_ns);
void futex_wake(atomic_int *a, int n);

/* ---- a lock-free MPSC queue (the queue in front of coalescing peers) */
typedef struct mpsc {
    _Atomic(bnode *) head;
} mpsc;
/* Any thread.  True if the queue was empty. */
bool mpsc_push(mpsc *q, bnode *n);
/* Consumer.  Takes everything, oldest first. */
bnode *mpsc_take(mpsc *q);
/* Consumer.  Runs everything queued, oldest first; returns the count. */
size_t mpsc_run(mpsc *q);

/* ---- the loop under test ---- */
typedef struct bloop {
    const bimpl *impl;
    void *loop;
    pid_t tid;
    clockid_t cpuclock;
} bloop;
/* Creates a loop, learns its thread (TID, CPU clock) and pins it to @cpu
 * (-1: not pinned).  Exits the process on failure. */
void bloop_start(bloop *l, const bimpl *impl, int cpu);
void bloop_stop(bloop *l);
/* Runs fn(arg) on the loop thread and waits for it. */
void bloop_call(bloop *l, bench_cb *fn, void *arg);
int64_t bloop_cpu_ns(bloop *l);

/* ---- samples and output ---- */
void sort_i64(int64_t *v, size_t n);
/* @v sorted */
int64_t pct_i64(const int64_t *v, size_t n, double q);
void emit(const char *workload, const char *impl, const char *metric,
          double value, const char *unit);
/* Writes the CDF of sorted @v (value, fraction) to cfg.dist if set. */
void write_dist(const int64_t *v, size_t n);
/* Prints to stderr and exits with status 3. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xcalloc(size_t n, size_t size);

/* xorshift64* */
uint64_t rng_next(uint64_t *s);
double rng_unit(uint64_t *s); /* (0, 1] */

/* ---- workloads (workloads.c) ---- */
int run_workload(const char *name, const bimpl *impl);

#endif
