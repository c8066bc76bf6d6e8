//! Tells crates that depend on threadguard where its C header is: their build scripts read it
//! as `DEP_THREADGUARD_INCLUDE` (the crate's `links = "threadguard"` key).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo::metadata=include={dir}/include");
    println!("cargo::rerun-if-changed=build.rs");
}
