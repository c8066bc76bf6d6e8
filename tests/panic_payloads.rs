//! Panic payloads whose own `Drop` panics, again and again: the library drops a caught
//! payload inside a catch of its own and forgets whatever that drop throws, so nothing escapes
//! a destroy, a C entry point or a thread's exit sweep.

mod common;

use common::DropLog;
use std::sync::atomic::{AtomicUsize, Ordering};
use threadguard::Status;

/// A panic payload whose drop panics with another `Bomb`, `fuse` times.
struct Bomb {
    fuse: u32,
}

static BOMB_DROPS: AtomicUsize = AtomicUsize::new(0);

impl Drop for Bomb {
    fn drop(&mut self) {
        BOMB_DROPS.fetch_add(1, Ordering::SeqCst);
        if self.fuse > 0 {
            std::panic::panic_any(Bomb { fuse: self.fuse - 1 });
        }
    }
}

/// A value whose `Drop` panics with a `Bomb`, and counts its runs.
struct Detonator {
    drops: &'static AtomicUsize,
}

impl Drop for Detonator {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        std::panic::panic_any(Bomb { fuse: 3 });
    }
}

threadguard::export_thread_affine! {
    type Detonator;
    /// Makes a detonator that counts in the static it is given.
    new fn detonator_new(which: u32) { Detonator { drops: if which == 0 { &C_DROPS } else { &EXIT_DROPS } } }
    /// Destroys it now.
    destroy fn detonator_free;
}

static RUST_DROPS: AtomicUsize = AtomicUsize::new(0);
static C_DROPS: AtomicUsize = AtomicUsize::new(0);
static EXIT_DROPS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_payload_that_panics_when_dropped_does_not_escape_destroy() {
    let handle = threadguard::register(Detonator { drops: &RUST_DROPS }).unwrap();
    let result = threadguard::destroy(handle);
    assert_eq!(result.unwrap_err().status(), Status::Panic);
    assert_eq!(RUST_DROPS.load(Ordering::SeqCst), 1, "the destructor ran once");
    assert_eq!(threadguard::destroy(handle).unwrap_err().status(), Status::Stale, "and is never run again");
}

#[test]
fn a_payload_that_panics_when_dropped_does_not_escape_a_c_entry_point() {
    let mut handle = threadguard::Handle::NULL;
    // SAFETY: `handle` is valid for writing.
    assert_eq!(unsafe { detonator_new(0, &mut handle) }, threadguard::ffi::TG_OK);
    assert_eq!(detonator_free(handle), threadguard::ffi::TG_ERR_PANIC);
    assert_eq!(C_DROPS.load(Ordering::SeqCst), 1);
    assert!(threadguard::last_error().contains("panicked"), "{}", threadguard::last_error());
    assert_eq!(detonator_free(handle), threadguard::ffi::TG_ERR_STALE);
}

#[test]
fn a_payload_that_panics_when_dropped_does_not_stop_an_exit_sweep() {
    let log = DropLog::default();
    let thread_log = log.clone();
    let handles = std::thread::spawn(move || {
        let mut handle = threadguard::Handle::NULL;
        let mut handles = vec![threadguard::register(thread_log.value(1)).unwrap()];
        // SAFETY: `handle` is valid for writing.
        assert_eq!(unsafe { detonator_new(1, &mut handle) }, threadguard::ffi::TG_OK);
        handles.push(handle);
        handles.extend((2..5).map(|id| threadguard::register(thread_log.value(id)).unwrap()));
        handles
    })
    .join()
    .expect("the thread exits normally");
    assert_eq!(EXIT_DROPS.load(Ordering::SeqCst), 1);
    for id in 1..5 {
        assert_eq!(log.count(id), 1, "value {id} destroyed once at exit");
    }
    for handle in handles {
        assert_eq!(threadguard::owner_of(handle).unwrap_err().status(), Status::OwnerExited);
    }
    assert!(BOMB_DROPS.load(Ordering::SeqCst) >= 2, "the payloads were dropped, as far as they let themselves");
}
