//! Misuse programs over real OS threads, checked against a reference model.
//!
//! A program is any byte string. [`run`] decodes it into steps over [`SLOTS`] worker
//! threads (register, borrow with nested calls, destroy now or later, run pending, cleanup,
//! owner queries, detach, adopt and token destroy, thread exit; handles real, stale, foreign, from exited owners, bit-flipped
//! or forged; callbacks and destructors that call back in or panic), runs each step on its
//! worker through the C ABI, the Rust API or functions written by `export_thread_affine!`,
//! and replays it against the model in `oracle`. Workers run one step at a time, so a program
//! always executes the same way. Any difference panics with the program and the trace. The
//! workers are a `threadguard_fuzzkit::Crew` (the misuse kit's hand-offs, on one CPU), kept
//! from one program to the next (see [`Program::advance`]), and pass the turn to each other
//! directly (a `Crew::relay`; see [`run`]).
//!
//! Shared by the cargo test `tests/model_programs.rs` and the fuzz target `fuzz/fuzz_targets/misuse.rs`.

#![allow(dead_code)]

mod decode;
mod ops;
mod oracle;
mod worker;

#[allow(unused_imports)]
pub use decode::random_program;
pub use ops::INTENTIONAL_PANIC;

use ops::{Api, Op, Step};
use oracle::Model;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use threadguard_fuzzkit::Crew;
use worker::Worker;

/// Worker threads per program.
pub const SLOTS: usize = 3;
/// Top-level steps per program at most (the rest of the input is ignored).
pub const MAX_STEPS: usize = 256;

/// The counters are process-wide, so programs run one at a time.
static EXCLUSIVE: Mutex<()> = Mutex::new(());
/// The largest thread ID seen in this process.
static MAX_THREAD_ID: AtomicU64 = AtomicU64::new(0);

/// What a program did: steps run and how often each status came back (by code).
#[derive(Debug, Default)]
pub struct Summary {
    pub steps: usize,
    pub statuses: BTreeMap<i32, u64>,
    /// Tokens detaches issued, and how many of them the program adopted.
    pub detached: usize,
    pub adopted: usize,
}

/// Silences the panics the harness causes on purpose and passes every other one on to the
/// hook that was installed before (the default one, or the fuzzer's, which aborts).
pub fn quiet_intentional_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INTENTIONAL_PANIC) {
                previous(info);
            }
        }));
    });
}

/// The workers, kept from one program to the next (see the end of [`run`]); each program's
/// exit steps end threads, and new ones take their slots.
static POOL: Mutex<Option<Harness>> = Mutex::new(None);

/// The workers of a program, and the crew that runs them.
struct Harness {
    crew: Crew,
    workers: Vec<Option<Worker>>,
}

impl Harness {
    fn id(&self, slot: usize) -> u64 {
        self.workers[slot].as_ref().expect("a worker in every slot").id
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // On the normal path every worker has exited already. After a mismatch, end them and
        // wait: their exits must be over before the next program takes the lock (they change
        // the counters and the trace).
        for worker in self.workers.iter_mut().filter_map(Option::take) {
            worker.end_quietly(&mut self.crew);
        }
    }
}

/// What the worker that runs the next step, or the driver, does next.
enum Next {
    /// Run `op` on the worker in `slot` and replay it; `end`: after the program's last step;
    /// `stats`: compare the counters afterwards.
    Op { slot: usize, op: Op, end: bool, stats: bool },
    /// The worker in `slot` exits (the driver ends it) and a new thread takes its slot.
    Exit { slot: usize, end: bool },
    /// The new worker in `slot` learns its thread ID (its first step; `end` as for `Exit`).
    Started { slot: usize, end: bool },
    /// The program is over: the driver makes the final checks.
    Done,
}

