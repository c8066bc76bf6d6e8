//! The README's `Counter`, exported to C with `export_thread_affine!`, and its spec for the kit;
//! a copy with a planted bug: a "fast" getter that reads the value through a side table,
//! without threadguard's checks; and the counter with a planted re-entrancy bug (an add that
//! goes around the guard when the counter is busy, or a free that turns busy into success).
//!
//! Shared by the test `tests/counter_programs.rs` and the fuzz target `fuzz/fuzz_targets/kit_counter.rs`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::{cell::RefCell, rc::Rc, rc::Weak};
use threadguard::Handle;
use threadguard::ffi::{TG_ERR_BUSY, TG_ERR_STALE, TG_OK, tg_status};
use threadguard_fuzzkit::{Kind, Spec, Witness, status};

/// The README's counter, plus the kit's witness.
pub struct Counter(Rc<RefCell<i64>>, Witness);

threadguard::export_thread_affine! {
    type Counter;
    /// Creates a counter.
    new fn counter_new(start: i64) { Counter(Rc::new(RefCell::new(start)), Witness::new()) }
    /// Adds `n` and returns the new value.
    fn counter_add(this, n: i64) -> i64 { this.1.touch(); *this.0.borrow_mut() += n; *this.0.borrow() }
    /// Destroys the counter (owner thread only).
    destroy fn counter_free;
    /// Asks the owner to destroy the counter (any thread).
    destroy_later fn counter_free_later;
}

/// The counter's operations, for the kit, with its borrow (for re-entrant steps).
pub fn spec() -> Spec {
    let (mut spec, counter) = spec_without_borrow();
    spec.borrow(counter, |h, inside| status(&threadguard::with::<Counter, _>(h, |_| inside())));
    spec
}

/// The counter's operations without a borrow: programs have no re-entrant steps.
pub fn spec_without_borrow() -> (Spec, Kind) {
    let mut spec = Spec::new();
    let counter = spec.witnessed_kind("Counter");
    spec.create(counter, "counter_new", |arg| {
        let mut handle = Handle::NULL;
        // SAFETY: `handle` is a valid out pointer.
        let status = unsafe { counter_new(arg as i64, &mut handle) };
        (status, handle)
    });
    // SAFETY: the out pointer is valid.
    spec.call(counter, "counter_add", |handle, arg| unsafe { counter_add(handle, arg as i64, &mut 0) });
    spec.destroy(counter, "counter_free", |h| counter_free(h));
    spec.destroy_later(counter, "counter_free_later", |h| counter_free_later(h));
    (spec, counter)
}

/// A planted re-entrancy bug in an operation added to the counter's spec.
#[derive(Clone, Copy, Debug)]
pub enum BusyBug {
    /// `counter_add_anyway`: when `counter_add` says busy ("my caller holds it"), it adds
    /// through a side table of the owner's counters, around the guard, and returns `TG_OK`.
    AddAroundTheGuard,
    /// `counter_free_or_later`: when `counter_free` says busy, it asks for a deferred destroy
    /// and returns `TG_OK`, as if the counter were gone.
    FreeLaterWhenBusy,
    /// `counter_add_or_fork`: when `counter_add` says busy, it starts a new counter "to add to
    /// instead" and still returns `TG_ERR_BUSY`: a refusal with an effect.
    ForkWhenBusy,
}

thread_local! {
    /// The bug's side table: each of this thread's counters' value, by handle.
    static VALUES: RefCell<HashMap<Handle, Weak<RefCell<i64>>>> = RefCell::new(HashMap::new());
}

