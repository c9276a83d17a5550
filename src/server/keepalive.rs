//! Deadlines from the timer wheel: idle keepalive pings and the
//! backpressure timeout.

use super::conn::{Conn, Phase, Transport};
use super::ctx::{Ctx, DropReason, Fate};
use super::output::{close_now, send_control};
use crate::proto::frame::OpCode;
use crate::proto::CloseCode;

/// A connection's wheel entry fired: keepalive and backpressure deadlines.
pub(crate) fn check_conn<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize) -> Fate {
    if !matches!(conn.phase, Phase::Open(_)) {
        return Fate::Keep;
    }
    let now = ctx.tick;
    let mut next = u32::MAX;
    // Only a connection with bytes of its own queued is to blame for a
    // pause; one waiting for room in the shared pool is not.
    if conn.read_paused && !conn.out.is_empty() {
        let limit = conn.paused_at.saturating_add(Ctx::ticks(ctx.cfg.backpressure_timeout));
        if now >= limit {
            log::warn!("conn {}: peer not reading for {:?}, closing with 1008", conn.id, ctx.cfg.backpressure_timeout);
            return close_now(conn, ctx, key, CloseCode::POLICY);
        }
        next = limit;
    } else if conn.read_paused {
        next = now.saturating_add(Ctx::ticks(ctx.cfg.backpressure_timeout));
    } else if conn.frame_since != u32::MAX {
        let limit = conn.frame_since.saturating_add(Ctx::ticks(ctx.cfg.frame_timeout));
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
            if !conn.ping_sent {
                log::debug!("conn {}: idle, sending ping", conn.id);
                conn.ping_sent = true;
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
