//! Refusal wording: every refused call is recorded as facts and worded here, in one place.
//!
//! A refused call records what it was about ([`Refusal`]: status, operation, handle, owner and
//! caller IDs, and what else the message needs) and nothing more: recording copies a few words
//! and allocates nothing, so a refusal costs about as much as the checks that found it. The
//! message is written only when someone asks for it ([`Refusal::word`]: `tg_last_error`,
//! [`last_error`](crate::last_error), [`Error::message`](crate::Error::message)), or right
//! away under the LOG and ABORT violation policies, which print it.
//!
//! Thread names are looked up when the message is written, from the thread IDs recorded. An
//! owner that was alive when the call was refused may have exited by then: the message says so
//! ("alive when refused, exited since") rather than call it alive.
//!
//! Operations that add refusals add a [`What`] variant and its wording here. Messages that are
//! not about a handle's checks (a runner's queue, a bad argument) stay worded where they arise
//! and travel as [`What::Text`].

use crate::error::Status;
use crate::handle::Handle;
use crate::identity::{self, Liveness};
use crate::table::{Expected, Kind};

/// A refused call, as facts: worded by [`Refusal::word`] when the message is asked for.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    /// The status the caller got.
    pub(crate) status: Status,
    /// The operation refused, as callers know it (`"tg_with"`, `"with"`, `"destroy"`, ...).
    pub(crate) op: &'static str,
    /// The ID of the thread that made the call (0 if it has none: a thread past its cleanup).
    pub(crate) caller: u64,
    /// What the refusal was about.
    pub(crate) what: What,
}

/// What a refusal was about: the facts its message needs beyond status, operation and caller.
#[derive(Clone, Debug)]
pub(crate) enum What {
    /// The null handle.
    NullHandle,
    /// A handle owned by another thread, alive when the call was refused.
    WrongThread(Handle),
    /// A handle whose owner had exited (its objects destroyed) when the call was refused.
    OwnerExited(Handle),
    /// A handle whose owner was exiting: its inbox was closed, its objects being destroyed.
    OwnerExiting(Handle),
    /// A handle naming an owner ID that was never issued (forged or corrupted).
    NeverIssued(Handle),
    /// A handle in the reserved owner range: a runner or completion-queue handle, or forged.
    Reserved(Handle),
    /// A handle of the calling thread that names no live object.
    Stale(Handle),
    /// A deferred destroy request (queued by another thread) whose object was already gone.
    StaleDeferred(Handle),
    /// A handle naming an object of another type than the call expected (boxed: the rarest
    /// refusal keeps the others small).
    WrongType(Box<(Handle, Kind, Expected)>),
    /// A handle whose object is borrowed further up the calling thread's stack.
    Busy(Handle),
    /// `thread_cleanup` called from inside a borrow callback.
    CleanupInBorrow,
    /// A required pointer argument (named) was NULL.
    NullArgument(&'static str),
    /// A handle detached into a token (see `transfer`), with what became of its object, worded
    /// by `transfer::detached_refusal` when refused (boxed: rare).
    Detached(Box<(Handle, String)>),
    /// A message worded where it arose (not about a handle's checks).
    Text(String),
}

impl What {
    /// The handle a refusal was about, for the sites mode to describe; `None` for refusals
    /// that name no object (a null handle, an exiting owner, a bad argument).
    pub(crate) fn handle(&self) -> Option<Handle> {
        match self {
            What::WrongThread(handle)
            | What::OwnerExited(handle)
            | What::NeverIssued(handle)
            | What::Reserved(handle)
            | What::Stale(handle)
            | What::StaleDeferred(handle)
            | What::Busy(handle) => Some(*handle),
            What::WrongType(facts) => Some(facts.0),
            What::Detached(facts) => Some(facts.0),
            What::NullHandle
            | What::OwnerExiting(_)
            | What::CleanupInBorrow
            | What::NullArgument(_)
            | What::Text(_) => None,
        }
    }
}

impl Refusal {
    /// A refusal of `op` by thread `caller`.
    pub(crate) fn new(status: Status, op: &'static str, caller: u64, what: What) -> Refusal {
        Refusal { status, op, caller, what }
    }

