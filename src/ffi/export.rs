//! Exporting a Rust thread-affine type to C with the checks built in.
//!
//! [`export_thread_affine!`](crate::export_thread_affine) writes the `extern "C"` functions for
//! a type: a constructor that registers the value on the calling thread and returns a
//! `tg_handle`, methods that borrow it through the same checks as `tg_with`, and a destructor.
//! The generated functions call the helpers below, which hold the only `unsafe` (writing the
//! caller's out pointer) and the panic boundary, so an exported type cannot skip a check.

use super::boundary::{guarded, null_pointer};
use super::tg_status;
use crate::api;
use crate::guard::{self, Expected};
use crate::handle::Handle;

/// Writes `value` through `out` after the operation succeeded.
///
/// # Safety
/// `out` must be non-null and valid for writing one `T`.
unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: guaranteed by the caller.
    unsafe { out.write(value) }
}

/// Constructor body: registers `make()` on the calling thread and writes its handle to `out`.
///
/// # Safety
/// `out` must be NULL or valid for writing one `tg_handle`.
#[doc(hidden)]
pub unsafe fn construct<T: 'static>(op: &str, out: *mut Handle, make: impl FnOnce() -> T) -> tg_status {
    guarded(op, || {
        if out.is_null() {
            return Err(null_pointer(op, "out"));
        }
        let handle = api::register(make())?;
        // SAFETY: non-null (checked above) and valid for writes (the caller's contract).
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Method body: borrows the `T` behind `handle` (all checks of `tg_with`) and writes the
/// result to `out`. `out` is checked after the handle, as in every entry point.
///
/// # Safety
/// `out` must be NULL or valid for writing one `R`.
#[doc(hidden)]
pub unsafe fn call<T: 'static, R>(
    op: &'static str,
    handle: Handle,
    out: *mut R,
    method: impl FnOnce(&mut T) -> R,
) -> tg_status {
    guarded(op, || {
        let call = (!out.is_null()).then_some(|object: *mut std::ffi::c_void| {
            // SAFETY: as in `api::with`: the entry's type is exactly `T` and it is busy for this call.
            let value = method(unsafe { &mut *object.cast::<T>() });
            // SAFETY: non-null (only then is `call` Some) and valid for writes (the caller's contract).
            unsafe { write_out(out, value) };
        });
        guard::borrow(op, handle, Expected::Native(api::native_type::<T>()), call, "out")
    })
}

/// Method body for methods without a result.
#[doc(hidden)]
pub fn call_void<T: 'static>(op: &str, handle: Handle, method: impl FnOnce(&mut T)) -> tg_status {
    guarded(op, || api::with(handle, method).map(drop))
}

/// Destructor body: destroys the `T` behind `handle` now (owner only, type checked).
#[doc(hidden)]
pub fn destroy<T: 'static>(op: &'static str, handle: Handle) -> tg_status {
    guarded(op, || guard::destroy(op, handle, Some(Expected::Native(api::native_type::<T>()))))
}

/// Deferred destructor body: asks the owner to destroy the object, from any thread.
#[doc(hidden)]
pub fn destroy_later(op: &str, handle: Handle) -> tg_status {
    guarded(op, || guard::destroy_later(handle))
}

