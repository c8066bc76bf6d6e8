package threadguard

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"threadguard.dev/threadguard/internal/affine"
)

// The tests move affine objects only to count their destructor runs and
// see where they ran: a real affine object must never move (its state is in
// its creator's thread-local storage), and nothing here borrows one after a
// move.

func TestObjectDetachedFromOneThreadIsAdoptedByAnotherAndDestroyedOnceThere(t *testing.T) {
	ctx := context.Background()
	loader, render := newThread(t, "loader"), newThread(t, "render")
	o, serial := newAffine(t, loader)
	before := readStats(t)
	tok, err := o.Detach(ctx)
	if err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if got := readStats(t).Detached; got != before.Detached+1 {
		t.Fatalf("Stats.Detached = %d, want %d", got, before.Detached+1)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("Close of a detached Object: %v, want nil (nothing to destroy)", err)
	}
	err = loader.Do(ctx, func() error { return o.Handle().Destroy() })
	wantErr(t, "the old handle on its old owner", err, ErrStale)
	_, err = o.Detach(ctx)
	wantErr(t, "a second Detach", err, ErrStale)

	var adopted *Object
	if err := render.Do(ctx, func() (err error) { adopted, err = Adopt(tok); return err }); err != nil {
		t.Fatalf("Adopt on render: %v", err)
	}
	if adopted.Thread() != render || adopted.Handle().Owner != render.ID() {
		t.Fatalf("adopted object is bound to %v (owner %d), want %v", adopted.Thread(), adopted.Handle().Owner, render)
	}
	if _, err := Adopt(tok); err == nil {
		t.Fatal("a second Adopt succeeded")
	} else {
		wantErr(t, "a second Adopt", err, ErrStale)
	}
	if err := adopted.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r, _ := affine.Lookup(serial)
	if r.Destroys != 1 || r.DestroyedOn != render.ID() {
		t.Fatalf("destroyed %d times, last on %d; want once, on render (%d)", r.Destroys, r.DestroyedOn, render.ID())
	}
	if got := readStats(t).Detached; got != before.Detached {
		t.Fatalf("Stats.Detached = %d after adoption, want %d", got, before.Detached)
	}
}

func TestOfManyGoroutinesAdoptingOneTokenExactlyOneWins(t *testing.T) {
	ctx := context.Background()
	owner := newThread(t, "owner")
	const goroutines = 8
	for round := 0; round < 20; round++ {
		o, serial := newAffine(t, owner)
		tok, err := o.Detach(ctx)
		if err != nil {
			t.Fatalf("Detach: %v", err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make(chan error, goroutines)
		for i := 0; i < goroutines; i++ {
			wg.Add(1)
			go func(destroy bool) {
				defer wg.Done()
				<-start
				if destroy {
					results <- tok.Destroy()
					return
				}
				adopted, err := Adopt(tok)
				if err == nil {
					// Pinned to this goroutine: only it may close the object.
					err = adopted.Close()
				}
				results <- err
			}(i%3 == 0)
		}
		close(start)
		wg.Wait()
		close(results)
		wins := 0
		for err := range results {
			switch {
			case err == nil:
				wins++
			default:
				wantErr(t, "a losing adoption", err, ErrStale)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, wins)
		}
		if r, _ := affine.Lookup(serial); r.Destroys != 1 {
			t.Fatalf("round %d: destroyed %d times, want once", round, r.Destroys)
		}
	}
}

func TestTokenRefusalsLeaveTheTokenUsable(t *testing.T) {
	ctx := context.Background()
	owner := newThread(t, "owner")
	o, serial := newAffine(t, owner)
	_, err := Adopt(Token{})
	wantErr(t, "the zero Token", err, ErrNullHandle)
	tok, err := o.Detach(ctx)
	if err != nil {
		t.Fatalf("Detach: %v", err)
	}
	forged := tok
	forged.Check ^= 1
	_, err = Adopt(forged)
	wantErr(t, "a forged token", err, ErrStale)
	runtime.GC()
	if err := tok.Destroy(); err != nil {
		t.Fatalf("Token.Destroy: %v", err)
	}
	wantErr(t, "a destroyed token", tok.Destroy(), ErrStale)
	if r, _ := affine.Lookup(serial); r.Destroys != 1 {
		t.Fatalf("destroyed %d times, want once", r.Destroys)
	}
}
