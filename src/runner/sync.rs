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
const PROBE_NS: u32 = SPIN_LIMIT_NS;
const PROBE_EVERY: u32 = 16;
const PROBE_RAREST: u32 = 1024;
/// How often a wait that spun (spinning pays here) yields its CPU before it sleeps; with
/// nothing else to run, a yield returns at once.
const YIELDS: u32 = 2;
/// A sleeper woken this soon after it stopped spinning was most likely waiting for a thread
/// on its own CPU, which could not run while it spun (a wake-up from another CPU takes longer
/// here, and a peer that was idle or preempted, longer still).
const SOON_NS: u128 = 2 * SPIN_LIMIT_NS as u128;

/// How a waiter waits before it sleeps, adapted to how waits have ended at this place (one
/// per work queue, per runner for its callers, per completion queue).
///
/// A wait spins (`spin_loop`, polling) for up to a budget, then yields its CPU a few times if
/// spinning pays here, then gives up so that the caller sleeps. The budget learns from how
/// waits end:
/// - while spinning: spinning pays; the budget doubles (up to [`SPIN_LIMIT_NS`]);
/// - while yielding, or woken soon after it gave up ([`SOON_NS`]): the peer most likely shares
///   this CPU, where spinning only keeps it off the CPU; the budget halves, down to none;
/// - woken later: the peer was idle, busy with long work, or preempted; spinning could not
///   have helped, and says nothing about the next wait; the budget stays.
///
/// Without a budget, an occasional wait probes (see [`PROBE_EVERY`]). Every wait place starts
/// with the full budget: on one CPU (or with the peer on the waiter's CPU) a few waits bring
/// it to none. (Whether the creating thread may use several CPUs says little: a thread pinned
/// to one CPU may start a runner that runs on another.) The budget is a heuristic shared
/// without synchronisation beyond relaxed atomics: a lost update changes how long a later wait
/// spins, never whether it sees its condition.
pub(crate) struct Spin {
    budget_ns: std::sync::atomic::AtomicU32,
    /// Waits without spinning since the last probe.
    unspun: std::sync::atomic::AtomicU32,
    /// Waits between probes now: from [`PROBE_EVERY`] to [`PROBE_RAREST`].
    probe_every: std::sync::atomic::AtomicU32,
}

/// A wait that stopped spinning and is going to sleep: hand it to [`Spin::woke`] after the
/// first wake-up.
#[must_use = "report the wake-up with Spin::woke"]
pub(crate) struct GaveUp(Instant);

impl Spin {
    pub(crate) fn new() -> Spin {
        Spin {
            budget_ns: std::sync::atomic::AtomicU32::new(SPIN_LIMIT_NS),
            unspun: std::sync::atomic::AtomicU32::new(0),
            probe_every: std::sync::atomic::AtomicU32::new(PROBE_EVERY),
        }
    }

