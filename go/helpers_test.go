package threadguard

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// patience bounds every wait in the tests; nothing should come near it.
const patience = 20 * time.Second

// newThread starts a Thread that the test closes at its end.
func newThread(t testing.TB, name string) *Thread {
	t.Helper()
	th, err := NewThread(name)
	if err != nil {
		t.Fatalf("NewThread(%q): %v", name, err)
	}
	t.Cleanup(func() { th.Close() })
	return th
}

// newAffine creates an affine object on th and returns it with its serial.
func newAffine(t testing.TB, th *Thread) (*Object, uint64) {
	t.Helper()
	var serials []uint64
	o, err := th.New(context.Background(), affine.Tag, affine.Destructor(), createAffine(&serials))
	if err != nil {
		t.Fatalf("Thread.New: %v", err)
	}
	return o, serials[0]
}

// createAffine is a constructor for New that appends each object's serial
// to serials.
func createAffine(serials *[]uint64) func() (unsafe.Pointer, error) {
	return func() (unsafe.Pointer, error) {
		p, err := affine.New()
		if err == nil {
			*serials = append(*serials, affine.Serial(p))
		}
		return p, err
	}
}

func readStats(t testing.TB) Stats {
	t.Helper()
	s, err := ReadStats()
	if err != nil {
		t.Fatalf("ReadStats: %v", err)
	}
	return s
}

// eventually polls cond, collecting garbage between polls, until it holds.
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

// receive waits for one value from ch.
func receive[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// destroyedOnceOn reports whether every object in serials had its
// destructor run exactly once, on thread owner; it fails the test at once
// for a destructor that ran twice or elsewhere.
func destroyedOnceOn(t testing.TB, owner uint64, serials []uint64) bool {
	t.Helper()
	all := true
	for _, s := range serials {
		r, ok := affine.Lookup(s)
		if !ok {
			t.Fatalf("affine object %d has no record", s)
		}
		switch {
		case r.Destroys == 0:
			all = false
		case r.Destroys > 1:
			t.Fatalf("affine object %d destroyed %d times", s, r.Destroys)
		case r.DestroyedOn != owner || r.Owner != owner:
			t.Fatalf("affine object %d of thread %d destroyed on thread %d, want %d", s, r.Owner, r.DestroyedOn, owner)
		}
	}
	return all
}

// wantErr fails unless err wraps want.
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// churn makes the scheduler move unlocked goroutines between OS threads:
// more Ps than one, a goroutine locked to a thread of its own, and busy
// goroutines competing for the Ps. It stops when the test ends.
func churn(t testing.TB) {
	old := runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0)))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Microsecond):
			}
		}
	}()
	for range 2 {
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		runtime.GOMAXPROCS(old)
	})
}

// add1 is a With function: it adds 1 to an affine object.
func add1(p unsafe.Pointer) error {
	affine.Add(p, 1)
	return nil
}
