/* SPDX-License-Identifier: MIT */
/*
 * libiothread: IOThread objects (sections 1 and 6 of the specification).
 *
 * An IOThread is a named OS thread ("IO <id>") that runs one loop context
 * for as long as it lives.  It has properties that can be read and changed
 * by name while it runs:
 *
 *   name             default  range                meaning
 *   poll-max-ns      32768    0..INT64_MAX         longest busy poll, 0 = off
 *   poll-grow        0        0..INT64_MAX         window multiplier, 0 = 2
 *   poll-shrink      0        0..INT64_MAX         window divisor, 0 = reset
 *   aio-max-batch    0        0..INT64_MAX         I/O batch cap, 0 = default
 *   thread-pool-min  0        0..INT_MAX, <= max   pool workers kept alive
 *   thread-pool-max  64       1..INT_MAX           most pool workers
 *   cpu-affinity     ""       a CPU list "0-3,6"   "" = inherited
 *
 * Better than QEMU on purpose: a set is validated completely before
 * anything is stored and applied inside the IOThread, all or nothing; a
 * failed set changes nothing.  Changing aio-max-batch or the pool sizes
 * does not reset the adaptive poll windows.  An IOThread that someone
 * uses (iot_thread_use) cannot be destroyed.
 */
#ifndef IOTHREAD_IOTHREAD_H
#define IOTHREAD_IOTHREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <iothread/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct IotThread IotThread;
/* A set of property values to create an IOThread with. */
typedef struct IotThreadProps IotThreadProps;

#define IOT_THREAD_POLL_MAX_NS_DEFAULT 32768
/* The Linux limit on thread names, without the terminating NUL. */
#define IOT_THREAD_NAME_MAX 15

typedef enum IotPropType { IOT_PROP_INT, IOT_PROP_STR } IotPropType;

typedef struct IotPropInfo {
    const char *name;
    IotPropType type;
    const char *description;
} IotPropInfo;

/* Any thread.  The property table, for listings. */
IOT_API const IotPropInfo *iot_thread_props_info(size_t *count);

/* Any thread.  Property sets for creation.  The setters check the name
 * against the table ("Property 'iothread.NAME' not found"), a negative
 * value (QEMU's "NAME value must be in range [0, INT64_MAX]") and the
 * form of a CPU list; the pool sizes' own ranges (thread-pool-max of 0,
 * either one past INT_MAX) and their cross-check are judged at creation,
 * or by iot_thread_set_*() against the stored values, as QEMU does. */
IOT_API IotThreadProps *iot_thread_props_new(void);
IOT_API void iot_thread_props_free(IotThreadProps *props);
IOT_API int iot_thread_props_set_int(IotThreadProps *props, const char *name,
                                     int64_t value, IotError **errp);
IOT_API int iot_thread_props_set_str(IotThreadProps *props, const char *name,
                                     const char *value, IotError **errp);

/* Any thread.  Creates and starts an IOThread: makes its context, applies
 * every property, starts the thread named "IO <id>" (cut to 15
 * characters) and returns once the thread has published its TID.  @props
 * may be NULL for the defaults.  On failure returns NULL with *errp set,
 * and leaves nothing behind: no thread, no registry entry, no fd (but for
 * an idle io_uring ring kept for the next context, docs/design.md).
 *
 * User-created IOThreads are registered: listed by iot_thread_query_json()
 * and found by iot_thread_find().  @id must be an identifier (a letter,
 * then letters, digits, '-', '.', '_') unique among them. */
IOT_API IotThread *iot_thread_new(const char *id, const IotThreadProps *props,
                                  IotError **errp);
/* The same, but internal: neither listed nor found (as QEMU's). */
IOT_API IotThread *iot_thread_new_internal(const char *id,
                                           const IotThreadProps *props,
                                           IotError **errp);

/* Any thread but the IOThread itself or one of its pool workers (that
 * returns -EDEADLK with an error).  Stops the loop through a BH made with
 * the IOThread (so a stop needs no memory) and joins it; every BH scheduled
 * before that one, from any thread, runs before the thread ends (but for one
 * whose first schedule was still being published: the same window as QEMU's).
 * Idempotent: stopping a stopped IOThread returns 0; a concurrent second
 * stopper returns once the first one's join has.  Called on another
 * IOThread, a stopper's wait runs that thread's own loop (nested, as
 * QEMU's AIO_WAIT_WHILE), so that the two cannot wait for each other.
 * Two stops that would wait for each other's end return -EDEADLK with an
 * error instead: a stop of @t made on an IOThread that @t is stopping
 * (directly, or through IOThreads that stop one another), and a stop made
 * inside that wait by the thread already stopping @t (its join comes only
 * after that call returns). */
IOT_API int iot_thread_stop(IotThread *t, IotError **errp);

