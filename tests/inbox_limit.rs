//! A live owner's inbox is bounded: other threads can queue at most `PENDING_LIMIT` destroy
//! requests on it; beyond that they are refused with `TG_ERR_LIMIT` (the object stays owned),
//! and once the owner has run its requests there is room again. Nothing queued is lost.
//!
//! One test in this binary, so the process-wide `deferred_pending` counter is its own.

mod common;

use common::DropLog;
use std::sync::mpsc;
use std::thread;
use threadguard::{PENDING_LIMIT, Status};

#[test]
fn destroy_requests_beyond_the_limit_are_refused_and_nothing_queued_is_lost() {
    let log = DropLog::default();
    let thread_log = log.clone();
    let (to_owner, owner_rx) = mpsc::channel::<()>();
    let (from_owner, handles) = mpsc::channel();
    let owner = thread::spawn(move || {
        let target = threadguard::register(thread_log.value(1)).unwrap();
        let spare = threadguard::register(thread_log.value(2)).unwrap();
        from_owner.send((target, spare)).unwrap();
        owner_rx.recv().unwrap();
        // Runs every queued request: the first destroys value 1, the rest are stale.
        let stale = threadguard::stats().violations_stale;
        threadguard::run_pending().unwrap();
        assert_eq!(threadguard::stats().violations_stale - stale, PENDING_LIMIT as u64 - 1);
        from_owner.send((target, spare)).unwrap();
        owner_rx.recv().unwrap();
    });
    let (target, spare) = handles.recv().unwrap();

    let pending = threadguard::stats().deferred_pending;
    for _ in 0..PENDING_LIMIT {
        threadguard::destroy_later(target).unwrap();
    }
    let mut refused = 0;
    for _ in 0..3 {
        let error = threadguard::destroy_later(spare).unwrap_err();
        assert_eq!(error.status(), Status::Limit);
        assert!(error.message().contains("limit"), "{}", error.message());
        refused += 1;
    }
    assert_eq!(refused, 3);
    assert_eq!(
        threadguard::stats().deferred_pending - pending,
        PENDING_LIMIT as u64,
        "refused requests are not queued"
    );
    assert_eq!((log.count(1), log.count(2)), (0, 0), "nothing runs off the owner");

    to_owner.send(()).unwrap();
    handles.recv().unwrap();
    assert_eq!((log.count(1), log.count(2)), (1, 0));
    assert_eq!(threadguard::stats().deferred_pending, pending, "every taken request was settled");
    threadguard::destroy_later(spare).expect("room again after the owner ran its requests");
    to_owner.send(()).unwrap();
    owner.join().unwrap();
    assert_eq!((log.count(1), log.count(2)), (1, 1), "each destroyed exactly once");
    assert_eq!(threadguard::stats().deferred_pending, pending);
}
