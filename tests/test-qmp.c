/* SPDX-License-Identifier: MIT */
/*
 * iothreadd end to end: the daemon binary is started for each case and
 * driven over its UNIX sockets by a QMP client of our own (a socket and a
 * json-c tokener; nothing from daemon/), against the facts recorded in
 * shared/reference/qmp-surface.md and the daemon's command line.
 *
 * The daemon is found through $IOTHREADD (meson sets it), else next to
 * this binary: <dir of /proc/self/exe>/../daemon/iothreadd, so that
 * tests/run-tests.sh can run it directly.
 *
 * Each case gets a fresh mkdtemp() directory with "run/" (sockets,
 * pidfiles, the daemon's working directory and XDG_RUNTIME_DIR: "nothing
 * left behind" means this stays empty) and "log/" (the daemon's stderr).
 * The case body runs in a child of the harness's case process; the
 * daemons it starts die with it (PR_SET_PDEATHSIG), a daemonized one is
 * killed through its pidfile, the case process (a subreaper) reaps what
 * is left, and the directory is removed afterwards.
 *
 * Readiness is awaited by reading the daemon's stdout up to its
 * "iothreadd: QMP on PATH" line; a daemon that quits is awaited with
 * waitpid() (a --daemonize'd one too: the case is a child subreaper).
 * Every read has a safety bound (BOUND_MS) that turns a hang into a named
 * failure; nothing asserts on time.  The only polled conditions are those
 * nothing can signal: a joined thread leaving /proc/PID/task (the kernel
 * lists it for a moment after pthread_join() returns).
 *
 * Request texts in this file are written with single quotes for JSON's
 * double quotes ("{'execute': 'quit'}"); cmd() converts them before
 * sending.  Raw bytes go through qc_send()/qc_printf() unchanged.
 *
 * Replies are parsed and compared as JSON (key order does not matter);
 * every line read must end in "\r\n", hold exactly one JSON object and
 * use QEMU's ": " and ", " separators.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iothread/version.h>
#include <json-c/json.h>

#include "harness.h"

/* A safety bound on any single wait: a hang becomes a named failure. */
#define BOUND_MS 30000

#define NEG_MSG    "Expecting capabilities negotiation with 'qmp_capabilities'"
#define DONE_MSG   "Capabilities negotiation is already complete, command ignored"
#define POOL_MSG   "bad thread-pool-min/thread-pool-max values"
#define ID_MSG     "Parameter 'id' expects an identifier"
#define INT_MSG(p) "Invalid parameter type for '" p "', expected: integer"

static const char *const int_props[] = {
    "poll-max-ns",   "poll-grow",       "poll-shrink",
    "aio-max-batch", "thread-pool-min", "thread-pool-max",
};
#define N_INT_PROPS (sizeof(int_props) / sizeof(int_props[0]))

static char daemon_path[PATH_MAX];
static char tmpdir[PATH_MAX], rundir[PATH_MAX + 8], logdir[PATH_MAX + 8];

/* ---- memory: everything a case makes lives until the case ends ---- */

static json_object **kept_objs;
static size_t n_objs, cap_objs;
static char **kept_strs;
static size_t n_strs, cap_strs;

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need > *cap) {
        *cap = *cap ? *cap * 2 : 64;
        if (*cap < need) {
            *cap = need;
        }
        p = realloc(p, *cap * size);
        if (!p) {
            abort();
        }
    }
    return p;
}

static json_object *keep(json_object *o)
{
    if (o) {
        kept_objs = grow(kept_objs, &cap_objs, n_objs + 1, sizeof(*kept_objs));
        kept_objs[n_objs++] = o;
    }
    return o;
}

static char *keep_str(char *s)
{
    if (!s) {
        abort();
    }
    kept_strs = grow(kept_strs, &cap_strs, n_strs + 1, sizeof(*kept_strs));
    kept_strs[n_strs++] = s;
    return s;
}

static void arena_free(void)
{
    for (size_t i = 0; i < n_objs; i++) {
        json_object_put(kept_objs[i]);
    }
    for (size_t i = 0; i < n_strs; i++) {
        free(kept_strs[i]);
    }
    free(kept_objs);
    free(kept_strs);
    kept_objs = NULL;
    kept_strs = NULL;
    n_objs = cap_objs = n_strs = cap_strs = 0;
}

__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0) {
        s = NULL;
    }
    va_end(ap);
    return keep_str(s);
}

/* The request and expectation texts of this file: ' stands for ". */
static char *dq(const char *text)
{
    char *s = keep_str(strdup(text));

    for (char *p = s; *p; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    return s;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void short_sleep(void)
{
    struct timespec ts = { 0, 2 * 1000 * 1000 };

    nanosleep(&ts, NULL);
}

/* For conditions nothing can signal (a reaped thread's /proc entry). */
#define WAIT_UNTIL(cond, what)                                                 \
    do {                                                                       \
        int64_t dl_ = now_ms() + BOUND_MS;                                     \
        while (!(cond)) {                                                      \
            if (now_ms() > dl_) {                                              \
                t_fail(__FILE__, __LINE__, "waited %d ms for %s", BOUND_MS,    \
                       what);                                                  \
            }                                                                  \
            short_sleep();                                                     \
        }                                                                      \
    } while (0)

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0;

    if (!f) {
        return NULL;
    }
    {
        FILE *m = open_memstream(&buf, &len);
        char tmp[4096];
        size_t n;
        while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
            fwrite(tmp, 1, n, m);
        }
        fclose(m);
    }
    fclose(f);
    return keep_str(buf);
}

static bool file_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* The names in @dir, space-separated ("" if empty). */
static char *dir_listing(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char *out = keep_str(strdup(""));

    if (!d) {
        return fmt("(cannot open %s)", dir);
    }
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            out = fmt("%s%s%s", out, *out ? " " : "", e->d_name);
        }
    }
    closedir(d);
    return out;
}

/* ---- JSON ---- */

/* For messages: the JSON text, cut to a readable length. */
static const char *jtext(json_object *o)
{
    const char *s =
        o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : "null";

    return strlen(s) > 400 ? fmt("%.300s...(%zu bytes)", s, strlen(s)) : s;
}

/* Parses a text of this file (strict JSON once ' is turned into "). */
static json_object *jparse(const char *text)
{
    enum json_tokener_error e;
    json_object *o = json_tokener_parse_verbose(dq(text), &e);

    if (e != json_tokener_success) {
        t_fail(__FILE__, __LINE__, "bad JSON in the test: %s", text);
    }
    return keep(o);
}

static bool jeq(json_object *a, const char *text)
{
    return json_object_equal(a, jparse(text));
}

#define T_JSON(obj, text)                                                      \
    do {                                                                       \
        json_object *o_ = (obj);                                               \
        if (!jeq(o_, (text))) {                                                \
            t_fail(__FILE__, __LINE__, "%s is %s, expected %s", #obj,          \
                   jtext(o_), dq(text));                                       \
        }                                                                      \
    } while (0)

/* A member, or NULL if it is missing or null. */
static json_object *jm(json_object *o, const char *key)
{
    json_object *v = NULL;

    if (!json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, key, &v)) {
        return NULL;
    }
    return v;
}

static bool jhas(json_object *o, const char *key)
{
    return json_object_is_type(o, json_type_object) &&
           json_object_object_get_ex(o, key, NULL);
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = jm(o, key);

    return json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                    : NULL;
}

static int64_t jint_at(int line, json_object *o, const char *key)
{
    json_object *v = jm(o, key);

    if (!json_object_is_type(v, json_type_int)) {
        t_fail(__FILE__, line, "member '%s' of %s is not an integer", key,
               jtext(o));
    }
    return json_object_get_int64(v);
}
#define JINT(o, key) jint_at(__LINE__, (o), (key))

/* The array element whose "id" is @id, or NULL. */
static json_object *find_id(json_object *list, const char *id)
{
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *s = jstr(e, "id");
        if (s && !strcmp(s, id)) {
            return e;
        }
    }
    return NULL;
}

/* QEMU's wire style: outside strings, ':' and ',' are followed by ' '. */
static bool wire_style_ok(const char *s)
{
    bool in_str = false;

    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1]) {
                s++;
            } else if (*s == '"') {
                in_str = false;
            }
        } else if (*s == '"') {
            in_str = true;
        } else if ((*s == ':' || *s == ',') && s[1] != ' ') {
            return false;
        }
    }
    return true;
}

static const char *daemons_state(void);

/* ---- the QMP client ---- */

typedef struct Qc {
    int fd;
    char *buf;
    size_t len, cap;
    json_object *events; /* events read while waiting for a reply */
    json_object *greeting;
} Qc;

static Qc *qc_raw_at(int line, const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    Qc *c = calloc(1, sizeof(*c));

    if (!c || strlen(path) >= sizeof(addr.sun_path)) {
        t_fail(__FILE__, line, "cannot make a client for %s", path);
    }
    strcpy(addr.sun_path, path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 ||
        connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        t_fail(__FILE__, line, "connect %s: %s%s", path, strerror(errno),
               daemons_state());
    }
    c->events = json_object_new_array();
    return c;
}
#define qc_raw(path) qc_raw_at(__LINE__, (path))

static void qc_close(Qc *c)
{
    if (c) {
        close(c->fd);
        free(c->buf);
        json_object_put(c->events);
        free(c);
    }
}

static void qc_send_at(int line, Qc *c, const void *p, size_t len)
{
    const char *s = p;

    while (len) {
        ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            t_fail(__FILE__, line, "send: %s%s", strerror(errno),
                   daemons_state());
        }
        s += n;
        len -= (size_t)n;
    }
}
#define qc_send(c, p, len) qc_send_at(__LINE__, (c), (p), (len))

__attribute__((format(printf, 3, 4))) static void
qc_printf_at(int line, Qc *c, const char *f, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0) {
        abort();
    }
    va_end(ap);
    qc_send_at(line, c, s, strlen(s));
    free(s);
}
#define qc_printf(c, ...) qc_printf_at(__LINE__, (c), __VA_ARGS__)

/* Reads more into the buffer: >0 bytes, 0 at EOF.  Bounded. */
static ssize_t qc_fill(int line, Qc *c)
{
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    ssize_t n;
    int r;

    c->buf = grow(c->buf, &c->cap, c->len + 65536, 1);
    do {
        r = poll(&p, 1, BOUND_MS);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        t_fail(__FILE__, line, "nothing from the daemon in %d ms (have: %.*s)",
               BOUND_MS, (int)(c->len > 300 ? 300 : c->len), c->buf);
    }
    do {
        n = read(c->fd, c->buf + c->len, c->cap - c->len);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == ECONNRESET) {
        n = 0;
    }
    if (n < 0) {
        t_fail(__FILE__, line, "read: %s%s", strerror(errno), daemons_state());
    }
    c->len += (size_t)n;
    return n;
}

/* The next line without its "\r\n" (which it must have), or NULL at EOF.
 * A partial line at EOF fails. */
static char *qc_line_at(int line, Qc *c)
{
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf) + 1;
            char *s;
            if (n < 2 || nl[-1] != '\r') {
                t_fail(__FILE__, line, "line without \\r\\n: %.*s",
                       (int)(n > 300 ? 300 : n), c->buf);
            }
            s = keep_str(strndup(c->buf, n - 2));
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            return s;
        }
        if (qc_fill(line, c) == 0) {
            if (c->len) {
                t_fail(__FILE__, line, "partial line at EOF: %.*s",
                       (int)(c->len > 300 ? 300 : c->len), c->buf);
            }
            return NULL;
        }
    }
}

/* The next line as a JSON object: exactly one value, QEMU's style. */
static json_object *qc_msg_at(int line, Qc *c)
{
    char *s = qc_line_at(line, c);
    struct json_tokener *tok;
    json_object *o;
    bool one;

    if (!s) {
        t_fail(__FILE__, line, "the daemon closed the connection%s",
               daemons_state());
    }
    tok = json_tokener_new_ex(4096); /* deep ids: deep_id */
    o = json_tokener_parse_ex(tok, s, (int)strlen(s));
    one = o && json_tokener_get_error(tok) == json_tokener_success &&
          json_tokener_get_parse_end(tok) == strlen(s);
    json_tokener_free(tok);
    keep(o);
    if (!one || !json_object_is_type(o, json_type_object)) {
        t_fail(__FILE__, line, "not one JSON object per line: %.300s", s);
    }
    if (!wire_style_ok(s)) {
        t_fail(__FILE__, line, "not QEMU's \": \" / \", \" style: %.300s", s);
    }
    return o;
}
#define qc_msg(c) qc_msg_at(__LINE__, (c))

static void check_event_shape(int line, json_object *ev)
{
    json_object *ts = jm(ev, "timestamp");

    if (!jstr(ev, "event") || !json_object_is_type(ts, json_type_object) ||
        !json_object_is_type(jm(ts, "seconds"), json_type_int) ||
        !json_object_is_type(jm(ts, "microseconds"), json_type_int) ||
        JINT(ts, "microseconds") < 0 || JINT(ts, "microseconds") > 999999 ||
        !json_object_is_type(jm(ev, "data"), json_type_object)) {
        t_fail(__FILE__, line, "bad event: %s", jtext(ev));
    }
}

/* The next message that is not an event (events are kept for later). */
static json_object *qc_reply_at(int line, Qc *c)
{
    for (;;) {
        json_object *m = qc_msg_at(line, c);
        if (!jhas(m, "event")) {
            return m;
        }
        check_event_shape(line, m);
        json_object_array_add(c->events, json_object_get(m));
    }
}
#define qc_reply(c) qc_reply_at(__LINE__, (c))

/* Waits for event @name; fails on a reply meanwhile. */
static json_object *qc_event_at(int line, Qc *c, const char *name)
{
    for (size_t i = 0; i < json_object_array_length(c->events); i++) {
        json_object *e = json_object_array_get_idx(c->events, i);
        if (!strcmp(jstr(e, "event"), name)) {
            keep(json_object_get(e));
            json_object_array_del_idx(c->events, i, 1);
            return e;
        }
    }
    for (;;) {
        json_object *m = qc_msg_at(line, c);
        if (!jhas(m, "event")) {
            t_fail(__FILE__, line, "a reply while waiting for %s: %s", name,
                   jtext(m));
        }
        check_event_shape(line, m);
        if (!strcmp(jstr(m, "event"), name)) {
            return m;
        }
        json_object_array_add(c->events, json_object_get(m));
    }
}
#define qc_event(c, name) qc_event_at(__LINE__, (c), (name))

/* The daemon closes the connection with nothing more to say. */
static void qc_expect_eof_at(int line, Qc *c)
{
    char *s = qc_line_at(line, c);

    if (s) {
        t_fail(__FILE__, line, "expected EOF, got: %.300s", s);
    }
}
#define qc_expect_eof(c) qc_expect_eof_at(__LINE__, (c))

static void check_greeting(int line, json_object *g)
{
    json_object *qmp = jm(g, "QMP"), *v = jm(qmp, "version");
    json_object *q = jm(v, "qemu");

    if (json_object_object_length(g) != 1 ||
        json_object_object_length(qmp) != 2 ||
        !json_object_is_type(jm(qmp, "capabilities"), json_type_array) ||
        json_object_object_length(v) != 2 || !jstr(v, "package") ||
        json_object_object_length(q) != 3 ||
        !json_object_is_type(jm(q, "major"), json_type_int) ||
        !json_object_is_type(jm(q, "minor"), json_type_int) ||
        !json_object_is_type(jm(q, "micro"), json_type_int)) {
        t_fail(__FILE__, line, "bad greeting: %s", jtext(g));
    }
}

static Qc *qc_connect_at(int line, const char *path)
{
    Qc *c = qc_raw_at(line, path);

    c->greeting = qc_msg_at(line, c);
    check_greeting(line, c->greeting);
    return c;
}
#define qc_connect(path) qc_connect_at(__LINE__, (path))

/* ---- commands ---- */

/* Sends @req (' for ") and a newline; returns the reply.  If the request
 * is an object, the reply must echo its "id" exactly, or have none. */
static json_object *cmd_at(int line, Qc *c, const char *req)
{
    char *text = dq(req);
    json_object *r, *rq = json_tokener_parse(text), *id;

    keep(rq);
    /* One send: after "quit" the daemon may close before a second one. */
    text = fmt("%s\n", text);
    qc_send_at(line, c, text, strlen(text));
    r = qc_reply_at(line, c);
    text[strlen(text) - 1] = '\0';
    if (json_object_is_type(rq, json_type_object)) {
        bool want = json_object_object_get_ex(rq, "id", &id);
        json_object *got = NULL;
        bool has = json_object_object_get_ex(r, "id", &got);
        if (want != has || (want && !json_object_equal(id, got))) {
            t_fail(__FILE__, line, "id not echoed: %s -> %s", text, jtext(r));
        }
    }
    return r;
}
#define cmd(c, req) cmd_at(__LINE__, (c), (req))

static json_object *ok_at(int line, Qc *c, const char *req)
{
    json_object *r = cmd_at(line, c, req);

    if (!jhas(r, "return") || jhas(r, "error")) {
        t_fail(__FILE__, line, "%s -> %s", dq(req), jtext(r));
    }
    return jm(r, "return");
}
#define OK(c, req) ok_at(__LINE__, (c), (req))

static void check_error(int line, json_object *r, const char *cls,
                        const char *desc, const char *req)
{
    json_object *e = jm(r, "error");
    const char *got_cls = jstr(e, "class"), *got = jstr(e, "desc");

    if (!e || jhas(r, "return") || json_object_object_length(e) != 2 ||
        !got_cls || !got) {
        t_fail(__FILE__, line, "%s -> %s: expected an error", req, jtext(r));
    }
    if (strcmp(got_cls, cls) || strcmp(got, desc)) {
        t_fail(__FILE__, line,
               "%s -> %s: \"%s\" \"%s\", expected \"%s\" \"%s\"", req, jtext(r),
               got_cls, got, cls, desc);
    }
}

