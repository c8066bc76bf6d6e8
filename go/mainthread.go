package threadguard

// #include "shim.h"
import "C"

import (
	"bytes"
	"context"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// MainThread is the process's main thread as an owner, for libraries that
// must be called there (Cocoa and GLFW on macOS, several GUI toolkits,
// some interpreters). There is one, returned by Main.
//
// The program hands its main goroutine over with Run, called from main (or
// from TestMain in a test binary), with the main goroutine locked to the
// main thread from init:
//
//	func init() { runtime.LockOSThread() } // main stays on the main thread
//
//	func main() {
//		err := threadguard.Main().Run(func() {
//			// the program, on another goroutine; any goroutine may
//			// send work to the main thread with Main().Do
//		})
//		...
//	}
//
// While Run runs, the main thread works as a Thread does: Do, Go and New
// run work there from any goroutine, one function at a time, in submission
// order; objects created by that work are owned by the main thread, and
// their methods route there; work that calls Do runs the inner function
// inline. A panic in work is returned as ErrPanic. runtime.Goexit in work
// (t.FailNow, t.Fatal) ends the program with a message, since it would end
// the main goroutine without main returning.
//
// Before Run and after the main thread is given back, every call returns
// at once with an error wrapping ErrShutDown that says which: it never
// blocks waiting for a hand-over.
type MainThread struct {
	t     Thread       // the queue and its serving loop, run by Run
	state atomic.Int32 // mainIdle → mainStarting → mainServing → mainGivenBack
}

const (
	mainIdle int32 = iota
	mainStarting
	mainServing
	mainGivenBack
)

// mainThreadID is the library's ID of the process's main thread, read in
// init (which runs there), or 0 if init ran elsewhere (a Go archive loaded
// by a C program).
var mainThreadID uint64

var theMain = func() *MainThread {
	m := &MainThread{}
	m.t = Thread{name: "main", main: m, wake: make(chan struct{}, 1), done: make(chan struct{})}
	return m
}()

func init() {
	if C.tgo_is_main_thread() != 0 {
		mainThreadID = uint64(C.tg_current_thread_id())
		theMain.t.id = mainThreadID
	}
}

// Main returns the process's main thread as an owner.
func Main() *MainThread { return theMain }

// ID returns the library's ID of the main thread, or 0 if the package was
// not initialized there.
func (m *MainThread) ID() uint64 { return m.t.id }

// Name returns "main".
func (m *MainThread) Name() string { return m.t.name }

// String returns the ID and name, as in `1 ("main")`.
func (m *MainThread) String() string { return m.t.String() }

// Run hands the main thread over: it runs fn on a new goroutine and, on the
// calling goroutine, runs the work sent to the main thread until fn returns
// or Close is called. Then it gives the main thread back: work still queued
// fails with ErrShutDown, the work running finishes, and everything the
// main thread owns (the objects created by its work, and any the main
// goroutine created itself) is destroyed on it (tg_thread_cleanup). Run
// returns after that and after fn has returned, with the cleanup's error.
//
// Run must be called on the main goroutine while it is on the main thread:
// lock it there from init (runtime.LockOSThread in an init function), so
// that no other goroutine ever runs on the main thread. Called elsewhere,
// it returns an error wrapping ErrWrongThread. The main thread can be
// handed over once per process: a second Run returns an error wrapping
// ErrShutDown. A panic in fn ends the program as a panic in any goroutine
// does.
func (m *MainThread) Run(fn func()) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if C.tgo_is_main_thread() == 0 || m.t.id == 0 {
		return newError("MainThread.Run", ErrWrongThread, "called on thread "+
			threadLabel(CurrentThreadID(), "")+", not on the process's main thread: call Run from main (or TestMain), "+
			"with the main goroutine locked to the main thread from init (runtime.LockOSThread in an init function)")
	}
	if !m.state.CompareAndSwap(mainIdle, mainStarting) {
		return newError("MainThread.Run", ErrShutDown, "the main thread was handed over already; it can be handed over once")
	}
	name := C.CString(m.t.name)
	err := check("tg_set_thread_name", C.tg_set_thread_name(name))
	C.free(unsafe.Pointer(name))
	if err != nil {
		m.state.Store(mainGivenBack)
		m.t.shutdown()
		close(m.t.done)
		return err
	}
	owners.Store(m.t.id, Owner(m))
	m.state.Store(mainServing)
	fnDone := make(chan struct{})
	go func() {
		defer close(fnDone)
		defer m.t.shutdown()
		fn()
	}()
	returned := false
	defer func() {
		if !returned {
			exitOnGoexit("work sent to the main thread",
				"it would end the main goroutine without main returning, and the program would go on without its main thread")
		}
	}()
	m.t.serve()
	m.state.Store(mainGivenBack)
	m.t.err = check("tg_thread_cleanup", C.tg_thread_cleanup())
	owners.Delete(m.t.id)
	close(m.t.done)
	returned = true
	<-fnDone
	return m.t.err
}

