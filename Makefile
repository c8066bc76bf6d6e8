# threadguard: the two commands a new user needs are `make demo` and `make test`.
#
#   make demo     build the library and run the demo
#   make test     run every test: Rust (unit, integration, doc, large release tests, loom, and
#                 Miri on the unit and doc tests when a nightly toolchain with Miri is
#                 installed, ThreadSanitizer on the Rust tests and the C thread and runner
#                 tests when a nightly toolchain with rust-src is), clippy, rustfmt, header
#                 freshness, C/C++ consumer tests (static and shared, valgrind, ASan/UBSan),
#                 the installed library used from outside the tree (install-check), Go tests
#                 with -race, and short fuzz runs
#   make header   regenerate include/threadguard.h from src/ffi
#   make install  install the header, libraries, pkg-config file and CMake package (PREFIX,
#                 DESTDIR; install/install.mk); make uninstall removes them
#   make bench    benchmarks, side by side with the alternatives
#   make coverage line and region coverage of src/ by the Rust, large and C tests (not part of
#                 make test; scripts/coverage.sh says what it counts)

CARGO      ?= cargo
GO         ?= go
TG_LIB_DIR ?= target/release
TG_INCLUDE ?= include
HEADER     := $(TG_INCLUDE)/threadguard.h
STATIC_LIB := $(TG_LIB_DIR)/libthreadguard.a
# In-tree Go builds link this checkout's static library (go/link_static.go); without the tag
# the Go module links the installed library through pkg-config (go/link.go).
TG_GO_TAGS ?= threadguard_static

.PHONY: all lib demo demo-c coverage test test-rust test-loom miri tsan lint header header-check unsafe-inventory test-go go-fuzz-smoke clean

all: lib

# The release build of the C library (capi/) is what C and Go link against. The soname link
# lets programs linked with -L$(TG_LIB_DIR) -lthreadguard (they record libthreadguard.so.<ABI>)
# start with $(TG_LIB_DIR) as their rpath.
lib:
	$(CARGO) build --release --locked -p threadguard-capi
	ln -sfn libthreadguard.so $(TG_LIB_DIR)/libthreadguard.so.$(TG_ABI)

$(STATIC_LIB): lib ;

include tests/c/c-tests.mk
include install/install.mk
include tests/install/install-check.mk
include nim/nim.mk
include bench/bench.mk

# The demo is a Go program driving a thread-affine C library through the Go wrapper;
# `make demo-c` runs the C walkthrough of the same story.
demo: lib
	cd go && $(GO) run -tags $(TG_GO_TAGS) ./cmd/demo

demo-c: lib c-demo

header:
	$(CARGO) run --quiet --locked -p gen-header -- $(HEADER)

# The committed header must be exactly what the generator writes from the current source.
header-check:
	@mkdir -p build
	$(CARGO) run --quiet --locked -p gen-header -- build/threadguard.h.fresh
	@if cmp -s build/threadguard.h.fresh $(HEADER); then echo "header-check: $(HEADER) is fresh"; \
	else echo "header-check: $(HEADER) is stale; run 'make header' and commit it"; \
	     diff -u $(HEADER) build/threadguard.h.fresh | head -40; exit 1; fi

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked -p threadguard-capi -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps -p threadguard

unsafe-inventory:
	python3 scripts/unsafe_inventory.py --self-test
	python3 scripts/unsafe_inventory.py

test-go: lib
	cd go && $(GO) vet -tags $(TG_GO_TAGS) ./...
	@unformatted="$$(cd go && gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	cd go && $(GO) test -race -count=1 -tags $(TG_GO_TAGS) ./...
	cd go/examples/tcl && $(GO) vet -tags $(TG_GO_TAGS) ./... && $(GO) test -race -count=1 -tags $(TG_GO_TAGS) -bench . -benchtime 100x ./...

# Go's short fuzz runs are bounded by a count of executions, not by time: with a wall-clock
# -fuzztime, Go releases before 1.27 can fail a run that found nothing with "context deadline
# exceeded" when a worker is busy at the deadline (golang/go#75804), as loaded machines often do.
GO_FUZZTIME ?= 300000x
go-fuzz-smoke: lib
	cd go && $(GO) test -tags $(TG_GO_TAGS) -run '^$$' -fuzz=FuzzHandle -fuzztime=$(GO_FUZZTIME) .

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := misuse ffi_raw runner_raw
include kit/kit.mk

# cargo-fuzz targets (stable toolchain, no sanitizer; see fuzz/README.md).
fuzz-smoke:
	@set -e; for target in $(FUZZ_TARGETS); do fuzz/run.sh $$target $(FUZZ_SECONDS); done

fuzz:
	@set -e; for target in $(FUZZ_TARGETS); do fuzz/run.sh $$target $${FUZZ_LONG_SECONDS:-600}; done

test-rust:
	$(CARGO) test --locked
	# Large and long tests (2^31 slot reuses, 10 million objects) in release.
	$(CARGO) test --locked --release -- --ignored

