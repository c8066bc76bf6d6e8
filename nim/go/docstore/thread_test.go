package docstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"threadguard.dev/threadguard"
)

func TestMemoryManager(t *testing.T) {
	if got := LinkedMemoryManager(); got != MemoryManager {
		t.Fatalf("linked library reports memory manager %q, built for %q", got, MemoryManager)
	}
	t.Logf("Nim memory manager: %s", MemoryManager)
}

func newThread(t *testing.T, name string) *threadguard.Thread {
	t.Helper()
	th, err := threadguard.NewThread(name)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

// Many goroutines use three stores through the Thread that owns them; every
// docstore call runs on that Thread, and the Nim heap, collected meanwhile,
// holds every value.
func TestThreadManyGoroutines(t *testing.T) {
	ctx := context.Background()
	th := newThread(t, "nim-owner")
	defer th.Close()
	stores := make([]*Store, 3)
	for i := range stores {
		s, err := New(ctx, th)
		if err != nil {
			t.Fatal(err)
		}
		if s.Owner() != th.ID() || s.Handle().Owner != th.ID() {
			t.Fatalf("store owned by %d (handle %v), want the Thread %d", s.Owner(), s.Handle(), th.ID())
		}
		stores[i] = s
	}

	const goroutines, rounds, keys = 12, 40, 10
	value := func(g, r int) string { return fmt.Sprintf("g%d-r%d-%s", g, r, strings.Repeat("x", r*8)) }
	var wg sync.WaitGroup
	errs := make(chan error, goroutines+1)
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
				got, ok, err := s.Get(ctx, key)
				if err != nil || !ok || got != value(g, r) {
					errs <- fmt.Errorf("Get(%q) = %q, %v, %v; want %q", key, got, ok, err, value(g, r))
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // collections on the owner's heap, between the calls
		defer wg.Done()
		for range 20 {
			if err := stores[0].Collect(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Read everything back on the owner, in one piece of work, after a
	// collection; check that the calls ran on the owner's thread.
	err := th.Do(ctx, func() error {
		collect()
		for i, s := range stores {
			n, w, err := s.h.count()
			if err != nil {
				return err
			}
			if uint64(w.thread) != th.ID() {
				return fmt.Errorf("count ran on thread %d, not the owner %d", w.thread, th.ID())
			}
			perStore := (goroutines + len(stores) - 1 - i) / len(stores)
			if n != uint64(perStore*keys) {
				return fmt.Errorf("store %d holds %d keys, want %d", i, n, perStore*keys)
			}
		}
		for g := range goroutines {
			h := stores[g%len(stores)].h
			for k := range keys {
				key := fmt.Sprintf("g%d-k%d", g, k)
				last := rounds - keys + k
				v, ok, err := h.Get(key)
				if err != nil || !ok || v != value(g, last) {
					return fmt.Errorf("%s = %q, %v, %v; want %q", key, v, ok, err, value(g, last))
				}
				if n, err := h.Revisions(key); err != nil || n != rounds/keys {
					return fmt.Errorf("%s has %d revisions (%v), want %d", key, n, err, rounds/keys)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Two stores closed explicitly, one left to the Thread's Close.
	for _, s := range stores[:2] {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		checkDestroyedOn(t, s.Serial(), th.ID())
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := s.Count(ctx); !errors.Is(err, threadguard.ErrStale) {
			t.Errorf("Count after Close: %v, want ErrStale", err)
		}
	}
	last := stores[2]
	if Destroyed(last.Serial()).Runs != 0 {
		t.Fatal("the open store was destroyed early")
	}
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
	checkDestroyedOn(t, last.Serial(), th.ID())
	if err := last.Put(ctx, "k", "v"); !errors.Is(err, threadguard.ErrShutDown) {
		t.Errorf("Put after the Thread's Close: %v, want ErrShutDown", err)
	}
	if err := last.Close(); err != nil {
		t.Errorf("Close after the Thread's Close: %v, want nil", err)
	}
}

// A store dropped without Close is destroyed by its cleanup, on its Thread.
func TestThreadForgottenStore(t *testing.T) {
	ctx := context.Background()
	th := newThread(t, "nim-forgetful")
	defer th.Close()
	serial := func() uint64 {
		s, err := New(ctx, th)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "left", "behind"); err != nil {
			t.Fatal(err)
		}
		return s.Serial()
	}()
	r := waitDestroyed(t, serial)
	if !r.OnOwner() || r.Owner != th.ID() {
		t.Fatalf("forgotten store: %+v, want one run on the Thread %d", r, th.ID())
	}
	// The Thread goes on working.
	s, err := New(ctx, th)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
}

func TestArguments(t *testing.T) {
	ctx := context.Background()
	th := newThread(t, "nim-args")
	defer th.Close()
	s, err := New(ctx, th)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(ctx, "a\x00b", "v"); !errors.Is(err, threadguard.ErrInvalidArgument) {
		t.Errorf("Put with a NUL in the key: %v, want ErrInvalidArgument", err)
	}
	big := strings.Repeat("0123456789", 1000) // longer than Get's first buffer
	if err := s.Put(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, "big"); err != nil || !ok || v != big {
		t.Errorf("Get(big) = %d bytes, %v, %v", len(v), ok, err)
	}
	if v, ok, err := s.Get(ctx, "absent"); err != nil || ok || v != "" {
		t.Errorf("Get(absent) = %q, %v, %v", v, ok, err)
	}
	if err := s.Put(ctx, "", ""); err != nil {
		t.Errorf("empty key and value: %v", err)
	}
	if v, ok, err := s.Get(ctx, ""); err != nil || !ok || v != "" {
		t.Errorf("Get(\"\") = %q, %v, %v", v, ok, err)
	}
	if err := Handle(s.Handle()).Raw().With(0x4e445331, nil); !errors.Is(err, threadguard.ErrWrongThread) {
		t.Errorf("raw tg_with from the test goroutine: %v, want ErrWrongThread", err)
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(ctx2, "k", "v"); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: %v", err)
	}
}
