#!/usr/bin/env bash
# Builds and tests everything, as `make check` and CI do:
#   1. gcc build with -Werror, every test, once per fd monitoring backend
#      (io_uring, epoll, poll: IOTHREAD_FDMON decides for every context that
#      does not ask for one by name);
#   2. clang build with -Werror (compile only: a second compiler's warnings);
#   3. ASan+UBSan build, every test;
#   4. TSan build, every test;
#   5. the spin models of the notify handshake and the pool wake-up;
#   6. the libFuzzer targets for 60 s (tests/fuzz/run.sh: QMP input, cmdline).
# Ends with "N passed, N failed" over all of them.
set -u
cd "$(dirname "$0")/.."
top=$PWD
total_p=0
total_f=0
total_s=0 # cases whose needs (io_uring) are not on this machine
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

count() {  # count LABEL FILE: add the "LABEL: N passed, N failed" line of FILE
  local line skip
  skip=$(sed -nE "s/^$1: ([0-9]+) skipped$/\1/p" "$2" | tail -n 1)
  total_s=$((total_s + ${skip:-0}))
  line=$(grep -E "^$1: [0-9]+ passed, [0-9]+ failed$" "$2" | tail -n 1)
  if [ -z "$line" ]; then
    echo "!! $1: no result line"
    total_f=$((total_f + 1))
    return
  fi
  total_p=$((total_p + $(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')))
  total_f=$((total_f + $(echo "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')))
}

setup() {  # setup DIR [meson options...]
  local dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

build() {  # build LABEL DIR [meson options...]
  local label=$1 dir=$2
  shift 2
  echo "== $label: building in $dir"
  if ! { setup "$dir" "$@" && ninja -C "$dir"; } >"$log/$label.build" 2>&1; then
    cat "$log/$label.build"
    echo "$label: 0 passed, 1 failed" >"$log/$label.out"
    echo "!! $label: build failed"
    return 1
  fi
}

suite() {  # suite LABEL DIR: run the tests of DIR
  local label=$1 dir=$2
  tests/run-tests.sh "$dir" "$label" >"$log/$label.out" 2>&1
  grep -E '^(not ok|== .* died|== .* exited)' "$log/$label.out" || true
  grep -E "^$label: " "$log/$label.out"
  if grep -qE '^not ok|^== .* (died|exited)' "$log/$label.out"; then
    sed -n '/^not ok/,+0p' "$log/$label.out" >/dev/null
    cp "$log/$label.out" "$top/$dir/test-output.log"
    echo "   (full output in $dir/test-output.log)"
  fi
}

if build plain build-check -Dwerror=true; then
  for fdmon in io_uring epoll poll; do
    IOTHREAD_FDMON=$fdmon suite "plain-$fdmon" build-check
  done
else
  for fdmon in io_uring epoll poll; do
    cp "$log/plain.out" "$log/plain-$fdmon.out"
  done
fi
for fdmon in io_uring epoll poll; do
  count "plain-$fdmon" "$log/plain-$fdmon.out"
done

if CC=clang build clang build-clang -Dwerror=true; then
  echo "clang: 1 passed, 0 failed" >"$log/clang.out"
  echo "clang: builds without warnings"
fi
count clang "$log/clang.out"

if build asan build-asan -Dwerror=true -Db_sanitize=address,undefined \
     -Db_lundef=false; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  IOT_TEST_SLOW=1 suite asan build-asan
fi
count asan "$log/asan.out"

if build tsan build-tsan -Dwerror=true -Db_sanitize=thread -Db_lundef=false; then
  # TSan's shadow layout needs the address space unrandomised on kernels
  # with large mmap randomisation; setarch -R gives it that.
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  IOT_TEST_SLOW=1 setarch "$(uname -m)" -R tests/run-tests.sh build-tsan tsan \
    >"$log/tsan.out" 2>&1
  grep -E '^(not ok|== .* died|== .* exited)' "$log/tsan.out" || true
  grep -E '^tsan: ' "$log/tsan.out"
  if grep -qE '^not ok|^== .* (died|exited)' "$log/tsan.out"; then
    cp "$log/tsan.out" "$top/build-tsan/test-output.log"
    echo "   (full output in build-tsan/test-output.log)"
  fi
fi
count tsan "$log/tsan.out"

echo "== spin: the notify handshake and pool wake-up models"
tests/spin/run.sh >"$log/spin.full" 2>&1
cat "$log/spin.full"
grep -E '^spin: ' "$log/spin.full" >"$log/spin.out" || true
count spin "$log/spin.out"

echo "== fuzz: libFuzzer targets (tests/fuzz/run.sh 60)"
tests/fuzz/run.sh 60 >"$log/fuzz.full" 2>&1
tail -n 15 "$log/fuzz.full"
grep -E '^fuzz: ' "$log/fuzz.full" >"$log/fuzz.out" || true
count fuzz "$log/fuzz.out"

echo
if [ "$total_s" -gt 0 ]; then
  echo "$total_s skipped (not counted as passed)"
fi
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
