//! Scale: ten million objects on one thread, and a million cleaned up at thread exit.
//! Ignored in debug builds; `make test` runs them in release (`cargo test --release -- --ignored`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
#[ignore = "large: run in release (make test does)"]
fn ten_million_objects_on_one_thread() {
    std::thread::spawn(|| {
        let handles: Vec<_> = (0..10_000_000u64).map(|i| threadguard::register(i).unwrap()).collect();
        for (i, &handle) in handles.iter().enumerate().step_by(9973) {
            assert_eq!(threadguard::with(handle, |v: &mut u64| *v).unwrap(), i as u64);
        }
        for &handle in &handles {
            threadguard::destroy(handle).unwrap();
        }
    })
    .join()
    .unwrap();
}

#[test]
#[ignore = "large: run in release (make test does)"]
fn a_million_objects_are_destroyed_at_thread_exit() {
    let drops = Arc::new(AtomicUsize::new(0));
    let thread_drops = Arc::clone(&drops);
    std::thread::spawn(move || {
        for _ in 0..1_000_000 {
            threadguard::register(Counted(Arc::clone(&thread_drops))).unwrap();
        }
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(Ordering::Relaxed), 1_000_000);
}
