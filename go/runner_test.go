package threadguard

import (
	"context"
	"errors"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// newRunner starts a Runner that the test stops at its end.
func newRunner(t testing.TB, name string, capacity int) *Runner {
	t.Helper()
	r, err := StartRunner(name, capacity)
	if err != nil {
		t.Fatalf("StartRunner(%q, %d): %v", name, capacity, err)
	}
	t.Cleanup(func() { r.Stop() })
	return r
}

// occupy keeps r's thread busy in one job until release is called (at the
// latest when the test ends, before the runner stops). When occupy
// returns, the job has left the queue: the queue is empty.
func occupy(t testing.TB, r *Runner) (release func()) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	for {
		err := r.Post(func() error {
			close(started)
			<-gate
			return nil
		}, nil)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("Post: %v", err)
		}
		runtime.Gosched()
	}
	receive(t, "the occupying job to start", started)
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release
}

// fill posts n jobs that do nothing, then checks that the queue is full.
func fill(t testing.TB, r *Runner, n int) {
	t.Helper()
	for i := range n {
		if err := r.Post(func() error { return nil }, nil); err != nil {
			t.Fatalf("Post %d of %d: %v", i+1, n, err)
		}
	}
	wantErr(t, "Post to a full queue", r.Post(func() error { return nil }, nil), ErrLimit)
}

// untilShutDown polls until r refuses posts with ErrShutDown: its Stop has
// closed the queue.
func untilShutDown(t testing.TB, r *Runner) {
	t.Helper()
	eventually(t, "the runner to refuse posts", func() bool {
		return errors.Is(r.Post(func() error { return nil }, nil), ErrShutDown)
	})
}

// noJobsLeft waits until every job's handle has been released.
func noJobsLeft(t testing.TB) {
	t.Helper()
	eventually(t, "every job handle to be released", func() bool { return liveJobs.Load() == 0 })
}

func TestRunnerCallRunsOnTheRunnerThread(t *testing.T) {
	r := newRunner(t, "model", 16)
	if r.ThreadID() == 0 || r.ThreadID() == CurrentThreadID() {
		t.Fatalf("runner thread ID %d (caller %d)", r.ThreadID(), CurrentThreadID())
	}
	if got, want := r.String(), `("model")`; !strings.HasSuffix(got, want) || r.Name() != "model" {
		t.Fatalf("String() = %q, Name() = %q", got, r.Name())
	}
	var on uint64
	if err := r.Call(context.Background(), func() error {
		on = CurrentThreadID()
		return nil
	}); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if on != r.ThreadID() {
		t.Fatalf("fn ran on thread %d, want the runner's %d", on, r.ThreadID())
	}
	mine := errors.New("mine")
	if err := r.Call(context.Background(), func() error { return mine }); err != mine {
		t.Fatalf("Call returned %v, want fn's own error unchanged", err)
	}
	noJobsLeft(t)
}

// 100,000 posts from 8 goroutines: every fn runs once and every done is
// called once, on the runner, with fn's result.
func TestRunnerPostDeliversEveryOutcomeExactlyOnce(t *testing.T) {
	const posters, tasks = 8, 100_000
	r := newRunner(t, "posts", 1024)
	odd := errors.New("odd")
	runs := make([]atomic.Int32, tasks)
	dones := make([]atomic.Int32, tasks)
	var delivered, offRunner, wrongResult, full atomic.Int64
	var wg sync.WaitGroup
	for p := range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < tasks; i += posters {
				fn := func() error {
					runs[i].Add(1)
					if i%7 == 0 {
						return odd
					}
					return nil
				}
				done := func(err error) {
					dones[i].Add(1)
					if i%1000 == 0 && CurrentThreadID() != r.ThreadID() {
						offRunner.Add(1)
					}
					if (i%7 == 0) != errors.Is(err, odd) || (i%7 != 0 && err != nil) {
						wrongResult.Add(1)
					}
					delivered.Add(1)
				}
				for {
					err := r.Post(fn, done)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrLimit) {
						t.Errorf("Post: %v", err)
						return
					}
					full.Add(1)
					runtime.Gosched()
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, "every done", func() bool { return delivered.Load() == tasks })
	for i := range tasks {
		if n, m := runs[i].Load(), dones[i].Load(); n != 1 || m != 1 {
			t.Fatalf("task %d: fn ran %d times, done called %d times", i, n, m)
		}
	}
	if offRunner.Load() != 0 || wrongResult.Load() != 0 {
		t.Fatalf("%d dones off the runner, %d with the wrong result", offRunner.Load(), wrongResult.Load())
	}
	noJobsLeft(t)
	t.Logf("%d posts refused with ErrLimit and retried", full.Load())
}

