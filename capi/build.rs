//! Gives the shared library its soname, `libthreadguard.so.<ABI version>`, so that a program
//! linked against it records the ABI it needs rather than a path.
//!
//! The ABI version is read from the library's source (`ABI_VERSION` in src/diagnostics.rs); the
//! crate checks at compile time that it is the one the library reports (`TG_ABI_VERSION`).

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let source = manifest.join("../src/diagnostics.rs");
    println!("cargo::rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source).expect("reading src/diagnostics.rs");
    let abi: u32 = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("pub const ABI_VERSION: u32 = "))
        .and_then(|rest| rest.trim_end_matches(';').trim().parse().ok())
        .expect("src/diagnostics.rs defines `pub const ABI_VERSION: u32 = <n>;`");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("abi.rs"), format!("{abi}\n")).expect("writing OUT_DIR/abi.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-cdylib-link-arg=-Wl,-soname,libthreadguard.so.{abi}");
    }
}
