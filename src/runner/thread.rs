//! The runner thread: its start, its loop, its orderly stop.
//!
//! Start spawns a named thread and waits until it has its threadguard identity, so the
//! runner's thread ID is known (and objects created by its work are owned by it, I1) before
//! `start` returns.
//!
//! The loop drains the work queue in batches and runs each job at the top of the runner's
//! stack (no borrow held, so work may register, borrow and destroy objects). Between batches it
//! runs the destroy requests other threads queued for it (`tg_destroy_later` of objects the
//! runner owns): a push to its inbox wakes the loop, so they run promptly even when no work
//! arrives.
//!
//! Stop, in order: the queue closes (new work gets `TG_ERR_SHUT_DOWN`), the handle leaves the
//! registry, the runner fails every job that has not started (its completion is delivered
//! with `TG_ERR_SHUT_DOWN`, on the runner, exactly once) while the job it is running finishes,
//! then it destroys everything it owns on its own thread (`tg_thread_cleanup`, I5) and exits;
//! the stopping thread joins it. Stop refuses, without side effects, to run on the runner
//! itself (it would join itself), and a second stop gets `TG_ERR_SHUT_DOWN`.

use super::call::{CallSlot, TimedOut};
use super::job::{Job, panicked};
use super::queue::{Refused, WorkQueue, consume};
use super::registry::{RUNNER_OWNER, Registry};
use super::sync::{Deadline, Spin};
use crate::error::{Error, Status};
use crate::guard::{self, refuse};
use crate::handle::Handle;
use crate::state::{with_existing_state, with_state};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::task::{Wake, Waker};
use std::thread::JoinHandle;

/// The largest queue capacity a runner or completion queue accepts.
pub(crate) const MAX_CAPACITY: usize = 1 << 24;

/// Every live runner, by handle.
pub(crate) static RUNNERS: Registry<RunnerInner> = Registry::new("runner", "stopped", RUNNER_OWNER);

/// A runner: its queue and its thread.
pub(crate) struct RunnerInner {
    pub(crate) queue: WorkQueue<Job>,
    name: Box<str>,
    capacity: usize,
    /// The runner thread's threadguard ID, set by the runner thread before `start` returns.
    thread: OnceLock<u64>,
    /// Taken by the one stop that joins.
    join: Mutex<Option<JoinHandle<()>>>,
    /// Set right after registration, before `start` returns.
    handle: OnceLock<Handle>,
    /// How blocking callers wait for their results before they sleep (shared by all of them:
    /// whether spinning pays depends mostly on where the runner runs and how long its work is).
    call_spin: Spin,
}

impl RunnerInner {
    /// Starts a runner thread named `name` with a queue of `capacity` jobs, and registers it.
    pub(crate) fn start(op: &str, name: &str, capacity: usize) -> Result<Arc<RunnerInner>, Error> {
        super::check_queue_capacity(op, capacity)?;
        if name.contains('\0') {
            return Err(refuse(Status::InvalidArgument, format!("{op}: the runner name {name:?} contains a NUL byte")));
        }
        let inner = Arc::new(RunnerInner {
            queue: WorkQueue::new(capacity),
            name: name.into(),
            capacity,
            thread: OnceLock::new(),
            join: Mutex::new(None),
            handle: OnceLock::new(),
            call_spin: Spin::new(),
        });
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let runner = Arc::clone(&inner);
        let join =
            std::thread::Builder::new().name(name.to_owned()).spawn(move || runner_main(runner, ready_tx)).map_err(
                |error| Error::new(Status::Limit, format!("{op}: cannot start runner thread {name:?}: {error}")),
            )?;
        let started = ready_rx.recv().unwrap_or_else(|_| {
            Err(Error::new(Status::Panic, format!("{op}: runner thread {name:?} ended before it started")))
        });
        if let Err(error) = started {
            let _ = join.join();
            return Err(error);
        }
        *inner.join.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(join);
        match RUNNERS.insert(Arc::clone(&inner)) {
            Ok(handle) => {
                let _ = inner.handle.set(handle);
                Ok(inner)
            }
            Err(error) => {
                let _ = inner.shut_down(op);
                Err(error)
            }
        }
    }

    /// The runner's handle.
    pub(crate) fn handle(&self) -> Handle {
        self.handle.get().copied().unwrap_or(Handle::NULL)
    }

    /// The runner thread's threadguard ID (the owner of every object its work creates).
    pub(crate) fn thread_id(&self) -> u64 {
        self.thread.get().copied().unwrap_or(0)
    }

    /// The runner's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether the calling thread is this runner's thread. Compares threadguard IDs (the
    /// runner's state lives as long as it runs, also through its exit hook), which works in
    /// thread-local destructors and allocates nothing.
    pub(crate) fn is_current(&self) -> bool {
        self.thread.get().is_some_and(|&runner| with_existing_state(|state| state.id) == Some(runner))
    }

