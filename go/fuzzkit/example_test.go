package fuzzkit_test

import (
	"errors"
	"fmt"
	"unsafe"

	"threadguard.dev/threadguard"
	"threadguard.dev/threadguard/fuzzkit"
	"threadguard.dev/threadguard/internal/affine"
)

// A Spec for a C library that registers its objects with threadguard
// itself (internal/affine), run over a few seeded random programs.
func Example() {
	spec := &fuzzkit.Spec{}
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
	// tg_destroy takes an object of any type: check the type with a borrow
	// first (the kit's decoys are of another type).
	spec.Destroy(k, "affine_destroy", func(h threadguard.Handle) error {
		if err := h.With(affine.Tag, func(unsafe.Pointer) error { return nil }); err != nil {
			return err
		}
		if err := h.Destroy(); !errors.Is(err, threadguard.ErrStale) {
			return err
		}
		return nil // the borrow ran this thread's destroy requests as it ended: one destroyed it
	})
	spec.DestroyLater(k, "tg_destroy_later", threadguard.Handle.DestroyLater)
	spec.Tag(k, affine.Tag) // for re-entrant steps

	kit := fuzzkit.New(spec)
	for seed := range uint64(20) {
		if _, err := kit.Check(fuzzkit.RandomProgram(seed)); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println("20 programs: no misuse got through")
	// Output: 20 programs: no misuse got through
}
