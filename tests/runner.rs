//! Runners and completion queues: ownership, exactly-once delivery, timeouts, bounded queues,
//! orderly stop, misuse codes, and stress with many producers (a million posts from eight
//! threads, about a second in a debug build).

mod common;

use common::{DropLog, Tracked};
use std::cell::RefCell;
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};
use threadguard::ffi::{self, TG_OK, tg_status};
use threadguard::runner::{CompletionQueue, MAX_QUEUE_CAPACITY, QUEUE_OWNER, RUNNER_OWNER, Runner};
use threadguard::{Error, Handle, Status, destroy_later, owner_of, register, with};

const LONG: Option<Duration> = Some(Duration::from_secs(30));

fn status<T>(result: Result<T, Error>) -> Status {
    result.err().expect("expected an error").status()
}

/// Holds the runner inside a job until `release` is called, so tests can fill its queue.
struct Gate {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    entered: mpsc::Receiver<()>,
}

impl Gate {
    /// Posts a job that blocks the runner; returns once the runner is inside it.
    fn close(runner: &Runner) -> Gate {
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let (entered_tx, entered) = mpsc::channel();
        let job_open = Arc::clone(&open);
        runner
            .post(
                move || {
                    entered_tx.send(()).unwrap();
                    let (lock, cvar) = &*job_open;
                    let mut open = lock.lock().unwrap();
                    while !*open {
                        open = cvar.wait(open).unwrap();
                    }
                },
                |_| (),
            )
            .unwrap();
        entered.recv().unwrap();
        Gate { open, entered }
    }

    fn release(self) {
        let (lock, cvar) = &*self.open;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
        drop(self.entered);
    }
}

/// Waits (bounded) until `condition` holds.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn objects_registered_by_runner_work_are_owned_by_the_runner_and_destroyed_on_it_at_stop() {
    let log = DropLog::default();
    let runner = Runner::start("owner", 64).unwrap();
    let runner_id = runner.thread_id();
    assert_ne!(runner_id, threadguard::current_thread_id().unwrap());
    assert_eq!(runner.call(|| threadguard::current_thread_id().unwrap(), None).unwrap(), runner_id);
    assert_eq!(runner.call(|| thread::current().name().map(str::to_owned), None).unwrap().as_deref(), Some("owner"));

    let job_log = log.clone();
    let handle = runner.call(move || register(job_log.value(1)), None).unwrap().unwrap();
    assert_eq!(owner_of(handle).unwrap(), runner_id);
    // The test thread may hold the handle but not use it.
    assert_eq!(status(with(handle, |_: &mut Tracked| ())), Status::WrongThread);
    assert_eq!(runner.call(move || with(handle, |t: &mut Tracked| t.id), None).unwrap().unwrap(), 1);
    // `Rc` is fine too: it never leaves the runner.
    let shared = runner.call(|| register(Rc::new(RefCell::new(5u8))), None).unwrap().unwrap();
    let value = runner.call(move || with(shared, |rc: &mut Rc<RefCell<u8>>| *rc.borrow()), None).unwrap();
    assert_eq!(value.unwrap(), 5);

    runner.stop().unwrap();
    assert_eq!(log.drops(), vec![(1, runner_id)], "destroyed once, on the runner");
    assert_eq!(status(with(handle, |_: &mut Tracked| ())), Status::OwnerExited);
    assert_eq!(status(owner_of(shared)), Status::OwnerExited);
}

#[test]
fn post_callbacks_run_exactly_once_on_the_runner() {
    let runner = Runner::start("poster", 1024).unwrap();
    let runner_id = runner.thread_id();
    let (tx, rx) = mpsc::channel();
    for i in 0..500u32 {
        let tx = tx.clone();
        runner
            .post(
                move || i * 2,
                move |result| {
                    let on_runner = threadguard::current_thread_id().unwrap() == runner_id;
                    tx.send((result.unwrap(), on_runner)).unwrap();
                },
            )
            .unwrap();
    }
    drop(tx);
    let mut results: Vec<(u32, bool)> = rx.iter().collect();
    results.sort_unstable();
    assert_eq!(results.len(), 500);
    for (i, (value, on_runner)) in results.into_iter().enumerate() {
        assert_eq!(value, 2 * i as u32);
        assert!(on_runner, "callback ran off the runner");
    }
}

