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
//! the raw key that names it (version and index). A program has few disposers, as each is a
//! function or a type, so they are stored once per thread rather than once per object. The
//! check a C borrow needs (key, type tag, kind, busy, empty) reads the slot alone, and the
//! busy mark is set and cleared through a `Cell`, so a borrow needs no mutable access to the
//! table. The busy mark is a bit of the slot's key word that no in-bounds key has (the top bit
//! of the index half, above the kind bit: indices stay below 2^30), so the one comparison a
//! borrow makes of the decoded key with that word checks the version and the kind exactly and
//! that the entry is neither busy nor empty.
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

/// What a C destructor's disposer holds where a Rust type's holds its `NativeType`.
static NOT_RUST: NativeType =
    NativeType { type_id: TypeId::of::<NotRust>(), drop: not_rust_drop, type_name: std::any::type_name::<NotRust> };

/// Never called: no object has `NOT_RUST` as its type (it is never in a `Kind`).
fn not_rust_drop(_: *mut c_void) {}

/// A thread's disposers, each with the number of live entries that use it.
#[derive(Default)]
struct Disposers {
    /// Indexed by an entry's disposer index; a slot with no users is on `free`.
    list: Vec<(Disposer, usize)>,
    /// The Rust type of each disposer in `list` (`NOT_RUST` for a C destructor), by the same
    /// index: what a Rust borrow's type check compares with its type's (`same_type`).
    natives: Vec<&'static NativeType>,
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

