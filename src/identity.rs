//! Thread identity and the liveness registry.
//!
//! Every OS thread that touches the library gets a `u64` ID from a process-wide counter:
//! never 0 (0 marks the null handle), never reused while the process lives. This is the
//! opposite of `thread_local`'s policy, which recycles IDs to keep its tables small: here a
//! handle carries its owner's ID for its whole life, and a recycled ID would let a handle from a
//! dead thread resolve on an unrelated new one (I2).
//!
//! The registry maps the IDs of *live* threads to their record (name, inbox). It stays bounded
//! by the number of live threads however many have come and gone: an ID below the counter that
//! is not in the registry belongs to a thread that exited; an ID at or above it was never
//! issued. Only thread start, thread exit, cross-thread `destroy_later` and error paths take the
//! registry lock; the owner-thread hot path compares the handle's owner with its own cached ID.
//!
//! After `fork`, the child has one thread: the one that forked. Handlers installed with
//! `pthread_atfork` (at the first thread's first call) hold the registry's lock, the counter
//! pool's lock and the forking thread's inbox lock across the fork, so the child inherits none
//! of them held by a thread that does not exist there; in the child, every other thread is
//! removed from the registry (its handles answer `TG_ERR_OWNER_EXITED` from then on) and its
//! inbox is closed. Their objects stay in the child's memory, never destroyed (no thread
//! there owns them). The child handler takes no lock that another thread could have held and
//! allocates only through `malloc`, which glibc's `fork` leaves usable in the child.

use crate::ids::{Ids, Lookup};
use crate::inbox::Inbox;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Owner values from here up are never issued to threads: they mark the handles of
/// process-wide objects that no thread owns (runners, completion queues; see `crate::runner`).
/// Thread IDs stop short of them (`register_thread` fails instead), so an object handle and a
/// shared handle can never be confused.
pub(crate) const FIRST_RESERVED_OWNER: u64 = 0xFFFF_FFFF_FFFF_FF00;

/// What is known about the thread that owns a handle.
#[derive(Clone, Debug)]
pub(crate) enum Liveness {
    /// The thread is running; its record is attached.
    Live(Arc<ThreadRecord>),
    /// The ID was issued and its thread has exited.
    Exited,
    /// No thread ever had this ID (0, or beyond the counter).
    NeverIssued,
}

/// The shared part of a live thread's state: what other threads may see.
#[derive(Debug)]
pub(crate) struct ThreadRecord {
    pub(crate) id: u64,
    name: Mutex<Option<Arc<str>>>,
    pub(crate) inbox: Inbox,
    /// Set when the thread leaves the registry (exit, or another thread's fork): lets a
    /// holder of the record tell liveness without the registry's lock.
    exited: AtomicBool,
}

impl ThreadRecord {
    /// Whether the thread has left the registry (exited). Once true, true forever.
    pub(crate) fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// The thread's name, if it has one.
    pub(crate) fn name(&self) -> Option<Arc<str>> {
        self.name.lock().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Renames the thread (for messages only).
    pub(crate) fn set_name(&self, name: Option<Arc<str>>) {
        *self.name.lock().unwrap_or_else(|poison| poison.into_inner()) = name;
    }

    /// `7 ("gl-main")` or `7`: how messages name a thread.
    pub(crate) fn describe(&self) -> String {
        match self.name() {
            Some(name) => format!("{} ({name:?})", self.id),
            None => self.id.to_string(),
        }
    }

    /// `7 ("gl-main", alive)` or `7 (alive)`: a thread named with what is known of it.
    pub(crate) fn describe_as(&self, condition: &str) -> String {
        match self.name() {
            Some(name) => format!("{} ({name:?}, {condition})", self.id),
            None => format!("{} ({condition})", self.id),
        }
    }
}

type Registry = Ids<ThreadRecord>;

static REGISTRY: Mutex<Registry> = Mutex::new(Ids::new(FIRST_RESERVED_OWNER));

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Issues a new ID for the calling thread and records it as live.
/// Returns `None` only if the counter has reached the reserved owner values.
pub(crate) fn register_thread(name: Option<Arc<str>>) -> Option<Arc<ThreadRecord>> {
    // Miri cannot call `pthread_atfork` (and its interpreted programs never fork).
    #[cfg(all(unix, not(miri)))]
    fork::install();
    let mut registry = registry();
    let (_, record) = registry.issue(|id| {
        Arc::new(ThreadRecord { id, name: Mutex::new(name), inbox: Inbox::default(), exited: AtomicBool::new(false) })
    })?;
    Some(Arc::clone(record))
}

/// Records the thread `id` as exited. From now on its ID answers [`Liveness::Exited`].
pub(crate) fn unregister_thread(id: u64) {
    if let Some(record) = registry().remove(id) {
        record.exited.store(true, Ordering::Release);
    }
}

/// Whether `id` names a live thread, an exited one, or none ever issued.
pub(crate) fn liveness(id: u64) -> Liveness {
    match registry().lookup(id) {
        Lookup::Live(record) => Liveness::Live(Arc::clone(record)),
        Lookup::Gone => Liveness::Exited,
        Lookup::NeverIssued => Liveness::NeverIssued,
    }
}

/// What [`liveness`] says, without the record: what a refusal needs to pick its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The thread is running.
    Live,
    /// The ID was issued and its thread has exited.
    Exited,
    /// No thread ever had this ID.
    NeverIssued,
}

