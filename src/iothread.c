/* SPDX-License-Identifier: MIT */
/*
 * IOThread objects: lifecycle, properties, registry (sections 1.2-1.9 of
 * the specification).
 *
 * Threads and locks.  No lock the IOThread may need is held while waiting
 * for it (a set on a stopping IOThread holds t->lock while it waits for
 * update_lock, which an apply BH may hold; the IOThread never takes
 * t->lock there), so code running on the IOThread may call anything here
 * except stop and destroy of its own IOThread (refused with an error).
 *  - registry_lock: the list of user-created IOThreads, the "users"
 *    marks and `destroyed`.  Taken before the others.
 *  - stop_waits_lock: which IOThreads wait for the end of which (the
 *    t->stop_waits edges, see iot_thread_stop()).  Taken before t->lock.
 *  - t->lock: the start/stop state.  Held only to read or change it and
 *    to queue a BH; a second stopper waits for the first one's join on a
 *    Wait of its own (t->join_waiters).  A set queued while the thread
 *    runs is queued before the stop BH, and the IOThread runs everything
 *    queued before its stop BH before it ends (thread_main()).
 *  - t->update_lock: one property update at a time, from the copy of the
 *    stored values to the store of the new ones (props_update()).  Taken
 *    after t->lock, before props_lock; nothing waits for the IOThread
 *    while holding it.
 *  - t->props_lock: the stored property values; held only to copy them.
 *  - Property sets on a running IOThread execute in the IOThread (an
 *    apply BH, which the caller waits for: see Wait); on a stopped one
 *    the caller runs them, under t->lock.
 *  - t->running is read and written only by the IOThread itself.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <iothread/bh.h>
#include <iothread/iothread.h>
#include <iothread/pool.h>

#include "ctx-internal.h"
#include "fdmon.h"
#include "postq.h"

#ifdef IOT_HAVE_GLIB
#include <iothread/glib.h>
#endif

/* ---- properties ---- */

enum {
    P_POLL_MAX_NS,
    P_POLL_GROW,
    P_POLL_SHRINK,
    P_AIO_MAX_BATCH,
    P_POOL_MIN,
    P_POOL_MAX,
    P_NINT,
    P_CPU_AFFINITY = P_NINT,
    P_COUNT
};

#define MASK(p) (1u << (p))
#define POLL_MASK                                                              \
    (MASK(P_POLL_MAX_NS) | MASK(P_POLL_GROW) | MASK(P_POLL_SHRINK))
#define POOL_MASK (MASK(P_POOL_MIN) | MASK(P_POOL_MAX))

static const IotPropInfo prop_info[P_COUNT] = {
    [P_POLL_MAX_NS] = { "poll-max-ns", IOT_PROP_INT,
                        "longest busy-poll window in ns, 0 disables polling" },
    [P_POLL_GROW] = { "poll-grow", IOT_PROP_INT,
                      "poll window multiplier when it grows, 0 means 2" },
    [P_POLL_SHRINK] = { "poll-shrink", IOT_PROP_INT,
                        "poll window divisor when it shrinks, 0 resets it" },
    [P_AIO_MAX_BATCH] = { "aio-max-batch", IOT_PROP_INT,
                          "most requests per I/O batch, 0 means the "
                          "engine's default" },
    [P_POOL_MIN] = { "thread-pool-min", IOT_PROP_INT,
                     "pool worker threads kept alive" },
    [P_POOL_MAX] = { "thread-pool-max", IOT_PROP_INT,
                     "most pool worker threads" },
    [P_CPU_AFFINITY] = { "cpu-affinity", IOT_PROP_STR,
                         "CPUs the thread runs on, as a list such as "
                         "\"0-3,6\"; empty means inherited" },
};

static const int64_t prop_default[P_NINT] = {
    [P_POLL_MAX_NS] = IOT_THREAD_POLL_MAX_NS_DEFAULT,
    [P_POOL_MAX] = IOT_POOL_MAX_DEFAULT,
};

struct IotThreadProps {
    int64_t v[P_NINT];
    char *affinity; /* never NULL */
    unsigned mask;  /* the properties set */
};

const IotPropInfo *iot_thread_props_info(size_t *count)
{
    if (count) {
        *count = P_COUNT;
    }
    return prop_info;
}

static int prop_index(const char *name)
{
    for (int i = 0; name && i < P_COUNT; i++) {
        if (!strcmp(prop_info[i].name, name)) {
            return i;
        }
    }
    return -1;
}

static void props_init(IotThreadProps *p)
{
    memcpy(p->v, prop_default, sizeof(p->v));
    p->affinity = NULL;
    p->mask = 0;
}

IotThreadProps *iot_thread_props_new(void)
{
    IotThreadProps *p = malloc(sizeof(*p));

    if (p) {
        props_init(p);
        p->affinity = strdup("");
        if (!p->affinity) {
            free(p);
            return NULL;
        }
    }
    return p;
}

void iot_thread_props_free(IotThreadProps *p)
{
    if (p) {
        free(p->affinity);
        free(p);
    }
}

/* Parses a CPU list ("0-3,6"); "" is the empty set.  0, -EINVAL, or
 * -ERANGE for a well-formed list that names a CPU past what a cpu_set_t
 * holds. */
