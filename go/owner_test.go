package threadguard

import (
	"context"
	"errors"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// The three owners behind the one interface: work and objects land on the
// owner's thread, Go delivers once, and an object routes through its Owner.
func TestEveryOwnerBehavesAlike(t *testing.T) {
	th := newThread(t, "owner-thread")
	r := newRunner(t, "owner-runner", 16)
	for _, owner := range []Owner{th, r, Main()} {
		t.Run(owner.Name(), func(t *testing.T) {
			ctx := context.Background()
			var ran []uint64
			if err := owner.Do(ctx, func() error { ran = append(ran, CurrentThreadID()); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := <-owner.Go(func() error { ran = append(ran, CurrentThreadID()); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := owner.Do(ctx, func() error { panic("boom") }); !errors.Is(err, ErrPanic) {
				t.Fatalf("panic: %v", err)
			}
			var serials []uint64
			o, err := owner.New(ctx, affine.Tag, affine.Destructor(), createAffine(&serials))
			if err != nil {
				t.Fatal(err)
			}
			if o.Owner() != owner || o.Handle().Owner != owner.ID() {
				t.Fatalf("object bound to %v (handle %v), want %v", o.Owner(), o.Handle(), owner)
			}
			if err := o.With(ctx, func(unsafe.Pointer) error { ran = append(ran, CurrentThreadID()); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(ran) != 3 || ran[0] != owner.ID() || ran[1] != owner.ID() || ran[2] != owner.ID() {
				t.Fatalf("work ran on threads %v, want 3 times %d", ran, owner.ID())
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if !destroyedOnceOn(t, owner.ID(), serials) {
				t.Fatal("Close did not destroy the object")
			}
			if owner.String() != threadLabel(owner.ID(), owner.Name()) {
				t.Fatalf("String %q", owner.String())
			}
		})
	}
	// Close, the same on the Thread and the Runner (the main thread's is
	// TestMainThreadHandBack): later work fails with ErrShutDown.
	for _, owner := range []Owner{th, r} {
		if err := owner.Close(); err != nil {
			t.Fatalf("%v: Close: %v", owner, err)
		}
		if err := owner.Do(context.Background(), func() error { return nil }); !errors.Is(err, ErrShutDown) {
			t.Fatalf("%v: Do after Close: %v", owner, err)
		}
		if err := <-owner.Go(func() error { return nil }); !errors.Is(err, ErrShutDown) {
			t.Fatalf("%v: Go after Close: %v", owner, err)
		}
	}
}

// A Runner's Go reports a full queue on the channel at once, without
// running or queuing the work.
func TestRunnerGoReportsAFullQueue(t *testing.T) {
	r := newRunner(t, "full", 1)
	release := occupy(t, r)
	first := r.Go(func() error { return nil }) // fills the queue
	ran := 0
	if err := <-r.Go(func() error { ran++; return nil }); !errors.Is(err, ErrLimit) {
		t.Fatalf("Go on a full queue: %v", err)
	}
	release()
	if err := receive(t, "the queued work", first); err != nil {
		t.Fatal(err)
	}
	if ran != 0 {
		t.Fatalf("refused work ran %d times", ran)
	}
	if r.ID() != r.ThreadID() {
		t.Fatal("ID and ThreadID differ")
	}
}
