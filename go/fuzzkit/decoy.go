package fuzzkit

// #include <stdlib.h>
// #include "decoy.h"
import "C"

import (
	"errors"
	"unsafe"

	"threadguard.dev/threadguard"
)

// DecoyTag is the type tag of the kit's decoys (TagOf of
// "threadguard.dev/threadguard/fuzzkit.decoy"): objects the kit registers
// itself, with threadguard.New on the executor of a decoy step, so that
// every operation of a Spec meets live handles of a type it does not take.
// No kind of a Spec may use it.
const DecoyTag threadguard.Tag = 0x3e2ae403

// decoy is one of the kit's objects. Its destructor (fuzzkit_decoy_destroy)
// records each run and its thread in rec, which the model reads as the
// decoy's witness.
type decoy struct {
	// obj is kept reachable until the program ends: an Object's cleanup asks
	// its owner to destroy it, which would destroy a live decoy behind the
	// model's back.
	obj *threadguard.Object
	rec *C.fuzzkit_decoy
}

// newDecoy registers a decoy on the calling OS thread (bound to the Thread
// or Runner whose work calls it, or else to the calling goroutine).
func newDecoy() (*decoy, error) {
	rec := (*C.fuzzkit_decoy)(C.calloc(1, C.sizeof_fuzzkit_decoy))
	if rec == nil {
		return nil, errors.New("fuzzkit: out of memory for a decoy")
	}
	obj, err := threadguard.New(DecoyTag, unsafe.Pointer(C.fuzzkit_decoy_destroy), func() (unsafe.Pointer, error) {
		return unsafe.Pointer(rec), nil
	})
	if err != nil {
		// Refused: New has run the destructor on rec, which holds no
		// resources.
		C.free(unsafe.Pointer(rec))
		return nil, err
	}
	return &decoy{obj: obj, rec: rec}, nil
}

// witness reports the decoy's destructor runs and the thread of the last.
func (d *decoy) witness() (runs int, ranOn uint64) {
	return int(C.fuzzkit_decoy_runs(d.rec)), uint64(C.fuzzkit_decoy_ran_on(d.rec))
}

// release ends the kit's hold on a decoy whose owner has exited (so it is
// destroyed): Close cancels the Object's cleanup (the object is gone, which
// Close reports as success for a Thread's or Runner's, and as
// ErrOwnerExited for a goroutine's), and the record is freed.
func (d *decoy) release() error {
	err := d.obj.Close()
	if err != nil && !errors.Is(err, threadguard.ErrOwnerExited) {
		return err
	}
	C.free(unsafe.Pointer(d.rec))
	return nil
}
