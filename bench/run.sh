#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every workload of shared/BENCH.md on every implementation, with
# interleaved repetitions (rep 1 of everything, then rep 2, ...), and then
#   - prints one table: workload | impl | metric | median | min..max | unit
#     and the targets of BENCH.md, met or missed;
#   - writes bench/results/latest.json (records {workload, impl, metric,
#     value, unit}, value = the median) and bench/results/latest.txt;
#   - draws bench/results/w1-w7.png (or .svg): the CDFs of W1's round
#     trip and W7's post-to-callback latency, per implementation.
#
#   bench/run.sh [--quick] [--reps N] [--bin PATH] [--only REGEX]
# `make bench [QUICK=1]` builds and calls this.  --only keeps the plan
# entries whose "workload impl options" match REGEX (for development).
set -u
cd "$(dirname "$0")/.." || exit 1

BIN=build-bench/bench/iot-bench
QUICK=0
REPS=3
ONLY=
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --reps) REPS=$2; shift ;;
    --bin) BIN=$2; shift ;;
    --only) ONLY=$2; shift ;;
    *) echo "usage: $0 [--quick] [--reps N] [--bin PATH] [--only REGEX]" >&2
       exit 1 ;;
  esac
  shift
done
[ -x "$BIN" ] || { echo "$0: $BIN not built (make bench)" >&2; exit 1; }

RES=bench/results
WORK=$(dirname "$BIN")/run
rm -rf "$WORK"
mkdir -p "$WORK/dist" "$RES"
RAW=$WORK/raw.tsv
: >"$RAW"
: >"$WORK/failures"
: >"$WORK/stderr.log"

IMPLS="iothread iothread-nopoll libuv libevent glib floor-spin floor-polls floor-futex floor-eventfd floor-pipes"
# The order each workload's cells run in: the ones the targets compare
# next to each other, so that the pairs of one repetition run seconds
# apart (this machine's vCPU placement moves within minutes).
RUN_IMPLS="iothread floor-polls libuv iothread-nopoll floor-eventfd libevent glib floor-spin floor-futex floor-pipes"
SPINNERS="floor-spin floor-polls"
GAPS="5000 50000 500000 5000000"
if [ "$QUICK" = 1 ]; then
  QOPT=--quick
  TMAX=90   # one process, at most
else
  QOPT=
  TMAX=600
fi
TIN=$((TMAX - 15))

gapname() {
  local g=$1
  if [ $((g % 1000000)) -eq 0 ]; then echo "$((g / 1000000))ms"
  else echo "$((g / 1000))us"; fi
}

# The plan: "workload|impl|options" (W6 runs its own way, see run_w6).
plan=()
add() { plan+=("$1|$2|$3"); }
for i in $RUN_IMPLS; do add W1 "$i" "--dist=$WORK/dist/W1-$i.dat"; done
for i in iothread iothread-nopoll; do add W1-reused "$i" ""; done
for p in 1 2 4; do for i in $RUN_IMPLS; do add W2 "$i" "--producers=$p"; done; done
# The posting mechanism without the item array's memory traffic: every
# post carries the same node, which only a copying post (one-shot BHs)
# allows.
for i in iothread iothread-nopoll; do add W2-shared "$i" ""; done
for i in $RUN_IMPLS; do add W3 "$i" ""; done
for i in iothread iothread-nopoll; do
  for v in --fdmon=poll --fdmon=epoll --fdmon=io_uring --iopoll "--fdmon=epoll --iopoll"; do
    add W3 "$i" "$v"
  done
done
for i in $RUN_IMPLS; do add W4 "$i" ""; done
for i in $RUN_IMPLS; do add W5 "$i" ""; done
add W6 all ""
for g in $GAPS; do
  for i in $RUN_IMPLS; do
    add W7 "$i" "--gap-ns=$g --dist=$WORK/dist/W7-$(gapname "$g")-$i.dat"
  done
