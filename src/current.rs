//! Where the calling thread's state pointer lives: one thread-local word, read on every call.
//!
//! On x86-64 Linux the word is declared here and reached through a TLS descriptor written in
//! inline assembly. A position-independent library's ordinary thread-local access is a call
//! to `__tls_get_addr`, which may clobber every caller-saved register, so the compiler keeps a
//! borrow's five arguments in callee-saved registers around it (about 20 instructions of
//! saves and moves per call). A descriptor call clobbers only `rax`: the linker turns it into
//! an offset from the thread pointer in an executable, and the dynamic loader's resolver
//! returns the offset for a shared library.
//!
//! The resolver for a library loaded with `dlopen` (`_dl_tlsdesc_dynamic`) keeps the integer
//! registers but, before glibc 2.40, not the vector registers (glibc bug 31372): the assembly
//! declares those clobbered, so the compiler keeps nothing in them across the access. That is
//! why the descriptor is used for this one word only, and not for every thread-local of the
//! crate (as a build option would). Elsewhere, and under Miri, the word is an ordinary
//! `const` thread-local.
//!
//! Either way the word has no destructor, so it stays readable while other thread-local
//! destructors and pthread key destructors run, until the thread is gone.

use crate::state::ThreadState;

/// The calling thread's word: null until its state exists, then the state (see `state`).
#[inline(always)]
pub(crate) fn get() -> *const ThreadState {
    // SAFETY: `slot` is this thread's word, valid for the thread's lifetime; it is only read
    // and written on this thread, by `get` and `set`, never while a reference to it is live.
    unsafe { *slot() }
}

/// Replaces the calling thread's word.
#[inline]
pub(crate) fn set(state: *const ThreadState) {
    // SAFETY: as in `get`.
    unsafe { *slot() = state };
}

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_pointer_width = "64", not(miri)))]
mod word {
    // The word: 8 bytes of zero-initialised thread-local storage (`.tbss`), one per loaded copy
    // of the library (hidden: a second copy linked into another shared object has its own).
    std::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl threadguard_current_state",
        ".hidden threadguard_current_state",
        ".type threadguard_current_state, @object",
        ".size threadguard_current_state, 8",
        "threadguard_current_state:",
        ".zero 8",
        ".popsection",
    );
}

/// The address of the calling thread's word.
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_pointer_width = "64", not(miri)))]
#[inline(always)]
fn slot() -> *mut *const ThreadState {
    let offset: usize;
    // The clobbers: glibc's `_dl_tlsdesc_dynamic` before 2.40 may clobber vector, mask and
    // x87/MMX registers (bug 31372; on a thread's first access, through malloc and memcpy,
    // whose AVX-512 variants use zmm16-31 and the mask registers). All of them are declared,
    // also where this crate is built without AVX-512, as a caller built with it may inline
    // this code. No `nostack`: the call pushes a return address, and the compiler then keeps
    // the stack aligned for a call and nothing in the red zone. `pure, readonly`: the result
    // is the same on every call on a thread, and what the resolver may write (the loader's own
    // records of a dlopen'd library's thread blocks) is no memory Rust code reads.
    //
    // SAFETY: the general-dynamic TLS descriptor sequence of the x86-64 ELF ABI for the word
    // declared above: `rax` gets the word's offset from the thread pointer (fs:0), which the
    // `add` turns into its address. The resolver keeps every register but `rax`, the flags
    // and the registers declared clobbered (above), so nothing the compiler keeps is lost.
    unsafe {
        std::arch::asm!(
            "lea rax, [rip + threadguard_current_state@TLSDESC]",
            "call qword ptr [rax + threadguard_current_state@TLSCALL]",
            "add rax, qword ptr fs:0",
            out("rax") offset,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
            out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
            out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _,
            out("zmm28") _, out("zmm29") _, out("zmm30") _, out("zmm31") _,
            out("k0") _, out("k1") _, out("k2") _, out("k3") _,
            out("k4") _, out("k5") _, out("k6") _, out("k7") _,
            out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
            out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            out("mm0") _, out("mm1") _, out("mm2") _, out("mm3") _,
            out("mm4") _, out("mm5") _, out("mm6") _, out("mm7") _,
            options(pure, readonly),
        );
    }
    offset as *mut *const ThreadState
}

/// The address of the calling thread's word.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64", target_pointer_width = "64", not(miri))))]
#[inline(always)]
fn slot() -> *mut *const ThreadState {
    use std::cell::Cell;
    thread_local! {
        static CURRENT: Cell<*const ThreadState> = const { Cell::new(std::ptr::null()) };
    }
    CURRENT.with(Cell::as_ptr)
}
