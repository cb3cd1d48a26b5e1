# The two commands of the README:
#   make run     install what is missing, build, start iothreadd (defaults)
#   make check   install what is missing, build plain/ASan/TSan, run every test
BUILD ?= build

.PHONY: all deps build run check clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The embedded default: IOThreads io0 and io1, QMP on
# $XDG_RUNTIME_DIR/iothreadd.sock (or ./iothreadd.sock), in the foreground.
run: build
	./$(BUILD)/daemon/iothreadd

check: deps
	scripts/check.sh

clean:
	rm -rf $(BUILD) build-check build-clang build-asan build-tsan

# Benchmarks (bench/, BENCHMARKS.md): installs the peers if missing, builds
# the library (release, in $(BENCH_BUILD)) and bench/ against it, runs every
# workload on every implementation.  QUICK=1: smaller counts, < 3 minutes;
# BENCH_REPS=N: N repetitions (default 3).
BENCH_BUILD ?= build-bench
.PHONY: bench
bench:
	@scripts/install-deps.sh libuv1-dev libevent-dev gnuplot-nox
	@[ -f $(BENCH_BUILD)/build.ninja ] || meson setup $(BENCH_BUILD) --buildtype=release
	ninja -C $(BENCH_BUILD) src/libiothread.a
	$(MAKE) -C bench IOT_BUILD=$(abspath $(BENCH_BUILD))
	bench/run.sh --bin $(BENCH_BUILD)/bench/iot-bench $(if $(filter 1 yes true,$(QUICK)),--quick) $(if $(BENCH_REPS),--reps $(BENCH_REPS))
