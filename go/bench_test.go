package threadguard

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"threadguard.dev/threadguard/internal/affine"
)

// The benchmarks price one call on a thread-affine object seven ways, to be
// read side by side (they assert nothing about time):
//
//	CgoEmpty       an empty cgo call on a locked goroutine: the price of
//	               crossing into C and back
//	CgoUnchecked   the floor of PinnedCall: one cgo call with the same C
//	               arguments and result (a handle by value, a type tag, the
//	               borrow function, a Go-memory context; a status and a
//	               message), so cgo checks the same one pointer, in which
//	               the borrow function runs at once, unchecked
//	PinnedCall     Object.Call on the owner goroutine: checked, one cgo call
//	PinnedWith     Object.With on the goroutine that owns the object (a Go
//	               callback from C inside the borrow)
//	ThreadDo       Object.With from another goroutine, routed to a Thread
//	RunnerCall     Object.With from another goroutine, routed to a Runner
//	               (Runner.Call: a round trip to a thread Go did not create;
//	               RunnerCallCancellable: the same with a cancellable context)
//	LockedChannel  the hand-written alternative: a locked goroutine fed by a
//	               channel, with no checks
//
// CgoEmpty, CgoUnchecked and PinnedCall come one after the other, so that
// every round of go test -bench measures them within seconds of each other;
// CallFloor makes the same three calls interleaved, in blocks timed
// microseconds apart, and reports their ratios.
//
// RunnerPost prices the same call sent with Runner.Post, without waiting:
// the runner's throughput, done callback included.
//
// ThreadDoRoundTrip and RunnerCallRoundTrip price the hand-off alone: a
// function that does nothing, sent back to back by one goroutine with
// Thread.Do and Runner.Call. Besides the mean (ns/op) they report the
// median round trip (median-ns). ThreadIdleCPU reports what a Thread that
// has been idle for 1 ms costs: the process's CPU time over the next second,
// as a share of one CPU (idle-cpu-%).

func BenchmarkCgoEmpty(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := threadCPU(b)
	for b.Loop() {
		affine.Nop()
	}
	cpu.report()
}

// BenchmarkCgoUnchecked is PinnedCall without the library: the same C
// borrow function and context, reached through a cgo call of the same shape
// as Object.Call's, whose C side calls it at once.
func BenchmarkCgoUnchecked(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := affine.New()
	if err != nil {
		b.Fatal(err)
	}
	defer affine.Destroy(p)
	obj, add, one := uintptr(p), affine.AddBorrow(), new(int64)
	*one = 1
	cpu := threadCPU(b)
	for b.Loop() {
		if st := affine.CallUnchecked(obj, affine.Tag, add, unsafe.Pointer(one)); st != 0 {
			b.Fatal(st)
		}
	}
	cpu.report()
}

