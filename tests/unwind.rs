//! A function pointer handed to the C ABI that unwinds ends the process: threadguard names it on
//! standard error and aborts (SIGABRT), and nothing above the callback runs. Here the callbacks
//! are Rust `extern "C-unwind"` functions that panic; tests/c/test_unwind.cpp throws C++
//! exceptions from C++ callbacks.
//!
//! Each test runs itself again as a child process (selected by an environment variable), which
//! must die of SIGABRT; the child marks on standard error what ran, and the parent counts the
//! marks.

mod common;

use std::ffi::c_void;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use threadguard::Handle;
use threadguard::ffi::{
    TG_OK, TG_TIMEOUT_INFINITE, tg_destroy, tg_register, tg_runner_call, tg_runner_start, tg_runner_stop, tg_status,
    tg_with,
};

const CHILD: &str = "THREADGUARD_UNWIND_CHILD";
const TAG: u32 = 5;
const SIGABRT: i32 = 6;

/// Runs `scenario` in a child process (this test binary, running only `test`) and returns its
/// standard error after checking that it died of SIGABRT.
fn in_child(test: &str, scenario: fn()) -> String {
    if std::env::var_os(CHILD).is_some() {
        common::record_coverage_at_abort();
        scenario();
        eprintln!("MARK returned");
        std::process::exit(0);
    }
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("child runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.signal(), Some(SIGABRT), "the child aborts; its stderr:\n{stderr}");
    stderr
}

fn marks(stderr: &str, mark: &str) -> usize {
    stderr.lines().filter(|line| line.trim() == format!("MARK {mark}")).count()
}

unsafe extern "C-unwind" fn panicking_borrow(_object: *mut c_void, _context: *mut c_void) {
    eprintln!("MARK callback");
    panic!("a borrow callback panics");
}

unsafe extern "C-unwind" fn panicking_destructor(_object: *mut c_void) {
    eprintln!("MARK destructor");
    panic!("a destructor panics");
}

unsafe extern "C-unwind" fn counting_destructor(_object: *mut c_void) {
    eprintln!("MARK other destructor");
}

unsafe extern "C-unwind" fn panicking_work(_context: *mut c_void, _out: *mut *mut c_void) {
    eprintln!("MARK work");
    panic!("runner work panics");
}

fn register(destructor: unsafe extern "C-unwind" fn(*mut c_void)) -> Handle {
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writes.
    assert_eq!(unsafe { tg_register(TAG, std::ptr::null_mut(), Some(destructor), &mut handle) }, TG_OK);
    handle
}

fn report(status: tg_status) {
    eprintln!("MARK status {status}");
}

#[test]
fn a_panicking_borrow_callback_aborts_naming_it() {
    let stderr = in_child("a_panicking_borrow_callback_aborts_naming_it", || {
        let handle = register(counting_destructor);
        // SAFETY: the callback ignores its arguments.
        report(unsafe { tg_with(handle, TAG, Some(panicking_borrow), std::ptr::null_mut()) });
    });
    assert!(stderr.contains("threadguard: a tg_with callback unwound (a Rust panic)"), "{stderr}");
    assert_eq!(marks(&stderr, "callback"), 1, "{stderr}");
    assert_eq!(stderr.matches("MARK").count(), 1, "nothing ran after the callback: {stderr}");
}

#[test]
fn a_panicking_destructor_aborts_naming_it() {
    let stderr = in_child("a_panicking_destructor_aborts_naming_it", || {
        let handle = register(panicking_destructor);
        register(counting_destructor);
        report(tg_destroy(handle));
    });
    assert!(stderr.contains("threadguard: a destructor (tg_destructor) unwound (a Rust panic)"), "{stderr}");
    assert_eq!(marks(&stderr, "destructor"), 1, "{stderr}");
    assert_eq!(stderr.matches("MARK").count(), 1, "nothing ran after the destructor: {stderr}");
}

#[test]
fn panicking_runner_work_aborts_naming_it() {
    let stderr = in_child("panicking_runner_work_aborts_naming_it", || {
        let mut runner = Handle::NULL;
        // SAFETY: the name is NUL-terminated; `runner` is valid for writes.
        assert_eq!(unsafe { tg_runner_start(c"unwind".as_ptr(), 4, &mut runner) }, TG_OK);
        let mut result = std::ptr::null_mut();
        // SAFETY: the work ignores its arguments; `result` is valid for writes.
        report(unsafe {
            tg_runner_call(runner, Some(panicking_work), std::ptr::null_mut(), TG_TIMEOUT_INFINITE, None, &mut result)
        });
        report(tg_runner_stop(runner));
    });
    assert!(stderr.contains("threadguard: a runner's work function (tg_work_fn) unwound (a Rust panic)"), "{stderr}");
    assert_eq!(marks(&stderr, "work"), 1, "{stderr}");
    assert_eq!(stderr.matches("MARK").count(), 1, "the blocked caller never returned: {stderr}");
}
