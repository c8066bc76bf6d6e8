//! Runners and completion queues through the C ABI, fed raw bytes: start and stop runners,
//! post work (with a completion, to a queue, or as a blocking call with a timeout), wait on and
//! destroy queues, with real, stopped, destroyed, forged and wrong-kind handles.
//!
//! Work runs concurrently, so outcomes such as a full queue depend on timing; what must hold
//! every time: every status is one the header documents for that function, the ones that do not
//! depend on timing are exactly as documented (null, wrong kind, forged key, stopped runner,
//! destroyed queue, bad argument), and once every runner is stopped and every queue drained or
//! destroyed, each accepted job has reported exactly once (its completion, its queue entry or its
//! discard, its abandon after a timeout), work ran at most once and only on its runner, and each
//! object that work registered was destroyed exactly once, on that runner.

#![no_main]

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::Mutex;
use threadguard::Handle;
use threadguard::ffi::*;

/// Everything the callbacks saw, by context number (contexts are numbers, never dereferenced).
#[derive(Default)]
struct Log {
    /// Work runs: context -> runner thread IDs.
    ran: HashMap<u64, Vec<u64>>,
    /// Completions and abandons: context -> (status, result, thread).
    done: HashMap<u64, Vec<(tg_status, u64, u64)>>,
    /// Queue entries that reached a discard function: tag -> (status, result).
    discarded: HashMap<u64, Vec<(tg_status, u64)>>,
    /// Objects registered by work: object -> (registering thread, destroying threads).
    objects: HashMap<u64, (u64, Vec<u64>)>,
}

static LOG: Mutex<Option<Log>> = Mutex::new(None);

fn log<R>(f: impl FnOnce(&mut Log) -> R) -> R {
    f(LOG.lock().unwrap().get_or_insert_with(Log::default))
}

unsafe extern "C-unwind" fn destroy_object(object: *mut c_void) {
    let thread = tg_current_thread_id();
    log(|log| log.objects.entry(object as u64).or_default().1.push(thread));
}

/// Work: records where it ran, returns its context as the result; some register an object on
/// the runner (destroyed when it stops), some take a millisecond (so queues fill and calls time out).
unsafe extern "C-unwind" fn work(context: *mut c_void, out_result: *mut *mut c_void) {
    let id = context as u64;
    let thread = tg_current_thread_id();
    log(|log| log.ran.entry(id).or_default().push(thread));
    match id % 4 {
        0 => {
            let mut handle = Handle::NULL;
            // SAFETY: `handle` is a live local; `destroy_object` treats the object as a number.
            let status = unsafe { tg_register(1, context, Some(destroy_object), &mut handle) };
            assert_eq!(status, TG_OK, "work registers on its runner");
            log(|log| log.objects.insert(id, (thread, Vec::new())));
        }
        1 => std::thread::sleep(std::time::Duration::from_millis(1)),
        _ => {}
    }
    // SAFETY: the runner passes a valid pointer for the result (the documented contract).
    unsafe { out_result.write(context) };
}

unsafe extern "C-unwind" fn done(context: *mut c_void, status: tg_status, result: *mut c_void) {
    let thread = tg_current_thread_id();
    log(|log| log.done.entry(context as u64).or_default().push((status, result as u64, thread)));
}

unsafe extern "C-unwind" fn discard(tag: u64, status: tg_status, result: *mut c_void) {
    log(|log| log.discarded.entry(tag).or_default().push((status, result as u64)));
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |value, _| (value << 8) | u64::from(self.u8()))
    }
}

/// What a handle is, as far as the test knows, which fixes the status of the handle checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Null,
    LiveRunner,
    StoppedRunner,
    LiveQueue,
    DestroyedQueue,
    /// A runner-owner handle with a made-up key.
    ForgedRunner,
    ForgedQueue,
    /// An object handle (or any thread-owned value).
    Object,
}

