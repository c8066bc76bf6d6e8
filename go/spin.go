package threadguard

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Hand-offs spin before they block.
//
// Waking a goroutine that sleeps on another OS thread costs tens of
// microseconds (the thread must be woken by the kernel); seeing a value that
// another thread stores costs well under one. So a goroutine about to wait
// for a Thread or a Runner first spins, looking for what it waits for, and
// blocks only if that takes longer than the spinner's limit. Three waits
// spin: a caller waiting for its result (Thread.Do, Runner.Call), and an
// idle Thread waiting for its next task.
//
// Policy: the limit adapts to what the waits turn out to take, as glibc's
// adaptive mutexes and crossbeam's Backoff do with their spin counts. It
// starts at spinMax. A wait that had to block but ended soon after
// (shortWait: spinMax plus a wake-up or so) sets it back to spinMax
// (spinning longer would likely have paid); a longer one halves it, down to spinMin, so waits that are always long (slow work,
// a Thread idle between rare tasks) cost next to nothing in spinning. A
// spinner never spins longer than spinMax, so an idle Thread is asleep at
// most spinMax after its last task: an idle Thread costs no CPU.
//
// Spinning occupies a P. Callers spin only while fewer than GOMAXPROCS-1 of
// them do, leaving a P for the work they wait for (a Thread's goroutine, or
// a runner's callback into Go, which needs a P to run), and nobody spins
// when GOMAXPROCS is 1, where the work could not run at all meanwhile.
type spinner struct {
	limit atomic.Int64 // nanoseconds to spin; 0 means spinMax
}

const (
	spinMax = 50 * time.Microsecond
	spinMin = time.Microsecond
	// shortWait is the longest wait that spinning spinMax would likely
	// have caught: spinMax plus the cost of the wake-up it took instead.
	shortWait = 4 * spinMax
)

var (
	// spinningCallers counts callers spinning now (see spinner).
	spinningCallers atomic.Int32
	// procs is GOMAXPROCS as last seen (it is read when a wait blocks, and
	// is costly to read on every wait).
	procs atomic.Int32
)

func init() { procs.Store(int32(runtime.GOMAXPROCS(0))) }

// spin calls ready until it reports true or the limit passes; it reports
// whether ready did, and when the wait began (to pass to blocked). A caller
// (caller true) spins only if a P remains for the work it waits for.
func (s *spinner) spin(caller bool, ready func() bool) (bool, time.Time) {
	return s.spinOn(procs.Load(), caller, ready)
}

// spinOn is spin with n Ps.
func (s *spinner) spinOn(n int32, caller bool, ready func() bool) (bool, time.Time) {
	start := time.Now()
	if ready() {
		return true, start
	}
	if n < 2 {
		return false, start
	}
	if caller {
		if spinningCallers.Add(1) > n-1 {
			spinningCallers.Add(-1)
			return false, start
		}
		defer spinningCallers.Add(-1)
	}
	limit := time.Duration(s.limit.Load())
	if limit == 0 {
		limit = spinMax
	}
	for i := 1; ; i++ {
		if ready() {
			return true, start
		}
		if i%16 == 0 && time.Since(start) > limit {
			return false, start
		}
	}
}

// poll is spin for a caller waiting for a value on ch: it returns the value
// with ok true, or ok false and when the wait began.
func (s *spinner) poll(ch chan error) (err error, ok bool, start time.Time) {
	ok, start = s.spin(true, func() bool {
		select {
		case err = <-ch:
			return true
		default:
			return false
		}
	})
	return err, ok, start
}

// blocked adapts the limit after a wait that spun in vain and then blocked
// until now; start is what spin returned.
func (s *spinner) blocked(start time.Time) {
	if time.Since(start) <= shortWait {
		s.limit.Store(int64(spinMax))
	} else if limit := time.Duration(s.limit.Load()); limit == 0 || limit > spinMin {
		if limit == 0 {
			limit = spinMax
		}
		s.limit.Store(int64(max(spinMin, limit/2)))
	}
	procs.Store(int32(runtime.GOMAXPROCS(0)))
}
