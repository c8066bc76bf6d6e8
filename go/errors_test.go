package threadguard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// statuses lists every status code of the library with its sentinel.
var statuses = []struct {
	name     string
	sentinel error
}{
	{"TG_ERR_NULL_HANDLE", ErrNullHandle},
	{"TG_ERR_WRONG_THREAD", ErrWrongThread},
	{"TG_ERR_OWNER_EXITED", ErrOwnerExited},
	{"TG_ERR_STALE", ErrStale},
	{"TG_ERR_WRONG_TYPE", ErrWrongType},
	{"TG_ERR_BUSY", ErrBusy},
	{"TG_ERR_NULL_POINTER", ErrNullPointer},
	{"TG_ERR_INVALID_ARGUMENT", ErrInvalidArgument},
	{"TG_ERR_PANIC", ErrPanic},
	{"TG_ERR_SHUT_DOWN", ErrShutDown},
	{"TG_ERR_LIMIT", ErrLimit},
	{"TG_ERR_TIMEOUT", ErrTimeout},
}

// allSentinels lists the sentinels in status-code order.
var allSentinels = func() []error {
	var all []error
	for _, s := range statuses {
		all = append(all, s.sentinel)
	}
	return all
}()

func TestEveryStatusCodeHasItsOwnSentinel(t *testing.T) {
	for i, s := range statuses {
		code := int32(i + 1)
		if name := statusName(code); name != s.name {
			t.Errorf("status %d is %s in the library, want %s", code, name, s.name)
		}
		if err := StatusError(code); err != s.sentinel {
			t.Errorf("status %d (%s): sentinel %v, want %v", code, s.name, err, s.sentinel)
		}
	}
	next := int32(len(statuses) + 1)
	if name := statusName(next); name != "TG_ERR_UNKNOWN" {
		t.Errorf("status %d is %s: the library has a code without a sentinel", next, name)
	}
	if err := StatusError(0); err != nil {
		t.Errorf("TG_OK gives %v, want nil", err)
	}
	err := StatusError(next)
	for _, s := range allSentinels {
		if errors.Is(err, s) {
			t.Errorf("unknown status %d matches %v", next, s)
		}
	}
}

func TestErrorCarriesTheLibraryMessageAndMatchesOneSentinel(t *testing.T) {
	th := newThread(t, "owner-of-x")
	o, _ := newAffine(t, th)
	defer o.Close()
	// The test goroutine is not the owner: the library refuses and says why.
	err := o.Handle().With(1, add1)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *Error", err, err)
	}
	if e.Op != "tg_with" || e.Err != ErrWrongThread {
		t.Errorf("Op %q Err %v, want tg_with and ErrWrongThread", e.Op, e.Err)
	}
	if want := fmt.Sprintf("thread %d (%q", th.ID(), "owner-of-x"); !strings.Contains(e.Detail, want) {
		t.Errorf("message %q does not name the owner %s...)", e.Detail, want)
	}
	if !strings.HasPrefix(err.Error(), "threadguard: wrong thread: ") {
		t.Errorf("text %q", err)
	}
	matches := 0
	for _, s := range allSentinels {
		if errors.Is(err, s) {
			matches++
		}
	}
	if matches != 1 {
		t.Errorf("error matches %d sentinels, want 1", matches)
	}
}

func TestLongLastErrorMessagesAreReadWhole(t *testing.T) {
	th := newThread(t, strings.Repeat("n", 600))
	o, _ := newAffine(t, th)
	defer o.Close()
	n := new(int64)
	for what, err := range map[string]error{
		"Destroy from another thread": o.Handle().Destroy(),
		"Call from another thread":    o.Handle().Call(affine.Tag, affine.AddBorrow(), unsafe.Pointer(n)),
	} {
		wantErr(t, what, err, ErrWrongThread)
		if !strings.Contains(err.Error(), strings.Repeat("n", 600)+`"`) {
			t.Errorf("%s: message cut short: %q", what, err)
		}
	}
}

func TestNilBorrowFunctionIsRefusedByTheLibrary(t *testing.T) {
	o, err := New(1, nil, func() (unsafe.Pointer, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	wantErr(t, "With(nil) on a live object", o.Handle().With(1, nil), ErrNullPointer)
	wantErr(t, "With(nil) on the null handle", Handle{}.With(1, nil), ErrNullHandle)
}

// A refused Call reports like any other call: the library's message for the
// failing call, read on the thread that made it, though Call does not lock
// the goroutine to its thread.
func TestRefusedCallCarriesTheLibraryMessage(t *testing.T) {
	o, err := New(affine.Tag, affine.Destructor(), affine.New) // pinned to this goroutine
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	add, one := affine.AddBorrow(), new(int64)
	*one = 1
	value := func() int64 {
		t.Helper()
		var v int64
		if err := o.With(ctx, func(p unsafe.Pointer) error { v = affine.Value(p); return nil }); err != nil {
			t.Fatal(err)
		}
		return v
	}

	err = o.Handle().Call(affine.Tag+1, add, unsafe.Pointer(one))
	e := wantDetail(t, "Call with the wrong tag", err, ErrWrongType)
	if want := fmt.Sprintf("type tag %d, expected", affine.Tag); !strings.Contains(e.Detail, want) {
		t.Errorf("message %q does not name the object's type (%s...)", e.Detail, want)
	}

	misuse := affine.ReadStats().Misuse
	done := make(chan error)
	go func() { done <- o.Call(ctx, add, unsafe.Pointer(one)) }()
	err = receive(t, "Call from another goroutine", done)
	e = wantDetail(t, "Call from another goroutine", err, ErrWrongThread)
	if want := fmt.Sprintf("owned by thread %d", o.Handle().Owner); !strings.Contains(e.Detail, want) {
		t.Errorf("message %q does not name the owner (%s)", e.Detail, want)
	}
	if got := affine.ReadStats().Misuse; got != misuse {
		t.Errorf("a refused Call reached the C library: misuse %d -> %d", misuse, got)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := o.Call(cancelled, add, unsafe.Pointer(one)); err != context.Canceled {
		t.Errorf("Call with a cancelled context: %v, want context.Canceled", err)
	}
	if v := value(); v != 0 {
		t.Errorf("value %d after refused calls only, want 0", v)
	}
	if err := o.Call(ctx, add, unsafe.Pointer(one)); err != nil {
		t.Fatal(err)
	}
	if v := value(); v != 1 {
		t.Errorf("value %d after one Call, want 1", v)
	}
}

// wantDetail fails unless err is an *Error from tg_with that wraps want and
// has a detail message.
func wantDetail(t *testing.T, what string, err, want error) *Error {
	t.Helper()
	wantErr(t, what, err, want)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: got %T %v, want *Error", what, err, err)
	}
	if e.Op != "tg_with" || e.Detail == "" {
		t.Fatalf("%s: Op %q, detail %q; want tg_with and the library's message", what, e.Op, e.Detail)
	}
	return e
}
