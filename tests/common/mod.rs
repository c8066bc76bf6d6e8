//! Shared test fixtures: a value that records every drop and the thread it ran on.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

/// Where and how often tracked values were dropped.
#[derive(Clone, Default)]
pub struct DropLog(Arc<Mutex<Vec<(u32, u64)>>>);

impl DropLog {
    /// (value id, threadguard thread ID) of every drop so far.
    pub fn drops(&self) -> Vec<(u32, u64)> {
        self.0.lock().unwrap().clone()
    }

    /// How many times value `id` was dropped.
    pub fn count(&self, id: u32) -> usize {
        self.drops().iter().filter(|(dropped, _)| *dropped == id).count()
    }

    /// A tracked value that logs its drop.
    pub fn value(&self, id: u32) -> Tracked {
        Tracked { id, log: self.clone() }
    }
}

/// Logs its drop (with the dropping thread's ID) into its `DropLog`.
pub struct Tracked {
    pub id: u32,
    log: DropLog,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let thread = threadguard::current_thread_id().unwrap_or(0);
        self.log.0.lock().unwrap().push((self.id, thread));
    }
}

/// For child processes that must die of SIGABRT (the ABORT policy, a callback that unwinds):
/// under `make coverage`, writes this process's coverage profile when it aborts, which a
/// process otherwise writes only when it exits, so the code that led to the abort is counted.
/// The abort goes ahead as before: the handler returns, and `abort` then ends the process with
/// SIGABRT. Does nothing in other builds.
pub fn record_coverage_at_abort() {
    #[cfg(coverage)]
    {
        unsafe extern "C" {
            /// The instrumentation runtime's writer of the profile (what it runs at exit).
            fn __llvm_profile_write_file() -> std::ffi::c_int;
        }
        extern "C" fn write_profile(_signal: std::ffi::c_int) {
            // SAFETY: called once, on the thread that is aborting, which is not inside the
            // runtime; a failed write changes nothing.
            unsafe { __llvm_profile_write_file() };
        }
        let handler: extern "C" fn(std::ffi::c_int) = write_profile;
        // SAFETY: installs a handler for SIGABRT only; it returns, so `abort` then ends the
        // process with the default action.
        unsafe { libc::signal(libc::SIGABRT, handler as libc::sighandler_t) };
    }
}
