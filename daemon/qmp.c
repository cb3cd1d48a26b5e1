/* SPDX-License-Identifier: MIT */
/*
 * iothreadd's QMP server.  Main thread only.
 *
 * Framing: each client has a json-c tokener fed with whatever arrives, so
 * values may span reads and lines, and several may share one line.  A
 * syntax error gets a "JSON parse error" reply and the rest of that line
 * is dropped, so the stream recovers at the next line.  A value that grows
 * past QMP_MAX_INPUT is refused the same way.  No client can block
 * another: sockets are non-blocking, output is queued per client, and a
 * client that lets more than QMP_MAX_OUTPUT pile up is dropped.  At most
 * QMP_MAX_CLIENTS are served at once (the rest wait in the listen
 * backlog), which bounds what the clients can make the daemon hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <iothread/fd.h>
#include <iothread/timer.h>

#include "qmp.h"

#define QMP_MAX_OUTPUT (16 * 1024 * 1024)
/* Clients served at once: with QMP_MAX_OUTPUT and QMP_MAX_INPUT each, at
 * most some 1.1 GB queued by clients that send and do not read. */
#define QMP_MAX_CLIENTS 64
#define QMP_READ_CHUNK  65536

typedef struct Listener {
    QmpServer *srv;
    int fd;
    char *path;
    struct Listener *next;
} Listener;

struct QmpServer {
    IotCtx *ctx;
    Listener *listeners;
    QmpClient *clients;
    unsigned nclients; /* on `clients` */
    bool quit;
    char *quit_reason;
    /* Out of fds: the listeners are not watched (a pending connection
     * would keep them readable, and the loop would spin) until a client
     * goes or the retry timer fires. */
    bool accept_paused;
    IotTimer *accept_retry;
};

/* How long accepting pauses when the process is out of fds. */
#define QMP_ACCEPT_RETRY_NS (100 * 1000 * 1000)
/* At the end, how long the clients' queued replies may take to go out:
 * a client that does not read cannot hold the daemon longer. */
#define QMP_DRAIN_NS (2000 * 1000 * 1000LL)

struct QmpClient {
    QmpServer *srv;
    int fd; /* -1: not a socket (tests, fuzzing) */
    bool negotiated;
    struct json_tokener *tok;
    size_t value_bytes; /* fed into the value being parsed */
    bool in_value;      /* the tokener has seen the value's first byte */
    /* A number cut by the end of a read, at the top level or inside a
     * value: kept for the next read (number_tail()). */
    char *num;
    size_t num_len, num_cap;
    unsigned esc_state; /* lex_scan() state */
    bool in_string;     /* lex_scan(): inside a JSON string */
    unsigned utf8_need; /* lex_scan(): continuation bytes still due */
    unsigned char utf8_lo, utf8_hi; /* lex_scan(): bounds of the next one */
    bool value_has_nul; /* the value being parsed contains \\u0000 */
    /* lex_scan()'s view of the top-level object, to keep the text of its
     * "id": json-c saturates an integer past 64 bits, and QMP echoes the
     * id verbatim (lex_outside()). */
    unsigned lex_depth;    /* containers open, outside strings */
    bool lex_expect_key;   /* a string now is a key of the top object */
    bool lex_in_key;       /* inside such a string */
    char lex_key[12];      /* its first bytes, as written */
    unsigned lex_key_len;  /* how many; past sizeof(lex_key): longer */
    bool lex_key_is_id;    /* the last such key was "id", value not seen */
    bool lex_id_value;     /* after its ':', before its value */
    bool lex_in_id;        /* inside that value (kept in id_text) */
    unsigned char lex_num; /* lex_number(): where in a number, or NUM_NONE */
    bool id_text_bad;      /* out of memory keeping it */
    char *id_text;         /* its bytes; the last "id" wins, as in json-c */
    size_t id_len, id_cap;
    bool discard_line; /* dropping input up to the next newline */
    char *out;
    size_t out_len, out_cap;
    bool dead; /* to be closed */
    bool eof;  /* the client shut its side: send what is queued, then close */
    QmpClient *next;
};

/* Where lex_number() is in a number: JSON's grammar,
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, of which json-c also
 * takes "2.", "1.e5", "00" and "-01" (a reply echoing such an id would be
 * no JSON, and QEMU refuses them). */
enum {
    NUM_NONE,  /* not in a number */
    NUM_MINUS, /* after '-' */
    NUM_ZERO,  /* an integer part of 0 */
    NUM_INT,   /* in an integer part that started 1-9 */
    NUM_DOT,   /* after '.' */
    NUM_FRAC,  /* in the fraction's digits */
    NUM_E,     /* after 'e' or 'E' */
    NUM_ESIGN, /* after the exponent's sign */
    NUM_EXP,   /* in the exponent's digits */
};

static void lex_reset(QmpClient *c);
static void id_text_forget(QmpClient *c);

void qmp_error_set(QmpError *err, QmpErrorClass cls, const char *fmt, ...)
{
    va_list ap;

    if (err->desc) {
        return;
    }
    err->cls = cls;
    va_start(ap, fmt);
    if (vasprintf(&err->desc, fmt, ap) < 0) {
        err->desc = NULL;
    }
    va_end(ap);
}

/* ---- JSON output in QEMU's style ---- */

bool qj_oom;

/* Appends json-c's text for @o; out of memory, records it in qj_oom. */
static void dump_scalar(json_object *o, struct printbuf *pb)
{
    const int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    const char *s = json_object_to_json_string_ext(o, flags);

    if (!s || printbuf_memappend(pb, s, (int)strlen(s)) < 0) {
        qj_oom = true;
    }
}

/* Appends @str; out of memory, records it in qj_oom. */
static void pb_put(struct printbuf *pb, const char *str)
{
    if (printbuf_memappend(pb, str, (int)strlen(str)) < 0) {
        qj_oom = true;
    }
}

static void dump(json_object *o, struct printbuf *pb)
{
    const char *sep = "";

    switch (json_object_get_type(o)) {
    case json_type_object:
        pb_put(pb, "{");
        json_object_object_foreach(o, key, val)
        {
            json_object *k = qj_str(key);
            pb_put(pb, sep);
            dump_scalar(k, pb);
            pb_put(pb, ": ");
            dump(val, pb);
            json_object_put(k);
            sep = ", ";
        }
        pb_put(pb, "}");
        break;
    case json_type_array:
        pb_put(pb, "[");
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            pb_put(pb, sep);
            dump(json_object_array_get_idx(o, i), pb);
            sep = ", ";
        }
        pb_put(pb, "]");
        break;
    default:
        dump_scalar(o, pb);
    }
}

