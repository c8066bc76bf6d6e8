//! Entry points for runners (a dedicated owner thread that runs work posted from any thread)
//! and completion queues (results that any thread can wait for).
//!
//! Runner and completion-queue handles are `tg_handle`s usable from any thread; their `owner`
//! field is `TG_RUNNER_OWNER` or `TG_CQ_OWNER`, values no thread ID ever takes, which is how
//! they are told from object handles (see `crate::runner`).

use super::boundary::{guarded, null_pointer};
use super::tg_status;
use crate::error::Status;
use crate::handle::Handle;
use crate::runner::{
    self, CompletionFn, Deadline, DiscardFn, ForeignDone, ForeignQueue, Job, QUEUES, RUNNERS, RawPtr, RunnerInner,
    WorkFn, split, timeout_from_ms,
};
use static_assertions::const_assert_eq;
use std::ffi::{CStr, c_char, c_void};
use std::sync::Arc;

/// Work for a runner: called once, on the runner thread, with the context it was posted with.
/// It may store a result in `*out_result` (which starts as NULL). It may call into threadguard
/// (objects it registers are owned by the runner). It must return normally: if it unwinds (a C++
/// exception, say), the process aborts (see "Callbacks" at the top of threadguard.h).
pub type tg_work_fn = Option<unsafe extern "C-unwind" fn(context: *mut c_void, out_result: *mut *mut c_void)>;

/// Receives the outcome of posted work, exactly once, on the runner thread: `status` TG_OK with
/// the work's `result`, or an error code with `result` NULL (the work did not run). It may call
/// into threadguard. It must return normally: if it unwinds, the process aborts.
pub type tg_completion_fn =
    Option<unsafe extern "C-unwind" fn(context: *mut c_void, status: tg_status, result: *mut c_void)>;

/// Receives a completion-queue entry that will never be waited for (its queue was destroyed),
/// exactly once, with the entry's tag, status and result. It must return normally: if it
/// unwinds, the process aborts.
pub type tg_discard_fn = Option<unsafe extern "C-unwind" fn(tag: u64, status: tg_status, result: *mut c_void)>;

/// The `owner` field of every runner handle. No thread ID takes this value.
pub const TG_RUNNER_OWNER: u64 = 0xFFFF_FFFF_FFFF_FFFF;
/// The `owner` field of every completion-queue handle. No thread ID takes this value.
pub const TG_CQ_OWNER: u64 = 0xFFFF_FFFF_FFFF_FFFE;
/// The largest queue capacity tg_runner_start and tg_cq_create accept (a bound, not a preallocation).
pub const TG_MAX_QUEUE_CAPACITY: u32 = 16_777_216;
/// A timeout that never expires.
pub const TG_TIMEOUT_INFINITE: i64 = -1;

const_assert_eq!(TG_RUNNER_OWNER, runner::RUNNER_OWNER);
const_assert_eq!(TG_CQ_OWNER, runner::QUEUE_OWNER);
const_assert_eq!(TG_MAX_QUEUE_CAPACITY as usize, runner::MAX_QUEUE_CAPACITY);

/// The name of a runner started with a NULL name.
const DEFAULT_NAME: &str = "threadguard-runner";

