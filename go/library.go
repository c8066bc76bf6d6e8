package threadguard

// #include "shim.h"
import "C"

// CurrentThreadID returns the library's ID for the calling OS thread
// (tg_current_thread_id). IDs are never reused within a process. For an
// unlocked goroutine the answer may be stale by the time it returns, since
// the goroutine may move; inside work on a Thread it is the Thread's ID.
func CurrentThreadID() uint64 { return uint64(C.tg_current_thread_id()) }

// RunPending destroys, on the calling OS thread, the objects whose
// destruction was requested from other threads (tg_run_pending). A goroutine
// holding objects from New may call it to have forgotten objects destroyed
// without waiting for its next call into the library.
func RunPending() error {
	return callLocked("tg_run_pending", func() C.tg_status { return C.tg_run_pending() })
}

// Version returns the library's version, such as "0.1.0".
func Version() string { return C.GoString(C.tg_version()) }

// ABIVersion returns the library's C ABI version.
func ABIVersion() uint32 { return uint32(C.tg_abi_version()) }

// headerABIVersion is the ABI version of the header this package was
// compiled against.
const headerABIVersion = C.TG_ABI_VERSION

// Policy says what the library does on a violation (misuse of a handle).
type Policy int32

// Violation policies.
const (
	PolicyReturn Policy = C.TG_POLICY_RETURN // return the error code (the default)
	PolicyLog    Policy = C.TG_POLICY_LOG    // also print each violation to stderr
	PolicyAbort  Policy = C.TG_POLICY_ABORT  // print, then abort the process (for debugging)
)

// SetViolationPolicy sets the process-wide violation policy. An unknown
// policy gets ErrInvalidArgument.
func SetViolationPolicy(p Policy) error {
	return callLocked("tg_set_violation_policy", func() C.tg_status {
		return C.tg_set_violation_policy(C.int32_t(p))
	})
}