static void err_at(int line, Qc *c, const char *cls, const char *desc,
                   const char *req)
{
    check_error(line, cmd_at(line, c, req), cls, desc, dq(req));
}
#define ERR(c, desc, req)          err_at(__LINE__, (c), "GenericError", (desc), (req))
#define ERR_CLS(c, cls, desc, req) err_at(__LINE__, (c), (cls), (desc), (req))

/* The reply is a parse error (any text); returns its text. */
static const char *parse_error_at(int line, json_object *r)
{
    const char *d = jstr(jm(r, "error"), "desc");

    if (!d || strncmp(d, "JSON parse error", 16) || jhas(r, "id") ||
        strcmp(jstr(jm(r, "error"), "class"), "GenericError")) {
        t_fail(__FILE__, line, "expected a JSON parse error, got %s", jtext(r));
    }
    return d;
}
#define PARSE_ERROR(r) parse_error_at(__LINE__, (r))

static Qc *qc_open_at(int line, const char *path)
{
    Qc *c = qc_connect_at(line, path);

    T_JSON(ok_at(line, c, "{'execute': 'qmp_capabilities'}"), "{}");
    return c;
}
#define qc_open(path) qc_open_at(__LINE__, (path))

/* ---- /proc ---- */

static int task_count(pid_t pid)
{
    char *path = fmt("/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    if (!d) {
        return -1;
    }
    while ((e = readdir(d))) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static bool task_exists(pid_t pid, int64_t tid)
{
    return file_exists(fmt("/proc/%d/task/%" PRId64, (int)pid, tid));
}

/* The thread's name without the newline, or NULL. */
static char *task_comm(pid_t pid, int64_t tid)
{
    char *s = read_file(fmt("/proc/%d/task/%" PRId64 "/comm", (int)pid, tid));
    size_t n = s ? strlen(s) : 0;

    if (n && s[n - 1] == '\n') {
        s[n - 1] = '\0';
    }
    return s;
}

/* ---- the daemon ---- */

typedef struct Daemon {
    pid_t pid;
    int out; /* its stdout */
    char *outbuf;
    size_t outlen, outcap;
    const char *sock, *pidfile, *errfile;
    int status;
} Daemon;

static int serial;

/* The daemons this case started, for diagnostics. */
static Daemon *started[16];
static size_t n_started;

/* What became of the daemons: appended to connection failures. */
static const char *daemons_state(void)
{
    char *s = fmt("%s", "");

    for (size_t i = 0; i < n_started; i++) {
        Daemon *d = started[i];
        int st;
        if (d->status != -1) {
            continue; /* reaped by the case */
        }
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->status = st;
            s = fmt("%s; daemon %d %s %d, stderr: %s", s, (int)d->pid,
                    WIFEXITED(st) ? "exited with status" : "killed by signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                    read_file(d->errfile));
        } else {
            s = fmt("%s; daemon %d running", s, (int)d->pid);
        }
    }
    return s;
}

/* Starts the daemon with @args (after argv[0]) in @cwd (NULL: run/),
 * XDG_RUNTIME_DIR=run/ unless @no_xdg; stdout to a pipe, stderr to a
 * file in log/. */
static void spawn_at(int line, Daemon *d, const char *const *args,
                     const char *cwd, bool no_xdg)
{
    const char *argv[64];
    int p[2], n = 0;
    pid_t pid;

    d->errfile = fmt("%s/err-%d", logdir, ++serial);
    argv[n++] = daemon_path;
    for (; *args && n < 63; args++) {
        argv[n++] = *args;
    }
    argv[n] = NULL;
    if (pipe2(p, O_CLOEXEC) < 0) {
        t_fail(__FILE__, line, "pipe: %s", strerror(errno));
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        t_fail(__FILE__, line, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int e = open(d->errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (e < 0 || null < 0 || dup2(p[1], 1) < 0 || dup2(e, 2) < 0 ||
            dup2(null, 0) < 0 || chdir(cwd ? cwd : rundir) < 0) {
            _exit(126);
        }
        if (no_xdg) {
            unsetenv("XDG_RUNTIME_DIR");
        } else {
            setenv("XDG_RUNTIME_DIR", rundir, 1);
        }
        execv(daemon_path, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    d->pid = pid;
    d->out = p[0];
    d->status = -1;
    if (n_started < sizeof(started) / sizeof(started[0])) {
        started[n_started++] = d;
    }
}

/* Reads the daemon's stdout: bytes read, 0 at EOF.  Bounded. */
static ssize_t out_fill(int line, Daemon *d)
{
    struct pollfd p = { .fd = d->out, .events = POLLIN };
    ssize_t n;
    int r;

    d->outbuf = grow(d->outbuf, &d->outcap, d->outlen + 4097, 1);
    do {
        r = poll(&p, 1, BOUND_MS);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        t_fail(__FILE__, line, "nothing on the daemon's stdout in %d ms",
               BOUND_MS);
    }
    do {
        n = read(d->out, d->outbuf + d->outlen, 4096);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        t_fail(__FILE__, line, "read: %s", strerror(errno));
    }
    d->outlen += (size_t)n;
    d->outbuf[d->outlen] = '\0';
    return n;
}

static const char *out_text(Daemon *d)
{
    return d->outbuf ? d->outbuf : "";
}

static const char *err_text(Daemon *d)
{
    const char *s = read_file(d->errfile);

    return s ? s : "";
}

/* Reads stdout until the "QMP on @path" line: the socket accepts. */
static void wait_ready_at(int line, Daemon *d, const char *path)
{
    char *needle = fmt("iothreadd: QMP on %s\n", path);

    while (!strstr(out_text(d), needle)) {
        if (out_fill(line, d) == 0) {
            t_fail(__FILE__, line,
                   "the daemon ended before \"%s\"; stdout: %s; stderr: %s",
                   path, out_text(d), err_text(d));
        }
    }
}

/* Reads stdout until EOF. */
static void read_out_all(int line, Daemon *d)
{
    while (out_fill(line, d) > 0) {
    }
}

/* Starts "iothreadd --qmp run/qN.sock ARGS..." and waits until ready. */
static void daemon_start_at(int line, Daemon *d, ...)
{
    const char *args[60];
    int n = 0;
    va_list ap;
    const char *a;

    memset(d, 0, sizeof(*d));
    d->sock = fmt("%s/q%d.sock", rundir, serial + 1);
    args[n++] = "--qmp";
    args[n++] = d->sock;
    va_start(ap, d);
    while ((a = va_arg(ap, const char *)) && n < 59) {
        if (!strcmp(a, "--pidfile")) {
            args[n++] = a;
            a = d->pidfile = va_arg(ap, const char *);
        }
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    spawn_at(line, d, args, NULL, false);
    wait_ready_at(line, d, d->sock);
}
#define daemon_start(d, ...) daemon_start_at(__LINE__, (d), __VA_ARGS__)

/* Waits for the daemon to exit: status 0, nothing on stderr. */
static void daemon_reap_at(int line, Daemon *d)
{
    int st = d->status;

    while (st == -1 && waitpid(d->pid, &st, 0) < 0) {
        if (errno != EINTR) {
            t_fail(__FILE__, line, "waitpid: %s", strerror(errno));
        }
    }
    d->status = st;
    if (d->out >= 0) {
        close(d->out);
        d->out = -1;
    }
    free(d->outbuf);
    d->outbuf = NULL;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        t_fail(__FILE__, line, "the daemon %s %d; stderr: %s",
               WIFEXITED(st) ? "exited with status" : "was killed by signal",
               WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), err_text(d));
    }
    if (*err_text(d)) {
        t_fail(__FILE__, line, "the daemon wrote on stderr: %s", err_text(d));
    }
}

/* The daemon has exited 0 and left no socket and no pidfile. */
static void daemon_gone_at(int line, Daemon *d)
{
    daemon_reap_at(line, d);
    if (d->sock && file_exists(d->sock)) {
        t_fail(__FILE__, line, "socket %s left behind", d->sock);
    }
    if (d->pidfile && file_exists(d->pidfile)) {
        t_fail(__FILE__, line, "pidfile %s left behind", d->pidfile);
    }
}

/* quit over QMP: the reply, SHUTDOWN, EOF, exit 0, nothing left. */
static void daemon_quit_at(int line, Daemon *d)
{
    Qc *c = qc_open_at(line, d->sock);
    json_object *ev;

    T_JSON(ok_at(line, c, "{'execute': 'quit', 'id': 'bye'}"), "{}");
    ev = qc_event_at(line, c, "SHUTDOWN");
    T_JSON(jm(ev, "data"), "{'guest': false, 'reason': 'host-qmp-quit'}");
    qc_expect_eof_at(line, c);
    qc_close(c);
    daemon_gone_at(line, d);
}
#define daemon_quit(d) daemon_quit_at(__LINE__, (d))

/* Starts the usual daemon: io0 with default properties. */
static void start_io0(Daemon *d)
{
    daemon_start(d, "--object", "iothread,id=io0", NULL);
}

/* ---- the per-case guard ---- */

static int rm_entry(const char *path, const struct stat *st, int type,
                    struct FTW *ftw)
{
    remove(path);
    return 0;
}

/* Kills what a failed case left running: daemons named by pidfiles. */
static void kill_leftovers(void)
{
    DIR *d = opendir(rundir);
    struct dirent *e;

    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        char path[PATH_MAX * 2];
        FILE *f;
        int pid;
        if (n < 4 || strcmp(e->d_name + n - 4, ".pid")) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", rundir, e->d_name);
        f = fopen(path, "r");
        if (f && fscanf(f, "%d", &pid) == 1 && pid > 1) {
            kill(pid, SIGKILL);
        }
        if (f) {
            fclose(f);
        }
    }
    if (d) {
        closedir(d);
    }
}

/* Kills and reaps our remaining children: daemons orphaned by a failed
 * body were reparented to us (a subreaper), whatever init does. */
static void reap_orphans(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int st;

    while (d && (e = readdir(d))) {
        char path[300], buf[512];
        const char *paren;
        FILE *f;
        int ppid;
        if (e->d_name[0] < '0' || e->d_name[0] > '9') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        f = fopen(path, "r");
        if (!f) {
            continue;
        }
        if (fgets(buf, sizeof(buf), f) && (paren = strrchr(buf, ')')) &&
            sscanf(paren + 1, " %*c %d", &ppid) == 1 && ppid == getpid()) {
            kill(atoi(e->d_name), SIGKILL);
        }
        fclose(f);
    }
    if (d) {
        closedir(d);
    }
    while (waitpid(-1, &st, 0) > 0 || errno == EINTR) {
    }
}

static void guarded(TestFunc *body)
{
    char tmpl[] = "/tmp/iothreadd-test-XXXXXX";
    pid_t pid;
    int st;

    prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (!mkdtemp(tmpl)) {
        t_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    }
    snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
    snprintf(rundir, sizeof(rundir), "%s/run", tmpdir);
    snprintf(logdir, sizeof(logdir), "%s/log", tmpdir);
    if (mkdir(rundir, 0700) < 0 || mkdir(logdir, 0700) < 0) {
        t_fail(__FILE__, __LINE__, "mkdir: %s", strerror(errno));
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        t_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        body();
        arena_free();
        exit(0);
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        kill_leftovers();
    }
    reap_orphans();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "case body killed by signal %d\n", WTERMSIG(st));
        _exit(1);
    }
    if (WEXITSTATUS(st)) {
        _exit(WEXITSTATUS(st));
    }
}

#define CASE(fn)                                                               \
    static void fn##_body(void);                                               \
    static void fn(void)                                                       \
    {                                                                          \
        guarded(fn##_body);                                                    \
    }                                                                          \
    static void fn##_body(void)

/* ==== wire format and negotiation ==== */

CASE(greeting)
{
    Daemon d;
    Qc *c;

    start_io0(&d);
    c = qc_connect(d.sock); /* checks shape, \r\n and separators */
    T_JSON(OK(c, "{'execute': 'qmp_capabilities'}"), "{}");
    T_ASSERT(json_object_equal(OK(c, "{'execute': 'query-version'}"),
                               jm(jm(c->greeting, "QMP"), "version")));
    T_JSON(jm(jm(jm(c->greeting, "QMP"), "version"), "qemu"),
           "{'major': 0, 'minor': 1, 'micro': 0}");
    qc_close(c);
    daemon_quit(&d);
}

CASE(negotiation_required)
{
    Daemon d;
    Qc *c;

    start_io0(&d);
    c = qc_connect(d.sock);
    ERR_CLS(c, "CommandNotFound", NEG_MSG,
            "{'execute': 'query-version', 'id': 1}");
    ERR_CLS(c, "CommandNotFound", NEG_MSG,
            "{'execute': 'query-iothreads', 'id': 'a'}");
    ERR_CLS(c, "CommandNotFound", NEG_MSG,
            "{'execute': 'no-such-command', 'id': {'x': [1]}}");
    /* quit is refused too: the daemon goes on */
    ERR_CLS(c, "CommandNotFound", NEG_MSG, "{'execute': 'quit', 'id': 2}");
    ERR(c, "Parameter 'null' does not accept value 'bogus'",
        "{'execute': 'qmp_capabilities', 'arguments': {'enable': ['bogus']},"
        " 'id': 3}");
    /* a capability QMP knows but we do not offer (the greeting's list is
     * empty): QEMU's text for one not offered */
    ERR(c, "Capability oob not available",
        "{'execute': 'qmp_capabilities', 'arguments': {'enable': ['oob']}}");
    /* every element is looked at: names first, then what is offered */
    ERR(c, "Parameter 'null' does not accept value 'bogus'",
        "{'execute': 'qmp_capabilities', 'arguments': {'enable': "
        "['oob', 'bogus']}}");
    ERR(c, "Capability oob, oob not available",
        "{'execute': 'qmp_capabilities', 'arguments': {'enable': "
        "['oob', 'oob']}}");
    ERR(c, "Invalid parameter type for 'enable', expected: array",
        "{'execute': 'qmp_capabilities', 'arguments': {'enable': 'x'}}");
    /* an element of the list: QEMU's visitor names it */
    ERR(c, "Invalid parameter type for 'enable[0]', expected: string",
        "{'execute': 'qmp_capabilities', 'arguments': {'enable': [1, 'x']}}");
    ERR(c, "Parameter 'foo' is unexpected",
        "{'execute': 'qmp_capabilities', 'arguments': {'foo': 1}}");
    /* a failed negotiation negotiates nothing */
    ERR_CLS(c, "CommandNotFound", NEG_MSG,
            "{'execute': 'query-version', 'id': 4}");
    T_JSON(OK(c, "{'execute': 'qmp_capabilities', 'arguments': {'enable': "
                 "[]}, 'id': 'n'}"),
           "{}");
    ERR_CLS(c, "CommandNotFound", DONE_MSG,
            "{'execute': 'qmp_capabilities', 'id': 5}");
    ERR_CLS(c, "CommandNotFound", DONE_MSG,
            "{'execute': 'qmp_capabilities', 'arguments': {'enable': "
            "['oob']}}");
    /* QEMU's marshaller checks the arguments before the command sees that
     * negotiation is done */
    ERR(c, "Parameter 'null' does not accept value 'bogus'",
        "{'execute': 'qmp_capabilities', 'arguments': {'enable': "
        "['bogus']}}");
    ERR(c, "Parameter 'foo' is unexpected",
        "{'execute': 'qmp_capabilities', 'arguments': {'foo': 1}}");
    OK(c, "{'execute': 'query-version', 'id': 6}");
    qc_close(c);
    daemon_quit(&d);
}

CASE(negotiation_per_connection)
{
    Daemon d;
    Qc *a, *b, *c;

    start_io0(&d);
    a = qc_open(d.sock);
    b = qc_connect(d.sock);
    ERR_CLS(b, "CommandNotFound", NEG_MSG, "{'execute': 'query-iothreads'}");
    OK(a, "{'execute': 'query-iothreads'}");
    qc_close(a);
    c = qc_connect(d.sock);
    ERR_CLS(c, "CommandNotFound", NEG_MSG, "{'execute': 'query-version'}");
    T_JSON(OK(c, "{'execute': 'qmp_capabilities'}"), "{}");
    OK(c, "{'execute': 'query-version'}");
    ERR_CLS(b, "CommandNotFound", NEG_MSG, "{'execute': 'query-version'}");
    qc_close(b);
    qc_close(c);
    daemon_quit(&d);
}

CASE(id_any_type)
{
    static const char *const ids[] = {
        "'a string'",
        "0",
        "-42",
        "9007199254740993",
        "1.5",
        "true",
        "false",
        "[1, 'x', {}]",
        "{'nested': {'a': [null]}}",
        "''",
        "null",
    };
    Daemon d;
    Qc *c;

    start_io0(&d);
    c = qc_connect(d.sock);
    /* echoed in errors before negotiation, in successes and in errors */
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        ERR_CLS(c, "CommandNotFound", NEG_MSG,
                fmt("{'execute': 'query-version', 'id': %s}", ids[i]));
    }
    OK(c, "{'execute': 'qmp_capabilities'}");
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        OK(c, fmt("{'id': %s, 'execute': 'query-version'}", ids[i]));
        ERR_CLS(c, "CommandNotFound",
                "The command no-such-command has not been found",
                fmt("{'execute': 'no-such-command', 'id': %s}", ids[i]));
        ERR(c, "QMP input member 'foo' is unexpected",
            fmt("{'execute': 'query-version', 'foo': 1, 'id': %s}", ids[i]));
    }
    qc_close(c);
    daemon_quit(&d);
}

/* ==== framing and parse errors ==== */

/* Sends @raw, then a valid command with id "after"; returns the messages
 * that came before its reply (all must be errors without an id). */
static json_object *errors_before_at(int line, Qc *c, const char *raw)
{
    json_object *errs = keep(json_object_new_array());

    qc_send_at(line, c, raw, strlen(raw));
    qc_printf_at(line, c,
                 "{\"execute\": \"query-version\", \"id\": \"after\"}\n");
    for (;;) {
        json_object *r = qc_reply_at(line, c);
        if (jeq(jm(r, "id"), "'after'")) {
            if (!jhas(r, "return")) {
                t_fail(__FILE__, line, "after garbage: %s", jtext(r));
            }
            return errs;
        }
        if (!jhas(r, "error") || jhas(r, "id")) {
            t_fail(__FILE__, line, "expected an error without id, got %s",
                   jtext(r));
        }
        json_object_array_add(errs, json_object_get(r));
    }
}
#define errors_before(c, raw) errors_before_at(__LINE__, (c), (raw))

