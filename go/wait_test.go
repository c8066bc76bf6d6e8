package threadguard

import (
	"context"
	"errors"
	"runtime/pprof"
	"sync/atomic"
	"testing"
	"time"
)

// manyWaiters is how many goroutines the tests below keep waiting at once:
// 10,000, or fewer under the race detector, which allows 8128.
func manyWaiters() int {
	if raceEnabled {
		return 6_000
	}
	return 10_000
}

// threadsCreated counts the OS threads that Go has created so far.
func threadsCreated() int { return pprof.Lookup("threadcreate").Count() }

// spareThreads bounds the OS threads that a crowd of waiting goroutines may
// add: the scheduler's own, and cgo calls in flight. A thread per waiter
// would be thousands.
const spareThreads = 64

// Callers waiting on a busy runner wait as goroutines: 10,000 of them, most
// waiting for room in its queue, add a handful of OS threads, not one each.
// When the runner is free again, every fn runs exactly once and every Call
// returns its result.
func TestRunnerCallersWaitAsGoroutinesNotThreads(t *testing.T) {
	const capacity = 16
	callers := manyWaiters()
	r := newRunner(t, "crowded", capacity)
	release := occupy(t, r)
	before := threadsCreated()
	var ran atomic.Int64
	errs := make(chan error, callers)
	for range callers {
		go func() {
			errs <- r.Call(context.Background(), func() error { ran.Add(1); return nil })
		}()
	}
	eventually(t, "every caller to wait", func() bool {
		return liveJobs.Load() == int64(callers)+1 && r.room.n.Load() == int32(callers-capacity)
	})
	grown := threadsCreated() - before
	if grown > spareThreads {
		t.Fatalf("%d goroutines waiting on a runner made Go create %d OS threads", callers, grown)
	}
	t.Logf("%d goroutines waiting on a runner: %d OS threads created", callers, grown)
	release()
	for range callers {
		if err := receive(t, "a waiting Call", errs); err != nil {
			t.Fatalf("Call: %v", err)
		}
	}
	if ran.Load() != int64(callers) {
		t.Fatalf("%d fns ran for %d Calls", ran.Load(), callers)
	}
	noJobsLeft(t)
}

// A Call waiting for room returns as soon as its context is cancelled,
// while the runner is still busy, and its fn never runs.
func TestRunnerCallCancelledWhileWaitingForRoomReturnsAtOnce(t *testing.T) {
	const capacity = 2
	r := newRunner(t, "full", capacity)
	release := occupy(t, r)
	fill(t, r, capacity)
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	res := make(chan error, 1)
	go func() { res <- r.Call(ctx, func() error { ran.Store(true); return nil }) }()
	eventually(t, "the Call to wait for room", func() bool { return r.room.n.Load() == 1 })
	cancel()
	wantErr(t, "Call cancelled while waiting for room", receive(t, "the cancelled Call", res), context.Canceled)
	if r.room.n.Load() != 0 {
		t.Fatal("the cancelled Call still waits for room")
	}
	release() // only now does the runner move
	if err := r.Call(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if ran.Load() {
		t.Fatal("the cancelled Call's fn ran")
	}
	noJobsLeft(t)
}

// Goroutines waiting on a completion queue wait as goroutines too. Each
// outcome goes to exactly one of them; the rest return when their context
// is cancelled.
func TestCompletionQueueWaitersAreGoroutinesNotThreads(t *testing.T) {
	waiters := manyWaiters()
	outcomes := waiters / 2
	r := newRunner(t, "producer", outcomes)
	q := newQueue(t, outcomes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := threadsCreated()
	type got struct {
		c   Completion
		err error
	}
	results := make(chan got, waiters)
	for range waiters {
		go func() {
			c, err := q.Wait(ctx)
			results <- got{c, err}
		}()
	}
	eventually(t, "every Wait to block", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.waiters) == waiters
	})
	grown := threadsCreated() - before
	if grown > spareThreads {
		t.Fatalf("%d goroutines waiting on a completion queue made Go create %d OS threads", waiters, grown)
	}
	t.Logf("%d goroutines waiting on a completion queue: %d OS threads created", waiters, grown)
	for i := range uint64(outcomes) {
		if err := r.PostTo(q, i, func() error { return nil }); err != nil {
			t.Fatalf("PostTo %d: %v", i, err)
		}
	}
	seen := make([]int, outcomes)
	for range outcomes {
		g := receive(t, "an outcome", results)
		if g.err != nil || g.c.Err != nil {
			t.Fatalf("Wait: %v, outcome %v", g.err, g.c.Err)
		}
		seen[g.c.Tag]++
	}
	cancel()
	for range waiters - outcomes {
		wantErr(t, "a Wait cancelled", receive(t, "a cancelled Wait", results).err, context.Canceled)
	}
	for tag, n := range seen {
		if n != 1 {
			t.Fatalf("outcome %d delivered %d times", tag, n)
		}
	}
	noJobsLeft(t)
}

