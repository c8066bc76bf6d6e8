//! Ownership across threads: wrong thread, owner exit, deferred destruction, cleanup.

mod common;

use common::{DropLog, Tracked};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use threadguard::{Handle, Status, destroy, destroy_later, owner_of, register, run_pending, with};

fn status<T>(result: Result<T, threadguard::Error>) -> Status {
    result.err().expect("expected an error").status()
}

#[test]
fn wrong_thread_borrow_is_rejected_and_changes_nothing() {
    let log = DropLog::default();
    let handle = register(log.value(1)).unwrap();
    let owner = threadguard::current_thread_id().unwrap();
    let (touched, message) = thread::spawn(move || {
        let mut touched = false;
        let result = with(handle, |_: &mut Tracked| touched = true);
        let message = result.as_ref().unwrap_err().message().to_owned();
        assert_eq!(status(result), Status::WrongThread);
        assert_eq!(status(destroy(handle)), Status::WrongThread, "destroy from another thread must refuse");
        (touched, message)
    })
    .join()
    .unwrap();
    assert!(!touched);
    assert!(message.contains(&format!("owned by thread {owner}")), "{message}");
    assert!(message.contains("alive"), "{message}");
    assert_eq!(log.count(1), 0, "nothing destroyed by the refused calls");
    assert_eq!(with(handle, |t: &mut Tracked| t.id).unwrap(), 1);
    destroy(handle).unwrap();
    assert_eq!(log.drops(), vec![(1, owner)]);
}