#[test]
fn a_panic_in_posted_work_is_panic_for_that_work_only() {
    let runner = Runner::start("panicky", 16).unwrap();
    let panics_before = threadguard::stats().panics;
    let error = runner.call(|| -> u32 { panic!("work exploded") }, None).unwrap_err();
    assert_eq!(error.status(), Status::Panic);
    assert!(error.message().contains("work exploded"), "{}", error.message());
    let (tx, rx) = mpsc::channel();
    runner.post(|| -> u8 { panic!("posted work exploded") }, move |result| tx.send(status(result)).unwrap()).unwrap();
    assert_eq!(rx.recv().unwrap(), Status::Panic);
    // A panicking callback is contained too.
    runner.post(|| 1, |_| panic!("callback exploded")).unwrap();
    assert_eq!(runner.call(|| "alive", None).unwrap(), "alive");
    assert!(threadguard::stats().panics >= panics_before + 3);
    runner.stop().unwrap();
}

#[test]
fn call_and_stop_from_the_runner_itself_are_refused_with_busy() {
    let runner = Arc::new(Runner::start("self-call", 16).unwrap());
    let inner = Arc::clone(&runner);
    let handle = runner.handle();
    let (call, stop, c_call, c_stop) = runner
        .call(
            move || {
                let call = status(inner.call(|| (), None));
                let stop = status(inner.stop());
                let mut out = std::ptr::null_mut();
                // SAFETY: `noop` ignores its arguments; `out` is valid for writes.
                let c_call =
                    unsafe { ffi::tg_runner_call(handle, Some(noop), std::ptr::null_mut(), -1, None, &mut out) };
                let c_stop = ffi::tg_runner_stop(handle);
                (call, stop, c_call, c_stop)
            },
            None,
        )
        .unwrap();
    assert_eq!((call, stop), (Status::Busy, Status::Busy));
    assert_eq!((c_call, c_stop), (ffi::TG_ERR_BUSY, ffi::TG_ERR_BUSY));
    // Refused without side effects: the runner still runs.
    assert_eq!(runner.call(|| 7, None).unwrap(), 7);
    runner.stop().unwrap();
}

#[test]
fn stopping_twice_posting_after_stop_and_calling_after_stop_get_shut_down() {
    let runner = Runner::start("stopped", 16).unwrap();
    let handle = runner.handle();
    runner.stop().unwrap();
    assert_eq!(status(runner.stop()), Status::ShutDown);
    assert_eq!(status(runner.post(|| (), |_| ())), Status::ShutDown);
    assert_eq!(status(runner.call(|| (), None)), Status::ShutDown);
    let queue = CompletionQueue::<()>::new(4).unwrap();
    assert_eq!(status(runner.post_to_queue(|| (), &queue, 1)), Status::ShutDown);
    assert_eq!(queue.counts(), (0, 0), "the refused post gave its reservation back");
    assert_eq!(ffi::tg_runner_stop(handle), ffi::TG_ERR_SHUT_DOWN);
    // SAFETY: `noop` ignores its arguments.
    assert_eq!(unsafe { ffi::tg_runner_post(handle, Some(noop), std::ptr::null_mut(), None) }, ffi::TG_ERR_SHUT_DOWN);
    assert!(threadguard::last_error().contains("stopped"), "{}", threadguard::last_error());
    let mut id = 0;
    // SAFETY: `id` is valid for writes.
    assert_eq!(unsafe { ffi::tg_runner_thread_id(handle, &mut id) }, ffi::TG_ERR_SHUT_DOWN);
}

