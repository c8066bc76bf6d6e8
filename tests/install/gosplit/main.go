// Command split shows what one threadguard per process prevents: built with
// -tags threadguard_static, the wrapper's copy of threadguard is linked into
// the program, and the program then loads libcounters (a Rust library built
// with export_thread_affine!, carrying a second copy) with dlopen. A counter
// that libcounters registers is unknown to the wrapper's copy: Handle.With
// refuses it as stale, the message says that two copies are loaded,
// CopiesLoaded counts them, and the library reports the split once on
// standard error.
package main

// #cgo LDFLAGS: -ldl
// #include <dlfcn.h>
// #include <stdint.h>
// #include <stdlib.h>
// #include "threadguard.h"
//
// typedef tg_status (*counter_new_fn)(int64_t start, tg_handle *out);
//
// /* Loads the library at path and creates a counter with it; -1 if it cannot be loaded. */
// static tg_status load_and_create(const char *path, tg_handle *out) {
//     void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
//     if (lib == NULL) return -1;
//     counter_new_fn counter_new = (counter_new_fn)dlsym(lib, "counter_new");
//     if (counter_new == NULL) return -1;
//     return counter_new(40, out);
// }
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"threadguard.dev/threadguard"
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "split:", err)
		os.Exit(1)
	}
}

func run(library string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// The wrapper's copy is in use before the library is loaded.
	if copies, err := threadguard.CopiesLoaded(); err != nil || copies != 1 {
		return fmt.Errorf("before loading: CopiesLoaded = %d, %v; want 1", copies, err)
	}
	path := C.CString(library)
	defer C.free(unsafe.Pointer(path))
	var h C.tg_handle
	if st := C.load_and_create(path, &h); st != C.TG_OK {
		return fmt.Errorf("loading %s and creating a counter: %d", library, st)
	}
	handle := threadguard.Handle{Owner: uint64(h.owner), Key: uint64(h.key)}
	err := handle.With(1, func(unsafe.Pointer) error { return nil })
	if !errors.Is(err, threadguard.ErrStale) || !strings.Contains(err.Error(), "2 copies of threadguard are loaded") {
		return fmt.Errorf("Handle.With on the library's counter: %v; want ErrStale naming two copies", err)
	}
	if copies, err := threadguard.CopiesLoaded(); err != nil || copies != 2 {
		return fmt.Errorf("after loading: CopiesLoaded = %d, %v; want 2", copies, err)
	}
	fmt.Printf("split: detected: %v\n", err)
	return nil
}
