/* SPDX-License-Identifier: MIT */
/*
 * iothreadd's QMP commands.  Main thread only.  Behaviour and error texts
 * follow QEMU (../shared/reference/qmp-surface.md); where QEMU is buggy we
 * do better on purpose, as noted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iothread/iothread.h>

#include "qmp.h"

/* Parses JSON text made by the library (a trusted producer). */
static json_object *from_library(char *text, QmpError *err)
{
    json_object *o = text ? json_tokener_parse(text) : NULL;

    free(text);
    if (!o) {
        qmp_error_set(err, QMP_GENERIC_ERROR, "out of memory");
    }
    return o;
}

/* qmp_capabilities, with its arguments checked (qmp_args_check()), for a
 * client that has negotiated already or not.  As QEMU: every element of
 * "enable" must name a capability QMP knows (its visitor's text names the
 * parameter 'null', qmp-surface.md), then a second negotiation is refused,
 * then every capability asked for that is not offered is listed.  We
 * offer none (no out-of-band execution). */
void qmp_capabilities_negotiate(json_object *args, bool negotiated,
                                QmpError *err)
{
    json_object *enable = NULL;
    size_t n;
    char *list = NULL;

    if (args) {
        json_object_object_get_ex(args, "enable", &enable);
    }
    n = enable ? json_object_array_length(enable) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *cap =
            json_object_get_string(json_object_array_get_idx(enable, i));

        if (strcmp(cap, "oob")) {
            qmp_error_set(err, QMP_GENERIC_ERROR,
                          "Parameter 'null' does not accept value '%s'", cap);
            return;
        }
    }
    if (negotiated) {
        qmp_error_set(err, QMP_COMMAND_NOT_FOUND,
                      "Capabilities negotiation is already complete, command "
                      "ignored");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char *more = NULL;

        if (asprintf(&more, "%s%s%s", list ? list : "", list ? ", " : "",
                     "oob") < 0) {
            more = NULL;
        }
        free(list);
        list = more;
        if (!list) {
            qmp_error_set(err, QMP_GENERIC_ERROR, "out of memory");
            return;
        }
    }
    if (list) {
        qmp_error_set(err, QMP_GENERIC_ERROR, "Capability %s not available",
                      list);
        free(list);
    }
}

static void qmp_capabilities(QmpServer *srv, json_object *args,
                             json_object **ret, QmpError *err)
{
    (void)srv;
    (void)ret;
    qmp_capabilities_negotiate(args, false, err);
}

static void query_version(QmpServer *srv, json_object *args, json_object **ret,
                          QmpError *err)
{
    json_object *v = qj_obj(), *q = qj_obj();

    (void)srv;
    (void)args;
    (void)err;
    qj_add(q, "micro", qj_int(IOTHREADD_MICRO));
    qj_add(q, "minor", qj_int(IOTHREADD_MINOR));
    qj_add(q, "major", qj_int(IOTHREADD_MAJOR));
    qj_add(v, "qemu", q);
    qj_add(v, "package", qj_str(IOTHREADD_PACKAGE));
    *ret = v;
}

static void query_commands(QmpServer *srv, json_object *args, json_object **ret,
                           QmpError *err)
{
    json_object *list = qj_arr();

    (void)srv;
    (void)args;
    (void)err;
    for (const QmpCommand *c = qmp_commands; c->name; c++) {
        json_object *o = qj_obj();
        qj_add(o, "name", qj_str(c->name));
        qj_push(list, o);
    }
    *ret = list;
}

static void quit(QmpServer *srv, json_object *args, json_object **ret,
                 QmpError *err)
{
    (void)args;
    (void)ret;
    (void)err;
    qmp_server_request_quit(srv, "host-qmp-quit");
}

static void query_iothreads(QmpServer *srv, json_object *args,
                            json_object **ret, QmpError *err)
{
    (void)srv;
    (void)args;
    *ret = from_library(iot_thread_query_json(), err);
}

