//! A crew: worker threads that run closures one at a time for a driver thread, on one CPU.
//!
//! This is the kit's execution engine without the kit's model, for harnesses that bring their
//! own (the project's `misuse` interpreter, with its reference model, runs on it). The driver
//! hands a closure to one worker and waits; the worker runs it and hands the turn back. Only
//! one of them runs at a time, so execution is deterministic, and they share the CPU the
//! driver was on when the crew was made (Linux), where a hand-off is a direct switch between
//! two threads rather than a cross-CPU wake-up. A worker ends when the driver ends it: its
//! thread exits (thread-local destructors, and so threadguard's exit sweep, run) before
//! [`Crew::end`] returns.

use crate::affinity;
use crate::baton::Baton;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// How long a waiter spins when the crew could not be pinned to one CPU.
const PATIENCE: Duration = Duration::from_micros(50);

struct Shared {
    baton: Baton,
    jobs: Vec<Mutex<Option<Job>>>,
    /// The payload of a panic in the last job, for the driver to resume.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    quit: Vec<AtomicBool>,
    patience: Duration,
    /// The CPU the workers are to be pinned to (`usize::MAX`: none).
    cpu: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Worker threads in numbered slots, driven by the thread that made the crew.
///
/// ```
/// use threadguard_fuzzkit::Crew;
///
/// let mut crew = Crew::new(2);
/// crew.start(0, "worker-0");
/// crew.start(1, "worker-1");
/// let a = crew.run(0, || threadguard::current_thread_id().unwrap());
/// let b = crew.run(1, || threadguard::current_thread_id().unwrap());
/// assert_ne!(a, b);
/// crew.end(0).unwrap(); // the thread has exited
/// ```
pub struct Crew {
    shared: Arc<Shared>,
    workers: Vec<Option<JoinHandle<()>>>,
    driver: usize,
    pinned: bool,
}

impl Crew {
    /// A crew with `slots` empty slots, driven by the calling thread, which is pinned (on
    /// Linux) to one CPU for the workers to share (kept from one crew to the next, and chosen
    /// again every few hundred crews).
    pub fn new(slots: usize) -> Crew {
        let cpu = affinity::choose();
        let pinned = cpu.is_some();
        let shared = Arc::new(Shared {
            baton: Baton::new(slots + 1, slots),
            jobs: (0..slots).map(|_| Mutex::new(None)).collect(),
            panic: Mutex::new(None),
            quit: (0..slots).map(|_| AtomicBool::new(false)).collect(),
            patience: if pinned { Duration::ZERO } else { PATIENCE },
            cpu: AtomicUsize::new(cpu.unwrap_or(usize::MAX)),
        });
        shared.baton.join(slots);
        Crew { shared, workers: (0..slots).map(|_| None).collect(), driver: slots, pinned }
    }

    /// Makes the calling thread the crew's driver (a crew kept from one caller to the next)
    /// and pins it to the crew's CPU, which is chosen again every few hundred calls (see
    /// [`Crew::new`]); the workers follow at their next job.
    pub fn drive(&mut self) {
        self.shared.baton.join(self.driver);
        let cpu = affinity::choose();
        if cpu.is_some() != self.pinned {
            // Pinning became possible or impossible: keep the workers where they are.
            return;
        }
        self.shared.cpu.store(cpu.unwrap_or(usize::MAX), Ordering::SeqCst);
    }

    /// Starts a worker thread named `name` in the empty slot `slot`.
    ///
    /// # Panics
    /// If the slot is taken or out of range, or the thread cannot be spawned.
    pub fn start(&mut self, slot: usize, name: &str) {
        assert!(self.workers[slot].is_none(), "slot {slot} has a worker already");
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || work(&shared, slot))
            .expect("spawn a crew worker");
        self.workers[slot] = Some(thread);
    }

    /// Runs `job` on the worker in `slot` and returns its result; a panic in `job` is resumed
    /// here.
    ///
    /// # Panics
    /// If the slot is empty, or as `job` does.
    pub fn run<R: Send + 'static>(&self, slot: usize, job: impl FnOnce() -> R + Send + 'static) -> R {
        assert!(self.workers[slot].is_some(), "slot {slot} has no worker");
        let result = Arc::new(Mutex::new(None));
        let out = Arc::clone(&result);
        *lock(&self.shared.jobs[slot]) = Some(Box::new(move || *lock(&out) = Some(job())));
        self.shared.baton.pass(slot);
        self.shared.baton.wait(self.driver, self.shared.patience);
        if let Some(payload) = lock(&self.shared.panic).take() {
            resume_unwind(payload);
        }
        let value = lock(&result).take();
        value.expect("the job ran")
    }

    /// Ends the worker in `slot` and waits until its thread is gone (its thread-local
    /// destructors have run); the slot is empty again. `Err` if the thread panicked outside a
    /// job (in a thread-local destructor, say).
    pub fn end(&mut self, slot: usize) -> std::thread::Result<()> {
        let Some(thread) = self.workers[slot].take() else { return Ok(()) };
        self.shared.quit[slot].store(true, Ordering::SeqCst);
        self.shared.baton.pass(slot);
        let joined = thread.join();
        self.shared.baton.take(self.driver);
        self.shared.quit[slot].store(false, Ordering::SeqCst);
        joined
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        for slot in 0..self.workers.len() {
            let _ = self.end(slot);
        }
    }
}

fn work(shared: &Shared, slot: usize) {
    shared.baton.join(slot);
    let driver = shared.jobs.len();
    loop {
        shared.baton.wait(slot, shared.patience);
        if shared.quit[slot].load(Ordering::SeqCst) {
            return;
        }
        let cpu = shared.cpu.load(Ordering::SeqCst);
        if cpu != usize::MAX {
            affinity::pin(cpu); // the driver has moved
        }
        let job = lock(&shared.jobs[slot]).take();
        if let Some(job) = job
            && let Err(payload) = catch_unwind(AssertUnwindSafe(job))
        {
            *lock(&shared.panic) = Some(payload);
        }
        shared.baton.pass(driver);
    }
}
