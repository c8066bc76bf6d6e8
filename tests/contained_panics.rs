//! Panics the library contains, and values it drops instead of running: each is reported or
//! counted once, never lost and never run twice.
//!
//! - A destructor that panics reports `Panic` with its message (formatted or static), or says
//!   that the payload was not a string.
//! - Work that a stop fails is dropped unrun on the runner; a panic in its destructor is
//!   contained and counted, and the runner still finishes its stop.
//! - Entries left in a dropped completion queue are dropped exactly once.

mod common;

use common::DropLog;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use threadguard::runner::{CompletionQueue, Runner};
use threadguard::{Status, destroy, register, stats};

const LONG: Option<Duration> = Some(Duration::from_secs(30));

/// Panics with a payload that is neither `&str` nor `String` when dropped.
struct PanicsWithANumber;

impl Drop for PanicsWithANumber {
    fn drop(&mut self) {
        std::panic::panic_any(42u32);
    }
}

/// Panics with a formatted (`String`) message when dropped.
struct PanicsWithAFormattedMessage(u32);

impl Drop for PanicsWithAFormattedMessage {
    fn drop(&mut self) {
        panic!("value {} refuses to go", self.0);
    }
}

#[test]
fn a_destructor_panicking_with_a_formatted_message_reports_the_message() {
    std::thread::spawn(|| {
        let handle = register(PanicsWithAFormattedMessage(9)).unwrap();
        let error = destroy(handle).unwrap_err();
        assert_eq!(error.status(), Status::Panic);
        assert!(error.message().ends_with("panicked: value 9 refuses to go"), "{error}");
        assert_eq!(destroy(handle).unwrap_err().status(), Status::Stale, "destroyed all the same, once");
    })
    .join()
    .unwrap();
}

#[test]
fn a_destructor_panicking_with_a_non_string_payload_is_reported_once() {
    std::thread::spawn(|| {
        let handle = register(PanicsWithANumber).unwrap();
        let panics = stats().panics;
        let error = destroy(handle).unwrap_err();
        assert_eq!(error.status(), Status::Panic);
        assert!(error.message().ends_with("panicked: non-string panic payload"), "{error}");
        assert!(stats().panics > panics, "counted");
        assert_eq!(destroy(handle).unwrap_err().status(), Status::Stale, "destroyed all the same, once");
    })
    .join()
    .unwrap();
}

/// Blocks the runner inside a job until `release`.
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn close(runner: &Runner) -> Gate {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (entered, inside) = mpsc::channel();
        let job_gate = Arc::clone(&gate);
        runner
            .post(
                move || {
                    entered.send(()).unwrap();
                    let (lock, cvar) = &*job_gate;
                    let _open = cvar.wait_while(lock.lock().unwrap(), |open| !*open).unwrap();
                },
                |_| (),
            )
            .unwrap();
        inside.recv().unwrap();
        Gate(gate)
    }

    fn release(self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }
}

/// Panics when dropped; its field then logs the drop.
struct PanicsAfterLogging {
    _logged: common::Tracked,
}

impl Drop for PanicsAfterLogging {
    fn drop(&mut self) {
        panic!("unrun work's capture panics when dropped");
    }
}

#[test]
fn unrun_work_whose_destructor_panics_is_dropped_once_and_the_stop_completes() {
    let log = DropLog::default();
    let runner = Arc::new(Runner::start("contained", 8).unwrap());
    let gate = Gate::close(&runner);
    let capture = PanicsAfterLogging { _logged: log.value(1) };
    let (done_tx, done_rx) = mpsc::channel();
    runner
        .post(
            move || {
                let _keep = &capture;
                unreachable!("failed by the stop, never run")
            },
            move |result: Result<(), threadguard::Error>| done_tx.send(result.unwrap_err().status()).unwrap(),
        )
        .unwrap();
    let panics = stats().panics;
    let stopping = Arc::clone(&runner);
    let stopper = std::thread::spawn(move || stopping.stop());
    // The stop closes the queue first; posts are refused with ShutDown from then on.
    loop {
        match runner.post(|| (), |_| ()) {
            Err(error) if error.status() == Status::ShutDown => break,
            _ => std::thread::yield_now(),
        }
    }
    gate.release();
    stopper.join().unwrap().unwrap();
    assert_eq!(done_rx.recv().unwrap(), Status::ShutDown, "its completion was delivered, once");
    assert!(done_rx.try_recv().is_err());
    assert_eq!(log.count(1), 1, "the unrun work's capture was dropped once");
    assert!(stats().panics > panics, "its panic was counted");
}

#[test]
fn entries_left_in_a_dropped_completion_queue_are_dropped_once() {
    let log = DropLog::default();
    let runner = Runner::start("dropped-queue", 4).unwrap();
    let queue = CompletionQueue::new(4).unwrap();
    for id in 0..3 {
        let value = log.value(id);
        runner.post_to_queue(move || value, &queue, u64::from(id)).unwrap();
    }
    runner.call(|| (), LONG).unwrap(); // in order: all three entries are queued now
    assert_eq!(queue.counts(), (3, 0));
    let first = queue.wait(LONG).unwrap();
    assert_eq!(first.tag, 0);
    drop(first);
    assert_eq!(log.count(0), 1);
    drop(queue);
    assert_eq!((log.count(1), log.count(2)), (1, 1), "each queued entry dropped once with its queue");
    runner.stop().unwrap();
}
