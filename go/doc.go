// Package threadguard enforces per-thread ownership of native objects that
// Go code uses through cgo: GL contexts, interpreter states, objects of a
// runtime with per-thread heaps, anything whose state lives in the creating
// thread's thread-local storage.
//
// Go's scheduler moves goroutines between OS threads at will, so two
// consecutive cgo calls from one goroutine may arrive on different threads,
// and a thread-affine C library then silently works on the wrong thread's
// state. threadguard, a library with a C ABI, keeps each registered object
// in its owner thread's table and checks every call: a call from the wrong
// thread gets an error and never touches the object. This package applies
// the runtime.LockOSThread discipline on top, so that Go code makes its
// calls on the right thread in the first place.
//
// # Owners
//
// An object is registered by New, which calls the constructor and
// tg_register on one locked OS thread. It is bound to one of four owners;
// the first three are an Owner, with the same methods (Do, Go, New, Close,
// ID, Name) and the same behaviour:
//
//   - A Thread (NewThread): a goroutine locked to its own OS thread,
//     running submitted work from an unbounded queue. The usual choice: one
//     per thread-affine context (a GL context, an interpreter).
//   - A Runner (StartRunner): a thread that the library starts and Go did
//     not create, running Go functions sent to it as callbacks from C. Pick
//     it when the queue must be bounded (Do waits for room, Go reports
//     ErrLimit, Post answers at once), when outcomes should go to a
//     CompletionQueue, or when C code shares the thread. Every accepted
//     function's outcome is delivered exactly once, also when it stops.
//   - The MainThread (Main): the process's main thread, handed over by
//     main (or TestMain) with Main().Run, its goroutine locked there from
//     init. Pick it only for libraries that must run on the main thread
//     (Cocoa, GLFW on macOS, some toolkits and interpreters): there is one,
//     calls before the hand-over or after it is given back fail with
//     ErrShutDown, and giving it back destroys what it owns.
//   - The creating goroutine, when New is called anywhere else. The
//     goroutine stays locked to its OS thread while it owns objects; calls
//     from other goroutines get ErrWrongThread. On the process's main
//     thread only the main goroutine may do so (see New).
//
// Objects created by an owner's work (Thread.New, Runner.New,
// MainThread.New) are owned by its thread, and their With and Close route
// the call there from any goroutine. Work sent from work already on the
// owner runs inline; a panic in work is returned as ErrPanic.
//
// The C side is the thread-affine library (here, a counter whose value lives
// in thread-local storage):
//
//	static __thread int64_t values[64];
//	counter *counter_new(void);             /* state in this thread's TLS */
//	int64_t counter_add(counter *c, int64_t n);
//	void counter_free(void *c);             /* a tg_destructor */
//
// and the Go side creates the object on a Thread and uses it from anywhere:
//
//	gl, err := threadguard.NewThread("gl-main")
//	...
//	defer gl.Close() // destroys what gl still owns, on gl
//	c, err := gl.New(ctx, counterTag, unsafe.Pointer(C.counter_free),
//		func() (unsafe.Pointer, error) { return unsafe.Pointer(C.counter_new()), nil })
//	...
//	go c.With(ctx, func(p unsafe.Pointer) error { // runs on gl
//		C.counter_add((*C.counter)(p), 1)
//		return nil
//	})
//
// # Wrapping a library
//
// NewRef registers a typed object (a *C.Tcl_Interp, say) with a Go
// destructor, which calls a C destructor of any signature; Compute returns
// a result from the owner's thread; TagOf derives a type tag from a name.
// NewThread's options add per-thread finalization as the Thread exits
// (OnExit) and a Thread that ends with its last object (EndWithObjects),
// so that one Thread per object can be left to the garbage collector.
// WithInterrupt gives a context a hook that asks started work to stop when
// the context ends (Tcl_CancelEval, sqlite3_interrupt). The module's
// examples/tcl wraps Tcl interpreters with all of them.
//
// # Errors
//
// Every status code of the library has a sentinel error (ErrWrongThread,
// ErrStale, ...), to be tested with errors.Is. The returned *Error carries
// the library's message, read on the same OS thread right after the call,
// such as "handle {...} is owned by thread 7 ("gl-main", alive), used from
// thread 9".
//
// # Destruction
//
// Close destroys an object on its owner and is the normal path. An object
// that becomes unreachable without Close is destroyed by its cleanup
// (runtime.AddCleanup), which asks the owner thread to do it
// (tg_destroy_later); a Thread is told to run that at once, and a Runner
// does so unasked. Thread.Close and Runner.Stop destroy everything the
// owner still owns, on its thread.
//
// # Callbacks
//
// Go functions called from C, including on threads Go did not create, go
// through a Callback (a runtime/cgo.Handle behind a C function pointer). A
// Runner's work reaches its thread the same way; a panic there is returned
// as ErrPanic, never let through the C frames. runtime.Goexit cannot be
// stopped, and would skip the C frames (a borrow would never end), so in Go
// code called from C (a function given to With, say, calling t.FailNow) it
// ends the program with a message that names it.
//
// # Waiting
//
// Callers wait in Go, as goroutines blocked on channels, never in C: a
// goroutine waiting in Thread.Do, Runner.Call or CompletionQueue.Wait costs
// a goroutine, not an OS thread, and a cancelled context ends the wait at
// once. Before it blocks, a caller spins briefly for its result, and a
// Thread for its next task, while spinning pays (at most 50 µs, less while
// it keeps failing; up to 250 µs for a Thread getting a back-to-back caller
// that fell asleep to spin again): back-to-back calls then find the other
// side awake, and an idle Thread sleeps.
//
// # Raw handles
//
// Handle is the library's tg_handle as a Go value. Its methods make the
// checked call on the calling goroutine's current thread without routing;
// they serve handles that C code hands out.
//
// # Building
//
// The package links the threadguard C library the way cgo bindings of
// installed libraries do (git2go's convention): by default through
// pkg-config, against the library that `make install` puts under a prefix
// (header, libthreadguard.so, threadguard.pc):
//
//	make install                        # in the threadguard repository
//	go build                            # #cgo pkg-config: threadguard
//
// For a prefix pkg-config does not search, set
// PKG_CONFIG_PATH=<prefix>/lib/pkgconfig, and LD_LIBRARY_PATH (or an rpath)
// to run. Without the library, cgo stops with pkg-config's error that
// package threadguard was not found (naming threadguard.pc). Go caches the
// flags pkg-config gave: after installing to another prefix, run
// go clean -cache.
//
// Two build tags change what is linked:
//
//   - threadguard_static: the static library of the threadguard checkout this
//     module sits in (../target/release/libthreadguard.a, from `make lib`),
//     so the binary needs nothing at run time and nothing need be installed.
//     make test, make demo and make bench build this way. Without the
//     library, the build stops with a message saying to run make lib.
//   - threadguard_external: no link flags at all; see below.
//
// # One threadguard per process
//
// Every copy of the library has its own tables: a handle registered through
// one copy is ErrStale to another. A Rust library built with threadguard's
// export_thread_affine! carries a copy and exports every tg_* function. A
// program that uses such a library and this package builds with
// -tags threadguard_external and links that library (for instance
// `#cgo LDFLAGS: -lcounters` in its own package, and the header
// threadguard.h on the include path, e.g. CGO_CFLAGS=-I<prefix>/include):
// this package then calls the library's threadguard, and handles pass
// freely between the library's functions and Handle's methods. A process
// that holds two copies anyway is reported once on standard error, and
// CopiesLoaded counts them.
package threadguard
