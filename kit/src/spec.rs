//! What a library author lists: the types of objects and the operations on them.

use threadguard::Handle;
use threadguard::ffi::{
    TG_ERR_BUSY, TG_ERR_NULL_HANDLE, TG_ERR_OWNER_EXITED, TG_ERR_PANIC, TG_ERR_STALE, TG_ERR_WRONG_THREAD,
    TG_ERR_WRONG_TYPE, TG_OK, tg_status,
};

/// The statuses a handle check can give: every operation that takes a handle documents them.
pub const HANDLE_STATUSES: [tg_status; 6] =
    [TG_ERR_NULL_HANDLE, TG_ERR_WRONG_THREAD, TG_ERR_OWNER_EXITED, TG_ERR_STALE, TG_ERR_WRONG_TYPE, TG_ERR_BUSY];

pub(crate) type CreateFn = dyn Fn(u64) -> (tg_status, Handle) + Send + Sync;
pub(crate) type CallFn = dyn Fn(Handle, u64) -> tg_status + Send + Sync;
pub(crate) type HandleFn = dyn Fn(Handle) -> tg_status + Send + Sync;
pub(crate) type BorrowFn = dyn Fn(Handle, &mut dyn FnMut()) -> tg_status + Send + Sync;

/// A type of object in a [`Spec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kind(pub(crate) usize);

pub(crate) struct KindSpec {
    pub name: &'static str,
    pub witnessed: bool,
    /// How to borrow an object of this kind (see [`Spec::borrow`]).
    pub borrow: Option<Box<BorrowFn>>,
}

/// What an operation does, as far as the kit is concerned.
pub(crate) enum OpFn {
    /// Makes a new object on the calling thread and returns its handle.
    Create(Box<CreateFn>),
    /// Uses an object; a refused call must change nothing.
    Call(Box<CallFn>),
    /// Destroys an object now (owner only, type checked).
    Destroy(Box<HandleFn>),
    /// Asks the owner to destroy an object, from any thread.
    DestroyLater(Box<HandleFn>),
}

pub(crate) struct OpSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub f: OpFn,
    /// Documented statuses, as a bit set over the codes 0..=31.
    pub documented: u32,
}

pub(crate) fn mask(codes: &[tg_status]) -> u32 {
    codes.iter().filter(|&&code| (0..32).contains(&code)).fold(0, |mask, &code| mask | 1 << code)
}

/// An operation just added to a [`Spec`], to set what it documents.
pub struct OpBuilder<'s> {
    op: &'s mut OpSpec,
}

impl OpBuilder<'_> {
    /// Sets the statuses the operation documents (replacing the default: `TG_OK`, plus
    /// [`HANDLE_STATUSES`] for operations that take a handle, plus `TG_ERR_PANIC` for
    /// destructors). A status outside this list fails the program.
    pub fn documents(self, codes: &[tg_status]) -> Self {
        self.op.documented = mask(codes) | 1 << TG_OK;
        self
    }

    /// Adds statuses to the documented ones (e.g. `TG_ERR_INVALID_ARGUMENT` for an argument
    /// the operation rejects after the handle checks). They count as refusals: no effect.
    pub fn also(self, codes: &[tg_status]) -> Self {
        self.op.documented |= mask(codes);
        self
    }
}

/// The API under test: kinds of objects and the operations on them, as closures.
///
/// Each closure runs on a kit worker thread and returns the operation's `tg_status` (for a
/// Rust API returning `Result<_, threadguard::Error>`, use [`crate::status`]). The `u64`
/// argument is a small number (0..=255) from the fuzzer input, for the operation to pick its
/// arguments with.
#[derive(Default)]
pub struct Spec {
    pub(crate) kinds: Vec<KindSpec>,
    pub(crate) ops: Vec<OpSpec>,
}

impl Spec {
    /// An empty spec.
    pub fn new() -> Spec {
        Spec::default()
    }

    /// A kind of object whose values carry no [`crate::Witness`]: the kit sees them through
    /// threadguard (its handles and counters) only.
    pub fn kind(&mut self, name: &'static str) -> Kind {
        self.kinds.push(KindSpec { name, witnessed: false, borrow: None });
        Kind(self.kinds.len() - 1)
    }

