//! Issued IDs: one type for thread identities and for runner and completion-queue handles.
//!
//! An [`Ids`] issues IDs from a counter that never goes back (never 0, never reused while the
//! process lives) and keeps the entries of the *live* IDs only, so it stays bounded by what is
//! alive however many have come and gone. Any ID then answers one of three ways
//! ([`Lookup`]): live (its entry), issued but gone (below the counter and not live), or never
//! issued (0, or at or above the counter). `identity` keeps thread records in one (gone means
//! the thread exited); `runner::registry` keeps runners and completion queues in others (gone
//! means stopped or destroyed).

use std::collections::HashMap;
use std::sync::Arc;

/// Issued IDs and the entries of the live ones. Callers put it behind their own lock.
pub(crate) struct Ids<T> {
    /// The next ID to issue; IDs below it were issued.
    next_id: u64,
    /// The first ID never to issue (the counter stops there).
    limit: u64,
    /// The live entries, by ID.
    pub(crate) live: HashMap<u64, Arc<T>, NoHash>,
}

/// What an ID names.
pub(crate) enum Lookup<'a, T> {
    /// A live entry.
    Live(&'a Arc<T>),
    /// An entry that was issued this ID and is gone.
    Gone,
    /// Nothing ever had this ID.
    NeverIssued,
}

impl<T> Ids<T> {
    /// No IDs issued yet; IDs stop short of `limit`.
    pub(crate) const fn new(limit: u64) -> Ids<T> {
        Ids { next_id: 1, limit, live: HashMap::with_hasher(NoHash) }
    }

    /// Issues the next ID to the entry `make` builds for it, and records it as live. `None`
    /// once the counter has reached the limit (nothing is built).
    pub(crate) fn issue(&mut self, make: impl FnOnce(u64) -> Arc<T>) -> Option<(u64, &Arc<T>)> {
        let id = self.next_id;
        if id >= self.limit {
            return None;
        }
        self.next_id = id + 1;
        Some((id, self.live.entry(id).or_insert(make(id))))
    }

    /// What `id` names.
    pub(crate) fn lookup(&self, id: u64) -> Lookup<'_, T> {
        match self.live.get(&id) {
            Some(entry) => Lookup::Live(entry),
            None if id != 0 && id < self.next_id => Lookup::Gone,
            None => Lookup::NeverIssued,
        }
    }

    /// Takes the live entry `id` names out: from now on `id` answers [`Lookup::Gone`].
    pub(crate) fn remove(&mut self, id: u64) -> Option<Arc<T>> {
        self.live.remove(&id)
    }

    /// How many IDs were ever issued.
    pub(crate) fn issued(&self) -> u64 {
        self.next_id - 1
    }

    /// Moves the counter to its limit, as if every ID had been issued (for tests of exhaustion).
    #[cfg(test)]
    pub(crate) fn exhaust(&mut self) {
        self.next_id = self.limit;
    }
}

/// IDs are unique integers: hash them as themselves (and keep `Ids::new` `const`).
#[derive(Clone, Copy, Default)]
pub(crate) struct NoHash;

impl std::hash::BuildHasher for NoHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// The hasher of [`NoHash`].
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Spread sequential IDs over the table's buckets.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_and_answer_live_gone_or_never_issued() {
        let mut ids: Ids<u32> = Ids::new(4);
        let (a, _) = ids.issue(|id| Arc::new(id as u32 * 10)).unwrap();
        let (b, entry) = ids.issue(|id| Arc::new(id as u32 * 10)).unwrap();
        assert_eq!((a, b, **entry), (1, 2, 20));
        assert!(matches!(ids.lookup(a), Lookup::Live(entry) if **entry == 10));
        assert_eq!(ids.remove(a).map(|entry| *entry), Some(10));
        assert!(matches!(ids.lookup(a), Lookup::Gone));
        assert!(matches!(ids.lookup(0), Lookup::NeverIssued));
        assert!(matches!(ids.lookup(3), Lookup::NeverIssued));
        let (c, _) = ids.issue(|_| Arc::new(0)).unwrap();
        assert_eq!(c, 3, "a removed ID is not issued again");
        assert!(ids.issue(|_| Arc::new(0)).is_none(), "the counter stops short of the limit");
        assert_eq!((ids.issued(), ids.live.len()), (3, 2));
    }

    #[test]
    fn an_id_hashed_as_bytes_hashes_as_the_id_itself() {
        use std::hash::{BuildHasher, Hasher};
        for id in [1u64, 2, 0x0102_0304_0506_0708, u64::MAX] {
            let mut as_u64 = NoHash.build_hasher();
            as_u64.write_u64(id);
            let mut as_bytes = NoHash.build_hasher();
            as_bytes.write(&id.to_be_bytes());
            assert_eq!(as_bytes.finish(), as_u64.finish(), "id {id:#x}");
        }
        let spread: std::collections::HashSet<u64> = (1..=64).map(|id| NoHash.hash_one(id) >> 58).collect();
        assert!(spread.len() > 32, "sequential IDs land in different buckets: {spread:?}");
    }
}
