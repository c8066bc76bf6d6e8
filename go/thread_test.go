package threadguard

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// 100,000 calls from 64 goroutines on one Thread-bound object: all succeed,
// all run on the owner thread, none is lost.
func TestThreadServesManyGoroutinesOnItsOwnThread(t *testing.T) {
	const goroutines, calls = 64, 100_000
	th := newThread(t, "owner")
	o, _ := newAffine(t, th)
	defer o.Close()
	misuse := affine.ReadStats().Misuse
	ctx := context.Background()
	var offOwner, failed atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		n := calls / goroutines
		if g < calls%goroutines {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				err := o.With(ctx, func(p unsafe.Pointer) error {
					if CurrentThreadID() != th.ID() {
						offOwner.Add(1)
					}
					affine.Add(p, 1)
					return nil
				})
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	var v int64
	if err := o.With(ctx, func(p unsafe.Pointer) error { v = affine.Value(p); return nil }); err != nil {
		t.Fatal(err)
	}
	if failed.Load() != 0 || offOwner.Load() != 0 || v != calls {
		t.Errorf("%d calls failed, %d ran off the owner thread, value %d, want 0, 0, %d", failed.Load(), offOwner.Load(), v, calls)
	}
	if got := affine.ReadStats().Misuse - misuse; got != 0 {
		t.Errorf("%d affine calls on a wrong thread", got)
	}
}

func TestThreadIDIsTheOwnerOfItsObjects(t *testing.T) {
	th := newThread(t, "ids")
	var inside uint64
	if err := th.Do(context.Background(), func() error { inside = CurrentThreadID(); return nil }); err != nil {
		t.Fatal(err)
	}
	o, _ := newAffine(t, th)
	defer o.Close()
	if inside != th.ID() || o.Handle().Owner != th.ID() || o.Thread() != th {
		t.Errorf("ID %d, seen inside %d, object owner %d", th.ID(), inside, o.Handle().Owner)
	}
	if id, err := o.Handle().OwnerThread(); err != nil || id != th.ID() {
		t.Errorf("OwnerThread = %d, %v", id, err)
	}
	if !strings.Contains(th.String(), `"ids"`) || th.Name() != "ids" {
		t.Errorf("String %q Name %q", th, th.Name())
	}
}

func TestThreadDoHonoursContextWhileQueued(t *testing.T) {
	th := newThread(t, "ctx")
	release := make(chan struct{})
	running := make(chan struct{})
	blocker := th.Go(func() error { close(running); <-release; return nil })
	<-running
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	result := make(chan error, 1)
	go func() { result <- th.Do(ctx, func() error { ran.Store(true); return nil }) }()
	eventually(t, "the work to be queued", func() bool { return th.queued() == 1 })
	cancel()
	wantErr(t, "Do cancelled while queued", receive(t, "Do", result), context.Canceled)
	close(release)
	if err := receive(t, "blocker", blocker); err != nil {
		t.Fatal(err)
	}
	// The Thread goes on, and the dropped work never runs.
	if err := th.Do(context.Background(), func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Error("work whose Do gave up ran anyway")
	}
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	wantErr(t, "Do with a done context", th.Do(done, func() error { ran.Store(true); return nil }), context.Canceled)
}

// Once fn has started, Do waits for it even if ctx is cancelled: fn is
// never left half-run behind the caller's back.
func TestThreadDoWaitsForStartedWork(t *testing.T) {
	th := newThread(t, "wait")
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var finished atomic.Bool
	result := make(chan error, 1)
	go func() {
		result <- th.Do(ctx, func() error {
			close(started)
			time.Sleep(20 * time.Millisecond)
			finished.Store(true)
			return errors.New("fn's own error")
		})
	}()
	<-started
	cancel()
	err := receive(t, "Do", result)
	if !finished.Load() || err == nil || err.Error() != "fn's own error" {
		t.Errorf("Do returned %v with fn finished=%v; want fn's own error after it finished", err, finished.Load())
	}
}

func TestThreadPanicIsAnErrorAndTheThreadGoesOn(t *testing.T) {
	th := newThread(t, "panics")
	ctx := context.Background()
	err := th.Do(ctx, func() error { panic("boom") })
	wantErr(t, "Do of a panicking fn", err, ErrPanic)
	if !strings.Contains(err.Error(), "boom") {
		t.Errorf("panic message lost: %v", err)
	}
	wantErr(t, "Go of a panicking fn", receive(t, "Go", th.Go(func() error { panic(errors.New("bang")) })), ErrPanic)
	var id uint64
	if err := th.Do(ctx, func() error { id = CurrentThreadID(); return nil }); err != nil || id != th.ID() {
		t.Fatalf("after the panics: %v on thread %d, want thread %d", err, id, th.ID())
	}
	// A panic inside a borrow comes back the same way, and the object is
	// not left busy.
	o, _ := newAffine(t, th)
	defer o.Close()
	wantErr(t, "With of a panicking fn", o.With(ctx, func(unsafe.Pointer) error { panic("in borrow") }), ErrPanic)
	if err := o.With(ctx, add1); err != nil {
		t.Fatalf("object unusable after a panic in its borrow: %v", err)
	}
}

func TestThreadWorkMayCallTheThreadAndItsObjects(t *testing.T) {
	th := newThread(t, "nested")
	ctx := context.Background()
	a, _ := newAffine(t, th)
	b, _ := newAffine(t, th)
	defer a.Close()
	defer b.Close()
	err := a.With(ctx, func(pa unsafe.Pointer) error {
		// Routed calls from work on the owner run inline, not behind it.
		if err := b.With(ctx, add1); err != nil {
			return err
		}
		if err := th.Do(ctx, func() error { return nil }); err != nil {
			return err
		}
		return a.With(ctx, add1) // the same object: busy
	})
	wantErr(t, "nested With on the borrowed object", err, ErrBusy)
	err = a.With(ctx, func(unsafe.Pointer) error { return a.Close() })
	wantErr(t, "Close inside the object's own With", err, ErrBusy)
}

// Close with work still queued: the queued work fails with ErrShutDown and
// never runs, the running work finishes, the objects the Thread owns are
// destroyed on it exactly once, and nothing hangs or leaks.
func TestThreadCloseFailsQueuedWorkAndDestroysWhatItOwns(t *testing.T) {
	const objects, queued, waiting = 10, 100, 10
	goroutines := runtime.NumGoroutine()
	th, err := NewThread("closing")
	if err != nil {
		t.Fatal(err)
	}
	id := th.ID()
	var objs []*Object
	var serials []uint64
	for range objects {
		o, s := newAffine(t, th)
		objs, serials = append(objs, o), append(serials, s)
	}
	release, running := make(chan struct{}), make(chan struct{})
	blocker := th.Go(func() error { close(running); <-release; return nil })
	<-running
	var ran atomic.Int64
	work := func() error { ran.Add(1); return nil }
	var results []<-chan error
	for range queued {
		results = append(results, th.Go(work))
	}
	doResults := make(chan error, waiting)
	for range waiting {
		go func() { doResults <- th.Do(context.Background(), work) }()
	}
	eventually(t, "all work to be queued", func() bool { return th.queued() == queued+waiting })
	closed := make(chan error, 1)
	go func() { closed <- th.Close() }()
	eventually(t, "Close to begin", th.isClosing)
	for _, r := range results {
		wantErr(t, "queued Go", receive(t, "queued work", r), ErrShutDown)
	}
	for range waiting {
		wantErr(t, "waiting Do", receive(t, "waiting Do", doResults), ErrShutDown)
	}
	if destroyedOnceOn(t, id, serials[:1]) {
		t.Fatal("objects destroyed while work was still running")
	}
	close(release)
	if err := receive(t, "running work", blocker); err != nil {
		t.Fatalf("running work: %v", err)
	}
	if err := receive(t, "Close", closed); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ran.Load() != 0 {
		t.Errorf("%d queued functions ran after Close", ran.Load())
	}
	if !destroyedOnceOn(t, id, serials) {
		t.Error("Close returned before destroying the Thread's objects")
	}
	// Everything after Close gets ErrShutDown; closing objects is a no-op.
	wantErr(t, "Do after Close", th.Do(context.Background(), work), ErrShutDown)
	wantErr(t, "Go after Close", receive(t, "Go after Close", th.Go(work)), ErrShutDown)
	wantErr(t, "With after Close", objs[0].With(context.Background(), add1), ErrShutDown)
	for _, o := range objs {
		if err := o.Close(); err != nil {
			t.Errorf("object Close after Thread Close: %v", err)
		}
	}
	if err := th.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !destroyedOnceOn(t, id, serials) || ran.Load() != 0 {
		t.Error("something ran after Close")
	}
	// Nothing leaks: the objects, the goroutine, the OS thread.
	eventually(t, "the Thread's OS thread to exit", func() bool {
		_, err := Handle{Owner: id, Key: 1}.OwnerThread()
		return errors.Is(err, ErrOwnerExited)
	})
	eventually(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines })
}

