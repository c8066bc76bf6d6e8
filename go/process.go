package threadguard

// #include "shim.h"
import "C"

// CopiesLoaded reports how many copies of the threadguard library the one
// this package calls can see loaded in the process, itself included
// (tg_copies_loaded). More than 1 means the process is split: a handle
// registered through one copy is ErrStale to another, and their last errors
// and Stats are separate. The library also says so once on standard error.
// The count is a lower bound: a copy in a library loaded with RTLD_LOCAL, or
// linked statically into an executable that does not export its symbols,
// is seen only by copies it can see itself. See "One threadguard per
// process" in the package doc for how to link a single copy.
func CopiesLoaded() (int, error) {
	var n C.uint32_t
	if err := callLocked("tg_copies_loaded", func() C.tg_status { return C.tg_copies_loaded(&n) }); err != nil {
		return 0, err
	}
	return int(n), nil
}
