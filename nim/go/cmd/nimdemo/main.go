// Command nimdemo uses a Nim library (docstore: stores of documents that
// live on the garbage-collected heap of the thread that created them) from
// Go, through threadguard: stores owned by a Thread and by a Runner, used
// from many goroutines; a call from a goroutine on the wrong thread refused
// without touching the Nim heap; a forgotten store destroyed on its owner;
// and, at the end, every store destroyed exactly once, on its owner.
//
// Build tags choose the Nim memory manager (default orc): -tags nim_refc.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"threadguard.dev/nimdocstore/docstore"
	"threadguard.dev/threadguard"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nimdemo:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	docstore.StartDestroyLog()
	fmt.Printf("threadguard %s, Nim docstore built with --gc:%s\n", threadguard.Version(), docstore.LinkedMemoryManager())
	var serials []uint64

	// 1. A store owned by a Thread: a goroutine locked to its own OS thread.
	section("1. A store owned by a Thread, used from 8 goroutines")
	th, err := threadguard.NewThread("nim-owner")
	if err != nil {
		return err
	}
	defer th.Close()
	s, err := docstore.New(ctx, th)
	if err != nil {
		return err
	}
	defer s.Close()
	serials = append(serials, s.Serial())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() { // any goroutine: each call runs on the Thread
			defer wg.Done()
			for i := range 100 {
				if err := s.Put(ctx, fmt.Sprintf("doc-%d", g), fmt.Sprintf("version %d", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	n, err := s.Count(ctx)
	if err != nil {
		return err
	}
	v, _, err := s.Get(ctx, "doc-3")
	if err != nil {
		return err
	}
	revs, err := s.Revisions(ctx, "doc-3")
	if err != nil {
		return err
	}
	fmt.Printf("store %d on thread %s: %d documents; doc-3 = %q after %d revisions\n", s.Serial(), th, n, v, revs)

	// 2. A store owned by a Runner: a thread the library started.
	section("2. A store owned by a Runner: blocking calls and posted work")
	r, err := threadguard.StartRunner("nim-runner", 64)
	if err != nil {
		return err
	}
	defer r.Stop()
	rs, err := docstore.NewOnRunner(ctx, r)
	if err != nil {
		return err
	}
	serials = append(serials, rs.Serial())
	if err := rs.Put(ctx, "greeting", "hello from Go"); err != nil { // Runner.Call: waits
		return err
	}
	h := rs.Handle() // used directly by work and callbacks, which run on the runner
	type outcome struct {
		onRunner bool
		err      error
	}
	results := make(chan outcome, 3)
	for i := range 3 {
		err := r.Post(
			func() error { return h.Put(fmt.Sprintf("posted-%d", i), "posted work") },
			func(err error) { // the done callback: on the runner too
				results <- outcome{threadguard.CurrentThreadID() == r.ThreadID(), err}
			})
		if err != nil {
			return err
		}
	}
	for range 3 {
		o := <-results
		fmt.Printf("posted work done: err=%v, callback on the runner thread: %v\n", o.err, o.onRunner)
	}
	if n, err = rs.Count(ctx); err != nil {
		return err
	}
	fmt.Printf("store %d on runner %s: %d documents\n", rs.Serial(), r, n)

	// 3. Misuse: a raw call from a goroutine that is not on the owner.
	section("3. A call from the wrong thread is refused; the Nim heap is untouched")
	done := make(chan error)
	go func() {
		runtime.Gosched() // wherever this goroutine runs now, it is not the owner's thread
		done <- s.Handle().Put("doc-3", "overwritten from the wrong thread")
	}()
	err = <-done
	fmt.Printf("raw docstore_put from another goroutine: wrong thread = %v\n  %v\n",
		errors.Is(err, threadguard.ErrWrongThread), err)
	if err := s.Collect(ctx); err != nil { // a full collection of the owner's Nim heap
		return err
	}
	v, _, err = s.Get(ctx, "doc-3")
	if err != nil {
		return err
	}
	fmt.Printf("after a full collection, doc-3 = %q\n", v)

	// 4. A store dropped without Close.
	section("4. A forgotten store is destroyed on its owner")
	forgotten, err := forget(ctx, th)
	if err != nil {
		return err
	}
	serials = append(serials, forgotten)
	rec, err := waitDestroyed(forgotten)
	if err != nil {
		return err
	}
	fmt.Printf("store %d: destroyed %d time(s), on thread %d (owner %d)\n", forgotten, rec.Runs, rec.RanOn, rec.Owner)

	// 5. Close everything and count.
	section("5. Every destructor ran exactly once, on its owner")
	if err := s.Close(); err != nil {
		return err
	}
	if err := th.Close(); err != nil {
		return err
	}
	if err := r.Stop(); err != nil { // destroys the runner's store, on the runner
		return err
	}
	for _, serial := range serials {
		rec := docstore.Destroyed(serial)
		fmt.Printf("store %d: %d destructor run(s), on its owner: %v\n", serial, rec.Runs, rec.OnOwner())
	}
	c := docstore.ReadCounters()
	st, err := threadguard.ReadStats()
	if err != nil {
		return err
	}
	fmt.Printf("docstore: %d created, %d destroyed, %d off their owner\n", c.Created, c.Destroyed, c.Misplaced)
	fmt.Printf("threadguard: %d live objects, %d refused for the wrong thread\n", st.Live, st.ViolationsWrongThread)
	if c.Created != c.Destroyed || c.Misplaced != 0 || st.Live != 0 {
		return errors.New("destructor accounting does not add up")
	}
	return nil
}

// forget creates a store on th, fills it and drops it.
func forget(ctx context.Context, th *threadguard.Thread) (uint64, error) {
	s, err := docstore.New(ctx, th)
	if err != nil {
		return 0, err
	}
	return s.Serial(), s.Put(ctx, "note", "nobody closes this store")
}

func waitDestroyed(serial uint64) (docstore.DestroyRecord, error) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		runtime.GC() // finds the store unreachable; its cleanup asks the owner
		if rec := docstore.Destroyed(serial); rec.Runs > 0 {
			return rec, nil
		}
		time.Sleep(time.Millisecond)
	}
	return docstore.DestroyRecord{}, fmt.Errorf("store %d was not destroyed", serial)
}

func section(title string) { fmt.Printf("\n%s\n", title) }
