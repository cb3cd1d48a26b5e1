/* SPDX-License-Identifier: MIT */
/*
 * iothreadd's --pidfile: the process id in a file the daemon holds an
 * exclusive flock() on while it runs.  Main thread only.
 */
#ifndef IOTHREADD_PIDFILE_H
#define IOTHREADD_PIDFILE_H

/* Creates or takes over @path, locks it and writes our pid.  Returns the
 * locked fd, or -1 with a message in *msg (malloc'd; NULL if out of
 * memory).  The file locked is the one at @path when the lock is held: a
 * daemon that removed it meanwhile (pidfile_remove() unlinks, then lets
 * the lock go) leaves a file nobody finds, and the next one is made. */
int pidfile_create(const char *path, char **msg);

/* Unlinks @path, then closes @fd, which lets the lock go.  @fd < 0: no
 * pidfile, nothing done. */
void pidfile_remove(const char *path, int fd);

/* Tests: called between the open and the lock. */
extern void (*pidfile_test_after_open)(const char *path);

#endif
