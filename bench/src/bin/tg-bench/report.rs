//! `tg-bench report DIR`: reads every result `make bench` left under DIR and prints one
//! markdown report: the machine, the tables of ratios, and which targets are met.
//!
//! Inputs (all optional; a missing one shows as "not run"):
//! - `criterion/<group>/<bench>/new/estimates.json`: the Rust benches (median, ns/iteration);
//! - `scale.tsv`: `tg-bench scale` (thread exit, memory per object);
//! - `threads.tsv`: `tg-bench threads` (1 against 2 threads, the runner);
//! - `c.tsv`: the C harness, one line per operation and run (`name  median  min  max`, ns/op);
//! - `callgrind/<lang>.<name>.<iters>.out`: callgrind profiles of one measured loop each;
//! - `go.txt`: raw `go test -bench` output (the median of its runs is used, and the range of
//!   the runs where the report gives one);
//! - `load-start`, `load-end`: `/proc/loadavg` when the measurements began and ended.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Every figure found, by key: `borrow.<bench>` (ns), `c.<op>` (ns), `go.<Benchmark>` (ns),
/// `go.<Benchmark>.<unit>` (a metric the benchmark reports besides ns/op), `scale.<key>`,
/// `threads.<key>`, `ir.<lang>.<name>` (instructions/op).
struct Results {
    dir: PathBuf,
    values: BTreeMap<String, f64>,
    /// The lowest and highest of the runs, for the `go.` keys.
    ranges: BTreeMap<String, (f64, f64)>,
    /// Every run in order, for the `go.` keys: the n-th of each is from the n-th round.
    runs: BTreeMap<String, Vec<f64>>,
}

impl Results {
    fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }

    /// The median over the rounds of a / b, each ratio of two figures from the same round;
    /// None unless both have the same number of runs.
    fn round_ratio(&self, a: &str, b: &str) -> Option<f64> {
        let (a, b) = (self.runs.get(a)?, self.runs.get(b)?);
        if a.len() != b.len() || a.is_empty() {
            return None;
        }
        let mut ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
        Some(threadguard_bench::median(&mut ratios))
    }

    /// The median of the runs and their range: `1.10x (1.09x to 1.12x over 5 runs)`.
    fn ratio_with_range(&self, key: &str) -> String {
        match (self.get(key), self.ranges.get(key)) {
            (Some(median), Some(&(low, high))) => format!(
                "{} ({} to {} over {} runs)",
                show_ratio(Some(median)),
                show_ratio(Some(low)),
                show_ratio(Some(high)),
                self.get(&format!("{key}.runs")).unwrap_or(0.0)
            ),
            _ => "-".into(),
        }
    }

    /// As ratio_with_range, for times.
    fn ns_with_range(&self, key: &str) -> String {
        match (self.get(key), self.ranges.get(key)) {
            (Some(median), Some(&(low, high))) => {
                format!("{} ({} to {})", ns(Some(median)), ns(Some(low)), ns(Some(high)))
            }
            _ => "not run".into(),
        }
    }

    fn load(dir: &Path) -> Results {
        let mut values = BTreeMap::new();
        let mut ranges = BTreeMap::new();
        let mut go_runs_by_key = BTreeMap::new();
        for group in ["borrow"] {
            let Ok(entries) = std::fs::read_dir(dir.join("criterion").join(group)) else { continue };
            for entry in entries.flatten() {
                let estimates = entry.path().join("new").join("estimates.json");
                if let Some(median) = criterion_median(&estimates) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    values.insert(format!("{group}.{name}"), median);
                }
            }
        }
        // A key may appear once per run (the C harness runs several times): take the median.
        for (file, prefix) in [("scale.tsv", "scale"), ("threads.tsv", "threads"), ("c.tsv", "c")] {
            let Ok(text) = std::fs::read_to_string(dir.join(file)) else { continue };
            let mut runs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for line in text.lines() {
                let mut fields = line.split('\t');
                if let (Some(key), Some(Ok(value))) = (fields.next(), fields.next().map(str::parse::<f64>)) {
                    runs.entry(format!("{prefix}.{key}")).or_default().push(value);
                }
            }
            for (key, mut values_of_key) in runs {
                values.insert(key, threadguard_bench::median(&mut values_of_key));
            }
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("callgrind")) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if let Some((key, per_op)) = callgrind_per_op(&entry.path(), &file) {
                    values.insert(key, per_op);
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("go.txt")) {
            for (key, mut runs) in go_runs(&text) {
                let key = format!("go.{key}");
                go_runs_by_key.insert(key.clone(), runs.clone());
                let median = threadguard_bench::median(&mut runs); // sorts them
                ranges.insert(key.clone(), (runs[0], runs[runs.len() - 1]));
                values.insert(format!("{key}.runs"), runs.len() as f64);
                values.insert(key, median);
            }
        }
        Results { dir: dir.to_owned(), values, ranges, runs: go_runs_by_key }
    }
}

