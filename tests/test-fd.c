/* SPDX-License-Identifier: MIT */
/*
 * fd handlers, event notifiers and the fd monitoring backends (sections
 * 2.4, 2.5, 2.6, 4.1-4.4, the event rows of 7.1 and item 4 of section 9 of
 * the specification).
 *
 * Every case runs once per backend, as /poll/aio/..., /epoll/aio/... and
 * /io_uring/aio/... (the last skipped where io_uring cannot be set up);
 * the cases about backend selection itself (the AUTO upgrade and fallback,
 * and the IOTHREAD_FDMON variable) run once, as /auto/aio/....
 *
 * Each case gets a fresh context, current on the case's thread; the
 * teardown checks that the case removed every handler it added (only the
 * context's own notifier is left, and the counters are back to their
 * values at creation) and that an explicitly chosen backend is still the
 * one in use.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "fdmon.h"
#include "harness.h"

#define container_of(ptr, type, member)                                        \
    ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- per-case context ---- */

static IotFdmonKind g_kind;
static IotCtx *ctx;
static int base_live, base_disable, base_pollable;

/* Tests: makes io_uring setup fail as if the kernel refused it. */
extern int iot__io_uring_setup_fail;

static const char *kind_name(IotFdmonKind kind)
{
    return kind == IOT_FDMON_EPOLL      ? "epoll"
           : kind == IOT_FDMON_IO_URING ? "io_uring"
                                        : "poll";
}

/* Can this machine set io_uring up (not disabled, not filtered)? */
static bool have_io_uring(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };
    IotCtx *c = iot_ctx_new_full(&opts, NULL);

    iot_ctx_unref(c);
    return c != NULL;
}

static int disable_cnt(void)
{
    return atomic_load(&ctx->poll_disable_cnt);
}

static int live_cnt(void)
{
    return atomic_load(&ctx->live_cnt);
}

static IotCtx *new_ctx_or_fail(IotFdmonKind kind)
{
    IotCtxOptions opts = { .fdmon = kind };
    IotError *err = NULL;
    IotCtx *c = iot_ctx_new_full(&opts, &err);

    if (!c) {
        t_fail(__FILE__, __LINE__, "iot_ctx_new_full: %s",
               err ? iot_error_message(err) : "(no error)");
    }
    T_ASSERT(err == NULL);
    return c;
}

static void ctx_setup(IotFdmonKind kind)
{
    g_kind = kind;
    ctx = new_ctx_or_fail(kind);
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    T_ASSERT(iot_ctx_current() == ctx);
    if (kind != IOT_FDMON_AUTO) {
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), kind_name(kind));
    } else {
        /* AUTO without io_uring (the cases make it fail) starts on poll. */
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "poll");
    }
    base_live = live_cnt();
    base_disable = disable_cnt();
    base_pollable = atomic_load(&ctx->pollable_cnt);
    /* Only the context's notifier, which has io_poll and io_poll_ready. */
    T_ASSERT_EQ(base_live, 1);
    T_ASSERT_EQ(base_disable, 0);
    T_ASSERT_EQ(base_pollable, 1);
}

static void ctx_teardown(void)
{
    T_ASSERT_EQ(live_cnt(), base_live);
    T_ASSERT_EQ(disable_cnt(), base_disable);
    T_ASSERT_EQ(atomic_load(&ctx->pollable_cnt), base_pollable);
    if (g_kind != IOT_FDMON_AUTO) {
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), kind_name(g_kind));
    }
    /* Nothing left to do: no progress. */
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
    ctx = NULL;
}

static void run_with(IotFdmonKind kind, TestFunc *body)
{
    if (kind == IOT_FDMON_IO_URING && !have_io_uring()) {
        t_skip("io_uring cannot be set up here");
    }
    ctx_setup(kind);
    body();
    ctx_teardown();
}

/* Two wrappers per case, one per backend. */
#define BACKEND_CASE(fn)                                                       \
    static void fn##_poll(void)                                                \
    {                                                                          \
        run_with(IOT_FDMON_POLL, fn);                                          \
    }                                                                          \
    static void fn##_epoll(void)                                               \
    {                                                                          \
        run_with(IOT_FDMON_EPOLL, fn);                                         \
    }                                                                          \
    static void fn##_io_uring(void)                                            \
    {                                                                          \
        run_with(IOT_FDMON_IO_URING, fn);                                      \
    }

#define ADD_BOTH(path, fn)                                                     \
    do {                                                                       \
        t_add("/poll" path, fn##_poll);                                        \
        t_add("/epoll" path, fn##_epoll);                                      \
        t_add("/io_uring" path, fn##_io_uring);                                \
    } while (0)

/* ---- helpers ---- */

typedef struct Pipe {
    int rfd, wfd;
} Pipe;

static Pipe pipe_new(void)
{
    int fds[2];

    T_ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    return (Pipe){ fds[0], fds[1] };
}

static void pipe_close(Pipe *p)
{
    if (p->rfd >= 0) {
        close(p->rfd);
    }
    if (p->wfd >= 0) {
        close(p->wfd);
    }
    p->rfd = p->wfd = -1;
}

static void write_byte(int fd)
{
    char c = 'x';
    ssize_t n;

    do {
        n = write(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    T_ASSERT_EQ(n, 1);
}

static void drain(int fd)
{
    char buf[256];

    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

/* "Wait until the loop blocks": another thread spins on this before
 * acting, so that the action has to wake a blocked loop.  notify_me != 0
 * means blocked only if no notification is pending: the home thread calls
 * settle() before its blocking poll. */
static void wait_loop_blocking(IotCtx *c)
{
    while (atomic_load(&c->notify_me) == 0) {
        sched_yield();
    }
}

/* Home thread.  Consumes the notification that every handler change
 * makes, so that the next blocking poll really blocks.  No progress. */
static void settle(void)
{
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_FALSE(atomic_load(&ctx->notified));
}

static bool poll_false(void *opaque)
{
    (void)opaque;
    return false;
}

static void nop_cb(void *opaque)
{
    (void)opaque;
}

static void count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

static void atomic_count_cb(void *opaque)
{
    atomic_fetch_add((atomic_int *)opaque, 1);
}

/* ---- event notifiers (section 7.1, event rows) ---- */

typedef struct EvData {
    IotEvent e;
    int n;         /* callbacks */
    int active;    /* callbacks still expected; counts down */
    bool auto_set; /* re-set the notifier while active */
} EvData;

static void ev_ready_cb(IotEvent *e)
{
    EvData *d = container_of(e, EvData, e);

    /* Level-triggered doorbell: the callback only runs when it is set. */
    T_ASSERT_TRUE(iot_event_test_and_clear(e));
    d->n++;
    if (d->active > 0) {
        d->active--;
    }
    if (d->auto_set && d->active > 0) {
        T_ASSERT_EQ(iot_event_set(e), 0);
    }
}

static void ev_handler(EvData *d, IotEventFunc *cb)
{
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &d->e, cb, NULL, NULL), 0);
}

static void ev_wait_inactive(EvData *d)
{
    while (d->active > 0) {
        iot_ctx_poll(ctx, true);
    }
}

static void test_event_add_remove(void)
{
    EvData d = { .n = 0 };

    T_ASSERT_EQ(iot_event_init(&d.e, false), 0);
    ev_handler(&d, ev_ready_cb);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 0);

    ev_handler(&d, NULL);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 0);
    /* No handler any more: nothing to attach poll callbacks to; removing
     * again is a quiet no-op. */
    T_ASSERT_EQ(iot_ctx_set_event_poll(ctx, &d.e, NULL, NULL), -ENOENT);
    ev_handler(&d, NULL);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    iot_event_cleanup(&d.e);
}
BACKEND_CASE(test_event_add_remove)

typedef struct FarData {
    int tid; /* the home thread's */
    int wfd; /* the pipe's write end */
} FarData;

/* Writes the byte once the home thread sleeps in its fd wait. */
static void *far_writer(void *opaque)
{
    FarData *fd = opaque;

    while (!(atomic_load(&ctx->notify_me) && t_thread_sleeping(fd->tid))) {
        sched_yield();
    }
    T_ASSERT_EQ(write(fd->wfd, "x", 1), 1);
    return NULL;
}

static void far_read_cb(void *opaque)
{
    int *n = opaque;
    char c;

    T_ASSERT_EQ(read(n[0], &c, 1), 1);
    n[1]++;
}

/* A timer at INT64_MAX (the farthest deadline there is) makes a blocking
 * wait's timeout INT64_MAX - now: a backend that adds it to the clock
 * again overflows (UBSan says so).  The fd, written while the loop
 * sleeps, ends the wait. */
static void test_fd_far_timer(void)
{
    IotTimer *t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, nop_cb, NULL);
    int p[2], r[2];
    FarData fd = { .tid = (int)syscall(SYS_gettid) };
    pthread_t th;

    T_ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    r[0] = p[0];
    r[1] = 0;
    fd.wfd = p[1];
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p[0], far_read_cb, NULL, NULL, NULL, r),
                0);
    iot_timer_mod(t, INT64_MAX);
    while (iot_ctx_poll(ctx, false)) {
    }
    T_ASSERT_EQ(pthread_create(&th, NULL, far_writer, &fd), 0);
    while (!r[1]) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT_EQ(pthread_join(th, NULL), 0);
    T_ASSERT(iot_timer_pending(t));
    iot_timer_free(t);
    iot_fd_set_handler(ctx, p[0], NULL, NULL, NULL, NULL, NULL);
    close(p[0]);
    close(p[1]);
    while (iot_ctx_poll(ctx, false)) {
    }
}
BACKEND_CASE(test_fd_far_timer)

static void test_event_wait(void)
{
    EvData d = { .n = 0, .active = 1 };

    T_ASSERT_EQ(iot_event_init(&d.e, false), 0);
    ev_handler(&d, ev_ready_cb);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 0);
    T_ASSERT_EQ(d.active, 1);

    T_ASSERT_EQ(iot_event_set(&d.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);
    T_ASSERT_EQ(d.active, 0);

    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);

    ev_handler(&d, NULL);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);
    iot_event_cleanup(&d.e);
}
BACKEND_CASE(test_event_wait)

