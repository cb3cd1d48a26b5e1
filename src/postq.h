/* SPDX-License-Identifier: MIT */
/*
 * Post queues: how work reaches a context's bottom-half pass.
 *
 * Each thread that schedules into a context gets its own queue there: an
 * unbounded single-producer, single-consumer FIFO of (callback, opaque)
 * slots, in chunks.  A slot is published by the store of its callback,
 * which is NULL until then: the producer writes nothing else that the
 * loop reads, shares no line with other producers and takes no lock, and
 * the loop reads a slot line once for four posts.  Slots are published in
 * order, so the loop finds the end of what is published by looking at the
 * last slot of each line.  A slot whose callback is IOT_POSTQ_BH carries
 * an IotBh (a BH scheduled for the first time); any other is a one-shot
 * callback, which needs no object at all.  A chunk the loop has drained
 * goes back to the producer, which clears it before it writes it again.
 *
 *                       push        take        unlink / free
 * the owning thread     own queue   -           -
 * home thread           own queue   all         orphaned queues
 * context finalize      -           -           every queue's ctx ref
 *
 * Lifetime: a queue holds two references, its thread's (dropped when the
 * thread exits, through a thread-specific key) and its context's (dropped
 * when the loop unlinks the queue of an exited thread, or at finalize).
 * A thread finds its queue through a one-entry thread-local cache keyed by
 * the context's id, which is unique for the life of the process, so a new
 * context at a freed one's address is never mistaken for it.
 */
#ifndef IOT_POSTQ_H
#define IOT_POSTQ_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx-internal.h"

#define IOT_POSTQ_SLOTS 127  /* per chunk: 127 * 16 + 8 = 2040 bytes */
#define IOT_POSTQ_TAKE  1024 /* at most this many per queue per pass */
#define IOT_POSTQ_LINE  4    /* slots per 64-byte cache line */
#define IOT_POSTQ_KEEP  32   /* drained chunks kept for reuse (64 KiB) */

typedef struct IotPostSlot {
    /* NULL until published (iot__postq_put(): a release store, read with
     * atomic loads until seen); IOT_POSTQ_BH: opaque is an IotBh to run by
     * its flags. */
    IotBhFunc *cb;
    void *opaque;
} IotPostSlot;

/* The callback of a slot that carries an IotBh: never called. */
void iot__postq_bh_tag(void *opaque);
#define IOT_POSTQ_BH (&iot__postq_bh_tag)

/* 64-byte aligned, so that slots 4k..4k+3 share one cache line. */
typedef struct IotPostChunk {
    _Alignas(64) IotPostSlot slot[IOT_POSTQ_SLOTS];
    /* [owner stores (release) before publishing a slot in the next chunk;
     * home loads (acquire)]; on `returned`, the link of that stack */
    struct IotPostChunk *next;
} IotPostChunk;

struct IotPostQ {
    uint64_t ctx_id;      /* [const] the context's id */
    atomic_int refs;      /* [any] the thread's and the context's */
    IotPostQ *tls_next;   /* [owner] the thread's queues */
    atomic_bool orphan;   /* [owner sets at exit, home reads] */
    atomic_bool ctx_gone; /* [finalize sets, owner reads] */

    /* The producer's side: [owner]. */
    _Alignas(64) IotPostChunk *p_chunk;
    unsigned p_idx;
    IotPostChunk *p_free; /* chunks taken back from `returned` */

    /* Drained chunks (their slots as the loop left them: the producer
     * clears one as it takes it up), linked through ->next: the loop
     * pushes each one (CAS), the owner takes them all at once (exchange),
     * so there is no ABA.  A chunk on it is freed only with the queue.
     * Not on the producer's line, which it writes at every post. */
    _Alignas(64) _Atomic(IotPostChunk *) returned;

    /* The consumer's side: [home]. */
    _Alignas(64) IotPostChunk *c_chunk;
    unsigned c_idx;
    uint64_t head;       /* slots taken */
    unsigned c_returned; /* pushed on `returned` since it was last empty */
    uint64_t mark;       /* published at iot__postq_mark(); 0 if made since */
    /* [postq_lock writes; the home thread walks it without the lock] */
    _Atomic(IotPostQ *) next;
};

extern IOT_TLS IotPostQ *iot__postq_last;

/* Ask for a line we are about to write, ahead of time (bh.c: a pass's
 * opaques, which their callbacks write).  A hint only. */
