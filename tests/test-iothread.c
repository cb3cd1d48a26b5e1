/* SPDX-License-Identifier: MIT */
/*
 * IOThread objects: section 1 of the specification and items 8-9 of its
 * section 9, the QMP surface's "IOThread properties" and "Threads", and the
 * library's own promises on top of them (all-or-nothing property sets
 * applied inside the IOThread, no poll reset on aio-max-batch or pool
 * changes, "in use" marks, creation that leaves nothing behind).
 *
 * Every case runs in its own forked process, so /proc/self/task and
 * /proc/self/fd start with the harness's own entries only; leaks are
 * checked by counting them before and after.  A thread that
 * pthread_join() has reaped, or a detached pool worker that has said
 * goodbye, can stay listed in /proc/self/task for a moment while the
 * kernel finishes its exit, so task counts are compared by
 * task_count_settle(), which re-reads until the expected count appears
 * (it fails only if it never does).
 *
 * Work is run on an IOThread synchronously by run_on(): a one-shot BH and
 * a condition variable, no sleeps.  The only bounded waits are the
 * deadlock detectors, which turn a hang into a named failure.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iothread/all.h>

#include "ctx-internal.h"
#include "fdmon.h"
#include "harness.h"
#include "postq.h"

#define RANGE_MSG(name) name " value must be in range [0, 9223372036854775807]"
#define POOL_MSG        "bad thread-pool-min/thread-pool-max values"
#define ID_MSG          "Parameter 'id' expects an identifier"
#define DEADLOCK_S      10 /* a wait this long means a deadlock */

/* ---- helpers: errors ---- */

/* Fails unless @err is NULL; prints its message if not. */
static void check_no_err(const char *file, int line, IotError *err)
{
    if (err) {
        t_fail(file, line, "unexpected error: %s", iot_error_message(err));
    }
}
#define T_NO_ERR(err) check_no_err(__FILE__, __LINE__, (err))

/* *errp must hold an error whose message is @exact (or, if @exact is NULL,
 * contains @needle); frees it and clears *errp. */
static void check_err(const char *file, int line, IotError **errp,
                      const char *exact, const char *needle)
{
    const char *msg;

    if (!*errp) {
        t_fail(file, line, "expected an error, got none");
    }
    msg = iot_error_message(*errp);
    if (!msg) {
        t_fail(file, line, "error without a message");
    }
    if (exact && strcmp(msg, exact)) {
        t_fail(file, line, "error \"%s\", expected \"%s\"", msg, exact);
    }
    if (needle && !strstr(msg, needle)) {
        t_fail(file, line, "error \"%s\" does not mention \"%s\"", msg, needle);
    }
    iot_error_free(*errp);
    *errp = NULL;
}
#define T_ERR_IS(errp, exact)                                                  \
    check_err(__FILE__, __LINE__, (errp), (exact), NULL)
#define T_ERR_HAS(errp, needle)                                                \
    check_err(__FILE__, __LINE__, (errp), NULL, (needle))

/* ---- helpers: waiting ---- */

typedef struct Waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int count;
} Waiter;

static void waiter_init(Waiter *w)
{
    pthread_condattr_t ca;

    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->count = 0;
}

static void waiter_destroy(Waiter *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

static void waiter_post(Waiter *w)
{
    pthread_mutex_lock(&w->lock);
    w->count++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Waits until @n posts have been made; false after @seconds (0: never). */
static bool waiter_wait_for(Waiter *w, int n, int seconds)
{
    struct timespec ts;
    bool ok = true;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += seconds;
    pthread_mutex_lock(&w->lock);
    while (w->count < n && ok) {
        if (seconds) {
            ok = pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT ||
                 w->count >= n;
        } else {
            pthread_cond_wait(&w->cond, &w->lock);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return ok;
}

static void waiter_wait(Waiter *w, int n)
{
    waiter_wait_for(w, n, 0);
}

/* ---- helpers: running code on an IOThread ---- */

typedef void CallFunc(void *arg);

typedef struct Call {
    CallFunc *fn;
    void *arg;
    Waiter done;
} Call;

static void call_bh(void *opaque)
{
    Call *c = opaque;

    if (c->fn) {
        c->fn(c->arg);
    }
    waiter_post(&c->done);
}

/* Runs @fn(@arg) in @t's thread and waits for it.  @fn NULL: just a
 * round trip, which also orders after every BH scheduled before. */
static void run_on(IotThread *t, CallFunc *fn, void *arg)
{
    Call c = { .fn = fn, .arg = arg };

    waiter_init(&c.done);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(t), call_bh, &c), 0);
    waiter_wait(&c.done, 1);
    waiter_destroy(&c.done);
}

static void sync_with(IotThread *t)
{
    run_on(t, NULL, NULL);
}

/* ---- helpers: /proc ---- */

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    T_ASSERT(d != NULL);
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            n++;
        }
    }
    closedir(d);
    return n;
}

static bool task_exists(pid_t tid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/self/task/%d", (int)tid);
    return access(path, F_OK) == 0;
}

/* Waits until the task @tid is gone from /proc/self/task. */
static void task_gone_settle(const char *file, int line, pid_t tid)
{
    for (int i = 0; task_exists(tid) && i < 20000; i++) {
        struct timespec ts = { 0, 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    if (task_exists(tid)) {
        t_fail(file, line, "task %d still exists", (int)tid);
    }
}
#define T_TASK_GONE(tid) task_gone_settle(__FILE__, __LINE__, (tid))

static void *noop_thread(void *arg)
{
    *(pid_t *)arg = gettid();
    return NULL;
}

/* ThreadSanitizer starts a background thread of its own at the first
 * pthread_create(): start it before anything is counted. */
static void warm_up(void)
{
    static bool done;
    pthread_t thread;
    pid_t tid = 0;

    if (!done) {
        done = true;
        T_ASSERT_EQ(pthread_create(&thread, NULL, noop_thread, &tid), 0);
        T_ASSERT_EQ(pthread_join(thread, NULL), 0);
        T_TASK_GONE(tid);
    }
}

static int task_count(void)
{
    warm_up();
    return count_dir("/proc/self/task");
}

/* The ring cache keeps idle io_uring rings open on purpose: closed first,
 * so that only fds that are really left behind count. */
static int fd_count(void)
{
    iot__io_uring_cache_flush();
    return count_dir("/proc/self/fd");
}

/* The kernel may list an exited (joined) thread for a moment: re-read
 * until the count is @want, failing only if it never gets there. */
static void task_count_settle(const char *file, int line, int want)
{
    int n = task_count();

    for (int i = 0; n != want && i < 20000; i++) {
        struct timespec ts = { 0, 1000 * 1000 };
        nanosleep(&ts, NULL);
        n = task_count();
    }
    if (n != want) {
        t_fail(file, line, "%d entries in /proc/self/task, expected %d", n,
               want);
    }
}
#define T_TASKS(want) task_count_settle(__FILE__, __LINE__, (want))

/* Reads /proc/self/task/TID/FILE into @buf, without the final newline. */
static void read_task_file(pid_t tid, const char *file, char *buf, size_t len)
{
    char path[96];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/self/task/%d/%s", (int)tid, file);
    f = fopen(path, "r");
    T_ASSERT(f != NULL);
    n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n && buf[n - 1] == '\n') {
        buf[n - 1] = '\0';
    }
}

/* The Cpus_allowed_list line of the task's status, e.g. "0-1". */
static void task_cpus_allowed(pid_t tid, char *out, size_t len)
{
    char buf[8192], *p, *nl;

    read_task_file(tid, "status", buf, sizeof(buf));
    p = strstr(buf, "Cpus_allowed_list:");
    T_ASSERT(p != NULL);
    p += strlen("Cpus_allowed_list:");
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    nl = strchr(p, '\n');
    if (nl) {
        *nl = '\0';
    }
    snprintf(out, len, "%s", p);
}

/* ---- helpers: JSON, minimally ---- */

/* A copy of the object of @json whose "id" is @id, or NULL. */
static char *json_obj(const char *json, const char *id)
{
    char key[128];
    const char *p, *start, *end;

    snprintf(key, sizeof(key), "\"id\": \"%s\"", id);
    p = strstr(json, key);
    if (!p) {
        return NULL;
    }
    for (start = p; start > json && *start != '{'; start--) {
    }
    end = strchr(p, '}');
    T_ASSERT(*start == '{' && end != NULL);
    return strndup(start, (size_t)(end - start + 1));
}

/* The integer member @name of the object @obj. */
static bool json_int(const char *obj, const char *name, int64_t *value)
{
    char key[64], *end;
    const char *p;

    snprintf(key, sizeof(key), "\"%s\":", name);
    p = strstr(obj, key);
    if (!p) {
        return false;
    }
    p += strlen(key);
    while (*p == ' ') {
        p++;
    }
    *value = strtoll(p, &end, 10);
    return end != p;
}

static int64_t json_int_of(const char *obj, const char *name)
{
    int64_t v = 0;

    if (!json_int(obj, name, &v)) {
        t_fail(__FILE__, __LINE__, "no integer \"%s\" in %s", name, obj);
    }
    return v;
}

static int count_char(const char *s, char c)
{
    int n = 0;

    for (; *s; s++) {
        n += *s == c;
    }
    return n;
}

/* ---- helpers: IOThreads ---- */

static IotThread *new_thread(const char *id, const IotThreadProps *props)
{
    IotError *err = NULL;
    IotThread *t = iot_thread_new(id, props, &err);

    T_NO_ERR(err);
    T_ASSERT(t != NULL);
    return t;
}

static void destroy_thread(IotThread *t)
{
    IotError *err = NULL;

    T_ASSERT_EQ(iot_thread_destroy(t, &err), 0);
    T_NO_ERR(err);
}

static int64_t get_int(IotThread *t, const char *name)
{
    IotError *err = NULL;
    int64_t v = -12345;

    T_ASSERT_EQ(iot_thread_get_int(t, name, &v, &err), 0);
    T_NO_ERR(err);
    return v;
}

static void set_int_ok(IotThread *t, const char *name, int64_t value)
{
    IotError *err = NULL;

    T_ASSERT_EQ(iot_thread_set_int(t, name, value, &err), 0);
    T_NO_ERR(err);
}

static void set_str_ok(IotThread *t, const char *name, const char *value)
{
    IotError *err = NULL;

    T_ASSERT_EQ(iot_thread_set_str(t, name, value, &err), 0);
    T_NO_ERR(err);
}

/* get_str, compared and freed. */
static void check_str(const char *file, int line, IotThread *t,
                      const char *name, const char *want)
{
    IotError *err = NULL;
    char *s = iot_thread_get_str(t, name, &err);

    if (!s || strcmp(s, want)) {
        t_fail(file, line, "%s reads \"%s\", expected \"%s\"", name,
               s ? s : "(null)", want);
    }
    check_no_err(file, line, err);
    free(s);
}
#define T_STR_PROP(t, name, want)                                              \
    check_str(__FILE__, __LINE__, (t), (name), (want))

static IotThreadProps *props_new(void)
{
    IotThreadProps *p = iot_thread_props_new();

    T_ASSERT(p != NULL);
    return p;
}

static void props_int(IotThreadProps *p, const char *name, int64_t value)
{
    IotError *err = NULL;

    T_ASSERT_EQ(iot_thread_props_set_int(p, name, value, &err), 0);
    T_NO_ERR(err);
}

static void props_str(IotThreadProps *p, const char *name, const char *value)
{
    IotError *err = NULL;

    T_ASSERT_EQ(iot_thread_props_set_str(p, name, value, &err), 0);
    T_NO_ERR(err);
}

static const char *const int_props[] = {
    "poll-max-ns",   "poll-grow",       "poll-shrink",
    "aio-max-batch", "thread-pool-min", "thread-pool-max",
};
#define N_INT_PROPS (sizeof(int_props) / sizeof(int_props[0]))

/* What the IOThread sees about itself, gathered on its thread. */
typedef struct Inside {
    IotThread *t;
    bool in_iothread;
    IotThread *self;
    pid_t tid;
    IotCtx *current;
} Inside;

static void inside_fn(void *opaque)
{
    Inside *in = opaque;

    in->in_iothread = iot_in_iothread();
    in->self = iot_thread_self();
    in->tid = gettid();
    in->current = iot_ctx_current();
}

/* ---- lifecycle ---- */

static void test_lifecycle_tid_and_name(void)
{
    int tasks0 = task_count(), fds0 = fd_count();
    IotThread *t = new_thread("io0", NULL);
    pid_t tid = iot_thread_tid(t);
    Inside in = { 0 };
    char comm[64];

    /* Published before iot_thread_new() returned. */
    T_ASSERT(tid > 0);
    T_ASSERT(tid != getpid());
    T_ASSERT_TRUE(task_exists(tid));
    T_ASSERT_EQ(task_count(), tasks0 + 1);
    T_ASSERT_STR(iot_thread_id(t), "io0");
    T_ASSERT_FALSE(iot_thread_is_internal(t));
    T_ASSERT(iot_thread_ctx(t) != NULL);

    read_task_file(tid, "comm", comm, sizeof(comm));
    T_ASSERT_STR(comm, "IO io0");

    run_on(t, inside_fn, &in);
    T_ASSERT_EQ(in.tid, tid);
    T_ASSERT(in.self == t);
    T_ASSERT(in.current == iot_thread_ctx(t));

    destroy_thread(t);
    T_TASK_GONE(tid);
    T_TASKS(tasks0);
    T_ASSERT_EQ(fd_count(), fds0);
}

static void check_name(const char *id, const char *want)
{
    IotThread *t = new_thread(id, NULL);
    char comm[64];

    read_task_file(iot_thread_tid(t), "comm", comm, sizeof(comm));
    T_ASSERT_STR(comm, want);
    T_ASSERT(strlen(comm) <= IOT_THREAD_NAME_MAX);
    /* The id itself is kept whole. */
    T_ASSERT_STR(iot_thread_id(t), id);
    destroy_thread(t);
}

static void test_lifecycle_long_id(void)
{
    /* "IO " + 12 characters is exactly 15: not cut. */
    check_name("abcdefghijkl", "IO abcdefghijkl");
    /* Longer ones keep the first 12 characters of the id. */
    check_name("abcdefghijklm", "IO abcdefghijkl");
    check_name("iothread-long-name-0123456789", "IO iothread-lon");
}

static void *stop_thread_fn(void *opaque)
{
    IotThread *t = opaque;
    IotError *err = NULL;

    T_ASSERT_EQ(iot_thread_stop(t, &err), 0);
    T_NO_ERR(err);
    return NULL;
}

extern _Atomic int iot__postq_fail_push_at;

/* A stop needs no memory: the stopper's first post into the IOThread's
 * context failing (out of memory) neither fails the stop nor, through
 * the last unref, aborts.  The stop used to be a one-shot (-ENOMEM). */
static void test_lifecycle_stop_without_memory(void)
{
    IotError *err = NULL;
    IotThread *t = new_thread("io0", NULL);
    pid_t tid = iot_thread_tid(t);

    atomic_store(&iot__postq_fail_push_at, 1);
    T_ASSERT_EQ(iot_thread_stop(t, &err), 0);
    T_NO_ERR(err);
    T_ASSERT_EQ(atomic_load(&iot__postq_fail_push_at), 0);
    T_TASK_GONE(tid);
    destroy_thread(t);

    /* The last unref of a running IOThread stops it the same way. */
    t = iot_thread_new_internal("io1", NULL, &err);
    T_NO_ERR(err);
    T_ASSERT(t != NULL);
    tid = iot_thread_tid(t);
    atomic_store(&iot__postq_fail_push_at, 1);
    iot_thread_unref(t);
    T_ASSERT_EQ(atomic_load(&iot__postq_fail_push_at), 0);
    T_TASK_GONE(tid);
}

typedef struct SpillAgain {
    IotBh *bh;
    atomic_long runs;
} SpillAgain;

/* Reschedules itself, and the next post that needs memory finds none. */
static void spill_again_cb(void *opaque)
{
    SpillAgain *s = opaque;

    atomic_fetch_add(&s->runs, 1);
    atomic_store(&iot__postq_fail_push_at, 1);
    iot_bh_schedule(s->bh);
}

/* A stop waits for the BHs spilled before it, not for those that keep
 * spilling after it: a BH that reschedules itself while its posts find
 * no memory used to hold the stop for ever. */
static void test_lifecycle_stop_while_spilling(void)
{
    IotThread *t = new_thread("io0", NULL);
    SpillAgain s = { .runs = 0 };

    s.bh = iot_bh_new(iot_thread_ctx(t), spill_again_cb, &s);
    T_ASSERT(s.bh != NULL);
    iot_bh_schedule(s.bh);
    while (atomic_load(&s.runs) < 1000) {
        sched_yield();
    }
    /* It did spill (the count is under the lock). */
    pthread_mutex_lock(&iot_thread_ctx(t)->bh_spill_lock);
    T_ASSERT(iot_thread_ctx(t)->bh_spill_made > 0);
    pthread_mutex_unlock(&iot_thread_ctx(t)->bh_spill_lock);
    T_ASSERT_EQ(iot_thread_stop(t, NULL), 0); /* the harness bounds it */
    iot_bh_delete(s.bh);
    destroy_thread(t);
}

static void test_lifecycle_stop_idempotent(void)
{
    int tasks0 = task_count(), fds0 = fd_count();
    IotError *err = NULL;
    IotThread *t = new_thread("io0", NULL);
    pid_t tid = iot_thread_tid(t);
    pthread_t a, b;

    T_ASSERT_EQ(iot_thread_stop(t, &err), 0);
    T_NO_ERR(err);
    /* Joined: the thread is gone. */
    T_TASK_GONE(tid);
    T_ASSERT_EQ(iot_thread_stop(t, &err), 0);
    T_NO_ERR(err);
    T_ASSERT_EQ(iot_thread_stop(t, NULL), 0);
    /* Destroying a stopped IOThread is fine. */
    destroy_thread(t);
    T_ASSERT(iot_thread_find("io0") == NULL);

    /* Two concurrent stoppers both return 0, once the thread is gone. */
    t = new_thread("io0", NULL);
    tid = iot_thread_tid(t);
    T_ASSERT_EQ(pthread_create(&a, NULL, stop_thread_fn, t), 0);
    T_ASSERT_EQ(pthread_create(&b, NULL, stop_thread_fn, t), 0);
    T_ASSERT_EQ(pthread_join(a, NULL), 0);
    T_ASSERT_EQ(pthread_join(b, NULL), 0);
    T_TASK_GONE(tid);
    destroy_thread(t);

    T_TASKS(tasks0);
    T_ASSERT_EQ(fd_count(), fds0);
}

typedef struct SelfStop {
    IotThread *t;
    int stop_ret, destroy_ret, stop_null_ret;
    char stop_msg[256], destroy_msg[256];
} SelfStop;

static void self_stop_fn(void *opaque)
{
    SelfStop *s = opaque;
    IotError *err = NULL;

    s->stop_ret = iot_thread_stop(s->t, &err);
    snprintf(s->stop_msg, sizeof(s->stop_msg), "%s",
             err ? iot_error_message(err) : "");
    iot_error_free(err);
    err = NULL;
    s->destroy_ret = iot_thread_destroy(s->t, &err);
    snprintf(s->destroy_msg, sizeof(s->destroy_msg), "%s",
             err ? iot_error_message(err) : "");
    iot_error_free(err);
    s->stop_null_ret = iot_thread_stop(s->t, NULL);
}

static void test_lifecycle_stop_from_self(void)
{
    IotThread *t = new_thread("io0", NULL), *found;
    SelfStop s = { .t = t };
    Inside in = { 0 };

    run_on(t, self_stop_fn, &s);
    T_ASSERT_EQ(s.stop_ret, -EDEADLK);
    T_ASSERT(s.stop_msg[0] != '\0');
    T_ASSERT(strstr(s.stop_msg, "io0") != NULL);
    T_ASSERT_EQ(s.destroy_ret, -EDEADLK);
    T_ASSERT(s.destroy_msg[0] != '\0');
    T_ASSERT(strstr(s.destroy_msg, "io0") != NULL);
    T_ASSERT_EQ(s.stop_null_ret, -EDEADLK);

    /* Nothing was done: still running, still registered. */
    run_on(t, inside_fn, &in);
    T_ASSERT(in.self == t);
    T_ASSERT_TRUE(task_exists(iot_thread_tid(t)));
    found = iot_thread_find("io0");
    T_ASSERT(found == t);
    iot_thread_unref(found);

    destroy_thread(t);
}

/* A pool worker of the IOThread cannot stop or destroy it either: the
 * join (and the pool's wait for its own workers) would never end. */
typedef struct WorkerStop {
    IotThread *t;
    int stop_ret, destroy_ret;
    Waiter done;
} WorkerStop;

static int worker_stop_fn(void *opaque)
{
    WorkerStop *w = opaque;

    w->stop_ret = iot_thread_stop(w->t, NULL);
    w->destroy_ret = iot_thread_destroy(w->t, NULL);
    return 0;
}

static void worker_stop_done(void *opaque, int ret)
{
    (void)ret;
    waiter_post(&((WorkerStop *)opaque)->done);
}

static void submit_worker_stop(void *opaque)
{
    WorkerStop *w = opaque;

    T_ASSERT(iot_pool_submit(iot_thread_ctx(w->t), worker_stop_fn, w,
                             worker_stop_done, w));
}

static void test_lifecycle_stop_from_worker(void)
{
    IotThread *t = new_thread("io0", NULL);
    WorkerStop w = { .t = t };

    waiter_init(&w.done);
    run_on(t, submit_worker_stop, &w);
    waiter_wait(&w.done, 1);
    T_ASSERT_EQ(w.stop_ret, -EDEADLK);
    T_ASSERT_EQ(w.destroy_ret, -EDEADLK);
    sync_with(t);
    waiter_destroy(&w.done);
    destroy_thread(t);
}

/* ---- stop and the work queued before it ---- */

/* The state letter of /proc/self/task/TID/stat ('S' sleeping). */
static char task_state(pid_t tid)
{
    char buf[512], *p;

    read_task_file(tid, "stat", buf, sizeof(buf));
    p = strrchr(buf, ')');
    T_ASSERT(p != NULL && p[1] == ' ');
    return p[2];
}

/* Waits until @tid sleeps, or *@done is set; fails after DEADLOCK_S. */
static void task_sleeps_settle(const char *file, int line, pid_t tid,
                               atomic_bool *done)
{
    int64_t end = t_now_ns() + DEADLOCK_S * (int64_t)1000000000;

    while (task_state(tid) != 'S' && !(done && atomic_load(done))) {
        struct timespec ts = { 0, 100 * 1000 };
        if (t_now_ns() > end) {
            t_fail(file, line, "task %d never went to sleep", (int)tid);
        }
        nanosleep(&ts, NULL);
    }
}
#define T_SLEEPS(tid, done)                                                    \
    task_sleeps_settle(__FILE__, __LINE__, (tid), (done))

/* Published posts into @ctx, over every thread's queue, and how many
 * threads have posted there.  Read from outside the loop while it is held
 * in a BH: the slots are read atomically, and the loop unlinks only the
 * queues of exited threads. */
static uint64_t posts_published(IotCtx *ctx, int *queues)
{
    *queues = 0;
    for (IotPostQ *q = atomic_load(&ctx->postqs); q;
         q = atomic_load(&q->next)) {
        (*queues)++;
    }
    return iot__postq_published(ctx);
}

typedef struct Gate {
    sem_t entered; /* the loop is held: posts_published() may look */
    sem_t sem;
} Gate;

static void gate_bh(void *opaque)
{
    T_ASSERT_EQ(sem_post(&((Gate *)opaque)->entered), 0);
    T_ASSERT_EQ(sem_wait(&((Gate *)opaque)->sem), 0);
}

typedef struct EarlyPosts {
    IotThread *t;
    atomic_int ran;
    int set_ret;
    pid_t tid;
    Waiter done;
} EarlyPosts;

static void early_post_bh(void *opaque)
{
    atomic_fetch_add(&((EarlyPosts *)opaque)->ran, 1);
}

#define EARLY_POSTS (2 * IOT_POSTQ_TAKE)

/* Posts more than a pass takes from one queue, then sets a property,
 * which waits for its apply BH behind them. */
static void *early_poster(void *opaque)
{
    EarlyPosts *e = opaque;
    IotError *err = NULL;

    for (int i = 0; i < EARLY_POSTS; i++) {
        T_ASSERT_EQ(
            iot_bh_schedule_oneshot(iot_thread_ctx(e->t), early_post_bh, e), 0);
    }
    e->set_ret = iot_thread_set_int(e->t, "poll-max-ns", 1000, &err);
    T_NO_ERR(err);
    waiter_post(&e->done);
    return NULL;
}

/*
 * Everything scheduled before the stop BH runs before the IOThread ends,
 * as with QEMU's single BH list.  Here a pass takes the stop BH from the
 * newest queue and only IOT_POSTQ_TAKE of another thread's earlier posts;
 * that thread's property set, queued last, waits for its apply BH.  Once
 * the loop ended right after such a pass: the posts were dropped and the
 * set waited for ever.
 */
static void test_lifecycle_stop_runs_earlier_posts(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    EarlyPosts e = { .t = t };
    Gate g;
    pthread_t poster, stopper;
    int queues;

    waiter_init(&e.done);
    T_ASSERT_EQ(sem_init(&g.sem, 0, 0), 0);
    T_ASSERT_EQ(sem_init(&g.entered, 0, 0), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, gate_bh, &g), 0);
    T_ASSERT_EQ(sem_wait(&g.entered), 0);
    T_ASSERT_EQ(pthread_create(&poster, NULL, early_poster, &e), 0);
    /* The gate, the posts and the apply BH are all queued... */
    while (posts_published(ctx, &queues) < 1 + EARLY_POSTS + 1) {
        sched_yield();
    }
    T_ASSERT_EQ(queues, 2);
    /* ...then the stop, from a third thread (its join waits for the
     * gate). */
    T_ASSERT_EQ(pthread_create(&stopper, NULL, stop_thread_fn, t), 0);
    while (posts_published(ctx, &queues) < 1 + EARLY_POSTS + 2) {
        sched_yield();
    }
    T_ASSERT_EQ(sem_post(&g.sem), 0);
    T_ASSERT_EQ(pthread_join(stopper, NULL), 0);
    if (!waiter_wait_for(&e.done, 1, DEADLOCK_S)) {
        t_fail(__FILE__, __LINE__,
               "the property set still waits after the IOThread ended "
               "(%d of %d earlier posts ran)",
               atomic_load(&e.ran), EARLY_POSTS);
    }
    T_ASSERT_EQ(pthread_join(poster, NULL), 0);
    T_ASSERT_EQ(e.set_ret, 0);
    T_ASSERT_EQ(atomic_load(&e.ran), EARLY_POSTS);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 1000);
    sem_destroy(&g.sem);
    sem_destroy(&g.entered);
    waiter_destroy(&e.done);
    destroy_thread(t);
}