static void test_event_wait_no_flush_cb(void)
{
    EvData d = { .n = 0 };
    EvData dummy = { .n = 0, .active = 1 };

    T_ASSERT_EQ(iot_event_init(&d.e, false), 0);
    ev_handler(&d, ev_ready_cb);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 0);

    /* The only active fd: a blocking poll after a set must not block. */
    T_ASSERT_EQ(iot_event_set(&d.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(d.n, 1);
    d.n = 0;

    /* With a second notifier registered: exactly one callback per set. */
    T_ASSERT_EQ(iot_event_init(&dummy.e, false), 0);
    ev_handler(&dummy, ev_ready_cb);

    T_ASSERT_EQ(iot_event_set(&d.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);

    T_ASSERT_EQ(iot_event_set(&d.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 2);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 2);

    /* The dummy can be driven to inactive with blocking polls. */
    T_ASSERT_EQ(iot_event_set(&dummy.e), 0);
    ev_wait_inactive(&dummy);
    T_ASSERT_EQ(d.n, 2);
    T_ASSERT_EQ(dummy.n, 1);
    T_ASSERT_EQ(dummy.active, 0);

    ev_handler(&dummy, NULL);
    iot_event_cleanup(&dummy.e);

    ev_handler(&d, NULL);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 2);
    iot_event_cleanup(&d.e);
}
BACKEND_CASE(test_event_wait_no_flush_cb)

static void test_event_flush(void)
{
    EvData d = { .n = 0, .active = 10, .auto_set = true };

    T_ASSERT_EQ(iot_event_init(&d.e, false), 0);
    ev_handler(&d, ev_ready_cb);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 0);
    T_ASSERT_EQ(d.active, 10);

    T_ASSERT_EQ(iot_event_set(&d.e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 1);
    T_ASSERT_EQ(d.active, 9);
    /* It re-set itself: the next poll runs it exactly once more. */
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 2);
    T_ASSERT_EQ(d.active, 8);

    ev_wait_inactive(&d);
    T_ASSERT_EQ(d.n, 10);
    T_ASSERT_EQ(d.active, 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    ev_handler(&d, NULL);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(d.n, 10);
    iot_event_cleanup(&d.e);
}
BACKEND_CASE(test_event_flush)

/* ---- fd/read-write ---- */

typedef struct PipeData {
    Pipe p;
    int nread, nwrite;
    bool drain;
} PipeData;

static void pd_read(void *opaque)
{
    PipeData *pd = opaque;

    pd->nread++;
    if (pd->drain) {
        drain(pd->p.rfd);
    }
}

static void pd_write(void *opaque)
{
    PipeData *pd = opaque;

    pd->nwrite++;
}

static void *write_when_blocked(void *opaque)
{
    PipeData *pd = opaque;

    wait_loop_blocking(ctx);
    write_byte(pd->p.wfd);
    return NULL;
}

typedef struct SockData {
    int fd;
    int nread, nwrite;
    bool remove_in_read;
} SockData;

static void sd_read(void *opaque)
{
    SockData *sd = opaque;

    sd->nread++;
    if (sd->remove_in_read) {
        T_ASSERT_EQ(iot_fd_set(ctx, sd->fd, NULL, NULL), 0);
    }
}

static void sd_write(void *opaque)
{
    SockData *sd = opaque;

    sd->nwrite++;
}

static void test_fd_read_write(void)
{
    PipeData pd = { .p = pipe_new() };
    SockData sd = { 0 };
    pthread_t th;
    int sv[2];

    /* Bad fds; a window only for a registered fd. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, -1, pd_read, NULL, NULL, NULL, &pd),
                -EINVAL);
    T_ASSERT_EQ(iot_fd_set(ctx, -5, NULL, NULL), -EINVAL);
    T_ASSERT_EQ(live_cnt(), base_live);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, pd.p.rfd), -1);

    /* Writable: the write handler runs, on every poll (level-triggered). */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pd.p.wfd, NULL, pd_write, NULL, NULL, &pd), 0);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    T_ASSERT_EQ(iot_fd_poll_window(ctx, pd.p.wfd), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pd.nwrite, 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pd.nwrite, 2);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, pd.p.wfd, NULL, NULL, NULL, NULL, NULL),
                0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pd.nwrite, 2);
    T_ASSERT_EQ(pd.nread, 0);

    /* Readable only once data arrives. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, pd.p.rfd, pd_read, NULL, NULL, NULL, &pd), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pd.nread, 0);
    write_byte(pd.p.wfd);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pd.nread, 1);
    /* Level-triggered: unread data runs the read handler again. */
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pd.nread, 2);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pd.nread, 3);
    pd.drain = true;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pd.nread, 4);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pd.nread, 4);
    T_ASSERT_EQ(pd.nwrite, 2);

    /* Data arriving while the loop is blocked wakes it; progress. */
    settle();
    T_ASSERT_EQ(pthread_create(&th, NULL, write_when_blocked, &pd), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pthread_join(th, NULL), 0);
    T_ASSERT_EQ(pd.nread, 5);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    T_ASSERT_EQ(iot_fd_set(ctx, pd.p.rfd, NULL, NULL), 0);
    T_ASSERT_EQ(live_cnt(), base_live);
    pipe_close(&pd.p);

    /* One handler with both callbacks on a readable and writable socket:
     * both run, once each, in one poll. */
    T_ASSERT_EQ(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
    sd.fd = sv[0];
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, sv[0], sd_read, sd_write, NULL, NULL, &sd), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(sd.nread, 0);
    T_ASSERT_EQ(sd.nwrite, 1);
    write_byte(sv[1]);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(sd.nread, 1);
    T_ASSERT_EQ(sd.nwrite, 2);
    T_ASSERT_EQ(iot_fd_set(ctx, sv[0], NULL, NULL), 0);
    close(sv[0]);
    close(sv[1]);
}
BACKEND_CASE(test_fd_read_write)

/* ---- fd/replace ---- */

typedef struct Replacer {
    int fd;
    int n;
    int *target; /* counter of the replacement */
} Replacer;

static void replace_self_cb(void *opaque)
{
    Replacer *r = opaque;

    r->n++;
    /* Replaced from its own callback: from now on count_cb(target). */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, r->fd, count_cb, NULL, NULL, NULL, r->target),
        0);
}

static void test_fd_replace(void)
{
    Pipe p = pipe_new();
    int a = 0, b = 0, c = 0, x = 0, y = 0;
    Replacer r = { .fd = p.rfd, .target = &c };

    write_byte(p.wfd); /* readable for the whole case (never drained) */

    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &a),
                0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(a, 1);

    /* Replace: one handler per fd; the old callbacks never run again,
     * the new one exactly once per poll. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &b),
                0);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    T_ASSERT_EQ(disable_cnt(), base_disable + 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(a, 1);
    T_ASSERT_EQ(b, 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(a, 1);
    T_ASSERT_EQ(b, 2);

    /* Same callback, another opaque: the new opaque is used. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &x),
                0);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &y),
                0);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(x, 0);
    T_ASSERT_EQ(y, 1);
    T_ASSERT_EQ(b, 2);

    /* Replace a read handler by a write-only one on a read end (never
     * writable): the read callback is gone, nothing runs. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, NULL, count_cb, NULL, NULL, &b),
                0);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(b, 2);
    T_ASSERT_EQ(y, 1);

    /* Replaced from its own read callback: the replacement is not called
     * in the dispatch that installed it (it was not found ready), then
     * runs once per poll; the replaced one never again. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p.rfd, replace_self_cb, NULL, NULL, NULL, &r),
        0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(r.n, 1);
    T_ASSERT_EQ(c, 0);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(r.n, 1);
    T_ASSERT_EQ(c, 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(r.n, 1);
    T_ASSERT_EQ(c, 2);

    /* Replace a handler without io_poll by one with it, and back. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, poll_false, nop_cb, &a),
        0);
    T_ASSERT_EQ(disable_cnt(), base_disable);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(a, 2);
    T_ASSERT_EQ(c, 2);

    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    T_ASSERT_EQ(live_cnt(), base_live);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(a, 2);
    T_ASSERT_EQ(c, 2);
    pipe_close(&p);
}
BACKEND_CASE(test_fd_replace)

/* ---- fd/remove-in-read ---- */

typedef struct Victim {
    int fd;
    int n;
    struct Victim *other;
} Victim;

static void remove_other_cb(void *opaque)
{
    Victim *v = opaque;

    v->n++;
    T_ASSERT_EQ(iot_fd_set(ctx, v->other->fd, NULL, NULL), 0);
}

static void test_fd_remove_in_read(void)
{
    SockData sd = { 0 };
    IotEvent ex, ey;
    Victim x = { 0 }, y = { 0 };
    Victim *ran, *gone;
    int sv[2];

    T_ASSERT_EQ(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
    write_byte(sv[1]); /* sv[0] is readable and writable */
    sd.fd = sv[0];

    /* First without removal: both callbacks run. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, sv[0], sd_read, sd_write, NULL, NULL, &sd), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(sd.nread, 1);
    T_ASSERT_EQ(sd.nwrite, 1);

    /* The read callback removes the handler: its write callback must not
     * run in that dispatch, nor later. */
    sd.remove_in_read = true;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(sd.nread, 2);
    T_ASSERT_EQ(sd.nwrite, 1);
    T_ASSERT_EQ(live_cnt(), base_live);
    T_ASSERT_EQ(disable_cnt(), base_disable);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(sd.nread, 2);
    T_ASSERT_EQ(sd.nwrite, 1);

    /* A fresh handler on the same fd afterwards works normally, and the
     * removed one stays silent. */
    {
        SockData sd2 = { .fd = sv[0] };
        T_ASSERT_EQ(
            iot_fd_set_handler(ctx, sv[0], sd_read, sd_write, NULL, NULL, &sd2),
            0);
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(sd2.nread, 1);
        T_ASSERT_EQ(sd2.nwrite, 1);
        T_ASSERT_EQ(sd.nread, 2);
        T_ASSERT_EQ(sd.nwrite, 1);
        /* This handler removes itself from its read callback too: its
         * write callback must not run in that dispatch. */
        sd2.remove_in_read = true;
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(sd2.nread, 2);
        T_ASSERT_EQ(sd2.nwrite, 1);
    }
    close(sv[0]);
    close(sv[1]);

    /* Two ready handlers, each removing the other from its callback:
     * whichever runs first, the other is not called in that iteration. */
    T_ASSERT_EQ(iot_event_init(&ex, true), 0);
    T_ASSERT_EQ(iot_event_init(&ey, true), 0);
    x = (Victim){ .fd = iot_event_fd(&ex), .other = &y };
    y = (Victim){ .fd = iot_event_fd(&ey), .other = &x };
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, x.fd, remove_other_cb, NULL, NULL, NULL, &x),
        0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, y.fd, remove_other_cb, NULL, NULL, NULL, &y),
        0);
    T_ASSERT_EQ(live_cnt(), base_live + 2);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(x.n + y.n, 1);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    ran = x.n ? &x : &y;
    gone = x.n ? &y : &x;
    /* The survivor is still readable (never cleared); the removed one
     * stays silent although its eventfd is set too. */
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(ran->n, 2);
    T_ASSERT_EQ(gone->n, 0);
    T_ASSERT_EQ(iot_fd_set(ctx, ran->fd, NULL, NULL), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(ran->n, 2);
    T_ASSERT_EQ(gone->n, 0);
    iot_event_cleanup(&ex);
    iot_event_cleanup(&ey);
}
BACKEND_CASE(test_fd_remove_in_read)

/* ---- fd/remove-other-thread ---- */

typedef struct Remover {
    Pipe p;
    atomic_int n; /* read callbacks */
    atomic_bool done;
} Remover;

/* Waits until the loop blocks and removes the handler: only the removal's
 * notification can wake the loop. */
static void *remove_when_blocked(void *opaque)
{
    Remover *r = opaque;

    wait_loop_blocking(ctx);
    T_ASSERT_EQ(iot_fd_set(ctx, r->p.rfd, NULL, NULL), 0);
    return NULL;
}

/* Races a removal with data and with the loop; only the outcome after the
 * removal returned is checked. */
static void *remove_racing(void *opaque)
{
    Remover *r = opaque;

    write_byte(r->p.wfd);
    T_ASSERT_EQ(iot_fd_set(ctx, r->p.rfd, NULL, NULL), 0);
    atomic_store(&r->done, true);
    iot_ctx_notify(ctx);
    return NULL;
}

