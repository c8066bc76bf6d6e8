//! Shared handles: the `tg_handle`s of runners and completion queues.
//!
//! Object handles are thread-affine: their `owner` is a thread ID and they resolve only on
//! that thread. Runner and completion-queue handles exist to be used from any thread, so they
//! live in process-wide registries instead, and are told apart from object handles by their
//! `owner` field, which holds a value no thread ID ever takes (thread IDs stop short of
//! `identity::FIRST_RESERVED_OWNER`):
//!
//! | handle           | `owner`                                          | `key`            |
//! |------------------|--------------------------------------------------|------------------|
//! | object           | its owner thread's ID, below `0xFFFF_FFFF_FFFF_FF00` | mixed slot key |
//! | runner           | [`RUNNER_OWNER`] (`u64::MAX`)                    | mixed runner ID  |
//! | completion queue | [`QUEUE_OWNER`] (`u64::MAX - 1`)                 | mixed queue ID   |
//!
//! So an object entry point given a shared handle sees an owner that was never issued and
//! answers `TG_ERR_STALE`, and a runner entry point given an object handle (or a queue handle)
//! answers `TG_ERR_WRONG_TYPE`; neither touches anything (I2, I6).
//!
//! Generation check (I2): each registry issues IDs from its own counter, which never goes
//! back, so an ID is never reused and a handle can never name a later runner (the same
//! `ids::Ids` type as the thread registry). The registry keeps only live entries (bounded by what is alive, however many have come and gone); an ID
//! below the counter that is not live was stopped or destroyed (`TG_ERR_SHUT_DOWN`), one at or
//! above it was never issued (`TG_ERR_STALE`). The key a handle carries is the ID passed
//! through the registry's own secret permutation (`keymix`), so a forged or bit-flipped key
//! decodes to an unrelated 64-bit ID, which is live with probability about `live / 2^64`.

use crate::error::{Error, Status};
use crate::guard::refuse;
use crate::handle::Handle;
use crate::identity::FIRST_RESERVED_OWNER;
use crate::ids::{Ids, Lookup};
use crate::keymix::KeyMix;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The `owner` value of every runner handle.
///
/// cbindgen:ignore
pub const RUNNER_OWNER: u64 = u64::MAX;
/// The `owner` value of every completion-queue handle.
///
/// cbindgen:ignore
pub const QUEUE_OWNER: u64 = u64::MAX - 1;

/// A process-wide registry of one kind of shared object.
pub(crate) struct Registry<T> {
    /// "runner", "completion queue": for messages.
    kind: &'static str,
    /// What happened to an entry that is no longer live: "stopped", "destroyed".
    gone: &'static str,
    owner: u64,
    state: RwLock<Ids<T>>,
    mix: OnceLock<KeyMix>,
}

impl<T> Registry<T> {
    pub(crate) const fn new(kind: &'static str, gone: &'static str, owner: u64) -> Registry<T> {
        Registry { kind, gone, owner, state: RwLock::new(Ids::new(u64::MAX)), mix: OnceLock::new() }
    }

    fn mix(&self) -> &KeyMix {
        self.mix.get_or_init(KeyMix::random)
    }

