//! The README's `Counter` (exported with `export_thread_affine!`) fuzzed through
//! threadguard-fuzzkit: misuse programs over real threads, each step checked against what
//! threadguard promises, including calls made inside a borrow of their own counter (the spec's
//! `borrow`). `cargo test -p threadguard-fuzzkit --test counter_programs` runs the
//! same spec over this target's seeds and seeded random programs.

#![no_main]

#[path = "../../kit/tests/counter/mod.rs"]
mod counter;

use std::sync::LazyLock;
use threadguard_fuzzkit::Kit;

static KIT: LazyLock<Kit> = LazyLock::new(|| Kit::new(counter::spec()));

libfuzzer_sys::fuzz_target!(|program: &[u8]| {
    KIT.run(program);
});
