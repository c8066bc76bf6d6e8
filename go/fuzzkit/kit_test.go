package fuzzkit

import (
	"errors"
	"strings"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard"
	"threadguard.dev/threadguard/internal/affine"
)

// affineSpec is the module's test library (internal/affine) through the
// kit: a C library that registers its objects with threadguard itself.
func affineSpec() *Spec { return affineSpecTagged(true) }

// affineSpecTagged is affineSpec, with the kind's tag given (Spec.Tag) or
// not.
func affineSpecTagged(tagged bool) *Spec {
	spec := &Spec{}
	k := spec.Kind("affine", func(serial uint64) (int, uint64) {
		r, _ := affine.Lookup(serial)
		return int(r.Destroys), r.DestroyedOn
	})
	spec.Create(k, "affine_register_here", func(uint64) (threadguard.Handle, uint64, error) {
		obj, owner, key, status := affine.RegisterHere()
		if status != 0 {
			return threadguard.Handle{}, 0, threadguard.StatusError(status)
		}
		return threadguard.Handle{Owner: owner, Key: key}, affine.Serial(obj), nil
	})
	spec.Call(k, "affine_add", func(h threadguard.Handle, arg uint64) error {
		n := int64(arg)
		return h.Call(affine.Tag, affine.AddBorrow(), unsafe.Pointer(&n))
	})
	spec.Destroy(k, "affine_destroy", affineDestroy)
	spec.DestroyLater(k, "tg_destroy_later", threadguard.Handle.DestroyLater)
	if tagged {
		spec.Tag(k, affine.Tag)
	}
	return spec
}

// affineDestroy destroys the affine object h names: tg_destroy takes an
// object of any type, so the type is checked with a borrow first. That
// borrow runs the thread's queued destroy requests as it ends; if one of
// them destroyed the object, tg_destroy finds it gone (ErrStale), and what
// was asked is done.
func affineDestroy(h threadguard.Handle) error {
	if err := h.With(affine.Tag, func(unsafe.Pointer) error { return nil }); err != nil {
		return err
	}
	if err := h.Destroy(); !errors.Is(err, threadguard.ErrStale) {
		return err
	}
	return nil
}

func TestRandomProgramsPass(t *testing.T) {
	kit := New(affineSpec())
	total := map[int]int{}
	programs := 300
	if testing.Short() {
		programs = 60
	}
	for seed := range uint64(programs) {
		s, err := kit.Check(RandomProgram(seed))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for code, n := range s.Statuses {
			total[code] += n
		}
	}
	// Every handle check: wrong type from the kit's decoys, busy from the
	// re-entrant steps.
	for _, want := range []error{nil, threadguard.ErrNullHandle, threadguard.ErrWrongThread,
		threadguard.ErrOwnerExited, threadguard.ErrStale, threadguard.ErrWrongType, threadguard.ErrBusy} {
		if total[codeOf(want)] == 0 {
			t.Errorf("no program got %s: %v", codeName(codeOf(want)), total)
		}
	}
}

func TestProgramsRunTheSameWayEveryTime(t *testing.T) {
	kit := New(affineSpec())
	for seed := range uint64(10) {
		a, err := kit.Check(RandomProgram(seed))
		if err != nil {
			t.Fatal(err)
		}
		b, err := kit.Check(RandomProgram(seed))
		if err != nil {
			t.Fatal(err)
		}
		if a.Steps != b.Steps || a.Objects != b.Objects || len(a.Statuses) != len(b.Statuses) {
			t.Fatalf("seed %d: %+v, then %+v", seed, a, b)
		}
		for code, n := range a.Statuses {
			if b.Statuses[code] != n {
				t.Fatalf("seed %d: %+v, then %+v", seed, a, b)
			}
		}
	}
}

// TestAnUncheckedMethodIsFound plants a bug: an "add" that reaches the
// object through a side table of pointers, without threadguard's checks.
func TestAnUncheckedMethodIsFound(t *testing.T) {
	spec := affineSpec()
	lookup := pointers(spec)
	spec.Call(Kind(0), "affine_add_unchecked", func(h threadguard.Handle, arg uint64) error {
		obj, ok := lookup(h)
		if !ok {
			return threadguard.StatusError(4) // TG_ERR_STALE
		}
		if r, _ := affine.Lookup(affine.Serial(obj)); r.Destroys > 0 {
			return threadguard.StatusError(4) // freed: do not touch it
		}
		n := int64(arg)
		affine.AddDirect(obj, unsafe.Pointer(&n))
		return nil
	})
	seed, f := New(spec).Find(0, 200)
	if f == nil {
		t.Fatal("the kit did not find the unchecked method in 200 programs")
	}
	t.Logf("found with seed %d:\n%s", seed, f)
	if !strings.Contains(f.Message, "affine_add_unchecked") {
		t.Fatalf("the failure is not the planted bug:\n%s", f)
	}
}

// FuzzAffine is the affine spec under go test -fuzz:
//
//	go test -run '^$' -fuzz=FuzzAffine -fuzztime=30s ./fuzzkit
func FuzzAffine(f *testing.F) {
	for seed := range uint64(16) {
		f.Add(RandomProgram(seed))
	}
	kit := New(affineSpec())
	f.Fuzz(func(t *testing.T, program []byte) {
		kit.Run(t, program)
	})
}
