/* SPDX-License-Identifier: MIT */
/*
 * fd handlers and event notifiers (section 2.4 and 2.5 of the
 * specification).
 *
 * The handler list is walked by the home thread without a lock and changed
 * by any thread under list_lock's mutex.  A change never edits a published
 * handler: it links a new one at the head and retires the old one, which
 * walkers then skip (its `deleted` flag).  A retired handler is unlinked and
 * freed at once if no walker is inside, else by the home thread when its
 * iteration ends (iot__handlers_free_deleted).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ctx-internal.h"
#include "postq.h"
#include "fdmon.h"

/* ---- event notifiers ---- */

int iot_event_init(IotEvent *e, bool active)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    if (fd < 0) {
        int fds[2];
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
            return -errno;
        }
        e->rfd = fds[0];
        e->wfd = fds[1];
    } else {
        e->rfd = e->wfd = fd;
    }
    return active ? iot_event_set(e) : 0;
}

void iot_event_cleanup(IotEvent *e)
{
    if (e->rfd >= 0) {
        close(e->rfd);
    }
    if (e->wfd >= 0 && e->wfd != e->rfd) {
        close(e->wfd);
    }
    e->rfd = e->wfd = -1;
}

int iot_event_set(IotEvent *e)
{
    static const uint64_t one = 1;
    ssize_t n;

    do {
        n = write(e->wfd, &one, e->wfd == e->rfd ? sizeof(one) : 1);
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter (or pipe) is full, so it is already set.  (The
     * context's own eventfd may be blocking, fd.c's notifier: a write
     * would then wait for a drain, after 2^64 - 2 kicks.) */
    return n < 0 && errno != EAGAIN ? -errno : 0;
}

bool iot_event_test_and_clear(IotEvent *e)
{
    char buf[512];
    bool was_set = false;
    ssize_t n;

    do {
        n = read(e->rfd, buf, sizeof(buf));
        was_set |= n > 0;
    } while ((n < 0 && errno == EINTR) || n == (ssize_t)sizeof(buf));
    return was_set;
}

int iot_event_fd(const IotEvent *e)
{
    return e->rfd;
}

/* ---- ready lists (home thread) ---- */

static void ready_unlink(IotHandler *h)
{
    IotReadyList *l = h->ready_owner;

    if (h->ready_prev) {
        h->ready_prev->ready_next = h->ready_next;
    } else {
        l->head = h->ready_next;
    }
    if (h->ready_next) {
        h->ready_next->ready_prev = h->ready_prev;
    } else {
        l->tail = h->ready_prev;
    }
    h->ready_owner = NULL;
    h->ready_prev = h->ready_next = NULL;
}

/* Appends @h; a handler still on an outer (nested) iteration's list moves. */
void iot__ready_push(IotReadyList *list, IotHandler *h)
{
    if (h->ready_owner == list) {
        return;
    }
    if (h->ready_owner) {
        ready_unlink(h);
    }
    h->ready_owner = list;
    h->ready_prev = list->tail;
    h->ready_next = NULL;
    if (list->tail) {
        list->tail->ready_next = h;
    } else {
        list->head = h;
    }
    list->tail = h;
}

IotHandler *iot__ready_pop(IotReadyList *list)
{
    IotHandler *h = list->head;

    if (h) {
        ready_unlink(h);
    }
    return h;
}

/* ---- the handler list ---- */

/* Mutex held.  The live handler of @fd, or NULL. */
static IotHandler *handler_find(IotCtx *ctx, int fd)
{
    return (unsigned)fd < ctx->fd_live_n ? ctx->fd_live[fd] : NULL;
}

/* Mutex held.  Room in fd_live for @fd; 0 or -ENOMEM. */
static int fd_live_reserve(IotCtx *ctx, int fd)
{
    unsigned n = ctx->fd_live_n ? ctx->fd_live_n : 64;
    IotHandler **v;

    if ((unsigned)fd < ctx->fd_live_n) {
        return 0;
    }
    while (n <= (unsigned)fd) {
        n *= 2;
    }
    v = realloc(ctx->fd_live, n * sizeof(*v));
    if (!v) {
        return -ENOMEM;
    }
    memset(v + ctx->fd_live_n, 0, (n - ctx->fd_live_n) * sizeof(*v));
    ctx->fd_live = v;
    ctx->fd_live_n = n;
    return 0;
}

/* Mutex held.  Puts @h at the head of the list, as the live handler of
 * its fd (fd_live_reserve() has made room). */
static void handler_link(IotCtx *ctx, IotHandler *h)
{
    IotHandler *head =
        atomic_load_explicit(&ctx->handlers, memory_order_relaxed);

    atomic_init(&h->next, head);
    h->prev = NULL;
    if (head) {
        head->prev = h;
    }
    /* Release pairs with the acquire loads of walkers: they see the
     * handler's fields once they see it in the list. */
    atomic_store_explicit(&ctx->handlers, h, memory_order_release);
    ctx->fd_live[h->fd] = h;
}

/* Mutex held, and either no walker inside (FREEING) or the home thread
 * walking.  @h, replaced by iot_ctx_set_event_poll(), has left the poll
 * list: its fd's live handler takes its place and window, so that it is
 * still polled and its io_poll_end runs when poll mode ends (the device's
 * notifications, off since io_poll_begin, would otherwise stay off for
 * good). */
static void poll_carry_over(IotCtx *ctx, IotHandler *h)
{
    IotHandler *live = handler_find(ctx, h->fd);

    h->poll_carry = false;
    if (live && live->pollable && !live->in_poll_list) {
        live->poll_ns = h->poll_ns;
        iot__poll_list_add(ctx, live);
    }
}

void iot__fd_poll_carry(IotCtx *ctx)
{
    IotHandler *h, *next;

    iot__lockcnt_lock(&ctx->list_lock);
    for (h = ctx->poll_head; h; h = next) {
        next = h->poll_next;
        /* Relaxed: `deleted` is set under the mutex we hold. */
        if (h->poll_carry &&
            atomic_load_explicit(&h->deleted, memory_order_relaxed)) {
            iot__poll_list_remove(ctx, h);
            poll_carry_over(ctx, h);
        }
    }
    iot__lockcnt_unlock(&ctx->list_lock);
}

/* Mutex held, no walker inside (FREEING).  Unlinks @h everywhere. */
static void handler_unlink(IotCtx *ctx, IotHandler *h)
{
    IotHandler *next = atomic_load_explicit(&h->next, memory_order_relaxed);

    atomic_store_explicit(h->prev ? &h->prev->next : &ctx->handlers, next,
                          memory_order_relaxed);
    if (next) {
        next->prev = h->prev;
    }
    if (h->in_poll_list) {
        iot__poll_list_remove(ctx, h);
        if (h->poll_carry) {
            poll_carry_over(ctx, h);
        }
    }
    if (h->ready_owner) {
        ready_unlink(h);
    }
}

static void handler_count(IotCtx *ctx, IotHandler *h, int delta)
{
    atomic_fetch_add_explicit(&ctx->live_cnt, delta, memory_order_relaxed);
    if (h->pollable) {
        atomic_fetch_add_explicit(&ctx->pollable_cnt, delta,
                                  memory_order_relaxed);
    } else {
        /* Not ordered against the list change on purpose (as in QEMU): a
         * stale count for a moment only costs a wasted poll or a syscall. */
        atomic_fetch_add_explicit(&ctx->poll_disable_cnt, delta,
                                  memory_order_relaxed);
    }
}

/* Mutex held.  @old is no longer live; free it now or leave it to the
 * home thread's end of iteration. */
static void handler_retire(IotCtx *ctx, IotHandler *old, bool self_walker)
{
    const IotFdmonOps *ops = iot__fdmon(ctx);

    /* Release pairs with the acquire loads of walkers (handler_live()). */
    atomic_store_explicit(&old->deleted, true, memory_order_release);
    handler_count(ctx, old, -1);
    iot__fdmon_epoll_unstale(ctx); /* before @old can be freed */
    if (old->epoll_refused) {
        old->epoll_refused = false;
        iot__fdmon_epoll_refused_gone(ctx);
    }
    if (ops->retire && ops->retire(ctx, old)) {
        return; /* the backend frees it once the kernel has let go */
    }
    if (iot__lockcnt_try_exclusive(&ctx->list_lock, self_walker)) {
        handler_unlink(ctx, old);
        iot__lockcnt_end_exclusive(&ctx->list_lock, self_walker);
        free(old);
    } else {
        old->deleted_next = ctx->deleted;
        ctx->deleted = old;
        atomic_store_explicit(&ctx->deleted_pending, true,
                              memory_order_relaxed);
    }
}

static short ops_events(const IotFdOps *ops)
{
    return (ops->read ? POLLIN | POLLHUP | POLLERR : 0) |
           (ops->write ? POLLOUT | POLLERR : 0);
}

/* Same callbacks (and event) as @h: what iot_ctx_set_event_poll() read. */
static bool event_ops_same(const IotHandler *h, const IotEvent *e,
                           const IotEventOps *ev)
{
    return h->event == e && h->ev.read == ev->read && h->ev.poll == ev->poll &&
           h->ev.poll_ready == ev->poll_ready;
}

/* Any thread.  Installs (or with no callbacks removes) the handler of @fd.
 * @expect_ev: only if the live handler is still @event's with those read,
 * poll and poll_ready callbacks, else -ESTALE and nothing changes (see
 * iot_ctx_set_event_poll()). */
static int handler_set(IotCtx *ctx, int fd, const IotFdOps *ops, void *opaque,
                       IotEvent *event, const IotEventOps *ev, bool is_notifier,
                       const IotEventOps *expect_ev)
{
    IotFdOps o = ops ? *ops : (IotFdOps){ 0 };
    IotHandler *old, *new_ = NULL;

    if (fd < 0) {
        return -EINVAL;
    }
    /* io_poll is pointless without io_poll_ready: ignore it (as QEMU). */
    if (!o.poll_ready) {
        o.poll = NULL;
    }
    if (!o.poll) {
        o.poll_ready = o.poll_begin = o.poll_end = NULL;
    }
    if (o.read || o.write || o.poll) {
        new_ = calloc(1, sizeof(*new_));
        if (!new_) {
            return -ENOMEM;
        }
        new_->fd = fd;
        new_->events = ops_events(&o);
        new_->ops = o;
        new_->opaque = event ? new_ : opaque;
        new_->event = event;
        if (ev) {
            new_->ev = *ev;
        }
        new_->is_notifier = is_notifier;
        new_->pollable = o.poll != NULL;
    }

    iot__lockcnt_lock(&ctx->list_lock);
    old = handler_find(ctx, fd);
    if (expect_ev && (!old || !event_ops_same(old, event, expect_ev))) {
        iot__lockcnt_unlock(&ctx->list_lock);
        free(new_);
        return -ESTALE;
    }
    if (!old && !new_) {
        iot__lockcnt_unlock(&ctx->list_lock);
        return 0;
    }
    /* A new fd that is not open (closed, or past any the process may
     * have): refused with a clear error, rather than watched for ever in
     * vain and fd_live grown to its number.  Only when the fd has no
     * handler yet: a handler replaced (a write interest toggled, say)
     * pays no system call.  A removal needs no open fd. */
    if (new_ && !old && fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
        iot__lockcnt_unlock(&ctx->list_lock);
        free(new_);
        return -EBADF;
    }
    if (new_ && fd_live_reserve(ctx, fd) < 0) {
        iot__lockcnt_unlock(&ctx->list_lock);
        free(new_);
        return -ENOMEM;
    }
    if (new_) {
        handler_link(ctx, new_);
        handler_count(ctx, new_, 1);
    } else {
        ctx->fd_live[fd] = NULL;
    }
    iot__fdmon(ctx)->update(ctx, old, new_);
    if (old) {
        old->poll_carry = new_ && expect_ev;
        if (old->poll_carry) {
            atomic_store_explicit(&ctx->poll_carry_pending, true,
                                  memory_order_relaxed);
        }
        handler_retire(ctx, old, false);
    }
    iot__fdmon_epoll_retry(ctx);
    iot__lockcnt_unlock(&ctx->list_lock);

    /* The loop rebuilds its fd set and re-evaluates polling.  The home
     * thread does not notify itself: that would end a busy-poll stretch
     * through the notifier's poll as if work had come (a hit); it marks
     * the change, which ends the stretch as a chore (poll.c). */
    if (iot_ctx_current() != ctx) {
        iot_ctx_notify(ctx);
    } else {
        ctx->fds_changed = true;
    }
    return 0;
}

int iot_fd_set(IotCtx *ctx, int fd, const IotFdOps *ops, void *opaque)
{
    return handler_set(ctx, fd, ops, opaque, NULL, NULL, false, NULL);
}

int iot_fd_set_handler(IotCtx *ctx, int fd, IotFdFunc *io_read,
                       IotFdFunc *io_write, IotPollFunc *io_poll,
                       IotFdFunc *io_poll_ready, void *opaque)
{
    IotFdOps ops = { .read = io_read,
                     .write = io_write,
                     .poll = io_poll,
                     .poll_ready = io_poll_ready };

    return handler_set(ctx, fd, &ops, opaque, NULL, NULL, false, NULL);
}

int64_t iot_fd_poll_window(IotCtx *ctx, int fd)
{
    IotHandler *h;
    int64_t ns = -1;

    iot__lockcnt_inc(&ctx->list_lock);
    for (h = atomic_load_explicit(&ctx->handlers, memory_order_acquire); h;
         h = atomic_load_explicit(&h->next, memory_order_acquire)) {
        if (h->fd == fd &&
            !atomic_load_explicit(&h->deleted, memory_order_acquire)) {
            ns = h->poll_ns;
            break;
        }
    }
    iot__lockcnt_dec(&ctx->list_lock);
    return ns;
}

/* Event notifier callbacks take the IotEvent: the handler's opaque is the
 * handler itself and these trampolines pass its event on. */
static void event_read(void *opaque)
{
    IotHandler *h = opaque;
    h->ev.read(h->event);
}

static bool event_poll(void *opaque)
{
    IotHandler *h = opaque;
    return h->ev.poll(h->event);
}

static void event_poll_ready(void *opaque)
{
    IotHandler *h = opaque;
    h->ev.poll_ready(h->event);
}

static void event_poll_begin(void *opaque)
{
    IotHandler *h = opaque;
    h->ev.poll_begin(h->event);
}

static void event_poll_end(void *opaque)
{
    IotHandler *h = opaque;
    h->ev.poll_end(h->event);
}

static int event_set(IotCtx *ctx, IotEvent *e, const IotEventOps *ev,
                     const IotEventOps *expect)
{
    IotFdOps ops = {
        .read = ev->read ? event_read : NULL,
        .poll = ev->poll ? event_poll : NULL,
        .poll_ready = ev->poll_ready ? event_poll_ready : NULL,
        .poll_begin = ev->poll_begin ? event_poll_begin : NULL,
        .poll_end = ev->poll_end ? event_poll_end : NULL,
    };

    return handler_set(ctx, e->rfd, &ops, NULL, e, ev, false, expect);
}

int iot_ctx_set_event(IotCtx *ctx, IotEvent *e, IotEventFunc *read,
                      IotEventPollFunc *poll, IotEventFunc *poll_ready)
{
    IotEventOps ev = { .read = read, .poll = poll, .poll_ready = poll_ready };

    return event_set(ctx, e, &ev, NULL);
}

int iot_ctx_set_event_poll(IotCtx *ctx, IotEvent *e, IotEventFunc *poll_begin,
                           IotEventFunc *poll_end)
{
    IotHandler *h;
    IotEventOps ev;
    int ret;

    /* The callbacks are read under the lock and installed under it again,
     * only if the handler has not changed meanwhile: a removal in between
     * must not be undone (its callbacks would run again).  A concurrent
     * change of the callbacks makes it read them again. */
    do {
        iot__lockcnt_lock(&ctx->list_lock);
        h = handler_find(ctx, e->rfd);
        if (!h || h->event != e) {
            iot__lockcnt_unlock(&ctx->list_lock);
            return -ENOENT;
        }
        ev = h->ev;
        iot__lockcnt_unlock(&ctx->list_lock);
        ev.poll_begin = poll_begin;
        ev.poll_end = poll_end;
        ret = event_set(ctx, e, &ev, &ev);
    } while (ret == -ESTALE);
    return ret;
}

/* ---- the context's own notifier ---- */

int iot__notifier_blocks_allowed = 1;

#ifdef RWF_NOWAIT
/* Home thread.  Reads the eventfd without blocking; the bytes read, or
 * -errno. */
static ssize_t notifier_read_nowait(int fd)
{
    uint64_t v;
    struct iovec iov = { &v, sizeof(v) };
    ssize_t n;

    while ((n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT)) < 0 && errno == EINTR) {
    }
    return n < 0 ? -errno : n;
}
#endif