static void test_fd_remove_other_thread(void)
{
    const int rounds = 50, racy_rounds = 200;

    for (int i = 0; i < rounds; i++) {
        Remover r = { .p = pipe_new() };
        pthread_t th;
        bool progress;

        atomic_init(&r.n, 0);
        atomic_init(&r.done, false);
        T_ASSERT_EQ(iot_fd_set_handler(ctx, r.p.rfd, atomic_count_cb, NULL,
                                       NULL, NULL, &r.n),
                    0);
        settle();
        T_ASSERT_EQ(pthread_create(&th, NULL, remove_when_blocked, &r), 0);
        /* Returns: the removal notified the loop.  Only the notifier ran,
         * which is no progress. */
        progress = iot_ctx_poll(ctx, true);
        T_ASSERT_EQ(pthread_join(th, NULL), 0);
        T_ASSERT_FALSE(progress);
        T_ASSERT_EQ(atomic_load(&r.n), 0);
        /* Readable now, but it has no handler any more. */
        write_byte(r.p.wfd);
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(atomic_load(&r.n), 0);
        T_ASSERT_EQ(live_cnt(), base_live);
        pipe_close(&r.p);
    }

    for (int i = 0; i < racy_rounds; i++) {
        Remover r = { .p = pipe_new() };
        pthread_t th;
        int seen;

        atomic_init(&r.n, 0);
        atomic_init(&r.done, false);
        T_ASSERT_EQ(iot_fd_set_handler(ctx, r.p.rfd, atomic_count_cb, NULL,
                                       NULL, NULL, &r.n),
                    0);
        T_ASSERT_EQ(pthread_create(&th, NULL, remove_racing, &r), 0);
        while (!atomic_load(&r.done)) {
            iot_ctx_poll(ctx, true);
        }
        T_ASSERT_EQ(pthread_join(th, NULL), 0);
        seen = atomic_load(&r.n);
        /* The removal has returned: never again, although readable. */
        for (int j = 0; j < 3; j++) {
            T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        }
        T_ASSERT_EQ(atomic_load(&r.n), seen);
        T_ASSERT_EQ(live_cnt(), base_live);
        pipe_close(&r.p);
    }
}
BACKEND_CASE(test_fd_remove_other_thread)

/* ---- fd/poll-disable-count ---- */

static void remove_self_cb(void *opaque)
{
    int fd = *(int *)opaque;

    T_ASSERT_EQ(iot_fd_set(ctx, fd, NULL, NULL), 0);
}

static bool ev_poll_false(IotEvent *e)
{
    (void)e;
    return false;
}

static void ev_nop(IotEvent *e)
{
    (void)e;
}

static void test_fd_poll_disable_count(void)
{
    Pipe p = pipe_new();
    IotEvent e;
    int dummy = 0;
    const int base = base_disable;

    T_ASSERT_EQ(base, 0);
    T_ASSERT_FALSE(iot__fdmon_poll_disabled(ctx));

    /* No io_poll: +1. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &dummy), 0);
    T_ASSERT_EQ(disable_cnt(), base + 1);
    T_ASSERT_TRUE(iot__fdmon_poll_disabled(ctx));
    /* Replaced by one with io_poll and io_poll_ready: back. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, poll_false,
                                   nop_cb, &dummy),
                0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_FALSE(iot__fdmon_poll_disabled(ctx));
    T_ASSERT_EQ(atomic_load(&ctx->pollable_cnt), base_pollable + 1);
    /* Replaced by one with io_poll but no io_poll_ready: "no io_poll". */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, poll_false, NULL,
                                   &dummy),
                0);
    T_ASSERT_EQ(disable_cnt(), base + 1);
    T_ASSERT_EQ(atomic_load(&ctx->pollable_cnt), base_pollable);
    /* Replaced without io_poll again: still +1 (not +2). */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p.rfd, NULL, count_cb, NULL, NULL, &dummy), 0);
    T_ASSERT_EQ(disable_cnt(), base + 1);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    /* Removed: baseline. */
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(live_cnt(), base_live);
    /* Removing what is not there: no-op. */
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, NULL, NULL, NULL, NULL, NULL),
                0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(live_cnt(), base_live);
    /* io_poll without io_poll_ready and nothing else: that is a removal
     * (io_poll is ignored), so nothing is registered. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p.rfd, NULL, NULL, poll_false, NULL, &dummy),
        0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(live_cnt(), base_live);
    /* A handler with only io_poll+io_poll_ready counts as polled. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p.rfd, NULL, NULL, poll_false, nop_cb, &dummy),
        0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    T_ASSERT_EQ(live_cnt(), base_live);

    /* Two fds. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p.wfd, NULL, count_cb, NULL, NULL, &dummy), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &dummy), 0);
    T_ASSERT_EQ(disable_cnt(), base + 2);
    T_ASSERT_EQ(iot_fd_set(ctx, p.wfd, NULL, NULL), 0);
    T_ASSERT_EQ(disable_cnt(), base + 1);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, poll_false,
                                   nop_cb, &dummy),
                0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    T_ASSERT_EQ(disable_cnt(), base);

    /* Removal from the handler's own callback (freed later) counts at
     * once. */
    write_byte(p.wfd);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, remove_self_cb, NULL, NULL, NULL,
                                   &p.rfd),
                0);
    T_ASSERT_EQ(disable_cnt(), base + 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(live_cnt(), base_live);

    /* Event notifiers: poll without poll_ready is no io_poll. */
    T_ASSERT_EQ(iot_event_init(&e, false), 0);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, ev_nop, ev_poll_false, NULL), 0);
    T_ASSERT_EQ(disable_cnt(), base + 1);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, ev_nop, ev_poll_false, ev_nop), 0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(iot_ctx_set_event_poll(ctx, &e, ev_nop, ev_nop), 0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(live_cnt(), base_live + 1);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, ev_nop, NULL, NULL), 0);
    T_ASSERT_EQ(disable_cnt(), base + 1);
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, NULL, NULL, NULL), 0);
    T_ASSERT_EQ(disable_cnt(), base);
    T_ASSERT_EQ(live_cnt(), base_live);
    iot_event_cleanup(&e);

    pipe_close(&p);
}
BACKEND_CASE(test_fd_poll_disable_count)

/* ---- fd/nonblocking-checks-fds ---- */

typedef struct Polled {
    int fd;
    int nread, nready, npoll;
} Polled;

static bool polled_poll(void *opaque)
{
    Polled *pp = opaque;

    pp->npoll++;
    return false;
}

static void polled_read(void *opaque)
{
    Polled *pp = opaque;

    pp->nread++;
}

static void polled_ready(void *opaque)
{
    Polled *pp = opaque;

    pp->nready++;
}

static int ev_reads;

static void count_ev_read(IotEvent *e)
{
    T_ASSERT_TRUE(iot_event_test_and_clear(e));
    ev_reads++;
}

