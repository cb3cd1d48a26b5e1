/* SPDX-License-Identifier: MIT */
/*
 * libiothread: GLib integration (section 6 of the specification).  Built
 * when glib-2.0 is found; IOT_HAVE_GLIB is then defined to 1 here.
 */
#ifndef IOTHREAD_GLIB_H
#define IOTHREAD_GLIB_H

#include <glib.h>

#include <iothread/ctx.h>
#include <iothread/iothread.h>

#define IOT_HAVE_GLIB 1

#ifdef __cplusplus
extern "C" {
#endif

/* Any thread.  A new GSource that drives @ctx from a GMainContext: attach
 * it with g_source_attach() to a context iterated on @ctx's home thread.
 * Each dispatch is one non-blocking iteration of @ctx; there is never any
 * busy polling under GLib.  The source holds a reference to @ctx; the
 * caller owns the source (g_source_destroy + g_source_unref).  GLib watches
 * one fd: the io_uring ring's, or the epoll fd (a context on poll moves to
 * epoll for this). */
IOT_API GSource *iot_ctx_new_gsource(IotCtx *ctx);

/* Any thread.  The IOThread's own GMainContext, created on first call.
 * From then on the IOThread runs a GMainLoop on it, which drives its loop
 * context through a GSource, until it is stopped (as QEMU does; it does
 * not go back to plain polling).  No reference is taken. */
IOT_API GMainContext *iot_thread_get_gmain_context(IotThread *t);

#ifdef __cplusplus
}
#endif
#endif
