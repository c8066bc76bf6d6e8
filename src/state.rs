//! The calling thread's state: its ID, its table, its inbox, and the exit hook.
//!
//! The state is boxed and reached through a thread-local raw pointer (`current`), which
//! has no destructor of its own and so stays readable while other thread-local destructors
//! run. A second thread-local, the exit guard, has the destructor: at thread exit it destroys
//! everything the thread still owns *on that thread* (I5), with the state still reachable, so
//! destructors may call back into the library; then it marks the thread as exited and frees the
//! state. Calls after that point get `TG_ERR_SHUT_DOWN`.
//!
//! Threads whose thread-local destructors never run (the main thread at process exit, threads
//! of some runtimes) call `tg_thread_cleanup` instead.
//!
//! A thread's first call may come late in its exit: from a thread-local destructor, or from a
//! pthread key destructor, which glibc runs after all thread-local destructors (when a
//! thread-local destructor registered then would never run). So the state has a second exit
//! hook: a process-wide pthread key whose value is the state and whose destructor tears it
//! down if the exit guard has not. glibc runs key destructors in rounds, up to
//! `PTHREAD_DESTRUCTOR_ITERATIONS` (4), re-running as long as a destructor set a value; a
//! first call from a key destructor sets ours, so ours runs in the same round (if created
//! after that key) or the next; in the last round only the former (SECURITY.md, "What is not
//! guaranteed"). Creating the thread's state touches no thread-local with a
//! destructor but the exit guard, and catches the one panic it can meet there (the standard
//! library's thread handle, once destroyed), so it also works in those stages.

use crate::current;
use crate::diagnostics::{self, Counters};
use crate::error::{Error, Status};
use crate::identity::{self, ThreadRecord};
use crate::keymix::KeyMix;
use crate::refusal::{Refusal, What};
use crate::table::Table;
use std::cell::{Cell, RefCell};
use std::panic::catch_unwind;
use std::sync::Arc;

/// Per-thread state; never shared with another thread (it is `!Sync` through its cells).
pub(crate) struct ThreadState {
    pub(crate) id: u64,
    pub(crate) record: Arc<ThreadRecord>,
    pub(crate) table: RefCell<Table>,
    /// How many borrows are on this thread's stack right now.
    pub(crate) depth: Cell<u32>,
    /// Set while `thread_cleanup` or thread exit destroys everything: no new registrations.
    pub(crate) cleaning: Cell<bool>,
    pub(crate) counters: &'static Counters,
    /// The owner of the last handle refused as another live thread's: its record tells
    /// whether it is still alive without the registry's lock (refusals in a loop are common).
    pub(crate) last_foreign_owner: RefCell<Option<Arc<ThreadRecord>>>,
    /// The last owner found exited (IDs are never reused, so it stays exited); 0 for none.
    pub(crate) last_exited_owner: Cell<u64>,
    /// The last refusal, as facts until `tg_last_error` or `last_error` asks for its words.
    last_error: RefCell<Refusal>,
}

/// Marks a thread whose state has been torn down.
const EXITED: *const ThreadState = std::ptr::dangling();

