#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Model-check the notify handshake (docs/spin/notify.promela) and the
# thread pool's wake-up (docs/spin/pool.promela) with Spin.
#
#   tests/spin/run.sh [path/to/notify.promela [path/to/pool.promela]]
#
# Checks of the notify handshake:
#   - the correct protocol: no lost wake-up / invalid end state, every BH
#     runs (safety run), and <> all BHs ran (liveness run);
#   - SKIP_EVENT_WRITE_XCHG, the atomic form of the skip optimisation: no
#     error either;
#   - BUG_NO_RECHECK and BUG_SKIP_EVENT_WRITE: Spin must report the lost
#     wake-up (an invalid end state), proving the model can see the bug;
#   - work published with a plain (buffered) store before the public
#     iot_ctx_notify(): clean with its fence, a lost wake-up without it
#     (BUG_NOTIFY_NO_FENCE), and clean again without the fence when the
#     fast path is gone too (the control: the fence is the fast path's);
#   - the wait that drains (a blocking read(2) of the eventfd): clean, in
#     safety and liveness;
#   - GLib's prepare, which takes a kick-less notification and then looks
#     at the work: clean in safety and liveness, and a lost wake-up if it
#     takes the notification before raising its bit (BUG_GLIB_ACCEPT_FIRST)
#     or looks at part of the work before taking it (BUG_GLIB_LOOK_FIRST);
#     with an iteration of the context between prepare and GLib's poll
#     (GLIB_NESTED_POLL): clean, and a lost wake-up if that iteration
#     clears prepare's bit (BUG_GLIB_NESTED_CLEARS_BIT).
# Checks of the pool's wake-up: the protocol is clean; without the idle
# worker's second look at the ring (POOL_BUG_NO_RECHECK), with the
# submitter loading the idle count before it publishes
# (POOL_BUG_LOAD_FIRST), or without the second look of a worker leaving
# on its idle timeout (POOL_BUG_TIMEOUT_NO_RECHECK), Spin must report the
# lost wake-up.
# Exits non-zero on any unexpected result.  Needs spin and a C compiler.

set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model=${1:-$here/../../docs/spin/notify.promela}
pool_model=${2:-$here/../../docs/spin/pool.promela}
CC=${CC:-gcc}
DEPTH=100000            # the correct model needs < 200 steps
HASH=20                 # 2^20 hash slots: plenty for < 100k states
PAN_LIMIT=${PAN_LIMIT:-300} # seconds for one verifier run (each takes < 2)

for m in "$model" "$pool_model"; do
    if [ ! -r "$m" ]; then
        echo "spin: cannot read model '$m'" >&2
        exit 2
    fi
done
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
pool_model=$(cd "$(dirname "$pool_model")" && pwd)/$(basename "$pool_model")
proc=loop               # the proctype that must be reachable in full
for tool in spin "$CC"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "spin: '$tool' not found" >&2
        exit 2
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/notify-spin.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT

passed=0
failed=0

# run_pan NAME MODE [spin -D flags...]
#   MODE: safety | liveness   selects the pan build and search.
# Leaves pan's output in $work/NAME.out; prints nothing.  Returns non-zero
# if the verifier could not be built or run.
run_pan() {
    local name=$1 mode=$2
    shift 2
    local dir=$work/$name
    mkdir -p "$dir"
    (
        cd "$dir" || exit 1
        spin -a "$@" "$model" >spin.log 2>&1 || { cat spin.log; exit 1; }
        if [ "$mode" = safety ]; then
            "$CC" -O2 -w -DSAFETY -o pan pan.c >cc.log 2>&1 \
                || { cat cc.log; exit 1; }
            timeout -k 5 "$PAN_LIMIT" ./pan -m$DEPTH -w$HASH
        else
            "$CC" -O2 -w -o pan pan.c >cc.log 2>&1 \
                || { cat cc.log; exit 1; }
            timeout -k 5 "$PAN_LIMIT" ./pan -a -m$DEPTH -w$HASH
        fi
    ) >"$work/$name.out" 2>&1
}

summary() {     # "N states, depth D, errors: E" from a pan output
    local out=$1 states depth errors
    states=$(awk '/states, stored/ { print $1; exit }' "$out")
    depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | head -n1)
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | head -n1)
    echo "${states:-?} states, depth ${depth:-?}, errors: ${errors:-?}"
}

errors_of() {
    sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$1" | head -n1
}

ok()   { echo "PASS  $1: $2"; passed=$((passed + 1)); }
fail() { echo "FAIL  $1: $2"; failed=$((failed + 1)); }