/* Any thread but the IOThread itself or one of its pool workers (those get
 * -EDEADLK and an error).  Unregisters, stops and drops the creator's
 * reference, which may be the last: a second destroy (-ENOENT) needs a
 * reference of the caller's own (iot_thread_ref()).  Refused (-EBUSY,
 * nothing done) while iot_thread_use() holds it; an error of
 * iot_thread_stop() is returned with nothing destroyed. */
IOT_API int iot_thread_destroy(IotThread *t, IotError **errp);

/* Any thread.  References keep the object (not the thread) alive.  The
 * last unref stops the thread and frees the object; a registered one
 * leaves the registry then, as if destroyed. */
IOT_API void iot_thread_ref(IotThread *t);
IOT_API void iot_thread_unref(IotThread *t);

/* Any thread.  "In use" marks: a user (an export, a device) that needs
 * the IOThread running.  Destroy fails while any is held. */
IOT_API void iot_thread_use(IotThread *t);
IOT_API void iot_thread_unuse(IotThread *t);
IOT_API unsigned iot_thread_users(IotThread *t);

/* Any thread.  The registered IOThread with this id, with a new
 * reference (iot_thread_unref it), or NULL. */
IOT_API IotThread *iot_thread_find(const char *id);

/* Any thread.  The user-created IOThreads, in the order of
 * iot_thread_query_json(): stores the first @max of them in @out, each
 * with a new reference (iot_thread_unref it), and returns how many there
 * are (more than @max if @out was too short).  Allocates nothing. */
IOT_API size_t iot_thread_list(IotThread **out, size_t max);

/* Any thread.  The user-created IOThreads as a JSON array of QMP's
 * IOThreadInfo objects ("id", "thread-id", "poll-max-ns", "poll-grow",
 * "poll-shrink", "aio-max-batch"), configured values.  Free with free(). */
IOT_API char *iot_thread_query_json(void);

/* Any thread.  True if @id is an identifier iot_thread_new() takes: an
 * ASCII letter, then ASCII letters, digits, '-', '.' and '_' (QEMU's
 * id_wellformed()).  For callers that check an id before anything else,
 * as QEMU's object-add does. */
IOT_API bool iot_thread_id_valid(const char *id);

/* Any thread. */
IOT_API const char *iot_thread_id(const IotThread *t);
IOT_API pid_t iot_thread_tid(const IotThread *t);
/* Any thread.  The context; no reference is taken. */
IOT_API IotCtx *iot_thread_ctx(const IotThread *t);
IOT_API bool iot_thread_is_internal(const IotThread *t);

/* Any thread.  True only on an IOThread's own thread.  (QEMU's
 * qemu_in_iothread() is also true on threads that have no context at all,
 * such as pool workers; this is not.) */
IOT_API bool iot_in_iothread(void);
/* Any thread.  The IOThread running the calling thread, or NULL. */
IOT_API IotThread *iot_thread_self(void);

/* Any thread.  The statistics of the IOThread's context (ctx.h). */
IOT_API void iot_thread_get_stats(IotThread *t, IotCtxStats *stats);

/* Any thread.  Statistics of the user-created IOThreads as a JSON array,
 * one object per IOThread with "id", "thread-id", "cpu-affinity" and the
 * counters under kebab-case names ("backend", "iterations", "busy-ns",
 * "idle-ns", "poll-hits", "poll-misses", "poll-ns", "poll-window-ns",
 * "notify-sent", "notify-elided", "bh-runs", "fd-events", "timer-fires",
 * "pool-threads", "pool-queued", "pool-active").  With @id, only that one
 * (an empty array if there is none).  Free with free(). */
IOT_API char *iot_thread_stats_json(const char *id);

/* Any thread.  Reads a property by name.  get_str returns a new string
 * (free()) for any property, an int's in decimal. */
IOT_API int iot_thread_get_int(IotThread *t, const char *name, int64_t *value,
                               IotError **errp);
IOT_API char *iot_thread_get_str(IotThread *t, const char *name,
                                 IotError **errp);

/* Any thread.  Sets a property: validated against every stored value,
 * then applied inside the IOThread (the caller waits) all or nothing.  On
 * failure nothing changes.  Called on another IOThread, the wait runs
 * that thread's own loop (nested, as QEMU's AIO_WAIT_WHILE), so two
 * IOThreads may set each other's properties at once. */
IOT_API int iot_thread_set_int(IotThread *t, const char *name, int64_t value,
                               IotError **errp);
IOT_API int iot_thread_set_str(IotThread *t, const char *name,
                               const char *value, IotError **errp);
/* Any thread.  Several properties at once, all or nothing; NULL changes
 * nothing.  (A NULL name is a property not found; a NULL string value is
 * refused with QEMU's type error.) */
IOT_API int iot_thread_set_props(IotThread *t, const IotThreadProps *props,
                                 IotError **errp);

#ifdef __cplusplus
}
#endif
#endif
