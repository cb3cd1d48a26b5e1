/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "cmdline.h"
#include "msg.h"

int msg_fail(char **msg, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(msg, fmt, ap) < 0) {
        *msg = NULL;
    }
    va_end(ap);
    return -1;
}

int cfg_keyval(const char *spec, const char *implied_key, CfgPairFunc *cb,
               void *opaque, char **msg)
{
    size_t len = strlen(spec);
    char *buf = malloc(len + 1);
    const char *p = spec;
    bool first = true;
    int ret = 0;

    if (!buf) {
        return msg_fail(msg, "out of memory");
    }
    while (ret == 0 && *p) {
        /* One element, with ",," unescaped, up to a lone ','. */
        size_t n = 0;
        char *eq;
        while (*p && !(*p == ',' && p[1] != ',')) {
            if (*p == ',') {
                p++; /* ",," */
            }
            buf[n++] = *p++;
        }
        buf[n] = '\0';
        if (*p == ',') {
            p++;
            /* One ',' may end the list, as in QEMU's keyval grammar
             * (key-vals = [ key-val { ',' key-val } [ ',' ] ]), but not
             * follow nothing. */
            if (!*p && !n) {
                ret = msg_fail(msg, "Expected parameter name after ','");
                break;
            }
        }
        eq = strchr(buf, '=');
        if (!eq && first && implied_key) {
            ret = cb(opaque, implied_key, buf, msg);
        } else if (!eq || eq == buf) {
            ret = msg_fail(msg, "Expected '=' after parameter '%s'", buf);
        } else {
            *eq = '\0';
            ret = cb(opaque, buf, eq + 1, msg);
        }
        first = false;
    }
    if (ret == 0 && first) {
        ret = msg_fail(msg, "Parameters expected");
    }
    free(buf);
    return ret;
}

static int parse_int(const char *key, const char *value, int64_t *out,
                     char **msg)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(value, &end, 0);
    if (!*value || *end || errno == ERANGE) {
        return msg_fail(
            msg, "Invalid parameter type for '%s', expected: integer", key);
    }
    *out = v;
    return 0;
}

static int parse_onoff(const char *key, const char *value, bool *out,
                       char **msg)
{
    if (!strcmp(value, "on") || !strcmp(value, "true")) {
        *out = true;
    } else if (!strcmp(value, "off") || !strcmp(value, "false")) {
        *out = false;
    } else {
        return msg_fail(msg, "Parameter '%s' expects 'on' or 'off'", key);
    }
    return 0;
}

/* ---- --object ---- */

/* One --object as parsed: its qom-type and id, and the other pairs kept
 * for later, so that they are judged in QEMU's order (see object_apply). */
typedef struct ObjectSpec {
    CfgObject o;
    char **kv; /* key, value, key, value, ...: the properties as given */
    size_t nkv;
} ObjectSpec;

static int object_pair(void *opaque, const char *key, const char *value,
                       char **msg)
{
    ObjectSpec *s = opaque;
    char **kv;

    if (!strcmp(key, "qom-type")) {
        if (strcmp(value, "iothread")) {
            return msg_fail(
                msg, "Parameter 'qom-type' does not accept value '%s'", value);
        }
        s->o.has_type = true;
        return 0;
    }
    if (!strcmp(key, "id")) {
        free(s->o.id);
        s->o.id = strdup(value);
        return s->o.id ? 0 : msg_fail(msg, "out of memory");
    }
    kv = realloc(s->kv, (s->nkv + 2) * sizeof(*kv));
    if (!kv) {
        return msg_fail(msg, "out of memory");
    }
    s->kv = kv;
    kv[s->nkv] = strdup(key);
    kv[s->nkv + 1] = strdup(value);
    s->nkv += 2;
    return kv[s->nkv - 2] && kv[s->nkv - 1] ? 0
                                            : msg_fail(msg, "out of memory");
}

static const IotPropInfo *object_prop(const char *key)
{
    size_t n;
    const IotPropInfo *info = iot_thread_props_info(&n);

    for (size_t i = 0; i < n; i++) {
        if (!strcmp(info[i].name, key)) {
            return &info[i];
        }
    }
    return NULL;
}

/*
 * The properties of @s, in QEMU's order for -object: the members' types
 * (its QAPI visit), then the keys it does not know (the visit's end),
 * then the id's form (user_creatable_add_type()), and only then each
 * setter with its range check.
 */
