package threadguard

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Object is a native object registered with the library and bound to its
// owner: a Thread, a Runner, the MainThread, or the goroutine that created
// it.
//
// Created by work running on an Owner (see Thread.New, Runner.New and
// MainThread.New), the object is owned by that thread, and With and Close
// route there from any goroutine.
//
// Created anywhere else, the object is owned by the creating goroutine's
// current OS thread, and New locks the goroutine to that thread
// (runtime.LockOSThread) for as long as the object lives. With and Close
// then work only from that goroutine: from any other they return
// ErrWrongThread and touch nothing.
//
// An Object dropped without Close is destroyed on its owner thread after
// the garbage collector finds it unreachable (see New).
type Object struct {
	h       Handle
	tag     Tag
	owner   Owner // the Thread, Runner or MainThread; nil: pinned to the creating goroutine
	closed  atomic.Bool
	cleanup runtime.Cleanup
}

// New calls create and registers the object it returns (tg_register) with
// type tag tag and destructor destroy, on the same OS thread: the goroutine
// is locked before create runs, so a thread-affine constructor and the
// registration cannot land on different threads.
//
// destroy is a C function pointer of type tg_destructor (void (*)(void *)),
// or nil; the library calls it exactly once, on the owner thread. The object
// pointer must not point to Go memory. Nothing checks the function's
// signature, and cgo cannot take the address of a static C function (the
// function must be visible to the linker); NewRef takes a typed Go
// destructor instead, which may call a C destructor of any signature. If create fails, New returns its
// error. If the registration fails, New runs destroy on the object at once
// and returns the library's error (ErrInvalidArgument for tag 0, ErrShutDown
// during the Thread's Close).
//
// Called from work running on an Owner (a Thread, a Runner, the
// MainThread), New binds the object to it. Called anywhere else, it binds
// the object to the calling
// goroutine, which stays locked to its OS thread until the object is closed:
// one lock count per live object, released by the successful Close. If the
// object is dropped instead, its cleanup cannot release the lock from the
// garbage collector's goroutine; the release is owed, and the owner pays it
// at its next call into this package. A goroutine that exits with live
// objects ends its OS thread (it is locked), and the thread's exit destroys
// them. The process's main thread is the exception, as Go parks it instead:
// there New binds objects only to the main goroutine (which ends only with
// the process) and returns an error wrapping ErrWrongThread to any other
// goroutine the scheduler put there, without calling create. Locking the
// main goroutine to the main thread from init keeps other goroutines off
// it (see MainThread).
//
// A forgotten object's cleanup (runtime.AddCleanup) asks the owner thread to
// destroy it (tg_destroy_later). A Thread is also asked to run that at once,
// and a Runner does so unasked; a pinned goroutine does so at its next call
// into the library (or RunPending). Close remains the normal way to destroy an object.
func New(tag Tag, destroy unsafe.Pointer, create func() (unsafe.Pointer, error)) (o *Object, err error) {
	return newAt(callerSite(), tag, destroy, create)
}

// newAt is New, recording s (if not nil) as the registration site.
func newAt(s *site, tag Tag, destroy unsafe.Pointer, create func() (unsafe.Pointer, error)) (*Object, error) {
	return bind(tag, func() (C.tg_handle, error) {
		obj, err := create()
		if err != nil {
			return C.tg_handle{}, err
		}
		var ch C.tg_handle
		if err := check("tg_register", register(tag, obj, destroy, &ch, s)); err != nil {
			C.tgo_run_destructor(C.tg_destructor(destroy), obj)
			return C.tg_handle{}, err
		}
		return ch, nil
	})
}

