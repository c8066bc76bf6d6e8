package threadguard

// The library is linked statically, so a Go binary needs nothing at run
// time.

// #cgo CFLAGS: -I${SRCDIR}/../include
// #cgo LDFLAGS: ${SRCDIR}/../target/release/libthreadguard.a -lpthread -ldl -lm
import "C"