char *qmp_json_dump(json_object *obj)
{
    struct printbuf *pb = printbuf_new();
    char *s;

    if (!pb) {
        return NULL;
    }
    dump(obj, pb);
    /* A piece that could not be made or appended: no partial line. */
    s = qj_oom ? NULL : strndup(pb->buf, (size_t)pb->bpos);
    printbuf_free(pb);
    return s;
}

/* ---- output ---- */

/* Appends @n bytes of @s to the buffer (*buf, *len, *cap), whose
 * capacity starts at @first and doubles, so that growing by small pieces
 * costs linear time.  False if out of memory (nothing appended). */
static bool buf_append(char **buf, size_t *len, size_t *cap, size_t first,
                       const char *s, size_t n)
{
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : first;
        char *grown;

        while (want < *len + n) {
            want *= 2;
        }
        grown = realloc(*buf, want);
        if (!grown) {
            return false;
        }
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return true;
}

static void client_write_raw(QmpClient *c, const char *s, size_t len)
{
    if (c->dead) {
        return;
    }
    if (c->out_len + len > QMP_MAX_OUTPUT) {
        /* It does not read what it asks for: drop it, not the others. */
        c->dead = true;
        return;
    }
    if (!buf_append(&c->out, &c->out_len, &c->out_cap, 4096, s, len)) {
        c->dead = true;
    }
}

/* Queues @obj as one line and drops it.  A reply that could not be built
 * whole (qj_oom) or written out drops the client instead: it would
 * otherwise wait for a reply that never comes, or match the next one to
 * this request.  The other clients go on. */
static void client_send(QmpClient *c, json_object *obj)
{
    char *s = qj_oom ? NULL : qmp_json_dump(obj);

    json_object_put(obj);
    qj_oom = false;
    if (!s) {
        if (!c->dead) {
            fprintf(stderr, "iothreadd: out of memory for a reply: "
                            "client dropped\n");
        }
        c->dead = true;
        return;
    }
    client_write_raw(c, s, strlen(s));
    client_write_raw(c, "\r\n", 2);
    free(s);
}

static const char *class_name(QmpErrorClass cls)
{
    switch (cls) {
    case QMP_COMMAND_NOT_FOUND:
        return "CommandNotFound";
    case QMP_DEVICE_NOT_FOUND:
        return "DeviceNotFound";
    default:
        return "GenericError";
    }
}

/* Does @v hold a number, at any depth? */
static bool json_has_number(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_int:
    case json_type_double:
        return true;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            if (json_has_number(json_object_array_get_idx(v, i))) {
                return true;
            }
        }
        return false;
    case json_type_object: {
        json_object_object_foreach(v, key, val)
        {
            (void)key;
            if (json_has_number(val)) {
                return true;
            }
        }
        return false;
    }
    default:
        return false;
    }
}

/* @id as the client wrote it, which lex_outside() kept (with the
 * whitespace between its tokens in QEMU's style: the reply stays one
 * line and looks like any other), if
 * it holds a number: json-c saturates an integer past 64 bits (2^64 came
 * back as 18446744073709551615), and QMP echoes the id verbatim.  NULL
 * for any other id (json-c's is the same), or if memory is short (the
 * parsed one is echoed then).  The text is JSON that json-c accepted,
 * and lex_outside() refused its NaN and Infinity. */
static json_object *id_as_written(QmpClient *c, json_object *id)
{
    json_object *v;
    char *text;

    if (!c->id_len || c->id_text_bad || !json_has_number(id)) {
        return NULL;
    }
    text = strndup(c->id_text, c->id_len);
    if (!text) {
        return NULL;
    }
    /* A json-c value that serialises as the given text, whatever it is
     * (its type, double, is never looked at: the id is only echoed). */
    v = json_object_new_double_s(0, text);
    free(text);
    return v;
}

/* Sends an error reply echoing @id (borrowed; NULL is JSON null) if
 * @has_id. */
static void send_error(QmpClient *c, bool has_id, json_object *id,
                       QmpErrorClass cls, const char *desc)
{
    json_object *r = qj_obj();
    json_object *e = qj_obj();

    qj_add(e, "class", qj_str(class_name(cls)));
    qj_add(e, "desc", qj_str(desc));
    qj_add(r, "error", e);
    if (has_id) {
        qj_add(r, "id", json_object_get(id));
    }
    client_send(c, r);
}

static void send_greeting(QmpClient *c)
{
    json_object *ver, *q, *v, *g;

    qj_oom = false;
    ver = qj_obj();
    q = qj_obj();
    v = qj_obj();
    g = qj_obj();

    qj_add(q, "micro", qj_int(IOTHREADD_MICRO));
    qj_add(q, "minor", qj_int(IOTHREADD_MINOR));
    qj_add(q, "major", qj_int(IOTHREADD_MAJOR));
    qj_add(v, "qemu", q);
    qj_add(v, "package", qj_str(IOTHREADD_PACKAGE));
    qj_add(ver, "version", v);
    qj_add(ver, "capabilities", qj_arr());
    qj_add(g, "QMP", ver);
    client_send(c, g);
}

/* ---- argument checking ---- */

static const char *type_name(QmpType t)
{
    switch (t) {
    case QMP_T_STR:
        return "string";
    case QMP_T_INT:
        return "integer";
    case QMP_T_BOOL:
        return "boolean";
    case QMP_T_STRLIST:
        return "array";
    default:
        return "any";
    }
}

/* An int64 in JSON: a json-c int that did not saturate. */
bool qmp_json_is_int64(json_object *v)
{
    if (!json_object_is_type(v, json_type_int)) {
        return false;
    }
    return json_object_get_int64(v) != INT64_MAX ||
           json_object_get_uint64(v) == (uint64_t)INT64_MAX;
}

