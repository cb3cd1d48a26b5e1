/* SPDX-License-Identifier: MIT */
/* iothreadd's --pidfile (pidfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg.h"
#include "pidfile.h"

void (*pidfile_test_after_open)(const char *path);

/* Is the file open on @fd still the one at @path? */
static bool still_at_path(int fd, const char *path)
{
    struct stat a, b;

    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int pidfile_create(const char *path, char **msg)
{
    char buf[32];
    int fd, len;

    *msg = NULL;
    for (;;) {
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            return msg_fail(msg, "--pidfile %s: %s", path, strerror(errno));
        }
        if (pidfile_test_after_open) {
            pidfile_test_after_open(path);
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd);
            return msg_fail(msg, "--pidfile %s: locked by another process",
                            path);
        }
        if (still_at_path(fd, path)) {
            break;
        }
        close(fd); /* its owner removed it before it let the lock go */
    }
    len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)len) != len) {
        int e = errno;

        unlink(path);
        close(fd);
        return msg_fail(msg, "--pidfile %s: %s", path, strerror(e));
    }
    return fd;
}

void pidfile_remove(const char *path, int fd)
{
    if (fd >= 0) {
        unlink(path);
        close(fd);
    }
}
