//! Runners: a dedicated owner thread that takes work from any thread.
//!
//! For hosts that cannot pin their callers to one OS thread (Go's scheduler moves goroutines
//! between threads; thread pools hand work to whichever thread is free), a runner keeps every
//! thread-affine object on one thread of its own and lets any thread use them by sending it
//! work. This is the pattern the Nim guide for Go interop recommends.
//!
//! - [`Runner::start`] spawns a named thread. Objects created by work run on it live in its
//!   table (I1): only work run on it can borrow them.
//! - [`Runner::post`] queues work and has its result passed to a callback on the runner;
//!   [`Runner::post_to_queue`] delivers it to a [`CompletionQueue`] that any thread can wait
//!   on; [`Runner::call`] blocks until the result is back, with an optional timeout.
//! - A panic in posted work becomes [`Status::Panic`] for that work only; the runner goes on.
//! - [`Runner::stop`] (or dropping the `Runner`) stops accepting work, fails work that has not
//!   started with [`Status::ShutDown`] (its callback still runs, exactly once), destroys
//!   everything the runner owns on the runner, and joins the thread.
//!
//! Queues are bounded. A post to a full runner queue is refused at once with
//! [`Status::Limit`]; a blocking call waits for room until its timeout. A completion queue
//! reserves room for each completion when the work is posted, so posting to a full one is
//! refused with [`Status::Limit`] and a completion never has to be dropped.
//!
//! Exactly once: every accepted piece of work has its outcome delivered exactly once (the
//! callback, the queue entry, or the blocking caller's answer), whether it ran, panicked, or
//! was failed at stop. A refused post delivers nothing: the error is the outcome.
//!
//! Runner and completion-queue handles ([`Runner::handle`], for C callers) are `tg_handle`s
//! usable from any thread; [`RUNNER_OWNER`] and [`QUEUE_OWNER`] in their `owner` field tell
//! them from thread-owned object handles (see the `registry` module for the generation check).
//!
//! ```
//! use std::{cell::RefCell, rc::Rc, time::Duration};
//! use threadguard::runner::{CompletionQueue, Runner};
//!
//! let runner = Runner::start("model", 1024)?;
//!
//! // A thread-affine object, created on the runner and owned by it.
//! let list = runner.call(|| threadguard::register(Rc::new(RefCell::new(Vec::<u32>::new()))), None)??;
//! assert_eq!(threadguard::owner_of(list)?, runner.thread_id());
//!
//! // Any thread may post work that uses it; results come back through a completion queue.
//! let results = CompletionQueue::new(64)?;
//! for i in 0..3 {
//!     runner.post_to_queue(
//!         move || threadguard::with(list, |l: &mut Rc<RefCell<Vec<u32>>>| {
//!             l.borrow_mut().push(i);
//!             l.borrow().len()
//!         }),
//!         &results,
//!         i.into(),
//!     )?;
//! }
//! for _ in 0..3 {
//!     let done = results.wait(Some(Duration::from_secs(5)))?;
//!     assert!(done.result?.is_ok());
//! }
//!
//! // Stop: the list is destroyed on the runner, and the runner thread is joined.
//! runner.stop()?;
//! # Ok::<(), threadguard::Error>(())
//! ```

mod call;
mod completion;
mod foreign;
mod job;
mod queue;
pub(crate) mod registry;
mod sync;
mod thread;

#[cfg(all(test, loom))]
mod loom_tests;

pub use completion::Completion;
use completion::CqCore;
pub use registry::{QUEUE_OWNER, RUNNER_OWNER};

pub(crate) use call::CallSlot;
pub(crate) use completion::{CqRefused, CqWaitError};
pub(crate) use foreign::{DiscardFn, ForeignQueue, QUEUES, split, timeout_from_ms};
pub(crate) use job::{CompletionFn, ForeignDone, Job, RawPtr, WorkFn};
pub(crate) use sync::Deadline;
pub(crate) use thread::{MAX_CAPACITY, RUNNERS, RunnerInner};

