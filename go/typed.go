package threadguard

// #include "shim.h"
import "C"

import (
	"context"
	"hash/fnv"
	"sync"
	"unsafe"
)

// TagOf returns a type tag derived from name (32-bit FNV-1a, never 0), for
// choosing tags without a registry: name the type with its import path, as
// in TagOf("example.com/tcl.Interp"). The library compares tags on every
// borrow, so what matters is that two types used with the same handles in
// one process never share a tag; a constant per type, distinct within the
// program, is as good.
func TagOf(name string) Tag {
	h := fnv.New32a()
	h.Write([]byte(name))
	if t := Tag(h.Sum32()); t != 0 {
		return t
	}
	return 1
}

// Ref is an Object whose native pointer is a *T: a typed handle on it, with
// a destructor written in Go. T is usually a C type (C.Tcl_Interp, say);
// the pointer must not point to Go memory.
type Ref[T any] struct {
	*Object
}

// NewRef creates a *T on owner with create, and registers it there with
// destroy as its destructor: a Go function, called exactly once with the
// object, on the owner's thread (by Close, by the cleanup of a dropped Ref,
// or by the owner's own shutdown). No C shim is needed for a C destructor
// whose parameter is not a void *: destroy calls it, typed.
//
// destroy is kept until it runs, so it must not refer to the Ref, nor to
// anything that holds it: that would keep the Ref reachable, and a dropped
// Ref would never be destroyed. Share state with it through a value that
// does not hold the Ref.
//
// create must return a pointer that no other live Ref holds (a second
// registration of the same pointer is refused with ErrInvalidArgument and
// destroys nothing). If create fails, NewRef returns its error; if the
// registration fails, destroy runs at once. destroy must not panic, nor
// call runtime.Goexit: it runs in a call from the library's C code, so
// either ends the program with a message.
func NewRef[T any](ctx context.Context, owner Owner, tag Tag, create func() (*T, error), destroy func(*T)) (*Ref[T], error) {
	o, err := owner.New(ctx, tag, unsafe.Pointer(C.tgo_destroy_go), func() (unsafe.Pointer, error) {
		p, err := create()
		if err != nil {
			return nil, err
		}
		obj := unsafe.Pointer(p)
		if err := goDestructors.add(obj, func() { destroy(p) }); err != nil {
			return nil, err
		}
		return obj, nil
	})
	if err != nil {
		return nil, err
	}
	return &Ref[T]{o}, nil
}

// With borrows the object on its owner and calls fn with it, as
// Object.With does.
func (r *Ref[T]) With(ctx context.Context, fn func(*T) error) error {
	return r.Object.With(ctx, func(p unsafe.Pointer) error { return fn((*T)(p)) })
}

// Compute borrows r's object on its owner, calls fn with it and returns
// fn's result: the result path, with no C struct and no allocation in C.
// Errors are those of With (fn's own, a refused borrow, ErrShutDown, ...),
// and the result is the zero R with any error.
func Compute[T, R any](ctx context.Context, r *Ref[T], fn func(*T) (R, error)) (R, error) {
	var res R
	err := r.With(ctx, func(p *T) (err error) {
		res, err = fn(p)
		return err
	})
	if err != nil {
		var zero R
		return zero, err
	}
	return res, nil
}

// goDestructors holds the Go destructors of objects registered by NewRef,
// by object pointer, until the library calls tgo_destroy_go for them.
var goDestructors destructorTable

type destructorTable struct {
	mu sync.Mutex
	m  map[unsafe.Pointer]func()
}

func (d *destructorTable) add(obj unsafe.Pointer, fn func()) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.m[obj]; dup {
		return newError("NewRef", ErrInvalidArgument, "the object pointer returned by create is registered already")
	}
	if d.m == nil {
		d.m = make(map[unsafe.Pointer]func())
	}
	d.m[obj] = fn
	return nil
}

func (d *destructorTable) take(obj unsafe.Pointer) func() {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn := d.m[obj]
	delete(d.m, obj)
	return fn
}

// len returns the number of destructors not yet run, for tests.
func (d *destructorTable) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}

// tgoDestroy is the destructor of objects registered by NewRef
// (tgo_destroy_go): it runs the object's Go destructor, on the owner.
//
//export tgoDestroy
func tgoDestroy(obj unsafe.Pointer) {
	returned := false
	defer leaveToC("a destructor given to NewRef", &returned)
	if fn := goDestructors.take(obj); fn != nil {
		fn()
	}
	returned = true
}