static bool type_ok(json_object *v, QmpType t)
{
    switch (t) {
    case QMP_T_STR:
        return json_object_is_type(v, json_type_string);
    case QMP_T_INT:
        return qmp_json_is_int64(v);
    case QMP_T_BOOL:
        return json_object_is_type(v, json_type_boolean);
    case QMP_T_STRLIST:
        return json_object_is_type(v, json_type_array);
    default:
        return true;
    }
}

/* A list of strings whose first element is not one.  QEMU's visitor
 * checks the elements in order and names the bad one NAME[i]; a first
 * element that is a string is judged by the command, which refuses any
 * (we offer no capability), so only element 0 can get this error. */
static bool strlist_first_bad(json_object *v)
{
    return json_object_array_length(v) > 0 &&
           !json_object_is_type(json_object_array_get_idx(v, 0),
                                json_type_string);
}

/* Checks @args against @schema as QEMU's visitor does: each member in
 * schema order (missing, wrong type), then members nobody expects. */
bool qmp_args_check(const QmpArg *schema, json_object *args, QmpError *err)
{
    for (const QmpArg *a = schema; a && a->name; a++) {
        json_object *v;
        if (!json_object_object_get_ex(args, a->name, &v)) {
            if (a->required) {
                qmp_error_set(err, QMP_GENERIC_ERROR,
                              "Parameter '%s' is missing", a->name);
                return false;
            }
            continue;
        }
        if (!type_ok(v, a->type)) {
            qmp_error_set(err, QMP_GENERIC_ERROR,
                          "Invalid parameter type for '%s', expected: %s",
                          a->name, type_name(a->type));
            return false;
        }
        if (a->type == QMP_T_STRLIST && strlist_first_bad(v)) {
            qmp_error_set(err, QMP_GENERIC_ERROR,
                          "Invalid parameter type for '%s[0]', expected: "
                          "string",
                          a->name);
            return false;
        }
    }
    json_object_object_foreach(args, key, val)
    {
        const QmpArg *a = schema;
        (void)val;
        while (a && a->name && strcmp(a->name, key)) {
            a++;
        }
        if (!a || !a->name) {
            qmp_error_set(err, QMP_GENERIC_ERROR,
                          "Parameter '%s' is unexpected", key);
            return false;
        }
    }
    return true;
}

/* ---- dispatch ---- */

static const QmpCommand *command_find(const char *name)
{
    for (const QmpCommand *cmd = qmp_commands; cmd->name; cmd++) {
        if (!strcmp(cmd->name, name)) {
            return cmd;
        }
    }
    return NULL;
}

/* The envelope rules (section "Framing and parse errors" of qmp-surface). */
static bool envelope_check(json_object *req, const char **exec,
                           json_object **args, QmpError *err)
{
    json_object_object_foreach(req, key, val)
    {
        if (!strcmp(key, "execute")) {
            if (!json_object_is_type(val, json_type_string)) {
                qmp_error_set(err, QMP_GENERIC_ERROR,
                              "QMP input member 'execute' must be a string");
                return false;
            }
            *exec = json_object_get_string(val);
        } else if (!strcmp(key, "arguments")) {
            if (!json_object_is_type(val, json_type_object)) {
                qmp_error_set(err, QMP_GENERIC_ERROR,
                              "QMP input member 'arguments' must be an object");
                return false;
            }
            *args = val;
        } else if (strcmp(key, "id")) {
            qmp_error_set(err, QMP_GENERIC_ERROR,
                          "QMP input member '%s' is unexpected", key);
            return false;
        }
    }
    if (!*exec) {
        qmp_error_set(err, QMP_GENERIC_ERROR,
                      "QMP input lacks member 'execute'");
        return false;
    }
    return true;
}

static void dispatch(QmpClient *c, json_object *req)
{
    const char *exec = NULL;
    json_object *args = NULL, *id = NULL, *ret = NULL, *empty = NULL;
    json_object *id_num = NULL;
    bool has_id;
    QmpError err = { 0 };
    const QmpCommand *cmd;

    qj_oom = false; /* a reply starts here */
    if (!json_object_is_type(req, json_type_object)) {
        send_error(c, false, NULL, QMP_GENERIC_ERROR,
                   "QMP input must be a JSON object");
        return;
    }
    /* Found with a NULL value is JSON null: echoed too. */
    has_id = json_object_object_get_ex(req, "id", &id);
    if (has_id && (id_num = id_as_written(c, id))) {
        id = id_num;
    }
    if (!envelope_check(req, &exec, &args, &err)) {
        goto out;
    }
    if (!c->negotiated && strcmp(exec, "qmp_capabilities")) {
        qmp_error_set(&err, QMP_COMMAND_NOT_FOUND,
                      "Expecting capabilities negotiation with "
                      "'qmp_capabilities'");
        goto out;
    }
    cmd = command_find(exec);
    if (!cmd) {
        qmp_error_set(&err, QMP_COMMAND_NOT_FOUND,
                      "The command %s has not been found", exec);
        goto out;
    }
    if (!args) {
        args = empty = qj_obj();
        if (!args) {
            goto out; /* qj_oom: the client is dropped */
        }
    }
    if (!cmd->any_args && !qmp_args_check(cmd->args, args, &err)) {
        goto out;
    }
    if (!strcmp(exec, "qmp_capabilities")) {
        /* Its arguments first, then whether it came before: as QEMU. */
        qmp_capabilities_negotiate(args, c->negotiated, &err);
        c->negotiated |= !err.desc;
    } else {
        cmd->handler(c->srv, args, &ret, &err);
    }

out:
    if (err.desc) {
        send_error(c, has_id, id, err.cls, err.desc);
        json_object_put(ret);
    } else {
        json_object *r = qj_obj();
        qj_add(r, "return", ret ? ret : qj_obj());
        if (has_id) {
            qj_add(r, "id", json_object_get(id));
        }
        client_send(c, r);
    }
    free(err.desc);
    json_object_put(empty);
    json_object_put(id_num);
}

/* ---- input ---- */

/* A new tokener, strict JSON, the stream going on after each value.
 * Valid UTF-8 (what we echo must be valid too) is lex_scan()'s. */
/* How deep a value may nest: QEMU's JSON parser allows 1024 brackets
 * and braces (its MAX_NESTING); json-c's default was 32, which refused
 * an id nested 32 deep.  json-c counts a scalar inside the innermost
 * container as one more level, hence 1025.  The tokener's stack costs
 * 32 bytes a level. */
