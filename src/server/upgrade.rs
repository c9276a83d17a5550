//! The Handshaking phase: scan the request head, route it (home page or
//! upgrade), negotiate permessage-deflate, answer 101 or an HTTP error.

use super::conn::{Conn, Phase, Transport};
use super::ctx::{Ctx, Fate};
use super::metrics::{PHASE_HANDSHAKING, PHASE_OPEN};
use super::output::{enter_closing, CloseKind};
use crate::proto::deflate::PmdCodec;
use crate::proto::frame::RSV1;
use crate::proto::handshake::{self, Accepted};
use crate::proto::HandshakeError;
use crate::proto::{Role, Session};

/// The page served at `GET /`, compiled in.
pub const HOME_PAGE: &str = include_str!("../../static/home.html");

/// Feed request bytes to the connection's scanner; once the head is
/// complete, answer it. Returns bytes consumed.
pub(crate) fn handshake_input<S: Transport>(
    conn: &mut Conn<S>,
    ctx: &mut Ctx,
    key: usize,
    buf: &mut [u8],
) -> (usize, Fate) {
    let Phase::Handshaking(scanner) = &mut conn.phase else {
        return (0, Fate::Keep);
    };
    let started = scanner.started;
    let limits = ctx.cfg.limits;
    let head = match scanner.feed(buf, &limits) {
        Ok(None) => return (0, Fate::Keep),
        Ok(Some(head)) => head,
        Err(e) => {
            reject(conn, ctx, key, &e);
            return (buf.len(), Fate::Keep);
        }
    };
    let (request, rest) = buf.split_at(head);
    let cfg = &ctx.cfg;
    match handshake::accept(request, rest, &cfg.policy, &cfg.deflate, &limits, HOME_PAGE.as_bytes(), &mut ctx.cork) {
        Ok(Accepted::Home) => {
            log::debug!("conn {}: GET / (home page)", conn.id);
            enter_closing(conn, ctx, key, CloseKind::Discard);
        }
        Ok(Accepted::Upgrade { deflate, .. }) => {
            log::debug!("conn {}: upgraded{}", conn.id, if deflate.is_some() { " (permessage-deflate)" } else { "" });
            let mut session = Session::new(Role::Server);
            if let Some(agreed) = deflate {
                session.set_rsv_allowed(RSV1);
                conn.pmd = Some(Box::new(PmdCodec::new(agreed)));
            }
            conn.set_phase(Phase::Open(session));
            ctx.metrics.phase_change(Some(PHASE_HANDSHAKING), Some(PHASE_OPEN));
            ctx.metrics.handshake(ctx.clock_ns().saturating_sub(started) / 1000);
            conn.last_seen = ctx.tick;
            if let Some(idle) = ctx.cfg.idle_timeout {
                let at = ctx.tick.saturating_add(Ctx::ticks(idle));
                ctx.arm(conn, key, at);
            }
        }
        Err(e) => reject(conn, ctx, key, &e),
    }
    (buf.len(), Fate::Keep)
}

/// 503 for a request head that would have to be held while the reactor's
/// budget for held input (`Config::max_held_input`) is spent.
pub const BUSY: HandshakeError = HandshakeError { status: 503, reason: "server busy: too many unfinished requests" };

/// Answer an unfinished request head with [`BUSY`] and close.
pub(crate) fn reject_busy<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize) {
    reject(conn, ctx, key, &BUSY);
}

/// Answer the request with an HTTP error and close.
fn reject<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize, err: &HandshakeError) {
    log::debug!("conn {}: upgrade rejected: {} {}", conn.id, err.status, err.reason);
    ctx.metrics.rejected(err.status);
    handshake::write_error(&mut ctx.cork, err);
    enter_closing(conn, ctx, key, CloseKind::Discard);
}
