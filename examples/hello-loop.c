/* SPDX-License-Identifier: MIT */
/*
 * A loop thread and a producer: the main thread runs a context, another
 * thread schedules bottom halves into it, and a timer ends the program.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <iothread/all.h>

static int ran;
static bool done;

static void hello(void *opaque)
{
    ran++;
    printf("BH %d runs on the loop thread\n", *(int *)opaque);
}

static void *producer(void *opaque)
{
    static int ids[3] = { 1, 2, 3 };
    IotCtx *ctx = opaque;

    for (int i = 0; i < 3; i++) {
        iot_bh_schedule_oneshot(ctx, hello, &ids[i]);
    }
    return NULL;
}

static void stop(void *opaque)
{
    (void)opaque;
    printf("timer fired after the BHs: stopping\n");
    done = true;
}

int main(void)
{
    IotError *err = NULL;
    IotCtx *ctx = iot_ctx_main_init(&err);
    IotTimer *timer;
    pthread_t tid;

    if (!ctx) {
        iot_error_report_free("hello-loop", err);
        return 1;
    }
    timer = iot_timer_new(ctx, IOT_CLOCK_MONOTONIC, stop, NULL);
    iot_timer_mod(timer,
                  iot_clock_ns(IOT_CLOCK_MONOTONIC) + 50 * IOT_NS_PER_MS);
    pthread_create(&tid, NULL, producer, ctx);
    while (!done) {
        iot_ctx_poll(ctx, true);
    }
    pthread_join(tid, NULL);
    printf("%d BHs ran, backend %s\n", ran, iot_ctx_fdmon_name(ctx));
    iot_timer_free(timer);
    iot_ctx_main_fini();
    return ran == 3 ? 0 : 1;
}
