//! The per-thread object table.
//!
//! Each thread owns one table, reachable only through that thread's state (I1). Entries live in
//! a `slotmap::SlotMap`: a slot's 32-bit version changes on every removal, so a key from a
//! destroyed object no longer matches (I2). `slotmap` lets versions wrap after 2^31 reuses of
//! one slot, which would bring an old key back to life; this table *retires* a slot instead:
//! an entry whose version is the last one is replaced by a tombstone that stays occupied
//! forever (one slot per 2^31 reuses: bounded memory under any churn).
//!
//! The table stores what a call needs to reach an object, not the object: foreign objects are
//! the caller's `void*`, Rust objects are boxed. Nothing moves while borrowed, so callbacks can
//! run with the table released and may register, borrow and destroy other objects.

use crate::keymix::KeyMix;
use slotmap::{DefaultKey, Key, KeyData, SlotMap};
use std::any::TypeId;
use std::ffi::c_void;

/// A C destructor: `void (*)(void *object)`.
pub type ForeignDestructor = unsafe extern "C" fn(object: *mut c_void);

/// How a Rust-native object is typed and dropped: one static instance per registered type.
#[derive(Debug)]
pub(crate) struct NativeType {
    /// `TypeId::of::<T>`; compared exactly, never hashed down (a collision would be a type confusion).
    pub(crate) type_id: fn() -> TypeId,
    /// `drop(Box::<T>::from_raw(ptr))`.
    pub(crate) drop: unsafe fn(*mut c_void),
    /// `std::any::type_name::<T>`, for messages.
    pub(crate) type_name: fn() -> &'static str,
}

/// What kind of object an entry holds, which decides how it is type-checked and destroyed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A C object: checked by its `u32` type tag, destroyed by its optional C destructor.
    Foreign { type_tag: u32, destructor: Option<ForeignDestructor> },
    /// A Rust object (`Box<T>`): checked by `TypeId`, destroyed by dropping the box.
    Native(&'static NativeType),
    /// A slot whose version would wrap: never resolves again.
    Retired,
}

/// One object's bookkeeping: 32 bytes (40 with the slot's version), asserted below.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) object: *mut c_void,
    pub(crate) kind: Kind,
    /// Set while a borrow of this object is on the owner's stack (I4).
    pub(crate) busy: bool,
}

static_assertions::const_assert!(std::mem::size_of::<Entry>() <= 32);

/// An entry taken out of the table, its destructor not yet run.
#[derive(Debug)]
pub(crate) struct Removed {
    pub(crate) object: *mut c_void,
    pub(crate) kind: Kind,
}

/// Why a key did not resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Nothing there: never was, destroyed, or retired.
    Stale,
}

/// A thread's table of objects.
pub(crate) struct Table {
    slots: SlotMap<DefaultKey, Entry>,
    mix: KeyMix,
    live: usize,
    retired: usize,
}

/// The last version a slot may carry before it would wrap into an old key.
const LAST_VERSION: u32 = u32::MAX;

impl Table {
    pub(crate) fn new(mix: KeyMix) -> Table {
        Table { slots: SlotMap::new(), mix, live: 0, retired: 0 }
    }

    /// Objects currently held (tombstones excluded).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Slots retired so far on this table.
    #[cfg(test)]
    pub(crate) fn retired(&self) -> usize {
        self.retired
    }

    /// Stores an entry and returns the (mixed) key a handle will carry.
    pub(crate) fn insert(&mut self, object: *mut c_void, kind: Kind) -> u64 {
        let key = self.slots.insert(Entry { object, kind, busy: false });
        self.live += 1;
        self.mix.mix(key.data().as_ffi())
    }

    /// Decodes a handle's key, rejecting values `KeyData::as_ffi` never produces for an
    /// occupied slot (even versions), so that decoding is one-to-one.
    #[inline]
    fn decode(&self, mixed: u64) -> Result<DefaultKey, Miss> {
        let raw = self.mix.unmix(mixed);
        if (raw >> 32) & 1 == 0 {
            return Err(Miss::Stale);
        }
        Ok(KeyData::from_ffi(raw).into())
    }

    /// The live entry a handle's key names.
    #[inline]
    pub(crate) fn get(&self, mixed: u64) -> Result<&Entry, Miss> {
        match self.slots.get(self.decode(mixed)?) {
            Some(entry) if !matches!(entry.kind, Kind::Retired) => Ok(entry),
            _ => Err(Miss::Stale),
        }
    }

