#!/usr/bin/env bash
# tests/install/check.sh - `make install-check`: threadguard installed and used as a new user
# would, from directories outside the repository.
#
#  1. make install into a temporary prefix; the layout, the soname, the exported symbols (exactly
#     the header's functions), no debug information in the installed libraries;
#     make install with DESTDIR, then make uninstall, leaves nothing behind
#  2. C with pkg-config: the header's own example, linked against the shared library and,
#     with pkg-config --static, statically
#  3. CMake: find_package(threadguard) and its shared and static imported targets
#  4. Go: a module that imports the wrapper (replace to this checkout's go/) and links the
#     installed library through pkg-config; go vet, and go mod vendor with -mod=vendor; without
#     the library, the build fails naming what is missing
#  5. One copy per process: a Rust library built with export_thread_affine! outside the
#     repository, and a Go program using it and the wrapper (-tags threadguard_external) on
#     the same handles
#     and, for contrast, a Go program holding two copies (its own and the library's, loaded
#     with dlopen): the split is detected and reported once
#  6. Two copies detected: a C program linking libthreadguard.a loads libthreadguard.so
#
# Needs cc, pkg-config, cmake, go and cargo. Environment: MAKE, CARGO, GO, CC; KEEP_WORK=1 keeps
# the scratch directory (its path is in the messages) for a look after a failure.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
here="$repo/tests/install"
MAKE="${MAKE:-make}"
CARGO="${CARGO:-cargo}"
GO="${GO:-go}"
CC="${CC:-cc}"

for tool in "$CC" pkg-config cmake "$GO" "$CARGO" readelf nm; do
    command -v "$tool" >/dev/null || { echo "install-check: $tool not found (Debian: apt-get install -y cmake pkg-config)" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/threadguard-install-check.XXXXXX")"
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
# The prefix stays at one path, with a Go build cache of its own: Go caches a package's
# pkg-config flags under a key that does not include PKG_CONFIG_PATH, so a build against another
# prefix would reuse the flags of an old one.
prefix="$repo/build/install-check/prefix"
export GOCACHE="$repo/build/install-check/gocache"
rm -rf "$prefix"
step() { echo "install-check: $*"; }
fail() { echo "install-check: FAILED: $*" >&2; exit 1; }

# --- 1. install, layout, uninstall -------------------------------------------------------------
abi="$(sed -n 's/^pub const ABI_VERSION: u32 = \([0-9]*\);.*/\1/p' "$repo/src/diagnostics.rs")"
version="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$repo/Cargo.toml" | head -n 1)"
soname="libthreadguard.so.$abi"
step "make install PREFIX=$prefix"
"$MAKE" -s -C "$repo" install PREFIX="$prefix" >/dev/null
expected="include/threadguard.h
lib/cmake/threadguard/threadguardConfig.cmake
lib/cmake/threadguard/threadguardConfigVersion.cmake
lib/libthreadguard.a
lib/libthreadguard.so -> $soname
lib/$soname -> $soname.$version
lib/$soname.$version
lib/pkgconfig/threadguard.pc"
layout="$(cd "$prefix" && find . \( -type f -o -type l \) -printf '%P%l\n' | sed 's/\(\.so[.0-9]*\)\(libthreadguard\)/\1 -> \2/' | sort)"
[ "$layout" = "$expected" ] || fail "installed files:
$layout
expected:
$expected"
readelf -d "$prefix/lib/$soname.$version" | grep -q "Library soname: \[$soname\]" || fail "soname is not $soname"
for lib in libthreadguard.a "$soname.$version"; do
    if readelf -S "$prefix/lib/$lib" 2>/dev/null | grep -q '\.debug_'; then fail "$lib has debug sections"; fi
done
nm -D --defined-only "$prefix/lib/$soname.$version" | awk '{print $3}' | sort > "$work/exported"
grep -o '\btg_[a-z_]*(' "$prefix/include/threadguard.h" | tr -d '(' | sort -u > "$work/declared"
diff -u "$work/declared" "$work/exported" >&2 || fail "the shared library exports other symbols than the header's functions"
step "layout, soname $soname, $(wc -l < "$work/exported") exported functions (the header's), no debug info: ok"

step "make install DESTDIR=... PREFIX=/usr/local, then make uninstall"
"$MAKE" -s -C "$repo" install DESTDIR="$work/stage" PREFIX=/usr/local >/dev/null
grep -qx 'prefix=/usr/local' "$work/stage/usr/local/lib/pkgconfig/threadguard.pc" || fail "threadguard.pc names DESTDIR"
[ "$(find "$work/stage" \( -type f -o -type l \) | wc -l)" = 8 ] || fail "DESTDIR install: not 8 files"
"$MAKE" -s -C "$repo" uninstall DESTDIR="$work/stage" PREFIX=/usr/local >/dev/null
left="$(find "$work/stage" \( -type f -o -type l \))"
[ -z "$left" ] || fail "make uninstall left: $left"
step "DESTDIR install and uninstall: ok"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

