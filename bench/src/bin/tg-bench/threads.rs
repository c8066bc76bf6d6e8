//! `tg-bench threads OUT.tsv`: the measurements that compare several threads at once, in
//! interleaved rounds.
//!
//! On a shared machine (a small VM, say) speed comes and goes in spells of seconds: a
//! neighbour on the same physical core, the host scheduling the VM's vCPUs. Measured one after
//! the other, as criterion runs its benchmarks, a 1-thread row and a 2-thread row can land in
//! different spells and show a "scaling" problem that is only the machine. Here each round
//! measures every variant back to back, and the figure reported is the median over rounds; the
//! ratios are medians of the per-round ratios, so both sides of each ratio saw the same machine.
//!
//! - Scaling: the checked borrow on 1 and 2 threads at once, each thread on its own objects
//!   (CPU time per borrow per thread), with two controls: a `thread_local!` slotmap (nothing
//!   shared: the machine's own 2-thread factor) and `ConcurrentHandleMap` with one shared map
//!   (a shared lock: what contention looks like, so a reader can see the measurement detects it).
//! - Runner (with the `runner` feature): `Runner::call` against a plain mutex/condvar round trip,
//!   both with the other thread pinned to the caller's CPU and to another CPU (where the
//!   scheduler puts the two threads changes a round trip several times over, so each variant
//!   gets the same placement); and posted tasks per second with 1, 2 and 8 producers. Wall time.
//!   Then what an idle runner costs: the CPU time its thread uses over a second of no work,
//!   starting 1 ms after a burst of back-to-back calls (which leaves its wait spinning longest).

use ffi_support::ConcurrentHandleMap;
use std::fmt::Write as _;
use std::sync::Arc;
use threadguard_bench::{Crew, FfiConcurrentHandleMap, ThreadLocalSlotMap, Threadguard, median};

/// Rounds of every measurement; the median is reported.
const ROUNDS: usize = 15;
/// Borrows per thread per round (about 20-40 ms of CPU time at the speeds measured here).
const BORROWS: u64 = 2_000_000;

pub(crate) fn measure(out: &str) -> Result<(), String> {
    let mut tsv = String::new();
    scaling(&mut tsv);
    runner(&mut tsv);
    std::fs::write(out, tsv).map_err(|error| format!("{out}: {error}"))
}

/// Prints and records one figure.
fn record(tsv: &mut String, key: &str, value: f64) {
    writeln!(tsv, "{key}\t{value:.3}").unwrap();
    eprintln!("{key}: {value:.3}");
}

fn scaling(tsv: &mut String) {
    let map = Arc::new(ConcurrentHandleMap::new());
    let shared = move || FfiConcurrentHandleMap::in_map(Arc::clone(&map));
    let crews: [(&str, [Crew; 2]); 3] = [
        ("threadguard_with", [Crew::start(1, Threadguard::new), Crew::start(2, Threadguard::new)]),
        (
            "thread_local_slotmap",
            [Crew::start(1, ThreadLocalSlotMap::default), Crew::start(2, ThreadLocalSlotMap::default)],
        ),
        ("ffi_concurrent_handle_map_get", [Crew::start(1, shared.clone()), Crew::start(2, shared)]),
    ];
    let mut times = vec![[Vec::new(), Vec::new(), Vec::new()]; crews.len()];
    for _ in 0..ROUNDS {
        for ((_, [one, two]), [ones, twos, ratios]) in crews.iter().zip(&mut times) {
            let t1 = one.run(BORROWS).as_nanos() as f64 / BORROWS as f64;
            let t2 = two.run(BORROWS).as_nanos() as f64 / BORROWS as f64;
            ones.push(t1);
            twos.push(t2);
            ratios.push(t2 / t1);
        }
    }
    for ((name, _), [ones, twos, ratios]) in crews.iter().zip(&mut times) {
        record(tsv, &format!("scaling_{name}_1"), median(ones));
        record(tsv, &format!("scaling_{name}_2"), median(twos));
        record(tsv, &format!("scaling_{name}_ratio"), median(ratios));
    }
}

#[cfg(feature = "runner")]
fn runner(tsv: &mut String) {
    use std::time::{Duration, Instant};
    use threadguard_bench::{PingPong, pin_to_cpu, runner};
    /// Round trips per variant per round.
    const TRIPS: u32 = 500;
    /// Tasks posted per producer count per round.
    const TASKS: u64 = 100_000;
    const PRODUCERS: [usize; 3] = [1, 2, 8];
    /// Seconds of idle runner measured (the median is reported).
    const IDLE_ROUNDS: usize = 3;

    // Round trips from a caller on CPU 0 to a thread on the same CPU, and on another one.
    let placements = [("same_cpu", 0), ("other_cpu", 1)];
    let peers: Vec<_> = placements.iter().map(|&(_, cpu)| (PingPong::start(cpu), runner::start(cpu))).collect();
    let mut trips = vec![[Vec::new(), Vec::new(), Vec::new()]; placements.len()];
    // The throughput runner is not pinned; neither are its producers.
    let free = runner::start_unpinned();
    let mut rates = vec![Vec::new(); PRODUCERS.len()];
    for _ in 0..ROUNDS {
        let pin = pin_to_cpu(0);
        for ((ping, runner), [plain, call, ratios]) in peers.iter().zip(&mut trips) {
            let start = Instant::now();
            for _ in 0..TRIPS {
                ping.round_trip();
            }
            let p = start.elapsed().as_nanos() as f64 / f64::from(TRIPS);
            let start = Instant::now();
            for _ in 0..TRIPS {
                runner::round_trip(runner);
            }
            let c = start.elapsed().as_nanos() as f64 / f64::from(TRIPS);
            plain.push(p);
            call.push(c);
            ratios.push(c / p);
        }
        drop(pin);
        for (producers, rate) in PRODUCERS.iter().zip(&mut rates) {
            rate.push(TASKS as f64 / runner::post_tasks(&free, *producers, TASKS).as_secs_f64());
        }
    }
    for ((placement, _), [plain, call, ratios]) in placements.iter().zip(&mut trips) {
        record(tsv, &format!("runner_{placement}_mutex_condvar_round_trip_ns"), median(plain));
        record(tsv, &format!("runner_{placement}_call_round_trip_ns"), median(call));
        record(tsv, &format!("runner_{placement}_call_ratio"), median(ratios));
    }
    for (producers, rate) in PRODUCERS.iter().zip(&mut rates) {
        record(tsv, &format!("runner_post_{producers}_tasks_per_s"), median(rate));
    }
    // Idle cost, of the runner on the other CPU (the placement where waits spin).
    let pin = pin_to_cpu(0);
    let mut idle: Vec<f64> = (0..IDLE_ROUNDS)
        .map(|_| 100.0 * runner::idle_cpu_share(&peers[1].1, TRIPS, Duration::from_millis(1), Duration::from_secs(1)))
        .collect();
    drop(pin);
    record(tsv, "runner_idle_cpu_percent", median(&mut idle));
    for (ping, runner) in peers {
        drop(ping);
        runner.stop().expect("stop a runner");
    }
    free.stop().expect("stop the runner");
}

#[cfg(not(feature = "runner"))]
fn runner(_: &mut String) {
    eprintln!("runner rows skipped: this build of threadguard does not export `runner` (see bench/bench.mk)");
}