#[test]
fn runner_and_queue_handles_are_told_apart_from_object_handles_and_forgeries() {
    let runner = Runner::start("kinds", 16).unwrap();
    let handle = runner.handle();
    assert_eq!(handle.owner, RUNNER_OWNER);
    let mut cq = Handle::NULL;
    // SAFETY: `cq` is valid for writes.
    assert_eq!(unsafe { ffi::tg_cq_create(4, None, &mut cq) }, TG_OK);
    assert_eq!(cq.owner, QUEUE_OWNER);
    let object = register(1u8).unwrap();
    let post = |h: Handle| -> tg_status {
        // SAFETY: `noop` ignores its arguments.
        unsafe { ffi::tg_runner_post(h, Some(noop), std::ptr::null_mut(), None) }
    };
    let wait = |h: Handle| -> tg_status {
        let (mut tag, mut st, mut result) = (0, 0, std::ptr::null_mut());
        // SAFETY: the out pointers are valid for writes.
        unsafe { ffi::tg_cq_wait(h, 0, &mut tag, &mut st, &mut result) }
    };
    let violations_before = threadguard::stats().violations;

    assert_eq!(post(Handle::NULL), ffi::TG_ERR_NULL_HANDLE);
    assert_eq!(post(object), ffi::TG_ERR_WRONG_TYPE);
    assert!(threadguard::last_error().contains("object handle"), "{}", threadguard::last_error());
    assert_eq!(post(cq), ffi::TG_ERR_WRONG_TYPE);
    assert_eq!(post(Handle { owner: 0xFFFF_FFFF_FFFF_FF00, key: handle.key }), ffi::TG_ERR_STALE);
    for bit in 0..64 {
        assert_eq!(post(Handle { key: handle.key ^ (1 << bit), ..handle }), ffi::TG_ERR_STALE, "bit {bit}");
    }
    assert_eq!(wait(handle), ffi::TG_ERR_WRONG_TYPE);
    assert_eq!(wait(object), ffi::TG_ERR_WRONG_TYPE);
    assert_eq!(wait(Handle { key: cq.key ^ 1, ..cq }), ffi::TG_ERR_STALE);
    assert_eq!(ffi::tg_cq_destroy(handle), ffi::TG_ERR_WRONG_TYPE);
    assert_eq!(ffi::tg_runner_stop(cq), ffi::TG_ERR_WRONG_TYPE);
    assert_eq!(ffi::tg_runner_stop(object), ffi::TG_ERR_WRONG_TYPE);

    // Object entry points on shared handles: refused as naming no object.
    for shared in [handle, cq] {
        assert_eq!(status(with(shared, |_: &mut u8| ())), Status::Stale);
        assert_eq!(status(threadguard::destroy(shared)), Status::Stale);
        assert_eq!(status(destroy_later(shared)), Status::Stale);
        assert_eq!(status(owner_of(shared)), Status::Stale);
    }
    let error = with(handle, |_: &mut u8| ()).unwrap_err();
    assert!(error.message().contains("runner or completion-queue handle"), "{}", error.message());
    assert!(threadguard::stats().violations >= violations_before + 76);

    // Misuse changed nothing: both still work.
    assert_eq!(post(handle), TG_OK);
    assert_eq!(wait(cq), ffi::TG_ERR_TIMEOUT);
    assert_eq!(ffi::tg_cq_destroy(cq), TG_OK);
    assert_eq!(ffi::tg_cq_destroy(cq), ffi::TG_ERR_SHUT_DOWN);
    assert_eq!(wait(cq), ffi::TG_ERR_SHUT_DOWN);
    threadguard::destroy(object).unwrap();
    runner.stop().unwrap();
}

#[test]
fn invalid_start_arguments_are_refused() {
    assert_eq!(status(Runner::start("zero", 0)), Status::InvalidArgument);
    assert_eq!(status(Runner::start("huge", MAX_QUEUE_CAPACITY + 1)), Status::InvalidArgument);
    assert_eq!(status(Runner::start("nul\0name", 4)), Status::InvalidArgument);
    assert_eq!(status(CompletionQueue::<()>::new(0)), Status::InvalidArgument);
    // SAFETY: a NULL out pointer is refused before anything is written.
    assert_eq!(unsafe { ffi::tg_runner_start(std::ptr::null(), 4, std::ptr::null_mut()) }, ffi::TG_ERR_NULL_POINTER);
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writes.
    assert_eq!(unsafe { ffi::tg_runner_start(std::ptr::null(), 0, &mut handle) }, ffi::TG_ERR_INVALID_ARGUMENT);
    assert!(handle.is_null(), "untouched on error");
    // A NULL name gets the default name.
    // SAFETY: `handle` is valid for writes.
    assert_eq!(unsafe { ffi::tg_runner_start(std::ptr::null(), 4, &mut handle) }, TG_OK);
    let mut out = std::ptr::null_mut();
    // SAFETY: `thread_name` writes a leaked CString pointer to its out pointer; `out` is valid.
    let called = unsafe { ffi::tg_runner_call(handle, Some(thread_name), std::ptr::null_mut(), -1, None, &mut out) };
    assert_eq!(called, TG_OK);
    // SAFETY: `out` came from CString::into_raw in `thread_name`.
    let name = unsafe { std::ffi::CString::from_raw(out.cast()) };
    assert_eq!(name.to_str().unwrap(), "threadguard-runner");
    let mut unused = Handle::NULL;
    // SAFETY: the out pointers are valid or deliberately NULL.
    unsafe {
        assert_eq!(
            ffi::tg_runner_call(handle, None, std::ptr::null_mut(), -1, None, &mut out),
            ffi::TG_ERR_NULL_POINTER
        );
        assert_eq!(
            ffi::tg_runner_call(handle, Some(noop), std::ptr::null_mut(), -1, None, std::ptr::null_mut()),
            ffi::TG_ERR_NULL_POINTER
        );
        assert_eq!(
            ffi::tg_runner_call(handle, Some(noop), std::ptr::null_mut(), -2, None, &mut out),
            ffi::TG_ERR_INVALID_ARGUMENT
        );
        assert_eq!(ffi::tg_runner_post(handle, None, std::ptr::null_mut(), None), ffi::TG_ERR_NULL_POINTER);
        assert_eq!(ffi::tg_runner_thread_id(handle, std::ptr::null_mut()), ffi::TG_ERR_NULL_POINTER);
        assert_eq!(ffi::tg_cq_create(0, None, &mut unused), ffi::TG_ERR_INVALID_ARGUMENT);
        assert_eq!(ffi::tg_cq_create(ffi::TG_MAX_QUEUE_CAPACITY + 1, None, &mut unused), ffi::TG_ERR_INVALID_ARGUMENT);
        assert_eq!(ffi::tg_cq_create(1, None, std::ptr::null_mut()), ffi::TG_ERR_NULL_POINTER);
    }
    assert_eq!(ffi::tg_runner_stop(handle), TG_OK);
}

