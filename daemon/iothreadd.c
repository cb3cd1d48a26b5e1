/* SPDX-License-Identifier: MIT */
/*
 * iothreadd: hosts IOThreads and serves QMP on UNIX sockets.
 *
 * Start-up is all or nothing: the command line is checked first, then the
 * IOThreads, sockets and pidfile are made; a failure undoes what was made
 * and exits 1 with one line on stderr.  SIGINT, SIGTERM and the quit
 * command send SHUTDOWN, stop every IOThread, remove the sockets and the
 * pidfile, and exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <iothread/all.h>

#include "cmdline.h"
#include "pidfile.h"
#include "qmp.h"

typedef struct Daemon {
    DaemonConfig cfg;
    IotCtx *ctx;
    QmpServer *qmp;
    int sigfd;
    int pidfd;
    int ready_fd; /* --daemonize: the parent waits on it */
} Daemon;

static void usage(void)
{
    printf(
        "Usage: iothreadd [options]\n"
        "Hosts IOThreads and serves QMP (qemu-storage-daemon syntax).\n"
        "\n"
        "  --object iothread,id=ID[,poll-max-ns=N][,poll-grow=N]"
        "[,poll-shrink=N]\n"
        "           [,aio-max-batch=N][,thread-pool-min=N]"
        "[,thread-pool-max=N]\n"
        "           [,cpu-affinity=LIST]  (write a comma in LIST as ',,')\n"
        "  --chardev socket,id=ID,path=PATH,server=on,wait=off\n"
        "  --monitor chardev=ID   serve QMP on that chardev\n"
        "  --qmp PATH             shorthand for the two above\n"
        "  --pidfile PATH         write the process id, locked\n"
        "  --daemonize            detach once ready\n"
        "  -h, --help             this text\n"
        "  -V, --version          the version\n"
        "\n"
        "With no options: IOThreads io0 (defaults) and io1 (poll-max-ns=0),\n"
        "QMP on $XDG_RUNTIME_DIR/iothreadd.sock (or ./iothreadd.sock).\n");
}

static void die_line(const char *msg)
{
    fprintf(stderr, "iothreadd: %s\n", msg);
}

/* ---- IOThreads ---- */

/* Shutting down: one at a time, as the registry lists them, so that
 * nothing needs memory here. */
static void destroy_all_iothreads(void)
{
    IotThread *t;

    while (iot_thread_list(&t, 1) > 0) {
        int ret;

        /* Users no longer matter. */
        while (iot_thread_users(t)) {
            iot_thread_unuse(t);
        }
        ret = iot_thread_destroy(t, NULL);
        iot_thread_unref(t);
        if (ret < 0) {
            break; /* cannot happen on this thread: never loop for ever */
        }
    }
}

static int create_iothreads(Daemon *d)
{
    for (size_t i = 0; i < d->cfg.nobjects; i++) {
        IotError *err = NULL;
        CfgObject *o = &d->cfg.objects[i];
        if (!iot_thread_new(o->id, o->props, &err)) {
            char *line = NULL;
            if (asprintf(&line, "--object %s: %s", o->spec,
                         iot_error_message(err)) >= 0) {
                die_line(line);
            }
            free(line);
            iot_error_free(err);
            return -1;
        }
    }
    return 0;
}

/* ---- pidfile ---- */

static int daemon_pidfile_create(Daemon *d)
{
    char *msg;

    d->pidfd = pidfile_create(d->cfg.pidfile, &msg);
    if (d->pidfd < 0) {
        fprintf(stderr, "iothreadd: %s\n", msg ? msg : "out of memory");
        free(msg);
        return -1;
    }
    return 0;
}

static void daemon_pidfile_remove(Daemon *d)
{
    pidfile_remove(d->cfg.pidfile, d->pidfd);
    d->pidfd = -1;
}

/* ---- signals ---- */

static void signal_read(void *opaque)
{
    Daemon *d = opaque;
    struct signalfd_siginfo si;

    while (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
        qmp_server_request_quit(d->qmp, "host-signal");
    }
}

/* Blocks the shutdown signals in every thread (IOThreads inherit the
 * mask) and reads them on the main loop instead. */
static int signals_setup(Daemon *d)
{
    sigset_t set;
    int ret;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d->sigfd < 0) {
        fprintf(stderr, "iothreadd: signalfd: %s\n", strerror(errno));
        return -1;
    }
    ret =
        iot_fd_set_handler(d->ctx, d->sigfd, signal_read, NULL, NULL, NULL, d);
    if (ret < 0) {
        fprintf(stderr, "iothreadd: cannot watch signals: %s\n",
                strerror(-ret));
    }
    return ret;
}

