//! The safe Rust API: register Rust values (including `!Send` ones such as `Rc<RefCell<_>>`)
//! on the calling thread and reach them through checked [`Handle`]s.
//!
//! These are the same checks the C entry points make; the C ABI in `ffi` is a thin layer over
//! this module and `guard`. To export a type to C with these checks, see
//! [`export_thread_affine!`](crate::export_thread_affine).

use crate::error::{Error, Status};
use crate::guard::{self, Expected};
use crate::handle::Handle;
use crate::sites::{self, Site};
use crate::table::{Kind, NativeType};
use std::ffi::c_void;
use std::panic::Location;

/// The `NativeType` of `T`: a promoted constant, so `&'static` without allocation.
pub(crate) fn native_type<T: 'static>() -> &'static NativeType {
    struct Of<T>(std::marker::PhantomData<T>);
    impl<T: 'static> Of<T> {
        const NATIVE: NativeType = NativeType {
            type_id: std::any::TypeId::of::<T>(),
            drop: drop_box::<T>,
            type_name: std::any::type_name::<T>,
        };
    }
    &Of::<T>::NATIVE
}

/// # Safety
/// `object` must come from `Box::<T>::into_raw` and not have been freed.
unsafe fn drop_box<T>(object: *mut c_void) {
    // SAFETY: guaranteed by the caller (the table pairs each pointer with its own type).
    drop(unsafe { Box::from_raw(object.cast::<T>()) });
}

/// Registers `value` on the calling thread and returns its handle.
///
/// The value lives in this thread's table until [`destroy`], [`destroy_later`],
/// [`thread_cleanup`] or this thread's exit drops it, on this thread.
///
/// # Errors
/// [`Status::ShutDown`] while this thread is destroying everything it owns (cleanup or exit),
/// or after its exit cleanup; [`Status::Limit`] if this thread's live objects already use 2^29
/// distinct Rust types and C destructors, or, on a thread's first call, if the process has no
/// thread ID or pthread key left for it. The value is then dropped here and now.
///
/// # Example
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// let list = threadguard::register(Rc::new(RefCell::new(vec![1, 2])))?;
/// threadguard::with(list, |l: &mut Rc<RefCell<Vec<i32>>>| l.borrow_mut().push(3))?;
/// assert_eq!(threadguard::with(list, |l: &mut Rc<RefCell<Vec<i32>>>| l.borrow().len())?, 3);
/// threadguard::destroy(list)?;
/// assert_eq!(threadguard::with(list, |_: &mut Rc<RefCell<Vec<i32>>>| ()).unwrap_err().status(),
///            threadguard::Status::Stale);
/// # Ok::<(), threadguard::Error>(())
/// ```
#[track_caller]
pub fn register<T: 'static>(value: T) -> Result<Handle, Error> {
    let caller = Location::caller();
    let object = Box::into_raw(Box::new(value)).cast::<c_void>();
    let registered =
        sites::at(|| Site::Rust(caller), || guard::register_entry(object, Kind::Native(native_type::<T>())));
    registered.map_err(|(error, object)| {
        // SAFETY: `object` is the box made above; registration failed, so nothing else has it.
        unsafe { drop_box::<T>(object) };
        error
    })
}

/// Borrows the `T` that `handle` names, mutably, for the duration of `f`.
///
/// # Errors
/// [`Status::NullHandle`], [`Status::WrongThread`], [`Status::OwnerExited`],
/// [`Status::Stale`], [`Status::WrongType`] (the handle names another type) and
/// [`Status::Busy`] (the object is already borrowed further up this thread's stack), in that
/// order of checking. A refused call does not run `f` and changes nothing.
///
/// A panic in `f` propagates to the caller after the borrow is released.
// Always inlined: the checks are a few dozen instructions that the caller's code then
// schedules with its own; every unusual case is one call to an out-of-line slow path.
#[inline(always)]
pub fn with<T: 'static, R>(handle: Handle, f: impl FnOnce(&mut T) -> R) -> Result<R, Error> {
    guard::borrow(
        "with",
        handle,
        Expected::Native(native_type::<T>()),
        Some(|object: *mut c_void| {
            // SAFETY: the entry's type matched `T` exactly (TypeId), so `object` came from
            // `Box::<T>::into_raw`; it is marked busy for this call, so no other reference to
            // it exists (I4), and it cannot be destroyed until the mark is cleared.
            f(unsafe { &mut *object.cast::<T>() })
        }),
        "callback",
    )
}

