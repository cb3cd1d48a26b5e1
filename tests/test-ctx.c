/* SPDX-License-Identifier: MIT */
/*
 * The context itself: lifecycle, current and main contexts, notify, and
 * the parameters it stores.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "harness.h"

static IotCtx *new_current(void)
{
    IotError *err = NULL;
    IotCtx *ctx = iot_ctx_new(&err);

    T_ASSERT(ctx);
    T_ASSERT(!err);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    return ctx;
}

static void test_lifecycle(void)
{
    IotCtx *ctx = iot_ctx_new(NULL);

    T_ASSERT(ctx);
    T_ASSERT(iot_ctx_current() == NULL);
    iot_ctx_ref(ctx);
    iot_ctx_unref(ctx);
    /* Still alive: usable. */
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_ctx_unref(ctx);
    /* The last unref of the current context clears "current". */
    T_ASSERT(iot_ctx_current() == NULL);
    iot_ctx_unref(NULL);
}

static void test_fd_leak(void)
{
    int before, after;
    int probe[2];

    /* The lowest free fd after create+destroy is the one before. */
    T_ASSERT_EQ(pipe(probe), 0);
    before = probe[0];
    close(probe[0]);
    close(probe[1]);
    for (int i = 0; i < 100; i++) {
        IotCtx *ctx = iot_ctx_new(NULL);
        T_ASSERT(ctx);
        iot_ctx_unref(ctx);
    }
    /* An io_uring ring is kept in the ring cache on purpose (one, reused
     * by every context after the first). */
    iot__io_uring_cache_flush();
    T_ASSERT_EQ(pipe(probe), 0);
    after = probe[0];
    close(probe[0]);
    close(probe[1]);
    T_ASSERT_EQ(after, before);
}

static void test_current(void)
{
    IotCtx *a = iot_ctx_new(NULL), *b = iot_ctx_new(NULL);

    T_ASSERT(a && b);
    T_ASSERT_EQ(iot_ctx_set_current(a), 0);
    T_ASSERT(iot_ctx_current() == a);
    /* One current context per thread. */
    T_ASSERT_EQ(iot_ctx_set_current(b), -EBUSY);
    T_ASSERT(iot_ctx_current() == a);
    T_ASSERT_EQ(iot_ctx_set_current(a), 0);
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    T_ASSERT_EQ(iot_ctx_set_current(b), 0);
    T_ASSERT(iot_ctx_current() == b);
    iot_ctx_set_current(NULL);
    iot_ctx_unref(a);
    iot_ctx_unref(b);
}

static void *current_in_thread(void *opaque)
{
    (void)opaque;
    return iot_ctx_current();
}

static void test_current_is_per_thread(void)
{
    IotCtx *ctx = new_current();
    pthread_t tid;
    void *seen = (void *)1;

    T_ASSERT_EQ(pthread_create(&tid, NULL, current_in_thread, NULL), 0);
    pthread_join(tid, &seen);
    T_ASSERT(seen == NULL);
    iot_ctx_unref(ctx);
}

static void test_main(void)
{
    IotError *err = NULL;
    IotCtx *ctx;

    T_ASSERT(iot_ctx_main() == NULL);
    ctx = iot_ctx_main_init(&err);
    T_ASSERT(ctx);
    T_ASSERT(iot_ctx_main() == ctx);
    T_ASSERT(iot_ctx_current() == ctx);
    /* Only one. */
    T_ASSERT(iot_ctx_main_init(&err) == NULL);
    T_ASSERT(err);
    T_ASSERT(strstr(iot_error_message(err), "main context"));
    iot_error_free(err);
    err = NULL;
    iot_ctx_main_fini();
    T_ASSERT(iot_ctx_main() == NULL);
    T_ASSERT(iot_ctx_current() == NULL);

    /* A thread that already runs a context of its own cannot be the main
     * thread: refused, and nothing is left registered. */
    ctx = new_current();
    T_ASSERT(iot_ctx_main_init(&err) == NULL);
    T_ASSERT(err);
    T_ASSERT(strstr(iot_error_message(err), "already has a current context"));
    iot_error_free(err);
    err = NULL;
    T_ASSERT(iot_ctx_main() == NULL);
    T_ASSERT(iot_ctx_current() == ctx);
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
    ctx = iot_ctx_main_init(&err); /* and it can be made afterwards */
    T_ASSERT(ctx && iot_ctx_main() == ctx);
    iot_ctx_main_fini();
}

