package threadguard_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"threadguard.dev/threadguard"
	"threadguard.dev/threadguard/internal/affine"
)

// A thread-affine C object (its state lives in the creating thread's
// thread-local storage) used from many goroutines through a Thread.
func Example() {
	ctx := context.Background()
	gl, err := threadguard.NewThread("gl-main")
	if err != nil {
		panic(err)
	}
	defer gl.Close()

	// Created and registered on gl's OS thread, which now owns it.
	counter, err := gl.New(ctx, affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		panic(err)
	}
	defer counter.Close()

	// Any goroutine may call it: the call runs on gl.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counter.With(ctx, func(p unsafe.Pointer) error {
				affine.Add(p, 1)
				return nil
			})
		}()
	}
	wg.Wait()
	counter.With(ctx, func(p unsafe.Pointer) error {
		fmt.Println("value:", affine.Value(p))
		return nil
	})

	// The raw handle used from this goroutine is refused, not obeyed.
	err = counter.Handle().With(affine.Tag, func(p unsafe.Pointer) error {
		affine.Add(p, 1000)
		return nil
	})
	fmt.Println("wrong thread:", errors.Is(err, threadguard.ErrWrongThread))
	// Output:
	// value: 8
	// wrong thread: true
}

func ExampleThread_Do() {
	th, err := threadguard.NewThread("worker")
	if err != nil {
		panic(err)
	}
	defer th.Close()
	var inside uint64
	err = th.Do(context.Background(), func() error {
		inside = threadguard.CurrentThreadID()
		return nil
	})
	fmt.Println(err, inside == th.ID())

	err = th.Do(context.Background(), func() error { panic("oops") })
	fmt.Println(errors.Is(err, threadguard.ErrPanic))
	// Output:
	// <nil> true
	// true
}

func ExampleThread_Go() {
	th, err := threadguard.NewThread("worker")
	if err != nil {
		panic(err)
	}
	done := th.Go(func() error { return nil })
	fmt.Println(<-done)
	th.Close()
	fmt.Println(errors.Is(<-th.Go(func() error { return nil }), threadguard.ErrShutDown))
	// Output:
	// <nil>
	// true
}

// An object created on an ordinary goroutine keeps that goroutine on its OS
// thread until Close; other goroutines are refused.
func ExampleNew() {
	ctx := context.Background()
	obj, err := threadguard.New(affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		panic(err)
	}
	fmt.Println(obj.With(ctx, func(p unsafe.Pointer) error {
		affine.Add(p, 1)
		return nil
	}))
	done := make(chan error)
	go func() {
		done <- obj.With(ctx, func(unsafe.Pointer) error { return nil })
	}()
	fmt.Println(errors.Is(<-done, threadguard.ErrWrongThread))
	fmt.Println(obj.Close())
	// Output:
	// <nil>
	// true
	// <nil>
}

func ExampleError() {
	err := threadguard.Handle{}.Destroy()
	var e *threadguard.Error
	if errors.As(err, &e) {
		fmt.Println(e.Op, errors.Is(err, threadguard.ErrNullHandle))
	}
	// Output:
	// tg_destroy true
}

// A package that calls the C library through its own cgo code turns the
// status codes it gets into this package's sentinels.
func ExampleStatusError() {
	const tgErrWrongThread = 2 // TG_ERR_WRONG_THREAD, as a cgo caller gets it
	err := threadguard.StatusError(tgErrWrongThread)
	fmt.Println(errors.Is(err, threadguard.ErrWrongThread), threadguard.StatusError(0))
	// Output:
	// true <nil>
}

// C code calls Go on a thread that Go did not create: here a pthread that
// registers an object and borrows it with the Callback as its tg_borrow_fn.
func ExampleCallback() {
	seen := make(chan int64, 1)
	cb := threadguard.NewCallback(func(obj unsafe.Pointer) {
		seen <- affine.Add(obj, 42)
	})
	defer cb.Close()
	res, err := affine.BorrowOnNewThread(cb.Func(), cb.Context())
	if err != nil {
		panic(err)
	}
	fmt.Println(<-seen, res.WithStatus)
	// Output:
	// 42 0
}

// A thread-affine C object owned by a Runner: a thread the library starts,
// which runs Go functions sent from any goroutine.
func ExampleRunner() {
	ctx := context.Background()
	model, err := threadguard.StartRunner("model", 64)
	if err != nil {
		panic(err)
	}
	defer model.Stop() // destroys what the runner still owns, on the runner

	// Created and registered on the runner's thread, which now owns it.
	counter, err := model.New(ctx, affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		panic(err)
	}

	// Any goroutine may call it: the call runs on the runner.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counter.With(ctx, func(p unsafe.Pointer) error {
				affine.Add(p, 1)
				return nil
			})
		}()
	}
	wg.Wait()

	// Call runs any function there and waits for it.
	err = model.Call(ctx, func() error {
		fmt.Println("on the runner:", threadguard.CurrentThreadID() == model.ThreadID())
		return counter.With(ctx, func(p unsafe.Pointer) error {
			fmt.Println("value:", affine.Value(p))
			return nil
		})
	})
	fmt.Println("call:", err)

	// Post returns at once; done receives the outcome, on the runner.
	done := make(chan error, 1)
	if err := model.Post(func() error { panic("oops") }, func(err error) { done <- err }); err != nil {
		panic(err)
	}
	fmt.Println("panic:", errors.Is(<-done, threadguard.ErrPanic))
	// Output:
	// on the runner: true
	// value: 8
	// call: <nil>
	// panic: true
}

