/* SPDX-License-Identifier: MIT */
/*
 * An LD_PRELOAD shim that makes allocations fail, for test-oom.py.
 *
 *   OOM_FAIL_AT=N    the Nth call (counted from 1, in every thread) of
 *                    malloc, calloc, realloc, aligned_alloc, memalign or
 *                    posix_memalign fails (returns NULL / ENOMEM)
 *   OOM_FAIL_ALL=1   and every call after it too
 *   OOM_COUNT=PATH   at exit, write how many calls there were to PATH
 *                    (with OOM_FAIL_AT unset or 0, nothing fails)
 *
 * Only calls made by the program itself count and fail (with the static
 * libiothread in it), not those of its libraries; with OOM_JSONC=1 also
 * json-c's, but not inside its tokener, which does not survive its own
 * allocations failing (a NULL key reaches strlen()): that is json-c's
 * to fix, and what we test is how our code takes NULL from json-c.
 *
 * Calls made inside libc itself (strdup's, say) are not seen: they do not
 * go through the dynamic symbols.  Not for sanitizer builds, whose
 * runtimes replace malloc first.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
void *memalign(size_t align, size_t size); /* <malloc.h>'s, obsolete */

static atomic_long calls;
static long fail_at = -1; /* [constructor] 0: never */
static int fail_all;      /* [constructor] */
static int fail_jsonc;    /* [constructor] json-c's calls count too */
static _Thread_local int in_tokener;
/* [constructor] the program's own code and data: [main_lo, main_hi) */
static uintptr_t main_lo, main_hi;

static int find_main(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    /* The first object is the program itself. */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type != PT_LOAD) {
            continue;
        }
        if (!main_lo || lo < main_lo) {
            main_lo = lo;
        }
        if (lo + ph->p_memsz > main_hi) {
            main_hi = lo + ph->p_memsz;
        }
    }
    return 1;
}

__attribute__((constructor)) static void oom_init(void)
{
    const char *at = getenv("OOM_FAIL_AT");
    const char *all = getenv("OOM_FAIL_ALL");

    dl_iterate_phdr(find_main, NULL);
    fail_at = at ? atol(at) : 0;
    fail_all = all && *all == '1';
    fail_jsonc = getenv("OOM_JSONC") && *getenv("OOM_JSONC") == '1';
}

/* Is @pc in json-c (outside its tokener)? */
static int in_jsonc(uintptr_t pc)
{
    Dl_info info;

    return fail_jsonc && !in_tokener && dladdr((void *)pc, &info) &&
           info.dli_fname && strstr(info.dli_fname, "libjson-c");
}

/* json-c's tokener, called through these, allocates as usual. */
void *json_tokener_parse_ex(void *tok, const char *str, int len);
void *json_tokener_parse(const char *str);

void *json_tokener_parse_ex(void *tok, const char *str, int len)
{
    static void *(*real)(void *, const char *, int);
    void *r;

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "json_tokener_parse_ex");
    }
    in_tokener++;
    r = real(tok, str, len);
    in_tokener--;
    return r;
}

void *json_tokener_parse(const char *str)
{
    static void *(*real)(const char *);
    void *r;

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "json_tokener_parse");
    }
    in_tokener++;
    r = real(str);
    in_tokener--;
    return r;
}

__attribute__((destructor)) static void oom_fini(void)
{
    const char *path = getenv("OOM_COUNT");
    char buf[32];
    int fd, len;

    if (!path) {
        return;
    }
    len = snprintf(buf, sizeof(buf), "%ld\n", atomic_load(&calls));
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, buf, (size_t)len) != len) {
            /* the test then reads no count and fails */
        }
        close(fd);
    }
}

/* Does this call, made from @caller, fail? */
static int oom_check(void *caller)
{
    uintptr_t pc = (uintptr_t)caller;
    long n;

    if ((pc < main_lo || pc >= main_hi) && !in_jsonc(pc)) {
        return 0; /* a library's, or before the constructor ran */
    }
    n = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
    if (fail_at <= 0) {
        return 0; /* unarmed, or before the constructor ran */
    }
    return fail_all ? n >= fail_at : n == fail_at;
}

void *malloc(size_t size)
{
    return oom_check(__builtin_return_address(0)) ? NULL : __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    return oom_check(__builtin_return_address(0)) ? NULL
                                                  : __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    return oom_check(__builtin_return_address(0)) ? NULL
                                                  : __libc_realloc(p, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    return oom_check(__builtin_return_address(0))
               ? NULL
               : __libc_memalign(align, size);
}

void *memalign(size_t align, size_t size)
{
    return oom_check(__builtin_return_address(0))
               ? NULL
               : __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    void *p;

    if (oom_check(__builtin_return_address(0))) {
        return ENOMEM;
    }
    p = __libc_memalign(align, size);
    if (!p) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}