static void test_poll_params(void)
{
    IotCtx *ctx = new_current();
    int64_t max, grow, shrink;

    /* A bare context does not poll (QEMU's AioContext default). */
    iot_ctx_get_poll_params(ctx, &max, &grow, &shrink);
    T_ASSERT_EQ(max, 0);
    T_ASSERT_EQ(grow, 0);
    T_ASSERT_EQ(shrink, 0);
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 32768, 3, 4), 0);
    iot_ctx_get_poll_params(ctx, &max, &grow, &shrink);
    T_ASSERT_EQ(max, 32768);
    T_ASSERT_EQ(grow, 3);
    T_ASSERT_EQ(shrink, 4);
    /* Negative values are refused and change nothing. */
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, -1, 0, 0), -EINVAL);
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 1, -1, 0), -EINVAL);
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 1, 0, -1), -EINVAL);
    iot_ctx_get_poll_params(ctx, &max, &grow, &shrink);
    T_ASSERT_EQ(max, 32768);
    T_ASSERT_EQ(grow, 3);
    T_ASSERT_EQ(shrink, 4);
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, INT64_MAX, INT64_MAX, INT64_MAX),
                0);
    /* The loop takes them in its next iteration. */
    iot_ctx_poll(ctx, false);
    T_ASSERT_EQ(ctx->param.max_ns, INT64_MAX);
    iot_ctx_unref(ctx);
}

static void test_max_batch(void)
{
    IotCtx *ctx = new_current();

    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 0);
    T_ASSERT_EQ(iot_ctx_set_max_batch(ctx, 32), 0);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 32);
    T_ASSERT_EQ(iot_ctx_set_max_batch(ctx, -5), -EINVAL);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 32);
    iot_ctx_unref(ctx);
}

/* A plain notify is never progress (QEMU's old /aio/notify). */
static void test_notify_not_progress(void)
{
    IotCtx *ctx = new_current();

    iot_ctx_notify(ctx);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_ctx_notify(ctx);
    /* Blocking, but notified: returns at once, with no progress. */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_ctx_unref(ctx);
}

typedef struct Waker {
    IotCtx *ctx;
    pthread_t tid;
} Waker;

static void *wake_when_blocked(void *opaque)
{
    Waker *w = opaque;

    /* notify_me != 0: the loop has announced that it may block. */
    while (!atomic_load(&w->ctx->notify_me)) {
        sched_yield();
    }
    iot_ctx_notify(w->ctx);
    return NULL;
}

/* A notify from another thread wakes a blocked poll, through the eventfd. */
static void test_notify_wakes(void)
{
    IotCtx *ctx = new_current();
    Waker w = { .ctx = ctx };
    unsigned long kicks = atomic_load(&ctx->notify_kicks);

    T_ASSERT_EQ(pthread_create(&w.tid, NULL, wake_when_blocked, &w), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    pthread_join(w.tid, NULL);
    T_ASSERT(atomic_load(&ctx->notify_kicks) >= kicks + 1);
    iot_ctx_unref(ctx);
}

static void bh_notify_many(void *opaque)
{
    IotCtx *ctx = opaque;

    for (int i = 0; i < 100; i++) {
        iot_ctx_notify(ctx);
    }
}

/* No eventfd write while the loop is awake: notifies from a callback (the
 * loop is running, notify_me is 0) cost no system call. */
static void test_notify_elided_when_awake(void)
{
    IotCtx *ctx = new_current();
    unsigned long kicks = atomic_load(&ctx->notify_kicks);
    IotCtxStats before, after;

    iot_ctx_get_stats(ctx, &before);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, bh_notify_many, ctx), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(atomic_load(&ctx->notify_kicks), kicks);
    /* Two flips of `notified`, both while the loop was awake: the
     * schedule's, and one in the callback (the other 99 found it set).
     * Each is counted when it is made, before the loop accepts it. */
    iot_ctx_get_stats(ctx, &after);
    T_ASSERT_EQ(after.notify_sent, before.notify_sent);
    T_ASSERT_EQ(after.notify_elided, before.notify_elided + 2);
    iot_ctx_unref(ctx);
}

/* ---- the counters never go back ---- */

