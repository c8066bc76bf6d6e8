//! The checked operations: every path from a handle to an object goes through here. This
//! module checks and operates; the object lifecycle (deferred destroys, the sweep, thread
//! exit, destructors) is `lifecycle`, and the wording of refusals is `refusal`.
//!
//! Each operation checks, in this order, and stops at the first failure (the C contract):
//! null handle, owner thread (wrong thread / owner exited / never issued), slot (stale),
//! type, busy, then pointer arguments. The slot checks are `Table::check`, shared by every
//! operation. A refused call changes nothing but the violation counters and the last-error
//! message (I6). Only after a call has succeeded does the owner run destroy requests queued
//! for it by other threads (I5), so a refused call has no side effects and a borrowed object
//! cannot be destroyed under its borrower.
//!
//! A borrow first takes a fast path that makes every check with no side effect (a shared
//! view of the table, the busy mark in a `Cell`), marks the entry busy and calls; anything
//! unusual goes to a cold slow path that redoes the checks in the documented order and
//! records the refusal as facts.
//!
//! User code (borrow callbacks, destructors) always runs with the table released (the
//! hard part in DESIGN.md): the entry is marked busy (I4), what the call needs is copied out,
//! the table view ends, the user code runs, and a drop guard clears the mark (by slot index:
//! a busy entry cannot be removed) even if the code panics.

use crate::error::{Error, Status};
use crate::handle::Handle;
use crate::identity::{self, Liveness, Owner};
use crate::inbox;
pub(crate) use crate::lifecycle::{
    catch_and_discard, discard_panic, exit_thread, panic_text, run_pending, thread_cleanup,
};
use crate::refusal::{Refusal, What};
use crate::state::{ThreadState, with_existing_state, with_state};
pub(crate) use crate::table::Expected;
use crate::table::{Borrowed, Full, Kind, Refusal as TableRefusal};
use std::ffi::c_void;

impl ThreadState {
    /// Counts a refused call and applies the violation policy; returns the refusal to report.
    /// The message is worded now only if the policy prints it (see `refusal`).
    #[inline(always)]
    pub(crate) fn violation(&self, status: Status, op: &'static str, what: What) -> Refusal {
        self.counters.violation(status);
        let refusal = Refusal::new(status, op, self.id, what);
        if crate::sites::enabled() || (status.is_violation() && crate::diagnostics::policy_prints()) {
            return worded_now(refusal);
        }
        refusal
    }

    /// The refusal of a handle whose owner is not this thread.
    #[inline]
    fn foreign_owner(&self, op: &'static str, handle: Handle) -> Refusal {
        if crate::transfer::any_detached()
            && let Some(message) = crate::transfer::detached_refusal(op, handle)
        {
            return self.violation(Status::Stale, op, What::Detached(Box::new((handle, message))));
        }
        match self.owner_status(handle.owner) {
            Owner::Live => self.violation(Status::WrongThread, op, What::WrongThread(handle)),
            Owner::Exited => self.violation(Status::OwnerExited, op, What::OwnerExited(handle)),
            Owner::NeverIssued if handle.owner >= identity::FIRST_RESERVED_OWNER => {
                self.violation(Status::Stale, op, What::Reserved(handle))
            }
            Owner::NeverIssued => self.violation(Status::Stale, op, What::NeverIssued(handle)),
        }
    }

    /// Whether the thread `owner` (not this one) is live, exited or never issued. The last
    /// live owner asked about (its record) and the last exited one are remembered, so a loop
    /// of refusals takes the registry's lock once; an exited ID stays exited (IDs are never
    /// reused), and a live owner's record says when it exits. Inlined: it is the refusal path's
    /// usual answer, and the registry lookup it rarely needs stays a call.
    #[inline(always)]
    fn owner_status(&self, owner: u64) -> Owner {
        // 0 marks "none" and was never issued: it must reach the registry's answer.
        if owner != 0 && owner == self.last_exited_owner.get() {
            return Owner::Exited;
        }
        if let Ok(cached) = self.last_foreign_owner.try_borrow()
            && let Some(record) = cached.as_ref()
            && record.id == owner
        {
            return if record.has_exited() { Owner::Exited } else { Owner::Live };
        }
        self.owner_status_from_registry(owner)
    }

