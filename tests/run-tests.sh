#!/usr/bin/env bash
# Runs every test binary of one build directory and sums the TAP results.
#   tests/run-tests.sh BUILDDIR LABEL
# Prints each binary's TAP, then "LABEL: N skipped" if any case was (its
# needs are not on this machine), then "LABEL: N passed, N failed".  A binary
# that dies before printing its summary counts as one failure.  Exit status
# is 0 only if nothing failed.
set -u
build=$1
label=${2:-$(basename "$build")}
passed=0
failed=0
skipped=0
for exe in "$build"/tests/test-*; do
  [ -x "$exe" ] && [ -f "$exe" ] || continue
  name=$(basename "$exe")
  echo "== $label: $name"
  # The harness times out each case; this outer limit only catches a
  # harness that hangs itself.
  out=$(timeout --kill-after=10 1800 "$exe" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  summary=$(printf '%s\n' "$out" | grep -E '^# [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
  if [ -z "$summary" ]; then
    echo "== $label: $name died (exit $rc) without a summary"
    failed=$((failed + 1))
    continue
  fi
  p=$(echo "$summary" | sed -E 's/^# ([0-9]+) passed.*/\1/')
  f=$(echo "$summary" | sed -E 's/.* ([0-9]+) failed$/\1/')
  passed=$((passed + p))
  failed=$((failed + f))
  s=$(printf '%s\n' "$out" | sed -nE 's/^# ([0-9]+) skipped$/\1/p' | tail -n 1)
  skipped=$((skipped + ${s:-0}))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "== $label: $name exited $rc"
    failed=$((failed + 1))
  fi
done
if [ "$skipped" -gt 0 ]; then
  echo "$label: $skipped skipped"
fi
echo "$label: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
