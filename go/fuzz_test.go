package threadguard

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// FuzzHandle feeds arbitrary handle values and call sequences to the
// checked calls and compares every result with a model of the contract:
// which sentinel error (or success) each call must give, that each error
// matches exactly one sentinel, that a refused call changes nothing, and
// that every object is destroyed exactly once, on its owner.
//
// ops is read two bytes per call: the first picks the handle (the fuzzed
// one, a real one, a real one with its key xored with the fuzzed key, or the
// fuzzed key under the calling thread, a live foreign thread or an exited
// one), the second picks the call.
func FuzzHandle(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint32(affine.Tag), []byte{0, 0, 1, 0, 2, 1, 3, 2, 1, 0})
	f.Add(uint64(1), uint64(1), uint32(0), []byte{5, 0, 6, 0, 7, 2, 0, 3, 4, 4})
	f.Add(uint64(1<<63), uint64(0), uint32(7), []byte{1, 3, 1, 0, 2, 6, 9, 7, 1, 5, 2, 2, 2, 0})
	f.Add(uint64(0), uint64(42), uint32(affine.Tag), []byte{1, 6, 2, 7, 3, 3, 3, 0, 12, 4, 20, 1})
	f.Add(uint64(2), uint64(0xffffffff), uint32(affine.Tag+1), []byte{4, 0, 12, 2, 0, 4, 6, 3, 5, 3})
	f.Add(^uint64(0), uint64(1), uint32(affine.Tag), []byte{0, 0, 0, 2, 0, 3, 0, 4, 0, 6})
	f.Add(^uint64(1), uint64(0), uint32(affine.Tag), []byte{0, 1, 0, 2, 0, 3, 0, 4, 0, 7})
	f.Fuzz(func(t *testing.T, owner, key uint64, tag uint32, ops []byte) {
		other, exited := fuzzThreads(t)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := RunPending(); err != nil { // nothing left over from before
			t.Fatal(err)
		}
		m := newHandleModel(t, Handle{Owner: owner, Key: key}, Tag(tag), other, exited)
		for i := 0; i+1 < len(ops) && i < 64; i += 2 {
			m.step(ops[i], ops[i+1])
		}
		m.finish()
	})
}

var fuzzFixture struct {
	once          sync.Once
	other, exited uint64
	err           error
}

// fuzzThreads returns the ID of a live Thread that is never closed and of
// one that has exited.
func fuzzThreads(t *testing.T) (other, exited uint64) {
	fx := &fuzzFixture
	fx.once.Do(func() {
		live, err := NewThread("fuzz-live")
		if err != nil {
			fx.err = err
			return
		}
		gone, err := NewThread("fuzz-exited")
		if err != nil {
			fx.err = err
			return
		}
		fx.other, fx.exited = live.ID(), gone.ID()
		fx.err = gone.Close()
	})
	if fx.err != nil {
		t.Fatal(fx.err)
	}
	eventually(t, "the exited thread to be gone", func() bool {
		_, err := Handle{Owner: fx.exited, Key: 1}.OwnerThread()
		return errors.Is(err, ErrOwnerExited)
	})
	return fx.other, fx.exited
}

type objState int

const (
	live   objState = iota
	doomed          // destruction requested, not yet run: still in the table
	dead
)

type fuzzObject struct {
	o      *Object
	serial uint64
	state  objState
	value  int64 // successful add1 calls
}

type handleModel struct {
	t                 *testing.T
	me, other, exited uint64
	fuzz              Handle
	tag               Tag
	objs              []*fuzzObject
	destroyed         int // destructor runs the model expects in the current step
}

// errSomeOwner stands for "ErrWrongThread, ErrOwnerExited or ErrStale": the
// owner is an ID the model cannot place.
var errSomeOwner = errors.New("some foreign owner")