static const char *desc_of(json_object *errs, size_t i)
{
    return jstr(jm(json_object_array_get_idx(errs, i), "error"), "desc");
}

/* One parse error for @raw, the stream recovers, and its text starts with
 * @want (the issue asks for the "JSON parse error" prefix, not QEMU's
 * per-token texts, which json-c does not produce). */
static void one_parse_error(int line, const char *raw, const char *want)
{
    Daemon d;
    Qc *c;
    json_object *errs;

    start_io0(&d);
    c = qc_open(d.sock);
    errs = errors_before_at(line, c, raw);
    if (json_object_array_length(errs) != 1) {
        t_fail(__FILE__, line, "%zu replies to %s: %s",
               json_object_array_length(errs), raw, jtext(errs));
    }
    qc_close(c);
    daemon_quit_at(line, &d);
    if (strncmp(desc_of(errs, 0), want, strlen(want))) {
        t_fail(__FILE__, line, "%.*s -> \"%s\", expected \"%s\"",
               (int)strcspn(raw, "\n"), raw, desc_of(errs, 0), want);
    }
}

CASE(parse_error_missing_value)
{
    one_parse_error(__LINE__, "{\"execute\": }\n", "JSON parse error, ");
}

CASE(parse_error_trailing_comma)
{
    one_parse_error(__LINE__, "{\"execute\": \"query-version\",}\n",
                    "JSON parse error, ");
}

/* QEMU answers once per bad token (four replies); iothreadd answers once
 * per bad line.  Either way: parse errors, then the stream recovers. */
CASE(parse_error_keywords)
{
    Daemon d;
    Qc *c;
    json_object *errs;

    start_io0(&d);
    c = qc_open(d.sock);
    errs = errors_before(c, "this is not json\n");
    qc_close(c);
    daemon_quit(&d);
    if (json_object_array_length(errs) < 1) {
        t_fail(__FILE__, __LINE__, "\"this is not json\": no error reply");
    }
    for (size_t i = 0; i < json_object_array_length(errs); i++) {
        T_ASSERT(!strncmp(desc_of(errs, i), "JSON parse error, ", 18));
    }
}

/* A value refused in the middle of a string leaves nothing behind for the
 * next one: json-c kept a pending high surrogate across its reset, and the
 * next value's first \u escape came out with U+FFFD in front (found by
 * fuzz-qmp's cut-versus-whole check). */
CASE(parse_error_leaves_nothing)
{
    Daemon d;
    Qc *c;
    json_object *r;

    start_io0(&d);
    c = qc_open(d.sock);
    qc_printf(c, "{\"execute\": \"a\\ud83d\\u`e00\"}\n"
                 "{\"execute\": \"no-such-\\u00e9\"}\n");
    PARSE_ERROR(qc_reply(c));
    r = qc_reply(c);
    T_JSON(jm(r, "error"), "{'class': 'CommandNotFound', 'desc': 'The "
                           "command no-such-\u00e9 has not been found'}");
    qc_close(c);
    daemon_quit(&d);
}

/* A number at the top level is refused the same way however the reads
 * cut it: "-922i" is a number that is not an object, then a stray byte.
 * When the number had ended a read, json-c took "i" for part of it and
 * gave one parse error instead (found by fuzz-qmp's cut-versus-whole
 * check). */
CASE(number_cut_by_read)
{
    Daemon d;
    Qc *a, *b;
    json_object *r;

    start_io0(&d);
    a = qc_open(d.sock);
    b = qc_open(d.sock);
    qc_printf(a, "-922");
    OK(b, "{'execute': 'query-version'}"); /* a read apart */
    qc_printf(a, "i\n{\"execute\": \"query-version\", \"id\": \"after\"}\n");
    r = qc_reply(a);
    T_JSON(jm(r, "error"), "{'class': 'GenericError', 'desc': 'QMP input "
                           "must be a JSON object'}");
    PARSE_ERROR(qc_reply(a));
    r = qc_reply(a);
    T_ASSERT(jhas(r, "return"));
    T_ASSERT_STR(jstr(r, "id"), "after");

    /* Inside a value: "1" then "-}" is the parse error that "1-}" in one
     * read is, not the number 1 (json-c checks a number within one call). */
    qc_printf(a, "{\"execute\": \"query-version\", \"id\": {\"x\": 1");
    OK(b, "{'execute': 'query-version'}"); /* a read apart */
    qc_printf(a, "-}\n{\"execute\": \"query-version\", \"id\": 5}\n");
    PARSE_ERROR(qc_reply(a));
    r = qc_reply(a);
    T_ASSERT(jhas(r, "return"));
    T_JSON(jm(r, "id"), "5");

    /* A literal ending one read, digits the whole next one: "false79" in
     * one read answers false, then the number; the held digits give the
     * same two once the byte after them comes (fuzz-qmp, 600 s). */
    qc_printf(a, "false");
    OK(b, "{'execute': 'query-version'}"); /* a read apart */
    qc_printf(a, "79");
    OK(b, "{'execute': 'query-version'}");
    qc_printf(a, "\n{\"execute\": \"query-version\", \"id\": 6}\n");
    for (int i = 0; i < 2; i++) {
        r = qc_reply(a);
        T_JSON(jm(r, "error"), "{'class': 'GenericError', 'desc': 'QMP "
                               "input must be a JSON object'}");
    }
    r = qc_reply(a);
    T_ASSERT(jhas(r, "return"));
    T_JSON(jm(r, "id"), "6");
    qc_close(a);
    qc_close(b);
    daemon_quit(&d);
}

/* An id nested deeper than json-c's default limit (32) is still echoed
 * as it came: the limit is QEMU's, 1024; past it, a parse error. */
CASE(deep_id)
{
    Daemon d;
    Qc *c;
    json_object *r;
    char *deep = keep_str(malloc(2 * 1025 + 1));

    start_io0(&d);
    c = qc_open(d.sock);
    for (int depth = 100; depth <= 1025; depth += 925) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        deep[2 * depth] = '\0';
        qc_printf(c, "{\"execute\": \"query-version\", \"id\": %s}\n", deep);
        r = qc_reply(c);
        if (depth == 100) {
            T_ASSERT(jhas(r, "return"));
            T_ASSERT_STR(json_object_to_json_string_ext(jm(r, "id"),
                                                        JSON_C_TO_STRING_PLAIN),
                         deep);
        } else {
            PARSE_ERROR(r);
        }
    }
    /* QEMU's limit exactly: 1024 brackets and braces, the command's own
     * included, around a scalar */
    memset(deep, '[', 1023);
    deep[1023] = '1';
    memset(deep + 1024, ']', 1023);
    deep[2047] = '\0';
    qc_printf(c, "{\"execute\": \"query-version\", \"id\": %s}\n", deep);
    T_ASSERT(jhas(qc_reply(c), "return"));
    OK(c, "{'execute': 'query-version'}");
    qc_close(c);
    daemon_quit(&d);
}

/* The reply's "id" as it came on the wire: the end of its line. */
static const char *raw_id_at(int line, Qc *c)
{
    char *l = qc_line_at(line, c);
    char *p = l ? strstr(l, "\"id\": ") : NULL;

    if (!p || l[strlen(l) - 1] != '}') {
        t_fail(__FILE__, line, "no id last in: %s", l ? l : "(EOF)");
    }
    p += strlen("\"id\": ");
    p[strlen(p) - 1] = '\0';
    return p;
}
#define raw_id(c) raw_id_at(__LINE__, (c))

/* "id" is echoed as written, whatever its JSON type (qmp-surface.md):
 * an integer past 64 bits too, which json-c alone saturates (2^64 came
 * back as 2^64 - 1, -2^63 - 1 as -2^63). */
CASE(id_verbatim)
{
    static const char *const ids[] = {
        "18446744073709551616",
        "123456789012345678901234567890",
        "-9223372036854775809",
        "18446744073709551615",
        "-9223372036854775808",
        "-0",
        "1e400",
        "1.50",
        "7",
    };
    Daemon d;
    Qc *c;

    start_io0(&d);
    /* before negotiation: an error reply echoes it too */
    c = qc_connect(d.sock);
    qc_printf(c, "{\"execute\": \"query-version\", \"id\": %s}\n", ids[0]);
    T_ASSERT_STR(raw_id(c), ids[0]);
    qc_close(c);

    c = qc_open(d.sock);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        qc_printf(c, "{\"execute\": \"query-version\", \"id\" : %s }\n",
                  ids[i]);
        T_ASSERT_STR(raw_id(c), ids[i]);
        qc_printf(c, "{\"id\":%s,\"execute\":\"no-such\"}\n", ids[i]);
        T_ASSERT_STR(raw_id(c), ids[i]);
    }
    /* the last "id" wins, as json-c keeps it; a nested one is not it */
    qc_printf(c, "{\"id\": 99999999999999999999, \"execute\": "
                 "\"query-version\", \"id\": 5}\n");
    T_ASSERT_STR(raw_id(c), "5");
    qc_printf(c, "{\"id\": \"s\", \"execute\": \"query-version\", "
                 "\"id\": -99999999999999999999}\n");
    T_ASSERT_STR(raw_id(c), "-99999999999999999999");
    qc_printf(c,
              "{\"execute\": \"query-version\", \"arguments\": {\"id\": "
              "99999999999999999999, \"x\": [1, {\"id\": 3}]}, \"id\": 8}\n");
    T_ASSERT_STR(raw_id(c), "8");
    qc_printf(c, "{\"execute\": \"query-version\", \"xid\": 1, \"id\": "
                 "99999999999999999999, \"i\": 2}\n");
    T_ASSERT_STR(raw_id(c), "99999999999999999999");
    /* numbers inside an array or object id too, in QEMU's style (", ",
     * ": "); the whitespace between tokens, a newline included, goes */
    qc_printf(c,
              "{\"execute\": \"query-version\", \"id\": "
              "[1,\n 99999999999999999999 ,{\"a\" :[-0, \"\\u00e9,:\"]}]}\n");
    T_ASSERT_STR(raw_id(c),
                 "[1, 99999999999999999999, {\"a\": [-0, \"\\u00e9,:\"]}]");
    qc_printf(c, "{\"id\": {\"n\": 18446744073709551616}, \"execute\": "
                 "\"no-such\"}\n");
    T_ASSERT_STR(raw_id(c), "{\"n\": 18446744073709551616}");
    /* without a number, json-c's echo, as before */
    qc_printf(c, "{\"execute\": \"query-version\", \"id\": [\"x\", {}]}\n");
    T_ASSERT_STR(raw_id(c), "[\"x\", {}]");
    /* a key spelt with escapes is "id" all the same (the last wins) */
    qc_printf(c, "{\"execute\": \"query-version\", \"id\": 5, "
                 "\"i\\u0064\": 7}\n");
    T_ASSERT_STR(raw_id(c), "7");
    qc_printf(c, "{\"execute\": \"query-version\", "
                 "\"\\u0069\\u0064\": 18446744073709551616}\n");
    T_ASSERT_STR(raw_id(c), "18446744073709551616");
    /* json-c takes these; they are no JSON, and no reply may echo them */
    for (int i = 0; i < 3; i++) {
        static const char *const bad[] = { "NaN", "Infinity", "-Infinity" };
        qc_printf(c, "{\"execute\": \"query-version\", \"id\": %s}\n", bad[i]);
        PARSE_ERROR(qc_reply(c));
    }
    /* the next value does not inherit the last one's number */
    OK(c, "{'execute': 'query-version', 'id': 'after'}");
    qc_close(c);
    daemon_quit(&d);
}

/* Numbers as JSON writes them, and nothing else: json-c also takes "2.",
 * "1.e5", "00" and "-01", which QEMU refuses, and a reply echoing one as
 * an id would be no JSON either.  The line gets a parse error, nothing
 * runs, and the next line is served. */
CASE(strict_numbers)
{
    static const char *const good[] = {
        "0", "-0", "10", "0.5", "-1.5e-3", "1e5", "1E+5", "1.0E-0", "-0.0e00",
    };
    static const char *const bad[] = {
        "2.", "1.e5", "00", "-00",   "-01",  "[-01]", "{\"b\": [3.]}",
        "1e", "1e+",  "-",  "1.5.2", "0.e1", "01.5",  "2.e",
    };
    Daemon d;
    Qc *c;

    start_io0(&d);
    c = qc_open(d.sock);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        qc_printf(c, "{\"execute\": \"query-version\", \"id\": %s}\n", good[i]);
        T_ASSERT_STR(raw_id(c), good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        qc_printf(c, "{\"execute\": \"query-version\", \"id\": %s}\n", bad[i]);
        PARSE_ERROR(qc_reply(c));
        OK(c, "{'execute': 'query-version', 'id': 'after'}");
    }
    /* in arguments too: the object is not made */
    qc_printf(c, "{\"execute\": \"object-add\", \"arguments\": "
                 "{\"qom-type\": \"iothread\", \"id\": \"n0\", "
                 "\"poll-max-ns\": 00}}\n");
    PARSE_ERROR(qc_reply(c));
    T_ASSERT(find_id(OK(c, "{'execute': 'query-iothreads'}"), "n0") == NULL);
    qc_close(c);
    daemon_quit(&d);
}

/* At most 64 clients are served at once: the next one waits, without a
 * greeting, until one of them goes (a flood of connections that send and
 * never read could otherwise make the daemon hold 17 MiB each). */
#define MAX_CLIENTS 64

CASE(max_clients)
{
    Qc *cs[MAX_CLIENTS], *late;
    struct pollfd p;
    Daemon d;

    start_io0(&d);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        cs[i] = qc_connect(d.sock);
    }
    late = qc_raw(d.sock);
    p = (struct pollfd){ .fd = late->fd, .events = POLLIN };
    /* nothing may come: a bounded look, not a wait for something */
    T_ASSERT_EQ(poll(&p, 1, 200), 0);
    /* the others are served meanwhile */
    T_JSON(OK(cs[0], "{'execute': 'qmp_capabilities'}"), "{}");
    OK(cs[0], "{'execute': 'query-iothreads'}");
    qc_close(cs[MAX_CLIENTS - 1]);
    late->greeting = qc_msg(late);
    check_greeting(__LINE__, late->greeting);
    T_JSON(OK(late, "{'execute': 'qmp_capabilities'}"), "{}");
    OK(late, "{'execute': 'query-iothreads'}");
    qc_close(late);
    for (int i = 0; i < MAX_CLIENTS - 1; i++) {
        qc_close(cs[i]);
    }
    daemon_quit(&d);
}

CASE(extra_brace)
{
    Daemon d;
    Qc *c;

    start_io0(&d);
    c = qc_open(d.sock);
    qc_printf(c, "{\"execute\": \"query-version\", \"id\": 1}}\n");
    T_JSON(jm(qc_reply(c), "id"), "1");
    PARSE_ERROR(qc_reply(c));
    OK(c, "{'execute': 'query-iothreads', 'id': 2}");
    qc_close(c);
    daemon_quit(&d);
}

CASE(two_per_line_and_empty_lines)
{
    Daemon d;
    Qc *c;
    json_object *r;

    start_io0(&d);
    c = qc_open(d.sock);
    qc_printf(c, "{\"execute\": \"query-version\", \"id\": 1}"
                 "{\"execute\": \"query-iothreads\", \"id\": 2}\n");
    r = qc_reply(c);
    T_JSON(jm(r, "id"), "1");
    T_ASSERT(jhas(r, "return"));
    r = qc_reply(c);
    T_JSON(jm(r, "id"), "2");
    T_ASSERT(json_object_is_type(jm(r, "return"), json_type_array));
    /* empty and blank lines get no reply */
    qc_printf(c, "\n\r\n   \n\t\n\n");
    OK(c, "{'execute': 'query-version', 'id': 'next'}");
    qc_close(c);
    daemon_quit(&d);
}

/* A string with \u0000 is refused with QEMU's text (json-c would cut the
 * string there), the command does not run, and the connection goes on. */
CASE(nul_escape)
{
    Daemon d;
    json_object *r;
    Qc *c;

    start_io0(&d);
    c = qc_open(d.sock);
    ERR(c, "JSON parse error, \\u0000 is not supported",
        "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
        "'id': 'a\\u0000b'}}");
    r = OK(c, "{'execute': 'query-iothreads'}");
    T_ASSERT_EQ(json_object_array_length(r), 1);
    /* an escaped \u0001 is fine; \u00000 is \u0000 then '0' */
    ERR(c, "JSON parse error, \\u0000 is not supported",
        "{'execute': 'query-iothreads', 'arguments': {'x': '\\u00000'}}");
    OK(c, "{'execute': 'query-iothreads', 'id': '\\u0001'}");
    qc_close(c);
    daemon_quit(&d);
}

CASE(garbage_then_valid)
{
    static const char *const garbage[] = {
        "\x01\x02\xfe\xff garbage\n",
        "{{{ ]]] }}} ,,, :::\n",
        "{\"execute\": \"query-version\", \"arguments\": {\"a\": [1, }\n",
        "123abc \"str\" nul tru\n",
        "\x80\x81\xc3\x28 \"\xc3\x28\"\n",
    };
    Daemon d;
    Qc *c, *other;

    start_io0(&d);
    c = qc_open(d.sock);
    other = qc_open(d.sock);
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        json_object *errs = errors_before(c, garbage[i]);
        if (json_object_array_length(errs) < 1) {
            t_fail(__FILE__, __LINE__, "no error for garbage %zu", i);
        }
        OK(other, "{'execute': 'query-iothreads'}");
    }
    /* still negotiated, still the same connection */
    ERR_CLS(c, "CommandNotFound", DONE_MSG, "{'execute': 'qmp_capabilities'}");
    qc_close(c);
    qc_close(other);
    daemon_quit(&d);
}