/*
 * Any thread, at creation.  A loop with nothing but its notifier to watch
 * and no timeout can sleep in read(2) on the eventfd, which waits and
 * drains in one system call, where ppoll(2) and then read(2) take two
 * (a system call costs 0.4-0.7 us in a KVM guest).  That needs a blocking
 * eventfd, and every other read of it must then not block: preadv2() with
 * RWF_NOWAIT, which eventfds take since Linux 5.13.  Asked on the
 * non-blocking fd, so that the question itself cannot block: a kernel
 * that takes the flag finds the counter empty (EAGAIN), one that does not
 * refuses it (EOPNOTSUPP), and the eventfd stays non-blocking.
 */
static void notifier_try_blocking(IotCtx *ctx)
{
#ifdef RWF_NOWAIT
    int fd = ctx->notifier.rfd, flags;

    if (!iot__notifier_blocks_allowed || fd != ctx->notifier.wfd ||
        notifier_read_nowait(fd) != -EAGAIN) {
        return;
    }
    flags = fcntl(fd, F_GETFL);
    ctx->notifier_blocks =
        flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0;
#else
    (void)ctx;
#endif
}

static void notifier_read(void *opaque)
{
    IotCtx *ctx = opaque;

    if (ctx->notifier_drained) {
        ctx->notifier_drained = false; /* iot__fd_notifier_wait() did */
        return;
    }
    /* Every kick counted so far is drained now, or its write comes later
     * and leaves the eventfd readable (see need_fd_wait() in poll.c). */
    ctx->kicks_drained =
        atomic_load_explicit(&ctx->notify_kicks, memory_order_relaxed);
#ifdef RWF_NOWAIT
    if (ctx->notifier_blocks) {
        notifier_read_nowait(ctx->notifier.rfd);
        return;
    }
#endif
    iot_event_test_and_clear(&ctx->notifier);
}