    /// `runner "gl" (thread 7)`: how messages name a runner.
    pub(crate) fn describe(&self) -> String {
        format!("runner {:?} (thread {})", self.name, self.thread_id())
    }

    /// Queues `job` without waiting: `TG_ERR_SHUT_DOWN` once stopping, `TG_ERR_LIMIT` when
    /// full. A refused job is dropped unrun and its completion is not delivered.
    pub(crate) fn submit(&self, op: &str, job: Job) -> Result<(), Error> {
        self.queue.push(job, Deadline::now()).map_err(|refused| self.refused(op, refused))
    }

    #[cold]
    fn refused(&self, op: &str, refused: Refused<Job>) -> Error {
        match refused {
            Refused::Closed(_) => Error::new(
                Status::ShutDown,
                format!("{op}: {} is stopped or stopping; the work was not queued", self.describe()),
            ),
            Refused::Full(_) => Error::new(
                Status::Limit,
                format!(
                    "{op}: the queue of {} is full ({} jobs); the work was not queued",
                    self.describe(),
                    self.capacity
                ),
            ),
        }
    }

    /// Queues `job`, which answers `slot`, and waits for the answer until `deadline`. Waiting
    /// for room counts against the same deadline.
    pub(crate) fn call<T>(&self, op: &str, job: Job, slot: &CallSlot<T>, deadline: Deadline) -> Result<T, Error> {
        if self.is_current() {
            return Err(refuse(
                Status::Busy,
                format!("{op}: called on {}'s own thread, where it would wait for itself forever", self.describe()),
            ));
        }
        self.queue.push(job, deadline).map_err(|refused| self.refused(op, refused))?;
        match slot.wait(deadline, &self.call_spin) {
            Ok(result) => result,
            Err(TimedOut) => Err(Error::new(
                Status::Timeout,
                format!(
                    "{op}: {} did not finish the work in time; it is cancelled if it has not started, and its late result is given up if it has",
                    self.describe()
                ),
            )),
        }
    }

    /// Stops the runner and joins its thread (see the module doc).
    pub(crate) fn stop(&self, op: &str) -> Result<(), Error> {
        if self.is_current() {
            return Err(refuse(
                Status::Busy,
                format!(
                    "{op}: called on {}'s own thread (from its work, a callback or a destructor), which cannot join itself; stop it from another thread",
                    self.describe()
                ),
            ));
        }
        self.shut_down(op)
    }

    fn shut_down(&self, op: &str) -> Result<(), Error> {
        if !self.close() {
            return Err(Error::new(
                Status::ShutDown,
                format!("{op}: {} is already stopped or stopping", self.describe()),
            ));
        }
        let join = self.join.lock().unwrap_or_else(|poison| poison.into_inner()).take();
        match join.map(JoinHandle::join) {
            Some(Err(payload)) => Err(panicked(&format!("{op}: {}", self.describe()), payload)),
            _ => Ok(()),
        }
    }

    /// Closes the queue and unregisters; returns whether this call did it. The runner thread
    /// then finishes on its own (used directly when a `Runner` is dropped on its own thread).
    pub(crate) fn close(&self) -> bool {
        if !self.queue.close() {
            return false;
        }
        if let Some(handle) = self.handle.get() {
            RUNNERS.remove(*handle);
        }
        true
    }
}

/// Wakes the runner's loop when another thread queues a destroy request for it.
struct InboxWaker(Weak<RunnerInner>);

impl Wake for InboxWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(runner) = self.0.upgrade() {
            runner.queue.poke();
        }
    }
}

fn runner_main(runner: Arc<RunnerInner>, ready: mpsc::SyncSender<Result<(), Error>>) {
    let started = with_state(|state| {
        state.record.inbox.set_waker(Waker::from(Arc::new(InboxWaker(Arc::downgrade(&runner)))));
        Ok(state.id)
    });
    match started {
        Ok(id) => {
            let _ = runner.thread.set(id);
            let _ = ready.send(Ok(()));
        }
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    }
    drop(ready);
    consume(
        &runner.queue,
        |job| contain(|| job.run()),
        |job| {
            let error = Error::new(
                Status::ShutDown,
                format!("{} was stopped before this work started; it did not run", runner.describe()),
            );
            contain(|| job.fail(error));
        },
        || {
            if with_existing_state(|state| state.record.inbox.has_pending()).unwrap_or(false) {
                let _ = guard::run_pending();
            }
        },
    );
    // Destroy everything the runner owns, here, on its own thread (I5).
    contain(|| {
        let _ = guard::thread_cleanup();
    });
}

/// Runs `f`, containing a panic (a Rust completion callback, or a destructor of unrun work):
/// counted, and the runner goes on.
fn contain(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        drop(panicked("a runner callback", payload));
    }
}
