# SPDX-License-Identifier: MIT
# The targets of shared/BENCH.md, checked on the medians of one run.
# Input: bench/run.sh's aggregated table, tab-separated:
#   workload impl metric median min max unit n
# -v quick=1: W6 idled 2 s instead of 5 s (its CPU bound is scaled).
# -v reps=FILE: each repetition's values (workload impl metric rep value);
# a ratio target then also shows the ratio within each repetition, whose
# two cells ran seconds apart, as its median and min..max.
BEGIN {
    if (reps != "") {
        while ((getline ln < reps) > 0) {
            split(ln, fld, "\t")
            rv[fld[1], fld[2], fld[3], fld[4]] = fld[5] + 0
            if (fld[4] + 0 > maxrep) maxrep = fld[4] + 0
        }
        close(reps)
    }
}

{
    key = $1 SUBSEP $2 SUBSEP $3
    med[key] = $4
    mx[key] = $6
}

# The median, or "" (and `missing` set) if it was not measured.
function g(w, i, m,   k) {
    k = w SUBSEP i SUBSEP m
    if (!(k in med)) { missing = 1; return "" }
    return med[k] + 0
}

# The best of the three peers: the smallest (lower is better) or largest.
function peer(w, m, lower,   cnt, k, p, v, best) {
    cnt = split("libuv libevent glib", p, " ")
    best = ""
    for (k = 1; k <= cnt; k++) {
        if (!((w SUBSEP p[k] SUBSEP m) in med)) continue
        v = med[w, p[k], m] + 0
        if (best == "" || (lower ? v < best : v > best)) { best = v; bestname = p[k] }
    }
    if (best == "") missing = 1
    return best
}

function fm(x) {
    if (x >= 1e6) return sprintf("%.2fM", x / 1e6)
    if (x >= 1e4) return sprintf("%.1fk", x / 1e3)
    if (x >= 100 || x == int(x)) return sprintf("%.0f", x)
    return sprintf("%.3g", x)
}

# The ratio a/b within each repetition, printed under a target's line.
function paired(wa, ia, ma, wb, ib, mb,   r, n, x, v, k, j, t) {
    n = 0
    for (r = 1; r <= maxrep; r++) {
        if (!((wa, ia, ma, r) in rv) || !((wb, ib, mb, r) in rv)) continue
        if (rv[wb, ib, mb, r] == 0) continue
        v[++n] = rv[wa, ia, ma, r] / rv[wb, ib, mb, r]
    }
    if (n < 2) return
    for (k = 2; k <= n; k++) {  # insertion sort
        t = v[k]; j = k - 1
        while (j >= 1 && v[j] > t) { v[j + 1] = v[j]; j-- }
        v[j + 1] = t
    }
    x = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    printf "    %-48s %.2fx (%.2f..%.2f, %d repetitions)\n",
        "paired by repetition:", x, v[1], v[n], n
}

# The largest value over the repetitions, or "" (and `missing` set).
function gmax(w, i, m,   k) {
    k = w SUBSEP i SUBSEP m
    if (!(k in mx)) { missing = 1; return "" }
    return mx[k] + 0
}

# A variant of a target, for information: judged, but not counted (BENCH.md
# states the target once).
function info(name, fig, ok) {
    if (missing) { fig = "not measured"; verdict = "(n/a)" }
    else verdict = ok ? "(met)" : "(missed)"
    printf "  %-50s %-58s %s\n", name, fig, verdict
    missing = 0
}

function line(name, fig, ok) {
    if (missing) { fig = "not measured"; verdict = "n/a" }
    else verdict = ok ? "met" : "MISSED"
    printf "  %-50s %-58s %s\n", name, fig, verdict
    missing = 0
    if (verdict == "met") nmet++
    if (verdict == "MISSED") nmissed++
}

