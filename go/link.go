package threadguard

// The package links the library statically, so a Go binary needs nothing
// at run time. The archive is the one the Rust crate at the module's parent
// directory builds in release mode.

// #cgo CFLAGS: -I${SRCDIR}/../include
// #cgo LDFLAGS: ${SRCDIR}/../target/release/libthreadguard.a -lpthread -ldl -lm
import "C"
