/* SPDX-License-Identifier: MIT */
/*
 * Bottom halves (section 2.2 of the specification).
 *
 * Scheduling a BH for the first time (PENDING was clear) posts it to the
 * calling thread's queue into the context (postq.h); scheduling a pending
 * BH only ORs in flags.  A one-shot callback is posted as it is, with no
 * object.  The loop moves what the queues hold into a "slice" (an array,
 * FIFO per scheduling thread) and runs it; a nested iot_ctx_poll() works
 * through every queued slice, oldest first, so it runs its parents'
 * pending BHs too.
 *
 *                      post         take, run    free
 * any thread           own queue    no           no
 * home thread          own queue    yes          yes
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctx-internal.h"
#include "postq.h"

/* Slots ahead whose opaque is asked for: a paced stream's items (W2) come
 * from memory, a hundred nanoseconds or more each, and a callback takes a
 * few; 4 left the loop waiting on every other item, and 64 ran W2 5 %
 * faster than 16 (BENCHMARKS.md). */
#define BH_PREFETCH 64

enum {
    BH_PENDING = 1 << 0,   /* in a post queue or a slice */
    BH_SCHEDULED = 1 << 1, /* the callback should run */
    BH_DELETED = 1 << 2,   /* free without calling */
    BH_IDLE = 1 << 3,      /* scheduled as idle: no wake-up, no progress */
};

struct IotBh {
    IotCtx *ctx;                /* [const] */
    IotBhFunc *cb;              /* [const] */
    void *opaque;               /* [const] */
    const char *name;           /* [const] */
    atomic_uint flags;          /* [any] BH_* */
    IotBh *all_prev, *all_next; /* [bh_all_lock] leak tracking */
    IotBh *spill_next;          /* [bh_spill_lock] see bh_spill() */
};

/* One pass's batch, on the stack of the iot__bh_poll() that took it. */
struct IotBhSlice {
    IotPostSlot *v;   /* [home] ctx->bh_bufs[depth] */
    size_t n, pos;    /* [home] slots, and the next one to run */
    IotBhSlice *next; /* [home] the next younger slice */
};

/* The slot array of each nesting depth, kept between passes. */
struct IotBhBuf {
    IotPostSlot *v;
    size_t cap;
};

/* The outermost pass's slot array is made here, where a failure can be
 * reported: a pass that cannot grow it still takes what fits, so work
 * keeps running while memory is short (iot__postq_take()). */
#define BH_BUF_MIN 64

int iot__bh_ctx_init(IotCtx *ctx)
{
    pthread_mutex_init(&ctx->bh_all_lock, NULL);
    pthread_mutex_init(&ctx->bh_spill_lock, NULL);
    iot__postq_ctx_init(ctx);
    ctx->bh_bufs = calloc(1, sizeof(*ctx->bh_bufs));
    if (!ctx->bh_bufs) {
        return -ENOMEM;
    }
    ctx->bh_bufs_n = 1;
    ctx->bh_bufs[0].v = malloc(BH_BUF_MIN * sizeof(IotPostSlot));
    if (!ctx->bh_bufs[0].v) {
        return -ENOMEM;
    }
    ctx->bh_bufs[0].cap = BH_BUF_MIN;
    return 0;
}

