//! Per-connection state: what an open connection costs.
//!
//! # Byte budget of an idle upgraded connection
//!
//! Server RSS per idle connection (`wsecho-loadtest idle --conns 19000
//! --server-pid …`, read 1 s after the last upgrade) is the sum of:
//!
//! ```text
//! slab slot     Conn (release layout; the slab's Vacant/Occupied         80 B
//!               tag sits in a niche of Conn, so the slot is no larger)
//!                 stream 4 (one fd; mio adds a selector id in debug
//!                 builds), id 4, phase 32 (Session 28 + tag; Closing's
//!                 two bools fit beside it), inbuf 8 (a ThinVec: length
//!                 and capacity live in the allocation), out 8, pmd 8,
//!                 three u32 ticks 12 (`since` serves the backpressure
//!                 pause and the frame in progress), six flags in one
//!                 byte, pad 3.
//! timer wheel   one live entry (u32 key, u32 id; the tick is implied     8 B
//!               by the slot). The handshake deadline is this same
//!               entry (armed at accept, re-armed for keepalive when it
//!               fires on an upgraded connection).
//!               + the slot Vecs' doubling slack                        0-8 B
//! ```
//!
//! 80 + 8 = 88 B plus slack. Measured (2026-12-02): 162 B (two reactors) /
//! 159 B (`--threads 1`) at the start of the work; 134 / 126 B with 8-byte
//! timer entries; 121 / 117 B with a 96-byte Conn; **92 / 89–90 B** with
//! this 80-byte Conn and no separate handshake queue (its 8-byte entries
//! stayed for `handshake_timeout` after each accept). Was in the 96-byte
//! Conn: a fat `Box<[u8]>` inbuf (16), five bools (5), separate
//! `paused_at`/`frame_since` ticks.
//! The slab itself is reserved for this reactor's share of
//! `--max-connections` up front and never doubles; pages of it that no
//! connection has touched are not resident, so the reservation costs no RSS.
//! Nothing else is per connection while idle: the read buffer, cork and
//! scratch belong to the reactor, `inbuf`/`out`/`pmd` are empty.
//! [`CONN_BUDGET`] is checked by a unit test.

use crate::pool::OutQueue;
use crate::proto::deflate::PmdCodec;
use crate::proto::handshake::RequestScanner;
use crate::proto::Session;
use std::io::{Read, Write};
use thin_vec::ThinVec;

/// The socket type the reactor's connections run over (the default type
/// parameter of [`Conn`], so the reactor's code is monomorphic).
pub type Stream = mio::net::TcpStream;

/// What a connection's byte stream must offer: nonblocking `Read`/`Write`
/// (`WouldBlock` when there is nothing to read or no room to write) and a way
/// to shut down our sending side (a TCP FIN). The reactor uses
/// [`Stream`]; a TLS stream, or the in-memory stream of the driver fuzz target
/// ([`crate::server::testing`]), slots in here — the per-connection code is
/// generic over it and never uses `dyn`.
pub trait Transport: Read + Write + std::fmt::Debug {
    /// Shut down the sending side (our FIN), keeping the receiving side open.
    fn shutdown_write(&mut self) -> std::io::Result<()>;

    /// The last read was short although the socket may hold more (a TLS
    /// stream whose buffer filled with an unfinished record): read again
    /// before trusting "short read means drained". Default: never.
    fn holds_input(&self) -> bool {
        false
    }
}

impl Transport for Stream {
    fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// The most bytes a [`Conn`] may take in the release layout (the unit test
/// `conn_fits_its_byte_budget` fails past it).
pub const CONN_BUDGET: usize = 80;

/// Where a connection is in its life. Changed only through
/// [`Conn::set_phase`], so every transition is in one place.
#[derive(Debug)]
pub enum Phase {
    /// Reading the HTTP upgrade request.
    Handshaking(RequestScanner),
    /// Upgraded: echoing frames.
    Open(Session),
    /// Sending our last bytes (an HTTP response or a Close frame). Once they
    /// are written: with `linger`, shut our sending side and discard input
    /// until the peer closes (so unread input cannot turn our last bytes into
    /// a reset); without it, close at once (the peer already sent its Close —
    /// RFC 6455 §7.1.1: "the server SHOULD close the underlying TCP
    /// connection first").
    Closing {
        /// Wait for the peer's EOF after our bytes are out.
        linger: bool,
        /// Our sending side is already shut down.
        write_shut: bool,
        /// Kept when we started a clean close (shutdown's 1001): frames are
        /// still decoded, data is ignored, and the peer's Close ends the
        /// connection at once. None after an error: input is discarded.
        session: Option<Session>,
    },
}

impl Phase {
    /// Whether incoming bytes are still interpreted (not just discarded).
    pub fn reads_input(&self) -> bool {
        matches!(self, Phase::Handshaking(_) | Phase::Open(_) | Phase::Closing { session: Some(_), .. })
    }

