package threadguard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// mainChild names a scenario that TestMain runs instead of the tests, in a
// child process (the test binary run again with this variable set).
const mainChild = "THREADGUARD_TEST_MAIN_CHILD"

// unlockedChild is the scenario whose main goroutine is not locked to the
// main thread from init.
const unlockedChild = "unlocked"

func init() {
	if os.Getenv(mainChild) != unlockedChild {
		runtime.LockOSThread() // the main goroutine stays on the main thread
	}
}

// beforeHandOver is what the main thread's methods returned before TestMain
// handed it over.
var beforeHandOver struct {
	do, goErr, close error
	newErr           error
	created          int // constructor runs for New before the hand-over
}

// TestMain hands the main goroutine over to the main thread owner and runs
// the tests on another goroutine, after recording what the main thread's
// methods answer before the hand-over.
func TestMain(m *testing.M) {
	if name := os.Getenv(mainChild); name != "" {
		os.Exit(mainChildren[name]())
	}
	ctx := context.Background()
	main := Main()
	beforeHandOver.do = main.Do(ctx, func() error { return nil })
	beforeHandOver.goErr = <-main.Go(func() error { return nil })
	beforeHandOver.close = main.Close()
	_, beforeHandOver.newErr = main.New(ctx, affine.Tag, affine.Destructor(), func() (unsafe.Pointer, error) {
		beforeHandOver.created++
		return affine.New()
	})
	code := 0
	if err := main.Run(func() { code = m.Run() }); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: MainThread.Run:", err)
		code = 1
	}
	os.Exit(code)
}

// mainChildren are the scenarios run in child processes; each returns the
// exit code, and prints a line per check, "FAIL: ..." for one that failed.
var mainChildren = map[string]func() int{
	"handback": handBackChild,
	// fn gives the main thread back with Close and goes on: Run waits for
	// it, and objects are destroyed before Close returns.
	"close": func() int {
		main := Main()
		var serials []uint64
		afterClose := ""
		err := main.Run(func() {
			if _, err := main.New(context.Background(), affine.Tag, affine.Destructor(), createAffine(&serials)); err != nil {
				afterClose = "New: " + err.Error()
				return
			}
			if err := main.Close(); err != nil {
				afterClose = "Close: " + err.Error()
				return
			}
			if r, _ := affine.Lookup(serials[0]); r.Destroys != 1 || r.DestroyedOn != mainThreadID {
				afterClose = fmt.Sprintf("after Close the object was destroyed %d times, on thread %d", r.Destroys, r.DestroyedOn)
				return
			}
			afterClose = "fn went on after Close"
		})
		fmt.Printf("Run: %v; %s\n", err, afterClose)
		return 0
	},
	// A goroutine other than the main goroutine, on the main thread that
	// nothing holds, tries to bind an object to itself.
	unlockedChild: func() int {
		for range 20000 {
			res := make(chan error, 1)
			created := 0
			go func() {
				runtime.LockOSThread()
				if !onMainThread() {
					res <- nil
					return // ends this locked thread too; that is fine
				}
				_, err := New(affine.Tag, affine.Destructor(), func() (unsafe.Pointer, error) {
					created++
					return affine.New()
				})
				if err == nil {
					err = errors.New("New succeeded")
				}
				res <- err
			}()
			err := <-res
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrWrongThread) || created != 0 {
				fmt.Printf("FAIL: New on the main thread from another goroutine: %v (constructor runs: %d)\n", err, created)
				return 1
			}
			fmt.Println("refused on the main thread:", err)
			return 0
		}
		fmt.Println("no goroutine ran on the main thread")
		return 0
	},
}

// handBackChild hands the main thread over, leaves objects and queued work
// there, and checks what the hand-back did.
func handBackChild() int {
	ctx := context.Background()
	main := Main()
	failed := false
	fail := func(format string, args ...any) {
		fmt.Printf("FAIL: "+format+"\n", args...)
		failed = true
	}
	var serials []uint64
	const objects, queuedWork = 5, 8
	var ranQueued int
	var queuedResults []<-chan error
	// The main goroutine, on the main thread, may bind an object to itself:
	// it ends only with the process. The hand-back destroys it too.
	var pinnedSerials []uint64
	pinned, err := New(affine.Tag, affine.Destructor(), createAffine(&pinnedSerials))
	if err != nil || pinned.Owner() != nil || pinned.Handle().Owner != mainThreadID {
		fail("New on the main goroutine: %v", err)
		return 1
	}
	err = main.Run(func() {
		for range objects {
			o, err := main.New(ctx, affine.Tag, affine.Destructor(), createAffine(&serials))
			if err != nil {
				fail("New: %v", err)
				return
			}
			_ = o // left for the hand-back
		}
		// Work left in the queue as fn returns: the first piece holds the
		// main thread until the hand-back has begun.
		release := make(chan struct{})
		started := make(chan struct{})
		queuedResults = append(queuedResults, main.Go(func() error {
			close(started)
			<-release
			return nil
		}))
		<-started
		for range queuedWork {
			queuedResults = append(queuedResults, main.Go(func() error { ranQueued++; return nil }))
		}
		go func() {
			for !main.t.isClosing() {
				runtime.Gosched()
			}
			close(release)
		}()
	})
	if err != nil {
		fail("Run: %v", err)
	}
	if err := <-queuedResults[0]; err != nil {
		fail("the running work: %v", err)
	}
	shutDown := 0
	for _, res := range queuedResults[1:] {
		if errors.Is(<-res, ErrShutDown) {
			shutDown++
		}
	}
	if shutDown != queuedWork || ranQueued != 0 {
		fail("queued work at the hand-back: %d failed with ErrShutDown, %d ran; want %d and 0", shutDown, ranQueued, queuedWork)
	}
	destroyed := 0
	for _, s := range serials {
		r, _ := affine.Lookup(s)
		if r.Destroys == 1 && r.DestroyedOn == mainThreadID && r.Owner == mainThreadID {
			destroyed++
		}
	}
	if r, _ := affine.Lookup(pinnedSerials[0]); r.Destroys != 1 || r.DestroyedOn != mainThreadID {
		fail("the main goroutine's own object: destroyed %d times, on thread %d", r.Destroys, r.DestroyedOn)
	}
	if err := pinned.Close(); !errors.Is(err, ErrStale) {
		fail("Close of the main goroutine's object after the hand-back: %v, want ErrStale", err)
	}
	if destroyed != objects {
		fail("%d of %d objects destroyed once on the main thread %d at the hand-back", destroyed, objects, mainThreadID)
	}
	if err := main.Do(ctx, func() error { return nil }); !errors.Is(err, ErrShutDown) {
		fail("Do after the hand-back: %v", err)
	}
	if err := <-main.Go(func() error { return nil }); !errors.Is(err, ErrShutDown) {
		fail("Go after the hand-back: %v", err)
	}
	if err := main.Run(func() {}); !errors.Is(err, ErrShutDown) {
		fail("a second Run: %v", err)
	}
	if err := main.Close(); err != nil {
		fail("Close after the hand-back: %v", err)
	}
	if failed {
		return 1
	}
	fmt.Printf("handed back: %d objects destroyed on the main thread, %d queued calls failed with ErrShutDown\n", destroyed, shutDown)
	return 0
}