    /// [`ThreadState::owner_status`] when it must ask the registry, remembering the answer.
    #[cold]
    #[inline(never)]
    fn owner_status_from_registry(&self, owner: u64) -> Owner {
        match identity::liveness(owner) {
            Liveness::Live(record) => {
                if let Ok(mut cached) = self.last_foreign_owner.try_borrow_mut() {
                    *cached = Some(record);
                }
                Owner::Live
            }
            Liveness::Exited => {
                self.last_exited_owner.set(owner);
                Owner::Exited
            }
            Liveness::NeverIssued => Owner::NeverIssued,
        }
    }

    /// Checks null and owner; returns `Ok` if the handle belongs to this thread.
    #[inline]
    pub(crate) fn check_owner(&self, op: &'static str, handle: Handle) -> Result<(), Refusal> {
        // This thread's ID is never 0, so a null handle fails the comparison too.
        if handle.owner != self.id {
            return Err(self.not_owner(op, handle));
        }
        Ok(())
    }

    /// The refusal of a handle that is null or owned by another thread.
    #[cold]
    #[inline(never)]
    fn not_owner(&self, op: &'static str, handle: Handle) -> Refusal {
        self.not_owner_inline(op, handle)
    }

    /// [`ThreadState::not_owner`], inlined into the recorder of C borrow refusals, which then
    /// builds the refusal where the last error keeps it.
    #[inline(always)]
    fn not_owner_inline(&self, op: &'static str, handle: Handle) -> Refusal {
        if handle.is_null() {
            return self.violation(Status::NullHandle, op, What::NullHandle);
        }
        self.foreign_owner(op, handle)
    }

    /// The refusal of a handle of this thread that the table refused.
    #[inline(always)]
    pub(crate) fn refused(
        &self,
        op: &'static str,
        handle: Handle,
        refusal: TableRefusal,
        expected: Option<Expected>,
    ) -> Refusal {
        match (refusal, expected) {
            (TableRefusal::WrongType(actual), Some(expected)) => {
                self.violation(Status::WrongType, op, What::WrongType(Box::new((handle, actual, expected))))
            }
            (TableRefusal::Busy, _) => self.violation(Status::Busy, op, What::Busy(handle)),
            (TableRefusal::Stale | TableRefusal::WrongType(_), _) => self.stale(op, handle),
        }
    }

    #[inline(always)]
    fn stale(&self, op: &'static str, handle: Handle) -> Refusal {
        self.violation(Status::Stale, op, What::Stale(handle))
    }

    #[inline]
    fn null_argument(&self, op: &'static str, what: &'static str) -> Refusal {
        self.violation(Status::NullPointer, op, What::NullArgument(what))
    }

    /// Checks null, owner and slot; returns `Ok` if the handle names a live object of this thread.
    fn check_live(&self, op: &'static str, handle: Handle) -> Result<(), Refusal> {
        self.check_owner(op, handle)?;
        match self.table.borrow().contains(handle.key) {
            true => Ok(()),
            false => Err(self.stale(op, handle)),
        }
    }

    /// After a successful call at the outermost level, run what other threads queued.
    #[inline]
    fn after_success(&self) {
        // The flag first: it is almost always clear, and then the depth need not be read.
        if self.record.inbox.has_pending() && self.depth.get() == 0 {
            self.run_pending_after_success();
        }
    }
}

/// A refusal worded when it is made: under the sites mode (which appends what it knows of the
/// handle, as it stands now) or a violation policy that prints the message.
#[cold]
#[inline(never)]
fn worded_now(refusal: Refusal) -> Refusal {
    let mut text = refusal.word();
    if let Some(handle) = refusal.what.handle() {
        text.push_str(&crate::sites::describe(handle));
    }
    if refusal.status.is_violation() && crate::diagnostics::policy_prints() {
        crate::diagnostics::apply_policy(refusal.status, &text);
    }
    Refusal { what: What::Text(text), ..refusal }
}

