//! Jobs: what a runner's queue holds, and how each kind is run or failed, exactly once.
//!
//! A job ends in exactly one of [`Job::run`] and [`Job::fail`] (or is handed back to its
//! poster, who was refused, and dropped unrun). Either way its completion is delivered exactly
//! once: the callback is called, the completion-queue entry delivered, or the blocking caller
//! answered (or, if the caller gave up, the abandon callback called / the late result dropped).
//!
//! C jobs are stored inline (function pointers, the context, and the completion route), so
//! posting from C allocates nothing per job. Rust jobs are one boxed closure each.

use super::call::CallSlot;
use super::completion::{Completion, CqCore};
use crate::error::{Error, Status};
use crate::guard::panic_text;
use crate::state::with_existing_state;
use crate::unwind::abort_on_unwind;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// A C work function (`tg_work_fn`): runs on the runner, may store a result in `*out_result`.
pub(crate) type WorkFn = unsafe extern "C-unwind" fn(context: *mut c_void, out_result: *mut *mut c_void);
/// A C completion function (`tg_completion_fn`).
pub(crate) type CompletionFn = unsafe extern "C-unwind" fn(context: *mut c_void, status: i32, result: *mut c_void);

/// A C pointer (context or result) that a runner job carries from one thread to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawPtr(pub(crate) *mut c_void);

// SAFETY: the library never dereferences these pointers; it only hands them back to the C
// functions they were posted with (on the runner) or to the thread that waits for the result.
// That they may be used on those threads is the documented contract of the C entry points
// (tg_runner_post and friends), which is what a C caller agrees to by posting them.
unsafe impl Send for RawPtr {}

/// How an unwinding completion function is named (`crate::unwind`).
const DONE: &str = "a runner's completion function (tg_completion_fn, done)";
const ABANDON: &str = "a runner's abandon function (tg_completion_fn, abandon)";

/// Where a C job's outcome goes.
pub(crate) enum ForeignDone {
    /// `done(context, status, result)` on the runner; `None`: nowhere.
    Callback(Option<CompletionFn>),
    /// An entry `(tag, status, result)` in a completion queue (room reserved at post time).
    Queue { cq: Arc<CqCore<RawPtr>>, tag: u64 },
    /// A blocking caller; if it gave up, `abandon(context, status, result)` on the runner.
    Call { slot: Arc<CallSlot<RawPtr>>, abandon: Option<CompletionFn> },
}

/// Whether a Rust job runs or is failed.
pub(crate) enum Verdict {
    Run,
    Fail(Error),
}

/// One queued piece of work.
pub(crate) enum Job {
    /// Posted from C.
    Foreign { work: WorkFn, context: RawPtr, done: ForeignDone },
    /// Posted from Rust: the closure runs or fails the work and delivers its outcome.
    Native(Box<dyn FnOnce(Verdict) + Send>),
}

impl Job {
    /// Runs the work and delivers its outcome (on the runner).
    pub(crate) fn run(self) {
        match self {
            Job::Foreign { work, context, done } => run_foreign(work, context, done),
            Job::Native(job) => job(Verdict::Run),
        }
    }

    /// Does not run the work; delivers `error` as its outcome (on the runner, at stop).
    pub(crate) fn fail(self, error: Error) {
        match self {
            Job::Foreign { context, done, .. } => fail_foreign(context, done, error),
            Job::Native(job) => job(Verdict::Fail(error)),
        }
    }
}

fn call_work(work: WorkFn, context: RawPtr) -> RawPtr {
    let mut result = std::ptr::null_mut();
    // SAFETY: `work` and `context` were posted together by a C caller whose contract is that
    // `work(context, out_result)` may be called once on the runner; `result` is a valid, NULL
    // initialised slot for the result. If it unwinds, the process aborts.
    abort_on_unwind("a runner's work function (tg_work_fn)", || unsafe { work(context.0, &mut result) });
    RawPtr(result)
}

/// Calls a completion function (`what` says which: `done` or `abandon`).
fn complete(what: &'static str, callback: CompletionFn, context: RawPtr, status: i32, result: RawPtr) {
    // SAFETY: the completion function was posted with `context` for exactly this call (made
    // once per job: see the module doc); `result` is the work's own result or NULL. If it
    // unwinds, the process aborts.
    abort_on_unwind(what, || unsafe { callback(context.0, status, result.0) });
}

