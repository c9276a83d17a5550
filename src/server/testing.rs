//! One connection driven over an in-memory stream, for the `reactor_driver`
//! fuzz target and `tests/driver_in_memory.rs`. Not a stable API.
//!
//! [`Driver`] is a one-connection reactor: it owns the reactor-wide state
//! (`Ctx`: read buffer, cork, write-chunk pool, timers, clock) and one
//! [`Conn`], and runs the same per-connection code as the real reactor
//! (`driver::turn`, `driver::timer_turn`, the pool-waiter wake-up and the
//! drop) — only the event source and the clock are the caller's.
//!
//! [`mem_pair`] makes the stream: a [`MemStream`] for the connection and a
//! [`Peer`] handle for the test, which decides when the client's bytes
//! arrive, when its FIN arrives, how many bytes the "kernel" accepts per
//! write (or `WouldBlock`, or an error), and which readiness events the
//! reactor gets. Events follow epoll's edge-triggered rules: a readable edge
//! when bytes or the FIN arrive, a writable edge at the start and when room
//! appears after a write hit `WouldBlock` — so a reactor that stops reading
//! early, or waits for an edge that never comes, stalls here as it would on
//! a socket.

use super::config::Config;
use super::conn::{Conn, Phase, Transport};
use super::ctx::{Ctx, DropReason, Fate, ReadMode};
use super::driver::{timer_turn, turn};
use crate::pool::OutQueue;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Slab key of the one connection.
const KEY: usize = 0;
/// Its connection id.
const ID: u32 = 1;

/// Readiness reported for the connection: what mio's `Event` would say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// `is_readable()`.
    pub readable: bool,
    /// `is_read_closed()`: the peer's FIN has arrived.
    pub read_closed: bool,
    /// `is_writable()`.
    pub writable: bool,
    /// `is_error()`.
    pub error: bool,
}

impl Readiness {
    /// Whether any bit is set.
    pub fn any(&self) -> bool {
        self.readable || self.read_closed || self.writable || self.error
    }
}

/// The state both ends of an in-memory stream share.
#[derive(Debug)]
struct Wire {
    /// Client bytes that have arrived and not been read.
    inbound: VecDeque<u8>,
    /// The client's FIN has arrived (reads return 0 once `inbound` is empty).
    eof: bool,
    /// Reads fail with this (a reset) from now on.
    read_error: Option<io::ErrorKind>,
    /// Next reads to fail with `Interrupted`.
    interrupt_reads: u32,
    /// Everything the server wrote, in order.
    written: Vec<u8>,
    /// Bytes the "kernel" accepts before `WouldBlock` (`usize::MAX`: no limit).
    credit: usize,
    /// Writes fail with this from now on.
    write_error: Option<io::ErrorKind>,
    /// Next writes to fail with `Interrupted`.
    interrupt_writes: u32,
    /// A vectored write takes at most its first non-empty slice (legal, and
    /// what a TLS stream typically does).
    first_slice_only: bool,
    /// A write returned `WouldBlock` and no writable edge has fired since.
    write_blocked: bool,
    /// The server shut down its sending side.
    write_shut: bool,
    /// The server dropped the stream (closed the socket).
    closed: bool,
    /// Pending edges, cleared when reported.
    read_edge: bool,
    write_edge: bool,
    error_edge: bool,
    /// Counters.
    reads: u64,
    bytes_read: u64,
    writes: u64,
    /// Misuse seen (each is a bug in the caller of the stream).
    writes_after_shutdown: u32,
    empty_reads: u32,
    empty_writes: u32,
}

/// The connection's end of an in-memory stream.
#[derive(Debug)]
pub struct MemStream {
    wire: Rc<RefCell<Wire>>,
}

/// The test's (client's) end of an in-memory stream.
#[derive(Debug, Clone)]
pub struct Peer {
    wire: Rc<RefCell<Wire>>,
}

