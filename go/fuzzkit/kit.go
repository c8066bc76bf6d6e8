package fuzzkit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"threadguard.dev/threadguard"
)

func isErr(err, target error) bool { return errors.Is(err, target) }

// Failure is a program's first difference from what threadguard promises,
// with the program's last steps.
type Failure struct {
	Message string
}

func (f *Failure) Error() string { return f.Message }

// Summary is what a program did.
type Summary struct {
	Steps     int
	Objects   int // objects created: the Spec's and the kit's decoys
	Decoys    int // decoys registered
	Reentrant int // re-entrant steps whose operation ran inside the kit's borrow
	// Statuses counts how often each status came back from the program's
	// calls (operations, decoy registrations, RunPending), by code (0:
	// success). A re-entrant step counts its operation's status if the
	// kit's borrow let it run, and nothing otherwise.
	Statuses map[int]int
}

// Kit runs programs of a Spec. Programs run one at a time (threadguard's
// counters are process-wide): run a Kit's programs apart from other code
// that uses threadguard, as go test runs tests one at a time unless they
// call t.Parallel.
type Kit struct {
	spec *Spec
	mu   sync.Mutex
}

// New returns a Kit for spec.
func New(spec *Spec) *Kit { return &Kit{spec: spec} }

// Run runs program and fails t with the report if the program fails.
func (k *Kit) Run(t testing.TB, program []byte) Summary {
	t.Helper()
	s, err := k.Check(program)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Find runs the random programs with seeds from first up to (not
// including) last until one fails; it returns that seed and the failure,
// or nil.
func (k *Kit) Find(first, last uint64) (uint64, *Failure) {
	for seed := first; seed < last; seed++ {
		if _, err := k.Check(RandomProgram(seed)); err != nil {
			var f *Failure
			if errors.As(err, &f) {
				return seed, f
			}
			return seed, &Failure{Message: err.Error()}
		}
	}
	return 0, nil
}

// The executors, by slot: who runs a step.
const (
	slotThread   = iota // a threadguard.Thread
	slotPinned          // a goroutine locked to its OS thread
	slotRunner          // a threadguard.Runner (a thread of the library's)
	slotUnpinned        // a goroutine on whatever OS thread Go gives it; never owns objects
	slots
)

var slotNames = [slots]string{"Thread", "pinned goroutine", "Runner", "unpinned goroutine"}

// executor runs steps on one OS thread (or, unpinned, on any).
type executor interface {
	do(fn func()) error
	id() uint64
	stop() error
}

type threadExec struct{ t *threadguard.Thread }

func (e threadExec) do(fn func()) error {
	return e.t.Do(context.Background(), func() error { fn(); return nil })
}
func (e threadExec) id() uint64  { return e.t.ID() }
func (e threadExec) stop() error { return e.t.Close() }

type runnerExec struct{ r *threadguard.Runner }

func (e runnerExec) do(fn func()) error {
	return e.r.Call(context.Background(), func() error { fn(); return nil })
}
func (e runnerExec) id() uint64  { return e.r.ThreadID() }
func (e runnerExec) stop() error { return e.r.Stop() }

// pinnedExec is a goroutine locked to its OS thread; stop ends the
// goroutine while locked, which ends the OS thread (and, in its exit,
// destroys what the thread still owns).
type pinnedExec struct {
	work chan func()
	done chan struct{}
	tid  uint64
}

func startPinned() *pinnedExec {
	e := &pinnedExec{work: make(chan func()), done: make(chan struct{})}
	started := make(chan uint64)
	var loop func()
	loop = func() {
		runtime.LockOSThread() // never undone: the OS thread ends with the goroutine
		if syscall.Gettid() == syscall.Getpid() {
			// Go parks the main thread instead of ending it when a goroutine
			// locked there exits, so its exit would never run: start over on
			// a goroutine that cannot run here while this one holds it.
			moved := make(chan struct{})
			go func() {
				close(moved)
				loop()
			}()
			<-moved
			runtime.UnlockOSThread()
			return
		}
		started <- threadguard.CurrentThreadID()
		for fn := range e.work {
			fn()
			e.done <- struct{}{}
		}
	}
	go loop()
	e.tid = <-started
	return e
}

func (e *pinnedExec) do(fn func()) error {
	e.work <- fn
	<-e.done
	return nil
}
func (e *pinnedExec) id() uint64 { return e.tid }
func (e *pinnedExec) stop() error {
	close(e.work)
	return nil
}

// unpinnedExec runs each step on a new goroutine that is not locked.
type unpinnedExec struct{}

func (unpinnedExec) do(fn func()) error {
	done := make(chan struct{})
	go func() {
		fn()
		close(done)
	}()
	<-done
	return nil
}
func (unpinnedExec) id() uint64  { return 0 }
func (unpinnedExec) stop() error { return nil }

func startExec(slot int) (executor, error) {
	switch slot {
	case slotThread:
		t, err := threadguard.NewThread("fuzzkit-thread")
		return threadExec{t}, err
	case slotPinned:
		return startPinned(), nil
	case slotRunner:
		r, err := threadguard.StartRunner("fuzzkit-runner", 16)
		return runnerExec{r}, err
	}
	return unpinnedExec{}, nil
}

// obj is one object, as the model sees it.
type obj struct {
	h       threadguard.Handle
	kind    Kind   // decoyKind for a decoy
	id      uint64 // the Witness's id
	decoy   *decoy // a decoy: the kit's own object and witness
	owner   uint64
	live    bool
	pending bool
}

// decoyKind is the kind of the kit's decoys in the model: no Spec's.
const decoyKind Kind = -1

type line struct {
	n      int
	slot   int
	thread uint64
	what   string
	h      threadguard.Handle
	status string
	borrow string // a re-entrant step: the status of the kit's borrow
}

type model struct {
	spec    *Spec
	objs    []obj
	threads map[uint64]bool // executor threads: alive or not
	execs   [slots]executor
	stats   threadguard.Stats
	lines   []line
	sum     Summary
}

// Check runs program (any bytes) over a Thread, a pinned goroutine, a
// Runner and an unpinned goroutine, one step at a time, and returns what it
// did or the first difference from what threadguard promises (a *Failure).
func (k *Kit) Check(program []byte) (Summary, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	steps := decode(k.spec, slots, program)
	goroutines := runtime.NumGoroutine()
	base, err := threadguard.ReadStats()
	if err != nil {
		return Summary{}, err
	}
	m := &model{spec: k.spec, threads: map[uint64]bool{}, stats: base, sum: Summary{Statuses: map[int]int{}}}
	for slot := range m.execs {
		if err := m.start(slot); err != nil {
			m.stopAll()
			return Summary{}, err
		}
	}
	var failure error
	for n, s := range steps {
		if s.action == actExit {
			failure = m.exit(n+1, s.slot, true)
		} else {
			failure = m.step(n+1, s)
		}
		if failure != nil {
			break
		}
	}
	if failure == nil {
		for slot := range m.execs {
			if failure = m.exit(len(steps)+1, slot, false); failure != nil {
				break
			}
		}
	}
	if failure == nil {
		failure = m.finish(base, goroutines)
	} else {
		m.stopAll()
	}
	m.sum.Steps = len(steps)
	if failure != nil {
		return m.sum, &Failure{Message: m.report(failure.Error())}
	}
	return m.sum, nil
}

func (m *model) start(slot int) error {
	e, err := startExec(slot)
	if err != nil {
		return err
	}
	m.execs[slot] = e
	if id := e.id(); id != 0 {
		m.threads[id] = true
	}
	return nil
}

// stopAll ends the executors of a program that failed, and waits until
// their OS threads have exited, so that the next program starts from quiet
// counters. It releases the decoys whose owner is known to have exited
// (destroyed with it); a release that fails leaves a decoy's record
// allocated, and the program's failure is the report.
func (m *model) stopAll() {
	for slot, e := range m.execs {
		if e == nil {
			continue
		}
		id := e.id()
		_ = e.stop() // failing already: the wait below tells whether it ended
		m.execs[slot] = nil
		if id != 0 && waitExited(id) == nil {
			m.threads[id] = false
		}
	}
	for _, o := range m.objs {
		if alive, known := m.threads[o.owner]; o.decoy != nil && known && !alive {
			_ = o.decoy.release()
		}
	}
}

// exit ends the executor of slot and waits until its OS thread has exited
// (its objects destroyed); then checks that everything it owned was
// destroyed, once, on it.
func (m *model) exit(n, slot int, replace bool) error {
	e := m.execs[slot]
	id := e.id()
	m.lines = append(m.lines, line{n: n, slot: slot, thread: id, what: "exit"})
	if err := e.stop(); err != nil {
		return fmt.Errorf("ending the %s: %w", slotNames[slot], err)
	}
	m.execs[slot] = nil
	if id != 0 {
		if err := waitExited(id); err != nil {
			return err
		}
		m.threads[id] = false
	}
	after, err := threadguard.ReadStats()
	if err != nil {
		return err
	}
	var owned []int
	for i, o := range m.objs {
		if o.live && o.owner == id {
			owned = append(owned, i)
		}
	}
	if d := after.Destroyed - m.stats.Destroyed; d != uint64(len(owned)) || after.Created != m.stats.Created {
		return fmt.Errorf("thread %d exited owning %d objects; threadguard counted %d destroyed and %d created",
			id, len(owned), d, after.Created-m.stats.Created)
	}
	for _, i := range owned {
		m.objs[i].live, m.objs[i].pending = false, false
		if err := m.witnessed(i); err != nil {
			return err
		}
	}
	m.stats = after
	if replace {
		return m.start(slot)
	}
	return nil
}

// waitExited waits until the library reports thread id as exited: its
// OS thread ends a moment after Close or Stop returns.
func waitExited(id uint64) error {
	for delay, waited := time.Microsecond, time.Duration(0); ; delay = min(2*delay, time.Millisecond) {
		_, err := threadguard.Handle{Owner: id, Key: 1}.OwnerThread()
		if errors.Is(err, threadguard.ErrOwnerExited) {
			return nil
		}
		if waited > time.Minute {
			return fmt.Errorf("thread %d did not exit within a minute of being ended", id)
		}
		time.Sleep(delay)
		waited += delay
	}
}

// witnessed checks the library's own record of object i: destroyed once,
// on its owner, if it is dead; not destroyed if it lives.
func (m *model) witnessed(i int) error {
	o := m.objs[i]
	var runs int
	var ranOn uint64
	switch {
	case o.decoy != nil:
		runs, ranOn = o.decoy.witness()
	case m.spec.kinds[o.kind].witness != nil:
		runs, ranOn = m.spec.kinds[o.kind].witness(o.id)
	default:
		return nil
	}
	switch {
	case runs < 0:
		return nil
	case o.live && runs != 0:
		return fmt.Errorf("object #%d %v is alive, but the library ran its destructor %d times", i, o.h, runs)
	case !o.live && runs != 1:
		return fmt.Errorf("object #%d %v is gone, and the library ran its destructor %d times", i, o.h, runs)
	case !o.live && ranOn != o.owner:
		return fmt.Errorf("object #%d %v was destroyed on thread %d, not on its owner %d", i, o.h, ranOn, o.owner)
	}
	return nil
}

func (m *model) ownerState(owner uint64) string {
	alive, known := m.threads[owner]
	switch {
	case known && alive:
		return "live"
	case known:
		return "exited"
	case owner == 0 || owner >= 1<<40:
		return "never"
	}
	return "unknown"
}

func (m *model) resolve(me uint64, kind Kind, t target) threadguard.Handle {
	pick := func(w who, l life, s kindSel, index byte) threadguard.Handle {
		keep := func(o obj, w who, l life, s kindSel) bool {
			var whoOK, lifeOK, kindOK bool
			switch w {
			case whoMe:
				whoOK = o.owner == me
			case whoOther:
				whoOK = o.owner != me && m.threads[o.owner]
			case whoExited:
				alive, known := m.threads[o.owner]
				whoOK = known && !alive
			default:
				whoOK = true
			}
			switch l {
			case lifeLive:
				lifeOK = o.live
			case lifeDead:
				lifeOK = !o.live
			default:
				lifeOK = true
			}
			switch s {
			case kindSame:
				kindOK = o.kind == kind
			case kindOther:
				kindOK = o.kind != kind
			default:
				kindOK = true
			}
			return whoOK && lifeOK && kindOK
		}
		for _, f := range [][3]int{{int(w), int(l), int(s)}, {int(w), int(l), int(kindAny)},
			{int(whoAny), int(l), int(kindAny)}, {int(whoAny), int(lifeAny), int(kindAny)}} {
			var from []obj
			for _, o := range m.objs {
				if keep(o, who(f[0]), life(f[1]), kindSel(f[2])) {
					from = append(from, o)
				}
			}
			if len(from) > 0 {
				return from[int(index)%len(from)].h
			}
		}
		return threadguard.Handle{}
	}
	switch t.kind {
	case targetPick:
		return pick(t.who, t.life, t.sel, t.index)
	case targetForged:
		var owner uint64
		switch t.owner {
		case 0:
			owner = me
		case 1:
			if e := m.execs[int(t.index)%slots]; e != nil {
				owner = e.id()
			}
		case 2:
			for id, alive := range m.threads {
				if !alive && id > owner {
					owner = id
				}
			}
		case 4:
			owner = 1<<62 | uint64(t.index)<<8
		}
		return threadguard.Handle{Owner: owner, Key: t.key}
	case targetFlipKey:
		h := pick(whoAny, lifeLive, kindAny, t.index)
		h.Key ^= 1 << t.bit
		return h
	case targetFlipOwner:
		h := pick(whoAny, lifeLive, kindAny, t.index)
		h.Owner ^= 1 << t.bit
		return h
	}
	return threadguard.Handle{}
}

// expect is what the checks allow for a handle: statuses (bit set), the
// object the checks pass for (-1: none), and the object a deferred destroy
// queues a request for (-1: none).
type expect struct {
	allowed uint32
	target  int
	queues  int
}

func (m *model) predict(me uint64, kind Kind, h threadguard.Handle, deferred bool, okPath uint32) expect {
	refuse := func(errs ...error) expect { return expect{allowed: mask(errs...), target: -1, queues: -1} }
	if h == (threadguard.Handle{}) {
		return refuse(threadguard.ErrNullHandle)
	}
	named := -1
	for i, o := range m.objs {
		if o.h == h && o.live {
			named = i
		}
	}
	if h.Owner != me {
		switch state := m.ownerState(h.Owner); {
		case state == "live" && deferred:
			return expect{allowed: 1, target: -1, queues: named}
		case state == "live":
			return refuse(threadguard.ErrWrongThread)
		case state == "exited":
			return refuse(threadguard.ErrOwnerExited)
		case state == "never":
			return refuse(threadguard.ErrStale)
		case deferred:
			return expect{allowed: 1 | mask(threadguard.ErrOwnerExited, threadguard.ErrStale), target: -1, queues: -1}
		default:
			return refuse(threadguard.ErrWrongThread, threadguard.ErrOwnerExited, threadguard.ErrStale)
		}
	}
	switch {
	case named < 0:
		return refuse(threadguard.ErrStale)
	case m.objs[named].kind == kind && deferred:
		return expect{allowed: okPath, target: named, queues: named}
	case m.objs[named].kind == kind:
		return expect{allowed: okPath, target: named, queues: -1}
	case deferred:
		return expect{allowed: 1 | mask(threadguard.ErrWrongType), target: -1, queues: named}
	}
	return refuse(threadguard.ErrWrongType)
}

// nested is what a re-entrant step's operation did inside the kit's borrow
// of its target.
type nested struct {
	ran     bool
	err     error
	pan     any
	before  threadguard.Stats
	after   threadguard.Stats
	serr    error
	allowed uint32 // what threadguard allows it: ErrBusy (a deferred destroy: or success)
}

// call runs op (not a constructor) with h and arg.
func call(op *Op, h threadguard.Handle, arg uint64) error {
	if op.class == classCall {
		return op.call(h, arg)
	}
	return op.handle(h)
}

// step runs one step on its executor and checks it.
func (m *model) step(n int, s step) error {
	slot := s.slot
	var (
		h      threadguard.Handle
		id     uint64
		err    error
		exp    = expect{allowed: 1, target: -1, queues: -1}
		op     *Op
		what   = "RunPending"
		dec    *decoy
		in     *nested
		deaths []int
		after  threadguard.Stats
		serr   error
		rerr   error
		pan    any
	)
	switch s.action {
	case actOp, actBusy:
		op = m.spec.ops[s.op]
		what = op.name
	case actDecoy:
		what = "decoy"
	}
	if slot == slotUnpinned && (s.action == actDecoy || s.action == actBusy || op != nil && op.class == classCreate) {
		// An unpinned goroutine's objects would be owned by whichever OS
		// thread it ran on, and it owns none to borrow: constructors, decoys
		// and re-entrant steps run on the Thread instead.
		slot = slotThread
	}
	e := m.execs[slot]
	me := e.id()
	if op != nil {
		okPath := op.documented &^ handleStatuses
		switch {
		case op.class == classCreate:
			exp.allowed = okPath
		case s.action == actBusy:
			// First the kit's borrow of the target, a checked call that
			// succeeds or not: then the operation, inside it, on the object
			// the borrow holds.
			h = m.resolve(me, op.kind, s.target)
			exp = m.predict(me, op.kind, h, false, 1)
			in = &nested{allowed: mask(threadguard.ErrBusy)}
			if op.class == classDestroyLater {
				// tg_destroy_later accepts a busy object (the request runs
				// when the borrow ends); a library may refuse it instead.
				in.allowed |= 1
			}
		default:
			h = m.resolve(me, op.kind, s.target)
			exp = m.predict(me, op.kind, h, op.class == classDestroyLater, okPath)
		}
	}
	derr := e.do(func() {
		defer func() { pan = recover() }()
		switch {
		case s.action == actDecoy:
			if dec, err = newDecoy(); err == nil {
				h = dec.obj.Handle()
			}
		case s.action == actRunPending:
			err = threadguard.RunPending()
		case s.action == actBusy:
			err = h.With(m.spec.kinds[op.kind].tag, func(unsafe.Pointer) error {
				in.ran = true
				in.before, in.serr = threadguard.ReadStats()
				func() {
					defer func() { in.pan = recover() }()
					in.err = call(op, h, s.arg)
				}()
				if in.serr == nil {
					in.after, in.serr = threadguard.ReadStats()
				}
				return nil
			})
		case op.class == classCreate:
			h, id, err = op.create(s.arg)
		default:
			err = call(op, h, s.arg)
		}
		if slot == slotRunner {
			// A Runner runs the destroy requests queued for it after each
			// job: run them here, where the kit can see them.
			rerr = threadguard.RunPending()
		}
		// On the same thread: which of its objects are gone, and the counters.
		after, serr = threadguard.ReadStats()
		if serr == nil && me != 0 && after.Destroyed != m.stats.Destroyed {
			for i, o := range m.objs {
				if o.live && o.owner == me {
					if _, oerr := o.h.OwnerThread(); oerr != nil {
						deaths = append(deaths, i)
					}
				}
			}
		}
	})
	if runner := m.execs[slotRunner]; derr == nil && pan == nil && err == nil && slot != slotRunner &&
		exp.queues >= 0 && m.objs[exp.queues].owner == runner.id() {
		// A Runner runs the requests queued for it when it likes: make it
		// run them now, and see what they destroyed.
		derr = runner.do(func() {
			rerr = threadguard.RunPending()
			after, serr = threadguard.ReadStats()
			for i, o := range m.objs {
				if o.live && o.owner == runner.id() {
					if _, oerr := o.h.OwnerThread(); oerr != nil {
						deaths = append(deaths, i)
					}
				}
			}
		})
	}
	code := codeOf(err)
	l := line{n: n, slot: slot, thread: me, what: what, h: h, status: codeName(code)}
	if in != nil {
		l.status, l.borrow = "not run", codeName(code)
		if in.ran {
			l.status = codeName(codeOf(in.err))
			m.sum.Statuses[codeOf(in.err)]++
			m.sum.Reentrant++
		}
	} else {
		m.sum.Statuses[code]++
	}
	m.lines = append(m.lines, l)
	if derr != nil {
		return fmt.Errorf("running %s on the %s: %w", what, slotNames[s.slot], derr)
	}
	if pan != nil {
		return fmt.Errorf("%s panicked (a panic must not leave an operation): %v", what, pan)
	}
	if serr != nil {
		return serr
	}
	if rerr != nil {
		return fmt.Errorf("RunPending after %s on the Runner: %w", what, rerr)
	}
	if in != nil {
		if err := checkNested(op, h, me, slot, in, err); err != nil {
			return err
		}
	}
	if code < 0 {
		return fmt.Errorf("%s returned %q, which matches no threadguard sentinel", what, err)
	}
	if exp.allowed&(1<<code) == 0 {
		if in != nil {
			what = "the kit's borrow for " + what
		}
		return fmt.Errorf("%s returned %s (%v) for handle %v on thread %d (%s); threadguard's checks allow %s",
			what, codeName(code), err, h, me, slotNames[s.slot], names(exp.allowed))
	}
	if in == nil && op != nil && op.documented&(1<<code) == 0 {
		return fmt.Errorf("%s returned %s, which it does not document (documented: %s)", what, codeName(code), names(op.documented))
	}
	ok := code == 0
	if in != nil && in.ran && in.err == nil && exp.target >= 0 {
		// A deferred destroy accepted inside the borrow: its request runs
		// when the borrow ends.
		exp.queues = exp.target
	}
	creates := ok && (s.action == actDecoy || s.action == actOp && op.class == classCreate)
	destroys := s.action == actOp && exp.target >= 0 && (ok || code == codeOf(threadguard.ErrPanic)) && op.class == classDestroy
	// A successful register, borrow or destroy (outside any borrow) runs
	// the requests queued for the thread as it returns.
	drains := (ok && (s.action != actOp || op.class != classDestroyLater)) || slot == slotRunner
	refused := !ok && !destroys
	created := after.Created - m.stats.Created
	destroyed := after.Destroyed - m.stats.Destroyed
	if (creates && created != 1) || (!creates && created != 0) {
		return fmt.Errorf("%s returned %s and threadguard counted %d new objects", what, codeName(code), created)
	}
	if uint64(len(deaths)) != destroyed {
		return fmt.Errorf("%s returned %s: threadguard counted %d objects destroyed, but %d of this thread's objects are gone",
			what, codeName(code), destroyed, len(deaths))
	}
	if ok && exp.queues >= 0 && m.objs[exp.queues].live {
		m.objs[exp.queues].pending = true
	}
	dead := map[int]bool{}
	for _, i := range deaths {
		o := m.objs[i]
		// Any successful call on the owner may run its queued requests (a library's
		// operation may borrow before it does what it was asked).
		legit := (o.pending && (ok || drains)) || (destroys && i == exp.target)
		if o.pending && o.owner == m.execs[slotRunner].id() {
			legit, refused = true, false // the Runner's own drain, not the call's
		}
		if !legit || refused {
			return fmt.Errorf("%s returned %s and destroyed object #%d %v, which it had no reason to destroy", what, codeName(code), i, o.h)
		}
		dead[i] = true
	}
	if destroys && !dead[exp.target] {
		return fmt.Errorf("%s returned %s but object %v is still alive", what, codeName(code), h)
	}
	for i, o := range m.objs {
		if o.live && o.owner == me && o.pending && drains && !dead[i] {
			return fmt.Errorf("%s returned %s but object #%d %v is still alive (its destroy request should have run)", what, codeName(code), i, o.h)
		}
	}
	for _, i := range deaths {
		m.objs[i].live, m.objs[i].pending = false, false
		if err := m.witnessed(i); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if exp.target >= 0 && !dead[exp.target] {
		if err := m.witnessed(exp.target); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if creates {
		if h == (threadguard.Handle{}) || h.Owner != me {
			return fmt.Errorf("%s succeeded with handle %v: not a handle owned by thread %d", what, h, me)
		}
		for _, o := range m.objs {
			if o.h == h {
				return fmt.Errorf("%s succeeded with handle %v, which it had issued before", what, h)
			}
		}
		kind := decoyKind
		if op != nil {
			kind = op.kind
		}
		m.objs = append(m.objs, obj{h: h, kind: kind, id: id, decoy: dec, owner: me, live: true})
		m.sum.Objects++
		if dec != nil {
			m.sum.Decoys++
		}
		if err := m.witnessed(len(m.objs) - 1); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	m.stats = after
	return nil
}

// checkNested checks what a re-entrant step's operation did inside the
// kit's borrow of its target (borrow: the borrow's status): threadguard
// allows it ErrBusy (a deferred destroy: or success), with no object
// created or destroyed while the borrow holds.
func checkNested(op *Op, h threadguard.Handle, me uint64, slot int, in *nested, borrow error) error {
	switch {
	case in.ran != (borrow == nil):
		return fmt.Errorf("the kit's borrow of %v for %s returned %s, and ran the operation: %v", h, op.name, codeName(codeOf(borrow)), in.ran)
	case !in.ran:
		return nil
	case in.pan != nil:
		return fmt.Errorf("%s panicked inside a borrow of its object (a panic must not leave an operation): %v", op.name, in.pan)
	case in.serr != nil:
		return in.serr
	}
	switch code := codeOf(in.err); {
	case code < 0:
		return fmt.Errorf("%s returned %q inside a borrow of its object, which matches no threadguard sentinel", op.name, in.err)
	case in.allowed&(1<<code) == 0:
		return fmt.Errorf("%s returned %s (%v) for handle %v on thread %d (%s), inside a borrow of that object; threadguard allows %s",
			op.name, codeName(code), in.err, h, me, slotNames[slot], names(in.allowed))
	case op.documented&(1<<code) == 0:
		return fmt.Errorf("%s returned %s, which it does not document (documented: %s)", op.name, codeName(code), names(op.documented))
	case in.after.Created != in.before.Created || in.after.Destroyed != in.before.Destroyed:
		return fmt.Errorf("%s returned %s inside a borrow of %v, and threadguard counted %d objects created and %d destroyed meanwhile",
			op.name, codeName(code), h, in.after.Created-in.before.Created, in.after.Destroyed-in.before.Destroyed)
	}
	return nil
}

// finish checks, after every executor ended, that nothing is left.
func (m *model) finish(base threadguard.Stats, goroutines int) error {
	after, err := threadguard.ReadStats()
	if err != nil {
		return err
	}
	if after.Live != base.Live || after.DeferredPending != base.DeferredPending {
		return fmt.Errorf("after every executor ended, threadguard counts %d live objects (before: %d) and %d pending destroy requests (before: %d)",
			after.Live, base.Live, after.DeferredPending, base.DeferredPending)
	}
	// Unpinned steps may have introduced Go's own threads to the library;
	// the executors' threads must all be gone.
	for id, alive := range m.threads {
		if alive {
			return fmt.Errorf("thread %d is still alive after its executor ended", id)
		}
	}
	for i := range m.objs {
		if err := m.witnessed(i); err != nil {
			return err
		}
	}
	for _, o := range m.objs {
		if o.decoy != nil {
			if err := o.decoy.release(); err != nil {
				return fmt.Errorf("releasing decoy %v after its owner exited: %w", o.h, err)
			}
		}
	}
	// Goroutines end a moment after the channel operations that end them.
	for delay, waited := time.Microsecond, time.Duration(0); runtime.NumGoroutine() > goroutines; delay = min(2*delay, time.Millisecond) {
		if waited > time.Minute {
			return fmt.Errorf("%d goroutines are left running (%d before the program)", runtime.NumGoroutine(), goroutines)
		}
		time.Sleep(delay)
		waited += delay
	}
	return nil
}

func (m *model) report(what string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "threadguard fuzzkit: %s\n--- program (last steps) ---\n", what)
	start := max(0, len(m.lines)-40)
	for _, l := range m.lines[start:] {
		if l.what == "exit" {
			fmt.Fprintf(&b, "#%d %s (thread %d): exit\n", l.n, slotNames[l.slot], l.thread)
			continue
		}
		if l.borrow != "" {
			fmt.Fprintf(&b, "#%d %s (thread %d): the kit borrows %v (%s), and inside: %s(%v) = %s\n",
				l.n, slotNames[l.slot], l.thread, l.h, l.borrow, l.what, l.h, l.status)
			continue
		}
		fmt.Fprintf(&b, "#%d %s (thread %d): %s(%v) = %s\n", l.n, slotNames[l.slot], l.thread, l.what, l.h, l.status)
	}
	return b.String()
}
