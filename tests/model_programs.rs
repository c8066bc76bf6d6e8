//! The misuse interpreter of the fuzz target `misuse`, run as an ordinary test: the committed
//! seeds and regression inputs and a few thousand seeded random programs, each checked step by step against the
//! reference model (every status code, callback, destructor run and counter).
//!
//! A failure prints the program's last steps and the trace of the step that differed. To rerun
//! one random program: `TG_MODEL_SEED=1234 cargo test --test model_programs one_seed`.

mod model;

use std::collections::BTreeMap;
use std::path::Path;

/// Seeded random programs per run (debug builds run them in a few seconds).
const RANDOM_PROGRAMS: u64 = 3000;

fn add(total: &mut BTreeMap<i32, u64>, summary: &model::Summary) {
    for (&code, &count) in &summary.statuses {
        *total.entry(code).or_default() += count;
    }
}

#[test]
fn seed_corpus_and_regression_programs_match_the_model() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in [fuzz.join("corpus/misuse"), fuzz.join("regressions/misuse")] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        files.extend(entries.map(|entry| entry.unwrap().path()));
    }
    files.sort();
    assert!(files.len() > 1, "no seeds in {}", fuzz.display());
    for file in files {
        let program = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| model::run(&program));
        if let Err(panic) = outcome {
            eprintln!("program {} failed", file.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn seeded_random_programs_match_the_model() {
    let mut statuses = BTreeMap::new();
    let mut steps = 0;
    let (mut detached, mut adopted) = (0, 0);
    for seed in 0..RANDOM_PROGRAMS {
        let program = model::random_program(seed);
        let summary = std::panic::catch_unwind(|| model::run(&program)).unwrap_or_else(|panic| {
            eprintln!("random program with seed {seed} failed; rerun: TG_MODEL_SEED={seed} cargo test --test model_programs one_seed");
            std::panic::resume_unwind(panic)
        });
        steps += summary.steps;
        (detached, adopted) = (detached + summary.detached, adopted + summary.adopted);
        add(&mut statuses, &summary);
    }
    eprintln!(
        "{RANDOM_PROGRAMS} programs, {steps} steps, {detached} detached, {adopted} adopted, statuses by code: {statuses:?}"
    );
    assert!(detached > 0 && adopted > 0, "no program moved an object: {detached} detached, {adopted} adopted");
    // The generator reaches every kind of outcome (-1: a panic propagated from `with`).
    for code in -1..=10 {
        assert!(statuses.get(&code).copied().unwrap_or(0) > 0, "no program produced status {code}: {statuses:?}");
    }
}

/// Reruns one random program, chosen with `TG_MODEL_SEED` (no-op without it).
#[test]
fn one_seed() {
    if let Ok(seed) = std::env::var("TG_MODEL_SEED") {
        let summary = model::run(&model::random_program(seed.parse().expect("TG_MODEL_SEED is a number")));
        eprintln!("{summary:?}");
    }
}

/// Found by the fuzzer (minimized): at thread exit, a destructor calls `tg_thread_cleanup` and
/// then registers a new object. Registrations stay refused (`TG_ERR_SHUT_DOWN`) until the
/// thread's outermost destroy-everything is over; a nested cleanup used to reopen them when it
/// ended. Same input as `fuzz/regressions/misuse/registration-after-nested-cleanup`.
#[test]
fn registration_after_a_nested_cleanup_is_still_refused() {
    model::run(&[0xff, 0xff, 0x7a, 0xff, 0xbf, 0xff, 0xff, 0x7a]);
}
