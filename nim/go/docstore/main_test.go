package docstore

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"threadguard.dev/threadguard"
	"threadguard.dev/threadguard/fuzzkit"
)

// TestMain checks, after every test has run and closed its owners, that
// every store the process created was destroyed exactly once, on its owner:
// by docstore's own counters, by the destroy log (each serial) and by
// threadguard's counters (which also count the misuse kit's decoys).
func TestMain(m *testing.M) {
	StartDestroyLog()
	tgBefore, err := threadguard.ReadStats()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ReadStats:", err)
		os.Exit(1)
	}
	dsBefore := ReadCounters()
	decoysBefore, decoysDestroyedBefore := fuzzkit.Decoys()
	code := m.Run()
	if code == 0 {
		if err := accountFor(tgBefore, dsBefore, decoysBefore, decoysDestroyedBefore); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: destructor accounting:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func accountFor(tgBefore threadguard.Stats, dsBefore Counters, decoysBefore, decoysDestroyedBefore uint64) error {
	// Forgotten stores of the last tests may still wait for the garbage
	// collector and their owner.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := ReadCounters()
		if c.Created == c.Destroyed || time.Now().After(deadline) {
			break
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	ds := ReadCounters()
	tg, err := threadguard.ReadStats()
	if err != nil {
		return err
	}
	created := ds.Created - dsBefore.Created
	decoys, decoysDestroyed := fuzzkit.Decoys()
	decoys, decoysDestroyed = decoys-decoysBefore, decoysDestroyed-decoysDestroyedBefore
	switch {
	case ds.Created != ds.Destroyed:
		return fmt.Errorf("docstore created %d stores and destroyed %d", ds.Created, ds.Destroyed)
	case ds.Misplaced != 0:
		return fmt.Errorf("docstore counted %d destructors off their owner", ds.Misplaced)
	case tg.Live != tgBefore.Live || tg.DeferredPending != 0:
		return fmt.Errorf("threadguard: %d objects live (%d before), %d destroy requests pending",
			tg.Live, tgBefore.Live, tg.DeferredPending)
	case decoysDestroyed != decoys:
		return fmt.Errorf("the misuse kit registered %d decoys, and their destructor ran %d times", decoys, decoysDestroyed)
	case tg.Created-tgBefore.Created != created+decoys || tg.Destroyed-tgBefore.Destroyed != created+decoys:
		return fmt.Errorf("threadguard registered %d and destroyed %d objects, docstore created %d stores and the misuse kit %d decoys",
			tg.Created-tgBefore.Created, tg.Destroyed-tgBefore.Destroyed, created, decoys)
	}
	runs, unrecorded := DestroyLogTotal()
	if runs != created || unrecorded != 0 {
		return fmt.Errorf("destroy log: %d runs (%d unrecorded) for %d stores", runs, unrecorded, created)
	}
	for serial := uint64(1); serial <= ds.Created; serial++ {
		if r := Destroyed(serial); !r.OnOwner() {
			return fmt.Errorf("store %d: %+v, want one run on its owner", serial, r)
		}
	}
	if testing.Verbose() {
		fmt.Printf("accounting (%s): %d stores, each destroyed exactly once on its owner; "+
			"threadguard: %d wrong-thread refusals, %d threads started\n",
			MemoryManager, created, tg.ViolationsWrongThread-tgBefore.ViolationsWrongThread,
			tg.ThreadsStarted-tgBefore.ThreadsStarted)
	}
	return nil
}

// waitDestroyed runs the garbage collector until the store with this serial
// has been destroyed, and returns its record.
func waitDestroyed(t *testing.T, serial uint64) DestroyRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := Destroyed(serial)
		if r.Runs > 0 {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("store %d was not destroyed within 5s", serial)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

// checkDestroyedOn checks that the store was destroyed exactly once, on owner.
func checkDestroyedOn(t *testing.T, serial, owner uint64) {
	t.Helper()
	r := Destroyed(serial)
	if !r.OnOwner() || r.Owner != owner {
		t.Errorf("store %d: %+v, want one run on owner %d", serial, r, owner)
	}
}

// snapshot is the whole content of a store, read on its owner.
type snapshot struct {
	Count     uint64
	Values    map[string]string
	Revisions map[string]uint64
}

// read takes a snapshot of the keys given, with the Handle methods: call it
// on the owner.
func read(h Handle, keys []string) (snapshot, error) {
	s := snapshot{Values: map[string]string{}, Revisions: map[string]uint64{}}
	var err error
	if s.Count, err = h.Count(); err != nil {
		return s, err
	}
	for _, k := range keys {
		v, ok, err := h.Get(k)
		if err != nil {
			return s, err
		}
		if ok {
			s.Values[k] = v
		}
		if s.Revisions[k], err = h.Revisions(k); err != nil {
			return s, err
		}
	}
	return s, nil
}

func (s snapshot) equal(o snapshot) bool {
	if s.Count != o.Count || len(s.Values) != len(o.Values) || len(s.Revisions) != len(o.Revisions) {
		return false
	}
	for k, v := range s.Values {
		if w, ok := o.Values[k]; !ok || w != v {
			return false
		}
	}
	for k, n := range s.Revisions {
		if m, ok := o.Revisions[k]; !ok || m != n {
			return false
		}
	}
	return true
}