/* A string cut by the end of the line: JSON has no raw newline in a
 * string (QEMU's lexer refuses control characters there), so the error
 * is on that line and the next line is a command of its own. */
CASE(garbage_unterminated_string)
{
    Daemon d;
    Qc *c;
    json_object *r, *after = NULL;
    int errors = 0;

    start_io0(&d);
    c = qc_open(d.sock);
    qc_printf(c, "{\"execute\": \"quer\n"
                 "{\"execute\": \"query-version\", \"id\": \"after\"}\n"
                 "{\"execute\": \"query-version\", \"id\": \"sentinel\"}\n");
    while (!jeq(jm(r = qc_reply(c), "id"), "'sentinel'")) {
        if (jeq(jm(r, "id"), "'after'")) {
            after = r;
        } else {
            PARSE_ERROR(r);
            errors++;
        }
    }
    qc_close(c);
    daemon_quit(&d);
    T_ASSERT_EQ(errors, 1);
    if (!after || !jhas(after, "return")) {
        t_fail(__FILE__, __LINE__,
               "the line after an unterminated string was swallowed");
    }
}

/* QEMU accepts single-quoted strings; iothreadd's parser is strict JSON
 * (docs/iothreadd.md): a parse error, and the stream recovers. */
CASE(single_quotes)
{
    Daemon d;
    Qc *c;
    json_object *r;

    start_io0(&d);
    c = qc_open(d.sock);
    qc_printf(c, "{'execute': 'query-version', 'id': 'sq'}\n");
    qc_printf(c, "{\"execute\": \"query-version\", \"id\": \"dq\"}\n");
    r = qc_reply(c);
    PARSE_ERROR(r);
    T_JSON(jm(qc_reply(c), "id"), "'dq'");
    qc_close(c);
    daemon_quit(&d);
}

CASE(envelope_errors)
{
    Daemon d;
    Qc *c;

    start_io0(&d);
    c = qc_open(d.sock);
    ERR(c, "QMP input must be a JSON object", "[1, 2]");
    ERR(c, "QMP input must be a JSON object", "'execute'");
    ERR(c, "QMP input must be a JSON object", "42");
    ERR(c, "QMP input must be a JSON object", "null");
    ERR(c, "QMP input lacks member 'execute'", "{'id': 7}");
    ERR(c, "QMP input lacks member 'execute'", "{}");
    ERR(c, "QMP input member 'execute' must be a string",
        "{'execute': 1, 'id': 8}");
    ERR(c, "QMP input member 'execute' must be a string", "{'execute': null}");
    ERR(c, "QMP input member 'arguments' must be an object",
        "{'execute': 'query-version', 'arguments': [], 'id': 9}");
    ERR(c, "QMP input member 'arguments' must be an object",
        "{'execute': 'query-version', 'arguments': 'x'}");
    ERR(c, "QMP input member 'foo' is unexpected",
        "{'execute': 'query-version', 'foo': 1, 'id': 10}");
    /* before negotiation too */
    qc_close(c);
    c = qc_connect(d.sock);
    ERR(c, "QMP input lacks member 'execute'", "{'id': 11}");
    ERR(c, "QMP input must be a JSON object", "[]");
    qc_close(c);
    daemon_quit(&d);
}

CASE(partial_lines)
{
    const char *req = "{\"execute\": \"query-iothreads\", \"id\": \"slow\"}\n";
    const char *utf8_req = "{\"execute\": \"query-version\", "
                           "\"id\": \"\u00e9\u20ac\U0001F600\"}\n";
    static const char *const bad_utf8[] = {
        "a\x80", "\xc0\xaf", "\xed\xa0\x80", "\xc3x", "\xff", "\xf4\x90\x80\x80"
    };
    Daemon d;
    Qc *a, *b;
    size_t half = strlen(req) / 2;

    start_io0(&d);
    a = qc_open(d.sock);
    b = qc_open(d.sock);
    /* byte by byte */
    for (const char *p = req; *p; p++) {
        qc_send(a, p, 1);
    }
    T_JSON(jm(qc_reply(a), "id"), "'slow'");
    /* half a line, someone else's command, the other half */
    qc_send(a, req, half);
    OK(b, "{'execute': 'query-version', 'id': 'b'}");
    qc_send(a, req + half, strlen(req) - half);
    T_JSON(jm(qc_reply(a), "id"), "'slow'");
    /* a value spread over several lines is one value */
    qc_printf(a, "{\"execute\":\n\"query-version\",\n\"id\": \"ml\"\n}\n");
    T_JSON(jm(qc_reply(a), "id"), "'ml'");
    /* characters of two, three and four bytes split between reads */
    for (const char *p = utf8_req; *p; p++) {
        qc_send(a, p, 1);
    }
    T_ASSERT_STR(jstr(qc_reply(a), "id"), "\u00e9\u20ac\U0001F600");
    /* and invalid UTF-8 is refused, whole or byte by byte: a stray
     * continuation byte, an overlong form, a surrogate, a cut sequence */
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
        char *line = fmt("{\"execute\": \"query-version\", \"id\": \"%s\"}\n",
                         bad_utf8[i]);
        if (i % 2) {
            qc_printf(a, "%s", line);
        } else {
            for (const char *p = line; *p; p++) {
                qc_send(a, p, 1);
            }
        }
        PARSE_ERROR(qc_reply(a));
        OK(a, "{'execute': 'query-version', 'id': 'ok'}");
    }
    qc_close(a);
    qc_close(b);
    daemon_quit(&d);
}

/* Blank lines between commands are not input of a value: more than the
 * 1 MiB limit of them, then a command in two parts, is one command. */
CASE(blank_lines)
{
    const size_t size = 1100 * 1024, chunk = 64 * 1024;
    char *nl = keep_str(malloc(chunk));
    Daemon d;
    Qc *a, *b;
    json_object *r;

    memset(nl, '\n', chunk);
    start_io0(&d);
    a = qc_open(d.sock);
    b = qc_open(d.sock);
    for (size_t sent = 0; sent < size; sent += chunk) {
        qc_send(a, nl, chunk);
    }
    OK(a, "{'execute': 'query-version', 'id': 'between'}");
    qc_send(a, nl, chunk);
    qc_printf(a, "  {\"execute\": \"query-version\",");
    OK(b, "{'execute': 'query-iothreads', 'id': 'other'}"); /* a read apart */
    qc_printf(a, "\"id\": \"split\"}\n");
    r = qc_reply(a);
    T_ASSERT(jhas(r, "return"));
    T_ASSERT_STR(jstr(r, "id"), "split");
    OK(a, "{'execute': 'query-version', 'id': 'after'}");
    qc_close(a);
    qc_close(b);
    daemon_quit(&d);
}

CASE(long_line)
{
    const size_t size = 2 * 1024 * 1024, chunk = 128 * 1024;
    const char *head = "{\"execute\": \"query-version\", \"id\": \"";
    Daemon d;
    Qc *a, *b;
    char *line;
    size_t len;
    json_object *r;

    start_io0(&d);
    a = qc_open(d.sock);
    b = qc_open(d.sock);
    line = keep_str(malloc(size + 64));
    strcpy(line, head);
    len = strlen(head);
    memset(line + len, 'x', size);
    len += size;
    memcpy(line + len, "\"}", 2);
    len += 2;
    /* 2 MiB without a newline, another client served between chunks */
    for (size_t off = 0; off < len; off += chunk) {
        qc_send(a, line + off, len - off < chunk ? len - off : chunk);
        OK(b, "{'execute': 'query-version', 'id': 'b'}");
    }
    qc_send(a, "\n", 1);
    r = qc_reply(a);
    PARSE_ERROR(r);
    OK(a, "{'execute': 'query-iothreads', 'id': 'after'}");
    /* the same with the newline sent at once */
    qc_send(a, line, len);
    qc_send(a, "\n", 1);
    PARSE_ERROR(qc_reply(a));
    OK(a, "{'execute': 'query-version', 'id': 'after2'}");
    /* past the limit by less than a read, in the read that takes it past:
     * refused too (the limit was checked only while the value was still
     * growing, so up to a read's worth more got through).  All but the
     * last 2000 bytes first, read by the daemon to the last byte
     * (SIOCOUTQ: nothing left unread), then those in one read. */
    {
        size_t total = 1024 * 1024 + 100, first = total - 2000, outq = 1;
        memcpy(line + total - 2, "\"}\n", 3);
        for (size_t off = 0; off < first; off += chunk) {
            qc_send(a, line + off, first - off < chunk ? first - off : chunk);
        }
        while (outq) {
            const struct timespec ms = { 0, 1000000 };
            int n;
            T_ASSERT_EQ(ioctl(a->fd, SIOCOUTQ, &n), 0);
            outq = (size_t)n;
            nanosleep(&ms, NULL);
        }
        qc_send(a, line + first, total + 1 - first);
        PARSE_ERROR(qc_reply(a));
        OK(a, "{'execute': 'query-version', 'id': 'after3'}");
        memset(line + total - 2, 'x', 3);
    }
    /* just under the limit is fine */
    memcpy(line + strlen(head) + 512 * 1024, "\"}\n", 3);
    qc_send(a, line, strlen(head) + 512 * 1024 + 3);
    r = qc_reply(a);
    T_ASSERT(jhas(r, "return"));
    T_ASSERT_EQ(strlen(jstr(r, "id")), 512 * 1024);
    qc_close(a);
    qc_close(b);
    daemon_quit(&d);
}

/* ==== commands ==== */

CASE(query_version_and_commands)
{
    static const char *const names[] = {
        "qmp_capabilities", "query-version",
        "query-commands",   "quit",
        "query-iothreads",  "query-iothread-stats",
        "object-add",       "object-del",
        "qom-get",          "qom-set",
        "qom-list",         "qom-list-properties",
    };
    Daemon d;
    Qc *c;
    json_object *v, *list;

    start_io0(&d);
    c = qc_open(d.sock);
    v = OK(c, "{'execute': 'query-version'}");
    T_JSON(jm(v, "qemu"), "{'major': 0, 'minor': 1, 'micro': 0}");
    T_ASSERT(jstr(v, "package") != NULL);
    T_ASSERT_EQ(json_object_object_length(v), 2);
    OK(c, "{'execute': 'query-version', 'arguments': {}}");
    ERR(c, "Parameter 'foo' is unexpected",
        "{'execute': 'query-version', 'arguments': {'foo': 1}}");
    list = OK(c, "{'execute': 'query-commands'}");
    T_ASSERT(json_object_is_type(list, json_type_array));
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        T_ASSERT(jstr(e, "name") != NULL);
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        bool found = false;
        for (size_t k = 0; k < json_object_array_length(list); k++) {
            const char *n = jstr(json_object_array_get_idx(list, k), "name");
            found |= !strcmp(n, names[i]);
        }
        if (!found) {
            t_fail(__FILE__, __LINE__, "query-commands lacks %s", names[i]);
        }
    }
    ERR(c, "Parameter 'foo' is unexpected",
        "{'execute': 'query-commands', 'arguments': {'foo': 1}}");
    ERR_CLS(c, "CommandNotFound",
            "The command no-such-command has not been found",
            "{'execute': 'no-such-command', 'id': 1}");
    ERR_CLS(c, "CommandNotFound", "The command  has not been found",
            "{'execute': ''}");
    qc_close(c);
    daemon_quit(&d);
}

CASE(query_iothreads)
{
    static const char *const keys[] = { "id",          "thread-id",
                                        "poll-max-ns", "poll-grow",
                                        "poll-shrink", "aio-max-batch" };
    Daemon d;
    Qc *c;
    json_object *list, *e;

    daemon_start(&d, "--object", "iothread,id=io0", "--object",
                 "iothread,id=io1,poll-max-ns=0,poll-grow=3,poll-shrink=4,"
                 "aio-max-batch=5,thread-pool-min=1,thread-pool-max=9",
                 NULL);
    c = qc_open(d.sock);
    list = OK(c, "{'execute': 'query-iothreads'}");
    T_ASSERT_EQ(json_object_array_length(list), 2);
    for (size_t i = 0; i < 2; i++) {
        e = json_object_array_get_idx(list, i);
        T_ASSERT_EQ(json_object_object_length(e), 6);
        for (size_t k = 0; k < 6; k++) {
            if (!jhas(e, keys[k])) {
                t_fail(__FILE__, __LINE__, "%s lacks %s", jtext(e), keys[k]);
            }
        }
        T_ASSERT(JINT(e, "thread-id") > 0);
    }
    e = find_id(list, "io0");
    T_ASSERT(e != NULL);
    T_ASSERT_EQ(JINT(e, "poll-max-ns"), 32768);
    T_ASSERT_EQ(JINT(e, "poll-grow"), 0);
    T_ASSERT_EQ(JINT(e, "poll-shrink"), 0);
    T_ASSERT_EQ(JINT(e, "aio-max-batch"), 0);
    e = find_id(list, "io1");
    T_ASSERT(e != NULL);
    T_ASSERT_EQ(JINT(e, "poll-max-ns"), 0);
    T_ASSERT_EQ(JINT(e, "poll-grow"), 3);
    T_ASSERT_EQ(JINT(e, "poll-shrink"), 4);
    T_ASSERT_EQ(JINT(e, "aio-max-batch"), 5);
    OK(c, "{'execute': 'query-iothreads', 'arguments': {}}");
    ERR(c, "Parameter 'foo' is unexpected",
        "{'execute': 'query-iothreads', 'arguments': {'foo': 1}}");
    qc_close(c);
    daemon_quit(&d);
}

CASE(object_add)
{
    Daemon d;
    Qc *c;
    json_object *e;

    start_io0(&d);
    c = qc_open(d.sock);
    T_JSON(OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': "
                 "'iothread', 'id': 'io2', 'poll-max-ns': 1000, "
                 "'poll-grow': 2, 'poll-shrink': 3, 'aio-max-batch': 4, "
                 "'thread-pool-min': 5, 'thread-pool-max': 6}, 'id': 1}"),
           "{}");
    e = find_id(OK(c, "{'execute': 'query-iothreads'}"), "io2");
    T_ASSERT(e != NULL);
    T_ASSERT_EQ(JINT(e, "poll-max-ns"), 1000);
    T_ASSERT_EQ(JINT(e, "poll-grow"), 2);
    T_ASSERT_EQ(JINT(e, "poll-shrink"), 3);
    T_ASSERT_EQ(JINT(e, "aio-max-batch"), 4);
    T_JSON(OK(c, "{'execute': 'qom-get', 'arguments': {'path': "
                 "'/objects/io2', 'property': 'thread-pool-min'}}"),
           "5");
    T_JSON(OK(c, "{'execute': 'qom-get', 'arguments': {'path': "
                 "'/objects/io2', 'property': 'thread-pool-max'}}"),
           "6");
    T_ASSERT(task_comm(d.pid, JINT(e, "thread-id")) != NULL);
    /* INT64_MAX is accepted; defaults need no member */
    OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'big', 'poll-max-ns': 9223372036854775807, "
          "'thread-pool-max': 2147483647}}");
    e = find_id(OK(c, "{'execute': 'query-iothreads'}"), "big");
    T_ASSERT(e != NULL);
    T_ASSERT(JINT(e, "poll-max-ns") == INT64_MAX);
    OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'plain'}}");
    e = find_id(OK(c, "{'execute': 'query-iothreads'}"), "plain");
    T_ASSERT(e != NULL);
    T_ASSERT_EQ(JINT(e, "poll-max-ns"), 32768);
    /* ids: letters, digits, '-', '.', '_' after a letter */
    OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'A-b.c_9'}}");
    T_ASSERT(find_id(OK(c, "{'execute': 'query-iothreads'}"), "A-b.c_9"));
    qc_close(c);
    daemon_quit(&d);
}

CASE(object_add_errors)
{
    static const char *const bad_ids[] = { "''", "'a b'", "'1a'", "'a/b'",
                                           "'-a'" };
    static const char *const bad_ints[] = {
        "9223372036854775808",
        "18446744073709551616",
        "1.5",
        "'100'",
        "true",
        "null",
        "{}",
        "[]",
    };
    Daemon d;
    Qc *c;
    json_object *before;
    int tasks;
#define add                                                                    \
    "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', 'id': "   \
    "'io2', %s}}"

    start_io0(&d);
    c = qc_open(d.sock);
    before = OK(c, "{'execute': 'query-iothreads'}");
    tasks = task_count(d.pid);
    ERR(c, "Parameter 'id' is missing",
        "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread'}, "
        "'id': 1}");
    ERR(c, "Parameter 'qom-type' is missing",
        "{'execute': 'object-add', 'arguments': {'id': 'io2'}}");
    ERR(c, "Invalid parameter type for 'id', expected: string",
        "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
        "'id': 5}}");
    ERR(c, "Invalid parameter type for 'qom-type', expected: string",
        "{'execute': 'object-add', 'arguments': {'qom-type': 1, 'id': 'x'}}");
    ERR(c, "Parameter 'qom-type' does not accept value 'no-such-type'",
        "{'execute': 'object-add', 'arguments': {'qom-type': 'no-such-type', "
        "'id': 'io2'}}");
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        ERR(c, ID_MSG,
            fmt("{'execute': 'object-add', 'arguments': {'qom-type': "
                "'iothread', 'id': %s}}",
                bad_ids[i]));
    }
    /* The id before any setter, as QEMU's user_creatable_add_type(). */
    ERR(c, ID_MSG,
        "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
        "'poll-max-ns': -1, 'id': '1bad'}}");
    for (size_t i = 0; i < N_INT_PROPS; i++) {
        ERR(c,
            fmt("%s value must be in range [0, 9223372036854775807]",
                int_props[i]),
            fmt(add, fmt("'%s': -1", int_props[i])));
        for (size_t k = 0; k < sizeof(bad_ints) / sizeof(bad_ints[0]); k++) {
            ERR(c,
                fmt("Invalid parameter type for '%s', expected: integer",
                    int_props[i]),
                fmt(add, fmt("'%s': %s", int_props[i], bad_ints[k])));
        }
    }
    ERR(c, POOL_MSG, fmt(add, "'thread-pool-min': 5, 'thread-pool-max': 4"));
    ERR(c, POOL_MSG, fmt(add, "'thread-pool-min': 65"));
    ERR(c, POOL_MSG, fmt(add, "'thread-pool-max': 0"));
    ERR(c, POOL_MSG, fmt(add, "'thread-pool-max': 2147483648"));
    ERR(c, POOL_MSG,
        fmt(add, "'thread-pool-min': 2147483648, "
                 "'thread-pool-max': 2147483648"));
    ERR(c,
        "attempt to add duplicate property 'io0' to object (type "
        "'container')",
        "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
        "'id': 'io0'}}");
    ERR(c, "Parameter 'foo' is unexpected", fmt(add, "'foo': 1"));
    ERR(c, "Parameter 'props' is unexpected",
        fmt(add, "'props': {'poll-max-ns': 1}"));
    ERR(c, "Invalid parameter type for 'cpu-affinity', expected: string",
        fmt(add, "'cpu-affinity': 0"));
    ERR(c, "Parameter 'id' is missing",
        "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread'}}");
    ERR(c, "Parameter 'qom-type' is missing", "{'execute': 'object-add'}");
    /* nothing was left behind: same list, same threads, id still free */
    T_ASSERT(
        json_object_equal(before, OK(c, "{'execute': 'query-iothreads'}")));
    WAIT_UNTIL(task_count(d.pid) == tasks, "the thread count to settle");
    OK(c, fmt(add, "'poll-max-ns': 7"));
    qc_close(c);
    daemon_quit(&d);
