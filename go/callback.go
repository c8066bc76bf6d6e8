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
// fn must not panic, nor call runtime.Goexit (nor, in a test, t.FailNow or
// t.Fatal): neither can pass through the C frames between C's call and fn,
// so either ends the program with a message saying so and the stack.
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
	returned := false
	defer leaveToC("a Go function called from C", &returned)
	cgo.Handle(h).Value().(func(unsafe.Pointer))(arg)
	returned = true
}

// leaveToC, deferred by Go code that C calls, ends the program when the
// code does not return to C normally: on a panic, and on runtime.Goexit.
// Neither can pass through the C frames below: a panic must not unwind
// them, and Goexit would skip them without running them to their end (a
// borrow would never end, its object would stay busy, its thread's cleanup
// would be refused), and Go cannot stop a Goexit once it has begun. So the
// program ends at once, loudly, with what happened and the stack where it
// happened. *returned reports whether the code ran to its end. (leaveToC
// itself must be the deferred function, for recover to work.)
func leaveToC(what string, returned *bool) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "threadguard: panic in %s: %v\n%s", what, r, debug.Stack())
		os.Exit(2)
	}
	if !*returned {
		exitOnGoexit(what, "the goroutine would end without returning to the C code that called it")
	}
}

// exitOnGoexit ends the program for a runtime.Goexit (called directly, or by
// t.FailNow, t.Fatal, t.Skip and the like) in Go code that C called: what
// names the code, and lost says what the Goexit would leave undone.
func exitOnGoexit(what, lost string) {
	fmt.Fprintf(os.Stderr, "threadguard: runtime.Goexit (which t.FailNow, t.Fatal and t.Skip call) in %s: %s; "+
		"Go cannot stop a Goexit, so the program exits\n%s", what, lost, debug.Stack())
	os.Exit(2)
}
