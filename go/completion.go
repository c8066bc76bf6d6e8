package threadguard

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"math"
	"runtime/cgo"
	"strconv"
	"sync"
	"time"
)

// CompletionQueue collects the outcomes of work sent to runners with
// Runner.PostTo, for any goroutine to take with Wait (tg_cq_create). Room
// for each outcome is reserved when the work is posted, so an outcome is
// never dropped for lack of room: PostTo answers ErrLimit instead.
//
// One queue may collect from several runners, and several goroutines may
// wait on it; each outcome goes to one of them. Close the queue when done
// with it.
type CompletionQueue struct {
	h    Handle // the queue's tg_handle (owner TG_CQ_OWNER)
	once sync.Once
	err  error
}

// Completion is the outcome of work posted with Runner.PostTo.
type Completion struct {
	// Tag is the tag the work was posted with.
	Tag uint64
	// Err is the work's error: nil on success, an error wrapping ErrPanic
	// if it panicked, or one wrapping ErrShutDown if its runner stopped
	// before the work's turn (it did not run).
	Err error
}

// waitPoll bounds each blocking wait of CompletionQueue.Wait under a
// context that can be cancelled: a thread blocked in C cannot be woken by
// the context, so Wait looks at it at least this often.
const waitPoll = 10 * time.Millisecond

// NewCompletionQueue creates a completion queue with room for capacity
// outcomes, 1 to MaxQueueCapacity, counting both outcomes waiting to be
// taken and those of work posted and not yet finished. A capacity out of
// range gets an error wrapping ErrInvalidArgument.
func NewCompletionQueue(capacity int) (*CompletionQueue, error) {
	if capacity < 0 || uint64(capacity) > math.MaxUint32 {
		return nil, newError("NewCompletionQueue", ErrInvalidArgument,
			"capacity "+strconv.Itoa(capacity)+" is out of range (1 to "+strconv.Itoa(MaxQueueCapacity)+")")
	}
	var h C.tg_handle
	if err := callLocked("tg_cq_create", func() C.tg_status {
		return C.tgo_cq_create(C.uint32_t(capacity), &h)
	}); err != nil {
		return nil, err
	}
	return &CompletionQueue{h: Handle{Owner: uint64(h.owner), Key: uint64(h.key)}}, nil
}

// PostTo queues fn to run on the runner and returns at once; fn's outcome
// becomes a Completion with tag in q, to be taken with q.Wait. If PostTo
// returns nil, the outcome arrives exactly once: fn's error, or ErrShutDown
// if the runner stopped before fn's turn (fn then never runs). If it
// returns an error, nothing is queued: ErrLimit when the runner's queue or
// q is full, ErrShutDown once the runner is stopping or q is closed.
//
// Tags are the caller's: the queue neither checks nor interprets them.
func (r *Runner) PostTo(q *CompletionQueue, tag uint64, fn func() error) error {
	j := &job{r: r, kind: entryJob, fn: fn, res: make(chan error, 1), tag: tag}
	h := newJobHandle(j)
	err := callLocked("tg_runner_post_to_queue", func() C.tg_status {
		return C.tgo_runner_post_to_queue(r.h.c(), C.uintptr_t(h), q.h.c())
	})
	if err != nil {
		releaseJob(h)
	}
	return err
}

// Wait takes the oldest outcome in q, waiting for one if q is empty.
//
// It returns ctx.Err() if ctx is done first: exactly at ctx's deadline,
// and within about 10ms of its cancellation (the wait blocks an OS thread
// in C, which the context cannot wake, so Wait wakes up to look). After
// Close, and if q is closed while Wait waits, it returns an error wrapping
// ErrShutDown.
//
// Called from work running on a runner, Wait cannot receive an outcome
// that the same runner has yet to produce: the runner is busy waiting.
func (q *CompletionQueue) Wait(ctx context.Context) (Completion, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Completion{}, err
		}
		timeout, ok := timeoutMillis(ctx)
		if !ok {
			return Completion{}, context.DeadlineExceeded
		}
		if ctx.Done() != nil && (timeout < 0 || timeout > waitPoll.Milliseconds()) {
			timeout = waitPoll.Milliseconds()
		}
		var tag C.uint64_t
		var status C.tg_status
		err := callLocked("tg_cq_wait", func() C.tg_status {
			return C.tgo_cq_wait(q.h.c(), C.int64_t(timeout), &tag, &status)
		})
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			return Completion{}, err
		}
		h := cgo.Handle(tag)
		j := h.Value().(*job)
		releaseJob(h)
		c := Completion{Tag: j.tag}
		if status == C.TG_OK {
			c.Err = <-j.res // sent by the work before the entry was delivered
		} else {
			c.Err = j.failure(status)
		}
		return c, nil
	}
}

// timeoutMillis returns the time ctx has left as a C timeout:
// TG_TIMEOUT_INFINITE without a deadline, otherwise the time to the
// deadline rounded up to a millisecond, so that C never gives up before
// ctx. It reports false if the deadline has passed.
func timeoutMillis(ctx context.Context) (int64, bool) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return C.TG_TIMEOUT_INFINITE, true
	}
	left := time.Until(deadline)
	if left <= 0 {
		return 0, false
	}
	return int64((left + time.Millisecond - 1) / time.Millisecond), true
}

// Close destroys the queue (tg_cq_destroy). Goroutines waiting on it
// return ErrShutDown. Outcomes not yet taken, and those of work still
// running that would have come to it, are dropped; the work itself is not
// cancelled. Close returns the library's result; later calls return the
// same.
func (q *CompletionQueue) Close() error {
	q.once.Do(func() {
		q.err = callLocked("tg_cq_destroy", func() C.tg_status { return C.tg_cq_destroy(q.h.c()) })
	})
	return q.err
}
