//! The violation policy with a standard error that cannot be written (a full device, a pipe
//! whose reader is gone): writing a diagnostic never changes a call's status, never stops an
//! exit sweep, and the abort policy aborts all the same.
//!
//! Each scenario runs in a child process (this test binary again, running one test with
//! `TG_CHILD_SCENARIO` set) whose standard error is `/dev/full` or a closed pipe; the child's
//! assertions decide its exit status, which the parent checks. Rust programs ignore SIGPIPE,
//! so a write to the closed pipe fails with EPIPE instead of killing the child.

mod common;

use common::{DropLog, Tracked};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use threadguard::{Status, ViolationPolicy};

const SCENARIO: &str = "TG_CHILD_SCENARIO";

/// Where the child's standard error goes.
#[derive(Clone, Copy, Debug)]
enum Sink {
    DevFull,
    ClosedPipe,
}

impl Sink {
    fn stdio(self) -> Stdio {
        match self {
            Sink::DevFull => std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full").into(),
            Sink::ClosedPipe => {
                let (reader, writer) = std::io::pipe().expect("pipe");
                drop(reader);
                writer.into()
            }
        }
    }
}

/// Runs test `name` of this binary in a child with `scenario` set and standard error on `sink`.
fn run_child(name: &str, scenario: &str, sink: Sink) -> (ExitStatus, String) {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .stdin(Stdio::null())
        .stderr(sink.stdio())
        .output()
        .expect("child runs");
    (output.status, String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The scenario this process runs as a child, if it is one.
fn scenario() -> Option<String> {
    std::env::var(SCENARIO).ok()
}

fn status<T>(result: Result<T, threadguard::Error>) -> Status {
    result.err().expect("expected an error").status()
}

/// Child: every refused call keeps its own status under LOG; successful calls stay OK even
/// when they run a stale deferred request; an exiting thread with a stale request in its
/// inbox finishes its sweep, leaves the registry and settles its requests.
fn log_scenario() {
    threadguard::set_violation_policy(ViolationPolicy::Log);
    let log = DropLog::default();

    // Refused calls on this thread: each keeps its code.
    let handle = threadguard::register(log.value(1)).unwrap();
    assert_eq!(status(threadguard::with(threadguard::Handle::NULL, |_: &mut Tracked| ())), Status::NullHandle);
    assert_eq!(status(threadguard::with(handle, |_: &mut u32| ())), Status::WrongType);
    let nested = threadguard::with(handle, |_: &mut Tracked| status(threadguard::destroy(handle)));
    assert_eq!(nested, Ok(Status::Busy));
    let from_elsewhere = thread::spawn(move || {
        (status(threadguard::with(handle, |_: &mut Tracked| ())), status(threadguard::destroy(handle)))
    })
    .join()
    .unwrap();
    assert_eq!(from_elsewhere, (Status::WrongThread, Status::WrongThread));

    // A successful destroy that runs a stale request queued by another thread stays OK.
    let gone = threadguard::register(log.value(2)).unwrap();
    threadguard::destroy(gone).unwrap();
    thread::spawn(move || threadguard::destroy_later(gone).unwrap()).join().unwrap();
    let violations = threadguard::stats().violations_stale;
    assert_eq!(threadguard::destroy(handle), Ok(()), "the stale request it ran is not its failure");
    assert_eq!(threadguard::stats().violations_stale, violations + 1, "the stale request was counted");
    assert_eq!(threadguard::stats().deferred_pending, 0);
    assert_eq!((log.count(1), log.count(2)), (1, 1));

    // An exiting thread whose inbox holds a stale request destroys everything and leaves.
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let thread_log = log.clone();
    let owner = thread::spawn(move || {
        let handles: Vec<_> = (10..13).map(|id| threadguard::register(thread_log.value(id)).unwrap()).collect();
        let stale = threadguard::register(thread_log.value(13)).unwrap();
        threadguard::destroy(stale).unwrap();
        tx.send((handles, stale)).unwrap();
        go_rx.recv().unwrap();
    });
    let (handles, stale) = rx.recv().unwrap();
    threadguard::destroy_later(stale).unwrap();
    assert_eq!(threadguard::stats().deferred_pending, 1);
    go_tx.send(()).unwrap();
    owner.join().unwrap();
    for id in 10..14 {
        assert_eq!(log.count(id), 1, "value {id} destroyed exactly once");
    }
    for handle in handles {
        assert_eq!(status(threadguard::owner_of(handle)), Status::OwnerExited, "no phantom live owner");
    }
    let stats = threadguard::stats();
    assert_eq!(stats.deferred_pending, 0, "the stale request was settled");
    assert_eq!(stats.threads_live, 1, "only this thread is left");
    assert_eq!(stats.live, 0);
}

/// Child: a violation under ABORT aborts even though the message cannot be written.
fn abort_scenario() {
    common::record_coverage_at_abort();
    threadguard::set_violation_policy(ViolationPolicy::Abort);
    let _ = threadguard::destroy(threadguard::Handle::NULL);
    // Not reached when the policy works: exit normally so the parent sees the difference.
    std::process::exit(0);
}

const CHILD: &str = "child_scenario";

/// The entry point of the child processes (does nothing in a normal test run).
#[test]
fn child_scenario() {
    match scenario().as_deref() {
        Some("log") => log_scenario(),
        Some("abort") => abort_scenario(),
        Some(other) => panic!("unknown scenario {other}"),
        None => {}
    }
}

#[test]
fn log_policy_with_unwritable_stderr_keeps_every_status_and_finishes_exit_sweeps() {
    if scenario().is_some() {
        return;
    }
    for sink in [Sink::DevFull, Sink::ClosedPipe] {
        let (status, stdout) = run_child(CHILD, "log", sink);
        assert!(status.success(), "child with stderr on {sink:?} failed: {status:?}\n{stdout}");
        assert!(stdout.contains("1 passed"), "the child ran its scenario:\n{stdout}");
    }
}

#[test]
fn abort_policy_aborts_even_when_the_message_cannot_be_written() {
    if scenario().is_some() {
        return;
    }
    for sink in [Sink::DevFull, Sink::ClosedPipe] {
        let (status, stdout) = run_child(CHILD, "abort", sink);
        assert_eq!(status.signal(), Some(6), "child with stderr on {sink:?} did not abort: {status:?}\n{stdout}");
    }
}