fn run_foreign(work: WorkFn, context: RawPtr, done: ForeignDone) {
    match done {
        ForeignDone::Callback(callback) => {
            let result = call_work(work, context);
            if let Some(callback) = callback {
                complete(DONE, callback, context, 0, result);
            }
        }
        ForeignDone::Queue { cq, tag } => {
            let result = call_work(work, context);
            cq.deliver(Completion { tag, result: Ok(result) });
        }
        ForeignDone::Call { slot, abandon } => {
            if !slot.start() {
                // The caller timed out before the work started: cancelled, never run.
                if let Some(abandon) = abandon {
                    complete(ABANDON, abandon, context, Status::Timeout.code(), RawPtr(std::ptr::null_mut()));
                }
                return;
            }
            let result = call_work(work, context);
            if let (Some(Ok(late)), Some(abandon)) = (slot.finish(Ok(result)), abandon) {
                // The caller timed out while the work ran: the late result goes to `abandon`.
                complete(ABANDON, abandon, context, 0, late);
            }
        }
    }
}

fn fail_foreign(context: RawPtr, done: ForeignDone, error: Error) {
    let null = RawPtr(std::ptr::null_mut());
    match done {
        ForeignDone::Callback(callback) => {
            if let Some(callback) = callback {
                complete(DONE, callback, context, error.status().code(), null);
            }
        }
        ForeignDone::Queue { cq, tag } => cq.deliver(Completion { tag, result: Err(error) }),
        ForeignDone::Call { slot, abandon } => {
            let status = if slot.start() {
                match slot.finish(Err(error)) {
                    None => return,
                    Some(returned) => returned.err().map_or(Status::ShutDown, |error| error.status()),
                }
            } else {
                Status::Timeout
            };
            if let Some(abandon) = abandon {
                complete(ABANDON, abandon, context, status.code(), null);
            }
        }
    }
}

/// Runs Rust work, turning a panic into `TG_ERR_PANIC` for this work only.
pub(crate) fn run_caught<T>(work: impl FnOnce() -> T) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|payload| panicked("posted work", payload))
}

/// Drops unrun Rust work (its captures' destructors may panic: contained here).
pub(crate) fn drop_caught<F>(work: F) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(work))) {
        drop(panicked("dropping unrun work", payload));
    }
}

/// Counts a caught panic (on the calling thread's counters) and describes it.
pub(crate) fn panicked(what: &str, payload: Box<dyn std::any::Any + Send>) -> Error {
    let text = panic_text(&*payload);
    // Dropping a payload can itself panic; contain that too.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
    let thread = with_existing_state(|state| {
        state.counters.panicked();
        state.describe()
    });
    Error::new(Status::Panic, format!("{what} panicked on thread {}: {text}", thread.unwrap_or_default()))
}

/// A Rust job whose outcome goes to `done` on the runner.
pub(crate) fn native_callback<T, F, C>(work: F, done: C) -> Job
where
    T: 'static,
    F: FnOnce() -> T + Send + 'static,
    C: FnOnce(Result<T, Error>) + Send + 'static,
{
    Job::Native(Box::new(move |verdict| {
        let outcome = match verdict {
            Verdict::Run => run_caught(work),
            Verdict::Fail(error) => {
                drop_caught(work);
                Err(error)
            }
        };
        done(outcome);
    }))
}

/// A Rust job whose outcome goes to a completion queue (room already reserved).
pub(crate) fn native_queue<T, F>(work: F, cq: Arc<CqCore<T>>, tag: u64) -> Job
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    native_callback(work, move |result| cq.deliver(Completion { tag, result }))
}

/// A Rust job answering a blocking caller.
pub(crate) fn native_call<T, F>(work: F, slot: Arc<CallSlot<T>>) -> Job
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    Job::Native(Box::new(move |verdict| {
        let started = slot.start();
        let outcome = match verdict {
            Verdict::Run if started => run_caught(work),
            Verdict::Fail(error) if started => {
                drop_caught(work);
                Err(error)
            }
            // Cancelled: the caller timed out before the work started.
            _ => return drop_caught(work),
        };
        // If the caller gave up meanwhile, the late result comes back and is dropped here.
        if let Some(late) = slot.finish(outcome) {
            drop_caught(late);
        }
    }))
}