#[test]
fn a_full_queue_refuses_posts_with_limit_and_accepted_work_is_delivered_once() {
    let runner = Runner::start("bounded", 8).unwrap();
    let gate = Gate::close(&runner);
    let delivered = Arc::new(AtomicUsize::new(0));
    let mut accepted = 0;
    for _ in 0..8 {
        let delivered = Arc::clone(&delivered);
        runner.post(|| (), move |r| drop(r.map(|()| delivered.fetch_add(1, Ordering::SeqCst)))).unwrap();
        accepted += 1;
    }
    assert_eq!(runner.queued(), 8);
    let refused = runner.post(|| (), |_| panic!("a refused post must never deliver"));
    let error = refused.unwrap_err();
    assert_eq!(error.status(), Status::Limit);
    assert!(error.message().contains("full"), "{}", error.message());
    // A blocking call waits for room only until its timeout, and is then not queued.
    let ran = Arc::new(AtomicBool::new(false));
    let job_ran = Arc::clone(&ran);
    let limited = runner.call(move || job_ran.store(true, Ordering::SeqCst), Some(Duration::from_millis(20)));
    assert_eq!(status(limited), Status::Limit);
    // SAFETY: `noop` ignores its arguments.
    let posted = unsafe { ffi::tg_runner_post(runner.handle(), Some(noop), std::ptr::null_mut(), None) };
    assert_eq!(posted, ffi::TG_ERR_LIMIT);
    gate.release();
    runner.call(|| (), None).unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), accepted);
    assert!(!ran.load(Ordering::SeqCst), "work refused with LIMIT never runs");
    runner.stop().unwrap();
}

#[test]
fn a_blocking_call_waits_for_room_in_a_full_queue() {
    let runner = Arc::new(Runner::start("room", 1).unwrap());
    let gate = Gate::close(&runner);
    runner.post(|| (), |_| ()).unwrap();
    let caller = {
        let runner = Arc::clone(&runner);
        thread::spawn(move || runner.call(|| 42, LONG))
    };
    thread::sleep(Duration::from_millis(20));
    gate.release();
    assert_eq!(caller.join().unwrap().unwrap(), 42);
    runner.stop().unwrap();
}

#[test]
fn a_call_that_times_out_before_it_starts_is_cancelled_and_never_runs() {
    let log = DropLog::default();
    let runner = Runner::start("cancel", 16).unwrap();
    let gate = Gate::close(&runner);
    let ran = Arc::new(AtomicBool::new(false));
    let (job_ran, captured) = (Arc::clone(&ran), log.value(9));
    let result = runner.call(
        move || {
            let captured = captured; // the whole value, not just its field
            job_ran.store(true, Ordering::SeqCst);
            captured.id
        },
        Some(Duration::from_millis(10)),
    );
    let error = result.unwrap_err();
    assert_eq!(error.status(), Status::Timeout);
    assert!(error.message().contains("cancelled"), "{}", error.message());
    gate.release();
    runner.call(|| (), None).unwrap();
    assert!(!ran.load(Ordering::SeqCst), "cancelled work never runs");
    assert_eq!(log.drops(), vec![(9, runner.thread_id())], "the unrun work is dropped once, on the runner");
    runner.stop().unwrap();
}

#[test]
fn a_call_that_times_out_after_it_started_has_its_result_dropped_once_on_the_runner() {
    let log = DropLog::default();
    let runner = Runner::start("late", 16).unwrap();
    let job_log = log.clone();
    let (started_tx, started) = mpsc::channel();
    let result = runner.call(
        move || {
            started_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(100));
            job_log.value(3)
        },
        Some(Duration::from_millis(20)),
    );
    assert_eq!(status(result), Status::Timeout);
    started.recv().unwrap();
    runner.call(|| (), None).unwrap();
    assert_eq!(log.drops(), vec![(3, runner.thread_id())]);
    runner.stop().unwrap();
}