/* Any thread. */
IotBh *iot_bh_new_full(IotCtx *ctx, IotBhFunc *cb, void *opaque,
                       const char *name)
{
    IotBh *bh;

    /* Refused here, not when the loop would call it. */
    if (!cb) {
        errno = EINVAL;
        return NULL;
    }
    bh = malloc(sizeof(*bh));
    if (!bh) {
        return NULL;
    }
    *bh = (IotBh){ .ctx = ctx,
                   .cb = cb,
                   .opaque = opaque,
                   .name = name ? name : "(unnamed)" };
    atomic_init(&bh->flags, 0);
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

/* Any thread.  The post of @bh found no memory: it waits on the context's
 * spill list instead, which the loop takes after the queues.  A BH needs
 * no slot of its own to wait in, so a schedule never fails; a one-shot
 * has no object to link and reports -ENOMEM instead.  @bh may be run
 * and freed by the loop as soon as the lock is dropped. */
static void bh_spill(IotCtx *ctx, IotBh *bh)
{
    pthread_mutex_lock(&ctx->bh_spill_lock);
    bh->spill_next = NULL;
    if (ctx->bh_spill_tail) {
        ctx->bh_spill_tail->spill_next = bh;
    } else {
        ctx->bh_spill_head = bh;
    }
    ctx->bh_spill_tail = bh;
    ctx->bh_spill_made++;
    /* seq_cst: before the notify's load of `notified` (see
     * ctx->bh_spill_pending). */
    atomic_store_explicit(&ctx->bh_spill_pending, true, memory_order_seq_cst);
    pthread_mutex_unlock(&ctx->bh_spill_lock);
    iot__ctx_notify_published(ctx);
}

/* Home thread.  Appends spilled BHs to the slice array @buf after its @n
 * slots, as many as it can hold (growing it if memory allows); the rest
 * stays for the next pass.  Returns the new count. */
static size_t bh_take_spilled(IotCtx *ctx, struct IotBhBuf *buf, size_t n)
{
    IotBh *bh;

    /* seq_cst: after the accept of `notified` (see bh_spill()). */
    if (!atomic_load_explicit(&ctx->bh_spill_pending, memory_order_seq_cst)) {
        return n;
    }
    pthread_mutex_lock(&ctx->bh_spill_lock);
    while ((bh = ctx->bh_spill_head)) {
        if (n == buf->cap) {
            size_t cap = buf->cap ? buf->cap * 2 : BH_BUF_MIN;
            IotPostSlot *v = realloc(buf->v, cap * sizeof(*v));
            if (!v) {
                break;
            }
            buf->v = v;
            buf->cap = cap;
        }
        ctx->bh_spill_head = bh->spill_next;
        ctx->bh_spill_taken++;
        buf->v[n++] = (IotPostSlot){ IOT_POSTQ_BH, bh };
    }
    if (!ctx->bh_spill_head) {
        ctx->bh_spill_tail = NULL;
        atomic_store_explicit(&ctx->bh_spill_pending, false,
                              memory_order_relaxed);
    }
    pthread_mutex_unlock(&ctx->bh_spill_lock);
    return n;
}

/* Any thread.  Lock-free: a CAS on the flags (it retries only when another
 * thread changed them meanwhile), and a post the first time (or, out of
 * memory, a spill under a lock). */
static void bh_enqueue(IotBh *bh, unsigned add)
{
    /* Read ctx before the BH becomes visible: once pushed, the loop may run
     * and free it (one-shot, or deleted) at any moment. */
    IotCtx *ctx = bh->ctx;
    unsigned old = atomic_load_explicit(&bh->flags, memory_order_relaxed);
    /* An idle schedule made by the loop running its callbacks (a BH that
     * schedules itself idle again) notifies nobody: the next timeout
     * computation sees the slot, the thread's own store, and waits the
     * idle period, as QEMU's loop does.  A notify would leave `notified`
     * set, which the loop does not block on: it would spin.  (GLib's
     * prepare takes such a notify itself: glib.c.) */
    bool quiet = (add & BH_IDLE) && iot__ctx_in_own_dispatch(ctx);

    /* acq_rel pairs with the fetch_and in bh_dequeue(): the loop that runs
     * the callback sees what the caller wrote before scheduling.  seq_cst
     * (the same instruction on x86) puts it before the notify's load of
     * `notified` in the single order: iot__ctx_notify_published(). */
    while (!atomic_compare_exchange_weak_explicit(
        &bh->flags, &old, bh_flags_after(old, add), memory_order_seq_cst,
        memory_order_relaxed)) {
    }
    if (!(old & BH_PENDING)) {
        /* Ours to post: nobody else will until the loop clears PENDING. */
        if ((quiet ? iot__postq_push_quiet(ctx, IOT_POSTQ_BH, bh)
                   : iot__postq_push(ctx, IOT_POSTQ_BH, bh)) < 0) {
            bh_spill(ctx, bh); /* and notifies */
        }
        return; /* the push notified, if it had to */
    }
    if (quiet) {
        return;
    }
    if (add == BH_SCHEDULED &&
        (old & (BH_SCHEDULED | BH_IDLE | BH_DELETED)) == BH_SCHEDULED) {
        /* Already pending and scheduled: whoever pushed it notifies (after
         * its push), and a loop that took it into a slice runs it before
         * sleeping.  Nothing changed that the loop must re-evaluate. */
        return;
    }
    iot__ctx_notify_published(ctx);
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
    (void)name; /* names serve leak reports; a one-shot cannot leak */
    /* A NULL callback is how a queue slot says it is empty: this post
     * would never be seen, nor any after it. */
    if (__builtin_expect(!cb, 0)) {
        return -EINVAL;
    }
    return iot__postq_push(ctx, cb, opaque);
}

const char *iot_bh_name(const IotBh *bh)
{
    return bh->name;
}

/* Home thread.  Clears PENDING of a BH taken from a queue, after which a
 * schedule posts it anew and notifies again, and returns its old flags.
 * acq_rel pairs with bh_enqueue(). */
static unsigned bh_dequeue(IotBh *bh)
{
    return atomic_fetch_and_explicit(
        &bh->flags, ~(unsigned)(BH_PENDING | BH_SCHEDULED | BH_IDLE),
        memory_order_acq_rel);
}

/* Home thread.  Runs one slot; true if that was progress. */
static bool bh_run_slot(IotCtx *ctx, IotPostSlot slot)
{
    IotBh *bh = slot.opaque;
    unsigned flags;

    if (slot.cb != IOT_POSTQ_BH) {
        slot.cb(slot.opaque);
        IOT_STAT_ADD(ctx, bh_runs, 1);
        return true;
    }
    flags = bh_dequeue(bh);
    if (flags & BH_DELETED) {
        bh_free(bh);
        return false;
    }
    if (!(flags & BH_SCHEDULED)) {
        return false; /* cancelled */
    }
    bh->cb(bh->opaque);
    IOT_STAT_ADD(ctx, bh_runs, 1);
    return !(flags & BH_IDLE);
}

/* Home thread.  The slot array for a pass at nesting depth @depth. */
static struct IotBhBuf *bh_buf(IotCtx *ctx, unsigned depth)
{
    if (depth >= ctx->bh_bufs_n) {
        unsigned n = ctx->bh_bufs_n ? ctx->bh_bufs_n * 2 : 4;
        struct IotBhBuf *v = realloc(ctx->bh_bufs, n * sizeof(*v));

        if (!v) {
            return NULL;
        }
        for (unsigned i = ctx->bh_bufs_n; i < n; i++) {
            v[i] = (struct IotBhBuf){ NULL, 0 };
        }
        ctx->bh_bufs = v;
        ctx->bh_bufs_n = n;
    }
    return &ctx->bh_bufs[depth];
}

/* Home thread; nests through callbacks.  True if a non-idle BH ran. */
bool iot__bh_poll(IotCtx *ctx)
{
    unsigned depth = ctx->bh_depth++;
    struct IotBhBuf *buf = bh_buf(ctx, depth);
    IotBhSlice slice = { NULL, 0, 0, NULL }, *s;
    bool progress = false;

    if (buf) {
        /* Out of memory growing the array: what was taken runs, the rest
         * waits in the queues for the next pass. */
        slice.n = iot__postq_take(ctx, &buf->v, &buf->cap);
        slice.n = bh_take_spilled(ctx, buf, slice.n);
        slice.v = buf->v;
        /* The first ones too (the loop below asks BH_PREFETCH ahead). */
        for (size_t i = 0; i < slice.n && i < BH_PREFETCH; i++) {
            iot__prefetchw(slice.v[i].opaque);
        }
    }
    if (depth == 0) {
        ctx->bh_taken = slice.n; /* the outermost pass's, for relaxing */
    }
    if (ctx->slice_tail) {
        ctx->slice_tail->next = &slice;
    } else {
        ctx->slice_head = &slice;
    }
    ctx->slice_tail = &slice;

    /* Oldest slice first; a nested call may empty and unlink ours. */
    while ((s = ctx->slice_head)) {
        if (s->pos == s->n) {
            ctx->slice_head = s->next;
            if (!ctx->slice_head) {
                ctx->slice_tail = NULL;
            }
            continue;
        }
        if (s->pos + BH_PREFETCH < s->n) {
            /* A callback nearly always touches its opaque (and a BH slot
             * is read here): start those misses a few slots early. */
            iot__prefetchw(s->v[s->pos + BH_PREFETCH].opaque);
        }
        progress |= bh_run_slot(ctx, s->v[s->pos++]);
    }
    ctx->bh_depth--;
    return progress;
}

/* Home thread.  Is @slot due (0), idle-due (*idle), or neither? */
static bool slot_due(const IotPostSlot *slot, void *opaque)
{
    bool *idle = opaque;
    unsigned f;

    if (slot->cb != IOT_POSTQ_BH) {
        return true;
    }
    f = atomic_load_explicit(&((IotBh *)slot->opaque)->flags,
                             memory_order_relaxed);
    if ((f & (BH_SCHEDULED | BH_DELETED)) == BH_SCHEDULED) {
        if (!(f & BH_IDLE)) {
            return true;
        }
        *idle = true;
    }
    return false;
}

bool iot__bh_slot_due(const IotPostSlot *slot)
{
    bool idle = false;

    return slot_due(slot, &idle);
}

/* Home thread.  0 if a BH is due, the idle period if only idle BHs are,
 * else -1.  Stops at the first due BH, so the usual cost is one look. */
int64_t iot__bh_timeout(IotCtx *ctx)
{
    bool idle = false;
    IotBhSlice *s;

    for (s = ctx->slice_head; s; s = s->next) {
        for (size_t i = s->pos; i < s->n; i++) {
            if (slot_due(&s->v[i], &idle)) {
                return 0;
            }
        }
    }
    if (atomic_load_explicit(&ctx->bh_spill_pending, memory_order_seq_cst)) {
        return 0; /* a spilled BH: due (its flags are not looked at) */
    }
    /* While posting is relaxed and the loop polls, busy polling looks at
     * the queues (at its own pace, see notifier_poll()), and the loop
     * cannot block before it looks again (iot__postq_relaxed_end()). */
    if (!iot__postq_paced(ctx) && iot__postq_scan(ctx, slot_due, &idle)) {
        return 0;
    }
    return idle ? IOT_IDLE_BH_PERIOD_NS : -1;
}

/* Finalize: a BH still queued.  Deleted ones are freed; one-shots have
 * nothing to free; every other BH stays on bh_all and is judged. */
static void bh_drop_slot(IotPostSlot *slot)
{
    IotBh *bh = slot->opaque;

    if (slot->cb != IOT_POSTQ_BH) {
        return;
    }
    if (atomic_load(&bh->flags) & BH_DELETED) {
        bh_free(bh);
    } else {
        atomic_fetch_and(&bh->flags, ~(unsigned)BH_PENDING);
    }
}

/* Last reference gone, no poll running: free deleted BHs, abort on a leak. */
void iot__bh_ctx_finalize(IotCtx *ctx)
{
    assert(!ctx->slice_head);
    iot__postq_ctx_finalize(ctx, bh_drop_slot);
    for (IotBh *bh = ctx->bh_spill_head, *next; bh; bh = next) {
        IotPostSlot slot = { IOT_POSTQ_BH, bh };
        next = bh->spill_next;
        bh_drop_slot(&slot);
    }
    if (ctx->bh_all) {
        fprintf(stderr, "%s: BH '%s' leaked, aborting...\n", __func__,
                ctx->bh_all->name);
        abort();
    }
    for (unsigned i = 0; i < ctx->bh_bufs_n; i++) {
        free(ctx->bh_bufs[i].v);
    }
    free(ctx->bh_bufs);
    pthread_mutex_destroy(&ctx->bh_spill_lock);
    pthread_mutex_destroy(&ctx->bh_all_lock);
}
