#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Builds the libFuzzer targets and runs them for a while.
#
#   tests/fuzz/run.sh [SECONDS]      (default 60)
#
#   fuzz-qmp     iothreadd's QMP input path, SECONDS seconds, starting
#                from a copy of tests/fuzz/corpus-qmp;
#   fuzz-keyval  the command-line parser, min(SECONDS, 10) seconds.
#
# Everything is built and run in a scratch directory (the repository is
# never written to).  It is removed when all is clean and kept otherwise,
# with the crashing inputs in its artifacts/ directory; reproduce one with
#   SCRATCH/fuzz-qmp SCRATCH/artifacts/crash-...
# and minimise it with
#   SCRATCH/fuzz-qmp -minimize_crash=1 -runs=100000 SCRATCH/artifacts/crash-...
# A crash, a leak, a timeout (-timeout=10 per input), exceeding
# -rss_limit_mb=2048 or a build failure counts as a failure.  The last line
# is "fuzz: N passed, N failed", one per target; the exit status is 0 only
# if nothing failed.
#
# Environment: CC (default clang, must support -fsanitize=fuzzer),
# FUZZ_KEEP=1 keeps the scratch directory even when clean, FUZZ_JOBS
# (default: nproc) parallel compiles.  Extra libFuzzer flags for fuzz-qmp
# can be given in FUZZ_QMP_FLAGS (e.g. "-only_ascii=1").

set -u

secs=${1:-60}
case $secs in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac
keyval_secs=$((secs < 10 ? secs : 10))
[ "$keyval_secs" -ge 1 ] || keyval_secs=1
[ "$secs" -ge 1 ] || secs=1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
CC=${CC:-clang}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

passed=0
failed=0
work=