/* A gate that says when the loop has entered it. */
typedef struct Gate2 {
    sem_t entered, release;
} Gate2;

static void gate2_bh(void *opaque)
{
    Gate2 *g = opaque;

    T_ASSERT_EQ(sem_post(&g->entered), 0);
    T_ASSERT_EQ(sem_wait(&g->release), 0);
}

typedef struct SpillStop {
    IotThread *t;
    Gate2 *in_pass; /* runs in the stop BH's pass, before it */
    IotBh *bh;      /* spilled while that gate holds the pass */
    atomic_int ran;
} SpillStop;

static void *spill_stopper(void *opaque)
{
    SpillStop *s = opaque;

    T_ASSERT_EQ(
        iot_bh_schedule_oneshot(iot_thread_ctx(s->t), gate2_bh, s->in_pass), 0);
    T_ASSERT_EQ(iot_thread_stop(s->t, NULL), 0);
    return NULL;
}

static void *spill_one(void *opaque)
{
    atomic_store(&iot__postq_fail_push_at, 1);
    iot_bh_schedule(opaque);
    return NULL;
}

static void spill_stop_cb(void *opaque)
{
    atomic_fetch_add(&((SpillStop *)opaque)->ran, 1);
}

/* A BH spilled after the stop's pass took its slots but before the stop
 * BH ran (its mark) is run before the thread ends. */
static void test_lifecycle_stop_runs_earlier_spill(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    Gate2 first, in_pass;
    SpillStop s = { .t = t, .in_pass = &in_pass, .ran = 0 };
    pthread_t stopper, spiller;
    uint64_t base;
    int queues;

    s.bh = iot_bh_new(ctx, spill_stop_cb, &s);
    for (Gate2 *g = &first; g; g = g == &first ? &in_pass : NULL) {
        T_ASSERT_EQ(sem_init(&g->entered, 0, 0), 0);
        T_ASSERT_EQ(sem_init(&g->release, 0, 0), 0);
    }
    /* Hold the loop in a BH while the stopper posts its gate and stop. */
    T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, gate2_bh, &first), 0);
    T_ASSERT_EQ(sem_wait(&first.entered), 0);
    base = posts_published(ctx, &queues);
    T_ASSERT_EQ(pthread_create(&stopper, NULL, spill_stopper, &s), 0);
    while (posts_published(ctx, &queues) < base + 2) {
        sched_yield();
    }
    /* The next pass takes the gate and the stop BH together. */
    T_ASSERT_EQ(sem_post(&first.release), 0);
    T_ASSERT_EQ(sem_wait(&in_pass.entered), 0);
    T_ASSERT_EQ(pthread_create(&spiller, NULL, spill_one, s.bh), 0);
    T_ASSERT_EQ(pthread_join(spiller, NULL), 0);
    pthread_mutex_lock(&ctx->bh_spill_lock);
    T_ASSERT_EQ(ctx->bh_spill_made, 1);
    pthread_mutex_unlock(&ctx->bh_spill_lock);
    T_ASSERT_EQ(sem_post(&in_pass.release), 0);
    T_ASSERT_EQ(pthread_join(stopper, NULL), 0);
    T_ASSERT_EQ(atomic_load(&s.ran), 1);
    iot_bh_delete(s.bh);
    destroy_thread(t);
}

/* A second stopper waits for the first one's join without holding the
 * lock that a property set needs: the IOThread may be waiting for such a
 * set (here a pool worker's, which a nested poll in a BH waits for) to get
 * to its stop.  It used to wait holding it: a deadlock. */
typedef struct NestedSet {
    IotThread *t;
    sem_t started, gate;
    atomic_bool done;
    int set_ret;
} NestedSet;

static int nested_set_work(void *opaque)
{
    NestedSet *n = opaque;
    IotError *err = NULL;

    T_ASSERT_EQ(sem_post(&n->started), 0);
    T_ASSERT_EQ(sem_wait(&n->gate), 0);
    n->set_ret = iot_thread_set_int(n->t, "poll-grow", 3, &err);
    T_NO_ERR(err);
    return 0;
}

static void nested_set_done(void *opaque, int ret)
{
    (void)ret;
    atomic_store(&((NestedSet *)opaque)->done, true);
}

/* IOThread: submits the work and polls until it is done. */
static void nested_set_bh(void *opaque)
{
    NestedSet *n = opaque;
    IotCtx *ctx = iot_thread_ctx(n->t);

    T_ASSERT(iot_pool_submit(ctx, nested_set_work, n, nested_set_done, n));
    while (!atomic_load(&n->done)) {
        iot_ctx_poll(ctx, true);
    }
}

typedef struct Stopper {
    IotThread *t;
    pthread_t thread;
    atomic_int tid;
    Waiter *done;
} Stopper;

static void *stopper_fn(void *opaque)
{
    Stopper *s = opaque;

    atomic_store(&s->tid, (int)gettid());
    T_ASSERT_EQ(iot_thread_stop(s->t, NULL), 0);
    waiter_post(s->done);
    return NULL;
}