    /// Spins, then yields, until `ready` returns true or the budget (and `deadline`) runs out.
    /// Where spinning does not pay it returns after one poll (and the odd probe). `None`: ready.
    /// Otherwise the caller re-checks under its lock and sleeps, and reports its first wake-up
    /// with [`Spin::woke`]. Never blocks.
    #[cfg(not(all(loom, test)))]
    pub(crate) fn until(&self, deadline: Deadline, ready: impl Fn() -> bool) -> Option<GaveUp> {
        use std::sync::atomic::Ordering::Relaxed;
        if ready() {
            return None;
        }
        if deadline.passed() {
            return Some(GaveUp(Instant::now()));
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
                    return None;
                }
                round += 1;
                // Reading the clock costs more than a poll: read it every 16th round.
                if round.is_multiple_of(16) && Instant::now() >= end {
                    break;
                }
            }
        }
        if probe {
            // A probe that did not pay: probe half as often.
            let every = self.probe_every.load(Relaxed);
            self.probe_every.store(every.saturating_mul(2).min(PROBE_RAREST), Relaxed);
        } else if budget >= SPIN_FLOOR_NS {
            // Yield only where spinning pays (the peer runs on another CPU): there a yield lets
            // a slightly longer wait end without a sleep. Where it does not (the peer shares
            // this CPU), sleep at once: a thread woken from sleep gets the CPU ahead of busy
            // threads, a thread that yields queues behind them.
            for _ in 0..YIELDS {
                if deadline.passed() {
                    break;
                }
                std::thread::yield_now();
                if ready() {
                    // The peer needed this CPU (or the wait was a little longer than the spin).
                    self.halve();
                    return None;
                }
            }
        }
        Some(GaveUp(Instant::now()))
    }

    /// Under loom: one poll. Loom may switch threads at the poll (an atomic load), so both
    /// outcomes are explored: the change seen while spinning, or only by the caller's re-check
    /// under its lock. The adaptive budget is a timing heuristic and is not modelled.
    #[cfg(all(loom, test))]
    pub(crate) fn until(&self, deadline: Deadline, ready: impl Fn() -> bool) -> Option<GaveUp> {
        if !deadline.passed() && ready() { None } else { Some(GaveUp(Instant::now())) }
    }

    /// A sleeper's first wake-up after `gave_up`: halves the budget if it came soon (see
    /// [`SOON_NS`]).
    pub(crate) fn woke(&self, gave_up: GaveUp) {
        if cfg!(not(all(loom, test))) && gave_up.0.elapsed().as_nanos() < SOON_NS {
            self.halve();
        }
    }

    fn halve(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let shrunk = self.budget_ns.load(Relaxed) / 2;
        self.budget_ns.store(if shrunk < SPIN_FLOOR_NS { 0 } else { shrunk }, Relaxed);
    }
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

    /// A wait that finds nothing, sleeps, and is woken right away (as by a peer on its CPU).
    fn woken_at_once(spin: &Spin) {
        let gave_up = spin.until(Deadline::Never, || false).expect("never ready");
        spin.woke(gave_up);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a wake-up counts as soon by the clock, which the interpreter slows past SOON_NS")]
    fn waits_woken_soon_after_spinning_stop_spinning_and_a_probe_that_pays_starts_again() {
        let spin = Spin::new();
        for _ in 0..8 {
            woken_at_once(&spin);
        }
        assert_eq!(spin.budget_ns.load(Relaxed), 0, "eight halvings take any budget below the floor");
        // Without spinning a wait polls once (it does not yield either): a condition that turns
        // true on a later poll is seen only by a wait that spins: the probe, one of the next
        // PROBE_EVERY waits.
        let probe = (0..PROBE_EVERY).position(|_| spin.until(Deadline::Never, ready_on_poll(YIELDS + 2)).is_none());
        assert!(probe.is_some(), "one wait in {PROBE_EVERY} probes");
        assert!(spin.budget_ns.load(Relaxed) >= SPIN_FLOOR_NS, "a probe that pays restores spinning");
        assert!(spin.until(Deadline::Never, ready_on_poll(YIELDS + 2)).is_none(), "and the next wait spins");
    }

    #[test]
    fn a_wake_up_long_after_spinning_keeps_the_budget() {
        let spin = Spin::new();
        let before = spin.budget_ns.load(Relaxed);
        let gave_up = spin.until(Deadline::Never, || false).expect("never ready");
        std::thread::sleep(Duration::from_nanos(SOON_NS as u64 * 2));
        spin.woke(gave_up);
        assert_eq!(spin.budget_ns.load(Relaxed), before, "an idle or preempted peer says nothing");
    }

    #[test]
    #[cfg_attr(miri, ignore = "a wake-up counts as soon by the clock, which the interpreter slows past SOON_NS")]
    fn probes_that_never_pay_grow_rarer_down_to_a_floor() {
        let spin = Spin::new();
        for _ in 0..8 {
            woken_at_once(&spin);
        }
        let mut waits = 0;
        while spin.probe_every.load(Relaxed) < PROBE_RAREST {
            woken_at_once(&spin);
            waits += 1;
            assert!(waits <= 2 * PROBE_RAREST, "every failed probe doubles the interval");
        }
        for _ in 0..2 * PROBE_RAREST {
            woken_at_once(&spin);
        }
        assert_eq!(spin.probe_every.load(Relaxed), PROBE_RAREST, "never rarer than the floor");
    }

    #[test]
    fn a_passed_deadline_or_a_true_condition_returns_at_once() {
        let spin = Spin::new();
        let polls = Cell::new(0);
        assert!(
            spin.until(Deadline::now(), || {
                polls.set(polls.get() + 1);
                false
            })
            .is_some()
        );
        assert_eq!(polls.get(), 1, "one poll, no spinning and no yields past the deadline");
        assert!(spin.until(Deadline::Never, || true).is_none());
    }
}
