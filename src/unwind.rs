//! Foreign unwinding (I3): how the library calls the function pointers C callers hand it.
//!
//! Every function pointer that comes in through the C ABI (borrow callbacks, destructors,
//! runner work, completion and abandon functions, completion-queue discard functions) has an
//! `extern "C-unwind"` type and is called inside [`abort_on_unwind`]. C has no exceptions, but
//! a callback written in C++ may throw, and one written in Rust as `extern "C-unwind"` may
//! panic. Through an `extern "C"` pointer either would be undefined behaviour (the compiler
//! assumes the call cannot unwind and may leave out the cleanup of the frames it crosses);
//! through `"C-unwind"` the unwind is defined and reaches the guard here, which writes one line
//! naming the callback to standard error and aborts the process (`SIGABRT`) before any frame
//! above the callback runs. So a callback that unwinds never leaves an entry busy, a job
//! without its completion, or a destructor half-counted: the process ends at that point, loudly.
//!
//! With `"C-unwind"` types but no guard, the outcome would mostly be an abort too, but a less
//! useful one: a foreign exception that reaches `catch_unwind` aborts with "Rust cannot catch
//! foreign exceptions", one that reaches an `extern "C"` function aborts with "panic in a
//! function that cannot unwind", and a Rust panic would be caught and reported as if the
//! library had panicked, with the callback's work (a runner job's completion, say) lost.
//!
//! What this does not cover, because Rust leaves it undefined: leaving a callback by `longjmp`
//! (which skips the frames in between without running anything, this guard included) and by a
//! forced unwind (`pthread_exit`, thread cancellation) across our frames, which have
//! destructors. Neither is supported (SECURITY.md says what can happen). With glibc a forced
//! unwind does run this guard in practice, so it usually ends in the same abort.

use std::io::Write;

/// Calls `f`, which calls the C function pointer described by `what` (for example "a tg_with
/// callback"). If `f` unwinds, writes `threadguard: <what> unwound (...)` to standard error and
/// aborts the process.
#[inline(always)]
pub(crate) fn abort_on_unwind<R>(what: &'static str, f: impl FnOnce() -> R) -> R {
    let guard = AbortOnUnwind(what);
    let result = f();
    std::mem::forget(guard);
    result
}

/// [`abort_on_unwind`] for a borrow callback (`tg_with`'s): the guard names it by its type,
/// so the hot path stores nothing for it.
#[inline(always)]
pub(crate) fn abort_on_unwind_in_borrow<R>(f: impl FnOnce() -> R) -> R {
    let guard = AbortOnUnwindInBorrow;
    let result = f();
    std::mem::forget(guard);
    result
}

/// Dropped only while unwinding out of a borrow callback (otherwise forgotten).
struct AbortOnUnwindInBorrow;

impl Drop for AbortOnUnwindInBorrow {
    // Inlined: the unwind path is then seen to end here, and keeps nothing for what follows.
    #[inline(always)]
    fn drop(&mut self) {
        unwound("a tg_with callback");
    }
}

/// Dropped only while unwinding out of a callback (otherwise forgotten).
struct AbortOnUnwind(&'static str);

impl Drop for AbortOnUnwind {
    #[cold]
    #[inline(never)]
    fn drop(&mut self) {
        unwound(self.0);
    }
}

/// Says which callback unwound, and aborts.
#[cold]
#[inline(never)]
fn unwound(what: &str) -> ! {
    // A Rust panic is counted by the standard library; a foreign unwind is not.
    let cause = match std::thread::panicking() {
        true => "a Rust panic",
        false => "a foreign exception: a C++ throw, or a forced unwind such as pthread_exit",
    };
    // Ignore a failed write: the abort must happen either way.
    let _ = writeln!(
        std::io::stderr(),
        "threadguard: {what} unwound ({cause}); callbacks and destructors must return normally: aborting"
    );
    std::process::abort();
}
