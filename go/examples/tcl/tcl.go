// Package tcl wraps Tcl interpreters for use from any goroutine, as a worked
// example of threadguard on a real thread-affine library.
//
// A Tcl interpreter belongs to the thread that created it: every call on it
// (Tcl_EvalEx, Tcl_DeleteInterp, ...) must come from that thread, and Tcl
// aborts the process on some calls from another. An Interp lives on an
// owner: by default a threadguard.Thread of its own that ends with the
// interpreter and finalizes Tcl's per-thread state as it exits; or any
// threadguard.Owner shared with other interpreters (NewOn). Eval runs the
// script there from any goroutine, and a context that ends while a script
// runs cancels it (Tcl_CancelEval).
package tcl

// #cgo CFLAGS: -I/usr/include/tcl8.6
// #cgo LDFLAGS: -ltcl8.6
// #include <stdlib.h>
// #include <tcl.h>
// #include "deleted.h"
import "C"

import (
	"context"
	"errors"
	"sync"
	"unsafe"

	"threadguard.dev/threadguard"
)

var interpTag = threadguard.TagOf("threadguard.dev/threadguard/examples/tcl.Interp")

// ErrCanceled is wrapped by the error of an Eval whose context ended while
// the script ran.
var ErrCanceled = errors.New("tcl: eval canceled")

// Error is a script's error: Tcl's result when Tcl_EvalEx returns
// TCL_ERROR.
type Error struct{ Message string }

func (e *Error) Error() string { return "tcl: " + e.Message }

// Interp is a Tcl interpreter bound to its owner's thread.
type Interp struct {
	ref *threadguard.Ref[C.Tcl_Interp]
	*evalState
	serial uint64 // in the deletion log (see Deletions)
}

// evalState is what the destructor shares with Eval. It must not refer to
// the Interp: the destructor is kept until it runs, and would keep the
// Interp reachable, never collected.
type evalState struct {
	// mu orders Tcl_CancelEval with the end of the script it cancels:
	// running is the Eval in progress (0: none), read and cleared under mu,
	// so that a late cancellation never reaches the next script.
	mu      sync.Mutex
	running uint64
	raw     *C.Tcl_Interp // for Tcl_CancelEval; nil once deleted
	evals   uint64
}

var findExecutable sync.Once

// New creates an interpreter on a threadguard.Thread of its own. The Thread
// ends with the interpreter (Close, or the garbage collector for a dropped
// Interp), calling Tcl_FinalizeThread on its way out.
func New(ctx context.Context) (*Interp, error) {
	th, err := threadguard.NewThread("tcl",
		threadguard.EndWithObjects(),
		threadguard.OnExit(func() error { C.Tcl_FinalizeThread(); return nil }))
	if err != nil {
		return nil, err
	}
	i, err := NewOn(ctx, th)
	if err != nil {
		th.Close()
		return nil, err
	}
	return i, nil
}

// NewOn creates an interpreter on owner, which may hold other interpreters
// too; closing the owner deletes them. Tcl's per-thread state is the
// owner's to finalize.
func NewOn(ctx context.Context, owner threadguard.Owner) (*Interp, error) {
	findExecutable.Do(func() { C.Tcl_FindExecutable(nil) })
	i := &Interp{evalState: &evalState{}}
	st := i.evalState
	var serial uint64
	ref, err := threadguard.NewRef(ctx, owner, interpTag,
		func() (*C.Tcl_Interp, error) {
			interp := C.Tcl_CreateInterp()
			if interp == nil {
				return nil, errors.New("tcl: Tcl_CreateInterp failed")
			}
			serial = uint64(C.tclex_watch(interp))
			st.mu.Lock()
			st.raw = interp
			st.mu.Unlock()
			return interp, nil
		},
		func(interp *C.Tcl_Interp) { // refers to st, not to i
			st.mu.Lock()
			st.raw = nil
			st.mu.Unlock()
			C.Tcl_DeleteInterp(interp)
		})
	if err != nil {
		return nil, err
	}
	i.ref, i.serial = ref, serial
	return i, nil
}

// Eval evaluates script on the interpreter's owner and returns its result.
// A script error is an *Error. If ctx ends before the script has finished,
// Eval returns an error wrapping ErrCanceled and ctx.Err(): a script still
// waiting for its turn never runs, and a running one is canceled
// (Tcl_CancelEval).
func (i *Interp) Eval(ctx context.Context, script string) (string, error) {
	res, err := threadguard.Compute(threadguard.WithInterrupt(ctx, i.cancel), i.ref, func(interp *C.Tcl_Interp) (string, error) {
		cs := C.CString(script)
		defer C.free(unsafe.Pointer(cs))
		i.mu.Lock()
		i.evals++
		i.running = i.evals
		i.mu.Unlock()
		code := C.Tcl_EvalEx(interp, cs, -1, C.TCL_EVAL_GLOBAL)
		i.mu.Lock()
		i.running = 0
		i.mu.Unlock()
		result := C.GoString(C.Tcl_GetStringResult(interp))
		switch {
		case code == C.TCL_OK:
			return result, nil
		case C.Tcl_Canceled(interp, 0) != C.TCL_OK || ctx.Err() != nil:
			return "", errors.Join(ErrCanceled, ctx.Err(), &Error{Message: result})
		default:
			return "", &Error{Message: result}
		}
	})
	if cerr := ctx.Err(); err != nil && cerr != nil && errors.Is(err, cerr) && !errors.Is(err, ErrCanceled) {
		err = errors.Join(ErrCanceled, err) // it never ran
	}
	return res, err
}

// cancel asks the running script, if any, to stop: the interrupt hook,
// called from the goroutine whose Eval context ended.
func (i *Interp) cancel() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.running != 0 {
		C.Tcl_CancelEval(i.raw, nil, nil, 0) // the one call Tcl allows from any thread
	}
}

// Close deletes the interpreter on its owner; on its own Thread, the
// Thread then ends.
func (i *Interp) Close() error { return i.ref.Close() }

// Owner returns the interpreter's owner.
func (i *Interp) Owner() threadguard.Owner { return i.ref.Owner() }

// Handle returns the interpreter's threadguard handle.
func (i *Interp) Handle() threadguard.Handle { return i.ref.Handle() }

// Deletion is what the deletion log knows of one interpreter.
type Deletion struct {
	CreatedOn int // OS thread ID (gettid) that created it
	DeletedOn int // OS thread ID that deleted it; 0 if not deleted
	Deletes   int // times Tcl deleted it
}

// Deletions returns the deletion log's record of i, which a callback Tcl
// runs as it deletes the interpreter (Tcl_CallWhenDeleted) fills in.
func (i *Interp) Deletions() Deletion { return lookup(i.serial) }

func lookup(serial uint64) Deletion {
	var r C.tclex_record
	C.tclex_lookup(C.uint64_t(serial), &r)
	return Deletion{CreatedOn: int(r.created_on), DeletedOn: int(r.deleted_on), Deletes: int(r.deletes)}
}