fn criterion_median(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

/// `c.tg_with.100000.out` -> (`ir.c.tg_with`, instructions per iteration, to a tenth). The
/// total also counts the measured function's entry and exit, once (a few dozen instructions,
/// under a thousandth per iteration): rounding to a tenth leaves them out, so a loop of 59
/// instructions per iteration reads 59.0, not 59.0003.
fn callgrind_per_op(path: &Path, file: &str) -> Option<(String, f64)> {
    let stem = file.strip_suffix(".out")?;
    let (rest, iters) = stem.rsplit_once('.')?;
    let (lang, name) = rest.split_once('.')?;
    let iters: f64 = iters.parse().ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    let total: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("totals:").or_else(|| line.strip_prefix("summary:")))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((format!("ir.{lang}.{name}"), (total / iters * 10.0).round() / 10.0))
}

/// `BenchmarkCgoEmpty-2   1000000   95.2 ns/op   1.10 checked/unchecked` lines, grouped by
/// name without the `-N` suffix: ns/op under the name, any other metric under `name.unit`.
fn go_runs(text: &str) -> BTreeMap<String, Vec<f64>> {
    let mut runs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = fields.first().and_then(|name| name.strip_prefix("Benchmark")) else { continue };
        let name = match name.rsplit_once('-') {
            Some((base, procs)) if procs.chars().all(|c| c.is_ascii_digit()) => base,
            _ => name,
        };
        // Name, iterations, then value-unit pairs.
        for pair in fields.get(2..).unwrap_or_default().chunks_exact(2) {
            let Ok(value) = pair[0].parse::<f64>() else { continue };
            let key = if pair[1] == "ns/op" { name.to_owned() } else { format!("{name}.{}", pair[1]) };
            runs.entry(key).or_default().push(value);
        }
    }
    runs
}

fn ns(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.2} µs", v / 1e3),
        Some(v) => format!("{v:.2} ns"),
        None => "not run".into(),
    }
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => show_ratio(Some(n / d)),
        _ => "-".into(),
    }
}

