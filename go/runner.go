package threadguard

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"math"
	"runtime/cgo"
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
}

// runners maps a running Runner's thread ID to the Runner.
var runners sync.Map

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
	runners.Store(r.id, r)
	return r, nil
}

// ThreadID returns the library's ID of the runner's thread: the owner ID in
// the handles of objects it owns. It stays valid after Stop.
func (r *Runner) ThreadID() uint64 { return r.id }

// Name returns the name the Runner was started with.
func (r *Runner) Name() string { return r.name }

// String returns the thread ID and name, as in `7 ("model")`.
func (r *Runner) String() string { return threadLabel(r.id, r.name) }

// Call runs fn on the runner's thread and returns its error.
//
// It waits in C (tg_runner_call), holding its OS thread like any blocking
// cgo call: for room if the queue is full, then for fn's result. ctx's
// deadline is the call's C timeout. ctx applies as in Thread.Do: if ctx is
// done before fn starts, Call returns ctx.Err() and fn never runs (a fn
// still queued is skipped when its turn comes). Once fn has started, Call
// waits for it and returns its result even if ctx is done meanwhile: the
// runner's thread cannot be interrupted, and returning early would leave
// the caller not knowing whether fn's effects happened. fn may watch ctx
// itself.
//
// If ctx can be cancelled (ctx.Done is not nil), a helper goroutine makes
// the C call, so that Call can return as soon as ctx is done; the helper
// ends when the library gives the work up: when the runner reaches it (and
// skips it), at ctx's deadline, or at Stop. Its cgo.Handle is released
// there, by the helper or by the library's abandon callback on the runner.
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
	timeout, ok := timeoutMillis(ctx)
	if !ok {
		return context.DeadlineExceeded
	}
	j := &job{r: r, kind: callJob, fn: fn, res: make(chan error, 1)}
	if ctx.Done() == nil {
		r.call(ctx, j, timeout) // ctx never ends: wait here
		return <-j.res
	}
	go r.call(ctx, j, timeout)
	select {
	case err := <-j.res:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(queued, dropped) {
			return ctx.Err()
		}
		return <-j.res
	}
}

// call makes Call's blocking C call and sends the outcome to j.res, unless
// fn does (it ran) or nobody waits for it (Call dropped it).
//
// The library answers TG_OK once the work has run (fn, or the skip of a
// dropped fn), and TG_ERR_TIMEOUT if the deadline came first, in which case
// it calls the abandon function (tgoRunnerRelease) on the runner once it is
// done with the job: the job's handle is released here in every other case.
func (r *Runner) call(ctx context.Context, j *job, timeout int64) {
	h := newJobHandle(j)
	err := callLocked("tg_runner_call", func() C.tg_status {
		return C.tgo_runner_call(r.h.c(), C.uintptr_t(h), C.int64_t(timeout))
	})
	if !errors.Is(err, ErrTimeout) {
		releaseJob(h)
	}
	if err == nil || !j.state.CompareAndSwap(queued, dropped) {
		return
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrLimit) {
		// The deadline passed, while the work waited for its turn or for
		// room in the queue (TG_ERR_LIMIT: it was never queued).
		err = ctx.Err()
		if err == nil { // the library's clock ran ahead of ctx's timer
			err = context.DeadlineExceeded
		}
	}
	j.res <- err
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
	err := r.Call(ctx, func() (err error) {
		o, err = New(tag, destroy, create)
		return err
	})
	return o, err
}

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
		r.stopErr = stop()
		runners.Delete(r.id)
		close(r.stopped)
	})
	return r.stopErr
}

// post queues j (tg_runner_post) without waiting. If the library refuses,
// j's handle is released and the error returned.
func (r *Runner) post(j *job) error {
	h := newJobHandle(j)
	err := callLocked("tg_runner_post", func() C.tg_status {
		return C.tgo_runner_post(r.h.c(), C.uintptr_t(h))
	})
	if err != nil {
		releaseJob(h)
	}
	return err
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

// currentRunner returns the Runner whose thread is calling, or nil.
func currentRunner() *Runner {
	if r, ok := runners.Load(uint64(C.tg_current_thread_id())); ok {
		return r.(*Runner)
	}
	return nil
}

// job is one Go function sent to a runner. C holds only its cgo.Handle: the
// work's context and, for a completion-queue entry, the entry's tag. The
// handle is released exactly once, by whichever step sees the job last (see
// jobKind).
type job struct {
	r     *Runner
	kind  jobKind
	fn    func() error
	state atomic.Int32 // queued → running, or queued → dropped (see Call)
	done  func(error)  // postJob: called on the runner with the outcome
	res   chan error   // callJob and entryJob: capacity 1, receives the outcome
	tag   uint64       // entryJob: the caller's tag
}

// jobKind says how a job's outcome is delivered and who releases its
// handle.
type jobKind uint8

const (
	// postJob (Post): done gets the outcome; the job's run, or its failure
	// at Stop, releases the handle.
	postJob jobKind = iota
	// callJob (Call): the outcome goes to res; Runner.call releases the
	// handle, or the abandon callback after a timeout.
	callJob
	// entryJob (PostTo): the outcome goes to res; the Wait that takes the
	// entry releases the handle, or the queue's discard callback.
	entryJob
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
	if !j.state.CompareAndSwap(queued, running) {
		return // its Call gave up waiting: fn never runs
	}
	j.report(h, guard(j.kind.op(), j.fn))
}

// fail reports a Post job that the runner never ran, with status (it
// stopped before the job's turn).
func (j *job) fail(h cgo.Handle, status C.tg_status) {
	j.report(h, j.failure(status))
}

func (j *job) failure(status C.tg_status) error {
	return newError(j.kind.op(), StatusError(int32(status)),
		"runner "+j.r.String()+" stopped before the work's turn; it did not run")
}

// report delivers the outcome and releases a Post job's handle.
func (j *job) report(h cgo.Handle, err error) {
	if j.kind != postJob {
		j.res <- err
		return
	}
	releaseJob(h)
	if j.done != nil {
		returned := false
		defer leaveToC("the done function given to Runner.Post", &returned)
		j.done(err)
		returned = true
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

// tgoRunnerFail is called on the runner for a Post job that it never ran.
//
//export tgoRunnerFail
func tgoRunnerFail(h C.uintptr_t, status C.tg_status) {
	returned := false
	defer leaveToC("a Runner's report of work it did not run", &returned)
	cgo.Handle(h).Value().(*job).fail(cgo.Handle(h), status)
	returned = true
}

// tgoRunnerRelease releases a job's handle once the library is done with
// it: as a Call's abandon function, after the call timed out, and as a
// completion queue's discard function, for an entry that will never be
// taken because its queue was closed.
//
//export tgoRunnerRelease
func tgoRunnerRelease(h C.uintptr_t) {
	returned := false
	defer leaveToC("a runner's release of a job", &returned)
	releaseJob(cgo.Handle(h))
	returned = true
}
