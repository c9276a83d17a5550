//! What connection handlers borrow from the reactor: buffers, the write-chunk
//! pool, timers and the clock — and the small enums they answer with.

use super::config::Config;
use super::conn::Conn;
use super::metrics::ReactorMetrics;
use super::timers::{DeadlineQueue, TimerWheel};
use crate::pool::BufPool;
use crate::proto::deflate::CodecPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thin_vec::ThinVec;

/// Why the reactor dropped a connection: a value, so logs and metrics can
/// count closes by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Both Close frames were exchanged (or our last HTTP bytes are out and
    /// the peer closed).
    CloseHandshakeDone,
    /// The peer closed TCP in the Open phase without a Close frame.
    PeerEofWhileOpen,
    /// The peer closed TCP before finishing its upgrade request.
    PeerEofDuringHandshake,
    /// The peer closed TCP while we were closing.
    PeerEofWhileClosing,
    /// A read failed (e.g. connection reset).
    ReadError,
    /// A write failed (e.g. connection reset, broken pipe).
    WriteError,
    /// The peer broke the protocol after we had started closing.
    ProtocolErrorWhileClosing,
    /// The upgrade request did not arrive within `handshake_timeout`.
    HandshakeTimeout,
    /// The peer did not finish closing within `close_timeout`.
    CloseTimeout,
    /// Still handshaking when the server shut down.
    Shutdown,
}

impl DropReason {
    /// Every reason, for exposition (metrics).
    pub const ALL: [DropReason; 10] = [
        DropReason::CloseHandshakeDone,
        DropReason::PeerEofWhileOpen,
        DropReason::PeerEofDuringHandshake,
        DropReason::PeerEofWhileClosing,
        DropReason::ReadError,
        DropReason::WriteError,
        DropReason::ProtocolErrorWhileClosing,
        DropReason::HandshakeTimeout,
        DropReason::CloseTimeout,
        DropReason::Shutdown,
    ];

    /// A short, stable name (log lines, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::CloseHandshakeDone => "close handshake done",
            DropReason::PeerEofWhileOpen => "peer closed TCP without a close frame",
            DropReason::PeerEofDuringHandshake => "peer closed during handshake",
            DropReason::PeerEofWhileClosing => "peer closed",
            DropReason::ReadError => "read error",
            DropReason::WriteError => "write error",
            DropReason::ProtocolErrorWhileClosing => "protocol error while closing",
            DropReason::HandshakeTimeout => "handshake timeout",
            DropReason::CloseTimeout => "close timeout",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// What happens to a connection after it was driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Wait for the next event.
    Keep,
    /// More input may be waiting: give it another turn after the others.
    Requeue,
    /// Close it now.
    Drop(DropReason),
}

impl Fate {
    /// Whether the connection is to be dropped.
    pub(crate) fn is_drop(self) -> bool {
        matches!(self, Fate::Drop(_))
    }
}

/// How far to read a readable connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMode {
    /// Stop after a read that did not fill the buffer (the socket is empty).
    UntilShort,
    /// Read until WouldBlock or EOF (the event reported the peer's FIN).
    UntilWouldBlock,
}

/// Reactor-wide resources that connection handlers borrow.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) cfg: Config,
    pub(crate) pool: BufPool,
    /// The one read buffer (always `read_buffer_size` long).
    pub(crate) readbuf: Vec<u8>,
    /// Echoes gathered during one read, written with one syscall.
    pub(crate) cork: Vec<u8>,
    pub(crate) close_timers: DeadlineQueue,
    pub(crate) now: Instant,
    /// Spare zlib states for permessage-deflate.
    pub(crate) codecs: CodecPool,
    /// Scratch for re-compressed echoes.
    pub(crate) deflate_scratch: Vec<u8>,
    /// Each connection's one live deadline: handshake, keepalive,
    /// backpressure and frame timeouts.
    pub(crate) wheel: TimerWheel,
    /// `now` in wheel ticks (250 ms) since the reactor started.
    pub(crate) tick: u32,
    /// When tick 0 began (the wheel's epoch).
    pub(crate) wheel_epoch: Instant,
    /// Bytes held in connections' `inbuf`s (bounded by `max_held_input`).
    pub(crate) held_bytes: usize,
    /// Bytes inflated during the current read (counted in the read budget).
    pub(crate) work: usize,
    /// Connections not read because the write-chunk pool is at its cap:
    /// (slab key, id). Given a turn when chunks come back.
    pub(crate) pool_waiters: Vec<(usize, u32)>,
    /// This reactor's metric cells (read by the metrics thread).
    pub(crate) metrics: Arc<ReactorMetrics>,
}

