/* SPDX-License-Identifier: MIT */
/*
 * Post queues: one SPSC queue per (thread, context).  See postq.h for the
 * protocol and the lifetime rules.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "postq.h"

IOT_TLS IotPostQ *iot__postq_last;       /* the last queue this thread used */
static IOT_TLS IotPostQ *tls_queues;     /* all of them, for thread exit */
static IOT_TLS unsigned tls_exit_rounds; /* tls_destroy() calls so far */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static atomic_ullong ctx_ids; /* last context id given out */
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;
static bool membarrier_ok; /* [membarrier_once] registered */
int iot__postq_relaxed_allowed = 1;

void iot__postq_bh_tag(void *opaque)
{
    (void)opaque;
    abort(); /* a slot's tag, never a callback */
}

/* Any thread.  A chunk of empty slots. */
static IotPostChunk *chunk_new(void)
{
    IotPostChunk *c = aligned_alloc(_Alignof(IotPostChunk), sizeof(*c));

    if (c) {
        memset(c, 0, sizeof(*c));
    }
    return c;
}

/* Home thread.  The chunk after @c, or NULL if the producer has not moved
 * on yet.  Acquire pairs with the release in postq_grow(): the new chunk's
 * empty slots are seen as empty.  seq_cst, as slot_published(): a post
 * into a new chunk is found through the link, which must therefore come
 * after the accept of `notified` in the single order too (a plain load on
 * x86, the same instruction as acquire on arm64). */
static IotPostChunk *chunk_next(IotPostChunk *c)
{
    return __atomic_load_n(&c->next, __ATOMIC_SEQ_CST);
}

/* Home thread.  Is @s published?  Acquire pairs with the release in
 * iot__postq_put(): the slot's opaque and every earlier slot are seen.
 * seq_cst: after the accept of `notified` in the single order (see
 * iot__ctx_notify_published()), as the fenced push is. */
static bool slot_published(const IotPostSlot *s)
{
    return __atomic_load_n(&s->cb, __ATOMIC_SEQ_CST) != NULL;
}

/* Home thread.  How many slots of @c from @idx on are published, at most
 * @max.  Slots are published in order, so a published last slot of a
 * line vouches for the whole line.  One line at a time, never ahead of
 * the run: a look at a line the producer has yet to write takes it from
 * the producer's cache, and its store there then waits for it (looking
 * eight lines at once cost W2 10 % of its posts). */
static unsigned chunk_published(IotPostChunk *c, unsigned idx, unsigned max)
{
    unsigned end = idx + max < IOT_POSTQ_SLOTS ? idx + max : IOT_POSTQ_SLOTS;
    unsigned i = idx;

    while (i < end) {
        unsigned last = i | (IOT_POSTQ_LINE - 1);

        if (last >= end) {
            last = end - 1;
        }
        if (!slot_published(&c->slot[last])) {
            while (i < last && slot_published(&c->slot[i])) {
                i++;
            }
            break;
        }
        i = last + 1;
    }
    return i - idx;
}

/* Home thread (or tests, the home thread held).  The published slots of
 * @q not yet taken, at most @max. */
static uint64_t postq_avail(const IotPostQ *q, uint64_t max)
{
    IotPostChunk *c = q->c_chunk;
    unsigned idx = q->c_idx;
    uint64_t n = 0;

    while (n < max) {
        uint64_t want = max - n;
        unsigned k;

        if (idx == IOT_POSTQ_SLOTS) {
            IotPostChunk *next = chunk_next(c);
            if (!next) {
                break;
            }
            c = next;
            idx = 0;
        }
        k = chunk_published(
            c, idx, want < IOT_POSTQ_SLOTS ? (unsigned)want : IOT_POSTQ_SLOTS);
        n += k;
        idx += k;
        if (idx < IOT_POSTQ_SLOTS) {
            break; /* an empty slot, or @max */
        }
    }
    return n;
}

static void chunks_free(IotPostChunk *c)
{
    while (c) {
        IotPostChunk *next = c->next;
        free(c);
        c = next;
    }
}

