//! Runner and completion-queue edges the main runner tests do not walk: how runners and queues
//! describe themselves, the C entry points' pointer and argument refusals, and C work that a
//! stop fails (its completion function, its queue entry and its abandoned caller each get
//! exactly one answer).

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use threadguard::ffi::{
    self, TG_ERR_INVALID_ARGUMENT, TG_ERR_NULL_POINTER, TG_ERR_SHUT_DOWN, TG_ERR_TIMEOUT, TG_OK, tg_status,
};
use threadguard::runner::{CompletionQueue, MAX_QUEUE_CAPACITY, Runner};
use threadguard::{Handle, Status, last_error};

const LONG: Option<Duration> = Some(Duration::from_secs(30));

/// Waits (bounded) until `condition` holds.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn runners_and_queues_describe_themselves() {
    let runner = Runner::start("edge-debug", 4).unwrap();
    assert_eq!(runner.name(), "edge-debug");
    assert_eq!(
        runner.call(|| thread::current().name().map(str::to_owned), LONG).unwrap().as_deref(),
        Some("edge-debug")
    );
    let debug = format!("{runner:?}");
    assert!(debug.starts_with("Runner { name: \"edge-debug\""), "{debug}");
    assert!(debug.contains(&format!("thread_id: {}", runner.thread_id())), "{debug}");
    assert!(debug.contains(&format!("handle: {:?}", runner.handle())), "{debug}");

    let queue = CompletionQueue::new(3).unwrap();
    assert_eq!(format!("{queue:?}"), "CompletionQueue { capacity: 3, queued: 0, outstanding: 0 }");
    runner.post_to_queue(|| 1u8, &queue, 7).unwrap();
    runner.call(|| (), LONG).unwrap(); // the runner is in order: the entry is queued now
    assert_eq!(format!("{queue:?}"), "CompletionQueue { capacity: 3, queued: 1, outstanding: 0 }");
    let completion = queue.wait(LONG).unwrap();
    assert_eq!((completion.tag, completion.result.unwrap()), (7, 1));
    runner.stop().unwrap();
}

#[test]
fn queue_capacity_bounds_are_checked() {
    for capacity in [0, MAX_QUEUE_CAPACITY + 1] {
        let error = CompletionQueue::<u8>::new(capacity).unwrap_err();
        assert_eq!(error.status(), Status::InvalidArgument);
        assert!(error.message().contains(&format!("capacity {capacity} is outside")), "{error}");
    }
    assert!(CompletionQueue::<u8>::new(MAX_QUEUE_CAPACITY).is_ok(), "the bound itself is allowed, not preallocated");
}

unsafe extern "C-unwind" fn noop(_context: *mut c_void, _out: *mut *mut c_void) {}

fn c_start(name: &std::ffi::CStr, capacity: u32) -> Handle {
    let mut handle = Handle::NULL;
    // SAFETY: `name` is NUL-terminated; `handle` is valid for writes.
    assert_eq!(unsafe { ffi::tg_runner_start(name.as_ptr(), capacity, &mut handle) }, TG_OK);
    handle
}