static void test_fd_nonblocking_checks_fds(void)
{
    Pipe p = pipe_new();
    Polled pp = { .fd = p.rfd };
    IotEvent e;

    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 1000000, 0, 0), 0);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, polled_read, NULL, polled_poll,
                                   polled_ready, &pp),
                0);
    T_ASSERT_EQ(iot_event_init(&e, false), 0);
    T_ASSERT_EQ(
        iot_ctx_set_event(ctx, &e, count_ev_read, ev_poll_false, ev_nop), 0);
    /* Every handler has io_poll: busy polling is allowed. */
    T_ASSERT_EQ(disable_cnt(), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* A readable fd whose io_poll says "not ready": a non-blocking poll
     * must still look at the fds. */
    write_byte(p.wfd);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pp.nread, 1);
    T_ASSERT_EQ(pp.nready, 0);
    /* Again, now that the handler is on the poll list (it fired through
     * its fd); still level-triggered. */
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pp.nread, 2);
    drain(p.rfd);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(pp.nread, 2);

    /* The same for an event notifier with io_poll. */
    T_ASSERT_EQ(iot_event_set(&e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(ev_reads, 1);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(iot_event_set(&e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(ev_reads, 2);

    /* And a blocking poll after busy polling finds nothing. */
    write_byte(p.wfd);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pp.nread, 3);
    T_ASSERT_EQ(pp.nready, 0);
    drain(p.rfd);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    T_ASSERT_EQ(iot_ctx_set_event(ctx, &e, NULL, NULL, NULL), 0);
    iot_event_cleanup(&e);
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    pipe_close(&p);
}
BACKEND_CASE(test_fd_nonblocking_checks_fds)

/* A nested poll in the first callback of a pass, with one handler in the
 * middle of the outer pass's ready list still ready (the others drained):
 * the nested wait finds it, and it moves from the middle of the outer
 * list to the nested one.  It runs once, there; the outer pass runs the
 * rest (stale: their reads find nothing) and not it again. */
#define NEST_PIPES 5
static Pipe nest_p[NEST_PIPES];
static int nest_calls[NEST_PIPES], nest_keep;
static bool nest_done;

/* Which of our pipes has a handler in the middle of a ready list. */
static int nest_middle(void)
{
    for (IotHandler *h = atomic_load(&ctx->handlers); h;
         h = atomic_load(&h->next)) {
        for (int i = 0; i < NEST_PIPES; i++) {
            if (h->fd == nest_p[i].rfd && h->ready_prev && h->ready_next) {
                return i;
            }
        }
    }
    return -1;
}

static void nest_cb(void *opaque)
{
    int i = (int)(intptr_t)opaque;

    nest_calls[i]++;
    if (!nest_done) {
        nest_done = true;
        nest_keep = nest_middle();
        T_ASSERT(nest_keep >= 0);
        for (int j = 0; j < NEST_PIPES; j++) {
            if (j != nest_keep) {
                drain(nest_p[j].rfd);
            }
        }
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(nest_calls[nest_keep], 1);
    }
    drain(nest_p[i].rfd);
}

static void test_fd_nested_takes_outer_ready(void)
{
    nest_done = false;
    for (int i = 0; i < NEST_PIPES; i++) {
        nest_p[i] = pipe_new();
        nest_calls[i] = 0;
        T_ASSERT_EQ(iot_fd_set_handler(ctx, nest_p[i].rfd, nest_cb, NULL, NULL,
                                       NULL, (void *)(intptr_t)i),
                    0);
    }
    settle();
    for (int i = 0; i < NEST_PIPES; i++) {
        write_byte(nest_p[i].wfd);
    }
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT(nest_done);
    for (int i = 0; i < NEST_PIPES; i++) {
        T_ASSERT_EQ(nest_calls[i], 1); /* the kept one too: not twice */
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    for (int i = 0; i < NEST_PIPES; i++) {
        T_ASSERT_EQ(iot_fd_set(ctx, nest_p[i].rfd, NULL, NULL), 0);
        pipe_close(&nest_p[i]);
    }
}
BACKEND_CASE(test_fd_nested_takes_outer_ready)

/* A signal interrupting a blocking wait (a handler without SA_RESTART, as
 * a profiler's or a debugger's may be): the wait returns, the loop goes
 * on, and work scheduled afterwards still wakes it and runs.  Each backend
 * meets EINTR in its own call (ppoll, a blocking read of the eventfd,
 * epoll_pwait2, io_uring_enter). */
typedef struct SigArgs {
    IotCtx *ctx;
    pthread_t home;
    atomic_int ran;
    atomic_int polls; /* the home thread's iot_ctx_poll() returns */
} SigArgs;

static void sig_nop(int sig)
{
    (void)sig;
}

static void sig_ran_cb(void *opaque)
{
    atomic_store(&((SigArgs *)opaque)->ran, 1);
}

static void *sig_thread(void *opaque)
{
    SigArgs *a = opaque;

    for (int i = 0; i < 5; i++) {
        int polls;

        wait_loop_blocking(a->ctx);
        polls = atomic_load(&a->polls);
        /* Until the wait returns: a signal that came just before the
         * system call is not an interruption, so send it again. */
        for (int k = 0; atomic_load(&a->polls) == polls; k++) {
            if (k % 1000 == 0) {
                T_ASSERT_EQ(pthread_kill(a->home, SIGUSR1), 0);
            }
            sched_yield();
        }
    }
    wait_loop_blocking(a->ctx);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(a->ctx, sig_ran_cb, a), 0);
    return NULL;
}

/* Home thread: a blocking loop that sig_thread() interrupts, until the
 * work scheduled after the signals has run. */
static void signal_rounds(void)
{
    struct sigaction sa = { .sa_handler = sig_nop }, old;
    SigArgs a = { .ctx = ctx, .home = pthread_self() };
    pthread_t thr;

    settle();
    sigemptyset(&sa.sa_mask);
    T_ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
    T_ASSERT_EQ(pthread_create(&thr, NULL, sig_thread, &a), 0);
    while (!atomic_load(&a.ran)) {
        iot_ctx_poll(ctx, true);
        atomic_fetch_add(&a.polls, 1);
    }
    T_ASSERT_EQ(pthread_join(thr, NULL), 0);
    T_ASSERT_EQ(sigaction(SIGUSR1, &old, NULL), 0);
}

static void test_fd_signal_during_wait(void)
{
    Pipe p = pipe_new();
    int n = 0;

    /* An fd besides the notifier, so that every backend really waits on
     * its own call. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &n),
                0);
    signal_rounds();
    T_ASSERT_EQ(n, 0);
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    pipe_close(&p);
}
BACKEND_CASE(test_fd_signal_during_wait)

/* The same with nothing but the notifier: poll's single blocking read of
 * the eventfd. */
static void test_fd_signal_during_notifier_read(void)
{
    signal_rounds();
}
BACKEND_CASE(test_fd_signal_during_notifier_read)

/* The same when the blocking wait also hands the kernel a request: after
 * an event, io_uring's one-shot poll is armed again by the enter that
 * waits, and an enter that submitted returns the number submitted, not
 * -EINTR, when a signal ends its wait.  That wait went on, so a signal
 * ended it only when a second one came (found by review).  Each round: a
 * byte (the handler drains it), then signals until the wait returns; a
 * round that needed one signal shows the first one ended it. */
typedef struct SigSubmit {
    IotCtx *ctx;
    Pipe p;
    pthread_t home;
    atomic_int reads, polls, stop;
    int signals[16]; /* per round, to end the wait */
} SigSubmit;

static void sig_submit_read(void *opaque)
{
    SigSubmit *a = opaque;
    char buf[8];

    while (read(a->p.rfd, buf, sizeof(buf)) > 0) {
        atomic_fetch_add(&a->reads, 1);
    }
}

static void *sig_submit_thread(void *opaque)
{
    SigSubmit *a = opaque;

    for (int r = 0; r < 16; r++) {
        int reads = atomic_load(&a->reads), polls;

        T_ASSERT_EQ(write(a->p.wfd, "x", 1), 1);
        while (atomic_load(&a->reads) == reads) {
            sched_yield();
        }
        wait_loop_blocking(a->ctx); /* the next wait, with its re-arm */
        polls = atomic_load(&a->polls);
        /* Some room to enter the system call: a signal before it does not
         * count (rounds that miss it need two, whatever the backend). */
        for (int k = 1; atomic_load(&a->polls) == polls; k++) {
            if (k % 1000 == 100) {
                T_ASSERT_EQ(pthread_kill(a->home, SIGUSR1), 0);
                a->signals[r]++;
            }
            sched_yield();
        }
    }
    atomic_store(&a->stop, 1);
    iot_ctx_notify(a->ctx);
    return NULL;
}

static void test_fd_signal_during_submitting_wait(void)
{
    struct sigaction sa = { .sa_handler = sig_nop }, old;
    SigSubmit a = { .ctx = ctx, .home = pthread_self() };
    pthread_t thr;
    int fewest = INT_MAX;

    a.p = pipe_new();
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, a.p.rfd, sig_submit_read, NULL, NULL, NULL, &a),
        0);
    settle();
    sigemptyset(&sa.sa_mask);
    T_ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
    T_ASSERT_EQ(pthread_create(&thr, NULL, sig_submit_thread, &a), 0);
    while (!atomic_load(&a.stop)) {
        iot_ctx_poll(ctx, true);
        atomic_fetch_add(&a.polls, 1);
    }
    T_ASSERT_EQ(pthread_join(thr, NULL), 0);
    T_ASSERT_EQ(sigaction(SIGUSR1, &old, NULL), 0);
    for (int r = 0; r < 16; r++) {
        fewest = a.signals[r] < fewest ? a.signals[r] : fewest;
    }
    if (fewest != 1) {
        t_fail(__FILE__, __LINE__,
               "no wait ended at its first signal (fewest %d)", fewest);
    }
    T_ASSERT_EQ(iot_fd_set(ctx, a.p.rfd, NULL, NULL), 0);
    pipe_close(&a.p);
}
BACKEND_CASE(test_fd_signal_during_submitting_wait)

/* A handler replaced inside a callback (its old self is freed only when
 * the outermost iteration ends) must not make nested iterations skip the
 * fd check: the old one still counted as polled, so "every pollable
 * handler busy polls" held while the new one had never been looked at,
 * and a busy-poll hit of another handler skipped its fd for as long as
 * the nesting lasted. */
typedef struct Replaced {
    Pipe p;
    Polled a, a2;
    int hits;
} Replaced;

static bool always_poll(void *opaque)
{
    (void)opaque;
    return true;
}

static void replaced_hit(void *opaque)
{
    (*(int *)opaque)++;
}

static void replace_and_nest_bh(void *opaque)
{
    Replaced *r = opaque;

    T_ASSERT_EQ(iot_fd_set_handler(ctx, r->p.rfd, polled_read, NULL,
                                   polled_poll, polled_ready, &r->a2),
                0);
    write_byte(r->p.wfd);
    for (int i = 0; i < 5 && r->a2.nread == 0; i++) {
        iot_ctx_poll(ctx, true);
    }
}

static void *notify_when_blocked(void *opaque)
{
    (void)opaque;
    wait_loop_blocking(ctx);
    iot_ctx_notify(ctx);
    return NULL;
}

static void test_fd_replaced_in_callback(void)
{
    Replaced r = { .p = pipe_new() };
    Pipe q = pipe_new();
    pthread_t th;

    T_ASSERT_EQ(iot_ctx_set_poll_params(ctx, 1000000, 0, 0), 0);
    /* The notifier polls too, once it has fired through its fd: then
     * every pollable handler is on the poll list. */
    settle();
    T_ASSERT_EQ(pthread_create(&th, NULL, notify_when_blocked, NULL), 0);
    iot_ctx_poll(ctx, true);
    T_ASSERT_EQ(pthread_join(th, NULL), 0);
    T_ASSERT_TRUE(ctx->notifier_h->in_poll_list);
    /* A on the pipe and a handler whose io_poll always hits, both on the
     * poll list (each once dispatched as ready). */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, r.p.rfd, polled_read, NULL, polled_poll,
                                   polled_ready, &r.a),
                0);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, q.rfd, replaced_hit, NULL, always_poll,
                                   replaced_hit, &r.hits),
                0);
    write_byte(r.p.wfd);
    write_byte(q.wfd);
    while (r.a.nread == 0 || r.hits == 0) {
        iot_ctx_poll(ctx, false);
    }
    drain(r.p.rfd);
    drain(q.rfd);
    r.hits = 0;
    while (r.hits == 0) {
        iot_ctx_poll(ctx, true); /* busy polling hits */
    }
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, replace_and_nest_bh, &r), 0);
    iot_ctx_poll(ctx, false);
    T_ASSERT(r.a2.nread > 0);
    T_ASSERT_EQ(iot_fd_set(ctx, q.rfd, NULL, NULL), 0);
    T_ASSERT_EQ(iot_fd_set(ctx, r.p.rfd, NULL, NULL), 0);
    pipe_close(&r.p);
    pipe_close(&q);
}
BACKEND_CASE(test_fd_replaced_in_callback)

/* iot_ctx_set_event_poll() racing a removal of the same event: the
 * removal is never undone.  It read the callbacks, dropped the lock and
 * installed them again, so a removal in that gap came back to life, with
 * callbacks on an fd its owner believed unwatched. */
typedef struct SetPollRace {
    IotEvent e;
    atomic_bool go;
    int ret;
} SetPollRace;

static void *set_poll_fn(void *opaque)
{
    SetPollRace *r = opaque;

    while (!atomic_load(&r->go)) {
    }
    r->ret = iot_ctx_set_event_poll(ctx, &r->e, ev_nop, ev_nop);
    return NULL;
}

static void test_fd_set_event_poll_vs_remove(void)
{
    SetPollRace r;
    long rounds = t_scale(20000, 10);

    T_ASSERT_EQ(iot_event_init(&r.e, false), 0);
    for (long i = 0; i < rounds; i++) {
        pthread_t th;

        atomic_store(&r.go, false);
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &r.e, ev_nop, ev_poll_false, ev_nop),
                    0);
        T_ASSERT_EQ(pthread_create(&th, NULL, set_poll_fn, &r), 0);
        atomic_store(&r.go, true);
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &r.e, NULL, NULL, NULL), 0);
        T_ASSERT_EQ(pthread_join(th, NULL), 0);
        T_ASSERT(r.ret == 0 || r.ret == -ENOENT);
        iot__lockcnt_lock(&ctx->list_lock);
        if ((unsigned)r.e.rfd < ctx->fd_live_n && ctx->fd_live[r.e.rfd]) {
            iot__lockcnt_unlock(&ctx->list_lock);
            t_fail(__FILE__, __LINE__,
                   "round %ld: the removed handler is live again", i);
        }
        iot__lockcnt_unlock(&ctx->list_lock);
    }
    while (iot_ctx_poll(ctx, false)) {
    }
    iot_event_cleanup(&r.e);
}
BACKEND_CASE(test_fd_set_event_poll_vs_remove)

/* ---- many handlers (epoll upgrade in AUTO; none otherwise) ---- */

#define NSLOTS 70

typedef struct Slot {
    IotEvent e;
    int n;
} Slot;

static void slot_cb(IotEvent *e)
{
    Slot *s = container_of(e, Slot, e);

    T_ASSERT_TRUE(iot_event_test_and_clear(e));
    s->n++;
}

static void slots_check(Slot *slots, int nslots, const int *expect_set,
                        int nexpect)
{
    for (int i = 0; i < nslots; i++) {
        int want = 0;
        for (int j = 0; j < nexpect; j++) {
            want |= expect_set[j] == i;
        }
        if (slots[i].n != want) {
            t_fail(__FILE__, __LINE__, "slot %d: %d callbacks, expected %d", i,
                   slots[i].n, want);
        }
        slots[i].n = 0;
    }
}

