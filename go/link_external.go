//go:build threadguard_external

package threadguard

// With -tags threadguard_external the package adds no link flags: the tg_*
// functions come from a library the program links itself, typically a Rust
// library built with threadguard's export_thread_affine!, which exports them
// (see "One threadguard per process" in the package doc). The header
// threadguard.h must be on the C compiler's include path (the installed one,
// or CGO_CFLAGS=-I<prefix>/include).
