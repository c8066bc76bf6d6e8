//! Writes the C header from the crate's C ABI (`src/ffi`).
//!
//! `gen-header [OUTPUT]` writes to OUTPUT (default `include/threadguard.h`, relative to the
//! crate root). The Makefile's header-freshness check writes to a temporary file and compares.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output =
        std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| crate_dir.join("include/threadguard.h"));
    let config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gen-header: reading cbindgen.toml: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cbindgen::generate_with_config(&crate_dir, config) {
        Ok(bindings) => {
            bindings.write_to_file(&output);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("gen-header: {error}");
            ExitCode::FAILURE
        }
    }
}