#define QMP_MAX_NESTING 1025

static struct json_tokener *tokener_new(void)
{
    struct json_tokener *tok = json_tokener_new_ex(QMP_MAX_NESTING);

    if (tok) {
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
                                        JSON_TOKENER_ALLOW_TRAILING_CHARS);
    }
    return tok;
}

static void parse_error(QmpClient *c, const char *what)
{
    char *desc = NULL;

    if (asprintf(&desc, "JSON parse error, %s", what) < 0) {
        c->dead = true;
        return;
    }
    send_error(c, false, NULL, QMP_GENERIC_ERROR, desc);
    free(desc);
    /* Not json_tokener_reset(): json-c 0.16 keeps a pending high surrogate
     * (a value cut after "\ud83d") across it, and the next value's first
     * \u escape came out with U+FFFD in front (found by fuzz-qmp). */
    json_tokener_free(c->tok);
    c->tok = tokener_new();
    if (!c->tok) {
        c->dead = true;
        return;
    }
    c->value_bytes = 0;
    c->in_value = false;
    lex_reset(c);
    id_text_forget(c);
    c->value_has_nul = false;
    c->discard_line = true;
}

/* Forgets the lexer's state: a value ended, or was refused. */
static void lex_reset(QmpClient *c)
{
    c->esc_state = 0;
    c->in_string = false;
    c->utf8_need = 0;
    c->lex_depth = 0;
    c->lex_expect_key = false;
    c->lex_in_key = false;
    c->lex_key_is_id = false;
    c->lex_id_value = false;
    c->lex_in_id = false;
    c->lex_num = NUM_NONE;
}

/* The value is done with: its id's text goes (its memory too, if a long
 * number made it large). */
static void id_text_forget(QmpClient *c)
{
    c->id_len = 0;
    if (c->id_cap > 4096) {
        free(c->id_text);
        c->id_text = NULL;
        c->id_cap = 0;
    }
}

static void id_text_add(QmpClient *c, unsigned char ch)
{
    char b = (char)ch;

    if (!buf_append(&c->id_text, &c->id_len, &c->id_cap, 32, &b, 1)) {
        c->id_text_bad = true;
    }
}

/* Does the JSON string body @s (@len bytes, as written) say "id"?  Each
 * letter may be written plainly or as its only escape (\u0069, \u0064:
 * no hex letters, so no case to fold). */
static bool key_says_id(const char *s, size_t len)
{
    static const char *const forms[2][2] = { { "i", "\\u0069" },
                                             { "d", "\\u0064" } };
    size_t at = 0;

    for (int k = 0; k < 2; k++) {
        size_t n1 = strlen(forms[k][0]), n6 = strlen(forms[k][1]);

        if (len - at >= n1 && !memcmp(s + at, forms[k][0], n1)) {
            at += n1;
        } else if (len - at >= n6 && !memcmp(s + at, forms[k][1], n6)) {
            at += n6;
        } else {
            return false;
        }
    }
    return at == len;
}

/* A byte of a top-level key, or its closing quote (in_string clear). */
static void lex_key_byte(QmpClient *c, unsigned char ch)
{
    if (!c->in_string) {
        c->lex_in_key = false;
        c->lex_key_is_id = c->lex_key_len <= sizeof(c->lex_key) &&
                           key_says_id(c->lex_key, c->lex_key_len);
    } else if (c->lex_key_len < sizeof(c->lex_key)) {
        c->lex_key[c->lex_key_len++] = (char)ch;
    } else {
        c->lex_key_len = sizeof(c->lex_key) + 1;
    }
}

/* A byte outside strings, through the number grammar (NUM_NONE...).
 * False if it cannot come there: a digit after a leading 0, a number that
 * ends after '-', '.', 'e' or the exponent's sign, or one followed by
 * what would only continue it. */
static bool lex_number(QmpClient *c, unsigned char ch)
{
    bool digit = ch >= '0' && ch <= '9';
    unsigned char at = c->lex_num;

    switch (at) {
    case NUM_NONE:
        c->lex_num = ch == '-'   ? NUM_MINUS
                     : ch == '0' ? NUM_ZERO
                     : digit     ? NUM_INT
                                 : NUM_NONE;
        return true;
    case NUM_MINUS:
        c->lex_num = ch == '0' ? NUM_ZERO : NUM_INT;
        return digit;
    case NUM_DOT:
        c->lex_num = NUM_FRAC;
        return digit;
    case NUM_E:
        c->lex_num = ch == '+' || ch == '-' ? NUM_ESIGN : NUM_EXP;
        return digit || c->lex_num == NUM_ESIGN;
    case NUM_ESIGN:
        c->lex_num = NUM_EXP;
        return digit;
    default:
        break;
    }
    /* NUM_ZERO, NUM_INT, NUM_FRAC or NUM_EXP: the number may end here. */
    if (digit) {
        return at != NUM_ZERO;
    }
    if (ch == '.' && (at == NUM_ZERO || at == NUM_INT)) {
        c->lex_num = NUM_DOT;
        return true;
    }
    if ((ch == 'e' || ch == 'E') && at != NUM_EXP) {
        c->lex_num = NUM_E;
        return true;
    }
    c->lex_num = NUM_NONE;
    return !strchr(".eE+-", ch);
}

/* A byte outside strings: follows the top-level object's keys and keeps
 * the text of the value of its "id" in c->id_text.
 * Only bytes json-c accepted reach here (numbers whole, see
 * number_tail()), so the structure need not be checked; but json-c also
 * takes NaN, Infinity and -Infinity, which are no JSON (a reply echoing
 * one would not be either): false for a byte that no JSON has outside
 * strings. */
