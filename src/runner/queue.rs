//! The runner's work queue: bounded, many producers, one consumer, drained in batches.
//!
//! Policy when full: a push that may not wait is refused at once ([`Refused::Full`], which
//! the API reports as `TG_ERR_LIMIT`); a push with a deadline (a blocking call) waits for room
//! until then. The queue never grows past its capacity. The consumer moves up to
//! [`MAX_BATCH`] jobs at a time out of the queue under one lock and runs them with the lock
//! released, so producers and the consumer contend once per batch on the consumer's side.
//! Memory is bounded by `capacity` queued jobs plus one batch in the consumer's hands.
//!
//! Closing is final: after [`WorkQueue::close`] every push is refused ([`Refused::Closed`]),
//! blocked producers are woken and refused, and the consumer takes what is left and sees the
//! end. A job is therefore either refused to its producer or handed to the consumer, exactly
//! once (checked by the loom models).
//!
//! Wake-ups are only sent to a thread that is (about to be) asleep: producers notify the
//! consumer only when it has said it waits, so a busy runner costs its producers no system call.
//! Before it says so, the consumer spins for a while ([`Spin`]): a producer that posts again
//! soon after its last job finds the runner awake, and the job starts within a microsecond
//! instead of after a wake-up; an idle runner sleeps after a few tens of microseconds.

use super::sync::{AtomicBool, Condvar, Deadline, Events, Mutex, Ordering, Spin, lock, wait};
use std::collections::VecDeque;

/// The most jobs the consumer takes out of the queue at once.
pub(crate) const MAX_BATCH: usize = 1024;

/// Why a push was refused; the job is handed back.
#[derive(Debug)]
pub(crate) enum Refused<T> {
    /// The queue was full (and stayed full until the deadline).
    Full(T),
    /// The queue is closed.
    Closed(T),
}

/// A bounded multi-producer, single-consumer queue.
pub(crate) struct WorkQueue<T> {
    state: Mutex<State<T>>,
    /// Signalled when jobs arrive, the queue closes, or the consumer is poked.
    not_empty: Condvar,
    /// Signalled when the consumer takes a batch (room) or the queue closes.
    not_full: Condvar,
    /// Set once the queue is closed: a lock-free hint for the consumer between jobs.
    closing: AtomicBool,
    /// Bumped by every push, close and poke: what the consumer polls while it spins.
    events: Events,
    /// How the consumer waits before it sleeps.
    spin: Spin,
}

struct State<T> {
    jobs: VecDeque<T>,
    capacity: usize,
    closed: bool,
    /// The consumer should wake up even without jobs (see [`WorkQueue::poke`]).
    poked: bool,
    /// The consumer waits (or is about to) and needs a notification.
    consumer_waiting: bool,
    /// Producers waiting for room.
    space_waiters: usize,
}

/// What the consumer got from [`WorkQueue::take_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// The queue is open (or still holds jobs): run the batch and come back.
    More,
    /// The queue is closed and empty: after this batch no job will ever arrive.
    Last,
}

impl<T> WorkQueue<T> {
    /// An empty queue for at most `capacity` (at least 1) waiting jobs. Memory grows on demand.
    pub(crate) fn new(capacity: usize) -> WorkQueue<T> {
        WorkQueue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                capacity: capacity.max(1),
                closed: false,
                poked: false,
                consumer_waiting: false,
                space_waiters: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            closing: AtomicBool::new(false),
            events: Events::new(),
            spin: Spin::new(),
        }
    }

    /// Appends `job`, waiting for room until `deadline` ([`Deadline::now`]: not at all).
    pub(crate) fn push(&self, job: T, deadline: Deadline) -> Result<(), Refused<T>> {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return Err(Refused::Closed(job));
            }
            if state.jobs.len() < state.capacity {
                break;
            }
            if deadline.passed() {
                return Err(Refused::Full(job));
            }
            state.space_waiters += 1;
            state = wait(&self.not_full, state, deadline);
            state.space_waiters -= 1;
        }
        state.jobs.push_back(job);
        self.events.bump();
        // Only the first producer after the consumer went to sleep sends the wake-up.
        let wake = std::mem::take(&mut state.consumer_waiting);
        drop(state);
        if wake {
            self.not_empty.notify_one();
        }
        Ok(())
    }

    /// Consumer only: waits until there are jobs, the queue is closed, or it was poked
    /// (spinning first, then sleeping); then moves up to [`MAX_BATCH`] jobs into `batch`
    /// (which must be empty).
    pub(crate) fn take_batch(&self, batch: &mut VecDeque<T>) -> Batch {
        debug_assert!(batch.is_empty());
        let mut state = lock(&self.state);
        let (mut spun, mut gave_up) = (false, None);
        while state.jobs.is_empty() && !state.closed && !state.poked {
            if !spun {
                spun = true;
                let snapshot = self.events.now();
                drop(state);
                // Whatever the spin saw, the loop condition re-checks under the lock before
                // sleeping: a push made after the snapshot is seen by one or the other.
                gave_up = self.spin.until(Deadline::Never, || self.events.since(snapshot));
                state = lock(&self.state);
                continue;
            }
            state.consumer_waiting = true;
            state = wait(&self.not_empty, state, Deadline::Never);
            if let Some(gave_up) = gave_up.take() {
                self.spin.woke(gave_up);
            }
        }
        state.consumer_waiting = false;
        state.poked = false;
        let n = state.jobs.len().min(MAX_BATCH);
        batch.extend(state.jobs.drain(..n));
        let outcome = if state.closed && state.jobs.is_empty() { Batch::Last } else { Batch::More };
        let room = n > 0 && state.space_waiters > 0;
        drop(state);
        if room {
            self.not_full.notify_all();
        }
        outcome
    }

    /// Closes the queue for good; returns whether this call closed it (false: it already was).
    pub(crate) fn close(&self) -> bool {
        let mut state = lock(&self.state);
        let was_open = !std::mem::replace(&mut state.closed, true);
        self.closing.store(true, Ordering::Relaxed);
        self.events.bump();
        drop(state);
        if was_open {
            self.not_empty.notify_all();
            self.not_full.notify_all();
        }
        was_open
    }

    /// Whether the queue has been closed. A lock-free hint: exact once the consumer has seen
    /// [`Batch::Last`], and never true before `close` was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Wakes the consumer even if no job arrives (it has other things to do, e.g. destroy
    /// requests in its inbox).
    pub(crate) fn poke(&self) {
        let mut state = lock(&self.state);
        state.poked = true;
        self.events.bump();
        let wake = std::mem::take(&mut state.consumer_waiting);
        drop(state);
        if wake {
            self.not_empty.notify_one();
        }
    }

    /// Jobs waiting in the queue now (not counting the consumer's batch).
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).jobs.len()
    }
}

