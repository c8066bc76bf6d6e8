//! Running a program over real worker threads, and checking each step against the model.
//!
//! A program has [`SLOTS`] worker threads and a driver (the thread that called
//! [`crate::Kit::check`]). They pass one [`Baton`]: the holder runs the next steps of the
//! program that belong to it, then passes the baton to the participant of the next step. A
//! worker runs operations; the driver starts workers, ends them (thread exit) and does the
//! final accounting. Whoever runs a step also checks it, so a step costs one hand-off at most.
//!
//! The model knows every object the program made (handle, kind, owner, live, destroy
//! requested) and every worker thread (alive or exited). Before a step it predicts the
//! statuses threadguard's checks allow for the handle (null, wrong thread, owner exited,
//! stale, wrong type); after it, it compares the status, threadguard's counters (objects
//! created and destroyed), which objects died (asked of threadguard on the owner) and the
//! witnesses' events (created, touched, dropped, and on which thread) with what the status
//! allows. A re-entrant step is the kit's borrow of one of the thread's objects (predicted like
//! a method) with an operation on the same handle inside it, checked on its own: refused as
//! busy (a deferred destroy: or queued, to run as the borrow ends), with no effect.

use crate::affinity;
use crate::baton::Baton;
use crate::program::{Action, ForgedOwner, KindSel, Life, MAX_STEPS, Step, Target, Who};
use crate::spec::{HANDLE_STATUSES, Kind, OpFn, Spec, mask};
use crate::witness::{self, Event};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use threadguard::ffi::{
    TG_ERR_BUSY, TG_ERR_NULL_HANDLE, TG_ERR_OWNER_EXITED, TG_ERR_PANIC, TG_ERR_STALE, TG_ERR_WRONG_THREAD,
    TG_ERR_WRONG_TYPE, TG_OK, tg_status,
};
use threadguard::{Handle, Stats};

/// Worker threads per program.
pub const SLOTS: usize = 2;
/// The driver's participant number.
const DRIVER: usize = SLOTS;
/// Owner IDs from here up are never issued (a process does not start 2^40 threads).
const NEVER_ISSUED: u64 = 1 << 40;

/// The kit's own object type, registered by `Decoy` steps: a handle of the wrong type for
/// every operation of the spec.
struct Decoy;

/// What a program did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Steps run.
    pub steps: usize,
    /// Objects created (the spec's and the kit's decoys).
    pub objects: u64,
    /// How often each status came back, by code (index 0 is `TG_OK`). A re-entrant step
    /// counts its operation's status when the kit's borrow ran it, the borrow's otherwise.
    pub statuses: BTreeMap<tg_status, u64>,
    /// Re-entrant steps whose operation ran inside the kit's borrow.
    pub reentrant: u64,
}

/// Why a program failed: what differed from what threadguard promises, and the program's last
/// steps.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The report, several lines.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// One object, as the model sees it.
#[derive(Clone, Copy, Debug)]
struct Obj {
    handle: Handle,
    /// `None`: a decoy.
    kind: Option<Kind>,
    owner: u64,
    live: bool,
    /// A destroy request was accepted for it and has not run yet.
    pending: bool,
    witness: Option<u64>,
}

/// One witness, as the model sees it.
#[derive(Clone, Copy, Debug)]
struct Wit {
    owner: u64,
    dropped: bool,
    /// The object it belongs to (`None` until its constructor returned).
    obj: Option<usize>,
}

/// Where a handle's owner stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerState {
    Live,
    Exited,
    NeverIssued,
    /// An ID the program did not issue to a worker: some other thread's, alive or not, or
    /// never issued.
    Unknown,
}

/// What the model expects of a step.
#[derive(Clone, Copy, Debug)]
struct Expect {
    /// The statuses the checks allow, as a bit set.
    allowed: u32,
    /// The live object of the calling thread, of the right kind, that the handle names (the
    /// checks pass for it).
    target: Option<usize>,
    /// For a deferred destroy: the object a `TG_OK` queues a request for.
    queues: Option<usize>,
}

/// One line of the transcript (formatted only for a failure report).
#[derive(Clone, Copy, Debug)]
struct Line {
    step: usize,
    thread: u64,
    action: Action,
    handle: Handle,
    status: Option<tg_status>,
    /// A re-entrant step: the status of the operation inside the kit's borrow, if it ran.
    nested: Option<tg_status>,
}

/// What the operation of a re-entrant step did inside the kit's borrow.
#[derive(Debug, Default)]
struct Nested {
    /// How often the spec's borrow called `inside`.
    runs: u32,
    /// The operation's status, or its panic.
    outcome: Option<Result<tg_status, String>>,
    /// Objects threadguard counted created and destroyed while it ran.
    created: u64,
    destroyed: u64,
    /// Witness events while it ran, and before it inside the borrow.
    events: Vec<Event>,
    outer: Vec<Event>,
}

struct Model {
    objects: Vec<Obj>,
    by_handle: HashMap<Handle, usize>,
    witnesses: HashMap<u64, Wit>,
    /// Worker threads by threadguard ID: alive or not.
    threads: HashMap<u64, bool>,
    /// The thread in each slot.
    slots: [u64; SLOTS],
    /// The counters after the last step (all threads quiescent).
    stats: Stats,
    transcript: Vec<Line>,
    summary: Summary,
}