static bool lex_outside(QmpClient *c, unsigned char ch)
{
    if (!strchr("{}[],: \t\n\r0123456789+-.eEtruefalsn\"", ch) || !ch ||
        !lex_number(c, ch)) {
        return false;
    }
    if (c->lex_in_id) {
        if (c->lex_depth == 1 && (ch == ',' || ch == '}')) {
            c->lex_in_id = false; /* the id's value has ended */
        } else if (!strchr(" \t\n\r", ch)) {
            id_text_add(c, ch);
            if (ch == ',' || ch == ':') {
                id_text_add(c, ' '); /* QEMU's ", " and ": " */
            }
        }
    }
    if (c->lex_id_value && !strchr(" \t\n\r", ch)) {
        /* The value's first byte. */
        c->id_len = 0;
        c->id_text_bad = false;
        c->lex_in_id = true;
        id_text_add(c, ch);
    }
    switch (ch) {
    case ' ':
    case '\t':
    case '\n':
    case '\r':
        return true;
    case ':':
        c->lex_id_value = c->lex_depth == 1 && c->lex_key_is_id;
        c->lex_key_is_id = false;
        return true;
    case ',':
        c->lex_expect_key = c->lex_depth == 1;
        break;
    case '{':
    case '[':
        c->lex_depth++;
        c->lex_expect_key = ch == '{' && c->lex_depth == 1;
        break;
    case '}':
    case ']':
        c->lex_depth -= c->lex_depth > 0;
        break;
    case '"':
        c->lex_in_key = c->lex_expect_key;
        c->lex_key_len = 0;
        c->lex_expect_key = false;
        break;
    default:
        break;
    }
    c->lex_id_value = false;
    c->lex_key_is_id = false;
    return true;
}

/* A small lexer over the bytes the tokener consumed, for what json-c lets
 * through and QEMU does not:
 *  - the escape \u0000, which would cut C strings (names, ids) short:
 *    sets value_has_nul;
 *  - raw control characters inside strings (json-c takes a newline in a
 *    string, which would swallow the next line);
 *  - invalid UTF-8 inside strings, which replies would echo.  json-c's
 *    own check (JSON_TOKENER_VALIDATE_UTF8) keeps its state per call, so
 *    it refuses a valid character split across two reads: this one is
 *    used instead;
 *  - NaN, Infinity and -Infinity, which json-c takes (lex_outside()).
 * Returns the offset of the first byte of the last three kinds, with
 * *why set, or -1.  esc_state: 0 plain, 1 after a backslash, 2..5 inside
 * \uXXXX (counting the zeros of a possible \u0000); utf8_need: bytes
 * still due in a multi-byte sequence, the next one in [utf8_lo, 0xBF]. */
static ssize_t lex_scan(QmpClient *c, const char *buf, size_t len,
                        const char **why)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)buf[i];
        bool key = c->lex_in_key;

        if (!c->in_string) {
            if (!lex_outside(c, ch)) {
                *why = "unexpected character";
                return (ssize_t)i;
            }
            c->in_string = ch == '"';
            continue;
        }
        if (c->utf8_need) {
            if (ch < c->utf8_lo || ch > c->utf8_hi) {
                *why = "invalid UTF-8 in string";
                return (ssize_t)i;
            }
            c->utf8_need--;
            c->utf8_lo = 0x80;
            c->utf8_hi = 0xBF;
        } else if (c->esc_state >= 2) {
            /* \u, then four hex digits; all four '0' is \u0000. */
            c->esc_state = ch == '0' ? c->esc_state + 1 : 0;
            if (c->esc_state == 6) {
                c->value_has_nul = true;
                c->esc_state = 0;
            }
        } else if (c->esc_state == 1) {
            c->esc_state = ch == 'u' ? 2 : 0;
        } else if (ch == '\\') {
            c->esc_state = 1;
        } else if (ch == '"') {
            c->in_string = false;
        } else if (ch < 0x20) {
            *why = "control character in string";
            return (ssize_t)i;
        } else if (ch >= 0x80) {
            /* A lead byte: how many continuation bytes, and the bounds of
             * the first one (no overlong forms, no surrogates, <= U+10FFFF). */
            c->utf8_lo = 0x80;
            c->utf8_hi = 0xBF;
            if (ch >= 0xC2 && ch <= 0xDF) {
                c->utf8_need = 1;
            } else if (ch >= 0xE0 && ch <= 0xEF) {
                c->utf8_need = 2;
                c->utf8_lo = ch == 0xE0 ? 0xA0 : 0x80;
                c->utf8_hi = ch == 0xED ? 0x9F : 0xBF;
            } else if (ch >= 0xF0 && ch <= 0xF4) {
                c->utf8_need = 3;
                c->utf8_lo = ch == 0xF0 ? 0x90 : 0x80;
                c->utf8_hi = ch == 0xF4 ? 0x8F : 0xBF;
            } else {
                *why = "invalid UTF-8 in string";
                return (ssize_t)i;
            }
        }
        if (key) {
            lex_key_byte(c, ch);
        }
        if (c->lex_in_id) {
            id_text_add(c, ch);
        }
    }
    return -1;
}

/* Drops input up to and including the next newline; returns the rest. */
static size_t skip_line(QmpClient *c, const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);

    if (!nl) {
        return len;
    }
    c->discard_line = false;
    return (size_t)(nl - buf) + 1;
}

/* The length of the JSON whitespace @buf starts with. */
static size_t skip_ws(const char *buf, size_t len)
{
    size_t i = 0;

    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' ||
                       buf[i] == '\r')) {
        i++;
    }
    return i;
}

static bool num_char(char ch)
{
    return (ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || ch == '.' ||
           ch == 'e' || ch == 'E';
}

/*
 * A number (at the top level or inside a value) that the end of @buf
 * cuts must not reach json-c cut: json-c checks a number's characters
 * within one call only, so "1-" split as "1" and "-}" came out as the
 * number 1 (and "-922" + "i" as an error that dropped the next line),
 * where the same bytes in one read are a parse error at the '-' (found
 * by fuzz-qmp's cut-versus-whole check).  The number's bytes are held in
 * c->num and go to json-c with the next read.  Holding bytes never
 * changes what the stream says, only where it is cut, so no guess is
 * made of whether they are a number at all: digits at the end of a
 * string, or of a line being dropped, are held the same.  No reply to a
 * valid command waits on them (a value never ends in a digit); only the
 * error that the first digit would show in a malformed stream ("false"
 * then "79", "[1 " then "2") comes with the byte after them.  Returns
 * how many bytes at the end of @buf to hold.
 */
static size_t number_tail(const char *buf, size_t len)
{
    size_t i = len;

    while (i > 0 && num_char(buf[i - 1])) {
        i--;
    }
    if (i == len || len - i > QMP_MAX_INPUT ||
        !((buf[i] >= '0' && buf[i] <= '9') || buf[i] == '-')) {
        return 0;
    }
    return len - i;
}

static void client_input(QmpClient *c, const char *buf, size_t len);

/* Appends @len bytes to the held run.  False: out of memory. */
static bool num_append(QmpClient *c, const char *buf, size_t len)
{
    return buf_append(&c->num, &c->num_len, &c->num_cap, 64, buf, len);
}

static bool all_num_chars(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!num_char(buf[i])) {
            return false;
        }
    }
    return true;
}