/*
 * Home thread, from the poll backend's wait when the notifier is the only
 * live handler and notifier_blocks is set: the wait and the drain in one
 * system call.  With @block (an infinite timeout) it sleeps in read(2)
 * until a kick; every fd change, timer change and post notifies, so
 * nothing else can need the loop meanwhile.  Without, one read with
 * RWF_NOWAIT stands for ppoll(0) and the read after it.  A kick read is
 * handed to @ready as ppoll would hand it, marked drained so that the
 * notifier's read handler does not read again (its dispatch still does
 * what every fired handler gets: the poll list, block_ns).  The number of
 * ready handlers, or -errno as from ppoll.
 */
int iot__fd_notifier_wait(IotCtx *ctx, IotReadyList *ready, bool block)
{
#ifdef RWF_NOWAIT
    /* As in notifier_read(), the count read before the drain. */
    unsigned long kicks =
        atomic_load_explicit(&ctx->notify_kicks, memory_order_relaxed);
    ssize_t n;

    if (block) {
        uint64_t v;

        /* Single writer; tests wait for it to know the loop is here. */
        atomic_store_explicit(
            &ctx->notifier_sleeps,
            atomic_load_explicit(&ctx->notifier_sleeps, memory_order_relaxed) +
                1,
            memory_order_relaxed);
        n = read(ctx->notifier.rfd, &v, sizeof(v)) < 0 ? -errno : 1;
    } else {
        n = notifier_read_nowait(ctx->notifier.rfd);
    }
    if (n == -EAGAIN) {
        iot__fd_notifier_quiet(ctx, kicks); /* empty */
        return 0;
    }
    if (n < 0) {
        return (int)n;
    }
    ctx->kicks_drained = kicks;
    ctx->notifier_drained = true;
    ctx->notifier_h->revents = POLLIN;
    iot__ready_push(ready, ctx->notifier_h);
    return 1;
#else
    (void)ctx;
    (void)ready;
    (void)block;
    return -ENOSYS;
#endif
}