static atomic_bool mono_stop;

static void *mono_loop(void *opaque)
{
    IotCtx *ctx = opaque;

    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    while (!atomic_load(&mono_stop)) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    return NULL;
}

static void *mono_notifier(void *opaque)
{
    while (!atomic_load(&mono_stop)) {
        iot_ctx_notify(opaque);
    }
    return NULL;
}

/* A loop that sleeps and wakes, a thread that notifies without a break,
 * and a reader: no counter may ever read lower than before.  (The elided
 * count, derived as accepts minus writes, went 1 -> 0 within some 30k
 * reads.) */
/* A fresh context has counted no notification: registering its own
 * notifier flipped `notified`, but no loop ever saw that. */
static void test_stats_fresh(void)
{
    IotCtx *ctx = iot_ctx_new(NULL);
    IotCtxStats s;

    T_ASSERT(ctx);
    iot_ctx_get_stats(ctx, &s);
    T_ASSERT_EQ(s.notify_sent, 0);
    T_ASSERT_EQ(s.notify_elided, 0);
    T_ASSERT_EQ(s.iterations, 0);
    iot_ctx_unref(ctx);
}

static void test_stats_monotonic(void)
{
    IotCtx *ctx = iot_ctx_new(NULL);
    pthread_t loop, notifier;
    IotCtxStats prev = { 0 }, s;
    long reads = t_scale(3000000, 10);

    T_ASSERT(ctx);
    atomic_store(&mono_stop, false);
    T_ASSERT_EQ(pthread_create(&loop, NULL, mono_loop, ctx), 0);
    T_ASSERT_EQ(pthread_create(&notifier, NULL, mono_notifier, ctx), 0);
    for (long i = 0; i < reads; i++) {
        iot_ctx_get_stats(ctx, &s);
#define MONO(f)                                                                \
    if (s.f < prev.f) {                                                        \
        t_fail(__FILE__, __LINE__, "%s went back: %llu -> %llu at read %ld",   \
               #f, (unsigned long long)prev.f, (unsigned long long)s.f, i);    \
    }
        MONO(iterations)
        MONO(busy_ns)
        MONO(idle_ns)
        MONO(poll_hits)
        MONO(poll_misses)
        MONO(poll_ns)
        MONO(notify_sent)
        MONO(notify_elided)
        MONO(bh_runs)
        MONO(fd_events)
        MONO(timer_fires)
#undef MONO
        prev = s;
    }
    atomic_store(&mono_stop, true);
    T_ASSERT_EQ(pthread_join(notifier, NULL), 0);
    iot_ctx_notify(ctx);
    T_ASSERT_EQ(pthread_join(loop, NULL), 0);
    T_ASSERT(prev.notify_sent + prev.notify_elided > 0);
    iot_ctx_unref(ctx);
}

/* ---- sleeping in read(2) (fd.c, fdmon-poll.c) ---- */

static void noop_read(void *opaque)
{
    (void)opaque;
}

/* Does this kernel take RWF_NOWAIT on an eventfd (Linux 5.13 on)? */
static bool eventfd_takes_nowait(void)
{
#ifndef RWF_NOWAIT
    return false;
#else
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    uint64_t v;
    struct iovec iov = { &v, sizeof(v) };
    bool ok;

    T_ASSERT(fd >= 0);
    ok = preadv2(fd, &iov, 1, -1, RWF_NOWAIT) < 0 && errno == EAGAIN;
    close(fd);
    return ok;
#endif
}

/* A context on the poll backend that only sleeps (no busy polling). */
static IotCtx *new_poll_sleeper(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_POLL };
    IotCtx *ctx = iot_ctx_new_full(&opts, NULL);

    T_ASSERT(ctx);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 0, 0, 0), 0);
    iot_ctx_poll(ctx, false); /* accepts that change's own notify */
    return ctx;
}

typedef struct Sleeper {
    IotCtx *ctx;
    unsigned long sleeps; /* notifier_sleeps before the loop's wait */
    int pipefd[2];        /* -1: just notify */
    pthread_t tid;
} Sleeper;

static void pipe_read(void *opaque)
{
    Sleeper *s = opaque;
    char c;

    T_ASSERT_EQ(read(s->pipefd[0], &c, 1), 1);
    s->pipefd[0] = -s->pipefd[0] - 2; /* ran (and cannot match again) */
}

