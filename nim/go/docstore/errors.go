package docstore

// #include "shim.h"
import "C"

import "threadguard.dev/threadguard"

// where is what a call reports besides its status: the thread it ran on
// and, if it failed, the library's message, both taken in the same cgo call.
type where = C.nds_where

// check turns a docstore status into a *threadguard.Error carrying the
// message recorded in w.
func check(op string, st C.tg_status, w *where) error {
	if st == C.TG_OK {
		return nil
	}
	n := min(int(w.err_len), C.NDS_ERR_SIZE-1)
	detail := C.GoStringN(&w.err[0], C.int(n))
	if detail == "" {
		detail = op + ": " + C.GoString(C.tg_status_name(st))
	}
	return &threadguard.Error{Op: op, Err: threadguard.StatusError(int32(st)), Detail: detail}
}

// argError is an argument that cannot cross into C (a NUL byte in a key).
func argError(op, detail string) error {
	return &threadguard.Error{Op: op, Err: threadguard.ErrInvalidArgument, Detail: op + ": " + detail}
}
