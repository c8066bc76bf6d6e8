//! Sites: where each object was registered and destroyed, for misuse reports (a debug mode).
//!
//! Off by default. `THREADGUARD_SITES=1` in the environment (read once, at the first thread's
//! first call) or [`set_enabled`] (`tg_set_sites`) switches it on. Then every registration
//! records its call site (`__FILE__`/`__LINE__` through `TG_REGISTER` in C, `#[track_caller]` in
//! Rust, the caller's frame in Go), and every destruction where and on which thread it
//! happened. A refusal message for a handle then ends with "; registered at app.c:42", and for
//! a destroyed one "; destroyed at app.c:77 on thread 3 ("loader")".
//!
//! Records of live objects go when their objects are destroyed; of destroyed objects only the
//! last [`DESTROYED_MEMORY`] are kept. Switching the mode off forgets every record.
//!
//! Cost: with the mode off, a registration or destruction reads one relaxed atomic flag, and
//! a borrow nothing at all (sites are never consulted on the borrow path, only when a
//! refusal is worded). With it on, each registration and destruction takes a process-wide
//! mutex to update the records (BENCHMARKS.md).

use crate::handle::Handle;
use crate::state::ThreadState;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};

/// How many destroyed objects' records are kept (the oldest is forgotten first).
///
/// cbindgen:ignore
pub const DESTROYED_MEMORY: usize = 4096;

/// The environment variable that switches the mode on at startup (`1`, `on`, `true`, `yes`).
pub const SITES_ENV: &str = "THREADGUARD_SITES";

static ENABLED: AtomicBool = AtomicBool::new(false);
static FROM_ENV: Once = Once::new();

/// A call site in the user's code.
#[derive(Clone, Debug)]
pub(crate) enum Site {
    /// A Rust caller (`#[track_caller]`).
    Rust(&'static Location<'static>),
    /// A C or Go caller: its file (copied) and line.
    Foreign(Arc<str>, u32),
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Rust(location) => write!(f, "{}:{}", location.file(), location.line()),
            Site::Foreign(file, line) => write!(f, "{file}:{line}"),
        }
    }
}

/// What is remembered of a destroyed (or detached) object.
struct Gone {
    registered: Option<Site>,
    /// Where it went, if a caller said.
    site: Option<Site>,
    /// How it went when no caller said where ("by a destroy_later request"), or "".
    how: &'static str,
    /// The thread it went on, and that thread's name then.
    thread: u64,
    name: Option<Arc<str>>,
    detached: bool,
}

#[derive(Default)]
struct Records {
    live: HashMap<Handle, Site>,
    gone: HashMap<Handle, Gone>,
    order: VecDeque<Handle>,
    /// Copies of C and Go file names, shared by every record from that file.
    files: HashMap<Box<str>, Arc<str>>,
}

impl Records {
    fn forget_oldest_beyond_limit(&mut self) {
        while self.order.len() > DESTROYED_MEMORY {
            if let Some(oldest) = self.order.pop_front() {
                self.gone.remove(&oldest);
            }
        }
    }

    fn file(&mut self, file: &str) -> Arc<str> {
        if let Some(shared) = self.files.get(file) {
            return shared.clone();
        }
        let shared: Arc<str> = file.into();
        self.files.insert(file.into(), shared.clone());
        shared
    }
}

fn records() -> MutexGuard<'static, Records> {
    static RECORDS: OnceLock<Mutex<Records>> = OnceLock::new();
    RECORDS.get_or_init(Mutex::default).lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The records' lock, held across `fork` (see `identity::fork`), as [`crate::transfer::lock_for_fork`].
pub(crate) struct ForkLock(#[allow(dead_code)] MutexGuard<'static, Records>);

#[cfg_attr(miri, allow(dead_code))] // the fork handlers are not built under Miri
pub(crate) fn lock_for_fork() -> ForkLock {
    ForkLock(records())
}

thread_local! {
    /// The site of the registration or destruction this thread is making (set by the `_at`
    /// entry points and the `#[track_caller]` API around their call, and only in the mode).
    static CALLER: RefCell<Option<Site>> = const { RefCell::new(None) };
}

/// Whether the mode is on.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Switches the mode on or off, process-wide. Off forgets every record.
pub fn set_enabled(on: bool) {
    FROM_ENV.call_once(|| {});
    ENABLED.store(on, Ordering::Relaxed);
    if !on {
        *records() = Records::default();
    }
}

/// Reads [`SITES_ENV`] once (at the first thread's first call, or at the first registration or
/// destruction that records a site, whichever comes first); [`set_enabled`] before that wins.
#[cold]
pub(crate) fn init_from_env() {
    FROM_ENV.call_once(|| {
        let on = std::env::var(SITES_ENV)
            .is_ok_and(|value| matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "on" | "true" | "yes"));
        if on {
            ENABLED.store(true, Ordering::Relaxed);
        }
    });
}