    fn read(&self) -> RwLockReadGuard<'_, Ids<T>> {
        self.state.read().unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Ids<T>> {
        self.state.write().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Registers `value` under a fresh ID and returns its handle.
    pub(crate) fn insert(&self, value: Arc<T>) -> Result<Handle, Error> {
        let Some((id, _)) = self.write().issue(|_| value) else {
            return Err(Error::new(Status::Limit, format!("the {} ID counter is exhausted", self.kind)));
        };
        Ok(Handle { owner: self.owner, key: self.mix().mix(id) })
    }

    /// The live entry `handle` names, checked in this order: null (`TG_ERR_NULL_HANDLE`),
    /// another kind of handle (`TG_ERR_WRONG_TYPE`), a never-issued ID or an owner value that
    /// names no kind (`TG_ERR_STALE`), an entry that is gone (`TG_ERR_SHUT_DOWN`).
    pub(crate) fn resolve(&self, op: &str, handle: Handle) -> Result<Arc<T>, Error> {
        if handle.is_null() {
            return Err(refuse(Status::NullHandle, format!("{op}: null handle (expected a {})", self.kind)));
        }
        if handle.owner != self.owner {
            return Err(self.not_this_kind(op, handle));
        }
        let id = self.mix().unmix(handle.key);
        let gone = match self.read().lookup(id) {
            Lookup::Live(value) => return Ok(Arc::clone(value)),
            Lookup::Gone => true,
            Lookup::NeverIssued => false,
        };
        if gone {
            Err(Error::new(Status::ShutDown, format!("{op}: {} {handle:?} has been {}", self.kind, self.gone)))
        } else {
            Err(refuse(
                Status::Stale,
                format!("{op}: handle {handle:?} names no {} (never issued: a forged or corrupted handle)", self.kind),
            ))
        }
    }

    /// Removes the entry `handle` names; `None` if it is not live.
    pub(crate) fn remove(&self, handle: Handle) -> Option<Arc<T>> {
        if handle.owner != self.owner {
            return None;
        }
        let id = self.mix().unmix(handle.key);
        self.write().remove(id)
    }

    #[cold]
    fn not_this_kind(&self, op: &str, handle: Handle) -> Error {
        let expected = self.kind;
        match describe_owner(handle.owner) {
            Some(actual) => refuse(Status::WrongType, format!("{op}: handle {handle:?} is {actual}, not a {expected}")),
            None => refuse(
                Status::Stale,
                format!(
                    "{op}: handle {handle:?} names no {expected} (its owner value is reserved and unused: a forged or corrupted handle)"
                ),
            ),
        }
    }
}

/// What kind of handle an owner value marks; `None` for reserved values no kind uses.
fn describe_owner(owner: u64) -> Option<String> {
    match owner {
        RUNNER_OWNER => Some("a runner handle".to_owned()),
        QUEUE_OWNER => Some("a completion-queue handle".to_owned()),
        owner if owner < FIRST_RESERVED_OWNER => Some(format!("an object handle (owner thread {owner})")),
        _ => None,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    static NUMBERS: Registry<u32> = Registry::new("number", "dropped", RUNNER_OWNER);

    #[test]
    fn handles_resolve_until_removed_and_never_again() {
        let handle = NUMBERS.insert(Arc::new(7)).unwrap();
        assert_eq!(handle.owner, RUNNER_OWNER);
        assert_eq!(*NUMBERS.resolve("t", handle).unwrap(), 7);
        assert_eq!(NUMBERS.remove(handle).map(|n| *n), Some(7));
        assert!(NUMBERS.remove(handle).is_none());
        assert_eq!(NUMBERS.resolve("t", handle).unwrap_err().status(), Status::ShutDown);
        let next = NUMBERS.insert(Arc::new(8)).unwrap();
        assert_ne!(next, handle, "IDs are never reused");
        assert_eq!(NUMBERS.resolve("t", handle).unwrap_err().status(), Status::ShutDown);
        for bit in 0..64 {
            let forged = Handle { key: next.key ^ (1 << bit), ..next };
            assert_eq!(NUMBERS.resolve("t", forged).unwrap_err().status(), Status::Stale, "bit {bit}");
        }
        NUMBERS.remove(next);
    }

    #[test]
    fn other_kinds_of_handle_are_told_apart() {
        let status = |owner| NUMBERS.resolve("t", Handle { owner, key: 1 }).unwrap_err().status();
        assert_eq!(NUMBERS.resolve("t", Handle::NULL).unwrap_err().status(), Status::NullHandle);
        assert_eq!(status(QUEUE_OWNER), Status::WrongType);
        assert_eq!(status(1), Status::WrongType);
        assert_eq!(status(FIRST_RESERVED_OWNER), Status::Stale);
    }

    #[test]
    fn an_exhausted_id_counter_is_refused_never_wrapped() {
        let registry: Registry<u32> = Registry::new("number", "dropped", QUEUE_OWNER);
        let first = registry.insert(Arc::new(1)).unwrap();
        assert!(registry.remove(Handle { owner: RUNNER_OWNER, ..first }).is_none(), "another kind's handle");
        registry.write().exhaust();
        let issued = registry.read().issued();
        let error = registry.insert(Arc::new(2)).unwrap_err();
        assert_eq!(error.status(), Status::Limit);
        assert_eq!(error.message(), "the number ID counter is exhausted");
        assert_eq!(registry.read().live.len(), 1, "nothing was registered");
        assert_eq!(registry.read().issued(), issued, "the counter did not wrap");
        assert_eq!(*registry.resolve("t", first).unwrap(), 1);
    }
}