/// A connected pair: the connection's stream and the client's handle. The
/// write side starts with unlimited room and one writable edge (as a newly
/// registered socket).
pub fn mem_pair() -> (MemStream, Peer) {
    let wire = Rc::new(RefCell::new(Wire {
        inbound: VecDeque::new(),
        eof: false,
        read_error: None,
        interrupt_reads: 0,
        written: Vec::new(),
        credit: usize::MAX,
        write_error: None,
        interrupt_writes: 0,
        first_slice_only: false,
        write_blocked: false,
        write_shut: false,
        closed: false,
        read_edge: false,
        write_edge: true,
        error_edge: false,
        reads: 0,
        bytes_read: 0,
        writes: 0,
        writes_after_shutdown: 0,
        empty_reads: 0,
        empty_writes: 0,
    }));
    (MemStream { wire: wire.clone() }, Peer { wire })
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut w = self.wire.borrow_mut();
        w.reads += 1;
        if buf.is_empty() {
            w.empty_reads += 1; // Ok(0) would read as EOF
        }
        if w.interrupt_reads > 0 {
            w.interrupt_reads -= 1;
            return Err(io::ErrorKind::Interrupted.into());
        }
        if let Some(kind) = w.read_error {
            return Err(kind.into());
        }
        if w.inbound.is_empty() {
            return if w.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(w.inbound.len());
        for (dst, src) in buf[..n].iter_mut().zip(w.inbound.drain(..n)) {
            *dst = src;
        }
        w.bytes_read += n as u64;
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut w = self.wire.borrow_mut();
        w.writes += 1;
        if w.write_shut {
            w.writes_after_shutdown += 1;
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if w.interrupt_writes > 0 {
            w.interrupt_writes -= 1;
            return Err(io::ErrorKind::Interrupted.into());
        }
        if let Some(kind) = w.write_error {
            return Err(kind.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            w.empty_writes += 1; // Ok(0) would read as "no more bytes accepted"
            return Ok(0);
        }
        if w.credit == 0 {
            w.write_blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut room = w.credit.min(total);
        if w.first_slice_only {
            room = room.min(bufs.iter().map(|b| b.len()).find(|&n| n > 0).unwrap_or(0));
        }
        let mut left = room;
        for b in bufs {
            let k = left.min(b.len());
            w.written.extend_from_slice(&b[..k]);
            left -= k;
            if left == 0 {
                break;
            }
        }
        if w.credit != usize::MAX {
            w.credit -= room;
        }
        Ok(room)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.wire.borrow_mut().write_shut = true;
        Ok(())
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        self.wire.borrow_mut().closed = true;
    }
}

impl Peer {
    /// `bytes` arrive from the client (a readable edge).
    pub fn send(&self, bytes: &[u8]) {
        let mut w = self.wire.borrow_mut();
        assert!(!w.eof, "the client sent bytes after its FIN");
        w.inbound.extend(bytes);
        w.read_edge = true;
    }

    /// The client's FIN arrives (a readable edge; later events report
    /// `read_closed`).
    pub fn finish(&self) {
        let mut w = self.wire.borrow_mut();
        w.eof = true;
        w.read_edge = true;
    }

    /// Reads fail with `kind` from now on (an error event).
    pub fn fail_reads(&self, kind: io::ErrorKind) {
        let mut w = self.wire.borrow_mut();
        w.read_error = Some(kind);
        w.error_edge = true;
    }

    /// Writes fail with `kind` from now on (an error event).
    pub fn fail_writes(&self, kind: io::ErrorKind) {
        let mut w = self.wire.borrow_mut();
        w.write_error = Some(kind);
        w.error_edge = true;
    }

    /// The next `reads` reads and `writes` writes fail with `Interrupted`.
    pub fn interrupt(&self, reads: u32, writes: u32) {
        let mut w = self.wire.borrow_mut();
        w.interrupt_reads += reads;
        w.interrupt_writes += writes;
    }

    /// From now on the "kernel" accepts `n` more bytes in total, then
    /// `WouldBlock` (`usize::MAX`: no limit). Room after a blocked write is a
    /// writable edge.
    pub fn set_write_room(&self, n: usize) {
        let mut w = self.wire.borrow_mut();
        w.credit = n;
        if n > 0 && w.write_blocked {
            w.write_blocked = false;
            w.write_edge = true;
        }
    }

    /// Let the "kernel" accept `n` more bytes (the client read them).
    pub fn grant_write_room(&self, n: usize) {
        let room = self.wire.borrow().credit.saturating_add(n);
        self.set_write_room(room);
    }

    /// Vectored writes take at most their first non-empty slice.
    pub fn set_first_slice_only(&self, on: bool) {
        self.wire.borrow_mut().first_slice_only = on;
    }

    /// Take the pending edges as one event. `level`: report every bit that
    /// holds now, as epoll does when any edge fires; otherwise only the bits
    /// whose edge fired (kqueue's separate read and write filters).
    pub fn take_event(&self, level: bool) -> Option<Readiness> {
        let mut w = self.wire.borrow_mut();
        if w.closed || !(w.read_edge || w.write_edge || w.error_edge) {
            return None;
        }
        let error = w.error_edge || (level && (w.read_error.is_some() || w.write_error.is_some()));
        let readable_now = !w.inbound.is_empty() || w.eof || w.read_error.is_some();
        let r = Readiness {
            readable: w.read_edge || (level && readable_now),
            read_closed: (w.read_edge || level) && w.eof,
            writable: w.write_edge || (level && w.credit > 0),
            error,
        };
        w.read_edge = false;
        w.write_edge = false;
        w.error_edge = false;
        Some(r)
    }

    /// Whether an edge is waiting to be reported.
    pub fn has_event(&self) -> bool {
        let w = self.wire.borrow();
        !w.closed && (w.read_edge || w.write_edge || w.error_edge)
    }

    /// Everything the server wrote so far.
    pub fn written(&self) -> Vec<u8> {
        self.wire.borrow().written.clone()
    }

    /// How many bytes the server wrote so far.
    pub fn written_len(&self) -> usize {
        self.wire.borrow().written.len()
    }

    /// Client bytes that arrived and were not read yet.
    pub fn unread(&self) -> usize {
        self.wire.borrow().inbound.len()
    }

    /// Bytes the server has read.
    pub fn bytes_read(&self) -> u64 {
        self.wire.borrow().bytes_read
    }

    /// Read and write calls so far.
    pub fn calls(&self) -> (u64, u64) {
        let w = self.wire.borrow();
        (w.reads, w.writes)
    }

    /// The server shut down its sending side.
    pub fn server_shut_write(&self) -> bool {
        self.wire.borrow().write_shut
    }

    /// The server closed the connection (dropped the stream).
    pub fn server_closed(&self) -> bool {
        self.wire.borrow().closed
    }

    /// The client's FIN has arrived.
    pub fn client_finished(&self) -> bool {
        self.wire.borrow().eof
    }

    /// Misuse of the stream seen so far: (writes after shutdown, reads into
    /// an empty buffer, writes of nothing). All must stay 0.
    pub fn misuse(&self) -> (u32, u32, u32) {
        let w = self.wire.borrow();
        (w.writes_after_shutdown, w.empty_reads, w.empty_writes)
    }
}

/// A one-connection reactor over any [`Transport`], with a clock the caller
/// moves.
#[derive(Debug)]
pub struct Driver<S: Transport> {
    ctx: Ctx,
    conn: Option<Conn<S>>,
    /// In the run queue (the reactor's `ready`).
    queued: bool,
    /// Why the connection was dropped, and how many bytes it still had queued.
    dropped: Option<(DropReason, usize)>,
    /// When the clock started.
    start: Instant,
    /// Write chunks held on behalf of "other connections".
    others: OutQueue,
}

impl<S: Transport> Driver<S> {
    /// Accept a connection over `stream` with the reactor settings `cfg`.
    pub fn new(cfg: Config, stream: S) -> Self {
        let start = Instant::now();
        let mut ctx = Ctx::new(cfg, start);
        let mut conn = Conn::new(stream, ID);
        let deadline = ctx.now + ctx.cfg.handshake_timeout;
        ctx.arm_at(&mut conn, KEY, deadline);
        Driver { ctx, conn: Some(conn), queued: false, dropped: None, start, others: OutQueue::default() }
    }

    /// The settings in force (after `Ctx::new` fitted them to the read
    /// buffer).
    pub fn config(&self) -> &Config {
        &self.ctx.cfg
    }

    /// The connection, until it is dropped.
    pub fn conn(&self) -> Option<&Conn<S>> {
        self.conn.as_ref()
    }

    /// Why the connection was dropped and how many queued bytes it lost.
    pub fn dropped(&self) -> Option<(DropReason, usize)> {
        self.dropped
    }

    /// Whether the connection is in the run queue.
    pub fn queued(&self) -> bool {
        self.queued
    }

    /// Length of the reactor's read buffer.
    pub fn readbuf_len(&self) -> usize {
        self.ctx.readbuf.len()
    }

    /// Bytes left in the cork (0 between turns).
    pub fn cork_len(&self) -> usize {
        self.ctx.cork.len()
    }

    /// The reactor's count of held input bytes.
    pub fn held_bytes(&self) -> usize {
        self.ctx.held_bytes
    }

    /// Bytes of write chunks lent out (this connection's and the "others'").
    pub fn pool_bytes(&self) -> usize {
        self.ctx.pool_bytes()
    }

    /// Bytes of one write chunk.
    pub fn chunk_size(&self) -> usize {
        self.ctx.pool.chunk_size()
    }

    /// Bytes queued by "other connections".
    pub fn others_bytes(&self) -> usize {
        self.others.len()
    }

    /// Whether the connection waits for room in the write-chunk pool.
    pub fn waiting_for_pool(&self) -> bool {
        !self.ctx.pool_waiters.is_empty()
    }

    /// Time since the driver started.
    pub fn elapsed(&self) -> Duration {
        self.ctx.now - self.start
    }

    /// "Other connections" queue `n` more bytes (borrowing write chunks).
    pub fn others_queue(&mut self, n: usize) {
        let zeros = vec![0u8; n];
        self.others.push(&zeros, &mut self.ctx.pool);
    }

    /// "Other connections" got their bytes out (chunks return to the pool).
    pub fn others_drain(&mut self) {
        self.others.clear(&mut self.ctx.pool);
    }

    /// Deliver one readiness event, as the reactor's event loop does.
    pub fn event(&mut self, r: Readiness) {
        let read = if r.read_closed || r.error {
            Some(ReadMode::UntilWouldBlock)
        } else if r.readable {
            Some(ReadMode::UntilShort)
        } else {
            None
        };
        let writable = r.writable || r.error;
        self.drive(read, writable);
    }

    /// Give the connection its turn from the run queue, if it is queued.
    /// Returns whether it ran.
    pub fn run_queue(&mut self) -> bool {
        if !self.queued {
            return false;
        }
        self.queued = false;
        self.drive(Some(ReadMode::UntilShort), false);
        true
    }

    /// The reactor's `wake_pool_waiters`.
    pub fn wake_pool_waiters(&mut self) {
        if self.ctx.pool_waiters.is_empty() || self.ctx.pool_room() == 0 {
            return;
        }
        for (key, id) in std::mem::take(&mut self.ctx.pool_waiters) {
            let Some(c) = self.conn.as_mut() else { continue };
            if key != KEY || c.id != id || !c.read_paused() || !c.out.is_empty() {
                continue;
            }
            c.resume_reading(self.ctx.tick);
            self.queued = true;
        }
    }

    /// Move the clock forward by `d` and fire what is due (the reactor's
    /// `expire_timers`).
    pub fn advance(&mut self, d: Duration) {
        let now = self.ctx.now + d;
        self.ctx.set_now(now);
        let mut due = Vec::new();
        self.ctx.wheel.expire(now, &mut due);
        for (key, id, tick) in due {
            if !self.is_conn(key, id) {
                continue;
            }
            let Some(conn) = self.conn.as_mut() else { continue };
            if conn.armed != tick {
                continue;
            }
            let fate = timer_turn(conn, &mut self.ctx, key);
            self.settle(fate);
        }
        while let Some((key, id)) = self.ctx.close_timers.pop_expired(now) {
            if self.is_conn(key, id) && matches!(self.conn.as_ref().map(|c| &c.phase), Some(Phase::Closing { .. })) {
                self.drop_conn(DropReason::CloseTimeout);
            }
        }
    }

    /// Time until the next timer is due (None: none armed).
    pub fn next_deadline(&self) -> Option<Duration> {
        [self.ctx.close_timers.next(), self.ctx.wheel.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(self.ctx.now))
    }

    fn is_conn(&self, key: usize, id: u32) -> bool {
        key == KEY && self.conn.as_ref().is_some_and(|c| c.id == id)
    }

    fn drive(&mut self, read: Option<ReadMode>, writable: bool) {
        let Some(conn) = self.conn.as_mut() else { return };
        let fate = turn(conn, &mut self.ctx, KEY, read, writable);
        self.settle(fate);
    }

    fn settle(&mut self, fate: Fate) {
        match fate {
            Fate::Keep => {}
            Fate::Requeue => self.queued = self.conn.is_some(),
            Fate::Drop(why) => self.drop_conn(why),
        }
    }

    /// The reactor's `drop_conn`.
    fn drop_conn(&mut self, why: DropReason) {
        if let Some(mut c) = self.conn.take() {
            self.dropped = Some((why, c.out.len()));
            c.out.clear(&mut self.ctx.pool);
            self.ctx.set_inbuf(&mut c, &[]);
            if c.pmd.as_ref().is_some_and(|p| p.holds_inflater()) {
                self.ctx.codecs.release_inflater();
            }
            self.queued = false;
        }
    }
}