// Do runs fn on the main thread and returns its error, as Thread.Do does.
// Before Run and after the main thread is given back it returns an error
// wrapping ErrShutDown at once.
func (m *MainThread) Do(ctx context.Context, fn func() error) error {
	if m.state.Load() < mainServing {
		if err := ctx.Err(); err != nil {
			return err
		}
		return m.shutDownError("MainThread.Do")
	}
	return m.t.Do(ctx, fn)
}

// Go queues fn to run on the main thread and returns at once, as Thread.Go
// does; before Run the channel receives an error wrapping ErrShutDown.
func (m *MainThread) Go(fn func() error) <-chan error {
	if m.state.Load() < mainServing {
		return goChannel(m.shutDownError("MainThread.Go"))
	}
	return m.t.Go(fn)
}

// New creates an object on the main thread and registers it there, as
// Thread.New does: the object is owned by the main thread, its methods
// route calls there, and giving the main thread back destroys it.
func (m *MainThread) New(ctx context.Context, tag Tag, destroy unsafe.Pointer, create func() (unsafe.Pointer, error)) (*Object, error) {
	var o *Object
	err := m.Do(ctx, func() (err error) {
		o, err = New(tag, destroy, create)
		return err
	})
	return o, err
}

// Close gives the main thread back before Run's fn returns: it ends the
// hand-over as fn's return does, waits until Run has destroyed what the
// main thread owns, and returns the cleanup's error; Run itself returns
// once fn has returned too. Called from work on
// the main thread, it starts that and returns nil; the cleanup runs when
// the work returns. Before Run, Close returns an error wrapping ErrShutDown
// and changes nothing.
func (m *MainThread) Close() error {
	if m.state.Load() < mainServing {
		return m.shutDownError("MainThread.Close")
	}
	m.t.shutdown()
	if m.t.onThread() {
		return nil
	}
	<-m.t.done
	return m.t.err
}

func (m *MainThread) shutDownError(op string) error {
	if m.state.Load() < mainServing {
		return newError(op, ErrShutDown, "the main thread has not been handed over: "+
			"call Main().Run from main (or TestMain) first")
	}
	return newError(op, ErrShutDown, "the main thread "+m.String()+" was given back")
}

func (m *MainThread) onOwner() bool {
	return m.state.Load() >= mainServing && m.t.onThread()
}

func (m *MainThread) finished() (<-chan struct{}, *error) { return m.t.done, &m.t.err }

func (m *MainThread) forgotten() { m.t.poke() }

// onMainThread reports whether the caller runs on the process's main
// thread. A variable, so that tests can stand in for the scheduler.
var onMainThread = func() bool {
	if mainThreadID != 0 {
		return CurrentThreadID() == mainThreadID
	}
	return C.tgo_is_main_thread() != 0
}

// isMainGoroutine reports whether the caller is the main goroutine (the one
// that runs main), which the runtime numbers 1.
func isMainGoroutine() bool {
	var buf [32]byte
	return bytes.HasPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine 1 "))
}

// checkPinnable refuses to bind an object to a goroutine other than the
// main goroutine that runs on the process's main thread (New, outside the
// work of an owner). Go parks the main thread instead of ending it when a
// goroutine locked there exits, so such an object would never be destroyed
// and the lock its goroutine holds would stay owed. Locking the main
// goroutine to the main thread from init keeps every other goroutine off
// it; without that, the scheduler may put any goroutine there.
func checkPinnable() error {
	if !onMainThread() || isMainGoroutine() {
		return nil
	}
	return newError("New", ErrWrongThread, "the calling goroutine runs on the process's main thread "+
		threadLabel(CurrentThreadID(), "main")+", where an object bound to it would never be destroyed if it exited "+
		"(Go parks the main thread instead of ending it): create the object on an owner (Thread.New, Runner.New, "+
		"Main().New), or lock the main goroutine to the main thread from init so that no other goroutine runs there")
}
