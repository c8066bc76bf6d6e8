package threadguard

// #include "shim.h"
import "C"

import (
	"context"
	"sync"
	"unsafe"
)

// Owner is what an object can be bound to and what runs work on its
// thread: a *Thread, a *Runner or the *MainThread. The three have the same
// methods with the same behaviour, so code that only creates objects and
// sends them work can hold any of them:
//
//	Owner method   Thread         Runner                 MainThread
//	Do             Do             Do (also Call)         Do
//	Go             Go             Go                     Go
//	New            New            New                    New
//	Close          Close          Close (also Stop)      Close (hands back)
//	ID             ID             ID (also ThreadID)     ID
//	Name, String   Name, String   Name, String           Name, String
//
// The differences that are real stay on the concrete types:
//
//   - A Thread is a goroutine locked to an OS thread of its own, with an
//     unbounded queue: Go never refuses work for lack of room.
//   - A Runner is a thread that the library starts, with a bounded queue:
//     Do waits for room, Go reports ErrLimit on the channel when the queue
//     is full, and Post and PostTo deliver outcomes to a function on the
//     runner or to a CompletionQueue.
//   - The MainThread is the process's main thread, which the program hands
//     over from its main goroutine (MainThread.Run); until then and after it
//     is given back, every call returns an error wrapping ErrShutDown.
//
// Owner is implemented only by this package's types.
type Owner interface {
	// ID returns the library's ID of the owner's thread: the owner ID in
	// the handles of the objects it owns.
	ID() uint64
	// Name returns the owner's name, as the library's messages show it.
	Name() string
	// String returns the ID and name, as in `7 ("gl-main")`.
	String() string
	// Do runs fn on the owner's thread and returns its error. While fn
	// waits in the queue, a done ctx takes it out and Do returns
	// ctx.Err(); once fn has started, Do waits for it. A panic in fn is
	// returned as an error wrapping ErrPanic. From work already running on
	// the owner, Do runs fn inline.
	Do(ctx context.Context, fn func() error) error
	// Go queues fn and returns at once; the channel (buffered, never
	// closed) receives fn's error exactly once, or the reason it never
	// ran.
	Go(fn func() error) <-chan error
	// New creates an object on the owner's thread (see the function New),
	// bound to the owner: its methods route calls there.
	New(ctx context.Context, tag Tag, destroy unsafe.Pointer, create func() (unsafe.Pointer, error)) (*Object, error)
	// Close stops the owner once the work running now has finished: work
	// still queued fails with ErrShutDown, and everything the owner's
	// thread owns is destroyed there. It waits for that and returns its
	// error; later calls return the same. (From the owner's own work, a
	// Thread and the MainThread start the shutdown and return nil; a
	// Runner returns ErrBusy.)
	Close() error

	// onOwner reports whether the caller runs on the owner's thread, as
	// work, a destructor or a done function.
	onOwner() bool
	// finished returns a channel closed once the owner's shutdown has
	// destroyed what it owned, and where its result is then.
	finished() (done <-chan struct{}, result *error)
	// forgotten is called after tg_destroy_later for one of its objects,
	// from the cleanup goroutine, to have the request run soon.
	forgotten()
}

var (
	_ Owner = (*Thread)(nil)
	_ Owner = (*Runner)(nil)
	_ Owner = (*MainThread)(nil)
)

// owners maps the thread ID of each running owner to the Owner: a Thread's
// goroutine, a Runner's thread, the main thread while it is handed over.
var owners sync.Map

// currentOwner returns the owner whose thread is calling, or nil.
func currentOwner() Owner {
	if o, ok := owners.Load(uint64(C.tg_current_thread_id())); ok {
		return o.(Owner)
	}
	return nil
}

// goChannel returns a buffered channel holding err, for a Go that failed
// at once.
func goChannel(err error) <-chan error {
	res := make(chan error, 1)
	res <- err
	return res
}
