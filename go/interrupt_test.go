package threadguard

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// A context made by WithInterrupt that ends while its work runs calls the
// hook once, and the caller still gets the work's own result; work that
// never started is dropped without calling the hook.
func TestInterruptHookStopsStartedWork(t *testing.T) {
	th := newThread(t, "interruptible")
	r := newRunner(t, "interruptible", 4)
	errStopped := errors.New("stopped by the hook")
	for _, owner := range []Owner{th, r, Main()} {
		t.Run(owner.Name(), func(t *testing.T) {
			var hooks atomic.Int32
			stop := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			ctx = WithInterrupt(ctx, func() {
				if hooks.Add(1) == 1 {
					close(stop)
				}
			})
			started := make(chan struct{})
			res := make(chan error, 1)
			go func() {
				res <- owner.Do(ctx, func() error {
					close(started)
					<-stop
					return errStopped
				})
			}()
			<-started
			cancel()
			if err := receive(t, "the interrupted Do", res); !errors.Is(err, errStopped) {
				t.Fatalf("interrupted Do: %v, want the work's own error", err)
			}
			if n := hooks.Load(); n != 1 {
				t.Fatalf("the hook ran %d times, want 1", n)
			}

			// Queued work whose context ends is dropped; no hook.
			release := make(chan struct{})
			busy := owner.Go(func() error { <-release; return nil })
			var queuedHooks, ran atomic.Int32
			qctx, qcancel := context.WithCancel(context.Background())
			qctx = WithInterrupt(qctx, func() { queuedHooks.Add(1) })
			qres := make(chan error, 1)
			go func() { qres <- owner.Do(qctx, func() error { ran.Add(1); return nil }) }()
			eventually(t, "the call to wait in the queue", func() bool { return queuedOn(owner) == 1 })
			qcancel()
			if err := receive(t, "the cancelled Do", qres); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled queued Do: %v", err)
			}
			close(release)
			if err := receive(t, "the busy work", busy); err != nil {
				t.Fatal(err)
			}
			if err := owner.Do(context.Background(), func() error { return nil }); err != nil {
				t.Fatal(err)
			}
			if queuedHooks.Load() != 0 || ran.Load() != 0 {
				t.Fatalf("dropped work: hook ran %d times, work %d times; want 0 and 0", queuedHooks.Load(), ran.Load())
			}
		})
	}
}

// queuedOn returns the number of calls waiting in owner's queue.
func queuedOn(owner Owner) int {
	switch o := owner.(type) {
	case *Thread:
		return o.queued()
	case *MainThread:
		return o.t.queued()
	case *Runner:
		return int(liveJobs.Load()) - 1 // less the running one
	}
	return -1
}