use crate::error::{Error, Status};
use crate::guard::refuse;
use crate::handle::Handle;
use std::sync::Arc;
use std::time::Duration;

/// The largest capacity [`Runner::start`] and [`CompletionQueue::new`] accept (2^24).
/// Capacity is a bound, not a preallocation: memory grows with what is actually queued.
///
/// cbindgen:ignore
pub const MAX_QUEUE_CAPACITY: usize = MAX_CAPACITY;

/// A dedicated owner thread that runs work sent from any thread.
///
/// `Runner` is `Send` and `Sync`: share it by reference or in an `Arc`. Dropping it stops the
/// runner like [`Runner::stop`] (errors ignored); dropped on its own thread (inside its
/// work), it closes the queue and lets the thread finish on its own instead of joining it.
pub struct Runner {
    inner: Arc<RunnerInner>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("name", &self.inner.name())
            .field("thread_id", &self.inner.thread_id())
            .field("handle", &self.inner.handle())
            .finish()
    }
}

impl Runner {
    /// Starts a runner thread named `name` whose queue holds at most `capacity` waiting jobs.
    /// Returns once the thread runs and has its threadguard ID.
    ///
    /// # Errors
    /// [`Status::InvalidArgument`] if `capacity` is 0 or above [`MAX_QUEUE_CAPACITY`], or
    /// `name` contains a NUL byte; [`Status::Limit`] if the thread cannot be spawned.
    pub fn start(name: &str, capacity: usize) -> Result<Runner, Error> {
        RunnerInner::start("Runner::start", name, capacity).map(|inner| Runner { inner })
    }

    /// The runner's handle, usable from any thread and from C (`tg_runner_*`).
    pub fn handle(&self) -> Handle {
        self.inner.handle()
    }

    /// The runner thread's threadguard ID: the owner of every object its work registers.
    pub fn thread_id(&self) -> u64 {
        self.inner.thread_id()
    }

    /// The runner's name (also its thread's name).
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Jobs waiting in the queue right now (not counting those the runner has taken).
    pub fn queued(&self) -> usize {
        self.inner.queue.len()
    }

    /// Queues `work`; the runner runs it and passes its result to `done`, on the runner.
    ///
    /// `done` is called exactly once if this returns `Ok`: with `Ok(value)`, with
    /// [`Status::Panic`] if `work` panicked, or with [`Status::ShutDown`] if the runner was
    /// stopped before `work` started (then `work` is dropped unrun). If this returns `Err`,
    /// neither is called (both are dropped here). The result need not be `Send`: it never
    /// leaves the runner. A panic in `done` is caught and counted; the runner goes on.
    ///
    /// # Errors
    /// [`Status::ShutDown`] once the runner is stopped or stopping; [`Status::Limit`] if its
    /// queue is full (the post is refused at once, never blocks).
    ///
    /// # Example
    /// ```
    /// use std::sync::mpsc;
    /// use threadguard::runner::Runner;
    ///
    /// let runner = Runner::start("worker", 16)?;
    /// let (tx, rx) = mpsc::channel();
    /// runner.post(|| 6 * 7, move |result| tx.send(result).unwrap())?;
    /// assert_eq!(rx.recv().unwrap()?, 42);
    /// # Ok::<(), threadguard::Error>(())
    /// ```
    pub fn post<T, F, C>(&self, work: F, done: C) -> Result<(), Error>
    where
        T: 'static,
        F: FnOnce() -> T + Send + 'static,
        C: FnOnce(Result<T, Error>) + Send + 'static,
    {
        self.inner.submit("Runner::post", job::native_callback(work, done))
    }