#[test]
fn c_out_pointers_and_arguments_are_checked_before_anything_happens() {
    let runner = c_start(c"edge-args", 4);
    // SAFETY: NULL is refused before it is written.
    assert_eq!(unsafe { ffi::tg_runner_thread_id(runner, std::ptr::null_mut()) }, TG_ERR_NULL_POINTER);
    assert!(last_error().contains("out_thread_id is NULL"), "{}", last_error());
    let mut id = 0;
    // SAFETY: `id` is valid for writes.
    assert_eq!(unsafe { ffi::tg_runner_thread_id(runner, &mut id) }, TG_OK);
    assert_ne!(id, 0);

    for capacity in [0, ffi::TG_MAX_QUEUE_CAPACITY + 1] {
        let mut cq = Handle::NULL;
        // SAFETY: `cq` is valid for writes.
        assert_eq!(unsafe { ffi::tg_cq_create(capacity, None, &mut cq) }, TG_ERR_INVALID_ARGUMENT);
        assert_eq!(cq, Handle::NULL, "untouched on error");
    }
    // SAFETY: NULL is refused before it is written.
    assert_eq!(unsafe { ffi::tg_cq_create(4, None, std::ptr::null_mut()) }, TG_ERR_NULL_POINTER);

    let mut cq = Handle::NULL;
    // SAFETY: `cq` is valid for writes.
    assert_eq!(unsafe { ffi::tg_cq_create(4, None, &mut cq) }, TG_OK);
    let (mut tag, mut status, mut result) = (0u64, 0, std::ptr::null_mut());
    let (tag_ptr, status_ptr, result_ptr) = (&raw mut tag, &raw mut status, &raw mut result);
    let null_cases: [(*mut u64, *mut tg_status, *mut *mut c_void, &str); 3] = [
        (std::ptr::null_mut(), status_ptr, result_ptr, "out_tag"),
        (tag_ptr, std::ptr::null_mut(), result_ptr, "out_status"),
        (tag_ptr, status_ptr, std::ptr::null_mut(), "out_result"),
    ];
    for (out_tag, out_status, out_result, what) in null_cases {
        // SAFETY: the non-null pointers are valid for writes; the NULL one is refused first.
        assert_eq!(unsafe { ffi::tg_cq_wait(cq, 0, out_tag, out_status, out_result) }, TG_ERR_NULL_POINTER);
        assert!(last_error().contains(&format!("tg_cq_wait: {what} is NULL")), "{}", last_error());
    }
    // SAFETY: the out pointers are valid for writes.
    assert_eq!(unsafe { ffi::tg_cq_wait(cq, -2, tag_ptr, status_ptr, result_ptr) }, TG_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("timeout -2 ms"), "{}", last_error());
    // SAFETY: as above.
    assert_eq!(unsafe { ffi::tg_cq_wait(cq, 0, tag_ptr, status_ptr, result_ptr) }, TG_ERR_TIMEOUT);
    // SAFETY: as above; a refused post leaves nothing queued.
    assert_eq!(unsafe { ffi::tg_runner_post_to_queue(runner, None, std::ptr::null_mut(), cq, 1) }, TG_ERR_NULL_POINTER);
    // SAFETY: `noop` ignores its arguments; NULL `out_result` is refused before anything is queued.
    let refused =
        unsafe { ffi::tg_runner_call(runner, Some(noop), std::ptr::null_mut(), -1, None, std::ptr::null_mut()) };
    assert_eq!(refused, TG_ERR_NULL_POINTER);
    // SAFETY: as above.
    let refused = unsafe { ffi::tg_runner_call(runner, Some(noop), std::ptr::null_mut(), -2, None, &mut result) };
    assert_eq!(refused, TG_ERR_INVALID_ARGUMENT);
    // SAFETY: as above.
    assert_eq!(unsafe { ffi::tg_cq_wait(cq, 0, tag_ptr, status_ptr, result_ptr) }, TG_ERR_TIMEOUT, "nothing arrived");
    assert_eq!(ffi::tg_cq_destroy(cq), TG_OK);
    assert_eq!(ffi::tg_runner_stop(runner), TG_OK);
}

/// A gate that C work waits at (one per test binary: only one test uses it).
static GATE: (Mutex<(bool, bool)>, Condvar) = (Mutex::new((false, false)), Condvar::new());

/// Marks itself entered, then waits until the gate opens.
unsafe extern "C-unwind" fn wait_at_gate(_context: *mut c_void, _out: *mut *mut c_void) {
    let (lock, cvar) = &GATE;
    let mut state = lock.lock().unwrap();
    state.0 = true;
    cvar.notify_all();
    while !state.1 {
        state = cvar.wait(state).unwrap();
    }
}

fn gate_entered() -> bool {
    GATE.0.lock().unwrap().0
}

fn open_gate() {
    GATE.0.lock().unwrap().1 = true;
    GATE.1.notify_all();
}

/// Counts its runs (context: an `AtomicUsize`).
unsafe extern "C-unwind" fn count_run(context: *mut c_void, _out: *mut *mut c_void) {
    // SAFETY: the context is an `AtomicUsize` that outlives the runner.
    unsafe { &*context.cast::<AtomicUsize>() }.fetch_add(1, Ordering::SeqCst);
}

