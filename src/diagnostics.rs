//! Diagnostics: process-wide counters, the violation policy, and library versions.
//!
//! Counters are kept per thread (one cache-line-aligned cell per thread, from a process-wide
//! pool) and summed on demand, so threads never write a shared cache line when they create or
//! destroy objects. A thread takes a cell when it first enters and gives it back at its exit;
//! cells are never freed (a later thread reuses them), so nothing is lost when a thread exits,
//! the pool stays as large as the most threads ever live at once, and counts stay exact once
//! the threads involved are quiescent. Taking a cell touches no thread-local storage, so it
//! works in a thread's late exit stages too. The owner-thread hot path (a successful borrow)
//! counts nothing.
//!
//! Writing a diagnostic never fails an operation: a log line that cannot be written (a closed
//! pipe, a full disk) is dropped, the call keeps its status, and the abort policy aborts all
//! the same.

use crate::error::Status;
use crate::identity;
use crate::inbox;
use std::io::Write;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Process-wide counters (`tg_stats` in C). All fields are totals since the process started,
/// except `live`, `deferred_pending`, `threads_live` and `detached`, which are current values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Objects registered and not yet destroyed (detached ones included).
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
    /// Objects detached (tg_detach) and neither adopted nor destroyed yet: they belong to no thread.
    pub detached: u64,
}

static_assertions::assert_eq_size!(Stats, [u64; 17]);

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

/// Every counter cell ever made (`all`) and those no live thread holds (`free`).
pub(crate) struct Pool {
    all: Vec<&'static Counters>,
    free: Vec<&'static Counters>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { all: Vec::new(), free: Vec::new() });

fn pool() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A counter cell for a thread that enters the library: one an exited thread gave back, or a
/// new one. The thread keeps it until [`release_counters`].
pub(crate) fn thread_counters() -> &'static Counters {
    let mut pool = pool();
    if let Some(cell) = pool.free.pop() {
        return cell;
    }
    let cell: &'static Counters = Box::leak(Box::default());
    pool.all.push(cell);
    cell
}

/// Hands a thread's cell back for a later thread (its counts stay in the totals).
pub(crate) fn release_counters(cell: &'static Counters) {
    pool().free.push(cell);
}

/// Holds the pool's lock across `fork` (see `identity::fork`), so the child never inherits it
/// locked by a thread that does not exist there.
#[cfg_attr(miri, allow(dead_code))] // the fork handlers are not built under Miri
pub(crate) fn lock_for_fork() -> MutexGuard<'static, Pool> {
    pool()
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
    let cells = pool().all.clone();
    for cell in cells {
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
    stats.detached = crate::transfer::detached_count();
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

/// Whether the policy prints violations (LOG or ABORT): one load and compare, for refusals,
/// which word their message at once only then.
#[inline]
pub(crate) fn policy_prints() -> bool {
    POLICY.load(Ordering::Relaxed) != ViolationPolicy::Return as i32
}

/// Applies the policy to a violation message (error path only). Never fails and never
/// unwinds: a line that cannot be written is dropped, and ABORT aborts whatever the write did.
pub(crate) fn apply_policy(status: Status, message: &str) {
    match violation_policy() {
        ViolationPolicy::Return => {}
        ViolationPolicy::Log => write_diagnostic(&format!("threadguard: {}: {message}\n", status.name())),
        ViolationPolicy::Abort => {
            write_diagnostic(&format!(
                "threadguard: {}: {message} (aborting: violation policy is abort)\n",
                status.name()
            ));
            std::process::abort();
        }
    }
}

/// Writes one line to standard error in one call, ignoring failure (`eprintln!` would panic).
fn write_diagnostic(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The library version, e.g. `"0.1.0"`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The C ABI version: bumped on any incompatible change to `threadguard.h`.
pub const ABI_VERSION: u32 = 2;

#[cfg(test)]
mod tests {
    use super::violation_slot;
    use crate::Status;

    #[test]
    fn every_violation_and_only_a_violation_has_its_own_counter() {
        let mut slots = Vec::new();
        for status in Status::ALL {
            let slot = violation_slot(status);
            assert_eq!(slot.is_some(), status.is_violation(), "{status:?}");
            slots.extend(slot);
        }
        slots.sort_unstable();
        assert_eq!(slots, (0..8).collect::<Vec<_>>(), "one counter each, all 8 in use");
    }
}
