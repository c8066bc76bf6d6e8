//! Model checks of the runner's queues with `loom`: the interleavings (up to a preemption
//! bound, see [`model`]) of the queue, call-slot and completion-queue code that the runner
//! really uses.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test --release --lib runner::loom`
//!
//! Timed waits are modelled as deadlines that have already passed (see `sync`), so a timeout
//! races every step of the other threads; untimed waits are modelled exactly, and loom fails a
//! model that can deadlock (a lost wake-up) or leak. Every untimed wait spins before it sleeps
//! (under loom: one poll; see `Spin::until`), so each model also explores the
//! change being seen while spinning, seen only by the re-check under the lock, or arriving
//! after the waiter has said it sleeps (the waker must then notify it).

use super::call::{CallSlot, TimedOut};
use super::completion::{Completion, CqCore, CqRefused, CqWaitError, Discard};
use super::queue::{Batch, Refused, WorkQueue, consume};
use super::sync::{Deadline, Spin};
use crate::error::{Error, Status};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use std::collections::VecDeque;

/// Explores every interleaving with up to 4 preemptions per execution (about half a minute in
/// all in release; loom's authors find nearly every bug within 2 or 3). `LOOM_MAX_PREEMPTIONS=N`
/// sets another bound; each step up costs about 4x more time.
fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(4);
    }
    builder.check(f);
}

fn accepted(result: Result<(), Refused<u32>>) -> usize {
    match result {
        Ok(()) => 1,
        Err(Refused::Closed(_) | Refused::Full(_)) => 0,
    }
}

/// Post vs. stop: a job is either refused to its producer or handed to the consumer (run, or
/// failed once the queue is closing), exactly once; the consumer always ends.
#[test]
fn post_racing_stop_is_refused_or_handled_exactly_once() {
    model(|| {
        let queue = Arc::new(WorkQueue::new(4));
        let producer = {
            let queue = queue.clone();
            thread::spawn(move || accepted(queue.push(1, Deadline::now())) + accepted(queue.push(2, Deadline::now())))
        };
        let stopper = {
            let queue = queue.clone();
            thread::spawn(move || assert!(queue.close()))
        };
        let (mut ran, mut failed) = (Vec::new(), Vec::new());
        consume(&queue, |job| ran.push(job), |job| failed.push(job), || ());
        let pushed = producer.join().unwrap();
        stopper.join().unwrap();
        assert_eq!(ran.len() + failed.len(), pushed);
        let mut seen: Vec<u32> = ran.iter().chain(&failed).copied().collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), pushed, "no job handled twice");
        assert!(!queue.close(), "closing is final");
    });
}

/// Posts wake a sleeping runner (no lost wake-up): two producers, and the consumer gets both
/// jobs without anything else (such as a close) waking it.
#[test]
fn posts_wake_a_sleeping_runner() {
    model(|| {
        let queue = Arc::new(WorkQueue::new(2));
        let producers: Vec<_> = (1..=2)
            .map(|job| {
                let queue = queue.clone();
                thread::spawn(move || queue.push(job, Deadline::now()).unwrap())
            })
            .collect();
        let mut batch = VecDeque::new();
        let mut seen = 0;
        while seen < 2 {
            assert_eq!(queue.take_batch(&mut batch), Batch::More);
            seen += batch.drain(..).count();
        }
        for producer in producers {
            producer.join().unwrap();
        }
    });
}

/// Bounded queue: it never holds more than its capacity, a push that may not wait is refused
/// when full, and a producer waiting for room is woken when the consumer takes a batch.
#[test]
fn a_full_queue_refuses_or_waits_and_never_loses_a_wakeup() {
    model(|| {
        let queue = Arc::new(WorkQueue::new(1));
        queue.push(0, Deadline::now()).unwrap();
        assert!(matches!(queue.push(9, Deadline::now()), Err(Refused::Full(9))));
        let waiter = {
            let queue = queue.clone();
            thread::spawn(move || queue.push(1, Deadline::Never).unwrap())
        };
        let impatient = {
            let queue = queue.clone();
            thread::spawn(move || accepted(queue.push(2, Deadline::after(Some(std::time::Duration::from_millis(1))))))
        };
        let mut batch = VecDeque::new();
        let mut seen = Vec::new();
        // Only room made by taking batches can let the waiting producer in: nothing closes yet.
        while !seen.contains(&1) {
            assert_eq!(queue.take_batch(&mut batch), Batch::More);
            assert!(batch.len() <= 1, "never more than the capacity");
            seen.extend(batch.drain(..));
        }
        waiter.join().unwrap();
        let impatient = impatient.join().unwrap();
        queue.close();
        let rest = std::cell::Cell::new(0);
        consume(&queue, |_| rest.set(rest.get() + 1), |_| rest.set(rest.get() + 1), || ());
        assert_eq!(seen.len() + rest.get(), 2 + impatient);
    });
}

