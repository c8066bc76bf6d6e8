package docstore

// #include "shim.h"
import "C"

import (
	"fmt"

	"threadguard.dev/threadguard"
)

// sentinels maps the library's status codes to the wrapper's sentinel
// errors, so that errors.Is(err, threadguard.ErrWrongThread) works for
// docstore calls as for threadguard's own.
var sentinels = map[C.tg_status]error{
	C.TG_ERR_NULL_HANDLE:      threadguard.ErrNullHandle,
	C.TG_ERR_WRONG_THREAD:     threadguard.ErrWrongThread,
	C.TG_ERR_OWNER_EXITED:     threadguard.ErrOwnerExited,
	C.TG_ERR_STALE:            threadguard.ErrStale,
	C.TG_ERR_WRONG_TYPE:       threadguard.ErrWrongType,
	C.TG_ERR_BUSY:             threadguard.ErrBusy,
	C.TG_ERR_NULL_POINTER:     threadguard.ErrNullPointer,
	C.TG_ERR_INVALID_ARGUMENT: threadguard.ErrInvalidArgument,
	C.TG_ERR_PANIC:            threadguard.ErrPanic,
	C.TG_ERR_SHUT_DOWN:        threadguard.ErrShutDown,
	C.TG_ERR_LIMIT:            threadguard.ErrLimit,
	C.TG_ERR_TIMEOUT:          threadguard.ErrTimeout,
}

// where is what a call reports besides its status: the thread it ran on
// and, if it failed, the library's message, both taken in the same cgo call.
type where = C.nds_where

// check turns a docstore status into a *threadguard.Error carrying the
// message recorded in w.
func check(op string, st C.tg_status, w *where) error {
	if st == C.TG_OK {
		return nil
	}
	sentinel, ok := sentinels[st]
	if !ok {
		sentinel = fmt.Errorf("unknown status %d (%s)", int32(st), C.GoString(C.tg_status_name(st)))
	}
	n := min(int(w.err_len), C.NDS_ERR_SIZE-1)
	detail := C.GoStringN(&w.err[0], C.int(n))
	if detail == "" {
		detail = op + ": " + C.GoString(C.tg_status_name(st))
	}
	return &threadguard.Error{Op: op, Err: sentinel, Detail: detail}
}

// argError is an argument that cannot cross into C (a NUL byte in a key).
func argError(op, detail string) error {
	return &threadguard.Error{Op: op, Err: threadguard.ErrInvalidArgument, Detail: op + ": " + detail}
}
