package threadguard

// #include "shim.h"
import "C"

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Thread is a goroutine locked to its own OS thread that runs submitted
// work, one function at a time, in submission order. Objects created by work
// running on a Thread are owned by its OS thread, and their methods route
// calls there from any goroutine.
//
// A Thread lives until Close (or, made with EndWithObjects, until its last
// object is gone). One that is never closed keeps its goroutine and OS
// thread until the process exits.
type Thread struct {
	name string
	id   uint64
	done chan struct{} // closed once the goroutine has cleaned up
	err  error         // tg_thread_cleanup's result, read after done

	// Waking the goroutine (see next): signals counts changes to the queue
	// or closing; a goroutine that found nothing to do spins until it
	// changes, then sets sleeping and blocks on wake (capacity 1), which
	// signal sends to only while sleeping is set.
	signals  atomic.Uint64
	sleeping atomic.Bool
	idling   atomic.Bool // spinning for its next task
	wake     chan struct{}
	idle     spinner // the goroutine's spin for its next task
	spin     spinner // callers' spin for their result

	poked atomic.Bool // a RunPending is queued (see poke)

	mu      sync.Mutex
	queue   []*task
	closing bool

	main *MainThread // set for the main thread's queue, for its messages

	onExit         func() error // OnExit's hook
	endWithObjects bool         // EndWithObjects
	objects        atomic.Int64 // live objects made by New on t, with endWithObjects

	// Only the Thread's goroutine uses these.
	current  *task  // the task being run
	spinNext bool   // the last task's caller spun for its result
	rhythm   rhythm // how tasks arrive, to re-engage (see spinner)
}

// task is one submitted function. Its state moves once, from queued to
// running (the Thread takes it) or to dropped (its context was cancelled
// while it waited, or Close failed it): exactly one side reports its result.
type task struct {
	fn       func() error
	state    atomic.Int32
	res      chan error  // capacity 1, so reporting never blocks
	spinning atomic.Bool // Do's caller spins for res (see spinner)
}

const (
	queued int32 = iota
	running
	dropped
)

// NewThread starts a Thread: a goroutine locked to an OS thread of its own
// (never the process's main thread), which the library knows by name
// (tg_set_thread_name) in its messages. The goroutine never unlocks: when
// the Thread is closed it exits, and Go ends the OS thread with it.
//
// Options: OnExit runs per-thread finalization as the Thread exits, and
// EndWithObjects closes it once its last object is gone.
func NewThread(name string, opts ...ThreadOption) (*Thread, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return nil, newError("NewThread", ErrInvalidArgument, "name contains a NUL byte")
	}
	t := &Thread{name: name, wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, opt := range opts {
		opt(t)
	}
	started := make(chan error, 1)
	go t.loop(started)
	if err := <-started; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// ID returns the library's ID of the Thread's OS thread: the owner ID in the
// handles of objects it owns.
func (t *Thread) ID() uint64 { return t.id }

// Name returns the name the Thread was started with.
func (t *Thread) Name() string { return t.name }

// String returns the ID and name, as in `7 ("gl-main")`.
func (t *Thread) String() string { return threadLabel(t.id, t.name) }

// Do runs fn on t and returns its error.
//
// A caller that sends work back to back gets the result without sleeping:
// unless it had to wake t, Do spins for the result before it blocks (at
// most 50 µs, less while spinning keeps failing), and after a task whose
// caller spun, t's goroutine spins as briefly for its next task before it
// sleeps. Once both have fallen asleep, t spins up to 250 µs after a task
// that came within 200 µs of t waiting for it, so that the caller finds it
// awake and both spin again (less often while that keeps failing); an idle
// t sleeps at most 250 µs after its last task.
//
// While fn waits in the queue, Do honours ctx: if ctx is done first, fn is
// taken out of the queue, never runs, and Do returns ctx.Err(). Once fn has
// started, Do waits for it to finish and returns its result even if ctx is
// done meanwhile: code running on another OS thread cannot be interrupted,
// and returning early would leave the caller not knowing whether fn's
// effects happened. fn may watch ctx itself to stop early, and a context
// made by WithInterrupt asks it to stop from the caller's goroutine.
//
// A panic in fn is returned as an error wrapping ErrPanic; the Thread goes
// on. After Close, or if Close is called while fn waits, Do returns an error
// wrapping ErrShutDown. Called from work already running on t, Do runs fn
// at once, inline, instead of waiting behind itself.
func (t *Thread) Do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.onThread() {
		if t.isClosing() {
			return t.shutDownError("Thread.Do")
		}
		return t.run(fn)
	}
	tk := &task{fn: fn, res: make(chan error, 1)}
	idling := t.idling.Load()
	woke, err := t.submit(tk, "Thread.Do")
	if err != nil {
		return err
	}
	// A caller that had to wake t does not spin: the wake-up takes longer
	// than a spin, and a P handed straight to t's thread serves it sooner.
	// One that found t spinning for work spins in full: t takes the task at
	// once, and this is how a caller and t get back to spinning both.
	if idling && t.spin.limit.Load() != int64(spinMax) {
		t.spin.limit.Store(int64(spinMax))
	}
	if !woke {
		if err, ok := t.spin.poll(tk.res, &tk.spinning); ok {
			return err
		}
	}
	select {
	case err := <-tk.res:
		return err
	case <-ctx.Done():
		if tk.state.CompareAndSwap(queued, dropped) {
			return ctx.Err()
		}
		interrupted(ctx) // fn has started: ask it to stop (WithInterrupt)
		return <-tk.res
	}
}

