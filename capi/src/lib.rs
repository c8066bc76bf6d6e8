//! The C library of threadguard: `libthreadguard.a` and `libthreadguard.so`.
//!
//! Every `extern "C"` function lives in `threadguard::ffi`; linking the crate here is what puts
//! them into the static and the shared library (a `#[no_mangle]` function of a dependency is
//! exported by every staticlib and cdylib that links it). The shared library exports exactly
//! the `tg_*` functions (`make install-check` compares its dynamic symbols with the header), and
//! `build.rs` gives it its soname, `libthreadguard.so.<ABI version>`.

pub use threadguard::ffi;

// The soname's number (build.rs, from the source) is the ABI version the library reports.
const _: () = assert!(threadguard::ffi::TG_ABI_VERSION == include!(concat!(env!("OUT_DIR"), "/abi.rs")));