#undef add
}

/* json-c saturates integers below INT64_MIN, so iothreadd answers with
 * the range error where QEMU gives the type error (docs/iothreadd.md);
 * either way the value is refused and nothing changes. */
CASE(int_below_int64_min)
{
    Daemon d;
    Qc *c;
    json_object *r;

    start_io0(&d);
    c = qc_open(d.sock);
    r = cmd(c, "{'execute': 'qom-set', 'arguments': {'path': 'io0', "
               "'property': 'poll-max-ns', 'value': "
               "-9223372036854775809}}");
    T_ASSERT(jhas(r, "error"));
    T_ASSERT(strstr(jstr(jm(r, "error"), "desc"), "poll-max-ns") != NULL);
    qc_close(c);
    daemon_quit(&d);
}

CASE(object_del)
{
    Daemon d;
    Qc *c;
    json_object *e;
    int64_t tid;

    start_io0(&d);
    c = qc_open(d.sock);
    ERR(c, "object 'nope' not found",
        "{'execute': 'object-del', 'arguments': {'id': 'nope'}, 'id': 1}");
    ERR(c, "Parameter 'id' is missing", "{'execute': 'object-del'}");
    ERR(c, "Invalid parameter type for 'id', expected: string",
        "{'execute': 'object-del', 'arguments': {'id': 1}}");
    ERR(c, "Parameter 'foo' is unexpected",
        "{'execute': 'object-del', 'arguments': {'id': 'io0', 'foo': 1}}");
    OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'io2', 'poll-max-ns': 5}}");
    e = find_id(OK(c, "{'execute': 'query-iothreads'}"), "io2");
    tid = JINT(e, "thread-id");
    T_ASSERT_STR(task_comm(d.pid, tid), "IO io2");
    T_JSON(OK(c, "{'execute': 'object-del', 'arguments': {'id': 'io2'}, "
                 "'id': 2}"),
           "{}");
    /* stopped and joined: the thread leaves /proc once the kernel is done */
    WAIT_UNTIL(!task_exists(d.pid, tid), "the deleted IOThread's task");
    T_ASSERT(!find_id(OK(c, "{'execute': 'query-iothreads'}"), "io2"));
    T_ASSERT(!find_id(OK(c, "{'execute': 'query-iothread-stats'}"), "io2"));
    ERR(c, "object 'io2' not found",
        "{'execute': 'object-del', 'arguments': {'id': 'io2'}}");
    ERR_CLS(c, "DeviceNotFound", "Device '/objects/io2' not found",
            "{'execute': 'qom-get', 'arguments': {'path': '/objects/io2', "
            "'property': 'poll-max-ns'}}");
    /* the id can be added again, with fresh properties */
    OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'io2'}}");
    e = find_id(OK(c, "{'execute': 'query-iothreads'}"), "io2");
    T_ASSERT_EQ(JINT(e, "poll-max-ns"), 32768);
    T_ASSERT_STR(task_comm(d.pid, JINT(e, "thread-id")), "IO io2");
    /* and io0, from the command line, can be deleted too */
    OK(c, "{'execute': 'object-del', 'arguments': {'id': 'io0'}}");
    T_ASSERT(!find_id(OK(c, "{'execute': 'query-iothreads'}"), "io0"));
    qc_close(c);
    daemon_quit(&d);
}

CASE(qom_get)
{
    static const char *const paths[] = { "/objects/io1", "io1" };
    static const int64_t want[] = { 0, 3, 4, 5, 1, 9 };
    Daemon d;
    Qc *c;

    daemon_start(&d, "--object",
                 "iothread,id=io1,poll-max-ns=0,poll-grow=3,poll-shrink=4,"
                 "aio-max-batch=5,thread-pool-min=1,thread-pool-max=9",
                 "--object", "iothread,id=io0", NULL);
    c = qc_open(d.sock);
    for (size_t p = 0; p < 2; p++) {
        for (size_t i = 0; i < N_INT_PROPS; i++) {
            json_object *v =
                OK(c, fmt("{'execute': 'qom-get', 'arguments': {'path': '%s', "
                          "'property': '%s'}}",
                          paths[p], int_props[i]));
            if (!json_object_is_type(v, json_type_int) ||
                json_object_get_int64(v) != want[i]) {
                t_fail(__FILE__, __LINE__, "%s %s = %s, expected %" PRId64,
                       paths[p], int_props[i], jtext(v), want[i]);
            }
        }
        T_JSON(OK(c, fmt("{'execute': 'qom-get', 'arguments': {'path': "
                         "'%s', 'property': 'type'}}",
                         paths[p])),
               "'iothread'");
    }
    for (size_t i = 0; i < N_INT_PROPS; i++) {
        static const int64_t defaults[] = { 32768, 0, 0, 0, 0, 64 };
        T_JSON(OK(c, fmt("{'execute': 'qom-get', 'arguments': {'path': "
                         "'/objects/io0', 'property': '%s'}}",
                         int_props[i])),
               fmt("%" PRId64, defaults[i]));
    }
    T_JSON(OK(c, "{'execute': 'qom-get', 'arguments': {'path': 'io0', "
                 "'property': 'cpu-affinity'}}"),
           "''");
    ERR(c, "Property 'iothread.nope' not found",
        "{'execute': 'qom-get', 'arguments': {'path': '/objects/io0', "
        "'property': 'nope'}, 'id': 1}");
    ERR_CLS(c, "DeviceNotFound", "Device '/objects/nope' not found",
            "{'execute': 'qom-get', 'arguments': {'path': '/objects/nope', "
            "'property': 'poll-max-ns'}, 'id': 2}");
    ERR_CLS(c, "DeviceNotFound", "Device 'nope' not found",
            "{'execute': 'qom-get', 'arguments': {'path': 'nope', "
            "'property': 'poll-max-ns'}}");
    /* paths as QEMU resolves them: partial ones that only io0 ends with,
     * empty parts ignored; anything else names nothing */
    static const char *const same[] = { "objects/io0", "/objects/io0/",
                                        "//objects//io0", "io0/" };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        T_JSON(OK(c, fmt("{'execute': 'qom-get', 'arguments': {'path': "
                         "'%s', 'property': 'poll-max-ns'}}",
                         same[i])),
               "32768");
    }
    static const char *const none[] = { "/io0", "/objects/io0/x", "x/io0",
                                        "objects/objects/io0" };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        ERR_CLS(c, "DeviceNotFound", fmt("Device '%s' not found", none[i]),
                fmt("{'execute': 'qom-get', 'arguments': {'path': '%s', "
                    "'property': 'poll-max-ns'}}",
                    none[i]));
    }
    ERR(c, "Parameter 'path' is missing",
        "{'execute': 'qom-get', 'arguments': {'property': 'poll-max-ns'}}");
    ERR(c, "Parameter 'property' is missing",
        "{'execute': 'qom-get', 'arguments': {'path': 'io0'}}");
    ERR(c, "Invalid parameter type for 'path', expected: string",
        "{'execute': 'qom-get', 'arguments': {'path': 1, 'property': 'x'}}");
    ERR(c, "Invalid parameter type for 'property', expected: string",
        "{'execute': 'qom-get', 'arguments': {'path': 'io0', 'property': "
        "[]}}");
    ERR(c, "Parameter 'value' is unexpected",
        "{'execute': 'qom-get', 'arguments': {'path': 'io0', 'property': "
        "'poll-max-ns', 'value': 1}}");
    qc_close(c);
    daemon_quit(&d);
}

static int64_t get_int(Qc *c, const char *prop)
{
    json_object *v = OK(c, fmt("{'execute': 'qom-get', 'arguments': {'path': "
                               "'/objects/io0', 'property': '%s'}}",
                               prop));

    T_ASSERT(json_object_is_type(v, json_type_int));
    return json_object_get_int64(v);
}

CASE(qom_set)
{
    static const char *const bad_ints[] = {
        "9223372036854775808",
        "18446744073709551616",
        "1.5",
        "'100'",
        "true",
        "null",
    };
#define set                                                                    \
    "{'execute': 'qom-set', 'arguments': {'path': '/objects/io0', "            \
    "'property': '%s', 'value': %s}}"
    Daemon d;
    Qc *c;
    json_object *e;

    start_io0(&d);
    c = qc_open(d.sock);
    for (size_t i = 0; i < N_INT_PROPS; i++) {
        int64_t v = 10 + (int64_t)i;
        T_JSON(OK(c, fmt(set, int_props[i], fmt("%" PRId64, v))), "{}");
        T_ASSERT_EQ(get_int(c, int_props[i]), v);
    }
    e = find_id(OK(c, "{'execute': 'query-iothreads'}"), "io0");
    T_ASSERT_EQ(JINT(e, "poll-max-ns"), 10);
    T_ASSERT_EQ(JINT(e, "poll-grow"), 11);
    T_ASSERT_EQ(JINT(e, "poll-shrink"), 12);
    T_ASSERT_EQ(JINT(e, "aio-max-batch"), 13);
    /* the partial path works for qom-set too */
    OK(c, "{'execute': 'qom-set', 'arguments': {'path': 'io0', 'property': "
          "'poll-max-ns', 'value': 9223372036854775807}}");
    T_ASSERT(get_int(c, "poll-max-ns") == INT64_MAX);
    OK(c, fmt(set, "poll-max-ns", "0"));

    for (size_t i = 0; i < N_INT_PROPS; i++) {
        int64_t was = get_int(c, int_props[i]);
        ERR(c,
            fmt("%s value must be in range [0, 9223372036854775807]",
                int_props[i]),
            fmt(set, int_props[i], "-1"));
        for (size_t k = 0; k < sizeof(bad_ints) / sizeof(bad_ints[0]); k++) {
            ERR(c,
                fmt("Invalid parameter type for '%s', expected: integer",
                    int_props[i]),
                fmt(set, int_props[i], bad_ints[k]));
        }
        T_ASSERT_EQ(get_int(c, int_props[i]), was);
    }
    /* pool bounds: a failed set changes nothing (QEMU stores it anyway) */
    ERR(c, POOL_MSG, fmt(set, "thread-pool-min", "16"));
    T_ASSERT_EQ(get_int(c, "thread-pool-min"), 14);
    ERR(c, POOL_MSG, fmt(set, "thread-pool-max", "13"));
    ERR(c, POOL_MSG, fmt(set, "thread-pool-max", "0"));
    ERR(c, POOL_MSG, fmt(set, "thread-pool-max", "2147483648"));
    T_ASSERT_EQ(get_int(c, "thread-pool-max"), 15);
    /* and later sets of other properties still work (QEMU's bug) */
    OK(c, fmt(set, "poll-grow", "2"));
    T_ASSERT_EQ(get_int(c, "poll-grow"), 2);
    OK(c, fmt(set, "thread-pool-max", "64"));
    OK(c, fmt(set, "thread-pool-min", "0"));

    ERR(c, "Property 'iothread.type' is not writable", fmt(set, "type", "'x'"));
    ERR(c, "Property 'iothread.nope' not found", fmt(set, "nope", "1"));
    ERR_CLS(c, "DeviceNotFound", "Device '/objects/nope' not found",
            "{'execute': 'qom-set', 'arguments': {'path': '/objects/nope', "
            "'property': 'poll-max-ns', 'value': 1}}");
    ERR_CLS(c, "DeviceNotFound", "Device 'nope' not found",
            "{'execute': 'qom-set', 'arguments': {'path': 'nope', "
            "'property': 'poll-max-ns', 'value': 1}}");
    ERR(c, "Parameter 'value' is missing",
        "{'execute': 'qom-set', 'arguments': {'path': 'io0', 'property': "
        "'poll-max-ns'}}");
    ERR(c, "Parameter 'property' is missing",
        "{'execute': 'qom-set', 'arguments': {'path': 'io0', 'value': 1}}");
    ERR(c, "Parameter 'path' is missing",
        "{'execute': 'qom-set', 'arguments': {'property': 'poll-max-ns', "
        "'value': 1}}");
    ERR(c, "Parameter 'foo' is unexpected",
        "{'execute': 'qom-set', 'arguments': {'path': 'io0', 'property': "
        "'poll-max-ns', 'value': 1, 'foo': 2}}");
    /* cpu-affinity: a string property (iothreadd's own) */
    OK(c, fmt(set, "cpu-affinity", "'0'"));
    T_JSON(OK(c, "{'execute': 'qom-get', 'arguments': {'path': 'io0', "
                 "'property': 'cpu-affinity'}}"),
           "'0'");
    ERR(c, "Invalid parameter type for 'cpu-affinity', expected: string",
        fmt(set, "cpu-affinity", "0"));
    OK(c, fmt(set, "cpu-affinity", "''"));
    qc_close(c);
    daemon_quit(&d);
#undef set
}

/* The entry named @name in a qom-list reply, or NULL. */
static json_object *find_name(json_object *list, const char *name)
{
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (jstr(e, "name") && !strcmp(jstr(e, "name"), name)) {
            return e;
        }
    }
    return NULL;
}

CASE(qom_list)
{
    Daemon d;
    Qc *c;
    json_object *l;

    start_io0(&d);
    c = qc_open(d.sock);
    for (int p = 0; p < 2; p++) {
        l = OK(c, p ? "{'execute': 'qom-list', 'arguments': {'path': 'io0'}}"
                    : "{'execute': 'qom-list', 'arguments': {'path': "
                      "'/objects/io0'}}");
        T_ASSERT(json_object_is_type(l, json_type_array));
        T_JSON(jm(find_name(l, "type"), "type"), "'string'");
        for (size_t i = 0; i < N_INT_PROPS; i++) {
            json_object *e = find_name(l, int_props[i]);
            if (!jeq(jm(e, "type"), "'int'")) {
                t_fail(__FILE__, __LINE__, "qom-list: %s is %s", int_props[i],
                       jtext(e));
            }
        }
    }
    /* the container, by any path QEMU reads as it */
    static const char *const objects[] = { "/objects", "/objects/", "objects",
                                           "//objects" };
    for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++) {
        l = OK(c, fmt("{'execute': 'qom-list', 'arguments': {'path': '%s'}}",
                      objects[i]));
        T_ASSERT(find_name(l, "io0") != NULL);
    }
    l = OK(c, "{'execute': 'qom-list', 'arguments': {'path': 'objects/io0'}}");
    T_ASSERT(find_name(l, "poll-max-ns") != NULL);
    ERR_CLS(c, "DeviceNotFound", "Device '/objects/nope' not found",
            "{'execute': 'qom-list', 'arguments': {'path': '/objects/nope'}}");
    ERR(c, "Parameter 'path' is missing", "{'execute': 'qom-list'}");
    ERR(c, "Invalid parameter type for 'path', expected: string",
        "{'execute': 'qom-list', 'arguments': {'path': true}}");
    qc_close(c);
    daemon_quit(&d);
}

CASE(qom_list_properties)
{
    Daemon d;
    Qc *c;
    json_object *l;

    start_io0(&d);
    c = qc_open(d.sock);
    l = OK(c, "{'execute': 'qom-list-properties', 'arguments': {'typename': "
              "'iothread'}}");
    for (size_t i = 0; i < N_INT_PROPS; i++) {
        json_object *e = find_name(l, int_props[i]);
        if (!jeq(jm(e, "type"), "'int'")) {
            t_fail(__FILE__, __LINE__, "qom-list-properties: %s is %s",
                   int_props[i], jtext(e));
        }
    }
    ERR_CLS(c, "DeviceNotFound", "Class 'nope' not found",
            "{'execute': 'qom-list-properties', 'arguments': {'typename': "
            "'nope'}, 'id': 1}");
    ERR(c, "Parameter 'typename' is missing",
        "{'execute': 'qom-list-properties'}");
    ERR(c, "Invalid parameter type for 'typename', expected: string",
        "{'execute': 'qom-list-properties', 'arguments': {'typename': 1}}");
    qc_close(c);
    daemon_quit(&d);
}

static bool kebab(const char *s)
{
    if (!*s || *s == '-') {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              (*s == '-' && s[1] && s[1] != '-'))) {
            return false;
        }
    }
    return true;
}

