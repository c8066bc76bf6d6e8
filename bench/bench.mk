# bench/bench.mk - `make bench`: what threadguard's checks cost, side by side with the
# alternatives, in one run. BENCHMARKS.md explains every row of the report.
#
# A make fragment for the top-level Makefile:
#
#     include bench/bench.mk
#
# Paths are relative to the repository root. The static library must already be built in
# $(TG_LIB_DIR) (the including Makefile has the rule for it: cargo build --release).
#
# Targets:
#   bench             every measurement below, one at a time, then the report: printed, and
#                     written to $(TG_BENCH_DIR)/report.md (earlier results are removed first)
#   bench-rust        criterion: threadguard::with against the alternatives
#                     (bench/benches/compare.rs)
#   bench-threads     1 against 2 threads, and the runner against a mutex/condvar round trip,
#                     in interleaved rounds (tg-bench threads)
#   bench-scale       thread exit with 1 million objects; memory per live object at 1 and
#                     10 million, from a counting allocator (tg-bench scale)
#   bench-c           the C harness (bench/c/bench.c): $(TG_BENCH_C_RUNS) runs of 11 interleaved
#                     timed loops per operation
#   bench-callgrind   instructions per operation of the same loops, Rust and C, under callgrind
#   bench-go          the Go benchmarks in go/: $(TG_BENCH_GO_COUNT) rounds, each running every
#                     benchmark once, so that the rows compared with each other are measured
#                     side by side in every round; summarised by benchstat
#   bench-report      the report from whatever results are in $(TG_BENCH_DIR)
#   bench-clean       remove $(TG_BENCH_DIR)
#
# Knobs: TG_LIB_DIR, TG_INCLUDE, TG_BENCH_DIR, TG_BENCH_CC, TG_VALGRIND, TG_BENCH_CG_ITERS
# (iterations per callgrind loop), TG_BENCH_C_RUNS (runs of the C harness), TG_BENCH_GO_COUNT,
# TG_BENCH_GO_FLAGS (more test binary flags, e.g. -test.benchtime=500ms), TG_BENCH_GOBIN (where
# benchstat is installed).
#
# The runner rows need `threadguard::runner`: they are built (cargo feature `runner` of the
# bench crate) when src/lib.rs exports it, and reported as "not run" otherwise.

CARGO ?= cargo
GO ?= go
TG_LIB_DIR ?= target/release
TG_INCLUDE ?= include
TG_NATIVE_LIBS ?= -lpthread -ldl -lm
TG_BENCH_DIR ?= build/bench
TG_BENCH_CC ?= cc
TG_VALGRIND ?= valgrind
TG_BENCH_CG_ITERS ?= 100000
TG_BENCH_C_RUNS ?= 3
TG_BENCH_GO_COUNT ?= 5
TG_BENCH_GO_FLAGS ?=
TG_BENCH_GOBIN ?= build/gobin
TG_GO_TAGS ?= threadguard_static

# The Makefile that included this fragment, for the sub-makes of `bench`.
TG_BENCH_MAKEFILE := $(firstword $(MAKEFILE_LIST))
TG_BENCH_TARGET := $(or $(CARGO_TARGET_DIR),target)
TG_BENCH_TOOL := $(TG_BENCH_TARGET)/release/tg-bench
TG_BENCH_C := $(TG_BENCH_DIR)/c/bench
TG_BENCH_FEATURES := $(if $(shell grep -qs '^pub mod runner' src/lib.rs && echo yes),--features runner)
TG_BENCH_CARGO_FLAGS := --locked -p threadguard-bench $(TG_BENCH_FEATURES)

.PHONY: bench bench-start bench-rust bench-threads bench-scale bench-c bench-callgrind bench-go \
	bench-report bench-tool bench-clean

TG_BENCH_STEPS := bench-rust bench-threads bench-scale bench-c bench-callgrind bench-go

# One run: each step writes its results under $(TG_BENCH_DIR), one step at a time (-j1: two
# measurements at once would measure each other); the report reads them all.
bench: bench-start
	$(MAKE) -j1 --no-print-directory -f $(TG_BENCH_MAKEFILE) $(TG_BENCH_STEPS)
	@cat /proc/loadavg > $(TG_BENCH_DIR)/load-end
	$(MAKE) -j1 --no-print-directory -f $(TG_BENCH_MAKEFILE) bench-report

# Start afresh, and record the load the run starts under.
bench-start: $(TG_LIB_DIR)/libthreadguard.a
	rm -rf $(TG_BENCH_DIR)
	@mkdir -p $(TG_BENCH_DIR)
	@cat /proc/loadavg > $(TG_BENCH_DIR)/load-start
	@echo "bench: load average at start: $$(cut -d' ' -f1-3 $(TG_BENCH_DIR)/load-start) on $$(nproc) CPUs"

bench-tool:
	$(CARGO) build --release $(TG_BENCH_CARGO_FLAGS) --bin tg-bench

bench-rust:
	@mkdir -p $(TG_BENCH_DIR)
	CRITERION_HOME=$(abspath $(TG_BENCH_DIR))/criterion \
	    $(CARGO) bench $(TG_BENCH_CARGO_FLAGS) --bench compare -- --output-format bencher