void qmp_client_input(QmpClient *c, const char *buf, size_t len)
{
    size_t hold;

    if (c->num_len && c->num_len + len <= QMP_MAX_INPUT &&
        all_num_chars(buf, len)) {
        /* The held run goes on: still held whole (number_tail() would
         * say so after rescanning all of it, at every read). */
        if (!num_append(c, buf, len)) {
            c->dead = true;
        }
        return;
    }
    if (c->num_len) {
        /* The held number, then this read: one buffer. */
        size_t jlen = c->num_len + len;
        char *joined = malloc(jlen);

        if (!joined) {
            c->dead = true;
            return;
        }
        memcpy(joined, c->num, c->num_len);
        memcpy(joined + c->num_len, buf, len);
        c->num_len = 0;
        qmp_client_input(c, joined, jlen);
        free(joined);
        return;
    }
    hold = number_tail(buf, len);
    if (hold && !num_append(c, buf + len - hold, hold)) {
        c->dead = true;
        return;
    }
    client_input(c, buf, len - hold);
}

static void client_input(QmpClient *c, const char *buf, size_t len)
{
    /* After "quit", nothing more runs: the daemon is going, and a command
     * sent behind it in the same read must not act (an object-add would
     * report an IOThread that shutdown then destroys). */
    while (len && !c->dead && !c->srv->quit) {
        json_object *obj;
        enum json_tokener_error jerr;
        size_t used;
        bool too_big;
        ssize_t ctl;
        const char *why = NULL;

        if (c->discard_line) {
            used = skip_line(c, buf, len);
            buf += used;
            len -= used;
            continue;
        }
        if (!c->in_value) {
            /* Blank lines between commands are no part of a value: they
             * must not count towards its limit (a keep-alive newline
             * now and then would end in 'input exceeds 1 MiB'). */
            used = skip_ws(buf, len);
            buf += used;
            len -= used;
            if (!len) {
                break;
            }
        }
        c->in_value = true;
        obj = json_tokener_parse_ex(c->tok, buf,
                                    (int)(len > INT32_MAX ? INT32_MAX : len));
        jerr = json_tokener_get_error(c->tok);
        used = json_tokener_get_parse_end(c->tok);
        ctl = lex_scan(c, buf, used < len ? used : len, &why);
        if (ctl >= 0) {
            /* Refuse the value and resume after the offending byte (at
             * the next line, if it was a newline). */
            bool newline = buf[ctl] == '\n';
            json_object_put(obj); /* json-c may have finished the value */
            parse_error(c, why);
            c->discard_line = !newline;
            buf += ctl + 1;
            len -= (size_t)ctl + 1;
            continue;
        }
        if (jerr == json_tokener_continue) {
            c->value_bytes += used;
            if (c->value_bytes > QMP_MAX_INPUT) {
                parse_error(c, "input exceeds 1 MiB");
            }
            buf += used;
            len -= used;
            continue;
        }
        if (jerr != json_tokener_success) {
            parse_error(c, json_tokener_error_desc(jerr));
            /* Resynchronise from the offending byte's line. */
            used = used < len ? used : len;
            buf += used;
            len -= used;
            continue;
        }
        buf += used;
        len -= used;
        /* The limit holds for a value that ends in the read that takes it
         * past 1 MiB too, not only for one still growing. */
        too_big = c->value_bytes + used > QMP_MAX_INPUT;
        c->value_bytes = 0;
        c->in_value = false;
        lex_reset(c);
        json_tokener_reset(c->tok);
        if (too_big) {
            c->value_has_nul = false;
            send_error(c, false, NULL, QMP_GENERIC_ERROR,
                       "JSON parse error, input exceeds 1 MiB");
        } else if (c->value_has_nul) {
            c->value_has_nul = false;
            send_error(c, false, NULL, QMP_GENERIC_ERROR,
                       "JSON parse error, \\u0000 is not supported");
        } else {
            dispatch(c, obj);
        }
        id_text_forget(c);
        json_object_put(obj);
    }
}

char *qmp_client_take_output(QmpClient *c, size_t *len)
{
    char *out = c->out;

    *len = c->out_len;
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    return out;
}

/* ---- sockets ---- */

static void client_flush(QmpClient *c);

static bool client_set_handlers(QmpClient *c);

static void accept_resume(QmpServer *srv);

static void client_close(QmpClient *c)
{
    QmpServer *srv = c->srv;
    QmpClient **link = &srv->clients;

    while (*link && *link != c) {
        link = &(*link)->next;
    }
    if (*link) {
        *link = c->next;
        srv->nclients--;
    }
    qmp_client_free(c);
    /* Its fd is free: a connection waiting for one can have it. */
    accept_resume(srv);
}

static void client_readable(void *opaque)
{
    QmpClient *c = opaque;
    char buf[QMP_READ_CHUNK];
    ssize_t n = read(c->fd, buf, sizeof(buf));

    if (n == 0) {
        /* A half-close (`cmds | socat - UNIX-CONNECT:...`): the commands
         * read so far have run, and their replies are still owed. */
        c->eof = true;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        c->dead = true;
    } else if (n > 0) {
        qmp_client_input(c, buf, (size_t)n);
    }
    client_flush(c);
}

static void client_writable(void *opaque)
{
    client_flush(opaque);
}

/* Sends what it can; waits for POLLOUT for the rest. */
static void client_flush(QmpClient *c)
{
    size_t off = 0;

    while (!c->dead && off < c->out_len) {
        ssize_t n = send(c->fd, c->out + off, c->out_len - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                c->dead = true;
            }
            break;
        }
        off += (size_t)n;
    }
    if (off) {
        memmove(c->out, c->out + off, c->out_len - off);
        c->out_len -= off;
    }
    if (c->dead || (c->eof && !c->out_len)) {
        client_close(c);
        return;
    }
    if (!client_set_handlers(c)) {
        client_close(c);
    }
}

