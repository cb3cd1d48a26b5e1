/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iothread/error.h>

struct IotError {
    int err;
    char *msg;
};

/* Out of memory while reporting an error: this one stands in for it.  It
 * is never freed, and its message says what happened. */
static IotError error_oom = { ENOMEM, (char *)"out of memory" };

/* Tests: the next error fails to allocate, as when memory is exhausted. */
_Atomic int iot__error_fail_alloc;

__attribute__((format(printf, 3, 0))) static void
error_setv(IotError **errp, int err, const char *fmt, va_list ap)
{
    IotError *e;
    char *msg = NULL;

    if (!errp || *errp) {
        return;
    }
    if (vasprintf(&msg, fmt, ap) < 0) {
        msg = NULL;
    }
    if (msg && err) {
        char *full = NULL;
        if (asprintf(&full, "%s: %s", msg, strerror(err)) >= 0) {
            free(msg);
            msg = full;
        }
    }
    e = atomic_load_explicit(&iot__error_fail_alloc, memory_order_relaxed) &&
                atomic_exchange_explicit(&iot__error_fail_alloc, 0,
                                         memory_order_relaxed)
            ? NULL
            : malloc(sizeof(*e));
    if (!e || !msg) {
        free(msg);
        free(e);
        *errp = &error_oom;
        return;
    }
    e->err = err;
    e->msg = msg;
    *errp = e;
}

void iot_error_setg(IotError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_setv(errp, 0, fmt, ap);
    va_end(ap);
}

void iot_error_setg_errno(IotError **errp, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    /* INT_MIN has no positive twin: no errno is that anyway. */
    error_setv(errp, err == INT_MIN ? 0 : err < 0 ? -err : err, fmt, ap);
    va_end(ap);
}

const char *iot_error_message(const IotError *err)
{
    return err && err->msg ? err->msg : "";
}

int iot_error_errno(const IotError *err)
{
    return err ? err->err : 0;
}

void iot_error_free(IotError *err)
{
    if (err && err != &error_oom) {
        free(err->msg);
        free(err);
    }
}

void iot_error_propagate(IotError **dst, IotError *local)
{
    if (!local) {
        return;
    }
    if (dst && !*dst) {
        *dst = local;
    } else {
        iot_error_free(local);
    }
}

void iot_error_report_free(const char *prefix, IotError *err)
{
    if (prefix && *prefix) {
        fprintf(stderr, "%s: %s\n", prefix, iot_error_message(err));
    } else {
        fprintf(stderr, "%s\n", iot_error_message(err));
    }
    iot_error_free(err);
}