/// Destroys the object now. Only its owner may: from another thread this returns
/// [`Status::WrongThread`] and destroys nothing (use [`destroy_later`]).
///
/// # Errors
/// As [`with`] (without the type check); [`Status::Panic`] if the value's `Drop` panicked
/// (it still counts as destroyed and is not run again).
#[track_caller]
pub fn destroy(handle: Handle) -> Result<(), Error> {
    let caller = Location::caller();
    sites::at(|| Site::Rust(caller), || guard::destroy("destroy", handle, None))
}

/// Destroys the `T` that `handle` names now; like [`destroy`], and refused with
/// [`Status::WrongType`] if the handle names anything else.
///
/// # Errors
/// As [`destroy`], plus [`Status::WrongType`].
#[track_caller]
pub fn destroy_as<T: 'static>(handle: Handle) -> Result<(), Error> {
    let caller = Location::caller();
    sites::at(|| Site::Rust(caller), || guard::destroy("destroy", handle, Some(Expected::Native(native_type::<T>()))))
}

/// Asks the owner to destroy the object, from any thread. The owner runs the destructor right
/// after its next successful [`register`], [`with`] or [`destroy`] (outside any borrow), at
/// its [`run_pending`], its [`thread_cleanup`] or its exit.
///
/// # Errors
/// [`Status::NullHandle`]; [`Status::OwnerExited`] if the owner has exited or is exiting
/// (its objects are destroyed by its exit); [`Status::Stale`] for a never-issued owner, or,
/// on the owner itself, for a handle that names nothing; [`Status::Limit`] if the owner already
/// has [`PENDING_LIMIT`](crate::PENDING_LIMIT) requests queued that it has not run (nothing is
/// queued; the object stays owned). From another thread the key cannot be checked (only the
/// owner sees its table): a stale key is counted when the owner runs it.
pub fn destroy_later(handle: Handle) -> Result<(), Error> {
    guard::destroy_later(handle)
}

/// Runs the destroy requests other threads queued for the calling thread.
///
/// # Errors
/// [`Status::Panic`] if a destructor panicked (the others still ran).
pub fn run_pending() -> Result<(), Error> {
    guard::run_pending()
}

/// Destroys everything the calling thread owns, now, and leaves the thread usable.
///
/// # Errors
/// [`Status::Busy`] from inside a borrow (nothing is destroyed); [`Status::Panic`] if a
/// destructor panicked (the others still ran).
pub fn thread_cleanup() -> Result<(), Error> {
    guard::thread_cleanup()
}

/// The ID of the thread that owns `handle`. Any thread may ask; on the owner the key is
/// checked as well.
///
/// # Errors
/// [`Status::NullHandle`], [`Status::OwnerExited`], [`Status::Stale`].
pub fn owner_of(handle: Handle) -> Result<u64, Error> {
    guard::owner_of(handle)
}

/// The calling thread's threadguard ID: nonzero, unique for the life of the process.
///
/// # Errors
/// [`Status::ShutDown`] while this thread's thread-local destructors run.
pub fn current_thread_id() -> Result<u64, Error> {
    guard::current_thread_id()
}

/// Names the calling thread in messages (threads spawned by Rust with a name get it anyway).
///
/// # Errors
/// [`Status::ShutDown`] while this thread's thread-local destructors run.
pub fn set_thread_name(name: &str) -> Result<(), Error> {
    crate::state::with_state(|state| {
        state.record.set_name(Some(name.into()));
        Ok(())
    })
}

/// The calling thread's last-error message (empty if none): what the C API's
/// `tg_last_error` returns.
pub fn last_error() -> String {
    crate::state::with_existing_state(|state| state.read_last_error(str::to_owned)).unwrap_or_default()
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        error.status()
    }
}
