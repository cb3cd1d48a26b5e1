/* SPDX-License-Identifier: MIT */
/* libiothread: every module.  Include this, or only the headers you need. */
#ifndef IOTHREAD_ALL_H
#define IOTHREAD_ALL_H

#include <iothread/version.h>
#include <iothread/error.h>
#include <iothread/ctx.h>
#include <iothread/bh.h>
#include <iothread/fd.h>
#include <iothread/pool.h>
#include <iothread/iothread.h>
#include <iothread/timer.h>

#endif
