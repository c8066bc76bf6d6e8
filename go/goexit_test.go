package threadguard

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// goexitCase names the case TestGoexitFromCEndsTheProgramLoudly runs in a
// child process (the test binary run again with this variable set).
const goexitCase = "THREADGUARD_TEST_GOEXIT_CASE"

// goexitCases are ways for Go code that C called to end its goroutine with
// runtime.Goexit, each run in a child process. Each ends with a line that
// a child which survived prints.
var goexitCases = map[string]func(t *testing.T){
	// t.Fatal inside With on the goroutine that owns the object.
	"pinned With, t.Fatal": func(t *testing.T) {
		o, err := New(affine.Tag, affine.Destructor(), affine.New)
		if err != nil {
			t.Error(err)
			return
		}
		o.With(context.Background(), func(unsafe.Pointer) error {
			t.Fatal("failing inside the borrow")
			return nil
		})
	},
	// runtime.Goexit inside With routed to a Thread.
	"Thread With, runtime.Goexit": func(t *testing.T) {
		th, err := NewThread("goexit")
		if err != nil {
			t.Error(err)
			return
		}
		o, _ := newAffine(t, th)
		o.With(context.Background(), func(unsafe.Pointer) error {
			runtime.Goexit()
			return nil
		})
	},
	// runtime.Goexit inside Handle.With, on the owner thread, from a
	// goroutine other than the test's.
	"Handle.With, runtime.Goexit": func(t *testing.T) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			_, owner, key, status := affine.RegisterHere()
			if status != 0 {
				t.Errorf("register: %d", status)
				return
			}
			Handle{Owner: owner, Key: key}.With(affine.Tag, func(unsafe.Pointer) error {
				runtime.Goexit()
				return nil
			})
		}()
		<-done
	},
	// runtime.Goexit in work on the main thread, which would end the main
	// goroutine without main returning.
	"MainThread work, runtime.Goexit": func(t *testing.T) {
		Main().Do(context.Background(), func() error {
			runtime.Goexit()
			return nil
		})
	},
	// runtime.Goexit in work on a runner's thread, which Go did not create.
	"Runner work, runtime.Goexit": func(t *testing.T) {
		r, err := StartRunner("goexit", 4)
		if err != nil {
			t.Error(err)
			return
		}
		r.Call(context.Background(), func() error {
			runtime.Goexit()
			return nil
		})
	},
}

// Go cannot stop a runtime.Goexit once it has begun, and one that leaves a
// callback from C would skip the C frames below it: a borrow would never
// end and its object would stay busy, never destroyed. So Goexit in Go code
// that C called (t.Fatal inside With, say) ends the program with a message
// that names Goexit and what it interrupted; nothing after it runs.
func TestGoexitFromCEndsTheProgramLoudly(t *testing.T) {
	if name := os.Getenv(goexitCase); name != "" {
		goexitCases[name](t)
		os.Stdout.WriteString("the program went on after Goexit\n")
		return
	}
	if testing.Short() {
		t.Skip("runs the test binary again for each case")
	}
	for name := range goexitCases {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestGoexitFromCEndsTheProgramLoudly$", "-test.count=1")
			cmd.Env = append(os.Environ(), goexitCase+"="+name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("the child ended with %v, want exit status 2; its output:\n%s", err, out)
			}
			text := string(out)
			for _, want := range []string{"threadguard: runtime.Goexit", "the program exits"} {
				if !strings.Contains(text, want) {
					t.Fatalf("the child's output lacks %q:\n%s", want, text)
				}
			}
			if strings.Contains(name, "With") && !strings.Contains(text, "the borrow of the object, which would never end") {
				t.Fatalf("the child's output does not say that the borrow would never end:\n%s", text)
			}
			if strings.Contains(text, "went on after Goexit") {
				t.Fatalf("the child went on after Goexit:\n%s", text)
			}
		})
	}
}

// Close of an object whose Thread is closing waits until the Thread's
// cleanup has destroyed it: when Close returns nil, the destructor has run.
func TestObjectCloseDuringItsThreadsCloseReturnsOnceDestroyed(t *testing.T) {
	th, err := NewThread("closing")
	if err != nil {
		t.Fatal(err)
	}
	o, serial := newAffine(t, th)
	running, release := make(chan struct{}), make(chan struct{})
	busy := th.Go(func() error { close(running); <-release; return nil })
	<-running
	closed := make(chan error, 1)
	go func() { closed <- th.Close() }()
	eventually(t, "the Thread's Close to begin", th.isClosing)
	objClosed := make(chan error, 1)
	go func() {
		err := o.Close()
		if r, _ := affine.Lookup(serial); err == nil && r.Destroys != 1 {
			err = errors.New("Close returned nil before the object was destroyed")
		}
		objClosed <- err
	}()
	close(release)
	if err := receive(t, "the object's Close", objClosed); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, "the busy work", busy); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, "the Thread's Close", closed); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// The same for a Runner that is stopping.
func TestObjectCloseDuringItsRunnersStopReturnsOnceDestroyed(t *testing.T) {
	r := newRunner(t, "stopping", 4)
	var serials []uint64
	o, err := r.New(context.Background(), affine.Tag, affine.Destructor(), createAffine(&serials))
	if err != nil {
		t.Fatal(err)
	}
	release := occupy(t, r)
	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop() }()
	untilShutDown(t, r)
	objClosed := make(chan error, 1)
	go func() {
		err := o.Close()
		if rec, _ := affine.Lookup(serials[0]); err == nil && rec.Destroys != 1 {
			err = errors.New("Close returned nil before the object was destroyed")
		}
		objClosed <- err
	}()
	release()
	if err := receive(t, "the object's Close", objClosed); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, "Stop", stopped); err != nil {
		t.Fatal(err)
	}
}

// Work that closes its own Thread and then closes an object of the Thread
// destroys it at once, on the Thread: the Thread's cleanup waits for the
// work, so Close cannot wait for that.
func TestObjectCloseOnItsClosingThreadDestroysAtOnce(t *testing.T) {
	th, err := NewThread("self-closing")
	if err != nil {
		t.Fatal(err)
	}
	o, serial := newAffine(t, th)
	var destroyed bool
	err = th.Do(context.Background(), func() error {
		if err := th.Close(); err != nil {
			return err
		}
		if err := o.Close(); err != nil {
			return err
		}
		r, _ := affine.Lookup(serial)
		destroyed = r.Destroys == 1
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !destroyed {
		t.Fatal("Close on the closing Thread returned nil before the object was destroyed")
	}
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
	if !destroyedOnceOn(t, th.ID(), []uint64{serial}) {
		t.Fatal("the object was not destroyed once")
	}
}
