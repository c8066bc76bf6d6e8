//! The calling thread's state: its ID, its table, its inbox, and the exit hook.
//!
//! The state is boxed and reached through a `const`-initialised thread-local raw pointer, which
//! has no destructor of its own and so stays readable while other thread-local destructors
//! run. A second thread-local, the exit guard, has the destructor: at thread exit it destroys
//! everything the thread still owns *on that thread* (I5), with the state still reachable, so
//! destructors may call back into the library; then it marks the thread as exited and frees the
//! state. Calls after that point get `TG_ERR_SHUT_DOWN`.
//!
//! Threads whose thread-local destructors never run (the main thread at process exit, threads
//! of some runtimes) call `tg_thread_cleanup` instead.

use crate::diagnostics::{self, Counters};
use crate::error::{Error, Status};
use crate::identity::{self, ThreadRecord};
use crate::keymix::KeyMix;
use crate::table::Table;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
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
    last_error: RefCell<String>,
}

/// Marks a thread whose state has been torn down.
const EXITED: *const ThreadState = std::ptr::dangling();

thread_local! {
    static CURRENT: Cell<*const ThreadState> = const { Cell::new(std::ptr::null()) };
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

/// Runs `f` with the calling thread's state, creating it on first use.
#[inline]
pub(crate) fn with_state<R>(f: impl FnOnce(&ThreadState) -> Result<R, Error>) -> Result<R, Error> {
    let mut current = CURRENT.with(Cell::get);
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
    // this thread. Only this thread's exit guard frees it, after setting CURRENT to EXITED and
    // when no call on this thread is in progress; the state is never shared with other threads.
    // Only shared references are ever made to it (mutation goes through its cells).
    let state = unsafe { &*current };
    f(state)
}

/// The calling thread's state if it exists, without creating it.
pub(crate) fn with_existing_state<R>(f: impl FnOnce(&ThreadState) -> R) -> Option<R> {
    let current = CURRENT.with(Cell::get);
    if current.is_null() || current == EXITED {
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
    let name = std::thread::current().name().map(Arc::<str>::from);
    let record = identity::register_thread(name)
        .ok_or_else(|| Error::new(Status::Limit, "the 64-bit thread ID counter is exhausted"))?;
    let state = Box::new(ThreadState {
        id: record.id,
        table: RefCell::new(Table::new(KeyMix::process().for_thread(record.id))),
        record,
        depth: Cell::new(0),
        cleaning: Cell::new(false),
        counters: diagnostics::thread_counters(),
        last_error: RefCell::new(String::new()),
    });
    let state: *const ThreadState = Box::into_raw(state);
    CURRENT.with(|current| current.set(state));
    crate::copies::rescan_if_loaded();
    Ok(state)
}

impl ThreadState {
    /// `9 ("worker")` or `9`: how messages name this thread.
    pub(crate) fn describe(&self) -> String {
        self.record.describe()
    }

    /// Stores this thread's last-error message.
    pub(crate) fn set_last_error(&self, message: &str) {
        if let Ok(mut last) = self.last_error.try_borrow_mut() {
            last.clear();
            last.push_str(message);
        }
    }

    /// Runs `f` on this thread's last-error message.
    pub(crate) fn read_last_error<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self.last_error.try_borrow() {
            Ok(last) => f(&last),
            Err(_) => f(""),
        }
    }
}

/// Its destructor is the thread-exit hook.
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let current = CURRENT.with(Cell::get);
        if current.is_null() || current == EXITED {
            return;
        }
        // Never unwind out of a thread-local destructor (that aborts the process).
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: as in `with_state`; the state is still installed, so destructors that call
            // back into the library see the same state through shared references.
            let state = unsafe { &*current };
            crate::guard::exit_thread(state);
        }));
        CURRENT.with(|cell| cell.set(EXITED));
        // SAFETY: `current` came from `Box::into_raw` in `init`; CURRENT no longer points to it
        // and every call on this thread has returned (we are its last thread-local destructor
        // that uses it), so this is the only remaining reference.
        drop(unsafe { Box::from_raw(current.cast_mut()) });
    }
}
