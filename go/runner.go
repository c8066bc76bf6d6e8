package threadguard

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"math"
	"runtime/cgo"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// MaxQueueCapacity is the largest queue capacity that StartRunner and
// NewCompletionQueue accept (TG_MAX_QUEUE_CAPACITY): a bound, not a
// preallocation.
const MaxQueueCapacity = C.TG_MAX_QUEUE_CAPACITY

// Runner is an owner thread that the library starts and runs
// (tg_runner_start): a thread Go did not create, which runs Go functions
// sent from any goroutine, one at a time, in submission order. Objects
// created by work running on it (New, Runner.New, or a C library
// registering its own objects there) are owned by its thread, and their
// methods route calls there.
//
// A Thread does the same with a goroutine locked to an OS thread and an
// unbounded queue. A Runner's queue is bounded: Post answers ErrLimit when
// it is full, and Call waits for room. Every piece of work it accepts has
// its outcome delivered exactly once, also when the Runner stops, and the
// outcome may go to a CompletionQueue instead of a callback.
//
// Work reaches the runner's thread as a callback from C, through a
// runtime/cgo.Handle: C holds no Go pointer. A panic in the work is
// recovered before it can reach the C frames and is reported as ErrPanic.
// The work must not call runtime.Goexit (nor, in a test, t.FailNow or
// t.Fatal): it cannot return through the C frames that called the work,
// and Go cannot stop it, so the program ends with a message saying so.
//
// Stop the Runner before the program exits.
type Runner struct {
	h    Handle // the runner's tg_handle (owner TG_RUNNER_OWNER)
	name string
	id   uint64 // the runner thread's ID

	stopping atomic.Bool   // Stop has begun
	stopOnce sync.Once     // runs Stop's work once
	stopped  chan struct{} // closed once Stop has finished
	stopErr  error         // tg_runner_stop's result, read after stopped
	room     waitList      // Calls waiting for room in the full queue
	spin     spinner       // how long a Call spins for its result
}

// StartRunner starts a Runner: a new thread named name (the library uses
// the name in its messages) with room for capacity jobs waiting in its
// queue, 1 to MaxQueueCapacity. It returns once the thread runs.
//
// It returns an error wrapping ErrInvalidArgument for a name with a NUL
// byte or a capacity out of range, and ErrLimit if the thread cannot be
// created.
func StartRunner(name string, capacity int) (*Runner, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return nil, newError("StartRunner", ErrInvalidArgument, "name contains a NUL byte")
	}
	if capacity < 0 || uint64(capacity) > math.MaxUint32 {
		return nil, newError("StartRunner", ErrInvalidArgument,
			"queue capacity "+strconv.Itoa(capacity)+" is out of range (1 to "+strconv.Itoa(MaxQueueCapacity)+")")
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var h C.tg_handle
	if err := callLocked("tg_runner_start", func() C.tg_status {
		return C.tg_runner_start(cname, C.uint32_t(capacity), &h)
	}); err != nil {
		return nil, err
	}
	var id C.uint64_t
	if err := callLocked("tg_runner_thread_id", func() C.tg_status {
		return C.tg_runner_thread_id(h, &id)
	}); err != nil {
		C.tg_runner_stop(h)
		return nil, err
	}
	r := &Runner{h: Handle{Owner: uint64(h.owner), Key: uint64(h.key)}, name: name, id: uint64(id), stopped: make(chan struct{})}
	owners.Store(r.id, Owner(r))
	return r, nil
}

// ID returns the library's ID of the runner's thread: the owner ID in the
// handles of objects it owns. It stays valid after Close.
func (r *Runner) ID() uint64 { return r.id }

// ThreadID is ID, under the Runner's original name.
func (r *Runner) ThreadID() uint64 { return r.id }

// Name returns the name the Runner was started with.
func (r *Runner) Name() string { return r.name }

// String returns the thread ID and name, as in `7 ("model")`.
func (r *Runner) String() string { return threadLabel(r.id, r.name) }

// Do runs fn on the runner's thread and returns its error; see Call, which
// it is.
func (r *Runner) Do(ctx context.Context, fn func() error) error { return r.Call(ctx, fn) }