/* Once the loop is in its read(2) (the count goes up just before it),
 * notify it, or watch a new fd and make it readable. */
static void *wake_sleeper(void *opaque)
{
    Sleeper *s = opaque;

    while (atomic_load(&s->ctx->notifier_sleeps) == s->sleeps) {
        sched_yield();
    }
    if (s->pipefd[0] < 0) {
        iot_ctx_notify(s->ctx);
        return NULL;
    }
    T_ASSERT_EQ(iot_fd_set_handler(s->ctx, s->pipefd[0], pipe_read, NULL, NULL,
                                   NULL, s),
                0);
    T_ASSERT_EQ(write(s->pipefd[1], "x", 1), 1);
    return NULL;
}

/* With nothing but its notifier to watch and no timeout, a blocked poll
 * sleeps in one read(2) of a blocking eventfd: the read that wakes it has
 * drained the kick, and the notifier is dispatched (as after ppoll)
 * without reading again. */
static void test_notify_sleeps_in_read(void)
{
    IotCtx *ctx = new_poll_sleeper();
    int flags = fcntl(ctx->notifier.rfd, F_GETFL);

    if (!eventfd_takes_nowait()) {
        fprintf(stderr, "eventfd without RWF_NOWAIT: ppoll, then read\n");
        T_ASSERT_FALSE(ctx->notifier_blocks);
        T_ASSERT(flags & O_NONBLOCK);
        iot_ctx_unref(ctx);
        return;
    }
    T_ASSERT_TRUE(ctx->notifier_blocks);
    T_ASSERT_FALSE(flags & O_NONBLOCK);
    for (int i = 0; i < 3; i++) {
        Sleeper s = { .ctx = ctx, .pipefd = { -1, -1 } };
        struct pollfd p = { .fd = ctx->notifier.rfd, .events = POLLIN };

        s.sleeps = atomic_load(&ctx->notifier_sleeps);
        T_ASSERT_EQ(pthread_create(&s.tid, NULL, wake_sleeper, &s), 0);
        T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
        pthread_join(s.tid, NULL);
        T_ASSERT_EQ(atomic_load(&ctx->notifier_sleeps), s.sleeps + 1);
        T_ASSERT_FALSE(ctx->notifier_drained); /* the dispatch took it */
        T_ASSERT_EQ(poll(&p, 1, 0), 0);        /* and the kick is gone */
    }
    iot_ctx_unref(ctx);
}

/* The notifier's own read never blocks, even on an empty eventfd. */
static void test_notifier_drain_never_blocks(void)
{
    IotCtx *ctx = new_poll_sleeper();
    IotHandler *h = ctx->notifier_h;

    h->ops.read(h->opaque);
    h->ops.read(h->opaque);
    T_ASSERT_EQ(atomic_load(&ctx->notifier_sleeps), 0);
    iot_ctx_unref(ctx);
}

static void count_bh(void *opaque)
{
    (*(int *)opaque)++;
}

/* The sleep's read records the kick count from before it, so the kick
 * that woke it still looks undrained; the next non-blocking wait (one
 * read with RWF_NOWAIT, no ppoll) catches up, after which need_fd_wait()
 * skips the fd look again rather than paying one in every iteration. */
static void test_notify_caught_up_after_sleep(void)
{
    IotCtx *ctx = new_poll_sleeper();
    Sleeper s = { .ctx = ctx, .pipefd = { -1, -1 } };
    int ran = 0;

    if (!ctx->notifier_blocks) {
        iot_ctx_unref(ctx); /* no such sleep here */
        return;
    }
    s.sleeps = atomic_load(&ctx->notifier_sleeps);
    T_ASSERT_EQ(pthread_create(&s.tid, NULL, wake_sleeper, &s), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    pthread_join(s.tid, NULL);
    T_ASSERT(ctx->kicks_drained != atomic_load(&ctx->notify_kicks));
    /* Due at once: a wait with timeout 0. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, count_bh, &ran), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(ran, 1);
    T_ASSERT_EQ(ctx->kicks_drained, atomic_load(&ctx->notify_kicks));
    iot_ctx_unref(ctx);
}

/* A drain that came between a producer's eventfd write and its count
 * leaves the count one ahead of kicks_drained; the next wait that finds
 * the eventfd empty catches it up, so that need_fd_wait() skips the fd
 * look again instead of making a useless one in every iteration. */
static void late_count_caught_up(IotFdmonKind kind, bool blocks)
{
    IotCtxOptions opts = { .fdmon = kind };
    IotCtx *ctx;

    iot__notifier_blocks_allowed = blocks;
    ctx = iot_ctx_new_full(&opts, NULL);
    iot__notifier_blocks_allowed = 1;
    T_ASSERT(ctx);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    iot_ctx_poll(ctx, false);
    T_ASSERT_EQ(iot_event_set(&ctx->notifier), 0); /* a kick's write, */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));       /* drained, */
    atomic_fetch_add(&ctx->notify_kicks, 1);       /* then counted */
    T_ASSERT(ctx->kicks_drained != atomic_load(&ctx->notify_kicks));
    iot_ctx_poll(ctx, false);
    T_ASSERT_EQ(ctx->kicks_drained, atomic_load(&ctx->notify_kicks));
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
}

