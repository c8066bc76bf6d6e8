//! The workloads `make bench` measures, shared by the criterion benches (`benches/compare.rs`),
//! the instruction counts (`tg-bench callgrind`) and the scale measurements (`tg-bench scale`),
//! so every figure in the report prices exactly the same code.
//!
//! Each [`Access`] is one way a program reaches a thread-affine counter it owns and adds 1 to
//! it: through a plain `&mut` (the floor), through a threadguard handle, or through one of the
//! tools a program would otherwise use. The work is the same everywhere (one `u64` increment),
//! so the differences are what each way of reaching the object costs. Every row reads its input
//! (value, cell or handle) through [`opaque`], so the compiler cannot hoist the lookup out of
//! the loop, and no row pays more than another for that barrier.
//!
//! Nothing here asserts anything about time: the figures are read side by side in the report.

use ffi_support::{ConcurrentHandleMap, HandleError, HandleMap};
use slotmap::{DefaultKey, SlotMap};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::Duration;

/// `reference`, which the compiler can no longer see through: each call may return another
/// address, so what is read through it is read again every time. An empty assembly block that
/// takes the address in a register and gives it back, so unlike [`std::hint::black_box`]
/// (which takes the address of a stack copy of its argument) it costs no instruction and no
/// stack frame.
#[inline(always)]
pub fn opaque<T>(reference: &T) -> &T {
    let mut address: *const T = reference;
    // SAFETY: the block is empty: it leaves the address as it was, so the reference it
    // returns is the one it was given, with its lifetime. (The compiler must assume it may
    // read and write what the address reaches, as for `black_box`, only not that it needs the
    // value in memory.)
    unsafe {
        std::arch::asm!("/* {0} */", inout(reg) address, options(nostack, preserves_flags));
        &*address
    }
}

/// [`opaque`] for a mutable reference.
#[inline(always)]
pub fn opaque_mut<T>(reference: &mut T) -> &mut T {
    let mut address: *mut T = reference;
    // SAFETY: as in `opaque`; the reference returned is the one given, still unique.
    unsafe {
        std::arch::asm!("/* {0} */", inout(reg) address, options(nostack, preserves_flags));
        &mut *address
    }
}

/// One way of reaching an owned counter and incrementing it. Created and used on one thread.
pub trait Access {
    /// Adds 1 to the counter through this way of access. Every implementation is
    /// `#[inline(always)]`, so a measured loop prices the access itself and never a call to it
    /// that the compiler makes for some rows and not others.
    fn access(&mut self);
    /// The counter's value (to check that the work was done).
    fn value(&mut self) -> u64;
}

/// The floor: a plain `&mut u64`, no lookup, no check.
#[derive(Default)]
pub struct PlainMut {
    value: u64,
}

impl Access for PlainMut {
    #[inline(always)]
    fn access(&mut self) {
        *opaque_mut(&mut self.value) += 1;
    }
    fn value(&mut self) -> u64 {
        self.value
    }
}

/// `threadguard::with` on a handle owned by this thread: owner, liveness, type and busy checks.
pub struct Threadguard {
    handle: threadguard::Handle,
}

impl Threadguard {
    /// Registers a counter on the calling thread.
    pub fn new() -> Threadguard {
        Threadguard { handle: threadguard::register(0u64).expect("register on a live thread") }
    }
}

impl Default for Threadguard {
    fn default() -> Threadguard {
        Threadguard::new()
    }
}

impl Access for Threadguard {
    #[inline(always)]
    fn access(&mut self) {
        threadguard::with(*opaque(&self.handle), |value: &mut u64| *value += 1).expect("owner-thread borrow");
    }
    fn value(&mut self) -> u64 {
        threadguard::with(self.handle, |value: &mut u64| *value).expect("owner-thread borrow")
    }
}

impl Drop for Threadguard {
    fn drop(&mut self) {
        let _ = threadguard::destroy(self.handle);
    }
}

/// `fragile::Fragile::get`: a thread-ID check, panics on misuse.
pub struct Fragile {
    cell: fragile::Fragile<Cell<u64>>,
}

impl Default for Fragile {
    fn default() -> Fragile {
        Fragile { cell: fragile::Fragile::new(Cell::new(0)) }
    }
}

