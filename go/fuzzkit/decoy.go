package fuzzkit

// #include <stdlib.h>
// #include "decoy.h"
import "C"

import (
	"errors"
	"sync/atomic"
	"unsafe"

	"threadguard.dev/threadguard"
)

// DecoyTag is the type tag of the kit's decoys (TagOf of
// "threadguard.dev/threadguard/fuzzkit.decoy"): objects the kit registers
// itself, with threadguard.New on the executor of a decoy step, so that
// every operation of a Spec meets live handles of a type it does not take.
// No kind of a Spec may use it.
const DecoyTag threadguard.Tag = 0x3e2ae403

// Decoys reports how many decoys the kit has registered in this process so
// far, and how many destructor runs of decoys there were: for a test that
// accounts for every object threadguard counts in the process, which
// includes the decoys. Once the programs' executors have ended, the two are
// equal.
func Decoys() (registered, destroyed uint64) {
	return decoysRegistered.Load(), uint64(C.fuzzkit_decoy_runs_total()) - decoysRefused.Load()
}

var (
	decoysRegistered atomic.Uint64
	// decoysRefused counts the destructor runs of decoys whose registration
	// failed (New runs the destructor then).
	decoysRefused atomic.Uint64
)

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
		// Refused: New may have run the destructor on rec, which holds no
		// resources.
		decoysRefused.Add(uint64(C.fuzzkit_decoy_runs(rec)))
		C.free(unsafe.Pointer(rec))
		return nil, err
	}
	decoysRegistered.Add(1)
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
