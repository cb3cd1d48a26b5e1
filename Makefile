# The two commands of the README:
#   make run     install what is missing, build, run (the daemon, later)
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

run: build
	./$(BUILD)/examples/hello-loop

check: deps
	scripts/check.sh

clean:
	rm -rf $(BUILD) build-check build-clang build-asan build-tsan
