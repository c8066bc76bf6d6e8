//! Handles after `fork`, from Rust: the child has one thread, the one that forked. Every other
//! thread of the parent is gone there, so their handles answer `OwnerExited` (never
//! `WrongThread` forever), requests to them are refused, and the requests queued to them before
//! the fork no longer count as pending; the forking thread keeps its objects. The parent is
//! unaffected. (tests/c/test_fork.c checks the same from C, with a child that ends by SIGKILL;
//! this child returns its verdict as its exit status, so it ends normally.)
//!
//! The child starts no thread: a child of a multi-threaded process may only do what is safe
//! after fork, and the library's part of that is what this checks.

mod common;

use common::{DropLog, Tracked};
use std::sync::mpsc;
use std::thread;
use threadguard::{Handle, Status};

fn status<T>(result: Result<T, threadguard::Error>) -> Status {
    result.err().expect("expected an error").status()
}

/// The checks the child runs; `Err` names the first that failed.
fn in_child(theirs: Handle, queued: Handle, mine: Handle, log: &DropLog) -> Result<(), String> {
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
    check(status(threadguard::with(theirs, |_: &mut Tracked| ())) == Status::OwnerExited, "with: owner exited")?;
    check(status(threadguard::destroy(theirs)) == Status::OwnerExited, "destroy: owner exited")?;
    check(status(threadguard::destroy_later(theirs)) == Status::OwnerExited, "destroy_later: owner exited")?;
    check(status(threadguard::owner_of(queued)) == Status::OwnerExited, "owner_of: owner exited")?;
    check(log.count(1) == 0 && log.count(2) == 0, "the other thread's objects are not destroyed in the child")?;
    let stats = threadguard::stats();
    check(stats.threads_live == 1, "one live thread")?;
    check(stats.deferred_pending == 0, "the request queued to the vanished thread is not pending")?;
    check(threadguard::owner_of(mine) == threadguard::current_thread_id(), "the forking thread keeps its object")?;
    check(threadguard::with(mine, |value: &mut Tracked| value.id) == Ok(3), "and borrows it")?;
    check(threadguard::destroy(mine).is_ok() && log.count(3) == 1, "and destroys it once")?;
    Ok(())
}

#[test]
fn in_a_forked_child_the_other_threads_are_gone_and_the_forking_thread_keeps_its_objects() {
    let log = DropLog::default();
    let (handles_tx, handles_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let worker_log = log.clone();
    let worker = thread::spawn(move || {
        let theirs = threadguard::register(worker_log.value(1)).unwrap();
        let queued = threadguard::register(worker_log.value(2)).unwrap();
        handles_tx.send((theirs, queued)).unwrap();
        release_rx.recv().unwrap();
        // Its exit destroys what it still owns.
    });
    let (theirs, queued) = handles_rx.recv().unwrap();
    let mine = threadguard::register(log.value(3)).unwrap();
    assert_eq!(status(threadguard::with(theirs, |_: &mut Tracked| ())), Status::WrongThread);
    // A request queued before the fork: pending in both processes at the fork.
    threadguard::destroy_later(queued).unwrap();
    assert_eq!(threadguard::stats().deferred_pending, 1);

    // SAFETY: the child calls only the library and async-signal-safe functions that the library
    // prepares for (its fork handlers), allocates through malloc (which glibc's fork leaves
    // usable), starts no thread and ends with exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let verdict = std::panic::catch_unwind(|| in_child(theirs, queued, mine, &log));
        let code = match verdict {
            Ok(Ok(())) => 0,
            Ok(Err(what)) => {
                eprintln!("fork child: check failed: {what}");
                1
            }
            Err(_) => 2,
        };
        // SAFETY: ends the child; `exit` (not `_exit`) so the process ends as a program does.
        unsafe { libc::exit(code) };
    }
    let mut wait_status = 0;
    // SAFETY: `pid` is this process's child; `wait_status` is valid for writes.
    assert_eq!(unsafe { libc::waitpid(pid, &mut wait_status, 0) }, pid);
    assert!(libc::WIFEXITED(wait_status), "the child ended by a signal: {wait_status:#x}");
    assert_eq!(libc::WEXITSTATUS(wait_status), 0, "a check failed in the child (its stderr says which)");

    // The parent: nothing changed.
    assert_eq!(status(threadguard::with(theirs, |_: &mut Tracked| ())), Status::WrongThread);
    assert_eq!(threadguard::with(mine, |value: &mut Tracked| value.id), Ok(3));
    assert_eq!(log.count(3), 0, "the child's destroy happened in the child only");
    release_tx.send(()).unwrap();
    worker.join().unwrap();
    assert_eq!((log.count(1), log.count(2)), (1, 1), "the worker's exit destroyed each of its objects once");
    assert_eq!(status(threadguard::owner_of(theirs)), Status::OwnerExited);
    threadguard::destroy(mine).unwrap();
    assert_eq!(log.count(3), 1);
    assert_eq!(threadguard::stats().deferred_pending, 0);
}