func newHandleModel(t *testing.T, fuzz Handle, tag Tag, other, exited uint64) *handleModel {
	m := &handleModel{t: t, me: CurrentThreadID(), other: other, exited: exited, fuzz: fuzz, tag: tag}
	var serials []uint64
	for i := range 3 {
		o, err := New(affine.Tag, affine.Destructor(), createAffine(&serials))
		if err != nil {
			t.Fatal(err)
		}
		m.objs = append(m.objs, &fuzzObject{o: o, serial: serials[i]})
	}
	return m
}

// target picks the handle a call uses.
func (m *handleModel) target(b byte) Handle {
	real := m.objs[int(b/8)%len(m.objs)].o.Handle()
	switch b % 8 {
	case 0:
		return m.fuzz
	case 1, 2, 3:
		return m.objs[b%8-1].o.Handle()
	case 4:
		return Handle{Owner: real.Owner, Key: real.Key ^ m.fuzz.Key}
	case 5:
		return Handle{Owner: m.other, Key: m.fuzz.Key}
	case 6:
		return Handle{Owner: m.exited, Key: m.fuzz.Key}
	default:
		return Handle{Owner: m.me, Key: m.fuzz.Key}
	}
}

// resolve says what the library must answer for h before any argument
// check: nil with the object for a live object of this thread, else the
// sentinel (or errSomeOwner).
func (m *handleModel) resolve(h Handle) (*fuzzObject, error) {
	switch {
	case h.IsNull():
		return nil, ErrNullHandle
	case h.Owner == m.me:
		for _, fo := range m.objs {
			if fo.state != dead && fo.o.Handle() == h {
				return fo, nil
			}
		}
		return nil, ErrStale
	case h.Owner == 0 || h.Owner >= 1<<62:
		// Never issued, or reserved for process-wide handles (runners),
		// of which these tests make none.
		return nil, ErrStale
	case h.Owner == m.other:
		return nil, ErrWrongThread
	case h.Owner == m.exited:
		return nil, ErrOwnerExited
	}
	return nil, errSomeOwner
}

// expectUse gives the result of a borrow (checkTag) or destroy of h while
// busy is borrowed (or nil).
func (m *handleModel) expectUse(h Handle, tag Tag, checkTag bool, busy *fuzzObject) (*fuzzObject, error) {
	fo, err := m.resolve(h)
	switch {
	case err != nil:
		return nil, err
	case checkTag && tag != affine.Tag:
		return nil, ErrWrongType
	case fo == busy:
		return nil, ErrBusy
	}
	return fo, nil
}

// kill records that fo's destructor runs now.
func (m *handleModel) kill(fo *fuzzObject) {
	if fo.state != dead {
		fo.state = dead
		m.destroyed++
	}
}

// runPending: the owner runs queued destruction after a successful
// outermost tg_with, tg_destroy or tg_register, and at RunPending. The model
// holds the library to exactly that: tg_owner_of and tg_destroy_later leave
// the queue alone.
func (m *handleModel) runPending() {
	for _, fo := range m.objs {
		if fo.state == doomed {
			m.kill(fo)
		}
	}
}

// call makes one call on h and checks it; busy is the object borrowed
// around it, or nil at the outermost level. It reports whether the library
// refused the call.
func (m *handleModel) call(action byte, h Handle, busy *fuzzObject) (refused bool) {
	t := m.t
	var got, want error
	var fo *fuzzObject
	switch action {
	case 0, 1:
		tag := Tag(affine.Tag)
		if action == 1 {
			tag = m.tag
		}
		got = h.With(tag, add1)
		if fo, want = m.expectUse(h, tag, true, busy); want == nil {
			fo.value++
		}
	case 2:
		got = h.Destroy()
		if fo, want = m.expectUse(h, 0, false, busy); want == nil {
			m.kill(fo)
		}
	case 3:
		fo, want = m.resolve(h)
		if want == errSomeOwner {
			return false // it might queue to a thread the model does not know
		}
		if h.Owner == m.other {
			want = nil // queued: only the owner can check the key
		}
		got = h.DestroyLater()
		if fo != nil && fo.state == live {
			fo.state = doomed
		}
	case 4:
		var id uint64
		id, got = h.OwnerThread()
		fo, want = m.resolve(h)
		if want == ErrWrongThread || (want == errSomeOwner && got == nil) {
			want = nil // any thread may ask who owns a handle
		}
		if got == nil && id != h.Owner {
			t.Fatalf("OwnerThread(%v) = %d", h, id)
		}
	default:
		got = RunPending()
		m.runPending()
	}
	m.compare(action, h, got, want)
	if got == nil && busy == nil && (action <= 2) {
		m.runPending()
	}
	return got != nil
}