/*
 * Home thread, from a backend's wait that watched the notifier (level-
 * triggered) and did not find it readable.  Every kick counted before the
 * wait began (@kicks, read then) had written the eventfd before, as kicks
 * are counted after their write, so those writes were drained, or the
 * wait would have seen the eventfd readable.  Catches kicks_drained up
 * after a drain that came between a producer's write and its count, which
 * otherwise made every later non-blocking iteration look at fds in vain
 * until the next kick (need_fd_wait() in poll.c).
 */
void iot__fd_notifier_quiet(IotCtx *ctx, unsigned long kicks)
{
    ctx->kicks_drained = kicks;
}

/* Busy polling sees iot_ctx_notify() without a system call.  Relaxed is
 * enough: the loop's accept exchange orders what it reads afterwards.
 *
 * It also looks at the next slot of the queue the latest pass took from
 * (the last one in list order that gave slots).  A post publishes its
 * slot before it sets `notified`, so a lone post from that thread is seen
 * one store sooner, and its notify lands off the hand-off's path (the next
 * iteration accepts it and finds nothing).
 * Other threads' posts are seen by their notify: a round reads one line,
 * however many threads post.  Posts made while posting is relaxed notify
 * nobody: every queue is looked at once the stream's pace allows
 * (postq.h; by busy polling's clock, which costs no call here). */