bench-threads: bench-tool
	@mkdir -p $(TG_BENCH_DIR)
	$(TG_BENCH_TOOL) threads $(TG_BENCH_DIR)/threads.tsv

bench-scale: bench-tool
	@mkdir -p $(TG_BENCH_DIR)
	$(TG_BENCH_TOOL) scale $(TG_BENCH_DIR)/scale.tsv

$(TG_BENCH_C): bench/c/bench.c $(TG_INCLUDE)/threadguard.h $(TG_LIB_DIR)/libthreadguard.a
	@mkdir -p $(@D)
	$(TG_BENCH_CC) -std=c99 -O2 -g -Wall -Wextra -Werror -pedantic -I$(TG_INCLUDE) $< \
	    $(TG_LIB_DIR)/libthreadguard.a $(TG_NATIVE_LIBS) -o $@

# Each run of the harness prints one line per operation (the median of its 11 timed loops,
# interleaved with the other operations'); the report takes the median over the runs, which
# spreads the measurement over more of the machine's fast and slow spells.
bench-c: $(TG_BENCH_C)
	@mkdir -p $(TG_BENCH_DIR)
	@rm -f $(TG_BENCH_DIR)/c.tsv
	@for run in $$(seq $(TG_BENCH_C_RUNS)); do ./$(TG_BENCH_C) >> $(TG_BENCH_DIR)/c.tsv || exit 1; done
	@cat $(TG_BENCH_DIR)/c.tsv

# One callgrind run per loop; collection is on only inside the measured function.
bench-callgrind: bench-tool $(TG_BENCH_C)
	@mkdir -p $(TG_BENCH_DIR)/callgrind
	@if ! command -v $(TG_VALGRIND) >/dev/null; then \
	    echo "bench-callgrind: $(TG_VALGRIND) not found; instruction counts not measured"; exit 0; fi; \
	for name in $$($(TG_BENCH_TOOL) callgrind-list); do \
	    $(TG_VALGRIND) --tool=callgrind --collect-atstart=no '--toggle-collect=*cg_measured*' \
	        --callgrind-out-file=$(TG_BENCH_DIR)/callgrind/rust.$$name.$(TG_BENCH_CG_ITERS).out \
	        $(TG_BENCH_TOOL) callgrind $$name $(TG_BENCH_CG_ITERS) 2>/dev/null || exit 1; \
	    echo "callgrind: rust $$name done"; \
	done; \
	for name in $$(./$(TG_BENCH_C) --list); do \
	    $(TG_VALGRIND) --tool=callgrind --collect-atstart=no --toggle-collect=cg_measured \
	        --callgrind-out-file=$(TG_BENCH_DIR)/callgrind/c.$$name.$(TG_BENCH_CG_ITERS).out \
	        ./$(TG_BENCH_C) --callgrind $$name $(TG_BENCH_CG_ITERS) 2>/dev/null || exit 1; \
	    echo "callgrind: c $$name done"; \
	done

# go/ links target/release/libthreadguard.a (-tags $(TG_GO_TAGS): go/link_static.go names it),
# whatever TG_LIB_DIR says.
# A failure here is reported (and the Go rows show as "not run") without stopping the rest.
bench-go:
	@mkdir -p $(TG_BENCH_DIR)
	@if ! command -v $(GO) >/dev/null; then echo "bench-go: no Go toolchain; Go rows not run"; exit 0; fi; \
	if (cd go && $(GO) test -tags $(TG_GO_TAGS) -c -o $(abspath $(TG_BENCH_DIR))/go.test . && \
	    for round in $$(seq $(TG_BENCH_GO_COUNT)); do \
	        $(abspath $(TG_BENCH_DIR))/go.test -test.run '^$$' -test.bench . -test.count 1 $(TG_BENCH_GO_FLAGS) || exit 1; \
	    done) > $(TG_BENCH_DIR)/go.log 2>&1; then \
	    grep -E '^(goos|goarch|pkg|cpu|Benchmark)' $(TG_BENCH_DIR)/go.log > $(TG_BENCH_DIR)/go.txt; \
	    if [ ! -x $(TG_BENCH_GOBIN)/benchstat ]; then \
	        GOBIN=$(abspath $(TG_BENCH_GOBIN)) $(GO) install golang.org/x/perf/cmd/benchstat@latest; \
	    fi; \
	    $(TG_BENCH_GOBIN)/benchstat $(TG_BENCH_DIR)/go.txt | tee $(TG_BENCH_DIR)/go-benchstat.txt; \
	else \
	    echo "bench-go: go test -bench failed; Go rows not run. Log: $(TG_BENCH_DIR)/go.log"; \
	    tail -n 20 $(TG_BENCH_DIR)/go.log; \
	fi

bench-report: bench-tool
	@echo
	@$(TG_BENCH_TOOL) report $(TG_BENCH_DIR)
	@echo "bench: report written to $(TG_BENCH_DIR)/report.md"

bench-clean:
	rm -rf $(TG_BENCH_DIR)
