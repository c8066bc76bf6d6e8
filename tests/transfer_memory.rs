//! What the token registry remembers of settled tokens, and the type check of a Rust adoption
//! of a token detached from C. The registry is process-wide: this file's tests run one at a time.

mod common;

use common::{DropLog, Tracked};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use threadguard::ffi::{TG_OK, tg_detach, tg_register, tg_token_destroy};
use threadguard::{Handle, SETTLED_MEMORY, Status, Token};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn refusal<T>(result: Result<T, threadguard::Error>) -> (Status, String) {
    let error = result.err().expect("expected an error");
    (error.status(), error.message().to_owned())
}

/// How another thread's borrow of `handle` is refused.
fn from_another_thread(handle: Handle) -> (Status, String) {
    std::thread::spawn(move || refusal(threadguard::with(handle, |_: &mut Tracked| ()))).join().unwrap()
}

#[test]
fn the_registry_remembers_the_last_settled_memory_settled_tokens_and_forgets_older_ones() {
    let _serial = serial();
    let log = DropLog::default();
    let old = threadguard::register(log.value(0)).unwrap();
    let first = threadguard::detach::<Tracked>(old).unwrap();
    let adopted = threadguard::adopt::<Tracked>(first).unwrap();

    // Remembered: a second adoption says who adopted it, and the old handle says where it went.
    let (status, message) = refusal(threadguard::adopt::<Tracked>(first));
    assert_eq!(status, Status::Stale);
    assert!(message.contains("was already adopted by thread"), "{message}");
    let (status, message) = from_another_thread(old);
    assert_eq!(status, Status::Stale);
    assert!(message.contains("was detached from thread") && message.contains("its object now has handle"), "{message}");

    // SETTLED_MEMORY more tokens settle (destroyed by token: each destructor runs once).
    for id in 1..=SETTLED_MEMORY as u32 {
        let token = threadguard::detach::<Tracked>(threadguard::register(log.value(id)).unwrap()).unwrap();
        threadguard::destroy_token(token).unwrap();
    }
    assert!((1..=SETTLED_MEMORY as u32).all(|id| log.count(id) == 1), "each destroyed once");

    // The first is forgotten: still refused, without the details, and never adopted twice.
    let (status, message) = refusal(threadguard::adopt::<Tracked>(first));
    assert_eq!(status, Status::Stale);
    assert!(message.ends_with("was already adopted or destroyed"), "{message}");
    // Its old handle is now, to another thread, what any handle of a live thread not its own is.
    let (status, message) = from_another_thread(old);
    assert_eq!(status, Status::WrongThread, "{message}");
    assert_eq!(threadguard::stats().detached, 0);

    // The adopted object is unaffected, and destroyed once.
    assert_eq!(threadguard::with(adopted, |value: &mut Tracked| value.id), Ok(0));
    threadguard::destroy(adopted).unwrap();
    assert_eq!(log.count(0), 1);
}

static C_DESTROYED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C-unwind" fn count_destroy(_object: *mut c_void) {
    C_DESTROYED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn a_rust_adoption_of_a_c_objects_token_is_refused_as_the_wrong_type_and_changes_nothing() {
    let _serial = serial();
    const TAG: u32 = 77;
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writes; the object pointer is never dereferenced.
    assert_eq!(unsafe { tg_register(TAG, std::ptr::null_mut(), Some(count_destroy), &mut handle) }, TG_OK);
    let mut token = Token::NULL;
    // SAFETY: `token` is valid for writes; the caller vouches the (absent) object may move.
    assert_eq!(unsafe { tg_detach(handle, TAG, &mut token) }, TG_OK);

    let (status, message) = refusal(threadguard::adopt::<u32>(token));
    assert_eq!(status, Status::WrongType);
    assert!(message.ends_with("names a C object with type tag 77, expected a Rust u32"), "{message}");
    assert_eq!(threadguard::stats().detached, 1, "the token is still detached");
    assert_eq!(C_DESTROYED.load(Ordering::SeqCst), 0);

    assert_eq!(tg_token_destroy(token), TG_OK);
    assert_eq!(C_DESTROYED.load(Ordering::SeqCst), 1, "destroyed once, by its token");
    assert_eq!(threadguard::stats().detached, 0);
}