    /// The message: what `tg_last_error` returns for this refusal. A stale refusal's message
    /// says so if another copy of threadguard is loaded (looked for now, not when refused:
    /// a stale handle is how a handle of another copy looks).
    #[cold]
    pub(crate) fn word(&self) -> String {
        let mut text = self.word_facts();
        if self.status == Status::Stale
            && !matches!(self.what, What::Text(_))
            && let Some(note) = crate::copies::note_for_stale()
        {
            text.push_str(&note);
        }
        text
    }

    /// The message without the note on other copies.
    fn word_facts(&self) -> String {
        let op = self.op;
        let caller = || describe_thread(self.caller);
        match &self.what {
            What::NullHandle => format!("{op}: null handle, used from thread {}", caller()),
            What::WrongThread(handle) => format!(
                "{op}: handle {handle:?} is owned by thread {}, used from thread {}",
                describe_owner(handle.owner),
                caller()
            ),
            What::OwnerExited(handle) => format!(
                "{op}: handle {handle:?} is owned by thread {} (exited; its objects were destroyed), used from thread {}",
                handle.owner,
                caller()
            ),
            What::OwnerExiting(handle) => format!(
                "{op}: handle {handle:?} is owned by thread {}, which is exiting; its objects are being destroyed",
                handle.owner
            ),
            What::NeverIssued(handle) => format!(
                "{op}: handle {handle:?} names owner thread {}, which was never issued (forged or corrupted handle), used from thread {}",
                handle.owner,
                caller()
            ),
            What::Reserved(handle) => format!(
                "{op}: handle {handle:?} is a runner or completion-queue handle (or a forged one), not a thread-owned object, used from thread {}",
                caller()
            ),
            What::Stale(handle) => format!(
                "{op}: handle {handle:?} of thread {} names no live object (destroyed, or a forged key)",
                caller()
            ),
            What::StaleDeferred(handle) => format!(
                "{op} (deferred): handle {handle:?} of thread {} names no live object (destroyed, or a forged key)",
                caller()
            ),
            What::WrongType(facts) => {
                let (handle, actual, expected) = &**facts;
                format!(
                    "{op}: handle {handle:?} names {}, expected {}",
                    describe_kind(actual),
                    describe_expected(*expected)
                )
            }
            What::Busy(handle) => format!(
                "{op}: handle {handle:?} is already borrowed further up thread {}'s stack (re-entrant call)",
                caller()
            ),
            What::CleanupInBorrow => {
                format!("{op}: thread {} is inside a borrow callback; call it after the borrow returns", caller())
            }
            What::NullArgument(what) => format!("{op}: {what} is NULL"),
            What::Detached(facts) => format!("{}, used from thread {}", facts.1, caller()),
            What::Text(text) => text.clone(),
        }
    }
}

/// `9 ("worker")` or `9`: a thread as messages name it, looked up now.
pub(crate) fn describe_thread(id: u64) -> String {
    match identity::liveness(id) {
        Liveness::Live(record) => record.describe(),
        _ => id.to_string(),
    }
}

/// The owner of a handle refused as wrong-thread: alive then; said so if it has exited since.
fn describe_owner(id: u64) -> String {
    match identity::liveness(id) {
        Liveness::Live(record) => record.describe_as("alive"),
        _ => format!("{id} (alive when refused, exited since)"),
    }
}

/// What an entry holds, in words.
pub(crate) fn describe_kind(kind: &Kind) -> String {
    match kind {
        Kind::Foreign { type_tag, .. } => format!("a C object with type tag {type_tag}"),
        Kind::Native(native) => format!("a Rust {}", (native.type_name)()),
    }
}

/// The type a caller expected, worded as [`describe_kind`] words what an entry holds (a C
/// object's destructor is not part of its type).
pub(crate) fn describe_expected(expected: Expected) -> String {
    describe_kind(&match expected {
        Expected::Foreign(type_tag) => Kind::Foreign { type_tag, destructor: None },
        Expected::Native(native) => Kind::Native(native),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_that_exits_after_the_refusal_is_not_called_alive() {
        let (owner, handle) = std::thread::spawn(|| {
            let handle = crate::register(0u8).unwrap();
            (crate::current_thread_id().unwrap(), handle)
        })
        .join()
        .unwrap();
        let refusal = Refusal::new(Status::WrongThread, "with", 0, What::WrongThread(handle));
        let message = refusal.word();
        assert!(message.contains(&format!("thread {owner} (alive when refused, exited since)")), "{message}");
    }
}