/// A program in progress: whoever runs its next step (a worker, or the driver for an exit)
/// holds it, runs and replays the step, and decodes the one after.
struct Program {
    model: Model,
    input: decode::Input,
    /// Top-level steps decoded so far.
    steps: usize,
    /// The threadguard ID of the worker in each slot.
    ids: [u64; SLOTS],
    base: threadguard::Stats,
    next: Next,
    /// The slot whose worker exits at the end (chosen by the input's length).
    exiting: usize,
    /// After the last step: the rounds of end ops started, whether the end's exit ran, and
    /// the ops left in this round (with whether the counters are compared after each).
    end: Option<End>,
}

struct End {
    rounds: u32,
    exited: bool,
    queue: VecDeque<(usize, Op, bool)>,
}

impl Program {
    /// Decides `next`: the next step of the input, or of the end.
    ///
    /// The end: a cleanup on every worker, then a run_pending on every worker (for requests
    /// that destructors run by the cleanups queued), replayed like any op; then one worker,
    /// chosen by the input, exits and a new thread takes its slot. Tokens never adopted are
    /// destroyed first, by slot 0 (a detached object belongs to no thread, so no cleanup or
    /// exit destroys it); destructors run by any of these may detach more, hence the rounds.
    fn advance(&mut self) {
        if self.end.is_none() {
            if !self.input.is_empty() && self.steps < MAX_STEPS {
                let step = decode::step(&mut self.input, &mut self.model, &self.ids);
                self.steps += 1;
                self.next = match step {
                    Step::Op { slot, op } => Next::Op { slot, op, end: false, stats: true },
                    Step::Exit { slot } => Next::Exit { slot, end: false },
                };
                return;
            }
            self.end = Some(End { rounds: 0, exited: false, queue: VecDeque::new() });
            self.start_round();
        }
        loop {
            let end = self.end.as_mut().expect("at the end");
            if let Some((slot, op, stats)) = end.queue.pop_front() {
                self.next = Next::Op { slot, op, end: true, stats };
                return;
            }
            if !self.model.in_flight().is_empty() {
                self.start_round();
                continue;
            }
            self.next = if end.exited { Next::Done } else { Next::Exit { slot: self.exiting, end: true } };
            return;
        }
    }

    fn start_round(&mut self) {
        let end = self.end.as_mut().expect("at the end");
        if end.rounds > 16 {
            self.model.fail("destructors keep detaching objects".to_owned());
        }
        end.rounds += 1;
        for index in self.model.in_flight() {
            let op = Op::TokenDestroy { api: Api::C, token: ops::TokenRef::Issued(index) };
            end.queue.push_back((0, op, true));
        }
        for op in [Op::Cleanup { api: Api::C }, Op::RunPending { api: Api::C }] {
            for slot in 0..SLOTS {
                end.queue.push_back((slot, op.clone(), false));
            }
        }
    }