// bind makes the Object for the handle that attach puts in the calling
// thread's table (New registers, Adopt adopts), bound to the Thread, Runner
// or MainThread whose work runs it, or else to the calling goroutine, which
// then stays locked to its OS thread until the object is closed.
func bind(tag Tag, attach func() (C.tg_handle, error)) (o *Object, err error) {
	runtime.LockOSThread() // kept when the object is pinned to this goroutine
	owner := currentOwner()
	pinned := owner == nil
	defer func() {
		if !pinned || o == nil {
			runtime.UnlockOSThread()
		}
	}()
	if pinned {
		if err := checkPinnable(); err != nil {
			return nil, err
		}
	}
	pins.settle()
	ch, err := attach()
	if err != nil {
		return nil, err
	}
	o = &Object{h: Handle{Owner: uint64(ch.owner), Key: uint64(ch.key)}, tag: tag, owner: owner}
	if t, ok := owner.(*Thread); ok {
		t.adopt()
	}
	o.cleanup = runtime.AddCleanup(o, forgotten.destroy, forgotten{h: o.h, owner: owner})
	return o, nil
}

// Handle returns the object's handle, for C code or for the checked calls
// of Handle, which do not route.
func (o *Object) Handle() Handle { return o.h }

// Owner returns the Thread, Runner or MainThread the object is bound to,
// or nil if it is bound to the goroutine that created it.
func (o *Object) Owner() Owner { return o.owner }

// Thread returns the Thread the object is bound to, or nil if it is bound
// to another owner or to the goroutine that created it.
func (o *Object) Thread() *Thread {
	t, _ := o.owner.(*Thread)
	return t
}

// Runner returns the Runner the object is bound to, or nil if it is bound
// to another owner or to the goroutine that created it.
func (o *Object) Runner() *Runner {
	r, _ := o.owner.(*Runner)
	return r
}

// route returns what runs a call on the object's owner (its Do), or nil
// for an object pinned to its goroutine.
func (o *Object) route() func(context.Context, func() error) error {
	if o.owner == nil {
		return nil
	}
	return o.owner.Do
}

