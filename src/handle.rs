//! The handle: an opaque, copyable name for an object, passed by value across the C ABI.
//!
//! Layout (fixed ABI, asserted below): two 64-bit words, `owner` then `key`. `owner` is the
//! process-unique ID of the thread that created the object (see [`crate::identity`]); `key`
//! is the object's slot key in that thread's table, passed through a per-process secret
//! permutation ([`crate::keymix`]) so that a forged or bit-flipped key does not name a
//! neighbouring object (I2). The all-zero value is the null handle and never names anything.

use static_assertions::{assert_eq_align, assert_eq_size, const_assert_eq};
use std::fmt;
use std::mem::offset_of;

/// An opaque handle to a thread-owned object (`tg_handle` in C).
///
/// Handles are plain values: copying one does not copy the object, and holding one keeps
/// nothing alive. Every operation checks the handle before touching anything.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Handle {
    /// ID of the thread that owns the object; never 0 for a real handle.
    pub owner: u64,
    /// The object's key in its owner's table (mixed; meaningless outside the library).
    pub key: u64,
}

assert_eq_size!(Handle, [u64; 2]);
assert_eq_align!(Handle, u64);
const_assert_eq!(offset_of!(Handle, owner), 0);
const_assert_eq!(offset_of!(Handle, key), 8);

impl Handle {
    /// The null handle: all zeros, always rejected with `TG_ERR_NULL_HANDLE`.
    ///
    /// cbindgen:ignore
    pub const NULL: Handle = Handle { owner: 0, key: 0 };

    /// Whether this is the null handle.
    pub const fn is_null(self) -> bool {
        self.owner == 0 && self.key == 0
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{owner={}, key={:#018x}}}", self.owner, self.key)
    }
}
