//! Keeping a program's threads on one CPU.
//!
//! Only one participant of a program runs at a time, so one CPU is all a program needs, and
//! on one CPU a hand-off is a direct switch from the thread that passes the baton to the one
//! that takes it. Spread over several CPUs, each hand-off to a parked thread costs a
//! cross-CPU wake-up, several times dearer (and dearer still on CPUs busy with other work).
//! The driver pins itself at its first program and stays pinned (moving a thread between
//! CPUs at every program would cost more than the program); the workers it starts inherit the
//! pin.

use std::cell::Cell;

thread_local! {
    /// The CPU the calling thread was pinned to by this module.
    static PINNED: Cell<Option<usize>> = const { Cell::new(None) };
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

#[cfg(target_os = "linux")]
mod imp {
    use std::mem::{size_of, zeroed};

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
        // SAFETY: as in `get`: all zeros is the empty set.
        let mut only: libc::cpu_set_t = unsafe { zeroed() };
        // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so the bit is inside `only`.
        unsafe { libc::CPU_SET(cpu, &mut only) };
        set(&only)
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
}

pub(crate) use imp::current_cpu;
