// Command demo shows threadguard keeping a thread-affine C object on its
// own thread: correct use through the main thread (handed over as an owner,
// as GL on macOS requires) and a Thread, misuse from other threads
// caught (and, without threadguard, the damage it would have done), a
// forgotten object destroyed on the right thread, and the library's
// counters.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"threadguard.dev/threadguard"
	"threadguard.dev/threadguard/internal/affine"
)

// The main goroutine stays on the process's main thread, to hand it over.
func init() { runtime.LockOSThread() }

func main() {
	var err error
	// The demo runs on another goroutine while the main thread serves the
	// work sent to it; Run returns once the main thread is given back.
	if herr := threadguard.Main().Run(func() { err = run() }); err == nil {
		err = herr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// created makes an affine object on the calling thread and reports it.
func created(ptr *unsafe.Pointer) func() (unsafe.Pointer, error) {
	return func() (unsafe.Pointer, error) {
		p, err := affine.New()
		*ptr = p
		return p, err
	}
}

func run() error {
	ctx := context.Background()
	fmt.Printf("threadguard %s (C ABI %d)\n", threadguard.Version(), threadguard.ABIVersion())
	fmt.Println()
	fmt.Println("The object used here is an \"affine counter\" from a small C library: its value")
	fmt.Println("lives in the creating thread's thread-local storage, as the state of a GL")
	fmt.Println("context or an interpreter does. Called from another thread, it silently reads")
	fmt.Println("and writes that thread's state instead.")

	// The GL-like context lives on the process's main thread, the owner
	// that libraries such as Cocoa and GLFW on macOS demand.
	gl := threadguard.Main()
	defer gl.Close() // Close is idempotent: these only matter on an early return
	audio, err := threadguard.NewThread("audio")
	if err != nil {
		return err
	}
	defer audio.Close()

	// 1. Correct use.
	section("1. Correct use: the counter is owned by the main thread")
	var counterPtr unsafe.Pointer
	counter, err := gl.New(ctx, affine.Tag, affine.Destructor(), created(&counterPtr))
	if err != nil {
		return err
	}
	defer counter.Close()
	const goroutines, calls = 8, 1000
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		offOwner int
	)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				counter.With(ctx, func(p unsafe.Pointer) error {
					affine.Add(p, 1)
					if threadguard.CurrentThreadID() != gl.ID() {
						mu.Lock()
						offOwner++
						mu.Unlock()
					}
					return nil
				})
			}
		}()
	}
	wg.Wait()
	fmt.Printf("the main thread %s owns the counter (handle %v).\n", gl, counter.Handle())
	fmt.Printf("%d goroutines made %d calls with counter.With; each ran on thread %d.\n", goroutines, goroutines*calls, gl.ID())
	fmt.Printf("value: %d; calls that ran elsewhere: %d\n", value(ctx, counter), offOwner)

	// 2. Misuse.
	section("2. Misuse: the same counter from other threads")
	var victimPtr unsafe.Pointer
	victim, err := audio.New(ctx, affine.Tag, affine.Destructor(), created(&victimPtr))
	if err != nil {
		return err
	}
	defer victim.Close()
	fmt.Printf("Thread %s has a counter of its own, value %d.\n", audio, value(ctx, victim))

	fmt.Println()
	fmt.Println("Without threadguard: code on the audio thread calls affine_add(counter, 1) directly.")
	misuse := affine.ReadStats().Misuse
	var raw int64
	audio.Do(ctx, func() error { raw = affine.Add(counterPtr, 1); return nil })
	fmt.Printf("  the call returned %d, as if it worked, but:\n", raw)
	fmt.Printf("  the counter's value is still %d, and the audio thread's own counter is now %d.\n", value(ctx, counter), value(ctx, victim))
	fmt.Printf("  The affine library counted %d call(s) on a wrong thread.\n", affine.ReadStats().Misuse-misuse)
	victim.With(ctx, func(p unsafe.Pointer) error { affine.Add(p, -affine.Value(p)); return nil }) // repair

	fmt.Println()
	fmt.Println("With threadguard: a wandering goroutine (not locked to any thread) uses the")
	fmt.Println("counter's raw handle, which makes the call where it happens to run.")
	misuse = affine.ReadStats().Misuse
	wandered := make(chan error)
	go func() {
		runtime.Gosched()
		wandered <- counter.Handle().With(affine.Tag, func(p unsafe.Pointer) error {
			affine.Add(p, 1)
			return nil
		})
	}()
	err = <-wandered
	fmt.Printf("  refused: %v\n", err)
	err = audio.Do(ctx, func() error {
		return counter.Handle().With(affine.Tag, func(p unsafe.Pointer) error {
			affine.Add(p, 1)
			return nil
		})
	})
	fmt.Printf("  from the audio thread, refused too: %v\n", err)
	fmt.Printf("  counter: %d; audio's counter: %d; wrong-thread calls that reached C: %d\n",
		value(ctx, counter), value(ctx, victim), affine.ReadStats().Misuse-misuse)

	// 3. A forgotten object.
	section("3. A forgotten object: dropped without Close")
	serial, err := forget(ctx, gl)
	if err != nil {
		return err
	}
	fmt.Printf("Created object #%d on thread %s and dropped it.\n", serial, gl)
	deadline := time.Now().Add(10 * time.Second)
	rec, _ := affine.Lookup(serial)
	for rec.Destroys == 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
		rec, _ = affine.Lookup(serial)
	}
	fmt.Printf("After garbage collection its cleanup asked the owner to destroy it:\n")
	fmt.Printf("  destructor runs: %d, on thread %d (the owner is %d)\n", rec.Destroys, rec.DestroyedOn, rec.Owner)

	// 4. Counters.
	section("4. The library's counters (tg_get_stats)")
	s, err := threadguard.ReadStats()
	if err != nil {
		return err
	}
	fmt.Printf("  objects: %d live, %d created, %d destroyed, %d destruction requests pending\n",
		s.Live, s.Created, s.Destroyed, s.DeferredPending)
	fmt.Printf("  violations: %d (wrong thread %d, stale %d, null handle %d, busy %d)\n",
		s.Violations, s.ViolationsWrongThread, s.ViolationsStale, s.ViolationsNullHandle, s.ViolationsBusy)
	fmt.Printf("  threads: %d live, %d started; panics caught: %d\n", s.ThreadsLive, s.ThreadsStarted, s.Panics)

	// 5. Shutdown.
	section("5. Shutdown: Close the objects and the Thread, give the main thread back")
	for _, c := range []interface{ Close() error }{counter, victim, gl, audio} {
		if err := c.Close(); err != nil {
			return err
		}
	}
	if s, err = threadguard.ReadStats(); err != nil {
		return err
	}
	fmt.Printf("  objects: %d live, %d created, %d destroyed\n", s.Live, s.Created, s.Destroyed)
	return nil
}

// forget creates an object on th and drops it without Close.
func forget(ctx context.Context, th threadguard.Owner) (serial uint64, err error) {
	var p unsafe.Pointer
	if _, err = th.New(ctx, affine.Tag, affine.Destructor(), created(&p)); err != nil {
		return 0, err
	}
	return affine.Serial(p), nil
}

func section(title string) {
	fmt.Println()
	fmt.Println(title)
}

// value reads an affine object's value on its owner.
func value(ctx context.Context, o *threadguard.Object) int64 {
	var v int64
	if err := o.With(ctx, func(p unsafe.Pointer) error { v = affine.Value(p); return nil }); err != nil {
		return -1
	}
	return v
}
