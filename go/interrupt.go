package threadguard

import "context"

// interruptKey is the context key of an interrupt hook.
type interruptKey struct{}

// WithInterrupt returns a context, derived from ctx, that carries an
// interrupt hook: when the context ends while work sent with it (Do, an
// Object's With or Call, on any Owner) has already started on the owner's
// thread, the waiting caller calls interrupt once, from its own goroutine,
// and goes on waiting for the work's result.
//
// Work that has started cannot be stopped from outside its thread, and the
// caller must not return before it finishes (its effects would be
// unknown). The hook is how a library that can be asked to stop from
// another thread is asked: Tcl_CancelEval, sqlite3_interrupt, a flag the
// work polls. It runs on the caller's goroutine, not on the owner's
// thread, so it must be safe to call from any thread; it may run after the
// work has finished, and must then do no harm. Work still queued when the
// context ends is taken out of the queue, as without a hook, and the hook
// does not run. Work run inline (sent from work already on the owner) is
// not interrupted: the caller is the thread running it.
func WithInterrupt(ctx context.Context, interrupt func()) context.Context {
	return context.WithValue(ctx, interruptKey{}, interrupt)
}

// interrupted runs ctx's interrupt hook, if it carries one. Several
// callers sharing one context each call it.
func interrupted(ctx context.Context) {
	if hook, ok := ctx.Value(interruptKey{}).(func()); ok && hook != nil {
		hook()
	}
}
