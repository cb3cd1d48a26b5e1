/* SPDX-License-Identifier: MIT */
/*
 * iot-bench: runs one workload on one implementation and prints records
 *   R <tab> workload <tab> impl <tab> metric <tab> value <tab> unit
 * on stdout (bench/run.sh runs it many times and aggregates).
 *
 *   iot-bench [options] WORKLOAD IMPL
 *   iot-bench --list
 *
 * WORKLOAD: W1 W1-reused W2 W3 W4 W5 W6 W7 scale
 * options:
 *   --quick           smaller counts (make bench QUICK=1)
 *   --producers=N     W2: N producer threads (workload W2-Np)
 *   --gap-ns=NS       W7: mean gap between posts (workload W7-5us...)
 *   --fdmon=NAME      iothread: IOTHREAD_FDMON=NAME (poll, epoll,
 *                     io_uring); W3 is then named W3-NAME, and scale's
 *                     metrics get a _NAME suffix; the floors take
 *                     io_uring only: each loop thread submits one NOP
 *                     (the kernel's per-thread io_uring context)
 *   --iopoll          W3: iothread fd handlers get an io_poll (W3-iopoll)
 *   --dist=FILE       write the latency CDF (W1, W7) to FILE
 *   --timeout=S       bound of every wait (default 60 s)
 * Exit status: 0 done, 2 not applicable, 3 failed or timed out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

static const bimpl *const impls[] = {
    &bench_iothread,      &bench_iothread_nopoll,
    &bench_libuv,         &bench_libevent,
    &bench_glib,          &bench_floor_spin,
    &bench_floor_polls,   &bench_floor_futex,
    &bench_floor_eventfd, &bench_floor_pipes,
};

const bimpl *bench_impl_find(const char *name)
{
    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        if (!strcmp(impls[i]->name, name)) {
            return impls[i];
        }
    }
    return NULL;
}

void bench_impl_list(void)
{
    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        printf("%s\n", impls[i]->name);
    }
}

static const char *opt(const char *arg, const char *name)
{
    size_t len = strlen(name);

    return !strncmp(arg, name, len) && arg[len] == '=' ? arg + len + 1 : NULL;
}

int main(int argc, char **argv)
{
    const char *pos[2];
    int npos = 0;
    const bimpl *impl;
    struct rlimit rl;
    static char variant[64];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    cfg.ncpu = ncpu > 0 ? (int)ncpu : 1;
    for (int i = 1; i < argc; i++) {
        const char *v;

        if (!strcmp(argv[i], "--list")) {
            bench_impl_list();
            return 0;
        } else if (!strcmp(argv[i], "--quick")) {
            cfg.quick = true;
        } else if (!strcmp(argv[i], "--iopoll")) {
            cfg.flags |= BFD_IOPOLL;
            cfg.variant = "iopoll";
        } else if ((v = opt(argv[i], "--producers"))) {
            cfg.producers = atoi(v);
        } else if ((v = opt(argv[i], "--gap-ns"))) {
            cfg.gap_ns = atoll(v);
        } else if ((v = opt(argv[i], "--fdmon"))) {
            cfg.fdmon = v;
        } else if ((v = opt(argv[i], "--dist"))) {
            cfg.dist = v;
        } else if ((v = opt(argv[i], "--timeout"))) {
            cfg.timeout_s = atof(v);
        } else if (argv[i][0] != '-' && npos < 2) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "usage: iot-bench [options] WORKLOAD IMPL\n");
            return 1;
        }
    }
    if (npos != 2) {
        fprintf(stderr, "usage: iot-bench [options] WORKLOAD IMPL\n");
        return 1;
    }
    impl = bench_impl_find(pos[1]);
    if (!impl) {
        fprintf(stderr, "unknown implementation '%s'\n", pos[1]);
        return 1;
    }
    if (cfg.fdmon) {
        /* Read by the library when a context is created; set before any
         * thread exists. */
        setenv("IOTHREAD_FDMON", cfg.fdmon, 1);
        if (!cfg.variant) {
            cfg.variant = cfg.fdmon;
        } else {
            snprintf(variant, sizeof(variant), "%s-%s", cfg.fdmon, cfg.variant);
            cfg.variant = variant;
        }
    }
    /* 10k fds for scale. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return run_workload(pos[0], impl);
}