// postTracker posts jobs whose done calls it counts, one slot per job.
type postTracker struct {
	next     atomic.Int64
	accepted []atomic.Bool
	dones    []atomic.Int32
	shutdown atomic.Int64 // dones with ErrShutDown
	bad      atomic.Int64 // dones with anything but nil or ErrShutDown
}

func newPostTracker(n int) *postTracker {
	return &postTracker{accepted: make([]atomic.Bool, n), dones: make([]atomic.Int32, n)}
}

// post reserves a slot and posts until the runner accepts or refuses with
// something other than ErrLimit.
func (p *postTracker) post(r *Runner) error {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.dones)) {
		return errors.New("postTracker: out of slots")
	}
	for {
		err := r.Post(func() error { return nil }, func(err error) {
			p.dones[i].Add(1)
			switch {
			case errors.Is(err, ErrShutDown):
				p.shutdown.Add(1)
			case err != nil:
				p.bad.Add(1)
			}
		})
		if err == nil {
			p.accepted[i].Store(true)
		}
		if !errors.Is(err, ErrLimit) {
			return err
		}
		runtime.Gosched()
	}
}

// Stop while 8 goroutines post: every accepted post has its done called
// exactly once, with nil or ErrShutDown; refused posts never call it.
func TestRunnerStopWhilePostsAreInFlight(t *testing.T) {
	const posters = 8
	r := newRunner(t, "stopping", 256)
	p := newPostTracker(1 << 20)
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := p.post(r)
				if err != nil {
					if !errors.Is(err, ErrShutDown) {
						t.Errorf("Post: %v", err)
					}
					return
				}
				accepted.Add(1)
			}
		}()
	}
	for accepted.Load() < 5000 {
		time.Sleep(time.Millisecond)
	}
	// Hold the runner until the queue is full and closed, so that Stop has
	// queued work to fail.
	release := occupy(t, r)
	eventually(t, "the queue to fill", func() bool {
		return errors.Is(r.Post(func() error { return nil }, nil), ErrLimit)
	})
	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop() }()
	untilShutDown(t, r)
	release()
	if err := receive(t, "Stop", stopped); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wg.Wait()
	// Stop has returned: every outcome is in, none may come later.
	n := p.next.Load()
	for i := range n {
		want := int32(0)
		if p.accepted[i].Load() {
			want = 1
		}
		if got := p.dones[i].Load(); got != want {
			t.Fatalf("post %d (accepted %v): done called %d times", i, p.accepted[i].Load(), got)
		}
	}
	if p.bad.Load() != 0 || p.shutdown.Load() == 0 {
		t.Fatalf("%d dones with an unexpected error, %d with ErrShutDown (want some)", p.bad.Load(), p.shutdown.Load())
	}
	noJobsLeft(t)
	t.Logf("%d posts accepted, %d failed at Stop", accepted.Load(), p.shutdown.Load())
}

func TestRunnerCallWithACancelledContextDoesNotRun(t *testing.T) {
	r := newRunner(t, "cancelled", 16)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := r.Call(ctx, func() error { ran = true; return nil })
	wantErr(t, "Call", err, context.Canceled)
	if ran || liveJobs.Load() != 0 {
		t.Fatalf("fn ran: %v; %d job handles live", ran, liveJobs.Load())
	}
}

