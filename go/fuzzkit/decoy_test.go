package fuzzkit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard"
	"threadguard.dev/threadguard/internal/affine"
)

// pointers makes spec's constructor (op 0, affine_register_here) record
// each object's pointer by handle, for planted bugs that reach objects
// without threadguard; the returned function looks one up.
func pointers(spec *Spec) func(threadguard.Handle) (unsafe.Pointer, bool) {
	var mu sync.Mutex
	objects := map[threadguard.Handle]unsafe.Pointer{}
	spec.ops[0].create = func(uint64) (threadguard.Handle, uint64, error) {
		obj, owner, key, status := affine.RegisterHere()
		if status != 0 {
			return threadguard.Handle{}, 0, threadguard.StatusError(status)
		}
		h := threadguard.Handle{Owner: owner, Key: key}
		mu.Lock()
		objects[h] = obj
		mu.Unlock()
		return h, affine.Serial(obj), nil
	}
	return func(h threadguard.Handle) (unsafe.Pointer, bool) {
		mu.Lock()
		defer mu.Unlock()
		obj, ok := objects[h]
		return obj, ok
	}
}

func TestRandomProgramsRegisterDecoysAndRunReentrantSteps(t *testing.T) {
	kit := New(affineSpec())
	var decoys, reentrant, objects int
	registeredBefore, destroyedBefore := Decoys()
	for seed := range uint64(60) {
		s, err := kit.Check(RandomProgram(seed))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		decoys += s.Decoys
		reentrant += s.Reentrant
		objects += s.Objects
	}
	t.Logf("60 programs: %d objects, %d of them decoys; %d re-entrant operations", objects, decoys, reentrant)
	if decoys == 0 || decoys == objects || reentrant == 0 {
		t.Fatalf("60 programs: %d objects, %d of them decoys; %d re-entrant operations", objects, decoys, reentrant)
	}
	registered, destroyed := Decoys()
	if registered-registeredBefore != uint64(decoys) || destroyed-destroyedBefore != uint64(decoys) {
		t.Fatalf("60 programs registered %d decoys; the kit counted %d registered and %d destructor runs",
			decoys, registered-registeredBefore, destroyed-destroyedBefore)
	}
}

func TestAKindWithoutATagGetsNoReentrantSteps(t *testing.T) {
	kit := New(affineSpecTagged(false))
	total := map[int]int{}
	for seed := range uint64(60) {
		s, err := kit.Check(RandomProgram(seed))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if s.Reentrant != 0 {
			t.Fatalf("seed %d: %d re-entrant operations for a Spec without tags", seed, s.Reentrant)
		}
		for code, n := range s.Statuses {
			total[code] += n
		}
	}
	if total[codeOf(threadguard.ErrBusy)] != 0 || total[codeOf(threadguard.ErrWrongType)] == 0 {
		t.Fatalf("without tags: want wrong type (decoys) and no busy, got %v", total)
	}
}

// TestAnOperationThatSkipsTheTypeCheckIsFound plants a bug: an add that
// takes ErrWrongType for "not an affine object: nothing to add" and reports
// success. The Spec has one kind and no tag: only the kit's decoys can show
// it.
func TestAnOperationThatSkipsTheTypeCheckIsFound(t *testing.T) {
	spec := affineSpecTagged(false)
	spec.Call(Kind(0), "affine_add_any", func(h threadguard.Handle, arg uint64) error {
		n := int64(arg)
		err := h.With(affine.Tag, func(obj unsafe.Pointer) error {
			affine.AddDirect(obj, unsafe.Pointer(&n))
			return nil
		})
		if errors.Is(err, threadguard.ErrWrongType) {
			return nil
		}
		return err
	})
	seed, f := New(spec).Find(0, 200)
	if f == nil {
		t.Fatal("the kit did not find the method that ignores the type in 200 programs")
	}
	t.Logf("found with seed %d:\n%s", seed, f)
	if !strings.Contains(f.Message, "affine_add_any returned success") || !strings.Contains(f.Message, "allow wrong type") {
		t.Fatalf("the failure is not the planted bug:\n%s", f)
	}
}

