//! Keeping a program's threads on one CPU.
//!
//! Only one participant of a program runs at a time, so one CPU is all a program needs, and
//! on one CPU a hand-off is a direct switch from the thread that passes the baton to the one
//! that takes it. Spread over several CPUs, each hand-off to a parked thread costs a
//! cross-CPU wake-up, several times dearer (and dearer still on CPUs busy with other work).
//!
//! The driver pins itself to the CPU it runs on at its first program and stays there (moving a
//! thread at every program would cost more than the program); the workers follow it. Every
//! [`RECHOOSE_EVERY`] programs it lets the scheduler choose again: it drops its pin, sleeps a
//! moment, and pins itself to the CPU it wakes up on, which the scheduler picks among the idle
//! ones, so a CPU that other work keeps busy is not kept for long.

use std::cell::Cell;
use std::time::Duration;

/// Programs between two choices of the CPU.
const RECHOOSE_EVERY: u32 = 256;

thread_local! {
    /// The CPU the calling thread was pinned to by this module.
    static PINNED: Cell<Option<usize>> = const { Cell::new(None) };
    /// Calls of `choose` on this thread.
    static CHOICES: Cell<u32> = const { Cell::new(0) };
}

/// Pins the calling thread to `cpu` if it may run there (a no-op if it is pinned there
/// already); whether it is pinned there.
pub(crate) fn pin(cpu: usize) -> bool {
    if PINNED.with(Cell::get) == Some(cpu) {
        return true;
    }
    let pinned = imp::pin(cpu);
    PINNED.with(|cell| cell.set(pinned.then_some(cpu)));
    pinned
}

/// The CPU for the calling driver's next program, which it is pinned to: the one it is pinned
/// to already, except every [`RECHOOSE_EVERY`] calls (see the module doc). `None` where threads
/// cannot be pinned.
pub(crate) fn choose() -> Option<usize> {
    let calls = CHOICES.with(|cell| {
        let calls = cell.get();
        cell.set(calls.wrapping_add(1));
        calls
    });
    let pinned = PINNED.with(Cell::get);
    if pinned.is_some() && !calls.is_multiple_of(RECHOOSE_EVERY) {
        return pinned;
    }
    if pinned.is_some() {
        imp::unpin();
        PINNED.with(|cell| cell.set(None));
        std::thread::sleep(Duration::from_micros(100));
    }
    let cpu = imp::current_cpu()?;
    pin(cpu).then_some(cpu)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::cell::Cell;
    use std::mem::{size_of, zeroed};

    thread_local! {
        /// The calling thread's affinity before its first pin.
        static ORIGINAL: Cell<Option<libc::cpu_set_t>> = const { Cell::new(None) };
    }

    /// The CPU the calling thread runs on now.
    pub fn current_cpu() -> Option<usize> {
        // SAFETY: sched_getcpu takes no arguments and only reads the calling thread's state.
        let cpu = unsafe { libc::sched_getcpu() };
        usize::try_from(cpu).ok()
    }

    fn get() -> Option<libc::cpu_set_t> {
        // SAFETY: cpu_set_t is a plain bit array, for which all zeros is the empty set.
        let mut set: libc::cpu_set_t = unsafe { zeroed() };
        // SAFETY: pid 0 is the calling thread; the size and pointer describe `set`, a live local.
        let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
        (rc == 0).then_some(set)
    }

    fn set(set: &libc::cpu_set_t) -> bool {
        // SAFETY: pid 0 is the calling thread; the size and pointer describe `set`, a live value.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) == 0 }
    }

    /// Pins the calling thread to `cpu`, if it may run there.
    pub fn pin(cpu: usize) -> bool {
        let Some(old) = get() else { return false };
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so the bit is inside `old`.
        if !unsafe { libc::CPU_ISSET(cpu, &old) } {
            return false;
        }
        if ORIGINAL.with(Cell::get).is_none() {
            ORIGINAL.with(|cell| cell.set(Some(old)));
        }
        // SAFETY: as in `get`: all zeros is the empty set.
        let mut only: libc::cpu_set_t = unsafe { zeroed() };
        // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so the bit is inside `only`.
        unsafe { libc::CPU_SET(cpu, &mut only) };
        set(&only)
    }

    /// Gives the calling thread back the affinity it had before its first pin.
    pub fn unpin() {
        if let Some(original) = ORIGINAL.with(Cell::get) {
            set(&original);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn current_cpu() -> Option<usize> {
        None
    }

    pub fn pin(_cpu: usize) -> bool {
        false
    }

    pub fn unpin() {}
}