    /// Whether the socket is read at all. Once we have sent our last bytes
    /// after an error, or answered the peer's Close, nothing more is read
    /// until those bytes are out (reading could only show an EOF that must
    /// not cut them short); after that, a lingering connection reads (and
    /// discards) until the peer's EOF.
    pub fn reads_socket(&self) -> bool {
        match self {
            Phase::Handshaking(_) | Phase::Open(_) => true,
            Phase::Closing { session: Some(_), .. } => true,
            Phase::Closing { session: None, write_shut, .. } => *write_shut,
        }
    }
}

/// One accepted connection, over a [`Transport`] (`S`; a TCP socket in the
/// reactor).
#[derive(Debug)]
pub struct Conn<S = Stream> {
    /// The socket.
    pub stream: S,
    /// Unique per reactor (wrapping); tells a timer entry for a reused slab
    /// slot apart.
    pub id: u32,
    /// Lifecycle phase (and the protocol state that lives in it).
    pub phase: Phase,
    /// Bytes of an unfinished request head, frame header or small frame
    /// (at most `Limits::max_held_frame` of payload), in an allocation of
    /// exactly their size (plus the 16-byte length/capacity header that keeps
    /// this field one pointer wide). None — no allocation — between frames
    /// and while a large frame streams.
    pub inbuf: Option<ThinVec<u8>>,
    /// Bytes the kernel refused, in pooled chunks.
    pub out: OutQueue,
    /// permessage-deflate state, only if this connection negotiated it.
    pub pmd: Option<Box<PmdCodec>>,
    /// Reactor tick (250 ms units) when bytes last arrived: keepalive.
    pub last_seen: u32,
    /// Reactor tick when the current wait began: while reading is paused,
    /// when the pause began (backpressure timeout); otherwise, while a frame
    /// is in progress ([`Conn::in_frame`]), when it began (frame timeout). A
    /// resumed connection restarts the clock of its frame, so one field
    /// serves both.
    pub since: u32,
    /// Tick of this connection's one live timer-wheel entry (u32::MAX: none).
    pub armed: u32,
    /// The bits below, one byte for all ([`Conn::read_paused`] and the rest).
    flags: u8,
}

/// Defines a getter and a setter for each bit of [`Conn`]'s `flags`.
macro_rules! conn_flags {
    ($($(#[$doc:meta])* $bit:literal => $get:ident, $set:ident;)*) => {
        impl<S> Conn<S> {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $get(&self) -> bool {
                    self.flags & (1 << $bit) != 0
                }

                #[doc = concat!("Set [`Conn::", stringify!($get), "`].")]
                #[inline]
                pub fn $set(&mut self, on: bool) {
                    if on {
                        self.flags |= 1 << $bit;
                    } else {
                        self.flags &= !(1 << $bit);
                    }
                }
            )*
        }
    };
}

conn_flags! {
    /// Reading is paused because `out` is over the backpressure cap (or the
    /// write-chunk pool has no room).
    0 => read_paused, set_read_paused;
    /// The connection is in the reactor's run queue.
    1 => queued, set_queued;
    /// An event reported the peer's FIN (or an error). No further edge will
    /// come, so from now on every turn reads until `WouldBlock` or EOF
    /// instead of stopping at a short read — a turn that did not get to the
    /// EOF (paused, out of budget) must not lose it.
    2 => fin_reported, set_fin_reported;
    /// A keepalive ping is out and unanswered.
    3 => ping_sent, set_ping_sent;
    /// `inbuf` holds complete frames left for the next turn because this
    /// turn's inflate budget ran out: process them before reading more.
    4 => input_pending, set_input_pending;
    /// A frame is in progress (started, not finished): it must be finished
    /// within `frame_timeout` of `since`.
    5 => in_frame, set_in_frame;
}

impl<S> Conn<S> {
    /// A connection that has just been accepted.
    pub fn new(stream: S, id: u32) -> Self {
        Conn {
            stream,
            id,
            phase: Phase::Handshaking(RequestScanner::default()),
            inbuf: None,
            out: OutQueue::default(),
            pmd: None,
            last_seen: 0,
            since: 0,
            armed: u32::MAX,
            flags: 0,
        }
    }

    /// Stop reading (backpressure, or no room in the pool) at `tick`.
    pub fn pause_reading(&mut self, tick: u32) {
        self.set_read_paused(true);
        self.since = tick;
    }

    /// Reading resumes after a backpressure pause; a frame in progress gets
    /// a fresh `frame_timeout` (the pause was not the peer's doing).
    pub fn resume_reading(&mut self, tick: u32) {
        self.set_read_paused(false);
        self.since = tick;
    }

    /// Move to `phase`.
    pub fn set_phase(&mut self, phase: Phase) {
        log::trace!("conn {}: {:?} -> {:?}", self.id, self.phase_name(), phase_name(&phase));
        self.phase = phase;
    }

    /// A short name of the current phase, for logs.
    pub fn phase_name(&self) -> &'static str {
        phase_name(&self.phase)
    }
}

fn phase_name(p: &Phase) -> &'static str {
    match p {
        Phase::Handshaking(_) => "handshaking",
        Phase::Open(_) => "open",
        Phase::Closing { .. } => "closing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;
    use std::os::fd::OwnedFd;

    /// `Conn` as the release build lays it out: mio's `TcpStream` is one
    /// file descriptor (4 bytes) there, but carries a selector id in debug
    /// builds, so the budget is checked over a bare fd.
    type ReleaseConn = Conn<OwnedFd>;

    /// The per-connection cost the idle-memory target rests on (see the byte
    /// budget in this module's doc): a slab slot holding this struct, and
    /// nothing else while idle. Fails when `Conn` grows past its budget.
    #[test]
    fn conn_fits_its_byte_budget() {
        #[allow(dead_code)]
        enum SlabEntry<T> {
            Vacant(usize),
            Occupied(T),
        }
        let size = size_of::<ReleaseConn>();
        let slot = size_of::<SlabEntry<ReleaseConn>>();
        println!(
            "Conn {size} B (debug-build Conn<TcpStream>: {}), slab slot {slot} B, Phase {} B, Session {} B",
            size_of::<Conn>(),
            size_of::<Phase>(),
            size_of::<Session>()
        );
        assert!(size <= CONN_BUDGET, "Conn grew to {size} bytes (budget {CONN_BUDGET})");
        assert_eq!(slot, size, "the slab's Vacant/Occupied tag no longer fits in a niche of Conn");
        if !cfg!(debug_assertions) {
            assert_eq!(size_of::<Conn>(), size, "release TcpStream is not a bare fd any more");
        }
    }
}
