//! The synchronisation primitives the runner's queues use: `std` normally, `loom` in the
//! library's own tests under `--cfg loom`, so the same queue code is model-checked (see
//! `loom_tests`; other builds with `--cfg loom` keep `std`).
//!
//! Time is the one thing loom does not model: its timed condvar wait never times out. Under
//! loom a finite [`Deadline`] is therefore treated as already passed: a timed wait checks its
//! condition once and then times out, which is the interleaving that matters (the condition
//! check racing the other threads' progress). Untimed waits are modelled exactly.

use std::time::{Duration, Instant};

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(all(loom, test))]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
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