/// Starts a runner: a new thread named `name` that runs work posted from any thread and owns
/// every object that work registers. Writes its handle to `*out_runner`; the handle may be used
/// from any thread. Returns once the thread is running (tg_runner_thread_id answers at once).
///
/// `name` may be NULL ("threadguard-runner"); invalid UTF-8 is replaced. `queue_capacity`
/// (1 to TG_MAX_QUEUE_CAPACITY) bounds the jobs waiting in its queue: posting to a full queue
/// returns TG_ERR_LIMIT at once; a blocking tg_runner_call waits for room until its timeout.
/// Stop the runner with tg_runner_stop before the process exits.
///
/// Returns TG_OK; TG_ERR_NULL_POINTER if `out_runner` is NULL; TG_ERR_INVALID_ARGUMENT for a
/// capacity of 0 or above TG_MAX_QUEUE_CAPACITY; TG_ERR_LIMIT if the thread cannot be created.
/// On error `*out_runner` is untouched.
///
/// Example (complete; link with -lthreadguard -lpthread -ldl -lm):
///
/// ```c
/// #include <stdio.h>
/// #include <stdlib.h>
/// #include "threadguard.h"
///
/// static void make_answer(void *context, void **out_result) {   // runs on the runner
///     int *answer = malloc(sizeof *answer);
///     *answer = 40 + *(int *)context;
///     *out_result = answer;
/// }
///
/// int main(void) {
///     static int two = 2;
///     tg_handle runner, cq;
///     void *result;
///     uint64_t tag;
///     tg_status status;
///     if (tg_runner_start("model", 1024, &runner) != TG_OK) return 1;
///     // Blocking call, at most one second:
///     if (tg_runner_call(runner, make_answer, &two, 1000, NULL, &result) == TG_OK) {
///         printf("call: %d\n", *(int *)result);                        // call: 42
///         free(result);
///     }
///     // Asynchronous, with the result delivered to a completion queue:
///     tg_cq_create(64, NULL, &cq);
///     tg_runner_post_to_queue(runner, make_answer, &two, cq, 7);      // returns at once
///     if (tg_cq_wait(cq, TG_TIMEOUT_INFINITE, &tag, &status, &result) == TG_OK && status == TG_OK) {
///         printf("entry %llu: %d\n", (unsigned long long)tag, *(int *)result);   // entry 7: 42
///         free(result);
///     }
///     tg_cq_destroy(cq);
///     tg_runner_stop(runner);   // destroys what the runner owns, on the runner; joins it
///     return 0;
/// }
/// ```
///
/// Caller's contract: `name` must be NULL or a NUL-terminated string; `out_runner` must be NULL or
/// valid for writing one `tg_handle`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_runner_start(
    name: *const c_char,
    queue_capacity: u32,
    out_runner: *mut Handle,
) -> tg_status {
    const OP: &str = "tg_runner_start";
    guarded(OP, || {
        if out_runner.is_null() {
            return Err(null_pointer(OP, "out_runner"));
        }
        let name = match name.is_null() {
            true => DEFAULT_NAME.into(),
            // SAFETY: non-null and NUL-terminated (the caller's contract); copied before returning.
            false => unsafe { CStr::from_ptr(name) }.to_string_lossy(),
        };
        let runner = RunnerInner::start(OP, &name, queue_capacity as usize)?;
        // SAFETY: non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out_runner.write(runner.handle()) };
        Ok(())
    })
}

/// Queues `work(context, &result)` to run on the runner, then `done(context, status, result)`
/// on the runner. Never blocks. If this returns TG_OK, `done` runs exactly once: with TG_OK and
/// the work's result, or with TG_ERR_SHUT_DOWN (result NULL; the work did not run) if the runner
/// was stopped before the work started. `done` may be NULL (nothing is reported). If this
/// returns an error, neither function runs and `context` is still the caller's.
///
/// Returns TG_OK; otherwise nothing is queued and, checked in this order: TG_ERR_NULL_HANDLE;
/// TG_ERR_WRONG_TYPE (an object or completion-queue handle); TG_ERR_STALE (a forged or
/// corrupted runner handle); TG_ERR_SHUT_DOWN (the runner is stopped or stopping);
/// TG_ERR_NULL_POINTER (`work` is NULL); TG_ERR_LIMIT (its queue is full: try again later).
///
/// Caller's contract: `work(context, ...)` and `done(context, ...)` must be sound to call on the
/// runner thread, and `context` must stay valid until `done` runs (or, with `done` NULL, until
/// `work` returns).
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_runner_post(
    runner: Handle,
    work: tg_work_fn,
    context: *mut c_void,
    done: tg_completion_fn,
) -> tg_status {
    const OP: &str = "tg_runner_post";
    guarded(OP, || {
        let runner = RUNNERS.resolve(OP, runner)?;
        let work = require_work(OP, work)?;
        runner.submit(OP, Job::Foreign { work, context: RawPtr(context), done: ForeignDone::Callback(done) })
    })
}

