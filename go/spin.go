package threadguard

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Hand-offs spin before they block.
//
// Waking a goroutine that sleeps on another OS thread costs tens of
// microseconds (the kernel must wake the thread); seeing a value that
// another thread stores costs well under one. So a goroutine about to wait
// for a Thread or a Runner first spins, looking for what it waits for, and
// blocks only if that takes longer than its spinner's limit. Three waits
// spin: a caller waiting for its result (Thread.Do, Runner.Call), and an
// idle Thread waiting for its next task.
//
// Policy: the limit adapts to whether spinning pays, as glibc's adaptive
// mutexes and crossbeam's Backoff adapt their spinning. It starts at
// spinMax. A spin that sees what it waited for sets it back to spinMax; one
// that gives up halves it, down to spinMin, so waits that spinning does not
// catch (slow work, a Thread idle between rare tasks, CPUs too busy to run
// the other side meanwhile) soon cost next to nothing in spinning. While
// the limit is below spinMax, one wait in probeEvery spins for spinMax to
// find out whether spinning pays again.
//
// Spinning occupies a P, and a goroutine readied by the spinning goroutine
// waits on that P's run queue until the spin ends or another P steals it.
// So a Thread spins for its next task (with its adaptive limit) only if the
// caller of its last one was spinning for the result, not blocked (a caller
// blocked on the result channel is readied onto the Thread's P by the
// send). A caller that had to wake its Thread does not spin: the wake-up
// takes longer than a spin, and blocking hands its P straight to the
// Thread's thread; one that found its Thread spinning for work spins for
// spinMax, as the Thread takes the task at once. Callers spin only while
// fewer than GOMAXPROCS-1 of them do, leaving a P for the work they wait
// for (a Thread's goroutine, or a runner's callback into Go, which needs a
// P to run), and nobody spins when GOMAXPROCS is 1, where the work could
// not run at all meanwhile.
//
// Once a caller and its Thread have both fallen asleep, each hand-off wakes
// an OS thread (the Thread is locked to its own, so readying it means
// waking that thread), and neither side spins by the rules above. Getting
// back to spinning takes a spin long enough for the other CPU to wake up and
// run the blocked caller: spinMax is not (on a virtual machine, waking an
// idle CPU can take 100 µs). So a Thread re-engages (see rhythm): after a
// task whose caller was blocked, if that task came within backToBack of the
// Thread starting to wait for it (the caller calls back to back), the Thread
// spins for the next task. The blocked caller, readied onto the Thread's P,
// runs once the other P takes it, finds the Thread spinning, and spins for
// its result; from then on both sides spin. The Thread spins up to
// reengageMax (until the other P takes the caller, the spin keeps it
// waiting). A re-engagement pays if the task comes, and the next
// reengagePaid come from callers spinning for their results while the
// Thread spins for them. One in vain (the caller does not come back in
// time, or not soon enough after its next results to keep both sides
// spinning: it works between calls, or no CPU is free to run it) has the
// next chances to re-engage let pass, 1, 2, 4, ... up to reengageSkipMax
// of them, until one pays: so where re-engaging does not pay, it delays
// about one call in reengageSkipMax by up to reengageMax.
//
// No spin lasts longer than reengageMax, so an idle Thread is asleep at
// most reengageMax after its last task.
type spinner struct {
	limit atomic.Int64  // nanoseconds to spin; 0 means spinMax
	waits atomic.Uint32 // waits while the limit is below spinMax, for probing
}

const (
	spinMax    = 50 * time.Microsecond
	spinMin    = time.Microsecond
	probeEvery = 64

	reengageMax     = 250 * time.Microsecond
	backToBack      = 200 * time.Microsecond
	reengagePaid    = 16
	reengageSkipMax = 128
)

var (
	// spinningCallers counts callers spinning now (see spinner).
	spinningCallers atomic.Int32
	// procs is GOMAXPROCS as last seen: it is read again whenever a wait
	// does not end in a spin, as reading it takes a lock.
	procs atomic.Int32
)

func init() { procs.Store(int32(runtime.GOMAXPROCS(0))) }

