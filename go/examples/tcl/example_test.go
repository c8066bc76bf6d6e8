package tcl_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"threadguard.dev/threadguard/examples/tcl"
)

// An interpreter used from many goroutines, a script error, and a script
// canceled by its context.
func Example() {
	ctx := context.Background()
	interp, err := tcl.New(ctx) // on a Thread of its own, which ends with it
	if err != nil {
		panic(err)
	}
	defer interp.Close()

	interp.Eval(ctx, "set n 0")
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			interp.Eval(ctx, "incr n")
		}()
	}
	wg.Wait()
	n, _ := interp.Eval(ctx, "set n")
	fmt.Println("n:", n)

	_, err = interp.Eval(ctx, "error oops")
	fmt.Println("error:", err)

	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	_, err = interp.Eval(short, "while 1 {}")
	fmt.Println("canceled:", errors.Is(err, tcl.ErrCanceled))
	sum, err := interp.Eval(ctx, "expr {2 + 2}")
	fmt.Println("after:", sum, err)
	// Output:
	// n: 16
	// error: tcl: oops
	// canceled: true
	// after: 4 <nil>
}
