//! The diagnostics entry points, called as a C caller would: status names, the last-error
//! message with snprintf semantics, counters, the violation policy, versions and thread names;
//! and their Rust counterparts (`Status` and `Error` formatting, `last_error`,
//! `set_thread_name`, `violation_policy`).
//!
//! The violation policy is process-wide, so one test changes it and restores it; the others
//! only read it.

use std::ffi::{CStr, c_char};
use threadguard::ffi::{
    TG_ABI_VERSION, TG_ERR_INVALID_ARGUMENT, TG_ERR_NULL_HANDLE, TG_ERR_NULL_POINTER, TG_ERR_WRONG_THREAD, TG_OK,
    TG_POLICY_ABORT, TG_POLICY_LOG, TG_POLICY_RETURN, tg_abi_version, tg_current_thread_id, tg_destroy, tg_get_stats,
    tg_last_error, tg_set_thread_name, tg_set_violation_policy, tg_status_name, tg_version,
};
use threadguard::{
    Error, Handle, Stats, Status, ViolationPolicy, destroy, last_error, register, set_thread_name, stats,
    violation_policy, with,
};

fn status_name(code: i32) -> &'static str {
    // SAFETY: tg_status_name returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(tg_status_name(code)) }.to_str().expect("ASCII")
}

/// Calls tg_last_error with a buffer of `len` bytes; returns the reported length and the text.
fn last_error_into(len: usize) -> (usize, String) {
    let mut buf = vec![b'#' as c_char; len + 1];
    // SAFETY: `buf` is valid for writing `len` (and one more) bytes.
    let full = unsafe { tg_last_error(buf.as_mut_ptr(), len) };
    assert_eq!(buf[len], b'#' as c_char, "tg_last_error wrote past `len`");
    if len == 0 {
        assert_eq!(buf[0], b'#' as c_char, "nothing is written when len is 0");
        return (full, String::new());
    }
    // SAFETY: with `len > 0` the copy is NUL-terminated inside the buffer.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().expect("UTF-8").to_owned();
    (full, text)
}

#[test]
fn status_names_and_codes_agree_in_c_and_rust() {
    assert_eq!(status_name(TG_OK), "TG_OK");
    for status in Status::ALL {
        assert_eq!(status_name(status.code()), status.name());
        assert_eq!(status.to_string(), status.name(), "Display is the C name");
        assert_eq!(Status::from_code(status.code()), Some(status));
    }
    assert_eq!(Status::from_code(TG_OK), None);
    for unknown in [-1, 13, i32::MAX, i32::MIN] {
        assert_eq!(status_name(unknown), "TG_ERR_UNKNOWN");
        assert_eq!(Status::from_code(unknown), None);
    }
}

#[test]
fn an_error_shows_its_status_and_message_and_converts_to_its_status() {
    let error = Error::new(Status::Busy, "handle h is borrowed");
    assert_eq!(error.to_string(), "TG_ERR_BUSY: handle h is borrowed");
    assert_eq!(error.message(), "handle h is borrowed");
    let status: Status = error.clone().into();
    assert_eq!(status, Status::Busy);
    let boxed: Box<dyn std::error::Error> = Box::new(error);
    assert_eq!(boxed.to_string(), "TG_ERR_BUSY: handle h is borrowed");
}

#[test]
fn last_error_has_snprintf_semantics() {
    std::thread::spawn(|| {
        // A thread that never called threadguard has no message.
        assert_eq!(last_error_into(16), (0, String::new()));
        // SAFETY: NULL with length 0 is allowed.
        assert_eq!(unsafe { tg_last_error(std::ptr::null_mut(), 0) }, 0);
        assert_eq!(last_error(), "");

        assert_eq!(tg_destroy(Handle::NULL), TG_ERR_NULL_HANDLE);
        let message = last_error();
        assert!(message.starts_with("tg_destroy: null handle"), "{message}");
        let full = message.len();

        assert_eq!(last_error_into(full + 1), (full, message.clone()), "room for all and the NUL");
        assert_eq!(last_error_into(full), (full, message[..full - 1].to_owned()), "one byte short");
        assert_eq!(last_error_into(1), (full, String::new()), "only the NUL fits");
        assert_eq!(last_error_into(0), (full, String::new()));
        // SAFETY: NULL with length 0 is allowed.
        assert_eq!(unsafe { tg_last_error(std::ptr::null_mut(), 0) }, full);

        // Successful calls leave the message as it was.
        assert_eq!(tg_current_thread_id(), threadguard::current_thread_id().unwrap());
        assert_eq!(last_error(), message);
    })
    .join()
    .unwrap();
}