/// A producer blocked on a full queue is released by close, refused, and nothing leaks.
#[test]
fn close_releases_a_producer_waiting_for_room() {
    model(|| {
        let queue = Arc::new(WorkQueue::new(1));
        queue.push(0, Deadline::now()).unwrap();
        let waiter = {
            let queue = queue.clone();
            thread::spawn(move || accepted(queue.push(1, Deadline::Never)))
        };
        queue.close();
        let mut handled = 0;
        let handled_after = std::cell::Cell::new(0);
        consume(
            &queue,
            |_| handled_after.set(handled_after.get() + 1),
            |_| handled_after.set(handled_after.get() + 1),
            || (),
        );
        handled += handled_after.get();
        assert_eq!(handled, 1 + waiter.join().unwrap());
    });
}

/// A poke wakes a sleeping consumer (no lost wake-up), even when it races the consumer going
/// to sleep.
#[test]
fn a_poke_wakes_the_consumer() {
    model(|| {
        let queue = Arc::new(WorkQueue::<u32>::new(1));
        let poker = {
            let queue = queue.clone();
            thread::spawn(move || queue.poke())
        };
        let mut batch = VecDeque::new();
        assert_eq!(queue.take_batch(&mut batch), Batch::More);
        assert!(batch.is_empty());
        poker.join().unwrap();
    });
}

/// A blocking call racing its own timeout: the result goes to the caller or back to the
/// runner, or the work is cancelled before it starts; exactly one of these.
#[test]
fn call_timeout_racing_the_runner_delivers_the_result_exactly_once() {
    model(|| {
        let slot = Arc::new(CallSlot::<u32>::new());
        let runner = {
            let slot = slot.clone();
            thread::spawn(move || {
                if !slot.start() {
                    return "cancelled";
                }
                match slot.finish(Ok(7)) {
                    None => "delivered",
                    Some(Ok(7)) => "returned",
                    Some(_) => unreachable!(),
                }
            })
        };
        let caller = slot.wait(Deadline::after(Some(std::time::Duration::from_millis(1))), &Spin::new());
        let runner = runner.join().unwrap();
        match caller {
            Ok(Ok(7)) => assert_eq!(runner, "delivered"),
            Err(TimedOut) => assert!(runner == "cancelled" || runner == "returned", "{runner}"),
            Ok(_) => unreachable!(),
        }
    });
}

/// Without a timeout the caller always gets the result (no lost wake-up), also when the runner
/// fails the work at stop.
#[test]
fn an_untimed_call_always_gets_its_answer() {
    model(|| {
        let slot = Arc::new(CallSlot::<u32>::new());
        let runner = {
            let slot = slot.clone();
            thread::spawn(move || {
                assert!(slot.start());
                assert!(slot.finish(Err(Error::new(Status::ShutDown, "stopped"))).is_none());
            })
        };
        let answer = slot.wait(Deadline::Never, &Spin::new()).unwrap();
        assert_eq!(answer.unwrap_err().status(), Status::ShutDown);
        runner.join().unwrap();
    });
}

