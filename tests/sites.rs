//! The sites debug mode: refusal messages name where the object was registered and where,
//! and on which thread, it was destroyed. The mode is process-wide: tests run one at a time.

use std::sync::{Mutex, MutexGuard};
use threadguard::{Handle, Status, destroy, register, sites, with};

fn serial(on: bool) -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|poison| poison.into_inner());
    sites::set_enabled(on);
    guard
}

fn refusal(handle: Handle) -> (Status, String) {
    let error = with(handle, |_: &mut u32| ()).unwrap_err();
    (error.status(), error.message().to_owned())
}

#[test]
fn a_refusal_names_the_registration_site() {
    let _serial = serial(true);
    let line = line!() + 1;
    let handle = register(7u32).unwrap();
    let error = with(handle, |_: &mut String| ()).unwrap_err();
    assert_eq!(error.status(), Status::WrongType);
    assert!(error.message().ends_with(&format!("; registered at tests/sites.rs:{line}")), "{}", error.message());
    // Other threads see it too.
    let (status, message) = std::thread::spawn(move || refusal(handle)).join().unwrap();
    assert_eq!(status, Status::WrongThread);
    assert!(message.ends_with(&format!("; registered at tests/sites.rs:{line}")), "{message}");
    destroy(handle).unwrap();
}

#[test]
fn a_stale_handle_names_where_and_on_which_thread_it_was_destroyed() {
    let _serial = serial(true);
    let (handle, thread, registered, destroyed, message) = std::thread::Builder::new()
        .name("loader".into())
        .spawn(|| {
            let registered = line!() + 1;
            let handle = register(1u32).unwrap();
            let destroyed = line!() + 1;
            destroy(handle).unwrap();
            let (status, message) = refusal(handle);
            assert_eq!(status, Status::Stale);
            (handle, threadguard::current_thread_id().unwrap(), registered, destroyed, message)
        })
        .unwrap()
        .join()
        .unwrap();
    let expected = format!(
        "; registered at tests/sites.rs:{registered}; destroyed at tests/sites.rs:{destroyed} on thread {thread} (\"loader\")"
    );
    assert!(message.ends_with(&expected), "{message}\nexpected the end: {expected}");
    // After the loader exited, its handle is refused as its owner's, with the same sites.
    let (status, message) = refusal(handle);
    assert_eq!(status, Status::OwnerExited);
    assert!(message.ends_with(&expected), "{message}");
}

#[test]
fn exit_deferred_and_detach_say_how_the_object_went() {
    let _serial = serial(true);
    let (swept, thread) =
        std::thread::spawn(|| (register(2u32).unwrap(), threadguard::current_thread_id().unwrap())).join().unwrap();
    let (_, message) = refusal(swept);
    assert!(message.ends_with(&format!("; destroyed at thread cleanup or exit on thread {thread}")), "{message}");

    let me = threadguard::current_thread_id().unwrap();
    let deferred = register(3u32).unwrap();
    threadguard::destroy_later(deferred).unwrap();
    threadguard::run_pending().unwrap();
    let (_, message) = refusal(deferred);
    assert!(message.contains(&format!("; destroyed by a destroy_later request on thread {me}")), "{message}");

    let line = line!() + 1;
    let moved = register(4u32).unwrap();
    let token = threadguard::detach::<u32>(moved).unwrap();
    let (status, message) = refusal(moved);
    assert_eq!(status, Status::Stale);
    assert!(message.contains(&format!("; registered at tests/sites.rs:{line}; detached on thread {me}")), "{message}");
    let adopted = threadguard::adopt::<u32>(token).unwrap();
    let error = with(adopted, |_: &mut String| ()).unwrap_err();
    assert!(error.message().ends_with(&format!("; registered at tests/sites.rs:{line}")), "adoption keeps the site");
    destroy(adopted).unwrap();
}

#[test]
fn the_memory_of_destroyed_objects_is_bounded() {
    let _serial = serial(true);
    let first = register(0u32).unwrap();
    destroy(first).unwrap();
    assert!(refusal(first).1.contains("destroyed at"));
    for i in 0..sites::DESTROYED_MEMORY {
        destroy(register(i).unwrap()).unwrap();
    }
    let (status, message) = refusal(first);
    assert_eq!(status, Status::Stale);
    assert!(!message.contains("registered at") && !message.contains("destroyed at"), "forgotten: {message}");
}

#[test]
fn with_the_mode_off_messages_carry_no_sites() {
    let _serial = serial(false);
    let handle = register(5u32).unwrap();
    destroy(handle).unwrap();
    let (status, message) = refusal(handle);
    assert_eq!(status, Status::Stale);
    assert!(!message.contains("registered at") && !message.contains("; destroyed"), "{message}");
    // Switching it on later knows nothing of what came before.
    sites::set_enabled(true);
    assert!(!refusal(handle).1.contains("registered at"));
    sites::set_enabled(false);
}

#[test]
fn the_c_switch_takes_only_0_and_1() {
    let _serial = serial(false);
    assert_eq!(threadguard::ffi::tg_set_sites(2), threadguard::ffi::TG_ERR_INVALID_ARGUMENT);
    assert_eq!(threadguard::ffi::tg_sites_enabled(), 0, "unchanged");
    assert_eq!(threadguard::ffi::tg_set_sites(1), threadguard::ffi::TG_OK);
    assert_eq!(threadguard::ffi::tg_sites_enabled(), 1);
    assert!(sites::enabled());
    assert_eq!(threadguard::ffi::tg_set_sites(0), threadguard::ffi::TG_OK);
}

#[test]
fn the_c_entry_points_with_a_null_file_record_no_site_and_still_register_and_destroy() {
    use threadguard::ffi::{TG_ERR_STALE, TG_ERR_WRONG_TYPE, TG_OK, tg_destroy_at, tg_register_at, tg_with};
    let _serial = serial(true);
    let c_refusal = |handle: Handle| {
        // SAFETY: a null callback is refused before anything is called.
        let code = unsafe { tg_with(handle, 2, None, std::ptr::null_mut()) };
        (code, threadguard::last_error())
    };
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writes; no destructor; a NULL file is allowed.
    assert_eq!(unsafe { tg_register_at(1, std::ptr::null_mut(), None, &mut handle, std::ptr::null(), 10) }, TG_OK);
    let (code, message) = c_refusal(handle);
    assert_eq!(code, TG_ERR_WRONG_TYPE);
    assert!(!message.contains("registered at"), "{message}");
    // SAFETY: a NULL file is allowed.
    assert_eq!(unsafe { tg_destroy_at(handle, std::ptr::null(), 11) }, TG_OK);
    let (code, message) = c_refusal(handle);
    assert_eq!(code, TG_ERR_STALE);
    assert!(!message.contains("registered at") && !message.contains("destroyed at"), "{message}");
    sites::set_enabled(false);
}
