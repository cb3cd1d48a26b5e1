/* SPDX-License-Identifier: MIT */
/*
 * iothreadd's --pidfile (daemon/pidfile.c) in process: the file locked is
 * the one at the path, even when the daemon that had it removed it
 * between our open and our lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "pidfile.h"

static char dir[] = "/tmp/iot-pidfile-XXXXXX";
static char path[64];

static void setup(void)
{
    T_ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/pid", dir);
}

static void teardown(void)
{
    unlink(path);
    rmdir(dir);
}

/* The pid in the file at @path, or -1. */
static long pid_at_path(void)
{
    char buf[32] = { 0 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        return -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n > 0 ? strtol(buf, NULL, 10) : -1;
}

static bool same_file(int fd)
{
    struct stat a, b;

    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
           a.st_dev == b.st_dev;
}

static void test_create_remove(void)
{
    char *msg;
    int fd, again;

    setup();
    fd = pidfile_create(path, &msg);
    T_ASSERT(fd >= 0);
    T_ASSERT(same_file(fd));
    T_ASSERT_EQ(pid_at_path(), (long)getpid());
    /* a second one is refused while this one holds it */
    again = pidfile_create(path, &msg);
    T_ASSERT_EQ(again, -1);
    T_ASSERT(msg && strstr(msg, "locked by another process"));
    free(msg);
    T_ASSERT_EQ(pid_at_path(), (long)getpid());
    pidfile_remove(path, fd);
    T_ASSERT(access(path, F_OK) < 0 && errno == ENOENT);
    teardown();
}

/* Another daemon's exit between our open and our lock: it unlinks the
 * file, then lets the lock go.  Our lock then holds a file nobody can
 * find; the pid must go into a new one at the path. */
static int removed;

static void remove_under_us(const char *p)
{
    if (!removed++) {
        T_ASSERT_EQ(unlink(p), 0);
    }
}

static void test_removed_before_lock(void)
{
    char *msg;
    int fd;

    setup();
    pidfile_test_after_open = remove_under_us;
    fd = pidfile_create(path, &msg);
    pidfile_test_after_open = NULL;
    T_ASSERT(fd >= 0);
    T_ASSERT_EQ(removed, 2); /* the second open made the file anew */
    T_ASSERT(same_file(fd));
    T_ASSERT_EQ(pid_at_path(), (long)getpid());
    pidfile_remove(path, fd);
    teardown();
}

int main(int argc, char **argv)
{
    t_add("/pidfile/create-remove", test_create_remove);
    t_add("/pidfile/removed-before-lock", test_removed_before_lock);
    return t_run(argc, argv);
}