static void test_notify_late_count_caught_up(void)
{
    late_count_caught_up(IOT_FDMON_POLL, true);  /* read with RWF_NOWAIT */
    late_count_caught_up(IOT_FDMON_POLL, false); /* ppoll */
    late_count_caught_up(IOT_FDMON_EPOLL, true);
}

/* The mark that tells the notifier's dispatch not to read belongs to one
 * wait: left set by a dispatch that never came (dropped from a ready
 * list, nested away), it does not make a later dispatch skip its drain. */
static void test_notifier_drained_mark_is_per_wait(void)
{
    IotCtx *ctx = new_poll_sleeper();
    struct pollfd p = { .fd = ctx->notifier.rfd, .events = POLLIN };
    int pipefd[2];

    /* A second fd: the wait is ppoll's, and the dispatch reads. */
    T_ASSERT_EQ(pipe(pipefd), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], noop_read, NULL, NULL, NULL, NULL),
        0);
    ctx->notifier_drained = true;
    T_ASSERT_EQ(iot_event_set(&ctx->notifier), 0);
    iot_ctx_poll(ctx, false);
    T_ASSERT_FALSE(ctx->notifier_drained);
    T_ASSERT_EQ(poll(&p, 1, 0), 0); /* the kick was drained */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pipefd[0], NULL, NULL, NULL, NULL, NULL), 0);
    close(pipefd[0]);
    close(pipefd[1]);
    iot_ctx_unref(ctx);
}

/* Where the eventfd stays non-blocking (the kernel refuses RWF_NOWAIT on
 * it), the wait is ppoll's, and a notify still wakes it. */
static void test_notifier_nonblocking_fallback(void)
{
    IotCtx *ctx;
    Waker w;

    iot__notifier_blocks_allowed = 0;
    ctx = new_poll_sleeper();
    iot__notifier_blocks_allowed = 1;
    T_ASSERT_FALSE(ctx->notifier_blocks);
    T_ASSERT(fcntl(ctx->notifier.rfd, F_GETFL) & O_NONBLOCK);
    w = (Waker){ .ctx = ctx };
    T_ASSERT_EQ(pthread_create(&w.tid, NULL, wake_when_blocked, &w), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    pthread_join(w.tid, NULL);
    T_ASSERT_EQ(atomic_load(&ctx->notifier_sleeps), 0);
    iot_ctx_unref(ctx);
}

/* An fd watched from another thread while the loop sleeps in the read is
 * watched from the next wait on (ppoll's, with two fds). */
static void test_fd_added_while_sleeping_in_read(void)
{
    IotCtx *ctx = new_poll_sleeper();
    Sleeper s = { .ctx = ctx };

    if (!ctx->notifier_blocks) {
        iot_ctx_unref(ctx); /* no such sleep here */
        return;
    }
    T_ASSERT_EQ(pipe(s.pipefd), 0);
    s.sleeps = atomic_load(&ctx->notifier_sleeps);
    T_ASSERT_EQ(pthread_create(&s.tid, NULL, wake_sleeper, &s), 0);
    while (s.pipefd[0] >= 0) {
        iot_ctx_poll(ctx, true);
    }
    pthread_join(s.tid, NULL);
    s.pipefd[0] = -s.pipefd[0] - 2;
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, s.pipefd[0], NULL, NULL, NULL, NULL, NULL), 0);
    close(s.pipefd[0]);
    close(s.pipefd[1]);
    iot_ctx_unref(ctx);
}