static int cpulist_parse(const char *s, cpu_set_t *set)
{
    CPU_ZERO(set);
    while (*s) {
        char *end;
        unsigned long lo, hi;

        if (!isdigit((unsigned char)*s)) {
            return -EINVAL;
        }
        lo = hi = strtoul(s, &end, 10);
        if (*end == '-') {
            if (!isdigit((unsigned char)end[1])) {
                return -EINVAL;
            }
            hi = strtoul(end + 1, &end, 10);
        }
        if (lo > hi) {
            return -EINVAL;
        }
        if (hi >= CPU_SETSIZE) {
            return -ERANGE;
        }
        for (unsigned long c = lo; c <= hi; c++) {
            CPU_SET(c, set);
        }
        if (*end == ',' && end[1]) {
            end++;
        } else if (*end) {
            return -EINVAL;
        }
        s = end;
    }
    return 0;
}

static int props_set_int(IotThreadProps *p, int i, int64_t value,
                         IotError **errp)
{
    if (value < 0) {
        iot_error_setg(errp, "%s value must be in range [0, %" PRId64 "]",
                       prop_info[i].name, INT64_MAX);
        return -EINVAL;
    }
    p->v[i] = value;
    p->mask |= MASK(i);
    return 0;
}

static int props_set_affinity(IotThreadProps *p, const char *value,
                              IotError **errp)
{
    cpu_set_t set;
    char *copy;

    if (!value) { /* what QEMU says of a null for a string */
        iot_error_setg(errp,
                       "Invalid parameter type for 'cpu-affinity', expected: "
                       "string");
        return -EINVAL;
    }
    switch (cpulist_parse(value, &set)) {
    case 0:
        break;
    case -ERANGE:
        iot_error_setg(errp, "cpu-affinity: '%s' names a CPU past %d", value,
                       CPU_SETSIZE - 1);
        return -EINVAL;
    default:
        iot_error_setg(errp,
                       "cpu-affinity: '%s' is not a CPU list such as "
                       "'0-3,6'",
                       value);
        return -EINVAL;
    }
    copy = strdup(value);
    if (!copy) {
        iot_error_setg_errno(errp, ENOMEM, "cpu-affinity");
        return -ENOMEM;
    }
    free(p->affinity);
    p->affinity = copy;
    p->mask |= MASK(P_CPU_AFFINITY);
    return 0;
}

static int prop_lookup(const char *name, IotPropType type, IotError **errp)
{
    int i = prop_index(name);

    if (i < 0) {
        iot_error_setg(errp, "Property 'iothread.%s' not found",
                       name ? name : "");
        return -ENOENT;
    }
    if (prop_info[i].type != type) {
        iot_error_setg(
            errp, "Invalid parameter type for '%s', expected: %s", name,
            prop_info[i].type == IOT_PROP_INT ? "integer" : "string");
        return -EINVAL;
    }
    return i;
}

int iot_thread_props_set_int(IotThreadProps *p, const char *name, int64_t value,
                             IotError **errp)
{
    int i = prop_lookup(name, IOT_PROP_INT, errp);

    return i < 0 ? i : props_set_int(p, i, value, errp);
}

int iot_thread_props_set_str(IotThreadProps *p, const char *name,
                             const char *value, IotError **errp)
{
    int i = prop_lookup(name, IOT_PROP_STR, errp);

    return i < 0 ? i : props_set_affinity(p, value, errp);
}

/* The cross-check of section 1.8, on the values as they would be. */
static int props_check(const IotThreadProps *p, IotError **errp)
{
    int64_t min = p->v[P_POOL_MIN], max = p->v[P_POOL_MAX];

    if (min > max || max <= 0 || min > INT_MAX || max > INT_MAX) {
        iot_error_setg(errp, "bad thread-pool-min/thread-pool-max values");
        return -EINVAL;
    }
    return 0;
}

/* @dst takes every property set in @src. */
static int props_merge(IotThreadProps *dst, const IotThreadProps *src)
{
    for (int i = 0; i < P_NINT; i++) {
        if (src->mask & MASK(i)) {
            dst->v[i] = src->v[i];
        }
    }
    if (src->mask & MASK(P_CPU_AFFINITY)) {
        char *copy = strdup(src->affinity);
        if (!copy) {
            return -ENOMEM;
        }
        free(dst->affinity);
        dst->affinity = copy;
    }
    dst->mask |= src->mask;
    return 0;
}

/* ---- the object ---- */