/// Clears the busy mark and the depth when a borrow ends, also on unwind.
struct BorrowGuard<'a> {
    state: &'a ThreadState,
    borrowed: Borrowed,
}

impl Drop for BorrowGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.state.depth.set(self.state.depth.get() - 1);
        // SAFETY: the borrow began with no mutable borrow of the table live (the fast path's
        // `try_borrow_unguarded`, the slow path's `borrow`, succeeded), and every borrow of the
        // table the library takes is scoped to one of its calls, none of which runs user code
        // while it holds one: those taken while the borrow's code ran ended before it returned
        // (or unwound). So none is live, and the reference is used for one `Cell` store of the
        // entry's version (its busy mark). `borrowed` came from this thread's table, the one
        // it is given back to.
        unsafe { (*self.state.table.as_ptr()).end_borrow_unchecked(self.borrowed) };
    }
}

impl ThreadState {
    /// A borrow's fast path: every check (owner, liveness, type, busy, `call` non-null) with
    /// no side effect, then the call. `None` when anything is unusual, with nothing changed
    /// and `call` left in place: the slow path redoes the checks in the documented order and
    /// records the refusal.
    #[inline(always)]
    fn borrow_fast<R>(
        &self,
        handle: Handle,
        expected: Expected,
        call: &mut Option<impl FnOnce(*mut c_void) -> R>,
    ) -> Option<R> {
        // This thread's ID is never 0, so a null handle fails the comparison too.
        if handle.owner != self.id {
            return None;
        }
        let borrowed = {
            // SAFETY: `try_borrow_unguarded` refuses while a mutable borrow of the table is
            // live; the reference ends with this block, before any user code runs, and the
            // code in the block (the checks, one `Cell` store) takes no borrow of the table.
            let table = unsafe { self.table.try_borrow_unguarded() }.ok()?;
            let borrowed = table.ready(handle.key, expected)?;
            if call.is_none() {
                return None;
            }
            table.mark_busy(borrowed);
            borrowed
        };
        let call = call.take()?;
        Some(self.call_borrowed(borrowed, call))
    }

    /// Runs `call` on a borrowed object, which the checks passed and marked busy: counts the
    /// borrow's depth, clears the mark when the call ends (also on unwind), then runs what
    /// waits for the borrow to end. The borrow's one tail, for the fast and the slow path.
    #[inline(always)]
    fn call_borrowed<R>(&self, borrowed: Borrowed, call: impl FnOnce(*mut c_void) -> R) -> R {
        self.depth.set(self.depth.get() + 1);
        let result = {
            let _guard = BorrowGuard { state: self, borrowed };
            call(borrowed.object)
        };
        self.after_success();
        result
    }
}

/// Registers an object on the calling thread. On refusal the object is handed back.
pub(crate) fn register_entry(object: *mut c_void, kind: Kind) -> Result<Handle, (Error, *mut c_void)> {
    let result = with_state(|state| {
        if state.cleaning.get() {
            return Err(Error::new(
                Status::ShutDown,
                format!("register: thread {} is destroying everything it owns (cleanup or exit)", state.describe()),
            ));
        }
        let key = state.table.borrow_mut().insert(object, kind).map_err(|full| {
            Error::new(
                Status::Limit,
                match full {
                    Full::Disposers => format!(
                        "register: thread {}'s live objects use 2^29 distinct destructors and Rust types",
                        state.describe()
                    ),
                    Full::Slots => format!("register: thread {}'s table has 2^30 slots", state.describe()),
                },
            )
        })?;
        state.counters.created();
        crate::sites::record_registered(state, key);
        state.after_success();
        Ok(Handle { owner: state.id, key })
    });
    result.map_err(|error| (error, object))
}

