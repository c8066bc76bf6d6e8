//! `tg-bench`: the measurements of `make bench` that are not criterion microbenchmarks.
//!
//! ```text
//! tg-bench scale OUT.tsv          thread exit with 1 million objects; bytes per live object at
//!                                 1 and 10 million (from this binary's counting allocator)
//! tg-bench threads OUT.tsv        1 against 2 threads, and the runner, in interleaved rounds
//! tg-bench callgrind NAME ITERS   run one workload ITERS times inside `cg_measured`, for
//!                                 `valgrind --tool=callgrind --toggle-collect=*cg_measured*`
//! tg-bench callgrind-list         the workload names `callgrind` accepts
//! tg-bench report DIR             read every result under DIR and print the report (markdown)
//! ```

mod report;
mod threads;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use threadguard_bench::{
    Access, FfiConcurrentHandleMap, FfiHandleMap, Fragile, PlainMut, SendWrapper, ThreadLocalSlotMap, Threadguard,
    median,
};

/// Counts the bytes currently allocated through the global allocator, so memory per object is
/// measured from the allocator, not estimated from type sizes.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so it
// upholds `GlobalAlloc`'s contract exactly as `System` does; the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `pointer` came from this allocator with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Resident memory of this process, in bytes (second field of `/proc/self/statm`).
fn resident() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match words.as_slice() {
        ["scale", out] => scale(out),
        ["threads", out] => threads::measure(out),
        ["callgrind", name, iters] => callgrind(name, iters),
        ["callgrind-list"] => {
            println!("{}", WORKLOADS.join(" "));
            Ok(())
        }
        ["report", dir] => report::print(dir),
        _ => {
            Err("usage: tg-bench scale OUT.tsv | threads OUT.tsv | callgrind NAME ITERS | callgrind-list | report DIR"
                .into())
        }
    };
    if let Err(error) = outcome {
        eprintln!("tg-bench: {error}");
        std::process::exit(1);
    }
}

/// The workloads `callgrind` runs, by name (the names of the criterion `borrow` rows).
const WORKLOADS: &[&str] = &[
    "plain_mut",
    "threadguard_with",
    "fragile_get",
    "send_wrapper_deref",
    "ffi_handle_map_get",
    "ffi_concurrent_handle_map_get",
    "thread_local_slotmap",
];

/// The measured loop: the only code callgrind collects from (`--toggle-collect`).
#[inline(never)]
fn cg_measured<A: Access>(access: &mut A, iters: u64) {
    for _ in 0..iters {
        access.access();
    }
}

fn count<A: Access>(mut access: A, iters: u64) {
    // Warm up first (lazy thread-locals, first-use paths), outside the collected function.
    for _ in 0..16 {
        access.access();
    }
    cg_measured(&mut access, iters);
    black_box(access.value());
}

fn callgrind(name: &str, iters: &str) -> Result<(), String> {
    let iters: u64 = iters.parse().map_err(|_| format!("not a count: {iters}"))?;
    match name {
        "plain_mut" => count(PlainMut::default(), iters),
        "threadguard_with" => count(Threadguard::new(), iters),
        "fragile_get" => count(Fragile::default(), iters),
        "send_wrapper_deref" => count(SendWrapper::default(), iters),
        "ffi_handle_map_get" => count(FfiHandleMap::default(), iters),
        "ffi_concurrent_handle_map_get" => count(FfiConcurrentHandleMap::default(), iters),
        "thread_local_slotmap" => count(ThreadLocalSlotMap::default(), iters),
        _ => return Err(format!("unknown workload {name}; one of: {}", WORKLOADS.join(" "))),
    }
    Ok(())
}

/// Repetitions of the thread-exit measurement; the median is reported.
const EXIT_RUNS: usize = 5;

fn scale(out: &str) -> Result<(), String> {
    let mut tsv = String::new();

    // Thread exit with 1 million objects (Rust values, each a boxed u64): from the moment the
    // thread's closure returns to the moment `join` returns. That covers the exit sweep that
    // destroys every object on the thread, and the thread's teardown.
    let mut exit_ms: Vec<f64> = (0..EXIT_RUNS).map(|_| thread_exit(1_000_000).as_secs_f64() * 1e3).collect();
    let exit_1m = median(&mut exit_ms);
    writeln!(tsv, "exit_1m_ms\t{exit_1m:.3}").unwrap();
    eprintln!("thread exit, 1M objects: {exit_1m:.1} ms (median of {EXIT_RUNS}: {exit_ms:.1?})");

    // Bookkeeping per live object: C objects (a caller's pointer, no payload of ours), so
    // every byte the allocator hands out while registering them is threadguard's.
    for count in [1_000_000usize, 10_000_000] {
        let (bytes, resident, exit) = memory_per_object(count);
        let millions = count / 1_000_000;
        writeln!(tsv, "bytes_per_object_{millions}m\t{bytes:.2}").unwrap();
        writeln!(tsv, "resident_per_object_{millions}m\t{resident:.2}").unwrap();
        writeln!(tsv, "exit_{millions}m_c_objects_ms\t{:.3}", exit.as_secs_f64() * 1e3).unwrap();
        eprintln!(
            "{millions}M live objects: {bytes:.1} bytes each from the allocator, {resident:.1} resident; exit {:.1} ms",
            exit.as_secs_f64() * 1e3
        );
    }
    std::fs::write(out, tsv).map_err(|error| format!("{out}: {error}"))
}

/// Registers `count` Rust objects on a new thread and times its exit.
fn thread_exit(count: usize) -> Duration {
    let worker = std::thread::spawn(move || {
        for value in 0..count as u64 {
            threadguard::register(value).expect("register");
        }
        Instant::now()
    });
    let returned = worker.join().expect("worker thread");
    returned.elapsed()
}

/// Registers `count` C objects on a new thread; returns the allocator's and the resident
/// bytes per object while they are live, and the time the thread's exit took.
fn memory_per_object(count: usize) -> (f64, f64, Duration) {
    let worker = std::thread::spawn(move || {
        // Enter the library first, so per-thread state is not counted per object.
        threadguard::current_thread_id().expect("thread id");
        let (heap_before, resident_before) = (allocated(), resident().unwrap_or(0));
        let mut handle = threadguard::Handle::NULL;
        let object = std::ptr::NonNull::<c_void>::dangling().as_ptr();
        for _ in 0..count {
            // SAFETY: `handle` is a valid place for one handle; the object is an opaque
            // pointer the library never dereferences (no destructor is given).
            let status = unsafe { threadguard::ffi::tg_register(1, object, None, &mut handle) };
            assert_eq!(status, threadguard::ffi::TG_OK);
        }
        let heap = allocated().saturating_sub(heap_before) as f64 / count as f64;
        let resident = resident().unwrap_or(0).saturating_sub(resident_before) as f64 / count as f64;
        (heap, resident, Instant::now())
    });
    let (heap, resident, returned) = worker.join().expect("worker thread");
    (heap, resident, returned.elapsed())
}
