//! The README's `Counter` through the kit: the seed corpus, seeded random programs, and a copy
//! with a planted bug that the kit must find.
//!
//! To rerun one random program: `TG_KIT_SEED=1234 cargo test -p threadguard-fuzzkit --test counter_programs one_seed`.

mod counter;

use std::path::Path;
use std::time::Instant;
use threadguard::ffi::{
    TG_ERR_BUSY, TG_ERR_NULL_HANDLE, TG_ERR_OWNER_EXITED, TG_ERR_STALE, TG_ERR_WRONG_THREAD, TG_ERR_WRONG_TYPE, TG_OK,
};
use threadguard_fuzzkit::{Kit, random_program};

/// Seeded random programs per run.
const RANDOM_PROGRAMS: u64 = 2000;
/// The planted bug must show within this many random programs.
const BUG_BUDGET: u64 = 200;

#[test]
fn seed_corpus_and_regression_programs_pass() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = fuzz.join("corpus/kit_counter");
    let count = std::fs::read_dir(&corpus).map(|entries| entries.count()).unwrap_or(0);
    assert!(count > 1, "no seeds in {}", corpus.display());
    let summary = Kit::new(counter::spec()).run_dirs(&[&corpus, &fuzz.join("regressions/kit_counter")]);
    assert!(summary.steps > 0);
}

#[test]
fn seeded_random_programs_pass_and_reach_every_handle_check() {
    let kit = Kit::new(counter::spec());
    let start = Instant::now();
    let summary = kit.run_random(0..RANDOM_PROGRAMS);
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "{RANDOM_PROGRAMS} programs, {} steps, {} objects in {seconds:.2}s ({:.0} programs/s); statuses: {:?}",
        summary.steps,
        summary.objects,
        RANDOM_PROGRAMS as f64 / seconds,
        summary.statuses
    );
    for code in [
        TG_OK,
        TG_ERR_NULL_HANDLE,
        TG_ERR_WRONG_THREAD,
        TG_ERR_OWNER_EXITED,
        TG_ERR_STALE,
        TG_ERR_WRONG_TYPE,
        TG_ERR_BUSY,
    ] {
        assert!(summary.statuses.get(&code).copied().unwrap_or(0) > 0, "no program produced status {code}");
    }
    // Every re-entrant operation of the counter is refused as busy, except a deferred destroy.
    assert!(summary.reentrant > 0, "no re-entrant step ran its operation");
}

#[test]
fn calls_inside_a_borrow_are_busy_and_a_deferred_destroy_runs_as_it_ends() {
    let program = [
        0, 80, 0, 7, // thread 0: counter_new(7)
        0, 80, 0, 9, // thread 0: counter_new(9)
        0, 236, 0, 0, 5, // thread 0: borrow a counter { counter_add(same handle, 5) }: busy
        0, 237, 1, 0, 0, // thread 0: borrow a counter { counter_free(same handle) }: busy
        0, 238, 2, 1,
        0, // thread 0: borrow the other { counter_free_later(same handle) }: queued, runs as the borrow ends
        1, 236, 0, 0, 3, // thread 1 owns no counter: its borrow of thread 0's is refused, nothing runs inside
    ];
    let summary = Kit::new(counter::spec()).run(&program);
    assert_eq!((summary.steps, summary.objects, summary.reentrant), (6, 2, 3));
    assert_eq!(summary.statuses.get(&TG_ERR_BUSY), Some(&2), "{:?}", summary.statuses);
    assert_eq!(summary.statuses.get(&TG_ERR_WRONG_THREAD), Some(&1), "{:?}", summary.statuses);
}

#[test]
fn a_spec_without_a_borrow_gets_no_reentrant_steps() {
    let kit = Kit::new(counter::spec_without_borrow().0);
    let summary = kit.run_random(0..200);
    assert_eq!(summary.reentrant, 0);
    assert_eq!(summary.statuses.get(&TG_ERR_BUSY), None, "{:?}", summary.statuses);
    assert!(summary.statuses.get(&TG_ERR_WRONG_TYPE).copied().unwrap_or(0) > 0, "{:?}", summary.statuses);
}

#[test]
fn programs_run_the_same_way_every_time() {
    let kit = Kit::new(counter::spec());
    for seed in 0..20 {
        let program = random_program(seed);
        let first = kit.run(&program);
        let second = kit.run(&program);
        assert_eq!((first.steps, first.objects, &first.statuses), (second.steps, second.objects, &second.statuses));
    }
}

#[test]
fn a_getter_that_skips_the_guard_is_found() {
    let kit = Kit::new(counter::leaky_spec());
    let (seed, failure) = kit.find(0..BUG_BUDGET).expect("the kit finds the unguarded getter");
    eprintln!("found with seed {seed}:\n{failure}");
    assert!(failure.message.contains("leaky_counter_get"), "{failure}");
}

#[test]
fn an_add_that_goes_around_the_guard_when_busy_is_found() {
    let kit = Kit::new(counter::busy_bug_spec(counter::BusyBug::AddAroundTheGuard));
    let (seed, failure) = kit.find(0..BUG_BUDGET).expect("the kit finds the add that ignores busy");
    eprintln!("found with seed {seed}:\n{failure}");
    assert!(failure.message.contains("counter_add_anyway returned TG_OK"), "{failure}");
    assert!(failure.message.contains("inside a borrow"), "{failure}");
}

#[test]
fn a_free_that_turns_busy_into_success_is_found() {
    let kit = Kit::new(counter::busy_bug_spec(counter::BusyBug::FreeLaterWhenBusy));
    let (seed, failure) = kit.find(0..BUG_BUDGET).expect("the kit finds the free that ignores busy");
    eprintln!("found with seed {seed}:\n{failure}");
    assert!(failure.message.contains("counter_free_or_later returned TG_OK"), "{failure}");
    assert!(failure.message.contains("inside a borrow"), "{failure}");
}

#[test]
fn a_busy_refusal_with_an_effect_is_found() {
    let kit = Kit::new(counter::busy_bug_spec(counter::BusyBug::ForkWhenBusy));
    let (seed, failure) = kit.find(0..BUG_BUDGET).expect("the kit finds the refusal that creates a counter");
    eprintln!("found with seed {seed}:\n{failure}");
    assert!(failure.message.contains("counter_add_or_fork returned TG_ERR_BUSY inside a borrow"), "{failure}");
    assert!(failure.message.contains("1 objects created"), "{failure}");
}

#[test]
fn a_borrow_that_does_not_run_the_operation_is_reported() {
    let (mut spec, counter) = counter::spec_without_borrow();
    spec.borrow(counter, |h, _inside| {
        threadguard_fuzzkit::status(&threadguard::with::<counter::Counter, _>(h, |_| ()))
    });
    let (seed, failure) = Kit::new(spec).find(0..BUG_BUDGET).expect("the kit reports the borrow");
    eprintln!("found with seed {seed}:\n{failure}");
    assert!(failure.message.contains("returned TG_OK for handle"), "{failure}");
    assert!(failure.message.contains("without calling the operation inside it"), "{failure}");
}

/// Reruns one random program, chosen with `TG_KIT_SEED` (no-op without it).
#[test]
fn one_seed() {
    if let Ok(seed) = std::env::var("TG_KIT_SEED") {
        let summary = Kit::new(counter::spec()).run(&random_program(seed.parse().expect("TG_KIT_SEED is a number")));
        eprintln!("{summary:?}");
    }
}
