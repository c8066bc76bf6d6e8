//! Entry points for the sites debug mode: where objects were registered and destroyed, in
//! misuse reports. C callers use the TG_REGISTER and TG_DESTROY macros, which pass
//! `__FILE__` and `__LINE__` to tg_register_at and tg_destroy_at.

use super::boundary::guarded;
use super::objects::{tg_destroy, tg_register};
use super::{TG_OK, tg_destructor, tg_status};
use crate::error::Status;
use crate::guard::refuse;
use crate::handle::Handle;
use crate::sites;
use std::ffi::{CStr, c_char, c_void};

/// Switches the sites debug mode on (1) or off (0), process-wide. In the mode, tg_register_at
/// and tg_destroy_at (the TG_REGISTER and TG_DESTROY macros) record their call sites, and a
/// refusal message about a handle ends with "; registered at app.c:42" and, for a destroyed
/// object, "; destroyed at app.c:77 on thread 3 ("loader")" (or how it was destroyed: "by a
/// destroy_later request", "at thread cleanup or exit"). The last 4096 destroyed objects are
/// remembered; switching the mode off forgets every record. The environment variable
/// THREADGUARD_SITES=1 switches it on at the first thread's first call.
///
/// Returns TG_OK; TG_ERR_INVALID_ARGUMENT for any other value (the mode is unchanged).
#[unsafe(no_mangle)]
pub extern "C" fn tg_set_sites(enabled: i32) -> tg_status {
    const OP: &str = "tg_set_sites";
    guarded(OP, || match enabled {
        0 | 1 => {
            sites::set_enabled(enabled == 1);
            Ok(())
        }
        _ => Err(refuse(Status::InvalidArgument, format!("{OP}: {enabled} is neither 0 nor 1"))),
    })
}

/// Whether the sites debug mode is on: 1 or 0.
#[unsafe(no_mangle)]
pub extern "C" fn tg_sites_enabled() -> i32 {
    let mut enabled = 0;
    guarded("tg_sites_enabled", || {
        enabled = i32::from(sites::enabled());
        Ok(())
    });
    enabled
}

/// The site `file`/`line` names, read only in the mode.
///
/// # Safety
/// `file` must be NULL or a NUL-terminated string.
unsafe fn site(file: *const c_char, line: u32) -> Option<sites::Site> {
    if file.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated (the caller's contract); copied before return.
    let file = unsafe { CStr::from_ptr(file) };
    Some(sites::foreign(file.to_bytes(), line))
}

/// tg_register, recording `file`:`line` as the object's registration site when the sites
/// mode is on (see tg_set_sites). Use it through TG_REGISTER(type_tag, object, destroy, out).
///
/// Returns what tg_register returns: TG_OK; TG_ERR_NULL_POINTER if `out` is NULL;
/// TG_ERR_INVALID_ARGUMENT if `type_tag` is 0; TG_ERR_SHUT_DOWN; TG_ERR_LIMIT; TG_ERR_PANIC.
/// A NULL `file` records no site.
///
/// Caller's contract: as tg_register's, and `file` must be NULL or a NUL-terminated string.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_register_at(
    type_tag: u32,
    object: *mut c_void,
    destroy: tg_destructor,
    out: *mut Handle,
    file: *const c_char,
    line: u32,
) -> tg_status {
    let mut status = TG_OK;
    let outer = guarded("tg_register_at", || {
        // SAFETY: `file` is NULL or NUL-terminated (the caller's contract).
        let caller = || unsafe { site(file, line) };
        // SAFETY: the caller's contract is tg_register's.
        status = sites::at_opt(caller, || unsafe { tg_register(type_tag, object, destroy, out) });
        Ok(())
    });
    if outer == TG_OK { status } else { outer }
}

/// tg_destroy, recording `file`:`line` as the object's destruction site when the sites mode
/// is on (see tg_set_sites). Use it through TG_DESTROY(handle).
///
/// Returns what tg_destroy returns: TG_OK; TG_ERR_NULL_HANDLE, TG_ERR_WRONG_THREAD,
/// TG_ERR_OWNER_EXITED, TG_ERR_STALE, TG_ERR_BUSY; TG_ERR_PANIC. A NULL `file` records no site.
///
/// Caller's contract: `file` must be NULL or a NUL-terminated string.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_destroy_at(handle: Handle, file: *const c_char, line: u32) -> tg_status {
    let mut status = TG_OK;
    let outer = guarded("tg_destroy_at", || {
        // SAFETY: `file` is NULL or NUL-terminated (the caller's contract).
        let caller = || unsafe { site(file, line) };
        status = sites::at_opt(caller, || tg_destroy(handle));
        Ok(())
    });
    if outer == TG_OK { status } else { outer }
}