/// Runs `f` (a registration or destruction) with `site` as its call site, in the mode.
#[inline]
pub(crate) fn at<R>(site: impl FnOnce() -> Site, f: impl FnOnce() -> R) -> R {
    if !enabled() && !switched_on_by_env() {
        return f();
    }
    at_slow(site(), f)
}

/// Before the environment was read (the process's first call may be this registration),
/// reads it now; whether that switched the mode on.
#[inline]
fn switched_on_by_env() -> bool {
    if FROM_ENV.is_completed() {
        return false;
    }
    init_from_env();
    enabled()
}

/// [`at`] for a site that may be unknown (then `f` just runs).
#[inline]
pub(crate) fn at_opt<R>(site: impl FnOnce() -> Option<Site>, f: impl FnOnce() -> R) -> R {
    if !enabled() && !switched_on_by_env() {
        return f();
    }
    match site() {
        Some(site) => at_slow(site, f),
        None => f(),
    }
}

#[cold]
fn at_slow<R>(site: Site, f: impl FnOnce() -> R) -> R {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            let _ = CALLER.try_with(|caller| caller.borrow_mut().take());
        }
    }
    let _ = CALLER.try_with(|caller| *caller.borrow_mut() = Some(site));
    let _clear = Clear;
    f()
}

/// A C or Go call site, copied from `file` (a file name of any length; invalid UTF-8 is
/// replaced).
pub(crate) fn foreign(file: &[u8], line: u32) -> Site {
    let file = String::from_utf8_lossy(file);
    Site::Foreign(records().file(&file), line)
}

/// The site of the call in progress, taken (so that a nested call does not see it again).
fn take_caller() -> Option<Site> {
    CALLER.try_with(|caller| caller.borrow_mut().take()).ok().flatten()
}

/// Registration hook: `key` was just registered on `state`'s thread.
#[inline(always)]
pub(crate) fn record_registered(state: &ThreadState, key: u64) {
    if enabled() {
        registered(Handle { owner: state.id, key }, take_caller());
    }
}

#[cold]
#[inline(never)]
fn registered(handle: Handle, site: Option<Site>) {
    if let Some(site) = site {
        records().live.insert(handle, site);
    }
}

/// Destruction hook: `key` of `state`'s thread was just taken out of its table to be
/// destroyed; `how` names a destruction nobody called for at a site ("at thread exit").
#[inline(always)]
pub(crate) fn record_destroyed(state: &ThreadState, key: u64, how: &'static str) {
    if enabled() {
        gone(state, Handle { owner: state.id, key }, how, false);
    }
}

/// Detach hook: `key` of `state`'s thread was just detached into a token.
#[inline(always)]
pub(crate) fn record_detached(state: &ThreadState, key: u64) {
    if enabled() {
        gone(state, Handle { owner: state.id, key }, "", true);
    }
}

#[cold]
#[inline(never)]
fn gone(state: &ThreadState, handle: Handle, how: &'static str, detached: bool) {
    let caller = take_caller();
    let mut records = records();
    let registered = records.live.remove(&handle);
    if registered.is_none() && caller.is_none() && how.is_empty() && !detached {
        return;
    }
    let gone = Gone { registered, site: caller, how, thread: state.id, name: state.record.name(), detached };
    records.gone.insert(handle, gone);
    records.order.push_back(handle);
    records.forget_oldest_beyond_limit();
}

/// Adoption hook: the object detached from `from` now has `key` on `state`'s thread; it keeps
/// its registration site.
#[inline(always)]
pub(crate) fn record_adopted(state: &ThreadState, from: Handle, key: u64) {
    if enabled() {
        adopted(from, Handle { owner: state.id, key });
    }
}

#[cold]
#[inline(never)]
fn adopted(from: Handle, to: Handle) {
    let mut records = records();
    if let Some(site) = records.gone.get(&from).and_then(|gone| gone.registered.clone()) {
        records.live.insert(to, site);
    }
}

/// What the mode knows about `handle`, worded to end a refusal message: "" when off or when
/// nothing is known, else "; registered at app.c:42" and, for a destroyed object,
/// "; destroyed at app.c:77 on thread 3 (\"loader\")". Called on refusal paths only.
#[cold]
#[inline(never)]
pub(crate) fn describe(handle: Handle) -> String {
    if !enabled() {
        return String::new();
    }
    let records = records();
    if let Some(site) = records.live.get(&handle) {
        return format!("; registered at {site}");
    }
    let Some(gone) = records.gone.get(&handle) else {
        return String::new();
    };
    let mut text = String::new();
    if let Some(site) = &gone.registered {
        text.push_str(&format!("; registered at {site}"));
    }
    text.push_str(if gone.detached { "; detached" } else { "; destroyed" });
    match (&gone.site, gone.how) {
        (Some(site), _) => text.push_str(&format!(" at {site}")),
        (None, "") => {}
        (None, how) => text.push_str(&format!(" {how}")),
    }
    // As `ThreadRecord::describe` names threads.
    match &gone.name {
        Some(name) => text.push_str(&format!(" on thread {} ({name:?})", gone.thread)),
        None => text.push_str(&format!(" on thread {}", gone.thread)),
    }
    text
}
