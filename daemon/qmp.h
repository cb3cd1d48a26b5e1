/* SPDX-License-Identifier: MIT */
/*
 * iothreadd's QMP server: UNIX-socket listeners and clients on the main
 * context, the JSON stream framing, the command dispatcher and events.
 * Everything here runs on the main thread.
 */
#ifndef IOTHREADD_QMP_H
#define IOTHREADD_QMP_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include <iothread/ctx.h>
#include <iothread/version.h>

typedef struct QmpServer QmpServer;
typedef struct QmpClient QmpClient;

/*
 * Building replies out of memory.  json-c's constructors return NULL
 * then, and adding to a NULL container fails an assertion; replies are
 * therefore built with these, which tolerate NULL and record the
 * failure in qj_oom.  A reply built while it is set is not sent: its
 * client is dropped (with a line on stderr), and every other client goes
 * on.  The daemon runs QMP on one thread, so one flag serves.
 */
extern bool qj_oom;
static inline json_object *qj_check(json_object *o)
{
    if (!o) {
        qj_oom = true;
    }
    return o;
}
#define qj_obj()    qj_check(json_object_new_object())
#define qj_arr()    qj_check(json_object_new_array())
#define qj_str(s)   qj_check(json_object_new_string(s))
#define qj_int(i)   qj_check(json_object_new_int(i))
#define qj_int64(i) qj_check(json_object_new_int64(i))
#define qj_bool(b)  qj_check(json_object_new_boolean(b))
/* @v is consumed, also when it cannot be added.  A NULL @v is JSON null. */
static inline void qj_add(json_object *o, const char *key, json_object *v)
{
    if (!o || json_object_object_add(o, key, v) < 0) {
        qj_oom = true;
        json_object_put(v);
    }
}
static inline void qj_push(json_object *a, json_object *v)
{
    if (!a || json_object_array_add(a, v) < 0) {
        qj_oom = true;
        json_object_put(v);
    }
}

/* QMP error classes. */
typedef enum QmpErrorClass {
    QMP_GENERIC_ERROR,
    QMP_COMMAND_NOT_FOUND,
    QMP_DEVICE_NOT_FOUND,
} QmpErrorClass;

typedef struct QmpError {
    QmpErrorClass cls;
    char *desc;
} QmpError;

void qmp_error_set(QmpError *err, QmpErrorClass cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A command: fills *ret (a new object, or NULL for {}) or *err. */
typedef void QmpHandler(QmpServer *srv, json_object *args, json_object **ret,
                        QmpError *err);

/* One argument of a command's schema. */
typedef enum QmpType {
    QMP_T_STR,
    QMP_T_INT,
    QMP_T_BOOL,
    QMP_T_ANY,
    QMP_T_STRLIST,
} QmpType;

typedef struct QmpArg {
    const char *name;
    QmpType type;
    bool required;
} QmpArg;

#define QMP_ARGS_END                                                           \
    {                                                                          \
        NULL, QMP_T_ANY, false                                                 \
    }

typedef struct QmpCommand {
    const char *name;
    QmpHandler *handler;
    const QmpArg *args; /* NULL-name terminated; NULL: no arguments */
    bool any_args;      /* the handler checks arguments itself */
} QmpCommand;

/* qmp-cmds.c: the command table, NULL-name terminated. */
extern const QmpCommand qmp_commands[];

/* The server. */
QmpServer *qmp_server_new(IotCtx *ctx);
void qmp_server_free(QmpServer *srv);
/* Listens on @path (a UNIX socket, created now).  0 or -errno, message
 * in *msg (free()). */
int qmp_server_listen(QmpServer *srv, const char *path, char **msg);
/* Set by the quit command and signals; the main loop watches it. */
bool qmp_server_quit_requested(QmpServer *srv);
void qmp_server_request_quit(QmpServer *srv, const char *reason);
/* Sends SHUTDOWN, flushes what it can, closes every client and removes
 * every socket file. */
void qmp_server_shutdown(QmpServer *srv);
/* Broadcasts an event to every negotiated client; takes @data. */
void qmp_server_event(QmpServer *srv, const char *name, json_object *data);

/* A client on any transport; the server's sockets use these, and so do
 * the fuzzer and the unit tests.  Output accumulates in the client until
 * qmp_client_take_output() or the socket layer sends it. */
QmpClient *qmp_client_new(QmpServer *srv, int fd);
void qmp_client_free(QmpClient *c);
void qmp_client_input(QmpClient *c, const char *buf, size_t len);
char *qmp_client_take_output(QmpClient *c, size_t *len);

/* Checks @args against @schema as QEMU's visitor does: each member in
 * schema order (missing, wrong type), then members nobody expects. */
bool qmp_args_check(const QmpArg *schema, json_object *args, QmpError *err);
/* qmp_capabilities for a client that has @negotiated or not; @args
 * checked against its schema. */
void qmp_capabilities_negotiate(json_object *args, bool negotiated,
                                QmpError *err);

/* True if @v is a JSON integer that fits int64 (json-c saturates). */
bool qmp_json_is_int64(json_object *v);

/* JSON text in QEMU's wire style: ": " and ", " separators, one line. */
char *qmp_json_dump(json_object *obj);

/* Greeting version: the project's, one number for the library and the
 * daemon (iothread/version.h). */
#define IOTHREADD_MAJOR   IOT_VERSION_MAJOR
#define IOTHREADD_MINOR   IOT_VERSION_MINOR
#define IOTHREADD_MICRO   IOT_VERSION_PATCH
#define IOTHREADD_STR_(x) #x
#define IOTHREADD_STR(x)  IOTHREADD_STR_(x)
#define IOTHREADD_PACKAGE                                                      \
    "iothreadd " IOTHREADD_STR(IOT_VERSION_MAJOR) "." IOTHREADD_STR(           \
        IOT_VERSION_MINOR) "." IOTHREADD_STR(IOT_VERSION_PATCH)

/* The most bytes one JSON value may take before it is refused. */
#define QMP_MAX_INPUT (1024 * 1024)

#endif
