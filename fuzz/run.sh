#!/usr/bin/env bash
# Runs one fuzz target for a set time on the stable toolchain (installs cargo-fuzz if missing).
#
#   fuzz/run.sh TARGET SECONDS [libFuzzer options...]      e.g. fuzz/run.sh misuse 30
#
# Seeds are read from fuzz/corpus/TARGET and fuzz/regressions/TARGET (committed); new inputs go
# to fuzz/work/corpus/TARGET (not committed); a crashing input is written to
# fuzz/artifacts/TARGET/ and the script exits non-zero. Environment:
#   TG_FUZZ_TOOLCHAIN   rustup toolchain (default: stable)
#   TG_FUZZ_SANITIZER   cargo-fuzz --sanitizer (default: none; address needs a nightly toolchain)
set -euo pipefail

usage="usage: fuzz/run.sh TARGET SECONDS [libFuzzer options...]"
target=${1:?$usage}
seconds=${2:?$usage}
shift 2
case $seconds in '' | *[!0-9]*) echo "$usage" >&2; exit 2 ;; esac

CARGO_FUZZ_VERSION=0.13.2
toolchain=${TG_FUZZ_TOOLCHAIN:-stable}
sanitizer=${TG_FUZZ_SANITIZER:-none}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if ! cargo "+$toolchain" fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "run.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo "+$toolchain" install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked
fi

work="$here/work/corpus/$target"
mkdir -p "$work" "$here/artifacts/$target"
corpora=("$work")
for seeds in "$here/corpus/$target" "$here/regressions/$target"; do
    if [ -d "$seeds" ]; then corpora+=("$seeds"); fi
done

cd "$here"
# libFuzzer writes new inputs to the first corpus directory only, so the seeds stay as committed.
exec cargo "+$toolchain" fuzz run --sanitizer "$sanitizer" "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=60 -print_final_stats=1 "$@"