// TestAnOperationThatIgnoresBusyIsFound plants a bug: an add that borrows
// its object, but takes ErrBusy to mean "borrowed by my caller" and adds
// through its own pointer to the object, outside the guard. Only a call
// made inside a borrow of the same object, a re-entrant step, can show it.
func TestAnOperationThatIgnoresBusyIsFound(t *testing.T) {
	spec := affineSpec()
	lookup := pointers(spec)
	spec.Call(Kind(0), "affine_add_reentrant", func(h threadguard.Handle, arg uint64) error {
		n := int64(arg)
		err := h.With(affine.Tag, func(obj unsafe.Pointer) error {
			affine.AddDirect(obj, unsafe.Pointer(&n))
			return nil
		})
		if obj, ok := lookup(h); ok && errors.Is(err, threadguard.ErrBusy) {
			affine.AddDirect(obj, unsafe.Pointer(&n))
			return nil
		}
		return err
	})
	seed, f := New(spec).Find(0, 200)
	if f == nil {
		t.Fatal("the kit did not find the method that ignores busy in 200 programs")
	}
	t.Logf("found with seed %d:\n%s", seed, f)
	if !strings.Contains(f.Message, "affine_add_reentrant returned success") || !strings.Contains(f.Message, "inside a borrow") {
		t.Fatalf("the failure is not the planted bug:\n%s", f)
	}
}

// TestADestroyThatIgnoresBusyIsFound plants a bug: a destroy that, finding
// its object busy, asks for a deferred destroy instead and reports the
// object destroyed, while its caller still holds it.
func TestADestroyThatIgnoresBusyIsFound(t *testing.T) {
	spec := affineSpec()
	spec.Destroy(Kind(0), "affine_destroy_reentrant", func(h threadguard.Handle) error {
		err := affineDestroy(h)
		if errors.Is(err, threadguard.ErrBusy) {
			return h.DestroyLater()
		}
		return err
	})
	seed, f := New(spec).Find(0, 300)
	if f == nil {
		t.Fatal("the kit did not find the destroy that ignores busy in 300 programs")
	}
	t.Logf("found with seed %d:\n%s", seed, f)
	if !strings.Contains(f.Message, "affine_destroy_reentrant returned success") || !strings.Contains(f.Message, "inside a borrow") {
		t.Fatalf("the failure is not the planted bug:\n%s", f)
	}
}

// TestDecoysAreDestroyedOnceOnTheirOwner checks the decoys' own record: a
// decoy destroyed by its owner, one whose destroy another thread asked for,
// and one destroyed by its owner's exit each run their destructor once, on
// the owner; a refused destroy runs nothing.
func TestDecoysAreDestroyedOnceOnTheirOwner(t *testing.T) {
	th, err := threadguard.NewThread("decoys")
	if err != nil {
		t.Fatal(err)
	}
	var now, later, left *decoy
	err = th.Do(context.Background(), func() (err error) {
		if now, err = newDecoy(); err != nil {
			return err
		}
		if later, err = newDecoy(); err != nil {
			return err
		}
		left, err = newDecoy()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*decoy{now, later, left} {
		if runs, _ := d.witness(); runs != 0 {
			t.Fatalf("decoy %v is alive, and its destructor ran %d times", d.obj.Handle(), runs)
		}
	}
	if err := now.obj.Handle().Destroy(); !errors.Is(err, threadguard.ErrWrongThread) {
		t.Fatalf("destroy of a decoy off its owner: %v, want ErrWrongThread", err)
	}
	if runs, _ := now.witness(); runs != 0 {
		t.Fatalf("a refused destroy ran the decoy's destructor %d times", runs)
	}
	if err := later.obj.Handle().DestroyLater(); err != nil {
		t.Fatal(err)
	}
	err = th.Do(context.Background(), func() error {
		if err := now.obj.Handle().Destroy(); err != nil {
			return err
		}
		return threadguard.RunPending()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*decoy{now, later, left} {
		if runs, on := d.witness(); runs != 1 || on != th.ID() {
			t.Errorf("decoy %v: destructor ran %d times, last on thread %d (owner %d)", d.obj.Handle(), runs, on, th.ID())
		}
		if err := d.release(); err != nil {
			t.Errorf("releasing decoy %v: %v", d.obj.Handle(), err)
		}
	}
}

func TestDecoyTagIsTagOfItsName(t *testing.T) {
	if got := threadguard.TagOf("threadguard.dev/threadguard/fuzzkit.decoy"); got != DecoyTag {
		t.Fatalf("TagOf = %#x, DecoyTag = %#x", uint32(got), uint32(DecoyTag))
	}
}

func TestSpecTagRefusesTagsItCannotUse(t *testing.T) {
	for _, c := range []struct {
		name string
		tag  threadguard.Tag
	}{{"zero", 0}, {"the decoys'", DecoyTag}, {"another kind's", 7}} {
		spec := &Spec{}
		a, b := spec.Kind("a", nil), spec.Kind("b", nil)
		spec.Tag(a, 7)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Spec.Tag accepted %s tag %#x", c.name, uint32(c.tag))
				}
			}()
			spec.Tag(b, c.tag)
		}()
	}
}