static void test_lifecycle_second_stopper_holds_no_lock(void)
{
    IotThread *t = new_thread("io0", NULL);
    NestedSet n = { .t = t };
    Stopper s[2];
    Waiter stopped;

    waiter_init(&stopped);
    T_ASSERT_EQ(sem_init(&n.started, 0, 0), 0);
    T_ASSERT_EQ(sem_init(&n.gate, 0, 0), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(t), nested_set_bh, &n),
                0);
    T_ASSERT_EQ(sem_wait(&n.started), 0);
    /* Both stoppers in place (one joins, one waits for it), then the
     * worker's set. */
    for (int i = 0; i < 2; i++) {
        s[i] = (Stopper){ .t = t, .done = &stopped };
        T_ASSERT_EQ(pthread_create(&s[i].thread, NULL, stopper_fn, &s[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        while (!atomic_load(&s[i].tid)) {
            sched_yield();
        }
        T_SLEEPS(atomic_load(&s[i].tid), NULL);
    }
    T_ASSERT_EQ(sem_post(&n.gate), 0);
    if (!waiter_wait_for(&stopped, 2, DEADLOCK_S)) {
        t_fail(__FILE__, __LINE__, "deadlock: the stoppers did not return");
    }
    for (int i = 0; i < 2; i++) {
        T_ASSERT_EQ(pthread_join(s[i].thread, NULL), 0);
    }
    T_ASSERT_EQ(n.set_ret, 0);
    T_ASSERT_EQ(get_int(t, "poll-grow"), 3);
    sem_destroy(&n.started);
    sem_destroy(&n.gate);
    waiter_destroy(&stopped);
    destroy_thread(t);
}

/* A second destroy is refused: it used to drop the creator's reference
 * again, and the last holder's unref then touched freed memory. */
static void test_lifecycle_destroy_twice(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotThread *a = iot_thread_find("io0"), *b = iot_thread_find("io0");
    IotError *err = NULL;

    T_ASSERT(a == t && b == t);
    T_ASSERT_EQ(iot_thread_destroy(a, &err), 0);
    T_NO_ERR(err);
    T_ASSERT_EQ(iot_thread_destroy(b, &err), -ENOENT);
    T_ERR_IS(&err, "IOThread 'io0' is already destroyed");
    T_ASSERT_STR(iot_thread_id(b), "io0");
    iot_thread_unref(a);
    T_ASSERT_STR(iot_thread_id(b), "io0");
    iot_thread_unref(b);
}

/* The last reference dropped by one of the IOThread's pool workers: it
 * can neither stop the thread nor free it under it.  Abort, saying so. */
static int last_unref_work(void *opaque)
{
    iot_thread_unref(opaque);
    return 0;
}

static void last_unref_done(void *opaque, int ret)
{
    (void)opaque;
    (void)ret;
}

static void last_unref_submit(void *opaque)
{
    IotThread *t = opaque;

    T_ASSERT(iot_pool_submit(iot_thread_ctx(t), last_unref_work, t,
                             last_unref_done, NULL));
}

static void test_lifecycle_last_unref_from_worker(void)
{
    IotThread *t = new_thread("io0", NULL);
    sem_t never;

    /* Ours is the only reference: the worker's unref is the last. */
    T_ASSERT_EQ(sem_init(&never, 0, 0), 0);
    T_ASSERT_EQ(
        iot_bh_schedule_oneshot(iot_thread_ctx(t), last_unref_submit, t), 0);
    sem_wait(&never); /* the abort ends the case */
}

/* A property set made while a stop is pending runs on the caller, while
 * an earlier set may still be applying in the IOThread: the two are one
 * at a time, or the later store loses the other's change. */
static sem_t update_in, update_gate;
static atomic_bool update_held;

static void update_hold_once(void)
{
    if (!atomic_exchange(&update_held, true)) {
        T_ASSERT_EQ(sem_post(&update_in), 0);
        T_ASSERT_EQ(sem_wait(&update_gate), 0);
    }
}

typedef struct SetArgs {
    IotThread *t;
    const char *name;
    int64_t value;
    atomic_int tid;
    atomic_bool done;
    int ret;
} SetArgs;

static void *set_fn(void *opaque)
{
    SetArgs *a = opaque;
    IotError *err = NULL;

    atomic_store(&a->tid, (int)gettid());
    a->ret = iot_thread_set_int(a->t, a->name, a->value, &err);
    T_NO_ERR(err);
    atomic_store(&a->done, true);
    return NULL;
}

static void test_properties_runtime_set_while_stopping(void)
{
    IotThread *t = new_thread("io0", NULL);
    SetArgs grow = { .t = t, .name = "poll-grow", .value = 3 };
    SetArgs shrink = { .t = t, .name = "poll-shrink", .value = 5 };
    Stopper s = { .t = t };
    Waiter stopped;
    pthread_t a, c;

    waiter_init(&stopped);
    s.done = &stopped;
    T_ASSERT_EQ(sem_init(&update_in, 0, 0), 0);
    T_ASSERT_EQ(sem_init(&update_gate, 0, 0), 0);
    iot__thread_update_hook = update_hold_once;
    /* The IOThread is inside grow's update... */
    T_ASSERT_EQ(pthread_create(&a, NULL, set_fn, &grow), 0);
    T_ASSERT_EQ(sem_wait(&update_in), 0);
    /* ...when a stop is requested (its join waits)... */
    T_ASSERT_EQ(pthread_create(&s.thread, NULL, stopper_fn, &s), 0);
    while (!atomic_load(&s.tid)) {
        sched_yield();
    }
    T_SLEEPS(atomic_load(&s.tid), NULL);
    /* ...and shrink is set by its caller (or waits for grow's update). */
    T_ASSERT_EQ(pthread_create(&c, NULL, set_fn, &shrink), 0);
    while (!atomic_load(&shrink.tid)) {
        sched_yield();
    }
    T_SLEEPS(atomic_load(&shrink.tid), &shrink.done);
    T_ASSERT_EQ(sem_post(&update_gate), 0);
    if (!waiter_wait_for(&stopped, 1, DEADLOCK_S)) {
        t_fail(__FILE__, __LINE__, "deadlock: the stop did not return");
    }
    T_ASSERT_EQ(pthread_join(a, NULL), 0);
    T_ASSERT_EQ(pthread_join(c, NULL), 0);
    T_ASSERT_EQ(pthread_join(s.thread, NULL), 0);
    T_ASSERT_EQ(grow.ret, 0);
    T_ASSERT_EQ(shrink.ret, 0);
    T_ASSERT_EQ(get_int(t, "poll-grow"), 3);
    T_ASSERT_EQ(get_int(t, "poll-shrink"), 5);
    iot__thread_update_hook = NULL;
    sem_destroy(&update_in);
    sem_destroy(&update_gate);
    waiter_destroy(&stopped);
    destroy_thread(t);
}

/* Destroy unregisters and stops even while other references live; they
 * keep the object, and the id can be used again at once. */
static void test_lifecycle_destroy_with_refs(void)
{
    int tasks0 = task_count(), fds0 = fd_count();
    IotThread *t = new_thread("io0", NULL), *ref, *t2;
    pid_t tid = iot_thread_tid(t);
    char *json;

    ref = iot_thread_find("io0");
    T_ASSERT(ref == t);
    destroy_thread(t);
    T_TASK_GONE(tid);
    T_ASSERT(iot_thread_find("io0") == NULL);
    json = iot_thread_query_json();
    T_ASSERT_STR(json, "[]");
    free(json);
    /* The object is still readable through the reference. */
    T_ASSERT_STR(iot_thread_id(ref), "io0");
    T_ASSERT_EQ(iot_thread_stop(ref, NULL), 0);

    t2 = new_thread("io0", NULL);
    T_ASSERT(t2 != ref);
    iot_thread_unref(ref);
    ref = iot_thread_find("io0");
    T_ASSERT(ref == t2);
    iot_thread_unref(ref);
    destroy_thread(t2);

    T_TASKS(tasks0);
    T_ASSERT_EQ(fd_count(), fds0);
}

/* ---- creation failures ---- */

typedef struct Snapshot {
    int tasks, fds;
    char *query;
} Snapshot;

static void snapshot_take(Snapshot *s)
{
    s->tasks = task_count();
    s->fds = fd_count();
    s->query = iot_thread_query_json();
    T_ASSERT(s->query != NULL);
}

/* After a failed creation of @id: nothing changed, and the id finds
 * what it found before (@existing, usually NULL). */
static void snapshot_check(const char *file, int line, const Snapshot *s,
                           const char *id, IotThread *existing)
{
    char *q;
    IotThread *found = iot_thread_find(id);

    task_count_settle(file, line, s->tasks);
    if (fd_count() != s->fds) {
        t_fail(file, line, "%d fds, expected %d", fd_count(), s->fds);
    }
    if (found != existing) {
        t_fail(file, line, "iot_thread_find(\"%s\") found %p, expected %p", id,
               (void *)found, (void *)existing);
    }
    iot_thread_unref(found);
    q = iot_thread_query_json();
    if (!q || strcmp(q, s->query)) {
        t_fail(file, line, "query changed: %s, was %s", q ? q : "(null)",
               s->query);
    }
    free(q);
}
#define T_UNCHANGED(s, id, existing)                                           \
    snapshot_check(__FILE__, __LINE__, (s), (id), (existing))

/* Creates @id with @props, which must fail with @exact (or @needle). */
static void create_fails(const Snapshot *s, const char *id, IotThread *existing,
                         const IotThreadProps *props, const char *exact,
                         const char *needle)
{
    IotError *err = NULL;
    IotThread *t = iot_thread_new(id, props, &err);

    if (t) {
        t_fail(__FILE__, __LINE__, "iot_thread_new(\"%s\") succeeded", id);
    }
    check_err(__FILE__, __LINE__, &err, exact, needle);
    T_UNCHANGED(s, id, existing);
    /* The same goes for internal ones (except duplicates, which are only
     * checked among the user-created). */
    if (!existing) {
        t = iot_thread_new_internal(id, props, &err);
        if (t) {
            t_fail(__FILE__, __LINE__,
                   "iot_thread_new_internal(\"%s\") "
                   "succeeded",
                   id);
        }
        check_err(__FILE__, __LINE__, &err, exact, needle);
        T_UNCHANGED(s, id, NULL);
    }
}

/* A CPU number that parses but that this machine does not have. */
static int absent_cpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_CONF);

    return n < 1000 ? 1000 : CPU_SETSIZE - 1;
}

/* QEMU's id_wellformed(): ASCII only, whatever the locale. */
static void test_id_valid(void)
{
    static const char *const good[] = { "a", "Z", "a-1._b", "io0" };
    static const char *const bad[] = { "",         "1abc",     "a b", "a/b",
                                       "-ab",      "_a",       ".a",  "a,b",
                                       "\xc3\xa9", "a\xc3\xa9" };

    T_ASSERT_FALSE(iot_thread_id_valid(NULL));
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        T_ASSERT(iot_thread_id_valid(good[i]));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        T_ASSERT_FALSE(iot_thread_id_valid(bad[i]));
    }
}

/* NULL names and values get errors, not crashes. */
static void test_null_names(void)
{
    IotThread *t = new_thread("io-n", NULL);
    IotThreadProps *p = props_new();
    IotError *err = NULL;
    int64_t v;

    T_ASSERT_EQ(iot_thread_props_set_int(p, NULL, 1, &err), -ENOENT);
    T_ASSERT_STR(iot_error_message(err), "Property 'iothread.' not found");
    iot_error_free(err);
    err = NULL;
    T_ASSERT_EQ(iot_thread_props_set_str(p, "cpu-affinity", NULL, &err),
                -EINVAL);
    T_ASSERT_STR(iot_error_message(err),
                 "Invalid parameter type for 'cpu-affinity', expected: string");
    iot_error_free(err);
    err = NULL;
    T_ASSERT_EQ(iot_thread_set_str(t, "cpu-affinity", NULL, NULL), -EINVAL);
    T_ASSERT_EQ(iot_thread_get_int(t, NULL, &v, NULL), -ENOENT);
    T_ASSERT(iot_thread_get_str(t, NULL, NULL) == NULL);
    T_ASSERT_EQ(iot_thread_set_props(t, NULL, NULL), 0);
    iot_thread_props_free(p);
    destroy_thread(t);
}

static void test_create_failure_leaves_nothing(void)
{
    IotThread *io0 = new_thread("io0", NULL);
    IotThreadProps *p;
    Snapshot s;
    char cpu[16];

    snapshot_take(&s);

    /* Bad ids. */
    create_fails(&s, "", NULL, NULL, ID_MSG, NULL);
    create_fails(&s, "1abc", NULL, NULL, ID_MSG, NULL);
    create_fails(&s, "a b", NULL, NULL, ID_MSG, NULL);
    create_fails(&s, "a/b", NULL, NULL, ID_MSG, NULL);
    create_fails(&s, "-ab", NULL, NULL, ID_MSG, NULL);

    /* Duplicate id (user-created ones only). */
    create_fails(&s, "io0", io0, NULL,
                 "attempt to add duplicate property 'io0' to object "
                 "(type 'container')",
                 NULL);

    /* Pool sizes: checked at creation. */
    p = props_new();
    props_int(p, "thread-pool-min", 10);
    props_int(p, "thread-pool-max", 4);
    create_fails(&s, "io1", NULL, p, POOL_MSG, NULL);
    iot_thread_props_free(p);

    p = props_new();
    props_int(p, "thread-pool-max", 0);
    create_fails(&s, "io1", NULL, p, POOL_MSG, NULL);
    iot_thread_props_free(p);

    p = props_new();
    props_int(p, "thread-pool-max", (int64_t)INT_MAX + 1);
    create_fails(&s, "io1", NULL, p, POOL_MSG, NULL);
    iot_thread_props_free(p);

    p = props_new();
    props_int(p, "thread-pool-min", 65); /* above the default max */
    create_fails(&s, "io1", NULL, p, POOL_MSG, NULL);
    iot_thread_props_free(p);

    /* A CPU list that parses but cannot be applied: the thread was
     * started, so this also checks that it is joined and its context
     * dropped. */
    snprintf(cpu, sizeof(cpu), "%d", absent_cpu());
    p = props_new();
    props_str(p, "cpu-affinity", cpu);
    create_fails(&s, "io1", NULL, p, NULL, "cpu-affinity");
    iot_thread_props_free(p);

    /* And a good creation still works afterwards. */
    {
        IotThread *t = new_thread("io1", NULL);
        destroy_thread(t);
    }
    T_UNCHANGED(&s, "io1", NULL);

    free(s.query);
    destroy_thread(io0);
}

static void test_create_destroy_1000(void)
{
    long n = t_scale(1000, 10);
    int tasks0 = task_count(), fds0 = fd_count();
    char *json;

    for (long i = 0; i < n; i++) {
        char id[32];
        IotThread *t;

        snprintf(id, sizeof(id), "io%ld", i % 3);
        t = new_thread(id, NULL);
        T_ASSERT(iot_thread_tid(t) > 0);
        if (i % 10 == 0) {
            sync_with(t);
        }
        destroy_thread(t);
        T_ASSERT(iot_thread_find(id) == NULL);
    }
    T_TASKS(tasks0);
    T_ASSERT_EQ(fd_count(), fds0);
    json = iot_thread_query_json();
    T_ASSERT_STR(json, "[]");
    free(json);
}

/* ---- registry ---- */

static void check_query_obj(const char *json, IotThread *t, int64_t max_ns,
                            int64_t grow, int64_t shrink, int64_t batch)
{
    char *obj = json_obj(json, iot_thread_id(t));

    if (!obj) {
        t_fail(__FILE__, __LINE__, "\"%s\" not listed in %s", iot_thread_id(t),
               json);
    }
    T_ASSERT_EQ(json_int_of(obj, "thread-id"), iot_thread_tid(t));
    T_ASSERT_EQ(json_int_of(obj, "poll-max-ns"), max_ns);
    T_ASSERT_EQ(json_int_of(obj, "poll-grow"), grow);
    T_ASSERT_EQ(json_int_of(obj, "poll-shrink"), shrink);
    T_ASSERT_EQ(json_int_of(obj, "aio-max-batch"), batch);
    /* The six IOThreadInfo members and nothing else (ids have no ':'). */
    T_ASSERT_EQ(count_char(obj, ':'), 6);
    free(obj);
}

static void test_registry_find_and_query(void)
{
    IotThreadProps *p = props_new();
    IotThread *t0, *t1, *f;
    char *json, key[64];

    t0 = new_thread("io0", NULL);
    props_int(p, "poll-max-ns", 0);
    props_int(p, "poll-grow", 3);
    props_int(p, "poll-shrink", 5);
    props_int(p, "aio-max-batch", 7);
    t1 = new_thread("io1", p);
    iot_thread_props_free(p);

    f = iot_thread_find("io0");
    T_ASSERT(f == t0);
    iot_thread_unref(f);
    f = iot_thread_find("io1");
    T_ASSERT(f == t1);
    iot_thread_unref(f);
    T_ASSERT(iot_thread_find("io2") == NULL);
    T_ASSERT(iot_thread_find("io") == NULL);
    T_ASSERT(iot_thread_find("") == NULL);

    json = iot_thread_query_json();
    T_ASSERT(json != NULL);
    T_ASSERT(json[0] == '[' && json[strlen(json) - 1] == ']');
    T_ASSERT(strstr(json, "\"id\": \"io0\"") != NULL);
    snprintf(key, sizeof(key), "\"thread-id\": %d", (int)iot_thread_tid(t0));
    T_ASSERT(strstr(json, key) != NULL);
    check_query_obj(json, t0, 32768, 0, 0, 0);
    check_query_obj(json, t1, 0, 3, 5, 7);
    T_ASSERT_EQ(count_char(json, '{'), 2);
    free(json);

    /* Configured values follow a set. */
    set_int_ok(t0, "poll-grow", 4);
    json = iot_thread_query_json();
    check_query_obj(json, t0, 32768, 4, 0, 0);
    free(json);

    destroy_thread(t1);
    json = iot_thread_query_json();
    T_ASSERT(strstr(json, "\"id\": \"io1\"") == NULL);
    T_ASSERT_EQ(count_char(json, '{'), 1);
    free(json);
    destroy_thread(t0);
    json = iot_thread_query_json();
    T_ASSERT_STR(json, "[]");
    free(json);
}

/* iot_thread_list(): the user-created IOThreads in query order, each with
 * a reference; the count even when the array is too short; an internal
 * one and a destroyed one are not in it. */
/* A registered IOThread whose creator drops its reference without a
 * destroy: it is stopped and freed, and leaves the registry with it, so
 * that finds, lists, queries and the next IOThread of that id do not walk
 * freed memory (the registry holds no reference). */
static void test_registry_unref_without_destroy(void)
{
    IotThread *t = new_thread("io-u", NULL), *other = new_thread("io-v", NULL);
    IotThread *got[2];
    char *json;

    iot_thread_unref(t);
    T_ASSERT(iot_thread_find("io-u") == NULL);
    T_ASSERT_EQ(iot_thread_list(got, 2), 1);
    T_ASSERT(got[0] == other);
    iot_thread_unref(got[0]);
    json = iot_thread_query_json();
    T_ASSERT(json != NULL);
    T_ASSERT(strstr(json, "\"io-u\"") == NULL);
    T_ASSERT(strstr(json, "\"io-v\"") != NULL);
    free(json);
    t = new_thread("io-u", NULL); /* the id is free again */
    destroy_thread(t);
    destroy_thread(other);
}

/* A reference taken with iot_thread_ref() keeps the object (not the
 * thread, nor its registry entry) past a destroy, until its unref: its
 * id and its stats stay readable, and a second destroy is refused. */
static void test_registry_ref_outlives_destroy(void)
{
    IotThread *t = new_thread("io-r", NULL);
    IotError *err = NULL;
    IotCtxStats s;

    iot_thread_ref(t);
    T_ASSERT_EQ(iot_thread_destroy(t, NULL), 0);
    T_ASSERT(iot_thread_find("io-r") == NULL);
    T_ASSERT_STR(iot_thread_id(t), "io-r");
    iot_thread_get_stats(t, &s);
    T_ASSERT(s.iterations > 0);
    T_ASSERT_EQ(iot_thread_destroy(t, &err), -ENOENT);
    T_ASSERT_STR(iot_error_message(err),
                 "IOThread 'io-r' is already destroyed");
    iot_error_free(err);
    iot_thread_unref(t); /* the last: frees (ASan: no leak, no reuse) */
    t = new_thread("io-r", NULL); /* the id is free */
    destroy_thread(t);
}

static void test_registry_list(void)
{
    IotThread *t[3], *got[4], *internal;
    char *json;
    IotError *err = NULL;

    T_ASSERT_EQ(iot_thread_list(got, 4), 0);
    t[0] = new_thread("io0", NULL);
    t[1] = new_thread("io1", NULL);
    t[2] = new_thread("io2", NULL);
    internal = iot_thread_new_internal("hidden", NULL, &err);
    T_ASSERT(internal != NULL);
    T_ASSERT_EQ(iot_thread_list(NULL, 0), 3);
    T_ASSERT_EQ(iot_thread_list(got, 4), 3);
    /* the order of iot_thread_query_json() */
    json = iot_thread_query_json();
    T_ASSERT(json != NULL);
    for (int i = 0; i < 2; i++) {
        char ka[32], kb[32];
        const char *a, *b;

        snprintf(ka, sizeof(ka), "\"id\": \"%s\"", iot_thread_id(got[i]));
        snprintf(kb, sizeof(kb), "\"id\": \"%s\"", iot_thread_id(got[i + 1]));
        a = strstr(json, ka);
        b = strstr(json, kb);
        T_ASSERT(a && b && a < b);
    }
    free(json);
    for (int i = 0; i < 3; i++) {
        T_ASSERT(got[i] == t[0] || got[i] == t[1] || got[i] == t[2]);
        iot_thread_unref(got[i]); /* the references are the caller's */
    }
    got[1] = NULL;
    T_ASSERT_EQ(iot_thread_list(got, 1), 3); /* only the first stored */
    T_ASSERT(got[1] == NULL);
    iot_thread_unref(got[0]);
    destroy_thread(t[1]);
    T_ASSERT_EQ(iot_thread_list(got, 4), 2);
    T_ASSERT(got[0] != t[1] && got[1] != t[1]);
    iot_thread_unref(got[0]);
    iot_thread_unref(got[1]);
    destroy_thread(t[0]);
    destroy_thread(t[2]);
    T_ASSERT_EQ(iot_thread_list(got, 4), 0);
    T_ASSERT_EQ(iot_thread_destroy(internal, NULL), 0);
}

