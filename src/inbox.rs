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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::Waker;

/// Requests queued process-wide and not yet run (the `deferred_pending` counter).
static DEFERRED_PENDING: AtomicU64 = AtomicU64::new(0);

/// Number of destroy requests queued and not yet taken by their owners.
pub(crate) fn deferred_pending() -> u64 {
    DEFERRED_PENDING.load(Ordering::Relaxed)
}

/// A thread's inbox of destroy requests (mixed handle keys).
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    pending: AtomicBool,
    /// Woken after each push, if set: a thread that sleeps outside the library (a runner
    /// waiting for work) learns that it has requests to run.
    waker: OnceLock<Waker>,
}

#[derive(Debug, Default)]
struct InboxState {
    closed: bool,
    keys: Vec<u64>,
}

/// The inbox was closed: its owner has exited (or is exiting past the point of no return).
#[derive(Debug)]
pub(crate) struct Closed;

impl Inbox {
    /// Queues a destroy request for `key`; refused once the owner has closed the inbox.
    pub(crate) fn push(&self, key: u64) -> Result<(), Closed> {
        let mut state = self.state.lock().unwrap_or_else(|poison| poison.into_inner());
        if state.closed {
            return Err(Closed);
        }
        state.keys.push(key);
        DEFERRED_PENDING.fetch_add(1, Ordering::Relaxed);
        // Release pairs with the owner's acquire load in `has_pending`.
        self.pending.store(true, Ordering::Release);
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

    /// Whether requests may be waiting. Cheap enough for every entry point.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes every queued request (owner only). The caller must `settle` each one it takes.
    pub(crate) fn take(&self) -> Vec<u64> {
        let mut state = self.state.lock().unwrap_or_else(|poison| poison.into_inner());
        self.pending.store(false, Ordering::Relaxed);
        std::mem::take(&mut state.keys)
    }

    /// Closes the inbox for good and takes what was queued before (owner, at exit).
    pub(crate) fn close_and_take(&self) -> Vec<u64> {
        let mut state = self.state.lock().unwrap_or_else(|poison| poison.into_inner());
        state.closed = true;
        self.pending.store(false, Ordering::Relaxed);
        std::mem::take(&mut state.keys)
    }

    /// Whether the owner has closed the inbox.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner()).closed
    }
}

/// Marks `count` taken requests as handled (run, found stale, or dropped with their table).
pub(crate) fn settle(count: usize) {
    DEFERRED_PENDING.fetch_sub(count as u64, Ordering::Relaxed);
}

#[cfg(test)]
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
        assert!(inbox.push(3).is_err());
        assert!(!inbox.has_pending());
        assert!(inbox.is_closed());
    }
}
