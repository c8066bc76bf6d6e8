//! Tests of `refusal`: which refusals name an object for the sites mode, and the wording of
//! the rarer ones.

use crate::error::Status;
use crate::handle::Handle;
use crate::refusal::{Refusal, What};
use crate::table::{Expected, Kind};

const HANDLE: Handle = Handle { owner: 7, key: 9 };

#[test]
fn every_refusal_about_an_object_names_its_handle_and_the_others_name_none() {
    let native = crate::api::native_type::<u32>();
    let naming = [
        What::WrongThread(HANDLE),
        What::OwnerExited(HANDLE),
        What::NeverIssued(HANDLE),
        What::Reserved(HANDLE),
        What::Stale(HANDLE),
        What::StaleDeferred(HANDLE),
        What::Busy(HANDLE),
        What::WrongType(Box::new((HANDLE, Kind::Foreign { type_tag: 3, destructor: None }, Expected::Native(native)))),
        What::Detached(Box::new((HANDLE, String::from("detached")))),
    ];
    for what in &naming {
        assert_eq!(what.handle(), Some(HANDLE), "{what:?}");
    }
    let anonymous = [
        What::NullHandle,
        What::OwnerExiting(HANDLE),
        What::CleanupInBorrow,
        What::NullArgument("callback"),
        What::Text(String::from("worded")),
    ];
    for what in &anonymous {
        assert_eq!(what.handle(), None, "{what:?}");
    }
}

#[test]
fn an_exiting_owner_and_a_type_mismatch_are_worded_with_their_facts() {
    let exiting = Refusal::new(Status::OwnerExited, "destroy_later", 0, What::OwnerExiting(HANDLE)).word();
    assert_eq!(
        exiting,
        format!(
            "destroy_later: handle {HANDLE:?} is owned by thread 7, which is exiting; its objects are being destroyed"
        )
    );
    let native = crate::api::native_type::<u32>();
    let wrong_type = What::WrongType(Box::new((HANDLE, Kind::Native(native), Expected::Foreign(4))));
    let message = Refusal::new(Status::WrongType, "tg_with", 0, wrong_type).word();
    assert_eq!(message, format!("tg_with: handle {HANDLE:?} names a Rust u32, expected a C object with type tag 4"));
}