/// Queues `work(context, &result)` to run on the runner; its outcome becomes the entry
/// `(tag, status, result)` of the completion queue `cq`, for any thread to take with
/// tg_cq_wait. Never blocks. Room in `cq` is reserved now, so if this returns TG_OK the entry
/// arrives exactly once (status TG_OK with the work's result, or TG_ERR_SHUT_DOWN with result
/// NULL if the runner was stopped before the work started) and is never dropped for lack of room.
/// If `cq` is destroyed meanwhile, the entry goes to its discard function instead.
///
/// Returns TG_OK; otherwise nothing is queued and, in this order: the runner handle's errors
/// (TG_ERR_NULL_HANDLE, TG_ERR_WRONG_TYPE, TG_ERR_STALE, TG_ERR_SHUT_DOWN);
/// TG_ERR_NULL_POINTER (`work` is NULL); the queue handle's errors (TG_ERR_NULL_HANDLE,
/// TG_ERR_WRONG_TYPE, TG_ERR_STALE, TG_ERR_SHUT_DOWN if `cq` was destroyed); TG_ERR_LIMIT
/// (`cq`'s entries and outstanding completions fill its capacity, or the runner's queue is full);
/// TG_ERR_SHUT_DOWN (the runner is stopping).
///
/// Caller's contract: `work(context, ...)` must be sound to call on the runner thread; `context`
/// must stay valid until the entry tagged `tag` has been taken (or discarded); the result may be
/// used on whichever thread takes the entry.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_runner_post_to_queue(
    runner: Handle,
    work: tg_work_fn,
    context: *mut c_void,
    cq: Handle,
    tag: u64,
) -> tg_status {
    const OP: &str = "tg_runner_post_to_queue";
    guarded(OP, || {
        let runner = RUNNERS.resolve(OP, runner)?;
        let work = require_work(OP, work)?;
        let queue = QUEUES.resolve(OP, cq)?;
        queue.core.reserve().map_err(|refused| runner::reserve_error(OP, refused, queue.capacity))?;
        let done = ForeignDone::Queue { cq: Arc::clone(&queue.core), tag };
        runner.submit(OP, Job::Foreign { work, context: RawPtr(context), done }).inspect_err(|_| queue.core.unreserve())
    })
}

/// Runs `work(context, &result)` on the runner and waits for it, at most `timeout_ms`
/// milliseconds (TG_TIMEOUT_INFINITE: as long as it takes; waiting for room in a full queue
/// counts too), then writes the work's result to `*out_result`.
///
/// On TG_ERR_TIMEOUT the caller stops waiting and the work is given up: cancelled if it has not
/// started (it never runs), left to finish if it has. Either way `abandon(context, status,
/// result)`, if not NULL, runs later, exactly once, on the runner, when the library is done with
/// `context`: with TG_OK and the late result (now yours to free), or with an error code and
/// result NULL (the work never ran). So after a timeout, release `context` and any late result
/// in `abandon`, not at once. With `abandon` NULL a late result is dropped. `abandon` runs only
/// after TG_ERR_TIMEOUT.
///
/// Returns TG_OK (the work ran; `*out_result` holds its result); otherwise `*out_result` is
/// untouched and, in this order: TG_ERR_NULL_HANDLE; TG_ERR_WRONG_TYPE; TG_ERR_STALE;
/// TG_ERR_SHUT_DOWN (the runner is stopped or stopping); TG_ERR_NULL_POINTER (`work` or
/// `out_result` is NULL); TG_ERR_INVALID_ARGUMENT (`timeout_ms` below -1); TG_ERR_BUSY
/// (called on the runner's own thread, where it would wait for itself forever; nothing is
/// queued); TG_ERR_LIMIT (the queue stayed full until the timeout; nothing was queued);
/// TG_ERR_TIMEOUT (see above); TG_ERR_SHUT_DOWN (the runner stopped before the work started;
/// it did not run).
///
/// Caller's contract: `work(context, ...)` and `abandon(context, ...)` must be sound to call on the
/// runner thread; `context` must stay valid until this returns TG_OK or an error other than
/// TG_ERR_TIMEOUT, or after TG_ERR_TIMEOUT until `abandon` runs. `out_result` must be NULL or valid
/// for writing one pointer.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_runner_call(
    runner: Handle,
    work: tg_work_fn,
    context: *mut c_void,
    timeout_ms: i64,
    abandon: tg_completion_fn,
    out_result: *mut *mut c_void,
) -> tg_status {
    const OP: &str = "tg_runner_call";
    guarded(OP, || {
        let runner = RUNNERS.resolve(OP, runner)?;
        let work = require_work(OP, work)?;
        if out_result.is_null() {
            return Err(null_pointer(OP, "out_result"));
        }
        let deadline = Deadline::after(timeout_from_ms(OP, timeout_ms)?);
        let slot = Arc::new(runner::CallSlot::new());
        let done = ForeignDone::Call { slot: Arc::clone(&slot), abandon };
        let RawPtr(result) = runner.call(OP, Job::Foreign { work, context: RawPtr(context), done }, &slot, deadline)?;
        // SAFETY: non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out_result.write(result) };
        Ok(())
    })
}

