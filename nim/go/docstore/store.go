package docstore

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"

	"threadguard.dev/threadguard"
)

// owner is where a Store lives: one OS thread, and a way to run Go code
// there from any goroutine.
type owner interface {
	// do runs fn on the owner's OS thread and returns its error.
	do(ctx context.Context, fn func() error) error
	// id is the library's ID of the owner's OS thread.
	id() uint64
	// pending asks the owner to run destroy requests soon.
	pending()
}

// Store is a docstore store, owned by one OS thread (a threadguard.Thread or
// a threadguard.Runner), on whose Nim heap it lives. Its methods may be
// called from any goroutine: each runs its docstore call on the owner.
type Store struct {
	h       Handle
	serial  uint64
	own     owner
	closed  atomic.Bool
	cleanup runtime.Cleanup
}

// New creates a store owned by t: docstore_new runs on t's OS thread.
// ctx applies as in Thread.Do.
func New(ctx context.Context, t *threadguard.Thread) (*Store, error) {
	return open(ctx, threadOwner{t})
}

func open(ctx context.Context, own owner) (*Store, error) {
	var (
		h      Handle
		serial uint64
	)
	err := own.do(ctx, func() (err error) {
		h, serial, err = create()
		return err
	})
	if err != nil {
		return nil, err
	}
	s := &Store{h: h, serial: serial, own: own}
	s.cleanup = runtime.AddCleanup(s, forgotten.destroy, forgotten{h: h, own: own})
	return s, nil
}

// Handle returns the store's handle, for calls made on the owner thread.
func (s *Store) Handle() Handle { return s.h }

// Serial returns the store's serial number (unique in the process, from 1).
func (s *Store) Serial() uint64 { return s.serial }

// Owner returns the library's ID of the owner's OS thread.
func (s *Store) Owner() uint64 { return s.own.id() }

// Put sets key to value on the owner; a previous value becomes a revision.
func (s *Store) Put(ctx context.Context, key, value string) error {
	defer runtime.KeepAlive(s)
	return s.own.do(ctx, func() error { return s.h.Put(key, value) })
}

// Get returns the value of key and whether it is present.
func (s *Store) Get(ctx context.Context, key string) (value string, ok bool, err error) {
	defer runtime.KeepAlive(s)
	err = s.own.do(ctx, func() (err error) {
		value, ok, err = s.h.Get(key)
		return err
	})
	return value, ok, err
}

// Revisions returns how many values key has had (0 if it is absent).
func (s *Store) Revisions(ctx context.Context, key string) (n uint64, err error) {
	defer runtime.KeepAlive(s)
	err = s.own.do(ctx, func() (err error) {
		n, err = s.h.Revisions(key)
		return err
	})
	return n, err
}

// Count returns the number of keys.
func (s *Store) Count(ctx context.Context) (n uint64, err error) {
	defer runtime.KeepAlive(s)
	err = s.own.do(ctx, func() (err error) {
		n, err = s.h.Count()
		return err
	})
	return n, err
}

// Collect runs a full garbage collection of the owner's Nim heap.
func (s *Store) Collect(ctx context.Context) error {
	defer runtime.KeepAlive(s)
	return s.own.do(ctx, func() error {
		collect()
		return nil
	})
}

// Close destroys the store on its owner and cancels its cleanup. It is
// idempotent, and returns nil once the owner is closing or closed
// (Thread.Close, Runner.Stop): that destroys the store, on the owner.
func (s *Store) Close() error {
	defer runtime.KeepAlive(s)
	if s.closed.Load() {
		return nil
	}
	err := s.own.do(context.Background(), s.h.Free)
	gone := errors.Is(err, threadguard.ErrStale) || errors.Is(err, threadguard.ErrOwnerExited)
	shutDown := errors.Is(err, threadguard.ErrShutDown) // the owner's close destroyed it
	if err != nil && !gone && !shutDown {
		return err
	}
	if !s.closed.CompareAndSwap(false, true) {
		return nil // closed concurrently
	}
	s.cleanup.Stop()
	if shutDown {
		return nil
	}
	return err
}

// forgotten is what a Store's cleanup needs; it must not refer to the Store.
type forgotten struct {
	h   Handle
	own owner
}

// destroy runs on the cleanup goroutine, on whatever thread: it may only
// ask the owner to destroy the store.
func (f forgotten) destroy() {
	if err := f.h.FreeLater(); err == nil {
		f.own.pending()
	}
	// ErrOwnerExited: the owner's exit destroyed the store already.
}

// threadOwner binds stores to a threadguard.Thread.
type threadOwner struct{ t *threadguard.Thread }

func (o threadOwner) do(ctx context.Context, fn func() error) error { return o.t.Do(ctx, fn) }
func (o threadOwner) id() uint64                                    { return o.t.ID() }

// pending queues a RunPending on the Thread, so the store does not wait
// for unrelated work there. The result is not needed: after the Thread's
// Close, its cleanup destroyed the store.
func (o threadOwner) pending() {
	o.t.Go(threadguard.RunPending)
}
