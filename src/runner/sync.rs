//! The synchronisation primitives the runner's queues use: `std` normally, `loom` in the
//! library's own tests under `--cfg loom`, so the same queue code is model-checked (see
//! `loom_tests`; other builds with `--cfg loom` keep `std`).
//!
//! Time is the one thing loom does not model: its timed condvar wait never times out. Under
//! loom a finite [`Deadline`] is therefore treated as already passed: a timed wait checks its
//! condition once and then times out, which is the interleaving that matters (the condition
//! check racing the other threads' progress). Untimed waits are modelled exactly.
//!
//! Every wait spins before it sleeps ([`Spin`]): waking a sleeping thread costs tens of
//! microseconds, a spinning one notices a change in well under one. A waiter takes a snapshot
//! of its queue's event counter under the lock, releases the lock, and polls the counter
//! without it; only when the spin (and, where spinning pays, a few yields) brings no change
//! does it take the lock again, re-check its condition and sleep on the condvar, after saying
//! so (the waker notifies only a sleeper). The lock and the re-check make the spin an optimisation only: a change made at any
//! point is seen either by the poll or by the re-check under the lock (the loom models check it).

use std::time::{Duration, Instant};

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
#[cfg(all(loom, test))]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// When a blocking operation gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Wait as long as it takes.
    Never,
    /// Give up at this instant (an instant in the past: do not wait at all).
    At(Instant),
}

impl Deadline {
    /// The deadline `timeout` from now; `None` waits forever. A timeout too large to represent
    /// is forever too.
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        match timeout.and_then(|timeout| Instant::now().checked_add(timeout)) {
            Some(at) => Deadline::At(at),
            None => Deadline::Never,
        }
    }

    /// A deadline that has already passed: never block.
    pub(crate) fn now() -> Deadline {
        Deadline::At(Instant::now())
    }

    /// Whether the deadline has passed (under loom: whether it is finite).
    pub(crate) fn passed(self) -> bool {
        match self {
            Deadline::Never => false,
            #[cfg(not(all(loom, test)))]
            Deadline::At(at) => Instant::now() >= at,
            #[cfg(all(loom, test))]
            Deadline::At(_) => true,
        }
    }
}

/// Locks `mutex`. The queues never run user code while they hold a lock, so a poisoned lock
/// still guards consistent data; it is taken over rather than propagated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Waits on `condvar` until notified (or spuriously woken) or `deadline` passes. Callers
/// re-check their condition and [`Deadline::passed`] in a loop.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>, deadline: Deadline) -> MutexGuard<'a, T> {
    match deadline {
        Deadline::Never => condvar.wait(guard).unwrap_or_else(|poison| poison.into_inner()),
        #[cfg(not(all(loom, test)))]
        Deadline::At(at) => {
            let left = at.saturating_duration_since(Instant::now());
            match condvar.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(poison) => poison.into_inner().0,
            }
        }
        // Finite deadlines have passed under loom (see the module doc): do not block.
        #[cfg(all(loom, test))]
        Deadline::At(_) => guard,
    }
}

/// The longest a wait spins before it yields: enough for a back-to-back round trip to another
/// CPU (well under 2 µs here) many times over, short enough that a waiter whose peer went idle
/// stops burning its CPU within a few tens of microseconds.
const SPIN_LIMIT_NS: u32 = 20_000;
/// A budget below this is not worth spinning for: the wait does not spin.
const SPIN_FLOOR_NS: u32 = 500;
/// The budget a wait tries when spinning has stopped paying, to find out whether it pays again
/// (the peer moved to another CPU, calls came closer): one wait in [`PROBE_EVERY`] at first,
/// half as often after each probe that does not pay, down to one in [`PROBE_RAREST`], so that
/// where spinning never pays (a peer on the same CPU) probing costs next to nothing.
const PROBE_NS: u32 = SPIN_LIMIT_NS / 4;
const PROBE_EVERY: u32 = 16;
const PROBE_RAREST: u32 = 1024;
/// How often a wait that spun (spinning pays here) yields its CPU before it sleeps; with
/// nothing else to run, a yield returns at once.
const YIELDS: u32 = 2;