#[test]
fn completion_queues_deliver_tags_and_results_to_any_waiting_thread() {
    let runner = Runner::start("cq", 64).unwrap();
    let queue = Arc::new(CompletionQueue::new(16).unwrap());
    // A thread already waiting is woken by the first completion.
    let waiter = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || queue.wait(LONG).map(|c| (c.tag, c.result.unwrap())))
    };
    thread::sleep(Duration::from_millis(10));
    for tag in 1..=4u64 {
        runner.post_to_queue(move || tag * 10, &queue, tag).unwrap();
    }
    runner.post_to_queue(|| -> u64 { panic!("boom") }, &queue, 99).unwrap();
    let mut got = vec![waiter.join().unwrap().unwrap()];
    for _ in 0..3 {
        let completion = queue.wait(LONG).unwrap();
        got.push((completion.tag, completion.result.unwrap()));
    }
    got.sort_unstable();
    assert_eq!(got, [(1, 10), (2, 20), (3, 30), (4, 40)]);
    let panicked = queue.wait(LONG).unwrap();
    assert_eq!((panicked.tag, status(panicked.result)), (99, Status::Panic));
    assert_eq!(status(queue.wait(Some(Duration::from_millis(5)))), Status::Timeout);
    assert_eq!(status(queue.wait(Some(Duration::ZERO))), Status::Timeout);
    runner.stop().unwrap();
}

#[test]
fn stop_fails_queued_work_with_shut_down_exactly_once_and_lets_running_work_finish() {
    let log = DropLog::default();
    let runner = Arc::new(Runner::start("stop-busy", 1024).unwrap());
    let gate = Gate::close(&runner);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    for i in 0..100u32 {
        let (outcomes, job_log) = (Arc::clone(&outcomes), log.clone());
        runner
            .post(
                move || register(job_log.value(i)).unwrap(),
                move |result| outcomes.lock().unwrap().push((i, result.map(drop).map_err(|e| e.status()))),
            )
            .unwrap();
    }
    let queue = CompletionQueue::<u32>::new(4).unwrap();
    runner.post_to_queue(|| 1, &queue, 7).unwrap();
    let caller = {
        let runner = Arc::clone(&runner);
        thread::spawn(move || status(runner.call(|| (), None)))
    };
    eventually("the blocked caller's job is queued", || runner.queued() == 102);
    let stopper = {
        let runner = Arc::clone(&runner);
        thread::spawn(move || runner.stop())
    };
    eventually("the stop has closed the queue", || runner.post(|| (), |_| ()).is_err());
    gate.release();
    stopper.join().unwrap().unwrap();

    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 100, "every callback exactly once");
    assert!(outcomes.iter().all(|(_, outcome)| *outcome == Err(Status::ShutDown)));
    let completion = queue.wait(Some(Duration::ZERO)).unwrap();
    assert_eq!((completion.tag, status(completion.result)), (7, Status::ShutDown));
    assert_eq!(caller.join().unwrap(), Status::ShutDown);
    assert!(log.drops().is_empty(), "failed work never ran, so it registered nothing");
}

