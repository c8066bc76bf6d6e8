//! The rendezvous of a blocking call: one caller waits (with a deadline) for one result that
//! the runner produces.
//!
//! The caller and the runner race only at two points, both settled under the slot's lock:
//! - the runner starting the work vs. the caller timing out: if the caller gave up first, the
//!   work is cancelled ([`CallSlot::start`] says so and it never runs);
//! - the runner finishing vs. the caller timing out: if the caller gave up first, the result
//!   is handed back to the runner ([`CallSlot::finish`] returns it), which drops it safely.
//!
//! Either the caller receives the result or the runner gets it back: never both, never
//! neither (checked by the loom models).
//!
//! The caller spins before it sleeps ([`Spin`], one per runner, shared by its callers): a
//! short job's result is picked up within a microsecond of being set, with no wake-up, and the
//! runner notifies only a caller that has gone to sleep.

use super::sync::{AtomicBool, Condvar, Deadline, Mutex, Ordering, Spin, lock, wait};
use crate::error::Error;

/// One blocking call's result slot, shared by the caller and the runner.
pub(crate) struct CallSlot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
    /// Set (under the lock) when the result arrives: what the caller polls while it spins.
    finished: AtomicBool,
}

struct SlotState<T> {
    phase: Phase<T>,
    /// The caller sleeps on `ready` (so the runner must notify).
    caller_waiting: bool,
}

enum Phase<T> {
    /// Queued, not started.
    Queued,
    /// The runner is running the work.
    Running,
    /// The result, not yet taken by the caller.
    Done(Result<T, Error>),
    /// The caller took the result.
    Taken,
    /// The caller gave up (timeout); the runner keeps what it has.
    Abandoned,
}

/// The caller's deadline passed before the result arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

impl<T> CallSlot<T> {
    pub(crate) fn new() -> CallSlot<T> {
        CallSlot {
            state: Mutex::new(SlotState { phase: Phase::Queued, caller_waiting: false }),
            ready: Condvar::new(),
            finished: AtomicBool::new(false),
        }
    }

    /// Runner: marks the work as started; `false` if the caller gave up first (the work is
    /// cancelled and must not run).
    pub(crate) fn start(&self) -> bool {
        let mut state = lock(&self.state);
        match state.phase {
            Phase::Queued => {
                state.phase = Phase::Running;
                true
            }
            _ => false,
        }
    }

    /// Runner: delivers the result. Returns it back if the caller gave up meanwhile.
    pub(crate) fn finish(&self, result: Result<T, Error>) -> Option<Result<T, Error>> {
        let mut state = lock(&self.state);
        if matches!(state.phase, Phase::Abandoned) {
            return Some(result);
        }
        state.phase = Phase::Done(result);
        self.finished.store(true, Ordering::Release);
        let wake = std::mem::take(&mut state.caller_waiting);
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        None
    }

    /// Caller: waits for the result until `deadline`, spinning with `spin` before it sleeps.
    /// On timeout the slot is abandoned: the work is cancelled if it has not started, and its
    /// result goes back to the runner if it has.
    pub(crate) fn wait(&self, deadline: Deadline, spin: &Spin) -> Result<Result<T, Error>, TimedOut> {
        let mut state = lock(&self.state);
        let (mut spun, mut gave_up) = (false, None);
        loop {
            if let Phase::Done(_) = state.phase {
                let Phase::Done(result) = std::mem::replace(&mut state.phase, Phase::Taken) else {
                    unreachable!("checked above")
                };
                return Ok(result);
            }
            if deadline.passed() {
                state.phase = Phase::Abandoned;
                return Err(TimedOut);
            }
            if !spun {
                spun = true;
                drop(state);
                // Whatever the spin saw, the loop re-checks the phase under the lock before
                // sleeping: a result set meanwhile is seen by one or the other.
                gave_up = spin.until(deadline, || self.finished.load(Ordering::Acquire));
                state = lock(&self.state);
                continue;
            }
            state.caller_waiting = true;
            state = wait(&self.ready, state, deadline);
            state.caller_waiting = false;
            if let Some(gave_up) = gave_up.take() {
                spin.woke(gave_up);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::error::Status;
    use std::time::Duration;

    #[test]
    fn a_result_before_the_wait_is_taken_without_blocking() {
        let slot = CallSlot::new();
        assert!(slot.start());
        assert!(slot.finish(Ok(7)).is_none());
        assert_eq!(slot.wait(Deadline::now(), &Spin::new()), Ok(Ok(7)));
    }

    #[test]
    fn a_timeout_before_start_cancels_and_after_start_hands_the_result_back() {
        let cancelled = CallSlot::<u8>::new();
        assert_eq!(cancelled.wait(Deadline::after(Some(Duration::from_millis(1))), &Spin::new()), Err(TimedOut));
        assert!(!cancelled.start());
        let late = CallSlot::new();
        assert!(late.start());
        assert_eq!(late.wait(Deadline::now(), &Spin::new()), Err(TimedOut));
        assert_eq!(late.finish(Ok(1)), Some(Ok(1)));
        let failed = CallSlot::<u8>::new();
        assert!(failed.finish(Err(Error::new(Status::ShutDown, "stopped"))).is_none());
        assert_eq!(failed.wait(Deadline::Never, &Spin::new()).unwrap().unwrap_err().status(), Status::ShutDown);
    }
}