    /// Mutable access to the live entry a handle's key names.
    #[inline]
    pub(crate) fn get_mut(&mut self, mixed: u64) -> Result<&mut Entry, Miss> {
        let key = self.decode(mixed)?;
        match self.slots.get_mut(key) {
            Some(entry) if !matches!(entry.kind, Kind::Retired) => Ok(entry),
            _ => Err(Miss::Stale),
        }
    }

    /// Takes a live entry out. Its slot is freed for reuse, or retired if its version is the last.
    pub(crate) fn remove(&mut self, mixed: u64) -> Result<Removed, Miss> {
        let key = self.decode(mixed)?;
        let entry = match self.slots.get_mut(key) {
            Some(entry) if !matches!(entry.kind, Kind::Retired) => entry,
            _ => return Err(Miss::Stale),
        };
        debug_assert!(!entry.busy, "callers check busy before removing");
        let removed = Removed { object: entry.object, kind: entry.kind };
        if key.data().as_ffi() >> 32 == u64::from(LAST_VERSION) {
            entry.kind = Kind::Retired;
            entry.object = std::ptr::null_mut();
            self.retired += 1;
        } else {
            self.slots.remove(key);
        }
        self.live -= 1;
        Ok(removed)
    }

    /// The mixed keys of every live entry (for cleanup, which must survive re-entrant destructors).
    pub(crate) fn live_keys(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(_, entry)| !matches!(entry.kind, Kind::Retired))
            .map(|(key, _)| self.mix.mix(key.data().as_ffi()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign(tag: u32) -> Kind {
        Kind::Foreign { type_tag: tag, destructor: None }
    }

    #[test]
    fn removed_keys_go_stale_and_reused_slots_do_not_answer_old_keys() {
        let mut table = Table::new(KeyMix::from_seed(1, 2, 3));
        let first = table.insert(std::ptr::null_mut(), foreign(1));
        assert!(table.get(first).is_ok());
        table.remove(first).unwrap();
        assert_eq!(table.get(first).err(), Some(Miss::Stale));
        assert_eq!(table.remove(first).err(), Some(Miss::Stale));
        let second = table.insert(std::ptr::null_mut(), foreign(1));
        assert_ne!(first, second, "a reused slot has a new version");
        assert_eq!(table.get(first).err(), Some(Miss::Stale));
        assert!(table.get(second).is_ok());
        assert_eq!(table.live(), 1);
    }

    #[test]
    fn forged_keys_do_not_resolve() {
        let mut table = Table::new(KeyMix::from_seed(4, 5, 6));
        let keys: Vec<u64> = (0..1000).map(|_| table.insert(std::ptr::null_mut(), foreign(1))).collect();
        for &key in &keys {
            for bit in 0..64 {
                assert!(table.get(key ^ (1 << bit)).is_err(), "bit {bit} flip resolved");
            }
        }
        for forged in [0, 1, 2, u64::MAX, 1 << 32, (1 << 32) | 1] {
            assert!(table.get(forged).is_err());
        }
    }

    #[test]
    fn entry_bookkeeping_fits_the_memory_budget() {
        // The slot adds a u32 version to the entry; the budget is 48 bytes per object.
        assert!(std::mem::size_of::<Entry>() + 8 <= 48);
    }
}

#[cfg(test)]
mod retirement_tests {
    use super::*;

    /// Churns one slot through every version (2^31 reuses). Slow in debug builds: run with
    /// `cargo test --release -- --ignored` (part of `make test`).
    #[test]
    #[ignore = "2^31 iterations: run in release (make test does)"]
    fn a_slot_is_retired_instead_of_wrapping_into_an_old_key() {
        let mut table = Table::new(KeyMix::from_seed(7, 8, 9));
        let kind = Kind::Foreign { type_tag: 1, destructor: None };
        let first = table.insert(std::ptr::null_mut(), kind);
        table.remove(first).unwrap();
        let mut reuses = 1u64;
        let last = loop {
            let key = table.insert(std::ptr::null_mut(), kind);
            reuses += 1;
            if table.retired() == 0 && table.slots.len() > 1 {
                panic!("slot was not reused");
            }
            table.remove(key).unwrap();
            if table.retired() == 1 {
                break key;
            }
        };
        assert_eq!(reuses, 1 << 31, "every odd version used once");
        // The retired slot never answers again, neither its last key nor its first.
        assert!(table.get(last).is_err());
        assert!(table.get(first).is_err());
        let fresh = table.insert(std::ptr::null_mut(), kind);
        assert_ne!(fresh, first);
        assert!(table.get(first).is_err());
        assert!(table.get(fresh).is_ok());
        assert_eq!(table.slots.len(), 2, "a new slot was taken instead of the retired one");
    }
}
