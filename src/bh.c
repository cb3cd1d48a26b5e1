/* SPDX-License-Identifier: MIT */
/*
 * Bottom halves (section 2.2 of the specification).
 *
 * Producers push a BH onto ctx->bh_list (a lock-free LIFO) the first time
 * it is scheduled, marked by the PENDING flag; scheduling a pending BH only
 * ORs in flags.  The loop takes the whole list with one exchange, reverses
 * it (FIFO within the batch) and queues it as a "slice".  A nested
 * iot_ctx_poll() works through every queued slice, oldest first, so it runs
 * its parents' pending BHs too.
 *
 *                      push (CAS)   take (xchg)   dequeue   free
 * any thread           yes          no            no        no
 * home thread          yes          yes           yes       yes
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctx-internal.h"

enum {
    BH_PENDING = 1 << 0,   /* linked into bh_list or a slice */
    BH_SCHEDULED = 1 << 1, /* the callback should run */
    BH_DELETED = 1 << 2,   /* free without calling */
    BH_ONESHOT = 1 << 3,   /* free after calling */
    BH_IDLE = 1 << 4,      /* scheduled as idle: no wake-up, no progress */
};

struct IotBh {
    IotCtx *ctx;      /* [const] */
    IotBhFunc *cb;    /* [const] */
    void *opaque;     /* [const] */
    const char *name; /* [const] */
    /* The link in bh_list or a slice.  Written only by the thread whose
     * fetch_or set PENDING, read by the home thread after it has taken the
     * list; the PENDING handover (acq_rel on flags) orders the two. */
    IotBh *next;
    atomic_uint flags;          /* [any] BH_* */
    IotBh *all_prev, *all_next; /* [bh_all_lock] leak tracking */
};

struct IotBhSlice {
    IotBh *head;      /* [home] BHs still to run, FIFO */
    IotBhSlice *next; /* [home] the next younger slice */
};

void iot__bh_ctx_init(IotCtx *ctx)
{
    pthread_mutex_init(&ctx->bh_all_lock, NULL);
}

/*
 * One-shot BHs are recycled instead of going through malloc and a free on
 * another thread (the loop).  The loop pushes each one it has run onto its
 * context's "returned" stack (CAS push, at most ONESHOT_KEEP of them); a
 * producer whose thread cache is empty takes that whole stack with one
 * exchange, so there is no ABA and no lock.  The thread cache is freed when
 * the thread exits, the returned stack when the context is finalized.
 *
 *                   returned stack    thread cache
 * home thread       push              -
 * producers         take all          own only
 */
#define ONESHOT_KEEP 16384

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static __thread IotBh *cache_head;

static void bh_list_free(IotBh *bh)
{
    while (bh) {
        IotBh *next = bh->next;
        free(bh);
        bh = next;
    }
}

static void cache_destroy(void *unused)
{
    (void)unused;
    bh_list_free(cache_head);
    cache_head = NULL;
}

static void cache_key_create(void)
{
    pthread_key_create(&cache_key, cache_destroy);
}

/* Any thread.  Memory for a one-shot BH. */
static IotBh *oneshot_mem(IotCtx *ctx)
{
    IotBh *bh = cache_head;

    if (!bh) {
        /* Acquire pairs with the release CAS in oneshot_recycle(). */
        bh = atomic_exchange_explicit(&ctx->bh_returned, NULL,
                                      memory_order_acquire);
        if (!bh) {
            return malloc(sizeof(*bh));
        }
        /* The key's destructor frees the cache when the thread exits. */
        pthread_once(&cache_once, cache_key_create);
        pthread_setspecific(cache_key, (void *)1);
    }
    cache_head = bh->next;
    return bh;
}

/* Home thread.  One-shot BHs that have run, kept for producers: a chain
 * built during one iot__bh_poll() pass and handed over with one CAS. */
typedef struct Recycled {
    IotBh *head, *tail;
    unsigned n;
} Recycled;

