//! Bytes out: the cork, a connection's queue of refused bytes, flushing, and
//! the transitions into the Closing phase.

use super::conn::{Conn, Phase, Transport};
use super::ctx::{Ctx, DropReason, Fate};
use super::io::{self, IoStep};
use super::metrics::{phase_index, PHASE_CLOSING};
use crate::pool::OutQueue;
use crate::proto::echo::{self, FrameSink};
use crate::proto::frame::OpCode;
use crate::proto::CloseCode;
use crate::proto::ShortRun;
use std::io::IoSlice;

/// How a connection leaves Open (or Handshaking) for Closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseKind {
    /// Our last bytes (an HTTP response, or a Close after an error) are
    /// queued: once out, shut our side and discard input until the peer's EOF.
    Discard,
    /// The peer's Close was answered: close TCP as soon as our bytes are out
    /// (RFC 6455 §7.1.1: "the server SHOULD close the underlying TCP
    /// connection first").
    Answered,
    /// We started a clean close (1001, 1008): keep decoding so the peer's
    /// Close ends the connection promptly.
    AwaitPeerClose,
}

/// The reactor's [`FrameSink`]: frames go to the cork, or straight to the
/// socket for large payloads, and whatever the kernel refuses to the
/// connection's queue.
pub(crate) struct ConnSink<'a, S> {
    pub(crate) stream: &'a mut S,
    pub(crate) out: &'a mut OutQueue,
    pub(crate) ctx: &'a mut Ctx,
    pub(crate) id: u32,
}

impl<S: Transport> FrameSink for ConnSink<'_, S> {
    type Error = std::io::Error;

    #[inline]
    fn frame(&mut self, header: &[u8], payload: &[u8]) -> std::io::Result<()> {
        send(self.stream, self.out, self.ctx, header, payload)
    }

    #[inline]
    fn frames(&mut self, bytes: &[u8], run: &ShortRun) -> std::io::Result<()> {
        let m = &self.ctx.metrics;
        m.echoed_run(true, run.binary_frames, run.binary_payload);
        m.echoed_run(false, run.frames - run.binary_frames, run.payload - run.binary_payload);
        send(self.stream, self.out, self.ctx, &[], bytes)
    }

    /// Debug logging shows every message: no fast path then.
    fn wants_each_frame(&self) -> bool {
        log::log_enabled!(log::Level::Debug)
    }

    fn received(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        self.ctx.metrics.echoed(opcode == OpCode::Binary, fin, payload.len());
        if fin && log::log_enabled!(log::Level::Debug) {
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(256)]);
            log::debug!("conn {}: recv: {shown}", self.id);
        }
    }
}

/// Queue one frame (`hdr` + `payload`) for the peer: into the cork if it
/// fits, else (large payloads) written straight from the caller's buffer.
pub(crate) fn send<S: Transport>(
    stream: &mut S,
    out: &mut OutQueue,
    ctx: &mut Ctx,
    hdr: &[u8],
    payload: &[u8],
) -> std::io::Result<()> {
    let total = hdr.len() + payload.len();
    if ctx.cork.len() + total <= ctx.cfg.cork_size {
        ctx.cork.extend_from_slice(hdr);
        ctx.cork.extend_from_slice(payload);
        return Ok(());
    }
    finish_cork(stream, out, ctx)?;
    if total <= ctx.cfg.cork_size {
        ctx.cork.extend_from_slice(hdr);
        ctx.cork.extend_from_slice(payload);
        return Ok(());
    }
    let written = if out.is_empty() { io::write_now(stream, hdr, payload)? } else { 0 };
    if written < hdr.len() {
        out.push(&hdr[written..], &mut ctx.pool);
        out.push(payload, &mut ctx.pool);
    } else {
        out.push(&payload[written - hdr.len()..], &mut ctx.pool);
    }
    Ok(())
}

/// Write the cork with one syscall (behind anything already queued); keep
/// what the kernel refuses.
pub(crate) fn finish_cork<S: Transport>(stream: &mut S, out: &mut OutQueue, ctx: &mut Ctx) -> std::io::Result<()> {
    if ctx.cork.is_empty() {
        return Ok(());
    }
    let written = if out.is_empty() { io::write_now(stream, &ctx.cork, &[]) } else { Ok(0) };
    let result = match written {
        Ok(w) => {
            out.push(&ctx.cork[w..], &mut ctx.pool);
            Ok(())
        }
        Err(e) => Err(e),
    };
    ctx.cork.clear();
    result
}