/// Stops a runner and joins its thread, in this order: it stops accepting work (posts get
/// TG_ERR_SHUT_DOWN); the job it is running finishes; every job that has not started is
/// failed with TG_ERR_SHUT_DOWN, exactly once and on the runner (its `done` runs, its queue
/// entry is delivered, its blocked caller returns); everything the runner owns is destroyed on
/// the runner (as by tg_thread_cleanup); the thread exits and is joined. Afterwards the handle
/// answers TG_ERR_SHUT_DOWN, and handles of objects the runner owned TG_ERR_OWNER_EXITED.
/// The join waits for the running job: do not stop a runner from work that it is itself
/// waiting for (say, runner A's work stopping runner B while B's work blocks in a
/// tg_runner_call to A).
///
/// Returns TG_OK; TG_ERR_NULL_HANDLE; TG_ERR_WRONG_TYPE; TG_ERR_STALE; TG_ERR_SHUT_DOWN
/// (already stopped, or being stopped by another thread); TG_ERR_BUSY (called on the runner's
/// own thread, from its work, a callback or a destructor, where it would join itself: nothing
/// happens; stop it from another thread); TG_ERR_PANIC (the runner thread panicked; it is gone).
#[unsafe(no_mangle)]
pub extern "C" fn tg_runner_stop(runner: Handle) -> tg_status {
    const OP: &str = "tg_runner_stop";
    guarded(OP, || RUNNERS.resolve(OP, runner)?.stop(OP))
}

/// Writes the threadguard ID of the runner's thread to `*out_thread_id`: the owner of every
/// object its work registers (compare with tg_owner_of). Any thread may ask.
///
/// Returns TG_OK; TG_ERR_NULL_HANDLE; TG_ERR_WRONG_TYPE; TG_ERR_STALE; TG_ERR_SHUT_DOWN (the
/// runner has been stopped); TG_ERR_NULL_POINTER if `out_thread_id` is NULL.
///
/// Caller's contract: `out_thread_id` must be NULL or valid for writing one `uint64_t`.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_runner_thread_id(runner: Handle, out_thread_id: *mut u64) -> tg_status {
    const OP: &str = "tg_runner_thread_id";
    guarded(OP, || {
        let runner = RUNNERS.resolve(OP, runner)?;
        if out_thread_id.is_null() {
            return Err(null_pointer(OP, "out_thread_id"));
        }
        // SAFETY: non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out_thread_id.write(runner.thread_id()) };
        Ok(())
    })
}

/// Creates a completion queue with room for `capacity` entries (1 to TG_MAX_QUEUE_CAPACITY),
/// counting both entries waiting to be taken and completions of work posted to it and not yet
/// finished. Any thread may use the handle. `discard` (may be NULL) receives, exactly once
/// each, the entries that will never be waited for because the queue was destroyed.
///
/// Returns TG_OK; TG_ERR_NULL_POINTER if `out_cq` is NULL; TG_ERR_INVALID_ARGUMENT for a
/// capacity of 0 or above TG_MAX_QUEUE_CAPACITY.
///
/// Caller's contract: `out_cq` must be NULL or valid for writing one `tg_handle`; `discard` must be
/// sound to call on any thread that destroys the queue or runs work posted to it.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_cq_create(capacity: u32, discard: tg_discard_fn, out_cq: *mut Handle) -> tg_status {
    const OP: &str = "tg_cq_create";
    guarded(OP, || {
        if out_cq.is_null() {
            return Err(null_pointer(OP, "out_cq"));
        }
        runner::check_queue_capacity(OP, capacity as usize)?;
        let discard: Option<DiscardFn> = discard;
        let handle = QUEUES.insert(Arc::new(ForeignQueue::new(capacity as usize, discard)))?;
        // SAFETY: non-null (checked above) and valid for writes (the caller's contract).
        unsafe { out_cq.write(handle) };
        Ok(())
    })
}