struct IotThread {
    atomic_int refcnt;
    char *id;      /* [const] */
    bool internal; /* [const] */
    IotCtx *ctx;   /* [const] */
    /* [const] thread_stop_bh(), made with the thread: a stop needs no
     * memory, so it cannot fail (nor can the last unref's stop) */
    IotBh *stop_bh;
    pthread_t thread;            /* [const once started] */
    atomic_int tid;              /* [thread publishes] -1 until started */
    pthread_mutex_t lock;        /* see the top of this file */
    pthread_mutex_t update_lock; /* see the top of this file */
    pthread_mutex_t props_lock;  /* props */
    IotThreadProps props;        /* [props_lock] the stored values */
    bool started;                /* [lock] the thread exists (joinable) */
    bool stopping;               /* [lock] stop requested or done */
    bool joined;                 /* [lock] the stopper's join returned */
    /* [lock] an IOThread stopping this one: woken as the thread ends */
    struct Wait *exit_wait;
    /* [lock] the first stopper's thread, from its stop until its join */
    pthread_t stopper;
    /* [lock] that stopper's IOThread, NULL if it is none (StopEdge.via) */
    IotThread *stopper_self;
    /* [lock] second stoppers, woken when `joined` is set (Wait.next) */
    struct Wait *join_waiters;
    /* [stop_waits_lock] the IOThreads whose end this one waits for, in
     * stops made on its thread, innermost first (StopEdge) */
    struct StopEdge *stop_waits;
    bool destroyed;      /* [registry_lock] destroy succeeded */
    bool registered;     /* [registry_lock] */
    unsigned users;      /* [registry_lock] */
    IotThread *reg_next; /* [registry_lock] */
    bool running;        /* [thread] the loop goes on */
    cpu_set_t inherited; /* [thread] affinity at start */
    sem_t init_done;     /* thread start handshake */
    IotError *init_err;  /* [thread, before init_done] */
#ifdef IOT_HAVE_GLIB
    /* Created on demand under lock, then [const]; published to the thread
     * by the release store of run_gcontext. */
    GMainContext *gctx;
    GMainLoop *gloop;
    GSource *gsource;
    atomic_bool run_gcontext;
#endif
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static IotThread *registry;
static IOT_TLS IotThread *tls_self;

/* ---- the thread ---- */

/* IOThread.  Applies @list ("" = the inherited set) to the calling thread. */
static int affinity_apply(IotThread *t, const char *list, IotError **errp)
{
    cpu_set_t set;
    int ret;

    if (!*list) {
        set = t->inherited;
    } else if (cpulist_parse(list, &set) < 0) {
        iot_error_setg(errp, "cpu-affinity: '%s' is not a CPU list", list);
        return -EINVAL;
    }
    ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (ret) {
        iot_error_setg_errno(errp, ret, "cpu-affinity: cannot run on '%s'",
                             list);
        return -ret;
    }
    return 0;
}

static void thread_set_name(const char *id)
{
    char name[IOT_THREAD_NAME_MAX + 1];

    snprintf(name, sizeof(name), "IO %s", id);
    pthread_setname_np(pthread_self(), name);
}

static void wait_wake(struct Wait *w);

/* IOThread, its last act: wakes an IOThread that waits to join it. */
static void thread_exit_wake(IotThread *t)
{
    struct Wait *w;

    pthread_mutex_lock(&t->lock);
    w = t->exit_wait;
    t->exit_wait = NULL;
    pthread_mutex_unlock(&t->lock);
    if (w) {
        wait_wake(w);
    }
}

static void *thread_main(void *opaque)
{
    IotThread *t = opaque;

    tls_self = t;
    thread_set_name(t->id);
    /* Timers fire when due, not up to 50 us later (the default slack);
     * QEMU sets 1 ns for the whole process. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    iot_ctx_set_current(t->ctx);
    sched_getaffinity(0, sizeof(t->inherited), &t->inherited);
    /* t->props is stable here: the creator holds it until we post. */
    if (*t->props.affinity &&
        affinity_apply(t, t->props.affinity, &t->init_err) < 0) {
        sem_post(&t->init_done);
        goto out;
    }
    t->running = true;
    atomic_store_explicit(&t->tid, (int)gettid(), memory_order_release);
    sem_post(&t->init_done);

    while (t->running) {
        iot_ctx_poll(t->ctx, true);
#ifdef IOT_HAVE_GLIB
        /* Acquire pairs with the release in iot_thread_get_gmain_context().
         * Once asked for, the GLib loop drives the context until stop. */
        if (t->running &&
            atomic_load_explicit(&t->run_gcontext, memory_order_acquire)) {
            g_main_context_push_thread_default(t->gctx);
            g_main_loop_run(t->gloop);
            g_main_context_pop_thread_default(t->gctx);
        }
#endif
    }
    /* A pass can run the stop BH before a BH another thread scheduled
     * earlier (postq.h): run those too, as QEMU's single BH list would,
     * so that nothing queued before the stop (a property set whose caller
     * waits, a one-shot) is lost.  Later posts need not run; what keeps
     * coming after the mark cannot hold the thread up. */
    while (iot__postq_marked_pending(t->ctx)) {
        iot_ctx_poll(t->ctx, false);
    }
    /* The ring's requests were made by this thread: it cancels them best
     * (fdmon-io_uring.c), so that the ring can be reused. */
    iot__fdmon_io_uring_quiesce(t->ctx);
    /* A pool size set from now on is stored only (nobody runs the spawn
     * BH), and workers asked for but never started stop counting. */
    iot__pool_loop_ended(t->ctx);
    /* A stopped IOThread is neither busy nor idle: its counters stay as
     * they were, for whoever reads them before the destroy. */
    iot__stats_end(t->ctx);
out:
    iot_ctx_set_current(NULL);
    tls_self = NULL;
    thread_exit_wake(t);
    return NULL;
}

/* IOThread: the BH of iot_thread_stop(), scheduled once. */
static void thread_stop_bh(void *opaque)
{
    IotThread *t = opaque;

    t->running = false;
    iot__postq_mark(t->ctx);
#ifdef IOT_HAVE_GLIB
    if (atomic_load_explicit(&t->run_gcontext, memory_order_acquire)) {
        g_main_loop_quit(t->gloop);
    }
#endif
}

/* ---- creation ---- */

static bool id_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* ASCII only, whatever the locale, as QEMU's id_wellformed(). */
bool iot_thread_id_valid(const char *id)
{
    if (!id || !id_letter(id[0])) {
        return false;
    }
    for (const char *c = id; *c; c++) {
        if (!id_letter(*c) && !(*c >= '0' && *c <= '9') && !strchr("-._", *c)) {
            return false;
        }
    }
    return true;
}

/* registry_lock held. */
static IotThread *registry_find_locked(const char *id)
{
    for (IotThread *t = registry; t; t = t->reg_next) {
        if (!strcmp(t->id, id)) {
            return t;
        }
    }
    return NULL;
}

static void duplicate_error(const char *id, IotError **errp)
{
    iot_error_setg(errp,
                   "attempt to add duplicate property '%s' to object "
                   "(type 'container')",
                   id);
}

/* Frees an IOThread whose thread is not running. */
static void thread_free(IotThread *t)
{
#ifdef IOT_HAVE_GLIB
    if (t->gctx) {
        /* The source holds a context reference: destroy it first. */
        g_source_destroy(t->gsource);
        g_source_unref(t->gsource);
        g_main_loop_unref(t->gloop);
        g_main_context_unref(t->gctx);
    }
#endif
    if (t->stop_bh) {
        iot_bh_delete(t->stop_bh); /* freed by the context's finalize */
    }
    if (t->ctx) {
        iot_ctx_unref(t->ctx);
    }
    free(t->props.affinity);
    free(t->id);
    sem_destroy(&t->init_done);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->update_lock);
    pthread_mutex_destroy(&t->props_lock);
    iot_error_free(t->init_err);
    free(t);
}