# Every interleaving of the runner's queue, call and stop logic, and of the inbox's handshake
# with its owner's exit (loom model checking).
test-loom:
	# A separate target directory keeps the loom build from invalidating the normal one.
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --locked --release --lib -- runner::loom inbox::loom

# Undefined behaviour in the Rust core, found by interpreting tests with Miri: out-of-bounds and
# use-after-free accesses, invalid values, aliasing violations (Stacked Borrows), data races and
# leaks. -Zmiri-strict-provenance also refuses integer-to-pointer casts (the core makes none);
# isolation stays on, so runs are deterministic. The unit tests include the C entry points called
# with Rust `extern "C"` callbacks (src/ffi/mod.rs); the doc tests add the Rust API, runners and
# the export macro. Miri cannot run C or Go: those callers are left to valgrind, the sanitizers
# and -race. It needs a nightly toolchain with the miri component; without one this target says
# so and succeeds. `cargo miri` builds in target/miri, apart from the normal build; its one-time
# setup (Miri's own standard library) is silent unless it fails.
MIRI_INSTALL := rustup toolchain install nightly --profile minimal --component miri,rust-src
MIRIFLAGS ?= -Zmiri-strict-provenance
miri:
	@if ! RUSTUP_AUTO_INSTALL=0 $(CARGO) +nightly miri --version >/dev/null 2>&1; then \
	    echo "miri: skipped: no nightly toolchain with the miri component (install: $(MIRI_INSTALL))"; \
	else \
	    setup_log="$$($(CARGO) +nightly miri setup 2>&1)" || { echo "$$setup_log"; exit 1; }; \
	    set -x; \
	    MIRIFLAGS="$(MIRIFLAGS)" $(CARGO) +nightly miri test --locked --lib && \
	    MIRIFLAGS="$(MIRIFLAGS)" $(CARGO) +nightly miri test --locked --doc; \
	fi

# Data races, found by ThreadSanitizer: the Rust unit and integration tests, and the C thread
# and runner tests linked against the library, all built with every line of Rust (the standard
# library too, -Zbuild-std) instrumented. Needs a nightly toolchain with rust-src; without one
# this target says so and succeeds. The C tests link gcc's TSan runtime (cc -fsanitize=thread),
# which lacks the three memory-intrinsic entry points instrumented Rust calls:
# tests/c/tsan_shim.c supplies them. Builds in target/tsan (debug, so tests see unoptimised
# code, as `cargo test` does); the first run builds the standard library (a few minutes).
TSAN_INSTALL := rustup toolchain install nightly --profile minimal --component rust-src
TSAN_TARGET := x86_64-unknown-linux-gnu
TSAN_CARGO := RUSTFLAGS="-Zsanitizer=thread" CARGO_TARGET_DIR=target/tsan $(CARGO) +nightly
TSAN_CARGO_FLAGS := --locked -Zbuild-std --target $(TSAN_TARGET)
TSAN_LIB := target/tsan/$(TSAN_TARGET)/debug/libthreadguard.a
TSAN_C_TESTS := test_threads test_runner
TSAN_OPTIONS ?= halt_on_error=1 second_deadlock_stack=1
tsan:
	@sysroot="$$(RUSTUP_AUTO_INSTALL=0 rustc +nightly --print sysroot 2>/dev/null)"; \
	if [ -z "$$sysroot" ] || [ ! -d "$$sysroot/lib/rustlib/src/rust/library" ]; then \
	    echo "tsan: skipped: no nightly toolchain with rust-src (install: $(TSAN_INSTALL))"; \
	elif ! command -v $(TG_CC) >/dev/null; then \
	    echo "tsan: skipped: no C compiler ($(TG_CC))"; \
	else \
	    set -ex; \
	    TSAN_OPTIONS="$(TSAN_OPTIONS)" $(TSAN_CARGO) test $(TSAN_CARGO_FLAGS) --lib --tests; \
	    $(TSAN_CARGO) build $(TSAN_CARGO_FLAGS) -p threadguard-capi; \
	    mkdir -p $(TG_C_BUILD)/tsan; \
	    for t in $(TSAN_C_TESTS); do \
	        $(TG_CC) $(TG_C_CFLAGS) -fsanitize=thread tests/c/$$t.c tests/c/tsan_shim.c $(TSAN_LIB) \
	            $(TG_NATIVE_LIBS) -o $(TG_C_BUILD)/tsan/$$t; \
	        TSAN_OPTIONS="$(TSAN_OPTIONS)" $(TG_C_BUILD)/tsan/$$t > $(TG_C_BUILD)/tsan/$$t.log 2>&1 || \
	            { cat $(TG_C_BUILD)/tsan/$$t.log; exit 1; }; \
	        echo "ok   $$t (tsan): $$(tail -n 1 $(TG_C_BUILD)/tsan/$$t.log)"; \
	    done; \
	fi

test: lint header-check unsafe-inventory test-rust test-loom miri tsan lib c-tests c-tests-valgrind c-tests-asan install-check nim-tests nim-go-tests test-go go-fuzz-smoke fuzzkit-tests fuzz-smoke
	@echo "make test: all suites passed"

coverage:
	scripts/coverage.sh

clean:
	$(CARGO) clean
	rm -rf build
