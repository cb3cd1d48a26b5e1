/* SPDX-License-Identifier: MIT */
/*
 * A walker count with a writer lock, for lists that the home thread walks
 * without a lock while any thread may change them.
 *
 * Walkers (readers) call iot__lockcnt_inc() before walking and
 * iot__lockcnt_dec() after; that costs one compare-and-swap and never
 * blocks unless a writer is freeing nodes at that moment.  Writers take the
 * mutex (iot__lockcnt_lock) to link or mark nodes.  A writer may unlink and
 * free a node only while it also holds the FREEING state, which it gets only
 * when no walker is inside (iot__lockcnt_try_exclusive); otherwise it leaves
 * the node for the last walker to free.
 *
 * count layout:  bit 0      FREEING: a writer or the last walker has
 *                           exclusive access; walkers wait for it to end
 *                bits 1..31 number of walkers, in units of 2
 *
 *                  mutex held   walker inside   may free nodes
 * walker           no           yes             no
 * writer           yes          maybe           only with FREEING
 */
#ifndef IOT_LOCKCNT_H
#define IOT_LOCKCNT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct IotLockCnt {
    pthread_mutex_t mutex;
    atomic_uint count;
} IotLockCnt;

void iot__lockcnt_init(IotLockCnt *l);
void iot__lockcnt_destroy(IotLockCnt *l);

/* Any thread.  Enter / leave a walk. */
void iot__lockcnt_inc(IotLockCnt *l);
void iot__lockcnt_dec(IotLockCnt *l);

/* Any thread.  The writer mutex. */
void iot__lockcnt_lock(IotLockCnt *l);
void iot__lockcnt_unlock(IotLockCnt *l);

/* Mutex held.  If no walker is inside, enter the FREEING state and return
 * true: the caller may unlink and free nodes until iot__lockcnt_end_exclusive.
 * If the caller is itself the only walker (@self_walker), that walker's
 * count is given up for the duration and restored by end_exclusive. */
bool iot__lockcnt_try_exclusive(IotLockCnt *l, bool self_walker);
void iot__lockcnt_end_exclusive(IotLockCnt *l, bool self_walker);

#endif