static void query_iothread_stats(QmpServer *srv, json_object *args,
                                 json_object **ret, QmpError *err)
{
    json_object *id = NULL;

    (void)srv;
    json_object_object_get_ex(args, "id", &id);
    *ret = from_library(
        iot_thread_stats_json(id ? json_object_get_string(id) : NULL), err);
    if (*ret && id && json_object_array_length(*ret) == 0) {
        qmp_error_set(err, QMP_GENERIC_ERROR, "iothread \"%s\" not found",
                      json_object_get_string(id));
    }
}

/* ---- objects ---- */

/* object-add's members for qom-type iothread, in schema order. */
static const QmpArg iothread_args[] = {
    { "qom-type", QMP_T_STR, true },
    { "id", QMP_T_STR, true },
    { "aio-max-batch", QMP_T_INT, false },
    { "thread-pool-min", QMP_T_INT, false },
    { "thread-pool-max", QMP_T_INT, false },
    { "poll-max-ns", QMP_T_INT, false },
    { "poll-grow", QMP_T_INT, false },
    { "poll-shrink", QMP_T_INT, false },
    { "cpu-affinity", QMP_T_STR, false },
    QMP_ARGS_END,
};

/* object-add: the qom-type's value first (QEMU's union discriminator),
 * then the members of the iothread branch. */
static bool check_args(json_object *args, QmpError *err)
{
    json_object *type;

    if (json_object_object_get_ex(args, "qom-type", &type) &&
        json_object_is_type(type, json_type_string) &&
        strcmp(json_object_get_string(type), "iothread")) {
        qmp_error_set(err, QMP_GENERIC_ERROR,
                      "Parameter 'qom-type' does not accept value '%s'",
                      json_object_get_string(type));
        return false;
    }
    return qmp_args_check(iothread_args, args, err);
}

static void object_add(QmpServer *srv, json_object *args, json_object **ret,
                       QmpError *err)
{
    IotThreadProps *props;
    IotError *ierr = NULL;
    IotThread *t;
    json_object *idv;
    const char *id;

    (void)srv;
    (void)ret;
    if (!check_args(args, err)) {
        return;
    }
    /* As QEMU's user_creatable_add_type(): the id before any setter. */
    json_object_object_get_ex(args, "id", &idv);
    id = json_object_get_string(idv);
    if (!iot_thread_id_valid(id)) {
        qmp_error_set(err, QMP_GENERIC_ERROR,
                      "Parameter 'id' expects an identifier");
        return;
    }
    props = iot_thread_props_new();
    if (!props) {
        qmp_error_set(err, QMP_GENERIC_ERROR, "out of memory");
        return;
    }
    json_object_object_foreach(args, key, val)
    {
        int r = 0;
        if (!strcmp(key, "qom-type") || !strcmp(key, "id")) {
            continue;
        }
        if (json_object_is_type(val, json_type_string)) {
            r = iot_thread_props_set_str(props, key,
                                         json_object_get_string(val), &ierr);
        } else {
            r = iot_thread_props_set_int(props, key, json_object_get_int64(val),
                                         &ierr);
        }
        if (r < 0) {
            break;
        }
    }
    t = ierr ? NULL : iot_thread_new(id, props, &ierr);
    iot_thread_props_free(props);
    if (!t) {
        qmp_error_set(err, QMP_GENERIC_ERROR, "%s", iot_error_message(ierr));
        iot_error_free(ierr);
    }
    /* The registry holds it from now on; object-del destroys it. */
}

static void object_del(QmpServer *srv, json_object *args, json_object **ret,
                       QmpError *err)
{
    json_object *idv;
    const char *id;
    IotError *ierr = NULL;
    IotThread *t;

    (void)srv;
    (void)ret;
    json_object_object_get_ex(args, "id", &idv);
    id = json_object_get_string(idv);
    t = iot_thread_find(id);
    if (!t) {
        qmp_error_set(err, QMP_GENERIC_ERROR, "object '%s' not found", id);
        return;
    }
    if (iot_thread_destroy(t, &ierr) < 0) {
        qmp_error_set(err, QMP_GENERIC_ERROR, "%s", iot_error_message(ierr));
        iot_error_free(ierr);
    }
    iot_thread_unref(t); /* the reference find gave us */
}

/* Splits a QOM path into its non-empty parts, as QEMU reads it ("/a//b/"
 * is a, b): at most @max of them (more count as max + 1). */