static bool notifier_poll(void *opaque)
{
    IotCtx *ctx = opaque;

    if (atomic_load_explicit(&ctx->notified, memory_order_relaxed)) {
        return true;
    }
    if (!atomic_load_explicit(&ctx->post_relaxed, memory_order_relaxed)) {
        return iot__postq_hot_pending(ctx);
    }
    return ctx->poll_now_ns >= ctx->postq_look_ns && iot__postq_pending(ctx);
}

static void notifier_poll_ready(void *opaque)
{
    (void)opaque;
}

int iot__fd_notifier_init(IotCtx *ctx)
{
    IotFdOps ops = { .read = notifier_read,
                     .poll = notifier_poll,
                     .poll_ready = notifier_poll_ready };
    int ret = iot_event_init(&ctx->notifier, false);

    if (ret < 0) {
        ctx->notifier.rfd = ctx->notifier.wfd = -1;
        return ret;
    }
    notifier_try_blocking(ctx);
    ret =
        handler_set(ctx, ctx->notifier.rfd, &ops, ctx, NULL, NULL, true, NULL);
    if (ret < 0) {
        iot_event_cleanup(&ctx->notifier);
        return ret;
    }
    /* No other thread can see the context yet. */
    ctx->notifier_h = handler_find(ctx, ctx->notifier.rfd);
    /* Polled from the start and for good (poll.c keeps it there): busy
     * polling sees a notify only through it, and a notify that comes
     * while the loop polls writes no eventfd.  Joining on its first fd
     * event, as other handlers do, a context whose notifies had all come
     * while it was awake, or that io_uring's idle rule had left, polled
     * a whole window blind to a property change or a stop. */
    iot__poll_list_add(ctx, ctx->notifier_h);
    return 0;
}

