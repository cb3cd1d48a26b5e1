/* SPDX-License-Identifier: MIT */
/* Choosing the fd monitoring backend. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdmon.h"

/* AUTO: the IOTHREAD_FDMON environment variable, if set, decides. */
static int kind_from_env(IotFdmonKind *kind, IotError **errp)
{
    const char *env = getenv("IOTHREAD_FDMON");

    if (!env || !*env || !strcmp(env, "auto")) {
        *kind = IOT_FDMON_AUTO;
    } else if (!strcmp(env, "poll")) {
        *kind = IOT_FDMON_POLL;
    } else if (!strcmp(env, "epoll")) {
        *kind = IOT_FDMON_EPOLL;
    } else {
        iot_error_setg(errp,
                       "IOTHREAD_FDMON: unknown backend '%s' "
                       "(expected auto, poll or epoll)",
                       env);
        return -EINVAL;
    }
    return 0;
}

int iot__fdmon_setup(IotCtx *ctx, IotFdmonKind kind, IotError **errp)
{
    int ret;

    if (kind == IOT_FDMON_AUTO && kind_from_env(&kind, errp) < 0) {
        return -EINVAL;
    }
    if ((unsigned)kind > IOT_FDMON_EPOLL) {
        iot_error_setg(errp, "unknown fd monitoring backend %d", (int)kind);
        return -EINVAL;
    }
    ctx->fdmon_kind = kind;
    atomic_init(&ctx->fdmon, &iot__fdmon_poll_ops);
    if (kind == IOT_FDMON_EPOLL) {
        ret = iot__fdmon_epoll_enable(ctx);
        if (ret < 0) {
            iot_error_setg_errno(errp, -ret, "Failed to create epoll instance");
            return ret;
        }
    }
    return 0;
}

void iot__fdmon_teardown(IotCtx *ctx)
{
    if (ctx->epollfd >= 0) {
        close(ctx->epollfd);
        ctx->epollfd = -1;
    }
}
