package docstore

// #include "shim.h"
import "C"

import "sync"

// Counters are docstore's own process-wide counts.
type Counters struct {
	Created   uint64 // stores registered
	Destroyed uint64 // store destructors run
	Misplaced uint64 // destructors that ran anywhere but on their owner (0 unless broken)
}

// ReadCounters returns docstore's counters.
func ReadCounters() Counters {
	return Counters{
		Created:   uint64(C.docstore_created_count()),
		Destroyed: uint64(C.docstore_destroyed_count()),
		Misplaced: uint64(C.docstore_misplaced_count()),
	}
}

// DestroyRecord is what the destroy log saw of one store.
type DestroyRecord struct {
	Runs  int    // destructor runs (1 once destroyed; more would be a bug)
	Owner uint64 // the owner's thread ID, as the store recorded it
	RanOn uint64 // the thread ID the (last) destructor ran on
}

// OnOwner reports whether the store was destroyed exactly once, on its
// owner.
func (r DestroyRecord) OnOwner() bool { return r.Runs == 1 && r.RanOn == r.Owner && r.Owner != 0 }

var logOnce sync.Once

// StartDestroyLog installs a destroy observer (docstore_set_destroy_observer)
// that records, for stores with a serial below 16384, every destructor run
// and the thread it ran on. Call it before any store can be destroyed; later
// calls do nothing.
func StartDestroyLog() { logOnce.Do(func() { C.nds_log_start() }) }

// Destroyed returns the destroy log's record of the store with this serial.
func Destroyed(serial uint64) DestroyRecord {
	var (
		n            C.uint32_t
		owner, ranOn C.uint64_t
	)
	C.nds_log_read(C.uint64_t(serial), &n, &owner, &ranOn)
	return DestroyRecord{Runs: int(n), Owner: uint64(owner), RanOn: uint64(ranOn)}
}

// DestroyLogTotal returns the destructor runs the log has seen, and how many
// of them were of serials beyond its range.
func DestroyLogTotal() (runs, unrecorded uint64) {
	return uint64(C.nds_log_total()), uint64(C.nds_log_overflow())
}

// currentThreadName returns the calling OS thread's name as the system
// knows it (Linux), for tests.
func currentThreadName() string {
	var buf [32]C.char
	C.nds_thread_name(&buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}

// LinkedMemoryManager returns the memory manager the linked library reports
// (docstore_memory_manager); it equals MemoryManager.
func LinkedMemoryManager() string { return C.GoString(C.docstore_memory_manager()) }