static void test_registry_internal_hidden(void)
{
    IotThread *user = new_thread("io0", NULL), *in1, *in2, *f;
    IotError *err = NULL;
    char *json, comm[64];
    Inside ins = { 0 };

    in1 = iot_thread_new_internal("mon_iothread", NULL, &err);
    T_NO_ERR(err);
    T_ASSERT(in1 != NULL);
    T_ASSERT_TRUE(iot_thread_is_internal(in1));
    T_ASSERT(iot_thread_tid(in1) > 0);
    read_task_file(iot_thread_tid(in1), "comm", comm, sizeof(comm));
    T_ASSERT_STR(comm, "IO mon_iothread"); /* exactly 15 */
    /* Internal ones live apart: a user id can be reused for them. */
    in2 = iot_thread_new_internal("io0", NULL, &err);
    T_NO_ERR(err);
    T_ASSERT(in2 != NULL);

    T_ASSERT(iot_thread_find("mon_iothread") == NULL);
    f = iot_thread_find("io0");
    T_ASSERT(f == user);
    iot_thread_unref(f);

    json = iot_thread_query_json();
    T_ASSERT(strstr(json, "mon_iothread") == NULL);
    T_ASSERT_EQ(count_char(json, '{'), 1);
    free(json);
    json = iot_thread_stats_json(NULL);
    T_ASSERT(strstr(json, "mon_iothread") == NULL);
    T_ASSERT_EQ(count_char(json, '{'), 1);
    free(json);

    /* They are IOThreads all the same. */
    run_on(in1, inside_fn, &ins);
    T_ASSERT_TRUE(ins.in_iothread);
    T_ASSERT(ins.self == in1);

    /* A user IOThread cannot take an id twice, internal ones can. */
    T_ASSERT(iot_thread_new("io0", NULL, &err) == NULL);
    T_ERR_IS(&err, "attempt to add duplicate property 'io0' to object "
                   "(type 'container')");

    destroy_thread(in2);
    destroy_thread(in1);
    destroy_thread(user);
}

typedef struct PoolRec {
    IotThread *t;
    atomic_int worker_in_iothread; /* -1 until recorded */
    IotThread *worker_self;
    pid_t worker_tid;
    bool done_in_iothread;
    IotThread *done_self;
    int done_ret;
    bool submitted;
    Waiter done;
} PoolRec;

static int pool_work_fn(void *arg)
{
    PoolRec *r = arg;

    atomic_store(&r->worker_in_iothread, iot_in_iothread());
    r->worker_self = iot_thread_self();
    r->worker_tid = gettid();
    return 42;
}

static void pool_done_fn(void *opaque, int ret)
{
    PoolRec *r = opaque;

    r->done_in_iothread = iot_in_iothread();
    r->done_self = iot_thread_self();
    r->done_ret = ret;
    waiter_post(&r->done);
}

static void pool_submit_fn(void *opaque)
{
    PoolRec *r = opaque;

    r->submitted = iot_pool_submit(iot_thread_ctx(r->t), pool_work_fn, r,
                                   pool_done_fn, r) != NULL;
}

static void test_registry_in_iothread(void)
{
    IotThread *t = new_thread("io0", NULL);
    PoolRec r = { .t = t };
    Inside in = { 0 };

    /* The main thread (of this case's process) is not an IOThread. */
    T_ASSERT_FALSE(iot_in_iothread());
    T_ASSERT(iot_thread_self() == NULL);

    run_on(t, inside_fn, &in);
    T_ASSERT_TRUE(in.in_iothread);
    T_ASSERT(in.self == t);

    /* A pool worker of that IOThread's context is not one either. */
    atomic_init(&r.worker_in_iothread, -1);
    waiter_init(&r.done);
    run_on(t, pool_submit_fn, &r);
    T_ASSERT_TRUE(r.submitted);
    waiter_wait(&r.done, 1);
    T_ASSERT_EQ(r.done_ret, 42);
    T_ASSERT_EQ(atomic_load(&r.worker_in_iothread), 0);
    T_ASSERT(r.worker_self == NULL);
    T_ASSERT(r.worker_tid != iot_thread_tid(t));
    T_ASSERT(r.worker_tid != getpid());
    /* ... while the completion runs back on the IOThread. */
    T_ASSERT_TRUE(r.done_in_iothread);
    T_ASSERT(r.done_self == t);
    waiter_destroy(&r.done);

    destroy_thread(t);
    T_ASSERT_FALSE(iot_in_iothread());
}

/* Two creators of one id at the same time: exactly one wins; the loser
 * gets the duplicate error and leaves nothing behind. */
typedef struct Racer {
    pthread_barrier_t *barrier;
    IotThread *t;
    char msg[256];
} Racer;

static void *racer_fn(void *opaque)
{
    Racer *r = opaque;
    IotError *err = NULL;

    pthread_barrier_wait(r->barrier);
    r->t = iot_thread_new("dup", NULL, &err);
    snprintf(r->msg, sizeof(r->msg), "%s", err ? iot_error_message(err) : "");
    iot_error_free(err);
    return NULL;
}

static void test_registry_duplicate_race(void)
{
    int tasks0 = task_count(), fds0 = fd_count();
    long n = t_scale(100, 5);
    pthread_barrier_t barrier;

    pthread_barrier_init(&barrier, NULL, 2);
    for (long i = 0; i < n; i++) {
        Racer a = { .barrier = &barrier }, b = { .barrier = &barrier };
        pthread_t ta, tb;
        Racer *win, *lose;
        IotThread *f;

        T_ASSERT_EQ(pthread_create(&ta, NULL, racer_fn, &a), 0);
        T_ASSERT_EQ(pthread_create(&tb, NULL, racer_fn, &b), 0);
        T_ASSERT_EQ(pthread_join(ta, NULL), 0);
        T_ASSERT_EQ(pthread_join(tb, NULL), 0);
        T_ASSERT((a.t == NULL) != (b.t == NULL));
        win = a.t ? &a : &b;
        lose = a.t ? &b : &a;
        T_ASSERT_STR(win->msg, "");
        T_ASSERT_STR(lose->msg, "attempt to add duplicate property 'dup' "
                                "to object (type 'container')");
        f = iot_thread_find("dup");
        T_ASSERT(f == win->t);
        iot_thread_unref(f);
        destroy_thread(win->t);
    }
    pthread_barrier_destroy(&barrier);
    T_TASKS(tasks0);
    T_ASSERT_EQ(fd_count(), fds0);
}

/* ---- properties ---- */

static void test_properties_defaults(void)
{
    static const struct {
        const char *name;
        IotPropType type;
    } want[] = {
        { "poll-max-ns", IOT_PROP_INT },
        { "poll-grow", IOT_PROP_INT },
        { "poll-shrink", IOT_PROP_INT },
        { "aio-max-batch", IOT_PROP_INT },
        { "thread-pool-min", IOT_PROP_INT },
        { "thread-pool-max", IOT_PROP_INT },
        { "cpu-affinity", IOT_PROP_STR },
    };
    IotThread *t = new_thread("io0", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    const IotPropInfo *info;
    size_t count = 0;
    int64_t max_ns, grow, shrink, min, max;

    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 32768);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), IOT_THREAD_POLL_MAX_NS_DEFAULT);
    T_ASSERT_EQ(get_int(t, "poll-grow"), 0);
    T_ASSERT_EQ(get_int(t, "poll-shrink"), 0);
    T_ASSERT_EQ(get_int(t, "aio-max-batch"), 0);
    T_ASSERT_EQ(get_int(t, "thread-pool-min"), 0);
    T_ASSERT_EQ(get_int(t, "thread-pool-max"), 64);
    T_STR_PROP(t, "cpu-affinity", "");
    T_STR_PROP(t, "poll-max-ns", "32768");
    T_STR_PROP(t, "thread-pool-max", "64");
    T_STR_PROP(t, "poll-grow", "0");

    /* The context runs with them. */
    iot_ctx_get_poll_params(ctx, &max_ns, &grow, &shrink);
    T_ASSERT_EQ(max_ns, 32768);
    T_ASSERT_EQ(grow, 0);
    T_ASSERT_EQ(shrink, 0);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 0);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, 0);
    T_ASSERT_EQ(max, 64);

    info = iot_thread_props_info(&count);
    T_ASSERT(info != NULL);
    T_ASSERT_EQ(count, 7);
    for (size_t i = 0; i < count; i++) {
        T_ASSERT_STR(info[i].name, want[i].name);
        T_ASSERT_EQ(info[i].type, want[i].type);
        T_ASSERT(info[i].description && info[i].description[0]);
    }
    T_ASSERT(iot_thread_props_info(NULL) == info);

    destroy_thread(t);
}

/* Sets @name to @value, which must fail with @exact (or @needle) and
 * change nothing. */
static void set_int_fails(IotThread *t, const char *name, int64_t value,
                          const char *exact, const char *needle)
{
    IotError *err = NULL;
    int64_t before[N_INT_PROPS], max_ns, grow, shrink, min, max;
    IotCtx *ctx = iot_thread_ctx(t);
    unsigned gen = atomic_load(&ctx->param_gen);

    for (size_t i = 0; i < N_INT_PROPS; i++) {
        before[i] = get_int(t, int_props[i]);
    }
    T_ASSERT(iot_thread_set_int(t, name, value, &err) < 0);
    check_err(__FILE__, __LINE__, &err, exact, needle);
    for (size_t i = 0; i < N_INT_PROPS; i++) {
        T_ASSERT_EQ(get_int(t, int_props[i]), before[i]);
    }
    iot_ctx_get_poll_params(ctx, &max_ns, &grow, &shrink);
    T_ASSERT_EQ(max_ns, before[0]);
    T_ASSERT_EQ(grow, before[1]);
    T_ASSERT_EQ(shrink, before[2]);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), before[3]);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, before[4]);
    T_ASSERT_EQ(max, before[5]);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen);
}

static void set_str_fails(IotThread *t, const char *name, const char *value,
                          const char *exact, const char *needle)
{
    IotError *err = NULL;
    char *before = iot_thread_get_str(t, "cpu-affinity", NULL);

    T_ASSERT(before != NULL);
    T_ASSERT(iot_thread_set_str(t, name, value, &err) < 0);
    check_err(__FILE__, __LINE__, &err, exact, needle);
    T_STR_PROP(t, "cpu-affinity", before);
    free(before);
}

static void test_properties_bad_values(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    IotError *err = NULL;
    int64_t v, max_ns, grow, shrink;
    char msg[128], *s;

    /* Negative values, with QEMU's text. */
    for (size_t i = 0; i < N_INT_PROPS; i++) {
        snprintf(msg, sizeof(msg),
                 "%s value must be in range [0, 9223372036854775807]",
                 int_props[i]);
        set_int_fails(t, int_props[i], -1, msg, NULL);
        set_int_fails(t, int_props[i], INT64_MIN, msg, NULL);
    }
    set_int_fails(t, "poll-max-ns", -1, RANGE_MSG("poll-max-ns"), NULL);

    /* INT64_MAX is fine for the four unbounded ones. */
    set_int_ok(t, "poll-grow", INT64_MAX);
    set_int_ok(t, "poll-shrink", INT64_MAX);
    set_int_ok(t, "aio-max-batch", INT64_MAX);
    set_int_ok(t, "poll-max-ns", INT64_MAX);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), INT64_MAX);
    T_ASSERT_EQ(get_int(t, "poll-grow"), INT64_MAX);
    T_ASSERT_EQ(get_int(t, "poll-shrink"), INT64_MAX);
    T_ASSERT_EQ(get_int(t, "aio-max-batch"), INT64_MAX);
    T_STR_PROP(t, "poll-max-ns", "9223372036854775807");
    iot_ctx_get_poll_params(ctx, &max_ns, &grow, &shrink);
    T_ASSERT_EQ(max_ns, INT64_MAX);
    T_ASSERT_EQ(grow, INT64_MAX);
    T_ASSERT_EQ(shrink, INT64_MAX);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), INT64_MAX);
    sync_with(t); /* the loop survives running with them */
    set_int_ok(t, "poll-max-ns", 32768);
    set_int_ok(t, "poll-grow", 0);
    set_int_ok(t, "poll-shrink", 0);
    set_int_ok(t, "aio-max-batch", 0);

    /* Pool sizes, against the stored values. */
    set_int_fails(t, "thread-pool-min", 100, POOL_MSG, NULL); /* > max 64 */
    set_int_fails(t, "thread-pool-min", 65, POOL_MSG, NULL);
    set_int_ok(t, "thread-pool-min", 64); /* == max */
    set_int_ok(t, "thread-pool-min", 10);
    set_int_fails(t, "thread-pool-max", 5, POOL_MSG, NULL); /* < min 10 */
    set_int_fails(t, "thread-pool-max", 9, POOL_MSG, NULL);
    set_int_ok(t, "thread-pool-max", 10);
    set_int_ok(t, "thread-pool-min", 0);
    set_int_fails(t, "thread-pool-max", 0, POOL_MSG, NULL);
    set_int_fails(t, "thread-pool-max", (int64_t)INT_MAX + 1, POOL_MSG, NULL);
    set_int_fails(t, "thread-pool-max", INT64_MAX, POOL_MSG, NULL);
    set_int_fails(t, "thread-pool-min", (int64_t)INT_MAX + 1, POOL_MSG, NULL);
    set_int_ok(t, "thread-pool-max", INT_MAX);
    set_int_ok(t, "thread-pool-min", INT_MAX);
    set_int_fails(t, "thread-pool-min", (int64_t)INT_MAX + 1, POOL_MSG, NULL);
    set_int_ok(t, "thread-pool-min", 0);
    set_int_ok(t, "thread-pool-max", 64);
    {
        /* Both above INT_MAX, so min <= max holds: still refused. */
        IotThreadProps *p = props_new();
        props_int(p, "thread-pool-max", (int64_t)INT_MAX + 2);
        props_int(p, "thread-pool-min", (int64_t)INT_MAX + 1);
        T_ASSERT(iot_thread_set_props(t, p, &err) < 0);
        T_ERR_IS(&err, POOL_MSG);
        iot_thread_props_free(p);
        T_ASSERT_EQ(get_int(t, "thread-pool-min"), 0);
        T_ASSERT_EQ(get_int(t, "thread-pool-max"), 64);
    }

    /* Unknown names. */
    set_int_fails(t, "nope", 1, "Property 'iothread.nope' not found", NULL);
    set_str_fails(t, "nope", "1", "Property 'iothread.nope' not found", NULL);
    T_ASSERT(iot_thread_get_int(t, "nope", &v, &err) < 0);
    T_ERR_IS(&err, "Property 'iothread.nope' not found");
    T_ASSERT(iot_thread_get_str(t, "nope", &err) == NULL);
    T_ERR_IS(&err, "Property 'iothread.nope' not found");
    s = iot_thread_get_str(t, "nope", NULL); /* errp NULL is fine */
    T_ASSERT(s == NULL);

    /* Wrong types. */
    set_int_fails(t, "cpu-affinity", 1, NULL, "cpu-affinity");
    T_ASSERT(iot_thread_set_int(t, "cpu-affinity", 0, &err) < 0);
    T_ERR_HAS(&err, "Invalid parameter type");
    set_str_fails(t, "poll-max-ns", "1000", NULL, "poll-max-ns");
    T_ASSERT(iot_thread_set_str(t, "poll-max-ns", "1000", &err) < 0);
    T_ERR_HAS(&err, "Invalid parameter type");
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 32768);
    T_ASSERT(iot_thread_get_int(t, "cpu-affinity", &v, &err) < 0);
    T_ERR_HAS(&err, "cpu-affinity");

    /* CPU lists that do not parse. */
    {
        static const char *const bad[] = {
            "x",
            "3-1",
            "1,,2",
            "1,",
            ",1",
            "-1",
            "0-",
            "0-x",
            " 0",
            "0 ",
            "0;1",
            "1024",
            "99999999999999999999",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            set_str_fails(t, "cpu-affinity", bad[i], NULL, "cpu-affinity");
        }
        /* well formed, but past what a CPU set holds: said so */
        set_str_fails(t, "cpu-affinity", "0,1024", NULL,
                      "'0,1024' names a CPU past 1023");
        set_str_fails(t, "cpu-affinity", "3-1", NULL, "not a CPU list");
    }
    T_STR_PROP(t, "cpu-affinity", "");

    destroy_thread(t);
}

