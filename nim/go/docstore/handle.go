package docstore

// #include "shim.h"
import "C"

import (
	"strings"
	"unsafe"

	"threadguard.dev/threadguard"
)

// Tag is the type tag docstore registers its stores with
// (DOCSTORE_TYPE_TAG in docstore.h): a borrow of a store's handle
// (threadguard.Handle.With) names it.
const Tag = threadguard.Tag(C.DOCSTORE_TYPE_TAG)

// Handle is a store's tg_handle. Its methods call the library on the
// calling goroutine's current OS thread and do not route the call: on the
// owner thread they work, anywhere else they return an error wrapping
// threadguard.ErrWrongThread and touch nothing. Use them inside work that
// already runs on the owner (Thread.Do, a Runner's work and callbacks), or
// for handles that C code hands out; use a Store everywhere else.
type Handle threadguard.Handle

func handleOf(ch C.tg_handle) Handle {
	return Handle{Owner: uint64(ch.owner), Key: uint64(ch.key)}
}

func (h Handle) c() C.tg_handle {
	return C.tg_handle{owner: C.uint64_t(h.Owner), key: C.uint64_t(h.Key)}
}

// Raw returns h as the wrapper's threadguard.Handle.
func (h Handle) Raw() threadguard.Handle { return threadguard.Handle(h) }

// String formats h as the library's messages do.
func (h Handle) String() string { return threadguard.Handle(h).String() }

// cstr returns s as a NUL-terminated C string in Go memory (no Go pointers
// inside, so it may be passed to C for the duration of a call).
func cstr(op, what, s string) ([]byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, argError(op, what+" contains a NUL byte")
	}
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b, nil
}

func cptr(b []byte) *C.char { return (*C.char)(unsafe.Pointer(unsafe.SliceData(b))) }

// Put sets key to value (docstore_put); a previous value becomes a revision.
func (h Handle) Put(key, value string) error {
	_, err := h.put(key, value)
	return err
}

// Get returns the value of key and whether it is present (docstore_get).
func (h Handle) Get(key string) (value string, ok bool, err error) {
	value, ok, _, err = h.get(key)
	return value, ok, err
}

// Revisions returns how many values key has had, 0 if it is absent
// (docstore_revisions).
func (h Handle) Revisions(key string) (uint64, error) {
	n, _, err := h.revisions(key)
	return n, err
}

// Count returns the number of keys (docstore_count).
func (h Handle) Count() (uint64, error) {
	n, _, err := h.count()
	return n, err
}

// Serial returns the store's serial number, unique in the process
// (docstore_serial).
func (h Handle) Serial() (uint64, error) {
	n, _, err := h.serial()
	return n, err
}

// Free destroys the store now (docstore_free): on its owner only.
func (h Handle) Free() error {
	_, err := h.free()
	return err
}

// FreeLater asks the owner to destroy the store (docstore_free_later); any
// thread may ask. The owner does it at its next call that reaches a store,
// at threadguard.RunPending, or when it closes or exits.
func (h Handle) FreeLater() error {
	_, err := h.freeLater()
	return err
}

// The unexported forms also report the thread the call ran on.

func (h Handle) put(key, value string) (where, error) {
	var w where
	k, err := cstr("docstore_put", "key", key)
	if err != nil {
		return w, err
	}
	v, err := cstr("docstore_put", "value", value)
	if err != nil {
		return w, err
	}
	return w, check("docstore_put", C.nds_put(h.c(), cptr(k), cptr(v), &w), &w)
}

func (h Handle) get(key string) (string, bool, where, error) {
	var w where
	k, err := cstr("docstore_get", "key", key)
	if err != nil {
		return "", false, w, err
	}
	buf := make([]byte, 128)
	for {
		var n C.int64_t
		st := C.nds_get(h.c(), cptr(k), cptr(buf), C.size_t(len(buf)), &n, &w)
		if err := check("docstore_get", st, &w); err != nil {
			return "", false, w, err
		}
		switch {
		case n < 0:
			return "", false, w, nil
		case int(n) < len(buf):
			return string(buf[:n]), true, w, nil
		}
		buf = make([]byte, n+1) // truncated: ask again with room for all of it
	}
}

func (h Handle) revisions(key string) (uint64, where, error) {
	var w where
	k, err := cstr("docstore_revisions", "key", key)
	if err != nil {
		return 0, w, err
	}
	var n C.uint64_t
	err = check("docstore_revisions", C.nds_revisions(h.c(), cptr(k), &n, &w), &w)
	return uint64(n), w, err
}

func (h Handle) count() (uint64, where, error) {
	var w where
	var n C.uint64_t
	err := check("docstore_count", C.nds_count(h.c(), &n, &w), &w)
	return uint64(n), w, err
}

func (h Handle) serial() (uint64, where, error) {
	var w where
	var n C.uint64_t
	err := check("docstore_serial", C.nds_serial(h.c(), &n, &w), &w)
	return uint64(n), w, err
}

func (h Handle) free() (where, error) {
	var w where
	return w, check("docstore_free", C.nds_free(h.c(), &w), &w)
}

func (h Handle) freeLater() (where, error) {
	var w where
	return w, check("docstore_free_later", C.nds_free_later(h.c(), &w), &w)
}

// create makes a store owned by the calling OS thread (docstore_new) and
// returns its handle and serial.
func create() (Handle, uint64, error) {
	var w where
	var ch C.tg_handle
	if err := check("docstore_new", C.nds_new(&ch, &w), &w); err != nil {
		return Handle{}, 0, err
	}
	h := handleOf(ch)
	serial, _, err := h.serial()
	if err != nil {
		h.free()
		return Handle{}, 0, err
	}
	return h, serial, nil
}

// collect runs a full collection of the calling thread's Nim heap.
func collect() {
	var w where
	C.nds_collect(&w)
}
