package threadguard

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"
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
		if err := statusError(code); err != s.sentinel {
			t.Errorf("status %d (%s): sentinel %v, want %v", code, s.name, err, s.sentinel)
		}
	}
	next := int32(len(statuses) + 1)
	if name := statusName(next); name != "TG_ERR_UNKNOWN" {
		t.Errorf("status %d is %s: the library has a code without a sentinel", next, name)
	}
	err := statusError(next)
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
	err := o.Handle().Destroy()
	wantErr(t, "Destroy from another thread", err, ErrWrongThread)
	if !strings.Contains(err.Error(), strings.Repeat("n", 600)+`"`) {
		t.Errorf("message cut short: %q", err)
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
