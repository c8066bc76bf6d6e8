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
//!
//! An entry is 16 bytes (24 with the slot's version): the object pointer, the C type tag, and
//! a word of flags and an index into the thread's list of *disposers* (a C destructor, or a
//! Rust type's drop and `TypeId`). A program has few of those, as each is a function or a
//! type, so they are stored once per thread rather than once per object. The check a C
//! borrow needs (type tag, kind, busy, retired) reads the entry alone.
//!
//! A caller may pass any number of distinct destructor pointers, so disposers are counted:
//! each knows how many live entries use it and is reclaimed (its index reused) when the last
//! one goes. Registration finds a disposer in O(1): the last one used, else a hash map keyed
//! by the destructor's address or the Rust `TypeId` (SipHash with per-table random keys, so
//! chosen pointers cannot force collisions). The map holds one entry per disposer in use; the
//! list, whose freed indices are reused, as many as were ever in use at once.

use crate::keymix::KeyMix;
use slotmap::{DefaultKey, Key, KeyData, SlotMap};
use std::any::TypeId;
use std::collections::HashMap;
use std::ffi::c_void;

/// A C destructor: `void (*)(void *object)`.
pub type ForeignDestructor = unsafe extern "C-unwind" fn(object: *mut c_void);

/// How a Rust-native object is typed and dropped: one static instance per registered type.
#[derive(Debug)]
pub(crate) struct NativeType {
    /// `TypeId::of::<T>()`; compared exactly, never hashed down (a collision would be a type confusion).
    pub(crate) type_id: TypeId,
    /// `drop(Box::<T>::from_raw(ptr))`.
    pub(crate) drop: unsafe fn(*mut c_void),
    /// `std::any::type_name::<T>`, for messages.
    pub(crate) type_name: fn() -> &'static str,
}

impl NativeType {
    /// Whether both describe the same Rust type. The same `T` may have several `NativeType`
    /// instances (one per codegen unit), so pointer equality is only the fast path.
    #[inline]
    fn same_type(&'static self, other: &'static NativeType) -> bool {
        std::ptr::eq(self, other) || self.type_id == other.type_id
    }
}

/// What kind of object an entry holds, which decides how it is type-checked and destroyed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A C object: checked by its `u32` type tag, destroyed by its optional C destructor.
    Foreign { type_tag: u32, destructor: Option<ForeignDestructor> },
    /// A Rust object (`Box<T>`): checked by `TypeId`, destroyed by dropping the box.
    Native(&'static NativeType),
}

/// The type a caller expects a handle to name.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expected {
    /// A C object registered with this nonzero type tag.
    Foreign(u32),
    /// A Rust object of this type.
    Native(&'static NativeType),
}

/// How an object is destroyed: what entries share through their disposer index.
#[derive(Clone, Copy, Debug)]
enum Disposer {
    Foreign(Option<ForeignDestructor>),
    Native(&'static NativeType),
}

impl Disposer {
    fn same(self, other: Disposer) -> bool {
        match (self, other) {
            (Disposer::Foreign(a), Disposer::Foreign(b)) => a.map(|f| f as usize) == b.map(|f| f as usize),
            (Disposer::Native(a), Disposer::Native(b)) => a.same_type(b),
            _ => false,
        }
    }

