//! Ownership transfer: detach on one thread, adopt (or destroy the token) on another. Every
//! test counts destructor runs, so an object destroyed twice or lost fails it.

mod common;

use common::DropLog;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, MutexGuard};
use threadguard::ffi::*;
use threadguard::{Handle, Status, Token};

/// The tests read process-wide counters: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poison| poison.into_inner())
}

const TAG: u32 = 21;

/// A C-style object that counts its destructor runs and the thread of the last one.
#[derive(Default)]
struct Object {
    destroyed: AtomicUsize,
    destroyed_on: std::sync::atomic::AtomicU64,
}

impl Object {
    fn ptr(&self) -> *mut c_void {
        std::ptr::from_ref(self).cast_mut().cast()
    }
    fn destroyed(&self) -> usize {
        self.destroyed.load(Ordering::SeqCst)
    }
}

unsafe extern "C-unwind" fn destroy_object(object: *mut c_void) {
    // SAFETY: every object registered here is an `Object` that outlives its registration.
    let object = unsafe { &*object.cast::<Object>() };
    object.destroyed_on.store(tg_current_thread_id(), Ordering::SeqCst);
    object.destroyed.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C-unwind" fn nothing(_object: *mut c_void, _context: *mut c_void) {}

fn register(object: &Object) -> Handle {
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writing.
    assert_eq!(unsafe { tg_register(TAG, object.ptr(), Some(destroy_object), &mut handle) }, TG_OK);
    handle
}

fn detach(handle: Handle) -> Result<Token, tg_status> {
    let mut token = Token::NULL;
    // SAFETY: `token` is valid for writing.
    match unsafe { tg_detach(handle, TAG, &mut token) } {
        TG_OK => Ok(token),
        status => Err(status),
    }
}

fn adopt(token: Token) -> Result<Handle, tg_status> {
    let mut handle = Handle::NULL;
    // SAFETY: `handle` is valid for writing.
    match unsafe { tg_adopt(token, &mut handle) } {
        TG_OK => Ok(handle),
        status => Err(status),
    }
}

fn with(handle: Handle) -> tg_status {
    // SAFETY: `nothing` ignores its arguments.
    unsafe { tg_with(handle, TAG, Some(nothing), std::ptr::null_mut()) }
}

fn detached() -> u64 {
    threadguard::stats().detached
}

#[test]
fn a_detached_object_is_adopted_by_another_thread_and_destroyed_once_there() {
    let _serial = serial();
    let object = Object::default();
    let handle = register(&object);
    let before = threadguard::stats();
    let token = detach(handle).expect("the owner detaches");
    assert_eq!(with(handle), TG_ERR_STALE, "the old handle names nothing on its old owner");
    assert!(threadguard::last_error().contains("names no live object"), "{}", threadguard::last_error());
    assert_eq!(tg_destroy(handle), TG_ERR_STALE);
    assert_eq!(detached(), before.detached + 1);
    let adopter = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                assert_eq!(with(handle), TG_ERR_STALE, "the old handle names nothing on other threads either");
                let message = threadguard::last_error();
                assert!(
                    message.contains("was detached from thread") && message.contains("not adopted yet"),
                    "{message}"
                );
                let adopted = adopt(token).expect("adopted");
                assert_eq!(tg_destroy_later(handle), TG_OK, "requests from other threads are not checked");
                assert_eq!(adopted.owner, tg_current_thread_id(), "the adopter owns it");
                assert_eq!(with(adopted), TG_OK);
                assert_eq!(tg_destroy(adopted), TG_OK);
                assert_eq!(with(adopted), TG_ERR_STALE);
                tg_current_thread_id()
            })
            .join()
            .expect("no panic")
    });
    assert_eq!(object.destroyed(), 1);
    assert_eq!(object.destroyed_on.load(Ordering::SeqCst), adopter, "destroyed on its new owner");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            assert_eq!(with(handle), TG_ERR_STALE);
            let message = threadguard::last_error();
            assert!(message.contains(&format!("now has handle {{owner={adopter}")), "{message}");
        });
    });
    assert_eq!(tg_run_pending(), TG_OK, "the stale request from the adopter's thread is counted, nothing else");
    let after = threadguard::stats();
    assert_eq!(after.detached, before.detached);
    assert_eq!(after.created, before.created, "adoption is not a registration");
    assert_eq!(after.destroyed, before.destroyed + 1);
}