fn ir(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn first_line(path: &Path) -> Option<String> {
    Some(std::fs::read_to_string(path).ok()?.lines().next()?.trim().to_owned())
}

fn load_average(loadavg: Option<String>) -> String {
    loadavg
        .map(|line| line.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A target's verdict.
fn verdict(outcome: Option<bool>) -> &'static str {
    match outcome {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

pub(crate) fn print(dir: &str) -> Result<(), String> {
    let r = Results::load(Path::new(dir));
    if r.values.is_empty() {
        return Err(format!("no results under {dir}: run `make bench`"));
    }
    let mut out = String::new();
    machine(&mut out, &r);
    rust(&mut out, &r);
    c(&mut out, &r);
    scaling(&mut out, &r);
    go(&mut out, &r);
    runner(&mut out, &r);
    targets(&mut out, &r);
    print!("{out}");
    let path = r.dir.join("report.md");
    std::fs::write(&path, &out).map_err(|error| format!("{}: {error}", path.display()))
}

fn machine(out: &mut String, r: &Results) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let start = load_average(first_line(&r.dir.join("load-start")));
    // The load when the measurements ended (`make bench` records it), else now.
    let end = load_average(first_line(&r.dir.join("load-end")).or_else(|| first_line(Path::new("/proc/loadavg"))));
    writeln!(out, "## Machine\n").unwrap();
    writeln!(out, "- CPUs (nproc): {cpus}; CPU model: {}", cpu_model()).unwrap();
    writeln!(out, "- load average (1, 5, 15 min): {start} at the start, {end} at the end").unwrap();
    writeln!(out, "- command: `make bench`\n").unwrap();
}

const RUST_ROWS: &[(&str, &str)] = &[
    ("plain_mut", "plain `&mut` access (the floor)"),
    ("threadguard_with", "`threadguard::with` (owner, liveness, type, busy checks)"),
    ("fragile_get", "`fragile::Fragile::get`"),
    ("send_wrapper_deref", "`send_wrapper::SendWrapper` deref"),
    ("ffi_handle_map_get", "`ffi_support::HandleMap::get`"),
    ("ffi_concurrent_handle_map_get", "`ffi_support::ConcurrentHandleMap::get`"),
    ("thread_local_slotmap", "`slotmap` in a `thread_local!`, no checks"),
];

fn rust(out: &mut String, r: &Results) {
    writeln!(out, "## Rust: one borrow of an object the calling thread owns\n").unwrap();
    writeln!(out, "| way of access | time/op | vs floor | vs threadguard | instructions/op |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    let floor = r.get("borrow.plain_mut");
    let tg = r.get("borrow.threadguard_with");
    for (key, label) in RUST_ROWS {
        let value = r.get(&format!("borrow.{key}"));
        let ir = ir(r.get(&format!("ir.rust.{key}")));
        writeln!(out, "| {label} | {} | {} | {} | {ir} |", ns(value), ratio(value, floor), ratio(value, tg)).unwrap();
    }
    writeln!(out).unwrap();
}

const C_ROWS: &[(&str, &str)] = &[
    ("plain_call", "plain indirect call of the callback (the floor)"),
    ("tg_with", "`tg_with` on a live object, owner thread"),
    ("tg_with_wrong_thread", "`tg_with` refused: `TG_ERR_WRONG_THREAD`"),
    ("tg_with_owner_exited", "`tg_with` refused: `TG_ERR_OWNER_EXITED`"),
    ("tg_with_stale", "`tg_with` refused: `TG_ERR_STALE`"),
    ("tg_register_destroy", "`tg_register` + `tg_destroy` pair"),
    ("tg_register_destroy_sites", "`TG_REGISTER` + `TG_DESTROY` pair, sites debug mode on"),
];

fn c(out: &mut String, r: &Results) {
    writeln!(out, "## C: one call through the C ABI\n").unwrap();
    writeln!(out, "| call | time/op | over the floor | vs `tg_with` | instructions/op |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    let floor = r.get("c.plain_call");
    let with = r.get("c.tg_with");
    for (key, label) in C_ROWS {
        let value = r.get(&format!("c.{key}"));
        let over = match (value, floor) {
            (Some(v), Some(f)) => format!("+{}", ns(Some(v - f))),
            _ => "-".into(),
        };
        let ir = ir(r.get(&format!("ir.c.{key}")));
        writeln!(out, "| {label} | {} | {over} | {} | {ir} |", ns(value), ratio(value, with)).unwrap();
    }
    writeln!(out).unwrap();
}

fn scaling(out: &mut String, r: &Results) {
    writeln!(out, "## Scaling, thread exit, memory\n").unwrap();
    writeln!(out, "| each thread borrowing its own object | 1 thread | 2 threads at once | 2 / 1 |").unwrap();
    writeln!(out, "|---|---:|---:|---:|").unwrap();
    for (key, label) in [
        ("threadguard_with", "`threadguard::with` (CPU time per borrow per thread)"),
        ("thread_local_slotmap", "control, nothing shared: `slotmap` in a `thread_local!`"),
        ("ffi_concurrent_handle_map_get", "control, one shared lock: `ConcurrentHandleMap::get`, one map"),
    ] {
        let one = r.get(&format!("threads.scaling_{key}_1"));
        let two = r.get(&format!("threads.scaling_{key}_2"));
        let both = show_ratio(r.get(&format!("threads.scaling_{key}_ratio")));
        writeln!(out, "| {label} | {} | {} | {both} |", ns(one), ns(two)).unwrap();
    }
    writeln!(out).unwrap();
    writeln!(out, "| measurement | value |").unwrap();
    writeln!(out, "|---|---:|").unwrap();
    let ms = |key: &str| r.get(key).map_or_else(|| "not run".into(), |v| format!("{v:.1} ms"));
    let bytes = |key: &str| r.get(key).map_or_else(|| "not run".into(), |v| format!("{v:.1} B"));
    writeln!(out, "| thread exit with 1 million Rust objects to destroy (median of 5) | {} |", ms("scale.exit_1m_ms"))
        .unwrap();
    writeln!(out, "| thread exit with 10 million C objects (no destructor) | {} |", ms("scale.exit_10m_c_objects_ms"))
        .unwrap();
    for millions in [1, 10] {
        writeln!(
            out,
            "| bookkeeping per live object at {millions} million: from the allocator / resident | {} / {} |",
            bytes(&format!("scale.bytes_per_object_{millions}m")),
            bytes(&format!("scale.resident_per_object_{millions}m"))
        )
        .unwrap();
    }
    writeln!(out).unwrap();
}

const GO_ROWS: &[(&str, &str)] = &[
    ("CgoEmpty", "empty cgo call (`void f(void)`)"),
    ("CgoUnchecked", "unchecked cgo call of `Object.Call`'s shape, running the same C borrow function (the floor)"),
    ("PinnedCall", "checked call on the pinned owner goroutine, staying in C (`Object.Call`: one cgo call)"),
    ("PinnedWith", "checked call on the pinned owner goroutine with a Go callback (`Object.With`)"),
    ("ThreadDo", "checked call from another goroutine, routed to a `Thread`"),
    ("ThreadDoParallel", "as above, from `GOMAXPROCS` goroutines at once"),
    ("RunnerCall", "checked call from another goroutine, routed to a `Runner` (`Runner.Call`)"),
    ("RunnerCallCancellable", "as above, with a cancellable context"),
    ("RunnerCallParallel", "as above, from `GOMAXPROCS` goroutines at once"),
    ("RunnerPost", "checked call posted to a `Runner` without waiting (`Runner.Post`: throughput)"),
    ("LockedChannel", "hand-written alternative: locked goroutine fed by a channel, no checks"),
];

/// Go benchmarks with a table of their own instead of a row.
const GO_OWN_TABLE: &[&str] = &["CallFloor", "ThreadDoRoundTrip", "RunnerCallRoundTrip", "ThreadIdleCPU"];

fn go(out: &mut String, r: &Results) {
    writeln!(out, "## Go (median of the runs of `go test -bench`)\n").unwrap();
    let found: Vec<&str> = r
        .values
        .keys()
        .filter_map(|key| key.strip_prefix("go."))
        .filter(|name| !name.contains('.') && !GO_OWN_TABLE.contains(name))
        .collect();
    if found.is_empty() {
        writeln!(out, "not run (see the `make bench` output)\n").unwrap();
        return;
    }
    writeln!(out, "| call | time/op | thread CPU time/op | vs unchecked cgo | vs channel-fed goroutine |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    // The known benchmarks in a fixed order, then any others go/bench_test.go has.
    let known = GO_ROWS.iter().filter(|(key, _)| found.contains(key)).map(|(key, label)| (*key, (*label).to_owned()));
    let others = found
        .iter()
        .filter(|name| !GO_ROWS.iter().any(|(key, _)| key == *name))
        .map(|name| (*name, format!("`Benchmark{name}`")));
    for (key, label) in known.chain(others) {
        let key = format!("go.{key}");
        let cpu = r.get(&format!("{key}.cpu-ns/op")).map_or_else(|| "-".into(), |v| ns(Some(v)));
        let raw = show_ratio(r.round_ratio(&key, "go.CgoUnchecked"));
        let channel = show_ratio(r.round_ratio(&key, "go.LockedChannel"));
        writeln!(out, "| {label} | {} | {cpu} | {raw} | {channel} |", ns(r.get(&key))).unwrap();
    }
    writeln!(out).unwrap();
    writeln!(
        out,
        "Ratios are medians over the rounds of the ratios within a round. The rows run one after \
         the other, a second each, so two rows can land in different spells of a shared machine's \
         speed; the thread CPU time (of the rows locked to their thread) leaves out the time other \
         processes take from the thread, not those spells. The next table compares the first three \
         calls interleaved microseconds apart, which the spells do not separate.\n"
    )
    .unwrap();
    call_floor(out, r);
    round_trips(out, r);
}

/// `BenchmarkThreadDoRoundTrip`, `BenchmarkRunnerCallRoundTrip` and `BenchmarkThreadIdleCPU`:
/// the median of each run's back-to-back calls (a mean would be mostly the few calls that found
/// the other side asleep), and the CPU an idle Thread costs.
fn round_trips(out: &mut String, r: &Results) {
    if r.get("go.ThreadDoRoundTrip.median-ns").is_none() && r.get("go.ThreadIdleCPU.idle-cpu-%").is_none() {
        return;
    }
    writeln!(
        out,
        "Round trips from another goroutine, back to back (each run's median call; the median of the \
         runs and their range), and an idle `Thread`:\n"
    )
    .unwrap();
    writeln!(out, "| measurement | median call | mean call |").unwrap();
    writeln!(out, "|---|---:|---:|").unwrap();
    for (key, label) in
        [("ThreadDoRoundTrip", "`Thread.Do` round trip"), ("RunnerCallRoundTrip", "`Runner.Call` round trip")]
    {
        let key = format!("go.{key}");
        writeln!(out, "| {label} | {} | {} |", r.ns_with_range(&format!("{key}.median-ns")), ns(r.get(&key))).unwrap();
    }
    let idle = r.get("go.ThreadIdleCPU.idle-cpu-%");
    writeln!(
        out,
        "\nIdle `Thread` (1 s without work, from 1 ms after its last task; the whole process's CPU time): {}.\n",
        idle.map_or_else(|| "not run".into(), |v| format!("{v:.3} % of one CPU"))
    )
    .unwrap();
}

/// `BenchmarkCallFloor`: the three calls of the Go floor, interleaved in timed blocks.
fn call_floor(out: &mut String, r: &Results) {
    if r.get("go.CallFloor.checked/unchecked").is_none() {
        return;
    }
    writeln!(
        out,
        "`Object.Call` against its floors, interleaved (`BenchmarkCallFloor`: blocks of each call in turn, \
         medians of the blocks in each run; the median of the runs, and their range):\n"
    )
    .unwrap();
    writeln!(out, "| call | time/call |").unwrap();
    writeln!(out, "|---|---:|").unwrap();
    for (unit, label) in [
        ("empty-ns", "empty cgo call"),
        ("unchecked-ns", "unchecked cgo call of `Object.Call`'s shape"),
        ("checked-ns", "`Object.Call` on the pinned owner goroutine"),
        ("unchecked-cmem-ns", "unchecked cgo call of `Object.Call`'s shape, context in C memory"),
        ("checked-cmem-ns", "`Object.Call` on the pinned owner goroutine, context in C memory"),
    ] {
        writeln!(out, "| {label} | {} |", r.ns_with_range(&format!("go.CallFloor.{unit}"))).unwrap();
    }
    writeln!(out).unwrap();
    writeln!(out, "| ratio | value |").unwrap();
    writeln!(out, "|---|---:|").unwrap();
    for unit in ["checked/unchecked", "unchecked/empty", "checked/unchecked-cmem"] {
        writeln!(out, "| {unit} | {} |", r.ratio_with_range(&format!("go.CallFloor.{unit}"))).unwrap();
    }
    writeln!(out).unwrap();
}

fn runner(out: &mut String, r: &Results) {
    writeln!(out, "## Runner (wall time, median of interleaved rounds)\n").unwrap();
    writeln!(out, "| round trip from a caller on CPU 0 | other thread on CPU 0 | on CPU 1 |").unwrap();
    writeln!(out, "|---|---:|---:|").unwrap();
    let get = |placement: &str, key: &str| r.get(&format!("threads.runner_{placement}_{key}"));
    let row = |label: &str, key: &str, show: &dyn Fn(Option<f64>) -> String| {
        format!("| {label} | {} | {} |", show(get("same_cpu", key)), show(get("other_cpu", key)))
    };
    writeln!(out, "{}", row("plain mutex/condvar round trip (the floor)", "mutex_condvar_round_trip_ns", &ns)).unwrap();
    writeln!(out, "{}", row("`Runner::call` round trip (post and wait)", "call_round_trip_ns", &ns)).unwrap();
    writeln!(out, "{}", row("`Runner::call` / floor", "call_ratio", &show_ratio)).unwrap();
    let c_row = |label: &str, key: &str| {
        format!(
            "| {label} | {} | {} |",
            ns(r.get(&format!("c.{key}_same_cpu"))),
            ns(r.get(&format!("c.{key}_other_cpu")))
        )
    };
    writeln!(out, "{}", c_row("C `tg_runner_call` round trip (post and wait)", "runner_call")).unwrap();
    writeln!(out).unwrap();
    let idle = r.get("threads.runner_idle_cpu_percent");
    writeln!(
        out,
        "Idle runner (1 s without work, from 1 ms after a burst of calls): {} of one CPU.\n",
        idle.map_or_else(|| "not run".into(), |v| format!("{v:.3} %"))
    )
    .unwrap();
    writeln!(out, "| posted tasks per second (`Runner::post`, empty jobs) | value |").unwrap();
    writeln!(out, "|---|---:|").unwrap();
    for producers in [1, 2, 8] {
        let rate = r.get(&format!("threads.runner_post_{producers}_tasks_per_s"));
        let rate = rate.map_or_else(|| "not run".into(), |rate| format!("{:.2} M tasks/s", rate / 1e6));
        writeln!(out, "| {producers} producer(s) | {rate} |").unwrap();
    }
    writeln!(out).unwrap();
}

fn targets(out: &mut String, r: &Results) {
    let ratio_of = |a: &str, b: &str| Some(r.get(a)? / r.get(b)?);
    let mut rows: Vec<(&str, String, Option<bool>)> = Vec::new();
    let floor = ratio_of("borrow.threadguard_with", "borrow.plain_mut");
    rows.push(("Rust checked borrow at most 2x the plain `&mut` floor", show_ratio(floor), floor.map(|v| v <= 2.0)));
    let over = r.get("c.tg_with").zip(r.get("c.plain_call")).map(|(with, plain)| with - plain);
    rows.push((
        "C `tg_with` under 5 ns over a plain indirect call",
        over.map_or_else(|| "-".into(), |v| format!("+{v:.2} ns")),
        over.map(|v| v < 5.0),
    ));
    let fragile = ratio_of("borrow.fragile_get", "borrow.threadguard_with");
    let send = ratio_of("borrow.send_wrapper_deref", "borrow.threadguard_with");
    rows.push((
        "faster than `fragile` and `send_wrapper`",
        format!("they take {} and {} of threadguard's time", show_ratio(fragile), show_ratio(send)),
        fragile.zip(send).map(|(f, s)| f > 1.0 && s > 1.0),
    ));
    let chm = ratio_of("borrow.ffi_concurrent_handle_map_get", "borrow.threadguard_with");
    rows.push(("at least 5x faster than `ConcurrentHandleMap::get`", show_ratio(chm), chm.map(|v| v >= 5.0)));
    let rust_trip = r.get("threads.runner_other_cpu_call_round_trip_ns");
    let c_trip = r.get("c.runner_call_other_cpu");
    rows.push((
        "back-to-back round trip to a runner on another CPU at most 2 µs (Rust / C)",
        format!("{} / {}", ns(rust_trip), ns(c_trip)),
        rust_trip.zip(c_trip).map(|(rust, c)| rust <= 2000.0 && c <= 2000.0),
    ));
    let same = [r.get("threads.runner_same_cpu_call_round_trip_ns"), r.get("c.runner_call_same_cpu")];
    rows.push((
        "round trip to a runner on the caller's CPU at most 6.8 µs (Rust / C)",
        format!("{} / {}", ns(same[0]), ns(same[1])),
        same[0].zip(same[1]).map(|(rust, c)| rust <= 6800.0 && c <= 6800.0),
    ));
    let idle = r.get("threads.runner_idle_cpu_percent");
    rows.push((
        "an idle runner (1 ms after its last call) costs at most 1% of a CPU",
        idle.map_or_else(|| "-".into(), |v| format!("{v:.3} %")),
        idle.map(|v| v <= 1.0),
    ));
    let scale = r.get("threads.scaling_threadguard_with_ratio");
    rows.push(("2-thread per-thread cost within 10% of 1-thread", show_ratio(scale), scale.map(|v| v <= 1.10)));
    // Object.Call against an unchecked cgo call of the same shape: from the interleaved
    // blocks of BenchmarkCallFloor if it ran, else from the separate benchmarks; with the
    // context in Go memory (checked by cgo in both calls), and in C memory.
    let go_target = "Go `Object.Call` at most 1.15x an unchecked cgo call of the same arguments (context in Go memory)";
    if let Some(floor) = r.get("go.CallFloor.checked/unchecked") {
        rows.push((go_target, r.ratio_with_range("go.CallFloor.checked/unchecked"), Some(floor <= 1.15)));
    } else {
        let go = r.round_ratio("go.PinnedCall", "go.CgoUnchecked");
        rows.push((go_target, show_ratio(go), go.map(|v| v <= 1.15)));
    }
    let cmem = r.get("go.CallFloor.checked/unchecked-cmem");
    rows.push((
        "Go `Object.Call` at most 1.15x an unchecked cgo call of the same arguments (context in C memory)",
        r.ratio_with_range("go.CallFloor.checked/unchecked-cmem"),
        cmem.map(|v| v <= 1.15),
    ));
    let thread_do = r.round_ratio("go.ThreadDo", "go.LockedChannel");
    rows.push((
        "Go `Thread.Do` faster than the channel-fed goroutine",
        show_ratio(thread_do),
        thread_do.map(|v| v < 1.0),
    ));
    for (key, target) in [
        ("ThreadDoRoundTrip", "Go `Thread.Do` back-to-back round trip, median call, at most 3 µs"),
        ("RunnerCallRoundTrip", "Go `Runner.Call` back-to-back round trip, median call, at most 3 µs"),
    ] {
        let key = format!("go.{key}.median-ns");
        rows.push((target, r.ns_with_range(&key), r.get(&key).map(|v| v <= 3000.0)));
    }
    let idle_thread = r.get("go.ThreadIdleCPU.idle-cpu-%");
    rows.push((
        "an idle Go `Thread` (1 ms after its last task) costs at most 1% of a CPU",
        idle_thread.map_or_else(|| "-".into(), |v| format!("{v:.3} %")),
        idle_thread.map(|v| v <= 1.0),
    ));
    // Instruction counts (callgrind): exact, so these verdicts do not move between runs.
    let ir_over = r.get("ir.c.tg_with").zip(r.get("ir.c.plain_call")).map(|(with, plain)| with - plain);
    rows.push((
        "C `tg_with` at most 50 instructions over a plain indirect call",
        ir_over.map_or_else(|| "-".into(), |v| format!("+{v:.0} instructions")),
        ir_over.map(|v| v <= 50.0),
    ));
    let ir_with = r.get("ir.rust.threadguard_with");
    rows.push((
        "`threadguard::with` at most 50 instructions per call",
        ir_with.map_or_else(|| "-".into(), |v| format!("{v:.0} instructions")),
        ir_with.map(|v| v <= 50.0),
    ));
    let refused =
        ["ir.c.tg_with_stale", "ir.c.tg_with_wrong_thread", "ir.c.tg_with_owner_exited"].map(|key| r.get(key));
    rows.push((
        "refused `tg_with` at most 200 instructions each (stale / wrong thread / owner exited)",
        refused.iter().map(|v| v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))).collect::<Vec<_>>().join(" / "),
        refused.iter().try_fold(true, |all, v| Some(all && (*v)? <= 200.0)),
    ));
    let bytes = [r.get("scale.bytes_per_object_1m"), r.get("scale.bytes_per_object_10m")];
    rows.push((
        "at most 48 bytes of bookkeeping per live object (1 and 10 million, from the allocator)",
        bytes.iter().map(|b| b.map_or_else(|| "-".into(), |b| format!("{b:.1} B"))).collect::<Vec<_>>().join(" / "),
        bytes[0].zip(bytes[1]).map(|(one, ten)| one <= 48.0 && ten <= 48.0),
    ));
    let exit = r.get("scale.exit_1m_ms");
    rows.push((
        "1 million objects cleaned at thread exit in under 100 ms",
        exit.map_or_else(|| "-".into(), |v| format!("{v:.1} ms")),
        exit.map(|v| v < 100.0),
    ));
    writeln!(out, "## Targets\n").unwrap();
    writeln!(out, "| target | measured | verdict |").unwrap();
    writeln!(out, "|---|---|---|").unwrap();
    for (target, measured, outcome) in rows {
        writeln!(out, "| {target} | {measured} | {} |", verdict(outcome)).unwrap();
    }
    writeln!(out).unwrap();
}

/// `23.2x`, `1.16x`, `0.0015x`: two decimals, or three significant digits below 0.1.
fn show_ratio(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 10.0 => format!("{v:.1}x"),
        Some(v) if v >= 0.1 || v == 0.0 => format!("{v:.2}x"),
        Some(v) => format!("{:.*}x", (2 - v.log10().floor() as i32).max(0) as usize, v),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_runs_are_grouped_by_name_without_the_procs_suffix() {
        let text = "goos: linux\nBenchmarkCgoEmpty-2   \t 1000\t  95.5 ns/op\nBenchmarkCgoEmpty-2 1000 97.5 ns/op\n\
                    BenchmarkThreadDo 10 1200 ns/op 16 B/op\nPASS\n";
        let runs = go_runs(text);
        assert_eq!(runs["CgoEmpty"], vec![95.5, 97.5]);
        assert_eq!(runs["ThreadDo"], vec![1200.0]);
        assert_eq!(runs["ThreadDo.B/op"], vec![16.0]);
    }

    #[test]
    fn ratios_keep_three_significant_digits_when_small() {
        assert_eq!(show_ratio(Some(23.16)), "23.2x");
        assert_eq!(show_ratio(Some(1.155)), "1.16x");
        assert_eq!(show_ratio(Some(0.0015)), "0.00150x");
        assert_eq!(show_ratio(Some(0.02)), "0.0200x");
        assert_eq!(show_ratio(None), "-");
    }

    #[test]
    fn instruction_targets_are_judged_from_the_callgrind_counts() {
        let values = [
            ("ir.c.tg_with", 59.0),
            ("ir.c.plain_call", 9.0),
            ("ir.rust.threadguard_with", 51.0),
            ("ir.c.tg_with_stale", 150.0),
            ("ir.c.tg_with_wrong_thread", 200.0),
            ("ir.c.tg_with_owner_exited", 190.0),
        ];
        let r = Results {
            dir: PathBuf::new(),
            values: values.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
            ranges: BTreeMap::new(),
            runs: BTreeMap::new(),
        };
        let mut out = String::new();
        targets(&mut out, &r);
        let row = |target: &str| out.lines().find(|line| line.contains(target)).unwrap_or_default().to_owned();
        assert!(row("at most 50 instructions over").contains("+50 instructions | met"), "{out}");
        assert!(row("at most 50 instructions per call").contains("51 instructions | **not met**"), "{out}");
        assert!(row("at most 200 instructions each").contains("150 / 200 / 190 | met"), "{out}");
    }

    #[test]
    fn go_floor_target_is_judged_from_the_interleaved_ratios_of_every_run() {
        let dir = std::env::temp_dir().join(format!("tg-bench-report-go-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let round = |ratio: f64| {
            format!(
                "BenchmarkCgoUnchecked-2 100 60.0 ns/op\nBenchmarkPinnedCall-2 100 90.0 ns/op\n\
                 BenchmarkCallFloor-2 100 200 ns/op 49.5 checked-ns {ratio} checked/unchecked 25.0 empty-ns \
                 45.0 unchecked-ns 1.8 unchecked/empty 43.0 checked-cmem-ns 37.0 unchecked-cmem-ns \
                 1.16 checked/unchecked-cmem\n"
            )
        };
        // The separate benchmarks give 1.50x; the interleaved blocks 1.10x in the median run.
        std::fs::write(dir.join("go.txt"), [1.12, 1.08, 1.10].map(round).concat()).unwrap();
        let r = Results::load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let mut out = String::new();
        targets(&mut out, &r);
        let row = |memory: &str| {
            out.lines().find(|line| line.contains(&format!("(context in {memory} memory)"))).unwrap_or_default()
        };
        assert!(row("Go").contains("| 1.10x (1.08x to 1.12x over 3 runs) | met |"), "{out}");
        assert!(row("C").contains("| 1.16x (1.16x to 1.16x over 3 runs) | **not met** |"), "{out}");
        let mut out = String::new();
        go(&mut out, &r);
        assert!(out.contains("| checked/unchecked | 1.10x (1.08x to 1.12x over 3 runs) |"), "{out}");
        assert!(
            out.contains("| `Object.Call` on the pinned owner goroutine | 49.50 ns (49.50 ns to 49.50 ns) |"),
            "{out}"
        );
        assert!(!out.contains("`BenchmarkCallFloor`  |"), "{out}");
        // 90 ns against 60 ns in every round.
        assert!(out.contains("| 90.00 ns | - | 1.50x | - |"), "{out}");
    }

    #[test]
    fn callgrind_file_names_give_language_workload_and_iterations() {
        let dir = std::env::temp_dir().join(format!("tg-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.tg_with.1000.out");
        std::fs::write(&path, "events: Ir\nfl=x\n0 5\ntotals: 25000\n").unwrap();
        assert_eq!(callgrind_per_op(&path, "c.tg_with.1000.out"), Some(("ir.c.tg_with".into(), 25.0)));
        // The measured function's own entry and exit, counted once, do not make 25 read 25.03.
        std::fs::write(&path, "events: Ir\nfl=x\n0 5\ntotals: 25032\n").unwrap();
        assert_eq!(callgrind_per_op(&path, "c.tg_with.1000.out"), Some(("ir.c.tg_with".into(), 25.0)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