CASE(query_iothread_stats)
{
    static const char *const keys[] = {
        "id",
        "thread-id",
        "cpu-affinity",
        "backend",
        "iterations",
        "busy-ns",
        "idle-ns",
        "poll-hits",
        "poll-misses",
        "poll-ns",
        "poll-window-ns",
        "notify-sent",
        "notify-elided",
        "bh-runs",
        "fd-events",
        "timer-fires",
        "pool-threads",
        "pool-queued",
        "pool-active",
    };
    Daemon d;
    Qc *c;
    json_object *stats, *threads, *one;

    daemon_start(&d, "--object", "iothread,id=io0", "--object",
                 "iothread,id=io1,cpu-affinity=0", NULL);
    c = qc_open(d.sock);
    stats = OK(c, "{'execute': 'query-iothread-stats'}");
    threads = OK(c, "{'execute': 'query-iothreads'}");
    T_ASSERT(json_object_is_type(stats, json_type_array));
    /* one entry per user-created IOThread, no internal ones */
    T_ASSERT_EQ(json_object_array_length(stats),
                json_object_array_length(threads));
    for (size_t i = 0; i < json_object_array_length(stats); i++) {
        json_object *e = json_object_array_get_idx(stats, i);
        json_object *t = find_id(threads, jstr(e, "id"));
        T_ASSERT(t != NULL);
        T_ASSERT_EQ(JINT(e, "thread-id"), JINT(t, "thread-id"));
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            if (!jhas(e, keys[k])) {
                t_fail(__FILE__, __LINE__, "stats lack %s: %s", keys[k],
                       jtext(e));
            }
        }
        json_object_object_foreach(e, key, val)
        {
            (void)val;
            if (!kebab(key)) {
                t_fail(__FILE__, __LINE__, "not kebab-case: %s", key);
            }
        }
        T_ASSERT(jstr(e, "cpu-affinity") != NULL);
        T_ASSERT(jstr(e, "backend") != NULL);
    }
    T_ASSERT_STR(jstr(find_id(stats, "io1"), "cpu-affinity"), "0");
    T_ASSERT_STR(jstr(find_id(stats, "io0"), "cpu-affinity"), "");
    one = OK(c, "{'execute': 'query-iothread-stats', 'arguments': {'id': "
                "'io1'}}");
    T_ASSERT_EQ(json_object_array_length(one), 1);
    T_ASSERT_STR(jstr(json_object_array_get_idx(one, 0), "id"), "io1");
    /* a new one appears, a deleted one goes */
    OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'io2'}}");
    T_ASSERT(find_id(OK(c, "{'execute': 'query-iothread-stats'}"), "io2"));
    OK(c, "{'execute': 'object-del', 'arguments': {'id': 'io2'}}");
    T_ASSERT(!find_id(OK(c, "{'execute': 'query-iothread-stats'}"), "io2"));
    ERR(c, "iothread \"nope\" not found",
        "{'execute': 'query-iothread-stats', 'arguments': {'id': 'nope'}}");
    ERR(c, "Invalid parameter type for 'id', expected: string",
        "{'execute': 'query-iothread-stats', 'arguments': {'id': 1}}");
    ERR(c, "Parameter 'foo' is unexpected",
        "{'execute': 'query-iothread-stats', 'arguments': {'foo': 1}}");
    qc_close(c);
    daemon_quit(&d);
}

/* ==== threads ==== */

CASE(thread_names)
{
    Daemon d;
    Qc *c;
    json_object *list;

    daemon_start(&d, "--object", "iothread,id=io0", "--object",
                 "iothread,id=io1,poll-max-ns=0", NULL);
    c = qc_open(d.sock);
    OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'averyveryverylongid'}}");
    OK(c, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'x123456789012'}}");
    list = OK(c, "{'execute': 'query-iothreads'}");
    T_ASSERT_EQ(json_object_array_length(list), 4);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        int64_t tid = JINT(e, "thread-id");
        char *want = fmt("IO %s", jstr(e, "id"));
        char *comm = task_comm(d.pid, tid);
        want[15 < strlen(want) ? 15 : strlen(want)] = '\0';
        if (!comm || strcmp(comm, want)) {
            t_fail(__FILE__, __LINE__,
                   "/proc/%d/task/%" PRId64 "/comm is \"%s\", expected "
                   "\"%s\"",
                   (int)d.pid, tid, comm ? comm : "(none)", want);
        }
        T_ASSERT(tid != d.pid);
    }
    T_ASSERT_STR(task_comm(d.pid, JINT(find_id(list, "averyveryverylongid"),
                                       "thread-id")),
                 "IO averyveryver");
    T_ASSERT_STR(
        task_comm(d.pid, JINT(find_id(list, "x123456789012"), "thread-id")),
        "IO x12345678901");
    qc_close(c);
    daemon_quit(&d);
}

/* ==== clients ==== */

CASE(four_clients)
{
    enum { NC = 4, ROUNDS = 20 };
    Daemon d;
    Qc *c[NC];

    start_io0(&d);
    for (int i = 0; i < NC; i++) {
        c[i] = qc_open(d.sock);
    }
    for (int r = 0; r < ROUNDS; r++) {
        /* everyone sends everything first, then everyone reads */
        for (int i = 0; i < NC; i++) {
            qc_printf(c[i],
                      "{\"execute\": \"object-add\", \"arguments\": "
                      "{\"qom-type\": \"iothread\", \"id\": \"c%dr%d\", "
                      "\"poll-max-ns\": %d}, \"id\": \"%d-%d-a\"}\n",
                      i, r, i * 100 + r, i, r);
            qc_printf(c[i],
                      "{\"execute\": \"qom-get\", \"arguments\": {\"path\": "
                      "\"c%dr%d\", \"property\": \"poll-max-ns\"}, \"id\": "
                      "\"%d-%d-b\"}\n",
                      i, r, i, r);
            qc_printf(c[i],
                      "{\"execute\": \"query-iothreads\", \"id\": "
                      "\"%d-%d-c\"}\n",
                      i, r);
            qc_printf(c[i],
                      "{\"execute\": \"object-del\", \"arguments\": {\"id\": "
                      "\"c%dr%d\"}, \"id\": \"%d-%d-d\"}\n",
                      i, r, i, r);
        }
        for (int i = NC - 1; i >= 0; i--) {
            json_object *a = qc_reply(c[i]), *b = qc_reply(c[i]);
            json_object *q = qc_reply(c[i]), *x = qc_reply(c[i]);
            T_JSON(jm(a, "id"), fmt("'%d-%d-a'", i, r));
            T_JSON(jm(a, "return"), "{}");
            T_JSON(jm(b, "id"), fmt("'%d-%d-b'", i, r));
            T_JSON(jm(b, "return"), fmt("%d", i * 100 + r));
            T_JSON(jm(q, "id"), fmt("'%d-%d-c'", i, r));
            T_ASSERT(find_id(jm(q, "return"), fmt("c%dr%d", i, r)));
            T_JSON(jm(x, "id"), fmt("'%d-%d-d'", i, r));
            T_JSON(jm(x, "return"), "{}");
        }
    }
    T_ASSERT_EQ(
        json_object_array_length(OK(c[0], "{'execute': 'query-iothreads'}")),
        1);
    for (int i = 0; i < NC; i++) {
        qc_close(c[i]);
    }
    daemon_quit(&d);
}

CASE(stalled_clients)
{
    enum { FLOOD = 10000 };
    Daemon d;
    Qc *half, *mute, *flood, *b, *gone;
    char *burst;
    size_t len = 0;
    const char *one = "{\"execute\": \"query-commands\"}\n";

    start_io0(&d);
    /* connects, sends half a line, never reads */
    half = qc_open(d.sock);
    qc_printf(half, "{\"execute\": \"query-ver");
    /* connects and never reads, not even the greeting */
    mute = qc_raw(d.sock);
    /* disconnects mid-line */
    gone = qc_open(d.sock);
    qc_printf(gone, "{\"execute\": \"query-iothreads\", \"argum");
    qc_close(gone);
    /* asks for megabytes of replies and reads none */
    flood = qc_open(d.sock);
    burst = keep_str(malloc(FLOOD * strlen(one) + 1));
    for (int i = 0; i < FLOOD; i++) {
        memcpy(burst + len, one, strlen(one));
        len += strlen(one);
    }
    qc_send(flood, burst, len);

    b = qc_open(d.sock);
    for (int i = 0; i < 50; i++) {
        OK(b, fmt("{'execute': 'query-iothreads', 'id': %d}", i));
    }
    OK(b, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'io2'}}");
    OK(b, "{'execute': 'object-del', 'arguments': {'id': 'io2'}}");
    /* the half line is still buffered */
    qc_printf(half, "sion\", \"id\": \"late\"}\n");
    T_JSON(jm(qc_reply(half), "id"), "'late'");
    /* the flooder vanishes with its replies unread */
    qc_close(flood);
    OK(b, "{'execute': 'query-version', 'id': 'end'}");
    qc_close(half);
    qc_close(mute);
    qc_close(b);
    daemon_quit(&d);
}

/* A client that asks for far more than it reads: past 16 MiB of replies
 * waiting for it, it is dropped (it sees EOF after what its socket
 * buffer holds), and the daemon serves everyone else. */
CASE(output_cap)
{
    enum { N = 80000 }; /* 325-byte replies: some 26 MB */
    static const char one[] = "{\"execute\": \"query-commands\"}\n";
    static const char neg[] = "{\"execute\": \"qmp_capabilities\"}\n";
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    size_t len = strlen(neg), off = 0;
    char *burst = keep_str(malloc(strlen(neg) + N * strlen(one) + 1));
    long lines = 0;
    char buf[65536];
    Daemon d;
    Qc *b;
    int fd;

    start_io0(&d);
    memcpy(burst, neg, strlen(neg));
    for (int i = 0; i < N; i++) {
        memcpy(burst + len, one, strlen(one));
        len += strlen(one);
    }
    strcpy(addr.sun_path, d.sock);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    T_ASSERT(fd >= 0);
    T_ASSERT_EQ(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    while (off < len) {
        ssize_t n = send(fd, burst + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            T_ASSERT(errno == EPIPE || errno == ECONNRESET);
            break; /* dropped while we were still sending */
        }
        off += (size_t)n;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            T_ASSERT(n == 0 || errno == ECONNRESET);
            break;
        }
        for (ssize_t i = 0; i < n; i++) {
            lines += buf[i] == '\n';
        }
    }
    close(fd);
    /* the greeting, then replies; far from all of them */
    T_ASSERT(lines > 1 && lines < N);
    b = qc_open(d.sock);
    OK(b, "{'execute': 'query-version'}");
    qc_close(b);
    daemon_quit(&d);
}

/* Sends @n query-commands, then a query-version whose id is @big_len
 * bytes (a reply larger than any socket buffer), then @tail; returns
 * that id. */
static char *send_many(Qc *a, int n, size_t big_len, const char *tail)
{
    char *big = keep_str(malloc(big_len + 1));

    for (int i = 0; i < n; i++) {
        qc_printf(a, "{\"execute\": \"query-commands\", \"id\": %d}\n", i);
    }
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    qc_printf(a, "{\"execute\": \"query-version\", \"id\": \"%s\"}\n%s", big,
              tail);
    return big;
}

/* The replies to send_many()'s commands, in order. */
static void expect_many(Qc *a, int n, const char *big)
{
    json_object *r;

    for (int i = 0; i < n; i++) {
        r = qc_reply(a);
        T_ASSERT(jhas(r, "return"));
        T_ASSERT_EQ(JINT(r, "id"), i);
    }
    r = qc_reply(a);
    T_ASSERT(jhas(r, "return"));
    T_ASSERT_STR(jstr(r, "id"), big);
}

/* A client that shuts its sending side after its commands (a pipe into
 * socat) still gets every reply, however much is queued, then EOF. */
CASE(half_close)
{
    enum { N = 3000, BIG = 600 * 1024 };
    Daemon d;
    Qc *a;
    char *big;

    start_io0(&d);
    a = qc_open(d.sock);
    big = send_many(a, N, BIG, "");
    T_ASSERT_EQ(shutdown(a->fd, SHUT_WR), 0);
    expect_many(a, N, big);
    T_ASSERT(qc_line_at(__LINE__, a) == NULL); /* then EOF */
    qc_close(a);
    daemon_quit(&d);
}

/* The same with quit at the end: quit's reply, the SHUTDOWN event and
 * everything queued before them go out before the daemon ends (it cut
 * them at what the socket took at once, mid-line; found by review).  A
 * second client gets its event and EOF without waiting for the first. */
CASE(quit_drains_output)
{
    enum { N = 3000, BIG = 600 * 1024 };
    Daemon d;
    Qc *a, *b;
    char *big;

    start_io0(&d);
    a = qc_open(d.sock);
    b = qc_open(d.sock);
    big = send_many(a, N, BIG, "{\"execute\": \"quit\", \"id\": \"q\"}\n");
    T_ASSERT_EQ(shutdown(a->fd, SHUT_WR), 0);
    T_JSON(jm(qc_event(b, "SHUTDOWN"), "data"),
           "{'guest': false, 'reason': 'host-qmp-quit'}");
    qc_expect_eof(b); /* not held up by a, which has not read yet */
    expect_many(a, N, big);
    T_JSON(qc_reply(a), "{'return': {}, 'id': 'q'}");
    qc_event(a, "SHUTDOWN");
    qc_expect_eof(a);
    qc_close(a);
    qc_close(b);
    daemon_gone_at(__LINE__, &d);
}

/* A client that never reads holds the daemon's end for a bounded time
 * only (the drain's deadline), and the daemon still exits cleanly. */
CASE(quit_with_a_client_that_never_reads)
{
    enum { N = 3000 };
    Daemon d;
    Qc *a, *b;
    int queued = 0;

    start_io0(&d);
    a = qc_open(d.sock);
    b = qc_open(d.sock);
    for (int i = 0; i < N; i++) {
        qc_printf(a, "{\"execute\": \"query-commands\", \"id\": %d}\n", i);
    }
    /* Its replies have filled a's socket: more are queued behind. */
    while (queued < 128 * 1024) {
        const struct timespec ms = { 0, 1000000 };
        T_ASSERT_EQ(ioctl(a->fd, FIONREAD, &queued), 0);
        nanosleep(&ms, NULL);
    }
    qc_printf(b, "{\"execute\": \"quit\"}\n");
    daemon_gone_at(__LINE__, &d);
    qc_close(a);
    qc_close(b);
}

/* Open fds of a process below @limit (it may have inherited others above
 * its RLIMIT_NOFILE, which do not count against it). */
static int proc_fds_below(pid_t pid, int limit)
{
    char path[64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    T_ASSERT(d != NULL);
    while ((e = readdir(d))) {
        n += e->d_name[0] != '.' && atoi(e->d_name) < limit;
    }
    closedir(d);
    return n;
}

/* utime + stime of a process, in clock ticks. */
static long proc_cpu_ticks(pid_t pid)
{
    char *stat = read_file(fmt("/proc/%d/stat", (int)pid)), *p;
    long ut = -1, st = -1;

    T_ASSERT(stat != NULL);
    p = strrchr(stat, ')');
    T_ASSERT(p != NULL);
    T_ASSERT_EQ(sscanf(p + 2,
                       "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld",
                       &ut, &st),
                2);
    return ut + st;
}

/* Out of fds, the daemon does not spin on the connection it cannot
 * accept (the listener stays readable), and it takes that connection as
 * soon as a client goes. */
CASE(out_of_fds)
{
    enum { LIMIT = 48, EXTRA = 4 };
    struct rlimit old, low;
    Qc *c[LIMIT + EXTRA], *first;
    int n = 0, spare;
    long t0;
    int64_t w0;
    Daemon d;

    T_ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = LIMIT;
    T_ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    start_io0(&d);
    T_ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    /* A round trip first: the loop has then made what it makes in its
     * first iterations (its io_uring ring), so the count below holds. */
    first = qc_open(d.sock);
    OK(first, "{'execute': 'query-iothreads'}");
    spare = LIMIT - proc_fds_below(d.pid, LIMIT);
    T_ASSERT(spare > 0 && spare < LIMIT);
    /* every fd the daemon has left, and a few connections more */
    for (n = 0; n < spare + EXTRA; n++) {
        c[n] = qc_raw(d.sock);
    }
    for (int i = 0; i < spare; i++) {
        c[i]->greeting = qc_msg(c[i]);
    }
    WAIT_UNTIL(proc_fds_below(d.pid, LIMIT) == LIMIT,
               "the daemon to run out of fds");
    /* A spinning loop would burn this whole window (a deliberate wait:
     * the check is that nothing happens).  The daemon looks again every
     * 100 ms, microseconds of CPU each; the bound is half the window, so
     * that sanitizer threads and a loaded machine cannot fail it, while a
     * spin with a core to itself cannot pass it. */
    t0 = proc_cpu_ticks(d.pid);
    w0 = now_ms();
    while (now_ms() - w0 < 500) {
        short_sleep();
    }
    T_ASSERT(proc_cpu_ticks(d.pid) - t0 < sysconf(_SC_CLK_TCK) / 4);
    /* A client goes: the first waiting connection is taken. */
    qc_close(first);
    c[spare]->greeting = qc_msg(c[spare]);
    check_greeting(__LINE__, c[spare]->greeting);
    T_JSON(OK(c[spare], "{'execute': 'qmp_capabilities'}"), "{}");
    OK(c[spare], "{'execute': 'query-iothreads', 'id': 'served'}");
    for (int i = 0; i < n; i++) {
        qc_close(c[i]);
    }
    daemon_quit(&d);
}

/* ==== shutdown ==== */

CASE(quit_command)
{
    Daemon d;
    Qc *a, *b, *raw;
    json_object *ev;

    daemon_start(&d, "--object", "iothread,id=io0", "--pidfile",
                 fmt("%s/d.pid", rundir), NULL);
    a = qc_open(d.sock);
    b = qc_connect(d.sock); /* not negotiated: no events */
    raw = qc_raw(d.sock);
    T_ASSERT(file_exists(d.pidfile));
    ERR(a, "Parameter 'foo' is unexpected",
        "{'execute': 'quit', 'arguments': {'foo': 1}}");
    OK(a, "{'execute': 'query-version', 'id': 'still-here'}");
    /* a command behind quit in the same read is not run */
    qc_printf(a, "{\"execute\": \"quit\", \"id\": \"q\"}\n"
                 "{\"execute\": \"object-add\", \"arguments\": "
                 "{\"qom-type\": \"iothread\", \"id\": \"late\"}, "
                 "\"id\": \"after-quit\"}\n");
    ev = qc_reply(a);
    T_JSON(ev, "{'return': {}, 'id': 'q'}");
    ev = qc_event(a, "SHUTDOWN");
    T_JSON(jm(ev, "data"), "{'guest': false, 'reason': 'host-qmp-quit'}");
    qc_expect_eof(a);
    qc_expect_eof(b);
    check_greeting(__LINE__, qc_msg(raw));
    qc_expect_eof(raw);
    qc_close(a);
    qc_close(b);
    qc_close(raw);
    daemon_gone_at(__LINE__, &d);
}

static void signal_case(int sig)
{
    Daemon d;
    Qc *a, *b, *half;
    json_object *ev;

    daemon_start(&d, "--object", "iothread,id=io0", "--object",
                 "iothread,id=io1", "--pidfile", fmt("%s/d.pid", rundir), NULL);
    a = qc_open(d.sock);
    b = qc_connect(d.sock);
    half = qc_open(d.sock);
    qc_printf(half, "{\"execute\": \"query-ver");
    OK(a, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'io2'}}");
    T_ASSERT(kill(d.pid, sig) == 0);
    ev = qc_event(a, "SHUTDOWN");
    T_JSON(jm(ev, "data"), "{'guest': false, 'reason': 'host-signal'}");
    qc_expect_eof(a);
    qc_expect_eof(b);
    T_JSON(jm(qc_event(half, "SHUTDOWN"), "data"),
           "{'guest': false, 'reason': 'host-signal'}");
    qc_expect_eof(half);
    qc_close(a);
    qc_close(b);
    qc_close(half);
    daemon_gone_at(__LINE__, &d);
}