impl Ctx {
    /// Reactor-wide state for `cfg`, with the clock starting at `start`.
    pub(crate) fn new(mut cfg: Config, start: Instant) -> Ctx {
        // Held bytes are copied to the front of the read buffer before each
        // read, so whatever may be held must leave room for reading.
        let readbuf_len = cfg.read_buffer_size.max(2 * cfg.limits.max_request_bytes).max(4096);
        // A held frame leaves at least 1 KiB of the buffer to read into.
        let held_max = (readbuf_len - 1024 - crate::proto::MAX_HEADER_LEN) as u64;
        cfg.limits.max_held_frame = cfg.limits.max_held_frame.min(held_max);
        Ctx {
            pool: BufPool::new(cfg.write_chunk_size, cfg.max_free_chunks),
            readbuf: vec![0; readbuf_len],
            cork: Vec::with_capacity(cfg.cork_size),
            close_timers: DeadlineQueue::new(cfg.close_timeout),
            now: start,
            codecs: {
                let mut pool = CodecPool::new(cfg.deflate.level, 64);
                pool.set_max_inflaters(cfg.max_inflaters);
                pool
            },
            deflate_scratch: Vec::new(),
            wheel: TimerWheel::new(start),
            tick: 0,
            wheel_epoch: start,
            held_bytes: 0,
            work: 0,
            pool_waiters: Vec::new(),
            metrics: Arc::default(),
            cfg,
        }
    }

    /// `now` in nanoseconds since the reactor's clock started (for the
    /// handshake latency).
    pub(crate) fn clock_ns(&self) -> u64 {
        self.now.saturating_duration_since(self.wheel_epoch).as_nanos().min(u64::MAX as u128) as u64
    }

    /// The instant `ns` nanoseconds after the reactor's clock started (the
    /// inverse of [`Ctx::clock_ns`]).
    pub(crate) fn instant_of_ns(&self, ns: u64) -> Instant {
        self.wheel_epoch + Duration::from_nanos(ns)
    }

    /// Advance the clock.
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = now;
        let since = now.saturating_duration_since(self.wheel_epoch);
        self.tick = (since.as_nanos() / TimerWheel::SLOT.as_nanos()).min(u32::MAX as u128) as u32;
    }

    /// `d` in wheel ticks, rounded up.
    pub(crate) fn ticks(d: Duration) -> u32 {
        d.as_nanos().div_ceil(TimerWheel::SLOT.as_nanos()).min(u32::MAX as u128) as u32
    }

    fn instant_of(&self, tick: u32) -> Instant {
        self.now + TimerWheel::SLOT * tick.saturating_sub(self.tick)
    }

    /// Make sure the connection's live wheel entry fires no later than
    /// `tick`.
    pub(crate) fn arm<S>(&mut self, conn: &mut Conn<S>, key: usize, tick: u32) {
        self.arm_at(conn, key, self.instant_of(tick));
    }

    /// Make sure the connection's live wheel entry fires no earlier than
    /// `at` and at most one wheel slot (250 ms) later — unless an earlier
    /// entry is already armed, which then re-arms when it fires.
    pub(crate) fn arm_at<S>(&mut self, conn: &mut Conn<S>, key: usize, at: Instant) {
        if conn.armed == u32::MAX || self.wheel.tick_of(at) < conn.armed {
            conn.armed = self.wheel.arm(at, key, conn.id);
        }
    }

    /// Whether lent-out write chunks exceed `max_pool_bytes`.
    pub(crate) fn pool_over_cap(&self) -> bool {
        self.pool_bytes() > self.cfg.max_pool_bytes
    }

    /// Replace the connection's held input with a right-sized copy of
    /// `bytes` (none if empty), keeping `held_bytes` in step.
    pub(crate) fn set_inbuf<S>(&mut self, conn: &mut Conn<S>, bytes: &[u8]) {
        let old = conn.inbuf.as_deref().map_or(0, <[u8]>::len);
        if old == 0 && bytes.is_empty() {
            return;
        }
        self.held_bytes = self.held_bytes - old + bytes.len();
        conn.inbuf = (!bytes.is_empty()).then(|| {
            let mut held = ThinVec::with_capacity(bytes.len());
            held.extend_from_slice(bytes);
            held
        });
    }

    /// Bytes of write chunks lent out.
    pub(crate) fn pool_bytes(&self) -> usize {
        self.pool.in_use() * self.pool.chunk_size()
    }

    /// How many bytes one read may take so that echoing them cannot push
    /// the pool past its cap (two chunks of slack for partly filled chunks).
    pub(crate) fn pool_room(&self) -> usize {
        self.cfg.max_pool_bytes.saturating_sub(self.pool_bytes()).saturating_sub(2 * self.pool.chunk_size())
    }
}
