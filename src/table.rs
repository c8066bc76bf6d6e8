//! The per-thread object table.
//!
//! Each thread owns one table, reachable only through that thread's state (I1). Entries live in
//! a flat array of slots; a key is a slot's index and its 32-bit version, and names the slot's
//! object only while the versions match exactly. A slot's version is odd and rises by 2 at
//! every removal, so a key from a destroyed object no longer matches (I2). Versions never
//! wrap: a slot whose version is the last one is *retired* when its object goes, and stays
//! empty forever (one slot per 2^31 reuses: bounded memory under any churn).
//!
//! The table stores what a call needs to reach an object, not the object: foreign objects are
//! the caller's `void*`, Rust objects are boxed. Nothing moves while borrowed, so callbacks can
//! run with the table released and may register, borrow and destroy other objects.
//!
//! A slot is 24 bytes: the object pointer, the C type tag, a word of flags and an index into
//! the thread's list of *disposers* (a C destructor, or a Rust type's drop and `TypeId`), and
//! the version. A program has few disposers, as each is a function or a type, so they are
//! stored once per thread rather than once per object. The check a C borrow needs (version,
//! type tag, kind, busy, empty) reads the slot alone, and the busy mark is set and cleared
//! through a `Cell`, so a borrow needs no mutable access to the table. The busy mark is the
//! version's low bit: a borrowed entry's version is one less than its key's (even), so the
//! exact comparison a borrow makes of the versions also tells it the entry is not busy.
//!
//! A caller may pass any number of distinct destructor pointers, so disposers are counted:
//! each knows how many live entries use it and is reclaimed (its index reused) when the last
//! one goes. Registration finds a disposer in O(1): the last one used, else a hash map keyed
//! by the destructor's address or the Rust `TypeId` (SipHash with per-table random keys, so
//! chosen pointers cannot force collisions). The map holds one entry per disposer in use; the
//! list, whose freed indices are reused, as many as were ever in use at once.

use crate::keymix::KeyMix;
use std::any::TypeId;
use std::cell::Cell;
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

/// The type whose `TypeId` stands for "a C destructor" among a thread's disposers: private,
/// so no Rust object registered through the API has it.
struct NotRust;

/// A thread's disposers, each with the number of live entries that use it.
#[derive(Default)]
struct Disposers {
    /// Indexed by an entry's disposer index; a slot with no users is on `free`.
    list: Vec<(Disposer, usize)>,
    /// The `TypeId` of each disposer in `list` (of [`NotRust`] for a C destructor), by the
    /// same index: what a Rust borrow's type check compares, exactly, with its type's.
    type_ids: Vec<TypeId>,
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