/// The consumer's loop: takes batches until the queue is closed and empty. Each job goes to
/// `run` while the queue is open and to `fail` once it is closing (work that has started
/// finishes; work not yet started is failed). `between` runs after every batch.
pub(crate) fn consume<T>(
    queue: &WorkQueue<T>,
    mut run: impl FnMut(T),
    mut fail: impl FnMut(T),
    mut between: impl FnMut(),
) {
    let mut batch = VecDeque::with_capacity(MAX_BATCH);
    loop {
        let outcome = queue.take_batch(&mut batch);
        while let Some(job) = batch.pop_front() {
            if queue.is_closing() { fail(job) } else { run(job) }
        }
        between();
        if outcome == Batch::Last {
            return;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_queue_refuses_at_once_and_a_deadline_push_times_out() {
        let queue = WorkQueue::new(2);
        queue.push(1, Deadline::now()).unwrap();
        queue.push(2, Deadline::now()).unwrap();
        assert!(matches!(queue.push(3, Deadline::now()), Err(Refused::Full(3))));
        let deadline = Deadline::after(Some(Duration::from_millis(20)));
        assert!(matches!(queue.push(4, deadline), Err(Refused::Full(4))));
        assert_eq!(queue.len(), 2);
        let mut batch = VecDeque::new();
        assert_eq!(queue.take_batch(&mut batch), Batch::More);
        assert_eq!(batch, [1, 2]);
        queue.push(5, Deadline::now()).unwrap();
    }

    #[test]
    fn close_refuses_pushes_and_ends_the_consumer_after_the_rest() {
        let queue = WorkQueue::new(8);
        queue.push(1, Deadline::now()).unwrap();
        assert!(queue.close());
        assert!(!queue.close());
        assert!(matches!(queue.push(2, Deadline::Never), Err(Refused::Closed(2))));
        let (mut ran, mut failed) = (vec![], vec![]);
        consume(&queue, |job| ran.push(job), |job| failed.push(job), || ());
        assert!(ran.is_empty());
        assert_eq!(failed, [1]);
    }

    #[test]
    fn batches_are_at_most_max_batch() {
        let queue = WorkQueue::new(3 * MAX_BATCH);
        for i in 0..(2 * MAX_BATCH + 1) {
            queue.push(i, Deadline::now()).unwrap();
        }
        let mut batch = VecDeque::new();
        assert_eq!(queue.take_batch(&mut batch), Batch::More);
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(queue.len(), MAX_BATCH + 1);
    }

    #[test]
    fn a_blocked_producer_gets_room_when_the_consumer_takes_a_batch() {
        let queue = std::sync::Arc::new(WorkQueue::new(1));
        queue.push(0, Deadline::now()).unwrap();
        let producer = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.push(1, Deadline::Never).is_ok())
        };
        let mut batch = VecDeque::new();
        let mut seen = vec![];
        while seen.len() < 2 {
            queue.take_batch(&mut batch);
            seen.extend(batch.drain(..));
        }
        assert!(producer.join().unwrap());
        assert_eq!(seen, [0, 1]);
    }
}
