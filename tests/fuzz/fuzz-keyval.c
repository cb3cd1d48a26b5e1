/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: iothreadd's command-line parsing (daemon/cmdline.c).
 *
 * The first byte picks the mode; the rest (up to a NUL) is the text.
 *   b % 4 == 0..2  cfg_keyval() with implied key NULL, "qom-type" or
 *                  "backend", and a round-trip check: re-encoding the pairs
 *                  as "k=v,k=v" (',' doubled) must parse to the same pairs;
 *                  a failure must come with a message.
 *   b % 4 == 3     cfg_parse() on argv = {"iothreadd", lines of the text...}
 *                  (at most 64 words), then cfg_free().  Lines starting
 *                  with "o:" become "--object", "c:" "--chardev",
 *                  "m:" "--monitor", so that valid combinations are easy
 *                  to reach.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmdline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                              \
    do {                                                                       \
        fprintf(stderr, "fuzz-keyval: " __VA_ARGS__);                          \
        fputc('\n', stderr);                                                   \
        abort();                                                               \
    } while (0)

typedef struct Pairs {
    char **kv; /* key, value, key, value... */
    size_t n;  /* strings in kv */
} Pairs;

static int record(void *opaque, const char *key, const char *value, char **msg)
{
    Pairs *p = opaque;
    char **kv = realloc(p->kv, (p->n + 2) * sizeof(*kv));

    (void)msg;
    if (!kv) {
        FAIL("out of memory");
    }
    p->kv = kv;
    p->kv[p->n] = strdup(key);
    p->kv[p->n + 1] = strdup(value);
    if (!p->kv[p->n] || !p->kv[p->n + 1]) {
        FAIL("out of memory");
    }
    p->n += 2;
    return 0;
}

static void pairs_free(Pairs *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->kv[i]);
    }
    free(p->kv);
}

/* Appends @s with ',' doubled. */
static char *escape_into(char *out, const char *s)
{
    for (; *s; s++) {
        *out++ = *s;
        if (*s == ',') {
            *out++ = ',';
        }
    }
    return out;
}

static char *encode(const Pairs *p)
{
    size_t len = 1;
    char *buf, *o;

    for (size_t i = 0; i < p->n; i++) {
        len += 2 * strlen(p->kv[i]) + 1;
    }
    o = buf = malloc(len);
    if (!buf) {
        FAIL("out of memory");
    }
    for (size_t i = 0; i < p->n; i += 2) {
        if (i) {
            *o++ = ',';
        }
        o = escape_into(o, p->kv[i]);
        *o++ = '=';
        o = escape_into(o, p->kv[i + 1]);
    }
    *o = '\0';
    return buf;
}

static void fuzz_keyval(const char *spec, const char *implied)
{
    Pairs a = { 0 }, b = { 0 };
    char *msg = NULL, *again;
    int ret = cfg_keyval(spec, implied, record, &a, &msg);

    if (ret < 0) {
        if (!msg) {
            FAIL("cfg_keyval failed without a message on '%s'", spec);
        }
        free(msg);
        pairs_free(&a);
        return;
    }
    if (ret != 0 || msg || a.n == 0) {
        FAIL("cfg_keyval returned %d, msg %s, %zu pairs on '%s'", ret,
             msg ? msg : "(none)", a.n / 2, spec);
    }
    for (size_t i = 0; i < a.n; i += 2) {
        if (!*a.kv[i] || strchr(a.kv[i], '=')) {
            FAIL("bad key '%s' from '%s'", a.kv[i], spec);
        }
    }
    again = encode(&a);
    if (cfg_keyval(again, implied, record, &b, &msg) != 0) {
        FAIL("'%s' (re-encoded from '%s') does not parse: %s", again, spec,
             msg ? msg : "(no message)");
    }
    if (a.n != b.n) {
        FAIL("'%s' gives %zu pairs, its re-encoding '%s' %zu", spec, a.n / 2,
             again, b.n / 2);
    }
    for (size_t i = 0; i < a.n; i++) {
        if (strcmp(a.kv[i], b.kv[i])) {
            FAIL("'%s' and its re-encoding '%s' differ at '%s' / '%s'", spec,
                 again, a.kv[i], b.kv[i]);
        }
    }
    free(again);
    pairs_free(&a);
    pairs_free(&b);
}

static void fuzz_cmdline(char *text)
{
    char *argv[66];
    char *owned[65];
    int argc = 0, nowned = 0;
    DaemonConfig cfg;
    char *msg = NULL;
    int ret;

    argv[argc++] = (char *)"iothreadd";
    for (char *line = *text ? text : NULL; line && argc < 65;) {
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
        }
        if (line[0] && line[1] == ':' &&
            (line[0] == 'o' || line[0] == 'c' || line[0] == 'm')) {
            argv[argc++] = line[0] == 'o'   ? (char *)"--object"
                           : line[0] == 'c' ? (char *)"--chardev"
                                            : (char *)"--monitor";
            line += 2;
            if (argc >= 65) {
                break;
            }
        }
        /* Each word in its own allocation, as ASan likes it. */
        owned[nowned] = strdup(line);
        if (!owned[nowned]) {
            FAIL("out of memory");
        }
        argv[argc++] = owned[nowned++];
        line = nl ? nl + 1 : NULL;
    }
    argv[argc] = NULL;

    /* cfg_parse() restarts getopt with optind = 1, which keeps glibc's
     * pointer into the previous call's argv (freed here) when that call
     * stopped inside a cluster of short options.  Reset getopt fully
     * first; see tests/fuzz/crashes/README.md. */
    optind = 0;
    opterr = 0;
    (void)getopt(1, (char *[]){ (char *)"reset", NULL }, "");

    ret = cfg_parse(argc, argv, &cfg, &msg);
    if (ret < 0 && !msg) {
        FAIL("cfg_parse failed without a message");
    }
    if (ret == 0 && msg) {
        FAIL("cfg_parse succeeded with a message: %s", msg);
    }
    if (ret == 0) {
        for (size_t i = 0; i < cfg.nobjects; i++) {
            if (!cfg.objects[i].id || !cfg.objects[i].props) {
                FAIL("object %zu without id or properties", i);
            }
        }
        for (size_t i = 0; i < cfg.nchardevs; i++) {
            if (!cfg.chardevs[i].id || !cfg.chardevs[i].path) {
                FAIL("chardev %zu without id or path", i);
            }
        }
    }
    free(msg);
    cfg_free(&cfg);
    for (int i = 0; i < nowned; i++) {
        free(owned[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const implied[] = { NULL, "qom-type", "backend" };
    char *text;

    if (size == 0 || size > 4096) {
        return 0;
    }
    text = strndup((const char *)data + 1, size - 1);
    if (!text) {
        FAIL("out of memory");
    }
    if (data[0] % 4 == 3) {
        fuzz_cmdline(text);
    } else {
        fuzz_keyval(text, implied[data[0] % 4]);
    }
    free(text);
    return 0;
}
