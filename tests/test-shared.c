/* SPDX-License-Identifier: MIT */
/*
 * The shared library, loaded with dlopen() as a plugin would: an IOThread
 * made through it runs one-shot BHs posted from several threads (the post
 * queues live in thread-local state, whose TLS model the shared library
 * chooses, src/meson.build), and dlclose() leaves it loaded (nodelete:
 * the queues' thread-exit destructor must stay), so threads that exit
 * afterwards do not crash.
 *
 * The library is found through $LIBIOTHREAD_SO (meson test), else next to
 * this binary in ../src.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iothread/all.h>

#include "harness.h"

typedef struct Lib {
    void *dl;
    IotThread *(*thread_new)(const char *, const IotThreadProps *, IotError **);
    IotCtx *(*thread_ctx)(IotThread *);
    int (*thread_destroy)(IotThread *, IotError **);
    int (*post)(IotCtx *, IotBhFunc *, void *, const char *);
} Lib;

static Lib lib;
static char lib_path[PATH_MAX];

static void *sym(const char *name)
{
    void *p = dlsym(lib.dl, name);

    if (!p) {
        t_fail(__FILE__, __LINE__, "dlsym(%s): %s", name, dlerror());
    }
    return p;
}

static void lib_open(void)
{
    const char *env = getenv("LIBIOTHREAD_SO");
    char *path = lib_path, *slash;
    size_t size = sizeof(lib_path);
    ssize_t n;

    if (env && *env) {
        snprintf(path, size, "%s", env);
    } else {
        n = readlink("/proc/self/exe", path, size - 64);
        T_ASSERT(n > 0);
        path[n] = 0;
        slash = strrchr(path, '/');
        T_ASSERT(slash != NULL);
        strcpy(slash, "/../src/libiothread.so.0");
    }
    lib.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib.dl) {
        t_fail(__FILE__, __LINE__, "dlopen(%s): %s", path, dlerror());
    }
    lib.thread_new = sym("iot_thread_new");
    lib.thread_ctx = sym("iot_thread_ctx");
    lib.thread_destroy = sym("iot_thread_destroy");
    lib.post = sym("iot_bh_schedule_oneshot_full");
}

enum { PRODUCERS = 4, POSTS = 10000 };

static atomic_long ran;

static void count_cb(void *opaque)
{
    (void)opaque;
    atomic_fetch_add(&ran, 1);
}

static void *producer(void *opaque)
{
    IotCtx *ctx = opaque;

    for (int i = 0; i < POSTS; i++) {
        T_ASSERT_EQ(lib.post(ctx, count_cb, NULL, "count_cb"), 0);
    }
    return NULL;
}

/* A thread that posted, then waits until the library was closed before it
 * exits: its post queue's thread-exit destructor is library code. */
static sem_t late_posted, late_go;

static void *late_poster(void *opaque)
{
    T_ASSERT_EQ(lib.post(opaque, count_cb, NULL, "count_cb"), 0);
    sem_post(&late_posted);
    while (sem_wait(&late_go) != 0) {
    }
    return NULL;
}

static void test_dlopen_posts(void)
{
    pthread_t tid[PRODUCERS], late;
    IotError *err = NULL;
    IotThread *t;
    IotCtx *ctx;
    int64_t deadline = t_now_ns() + 30 * IOT_NS_PER_S;
    long want = PRODUCERS * POSTS + 1;

    lib_open();
    t = lib.thread_new("shared0", NULL, &err);
    T_ASSERT(t != NULL);
    ctx = lib.thread_ctx(t);
    sem_init(&late_posted, 0, 0);
    sem_init(&late_go, 0, 0);
    T_ASSERT_EQ(pthread_create(&late, NULL, late_poster, ctx), 0);
    for (int i = 0; i < PRODUCERS; i++) {
        T_ASSERT_EQ(pthread_create(&tid[i], NULL, producer, ctx), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        T_ASSERT_EQ(pthread_join(tid[i], NULL), 0);
    }
    while (atomic_load(&ran) < want) {
        if (t_now_ns() > deadline) {
            t_fail(__FILE__, __LINE__, "%ld of %ld posts ran",
                   atomic_load(&ran), want);
        }
        sched_yield();
    }
    /* Its post has returned (not only run) before the IOThread goes. */
    while (sem_wait(&late_posted) != 0) {
    }
    T_ASSERT_EQ(lib.thread_destroy(t, &err), 0);
    T_ASSERT_EQ(atomic_load(&ran), want);

    /* nodelete: closing it leaves it loaded, and the waiting thread's
     * exit runs its destructor safely. */
    T_ASSERT_EQ(dlclose(lib.dl), 0);
    T_ASSERT(dlopen(lib_path, RTLD_NOW | RTLD_NOLOAD) != NULL);
    sem_post(&late_go);
    T_ASSERT_EQ(pthread_join(late, NULL), 0);
    sem_destroy(&late_go);
    sem_destroy(&late_posted);
}

int main(int argc, char **argv)
{
    t_add("/shared/dlopen-posts", test_dlopen_posts);
    return t_run(argc, argv);
}