// Go queues fn to run on t and returns at once. The channel receives fn's
// error (nil on success, ErrPanic if it panicked, ErrShutDown if t was or
// got closed before fn ran) exactly once, and is never closed. It is
// buffered: a caller that does not care about the result may drop it.
func (t *Thread) Go(fn func() error) <-chan error {
	tk := &task{fn: fn, res: make(chan error, 1)}
	if _, err := t.submit(tk, "Thread.Go"); err != nil {
		tk.res <- err
	}
	return tk.res
}

// New creates an object on t and registers it there: it runs New(tag,
// destroy, create) on t, so the object is owned by t's OS thread and its
// methods route calls there. ctx applies as in Do.
func (t *Thread) New(ctx context.Context, tag Tag, destroy unsafe.Pointer, create func() (unsafe.Pointer, error)) (*Object, error) {
	var o *Object
	at := callerSite()
	err := t.Do(ctx, func() (err error) {
		o, err = newAt(at, tag, destroy, create)
		return err
	})
	return o, err
}

// Close stops t: work still queued fails with ErrShutDown, the work running
// now (if any) finishes, and then, on t's OS thread, tg_thread_cleanup runs
// what is pending and destroys every object the thread still owns. The
// goroutine then exits while still locked, so Go retires the OS thread. Close
// waits for all that and returns the cleanup's error; later calls return the
// same. Called from work running on t, Close starts the shutdown and returns
// nil at once: the cleanup runs when that work returns.
func (t *Thread) Close() error {
	t.shutdown()
	if t.onThread() {
		return nil
	}
	<-t.done
	return t.err
}

// loop is the Thread's goroutine.
func (t *Thread) loop(started chan<- error) {
	runtime.LockOSThread() // never undone: the OS thread ends with the goroutine
	if C.tgo_is_main_thread() != 0 {
		// Go parks the main thread instead of ending it when a goroutine
		// locked there exits, so its thread-exit hooks would never run.
		// Start over on a goroutine that cannot run here while this one
		// holds the main thread, then give the main thread back.
		moved := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(moved)
			t.loop(started)
		}()
		<-moved
		runtime.UnlockOSThread()
		return
	}
	defer t.exit()
	t.id = uint64(C.tg_current_thread_id())
	name := C.CString(t.name)
	err := check("tg_set_thread_name", C.tg_set_thread_name(name))
	C.free(unsafe.Pointer(name))
	if err != nil {
		t.shutdown()
		started <- err
		return
	}
	owners.Store(t.id, Owner(t))
	started <- nil
	t.serve()
}

// serve runs tasks until t is closing and its queue is empty.
func (t *Thread) serve() {
	for {
		tk := t.next()
		if tk == nil {
			return
		}
		if !tk.state.CompareAndSwap(queued, running) {
			continue // its Do gave up waiting
		}
		t.current = tk
		tk.res <- t.run(tk.fn)
		t.current = nil
		// Spin for the next task if the caller saw the result spinning. A
		// caller blocked on res was readied onto this P, and must not wait
		// for a spin to end, unless to re-engage (see spinner).
		t.spinNext = tk.spinning.Load()
	}
}

// exit runs on the Thread's goroutine as it ends: after Close, and also if
// work called runtime.Goexit, which ends the goroutine whatever run does.
func (t *Thread) exit() {
	t.shutdown()
	if tk := t.current; tk != nil {
		tk.res <- newError("Thread.Do", ErrPanic, "work called runtime.Goexit on thread "+t.String())
	}
	defer close(t.done) // also if the exit hook calls runtime.Goexit
	defer owners.Delete(t.id)
	t.err = check("tg_thread_cleanup", C.tg_thread_cleanup())
	if t.onExit != nil {
		if err := guard("OnExit", t.onExit); t.err == nil {
			t.err = err
		}
	}
}

// run calls fn, turning a panic into an error.
func (t *Thread) run(fn func() error) error {
	return guard("Thread.Do", fn)
}