# --- 2. C with pkg-config ----------------------------------------------------------------------
# The example the header opens with, built with the commands the header and README give.
mkdir -p "$work/c"
awk '/^ \* Example \(complete/ {on = 1} on && /^ \* Threads:/ {exit} on && /^ \*     / {code = 1} code' "$prefix/include/threadguard.h" |
    sed -e 's/^ \*     //' -e 's/^ \*$//' > "$work/c/example.c"
grep -q 'int main' "$work/c/example.c" || fail "no example found in the installed header"
cd "$work/c"
# shellcheck disable=SC2046
"$CC" -std=c99 -Wall -Wextra -Werror -o example_shared example.c $(pkg-config --cflags --libs threadguard)
# shellcheck disable=SC2046
"$CC" -static -std=c99 -Wall -Wextra -Werror -o example_static example.c $(pkg-config --static --cflags --libs threadguard) 2>"$work/c/static.log" ||
    { cat "$work/c/static.log" >&2; fail "static link"; }
readelf -d example_shared | grep -q "NEEDED.*\[$soname\]" || fail "example_shared does not record $soname"
if readelf -d example_static 2>/dev/null | grep -q 'NEEDED'; then fail "example_static needs shared libraries"; fi
for program in example_shared example_static; do
    output="$(LD_LIBRARY_PATH="$prefix/lib" "./$program")"
    case "$output" in
        "TG_ERR_STALE: tg_with: handle {owner=1, key=0x"*) ;;
        *) fail "$program printed: $output" ;;
    esac
done
step "C with pkg-config, shared and static: $output"

# --- 3. CMake ----------------------------------------------------------------------------------
cp "$here/cmake/CMakeLists.txt" "$work/c/example.c" "$work/" && mkdir -p "$work/cmake" &&
    mv "$work/CMakeLists.txt" "$work/example.c" "$work/cmake/"
cmake -S "$work/cmake" -B "$work/cmake/build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/cmake.log" 2>&1 ||
    { cat "$work/cmake.log" >&2; fail "cmake configure"; }
cmake --build "$work/cmake/build" >>"$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; fail "cmake build"; }
readelf -d "$work/cmake/build/example_shared" | grep -q "NEEDED.*\[$soname\]" || fail "CMake example_shared does not record $soname"
if readelf -d "$work/cmake/build/example_static" | grep -q 'NEEDED.*threadguard'; then fail "CMake example_static needs the shared library"; fi
for program in example_shared example_static; do
    # No LD_LIBRARY_PATH: CMake gives the build tree an rpath to the imported library.
    "$work/cmake/build/$program" | grep -q '^TG_ERR_STALE: ' || fail "CMake $program"
done
step "CMake find_package, threadguard::threadguard and threadguard::threadguard_static: ok"

# --- 4. Go module against the installed library ------------------------------------------------
# No network: the only dependency is the wrapper, replaced by this checkout's go/, with the
# commands the README gives.
export GOPROXY=off GOWORK=off
mkdir -p "$work/go"
cp "$here/go/main.go" "$work/go/"
(cd "$work/go" && "$GO" mod init example.com/app >/dev/null 2>&1 &&
    "$GO" mod edit -require=threadguard.dev/threadguard@v0.0.0 -replace=threadguard.dev/threadguard="$repo/go")
cd "$work/go"
"$GO" vet ./...
"$GO" build -o app .
LD_LIBRARY_PATH="$prefix/lib" ./app
"$GO" mod vendor
"$GO" build -mod=vendor -o app-vendored .
LD_LIBRARY_PATH="$prefix/lib" ./app-vendored >/dev/null
readelf -d app | grep -q "NEEDED.*\[$soname\]" || fail "the Go program does not link $soname"
step "Go module outside the tree (pkg-config, go vet, go mod vendor): ok"

# Without the library, the build says what is missing. (CGO_CFLAGS is part of the key of Go's
# build cache, which does not otherwise see the pkg-config search path change.)
mkdir -p "$work/empty" "$work/gomissing"
cp "$here/go/main.go" "$work/gomissing/"
cd "$work/gomissing"
"$GO" mod init example.com/missing >/dev/null 2>&1
"$GO" mod edit -require=threadguard.dev/threadguard@v0.0.0 -replace=threadguard.dev/threadguard="$repo/go"
if PKG_CONFIG_PATH="$work/empty" PKG_CONFIG_LIBDIR="$work/empty" CGO_CFLAGS="-O2 -g -DTG_NO_LIBRARY" \
    "$GO" build -o /dev/null . 2>"$work/missing.err"; then fail "the Go build succeeded without threadguard.pc"; fi
grep -q 'threadguard\.pc' "$work/missing.err" || { cat "$work/missing.err" >&2; fail "no mention of threadguard.pc"; }
# -tags threadguard_static in a copy of the checkout (go/, include/) where make lib has not run.
mkdir -p "$work/nolib" && cp -r "$repo/go" "$repo/include" "$work/nolib/"
"$GO" mod edit -replace=threadguard.dev/threadguard="$work/nolib/go"
if CGO_CFLAGS="-O2 -g -DTG_NO_LIBRARY" "$GO" build -tags threadguard_static -o /dev/null . 2>"$work/missing.err"; then
    fail "the Go build succeeded with -tags threadguard_static and no library"; fi