done
for i in $RUN_IMPLS; do add scale "$i" ""; done
for v in poll epoll io_uring; do add scale iothread "--fdmon=$v"; done
add scale floor-futex "--fdmon=io_uring"

declare -A skip   # not applicable (exit 2), learnt in the first repetition

# run1 REP WORKLOAD IMPL OPTIONS OUTFILE
run1() {
  local rep=$1 w=$2 i=$3 o=$4 out=$5 rc
  # shellcheck disable=SC2086
  timeout -k 5 "$TMAX" "$BIN" $QOPT --timeout="$TIN" $o "$w" "$i" >"$out" \
    2>"$out.err"
  rc=$?
  { echo "== rep $rep: $w $i $o (rc $rc)"; cat "$out.err"; } >>"$WORK/stderr.log"
  if [ $rc -eq 2 ]; then
    skip["$w|$i|$o"]=1
  elif [ $rc -ne 0 ]; then
    echo "rep $rep: $w $i $o: exit $rc: $(tail -n 1 "$out.err")" >>"$WORK/failures"
  fi
  rm -f "$out.err"
}

# Result records ("R" lines) get the repetition as a last column.
with_rep() {
  awk -F'\t' -v OFS='\t' -v rep="$1" '$1 == "R" { print $0, rep; next } { print }'
}

# W6 (idle): 2 or 5 s of nothing per implementation, so they idle side by
# side: the sleeping loops together, then the two spinning floors.
run_w6() {
  local rep=$1 i
  for group in sleepers spinners; do
    for i in $IMPLS; do
      case " $SPINNERS " in
        *" $i "*) [ $group = spinners ] || continue ;;
        *) [ $group = sleepers ] || continue ;;
      esac
      [ -n "$ONLY" ] && ! [[ "W6 $i " =~ $ONLY ]] && continue
      run1 "$rep" W6 "$i" "" "$WORK/w6-$i.out" &
    done
    wait
  done
  for i in $IMPLS; do
    [ -f "$WORK/w6-$i.out" ] && with_rep "$rep" <"$WORK/w6-$i.out" >>"$RAW"
    rm -f "$WORK/w6-$i.out"
  done
}

start=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
# The library's state now, when the binary under test was just built (an
# edit made during the run must not be reported as measured).
lib="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include meson.build 2>/dev/null || echo ' + uncommitted changes in src/')"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $load0, $REPS repetitions$([ "$QUICK" = 1 ] && echo ', quick')" >&2
for rep in $(seq 1 "$REPS"); do
  echo "# repetition $rep of $REPS ($(($(date +%s) - start)) s)" >&2
  for e in "${plan[@]}"; do
    IFS='|' read -r w i o <<<"$e"
    if [ "$w" = W6 ]; then
      run_w6 "$rep"
      continue
    fi
    [ -n "${skip[$e]:-}" ] && continue
    [ -n "$ONLY" ] && ! [[ "$w $i $o" =~ $ONLY ]] && continue
    run1 "$rep" "$w" "$i" "$o" "$WORK/one.out"
    with_rep "$rep" <"$WORK/one.out" >>"$RAW"
  done
done
rm -f "$WORK/one.out"
elapsed=$(($(date +%s) - start))

