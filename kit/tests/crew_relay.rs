//! `Crew::relay`: legs run in order, each on the worker of its slot, the workers pass the turn
//! to each other, and a relay's end (or a panic in a leg) returns to the driver, which can go
//! on using the crew.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use threadguard_fuzzkit::Crew;

const SLOTS: usize = 3;

/// A crew with a worker in every slot, and each worker's threadguard ID.
fn crew() -> (Crew, Vec<u64>) {
    let mut crew = Crew::new(SLOTS);
    let ids = (0..SLOTS)
        .map(|slot| {
            crew.start(slot, &format!("relay-{slot}"));
            crew.run(slot, || threadguard::current_thread_id().expect("a thread ID"))
        })
        .collect();
    (crew, ids)
}

#[test]
fn every_leg_runs_once_in_order_on_the_worker_of_its_slot() {
    let (crew, ids) = crew();
    // The slots of the legs: runs of one slot, changes of slot, back to the first.
    let plan: Vec<usize> = vec![0, 0, 1, 2, 2, 2, 1, 0, 2, 0];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (legs, log) = (plan.clone(), Arc::clone(&seen));
    crew.relay(plan[0], move |slot| {
        let mut log = log.lock().unwrap();
        log.push((slot, threadguard::current_thread_id().expect("a thread ID")));
        legs.get(log.len()).copied()
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), plan.len(), "legs run: {seen:?}");
    for (leg, (&(slot, thread), &planned)) in seen.iter().zip(&plan).enumerate() {
        assert_eq!(slot, planned, "leg {leg} ran for the wrong slot");
        assert_eq!(thread, ids[slot], "leg {leg} ran on another thread than slot {slot}'s worker");
    }
}

#[test]
fn a_panic_in_a_leg_ends_the_relay_on_the_driver_and_the_crew_goes_on() {
    let (crew, ids) = crew();
    let legs = Arc::new(Mutex::new(0));
    let count = Arc::clone(&legs);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        crew.relay(0, move |slot| {
            *count.lock().unwrap() += 1;
            if slot == 2 {
                std::panic::panic_any("leg panicked");
            }
            Some(slot + 1)
        })
    }));
    let payload = outcome.expect_err("the panic reaches the driver");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"leg panicked"));
    assert_eq!(*legs.lock().unwrap(), 3, "legs on slots 0, 1 and 2, and no more");
    // The crew still works: a job and another relay.
    assert_eq!(crew.run(1, || threadguard::current_thread_id().expect("a thread ID")), ids[1]);
    let again = Arc::new(Mutex::new(0));
    let count = Arc::clone(&again);
    crew.relay(2, move |_| {
        *count.lock().unwrap() += 1;
        None
    });
    assert_eq!(*again.lock().unwrap(), 1);
}

#[test]
fn a_leg_that_names_a_slot_without_a_worker_fails_on_the_driver() {
    let (mut crew, _) = crew();
    crew.end(1).expect("the worker exits");
    let legs = Arc::new(Mutex::new(0));
    let count = Arc::clone(&legs);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        crew.relay(0, move |_| {
            *count.lock().unwrap() += 1;
            Some(1)
        })
    }));
    let payload = outcome.expect_err("the relay fails");
    let message = payload.downcast_ref::<String>().expect("a message");
    assert!(message.contains("slot 1"), "{message}");
    assert_eq!(*legs.lock().unwrap(), 1, "no leg ran after the one that named slot 1");
    assert_eq!(crew.run(0, || 7), 7);
}
