//! Witnesses: what a library's objects tell the kit about themselves.
//!
//! A [`Witness`] is a small field a library puts in its thread-affine type (or that its
//! constructor creates next to the native object). While a program runs, it records into one
//! process-wide ledger when it is created, every [`Witness::touch`] and its drop, each with the
//! kit thread it happened on. The kit then checks, step by step, that every object was created
//! on its owner, touched only by its owner and only by calls that were not refused, and dropped
//! exactly once, on its owner, exactly when threadguard destroyed it. Outside a kit program a
//! witness records nothing.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

thread_local! {
    /// The threadguard ID of this kit worker (0 on every other thread). `const` and without a
    /// destructor, so destructors that run at thread exit can still read it.
    static WORKER: Cell<u64> = const { Cell::new(0) };
}

/// Whether a program is running (witnesses record only then).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static LEDGER: Mutex<Ledger> = Mutex::new(Ledger { next: 1, events: Vec::new() });

/// What a witness reported, with the threadguard ID of the kit worker it happened on (0: a
/// thread that is not a kit worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Created { id: u64, thread: u64 },
    Touched { id: u64, thread: u64 },
    Dropped { id: u64, thread: u64 },
}

pub(crate) struct Ledger {
    next: u64,
    /// Events since the last `take_events`.
    events: Vec<Event>,
}

pub(crate) fn ledger() -> MutexGuard<'static, Ledger> {
    LEDGER.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Marks the calling thread as a kit worker with this threadguard ID.
pub(crate) fn set_worker(id: u64) {
    WORKER.with(|cell| cell.set(id));
}

fn worker() -> u64 {
    WORKER.with(Cell::get)
}

/// Starts recording for a new program.
pub(crate) fn begin_program() {
    ledger().events.clear();
    ACTIVE.store(true, Ordering::SeqCst);
}

/// Stops recording.
pub(crate) fn end_program() {
    ACTIVE.store(false, Ordering::SeqCst);
    ledger().events.clear();
}

/// The events recorded since the last call.
pub(crate) fn take_events() -> Vec<Event> {
    std::mem::take(&mut ledger().events)
}

impl Ledger {
    fn record(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// A probe a library puts in each of its thread-affine objects, so that the kit sees the object
/// itself: where it is created, touched and dropped.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use threadguard_fuzzkit::Witness;
///
/// pub struct Counter {
///     value: Rc<RefCell<i64>>,
///     witness: Witness,
/// }
///
/// impl Counter {
///     fn add(&mut self, n: i64) -> i64 {
///         self.witness.touch(); // "this object is being used on this thread, now"
///         *self.value.borrow_mut() += n;
///         *self.value.borrow()
///     }
/// }
/// # let mut c = Counter { value: Rc::new(RefCell::new(1)), witness: Witness::new() };
/// # assert_eq!(c.add(1), 2);
/// ```
///
/// Outside a kit program (in production, in other tests) a witness is an inert `u64`: creating,
/// touching and dropping it take one relaxed atomic load.
#[derive(Debug)]
pub struct Witness {
    /// 0 when created outside a program.
    id: u64,
}

impl Witness {
    /// A witness for a new object, created on the calling thread (its owner).
    pub fn new() -> Witness {
        if !ACTIVE.load(Ordering::Relaxed) {
            return Witness { id: 0 };
        }
        let mut ledger = ledger();
        let id = ledger.next;
        ledger.next += 1;
        ledger.record(Event::Created { id, thread: worker() });
        Witness { id }
    }

    /// Records that the object is being used (read or written) on the calling thread, now.
    /// Call it in every method that reaches the object's state.
    pub fn touch(&self) {
        if self.id != 0 && ACTIVE.load(Ordering::Relaxed) {
            ledger().record(Event::Touched { id: self.id, thread: worker() });
        }
    }
}

impl Default for Witness {
    fn default() -> Witness {
        Witness::new()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if self.id != 0 && ACTIVE.load(Ordering::Relaxed) {
            ledger().record(Event::Dropped { id: self.id, thread: worker() });
        }
    }
}
