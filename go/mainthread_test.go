package threadguard

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// onProcessMainThread reports whether the caller runs on the process's main
// thread, by the OS's thread ID.
func onProcessMainThread() bool { return syscall.Gettid() == os.Getpid() }

// Before TestMain handed the main thread over, every method answered at
// once with ErrShutDown, and New ran no constructor.
func TestMainThreadCallsBeforeHandOverFail(t *testing.T) {
	b := beforeHandOver
	for what, err := range map[string]error{"Do": b.do, "Go": b.goErr, "Close": b.close, "New": b.newErr} {
		if !errors.Is(err, ErrShutDown) || !strings.Contains(err.Error(), "has not been handed over") {
			t.Errorf("%s before the hand-over: %v, want ErrShutDown saying it was not handed over", what, err)
		}
	}
	if b.created != 0 {
		t.Errorf("New before the hand-over ran the constructor %d times", b.created)
	}
}

// Work sent to the main thread runs on the process's main thread: the OS
// thread whose ID is the process ID, and the library's ID of it.
func TestMainThreadRunsWorkOnTheProcessMainThread(t *testing.T) {
	main := Main()
	if main.ID() == 0 || main.ID() != mainThreadID {
		t.Fatalf("Main().ID() = %d, want the main thread's %d", main.ID(), mainThreadID)
	}
	if onProcessMainThread() {
		t.Fatal("the test goroutine runs on the main thread, which the main goroutine holds")
	}
	var tid, pid int
	var id uint64
	var mainGoroutine bool
	err := main.Do(context.Background(), func() error {
		tid, pid, id = syscall.Gettid(), os.Getpid(), CurrentThreadID()
		mainGoroutine = isMainGoroutine()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tid != pid || id != main.ID() || !mainGoroutine {
		t.Fatalf("work ran on OS thread %d (process %d), library thread %d (main %d), main goroutine %v",
			tid, pid, id, main.ID(), mainGoroutine)
	}
	if main.Name() != "main" || main.String() != threadLabel(main.ID(), "main") {
		t.Fatalf("Name %q, String %q", main.Name(), main.String())
	}
}

// Many goroutines sending work at once: every call runs, on the main
// thread, one at a time.
func TestMainThreadManyGoroutines(t *testing.T) {
	const goroutines, calls = 64, 50
	main := Main()
	ran, offMain := 0, 0 // touched only by work on the main thread
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				err := main.Do(context.Background(), func() error {
					ran++
					if !onProcessMainThread() {
						offMain++
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ran != goroutines*calls || offMain != 0 {
		t.Fatalf("%d calls ran (%d off the main thread), want %d", ran, offMain, goroutines*calls)
	}
}

// Do, Go and New from work already on the main thread run inline instead of
// waiting behind that work.
func TestMainThreadNestedCallsRunInline(t *testing.T) {
	main := Main()
	ctx := context.Background()
	depth := 0
	err := main.Do(ctx, func() error {
		return main.Do(ctx, func() error {
			o, err := main.New(ctx, affine.Tag, affine.Destructor(), affine.New)
			if err != nil {
				return err
			}
			defer o.Close()
			return o.With(ctx, func(p unsafe.Pointer) error {
				if !onProcessMainThread() {
					return errors.New("nested work left the main thread")
				}
				depth = 3
				affine.Add(p, 1)
				return nil
			})
		})
	})
	if err != nil || depth != 3 {
		t.Fatalf("nested calls: %v (depth %d)", err, depth)
	}
}

// A call whose context ends while it waits behind other work never runs.
func TestMainThreadCancelWhileQueued(t *testing.T) {
	main := Main()
	running, release := make(chan struct{}), make(chan struct{})
	busy := main.Go(func() error { close(running); <-release; return nil })
	<-running
	ctx, cancel := context.WithCancel(context.Background())
	ran := 0
	res := make(chan error, 1)
	go func() { res <- main.Do(ctx, func() error { ran++; return nil }) }()
	eventually(t, "the call to be queued", func() bool { return main.t.queued() == 1 })
	cancel()
	if err := receive(t, "the cancelled Do", res); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Do: %v", err)
	}
	close(release)
	if err := receive(t, "the busy work", busy); err != nil {
		t.Fatal(err)
	}
	if err := main.Do(context.Background(), func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ran != 0 {
		t.Fatalf("the cancelled work ran %d times", ran)
	}
}

// A panic in work is returned as ErrPanic, and the main thread goes on.
func TestMainThreadPanicBecomesError(t *testing.T) {
	main := Main()
	err := main.Do(context.Background(), func() error { panic("on the main thread") })
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "on the main thread") {
		t.Fatalf("panic: %v", err)
	}
	if err := <-main.Go(func() error { panic("again") }); !errors.Is(err, ErrPanic) {
		t.Fatalf("panic through Go: %v", err)
	}
	if err := main.Do(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("after the panics: %v", err)
	}
}

// Objects created on the main thread are owned by it, route their calls
// there from any goroutine, and are destroyed there: by Close, and by
// their cleanup when dropped.
func TestMainThreadObjects(t *testing.T) {
	main := Main()
	ctx := context.Background()
	var serials []uint64
	o, err := main.New(ctx, affine.Tag, affine.Destructor(), createAffine(&serials))
	if err != nil {
		t.Fatal(err)
	}
	if o.Owner() != Owner(main) || o.Handle().Owner != main.ID() || o.Thread() != nil || o.Runner() != nil {
		t.Fatalf("owner %v, handle %v, want the main thread %d", o.Owner(), o.Handle(), main.ID())
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.With(ctx, func(p unsafe.Pointer) error { affine.Add(p, 1); return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var value int64
	o.With(ctx, func(p unsafe.Pointer) error { value = affine.Value(p); return nil })
	if value != 16 {
		t.Fatalf("value %d, want 16", value)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := main.New(ctx, affine.Tag, affine.Destructor(), createAffine(&serials)); err != nil {
		t.Fatal(err)
	} // dropped: its cleanup asks the main thread to destroy it
	eventually(t, "both objects to be destroyed on the main thread", func() bool {
		return destroyedOnceOn(t, main.ID(), serials)
	})
}

// With the main goroutine locked to the main thread from init (as
// TestMain's init does), no other goroutine runs there.
func TestNoOtherGoroutineRunsOnTheMainThread(t *testing.T) {
	const goroutines = 2000
	var wg sync.WaitGroup
	var mu sync.Mutex
	landed := 0
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.Gosched()
			if onProcessMainThread() {
				mu.Lock()
				landed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if landed != 0 {
		t.Fatalf("%d of %d goroutines ran on the main thread", landed, goroutines)
	}
}

// New refuses to bind an object to a goroutine, other than the main
// goroutine, that runs on the main thread: Go would park the thread if the
// goroutine exited, and the object would never be destroyed. Here the
// check stands in for a scheduler that put the caller there.
func TestNewRefusesToPinOnTheMainThread(t *testing.T) {
	real := onMainThread
	onMainThread = func() bool { return true }
	defer func() { onMainThread = real }()
	created := 0
	res := make(chan error, 1)
	go func() {
		_, err := New(affine.Tag, affine.Destructor(), func() (unsafe.Pointer, error) {
			created++
			return affine.New()
		})
		res <- err
	}()
	err := receive(t, "New", res)
	if !errors.Is(err, ErrWrongThread) || !strings.Contains(err.Error(), "main thread") || created != 0 {
		t.Fatalf("New on the main thread from another goroutine: %v (constructor runs %d)", err, created)
	}
	// Work on the main thread itself still creates objects there.
	o, err := Main().New(context.Background(), affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

// The same, for real: in a process whose main goroutine does not hold the
// main thread, a goroutine that the scheduler puts there is refused.
func TestNewRefusesToPinOnTheUnheldMainThread(t *testing.T) {
	out := runMainChild(t, unlockedChild, 0)
	if strings.Contains(out, "no goroutine ran on the main thread") {
		t.Skip("the scheduler put none of the child's goroutines on the main thread")
	}
	if !strings.Contains(out, "refused on the main thread") {
		t.Fatalf("the child's output:\n%s", out)
	}
}

// Handing back answers queued work with ErrShutDown, destroys the objects
// the main thread owns on it, and refuses calls after it.
func TestMainThreadHandBack(t *testing.T) {
	out := runMainChild(t, "handback", 0)
	if !strings.Contains(out, "handed back: 5 objects destroyed on the main thread, 8 queued calls failed") {
		t.Fatalf("the child's output:\n%s", out)
	}
}

// runMainChild runs the test binary again with the scenario name, wants the
// exit code, and returns its output.
func runMainChild(t *testing.T, name string, code int) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the test binary again")
	}
	cmd := exec.Command(os.Args[0], "-test.count=1")
	cmd.Env = append(os.Environ(), mainChild+"="+name)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil && code == 0:
	case errors.As(err, &exit) && exit.ExitCode() == code:
	default:
		t.Fatalf("the child %q ended with %v, want exit code %d; its output:\n%s", name, err, code, out)
	}
	return string(out)
}

// Close from the program gives the main thread back at once, destroying its
// objects; Run still returns only once the program has returned.
func TestMainThreadCloseFromTheProgram(t *testing.T) {
	out := runMainChild(t, "close", 0)
	if !strings.Contains(out, "Run: <nil>; fn went on after Close") {
		t.Fatalf("the child's output:\n%s", out)
	}
}