static void test_fdmon_choice(void)
{
    IotCtxOptions poll_opts = { .fdmon = IOT_FDMON_POLL };
    IotCtxOptions epoll_opts = { .fdmon = IOT_FDMON_EPOLL };
    IotCtxOptions bad_opts = { .fdmon = (IotFdmonKind)42 };
    IotError *err = NULL;
    IotCtx *ctx;

    IotCtxOptions uring_opts = { .fdmon = IOT_FDMON_IO_URING };

    unsetenv("IOTHREAD_FDMON");
    /* AUTO starts on poll (only its own eventfd to watch) and moves to
     * io_uring, where it can be set up, when it first sees another fd. */
    ctx = iot_ctx_new_full(&uring_opts, NULL);
    const char *dflt = ctx ? "io_uring" : "poll";
    iot_ctx_unref(ctx);
    ctx = iot_ctx_new(NULL);
    T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "poll");
    {
        int pipefd[2];

        T_ASSERT_EQ(pipe(pipefd), 0);
        T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "poll");
        T_ASSERT_EQ(iot_fd_set_handler(ctx, pipefd[0], noop_read, NULL, NULL,
                                       NULL, NULL),
                    0);
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), dflt);
        T_ASSERT_EQ(
            iot_fd_set_handler(ctx, pipefd[0], NULL, NULL, NULL, NULL, NULL),
            0);
        T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
        close(pipefd[0]);
        close(pipefd[1]);
    }
    iot_ctx_unref(ctx);
    ctx = iot_ctx_new_full(&poll_opts, NULL);
    T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "poll");
    iot_ctx_unref(ctx);
    ctx = iot_ctx_new_full(&epoll_opts, NULL);
    T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "epoll");
    iot_ctx_unref(ctx);
    T_ASSERT(iot_ctx_new_full(&bad_opts, &err) == NULL);
    T_ASSERT(err);
    iot_error_free(err);
}

extern _Atomic int iot__error_fail_alloc;

