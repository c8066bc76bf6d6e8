//! Process-wide counters move exactly as documented. One test per binary: counters are global.

mod common;

use common::DropLog;
use std::thread;
use threadguard::{Handle, Stats, Status, destroy, destroy_later, register, stats, with};

fn delta(before: Stats, after: Stats) -> Stats {
    Stats {
        live: after.live.wrapping_sub(before.live),
        created: after.created - before.created,
        destroyed: after.destroyed - before.destroyed,
        deferred_pending: after.deferred_pending.wrapping_sub(before.deferred_pending),
        violations: after.violations - before.violations,
        violations_null_handle: after.violations_null_handle - before.violations_null_handle,
        violations_wrong_thread: after.violations_wrong_thread - before.violations_wrong_thread,
        violations_owner_exited: after.violations_owner_exited - before.violations_owner_exited,
        violations_stale: after.violations_stale - before.violations_stale,
        violations_wrong_type: after.violations_wrong_type - before.violations_wrong_type,
        violations_busy: after.violations_busy - before.violations_busy,
        violations_null_pointer: after.violations_null_pointer - before.violations_null_pointer,
        violations_invalid_argument: after.violations_invalid_argument - before.violations_invalid_argument,
        panics: after.panics - before.panics,
        threads_live: after.threads_live.wrapping_sub(before.threads_live),
        threads_started: after.threads_started - before.threads_started,
        detached: after.detached.wrapping_sub(before.detached),
    }
}

#[test]
fn counters_track_objects_violations_and_deferred_requests_exactly() {
    let log = DropLog::default();
    threadguard::current_thread_id().unwrap(); // this thread is known before the first snapshot
    let start = stats();
    let a = register(log.value(1)).unwrap();
    let b = register(log.value(2)).unwrap();
    let after_register = stats();
    assert_eq!(delta(start, after_register), Stats { live: 2, created: 2, ..Stats::default() });

    // Rejected calls change nothing but their violation counter (I6).
    assert_eq!(with(Handle::NULL, |_: &mut u8| ()).unwrap_err().status(), Status::NullHandle);
    assert_eq!(with(a, |_: &mut u8| ()).unwrap_err().status(), Status::WrongType);
    let worker = thread::spawn(move || {
        assert_eq!(destroy(a).unwrap_err().status(), Status::WrongThread);
        destroy_later(b).unwrap();
    });
    worker.join().unwrap();
    let after_misuse = stats();
    assert_eq!(
        delta(after_register, after_misuse),
        Stats {
            violations: 3,
            violations_null_handle: 1,
            violations_wrong_type: 1,
            violations_wrong_thread: 1,
            deferred_pending: 1,
            threads_started: 1,
            ..Stats::default()
        }
    );
    assert_eq!(log.drops().len(), 0);

    threadguard::run_pending().unwrap();
    destroy(a).unwrap();
    assert_eq!(destroy(a).unwrap_err().status(), Status::Stale);
    let end = stats();
    assert_eq!(
        delta(after_misuse, end),
        Stats {
            live: 2u64.wrapping_neg(),
            destroyed: 2,
            deferred_pending: 1u64.wrapping_neg(),
            violations: 1,
            violations_stale: 1,
            ..Stats::default()
        }
    );
    assert_eq!(log.drops().len(), 2);
    assert_eq!(
        end.violations,
        [
            end.violations_null_handle,
            end.violations_wrong_thread,
            end.violations_owner_exited,
            end.violations_stale,
            end.violations_wrong_type,
            end.violations_busy,
            end.violations_null_pointer,
            end.violations_invalid_argument,
        ]
        .iter()
        .sum::<u64>()
    );
}
