/* SPDX-License-Identifier: MIT */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct TestCase {
    const char *path;
    TestFunc *fn;
    const char *abort_needle; /* non-NULL: must abort with this on stderr */
} TestCase;

static TestCase *cases;
static size_t ncases, cap;

static void add(const char *path, TestFunc *fn, const char *needle)
{
    if (ncases == cap) {
        cap = cap ? cap * 2 : 64;
        cases = realloc(cases, cap * sizeof(*cases));
        if (!cases) {
            abort();
        }
    }
    cases[ncases++] = (TestCase){ path, fn, needle };
}

void t_add(const char *path, TestFunc *fn)
{
    add(path, fn, NULL);
}

void t_add_abort(const char *path, TestFunc *fn, const char *needle)
{
    add(path, fn, needle);
}

bool t_long(void)
{
    const char *s = getenv("IOT_TEST_LONG");
    return s && *s && strcmp(s, "0");
}

long t_scale(long quick, long slow_divisor)
{
    const char *s = getenv("IOT_TEST_SLOW");
    return s && *s && strcmp(s, "0") ? quick / slow_divisor : quick;
}

void t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

#define T_SKIP_EXIT 77 /* automake's "skipped" */
#define T_SKIP_TAG  "T_SKIP: "

void t_skip(const char *fmt, ...)
{
    va_list ap;

    fputs(T_SKIP_TAG, stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    /* exit(), as a passing case: the sanitizers still check what ran. */
    exit(T_SKIP_EXIT);
}

/* The reason a skipped case gave (its last T_SKIP_TAG line), into @why. */
static void skip_reason(const char *err, char *why, size_t wlen)
{
    const char *tag = NULL, *end;

    for (const char *p = err; p && (p = strstr(p, T_SKIP_TAG)); p++) {
        tag = p;
    }
    if (!tag) {
        snprintf(why, wlen, "SKIP");
        return;
    }
    tag += strlen(T_SKIP_TAG);
    end = strchr(tag, '\n');
    snprintf(why, wlen, "SKIP %.*s", (int)(end ? end - tag : (long)strlen(tag)),
             tag);
}

int64_t t_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

bool t_thread_sleeping(int tid)
{
    char path[64], buf[512];
    FILE *f;
    size_t n;
    char *p;

    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    f = fopen(path, "r");
    if (!f) {
        return false;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what the child writes to stderr, echoing it, until it closes. */
typedef struct Captured {
    char *buf;
    size_t len;
} Captured;

static void capture(int fd, Captured *c)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));

    if (n <= 0) {
        return;
    }
    fwrite(tmp, 1, (size_t)n, stderr);
    c->buf = realloc(c->buf, c->len + (size_t)n + 1);
    memcpy(c->buf + c->len, tmp, (size_t)n);
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
}

typedef enum { CASE_FAILED, CASE_PASSED, CASE_SKIPPED } CaseResult;

/* Runs one case in a child. */
static CaseResult run_case(const TestCase *tc, int timeout_s, char *why,
                           size_t wlen)
{
    int pipefd[2], status = 0;
    Captured cap_err = { NULL, 0 };
    int64_t deadline = now_ms() + timeout_s * 1000LL;
    bool open_ = true, exited = false, ok;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    if (pipe(pipefd) < 0) {
        snprintf(why, wlen, "pipe: %s", strerror(errno));
        return CASE_FAILED;
    }
    pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        close(pipefd[1]);
        tc->fn();
        /* exit(), not _exit(): the sanitizers' leak check and TSan's
         * exit code on a report run from exit handlers. */
        exit(0);
    }
    close(pipefd[1]);
    while (!exited) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(why, wlen, "timed out after %d s", timeout_s);
            close(pipefd[0]);
            free(cap_err.buf);
            return CASE_FAILED;
        }
        if (open_) {
            struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
            if (poll(&p, 1, left > 100 ? 100 : (int)left) > 0) {
                size_t before = cap_err.len;
                capture(pipefd[0], &cap_err);
                if (cap_err.len == before) {
                    open_ = false;
                }
            }
        } else {
            struct timespec ts = { 0, 200 * 1000 };
            nanosleep(&ts, NULL);
        }
        exited = waitpid(pid, &status, WNOHANG) == pid;
    }
    /* Drain what is left. */
    for (;;) {
        size_t before = cap_err.len;
        struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
        if (poll(&p, 1, 0) <= 0) {
            break;
        }
        capture(pipefd[0], &cap_err);
        if (cap_err.len == before) {
            break;
        }
    }
    close(pipefd[0]);

    if (tc->abort_needle) {
        ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT &&
             cap_err.buf && strstr(cap_err.buf, tc->abort_needle);
        if (!ok) {
            snprintf(why, wlen, "expected an abort saying \"%s\"",
                     tc->abort_needle);
        }
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == T_SKIP_EXIT) {
        skip_reason(cap_err.buf, why, wlen);
        free(cap_err.buf);
        return CASE_SKIPPED;
    } else {
        ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && WIFSIGNALED(status)) {
            snprintf(why, wlen, "killed by signal %d", WTERMSIG(status));
        } else if (!ok) {
            snprintf(why, wlen, "exit status %d", WEXITSTATUS(status));
        }
    }
    free(cap_err.buf);
    return ok ? CASE_PASSED : CASE_FAILED;
}

int t_run(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *tmo = getenv("IOT_TEST_TIMEOUT");
    int timeout_s = tmo ? atoi(tmo) : 60;
    unsigned passed = 0, failed = 0, skipped = 0, n = 0;

    if (timeout_s <= 0) {
        timeout_s = 60;
    }
    for (size_t i = 0; i < ncases; i++) {
        if (!filter || !strncmp(cases[i].path, filter, strlen(filter))) {
            n++;
        }
    }
    printf("TAP version 13\n1..%u\n", n);
    n = 0;
    for (size_t i = 0; i < ncases; i++) {
        char why[256] = "";
        int64_t t0;

        if (filter && strncmp(cases[i].path, filter, strlen(filter))) {
            continue;
        }
        t0 = now_ms();
        switch (run_case(&cases[i], timeout_s, why, sizeof(why))) {
        case CASE_PASSED:
            passed++;
            printf("ok %u %s # %" PRId64 " ms\n", ++n, cases[i].path,
                   now_ms() - t0);
            break;
        case CASE_SKIPPED:
            skipped++;
            printf("ok %u %s # %s\n", ++n, cases[i].path, why);
            break;
        default:
            failed++;
            printf("not ok %u %s # %s\n", ++n, cases[i].path, why);
        }
        fflush(stdout);
    }
    if (skipped) {
        printf("# %u skipped\n", skipped);
    }
    printf("# %u passed, %u failed\n", passed, failed);
    free(cases);
    return failed ? 1 : 0;
}