grep -q "run 'make lib'" "$work/missing.err" || { cat "$work/missing.err" >&2; fail "no mention of make lib"; }
step "Go without the library: the error names threadguard.pc, or make lib for -tags threadguard_static"

# --- 5. one copy per process: a Rust library and the Go wrapper -------------------------------
mkdir -p "$work/provider/src"
sed "s|@THREADGUARD@|$repo|" "$here/provider/Cargo.toml.in" > "$work/provider/Cargo.toml"
cp "$here/provider/src/lib.rs" "$work/provider/src/"
cp "$repo/Cargo.lock" "$work/provider/"   # the versions this checkout is tested with
step "building the example library (export_thread_affine!, cdylib) outside the tree"
(cd "$work/provider" && CARGO_TARGET_DIR="$work/provider/target" "$CARGO" build --release --quiet)
provider_lib="$work/provider/target/release"
nm -D --defined-only "$provider_lib/libcounters.so" | grep -q ' T tg_copies_loaded$' ||
    fail "libcounters.so does not export the tg_* functions"
mkdir -p "$work/goshared"
cp "$here/goshared/main.go" "$work/goshared/"
cd "$work/goshared"
"$GO" mod init example.com/shared >/dev/null 2>&1
"$GO" mod edit -require=threadguard.dev/threadguard@v0.0.0 -replace=threadguard.dev/threadguard="$repo/go"
export CGO_CFLAGS="-I$here/provider -I$prefix/include" CGO_LDFLAGS="-L$provider_lib"
"$GO" vet -tags threadguard_external ./...
"$GO" build -tags threadguard_external -o shared-one .
unset CGO_CFLAGS CGO_LDFLAGS
if readelf -d shared-one | grep -q 'NEEDED.*threadguard'; then fail "shared-one links libthreadguard"; fi
LD_LIBRARY_PATH="$provider_lib" ./shared-one 2>"$work/one.err" || { cat "$work/one.err" >&2; fail "shared-one"; }
[ ! -s "$work/one.err" ] || { cat "$work/one.err" >&2; fail "shared-one wrote to stderr"; }
step "one copy per process (export_thread_affine! library + Go wrapper with -tags threadguard_external): ok"

# The split that the above avoids: the wrapper's own copy (-tags threadguard_static, linked into
# the program) and the library's, loaded with dlopen; detected, reported once on stderr.
mkdir -p "$work/gosplit"
cp "$here/gosplit/main.go" "$work/gosplit/"
cd "$work/gosplit"
"$GO" mod init example.com/split >/dev/null 2>&1
"$GO" mod edit -require=threadguard.dev/threadguard@v0.0.0 -replace=threadguard.dev/threadguard="$repo/go"
CGO_CFLAGS="-I$repo/include" "$GO" vet -tags threadguard_static ./...
CGO_CFLAGS="-I$repo/include" "$GO" build -tags threadguard_static -o split .
./split "$provider_lib/libcounters.so" 2>"$work/split.err" || { cat "$work/split.err" >&2; fail "split"; }
[ "$(grep -c 'copies of threadguard are loaded in this process' "$work/split.err")" = 1 ] ||
    { cat "$work/split.err" >&2; fail "split: not exactly one report on stderr"; }
step "two copies in a Go program (the wrapper's and a dlopen'd library's): detected and reported once"

# --- 6. two copies in a C program --------------------------------------------------------------
mkdir -p "$work/two" && cd "$work/two"
cp "$here/c/two_copies.c" .
"$CC" -std=c99 -Wall -Wextra -Werror -I"$prefix/include" -o two_copies two_copies.c "$prefix/lib/libthreadguard.a" -lutil -lrt -lpthread -lm -ldl
"$CC" -std=c99 -Wall -Wextra -Werror -rdynamic -I"$prefix/include" -o two_copies_exported two_copies.c "$prefix/lib/libthreadguard.a" -lutil -lrt -lpthread -lm -ldl
# One report per copy that can see the other, each before the queries: the static copy's, and
# with -rdynamic the shared copy's too.
for variant in "two_copies 2 1 1" "two_copies_exported 2 2 2"; do
    set -- $variant
    "./$1" "$prefix/lib/$soname" "$2" "$3" 2>"$work/two.err" || { cat "$work/two.err" >&2; fail "$1"; }
    reports="$(sed '/^two_copies: querying$/q' "$work/two.err" | grep -c 'copies of threadguard are loaded in this process')"
    [ "$reports" = "$4" ] && [ "$(grep -c 'copies of threadguard are loaded' "$work/two.err")" = "$4" ] ||
        { cat "$work/two.err" >&2; fail "$1: want $4 report(s) on stderr, each before the queries"; }
done
step "two copies in one process detected and reported once per copy: ok"

"$MAKE" -s -C "$repo" uninstall PREFIX="$prefix" >/dev/null
left="$(find "$prefix" \( -type f -o -type l \))"
[ -z "$left" ] || fail "make uninstall PREFIX=$prefix left: $left"
step "make uninstall: ok"

step "passed"