/* A set of several properties is all or nothing. */
static void test_properties_all_or_nothing(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    IotError *err = NULL;
    IotThreadProps *p;
    int64_t max_ns, min, max;
    unsigned gen;
    char cpu[16];

    set_int_ok(t, "poll-max-ns", 1000);
    gen = atomic_load(&ctx->param_gen);

    p = props_new();
    props_int(p, "poll-max-ns", 5);
    props_int(p, "aio-max-batch", 9);
    props_int(p, "thread-pool-min", 100); /* bad: above max 64 */
    T_ASSERT(iot_thread_set_props(t, p, &err) < 0);
    T_ERR_IS(&err, POOL_MSG);
    iot_thread_props_free(p);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 1000);
    T_ASSERT_EQ(get_int(t, "aio-max-batch"), 0);
    T_ASSERT_EQ(get_int(t, "thread-pool-min"), 0);
    iot_ctx_get_poll_params(ctx, &max_ns, NULL, NULL);
    T_ASSERT_EQ(max_ns, 1000);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 0);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, 0);
    T_ASSERT_EQ(max, 64);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen);

    /* An affinity that cannot be applied also stops the others. */
    snprintf(cpu, sizeof(cpu), "%d", absent_cpu());
    p = props_new();
    props_int(p, "poll-max-ns", 5);
    props_int(p, "aio-max-batch", 9);
    props_int(p, "thread-pool-min", 2);
    props_str(p, "cpu-affinity", cpu);
    T_ASSERT(iot_thread_set_props(t, p, &err) < 0);
    T_ERR_HAS(&err, "cpu-affinity");
    iot_thread_props_free(p);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 1000);
    T_ASSERT_EQ(get_int(t, "aio-max-batch"), 0);
    T_ASSERT_EQ(get_int(t, "thread-pool-min"), 0);
    T_STR_PROP(t, "cpu-affinity", "");
    iot_ctx_get_poll_params(ctx, &max_ns, NULL, NULL);
    T_ASSERT_EQ(max_ns, 1000);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 0);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, 0);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen);

    /* And a good one is applied whole. */
    p = props_new();
    props_int(p, "poll-max-ns", 5);
    props_int(p, "aio-max-batch", 9);
    props_int(p, "thread-pool-min", 2);
    props_int(p, "thread-pool-max", 3);
    T_ASSERT_EQ(iot_thread_set_props(t, p, &err), 0);
    T_NO_ERR(err);
    iot_thread_props_free(p);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 5);
    T_ASSERT_EQ(get_int(t, "aio-max-batch"), 9);
    T_ASSERT_EQ(get_int(t, "thread-pool-min"), 2);
    T_ASSERT_EQ(get_int(t, "thread-pool-max"), 3);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, 2);
    T_ASSERT_EQ(max, 3);

    destroy_thread(t);
}

/* The creation property set checks each value on its own. */
static void test_properties_builder(void)
{
    IotThreadProps *p = props_new();
    IotError *err = NULL;
    IotThread *t;
    char msg[128];

    for (size_t i = 0; i < N_INT_PROPS; i++) {
        snprintf(msg, sizeof(msg),
                 "%s value must be in range [0, 9223372036854775807]",
                 int_props[i]);
        T_ASSERT(iot_thread_props_set_int(p, int_props[i], -1, &err) < 0);
        T_ERR_IS(&err, msg);
    }
    T_ASSERT(iot_thread_props_set_int(p, "nope", 1, &err) < 0);
    T_ERR_IS(&err, "Property 'iothread.nope' not found");
    T_ASSERT(iot_thread_props_set_str(p, "nope", "", &err) < 0);
    T_ERR_IS(&err, "Property 'iothread.nope' not found");
    T_ASSERT(iot_thread_props_set_int(p, "cpu-affinity", 0, &err) < 0);
    T_ERR_HAS(&err, "cpu-affinity");
    T_ASSERT(iot_thread_props_set_str(p, "poll-max-ns", "1", &err) < 0);
    T_ERR_HAS(&err, "poll-max-ns");
    T_ASSERT(iot_thread_props_set_str(p, "cpu-affinity", "3-1", &err) < 0);
    T_ERR_HAS(&err, "cpu-affinity");
    /* errp NULL ignores the error. */
    T_ASSERT(iot_thread_props_set_int(p, "poll-grow", -1, NULL) < 0);

    /* The refused sets left the defaults: creating with @p gives them. */
    t = new_thread("io0", p);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 32768);
    T_ASSERT_EQ(get_int(t, "poll-grow"), 0);
    T_ASSERT_EQ(get_int(t, "thread-pool-max"), 64);
    T_STR_PROP(t, "cpu-affinity", "");
    destroy_thread(t);

    /* Values given at creation are stored and applied. */
    props_int(p, "poll-max-ns", 0);
    props_int(p, "poll-grow", 3);
    props_int(p, "poll-shrink", 4);
    props_int(p, "aio-max-batch", 5);
    props_int(p, "thread-pool-min", 6);
    props_int(p, "thread-pool-max", 7);
    props_int(p, "poll-grow", 8); /* the last set wins */
    t = new_thread("io0", p);
    iot_thread_props_free(p);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 0);
    T_ASSERT_EQ(get_int(t, "poll-grow"), 8);
    T_ASSERT_EQ(get_int(t, "poll-shrink"), 4);
    T_ASSERT_EQ(get_int(t, "aio-max-batch"), 5);
    T_ASSERT_EQ(get_int(t, "thread-pool-min"), 6);
    T_ASSERT_EQ(get_int(t, "thread-pool-max"), 7);
    {
        IotCtx *ctx = iot_thread_ctx(t);
        int64_t a, b, c;
        iot_ctx_get_poll_params(ctx, &a, &b, &c);
        T_ASSERT_EQ(a, 0);
        T_ASSERT_EQ(b, 8);
        T_ASSERT_EQ(c, 4);
        T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 5);
        iot_ctx_get_pool_size(ctx, &a, &b);
        T_ASSERT_EQ(a, 6);
        T_ASSERT_EQ(b, 7);
    }
    destroy_thread(t);
}

/* What the loop has in force, read on its own thread. */
typedef struct InForce {
    IotCtx *ctx;
    IotPollParams param;
} InForce;

static void in_force_fn(void *opaque)
{
    InForce *f = opaque;

    f->param = f->ctx->param;
}

static void test_properties_runtime_applied(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    InForce f = { .ctx = ctx };
    int64_t max_ns, grow, shrink, min, max;

    set_int_ok(t, "poll-max-ns", 1000);
    iot_ctx_get_poll_params(ctx, &max_ns, &grow, &shrink);
    T_ASSERT_EQ(max_ns, 1000);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 1000);
    /* ... and the loop runs with it from its next iteration on. */
    run_on(t, in_force_fn, &f);
    T_ASSERT_EQ(f.param.max_ns, 1000);

    set_int_ok(t, "poll-grow", 3);
    set_int_ok(t, "poll-shrink", 2);
    iot_ctx_get_poll_params(ctx, &max_ns, &grow, &shrink);
    T_ASSERT_EQ(max_ns, 1000);
    T_ASSERT_EQ(grow, 3);
    T_ASSERT_EQ(shrink, 2);
    run_on(t, in_force_fn, &f);
    T_ASSERT_EQ(f.param.max_ns, 1000);
    T_ASSERT_EQ(f.param.grow, 3);
    T_ASSERT_EQ(f.param.shrink, 2);

    set_int_ok(t, "aio-max-batch", 17);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 17);
    T_ASSERT_EQ(get_int(t, "aio-max-batch"), 17);

    set_int_ok(t, "thread-pool-max", 8);
    set_int_ok(t, "thread-pool-min", 2);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, 2);
    T_ASSERT_EQ(max, 8);

    /* The poll values did not move meanwhile. */
    iot_ctx_get_poll_params(ctx, &max_ns, &grow, &shrink);
    T_ASSERT_EQ(max_ns, 1000);
    T_ASSERT_EQ(grow, 3);
    T_ASSERT_EQ(shrink, 2);

    destroy_thread(t);
}

typedef struct InsideSet {
    IotThread *t;
    int ret[4];
    int64_t got;
    char *msg;
} InsideSet;

static void inside_set_fn(void *opaque)
{
    InsideSet *s = opaque;
    IotError *err = NULL;

    s->ret[0] = iot_thread_set_int(s->t, "poll-max-ns", 2000, NULL);
    s->ret[1] = iot_thread_set_int(s->t, "aio-max-batch", 3, NULL);
    s->ret[2] = iot_thread_set_int(s->t, "thread-pool-min", 1, NULL);
    s->ret[3] = iot_thread_set_int(s->t, "thread-pool-max", 0, &err);
    s->msg = err ? strdup(iot_error_message(err)) : NULL;
    iot_error_free(err);
    iot_thread_get_int(s->t, "poll-max-ns", &s->got, NULL);
}

static void test_properties_runtime_from_inside(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    InsideSet s = { .t = t };
    InForce f = { .ctx = ctx };
    int64_t max_ns, min, max;

    run_on(t, inside_set_fn, &s);
    T_ASSERT_EQ(s.ret[0], 0);
    T_ASSERT_EQ(s.ret[1], 0);
    T_ASSERT_EQ(s.ret[2], 0);
    T_ASSERT(s.ret[3] < 0);
    T_ASSERT_STR(s.msg, POOL_MSG);
    free(s.msg);
    T_ASSERT_EQ(s.got, 2000);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 2000);
    T_ASSERT_EQ(get_int(t, "thread-pool-max"), 64);
    iot_ctx_get_poll_params(ctx, &max_ns, NULL, NULL);
    T_ASSERT_EQ(max_ns, 2000);
    T_ASSERT_EQ(iot_ctx_get_max_batch(ctx), 3);
    iot_ctx_get_pool_size(ctx, &min, &max);
    T_ASSERT_EQ(min, 1);
    T_ASSERT_EQ(max, 64);
    run_on(t, in_force_fn, &f);
    T_ASSERT_EQ(f.param.max_ns, 2000);

    destroy_thread(t);
}

/* Poll parameter changes reset the adaptive windows (a new generation);
 * aio-max-batch, pool and affinity changes do not. */
static void test_properties_runtime_param_gen(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    IotThreadProps *p;
    unsigned gen = atomic_load(&ctx->param_gen);
    IotError *err = NULL;

    set_int_ok(t, "poll-max-ns", 1000);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen + 1);
    set_int_ok(t, "poll-grow", 2);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen + 2);
    set_int_ok(t, "poll-shrink", 2);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen + 3);
    gen += 3;

    set_int_ok(t, "aio-max-batch", 10);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen);
    set_int_ok(t, "thread-pool-min", 1);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen);
    set_int_ok(t, "thread-pool-max", 4);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen);
    set_str_ok(t, "cpu-affinity", "");
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen);

    /* Several at once: one generation if any poll value is among them. */
    p = props_new();
    props_int(p, "aio-max-batch", 11);
    props_int(p, "thread-pool-max", 5);
    T_ASSERT_EQ(iot_thread_set_props(t, p, &err), 0);
    T_NO_ERR(err);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen);
    props_int(p, "poll-max-ns", 500);
    props_int(p, "poll-grow", 4);
    T_ASSERT_EQ(iot_thread_set_props(t, p, &err), 0);
    T_NO_ERR(err);
    T_ASSERT_EQ(atomic_load(&ctx->param_gen), gen + 1);
    iot_thread_props_free(p);

    destroy_thread(t);
}

/*
 * An "any thread" call made on the IOThread while another thread controls
 * it (a property set waiting for its apply BH, or a stop waiting for the
 * join).  The BH on the IOThread waits until the controller's BH is
 * pending (so the controller is inside its call), then makes its own call.
 */
typedef enum { OP_GET_INT, OP_SET_INT, OP_QUERY, OP_STATS } InsideOp;

typedef struct Crossing {
    IotThread *t;
    InsideOp op;
    bool stop; /* the controller stops instead of setting */
    Waiter started, done;
    int ret;
} Crossing;

static void crossing_bh(void *opaque)
{
    Crossing *c = opaque;
    IotCtx *ctx = iot_thread_ctx(c->t);
    int64_t v;
    char *s;

    waiter_post(&c->started);
    /* The controller schedules its BH while it holds whatever it holds. */
    while (!iot__postq_pending(ctx)) {
        sched_yield();
    }
    switch (c->op) {
    case OP_GET_INT:
        c->ret = iot_thread_get_int(c->t, "poll-max-ns", &v, NULL);
        break;
    case OP_SET_INT:
        c->ret = iot_thread_set_int(c->t, "aio-max-batch", 5, NULL);
        break;
    case OP_QUERY:
        s = iot_thread_query_json();
        c->ret = s ? 0 : -1;
        free(s);
        break;
    case OP_STATS:
        s = iot_thread_stats_json(NULL);
        c->ret = s ? 0 : -1;
        free(s);
        break;
    }
    waiter_post(&c->done);
}

static void *controller_fn(void *opaque)
{
    Crossing *c = opaque;

    if (c->stop) {
        T_ASSERT_EQ(iot_thread_stop(c->t, NULL), 0);
    } else {
        T_ASSERT_EQ(iot_thread_set_int(c->t, "poll-max-ns", 1000, NULL), 0);
    }
    return NULL;
}

static void crossing_run(InsideOp op, bool stop, const char *what)
{
    IotThread *t = new_thread("io0", NULL);
    Crossing c = { .t = t, .op = op, .stop = stop };
    pthread_t tid;

    waiter_init(&c.started);
    waiter_init(&c.done);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(t), crossing_bh, &c), 0);
    waiter_wait(&c.started, 1);
    T_ASSERT_EQ(pthread_create(&tid, NULL, controller_fn, &c), 0);
    if (!waiter_wait_for(&c.done, 1, DEADLOCK_S)) {
        t_fail(__FILE__, __LINE__,
               "deadlock: %s on the IOThread blocks while another thread "
               "is in %s (it holds the IOThread's lock while waiting for "
               "the IOThread)",
               what, stop ? "iot_thread_stop" : "iot_thread_set_int");
    }
    T_ASSERT_EQ(c.ret, 0);
    T_ASSERT_EQ(pthread_join(tid, NULL), 0);
    if (!stop) {
        T_ASSERT_EQ(get_int(t, "poll-max-ns"), 1000);
        T_ASSERT_EQ(get_int(t, "aio-max-batch"), op == OP_SET_INT ? 5 : 0);
    }
    waiter_destroy(&c.started);
    waiter_destroy(&c.done);
    destroy_thread(t);
}

static void test_properties_runtime_get_inside_while_set(void)
{
    crossing_run(OP_GET_INT, false, "iot_thread_get_int");
}

static void test_properties_runtime_set_inside_while_set(void)
{
    crossing_run(OP_SET_INT, false, "iot_thread_set_int");
}

static void test_registry_query_inside_while_set(void)
{
    crossing_run(OP_QUERY, false, "iot_thread_query_json");
}

static void test_registry_stats_inside_while_stop(void)
{
    crossing_run(OP_STATS, true, "iot_thread_stats_json");
}

/* ---- cpu-affinity ---- */

static void affinity_of(pid_t tid, cpu_set_t *set)
{
    CPU_ZERO(set);
    T_ASSERT_EQ(sched_getaffinity(tid, sizeof(*set), set), 0);
}

/* The first CPU this process may run on. */
static int first_cpu(void)
{
    cpu_set_t set;

    affinity_of(0, &set);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &set)) {
            return c;
        }
    }
    t_fail(__FILE__, __LINE__, "no CPU at all");
}

static void check_only_cpu(pid_t tid, int cpu)
{
    cpu_set_t set;
    char list[64], want[16];

    affinity_of(tid, &set);
    T_ASSERT_EQ(CPU_COUNT(&set), 1);
    T_ASSERT_TRUE(CPU_ISSET(cpu, &set));
    snprintf(want, sizeof(want), "%d", cpu);
    task_cpus_allowed(tid, list, sizeof(list));
    T_ASSERT_STR(list, want);
}

static void test_cpu_affinity_runtime(void)
{
    IotThread *t = new_thread("io0", NULL);
    pid_t tid = iot_thread_tid(t);
    int cpu = first_cpu();
    cpu_set_t inherited, now;
    char list[16], before[64], after[64];
    unsigned gen = atomic_load(&iot_thread_ctx(t)->param_gen);

    affinity_of(0, &inherited);
    affinity_of(tid, &now);
    T_ASSERT_TRUE(CPU_EQUAL(&now, &inherited));
    task_cpus_allowed(tid, before, sizeof(before));

    snprintf(list, sizeof(list), "%d", cpu);
    set_str_ok(t, "cpu-affinity", list);
    T_STR_PROP(t, "cpu-affinity", list);
    check_only_cpu(tid, cpu);
    /* The caller's own affinity is not touched. */
    affinity_of(0, &now);
    T_ASSERT_TRUE(CPU_EQUAL(&now, &inherited));
    sync_with(t);

    /* "" goes back to the inherited set. */
    set_str_ok(t, "cpu-affinity", "");
    T_STR_PROP(t, "cpu-affinity", "");
    affinity_of(tid, &now);
    T_ASSERT_TRUE(CPU_EQUAL(&now, &inherited));
    task_cpus_allowed(tid, after, sizeof(after));
    T_ASSERT_STR(after, before);

    /* A list that parses but names no CPU of this machine: refused, and
     * the affinity stays as it was. */
    set_str_ok(t, "cpu-affinity", list);
    snprintf(list, sizeof(list), "%d", absent_cpu());
    set_str_fails(t, "cpu-affinity", list, NULL, "cpu-affinity");
    check_only_cpu(tid, cpu);

    /* Ranges and lists: the whole inherited set, written out. */
    {
        char full[256] = "";
        size_t len = 0;
        for (int c = 0; c < CPU_SETSIZE; c++) {
            if (CPU_ISSET(c, &inherited)) {
                len += (size_t)snprintf(full + len, sizeof(full) - len, "%s%d",
                                        len ? "," : "", c);
                T_ASSERT(len < sizeof(full));
            }
        }
        set_str_ok(t, "cpu-affinity", full);
        affinity_of(tid, &now);
        T_ASSERT_TRUE(CPU_EQUAL(&now, &inherited));
        if (CPU_ISSET(0, &inherited) && CPU_ISSET(1, &inherited)) {
            set_str_ok(t, "cpu-affinity", "0-1");
            affinity_of(tid, &now);
            T_ASSERT_EQ(CPU_COUNT(&now), 2);
        }
    }
    /* Affinity is no poll parameter. */
    T_ASSERT_EQ(atomic_load(&iot_thread_ctx(t)->param_gen), gen);

    destroy_thread(t);
}