static void test_errors(void)
{
    IotError *err = NULL;

    iot_error_setg(&err, "first %d", 1);
    iot_error_setg(&err, "second"); /* the first error wins */
    T_ASSERT_STR(iot_error_message(err), "first 1");
    T_ASSERT_EQ(iot_error_errno(err), 0);
    iot_error_free(err);
    err = NULL;
    iot_error_setg_errno(&err, -ENOENT, "open %s", "x");
    T_ASSERT_STR(iot_error_message(err), "open x: No such file or directory");
    T_ASSERT_EQ(iot_error_errno(err), ENOENT);
    iot_error_propagate(NULL, err); /* frees */
    iot_error_setg(NULL, "ignored");
    err = NULL;
    iot_error_setg_errno(&err, INT_MIN, "odd"); /* no UB (UBSan) */
    T_ASSERT_EQ(iot_error_errno(err), 0);
    iot_error_free(err);

    /* propagate moves into an empty *dst, and frees into a set one (the
     * first error wins; ASan sees a leak if it did not free) */
    {
        IotError *dst = NULL, *local = NULL;

        iot_error_setg(&local, "one");
        iot_error_propagate(&dst, local);
        T_ASSERT(dst == local);
        local = NULL;
        iot_error_setg(&local, "two");
        iot_error_propagate(&dst, local);
        T_ASSERT_STR(iot_error_message(dst), "one");
        iot_error_free(dst);
    }

    /* report_free prints "prefix: message" (or the message alone) */
    {
        char buf[128] = "";
        int saved = dup(STDERR_FILENO), p[2];
        ssize_t n, got = 0;

        T_ASSERT(saved >= 0);
        T_ASSERT_EQ(pipe(p), 0);
        T_ASSERT(dup2(p[1], STDERR_FILENO) >= 0);
        close(p[1]);
        err = NULL;
        iot_error_setg(&err, "it broke");
        iot_error_report_free("iothreadd", err);
        err = NULL;
        iot_error_setg(&err, "bare");
        iot_error_report_free(NULL, err);
        fflush(stderr);
        T_ASSERT(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        while ((n = read(p[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0) {
            got += n;
        }
        close(p[0]);
        T_ASSERT_STR(buf, "iothreadd: it broke\nbare\n");
    }

    /* No memory for the error itself: a static one says so, and freeing
     * it is harmless (it used to abort the program). */
    err = NULL;
    atomic_store(&iot__error_fail_alloc, 1);
    iot_error_setg_errno(&err, EINVAL, "bad %s", "thing");
    T_ASSERT(err != NULL);
    T_ASSERT_STR(iot_error_message(err), "out of memory");
    T_ASSERT_EQ(iot_error_errno(err), ENOMEM);
    iot_error_free(err);
    err = NULL;
    iot_error_setg(&err, "after");
    T_ASSERT_STR(iot_error_message(err), "after");
    iot_error_free(err);
    T_ASSERT_EQ(iot_version(), IOT_VERSION_HEX);
    {
        char want[32];
        snprintf(want, sizeof(want), "%d.%d.%d", IOT_VERSION_MAJOR,
                 IOT_VERSION_MINOR, IOT_VERSION_PATCH);
        T_ASSERT_STR(iot_version_string(), want);
    }
}

static bool readable(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    return poll(&pfd, 1, 0) == 1;
}

static void bh_noop(void *opaque)
{
    (void)opaque;
}

/* A context with only its notifier looks at fds in a non-blocking
 * iteration only when a kick may sit in the eventfd, and then drains it. */
static void test_notify_drain_only_after_kick(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_POLL };
    IotCtx *ctx = iot_ctx_new_full(&opts, NULL);

    T_ASSERT(ctx != NULL);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* A kick, as a producer makes it while the loop announces a wait. */
    atomic_store(&ctx->notify_me, 2);
    iot_ctx_notify(ctx);
    atomic_store(&ctx->notify_me, 0);
    T_ASSERT_EQ(atomic_load(&ctx->notify_kicks), 1);
    T_ASSERT_TRUE(readable(ctx->notifier.rfd));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_FALSE(readable(ctx->notifier.rfd));
    T_ASSERT_EQ(ctx->kicks_drained, 1);

    /* A write that no kick counted (never made by the library) shows the
     * check is skipped: it stays unread by a non-blocking iteration... */
    T_ASSERT_EQ(iot_event_set(&ctx->notifier), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, bh_noop, NULL), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_TRUE(readable(ctx->notifier.rfd));
    /* ...and a blocking one sees it at once, and drains it. */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    T_ASSERT_FALSE(readable(ctx->notifier.rfd));

    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
}

int main(int argc, char **argv)
{
    t_add("/ctx/lifecycle", test_lifecycle);
    t_add("/ctx/no-fd-leak", test_fd_leak);
    t_add("/ctx/current", test_current);
    t_add("/ctx/current-per-thread", test_current_is_per_thread);
    t_add("/ctx/main", test_main);
    t_add("/ctx/poll-params", test_poll_params);
    t_add("/ctx/max-batch", test_max_batch);
    t_add("/ctx/notify/not-progress", test_notify_not_progress);
    t_add("/ctx/notify/wakes-blocked-poll", test_notify_wakes);
    t_add("/ctx/notify/elided-while-awake", test_notify_elided_when_awake);
    t_add("/ctx/stats/monotonic", test_stats_monotonic);
    t_add("/ctx/stats/fresh", test_stats_fresh);
    t_add("/ctx/notify/drain-only-after-kick",
          test_notify_drain_only_after_kick);
    t_add("/ctx/notify/sleeps-in-read", test_notify_sleeps_in_read);
    t_add("/ctx/notify/drain-never-blocks", test_notifier_drain_never_blocks);
    t_add("/ctx/notify/caught-up-after-sleep",
          test_notify_caught_up_after_sleep);
    t_add("/ctx/notify/late-count-caught-up", test_notify_late_count_caught_up);
    t_add("/ctx/notify/drained-mark-is-per-wait",
          test_notifier_drained_mark_is_per_wait);
    t_add("/ctx/notify/nonblocking-fallback",
          test_notifier_nonblocking_fallback);
    t_add("/ctx/notify/fd-added-while-sleeping-in-read",
          test_fd_added_while_sleeping_in_read);
    t_add("/ctx/fdmon-choice", test_fdmon_choice);
    t_add("/ctx/errors", test_errors);
    return t_run(argc, argv);
}
