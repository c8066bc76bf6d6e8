package threadguard

// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"strconv"
	"unsafe"
)

// Sentinel errors, one for each status code of the library. Every failure
// that the library or this package reports is an *Error wrapping one of
// them: test with errors.Is. Its text adds the library's message (which
// handle, which owner thread, which caller). Errors returned by the caller's
// own functions, and context errors, pass through unchanged.
var (
	// ErrNullHandle: the handle is the zero (null) handle (TG_ERR_NULL_HANDLE).
	ErrNullHandle = errors.New("null handle")
	// ErrWrongThread: the handle is owned by another live thread
	// (TG_ERR_WRONG_THREAD). Nothing was touched.
	ErrWrongThread = errors.New("wrong thread")
	// ErrOwnerExited: the handle's owner thread has exited, and its objects
	// were destroyed with it (TG_ERR_OWNER_EXITED).
	ErrOwnerExited = errors.New("owner thread exited")
	// ErrStale: the handle names no live object: it was destroyed, or the
	// handle was never issued (TG_ERR_STALE).
	ErrStale = errors.New("stale handle")
	// ErrWrongType: the object's type tag differs from the one asked for
	// (TG_ERR_WRONG_TYPE).
	ErrWrongType = errors.New("wrong type")
	// ErrBusy: the object is borrowed further up this thread's stack, or the
	// call was made from inside a borrow where it is not allowed
	// (TG_ERR_BUSY).
	ErrBusy = errors.New("object busy")
	// ErrNullPointer: a required pointer argument was NULL
	// (TG_ERR_NULL_POINTER).
	ErrNullPointer = errors.New("null pointer argument")
	// ErrInvalidArgument: an argument was out of range, such as type tag 0
	// (TG_ERR_INVALID_ARGUMENT).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrPanic: a panic was caught: in the library (TG_ERR_PANIC), or in Go
	// code that this package ran for the caller (work given to a Thread or
	// a Runner, a function given to With).
	ErrPanic = errors.New("panic")
	// ErrShutDown: the thread is shutting down or closed (TG_ERR_SHUT_DOWN);
	// work submitted to a closed Thread gets it too.
	ErrShutDown = errors.New("shut down")
	// ErrLimit: a library limit was reached (TG_ERR_LIMIT).
	ErrLimit = errors.New("limit reached")
	// ErrTimeout: a wait timed out (TG_ERR_TIMEOUT).
	ErrTimeout = errors.New("timed out")
)

// sentinels maps each tg_status code to its sentinel error.
var sentinels = [...]error{
	C.TG_ERR_NULL_HANDLE:      ErrNullHandle,
	C.TG_ERR_WRONG_THREAD:     ErrWrongThread,
	C.TG_ERR_OWNER_EXITED:     ErrOwnerExited,
	C.TG_ERR_STALE:            ErrStale,
	C.TG_ERR_WRONG_TYPE:       ErrWrongType,
	C.TG_ERR_BUSY:             ErrBusy,
	C.TG_ERR_NULL_POINTER:     ErrNullPointer,
	C.TG_ERR_INVALID_ARGUMENT: ErrInvalidArgument,
	C.TG_ERR_PANIC:            ErrPanic,
	C.TG_ERR_SHUT_DOWN:        ErrShutDown,
	C.TG_ERR_LIMIT:            ErrLimit,
	C.TG_ERR_TIMEOUT:          ErrTimeout,
}

// Error is a failed operation: the operation, the sentinel for its status
// and the detail message.
type Error struct {
	// Op is the library entry point (such as "tg_with") or the method of
	// this package (such as "Thread.Do") that failed.
	Op string
	// Err is the sentinel error for the status, such as ErrWrongThread, or
	// an error describing a status code this package does not know.
	Err error
	// Detail is the library's last-error message for the call, or the
	// package's own explanation; it may be empty.
	Detail string
}

// Error returns "threadguard: REASON: DETAIL", or "threadguard: OP: REASON"
// if there is no detail. The detail names the operation itself, as in
// "threadguard: wrong thread: tg_with: handle {...} is owned by thread 7
// ("gl-main", alive), used from thread 9".
func (e *Error) Error() string {
	if e.Detail == "" {
		return "threadguard: " + e.Op + ": " + e.Err.Error()
	}
	return "threadguard: " + e.Err.Error() + ": " + e.Detail
}

// Unwrap returns the sentinel error, for errors.Is.
func (e *Error) Unwrap() error { return e.Err }

// StatusError returns the sentinel error for a status code of the C library
// (a tg_status), such as ErrWrongThread for TG_ERR_WRONG_THREAD: for packages
// that call the library through cgo code of their own and want errors.Is to
// work as for this package's errors. It returns nil for TG_OK (0), and an
// error naming the code for a code this package does not know.
func StatusError(code int32) error {
	if code == 0 {
		return nil
	}
	if code > 0 && int(code) < len(sentinels) && sentinels[code] != nil {
		return sentinels[code]
	}
	return fmt.Errorf("unknown status %d (%s)", code, statusName(code))
}

// statusName returns the library's static name for a status code.
func statusName(code int32) string {
	return C.GoString(C.tg_status_name(C.tg_status(code)))
}

// check turns a status into an error carrying the last-error message.
//
// It must run on the OS thread that made the failing call, before any other
// library call there: the message is thread-local. Callers keep the goroutine
// locked across the call and check (see callLocked), or run on a Thread.
func check(op string, st C.tg_status) error {
	if st == C.TG_OK {
		return nil
	}
	return failure(op, st, C.tgo_last_error())
}

// checkResult is check for a call through the shim, which has read the
// message on the failing thread already: it can run on any thread.
func checkResult(op string, r C.tgo_result) error {
	if r.status == C.TG_OK {
		return nil
	}
	return failure(op, r.status, r.message)
}

// failure returns the error for a failed status and its last-error message,
// a malloc'd C string (or NULL), which it frees.
func failure(op string, st C.tg_status, message *C.char) error {
	detail := C.GoString(message)
	C.free(unsafe.Pointer(message))
	return &Error{Op: op, Err: StatusError(int32(st)), Detail: detail}
}

// newError returns an error of this package's own making.
func newError(op string, sentinel error, detail string) error {
	return &Error{Op: op, Err: sentinel, Detail: op + ": " + detail}
}

// guard runs fn, turning a panic into an error wrapping ErrPanic.
func guard(op string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newError(op, ErrPanic, fmt.Sprint("recovered: ", r))
		}
	}()
	return fn()
}

// threadLabel formats a thread for messages: `7 ("gl-main")`.
func threadLabel(id uint64, name string) string {
	return strconv.FormatUint(id, 10) + " (" + strconv.Quote(name) + ")"
}
