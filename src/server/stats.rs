//! What a reactor counts: a plain tally it updates without atomics, the
//! periodic `info` summary drawn from it, and the two numbers other threads
//! may read ([`ReactorStats`]).
//!
//! At the default log level the reactor writes no line per connection: it
//! writes at most one summary line every [`SUMMARY_EVERY`], and only when
//! something changed, so an idle reactor stays silent (and is not woken).

use super::ctx::DropReason;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a busy reactor logs its summary at `info`.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Counts kept by the reactor thread itself (no atomics). Messages and bytes
/// echoed are counted in `Ctx`, where the echo path can reach them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Connections accepted and kept (not the refused ones).
    pub(crate) accepted: u64,
    /// Connections answered 503 at accept (over max-connections, or shutting
    /// down).
    pub(crate) refused: u64,
    /// Connections dropped, by reason (indexed by `DropReason as usize`).
    pub(crate) closed: [u64; DropReason::ALL.len()],
    /// Complete data messages echoed.
    pub(crate) messages: u64,
    /// Payload bytes of the data frames echoed.
    pub(crate) bytes: u64,
}

impl Tally {
    /// Count one dropped connection.
    pub(crate) fn count_close(&mut self, why: DropReason) {
        self.closed[why as usize] += 1;
    }

    /// The summary line for what happened since `before`, with `open`
    /// connections now and `span` covered.
    pub(crate) fn summary(&self, before: &Tally, open: usize, span: Duration) -> String {
        let mut s = format!("{:.1} s: {open} open, {} accepted", span.as_secs_f64(), self.accepted - before.accepted);
        if self.refused > before.refused {
            let _ = write!(s, ", {} refused (503)", self.refused - before.refused);
        }
        let closed: u64 = self.closed.iter().sum::<u64>() - before.closed.iter().sum::<u64>();
        let _ = write!(s, ", {closed} closed");
        let mut sep = " (";
        for why in DropReason::ALL {
            let n = self.closed[why as usize] - before.closed[why as usize];
            if n > 0 {
                let _ = write!(s, "{sep}{n} {}", why.as_str());
                sep = ", ";
            }
        }
        if closed > 0 {
            s.push(')');
        }
        let _ =
            write!(s, "; {} messages, {} echoed", self.messages - before.messages, Bytes(self.bytes - before.bytes));
        s
    }
}

/// A byte count in the unit that reads best.
struct Bytes(u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const KIB: f64 = 1024.0;
        let b = self.0 as f64;
        if b < KIB {
            write!(f, "{} B", self.0)
        } else if b < KIB * KIB {
            write!(f, "{:.1} KiB", b / KIB)
        } else if b < KIB * KIB * KIB {
            write!(f, "{:.1} MiB", b / (KIB * KIB))
        } else {
            write!(f, "{:.2} GiB", b / (KIB * KIB * KIB))
        }
    }
}

/// The counters of one reactor that other threads can read. The reactor
/// stores into them (plain `Relaxed` stores, no read-modify-write) once per
/// accepted or dropped connection.
#[derive(Debug, Default)]
pub(crate) struct ReactorCounters {
    accepted: AtomicU64,
    open: AtomicU64,
}

impl ReactorCounters {
    /// Publish the reactor's current counts.
    pub(crate) fn publish(&self, accepted: u64, open: usize) {
        self.accepted.store(accepted, Ordering::Relaxed);
        self.open.store(open as u64, Ordering::Relaxed);
    }

    /// What was last published.
    pub(crate) fn snapshot(&self) -> ReactorStats {
        ReactorStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed) as usize,
        }
    }
}

/// One reactor's counts, as read from another thread (e.g. to see how the
/// kernel spread connections across `SO_REUSEPORT` listeners).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReactorStats {
    /// Connections this reactor accepted and served (503-refused ones are
    /// not counted).
    pub accepted: u64,
    /// Connections it holds now.
    pub open: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_only_what_changed_and_names_close_reasons() {
        let before = Tally { accepted: 5, messages: 7, ..Tally::default() };
        let mut now = before;
        now.accepted += 3;
        now.refused += 1;
        now.count_close(DropReason::CloseHandshakeDone);
        now.count_close(DropReason::CloseHandshakeDone);
        now.count_close(DropReason::HandshakeTimeout);
        now.messages += 10;
        now.bytes += 3 * 1024;
        let line = now.summary(&before, 4, Duration::from_secs(10));
        assert_eq!(
            line,
            "10.0 s: 4 open, 3 accepted, 1 refused (503), 3 closed (2 close handshake done, 1 handshake timeout); \
             10 messages, 3.0 KiB echoed"
        );
    }

    #[test]
    fn summary_without_closes_has_no_reason_list() {
        let before = Tally::default();
        let now = Tally { accepted: 2, ..Tally::default() };
        assert_eq!(
            now.summary(&before, 2, Duration::from_millis(10_500)),
            "10.5 s: 2 open, 2 accepted, 0 closed; 0 messages, 0 B echoed"
        );
    }
}
