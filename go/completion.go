package threadguard

import (
	"context"
	"slices"
	"strconv"
	"sync"
)

// CompletionQueue collects the outcomes of work sent to runners with
// Runner.PostTo, for any goroutine to take with Wait. Room for each outcome
// is reserved when the work is posted, so an outcome is never dropped for
// lack of room: PostTo answers ErrLimit instead.
//
// One queue may collect from several runners, and several goroutines may
// wait on it; each outcome goes to one of them. The queue lives in Go: the
// runners hand it the outcomes as they report them, and Wait waits as a
// goroutine blocked on a channel, not in C, so waiting goroutines cost no
// OS threads and a cancelled Wait returns at once. Close the queue when
// done with it.
type CompletionQueue struct {
	capacity int

	mu       sync.Mutex
	reserved int                // outcomes posted and not yet taken, items included
	items    []Completion       // outcomes waiting to be taken, oldest first
	waiters  []chan waitOutcome // Waits blocked for an outcome, oldest first
	closed   bool
}

// waitOutcome is what a blocked Wait receives: an outcome, or the queue's
// closing (ok false).
type waitOutcome struct {
	c  Completion
	ok bool
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

// NewCompletionQueue creates a completion queue with room for capacity
// outcomes, 1 to MaxQueueCapacity, counting both outcomes waiting to be
// taken and those of work posted and not yet finished. A capacity out of
// range gets an error wrapping ErrInvalidArgument.
func NewCompletionQueue(capacity int) (*CompletionQueue, error) {
	if capacity < 1 || capacity > MaxQueueCapacity {
		return nil, newError("NewCompletionQueue", ErrInvalidArgument,
			"capacity "+strconv.Itoa(capacity)+" is out of range (1 to "+strconv.Itoa(MaxQueueCapacity)+")")
	}
	return &CompletionQueue{capacity: capacity}, nil
}

// PostTo queues fn to run on the runner and returns at once; fn's outcome
// becomes a Completion with tag in q, to be taken with q.Wait. If PostTo
// returns nil, the outcome arrives exactly once: fn's error, or ErrShutDown
// if the runner stopped before fn's turn (fn then never runs). If it
// returns an error, nothing is queued: ErrShutDown once the runner is
// stopping or q is closed, ErrLimit when q or the runner's queue is full.
//
// Tags are the caller's: the queue neither checks nor interprets them.
func (r *Runner) PostTo(q *CompletionQueue, tag uint64, fn func() error) error {
	if r.stopping.Load() {
		return r.shutDownError("Runner.PostTo")
	}
	if err := q.reserve(); err != nil {
		return err
	}
	err := r.post(&job{r: r, kind: entryJob, fn: fn, q: q, tag: tag})
	if err != nil {
		q.unreserve()
	}
	return err
}

// Wait takes the oldest outcome in q, waiting for one if q is empty.
//
// It returns ctx.Err() as soon as ctx is done, if no outcome came first.
// After Close, and if q is closed while Wait waits, it returns an error
// wrapping ErrShutDown.
//
// Called from work running on a runner, Wait cannot receive an outcome
// that the same runner has yet to produce: the runner is busy waiting.
func (q *CompletionQueue) Wait(ctx context.Context) (Completion, error) {
	if err := ctx.Err(); err != nil {
		return Completion{}, err
	}
	q.mu.Lock()
	if len(q.items) > 0 {
		c := q.items[0]
		q.items[0] = Completion{}
		q.items = q.items[1:]
		q.reserved--
		q.mu.Unlock()
		return c, nil
	}
	if q.closed {
		q.mu.Unlock()
		return Completion{}, q.closedError("CompletionQueue.Wait")
	}
	w := make(chan waitOutcome, 1)
	q.waiters = append(q.waiters, w)
	q.mu.Unlock()
	select {
	case o := <-w:
		if !o.ok {
			return Completion{}, q.closedError("CompletionQueue.Wait")
		}
		return o.c, nil
	case <-ctx.Done():
		if !q.leave(w) {
			// Handed an outcome (or the closing) as ctx ended: put the
			// outcome back in front, for the next Wait.
			if o := <-w; o.ok {
				q.requeue(o.c)
			}
		}
		return Completion{}, ctx.Err()
	}
}

// Close closes the queue. Goroutines waiting on it return ErrShutDown, and
// so do later Waits and PostTos. Outcomes not yet taken, and those of work
// still running that would have come to it, are dropped; the work itself
// is not cancelled. Close returns nil, and is idempotent.
func (q *CompletionQueue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	q.items = nil
	for _, w := range q.waiters {
		w <- waitOutcome{}
	}
	q.waiters = nil
	return nil
}

// reserve takes room for one outcome.
func (q *CompletionQueue) reserve() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return q.closedError("Runner.PostTo")
	case q.reserved >= q.capacity:
		return newError("Runner.PostTo", ErrLimit,
			"the completion queue is full ("+strconv.Itoa(q.capacity)+" outcomes waiting or to come)")
	}
	q.reserved++
	return nil
}

// unreserve gives back room that reserve took, for work never posted.
func (q *CompletionQueue) unreserve() {
	q.mu.Lock()
	q.reserved--
	q.mu.Unlock()
}

// deliver adds an outcome (on the runner that produced it): to the oldest
// blocked Wait, or to the items. After Close it is dropped.
func (q *CompletionQueue) deliver(c Completion) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if len(q.waiters) > 0 {
		q.waiters[0] <- waitOutcome{c: c, ok: true} // never blocks: capacity 1, sent once
		q.waiters[0] = nil
		q.waiters = q.waiters[1:]
		q.reserved--
		return
	}
	q.items = append(q.items, c)
}

// requeue puts back an outcome that a cancelled Wait was handed, as the
// oldest.
func (q *CompletionQueue) requeue(c Completion) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.reserved++
	if len(q.waiters) > 0 {
		q.waiters[0] <- waitOutcome{c: c, ok: true}
		q.waiters[0] = nil
		q.waiters = q.waiters[1:]
		q.reserved--
		return
	}
	q.items = slices.Insert(q.items, 0, c)
}

// leave takes a blocked Wait's channel off the list; false if it was handed
// something already.
func (q *CompletionQueue) leave(w chan waitOutcome) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.waiters {
		if x == w {
			q.waiters = slices.Delete(q.waiters, i, i+1)
			return true
		}
	}
	return false
}

func (q *CompletionQueue) closedError(op string) error {
	return newError(op, ErrShutDown, "the completion queue is closed")
}
