//! # threadguard-fuzzkit
//!
//! Misuse fuzzing for libraries built on threadguard. You list your operations (constructors,
//! methods, destructors, deferred destructors) as closures over handles; the kit turns fuzzer
//! bytes into programs over several real OS threads (which thread runs which operation on which
//! handle, including handles that are stale, destroyed, forged, of another type or owned by an
//! exited thread, and, for a kind whose borrow the spec gives ([`Spec::borrow`]), the object's
//! own handle inside a borrow of it) and checks what threadguard promises for any library built
//! on it:
//!
//! - no crash, and no panic out of an operation;
//! - every status is one threadguard's checks allow for that handle on that thread (null,
//!   wrong thread, owner exited, stale, wrong type; busy inside a borrow, where a deferred
//!   destroy may be accepted instead) and one the operation documents;
//! - a refused call has no effect: no object created, destroyed or touched (inside a borrow,
//!   none created or destroyed while it holds);
//! - every object is destroyed exactly once, on its owner: when its destructor says so, when a
//!   deferred destroy request runs, at a cleanup or at the owner's exit, and never otherwise;
//! - threadguard's counters return to zero live objects, no pending requests and no extra live
//!   threads once the program's threads are done.
//!
//! A [`Witness`] in your type lets the kit see the object itself (where it is created, touched
//! and dropped); without one it sees it through threadguard's handles and counters.
//!
//! Programs run one step at a time in program order, so a program always runs the same way.
//! The threads of a program pass the turn to each other directly and share one CPU (where a
//! hand-off is a switch between two threads, not a cross-CPU wake-up), so thousands of
//! programs run per second.
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use threadguard::Handle;
//! use threadguard_fuzzkit::{Kit, Spec, Witness, status};
//!
//! pub struct Counter(Rc<RefCell<i64>>, Witness);
//!
//! threadguard::export_thread_affine! {
//!     type Counter;
//!     /// Creates a counter.
//!     new fn counter_new(start: i64) { Counter(Rc::new(RefCell::new(start)), Witness::new()) }
//!     /// Adds `n` and returns the new value.
//!     fn counter_add(this, n: i64) -> i64 { this.1.touch(); *this.0.borrow_mut() += n; *this.0.borrow() }
//!     /// Destroys the counter (owner thread only).
//!     destroy fn counter_free;
//!     /// Asks the owner to destroy the counter (any thread).
//!     destroy_later fn counter_free_later;
//! }
//!
//! let mut spec = Spec::new();
//! let counter = spec.witnessed_kind("Counter");
//! spec.create(counter, "counter_new", |arg| {
//!     let mut handle = Handle::NULL;
//!     // SAFETY: `handle` is a valid out pointer.
//!     let status = unsafe { counter_new(arg as i64, &mut handle) };
//!     (status, handle)
//! });
//! // SAFETY: the out pointer is valid.
//! spec.call(counter, "counter_add", |h, arg| unsafe { counter_add(h, arg as i64, &mut 0) });
//! spec.destroy(counter, "counter_free", |h| counter_free(h));
//! spec.destroy_later(counter, "counter_free_later", |h| counter_free_later(h));
//! // Optional: how to borrow a counter, for calls made inside a borrow of it.
//! spec.borrow(counter, |h, inside| status(&threadguard::with::<Counter, _>(h, |_| inside())));
//!
//! let kit = Kit::new(spec);
//! kit.run_random(0..20); // seeded random programs; `kit.run(bytes)` in a fuzz target
//! ```
//!
//! threadguard's counters are process-wide, so the kit runs one program at a time and expects
//! no other thread of the process to use threadguard meanwhile: put kit tests in their own
//! test file (one test binary), apart from other threadguard tests.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod affinity;
mod baton;
mod crew;
mod engine;
mod program;
mod spec;
mod witness;

pub use crew::Crew;
pub use engine::{Failure, SLOTS, Summary};
pub use program::{MAX_STEPS, random_program};
pub use spec::{HANDLE_STATUSES, Kind, OpBuilder, Spec};
pub use witness::Witness;

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use threadguard::ffi::{TG_OK, tg_status};

/// The `tg_status` of a Rust API call (`TG_OK` or the error's code).
pub fn status<T>(result: &Result<T, threadguard::Error>) -> tg_status {
    match result {
        Ok(_) => TG_OK,
        Err(error) => error.status().code(),
    }
}

/// A spec, ready to run programs, with its worker threads.
///
/// The [`SLOTS`] worker threads are started by the first program and kept for the next ones:
/// each program ends with a `thread_cleanup` on every worker, which must destroy everything
/// the program made (its thread exits start new workers). Dropping the kit ends them.
///
/// On Linux the thread that runs programs is pinned to one CPU (from its first program on)
/// and the workers follow it: only one of them runs at a time. Every few hundred programs the
/// scheduler chooses that CPU again, so a CPU that other work keeps busy is left.
pub struct Kit {
    spec: Arc<Spec>,
    pool: Mutex<Option<engine::Pool>>,
}

impl Kit {
    /// A kit for the operations in `spec`.
    pub fn new(spec: Spec) -> Kit {
        Kit { spec: Arc::new(spec), pool: Mutex::new(None) }
    }

    /// Runs `program` (any bytes) and returns what it did, or the first difference from what
    /// threadguard promises.
    pub fn check(&self, program: &[u8]) -> Result<Summary, Failure> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        engine::check(&self.spec, &mut pool, program)
    }

    /// Runs `program` and panics with the report if it fails (for fuzz targets and tests).
    pub fn run(&self, program: &[u8]) -> Summary {
        self.check(program).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Runs the seeded random programs `seeds` (see [`random_program`]); panics at the first
    /// failure, naming its seed. Returns the programs' summaries added up.
    pub fn run_random(&self, seeds: Range<u64>) -> Summary {
        let mut total = Summary::default();
        for seed in seeds {
            match self.check(&random_program(seed)) {
                Ok(summary) => add(&mut total, &summary),
                Err(failure) => panic!("random program with seed {seed} failed:\n{failure}"),
            }
        }
        total
    }

    /// Runs every file in the directories `dirs` (a fuzzer's corpus, committed regressions) as
    /// a program; panics at the first failure, naming its file. Missing directories are skipped.
    pub fn run_dirs(&self, dirs: &[&Path]) -> Summary {
        let mut files = Vec::new();
        for dir in dirs {
            if let Ok(entries) = std::fs::read_dir(dir) {
                files.extend(entries.filter_map(|entry| entry.ok()).map(|entry| entry.path()));
            }
        }
        files.sort();
        let mut total = Summary::default();
        for file in files {
            let program = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            match self.check(&program) {
                Ok(summary) => add(&mut total, &summary),
                Err(failure) => panic!("program {} failed:\n{failure}", file.display()),
            }
        }
        total
    }

    /// Runs seeded random programs `seeds` until one fails; returns its seed and failure.
    pub fn find(&self, seeds: Range<u64>) -> Option<(u64, Failure)> {
        seeds.into_iter().find_map(|seed| self.check(&random_program(seed)).err().map(|failure| (seed, failure)))
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        let pool = self.pool.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(pool) = pool {
            pool.stop();
        }
    }
}

fn add(total: &mut Summary, summary: &Summary) {
    total.steps += summary.steps;
    total.objects += summary.objects;
    total.reentrant += summary.reentrant;
    for (&code, &count) in &summary.statuses {
        *total.statuses.entry(code).or_default() += count;
    }
}