// Go queues fn to run on the runner and returns at once, as Thread.Go
// does, without waiting for room. The channel receives fn's error (nil on
// success, ErrPanic if it panicked, ErrShutDown if the runner stopped
// before fn's turn) exactly once, and is never closed. If the runner's
// queue is full, fn is not queued and the channel receives an error
// wrapping ErrLimit at once: the bounded queue is the Runner's real
// difference from a Thread. Call (or Do) waits for room instead.
func (r *Runner) Go(fn func() error) <-chan error {
	j := &job{r: r, kind: callJob, fn: fn, res: make(chan error, 1)}
	if err := r.post(j); err != nil {
		j.res <- err
	}
	return j.res
}

// Call runs fn on the runner's thread and returns its error (Do is the
// same method under the name every Owner has).
//
// It waits in Go, as a goroutine blocked on a channel, not in C: waiting
// callers cost goroutines, not OS threads. While the runner's queue is
// full, Call waits for room; then for fn's result. ctx applies as in
// Thread.Do: if ctx is done before fn starts (while Call waits for room or
// fn waits in the queue), Call returns ctx.Err() at once and fn never runs
// (a fn still queued is skipped when its turn comes). Once fn has started,
// Call waits for it and returns its result even if ctx is done meanwhile:
// the runner's thread cannot be interrupted, and returning early would
// leave the caller not knowing whether fn's effects happened. fn may watch
// ctx itself, and a context made by WithInterrupt asks it to stop.
//
// A caller that sends calls back to back gets the result without sleeping:
// Call spins for the result before it blocks (at most 50 µs, less while
// spinning keeps failing).
//
// A panic in fn is returned as an error wrapping ErrPanic; the runner goes
// on. Once the runner is stopping, or if it stops before fn's turn, Call
// returns an error wrapping ErrShutDown. Called from work running on the
// runner, Call runs fn at once, inline, instead of waiting behind itself.
func (r *Runner) Call(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.onRunner() {
		if r.stopping.Load() {
			return r.shutDownError("Runner.Call")
		}
		return guard("Runner.Call", fn)
	}
	j := &job{r: r, kind: callJob, fn: fn, res: make(chan error, 1)}
	if err := r.postWaiting(ctx, j); err != nil {
		return err
	}
	return j.wait(ctx)
}

// postWaiting posts j, waiting in Go while the queue is full: it joins the
// runner's room waiters and tries again when the runner takes a job out of
// its queue. It returns ctx.Err() if ctx is done first. If it returns an
// error, j is not queued and its handle is released.
func (r *Runner) postWaiting(ctx context.Context, j *job) error {
	h := newJobHandle(j)
	err := r.postHandle(h)
	for errors.Is(err, ErrLimit) {
		// Join before trying again: a slot that frees after this try wakes
		// this waiter (or one before it), so no wake-up is lost.
		w := r.room.join()
		if err = r.postHandle(h); !errors.Is(err, ErrLimit) {
			r.room.leave(w)
			break
		}
		select {
		case <-w:
			if r.stopping.Load() {
				err = r.shutDownError("Runner.Call")
			}
		case <-ctx.Done():
			r.room.leave(w)
			err = ctx.Err()
		}
	}
	if err != nil {
		releaseJob(h)
	}
	return err
}

// wait waits for the outcome of a Call job that the runner accepted.
func (j *job) wait(ctx context.Context) error {
	if err, ok := j.r.spin.poll(j.res, nil); ok {
		return err
	}
	select {
	case err := <-j.res:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(queued, dropped) {
			return ctx.Err() // the runner skips fn and releases the job
		}
		interrupted(ctx) // fn has started: ask it to stop (WithInterrupt)
		return <-j.res   // and wait for it
	}
}

// Post queues fn to run on the runner and returns at once, without
// waiting for room.
//
// If Post returns nil, done (unless nil) runs exactly once, on the runner's
// thread, right after fn: with fn's error (an error wrapping ErrPanic if fn
// panicked), or with an error wrapping ErrShutDown if the runner stopped
// before fn's turn, in which case fn never runs. If Post returns an error,
// neither function runs: ErrLimit when the queue is full (try again
// later), ErrShutDown once the runner is stopping or stopped.
//
// done runs on the runner, so it may use the objects the runner owns. It
// should be quick, since the runner runs nothing else meanwhile, and it
// must not panic: there is no caller to return the panic to, so it ends
// the program, as an unrecovered panic in a goroutine does.
func (r *Runner) Post(fn func() error, done func(error)) error {
	return r.post(&job{r: r, kind: postJob, fn: fn, done: done})
}