    /// What identifies the disposer in the map: the same value exactly when `same` holds.
    fn key(self) -> DisposerKey {
        match self {
            Disposer::Foreign(destructor) => DisposerKey::Foreign(destructor.map_or(0, |f| f as usize)),
            Disposer::Native(native) => DisposerKey::Native(native.type_id),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum DisposerKey {
    /// A C destructor's address (0 for none).
    Foreign(usize),
    Native(TypeId),
}

/// A thread's disposers, each with the number of live entries that use it.
#[derive(Default)]
struct Disposers {
    /// Indexed by an entry's disposer index; a slot with no users is on `free`.
    list: Vec<(Disposer, usize)>,
    free: Vec<u32>,
    index: HashMap<DisposerKey, u32>,
    /// The index the last registration used: most objects share a few disposers.
    last: u32,
}

impl Disposers {
    /// The disposer at `index` (of a live entry).
    #[inline]
    fn get(&self, index: u32) -> Disposer {
        self.list[index as usize].0
    }

    /// The index of `disposer`, added if new, with one more user.
    fn acquire(&mut self, disposer: Disposer) -> Result<u32, TooManyDisposers> {
        let index = match self.list.get_mut(self.last as usize) {
            Some((known, users)) if *users > 0 && known.same(disposer) => {
                *users += 1;
                return Ok(self.last);
            }
            _ => match self.index.get(&disposer.key()) {
                Some(&index) => {
                    self.list[index as usize].1 += 1;
                    index
                }
                None => {
                    let index = match self.free.pop() {
                        Some(index) => {
                            self.list[index as usize] = (disposer, 1);
                            index
                        }
                        None if self.list.len() <= DISPOSER as usize => {
                            self.list.push((disposer, 1));
                            (self.list.len() - 1) as u32
                        }
                        None => return Err(TooManyDisposers),
                    };
                    self.index.insert(disposer.key(), index);
                    index
                }
            },
        };
        self.last = index;
        Ok(index)
    }

    /// One user fewer of the disposer at `index`; the last one reclaims it.
    fn release(&mut self, index: u32) {
        let (disposer, users) = &mut self.list[index as usize];
        *users -= 1;
        if *users == 0 {
            self.index.remove(&disposer.key());
            self.free.push(index);
        }
    }

    /// Disposers in use.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.index.len()
    }
}

/// Set while a borrow of this object is on the owner's stack (I4).
const BUSY: u32 = 1 << 31;
/// A Rust object; its disposer is `Disposer::Native`.
const NATIVE: u32 = 1 << 30;
/// A tombstone: the slot's version is the last one, so it never resolves again.
const RETIRED: u32 = 1 << 29;
/// The disposer index in the low bits of `Entry::flags`.
const DISPOSER: u32 = RETIRED - 1;

/// One object's bookkeeping: 16 bytes (24 with the slot's version), asserted below.
#[derive(Debug)]
pub(crate) struct Entry {
    object: *mut c_void,
    /// The C type tag (nonzero); 0 for Rust objects and tombstones.
    type_tag: u32,
    /// `BUSY | NATIVE | RETIRED | disposer index`.
    flags: u32,
}

static_assertions::const_assert!(std::mem::size_of::<Entry>() == 16);

/// An entry taken out of the table, its destructor not yet run.
#[derive(Debug)]
pub(crate) struct Removed {
    pub(crate) object: *mut c_void,
    pub(crate) kind: Kind,
}

/// Why a key was refused.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refusal {
    /// Nothing there: never was, destroyed, or retired.
    Stale,
    /// Something else is there (what is, for the message).
    WrongType(Kind),
    /// Borrowed further up the owner's stack.
    Busy,
}

/// A registration refused because the thread's live objects already use 2^29 distinct
/// destructors and Rust types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooManyDisposers;

/// A live borrow's slot and object, from [`Table::begin_borrow`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Borrowed {
    pub(crate) slot: DefaultKey,
    pub(crate) object: *mut c_void,
    /// The entry's flags before the borrow, which [`Table::end_borrow`] restores.
    flags: u32,
}

/// A thread's table of objects.
pub(crate) struct Table {
    slots: SlotMap<DefaultKey, Entry>,
    disposers: Disposers,
    mix: KeyMix,
    live: usize,
    retired: usize,
}

/// The last version a slot may carry before it would wrap into an old key.
const LAST_VERSION: u32 = u32::MAX;

impl Table {
    pub(crate) fn new(mix: KeyMix) -> Table {
        Table { slots: SlotMap::new(), disposers: Disposers::default(), mix, live: 0, retired: 0 }
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
    pub(crate) fn insert(&mut self, object: *mut c_void, kind: Kind) -> Result<u64, TooManyDisposers> {
        let (type_tag, disposer, native) = match kind {
            Kind::Foreign { type_tag, destructor } => (type_tag, Disposer::Foreign(destructor), 0),
            Kind::Native(native) => (0, Disposer::Native(native), NATIVE),
        };
        let flags = self.disposers.acquire(disposer)? | native;
        let key = self.slots.insert(Entry { object, type_tag, flags });
        self.live += 1;
        Ok(self.mix.mix(key.data().as_ffi()))
    }

    /// Decodes a handle's key, rejecting values `KeyData::as_ffi` never produces for an
    /// occupied slot (even versions), so that decoding is one-to-one.
    #[inline]
    fn decode(&self, mixed: u64) -> Option<DefaultKey> {
        let raw = self.mix.unmix(mixed);
        if (raw >> 32) & 1 == 0 {
            return None;
        }
        Some(KeyData::from_ffi(raw).into())
    }

    /// The slot of the live entry a handle's key names.
    #[inline]
    fn find(&self, mixed: u64) -> Result<DefaultKey, Refusal> {
        let slot = self.decode(mixed).ok_or(Refusal::Stale)?;
        match self.slots.get(slot) {
            Some(entry) if entry.flags & RETIRED == 0 => Ok(slot),
            _ => Err(Refusal::Stale),
        }
    }

    /// Whether a handle's key names a live object.
    pub(crate) fn contains(&self, mixed: u64) -> bool {
        self.find(mixed).is_ok()
    }

    /// Checks a handle's key for a borrow (stale, then type, then busy) and marks the entry
    /// busy. [`Table::end_borrow`] clears the mark.
    #[inline]
    pub(crate) fn begin_borrow(&mut self, mixed: u64, expected: Expected) -> Result<Borrowed, Refusal> {
        let slot = self.decode(mixed).ok_or(Refusal::Stale)?;
        let Some(entry) = self.slots.get_mut(slot) else {
            return Err(Refusal::Stale);
        };
        // The common case in one comparison of the entry: the expected tag (or a Rust object),
        // neither busy nor retired. Anything else takes the slow path, which tells them apart.
        let ready = match expected {
            Expected::Foreign(tag) => entry.type_tag == tag && entry.flags & (BUSY | NATIVE | RETIRED) == 0,
            Expected::Native(wanted) => {
                entry.flags & (BUSY | NATIVE | RETIRED) == NATIVE
                    && matches!(self.disposers.get(entry.flags & DISPOSER),
                                Disposer::Native(actual) if actual.same_type(wanted))
            }
        };
        if !ready {
            return Err(self.refusal(slot, expected));
        }
        let flags = entry.flags;
        entry.flags = flags | BUSY;
        Ok(Borrowed { slot, object: entry.object, flags })
    }

    /// Clears the busy mark set by [`Table::begin_borrow`]. A busy entry cannot be removed,
    /// so the slot still holds the same entry, with the same flags but for the mark.
    ///
    /// The flags are written whole rather than the mark cleared in place: clearing one bit
    /// compiles to a one-byte store, and the next borrow's four-byte load of the flags cannot
    /// be forwarded from it, which stalls that load until the store reaches the cache.
    #[inline]
    pub(crate) fn end_borrow(&mut self, borrowed: Borrowed) {
        if let Some(entry) = self.slots.get_mut(borrowed.slot) {
            debug_assert_eq!(entry.flags, borrowed.flags | BUSY, "a busy entry changed");
            entry.flags = borrowed.flags;
        }
    }

    /// Why the entry in occupied `slot` is not ready for a borrow of type `expected`.
    #[cold]
    #[inline(never)]
    fn refusal(&self, slot: DefaultKey, expected: Expected) -> Refusal {
        if self.slots[slot].flags & RETIRED != 0 {
            Refusal::Stale
        } else if !self.has_type(slot, expected) {
            Refusal::WrongType(self.kind_of(slot))
        } else {
            debug_assert!(self.slots[slot].flags & BUSY != 0, "refused a ready entry");
            Refusal::Busy
        }
    }

    /// Whether the live entry in `slot` is of type `expected`.
    fn has_type(&self, slot: DefaultKey, expected: Expected) -> bool {
        match (expected, self.kind_of(slot)) {
            (Expected::Foreign(tag), Kind::Foreign { type_tag, .. }) => tag == type_tag,
            (Expected::Native(wanted), Kind::Native(actual)) => actual.same_type(wanted),
            _ => false,
        }
    }

    /// What the live entry in `slot` holds.
    fn kind_of(&self, slot: DefaultKey) -> Kind {
        let entry = &self.slots[slot];
        match self.disposers.get(entry.flags & DISPOSER) {
            Disposer::Foreign(destructor) => Kind::Foreign { type_tag: entry.type_tag, destructor },
            Disposer::Native(native) => Kind::Native(native),
        }
    }

    /// Takes a live entry out, checked as a destroy must be: stale, then type (if `expected`
    /// is given), then busy. Its slot is freed for reuse, or retired if its version is the last.
    pub(crate) fn remove(&mut self, mixed: u64, expected: Option<Expected>) -> Result<Removed, Refusal> {
        let slot = self.find(mixed)?;
        if expected.is_some_and(|expected| !self.has_type(slot, expected)) {
            return Err(Refusal::WrongType(self.kind_of(slot)));
        }
        if self.slots[slot].flags & BUSY != 0 {
            return Err(Refusal::Busy);
        }
        let removed = Removed { object: self.slots[slot].object, kind: self.kind_of(slot) };
        self.disposers.release(self.slots[slot].flags & DISPOSER);
        if slot.data().as_ffi() >> 32 == u64::from(LAST_VERSION) {
            self.slots[slot] = Entry { object: std::ptr::null_mut(), type_tag: 0, flags: RETIRED };
            self.retired += 1;
        } else {
            self.slots.remove(slot);
        }
        self.live -= 1;
        Ok(removed)
    }

    /// The mixed keys of every live entry (for cleanup, which must survive re-entrant destructors).
    pub(crate) fn live_keys(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(_, entry)| entry.flags & RETIRED == 0)
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
        let first = table.insert(std::ptr::null_mut(), foreign(1)).unwrap();
        assert!(table.contains(first));
        table.remove(first, None).unwrap();
        assert!(!table.contains(first));
        assert!(matches!(table.remove(first, None), Err(Refusal::Stale)));
        let second = table.insert(std::ptr::null_mut(), foreign(1)).unwrap();
        assert_ne!(first, second, "a reused slot has a new version");
        assert!(!table.contains(first));
        assert!(table.contains(second));
        assert_eq!(table.live(), 1);
    }