struct Fuzz {
    runners: Vec<(Handle, bool, u64)>,
    queues: Vec<(Handle, bool)>,
    object: Handle,
    next_id: u64,
    /// Contexts whose completion or abandon must be reported exactly once.
    expect_done: Vec<u64>,
    /// Tags (= contexts) whose queue entry must arrive exactly once: queue index.
    expect_entry: HashMap<u64, usize>,
    /// Entries taken by waits: tag -> (status, result).
    taken: HashMap<u64, Vec<(tg_status, u64)>>,
}

impl Fuzz {
    fn handle(&mut self, input: &mut Input<'_>, for_runner: bool) -> (Handle, Known) {
        let choice = input.u8();
        let index = usize::from(input.u8());
        match choice % 8 {
            0 => (Handle::NULL, Known::Null),
            1 => (Handle { owner: TG_RUNNER_OWNER, key: input.u64() }, Known::ForgedRunner),
            2 => (Handle { owner: TG_CQ_OWNER, key: input.u64() }, Known::ForgedQueue),
            3 => (self.object, Known::Object),
            4 | 5 if !self.runners.is_empty() && (for_runner || self.queues.is_empty()) => {
                let (handle, live, _) = self.runners[index % self.runners.len()];
                (handle, if live { Known::LiveRunner } else { Known::StoppedRunner })
            }
            _ if !self.queues.is_empty() => {
                let (handle, live) = self.queues[index % self.queues.len()];
                (handle, if live { Known::LiveQueue } else { Known::DestroyedQueue })
            }
            _ => (Handle::NULL, Known::Null),
        }
    }
}

/// The status the handle checks alone give a runner function, if the handle decides it.
fn runner_check(known: Known) -> Option<tg_status> {
    match known {
        Known::Null => Some(TG_ERR_NULL_HANDLE),
        Known::Object | Known::LiveQueue | Known::DestroyedQueue | Known::ForgedQueue => Some(TG_ERR_WRONG_TYPE),
        Known::ForgedRunner => Some(TG_ERR_STALE),
        Known::StoppedRunner => Some(TG_ERR_SHUT_DOWN),
        Known::LiveRunner => None,
    }
}

/// The same for a completion-queue function.
fn queue_check(known: Known) -> Option<tg_status> {
    match known {
        Known::Null => Some(TG_ERR_NULL_HANDLE),
        Known::Object | Known::LiveRunner | Known::StoppedRunner | Known::ForgedRunner => Some(TG_ERR_WRONG_TYPE),
        Known::ForgedQueue => Some(TG_ERR_STALE),
        Known::DestroyedQueue => Some(TG_ERR_SHUT_DOWN),
        Known::LiveQueue => None,
    }
}

/// What `tg_runner_start` and `tg_cq_create` return: the out pointer is checked first, then
/// the capacity.
fn create_status(null_out: bool, capacity: u32) -> tg_status {
    if null_out {
        TG_ERR_NULL_POINTER
    } else if capacity == 0 {
        TG_ERR_INVALID_ARGUMENT
    } else {
        TG_OK
    }
}

fn check(function: &str, status: tg_status, allowed: &[tg_status], exact: Option<tg_status>) {
    assert!(allowed.contains(&status), "{function} returned {status}, not one of {allowed:?}");
    if let Some(exact) = exact {
        assert_eq!(status, exact, "{function}");
    }
}

const HANDLE_ERRORS: [tg_status; 4] = [TG_ERR_NULL_HANDLE, TG_ERR_WRONG_TYPE, TG_ERR_STALE, TG_ERR_SHUT_DOWN];

fn allowed(extra: &[tg_status]) -> Vec<tg_status> {
    let mut all = vec![TG_OK];
    all.extend(HANDLE_ERRORS);
    all.extend(extra);
    all
}