# Removes the scratch directory if all is clean (else says where it is),
# then prints the result line, last.
result() {
    trap - EXIT
    if [ -n "$work" ]; then
        if [ "$failed" -eq 0 ] && [ "${FUZZ_KEEP:-0}" != 1 ]; then
            rm -rf "$work"
        else
            echo "fuzz: scratch directory kept: $work"
        fi
    fi
    echo "fuzz: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

work=$(mktemp -d "${TMPDIR:-/tmp}/iothread-fuzz.XXXXXX") || {
    echo "fuzz: cannot create a scratch directory" >&2
    work=
    failed=1
    result
    exit 1
}
# Interrupted or died: a failure; the scratch directory is kept.
trap 'failed=$((failed + 1)); result' EXIT
trap 'exit 130' INT TERM

# ---- build ----

build() {
    local json_cflags json_libs src obj t running=0 bad=0
    local -a common objs=()
    if ! command -v "$CC" >/dev/null 2>&1; then
        echo "fuzz: '$CC' not found" >&2
        return 1
    fi
    if ! json_cflags=$(pkg-config --cflags json-c) ||
        ! json_libs=$(pkg-config --libs json-c); then
        echo "fuzz: json-c not found by pkg-config" >&2
        return 1
    fi
    # No IOT_HAVE_GLIB: src/glib.c is left out.
    # shellcheck disable=SC2054,SC2206
    common=(-std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
        -fsanitize=address,undefined -fno-sanitize-recover=all -pthread
        -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
        "-I$top/include" "-I$top/src" "-I$top/daemon" $json_cflags)
    mkdir -p "$work/obj"
    for src in "$top"/src/*.c "$top"/daemon/qmp.c "$top"/daemon/qmp-cmds.c \
        "$top"/daemon/cmdline.c; do
        [ "$(basename "$src")" = glib.c ] && continue
        obj=$work/obj/$(basename "$(dirname "$src")")-$(basename "$src" .c).o
        objs+=("$obj")
        "$CC" "${common[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then
            wait -n || bad=1
            running=$((running - 1))
        fi
    done
    while [ "$running" -gt 0 ]; do
        wait -n || bad=1
        running=$((running - 1))
    done
    [ "$bad" -eq 0 ] || return 1
    for t in fuzz-qmp fuzz-keyval; do
        [ -f "$here/$t.c" ] || continue
        # shellcheck disable=SC2086
        "$CC" "${common[@]}" -Werror -fsanitize=fuzzer "$here/$t.c" \
            "${objs[@]}" $json_libs -o "$work/$t" || return 1
    done
}

echo "== fuzz: building with $CC in $work"
if ! build >"$work/build.log" 2>&1; then
    cat "$work/build.log"
    echo "!! fuzz: build failed"
    failed=1
    result
    exit 1
fi
grep -aE 'warning:' "$work/build.log" || true

# ---- run ----

# A dictionary of QMP's vocabulary: command, member and property names.
cat >"$work/qmp.dict" <<'EOF'
"{"
"}"
"["
"]"
":"
","
"\x0a"
"\x0d\x0a"
"\"execute\""
"\"arguments\""
"\"id\""
"\"enable\""
"\"qmp_capabilities\""
"\"query-version\""
"\"query-commands\""
"\"quit\""
"\"query-iothreads\""
"\"query-iothread-stats\""
"\"object-add\""
"\"object-del\""
"\"qom-get\""
"\"qom-set\""
"\"qom-list\""
"\"qom-list-properties\""
"\"qom-type\""
"\"iothread\""
"\"path\""
"\"property\""
"\"value\""
"\"typename\""
"\"type\""
"\"/objects\""
"\"/objects/io0\""
"\"io0\""
"\"poll-max-ns\""
"\"poll-grow\""
"\"poll-shrink\""
"\"aio-max-batch\""
"\"thread-pool-min\""
"\"thread-pool-max\""
"\"cpu-affinity\""
"\"0-1\""
"true"
"false"
"null"
"9223372036854775807"
"9223372036854775808"
"18446744073709551616"
"-9223372036854775809"
"2147483648"
"1e400"
"-1"
"1.5"
"\"\\u0000\""
"\"\\ud83d\\ude00\""
EOF

# run NAME SECONDS CORPUS [libFuzzer flags...]: one target; 0 if clean.
run() {
    local name=$1 t=$2 corpus=$3 rc f
    shift 3
    mkdir -p "$work/artifacts"
    echo "== fuzz: $name for ${t}s"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
        timeout --kill-after=30 $((t + 120)) \
        "$work/$name" "$corpus" "$@" \
        -max_total_time="$t" -timeout=10 -rss_limit_mb=2048 \
        -detect_leaks=1 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$name-" \
        >"$work/$name.log" 2>&1
    rc=$?
    # Progress lines are many; show the start, the end and any report.
    grep -aE '^(INFO: Loaded|INFO: seed corpus|#[0-9]+[[:space:]]+INITED)' \
        "$work/$name.log" | sed 's/^/   /'
    grep -aE '^#[0-9]+[[:space:]]+DONE|^stat::|^Done [0-9]+ runs' \
        "$work/$name.log" | sed 's/^/   /'
    if [ "$rc" -ne 0 ] || compgen -G "$work/artifacts/$name-*" >/dev/null; then
        echo "!! fuzz: $name failed (exit $rc); its output:"
        grep -avE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' \
            "$work/$name.log" | tail -n 80
        for f in "$work/artifacts/$name-"*; do
            [ -e "$f" ] && echo "   artifact: $f"
        done
        return 1
    fi
    echo "   $name: clean"
}

mkdir -p "$work/corpus-qmp" "$work/corpus-keyval"
cp "$here"/corpus-qmp/* "$work/corpus-qmp/" 2>/dev/null
# shellcheck disable=SC2086
if run fuzz-qmp "$secs" "$work/corpus-qmp" -max_len=65536 \
    -dict="$work/qmp.dict" ${FUZZ_QMP_FLAGS:-}; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

if [ -x "$work/fuzz-keyval" ]; then
    # Seeds: mode byte, then the text (see fuzz-keyval.c).
    printf '\001iothread,id=io0,poll-max-ns=0' >"$work/corpus-keyval/object"
    printf '\000a=1,b=x,,y,c=' >"$work/corpus-keyval/plain"
    printf '\002socket,id=c0,path=/tmp/a,,b.sock,server=on,wait=off' \
        >"$work/corpus-keyval/chardev"
    printf '\003o:iothread,id=io0\no:iothread,id=io1,thread-pool-max=4\nc:socket,id=m,path=/tmp/q.sock,server=on,wait=off\nm:chardev=m,mode=control\n--qmp\n/tmp/x.sock\n--pidfile\n/tmp/p\n-hV' \
        >"$work/corpus-keyval/cmdline"
    printf '\003o:iothread,id=io0\no:iothread,id=io0\n-Xh\n--object\n' \
        >"$work/corpus-keyval/cmdline-errors"
    cat >"$work/keyval.dict" <<'EOF'
","
",,"
"="
"\x0a"
"o:"
"c:"
"m:"
"iothread"
"id="
"qom-type="
"poll-max-ns="
"poll-grow="
"poll-shrink="
"aio-max-batch="
"thread-pool-min="
"thread-pool-max="
"cpu-affinity="
"0x10"
"-1"
"9223372036854775808"
"socket"
"backend="
"path="
"server=on"
"wait=off"
"chardev="
"mode=control"
"pretty=on"
"--object"
"--chardev"
"--monitor"
"--qmp"
"--pidfile"
"--daemonize"
"--help"
"-h"
"-V"
EOF
    if run fuzz-keyval "$keyval_secs" "$work/corpus-keyval" -max_len=4096 \
        -dict="$work/keyval.dict"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
fi

result