#[test]
fn stats_are_written_only_through_a_valid_pointer() {
    assert_ne!(tg_current_thread_id(), 0, "this thread is known, so at least one thread is live");
    let mut out = Stats { live: u64::MAX, ..Stats::default() };
    // SAFETY: `out` is valid for writes.
    assert_eq!(unsafe { tg_get_stats(&mut out) }, TG_OK);
    assert_ne!(out.live, u64::MAX, "the snapshot was written");
    assert!(out.threads_started >= out.threads_live && out.threads_live >= 1, "{out:?}");
    let before = stats().violations_null_pointer;
    // SAFETY: NULL is refused before anything is written.
    assert_eq!(unsafe { tg_get_stats(std::ptr::null_mut()) }, TG_ERR_NULL_POINTER);
    assert!(last_error().contains("tg_get_stats: out is NULL"), "{}", last_error());
    assert!(stats().violations_null_pointer > before, "counted as a violation");
}

#[test]
fn versions_match_the_crate_and_the_header() {
    // SAFETY: tg_version returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(tg_version()) }.to_str().unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version, threadguard::VERSION);
    assert_eq!(tg_abi_version(), TG_ABI_VERSION);
    assert_eq!(tg_abi_version(), threadguard::ABI_VERSION);
}

/// The message another thread gets for `handle`, owned by this thread.
fn message_from_another_thread(handle: Handle) -> String {
    std::thread::spawn(move || {
        assert_eq!(tg_destroy(handle), TG_ERR_WRONG_THREAD);
        last_error()
    })
    .join()
    .unwrap()
}

#[test]
fn thread_names_appear_in_other_threads_messages() {
    std::thread::spawn(|| {
        let id = threadguard::current_thread_id().unwrap();
        let handle = register(1u8).unwrap();
        assert!(
            message_from_another_thread(handle).contains(&format!("owned by thread {id} (alive)")),
            "an unnamed thread is named by its ID"
        );

        // SAFETY: the name is a NUL-terminated string.
        assert_eq!(unsafe { tg_set_thread_name(c"gl-main".as_ptr()) }, TG_OK);
        let message = message_from_another_thread(handle);
        assert!(message.contains(&format!("owned by thread {id} (\"gl-main\", alive)")), "{message}");

        // Invalid UTF-8 is replaced, not refused.
        // SAFETY: the name is a NUL-terminated string.
        assert_eq!(unsafe { tg_set_thread_name(c"bad\xff".as_ptr()) }, TG_OK);
        let message = message_from_another_thread(handle);
        assert!(message.contains("\"bad\u{fffd}\""), "{message}");

        set_thread_name("renamed").unwrap();
        let message = message_from_another_thread(handle);
        assert!(message.contains(&format!("thread {id} (\"renamed\", alive)")), "{message}");

        // SAFETY: NULL is refused before it is read.
        assert_eq!(unsafe { tg_set_thread_name(std::ptr::null()) }, TG_ERR_NULL_POINTER);
        assert!(last_error().contains("tg_set_thread_name: name is NULL"), "{}", last_error());
        assert!(message_from_another_thread(handle).contains("\"renamed\""), "a refused rename changes nothing");
        destroy(handle).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn the_violation_policy_is_set_read_and_validated() {
    assert_eq!(violation_policy(), ViolationPolicy::Return, "the default");
    let before = stats().violations_invalid_argument;
    for invalid in [-1, 3, i32::MAX] {
        assert_eq!(tg_set_violation_policy(invalid), TG_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains(&format!("unknown policy {invalid}")), "{}", last_error());
        assert_eq!(violation_policy(), ViolationPolicy::Return, "a refused policy changes nothing");
    }
    assert_eq!(stats().violations_invalid_argument - before, 3);

    // LOG: a violation is printed and still refused with its code.
    assert_eq!(tg_set_violation_policy(TG_POLICY_LOG), TG_OK);
    assert_eq!(violation_policy(), ViolationPolicy::Log);
    let refused = with(Handle::NULL, |_: &mut u8| ()).unwrap_err();
    assert_eq!(refused.status(), Status::NullHandle);

    assert_eq!(ViolationPolicy::from_code(TG_POLICY_ABORT), Some(ViolationPolicy::Abort));
    assert_eq!(tg_set_violation_policy(TG_POLICY_RETURN), TG_OK);
    assert_eq!(violation_policy(), ViolationPolicy::Return);
}
