//! The criterion benchmarks of `make bench`: threadguard's checked borrow side by side with the
//! plain `&mut` floor and the alternatives, on the thread that owns the object.
//!
//! Each row times the CPU time of the measuring thread, so that other processes on a shared
//! machine do not count (a preempted thread is not slower, only later). Measurement times are
//! short (the whole run must fit in a few minutes); the instruction counts (`tg-bench
//! callgrind`) are the repeatable companion to these times. The rows that compare several
//! threads at once (scaling, the runner) are in `tg-bench threads`, which interleaves them.

use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime};
use std::time::Duration;
use threadguard_bench::{
    Access, FfiConcurrentHandleMap, FfiHandleMap, Fragile, PlainMut, SendWrapper, ThreadLocalSlotMap, Threadguard,
    cpu_time_loop,
};

fn short(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(30);
}

fn one<A: Access>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut access: A) {
    group.bench_function(name, |b| b.iter_custom(|iters| cpu_time_loop(&mut access, iters)));
}

/// One checked borrow against each alternative, on the thread that owns the object.
fn borrow(c: &mut Criterion) {
    let mut group = c.benchmark_group("borrow");
    short(&mut group);
    one(&mut group, "plain_mut", PlainMut::default());
    one(&mut group, "threadguard_with", Threadguard::new());
    one(&mut group, "fragile_get", Fragile::default());
    one(&mut group, "send_wrapper_deref", SendWrapper::default());
    one(&mut group, "ffi_handle_map_get", FfiHandleMap::default());
    one(&mut group, "ffi_concurrent_handle_map_get", FfiConcurrentHandleMap::default());
    one(&mut group, "thread_local_slotmap", ThreadLocalSlotMap::default());
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().nresamples(10_000).without_plots();
    targets = borrow
}
criterion_main!(benches);
