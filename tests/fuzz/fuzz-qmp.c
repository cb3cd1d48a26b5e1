/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: iothreadd's QMP input path (daemon/qmp.c and
 * daemon/qmp-cmds.c) on a client without a socket.
 *
 * Per input: a new client (greeting), the input fed in chunks chosen by
 * its first byte, replies drained and checked, one non-blocking iteration
 * of the main context, the client and its server freed, and every
 * IOThread the input created (object-add) destroyed, so that inputs do not
 * see each other and nothing leaks.  "quit" sets the server's flag: the
 * rest of that input is ignored, as by the daemon.
 *
 * How the first byte (still fed like the others) splits the input:
 *   0x00-0x7f  two reads, cut at (b * size) / 128;
 *   0x80-0xff  reads of (b & 0x7f) + 1 bytes each (1..128), so values
 *              and tokens span reads, down to one byte at a time.
 *
 * Checks on the output (abort on violation, so libFuzzer reports it):
 *   - it is a sequence of lines ending in "\r\n" with no bare CR or LF;
 *   - each line is one strict JSON object: the greeting (first line only),
 *     {"return": ...[, "id"]}, or {"error": {"class", "desc"}[, "id"]};
 *   - with FUZZ_QMP_CHECK_UTF8=1 in the environment, each line is valid
 *     UTF-8 too (off by default: see tests/fuzz/crashes/README.md).
 * After each input no IOThread is left.
 *
 * Then the same input again, whole, on a fresh client: the replies must
 * be the same, however the input was cut (a value split between reads
 * is still that value).  Both runs end with a newline after the input,
 * which gives held digits (see run_input()) their next byte.  Compared per
 * reply: return or error, the id, and an error's class and text (a return's
 * value may differ: thread ids, statistics; so may the detail after "JSON parse
 * error, ", which is json-c's and depends on where the bad byte came).  Not for
 * inputs over 1 MiB, where the point at which the limit is seen depends on the
 * reads by design.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <iothread/ctx.h>
#include <iothread/iothread.h>

#include "qmp.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static IotCtx *ctx;
static QmpServer *srv;
static bool check_utf8;

#define FAIL(...)                                                              \
    do {                                                                       \
        fprintf(stderr, "fuzz-qmp: " __VA_ARGS__);                             \
        fputc('\n', stderr);                                                   \
        abort();                                                               \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    IotError *err = NULL;
    const char *e = getenv("FUZZ_QMP_CHECK_UTF8");
    /* On by default: the daemon validates UTF-8 on input. */

    (void)argc;
    (void)argv;
    ctx = iot_ctx_main_init(&err);
    if (!ctx) {
        FAIL("iot_ctx_main_init: %s", iot_error_message(err));
    }
    check_utf8 = !e || !*e || strcmp(e, "0");
    return 0;
}

/* ---- output checks ---- */

/* What the replies of one run were, for the comparison (see the top). */
typedef struct Sigs {
    char **v;
    size_t n, cap;
} Sigs;

static void sigs_add(Sigs *s, json_object *o)
{
    json_object *err, *id = NULL, *cls = NULL, *desc = NULL;
    const char *ids;
    char *sig;
    int r;

    json_object_object_get_ex(o, "id", &id);
    ids = id ? json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN) : "-";
    if (json_object_object_get_ex(o, "error", &err)) {
        const char *d;

        json_object_object_get_ex(err, "class", &cls);
        json_object_object_get_ex(err, "desc", &desc);
        d = json_object_get_string(desc);
        /* json-c's detail of a syntax error depends on where in its state
         * machine the bad byte arrives: the prefix is what must match. */
        if (!strncmp(d, "JSON parse error, ", 18) &&
            strcmp(d, "JSON parse error, \\u0000 is not supported")) {
            d = "JSON parse error, ...";
        }
        r = asprintf(&sig, "error %s %s: %s", ids, json_object_get_string(cls),
                     d);
    } else {
        r = asprintf(&sig, "return %s", ids);
    }
    if (r < 0) {
        FAIL("out of memory");
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        if (!s->v) {
            FAIL("out of memory");
        }
    }
    s->v[s->n++] = sig;
}

static void sigs_free(Sigs *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i]);
    }
    free(s->v);
    *s = (Sigs){ 0 };
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += len;
    }
    return true;
}

static bool has_string(json_object *o, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) &&
           json_object_is_type(v, json_type_string);
}

/* One reply line, without its "\r\n"; its signature goes to @sigs. */
static void check_line(const char *line, size_t n, bool first, Sigs *sigs)
{
    struct json_tokener *tok =
        json_tokener_new_ex(4096); /* ids echo 1024 deep */
    json_object *o, *v;
    int members = 0;

    if (!tok) {
        FAIL("out of memory");
    }
    if (memchr(line, '\n', n) || memchr(line, '\r', n)) {
        FAIL("reply line contains a bare CR or LF: %.*s", (int)n, line);
    }
    if (check_utf8 && !utf8_valid((const unsigned char *)line, n)) {
        FAIL("reply line is not valid UTF-8: %.*s", (int)n, line);
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, line, (int)n);
    if (!o || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != n) {
        FAIL("reply line is not one JSON value (%s): %.*s",
             json_tokener_error_desc(json_tokener_get_error(tok)), (int)n,
             line);
    }
    if (!json_object_is_type(o, json_type_object)) {
        FAIL("reply is not a JSON object: %.*s", (int)n, line);
    }
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        members++;
        if (strcmp(key, "return") && strcmp(key, "error") &&
            strcmp(key, "id") && !(first && !strcmp(key, "QMP"))) {
            FAIL("reply has member '%s': %.*s", key, (int)n, line);
        }
    }
    if (first) {
        if (!json_object_object_get_ex(o, "QMP", &v) || members != 1) {
            FAIL("first line is not the greeting: %.*s", (int)n, line);
        }
    } else if (json_object_object_get_ex(o, "error", &v)) {
        if (json_object_object_get_ex(o, "return", NULL) ||
            !json_object_is_type(v, json_type_object) ||
            !has_string(v, "class") || !has_string(v, "desc") ||
            json_object_object_length(v) != 2) {
            FAIL("malformed error reply: %.*s", (int)n, line);
        }
    } else if (!json_object_object_get_ex(o, "return", &v)) {
        FAIL("reply has neither 'return' nor 'error': %.*s", (int)n, line);
    }
    if (sigs) {
        sigs_add(sigs, o);
    }
    json_object_put(o);
    json_tokener_free(tok);
}

