//! One connection's turn: read, hand the bytes to its phase, write what that
//! produced, and apply backpressure.
//!
//! Input lives in the reactor's one read buffer. A connection keeps bytes
//! between reads only when a request head, a frame header or a small frame
//! (≤ `Limits::max_held_frame`) is unfinished; they are copied back to the
//! front of the read buffer before the next read, so the bytes are always
//! decoded in one contiguous slice, and what is left over is stored in an
//! allocation of exactly its size. Large frames are streamed, never held.

use super::conn::{Conn, Phase, Transport};
use super::ctx::{Ctx, DropReason, Fate, ReadMode};
use super::io::{self, IoStep};
use super::keepalive::check_conn;
use super::open::echo_frames;
use super::output::{after_output, enter_closing, finish_cork, flush_out, CloseKind};
use super::upgrade::{handshake_input, reject_busy};
use crate::proto::Action;

/// One readiness event for a connection — the per-connection part of the
/// reactor's `drive`, shared with [`crate::server::testing`]: flush queued
/// bytes if writable, read if readable (or if the flush made room again),
/// then finish a Closing connection whose last bytes are out.
pub(crate) fn turn<S: Transport>(
    conn: &mut Conn<S>,
    ctx: &mut Ctx,
    key: usize,
    read: Option<ReadMode>,
    writable: bool,
) -> Fate {
    let mut fate = Fate::Keep;
    if writable {
        fate = flush_out(conn, ctx);
    }
    if fate == Fate::Requeue || (fate == Fate::Keep && read.is_some()) {
        fate = read_conn(conn, ctx, key, read.unwrap_or(ReadMode::UntilShort));
    }
    if fate == Fate::Keep {
        fate = after_output(conn);
    }
    fate
}

/// The connection's live timer-wheel entry fired — the per-connection part
/// of the reactor's `expire_timers`, shared with [`crate::server::testing`]:
/// keepalive and backpressure checks, then finish a Closing connection whose
/// last bytes are out.
pub(crate) fn timer_turn<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize) -> Fate {
    conn.armed = u32::MAX;
    let mut fate = check_conn(conn, ctx, key);
    if fate == Fate::Keep {
        fate = after_output(conn);
    }
    fate
}

/// Read and process until `WouldBlock`, the budget, backpressure, or the
/// phase stops reading.
pub(crate) fn read_conn<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize, mode: ReadMode) -> Fate {
    // The event that reported the FIN may find the connection paused or may
    // run out of budget before the EOF; later turns (run queue, pool
    // waiters, after a drain) must still read up to it.
    if mode == ReadMode::UntilWouldBlock {
        conn.set_fin_reported(true);
    }
    let mode = if conn.fin_reported() { ReadMode::UntilWouldBlock } else { mode };
    let mut budget = ctx.cfg.read_budget;
    loop {
        if conn.read_paused() || !conn.phase.reads_socket() {
            return Fate::Keep;
        }
        let spill = conn.inbuf.as_deref().map_or(0, <[u8]>::len);
        // Never read more than the write-chunk pool could take back as echo.
        let room = (ctx.readbuf.len() - spill).min(ctx.pool_room());
        if room == 0 && spill < ctx.readbuf.len() {
            return pause_for_pool(conn, ctx, key);
        }
        let mut buf = std::mem::take(&mut ctx.readbuf);
        if let Some(held) = conn.inbuf.as_deref() {
            buf[..spill].copy_from_slice(held);
        }
        let held_only = room == 0 || conn.input_pending();
        conn.set_input_pending(false);
        let n = if held_only {
            0 // complete frames are held: process them first
        } else {
            match io::read_step(&mut conn.stream, &mut buf[spill..spill + room]) {
                Ok(IoStep::Progress(n)) => n,
                Ok(IoStep::WouldBlock) => {
                    ctx.readbuf = buf;
                    if conn.stream.holds_input() {
                        // A TLS record does not fit the room left: wait for
                        // room as for the pool.
                        return pause_for_pool(conn, ctx, key);
                    }
                    return Fate::Keep;
                }
                Ok(IoStep::Eof) => {
                    ctx.readbuf = buf;
                    return on_peer_eof(conn, ctx, key);
                }
                Err(_) => {
                    ctx.readbuf = buf;
                    return Fate::Drop(DropReason::ReadError);
                }
            }
        };
        if matches!(conn.phase, Phase::Open(_)) {
            conn.last_seen = ctx.tick;
            conn.set_ping_sent(false);
        }
        ctx.work = 0;
        let fate = process_input(conn, ctx, key, &mut buf[..spill + n]);
        ctx.readbuf = buf;
        if fate.is_drop() {
            return fate;
        }
        if conn.out.len() > ctx.cfg.backpressure_bytes || (!conn.out.is_empty() && ctx.pool_over_cap()) {
            log::debug!("conn {}: {} bytes unsent, pausing reads", conn.id, conn.out.len());
            pause(conn, ctx, key);
            return Fate::Keep;
        }
        let used = n + ctx.work;
        if used >= budget || conn.input_pending() {
            return Fate::Requeue;
        }
        budget -= used;
        // A short read means the socket is empty; a turn that only processed
        // held frames has not looked at the socket yet.
        if mode == ReadMode::UntilShort && !held_only && n < room && !conn.stream.holds_input() {
            return Fate::Keep;
        }
    }
}