/* Any thread, by the last holder. */
static void postq_unref(IotPostQ *q)
{
    IotPostChunk *c, *next;

    /* acq_rel: the freeing side sees the other holder's last writes. */
    if (atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    /* The chain runs from the consumer's chunk to the producer's. */
    for (c = q->c_chunk; c; c = next) {
        next = c == q->p_chunk ? NULL : c->next;
        free(c);
    }
    chunks_free(q->p_free);
    chunks_free(atomic_load_explicit(&q->returned, memory_order_relaxed));
    free(q);
}

/* Thread exit: the loop unlinks our queues once it has run them dry.
 * Other libraries' thread-specific destructors may still post from this
 * thread in the same round, after ours: the queues stay this thread's for
 * one more round (setting the value again asks for it), so that those
 * posts keep their place after the thread's earlier ones.  Not longer:
 * sanitizer runtimes take the last rounds to tear the thread down.  A post
 * from a later round gets a fresh queue, handed over in the round after
 * (FIFO order with the earlier posts is then not kept). */
static void tls_destroy(void *unused)
{
    IotPostQ *q, *next;

    (void)unused;
    if (++tls_exit_rounds < 2 && pthread_setspecific(tls_key, (void *)1) == 0) {
        return;
    }
    for (q = tls_queues; q; q = next) {
        next = q->tls_next;
        /* Release pairs with the acquire in iot__postq_take(): our last
         * push is visible to a loop that sees the orphan mark. */
        atomic_store_explicit(&q->orphan, true, memory_order_release);
        postq_unref(q);
    }
    tls_queues = NULL;
    iot__postq_last = NULL;
}

static void tls_key_create(void)
{
    pthread_key_create(&tls_key, tls_destroy);
}

/* Owner.  Forgets queues into contexts that have been finalized. */
static void tls_prune(void)
{
    IotPostQ **pq = &tls_queues;

    while (*pq) {
        IotPostQ *q = *pq;
        /* Acquire pairs with the release in iot__postq_ctx_finalize(). */
        if (atomic_load_explicit(&q->ctx_gone, memory_order_acquire)) {
            *pq = q->tls_next;
            if (iot__postq_last == q) {
                iot__postq_last = NULL;
            }
            postq_unref(q);
        } else {
            pq = &q->tls_next;
        }
    }
}

/* Any thread: the slow path of iot__postq_push(). */
IotPostQ *iot__postq_lookup(IotCtx *ctx)
{
    IotPostQ *q;

    tls_prune();
    for (q = tls_queues; q; q = q->tls_next) {
        if (q->ctx_id == ctx->id) {
            return iot__postq_last = q;
        }
    }
    /* The producer's and the consumer's fields are on separate lines
     * (_Alignas(64)), which calloc does not promise. */
    pthread_once(&tls_once, tls_key_create);
    /* The key's destructor (tls_destroy) hands our queues over at thread
     * exit; without it they would never be freed: refuse as ENOMEM. */
    if (pthread_setspecific(tls_key, (void *)1) != 0) {
        return NULL;
    }
    q = aligned_alloc(_Alignof(IotPostQ), sizeof(*q));
    if (!q) {
        return NULL;
    }
    memset(q, 0, sizeof(*q));
    q->p_chunk = q->c_chunk = chunk_new();
    if (!q->p_chunk) {
        free(q);
        return NULL;
    }
    q->ctx_id = ctx->id;
    atomic_init(&q->refs, 2);
    q->tls_next = tls_queues;
    tls_queues = q;

    pthread_mutex_lock(&ctx->postq_lock);
    atomic_store_explicit(
        &q->next, atomic_load_explicit(&ctx->postqs, memory_order_relaxed),
        memory_order_relaxed);
    /* Release pairs with the acquire walk in the home thread. */
    atomic_store_explicit(&ctx->postqs, q, memory_order_release);
    pthread_mutex_unlock(&ctx->postq_lock);
    return iot__postq_last = q;
}

/* Owner.  The current chunk is full: link a new one (one the loop handed
 * back, or fresh memory), before the first slot written into it is. */
static int postq_grow(IotPostQ *q)
{
    IotPostChunk *c;

    if (!q->p_free) {
        /* Acquire pairs with the release CAS in chunk_recycle(): the
         * loop's last reads of those chunks are done. */
        q->p_free =
            atomic_exchange_explicit(&q->returned, NULL, memory_order_acquire);
    }
    if (q->p_free) {
        c = q->p_free;
        q->p_free = c->next;
        c->next = NULL;
        /* Empty again: a slot is published by filling it.  Cleared here,
         * not by the loop as it hands the chunk back: the stores take the
         * lines from the loop's cache all at once, and the posts then
         * write lines of our own (the loop's clear had each post's store
         * wait for its line to come back). */
        memset(c->slot, 0, sizeof(c->slot));
    } else if (!(c = chunk_new())) {
        return -ENOMEM;
    }
    /* Release pairs with chunk_next(): the loop sees @c's slots empty. */
    __atomic_store_n(&q->p_chunk->next, c, __ATOMIC_RELEASE);
    q->p_chunk = c;
    q->p_idx = 0;
    return 0;
}

_Atomic int iot__postq_fail_push_at;

/* Any thread.  The calling thread's queue into @ctx, with room for a
 * slot; NULL: out of memory. */
static IotPostQ *postq_room(IotCtx *ctx)
{
    IotPostQ *q = iot__postq_last;

    if (atomic_load_explicit(&iot__postq_fail_push_at, memory_order_relaxed) >
            0 &&
        atomic_fetch_sub_explicit(&iot__postq_fail_push_at, 1,
                                  memory_order_relaxed) == 1) {
        return NULL;
    }

    if (!q || q->ctx_id != ctx->id) {
        q = iot__postq_lookup(ctx); /* and caches it in iot__postq_last */
        if (!q) {
            return NULL;
        }
    }
    if (q->p_idx == IOT_POSTQ_SLOTS && postq_grow(q) < 0) {
        return NULL;
    }
    return q;
}

int iot__postq_push_slow(IotCtx *ctx, IotBhFunc *cb, void *opaque)
{
    if (!postq_room(ctx)) {
        return -ENOMEM;
    }
    /* The fast path holds now: the cached queue is @ctx's, with room. */
    return iot__postq_push(ctx, cb, opaque);
}

int iot__postq_push_quiet(IotCtx *ctx, IotBhFunc *cb, void *opaque)
{
    IotPostQ *q = iot__postq_last;

    if (!q || q->ctx_id != ctx->id || q->p_idx == IOT_POSTQ_SLOTS) {
        q = postq_room(ctx);
        if (!q) {
            return -ENOMEM;
        }
    }
    iot__postq_put(q, cb, opaque);
    return 0;
}

/* The fenced path: the full barrier puts the push before the load of
 * `notified` in iot__ctx_notify_published() (C11: a store sequenced
 * before a seq_cst fence is seen by every seq_cst load after that fence
 * in the single order), which its fast path and the Dekker pair rely on.
 * Not a second, seq_cst store of the callback: the loop may be reading
 * the published slot with plain loads by then. */
int iot__postq_push_fenced(IotCtx *ctx)
{
    iot__smp_mb();
    iot__ctx_notify_published(ctx);
    return 0;
}

/* Home thread.  @c is drained: hand it back to the producer. */
static void chunk_recycle(IotPostQ *q, IotPostChunk *c)
{
    IotPostChunk *head =
        atomic_load_explicit(&q->returned, memory_order_relaxed);

    /* Keep what a steady stream needs, not what a burst left behind: a
     * backlog of a million posts must not stay allocated for good.  An
     * empty stack means the producer took all of it. */
    if (!head) {
        q->c_returned = 0;
    }
    if (q->c_returned >= IOT_POSTQ_KEEP) {
        free(c);
        return;
    }
    q->c_returned++;
    do {
        c->next = head;
        /* Release pairs with the acquire exchange in postq_grow(). */
    } while (!atomic_compare_exchange_weak_explicit(
        &q->returned, &head, c, memory_order_release, memory_order_relaxed));
}

/* Home thread, under postq_lock.  Unlinks @q from the context's list. */
static void postq_unlink(IotCtx *ctx, IotPostQ *q)
{
    _Atomic(IotPostQ *) *pp = &ctx->postqs;
    IotPostQ *p;

    while ((p = atomic_load_explicit(pp, memory_order_relaxed)) != q) {
        pp = &p->next;
    }
    atomic_store_explicit(pp,
                          atomic_load_explicit(&q->next, memory_order_relaxed),
                          memory_order_relaxed);
}

/* Home thread.  Drop @q if its thread has exited and it is empty. */
static bool postq_reap(IotCtx *ctx, IotPostQ *q)
{
    /* Acquire pairs with the release in tls_destroy(): an empty queue seen
     * after it stays empty. */
    if (!atomic_load_explicit(&q->orphan, memory_order_acquire) ||
        postq_avail(q, 1) != 0) {
        return false;
    }
    if (ctx->postq_hot == q) {
        ctx->postq_hot = NULL;
    }
    if (ctx->postq_resume == q) {
        ctx->postq_resume = NULL;
    }
    pthread_mutex_lock(&ctx->postq_lock);
    postq_unlink(ctx, q);
    pthread_mutex_unlock(&ctx->postq_lock);
    postq_unref(q);
    return true;
}

/* Tests: the Nth growth of a slot array from now (1: the next) fails. */
int iot__postq_fail_grow_at;

static bool buf_reserve(IotPostSlot **buf, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 64;
    IotPostSlot *v;

    if (iot__postq_fail_grow_at < 0 ||
        (iot__postq_fail_grow_at > 0 && --iot__postq_fail_grow_at == 0)) {
        return false;
    }
    if (need <= *cap) {
        return true;
    }
    while (n < need) {
        n *= 2;
    }
    v = realloc(*buf, n * sizeof(*v));
    if (!v) {
        return false;
    }
    *buf = v;
    *cap = n;
    return true;
}

/* Home thread.  Starts fetching every queue's next slot at once: after a
 * hand-off the lines are in the producers' caches, and reading them one
 * after the other would pay a transfer per queue in a row. */
static void postq_prefetch(IotCtx *ctx)
{
    for (IotPostQ *q = atomic_load_explicit(&ctx->postqs, memory_order_acquire);
         q; q = atomic_load_explicit(&q->next, memory_order_acquire)) {
        if (q->c_idx < IOT_POSTQ_SLOTS) {
            __builtin_prefetch(&q->c_chunk->slot[q->c_idx]);
        }
    }
}

/* Home thread.  Moves what @q has published (up to IOT_POSTQ_TAKE) into
 * *buf after its *n slots.  False if the array could not hold all of it
 * (out of memory): what fitted is taken, and the pass must stop. */
static bool postq_take_one(IotCtx *ctx, IotPostQ *q, IotPostSlot **buf,
                           size_t *cap, size_t *n)
{
    uint64_t avail = postq_avail(q, IOT_POSTQ_TAKE);
    bool all = true;

    if (avail == 0) {
        postq_reap(ctx, q);
        return true;
    }
    if (!buf_reserve(buf, cap, *n + avail)) {
        /* Out of memory: take what fits (the array of the outermost pass
         * always has room, see iot__bh_ctx_init()), so that the loop goes
         * on; the rest waits for the next pass. */
        if (*n >= *cap) {
            return false;
        }
        if (avail > *cap - *n) {
            avail = *cap - *n;
            all = false;
        }
    }
    /* A chunk's run of slots at a time, with memcpy: its wide copy keeps
     * many of the producer's lines in flight at once, where a loop of
     * single slots stalled on each (W2 in BENCHMARKS.md: the take fell
     * from 6-10 cycles a slot to 2-3). */
    for (uint64_t left = avail; left;) {
        unsigned k;

        if (q->c_idx == IOT_POSTQ_SLOTS) {
            IotPostChunk *done = q->c_chunk;
            q->c_chunk = chunk_next(done); /* counted: not NULL */
            q->c_idx = 0;
            chunk_recycle(q, done);
        }
        k = IOT_POSTQ_SLOTS - q->c_idx;
        if (k > left) {
            k = (unsigned)left;
        }
        memcpy(*buf + *n, &q->c_chunk->slot[q->c_idx], k * sizeof(**buf));
        *n += k;
        q->c_idx += k;
        left -= k;
    }
    q->head += avail;
    ctx->postq_hot = q;
    return all;
}

/* Walks the queues from ctx->postq_resume (normally NULL: from the head)
 * round to where it began.  A pass cut short (out of memory) leaves
 * postq_resume at the queue after the one it stopped in, so that the next
 * pass serves the others first: a busy queue that fills the array every
 * time cannot starve the queues behind it. */
size_t iot__postq_take(IotCtx *ctx, IotPostSlot **buf, size_t *cap)
{
    /* Acquire pairs with the release in iot__postq_lookup(). */
    IotPostQ *head = atomic_load_explicit(&ctx->postqs, memory_order_acquire);
    IotPostQ *start = ctx->postq_resume ? ctx->postq_resume : head;
    size_t n = 0;

    postq_prefetch(ctx);
    ctx->postq_resume = NULL;
    for (int round = 0; round < 2; round++) {
        /* The second round, from the head up to @start (which a reap may
         * have unlinked: then up to the end), only if @start was not. */
        IotPostQ *q = round ? head : start, *until = round ? start : NULL;

        if (round && start == head) {
            break;
        }
        for (IotPostQ *next; q && q != until; q = next) {
            next = atomic_load_explicit(&q->next, memory_order_acquire);
            if (!postq_take_one(ctx, q, buf, cap, &n)) {
                ctx->postq_resume = next;
                return n;
            }
        }
    }
    return n;
}

/* Home thread.  Visits the untaken published slots of @q, at most @max,
 * until @visit returns true; returns true if it did. */
static bool postq_scan_one(const IotPostQ *q, uint64_t max,
                           bool (*visit)(const IotPostSlot *, void *),
                           void *opaque)
{
    IotPostChunk *c = q->c_chunk;
    unsigned idx = q->c_idx;

    for (; max; max--) {
        if (idx == IOT_POSTQ_SLOTS) {
            if (!(c = chunk_next(c))) {
                return false;
            }
            idx = 0;
        }
        if (!slot_published(&c->slot[idx])) {
            return false;
        }
        if (visit(&c->slot[idx++], opaque)) {
            return true;
        }
    }
    return false;
}

bool iot__postq_scan(IotCtx *ctx, bool (*visit)(const IotPostSlot *, void *),
                     void *opaque)
{
    for (IotPostQ *q = atomic_load_explicit(&ctx->postqs, memory_order_acquire);
         q; q = atomic_load_explicit(&q->next, memory_order_acquire)) {
        if (postq_scan_one(q, UINT64_MAX, visit, opaque)) {
            return true;
        }
    }
    return false;
}

void iot__postq_mark(IotCtx *ctx)
{
    pthread_mutex_lock(&ctx->bh_spill_lock);
    ctx->bh_spill_mark = ctx->bh_spill_made;
    pthread_mutex_unlock(&ctx->bh_spill_lock);
    for (IotPostQ *q = atomic_load_explicit(&ctx->postqs, memory_order_acquire);
         q; q = atomic_load_explicit(&q->next, memory_order_acquire)) {
        q->mark = q->head + postq_avail(q, UINT64_MAX);
    }
}

bool iot__postq_marked_pending(IotCtx *ctx)
{
    bool spilled;

    /* BHs spilled (bh.c) before the mark, not taken yet. */
    pthread_mutex_lock(&ctx->bh_spill_lock);
    spilled = ctx->bh_spill_taken < ctx->bh_spill_mark;
    pthread_mutex_unlock(&ctx->bh_spill_lock);
    if (spilled) {
        return true;
    }
    for (IotPostQ *q = atomic_load_explicit(&ctx->postqs, memory_order_acquire);
         q; q = atomic_load_explicit(&q->next, memory_order_acquire)) {
        if (q->head < q->mark) {
            return true;
        }
    }
    return false;
}

/* Slots looked at for one that is due (postq_head_due()): idle BHs in
 * front of posts are few. */
#define POSTQ_DUE_LOOK 8

static bool slot_due_visit(const IotPostSlot *slot, void *unused)
{
    (void)unused;
    return iot__bh_slot_due(slot);
}

/* Home thread.  Is one of the first POSTQ_DUE_LOOK untaken slots of @q
 * work to run now (iot__bh_slot_due())?  Usually the first is. */
static bool postq_head_due(const IotPostQ *q)
{
    return postq_scan_one(q, POSTQ_DUE_LOOK, slot_due_visit, NULL);
}

bool iot__postq_hot_pending(IotCtx *ctx)
{
    IotPostQ *q = ctx->postq_hot;

    return q && postq_head_due(q);
}

bool iot__postq_pending(IotCtx *ctx)
{
    if (atomic_load_explicit(&ctx->bh_spill_pending, memory_order_relaxed)) {
        return true; /* a spilled BH (bh.c) */
    }
    for (IotPostQ *q = atomic_load_explicit(&ctx->postqs, memory_order_acquire);
         q; q = atomic_load_explicit(&q->next, memory_order_acquire)) {
        if (postq_head_due(q)) {
            return true;
        }
    }
    return false;
}

uint64_t iot__postq_published(IotCtx *ctx)
{
    uint64_t n = 0;

    for (IotPostQ *q = atomic_load_explicit(&ctx->postqs, memory_order_acquire);
         q; q = atomic_load_explicit(&q->next, memory_order_acquire)) {
        n += q->head + postq_avail(q, UINT64_MAX);
    }
    return n;
}

static int membarrier(int cmd)
{
    return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

static void membarrier_register(void)
{
    int cmds = membarrier(MEMBARRIER_CMD_QUERY);
    const char *env = getenv("IOTHREAD_MEMBARRIER");

    if (env && env[0] == '0') {
        return;
    }
    membarrier_ok = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                    membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

bool iot__postq_relaxed_available(void)
{
    pthread_once(&membarrier_once, membarrier_register);
    return membarrier_ok;
}

void iot__postq_relaxed_begin(IotCtx *ctx)
{
    if (ctx->bh_taken >= IOT_POSTQ_RELAXED_MIN && membarrier_ok &&
        iot__postq_relaxed_allowed &&
        !atomic_load_explicit(&ctx->post_relaxed, memory_order_relaxed)) {
        atomic_store_explicit(&ctx->post_relaxed, true, memory_order_relaxed);
    }
    /* The outermost pass's count: a nested poll's pass of one post does
     * not hold the next. */
    if (ctx->bh_depth == 0 && ctx->bh_taken >= IOT_POSTQ_RELAXED_MIN &&
        iot__postq_paced(ctx)) {
        ctx->postq_look_ns = iot__now_ns() + IOT_POSTQ_PACE_NS;
    }
}

bool iot__postq_relaxed_end(IotCtx *ctx)
{
    if (!atomic_load_explicit(&ctx->post_relaxed, memory_order_relaxed)) {
        return false;
    }
    atomic_store_explicit(&ctx->post_relaxed, false, memory_order_relaxed);
    /* The store above, then a full barrier on every CPU running one of
     * our threads (see iot__postq_push()).  It cannot fail once
     * registered; if it ever did, nothing could make the producers'
     * unfenced stores visible, so stop rather than lose work. */
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) < 0) {
        perror("iothread: membarrier");
        abort();
    }
    return true;
}

void iot__postq_ctx_init(IotCtx *ctx)
{
    pthread_once(&membarrier_once, membarrier_register);
    pthread_mutex_init(&ctx->postq_lock, NULL);
    ctx->id = atomic_fetch_add_explicit(&ctx_ids, 1, memory_order_relaxed) + 1;
}

static bool drop_visit(const IotPostSlot *slot, void *opaque)
{
    void (*drop)(IotPostSlot *) = *(void (**)(IotPostSlot *))opaque;
    IotPostSlot copy = *slot;

    drop(&copy);
    return false;
}

void iot__postq_ctx_finalize(IotCtx *ctx, void (*drop)(IotPostSlot *))
{
    IotPostQ *q, *next;

    ctx->postq_hot = NULL;
    ctx->postq_resume = NULL;
    iot__postq_scan(ctx, drop_visit, &drop);
    for (q = atomic_load_explicit(&ctx->postqs, memory_order_acquire); q;
         q = next) {
        next = atomic_load_explicit(&q->next, memory_order_relaxed);
        /* Release pairs with the acquire in tls_prune(). */
        atomic_store_explicit(&q->ctx_gone, true, memory_order_release);
        postq_unref(q);
    }
    atomic_store_explicit(&ctx->postqs, NULL, memory_order_relaxed);
    pthread_mutex_destroy(&ctx->postq_lock);
}
