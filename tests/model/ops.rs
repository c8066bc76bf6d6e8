//! The operations a misuse program is made of, and the events their execution leaves behind.
//!
//! Ops are resolved values (concrete handles, fixed object numbers): the decoder builds them
//! from the input bytes and the model's state, a worker thread executes them against the
//! library, and the model replays them against the trace of events the execution recorded.

use threadguard::{Handle, Token};

/// The harness's number for an object: unique within one program, never 0. For C objects it
/// is also the object pointer the library hands to callbacks and destructors.
pub type ObjId = u64;

/// Which surface an op goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// The C ABI (`threadguard::ffi::tg_*`), called from Rust.
    C,
    /// The safe Rust API (`threadguard::register`, `with`, ...).
    Rust,
    /// Functions written by `export_thread_affine!` for the `Exported` type.
    Export,
}

/// The two Rust types objects are registered as (two, so that a wrong type can be asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RustType {
    A,
    B,
}

/// What an object is, which decides how it is type-checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// Registered with `tg_register` and this type tag (0 is refused as an invalid argument).
    C { tag: u32 },
    /// Registered with `threadguard::register`.
    Rust(RustType),
    /// Registered by the exported constructor.
    Export,
}

impl ObjectKind {
    /// Whether dropping it runs Rust code that may panic (C destructors must not unwind).
    pub fn is_native(self) -> bool {
        !matches!(self, ObjectKind::C { .. })
    }
}

/// A handle as an op names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleRef {
    /// This exact value (real, stale, foreign or forged).
    Fixed(Handle),
    /// The handle of the n-th object registered during the current step (null if fewer were).
    StepNew(usize),
}

/// How a destroy op is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyHow {
    /// `tg_destroy`: no type check.
    C,
    /// `threadguard::destroy`: no type check.
    Rust,
    /// `threadguard::destroy_as::<T>`: type checked.
    RustAs(RustType),
    /// The exported destructor: checked against `Exported`.
    Export,
}

/// A token as an op names it: resolved when the op runs, against the tokens issued so far in
/// the program (in issue order), so that tokens issued earlier in the same step can be named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRef {
    /// The n-th token issued (modulo how many there are; the null token if none).
    Issued(usize),
    /// That token with its check word flipped in one bit.
    Forged(usize),
    Null,
}

impl TokenRef {
    /// Which of `issued` tokens this names (`None`: the null token), and whether forged.
    pub fn pick(self, issued: usize) -> (Option<usize>, bool) {
        let (index, forged) = match self {
            TokenRef::Null => return (None, false),
            TokenRef::Issued(index) => (index, false),
            TokenRef::Forged(index) => (index, true),
        };
        if issued == 0 {
            return (None, false);
        }
        let latest = usize::MAX - index;
        let at = if latest < 4 { issued - 1 - latest % issued } else { index % issued };
        (Some(at), forged)
    }
}

/// The code of a borrow callback: more ops (nested calls at depth + 1), then maybe a panic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    pub ops: Vec<Op>,
    /// Panic at the end (only through the Rust API and exported methods: C callbacks must not unwind).
    pub panic: bool,
}

/// What an object's destructor does besides recording that it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OnDrop {
    #[default]
    Nothing,
    /// Panic (Rust objects only).
    Panic,
    /// Call back into the library from the destructor, these ops in order.
    Run(Vec<Op>),
}

/// One call into the library, with what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Register {
        kind: ObjectKind,
        obj: ObjId,
        null_out: bool,
        on_drop: OnDrop,
    },
    /// Borrow: `tg_with` (`tag`, `null_fn` = NULL callback), `threadguard::with::<rust>`, or
    /// the exported method (`null_fn` = NULL out pointer).
    With {
        api: Api,
        handle: HandleRef,
        tag: u32,
        rust: RustType,
        null_fn: bool,
        body: Body,
    },
    Destroy {
        how: DestroyHow,
        handle: HandleRef,
    },
    DestroyLater {
        api: Api,
        handle: HandleRef,
    },
    RunPending {
        api: Api,
    },
    Cleanup {
        api: Api,
    },
    OwnerOf {
        api: Api,
        handle: HandleRef,
        null_out: bool,
    },
    /// `tg_detach(handle, tag)` (C) or `threadguard::detach::<rust>` (Rust).
    Detach {
        api: Api,
        handle: HandleRef,
        tag: u32,
        rust: RustType,
        null_out: bool,
    },
    /// `tg_adopt` (C) or `threadguard::adopt::<rust>` (Rust).
    Adopt {
        api: Api,
        token: TokenRef,
        rust: RustType,
        null_out: bool,
    },
    /// `tg_token_destroy` (C) or `threadguard::destroy_token` (Rust).
    TokenDestroy {
        api: Api,
        token: TokenRef,
    },
}

/// A top-level step of a program, on one of the worker slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run an op on the slot's worker.
    Op { slot: usize, op: Op },
    /// The slot's worker thread ends (its thread-local destructors run); a new one takes its slot.
    Exit { slot: usize },
}

/// Where a status was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// An op of the program (top level or inside a callback).
    Op,
    /// The op a destructor ran for this object.
    Drop(ObjId),
}

/// The status recorded when a panic propagated out of the Rust API's `with` (not a library code).
pub const RUST_PANIC: i32 = -1;

/// The payload of every panic the harness causes on purpose.
pub const INTENTIONAL_PANIC: &str = "threadguard-model: intentional panic";

/// What the execution of a step did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A registration succeeded.
    Registered { obj: ObjId, handle: Handle },
    /// A detach succeeded and issued this token.
    Detached { token: Token },
    /// An adoption succeeded: the object now has this handle.
    Adopted { handle: Handle },
    /// A borrow callback started with this object.
    Callback { obj: ObjId },
    /// An object's destructor ran (or a refused Rust value was dropped) on this thread.
    Dropped { obj: ObjId, thread: u64 },
    /// An op returned. `message` is the error text for a failure; `value` is what an
    /// owner-of query or exported method wrote (0 otherwise).
    Status { site: Site, code: i32, message: String, value: u64 },
}
