//! Detecting a second copy of threadguard in the process.
//!
//! Every copy of the library keeps its own thread tables, last-error messages and counters. A
//! process that holds two (a program linking `libthreadguard.a` that also loads a Rust library
//! built with `export_thread_affine!`, which carries its own copy and exports every `tg_*`
//! function) would split its state silently: a handle registered through one copy is
//! `TG_ERR_STALE` to the other. This module makes that visible instead.
//!
//! Each copy exports `tg_copies_loaded`. A copy looks the symbol up in the process's global
//! scope (`dlsym(RTLD_DEFAULT)`, the first definition, and `dlsym(RTLD_NEXT)`, the next one
//! after this copy's object) and asks `dladdr` which loaded object each definition lives in;
//! an object other than its own is another copy. It does so when the first thread in the
//! process makes its first call, and on every [`copies_loaded`] query. The first time it sees
//! another copy it prints one line on standard error (a failed write is ignored, as for every
//! diagnostic).
//!
//! What it cannot see: a copy whose symbols are not in the global scope (a library loaded
//! with `RTLD_LOCAL`, a static copy in an executable that does not export its symbols) is
//! invisible to the others, so the count is a lower bound, and at least one side of each pair
//! of copies notices unless both are hidden. On targets other than Linux, and under Miri, the
//! count is always 1.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once this copy has printed its report.
static REPORTED: AtomicBool = AtomicBool::new(false);
/// The scan at this copy's first use in the process.
static FIRST_USE: Once = Once::new();

/// How many copies of threadguard this copy can see loaded in the process, itself included
/// (a lower bound; see the module doc). Reports a second copy on standard error, once.
pub fn copies_loaded() -> usize {
    let copies = scan::objects();
    if copies.len() > 1 && !REPORTED.swap(true, Ordering::Relaxed) {
        report(&copies);
    }
    copies.len()
}

/// Scans once, at the first use of this copy in the process (a thread's first call).
pub(crate) fn check_at_first_use() {
    FIRST_USE.call_once(|| {
        copies_loaded();
    });
}

#[cold]
fn report(copies: &[String]) {
    use std::io::Write;
    let message = format!(
        "threadguard: {} copies of threadguard are loaded in this process (this one in {}; also in {}); \
         handles, last-error messages and stats of one are invisible to the others: link one copy \
         (see \"One threadguard per process\" in threadguard's README)\n",
        copies.len(),
        copies[0],
        copies[1..].join(", "),
    );
    // One write of the whole line; a closed or full stderr changes nothing.
    let _ = std::io::stderr().lock().write_all(message.as_bytes());
}

#[cfg(all(target_os = "linux", not(miri)))]
mod scan {
    use std::ffi::{CStr, c_void};

    /// A private static: its address is in this copy's object, and nothing can interpose it.
    static ANCHOR: u8 = 0;

    /// The loaded objects holding a copy, this copy's first, by name.
    pub(super) fn objects() -> Vec<String> {
        let Some(own) = object_of(std::ptr::from_ref(&ANCHOR).cast()) else {
            return vec![String::from("an unknown object")];
        };
        let mut objects = vec![own];
        for scope in [libc::RTLD_DEFAULT, libc::RTLD_NEXT] {
            // SAFETY: dlsym takes a pseudo-handle and a NUL-terminated name; it only looks the
            // name up and returns an address (or NULL), which is never called here.
            let symbol = unsafe { libc::dlsym(scope, c"tg_copies_loaded".as_ptr()) };
            if let Some(object) = object_of(symbol.cast_const()).filter(|o| !objects.contains(o)) {
                objects.push(object);
            }
        }
        objects.into_iter().map(|(_, name)| name).collect()
    }

    /// The base address and file name of the loaded object that contains `address`.
    fn object_of(address: *const c_void) -> Option<(usize, String)> {
        if address.is_null() {
            return None;
        }
        let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
        // SAFETY: `info` is valid for writing one Dl_info; dladdr only reads the loader's maps.
        if unsafe { libc::dladdr(address, info.as_mut_ptr()) } == 0 {
            return None;
        }
        // SAFETY: dladdr returned non-zero, so it filled `info` in (zeroed before in any case).
        let info = unsafe { info.assume_init() };
        let name = if info.dli_fname.is_null() {
            String::from("the executable")
        } else {
            // SAFETY: a non-null dli_fname is a NUL-terminated string owned by the loader,
            // valid while the object is loaded; it is copied here.
            let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
            if name.is_empty() { String::from("the executable") } else { name.into_owned() }
        };
        Some((info.dli_fbase as usize, name))
    }
}

#[cfg(not(all(target_os = "linux", not(miri))))]
mod scan {
    /// Only this copy: other targets (and Miri) have no scan.
    pub(super) fn objects() -> Vec<String> {
        vec![String::from("this object")]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_binary_holds_one_copy_and_reports_nothing() {
        assert_eq!(super::copies_loaded(), 1);
        assert!(!super::REPORTED.load(std::sync::atomic::Ordering::Relaxed));
    }
}