static void test_cpu_affinity_at_creation(void)
{
    IotThreadProps *p = props_new();
    int cpu = first_cpu();
    char list[16], *json, *obj, key[64];
    IotThread *t;
    cpu_set_t inherited, now;

    snprintf(list, sizeof(list), "%d", cpu);
    props_str(p, "cpu-affinity", list);
    t = new_thread("io0", p);
    iot_thread_props_free(p);
    T_STR_PROP(t, "cpu-affinity", list);
    check_only_cpu(iot_thread_tid(t), cpu);
    /* The creator is unaffected. */
    affinity_of(0, &inherited);
    T_ASSERT(CPU_COUNT(&inherited) >= 1);

    json = iot_thread_stats_json("io0");
    obj = json_obj(json, "io0");
    T_ASSERT(obj != NULL);
    snprintf(key, sizeof(key), "\"cpu-affinity\": \"%s\"", list);
    T_ASSERT(strstr(obj, key) != NULL);
    free(obj);
    free(json);

    /* "" at run time: the set the creator had, not the one at creation. */
    set_str_ok(t, "cpu-affinity", "");
    affinity_of(iot_thread_tid(t), &now);
    T_ASSERT_TRUE(CPU_EQUAL(&now, &inherited));

    destroy_thread(t);
}

/* ---- poll-max-ns storm ---- */

typedef struct Storm {
    IotCtx *ctx;
    long cap;               /* BHs per producer, at most */
    atomic_uchar *slots[2]; /* runs of each BH */
    atomic_long scheduled[2];
    atomic_long ran;
    atomic_bool setter_done;
} Storm;

typedef struct StormProducer {
    Storm *s;
    int idx;
} StormProducer;

static void storm_bh(void *opaque)
{
    atomic_uchar *slot = opaque;

    atomic_fetch_add(slot, 1);
}

static void storm_count_bh(void *opaque)
{
    Storm *s = opaque;

    atomic_fetch_add(&s->ran, 1);
}

static void *storm_producer_fn(void *opaque)
{
    StormProducer *sp = opaque;
    Storm *s = sp->s;
    long i;

    for (i = 0; i < s->cap && !atomic_load(&s->setter_done); i++) {
        T_ASSERT_EQ(
            iot_bh_schedule_oneshot(s->ctx, storm_bh, &s->slots[sp->idx][i]),
            0);
        T_ASSERT_EQ(iot_bh_schedule_oneshot(s->ctx, storm_count_bh, s), 0);
        atomic_store(&s->scheduled[sp->idx], i + 1);
        /* Keep the backlog bounded. */
        while (atomic_load(&s->scheduled[0]) + atomic_load(&s->scheduled[1]) -
                   atomic_load(&s->ran) >
               1000) {
            sched_yield();
        }
    }
    return NULL;
}

typedef struct StormSetter {
    IotThread *t;
    Storm *s;
    long n;
    int64_t last;
} StormSetter;

static void *storm_setter_fn(void *opaque)
{
    StormSetter *ss = opaque;

    for (long i = 0; i < ss->n; i++) {
        int64_t v = (i * 7919) % 100000;
        if (i == ss->n - 1) {
            v = 12345;
        }
        T_ASSERT_EQ(iot_thread_set_int(ss->t, "poll-max-ns", v, NULL), 0);
        ss->last = v;
    }
    atomic_store(&ss->s->setter_done, true);
    return NULL;
}

static void test_poll_max_ns_storm(void)
{
    IotThread *t = new_thread("io0", NULL);
    Storm s = { .ctx = iot_thread_ctx(t), .cap = t_scale(200000, 20) };
    StormProducer prod[2] = { { &s, 0 }, { &s, 1 } };
    StormSetter ss = { .t = t, .s = &s, .n = t_scale(10000, 20) };
    pthread_t pt[2], st;
    InForce f = { .ctx = s.ctx };
    int64_t max_ns;
    long total;

    for (int i = 0; i < 2; i++) {
        s.slots[i] = calloc((size_t)s.cap, sizeof(atomic_uchar));
        T_ASSERT(s.slots[i] != NULL);
    }
    for (int i = 0; i < 2; i++) {
        T_ASSERT_EQ(pthread_create(&pt[i], NULL, storm_producer_fn, &prod[i]),
                    0);
    }
    T_ASSERT_EQ(pthread_create(&st, NULL, storm_setter_fn, &ss), 0);
    T_ASSERT_EQ(pthread_join(st, NULL), 0);
    for (int i = 0; i < 2; i++) {
        T_ASSERT_EQ(pthread_join(pt[i], NULL), 0);
    }
    /* Every BH scheduled before this one has run when it does. */
    sync_with(t);

    total = atomic_load(&s.scheduled[0]) + atomic_load(&s.scheduled[1]);
    T_ASSERT(total > 0);
    T_ASSERT_EQ(atomic_load(&s.ran), total);
    for (int i = 0; i < 2; i++) {
        long n = atomic_load(&s.scheduled[i]);
        for (long j = 0; j < s.cap; j++) {
            unsigned runs = atomic_load(&s.slots[i][j]);
            if (runs != (j < n ? 1u : 0u)) {
                t_fail(__FILE__, __LINE__,
                       "producer %d's BH %ld ran %u times (%ld scheduled)", i,
                       j, runs, n);
            }
        }
        free(s.slots[i]);
    }

    T_ASSERT_EQ(ss.last, 12345);
    T_ASSERT_EQ(get_int(t, "poll-max-ns"), 12345);
    iot_ctx_get_poll_params(s.ctx, &max_ns, NULL, NULL);
    T_ASSERT_EQ(max_ns, 12345);
    run_on(t, in_force_fn, &f);
    T_ASSERT_EQ(f.param.max_ns, 12345);

    destroy_thread(t);
}

/* ---- stop while busy ---- */

typedef struct Busy {
    IotCtx *ctx;
    long cap;
    atomic_uchar *slots[2];
    atomic_long scheduled[2];
    atomic_long ran;
    atomic_bool stop;
} Busy;

typedef struct BusyProducer {
    Busy *b;
    int idx;
} BusyProducer;

typedef struct BusyItem {
    Busy *b;
    atomic_uchar *slot;
} BusyItem;

static void busy_bh(void *opaque)
{
    BusyItem *it = opaque;

    atomic_fetch_add(it->slot, 1);
    atomic_fetch_add(&it->b->ran, 1);
}

static void *busy_producer_fn(void *opaque)
{
    BusyProducer *bp = opaque;
    Busy *b = bp->b;
    BusyItem *items = calloc((size_t)b->cap, sizeof(*items));
    long i;

    T_ASSERT(items != NULL);
    for (i = 0; i < b->cap && !atomic_load(&b->stop); i++) {
        items[i] = (BusyItem){ b, &b->slots[bp->idx][i] };
        T_ASSERT_EQ(iot_bh_schedule_oneshot(b->ctx, busy_bh, &items[i]), 0);
        atomic_store(&b->scheduled[bp->idx], i + 1);
        if (i % 64 == 63) {
            sched_yield();
        }
    }
    return items; /* freed by the test once nothing can run them */
}

static void busy_run(bool drain)
{
    int tasks0 = task_count(), fds0 = fd_count();
    IotThread *t = new_thread("io0", NULL);
    Busy b = { .ctx = iot_thread_ctx(t), .cap = t_scale(200000, 20) };
    BusyProducer bp[2] = { { &b, 0 }, { &b, 1 } };
    pthread_t pt[2];
    void *items[2];
    long total, ran_at_stop;

    iot_ctx_ref(b.ctx);
    for (int i = 0; i < 2; i++) {
        b.slots[i] = calloc((size_t)b.cap, sizeof(atomic_uchar));
        T_ASSERT(b.slots[i] != NULL);
    }
    for (int i = 0; i < 2; i++) {
        T_ASSERT_EQ(pthread_create(&pt[i], NULL, busy_producer_fn, &bp[i]), 0);
    }
    /* Let the IOThread get busy with them. */
    while (atomic_load(&b.ran) < 100 &&
           atomic_load(&b.scheduled[0]) + atomic_load(&b.scheduled[1]) <
               2 * b.cap) {
        sched_yield();
    }
    T_ASSERT_EQ(iot_thread_stop(t, NULL), 0);
    ran_at_stop = atomic_load(&b.ran);
    destroy_thread(t);
    /* Nobody runs the context any more; the producers keep scheduling to
     * it a little longer (our reference keeps it alive). */
    T_ASSERT_EQ(atomic_load(&b.ran), ran_at_stop);
    atomic_store(&b.stop, true);
    for (int i = 0; i < 2; i++) {
        T_ASSERT_EQ(pthread_join(pt[i], &items[i]), 0);
    }
    total = atomic_load(&b.scheduled[0]) + atomic_load(&b.scheduled[1]);
    T_ASSERT(atomic_load(&b.ran) <= total);
    T_ASSERT_EQ(atomic_load(&b.ran), ran_at_stop);

    if (drain) {
        /* This thread may become the context's home now: the leftovers
         * run, each exactly once. */
        T_ASSERT(iot_ctx_current() == NULL);
        T_ASSERT_EQ(iot_ctx_set_current(b.ctx), 0);
        while (iot_ctx_poll(b.ctx, false)) {
        }
        T_ASSERT_EQ(atomic_load(&b.ran), total);
        for (int i = 0; i < 2; i++) {
            long n = atomic_load(&b.scheduled[i]);
            for (long j = 0; j < b.cap; j++) {
                unsigned runs = atomic_load(&b.slots[i][j]);
                if (runs != (j < n ? 1u : 0u)) {
                    t_fail(__FILE__, __LINE__,
                           "producer %d's BH %ld ran %u times", i, j, runs);
                }
            }
        }
        T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    }
    /* The last reference: pending one-shots are freed, no abort. */
    iot_ctx_unref(b.ctx);
    for (int i = 0; i < 2; i++) {
        free(items[i]);
        free(b.slots[i]);
    }
    T_TASKS(tasks0);
    T_ASSERT_EQ(fd_count(), fds0);
}

static void test_stop_while_busy(void)
{
    busy_run(true);
}

static void test_stop_while_busy_unref_pending(void)
{
    busy_run(false);
}

/* ---- statistics ---- */

static void count_bh(void *opaque)
{
    atomic_fetch_add((atomic_long *)opaque, 1);
}

static void timer_cb(void *opaque)
{
    waiter_post(opaque);
}

typedef struct TimerBox {
    IotCtx *ctx;
    Waiter *w;
    IotTimer *timer;
} TimerBox;

static void timer_arm_fn(void *opaque)
{
    TimerBox *tb = opaque;

    tb->timer = iot_timer_new(tb->ctx, IOT_CLOCK_MONOTONIC, timer_cb, tb->w);
    T_ASSERT(tb->timer != NULL);
    iot_timer_mod(tb->timer, iot_clock_ns(IOT_CLOCK_MONOTONIC) + IOT_NS_PER_MS);
}

static void timer_free_fn(void *opaque)
{
    TimerBox *tb = opaque;

    iot_timer_free(tb->timer);
}

typedef struct FdBox {
    IotCtx *ctx;
    int fd;
    Waiter w;
    atomic_int reads, poll_readies;
} FdBox;

static void fd_read_cb(void *opaque)
{
    FdBox *fb = opaque;
    uint64_t v;

    if (read(fb->fd, &v, sizeof(v)) == sizeof(v)) {
        atomic_fetch_add(&fb->reads, 1);
        waiter_post(&fb->w);
    }
}

static bool fd_poll_cb(void *opaque)
{
    (void)opaque;
    return false; /* never ready by polling; the read callback does it */
}

static void fd_poll_ready_cb(void *opaque)
{
    FdBox *fb = opaque;

    atomic_fetch_add(&fb->poll_readies, 1);
}

static void fd_add_fn(void *opaque)
{
    FdBox *fb = opaque;

    T_ASSERT_EQ(iot_fd_set_handler(fb->ctx, fb->fd, fd_read_cb, NULL,
                                   fd_poll_cb, fd_poll_ready_cb, fb),
                0);
}

static void fd_del_fn(void *opaque)
{
    FdBox *fb = opaque;

    T_ASSERT_EQ(iot_fd_set(fb->ctx, fb->fd, NULL, NULL), 0);
}

typedef struct SubmitBox {
    IotCtx *ctx;
    Waiter w;
    bool ok;
} SubmitBox;

static int nop_work(void *arg)
{
    (void)arg;
    return 0;
}

static void submit_done(void *opaque, int ret)
{
    (void)ret;
    waiter_post(&((SubmitBox *)opaque)->w);
}

static void submit_fn(void *opaque)
{
    SubmitBox *sb = opaque;

    sb->ok = iot_pool_submit(sb->ctx, nop_work, NULL, submit_done, sb) != NULL;
}

/* A context that outlives its IOThread (a reference kept across the
 * destroy) and is then driven by another thread: its pool starts workers
 * again.  The IOThread's end had made sizes set afterwards start none,
 * and that must not outlast it: with no worker left (the idle one timed
 * out), work submitted by the new home never ran. */
static bool submit_ran;

static void submit_ran_cb(void *opaque, int ret)
{
    (void)opaque;
    T_ASSERT_EQ(ret, 0);
    submit_ran = true;
}

static void test_pool_after_iothread(void)
{
    IotThread *t = new_thread("io-p", NULL);
    IotCtx *ctx = iot_thread_ctx(t);
    SubmitBox sb = { .ctx = ctx };
    IotPoolStats ps;

    iot__pool_idle_ns = IOT_NS_PER_MS; /* idle workers leave at once */
    waiter_init(&sb.w);
    run_on(t, submit_fn, &sb);
    T_ASSERT_TRUE(sb.ok);
    waiter_wait(&sb.w, 1);
    waiter_destroy(&sb.w);
    do {
        iot_ctx_pool_stats(ctx, &ps); /* the worker's idle timeout */
    } while (ps.threads != 0);
    iot_ctx_ref(ctx);
    destroy_thread(t);

    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    submit_ran = false;
    T_ASSERT(iot_pool_submit(ctx, nop_work, NULL, submit_ran_cb, NULL));
    while (!submit_ran) {
        iot_ctx_poll(ctx, true); /* no worker: the case's time limit */
    }
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
    iot_ctx_unref(ctx);
}

static void test_stats_move(void)
{
    IotThreadProps *p = props_new();
    IotThread *t;
    IotCtx *ctx;
    IotCtxStats s0, s;
    atomic_long runs = 0;
    long n = 1000;
    Waiter tw;
    TimerBox tb;
    FdBox fb;
    SubmitBox sb;
    uint64_t one = 1;

    props_int(p, "poll-max-ns", 0);
    t = new_thread("io0", p);
    iot_thread_props_free(p);
    ctx = iot_thread_ctx(t);

    sync_with(t);
    iot_thread_get_stats(t, &s0);
    T_ASSERT(s0.iterations >= 1);
    T_ASSERT(s0.backend != NULL);
    T_ASSERT(!strcmp(s0.backend, "poll") || !strcmp(s0.backend, "epoll") ||
             !strcmp(s0.backend, "io_uring"));
    T_ASSERT_STR(s0.backend, iot_ctx_fdmon_name(ctx));
    T_ASSERT_EQ(s0.pool_threads, 0);

    /* Bottom halves. */
    for (long i = 0; i < n; i++) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(ctx, count_bh, &runs), 0);
    }
    sync_with(t);
    T_ASSERT_EQ(atomic_load(&runs), n);
    /* One pass may take the posts and that sync in the iteration s0
     * already counted; a sync posted after it needs a later one. */
    sync_with(t);
    iot_thread_get_stats(t, &s);
    T_ASSERT(s.bh_runs >= s0.bh_runs + (uint64_t)n);
    T_ASSERT(s.iterations > s0.iterations);

    /* A timer. */
    waiter_init(&tw);
    tb = (TimerBox){ .ctx = ctx, .w = &tw };
    run_on(t, timer_arm_fn, &tb);
    waiter_wait(&tw, 1);
    sync_with(t);
    iot_thread_get_stats(t, &s);
    T_ASSERT(s.timer_fires >= 1);
    run_on(t, timer_free_fn, &tb);
    waiter_destroy(&tw);

    /* An fd handler (pollable, but polling is off). */
    fb = (FdBox){ .ctx = ctx };
    fb.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    T_ASSERT(fb.fd >= 0);
    waiter_init(&fb.w);
    run_on(t, fd_add_fn, &fb);
    for (int i = 0; i < 5; i++) {
        T_ASSERT_EQ(write(fb.fd, &one, sizeof(one)), (ssize_t)sizeof(one));
        waiter_wait(&fb.w, i + 1);
    }
    sync_with(t);
    run_on(t, fd_del_fn, &fb);
    close(fb.fd);
    waiter_destroy(&fb.w);
    iot_thread_get_stats(t, &s);
    T_ASSERT(s.fd_events >= 5);
    T_ASSERT_EQ(atomic_load(&fb.reads), 5);
    T_ASSERT_EQ(atomic_load(&fb.poll_readies), 0);
    T_ASSERT_EQ(s.poll_hits, 0);
    T_ASSERT_EQ(s.poll_window_ns, 0);
    T_ASSERT(s.iterations > s0.iterations + 5);

    /* The pool: thread-pool-min workers once it exists. */
    set_int_ok(t, "thread-pool-min", 3);
    sb = (SubmitBox){ .ctx = ctx };
    waiter_init(&sb.w);
    run_on(t, submit_fn, &sb);
    T_ASSERT_TRUE(sb.ok);
    waiter_wait(&sb.w, 1);
    waiter_destroy(&sb.w);
    iot_thread_get_stats(t, &s);
    T_ASSERT_EQ(s.pool_threads, 3);
    T_ASSERT_EQ(s.pool_queued, 0);
    T_ASSERT_EQ(s.pool_active, 0);
    set_int_ok(t, "thread-pool-min", 5);
    iot_thread_get_stats(t, &s);
    T_ASSERT_EQ(s.pool_threads, 5);

    /* Counters never go back. */
    {
        IotCtxStats s2;
        sync_with(t);
        iot_thread_get_stats(t, &s2);
        T_ASSERT(s2.iterations >= s.iterations);
        T_ASSERT(s2.bh_runs >= s.bh_runs);
        T_ASSERT(s2.fd_events >= s.fd_events);
        T_ASSERT(s2.timer_fires >= s.timer_fires);
        T_ASSERT_EQ(s2.poll_hits, 0);
    }

    /* Stopped, nobody will start workers: a size set is stored, and the
     * count stays the workers there are (it counted 3 that never came). */
    T_ASSERT_EQ(iot_thread_stop(t, NULL), 0);
    set_int_ok(t, "thread-pool-min", 8);
    iot_thread_get_stats(t, &s);
    T_ASSERT_EQ(s.pool_threads, 5);
    {
        int64_t v = 0;
        T_ASSERT_EQ(iot_thread_get_int(t, "thread-pool-min", &v, NULL), 0);
        T_ASSERT_EQ(v, 8);
    }

    destroy_thread(t);
}