    #[test]
    fn forged_keys_do_not_resolve() {
        let mut table = Table::new(KeyMix::from_seed(4, 5, 6));
        let objects = if cfg!(miri) { 50 } else { 1000 }; // Miri: fewer, same code
        let keys: Vec<u64> = (0..objects).map(|_| table.insert(std::ptr::null_mut(), foreign(1)).unwrap()).collect();
        for &key in &keys {
            for bit in 0..64 {
                assert!(!table.contains(key ^ (1 << bit)), "bit {bit} flip resolved");
            }
        }
        for forged in [0, 1, 2, u64::MAX, 1 << 32, (1 << 32) | 1] {
            assert!(!table.contains(forged));
        }
    }

    #[test]
    fn a_slot_fits_in_24_bytes() {
        // The slot adds a u32 version to the entry, padded to 24 bytes. The budget is 48 bytes
        // per live object, and right after the table doubles half of it is spare capacity.
        assert!(std::mem::size_of::<Entry>() + 4 <= 24);
    }

    unsafe extern "C-unwind" fn destructor_a(_: *mut c_void) {}
    unsafe extern "C-unwind" fn destructor_b(_: *mut c_void) {}

    #[test]
    fn entries_share_one_disposer_per_destructor() {
        // One value of each function pointer: two casts of one function need not compare
        // equal (Miri makes them differ), which would only cost a disposer each.
        let (a, b): (ForeignDestructor, ForeignDestructor) = (destructor_a, destructor_b);
        let mut table = Table::new(KeyMix::from_seed(1, 1, 1));
        let kind_a = Kind::Foreign { type_tag: 1, destructor: Some(a) };
        let kind_b = Kind::Foreign { type_tag: 2, destructor: Some(b) };
        let keys: Vec<u64> = (0..100)
            .map(|i| table.insert(std::ptr::null_mut(), if i % 3 == 0 { kind_b } else { kind_a }).unwrap())
            .collect();
        let none = table.insert(std::ptr::null_mut(), foreign(3)).unwrap();
        assert_eq!(table.disposers.in_use(), 3, "one per destructor (and one for none)");
        table.remove(none, None).unwrap();
        assert_eq!(table.disposers.in_use(), 2, "reclaimed with its last entry");
        let address = |f: ForeignDestructor| f as *const () as usize;
        for (i, &key) in keys.iter().enumerate() {
            let removed = table.remove(key, None).unwrap();
            let Kind::Foreign { type_tag, destructor: Some(destructor) } = removed.kind else { panic!() };
            let expected = if i % 3 == 0 { (2, address(b)) } else { (1, address(a)) };
            assert_eq!((type_tag, address(destructor)), expected);
        }
    }

