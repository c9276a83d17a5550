//! Deadlines from the timer wheel: the handshake timeout, idle keepalive
//! pings, the backpressure and frame timeouts.

use super::conn::{Conn, Phase, Transport};
use super::ctx::{Ctx, DropReason, Fate};
use super::output::{close_now, send_control};
use crate::proto::frame::OpCode;
use crate::proto::CloseCode;

/// A connection's wheel entry fired: handshake, keepalive, backpressure and
/// frame deadlines.
pub(crate) fn check_conn<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize) -> Fate {
    match &conn.phase {
        Phase::Open(_) => {}
        Phase::Handshaking(scanner) => {
            // Timed from accept in nanoseconds, so a short timeout is not
            // cut by the wheel's 250 ms slots (they only make it fire late).
            let limit =
                scanner.started.saturating_add(ctx.cfg.handshake_timeout.as_nanos().min(u64::MAX as u128) as u64);
            if ctx.clock_ns() >= limit {
                return Fate::Drop(DropReason::HandshakeTimeout);
            }
            ctx.arm_at(conn, key, ctx.instant_of_ns(limit));
            return Fate::Keep;
        }
        Phase::Closing { .. } => return Fate::Keep,
    }
    let now = ctx.tick;
    let mut next = u32::MAX;
    // Only a connection with bytes of its own queued is to blame for a
    // pause; one waiting for room in the shared pool is not.
    if conn.read_paused() && !conn.out.is_empty() {
        let limit = conn.since.saturating_add(Ctx::ticks(ctx.cfg.backpressure_timeout));
        if now >= limit {
            log::warn!("conn {}: peer not reading for {:?}, closing with 1008", conn.id, ctx.cfg.backpressure_timeout);
            return close_now(conn, ctx, key, CloseCode::POLICY);
        }
        next = limit;
    } else if conn.read_paused() {
        next = now.saturating_add(Ctx::ticks(ctx.cfg.backpressure_timeout));
    } else if conn.in_frame() {
        let limit = conn.since.saturating_add(Ctx::ticks(ctx.cfg.frame_timeout));
        if now >= limit {
            log::debug!("conn {}: frame unfinished after {:?}, closing with 1008", conn.id, ctx.cfg.frame_timeout);
            return close_now(conn, ctx, key, CloseCode::POLICY);
        }
        next = limit;
    }
    if let Some(idle) = ctx.cfg.idle_timeout {
        let idle = Ctx::ticks(idle);
        let silent_since = conn.last_seen;
        if now >= silent_since.saturating_add(idle) {
            let give_up = silent_since.saturating_add(idle).saturating_add(Ctx::ticks(ctx.cfg.ping_timeout));
            if !conn.ping_sent() {
                log::debug!("conn {}: idle, sending ping", conn.id);
                conn.set_ping_sent(true);
                ctx.metrics.pings.add(1);
                if send_control(conn, ctx, OpCode::Ping, b"").is_err() {
                    return Fate::Drop(DropReason::WriteError);
                }
                next = next.min(give_up.max(now + 1));
            } else if now >= give_up {
                log::debug!("conn {}: no answer to keepalive ping, closing with 1001", conn.id);
                return close_now(conn, ctx, key, CloseCode::GOING_AWAY);
            } else {
                next = next.min(give_up);
            }
        } else {
            next = next.min(silent_since.saturating_add(idle));
        }
    }
    if next != u32::MAX {
        ctx.arm(conn, key, next);
    }
    Fate::Keep
}
