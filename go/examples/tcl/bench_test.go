package tcl

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"threadguard.dev/threadguard"
)

// One goroutine evaluating on an interpreter on its own Thread.
func BenchmarkEval(b *testing.B) {
	i := newInterp(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := i.Eval(ctx, "expr {1 + 1}"); err != nil {
			b.Fatal(err)
		}
	}
}

// Every P's goroutines evaluating on one interpreter.
func BenchmarkEvalParallel(b *testing.B) {
	i := newInterp(b)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := i.Eval(ctx, "expr {1 + 1}"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// The same on the main thread.
func BenchmarkEvalMainThread(b *testing.B) {
	i, err := NewOn(context.Background(), threadguard.Main())
	if err != nil {
		b.Fatal(err)
	}
	defer i.Close()
	ctx := context.Background()
	for b.Loop() {
		if _, err := i.Eval(ctx, "expr {1 + 1}"); err != nil {
			b.Fatal(err)
		}
	}
}

// A whole lifetime per op: a Thread, an interpreter, one script, Close; the
// Thread finalizes Tcl's per-thread state as it exits. Reports the growth
// of the resident set over the run.
func BenchmarkInterpLifetime(b *testing.B) {
	b.Run("finalized", func(b *testing.B) { lifetimes(b, New) })
	// For comparison: a plain Thread that does not call Tcl_FinalizeThread.
	b.Run("unfinalized", func(b *testing.B) {
		lifetimes(b, func(ctx context.Context) (*Interp, error) {
			th, err := threadguard.NewThread("tcl", threadguard.EndWithObjects())
			if err != nil {
				return nil, err
			}
			return NewOn(ctx, th)
		})
	})
}

func lifetimes(b *testing.B, newInterp func(context.Context) (*Interp, error)) {
	ctx := context.Background()
	before := rss()
	for b.Loop() {
		i, err := newInterp(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := i.Eval(ctx, "set x 1"); err != nil {
			b.Fatal(err)
		}
		if err := i.Close(); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	b.ReportMetric(float64(rss()-before)/(1<<20), "MiB-rss-growth")
}

// rss returns the resident set size in bytes (Linux).
func rss() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