    /// A destructor "pointer" that is never called: the table only stores and compares it.
    fn fake_destructor(address: usize) -> ForeignDestructor {
        let real: ForeignDestructor = destructor_a;
        let offset = address * 16;
        // A distinct address per value; the table never calls it.
        let pointer = (real as usize).wrapping_add(offset);
        // SAFETY: (test only) never called, only stored, hashed and compared.
        unsafe { std::mem::transmute::<usize, ForeignDestructor>(pointer) }
    }

    #[test]
    #[cfg_attr(miri, ignore = "makes function pointers from integers")]
    fn distinct_destructors_are_reclaimed_with_their_last_entry() {
        let distinct = 40_000;
        let mut table = Table::new(KeyMix::from_seed(3, 3, 3));
        for round in 0..3 {
            let keys: Vec<u64> = (0..distinct)
                .map(|i| {
                    let kind = Kind::Foreign { type_tag: 1, destructor: Some(fake_destructor(i + 1)) };
                    table.insert(std::ptr::null_mut(), kind).unwrap()
                })
                .collect();
            assert_eq!(table.disposers.in_use(), distinct, "round {round}: one per distinct destructor");
            for key in keys {
                table.remove(key, None).unwrap();
            }
            assert_eq!(table.disposers.in_use(), 0, "round {round}: every disposer reclaimed");
            assert_eq!(table.disposers.list.len(), distinct, "round {round}: indices are reused, not appended");
        }
    }