/* Applies the stored properties to the new context (section 1.2 step 5:
 * poll parameters, then aio-max-batch, then the pool). */
static int ctx_apply_props(IotCtx *ctx, const IotThreadProps *p, unsigned mask,
                           IotError **errp)
{
    if (mask & POLL_MASK) {
        iot_ctx_set_poll_params(ctx, p->v[P_POLL_MAX_NS], p->v[P_POLL_GROW],
                                p->v[P_POLL_SHRINK]);
    }
    if (mask & MASK(P_AIO_MAX_BATCH)) {
        iot_ctx_set_max_batch(ctx, p->v[P_AIO_MAX_BATCH]);
    }
    if ((mask & POOL_MASK) &&
        iot_ctx_set_pool_size(ctx, p->v[P_POOL_MIN], p->v[P_POOL_MAX]) < 0) {
        iot_error_setg(errp, "bad thread-pool-min/thread-pool-max values");
        return -EINVAL;
    }
    return 0;
}

static IotThread *thread_new(const char *id, const IotThreadProps *props,
                             bool internal, IotError **errp)
{
    IotThread *t;
    int ret;

    if (!iot_thread_id_valid(id)) {
        iot_error_setg(errp, "Parameter 'id' expects an identifier");
        return NULL;
    }
    if (!internal) {
        pthread_mutex_lock(&registry_lock);
        ret = registry_find_locked(id) != NULL;
        pthread_mutex_unlock(&registry_lock);
        if (ret) {
            duplicate_error(id, errp);
            return NULL;
        }
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        iot_error_setg_errno(errp, ENOMEM, "IOThread '%s'", id);
        return NULL;
    }
    atomic_init(&t->refcnt, 1);
    atomic_init(&t->tid, -1);
    t->internal = internal;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->update_lock, NULL);
    pthread_mutex_init(&t->props_lock, NULL);
    sem_init(&t->init_done, 0, 0);
    props_init(&t->props);
    t->id = strdup(id);
    t->props.affinity = strdup("");
    if (!t->id || !t->props.affinity ||
        (props && props_merge(&t->props, props) < 0)) {
        iot_error_setg_errno(errp, ENOMEM, "IOThread '%s'", id);
        goto fail;
    }
    if (props_check(&t->props, errp) < 0) {
        goto fail;
    }
    t->ctx = iot_ctx_new(errp);
    if (!t->ctx || ctx_apply_props(t->ctx, &t->props, ~0u, errp) < 0) {
        goto fail;
    }
    t->stop_bh = iot_bh_new(t->ctx, thread_stop_bh, t);
    if (!t->stop_bh) {
        iot_error_setg_errno(errp, ENOMEM, "IOThread '%s'", id);
        goto fail;
    }
    ret = pthread_create(&t->thread, NULL, thread_main, t);
    if (ret) {
        iot_error_setg_errno(errp, ret, "Failed to create IOThread '%s'", id);
        goto fail;
    }
    t->started = true;
    while (sem_wait(&t->init_done) < 0 && errno == EINTR) {
    }
    if (t->init_err) {
        pthread_join(t->thread, NULL);
        iot_error_propagate(errp, t->init_err);
        t->init_err = NULL;
        goto fail;
    }
    if (!internal) {
        pthread_mutex_lock(&registry_lock);
        if (registry_find_locked(id)) {
            /* Lost a race with a creator of the same id. */
            pthread_mutex_unlock(&registry_lock);
            duplicate_error(id, errp);
            iot_thread_stop(t, NULL);
            goto fail;
        }
        t->registered = true;
        t->reg_next = registry;
        registry = t;
        pthread_mutex_unlock(&registry_lock);
    }
    return t;

fail:
    thread_free(t);
    return NULL;
}

IotThread *iot_thread_new(const char *id, const IotThreadProps *props,
                          IotError **errp)
{
    return thread_new(id, props, false, errp);
}

IotThread *iot_thread_new_internal(const char *id, const IotThreadProps *props,
                                   IotError **errp)
{
    return thread_new(id, props, true, errp);
}

/* ---- waiting for another IOThread ---- */

/*
 * A wait for something another IOThread does: an apply BH, or its end.
 * On an IOThread the wait runs the caller's own loop, nested (as QEMU's
 * AIO_WAIT_WHILE() does), so that what the other one may be waiting for
 * from us meanwhile still runs: two IOThreads that set each other's
 * properties, or one that sets another's while that one stops it, both
 * finish.  Two that stop each other would wait for ever, as two threads
 * that join each other do: the second stop is refused (StopEdge).  On
 * any other thread it is a plain wait on a condition variable.
 */