static size_t path_parts(const char *path, const char **part, size_t *len,
                         size_t max)
{
    size_t n = 0;

    for (const char *p = path + strspn(path, "/"); *p; p += strspn(p, "/")) {
        if (n == max) {
            return max + 1;
        }
        part[n] = p;
        len[n] = strcspn(p, "/");
        p += len[n++];
    }
    return n;
}

static bool part_is(const char *part, size_t len, const char *word)
{
    return len == strlen(word) && !memcmp(part, word, len);
}

/* Is @path the container of every IOThread, /objects ("objects" as a
 * partial path, empty parts ignored)? */
static bool path_is_objects(const char *path)
{
    const char *part[1];
    size_t len[1];

    return path_parts(path, part, len, 1) == 1 &&
           part_is(part[0], len[0], "objects");
}

/* The IOThread at @path: "/objects/ID", or a partial path that only it
 * ends with ("ID", "objects/ID"), empty parts ignored ("/objects/ID/"),
 * as QEMU resolves QOM paths.  Every IOThread is at /objects/ID, and
 * nothing else is in the tree. */
static IotThread *path_resolve(const char *path, QmpError *err)
{
    const char *part[2];
    size_t len[2], n = path_parts(path, part, len, 2);
    IotThread *t = NULL;

    if ((n == 2 && part_is(part[0], len[0], "objects")) ||
        (n == 1 && path[0] != '/')) {
        char *id = strndup(part[n - 1], len[n - 1]);

        t = id ? iot_thread_find(id) : NULL;
        free(id);
    }
    if (!t) {
        qmp_error_set(err, QMP_DEVICE_NOT_FOUND, "Device '%s' not found", path);
    }
    return t;
}

static const char *prop_arg(json_object *args, const char *name)
{
    json_object *v;

    json_object_object_get_ex(args, name, &v);
    return json_object_get_string(v);
}

static void qom_get(QmpServer *srv, json_object *args, json_object **ret,
                    QmpError *err)
{
    const char *prop = prop_arg(args, "property");
    IotThread *t = path_resolve(prop_arg(args, "path"), err);
    IotError *ierr = NULL;
    int64_t v;

    (void)srv;
    if (!t) {
        return;
    }
    if (!strcmp(prop, "type")) {
        *ret = qj_str("iothread");
    } else if (iot_thread_get_int(t, prop, &v, NULL) == 0) {
        *ret = qj_int64(v);
    } else {
        /* A string property, or none (then the error names it). */
        char *s = iot_thread_get_str(t, prop, &ierr);
        if (s) {
            *ret = qj_str(s);
            free(s);
        } else {
            qmp_error_set(err, QMP_GENERIC_ERROR, "%s",
                          iot_error_message(ierr));
            iot_error_free(ierr);
        }
    }
    iot_thread_unref(t);
}

static void qom_set(QmpServer *srv, json_object *args, json_object **ret,
                    QmpError *err)
{
    const char *prop = prop_arg(args, "property");
    IotThread *t = path_resolve(prop_arg(args, "path"), err);
    IotError *ierr = NULL;
    json_object *value;
    size_t n;
    const IotPropInfo *info = iot_thread_props_info(&n);
    int r = -1;

    (void)srv;
    (void)ret;
    if (!t) {
        return;
    }
    json_object_object_get_ex(args, "value", &value);
    if (!strcmp(prop, "type")) {
        qmp_error_set(err, QMP_GENERIC_ERROR,
                      "Property 'iothread.type' is not writable");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(info[i].name, prop)) {
            continue;
        }
        if (info[i].type == IOT_PROP_INT && !qmp_json_is_int64(value)) {
            qmp_error_set(err, QMP_GENERIC_ERROR,
                          "Invalid parameter type for '%s', expected: integer",
                          prop);
            goto out;
        }
        if (info[i].type == IOT_PROP_STR &&
            !json_object_is_type(value, json_type_string)) {
            qmp_error_set(err, QMP_GENERIC_ERROR,
                          "Invalid parameter type for '%s', expected: string",
                          prop);
            goto out;
        }
        r = info[i].type == IOT_PROP_INT
                ? iot_thread_set_int(t, prop, json_object_get_int64(value),
                                     &ierr)
                : iot_thread_set_str(t, prop, json_object_get_string(value),
                                     &ierr);
        if (r < 0) {
            qmp_error_set(err, QMP_GENERIC_ERROR, "%s",
                          iot_error_message(ierr));
        }
        goto out;
    }
    qmp_error_set(err, QMP_GENERIC_ERROR, "Property 'iothread.%s' not found",
                  prop);
