package tcl

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"threadguard.dev/threadguard"
)

// patience bounds every wait; nothing should come near it.
const patience = 20 * time.Second

func newInterp(t testing.TB) *Interp {
	t.Helper()
	i, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { i.Close() })
	return i
}

func eval(t testing.TB, i *Interp, script string) string {
	t.Helper()
	res, err := i.Eval(context.Background(), script)
	if err != nil {
		t.Fatalf("Eval(%q): %v", script, err)
	}
	return res
}

// eventually polls cond, collecting garbage between polls.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

func TestEvalReturnsResultsAndErrors(t *testing.T) {
	i := newInterp(t)
	if got := eval(t, i, "expr {6 * 7}"); got != "42" {
		t.Fatalf("expr: %q", got)
	}
	_, err := i.Eval(context.Background(), "error {no such luck}")
	var e *Error
	if !errors.As(err, &e) || e.Message != "no such luck" || errors.Is(err, ErrCanceled) {
		t.Fatalf("error: %v", err)
	}
	if got := eval(t, i, "set x 1"); got != "1" {
		t.Fatalf("after an error: %q", got)
	}
}

// 64 goroutines share one interpreter: every script runs on its owner, one
// at a time, and none is lost.
func TestManyGoroutinesOneInterp(t *testing.T) {
	const goroutines, calls = 64, 50
	i := newInterp(t)
	eval(t, i, "set n 0")
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if _, err := i.Eval(context.Background(), "incr n"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := eval(t, i, "set n"); got != strconv.Itoa(goroutines*calls) {
		t.Fatalf("n = %s, want %d", got, goroutines*calls)
	}
}

// Using the interpreter from the wrong thread is refused before Tcl runs.
func TestMisuseIsRefusedBeforeTclRuns(t *testing.T) {
	i := newInterp(t)
	eval(t, i, "set touched 0")
	called := 0
	err := i.Handle().With(interpTag, func(unsafe.Pointer) error { called++; return nil })
	if !errors.Is(err, threadguard.ErrWrongThread) || called != 0 {
		t.Fatalf("raw handle from the test goroutine: %v (callback ran %d times)", err, called)
	}
	err = i.Handle().With(threadguard.TagOf("another type"), func(unsafe.Pointer) error { called++; return nil })
	if err == nil || called != 0 {
		t.Fatalf("wrong tag: %v (callback ran %d times)", err, called)
	}
}

// A context that ends while a script runs cancels the script; the
// interpreter stays usable, and a late cancellation does not reach the
// next script.
func TestContextCancelsARunningScript(t *testing.T) {
	i := newInterp(t)
	eval(t, i, "set started 0")
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := i.Eval(ctx, "set started 1; while 1 {}")
		res <- err
	}()
	// Wait until the loop runs: a second Eval would queue behind it, so
	// look from the owner's side without it: poll the cancel hook's view.
	eventually(t, "the script to start", func() bool {
		i.mu.Lock()
		defer i.mu.Unlock()
		return i.running != 0
	})
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, ErrCanceled) {
			t.Fatalf("canceled Eval: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("the canceled script did not stop")
	}
	for range 3 {
		if got := eval(t, i, "expr {1 + 1}"); got != "2" {
			t.Fatalf("after the cancellation: %q", got)
		}
	}
}

// Each interpreter on a Thread of its own is deleted exactly once, on the
// OS thread that created it (not the main thread), whether closed or
// dropped; its Thread ends with it.
func TestInterpsAreDeletedOnceOnTheirOwner(t *testing.T) {
	const n = 100
	var closed []*Interp
	var serials []uint64
	for k := range n {
		i, err := New(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		eval(t, i, "set k "+strconv.Itoa(k))
		serials = append(serials, i.serial)
		if k%2 == 0 {
			closed = append(closed, i)
		} // the others are dropped here
	}
	for _, i := range closed {
		if err := i.Close(); err != nil {
			t.Fatal(err)
		}
		if d := i.Deletions(); d.Deletes != 1 {
			t.Fatalf("closed interpreter: %+v", d)
		}
	}
	closed = nil
	eventually(t, "the dropped interpreters to be deleted", func() bool {
		for _, s := range serials {
			if lookup(s).Deletes == 0 {
				return false
			}
		}
		return true
	})
	for _, s := range serials {
		if d := lookup(s); d.Deletes != 1 || d.DeletedOn != d.CreatedOn || d.CreatedOn == syscall.Getpid() {
			t.Fatalf("interpreter %d: %+v", s, d)
		}
	}
}