/// How a waiter waits before it sleeps, adapted to how waits have ended at this place (one
/// per work queue, per runner for its callers, per completion queue).
///
/// A wait spins (`spin_loop`, polling) for up to a budget, then yields its CPU a few times if
/// spinning pays here, then gives up so that the caller sleeps. The budget learns: a wait that ended while spinning
/// doubles it (up to [`SPIN_LIMIT_NS`]); a wait that did not (the peer shares this CPU, where
/// spinning only keeps it off the CPU; or it is idle, or its work is long) halves it, down to no spinning, from where an occasional wait spins a little
/// to notice when spinning pays again (see [`PROBE_EVERY`]). A wait structure created by a thread allowed
/// one CPU starts with no spinning. The budget is a heuristic shared without synchronisation
/// beyond relaxed atomics: a lost update changes how long a later wait spins, never whether
/// it sees its condition.
pub(crate) struct Spin {
    budget_ns: std::sync::atomic::AtomicU32,
    /// Waits without spinning since the last probe.
    unspun: std::sync::atomic::AtomicU32,
    /// Waits between probes now: from [`PROBE_EVERY`] to [`PROBE_RAREST`].
    probe_every: std::sync::atomic::AtomicU32,
}

impl Spin {
    pub(crate) fn new() -> Spin {
        let budget = if many_cpus() { SPIN_LIMIT_NS } else { 0 };
        Spin {
            budget_ns: std::sync::atomic::AtomicU32::new(budget),
            unspun: std::sync::atomic::AtomicU32::new(0),
            probe_every: std::sync::atomic::AtomicU32::new(PROBE_EVERY),
        }
    }

    /// Spins, then yields, until `ready` returns true or the budget (and `deadline`) runs out.
    /// Where spinning does not pay it returns after one poll (and the odd probe).
    /// Returns whether `ready` did; never blocks (the caller then re-checks under its lock and
    /// sleeps).
    #[cfg(not(all(loom, test)))]
    pub(crate) fn until(&self, deadline: Deadline, ready: impl Fn() -> bool) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if ready() {
            return true;
        }
        if deadline.passed() {
            return false;
        }
        let mut budget = self.budget_ns.load(Relaxed);
        let mut probe = false;
        if budget < SPIN_FLOOR_NS && self.unspun.fetch_add(1, Relaxed) + 1 >= self.probe_every.load(Relaxed) {
            self.unspun.store(0, Relaxed);
            (budget, probe) = (PROBE_NS, true);
        }
        if budget >= SPIN_FLOOR_NS {
            let start = Instant::now();
            let mut end = start + Duration::from_nanos(budget.into());
            if let Deadline::At(at) = deadline {
                end = end.min(at);
            }
            let mut round = 0u32;
            loop {
                for _ in 0..(1u32 << round.min(3)) {
                    std::hint::spin_loop();
                }
                if ready() {
                    // Spinning paid: spin at least twice as long as this wait took next time.
                    let took = u32::try_from(start.elapsed().as_nanos()).unwrap_or(u32::MAX);
                    let grown = budget.saturating_mul(2).max(took.saturating_mul(2)).min(SPIN_LIMIT_NS);
                    self.budget_ns.store(grown, Relaxed);
                    self.probe_every.store(PROBE_EVERY, Relaxed);
                    return true;
                }
                round += 1;
                // Reading the clock costs more than a poll: read it every 16th round.
                if round.is_multiple_of(16) && Instant::now() >= end {
                    break;
                }
            }
        }
        // Spinning did not pay (or was not tried): spin half as long next time, and probe half
        // as often if this was a probe.
        if probe {
            let every = self.probe_every.load(Relaxed);
            self.probe_every.store(every.saturating_mul(2).min(PROBE_RAREST), Relaxed);
        }
        let shrunk = self.budget_ns.load(Relaxed) / 2;
        self.budget_ns.store(if shrunk < SPIN_FLOOR_NS { 0 } else { shrunk }, Relaxed);
        // Yield only where spinning pays (the peer runs on another CPU): there a yield lets a
        // slightly longer wait end without a sleep. Where it does not (the peer shares this
        // CPU, or is idle), sleep at once: a thread woken from sleep gets the CPU ahead of
        // busy threads, a thread that yields queues behind them.
        let yields = if budget >= SPIN_FLOOR_NS && !probe { YIELDS } else { 0 };
        for _ in 0..yields {
            if deadline.passed() {
                break;
            }
            std::thread::yield_now();
            if ready() {
                return true;
            }
        }
        false
    }

    /// Under loom: one poll. Loom may switch threads at the poll (an atomic load), so both
    /// outcomes are explored: the change seen while spinning, or only by the caller's re-check
    /// under its lock. The adaptive budget is a timing heuristic and is not modelled.
    #[cfg(all(loom, test))]
    pub(crate) fn until(&self, deadline: Deadline, ready: impl Fn() -> bool) -> bool {
        !deadline.passed() && ready()
    }
}

