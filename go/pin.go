package threadguard

// #include "shim.h"
import "C"

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// pins settles the runtime.LockOSThread calls that New makes for objects
// bound to the creating goroutine.
//
// Policy: each such object holds one lock count on its goroutine
// (runtime.LockOSThread is counted), released by a successful Close, which
// only the owner can make. An object dropped without Close is destroyed
// through its cleanup, which runs on another goroutine and so cannot release
// the owner's lock (UnlockOSThread only affects the calling goroutine). The
// cleanup records the release as owed to the owner thread instead, and the
// owner pays it on its next call into this package on that thread. This is
// sound because a thread with a debt is still locked to the goroutine that
// owes it: no other goroutine can run there, so whoever calls settle on that
// thread is the debtor.
//
// A debt can outlive its debtor: a goroutine that exits before its next call
// ends its locked thread, and what that thread was owed stays in the ledger.
// total then stays above zero, and every later call pays for settle's slow
// path (a lock and a map lookup) for nothing. That is correct, only slower;
// the ledger cannot tell that a thread has gone.
var pins pinLedger

type pinLedger struct {
	total atomic.Int64 // sum of owed, for a lock-free fast path

	mu   sync.Mutex
	owed map[uint64]int // owner thread ID -> unlocks owed there
}

// owe records that an object pinned to thread owner is gone.
func (p *pinLedger) owe(owner uint64) {
	p.mu.Lock()
	if p.owed == nil {
		p.owed = make(map[uint64]int)
	}
	p.owed[owner]++
	p.total.Add(1)
	p.mu.Unlock()
}

// settle pays the calling thread's debts. Its caller need not be locked to
// the thread: an unlocked goroutine's thread owes nothing, and settle holds a
// lock of its own while it pays, so the goroutine stays where it is.
func (p *pinLedger) settle() {
	if p.total.Load() != 0 {
		p.pay()
	}
}

// pay is settle's slow path, kept out of line so that settle inlines.
func (p *pinLedger) pay() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	id := uint64(C.tg_current_thread_id())
	p.mu.Lock()
	n := p.owed[id]
	delete(p.owed, id)
	p.total.Add(int64(-n))
	p.mu.Unlock()
	for range n {
		runtime.UnlockOSThread()
	}
}

// owing returns the number of unlocks owed, for tests.
func (p *pinLedger) owing() int64 { return p.total.Load() }