static void oneshot_recycle(IotCtx *ctx, Recycled *r, IotBh *bh)
{
    if (ctx->bh_returned_n + r->n >= ONESHOT_KEEP) {
        free(bh);
        return;
    }
    bh->next = r->head;
    r->head = bh;
    if (!r->tail) {
        r->tail = bh;
    }
    r->n++;
}

static void oneshot_return(IotCtx *ctx, Recycled *r)
{
    IotBh *head;

    if (!r->head) {
        return;
    }
    head = atomic_load_explicit(&ctx->bh_returned, memory_order_relaxed);
    if (!head) {
        ctx->bh_returned_n = 0; /* a producer took them all */
    }
    ctx->bh_returned_n += r->n;
    do {
        r->tail->next = head;
        /* Release pairs with the acquire exchange in oneshot_mem(). */
    } while (!atomic_compare_exchange_weak_explicit(
        &ctx->bh_returned, &head, r->head, memory_order_release,
        memory_order_relaxed));
}

static IotBh *bh_init(IotBh *bh, IotCtx *ctx, IotBhFunc *cb, void *opaque,
                      const char *name)
{
    if (!bh) {
        return NULL;
    }
    *bh = (IotBh){ .ctx = ctx,
                   .cb = cb,
                   .opaque = opaque,
                   .name = name ? name : "(unnamed)" };
    atomic_init(&bh->flags, 0);
    return bh;
}

static IotBh *bh_alloc(IotCtx *ctx, IotBhFunc *cb, void *opaque,
                       const char *name)
{
    return bh_init(malloc(sizeof(IotBh)), ctx, cb, opaque, name);
}

/* Any thread. */
IotBh *iot_bh_new_full(IotCtx *ctx, IotBhFunc *cb, void *opaque,
                       const char *name)
{
    IotBh *bh = bh_alloc(ctx, cb, opaque, name);

    if (!bh) {
        return NULL;
    }
    pthread_mutex_lock(&ctx->bh_all_lock);
    bh->all_next = ctx->bh_all;
    if (ctx->bh_all) {
        ctx->bh_all->all_prev = bh;
    }
    ctx->bh_all = bh;
    pthread_mutex_unlock(&ctx->bh_all_lock);
    return bh;
}

/* Home thread (or finalize). */
static void bh_free(IotBh *bh)
{
    IotCtx *ctx = bh->ctx;
    unsigned flags = atomic_load_explicit(&bh->flags, memory_order_relaxed);

    if (!(flags & BH_ONESHOT)) {
        pthread_mutex_lock(&ctx->bh_all_lock);
        if (bh->all_prev) {
            bh->all_prev->all_next = bh->all_next;
        } else {
            ctx->bh_all = bh->all_next;
        }
        if (bh->all_next) {
            bh->all_next->all_prev = bh->all_prev;
        }
        pthread_mutex_unlock(&ctx->bh_all_lock);
    }
    free(bh);
}

/* The flags after scheduling with @add on @old: a normal schedule makes a
 * pending idle BH a normal one, and an idle schedule never demotes a BH
 * that is pending as a normal one. */
static unsigned bh_flags_after(unsigned old, unsigned add)
{
    unsigned new_ = old | BH_PENDING | add;

    if (add == BH_SCHEDULED ||
        (add & BH_IDLE && (old & (BH_SCHEDULED | BH_IDLE)) == BH_SCHEDULED)) {
        new_ &= ~(unsigned)BH_IDLE;
    }
    return new_;
}

/* Any thread.  Lock-free: a CAS on the flags, and a CAS push the first
 * time (both retry only when another thread changed the word meanwhile). */