/// Borrows the object `handle` names for the duration of `call`.
/// `call` is `None` when a C caller passed a NULL pointer (named `null_arg` in the message),
/// which is refused after the handle checks.
#[inline(always)]
pub(crate) fn borrow<R>(
    op: &'static str,
    handle: Handle,
    expected: Expected,
    call: Option<impl FnOnce(*mut c_void) -> R>,
    null_arg: &'static str,
) -> Result<R, Error> {
    let mut call = call;
    if let Some(Some(result)) = with_existing_state(|state| state.borrow_fast(handle, expected, &mut call)) {
        return Ok(result);
    }
    borrow_slow(op, handle, expected, call, null_arg)
}

/// A borrow the fast path declined, with every check in order: the refusal becomes the `Error`.
#[cold]
#[inline(never)]
pub(crate) fn borrow_slow<R>(
    op: &'static str,
    handle: Handle,
    expected: Expected,
    call: Option<impl FnOnce(*mut c_void) -> R>,
    null_arg: &'static str,
) -> Result<R, Error> {
    with_state(|state| state.borrow_checked(op, handle, expected, call, null_arg).map_err(Error::from))
}

/// Where a C borrow comes from: the entry point's name and what its callback argument is
/// called, for refusals. One constant per entry point, so a refusal passes one pointer.
pub(crate) struct BorrowSite {
    /// The entry point, as messages name it.
    pub(crate) op: &'static str,
    /// The callback argument, as messages name it when it is NULL.
    pub(crate) null_arg: &'static str,
}

/// A C borrow's fast path: `true` if every check passed and `call` ran; `false`, with
/// nothing changed, for anything unusual (then [`record_borrow_refusal`] and, if it finds
/// nothing to refuse, [`borrow_slow`] take over). Takes no arguments a refusal would need,
/// so the entry point keeps its own in place for the slow path.
#[inline(always)]
pub(crate) fn borrow_now(handle: Handle, expected: Expected, call: impl FnOnce(*mut c_void)) -> bool {
    let mut call = Some(call);
    matches!(with_existing_state(|state| state.borrow_fast(handle, expected, &mut call)), Some(Some(())))
}

/// Why a borrow is refused, checked in the documented order by [`ThreadState::borrow_refusal`]
/// and recorded as the thread's last error; its status code. `None` if the thread has no
/// state yet or every check passes. For C objects (a type tag); not generic, and passed its
/// arguments in registers. Inlined into the entry point's declined path, which is itself out
/// of line: one frame there saves the arguments its slow path needs once, not twice.
#[inline(always)]
pub(crate) fn record_borrow_refusal(
    site: &'static BorrowSite,
    owner: u64,
    key: u64,
    type_tag: u32,
    null_call: bool,
) -> Option<i32> {
    let expected = Expected::Foreign(type_tag);
    with_existing_state(|state| {
        let refusal =
            state.borrow_refusal(site.op, Handle { owner, key }, expected, null_call.then_some(site.null_arg))?;
        let code = refusal.status.code();
        state.set_last_error(refusal);
        Some(code)
    })?
}

impl ThreadState {
    /// Why a borrow is refused, checked in the documented order (null, owner, stale, type,
    /// busy, then a NULL callback, named by `null_call`); `None` if every check passes.
    #[inline(always)]
    fn borrow_refusal(
        &self,
        op: &'static str,
        handle: Handle,
        expected: Expected,
        null_call: Option<&'static str>,
    ) -> Option<Refusal> {
        // As `check_owner`, with the refusal built here.
        if handle.owner != self.id {
            return Some(self.not_owner_inline(op, handle));
        }
        match self.table.try_borrow().map(|table| table.check(handle.key, Some(expected))) {
            Ok(Err(refusal)) => Some(self.refused(op, handle, refusal, Some(expected))),
            _ => null_call.map(|what| self.null_argument(op, what)),
        }
    }
}

