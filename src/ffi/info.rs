//! Entry points for diagnostics: status names, last error, counters, policy, versions, naming.

use super::boundary::{guarded, null_pointer};
use super::tg_status;
use crate::diagnostics::{self, Stats, ViolationPolicy};
use crate::error::Status;
use crate::guard::refuse;
use crate::state::with_existing_state;
use std::ffi::{CStr, c_char};

/// The name of a status code as a static string, e.g. "TG_ERR_WRONG_THREAD"; "TG_OK" for 0
/// and "TG_ERR_UNKNOWN" for codes this library does not define. Never NULL; do not free.
#[unsafe(no_mangle)]
pub extern "C" fn tg_status_name(status: tg_status) -> *const c_char {
    let name = match Status::from_code(status) {
        Some(status) => status.c_name(),
        None if status == super::TG_OK => c"TG_OK",
        None => c"TG_ERR_UNKNOWN",
    };
    name.as_ptr()
}

/// Copies the calling thread's last-error message (the detail of its most recent failed call;
/// successful calls leave it unchanged) into `buf`, with snprintf semantics: at most `len - 1`
/// bytes and a terminating NUL are written (nothing if `len` is 0, and then `buf` may be NULL).
/// Returns the full length of the message, excluding the NUL; 0 if there is none.
///
/// Caller's contract: `buf` must be valid for writing `len` bytes, or `len` must be 0.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_last_error(buf: *mut c_char, len: usize) -> usize {
    let copy = |message: &str| {
        let bytes = message.as_bytes();
        if len > 0 && !buf.is_null() {
            let n = bytes.len().min(len - 1);
            // SAFETY: `buf` is valid for `len` bytes (the caller's contract) and `n + 1 <= len`;
            // the message is a separate Rust allocation, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
                buf.add(n).write(0);
            }
        }
        bytes.len()
    };
    with_existing_state(|state| state.read_last_error(copy)).unwrap_or_else(|| copy(""))
}

/// Writes a snapshot of the process-wide counters to `*out`. Counts are exact once the threads
/// involved are quiescent.
///
/// Returns TG_OK; TG_ERR_NULL_POINTER if `out` is NULL.
///
/// Caller's contract: `out` must be NULL or valid for writing one `tg_stats`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_get_stats(out: *mut Stats) -> tg_status {
    guarded("tg_get_stats", || {
        if out.is_null() {
            return Err(null_pointer("tg_get_stats", "out"));
        }
        // SAFETY: non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out.write(diagnostics::stats()) };
        Ok(())
    })
}

/// Sets what happens on a violation (a call refused for misuse), process-wide:
/// TG_POLICY_RETURN (default), TG_POLICY_LOG or TG_POLICY_ABORT.
///
/// Returns TG_OK; TG_ERR_INVALID_ARGUMENT for any other value (the policy is unchanged).
#[unsafe(no_mangle)]
pub extern "C" fn tg_set_violation_policy(policy: i32) -> tg_status {
    guarded("tg_set_violation_policy", || match ViolationPolicy::from_code(policy) {
        Some(policy) => {
            diagnostics::set_violation_policy(policy);
            Ok(())
        }
        None => Err(refuse(Status::InvalidArgument, format!("tg_set_violation_policy: unknown policy {policy}"))),
    })
}

/// Names the calling thread in threadguard's messages (e.g. "owned by thread 7 (\"gl-main\", alive)").
/// The name is copied; invalid UTF-8 is replaced.
///
/// Returns TG_OK; TG_ERR_NULL_POINTER if `name` is NULL.
///
/// Caller's contract: `name` must be NULL or a NUL-terminated string.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_set_thread_name(name: *const c_char) -> tg_status {
    guarded("tg_set_thread_name", || {
        if name.is_null() {
            return Err(null_pointer("tg_set_thread_name", "name"));
        }
        // SAFETY: non-null and NUL-terminated (the caller's contract); copied before returning.
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
        crate::set_thread_name(&name)
    })
}

const VERSION_C: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
    Ok(version) => version,
    Err(_) => panic!("the crate version contains a NUL byte"),
};

/// The library version, e.g. "0.1.0" (static; do not free).
#[unsafe(no_mangle)]
pub extern "C" fn tg_version() -> *const c_char {
    VERSION_C.as_ptr()
}

/// The ABI version of the library (TG_ABI_VERSION of the header it was built with).
#[unsafe(no_mangle)]
pub extern "C" fn tg_abi_version() -> u32 {
    diagnostics::ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_cover_every_code() {
        // SAFETY: tg_status_name returns static NUL-terminated strings.
        let name = |code| unsafe { CStr::from_ptr(tg_status_name(code)) }.to_str().unwrap();
        assert_eq!(name(0), "TG_OK");
        for status in Status::ALL {
            assert_eq!(name(status.code()), status.name());
        }
        assert_eq!(name(-1), "TG_ERR_UNKNOWN");
        assert_eq!(name(1000), "TG_ERR_UNKNOWN");
    }
}
