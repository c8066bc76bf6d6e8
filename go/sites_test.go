package threadguard

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"threadguard.dev/threadguard/internal/affine"
)

func TestRefusalsNameTheGoLineThatCreatedTheObject(t *testing.T) {
	if err := SetSites(true); err != nil {
		t.Fatalf("SetSites: %v", err)
	}
	defer SetSites(false)
	if !SitesEnabled() {
		t.Fatal("SitesEnabled() = false after SetSites(true)")
	}
	ctx := context.Background()
	loader := newThread(t, "loader")
	var serials []uint64
	_, file, line, _ := runtime.Caller(0)
	o, err := loader.New(ctx, affine.Tag, affine.Destructor(), createAffine(&serials))
	if err != nil {
		t.Fatalf("Thread.New: %v", err)
	}
	err = o.Handle().Destroy() // from the test goroutine: wrong thread
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrWrongThread) {
		t.Fatalf("Destroy from another thread: %v, want ErrWrongThread", err)
	}
	want := fmt.Sprintf("; registered at %s:%d", file, line+1)
	if !strings.Contains(e.Detail, want) {
		t.Fatalf("message %q does not name the registration site (want %q...)", e.Detail, want)
	}
	_, _, closeLine, _ := runtime.Caller(0)
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err = loader.Do(ctx, func() error { return o.Handle().Destroy() })
	if !errors.As(err, &e) || !errors.Is(err, ErrStale) {
		t.Fatalf("Destroy after Close: %v, want ErrStale", err)
	}
	wantThread := fmt.Sprintf("; destroyed at %s:%d on thread %d (\"loader\")", file, closeLine+1, loader.ID())
	if !strings.Contains(e.Detail, want) || !strings.HasSuffix(e.Detail, wantThread) {
		t.Fatalf("message %q, want the registration site and the end %q", e.Detail, wantThread)
	}
}

func TestWithSitesOffMessagesNameNoSite(t *testing.T) {
	if err := SetSites(false); err != nil {
		t.Fatalf("SetSites: %v", err)
	}
	loader := newThread(t, "loader")
	o, _ := newAffine(t, loader)
	defer o.Close()
	err := o.Handle().Destroy()
	var e *Error
	if !errors.As(err, &e) || strings.Contains(e.Detail, "registered at") {
		t.Fatalf("message %v names a site with the mode off", err)
	}
}