/// Stop reading a connection whose queue is over the cap; the backpressure
/// deadline closes it 1008 if the peer never reads.
fn pause<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize) {
    conn.pause_reading(ctx.tick);
    ctx.metrics.backpressure_pauses.add(1);
    let deadline = ctx.tick.saturating_add(Ctx::ticks(ctx.cfg.backpressure_timeout));
    ctx.arm(conn, key, deadline);
}

/// The pool has no room for this connection's echoes: do not read it until
/// chunks come back.
fn pause_for_pool<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize) -> Fate {
    log::debug!("conn {}: write-chunk pool at its cap, pausing reads", conn.id);
    pause(conn, ctx, key);
    ctx.pool_waiters.push((key, conn.id));
    Fate::Keep
}

/// The peer shut its sending side. Whatever we still owe it (echoes, our
/// Close, an HTTP response) is written first; then the connection closes.
fn on_peer_eof<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize) -> Fate {
    let why = match conn.phase {
        Phase::Open(_) => DropReason::PeerEofWhileOpen,
        Phase::Handshaking(_) => DropReason::PeerEofDuringHandshake,
        Phase::Closing { .. } => DropReason::PeerEofWhileClosing,
    };
    if conn.out.is_empty() {
        return Fate::Drop(why);
    }
    log::debug!("conn {}: {} after EOF, {} bytes still to write", conn.id, why.as_str(), conn.out.len());
    if !matches!(conn.phase, Phase::Closing { .. }) {
        enter_closing(conn, ctx, key, CloseKind::Answered);
    } else if let Phase::Closing { linger, session, .. } = &mut conn.phase {
        *linger = false;
        *session = None;
    }
    ctx.set_inbuf(conn, &[]);
    Fate::Keep
}

/// Feed `buf` (held bytes, then freshly read ones) through the connection's
/// phase, keep what is unfinished in `conn.inbuf`, then write the output.
fn process_input<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize, buf: &mut [u8]) -> Fate {
    if !conn.phase.reads_input() {
        ctx.set_inbuf(conn, &[]);
        return Fate::Keep; // Closing: input is discarded.
    }
    let (consumed, mut fate) = consume(conn, ctx, key, buf);
    let rest = if conn.phase.reads_input() { &buf[consumed..] } else { &[][..] };
    let old = conn.inbuf.as_deref().map_or(0, <[u8]>::len);
    if matches!(conn.phase, Phase::Handshaking(_))
        && !rest.is_empty()
        && ctx.held_bytes - old + rest.len() > ctx.cfg.max_held_input
    {
        reject_busy(conn, ctx, key);
        ctx.set_inbuf(conn, &[]);
    } else {
        ctx.set_inbuf(conn, rest);
    }
    track_frame_deadline(conn, ctx, key);
    if finish_cork(&mut conn.stream, &mut conn.out, ctx).is_err() {
        fate = Fate::Drop(DropReason::WriteError);
    }
    fate
}

/// Start or stop the clock of the frame in progress (slow-drip frames).
fn track_frame_deadline<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize) {
    let in_frame = match &conn.phase {
        Phase::Open(session) => conn.inbuf.is_some() || session.mid_frame(),
        _ => false,
    };
    if !in_frame {
        conn.set_in_frame(false);
    } else if !conn.in_frame() {
        conn.set_in_frame(true);
        conn.since = ctx.tick;
        let at = ctx.tick.saturating_add(Ctx::ticks(ctx.cfg.frame_timeout));
        ctx.arm(conn, key, at);
    }
}

/// Interpret bytes according to the phase; returns bytes consumed.
fn consume<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize, buf: &mut [u8]) -> (usize, Fate) {
    match &mut conn.phase {
        Phase::Handshaking(_) => handshake_input(conn, ctx, key, buf),
        Phase::Open(_) => echo_frames(conn, ctx, key, buf),
        Phase::Closing { session: Some(session), .. } => {
            // We sent Close; wait for the peer's, ignoring data meanwhile.
            let mut pos = 0;
            while pos < buf.len() {
                match session.next(&mut buf[pos..], &ctx.cfg.limits) {
                    Ok(Some((Action::Close(_), _))) => {
                        if conn.out.is_empty() {
                            return (buf.len(), Fate::Drop(DropReason::CloseHandshakeDone));
                        }
                        // Our Close is still queued: close once it is out.
                        conn.phase = Phase::Closing { linger: false, write_shut: false, session: None };
                        return (buf.len(), Fate::Keep);
                    }
                    Ok(Some((_, used))) => pos += used,
                    Ok(None) => break,
                    Err(_) => return (buf.len(), Fate::Drop(DropReason::ProtocolErrorWhileClosing)),
                }
            }
            (pos, Fate::Keep)
        }
        Phase::Closing { session: None, .. } => (buf.len(), Fate::Keep),
    }
}
