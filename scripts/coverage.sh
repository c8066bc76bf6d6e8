#!/usr/bin/env bash
# Line and region coverage of src/ by the Rust unit and integration tests, the large tests and the
# C/C++ consumer tests, measured with cargo-llvm-cov (`make coverage`).
#
#   scripts/coverage.sh                      release build, large tests included (about 8 minutes
#                                            on two cores)
#   TG_COVERAGE_LONG=0 scripts/coverage.sh   debug build without the large tests (about 3 minutes)
#
# Installs what it needs if missing: rustup's llvm-tools-preview component and cargo-llvm-cov
# (a pinned version). Builds everything instrumented in target/coverage, apart from the normal
# build, then runs:
#   1. the Rust unit and integration tests, and the large tests that `make test` runs in release
#      (`--ignored`: 2^31 reuses of one slot, ten million objects, a million destroyed at thread
#      exit). Those are too slow in a debug build, so the full run builds and measures
#      everything in release (debug assertions are then compiled out); instrumented, they take
#      about five minutes. The only code they reach that nothing else does is slot retirement
#      in src/table.rs. TG_COVERAGE_LONG=0 leaves them out and measures a debug build;
#   2. the instrumented static and shared library, with the C and C++ consumer tests of
#      `make c-tests` linked against it (with the instrumentation runtime linked in for the
#      static library).
# Every step uses the same build, so their counts add up (profiles of a differently built copy
# of a function would be dropped as mismatched). Then it prints the summary per file of src/
# and the lines no test reaches, and writes an HTML report to target/coverage/html. Doc tests
# are not counted (instrumenting them needs a nightly toolchain). A process writes its profile
# when it exits; the test children that abort on purpose (a forked child under the ABORT
# policy, the throwing callbacks of test_unwind, tests/unwind.rs) write theirs from a SIGABRT
# handler installed only in coverage builds (record_coverage_at_abort in tests/common,
# tgt_record_coverage_at_abort in tests/c/tg_test.h), and test_fork's child, which ends by
# SIGKILL, is not counted (tests/fork.rs covers the same from a child that exits).
# A few paths depend on thread timing (a destroy request racing its owner's exit), so figures
# vary by a line or two between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LLVM_COV_VERSION=0.9.1
if [ "${TG_COVERAGE_LONG:-1}" != 0 ]; then
    profile=(--release) dir=release ignored=(-- --include-ignored)
else
    profile=() dir=debug ignored=()
fi

if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
    echo "coverage.sh: installing the llvm-tools-preview component" >&2
    rustup component add llvm-tools-preview
fi
if ! cargo llvm-cov --version 2>/dev/null | grep -qF "$CARGO_LLVM_COV_VERSION"; then
    echo "coverage.sh: installing cargo-llvm-cov $CARGO_LLVM_COV_VERSION" >&2
    cargo install cargo-llvm-cov --version "=$CARGO_LLVM_COV_VERSION" --locked
fi

CARGO_TARGET_DIR="$PWD/target/coverage"
export CARGO_TARGET_DIR
# RUSTC_WRAPPER, the instrumentation flags and LLVM_PROFILE_FILE, for cargo and the C tests.
eval "$(cargo llvm-cov show-env --sh 2>/dev/null)"
cargo llvm-cov clean --workspace

set -x
cargo test --locked "${profile[@]}" --lib --tests "${ignored[@]}"
cargo build --locked "${profile[@]}" -p threadguard-capi  # the C library the C tests link
# The soname link, as `make lib` makes it, so the shared test programs start.
abi=$(sed -n 's/^pub const ABI_VERSION: u32 = \([0-9]*\);.*/\1/p' src/diagnostics.rs)
ln -sfn libthreadguard.so "$CARGO_TARGET_DIR/$dir/libthreadguard.so.$abi"
# The static library carries the instrumented code but not the runtime that writes its counts
# (Rust links that only into executables and shared libraries): link the toolchain's runtime
# into the C programs, pulled in as clang's -fprofile-instr-generate pulls it, so the static
# variants count too.
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profiler=$(ls "$sysroot/lib/rustlib/$host/lib/"libprofiler_builtins-*.rlib)
make --no-print-directory -f tests/c/c-tests.mk c-tests TG_LIB_DIR="$CARGO_TARGET_DIR/$dir" \
    TG_C_BUILD="build/coverage/c-tests-$dir" \
    TG_NATIVE_LIBS="-lpthread -ldl -lm -Wl,-u,__llvm_profile_runtime $profiler"
set +x

# Only the library's own sources: not the tests, the tools or the benchmarks.
ignore='(^|/)(tests|tools|bench|fuzz)/'
cargo llvm-cov report "${profile[@]}" --ignore-filename-regex "$ignore" --html --output-dir "$CARGO_TARGET_DIR" >/dev/null
cargo llvm-cov report "${profile[@]}" --ignore-filename-regex "$ignore" --show-missing-lines
echo "coverage.sh: HTML report in $CARGO_TARGET_DIR/html/index.html"