/// Threads currently registered, and threads ever registered.
pub(crate) fn thread_counts() -> (u64, u64) {
    let registry = registry();
    (registry.live.len() as u64, registry.issued())
}

/// The `pthread_atfork` handlers (see the module doc).
///
/// cbindgen:ignore
#[cfg(all(unix, not(miri)))]
mod fork {
    use super::{REGISTRY, Registry, ThreadRecord, registry};
    use crate::diagnostics::{self, Pool};
    use crate::inbox::InboxLock;
    use std::cell::RefCell;
    use std::ffi::c_int;
    use std::sync::{Arc, MutexGuard, Once, TryLockError};

    unsafe extern "C" {
        fn pthread_atfork(
            prepare: Option<extern "C" fn()>,
            parent: Option<extern "C" fn()>,
            child: Option<extern "C" fn()>,
        ) -> c_int;
    }

    /// The forking thread's own record, kept alive by a reference count this struct owns, and
    /// its inbox's lock.
    struct OwnInbox {
        /// Dropped (unlocked) before `release` gives the record's count back.
        _guard: InboxLock<'static>,
        record: *const ThreadRecord,
    }

    /// The locks held across one `fork`, by the thread that forks.
    struct Held {
        /// The token registry's and the site records' locks, taken first (see their modules).
        side: (crate::transfer::ForkLock, crate::sites::ForkLock),
        own: Option<OwnInbox>,
        cells: MutexGuard<'static, Pool>,
        registry: MutexGuard<'static, Registry>,
    }

    thread_local! {
        static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    }

    static INSTALL: Once = Once::new();

