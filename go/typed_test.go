package threadguard

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// counter stands for a C type: Refs hold a *counter that points to an
// affine object in C memory.
type counter struct{}

func newCounter(serials *[]uint64) func() (*counter, error) {
	return func() (*counter, error) {
		p, err := createAffine(serials)()
		return (*counter)(p), err
	}
}

// destroyCounter is a typed Go destructor; it counts its runs.
func destroyCounter(runs *atomic.Int32) func(*counter) {
	return func(c *counter) {
		runs.Add(1)
		affine.Destroy(unsafe.Pointer(c))
	}
}

// A Ref's Go destructor runs exactly once, on the owner, whether the Ref is
// closed, dropped or left to its owner's shutdown; Compute returns results.
func TestRefTypedDestructorAndResults(t *testing.T) {
	ctx := context.Background()
	tag := TagOf("threadguard.dev/threadguard.counter")
	th := newThread(t, "typed")
	for _, owner := range []Owner{th, Main()} {
		var serials []uint64
		var runs atomic.Int32
		r, err := NewRef(ctx, owner, tag, newCounter(&serials), destroyCounter(&runs))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			v, err := Compute(ctx, r, func(c *counter) (int64, error) {
				return affine.Add(unsafe.Pointer(c), 2), nil
			})
			if err != nil || v != int64(2*(i+1)) {
				t.Fatalf("Compute: %d, %v", v, err)
			}
		}
		errNo := errors.New("no")
		if v, err := Compute(ctx, r, func(*counter) (int64, error) { return 7, errNo }); v != 0 || !errors.Is(err, errNo) {
			t.Fatalf("failing Compute: %d, %v", v, err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := NewRef(ctx, owner, tag, newCounter(&serials), destroyCounter(&runs)); err != nil {
			t.Fatal(err)
		} // dropped
		eventually(t, "the dropped Ref to be destroyed", func() bool {
			return destroyedOnceOn(t, owner.ID(), serials)
		})
		if runs.Load() != 2 {
			t.Fatalf("%v: Go destructor runs %d, want 2", owner, runs.Load())
		}
	}
	// Left to the Thread's Close.
	var serials []uint64
	var runs atomic.Int32
	if _, err := NewRef(ctx, th, tag, newCounter(&serials), destroyCounter(&runs)); err != nil {
		t.Fatal(err)
	}
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 1 || !destroyedOnceOn(t, th.ID(), serials) {
		t.Fatalf("at the Thread's Close: Go destructor runs %d, want 1", runs.Load())
	}
	if n := goDestructors.len(); n != 0 {
		t.Fatalf("%d Go destructors left", n)
	}
}

// A refused registration runs the Go destructor at once; a pointer that a
// live Ref holds is refused without destroying it.
func TestRefRefusals(t *testing.T) {
	ctx := context.Background()
	th := newThread(t, "typed-refusals")
	var serials []uint64
	var runs atomic.Int32
	if _, err := NewRef(ctx, th, 0, newCounter(&serials), destroyCounter(&runs)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("tag 0: %v", err)
	}
	if runs.Load() != 1 || !destroyedOnceOn(t, th.ID(), serials) {
		t.Fatalf("tag 0: destructor runs %d, want 1", runs.Load())
	}
	serials = nil
	tag := TagOf("counter")
	r, err := NewRef(ctx, th, tag, newCounter(&serials), destroyCounter(&runs))
	if err != nil {
		t.Fatal(err)
	}
	var p *counter
	r.With(ctx, func(c *counter) error { p = c; return nil })
	_, err = NewRef(ctx, th, tag, func() (*counter, error) { return p, nil }, destroyCounter(&runs))
	if !errors.Is(err, ErrInvalidArgument) || runs.Load() != 1 {
		t.Fatalf("the same pointer again: %v (destructor runs %d, want 1)", err, runs.Load())
	}
	if err := r.Close(); err != nil || runs.Load() != 2 {
		t.Fatalf("Close: %v (destructor runs %d, want 2)", err, runs.Load())
	}
	if TagOf("") == 0 || TagOf("a") == TagOf("b") {
		t.Fatal("TagOf")
	}
}
