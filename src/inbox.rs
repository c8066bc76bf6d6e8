//! Deferred destruction: the per-thread inbox of destroy requests sent by other threads.
//!
//! `tg_destroy_later` may be called on any thread (a Go finalizer runs wherever it likes), but
//! only the owner may touch the object (I1). So a request from another thread carries just the
//! handle's key into the owner's inbox; the owner runs it after its next successful
//! register, borrow or destroy (outside any borrow), at
//! `tg_run_pending`, at `tg_thread_cleanup`, or at its exit (I5).
//!
//! The race with the owner's exit is settled by one mutex: a push either happens before the
//! owner closes the inbox (and the owner drains it after closing, so the request runs on the
//! owner) or after (and is refused with `TG_ERR_OWNER_EXITED`). Never accepted and lost, never
//! run elsewhere. The owner's hot path reads only the `pending` flag, a plain atomic load.
//! `loom_tests` model-checks this handshake over every interleaving.
//!
//! An inbox holds at most [`PENDING_LIMIT`] requests: a thread that never calls in cannot be
//! made to grow without bound by others. A push beyond it is refused (`TG_ERR_LIMIT`); the
//! object stays owned, and its owner's exit or cleanup still destroys it. Only the owner's own
//! re-queueing of requests for objects it is borrowing bypasses the bound (at most one per
//! busy object, and those were inside the bound when they came).

#[cfg(all(loom, test))]
use loom::sync::{Mutex, MutexGuard, atomic::AtomicBool};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(all(loom, test)))]
use std::sync::{Mutex, MutexGuard, atomic::AtomicBool};
use std::task::Waker;

/// The most destroy requests queued to one thread and not yet run by it (2^20, 8 MiB of keys):
/// [`destroy_later`](crate::destroy_later) (`tg_destroy_later` in C) beyond it is refused with
/// [`Status::Limit`](crate::Status::Limit) until the owner runs its requests.
pub const PENDING_LIMIT: usize = 1 << 20;

/// Requests queued process-wide and not yet run (the `deferred_pending` counter).
static DEFERRED_PENDING: AtomicU64 = AtomicU64::new(0);

/// Number of destroy requests queued and not yet taken by their owners.
pub(crate) fn deferred_pending() -> u64 {
    DEFERRED_PENDING.load(Ordering::Relaxed)
}

/// A thread's inbox of destroy requests (mixed handle keys).
#[derive(Debug)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    pending: AtomicBool,
    /// Woken after each push, if set: a thread that sleeps outside the library (a runner
    /// waiting for work) learns that it has requests to run.
    waker: OnceLock<Waker>,
}

impl Default for Inbox {
    fn default() -> Inbox {
        Inbox { state: Mutex::new(InboxState::default()), pending: AtomicBool::new(false), waker: OnceLock::new() }
    }
}

/// The inbox's lock, held (see [`Inbox::lock_for_fork`]).
#[cfg_attr(miri, allow(dead_code))] // the fork handlers are not built under Miri
pub(crate) type InboxLock<'a> = MutexGuard<'a, InboxState>;

/// What the inbox's mutex guards.
#[derive(Debug, Default)]
pub(crate) struct InboxState {
    closed: bool,
    keys: Vec<u64>,
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The owner has exited (or is exiting past the point of no return).
    Closed,
    /// The inbox holds [`PENDING_LIMIT`] requests.
    Full,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues a destroy request for `key`; refused once the owner has closed the inbox or when
    /// it is full.
    pub(crate) fn push(&self, key: u64) -> Result<(), Refused> {
        self.push_within(key, PENDING_LIMIT)
    }

    /// Queues a request again that the owner took but could not run yet (its object is
    /// borrowed). Not bounded: see the module doc.
    pub(crate) fn requeue(&self, key: u64) -> Result<(), Refused> {
        self.push_within(key, usize::MAX)
    }

    fn push_within(&self, key: u64, limit: usize) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.keys.len() >= limit {
            return Err(Refused::Full);
        }
        state.keys.push(key);
        DEFERRED_PENDING.fetch_add(1, Ordering::Relaxed);
        // The lock publishes the key; the flag only tells the owner to take the lock. Relaxed
        // is enough: an owner whose call happens after this push (through any synchronisation)
        // reads the flag as set, as every access to one atomic respects happens-before.
        self.pending.store(true, Ordering::Relaxed);
        drop(state);
        if let Some(waker) = self.waker.get() {
            waker.wake_by_ref();
        }
        Ok(())
    }

    /// Sets the waker that each later push wakes (once per inbox; later calls are ignored).
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Whether requests may be waiting. Cheap enough for every entry point (see `push_within`
    /// for why a relaxed load is enough).
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Takes every queued request (owner only). The caller must `settle` each one it takes.
    pub(crate) fn take(&self) -> Vec<u64> {
        let mut state = self.lock();
        self.pending.store(false, Ordering::Relaxed);
        std::mem::take(&mut state.keys)
    }

    /// Closes the inbox for good and takes what was queued before (owner, at exit).
    pub(crate) fn close_and_take(&self) -> Vec<u64> {
        let mut state = self.lock();
        state.closed = true;
        self.pending.store(false, Ordering::Relaxed);
        std::mem::take(&mut state.keys)
    }

    /// Holds the inbox's lock across `fork` (see `identity::fork`).
    #[cfg_attr(miri, allow(dead_code))] // the fork handlers are not built under Miri
    pub(crate) fn lock_for_fork(&self) -> InboxLock<'_> {
        self.lock()
    }

    /// In a forked child, for a thread that does not exist there: closes its inbox and drops
    /// what was queued (counted as settled), so later pushes are refused. An inbox whose lock
    /// was held by a vanished thread at the fork stays as it is (nobody can take it).
    #[cfg_attr(miri, allow(dead_code))] // the fork handlers are not built under Miri
    pub(crate) fn abandon_after_fork(&self) {
        if let Ok(mut state) = self.state.try_lock() {
            state.closed = true;
            self.pending.store(false, Ordering::Relaxed);
            settle(std::mem::take(&mut state.keys).len());
        }
    }

    /// Whether the owner has closed the inbox.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Marks `count` taken requests as handled (run, found stale, or dropped with their table).