typedef struct Wait {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* [lock] signalled when `done` is set */
    /* [waker] with home: release, the waiter acquires; else under lock */
    atomic_bool done;
    IotCtx *home;      /* [const] the waiting IOThread's, a reference */
    struct Wait *next; /* [t->lock] on a stopped IOThread's join_waiters */
} Wait;

/* The waiting thread, before it lets the waker see @w. */
static void wait_init(Wait *w)
{
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    atomic_init(&w->done, false);
    w->home = tls_self ? tls_self->ctx : NULL;
    if (w->home) {
        iot_ctx_ref(w->home);
    }
}

static void wait_destroy(Wait *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

/* The waiting thread, when no waker will come. */
static void wait_cancel(Wait *w)
{
    if (w->home) {
        iot_ctx_unref(w->home);
    }
    wait_destroy(w);
}

/* The waker, once.  @w may be gone as soon as `done` is set, so a nested
 * waiter is woken through a copy of `home`, whose reference keeps the
 * context alive; a plain one reads `done` under the lock, which the
 * waker holds until it is done with @w. */
static void wait_wake(Wait *w)
{
    IotCtx *home = w->home;

    if (home) {
        atomic_store_explicit(&w->done, true, memory_order_release);
        iot_ctx_notify(home); /* ends the waiter's blocking poll */
        iot_ctx_unref(home);
        return;
    }
    pthread_mutex_lock(&w->lock);
    atomic_store_explicit(&w->done, true, memory_order_relaxed);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* The waiting thread: returns once wait_wake() has set `done`, whose
 * release the acquire here pairs with (what the waker wrote before is
 * visible), and destroys @w. */
static void wait_for(Wait *w)
{
    if (w->home) {
        while (!atomic_load_explicit(&w->done, memory_order_acquire)) {
            iot_ctx_poll(w->home, true);
        }
    } else {
        pthread_mutex_lock(&w->lock);
        while (!atomic_load_explicit(&w->done, memory_order_relaxed)) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        pthread_mutex_unlock(&w->lock);
    }
    wait_destroy(w);
}

/* ---- stop and destroy ---- */

/*
 * A stop made on an IOThread waits for the other one's end by running its
 * own loop, nested; its thread cannot end before that wait does.  So if
 * A waits in a stop of B while B (or C, which B waits for) stops A, no
 * thread of the cycle can ever end: iot_thread_stop() refuses the wait
 * that would close it.  Each wait is an edge from the stopping IOThread to
 * the stopped one, on the stopper's stack for the length of its wait;
 * the graph never has a cycle, so a walk of it ends.
 */
typedef struct StopEdge {
    IotThread *target; /* [const] */
    /* [const] a second stopper's: the first stopper, if an IOThread (a
     * reference), whose join, which ends this wait, comes only once its
     * own nested waits have ended */
    IotThread *via;
    struct StopEdge *next; /* [stop_waits_lock] the waiter's outer waits */
} StopEdge;

static pthread_mutex_t stop_waits_lock = PTHREAD_MUTEX_INITIALIZER;

/* [stop_waits_lock] Is @from @to, or does it wait, directly or through
 * the IOThreads it waits for, for the end of @to? */
static bool stop_waits_reach(IotThread *from, IotThread *to)
{
    if (from == to) {
        return true;
    }
    for (StopEdge *e = from->stop_waits; e; e = e->next) {
        if (stop_waits_reach(e->target, to) ||
            (e->via && stop_waits_reach(e->via, to))) {
            return true;
        }
    }
    return false;
}

/* The stopping IOThread, once its wait for @e's target is over. */
static void stop_waits_pop(IotThread *self, StopEdge *e)
{
    pthread_mutex_lock(&stop_waits_lock);
    self->stop_waits = e->next; /* waits nest: @e is the innermost */
    pthread_mutex_unlock(&stop_waits_lock);
    iot_thread_unref(e->via);
}

static int not_from_self(IotThread *t, const char *what, IotError **errp)
{
    if (tls_self == t) {
        iot_error_setg(errp, "cannot %s IOThread '%s' from its own thread",
                       what, t->id);
        return -EDEADLK;
    }
    if (iot__pool_is_worker_of(t->ctx)) {
        iot_error_setg(errp,
                       "cannot %s IOThread '%s' from one of its pool "
                       "workers",
                       what, t->id);
        return -EDEADLK;
    }
    return 0;
}

/* The first stopper, its join done: wakes the second ones. */
static void stop_joined(IotThread *t)
{
    Wait *w, *next;

    pthread_mutex_lock(&t->lock);
    t->joined = true;
    w = t->join_waiters;
    t->join_waiters = NULL;
    pthread_mutex_unlock(&t->lock);
    for (; w; w = next) {
        next = w->next; /* @w may be gone once woken */
        wait_wake(w);
    }
}

int iot_thread_stop(IotThread *t, IotError **errp)
{
    int ret = not_from_self(t, "stop", errp);
    bool first = false, second = false;
    IotThread *self = tls_self;
    StopEdge edge = { t, NULL, NULL };
    Wait w;

    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&stop_waits_lock);
    pthread_mutex_lock(&t->lock);
    if (t->started && !t->stopping) {
        first = true;
    } else if (t->started && t->stopping && !t->joined) {
        if (pthread_equal(t->stopper, pthread_self())) {
            /* Called inside the first stop's nested wait: that stop joins
             * only once this call has returned. */
            pthread_mutex_unlock(&t->lock);
            pthread_mutex_unlock(&stop_waits_lock);
            iot_error_setg(errp,
                           "cannot stop IOThread '%s' while this thread is "
                           "stopping it",
                           t->id);
            return -EDEADLK;
        }
        second = true;
    }
    if ((first || second) && self) {
        /* A second stopper waits for the first one's join too. */
        IotThread *via = second ? t->stopper_self : NULL;

        if (stop_waits_reach(t, self) || (via && stop_waits_reach(via, self))) {
            pthread_mutex_unlock(&t->lock);
            pthread_mutex_unlock(&stop_waits_lock);
            iot_error_setg(errp,
                           "cannot stop IOThread '%s' from IOThread '%s', "
                           "which it waits for: neither could end",
                           t->id, self->id);
            return -EDEADLK;
        }
        if (via) {
            iot_thread_ref(via); /* it may end before we pop @edge */
            edge.via = via;
        }
        edge.next = self->stop_waits;
        self->stop_waits = &edge;
    }
    if (first) {
        iot_bh_schedule(t->stop_bh); /* cannot fail: see bh.h */
        t->stopping = true;
        t->stopper = pthread_self();
        t->stopper_self = self;
        if (self) {
            /* Another IOThread: it runs its loop until the end, and
             * joins a thread that has nothing left to do. */
            wait_init(&w);
            t->exit_wait = &w;
        }
    } else if (second) {
        /* Another stopper joins: return once it has.  On an IOThread the
         * wait runs that thread's loop, as the first stopper's does. */
        wait_init(&w);
        w.next = t->join_waiters;
        t->join_waiters = &w;
    }
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_unlock(&stop_waits_lock);
    if (second) {
        wait_for(&w);
    } else if (first) {
        if (self) {
            wait_for(&w);
        }
        pthread_join(t->thread, NULL);
        stop_joined(t);
    }
    if ((first || second) && self) {
        stop_waits_pop(self, &edge);
    }
    return 0;
}

/* registry_lock held.  @t leaves the registry, if it is there. */
static void registry_unlink_locked(IotThread *t)
{
    IotThread **link = &registry;

    if (!t->registered) {
        return;
    }
    while (*link != t) {
        link = &(*link)->reg_next;
    }
    *link = t->reg_next;
    t->registered = false;
}

int iot_thread_destroy(IotThread *t, IotError **errp)
{
    int ret = not_from_self(t, "destroy", errp);
    bool was_registered;

    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&registry_lock);
    if (t->destroyed) {
        /* The creator's reference is gone already: not twice. */
        pthread_mutex_unlock(&registry_lock);
        iot_error_setg(errp, "IOThread '%s' is already destroyed", t->id);
        return -ENOENT;
    }
    if (t->users) {
        pthread_mutex_unlock(&registry_lock);
        iot_error_setg(errp, "IOThread '%s' is in use and cannot be deleted",
                       t->id);
        return -EBUSY;
    }
    t->destroyed = true;
    was_registered = t->registered;
    registry_unlink_locked(t);
    pthread_mutex_unlock(&registry_lock);
    ret = iot_thread_stop(t, errp);
    if (ret == 0) {
        iot_thread_unref(t);
    } else {
        /* Not destroyed after all (the stop BH could not be queued, or
         * this thread is inside its own stop of @t): as it was, so that a
         * retry can finish the job and the id still finds it, unless
         * another IOThread has taken the id meanwhile. */
        pthread_mutex_lock(&registry_lock);
        t->destroyed = false;
        if (was_registered && !registry_find_locked(t->id)) {
            t->reg_next = registry;
            registry = t;
            t->registered = true;
        }
        pthread_mutex_unlock(&registry_lock);
    }
    return ret;
}

