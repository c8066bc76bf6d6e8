// Command app uses the threadguard Go wrapper against the installed library
// (pkg-config), from a module outside the threadguard repository.
package main

// #include <stdlib.h>
//
// void *counter_new(void) { return calloc(1, sizeof(long)); }
// void counter_add(void *c, void *ctx) { (void)ctx; *(long *)c += 1; }
import "C"

import (
	"context"
	"fmt"
	"os"
	"unsafe"

	"threadguard.dev/threadguard"
)

const counterTag threadguard.Tag = 1

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	owner, err := threadguard.NewThread("owner")
	if err != nil {
		return err
	}
	defer owner.Close()
	counter, err := owner.New(ctx, counterTag, unsafe.Pointer(C.free),
		func() (unsafe.Pointer, error) { return C.counter_new(), nil })
	if err != nil {
		return err
	}
	for range 3 {
		if err := counter.Call(ctx, unsafe.Pointer(C.counter_add), nil); err != nil {
			return err
		}
	}
	var value C.long
	if err := counter.With(ctx, func(p unsafe.Pointer) error { value = *(*C.long)(p); return nil }); err != nil {
		return err
	}
	if err := counter.Close(); err != nil {
		return err
	}
	stats, err := threadguard.ReadStats()
	if err != nil {
		return err
	}
	if value != 3 || stats.Live != 0 || stats.Created != 1 || stats.Destroyed != 1 {
		return fmt.Errorf("value %d, stats %+v", value, stats)
	}
	fmt.Printf("app: threadguard %s (ABI %d): value %d, %d created, %d destroyed\n",
		threadguard.Version(), threadguard.ABIVersion(), value, stats.Created, stats.Destroyed)
	return nil
}
