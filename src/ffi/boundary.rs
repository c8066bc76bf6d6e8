//! The panic boundary shared by every entry point (I3).
//!
//! Nothing unwinds into C: the operation runs inside `catch_unwind`, a caught panic becomes
//! `TG_ERR_PANIC` with its message, and any error's message becomes the thread's last error.

use super::{TG_OK, tg_status};
use crate::error::{Error, Status};
use crate::guard::{discard_panic, panic_text, refuse};
use crate::refusal::What;
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
/// [`status`]), so no `Result` crosses the panic boundary.
#[inline(always)]
pub(crate) fn guarded_status(op: &str, body: impl FnOnce() -> tg_status) -> tg_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(status) => status,
        Err(payload) => panicked(op, payload),
    }
}

/// Runs a hot entry point's fast path, which either completes the call (`true`: `TG_OK`) or
/// declines it with nothing changed (`false`: `None`, and the entry point takes its slow path).
#[inline(always)]
pub(crate) fn guarded_fast(op: &str, body: impl FnOnce() -> bool) -> Option<tg_status> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(true) => Some(TG_OK),
        Ok(false) => None,
        Err(payload) => Some(panicked(op, payload)),
    }
}

/// The status code of an operation's outcome; an error becomes the thread's last error.
#[inline(always)]
pub(crate) fn status(outcome: Result<(), Error>) -> tg_status {
    match outcome {
        Ok(()) => TG_OK,
        Err(error) => failed(error),
    }
}

/// A refused call: its message becomes the thread's last error.
#[cold]
#[inline(never)]
fn failed(error: Error) -> tg_status {
    let status = error.status().code();
    let mut last = error.into_last();
    // A handle of another copy of the library is stale here (its key is in no table of ours).
    // A refusal still held as facts says so when it is worded; a message already worded (where
    // it arose, or by a policy that printed it) says so now, unless its wording did.
    if last.status == Status::Stale
        && let What::Text(text) = &mut last.what
        && let Some(note) = crate::copies::note_for_stale()
        && !text.ends_with(&note)
    {
        text.push_str(&note);
    }
    // Create the state if this thread has none yet: the message must not be lost.
    let _ = with_state(|state| {
        state.set_last_error(last);
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
