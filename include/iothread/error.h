/* SPDX-License-Identifier: MIT */
/*
 * libiothread: error reporting.
 *
 * Two conventions, one per layer:
 *  - hot paths (scheduling, fd handlers, timers, poll) return 0 or a
 *    negative errno value and never allocate an error;
 *  - setup and management paths (creating a context or an IOThread,
 *    setting properties) take an IotError ** as their last argument and
 *    fill it with a human-readable message.  Passing NULL ignores the
 *    error.  On success *errp is left untouched.
 */
#ifndef IOTHREAD_ERROR_H
#define IOTHREAD_ERROR_H

#include <stdarg.h>
#include <iothread/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct IotError IotError;

/* Any thread.  Sets *errp to a new error unless errp is NULL or *errp is
 * already set (the first error wins).  @err is a positive errno value or 0. */
IOT_API void iot_error_setg(IotError **errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
IOT_API void iot_error_setg_errno(IotError **errp, int err, const char *fmt,
                                  ...) __attribute__((format(printf, 3, 4)));

/* The message, valid until iot_error_free(). */
IOT_API const char *iot_error_message(const IotError *err);
/* The errno value recorded with the error, or 0. */
IOT_API int iot_error_errno(const IotError *err);
IOT_API void iot_error_free(IotError *err);

/* Moves @local into *dst (or frees it if dst is NULL or *dst is set). */
IOT_API void iot_error_propagate(IotError **dst, IotError *local);

/* Prints "prefix: message" to stderr, then frees the error. */
IOT_API void iot_error_report_free(const char *prefix, IotError *err);

#ifdef __cplusplus
}
#endif
#endif
