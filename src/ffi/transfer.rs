//! Entry points for ownership transfer: detach an object into a one-time token, adopt it on
//! any thread, or destroy it from any thread.

use super::boundary::{guarded, null_pointer};
use super::tg_status;
use crate::guard::Expected;
use crate::handle::Handle;
use crate::transfer::{self, Token};

/// Detaches the C object `handle` names from the calling thread, its owner, and writes a
/// one-time token for it to `*out_token`. Any thread may then adopt the token once
/// (tg_adopt), becoming the object's owner, or destroy it (tg_token_destroy). Detaching
/// promises that the object may be used and destroyed on another thread.
///
/// From then on `handle` names nothing: it answers TG_ERR_STALE, on this thread and on others
/// (there as long as the library remembers the token: while it is in flight and among the last
/// 4096 adopted or destroyed; after that other threads get TG_ERR_WRONG_THREAD, as for any
/// handle of a live thread that is not theirs). The object is in no
/// thread's table, so no thread's exit or tg_thread_cleanup destroys it; tg_get_stats counts it
/// in `detached` until it is adopted or destroyed.
///
/// Destroy requests already queued to this thread (tg_destroy_later) run first: if one names
/// this object, the object is destroyed as requested and the detach returns TG_ERR_STALE.
///
/// Returns TG_OK; otherwise nothing changes and, checked in this order: TG_ERR_NULL_HANDLE,
/// TG_ERR_WRONG_THREAD, TG_ERR_OWNER_EXITED, TG_ERR_STALE, TG_ERR_WRONG_TYPE (registered with
/// another tag, or a Rust object: those move only through the Rust API, which requires
/// `Send`), TG_ERR_BUSY (inside a tg_with of this object), TG_ERR_NULL_POINTER (`out_token` is
/// NULL). TG_ERR_PANIC if a panic was caught inside the library.
///
/// Caller's contract: `out_token` must be NULL or valid for writing one `tg_token`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_detach(handle: Handle, type_tag: u32, out_token: *mut Token) -> tg_status {
    const OP: &str = "tg_detach";
    guarded(OP, || {
        if out_token.is_null() {
            // The handle is checked first, as everywhere; a NULL out pointer is refused after.
            transfer::check_detachable(OP, handle, Expected::Foreign(type_tag))?;
            return Err(null_pointer(OP, "out_token"));
        }
        let token = transfer::detach_entry(OP, handle, Expected::Foreign(type_tag))?;
        // SAFETY: `out_token` is non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out_token.write(token) };
        Ok(())
    })
}

/// Adopts a token on the calling thread: the detached object joins this thread's table and
/// its new handle, owned by this thread, is written to `*out`. Of any number of threads
/// adopting (or destroying) one token, exactly one succeeds.
///
/// Returns TG_OK; TG_ERR_NULL_HANDLE for the null token; TG_ERR_STALE for a token already
/// adopted, already destroyed, or never issued (forged or corrupted; the message says which);
/// TG_ERR_NULL_POINTER if `out` is NULL; TG_ERR_SHUT_DOWN while this thread destroys everything
/// it owns (tg_thread_cleanup or exit); TG_ERR_LIMIT if this thread's live objects use 2^29
/// distinct destructors; TG_ERR_PANIC if a panic was caught inside the library. On error the
/// token is unchanged and `*out` untouched.
///
/// Caller's contract: `out` must be NULL or valid for writing one `tg_handle`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_adopt(token: Token, out: *mut Handle) -> tg_status {
    const OP: &str = "tg_adopt";
    guarded(OP, || {
        if out.is_null() {
            return Err(null_pointer(OP, "out"));
        }
        let handle = transfer::adopt_entry(OP, token, None)?;
        // SAFETY: `out` is non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Destroys a detached object that nobody adopted: runs its destructor now, on the calling
/// thread (any thread: a detached object belongs to none). The token is then spent.
///
/// Returns TG_OK; TG_ERR_NULL_HANDLE for the null token; TG_ERR_STALE for a token already
/// adopted, already destroyed, or never issued; TG_ERR_PANIC if a Rust destructor panicked
/// (the object is destroyed all the same).
#[unsafe(no_mangle)]
pub extern "C" fn tg_token_destroy(token: Token) -> tg_status {
    const OP: &str = "tg_token_destroy";
    guarded(OP, || transfer::destroy_token_entry(OP, token, None))
}