static ANSWERS: Mutex<Vec<(&'static str, tg_status, usize)>> = Mutex::new(Vec::new());

unsafe extern "C-unwind" fn record_done(_context: *mut c_void, status: tg_status, result: *mut c_void) {
    ANSWERS.lock().unwrap().push(("done", status, result as usize));
}

unsafe extern "C-unwind" fn record_abandon(_context: *mut c_void, status: tg_status, result: *mut c_void) {
    ANSWERS.lock().unwrap().push(("abandon", status, result as usize));
}

#[test]
fn c_work_failed_by_stop_is_answered_exactly_once_and_never_runs() {
    let runner = c_start(c"edge-stop", 16);
    let runs = AtomicUsize::new(0);
    let context = (&raw const runs).cast_mut().cast::<c_void>();
    // SAFETY: `wait_at_gate` ignores its arguments.
    assert_eq!(unsafe { ffi::tg_runner_post(runner, Some(wait_at_gate), std::ptr::null_mut(), None) }, TG_OK);
    eventually("the runner waits at the gate", gate_entered);

    let mut cq = Handle::NULL;
    // SAFETY: `cq` is valid for writes.
    assert_eq!(unsafe { ffi::tg_cq_create(4, None, &mut cq) }, TG_OK);
    // Three jobs queued behind the gate: one with a completion function, one with a queue entry,
    // and a call that times out at once (cancelled: its abandon function answers).
    // SAFETY: `count_run` gets a live `AtomicUsize` (the runner is stopped before it goes away);
    // `record_done` and `record_abandon` ignore their context.
    unsafe {
        assert_eq!(ffi::tg_runner_post(runner, Some(count_run), context, Some(record_done)), TG_OK);
        assert_eq!(ffi::tg_runner_post_to_queue(runner, Some(count_run), context, cq, 5), TG_OK);
        let mut result = std::ptr::null_mut();
        let status = ffi::tg_runner_call(runner, Some(count_run), context, 0, Some(record_abandon), &mut result);
        assert_eq!(status, TG_ERR_TIMEOUT);
    }

    let stopper = thread::spawn(move || ffi::tg_runner_stop(runner));
    eventually("the runner stops taking work", || {
        let mut id = 0;
        // SAFETY: `id` is valid for writes.
        unsafe { ffi::tg_runner_thread_id(runner, &mut id) == TG_ERR_SHUT_DOWN }
    });
    open_gate();
    assert_eq!(stopper.join().unwrap(), TG_OK);

    assert_eq!(runs.load(Ordering::SeqCst), 0, "no failed job ran");
    let mut answers = ANSWERS.lock().unwrap().clone();
    answers.sort_unstable();
    assert_eq!(answers, [("abandon", TG_ERR_TIMEOUT, 0), ("done", TG_ERR_SHUT_DOWN, 0)]);
    let (mut tag, mut status, mut result) = (0u64, 0, std::ptr::dangling_mut::<c_void>());
    // SAFETY: the out pointers are valid for writes.
    assert_eq!(unsafe { ffi::tg_cq_wait(cq, 0, &mut tag, &mut status, &mut result) }, TG_OK);
    assert_eq!((tag, status, result), (5, TG_ERR_SHUT_DOWN, std::ptr::null_mut()));
    // SAFETY: as above.
    assert_eq!(unsafe { ffi::tg_cq_wait(cq, 0, &mut tag, &mut status, &mut result) }, TG_ERR_TIMEOUT, "one entry");
    assert_eq!(ffi::tg_cq_destroy(cq), TG_OK);
}

#[test]
fn a_c_caller_blocked_on_work_that_a_stop_fails_gets_shut_down_and_its_work_never_runs() {
    use std::sync::{Arc, mpsc};
    let runner = Arc::new(Runner::start("edge-blocked", 4).unwrap());
    // Hold the runner inside a Rust job until `open` is sent.
    let (entered_tx, entered) = mpsc::channel();
    let (open, opened) = mpsc::channel::<()>();
    runner
        .post(
            move || {
                entered_tx.send(()).unwrap();
                opened.recv().unwrap();
            },
            |_| (),
        )
        .unwrap();
    entered.recv().unwrap();

    let runs = Arc::new(AtomicUsize::new(0));
    let handle = runner.handle();
    let caller_runs = Arc::clone(&runs);
    let caller = thread::spawn(move || {
        let context = Arc::as_ptr(&caller_runs).cast_mut().cast::<c_void>();
        let mut result = std::ptr::dangling_mut::<c_void>();
        // SAFETY: `count_run` gets a live `AtomicUsize`; `record_abandon` ignores its context;
        // `result` is valid for writes.
        let status =
            unsafe { ffi::tg_runner_call(handle, Some(count_run), context, -1, Some(record_abandon), &mut result) };
        (status, result == std::ptr::dangling_mut())
    });
    eventually("the blocked call is queued", || runner.queued() == 1);

    let stopping = Arc::clone(&runner);
    let stopper = thread::spawn(move || stopping.stop());
    eventually("the runner stops taking work", || {
        runner.post(|| (), |_| ()).is_err_and(|error| error.status() == Status::ShutDown)
    });
    open.send(()).unwrap();
    stopper.join().unwrap().unwrap();
    assert_eq!(caller.join().unwrap(), (TG_ERR_SHUT_DOWN, true), "refused, `*out_result` untouched");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the failed work never ran");
    assert!(
        !ANSWERS.lock().unwrap().iter().any(|(what, status, _)| *what == "abandon" && *status == TG_ERR_SHUT_DOWN),
        "abandon runs only after a timeout"
    );
}