// BenchmarkPinnedCall is the checked call that stays in C: one cgo call, in
// which tg_with runs the C borrow function (no callback into Go). Its context
// is Go memory, as Object.Call's documentation suggests, which cgo's pointer
// check inspects on every call (GODEBUG cgocheck), here and in CgoUnchecked
// alike.
func BenchmarkPinnedCall(b *testing.B) {
	o, err := New(affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	add, one := affine.AddBorrow(), new(int64)
	*one = 1
	cpu := threadCPU(b)
	for b.Loop() {
		if err := o.Call(ctx, add, unsafe.Pointer(one)); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report()
}

// BenchmarkCallFloor prices the three calls above against each other
// within microseconds, where the separate benchmarks run a second apart: on
// a shared machine speed changes in spells of seconds, which move separate
// benchmarks by more than the difference between these calls. It makes
// the calls in blocks of callBlock, one block of each way in turn (the
// order alternating), timing each block, and reports the median time per
// call of each way (empty-ns, unchecked-ns, checked-ns) and the medians of
// the ratios of the blocks made one after the other (checked/unchecked,
// unchecked/empty): a block slowed by preemption moves a few ratios, not
// their median. The unchecked and the checked call are also made with a
// context in C memory, whose pointer cgo's check dismisses at once
// (unchecked-cmem-ns, checked-cmem-ns, checked/unchecked-cmem). An op is
// one call of each way.
func BenchmarkCallFloor(b *testing.B) {
	const callBlock = 256
	o, err := New(affine.Tag, affine.Destructor(), affine.New) // locks the goroutine to its thread
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	p, err := affine.New()
	if err != nil {
		b.Fatal(err)
	}
	defer affine.Destroy(p)
	ctx := context.Background()
	obj, add, one := uintptr(p), affine.AddBorrow(), new(int64)
	*one = 1
	cOne, free := affine.CInt64(1)
	defer free()
	unchecked := func(context unsafe.Pointer) func() {
		return func() {
			for range callBlock {
				if st := affine.CallUnchecked(obj, affine.Tag, add, context); st != 0 {
					b.Fatal(st)
				}
			}
		}
	}
	checked := func(context unsafe.Pointer) func() {
		return func() {
			for range callBlock {
				if err := o.Call(ctx, add, context); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	type way struct {
		unit  string
		block func()
		times []float64 // ns per call, by block
	}
	blocks := (b.N + callBlock - 1) / callBlock
	ways := []*way{
		{"empty-ns", func() {
			for range callBlock {
				affine.Nop()
			}
		}, nil},
		{"unchecked-ns", unchecked(unsafe.Pointer(one)), nil},
		{"checked-ns", checked(unsafe.Pointer(one)), nil},
		{"unchecked-cmem-ns", unchecked(cOne), nil},
		{"checked-cmem-ns", checked(cOne), nil},
	}
	for _, w := range ways {
		w.times = make([]float64, blocks)
	}
	b.ResetTimer()
	for i := range blocks {
		for k := range ways {
			w := ways[k]
			if i%2 == 1 {
				w = ways[len(ways)-1-k]
			}
			start := time.Now()
			w.block()
			w.times[i] = float64(time.Since(start).Nanoseconds()) / callBlock
		}
	}
	b.StopTimer()
	median := func(values []float64) float64 {
		values = slices.Clone(values)
		slices.Sort(values)
		return values[len(values)/2]
	}
	ratio := func(a, b *way) float64 {
		ratios := make([]float64, blocks)
		for i := range ratios {
			ratios[i] = a.times[i] / b.times[i]
		}
		return median(ratios)
	}
	for _, w := range ways {
		b.ReportMetric(median(w.times), w.unit)
	}
	b.ReportMetric(ratio(ways[2], ways[1]), "checked/unchecked")
	b.ReportMetric(ratio(ways[1], ways[0]), "unchecked/empty")
	b.ReportMetric(ratio(ways[4], ways[3]), "checked/unchecked-cmem")
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

func BenchmarkRunnerCall(b *testing.B) {
	r := newRunner(b, "bench", 1024)
	o := newRunnerAffine(b, r)
	ctx := context.Background()
	for b.Loop() {
		if err := o.With(ctx, add1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunnerCallCancellable is RunnerCall with a context that can be
// cancelled (Call waits in a select on the context too).
func BenchmarkRunnerCallCancellable(b *testing.B) {
	r := newRunner(b, "bench", 1024)
	o := newRunnerAffine(b, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for b.Loop() {
		if err := o.With(ctx, add1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunnerCallParallel(b *testing.B) {
	r := newRunner(b, "bench", 1024)
	o := newRunnerAffine(b, r)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := o.With(ctx, add1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRunnerPost posts b.N calls from one goroutine, retrying when the
// queue is full, and waits for every done: the time per op is the runner's
// throughput.
func BenchmarkRunnerPost(b *testing.B) {
	r := newRunner(b, "bench", 1024)
	o := newRunnerAffine(b, r)
	h := o.Handle()
	fn := func() error { return h.With(affine.Tag, add1) }
	var done, failed atomic.Int64
	count := func(err error) {
		if err != nil {
			failed.Add(1)
		}
		done.Add(1)
	}
	b.ResetTimer()
	for range b.N {
		for r.Post(fn, count) != nil {
			runtime.Gosched()
		}
	}
	for done.Load() < int64(b.N) {
		runtime.Gosched()
	}
	b.StopTimer()
	if failed.Load() != 0 {
		b.Fatalf("%d posted calls failed", failed.Load())
	}
}

// cpuClock measures the CPU time of the calling OS thread over a benchmark
// loop, for benchmarks locked to their thread (whose cgo calls run on it
// too): unlike ns/op, it leaves out the time other processes take from the
// thread.
type cpuClock struct {
	b     *testing.B
	start time.Duration
	ok    bool
}

func threadCPU(b *testing.B) cpuClock {
	start, ok := threadCPUTime()
	return cpuClock{b, start, ok}
}

// report adds the CPU time per iteration of the loop as cpu-ns/op.
func (c cpuClock) report() {
	end, ok := threadCPUTime()
	if c.ok && ok && c.b.N > 0 {
		c.b.ReportMetric(float64((end-c.start).Nanoseconds())/float64(c.b.N), "cpu-ns/op")
	}
}

// newRunnerAffine creates an affine object on r.
func newRunnerAffine(b *testing.B, r *Runner) *Object {
	o, err := r.New(context.Background(), affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { o.Close() })
	return o
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

func BenchmarkThreadDoRoundTrip(b *testing.B) {
	th := newThread(b, "bench")
	ctx := context.Background()
	nop := func() error { return nil }
	roundTrips(b, func() error { return th.Do(ctx, nop) })
}

func BenchmarkRunnerCallRoundTrip(b *testing.B) {
	r := newRunner(b, "bench", 1024)
	ctx := context.Background()
	nop := func() error { return nil }
	roundTrips(b, func() error { return r.Call(ctx, nop) })
}

// roundTrips runs call b.N times back to back, timing each, and reports
// the median as median-ns.
func roundTrips(b *testing.B, call func() error) {
	for range 1000 { // warm up: the first calls start the threads and spinners
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	took := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range took {
		start := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		took[i] = time.Since(start)
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "median-ns")
}

// BenchmarkThreadIdleCPU: each op gives a Thread one task, lets it idle
// 1 ms, then measures the process's CPU time (user and system, all
// threads) over one idle second.
func BenchmarkThreadIdleCPU(b *testing.B) {
	th := newThread(b, "idle")
	var busy time.Duration
	for range b.N {
		if err := th.Do(context.Background(), func() error { return nil }); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		before := cpuTime(b)
		time.Sleep(time.Second)
		busy += cpuTime(b) - before
	}
	b.ReportMetric(100*busy.Seconds()/float64(b.N), "idle-cpu-%")
}

// cpuTime returns the CPU time the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
