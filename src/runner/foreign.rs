//! What the C entry points (`src/ffi/runner.rs`) need beyond the Rust API: completion queues
//! of C results with their own handles, C discard functions, and C timeouts.

use super::completion::{Completion, CqCore, Discard};
use super::job::RawPtr;
use super::registry::{QUEUE_OWNER, Registry};
use crate::error::{Error, Status};
use crate::guard::refuse;
use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

/// A C discard function (`tg_discard_fn`): receives completions that will never be waited for.
pub(crate) type DiscardFn = unsafe extern "C-unwind" fn(tag: u64, status: i32, result: *mut c_void);

/// A completion queue created from C.
pub(crate) struct ForeignQueue {
    pub(crate) core: Arc<CqCore<RawPtr>>,
    pub(crate) capacity: usize,
}

/// Every live completion queue created from C, by handle.
pub(crate) static QUEUES: Registry<ForeignQueue> = Registry::new("completion queue", "destroyed", QUEUE_OWNER);

impl ForeignQueue {
    /// A queue for `capacity` completions whose undelivered entries go to `discard` (or are
    /// dropped: the results leak, which is the C caller's choice).
    pub(crate) fn new(capacity: usize, discard: Option<DiscardFn>) -> ForeignQueue {
        let discard = discard.map(|discard| {
            Box::new(move |completion: Completion<RawPtr>| {
                let (status, result) = split(completion.result);
                // SAFETY: the C caller registered `discard` for this queue's entries; each entry
                // reaches it at most once (it has left the queue), with the tag and the result
                // the work produced (or NULL). If it unwinds, the process aborts.
                crate::unwind::abort_on_unwind("a completion queue's discard function (tg_discard_fn)", || unsafe {
                    discard(completion.tag, status, result)
                })
            }) as Discard<RawPtr>
        });
        ForeignQueue { core: Arc::new(CqCore::new(capacity, discard)), capacity }
    }
}

/// A completion's C view: `(status, result)`, with a NULL result on error.
pub(crate) fn split(result: Result<RawPtr, Error>) -> (i32, *mut c_void) {
    match result {
        Ok(RawPtr(result)) => (0, result),
        Err(error) => (error.status().code(), std::ptr::null_mut()),
    }
}

/// A C timeout in milliseconds: `-1` waits forever, `0` does not wait.
pub(crate) fn timeout_from_ms(op: &str, timeout_ms: i64) -> Result<Option<Duration>, Error> {
    match timeout_ms {
        -1 => Ok(None),
        ms if ms >= 0 => Ok(Some(Duration::from_millis(ms.unsigned_abs()))),
        ms => Err(refuse(Status::InvalidArgument, format!("{op}: timeout {ms} ms is neither -1 (forever) nor >= 0"))),
    }
}