/// Write queued bytes until done or `WouldBlock`; resume reading when a
/// backlog has drained below half the cap.
pub(crate) fn flush_out<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx) -> Fate {
    // A TLS stream sends the ciphertext it still holds (a no-op for TCP).
    if let Err(e) = conn.stream.flush() {
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Fate::Drop(DropReason::WriteError);
        }
    }
    while !conn.out.is_empty() {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = conn.out.slices(&mut slices);
        match io::write_step(&mut conn.stream, &slices[..n]) {
            Ok(IoStep::Progress(k)) => conn.out.consume(k, &mut ctx.pool),
            Ok(IoStep::WouldBlock) => break,
            Ok(IoStep::Eof) | Err(_) => return Fate::Drop(DropReason::WriteError),
        }
    }
    if conn.read_paused()
        && (conn.out.is_empty() || (conn.out.len() <= ctx.cfg.backpressure_bytes / 2 && !ctx.pool_over_cap()))
    {
        conn.resume_reading(ctx.tick);
        return Fate::Requeue;
    }
    Fate::Keep
}

/// After output: finish a Closing connection whose last bytes are out —
/// close it, or shut our sending side and give it a turn to read (and
/// discard) until the peer's EOF, which may already be waiting.
pub(crate) fn after_output<S: Transport>(conn: &mut Conn<S>) -> Fate {
    if let Phase::Closing { linger, write_shut, .. } = &mut conn.phase {
        // Out means out of the transport too (a TLS stream's last record).
        if conn.out.is_empty() && !flush_blocked(&mut conn.stream) {
            if !*linger {
                return Fate::Drop(DropReason::CloseHandshakeDone);
            }
            if !*write_shut {
                let _ = conn.stream.shutdown_write();
                *write_shut = true;
                return Fate::Requeue;
            }
        }
    }
    Fate::Keep
}

/// Whether the transport still holds bytes the kernel refused (only a TLS
/// stream can; its `flush` says `WouldBlock` then).
fn flush_blocked<S: Transport>(stream: &mut S) -> bool {
    matches!(stream.flush(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Send one control frame of our own (not an echo) right away.
pub(crate) fn send_control<S: Transport>(
    conn: &mut Conn<S>,
    ctx: &mut Ctx,
    opcode: OpCode,
    payload: &[u8],
) -> std::io::Result<()> {
    let id = conn.id;
    let mut sink = ConnSink { stream: &mut conn.stream, out: &mut conn.out, ctx, id };
    echo::send_frame(&mut sink, true, 0, opcode, payload)?;
    finish_cork(&mut conn.stream, &mut conn.out, ctx)
}

/// Send a Close frame with `code`.
pub(crate) fn send_close<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, code: CloseCode) -> std::io::Result<()> {
    ctx.metrics.close_sent(Some(code));
    send_control(conn, ctx, OpCode::Close, &code.0.to_be_bytes())
}

/// Leave Open/Handshaking after queueing our last bytes, and arm the close
/// deadline.
pub(crate) fn enter_closing<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize, kind: CloseKind) {
    let linger = kind != CloseKind::Answered;
    let closing = Phase::Closing { linger, write_shut: false, session: None };
    let old = std::mem::replace(&mut conn.phase, closing);
    ctx.metrics.phase_change(Some(phase_index(&old)), Some(PHASE_CLOSING));
    let session = match old {
        Phase::Open(s) if kind == CloseKind::AwaitPeerClose => Some(s),
        _ => None,
    };
    if session.is_none() {
        ctx.set_inbuf(conn, &[]);
    }
    conn.set_phase(Phase::Closing { linger, write_shut: false, session });
    ctx.close_timers.push(ctx.now, key, conn.id);
}

/// Start a server-initiated close with `code` (we wait for the peer's Close).
pub(crate) fn close_now<S: Transport>(conn: &mut Conn<S>, ctx: &mut Ctx, key: usize, code: CloseCode) -> Fate {
    if send_close(conn, ctx, code).is_err() {
        return Fate::Drop(DropReason::WriteError);
    }
    enter_closing(conn, ctx, key, CloseKind::AwaitPeerClose);
    Fate::Keep
}