void iot_thread_ref(IotThread *t)
{
    atomic_fetch_add_explicit(&t->refcnt, 1, memory_order_relaxed);
}

void iot_thread_unref(IotThread *t)
{
    IotError *err = NULL;
    int n;

    if (!t) {
        return;
    }
    /* Not the last reference: no lock.  acq_rel, as the last one's. */
    n = atomic_load_explicit(&t->refcnt, memory_order_relaxed);
    while (n > 1) {
        if (atomic_compare_exchange_weak_explicit(&t->refcnt, &n, n - 1,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            return;
        }
    }
    /* Perhaps the last: under registry_lock, under which iot_thread_find()
     * adds one, so that nobody finds it once it has none.  A registered
     * IOThread whose creator drops it without iot_thread_destroy() leaves
     * the registry here, as a destroy would take it out: the registry
     * holds no reference, and its walks must not meet freed memory. */
    pthread_mutex_lock(&registry_lock);
    if (atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel) != 1) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    registry_unlink_locked(t);
    pthread_mutex_unlock(&registry_lock);
    /* Neither can stop it (the join would never end), and the object
     * cannot go while its thread runs. */
    if (tls_self == t || iot__pool_is_worker_of(t->ctx)) {
        fprintf(stderr,
                "%s: the last reference to IOThread '%s' dropped on "
                "%s, aborting...\n",
                __func__, t->id,
                tls_self == t ? "its own thread" : "one of its pool workers");
        abort();
    }
    if (iot_thread_stop(t, &err) < 0) {
        /* This thread is inside its own stop of @t, or @t waits for its
         * end (-EDEADLK): whoever called that still uses @t, or @t can
         * never end. */
        fprintf(stderr,
                "%s: the last reference to IOThread '%s' dropped where it "
                "cannot be stopped (%s), aborting...\n",
                __func__, t->id, iot_error_message(err));
        abort();
    }
    thread_free(t);
}

void iot_thread_use(IotThread *t)
{
    pthread_mutex_lock(&registry_lock);
    t->users++;
    pthread_mutex_unlock(&registry_lock);
}

