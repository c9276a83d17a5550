//! Deadlines without per-tick scanning.
//!
//! Every timeout of one kind has the same length (the handshake deadline, the
//! close deadline), so deadlines pushed in time order come out in time order:
//! a FIFO is already sorted. Pushing and expiring are O(1) and a tick costs
//! nothing per idle connection. Entries are never removed early; an entry
//! whose connection has moved on (or whose slab slot was reused, caught by
//! the connection id) is skipped when it expires.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Deadlines of one fixed length, oldest first.
#[derive(Debug)]
pub struct DeadlineQueue {
    /// How long after `push` an entry expires.
    timeout: Duration,
    /// (deadline, slab key, connection id), sorted by deadline.
    q: VecDeque<(Instant, usize, u64)>,
}

impl DeadlineQueue {
    /// An empty queue whose entries expire `timeout` after they are pushed.
    pub fn new(timeout: Duration) -> Self {
        DeadlineQueue { timeout, q: VecDeque::new() }
    }

    /// Arm a deadline for connection (`key`, `id`) starting `now`.
    pub fn push(&mut self, now: Instant, key: usize, id: u64) {
        self.q.push_back((now + self.timeout, key, id));
    }

    /// The earliest pending deadline.
    pub fn next(&self) -> Option<Instant> {
        self.q.front().map(|e| e.0)
    }

    /// Remove and return one entry that has expired by `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(usize, u64)> {
        match self.q.front() {
            Some(&(at, key, id)) if at <= now => {
                self.q.pop_front();
                Some((key, id))
            }
            _ => None,
        }
    }
}