    /// The `TypeId` of the disposer at `index` (of a live entry): of [`NotRust`] for a C
    /// destructor.
    #[inline(always)]
    fn type_id(&self, index: u32) -> Option<TypeId> {
        self.type_ids.get(index as usize).copied()
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
                    let type_id = match disposer {
                        Disposer::Native(native) => native.type_id,
                        Disposer::Foreign(_) => TypeId::of::<NotRust>(),
                    };
                    let index = match self.free.pop() {
                        Some(index) => {
                            self.list[index as usize] = (disposer, 1);
                            self.type_ids[index as usize] = type_id;
                            index
                        }
                        None if self.list.len() <= DISPOSER as usize => {
                            self.list.push((disposer, 1));
                            self.type_ids.push(type_id);
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

/// A Rust object; its disposer is `Disposer::Native`.
const NATIVE: u32 = 1 << 30;
/// The slot names nothing: vacant (on the free list), or retired (its version was the last).
const EMPTY: u32 = 1 << 29;
/// The disposer index in the low bits of a slot's flags.
const DISPOSER: u32 = EMPTY - 1;

/// One slot: an object's bookkeeping and the slot's version. 24 bytes (asserted below).
#[derive(Debug)]
struct Slot {
    object: *mut c_void,
    /// The C type tag (nonzero); 0 for Rust objects. A vacant slot keeps the index of the next
    /// vacant slot here (the free list).
    type_tag: u32,
    /// `NATIVE | EMPTY | disposer index`.
    flags: Cell<u32>,
    /// The version a key must carry to name this slot's object: odd, raised by 2 at every
    /// removal, never wrapped (a slot whose version is the last one is retired). One less
    /// (even) while a borrow of the object is on the owner's stack: the busy mark (I4). A
    /// `Cell`, so a borrow marks the entry busy through the shared reference its checks used.
    version: Cell<u32>,
}

impl Slot {
    /// The version of the keys that name this slot's object, busy or not.
    #[inline(always)]
    fn version(&self) -> u32 {
        self.version.get() | 1
    }

    /// Whether a borrow of the object is on the owner's stack.
    #[inline(always)]
    fn is_busy(&self) -> bool {
        self.version.get() & 1 == 0
    }
}

static_assertions::const_assert!(std::mem::size_of::<Slot>() == 24);

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

/// A registration refused for a capacity limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The thread's live objects already use 2^29 distinct destructors and Rust types.
    Disposers,
    /// The table already has 2^32 - 1 slots (live, vacant or retired).
    Slots,
}

impl From<TooManyDisposers> for Full {
    fn from(_: TooManyDisposers) -> Full {
        Full::Disposers
    }
}

/// A registration refused because the thread's live objects already use 2^29 distinct
/// destructors and Rust types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooManyDisposers;

/// A live borrow: its slot and its object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Borrowed {
    pub(crate) slot: u32,
    pub(crate) object: *mut c_void,
}

/// A thread's table of objects.
pub(crate) struct Table {
    slots: Vec<Slot>,
    /// The first vacant slot, or `NO_SLOT`.
    free: u32,
    disposers: Disposers,
    mix: KeyMix,
    live: usize,
    retired: usize,
}

/// The last version a slot may carry before it would wrap into an old key.
const LAST_VERSION: u32 = u32::MAX;
/// No slot: the end of the free list, and the index no slot may have.
const NO_SLOT: u32 = u32::MAX;

impl Table {
    pub(crate) fn new(mix: KeyMix) -> Table {
        Table { slots: Vec::new(), free: NO_SLOT, disposers: Disposers::default(), mix, live: 0, retired: 0 }
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
    pub(crate) fn insert(&mut self, object: *mut c_void, kind: Kind) -> Result<u64, Full> {
        let (type_tag, disposer, native) = match kind {
            Kind::Foreign { type_tag, destructor } => (type_tag, Disposer::Foreign(destructor), 0),
            Kind::Native(native) => (0, Disposer::Native(native), NATIVE),
        };
        if self.free == NO_SLOT && self.slots.len() >= NO_SLOT as usize {
            return Err(Full::Slots);
        }
        let flags = self.disposers.acquire(disposer)? | native;
        let index = match self.free {
            NO_SLOT => {
                self.slots.push(Slot { object, type_tag, flags: Cell::new(flags), version: Cell::new(1) });
                (self.slots.len() - 1) as u32
            }
            index => {
                let slot = &mut self.slots[index as usize];
                self.free = slot.type_tag;
                slot.object = object;
                slot.type_tag = type_tag;
                slot.flags.set(flags);
                index
            }
        };
        self.live += 1;
        Ok(self.mix.mix(u64::from(self.slots[index as usize].version()) << 32 | u64::from(index)))
    }

    /// The slot a handle's key names if its version matches exactly (it may be empty or busy).
    #[inline(always)]
    fn slot(&self, mixed: u64) -> Option<(u32, &Slot)> {
        let raw = self.mix.unmix(mixed);
        let index = raw as u32;
        let slot = self.slots.get(index as usize)?;
        (slot.version() == (raw >> 32) as u32).then_some((index, slot))
    }

    /// The slot of the live entry a handle's key names.
    #[inline]
    fn find(&self, mixed: u64) -> Result<u32, Refusal> {
        match self.slot(mixed) {
            Some((index, slot)) if slot.flags.get() & EMPTY == 0 => Ok(index),
            _ => Err(Refusal::Stale),
        }
    }

    /// Whether a handle's key names a live object.
    pub(crate) fn contains(&self, mixed: u64) -> bool {
        self.find(mixed).is_ok()
    }

    /// Every check of a borrow (stale, type, busy) in one pass with no side effect: the live,
    /// unborrowed entry of type `expected` that the key names, or `None` for anything else
    /// ([`Table::begin_borrow`] then tells the cases apart).
    #[inline(always)]
    pub(crate) fn ready(&self, mixed: u64, expected: Expected) -> Option<Borrowed> {
        let raw = self.mix.unmix(mixed);
        let index = raw as u32;
        let slot = self.slots.get(index as usize)?;
        // Exactly the key's version: the right object, and not busy (a busy entry's is one less).
        if slot.version.get() != (raw >> 32) as u32 {
            return None;
        }
        let flags = slot.flags.get();
        // The common case in one comparison of the flags: the expected tag (or a Rust object),
        // not empty.
        let ready = match expected {
            Expected::Foreign(tag) => slot.type_tag == tag && flags & (NATIVE | EMPTY) == 0,
            Expected::Native(wanted) => {
                // A Rust object, not empty: then the flags are its disposer index.
                let index = flags ^ NATIVE;
                // Its type, exactly (a `TypeId` is a constant where `with` is compiled).
                index <= DISPOSER && self.disposers.type_id(index) == Some(wanted.type_id)
            }
        };
        ready.then_some(Borrowed { slot: index, object: slot.object })
    }

    /// Marks a [`Table::ready`] entry busy (I4); [`Table::end_borrow`] clears the mark.
    #[inline(always)]
    pub(crate) fn mark_busy(&self, borrowed: Borrowed) {
        if let Some(slot) = self.slots.get(borrowed.slot as usize) {
            debug_assert!(!slot.is_busy(), "a busy entry was borrowed again");
            slot.version.set(slot.version.get() - 1);
        }
    }

    /// [`Table::end_borrow`] without the bounds check, for the borrow fast path.
    ///
    /// # Safety
    /// `borrowed` must come from [`Table::ready`] or [`Table::begin_borrow`] of this table.
    #[inline(always)]
    pub(crate) unsafe fn end_borrow_unchecked(&self, borrowed: Borrowed) {
        // SAFETY: the caller passes a borrow of this table, so `borrowed.slot` was the index of
        // one of its slots; slots are never taken away (the vector only grows), so it still is.
        let slot = unsafe { self.slots.get_unchecked(borrowed.slot as usize) };
        debug_assert!(slot.is_busy(), "a busy entry changed");
        slot.version.set(slot.version.get() + 1);
    }

    /// Checks a handle's key for a borrow (stale, then type, then busy) and marks the entry
    /// busy. [`Table::end_borrow`] clears the mark.
    pub(crate) fn begin_borrow(&self, mixed: u64, expected: Expected) -> Result<Borrowed, Refusal> {
        let index = self.check(mixed, Some(expected))?;
        let slot = &self.slots[index as usize];
        let borrowed = Borrowed { slot: index, object: slot.object };
        self.mark_busy(borrowed);
        Ok(borrowed)
    }

    /// Clears the busy mark set by [`Table::mark_busy`]. A busy entry cannot be removed, and
    /// slots are never taken away, so the slot still holds the same entry, with the same
    /// version but for the mark: no lookup by key is needed.
    ///
    /// The version is raised by one rather than its low bit set: setting one bit may compile to
    /// a one-byte store, and the next borrow's four-byte load of the version could not be
    /// forwarded from it, which stalls that load until the store reaches the cache.
    #[inline(always)]
    pub(crate) fn end_borrow(&self, borrowed: Borrowed) {
        if let Some(slot) = self.slots.get(borrowed.slot as usize) {
            debug_assert!(slot.is_busy(), "a busy entry changed");
            slot.version.set(slot.version.get() + 1);
        }
    }

    /// The checks of a key, in the documented order shared by every operation: stale, then
    /// type (if `expected` is given), then busy. The slot of the entry that passes them.
    #[inline]
    pub(crate) fn check(&self, mixed: u64, expected: Option<Expected>) -> Result<u32, Refusal> {
        let index = self.find(mixed)?;
        if expected.is_some_and(|expected| !self.has_type(index, expected)) {
            return Err(Refusal::WrongType(self.kind_of(index)));
        }
        if self.slots[index as usize].is_busy() {
            return Err(Refusal::Busy);
        }
        Ok(index)
    }

    /// Whether the live entry in slot `index` is of type `expected`.
    fn has_type(&self, index: u32, expected: Expected) -> bool {
        match (expected, self.kind_of(index)) {
            (Expected::Foreign(tag), Kind::Foreign { type_tag, .. }) => tag == type_tag,
            (Expected::Native(wanted), Kind::Native(actual)) => actual.same_type(wanted),
            _ => false,
        }
    }

    /// What the live entry in slot `index` holds.
    fn kind_of(&self, index: u32) -> Kind {
        let slot = &self.slots[index as usize];
        match self.disposers.get(slot.flags.get() & DISPOSER) {
            Disposer::Foreign(destructor) => Kind::Foreign { type_tag: slot.type_tag, destructor },
            Disposer::Native(native) => Kind::Native(native),
        }
    }

    /// Takes a live entry out, checked as a destroy must be: stale, then type (if `expected`
    /// is given), then busy. Its slot is freed for reuse with the next version, or retired if
    /// its version is the last.
    pub(crate) fn remove(&mut self, mixed: u64, expected: Option<Expected>) -> Result<Removed, Refusal> {
        let index = self.check(mixed, expected)?;
        let flags = self.slots[index as usize].flags.get();
        let removed = Removed { object: self.slots[index as usize].object, kind: self.kind_of(index) };
        self.disposers.release(flags & DISPOSER);
        let slot = &mut self.slots[index as usize];
        slot.object = std::ptr::null_mut();
        slot.flags.set(EMPTY);
        if slot.version.get() == LAST_VERSION {
            slot.type_tag = 0;
            self.retired += 1;
        } else {
            slot.version.set(slot.version.get() + 2);
            slot.type_tag = self.free;
            self.free = index;
        }
        self.live -= 1;
        Ok(removed)
    }

    /// The mixed keys of every live entry (for cleanup, which must survive re-entrant destructors).
    pub(crate) fn live_keys(&self) -> Vec<u64> {
        (0u32..)
            .zip(&self.slots)
            .filter(|(_, slot)| slot.flags.get() & EMPTY == 0)
            .map(|(index, slot)| self.mix.mix(u64::from(slot.version()) << 32 | u64::from(index)))
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
        // The budget is 48 bytes per live object, and right after the table doubles half of
        // it is spare capacity.
        assert!(std::mem::size_of::<Slot>() <= 24);
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
        let table = &mut table;
        assert!(matches!(
            table.begin_borrow(key, Expected::Foreign(8)),
            Err(Refusal::WrongType(Kind::Foreign { type_tag: 7, .. }))
        ));
        let borrowed = table.begin_borrow(key, Expected::Foreign(7)).unwrap();
        assert_eq!(borrowed.object, std::ptr::dangling_mut());
        assert!(matches!(table.begin_borrow(key, Expected::Foreign(7)), Err(Refusal::Busy)));
        // Busy is not stale: the key still names the entry, for every operation.
        assert!(table.ready(key, Expected::Foreign(7)).is_none(), "the fast check declines a busy entry");
        assert!(table.contains(key));
        assert_eq!(table.live_keys(), vec![key]);
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