#[test]
fn stop_while_producers_post_delivers_every_accepted_callback_once_and_destroys_every_object_once() {
    let log = DropLog::default();
    let runner = Arc::new(Runner::start("stop-race", 256).unwrap());
    let runner_id = runner.thread_id();
    let (ok, failed, accepted) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Arc::new(Barrier::new(5));
    let producers: Vec<_> = (0..4u32)
        .map(|p| {
            let (runner, log, ok, failed, accepted, start) = (
                Arc::clone(&runner),
                log.clone(),
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&accepted),
                Arc::clone(&start),
            );
            thread::spawn(move || {
                start.wait();
                for i in 0..100_000u32 {
                    let job_log = log.clone();
                    let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
                    let posted = runner.post(
                        move || register(job_log.value(p * 1_000_000 + i)).unwrap(),
                        move |result| match result {
                            Ok(_) => drop(ok.fetch_add(1, Ordering::SeqCst)),
                            Err(e) => {
                                assert_eq!(e.status(), Status::ShutDown);
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        },
                    );
                    match posted {
                        Ok(()) => drop(accepted.fetch_add(1, Ordering::SeqCst)),
                        Err(e) if e.status() == Status::Limit => thread::yield_now(),
                        Err(e) => {
                            assert_eq!(e.status(), Status::ShutDown);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    start.wait();
    eventually("some work ran", || ok.load(Ordering::SeqCst) > 1000);
    runner.stop().unwrap();
    for producer in producers {
        producer.join().unwrap();
    }
    let (ok, failed, accepted) =
        (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst), accepted.load(Ordering::SeqCst));
    assert_eq!(ok + failed, accepted, "every accepted post delivered exactly once");
    let drops = log.drops();
    assert_eq!(drops.len() as u64, ok, "every object registered by work that ran is destroyed once");
    assert!(drops.iter().all(|&(_, thread)| thread == runner_id), "destroyed on the runner");
    let mut ids: Vec<u32> = drops.iter().map(|&(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, ok, "no object destroyed twice");
}

#[test]
fn destroy_later_of_a_runner_object_runs_promptly_without_further_work() {
    let log = DropLog::default();
    let runner = Runner::start("inbox", 16).unwrap();
    let job_log = log.clone();
    let handle = runner.call(move || register(job_log.value(5)), None).unwrap().unwrap();
    destroy_later(handle).unwrap();
    eventually("the runner ran the destroy request", || log.count(5) == 1);
    assert_eq!(log.drops(), vec![(5, runner.thread_id())]);
    runner.stop().unwrap();
    assert_eq!(log.count(5), 1);
}

#[test]
fn a_runner_dropped_inside_its_own_work_finishes_on_its_own() {
    let log = DropLog::default();
    let runner = Runner::start("self-drop", 16).unwrap();
    let (runner_id, runner_handle) = (runner.thread_id(), runner.handle());
    let job_log = log.clone();
    let handle = runner.call(move || register(job_log.value(8)), None).unwrap().unwrap();
    // Hand the only `Runner` to its own work: dropping it there must not try to join itself.
    let (tx, rx) = mpsc::channel::<Runner>();
    runner.post(move || drop(rx.recv().unwrap()), |_| ()).unwrap();
    tx.send(runner).unwrap();
    eventually("the runner thread exited", || owner_of(handle).is_err());
    assert_eq!(status(owner_of(handle)), Status::OwnerExited);
    assert_eq!(log.drops(), vec![(8, runner_id)]);
    assert_eq!(ffi::tg_runner_stop(runner_handle), ffi::TG_ERR_SHUT_DOWN);
}

#[test]
fn a_runner_may_call_another_runner() {
    let a = Runner::start("a", 16).unwrap();
    let b = Arc::new(Runner::start("b", 16).unwrap());
    let b_id = b.thread_id();
    let inner = Arc::clone(&b);
    assert_eq!(
        a.call(move || inner.call(|| threadguard::current_thread_id().unwrap(), LONG), LONG).unwrap().unwrap(),
        b_id
    );
    // `a`'s work held an `Arc<Runner>` of `b`; it was dropped on `a`, not the last one.
    b.stop().unwrap();
    a.stop().unwrap();
}

// ---- The C path, called from Rust --------------------------------------------------------

unsafe extern "C-unwind" fn noop(_context: *mut c_void, _out: *mut *mut c_void) {}

unsafe extern "C-unwind" fn thread_name(_context: *mut c_void, out: *mut *mut c_void) {
    let name = thread::current().name().unwrap_or("").to_owned();
    // SAFETY: `out` is the valid result slot the runner passes.
    unsafe { *out = std::ffi::CString::new(name).unwrap().into_raw().cast() };
}

/// Adds 1 to the `AtomicU64` the context points to, and returns the context as the result.
unsafe extern "C-unwind" fn bump(context: *mut c_void, out: *mut *mut c_void) {
    // SAFETY: every test passes a pointer to a live `AtomicU64` as the context.
    unsafe { (*context.cast::<AtomicU64>()).fetch_add(1, Ordering::Relaxed) };
    // SAFETY: `out` is the valid result slot the runner passes.
    unsafe { *out = context };
}

static DISCARDED: AtomicU64 = AtomicU64::new(0);

unsafe extern "C-unwind" fn count_discard(_tag: u64, _status: tg_status, _result: *mut c_void) {
    DISCARDED.fetch_add(1, Ordering::SeqCst);
}

fn c_start(name: &std::ffi::CStr, capacity: u32) -> Handle {
    let mut handle = Handle::NULL;
    // SAFETY: `name` is NUL-terminated; `handle` is valid for writes.
    assert_eq!(unsafe { ffi::tg_runner_start(name.as_ptr(), capacity, &mut handle) }, TG_OK);
    handle
}

#[test]
fn c_call_timeout_hands_the_context_to_abandon_exactly_once() {
    static ABANDONED: Mutex<Vec<(usize, tg_status, usize)>> = Mutex::new(Vec::new());
    unsafe extern "C-unwind" fn abandon(context: *mut c_void, status: tg_status, result: *mut c_void) {
        ABANDONED.lock().unwrap().push((context as usize, status, result as usize));
    }
    unsafe extern "C-unwind" fn slow(context: *mut c_void, out: *mut *mut c_void) {
        thread::sleep(Duration::from_millis(100));
        // SAFETY: `out` is the valid result slot the runner passes.
        unsafe { *out = context };
    }
    let runner = c_start(c"c-timeout", 16);
    let mut out = std::ptr::null_mut();
    // Started, then timed out: the late result goes to `abandon` with TG_OK.
    // SAFETY: `slow` writes its context (a plain number, never dereferenced) as its result.
    let status = unsafe { ffi::tg_runner_call(runner, Some(slow), 0x10 as *mut c_void, 20, Some(abandon), &mut out) };
    assert_eq!(status, ffi::TG_ERR_TIMEOUT);
    assert!(out.is_null(), "untouched on error");
    // Queued behind `slow`, timed out before it started: cancelled, `abandon` gets TG_ERR_TIMEOUT.
    // SAFETY: as above.
    let status = unsafe { ffi::tg_runner_call(runner, Some(slow), 0x20 as *mut c_void, 0, Some(abandon), &mut out) };
    assert_eq!(status, ffi::TG_ERR_TIMEOUT);
    // SAFETY: `noop` ignores its arguments.
    let status = unsafe { ffi::tg_runner_call(runner, Some(noop), std::ptr::null_mut(), -1, Some(abandon), &mut out) };
    assert_eq!(status, TG_OK);
    let mut abandoned = ABANDONED.lock().unwrap().clone();
    abandoned.sort_unstable();
    assert_eq!(abandoned, [(0x10, TG_OK, 0x10), (0x20, ffi::TG_ERR_TIMEOUT, 0)]);
    assert_eq!(ffi::tg_runner_stop(runner), TG_OK);
}

#[test]
fn c_completion_queue_destroyed_with_entries_discards_each_exactly_once() {
    let runner = c_start(c"c-discard", 16);
    let counter = AtomicU64::new(0);
    let context = (&counter as *const AtomicU64).cast_mut().cast::<c_void>();
    let mut cq = Handle::NULL;
    // SAFETY: `cq` is valid for writes; `count_discard` ignores its arguments.
    assert_eq!(unsafe { ffi::tg_cq_create(3, Some(count_discard), &mut cq) }, TG_OK);
    for tag in 0..3 {
        // SAFETY: `bump` gets a live AtomicU64 (the runner is stopped before it goes away).
        assert_eq!(unsafe { ffi::tg_runner_post_to_queue(runner, Some(bump), context, cq, tag) }, TG_OK);
    }
    // Three completions outstanding or queued fill the capacity.
    // SAFETY: as above.
    assert_eq!(unsafe { ffi::tg_runner_post_to_queue(runner, Some(bump), context, cq, 9) }, ffi::TG_ERR_LIMIT);
    let (mut tag, mut st, mut result) = (0, -1, std::ptr::null_mut());
    // SAFETY: the out pointers are valid for writes.
    assert_eq!(unsafe { ffi::tg_cq_wait(cq, -1, &mut tag, &mut st, &mut result) }, TG_OK);
    assert_eq!((tag, st, result), (0, TG_OK, context));
    // SAFETY: `noop` ignores its arguments.
    assert_eq!(unsafe { ffi::tg_runner_call(runner, Some(noop), std::ptr::null_mut(), -1, None, &mut result) }, TG_OK);
    let before = DISCARDED.load(Ordering::SeqCst);
    assert_eq!(ffi::tg_cq_destroy(cq), TG_OK);
    assert_eq!(DISCARDED.load(Ordering::SeqCst) - before, 2, "the two entries never waited for");
    // SAFETY: as above.
    assert_eq!(unsafe { ffi::tg_runner_post_to_queue(runner, Some(bump), context, cq, 1) }, ffi::TG_ERR_SHUT_DOWN);
    assert_eq!(ffi::tg_runner_stop(runner), TG_OK);
    assert_eq!(counter.load(Ordering::SeqCst), 3);
}

#[test]
fn a_thread_waiting_on_a_completion_queue_is_released_by_destroy() {
    let mut cq = Handle::NULL;
    // SAFETY: `cq` is valid for writes.
    assert_eq!(unsafe { ffi::tg_cq_create(2, None, &mut cq) }, TG_OK);
    let waiter = thread::spawn(move || {
        let (mut tag, mut st, mut result) = (0, 0, std::ptr::null_mut());
        // SAFETY: the out pointers are valid for writes.
        unsafe { ffi::tg_cq_wait(cq, -1, &mut tag, &mut st, &mut result) }
    });
    thread::sleep(Duration::from_millis(20));
    assert_eq!(ffi::tg_cq_destroy(cq), TG_OK);
    assert_eq!(waiter.join().unwrap(), ffi::TG_ERR_SHUT_DOWN);
}

/// What the C stress jobs count: runs, and completions by status.
#[derive(Default)]
struct StressCounts {
    ran: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

unsafe extern "C-unwind" fn stress_work(context: *mut c_void, _out: *mut *mut c_void) {
    // SAFETY: the stress test passes a `StressCounts` that outlives the runner.
    unsafe { &*context.cast::<StressCounts>() }.ran.fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C-unwind" fn stress_done(context: *mut c_void, status: tg_status, _result: *mut c_void) {
    // SAFETY: as in `stress_work`.
    let counts = unsafe { &*context.cast::<StressCounts>() };
    match status {
        TG_OK => counts.ok.fetch_add(1, Ordering::Relaxed),
        _ => counts.failed.fetch_add(1, Ordering::Relaxed),
    };
}

/// Eight producers post `total` C jobs (no allocation per job) with a completion callback;
/// every job runs and every callback runs exactly once.
fn c_producers_post(total: u64) {
    let runner = c_start(c"c-stress", 65_536);
    let counts = Arc::new(StressCounts::default());
    let started = Instant::now();
    let producers: Vec<_> = (0..8)
        .map(|_| {
            let counts = Arc::clone(&counts);
            thread::spawn(move || {
                let context = Arc::as_ptr(&counts).cast_mut().cast::<c_void>();
                let mut full = 0u64;
                for _ in 0..total / 8 {
                    // SAFETY: the counters outlive the runner (it is stopped before they drop).
                    while unsafe { ffi::tg_runner_post(runner, Some(stress_work), context, Some(stress_done)) } != TG_OK
                    {
                        assert!(threadguard::last_error().contains("full"), "{}", threadguard::last_error());
                        full += 1;
                        thread::yield_now();
                    }
                }
                full
            })
        })
        .collect();
    let full: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    let mut out = std::ptr::null_mut();
    // SAFETY: `noop` ignores its arguments.
    assert_eq!(unsafe { ffi::tg_runner_call(runner, Some(noop), std::ptr::null_mut(), -1, None, &mut out) }, TG_OK);
    let elapsed = started.elapsed();
    assert_eq!(ffi::tg_runner_stop(runner), TG_OK);
    eprintln!(
        "{total} C posts from 8 producers in {elapsed:?} ({:.0}/s; retries on a full queue: {full})",
        total as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(counts.ran.load(Ordering::SeqCst), total);
    assert_eq!(counts.ok.load(Ordering::SeqCst), total, "every callback once, with TG_OK");
    assert_eq!(counts.failed.load(Ordering::SeqCst), 0);
}

#[test]
fn eight_c_producers_post_a_million_jobs_each_completion_once() {
    c_producers_post(1_000_000);
}

/// Eight producers post `total` Rust closures; every callback runs exactly once.
fn rust_producers_post(total: u64) {
    let runner = Arc::new(Runner::start("rust-stress", 65_536).unwrap());
    let (ran, delivered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let producers: Vec<_> = (0..8)
        .map(|_| {
            let (runner, ran, delivered) = (Arc::clone(&runner), Arc::clone(&ran), Arc::clone(&delivered));
            thread::spawn(move || {
                for _ in 0..total / 8 {
                    loop {
                        let (ran, delivered) = (Arc::clone(&ran), Arc::clone(&delivered));
                        let posted = runner.post(
                            move || ran.fetch_add(1, Ordering::Relaxed),
                            move |result| drop(result.map(|_| delivered.fetch_add(1, Ordering::Relaxed))),
                        );
                        match posted {
                            Ok(()) => break,
                            Err(e) if e.status() == Status::Limit => thread::yield_now(),
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    runner.call(|| (), None).unwrap();
    let elapsed = started.elapsed();
    runner.stop().unwrap();
    eprintln!("{total} Rust posts from 8 producers in {elapsed:?} ({:.0}/s)", total as f64 / elapsed.as_secs_f64());
    assert_eq!(ran.load(Ordering::SeqCst), total);
    assert_eq!(delivered.load(Ordering::SeqCst), total);
}

#[test]
fn eight_rust_producers_post_a_million_tasks_each_callback_once() {
    rust_producers_post(1_000_000);
}
