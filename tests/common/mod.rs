//! Shared test fixtures: a value that records every drop and the thread it ran on.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

/// Where and how often tracked values were dropped.
#[derive(Clone, Default)]
pub struct DropLog(Arc<Mutex<Vec<(u32, u64)>>>);

impl DropLog {
    /// (value id, threadguard thread ID) of every drop so far.
    pub fn drops(&self) -> Vec<(u32, u64)> {
        self.0.lock().unwrap().clone()
    }

    /// How many times value `id` was dropped.
    pub fn count(&self, id: u32) -> usize {
        self.drops().iter().filter(|(dropped, _)| *dropped == id).count()
    }

    /// A tracked value that logs its drop.
    pub fn value(&self, id: u32) -> Tracked {
        Tracked { id, log: self.clone() }
    }
}

/// Logs its drop (with the dropping thread's ID) into its `DropLog`.
pub struct Tracked {
    pub id: u32,
    log: DropLog,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let thread = threadguard::current_thread_id().unwrap_or(0);
        self.log.0.lock().unwrap().push((self.id, thread));
    }
}
