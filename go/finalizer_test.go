package threadguard

import (
	"context"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// Objects dropped without Close are destroyed by their cleanups, each
// exactly once and on the owner Thread, without any further work sent to
// that Thread.
func TestForgottenThreadObjectsAreDestroyedOnTheirThread(t *testing.T) {
	const n = 1000
	th := newThread(t, "forgetful")
	serials := make([]uint64, 0, n)
	err := th.Do(context.Background(), func() error {
		for range n {
			if _, err := New(affine.Tag, affine.Destructor(), createAffine(&serials)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every forgotten object to be destroyed", func() bool {
		return destroyedOnceOn(t, th.ID(), serials)
	})
	// Close finds nothing left, and nothing runs twice.
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
	destroyedOnceOn(t, th.ID(), serials)
}

// Objects dropped on a pinned goroutine are destroyed on its thread at its
// next call into the library, and the locks they held are released.
func TestForgottenPinnedObjectsAreDestroyedOnTheirGoroutine(t *testing.T) {
	forgetPinnedObjects(t, func(*Object) error { return RunPending() })
}

// Object.Call on a pinned object makes its cgo call itself, not through
// Handle.Call: it settles the owed unlocks too.
func TestObjectCallSettlesTheUnlocksOfForgottenObjects(t *testing.T) {
	add, one := affine.AddBorrow(), new(int64)
	*one = 1
	forgetPinnedObjects(t, func(keep *Object) error {
		return keep.Call(context.Background(), add, unsafe.Pointer(one))
	})
}

// forgetPinnedObjects drops objects pinned to a goroutine, which keeps one
// more, and has it call poll with the one it keeps until the dropped ones
// are destroyed on its thread and their locks released; once it closes the
// one it keeps, the goroutine must be free to move.
func forgetPinnedObjects(t *testing.T, poll func(keep *Object) error) {
	const n = 100
	churn(t)
	type report struct {
		owner   uint64
		serials []uint64
		err     error
	}
	forgotten := make(chan report, 1)
	check := make(chan struct{})
	moved := make(chan bool, 1)
	go func() {
		r := report{owner: CurrentThreadID()}
		keep, err := New(affine.Tag, affine.Destructor(), affine.New)
		if err != nil {
			r.err = err
			forgotten <- r
			return
		}
		for range n {
			if _, err := New(affine.Tag, affine.Destructor(), createAffine(&r.serials)); err != nil {
				r.err = err
				break
			}
		}
		r.owner = CurrentThreadID() // pinned now: this cannot change
		forgotten <- r
		// Each poll is a call into the library on the owner thread: it runs
		// the queued destruction and settles the owed unlocks.
		for range check {
			if err := poll(keep); err != nil {
				panic(err)
			}
		}
		if err := keep.Close(); err != nil {
			panic(err)
		}
		// With every lock released, the goroutine is free to move again.
		deadline := time.Now().Add(patience)
		for time.Now().Before(deadline) {
			if CurrentThreadID() != r.owner {
				moved <- true
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
		moved <- false
	}()
	r := receive(t, "the pinned goroutine", forgotten)
	if r.err != nil {
		t.Fatal(r.err)
	}
	nudge := func() { check <- struct{}{} }
	eventually(t, "every forgotten object to be destroyed", func() bool {
		nudge()
		return destroyedOnceOn(t, r.owner, r.serials)
	})
	eventually(t, "the owed unlocks to be paid", func() bool {
		nudge()
		return pins.owing() == 0
	})
	close(check)
	if !receive(t, "the goroutine to move", moved) {
		t.Error("the goroutine stayed locked to its thread after its objects were gone")
	}
}

// Close is the normal path: it destroys at once, cancels the cleanup, and a
// later garbage collection does not destroy again.
func TestCloseCancelsTheCleanup(t *testing.T) {
	th := newThread(t, "closer")
	o, serial := newAffine(t, th)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !destroyedOnceOn(t, th.ID(), []uint64{serial}) {
		t.Fatal("Close did not destroy")
	}
	o = nil
	for range 3 {
		runtime.GC()
		th.Do(context.Background(), func() error { return nil })
		time.Sleep(time.Millisecond)
	}
	destroyedOnceOn(t, th.ID(), []uint64{serial})
}
