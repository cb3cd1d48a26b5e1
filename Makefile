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