struct Run {
    steps: Vec<Step>,
    pos: usize,
    model: Model,
    failure: Option<String>,
}

/// What the participants of one program share.
struct Shared {
    spec: Arc<Spec>,
    baton: Baton,
    run: Mutex<Run>,
    quit: [AtomicBool; SLOTS],
    ids: [AtomicU64; SLOTS],
    /// The longest a worker and the driver spin before parking: zero when every participant
    /// is on one CPU, where a spinning waiter would only keep the holder from running.
    patience: [Duration; 2],
    /// The CPU the workers are to be pinned to (`usize::MAX`: none).
    cpu: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn code_of<T>(result: &Result<T, threadguard::Error>) -> tg_status {
    match result {
        Ok(_) => TG_OK,
        Err(error) => error.status().code(),
    }
}

fn name(code: tg_status) -> &'static str {
    match threadguard::Status::from_code(code) {
        Some(status) => status.name(),
        None if code == TG_OK => "TG_OK",
        None => "an unknown status",
    }
}

fn names(mask: u32) -> String {
    let names: Vec<&str> = (0..32).filter(|code| mask & 1 << code != 0).map(name).collect();
    names.join(" or ")
}

/// Programs run one at a time: threadguard's counters are process-wide.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// The most a worker spins for the baton before it parks, when the participants are not all
/// on one CPU (the budget adapts below it).
const WORKER_PATIENCE: Duration = Duration::from_micros(100);
/// The most the driver spins: it is needed only for thread exits and at the end.
const DRIVER_PATIENCE: Duration = Duration::from_micros(5);

/// The worker threads of a kit, kept from one program to the next (a program ends with a
/// cleanup on each, which must destroy everything; its exits start new threads).
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<Option<JoinHandle<()>>>,
    /// The CPU the pool's threads are pinned to (`None`: not pinned).
    cpu: Option<usize>,
}

impl Pool {
    /// Starts the workers (on the driver's pinned CPU, if it is pinned).
    fn start(spec: &Arc<Spec>, cpu: Option<usize>) -> Pool {
        let stats = threadguard::stats();
        let model = Model {
            objects: Vec::new(),
            by_handle: HashMap::new(),
            witnesses: HashMap::new(),
            threads: HashMap::new(),
            slots: [0; SLOTS],
            stats,
            transcript: Vec::new(),
            summary: Summary::default(),
        };
        let shared = Arc::new(Shared {
            spec: Arc::clone(spec),
            baton: Baton::new(SLOTS + 1, DRIVER),
            run: Mutex::new(Run { steps: Vec::new(), pos: 0, model, failure: None }),
            quit: std::array::from_fn(|_| AtomicBool::new(false)),
            ids: std::array::from_fn(|_| AtomicU64::new(0)),
            patience: if cpu.is_some() { [Duration::ZERO; 2] } else { [WORKER_PATIENCE, DRIVER_PATIENCE] },
            cpu: AtomicUsize::new(cpu.unwrap_or(usize::MAX)),
        });
        shared.baton.join(DRIVER);
        let workers = (0..SLOTS).map(|slot| Some(start(&shared, slot))).collect();
        for slot in 0..SLOTS {
            started(&shared, slot);
        }
        Pool { shared, workers, cpu }
    }

    /// Ends every worker (their threads exit) without checking anything, when no program runs.
    pub(crate) fn stop(self) {
        let _exclusive = lock(&EXCLUSIVE);
        self.stop_locked();
    }

    fn stop_locked(mut self) {
        lock(&self.shared.run).failure.get_or_insert_with(|| "stopping".to_owned());
        for slot in 0..SLOTS {
            end(&self.shared, &mut self.workers, slot, false);
        }
    }
}

/// Runs `data` as a program of `spec` on the workers of `pool` (started if `None`; stopped
/// and set to `None` after a failure); the first difference is the failure.
pub(crate) fn check(spec: &Arc<Spec>, pool: &mut Option<Pool>, data: &[u8]) -> Result<Summary, Failure> {
    let _exclusive = lock(&EXCLUSIVE);
    let mut steps = crate::program::decode(spec, SLOTS, data);
    let program_steps = steps.len();
    // The program ends with a cleanup on each worker: everything must be destroyed.
    steps.extend((0..SLOTS).map(|slot| Step { slot, action: Action::Cleanup }));
    // One CPU for the driver and the workers (see `affinity`).
    let pinned = affinity::choose();
    if pool.as_ref().is_some_and(|pool| pool.cpu.is_some() != pinned.is_some()) {
        // Pinned before and not now (or the reverse): start workers that match.
        pool.take().expect("checked").stop_locked();
    }
    if let Some(pool) = pool.as_mut()
        && pool.cpu != pinned
    {
        // The workers move when they next take the baton.
        pool.cpu = pinned;
        pool.shared.cpu.store(pinned.unwrap_or(usize::MAX), Ordering::SeqCst);
    }
    run(spec, pool, pinned, steps, program_steps)
}