impl ThreadState {
    /// A borrow with every check in the documented order (null, owner, stale, type, busy,
    /// then `call` non-null); the refusal is counted and returned, nothing else changes.
    fn borrow_checked<R>(
        &self,
        op: &'static str,
        handle: Handle,
        expected: Expected,
        call: Option<impl FnOnce(*mut c_void) -> R>,
        null_arg: &'static str,
    ) -> Result<R, Refusal> {
        self.check_owner(op, handle)?;
        let begun = self.table.borrow().begin_borrow(handle.key, expected);
        let borrowed = begun.map_err(|refusal| self.refused(op, handle, refusal, Some(expected)))?;
        let Some(call) = call else {
            self.table.borrow().end_borrow(borrowed);
            return Err(self.null_argument(op, null_arg));
        };
        Ok(self.call_borrowed(borrowed, call))
    }
}

/// Destroys the object now, on its owner; refused from any other thread. With `expected`,
/// the object must also be of that type.
pub(crate) fn destroy(op: &'static str, handle: Handle, expected: Option<Expected>) -> Result<(), Error> {
    with_state(|state| {
        state.check_owner(op, handle)?;
        let removed = state
            .table
            .borrow_mut()
            .remove(handle.key, expected)
            .map_err(|refusal| state.refused(op, handle, refusal, expected))?;
        crate::sites::record_destroyed(state, handle.key, "");
        let outcome = state.run_destructor(removed);
        state.after_success();
        outcome
    })
}

/// Refuses a call for a bad argument, counted against the calling thread.
#[cold]
pub(crate) fn refuse(status: Status, message: String) -> Error {
    match with_state(|state| Ok(Error::from(state.violation(status, "", What::Text(message.clone()))))) {
        Ok(error) | Err(error) => error,
    }
}

/// Queues the object's destruction to its owner, from any thread.
pub(crate) fn destroy_later(handle: Handle) -> Result<(), Error> {
    const OP: &str = "destroy_later";
    with_state(|state| {
        if handle.is_null() {
            return Err(state.not_owner(OP, handle).into());
        }
        if handle.owner == state.id {
            state.check_live(OP, handle)?;
            return match state.record.inbox.push(handle.key) {
                // A closed inbox means this thread is exiting: its sweep destroys the object anyway.
                Ok(()) | Err(inbox::Refused::Closed) => Ok(()),
                Err(inbox::Refused::Full) => Err(inbox_full(OP, handle, &state.record)),
            };
        }
        match identity::liveness(handle.owner) {
            Liveness::Live(owner) => owner.inbox.push(handle.key).map_err(|refused| match refused {
                inbox::Refused::Closed => state.violation(Status::OwnerExited, OP, What::OwnerExiting(handle)).into(),
                inbox::Refused::Full => inbox_full(OP, handle, &owner),
            }),
            _ => Err(state.foreign_owner(OP, handle).into()),
        }
    })
}

/// The error for a request to an owner whose inbox is full (a capacity limit, not a violation).
#[cold]
fn inbox_full(op: &str, handle: Handle, owner: &identity::ThreadRecord) -> Error {
    Error::new(
        Status::Limit,
        format!(
            "{op}: handle {handle:?}: thread {} already has {} destroy requests queued (the limit); the object stays owned until its owner destroys it, cleans up or exits",
            owner.describe(),
            inbox::PENDING_LIMIT
        ),
    )
}

/// The ID of the thread that owns `handle`. On the owner, the slot is checked too; other
/// threads cannot see the owner's table (I1) and answer from the owner field alone.
pub(crate) fn owner_of(handle: Handle) -> Result<u64, Error> {
    with_state(|state| {
        if handle.owner == state.id || handle.is_null() {
            state.check_live("owner_of", handle)?;
            return Ok(handle.owner);
        }
        match identity::liveness(handle.owner) {
            Liveness::Live(_) => Ok(handle.owner),
            _ => Err(state.foreign_owner("owner_of", handle).into()),
        }
    })
}

/// The calling thread's ID (creating its state on first use).
pub(crate) fn current_thread_id() -> Result<u64, Error> {
    with_state(|state| Ok(state.id))
}
