package threadguard

import (
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// A C-created pthread, which Go never saw, borrows its own object with a Go
// Callback as the tg_borrow_fn: the Go code runs on that thread, sees the
// object, and a re-entrant borrow of it is refused with ErrBusy.
func TestCallbackFromAThreadGoDidNotCreate(t *testing.T) {
	type seen struct {
		thread, owner uint64
		value         int64
		nested        error
	}
	calls := make(chan seen, 2)
	cb := NewCallback(func(obj unsafe.Pointer) {
		owner, key := affine.ThreadHandle()
		calls <- seen{
			thread: CurrentThreadID(),
			owner:  affine.Owner(obj),
			value:  affine.Add(obj, 7),
			nested: Handle{Owner: owner, Key: key}.With(affine.Tag, add1),
		}
	})
	defer cb.Close()
	misuse := affine.ReadStats().Misuse
	res, err := affine.BorrowOnNewThread(cb.Func(), cb.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.RegisterStatus != 0 || res.WithStatus != 0 || res.DestroyStatus != 0 {
		t.Fatalf("on the C thread: register %d, with %d, destroy %d", res.RegisterStatus, res.WithStatus, res.DestroyStatus)
	}
	s := receive(t, "the callback", calls)
	if len(calls) != 0 {
		t.Fatal("the callback ran more than once")
	}
	if s.thread != res.ThreadID || s.owner != res.ThreadID || s.value != 7 {
		t.Errorf("callback on thread %d for an object of thread %d (value %d); the C thread is %d",
			s.thread, s.owner, s.value, res.ThreadID)
	}
	wantErr(t, "re-entrant borrow from the callback", s.nested, ErrBusy)
	if !destroyedOnceOn(t, res.ThreadID, []uint64{res.Serial}) {
		t.Error("the C thread's object was not destroyed")
	}
	if affine.ReadStats().Misuse != misuse {
		t.Error("an affine call ran on a wrong thread")
	}
}

func TestCallbackCloseIsIdempotent(t *testing.T) {
	cb := NewCallback(func(unsafe.Pointer) {})
	cb.Close()
	cb.Close()
}
