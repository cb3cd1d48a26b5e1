/* SPDX-License-Identifier: MIT */
/* The harness: time, pinning, /proc, futex signals, the MPSC queue,
 * the loop under test, samples and records. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

bcfg cfg = { .timeout_s = 60, .producers = 1, .ncpu = 1 };

int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t clock_ns(clockid_t clk)
{
    struct timespec ts;

    if (clock_gettime(clk, &ts) < 0) {
        return -1;
    }
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void pin_self(int cpu)
{
    cpu_set_t set;

    if (cpu < 0 || cfg.ncpu < 2) {
        return;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu % cfg.ncpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0) {
        perror("sched_setaffinity");
    }
}

void unpin_self(void)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    for (int i = 0; i < cfg.ncpu; i++) {
        CPU_SET(i, &set);
    }
    sched_setaffinity(0, sizeof(set), &set);
}

static long status_field(const char *path, const char *field)
{
    char line[256];
    size_t len = strlen(field);
    long v = -1;
    FILE *f = fopen(path, "r");

    if (!f) {
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, field, len) && line[len] == ':') {
            v = strtol(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

void proc_ctxsw(pid_t tid, long *vol, long *invol)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
    *vol = status_field(path, "voluntary_ctxt_switches");
    *invol = status_field(path, "nonvoluntary_ctxt_switches");
}

long proc_status_kb(const char *field)
{
    return status_field("/proc/self/status", field);
}

/* ---- futex ---- */

void futex_wait(atomic_int *a, int val, int64_t timeout_ns)
{
    struct timespec ts = { timeout_ns / 1000000000LL,
                           timeout_ns % 1000000000LL };

    syscall(SYS_futex, a, FUTEX_WAIT_PRIVATE, val, timeout_ns >= 0 ? &ts : NULL,
            NULL, 0);
}

void futex_wake(atomic_int *a, int n)
{
    syscall(SYS_futex, a, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void bsig_reset(bsig *s)
{
    atomic_store_explicit(&s->v, 0, memory_order_relaxed);
}

void bsig_set(bsig *s)
{
    /* seq_cst store, then seq_cst load: the Dekker pair with bsig_wait's
     * waiters++ then load of v. */
    atomic_store(&s->v, 1);
    if (atomic_load(&s->waiters)) {
        futex_wake(&s->v, INT_MAX);
    }
}

void bsig_wait(bsig *s, bool spin, const char *what)
{
    int64_t deadline = 0;
    unsigned n = 0;

    if (atomic_load_explicit(&s->v, memory_order_acquire)) {
        return;
    }
    if (spin) {
        while (!atomic_load_explicit(&s->v, memory_order_acquire)) {
            cpu_relax();
            if (++n % (1u << 20) == 0) {
                if (!deadline) {
                    deadline = now_ns() + (int64_t)(cfg.timeout_s * 1e9);
                } else if (now_ns() > deadline) {
                    die("timeout waiting for %s", what);
                }
            }
        }
        return;
    }
    atomic_fetch_add(&s->waiters, 1);
    while (!atomic_load(&s->v)) {
        if (!deadline) {
            deadline = now_ns() + (int64_t)(cfg.timeout_s * 1e9);
        } else if (now_ns() > deadline) {
            die("timeout waiting for %s", what);
        }
        futex_wait(&s->v, 0, 1000000000LL);
    }
    atomic_fetch_sub(&s->waiters, 1);
}

/* ---- MPSC queue: a Treiber stack taken whole and reversed ---- */

bool mpsc_push(mpsc *q, bnode *n)
{
    bnode *head = atomic_load_explicit(&q->head, memory_order_relaxed);

    do {
        n->next = head;
    } while (!atomic_compare_exchange_weak_explicit(
        &q->head, &head, n, memory_order_seq_cst, memory_order_relaxed));
    return head == NULL;
}

bnode *mpsc_take(mpsc *q)
{
    bnode *n = atomic_exchange_explicit(&q->head, NULL, memory_order_acquire);
    bnode *fifo = NULL;

    while (n) {
        bnode *next = n->next;
        n->next = fifo;
        fifo = n;
        n = next;
    }
    return fifo;
}

size_t mpsc_run(mpsc *q)
{
    bnode *n = mpsc_take(q);
    size_t count = 0;

    while (n) {
        bnode *next = n->next; /* fn may repost n */
        n->fn(n->arg);
        n = next;
        count++;
    }
    return count;
}

/* ---- the loop under test ---- */

typedef struct call {
    bench_cb *fn;
    void *arg;
    bsig done;
} call;

static void call_run(void *opaque)
{
    call *c = opaque;

    c->fn(c->arg);
    bsig_set(&c->done);
}

void bloop_call(bloop *l, bench_cb *fn, void *arg)
{
    call c = { .fn = fn, .arg = arg };
    bnode n = { .fn = call_run, .arg = &c };

    l->impl->post(l->loop, &n);
    bsig_wait(&c.done, false, "a call on the loop");
}

typedef struct info {
    bloop *l;
    int cpu;
} info;

static void info_run(void *opaque)
{
    info *i = opaque;
    pthread_t self = pthread_self();

    i->l->tid = (pid_t)syscall(SYS_gettid);
    if (pthread_getcpuclockid(self, &i->l->cpuclock) != 0) {
        i->l->cpuclock = (clockid_t)-1;
    }
    pin_self(i->cpu);
}

void bloop_start(bloop *l, const bimpl *impl, int cpu)
{
    info i = { l, cpu };

    *l = (bloop){ .impl = impl };
    l->loop = impl->create(impl);
    if (!l->loop) {
        die("%s: cannot create a loop", impl->name);
    }
    bloop_call(l, info_run, &i);
    if (impl->describe) {
        char buf[128];
        impl->describe(l->loop, buf, sizeof(buf));
        fprintf(stderr, "# %s: %s\n", impl->name, buf);
    }
}

void bloop_stop(bloop *l)
{
    if (l->loop) {
        l->impl->destroy(l->loop);
        l->loop = NULL;
    }
}

int64_t bloop_cpu_ns(bloop *l)
{
    return clock_ns(l->cpuclock);
}

/* ---- samples and output ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

void sort_i64(int64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_i64);
}

int64_t pct_i64(const int64_t *v, size_t n, double q)
{
    size_t i;

    if (!n) {
        return 0;
    }
    i = (size_t)(q * (double)n);
    return v[i < n ? i : n - 1];
}

void emit(const char *workload, const char *impl, const char *metric,
          double value, const char *unit)
{
    printf("R\t%s\t%s\t%s\t%.6g\t%s\n", workload, impl, metric, value, unit);
    fflush(stdout);
}

void write_dist(const int64_t *v, size_t n)
{
    FILE *f;
    const size_t points = 500;

    if (!cfg.dist || !n) {
        return;
    }
    f = fopen(cfg.dist, "w");
    if (!f) {
        perror(cfg.dist);
        return;
    }
    fprintf(f, "# ns fraction (%zu samples)\n", n);
    for (size_t k = 0; k <= points; k++) {
        size_t i = k * (n - 1) / points;
        fprintf(f, "%lld %.6f\n", (long long)v[i], (double)(i + 1) / (double)n);
    }
    fclose(f);
}

void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("iot-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stdout);
    _exit(3);
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (!p) {
        die("out of memory (%zu x %zu)", n, size);
    }
    return p;
}

uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

double rng_unit(uint64_t *s)
{
    return ((double)(rng_next(s) >> 11) + 1.0) / 9007199254740992.0;
}
