//! The Open phase: frames in, echoes out; leave Open on Close or error.

use super::conn::{Conn, Phase, Transport};
use super::ctx::{Ctx, DropReason, Fate};
use super::output::{enter_closing, CloseKind, ConnSink};
use crate::proto::deflate::CodecPool;
use crate::proto::echo::{self, EchoEnd};

/// Echo every complete frame in `buf`; returns bytes consumed.
pub(crate) fn echo_frames<S: Transport>(
    conn: &mut Conn<S>,
    ctx: &mut Ctx,
    key: usize,
    buf: &mut [u8],
) -> (usize, Fate) {
    let Conn { stream, phase, out, id, pmd, .. } = conn;
    let Phase::Open(session) = phase else {
        return (buf.len(), Fate::Keep);
    };
    let mut limits = ctx.cfg.limits;
    if ctx.held_bytes >= ctx.cfg.max_held_input {
        limits.max_held_frame = 0; // budget spent: stream every frame
    }
    let inflate_budget = ctx.cfg.read_budget as u64;
    let id = *id;
    // The codec pool and scratch leave ctx for the call: the sink borrows ctx.
    let mut codecs = std::mem::replace(&mut ctx.codecs, CodecPool::new(0, 0));
    let mut scratch = std::mem::take(&mut ctx.deflate_scratch);
    let compression = pmd.as_deref_mut().map(|codec| echo::Compression {
        codec,
        pool: &mut codecs,
        scratch: &mut scratch,
        min_size: ctx.cfg.deflate.min_size,
        inflate_budget,
    });
    let mut sink = ConnSink { stream, out, ctx, id };
    let result = echo::echo_frames(session, buf, &limits, &mut sink, compression);
    ctx.codecs = codecs;
    ctx.deflate_scratch = scratch;
    let echoed = match result {
        Ok(e) => e,
        Err(_) => return (buf.len(), Fate::Drop(DropReason::WriteError)),
    };
    ctx.work += echoed.inflated.min(usize::MAX as u64) as usize;
    // Stopped at the inflate budget with frames left: the next turn
    // processes them even if nothing new arrives.
    conn.set_input_pending(echoed.end.is_none() && echoed.inflated > inflate_budget && echoed.consumed < buf.len());
    match echoed.end {
        None => {}
        Some(EchoEnd::PeerClosed(code)) => {
            ctx.metrics.close_sent(code);
            log::debug!("conn {id}: close from peer ({}), replied", code.map_or(1005, |c| c.0));
            enter_closing(conn, ctx, key, CloseKind::Answered);
        }
        Some(EchoEnd::Failed(e)) => {
            ctx.metrics.close_sent(Some(e.close_code()));
            ctx.metrics.protocol_error(e.close_code());
            log::debug!("conn {id}: {e}; closing with {}", e.close_code().0);
            enter_closing(conn, ctx, key, CloseKind::Discard);
        }
    }
    (echoed.consumed, Fate::Keep)
}
