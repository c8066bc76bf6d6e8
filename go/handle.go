package threadguard

// #include "shim.h"
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Tag is the type tag of a registered object. The library compares it on
// every borrow, so a handle cannot be used as the wrong type. 0 is invalid.
// Give each Go or C type its own constant, distinct among the libraries
// in one process; TagOf derives one from a name.
type Tag uint32

// Handle is the library's tg_handle: the ID of the owner thread and a key in
// that thread's table. The zero Handle is the null handle.
//
// A Handle is a plain value. The library validates it on every use: a null,
// stale, forged, foreign or mistyped handle gets an error and reaches no
// object. Its methods make the call on the calling goroutine's current OS
// thread and do not route it anywhere: use an Object for that. They are the
// way to use handles that C code hands out.
type Handle struct {
	Owner uint64 // ID of the owner thread (see CurrentThreadID)
	Key   uint64 // slot key in the owner's table; opaque
}

// String formats h as the library's messages do:
// "{owner=7, key=0x27de0697c3e44285}".
func (h Handle) String() string {
	return fmt.Sprintf("{owner=%d, key=0x%016x}", h.Owner, h.Key)
}

// IsNull reports whether h is the null handle.
func (h Handle) IsNull() bool { return h == Handle{} }

func (h Handle) c() C.tg_handle {
	return C.tg_handle{owner: C.uint64_t(h.Owner), key: C.uint64_t(h.Key)}
}

// With borrows the object h names, on the calling OS thread, and calls fn
// with its pointer; fn's error is returned. The object cannot be destroyed
// or borrowed again (ErrBusy) until fn returns, and fn must not keep the
// pointer. A panic in fn is returned as an error wrapping ErrPanic.
//
// fn must return: it must not call runtime.Goexit (nor, in a test,
// t.FailNow, t.Fatal or t.Skip, which call it). fn runs in a callback from
// the library's C code, which Goexit would skip: the borrow would never end.
// Go cannot stop a Goexit once it has begun, so With ends the program
// instead, with a message that names Goexit and the handle, and the stack
// of the call. Report failures from fn as its error, and call t.Fatal after
// With returns.
//
// When the library refuses the borrow (ErrWrongThread, ErrStale,
// ErrWrongType, ErrBusy, ...), fn is not called and nothing changes. A nil
// fn is passed on as NULL: the library checks the handle, then refuses it
// with ErrNullPointer.
func (h Handle) With(tag Tag, fn func(obj unsafe.Pointer) error) error {
	if fn == nil {
		return h.Call(tag, nil, nil)
	}
	var ferr error
	cb := cgo.NewHandle(func(obj unsafe.Pointer) {
		returned := false
		defer func() {
			if !returned { // guard recovers panics: fn called runtime.Goexit
				exitOnGoexit("the function given to With for handle "+h.String(),
					"the goroutine would end without returning to the borrow of the object, which would never end: "+
						"the object would stay busy and its thread's cleanup be refused")
			}
		}()
		ferr = guard("With", func() error { return fn(obj) })
		returned = true
	})
	defer cb.Delete()
	pins.settle()
	if err := checkResult("tg_with", C.tgo_with(h.c(), C.uint32_t(tag), C.uintptr_t(cb))); err != nil {
		return err
	}
	return ferr
}

// Call borrows the object h names, on the calling OS thread, and calls the C
// function fn (a tg_borrow_fn: void (*)(void *object, void *context)) with
// it and context, in a single cgo call: the fast path for work that stays in
// C. The checks and errors are those of With; fn must not keep the object
// pointer, and context, if it points to Go memory, must hold no Go pointers
// (the cgo pointer rules).
func (h Handle) Call(tag Tag, fn, context unsafe.Pointer) error {
	pins.settle()
	return checkResult("tg_with", C.tgo_call(h.c(), C.uint32_t(tag), C.tg_borrow_fn(fn), context))
}

// Destroy runs the object's destructor now. Only the owner thread may do
// so: from another thread it returns ErrWrongThread and destroys nothing.
func (h Handle) Destroy() error {
	return callLocked("tg_destroy", func() C.tg_status { return C.tg_destroy(h.c()) })
}

// DestroyLater asks the owner thread to destroy the object at its next call
// into the library, at RunPending, or when it exits. It may be called from
// any thread; from another thread it checks only that the handle is not null
// and its owner is alive (ErrOwnerExited: the exit already destroyed it).
func (h Handle) DestroyLater() error {
	return callLocked("tg_destroy_later", func() C.tg_status { return C.tg_destroy_later(h.c()) })
}

// OwnerThread returns the ID of the thread that owns h, as the library
// reports it (tg_owner_of).
func (h Handle) OwnerThread() (uint64, error) {
	var id C.uint64_t
	err := callLocked("tg_owner_of", func() C.tg_status { return C.tg_owner_of(h.c(), &id) })
	return uint64(id), err
}

// callLocked makes a library call and reads its status on one OS thread:
// the last-error message is thread-local, and an unlocked goroutine may move
// to another thread between two cgo calls. The borrows (With and Call) need
// no lock: their shim functions return the message with the status, read in
// the same cgo call (see checkResult).
func callLocked(op string, call func() C.tg_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pins.settle()
	return check(op, call())
}