    #[test]
    fn a_reclaimed_index_names_its_new_disposer() {
        let (a, b): (ForeignDestructor, ForeignDestructor) = (destructor_a, destructor_b);
        let mut table = Table::new(KeyMix::from_seed(5, 5, 5));
        let first = table.insert(std::ptr::null_mut(), Kind::Foreign { type_tag: 1, destructor: Some(a) }).unwrap();
        table.remove(first, None).unwrap();
        let second = table.insert(std::ptr::null_mut(), Kind::Foreign { type_tag: 1, destructor: Some(b) }).unwrap();
        let third = table.insert(std::ptr::null_mut(), Kind::Foreign { type_tag: 1, destructor: Some(a) }).unwrap();
        let address = |kind: Kind| match kind {
            Kind::Foreign { destructor: Some(destructor), .. } => destructor as *const () as usize,
            _ => 0,
        };
        assert_eq!(address(table.remove(second, None).unwrap().kind), b as *const () as usize);
        assert_eq!(address(table.remove(third, None).unwrap().kind), a as *const () as usize);
        assert_eq!(table.disposers.in_use(), 0);
    }

    #[test]
    fn a_borrow_checks_type_then_busy_and_marks_the_entry() {
        let mut table = Table::new(KeyMix::from_seed(2, 2, 2));
        let key = table.insert(std::ptr::dangling_mut(), foreign(7)).unwrap();
        assert!(matches!(
            table.begin_borrow(key, Expected::Foreign(8)),
            Err(Refusal::WrongType(Kind::Foreign { type_tag: 7, .. }))
        ));
        let borrowed = table.begin_borrow(key, Expected::Foreign(7)).unwrap();
        assert_eq!(borrowed.object, std::ptr::dangling_mut());
        assert!(matches!(table.begin_borrow(key, Expected::Foreign(7)), Err(Refusal::Busy)));
        // A wrong type is reported before busy, as for a destroy.
        assert!(matches!(table.begin_borrow(key, Expected::Foreign(8)), Err(Refusal::WrongType(_))));
        assert!(matches!(table.remove(key, None), Err(Refusal::Busy)));
        table.end_borrow(borrowed);
        assert!(table.begin_borrow(key, Expected::Foreign(7)).is_ok());
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
        let first = table.insert(std::ptr::null_mut(), kind).unwrap();
        table.remove(first, None).unwrap();
        let mut reuses = 1u64;
        let last = loop {
            let key = table.insert(std::ptr::null_mut(), kind).unwrap();
            reuses += 1;
            if table.retired() == 0 && table.slots.len() > 1 {
                panic!("slot was not reused");
            }
            table.remove(key, None).unwrap();
            if table.retired() == 1 {
                break key;
            }
        };
        assert_eq!(reuses, 1 << 31, "every odd version used once");
        // The retired slot never answers again, neither its last key nor its first.
        assert!(!table.contains(last));
        assert!(!table.contains(first));
        let fresh = table.insert(std::ptr::null_mut(), kind).unwrap();
        assert_ne!(fresh, first);
        assert!(!table.contains(first));
        assert!(table.contains(fresh));
        assert_eq!(table.slots.len(), 2, "a new slot was taken instead of the retired one");
    }
}