/* Registers NSLOTS event notifiers; checks delivery and removal.
 * @upgrade: AUTO, so the backend must become epoll for good. */
static void many_fds(bool upgrade)
{
    static Slot slots[NSLOTS + 1];
    static const int some[] = { 0, 17, 42, 63, 69 };
    static const int one[] = { 5 };

    for (int i = 0; i <= NSLOTS; i++) {
        T_ASSERT_EQ(iot_event_init(&slots[i].e, false), 0);
        slots[i].n = 0;
    }
    /* A few fds: AUTO stays on poll. */
    for (int i = 0; i < 10; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[i].e, slot_cb, NULL, NULL),
                    0);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    if (upgrade) {
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "poll");
    }
    for (int i = 10; i < NSLOTS; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[i].e, slot_cb, NULL, NULL),
                    0);
    }
    T_ASSERT_EQ(live_cnt(), base_live + NSLOTS);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    if (upgrade) {
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "epoll");
    }
    slots_check(slots, NSLOTS + 1, NULL, 0);

    /* Events on a few of them are all delivered, once. */
    for (size_t j = 0; j < sizeof(some) / sizeof(some[0]); j++) {
        T_ASSERT_EQ(iot_event_set(&slots[some[j]].e), 0);
    }
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    slots_check(slots, NSLOTS + 1, some, 5);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* Blocking. */
    T_ASSERT_EQ(iot_event_set(&slots[5].e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    slots_check(slots, NSLOTS + 1, one, 1);

    /* A handler added after the switch is watched too. */
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[NSLOTS].e, slot_cb, NULL, NULL),
                0);
    T_ASSERT_EQ(iot_event_set(&slots[NSLOTS].e), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    {
        const int last[] = { NSLOTS };
        slots_check(slots, NSLOTS + 1, last, 1);
    }

    /* Remove all; set them all: nothing runs. */
    for (int i = 0; i <= NSLOTS; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[i].e, NULL, NULL, NULL), 0);
    }
    T_ASSERT_EQ(live_cnt(), base_live);
    for (int i = 0; i <= NSLOTS; i++) {
        T_ASSERT_EQ(iot_event_set(&slots[i].e), 0);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    slots_check(slots, NSLOTS + 1, NULL, 0);
    if (upgrade) {
        /* One-way: few fds left, still epoll. */
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "epoll");
    }

    /* Re-registered (still set): delivered on the backend in use. */
    for (int i = 0; i < 3; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[i].e, slot_cb, NULL, NULL),
                    0);
    }
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    {
        const int first3[] = { 0, 1, 2 };
        slots_check(slots, NSLOTS + 1, first3, 3);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    for (int i = 0; i < 3; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[i].e, NULL, NULL, NULL), 0);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    if (upgrade) {
        T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "epoll");
    }
    for (int i = 0; i <= NSLOTS; i++) {
        iot_event_cleanup(&slots[i].e);
    }
}

/* An explicit backend never changes, however many fds. */
static void test_fd_many(void)
{
    many_fds(false);
}
BACKEND_CASE(test_fd_many)

static void test_fd_epoll_upgrade(void)
{
    T_ASSERT_EQ(unsetenv("IOTHREAD_FDMON"), 0);
    iot__io_uring_setup_fail = EPERM; /* AUTO falls back to poll, then epoll */
    ctx_setup(IOT_FDMON_AUTO);
    many_fds(true);
    ctx_teardown();
}

/* AUTO without io_uring, past the epoll threshold, with an fd epoll
 * refuses (a regular file): it stays on poll and does not try epoll again
 * at every wait (each try made an instance and registered every handler,
 * only to fail again). */
static void test_fd_epoll_refused_once(void)
{
    static Slot slots[NSLOTS];
    int file = open("/proc/self/stat", O_RDONLY | O_CLOEXEC), n = 0;
    unsigned long before;

    T_ASSERT(file >= 0);
    T_ASSERT_EQ(unsetenv("IOTHREAD_FDMON"), 0);
    iot__io_uring_setup_fail = EPERM;
    ctx_setup(IOT_FDMON_AUTO);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, file, count_cb, NULL, NULL, NULL, &n),
                0);
    for (int i = 0; i < NSLOTS; i++) {
        T_ASSERT_EQ(iot_event_init(&slots[i].e, false), 0);
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[i].e, ev_nop, NULL, NULL), 0);
    }
    before = atomic_load(&iot__epoll_instances);
    for (int i = 0; i < 10; i++) {
        iot_ctx_poll(ctx, false);
    }
    T_ASSERT(atomic_load(&iot__epoll_instances) - before <= 1);
    T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "poll");
    T_ASSERT(n >= 10); /* and poll watches the file (always readable) */
    for (int i = 0; i < NSLOTS; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[i].e, NULL, NULL, NULL), 0);
        iot_event_cleanup(&slots[i].e);
    }
    T_ASSERT_EQ(iot_fd_set(ctx, file, NULL, NULL), 0);
    close(file);
    ctx_teardown();
}

/* epoll falling back to poll (an fd it refuses) from a handler change:
 * the instance is closed by the home thread at its next wait, not by the
 * thread that made the change, as the home thread may be waiting on it
 * (its number, reused, would have it wait on someone else's file). */
static void test_fd_epoll_fallback_closes_on_home(void)
{
    int file = open("/proc/self/stat", O_RDONLY | O_CLOEXEC), n = 0;
    int epfd = atomic_load(&ctx->epollfd);

    T_ASSERT(file >= 0 && epfd >= 0);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, file, count_cb, NULL, NULL, NULL, &n),
                0);
    T_ASSERT_STR(iot_ctx_fdmon_name(ctx), "poll");
    T_ASSERT(fcntl(epfd, F_GETFD) >= 0); /* still open */
    T_ASSERT(iot_ctx_poll(ctx, false));  /* the file is always readable */
    T_ASSERT(n > 0);
    T_ASSERT(fcntl(epfd, F_GETFD) < 0 && errno == EBADF);
    T_ASSERT_EQ(iot_fd_set(ctx, file, NULL, NULL), 0);
    close(file);
}

static void test_fd_epoll_fallback_closes_on_home_epoll(void)
{
    ctx_setup(IOT_FDMON_EPOLL);
    test_fd_epoll_fallback_closes_on_home();
    /* Not ctx_teardown(), which expects the backend it started with. */
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
    ctx = NULL;
}

/* ---- churn: the list's links and the fd index stay exact ---- */

/* Every link of the handler list, both ways, and the index by fd: each
 * live handler is the one its fd finds. */
static void list_check(void)
{
    IotHandler *prev = NULL;
    int live = 0;

    iot__lockcnt_lock(&ctx->list_lock);
    for (IotHandler *h = atomic_load(&ctx->handlers); h;
         h = atomic_load(&h->next)) {
        T_ASSERT(h->prev == prev);
        if (!atomic_load(&h->deleted)) {
            T_ASSERT((unsigned)h->fd < ctx->fd_live_n);
            T_ASSERT(ctx->fd_live[h->fd] == h);
            live++;
        }
        prev = h;
    }
    for (unsigned fd = 0; fd < ctx->fd_live_n; fd++) {
        IotHandler *h = ctx->fd_live[fd];
        T_ASSERT(!h || ((unsigned)h->fd == fd && !atomic_load(&h->deleted)));
        live -= h != NULL;
    }
    T_ASSERT_EQ(live, 0);
    iot__lockcnt_unlock(&ctx->list_lock);
}

/* Handlers added, replaced and removed in a scrambled order, one of them
 * on a high fd number, with iterations (which free what was removed) in
 * between: events reach exactly the registered ones. */
static void test_fd_churn(void)
{
    enum { N = 40, HIGH = 900 };
    static Slot slots[N];
    int set[N], nset;

    for (int i = 0; i < N; i++) {
        T_ASSERT_EQ(iot_event_init(&slots[i].e, false), 0);
        slots[i].n = 0;
    }
    /* Slot 0 on a high fd: the index grows. */
    T_ASSERT_EQ(dup2(iot_event_fd(&slots[0].e), HIGH), HIGH);
    close(slots[0].e.rfd);
    slots[0].e.rfd = slots[0].e.wfd = HIGH;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            T_ASSERT_EQ(
                iot_ctx_set_event(ctx, &slots[i].e, slot_cb, NULL, NULL), 0);
        }
        /* Replace every third: same fd, a new handler. */
        for (int i = 0; i < N; i += 3) {
            T_ASSERT_EQ(
                iot_ctx_set_event(ctx, &slots[i].e, slot_cb, NULL, NULL), 0);
        }
        list_check();
        T_ASSERT_EQ(live_cnt(), base_live + N);
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        list_check();
        /* Remove 7k mod N (every slot once, scrambled) but keep 1 in 4. */
        nset = 0;
        for (int k = 0; k < N; k++) {
            int i = (k * 7 + round) % N;
            if (i % 4 == round) {
                set[nset++] = i;
                continue;
            }
            T_ASSERT_EQ(iot_ctx_set_event(ctx, &slots[i].e, NULL, NULL, NULL),
                        0);
            if (k % 5 == 0) {
                list_check();
                T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
            }
        }
        list_check();
        T_ASSERT_EQ(live_cnt(), base_live + nset);
        for (int i = 0; i < N; i++) {
            T_ASSERT_EQ(iot_event_set(&slots[i].e), 0);
        }
        T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
        slots_check(slots, N, set, nset);
        list_check();
        for (int i = 0; i < N; i++) {
            iot_event_test_and_clear(&slots[i].e);
        }
        for (int j = 0; j < nset; j++) {
            T_ASSERT_EQ(
                iot_ctx_set_event(ctx, &slots[set[j]].e, NULL, NULL, NULL), 0);
        }
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        list_check();
        T_ASSERT_EQ(live_cnt(), base_live);
    }
    for (int i = 0; i < N; i++) {
        iot_event_cleanup(&slots[i].e);
    }
}
BACKEND_CASE(test_fd_churn)

/* ---- many fds ready at once ---- */

#define NREADY 600 /* within a default 1024-fd limit */

static IotEvent ready_ev[NREADY];
static int ready_hits[NREADY];

static void ready_cb(IotEvent *e)
{
    iot_event_test_and_clear(e);
    ready_hits[e - ready_ev]++;
}

/* More fds ready at once than the io_uring rings hold (128 SQ, 256 CQ):
 * every one is delivered once per round, and re-arming them does not
 * feed itself (it once looped forever, re-arming still-readable fds while
 * reaping).  The other backends must do the same. */
static void test_fd_many_ready(void)
{
    for (int i = 0; i < NREADY; i++) {
        T_ASSERT_EQ(iot_event_init(&ready_ev[i], false), 0);
        ready_hits[i] = 0;
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &ready_ev[i], ready_cb, NULL, NULL),
                    0);
    }
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    for (int round = 1; round <= 3; round++) {
        int done;
        for (int i = 0; i < NREADY; i++) {
            T_ASSERT_EQ(iot_event_set(&ready_ev[i]), 0);
        }
        do {
            iot_ctx_poll(ctx, true);
            done = 0;
            for (int i = 0; i < NREADY; i++) {
                T_ASSERT(ready_hits[i] <= round);
                done += ready_hits[i] == round;
            }
        } while (done < NREADY);
    }
    for (int i = 0; i < NREADY; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &ready_ev[i], NULL, NULL, NULL), 0);
        iot_event_cleanup(&ready_ev[i]);
    }
}
BACKEND_CASE(test_fd_many_ready)