thread_local! {
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

/// Runs `f` with the calling thread's state, creating it on first use.
#[inline]
pub(crate) fn with_state<R>(f: impl FnOnce(&ThreadState) -> Result<R, Error>) -> Result<R, Error> {
    let mut current = current::get();
    if current.is_null() {
        current = init()?;
    }
    if current == EXITED {
        return Err(Error::new(
            Status::ShutDown,
            "this thread has finished its threadguard cleanup (thread-local destructors are running)",
        ));
    }
    // SAFETY: `current` is neither null nor EXITED, so it came from `Box::into_raw` in `init` on
    // this thread. Only this thread's exit guard frees it, after setting its word (`current`) to EXITED and
    // when no call on this thread is in progress; the state is never shared with other threads.
    // Only shared references are ever made to it (mutation goes through its cells).
    let state = unsafe { &*current };
    f(state)
}

/// The calling thread's state if it exists, without creating it.
#[inline(always)]
pub(crate) fn with_existing_state<R>(f: impl FnOnce(&ThreadState) -> R) -> Option<R> {
    let current = current::get();
    // One comparison for both: null is 0, EXITED the lowest address a `Box` never has.
    if current.addr() <= EXITED.addr() {
        return None;
    }
    // SAFETY: as in `with_state`.
    Some(f(unsafe { &*current }))
}

#[cold]
fn init() -> Result<*const ThreadState, Error> {
    // Register the exit hook first; if this thread's destructors already ran, refuse.
    EXIT_GUARD
        .try_with(|_| ())
        .map_err(|_| Error::new(Status::ShutDown, "this thread is exiting; it can no longer own objects"))?;
    // The backup hook: without it, a thread in its late exit stages would never be cleaned up.
    let key = late_exit::key()?;
    crate::sites::init_from_env();
    // `thread::current` panics once the standard library's thread-locals are gone.
    let name = match catch_unwind(|| std::thread::current().name().map(Arc::<str>::from)) {
        Ok(name) => name,
        Err(payload) => {
            crate::guard::discard_panic(payload);
            None
        }
    };
    let counters = diagnostics::thread_counters();
    let Some(record) = identity::register_thread(name) else {
        diagnostics::release_counters(counters);
        return Err(Error::new(Status::Limit, "the 64-bit thread ID counter is exhausted"));
    };
    let state = Box::new(ThreadState {
        id: record.id,
        table: RefCell::new(Table::new(KeyMix::process().for_thread(record.id))),
        record,
        depth: Cell::new(0),
        cleaning: Cell::new(false),
        counters,
        last_foreign_owner: RefCell::new(None),
        last_exited_owner: Cell::new(0),
        last_error: RefCell::new(Refusal::new(Status::Panic, "", 0, What::Text(String::new()))),
    });
    let state: *const ThreadState = Box::into_raw(state);
    current::set(state);
    late_exit::arm(key, state);
    crate::copies::rescan_if_loaded();
    Ok(state)
}

impl ThreadState {
    /// `9 ("worker")` or `9`: how messages name this thread.
    pub(crate) fn describe(&self) -> String {
        self.record.describe()
    }

    /// Stores this thread's last error (as facts, if it is a refusal not yet worded).
    #[inline]
    pub(crate) fn set_last_error(&self, refusal: Refusal) {
        if let Ok(mut last) = self.last_error.try_borrow_mut() {
            *last = refusal;
        }
    }

    /// Runs `f` on this thread's last-error message, wording it first if it is still facts.
    pub(crate) fn read_last_error<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let Ok(mut last) = self.last_error.try_borrow_mut() else {
            return f("");
        };
        if !matches!(last.what, What::Text(_)) {
            // Wording runs when the message is read, often from `tg_last_error`, which has no
            // status to report a panic with: a panic here must not unwind out of the reader.
            let worded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| last.word()));
            last.what = What::Text(worded.unwrap_or_else(|payload| {
                let text = format!(
                    "{}: {} (its message could not be worded: {})",
                    last.op,
                    last.status.name(),
                    crate::lifecycle::panic_text(&*payload)
                );
                crate::lifecycle::discard_panic(payload);
                text
            }));
        }
        match &last.what {
            What::Text(text) => f(text),
            _ => f(""),
        }
    }
}

/// Its destructor is the thread-exit hook.
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        exit_current();
    }
}