pub(crate) fn settle(count: usize) {
    DEFERRED_PENDING.fetch_sub(count as u64, Ordering::Relaxed);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn push_after_close_is_refused_and_nothing_is_lost() {
        let inbox = Inbox::default();
        inbox.push(1).unwrap();
        inbox.push(2).unwrap();
        assert!(inbox.has_pending());
        let taken = inbox.close_and_take();
        assert_eq!(taken, vec![1, 2]);
        settle(taken.len());
        assert_eq!(inbox.push(3), Err(Refused::Closed));
        assert_eq!(inbox.requeue(3), Err(Refused::Closed));
        assert!(!inbox.has_pending());
        assert!(inbox.is_closed());
    }

    #[test]
    #[cfg_attr(miri, ignore = "2^20 pushes")]
    fn a_full_inbox_refuses_pushes_but_takes_requeued_requests() {
        let inbox = Inbox::default();
        for key in 0..PENDING_LIMIT as u64 {
            inbox.push(key).unwrap();
        }
        assert_eq!(inbox.push(1), Err(Refused::Full));
        assert_eq!(inbox.requeue(1), Ok(()), "the owner's own re-queue is never lost");
        let taken = inbox.take();
        assert_eq!(taken.len(), PENDING_LIMIT + 1);
        settle(taken.len());
        assert_eq!(inbox.push(1), Ok(()), "room again once the owner took its requests");
        settle(inbox.close_and_take().len());
    }

    #[test]
    fn an_abandoned_inbox_is_closed_and_settled() {
        let inbox = Inbox::default();
        inbox.push(1).unwrap();
        inbox.abandon_after_fork();
        assert_eq!(inbox.push(2), Err(Refused::Closed));
        assert!(!inbox.has_pending());
        assert!(inbox.close_and_take().is_empty(), "the dropped request left the inbox (and was settled)");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Model checks of the inbox's handshake with its owner's exit (`loom`): every
    //! interleaving of pushes from other threads with the owner's run and exit.
    //!
    //! Run with: `RUSTFLAGS="--cfg loom" cargo test --release --lib inbox::loom`

    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// The owner's exit as `guard::exit_thread` does it: close, then run what was queued.
    fn exit(inbox: &Inbox, ran: &mut Vec<u64>) {
        let taken = inbox.close_and_take();
        settle(taken.len());
        ran.extend(taken);
    }

    /// A push racing the owner's exit is either run by the owner or refused, exactly once;
    /// never accepted and lost.
    #[test]
    fn push_racing_owner_exit_is_run_by_the_owner_or_refused() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::default());
            let pusher = {
                let inbox = inbox.clone();
                thread::spawn(move || {
                    let mut accepted = Vec::new();
                    for key in [1, 2] {
                        match inbox.push(key) {
                            Ok(()) => accepted.push(key),
                            Err(refused) => assert_eq!(refused, Refused::Closed),
                        }
                    }
                    accepted
                })
            };
            let mut ran = Vec::new();
            exit(&inbox, &mut ran);
            let accepted = pusher.join().unwrap();
            assert_eq!(ran, accepted, "every accepted request ran on the owner, once, in order");
            assert!(inbox.close_and_take().is_empty(), "nothing lands after the close");
        });
    }

    /// While the owner lives, a push is seen by the owner's next `has_pending` check after the
    /// push returned (the flag is never cleared without taking the request with it), and a run
    /// followed by the exit takes every accepted request exactly once.
    #[test]
    fn the_pending_flag_never_hides_a_request() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::default());
            let pusher = {
                let inbox = inbox.clone();
                thread::spawn(move || inbox.push(7).unwrap())
            };
            let mut ran = Vec::new();
            if inbox.has_pending() {
                let taken = inbox.take();
                settle(taken.len());
                ran.extend(taken);
            }
            pusher.join().unwrap();
            // The push returned: the owner must see it now unless it already took it.
            assert!(ran == [7] || inbox.has_pending(), "a pushed request is either taken or flagged");
            exit(&inbox, &mut ran);
            assert_eq!(ran, [7]);
        });
    }

    /// Two threads requeue and push while the owner runs its requests: each request is taken
    /// exactly once between the run and the exit.
    #[test]
    fn requeue_and_push_are_each_taken_once() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::default());
            inbox.push(1).unwrap();
            let pusher = {
                let inbox = inbox.clone();
                thread::spawn(move || inbox.push(2).is_ok())
            };
            let mut ran = inbox.take();
            settle(ran.len());
            // The owner found key 1 busy and puts it back.
            inbox.requeue(1).unwrap();
            ran.retain(|&key| key != 1);
            let pushed = pusher.join().unwrap();
            exit(&inbox, &mut ran);
            ran.sort_unstable();
            assert!(pushed);
            assert_eq!(ran, [1, 2]);
        });
    }
}