CASE(sigterm)
{
    signal_case(SIGTERM);
}

CASE(sigint)
{
    signal_case(SIGINT);
}

CASE(sighup)
{
    signal_case(SIGHUP);
}

/* ==== the command line ==== */

/* Runs the daemon to its end with @args: "@R" in an argument stands for
 * run/.  Returns its wait status; stdout and stderr in *out, *err. */
static int run_to_end(const char *const *args, const char *cwd, bool no_xdg,
                      char **out, char **err)
{
    const char *real[40];
    Daemon d = { 0 };
    int n = 0, st;

    for (; *args && n < 39; args++) {
        const char *at = strstr(*args, "@R");
        real[n++] =
            at ? fmt("%.*s%s%s", (int)(at - *args), *args, rundir, at + 2)
               : *args;
    }
    real[n] = NULL;
    spawn_at(__LINE__, &d, real, cwd, no_xdg);
    /* EOF: every process writing it ended; a daemon that serves fails */
    while (out_fill(__LINE__, &d) > 0) {
        if (strstr(out_text(&d), "iothreadd: QMP on ")) {
            t_fail(__FILE__, __LINE__,
                   "the daemon started instead of exiting: %s%s", out_text(&d),
                   err_text(&d));
        }
    }
    close(d.out);
    while (waitpid(d.pid, &st, 0) < 0) {
        T_ASSERT(errno == EINTR);
    }
    *out = keep_str(strdup(out_text(&d)));
    *err = keep_str(strdup(err_text(&d)));
    free(d.outbuf);
    n_started--; /* d goes out of scope */
    return st;
}

/* 120 characters: with any directory, past a socket path's 107 */
#define QMP_LONG_NAME                                                          \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"   \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

typedef struct BadCmdline {
    const char *name;
    const char *args[12];
    const char *needles[3];
} BadCmdline;

/* Each is appended to "--qmp @R/s.sock --pidfile @R/p.pid" */
static const BadCmdline bad_cmdlines[] = {
    { "unknown-option", { "--bogus" }, { "--bogus" } },
    { "unknown-short-option", { "-x" }, { "-x" } },
    { "missing-argument", { "--object" }, { "--object" } },
    { "object-bad-qom-type",
      { "--object", "no-such-type,id=a" },
      { "--object", "no-such-type" } },
    { "object-missing-id",
      { "--object", "iothread,poll-max-ns=1" },
      { "--object", "'id'" } },
    { "object-missing-qom-type",
      { "--object", "id=a" },
      { "--object", "qom-type" } },
    { "object-bad-int",
      { "--object", "iothread,id=a,poll-max-ns=abc" },
      { "--object", "poll-max-ns" } },
    { "object-int-overflow",
      { "--object", "iothread,id=a,poll-grow=99999999999999999999" },
      { "--object", "poll-grow" } },
    { "object-negative",
      { "--object", "iothread,id=a,poll-shrink=-1" },
      { "--object", "poll-shrink" } },
    { "object-unknown-property",
      { "--object", "iothread,id=a,foo=1" },
      { "--object", "foo" } },
    { "object-duplicate-id",
      { "--object", "iothread,id=a", "--object", "iothread,id=a" },
      { "--object", "'a'" } },
    /* refused as the IOThread is made: the option as given */
    { "object-bad-id",
      { "--object", "iothread,id=1a" },
      { "--object iothread,id=1a: " } },
    { "object-cpu-not-there",
      { "--object", "iothread,id=a,cpu-affinity=1000" },
      { "--object iothread,id=a,cpu-affinity=1000: ", "cpu-affinity" } },
    { "object-pool-bounds",
      { "--object", "iothread,id=a,thread-pool-min=5,thread-pool-max=2" },
      { "--object", "thread-pool" } },
    { "object-bad-cpu-list",
      { "--object", "iothread,id=a,cpu-affinity=x" },
      { "--object", "cpu-affinity" } },
    /* QEMU's order: qom-type and id, the values' types, unknown keys,
     * the id's form, and only then each value's range */
    { "object-missing-id-first",
      { "--object", "iothread,poll-max-ns=-1,foo=1" },
      { "Parameter 'id' is missing" } },
    { "object-type-before-unknown",
      { "--object", "iothread,id=a,foo=1,poll-max-ns=x" },
      { "Invalid parameter type for 'poll-max-ns', expected: integer" } },
    { "object-unknown-before-bad-id",
      { "--object", "iothread,id=1a,foo=1" },
      { "Parameter 'foo' is unexpected" } },
    { "object-bad-id-before-range",
      { "--object", "iothread,id=1a,poll-max-ns=-1" },
      { "Parameter 'id' expects an identifier" } },
    { "object-lone-comma", { "--object", "," }, { "--object" } },
    { "object-escaped-comma-at-end",
      { "--object", "iothread,id=a,," },
      { "--object" } },
    { "chardev-server-off",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=off,wait=off" },
      { "--chardev", "server" } },
    { "chardev-wait-on",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=on,wait=on" },
      { "--chardev", "wait" } },
    { "chardev-missing-path",
      { "--chardev", "socket,id=c,server=on,wait=off" },
      { "--chardev", "path" } },
    { "chardev-bad-backend",
      { "--chardev", "file,id=c,path=@R/c.sock,server=on,wait=off" },
      { "--chardev", "file" } },
    { "chardev-bad-onoff",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=maybe,wait=off" },
      { "--chardev", "server" } },
    { "monitor-unknown-chardev",
      { "--monitor", "chardev=nope" },
      { "--monitor", "nope" } },
    { "monitor-readline",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=on,wait=off",
        "--monitor", "chardev=c,mode=readline" },
      { "--monitor", "mode" } },
    { "object-missing-equals",
      { "--object", "iothread,id" },
      { "--object", "Expected '='" } },
    { "object-empty",
      { "--object", "" },
      { "--object", "Parameters expected" } },
    { "chardev-unknown-key",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=on,wait=off,bogus=1",
        "--monitor", "chardev=c" },
      { "--chardev", "'bogus'" } },
    { "chardev-missing-id",
      { "--chardev", "socket,path=@R/c.sock,server=on,wait=off" },
      { "--chardev", "'id'" } },
    { "chardev-duplicate-id",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=on,wait=off",
        "--chardev", "socket,id=c,path=@R/d.sock,server=on,wait=off" },
      { "--chardev", "duplicate", "'c'" } },
    { "monitor-pretty",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=on,wait=off",
        "--monitor", "chardev=c,pretty=on" },
      { "--monitor", "pretty" } },
    { "monitor-unknown-key",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=on,wait=off",
        "--monitor", "chardev=c,bogus=1" },
      { "--monitor", "'bogus'" } },
    { "monitor-missing-chardev",
      { "--monitor", "mode=control" },
      { "--monitor", "'chardev'" } },
    { "monitor-twice",
      { "--chardev", "socket,id=c,path=@R/c.sock,server=on,wait=off",
        "--monitor", "chardev=c", "--monitor", "chardev=c" },
      { "--monitor", "already has a monitor" } },
    { "stray-argument", { "stray" }, { "stray" } },
    /* these fail after the socket is made: it must go again */
    { "pidfile-unwritable",
      { "--pidfile", "@R/nodir/p.pid" },
      { "--pidfile", "nodir" } },
    { "qmp-unusable", { "--qmp", "@R/nodir/q.sock" }, { "@R/nodir/q.sock" } },
    { "daemonize-failure",
      { "--daemonize", "--pidfile", "@R/nodir/p.pid" },
      { "--pidfile", "nodir" } },
    /* refused while parsing: an empty path, the same path twice (the
     * second listener called the first one's socket another server's),
     * and a path too long for a socket (it was refused after the
     * IOThreads were made) */
    { "qmp-empty-path", { "--qmp", "" }, { "--qmp : ", "empty" } },
    { "qmp-twice",
      { "--qmp", "@R/s.sock" },
      { "--qmp @R/s.sock: ", "given twice" } },
    { "chardev-path-of-qmp",
      { "--chardev", "socket,id=c,path=@R/s.sock,server=on,wait=off",
        "--monitor", "chardev=c" },
      { "--monitor chardev=c: ", "given twice" } },
    { "qmp-path-too-long",
      { "--qmp", "@R/" QMP_LONG_NAME ".sock" },
      { "--qmp @R/", "too long" } },
    { "chardev-empty-path",
      { "--chardev", "socket,id=c,path=,server=on,wait=off", "--monitor",
        "chardev=c" },
      { "--monitor chardev=c: ", "empty" } },
    { "flag-with-value",
      { "--daemonize=x" },
      { "'--daemonize'", "doesn't allow an argument" } },
    { "help-with-value",
      { "--help=x" },
      { "'--help'", "doesn't allow an argument" } },
    { "bad-letter-in-cluster-after-long-option",
      { "--daemonize", "-xV" },
      { "invalid option '-x'" } },
};

static void bad_cmdline(size_t i)
{
    const BadCmdline *b = &bad_cmdlines[i];
    const char *args[20] = { "--qmp", "@R/s.sock", "--pidfile", "@R/p.pid" };
    char *out, *err, *nl;
    int n = 4, st;

    for (const char *const *a = b->args; *a; a++) {
        args[n++] = *a;
    }
    st = run_to_end(args, NULL, false, &out, &err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 1) {
        t_fail(__FILE__, __LINE__, "%s: status %d, expected exit 1; stderr: %s",
               b->name, st, err);
    }
    nl = strchr(err, '\n');
    if (strncmp(err, "iothreadd: ", 11) || !nl || nl[1]) {
        t_fail(__FILE__, __LINE__, "%s: not one \"iothreadd: \" line: \"%s\"",
               b->name, err);
    }
    for (int k = 0; k < 3 && b->needles[k]; k++) {
        const char *needle = b->needles[k];
        const char *at = strstr(needle, "@R");
        if (at) {
            needle =
                fmt("%.*s%s%s", (int)(at - needle), needle, rundir, at + 2);
        }
        if (!strstr(err, needle)) {
            t_fail(__FILE__, __LINE__, "%s: \"%s\" does not name \"%s\"",
                   b->name, err, needle);
        }
    }
    if (*out) {
        t_fail(__FILE__, __LINE__, "%s: stdout: %s", b->name, out);
    }
    if (*dir_listing(rundir)) {
        t_fail(__FILE__, __LINE__, "%s: left behind: %s", b->name,
               dir_listing(rundir));
    }
}

#define BAD(n)                                                                 \
    CASE(bad_##n)                                                              \
    {                                                                          \
        bad_cmdline(n);                                                        \
    }
BAD(0)
BAD(1)
BAD(2)
BAD(3)
BAD(4)
BAD(5)
BAD(6)
BAD(7)
BAD(8)
BAD(9)
BAD(10)
BAD(11)
BAD(12)
BAD(13)
BAD(14)
BAD(15)
BAD(16)
BAD(17)
BAD(18)
BAD(19)
BAD(20)
BAD(21)
BAD(22)
BAD(23)
BAD(24)
BAD(25)
BAD(26)
BAD(27)
BAD(28)
BAD(29)
BAD(30)
BAD(31)
BAD(32)
BAD(33)
BAD(34)
BAD(35)
BAD(36)
BAD(37)
BAD(38)
BAD(39)
BAD(40)
BAD(41)
BAD(42)
BAD(43)
BAD(44)
BAD(45)
BAD(46)
BAD(47)
BAD(48)
static TestFunc *const bad_fns[] = {
    bad_0,  bad_1,  bad_2,  bad_3,  bad_4,  bad_5,  bad_6,  bad_7,  bad_8,
    bad_9,  bad_10, bad_11, bad_12, bad_13, bad_14, bad_15, bad_16, bad_17,
    bad_18, bad_19, bad_20, bad_21, bad_22, bad_23, bad_24, bad_25, bad_26,
    bad_27, bad_28, bad_29, bad_30, bad_31, bad_32, bad_33, bad_34, bad_35,
    bad_36, bad_37, bad_38, bad_39, bad_40, bad_41, bad_42, bad_43, bad_44,
    bad_45, bad_46, bad_47, bad_48,
};
_Static_assert(sizeof(bad_fns) / sizeof(bad_fns[0]) ==
                   sizeof(bad_cmdlines) / sizeof(bad_cmdlines[0]),
               "one BAD() per bad command line");

static void help_or_version(const char *opt, const char *want_start,
                            bool one_line)
{
    const char *args[] = { opt, NULL };
    char *out, *err;
    int st = run_to_end(args, NULL, false, &out, &err);

    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        t_fail(__FILE__, __LINE__, "%s: status %d; stderr: %s", opt, st, err);
    }
    T_ASSERT_STR(err, "");
    if (strncmp(out, want_start, strlen(want_start))) {
        t_fail(__FILE__, __LINE__, "%s printed \"%s\"", opt, out);
    }
    if (one_line) {
        char *nl = strchr(out, '\n');
        T_ASSERT(nl && !nl[1]);
    }
    if (*dir_listing(rundir)) {
        t_fail(__FILE__, __LINE__, "%s left behind: %s", opt,
               dir_listing(rundir));
    }
}

CASE(help)
{
    help_or_version("-h", "Usage: iothreadd", false);
    help_or_version("--help", "Usage: iothreadd", false);
}

CASE(version)
{
    char want[64];

    snprintf(want, sizeof(want), "iothreadd %d.%d.%d", IOT_VERSION_MAJOR,
             IOT_VERSION_MINOR, IOT_VERSION_PATCH);
    help_or_version("-V", want, true);
    help_or_version("--version", want, true);
}

static void check_defaults(Daemon *d)
{
    Qc *c = qc_open(d->sock);
    json_object *list = OK(c, "{'execute': 'query-iothreads'}");

    T_ASSERT_EQ(json_object_array_length(list), 2);
    T_ASSERT_EQ(JINT(find_id(list, "io0"), "poll-max-ns"), 32768);
    T_ASSERT_EQ(JINT(find_id(list, "io1"), "poll-max-ns"), 0);
    T_ASSERT_STR(task_comm(d->pid, JINT(find_id(list, "io0"), "thread-id")),
                 "IO io0");
    T_ASSERT_STR(task_comm(d->pid, JINT(find_id(list, "io1"), "thread-id")),
                 "IO io1");
    qc_close(c);
    daemon_quit(d);
}

CASE(defaults_xdg)
{
    const char *none[] = { NULL };
    Daemon d = { 0 };

    d.sock = fmt("%s/iothreadd.sock", rundir);
    spawn_at(__LINE__, &d, none, NULL, false);
    wait_ready_at(__LINE__, &d, d.sock); /* printed at start */
    check_defaults(&d);
}

CASE(defaults_cwd)
{
    const char *none[] = { NULL };
    Daemon d = { 0 };

    spawn_at(__LINE__, &d, none, rundir, true);
    wait_ready_at(__LINE__, &d, "./iothreadd.sock");
    d.sock = fmt("%s/iothreadd.sock", rundir);
    T_ASSERT(file_exists(d.sock));
    check_defaults(&d);
}

CASE(chardev_monitor)
{
    const char *m = fmt("%s/m.sock", rundir), *q = fmt("%s/q.sock", rundir);
    const char *args[] = {
        "--chardev", fmt("socket,path=%s,server=on,wait=off,id=m0", m),
        "--monitor", "chardev=m0,mode=control",
        "--qmp",     q,
        "--object",  "iothread,id=io0",
        NULL,
    };
    Daemon d = { 0 };
    Qc *a, *b;

    spawn_at(__LINE__, &d, args, NULL, false);
    wait_ready_at(__LINE__, &d, m);
    wait_ready_at(__LINE__, &d, q);
    a = qc_open(m);
    b = qc_open(q);
    OK(a, "{'execute': 'object-add', 'arguments': {'qom-type': 'iothread', "
          "'id': 'io2'}}");
    T_ASSERT(find_id(OK(b, "{'execute': 'query-iothreads'}"), "io2"));
    T_JSON(OK(b, "{'execute': 'quit'}"), "{}");
    qc_event(a, "SHUTDOWN");
    qc_event(b, "SHUTDOWN");
    qc_expect_eof(a);
    qc_expect_eof(b);
    qc_close(a);
    qc_close(b);
    d.sock = NULL;
    daemon_gone_at(__LINE__, &d);
    T_ASSERT(!file_exists(m));
    T_ASSERT(!file_exists(q));
}

