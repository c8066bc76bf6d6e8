//! The README's `Counter`, exported to C with `export_thread_affine!`, and its spec for the kit;
//! and a copy with a planted bug: a "fast" getter that reads the value through a side table,
//! without threadguard's checks.
//!
//! Shared by the test `tests/counter_programs.rs` and the fuzz target `fuzz/fuzz_targets/kit_counter.rs`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::{cell::RefCell, rc::Rc};
use threadguard::Handle;
use threadguard::ffi::{TG_ERR_STALE, TG_OK, tg_status};
use threadguard_fuzzkit::{Spec, Witness};

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

/// The counter's operations, for the kit.
pub fn spec() -> Spec {
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
