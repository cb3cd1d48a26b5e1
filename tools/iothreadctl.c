/* SPDX-License-Identifier: MIT */
/*
 * iothreadctl: a command-line client for iothreadd's QMP socket.
 *
 *   iothreadctl [--socket PATH] [--timeout SECS] [--json] COMMAND [ARGS]
 *     list                         the IOThreads and their properties
 *     add ID [PROP=VALUE...]       object-add an IOThread
 *     del ID                       object-del it
 *     get ID PROP                  qom-get
 *     set ID PROP VALUE            qom-set
 *     stats [ID] [--watch SECS]    statistics; --watch refreshes in place
 *
 * Errors from the daemon are printed as they are, and the exit status is 1.
 *
 * --timeout SECS (else $IOTHREADCTL_TIMEOUT, else 10) bounds each wait for
 * the daemon: the connect, and each read and each write (a reply that
 * keeps coming, if slowly, is not cut; the sleep between two refreshes of
 * stats --watch is not a wait for the daemon).  A daemon stopped or
 * wedged that long is an error, exit status 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <iothread/iothread.h>

typedef struct Conn {
    int fd;
    const char *path; /* for messages */
    double timeout;   /* seconds, > 0: SO_RCVTIMEO and SO_SNDTIMEO */
    struct json_tokener *tok;
    char buf[65536];
    size_t off, len; /* unparsed bytes in buf */
} Conn;

static bool json_out;
/* stats --watch: set by SIGINT, which interrupts blocking calls. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt,
                                                                ...)
{
    va_list ap;

    fputs("iothreadctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: iothreadctl [--socket PATH] [--timeout SECS] [--json] "
            "COMMAND [ARGS]\n"
            "  list                       the IOThreads and their properties\n"
            "  add ID [PROP=VALUE...]     create an IOThread\n"
            "  del ID                     delete it\n"
            "  get ID PROP                read a property\n"
            "  set ID PROP VALUE          change a property\n"
            "  stats [ID] [--watch SECS]  statistics, refreshed with --watch\n"
            "  -h, --help                 this text\n"
            "Options come before the command.  An integer VALUE is read as "
            "iothreadd's\n--object reads it (QEMU's rule): 0x10 is 16, "
            "010 is 8.\n"
            "The socket defaults to $IOTHREADD_SOCKET, else "
            "$XDG_RUNTIME_DIR/iothreadd.sock, else ./iothreadd.sock.\n"
            "--timeout bounds each wait for the daemon (connect, reply, "
            "write);\nit defaults to $IOTHREADCTL_TIMEOUT, else 10 "
            "seconds.\n");
}

/* ---- the connection ---- */

/* A socket timeout (SO_RCVTIMEO, SO_SNDTIMEO) ran out. */
/* json-c returns NULL when it cannot allocate: a command cut short
 * would say something else than what was asked, so say why and stop. */
static json_object *jnn(json_object *o)
{
    if (!o) {
        die("out of memory");
    }
    return o;
}

static void jadd(json_object *o, const char *key, json_object *v)
{
    if (json_object_object_add(o, key, jnn(v)) < 0) {
        json_object_put(v);
        die("out of memory");
    }
}

static const char *jtext(json_object *o, int flags)
{
    const char *s = json_object_to_json_string_ext(o, flags);

    if (!s) {
        die("out of memory");
    }
    return s;
}

__attribute__((noreturn)) static void conn_timed_out(Conn *c)
{
    die("no reply from %s within %g s (is iothreadd stopped?)", c->path,
        c->timeout);
}

