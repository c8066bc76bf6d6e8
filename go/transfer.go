package threadguard

// #include "shim.h"
import "C"

import (
	"context"
	"fmt"
	"runtime"
)

// Token is a one-time token for an object detached from its owner
// (tg_token): Adopt it once, on the goroutine, Thread or Runner that is to
// own the object next, or Destroy it, from any goroutine. Of any number of
// adoptions and destructions of one token, exactly one succeeds; the others
// get ErrStale. A Token is a plain value; the zero Token is the null token.
type Token struct {
	ID    uint64 // the token's number: never reused
	Check uint64 // proof that the library issued it; opaque
	Tag   Tag    // the object's type tag, for the adopted Object
}

// String formats t as the library's messages do.
func (t Token) String() string {
	return fmt.Sprintf("{token=%d, check=0x%016x}", t.ID, t.Check)
}

func (t Token) c() C.tg_token {
	return C.tg_token{id: C.uint64_t(t.ID), check: C.uint64_t(t.Check)}
}

// Detach takes the object from its owner (on the owner thread, routed as
// Close is) and returns a one-time token for it. The object must be safe to
// use and destroy on another thread: detaching is that promise. Afterwards
// the Object counts as closed (Close returns nil and destroys nothing, and
// its cleanup is cancelled; an object pinned to its goroutine releases that
// goroutine's lock), and its handle answers ErrStale on its old owner. The
// detached object belongs to no thread: no thread's exit, Thread Close or
// Runner Stop destroys it. Adopt or Destroy the token, or it is never
// destroyed.
//
// Errors are the library's: ErrBusy from inside the object's own With,
// ErrStale if it is already gone (a destroy-later request queued before the
// detach destroys it first), ErrWrongThread from a goroutine that does not
// own a pinned object; the Object is unchanged then.
func (o *Object) Detach(ctx context.Context) (Token, error) {
	defer runtime.KeepAlive(o)
	if o.closed.Load() {
		return Token{}, newError("Object.Detach", ErrStale, "object "+o.h.String()+" is closed or detached")
	}
	var tok Token
	detach := func() error {
		var ct C.tg_token
		if err := check("tg_detach", C.tg_detach(o.h.c(), C.uint32_t(o.tag), &ct)); err != nil {
			return err
		}
		tok = Token{ID: uint64(ct.id), Check: uint64(ct.check), Tag: o.tag}
		if o.closed.CompareAndSwap(false, true) {
			o.cleanup.Stop()
			if t, ok := o.owner.(*Thread); ok {
				t.release()
			}
			if o.owner == nil {
				runtime.UnlockOSThread() // the lock New took for the object
			}
		}
		return nil
	}
	do := o.route()
	if do == nil {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pins.settle()
		return tok, detach()
	}
	return tok, do(ctx, detach)
}

// Adopt makes the calling thread the owner of the object t names, and
// returns it as an Object, bound as New binds: to the Thread or Runner whose
// work calls Adopt (call it inside Thread.Do or Runner.Call to move the
// object there), or else to the calling goroutine, which stays locked to its
// OS thread until the object is closed.
//
// Errors: ErrStale for a token already adopted or destroyed, or never
// issued; ErrNullHandle for the zero Token; ErrShutDown during the owner's
// Close. The token is unchanged on error.
func Adopt(t Token) (*Object, error) {
	return bind(t.Tag, func() (C.tg_handle, error) {
		var ch C.tg_handle
		err := check("tg_adopt", C.tg_adopt(t.c(), &ch))
		return ch, err
	})
}

// Destroy destroys the detached object t names, on the calling thread (a
// detached object belongs to no thread), running its destructor once.
// Errors: ErrStale for a token already adopted or destroyed, or never
// issued; ErrNullHandle for the zero Token.
func (t Token) Destroy() error {
	return callLocked("tg_token_destroy", func() C.tg_status { return C.tg_token_destroy(t.c()) })
}
