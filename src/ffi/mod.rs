//! The C ABI: every `extern "C"` function of the crate, and nothing else.
//!
//! Each entry point is a thin shell: it runs the checked operation inside
//! [`boundary::guarded`], which catches every panic (I3), stores the error's message as the
//! thread's last error, and returns the status code. The functions are documented for C
//! callers; cbindgen copies these docs into `include/threadguard.h`.

#![allow(non_camel_case_types)]

mod boundary;
pub mod export;
mod info;
mod objects;
mod runner;

pub use info::*;
pub use objects::*;
pub use runner::*;

use crate::error::Status;
use static_assertions::const_assert_eq;
use std::ffi::c_void;

/// A status code: `TG_OK` (0) or one of the `TG_ERR_*` codes.
pub type tg_status = i32;

/// Success.
pub const TG_OK: tg_status = 0;
/// The handle is the null handle (all zeros).
pub const TG_ERR_NULL_HANDLE: tg_status = 1;
/// The handle belongs to another thread, which is alive. Nothing was touched.
pub const TG_ERR_WRONG_THREAD: tg_status = 2;
/// The handle belongs to a thread that has exited; its objects were destroyed at its exit.
pub const TG_ERR_OWNER_EXITED: tg_status = 3;
/// The handle names nothing: its object was destroyed, its key is forged, or its owner ID was never issued.
pub const TG_ERR_STALE: tg_status = 4;
/// The object exists but was registered with another type tag (or is a Rust object).
pub const TG_ERR_WRONG_TYPE: tg_status = 5;
/// The object is being borrowed further up this thread's stack (a re-entrant call).
pub const TG_ERR_BUSY: tg_status = 6;
/// A required pointer argument (callback or out pointer) is NULL.
pub const TG_ERR_NULL_POINTER: tg_status = 7;
/// An argument is outside its documented range (e.g. type tag 0).
pub const TG_ERR_INVALID_ARGUMENT: tg_status = 8;
/// A panic was caught (in a Rust destructor or method, or inside the library); see tg_last_error.
pub const TG_ERR_PANIC: tg_status = 9;
/// The thread, runner or queue has shut down (or is shutting down).
pub const TG_ERR_SHUT_DOWN: tg_status = 10;
/// A documented capacity limit was reached.
pub const TG_ERR_LIMIT: tg_status = 11;
/// A blocking wait ran out of time.
pub const TG_ERR_TIMEOUT: tg_status = 12;

const_assert_eq!(TG_ERR_NULL_HANDLE, Status::NullHandle as i32);
const_assert_eq!(TG_ERR_WRONG_THREAD, Status::WrongThread as i32);
const_assert_eq!(TG_ERR_OWNER_EXITED, Status::OwnerExited as i32);
const_assert_eq!(TG_ERR_STALE, Status::Stale as i32);
const_assert_eq!(TG_ERR_WRONG_TYPE, Status::WrongType as i32);
const_assert_eq!(TG_ERR_BUSY, Status::Busy as i32);
const_assert_eq!(TG_ERR_NULL_POINTER, Status::NullPointer as i32);
const_assert_eq!(TG_ERR_INVALID_ARGUMENT, Status::InvalidArgument as i32);
const_assert_eq!(TG_ERR_PANIC, Status::Panic as i32);
const_assert_eq!(TG_ERR_SHUT_DOWN, Status::ShutDown as i32);
const_assert_eq!(TG_ERR_LIMIT, Status::Limit as i32);
const_assert_eq!(TG_ERR_TIMEOUT, Status::Timeout as i32);

/// Violation policy: return the status code (the default).
pub const TG_POLICY_RETURN: i32 = 0;
/// Violation policy: also print each violation's message to standard error.
pub const TG_POLICY_LOG: i32 = 1;
/// Violation policy: print the message and abort the process (for debugging misuse at its source).
pub const TG_POLICY_ABORT: i32 = 2;

const_assert_eq!(TG_POLICY_RETURN, crate::ViolationPolicy::Return as i32);
const_assert_eq!(TG_POLICY_LOG, crate::ViolationPolicy::Log as i32);
const_assert_eq!(TG_POLICY_ABORT, crate::ViolationPolicy::Abort as i32);

/// The ABI version this header describes; compare with tg_abi_version() at run time.
pub const TG_ABI_VERSION: u32 = 1;
const_assert_eq!(TG_ABI_VERSION, crate::ABI_VERSION);

/// Destroys a registered object. Called exactly once, on the owner thread. May be NULL.
/// It may call back into threadguard (destroy other objects, register new ones), but must not unwind.
pub type tg_destructor = Option<unsafe extern "C" fn(object: *mut c_void)>;

/// A borrow callback: runs on the owner thread with the object and the caller's context.
/// The object pointer is valid only until it returns; do not keep it.
pub type tg_borrow_fn = Option<unsafe extern "C" fn(object: *mut c_void, context: *mut c_void)>;