/* ---- daemonize ---- */

/* Forks; the parent exits with the child's start-up status. */
static int daemonize_fork(Daemon *d)
{
    int fds[2];
    pid_t pid;
    char status = 1;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        fprintf(stderr, "iothreadd: --daemonize: %s\n", strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "iothreadd: --daemonize: %s\n", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        close(fds[1]);
        if (read(fds[0], &status, 1) != 1) {
            status = 1;
        }
        _exit(status);
    }
    close(fds[0]);
    d->ready_fd = fds[1];
    setsid();
    return 0;
}

static void daemonize_ready(Daemon *d)
{
    int null;

    if (d->ready_fd < 0) {
        return;
    }
    null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        close(null);
    }
    if (write(d->ready_fd, "", 1) != 1) {
        /* The parent is gone; nothing to tell. */
    }
    close(d->ready_fd);
    d->ready_fd = -1;
}

/* ---- main ---- */

static void teardown(Daemon *d)
{
    if (d->qmp) {
        qmp_server_shutdown(d->qmp);
    }
    destroy_all_iothreads();
    daemon_pidfile_remove(d);
    if (d->sigfd >= 0) {
        iot_fd_set_handler(d->ctx, d->sigfd, NULL, NULL, NULL, NULL, NULL);
        close(d->sigfd);
    }
    qmp_server_free(d->qmp);
    /* Let the loop free what the handlers left. */
    if (d->ctx) {
        iot_ctx_poll(d->ctx, false);
        iot_ctx_main_fini();
    }
    cfg_free(&d->cfg);
}

static int start(Daemon *d)
{
    IotError *err = NULL;

    d->ctx = iot_ctx_main_init(&err);
    if (!d->ctx) {
        die_line(iot_error_message(err));
        iot_error_free(err);
        return -1;
    }
    d->qmp = qmp_server_new(d->ctx);
    if (!d->qmp) {
        die_line("out of memory");
        return -1;
    }
    if (signals_setup(d) < 0 || create_iothreads(d) < 0) {
        return -1;
    }
    for (size_t i = 0; i < d->cfg.nqmp; i++) {
        char *msg = NULL;
        if (qmp_server_listen(d->qmp, d->cfg.qmp_paths[i], &msg) < 0) {
            die_line(msg ? msg : "out of memory");
            free(msg);
            return -1;
        }
    }
    if (d->cfg.pidfile && daemon_pidfile_create(d) < 0) {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    Daemon d = { .sigfd = -1, .pidfd = -1, .ready_fd = -1 };
    char *msg = NULL;

    if (cfg_parse(argc, argv, &d.cfg, &msg) < 0) {
        die_line(msg ? msg : "out of memory");
        free(msg);
        cfg_free(&d.cfg);
        return 1;
    }
    if (d.cfg.help || d.cfg.version) {
        if (d.cfg.help) {
            usage();
        } else {
            printf("iothreadd %d.%d.%d (libiothread %s)\n", IOTHREADD_MAJOR,
                   IOTHREADD_MINOR, IOTHREADD_MICRO, iot_version_string());
        }
        cfg_free(&d.cfg);
        return 0;
    }
    cfg_warn(&d.cfg, stderr);
    if (d.cfg.daemonize && daemonize_fork(&d) < 0) {
        cfg_free(&d.cfg);
        return 1;
    }
    if (start(&d) < 0) {
        teardown(&d);
        return 1;
    }
    for (size_t i = 0; i < d.cfg.nqmp; i++) {
        printf("iothreadd: QMP on %s\n", d.cfg.qmp_paths[i]);
    }
    if (d.cfg.nqmp == 0) {
        printf("iothreadd: running without QMP; SIGINT or SIGTERM to "
               "stop\n");
    }
    if (d.cfg.defaults) {
        printf("iothreadd: IOThreads io0 (poll-max-ns=32768) and io1 "
               "(poll-max-ns=0); Ctrl-C or QMP quit to stop\n");
    }
    fflush(stdout);
    daemonize_ready(&d);

    while (!qmp_server_quit_requested(d.qmp)) {
        iot_ctx_poll(d.ctx, true);
    }
    teardown(&d);
    return 0;
}
