package docstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"threadguard.dev/threadguard"
	"threadguard.dev/threadguard/fuzzkit"
)

// destroyLogSerials is how many serials the destroy log records (see
// StartDestroyLog); beyond it the witness cannot tell.
const destroyLogSerials = 16384

// storeSpec is docstore's C API, through this package's Handle methods
// (which call on the calling OS thread), for the misuse kit. The destroy log
// is the witness: each store's destructor runs and the thread they ran on.
func storeSpec() (*fuzzkit.Spec, fuzzkit.Kind) {
	spec := &fuzzkit.Spec{}
	store := spec.Kind("docstore", func(serial uint64) (int, uint64) {
		if serial >= destroyLogSerials {
			return -1, 0
		}
		r := Destroyed(serial)
		return r.Runs, r.RanOn
	})
	key := func(arg uint64) string { return fmt.Sprintf("k%d", arg%4) }
	spec.Create(store, "docstore_new", func(uint64) (threadguard.Handle, uint64, error) {
		h, serial, err := create()
		return h.Raw(), serial, err
	})
	spec.Call(store, "docstore_put", func(h threadguard.Handle, arg uint64) error {
		return Handle(h).Put(key(arg), strings.Repeat("v", int(arg%32)))
	})
	spec.Call(store, "docstore_get", func(h threadguard.Handle, arg uint64) error {
		_, _, err := Handle(h).Get(key(arg))
		return err
	})
	spec.Call(store, "docstore_revisions", func(h threadguard.Handle, arg uint64) error {
		_, err := Handle(h).Revisions(key(arg))
		return err
	})
	spec.Call(store, "docstore_count", func(h threadguard.Handle, _ uint64) error {
		_, err := Handle(h).Count()
		return err
	})
	spec.Destroy(store, "docstore_free", func(h threadguard.Handle) error { return Handle(h).Free() })
	spec.DestroyLater(store, "docstore_free_later", func(h threadguard.Handle) error { return Handle(h).FreeLater() })
	spec.Tag(store, Tag) // re-entrant steps: each operation inside a borrow of its own store
	return spec, store
}

// TestMisuseKitRandomPrograms runs seeded random misuse programs over a
// Thread, a pinned goroutine, a Runner and an unpinned goroutine, with the
// kit's decoys and re-entrant steps.
func TestMisuseKitRandomPrograms(t *testing.T) {
	spec, _ := storeSpec()
	kit := fuzzkit.New(spec)
	programs := uint64(200)
	if testing.Short() {
		programs = 40
	}
	total := map[int]int{}
	for seed := range programs {
		s, err := kit.Check(fuzzkit.RandomProgram(seed))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for code, n := range s.Statuses {
			total[code] += n
		}
	}
	// Success, null handle, wrong thread, owner exited, stale, wrong type
	// (the kit's decoys), busy (its re-entrant steps).
	for code := range 7 {
		if total[code] == 0 {
			t.Errorf("no program got status %d: %v", code, total)
		}
	}
}

// TestMisuseKitFindsACachedCount plants a bug in a copy of the binding: a
// count answered from a Go-side cache of the store, kept by the checked
// put, without the guard, so any thread gets an answer.
func TestMisuseKitFindsACachedCount(t *testing.T) {
	spec, store := storeSpec()
	var mu sync.Mutex
	counts := map[threadguard.Handle]map[string]bool{}
	spec.Call(store, "docstore_put_caching", func(h threadguard.Handle, arg uint64) error {
		k := fmt.Sprintf("k%d", arg%4)
		if err := Handle(h).Put(k, "v"); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if counts[h] == nil {
			counts[h] = map[string]bool{}
		}
		counts[h][k] = true
		return nil
	})
	spec.Call(store, "docstore_count_cached", func(h threadguard.Handle, _ uint64) error {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := counts[h]; !ok {
			_, err := Handle(h).Count() // not cached: ask the library
			return err
		}
		return nil
	})
	seed, f := fuzzkit.New(spec).Find(0, 300)
	if f == nil {
		t.Fatal("the kit did not find the unguarded count in 300 programs")
	}
	t.Logf("found with seed %d:\n%s", seed, f)
	if !strings.Contains(f.Message, "docstore_count_cached") {
		t.Fatalf("the failure is not the planted bug:\n%s", f)
	}
}

// FuzzMisuseKit runs docstore under the misuse kit with go test -fuzz:
//
//	go test -tags nim_orc -run '^$' -fuzz=FuzzMisuseKit -fuzztime=60s ./docstore
func FuzzMisuseKit(f *testing.F) {
	for seed := range uint64(16) {
		f.Add(fuzzkit.RandomProgram(seed))
	}
	spec, _ := storeSpec()
	kit := fuzzkit.New(spec)
	f.Fuzz(func(t *testing.T, program []byte) {
		kit.Run(t, program)
	})
}

// TestFreeOfAStoreWithAQueuedRequestSucceeds: found by the misuse kit.
// docstore_free and docstore_free_later check the type with a borrow, which
// runs the owner's queued destroy requests as it ends; with one queued for
// the store itself, the store was destroyed there and the call answered
// TG_ERR_STALE for a store that was alive when it was made.
func TestFreeOfAStoreWithAQueuedRequestSucceeds(t *testing.T) {
	th, err := threadguard.NewThread("queued-free")
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	for _, second := range []string{"free", "free_later"} {
		var serial uint64
		err := th.Do(context.Background(), func() error {
			h, s, err := create()
			if err != nil {
				return err
			}
			serial = s
			if err := h.FreeLater(); err != nil {
				return err
			}
			if second == "free" {
				return h.Free()
			}
			return h.FreeLater()
		})
		if err != nil {
			t.Fatalf("free_later, then %s: %v", second, err)
		}
		if r := Destroyed(serial); !r.OnOwner() {
			t.Fatalf("free_later, then %s: store %d destroyed %d times, on %d (owner %d)", second, serial, r.Runs, r.RanOn, r.Owner)
		}
	}
}