/* False if the loop cannot watch the client (out of memory): it cannot be
 * served, and says so on stderr; the caller closes it. */
static bool client_set_handlers(QmpClient *c)
{
    int ret =
        iot_fd_set_handler(c->srv->ctx, c->fd, c->eof ? NULL : client_readable,
                           c->out_len ? client_writable : NULL, NULL, NULL, c);

    if (ret < 0) {
        fprintf(stderr, "iothreadd: cannot watch a client: %s; dropped\n",
                strerror(-ret));
        return false;
    }
    return true;
}

QmpClient *qmp_client_new(QmpServer *srv, int fd)
{
    QmpClient *c = calloc(1, sizeof(*c));

    if (!c) {
        return NULL;
    }
    c->srv = srv;
    c->fd = fd;
    c->tok = tokener_new();
    if (!c->tok) {
        free(c);
        return NULL;
    }
    send_greeting(c);
    return c;
}

void qmp_client_free(QmpClient *c)
{
    if (c->fd >= 0) {
        iot_fd_set_handler(c->srv->ctx, c->fd, NULL, NULL, NULL, NULL, NULL);
        close(c->fd);
    }
    if (c->tok) { /* NULL after a failed renewal (parse_error()) */
        json_tokener_free(c->tok);
    }
    free(c->out);
    free(c->num);
    free(c->id_text);
    free(c);
}

static void listener_accept(void *opaque);

static void listeners_watch(QmpServer *srv, bool on)
{
    for (Listener *l = srv->listeners; l; l = l->next) {
        iot_fd_set_handler(srv->ctx, l->fd, on ? listener_accept : NULL, NULL,
                           NULL, NULL, l);
    }
}

static void accept_resume(QmpServer *srv)
{
    if (srv->accept_paused) {
        srv->accept_paused = false;
        if (srv->accept_retry) { /* NULL: its allocation failed */
            iot_timer_del(srv->accept_retry);
        }
        listeners_watch(srv, true);
    }
}

static void accept_retry_cb(void *opaque)
{
    accept_resume(opaque);
}

/* No fd for a new client: stop watching the listeners, or the pending
 * connection keeps them readable and the loop spins.  A client that goes
 * frees an fd; the timer covers fds freed elsewhere.  Without the timer
 * (no memory for it) only a client's going resumes. */
static void accept_pause(QmpServer *srv)
{
    if (!srv->accept_retry) {
        srv->accept_retry =
            iot_timer_new(srv->ctx, IOT_CLOCK_MONOTONIC, accept_retry_cb, srv);
    }
    if (!srv->accept_retry && !srv->clients) {
        return; /* nothing would resume it: keep trying */
    }
    srv->accept_paused = true;
    listeners_watch(srv, false);
    if (srv->accept_retry) {
        iot_timer_mod(srv->accept_retry,
                      iot_clock_ns(IOT_CLOCK_MONOTONIC) + QMP_ACCEPT_RETRY_NS);
    }
}

static void listener_accept(void *opaque)
{
    Listener *l = opaque;
    QmpServer *srv = l->srv;
    QmpClient *c;
    int fd;

    if (srv->nclients >= QMP_MAX_CLIENTS) {
        /* Full: the connection waits in the backlog, unwatched (it would
         * keep the listener readable), until a client goes. */
        srv->accept_paused = true;
        listeners_watch(srv, false);
        return;
    }
    fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM) {
            accept_pause(srv);
        }
        return;
    }
    c = qmp_client_new(srv, fd);
    if (!c) {
        close(fd);
        return;
    }
    c->next = srv->clients;
    srv->clients = c;
    srv->nclients++;
    client_flush(c);
}

__attribute__((format(printf, 2, 3))) static void set_msg(char **msg,
                                                          const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(msg, fmt, ap) < 0) {
        *msg = NULL;
    }
    va_end(ap);
}

QmpServer *qmp_server_new(IotCtx *ctx)
{
    QmpServer *srv = calloc(1, sizeof(*srv));

    if (srv) {
        srv->ctx = ctx;
    }
    return srv;
}

/* Makes @path free for our socket: nothing there, or a stale socket
 * (removed).  Refuses anything else: a live server's socket (also one too
 * busy to take our probe: the probe never blocks), or a file that is not
 * a socket, which is not ours to remove. */
/* One probe of the socket at @addr: 0 if a server there greets within
 * QMP_PROBE_MS (a live QMP server speaks first), 1 if nobody listens
 * (ECONNREFUSED), 3 if the file is gone (ENOENT), 2 if a connection was
 * taken but nothing was said, else a positive errno. */
#define QMP_PROBE_MS 100
#define QMP_PROBES   10 /* silent connections before the path is called taken */

static int socket_probe(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct pollfd pfd;
    int r;

    if (fd < 0) {
        return errno;
    }
    r = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
    r = r == 0 ? 0 : errno;
    if (r == 0) {
        char c;

        /* Readable with data: a greeting.  EOF or a reset: the listener
         * went without accepting, as a dying one does. */
        pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
        r = poll(&pfd, 1, QMP_PROBE_MS) > 0 &&
                    recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1
                ? 0
                : 2;
    } else if (r == ECONNREFUSED) {
        r = 1;
    } else if (r == ENOENT) {
        r = 3;
    }
    close(fd);
    return r;
}

/* Is the socket path free for us?  Nothing there is free; a socket that
 * nobody listens on is a stale one (a daemon that died: connect says
 * ECONNREFUSED) and is removed.  Refuses anything else: a live server's
 * socket (one that greets; also one too busy to take our probe: the probe
 * never blocks), or a file that is not a socket, which is not ours to
 * remove.  A connection taken but silent is probed again: a daemon killed
 * a moment ago may still have its listening socket held by the kernel
 * (an io_uring ring torn down in the background keeps its files), which
 * takes the connection and never answers; that goes within milliseconds.
 * Only a path silent for QMP_PROBES probes is called taken. */
