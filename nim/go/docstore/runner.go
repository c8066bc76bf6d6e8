package docstore

import (
	"context"

	"threadguard.dev/threadguard"
)

// NewOnRunner creates a store owned by r: docstore_new runs on the runner's
// thread, and the store's methods send their calls there with Runner.Call
// (ctx applies as there). Work and done functions given to r.Post also run
// there, and may use the store's Handle methods directly.
//
// Stopping r destroys the stores it still owns, on its thread.
func NewOnRunner(ctx context.Context, r *threadguard.Runner) (*Store, error) {
	return open(ctx, runnerOwner{r})
}

// runnerOwner binds stores to a threadguard.Runner.
type runnerOwner struct{ r *threadguard.Runner }

func (o runnerOwner) do(ctx context.Context, fn func() error) error { return o.r.Call(ctx, fn) }
func (o runnerOwner) id() uint64                                    { return o.r.ThreadID() }

// pending does nothing: a runner runs destroy requests as they arrive.
func (o runnerOwner) pending() {}
