//! Completion queues: bounded queues of `(tag, result)` entries that any thread may wait on.
//!
//! Policy when full: room is *reserved* when work is posted ([`CqCore::reserve`]), not when it
//! completes. Posting is refused (`TG_ERR_LIMIT`) once queued entries plus outstanding
//! reservations reach the capacity, so a completion always has room when it arrives: it is
//! never dropped, never blocks the runner, and the queue never grows past its capacity.
//!
//! Exactly once: every reservation ends in exactly one [`CqCore::deliver`] (or
//! [`CqCore::unreserve`] if the post was refused after all), and every delivered entry is
//! either returned by exactly one [`CqCore::wait`] or, once the queue is closed, passed to its
//! discard function exactly once (entries still queued at close, and entries delivered after).
//!
//! Waiters spin before they sleep ([`Spin`]): a waiter that takes completions as fast as the
//! runner delivers them picks each up within a microsecond, and a delivery notifies only a
//! waiter that has gone to sleep.

use super::sync::{Condvar, Deadline, Events, Mutex, Spin, lock, wait};
use crate::error::Error;
use std::collections::VecDeque;

/// One finished piece of work, as a completion queue delivers it.
#[derive(Debug)]
pub struct Completion<T> {
    /// The tag given when the work was posted.
    pub tag: u64,
    /// The work's result; `Err` with [`Status::ShutDown`](crate::Status::ShutDown) if the
    /// runner stopped before running it, [`Status::Panic`](crate::Status::Panic) if it panicked.
    pub result: Result<T, Error>,
}

/// What happens to an entry that will never be waited for (the queue was closed).
pub(crate) type Discard<T> = Box<dyn Fn(Completion<T>) + Send + Sync>;

/// The shared core of a completion queue.
pub(crate) struct CqCore<T> {
    state: Mutex<CqState<T>>,
    ready: Condvar,
    /// Bumped by every delivery and by close: what waiters poll while they spin.
    events: Events,
    /// How waiters wait before they sleep.
    spin: Spin,
    /// `None`: dropping the entry is enough.
    discard: Option<Discard<T>>,
}

struct CqState<T> {
    entries: VecDeque<Completion<T>>,
    /// Posted work whose completion has not arrived yet.
    reserved: usize,
    capacity: usize,
    closed: bool,
    /// Threads sleeping in `wait`.
    waiters: usize,
}

/// Why room could not be reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CqRefused {
    /// Entries and reservations fill the capacity.
    Full,
    /// The queue is closed.
    Closed,
}

/// Why a wait returned without an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CqWaitError {
    /// The deadline passed.
    TimedOut,
    /// The queue is closed.
    Closed,
}

impl<T> CqCore<T> {
    /// An empty queue with room for `capacity` (at least 1) entries.
    pub(crate) fn new(capacity: usize, discard: Option<Discard<T>>) -> CqCore<T> {
        CqCore {
            state: Mutex::new(CqState {
                entries: VecDeque::new(),
                reserved: 0,
                capacity: capacity.max(1),
                closed: false,
                waiters: 0,
            }),
            ready: Condvar::new(),
            events: Events::new(),
            spin: Spin::new(),
            discard,
        }
    }

    /// Reserves room for one completion (at post time).
    pub(crate) fn reserve(&self) -> Result<(), CqRefused> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(CqRefused::Closed);
        }
        if state.entries.len() + state.reserved >= state.capacity {
            return Err(CqRefused::Full);
        }
        state.reserved += 1;
        Ok(())
    }

    /// Gives back a reservation whose work was never accepted.
    pub(crate) fn unreserve(&self) {
        let mut state = lock(&self.state);
        state.reserved -= 1;
    }

    /// Delivers a completion into its reserved room, or to the discard function if the queue
    /// has been closed meanwhile.
    pub(crate) fn deliver(&self, completion: Completion<T>) {
        let mut state = lock(&self.state);
        debug_assert!(state.reserved > 0, "every delivery has a reservation");
        state.reserved -= 1;
        if state.closed {
            drop(state);
            self.discard(completion);
            return;
        }
        state.entries.push_back(completion);
        self.events.bump();
        let wake = state.waiters > 0;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Takes the oldest entry, waiting for one until `deadline` (spinning first, then
    /// sleeping).
    pub(crate) fn wait(&self, deadline: Deadline) -> Result<Completion<T>, CqWaitError> {
        let mut state = lock(&self.state);
        let (mut spun, mut gave_up) = (false, None);
        loop {
            if let Some(completion) = state.entries.pop_front() {
                return Ok(completion);
            }
            if state.closed {
                return Err(CqWaitError::Closed);
            }
            if deadline.passed() {
                return Err(CqWaitError::TimedOut);
            }
            if !spun {
                spun = true;
                let snapshot = self.events.now();
                drop(state);
                // Whatever the spin saw, the loop re-checks under the lock before sleeping: a
                // delivery made after the snapshot is seen by one or the other.
                gave_up = self.spin.until(deadline, || self.events.since(snapshot));
                state = lock(&self.state);
                continue;
            }
            state.waiters += 1;
            state = wait(&self.ready, state, deadline);
            state.waiters -= 1;
            if let Some(gave_up) = gave_up.take() {
                self.spin.woke(gave_up);
            }
        }
    }

    /// Closes the queue: waiters are woken and refused, queued entries are discarded now (on
    /// the calling thread), later ones when they arrive. Returns whether this call closed it.
    pub(crate) fn close(&self) -> bool {
        let mut state = lock(&self.state);
        if std::mem::replace(&mut state.closed, true) {
            return false;
        }
        let entries = std::mem::take(&mut state.entries);
        self.events.bump();
        drop(state);
        self.ready.notify_all();
        for completion in entries {
            self.discard(completion);
        }
        true
    }

    /// Entries waiting to be taken, and completions reserved but not yet delivered.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.entries.len(), state.reserved)
    }

    fn discard(&self, completion: Completion<T>) {
        match &self.discard {
            Some(discard) => discard(completion),
            None => drop(completion),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn done(tag: u64) -> Completion<u64> {
        Completion { tag, result: Ok(tag) }
    }

    #[test]
    fn reservations_count_against_the_capacity() {
        let cq = CqCore::new(2, None);
        cq.reserve().unwrap();
        cq.reserve().unwrap();
        assert_eq!(cq.reserve(), Err(CqRefused::Full));
        cq.deliver(done(1));
        assert_eq!(cq.reserve(), Err(CqRefused::Full), "a queued entry still takes room");
        assert_eq!(cq.wait(Deadline::now()).unwrap().tag, 1);
        cq.reserve().unwrap();
        cq.unreserve();
        assert_eq!(cq.counts(), (0, 1));
        assert_eq!(cq.wait(Deadline::now()).unwrap_err(), CqWaitError::TimedOut);
    }

    #[test]
    fn close_discards_queued_and_late_entries_exactly_once() {
        let discarded = Arc::new(AtomicUsize::new(0));
        let counter = discarded.clone();
        let cq = CqCore::new(
            4,
            Some(Box::new(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            }) as Discard<u64>),
        );
        cq.reserve().unwrap();
        cq.reserve().unwrap();
        cq.deliver(done(1));
        assert!(cq.close());
        assert!(!cq.close());
        assert_eq!(discarded.load(Ordering::Relaxed), 1);
        cq.deliver(done(2));
        assert_eq!(discarded.load(Ordering::Relaxed), 2);
        assert_eq!(cq.wait(Deadline::Never).unwrap_err(), CqWaitError::Closed);
        assert_eq!(cq.reserve(), Err(CqRefused::Closed));
    }
}
