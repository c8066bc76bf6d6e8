//! The object lifecycle apart from the checks: destroy requests queued by other threads (I5),
//! the sweep that destroys everything a thread owns (`thread_cleanup`, thread exit), running
//! destructors on the owner, and containing the panics they raise (I3).
//!
//! Destructors always run with the table released, one entry at a time, so they may call back
//! into the library (a parent may destroy its children).

use crate::error::{Error, Status};
use crate::handle::Handle;
use crate::identity;
use crate::inbox;
use crate::refusal::{What, describe_kind};
use crate::state::{ThreadState, with_state};
use crate::table::{Kind, Refusal as TableRefusal, Removed};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Why entries are being destroyed, which decides what happens to busy and missing ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    /// Requests from `destroy_later`: a busy entry waits; a missing one is a stale request.
    Deferred,
    /// Cleanup or exit destroying the whole table: missing entries were destroyed meanwhile.
    Sweep,
}

impl Reason {
    /// How a destruction for this reason is worded in site records.
    fn site(self) -> &'static str {
        match self {
            Reason::Deferred => "by a destroy_later request",
            Reason::Sweep => "at thread cleanup or exit",
        }
    }
}

impl ThreadState {
    /// [`ThreadState::run_pending`] after a successful call, which has its status already:
    /// a destructor's panic is reported by the counters, not by that call. `extern "C"`, and
    /// so known never to unwind (anything that escapes is caught here and counted as a panic):
    /// the borrow fast path that calls it then needs no unwinding path of its own.
    #[cold]
    #[inline(never)]
    #[allow(improper_ctypes_definitions, reason = "called from Rust only; the ABI is for `nounwind`")]
    pub(crate) extern "C" fn run_pending_after_success(&self) {
        // A panic here is the library's own (destructors' are caught inside), and is counted.
        if catch_and_discard(|| drop(self.run_pending())) {
            self.counters.panicked();
        }
    }

    /// Runs queued destroy requests. Requests for busy objects stay queued; requests whose
    /// object is already gone are counted as stale. Returns the first destructor panic.
    pub(crate) fn run_pending(&self) -> Result<(), Error> {
        let keys = self.record.inbox.take();
        let (_, result) = self.destroy_keys(&keys, Reason::Deferred);
        inbox::settle(keys.len());
        result
    }

    /// Destroys the entries `keys` name, one at a time with the table released in between,
    /// so destructors may destroy other entries (then skipped here). Returns how many this
    /// call destroyed and the first destructor panic.
    fn destroy_keys(&self, keys: &[u64], reason: Reason) -> (usize, Result<(), Error>) {
        let mut destroyed = 0;
        let mut first_error = Ok(());
        for &key in keys {
            let removed = self.table.borrow_mut().remove(key, None);
            match removed {
                Err(TableRefusal::Busy) => {
                    if reason == Reason::Deferred {
                        // Still borrowed: run after the borrow ends (or by the exit sweep).
                        let _ = self.record.inbox.requeue(key);
                    }
                }
                Ok(removed) => {
                    crate::sites::record_destroyed(self, key, reason.site());
                    destroyed += 1;
                    first_error = first_error.and(self.run_destructor(removed));
                }
                Err(_) if reason == Reason::Deferred => {
                    // Nobody is waiting for this answer: count it and leave the message.
                    let refusal = self.violation(
                        Status::Stale,
                        "destroy_later",
                        What::StaleDeferred(Handle { owner: self.id, key }),
                    );
                    self.set_last_error(refusal);
                }
                Err(_) => {}
            }
        }
        (destroyed, first_error)
    }

    /// Runs a removed entry's destructor on this thread, with the table released.
    pub(crate) fn run_destructor(&self, removed: Removed) -> Result<(), Error> {
        let outcome = match removed.kind {
            Kind::Foreign { destructor: Some(destructor), .. } => {
                // SAFETY: the destructor and object were registered together by this thread,
                // which owns the object (I1); the entry was removed from the table before this
                // call, so this runs exactly once (I5). If it unwinds, the process aborts.
                crate::unwind::abort_on_unwind("a destructor (tg_destructor)", || unsafe {
                    destructor(removed.object)
                });
                Ok(())
            }
            Kind::Foreign { destructor: None, .. } => Ok(()),
            Kind::Native(native) => catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: the entry's NativeType was created for the same T as the
                // `Box<T>::into_raw` that produced `object` (see `register`), and the entry was
                // removed before this call, so the box is freed exactly once, on its owner.
                unsafe { (native.drop)(removed.object) }
            }))
            .map_err(|payload| {
                self.counters.panicked();
                let text = panic_text(&*payload);
                discard_panic(payload);
                Error::new(Status::Panic, format!("destructor of {} panicked: {text}", describe_kind(&removed.kind)))
            }),
        };
        self.counters.destroyed();
        outcome
    }

    /// Destroys everything this thread owns (cleanup and exit). Registrations made by
    /// destructors meanwhile are refused, so one sweep empties the table.
    fn destroy_all(&self) -> Result<(), Error> {
        // Nested (a destructor calling thread_cleanup during exit): keep the outer flag.
        let was_cleaning = self.cleaning.replace(true);
        let mut result = self.run_pending();
        loop {
            let keys = self.table.borrow().live_keys();
            if keys.is_empty() {
                break;
            }
            // An object may already be gone when its turn comes (a parent destroyed it).
            let (destroyed, outcome) = self.destroy_keys(&keys, Reason::Sweep);
            result = result.and(outcome);
            if destroyed == 0 {
                // Only busy entries remain: a borrow was abandoned (pthread_exit or longjmp out
                // of a callback, which SECURITY.md rules out). Leave them rather than spin.
                break;
            }
        }
        // Requests queued meanwhile named objects the sweep has destroyed.
        let late = self.record.inbox.take();
        inbox::settle(late.len());
        self.cleaning.set(was_cleaning);
        result
    }
}

/// Thread exit (called from the state's exit hook): close the inbox, run what was queued,
/// destroy everything, then mark the thread as exited. Each step runs whatever happened in the
/// one before (a panic is caught and its payload dropped safely): the thread always leaves the
/// registry, and its requests are always settled.
pub(crate) fn exit_thread(state: &ThreadState) {
    state.cleaning.set(true);
    let queued = state.record.inbox.close_and_take();
    catch_and_discard(|| drop(state.destroy_keys(&queued, Reason::Deferred)));
    inbox::settle(queued.len());
    catch_and_discard(|| drop(state.destroy_all()));
    identity::unregister_thread(state.id);
}

/// Runs `f`, catching a panic and dropping its payload safely (see [`discard_panic`]);
/// whether it panicked.
pub(crate) fn catch_and_discard(f: impl FnOnce()) -> bool {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => false,
        Err(payload) => {
            discard_panic(payload);
            true
        }
    }
}

/// Drops a caught panic's payload. A payload's `Drop` may panic in turn: that second panic is
/// caught and its payload forgotten (leaked) rather than dropped, so no chain of payloads can
/// unwind out of the caller.
pub(crate) fn discard_panic(payload: Box<dyn std::any::Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs the destroy requests queued for the calling thread.
pub(crate) fn run_pending() -> Result<(), Error> {
    with_state(|state| state.run_pending())
}

/// Destroys everything the calling thread owns, now. Refused from inside a borrow.
pub(crate) fn thread_cleanup() -> Result<(), Error> {
    with_state(|state| {
        if state.depth.get() > 0 {
            return Err(state.violation(Status::Busy, "thread_cleanup", What::CleanupInBorrow).into());
        }
        state.destroy_all()
    })
}
