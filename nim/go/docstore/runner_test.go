package docstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"threadguard.dev/threadguard"
)

func startRunner(t *testing.T, name string, capacity int) *threadguard.Runner {
	t.Helper()
	r, err := threadguard.StartRunner(name, capacity)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// onRunner reports an error unless the caller runs on r's thread, the one
// the library started (it carries the runner's name; Go's threads carry the
// program's).
func onRunner(r *threadguard.Runner, what string) error {
	if id := threadguard.CurrentThreadID(); id != r.ThreadID() {
		return fmt.Errorf("%s ran on thread %d, not the runner %d", what, id, r.ThreadID())
	}
	if name := currentThreadName(); name != r.Name() {
		return fmt.Errorf("%s ran on a thread named %q, not the runner %q", what, name, r.Name())
	}
	return nil
}

// Stores owned by a runner, used from many goroutines through the blocking
// Runner.Call, with a queue small enough that callers wait for room.
func TestRunnerCall(t *testing.T) {
	ctx := context.Background()
	r := startRunner(t, "nim-runner", 4)
	defer r.Stop()
	stores := make([]*Store, 2)
	for i := range stores {
		s, err := NewOnRunner(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if s.Owner() != r.ThreadID() || s.Handle().Owner != r.ThreadID() {
			t.Fatalf("store owned by %d (handle %v), want the runner %d", s.Owner(), s.Handle(), r.ThreadID())
		}
		stores[i] = s
	}

	const goroutines, rounds, keys = 10, 30, 5
	value := func(g, r int) string { return fmt.Sprintf("g%d-r%d", g, r) }
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[g%len(stores)]
			for r := range rounds {
				key := fmt.Sprintf("g%d-k%d", g, r%keys)
				if err := s.Put(ctx, key, value(g, r)); err != nil {
					errs <- err
					return
				}
				if got, ok, err := s.Get(ctx, key); err != nil || !ok || got != value(g, r) {
					errs <- fmt.Errorf("Get(%q) = %q, %v, %v; want %q", key, got, ok, err, value(g, r))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Read back in one blocking call, after a collection, on the runner.
	err := r.Call(ctx, func() error {
		if err := onRunner(r, "Runner.Call work"); err != nil {
			return err
		}
		collect()
		for g := range goroutines {
			s := stores[g%len(stores)]
			for k := range keys {
				key := fmt.Sprintf("g%d-k%d", g, k)
				want := value(g, rounds-keys+k)
				v, ok, w, err := s.h.get(key)
				if err != nil || !ok || v != want {
					return fmt.Errorf("%s = %q, %v, %v; want %q", key, v, ok, err, want)
				}
				if uint64(w.thread) != r.ThreadID() {
					return fmt.Errorf("docstore_get ran on thread %d, not the runner", w.thread)
				}
				if n, err := s.h.Revisions(key); err != nil || n != rounds/keys {
					return fmt.Errorf("%s has %d revisions (%v), want %d", key, n, err, rounds/keys)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := stores[0].Close(); err != nil {
		t.Fatal(err)
	}
	checkDestroyedOn(t, stores[0].Serial(), r.ThreadID())
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	checkDestroyedOn(t, stores[1].Serial(), r.ThreadID()) // by Stop, on the runner
	if err := stores[1].Put(ctx, "k", "v"); !errors.Is(err, threadguard.ErrShutDown) {
		t.Errorf("Put after Stop: %v, want ErrShutDown", err)
	}
	if err := stores[1].Close(); err != nil {
		t.Errorf("Close after Stop: %v, want nil", err)
	}
}

// Work posted from many goroutines runs on the runner, and its done
// callbacks arrive there too (a thread Go did not create), where both may
// use the runner's store directly.
func TestRunnerPostCallbacks(t *testing.T) {
	ctx := context.Background()
	r := startRunner(t, "nim-poster", 16)
	defer r.Stop()
	s, err := NewOnRunner(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Handle()

	const goroutines, posts = 6, 40
	type outcome struct {
		key  string
		err  error // the work's error, as done received it
		seen error // what done found wrong itself
	}
	outcomes := make(chan outcome, goroutines*posts)
	var wg sync.WaitGroup
	postErrs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range posts {
				key := fmt.Sprintf("p%d-%d", g, i)
				work := func() error {
					if err := onRunner(r, "posted work"); err != nil {
						return err
					}
					return h.Put(key, "posted:"+key)
				}
				done := func(err error) {
					o := outcome{key: key, err: err, seen: onRunner(r, "done callback")}
					if o.seen == nil && err == nil { // the store, read from the callback
						if v, ok, gerr := h.Get(key); gerr != nil || !ok || v != "posted:"+key {
							o.seen = fmt.Errorf("done read %q = %q, %v, %v", key, v, ok, gerr)
						}
					}
					outcomes <- o
				}
				for {
					err := r.Post(work, done)
					if errors.Is(err, threadguard.ErrLimit) { // queue full: try again later
						time.Sleep(50 * time.Microsecond)
						continue
					}
					if err != nil {
						postErrs <- err
						return
					}
					break
				}
			}
		}()
	}
	// Blocking calls interleave with the posted work.
	for range 10 {
		if _, err := s.Count(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(postErrs)
	for err := range postErrs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range goroutines * posts {
		select {
		case o := <-outcomes:
			if o.err != nil || o.seen != nil {
				t.Errorf("%s: work %v; done %v", o.key, o.err, o.seen)
			}
			if seen[o.key] {
				t.Errorf("%s: done called twice", o.key)
			}
			seen[o.key] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d done callbacks arrived", len(seen), goroutines*posts)
		}
	}
	if n, err := s.Count(ctx); err != nil || n != goroutines*posts {
		t.Errorf("Count = %d, %v; want %d", n, err, goroutines*posts)
	}
	if err := s.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, "p3-7"); err != nil || !ok || v != "posted:p3-7" {
		t.Errorf("Get after collection = %q, %v, %v", v, ok, err)
	}
}

// A store dropped without Close is destroyed on the runner, which runs
// destroy requests as they arrive.
func TestRunnerForgottenStore(t *testing.T) {
	ctx := context.Background()
	r := startRunner(t, "nim-forgotten", 8)
	defer r.Stop()
	serial := func() uint64 {
		s, err := NewOnRunner(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "left", "behind"); err != nil {
			t.Fatal(err)
		}
		return s.Serial()
	}()
	runtime.GC()
	rec := waitDestroyed(t, serial)
	if !rec.OnOwner() || rec.Owner != r.ThreadID() {
		t.Fatalf("forgotten store: %+v, want one run on the runner %d", rec, r.ThreadID())
	}
}

// Work posted to the runner reads the store there; its outcomes arrive in
// a completion queue that another goroutine drains.
func TestRunnerCompletionQueue(t *testing.T) {
	ctx := context.Background()
	r := startRunner(t, "nim-cq", 8)
	defer r.Stop()
	q, err := threadguard.NewCompletionQueue(64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	s, err := NewOnRunner(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 24
	for i := range n {
		if err := s.Put(ctx, fmt.Sprint("key-", i), fmt.Sprint("value-", i)); err != nil {
			t.Fatal(err)
		}
	}
	h := s.Handle()
	values := make([]string, n) // values[i] is written by job i, on the runner
	for i := range n {
		work := func() error {
			if err := onRunner(r, "work posted to a queue"); err != nil {
				return err
			}
			v, ok, err := h.Get(fmt.Sprint("key-", i))
			if err == nil && !ok {
				err = fmt.Errorf("key-%d is missing", i)
			}
			values[i] = v
			return err
		}
		for {
			err := r.PostTo(q, uint64(i), work)
			if errors.Is(err, threadguard.ErrLimit) {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	got := map[uint64]bool{}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range n {
		c, err := q.Wait(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Err != nil {
			t.Errorf("job %d: %v", c.Tag, c.Err)
		} else if want := fmt.Sprint("value-", c.Tag); values[c.Tag] != want {
			t.Errorf("job %d read %q, want %q", c.Tag, values[c.Tag], want)
		}
		if got[c.Tag] {
			t.Errorf("job %d completed twice", c.Tag)
		}
		got[c.Tag] = true
	}
}
