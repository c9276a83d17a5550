//! Deadlines without per-tick scanning.
//!
//! Every timeout of one kind has the same length (the close deadline), so deadlines pushed in time order come out in time order:
//! a FIFO is already sorted. Pushing and expiring are O(1) and a tick costs
//! nothing per idle connection. Entries are never removed early; an entry
//! whose connection has moved on (or whose slab slot was reused, caught by
//! the connection id) is skipped when it expires.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Deadlines of one fixed length, oldest first.
///
/// 8 bytes per entry: the (slab key, connection id) pairs sit in one ring;
/// their deadlines, rounded up to whole milliseconds, are kept run-length
/// encoded in another (a burst of closes shares one mark). (The handshake
/// deadline used one too, until it moved into the connection's one wheel
/// entry: an 8-byte entry per accept for `handshake_timeout` showed in the
/// idle memory per connection.)
#[derive(Debug)]
pub struct DeadlineQueue {
    /// How long after `push` an entry expires.
    timeout: Duration,
    /// Deadlines are rounded up to whole milliseconds after this.
    epoch: Instant,
    /// (slab key, connection id), sorted by deadline.
    q: VecDeque<(u32, u32)>,
    /// (deadline, how many entries of `q` in a row have it), oldest first.
    marks: VecDeque<(Instant, u32)>,
}

impl DeadlineQueue {
    /// An empty queue whose entries expire `timeout` after they are pushed.
    pub fn new(timeout: Duration) -> Self {
        DeadlineQueue { timeout, epoch: Instant::now(), q: VecDeque::new(), marks: VecDeque::new() }
    }

    /// Arm a deadline for connection (`key`, `id`) starting `now`. Keys
    /// above `u32::MAX` cannot occur (the slab is reserved from the open-file
    /// limit).
    pub fn push(&mut self, now: Instant, key: usize, id: u32) {
        let since = (now + self.timeout).saturating_duration_since(self.epoch);
        // Rounded up: an entry never expires early.
        let ms = since.as_nanos().div_ceil(1_000_000).min(u64::MAX as u128) as u64;
        let at = self.epoch + Duration::from_millis(ms);
        match self.marks.back_mut() {
            // Same millisecond (or a clock that went back: never sort an
            // entry before an earlier one).
            Some((last, n)) if *last >= at => *n += 1,
            _ => self.marks.push_back((at, 1)),
        }
        self.q.push_back((key as u32, id));
    }

    /// The earliest pending deadline.
    pub fn next(&self) -> Option<Instant> {
        self.marks.front().map(|&(at, _)| at)
    }

    /// Remove and return one entry that has expired by `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(usize, u32)> {
        let (at, n) = self.marks.front_mut()?;
        if *at > now {
            return None;
        }
        *n -= 1;
        if *n == 0 {
            self.marks.pop_front();
        }
        let (key, id) = self.q.pop_front()?;
        // A burst of connections leaves a large ring behind; give it back
        // once it has drained.
        if self.q.is_empty() && self.q.capacity() > 4096 {
            self.q.shrink_to_fit();
            self.marks.shrink_to_fit();
        }
        Some((key as usize, id))
    }
}

/// A hashed timer wheel for per-connection check times (the handshake
/// deadline, idle keepalive, backpressure and frame deadlines).
///
/// Slots are `SLOT` wide; a deadline further out than the wheel spans is
/// parked in the farthest slot and re-armed by its owner when it fires. Each
/// connection keeps one live entry: it remembers the tick it armed, and an
/// entry whose tick no longer matches is stale and dropped when its slot
/// comes up. A tick costs only the entries due in that slot — never a scan of
/// every idle connection.
#[derive(Debug)]
pub struct TimerWheel {
    /// Entries (slab key, connection id) per slot, 8 bytes each. An entry
    /// always fires at the tick it was armed for (`arm` keeps ticks within
    /// one turn of the wheel), so the tick need not be stored: it is the
    /// slot's tick when it comes up.
    slots: Vec<Vec<(u32, u32)>>,
    /// When tick 0 began.
    epoch: Instant,
    /// The next tick to process.
    next_tick: u32,
    /// Entries in all slots (live or stale).
    len: usize,
}

impl TimerWheel {
    /// Width of one slot.
    pub const SLOT: Duration = Duration::from_millis(250);
    const SLOTS: u32 = 512;

