//! One connection's turn: read, hand the bytes to its phase, write what that
//! produced, and apply backpressure.

use super::conn::{Conn, Phase};
use super::ctx::{Ctx, DropReason, Fate, ReadMode};
use super::io::{self, IoStep};
use super::open::echo_frames;
use super::output::finish_cork;
use super::upgrade::handshake_input;
use crate::proto::Action;

/// Read and process until `WouldBlock`, the budget, or backpressure.
pub(crate) fn read_conn(conn: &mut Conn, ctx: &mut Ctx, key: usize, mode: ReadMode) -> Fate {
    let mut budget = ctx.cfg.read_budget;
    loop {
        if conn.read_paused {
            return Fate::Keep;
        }
        let n = match io::read_step(&mut conn.stream, &mut ctx.readbuf) {
            Ok(IoStep::Progress(n)) => n,
            Ok(IoStep::WouldBlock) => return Fate::Keep,
            Ok(IoStep::Eof) => {
                return Fate::Drop(match conn.phase {
                    Phase::Open(_) => DropReason::PeerEofWhileOpen,
                    Phase::Handshaking(_) => DropReason::PeerEofDuringHandshake,
                    Phase::Closing { .. } => DropReason::PeerEofWhileClosing,
                })
            }
            Err(_) => return Fate::Drop(DropReason::ReadError),
        };
        if matches!(conn.phase, Phase::Open(_)) {
            conn.last_seen = ctx.tick;
            conn.ping_sent = false;
        }
        if let Fate::Drop(why) = process_input(conn, ctx, key, n) {
            return Fate::Drop(why);
        }
        if conn.out.len() > ctx.cfg.backpressure_bytes || (!conn.out.is_empty() && ctx.pool_over_cap()) {
            log::debug!("conn {}: {} bytes unsent, pausing reads", conn.id, conn.out.len());
            conn.read_paused = true;
            conn.paused_at = ctx.tick;
            let deadline = ctx.tick.saturating_add(Ctx::ticks(ctx.cfg.backpressure_timeout));
            ctx.arm(conn, key, deadline);
            return Fate::Keep;
        }
        if n >= budget {
            return Fate::Requeue;
        }
        budget -= n;
        if mode == ReadMode::UntilShort && n < ctx.readbuf.len() {
            return Fate::Keep;
        }
    }
}

/// Feed `n` freshly read bytes (in `ctx.readbuf`) through the connection's
/// phase, keeping any unfinished request or frame in `conn.inbuf`, then write
/// the resulting output.
fn process_input(conn: &mut Conn, ctx: &mut Ctx, key: usize, n: usize) -> Fate {
    if !conn.phase.reads_input() {
        return Fate::Keep; // Closing: input is discarded.
    }
    let from_inbuf = !conn.inbuf.is_empty();
    let mut buf = if from_inbuf {
        conn.inbuf.extend_from_slice(&ctx.readbuf[..n]);
        std::mem::take(&mut conn.inbuf)
    } else {
        std::mem::take(&mut ctx.readbuf)
    };
    let len = if from_inbuf { buf.len() } else { n };
    let (consumed, fate) = consume(conn, ctx, key, &mut buf[..len]);
    let rest = if conn.phase.reads_input() { &buf[consumed..len] } else { &[][..] };
    if from_inbuf {
        if !rest.is_empty() {
            buf.drain(..consumed);
            conn.inbuf = buf;
        } // else: dropped, so a connection between frames holds no buffer.
    } else {
        if !rest.is_empty() {
            conn.inbuf.extend_from_slice(rest);
        }
        ctx.readbuf = buf;
    }
    let w = finish_cork(&mut conn.stream, &mut conn.out, ctx);
    if w.is_err() {
        return Fate::Drop(DropReason::WriteError);
    }
    fate
}

/// Interpret bytes according to the phase; returns bytes consumed.
fn consume(conn: &mut Conn, ctx: &mut Ctx, key: usize, buf: &mut [u8]) -> (usize, Fate) {
    match &mut conn.phase {
        Phase::Handshaking(_) => handshake_input(conn, ctx, key, buf),
        Phase::Open(_) => echo_frames(conn, ctx, key, buf),
        Phase::Closing { session: Some(session), .. } => {
            // We sent Close; wait for the peer's, ignoring data meanwhile.
            let mut pos = 0;
            while pos < buf.len() {
                match session.next(&mut buf[pos..], &ctx.cfg.limits) {
                    Ok(Some((Action::Close(_), _))) => return (buf.len(), Fate::Drop(DropReason::CloseHandshakeDone)),
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
