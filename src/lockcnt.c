/* SPDX-License-Identifier: MIT */
#include "lockcnt.h"

#include <sched.h>

#define LOCKCNT_FREEING 1u
#define LOCKCNT_WALKER  2u

void iot__lockcnt_init(IotLockCnt *l)
{
    pthread_mutex_init(&l->mutex, NULL);
    atomic_init(&l->count, 0);
}

void iot__lockcnt_destroy(IotLockCnt *l)
{
    pthread_mutex_destroy(&l->mutex);
}

void iot__lockcnt_inc(IotLockCnt *l)
{
    unsigned c = atomic_load_explicit(&l->count, memory_order_relaxed);

    for (;;) {
        if (c & LOCKCNT_FREEING) {
            /* A writer is freeing nodes; it holds the mutex for all of
             * that, so waiting for the mutex waits for it to finish. */
            pthread_mutex_lock(&l->mutex);
            pthread_mutex_unlock(&l->mutex);
            c = atomic_load_explicit(&l->count, memory_order_relaxed);
            continue;
        }
        /* Acquire pairs with the release in iot__lockcnt_end_exclusive():
         * the walk sees the list as the freeing writer left it. */
        if (atomic_compare_exchange_weak_explicit(
                &l->count, &c, c + LOCKCNT_WALKER, memory_order_acquire,
                memory_order_relaxed)) {
            return;
        }
    }
}

void iot__lockcnt_dec(IotLockCnt *l)
{
    /* Release pairs with the acquire CAS in iot__lockcnt_try_exclusive():
     * a writer that frees a node does so after this walk's last read. */
    atomic_fetch_sub_explicit(&l->count, LOCKCNT_WALKER, memory_order_release);
}

void iot__lockcnt_lock(IotLockCnt *l)
{
    pthread_mutex_lock(&l->mutex);
}

void iot__lockcnt_unlock(IotLockCnt *l)
{
    pthread_mutex_unlock(&l->mutex);
}

bool iot__lockcnt_try_exclusive(IotLockCnt *l, bool self_walker)
{
    unsigned expect = self_walker ? LOCKCNT_WALKER : 0;

    return atomic_compare_exchange_strong_explicit(
        &l->count, &expect, LOCKCNT_FREEING, memory_order_acquire,
        memory_order_relaxed);
}

void iot__lockcnt_end_exclusive(IotLockCnt *l, bool self_walker)
{
    /* Release pairs with the acquire CAS in iot__lockcnt_inc(). */
    atomic_store_explicit(&l->count, self_walker ? LOCKCNT_WALKER : 0,
                          memory_order_release);
}