// With borrows the object on its owner thread and calls fn with its
// pointer; see Handle.With. For an object bound to a Thread or a Runner,
// the call runs there, and ctx applies as in Thread.Do. For an object bound
// to a goroutine, With runs fn on the calling goroutine if that is the owner,
// and otherwise returns ErrWrongThread without calling it. fn must return:
// runtime.Goexit in fn (t.FailNow, t.Fatal) ends the program, as
// Handle.With explains.
func (o *Object) With(ctx context.Context, fn func(obj unsafe.Pointer) error) error {
	defer runtime.KeepAlive(o)
	if do := o.route(); do != nil {
		return do(ctx, func() error { return o.h.With(o.tag, fn) })
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return o.h.With(o.tag, fn)
}

// Call is With for a C borrow function (see Handle.Call): fn runs with the
// object and context on the owner thread, in one cgo call there, without a
// callback into Go. context may point to Go memory that holds no Go
// pointers, such as a Go struct of C values for the arguments and the
// results: the caller waits until fn has run, so the results need no C
// allocation. For results from Go code, see Compute.
func (o *Object) Call(ctx context.Context, fn, context unsafe.Pointer) error {
	if o.owner != nil {
		return o.callOnOwner(ctx, fn, context)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// o.h.Call(o.tag, fn, context), written out: the calling goroutine's
	// check, the hot path of Go code that stays in C, then costs one Go
	// frame on top of the cgo call, as a cgo call of the same arguments does.
	pins.settle()
	err := checkResult("tg_with", C.tgo_call(o.h.c(), C.uint32_t(o.tag), C.tg_borrow_fn(fn), context))
	runtime.KeepAlive(o)
	return err
}

// callOnOwner is Call for an object bound to a Thread, a Runner or the
// MainThread: the call runs there.
func (o *Object) callOnOwner(ctx context.Context, fn, context unsafe.Pointer) error {
	defer runtime.KeepAlive(o)
	return o.owner.Do(ctx, func() error { return o.h.Call(o.tag, fn, context) })
}

// Close destroys the object on its owner thread, running its destructor,
// and cancels its cleanup. It returns nil only once the object has been
// destroyed. It is idempotent: after a successful Close, and after the
// Close of the object's Thread or the Stop of its Runner (which destroyed
// it), it returns nil. If that Close or Stop is under way, Close waits for
// it to finish (called on the owner's own thread meanwhile, from its last
// work or a destructor, it destroys the object at once), and returns an
// error if it failed.
//
// For an object bound to a goroutine, only that goroutine can close it:
// from another goroutine Close returns ErrWrongThread and changes nothing
// (the lock it would release is the owner's). Close from inside the
// object's own With returns ErrBusy. If the library reports that the object
// is already gone (ErrStale: something destroyed its handle directly;
// ErrOwnerExited: its owner thread exited), Close returns that error once
// and the Object counts as closed.
func (o *Object) Close() error {
	defer runtime.KeepAlive(o)
	if o.closed.Load() {
		return nil
	}
	at := callerSite()
	destroy := func() error { return o.destroyAt(at) }
	do := o.route()
	if do == nil {
		return destroy()
	}
	err := do(context.Background(), destroy)
	if errors.Is(err, ErrShutDown) {
		return o.ownerShutDown()
	}
	return err
}

// ownerShutDown finishes a Close that found the owner Thread closing or
// Runner stopping: that destroys every object the owner still has. Close
// waits for it, and reports success only if it succeeded. On the owner's
// own thread, where that shutdown waits for the caller to return, the
// object is destroyed at once instead.
func (o *Object) ownerShutDown() error {
	if o.owner.onOwner() {
		return o.destroy()
	}
	done, result := o.owner.finished()
	<-done
	if err := *result; err != nil {
		sentinel := ErrShutDown
		var e *Error
		if errors.As(err, &e) {
			sentinel = e.Err
		}
		return newError("Object.Close", sentinel, "object "+o.h.String()+
			" may not have been destroyed: the shutdown of its owner failed: "+err.Error())
	}
	if o.closed.CompareAndSwap(false, true) {
		o.cleanup.Stop() // the owner's shutdown destroyed it
	}
	return nil
}

// destroy runs on the owner thread (or, for a pinned object, on the caller,
// where the library refuses it unless that is the owner).
func (o *Object) destroy() error { return o.destroyAt(nil) }

// destroyAt is destroy, recording s (if not nil) as the destruction site.
func (o *Object) destroyAt(s *site) error {
	if o.closed.Load() {
		return nil
	}
	err := destroyHandle(o.h, s)
	gone := errors.Is(err, ErrStale) || errors.Is(err, ErrOwnerExited)
	if err != nil && !gone {
		return err // refused; nothing changed
	}
	if !o.closed.CompareAndSwap(false, true) {
		return nil
	}
	o.cleanup.Stop()
	if t, ok := o.owner.(*Thread); ok {
		defer t.release()
	}
	if o.owner == nil && !errors.Is(err, ErrOwnerExited) {
		// Destroyed by the owner (or found destroyed there): this is the
		// owner goroutine, holding the lock New took for the object.
		runtime.UnlockOSThread()
	}
	return err
}

// forgotten is what an Object's cleanup needs; it must not refer to the
// Object itself.
type forgotten struct {
	h     Handle
	owner Owner // nil: bound to its goroutine, which is owed an unlock
}

// destroy runs on the cleanup goroutine once the Object is unreachable.
func (f forgotten) destroy() {
	err := f.h.DestroyLater()
	switch {
	case err != nil:
		// ErrOwnerExited: the owner's exit (or its Thread's Close, or its
		// Runner's Stop) already destroyed the object, and released any
		// lock with the thread.
	case f.owner != nil:
		f.owner.forgotten()
		if t, ok := f.owner.(*Thread); ok {
			t.release()
		}
	default:
		pins.owe(f.h.Owner)
	}
}