/* busy_ns and idle_ns never go back, however a read falls against the
 * end of a wait (a monitor samples while the loop wakes and sleeps many
 * times a millisecond).  Before the wait's end was published as one,
 * a read could count a wait twice or miss it whole. */
typedef struct WakeArgs {
    IotCtx *ctx;
    atomic_bool stop;
    atomic_long runs;
} WakeArgs;

static void *waker_thread(void *opaque)
{
    WakeArgs *w = opaque;
    const struct timespec gap = { 0, 20000 }; /* the loop sleeps between */

    while (!atomic_load(&w->stop)) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(w->ctx, count_bh, &w->runs), 0);
        nanosleep(&gap, NULL);
    }
    return NULL;
}

static void test_stats_monotonic(void)
{
    IotThreadProps *p = props_new();
    WakeArgs w = { 0 };
    IotCtxStats prev, s;
    pthread_t thr;
    IotThread *t;
    long samples = 0;
    int64_t end;

    props_int(p, "poll-max-ns", 0); /* every gap is a blocking wait */
    t = new_thread("io0", p);
    iot_thread_props_free(p);
    w.ctx = iot_thread_ctx(t);
    sync_with(t);
    iot_thread_get_stats(t, &prev);
    T_ASSERT_EQ(pthread_create(&thr, NULL, waker_thread, &w), 0);
    end = t_now_ns() + t_scale(300, 1) * 1000000LL;
    while (t_now_ns() < end || atomic_load(&w.runs) < 100) {
        iot_thread_get_stats(t, &s);
        if (s.idle_ns < prev.idle_ns || s.busy_ns < prev.busy_ns) {
            t_fail(__FILE__, __LINE__,
                   "sample %ld went back: idle %" PRIu64 " -> %" PRIu64
                   ", busy %" PRIu64 " -> %" PRIu64,
                   samples, prev.idle_ns, s.idle_ns, prev.busy_ns, s.busy_ns);
        }
        prev = s;
        samples++;
    }
    atomic_store(&w.stop, true);
    T_ASSERT_EQ(pthread_join(thr, NULL), 0);
    T_ASSERT(prev.idle_ns > 0);
    destroy_thread(t);
}

/* Two IOThreads that wait for each other at the same moment: each one's
 * wait runs its own loop, so the other's request still runs.  Before,
 * both waited on a condition variable and neither loop ever ran again. */
typedef struct Cross {
    pthread_barrier_t bar; /* both BHs are running before either calls */
    IotThread *a, *b;
    Waiter done;
} Cross;

static void cross_set_b(void *opaque)
{
    Cross *x = opaque;

    pthread_barrier_wait(&x->bar);
    set_int_ok(x->b, "poll-max-ns", 1111);
    waiter_post(&x->done);
}

static void cross_set_a(void *opaque)
{
    Cross *x = opaque;

    pthread_barrier_wait(&x->bar);
    set_int_ok(x->a, "poll-max-ns", 2222);
    waiter_post(&x->done);
}

static void cross_stop_b(void *opaque)
{
    Cross *x = opaque;

    pthread_barrier_wait(&x->bar);
    T_ASSERT_EQ(iot_thread_stop(x->b, NULL), 0);
    waiter_post(&x->done);
}

static void cross_run(CallFunc *on_a, CallFunc *on_b)
{
    Cross x;

    x.a = new_thread("io0", NULL);
    x.b = new_thread("io1", NULL);
    pthread_barrier_init(&x.bar, NULL, 2);
    waiter_init(&x.done);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.a), on_a, &x), 0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.b), on_b, &x), 0);
    waiter_wait(&x.done, 2); /* hangs (the case times out) without */
    T_ASSERT_EQ(get_int(x.a, "poll-max-ns"), 2222);
    if (on_a == cross_set_b) {
        T_ASSERT_EQ(get_int(x.b, "poll-max-ns"), 1111);
    }
    pthread_barrier_destroy(&x.bar);
    waiter_destroy(&x.done);
    destroy_thread(x.a);
    destroy_thread(x.b);
}

static void test_cross_set(void)
{
    cross_run(cross_set_b, cross_set_a);
}

/* io0 stops io1 while io1 sets a property of io0's. */
static void test_cross_stop_set(void)
{
    cross_run(cross_stop_b, cross_set_a);
}

/* A stop of T made inside the nested wait of this same thread's first
 * stop of T (another BH of the waiting IOThread) cannot wait for the
 * join, which comes only after it returns: it fails with -EDEADLK at
 * once, and the first stop still completes.  It used to wait for ever. */
typedef struct Nested {
    IotThread *a, *t;
    sem_t t_gate;  /* T's BH holds T until the inner stop has run */
    int inner_ret; /* [a] */
    char *inner_msg;
    int inner_destroy_ret;
    IotThread *inner_found;
    Waiter done;
} Nested;

static void nested_hold_t(void *opaque)
{
    sem_wait(&((Nested *)opaque)->t_gate);
}

static void nested_inner_stop(void *opaque)
{
    Nested *x = opaque;
    IotError *err = NULL;

    x->inner_ret = iot_thread_stop(x->t, &err);
    x->inner_msg = err ? strdup(iot_error_message(err)) : NULL;
    iot_error_free(err);
    /* A destroy there fails the same way, and leaves T as it was: still
     * found by its id (it was unregistered for good before). */
    err = NULL;
    x->inner_destroy_ret = iot_thread_destroy(x->t, &err);
    iot_error_free(err);
    x->inner_found = iot_thread_find("io1");
    sem_post(&x->t_gate);
}

static void nested_outer_stop(void *opaque)
{
    Nested *x = opaque;

    T_ASSERT_EQ(
        iot_bh_schedule_oneshot(iot_thread_ctx(x->a), nested_inner_stop, x), 0);
    T_ASSERT_EQ(iot_thread_stop(x->t, NULL), 0);
    waiter_post(&x->done);
}

static void test_stop_nested_second(void)
{
    Nested x = { .inner_ret = 1 };

    x.a = new_thread("io0", NULL);
    x.t = new_thread("io1", NULL);
    sem_init(&x.t_gate, 0, 0);
    waiter_init(&x.done);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.t), nested_hold_t, &x),
                0);
    T_ASSERT_EQ(
        iot_bh_schedule_oneshot(iot_thread_ctx(x.a), nested_outer_stop, &x), 0);
    waiter_wait(&x.done, 1); /* hangs (the case times out) without */
    T_ASSERT_EQ(x.inner_ret, -EDEADLK);
    T_ASSERT(x.inner_msg && strstr(x.inner_msg, "while this thread is "
                                                "stopping it"));
    free(x.inner_msg);
    T_ASSERT_EQ(x.inner_destroy_ret, -EDEADLK);
    T_ASSERT(x.inner_found == x.t);
    iot_thread_unref(x.inner_found);
    sem_destroy(&x.t_gate);
    waiter_destroy(&x.done);
    destroy_thread(x.a);
    destroy_thread(x.t);
}

/* IOThreads that stop one another in a cycle: each waits for the next
 * one's end by running its own loop, nested, so none of them could end.
 * The stop (or destroy) that would close the cycle returns -EDEADLK, and
 * the others then complete.  It used to wait for ever (the case timed
 * out). */
typedef struct Cycle {
    int n;
    IotThread *t[3];
    struct CycleArg {
        struct Cycle *x;
        int i;
    } arg[3];
    sem_t gate;      /* holds the last one until the others wait */
    sem_t entering;  /* one more is about to stop the next */
    int ret[3];      /* [t[i]] its stop of t[i + 1] */
    char *msg;       /* [t[n - 1]] the refused stop's error */
    int destroy_ret; /* [t[n - 1]] a destroy of t[0] */
    IotThread *found;
    Waiter done;
} Cycle;

static void cycle_stop_next(void *opaque)
{
    struct CycleArg *a = opaque;
    Cycle *x = a->x;
    IotError *err = NULL;

    if (a->i == x->n - 1) {
        sem_wait(&x->gate);
        x->destroy_ret = iot_thread_destroy(x->t[0], &err);
        iot_error_free(err);
        err = NULL;
        x->found = iot_thread_find("io0"); /* left as it was */
    } else {
        sem_post(&x->entering);
    }
    x->ret[a->i] = iot_thread_stop(x->t[(a->i + 1) % x->n], &err);
    if (err) {
        x->msg = strdup(iot_error_message(err));
        iot_error_free(err);
    }
    waiter_post(&x->done);
}

static void cycle_run(int n)
{
    static const char *const ids[] = { "io0", "io1", "io2" };
    Cycle x = { .n = n };

    sem_init(&x.gate, 0, 0);
    sem_init(&x.entering, 0, 0);
    waiter_init(&x.done);
    for (int i = 0; i < n; i++) {
        x.t[i] = new_thread(ids[i], NULL);
        x.arg[i] = (struct CycleArg){ &x, i };
        x.ret[i] = 1;
    }
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.t[n - 1]),
                                        cycle_stop_next, &x.arg[n - 1]),
                0);
    /* From the end back: each one's target already waits (or is held),
     * so it cannot end before the cycle closes.  One at a time, so that
     * a stopper found asleep sleeps in its wait, not on a lock. */
    for (int i = n - 2; i >= 0; i--) {
        T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.t[i]),
                                            cycle_stop_next, &x.arg[i]),
                    0);
        sem_wait(&x.entering);
        while (!t_thread_sleeping(iot_thread_tid(x.t[i]))) {
            sched_yield();
        }
    }
    sem_post(&x.gate);
    waiter_wait(&x.done, n); /* hangs (the case times out) without */
    for (int i = 0; i < n - 1; i++) {
        T_ASSERT_EQ(x.ret[i], 0);
    }
    T_ASSERT_EQ(x.ret[n - 1], -EDEADLK);
    T_ASSERT(x.msg && strstr(x.msg, "cannot stop IOThread 'io0' from "
                                    "IOThread"));
    free(x.msg);
    T_ASSERT_EQ(x.destroy_ret, -EDEADLK);
    T_ASSERT(x.found == x.t[0]);
    iot_thread_unref(x.found);
    sem_destroy(&x.gate);
    sem_destroy(&x.entering);
    waiter_destroy(&x.done);
    for (int i = 0; i < n; i++) {
        destroy_thread(x.t[i]);
    }
}

static void test_stop_each_other(void)
{
    cycle_run(2);
}

static void test_stop_cycle_of_three(void)
{
    cycle_run(3);
}

/* A second stopper waits for the first stopper's join, which comes only
 * once that stopper's nested waits have ended: A stops B, C stops B too
 * (waiting for A's join of B), then A, inside its wait, stops C.  C could
 * not end before A joins B, nor A join B before C ends: A's stop of C is
 * refused.  (Found by review: the check followed only C's wait for B.) */
typedef struct Via {
    IotThread *a, *b, *c;
    sem_t b_gate, step;
    int ab, cb, ac; /* the three stops' results */
    Waiter done;
} Via;

static void via_hold_b(void *opaque)
{
    sem_wait(&((Via *)opaque)->b_gate);
}

static void via_a_stops_b(void *opaque)
{
    Via *x = opaque;

    sem_post(&x->step);
    x->ab = iot_thread_stop(x->b, NULL);
    waiter_post(&x->done);
}

static void via_c_stops_b(void *opaque)
{
    Via *x = opaque;

    sem_post(&x->step);
    x->cb = iot_thread_stop(x->b, NULL);
    waiter_post(&x->done);
}

static void via_a_stops_c(void *opaque)
{
    Via *x = opaque;

    x->ac = iot_thread_stop(x->c, NULL);
    sem_post(&x->step);
    waiter_post(&x->done);
}

/* @t is asleep: in its wait, once it has posted x->step before a stop */
static void await_sleeping(IotThread *t)
{
    while (!t_thread_sleeping(iot_thread_tid(t))) {
        sched_yield();
    }
}

static void test_stop_cycle_through_second_stopper(void)
{
    Via x = { .ab = 1, .cb = 1, .ac = 1 };

    x.a = new_thread("io0", NULL);
    x.b = new_thread("io1", NULL);
    x.c = new_thread("io2", NULL);
    sem_init(&x.b_gate, 0, 0);
    sem_init(&x.step, 0, 0);
    waiter_init(&x.done);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.b), via_hold_b, &x),
                0);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.a), via_a_stops_b, &x),
                0);
    sem_wait(&x.step);
    await_sleeping(x.a);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.c), via_c_stops_b, &x),
                0);
    sem_wait(&x.step);
    await_sleeping(x.c);
    T_ASSERT_EQ(iot_bh_schedule_oneshot(iot_thread_ctx(x.a), via_a_stops_c, &x),
                0);
    sem_wait(&x.step); /* without the check, it never comes */
    sem_post(&x.b_gate);
    waiter_wait(&x.done, 3);
    T_ASSERT_EQ(x.ac, -EDEADLK);
    T_ASSERT_EQ(x.ab, 0);
    T_ASSERT_EQ(x.cb, 0);
    sem_destroy(&x.b_gate);
    sem_destroy(&x.step);
    waiter_destroy(&x.done);
    destroy_thread(x.a);
    destroy_thread(x.b);
    destroy_thread(x.c);
}

/* A second stopper that is an IOThread waits by running its own loop too:
 * T, stopped by A and then by C, sets a property of C's on its way out,
 * and all three finish.  C's wait blocked its loop, and T's set waited
 * for C for ever.  (If C comes first instead, the case still holds.) */
typedef struct Second {
    IotThread *a, *t, *c;
    sem_t a_stopping, t_gate;
    Waiter done;
} Second;

static void second_t_sets_c(void *opaque)
{
    Second *x = opaque;

    sem_wait(&x->t_gate);
    set_int_ok(x->c, "poll-max-ns", 777);
    waiter_post(&x->done);
}

static void second_a_stops(void *opaque)
{
    Second *x = opaque;

    sem_post(&x->a_stopping);
    T_ASSERT_EQ(iot_thread_stop(x->t, NULL), 0);
    waiter_post(&x->done);
}

static void second_c_stops(void *opaque)
{
    Second *x = opaque;

    sem_wait(&x->a_stopping);
    sem_post(&x->t_gate);
    T_ASSERT_EQ(iot_thread_stop(x->t, NULL), 0);
    waiter_post(&x->done);
}

static void test_stop_second_stopper_runs_its_loop(void)
{
    Second x;

    x.a = new_thread("io0", NULL);
    x.t = new_thread("io1", NULL);
    x.c = new_thread("io2", NULL);
    sem_init(&x.a_stopping, 0, 0);
    sem_init(&x.t_gate, 0, 0);
    waiter_init(&x.done);
    T_ASSERT_EQ(
        iot_bh_schedule_oneshot(iot_thread_ctx(x.t), second_t_sets_c, &x), 0);
    T_ASSERT_EQ(
        iot_bh_schedule_oneshot(iot_thread_ctx(x.a), second_a_stops, &x), 0);
    T_ASSERT_EQ(
        iot_bh_schedule_oneshot(iot_thread_ctx(x.c), second_c_stops, &x), 0);
    waiter_wait(&x.done, 3); /* hangs (the case times out) without */
    T_ASSERT_EQ(get_int(x.c, "poll-max-ns"), 777);
    sem_destroy(&x.a_stopping);
    sem_destroy(&x.t_gate);
    waiter_destroy(&x.done);
    destroy_thread(x.a);
    destroy_thread(x.t);
    destroy_thread(x.c);
}

/* A stopped IOThread is neither busy nor idle: its counters keep the
 * values they had when it stopped, and busy_ns does not go on counting
 * the time since as work. */
static void test_stats_stopped(void)
{
    IotThread *t = new_thread("io0", NULL);
    IotCtxStats before, s1, s2;
    int64_t until;

    sync_with(t);
    iot_thread_get_stats(t, &before);
    T_ASSERT_EQ(iot_thread_stop(t, NULL), 0);
    iot_thread_get_stats(t, &s1);
    T_ASSERT(s1.busy_ns >= before.busy_ns);
    T_ASSERT(s1.idle_ns >= before.idle_ns);
    T_ASSERT(s1.iterations >= before.iterations);
    /* Time passes (a wait for the clock itself, nothing to await). */
    until = t_now_ns() + 5000000;
    while (t_now_ns() < until) {
        const struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
    }
    iot_thread_get_stats(t, &s2);
    T_ASSERT_EQ(s2.busy_ns, s1.busy_ns);
    T_ASSERT_EQ(s2.idle_ns, s1.idle_ns);
    T_ASSERT_EQ(s2.iterations, s1.iterations);
    destroy_thread(t);
}