impl Access for Fragile {
    #[inline(always)]
    fn access(&mut self) {
        let cell = opaque(&self.cell).get();
        cell.set(cell.get() + 1);
    }
    fn value(&mut self) -> u64 {
        self.cell.get().get()
    }
}

/// `send_wrapper::SendWrapper` deref: a thread-ID check, panics on misuse.
pub struct SendWrapper {
    cell: send_wrapper::SendWrapper<Cell<u64>>,
}

impl Default for SendWrapper {
    fn default() -> SendWrapper {
        SendWrapper { cell: send_wrapper::SendWrapper::new(Cell::new(0)) }
    }
}

impl Access for SendWrapper {
    #[inline(always)]
    fn access(&mut self) {
        let cell: &Cell<u64> = opaque(&self.cell);
        cell.set(cell.get() + 1);
    }
    fn value(&mut self) -> u64 {
        self.cell.get()
    }
}

/// `ffi_support::HandleMap::get`: a generation-checked handle, no thread check, no lock.
pub struct FfiHandleMap {
    map: HandleMap<Cell<u64>>,
    handle: ffi_support::Handle,
}

impl Default for FfiHandleMap {
    fn default() -> FfiHandleMap {
        let mut map = HandleMap::new();
        let handle = map.insert(Cell::new(0));
        FfiHandleMap { map, handle }
    }
}

impl Access for FfiHandleMap {
    #[inline(always)]
    fn access(&mut self) {
        let cell = self.map.get(*opaque(&self.handle)).expect("live handle");
        cell.set(cell.get() + 1);
    }
    fn value(&mut self) -> u64 {
        self.map.get(self.handle).expect("live handle").get()
    }
}

/// `ffi_support::ConcurrentHandleMap::get`: a generation-checked handle behind the map's
/// `RwLock` and the entry's `Mutex`, usable from any thread (no thread check).
pub struct FfiConcurrentHandleMap {
    map: Arc<ConcurrentHandleMap<Cell<u64>>>,
    handle: ffi_support::Handle,
}

impl FfiConcurrentHandleMap {
    /// A counter of its own in `map`, which other threads may share.
    pub fn in_map(map: Arc<ConcurrentHandleMap<Cell<u64>>>) -> FfiConcurrentHandleMap {
        let handle = map.insert(Cell::new(0));
        FfiConcurrentHandleMap { map, handle }
    }
}

impl Default for FfiConcurrentHandleMap {
    fn default() -> FfiConcurrentHandleMap {
        FfiConcurrentHandleMap::in_map(Arc::new(ConcurrentHandleMap::new()))
    }
}

impl Access for FfiConcurrentHandleMap {
    #[inline(always)]
    fn access(&mut self) {
        let result: Result<(), HandleError> = self.map.get(*opaque(&self.handle), |cell| {
            cell.set(cell.get() + 1);
            Ok(())
        });
        result.expect("live handle");
    }
    fn value(&mut self) -> u64 {
        let result: Result<u64, HandleError> = self.map.get(self.handle, |cell| Ok(cell.get()));
        result.expect("live handle")
    }
}

thread_local! {
    static TABLE: RefCell<SlotMap<DefaultKey, u64>> = RefCell::new(SlotMap::new());
}

/// A `slotmap` lookup in a `thread_local!` table, as a program would write it by hand: the
/// key is generation-checked, but nothing says which thread's table a key belongs to.
pub struct ThreadLocalSlotMap {
    key: DefaultKey,
}

impl Default for ThreadLocalSlotMap {
    fn default() -> ThreadLocalSlotMap {
        ThreadLocalSlotMap { key: TABLE.with(|table| table.borrow_mut().insert(0)) }
    }
}

impl Access for ThreadLocalSlotMap {
    #[inline(always)]
    fn access(&mut self) {
        TABLE.with(|table| {
            if let Some(value) = table.borrow_mut().get_mut(*opaque(&self.key)) {
                *value += 1;
            }
        });
    }
    fn value(&mut self) -> u64 {
        TABLE.with(|table| table.borrow().get(self.key).copied().unwrap_or(0))
    }
}

impl Drop for ThreadLocalSlotMap {
    fn drop(&mut self) {
        let _ = TABLE.try_with(|table| table.borrow_mut().remove(self.key));
    }
}