    /// A kind of object whose constructor creates exactly one [`crate::Witness`], which is
    /// dropped with it: the kit also checks where each object is created, touched and dropped.
    pub fn witnessed_kind(&mut self, name: &'static str) -> Kind {
        self.kinds.push(KindSpec { name, witnessed: true, borrow: None });
        Kind(self.kinds.len() - 1)
    }

    /// How to borrow an object of `kind`, as the library's own operations do (optional).
    ///
    /// `f(handle, inside)` borrows the object the handle names, calls `inside()` exactly once
    /// while the borrow holds, and returns the borrow's status: for a Rust type,
    /// `status(&threadguard::with::<T, _>(handle, |_| inside()))`; for a C library, `tg_with`
    /// with the kind's type tag and a callback that calls `inside` through its context.
    ///
    /// With it, programs also contain re-entrant steps for `kind`: the kit borrows one of the
    /// thread's objects of `kind` and runs a method, destructor or deferred destructor of
    /// `kind` on the same handle inside the borrow. There threadguard refuses methods and
    /// destructors with `TG_ERR_BUSY` (or a refusal the operation adds with
    /// [`OpBuilder::also`]), with no effect; a deferred destructor may also return `TG_OK`
    /// (`tg_destroy_later` accepts a busy object): the object is then destroyed once, on its
    /// owner, when the borrow ends. Nothing may be created or destroyed while the borrow holds.
    pub fn borrow(
        &mut self,
        kind: Kind,
        f: impl Fn(Handle, &mut dyn FnMut()) -> tg_status + Send + Sync + 'static,
    ) -> &mut Self {
        assert!(kind.0 < self.kinds.len(), "kind {kind:?} is not from this spec");
        self.kinds[kind.0].borrow = Some(Box::new(f));
        self
    }

    fn add(&mut self, kind: Kind, name: &'static str, f: OpFn, documented: u32) -> OpBuilder<'_> {
        assert!(kind.0 < self.kinds.len(), "kind {kind:?} is not from this spec");
        self.ops.push(OpSpec { name, kind, f, documented });
        OpBuilder { op: self.ops.last_mut().expect("just pushed") }
    }

    /// A constructor: makes an object of `kind` owned by the calling thread and returns
    /// `(status, handle)`; on `TG_OK` the handle names the new object. Documents `TG_OK`.
    pub fn create(
        &mut self,
        kind: Kind,
        name: &'static str,
        f: impl Fn(u64) -> (tg_status, Handle) + Send + Sync + 'static,
    ) -> OpBuilder<'_> {
        self.add(kind, name, OpFn::Create(Box::new(f)), mask(&[TG_OK]))
    }

    /// A method: uses the object of `kind` the handle names (on its owner, after threadguard's
    /// checks). Documents `TG_OK` and [`HANDLE_STATUSES`].
    pub fn call(
        &mut self,
        kind: Kind,
        name: &'static str,
        f: impl Fn(Handle, u64) -> tg_status + Send + Sync + 'static,
    ) -> OpBuilder<'_> {
        self.add(kind, name, OpFn::Call(Box::new(f)), mask(&[TG_OK]) | mask(&HANDLE_STATUSES))
    }

    /// A destructor: destroys the object of `kind` now (owner only, type checked). Documents
    /// `TG_OK`, [`HANDLE_STATUSES`] and `TG_ERR_PANIC` (the object is destroyed all the same).
    pub fn destroy(
        &mut self,
        kind: Kind,
        name: &'static str,
        f: impl Fn(Handle) -> tg_status + Send + Sync + 'static,
    ) -> OpBuilder<'_> {
        self.add(kind, name, OpFn::Destroy(Box::new(f)), mask(&[TG_OK, TG_ERR_PANIC]) | mask(&HANDLE_STATUSES))
    }

    /// A deferred destructor: asks the owner to destroy the object, from any thread
    /// (`tg_destroy_later` semantics: from another thread only the owner is checked). Documents
    /// `TG_OK` and [`HANDLE_STATUSES`].
    pub fn destroy_later(
        &mut self,
        kind: Kind,
        name: &'static str,
        f: impl Fn(Handle) -> tg_status + Send + Sync + 'static,
    ) -> OpBuilder<'_> {
        self.add(kind, name, OpFn::DestroyLater(Box::new(f)), mask(&[TG_OK]) | mask(&HANDLE_STATUSES))
    }
}
