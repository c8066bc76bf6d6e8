//! The panic boundary shared by every entry point (I3).
//!
//! Nothing unwinds into C: the operation runs inside `catch_unwind`, a caught panic becomes
//! `TG_ERR_PANIC` with its message, and any error's message becomes the thread's last error.

use super::{TG_OK, tg_status};
use crate::error::{Error, Status};
use crate::guard::{discard_panic, panic_text, refuse};
use crate::state::{with_existing_state, with_state};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs an entry point's body and turns its outcome into a status code.
#[inline]
pub(crate) fn guarded(op: &str, body: impl FnOnce() -> Result<(), Error>) -> tg_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => TG_OK,
        Ok(Err(error)) => failed(error),
        Err(payload) => panicked(op, payload),
    }
}

/// Runs a hot entry point's body, which turns its outcome into a status code itself (with
/// [`failed`] for an error), so no `Result` crosses the panic boundary.
#[inline(always)]
pub(crate) fn guarded_status(op: &str, body: impl FnOnce() -> tg_status) -> tg_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(status) => status,
        Err(payload) => panicked(op, payload),
    }
}

/// A refused call: its message becomes the thread's last error; its status code.
#[cold]
#[inline(never)]
pub(crate) fn failed(error: Error) -> tg_status {
    // A handle of another copy of the library is stale here (its key is in no table of ours).
    let note = if error.status() == Status::Stale { crate::copies::note_for_refused_handle() } else { None };
    // Create the state if this thread has none yet: the message must not be lost.
    let status = error.status().code();
    let _ = with_state(|state| {
        let last = error.into_last();
        state.set_last_error(match note {
            Some(note) => last.with_note(&note),
            None => last,
        });
        Ok(())
    });
    status
}

/// A caught panic: `TG_ERR_PANIC`, with its message as the thread's last error.
#[cold]
#[inline(never)]
fn panicked(op: &str, payload: Box<dyn std::any::Any + Send>) -> tg_status {
    let text = panic_text(&*payload);
    // Dropping a payload can itself panic, and so can the next one's: never let that escape.
    discard_panic(payload);
    with_existing_state(|state| state.counters.panicked());
    failed(Error::new(Status::Panic, format!("{op}: panic: {text}")))
}

/// Refuses a NULL pointer argument (counted as a violation).
pub(crate) fn null_pointer(op: &str, what: &str) -> Error {
    refuse(Status::NullPointer, format!("{op}: {what} is NULL"))
}