/// The calling thread's CPU time: unlike wall time, it does not count the time the thread
/// spends preempted, so on a loaded machine it still prices what the thread itself does
/// (a cache line bouncing between cores stalls the thread, and stalls are CPU time).
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported by
    // every Linux and BSD libc this crate builds on.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Pins the calling thread to CPU `cpu` (modulo the CPUs online) until the returned guard is
/// dropped, which restores the thread's previous CPU set; does nothing on a single CPU. The
/// round-trip rows pin both threads, so that every variant pays the same wake-up: whether the
/// scheduler happens to put two threads on one CPU or on two changes a round trip's cost
/// several times over, especially in a VM. Threads spawned meanwhile inherit the pin.
pub fn pin_to_cpu(cpu: usize) -> CpuPin {
    // The CPUs online, not `available_parallelism` (which a pin of this thread narrows).
    // SAFETY: sysconf has no preconditions.
    let cpus = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1);
    // SAFETY: `cpu_set_t` is plain data for which all zeros is the empty set.
    let mut previous: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is the calling thread; `previous` is valid for writes of `size` bytes.
    if cpus < 2 || unsafe { libc::sched_getaffinity(0, size, &mut previous) } != 0 {
        return CpuPin { previous: None, _not_send: PhantomData };
    }
    // SAFETY: as above, all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpu = cpu % cpus.min(libc::CPU_SETSIZE as usize);
    // SAFETY: `set` is a valid, exclusively borrowed `cpu_set_t`, and `cpu` is below
    // CPU_SETSIZE, the number of CPUs it holds.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is valid for reads of `size` bytes.
    let pinned = unsafe { libc::sched_setaffinity(0, size, &set) } == 0;
    CpuPin { previous: pinned.then_some(previous), _not_send: PhantomData }
}

/// Restores the thread's CPU set when dropped (see [`pin_to_cpu`]). Not `Send`: it is dropped
/// on the thread it pinned.
#[must_use = "the pin ends when this is dropped"]
pub struct CpuPin {
    previous: Option<libc::cpu_set_t>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: pid 0 is the calling thread, the one that pinned itself (the guard is
            // not `Send`); `previous` is a valid set filled in by sched_getaffinity.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), previous) };
        }
    }
}

/// The CPU time thread `tid` of this process has used: the first field of
/// `/proc/self/task/<tid>/schedstat` (nanoseconds), or, where the kernel keeps no schedstat,
/// user plus system time from `/proc/self/task/<tid>/stat` (clock ticks, usually 10 ms).
pub fn task_cpu_time(tid: libc::pid_t) -> Duration {
    let task = format!("/proc/self/task/{tid}");
    if let Some(ns) = std::fs::read_to_string(format!("{task}/schedstat"))
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|field| field.parse::<u64>().ok()))
    {
        return Duration::from_nanos(ns);
    }
    let stat = std::fs::read_to_string(format!("{task}/stat")).expect("read /proc/self/task/<tid>/stat");
    // Fields after the command name (which may hold spaces), from field 3 on: utime and stime
    // are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).map(|f| f.parse().unwrap_or(0)).collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    Duration::from_nanos(fields.iter().sum::<u64>() * 1_000_000_000 / ticks)
}

/// Runs `access` `iters` times and returns the CPU time the calling thread spent on it.
#[inline(never)]
pub fn cpu_time_loop<A: Access>(access: &mut A, iters: u64) -> Duration {
    let start = thread_cpu_time();
    for _ in 0..iters {
        access.access();
    }
    thread_cpu_time().saturating_sub(start)
}

/// Threads that each own one [`Access`] (made on the thread itself) and run it in step: each
/// round starts on all of them at once (a barrier) and reports the mean CPU time per thread.
/// This is how the scaling rows show whether threads working on their own objects slow each
/// other down (a shared cache line on the hot path would). CPU time rather than wall time, so
/// that other processes on the machine do not count as slowdown; a control row with one shared
/// lock shows that real contention does.
pub struct Crew {
    orders: Vec<Sender<u64>>,
    reports: Receiver<Duration>,
    threads: Vec<JoinHandle<()>>,
}

