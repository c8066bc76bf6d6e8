//! Diagnostics: process-wide counters, the violation policy, and library versions.
//!
//! Counters are kept per thread (`thread_local::ThreadLocal`, one cache-line-aligned cell per
//! thread) and summed on demand, so threads never write a shared cache line when they create or
//! destroy objects. A thread caches a reference to its cell when it first enters; the cell
//! outlives the thread, so nothing is lost when it exits, and counts stay exact once the
//! threads involved are quiescent. The owner-thread hot path (a successful borrow) counts
//! nothing.

use crate::error::Status;
use crate::identity;
use crate::inbox;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use thread_local::ThreadLocal;

/// Process-wide counters (`tg_stats` in C). All fields are totals since the process started,
/// except `live`, `deferred_pending` and `threads_live`, which are current values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Objects registered and not yet destroyed.
    pub live: u64,
    /// Objects ever registered.
    pub created: u64,
    /// Objects whose destructor has run.
    pub destroyed: u64,
    /// Destroy requests queued by `destroy_later` and not yet run by their owners.
    pub deferred_pending: u64,
    /// Refused calls of every kind (the sum of the `violations_*` fields).
    pub violations: u64,
    /// Calls refused with `TG_ERR_NULL_HANDLE`.
    pub violations_null_handle: u64,
    /// Calls refused with `TG_ERR_WRONG_THREAD`.
    pub violations_wrong_thread: u64,
    /// Calls refused with `TG_ERR_OWNER_EXITED`.
    pub violations_owner_exited: u64,
    /// Calls refused with `TG_ERR_STALE` (including stale deferred requests).
    pub violations_stale: u64,
    /// Calls refused with `TG_ERR_WRONG_TYPE`.
    pub violations_wrong_type: u64,
    /// Calls refused with `TG_ERR_BUSY`.
    pub violations_busy: u64,
    /// Calls refused with `TG_ERR_NULL_POINTER`.
    pub violations_null_pointer: u64,
    /// Calls refused with `TG_ERR_INVALID_ARGUMENT`.
    pub violations_invalid_argument: u64,
    /// Panics caught (in destructors, callbacks written in Rust, or the library itself).
    pub panics: u64,
    /// Threads currently known to the library.
    pub threads_live: u64,
    /// Threads that have ever entered the library.
    pub threads_started: u64,
}

static_assertions::assert_eq_size!(Stats, [u64; 16]);

/// One thread's counters. Several threads may write one cell over time (the cell of an exited
/// thread is handed to a later one), so updates are atomic adds: never on the borrow path.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    created: AtomicU64,
    destroyed: AtomicU64,
    panics: AtomicU64,
    violations: [AtomicU64; 8],
}

static COUNTERS: ThreadLocal<Counters> = ThreadLocal::new();

/// The calling thread's counter cell. Call once per thread and cache it: `ThreadLocal` must
/// not be entered again while thread-local destructors run.
pub(crate) fn thread_counters() -> &'static Counters {
    COUNTERS.get_or_default()
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn created(&self) {
        bump(&self.created);
    }
    pub(crate) fn destroyed(&self) {
        bump(&self.destroyed);
    }
    pub(crate) fn panicked(&self) {
        bump(&self.panics);
    }
    /// Counts a refused call; conditions that are not violations are not counted here.
    pub(crate) fn violation(&self, status: Status) {
        if let Some(slot) = violation_slot(status) {
            bump(&self.violations[slot]);
        }
    }
}

fn violation_slot(status: Status) -> Option<usize> {
    Some(match status {
        Status::NullHandle => 0,
        Status::WrongThread => 1,
        Status::OwnerExited => 2,
        Status::Stale => 3,
        Status::WrongType => 4,
        Status::Busy => 5,
        Status::NullPointer => 6,
        Status::InvalidArgument => 7,
        _ => return None,
    })
}

/// A snapshot of the process-wide counters.
pub fn stats() -> Stats {
    let mut stats = Stats::default();
    let mut by_kind = [0u64; 8];
    for cell in COUNTERS.iter() {
        stats.created += cell.created.load(Ordering::Relaxed);
        stats.destroyed += cell.destroyed.load(Ordering::Relaxed);
        stats.panics += cell.panics.load(Ordering::Relaxed);
        for (total, count) in by_kind.iter_mut().zip(&cell.violations) {
            *total += count.load(Ordering::Relaxed);
        }
    }
    // Cells are read one after another while other threads run: clamp rather than underflow.
    stats.live = stats.created.saturating_sub(stats.destroyed);
    stats.deferred_pending = inbox::deferred_pending();
    [
        stats.violations_null_handle,
        stats.violations_wrong_thread,
        stats.violations_owner_exited,
        stats.violations_stale,
        stats.violations_wrong_type,
        stats.violations_busy,
        stats.violations_null_pointer,
        stats.violations_invalid_argument,
    ] = by_kind;
    stats.violations = by_kind.iter().sum();
    (stats.threads_live, stats.threads_started) = identity::thread_counts();
    stats
}

/// What happens when a call is refused as a violation.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ViolationPolicy {
    /// Return the status code (and set the last-error message). The default.
    #[default]
    Return = 0,
    /// Also print the message to standard error.
    Log = 1,
    /// Print the message and abort the process: for debugging misuse at its source.
    Abort = 2,
}

impl ViolationPolicy {
    /// The policy with C value `value` (`TG_POLICY_*`).
    pub fn from_code(value: i32) -> Option<ViolationPolicy> {
        [ViolationPolicy::Return, ViolationPolicy::Log, ViolationPolicy::Abort]
            .into_iter()
            .find(|policy| *policy as i32 == value)
    }
}

static POLICY: AtomicI32 = AtomicI32::new(ViolationPolicy::Return as i32);

/// Sets the process-wide violation policy.
pub fn set_violation_policy(policy: ViolationPolicy) {
    POLICY.store(policy as i32, Ordering::Relaxed);
}

/// The current violation policy.
pub fn violation_policy() -> ViolationPolicy {
    ViolationPolicy::from_code(POLICY.load(Ordering::Relaxed)).unwrap_or_default()
}

/// Applies the policy to a violation message (error path only).
pub(crate) fn apply_policy(status: Status, message: &str) {
    match violation_policy() {
        ViolationPolicy::Return => {}
        ViolationPolicy::Log => eprintln!("threadguard: {}: {message}", status.name()),
        ViolationPolicy::Abort => {
            eprintln!("threadguard: {}: {message} (aborting: violation policy is abort)", status.name());
            std::process::abort();
        }
    }
}

/// The library version, e.g. `"0.1.0"`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The C ABI version: bumped on any incompatible change to `threadguard.h`.
pub const ABI_VERSION: u32 = 1;
