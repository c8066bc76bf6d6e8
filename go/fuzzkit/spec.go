package fuzzkit

import (
	"fmt"

	"threadguard.dev/threadguard"
)

// Kind is a type of object in a Spec.
type Kind int

// Witness reports what the library under test saw of the object with this
// id (the id its constructor returned): how many times its destructor ran,
// and the library's ID of the thread the last run was on. The kit checks
// that it is 0 while the object lives, and 1, on the owner, once it is gone.
// A negative runs means the library does not know (the check is skipped).
type Witness func(id uint64) (runs int, ranOn uint64)

type kindSpec struct {
	name    string
	witness Witness
	tag     threadguard.Tag // 0: not given (no re-entrant steps for the kind)
}

type opClass int

const (
	classCreate opClass = iota
	classCall
	classDestroy
	classDestroyLater
)

// Op is an operation just added to a Spec, to set what it documents.
type Op struct {
	name       string
	kind       Kind
	class      opClass
	create     func(arg uint64) (threadguard.Handle, uint64, error)
	call       func(h threadguard.Handle, arg uint64) error
	handle     func(h threadguard.Handle) error
	documented uint32 // bit set over status codes; bit 0 is success
}

// handleStatuses are the codes of the handle checks, which every operation
// that takes a handle documents.
var handleStatuses = mask(threadguard.ErrNullHandle, threadguard.ErrWrongThread, threadguard.ErrOwnerExited,
	threadguard.ErrStale, threadguard.ErrWrongType, threadguard.ErrBusy)

// Documents sets the errors the operation documents, as threadguard
// sentinels (replacing the default: success, plus the handle checks'
// errors for operations that take a handle, plus ErrPanic for
// destructors). An error outside this list fails the program.
func (o *Op) Documents(errs ...error) *Op {
	o.documented = mask(errs...) | 1
	return o
}

// Also adds errors to the documented ones (ErrInvalidArgument for an
// argument the operation rejects after the handle checks, say). They count
// as refusals: the call must have no effect.
func (o *Op) Also(errs ...error) *Op {
	o.documented |= mask(errs...)
	return o
}

// Spec is the API under test: kinds of objects and the operations on them,
// as functions. Each runs on the executor the program chooses and must make
// its library call there, on the calling goroutine's OS thread (use the
// wrapper's Handle methods, not methods that route the call to the owner).
// The arg is a small number (0 to 255) from the fuzzer's input, for the
// operation to pick its arguments with.
type Spec struct {
	kinds []kindSpec
	ops   []*Op
}

// Kind adds a kind of object. witness may be nil; with one, the kit also
// checks each object's destructor runs as the library saw them.
func (s *Spec) Kind(name string, witness Witness) Kind {
	s.kinds = append(s.kinds, kindSpec{name: name, witness: witness})
	return Kind(len(s.kinds) - 1)
}

// Tag gives the type tag that objects of kind k are registered with. It is
// optional: with it, the kit also runs k's operations re-entrantly, on the
// owner, inside a borrow of the same object (Handle.With with this tag),
// where threadguard refuses them with ErrBusy (a deferred destroy may also
// be accepted, and then runs when the borrow ends), and checks that they
// were refused with no effect. Kinds must not share a tag, and none may use
// the kit's decoy tag (DecoyTag). Tag panics if tag is 0 or taken.
func (s *Spec) Tag(k Kind, tag threadguard.Tag) {
	if int(k) < 0 || int(k) >= len(s.kinds) {
		panic("fuzzkit: Tag names a kind that is not in this Spec")
	}
	if tag == 0 || tag == DecoyTag {
		panic(fmt.Sprintf("fuzzkit: kind %s cannot have tag %#x (0 is invalid; DecoyTag is the kit's)", s.kinds[k].name, uint32(tag)))
	}
	for i, other := range s.kinds {
		if Kind(i) != k && other.tag == tag {
			panic(fmt.Sprintf("fuzzkit: kinds %s and %s cannot share tag %#x", other.name, s.kinds[k].name, uint32(tag)))
		}
	}
	s.kinds[k].tag = tag
}

func (s *Spec) add(op *Op) *Op {
	if int(op.kind) < 0 || int(op.kind) >= len(s.kinds) {
		panic("fuzzkit: operation " + op.name + " names a kind that is not in this Spec")
	}
	s.ops = append(s.ops, op)
	return op
}

// Create adds a constructor: it makes an object of kind k owned by the
// calling OS thread and returns its handle and an id for the Witness (any
// value without one). Documents success only.
func (s *Spec) Create(k Kind, name string, fn func(arg uint64) (h threadguard.Handle, id uint64, err error)) *Op {
	return s.add(&Op{name: name, kind: k, class: classCreate, create: fn, documented: 1})
}

// Call adds a method: it uses the object of kind k that h names, on the
// calling OS thread. Documents success and the handle checks' errors.
func (s *Spec) Call(k Kind, name string, fn func(h threadguard.Handle, arg uint64) error) *Op {
	return s.add(&Op{name: name, kind: k, class: classCall, call: fn, documented: 1 | handleStatuses})
}

// Destroy adds a destructor: it destroys the object now (owner only, type
// checked: tg_destroy alone takes an object of any type, so check the type
// first, with a borrow). Documents success, the handle checks' errors and
// ErrPanic.
func (s *Spec) Destroy(k Kind, name string, fn func(h threadguard.Handle) error) *Op {
	return s.add(&Op{name: name, kind: k, class: classDestroy, handle: fn,
		documented: 1 | handleStatuses | mask(threadguard.ErrPanic)})
}

// DestroyLater adds a deferred destructor: it asks the owner to destroy the
// object, from any thread (tg_destroy_later semantics). Documents success
// and the handle checks' errors.
func (s *Spec) DestroyLater(k Kind, name string, fn func(h threadguard.Handle) error) *Op {
	return s.add(&Op{name: name, kind: k, class: classDestroyLater, handle: fn, documented: 1 | handleStatuses})
}

// sentinels lists threadguard's sentinel errors by status code.
var sentinels = []error{
	nil,
	threadguard.ErrNullHandle,
	threadguard.ErrWrongThread,
	threadguard.ErrOwnerExited,
	threadguard.ErrStale,
	threadguard.ErrWrongType,
	threadguard.ErrBusy,
	threadguard.ErrNullPointer,
	threadguard.ErrInvalidArgument,
	threadguard.ErrPanic,
	threadguard.ErrShutDown,
	threadguard.ErrLimit,
	threadguard.ErrTimeout,
}

func mask(errs ...error) uint32 {
	var m uint32
	for _, err := range errs {
		if code := codeOf(err); code >= 0 {
			m |= 1 << code
		}
	}
	return m
}

// codeOf returns the status code err matches: 0 for nil, -1 for an error
// that matches no sentinel.
func codeOf(err error) int {
	if err == nil {
		return 0
	}
	for code, sentinel := range sentinels[1:] {
		if isErr(err, sentinel) {
			return code + 1
		}
	}
	return -1
}

func names(m uint32) string {
	s := ""
	for code := range sentinels {
		if m&(1<<code) == 0 {
			continue
		}
		if s != "" {
			s += " or "
		}
		s += codeName(code)
	}
	return s
}

func codeName(code int) string {
	switch {
	case code == 0:
		return "success"
	case code > 0 && code < len(sentinels):
		return sentinels[code].Error()
	}
	return "an error that matches no threadguard sentinel"
}