/* ---- fdmon/env ---- */

static void noop_fd_read(void *opaque)
{
    (void)opaque;
}

static void env_expect(const char *env, IotFdmonKind kind, const char *name)
{
    IotCtxOptions opts = { .fdmon = kind };
    IotError *err = NULL;
    IotCtx *c;

    T_ASSERT_EQ(setenv("IOTHREAD_FDMON", env, 1), 0);
    c = kind == IOT_FDMON_AUTO ? iot_ctx_new(&err)
                               : iot_ctx_new_full(&opts, &err);
    if (!c) {
        t_fail(__FILE__, __LINE__, "IOTHREAD_FDMON=%s: %s", env,
               err ? iot_error_message(err) : "(no error)");
    }
    T_ASSERT(err == NULL);
    T_ASSERT_STR(iot_ctx_fdmon_name(c), name);
    iot_ctx_unref(c);
}

/* An AUTO context with a pipe handler, after one poll: the backend it
 * moved to.  The caller frees the context and the pipe. */
static void auto_with_fd(IotCtx *c, int pipefd[2])
{
    T_ASSERT_EQ(pipe(pipefd), 0);
    T_ASSERT_EQ(iot_ctx_set_current(c), 0);
    T_ASSERT_EQ(
        iot_fd_set_handler(c, pipefd[0], noop_fd_read, NULL, NULL, NULL, NULL),
        0);
    T_ASSERT_FALSE(iot_ctx_poll(c, false));
}

static void auto_with_fd_done(IotCtx *c, int pipefd[2])
{
    T_ASSERT_EQ(iot_fd_set_handler(c, pipefd[0], NULL, NULL, NULL, NULL, NULL),
                0);
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(c);
    close(pipefd[0]);
    close(pipefd[1]);
}

static void test_fdmon_env(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_AUTO };
    /* AUTO starts on poll; io_uring comes with the first fd. */
    const char *dflt = "poll";
    int pipefd[2];
    IotError *err = NULL;
    IotCtx *c;

    env_expect("epoll", IOT_FDMON_AUTO, "epoll");
    env_expect("poll", IOT_FDMON_AUTO, "poll");
    env_expect("auto", IOT_FDMON_AUTO, dflt);
    env_expect("", IOT_FDMON_AUTO, dflt);
    if (have_io_uring()) {
        env_expect("io_uring", IOT_FDMON_AUTO, "io_uring");
    }

    /* AUTO through iot_ctx_new_full honours it too. */
    T_ASSERT_EQ(setenv("IOTHREAD_FDMON", "epoll", 1), 0);
    c = iot_ctx_new_full(&opts, &err);
    T_ASSERT(c != NULL);
    T_ASSERT_STR(iot_ctx_fdmon_name(c), "epoll");
    iot_ctx_unref(c);

    /* An explicit backend ignores the variable. */
    env_expect("epoll", IOT_FDMON_POLL, "poll");
    env_expect("poll", IOT_FDMON_EPOLL, "epoll");
    env_expect("bogus", IOT_FDMON_EPOLL, "epoll");

    /* An unknown value fails creation with a message naming it. */
    T_ASSERT_EQ(setenv("IOTHREAD_FDMON", "bogus", 1), 0);
    c = iot_ctx_new(&err);
    T_ASSERT(c == NULL);
    T_ASSERT(err != NULL);
    T_ASSERT(strstr(iot_error_message(err), "IOTHREAD_FDMON") != NULL);
    iot_error_free(err);
    err = NULL;
    c = iot_ctx_new_full(&opts, &err);
    T_ASSERT(c == NULL);
    T_ASSERT(err != NULL);
    T_ASSERT(strstr(iot_error_message(err), "IOTHREAD_FDMON") != NULL);
    iot_error_free(err);

    /* NULL errp is allowed. */
    T_ASSERT(iot_ctx_new(NULL) == NULL);

    T_ASSERT_EQ(unsetenv("IOTHREAD_FDMON"), 0);
    env_expect("poll", IOT_FDMON_POLL, "poll");
    T_ASSERT_EQ(unsetenv("IOTHREAD_FDMON"), 0);
    c = iot_ctx_new(NULL);
    T_ASSERT(c != NULL);
    T_ASSERT_STR(iot_ctx_fdmon_name(c), dflt);
    auto_with_fd(c, pipefd);
    T_ASSERT_STR(iot_ctx_fdmon_name(c), have_io_uring() ? "io_uring" : "poll");
    auto_with_fd_done(c, pipefd);
}

/* AUTO falls back when io_uring cannot be set up (disabled by sysctl,
 * seccomp, ENOMEM...), and says so; asking for io_uring by name fails
 * with a message instead. */
static void test_fdmon_fallback(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };
    IotError *err = NULL;
    IotCtx *c;
    IotCtxStats st;

    T_ASSERT_EQ(unsetenv("IOTHREAD_FDMON"), 0);
    iot__io_uring_setup_fail = EPERM;
    c = iot_ctx_new(&err);
    T_ASSERT(c != NULL);
    T_ASSERT(err == NULL);
    {
        int pipefd[2];

        /* The move to io_uring fails: it stays on poll, and does not try
         * again at every wait. */
        auto_with_fd(c, pipefd);
        T_ASSERT_STR(iot_ctx_fdmon_name(c), "poll");
        T_ASSERT_TRUE(c->iou_failed);
        iot_ctx_get_stats(c, &st);
        T_ASSERT_STR(st.backend, "poll");
        T_ASSERT_FALSE(iot_ctx_poll(c, false));
        T_ASSERT_STR(iot_ctx_fdmon_name(c), "poll");
        auto_with_fd_done(c, pipefd);
    }

    c = iot_ctx_new_full(&opts, &err);
    T_ASSERT(c == NULL);
    T_ASSERT(err != NULL);
    T_ASSERT(strstr(iot_error_message(err), "io_uring") != NULL);
    iot_error_free(err);
    iot__io_uring_setup_fail = 0;
}

/* ---- fd/hup ---- */

static void *close_when_blocked(void *opaque)
{
    Pipe *p = opaque;

    wait_loop_blocking(ctx);
    close(p->wfd);
    return NULL;
}

static void test_fd_hup(void)
{
    Pipe p = pipe_new();
    int n = 0;
    pthread_t th;

    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &n),
                0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(n, 0);
    close(p.wfd);
    p.wfd = -1;
    /* POLLHUP is reported to the read callback, level-triggered. */
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(n, 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(n, 2);
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(n, 2);
    pipe_close(&p);

    /* A hang-up while the loop is blocked wakes it. */
    p = pipe_new();
    n = 0;
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &n),
                0);
    settle();
    T_ASSERT_EQ(pthread_create(&th, NULL, close_when_blocked, &p), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(pthread_join(th, NULL), 0);
    T_ASSERT_EQ(n, 1);
    p.wfd = -1;
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    pipe_close(&p);

    /* The other direction: a write-only handler on a pipe whose read end
     * is closed gets POLLERR, which goes to the write callback. */
    p = pipe_new();
    n = 0;
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.wfd, NULL, count_cb, NULL, NULL, &n),
                0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false)); /* writable */
    T_ASSERT_EQ(n, 1);
    close(p.rfd);
    p.rfd = -1;
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(n, 2);
    T_ASSERT_EQ(iot_fd_set(ctx, p.wfd, NULL, NULL), 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(n, 2);
    pipe_close(&p);
}
BACKEND_CASE(test_fd_hup)

/* An fd closed before its handler is removed, while its file stays open
 * through another fd (a dup, a child's copy): the removed handler never
 * runs again.  epoll keeps a registration whose DEL fails after the close,
 * and its events used to bring back the freed handler. */
static void test_fd_closed_before_removed(void)
{
    Pipe p = pipe_new();
    int n = 0, keep = dup(p.rfd);
    char c = 'x';

    T_ASSERT(keep >= 0);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &n),
                0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
    close(p.rfd);
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    p.rfd = -1;
    T_ASSERT_EQ(write(p.wfd, &c, 1), 1);
    for (int i = 0; i < 3; i++) {
        iot_ctx_poll(ctx, false);
    }
    T_ASSERT_EQ(n, 0);
    /* And the context still watches fds. */
    T_ASSERT_EQ(iot_fd_set_handler(ctx, keep, count_cb, NULL, NULL, NULL, &n),
                0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(n, 1);
    T_ASSERT_EQ(iot_fd_set(ctx, keep, NULL, NULL), 0);
    close(keep);
    pipe_close(&p);
}
BACKEND_CASE(test_fd_closed_before_removed)

/* The same from another thread while the loop runs, with many handlers
 * (so that putting a new instance in place takes a while): the removed
 * handler must not be freed before the new instance is in place, or a
 * wait on the old one hands the loop freed memory (ASan). */
typedef struct ClosedRace {
    atomic_bool stop;
    int rounds;
} ClosedRace;

static void *closed_race_fn(void *opaque)
{
    ClosedRace *r = opaque;
    int n = 0;
    char c = 'x';

    for (int i = 0; i < r->rounds; i++) {
        Pipe p = pipe_new();
        int keep = dup(p.rfd);

        T_ASSERT(keep >= 0);
        T_ASSERT_EQ(write(p.wfd, &c, 1), 1);
        T_ASSERT_EQ(
            iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &n), 0);
        close(p.rfd);
        T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
        p.rfd = -1;
        close(keep);
        pipe_close(&p);
    }
    atomic_store(&r->stop, true);
    return NULL;
}

static void test_fd_closed_before_removed_race(void)
{
    enum { IDLE = 400 };
    static Pipe idle[IDLE];
    ClosedRace r = { .rounds = (int)t_scale(300, 10) };
    pthread_t th;
    int n = 0;

    for (int i = 0; i < IDLE; i++) {
        idle[i] = pipe_new();
        T_ASSERT_EQ(iot_fd_set_handler(ctx, idle[i].rfd, count_cb, NULL, NULL,
                                       NULL, &n),
                    0);
    }
    T_ASSERT_EQ(pthread_create(&th, NULL, closed_race_fn, &r), 0);
    while (!atomic_load(&r.stop)) {
        iot_ctx_poll(ctx, false);
    }
    T_ASSERT_EQ(pthread_join(th, NULL), 0);
    while (iot_ctx_poll(ctx, false)) {
    }
    T_ASSERT_EQ(n, 0);
    for (int i = 0; i < IDLE; i++) {
        T_ASSERT_EQ(iot_fd_set(ctx, idle[i].rfd, NULL, NULL), 0);
        pipe_close(&idle[i]);
    }
}
BACKEND_CASE(test_fd_closed_before_removed_race)

#ifdef __x86_64__
/* This (forked) test process: system call @nr fails with EPERM from now
 * on, as a container runtime's seccomp profile refuses one it does not
 * know. */
