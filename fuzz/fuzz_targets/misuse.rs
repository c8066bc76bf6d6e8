//! Misuse programs over several real OS threads, checked step by step against the reference
//! model: every status code, callback, destructor run (object and thread) and counter. Any
//! difference panics, which the fuzzer reports as a crash.
//!
//! The interpreter and the model are the ones `cargo test --test model_programs` runs.

#![no_main]

#[path = "../../tests/model/mod.rs"]
mod model;

libfuzzer_sys::fuzz_target!(|program: &[u8]| {
    model::run(program);
});
