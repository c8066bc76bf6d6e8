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
//! an object other than its own is another copy. It scans at a thread's first call and when
//! it words the message of a stale refusal (how a handle of another copy looks: the refusal
//! itself records facts and scans nothing; see `refusal`), in both cases only if
//! objects were loaded since its last scan (the loader's count of loads, `dlpi_adds`, read with
//! one step of `dl_iterate_phdr`), and on every [`copies_loaded`] query. The first time it sees
//! another copy it prints one line on standard error (a failed write is ignored, as for every
//! diagnostic); from then on its messages for stale handles say so.
//!
//! What it cannot see: a copy whose symbols are not in the global scope (a library loaded
//! with `RTLD_LOCAL`, a static copy in an executable that does not export its symbols) is
//! invisible to the others, so the count is a lower bound, and at least one side of each pair
//! of copies notices unless both are hidden. On targets other than Linux, and under Miri, the
//! count is always 1.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Set once this copy has printed its report.
static REPORTED: AtomicBool = AtomicBool::new(false);
/// The most copies a scan has found.
static SEEN: AtomicUsize = AtomicUsize::new(1);
/// The loader's count of loads at the last scan (`u64::MAX`: none yet).
static SCANNED_AT: AtomicU64 = AtomicU64::new(u64::MAX);

/// How many copies of threadguard this copy can see loaded in the process, itself included; the
/// Rust side of `tg_copies_loaded`. More than 1 means the process is split: a handle registered
/// through one copy is stale to another. The first time it sees another copy it says so once on
/// standard error.
///
/// The count is a lower bound: a copy is found through the global symbol scope, so one in a
/// library loaded with `RTLD_LOCAL`, or linked statically into an executable that does not
/// export its symbols, is seen only by the copies it can see itself. Always 1 on targets other
/// than Linux.
///
/// ```
/// assert_eq!(threadguard::copies_loaded(), 1);
/// ```
pub fn copies_loaded() -> usize {
    let copies = scan::objects();
    SEEN.fetch_max(copies.len(), Ordering::Relaxed);
    if copies.len() > 1 && !REPORTED.swap(true, Ordering::Relaxed) {
        report(&copies);
    }
    copies.len()
}

/// Scans again if objects were loaded since the last scan; otherwise costs one step of
/// `dl_iterate_phdr`. Called at each thread's first call.
pub(crate) fn rescan_if_loaded() {
    let loads = scan::loads();
    if SCANNED_AT.swap(loads, Ordering::Relaxed) != loads {
        copies_loaded();
    }
}

/// For the message of a stale refusal, when it is worded: a note naming the split, if this
/// copy has seen another (scanning again first if objects were loaded since the last scan).
#[cold]
pub(crate) fn note_for_stale() -> Option<String> {
    rescan_if_loaded();
    let seen = SEEN.load(Ordering::Relaxed);
    (seen > 1).then(|| {
        format!(" ({seen} copies of threadguard are loaded in this process; a handle of one is unknown to the others)")
    })
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

    /// How many objects the loader has loaded so far (`dlpi_adds`; unloads do not lower it).
    pub(super) fn loads() -> u64 {
        let mut loads = 0u64;
        // SAFETY: the callback only reads the record it is given and writes `loads`, which
        // outlives the call; it cannot unwind.
        unsafe { libc::dl_iterate_phdr(Some(first_loads), (&raw mut loads).cast()) };
        loads
    }

    /// `dl_iterate_phdr` callback of `loads`: reads the count from the first object's record and
    /// stops the iteration.
    extern "C" fn first_loads(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid record, and `data` is the `u64` of `loads`.
        unsafe { *data.cast::<u64>() = (*info).dlpi_adds };
        1
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

    /// Nothing is ever seen to load.
    pub(super) fn loads() -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_binary_holds_one_copy_and_reports_nothing() {
        assert_eq!(super::copies_loaded(), 1);
        assert_eq!(super::note_for_stale(), None);
        assert!(!super::REPORTED.load(std::sync::atomic::Ordering::Relaxed));
    }
}
