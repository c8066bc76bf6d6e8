package threadguard

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// A goroutine that is not locked registers a C object on whatever thread it
// runs on; the scheduler then moves it. Every call that lands on another
// thread is refused with ErrWrongThread, and none of them touches the
// object's thread-local state.
func TestWanderingGoroutineIsCaughtWithWrongThread(t *testing.T) {
	churn(t)
	type outcome struct {
		ok, wrong, offOwner int
		value               int64
		err                 error
	}
	before, affBefore := readStats(t), affine.ReadStats()
	done := make(chan outcome, 1)
	go func() { // deliberately not locked
		var out outcome
		defer func() { done <- out }()
		_, owner, key, st := affine.RegisterHere()
		if st != 0 {
			out.err = errors.New("affine_register_here: status " + strconv.Itoa(int(st)))
			return
		}
		h := Handle{Owner: owner, Key: key}
		one := new(int64)
		*one = 1
		deadline := time.Now().Add(1500 * time.Millisecond)
		for i := 0; (out.wrong < 20 || out.ok < 20) && time.Now().Before(deadline); i++ {
			var err error
			if i%4 < 2 { // a Go callback, or a call that stays in C
				err = h.With(affine.Tag, func(p unsafe.Pointer) error {
					if CurrentThreadID() != owner {
						out.offOwner++
					}
					affine.Add(p, 1)
					return nil
				})
			} else {
				err = h.Call(affine.Tag, affine.AddBorrow(), unsafe.Pointer(one))
			}
			switch {
			case err == nil:
				out.ok++
			case errors.Is(err, ErrWrongThread):
				out.wrong++
				if !strings.Contains(err.Error(), "owned by thread "+strconv.FormatUint(owner, 10)) {
					out.err = err
					return
				}
			default:
				out.err = err
				return
			}
			if i%2 == 0 {
				time.Sleep(10 * time.Microsecond)
			} else {
				runtime.Gosched()
			}
		}
		// Read the value and destroy the object if the scheduler brings the
		// goroutine back to the owner soon; otherwise leave the destruction
		// to the owner thread.
		out.value = -1
		for deadline = time.Now().Add(time.Second); time.Now().Before(deadline); {
			err := h.With(affine.Tag, func(p unsafe.Pointer) error {
				out.value = affine.Value(p)
				return nil
			})
			if err == nil {
				out.err = h.Destroy()
				return
			}
			out.wrong++
			time.Sleep(10 * time.Microsecond)
		}
		out.err = h.DestroyLater()
	}()
	out := receive(t, "the wandering goroutine", done)
	if out.err != nil {
		t.Fatal(out.err)
	}
	t.Logf("%d calls on the owner thread, %d refused elsewhere", out.ok, out.wrong)
	if out.wrong == 0 {
		t.Fatal("the goroutine never left its thread: nothing was tested")
	}
	if out.offOwner != 0 {
		t.Errorf("%d borrows ran off the owner thread", out.offOwner)
	}
	if out.value != -1 && out.value != int64(out.ok) {
		t.Errorf("value %d after %d accepted calls", out.value, out.ok)
	}
	after, affAfter := readStats(t), affine.ReadStats()
	if got := after.ViolationsWrongThread - before.ViolationsWrongThread; got != uint64(out.wrong) {
		t.Errorf("library counted %d wrong-thread violations, the goroutine saw %d", got, out.wrong)
	}
	if affAfter.Misuse != affBefore.Misuse {
		t.Errorf("the affine library saw %d calls from a wrong thread", affAfter.Misuse-affBefore.Misuse)
	}
}

// The harm is real: called directly from another thread, an affine object
// reports success on state that is not its own, and its own state does not
// change. Through threadguard the same call is refused.
func TestRawCallFromAnotherThreadHitsTheWrongState(t *testing.T) {
	owner, other := newThread(t, "owner"), newThread(t, "other")
	o, _ := newAffine(t, owner)
	defer o.Close()
	var p unsafe.Pointer
	ctx := context.Background()
	if err := o.With(ctx, func(obj unsafe.Pointer) error { p = obj; affine.Add(obj, 5); return nil }); err != nil {
		t.Fatal(err)
	}
	misuse := affine.ReadStats().Misuse
	var raw int64
	if err := other.Do(ctx, func() error { raw = affine.Add(p, 100); return nil }); err != nil {
		t.Fatal(err)
	}
	if raw == 105 {
		t.Fatal("the raw call from another thread found the object's state: the fixture is not thread-affine")
	}
	if got := affine.ReadStats().Misuse - misuse; got != 1 {
		t.Errorf("misuse counter rose by %d, want 1", got)
	}
	err := other.Do(ctx, func() error { return o.Handle().With(affine.Tag, add1) })
	wantErr(t, "checked call from another Thread", err, ErrWrongThread)
	if got := affine.ReadStats().Misuse - misuse; got != 1 {
		t.Errorf("the checked call reached the object: misuse rose to %d", got)
	}
	var v int64
	o.With(ctx, func(obj unsafe.Pointer) error { v = affine.Value(obj); return nil })
	if v != 5 {
		t.Errorf("value %d on the owner, want 5: the raw write went elsewhere, the refused one nowhere", v)
	}
}

// An object created on an ordinary goroutine serves only that goroutine;
// others get ErrWrongThread and change nothing, Close included.
func TestPinnedObjectServesOnlyItsGoroutine(t *testing.T) {
	ctx := context.Background()
	type created struct {
		o   *Object
		err error
	}
	made, closeIt, closed := make(chan created), make(chan struct{}), make(chan error, 2)
	go func() {
		o, err := New(affine.Tag, affine.Destructor(), affine.New)
		made <- created{o, err}
		if err != nil {
			return
		}
		<-closeIt
		var v int64
		if err := o.With(ctx, func(p unsafe.Pointer) error { v = affine.Add(p, 1); return nil }); err != nil || v != 1 {
			closed <- errors.New("owner's With: value " + strconv.FormatInt(v, 10) + ", err " + errString(err))
		}
		closed <- o.Close()
		closed <- o.Close()
	}()
	c := receive(t, "New on another goroutine", made)
	if c.err != nil {
		t.Fatal(c.err)
	}
	o := c.o
	if o.Thread() != nil {
		t.Fatal("object bound to a Thread, want the creating goroutine")
	}
	before := readStats(t)
	wantErr(t, "With from another goroutine", o.With(ctx, add1), ErrWrongThread)
	wantErr(t, "Close from another goroutine", o.Close(), ErrWrongThread)
	after := readStats(t)
	if after.Destroyed != before.Destroyed || after.Live != before.Live {
		t.Errorf("a refused Close changed the counters: %+v -> %+v", before, after)
	}
	close(closeIt) // the owner checks the refused calls left the value at 0

	if err := receive(t, "owner's Close", closed); err != nil {
		t.Fatalf("owner's Close: %v", err)
	}
	if err := receive(t, "owner's second Close", closed); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("Close after the owner closed it: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