/* Waits for the daemon to exit 0 and returns its stderr. */
static const char *daemon_exit_ok_at(int line, Daemon *d)
{
    int st;

    read_out_all(line, d);
    close(d->out);
    d->out = -1;
    while (waitpid(d->pid, &st, 0) < 0) {
        T_ASSERT(errno == EINTR);
    }
    d->status = st;
    free(d->outbuf);
    d->outbuf = NULL;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        t_fail(__FILE__, line, "the daemon ended with status %d; stderr: %s",
               st, err_text(d));
    }
    return err_text(d);
}

/* A --chardev that no --monitor uses makes no socket, and says so; the
 * daemon serves on its other socket. */
CASE(chardev_unused)
{
    const char *c = fmt("%s/c.sock", rundir), *q = fmt("%s/q.sock", rundir);
    const char *args[] = {
        "--chardev", fmt("socket,id=c1,path=%s,server=on,wait=off", c),
        "--qmp",     q,
        "--object",  "iothread,id=io0",
        NULL,
    };
    Daemon d = { 0 };
    Qc *b;
    const char *err;

    spawn_at(__LINE__, &d, args, NULL, false);
    wait_ready_at(__LINE__, &d, q);
    T_ASSERT(!file_exists(c));
    T_ASSERT(!strstr(out_text(&d), c));
    b = qc_open(q);
    T_ASSERT(find_id(OK(b, "{'execute': 'query-iothreads'}"), "io0"));
    T_JSON(OK(b, "{'execute': 'quit'}"), "{}");
    qc_event(b, "SHUTDOWN");
    qc_expect_eof(b);
    qc_close(b);
    err = daemon_exit_ok_at(__LINE__, &d);
    T_ASSERT_STR(err, fmt("iothreadd: warning: --chardev id=c1: no --monitor "
                          "uses it, so no socket is made at %s\n",
                          c));
    T_ASSERT(!file_exists(q));
}

/* No QMP at all: a warning on stderr, a line on stdout when running, and
 * a signal stops it cleanly. */
CASE(no_qmp)
{
    const char *args[] = { "--object", "iothread,id=io0", NULL };
    Daemon d = { 0 };

    spawn_at(__LINE__, &d, args, NULL, false);
    while (!strstr(out_text(&d), "iothreadd: running without QMP")) {
        if (out_fill(__LINE__, &d) == 0) {
            t_fail(__FILE__, __LINE__, "the daemon ended; stderr: %s",
                   err_text(&d));
        }
    }
    T_ASSERT(kill(d.pid, SIGTERM) == 0);
    T_ASSERT_STR(daemon_exit_ok_at(__LINE__, &d),
                 "iothreadd: warning: no QMP socket (--qmp PATH, or --chardev "
                 "with --monitor): only SIGINT or SIGTERM stops this "
                 "daemon\n");
}

CASE(pidfile)
{
    const char *pidfile = fmt("%s/d.pid", rundir);
    const char *args[] = { "--qmp", "@R/other.sock", "--pidfile", "@R/d.pid",
                           NULL };
    Daemon d;
    char *out, *err, *text;
    int st;

    daemon_start(&d, "--object", "iothread,id=io0", "--pidfile", pidfile, NULL);
    text = read_file(pidfile);
    T_ASSERT(text != NULL);
    T_ASSERT_STR(text, fmt("%d\n", (int)d.pid));
    /* a second daemon on the same pidfile: refused, leaves nothing */
    st = run_to_end(args, NULL, false, &out, &err);
    T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    T_ASSERT(!strncmp(err, "iothreadd: ", 11) && strstr(err, "--pidfile") &&
             strchr(err, '\n') == err + strlen(err) - 1);
    T_ASSERT(!file_exists(fmt("%s/other.sock", rundir)));
    T_ASSERT_STR(read_file(pidfile), fmt("%d\n", (int)d.pid));
    daemon_quit(&d);
}

/* ",," in an option value is a comma (QEMU's escape): a path with one. */
CASE(chardev_comma_path)
{
    Daemon d;
    Qc *c;

    daemon_start(
        &d, "--chardev",
        fmt("socket,id=c,path=%s/a,,b.sock,server=on,wait=off", rundir),
        "--monitor", "chardev=c", NULL);
    c = qc_open(fmt("%s/a,b.sock", rundir));
    OK(c, "{'execute': 'query-iothreads'}");
    qc_close(c);
    daemon_quit(&d);
    T_ASSERT(!file_exists(fmt("%s/a,b.sock", rundir)));
}

/* One trailing comma ends a list, as QEMU's keyval grammar allows; ",,"
 * before it is an escaped comma of the value. */
CASE(trailing_comma)
{
    Daemon d;
    Qc *c;

    daemon_start(&d, "--object", "iothread,id=a,", "--object",
                 "iothread,id=b,poll-max-ns=0,", "--qmp",
                 fmt("%s/t.sock", rundir), NULL);
    c = qc_open(fmt("%s/t.sock", rundir));
    T_ASSERT(find_id(OK(c, "{'execute': 'query-iothreads'}"), "a") != NULL);
    T_ASSERT_EQ(JINT(find_id(OK(c, "{'execute': 'query-iothreads'}"), "b"),
                     "poll-max-ns"),
                0);
    qc_close(c);
    daemon_quit(&d);
}

/* A socket file left by a daemon that died (nobody listens: connect says
 * ECONNREFUSED) is removed, and the new daemon serves at its path. */
CASE(stale_socket)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    const char *stale = fmt("%s/stale.sock", rundir);
    Daemon d;
    Qc *c;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    T_ASSERT(fd >= 0);
    strcpy(addr.sun_path, stale);
    T_ASSERT_EQ(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    close(fd); /* the file stays, with nobody behind it */
    T_ASSERT(file_exists(stale));
    daemon_start(&d, "--object", "iothread,id=io0", "--chardev",
                 fmt("socket,id=c,path=%s,server=on,wait=off", stale),
                 "--monitor", "chardev=c", NULL);
    c = qc_open(stale);
    OK(c, "{'execute': 'query-iothreads'}");
    qc_close(c);
    daemon_quit(&d);
    T_ASSERT(!file_exists(stale));
}

/* A daemon killed with SIGKILL and started again at once on the same
 * path: the new one serves.  Its listening socket can outlive the dead
 * process for a moment (an io_uring ring torn down in the background
 * keeps its files): the probe's connection is taken, then reset without
 * a word.  That was called a live server, and 16 restarts in 20 failed
 * (found by review); a live server is one that greets. */
CASE(stale_socket_after_kill)
{
    for (int round = 0; round < 5; round++) {
        const char *args[] = { "--qmp", NULL, "--object", "iothread,id=io0",
                               NULL };
        Daemon d, d2;
        Qc *c;
        int st;

        start_io0(&d);
        c = qc_open(d.sock);
        OK(c, "{'execute': 'query-version'}");
        qc_close(c);
        T_ASSERT_EQ(kill(d.pid, SIGKILL), 0);
        while (waitpid(d.pid, &st, 0) < 0) {
            T_ASSERT_EQ(errno, EINTR);
        }
        d.status = st;
        close(d.out);
        free(d.outbuf);
        T_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        T_ASSERT(file_exists(d.sock)); /* left by the dead */
        args[1] = d.sock;
        memset(&d2, 0, sizeof(d2));
        d2.sock = d.sock;
        spawn_at(__LINE__, &d2, args, NULL, false);
        wait_ready_at(__LINE__, &d2, d2.sock);
        c = qc_open(d2.sock);
        OK(c, "{'execute': 'query-iothreads'}");
        qc_close(c);
        daemon_quit(&d2);
    }
}

CASE(socket_in_use)
{
    const char *args[] = { "--qmp", NULL, "--pidfile", "@R/b.pid", NULL };
    Daemon d;
    char *out, *err;
    int st;
    Qc *c;

    start_io0(&d);
    args[1] = d.sock;
    st = run_to_end(args, NULL, false, &out, &err);
    T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    if (strncmp(err, "iothreadd: ", 11) || !strstr(err, d.sock) ||
        strchr(err, '\n') != err + strlen(err) - 1) {
        t_fail(__FILE__, __LINE__, "stderr: %s", err);
    }
    T_ASSERT(!file_exists(fmt("%s/b.pid", rundir)));
    /* the first daemon still owns its socket */
    T_ASSERT(file_exists(d.sock));
    c = qc_open(d.sock);
    OK(c, "{'execute': 'query-iothreads'}");
    qc_close(c);
    daemon_quit(&d);
}

/* What is at the --qmp path and is not a stale socket stays, and the
 * daemon says why it cannot start: a file or a directory (not ours to
 * remove), a server too busy to take the probe (which must not block). */
CASE(socket_path_taken)
{
    const char *args[] = { "--qmp", NULL, NULL };
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    const char *file = fmt("%s/precious.txt", rundir);
    const char *dir = fmt("%s/adir", rundir);
    const char *busy = fmt("%s/busy.sock", rundir);
    char *out, *err;
    int st, lfd, pending[64], np = 0;
    FILE *f = fopen(file, "w");

    T_ASSERT(f != NULL);
    fputs("precious data\n", f);
    fclose(f);
    args[1] = file;
    st = run_to_end(args, NULL, false, &out, &err);
    T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    T_ASSERT(strstr(err, "not a socket") && strstr(err, file));
    T_ASSERT_STR(read_file(file), "precious data\n");

    T_ASSERT_EQ(mkdir(dir, 0700), 0);
    args[1] = dir;
    st = run_to_end(args, NULL, false, &out, &err);
    T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    T_ASSERT(strstr(err, "not a socket") && strstr(err, dir));
    T_ASSERT_EQ(rmdir(dir), 0);

    /* a listener that never accepts, its backlog full */
    strcpy(addr.sun_path, busy);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    T_ASSERT(lfd >= 0);
    T_ASSERT_EQ(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    T_ASSERT_EQ(listen(lfd, 0), 0);
    while (np < 64) {
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        T_ASSERT(c >= 0);
        if (connect(c, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
            T_ASSERT_EQ(errno, EAGAIN);
            close(c);
            break;
        }
        pending[np++] = c;
    }
    T_ASSERT(np < 64);
    args[1] = busy;
    st = run_to_end(args, NULL, false, &out, &err);
    T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    T_ASSERT(strstr(err, "in use") && strstr(err, busy));
    T_ASSERT(file_exists(busy));
    while (np) {
        close(pending[--np]);
    }
    close(lfd);
    unlink(busy);
    unlink(file);
}

CASE(daemonize)
{
    const char *sock = fmt("%s/dz.sock", rundir);
    const char *pidfile = fmt("%s/dz.pid", rundir);
    const char *args[] = { "--daemonize",     "--qmp", sock,
                           "--pidfile",       pidfile, "--object",
                           "iothread,id=io0", NULL };
    Daemon d = { 0 }, real = { 0 };
    int st;
    pid_t pid;
    char *text;
    Qc *c;
    json_object *list;

    /* the daemon is reparented to us: waitpid() can await its end */
    T_ASSERT(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    spawn_at(__LINE__, &d, args, NULL, false);
    /* the parent exits once ready, the daemon's stdout is then /dev/null */
    read_out_all(__LINE__, &d);
    close(d.out);
    while (waitpid(d.pid, &st, 0) < 0) {
        T_ASSERT(errno == EINTR);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        t_fail(__FILE__, __LINE__, "the parent: status %d; stderr: %s", st,
               err_text(&d));
    }
    T_ASSERT(strstr(out_text(&d), fmt("iothreadd: QMP on %s\n", sock)));
    free(d.outbuf);
    d.outbuf = NULL;
    T_ASSERT(file_exists(sock));
    text = read_file(pidfile);
    T_ASSERT(text != NULL);
    pid = (pid_t)atoi(text);
    T_ASSERT_STR(text, fmt("%d\n", (int)pid));
    T_ASSERT(pid > 0 && pid != d.pid);
    T_ASSERT(kill(pid, 0) == 0);
    T_ASSERT_EQ(getsid(pid), pid); /* its own session */
    c = qc_open(sock);
    list = OK(c, "{'execute': 'query-iothreads'}");
    T_ASSERT_STR(task_comm(pid, JINT(find_id(list, "io0"), "thread-id")),
                 "IO io0");
    T_JSON(OK(c, "{'execute': 'quit'}"), "{}");
    qc_event(c, "SHUTDOWN");
    qc_expect_eof(c);
    qc_close(c);
    real.pid = pid;
    real.out = -1;
    real.status = -1;
    real.errfile = d.errfile; /* it wrote nothing there before detaching */
    real.sock = sock;
    real.pidfile = pidfile;
    daemon_gone_at(__LINE__, &real);
    T_ASSERT(kill(pid, 0) < 0 && errno == ESRCH);
}

/* ==== main ==== */

static void find_daemon(void)
{
    const char *env = getenv("IOTHREADD");
    char self[PATH_MAX];
    ssize_t n;

    if (env && *env) {
        snprintf(daemon_path, sizeof(daemon_path), "%s", env);
        return;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
        snprintf(daemon_path, sizeof(daemon_path), "../daemon/iothreadd");
        return;
    }
    self[n] = '\0';
    snprintf(daemon_path, sizeof(daemon_path), "%s/../daemon/iothreadd",
             dirname(self));
}

int main(int argc, char **argv)
{
    find_daemon();
    if (access(daemon_path, X_OK) < 0) {
        fprintf(stderr, "test-qmp: no daemon at %s (set IOTHREADD)\n",
                daemon_path);
    }

    t_add("/qmp/wire/greeting", greeting);
    t_add("/qmp/wire/id-any-type", id_any_type);
    t_add("/qmp/negotiation/required", negotiation_required);
    t_add("/qmp/negotiation/per-connection", negotiation_per_connection);

    t_add("/qmp/framing/parse-error/missing-value", parse_error_missing_value);
    t_add("/qmp/framing/parse-error/trailing-comma",
          parse_error_trailing_comma);
    t_add("/qmp/framing/parse-error/keywords", parse_error_keywords);
    t_add("/qmp/framing/parse-error/leaves-nothing",
          parse_error_leaves_nothing);
    t_add("/qmp/framing/number-cut-by-read", number_cut_by_read);
    t_add("/qmp/framing/extra-brace", extra_brace);
    t_add("/qmp/framing/deep-id", deep_id);
    t_add("/qmp/framing/id-verbatim", id_verbatim);
    t_add("/qmp/framing/strict-numbers", strict_numbers);
    t_add("/qmp/max-clients", max_clients);
    t_add("/qmp/framing/two-per-line-and-empty-lines",
          two_per_line_and_empty_lines);
    t_add("/qmp/framing/garbage-then-valid", garbage_then_valid);
    t_add("/qmp/framing/nul-escape", nul_escape);
    t_add("/qmp/framing/garbage-unterminated-string",
          garbage_unterminated_string);
    t_add("/qmp/framing/single-quotes", single_quotes);
    t_add("/qmp/framing/envelope-errors", envelope_errors);
    t_add("/qmp/framing/partial-lines", partial_lines);
    t_add("/qmp/framing/long-line", long_line);
    t_add("/qmp/framing/blank-lines", blank_lines);

    t_add("/qmp/cmd/query-version-and-commands", query_version_and_commands);
    t_add("/qmp/cmd/query-iothreads", query_iothreads);
    t_add("/qmp/cmd/object-add", object_add);
    t_add("/qmp/cmd/object-add-errors", object_add_errors);
    t_add("/qmp/cmd/int-below-int64-min", int_below_int64_min);
    t_add("/qmp/cmd/object-del", object_del);
    t_add("/qmp/cmd/qom-get", qom_get);
    t_add("/qmp/cmd/qom-set", qom_set);
    t_add("/qmp/cmd/qom-list", qom_list);
    t_add("/qmp/cmd/qom-list-properties", qom_list_properties);
    t_add("/qmp/cmd/query-iothread-stats", query_iothread_stats);
    /* "An IOThread that something in the daemon still uses cannot be
     * deleted": nothing in the daemon uses one yet (no block exports), so
     * there is no case for it. */

    t_add("/qmp/threads/names", thread_names);
    t_add("/qmp/clients/four-interleaved", four_clients);
    t_add("/qmp/clients/stalled-and-vanished", stalled_clients);
    t_add("/qmp/clients/half-close", half_close);
    t_add("/qmp/clients/output-cap", output_cap);
    t_add("/qmp/clients/out-of-fds", out_of_fds);

    t_add("/qmp/shutdown/quit", quit_command);
    t_add("/qmp/shutdown/quit-drains-output", quit_drains_output);
    t_add("/qmp/shutdown/quit-with-a-client-that-never-reads",
          quit_with_a_client_that_never_reads);
    t_add("/qmp/shutdown/sigterm", sigterm);
    t_add("/qmp/shutdown/sigint", sigint);
    t_add("/qmp/shutdown/sighup", sighup);

    for (size_t i = 0; i < sizeof(bad_fns) / sizeof(bad_fns[0]); i++) {
        static char paths[sizeof(bad_fns) / sizeof(bad_fns[0])][64];
        snprintf(paths[i], sizeof(paths[i]), "/qmp/cmdline/bad/%s",
                 bad_cmdlines[i].name);
        t_add(paths[i], bad_fns[i]);
    }
    t_add("/qmp/cmdline/help", help);
    t_add("/qmp/cmdline/version", version);
    t_add("/qmp/cmdline/defaults-xdg", defaults_xdg);
    t_add("/qmp/cmdline/defaults-cwd", defaults_cwd);
    t_add("/qmp/cmdline/chardev-monitor", chardev_monitor);
    t_add("/qmp/cmdline/chardev-unused", chardev_unused);
    t_add("/qmp/cmdline/no-qmp", no_qmp);
    t_add("/qmp/cmdline/pidfile", pidfile);
    t_add("/qmp/cmdline/socket-in-use", socket_in_use);
    t_add("/qmp/cmdline/stale-socket", stale_socket);
    t_add("/qmp/cmdline/stale-socket-after-kill", stale_socket_after_kill);
    t_add("/qmp/cmdline/chardev-comma-path", chardev_comma_path);
    t_add("/qmp/cmdline/trailing-comma", trailing_comma);
    t_add("/qmp/cmdline/socket-path-taken", socket_path_taken);
    t_add("/qmp/cmdline/daemonize", daemonize);
    return t_run(argc, argv);
}
