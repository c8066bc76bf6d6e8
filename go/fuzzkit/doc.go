// Package fuzzkit fuzzes a Go package that wraps a threadguard-guarded C
// library for thread misuse.
//
// You list your operations in a Spec (constructors, methods, destructors
// and deferred destructors, as functions over threadguard.Handle values
// that make their library call on the calling OS thread), and a Kit turns
// any bytes into a program that runs them, one step at a time, on a
// threadguard.Thread, a goroutine locked to its OS thread, a
// threadguard.Runner and an unpinned goroutine, with handles that are live,
// another thread's, destroyed, forged, of another type, or owned by an
// executor that has exited (executors exit and are replaced during a
// program). Handles of another type include the kit's decoys: objects it
// registers itself on an executor, with threadguard.New and a tag of its
// own (DecoyTag), which it tracks like the Spec's objects (owned, destroyed
// once on their owner by their own record, counted, gone when their owner
// exits), so that every operation meets them. For a kind whose tag the Spec
// gives (Spec.Tag), the kit also runs re-entrant steps: it borrows one of
// the executor's objects of that kind (threadguard.Handle.With) and calls an
// operation on the same object inside the borrow, where threadguard answers
// ErrBusy (a deferred destroy may instead be queued, to run when the borrow
// ends). Each step is checked against what threadguard promises for any
// library built on it:
//
//   - no panic leaves an operation, and every error is a threadguard
//     sentinel that the handle checks allow for that handle on that thread
//     (ErrNullHandle, ErrWrongThread, ErrOwnerExited, ErrStale,
//     ErrWrongType, ErrBusy) and that the operation documents;
//   - a refused call has no effect: no object created or destroyed (inside a
//     borrow of its object, none created or destroyed while it holds);
//   - every object is destroyed exactly once, on its owner (by the
//     library's own record, through a Witness): when its destructor says
//     so, when a deferred destroy runs, or when its owner exits;
//   - when the executors are done, threadguard counts no live objects and
//     no pending requests, every executor's OS thread has exited, and no
//     goroutine is left running.
//
// A Spec for a library whose objects record their destructor runs:
//
//	spec := &fuzzkit.Spec{}
//	store := spec.Kind("store", func(serial uint64) (int, uint64) {
//		r := docstore.Destroyed(serial)
//		return r.Runs, r.RanOn
//	})
//	spec.Create(store, "docstore_new", func(uint64) (threadguard.Handle, uint64, error) {
//		h, serial, err := create()
//		return h.Raw(), serial, err
//	})
//	spec.Call(store, "docstore_count", func(h threadguard.Handle, _ uint64) error {
//		_, err := docstore.Handle(h).Count()
//		return err
//	})
//	spec.Destroy(store, "docstore_free", func(h threadguard.Handle) error { return docstore.Handle(h).Free() })
//	spec.DestroyLater(store, "docstore_free_later", func(h threadguard.Handle) error { return docstore.Handle(h).FreeLater() })
//	spec.Tag(store, docstore.Tag) // optional: re-entrant steps for stores
//
//	kit := fuzzkit.New(spec)
//	f.Fuzz(func(t *testing.T, program []byte) { kit.Run(t, program) })
//
// A destructor must check the type, as docstore_free does: tg_destroy alone
// destroys an object of any type, and the decoys show it.
//
// Programs run one at a time (threadguard's counters are process-wide):
// do not run other code that uses threadguard alongside them. A test that
// accounts for every object threadguard counts must count the decoys too
// (Decoys).
//
// Decoys and re-entrant steps came after the first programs: a seed saved
// before them reads the same up to its first action byte in 190-204 (then a
// deferred destructor or RunPending, now a decoy) or 230-242 (then any
// operation, now a re-entrant one when a kind has a tag), and differently
// from there.
package fuzzkit