#[test]
fn of_many_threads_adopting_one_token_exactly_one_wins() {
    let _serial = serial();
    const THREADS: usize = 8;
    for round in 0..50 {
        let object = Object::default();
        let token = detach(register(&object)).expect("detached");
        let barrier = Barrier::new(THREADS);
        let wins = AtomicUsize::new(0);
        let stale = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for i in 0..THREADS {
                let (barrier, wins, stale) = (&barrier, &wins, &stale);
                scope.spawn(move || {
                    barrier.wait();
                    // Half the threads adopt, half destroy the token: one of them wins.
                    let status = if i % 2 == 0 {
                        adopt(token).map(|handle| assert_eq!(tg_destroy(handle), TG_OK)).err().unwrap_or(TG_OK)
                    } else {
                        tg_token_destroy(token)
                    };
                    match status {
                        TG_OK => wins.fetch_add(1, Ordering::SeqCst),
                        TG_ERR_STALE => stale.fetch_add(1, Ordering::SeqCst),
                        other => panic!("round {round}: unexpected status {other}"),
                    };
                });
            }
        });
        assert_eq!(wins.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(stale.load(Ordering::SeqCst), THREADS - 1, "round {round}");
        assert_eq!(object.destroyed(), 1, "round {round}: destroyed exactly once");
    }
    assert_eq!(detached(), 0);
}

#[test]
fn spent_forged_and_null_tokens_are_refused_with_what_happened() {
    let _serial = serial();
    let object = Object::default();
    let token = detach(register(&object)).expect("detached");
    let adopted = adopt(token).expect("first adoption");
    assert_eq!(adopt(token), Err(TG_ERR_STALE));
    let message = threadguard::last_error();
    assert!(
        message.contains("was already adopted by thread") && message.contains(&adopted.owner.to_string()),
        "{message}"
    );
    assert_eq!(tg_token_destroy(token), TG_ERR_STALE);

    let forged = Token { id: token.id, check: token.check ^ 1 };
    assert_eq!(adopt(forged), Err(TG_ERR_STALE));
    assert!(threadguard::last_error().contains("never issued"), "{}", threadguard::last_error());
    assert_eq!(adopt(Token { id: u64::MAX, check: 7 }), Err(TG_ERR_STALE));
    assert_eq!(adopt(Token::NULL), Err(TG_ERR_NULL_HANDLE));
    assert_eq!(tg_token_destroy(Token::NULL), TG_ERR_NULL_HANDLE);

    let other = Object::default();
    let token = detach(register(&other)).expect("detached");
    std::thread::scope(|scope| {
        scope.spawn(|| assert_eq!(tg_token_destroy(token), TG_OK, "any thread may destroy a detached object"));
    });
    assert_eq!(other.destroyed(), 1);
    assert_eq!(adopt(token), Err(TG_ERR_STALE));
    assert!(threadguard::last_error().contains("already destroyed"), "{}", threadguard::last_error());
    // SAFETY: a NULL out pointer is refused before anything is written.
    assert_eq!(unsafe { tg_adopt(token, std::ptr::null_mut()) }, TG_ERR_NULL_POINTER);

    assert_eq!(tg_destroy(adopted), TG_OK);
    assert_eq!(object.destroyed(), 1);
    assert_eq!(other.destroyed(), 1);
}

/// Detaches the object whose handle is in the context from inside its own borrow.
unsafe extern "C-unwind" fn detach_inside(_object: *mut c_void, context: *mut c_void) {
    // SAFETY: the context points to a `(Handle, tg_status)` the test owns.
    let (handle, status) = unsafe { &mut *context.cast::<(Handle, tg_status)>() };
    *status = detach(*handle).err().unwrap_or(TG_OK);
}

