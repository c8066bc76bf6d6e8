package tcl

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"

	"threadguard.dev/threadguard"
)

func init() { runtime.LockOSThread() } // the main goroutine stays on the main thread

// TestMain hands the main thread over, so that interpreters can live there
// too (TestInterpOnTheMainThread).
func TestMain(m *testing.M) {
	code := 0
	if err := threadguard.Main().Run(func() { code = m.Run() }); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: MainThread.Run:", err)
		code = 1
	}
	os.Exit(code)
}

// Interpreters on a shared owner, here the process's main thread: created,
// used and deleted there.
func TestInterpOnTheMainThread(t *testing.T) {
	ctx := context.Background()
	var interps []*Interp
	for range 3 {
		i, err := NewOn(ctx, threadguard.Main())
		if err != nil {
			t.Fatal(err)
		}
		interps = append(interps, i)
	}
	for k, i := range interps {
		if got := eval(t, i, fmt.Sprintf("set v %d", k)); got != fmt.Sprint(k) {
			t.Fatalf("interpreter %d: %q", k, got)
		}
	}
	for k, i := range interps {
		if got := eval(t, i, "set v"); got != fmt.Sprint(k) {
			t.Fatalf("interpreter %d sees %q: interpreters share state", k, got)
		}
		if err := i.Close(); err != nil {
			t.Fatal(err)
		}
		if d := i.Deletions(); d.Deletes != 1 || d.CreatedOn != syscall.Getpid() || d.DeletedOn != syscall.Getpid() {
			t.Fatalf("interpreter %d: %+v, want created and deleted once on the main thread %d", k, d, syscall.Getpid())
		}
	}
}