/* Drains and checks the client's output; *first: the greeting is next.
 * Each reply's signature goes to @sigs. */
static void drain(QmpClient *c, bool *first, Sigs *sigs)
{
    size_t len = 0, off = 0;
    char *out = qmp_client_take_output(c, &len);

    while (off < len) {
        const char *p = out + off;
        const char *end = memmem(p, len - off, "\r\n", 2);
        if (!end) {
            /* Only a client dropped for piling up output (16 MiB in
             * qmp.c) may stop mid-line; its socket would be closed. */
            if (len < 1024 * 1024) {
                FAIL("output ends without \"\\r\\n\": %.*s",
                     (int)(len - off > 200 ? 200 : len - off), p);
            }
            break;
        }
        check_line(p, (size_t)(end - p), *first, *first ? NULL : sigs);
        *first = false;
        off = (size_t)(end - out) + 2;
    }
    free(out);
}

/* ---- cleanup between inputs ---- */

static void destroy_iothreads(void)
{
    char *text = iot_thread_query_json();
    json_object *list;
    size_t n;

    if (!text) {
        FAIL("iot_thread_query_json failed");
    }
    list = json_tokener_parse(text);
    if (!list || !json_object_is_type(list, json_type_array)) {
        FAIL("iot_thread_query_json is not a JSON array: %s", text);
    }
    free(text);
    n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++) {
        json_object *idv;
        const char *id;
        IotThread *t;
        IotError *err = NULL;

        if (!json_object_object_get_ex(json_object_array_get_idx(list, i), "id",
                                       &idv)) {
            FAIL("IOThreadInfo without an id");
        }
        id = json_object_get_string(idv);
        t = iot_thread_find(id);
        if (!t) {
            FAIL("IOThread '%s' is listed but not found", id);
        }
        if (iot_thread_destroy(t, &err) < 0) {
            FAIL("cannot destroy IOThread '%s': %s", id,
                 iot_error_message(err));
        }
        iot_thread_unref(t);
    }
    json_object_put(list);

    text = iot_thread_query_json();
    if (!text || strcmp(text, "[]")) {
        FAIL("IOThreads left after cleanup: %s", text ? text : "(null)");
    }
    free(text);
}

/* ---- the target ---- */

/* Feeds @data to a new client, cut as its first byte says (@whole: in
 * one read), checks the output, and cleans up. */
static void run_input(const uint8_t *data, size_t size, bool whole, Sigs *sigs)
{
    const char *buf = (const char *)data;
    bool first = true;
    QmpClient *c;

    /* A server per run: "quit" ends a server's input for good. */
    srv = qmp_server_new(ctx);
    if (!srv || !(c = qmp_client_new(srv, -1))) {
        FAIL("qmp_server_new or qmp_client_new failed");
    }
    drain(c, &first, sigs); /* the greeting */
    if (first) {
        FAIL("no greeting");
    }
    if (size && whole) {
        qmp_client_input(c, buf, size);
    } else if (size) {
        unsigned b = data[0];
        if (b < 0x80) {
            size_t cut = (size_t)b * size / 128;
            qmp_client_input(c, buf, cut);
            drain(c, &first, sigs);
            qmp_client_input(c, buf + cut, size - cut);
        } else {
            size_t step = (b & 0x7f) + 1;
            for (size_t off = 0; off < size; off += step) {
                size_t n = size - off < step ? size - off : step;
                qmp_client_input(c, buf + off, n);
                drain(c, &first, sigs);
            }
        }
    }
    /* The end of the stream: a newline, in both runs.  Digits that end a
     * read are held until the byte after them (number_tail() in qmp.c),
     * so a reply that such a digit would provoke (the end of a literal
     * before it, a missing separator) comes with the next byte, and at
     * the end of the input there is none: "false" + "79" must answer as
     * "false79" does once more input comes. */
    drain(c, &first, sigs);
    qmp_client_input(c, "\n", 1);
    drain(c, &first, sigs);
    iot_ctx_poll(ctx, false);
    qmp_client_free(c);
    qmp_server_free(srv);
    srv = NULL;
    destroy_iothreads();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Sigs cut = { 0 }, whole = { 0 };

    run_input(data, size, false, &cut);
    if (size <= 1024 * 1024) {
        run_input(data, size, true, &whole);
        for (size_t i = 0; i < cut.n || i < whole.n; i++) {
            const char *a = i < cut.n ? cut.v[i] : "(none)";
            const char *b = i < whole.n ? whole.v[i] : "(none)";
            if (strcmp(a, b)) {
                FAIL("reply %zu differs: cut into reads \"%s\", whole \"%s\"",
                     i + 1, a, b);
            }
        }
    }
    sigs_free(&cut);
    sigs_free(&whole);
    return 0;
}
