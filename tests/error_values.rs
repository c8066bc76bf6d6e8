//! `Error` and `Status` as values: which statuses are caller mistakes counted as violations,
//! and how errors compare.

use std::sync::Mutex;
use threadguard::{Error, Handle, Status};

/// The violation counter is process-wide: the tests of this file that refuse calls take turns.
static REFUSING: Mutex<()> = Mutex::new(());

#[test]
fn the_caller_mistakes_are_violations_and_the_conditions_are_not() {
    let violations = [
        Status::NullHandle,
        Status::WrongThread,
        Status::OwnerExited,
        Status::Stale,
        Status::WrongType,
        Status::Busy,
        Status::NullPointer,
        Status::InvalidArgument,
    ];
    for status in Status::ALL {
        assert_eq!(status.is_violation(), violations.contains(&status), "{status:?}");
    }
    // A refused call with a violation status is counted; one with a condition is not.
    let _turn = REFUSING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = threadguard::stats().violations;
    assert_eq!(threadguard::destroy(Handle::NULL).unwrap_err().status(), Status::NullHandle);
    assert_eq!(threadguard::stats().violations, before + 1);
}

#[test]
fn errors_are_equal_when_status_and_message_are() {
    // A refusal recorded as facts equals an error built from its words.
    let _turn = REFUSING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let refused = threadguard::with(Handle::NULL, |_: &mut u8| ()).unwrap_err();
    let message = refused.message().to_owned();
    assert!(message.starts_with("with: null handle"), "{message}");
    assert_eq!(refused, Error::new(Status::NullHandle, message.clone()));
    assert_ne!(refused, Error::new(Status::Stale, message.clone()), "another status");
    assert_ne!(refused, Error::new(Status::NullHandle, format!("{message}.")), "another message");
}
