//! The baton: which participant of a program (a worker thread or the driver) may run now.
//!
//! Exactly one participant holds the baton at a time, so a program runs one step at a time in
//! program order, whatever the threads: execution is deterministic. Passing it is a store to
//! one atomic. A waiting participant spins on that atomic for a bounded time (a pause
//! instruction, then yielding the CPU) before it parks; the passer unparks it only if it went
//! to sleep. Back-to-back steps on different threads therefore cost a cache-line transfer, not
//! an OS wake-up, and a participant that waits long costs nothing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread::Thread;

/// Pause-instruction rounds before a waiter starts yielding.
const SPINS: u32 = 200;
/// `yield_now` rounds before a waiter parks (a few hundred microseconds when the CPUs are busy,
/// less when they are idle: a yield with nobody else to run returns at once).
const YIELDS: u32 = 2000;

/// The baton of one program, for `participants` participants numbered from 0.
pub(crate) struct Baton {
    turn: AtomicUsize,
    sleeping: Vec<AtomicBool>,
    threads: Mutex<Vec<Option<Thread>>>,
}

impl Baton {
    /// A baton held by participant `first`.
    pub fn new(participants: usize, first: usize) -> Baton {
        Baton {
            turn: AtomicUsize::new(first),
            sleeping: (0..participants).map(|_| AtomicBool::new(false)).collect(),
            threads: Mutex::new(vec![None; participants]),
        }
    }

    /// Tells the baton which thread participant `me` is (call on that thread, before `wait`).
    pub fn join(&self, me: usize) {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)[me] = Some(std::thread::current());
    }

    /// Gives the baton to `to`.
    pub fn pass(&self, to: usize) {
        self.turn.store(to, Ordering::SeqCst);
        // Pairs with the waiter's store of its sleeping flag and load of `turn` (both SeqCst):
        // either the waiter sees the new turn before it parks, or this sees it sleeping.
        if self.sleeping[to].load(Ordering::SeqCst) {
            let thread = self.threads.lock().unwrap_or_else(PoisonError::into_inner)[to].clone();
            if let Some(thread) = thread {
                thread.unpark();
            }
        }
    }

    /// Takes the baton back without a hand-off (the holder ran something that ended the
    /// participant it was passed to, and joined it).
    pub fn take(&self, me: usize) {
        self.turn.store(me, Ordering::SeqCst);
    }

    /// Waits until `me` holds the baton.
    pub fn wait(&self, me: usize) {
        for _ in 0..SPINS {
            if self.turn.load(Ordering::Acquire) == me {
                return;
            }
            std::hint::spin_loop();
        }
        for _ in 0..YIELDS {
            if self.turn.load(Ordering::Acquire) == me {
                return;
            }
            std::thread::yield_now();
        }
        self.sleeping[me].store(true, Ordering::SeqCst);
        while self.turn.load(Ordering::SeqCst) != me {
            // An unpark that came first makes this return at once: no wake-up is lost.
            std::thread::park();
        }
        self.sleeping[me].store(false, Ordering::SeqCst);
    }
}