/* Home thread, as the only walker, at the end of an iteration. */
void iot__handlers_free_deleted(IotCtx *ctx)
{
    IotHandler *h, *next;

    if (!atomic_load_explicit(&ctx->deleted_pending, memory_order_relaxed)) {
        return;
    }
    iot__lockcnt_lock(&ctx->list_lock);
    if (!iot__lockcnt_try_exclusive(&ctx->list_lock, true)) {
        /* A nested iteration: the outermost one frees. */
        iot__lockcnt_unlock(&ctx->list_lock);
        return;
    }
    for (h = ctx->deleted; h; h = next) {
        next = h->deleted_next;
        handler_unlink(ctx, h);
        free(h);
    }
    ctx->deleted = NULL;
    atomic_store_explicit(&ctx->deleted_pending, false, memory_order_relaxed);
    iot__lockcnt_end_exclusive(&ctx->list_lock, true);
    iot__lockcnt_unlock(&ctx->list_lock);
}

/* Finalize: no walker, no writer.  Frees every handler. */
void iot__fd_ctx_finalize(IotCtx *ctx)
{
    IotHandler *h, *next;

    for (h = atomic_load(&ctx->handlers); h; h = next) {
        next = atomic_load(&h->next);
        free(h);
    }
    atomic_store(&ctx->handlers, NULL);
    ctx->deleted = NULL;
    free(ctx->fd_live);
    ctx->fd_live = NULL;
    ctx->fd_live_n = 0;
    ctx->poll_head = NULL;
    ctx->ring_head = NULL;
    iot_event_cleanup(&ctx->notifier);
}