// next takes the next task, waiting for one; nil once t is closing. It
// spins before it blocks if the last task's caller spun, or to re-engage
// (see spinner), so that back-to-back calls find it awake.
func (t *Thread) next() *task {
	waiting := false    // the queue was found empty
	var since time.Time // when the wait began, or its spin for a spinning caller ended
	for {
		seen := t.signals.Load()
		t.mu.Lock()
		if len(t.queue) > 0 {
			tk := t.queue[0]
			t.queue[0] = nil
			t.queue = t.queue[1:]
			t.mu.Unlock()
			gap := time.Duration(0) // none: it was there, or came as t spun
			if !since.IsZero() {
				gap = time.Since(since)
			}
			t.rhythm.arrived(gap)
			return tk
		}
		closing := t.closing
		t.mu.Unlock()
		if closing {
			return nil
		}
		changed := func() bool { return t.signals.Load() != seen }
		spun := false
		if !waiting && t.spinNext {
			t.idling.Store(true)
			spun = t.idle.spin(false, changed, nil)
			t.idling.Store(false)
			t.rhythm.spun(spun)
		}
		if !spun && since.IsZero() {
			since = time.Now()
		}
		if !waiting && !t.spinNext && t.rhythm.reengage() && procs.Load() > 1 {
			t.idling.Store(true)
			spun = spinFor(reengageMax, changed)
			t.idling.Store(false)
			t.rhythm.reengaged(spun)
			if spun {
				// Spinning pays again: the next wait starts at spinMax.
				t.idle.limit.Store(int64(spinMax))
			} else {
				procs.Store(int32(runtime.GOMAXPROCS(0)))
			}
		}
		waiting = true
		if !spun {
			t.sleeping.Store(true)
			if !changed() {
				<-t.wake
			}
			t.sleeping.Store(false)
			select {
			case <-t.wake: // a wake-up sent as it looked: stale now
			default:
			}
		}
	}
}

// submit queues tk, or returns ErrShutDown if t is closing. It reports
// whether it had to wake t's goroutine.
func (t *Thread) submit(tk *task, op string) (woke bool, err error) {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return false, t.shutDownError(op)
	}
	t.queue = append(t.queue, tk)
	t.mu.Unlock()
	return t.signal(), nil
}

// shutdown marks t closing and fails what is queued. It does not wait.
func (t *Thread) shutdown() {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return
	}
	t.closing = true
	q := t.queue
	t.queue = nil
	t.mu.Unlock()
	for _, tk := range q {
		if tk.state.CompareAndSwap(queued, dropped) {
			tk.res <- t.shutDownError("Thread.Close")
		}
	}
	t.signal()
}

func (t *Thread) isClosing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

// signal tells the goroutine that the queue or closing changed, and
// reports whether the goroutine was asleep (it must be woken).
func (t *Thread) signal() bool {
	t.signals.Add(1)
	if !t.sleeping.Load() {
		return false // awake: it sees signals change
	}
	select {
	case t.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
	return true
}

// poke asks t to run pending destruction soon (tg_run_pending), so that
// objects whose cleanup queued their destruction do not wait for unrelated
// work. Pokes coalesce: at most one is queued at a time.
func (t *Thread) poke() {
	if !t.poked.CompareAndSwap(false, true) {
		return
	}
	t.Go(func() error {
		t.poked.Store(false)
		return RunPending()
	})
}

// onThread reports whether the caller is t's goroutine. Only that goroutine
// runs on t's OS thread (it is locked there), so comparing thread IDs is
// exact even for an unlocked caller.
func (t *Thread) onThread() bool {
	return uint64(C.tg_current_thread_id()) == t.id
}

func (t *Thread) shutDownError(op string) error {
	if t.main != nil {
		return t.main.shutDownError(op)
	}
	return newError(op, ErrShutDown, "thread "+t.String()+" is closed")
}

func (t *Thread) onOwner() bool { return t.onThread() }

// ThreadOption configures a Thread at NewThread.
type ThreadOption func(*Thread)

// OnExit has the Thread run fn on its OS thread as it exits, after its
// cleanup has destroyed every object it owned: the place for a library's
// per-thread finalization (Tcl_FinalizeThread, say), which must run on the
// thread and after its objects are gone. Close returns fn's error if the
// cleanup succeeded (a panic in fn becomes an error wrapping ErrPanic).
func OnExit(fn func() error) ThreadOption {
	return func(t *Thread) { t.onExit = fn }
}

// EndWithObjects has the Thread close itself once the last object created
// on it by New (Thread.New, or New in its work) is gone: closed, or
// dropped and found by its cleanup. Then one Thread per object can be
// left to the garbage collector with the object: the Thread's cleanup
// destroys the object if its destruction is still pending, runs the
// OnExit hook, and ends the OS thread. Before the first object the Thread
// runs as any other; once it has ended, Do returns ErrShutDown.
func EndWithObjects() ThreadOption {
	return func(t *Thread) { t.endWithObjects = true }
}

// adopt counts an object that New bound to t.
func (t *Thread) adopt() {
	if t.endWithObjects {
		t.objects.Add(1)
	}
}

// release uncounts an object of t that is gone, and closes t with its last.
func (t *Thread) release() {
	if t.endWithObjects && t.objects.Add(-1) == 0 {
		t.shutdown()
	}
}

func (t *Thread) finished() (<-chan struct{}, *error) { return t.done, &t.err }

func (t *Thread) forgotten() { t.poke() }

// queued returns the number of tasks in the queue, for tests.
func (t *Thread) queued() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue)
}