END {
    print "targets of shared/BENCH.md (ratios of medians in this run):"

    a = g("W1", "iothread", "rtt_median_ns"); f = g("W1", "floor-polls", "rtt_median_ns")
    line("W1 default: median <= 1.5x polls floor",
         sprintf("%s ns vs %s ns: %.2fx", fm(a), fm(f), f ? a / f : 0), a <= 1.5 * f)
    paired("W1", "iothread", "rtt_median_ns", "W1", "floor-polls", "rtt_median_ns")
    p = peer("W1", "rtt_median_ns", 1)
    line("W1 default: >= 50x better than best peer",
         sprintf("%s ns vs %s %s ns: %.1fx", fm(a), bestname, fm(p), a ? p / a : 0), p >= 50 * a)
    a = g("W1", "iothread", "rtt_p99_ns"); f = g("W1", "floor-polls", "rtt_p99_ns")
    line("W1 default: p99 <= 5x polls floor's p99",
         sprintf("%s ns vs %s ns: %.1fx", fm(a), fm(f), f ? a / f : 0), a <= 5 * f)
    a = g("W1", "iothread-nopoll", "rtt_median_ns"); f = g("W1", "floor-eventfd", "rtt_median_ns")
    line("W1 poll-max-ns=0: median <= 1.1x eventfd floor",
         sprintf("%s ns vs %s ns: %.2fx", fm(a), fm(f), f ? a / f : 0), a <= 1.1 * f)
    paired("W1", "iothread-nopoll", "rtt_median_ns", "W1", "floor-eventfd", "rtt_median_ns")

    a = g("W2", "iothread", "posts_per_s"); u = g("W2", "libuv", "posts_per_s")
    # Nothing lost or run twice in any repetition, not on the median.
    l = gmax("W2", "iothread", "lost"); d = gmax("W2", "iothread", "dup")
    line("W2 1 producer: >= 1.5x libuv, nothing lost",
         sprintf("%s/s vs %s/s: %.2fx, lost %d, dup %d", fm(a), fm(u), u ? a / u : 0, l, d),
         a >= 1.5 * u && l == 0 && d == 0)
    paired("W2", "iothread", "posts_per_s", "W2", "libuv", "posts_per_s")

    a = g("W3", "iothread", "rt_per_s"); p = peer("W3", "rt_per_s", 0)
    line("W3 polling on (default backend): >= 3x peer",
         sprintf("%s/s vs %s %s/s: %.2fx", fm(a), bestname, fm(p), p ? a / p : 0), a >= 3 * p)
    paired("W3", "iothread", "rt_per_s", "W3", bestname, "rt_per_s")
    a = g("W3-epoll-iopoll", "iothread", "rt_per_s"); p = peer("W3", "rt_per_s", 0)
    info("  (same, epoll + an io_poll on the pipes)",
         sprintf("%s/s vs %s %s/s: %.2fx", fm(a), bestname, fm(p), p ? a / p : 0), a >= 3 * p)

    a = g("W4", "iothread", "arm_ns"); u = g("W4", "libuv", "arm_ns")
    line("W4 arm <= 1.2x libuv",
         sprintf("%s ns vs %s ns: %.2fx", fm(a), fm(u), u ? a / u : 0), a <= 1.2 * u)
    paired("W4", "iothread", "arm_ns", "W4", "libuv", "arm_ns")
    a = g("W4", "iothread", "late_median_ns"); b = g("W4", "iothread", "late_p99_ns")
    line("W4 late median <= 20 us, p99 <= 100 us",
         sprintf("median %s ns, p99 %s ns", fm(a), fm(b)), a <= 20000 && b <= 100000)

    a = g("W5", "iothread", "items_per_s"); u = g("W5", "libuv", "items_per_s")
    line("W5 >= 2x libuv",
         sprintf("%s/s vs %s/s: %.2fx", fm(a), fm(u), u ? a / u : 0), a >= 2 * u)
    paired("W5", "iothread", "items_per_s", "W5", "libuv", "items_per_s")

    a = g("W6", "iothread", "idle_cpu_ms"); b = g("W6", "iothread", "idle_wakeups")
    lim = quick ? 0.4 : 1
    line(sprintf("W6 idle %d s: CPU <= %.1f ms, 0 wake-ups", quick ? 2 : 5, lim),
         sprintf("%.3f ms, %d wake-ups", a, b), a <= lim && b == 0)

    a = g("W7-5us", "iothread", "latency_median_ns"); f = g("W7-5us", "floor-polls", "latency_median_ns")
    line("W7 5 us gaps: latency <= 2x polling floor",
         sprintf("%s ns vs %s ns: %.2fx", fm(a), fm(f), f ? a / f : 0), a <= 2 * f)
    paired("W7-5us", "iothread", "latency_median_ns", "W7-5us", "floor-polls", "latency_median_ns")
    a = g("W7-5ms", "iothread", "cpu_share")
    line("W7 5 ms gaps: loop CPU <= 2%", sprintf("%.2f %%", a), a <= 2)

    a = g("scale", "iothread", "create_destroy_us")
    line("scale: IOThread create+destroy <= 100 us",
         sprintf("%s us (default backend)", fm(a)), a <= 100)
    split("poll epoll io_uring", bk, " ")
    for (k = 1; k <= 3; k++) {
        a = g("scale", "iothread", "create_destroy_us_" bk[k])
        info("  (same, " bk[k] ")", sprintf("%s us", fm(a)), a <= 100)
    }
    # What the kernel alone costs a short-lived thread, for the io_uring line.
    fa = g("scale", "floor-futex", "create_destroy_us")
    fb = g("scale", "floor-futex", "create_destroy_us_io_uring")
    if (fa != "" && fb != "")
        printf "    kernel floor: a bare thread %s us, one that submits one io_uring NOP %s us\n", fm(fa), fm(fb)
    missing = 0 # an information line: a floor not run is no target's loss
    # The kernel's own cost grows a little with 10k fds (cache): libuv's
    # epoll loop is the reference; poll(2) is O(fds) by nature.
    ua = g("scale", "libuv", "iter_ns_1kfds"); ub = g("scale", "libuv", "iter_ns_10kfds")
    ur = ua ? ub / ua : 0
    missing = 0
    for (k = 2; k <= 3; k++) {
        a = g("scale", "iothread", "iter_ns_1kfds_" bk[k])
        b = g("scale", "iothread", "iter_ns_10kfds_" bk[k])
        line("scale: " bk[k] " iteration independent of idle fds",
             sprintf("100 ready of 1k fds %s ns, of 10k %s ns: %.2fx (libuv %.2fx)",
                     fm(a), fm(b), a ? b / a : 0, ur),
             b <= 1.25 * a || b / a <= 1.1 * ur)
    }
    printf "  %d met, %d missed\n", nmet, nmissed
}