    pub(super) fn install() {
        INSTALL.call_once(|| {
            // SAFETY: the handlers are `extern "C" fn()` that never unwind (each catches).
            // Registration can fail only for lack of memory; the process then forks without
            // the handlers, as before they existed.
            unsafe { pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        });
    }

    extern "C" fn prepare() {
        crate::guard::catch_and_discard(|| {
            let side = (crate::transfer::lock_for_fork(), crate::sites::lock_for_fork());
            let own = crate::state::with_existing_state(|state| Arc::clone(&state.record)).map(|record| {
                let record = Arc::into_raw(record);
                // SAFETY: `record` came from `Arc::into_raw` just above; the count it carries
                // is given back only in `release`, after this guard is dropped, so the record
                // outlives the `'static` borrow the guard takes.
                let guard = unsafe { &*record }.inbox.lock_for_fork();
                OwnInbox { _guard: guard, record }
            });
            let cells = diagnostics::lock_for_fork();
            let held = Held { side, own, cells, registry: registry() };
            // If this thread's thread-locals are gone, `held` is dropped unused and the fork
            // goes ahead without the locks (the child then takes only what is free).
            let _ = HELD.try_with(|slot| slot.replace(Some(held)));
        });
    }

    /// Unlocks what `prepare` held and returns the forking thread's ID (if it has one) and
    /// the registry guard, still held.
    fn release() -> Option<(Option<u64>, MutexGuard<'static, Registry>)> {
        let held = HELD.try_with(|slot| slot.borrow_mut().take()).ok().flatten()?;
        let Held { side, own, cells, registry } = held;
        drop(cells);
        drop(side);
        let id = own.map(|own| {
            let record = own.record;
            drop(own);
            // SAFETY: `record` came from `Arc::into_raw` in `prepare`, and the guard that
            // borrowed it has just been dropped; this gives that count back exactly once.
            let record = unsafe { Arc::from_raw(record) };
            record.id
        });
        Some((id, registry))
    }

    extern "C" fn parent() {
        crate::guard::catch_and_discard(|| drop(release()));
    }

    extern "C" fn child() {
        crate::guard::catch_and_discard(|| {
            let (me, mut registry) = match release() {
                Some(held) => held,
                // `prepare` could not hold the locks: take the registry only if it is free.
                None => match REGISTRY.try_lock() {
                    Ok(registry) => (crate::state::with_existing_state(|state| state.id), registry),
                    Err(TryLockError::Poisoned(poison)) => {
                        (crate::state::with_existing_state(|state| state.id), poison.into_inner())
                    }
                    Err(TryLockError::WouldBlock) => return,
                },
            };
            let vanished: Vec<Arc<ThreadRecord>> =
                registry.live.extract_if(|id, _| Some(*id) != me).map(|(_, record)| record).collect();
            drop(registry);
            for record in vanished {
                record.exited.store(true, std::sync::atomic::Ordering::Release);
                record.inbox.abandon_after_fork();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn ids_are_unique_and_exited_threads_are_told_from_unissued_ones() {
        let a = register_thread(Some("a".into())).unwrap();
        let b = register_thread(None).unwrap();
        assert!(b.id > a.id && a.id > 0);
        assert!(matches!(liveness(a.id), Liveness::Live(_)));
        unregister_thread(a.id);
        assert!(matches!(liveness(a.id), Liveness::Exited));
        assert!(matches!(liveness(0), Liveness::NeverIssued));
        assert!(matches!(liveness(u64::MAX), Liveness::NeverIssued));
        assert_eq!(a.describe(), format!("{} (\"a\")", a.id));
        assert_eq!(b.describe(), b.id.to_string());
        assert_eq!(a.describe_as("alive"), format!("{} (\"a\", alive)", a.id));
        assert_eq!(b.describe_as("alive"), format!("{} (alive)", b.id));
        unregister_thread(b.id);
    }

    /// Set in the child process of the exhaustion test (its counter cannot be given back).
    const EXHAUSTED_CHILD: &str = "THREADGUARD_EXHAUSTED_IDS_CHILD";

    /// In a child process (this test binary again, running only this test): with the thread ID
    /// counter exhausted, a thread's first call is refused with `Limit` (never a wrapped or
    /// reused ID), every later call too, and nothing is registered or counted; a thread that
    /// never got its state exits cleanly.
    #[test]
    #[cfg_attr(miri, ignore = "starts a child process")]
    fn an_exhausted_thread_id_counter_refuses_new_threads_with_limit() {
        if std::env::var_os(EXHAUSTED_CHILD).is_none() {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "identity::tests::an_exhausted_thread_id_counter_refuses_new_threads_with_limit"])
                .args(["--nocapture", "--test-threads=1"])
                .env(EXHAUSTED_CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
            assert!(stdout.contains("1 passed"), "the child ran the test:\n{stdout}");
            return;
        }
        // A fresh process: no thread has touched the library yet.
        let before = crate::stats();
        registry().exhaust();
        let refused = || {
            let error = crate::register(0u8).unwrap_err();
            assert_eq!((error.status(), error.message()), (Status::Limit, "the 64-bit thread ID counter is exhausted"));
            assert_eq!(crate::current_thread_id().unwrap_err().status(), Status::Limit);
            // SAFETY: a null callback is refused before anything is called.
            let code = unsafe { crate::ffi::tg_with(crate::Handle::NULL, 1, None, std::ptr::null_mut()) };
            assert_eq!(code, crate::ffi::TG_ERR_LIMIT, "a C caller's first call gets the same");
        };
        refused();
        refused();
        std::thread::spawn(refused).join().unwrap();
        let after = crate::stats();
        assert_eq!((after.created, after.threads_live), (before.created, before.threads_live));
        assert_eq!(after.threads_started, FIRST_RESERVED_OWNER - 1, "the counter stays at its limit");
    }
}