    /// Queues `work`; its result is delivered to `queue` as a [`Completion`] tagged `tag`.
    ///
    /// Room in `queue` is reserved now, so the completion is delivered exactly once if this
    /// returns `Ok` (with [`Status::ShutDown`] if the runner stopped first, [`Status::Panic`]
    /// if `work` panicked), and never dropped for lack of room.
    ///
    /// # Errors
    /// [`Status::ShutDown`] if the runner is stopped or stopping, or `queue` is closed;
    /// [`Status::Limit`] if the runner's queue is full, or `queue`'s entries and outstanding
    /// completions fill its capacity. Nothing is queued then.
    pub fn post_to_queue<T, F>(&self, work: F, queue: &CompletionQueue<T>, tag: u64) -> Result<(), Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        const OP: &str = "Runner::post_to_queue";
        queue.reserve(OP)?;
        self.inner
            .submit(OP, job::native_queue(work, Arc::clone(&queue.core), tag))
            .inspect_err(|_| queue.core.unreserve())
    }

    /// Runs `work` on the runner and waits for its result, at most `timeout` (`None`: as long
    /// as it takes; the wait for room in a full queue counts against it too).
    ///
    /// On timeout, `work` is cancelled (dropped unrun, on the runner) if it has not started,
    /// and its result is dropped on the runner when it finishes if it had.
    ///
    /// # Errors
    /// [`Status::Busy`] when called on the runner itself (it would wait for itself forever);
    /// [`Status::ShutDown`] if the runner is stopped or stopping, or stops before `work`
    /// started; [`Status::Limit`] if the queue stayed full until the timeout (`work` was not
    /// queued); [`Status::Timeout`]; [`Status::Panic`] if `work` panicked.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use threadguard::{Status, runner::Runner};
    ///
    /// let runner = Runner::start("worker", 16)?;
    /// assert_eq!(runner.call(|| 2 + 2, None)?, 4);
    /// let slow = runner.call(|| std::thread::sleep(Duration::from_millis(200)), Some(Duration::from_millis(10)));
    /// assert_eq!(slow.unwrap_err().status(), Status::Timeout);
    /// let panicked = runner.call(|| -> u8 { panic!("boom") }, None);
    /// assert_eq!(panicked.unwrap_err().status(), Status::Panic);
    /// assert_eq!(runner.call(|| "still running", None)?, "still running");
    /// # Ok::<(), threadguard::Error>(())
    /// ```
    pub fn call<T, F>(&self, work: F, timeout: Option<Duration>) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let deadline = Deadline::after(timeout);
        let slot = Arc::new(CallSlot::new());
        self.inner.call("Runner::call", job::native_call(work, Arc::clone(&slot)), &slot, deadline)
    }

    /// Stops the runner: refuses new work, fails work that has not started (its outcome is
    /// delivered with [`Status::ShutDown`]), lets the running job finish, destroys everything
    /// the runner owns on the runner, and joins its thread.
    ///
    /// # Errors
    /// [`Status::Busy`] on the runner's own thread (nothing happens: stop it from another
    /// thread); [`Status::ShutDown`] if it is already stopped or being stopped;
    /// [`Status::Panic`] if the runner thread itself panicked.
    ///
    /// # Example
    /// ```
    /// use threadguard::{Status, runner::Runner};
    ///
    /// let runner = Runner::start("short-lived", 4)?;
    /// runner.stop()?;
    /// assert_eq!(runner.stop().unwrap_err().status(), Status::ShutDown);
    /// assert_eq!(runner.call(|| (), None).unwrap_err().status(), Status::ShutDown);
    /// # Ok::<(), threadguard::Error>(())
    /// ```
    pub fn stop(&self) -> Result<(), Error> {
        self.inner.stop("Runner::stop")
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if self.inner.is_current() {
            self.inner.close();
        } else {
            let _ = self.inner.stop("Runner::drop");
        }
    }
}