#[test]
fn owner_exit_destroys_on_the_owner_and_later_use_answers_owner_exited() {
    let log = DropLog::default();
    let thread_log = log.clone();
    let (handle, owner) = thread::Builder::new()
        .name("short-lived".into())
        .spawn(move || {
            let handle = register(thread_log.value(7)).unwrap();
            (handle, threadguard::current_thread_id().unwrap())
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(log.drops(), vec![(7, owner)], "destroyed once, on the exiting owner");
    let result = with(handle, |_: &mut Tracked| ());
    assert!(result.as_ref().unwrap_err().message().contains("exited"));
    assert_eq!(status(result), Status::OwnerExited);
    assert_eq!(status(destroy(handle)), Status::OwnerExited);
    assert_eq!(status(destroy_later(handle)), Status::OwnerExited);
    assert_eq!(status(owner_of(handle)), Status::OwnerExited);
}

#[test]
fn owner_exit_while_other_threads_hold_handles() {
    let log = DropLog::default();
    let (handles_tx, handles_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let owner_log = log.clone();
    let owner = thread::spawn(move || {
        let handles: Vec<Handle> = (0..100).map(|id| register(owner_log.value(id)).unwrap()).collect();
        handles_tx.send(handles).unwrap();
        go_rx.recv().unwrap();
        threadguard::current_thread_id().unwrap()
    });
    let handles = handles_rx.recv().unwrap();
    let holders: Vec<_> = (0..4)
        .map(|_| {
            let handles = handles.clone();
            thread::spawn(move || {
                for &handle in &handles {
                    assert_eq!(status(with(handle, |_: &mut Tracked| ())), Status::WrongThread);
                }
            })
        })
        .collect();
    for holder in holders {
        holder.join().unwrap();
    }
    go_tx.send(()).unwrap();
    let owner_id = owner.join().unwrap();
    let drops = log.drops();
    assert_eq!(drops.len(), 100);
    assert!(drops.iter().all(|&(_, thread)| thread == owner_id));
    for &handle in &handles {
        assert_eq!(status(with(handle, |_: &mut Tracked| ())), Status::OwnerExited);
    }
}

#[test]
fn destroy_later_from_another_thread_runs_on_the_owner_at_its_next_call() {
    let log = DropLog::default();
    let owner = threadguard::current_thread_id().unwrap();
    let handle = register(log.value(3)).unwrap();
    thread::spawn(move || destroy_later(handle).unwrap()).join().unwrap();
    assert_eq!(log.count(3), 0, "not run on the requesting thread");
    // The next successful call on the owner runs it.
    let other = register(log.value(4)).unwrap();
    assert_eq!(log.drops(), vec![(3, owner)]);
    assert_eq!(status(with(handle, |_: &mut Tracked| ())), Status::Stale);
    thread::spawn(move || destroy_later(other).unwrap()).join().unwrap();
    run_pending().unwrap();
    assert_eq!(log.drops(), vec![(3, owner), (4, owner)]);
}

#[test]
fn destroy_later_is_run_by_the_owner_at_exit() {
    let log = DropLog::default();
    let owner_log = log.clone();
    let (handle_tx, handle_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        handle_tx.send(register(owner_log.value(9)).unwrap()).unwrap();
        done_rx.recv().unwrap();
        threadguard::current_thread_id().unwrap()
    });
    let handle = handle_rx.recv().unwrap();
    destroy_later(handle).unwrap();
    done_tx.send(()).unwrap();
    let owner_id = owner.join().unwrap();
    assert_eq!(log.drops(), vec![(9, owner_id)]);
}

#[test]
fn destroy_later_racing_owner_exit_is_never_lost_nor_run_elsewhere() {
    for round in 0..200 {
        let log = DropLog::default();
        let owner_log = log.clone();
        let (handle_tx, handle_rx) = mpsc::channel();
        let owner = thread::spawn(move || {
            let handle = register(owner_log.value(round)).unwrap();
            handle_tx.send(handle).unwrap();
            threadguard::current_thread_id().unwrap()
        });
        let handle = handle_rx.recv().unwrap();
        let outcome = destroy_later(handle);
        let owner_id = owner.join().unwrap();
        assert!(matches!(outcome.as_ref().map_err(|e| e.status()), Ok(()) | Err(Status::OwnerExited)), "{outcome:?}");
        assert_eq!(log.drops(), vec![(round, owner_id)], "exactly once, on the owner");
    }
}

#[test]
fn reentrant_borrow_is_busy_while_other_objects_stay_usable() {
    let log = DropLog::default();
    let outer = register(log.value(10)).unwrap();
    let inner = register(log.value(11)).unwrap();
    let nested = with(outer, |_: &mut Tracked| {
        let same = status(with(outer, |_: &mut Tracked| ()));
        let destroy_same = status(destroy(outer));
        let other = with(inner, |t: &mut Tracked| t.id).unwrap();
        let fresh = register(log.value(12)).unwrap();
        destroy(fresh).unwrap();
        destroy_later(outer).unwrap(); // destroy itself later: after this borrow ends
        (same, destroy_same, other)
    })
    .unwrap();
    assert_eq!(nested, (Status::Busy, Status::Busy, 11));
    let owner = threadguard::current_thread_id().unwrap();
    assert_eq!(log.drops(), vec![(12, owner), (10, owner)], "the deferred self-destroy ran after the borrow");
    destroy(inner).unwrap();
}

#[test]
fn panic_in_a_borrow_releases_the_borrow() {
    let handle = register(5u8).unwrap();
    let caught = std::panic::catch_unwind(|| with(handle, |_: &mut u8| panic!("boom")));
    assert!(caught.is_err());
    assert_eq!(with(handle, |v: &mut u8| *v).unwrap(), 5, "not left busy");
    destroy(handle).unwrap();
}

#[test]
fn panicking_drop_is_reported_and_runs_once() {
    struct Bomb(Rc<RefCell<u32>>);
    impl Drop for Bomb {
        fn drop(&mut self) {
            *self.0.borrow_mut() += 1;
            panic!("drop bomb");
        }
    }
    let drops = Rc::new(RefCell::new(0));
    let handle = register(Bomb(Rc::clone(&drops))).unwrap();
    let error = destroy(handle).unwrap_err();
    assert_eq!(error.status(), Status::Panic);
    assert!(error.message().contains("drop bomb"), "{}", error.message());
    assert_eq!(*drops.borrow(), 1);
    assert_eq!(status(destroy(handle)), Status::Stale);
}

#[test]
fn wrong_type_is_rejected() {
    let handle = register(1u32).unwrap();
    let error = with(handle, |_: &mut i32| ()).unwrap_err();
    assert_eq!(error.status(), Status::WrongType);
    assert!(error.message().contains("u32") && error.message().contains("i32"), "{}", error.message());
    assert_eq!(status(threadguard::destroy_as::<i32>(handle)), Status::WrongType);
    threadguard::destroy_as::<u32>(handle).unwrap();
}

#[test]
fn null_and_forged_handles_are_rejected() {
    assert_eq!(status(with(Handle::NULL, |_: &mut u8| ())), Status::NullHandle);
    assert_eq!(status(destroy(Handle::NULL)), Status::NullHandle);
    assert_eq!(status(destroy_later(Handle::NULL)), Status::NullHandle);
    assert_eq!(status(owner_of(Handle::NULL)), Status::NullHandle);
    let never = Handle { owner: u64::MAX, key: 1 };
    assert_eq!(status(with(never, |_: &mut u8| ())), Status::Stale);
    assert_eq!(status(destroy_later(never)), Status::Stale);
    let real = register(0u8).unwrap();
    for bit in 0..64 {
        let forged = Handle { key: real.key ^ (1 << bit), ..real };
        assert_eq!(status(with(forged, |_: &mut u8| ())), Status::Stale, "bit {bit}");
    }
    destroy(real).unwrap();
}

#[test]
fn random_handles_from_many_threads_never_resolve_to_live_objects() {
    let workers: Vec<_> = (0..4u64)
        .map(|seed| {
            thread::spawn(move || {
                let live: Vec<Handle> = (0..64).map(|i| register(i as u32).unwrap()).collect();
                let me = threadguard::current_thread_id().unwrap();
                let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut next = || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                for i in 0..2500 {
                    let base = live[i % live.len()];
                    let forged = match i % 4 {
                        0 => Handle { owner: next() % 64, key: next() },
                        1 => Handle { owner: me, key: next() },
                        2 => Handle { owner: me, key: base.key ^ (1 << (next() % 64)) },
                        _ => Handle { owner: base.owner ^ (1 << (next() % 64)), key: base.key },
                    };
                    let mut touched = false;
                    if let Ok(()) = with(forged, |_: &mut u32| touched = true) {
                        assert!(live.contains(&forged), "forged handle {forged:?} resolved");
                    }
                    let _ = touched;
                }
                for handle in live {
                    destroy(handle).unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn thread_cleanup_destroys_everything_and_refuses_inside_a_borrow() {
    thread::spawn(|| {
        let log = DropLog::default();
        let owner = threadguard::current_thread_id().unwrap();
        let handles: Vec<Handle> = (0..10).map(|id| register(log.value(id)).unwrap()).collect();
        let inside = with(handles[0], |_: &mut Tracked| status(threadguard::thread_cleanup())).unwrap();
        assert_eq!(inside, Status::Busy);
        assert_eq!(log.drops().len(), 0, "refused cleanup destroyed nothing");
        threadguard::thread_cleanup().unwrap();
        assert_eq!(log.drops().len(), 10);
        assert!(log.drops().iter().all(|&(_, thread)| thread == owner));
        assert_eq!(status(with(handles[3], |_: &mut Tracked| ())), Status::Stale);
        // The thread stays usable.
        let again = register(log.value(99)).unwrap();
        destroy(again).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn destructors_may_destroy_their_children_during_cleanup() {
    struct Parent {
        children: Vec<Handle>,
        log: DropLog,
    }
    impl Drop for Parent {
        fn drop(&mut self) {
            for &child in &self.children {
                // During cleanup a child may already be gone (swept first): never twice.
                let _ = destroy(child);
            }
            self.log.value(100);
        }
    }
    thread::spawn(|| {
        let log = DropLog::default();
        let children: Vec<Handle> = (0..5).map(|id| register(log.value(id)).unwrap()).collect();
        let parent = register(Parent { children: children.clone(), log: log.clone() }).unwrap();
        destroy(parent).unwrap();
        for id in 0..5 {
            assert_eq!(log.count(id), 1);
        }
        let children: Vec<Handle> = (10..15).map(|id| register(log.value(id)).unwrap()).collect();
        register(Parent { children, log: log.clone() }).unwrap();
        threadguard::thread_cleanup().unwrap();
        for id in 10..15 {
            assert_eq!(log.count(id), 1, "child {id}");
        }
        assert_eq!(log.count(100), 2);
    })
    .join()
    .unwrap();
}

#[test]
fn registration_during_cleanup_is_refused_and_the_value_dropped() {
    struct Spawner(DropLog);
    impl Drop for Spawner {
        fn drop(&mut self) {
            let refused = register(self.0.value(2));
            assert_eq!(refused.unwrap_err().status(), Status::ShutDown);
        }
    }
    thread::spawn(|| {
        let log = DropLog::default();
        register(Spawner(log.clone())).unwrap();
        threadguard::thread_cleanup().unwrap();
        assert_eq!(log.count(2), 1, "the refused value was dropped, not leaked");
    })
    .join()
    .unwrap();
}

#[test]
fn repeated_refusals_see_an_owner_exit_between_them() {
    // The refusing thread remembers the owner it last refused: that must not hide the exit.
    let log = DropLog::default();
    let (handle_tx, handle_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel::<()>();
    let owner = thread::spawn({
        let value = log.value(7);
        move || {
            handle_tx.send(register(value).unwrap()).unwrap();
            exit_rx.recv().unwrap();
        }
    });
    let handle: Handle = handle_rx.recv().unwrap();
    for _ in 0..3 {
        assert_eq!(status(with(handle, |_: &mut Tracked| ())), Status::WrongThread);
    }
    exit_tx.send(()).unwrap();
    owner.join().unwrap();
    assert_eq!(log.count(7), 1, "the owner's exit destroyed it, once");
    for _ in 0..3 {
        assert_eq!(status(with(handle, |_: &mut Tracked| ())), Status::OwnerExited);
    }
    // A handle with owner 0 and a nonzero key is not null, and its owner was never issued.
    let forged = Handle { owner: 0, key: 1 };
    assert_eq!(status(with(forged, |_: &mut Tracked| ())), Status::Stale);
}