/// The counter's spec (with its borrow) plus the operation with the planted bug.
pub fn busy_bug_spec(bug: BusyBug) -> Spec {
    let mut spec = Spec::new();
    let counter = spec.witnessed_kind("Counter");
    spec.create(counter, "counter_new", |arg| {
        let mut handle = Handle::NULL;
        // SAFETY: `handle` is a valid out pointer.
        let status = unsafe { counter_new(arg as i64, &mut handle) };
        if status == TG_OK {
            let value = threadguard::with(handle, |c: &mut Counter| Rc::downgrade(&c.0)).expect("just created");
            VALUES.with_borrow_mut(|values| {
                values.retain(|_, value| value.strong_count() > 0);
                values.insert(handle, value);
            });
        }
        (status, handle)
    });
    // SAFETY: the out pointer is valid.
    spec.call(counter, "counter_add", |handle, arg| unsafe { counter_add(handle, arg as i64, &mut 0) });
    spec.destroy(counter, "counter_free", |h| counter_free(h));
    spec.destroy_later(counter, "counter_free_later", |h| counter_free_later(h));
    spec.borrow(counter, |h, inside| status(&threadguard::with::<Counter, _>(h, |_| inside())));
    match bug {
        BusyBug::AddAroundTheGuard => {
            spec.call(counter, "counter_add_anyway", |handle, arg| {
                // SAFETY: the out pointer is valid.
                let status = unsafe { counter_add(handle, arg as i64, &mut 0) };
                let value = VALUES.with_borrow(|values| values.get(&handle).and_then(Weak::upgrade));
                match value {
                    Some(value) if status == TG_ERR_BUSY => {
                        *value.borrow_mut() += arg as i64;
                        TG_OK
                    }
                    _ => status,
                }
            });
        }
        BusyBug::FreeLaterWhenBusy => {
            spec.destroy(counter, "counter_free_or_later", |h| match counter_free(h) {
                TG_ERR_BUSY => counter_free_later(h),
                status => status,
            });
        }
        BusyBug::ForkWhenBusy => {
            spec.call(counter, "counter_add_or_fork", |handle, arg| {
                // SAFETY: the out pointer is valid.
                let status = unsafe { counter_add(handle, arg as i64, &mut 0) };
                if status == TG_ERR_BUSY {
                    let mut fork = Handle::NULL; // left to the thread's cleanup
                    // SAFETY: `fork` is a valid out pointer.
                    unsafe { counter_new(arg as i64, &mut fork) };
                }
                status
            });
        }
    }
    spec
}

/// The planted bug: a counter whose value is also reachable through a process-wide side table,
/// and a getter that reads it from there (any thread, no check) "to avoid the handle lookup".
pub struct LeakyCounter(Arc<Shared>);

pub struct Shared {
    value: AtomicI64,
    witness: Witness,
}

static SIDE_TABLE: Mutex<Option<HashMap<Handle, Arc<Shared>>>> = Mutex::new(None);

fn side_table() -> std::sync::MutexGuard<'static, Option<HashMap<Handle, Arc<Shared>>>> {
    SIDE_TABLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

threadguard::export_thread_affine! {
    type LeakyCounter;
    /// Creates a leaky counter.
    new fn leaky_counter_new(start: i64) {
        LeakyCounter(Arc::new(Shared { value: AtomicI64::new(start), witness: Witness::new() }))
    }
    /// Adds `n` and returns the new value (checked).
    fn leaky_counter_add(this, n: i64) -> i64 {
        this.0.witness.touch();
        this.0.value.fetch_add(n, Ordering::Relaxed) + n
    }
    /// Destroys the counter.
    destroy fn leaky_counter_free;
    /// Asks the owner to destroy the counter.
    destroy_later fn leaky_counter_free_later;
}

impl Drop for LeakyCounter {
    fn drop(&mut self) {
        if let Some(table) = side_table().as_mut() {
            table.retain(|_, shared| !Arc::ptr_eq(shared, &self.0));
        }
    }
}

/// The bug: reads the value without threadguard's checks (owner, liveness).
pub fn leaky_counter_get(handle: Handle, out: &mut i64) -> tg_status {
    match side_table().as_ref().and_then(|table| table.get(&handle)) {
        Some(shared) => {
            shared.witness.touch();
            *out = shared.value.load(Ordering::Relaxed);
            TG_OK
        }
        None => TG_ERR_STALE,
    }
}

/// The leaky counter's operations, for the kit.
pub fn leaky_spec() -> Spec {
    let mut spec = Spec::new();
    let counter = spec.witnessed_kind("LeakyCounter");
    spec.create(counter, "leaky_counter_new", |arg| {
        let mut handle = Handle::NULL;
        // SAFETY: `handle` is a valid out pointer.
        let status = unsafe { leaky_counter_new(arg as i64, &mut handle) };
        if status == TG_OK {
            let shared = threadguard::with(handle, |c: &mut LeakyCounter| Arc::clone(&c.0)).expect("just created");
            side_table().get_or_insert_with(HashMap::new).insert(handle, shared);
        }
        (status, handle)
    });
    // SAFETY: the out pointer is valid.
    spec.call(counter, "leaky_counter_add", |handle, arg| unsafe { leaky_counter_add(handle, arg as i64, &mut 0) });
    spec.call(counter, "leaky_counter_get", |handle, _| leaky_counter_get(handle, &mut 0));
    spec.destroy(counter, "leaky_counter_free", |h| leaky_counter_free(h));
    spec.destroy_later(counter, "leaky_counter_free_later", |h| leaky_counter_free_later(h));
    spec
}