/// Tears down the calling thread's state, if it has one: destroys everything it owns on this
/// thread, marks it exited, and frees the state. Called by whichever exit hook runs first;
/// never unwinds (a thread-local destructor that unwinds aborts the process).
fn exit_current() {
    let current = current::get();
    if current.is_null() || current == EXITED {
        return;
    }
    crate::guard::catch_and_discard(|| {
        // SAFETY: as in `with_state`; the state is still installed, so destructors that call
        // back into the library see the same state through shared references.
        let state = unsafe { &*current };
        crate::guard::exit_thread(state);
    });
    current::set(EXITED);
    late_exit::disarm();
    // SAFETY: `current` came from `Box::into_raw` in `init`; the word no longer points to it
    // and every call on this thread has returned (this is its exit, and exit hooks do not
    // run inside calls), so this is the only remaining reference.
    let state = unsafe { Box::from_raw(current.cast_mut()) };
    diagnostics::release_counters(state.counters);
    crate::guard::catch_and_discard(|| drop(state));
}

/// The backup exit hook: a pthread key whose destructor runs `exit_current` (see the module
/// doc). Where pthread keys are not available, there is no backup hook.
///
/// cbindgen:ignore
mod late_exit {
    use crate::error::{Error, Status};
    #[cfg(unix)]
    use std::ffi::{c_int, c_void};
    #[cfg(unix)]
    use std::sync::OnceLock;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[allow(non_camel_case_types)]
    type pthread_key_t = std::ffi::c_uint;
    #[cfg(target_vendor = "apple")]
    #[allow(non_camel_case_types)]
    type pthread_key_t = std::ffi::c_ulong;
    #[cfg(all(unix, not(any(target_os = "linux", target_os = "android", target_vendor = "apple"))))]
    #[allow(non_camel_case_types)]
    type pthread_key_t = std::ffi::c_int;

    #[cfg(unix)]
    unsafe extern "C" {
        fn pthread_key_create(key: *mut pthread_key_t, destructor: Option<extern "C" fn(*mut c_void)>) -> c_int;
        fn pthread_setspecific(key: pthread_key_t, value: *const c_void) -> c_int;
    }

    /// The process-wide key (created once), or `None` if none could be created.
    #[cfg(unix)]
    static KEY: OnceLock<Option<pthread_key_t>> = OnceLock::new();

    /// The key, created on first use. Refused with `TG_ERR_LIMIT` if the process has no key
    /// left (`PTHREAD_KEYS_MAX`): without the backup hook, a thread whose first call comes late
    /// in its exit would stay registered as live forever.
    #[cfg(unix)]
    pub(super) fn key() -> Result<pthread_key_t, Error> {
        let key = KEY.get_or_init(|| {
            let mut key: pthread_key_t = 0;
            // SAFETY: `key` is valid for writing; `on_exit` is an `extern "C"` function that
            // never unwinds.
            (unsafe { pthread_key_create(&mut key, Some(on_exit)) } == 0).then_some(key)
        });
        key.ok_or_else(|| Error::new(Status::Limit, "no pthread key is available for threadguard's exit hook"))
    }

    /// Sets the calling thread's value of the key, so its destructor runs at this thread's exit.
    #[cfg(unix)]
    pub(super) fn arm(key: pthread_key_t, state: *const super::ThreadState) {
        // SAFETY: `key` was created by `pthread_key_create` and is never deleted. A failure
        // (ENOMEM) leaves the exit guard as the only hook, as for every thread that exits
        // normally.
        unsafe { pthread_setspecific(key, state.cast()) };
    }

    /// Clears the calling thread's value, so the key's destructor does not run (the state is gone).
    #[cfg(unix)]
    pub(super) fn disarm() {
        if let Some(Some(key)) = KEY.get() {
            // SAFETY: as in `arm`; a NULL value means no destructor call.
            unsafe { pthread_setspecific(*key, std::ptr::null()) };
        }
    }

    /// The key's destructor: the thread is in its last exit stage and the exit guard has not
    /// run (or this thread's first call came after it could).
    #[cfg(unix)]
    extern "C" fn on_exit(_state: *mut c_void) {
        super::exit_current();
    }

    #[cfg(not(unix))]
    pub(super) fn key() -> Result<(), Error> {
        Ok(())
    }
    #[cfg(not(unix))]
    pub(super) fn arm(_key: (), _state: *const super::ThreadState) {}
    #[cfg(not(unix))]
    pub(super) fn disarm() {}
}