// An outcome handed to a Wait whose context ends at that moment goes back
// to the front of the queue, for the next Wait: none is lost.
func TestCompletionQueueCancelledWaitPutsItsOutcomeBack(t *testing.T) {
	q := newQueue(t, 4)
	if err := q.reserve(); err != nil {
		t.Fatal(err)
	}
	if err := q.reserve(); err != nil {
		t.Fatal(err)
	}
	q.deliver(Completion{Tag: 2})
	w := make(chan waitOutcome, 1)
	q.mu.Lock()
	q.waiters = append(q.waiters, w) // a Wait blocked when tag 1 arrives
	q.mu.Unlock()
	q.deliver(Completion{Tag: 1})
	if q.leave(w) { // its context ends: it was handed tag 1 already
		t.Fatal("the waiter was not handed the outcome")
	}
	q.requeue((<-w).c)
	for _, want := range []uint64{1, 2} {
		c, err := q.Wait(context.Background())
		if err != nil || c.Tag != want {
			t.Fatalf("Wait: tag %d, %v; want tag %d", c.Tag, err, want)
		}
	}
	if q.reserved != 0 {
		t.Fatalf("%d outcomes still reserved", q.reserved)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an empty queue with a cancelled context: %v", err)
	}
}

// A Thread with nothing to do goes to sleep (it spins only briefly after
// its last task), and wakes for the next.
func TestAnIdleThreadSleepsAndWakesForWork(t *testing.T) {
	th := newThread(t, "idle")
	for range 3 {
		if err := th.Do(context.Background(), func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the idle Thread to sleep", th.sleeping.Load)
	}
}

// The spin limit adapts: a spin that gives up halves it, down to spinMin;
// one that sees what it waited for restores spinMax.
func TestSpinLimitAdaptsToWhetherSpinningPays(t *testing.T) {
	var s spinner
	never := func() bool { return false }
	if s.spinOn(2, false, never, nil) {
		t.Fatal("a spin on something that never comes succeeded")
	}
	if got := time.Duration(s.limit.Load()); got != spinMax/2 {
		t.Fatalf("after a spin in vain: limit %v, want %v", got, spinMax/2)
	}
	for range 20 {
		s.spinOn(2, false, never, nil)
	}
	if got := time.Duration(s.limit.Load()); got != spinMin {
		t.Fatalf("after many spins in vain: limit %v, want %v", got, spinMin)
	}
	looks := 0
	if !s.spinOn(2, false, func() bool { looks++; return looks == 3 }, nil) {
		t.Fatal("the spin gave up before its third look")
	}
	if got := time.Duration(s.limit.Load()); got != spinMax {
		t.Fatalf("after a spin that paid: limit %v, want %v", got, spinMax)
	}
	var flag atomic.Bool
	if s.spinOn(1, true, never, &flag) || flag.Load() {
		t.Fatalf("a caller that did not get its value is still marked spinning")
	}
}

// A Thread re-engages (spins although the last caller was blocked) only
// after a task that came back to back, and lets 1, 2, 4, ... up to
// reengageSkipMax chances pass after re-engagements in vain, until one
// pays: the next task came as it spun, and reengagePaid more came from
// callers spinning for their results while it spun.
func TestThreadReengagesBackToBackCallersAndBacksOff(t *testing.T) {
	var r rhythm
	if r.reengage() {
		t.Fatal("re-engages before any task came")
	}
	r.arrived(backToBack)
	if r.reengage() {
		t.Fatalf("re-engages after a task that came %v after the wait began", backToBack)
	}
	r.arrived(backToBack - 1)
	if !r.reengage() {
		t.Fatal("does not re-engage after a task that came back to back")
	}
	// passed counts the chances let pass before the next re-engagement.
	passed := func() int {
		n := 0
		for !r.reengage() {
			n++
			if n > 10*reengageSkipMax {
				t.Fatalf("no re-engagement in %d chances", n)
			}
		}
		return n
	}
	want := 1
	for range 10 {
		r.reengaged(false)
		if got := passed(); got != want {
			t.Fatalf("after a re-engagement in vain: %d chances passed, want %d", got, want)
		}
		want = min(2*want, reengageSkipMax)
	}
	if want != reengageSkipMax {
		t.Fatalf("backoff did not reach %d", reengageSkipMax)
	}
	// The next task comes, but the pair does not stay spinning.
	r.reengaged(true)
	for range reengagePaid - 1 {
		r.spun(true)
	}
	r.spun(false)
	if got := passed(); got != reengageSkipMax {
		t.Fatalf("after a re-engagement that did not last: %d chances passed, want %d", got, reengageSkipMax)
	}
	r.reengaged(true)
	for range reengagePaid {
		r.spun(true)
	}
	r.spun(false) // the pair falls out again, long after
	if got := passed(); got != 0 {
		t.Fatalf("after a re-engagement that paid: %d chances passed, want 0", got)
	}
	r.reengaged(false)
	if got := passed(); got != 1 {
		t.Fatalf("after one that paid, then one in vain: %d chances passed, want 1", got)
	}
	// The next task comes, but its caller blocks for the result.
	r.reengaged(true)
	if got := passed(); got != 2 {
		t.Fatalf("after a re-engagement whose caller blocked: %d chances passed, want 2", got)
	}
	r.arrived(time.Second)
	if r.reengage() {
		t.Fatal("re-engages after a task that came a second after the wait began")
	}
}

// Nobody spins with one P (the work waited for could not run meanwhile),
// and callers spin only while a P is left over for that work.
func TestSpinningLeavesAPForTheWork(t *testing.T) {
	calls := 0
	ready := func() bool { calls++; return calls == 3 }
	if ok := new(spinner).spinOn(1, true, ready, nil); ok || calls != 1 {
		t.Fatalf("with one P: %d looks, ok %v; want a single look", calls, ok)
	}
	calls = 0
	if ok := new(spinner).spinOn(1, false, ready, nil); ok || calls != 1 {
		t.Fatalf("a Thread's idle spin with one P: %d looks, ok %v; want a single look", calls, ok)
	}
	others := spinningCallers.Load() // callers spinning elsewhere (normally none)
	calls = 0
	if ok := new(spinner).spinOn(others+2, true, ready, nil); !ok || calls != 3 {
		t.Fatalf("with a P to spare: %d looks, ok %v; want to spin until ready", calls, ok)
	}
	calls = 0
	if ok := new(spinner).spinOn(others+1, true, ready, nil); ok || calls != 1 {
		t.Fatalf("with no P to spare: %d looks, ok %v; want a single look", calls, ok)
	}
	calls = 0
	if ok := new(spinner).spinOn(2, false, ready, nil); !ok || calls != 3 { // not a caller: always
		t.Fatalf("a Thread's idle spin with two Ps: %d looks, ok %v; want to spin until ready", calls, ok)
	}
}
