package threadguard

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
)

// OnExit's hook runs once, on the Thread's OS thread, after the cleanup has
// destroyed the objects it owned; Close returns its error.
func TestOnExitRunsOnTheThreadAfterItsObjects(t *testing.T) {
	var th *Thread
	var serial uint64
	var runs, onThread, objectsGone int
	errHook := errors.New("hook failed")
	th, err := NewThread("finalized", OnExit(func() error {
		runs++
		if CurrentThreadID() == th.ID() {
			onThread++
		}
		if destroyedOnceOn(t, th.ID(), []uint64{serial}) {
			objectsGone++
		}
		return errHook
	}))
	if err != nil {
		t.Fatal(err)
	}
	_, serial = newAffine(t, th) // left for the cleanup
	if err := th.Close(); !errors.Is(err, errHook) {
		t.Fatalf("Close: %v, want the hook's error", err)
	}
	if runs != 1 || onThread != 1 || objectsGone != 1 {
		t.Fatalf("hook runs %d, on the thread %d, after the objects %d; want 1, 1, 1", runs, onThread, objectsGone)
	}
	if err := th.Close(); !errors.Is(err, errHook) || runs != 1 {
		t.Fatalf("second Close: %v (hook runs %d)", err, runs)
	}
}

// A panicking hook is reported as ErrPanic by Close.
func TestOnExitPanicIsAnError(t *testing.T) {
	th, err := NewThread("panicky", OnExit(func() error { panic("finalizing") }))
	if err != nil {
		t.Fatal(err)
	}
	if err := th.Close(); !errors.Is(err, ErrPanic) {
		t.Fatalf("Close: %v", err)
	}
}

// A Thread made with EndWithObjects ends once its last object is closed or
// dropped, and not before; each object is destroyed once, on it.
func TestEndWithObjectsEndsWithTheLastObject(t *testing.T) {
	var exits atomic.Int32
	th, err := NewThread("per-object", EndWithObjects(), OnExit(func() error { exits.Add(1); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	closed, closedSerial := newAffine(t, th)
	_, droppedSerial := newAffine(t, th)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := th.Do(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("with one object left: %v", err)
	}
	// The second object is unreachable now: its cleanup ends the Thread.
	eventually(t, "the Thread to end with its last object", func() bool { return exits.Load() == 1 })
	<-th.done
	if err := th.Do(context.Background(), func() error { return nil }); !errors.Is(err, ErrShutDown) {
		t.Fatalf("Do after the Thread ended: %v", err)
	}
	if !destroyedOnceOn(t, th.ID(), []uint64{closedSerial, droppedSerial}) {
		t.Fatal("the objects were not destroyed")
	}
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
}

// One Thread per object, left to the garbage collector: every Thread ends,
// runs its hook once, and destroys its object once.
func TestEndWithObjectsManyThreadsLeftToTheCollector(t *testing.T) {
	const n = 50
	var exits atomic.Int32
	ids := make([]uint64, n)
	serials := make([]uint64, n)
	for i := range n {
		th, err := NewThread("one-object", EndWithObjects(), OnExit(func() error { exits.Add(1); return nil }))
		if err != nil {
			t.Fatal(err)
		}
		_, serials[i] = newAffine(t, th)
		ids[i] = th.ID()
	}
	eventually(t, "every Thread to end", func() bool { runtime.GC(); return exits.Load() == n })
	for i := range n {
		if !destroyedOnceOn(t, ids[i], serials[i:i+1]) {
			t.Fatalf("object %d was not destroyed", i)
		}
	}
}