out:
    iot_error_free(ierr);
    iot_thread_unref(t);
}

static json_object *prop_entry(const char *name, const char *type,
                               const char *desc)
{
    json_object *o = qj_obj();

    qj_add(o, "name", qj_str(name));
    qj_add(o, "type", qj_str(type));
    if (desc) {
        qj_add(o, "description", qj_str(desc));
    }
    return o;
}

static json_object *iothread_props(bool with_desc)
{
    json_object *list = qj_arr();
    size_t n;
    const IotPropInfo *info = iot_thread_props_info(&n);

    qj_push(list, prop_entry("type", "string", NULL));
    for (size_t i = 0; i < n; i++) {
        qj_push(list,
                prop_entry(info[i].name,
                           info[i].type == IOT_PROP_INT ? "int" : "string",
                           with_desc ? info[i].description : NULL));
    }
    return list;
}

static void qom_list(QmpServer *srv, json_object *args, json_object **ret,
                     QmpError *err)
{
    const char *path = prop_arg(args, "path");
    IotThread *t;

    (void)srv;
    if (path_is_objects(path)) {
        json_object *list = qj_arr();
        json_object *info = from_library(iot_thread_query_json(), err);
        for (size_t i = 0; info && i < json_object_array_length(info); i++) {
            json_object *id;
            json_object_object_get_ex(json_object_array_get_idx(info, i), "id",
                                      &id);
            qj_push(list, prop_entry(json_object_get_string(id),
                                     "child<iothread>", NULL));
        }
        json_object_put(info);
        *ret = list;
        return;
    }
    t = path_resolve(path, err);
    if (t) {
        *ret = iothread_props(false);
        iot_thread_unref(t);
    }
}

static void qom_list_properties(QmpServer *srv, json_object *args,
                                json_object **ret, QmpError *err)
{
    const char *type = prop_arg(args, "typename");

    (void)srv;
    if (strcmp(type, "iothread")) {
        qmp_error_set(err, QMP_DEVICE_NOT_FOUND, "Class '%s' not found", type);
        return;
    }
    *ret = iothread_props(true);
}

/* ---- the table ---- */

static const QmpArg caps_args[] = { { "enable", QMP_T_STRLIST, false },
                                    QMP_ARGS_END };
static const QmpArg id_args[] = { { "id", QMP_T_STR, true }, QMP_ARGS_END };
static const QmpArg opt_id_args[] = { { "id", QMP_T_STR, false },
                                      QMP_ARGS_END };
static const QmpArg get_args[] = { { "path", QMP_T_STR, true },
                                   { "property", QMP_T_STR, true },
                                   QMP_ARGS_END };
static const QmpArg set_args[] = { { "path", QMP_T_STR, true },
                                   { "property", QMP_T_STR, true },
                                   { "value", QMP_T_ANY, true },
                                   QMP_ARGS_END };
static const QmpArg path_args[] = { { "path", QMP_T_STR, true }, QMP_ARGS_END };
static const QmpArg typename_args[] = { { "typename", QMP_T_STR, true },
                                        QMP_ARGS_END };

const QmpCommand qmp_commands[] = {
    { "qmp_capabilities", qmp_capabilities, caps_args, false },
    { "query-version", query_version, NULL, false },
    { "query-commands", query_commands, NULL, false },
    { "quit", quit, NULL, false },
    { "query-iothreads", query_iothreads, NULL, false },
    { "query-iothread-stats", query_iothread_stats, opt_id_args, false },
    { "object-add", object_add, NULL, true },
    { "object-del", object_del, id_args, false },
    { "qom-get", qom_get, get_args, false },
    { "qom-set", qom_set, set_args, false },
    { "qom-list", qom_list, path_args, false },
    { "qom-list-properties", qom_list_properties, typename_args, false },
    { NULL, NULL, NULL, false },
};
