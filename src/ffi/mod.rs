//! The C ABI: every `extern "C"` function of the crate, and nothing else.
//!
//! Each entry point is a thin shell: it runs the checked operation inside
//! `boundary::guarded`, which catches every panic (I3), stores the error's message as the
//! thread's last error, and returns the status code. The functions are documented for C
//! callers; cbindgen copies these docs into `include/threadguard.h`. An `unsafe` entry point
//! states its pointer contract in that text ("Caller's contract: ..."); its Rust `# Safety`
//! heading comes from `#[cfg_attr(all(), doc = ...)]`, which rustdoc and clippy read and
//! cbindgen does not, so no Rust Markdown heading lands in the C header.

#![allow(non_camel_case_types)]

mod boundary;
pub mod export;
mod info;
mod objects;
mod process;
mod runner;
mod sites;
mod transfer;

pub use info::*;
pub use objects::*;
pub use process::*;
pub use runner::*;
pub use sites::*;
pub use transfer::*;

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

/// The most destroy requests queued to one thread and not yet run by it; tg_destroy_later
/// beyond it returns TG_ERR_LIMIT.
pub const TG_PENDING_LIMIT: u32 = 1 << 20;
const_assert_eq!(TG_PENDING_LIMIT as usize, crate::PENDING_LIMIT);

/// The ABI version this header describes; compare with tg_abi_version() at run time.
pub const TG_ABI_VERSION: u32 = 2;
const_assert_eq!(TG_ABI_VERSION, crate::ABI_VERSION);

/// Destroys a registered object. Called exactly once, on the owner thread. May be NULL.
/// It may call back into threadguard (destroy other objects, register new ones). It must return
/// normally: if it unwinds (a C++ exception, say), the process aborts (see "Callbacks" at the
/// top of threadguard.h).
pub type tg_destructor = Option<unsafe extern "C-unwind" fn(object: *mut c_void)>;

/// A borrow callback: runs on the owner thread with the object and the caller's context.
/// The object pointer is valid only until it returns; do not keep it. It must return normally:
/// if it unwinds (a C++ exception, say), the process aborts (see "Callbacks" at the top of
/// threadguard.h).
pub type tg_borrow_fn = Option<unsafe extern "C-unwind" fn(object: *mut c_void, context: *mut c_void)>;

#[cfg(test)]
mod tests {
    //! The C ABI called from Rust, with Rust `extern "C"` functions standing in for the C
    //! callbacks and destructors: the entry points' unsafe code then runs under Miri
    //! (`make miri`), which cannot execute C. The C consumer tests cover the same calls from C.

    use super::objects::{tg_destroy, tg_destroy_later, tg_register, tg_run_pending, tg_with};
    use super::runner::{tg_runner_call, tg_runner_start, tg_runner_stop};
    use super::*;
    use crate::handle::Handle;
    use std::ffi::{c_char, c_void};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TAG: u32 = 7;

    /// A C-style object: its value and how often its destructor ran.
    #[derive(Default)]
    struct Counter {
        value: AtomicUsize,
        destroyed: AtomicUsize,
    }

    impl Counter {
        fn ptr(&self) -> *mut c_void {
            std::ptr::from_ref(self).cast_mut().cast()
        }
        fn destroyed(&self) -> usize {
            self.destroyed.load(Ordering::SeqCst)
        }
    }

    unsafe extern "C-unwind" fn destroy_counter(object: *mut c_void) {
        // SAFETY: every object registered here is a `Counter` that outlives its registration.
        unsafe { &*object.cast::<Counter>() }.destroyed.fetch_add(1, Ordering::SeqCst);
    }

    unsafe extern "C-unwind" fn add(object: *mut c_void, amount: *mut c_void) {
        // SAFETY: the object is a registered `Counter`; the context points to a `usize`.
        let (counter, amount) = unsafe { (&*object.cast::<Counter>(), *amount.cast::<usize>()) };
        counter.value.fetch_add(amount, Ordering::SeqCst);
    }

    /// Borrows the object again from inside its own borrow; writes the status to the context.
    unsafe extern "C-unwind" fn borrow_again(_object: *mut c_void, context: *mut c_void) {
        // SAFETY: the context points to a `(Handle, tg_status)` the test owns.
        let (handle, status) = unsafe { &mut *context.cast::<(Handle, tg_status)>() };
        let mut one = 1usize;
        // SAFETY: `add` is sound for a registered `Counter` and a `usize` context.
        *status = unsafe { tg_with(*handle, TAG, Some(add), (&raw mut one).cast()) };
    }

    fn register(counter: &Counter) -> Handle {
        let mut handle = Handle { owner: 0, key: 0 };
        // SAFETY: `handle` is valid for writing.
        assert_eq!(unsafe { tg_register(TAG, counter.ptr(), Some(destroy_counter), &mut handle) }, TG_OK);
        handle
    }

    fn with(handle: Handle, tag: u32, amount: usize) -> tg_status {
        let mut amount = amount;
        // SAFETY: `add` is sound for a registered `Counter` and a `usize` context.
        unsafe { tg_with(handle, tag, Some(add), (&raw mut amount).cast()) }
    }