static void refuse_syscall(long nr)
{
    struct sock_filter insns[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(insns) / sizeof(insns[0]),
                               .filter = insns };

    T_ASSERT_EQ(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    T_ASSERT_EQ(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}
#endif

/* epoll_pwait2 refused as container runtimes' seccomp profiles refuse a
 * system call they do not know (EPERM): the epoll backend waits another
 * way.  It used to take only ENOSYS for "missing", and every wait with a
 * timeout then failed at once without looking at any fd. */
static void test_fd_epoll_pwait2_refused(void)
{
#if defined(__x86_64__) && defined(SYS_epoll_pwait2)
    Pipe p = pipe_new();
    int n = 0, fired = 0;
    IotTimer *t = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, count_cb, &fired);
    char c = 'x';

    refuse_syscall(SYS_epoll_pwait2);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &n),
                0);
    /* A wait with a timeout (the timer, far off) finds the ready fd. */
    iot_timer_mod(t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + 3600 * IOT_NS_PER_S);
    while (iot_ctx_poll(ctx, false)) {
    }
    iot_ctx_poll(ctx, false); /* and the timer's kick is accepted */
    T_ASSERT_EQ(write(p.wfd, &c, 1), 1);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(n, 1);
    T_ASSERT_EQ(fired, 0);
    /* A wait that times out (no fd ready, the timer due in 20 ms) ends
     * on time, and the timer fires once. */
    T_ASSERT_EQ(read(p.rfd, &c, 1), 1);
    iot_timer_mod(t, iot_clock_ns(IOT_CLOCK_MONOTONIC) + 20 * IOT_NS_PER_MS);
    while (!fired) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT_EQ(fired, 1);
    T_ASSERT_EQ(n, 1);
    iot_timer_free(t);
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    pipe_close(&p);
#endif
}

/* Where eventfd is refused (a seccomp profile), IotEvent falls back to a
 * pipe: set, test-and-clear and the loop's own notifier work as with an
 * eventfd, on every backend, and a set on a full pipe counts as set. */
static void *pipe_kick_thread(void *opaque)
{
    SigArgs *a = opaque; /* only ctx and ran */

    wait_loop_blocking(a->ctx);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(a->ctx, sig_ran_cb, a), 0);
    return NULL;
}

static void test_event_pipe_fallback(void)
{
#if defined(__x86_64__) && defined(SYS_eventfd2)
    static const IotFdmonKind kinds[] = { IOT_FDMON_POLL, IOT_FDMON_EPOLL,
                                          IOT_FDMON_IO_URING };
    IotEvent e;

    refuse_syscall(SYS_eventfd2);
    T_ASSERT_EQ(iot_event_init(&e, false), 0);
    T_ASSERT(e.rfd != e.wfd); /* a pipe */
    T_ASSERT_FALSE(iot_event_test_and_clear(&e));
    for (int i = 0; i < 100000; i++) { /* past the pipe's 64 KiB */
        T_ASSERT_EQ(iot_event_set(&e), 0);
    }
    T_ASSERT_TRUE(iot_event_test_and_clear(&e)); /* drains it all */
    T_ASSERT_FALSE(iot_event_test_and_clear(&e));
    iot_event_cleanup(&e);

    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        SigArgs a = { 0 };
        pthread_t thr;

        if (kinds[k] == IOT_FDMON_IO_URING && !have_io_uring()) {
            continue;
        }
        ctx = new_ctx_or_fail(kinds[k]);
        T_ASSERT(ctx->notifier.rfd != ctx->notifier.wfd);
        T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
        a.ctx = ctx;
        settle();
        T_ASSERT_EQ(pthread_create(&thr, NULL, pipe_kick_thread, &a), 0);
        while (!atomic_load(&a.ran)) {
            iot_ctx_poll(ctx, true); /* a lost kick hangs the case */
        }
        T_ASSERT_EQ(pthread_join(thr, NULL), 0);
        T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
        T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
        iot_ctx_unref(ctx);
        ctx = NULL;
    }
#endif
}

static void test_fd_epoll_pwait2_refused_epoll(void)
{
    run_with(IOT_FDMON_EPOLL, test_fd_epoll_pwait2_refused);
}

/* ---- fd/many-changes-in-callback ---- */

#define NVICTIMS   5
#define NNEW       10
#define NTRANSIENT 3

typedef struct Churn {
    IotEvent victims[NVICTIMS];
    bool removed[NVICTIMS];
    int victim_calls_after_removal;
    IotEvent fresh[NNEW];
    int fresh_n[NNEW];
    IotEvent transient[NTRANSIENT];
    int transient_n;
    IotEvent trigger;
    int trigger_n;
} Churn;

static Churn churn;

static void victim_cb(IotEvent *e)
{
    int i = (int)(e - churn.victims);

    T_ASSERT(i >= 0 && i < NVICTIMS);
    if (churn.removed[i]) {
        churn.victim_calls_after_removal++;
    }
    /* Not cleared: stays ready, level-triggered. */
}

static void fresh_cb(IotEvent *e)
{
    int i = (int)(e - churn.fresh);

    T_ASSERT(i >= 0 && i < NNEW);
    T_ASSERT_TRUE(iot_event_test_and_clear(e));
    churn.fresh_n[i]++;
}

static void transient_cb(IotEvent *e)
{
    (void)e;
    churn.transient_n++;
}

static void trigger_cb(IotEvent *e)
{
    T_ASSERT_TRUE(iot_event_test_and_clear(e));
    churn.trigger_n++;
    for (int i = 0; i < NNEW; i++) {
        T_ASSERT_EQ(
            iot_ctx_set_event(ctx, &churn.fresh[i], fresh_cb, NULL, NULL), 0);
    }
    for (int i = 0; i < NVICTIMS; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &churn.victims[i], NULL, NULL, NULL),
                    0);
        churn.removed[i] = true;
    }
    /* Added and removed again within the same callback. */
    for (int i = 0; i < NTRANSIENT; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &churn.transient[i], transient_cb,
                                      NULL, NULL),
                    0);
    }
    for (int i = 0; i < NTRANSIENT; i++) {
        T_ASSERT_EQ(
            iot_ctx_set_event(ctx, &churn.transient[i], NULL, NULL, NULL), 0);
    }
}

static void churn_round(bool trigger_first)
{
    memset(&churn, 0, sizeof(churn));
    for (int i = 0; i < NVICTIMS; i++) {
        T_ASSERT_EQ(iot_event_init(&churn.victims[i], true), 0);
    }
    for (int i = 0; i < NNEW; i++) {
        T_ASSERT_EQ(iot_event_init(&churn.fresh[i], true), 0);
    }
    for (int i = 0; i < NTRANSIENT; i++) {
        T_ASSERT_EQ(iot_event_init(&churn.transient[i], true), 0);
    }
    T_ASSERT_EQ(iot_event_init(&churn.trigger, true), 0);

    if (trigger_first) {
        T_ASSERT_EQ(
            iot_ctx_set_event(ctx, &churn.trigger, trigger_cb, NULL, NULL), 0);
    }
    for (int i = 0; i < NVICTIMS; i++) {
        T_ASSERT_EQ(
            iot_ctx_set_event(ctx, &churn.victims[i], victim_cb, NULL, NULL),
            0);
    }
    if (!trigger_first) {
        T_ASSERT_EQ(
            iot_ctx_set_event(ctx, &churn.trigger, trigger_cb, NULL, NULL), 0);
    }
    T_ASSERT_EQ(live_cnt(), base_live + NVICTIMS + 1);

    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(churn.trigger_n, 1);
    T_ASSERT_EQ(churn.victim_calls_after_removal, 0);
    T_ASSERT_EQ(churn.transient_n, 0);
    /* The new handlers were not ready when the loop waited. */
    for (int i = 0; i < NNEW; i++) {
        T_ASSERT_EQ(churn.fresh_n[i], 0);
    }
    T_ASSERT_EQ(live_cnt(), base_live + NNEW + 1);

    /* Next poll: each new one once; removed ones (still set) never. */
    T_ASSERT_TRUE(iot_ctx_poll(ctx, false));
    for (int i = 0; i < NNEW; i++) {
        T_ASSERT_EQ(churn.fresh_n[i], 1);
    }
    T_ASSERT_EQ(churn.trigger_n, 1);
    T_ASSERT_EQ(churn.victim_calls_after_removal, 0);
    T_ASSERT_EQ(churn.transient_n, 0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));

    /* And again when set. */
    T_ASSERT_EQ(iot_event_set(&churn.fresh[3]), 0);
    T_ASSERT_TRUE(iot_ctx_poll(ctx, true));
    T_ASSERT_EQ(churn.fresh_n[3], 2);

    for (int i = 0; i < NNEW; i++) {
        T_ASSERT_EQ(iot_ctx_set_event(ctx, &churn.fresh[i], NULL, NULL, NULL),
                    0);
        iot_event_cleanup(&churn.fresh[i]);
    }
    T_ASSERT_EQ(iot_ctx_set_event(ctx, &churn.trigger, NULL, NULL, NULL), 0);
    iot_event_cleanup(&churn.trigger);
    for (int i = 0; i < NVICTIMS; i++) {
        iot_event_cleanup(&churn.victims[i]);
    }
    for (int i = 0; i < NTRANSIENT; i++) {
        iot_event_cleanup(&churn.transient[i]);
    }
    T_ASSERT_EQ(live_cnt(), base_live);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false));
}

static void test_fd_many_changes_in_callback(void)
{
    churn_round(true);
    churn_round(false);
}
BACKEND_CASE(test_fd_many_changes_in_callback)

/* An fd that is not open is refused with -EBADF (closed, or past any the
 * process may have: fd_live is not grown to its number), and its removal
 * is no error.  One closed while watched (a caller's mistake) is reported
 * once as an error where the backend sees it (poll: POLLNVAL; io_uring:
 * EBADF at a re-arm; epoll forgets a closed fd by itself), and then no longer
 * watched: the loop sleeps again.  Before, poll's POLLNVAL was masked
 * away and left the fd in every wait: a blocking loop spun for ever, and
 * this case timed out. */
static bool poll_until_count(int *n, int want);

typedef struct AsleepPost {
    int tid; /* the home thread's */
    atomic_bool ran;
} AsleepPost;

static void asleep_bh(void *opaque)
{
    atomic_store(&((AsleepPost *)opaque)->ran, true);
}

static void *post_once_asleep(void *opaque)
{
    AsleepPost *a = opaque;

    while (!t_thread_sleeping(a->tid)) {
        sched_yield();
    }
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, asleep_bh, a), 0);
    return NULL;
}

static void test_fd_closed(void)
{
    Pipe p = pipe_new();
    AsleepPost a = { .tid = gettid() };
    int n = 0, closed = dup(p.rfd), fd;
    pthread_t th;

    T_ASSERT(closed >= 0);
    close(closed);
    T_ASSERT_EQ(iot_fd_set_handler(ctx, closed, count_cb, NULL, NULL, NULL, &n),
                -EBADF);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, 1 << 20, count_cb, NULL, NULL, NULL, &n),
        -EBADF);
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, INT_MAX, count_cb, NULL, NULL, NULL, &n),
        -EBADF);
    T_ASSERT_EQ(iot_fd_set(ctx, closed, NULL, NULL), 0);
    T_ASSERT_EQ(live_cnt(), base_live);

    T_ASSERT_EQ(iot_fd_set_handler(ctx, p.rfd, count_cb, NULL, NULL, NULL, &n),
                0);
    T_ASSERT_FALSE(iot_ctx_poll(ctx, false)); /* watched (io_uring: armed) */
    fd = p.rfd;
    close(p.rfd);
    p.rfd = -1;
    if (g_kind == IOT_FDMON_POLL) {
        T_ASSERT(poll_until_count(&n, 1));
    } else {
        /* epoll and an armed io_uring poll hold the file, not the
         * number: nothing comes (io_uring reports EBADF at a re-arm). */
        iot_ctx_poll(ctx, false);
        T_ASSERT(n <= 1);
    }
    atomic_store(&a.ran, false);
    T_ASSERT_EQ(pthread_create(&th, NULL, post_once_asleep, &a), 0);
    while (!atomic_load(&a.ran)) {
        iot_ctx_poll(ctx, true);
    }
    T_ASSERT_EQ(pthread_join(th, NULL), 0);
    T_ASSERT(n <= 1);
    T_ASSERT_EQ(iot_fd_set(ctx, fd, NULL, NULL), 0);
    pipe_close(&p);
}
BACKEND_CASE(test_fd_closed)

