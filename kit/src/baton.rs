//! The baton: which participant of a program (a worker thread or the driver) may run now.
//!
//! Exactly one participant holds the baton at a time, so a program runs one step at a time in
//! program order, whatever the threads: execution is deterministic. Passing it is a store to
//! one atomic. A waiting participant spins on that atomic (with a pause instruction) for a
//! bounded time before it parks; the passer unparks it only if it went to sleep. Back-to-back
//! steps on different threads therefore cost a cache-line transfer, not an OS wake-up, and a
//! participant that waits long costs nothing.
//!
//! The spin budget adapts, per participant, as an adaptive mutex's does: a wait that ends while
//! spinning raises it (towards a few times what that wait took), a wait that had to park halves
//! it. On idle cores the holder's steps are short and hand-offs stay in the spin; on CPUs busy
//! with other work, where a spinning waiter would only keep the holder from running, the
//! budget falls to a microsecond and waiters park almost at once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Pause-instruction rounds between two looks at the clock.
const SPINS_PER_CHECK: u32 = 32;
/// Bounds of the adaptive spin budget, in nanoseconds.
const MIN_PATIENCE: u64 = 1_000;
const MAX_PATIENCE: u64 = 100_000;

/// The baton of one program, for `participants` participants numbered from 0.
pub(crate) struct Baton {
    turn: AtomicUsize,
    sleeping: Vec<AtomicBool>,
    /// Each participant's current spin budget, in nanoseconds.
    patience: Vec<AtomicU64>,
    threads: Mutex<Vec<Option<Thread>>>,
}

impl Baton {
    /// A baton held by participant `first`.
    pub fn new(participants: usize, first: usize) -> Baton {
        Baton {
            turn: AtomicUsize::new(first),
            sleeping: (0..participants).map(|_| AtomicBool::new(false)).collect(),
            patience: (0..participants).map(|_| AtomicU64::new(MAX_PATIENCE / 4)).collect(),
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

    /// Waits until `me` holds the baton: spins for up to `me`'s budget (at most `cap`), then
    /// parks.
    pub fn wait(&self, me: usize, cap: Duration) {
        let budget = self.patience[me].load(Ordering::Relaxed);
        let patience = Duration::from_nanos(budget).min(cap);
        let start = Instant::now();
        while !patience.is_zero() {
            for _ in 0..SPINS_PER_CHECK {
                if self.turn.load(Ordering::Acquire) == me {
                    let took = start.elapsed().as_nanos() as u64;
                    let grown = (budget + budget / 4).max(4 * took).min(MAX_PATIENCE);
                    self.patience[me].store(grown, Ordering::Relaxed);
                    return;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= patience {
                self.patience[me].store((budget / 2).max(MIN_PATIENCE), Ordering::Relaxed);
                break;
            }
        }
        self.sleeping[me].store(true, Ordering::SeqCst);
        while self.turn.load(Ordering::SeqCst) != me {
            // An unpark that came first makes this return at once: no wake-up is lost.
            std::thread::park();
        }
        self.sleeping[me].store(false, Ordering::SeqCst);
    }
}
