//! A thread whose first threadguard call comes late in its exit, from a thread-local
//! destructor that runs after other libraries' thread-locals are gone: the call works, the
//! thread is cleaned up at its exit all the same, and it never stays registered as live.

mod common;

use common::{DropLog, Tracked};
use std::cell::RefCell;
use std::sync::mpsc;
use std::thread;
use threadguard::{Handle, Status};

/// What the late calls returned: two registrations.
type Report = (Result<Handle, Status>, Result<Handle, Status>);

/// Its destructor makes the thread's first threadguard calls and reports the handles.
struct LateCaller {
    log: RefCell<Option<(DropLog, mpsc::Sender<Report>)>>,
}

impl Drop for LateCaller {
    fn drop(&mut self) {
        let Some((log, report)) = self.log.borrow_mut().take() else { return };
        let first = threadguard::register(log.value(1)).map_err(|error| error.status());
        let second = threadguard::register(log.value(2)).map_err(|error| error.status());
        if let Ok(handle) = first {
            // Borrowing and queueing work as on any live thread.
            assert_eq!(threadguard::with(handle, |t: &mut Tracked| t.id), Ok(1));
            threadguard::destroy_later(handle).unwrap();
        }
        report.send((first, second)).unwrap();
    }
}

thread_local! {
    static LATE: LateCaller = const { LateCaller { log: RefCell::new(None) } };
}

#[test]
fn first_call_from_a_late_thread_local_destructor_is_cleaned_up_at_exit() {
    let log = DropLog::default();
    threadguard::current_thread_id().unwrap(); // this thread is known before the count starts
    let before = threadguard::stats();
    let (report, reports) = mpsc::channel();
    let thread_log = log.clone();
    thread::spawn(move || {
        // LATE first, then another library's thread-local state (`thread_local`'s thread ID,
        // whose destructor frees it): at exit that one goes first, then LATE's destructor
        // calls in for the first time.
        LATE.with(|late| *late.log.borrow_mut() = Some((thread_log, report)));
        let other = thread_local::ThreadLocal::<u8>::new();
        other.get_or_default();
        std::mem::forget(other);
    })
    .join()
    .expect("the thread exits normally (no abort, no panic)");
    let (first, second) = reports.recv().expect("the late destructor ran");
    let (first, second) = (first.expect("late first call accepted"), second.expect("second call accepted"));
    assert_eq!(log.count(1), 1, "the queued request or the exit destroyed it, once");
    assert_eq!(log.count(2), 1, "the thread's exit destroyed what it registered late");
    for handle in [first, second] {
        assert_eq!(threadguard::owner_of(handle).unwrap_err().status(), Status::OwnerExited, "no phantom live thread");
        assert_eq!(threadguard::destroy_later(handle).unwrap_err().status(), Status::OwnerExited);
    }
    let drops = log.drops();
    assert!(drops.iter().all(|&(_, thread)| thread == first.owner), "destroyed on their owner: {drops:?}");
    let after = threadguard::stats();
    assert_eq!(after.threads_started - before.threads_started, 1);
}