    fn last_error() -> String {
        let mut buf = [0 as c_char; 256];
        // SAFETY: `buf` is valid for writing its length.
        let len = unsafe { super::info::tg_last_error(buf.as_mut_ptr(), buf.len()) };
        let bytes: Vec<u8> = buf[..len.min(255)].iter().map(|&c| c as u8).collect();
        String::from_utf8(bytes).expect("messages are UTF-8")
    }

    #[test]
    fn borrow_refusals_and_destroy_through_the_c_abi() {
        let counter = Counter::default();
        let handle = register(&counter);
        assert_eq!(with(handle, TAG, 5), TG_OK);
        assert_eq!(counter.value.load(Ordering::SeqCst), 5);
        assert_eq!(with(handle, TAG + 1, 5), TG_ERR_WRONG_TYPE);
        assert!(last_error().contains("type tag"), "{}", last_error());
        // SAFETY: a NULL callback is refused before anything is called.
        assert_eq!(unsafe { tg_with(handle, TAG, None, std::ptr::null_mut()) }, TG_ERR_NULL_POINTER);
        let mut nested = (handle, TG_OK);
        // SAFETY: `borrow_again` is sound with a `(Handle, tg_status)` context.
        assert_eq!(unsafe { tg_with(handle, TAG, Some(borrow_again), (&raw mut nested).cast()) }, TG_OK);
        assert_eq!(nested.1, TG_ERR_BUSY);
        assert_eq!(counter.value.load(Ordering::SeqCst), 5, "refused calls touch nothing");
        assert_eq!(tg_destroy(handle), TG_OK);
        assert_eq!(tg_destroy(handle), TG_ERR_STALE);
        assert_eq!(with(handle, TAG, 1), TG_ERR_STALE);
        assert_eq!(counter.destroyed(), 1);
    }

    #[test]
    fn other_threads_are_refused_and_their_requests_run_on_the_owner() {
        let counter = Counter::default();
        let handle = register(&counter);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert_eq!(with(handle, TAG, 1), TG_ERR_WRONG_THREAD);
                assert_eq!(tg_destroy(handle), TG_ERR_WRONG_THREAD);
                assert_eq!(tg_destroy_later(handle), TG_OK);
            });
        });
        assert_eq!(counter.destroyed(), 0, "only the owner destroys");
        assert_eq!(tg_run_pending(), TG_OK);
        assert_eq!(counter.destroyed(), 1);

        let exited = Counter::default();
        let handle = std::thread::scope(|scope| scope.spawn(|| register(&exited)).join().expect("no panic"));
        assert_eq!(exited.destroyed(), 1, "the owner's exit destroyed it");
        assert_eq!(with(handle, TAG, 1), TG_ERR_OWNER_EXITED);
    }

    #[test]
    fn a_refusal_is_worded_when_read_with_the_names_threads_have_then() {
        let counter = Counter::default();
        let handle = register(&counter);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert_eq!(with(handle, TAG, 1), TG_ERR_WRONG_THREAD);
                // Named after the refusal: the message, worded when read, uses the new name.
                crate::api::set_thread_name("renamed-after-refusal").expect("live thread");
                let message = last_error();
                assert!(message.contains("renamed-after-refusal"), "{message}");
                assert!(message.contains("alive"), "{message}");
            });
        });
        assert_eq!(counter.value.load(Ordering::SeqCst), 0, "the refused call touched nothing");
        assert_eq!(tg_destroy(handle), TG_OK);
        assert_eq!(counter.destroyed(), 1);
    }

    /// Runner work: registers the `Counter` in the context on the runner thread.
    unsafe extern "C-unwind" fn register_on_runner(context: *mut c_void, out_result: *mut *mut c_void) {
        let mut handle = Handle { owner: 0, key: 0 };
        // SAFETY: the context is a `Counter` that outlives the runner; `handle` is writable.
        let status = unsafe { tg_register(TAG, context, Some(destroy_counter), &mut handle) };
        assert_eq!(status, TG_OK);
        // SAFETY: the runner passes a valid result slot.
        unsafe { out_result.write(std::ptr::without_provenance_mut(handle.owner as usize)) };
    }

    #[test]
    fn runner_work_owns_what_it_registers_until_the_runner_stops() {
        let counter = Counter::default();
        let mut runner = Handle { owner: 0, key: 0 };
        // SAFETY: the name is a NUL-terminated string; `runner` is writable.
        assert_eq!(unsafe { tg_runner_start(c"miri-runner".as_ptr(), 4, &mut runner) }, TG_OK);
        let mut result = std::ptr::null_mut();
        // SAFETY: `register_on_runner` is sound with a `Counter` context; `result` is writable.
        let status =
            unsafe { tg_runner_call(runner, Some(register_on_runner), counter.ptr(), 10_000, None, &mut result) };
        assert_eq!(status, TG_OK);
        assert_ne!(result.addr() as u64, crate::api::current_thread_id().expect("live thread"));
        assert_eq!(counter.destroyed(), 0);
        assert_eq!(tg_runner_stop(runner), TG_OK);
        assert_eq!(counter.destroyed(), 1, "the runner destroyed it when it stopped");
    }
}