// A Call whose context expires while the queue stays full gets the
// context's error, and its fn never runs.
func TestRunnerCallContextExpiresWhileTheQueueIsFull(t *testing.T) {
	const capacity = 4
	r := newRunner(t, "full", capacity)
	release := occupy(t, r)
	fill(t, r, capacity)
	var ran atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.Call(ctx, func() error { ran.Store(true); return nil })
	wantErr(t, "Call", err, context.DeadlineExceeded)
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("Call returned after %v, before its deadline", waited)
	}
	release()
	if err := r.Call(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("Call after the queue drained: %v", err)
	}
	if ran.Load() {
		t.Fatal("the expired Call's fn ran")
	}
	noJobsLeft(t)
}

// Goroutines waiting for room in a full queue all get in as it drains.
func TestRunnerCallWaitsForRoomInAFullQueue(t *testing.T) {
	const capacity, callers = 2, 16
	r := newRunner(t, "room", capacity)
	release := occupy(t, r)
	fill(t, r, capacity)
	var ran atomic.Int64
	errs := make(chan error, callers)
	for range callers {
		go func() {
			errs <- r.Call(context.Background(), func() error {
				if CurrentThreadID() == r.ThreadID() {
					ran.Add(1)
				}
				return nil
			})
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them block
	if n := ran.Load(); n != 0 {
		t.Fatalf("%d calls ran while the queue was full", n)
	}
	release()
	for range callers {
		if err := receive(t, "a waiting Call", errs); err != nil {
			t.Fatalf("Call: %v", err)
		}
	}
	if ran.Load() != callers {
		t.Fatalf("%d of %d fns ran on the runner", ran.Load(), callers)
	}
	noJobsLeft(t)
}

// A Call cancelled while its fn waits in the queue returns at once; the
// runner skips the fn when its turn comes and releases its handle.
func TestRunnerCallCancelledWhileQueuedNeverRuns(t *testing.T) {
	r := newRunner(t, "queued", 16)
	release := occupy(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	res := make(chan error, 1)
	go func() { res <- r.Call(ctx, func() error { ran.Store(true); return nil }) }()
	eventually(t, "the Call to be queued", func() bool { return liveJobs.Load() == 2 })
	cancel()
	wantErr(t, "Call", receive(t, "the cancelled Call", res), context.Canceled)
	release()
	if err := r.Call(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if ran.Load() {
		t.Fatal("the cancelled Call's fn ran")
	}
	noJobsLeft(t)
}

// Once fn has started, Call returns its result even if ctx ends meanwhile.
func TestRunnerCallWaitsForStartedWork(t *testing.T) {
	r := newRunner(t, "started", 16)
	ctx, cancel := context.WithCancel(context.Background())
	started, gate := make(chan struct{}), make(chan struct{})
	mine := errors.New("finished")
	res := make(chan error, 1)
	go func() {
		res <- r.Call(ctx, func() error {
			close(started)
			<-gate
			return mine
		})
	}()
	receive(t, "fn to start", started)
	cancel()
	close(gate)
	if err := receive(t, "Call", res); err != mine {
		t.Fatalf("Call returned %v, want fn's result", err)
	}
	noJobsLeft(t)
}

// A Call whose deadline passes while its fn waits behind other work gets
// the context's error; the runner skips the fn when its turn comes and
// releases its handle.
func TestRunnerCallDeadlineWhileQueuedReleasesTheJob(t *testing.T) {
	r := newRunner(t, "late", 16)
	release := occupy(t, r)
	var ran atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := r.Call(ctx, func() error { ran.Store(true); return nil })
	wantErr(t, "Call", err, context.DeadlineExceeded)
	release()
	if err := r.Call(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if ran.Load() {
		t.Fatal("the expired Call's fn ran")
	}
	noJobsLeft(t)
}

// A deadline that passes while fn runs does not cut the Call short: fn's
// result is returned, and the job is released.
func TestRunnerCallDeadlineWhileRunningReturnsTheResult(t *testing.T) {
	r := newRunner(t, "slow", 16)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	mine := errors.New("finished late")
	err := r.Call(ctx, func() error {
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // well past the deadline
		return mine
	})
	if err != mine {
		t.Fatalf("Call returned %v, want fn's result", err)
	}
	noJobsLeft(t)
}

func TestRunnerPanicIsAnErrorAndTheRunnerGoesOn(t *testing.T) {
	r := newRunner(t, "panics", 16)
	ctx := context.Background()
	err := r.Call(ctx, func() error { panic("boom") })
	wantErr(t, "Call", err, ErrPanic)
	if !strings.Contains(err.Error(), "boom") {
		t.Fatalf("error %q does not carry the panic's value", err)
	}
	done := make(chan error, 1)
	if err := r.Post(func() error { panic("bang") }, func(err error) { done <- err }); err != nil {
		t.Fatalf("Post: %v", err)
	}
	wantErr(t, "Post's done", receive(t, "done", done), ErrPanic)
	q := newQueue(t, 4)
	if err := r.PostTo(q, 9, func() error { panic("pow") }); err != nil {
		t.Fatalf("PostTo: %v", err)
	}
	c, err := q.Wait(ctx)
	if err != nil || c.Tag != 9 {
		t.Fatalf("Wait: %+v, %v", c, err)
	}
	wantErr(t, "the completion", c.Err, ErrPanic)
	if err := r.Call(ctx, func() error { return nil }); err != nil {
		t.Fatalf("Call after the panics: %v", err)
	}
	noJobsLeft(t)
}

// Objects created on a runner, by New or by a C library registering its own,
// are owned by its thread: 32 goroutines use them through Call, always on
// that thread; direct use from elsewhere is refused; Stop destroys them
// once, on the runner.
func TestRunnerOwnsWhatItsWorkCreates(t *testing.T) {
	const goroutines, calls = 32, 200
	r := newRunner(t, "affine", 64)
	ctx := context.Background()
	before := affine.ReadStats()
	var serials []uint64
	o, err := r.New(ctx, affine.Tag, affine.Destructor(), createAffine(&serials))
	if err != nil {
		t.Fatalf("Runner.New: %v", err)
	}
	if o.Runner() != r || o.Thread() != nil || o.Handle().Owner != r.ThreadID() {
		t.Fatalf("object %v bound to runner %v, thread %v; runner thread %d", o.Handle(), o.Runner(), o.Thread(), r.ThreadID())
	}
	var h Handle // registered from C, on the runner
	err = r.Call(ctx, func() error {
		obj, owner, key, st := affine.RegisterHere()
		if st != 0 {
			return errors.New(statusName(st))
		}
		serials = append(serials, affine.Serial(obj))
		h = Handle{Owner: owner, Key: key}
		return nil
	})
	if err != nil || h.Owner != r.ThreadID() {
		t.Fatalf("registration from C on the runner: %v, handle %v", err, h)
	}

	var offRunner, failed atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				err := r.Call(ctx, func() error {
					if CurrentThreadID() != r.ThreadID() {
						offRunner.Add(1)
					}
					if i%2 == 0 {
						return o.With(ctx, add1) // inline: already on the runner
					}
					return h.With(affine.Tag, add1)
				})
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if offRunner.Load() != 0 || failed.Load() != 0 {
		t.Fatalf("%d calls off the runner, %d failed", offRunner.Load(), failed.Load())
	}
	var sum int64
	for _, x := range []Handle{o.Handle(), h} {
		if err := r.Call(ctx, func() error {
			return x.With(affine.Tag, func(p unsafe.Pointer) error { sum += affine.Value(p); return nil })
		}); err != nil {
			t.Fatalf("reading %v: %v", x, err)
		}
	}
	if sum != goroutines*calls {
		t.Fatalf("total %d, want %d", sum, goroutines*calls)
	}

	// From this goroutine's thread the handles name nothing it may touch.
	wantErr(t, "With from elsewhere", o.Handle().With(affine.Tag, add1), ErrWrongThread)
	wantErr(t, "With from elsewhere", h.With(affine.Tag, add1), ErrWrongThread)
	wantErr(t, "Destroy from elsewhere", h.Destroy(), ErrWrongThread)
	if s := affine.ReadStats(); s.Misuse != before.Misuse {
		t.Fatalf("affine misuse went from %d to %d", before.Misuse, s.Misuse)
	}

	if err := r.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !destroyedOnceOn(t, r.ThreadID(), serials) {
		t.Fatal("Stop returned with objects of the runner not destroyed")
	}
	if err := o.Close(); err != nil {
		t.Fatalf("Close after Stop: %v", err)
	}
	wantErr(t, "With after Stop", h.With(affine.Tag, add1), ErrOwnerExited)
	if s := affine.ReadStats(); s.DestroyedOffOwner != before.DestroyedOffOwner {
		t.Fatalf("objects destroyed off their owner: %d", s.DestroyedOffOwner-before.DestroyedOffOwner)
	}
	noJobsLeft(t)
}

func TestRunnerWorkMayCallTheRunnerAndItsObjects(t *testing.T) {
	r := newRunner(t, "nested", 16)
	ctx := context.Background()
	o, err := r.New(ctx, affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		t.Fatalf("Runner.New: %v", err)
	}
	posted := make(chan error, 1)
	err = r.Call(ctx, func() error {
		if err := r.Call(ctx, func() error { return o.With(ctx, add1) }); err != nil {
			return err
		}
		if err := r.Post(func() error { return o.With(ctx, add1) }, func(err error) { posted <- err }); err != nil {
			return err
		}
		if err := r.Stop(); !errors.Is(err, ErrBusy) {
			return errors.New("Stop on the runner: " + errString(err))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if err := receive(t, "the nested post", posted); err != nil {
		t.Fatalf("nested post: %v", err)
	}
	var v int64
	if err := o.With(ctx, func(p unsafe.Pointer) error { v = affine.Value(p); return nil }); err != nil || v != 2 {
		t.Fatalf("value %d, %v; want 2", v, err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestRunnerRefusesWorkAfterStop(t *testing.T) {
	r := newRunner(t, "stopped", 16)
	id := r.ThreadID()
	q := newQueue(t, 4)
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	ctx := context.Background()
	ran := false
	wantErr(t, "Call", r.Call(ctx, func() error { ran = true; return nil }), ErrShutDown)
	wantErr(t, "Post", r.Post(func() error { ran = true; return nil }, nil), ErrShutDown)
	wantErr(t, "PostTo", r.PostTo(q, 1, func() error { ran = true; return nil }), ErrShutDown)
	_, err := r.New(ctx, affine.Tag, affine.Destructor(), affine.New)
	wantErr(t, "New", err, ErrShutDown)
	if ran || r.ThreadID() != id {
		t.Fatalf("work ran after Stop: %v; thread ID %d, was %d", ran, r.ThreadID(), id)
	}
	noJobsLeft(t)
}

func TestStartRunnerRejectsBadArguments(t *testing.T) {
	for _, c := range []struct {
		name     string
		capacity int
	}{{"a\x00b", 1}, {"zero", 0}, {"negative", -1}, {"huge", MaxQueueCapacity + 1}, {"overflow", math.MaxInt}} {
		if r, err := StartRunner(c.name, c.capacity); !errors.Is(err, ErrInvalidArgument) {
			if r != nil {
				r.Stop()
			}
			t.Errorf("StartRunner(%q, %d): %v, want ErrInvalidArgument", c.name, c.capacity, err)
		}
	}
	for _, n := range []int{0, -1, MaxQueueCapacity + 1} {
		if q, err := NewCompletionQueue(n); !errors.Is(err, ErrInvalidArgument) {
			if q != nil {
				q.Close()
			}
			t.Errorf("NewCompletionQueue(%d): %v, want ErrInvalidArgument", n, err)
		}
	}
}

// Objects of a runner dropped without Close are destroyed on the runner.
func TestForgottenRunnerObjectsAreDestroyedOnTheRunner(t *testing.T) {
	const objects = 20
	r := newRunner(t, "forgetful", 16)
	var serials []uint64
	for range objects {
		if _, err := r.New(context.Background(), affine.Tag, affine.Destructor(), createAffine(&serials)); err != nil {
			t.Fatalf("Runner.New: %v", err)
		}
	}
	eventually(t, "every forgotten object to be destroyed", func() bool {
		return destroyedOnceOn(t, r.ThreadID(), serials)
	})
}

// newQueue creates a CompletionQueue that the test closes at its end.
func newQueue(t testing.TB, capacity int) *CompletionQueue {
	t.Helper()
	q, err := NewCompletionQueue(capacity)
	if err != nil {
		t.Fatalf("NewCompletionQueue(%d): %v", capacity, err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// Two runners post to one queue, four goroutines take from it: every
// outcome arrives once, with its tag and its fn's result.
func TestCompletionQueueDeliversEachOutcomeOnce(t *testing.T) {
	const perRunner, waiters = 500, 4
	r1, r2 := newRunner(t, "one", perRunner), newRunner(t, "two", perRunner)
	q := newQueue(t, 2*perRunner)
	odd := errors.New("odd")
	for i := range uint64(2 * perRunner) {
		r := r1
		if i%2 == 1 {
			r = r2
		}
		if err := r.PostTo(q, i, func() error {
			if CurrentThreadID() != r.ThreadID() {
				return errors.New("off the runner")
			}
			if i%3 == 0 {
				return odd
			}
			return nil
		}); err != nil {
			t.Fatalf("PostTo %d: %v", i, err)
		}
	}
	seen := make([]atomic.Int32, 2*perRunner)
	var bad atomic.Int64
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for taken.Add(1) <= 2*perRunner {
				c, err := q.Wait(context.Background())
				if err != nil {
					t.Errorf("Wait: %v", err)
					return
				}
				seen[c.Tag].Add(1)
				if (c.Tag%3 == 0) != errors.Is(c.Err, odd) || (c.Tag%3 != 0 && c.Err != nil) {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("tag %d delivered %d times", i, n)
		}
	}
	if bad.Load() != 0 {
		t.Fatalf("%d outcomes with the wrong result", bad.Load())
	}
	noJobsLeft(t)
}

func TestCompletionQueueWaitHonoursContext(t *testing.T) {
	q := newQueue(t, 4)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := q.Wait(cancelled)
	wantErr(t, "Wait with a cancelled context", err, context.Canceled)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = q.Wait(ctx)
	wantErr(t, "Wait until a deadline", err, context.DeadlineExceeded)
	if waited := time.Since(start); waited < 30*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its deadline", waited)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = q.Wait(ctx)
	wantErr(t, "Wait cancelled while waiting", err, context.Canceled)
}

// A full queue refuses posts; Close wakes its waiters and drops outcomes
// that come later, releasing their jobs.
func TestCompletionQueueFullAndClosed(t *testing.T) {
	r := newRunner(t, "producer", 16)
	q := newQueue(t, 2)
	release := occupy(t, r)
	for i := range uint64(2) {
		if err := r.PostTo(q, i, func() error { return nil }); err != nil {
			t.Fatalf("PostTo %d: %v", i, err)
		}
	}
	wantErr(t, "PostTo a full queue", r.PostTo(q, 2, func() error { return nil }), ErrLimit)

	waiting := make(chan error, 1)
	go func() {
		_, err := q.Wait(context.Background())
		waiting <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it block, if it is going to
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantErr(t, "Wait during Close", receive(t, "the waiter", waiting), ErrShutDown)
	_, err := q.Wait(context.Background())
	wantErr(t, "Wait after Close", err, ErrShutDown)
	wantErr(t, "PostTo after Close", r.PostTo(q, 3, func() error { return nil }), ErrShutDown)
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	release() // the two jobs run now; their outcomes are discarded
	noJobsLeft(t)
}

// Stop fails work posted to a queue that has not started: its outcome is
// ErrShutDown, delivered once.
func TestStopDeliversUnrunQueueWorkAsShutDown(t *testing.T) {
	const jobs = 3
	r := newRunner(t, "closing", 16)
	q := newQueue(t, jobs)
	release := occupy(t, r)
	var ran atomic.Bool
	for i := range uint64(jobs) {
		if err := r.PostTo(q, i, func() error { ran.Store(true); return nil }); err != nil {
			t.Fatalf("PostTo: %v", err)
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop() }()
	untilShutDown(t, r)
	release()
	if err := receive(t, "Stop", stopped); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for range jobs {
		c, err := q.Wait(context.Background())
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		wantErr(t, "the unrun job's outcome", c.Err, ErrShutDown)
	}
	if ran.Load() {
		t.Fatal("queued work ran after Stop")
	}
	noJobsLeft(t)
}
