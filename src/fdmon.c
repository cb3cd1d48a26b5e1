/* SPDX-License-Identifier: MIT */
/* Choosing the fd monitoring backend. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdmon.h"

int64_t iot__fdmon_retry_ns = IOT_FDMON_RETRY_NS;

/* AUTO: the IOTHREAD_FDMON environment variable, if set, decides. */
static int kind_from_env(IotFdmonKind *kind, IotError **errp)
{
    static const char *const names[] = {
        [IOT_FDMON_AUTO] = "auto",
        [IOT_FDMON_POLL] = "poll",
        [IOT_FDMON_EPOLL] = "epoll",
        [IOT_FDMON_IO_URING] = "io_uring",
    };
    const char *env = getenv("IOTHREAD_FDMON");

    *kind = IOT_FDMON_AUTO;
    if (!env || !*env) {
        return 0;
    }
    for (unsigned k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        if (!strcmp(env, names[k])) {
            *kind = (IotFdmonKind)k;
            return 0;
        }
    }
    iot_error_setg(errp,
                   "IOTHREAD_FDMON: unknown backend '%s' (expected "
                   "auto, poll, epoll or io_uring)",
                   env);
    return -EINVAL;
}

int iot__fdmon_setup(IotCtx *ctx, IotFdmonKind kind, IotError **errp)
{
    int ret;

    if (kind == IOT_FDMON_AUTO && kind_from_env(&kind, errp) < 0) {
        return -EINVAL;
    }
    if ((unsigned)kind > IOT_FDMON_IO_URING) {
        iot_error_setg(errp, "unknown fd monitoring backend %d", (int)kind);
        return -EINVAL;
    }
    ctx->fdmon_kind = kind;
    atomic_init(&ctx->fdmon, &iot__fdmon_poll_ops);
    switch (kind) {
    case IOT_FDMON_AUTO:
        /* poll until there is an fd to watch (fdmon-poll.c). */
        return 0;
    case IOT_FDMON_IO_URING:
        ret = iot__fdmon_io_uring_setup(ctx);
        if (ret < 0) {
            iot_error_setg_errno(errp, -ret, "io_uring is not available");
        }
        return ret;
    case IOT_FDMON_EPOLL:
        ret = iot__fdmon_epoll_enable(ctx);
        if (ret < 0) {
            iot_error_setg_errno(errp, -ret, "Failed to create epoll instance");
        }
        return ret;
    default:
        return 0;
    }
}

void iot__fdmon_teardown(IotCtx *ctx)
{
    iot__fdmon_io_uring_teardown(ctx);
    iot__fdmon_epoll_reap(ctx);
    if (ctx->epollfd >= 0) {
        close(ctx->epollfd);
        ctx->epollfd = -1;
    }
}