static void bh_enqueue(IotBh *bh, unsigned add)
{
    /* Read ctx before the BH becomes visible: once pushed, the loop may run
     * and free it (one-shot, or deleted) at any moment. */
    IotCtx *ctx = bh->ctx;
    unsigned old = atomic_load_explicit(&bh->flags, memory_order_relaxed);

    /* acq_rel pairs with the fetch_and in bh_dequeue(): the loop that runs
     * the callback sees what the caller wrote before scheduling, and we
     * see the loop's last use of bh->next before we overwrite it. */
    while (!atomic_compare_exchange_weak_explicit(
        &bh->flags, &old, bh_flags_after(old, add), memory_order_acq_rel,
        memory_order_relaxed)) {
    }
    if (!(old & BH_PENDING)) {
        IotBh *head = atomic_load_explicit(&ctx->bh_list, memory_order_relaxed);
        do {
            bh->next = head;
            /* seq_cst (release at least) pairs with the exchange in
             * iot__bh_poll() and the acquire load in iot__bh_timeout():
             * bh->next is visible.  seq_cst also puts the push before the
             * load in iot_ctx_notify() in the single order, which its fast
             * path relies on. */
        } while (!atomic_compare_exchange_weak_explicit(
            &ctx->bh_list, &head, bh, memory_order_seq_cst,
            memory_order_relaxed));
    } else if (add == BH_SCHEDULED &&
               (old & (BH_SCHEDULED | BH_IDLE | BH_DELETED)) == BH_SCHEDULED) {
        /* Already pending and scheduled: whoever pushed it notifies (after
         * its push), and a loop that took it into a slice runs it before
         * sleeping.  Nothing changed that the loop must re-evaluate. */
        return;
    }
    iot_ctx_notify(ctx);
}

void iot_bh_schedule(IotBh *bh)
{
    bh_enqueue(bh, BH_SCHEDULED);
}

void iot_bh_schedule_idle(IotBh *bh)
{
    bh_enqueue(bh, BH_SCHEDULED | BH_IDLE);
}

void iot_bh_cancel(IotBh *bh)
{
    /* acq_rel: a cancel that comes after a schedule in the flags' order
     * sees what the scheduler wrote before scheduling (pool.c relies on
     * it); one that comes before is undone by that schedule. */
    atomic_fetch_and_explicit(&bh->flags, ~(unsigned)BH_SCHEDULED,
                              memory_order_acq_rel);
}

void iot_bh_delete(IotBh *bh)
{
    bh_enqueue(bh, BH_DELETED);
}

int iot_bh_schedule_oneshot_full(IotCtx *ctx, IotBhFunc *cb, void *opaque,
                                 const char *name)
{
    IotBh *bh = bh_init(oneshot_mem(ctx), ctx, cb, opaque, name);
    IotBh *head;

    if (!bh) {
        return -ENOMEM;
    }
    /* Nobody else can see it yet: set the flags plainly, push once. */
    atomic_init(&bh->flags, BH_ONESHOT | BH_PENDING | BH_SCHEDULED);
    head = atomic_load_explicit(&ctx->bh_list, memory_order_relaxed);
    do {
        bh->next = head;
        /* seq_cst: as in bh_enqueue(); it also publishes the flags. */
    } while (!atomic_compare_exchange_weak_explicit(
        &ctx->bh_list, &head, bh, memory_order_seq_cst, memory_order_relaxed));
    iot_ctx_notify(ctx);
    return 0;
}

const char *iot_bh_name(const IotBh *bh)
{
    return bh->name;
}

/* Home thread.  Pops the first BH of @slice and returns its old flags. */
static IotBh *bh_dequeue(IotBhSlice *slice, unsigned *flags)
{
    IotBh *bh = slice->head;

    if (!bh) {
        return NULL;
    }
    slice->head = bh->next;
    /* Nobody else holds a one-shot BH: its flags cannot change, and a
     * plain load is enough (the take in iot__bh_poll() ordered it). */
    *flags = atomic_load_explicit(&bh->flags, memory_order_relaxed);
    if (*flags & BH_ONESHOT) {
        return bh;
    }
    /* Clear PENDING after the unlink: a schedule from now on pushes it
     * anew and notifies again.  acq_rel pairs with bh_enqueue(). */
    *flags = atomic_fetch_and_explicit(
        &bh->flags, ~(unsigned)(BH_PENDING | BH_SCHEDULED | BH_IDLE),
        memory_order_acq_rel);
    return bh;
}

static IotBh *bh_reverse(IotBh *bh)
{
    IotBh *fifo = NULL;

    while (bh) {
        IotBh *next = bh->next;
        bh->next = fifo;
        fifo = bh;
        bh = next;
    }
    return fifo;
}

