//! Entry points for C objects: register, borrow, destroy, deferred destroy, cleanup.

use super::boundary::{guarded, guarded_fast, guarded_status, null_pointer, status};
use super::{TG_OK, tg_borrow_fn, tg_destructor, tg_status};
use crate::error::Status;
use crate::guard::{self, Expected, refuse};
use crate::handle::Handle;
use crate::table::Kind;
use std::ffi::c_void;

/// Registers `object` on the calling thread, which becomes its owner, and writes its handle to `*out`.
///
/// `destroy` (may be NULL) runs exactly once, on this thread: at tg_destroy, after a
/// tg_destroy_later, at tg_thread_cleanup, or when this thread exits. `object` may be NULL.
///
/// Returns TG_OK; TG_ERR_NULL_POINTER if `out` is NULL; TG_ERR_INVALID_ARGUMENT if
/// `type_tag` is 0; TG_ERR_SHUT_DOWN while this thread is destroying everything it owns
/// (tg_thread_cleanup or thread exit), or after its exit cleanup (from its remaining
/// thread-local or pthread key destructors); TG_ERR_LIMIT if this thread's live objects
/// already use 2^29 distinct destructors, or, on a thread's first call, if the process has no
/// thread ID or pthread key left for it; TG_ERR_PANIC if a panic was caught inside the
/// library. On error `*out` is untouched and `destroy` is not called.
///
/// Caller's contract: `out` must be NULL or valid for writing one `tg_handle`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_register(
    type_tag: u32,
    object: *mut c_void,
    destroy: tg_destructor,
    out: *mut Handle,
) -> tg_status {
    const OP: &str = "tg_register";
    guarded(OP, || {
        if out.is_null() {
            return Err(null_pointer(OP, "out"));
        }
        if type_tag == 0 {
            return Err(refuse(Status::InvalidArgument, format!("{OP}: type tag 0 is reserved")));
        }
        let handle = guard::register_entry(object, Kind::Foreign { type_tag, destructor: destroy })
            .map_err(|(error, _)| error)?;
        // SAFETY: `out` is non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Borrows the object for the duration of one call: runs `fn(object, context)` on the calling
/// thread, which must be the owner. While `fn` runs, the object is busy: a nested tg_with or
/// tg_destroy on it returns TG_ERR_BUSY; calls on other objects, tg_register and
/// tg_destroy_later (also of this object) work.
///
/// Returns TG_OK after `fn` returned; otherwise `fn` is not called and, checked in this order:
/// TG_ERR_NULL_HANDLE, TG_ERR_WRONG_THREAD, TG_ERR_OWNER_EXITED, TG_ERR_STALE,
/// TG_ERR_WRONG_TYPE (registered with another tag), TG_ERR_BUSY, TG_ERR_NULL_POINTER (`fn` is NULL).
/// Before those: TG_ERR_SHUT_DOWN after this thread's exit cleanup (from its remaining
/// thread-local or pthread key destructors); TG_ERR_LIMIT on a thread's first call if the
/// process has no thread ID or pthread key left for it. TG_ERR_PANIC if a panic was caught
/// inside the library.
///
/// Caller's contract: `fn` must be NULL or a function that is sound to call with the object and
/// `context`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_with(handle: Handle, type_tag: u32, r#fn: tg_borrow_fn, context: *mut c_void) -> tg_status {
    // Every check passes and the callback runs, or nothing happened and the slow path below,
    // passed the arguments as they came, redoes the checks in order and records the refusal.
    if let Some(callback) = r#fn
        && let Some(code) = guarded_fast("tg_with", || {
            guard::borrow_now(handle, Expected::Foreign(type_tag), |object| {
                // SAFETY: the handle resolved on its owner thread to a live object of this
                // type tag, now marked busy (I1, I2, I4); the callback's own soundness is the
                // caller's contract. If it unwinds, the process aborts (`crate::unwind`).
                crate::unwind::abort_on_unwind_in_borrow(|| unsafe { callback(object, context) })
            })
        })
    {
        return code;
    }
    tg_with_declined(handle, type_tag, r#fn, context)
}

/// `tg_with` when its fast path declined: a refusal, recorded as facts (a small frame of its
/// own), or else the thread's first call. Not `#[cold]`: the call is (the fast path's branch to
/// it), and inside it the panic boundary's closure is then inlined. `extern "C"`: it cannot
/// unwind (its panic boundary catches everything), so that branch is a tail call.
#[inline(never)]
extern "C" fn tg_with_declined(handle: Handle, type_tag: u32, r#fn: tg_borrow_fn, context: *mut c_void) -> tg_status {
    let refused = guarded_status(
        "tg_with",
        #[inline(always)]
        move || {
            // A refusal's status is never TG_OK.
            guard::record_borrow_refusal(&TG_WITH, handle.owner, handle.key, type_tag, r#fn.is_none()).unwrap_or(TG_OK)
        },
    );
    if refused != TG_OK {
        return refused;
    }
    tg_with_checked(handle, type_tag, r#fn, context)
}

/// Where `tg_with`'s refusals come from, for their messages.
static TG_WITH: guard::BorrowSite = guard::BorrowSite { op: "tg_with", null_arg: "fn" };

/// `tg_with` with nothing to refuse after all, or on the thread's first call (which creates its
/// state): every check again, in order, and the call.
#[cold]
#[inline(never)]
fn tg_with_checked(handle: Handle, type_tag: u32, r#fn: tg_borrow_fn, context: *mut c_void) -> tg_status {
    guarded_status("tg_with", || {
        let call = r#fn.map(|callback| {
            move |object: *mut c_void| {
                // SAFETY: as in `tg_with`'s fast path: resolved, typed and marked busy.
                crate::unwind::abort_on_unwind_in_borrow(|| unsafe { callback(object, context) })
            }
        });
        status(guard::borrow_slow(TG_WITH.op, handle, Expected::Foreign(type_tag), call, TG_WITH.null_arg))
    })
}

/// Destroys the object now: runs its destructor on the calling thread, which must be the owner.
/// From any other thread nothing is destroyed (use tg_destroy_later).
///
/// Returns TG_OK; otherwise nothing happens and, in this order: TG_ERR_NULL_HANDLE,
/// TG_ERR_WRONG_THREAD, TG_ERR_OWNER_EXITED, TG_ERR_STALE (already destroyed),
/// TG_ERR_BUSY (inside a tg_with of this object). TG_ERR_PANIC if a Rust destructor panicked
/// (the object is destroyed all the same).
#[unsafe(no_mangle)]
pub extern "C" fn tg_destroy(handle: Handle) -> tg_status {
    guarded("tg_destroy", || guard::destroy("tg_destroy", handle, None))
}

/// Asks the owner to destroy the object; callable from any thread (e.g. a garbage collector's
/// finalizer). The owner runs the destructor right after its next successful tg_register, tg_with
/// or tg_destroy (outside any borrow), at tg_run_pending, at tg_thread_cleanup, or at its exit;
/// never on another thread. Queries (tg_owner_of, tg_get_stats, ...) do not run requests.
///
/// Returns TG_OK when queued; TG_ERR_NULL_HANDLE; TG_ERR_OWNER_EXITED if the owner has exited
/// or is exiting (its exit destroys its objects); TG_ERR_STALE if the owner ID was never issued,
/// or, when called on the owner itself, if the object is already gone; TG_ERR_LIMIT if the
/// owner already has TG_PENDING_LIMIT (2^20) requests queued that it has not run (nothing is queued; the object
/// stays owned, and its owner's exit destroys it). From another thread the
/// key cannot be checked (only the owner sees its table): a stale request is counted in
/// `violations_stale` when the owner runs it.
#[unsafe(no_mangle)]
pub extern "C" fn tg_destroy_later(handle: Handle) -> tg_status {
    guarded("tg_destroy_later", || guard::destroy_later(handle))
}

/// Runs the destroy requests other threads queued for the calling thread. Requests for an
/// object that is being borrowed wait until the borrow ends.
///
/// Returns TG_OK; TG_ERR_PANIC if a Rust destructor panicked (the rest still ran).
#[unsafe(no_mangle)]
pub extern "C" fn tg_run_pending() -> tg_status {
    guarded("tg_run_pending", guard::run_pending)
}

/// Destroys everything the calling thread owns, now, on this thread; the thread stays usable.
/// Call it on threads whose thread-local destructors do not run (the main thread before it
/// returns from main, threads of runtimes that exit without them). Destructors may call back
/// in (a parent may destroy its children); new registrations meanwhile get TG_ERR_SHUT_DOWN.
///
/// Returns TG_OK; TG_ERR_BUSY from inside a tg_with callback (nothing is destroyed);
/// TG_ERR_PANIC if a Rust destructor panicked (the rest still ran).
#[unsafe(no_mangle)]
pub extern "C" fn tg_thread_cleanup() -> tg_status {
    guarded("tg_thread_cleanup", guard::thread_cleanup)
}

/// Writes the ID of the thread that owns `handle` to `*out_thread_id`. Any thread may ask; on
/// the owner the key is checked too, elsewhere only the owner field (only the owner sees its table).
///
/// Returns TG_OK; TG_ERR_NULL_HANDLE; TG_ERR_OWNER_EXITED; TG_ERR_STALE (never-issued owner,
/// or, on the owner, an object that is gone); TG_ERR_NULL_POINTER if `out_thread_id` is NULL.
///
/// Caller's contract: `out_thread_id` must be NULL or valid for writing one `uint64_t`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_owner_of(handle: Handle, out_thread_id: *mut u64) -> tg_status {
    const OP: &str = "tg_owner_of";
    guarded(OP, || {
        let owner = guard::owner_of(handle)?;
        if out_thread_id.is_null() {
            return Err(null_pointer(OP, "out_thread_id"));
        }
        // SAFETY: non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out_thread_id.write(owner) };
        Ok(())
    })
}

/// The calling thread's threadguard ID: nonzero and never reused while the process lives.
/// Returns 0 only while the thread's thread-local destructors run (after its cleanup).
#[unsafe(no_mangle)]
pub extern "C" fn tg_current_thread_id() -> u64 {
    let mut id = 0;
    guarded("tg_current_thread_id", || {
        id = guard::current_thread_id()?;
        Ok(())
    });
    id
}
