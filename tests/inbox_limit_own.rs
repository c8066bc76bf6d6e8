//! The owner's own destroy requests count against the same bound as other threads': a thread
//! that queues `PENDING_LIMIT` requests on itself without running them is refused with
//! `Limit` beyond that (the object stays owned), and the next successful call runs them, destroying the object once.
//!
//! One test in this binary, so the process-wide `deferred_pending` counter is its own.

mod common;

use common::{DropLog, Tracked};
use threadguard::{PENDING_LIMIT, Status};

#[test]
fn an_owner_queueing_beyond_the_limit_on_itself_is_refused_and_nothing_queued_is_lost() {
    let log = DropLog::default();
    let handle = threadguard::register(log.value(1)).unwrap();
    for _ in 0..PENDING_LIMIT {
        threadguard::destroy_later(handle).unwrap();
    }
    assert_eq!(threadguard::stats().deferred_pending, PENDING_LIMIT as u64);
    let error = threadguard::destroy_later(handle).unwrap_err();
    assert_eq!(error.status(), Status::Limit);
    assert!(
        error.message().contains(&format!("already has {PENDING_LIMIT} destroy requests queued")),
        "{}",
        error.message()
    );
    assert_eq!(log.count(1), 0, "refused: the object stays owned");

    // The next successful call runs the queued requests after it: the first destroys the
    // object, the others find it gone.
    let stale = threadguard::stats().violations_stale;
    assert_eq!(threadguard::with(handle, |value: &mut Tracked| value.id), Ok(1));
    assert_eq!(log.count(1), 1, "destroyed once");
    assert_eq!(threadguard::stats().violations_stale - stale, PENDING_LIMIT as u64 - 1);
    assert_eq!(threadguard::stats().deferred_pending, 0);
    assert_eq!(threadguard::with(handle, |_: &mut Tracked| ()).unwrap_err().status(), Status::Stale);
}