// spin calls ready until it reports true or the limit passes, and reports
// whether ready did. A caller (caller true) spins only if a P remains for
// the work it waits for. If spinning is not nil, it is set while the spin
// goes on and stays set if the spin succeeds.
func (s *spinner) spin(caller bool, ready func() bool, spinning *atomic.Bool) bool {
	ok := s.spinOn(procs.Load(), caller, ready, spinning)
	if !ok {
		procs.Store(int32(runtime.GOMAXPROCS(0)))
	}
	return ok
}

// spinOn is spin with n Ps.
func (s *spinner) spinOn(n int32, caller bool, ready func() bool, spinning *atomic.Bool) (ok bool) {
	if spinning != nil {
		spinning.Store(true)
		defer func() {
			if !ok {
				spinning.Store(false)
			}
		}()
	}
	if ready() {
		return true
	}
	if n < 2 {
		return false
	}
	if caller {
		if spinningCallers.Add(1) > n-1 {
			spinningCallers.Add(-1)
			return false
		}
		defer spinningCallers.Add(-1)
	}
	set := time.Duration(s.limit.Load())
	if set == 0 {
		set = spinMax
	}
	limit := set
	if limit < spinMax && s.waits.Add(1)%probeEvery == 0 {
		limit = spinMax // a probe
	}
	if !spinFor(limit, ready) {
		s.limit.Store(int64(max(spinMin, set/2)))
		return false
	}
	if set != spinMax {
		// Only if it changed: the line is shared with the other side.
		s.limit.Store(int64(spinMax))
	}
	return true
}

// spinFor calls ready until it reports true or limit passes, and reports
// whether ready did.
func spinFor(limit time.Duration, ready func() bool) bool {
	start := time.Now()
	for i := 1; ; i++ {
		if ready() {
			return true
		}
		if i%16 == 0 && time.Since(start) > limit {
			return false
		}
	}
}

// rhythm is a Thread's record of how its tasks arrive, to decide whether
// to re-engage (see spinner): to spin for the next task although the last
// one's caller was blocked. Only the Thread's goroutine uses it.
type rhythm struct {
	backToBack bool   // the last task came within backToBack of the wait for it
	skip       uint32 // chances to re-engage still to let pass
	backoff    uint32 // skip after the next re-engagement in vain
	trial      bool   // a re-engagement saw the next task come; does it pay?
	streak     uint32 // tasks that came as the Thread spun, since then
}

// arrived records that a task came gap after the Thread started waiting for
// it (or stopped spinning for it).
func (r *rhythm) arrived(gap time.Duration) { r.backToBack = gap < backToBack }

// reengage reports whether to spin for the next task after one whose caller
// was blocked.
func (r *rhythm) reengage() bool {
	if r.trial { // a re-engagement, and a caller blocked since: in vain
		r.trial = false
		r.inVain()
	}
	if !r.backToBack {
		return false
	}
	if r.skip > 0 {
		r.skip--
		return false
	}
	return true
}

// reengaged records whether a re-engagement saw the next task come.
func (r *rhythm) reengaged(ok bool) {
	if !ok {
		r.inVain()
		return
	}
	r.trial, r.streak = true, 0
}

// spun records whether a spin for the next task after one whose caller
// spun for its result saw it come.
func (r *rhythm) spun(ok bool) {
	if !r.trial {
		return
	}
	if !ok {
		r.trial = false
		r.inVain()
		return
	}
	if r.streak++; r.streak == reengagePaid {
		r.trial, r.backoff = false, 0
	}
}

// inVain lets the next chances to re-engage pass, twice as many as last
// time, up to reengageSkipMax.
func (r *rhythm) inVain() {
	r.backoff = min(max(1, 2*r.backoff), reengageSkipMax)
	r.skip = r.backoff
}

// poll is spin for a caller waiting for a value on ch: it returns the value
// with ok true, or ok false if the caller should block for it.
func (s *spinner) poll(ch chan error, spinning *atomic.Bool) (err error, ok bool) {
	ok = s.spin(true, func() bool {
		select {
		case err = <-ch:
			return true
		default:
			return false
		}
	}, spinning)
	return err, ok
}