# expect_clean NAME MODE [flags...]: pan must finish with errors: 0, a
# complete search, and (safety) every state of the loop reachable.
expect_clean() {
    local name=$1 mode=$2 out errs
    out=$work/$name.out
    if ! run_pan "$@"; then
        fail "$name" "could not build or run the verifier"; sed 's/^/    /' "$out"; return
    fi
    errs=$(errors_of "$out")
    if [ "$errs" != 0 ]; then
        fail "$name" "expected no error, got $(summary "$out")"
        grep -E '^pan:[0-9]' "$out" | sed 's/^/    /'
    elif grep -q 'max search depth too small' "$out"; then
        fail "$name" "search truncated at depth $DEPTH"
    elif [ "$mode" = safety ] &&
         ! awk -v p="$proc" '$0 ~ "unreached in proctype " p "$" {
                getline; exit !/\(0 of/ }' "$out"; then
        fail "$name" "parts of the loop are unreachable (vacuous model?)"
        sed -n "/unreached in proctype $proc/,/unreached in/p" "$out" | sed 's/^/    /'
    else
        ok "$name" "$(summary "$out")"
    fi
}

# expect_lost_wakeup NAME [flags...]: pan must report an invalid end state.
expect_lost_wakeup() {
    local name=$1 out errs
    out=$work/$name.out
    if ! run_pan "$name" safety "${@:2}"; then
        fail "$name" "could not build or run the verifier"; sed 's/^/    /' "$out"; return
    fi
    errs=$(errors_of "$out")
    if [ -z "$errs" ] || [ "$errs" = 0 ]; then
        fail "$name" "bug NOT detected: $(summary "$out")"
    elif ! grep -q 'invalid end state' "$out"; then
        fail "$name" "an error, but not the lost wake-up:"
        grep -E '^pan:[0-9]' "$out" | sed 's/^/    /'
    else
        ok "$name" "lost wake-up found as expected ($(summary "$out"))"
    fi
}

echo "spin: model $model"
expect_clean       correct-safety       safety
expect_clean       correct-liveness     liveness -DCHECK_LIVENESS
expect_clean       qemu-plain-store     safety   -DPLAIN_STORE
expect_lost_wakeup BUG_NO_RECHECK       -DBUG_NO_RECHECK
expect_lost_wakeup BUG_SKIP_EVENT_WRITE -DBUG_SKIP_EVENT_WRITE
expect_clean       relaxed-safety       safety   -DRELAXED
expect_clean       relaxed-liveness     liveness -DRELAXED -DCHECK_LIVENESS
expect_lost_wakeup BUG_RELAXED_NO_MEMBARRIER -DRELAXED -DBUG_RELAXED_NO_MEMBARRIER
expect_lost_wakeup BUG_RELAXED_LOAD_FIRST    -DRELAXED -DBUG_RELAXED_LOAD_FIRST
expect_clean       plain-publish-safety safety   -DPLAIN_PUBLISH
expect_lost_wakeup BUG_NOTIFY_NO_FENCE  -DPLAIN_PUBLISH -DBUG_NOTIFY_NO_FENCE
expect_clean       no-fence-no-fast-path safety  -DPLAIN_PUBLISH -DBUG_NOTIFY_NO_FENCE -DNO_FAST_PATH
expect_clean       drain-at-wake-safety safety   -DDRAIN_AT_WAKE
expect_clean       drain-at-wake-liveness liveness -DDRAIN_AT_WAKE -DCHECK_LIVENESS
expect_clean       glib-prepare-safety  safety   -DGLIB_PREPARE
expect_clean       glib-prepare-liveness liveness -DGLIB_PREPARE -DCHECK_LIVENESS
expect_lost_wakeup BUG_GLIB_ACCEPT_FIRST -DGLIB_PREPARE -DBUG_GLIB_ACCEPT_FIRST
expect_lost_wakeup BUG_GLIB_LOOK_FIRST  -DGLIB_PREPARE -DBUG_GLIB_LOOK_FIRST
expect_clean       glib-nested-safety   safety   -DGLIB_PREPARE -DGLIB_NESTED_POLL
expect_clean       glib-nested-liveness liveness -DGLIB_PREPARE -DGLIB_NESTED_POLL -DCHECK_LIVENESS
expect_lost_wakeup BUG_GLIB_NESTED_CLEARS_BIT -DGLIB_PREPARE -DGLIB_NESTED_POLL -DBUG_GLIB_NESTED_CLEARS_BIT

model=$pool_model
proc=worker
echo "spin: model $model"
expect_clean       pool-safety          safety
expect_lost_wakeup POOL_BUG_NO_RECHECK  -DBUG_NO_RECHECK
expect_lost_wakeup POOL_BUG_LOAD_FIRST  -DBUG_LOAD_FIRST
expect_lost_wakeup POOL_BUG_TIMEOUT_NO_RECHECK -DBUG_TIMEOUT_NO_RECHECK

echo "spin: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