#[test]
fn detach_checks_like_a_borrow_and_a_refusal_changes_nothing() {
    let _serial = serial();
    let object = Object::default();
    let handle = register(&object);
    let before = detached();
    let mut inside = (handle, TG_OK);
    // SAFETY: `detach_inside` is sound with a `(Handle, tg_status)` context.
    assert_eq!(unsafe { tg_with(handle, TAG, Some(detach_inside), (&raw mut inside).cast()) }, TG_OK);
    assert_eq!(inside.1, TG_ERR_BUSY, "no detach from inside the object's own borrow");
    let mut token = Token::NULL;
    // SAFETY: `token` is valid for writing.
    assert_eq!(unsafe { tg_detach(handle, TAG + 1, &mut token) }, TG_ERR_WRONG_TYPE);
    // SAFETY: the NULL out pointer is refused after the handle checks.
    assert_eq!(unsafe { tg_detach(handle, TAG, std::ptr::null_mut()) }, TG_ERR_NULL_POINTER);
    // SAFETY: as above; the null handle is refused first.
    assert_eq!(unsafe { tg_detach(Handle::NULL, TAG, std::ptr::null_mut()) }, TG_ERR_NULL_HANDLE);
    std::thread::scope(|scope| {
        scope.spawn(|| assert_eq!(detach(handle), Err(TG_ERR_WRONG_THREAD)));
    });
    assert_eq!(detached(), before, "nothing was detached");
    assert_eq!(with(handle), TG_OK, "the object is still owned and usable");
    let rust = threadguard::register(5u32).expect("registered");
    // SAFETY: `token` is valid for writing.
    assert_eq!(unsafe { tg_detach(rust, TAG, &mut token) }, TG_ERR_WRONG_TYPE, "C cannot detach Rust objects");
    threadguard::destroy(rust).expect("destroyed");
    assert_eq!(tg_destroy(handle), TG_OK);
    assert_eq!(detach(handle), Err(TG_ERR_STALE));
    assert_eq!(object.destroyed(), 1);
}

#[test]
fn a_queued_destroy_request_is_settled_before_the_detach() {
    let _serial = serial();
    let object = Object::default();
    let handle = register(&object);
    std::thread::scope(|scope| {
        scope.spawn(|| assert_eq!(tg_destroy_later(handle), TG_OK));
    });
    assert_eq!(object.destroyed(), 0);
    assert_eq!(detach(handle), Err(TG_ERR_STALE));
    assert!(threadguard::last_error().contains("destroy_later request"), "{}", threadguard::last_error());
    assert_eq!(object.destroyed(), 1, "the request ran, once");
    assert_eq!(threadguard::stats().deferred_pending, 0);
}

#[test]
fn a_token_in_flight_survives_its_old_owners_exit_and_cleanup() {
    let _serial = serial();
    let object = Object::default();
    let token = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let token = detach(register(&object)).expect("detached");
                assert_eq!(tg_thread_cleanup(), TG_OK);
                token
            })
            .join()
            .expect("no panic")
    });
    assert_eq!(object.destroyed(), 0, "neither cleanup nor exit destroys a detached object");
    let adopted = adopt(token).expect("adopted after the old owner exited");
    assert_eq!(with(adopted), TG_OK);
    // This thread's cleanup destroys it as one of its own.
    let second = Object::default();
    let in_flight = detach(register(&second)).expect("detached");
    assert_eq!(tg_thread_cleanup(), TG_OK);
    assert_eq!(object.destroyed(), 1);
    assert_eq!(second.destroyed(), 0, "cleanup skips what is detached");
    assert_eq!(tg_token_destroy(in_flight), TG_OK);
    assert_eq!(second.destroyed(), 1);
}

#[test]
fn rust_values_move_by_type_and_a_wrong_type_leaves_the_token_valid() {
    let _serial = serial();
    let log = DropLog::default();
    let handle = threadguard::register(log.value(1)).expect("registered");
    assert_eq!(threadguard::detach::<u32>(handle).unwrap_err().status(), Status::WrongType);
    let token = threadguard::detach::<common::Tracked>(handle).expect("detached");
    assert_eq!(threadguard::adopt::<u32>(token).unwrap_err().status(), Status::WrongType);
    let adopter = std::thread::spawn(move || {
        let mine = threadguard::adopt::<common::Tracked>(token).expect("adopted");
        assert_eq!(threadguard::with(mine, |t: &mut common::Tracked| t.id).expect("borrowed"), 1);
        threadguard::current_thread_id().expect("live")
        // The thread's exit drops it.
    })
    .join()
    .expect("no panic");
    assert_eq!(log.drops(), vec![(1, adopter)], "dropped once, on its adopter");
    assert_eq!(threadguard::destroy_token(token).unwrap_err().status(), Status::Stale);
}
