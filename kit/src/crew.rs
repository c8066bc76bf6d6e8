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
//!
//! A hand-off is a thread switch, the dearest part of a step. [`Crew::relay`] saves most of
//! them: the workers run a leg each and pass the turn to each other directly, a worker runs
//! consecutive legs of its own without a switch, and the driver is woken only when the relay is
//! over (a harness whose steps decide the next step's thread lets the worker that ran a step
//! decide, check and pass on).

use crate::affinity;
use crate::baton::Baton;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;
/// A relay's legs: called with the slot it runs on; the slot of the next leg, or `None`.
type Leg = dyn Fn(usize) -> Option<usize> + Send + Sync;

/// What the driver gave a worker.
enum Work {
    Job(Job),
    Leg(Arc<Leg>),
}

/// How long a waiter spins when the crew could not be pinned to one CPU.
const PATIENCE: Duration = Duration::from_micros(50);

struct Shared {
    baton: Baton,
    jobs: Vec<Mutex<Option<Work>>>,
    /// Which slots have a worker (for a relay's legs, which name the next slot).
    manned: Vec<AtomicBool>,
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
            manned: (0..slots).map(|_| AtomicBool::new(false)).collect(),
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
        self.shared.manned[slot].store(true, Ordering::SeqCst);
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
        *lock(&self.shared.jobs[slot]) = Some(Work::Job(Box::new(move || *lock(&out) = Some(job()))));
        self.hand_over(slot);
        let value = lock(&result).take();
        value.expect("the job ran")
    }

    /// Runs a relay, starting with a leg on the worker in `slot`: `leg(slot)` runs on the
    /// worker in `slot` and returns the slot whose worker runs the next leg, or `None` to end
    /// the relay. The workers pass the turn to each other directly (a leg on the same slot
    /// runs without a hand-off) and `relay` returns when a leg returns `None`. One leg runs
    /// at a time, in order, so a relay is as deterministic as a series of [`Crew::run`]s, at
    /// one thread switch per change of slot instead of two per leg. A panic in a leg ends the
    /// relay and is resumed here.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use threadguard_fuzzkit::Crew;
    ///
    /// let mut crew = Crew::new(2);
    /// crew.start(0, "worker-0");
    /// crew.start(1, "worker-1");
    /// let threads = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&threads);
    /// crew.relay(0, move |slot| {
    ///     let mut seen = seen.lock().unwrap();
    ///     seen.push((slot, threadguard::current_thread_id().unwrap()));
    ///     (seen.len() < 4).then_some(1 - slot) // 0, 1, 0, 1, then back to the driver
    /// });
    /// let threads = threads.lock().unwrap();
    /// assert_eq!(threads.iter().map(|&(slot, _)| slot).collect::<Vec<_>>(), [0, 1, 0, 1]);
    /// assert_eq!(threads[0].1, threads[2].1);
    /// assert_ne!(threads[0].1, threads[1].1);
    /// ```
    ///
    /// # Panics
    /// If `slot`, or a slot a leg returns, has no worker (the relay ends there), or as a leg
    /// does.
    pub fn relay(&self, slot: usize, leg: impl Fn(usize) -> Option<usize> + Send + Sync + 'static) {
        assert!(self.workers[slot].is_some(), "slot {slot} has no worker");
        *lock(&self.shared.jobs[slot]) = Some(Work::Leg(Arc::new(leg)));
        self.hand_over(slot);
    }

    /// Passes the turn to the worker in `slot` (whose work is set), waits until it comes back,
    /// and resumes a panic of the work.
    fn hand_over(&self, slot: usize) {
        self.shared.baton.pass(slot);
        self.shared.baton.wait(self.driver, self.shared.patience);
        if let Some(payload) = lock(&self.shared.panic).take() {
            resume_unwind(payload);
        }
    }

    /// Ends the worker in `slot` and waits until its thread is gone (its thread-local
    /// destructors have run); the slot is empty again. `Err` if the thread panicked outside a
    /// job (in a thread-local destructor, say).
    pub fn end(&mut self, slot: usize) -> std::thread::Result<()> {
        let Some(thread) = self.workers[slot].take() else { return Ok(()) };
        self.shared.manned[slot].store(false, Ordering::SeqCst);
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
        let work = lock(&shared.jobs[slot]).take();
        let next = match work {
            None => driver,
            Some(Work::Job(job)) => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(job)) {
                    *lock(&shared.panic) = Some(payload);
                }
                driver
            }
            Some(Work::Leg(leg)) => run_legs(shared, slot, leg),
        };
        shared.baton.pass(next);
    }
}

/// Runs `leg` on `slot` for as long as it names `slot`; the participant to pass the turn to
/// (the next leg's worker, with the leg set, or the driver).
fn run_legs(shared: &Shared, slot: usize, leg: Arc<Leg>) -> usize {
    let driver = shared.jobs.len();
    loop {
        match catch_unwind(AssertUnwindSafe(|| leg(slot))) {
            Err(payload) => {
                *lock(&shared.panic) = Some(payload);
                return driver;
            }
            Ok(None) => return driver,
            Ok(Some(next)) if next == slot => {}
            Ok(Some(next)) => {
                if !shared.manned.get(next).is_some_and(|manned| manned.load(Ordering::SeqCst)) {
                    let message = format!("a relay leg named slot {next}, which has no worker");
                    *lock(&shared.panic) = Some(Box::new(message));
                    return driver;
                }
                *lock(&shared.jobs[next]) = Some(Work::Leg(leg));
                return next;
            }
        }
    }
}