/// Whether the creating thread may run on more than one CPU: the starting point of a
/// [`Spin`]'s budget only (a thread pinned to one CPU may still wait for a thread on another;
/// the budget learns either way).
fn many_cpus() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

/// A count of the changes a waiter waits for, bumped under the structure's lock and polled
/// without it while spinning (see the module doc). It wraps; a waiter only compares it with
/// its snapshot, and 2^32 changes during one spin of a few microseconds cannot happen.
pub(crate) struct Events(AtomicU32);

impl Events {
    pub(crate) fn new() -> Events {
        Events(AtomicU32::new(0))
    }

    /// Records a change. Call with the lock held.
    pub(crate) fn bump(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    /// The count now (a snapshot, taken with the lock held).
    pub(crate) fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Whether anything changed since `snapshot` (polled without the lock).
    pub(crate) fn since(&self, snapshot: u32) -> bool {
        self.0.load(Ordering::Acquire) != snapshot
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::Ordering::Relaxed;

    /// A wait whose condition turns true on its `n`th poll.
    fn ready_on_poll(n: u32) -> impl Fn() -> bool {
        let polls = Cell::new(0);
        move || {
            polls.set(polls.get() + 1);
            polls.get() >= n
        }
    }

    #[test]
    fn waits_that_never_pay_stop_spinning_and_a_probe_that_pays_starts_again() {
        let spin = Spin::new();
        for _ in 0..8 {
            assert!(!spin.until(Deadline::Never, || false));
        }
        assert_eq!(spin.budget_ns.load(Relaxed), 0, "eight halvings take any budget below the floor");
        // Without spinning a wait polls once (it does not yield either): a condition that turns
        // true on a later poll is seen only by a wait that spins: the probe, one of the next
        // PROBE_EVERY waits.
        let probe = (0..PROBE_EVERY).position(|_| spin.until(Deadline::Never, ready_on_poll(YIELDS + 2)));
        assert!(probe.is_some(), "one wait in {PROBE_EVERY} probes");
        assert!(spin.budget_ns.load(Relaxed) >= SPIN_FLOOR_NS, "a probe that pays restores spinning");
        assert!(spin.until(Deadline::Never, ready_on_poll(YIELDS + 2)), "and the next wait spins");
    }

    #[test]
    fn probes_that_never_pay_grow_rarer_down_to_a_floor() {
        let spin = Spin::new();
        let mut waits = 0;
        while spin.probe_every.load(Relaxed) < PROBE_RAREST {
            assert!(!spin.until(Deadline::Never, || false));
            waits += 1;
            assert!(waits <= 2 * PROBE_RAREST + 8, "every failed probe doubles the interval");
        }
        for _ in 0..2 * PROBE_RAREST {
            assert!(!spin.until(Deadline::Never, || false));
        }
        assert_eq!(spin.probe_every.load(Relaxed), PROBE_RAREST, "never rarer than the floor");
    }

    #[test]
    fn a_passed_deadline_or_a_true_condition_returns_at_once() {
        let spin = Spin::new();
        let polls = Cell::new(0);
        assert!(!spin.until(Deadline::now(), || {
            polls.set(polls.get() + 1);
            false
        }));
        assert_eq!(polls.get(), 1, "one poll, no spinning and no yields past the deadline");
        assert!(spin.until(Deadline::Never, || true));
    }
}