/* io_uring: a poll request the kernel refuses (for another reason than a
 * closed fd) reaches the handler as an error, and the fd stays watched:
 * what it has later is dispatched.  It is armed again only after a
 * pause, or a refusal that lasts would make even a blocking loop spin. */
static bool poll_until_count(int *n, int want)
{
    int64_t deadline = t_now_ns() + 5 * (int64_t)1000000000;

    while (*n < want && t_now_ns() < deadline) {
        iot_ctx_poll(ctx, false);
    }
    return *n == want;
}

/* An io_uring context with @p watched by count_cb(@n), whose next @fails
 * poll requests the kernel refuses; returns once the first refusal has
 * reached the handler (as POLLERR: *n == 1).  The case is skipped where
 * io_uring cannot be set up. */
static void refused_setup(Pipe *p, int *n, int fails)
{
    if (!have_io_uring()) {
        t_skip("io_uring cannot be set up here");
    }
    ctx_setup(IOT_FDMON_IO_URING);
    *p = pipe_new();
    iot__io_uring_poll_fail = fails;
    T_ASSERT_EQ(iot_fd_set_handler(ctx, p->rfd, count_cb, NULL, NULL, NULL, n),
                0);
    T_ASSERT(poll_until_count(n, 1));
}

static void test_fd_io_uring_poll_refused(void)
{
    Pipe p;
    int n = 0;

    refused_setup(&p, &n, 1);
    T_ASSERT_EQ(iot__io_uring_poll_fail, 0);
    write_byte(p.wfd);
    T_ASSERT(poll_until_count(&n, 2)); /* watched again */
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    pipe_close(&p);
    ctx_teardown();
}

/* The same refusal, for good: blocking polls report it once per pause,
 * and sleep in between. */
static void test_fd_io_uring_poll_refused_backoff(void)
{
    Pipe p;
    int n = 0;
    int64_t t0;

    refused_setup(&p, &n, 1000);
    t0 = t_now_ns();
    while (n < 3) {
        iot_ctx_poll(ctx, true);
    }
    /* Two more refusals, each after a pause. */
    T_ASSERT(t_now_ns() - t0 >= iot__fdmon_retry_ns);
    T_ASSERT_EQ(n, 3);
    iot__io_uring_poll_fail = 0;
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    pipe_close(&p);
    ctx_teardown();
}

/* A handler removed while its refused poll waits to be armed again: it
 * leaves the waiting list before it is freed (ASan: the retry would read
 * the freed handler), and nothing is armed for it. */
static void test_fd_io_uring_poll_refused_removed(void)
{
    Pipe p, q;
    int n = 0, other = 0;

    iot__fdmon_retry_ns = 1000000; /* 1 ms */
    refused_setup(&p, &n, 1);
    q = pipe_new();
    T_ASSERT(ctx->fdmon_retry_at != 0);
    T_ASSERT_EQ(iot_fd_set(ctx, p.rfd, NULL, NULL), 0);
    /* Another handler, ready: polls go on past the retry time. */
    T_ASSERT_EQ(
        iot_fd_set_handler(ctx, q.rfd, count_cb, NULL, NULL, NULL, &other), 0);
    write_byte(q.wfd);
    write_byte(p.wfd);
    while (ctx->fdmon_retry_at) {
        iot_ctx_poll(ctx, false);
    }
    T_ASSERT(poll_until_count(&other, other + 1));
    T_ASSERT_EQ(n, 1); /* the removed one never ran again */
    T_ASSERT_EQ(iot_fd_set(ctx, q.rfd, NULL, NULL), 0);
    pipe_close(&p);
    pipe_close(&q);
    ctx_teardown();
}

/* AUTO without io_uring, and poll without memory for its array: the move
 * to epoll, which needs no array, still happens. */
static void test_fd_epoll_upgrade_starved(void)
{
    T_ASSERT_EQ(unsetenv("IOTHREAD_FDMON"), 0);
    iot__io_uring_setup_fail = EPERM;
    ctx_setup(IOT_FDMON_AUTO);
    iot__fdmon_poll_fail_grow = true;
    many_fds(true);
    ctx_teardown();
}

/* The poll backend with no memory to grow its array (more handlers than
 * it has room for).  A wait that failed at once would send a blocking
 * loop straight back, spinning; instead it sleeps on the notifier alone,
 * a bounded time, so a kick still wakes it, and what the other fds have
 * is dispatched once the array can grow. */
#define ENOMEM_PIPES 12

typedef struct EnomemKick {
    IotCtx *ctx;
    atomic_int ran;
} EnomemKick;

static void enomem_ran_cb(void *opaque)
{
    atomic_store(&((EnomemKick *)opaque)->ran, 1);
}

static void *enomem_kick_thread(void *opaque)
{
    EnomemKick *k = opaque;

    wait_loop_blocking(k->ctx);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(k->ctx, enomem_ran_cb, k), 0);
    return NULL;
}

static void test_fd_poll_array_enomem(void)
{
    Pipe p[ENOMEM_PIPES];
    int n[ENOMEM_PIPES] = { 0 };
    EnomemKick k = { .ctx = NULL };
    pthread_t thr;
    int64_t t0;

    ctx_setup(IOT_FDMON_POLL);
    k.ctx = ctx;
    for (int i = 0; i < ENOMEM_PIPES; i++) {
        p[i] = pipe_new();
        T_ASSERT_EQ(iot_fd_set_handler(ctx, p[i].rfd, count_cb, NULL, NULL,
                                       NULL, &n[i]),
                    0);
    }
    iot__fdmon_poll_fail_grow = true;
    write_byte(p[ENOMEM_PIPES - 1].wfd);
    settle(); /* the starved wait sees the changes' kick, no progress */

    /* Nothing it can see: it sleeps (the bound), neither spins nor hangs. */
    t0 = t_now_ns();
    T_ASSERT_FALSE(iot_ctx_poll(ctx, true));
    T_ASSERT(t_now_ns() - t0 >= iot__fdmon_retry_ns / 2);
    T_ASSERT_EQ(n[ENOMEM_PIPES - 1], 0);

    /* A kick wakes it: with a bound longer than the case's time limit,
     * a wait that slept through the kick fails the case. */
    iot__fdmon_retry_ns = 3600 * (int64_t)1000000000;
    T_ASSERT_EQ(pthread_create(&thr, NULL, enomem_kick_thread, &k), 0);
    T_ASSERT(iot_ctx_poll(ctx, true));
    T_ASSERT(atomic_load(&k.ran));
    T_ASSERT_EQ(pthread_join(thr, NULL), 0);
    iot__fdmon_retry_ns = IOT_FDMON_RETRY_NS;

    /* Memory back: the fd's event was kept, and runs. */
    iot__fdmon_poll_fail_grow = false;
    T_ASSERT(iot_ctx_poll(ctx, false));
    T_ASSERT_EQ(n[ENOMEM_PIPES - 1], 1);
    for (int i = 0; i < ENOMEM_PIPES; i++) {
        T_ASSERT_EQ(iot_fd_set(ctx, p[i].rfd, NULL, NULL), 0);
        pipe_close(&p[i]);
    }
    ctx_teardown();
}

int main(int argc, char **argv)
{
    ADD_BOTH("/aio/event/add-remove", test_event_add_remove);
    ADD_BOTH("/aio/fd/far-timer", test_fd_far_timer);
    ADD_BOTH("/aio/event/wait", test_event_wait);
    ADD_BOTH("/aio/event/wait/no-flush-cb", test_event_wait_no_flush_cb);
    ADD_BOTH("/aio/event/flush", test_event_flush);
    ADD_BOTH("/aio/fd/read-write", test_fd_read_write);
    ADD_BOTH("/aio/fd/closed", test_fd_closed);
    ADD_BOTH("/aio/fd/replace", test_fd_replace);
    ADD_BOTH("/aio/fd/remove-in-read", test_fd_remove_in_read);
    ADD_BOTH("/aio/fd/remove-other-thread", test_fd_remove_other_thread);
    ADD_BOTH("/aio/fd/poll-disable-count", test_fd_poll_disable_count);
    ADD_BOTH("/aio/fd/nonblocking-checks-fds", test_fd_nonblocking_checks_fds);
    ADD_BOTH("/aio/fd/signal-during-wait", test_fd_signal_during_wait);
    ADD_BOTH("/aio/fd/nested-takes-outer-ready",
             test_fd_nested_takes_outer_ready);
    ADD_BOTH("/aio/fd/signal-during-notifier-read",
             test_fd_signal_during_notifier_read);
    ADD_BOTH("/aio/fd/signal-during-submitting-wait",
             test_fd_signal_during_submitting_wait);
    ADD_BOTH("/aio/fd/many", test_fd_many);
    ADD_BOTH("/aio/fd/hup", test_fd_hup);
    ADD_BOTH("/aio/fd/closed-before-removed", test_fd_closed_before_removed);
    ADD_BOTH("/aio/fd/closed-before-removed/race",
             test_fd_closed_before_removed_race);
    ADD_BOTH("/aio/fd/replaced-in-callback", test_fd_replaced_in_callback);
    ADD_BOTH("/aio/event/set-poll-vs-remove", test_fd_set_event_poll_vs_remove);
    t_add("/epoll/aio/fd/pwait2-refused", test_fd_epoll_pwait2_refused_epoll);
    ADD_BOTH("/aio/fd/many-changes-in-callback",
             test_fd_many_changes_in_callback);
    ADD_BOTH("/aio/fd/many-ready-at-once", test_fd_many_ready);
    ADD_BOTH("/aio/fd/churn", test_fd_churn);
    t_add("/auto/aio/fd/epoll-upgrade", test_fd_epoll_upgrade);
    t_add("/auto/aio/fd/epoll-refused-once", test_fd_epoll_refused_once);
    t_add("/epoll/aio/fd/fallback-closes-on-home",
          test_fd_epoll_fallback_closes_on_home_epoll);
    t_add("/poll/aio/fd/array-enomem", test_fd_poll_array_enomem);
    t_add("/io_uring/aio/fd/poll-refused", test_fd_io_uring_poll_refused);
    t_add("/io_uring/aio/fd/poll-refused/backoff",
          test_fd_io_uring_poll_refused_backoff);
    t_add("/io_uring/aio/fd/poll-refused/removed",
          test_fd_io_uring_poll_refused_removed);
    t_add("/auto/aio/fd/epoll-upgrade/starved", test_fd_epoll_upgrade_starved);
    t_add("/auto/aio/event/pipe-fallback", test_event_pipe_fallback);
    t_add("/auto/aio/fdmon/env", test_fdmon_env);
    t_add("/auto/aio/fdmon/io_uring-fallback", test_fdmon_fallback);
    return t_run(argc, argv);
}