impl Crew {
    /// Starts `threads` threads, each with its own access from `make`.
    pub fn start<A, F>(threads: usize, make: F) -> Crew
    where
        A: Access,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let barrier = Arc::new(Barrier::new(threads));
        let (report, reports) = channel();
        let mut orders = Vec::new();
        let mut handles = Vec::new();
        for index in 0..threads {
            let (order, inbox) = channel::<u64>();
            let (make, barrier, report) = (Arc::clone(&make), Arc::clone(&barrier), report.clone());
            let thread = std::thread::Builder::new()
                .name(format!("crew-{index}"))
                .spawn(move || {
                    let mut access = make();
                    for iters in inbox {
                        barrier.wait();
                        if report.send(cpu_time_loop(&mut access, iters)).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawn a crew thread");
            orders.push(order);
            handles.push(thread);
        }
        Crew { orders, reports, threads: handles }
    }

    /// Runs `iters` accesses on every thread at once; returns the mean CPU time per thread.
    pub fn run(&self, iters: u64) -> Duration {
        for order in &self.orders {
            order.send(iters).expect("crew thread alive");
        }
        let total: Duration = (0..self.orders.len()).map(|_| self.reports.recv().expect("crew report")).sum();
        total / self.orders.len() as u32
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.orders.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The baseline of the runner's round trip: a plain mutex/condvar rendezvous with a server
/// thread (one condvar each way), which runs nothing but answers the request (no allocation,
/// no checks).
pub struct PingPong {
    shared: Arc<Rendezvous>,
    server: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Rendezvous {
    state: std::sync::Mutex<PingState>,
    to_server: std::sync::Condvar,
    to_client: std::sync::Condvar,
}

#[derive(Default)]
struct PingState {
    request: u64,
    answer: u64,
    stop: bool,
}

impl PingPong {
    /// Starts the server thread, pinned to CPU `cpu` (see [`pin_to_cpu`]).
    pub fn start(cpu: usize) -> PingPong {
        let shared = Arc::new(Rendezvous::default());
        let theirs = Arc::clone(&shared);
        let server = std::thread::Builder::new()
            .name("ping-server".into())
            .spawn(move || {
                let _pin = pin_to_cpu(cpu);
                let mut state = theirs.state.lock().expect("ping lock");
                loop {
                    while state.request == state.answer && !state.stop {
                        state = theirs.to_server.wait(state).expect("ping lock");
                    }
                    if state.stop {
                        return;
                    }
                    state.answer = state.request;
                    theirs.to_client.notify_one();
                }
            })
            .expect("spawn the ping server");
        PingPong { shared, server: Some(server) }
    }

    /// One round trip: post a request and wait for the server's answer.
    pub fn round_trip(&self) {
        let mut state = self.shared.state.lock().expect("ping lock");
        state.request += 1;
        self.shared.to_server.notify_one();
        while state.answer != state.request {
            state = self.shared.to_client.wait(state).expect("ping lock");
        }
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(|poison| poison.into_inner()).stop = true;
        self.shared.to_server.notify_one();
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// The runner workloads (compiled when the crate exports `threadguard::runner`).
#[cfg(feature = "runner")]
pub mod runner {
    use std::time::{Duration, Instant};
    use threadguard::Status;
    use threadguard::runner::Runner;

    /// Jobs the runner's queue holds in the throughput runs.
    pub const CAPACITY: usize = 4096;

    /// Starts a runner for the benchmarks, its thread pinned to CPU `cpu` for its whole life
    /// (see [`super::pin_to_cpu`]).
    pub fn start(cpu: usize) -> Runner {
        let runner = Runner::start("bench-runner", CAPACITY).expect("start a runner");
        runner.call(move || std::mem::forget(super::pin_to_cpu(cpu)), None).expect("runner call");
        runner
    }

    /// Starts a runner for the benchmarks, on whatever CPU the scheduler picks.
    pub fn start_unpinned() -> Runner {
        Runner::start("bench-runner", CAPACITY).expect("start a runner")
    }

    /// One post-and-wait round trip: `Runner::call` of an empty job.
    pub fn round_trip(runner: &Runner) {
        runner.call(|| (), None).expect("runner call");
    }

    /// The share of one CPU the runner thread uses while no work arrives: after `calls` back
    /// to back round trips (which leave its waits at their longest spin) and `settle` of
    /// quiet, its CPU time over the next `span`, divided by `span`.
    pub fn idle_cpu_share(runner: &Runner, calls: u32, settle: Duration, span: Duration) -> f64 {
        // SAFETY: gettid has no preconditions; it names the runner thread it runs on.
        let tid = runner.call(|| unsafe { libc::gettid() }, None).expect("runner call");
        for _ in 0..calls {
            round_trip(runner);
        }
        std::thread::sleep(settle);
        let before = super::task_cpu_time(tid);
        let start = Instant::now();
        std::thread::sleep(span);
        let used = super::task_cpu_time(tid).saturating_sub(before);
        used.as_secs_f64() / start.elapsed().as_secs_f64()
    }

    /// `producers` threads post `tasks` empty jobs in all (retrying while the queue is full),
    /// then each waits until the runner has run its last one. Returns the time from the first
    /// post to the last job run.
    pub fn post_tasks(runner: &Runner, producers: usize, tasks: u64) -> Duration {
        let per_producer = tasks.div_ceil(producers as u64).max(1);
        let barrier = std::sync::Barrier::new(producers + 1);
        std::thread::scope(|scope| {
            for _ in 0..producers {
                scope.spawn(|| {
                    barrier.wait();
                    for _ in 0..per_producer {
                        loop {
                            match runner.post(|| (), |_| ()) {
                                Ok(()) => break,
                                Err(error) if error.status() == Status::Limit => std::thread::yield_now(),
                                Err(error) => panic!("post refused: {error}"),
                            }
                        }
                    }
                    // The queue is first in, first out: once this returns, every job this
                    // producer posted has run.
                    runner.call(|| (), None).expect("runner call");
                });
            }
            barrier.wait();
            let start = Instant::now();
            // The scope joins the producers before it returns.
            start
        })
        .elapsed()
    }
}

/// The median of `values` (which it sorts); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_one_per_access<A: Access>(mut access: A) {
        let before = access.value();
        cpu_time_loop(&mut access, 1000);
        assert_eq!(access.value(), before + 1000);
    }

    #[test]
    fn every_way_of_access_does_the_same_work() {
        counts_one_per_access(PlainMut::default());
        counts_one_per_access(Threadguard::new());
        counts_one_per_access(Fragile::default());
        counts_one_per_access(SendWrapper::default());
        counts_one_per_access(FfiHandleMap::default());
        counts_one_per_access(FfiConcurrentHandleMap::default());
        counts_one_per_access(ThreadLocalSlotMap::default());
    }

    #[test]
    fn a_crew_runs_every_thread_and_reports_a_time_per_thread() {
        let crew = Crew::start(2, Threadguard::new);
        let _ = crew.run(100);
    }

    #[test]
    fn ping_pong_answers_each_request() {
        let ping = PingPong::start(1);
        for _ in 0..100 {
            ping.round_trip();
        }
    }

    #[cfg(feature = "runner")]
    #[test]
    fn runner_round_trips_and_posts_complete() {
        let handle = runner::start(1);
        runner::round_trip(&handle);
        for producers in [1, 2, 8] {
            let _ = runner::post_tasks(&handle, producers, 1000);
        }
        assert_eq!(handle.queued(), 0, "every posted task ran before post_tasks returned");
        let share = runner::idle_cpu_share(&handle, 10, Duration::from_millis(1), Duration::from_millis(10));
        assert!((0.0..=2.0).contains(&share), "a share of at most one CPU (with rounding): {share}");
        // The runner's CPU time, read from here, counts work it does (30 ms of its own CPU time:
        // several clock ticks where the kernel keeps no schedstat).
        // SAFETY: gettid has no preconditions; it names the runner thread it runs on.
        let tid = handle.call(|| unsafe { libc::gettid() }, None).unwrap();
        let before = task_cpu_time(tid);
        handle
            .call(
                || {
                    let start = thread_cpu_time();
                    while thread_cpu_time() - start < Duration::from_millis(30) {}
                },
                None,
            )
            .unwrap();
        assert!(task_cpu_time(tid) > before, "the runner's busy time is seen");
        handle.stop().unwrap();
    }

    #[test]
    fn this_threads_cpu_time_is_read_from_proc() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let before = task_cpu_time(tid);
        let spent = cpu_time_loop(&mut PlainMut::default(), 50_000_000);
        assert!(task_cpu_time(tid) >= before, "CPU time never goes back ({spent:?} spent)");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