static json_object *conn_read(Conn *c)
{
    for (;;) {
        if (c->len) {
            json_object *o =
                json_tokener_parse_ex(c->tok, c->buf + c->off, (int)c->len);
            enum json_tokener_error e = json_tokener_get_error(c->tok);
            size_t used = json_tokener_get_parse_end(c->tok);
            c->off += used;
            c->len -= used;
            if (o) {
                json_tokener_reset(c->tok);
                return o;
            }
            if (e != json_tokener_continue) {
                die("bad JSON from the daemon: %s", json_tokener_error_desc(e));
            }
        }
        c->off = 0;
        ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
        if (n < 0 && errno == EINTR) {
            if (interrupted) {
                /* Ctrl-C while waiting for the daemon: the watch is over. */
                fflush(stdout);
                _exit(0);
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_timed_out(c);
        }
        if (n <= 0) {
            die("the daemon closed the connection");
        }
        c->len = (size_t)n;
    }
}

/* All of @p, or exit 1 (SIGPIPE is ignored: a daemon that went away is
 * an error message, not a silent death by signal). */
static void conn_write(Conn *c, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(c->fd, p, len);
        if (n < 0 && errno == EINTR) {
            if (interrupted) {
                /* Ctrl-C while the daemon reads nothing: as in conn_read. */
                fflush(stdout);
                _exit(0);
            }
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            die("the daemon closed the connection");
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_timed_out(c); /* it reads nothing: its buffer is full */
        }
        if (n < 0) {
            die("write: %s", strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

static void conn_send(Conn *c, json_object *req)
{
    const char *s = jtext(req, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(s);

    conn_write(c, s, len);
    conn_write(c, "\n", 1);
}

/* Runs one command; returns its "return" value (a new reference).  An
 * error reply is printed and exits 1. */
static json_object *conn_call(Conn *c, const char *cmd, json_object *args)
{
    json_object *req = jnn(json_object_new_object()), *reply, *v;

    jadd(req, "execute", json_object_new_string(cmd));
    if (args) {
        jadd(req, "arguments", args);
    }
    conn_send(c, req);
    json_object_put(req);
    for (;;) {
        reply = conn_read(c);
        if (json_object_object_get_ex(reply, "return", &v)) {
            json_object_get(v);
            json_object_put(reply);
            return v;
        }
        if (json_object_object_get_ex(reply, "error", &v)) {
            json_object *desc = NULL;

            if (json_object_is_type(v, json_type_object) &&
                json_object_object_get_ex(v, "desc", &desc) &&
                json_object_is_type(desc, json_type_string)) {
                fprintf(stderr, "iothreadctl: %s\n",
                        json_object_get_string(desc));
            } else {
                fprintf(stderr, "iothreadctl: an error without a text: %s\n",
                        json_object_to_json_string(v));
            }
            json_object_put(reply);
            exit(1);
        }
        json_object_put(reply); /* an event */
    }
}

/* @secs (> 0) as a socket timeout: rounded up to a microsecond, as 0
 * would mean none, and capped at about 31 years (for ever). */
static struct timeval timeout_timeval(double secs)
{
    double us = (secs < 1e9 ? secs : 1e9) * 1e6;
    long long n = (long long)us;

    if ((double)n < us) {
        n++;
    }
    return (struct timeval){ .tv_sec = (time_t)(n / 1000000),
                             .tv_usec = (suseconds_t)(n % 1000000) };
}

/* On Linux, SO_SNDTIMEO also bounds an AF_UNIX connect() waiting on a full
 * backlog; any of the calls then fails with EAGAIN. */
static void conn_set_timeout(Conn *c)
{
    struct timeval tv = timeout_timeval(c->timeout);

    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))) {
        die("setsockopt: %s", strerror(errno));
    }
}

static void conn_open(Conn *c, const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    json_object *greeting;
    int r;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        die("socket path too long: %s", path);
    }
    strcpy(addr.sun_path, path);
    c->path = path;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        die("socket: %s", strerror(errno));
    }
    conn_set_timeout(c);
    /* EINTR (a stop and SIGCONT with a timeout set): an AF_UNIX connect
     * interrupted while waiting has not connected, so it can be retried. */
    do {
        r = connect(c->fd, (struct sockaddr *)&addr, sizeof(addr));
    } while (r && errno == EINTR);
    if (r && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        die("%s accepted no connection within %g s (is iothreadd stopped?)",
            path, c->timeout);
    }
    if (r) {
        die("cannot connect to %s: %s (is iothreadd running?)", path,
            strerror(errno));
    }
    c->tok = json_tokener_new();
    if (!c->tok) {
        die("out of memory");
    }
    greeting = conn_read(c);
    if (!json_object_object_get_ex(greeting, "QMP", NULL)) {
        die("%s does not speak QMP", path);
    }
    json_object_put(greeting);
    json_object_put(conn_call(c, "qmp_capabilities", NULL));
}

/* ---- output ---- */