// New creates an object on the runner and registers it there: it runs
// New(tag, destroy, create) on the runner's thread, so the object is owned
// by the runner and its methods route calls there from any goroutine. ctx
// applies as in Call.
func (r *Runner) New(ctx context.Context, tag Tag, destroy unsafe.Pointer, create func() (unsafe.Pointer, error)) (*Object, error) {
	var o *Object
	at := callerSite()
	err := r.Call(ctx, func() (err error) {
		o, err = newAt(at, tag, destroy, create)
		return err
	})
	return o, err
}

// Close is Stop, under the name every Owner has.
func (r *Runner) Close() error { return r.Stop() }

// Stop stops the runner and waits for its thread to end. In order: Post
// and Call start answering ErrShutDown, and calls waiting for room get it
// too; the work running now finishes; every job still queued is failed
// with ErrShutDown, exactly once, on the runner (its done runs, its Call
// returns, its completion-queue entry is delivered); everything the runner
// owns is destroyed on its thread; the thread exits.
//
// Stop returns the library's result (tg_runner_stop); later calls return
// the same. Called from work running on the runner, where it would wait
// for itself, Stop returns an error wrapping ErrBusy and does nothing:
// stop a runner from another goroutine.
func (r *Runner) Stop() error {
	stop := func() error {
		return callLocked("tg_runner_stop", func() C.tg_status { return C.tg_runner_stop(r.h.c()) })
	}
	if r.onRunner() {
		return stop() // refused by the library (ErrBusy), with its message
	}
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		r.room.wakeAll() // Calls waiting for room return ErrShutDown
		r.stopErr = stop()
		owners.Delete(r.id)
		r.room.wakeAll()
		close(r.stopped)
	})
	return r.stopErr
}

// post queues j (tg_runner_post) without waiting. If the library refuses,
// j's handle is released and the error returned.
func (r *Runner) post(j *job) error {
	h := newJobHandle(j)
	err := r.postHandle(h)
	if err != nil {
		releaseJob(h)
	}
	return err
}

// postHandle queues the job with handle h (tg_runner_post). Once queued, the
// job is run (tgoRunnerWork) or failed (tgoRunnerFail) exactly once, on the
// runner, and that releases h.
func (r *Runner) postHandle(h cgo.Handle) error {
	return callLocked("tg_runner_post", func() C.tg_status {
		return C.tgo_runner_post(r.h.c(), C.uintptr_t(h))
	})
}

// onRunner reports whether the caller runs on the runner's thread: only
// work, done functions and destructors run there, each locked to it for
// its duration, so comparing thread IDs is exact even for an unlocked
// caller.
func (r *Runner) onRunner() bool {
	return uint64(C.tg_current_thread_id()) == r.id
}

func (r *Runner) shutDownError(op string) error {
	return newError(op, ErrShutDown, "runner "+r.String()+" is stopping or stopped")
}

func (r *Runner) onOwner() bool { return r.onRunner() }

func (r *Runner) finished() (<-chan struct{}, *error) { return r.stopped, &r.stopErr }

// forgotten does nothing: a Runner runs destroy requests unasked.
func (r *Runner) forgotten() {}

// job is one Go function sent to a runner (tg_runner_post). C holds only
// its cgo.Handle. The runner runs the job (tgoRunnerWork), or fails it if
// it stops before the job's turn (tgoRunnerFail), exactly once; that
// releases the handle and delivers the outcome as the job's kind says.
type job struct {
	r     *Runner
	kind  jobKind
	fn    func() error
	state atomic.Int32     // queued → running, or queued → dropped (see Call)
	done  func(error)      // postJob: called on the runner with the outcome
	res   chan error       // callJob: capacity 1, receives the outcome
	q     *CompletionQueue // entryJob: receives the outcome as a Completion
	tag   uint64           // entryJob: the caller's tag
}

// jobKind says where a job's outcome goes.
type jobKind uint8

const (
	postJob  jobKind = iota // Post: done gets the outcome, on the runner
	callJob                 // Call: the outcome goes to res
	entryJob                // PostTo: the outcome goes to q
)

// op names the method that posted a job, in errors.
func (k jobKind) op() string {
	return [...]string{postJob: "Runner.Post", callJob: "Runner.Call", entryJob: "Runner.PostTo"}[k]
}

