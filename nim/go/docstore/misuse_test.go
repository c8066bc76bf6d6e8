package docstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"threadguard.dev/threadguard"
)

// fill puts keys with a few revisions each, on the owner, and returns them.
func fill(h Handle, prefix string, n int) ([]string, error) {
	var keys []string
	for i := range n {
		key := fmt.Sprintf("%s-%d", prefix, i)
		keys = append(keys, key)
		for r := range i%3 + 1 {
			if err := h.Put(key, fmt.Sprintf("%s-v%d-%s", key, r, strings.Repeat("#", 16*i))); err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
}

// lockedOwner is a goroutine locked to its OS thread that owns a store it
// created there (no Thread: the plain runtime.LockOSThread pattern), and
// runs requests for it.
type lockedOwner struct {
	id   uint64
	h    Handle
	reqs chan func()
	done chan struct{}
	once sync.Once
}

func startLockedOwner(t *testing.T) *lockedOwner {
	t.Helper()
	o := &lockedOwner{reqs: make(chan func()), done: make(chan struct{})}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never undone: the thread ends with the goroutine
		defer close(o.done)
		var err error
		o.h, _, err = create()
		o.id = threadguard.CurrentThreadID()
		ready <- err
		for fn := range o.reqs {
			fn()
		}
		// Destroy what this thread owns before it goes (as Thread.Close does).
		o.h.Free()
		threadguard.RunPending()
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	return o
}

// run runs fn on the owner's goroutine.
func (o *lockedOwner) run(fn func() error) error {
	errc := make(chan error, 1)
	o.reqs <- func() { errc <- fn() }
	return <-errc
}

func (o *lockedOwner) stop() {
	o.once.Do(func() { close(o.reqs) })
	<-o.done
}

// victim is a store that the wandering goroutine misuses, with a way to run
// code on its owner.
type victim struct {
	name  string
	owner uint64
	h     Handle
	on    func(fn func() error) error // runs fn on the owner
	keys  []string
	fresh snapshot
}

// A goroutine that is not on the owner's thread, and wanders between OS
// threads (GOMAXPROCS > 1, runtime.Gosched, sleeps, other goroutines taking
// threads for themselves), calls docstore directly on three stores: owned
// by a Thread, by a Runner and by a goroutine locked to its thread. Every
// call returns ErrWrongThread from whichever thread it arrives on, touches
// nothing, and the stores read back exactly as before.
func TestMisuseFromWanderingGoroutine(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(4, runtime.NumCPU())))
	ctx := context.Background()
	th := newThread(t, "nim-victim")
	defer th.Close()
	ts, err := New(ctx, th)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	r := startRunner(t, "nim-victim-r", 8)
	defer r.Stop()
	rs, err := NewOnRunner(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	locked := startLockedOwner(t)
	defer locked.stop()

	victims := []*victim{
		{name: "thread", owner: th.ID(), h: ts.h, on: func(fn func() error) error { return th.Do(ctx, fn) }},
		{name: "runner", owner: r.ThreadID(), h: rs.h, on: func(fn func() error) error { return r.Call(ctx, fn) }},
		{name: "locked", owner: locked.id, h: locked.h, on: locked.run},
	}
	for _, v := range victims {
		if err := v.on(func() (err error) {
			if v.keys, err = fill(v.h, v.name, 24); err != nil {
				return err
			}
			v.fresh, err = read(v.h, append(v.keys, "intruder"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Other goroutines lock themselves to threads for a moment, again and
	// again, so the scheduler keeps moving the wanderer.
	var stop atomic.Bool
	var hogs sync.WaitGroup
	for range 3 {
		hogs.Add(1)
		go func() {
			defer hogs.Done()
			for !stop.Load() {
				runtime.LockOSThread()
				for end := time.Now().Add(20 * time.Microsecond); time.Now().Before(end); {
				}
				runtime.UnlockOSThread()
				runtime.Gosched()
			}
		}()
	}

	statsBefore, err := threadguard.ReadStats()
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 360
	type result struct {
		threads map[uint64]int
		calls   int
		errs    []error
	}
	wander := make(chan result)
	go func() { // the wandering goroutine: never locked
		res := result{threads: map[uint64]int{}}
		fail := func(format string, args ...any) { res.errs = append(res.errs, fmt.Errorf(format, args...)) }
		for i := range rounds {
			v := victims[i%len(victims)]
			var (
				w   where
				err error
			)
			switch i / len(victims) % 6 {
			case 0:
				w, err = v.h.put("intruder", "overwritten")
			case 1:
				_, _, w, err = v.h.get(v.keys[3])
			case 2:
				_, w, err = v.h.revisions(v.keys[5])
			case 3:
				_, w, err = v.h.count()
			case 4:
				_, w, err = v.h.serial()
			case 5:
				w, err = v.h.free()
			}
			res.calls++
			res.threads[uint64(w.thread)]++
			if !errors.Is(err, threadguard.ErrWrongThread) {
				fail("round %d (%s): %v, want ErrWrongThread", i, v.name, err)
			} else if uint64(w.thread) == v.owner {
				fail("round %d (%s): refused on the owner's own thread %d", i, v.name, v.owner)
			} else if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(v.owner)) {
				fail("round %d (%s): message does not name the owner %d: %s", i, v.name, v.owner, msg)
			}
			runtime.Gosched()
			if i%8 == 7 {
				time.Sleep(20 * time.Microsecond)
			}
		}
		wander <- res
	}()
	res := <-wander
	stop.Store(true)
	hogs.Wait()
	for _, err := range res.errs {
		t.Error(err)
	}

	stats, err := threadguard.ReadStats()
	if err != nil {
		t.Fatal(err)
	}
	if got := stats.ViolationsWrongThread - statsBefore.ViolationsWrongThread; got != uint64(res.calls) {
		t.Errorf("threadguard counted %d wrong-thread refusals for %d calls", got, res.calls)
	}
	t.Logf("%d misuse calls from %d OS threads %v, all refused", res.calls, len(res.threads), res.threads)
	if len(res.threads) < 2 {
		t.Errorf("the goroutine never changed threads (%v): migration was not exercised", res.threads)
	}

	// The Nim heaps are intact: after a full collection on each owner,
	// every store reads back exactly as before, and none was destroyed.
	for _, v := range victims {
		var now snapshot
		if err := v.on(func() (err error) {
			collect()
			now, err = read(v.h, append(v.keys, "intruder"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !now.equal(v.fresh) {
			t.Errorf("%s store changed:\nbefore %+v\nafter  %+v", v.name, v.fresh, now)
		}
	}
	lSerial := serialOf(t, locked)
	for _, serial := range []uint64{ts.Serial(), rs.Serial(), lSerial} {
		if rec := Destroyed(serial); rec.Runs != 0 {
			t.Errorf("store %d destroyed by misuse: %+v", serial, rec)
		}
	}

	// Destroyed once each, on the owner, at the end.
	locked.stop()
	checkDestroyedOn(t, lSerial, locked.id)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	checkDestroyedOn(t, ts.Serial(), th.ID())
	if err := rs.Close(); err != nil {
		t.Fatal(err)
	}
	checkDestroyedOn(t, rs.Serial(), r.ThreadID())
}

func serialOf(t *testing.T, o *lockedOwner) (serial uint64) {
	t.Helper()
	select {
	case <-o.done:
		t.Fatal("locked owner already stopped")
	default:
	}
	if err := o.run(func() (err error) {
		serial, err = o.h.Serial()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return serial
}