static int object_apply(ObjectSpec *s, char **msg)
{
    IotError *err = NULL;
    int64_t v;

    for (size_t i = 0; i < s->nkv; i += 2) {
        const IotPropInfo *info = object_prop(s->kv[i]);
        if (info && info->type == IOT_PROP_INT &&
            parse_int(s->kv[i], s->kv[i + 1], &v, msg) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < s->nkv; i += 2) {
        if (!object_prop(s->kv[i])) {
            return msg_fail(msg, "Parameter '%s' is unexpected", s->kv[i]);
        }
    }
    if (!iot_thread_id_valid(s->o.id)) {
        return msg_fail(msg, "Parameter 'id' expects an identifier");
    }
    for (size_t i = 0; i < s->nkv; i += 2) {
        const char *key = s->kv[i], *value = s->kv[i + 1];
        int r;

        if (object_prop(key)->type == IOT_PROP_STR) {
            r = iot_thread_props_set_str(s->o.props, key, value, &err);
        } else {
            parse_int(key, value, &v, msg); /* checked above */
            r = iot_thread_props_set_int(s->o.props, key, v, &err);
        }
        if (r < 0) {
            msg_fail(msg, "%s", iot_error_message(err));
            iot_error_free(err);
            return -1;
        }
    }
    return 0;
}

static int parse_object(DaemonConfig *cfg, const char *spec, char **msg)
{
    ObjectSpec s = { .o = { .props = iot_thread_props_new() } };
    CfgObject *objs;
    int ret = -1;

    if (!s.o.props) {
        return msg_fail(msg, "out of memory");
    }
    if (cfg_keyval(spec, "qom-type", object_pair, &s, msg) < 0) {
        goto out;
    }
    if (!s.o.has_type) {
        msg_fail(msg, "Parameter 'qom-type' is missing");
        goto out;
    }
    if (!s.o.id) {
        msg_fail(msg, "Parameter 'id' is missing");
        goto out;
    }
    if (object_apply(&s, msg) < 0) {
        goto out;
    }
    for (size_t i = 0; i < cfg->nobjects; i++) {
        if (!strcmp(cfg->objects[i].id, s.o.id)) {
            msg_fail(msg,
                     "attempt to add duplicate property '%s' to object (type "
                     "'container')",
                     s.o.id);
            goto out;
        }
    }
    objs = realloc(cfg->objects, (cfg->nobjects + 1) * sizeof(*objs));
    if (objs) {
        cfg->objects = objs;
    }
    if (!objs || !(s.o.spec = strdup(spec))) {
        msg_fail(msg, "out of memory");
        goto out;
    }
    cfg->objects[cfg->nobjects++] = s.o;
    s.o = (CfgObject){ 0 };
    ret = 0;
out:
    free(s.o.id);
    iot_thread_props_free(s.o.props);
    for (size_t i = 0; i < s.nkv; i++) {
        free(s.kv[i]);
    }
    free(s.kv);
    return ret;
}

/* ---- --chardev and --monitor ---- */

typedef struct ChardevSpec {
    CfgChardev c;
    bool server, wait, have_server;
} ChardevSpec;

static int chardev_pair(void *opaque, const char *key, const char *value,
                        char **msg)
{
    ChardevSpec *s = opaque;
    char **field = NULL;

    if (!strcmp(key, "backend")) {
        if (strcmp(value, "socket")) {
            return msg_fail(msg,
                            "chardev backend '%s' is not supported (only "
                            "'socket')",
                            value);
        }
        return 0;
    }
    if (!strcmp(key, "server")) {
        s->have_server = true;
        return parse_onoff(key, value, &s->server, msg);
    }
    if (!strcmp(key, "wait")) {
        return parse_onoff(key, value, &s->wait, msg);
    }
    if (!strcmp(key, "id")) {
        field = &s->c.id;
    } else if (!strcmp(key, "path")) {
        field = &s->c.path;
    } else {
        return msg_fail(msg, "Parameter '%s' is unexpected", key);
    }
    free(*field);
    *field = strdup(value);
    return *field ? 0 : msg_fail(msg, "out of memory");
}

static int parse_chardev(DaemonConfig *cfg, const char *spec, char **msg)
{
    ChardevSpec s = { .wait = true };
    CfgChardev *devs;

    if (cfg_keyval(spec, "backend", chardev_pair, &s, msg) < 0) {
        goto fail;
    }
    if (!s.c.id) {
        msg_fail(msg, "Parameter 'id' is missing");
        goto fail;
    }
    if (!s.c.path) {
        msg_fail(msg, "Parameter 'path' is missing (only UNIX sockets are "
                      "supported)");
        goto fail;
    }
    if (!s.have_server || !s.server) {
        msg_fail(msg, "only server=on sockets are supported");
        goto fail;
    }
    if (s.wait) {
        msg_fail(msg, "wait=on is not supported: add wait=off");
        goto fail;
    }
    for (size_t i = 0; i < cfg->nchardevs; i++) {
        if (!strcmp(cfg->chardevs[i].id, s.c.id)) {
            msg_fail(msg,
                     "attempt to add duplicate property '%s' to object (type "
                     "'container')",
                     s.c.id);
            goto fail;
        }
    }
    devs = realloc(cfg->chardevs, (cfg->nchardevs + 1) * sizeof(*devs));
    if (!devs) {
        msg_fail(msg, "out of memory");
        goto fail;
    }
    cfg->chardevs = devs;
    cfg->chardevs[cfg->nchardevs++] = s.c;
    return 0;
fail:
    free(s.c.id);
    free(s.c.path);
    return -1;
}

/* A QMP socket path, from --qmp or a monitored --chardev.  Refused here,
 * before anything is made, if it cannot be a socket's (empty, too long)
 * or if it is given twice: the second listener would find the first
 * one's socket and call it another server's. */
static int add_qmp_path(DaemonConfig *cfg, const char *path, char **msg)
{
    char **paths;

    if (!*path) {
        /* bind() would make an abstract socket nobody can name. */
        return msg_fail(msg, "socket path is empty");
    }
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        return msg_fail(msg, "socket path '%s' is too long", path);
    }
    for (size_t i = 0; i < cfg->nqmp; i++) {
        if (!strcmp(cfg->qmp_paths[i], path)) {
            return msg_fail(msg, "socket path '%s' is given twice", path);
        }
    }
    paths = realloc(cfg->qmp_paths, (cfg->nqmp + 1) * sizeof(*paths));
    if (!paths || !(paths[cfg->nqmp] = strdup(path))) {
        if (paths) {
            cfg->qmp_paths = paths;
        }
        return msg_fail(msg, "out of memory");
    }
    cfg->qmp_paths = paths;
    cfg->nqmp++;
    return 0;
}