/* Home thread; nests through callbacks.  True if a non-idle BH ran. */
bool iot__bh_poll(IotCtx *ctx)
{
    IotBhSlice slice, *s;
    Recycled recycled = { NULL, NULL, 0 };
    bool progress = false;

    /* seq_cst: after the accept in the single order (see
     * iot_ctx_notify()); acquire pairs with the CAS in bh_enqueue().  Look
     * before taking: an exchange on an empty list would still take the
     * cache line away from the producers. */
    slice.head = NULL;
    if (atomic_load_explicit(&ctx->bh_list, memory_order_seq_cst)) {
        slice.head = bh_reverse(atomic_exchange_explicit(&ctx->bh_list, NULL,
                                                         memory_order_seq_cst));
    }
    slice.next = NULL;
    if (ctx->slice_tail) {
        ctx->slice_tail->next = &slice;
    } else {
        ctx->slice_head = &slice;
    }
    ctx->slice_tail = &slice;

    /* Oldest slice first; a nested call may empty and unlink ours. */
    while ((s = ctx->slice_head)) {
        unsigned flags;
        IotBh *bh = bh_dequeue(s, &flags);

        if (!bh) {
            ctx->slice_head = s->next;
            if (!ctx->slice_head) {
                ctx->slice_tail = NULL;
            }
            continue;
        }
        if ((flags & (BH_SCHEDULED | BH_DELETED)) == BH_SCHEDULED) {
            if (!(flags & BH_IDLE)) {
                progress = true;
            }
            bh->cb(bh->opaque);
            IOT_STAT_ADD(ctx, bh_runs, 1);
        }
        if (flags & BH_ONESHOT) {
            oneshot_recycle(ctx, &recycled, bh);
        } else if (flags & BH_DELETED) {
            bh_free(bh);
        }
    }
    oneshot_return(ctx, &recycled);
    return progress;
}

static int64_t bh_list_timeout(IotBh *bh, bool *idle)
{
    for (; bh; bh = bh->next) {
        unsigned f = atomic_load_explicit(&bh->flags, memory_order_relaxed);
        if ((f & (BH_SCHEDULED | BH_DELETED)) == BH_SCHEDULED) {
            if (!(f & BH_IDLE)) {
                return 0;
            }
            *idle = true;
        }
    }
    return -1;
}

/* Home thread.  0 if a BH is due, the idle period if only idle BHs are,
 * else -1.  Stops at the first due BH, so the usual cost is one look. */
int64_t iot__bh_timeout(IotCtx *ctx)
{
    bool idle = false;
    IotBhSlice *s;

    if (bh_list_timeout(
            atomic_load_explicit(&ctx->bh_list, memory_order_acquire), &idle) ==
        0) {
        return 0;
    }
    for (s = ctx->slice_head; s; s = s->next) {
        if (bh_list_timeout(s->head, &idle) == 0) {
            return 0;
        }
    }
    return idle ? IOT_IDLE_BH_PERIOD_NS : -1;
}

/* Last reference gone, no poll running: free deleted BHs, abort on a leak. */
void iot__bh_ctx_finalize(IotCtx *ctx)
{
    IotBh *bh = atomic_exchange(&ctx->bh_list, NULL), *next;

    assert(!ctx->slice_head);
    /* Pending BHs: one-shots that never ran and deleted ones are freed;
     * every other BH stays on bh_all and is judged below. */
    for (; bh; bh = next) {
        unsigned flags = atomic_load(&bh->flags);
        next = bh->next;
        if (flags & BH_DELETED) {
            bh_free(bh);
        } else if (flags & BH_ONESHOT) {
            free(bh);
        } else {
            atomic_fetch_and(&bh->flags, ~(unsigned)BH_PENDING);
        }
    }
    if (ctx->bh_all) {
        fprintf(stderr, "%s: BH '%s' leaked, aborting...\n", __func__,
                ctx->bh_all->name);
        abort();
    }
    bh_list_free(atomic_exchange(&ctx->bh_returned, NULL));
    pthread_mutex_destroy(&ctx->bh_all_lock);
}