    /// An empty wheel starting at `now`.
    pub fn new(now: Instant) -> Self {
        TimerWheel { slots: (0..Self::SLOTS).map(|_| Vec::new()).collect(), epoch: now, next_tick: 0, len: 0 }
    }

    /// The tick a deadline falls in (rounded up, never in the past).
    pub fn tick_of(&self, at: Instant) -> u32 {
        let d = at.saturating_duration_since(self.epoch);
        let t = d.as_nanos().div_ceil(Self::SLOT.as_nanos()) as u32;
        t.max(self.next_tick)
    }

    /// Arm an entry for (`key`, `id`) at `at`; returns the tick to remember.
    /// Deadlines beyond the wheel's span fire early, at its far end.
    pub fn arm(&mut self, at: Instant, key: usize, id: u32) -> u32 {
        let tick = self.tick_of(at).min(self.next_tick + Self::SLOTS - 1);
        self.slots[(tick % Self::SLOTS) as usize].push((key as u32, id));
        self.len += 1;
        tick
    }

    /// When the next non-empty slot is due (for the poll timeout).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        (0..Self::SLOTS)
            .map(|i| self.next_tick + i)
            .find(|t| !self.slots[(t % Self::SLOTS) as usize].is_empty())
            .map(|t| self.epoch + Self::SLOT * t)
    }

    /// Move every entry due by `now` into `due` as (key, id, tick).
    pub fn expire(&mut self, now: Instant, due: &mut Vec<(usize, u32, u32)>) {
        let now_tick = (now.saturating_duration_since(self.epoch).as_nanos() / Self::SLOT.as_nanos()) as u32;
        while self.next_tick <= now_tick {
            let slot = &mut self.slots[(self.next_tick % Self::SLOTS) as usize];
            let tick = self.next_tick;
            self.len -= slot.len();
            due.extend(slot.drain(..).map(|(key, id)| (key as usize, id, tick)));
            // Churn leaves many stale entries; don't keep their room forever.
            if slot.capacity() > 256 && slot.len() < slot.capacity() / 4 {
                slot.shrink_to_fit();
            }
            self.next_tick += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_fires_entries_in_their_slot_and_not_before() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let a = w.arm(t0 + Duration::from_secs(1), 1, 10);
        let b = w.arm(t0 + Duration::from_secs(300), 2, 20); // beyond the span: parked
        let mut due = Vec::new();
        w.expire(t0 + Duration::from_millis(900), &mut due);
        assert!(due.is_empty());
        w.expire(t0 + Duration::from_millis(1000), &mut due);
        assert_eq!(due, vec![(1, 10, a)]);
        due.clear();
        w.expire(t0 + Duration::from_secs(200), &mut due);
        assert_eq!(due, vec![(2, 20, b)], "parked entry fires at the far end for re-arming");
        assert!(w.next_deadline().is_none());
    }

    #[test]
    fn deadline_queue_entries_are_eight_bytes_and_never_expire_early() {
        assert_eq!(std::mem::size_of::<(u32, u32)>(), 8);
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new(Duration::from_millis(10));
        // A burst in one millisecond shares one mark; each entry still
        // comes out once, in order, and not before its deadline.
        for i in 0..100 {
            q.push(t0 + Duration::from_micros(i), i as usize, i as u32);
        }
        assert!(q.marks.len() <= 2, "{} marks for one millisecond", q.marks.len());
        assert_eq!(q.pop_expired(t0 + Duration::from_micros(9_999)), None);
        let late = t0 + Duration::from_millis(12);
        let out: Vec<_> = std::iter::from_fn(|| q.pop_expired(late)).collect();
        assert_eq!(out, (0..100).map(|i| (i as usize, i as u32)).collect::<Vec<_>>());
        assert_eq!(q.next(), None);
    }

    #[test]
    fn deadline_queue_is_fifo() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new(Duration::from_secs(1));
        q.push(t0, 1, 1);
        q.push(t0 + Duration::from_millis(10), 2, 2);
        assert_eq!(q.pop_expired(t0 + Duration::from_millis(999)), None);
        assert_eq!(q.pop_expired(t0 + Duration::from_millis(1005)), Some((1, 1)));
        assert_eq!(q.pop_expired(t0 + Duration::from_millis(1005)), None);
        // Deadlines are rounded up to the queue's millisecond grid.
        let next = q.next().unwrap();
        assert!(next >= t0 + Duration::from_millis(1010) && next <= t0 + Duration::from_millis(1011), "{next:?}");
    }
}
