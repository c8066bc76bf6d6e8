//! Status codes and the error type every checked operation returns.
//!
//! A [`Status`] is what a C caller sees (`tg_status`, an `int32_t`); an [`Error`] pairs it with the
//! human-readable detail that becomes the thread's last-error message. Codes are stable ABI:
//! they are never renumbered, only added to.

use crate::refusal::{Refusal, What};
use std::ffi::CStr;
use std::fmt;
use std::sync::OnceLock;

/// Why a checked operation was refused. The discriminants are the C `TG_ERR_*` values.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The handle is the null handle (all zeros).
    NullHandle = 1,
    /// The handle belongs to another thread that is still alive.
    WrongThread = 2,
    /// The handle belongs to a thread that has exited; its objects are gone.
    OwnerExited = 3,
    /// The handle names nothing: destroyed, forged, or its owner ID was never issued.
    Stale = 4,
    /// The object exists but was registered with another type.
    WrongType = 5,
    /// The object is borrowed further up this thread's stack (re-entrant use).
    Busy = 6,
    /// A required pointer argument (callback or out pointer) is null.
    NullPointer = 7,
    /// An argument is outside its documented range.
    InvalidArgument = 8,
    /// A panic was caught inside the library or in Rust code it called.
    Panic = 9,
    /// The thread, runner or queue is shutting down or has shut down.
    ShutDown = 10,
    /// A documented capacity limit was reached.
    Limit = 11,
    /// A blocking wait ran out of time.
    Timeout = 12,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 12] = [
        Status::NullHandle,
        Status::WrongThread,
        Status::OwnerExited,
        Status::Stale,
        Status::WrongType,
        Status::Busy,
        Status::NullPointer,
        Status::InvalidArgument,
        Status::Panic,
        Status::ShutDown,
        Status::Limit,
        Status::Timeout,
    ];

    /// The C code of this status (`TG_ERR_*`).
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The status with C code `code`, or `None` for `TG_OK` and unknown codes.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The C name of this status, e.g. `"TG_ERR_WRONG_THREAD"`.
    pub fn name(self) -> &'static str {
        // The names are ASCII literals below, so the conversion cannot fail.
        self.c_name().to_str().unwrap_or("TG_ERR_UNKNOWN")
    }

    /// The C name as a NUL-terminated string (what `tg_status_name` returns).
    pub const fn c_name(self) -> &'static CStr {
        match self {
            Status::NullHandle => c"TG_ERR_NULL_HANDLE",
            Status::WrongThread => c"TG_ERR_WRONG_THREAD",
            Status::OwnerExited => c"TG_ERR_OWNER_EXITED",
            Status::Stale => c"TG_ERR_STALE",
            Status::WrongType => c"TG_ERR_WRONG_TYPE",
            Status::Busy => c"TG_ERR_BUSY",
            Status::NullPointer => c"TG_ERR_NULL_POINTER",
            Status::InvalidArgument => c"TG_ERR_INVALID_ARGUMENT",
            Status::Panic => c"TG_ERR_PANIC",
            Status::ShutDown => c"TG_ERR_SHUT_DOWN",
            Status::Limit => c"TG_ERR_LIMIT",
            Status::Timeout => c"TG_ERR_TIMEOUT",
        }
    }

    /// Whether this status is a caller mistake counted as a violation (as opposed to a
    /// condition such as a panic, a shutdown, a full queue or a timeout).
    pub const fn is_violation(self) -> bool {
        matches!(
            self,
            Status::NullHandle
                | Status::WrongThread
                | Status::OwnerExited
                | Status::Stale
                | Status::WrongType
                | Status::Busy
                | Status::NullPointer
                | Status::InvalidArgument
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused or failed operation: its [`Status`] and a message saying which handle, which
/// owner and which calling thread were involved.
///
/// A refusal is kept as facts and worded when [`Error::message`] (or `Display`) first asks
/// (see `refusal`), so refusing a call never formats a message nobody reads.
#[derive(Clone, Debug)]
pub struct Error {
    status: Status,
    /// Boxed: a `Result<(), Error>` then comes back in two registers, so a function that
    /// inlines a borrow's fast path needs no stack frame for its slow path's result.
    detail: Box<Detail>,
}

#[derive(Clone, Debug)]
enum Detail {
    Text(String),
    Refused(Refusal, OnceLock<String>),
}

impl Error {
    /// An error with `status` and a detail message.
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, detail: Box::new(Detail::Text(message.into())) }
    }

    /// An error for a refusal recorded as facts, worded on first use.
    pub(crate) fn refused(refusal: Refusal) -> Error {
        Error { status: refusal.status, detail: Box::new(Detail::Refused(refusal, OnceLock::new())) }
    }

    /// An error for a refusal whose message was already worded (to be printed by a policy).
    pub(crate) fn refused_worded(refusal: Refusal, text: String) -> Error {
        Error { status: refusal.status, detail: Box::new(Detail::Refused(refusal, OnceLock::from(text))) }
    }

    /// The status code.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The detail message (the same text a C caller reads with `tg_last_error`).
    pub fn message(&self) -> &str {
        match &*self.detail {
            Detail::Text(text) => text,
            Detail::Refused(refusal, worded) => worded.get_or_init(|| refusal.word()),
        }
    }

    /// What the thread's last error keeps of this error: its facts, unless already worded.
    pub(crate) fn into_last(self) -> Refusal {
        match *self.detail {
            Detail::Refused(refusal, worded) => match worded.into_inner() {
                Some(text) => Refusal { what: What::Text(text), ..refusal },
                None => refusal,
            },
            Detail::Text(text) => Refusal::new(self.status, "", 0, What::Text(text)),
        }
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        match refusal.what {
            What::Text(text) => Error::refused_worded(Refusal { what: What::Text(String::new()), ..refusal }, text),
            _ => Error::refused(refusal),
        }
    }
}

impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        self.status == other.status && self.message() == other.message()
    }
}

impl Eq for Error {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_nonzero_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for s in Status::ALL {
            assert_ne!(s.code(), 0);
            assert!(seen.insert(s.code()), "duplicate code {}", s.code());
            assert_eq!(Status::from_code(s.code()), Some(s));
            assert!(s.name().starts_with("TG_ERR_"));
        }
        assert_eq!(Status::from_code(0), None);
        assert_eq!(Status::from_code(999), None);
    }
}