fn run(
    spec: &Arc<Spec>,
    pool: &mut Option<Pool>,
    cpu: Option<usize>,
    steps: Vec<Step>,
    program_steps: usize,
) -> Result<Summary, Failure> {
    let current = pool.get_or_insert_with(|| Pool::start(spec, cpu));
    let shared = Arc::clone(&current.shared);
    witness::begin_program();
    let base = threadguard::stats();
    {
        let mut run = lock(&shared.run);
        let model = &mut run.model;
        model.objects.clear();
        model.by_handle.clear();
        model.witnesses.clear();
        model.threads.retain(|_, alive| *alive);
        model.stats = base;
        model.transcript.clear();
        model.summary = Summary::default();
        run.steps = steps;
        run.pos = 0;
        run.failure = None;
    }

    loop {
        let next = {
            let mut run = lock(&shared.run);
            if run.failure.is_some() || run.pos >= run.steps.len() {
                break;
            }
            let step = run.steps[run.pos];
            if step.action == Action::Exit {
                run.pos += 1;
                None
            } else {
                Some(step)
            }
        };
        match next {
            Some(step) => {
                shared.baton.pass(step.slot);
                shared.baton.wait(DRIVER, shared.patience[1]);
            }
            None => {
                let slot = {
                    let run = lock(&shared.run);
                    run.steps[run.pos - 1].slot
                };
                end(&shared, &mut current.workers, slot, true);
            }
        }
    }
    let mut run = lock(&shared.run);
    if run.failure.is_none() {
        if let Err(what) = run.model.finish(base, threadguard::stats()) {
            run.failure = Some(what);
        }
        run.model.summary.steps = program_steps;
    }
    witness::end_program();
    match run.failure.take() {
        None => Ok(std::mem::take(&mut run.model.summary)),
        Some(what) => {
            let failure = Failure { message: run.model.report(&shared.spec, &what) };
            drop(run);
            if let Some(pool) = pool.take() {
                pool.stop_locked();
            }
            Err(failure)
        }
    }
}

/// Starts the worker of `slot`.
fn start(shared: &Arc<Shared>, slot: usize) -> JoinHandle<()> {
    shared.ids[slot].store(0, Ordering::SeqCst);
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(format!("fuzzkit-worker-{slot}"))
        .spawn(move || worker(&shared, slot))
        .expect("spawn a kit worker thread")
}

/// Waits until the new worker of `slot` knows its threadguard ID, and tells the model.
fn started(shared: &Shared, slot: usize) {
    let id = loop {
        let id = shared.ids[slot].load(Ordering::SeqCst);
        if id != 0 {
            break id;
        }
        std::thread::yield_now();
    };
    let mut run = lock(&shared.run);
    run.model.slots[slot] = id;
    run.model.threads.insert(id, true);
}

fn worker(shared: &Shared, slot: usize) {
    let id = threadguard::current_thread_id().expect("a new thread gets a threadguard ID");
    witness::set_worker(id);
    shared.baton.join(slot);
    shared.ids[slot].store(id, Ordering::SeqCst);
    loop {
        shared.baton.wait(slot, shared.patience[0]);
        if shared.quit[slot].load(Ordering::SeqCst) {
            // Returning ends the thread: threadguard's exit sweep runs in its thread-local
            // destructors, before the driver's join returns.
            return;
        }
        let cpu = shared.cpu.load(Ordering::SeqCst);
        if cpu != usize::MAX {
            affinity::pin(cpu); // the driver has moved
        }
        let next = {
            let mut run = lock(&shared.run);
            let outcome = catch_unwind(AssertUnwindSafe(|| run.advance(&shared.spec, slot)));
            outcome.unwrap_or_else(|payload| {
                run.failure = Some(format!("the kit panicked: {}", panic_text(&*payload)));
                DRIVER
            })
        };
        shared.baton.pass(next);
    }
}