/// Writes checked `extern "C"` functions for a thread-affine Rust type.
///
/// Each item becomes one `#[no_mangle]` function returning `tg_status`:
/// - `new fn name(args) { body }`: `name(args..., tg_handle *out)` registers the value the body
///   returns on the calling thread.
/// - `fn name(this, args) -> R { body }`: `name(tg_handle, args..., R *out)` runs the body with
///   `this: &mut T` after every check of `tg_with` (owner, liveness, type, re-entrancy), writes
///   the result to `*out`; `out` NULL gives `TG_ERR_NULL_POINTER`.
/// - `fn name(this, args) { body }`: the same without a result.
/// - `destroy fn name;`: `name(tg_handle)` destroys the object now (owner only, type checked).
/// - `destroy_later fn name;`: `name(tg_handle)` asks the owner to destroy it (any thread).
///
/// Panics in bodies and `Drop` return `TG_ERR_PANIC` and never unwind into C. Argument and
/// result types must be FFI-safe.
///
/// # Example
/// ```
/// use std::{cell::RefCell, rc::Rc};
///
/// /// A counter built on `Rc<RefCell<_>>`: it must never leave its thread.
/// pub struct Counter(Rc<RefCell<i64>>);
///
/// threadguard::export_thread_affine! {
///     type Counter;
///     /// Creates a counter starting at `start`.
///     new fn counter_new(start: i64) { Counter(Rc::new(RefCell::new(start))) }
///     /// Adds `n` and returns the new value.
///     fn counter_add(this, n: i64) -> i64 { *this.0.borrow_mut() += n; *this.0.borrow() }
///     /// Destroys the counter.
///     destroy fn counter_free;
/// }
///
/// let mut handle = threadguard::Handle::NULL;
/// let mut value = 0i64;
/// // SAFETY: the out pointers are valid.
/// unsafe {
///     assert_eq!(counter_new(40, &mut handle), threadguard::ffi::TG_OK);
///     assert_eq!(counter_add(handle, 2, &mut value), threadguard::ffi::TG_OK);
/// }
/// assert_eq!(value, 42);
/// let status = std::thread::spawn(move || unsafe { counter_add(handle, 1, &mut 0) }).join().unwrap();
/// assert_eq!(status, threadguard::ffi::TG_ERR_WRONG_THREAD);
/// assert_eq!(counter_free(handle), threadguard::ffi::TG_OK);
/// ```
#[macro_export]
macro_rules! export_thread_affine {
    (type $ty:ty; $($items:tt)*) => {
        $crate::__export_thread_affine_items! { $ty; $($items)* }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_thread_affine_items {
    ($ty:ty;) => {};
    ($ty:ty; $(#[$meta:meta])* new fn $name:ident ($($arg:ident : $arg_ty:ty),* $(,)?) $body:block $($rest:tt)*) => {
        $(#[$meta])*
        ///
        /// # Safety
        /// `out` must be NULL or valid for writing one `tg_handle`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $arg_ty,)* out: *mut $crate::Handle) -> $crate::ffi::tg_status {
            // SAFETY: `out` is NULL or valid for writes: this function's documented contract.
            unsafe { $crate::ffi::export::construct::<$ty>(stringify!($name), out, move || -> $ty { $body }) }
        }
        $crate::__export_thread_affine_items! { $ty; $($rest)* }
    };
    ($ty:ty; $(#[$meta:meta])* fn $name:ident ($this:ident $(, $arg:ident : $arg_ty:ty)* $(,)?) -> $ret:ty $body:block $($rest:tt)*) => {
        $(#[$meta])*
        ///
        /// # Safety
        /// `out` must be NULL or valid for writing one result.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(handle: $crate::Handle, $($arg: $arg_ty,)* out: *mut $ret) -> $crate::ffi::tg_status {
            // SAFETY: `out` is NULL or valid for writes: this function's documented contract.
            unsafe { $crate::ffi::export::call::<$ty, $ret>(stringify!($name), handle, out, move |$this: &mut $ty| -> $ret { $body }) }
        }
        $crate::__export_thread_affine_items! { $ty; $($rest)* }
    };
    ($ty:ty; $(#[$meta:meta])* fn $name:ident ($this:ident $(, $arg:ident : $arg_ty:ty)* $(,)?) $body:block $($rest:tt)*) => {
        $(#[$meta])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(handle: $crate::Handle, $($arg: $arg_ty),*) -> $crate::ffi::tg_status {
            $crate::ffi::export::call_void::<$ty>(stringify!($name), handle, move |$this: &mut $ty| $body)
        }
        $crate::__export_thread_affine_items! { $ty; $($rest)* }
    };
    ($ty:ty; $(#[$meta:meta])* destroy fn $name:ident; $($rest:tt)*) => {
        $(#[$meta])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(handle: $crate::Handle) -> $crate::ffi::tg_status {
            $crate::ffi::export::destroy::<$ty>(stringify!($name), handle)
        }
        $crate::__export_thread_affine_items! { $ty; $($rest)* }
    };
    ($ty:ty; $(#[$meta:meta])* destroy_later fn $name:ident; $($rest:tt)*) => {
        $(#[$meta])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(handle: $crate::Handle) -> $crate::ffi::tg_status {
            $crate::ffi::export::destroy_later(stringify!($name), handle)
        }
        $crate::__export_thread_affine_items! { $ty; $($rest)* }
    };
}