    /// Runs the steps that belong to the calling worker, in `slot`; the slot of the next
    /// step's worker, or `None` when the driver is next.
    fn leg(&mut self, slot: usize) -> Option<usize> {
        loop {
            match std::mem::replace(&mut self.next, Next::Done) {
                Next::Op { slot: at, op, end, stats } => {
                    assert_eq!(at, slot, "the op runs on its own worker");
                    let thread = self.ids[slot];
                    self.model.transcript.push(if end {
                        oracle::Line::End { thread, op: op.clone() }
                    } else {
                        oracle::Line::Op { step: self.steps, thread, op: op.clone() }
                    });
                    worker::reset_step();
                    worker::exec(&op, ops::Site::Op);
                    self.model.replay_op(thread, &op, worker::take_trace());
                    if stats {
                        self.model.check_stats(&self.base, &threadguard::stats());
                    }
                }
                Next::Started { slot: at, end } => {
                    assert_eq!(at, slot, "a new worker learns its own ID");
                    let id = worker::learn_id();
                    MAX_THREAD_ID.fetch_max(id, Ordering::Relaxed);
                    self.model.thread_started(id);
                    self.model.transcript.push(oracle::Line::Slot { slot, thread: id });
                    self.ids[slot] = id;
                    if end {
                        self.end.as_mut().expect("at the end").exited = true;
                    } else {
                        self.model.check_stats(&self.base, &threadguard::stats());
                    }
                }
                _ => unreachable!("a relay leg runs ops and thread starts only"),
            }
            self.advance();
            match self.next {
                Next::Op { slot: next, .. } if next == slot => {}
                Next::Op { slot: next, .. } => return Some(next),
                _ => return None,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Runs the program `input` and checks every step against the model; panics on a difference.
///
/// The worker that runs a step also replays it, checks the counters and decodes the next
/// step, then passes the turn directly to the next step's worker (a `Crew` relay): a step
/// costs one thread switch at most, none when the same worker runs the next one. The driver
/// runs only the exits (it ends a worker and starts the next, whose first step learns its
/// thread ID) and the final checks.
pub fn run(input: &[u8]) -> Summary {
    quiet_intentional_panics();
    let _exclusive = lock(&EXCLUSIVE);
    worker::reset_program();
    let base = threadguard::stats();
    let mut model = Model::new(MAX_THREAD_ID.load(Ordering::Relaxed));
    // Taken out of the pool for the program and put back only if it passes: after a failure
    // the harness is dropped (its workers end) while the panic unwinds.
    let kept = lock(&POOL).take();
    let mut harness = match kept {
        Some(mut harness) => {
            harness.crew.drive();
            for slot in 0..SLOTS {
                model.thread_carried_over(harness.id(slot));
            }
            harness
        }
        None => {
            let mut harness = Harness { crew: Crew::new(SLOTS), workers: Vec::new() };
            for slot in 0..SLOTS {
                let worker = start_worker(&mut harness.crew, &mut model, slot);
                harness.workers.push(Some(worker));
            }
            harness
        }
    };

    let program = Arc::new(Mutex::new(Program {
        model,
        input: decode::Input::new(input),
        steps: 0,
        ids: std::array::from_fn(|slot| harness.id(slot)),
        base,
        next: Next::Done,
        exiting: input.len() % SLOTS,
        end: None,
    }));
    lock(&program).advance();
    loop {
        let mut guard = lock(&program);
        match guard.next {
            Next::Op { slot, .. } | Next::Started { slot, .. } => {
                drop(guard);
                let program = Arc::clone(&program);
                harness.crew.relay(slot, move |slot| lock(&program).leg(slot));
            }
            Next::Exit { slot, end } => {
                let p = &mut *guard;
                exit(&mut harness, &mut p.model, slot, p.ids[slot], p.steps);
                p.next = Next::Started { slot, end };
            }
            Next::Done => break,
        }
    }
    let mut guard = lock(&program);
    let Program { model, steps, ids, .. } = &mut *guard;
    for (worker, &id) in harness.workers.iter_mut().zip(ids.iter()) {
        worker.as_mut().expect("a worker in every slot").id = id;
    }
    model.check_stats(&base, &threadguard::stats());
    if let Some((obj, _)) = model.objects.iter().find(|(_, object)| object.live) {
        model.fail(format!("object {obj} is still live after every worker's cleanup"));
    }
    *lock(&POOL) = Some(harness);
    Summary { steps: *steps, statuses: model.seen.clone(), detached: model.tokens.len(), adopted: model.adopted }
}

/// Starts a worker for `slot` and tells the model (and later programs) its thread ID.
fn start_worker(crew: &mut Crew, model: &mut Model, slot: usize) -> Worker {
    let worker = Worker::start(crew, slot);
    MAX_THREAD_ID.fetch_max(worker.id, Ordering::Relaxed);
    model.thread_started(worker.id);
    worker
}

/// Ends the worker in `slot`, thread `thread`, replays its exit, and starts a new thread there
/// (whose first step learns its ID: `Next::Started`).
fn exit(harness: &mut Harness, model: &mut Model, slot: usize, thread: u64, step: usize) {
    let worker = harness.workers[slot].take().expect("a worker");
    model.transcript.push(oracle::Line::Exit { step, thread });
    worker::reset_step();
    worker.exit(&mut harness.crew);
    model.replay_exit(thread, worker::take_trace());
    harness.workers[slot] = Some(Worker::spawn(&mut harness.crew, slot));
}