static inline void iot__prefetchw(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

IotPostQ *iot__postq_lookup(IotCtx *ctx); /* any thread; NULL: ENOMEM */
/* The out-of-line halves of iot__postq_push(), any thread: the first post
 * into @ctx or into a full chunk, and the fenced publication. */
int iot__postq_push_slow(IotCtx *ctx, IotBhFunc *cb, void *opaque);
/* Tests: the Nth slow push from now (1: the next) fails as out of memory,
 * as a thread's first post or a new chunk does when malloc fails. */
extern _Atomic int iot__postq_fail_push_at;
int iot__postq_push_fenced(IotCtx *ctx);

/* Owner, with room in the current chunk.  Writes the slot and publishes
 * it (release). */
static inline void iot__postq_put(IotPostQ *q, IotBhFunc *cb, void *opaque)
{
    unsigned i = q->p_idx;
    IotPostSlot *s = &q->p_chunk->slot[i];

    s->opaque = opaque;
    /* Release pairs with the acquire loads of slot_published() (postq.c):
     * the loop that sees the callback sees @opaque, every earlier slot and
     * the link to this chunk. */
    __atomic_store_n(&s->cb, cb, __ATOMIC_RELEASE);
    q->p_idx = i + 1;
}

/*
 * Any thread.  Appends (cb, opaque) to the calling thread's queue into
 * @ctx, publishes it and wakes the loop if it may be asleep.  0 or
 * -ENOMEM.
 *
 * Normally the publication (the store of the slot's callback) is followed
 * by a full barrier and a notify
 * (iot__ctx_notify_published())
 * (the Dekker pair of docs/spin/notify.promela).  While the loop is taking
 * a stream of posts it sets ctx->post_relaxed, and a producer that sees it
 * set after its store (release) does nothing more: no fence and no notify,
 * so a stream costs a plain store per post.  Such a store may still sit in
 * the producer's store buffer; the loop therefore never blocks without
 * first clearing post_relaxed and calling membarrier(), which runs a full
 * barrier on every CPU that runs one of our threads, and looking at the
 * queues again (iot__postq_relaxed_end()).  A producer whose load of
 * post_relaxed came after that barrier sees it clear and takes the fenced
 * path; one whose load came before has its store drained by the barrier.
 * The load must follow the store in program order, hence the compiler
 * barrier between them (the CPU may reorder them: that is the case the
 * membarrier covers).  Modelled: -DRELAXED in docs/spin/notify.promela.
 *
 * The fast path calls nothing but in tail position, so it saves no
 * registers on the stack: a post in a stream is the slot's two stores and
 * the producer's index.  A stream is bound by how fast the producer's
 * store buffer drains: a store to a line the loop has read waits for the
 * line to come back, and the stores behind it wait too.  So the producer
 * writes no counter that the loop reads, and clears a chunk itself before
 * reusing it (postq_grow()), so that its lines are its own when the posts
 * write them (docs/design.md, "Pacing a stream").
 */
static inline int iot__postq_push(IotCtx *ctx, IotBhFunc *cb, void *opaque)
{
    IotPostQ *q = iot__postq_last;

    if (__builtin_expect(
            !q || q->ctx_id != ctx->id || q->p_idx == IOT_POSTQ_SLOTS, 0)) {
        return iot__postq_push_slow(ctx, cb, opaque);
    }
    iot__postq_put(q, cb, opaque);
    atomic_signal_fence(memory_order_seq_cst); /* load after store */
    if (__builtin_expect(
            atomic_load_explicit(&ctx->post_relaxed, memory_order_relaxed),
            1)) {
        return 0;
    }
    return iot__postq_push_fenced(ctx);
}

/* The home thread of @ctx only (iot_ctx_current() == ctx).  As
 * iot__postq_push(), without the barrier and the notify: the loop is this
 * thread, whose next look at the queues sees its own store.  0 or
 * -ENOMEM. */
int iot__postq_push_quiet(IotCtx *ctx, IotBhFunc *cb, void *opaque);

/* Home thread.  Moves up to IOT_POSTQ_TAKE published slots of each queue
 * into @buf (grown as needed), FIFO per queue; unlinks the queues of
 * exited threads once they are empty.  Returns the number taken.  If @buf
 * cannot grow, it takes what fits and the rest waits for a later pass. */
size_t iot__postq_take(IotCtx *ctx, IotPostSlot **buf, size_t *cap);
/* Tests: the Nth growth fails (1: the next); negative: every one. */
extern int iot__postq_fail_grow_at;

/* Home thread.  Calls @visit on every published slot not yet taken, in
 * queue order, until it returns true; returns true if one did. */
bool iot__postq_scan(IotCtx *ctx, bool (*visit)(const IotPostSlot *, void *),
                     void *opaque);

/* Home thread.  _mark records what every queue has published so far;
 * _marked_pending tells whether any of that is still untaken.  A pass
 * takes at most IOT_POSTQ_TAKE slots of a queue and walks the queues that
 * existed when it began, so a BH can run before one another thread
 * scheduled earlier: an IOThread that stops marks, then polls on until
 * everything scheduled before its stop has run (iothread.c). */
void iot__postq_mark(IotCtx *ctx);
bool iot__postq_marked_pending(IotCtx *ctx);

/* Tests, any thread while the home thread is held (in a BH, or not
 * running): slots published into @ctx so far, taken or not. */
uint64_t iot__postq_published(IotCtx *ctx);

/* bh.c, home thread.  Is @slot work to run now: a one-shot, or a BH
 * scheduled and neither idle nor deleted?  (Idle BHs wait their period:
 * one that schedules itself again is always in a queue.) */
bool iot__bh_slot_due(const IotPostSlot *slot);

/* Cheap check for the busy-poll path: is an untaken slot of a queue due
 * (iot__bh_slot_due())?  Looks at the first few of each queue (idle BHs
 * in front of posts are few); more idle BHs than that in front of due
 * posts hide them from this look only, never from the timeout's scan or
 * from their notify. */
bool iot__postq_pending(IotCtx *ctx); /* home thread */
/* Home thread.  The same for the queue the latest pass took from only:
 * one slot's line per look, however many threads post. */
bool iot__postq_hot_pending(IotCtx *ctx);

/* Home thread.  Relaxed posting (see iot__postq_push()): _begin turns it
 * on after a pass that took a stream of posts; _end turns it off before
 * the loop may block, and returns true if it was on, in which case the
 * caller must look at the queues again before blocking. */
#define IOT_POSTQ_RELAXED_MIN 2 /* slots taken in one pass */
void iot__postq_relaxed_begin(IotCtx *ctx);
bool iot__postq_relaxed_end(IotCtx *ctx);
/*
 * Home thread.  Pacing: while a stream runs (posting is relaxed) on a
 * context that busy-polls, the loop looks at the queues again only
 * IOT_POSTQ_PACE_NS after a pass that took a stream's share, and waits in
 * busy polling until then (notifier_poll(), try_poll_mode()).  Every look
 * at a queue reads the line its producer is writing (the last slot line)
 * and each such read costs the producer a transfer of the line
 * back before its next store can drain: a loop that keeps up with the
 * stream by looking after every post or two costs the producer a third
 * of its rate (W2 in BENCHMARKS.md).  Looking every half microsecond
 * takes some fifty posts per look.  A post in a stream waits at most that
 * long; a post alone (a pass that took one slot) is never paced.  Only
 * while the notifier is busy-polled, which is what looks at the queues;
 * if busy polling then does not run (a handler without io_poll disables
 * it), iot_ctx_poll() looks itself rather than go round through the
 * barrier of iot__postq_relaxed_end().
 */
#define IOT_POSTQ_PACE_NS 500
static inline bool iot__postq_paced(IotCtx *ctx)
{
    /* post_relaxed first: it is never set where the context runs under
     * GLib, whose prepare and check get here without walking the list. */
    return atomic_load_explicit(&ctx->post_relaxed, memory_order_relaxed) &&
           ctx->param.max_ns != 0 && ctx->notifier_h &&
           ctx->notifier_h->in_poll_list;
}

/* Tests: 0 keeps relaxed posting off (as where membarrier is missing). */
extern int iot__postq_relaxed_allowed;
bool iot__postq_relaxed_available(void); /* membarrier is registered */

void iot__postq_ctx_init(IotCtx *ctx);
/* Last reference gone: every untaken slot goes to @drop, then each queue
 * loses the context's reference. */
void iot__postq_ctx_finalize(IotCtx *ctx, void (*drop)(IotPostSlot *));

#endif
