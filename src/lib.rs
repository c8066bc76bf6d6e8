//! # threadguard
//!
//! Per-thread object ownership, enforced across FFI.
//!
//! Thread-affine objects (`Rc`/`RefCell` data, objects of a per-thread garbage-collected heap,
//! GUI and GL contexts) must only be touched by the OS thread that created them. Inside Rust,
//! `!Send` says so at compile time; across a C ABI nothing does. threadguard keeps such objects
//! in the table of the thread that created them and hands out opaque [`Handle`]s that carry
//! the owner's thread ID. Every access checks owner, liveness, type and re-entrancy and
//! answers misuse with a [`Status`], never a crash, never a touch from the wrong thread.
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use threadguard::{Status, register, with};
//!
//! let counter = register(Rc::new(RefCell::new(0u32)))?;
//! with(counter, |c: &mut Rc<RefCell<u32>>| *c.borrow_mut() += 1)?;
//!
//! // Another thread may hold the handle, but not use it.
//! let refused = std::thread::spawn(move || with(counter, |_: &mut Rc<RefCell<u32>>| ()))
//!     .join()
//!     .unwrap();
//! assert_eq!(refused.unwrap_err().status(), Status::WrongThread);
//!
//! threadguard::destroy(counter)?;
//! # Ok::<(), threadguard::Error>(())
//! ```
//!
//! ## Layout
//! - `identity`: thread IDs (never reused) and the liveness registry.
//! - `ids`: issued IDs (live, gone, never issued), shared by thread identities and the
//!   runner's shared handles.
//! - `table`: the per-thread object table, with slot retirement (I2).
//! - `keymix`: the keyed permutation that keeps forged keys from naming neighbours (I2).
//! - `inbox`: deferred destruction requests and the exit handshake (I5).
//! - `state`: the calling thread's state and its exit hook (I1, I5).
//! - `current`: the thread-local word that points to it, read on every call.
//! - `guard`: the checked operations, their check order and fast paths (I2, I4, I6).
//! - `lifecycle`: deferred destroys, the cleanup and exit sweep, destructors (I3, I5).
//! - `refusal`: refusals recorded as facts, and the wording of every handle-check refusal.
//! - `transfer`: detaching an object into a one-time [`Token`] and adopting it on another
//!   thread ([`detach`], [`adopt`], [`destroy_token`]; I5).
//! - [`sites`]: the debug mode that names where objects were registered and destroyed in
//!   refusal messages.
//! - `unwind`: how C function pointers are called: a callback that unwinds aborts (I3).
//! - [`runner`]: a dedicated owner thread fed by a bounded queue, with callbacks, blocking
//!   calls and completion queues, for hosts that cannot pin their callers.
//! - [`diagnostics`]: counters, violation policy, versions.
//! - [`ffi`]: the C ABI, and nothing else (I3).
//!
//! The invariants I1 to I6 are stated in `SECURITY.md`, with the argument for each.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod api;
mod copies;
mod current;
pub mod diagnostics;
mod error;
mod guard;
mod handle;
pub(crate) mod identity;
mod ids;
mod inbox;
mod keymix;
mod lifecycle;
mod refusal;
#[cfg(test)]
mod refusal_tests;
pub mod sites;
mod state;
mod table;
mod transfer;
mod unwind;

pub mod ffi;
pub mod runner;

pub use api::{
    current_thread_id, destroy, destroy_as, destroy_later, last_error, owner_of, register, run_pending,
    set_thread_name, thread_cleanup, with,
};
pub use copies::copies_loaded;
pub use diagnostics::{ABI_VERSION, Stats, VERSION, ViolationPolicy, set_violation_policy, stats, violation_policy};
pub use error::{Error, Status};
pub use handle::Handle;
pub use inbox::PENDING_LIMIT;
pub use transfer::{SETTLED_MEMORY, Token, adopt, destroy_token, detach};