# ---- aggregate: median, min, max per (workload, impl, metric) ----
AGG=$WORK/agg.tsv
awk -F'\t' -v impls="$IMPLS" '
  BEGIN { n = split(impls, il, " "); for (k = 1; k <= n; k++) iord[il[k]] = k }
  $1 == "R" {
    w = $2; im = $3; m = $4; key = w SUBSEP im SUBSEP m
    if (!(w in word)) word[w] = ++nw
    if (!(m in mord)) mord[m] = ++nm
    if (!(key in cnt)) { keys[++nk] = key; unit[key] = $6 }
    vals[key, ++cnt[key]] = $5 + 0
  }
  END {
    for (k = 1; k <= nk; k++) {
      key = keys[k]; c = cnt[key]
      for (a = 1; a <= c; a++) v[a] = vals[key, a]
      for (a = 2; a <= c; a++) {  # insertion sort
        x = v[a]; b = a - 1
        while (b >= 1 && v[b] > x) { v[b + 1] = v[b]; b-- }
        v[b + 1] = x
      }
      med = (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
      split(key, p, SUBSEP)
      printf "%05d%03d%04d\t%s\t%s\t%s\t%.10g\t%.10g\t%.10g\t%s\t%d\n",
        word[p[1]], iord[p[2]], mord[p[3]], p[1], p[2], p[3], med, v[1], v[c],
        unit[key], c
    }
  }' "$RAW" | sort -k1,1 | cut -f2- >"$AGG"

# ---- each repetition's value, for the targets' paired ratios ----
REPSV=$WORK/reps.tsv
awk -F'\t' -v OFS='\t' '$1 == "R" && $7 != "" { print $2, $3, $4, $7, $5 }' \
  "$RAW" >"$REPSV"

# ---- the table ----
hv=$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -n 1)
machine="$(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -n 1)${hv:+, $hv guest}), kernel $(uname -r)"
{
  echo "libiothread benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $machine"
  echo "library: $lib, built in $(dirname "$(dirname "$BIN")")"
  echo "run: $REPS interleaved repetitions$([ "$QUICK" = 1 ] && echo ' (QUICK=1)'), $elapsed s; load average before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  awk -F'\t' '
    function fmt(x,   a) {
      a = x < 0 ? -x : x
      if (a >= 1e7) return sprintf("%.1fM", x / 1e6)
      if (a >= 100 || x == int(x)) return sprintf("%.0f", x)
      return sprintf("%.3g", x)
    }
    BEGIN {
      printf "%-16s %-16s %-24s %10s  %-23s %s\n", "workload", "impl", "metric", "median", "min..max", "unit"
      printf "%-16s %-16s %-24s %10s  %-23s %s\n", "--------", "----", "------", "------", "--------", "----"
    }
    {
      if (prev != "" && $1 != prev) print ""
      prev = $1
      printf "%-16s %-16s %-24s %10s  %-23s %s\n", $1, $2, $3, fmt($4), fmt($5) ".." fmt($6), $7
    }' "$AGG"
  echo
  awk -F'\t' -v quick="$QUICK" -v reps="$REPSV" -f bench/targets.awk "$AGG"
  if [ -s "$WORK/failures" ]; then
    echo
    echo "failures (details in $WORK/stderr.log):"
    sed 's/^/  /' "$WORK/failures"
  fi
} | tee "$RES/latest.txt"

# ---- JSON: the medians ----
awk -F'\t' '
  BEGIN { printf "[" }
  {
    printf "%s\n  {\"workload\": \"%s\", \"impl\": \"%s\", \"metric\": \"%s\", \"value\": %s, \"unit\": \"%s\"}",
      (NR > 1 ? "," : ""), $1, $2, $3, $4, $7
  }
  END { print "\n]" }' "$AGG" >"$RES/latest.json"

# ---- the picture ----
if command -v gnuplot >/dev/null; then
  if gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1; then
    term="pngcairo size 1400,1000 font ',10'"; out=$RES/w1-w7.png
  elif gnuplot -e 'set terminal png' >/dev/null 2>&1; then
    term="png size 1400,1000"; out=$RES/w1-w7.png
  else
    term="svg size 1400,1000"; out=$RES/w1-w7.svg
  fi
  if gnuplot -e "term=\"$term\"; out='$out'; dist='$WORK/dist'; impls='$IMPLS'" \
       bench/plot.gp 2>"$WORK/gnuplot.log"; then
    echo "picture: $out"
  else
    echo "gnuplot failed: $WORK/gnuplot.log" >&2
  fi
else
  echo "no gnuplot: no picture" >&2
fi
echo "results: $RES/latest.json, $RES/latest.txt ($elapsed s)"