func TestCloseFromInsideWorkShutsDownAfterIt(t *testing.T) {
	th, err := NewThread("self-closing")
	if err != nil {
		t.Fatal(err)
	}
	o, serial := newAffine(t, th)
	_ = o
	var after error
	err = th.Do(context.Background(), func() error {
		if err := th.Close(); err != nil {
			return err
		}
		after = th.Do(context.Background(), func() error { return nil })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Do after Close from inside", after, ErrShutDown)
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
	if !destroyedOnceOn(t, th.ID(), []uint64{serial}) {
		t.Error("the Thread's object was not destroyed")
	}
}

func TestGoexitInWorkEndsTheThreadCleanly(t *testing.T) {
	th, err := NewThread("goexit")
	if err != nil {
		t.Fatal(err)
	}
	_, serial := newAffine(t, th)
	wantErr(t, "Do of runtime.Goexit", th.Do(context.Background(), func() error { runtime.Goexit(); return nil }), ErrPanic)
	wantErr(t, "Do after Goexit", th.Do(context.Background(), func() error { return nil }), ErrShutDown)
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
	if !destroyedOnceOn(t, th.ID(), []uint64{serial}) {
		t.Error("the Thread's object was not destroyed")
	}
}

func TestNewThreadRejectsANameWithNUL(t *testing.T) {
	_, err := NewThread("a\x00b")
	wantErr(t, "NewThread", err, ErrInvalidArgument)
}

func TestRegistrationFailureRunsTheDestructor(t *testing.T) {
	th := newThread(t, "tag0")
	var serials []uint64
	_, err := th.New(context.Background(), 0, affine.Destructor(), createAffine(&serials))
	wantErr(t, "New with tag 0", err, ErrInvalidArgument)
	if !destroyedOnceOn(t, th.ID(), serials) {
		t.Error("the unregistered object leaked")
	}
	wantErr(t, "New whose create fails", func() error {
		_, err := th.New(context.Background(), affine.Tag, nil, func() (unsafe.Pointer, error) { return nil, ErrLimit })
		return err
	}(), ErrLimit)
}

func TestCallRunsTheCFunctionOnTheOwnerAndRefusesElsewhere(t *testing.T) {
	th := newThread(t, "call-owner")
	o, _ := newAffine(t, th)
	defer o.Close()
	n := new(int64)
	*n = 5
	if err := o.Call(context.Background(), affine.AddBorrow(), unsafe.Pointer(n)); err != nil {
		t.Fatal(err)
	}
	var value int64
	read := func(obj unsafe.Pointer) error { value = affine.Value(obj); return nil }
	if err := o.With(context.Background(), read); err != nil {
		t.Fatal(err)
	}
	if value != 5 {
		t.Fatalf("value after Call = %d, want 5", value)
	}
	misuseBefore := affine.ReadStats().Misuse
	err := o.Handle().Call(affine.Tag, affine.AddBorrow(), unsafe.Pointer(n)) // from this goroutine, not the owner
	if !errors.Is(err, ErrWrongThread) {
		t.Fatalf("Handle.Call from another thread: %v, want ErrWrongThread", err)
	}
	if got := affine.ReadStats().Misuse; got != misuseBefore {
		t.Fatalf("a refused Call reached the C library: misuse %d -> %d", misuseBefore, got)
	}
}
