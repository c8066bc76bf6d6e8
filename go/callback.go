package threadguard

// #include "shim.h"
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"runtime/debug"
	"sync"
	"unsafe"
)

// Callback lets C code call a Go function, from any thread: a thread Go
// created, or one Go knows nothing of (a pthread started in C, a runner's
// thread). It has the shape of a tg_borrow_fn, so C code can also pass it to
// tg_with:
//
//	void (*fn)(void *arg, void *context) = Func(); fn(arg, Context());
//
// fn receives arg. Only one value crosses into C: Context, a pointer to C
// memory holding a runtime/cgo.Handle, so C keeps no Go pointer. Close the
// Callback once C can no longer call it.
//
// fn must not panic: a panic cannot unwind through the C frames between C's
// call and fn, so it ends the program with the panic's message and stack.
type Callback struct {
	h    cgo.Handle
	ctx  *C.uintptr_t
	once sync.Once
}

// NewCallback wraps fn for calls from C.
func NewCallback(fn func(arg unsafe.Pointer)) *Callback {
	c := &Callback{h: cgo.NewHandle(fn)}
	c.ctx = (*C.uintptr_t)(C.malloc(C.sizeof_uintptr_t))
	*c.ctx = C.uintptr_t(c.h)
	return c
}

// Func returns the C function pointer to call:
// void (*)(void *arg, void *context).
func (c *Callback) Func() unsafe.Pointer { return unsafe.Pointer(C.tgo_callback) }

// Context returns the context argument to pass with Func.
func (c *Callback) Context() unsafe.Pointer { return unsafe.Pointer(c.ctx) }

// Close releases the Callback. Calls from C after Close are a use after
// free. Close is idempotent.
func (c *Callback) Close() {
	c.once.Do(func() {
		c.h.Delete()
		C.free(unsafe.Pointer(c.ctx))
	})
}

// tgoInvoke is the one entry from C into Go: h is a cgo.Handle of a
// func(unsafe.Pointer).
//
//export tgoInvoke
func tgoInvoke(h C.uintptr_t, arg unsafe.Pointer) {
	defer fatalOnPanic("a Go function called from C")
	cgo.Handle(h).Value().(func(unsafe.Pointer))(arg)
}

// fatalOnPanic, deferred by Go code that C calls, ends the program on a
// panic, with the panic's message and stack: a panic must not unwind
// through C frames, and there is no Go caller to return it to.
func fatalOnPanic(what string) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "threadguard: panic in %s: %v\n%s", what, r, debug.Stack())
		os.Exit(2)
	}
}
