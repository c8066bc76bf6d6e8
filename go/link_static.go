//go:build threadguard_static && !threadguard_external

package threadguard

// In-tree build (-tags threadguard_static, as make test, make demo and make
// bench use it): the header in ../include and the static library that
// `make lib` builds in ../target/release, linked into the binary, which then
// needs nothing at run time. The library path is relative to the include
// directory in the check below.

// #cgo CFLAGS: -I${SRCDIR}/../include
// #cgo LDFLAGS: ${SRCDIR}/../target/release/libthreadguard.a -lutil -lrt -lpthread -lm -ldl
// #if !__has_include("../target/release/libthreadguard.a")
// #error "-tags threadguard_static links target/release/libthreadguard.a of the threadguard checkout, which is not built: run 'make lib' in the repository root, or build without the tag against the installed library (make install)"
// #endif
import "C"