static void print_json(json_object *o)
{
    puts(jtext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static int64_t member_int(json_object *o, const char *name)
{
    json_object *v;

    return json_object_object_get_ex(o, name, &v) ? json_object_get_int64(v)
                                                  : 0;
}

static const char *member_str(json_object *o, const char *name)
{
    json_object *v;

    return json_object_object_get_ex(o, name, &v) ? json_object_get_string(v)
                                                  : "";
}

/* The width of the ID column: @min, or the longest ID in @list, so that
 * the columns after it stay in line. */
static int id_width(json_object *list, int min)
{
    int w = min;

    for (size_t i = 0; i < json_object_array_length(list); i++) {
        size_t n = strlen(member_str(json_object_array_get_idx(list, i), "id"));

        if (n > (size_t)w) {
            w = n > 1000 ? 1000 : (int)n;
        }
    }
    return w;
}

/* @v, the reply to @cmd, is the array it must be, or we stop here: a
 * peer that answers otherwise is not an iothreadd we understand. */
static json_object *expect_array(json_object *v, const char *cmd)
{
    if (!json_object_is_type(v, json_type_array)) {
        die("unexpected reply to %s: %s", cmd, json_object_to_json_string(v));
    }
    return v;
}

static void cmd_list(Conn *c)
{
    json_object *list =
        expect_array(conn_call(c, "query-iothreads", NULL), "query-iothreads");

    if (json_out) {
        print_json(list);
    } else {
        int w = id_width(list, 16);

        printf("%-*s %8s %12s %9s %11s %13s\n", w, "ID", "TID", "POLL-MAX-NS",
               "POLL-GROW", "POLL-SHRINK", "AIO-MAX-BATCH");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *t = json_object_array_get_idx(list, i);
            printf("%-*s %8" PRId64 " %12" PRId64 " %9" PRId64 " %11" PRId64
                   " %13" PRId64 "\n",
                   w, member_str(t, "id"), member_int(t, "thread-id"),
                   member_int(t, "poll-max-ns"), member_int(t, "poll-grow"),
                   member_int(t, "poll-shrink"),
                   member_int(t, "aio-max-batch"));
        }
    }
    json_object_put(list);
}

/* A property value: an integer for int properties, else a string. */
static json_object *prop_value(const char *name, const char *value)
{
    size_t n;
    const IotPropInfo *info = iot_thread_props_info(&n);

    for (size_t i = 0; i < n; i++) {
        if (!strcmp(info[i].name, name) && info[i].type == IOT_PROP_INT) {
            char *end;
            long long v;
            errno = 0;
            v = strtoll(value, &end, 0);
            if (!*value || *end || errno) {
                die("%s: '%s' is not an integer", name, value);
            }
            return jnn(json_object_new_int64(v));
        }
    }
    return jnn(json_object_new_string(value));
}

static json_object *path_args(const char *id, const char *prop)
{
    json_object *args = jnn(json_object_new_object());
    char *path;

    /* Any length: a path cut short would name another IOThread. */
    if (asprintf(&path, "/objects/%s", id) < 0) {
        die("out of memory");
    }
    jadd(args, "path", json_object_new_string(path));
    free(path);
    jadd(args, "property", json_object_new_string(prop));
    return args;
}

static void cmd_add(Conn *c, int argc, char **argv)
{
    json_object *args = jnn(json_object_new_object());

    jadd(args, "qom-type", json_object_new_string("iothread"));
    jadd(args, "id", json_object_new_string(argv[0]));
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            die("add: expected PROP=VALUE, got '%s'", argv[i]);
        }
        *eq = '\0';
        if (!strcmp(argv[i], "id") || !strcmp(argv[i], "qom-type")) {
            die("add: '%s' is not a property to set (the ID comes first)",
                argv[i]);
        }
        jadd(args, argv[i], prop_value(argv[i], eq + 1));
    }
    json_object_put(conn_call(c, "object-add", args));
}

static void cmd_del(Conn *c, const char *id)
{
    json_object *args = jnn(json_object_new_object());

    jadd(args, "id", json_object_new_string(id));
    json_object_put(conn_call(c, "object-del", args));
}

static void cmd_get(Conn *c, const char *id, const char *prop)
{
    json_object *v = conn_call(c, "qom-get", path_args(id, prop));

    if (json_out) {
        print_json(v);
    } else {
        puts(v ? json_object_get_string(v) : "null"); /* JSON null */
    }
    json_object_put(v);
}

static void cmd_set(Conn *c, const char *id, const char *prop,
                    const char *value)
{
    json_object *args = path_args(id, prop);

    jadd(args, "value", prop_value(prop, value));
    json_object_put(conn_call(c, "qom-set", args));
}

/* ---- stats ---- */

static json_object *prev_find(json_object *prev, const char *id)
{
    for (size_t i = 0; prev && i < json_object_array_length(prev); i++) {
        json_object *t = json_object_array_get_idx(prev, i);
        if (!strcmp(member_str(t, "id"), id)) {
            return t;
        }
    }
    return NULL;
}

/* A rate column: "-" where there is none yet. */
static void print_rate(double v, bool have)
{
    if (have) {
        printf(" %10.0f", v);
    } else {
        printf(" %10s", "-");
    }
}