static int socket_path_free(const char *path, const struct sockaddr_un *addr,
                            char **msg)
{
    struct stat st;
    int r = 2;

    if (lstat(path, &st) < 0) {
        return 0; /* nothing there (or bind() will say why) */
    }
    if (!S_ISSOCK(st.st_mode)) {
        set_msg(msg, "'%s' exists and is not a socket", path);
        return -EEXIST;
    }
    for (int i = 0; i < QMP_PROBES && r == 2; i++) {
        r = socket_probe(addr);
    }
    if (r == 3) {
        /* Gone meanwhile: nothing to remove.  Not unlinked, for someone
         * else may have bound the path since (bind() then says so). */
        return 0;
    }
    if (r == 1) {
        unlink(path); /* stale: nobody listens there */
        return 0;
    }
    /* Live (0, or silent throughout), busy (EAGAIN), or not ours to judge
     * (EACCES: another user's socket): never removed. */
    if (r == 0 || r == 2 || r == EAGAIN || r == EINPROGRESS) {
        set_msg(msg, "'%s' is in use by another server", path);
    } else {
        set_msg(msg, "cannot check '%s': %s", path, strerror(r));
    }
    return -EADDRINUSE;
}

int qmp_server_listen(QmpServer *srv, const char *path, char **msg)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    Listener *l;
    int fd, ret;

    if (!*path) {
        /* bind() would make an abstract socket nobody can name. */
        set_msg(msg, "socket path is empty");
        return -EINVAL;
    }
    if (strlen(path) >= sizeof(addr.sun_path)) {
        set_msg(msg, "socket path '%s' is too long", path);
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, path);
    ret = socket_path_free(path, &addr, msg);
    if (ret < 0) {
        return ret;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(fd, 16) < 0) {
        int e = errno;
        set_msg(msg, "cannot listen on '%s': %s", path, strerror(e));
        if (fd >= 0) {
            close(fd);
        }
        return -e;
    }
    l = calloc(1, sizeof(*l));
    if (!l || !(l->path = strdup(path))) {
        free(l);
        close(fd);
        unlink(path);
        set_msg(msg, "out of memory");
        return -ENOMEM;
    }
    l->srv = srv;
    l->fd = fd;
    ret =
        iot_fd_set_handler(srv->ctx, fd, listener_accept, NULL, NULL, NULL, l);
    if (ret < 0) {
        /* Start-up is all or nothing: a socket nobody answers on is not
         * one to announce. */
        set_msg(msg, "cannot watch '%s': %s", path, strerror(-ret));
        free(l->path);
        free(l);
        close(fd);
        unlink(path);
        return ret;
    }
    l->next = srv->listeners;
    srv->listeners = l;
    return 0;
}

bool qmp_server_quit_requested(QmpServer *srv)
{
    return srv->quit;
}

void qmp_server_request_quit(QmpServer *srv, const char *reason)
{
    if (!srv->quit) {
        srv->quit = true;
        srv->quit_reason = strdup(reason);
    }
}

void qmp_server_event(QmpServer *srv, const char *name, json_object *data)
{
    struct timeval tv;
    bool data_oom = qj_oom; /* @data was built whole? */

    gettimeofday(&tv, NULL);
    for (QmpClient *c = srv->clients; c; c = c->next) {
        json_object *ev, *ts;
        if (!c->negotiated) {
            continue;
        }
        qj_oom = data_oom;
        ev = qj_obj();
        ts = qj_obj();
        qj_add(ts, "seconds", qj_int64(tv.tv_sec));
        qj_add(ts, "microseconds", qj_int64(tv.tv_usec));
        qj_add(ev, "timestamp", ts);
        qj_add(ev, "event", qj_str(name));
        qj_add(ev, "data", json_object_get(data));
        client_send(c, ev);
        if (c->fd >= 0 && !c->dead && !client_set_handlers(c)) {
            c->dead = true; /* the shutdown closes it */
        }
    }
    json_object_put(data);
}

static void drain_tick(void *opaque)
{
    (void)opaque; /* only ends the blocking poll at the deadline */
}

/* Main thread, at the end (quit or a signal).  Runs the loop until every
 * connected client's queued output has gone (quit's reply, the SHUTDOWN
 * event, the replies before them: a half-closed `cmds | socat` gets them
 * all) and its connection is closed, or QMP_DRAIN_NS has passed.  No
 * command runs any more (client_input() stops at the quit). */
static void server_drain(QmpServer *srv)
{
    int64_t deadline = iot_clock_ns(IOT_CLOCK_MONOTONIC) + QMP_DRAIN_NS;
    IotTimer *tick =
        iot_timer_new(srv->ctx, IOT_CLOCK_MONOTONIC, drain_tick, NULL);
    QmpClient *c, *next;

    for (c = srv->clients; c; c = next) {
        next = c->next; /* a flush may close it */
        if (c->fd >= 0) {
            /* Nothing more is read; each connection closes as soon as
             * its output is out, so a slow reader delays only itself. */
            c->eof = true;
            client_flush(c);
        }
    }
    for (;;) {
        bool owed = false;

        for (c = srv->clients; c; c = c->next) {
            owed |= c->fd >= 0;
        }
        if (!owed || !tick || iot_clock_ns(IOT_CLOCK_MONOTONIC) >= deadline) {
            break;
        }
        iot_timer_mod(tick, deadline);
        iot_ctx_poll(srv->ctx, true);
    }
    iot_timer_free(tick);
}

void qmp_server_shutdown(QmpServer *srv)
{
    json_object *data = qj_obj();

    qj_add(data, "guest", qj_bool(0));
    qj_add(data, "reason",
           qj_str(srv->quit_reason ? srv->quit_reason : "host-signal"));
    qmp_server_event(srv, "SHUTDOWN", data);
    srv->quit = true; /* no command runs any more, whoever asked */
    /* No new clients, and no fd for one: the listeners go first. */
    iot_timer_free(srv->accept_retry);
    srv->accept_retry = NULL;
    srv->accept_paused = false;
    while (srv->listeners) {
        Listener *l = srv->listeners;
        srv->listeners = l->next;
        iot_fd_set_handler(srv->ctx, l->fd, NULL, NULL, NULL, NULL, NULL);
        close(l->fd);
        unlink(l->path);
        free(l->path);
        free(l);
    }
    server_drain(srv);
    while (srv->clients) {
        QmpClient *c = srv->clients;

        srv->clients = c->next;
        srv->nclients--;
        qmp_client_free(c);
    }
}

void qmp_server_free(QmpServer *srv)
{
    if (srv) {
        qmp_server_shutdown(srv);
        free(srv->quit_reason);
        free(srv);
    }
}