/// Ends the worker of `slot` (its thread exits), checks its exit, and starts a new one there if
/// `replace`.
fn end(shared: &Arc<Shared>, workers: &mut [Option<JoinHandle<()>>], slot: usize, replace: bool) {
    let Some(handle) = workers[slot].take() else { return };
    shared.quit[slot].store(true, Ordering::SeqCst);
    shared.baton.pass(slot);
    let joined = handle.join();
    shared.baton.take(DRIVER);
    shared.quit[slot].store(false, Ordering::SeqCst);
    {
        let mut run = lock(&shared.run);
        let step = run.pos;
        if joined.is_err() && run.failure.is_none() {
            run.failure = Some(format!("worker {slot} panicked"));
        }
        if run.failure.is_none() {
            let thread = run.model.slots[slot];
            run.model.transcript.push(Line {
                step,
                thread,
                action: Action::Exit,
                handle: Handle::NULL,
                status: None,
                nested: None,
            });
            if let Err(what) = run.model.check_exit(thread, threadguard::stats()) {
                run.failure = Some(what);
            }
        }
        if !replace || run.failure.is_some() {
            return;
        }
    }
    workers[slot] = Some(start(shared, slot));
    started(shared, slot);
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

impl Run {
    /// Runs the steps that belong to worker `slot` from the current position on; returns the
    /// participant to pass the baton to.
    fn advance(&mut self, spec: &Spec, slot: usize) -> usize {
        loop {
            if self.failure.is_some() || self.pos >= self.steps.len() {
                return DRIVER;
            }
            let step = self.steps[self.pos];
            if step.action == Action::Exit {
                return DRIVER;
            }
            if step.slot != slot {
                return step.slot;
            }
            self.pos += 1;
            if let Err(what) = self.model.step(spec, self.pos, step) {
                self.failure = Some(what);
                return DRIVER;
            }
        }
    }
}

impl Model {
    fn owner_state(&self, owner: u64) -> OwnerState {
        match self.threads.get(&owner) {
            Some(true) => OwnerState::Live,
            Some(false) => OwnerState::Exited,
            None if owner == 0 || owner >= NEVER_ISSUED => OwnerState::NeverIssued,
            None => OwnerState::Unknown,
        }
    }

    /// The handle a target names for a step of thread `me` with an operation of `kind`.
    fn resolve(&self, me: u64, kind: Kind, target: Target) -> Handle {
        let pick = |who: Who, life: Life, sel: KindSel, index: u8| -> Handle {
            let keep = |obj: &Obj, who: Who, life: Life, sel: KindSel| {
                let who_ok = match who {
                    Who::Me => obj.owner == me,
                    Who::Other => obj.owner != me && self.threads.get(&obj.owner) == Some(&true),
                    Who::ExitedOwner => self.threads.get(&obj.owner) == Some(&false),
                    Who::Any => true,
                };
                let life_ok = match life {
                    Life::Live => obj.live,
                    Life::Dead => !obj.live,
                    Life::Any => true,
                };
                let kind_ok = match sel {
                    KindSel::Same => obj.kind == Some(kind),
                    KindSel::Other => obj.kind != Some(kind),
                    KindSel::Any => true,
                };
                who_ok && life_ok && kind_ok
            };
            // Relax the filter step by step until something matches.
            for (who, life, sel) in [
                (who, life, sel),
                (who, life, KindSel::Any),
                (Who::Any, life, KindSel::Any),
                (Who::Any, Life::Any, KindSel::Any),
            ] {
                let count = self.objects.iter().filter(|obj| keep(obj, who, life, sel)).count();
                if count > 0 {
                    let nth = usize::from(index) % count;
                    let obj = self.objects.iter().filter(|obj| keep(obj, who, life, sel)).nth(nth);
                    return obj.map_or(Handle::NULL, |obj| obj.handle);
                }
            }
            Handle::NULL
        };
        let any = |index: u8| pick(Who::Any, Life::Live, KindSel::Any, index);
        match target {
            Target::Pick { who, life, kind, index } => pick(who, life, kind, index),
            Target::Null => Handle::NULL,
            Target::Forged { owner, key } => {
                let owner = match owner {
                    ForgedOwner::Me => me,
                    ForgedOwner::Slot(slot) => self.slots[usize::from(slot) % SLOTS],
                    ForgedOwner::Exited => {
                        self.threads.iter().filter(|(_, alive)| !**alive).map(|(&id, _)| id).max().unwrap_or(me)
                    }
                    ForgedOwner::Zero => 0,
                    ForgedOwner::NeverIssued(owner) => owner,
                };
                Handle { owner, key }
            }
            Target::FlipKey { index, bit } => {
                let base = any(index);
                Handle { key: base.key ^ (1 << bit), ..base }
            }
            Target::FlipOwner { index, bit } => {
                let base = any(index);
                Handle { owner: base.owner ^ (1 << bit), ..base }
            }
        }
    }

    /// What threadguard's checks allow for `handle` used by thread `me` with an operation of
    /// `kind` (`deferred`: `destroy_later` semantics).
    fn predict(&self, me: u64, kind: Kind, handle: Handle, deferred: bool, ok_path: u32) -> Expect {
        let refuse = |codes: &[tg_status]| Expect { allowed: mask(codes), target: None, queues: None };
        if handle.is_null() {
            return refuse(&[TG_ERR_NULL_HANDLE]);
        }
        let named = self.by_handle.get(&handle).copied().filter(|&obj| self.objects[obj].live);
        if handle.owner != me {
            return match (self.owner_state(handle.owner), deferred) {
                (OwnerState::Live, false) => refuse(&[TG_ERR_WRONG_THREAD]),
                // Another thread cannot see the owner's table: the request is queued, and a
                // stale one is dropped when the owner runs it.
                (OwnerState::Live, true) => Expect { allowed: mask(&[TG_OK]), target: None, queues: named },
                (OwnerState::Exited, _) => refuse(&[TG_ERR_OWNER_EXITED]),
                (OwnerState::NeverIssued, _) => refuse(&[TG_ERR_STALE]),
                (OwnerState::Unknown, false) => refuse(&[TG_ERR_WRONG_THREAD, TG_ERR_OWNER_EXITED, TG_ERR_STALE]),
                (OwnerState::Unknown, true) => refuse(&[TG_OK, TG_ERR_OWNER_EXITED, TG_ERR_STALE]),
            };
        }
        match named {
            None => refuse(&[TG_ERR_STALE]),
            Some(obj) if self.objects[obj].kind == Some(kind) => {
                if deferred {
                    Expect { allowed: ok_path, target: Some(obj), queues: Some(obj) }
                } else {
                    Expect { allowed: ok_path, target: Some(obj), queues: None }
                }
            }
            // `tg_destroy_later` on the owner checks liveness, not the type; a library may
            // add the type check.
            Some(obj) if deferred => {
                Expect { allowed: mask(&[TG_OK, TG_ERR_WRONG_TYPE]), target: None, queues: Some(obj) }
            }
            Some(_) => refuse(&[TG_ERR_WRONG_TYPE]),
        }
    }

    /// Runs one step on the calling worker thread and checks it.
    fn step(&mut self, spec: &Spec, number: usize, step: Step) -> Result<(), String> {
        let me = self.slots[step.slot];
        let stray = witness::take_events();
        if !stray.is_empty() {
            return Err(format!("witness events outside any step (another thread?): {stray:?}"));
        }
        let mut handle = Handle::NULL;
        let mut expect = Expect { allowed: mask(&[TG_OK]), target: None, queues: None };
        let mut op_kind = None;
        let mut nested: Option<Nested> = None;
        let status = match step.action {
            Action::Decoy => {
                let result = threadguard::register(Decoy);
                handle = *result.as_ref().unwrap_or(&Handle::NULL);
                code_of(&result)
            }
            Action::RunPending => code_of(&threadguard::run_pending()),
            Action::Cleanup => code_of(&threadguard::thread_cleanup()),
            Action::Exit => unreachable!("the driver runs exits"),
            Action::Op { op, target, arg } | Action::Reentrant { op, target, arg } => {
                let spec_op = &spec.ops[op];
                op_kind = Some(spec_op.kind);
                let ok_path = spec_op.documented & !mask(&HANDLE_STATUSES);
                let run_op = |handle: Handle| match &spec_op.f {
                    OpFn::Call(f) => f(handle, arg),
                    OpFn::Destroy(f) | OpFn::DestroyLater(f) => f(handle),
                    OpFn::Create(_) => unreachable!("constructors take no handle"),
                };
                let outcome = match &spec_op.f {
                    _ if matches!(step.action, Action::Reentrant { .. }) => {
                        // First the kit's borrow of the target, a checked call that succeeds
                        // or not; then the operation, inside it, on the handle it holds.
                        handle = self.resolve(me, spec_op.kind, target);
                        expect = self.predict(me, spec_op.kind, handle, false, mask(&[TG_OK]));
                        let borrow =
                            spec.kinds[spec_op.kind.0].borrow.as_ref().expect("re-entrant steps need a borrow");
                        let record = nested.insert(Nested::default());
                        let handle = handle;
                        let mut inside = || {
                            record.runs += 1;
                            if record.runs > 1 {
                                return;
                            }
                            record.outer = witness::take_events();
                            let before = threadguard::stats();
                            record.outcome = Some(
                                catch_unwind(AssertUnwindSafe(|| run_op(handle)))
                                    .map_err(|payload| panic_text(&*payload)),
                            );
                            let after = threadguard::stats();
                            record.created = after.created - before.created;
                            record.destroyed = after.destroyed - before.destroyed;
                            record.events = witness::take_events();
                        };
                        catch_unwind(AssertUnwindSafe(|| borrow(handle, &mut inside)))
                    }
                    OpFn::Create(f) => {
                        expect.allowed = ok_path;
                        catch_unwind(AssertUnwindSafe(|| {
                            let (status, made) = f(arg);
                            handle = made;
                            status
                        }))
                    }
                    other => {
                        handle = self.resolve(me, spec_op.kind, target);
                        let deferred = matches!(other, OpFn::DestroyLater(_));
                        expect = self.predict(me, spec_op.kind, handle, deferred, ok_path);
                        catch_unwind(AssertUnwindSafe(|| run_op(handle)))
                    }
                };
                match outcome {
                    Ok(status) => status,
                    Err(payload) => {
                        self.transcript.push(Line {
                            step: number,
                            thread: me,
                            action: step.action,
                            handle,
                            status: None,
                            nested: None,
                        });
                        return Err(format!(
                            "{} panicked (a panic must not leave an operation): {}",
                            spec_op.name,
                            panic_text(&*payload)
                        ));
                    }
                }
            }
        };
        let inner = nested.as_ref().and_then(|nested| nested.outcome.clone()?.ok());
        self.transcript.push(Line {
            step: number,
            thread: me,
            action: step.action,
            handle,
            status: Some(status),
            nested: inner,
        });
        // A re-entrant step counts its operation's status when the borrow ran it.
        *self.summary.statuses.entry(inner.unwrap_or(status)).or_default() += 1;
        let after = threadguard::stats();
        let mut events = witness::take_events();
        if let (Some(nested), Action::Reentrant { op, .. }) = (&mut nested, step.action) {
            let op = &spec.ops[op];
            if expect.allowed & 1 << status.clamp(0, 31) != 0 {
                // (A borrow status the checks do not allow is reported below.)
                self.check_nested(op, spec.kinds[op.kind.0].name, me, handle, status, nested)?;
            }
            self.summary.reentrant += u64::from(nested.runs == 1);
            if nested.outcome == Some(Ok(TG_OK))
                && let Some(obj) = expect.target
            {
                // A deferred destroy accepted inside the borrow: its request runs as the
                // borrow ends.
                self.objects[obj].pending = true;
            }
            let mut outer = std::mem::take(&mut nested.outer);
            outer.append(&mut events);
            events = outer;
        }
        let result = self.check_step(spec, me, step.action, op_kind, handle, expect, status, after, &events);
        self.stats = after;
        result
    }

    /// Checks what the operation of a re-entrant step did inside the kit's borrow (`borrow`:
    /// the borrow's status): threadguard refuses it with `TG_ERR_BUSY` (or the operation with
    /// a refusal of its own), with no effect; a deferred destroy may be accepted instead.
    fn check_nested(
        &self,
        op: &crate::spec::OpSpec,
        kind: &str,
        me: u64,
        handle: Handle,
        borrow: tg_status,
        nested: &Nested,
    ) -> Result<(), String> {
        if nested.runs > 1 {
            return Err(format!(
                "the spec's borrow for {kind} called the operation inside it {} times (once, please)",
                nested.runs
            ));
        }
        let outcome = match (&nested.outcome, borrow == TG_OK) {
            (None, false) => return Ok(()),
            (None, true) => {
                return Err(format!(
                    "the spec's borrow for {kind} returned TG_OK for handle {handle:?} without calling the operation inside it"
                ));
            }
            (Some(_), false) => {
                return Err(format!(
                    "the spec's borrow for {kind} returned {} for handle {handle:?} after it called the operation inside it",
                    name(borrow)
                ));
            }
            (Some(outcome), true) => outcome,
        };
        let status = match outcome {
            Ok(status) => *status,
            Err(text) => {
                return Err(format!(
                    "{} panicked inside a borrow of its object (a panic must not leave an operation): {text}",
                    op.name
                ));
            }
        };
        // Inside a borrow every handle check passes but the last: the object is busy. A
        // deferred destroy is queued instead; an operation may refuse an argument first.
        let own_refusals = op.documented & !mask(&HANDLE_STATUSES) & !mask(&[TG_OK, TG_ERR_PANIC]);
        let mut allowed = mask(&[TG_ERR_BUSY]) | own_refusals;
        if matches!(op.f, OpFn::DestroyLater(_)) {
            allowed |= mask(&[TG_OK]);
        }
        if !(0..32).contains(&status) || allowed & 1 << status == 0 {
            return Err(format!(
                "{} returned {} ({status}) for handle {handle:?} on thread {me}, inside a borrow of that object; threadguard allows {}",
                op.name,
                name(status),
                names(allowed)
            ));
        }
        if op.documented & 1 << status == 0 {
            return Err(format!(
                "{} returned {} inside a borrow of its object, which it does not document (documented: {})",
                op.name,
                name(status),
                names(op.documented)
            ));
        }
        if nested.created != 0 || nested.destroyed != 0 {
            return Err(format!(
                "{} returned {} inside a borrow of {handle:?}, and threadguard counted {} objects created and {} destroyed meanwhile",
                op.name,
                name(status),
                nested.created,
                nested.destroyed
            ));
        }
        if let Some(event) = nested.events.first() {
            return Err(format!(
                "{} returned {} inside a borrow of {handle:?} and reached an object meanwhile ({event:?}): a refused call must change nothing",
                op.name,
                name(status)
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn check_step(
        &mut self,
        spec: &Spec,
        me: u64,
        action: Action,
        kind: Option<Kind>,
        handle: Handle,
        expect: Expect,
        status: tg_status,
        after: Stats,
        events: &[Event],
    ) -> Result<(), String> {
        let op = match action {
            Action::Op { op, .. } => Some(&spec.ops[op]),
            _ => None,
        };
        let what = match action {
            Action::Reentrant { op, .. } => format!("the kit's borrow for {}", spec.ops[op].name),
            _ => op.map_or_else(|| format!("{action:?}"), |op| op.name.to_owned()),
        };
        if expect.allowed & 1 << status.clamp(0, 31) == 0 || !(0..32).contains(&status) {
            return Err(format!(
                "{what} returned {} ({status}) for handle {handle:?} on thread {me}; threadguard's checks allow {}",
                name(status),
                names(expect.allowed)
            ));
        }
        if let Some(op) = op
            && op.documented & 1 << status == 0
        {
            return Err(format!(
                "{what} returned {} ({status}), which it does not document (documented: {})",
                name(status),
                names(op.documented)
            ));
        }
        let ok = status == TG_OK;
        let is = |class: fn(&OpFn) -> bool| op.is_some_and(|op| class(&op.f));
        let creates = ok && (action == Action::Decoy || is(|f| matches!(f, OpFn::Create(_))));
        let destroys =
            expect.target.is_some() && (ok || status == TG_ERR_PANIC) && is(|f| matches!(f, OpFn::Destroy(_)));
        // The operations that go through a successful register, borrow or destroy run the
        // requests queued for this thread when they return.
        let drains = ok && !is(|f| matches!(f, OpFn::DestroyLater(_)));
        let refused = !ok && !destroys;

        let created = after.created - self.stats.created;
        let destroyed = after.destroyed - self.stats.destroyed;
        if created != u64::from(creates) {
            return Err(format!(
                "{what} returned {} and threadguard counted {created} new objects (expected {})",
                name(status),
                u64::from(creates)
            ));
        }

        // Which of this thread's objects died, asked of threadguard on the owner.
        let mut deaths = Vec::new();
        if destroyed > 0 || destroys {
            for (index, obj) in self.objects.iter().enumerate() {
                if obj.live && obj.owner == me && threadguard::owner_of(obj.handle).is_err() {
                    deaths.push(index);
                }
            }
        }
        if deaths.len() as u64 != destroyed {
            return Err(format!(
                "{what} returned {}: threadguard counted {destroyed} objects destroyed, but {} of this thread's objects are gone ({})",
                name(status),
                deaths.len(),
                self.describe(&deaths)
            ));
        }
        for &obj in &deaths {
            let o = self.objects[obj];
            // Any successful call on the owner may run its queued requests (a library's
            // operation may borrow before it does what it was asked).
            let legit = (o.pending && ok)
                || action == Action::Cleanup
                || (action == Action::RunPending && o.pending)
                || (destroys && expect.target == Some(obj));
            if !legit || refused {
                return Err(format!(
                    "{what} returned {} and destroyed object #{obj} ({}), which it had no reason to destroy",
                    name(status),
                    self.describe(&[obj])
                ));
            }
        }
        if destroys && !deaths.contains(&expect.target.expect("a target")) {
            return Err(format!("{what} returned {} but object {handle:?} is still alive", name(status)));
        }
        for (index, obj) in self.objects.iter().enumerate() {
            let must_die = obj.owner == me
                && obj.live
                && (action == Action::Cleanup || (obj.pending && (drains || action == Action::RunPending)));
            if must_die && !deaths.contains(&index) {
                return Err(format!(
                    "{what} returned {} but object #{index} ({}) is still alive (its destroy request should have run)",
                    name(status),
                    self.describe(&[index])
                ));
            }
        }

        // The witnesses.
        let new_obj = creates.then_some(self.objects.len());
        let mut fresh = Vec::new();
        for event in events {
            match *event {
                Event::Created { id, thread } => {
                    if thread != me {
                        return Err(format!(
                            "{what}: a witness was created on thread {thread}, not on the calling thread {me}"
                        ));
                    }
                    self.witnesses.insert(id, Wit { owner: me, dropped: false, obj: None });
                    fresh.push(id);
                }
                Event::Touched { id, thread } => {
                    let wit = self.witness(id)?;
                    let obj = wit.obj.map_or_else(|| "a new object".to_owned(), |obj| self.describe(&[obj]));
                    if thread != wit.owner {
                        return Err(format!(
                            "{what}: object {obj} was touched on thread {thread}, not on its owner {}",
                            wit.owner
                        ));
                    }
                    if wit.dropped {
                        return Err(format!("{what}: object {obj} was touched after it was dropped"));
                    }
                    if refused {
                        return Err(format!(
                            "{what} returned {} and touched object {obj}: a refused call must change nothing",
                            name(status)
                        ));
                    }
                }
                Event::Dropped { id, thread } => {
                    let wit = self.witness(id)?;
                    let obj = wit.obj.map_or_else(|| "a new object".to_owned(), |obj| self.describe(&[obj]));
                    if wit.dropped {
                        return Err(format!("{what}: object {obj} was dropped a second time (on thread {thread})"));
                    }
                    if thread != wit.owner {
                        return Err(format!(
                            "{what}: object {obj} was dropped on thread {thread}, not on its owner {}",
                            wit.owner
                        ));
                    }
                    if let Some(obj) = wit.obj
                        && !deaths.contains(&obj)
                    {
                        return Err(format!(
                            "{what}: object {} was dropped, but threadguard did not destroy it",
                            self.describe(&[obj])
                        ));
                    }
                    if wit.obj.is_none() && !is(|f| matches!(f, OpFn::Create(_))) {
                        return Err(format!("{what}: a witness created outside a constructor was dropped"));
                    }
                    self.witnesses.get_mut(&id).expect("known").dropped = true;
                }
            }
        }
        for &obj in &deaths {
            if let Some(id) = self.objects[obj].witness
                && !self.witnesses[&id].dropped
            {
                return Err(format!(
                    "{what}: threadguard destroyed object {} but its witness was not dropped",
                    self.describe(&[obj])
                ));
            }
        }
        let kept: Vec<u64> = fresh.into_iter().filter(|id| !self.witnesses[id].dropped).collect();
        let witnessed = kind.is_some_and(|kind| spec.kinds[kind.0].witnessed) && new_obj.is_some();
        let witness = match (witnessed, kept.as_slice()) {
            (false, []) => None,
            (true, &[id]) => Some(id),
            (true, []) => return Err(format!("{what} created an object without a witness")),
            (_, kept) => {
                return Err(format!("{what} returned {} and left {} new witnesses alive", name(status), kept.len()));
            }
        };

        // Update the model.
        for &obj in &deaths {
            let o = &mut self.objects[obj];
            o.live = false;
            o.pending = false;
        }
        if let Some(index) = new_obj {
            if handle.is_null() || handle.owner != me || self.by_handle.contains_key(&handle) {
                return Err(format!(
                    "{what} returned TG_OK with handle {handle:?}: not a new handle owned by thread {me}"
                ));
            }
            self.objects.push(Obj {
                handle,
                kind: if action == Action::Decoy { None } else { kind },
                owner: me,
                live: true,
                pending: false,
                witness,
            });
            self.by_handle.insert(handle, index);
            if let Some(id) = witness {
                self.witnesses.get_mut(&id).expect("known").obj = Some(index);
            }
            self.summary.objects += 1;
        }
        if ok && let Some(obj) = expect.queues {
            self.objects[obj].pending = true;
        }
        Ok(())
    }

    fn witness(&self, id: u64) -> Result<Wit, String> {
        self.witnesses.get(&id).copied().ok_or_else(|| format!("witness {id} was not created in this program"))
    }

    /// Checks the exit of worker `thread` (joined): everything it owned was destroyed, on it,
    /// once.
    fn check_exit(&mut self, thread: u64, after: Stats) -> Result<(), String> {
        let events = witness::take_events();
        let owned: Vec<usize> = (0..self.objects.len())
            .filter(|&obj| self.objects[obj].live && self.objects[obj].owner == thread)
            .collect();
        let destroyed = after.destroyed - self.stats.destroyed;
        let created = after.created - self.stats.created;
        if created != 0 || destroyed != owned.len() as u64 {
            return Err(format!(
                "thread {thread} exited owning {} objects; threadguard counted {destroyed} destroyed and {created} created",
                owned.len()
            ));
        }
        let mut fresh = Vec::new();
        for event in events {
            match event {
                Event::Created { id, thread: on } => {
                    if on != thread {
                        return Err(format!("exit of thread {thread}: a witness was created on thread {on}"));
                    }
                    self.witnesses.insert(id, Wit { owner: on, dropped: false, obj: None });
                    fresh.push(id);
                }
                Event::Touched { id, thread: on } => {
                    let wit = self.witness(id)?;
                    if on != wit.owner || wit.dropped {
                        return Err(format!(
                            "exit of thread {thread}: a witness of thread {} was touched on thread {on} (dropped: {})",
                            wit.owner, wit.dropped
                        ));
                    }
                }
                Event::Dropped { id, thread: on } => {
                    let wit = self.witness(id)?;
                    if wit.dropped || on != wit.owner || on != thread {
                        return Err(format!(
                            "exit of thread {thread}: a witness of thread {} was dropped on thread {on} (dropped before: {})",
                            wit.owner, wit.dropped
                        ));
                    }
                    if let Some(obj) = wit.obj
                        && !owned.contains(&obj)
                    {
                        return Err(format!(
                            "exit of thread {thread}: object {} was dropped again",
                            self.describe(&[obj])
                        ));
                    }
                    self.witnesses.get_mut(&id).expect("known").dropped = true;
                }
            }
        }
        if let Some(id) = fresh.iter().find(|id| !self.witnesses[id].dropped) {
            return Err(format!("exit of thread {thread}: witness {id} was created and never dropped"));
        }
        for &obj in &owned {
            if let Some(id) = self.objects[obj].witness
                && !self.witnesses[&id].dropped
            {
                return Err(format!(
                    "exit of thread {thread}: object {} was destroyed without dropping its witness",
                    self.describe(&[obj])
                ));
            }
            self.objects[obj].live = false;
            self.objects[obj].pending = false;
        }
        self.threads.insert(thread, false);
        self.stats = after;
        Ok(())
    }

    /// After every worker exited: nothing is left, anywhere.
    fn finish(&self, base: Stats, after: Stats) -> Result<(), String> {
        if after.live != base.live
            || after.created - base.created != after.destroyed - base.destroyed
            || after.deferred_pending != base.deferred_pending
        {
            return Err(format!(
                "after every worker exited, threadguard counts {} live objects (before the program: {}), {} created and {} destroyed by the program, {} pending destroy requests",
                after.live,
                base.live,
                after.created - base.created,
                after.destroyed - base.destroyed,
                after.deferred_pending
            ));
        }
        if after.threads_live != base.threads_live {
            return Err(format!(
                "after every worker exited, threadguard counts {} live threads (before the program: {})",
                after.threads_live, base.threads_live
            ));
        }
        if let Some((id, wit)) = self.witnesses.iter().find(|(_, wit)| !wit.dropped) {
            return Err(format!("witness {id} (thread {}) was never dropped", wit.owner));
        }
        if let Some(obj) = self.objects.iter().position(|obj| obj.live) {
            return Err(format!("object {} is still alive after every thread exited", self.describe(&[obj])));
        }
        Ok(())
    }

    fn describe(&self, objs: &[usize]) -> String {
        let parts: Vec<String> = objs
            .iter()
            .map(|&obj| {
                let o = &self.objects[obj];
                format!("#{obj} {:?} owned by thread {}", o.handle, o.owner)
            })
            .collect();
        parts.join(", ")
    }

    /// The failure report: what differed and the program's last steps.
    fn report(&self, spec: &Spec, what: &str) -> String {
        let mut report = format!("threadguard-fuzzkit: {what}\n--- program (last steps) ---\n");
        let start = self.transcript.len().saturating_sub(40);
        for line in &self.transcript[start..] {
            let action = match line.action {
                Action::Op { op, arg, .. } => {
                    let op = &spec.ops[op];
                    format!("{}({:?}, arg {arg}) [{}]", op.name, line.handle, spec.kinds[op.kind.0].name)
                }
                Action::Reentrant { op, arg, .. } => {
                    let op = &spec.ops[op];
                    let inside = line.nested.map_or("not run", name);
                    format!(
                        "borrow {:?} [{}] {{ {}(same handle, arg {arg}) = {inside} }}",
                        line.handle, spec.kinds[op.kind.0].name, op.name
                    )
                }
                Action::Decoy => format!("register a decoy -> {:?}", line.handle),
                other => format!("{other:?}"),
            };
            let status = line.status.map_or_else(|| "-".to_owned(), |status| name(status).to_owned());
            let _ = writeln!(report, "#{} thread {}: {action} = {status}", line.step, line.thread);
        }
        let _ = writeln!(report, "(at most {MAX_STEPS} steps per program; {SLOTS} worker threads)");
        report
    }
}