typedef struct MonitorSpec {
    char *chardev;
} MonitorSpec;

static int monitor_pair(void *opaque, const char *key, const char *value,
                        char **msg)
{
    MonitorSpec *m = opaque;

    if (!strcmp(key, "chardev")) {
        free(m->chardev);
        m->chardev = strdup(value);
        return m->chardev ? 0 : msg_fail(msg, "out of memory");
    }
    if (!strcmp(key, "mode")) {
        return strcmp(value, "control")
                   ? msg_fail(msg, "only mode=control monitors are supported")
                   : 0;
    }
    if (!strcmp(key, "pretty")) {
        return msg_fail(msg, "pretty=on is not supported");
    }
    return msg_fail(msg, "Parameter '%s' is unexpected", key);
}

static int parse_monitor(DaemonConfig *cfg, const char *spec, char **msg)
{
    MonitorSpec m = { .chardev = NULL };
    int ret = cfg_keyval(spec, "chardev", monitor_pair, &m, msg);
    size_t i;

    if (ret == 0 && !m.chardev) {
        ret = msg_fail(msg, "Parameter 'chardev' is missing");
    }
    for (i = 0; ret == 0 && i < cfg->nchardevs; i++) {
        if (!strcmp(cfg->chardevs[i].id, m.chardev)) {
            break;
        }
    }
    if (ret == 0 && i == cfg->nchardevs) {
        ret = msg_fail(msg, "chardev '%s' not found", m.chardev);
    } else if (ret == 0 && cfg->chardevs[i].monitored) {
        ret = msg_fail(msg, "chardev '%s' already has a monitor", m.chardev);
    } else if (ret == 0) {
        cfg->chardevs[i].monitored = true;
        ret = add_qmp_path(cfg, cfg->chardevs[i].path, msg);
    }
    free(m.chardev);
    return ret;
}

/* ---- argv ---- */

enum {
    OPT_OBJECT = 256,
    OPT_CHARDEV,
    OPT_MONITOR,
    OPT_QMP,
    OPT_PIDFILE,
    OPT_DAEMONIZE
};