/// A bounded queue of [`Completion`]s that any thread can wait on.
///
/// Work posted with [`Runner::post_to_queue`] reserves room here when it is posted. Dropping
/// the queue closes it: waiters get [`Status::ShutDown`], and entries still queued or
/// delivered later are dropped.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use threadguard::{Status, runner::{CompletionQueue, Runner}};
///
/// let runner = Runner::start("worker", 16)?;
/// let queue = CompletionQueue::new(2)?;
/// runner.post_to_queue(|| "a", &queue, 1)?;
/// runner.post_to_queue(|| "b", &queue, 2)?;
/// // Two completions are outstanding: the queue is full until one is taken.
/// assert_eq!(runner.post_to_queue(|| "c", &queue, 3).unwrap_err().status(), Status::Limit);
/// let first = queue.wait(None)?;
/// assert_eq!((first.tag, first.result?), (1, "a"));
/// assert_eq!(queue.wait(None)?.tag, 2);
/// assert_eq!(queue.wait(Some(Duration::ZERO)).unwrap_err().status(), Status::Timeout);
/// # Ok::<(), threadguard::Error>(())
/// ```
pub struct CompletionQueue<T> {
    core: Arc<CqCore<T>>,
    capacity: usize,
}

impl<T> std::fmt::Debug for CompletionQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (queued, outstanding) = self.core.counts();
        f.debug_struct("CompletionQueue")
            .field("capacity", &self.capacity)
            .field("queued", &queued)
            .field("outstanding", &outstanding)
            .finish()
    }
}

impl<T: Send + 'static> CompletionQueue<T> {
    /// An empty queue with room for `capacity` completions (queued plus outstanding).
    ///
    /// # Errors
    /// [`Status::InvalidArgument`] if `capacity` is 0 or above [`MAX_QUEUE_CAPACITY`].
    pub fn new(capacity: usize) -> Result<CompletionQueue<T>, Error> {
        check_queue_capacity("CompletionQueue::new", capacity)?;
        Ok(CompletionQueue { core: Arc::new(CqCore::new(capacity, None)), capacity })
    }

    /// Takes the oldest completion, waiting at most `timeout` for one (`None`: as long as it
    /// takes; `Some(Duration::ZERO)`: do not wait). Any number of threads may wait at once;
    /// each completion goes to exactly one of them. Inside runner work, waiting for a
    /// completion the same runner has yet to produce never succeeds: use a timeout there.
    ///
    /// # Errors
    /// [`Status::Timeout`]; [`Status::ShutDown`] if the queue was closed.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Completion<T>, Error> {
        self.core.wait(Deadline::after(timeout)).map_err(|error| wait_error("CompletionQueue::wait", error))
    }

    /// Completions waiting to be taken, and completions posted but not yet delivered.
    pub fn counts(&self) -> (usize, usize) {
        self.core.counts()
    }
}

impl<T> CompletionQueue<T> {
    fn reserve(&self, op: &str) -> Result<(), Error> {
        self.core.reserve().map_err(|refused| reserve_error(op, refused, self.capacity))
    }
}

impl<T> Drop for CompletionQueue<T> {
    fn drop(&mut self) {
        self.core.close();
    }
}

/// Validates the capacity of a runner's queue or a completion queue.
pub(crate) fn check_queue_capacity(op: &str, capacity: usize) -> Result<(), Error> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(refuse(
            Status::InvalidArgument,
            format!("{op}: capacity {capacity} is outside 1..={MAX_CAPACITY}"),
        ));
    }
    Ok(())
}

/// The error for a refused reservation.
pub(crate) fn reserve_error(op: &str, refused: CqRefused, capacity: usize) -> Error {
    match refused {
        CqRefused::Closed => Error::new(Status::ShutDown, format!("{op}: the completion queue is closed")),
        CqRefused::Full => Error::new(
            Status::Limit,
            format!("{op}: the completion queue is full ({capacity} completions queued or outstanding)"),
        ),
    }
}

/// The error for a wait that returned no entry.
pub(crate) fn wait_error(op: &str, error: CqWaitError) -> Error {
    match error {
        CqWaitError::TimedOut => Error::new(Status::Timeout, format!("{op}: no completion arrived in time")),
        CqWaitError::Closed => Error::new(Status::ShutDown, format!("{op}: the completion queue was closed")),
    }
}