fn run(data: &[u8]) {
    let mut input = Input(data);
    *LOG.lock().unwrap() = Some(Log::default());
    let mut object = Handle::NULL;
    // SAFETY: `object` is a live local; no destructor.
    assert_eq!(unsafe { tg_register(7, std::ptr::null_mut(), None, &mut object) }, TG_OK);
    let mut fuzz = Fuzz {
        runners: Vec::new(),
        queues: Vec::new(),
        object,
        next_id: 1,
        expect_done: Vec::new(),
        expect_entry: HashMap::new(),
        taken: HashMap::new(),
    };
    let mut ops = 0;
    while !input.0.is_empty() && ops < 64 {
        ops += 1;
        let id = fuzz.next_id;
        fuzz.next_id += 1;
        let flags = input.u8();
        match input.u8() % 9 {
            0 => {
                let live = fuzz.runners.iter().filter(|r| r.1).count();
                let capacity = u32::from(flags % 5);
                let null_out = flags & 0x80 != 0;
                if live >= 3 && capacity != 0 && !null_out {
                    continue;
                }
                let mut runner = Handle::NULL;
                let out: *mut Handle = if null_out { std::ptr::null_mut() } else { &mut runner };
                let name: *const c_char = if flags & 0x40 != 0 { std::ptr::null() } else { c"fuzz-runner".as_ptr() };
                // SAFETY: `name` is NULL or a static string; `out` is NULL or a live local.
                let status = unsafe { tg_runner_start(name, capacity, out) };
                let exact = create_status(null_out, capacity);
                check("tg_runner_start", status, &[TG_OK, TG_ERR_NULL_POINTER, TG_ERR_INVALID_ARGUMENT], Some(exact));
                if status == TG_OK {
                    assert_eq!(runner.owner, TG_RUNNER_OWNER);
                    let mut thread = 0;
                    // SAFETY: `thread` is a live local.
                    assert_eq!(unsafe { tg_runner_thread_id(runner, &mut thread) }, TG_OK);
                    fuzz.runners.push((runner, true, thread));
                }
            }
            1 => {
                let capacity = u32::from(flags % 5);
                let null_out = flags & 0x80 != 0;
                let mut cq = Handle::NULL;
                let out: *mut Handle = if null_out { std::ptr::null_mut() } else { &mut cq };
                // SAFETY: `out` is NULL or a live local; `discard` is sound on any thread.
                let status = unsafe { tg_cq_create(capacity, Some(discard), out) };
                let exact = create_status(null_out, capacity);
                check("tg_cq_create", status, &[TG_OK, TG_ERR_NULL_POINTER, TG_ERR_INVALID_ARGUMENT], Some(exact));
                if status == TG_OK {
                    assert_eq!(cq.owner, TG_CQ_OWNER);
                    fuzz.queues.push((cq, true));
                }
            }
            2 => {
                let (runner, known) = fuzz.handle(&mut input, true);
                let work_fn: tg_work_fn = if flags & 1 != 0 { None } else { Some(work) };
                let done_fn: tg_completion_fn = if flags & 2 != 0 { None } else { Some(done) };
                // SAFETY: `work` and `done` treat the context as a number.
                let status = unsafe { tg_runner_post(runner, work_fn, id as *mut c_void, done_fn) };
                let exact = runner_check(known).or(work_fn.is_none().then_some(TG_ERR_NULL_POINTER));
                check("tg_runner_post", status, &allowed(&[TG_ERR_NULL_POINTER, TG_ERR_LIMIT]), exact);
                if status == TG_OK && done_fn.is_some() {
                    fuzz.expect_done.push(id);
                }
            }
            3 => {
                let (runner, known) = fuzz.handle(&mut input, true);
                let (cq, cq_known) = fuzz.handle(&mut input, false);
                let work_fn: tg_work_fn = if flags & 1 != 0 { None } else { Some(work) };
                // SAFETY: `work` treats the context as a number.
                let status = unsafe { tg_runner_post_to_queue(runner, work_fn, id as *mut c_void, cq, id) };
                let exact =
                    runner_check(known).or(work_fn.is_none().then_some(TG_ERR_NULL_POINTER)).or(queue_check(cq_known));
                check("tg_runner_post_to_queue", status, &allowed(&[TG_ERR_NULL_POINTER, TG_ERR_LIMIT]), exact);
                if status == TG_OK {
                    let queue = fuzz.queues.iter().position(|q| q.0 == cq).expect("a real queue");
                    fuzz.expect_entry.insert(id, queue);
                }
            }
            4 => {
                let (runner, known) = fuzz.handle(&mut input, true);
                let timeout = [0, 1, 5, TG_TIMEOUT_INFINITE, -2][usize::from(flags % 5)];
                let work_fn: tg_work_fn = if flags & 0x80 != 0 { None } else { Some(work) };
                let mut result: *mut c_void = std::ptr::null_mut();
                let out: *mut *mut c_void = if flags & 0x40 != 0 { std::ptr::null_mut() } else { &mut result };
                // SAFETY: `work` and `done` treat the context as a number; `out` is NULL or a live local.
                let status = unsafe { tg_runner_call(runner, work_fn, id as *mut c_void, timeout, Some(done), out) };
                let bad_pointer = work_fn.is_none() || out.is_null();
                let exact = runner_check(known)
                    .or(bad_pointer.then_some(TG_ERR_NULL_POINTER))
                    .or((timeout < -1).then_some(TG_ERR_INVALID_ARGUMENT));
                let extra = [TG_ERR_NULL_POINTER, TG_ERR_INVALID_ARGUMENT, TG_ERR_LIMIT, TG_ERR_TIMEOUT];
                check("tg_runner_call", status, &allowed(&extra), exact);
                match status {
                    TG_OK => {
                        assert_eq!(result as u64, id, "the call's result is its work's");
                        assert_eq!(
                            log(|log| log.ran.get(&id).map_or(0, Vec::len)),
                            1,
                            "the work ran before the call returned"
                        );
                    }
                    TG_ERR_TIMEOUT => fuzz.expect_done.push(id),
                    _ => assert!(result.is_null(), "out_result untouched on error"),
                }
            }
            5 => {
                let (runner, known) = fuzz.handle(&mut input, true);
                let status = tg_runner_stop(runner);
                check("tg_runner_stop", status, &allowed(&[]), Some(runner_check(known).unwrap_or(TG_OK)));
                if status == TG_OK {
                    fuzz.runners.iter_mut().filter(|r| r.0 == runner).for_each(|r| r.1 = false);
                }
            }
            6 => {
                let (runner, known) = fuzz.handle(&mut input, true);
                let mut thread = 0u64;
                let out: *mut u64 = if flags & 1 != 0 { std::ptr::null_mut() } else { &mut thread };
                // SAFETY: `out` is NULL or a live local.
                let status = unsafe { tg_runner_thread_id(runner, out) };
                let exact = runner_check(known).unwrap_or(if out.is_null() { TG_ERR_NULL_POINTER } else { TG_OK });
                check("tg_runner_thread_id", status, &allowed(&[TG_ERR_NULL_POINTER]), Some(exact));
                if status == TG_OK {
                    assert!(fuzz.runners.iter().any(|r| r.0 == runner && r.2 == thread));
                }
            }
            7 => {
                let (cq, known) = fuzz.handle(&mut input, false);
                let timeout = [0, 1, -2][usize::from(flags % 3)];
                let (mut tag, mut status_out, mut result) = (0u64, -100, std::ptr::null_mut::<c_void>());
                let null_out = flags & 0x80 != 0;
                let tag_ptr: *mut u64 = if null_out { std::ptr::null_mut() } else { &mut tag };
                // SAFETY: the out pointers are NULL or live locals.
                let status = unsafe { tg_cq_wait(cq, timeout, tag_ptr, &mut status_out, &mut result) };
                let exact = queue_check(known)
                    .or(null_out.then_some(TG_ERR_NULL_POINTER))
                    .or((timeout < -1).then_some(TG_ERR_INVALID_ARGUMENT));
                let extra = [TG_ERR_NULL_POINTER, TG_ERR_INVALID_ARGUMENT, TG_ERR_TIMEOUT];
                check("tg_cq_wait", status, &allowed(&extra), exact);
                if status == TG_OK {
                    fuzz.taken.entry(tag).or_default().push((status_out, result as u64));
                }
            }
            _ => {
                let (cq, known) = fuzz.handle(&mut input, false);
                let status = tg_cq_destroy(cq);
                check("tg_cq_destroy", status, &allowed(&[]), Some(queue_check(known).unwrap_or(TG_OK)));
                if status == TG_OK {
                    fuzz.queues.iter_mut().filter(|q| q.0 == cq).for_each(|q| q.1 = false);
                }
            }
        }
    }
    finish(fuzz);
}

