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
//! from one program to the next (see the end of [`run`]).
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
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
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

    fn ids(&self) -> Vec<u64> {
        (0..self.workers.len()).map(|slot| self.id(slot)).collect()
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

/// Runs the program `input` and checks every step against the model; panics on a difference.
pub fn run(input: &[u8]) -> Summary {
    quiet_intentional_panics();
    let _exclusive = EXCLUSIVE.lock().unwrap_or_else(|poison| poison.into_inner());
    worker::reset_program();
    let base = threadguard::stats();
    let mut model = Model::new(MAX_THREAD_ID.load(Ordering::Relaxed));
    // Taken out of the pool for the program and put back only if it passes: after a failure
    // the harness is dropped (its workers end) while the panic unwinds.
    let kept = POOL.lock().unwrap_or_else(|poison| poison.into_inner()).take();
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

    let exiting = input.len() % SLOTS;
    let mut input = decode::Input::new(input);
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        let step = decode::step(&mut input, &mut model, &harness.ids());
        steps += 1;
        match step {
            Step::Op { slot, op } => {
                let thread = harness.id(slot);
                model.transcript.push(format!("#{steps} thread {thread}: {op:?}"));
                worker::reset_step();
                harness.workers[slot].as_ref().expect("a worker").run(&harness.crew, op.clone());
                model.replay_op(thread, &op, worker::take_trace());
            }
            Step::Exit { slot } => exit(&mut harness, &mut model, slot, true, steps),
        }
        model.check_stats(&base, &threadguard::stats());
    }
    // The end: a cleanup on every worker, then a run_pending on every worker (for requests
    // that destructors run by the cleanups queued), replayed like any op; then one worker,
    // chosen by the input, exits and a new thread takes its slot. Tokens never adopted are
    // destroyed first, by slot 0 (a detached object belongs to no thread, so no cleanup or exit
    // destroys it); destructors run by any of these may detach more, hence the rounds.
    let mut exited = false;
    for round in 0.. {
        if round > 16 {
            model.fail("destructors keep detaching objects".to_owned());
        }
        for index in model.in_flight() {
            end_op(&mut harness, &mut model, 0, Op::TokenDestroy { api: Api::C, token: ops::TokenRef::Issued(index) });
            model.check_stats(&base, &threadguard::stats());
        }
        for op in [Op::Cleanup { api: Api::C }, Op::RunPending { api: Api::C }] {
            for slot in 0..SLOTS {
                end_op(&mut harness, &mut model, slot, op.clone());
            }
        }
        if !model.in_flight().is_empty() {
            continue;
        }
        if exited {
            break;
        }
        exit(&mut harness, &mut model, exiting, true, steps);
        exited = true;
        if model.in_flight().is_empty() {
            break;
        }
    }
    model.check_stats(&base, &threadguard::stats());
    if let Some((obj, _)) = model.objects.iter().find(|(_, object)| object.live) {
        model.fail(format!("object {obj} is still live after every worker's cleanup"));
    }
    *POOL.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(harness);
    Summary { steps, statuses: model.seen.clone(), detached: model.tokens.len(), adopted: model.adopted }
}

/// Runs `op` on the worker in `slot` after the program's last step and replays it.
fn end_op(harness: &mut Harness, model: &mut Model, slot: usize, op: Op) {
    let thread = harness.id(slot);
    model.transcript.push(format!("end: thread {thread}: {op:?}"));
    worker::reset_step();
    harness.workers[slot].as_ref().expect("a worker").run(&harness.crew, op.clone());
    model.replay_op(thread, &op, worker::take_trace());
}

/// Starts a worker for `slot` and tells the model (and later programs) its thread ID.
fn start_worker(crew: &mut Crew, model: &mut Model, slot: usize) -> Worker {
    let worker = Worker::start(crew, slot);
    MAX_THREAD_ID.fetch_max(worker.id, Ordering::Relaxed);
    model.thread_started(worker.id);
    worker
}

/// Ends the worker in `slot`, replays its exit, and starts a new one there if `replace`.
fn exit(harness: &mut Harness, model: &mut Model, slot: usize, replace: bool, step: usize) {
    let worker = harness.workers[slot].take().expect("a worker");
    let thread = worker.id;
    model.transcript.push(format!("#{step} thread {thread}: exit"));
    worker::reset_step();
    worker.exit(&mut harness.crew);
    model.replay_exit(thread, worker::take_trace());
    if replace {
        let worker = start_worker(&mut harness.crew, model, slot);
        model.transcript.push(format!("   slot {slot} is now thread {}", worker.id));
        harness.workers[slot] = Some(worker);
    }
}