/* One table.  With @prev (the last sample, @dt seconds ago) the counters
 * are shown as rates and busy as a share of the interval.  An IOThread
 * with no sample of its own in @prev (new since, or made again under its
 * ID: another thread, counters from 0) has no rates yet: "-". */
static void stats_table(json_object *list, json_object *prev, double dt)
{
    int w = id_width(list, 12);

    printf("%-*s %7s %-8s %6s %10s %10s %10s %8s %8s %9s %9s %9s %5s\n", w,
           "ID", "TID", "FDMON", "BUSY%", prev ? "ITER/s" : "ITER",
           prev ? "BH/s" : "BH", prev ? "FD/s" : "FD", "HITS", "MISSES",
           "WINDOW", "NOTIFY", "ELIDED", "POOL");
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *t = json_object_array_get_idx(list, i);
        json_object *p = prev ? prev_find(prev, member_str(t, "id")) : NULL;
        double busy = (double)member_int(t, "busy-ns");
        double idle = (double)member_int(t, "idle-ns");
        double iter = (double)member_int(t, "iterations");
        double bh = (double)member_int(t, "bh-runs");
        double fd = (double)member_int(t, "fd-events");
        bool rates = !prev;

        if (p && member_int(p, "thread-id") != member_int(t, "thread-id")) {
            p = NULL; /* the same ID, another IOThread */
        }
        if (p && dt > 0) {
            busy -= (double)member_int(p, "busy-ns");
            idle -= (double)member_int(p, "idle-ns");
            iter = (iter - (double)member_int(p, "iterations")) / dt;
            bh = (bh - (double)member_int(p, "bh-runs")) / dt;
            fd = (fd - (double)member_int(p, "fd-events")) / dt;
            rates = true;
        }
        printf("%-*s %7" PRId64 " %-8s %5.1f%%", w, member_str(t, "id"),
               member_int(t, "thread-id"), member_str(t, "backend"),
               busy + idle > 0 ? 100.0 * busy / (busy + idle) : 0.0);
        print_rate(iter, rates);
        print_rate(bh, rates);
        print_rate(fd, rates);
        printf(" %8" PRId64 " %8" PRId64 " %9" PRId64 " %9" PRId64 " %9" PRId64
               " %2" PRId64 "/%-2" PRId64 "\n",
               member_int(t, "poll-hits"), member_int(t, "poll-misses"),
               member_int(t, "poll-window-ns"), member_int(t, "notify-sent"),
               member_int(t, "notify-elided"), member_int(t, "pool-threads"),
               member_int(t, "pool-active"));
    }
}

static json_object *stats_args(const char *id)
{
    json_object *args = jnn(json_object_new_object());

    if (id) {
        jadd(args, "id", json_object_new_string(id));
    }
    return args;
}

static void cmd_stats(Conn *c, const char *id, double watch)
{
    json_object *prev = NULL;
    struct timespec t0, t1;

    struct sigaction sa = { .sa_handler = on_sigint };

    /* --watch ends on Ctrl-C, with status 0; without it, Ctrl-C stops a
     * command that has not finished, which the default action reports.
     * No SA_RESTART: a read waiting for the daemon returns at once. */
    sigemptyset(&sa.sa_mask);
    if (watch > 0) {
        sigaction(SIGINT, &sa, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        json_object *list =
            expect_array(conn_call(c, "query-iothread-stats", stats_args(id)),
                         "query-iothread-stats");
        double dt;

        clock_gettime(CLOCK_MONOTONIC, &t1);
        dt = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        t0 = t1;
        if (json_out) {
            print_json(list);
        } else {
            if (watch > 0) {
                printf("\033[H\033[2J"); /* home, clear: refresh in place */
                printf("iothreadd statistics, every %.1f s (Ctrl-C quits)\n\n",
                       watch);
            }
            stats_table(list, prev, dt);
        }
        fflush(stdout);
        json_object_put(prev);
        prev = list;
        if (watch > 0 && !interrupted) {
            struct timespec ts = { (time_t)watch,
                                   (long)((watch - (time_t)watch) * 1e9) };
            nanosleep(&ts, NULL);
        }
    } while (watch > 0 && !interrupted);
    json_object_put(prev);
}

/* ---- main ---- */

static const char *default_socket(void)
{
    static char path[512];
    const char *env = getenv("IOTHREADD_SOCKET");
    const char *dir = getenv("XDG_RUNTIME_DIR");

    if (env && *env) {
        return env;
    }
    snprintf(path, sizeof(path), "%s/iothreadd.sock", dir && *dir ? dir : ".");
    return path;
}

/* A timeout in seconds from @s, given by @what (the option or variable):
 * a finite number above 0, or a usage error. */
static double parse_timeout(const char *what, const char *s)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end || !isfinite(v) || v <= 0) {
        die("%s: '%s' is not a positive number of seconds", what, s);
    }
    return v;
}