// liveJobs counts jobs whose handle is not yet released, for tests.
var liveJobs atomic.Int64

func newJobHandle(j *job) cgo.Handle {
	liveJobs.Add(1)
	return cgo.NewHandle(j)
}

func releaseJob(h cgo.Handle) {
	h.Delete()
	liveJobs.Add(-1)
}

// run is the job's turn on the runner.
func (j *job) run(h cgo.Handle) {
	j.r.room.wakeOne() // the runner has taken j out of its queue
	if !j.state.CompareAndSwap(queued, running) {
		releaseJob(h) // its Call gave up waiting: fn never runs
		return
	}
	err := guard(j.kind.op(), j.fn)
	releaseJob(h)
	j.deliver(err)
}

// fail reports a job that the runner never ran, with status (it stopped
// before the job's turn).
func (j *job) fail(h cgo.Handle, status C.tg_status) {
	j.r.room.wakeOne()
	releaseJob(h)
	j.deliver(j.failure(status))
}

func (j *job) failure(status C.tg_status) error {
	return newError(j.kind.op(), StatusError(int32(status)),
		"runner "+j.r.String()+" stopped before the work's turn; it did not run")
}

// deliver hands the outcome to whoever waits for it.
func (j *job) deliver(err error) {
	switch j.kind {
	case postJob:
		if j.done != nil {
			returned := false
			defer leaveToC("the done function given to Runner.Post", &returned)
			j.done(err)
			returned = true
		}
	case callJob:
		j.res <- err // never blocks: one outcome, capacity 1
	case entryJob:
		j.q.deliver(Completion{Tag: j.tag, Err: err})
	}
}

// tgoRunnerWork is the work trampoline (tgo_runner_work): h is the job's
// cgo.Handle. It runs on the runner's thread.
//
//export tgoRunnerWork
func tgoRunnerWork(h C.uintptr_t) {
	returned := false
	defer leaveToC("work sent to a Runner", &returned)
	cgo.Handle(h).Value().(*job).run(cgo.Handle(h))
	returned = true
}

// tgoRunnerFail is called on the runner for a job that it never ran.
//
//export tgoRunnerFail
func tgoRunnerFail(h C.uintptr_t, status C.tg_status) {
	returned := false
	defer leaveToC("a Runner's report of work it did not run", &returned)
	cgo.Handle(h).Value().(*job).fail(cgo.Handle(h), status)
	returned = true
}

// waitList is a runner's Calls waiting for room in its full queue, first
// come first served. Each job the runner takes out of its queue wakes one
// waiter (wakeOne), which tries to post again; a waiter that leaves after
// it was woken passes the wake-up on, so none is lost.
type waitList struct {
	n  atomic.Int32 // len(ws), so that wakeOne costs nothing when none waits
	mu sync.Mutex
	ws []chan struct{} // each of capacity 1
}

// join adds a waiter and returns the channel that wakes it.
func (l *waitList) join() chan struct{} {
	w := make(chan struct{}, 1)
	l.mu.Lock()
	l.ws = append(l.ws, w)
	l.n.Store(int32(len(l.ws)))
	l.mu.Unlock()
	return w
}

// leave takes w off the list. If w was woken already, it wakes the next.
func (l *waitList) leave(w chan struct{}) {
	l.mu.Lock()
	for i := len(l.ws) - 1; i >= 0; i-- {
		if l.ws[i] == w {
			l.ws = slices.Delete(l.ws, i, i+1)
			l.n.Store(int32(len(l.ws)))
			l.mu.Unlock()
			return
		}
	}
	l.mu.Unlock()
	l.wakeOne()
}

// wakeOne wakes the longest waiting waiter, if any.
func (l *waitList) wakeOne() {
	if l.n.Load() == 0 {
		return
	}
	l.mu.Lock()
	if len(l.ws) > 0 {
		l.ws[0] <- struct{}{}
		l.ws[0] = nil
		l.ws = l.ws[1:]
		l.n.Store(int32(len(l.ws)))
	}
	l.mu.Unlock()
}

// wakeAll wakes every waiter.
func (l *waitList) wakeAll() {
	l.mu.Lock()
	for _, w := range l.ws {
		w <- struct{}{}
	}
	l.ws = nil
	l.n.Store(0)
	l.mu.Unlock()
}