static const struct option long_opts[] = {
    { "object", required_argument, NULL, OPT_OBJECT },
    { "chardev", required_argument, NULL, OPT_CHARDEV },
    { "monitor", required_argument, NULL, OPT_MONITOR },
    { "qmp", required_argument, NULL, OPT_QMP },
    { "pidfile", required_argument, NULL, OPT_PIDFILE },
    { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

static int option_fail(char **msg, const char *opt, const char *arg, char *why)
{
    msg_fail(msg, "--%s %s: %s", opt, arg, why ? why : "out of memory");
    free(why);
    return -1;
}

/* The message for what getopt_long() refused: @arg is the word, @opt the
 * option it stopped at (a short option's letter, a long option's value,
 * or 0 for an unknown long option). */
static int bad_option(const char *arg, int opt, char **msg)
{
    if (!strncmp(arg, "--", 2)) {
        const char *eq = strchr(arg, '=');

        if (opt && eq) {
            return msg_fail(msg, "option '%.*s' doesn't allow an argument",
                            (int)(eq - arg), arg);
        }
        return msg_fail(msg, "unrecognized option '%s'", arg);
    }
    if (opt > 0 && opt < 128 && isprint(opt)) {
        return msg_fail(msg, "invalid option '-%c'", opt);
    }
    return msg_fail(msg, "unrecognized option '%s'", arg);
}

int cfg_parse(int argc, char **argv, DaemonConfig *cfg, char **msg)
{
    char *why = NULL;
    int c, at;

    memset(cfg, 0, sizeof(*cfg));
    if (argc <= 1) {
        return cfg_default(cfg, msg);
    }
    optind = 0; /* 0, not 1: glibc then forgets any previous argv */
    opterr = 0;
    /* @at: the word getopt starts from.  Inside a cluster of short
     * options ("-xh") it does not move past the word until its last
     * letter, so the word of a refusal is argv[at], not argv[optind - 1]. */
    while ((at = optind ? optind : 1),
           (c = getopt_long(argc, argv, ":hV", long_opts, NULL)) != -1) {
        const char *word = argv[optind > at ? optind - 1 : at];

        switch (c) {
        case OPT_OBJECT:
            if (parse_object(cfg, optarg, &why) < 0) {
                return option_fail(msg, "object", optarg, why);
            }
            break;
        case OPT_CHARDEV:
            if (parse_chardev(cfg, optarg, &why) < 0) {
                return option_fail(msg, "chardev", optarg, why);
            }
            break;
        case OPT_MONITOR:
            if (parse_monitor(cfg, optarg, &why) < 0) {
                return option_fail(msg, "monitor", optarg, why);
            }
            break;
        case OPT_QMP:
            if (add_qmp_path(cfg, optarg, &why) < 0) {
                return option_fail(msg, "qmp", optarg, why);
            }
            break;
        case OPT_PIDFILE:
            free(cfg->pidfile);
            cfg->pidfile = strdup(optarg);
            break;
        case OPT_DAEMONIZE:
            cfg->daemonize = true;
            break;
        case 'h':
            cfg->help = true;
            break;
        case 'V':
            cfg->version = true;
            break;
        case ':':
            return msg_fail(msg, "option '%s' requires an argument", word);
        default:
            return bad_option(word, optopt, msg);
        }
    }
    if (optind < argc) {
        return msg_fail(msg, "unexpected argument '%s'", argv[optind]);
    }
    return 0;
}

void cfg_warn(const DaemonConfig *cfg, FILE *f)
{
    for (size_t i = 0; i < cfg->nchardevs; i++) {
        if (!cfg->chardevs[i].monitored) {
            fprintf(f,
                    "iothreadd: warning: --chardev id=%s: no --monitor uses "
                    "it, so no socket is made at %s\n",
                    cfg->chardevs[i].id, cfg->chardevs[i].path);
        }
    }
    if (cfg->nqmp == 0) {
        fprintf(f, "iothreadd: warning: no QMP socket (--qmp PATH, or "
                   "--chardev with --monitor): only SIGINT or SIGTERM stops "
                   "this daemon\n");
    }
}

int cfg_default(DaemonConfig *cfg, char **msg)
{
    const char *dir = getenv("XDG_RUNTIME_DIR");
    char *path = NULL;
    int ret;

    cfg->defaults = true;
    if (parse_object(cfg, "iothread,id=io0", msg) < 0 ||
        parse_object(cfg, "iothread,id=io1,poll-max-ns=0", msg) < 0) {
        return -1;
    }
    if (asprintf(&path, "%s/iothreadd.sock", dir && *dir ? dir : ".") < 0) {
        return msg_fail(msg, "out of memory");
    }
    ret = add_qmp_path(cfg, path, msg);
    free(path);
    return ret;
}

void cfg_free(DaemonConfig *cfg)
{
    for (size_t i = 0; i < cfg->nobjects; i++) {
        free(cfg->objects[i].spec);
        free(cfg->objects[i].id);
        iot_thread_props_free(cfg->objects[i].props);
    }
    for (size_t i = 0; i < cfg->nchardevs; i++) {
        free(cfg->chardevs[i].id);
        free(cfg->chardevs[i].path);
    }
    for (size_t i = 0; i < cfg->nqmp; i++) {
        free(cfg->qmp_paths[i]);
    }
    free(cfg->objects);
    free(cfg->chardevs);
    free(cfg->qmp_paths);
    free(cfg->pidfile);
    memset(cfg, 0, sizeof(*cfg));
}
