//! The panic boundary shared by every entry point (I3).
//!
//! Nothing unwinds into C: the operation runs inside `catch_unwind`, a caught panic becomes
//! `TG_ERR_PANIC` with its message, and any error's message becomes the thread's last error.

use super::{TG_OK, tg_status};
use crate::error::{Error, Status};
use crate::guard::{panic_text, refuse};
use crate::state::{with_existing_state, with_state};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs an entry point's body and turns its outcome into a status code.
pub(crate) fn guarded(op: &str, body: impl FnOnce() -> Result<(), Error>) -> tg_status {
    let error = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return TG_OK,
        Ok(Err(error)) => error,
        Err(payload) => {
            let text = panic_text(&*payload);
            // Dropping a payload can itself panic; never let that escape either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            with_existing_state(|state| state.counters.panicked());
            Error::new(Status::Panic, format!("{op}: panic: {text}"))
        }
    };
    // Create the state if this thread has none yet: the message must not be lost.
    let _ = with_state(|state| {
        state.set_last_error(error.message());
        Ok(())
    });
    error.status().code()
}

/// Refuses a NULL pointer argument (counted as a violation).
pub(crate) fn null_pointer(op: &str, what: &str) -> Error {
    refuse(Status::NullPointer, format!("{op}: {what} is NULL"))
}
