package threadguard

// #include "shim.h"
import "C"

// Stats are the library's process-wide counters (tg_get_stats). They are
// exact once the threads involved are quiescent.
type Stats struct {
	Live            uint64 // objects registered and not yet destroyed
	Created         uint64 // objects ever registered
	Destroyed       uint64 // destructor runs
	DeferredPending uint64 // destroy-later requests not yet run

	Violations                uint64 // sum of the per-kind counts below
	ViolationsNullHandle      uint64
	ViolationsWrongThread     uint64
	ViolationsOwnerExited     uint64
	ViolationsStale           uint64
	ViolationsWrongType       uint64
	ViolationsBusy            uint64
	ViolationsNullPointer     uint64
	ViolationsInvalidArgument uint64

	Panics         uint64 // panics caught in the library
	ThreadsLive    uint64 // threads known to the library and not exited
	ThreadsStarted uint64 // threads ever known to the library
	Detached       uint64 // objects detached and not yet adopted or destroyed
}

// ReadStats returns the library's counters.
func ReadStats() (Stats, error) {
	var s C.tg_stats
	if err := callLocked("tg_get_stats", func() C.tg_status { return C.tg_get_stats(&s) }); err != nil {
		return Stats{}, err
	}
	return Stats{
		Live:                      uint64(s.live),
		Created:                   uint64(s.created),
		Destroyed:                 uint64(s.destroyed),
		DeferredPending:           uint64(s.deferred_pending),
		Violations:                uint64(s.violations),
		ViolationsNullHandle:      uint64(s.violations_null_handle),
		ViolationsWrongThread:     uint64(s.violations_wrong_thread),
		ViolationsOwnerExited:     uint64(s.violations_owner_exited),
		ViolationsStale:           uint64(s.violations_stale),
		ViolationsWrongType:       uint64(s.violations_wrong_type),
		ViolationsBusy:            uint64(s.violations_busy),
		ViolationsNullPointer:     uint64(s.violations_null_pointer),
		ViolationsInvalidArgument: uint64(s.violations_invalid_argument),
		Panics:                    uint64(s.panics),
		ThreadsLive:               uint64(s.threads_live),
		ThreadsStarted:            uint64(s.threads_started),
		Detached:                  uint64(s.detached),
	}, nil
}