/// Back-to-back blocking calls, the hand-off the spinning is for: the caller posts a call,
/// spins or sleeps for its result, and posts the next at once, while the runner spins or
/// sleeps for the next job. Neither side loses a wake-up whichever of them is spinning,
/// yielding or asleep when the other acts; every call gets its own answer, in order; the runner
/// ends when the queue closes.
#[test]
fn back_to_back_calls_hand_off_without_losing_a_wakeup() {
    model(|| {
        let queue = Arc::new(WorkQueue::<Arc<CallSlot<u32>>>::new(1));
        let runner = {
            let queue = queue.clone();
            thread::spawn(move || {
                let answered = std::cell::Cell::new(0);
                consume(
                    &queue,
                    |slot| {
                        assert!(slot.start());
                        answered.set(answered.get() + 1);
                        assert!(slot.finish(Ok(answered.get())).is_none());
                    },
                    |_| unreachable!("the queue closes only after the last answer"),
                    || (),
                );
                answered.get()
            })
        };
        let spin = Spin::new();
        for call in 1..=2 {
            let slot = Arc::new(CallSlot::new());
            assert!(queue.push(slot.clone(), Deadline::Never).is_ok());
            assert_eq!(slot.wait(Deadline::Never, &spin).unwrap().unwrap(), call);
        }
        assert!(queue.close());
        assert_eq!(runner.join().unwrap(), 2);
    });
}

/// A completion waiter that spins on an empty queue while the runner delivers and another
/// thread closes it: it gets the entry or sees the close (never sleeps through either), and
/// the entry is taken or discarded exactly once.
#[test]
fn a_spinning_completion_waiter_sees_a_delivery_or_the_close() {
    model(|| {
        let discarded = Arc::new(AtomicUsize::new(0));
        let cq = Arc::new(CqCore::<u32>::new(1, counting_discard(&discarded)));
        cq.reserve().unwrap();
        let runner = {
            let cq = cq.clone();
            thread::spawn(move || cq.deliver(Completion { tag: 1, result: Ok(10) }))
        };
        let closer = {
            let cq = cq.clone();
            thread::spawn(move || {
                cq.close();
            })
        };
        let taken = match cq.wait(Deadline::Never) {
            Ok(completion) => {
                assert_eq!(completion.tag, 1);
                1
            }
            Err(CqWaitError::Closed) => 0,
            Err(CqWaitError::TimedOut) => unreachable!(),
        };
        runner.join().unwrap();
        closer.join().unwrap();
        assert_eq!(taken + discarded.load(Ordering::SeqCst), 1);
    });
}

fn counting_discard(count: &Arc<AtomicUsize>) -> Option<Discard<u32>> {
    let count = count.clone();
    Some(Box::new(move |_: Completion<u32>| {
        count.fetch_add(1, Ordering::SeqCst);
    }))
}

/// Completion wait vs. post: a waiter sleeping on an empty queue is woken by the delivery; a
/// second delivery finds its reserved room.
#[test]
fn completion_wait_racing_delivery_gets_every_entry() {
    model(|| {
        let cq = Arc::new(CqCore::<u32>::new(2, None));
        cq.reserve().unwrap();
        cq.reserve().unwrap();
        assert_eq!(cq.reserve(), Err(CqRefused::Full));
        let runner = {
            let cq = cq.clone();
            thread::spawn(move || {
                cq.deliver(Completion { tag: 1, result: Ok(10) });
                cq.deliver(Completion { tag: 2, result: Ok(20) });
            })
        };
        let other = {
            let cq = cq.clone();
            thread::spawn(move || cq.wait(Deadline::Never).unwrap().tag)
        };
        let mine = cq.wait(Deadline::Never).unwrap().tag;
        let theirs = other.join().unwrap();
        runner.join().unwrap();
        assert_eq!(mine + theirs, 3, "each entry to exactly one waiter");
    });
}

/// Completion queue destroyed while work completes and a thread waits: every completion is
/// either taken by the waiter or discarded, exactly once; the waiter always returns.
#[test]
fn completion_close_racing_delivery_and_wait_loses_nothing() {
    model(|| {
        let discarded = Arc::new(AtomicUsize::new(0));
        let cq = Arc::new(CqCore::<u32>::new(1, counting_discard(&discarded)));
        cq.reserve().unwrap();
        let runner = {
            let cq = cq.clone();
            thread::spawn(move || cq.deliver(Completion { tag: 1, result: Ok(10) }))
        };
        let waiter = {
            let cq = cq.clone();
            thread::spawn(move || match cq.wait(Deadline::Never) {
                Ok(_) => 1,
                Err(CqWaitError::Closed) => 0,
                Err(CqWaitError::TimedOut) => unreachable!(),
            })
        };
        assert!(cq.close());
        let taken = waiter.join().unwrap();
        runner.join().unwrap();
        assert_eq!(taken + discarded.load(Ordering::SeqCst), 1);
        assert_eq!(cq.counts(), (0, 0));
    });
}
