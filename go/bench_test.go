package threadguard

import (
	"context"
	"runtime"
	"testing"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// The benchmarks price one call on a thread-affine object five ways, to be
// read side by side (they assert nothing about time):
//
//	RawCgo         the C call itself, unchecked, on a locked goroutine
//	PinnedCall     Object.Call on the owner goroutine: checked, one cgo call
//	PinnedWith     Object.With on the goroutine that owns the object (a Go
//	               callback from C inside the borrow)
//	ThreadDo       Object.With from another goroutine, routed to a Thread
//	LockedChannel  the hand-written alternative: a locked goroutine fed by a
//	               channel, with no checks

func BenchmarkRawCgo(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := affine.New()
	if err != nil {
		b.Fatal(err)
	}
	defer affine.Destroy(p)
	for b.Loop() {
		affine.Add(p, 1)
	}
}

func BenchmarkPinnedWith(b *testing.B) {
	o, err := New(affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	for b.Loop() {
		if err := o.With(ctx, add1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPinnedCall is the checked call that stays in C: one cgo call into
// tg_with, which runs the C borrow function (no callback into Go).
func BenchmarkPinnedCall(b *testing.B) {
	o, err := New(affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	add, one := affine.AddBorrow(), new(int64)
	*one = 1
	for b.Loop() {
		if err := o.Call(ctx, add, unsafe.Pointer(one)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkThreadDo(b *testing.B) {
	th := newThread(b, "bench")
	o, _ := newAffine(b, th)
	defer o.Close()
	ctx := context.Background()
	for b.Loop() {
		if err := o.With(ctx, add1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkThreadDoParallel(b *testing.B) {
	th := newThread(b, "bench")
	o, _ := newAffine(b, th)
	defer o.Close()
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := o.With(ctx, add1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// lockedWorker is the pattern many programs write by hand: a goroutine
// locked to its thread, running closures it receives on a channel.
type lockedWorker struct {
	work chan func()
	done chan struct{}
}

func startLockedWorker() *lockedWorker {
	w := &lockedWorker{work: make(chan func()), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for fn := range w.work {
			fn()
			w.done <- struct{}{}
		}
	}()
	return w
}

func (w *lockedWorker) do(fn func()) {
	w.work <- fn
	<-w.done
}

func BenchmarkLockedChannel(b *testing.B) {
	w := startLockedWorker()
	defer close(w.work)
	var p unsafe.Pointer
	w.do(func() { p, _ = affine.New() })
	defer w.do(func() { affine.Destroy(p) })
	add := func() { affine.Add(p, 1) }
	for b.Loop() {
		w.do(add)
	}
}
