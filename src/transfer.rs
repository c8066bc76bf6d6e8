//! Ownership transfer: an owner *detaches* an object into a one-time [`Token`], and any thread
//! *adopts* the token once, becoming the object's new owner.
//!
//! A detached object is in no thread's table: its old handle answers `TG_ERR_STALE` on its old
//! owner, and on other threads while the registry remembers it (in flight, or among the last
//! [`SETTLED_MEMORY`] settled; after that, as for any handle of a live thread that is not
//! theirs, `TG_ERR_WRONG_THREAD`). No thread's exit or cleanup destroys a detached object. It waits in one process-wide
//! registry until exactly one of: an adoption (the adopter's table takes it, under a new
//! handle), or a [`destroy_token`] from any thread (its destructor runs on that thread). The
//! registry's mutex settles races: of many threads adopting or destroying one token, exactly one
//! wins and the others get `TG_ERR_STALE`.
//!
//! Tokens are never reused: a token's `id` is a counter and its `check` is the id passed through
//! a random permutation, so a forged token does not name a detached object. The registry
//! remembers the last [`SETTLED_MEMORY`] settled tokens, so that a second adoption can say
//! who adopted or destroyed the object; older ones are reported as "already adopted or
//! destroyed".
//!
//! Moving an object to another thread is sound only if it may live there: a C caller promises
//! it by detaching (the object's destructor may then run on any thread), and Rust requires
//! `T: Send`, so `Rc` values cannot be detached. A C caller cannot detach a Rust object.

use crate::error::{Error, Status};
use crate::guard::Expected;
use crate::handle::Handle;
use crate::keymix::KeyMix;
use crate::refusal::{What, describe_expected, describe_kind};
use crate::state::{ThreadState, with_state};
use crate::table::{Kind, Removed};
use static_assertions::{assert_eq_size, const_assert_eq};
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::fmt;
use std::mem::offset_of;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A one-time token for a detached object (`tg_token` in C): adopt it once (tg_adopt, Rust
/// `adopt`) or destroy it (tg_token_destroy, Rust `destroy_token`), from any thread.
///
/// Tokens are plain values like handles; the all-zero value is the null token.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Token {
    /// The token's number: nonzero, never reused.
    pub id: u64,
    /// Proof that the library issued this token (meaningless outside the library).
    pub check: u64,
}

assert_eq_size!(Token, [u64; 2]);
const_assert_eq!(offset_of!(Token, id), 0);
const_assert_eq!(offset_of!(Token, check), 8);

impl Token {
    /// The null token: all zeros, always rejected with `TG_ERR_NULL_HANDLE`.
    ///
    /// cbindgen:ignore
    pub const NULL: Token = Token { id: 0, check: 0 };