/* Checks the number of arguments of @cmd (add and stats check theirs). */
static void need_args(int argc, const char *cmd)
{
    static const struct {
        const char *cmd;
        int n;
    } fixed[] = { { "list", 0 }, { "del", 1 }, { "get", 2 }, { "set", 3 } };

    for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++) {
        if (!strcmp(cmd, fixed[k].cmd) && argc != fixed[k].n) {
            die("%s: wrong number of arguments (see iothreadctl --help)", cmd);
        }
    }
}

#define WATCH_MIN 0.01 /* seconds between two refreshes of stats --watch */
#define WATCH_MAX 1e6

/* stats [ID] [--watch SECONDS] */
static void parse_stats_args(int argc, char **argv, const char **id,
                             double *watch)
{
    for (int k = 0; k < argc; k++) {
        if (!strcmp(argv[k], "--watch") && k + 1 < argc) {
            char *end;
            const char *v = argv[++k];

            /* Bounded: a period that rounds to no sleep at all, or that a
             * time_t cannot hold, would have us query without a pause. */
            *watch = strtod(v, &end);
            if (end == v || *end || !(*watch >= WATCH_MIN) ||
                !(*watch <= WATCH_MAX)) {
                die("stats: --watch needs a number of seconds from %g to %g",
                    WATCH_MIN, WATCH_MAX);
            }
        } else if (!strcmp(argv[k], "--watch")) {
            die("stats: --watch needs a number of seconds from %g to %g",
                WATCH_MIN, WATCH_MAX);
        } else if (!*id && argv[k][0] != '-') {
            *id = argv[k];
        } else {
            die("stats: unexpected '%s'", argv[k]);
        }
    }
}

int main(int argc, char **argv)
{
    const char *socket_path = default_socket(), *cmd;
    Conn c = { .fd = -1, .timeout = 10 };
    const char *stats_id = NULL, *env_timeout = getenv("IOTHREADCTL_TIMEOUT");
    bool timeout_set = false;
    double watch = 0;
    int i = 1;

    signal(SIGPIPE, SIG_IGN); /* see conn_write() */
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            socket_path = argv[++i];
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            c.timeout = parse_timeout("--timeout", argv[++i]);
            timeout_set = true;
        } else if (!strcmp(argv[i], "--json")) {
            json_out = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--socket") ||
                   !strcmp(argv[i], "--timeout")) {
            die("%s needs a value (see iothreadctl --help)", argv[i]);
        } else {
            die("unknown option '%s' (see iothreadctl --help)", argv[i]);
        }
    }
    if (!timeout_set && env_timeout && *env_timeout) {
        c.timeout = parse_timeout("IOTHREADCTL_TIMEOUT", env_timeout);
    }
    if (i >= argc) {
        usage(stderr);
        return 1;
    }
    cmd = argv[i++];
    argc -= i;
    argv += i;
    if (strcmp(cmd, "list") && strcmp(cmd, "add") && strcmp(cmd, "del") &&
        strcmp(cmd, "get") && strcmp(cmd, "set") && strcmp(cmd, "stats")) {
        die("unknown command '%s' (see iothreadctl --help)", cmd);
    }
    /* The arguments first: a usage error is one whether or not a daemon
     * runs. */
    if (!strcmp(cmd, "add") && argc < 1) {
        die("add: an ID is needed");
    }
    need_args(argc, cmd);
    if (!strcmp(cmd, "stats")) {
        parse_stats_args(argc, argv, &stats_id, &watch);
    }
    conn_open(&c, socket_path);
    if (!strcmp(cmd, "list")) {
        cmd_list(&c);
    } else if (!strcmp(cmd, "add")) {
        cmd_add(&c, argc, argv);
    } else if (!strcmp(cmd, "del")) {
        cmd_del(&c, argv[0]);
    } else if (!strcmp(cmd, "get")) {
        cmd_get(&c, argv[0], argv[1]);
    } else if (!strcmp(cmd, "set")) {
        cmd_set(&c, argv[0], argv[1], argv[2]);
    } else {
        cmd_stats(&c, stats_id, watch);
    }
    json_tokener_free(c.tok);
    close(c.fd);
    return 0;
}