static void test_stats_json(void)
{
    static const char *const members[] = {
        "backend",     "iterations",    "busy-ns",     "idle-ns",
        "poll-hits",   "poll-misses",   "poll-ns",     "poll-window-ns",
        "notify-sent", "notify-elided", "bh-runs",     "fd-events",
        "timer-fires", "pool-threads",  "pool-queued", "pool-active",
    };
    IotThread *t0 = new_thread("io0", NULL), *t1 = new_thread("io1", NULL);
    IotThread *in = iot_thread_new_internal("hidden", NULL, NULL);
    atomic_long runs = 0;
    char *json, *obj, key[64];
    IotCtxStats s;

    T_ASSERT(in != NULL);
    for (int i = 0; i < 50; i++) {
        T_ASSERT_EQ(
            iot_bh_schedule_oneshot(iot_thread_ctx(t0), count_bh, &runs), 0);
    }
    sync_with(t0);
    iot_thread_get_stats(t0, &s);

    json = iot_thread_stats_json(NULL);
    T_ASSERT(json != NULL);
    T_ASSERT(json[0] == '[' && json[strlen(json) - 1] == ']');
    T_ASSERT(strstr(json, "\"id\": \"io0\"") != NULL);
    T_ASSERT(strstr(json, "\"id\": \"io1\"") != NULL);
    T_ASSERT(strstr(json, "hidden") == NULL);
    T_ASSERT(strstr(json, "\"bh-runs\": ") != NULL);
    T_ASSERT_EQ(count_char(json, '{'), 2);
    obj = json_obj(json, "io0");
    T_ASSERT(obj != NULL);
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        snprintf(key, sizeof(key), "\"%s\": ", members[i]);
        if (!strstr(obj, key)) {
            t_fail(__FILE__, __LINE__, "no %s in %s", key, obj);
        }
    }
    T_ASSERT(strstr(obj, "\"cpu-affinity\": \"\"") != NULL);
    T_ASSERT_EQ(json_int_of(obj, "thread-id"), iot_thread_tid(t0));
    T_ASSERT(json_int_of(obj, "bh-runs") >= 50);
    T_ASSERT(json_int_of(obj, "bh-runs") >= (int64_t)s.bh_runs);
    T_ASSERT(json_int_of(obj, "iterations") >= 1);
    snprintf(key, sizeof(key), "\"backend\": \"%s\"", s.backend);
    T_ASSERT(strstr(obj, key) != NULL);
    /* id, thread-id, cpu-affinity and the 16 counters. */
    T_ASSERT_EQ(count_char(obj, ':'), 19);
    free(obj);
    free(json);

    json = iot_thread_stats_json("io1");
    T_ASSERT(strstr(json, "\"id\": \"io1\"") != NULL);
    T_ASSERT(strstr(json, "\"id\": \"io0\"") == NULL);
    T_ASSERT_EQ(count_char(json, '{'), 1);
    free(json);
    json = iot_thread_stats_json("nope");
    T_ASSERT_STR(json, "[]");
    free(json);
    json = iot_thread_stats_json("hidden");
    T_ASSERT_STR(json, "[]");
    free(json);

    destroy_thread(in);
    destroy_thread(t1);
    destroy_thread(t0);
    json = iot_thread_stats_json(NULL);
    T_ASSERT_STR(json, "[]");
    free(json);
}

/* ---- in use ---- */

static void test_in_use(void)
{
    IotThread *t = new_thread("io0", NULL), *f;
    IotError *err = NULL;
    Inside in = { 0 };

    T_ASSERT_EQ(iot_thread_users(t), 0);
    iot_thread_use(t);
    iot_thread_use(t);
    T_ASSERT_EQ(iot_thread_users(t), 2);

    T_ASSERT_EQ(iot_thread_destroy(t, &err), -EBUSY);
    T_ERR_HAS(&err, "in use");
    /* Nothing was done: registered and running. */
    f = iot_thread_find("io0");
    T_ASSERT(f == t);
    iot_thread_unref(f);
    run_on(t, inside_fn, &in);
    T_ASSERT(in.self == t);
    T_ASSERT_TRUE(task_exists(iot_thread_tid(t)));

    iot_thread_unuse(t);
    T_ASSERT_EQ(iot_thread_users(t), 1);
    T_ASSERT_EQ(iot_thread_destroy(t, &err), -EBUSY);
    T_ERR_HAS(&err, "in use");
    T_ASSERT_EQ(iot_thread_destroy(t, NULL), -EBUSY);
    sync_with(t);

    iot_thread_unuse(t);
    T_ASSERT_EQ(iot_thread_users(t), 0);
    destroy_thread(t);
    T_ASSERT(iot_thread_find("io0") == NULL);
}

/* ---- the io_uring ring cache ---- */

/* io_uring for every context of this (forked) case, and an empty cache;
 * the case is skipped if the kernel cannot set up a ring here. */
static void force_io_uring(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };
    IotCtx *c = iot_ctx_new_full(&opts, NULL);

    if (!c) {
        t_skip("io_uring cannot be set up here");
    }
    iot_ctx_unref(c);
    iot__io_uring_cache_flush();
    T_ASSERT_EQ(setenv("IOTHREAD_FDMON", "io_uring", 1), 0);
}

static unsigned long cache_hits(void)
{
    return atomic_load(&iot__io_uring_cache_hits);
}

/* @n events of an eventfd handler on @t's ring, then the handler goes. */
static void ring_exercise(IotThread *t, int n)
{
    FdBox fb = { .ctx = iot_thread_ctx(t) };
    uint64_t one = 1;

    T_ASSERT_STR(iot_ctx_fdmon_name(fb.ctx), "io_uring");
    fb.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    T_ASSERT(fb.fd >= 0);
    waiter_init(&fb.w);
    run_on(t, fd_add_fn, &fb);
    for (int i = 0; i < n; i++) {
        T_ASSERT_EQ(write(fb.fd, &one, sizeof(one)), (ssize_t)sizeof(one));
        waiter_wait(&fb.w, i + 1);
    }
    run_on(t, fd_del_fn, &fb);
    close(fb.fd);
    waiter_destroy(&fb.w);
    T_ASSERT_EQ(atomic_load(&fb.reads), n);
}

/* A destroyed IOThread cancels its ring's requests on its way out, so the
 * next IOThread takes the ring from the cache and works on it: no
 * completion of the old requests reaches it (their user data are freed
 * handlers: ASan would see one).  Closing the cache gives every fd back. */
static void test_ring_reused(void)
{
    unsigned long hits0;
    IotThread *t;
    int fds0;

    force_io_uring();
    fds0 = fd_count();
    hits0 = cache_hits();
    t = new_thread("r0", NULL);
    T_ASSERT_EQ(cache_hits(), hits0);
    ring_exercise(t, 3);
    destroy_thread(t);
    for (unsigned long i = 1; i <= 3; i++) {
        t = new_thread("r1", NULL);
        T_ASSERT_EQ(cache_hits(), hits0 + i);
        ring_exercise(t, 3);
        destroy_thread(t);
    }
    T_ASSERT_EQ(fd_count(), fds0);
}

/* A new io_uring context, whose ring came from the cache or not. */
static IotCtx *uring_ctx(bool from_cache)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };
    unsigned long hits0 = cache_hits();
    IotCtx *ctx = iot_ctx_new_full(&opts, NULL);

    T_ASSERT(ctx != NULL);
    T_ASSERT_EQ(cache_hits(), hits0 + from_cache);
    return ctx;
}

/* Two non-blocking iterations of @ctx (which arm its notifier's poll
 * request), then, if @quiesce, what an IOThread does on its way out. */
static void uring_poll(IotCtx *ctx, bool quiesce)
{
    T_ASSERT_EQ(iot_ctx_set_current(ctx), 0);
    iot_ctx_poll(ctx, false);
    iot_ctx_poll(ctx, false);
    if (quiesce) {
        iot__fdmon_io_uring_quiesce(ctx);
    }
    T_ASSERT_EQ(iot_ctx_set_current(NULL), 0);
}

/* A ring with a request in flight (its context was polled, and nobody
 * cancelled) is closed, not reused; one with nothing in flight is. */
static void test_ring_busy_not_cached(void)
{
    IotCtx *ctx;

    force_io_uring();
    ctx = uring_ctx(false);
    uring_poll(ctx, false);
    iot_ctx_unref(ctx);
    iot_ctx_unref(uring_ctx(false)); /* never polled: nothing in flight */
    iot_ctx_unref(uring_ctx(true));
}

/* A child process never takes a ring its parent cached (the ring would be
 * shared by both), and the parent's cache is left alone. */
static void test_ring_cache_fork(void)
{
    int status;
    pid_t pid;

    force_io_uring();
    iot_ctx_unref(uring_ctx(false)); /* caches its ring */
    pid = fork();
    if (pid == 0) {
        unsigned long hits0 = cache_hits();
        IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };
        IotCtx *ctx = iot_ctx_new_full(&opts, NULL);
        _exit(ctx && cache_hits() == hits0 ? 0 : 1);
    }
    T_ASSERT(pid > 0);
    T_ASSERT_EQ(waitpid(pid, &status, 0), pid);
    T_ASSERT(WIFEXITED(status));
    T_ASSERT_EQ(WEXITSTATUS(status), 0);
    iot_ctx_unref(uring_ctx(true));
}

/* Nor does it keep the ring of a context it inherited live: torn down in
 * the child, that context's ring (the parent's as well) is closed, not
 * cached for the child's next context, which would then share one SQ/CQ
 * with the parent and reap its completions. */
static void test_ring_cache_fork_inherited(void)
{
    IotCtx *live;
    int status;
    pid_t pid;

    force_io_uring();
    live = uring_ctx(false);
    pid = fork();
    if (pid == 0) {
        unsigned long hits0;
        IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };
        IotCtx *ctx;

        iot_ctx_unref(live); /* nothing in flight: would have been cached */
        hits0 = cache_hits();
        ctx = iot_ctx_new_full(&opts, NULL);
        _exit(ctx && cache_hits() == hits0 ? 0 : 1);
    }
    T_ASSERT(pid > 0);
    T_ASSERT_EQ(waitpid(pid, &status, 0), pid);
    T_ASSERT(WIFEXITED(status));
    T_ASSERT_EQ(WEXITSTATUS(status), 0);
    iot_ctx_unref(live);
    iot_ctx_unref(uring_ctx(true)); /* the parent's cache still works */
}

/* Kernels without IORING_FEAT_EXT_ARG get liburing's own timeout requests
 * on the ring, with user data LIBURING_UDATA_TIMEOUT (all ones): their
 * completions are not handlers and not ours to count, so the context
 * polls on, and once quiesced (as an IOThread on its way out) its ring
 * is reused, which it would not be had the completion counted as ours. */
static void test_ring_foreign_cqe(void)
{
    IotCtx *ctx;

    force_io_uring();
    ctx = uring_ctx(false);
    T_ASSERT_EQ(iot__io_uring_nop(ctx, UINT64_MAX), 0);
    uring_poll(ctx, true);
    iot_ctx_unref(ctx);
    iot_ctx_unref(uring_ctx(true));
}

/* fork() while another thread is inside the ring cache: the child's
 * first io_uring context must not wait for a lock that nobody in the child
 * holds.  A churning thread keeps the cache busy; each child makes one
 * context (and is killed by an alarm if it hangs). */
static atomic_bool churn_stop;

static void *ring_churn(void *opaque)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };

    (void)opaque;
    while (!atomic_load(&churn_stop)) {
        iot_ctx_unref(iot_ctx_new_full(&opts, NULL));
    }
    return NULL;
}

static void test_ring_cache_fork_busy(void)
{
    IotCtxOptions opts = { .fdmon = IOT_FDMON_IO_URING };
    int forks = (int)t_scale(200, 20);
    pthread_t tid;

    force_io_uring();
    T_ASSERT_EQ(pthread_create(&tid, NULL, ring_churn, NULL), 0);
    for (int i = 0; i < forks; i++) {
        int status;
        pid_t pid = fork();

        if (pid == 0) {
            alarm(10);
            iot_ctx_unref(iot_ctx_new_full(&opts, NULL));
            _exit(0);
        }
        T_ASSERT(pid > 0);
        T_ASSERT_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            atomic_store(&churn_stop, true);
            pthread_join(tid, NULL);
            t_fail(__FILE__, __LINE__, "fork %d: the child %s", i,
                   WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM
                       ? "hung in its first io_uring context"
                       : "failed");
        }
    }
    atomic_store(&churn_stop, true);
    T_ASSERT_EQ(pthread_join(tid, NULL), 0);
}

int main(int argc, char **argv)
{
    t_add("/iothread/lifecycle/tid-and-name", test_lifecycle_tid_and_name);
    t_add("/iothread/lifecycle/long-id", test_lifecycle_long_id);
    t_add("/iothread/lifecycle/stop-idempotent",
          test_lifecycle_stop_idempotent);
    t_add("/iothread/lifecycle/stop-from-self", test_lifecycle_stop_from_self);
    t_add("/iothread/lifecycle/stop-without-memory",
          test_lifecycle_stop_without_memory);
    t_add("/iothread/lifecycle/stop-while-spilling",
          test_lifecycle_stop_while_spilling);
    t_add("/iothread/lifecycle/stop-runs-earlier-spill",
          test_lifecycle_stop_runs_earlier_spill);
    t_add("/iothread/lifecycle/stop-from-pool-worker",
          test_lifecycle_stop_from_worker);
    t_add("/iothread/lifecycle/destroy-with-refs",
          test_lifecycle_destroy_with_refs);
    t_add("/iothread/lifecycle/stop-runs-earlier-posts",
          test_lifecycle_stop_runs_earlier_posts);
    t_add("/iothread/lifecycle/second-stopper-holds-no-lock",
          test_lifecycle_second_stopper_holds_no_lock);
    t_add("/iothread/lifecycle/destroy-twice", test_lifecycle_destroy_twice);
    t_add_abort("/iothread/lifecycle/last-unref-from-pool-worker",
                test_lifecycle_last_unref_from_worker,
                "dropped on one of its pool workers");
    t_add("/iothread/id-valid", test_id_valid);
    t_add("/iothread/null-names", test_null_names);
    t_add("/iothread/create-failure-leaves-nothing",
          test_create_failure_leaves_nothing);
    t_add("/iothread/create-destroy-1000", test_create_destroy_1000);
    t_add("/iothread/registry/find-and-query", test_registry_find_and_query);
    t_add("/iothread/registry/list", test_registry_list);
    t_add("/iothread/registry/unref-without-destroy",
          test_registry_unref_without_destroy);
    t_add("/iothread/registry/ref-outlives-destroy",
          test_registry_ref_outlives_destroy);
    t_add("/iothread/registry/internal-hidden", test_registry_internal_hidden);
    t_add("/iothread/registry/in-iothread", test_registry_in_iothread);
    t_add("/iothread/registry/duplicate-race", test_registry_duplicate_race);
    t_add("/iothread/registry/query-inside-while-set",
          test_registry_query_inside_while_set);
    t_add("/iothread/registry/stats-inside-while-stop",
          test_registry_stats_inside_while_stop);
    t_add("/iothread/properties-defaults", test_properties_defaults);
    t_add("/iothread/properties-bad-values", test_properties_bad_values);
    t_add("/iothread/properties-bad-values/all-or-nothing",
          test_properties_all_or_nothing);
    t_add("/iothread/properties-bad-values/builder", test_properties_builder);
    t_add("/iothread/properties-runtime/applied",
          test_properties_runtime_applied);
    t_add("/iothread/properties-runtime/from-inside",
          test_properties_runtime_from_inside);
    t_add("/iothread/properties-runtime/param-gen",
          test_properties_runtime_param_gen);
    t_add("/iothread/properties-runtime/get-inside-while-set",
          test_properties_runtime_get_inside_while_set);
    t_add("/iothread/properties-runtime/set-inside-while-set",
          test_properties_runtime_set_inside_while_set);
    t_add("/iothread/properties-runtime/set-while-stopping",
          test_properties_runtime_set_while_stopping);
    t_add("/iothread/cpu-affinity/runtime", test_cpu_affinity_runtime);
    t_add("/iothread/cpu-affinity/at-creation", test_cpu_affinity_at_creation);
    t_add("/iothread/poll-max-ns-storm", test_poll_max_ns_storm);
    t_add("/iothread/stop-while-busy", test_stop_while_busy);
    t_add("/iothread/stop-while-busy/unref-pending",
          test_stop_while_busy_unref_pending);
    t_add("/iothread/io_uring/ring-reused", test_ring_reused);
    t_add("/iothread/io_uring/ring-busy-not-cached", test_ring_busy_not_cached);
    t_add("/iothread/io_uring/ring-cache-fork", test_ring_cache_fork);
    t_add("/iothread/io_uring/ring-cache-fork-inherited",
          test_ring_cache_fork_inherited);
    t_add("/iothread/io_uring/foreign-cqe", test_ring_foreign_cqe);
    t_add("/iothread/io_uring/ring-cache-fork-busy", test_ring_cache_fork_busy);
    t_add("/iothread/stats-move", test_stats_move);
    t_add("/iothread/pool-after-iothread", test_pool_after_iothread);
    t_add("/iothread/stats-move/json", test_stats_json);
    t_add("/iothread/stats-monotonic", test_stats_monotonic);
    t_add("/iothread/stats-stopped", test_stats_stopped);
    t_add("/iothread/cross/set", test_cross_set);
    t_add("/iothread/cross/stop-set", test_cross_stop_set);
    t_add("/iothread/cross/stop-nested-second", test_stop_nested_second);
    t_add("/iothread/cross/stop-each-other", test_stop_each_other);
    t_add("/iothread/cross/stop-cycle-of-three", test_stop_cycle_of_three);
    t_add("/iothread/cross/stop-cycle-through-second-stopper",
          test_stop_cycle_through_second_stopper);
    t_add("/iothread/cross/second-stopper-runs-its-loop",
          test_stop_second_stopper_runs_its_loop);
    t_add("/iothread/in-use", test_in_use);
    return t_run(argc, argv);
}
