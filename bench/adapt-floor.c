/* SPDX-License-Identifier: MIT */
/*
 * Library-free floors: a loop thread that drains the harness's MPSC queue
 * and, when it is empty,
 *   floor-spin     spins (and W1's poster spins for the reply too);
 *   floor-polls    spins (W1's poster sleeps on its futex, as for every
 *                  other implementation);
 *   floor-futex    sleeps on a futex;
 *   floor-eventfd  sleeps in read(2) on an eventfd;
 * with the elision every real loop has: the poster makes the system call
 * only when the loop said it is going to sleep (a Dekker pair on
 * `waiting`).  floor-pipes has no queue: a post writes the node's address
 * into a pipe (8 bytes, atomic) and the loop blocks in read(2) on it.
 * No timers, no pool; W3 of floor-pipes is two threads doing blocking
 * reads and writes on two pipes (workloads.c).
 *
 * With --fdmon=io_uring, each loop thread first submits one NOP to a ring
 * the process shares and reaps it: scale's create_destroy_us_io_uring of
 * a floor is then what the kernel's per-thread io_uring context costs a
 * thread that lives that short (the same ring is used from every thread,
 * as iothread's ring cache does).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#ifdef BENCH_URING
#include <liburing.h>
#endif

#include "bench.h"

enum { F_SPIN, F_POLLS, F_FUTEX, F_EVENTFD, F_PIPES };

typedef struct floorl {
    int mode;
    mpsc q;
    atomic_int waiting; /* the loop is going to sleep */
    int efd;
    int pfd[2];
    bool stop; /* [loop] */
    pthread_t thr;
} floorl;

static void floor_run_pipe(floorl *l)
{
    bnode *buf[512];

    while (!l->stop) {
        ssize_t n = read(l->pfd[0], buf, sizeof(buf));

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("floor-pipes: read: %m");
        }
        /* Writes are 8 bytes and atomic, so reads come in whole nodes. */
        for (size_t i = 0; i < (size_t)n / sizeof(bnode *); i++) {
            buf[i]->fn(buf[i]->arg);
        }
    }
}

#ifdef BENCH_URING
static struct io_uring floor_ring;
static pthread_mutex_t floor_ring_lock = PTHREAD_MUTEX_INITIALIZER;
static bool floor_ring_up; /* [floor_ring_lock] */

/* The loop thread: one NOP through the shared ring, so that the kernel
 * sets up this thread's io_uring context (and tears it down at exit). */
static void floor_uring_touch(void)
{
    struct io_uring_cqe *cqe;
    int r;

    pthread_mutex_lock(&floor_ring_lock);
    if (!floor_ring_up) {
        r = io_uring_queue_init(8, &floor_ring, IORING_SETUP_COOP_TASKRUN);
        if (r < 0) {
            die("io_uring_queue_init: %s", strerror(-r));
        }
        floor_ring_up = true;
    }
    io_uring_prep_nop(io_uring_get_sqe(&floor_ring));
    if ((r = io_uring_submit_and_wait(&floor_ring, 1)) < 0 ||
        (r = io_uring_wait_cqe(&floor_ring, &cqe)) < 0) {
        die("io_uring NOP: %s", strerror(-r));
    }
    io_uring_cqe_seen(&floor_ring, cqe);
    pthread_mutex_unlock(&floor_ring_lock);
}
#else
static void floor_uring_touch(void)
{
    die("floor: built without liburing");
}
#endif

static void *floor_main(void *opaque)
{
    floorl *l = opaque;
    uint64_t v;

    if (cfg.fdmon && !strcmp(cfg.fdmon, "io_uring")) {
        floor_uring_touch();
    }
    if (l->mode == F_PIPES) {
        floor_run_pipe(l);
        return NULL;
    }
    while (!l->stop) {
        if (mpsc_run(&l->q)) {
            continue;
        }
        switch (l->mode) {
        case F_SPIN:
        case F_POLLS:
            cpu_relax();
            break;
        case F_FUTEX:
            atomic_store(&l->waiting, 1);
            if (atomic_load(&l->q.head)) {
                atomic_store(&l->waiting, 0);
                break;
            }
            while (atomic_load(&l->waiting) == 1) {
                futex_wait(&l->waiting, 1, -1);
            }
            break;
        case F_EVENTFD:
            atomic_store(&l->waiting, 1);
            if (atomic_load(&l->q.head) &&
                atomic_exchange(&l->waiting, 0) == 1) {
                break; /* nobody took our announcement: no write coming */
            }
            /* A poster cleared `waiting` and writes (or has written). */
            while (read(l->efd, &v, sizeof(v)) < 0 && errno == EINTR) {
            }
            break;
        }
    }
    return NULL;
}

static void *floor_create(const bimpl *impl)
{
    floorl *l = xcalloc(1, sizeof(*l));

    l->mode = (int)impl->param;
    l->efd = l->pfd[0] = l->pfd[1] = -1;
    if (l->mode == F_EVENTFD && (l->efd = eventfd(0, EFD_CLOEXEC)) < 0) {
        die("eventfd: %m");
    }
    if (l->mode == F_PIPES && pipe(l->pfd) < 0) {
        die("pipe: %m");
    }
    if (pthread_create(&l->thr, NULL, floor_main, l) != 0) {
        die("pthread_create");
    }
    return l;
}

static void floor_post(void *loop, bnode *n)
{
    floorl *l = loop;
    uint64_t one = 1;

    if (l->mode == F_PIPES) {
        while (write(l->pfd[1], &n, sizeof(n)) != (ssize_t)sizeof(n)) {
            if (errno != EINTR) {
                die("floor-pipes: write: %m");
            }
        }
        return;
    }
    mpsc_push(&l->q, n);
    if (l->mode == F_FUTEX || l->mode == F_EVENTFD) {
        /* seq_cst push, then seq_cst load: the Dekker pair with the
         * loop's store of `waiting`, then load of the queue. */
        if (atomic_load(&l->waiting) && atomic_exchange(&l->waiting, 0)) {
            if (l->mode == F_FUTEX) {
                futex_wake(&l->waiting, 1);
            } else if (write(l->efd, &one, sizeof(one)) < 0) {
                die("floor-eventfd: write: %m");
            }
        }
    }
}

static void floor_stop_cb(void *arg)
{
    floorl *l = arg;

    l->stop = true;
}

static void floor_destroy(void *loop)
{
    floorl *l = loop;
    bnode stop = { .fn = floor_stop_cb, .arg = l };

    floor_post(l, &stop);
    pthread_join(l->thr, NULL);
    if (l->efd >= 0) {
        close(l->efd);
    }
    if (l->pfd[0] >= 0) {
        close(l->pfd[0]);
        close(l->pfd[1]);
    }
    free(l);
}

#define FLOOR(NAME, MODE, ...)                                                 \
    {                                                                          \
        .name = NAME, .param = MODE, .create = floor_create,                   \
        .destroy = floor_destroy, .post = floor_post, __VA_ARGS__              \
    }

const bimpl bench_floor_spin =
    FLOOR("floor-spin", F_SPIN, .poster_spins = true, .loop_spins = true);
const bimpl bench_floor_polls =
    FLOOR("floor-polls", F_POLLS, .loop_spins = true);
const bimpl bench_floor_futex = FLOOR("floor-futex", F_FUTEX);
const bimpl bench_floor_eventfd = FLOOR("floor-eventfd", F_EVENTFD);
const bimpl bench_floor_pipes =
    FLOOR("floor-pipes", F_PIPES, .pipe_pingpong = true);
