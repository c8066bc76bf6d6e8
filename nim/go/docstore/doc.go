// Package docstore is a Go binding of docstore, an example Nim library whose
// objects (stores of documents: Nim ref objects, strings and seqs) live on
// the garbage-collected heap of the thread that created them, guarded by
// threadguard.
//
// Go moves goroutines between OS threads; Nim's heaps are per thread. A
// Store is therefore bound to an owner that stays on one OS thread, and
// every method routes its call there:
//
//   - a threadguard.Thread (New): a goroutine locked to its own OS thread;
//   - a threadguard.Runner (NewOnRunner): a thread the library started,
//     which Go did not create.
//
// The library checks every call anyway. A call that reaches a store from
// another thread, such as a Handle method called from a goroutine that has
// wandered off, returns an error wrapping threadguard.ErrWrongThread and
// touches nothing on the Nim heap.
//
// A Store dropped without Close is destroyed by its cleanup, which asks the
// owner to do it (docstore_free_later): the destructor always runs on the
// owner. Closing the owner (Thread.Close, Runner.Stop) destroys the stores
// it still owns, there.
//
// The Nim library is linked statically, built for one memory manager (see
// MemoryManager): orc by default, or refc, arc or markAndSweep with the
// build tag nim_refc, nim_arc or nim_markAndSweep.
package docstore

// #cgo CFLAGS: -I${SRCDIR}/../../docstore -I${SRCDIR}/../../../include
// #include "shim.h"
import "C"