    /// Whether this is the null token.
    pub const fn is_null(self) -> bool {
        self.id == 0 && self.check == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{token={}, check={:#018x}}}", self.id, self.check)
    }
}

/// How many settled tokens the registry remembers for its messages.
///
/// cbindgen:ignore
pub const SETTLED_MEMORY: usize = 4096;

/// A detached object: what its old owner's table held.
struct Detached {
    object: *mut c_void,
    kind: Kind,
    /// The handle it had, for messages.
    from: Handle,
}

// SAFETY: a detached object belongs to no thread, and the registry never dereferences its
// pointer: it hands it to one adopter's table or one destructor call. Detaching promised that
// the object may move: `T: Send` for Rust objects (`detach`), the C caller's word for C objects
// (`tg_detach`, which refuses Rust objects).
unsafe impl Send for Detached {}

/// How a token was settled, for the messages of later attempts.
#[derive(Clone, Copy)]
enum Settled {
    Adopted { by: u64, handle: Handle, from: Handle },
    Destroyed { by: u64, from: Handle },
}

struct Registry {
    next: u64,
    mix: KeyMix,
    detached: HashMap<u64, Detached>,
    settled: HashMap<u64, Settled>,
    order: VecDeque<u64>,
    /// The old handles of the objects in `detached` and `settled`, with their tokens.
    from: HashMap<Handle, u64>,
}

impl Registry {
    fn settle(&mut self, id: u64, how: Settled) {
        if self.order.len() == SETTLED_MEMORY
            && let Some(oldest) = self.order.pop_front()
            && let Some(Settled::Adopted { from, .. } | Settled::Destroyed { from, .. }) = self.settled.remove(&oldest)
        {
            self.from.remove(&from);
        }
        self.order.push_back(id);
        self.settled.insert(id, how);
    }

    /// Takes the detached object `token` names, checked; on refusal, says why.
    fn take(&mut self, op: &str, token: Token, expected: Option<Expected>) -> Result<Detached, Refused> {
        if token.is_null() {
            return Err(Refused(Status::NullHandle, format!("{op}: null token")));
        }
        if token.id == 0 || token.id >= self.next || self.mix.mix(token.id) != token.check {
            return Err(Refused(
                Status::Stale,
                format!("{op}: token {token:?} was never issued (forged or corrupted)"),
            ));
        }
        let Some(detached) = self.detached.get(&token.id) else {
            let detail = match self.settled.get(&token.id) {
                Some(Settled::Adopted { by, handle, .. }) => {
                    format!("was already adopted by thread {} (as handle {handle:?})", describe_thread(*by))
                }
                Some(Settled::Destroyed { by, .. }) => {
                    format!(
                        "names an object already destroyed (by tg_token_destroy on thread {})",
                        describe_thread(*by)
                    )
                }
                None => "was already adopted or destroyed".to_owned(),
            };
            return Err(Refused(Status::Stale, format!("{op}: token {token:?} {detail}")));
        };
        if let Some(expected) = expected
            && !matches!((expected, detached.kind), (Expected::Native(wanted), Kind::Native(actual)) if wanted.type_id == actual.type_id)
        {
            return Err(Refused(
                Status::WrongType,
                format!(
                    "{op}: token {token:?} names {}, expected {}",
                    describe_kind(&detached.kind),
                    describe_expected(expected)
                ),
            ));
        }
        Ok(self.detached.remove(&token.id).expect("present: looked up above"))
    }
}

/// A refusal worked out under the registry's lock, reported after it is released.
struct Refused(Status, String);

fn describe_thread(id: u64) -> String {
    match crate::identity::liveness(id) {
        crate::identity::Liveness::Live(record) => record.describe(),
        _ => id.to_string(),
    }
}

static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .get_or_init(|| {
            Mutex::new(Registry {
                next: 1,
                mix: KeyMix::random(),
                detached: HashMap::new(),
                settled: HashMap::new(),
                order: VecDeque::new(),
                from: HashMap::new(),
            })
        })
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// The registry's lock, held across `fork` (see `identity::fork`) so that the child never
/// inherits it locked by a thread that does not exist there. Taken before the thread registry's
/// lock: messages worded under this lock look threads up.
pub(crate) struct ForkLock(#[allow(dead_code)] MutexGuard<'static, Registry>);

#[cfg_attr(miri, allow(dead_code))] // the fork handlers are not built under Miri
pub(crate) fn lock_for_fork() -> ForkLock {
    ForkLock(registry())
}

/// Objects detached and neither adopted nor destroyed yet (`detached` in `tg_stats`).
pub(crate) fn detached_count() -> u64 {
    registry().detached.len() as u64
}

/// Whether any handle was ever detached in this process: if not, no refusal needs
/// [`detached_refusal`] (one load, inlined into the refusal path).
#[inline(always)]
pub(crate) fn any_detached() -> bool {
    REGISTRY.get().is_some()
}

/// If `handle` was detached (and its token is in flight, or among the last [`SETTLED_MEMORY`]
/// settled), the refusal for a use of it from a thread other than its old owner: stale, with
/// what became of it. Called on the refusal path only.
#[cold]
pub(crate) fn detached_refusal(op: &str, handle: Handle) -> Option<String> {
    // Nothing was ever detached: nothing to look up (and no registry to create).
    REGISTRY.get()?;
    let registry = registry();
    let id = *registry.from.get(&handle)?;
    let fate = match registry.settled.get(&id) {
        None => "its token is not adopted yet".to_owned(),
        Some(Settled::Adopted { by, handle: new, .. }) => {
            format!("its object now has handle {new:?} on thread {}", describe_thread(*by))
        }
        Some(Settled::Destroyed { by, .. }) => {
            format!("its token was destroyed on thread {}", describe_thread(*by))
        }
    };
    Some(format!("{op}: handle {handle:?} was detached from thread {} ({fate})", describe_thread(handle.owner)))
}

impl ThreadState {
    fn refuse(&self, Refused(status, message): Refused) -> Error {
        self.violation(status, "", What::Text(message)).into()
    }
}

/// The checks of a detach, which are those of a borrow (null, owner, stale, type, busy); a
/// refusal changes nothing (I6).
fn check(state: &ThreadState, op: &'static str, handle: Handle, expected: Expected) -> Result<(), Error> {
    state.check_owner(op, handle)?;
    let table = state.table.borrow();
    let borrowed = table
        .begin_borrow(handle.key, expected)
        .map_err(|refusal| state.refused(op, handle, refusal, Some(expected)))?;
    table.end_borrow(borrowed);
    Ok(())
}

/// Checks that `handle` could be detached now, changing nothing.
pub(crate) fn check_detachable(op: &'static str, handle: Handle, expected: Expected) -> Result<(), Error> {
    with_state(|state| check(state, op, handle, expected))
}

/// Detaches the object `handle` names from the calling thread, its owner, into a token.
///
/// Checked in the order of a borrow (null, owner, stale, type, busy). Destroy requests already
/// queued to this thread are then run, as after any successful call: if one names this object,
/// it is destroyed as requested and the detach is refused with `Stale`.
pub(crate) fn detach_entry(op: &'static str, handle: Handle, expected: Expected) -> Result<Token, Error> {
    with_state(|state| {
        check(state, op, handle, expected)?;
        if state.depth.get() == 0 && state.record.inbox.has_pending() {
            // A destructor's panic concerns another object; this call still detaches.
            let _ = state.run_pending();
        }
        let removed = state.table.borrow_mut().remove(handle.key, Some(expected)).map_err(|_| {
            Error::from(state.violation(
                Status::Stale,
                op,
                What::Text(format!(
                    "{op}: handle {handle:?} was destroyed by a destroy_later request queued before the detach"
                )),
            ))
        })?;
        crate::sites::record_detached(state, handle.key);
        let mut registry = registry();
        let id = registry.next;
        registry.next += 1;
        let token = Token { id, check: registry.mix.mix(id) };
        registry.detached.insert(id, Detached { object: removed.object, kind: removed.kind, from: handle });
        registry.from.insert(handle, id);
        Ok(token)
    })
}

/// Adopts a token on the calling thread: the object joins this thread's table under a new
/// handle. With `expected`, the object must be of that type (the token stays valid otherwise).
pub(crate) fn adopt_entry(op: &'static str, token: Token, expected: Option<Expected>) -> Result<Handle, Error> {
    with_state(|state| {
        if state.cleaning.get() {
            return Err(Error::new(
                Status::ShutDown,
                format!("{op}: thread {} is destroying everything it owns (cleanup or exit)", state.describe()),
            ));
        }
        let detached = registry().take(op, token, expected).map_err(|refused| state.refuse(refused))?;
        match state.table.borrow_mut().insert(detached.object, detached.kind) {
            Ok(key) => {
                let handle = Handle { owner: state.id, key };
                crate::sites::record_adopted(state, detached.from, key);
                registry().settle(token.id, Settled::Adopted { by: state.id, handle, from: detached.from });
                Ok(handle)
            }
            Err(_) => {
                // Refused: the token stays as it was.
                registry().detached.insert(token.id, detached);
                Err(Error::new(
                    Status::Limit,
                    format!(
                        "{op}: thread {}'s live objects use 2^29 distinct destructors and Rust types",
                        state.describe()
                    ),
                ))
            }
        }
    })
}

/// Destroys a detached object on the calling thread, whichever it is.
pub(crate) fn destroy_token_entry(op: &'static str, token: Token, expected: Option<Expected>) -> Result<(), Error> {
    with_state(|state| {
        let detached = {
            let mut registry = registry();
            let detached = registry.take(op, token, expected).map_err(|refused| state.refuse(refused))?;
            registry.settle(token.id, Settled::Destroyed { by: state.id, from: detached.from });
            detached
        };
        state.run_destructor(Removed { object: detached.object, kind: detached.kind })
    })
}

/// Detaches the `T` that `handle` names from the calling thread, its owner, and returns a
/// one-time token that any thread may [`adopt`] (or [`destroy_token`]).
///
/// From now on the handle names nothing: it answers [`Status::Stale`] (on other threads, as
/// long as the registry remembers the token: see `SETTLED_MEMORY`). The
/// value is in no thread's table, so no thread's exit or cleanup drops it. `T: Send`, since
/// the value may be adopted or dropped on another thread.
///
/// # Errors
/// As [`with`](crate::with): [`Status::NullHandle`], [`Status::WrongThread`],
/// [`Status::OwnerExited`], [`Status::Stale`], [`Status::WrongType`], [`Status::Busy`] (from
/// inside the value's own borrow). Destroy requests already queued to this thread run first;
/// if one names this value, the value is dropped and the detach answers [`Status::Stale`].
///
/// # Example
/// ```
/// let handle = threadguard::register(String::from("connection"))?;
/// let token = threadguard::detach::<String>(handle)?;
/// let adopted = std::thread::spawn(move || {
///     let mine = threadguard::adopt::<String>(token)?;
///     let text = threadguard::with(mine, |s: &mut String| s.clone())?;
///     threadguard::destroy(mine)?;
///     Ok::<_, threadguard::Error>(text)
/// });
/// assert_eq!(adopted.join().unwrap()?, "connection");
/// assert_eq!(threadguard::with(handle, |_: &mut String| ()).unwrap_err().status(),
///            threadguard::Status::Stale);
/// # Ok::<(), threadguard::Error>(())
/// ```
///
/// An `Rc` is not `Send`, so it cannot be detached:
/// ```compile_fail
/// let handle = threadguard::register(std::rc::Rc::new(1))?;
/// let token = threadguard::detach::<std::rc::Rc<i32>>(handle)?;
/// # Ok::<(), threadguard::Error>(())
/// ```
pub fn detach<T: Send + 'static>(handle: Handle) -> Result<Token, Error> {
    detach_entry("detach", handle, Expected::Native(crate::api::native_type::<T>()))
}

/// Adopts a token: the `T` it names joins the calling thread's table, under a new handle
/// owned by this thread.
///
/// # Errors
/// [`Status::NullHandle`] for the null token; [`Status::Stale`] for a token already adopted
/// or destroyed, or never issued; [`Status::WrongType`] if it names another type (the token
/// stays valid); [`Status::ShutDown`] while this thread destroys everything it owns;
/// [`Status::Limit`] if this thread's live objects use 2^29 distinct types and destructors.
pub fn adopt<T: Send + 'static>(token: Token) -> Result<Handle, Error> {
    adopt_entry("adopt", token, Some(Expected::Native(crate::api::native_type::<T>())))
}

/// Drops the value a token names, on the calling thread (a detached value belongs to no
/// thread). The token is then spent.
///
/// # Errors
/// As [`adopt`], but for the shutdown and limit cases; [`Status::Panic`] if the value's `Drop`
/// panicked (it counts as destroyed all the same).
pub fn destroy_token(token: Token) -> Result<(), Error> {
    destroy_token_entry("destroy_token", token, None)
}
