// Command shared uses a Rust library built with threadguard's
// export_thread_affine! (libcounters, tests/install/provider) and the
// threadguard Go wrapper on the same handles. Built with
// -tags threadguard_external, the wrapper calls the threadguard inside
// libcounters, the only copy in the process.
package main

// #cgo LDFLAGS: -lcounters
// #include "counters.h"
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"threadguard.dev/threadguard"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "shared:", err)
		os.Exit(1)
	}
}

func run() error {
	// Counters are thread-affine: create and use them on one OS thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	var h C.tg_handle
	if st := C.counter_new(40, &h); st != C.TG_OK {
		return fmt.Errorf("counter_new: %d", st)
	}
	var value C.int64_t
	if st := C.counter_add(h, 2, &value); st != C.TG_OK || value != 42 {
		return fmt.Errorf("counter_add: status %d, value %d", st, value)
	}
	handle := threadguard.Handle{Owner: uint64(h.owner), Key: uint64(h.key)}
	copies, err := threadguard.CopiesLoaded()
	if err != nil {
		return err
	}
	// One copy: the wrapper knows the library's handle. It is a Rust object, so a borrow as a
	// C object is refused as the wrong type (not as stale), and its owner is this thread.
	if copies != 1 {
		return fmt.Errorf("CopiesLoaded = %d, want 1", copies)
	}
	err = handle.With(1, func(unsafe.Pointer) error { return nil })
	if !errors.Is(err, threadguard.ErrWrongType) {
		return fmt.Errorf("Handle.With on the library's counter: %v, want ErrWrongType", err)
	}
	owner, err := handle.OwnerThread()
	if err != nil || owner != threadguard.CurrentThreadID() {
		return fmt.Errorf("OwnerThread = %d, %v; this thread is %d", owner, err, threadguard.CurrentThreadID())
	}
	stats, err := threadguard.ReadStats()
	if err != nil || stats.Live != 1 || stats.Created != 1 {
		return fmt.Errorf("stats %+v, %v: want the library's counter, live", stats, err)
	}
	// Destroyed through the wrapper, gone for the library.
	if err := handle.Destroy(); err != nil {
		return fmt.Errorf("Handle.Destroy: %w", err)
	}
	if st := C.counter_add(h, 1, &value); st != C.TG_ERR_STALE {
		return fmt.Errorf("counter_add after Handle.Destroy: status %d, want TG_ERR_STALE", st)
	}
	if stats, err = threadguard.ReadStats(); err != nil || stats.Live != 0 || stats.Destroyed != 1 {
		return fmt.Errorf("stats %+v, %v: want the counter destroyed once", stats, err)
	}
	fmt.Println("shared: one copy, handles shared by the library and the wrapper")
	return nil
}
