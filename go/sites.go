package threadguard

// #include "shim.h"
import "C"

import (
	"runtime"
	"strings"
	"unsafe"
)

// SetSites switches the library's sites debug mode on or off, process-wide
// (tg_set_sites; THREADGUARD_SITES=1 in the environment switches it on at
// start). In the mode, New, Thread.New and Runner.New record the file and
// line of their caller as the object's registration site, and Object.Close
// its destruction site; the library's refusals about a handle end with
// "; registered at main.go:42" and, once the object is destroyed, with
// where (or how) and on which thread, e.g. "; destroyed at main.go:77 on
// thread 3 ("loader")". Off, nothing is recorded, every record is
// forgotten, and New and Close do not walk the stack.
func SetSites(on bool) error {
	v := C.int32_t(0)
	if on {
		v = 1
	}
	return callLocked("tg_set_sites", func() C.tg_status { return C.tg_set_sites(v) })
}

// SitesEnabled reports whether the sites debug mode is on.
func SitesEnabled() bool { return C.tg_sites_enabled() == 1 }

// site is a registration site in the user's code.
type site struct {
	file string
	line int
}

// callerSite returns the innermost caller outside this package (its test
// files count as outside), or nil when the sites mode is off: only then is
// the stack walked.
func callerSite() *site {
	if !SitesEnabled() {
		return nil
	}
	var pcs [32]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs[:])])
	for {
		frame, more := frames.Next()
		inside := strings.HasPrefix(frame.Function, "threadguard.dev/threadguard.") &&
			!strings.HasSuffix(frame.File, "_test.go")
		if !inside && frame.File != "" {
			return &site{file: frame.File, line: frame.Line}
		}
		if !more {
			return nil
		}
	}
}

// destroyHandle is h.Destroy, or tg_destroy_at with s when there is a site.
func destroyHandle(h Handle, s *site) error {
	if s == nil {
		return h.Destroy()
	}
	file := C.CString(s.file)
	defer C.free(unsafe.Pointer(file))
	return callLocked("tg_destroy", func() C.tg_status { return C.tg_destroy_at(h.c(), file, C.uint32_t(s.line)) })
}

// register is tg_register, or tg_register_at with s when there is a site.
func register(tag Tag, obj, destroy unsafe.Pointer, out *C.tg_handle, s *site) C.tg_status {
	if s == nil {
		return C.tg_register(C.uint32_t(tag), obj, C.tg_destructor(destroy), out)
	}
	file := C.CString(s.file)
	defer C.free(unsafe.Pointer(file))
	return C.tg_register_at(C.uint32_t(tag), obj, C.tg_destructor(destroy), out, file, C.uint32_t(s.line))
}