    /// Whether the disposer at `index` is of Rust type `wanted`; `false` for a C destructor's.
    ///
    /// # Safety
    /// `index` must be a live entry's disposer index.
    #[inline(always)]
    unsafe fn is_native(&self, index: u32, wanted: &'static NativeType) -> bool {
        debug_assert!((index as usize) < self.natives.len(), "not a disposer index");
        // SAFETY: a live entry's disposer index came from `acquire`, which returns an index
        // of `list`; `natives` has an element for every element of `list` (they are pushed
        // together) and neither ever shrinks.
        unsafe { self.natives.get_unchecked(index as usize) }.same_type(wanted)
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
                    let native = match disposer {
                        Disposer::Native(native) => native,
                        Disposer::Foreign(_) => &NOT_RUST,
                    };
                    let index = match self.free.pop() {
                        Some(index) => {
                            self.list[index as usize] = (disposer, 1);
                            self.natives[index as usize] = native;
                            index
                        }
                        None if self.list.len() <= DISPOSER as usize => {
                            self.list.push((disposer, 1));
                            self.natives.push(native);
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

/// The slot names nothing: vacant (on the free list), or retired (its version was the last).
const EMPTY: u32 = 1 << 29;
/// The disposer index in the low bits of a slot's flags.
const DISPOSER: u32 = EMPTY - 1;

/// One slot: an object's bookkeeping and the raw key that names it. 24 bytes (asserted below).
#[derive(Debug)]
struct Slot {
    object: *mut c_void,
    /// The C type tag (nonzero); 0 for Rust objects. A vacant slot keeps the index of the next
    /// vacant slot here (the free list).
    type_tag: u32,
    /// `EMPTY`, or the disposer index.
    flags: Cell<u32>,
    /// The raw key a handle must decode to, to name this slot's object: the slot's version
    /// (odd, raised by 2 at every removal, never wrapped: a slot whose version is the last one
    /// is retired) above its index, with `RUST_KEY` for a Rust object. Plus `BUSY` while a
    /// borrow of the object is on the owner's stack (I4), and always while the slot is empty.
    /// A `Cell`, so a borrow marks the entry busy through the shared reference its checks used.
    key: Cell<u64>,
}

impl Slot {
    /// The version of the keys that name this slot's object, busy or not.
    #[inline(always)]
    fn version(&self) -> u32 {
        (self.key.get() >> 32) as u32
    }

    /// Whether a borrow of the object is on the owner's stack.
    #[inline(always)]
    fn is_busy(&self) -> bool {
        self.key.get() & BUSY != 0
    }
}

/// The busy mark, in a slot's key word: the top bit of its index half, which no slot index
/// has (a table has at most `MAX_SLOTS`). A key that decodes with the bit set is out of
/// bounds, so no key names a busy or empty slot, and the one comparison a borrow makes of the
/// whole key word (index, version, kind) needs no test of the mark or the flags.
const BUSY: u64 = 1 << 31;

/// The kind bit of a raw key: set in the keys of Rust objects, below `BUSY` and above every
/// index. A C borrow takes the low half of the decoded key as the index, so a Rust object's
/// key is out of bounds for it; a Rust borrow flips the bit first, so a C object's key is.
/// Either way the kind needs no test of its own on the fast path.
const RUST_KEY: u64 = 1 << 30;

/// The index bits of a raw key.
const INDEX: u32 = (RUST_KEY - 1) as u32;

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
    /// The table already has 2^30 slots (live, vacant or retired).
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
/// Slots a table may have: indices stay below `RUST_KEY` and `BUSY`.
const MAX_SLOTS: usize = 1 << 30;
/// No slot: the end of the free list, and the index no slot may have.
const NO_SLOT: u32 = u32::MAX;

/// The raw key of version `version` of slot `index`, for a Rust object if `rust`.
#[inline(always)]
fn raw_key(version: u32, index: u32, rust: bool) -> u64 {
    u64::from(version) << 32 | if rust { RUST_KEY } else { 0 } | u64::from(index)
}

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
        let (type_tag, disposer, rust) = match kind {
            Kind::Foreign { type_tag, destructor } => (type_tag, Disposer::Foreign(destructor), false),
            Kind::Native(native) => (0, Disposer::Native(native), true),
        };
        if self.free == NO_SLOT && self.slots.len() >= MAX_SLOTS {
            return Err(Full::Slots);
        }
        let flags = self.disposers.acquire(disposer)?;
        let index = match self.free {
            NO_SLOT => {
                let index = self.slots.len() as u32;
                let key = Cell::new(raw_key(1, index, rust));
                self.slots.push(Slot { object, type_tag, flags: Cell::new(flags), key });
                index
            }
            index => {
                let slot = &mut self.slots[index as usize];
                self.free = slot.type_tag;
                slot.object = object;
                slot.type_tag = type_tag;
                slot.flags.set(flags);
                slot.key.set(raw_key(slot.version(), index, rust));
                index
            }
        };
        self.live += 1;
        Ok(self.mix.mix(self.slots[index as usize].key.get()))
    }

    /// The slot a handle's key names if its version matches exactly (it may be empty or busy).
    #[inline(always)]
    fn slot(&self, mixed: u64) -> Option<(u32, &Slot)> {
        let raw = self.mix.unmix(mixed);
        let index = raw as u32 & INDEX;
        let slot = self.slots.get(index as usize)?;
        (slot.key.get() & !BUSY == raw).then_some((index, slot))
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
        // Out of bounds unless the key is of the expected kind (see `RUST_KEY`).
        let index = match expected {
            Expected::Foreign(_) => raw as u32,
            Expected::Native(_) => raw as u32 ^ RUST_KEY as u32,
        };
        let slot = self.slots.get(index as usize)?;
        // Exactly the key: the right object of that kind, live, and not busy (an empty or
        // busy slot's word has `BUSY` too).
        if slot.key.get() != raw {
            return None;
        }
        let ready = match expected {
            Expected::Foreign(tag) => slot.type_tag == tag,
            // A live Rust object: its flags are its disposer index. Its type, exactly.
            // SAFETY: the slot's word is the key, so it holds a live entry (an empty slot's
            // has `BUSY`), whose flags are its disposer index.
            Expected::Native(wanted) => unsafe { self.disposers.is_native(slot.flags.get(), wanted) },
        };
        ready.then_some(Borrowed { slot: index, object: slot.object })
    }

    /// Marks a [`Table::ready`] entry busy (I4); [`Table::end_borrow`] clears the mark.
    #[inline(always)]
    pub(crate) fn mark_busy(&self, borrowed: Borrowed) {
        if let Some(slot) = self.slots.get(borrowed.slot as usize) {
            debug_assert!(!slot.is_busy(), "a busy entry was borrowed again");
            slot.key.set(slot.key.get() + BUSY);
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
        slot.key.set(slot.key.get() - BUSY);
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
    /// The mark is added and subtracted rather than its bit set and cleared: a bit operation
    /// may compile to a one-byte store, and the next borrow's eight-byte load of the key word
    /// could not be forwarded from it, which stalls that load until the store reaches the cache.
    #[inline(always)]
    pub(crate) fn end_borrow(&self, borrowed: Borrowed) {
        if let Some(slot) = self.slots.get(borrowed.slot as usize) {
            debug_assert!(slot.is_busy(), "a busy entry changed");
            slot.key.set(slot.key.get() - BUSY);
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
        if slot.version() == LAST_VERSION {
            slot.key.set(slot.key.get() | BUSY);
            slot.type_tag = 0;
            self.retired += 1;
        } else {
            // The next version's key, which no handle carries yet, and empty.
            slot.key.set(raw_key(slot.version() + 2, index, false) | BUSY);
            slot.type_tag = self.free;
            self.free = index;
        }
        self.live -= 1;
        Ok(removed)
    }

    /// The mixed keys of every live entry (for cleanup, which must survive re-entrant destructors).
    pub(crate) fn live_keys(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|slot| slot.flags.get() & EMPTY == 0)
            .map(|slot| self.mix.mix(slot.key.get() & !BUSY))
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
        let mut table = Table::new(KeyMix::from_seed(1, 3));
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
        let mut table = Table::new(KeyMix::from_seed(4, 6));
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

    // Different bodies: identical functions may be merged into one address in release builds.
    unsafe extern "C-unwind" fn destructor_a(_: *mut c_void) {
        std::hint::black_box(1u8);
    }
    unsafe extern "C-unwind" fn destructor_b(_: *mut c_void) {
        std::hint::black_box(2u8);
    }

    #[test]
    fn entries_share_one_disposer_per_destructor() {
        // One value of each function pointer: two casts of one function need not compare
        // equal (Miri makes them differ), which would only cost a disposer each.
        let (a, b): (ForeignDestructor, ForeignDestructor) = (destructor_a, destructor_b);
        let mut table = Table::new(KeyMix::from_seed(1, 1));
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
        let mut table = Table::new(KeyMix::from_seed(3, 3));
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
        let mut table = Table::new(KeyMix::from_seed(5, 5));
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
        let mut table = Table::new(KeyMix::from_seed(2, 2));
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

    /// Every raw value near a slot's own word, mixed as a forger with the secret would: the
    /// busy and empty words, the neighbouring versions (a busy mark one below the version
    /// was once forgeable), and the other kind bit. None may pass the fast check.
    #[test]
    fn no_forged_key_names_a_busy_empty_or_other_kind_entry() {
        let native = crate::api::native_type::<u64>();
        let mut table = Table::new(KeyMix::from_seed(9, 9));
        let foreign_key = table.insert(std::ptr::dangling_mut(), foreign(7)).unwrap();
        let native_key = table.insert(std::ptr::dangling_mut(), Kind::Native(native)).unwrap();
        let gone = table.insert(std::ptr::dangling_mut(), foreign(7)).unwrap();
        table.remove(gone, None).unwrap();
        let near = |mixed: u64| {
            let raw = table.mix.unmix(mixed);
            let mut raws = vec![raw | BUSY, raw ^ RUST_KEY, raw ^ RUST_KEY | BUSY];
            for version in [1u64, 2, 3] {
                raws.extend([raw.wrapping_sub(version << 32), raw.wrapping_add(version << 32)]);
                raws.extend([raw.wrapping_sub(version << 32) | BUSY, raw.wrapping_add(version << 32) | BUSY]);
            }
            raws.into_iter().map(|raw| table.mix.mix(raw)).collect::<Vec<u64>>()
        };
        let both = [Expected::Foreign(7), Expected::Native(native)];
        // Not busy: only the key itself, and only for its kind.
        for (key, right, wrong) in [(foreign_key, both[0], both[1]), (native_key, both[1], both[0])] {
            assert!(table.ready(key, right).is_some());
            assert!(table.ready(key, wrong).is_none(), "a key of the other kind");
            for forged in near(key) {
                assert!(both.iter().all(|&expected| table.ready(forged, expected).is_none()), "{forged:#x}");
            }
        }
        // Busy: nothing, the key included.
        for (key, expected) in [(foreign_key, both[0]), (native_key, both[1])] {
            let borrowed = table.begin_borrow(key, expected).unwrap();
            for forged in near(key).into_iter().chain([key]) {
                assert!(both.iter().all(|&expected| table.ready(forged, expected).is_none()), "{forged:#x}");
                assert!(forged == key || !table.contains(forged), "{forged:#x}");
            }
            table.end_borrow(borrowed);
        }
        // Empty: nothing, whatever version a key names.
        for forged in near(gone).into_iter().chain([gone]) {
            assert!(both.iter().all(|&expected| table.ready(forged, expected).is_none()), "{forged:#x}");
            assert!(!table.contains(forged), "{forged:#x}");
        }
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
        let mut table = Table::new(KeyMix::from_seed(7, 9));
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