// Outcomes of posted work collected in a completion queue, in the order the
// runner finished them.
func ExampleCompletionQueue() {
	model, err := threadguard.StartRunner("model", 64)
	if err != nil {
		panic(err)
	}
	defer model.Stop()
	results, err := threadguard.NewCompletionQueue(16)
	if err != nil {
		panic(err)
	}
	defer results.Close()

	for tag := range uint64(3) {
		err := model.PostTo(results, tag, func() error {
			if tag == 1 {
				return errors.New("no luck")
			}
			return nil
		})
		if err != nil {
			panic(err)
		}
	}
	for range 3 {
		c, err := results.Wait(context.Background())
		fmt.Println(c.Tag, c.Err, err)
	}
	// Output:
	// 0 <nil> <nil>
	// 1 no luck <nil>
	// 2 <nil> <nil>
}

// The process's main thread as an owner. A program hands its main goroutine
// over from main, keeping it on the main thread from init:
//
//	func init() { runtime.LockOSThread() }
//
//	func main() {
//		if err := threadguard.Main().Run(run); err != nil {
//			log.Fatal(err)
//		}
//	}
//
// run then works on another goroutine, and any goroutine sends work to the
// main thread. (This package's TestMain hands the main thread over the same
// way, so the example runs while it is handed over.)
func ExampleMainThread() {
	ctx := context.Background()
	main := threadguard.Main()

	// Created on the main thread, which owns it; calls route there.
	window, err := main.New(ctx, affine.Tag, affine.Destructor(), affine.New)
	if err != nil {
		panic(err)
	}
	defer window.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			window.With(ctx, func(p unsafe.Pointer) error {
				affine.Add(p, 1)
				return nil
			})
		}()
	}
	wg.Wait()
	err = main.Do(ctx, func() error {
		fmt.Println("on the main thread:", threadguard.CurrentThreadID() == main.ID())
		// Work sent from work already on the main thread runs inline.
		return window.With(ctx, func(p unsafe.Pointer) error {
			fmt.Println("value:", affine.Value(p))
			return nil
		})
	})
	fmt.Println("do:", err)
	// Output:
	// on the main thread: true
	// value: 4
	// do: <nil>
}

// Code that only creates objects and sends them work can take any owner:
// a Thread, a Runner or the main thread.
func ExampleOwner() {
	ctx := context.Background()
	th, err := threadguard.NewThread("worker")
	if err != nil {
		panic(err)
	}
	defer th.Close()
	r, err := threadguard.StartRunner("model", 16)
	if err != nil {
		panic(err)
	}
	defer r.Close()

	count := func(owner threadguard.Owner) (int64, error) {
		c, err := owner.New(ctx, affine.Tag, affine.Destructor(), affine.New)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		var v int64
		err = c.With(ctx, func(p unsafe.Pointer) error {
			v = affine.Add(p, 3)
			return nil
		})
		return v, err
	}
	for _, owner := range []threadguard.Owner{th, r, threadguard.Main()} {
		v, err := count(owner)
		fmt.Println(owner.Name(), v, err)
	}
	// Output:
	// worker 3 <nil>
	// model 3 <nil>
	// main 3 <nil>
}

// A typed object with a Go destructor, a result computed on its owner, and
// a Thread that ends with its last object, running per-thread finalization
// on its way out.
func ExampleNewRef() {
	ctx := context.Background()
	type counter struct{} // stands for a C type, such as C.Tcl_Interp
	exited := make(chan struct{})
	th, err := threadguard.NewThread("per-object",
		threadguard.EndWithObjects(),
		threadguard.OnExit(func() error { close(exited); return nil })) // e.g. Tcl_FinalizeThread
	if err != nil {
		panic(err)
	}
	c, err := threadguard.NewRef(ctx, th, threadguard.TagOf("example.com/counter"),
		func() (*counter, error) {
			p, err := affine.New()
			return (*counter)(p), err
		},
		func(c *counter) { affine.Destroy(unsafe.Pointer(c)) }) // typed: no C shim
	if err != nil {
		panic(err)
	}
	v, err := threadguard.Compute(ctx, c, func(c *counter) (int64, error) {
		return affine.Add(unsafe.Pointer(c), 5), nil
	})
	fmt.Println("value:", v, err)
	fmt.Println("close:", c.Close()) // the last object: th ends
	<-exited
	fmt.Println("thread:", errors.Is(th.Do(ctx, func() error { return nil }), threadguard.ErrShutDown))
	// Output:
	// value: 5 <nil>
	// close: <nil>
	// thread: true
}

// A context whose end asks work that has already started to stop.
func ExampleWithInterrupt() {
	th, err := threadguard.NewThread("interruptible")
	if err != nil {
		panic(err)
	}
	defer th.Close()
	stop := make(chan struct{})
	started := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	ctx = threadguard.WithInterrupt(ctx, func() { close(stop) }) // e.g. Tcl_CancelEval
	go func() { <-started; cancel() }()
	err = th.Do(ctx, func() error {
		close(started)
		<-stop // long work that the hook ends
		return errors.New("stopped early")
	})
	fmt.Println(err)
	// Output:
	// stopped early
}