void iot_thread_unuse(IotThread *t)
{
    pthread_mutex_lock(&registry_lock);
    if (t->users) {
        t->users--;
    }
    pthread_mutex_unlock(&registry_lock);
}

unsigned iot_thread_users(IotThread *t)
{
    unsigned n;

    pthread_mutex_lock(&registry_lock);
    n = t->users;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

/* ---- lookup and queries ---- */

IotThread *iot_thread_find(const char *id)
{
    IotThread *t;

    if (!id) {
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    t = registry_find_locked(id);
    if (t) {
        iot_thread_ref(t);
    }
    pthread_mutex_unlock(&registry_lock);
    return t;
}

const char *iot_thread_id(const IotThread *t)
{
    return t->id;
}

pid_t iot_thread_tid(const IotThread *t)
{
    return atomic_load_explicit(&((IotThread *)t)->tid, memory_order_acquire);
}

IotCtx *iot_thread_ctx(const IotThread *t)
{
    return t->ctx;
}

bool iot_thread_is_internal(const IotThread *t)
{
    return t->internal;
}

bool iot_in_iothread(void)
{
    return tls_self != NULL;
}

IotThread *iot_thread_self(void)
{
    return tls_self;
}

/* Writes one IOThread as an IOThreadInfo object. */
static void info_write(FILE *f, IotThread *t)
{
    IotThreadProps *p = &t->props;
    pthread_mutex_lock(&t->props_lock);
    /* Ids are identifiers: nothing in them needs escaping. */
    fprintf(f,
            "{\"id\": \"%s\", \"thread-id\": %d, \"poll-max-ns\": %" PRId64
            ", \"poll-grow\": %" PRId64 ", \"poll-shrink\": %" PRId64
            ", \"aio-max-batch\": %" PRId64 "}",
            t->id, iot_thread_tid(t), p->v[P_POLL_MAX_NS], p->v[P_POLL_GROW],
            p->v[P_POLL_SHRINK], p->v[P_AIO_MAX_BATCH]);
    pthread_mutex_unlock(&t->props_lock);
}

/* The registered IOThreads (or only @id) as a JSON array of @write's
 * objects; NULL on ENOMEM.  Free with free(). */
static char *registry_json(const char *id, void (*write)(FILE *, IotThread *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const char *sep = "";

    if (!f) {
        return NULL;
    }
    fputc('[', f);
    pthread_mutex_lock(&registry_lock);
    for (IotThread *t = registry; t; t = t->reg_next) {
        if (id && strcmp(id, t->id)) {
            continue;
        }
        fputs(sep, f);
        write(f, t);
        sep = ", ";
    }
    pthread_mutex_unlock(&registry_lock);
    fputc(']', f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

size_t iot_thread_list(IotThread **out, size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&registry_lock);
    for (IotThread *t = registry; t; t = t->reg_next, n++) {
        if (n < max) {
            iot_thread_ref(t);
            out[n] = t;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return n;
}

char *iot_thread_query_json(void)
{
    return registry_json(NULL, info_write);
}

void iot_thread_get_stats(IotThread *t, IotCtxStats *stats)
{
    iot_ctx_get_stats(t->ctx, stats);
}

static void stats_write(FILE *f, IotThread *t)
{
    IotCtxStats s;
    char *affinity;

    iot_ctx_get_stats(t->ctx, &s);
    pthread_mutex_lock(&t->props_lock);
    affinity = strdup(t->props.affinity);
    pthread_mutex_unlock(&t->props_lock);
    /* Ids and CPU lists are validated: nothing in them needs escaping. */
    fprintf(f,
            "{\"id\": \"%s\", \"thread-id\": %d, \"cpu-affinity\": \"%s\", "
            "\"backend\": \"%s\", \"iterations\": %" PRIu64
            ", \"busy-ns\": %" PRIu64 ", \"idle-ns\": %" PRIu64
            ", \"poll-hits\": %" PRIu64 ", \"poll-misses\": %" PRIu64
            ", \"poll-ns\": %" PRIu64 ", \"poll-window-ns\": %" PRId64
            ", \"notify-sent\": %" PRIu64 ", \"notify-elided\": %" PRIu64
            ", \"bh-runs\": %" PRIu64 ", \"fd-events\": %" PRIu64
            ", \"timer-fires\": %" PRIu64 ", \"pool-threads\": %u"
            ", \"pool-queued\": %u, \"pool-active\": %u}",
            t->id, iot_thread_tid(t), affinity ? affinity : "", s.backend,
            s.iterations, s.busy_ns, s.idle_ns, s.poll_hits, s.poll_misses,
            s.poll_ns, s.poll_window_ns, s.notify_sent, s.notify_elided,
            s.bh_runs, s.fd_events, s.timer_fires, s.pool_threads,
            s.pool_queued, s.pool_active);
    free(affinity);
}

char *iot_thread_stats_json(const char *id)
{
    return registry_json(id, stats_write);
}

/* ---- properties at run time ---- */

int iot_thread_get_int(IotThread *t, const char *name, int64_t *value,
                       IotError **errp)
{
    int i = prop_lookup(name, IOT_PROP_INT, errp);

    if (i < 0) {
        return i;
    }
    pthread_mutex_lock(&t->props_lock);
    *value = t->props.v[i];
    pthread_mutex_unlock(&t->props_lock);
    return 0;
}

char *iot_thread_get_str(IotThread *t, const char *name, IotError **errp)
{
    int i = prop_index(name);
    char *s = NULL;

    if (i < 0) {
        iot_error_setg(errp, "Property 'iothread.%s' not found",
                       name ? name : "");
        return NULL;
    }
    pthread_mutex_lock(&t->props_lock);
    if (prop_info[i].type == IOT_PROP_STR) {
        s = strdup(t->props.affinity);
    } else if (asprintf(&s, "%" PRId64, t->props.v[i]) < 0) {
        s = NULL;
    }
    pthread_mutex_unlock(&t->props_lock);
    if (!s) {
        iot_error_setg_errno(errp, ENOMEM, "Property 'iothread.%s'", name);
    }
    return s;
}

void (*iot__thread_update_hook)(void);

/* Validates @changes against the stored values, applies them and stores
 * the result, all or nothing.  Runs in the IOThread (@on_thread), or on a
 * stopped IOThread's caller under t->lock; update_lock makes the two one
 * at a time (an apply BH may still run while a stop is pending).
 * Affinity is applied first: it is the only step that can fail. */
static int props_update(IotThread *t, const IotThreadProps *changes,
                        bool on_thread, IotError **errp)
{
    IotThreadProps next;
    int ret;

    pthread_mutex_lock(&t->update_lock);
    pthread_mutex_lock(&t->props_lock);
    next = t->props;
    next.affinity = strdup(t->props.affinity);
    pthread_mutex_unlock(&t->props_lock);
    if (iot__thread_update_hook) {
        iot__thread_update_hook();
    }
    if (!next.affinity || props_merge(&next, changes) < 0) {
        pthread_mutex_unlock(&t->update_lock);
        free(next.affinity);
        iot_error_setg_errno(errp, ENOMEM, "IOThread '%s'", t->id);
        return -ENOMEM;
    }
    ret = props_check(&next, errp);
    if (ret == 0 && (changes->mask & MASK(P_CPU_AFFINITY)) && on_thread) {
        ret = affinity_apply(t, next.affinity, errp);
    }
    if (ret == 0) {
        ret = ctx_apply_props(t->ctx, &next, changes->mask, errp);
    }
    if (ret == 0) {
        pthread_mutex_lock(&t->props_lock);
        free(t->props.affinity);
        t->props = next;
        pthread_mutex_unlock(&t->props_lock);
    } else {
        free(next.affinity);
    }
    pthread_mutex_unlock(&t->update_lock);
    return ret;
}

/* A property change on its way to the IOThread. */
typedef struct Apply {
    IotThread *t;
    const IotThreadProps *changes;
    IotError *err; /* [apply_bh, then the caller after the wait] */
    int ret;       /* [apply_bh, then the caller after the wait] */
    Wait wait;
} Apply;

static void apply_bh(void *opaque)
{
    Apply *a = opaque;

    a->ret = props_update(a->t, a->changes, true, &a->err);
    wait_wake(&a->wait);
}

int iot_thread_set_props(IotThread *t, const IotThreadProps *changes,
                         IotError **errp)
{
    Apply a = { .t = t, .changes = changes };
    int ret;

    if (!changes) {
        return 0; /* nothing to change */
    }
    if (tls_self == t) {
        return props_update(t, changes, true, errp);
    }
    pthread_mutex_lock(&t->lock);
    if (!t->started || t->stopping) {
        /* Nobody runs the loop: apply here, serialised by t->lock. */
        ret = props_update(t, changes, false, errp);
        pthread_mutex_unlock(&t->lock);
        return ret;
    }
    wait_init(&a.wait);
    ret = iot_bh_schedule_oneshot(t->ctx, apply_bh, &a);
    pthread_mutex_unlock(&t->lock);
    if (ret < 0) {
        wait_cancel(&a.wait);
        iot_error_setg_errno(errp, -ret, "IOThread '%s'", t->id);
        return ret;
    }
    wait_for(&a.wait);
    iot_error_propagate(errp, a.err);
    return a.ret;
}

int iot_thread_set_int(IotThread *t, const char *name, int64_t value,
                       IotError **errp)
{
    IotThreadProps change;
    int ret;

    props_init(&change);
    ret = iot_thread_props_set_int(&change, name, value, errp);
    if (ret == 0) {
        ret = iot_thread_set_props(t, &change, errp);
    }
    return ret;
}

int iot_thread_set_str(IotThread *t, const char *name, const char *value,
                       IotError **errp)
{
    IotThreadProps change;
    int ret;

    props_init(&change);
    ret = iot_thread_props_set_str(&change, name, value, errp);
    if (ret == 0) {
        ret = iot_thread_set_props(t, &change, errp);
    }
    free(change.affinity);
    return ret;
}

#ifdef IOT_HAVE_GLIB
GMainContext *iot_thread_get_gmain_context(IotThread *t)
{
    pthread_mutex_lock(&t->lock);
    if (!t->gctx) {
        char name[64];

        t->gctx = g_main_context_new();
        t->gloop = g_main_loop_new(t->gctx, FALSE);
        t->gsource = iot_ctx_new_gsource(t->ctx);
        if (!t->gsource) {
            g_main_loop_unref(t->gloop);
            g_main_context_unref(t->gctx);
            t->gctx = NULL;
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        snprintf(name, sizeof(name), "IO %s aio-context", t->id);
        g_source_set_name(t->gsource, name);
        g_source_attach(t->gsource, t->gctx);
        /* Release pairs with the acquire loads in thread_main() and
         * thread_stop_bh(): they see gctx and gloop. */
        atomic_store_explicit(&t->run_gcontext, true, memory_order_release);
        iot_ctx_notify(t->ctx);
    }
    pthread_mutex_unlock(&t->lock);
    return t->gctx;
}
#endif