/// Takes the oldest entry of a completion queue, waiting at most `timeout_ms` milliseconds
/// for one (TG_TIMEOUT_INFINITE: as long as it takes; 0: do not wait), and writes its tag,
/// status (TG_OK, TG_ERR_SHUT_DOWN if the runner stopped before the work ran) and result (NULL
/// unless the status is TG_OK). Any number of threads may wait; each entry goes to one of them.
/// Waiting inside runner work for an entry that the same runner has yet to produce never
/// succeeds (the runner is busy waiting): use a timeout there, or wait on another thread.
///
/// Returns TG_OK (an entry was taken); otherwise nothing is written and, in this order:
/// TG_ERR_NULL_HANDLE; TG_ERR_WRONG_TYPE (a runner or object handle); TG_ERR_STALE;
/// TG_ERR_SHUT_DOWN (the queue was destroyed, also while waiting); TG_ERR_NULL_POINTER (an out
/// pointer is NULL); TG_ERR_INVALID_ARGUMENT (`timeout_ms` below -1); TG_ERR_TIMEOUT.
///
/// Caller's contract: `out_tag`, `out_status` and `out_result` must each be NULL or valid for
/// writing one value.
#[cfg_attr(all(), doc = "# Safety\n\nThe caller's contract above.")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tg_cq_wait(
    cq: Handle,
    timeout_ms: i64,
    out_tag: *mut u64,
    out_status: *mut tg_status,
    out_result: *mut *mut c_void,
) -> tg_status {
    const OP: &str = "tg_cq_wait";
    guarded(OP, || {
        let queue = QUEUES.resolve(OP, cq)?;
        for (pointer_is_null, what) in
            [(out_tag.is_null(), "out_tag"), (out_status.is_null(), "out_status"), (out_result.is_null(), "out_result")]
        {
            if pointer_is_null {
                return Err(null_pointer(OP, what));
            }
        }
        let deadline = Deadline::after(timeout_from_ms(OP, timeout_ms)?);
        let completion = queue.core.wait(deadline).map_err(|error| runner::wait_error(OP, error))?;
        let (status, result) = split(completion.result);
        // SAFETY: the three pointers are non-null (checked above) and valid for writes (the
        // caller's contract).
        unsafe {
            out_tag.write(completion.tag);
            out_status.write(status);
            out_result.write(result);
        }
        Ok(())
    })
}

/// Destroys a completion queue, from any thread. Threads waiting on it return
/// TG_ERR_SHUT_DOWN. Entries still queued are passed to its `discard` function now, on this
/// thread; completions of work posted to it that finish later go to `discard` on the runner
/// that ran it (work already posted is not cancelled). With `discard` NULL they are dropped.
/// Afterwards the handle answers TG_ERR_SHUT_DOWN.
///
/// Returns TG_OK; TG_ERR_NULL_HANDLE; TG_ERR_WRONG_TYPE; TG_ERR_STALE; TG_ERR_SHUT_DOWN
/// (already destroyed).
#[unsafe(no_mangle)]
pub extern "C" fn tg_cq_destroy(cq: Handle) -> tg_status {
    const OP: &str = "tg_cq_destroy";
    guarded(OP, || {
        let queue = QUEUES.resolve(OP, cq)?;
        if QUEUES.remove(cq).is_none() || !queue.core.close() {
            return Err(crate::Error::new(
                Status::ShutDown,
                format!("{OP}: completion queue {cq:?} is already destroyed"),
            ));
        }
        Ok(())
    })
}

fn require_work(op: &str, work: tg_work_fn) -> Result<WorkFn, crate::Error> {
    work.ok_or_else(|| null_pointer(op, "work"))
}

// The C function types are the core's, spelled for cbindgen.
const _: fn(tg_completion_fn) -> Option<CompletionFn> = |f| f;
const _: fn(tg_discard_fn) -> Option<DiscardFn> = |f| f;