// compare fails the test unless got is the expected result and, if an
// error, an *Error matching exactly one sentinel.
func (m *handleModel) compare(action byte, h Handle, got, want error) {
	t := m.t
	t.Helper()
	if got != nil {
		var e *Error
		n := 0
		for _, s := range allSentinels {
			if errors.Is(got, s) {
				n++
			}
		}
		if !errors.As(got, &e) || n != 1 || e.Detail == "" {
			t.Fatalf("call %d on %v: error %v matches %d sentinels", action, h, got, n)
		}
	}
	switch {
	case want == errSomeOwner:
		if !errors.Is(got, ErrWrongThread) && !errors.Is(got, ErrOwnerExited) && !errors.Is(got, ErrStale) {
			t.Fatalf("call %d on %v: got %v, want a foreign-owner error", action, h, got)
		}
	case want == nil && got != nil, want != nil && !errors.Is(got, want):
		t.Fatalf("call %d on %v: got %v, want %v", action, h, got, want)
	}
}

// step makes one call, or one call nested in a borrow of another object,
// and checks the counters around it.
func (m *handleModel) step(b0, b1 byte) {
	t := m.t
	h := m.target(b0)
	before := readStats(t)
	m.destroyed = 0
	refused := false
	if action := b1 % 8; action < 6 {
		refused = m.call(action, h, nil)
	} else {
		outer := m.objs[int(b0/8)%len(m.objs)]
		want := error(ErrStale)
		if outer.state != dead {
			want = nil
		}
		ran := false
		got := outer.o.Handle().With(affine.Tag, func(unsafe.Pointer) error {
			ran = true
			m.call(action-6, h, outer) // a borrow or a destroy, nested
			return nil
		})
		if ran != (want == nil) {
			t.Fatalf("outer borrow ran=%v, want error %v", ran, want)
		}
		m.compare(0, outer.o.Handle(), got, want)
		if got == nil {
			m.runPending()
		}
		refused = want != nil
	}
	after := readStats(t)
	if refused && (after.Live != before.Live || after.Destroyed != before.Destroyed || after.Created != before.Created) {
		t.Fatalf("a refused call changed the objects: %+v -> %+v", before, after)
	}
	if got := after.Destroyed - before.Destroyed; got != uint64(m.destroyed) {
		t.Fatalf("%d destructors ran, the model expects %d", got, m.destroyed)
	}
}

// finish checks the values, closes the objects and checks that each was
// destroyed exactly once, on this thread.
func (m *handleModel) finish() {
	t := m.t
	if err := RunPending(); err != nil {
		t.Fatal(err)
	}
	m.runPending()
	serials := make([]uint64, 0, len(m.objs))
	for _, fo := range m.objs {
		serials = append(serials, fo.serial)
		want := error(ErrStale)
		if fo.state != dead {
			want = nil
			var v int64
			fo.o.With(t.Context(), func(p unsafe.Pointer) error { v = affine.Value(p); return nil })
			if v != fo.value {
				t.Fatalf("object %d has value %d, the model counted %d accepted borrows", fo.serial, v, fo.value)
			}
		}
		if err := fo.o.Close(); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("Close of object %d: %v, want %v", fo.serial, err, want)
		}
	}
	if !destroyedOnceOn(t, m.me, serials) {
		t.Fatal("an object survived Close")
	}
}