/// Stops every runner, drains and destroys every queue, then checks that everything accepted
/// was reported exactly once.
fn finish(mut fuzz: Fuzz) {
    for (runner, live, _) in &fuzz.runners {
        let status = tg_runner_stop(*runner);
        assert_eq!(status, if *live { TG_OK } else { TG_ERR_SHUT_DOWN }, "final stop");
    }
    for (cq, live) in &fuzz.queues {
        if !*live {
            assert_eq!(tg_cq_destroy(*cq), TG_ERR_SHUT_DOWN);
            continue;
        }
        loop {
            let (mut tag, mut status, mut result) = (0u64, 0, std::ptr::null_mut::<c_void>());
            // SAFETY: the out pointers are live locals.
            match unsafe { tg_cq_wait(*cq, 0, &mut tag, &mut status, &mut result) } {
                TG_OK => fuzz.taken.entry(tag).or_default().push((status, result as u64)),
                TG_ERR_TIMEOUT => break,
                other => panic!("draining a live queue: {other}"),
            }
        }
        assert_eq!(tg_cq_destroy(*cq), TG_OK);
    }
    assert_eq!(tg_destroy(fuzz.object), TG_OK);

    let log = LOG.lock().unwrap().take().expect("the log");
    let runner_threads: Vec<u64> = fuzz.runners.iter().map(|r| r.2).collect();
    for (id, threads) in &log.ran {
        assert_eq!(threads.len(), 1, "work {id} ran {} times", threads.len());
        assert!(runner_threads.contains(&threads[0]), "work {id} ran off its runners");
    }
    let ran = |id: u64| log.ran.contains_key(&id);
    for &id in &fuzz.expect_done {
        let reports = log.done.get(&id).map_or(&[][..], Vec::as_slice);
        assert_eq!(reports.len(), 1, "job {id}: {} completions", reports.len());
        let (status, result, thread) = reports[0];
        assert!(runner_threads.contains(&thread), "job {id} reported off its runner");
        match status {
            TG_OK => assert!(ran(id) && result == id, "job {id}: OK with result {result}"),
            _ => assert!(!ran(id) && result == 0, "job {id}: status {status} but ran={}", ran(id)),
        }
    }
    assert_eq!(log.done.len(), fuzz.expect_done.len(), "completions only for accepted jobs");
    for &id in fuzz.expect_entry.keys() {
        let taken = fuzz.taken.get(&id).map_or(&[][..], Vec::as_slice);
        let discarded = log.discarded.get(&id).map_or(&[][..], Vec::as_slice);
        assert_eq!(taken.len() + discarded.len(), 1, "entry {id}: taken {taken:?}, discarded {discarded:?}");
        let (status, result) = taken.first().or(discarded.first()).copied().expect("one");
        match status {
            TG_OK => assert!(ran(id) && result == id, "entry {id}: OK with result {result}"),
            TG_ERR_SHUT_DOWN => assert!(!ran(id) && result == 0, "entry {id}: shut down but ran={}", ran(id)),
            other => panic!("entry {id}: status {other}"),
        }
    }
    let entries =
        fuzz.taken.values().map(Vec::len).sum::<usize>() + log.discarded.values().map(Vec::len).sum::<usize>();
    assert_eq!(entries, fuzz.expect_entry.len(), "entries only for accepted posts");
    for (object, (thread, destroyed)) in &log.objects {
        assert_eq!(destroyed, &vec![*thread], "object {object} of runner thread {thread} destroyed on {destroyed:?}");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));
