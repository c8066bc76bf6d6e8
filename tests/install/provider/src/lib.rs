//! counters: a thread-affine Rust counter exported to C with `export_thread_affine!`.
//!
//! The library exports `counter_new`, `counter_add` and `counter_free` (see counters.h), and,
//! because it links threadguard, every `tg_*` function too: a program that uses this library
//! and the Go wrapper links the wrapper with `-tags threadguard_external`, so both use this
//! library's threadguard, the only copy in the process.

use std::{cell::RefCell, rc::Rc};

/// A counter on `Rc<RefCell<_>>`: it must never leave its thread.
pub struct Counter(Rc<RefCell<i64>>);

threadguard::export_thread_affine! {
    type Counter;
    /// Creates a counter starting at `start`, owned by the calling thread.
    new fn counter_new(start: i64) { Counter(Rc::new(RefCell::new(start))) }
    /// Adds `n` and returns the new value.
    fn counter_add(this, n: i64) -> i64 { *this.0.borrow_mut() += n; *this.0.borrow() }
    /// Destroys the counter (owner thread only).
    destroy fn counter_free;
}
