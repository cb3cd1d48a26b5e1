/* SPDX-License-Identifier: MIT */
/*
 * A small test harness: cases are registered by path ("/aio/bh/schedule"),
 * each runs in its own forked process under a time limit, and the results
 * are printed as TAP, ending with "# N passed, N failed".
 *
 *   ./test-bh                 run every case
 *   ./test-bh /aio/bh/        run the cases whose path starts with this
 *   IOT_TEST_TIMEOUT=60       seconds per case (default 60)
 *   IOT_TEST_LONG=1           long mode for stress cases (t_long())
 */
#ifndef IOT_TEST_HARNESS_H
#define IOT_TEST_HARNESS_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void TestFunc(void);

/* Register a case.  Call from main() before t_run(). */
void t_add(const char *path, TestFunc *fn);
/* Register a case that passes only if it aborts (SIGABRT) and its stderr
 * contains @stderr_needle. */
void t_add_abort(const char *path, TestFunc *fn, const char *stderr_needle);
/* Run the registered cases; returns the exit status for main(). */
int t_run(int argc, char **argv);

/* True when IOT_TEST_LONG is set: stress cases run their long mode. */
bool t_long(void);
/* A divisor for stress sizes in slow (sanitizer) builds: IOT_TEST_SLOW. */
long t_scale(long quick, long slow_divisor);

/* CLOCK_MONOTONIC in ns. */
int64_t t_now_ns(void);

/* Is thread @tid of this process asleep ('S') in the kernel? */
bool t_thread_sleeping(int tid);

void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
/* Ends the case as skipped (what it needs is not on this machine): it is
 * reported "ok N path # SKIP reason" and counted apart, neither passed
 * nor failed.  Whatever the case checked before the skip still had to
 * hold. */
void t_skip(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

#define T_ASSERT(cond)                                                         \
    do {                                                                       \
        if (!(cond)) {                                                         \
            t_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);         \
        }                                                                      \
    } while (0)

#define T_ASSERT_EQ(a, b)                                                      \
    do {                                                                       \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                          \
        if (a_ != b_) {                                                        \
            t_fail(__FILE__, __LINE__, "%s == %s: %" PRId64 " != %" PRId64,    \
                   #a, #b, a_, b_);                                            \
        }                                                                      \
    } while (0)

#define T_ASSERT_TRUE(x)  T_ASSERT_EQ(!!(x), 1)
#define T_ASSERT_FALSE(x) T_ASSERT_EQ(!!(x), 0)

#define T_ASSERT_STR(a, b)                                                     \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (!a_ || !b_ || strcmp(a_, b_)) {                                    \
            t_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,   \
                   a_ ? a_ : "(null)", b_ ? b_ : "(null)");                    \
        }                                                                      \
    } while (0)

#endif
