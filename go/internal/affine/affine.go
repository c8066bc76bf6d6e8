// Package affine is a small thread-affine native library (affine.c) for
// threadguard's tests, examples and demo.
//
// An affine object is a counter whose value lives in the creating thread's
// thread-local storage, like the state of a GL context or an interpreter.
// Used from another thread it silently reads and writes that thread's state
// instead, possibly another object's. The library counts such misuse
// (Stats.Misuse), and its destructor records how often it ran on each object
// and on which thread (Lookup), so tests can show that harm was prevented.
//
// The functions taking an object pointer act on the calling OS thread, with
// no checks: that is the point.
package affine

// The tg_* functions it calls come from the threadguard package, which every
// program using this one links.

// #cgo CFLAGS: -I${SRCDIR}/../../../include
// #include <stdlib.h>
// #include "affine.h"
import "C"

import (
	"errors"
	"unsafe"
)

// Tag is the type tag affine objects are registered with.
const Tag = C.AFFINE_TAG

// New creates an object on the calling OS thread, with value 0.
func New() (unsafe.Pointer, error) {
	p := C.affine_new()
	if p == nil {
		return nil, errors.New("affine: out of memory")
	}
	return unsafe.Pointer(p), nil
}

// Destructor returns affine's destructor, a C tg_destructor.
func Destructor() unsafe.Pointer { return unsafe.Pointer(C.affine_destroy) }

// AddBorrow returns affine_add_borrow, a C tg_borrow_fn that adds
// *(int64_t *)context to the object; use it with Handle.Call.
func AddBorrow() unsafe.Pointer { return unsafe.Pointer(C.affine_add_borrow) }

// AddDirect calls affine_add_borrow(obj, context) directly, unchecked: what
// a checked Handle.Call with AddBorrow runs, without the checks.
func AddDirect(obj, context unsafe.Pointer) { C.affine_add_borrow(obj, context) }

// Nop makes an empty cgo call (affine_nop): the price of crossing into C
// and back.
func Nop() { C.affine_nop() }

// CallUnchecked calls affine_call_unchecked: one cgo call with the C
// arguments and result of a checked Handle.Call (a handle by value, a type
// tag, a borrow function and its context; a status and a message), in which
// fn runs at once on the object at address obj, with no lookup and no
// check. Like Handle.Call, it passes no pointer for cgo to check but
// context. It returns the status (always TG_OK).
func CallUnchecked(obj uintptr, tag uint32, fn, context unsafe.Pointer) int32 {
	h := C.tg_handle{key: C.uint64_t(obj)}
	return int32(C.affine_call_unchecked(h, C.uint32_t(tag), C.tg_borrow_fn(fn), context).status)
}

// CInt64 returns C memory holding v (an int64_t, for a borrow function's
// context), and the function that frees it.
func CInt64(v int64) (unsafe.Pointer, func()) {
	p := C.malloc(C.size_t(unsafe.Sizeof(C.int64_t(0))))
	if p == nil {
		panic("affine: out of memory")
	}
	*(*C.int64_t)(p) = C.int64_t(v)
	return p, func() { C.free(p) }
}

// Destroy runs the destructor directly.
func Destroy(obj unsafe.Pointer) { C.affine_destroy(obj) }

// Add adds n to the object's value and returns the new value.
func Add(obj unsafe.Pointer, n int64) int64 {
	return int64(C.affine_add((*C.affine)(obj), C.int64_t(n)))
}

// Value returns the object's value.
func Value(obj unsafe.Pointer) int64 { return int64(C.affine_value((*C.affine)(obj))) }

// Serial returns the object's process-unique serial number.
func Serial(obj unsafe.Pointer) uint64 { return uint64(C.affine_serial((*C.affine)(obj))) }

// Owner returns the threadguard ID of the thread that created the object.
func Owner(obj unsafe.Pointer) uint64 { return uint64(C.affine_owner((*C.affine)(obj))) }

// Stats are the library's counters.
type Stats struct {
	Created           uint64 // objects created
	Destroyed         uint64 // destructor runs
	DestroyedOffOwner uint64 // destructor runs on a thread other than the creator
	Misuse            uint64 // Add and Value calls on a thread other than the creator
}

// ReadStats returns the library's counters.
func ReadStats() Stats {
	var s C.affine_stats
	C.affine_get_stats(&s)
	return Stats{
		Created:           uint64(s.created),
		Destroyed:         uint64(s.destroyed),
		DestroyedOffOwner: uint64(s.destroyed_off_owner),
		Misuse:            uint64(s.misuse),
	}
}

// Record is what the library remembers of one object.
type Record struct {
	Owner       uint64 // thread that created it
	DestroyedOn uint64 // thread the destructor last ran on; 0 if it did not run
	Destroys    uint32 // destructor runs
}

// Lookup returns the record of the object with this serial.
func Lookup(serial uint64) (Record, bool) {
	var r C.affine_record
	if C.affine_lookup(C.uint64_t(serial), &r) == 0 {
		return Record{}, false
	}
	return Record{Owner: uint64(r.owner), DestroyedOn: uint64(r.destroyed_on), Destroys: uint32(r.destroys)}, true
}

// RegisterHere creates an object and registers it with threadguard on the
// calling OS thread, from C, as a C library guarding its own objects would.
// It returns the object, the handle's two words and the tg_status.
func RegisterHere() (obj unsafe.Pointer, owner, key uint64, status int32) {
	var a *C.affine
	var h C.tg_handle
	st := C.affine_register_here(&a, &h)
	return unsafe.Pointer(a), uint64(h.owner), uint64(h.key), int32(st)
}

// CThreadResult reports what BorrowOnNewThread's pthread did.
type CThreadResult struct {
	ThreadID       uint64 // the pthread's threadguard ID
	Serial         uint64 // the object's serial
	RegisterStatus int32  // tg_register's status
	WithStatus     int32  // tg_with's status
	DestroyStatus  int32  // tg_destroy's status
}

// BorrowOnNewThread starts a pthread that Go did not create, which creates
// and registers an object, calls tg_with(h, Tag, fn, context) on it (fn is
// a C tg_borrow_fn), destroys it and exits; then it returns what happened.
func BorrowOnNewThread(fn, context unsafe.Pointer) (CThreadResult, error) {
	var r C.affine_cthread_result
	if rc := C.affine_borrow_on_new_thread(C.tg_borrow_fn(fn), context, &r); rc != 0 {
		return CThreadResult{}, errors.New("affine: pthread_create or pthread_join failed")
	}
	return CThreadResult{
		ThreadID:       uint64(r.thread_id),
		Serial:         uint64(r.serial),
		RegisterStatus: int32(r.register_status),
		WithStatus:     int32(r.with_status),
		DestroyStatus:  int32(r.destroy_status),
	}, nil
}

// ThreadHandle returns the two words of the handle that BorrowOnNewThread
// registered on the calling thread: call it from inside fn.
func ThreadHandle() (owner, key uint64) {
	h := C.affine_thread_handle()
	return uint64(h.owner), uint64(h.key)
}
