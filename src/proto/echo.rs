//! The echo decision: received bytes in, echo frames out.
//!
//! [`echo_frames`] decodes every complete frame at the front of a buffer and
//! hands the frames the peer is owed to a [`FrameSink`]: each data frame
//! echoed with its own opcode, FIN and RSV bits (so text stays text and a
//! fragmented message comes back fragmented), each ping answered by a pong,
//! and the closing handshake answered with the right code. The reactor's sink
//! writes to a socket; the benchmarks' sink is a `Vec<u8>`.

use super::close::CloseCode;
use super::deflate::{CodecPool, PmdCodec};
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use super::session::{Action, Session, ShortRun};
use super::Limits;

/// Where echo frames go. Headers and payloads come separately so a sink can
/// write large payloads without copying them.
pub trait FrameSink {
    /// Why the sink can fail (an I/O error for sockets).
    type Error;
    /// Queue one frame: `header` (2–14 bytes) then `payload`.
    fn frame(&mut self, header: &[u8], payload: &[u8]) -> Result<(), Self::Error>;
    /// Observe a received data frame (for logging and metrics); default:
    /// nothing. `opcode` is the message's (Text or Binary), also for its
    /// continuation frames; `fin` ends the message.
    fn received(&mut self, _opcode: OpCode, _fin: bool, _payload: &[u8]) {}
    /// Queue a run of whole server frames encoded back to back in `bytes`
    /// (the short-frame fast path's output: `run` counts its frames, each a
    /// whole message, and their payload bytes by opcode; they are not
    /// reported to `received`). Default: one `frame` call with an empty
    /// header.
    #[inline]
    fn frames(&mut self, bytes: &[u8], run: &ShortRun) -> Result<(), Self::Error> {
        let _ = run;
        self.frame(&[], bytes)
    }
    /// Whether `received` must see every data frame (to log each message,
    /// or to compare against the fast path): then the short-frame fast
    /// path, which reports whole runs through `frames`, is not used.
    /// Default: false.
    fn wants_each_frame(&self) -> bool {
        false
    }
}

impl FrameSink for Vec<u8> {
    type Error = std::convert::Infallible;
    #[inline]
    fn frame(&mut self, header: &[u8], payload: &[u8]) -> Result<(), Self::Error> {
        self.extend_from_slice(header);
        self.extend_from_slice(payload);
        Ok(())
    }
}

/// Why echoing stopped before the end of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoEnd {
    /// The peer sent Close (with this code, None if empty); our reply is
    /// already in the sink. RFC 6455 §7.1.1: now close TCP.
    PeerClosed(Option<CloseCode>),
    /// The peer broke the protocol; a Close with the error's code is already
    /// in the sink. Fail the connection.
    Failed(ProtocolError),
}

/// Outcome of one [`echo_frames`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echoed {
    /// Bytes of `buf` fully handled; the rest is an unfinished frame to keep.
    pub consumed: usize,
    /// Set when the connection must stop echoing.
    pub end: Option<EchoEnd>,
    /// Bytes inflated while echoing compressed messages (work that the wire
    /// size does not show).
    pub inflated: u64,
}

/// Write a server (unmasked) frame through `sink`.
#[inline]
pub fn send_frame<S: FrameSink>(
    sink: &mut S,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    payload: &[u8],
) -> Result<(), S::Error> {
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader { fin, rsv, opcode, mask: None, payload_len: payload.len() as u64 }.encode(&mut hdr);
    sink.frame(&hdr[..n], payload)
}

/// Send a Close frame carrying `code` (or an empty one).
pub fn send_close<S: FrameSink>(sink: &mut S, code: Option<CloseCode>) -> Result<(), S::Error> {
    match code {
        Some(c) => send_frame(sink, true, 0, OpCode::Close, &c.0.to_be_bytes()),
        None => send_frame(sink, true, 0, OpCode::Close, &[]),
    }
}

/// permessage-deflate state for [`echo_frames`]: the connection's codec and
/// the reactor's shared pool and scratch buffer.
#[derive(Debug)]
pub struct Compression<'a> {
    /// The connection's agreement and (with context takeover) zlib state.
    pub codec: &'a mut PmdCodec,
    /// Shared inflaters/deflaters.
    pub pool: &'a mut CodecPool,
    /// Shared scratch for re-compressed payloads.
    pub scratch: &'a mut Vec<u8>,
    /// Re-compressed single-frame messages smaller than this (inflated) are
    /// echoed uncompressed.
    pub min_size: usize,
    /// Stop after the frame that takes the bytes inflated in this call past
    /// this (the rest of the buffer is left unconsumed, for a later turn), so
    /// a compression bomb cannot monopolise the caller. `u64::MAX`: no limit.
    pub inflate_budget: u64,
}

/// Echo every complete frame at the front of `buf` (unmasking in place).
/// With `compression`, compressed messages are inflated (size-limited,
/// UTF-8-checked) and echoed compressed; uncompressed ones uncompressed.
pub fn echo_frames<S: FrameSink>(
    session: &mut Session,
    buf: &mut [u8],
    limits: &Limits,
    sink: &mut S,
    mut compression: Option<Compression<'_>>,
) -> Result<Echoed, S::Error> {
    let mut pos = 0;
    let mut inflated = 0u64;
    let fast = !sink.wants_each_frame();
    while pos < buf.len() {
        if compression.as_ref().is_some_and(|c| inflated > c.inflate_budget) {
            break;
        }
        if fast {
            // Runs of complete short uncompressed data frames skip the
            // per-frame `next`/`send_frame` calls; the first frame the fast
            // path leaves goes through `next` below, unchanged.
            let run = session.echo_short_run(&mut buf[pos..], limits);
            if run.frames > 0 {
                sink.frames(&buf[pos..pos + run.written], &run)?;
                pos += run.consumed;
                continue;
            }
        }
        match session.next(&mut buf[pos..], limits) {
            Ok(None) => break,
            Ok(Some((action, used))) => {
                let frame = &buf[pos..pos + used];
                pos += used;
                match action {
                    Action::Data { opcode, fin, rsv, payload } => {
                        let p = &frame[payload];
                        match (session.msg_compressed(), compression.as_mut()) {
                            (Some(text), Some(c)) => {
                                let first = opcode != OpCode::Continuation;
                                let before = if first { 0 } else { c.codec.inflated() };
                                let r = echo_compressed(c, sink, p, opcode, fin, rsv, first, text, limits);
                                inflated += c.codec.inflated().saturating_sub(before);
                                if let Err(e) = r {
                                    match e {
                                        EchoError::Sink(e) => return Err(e),
                                        EchoError::Protocol(e) => {
                                            send_close(sink, Some(e.close_code()))?;
                                            return Ok(Echoed {
                                                consumed: buf.len(),
                                                end: Some(EchoEnd::Failed(e)),
                                                inflated,
                                            });
                                        }
                                    }
                                }
                            }
                            _ => {
                                let op = if session.msg_text() { OpCode::Text } else { OpCode::Binary };
                                sink.received(op, fin, p);
                                send_frame(sink, fin, rsv, opcode, p)?;
                            }
                        }
                    }
                    // RFC 6455 §5.5.2: "a Pong frame sent in response to a Ping
                    // frame must have identical Application data".
                    Action::Ping(payload) => send_frame(sink, true, 0, OpCode::Pong, &frame[payload])?,
                    Action::Pong(_) => {}
                    Action::Close(c) => {
                        let code = c.map(|(code, _)| code);
                        send_close(sink, code)?;
                        return Ok(Echoed { consumed: buf.len(), end: Some(EchoEnd::PeerClosed(code)), inflated });
                    }
                }
            }
            Err(e) => {
                send_close(sink, Some(e.close_code()))?;
                return Ok(Echoed { consumed: buf.len(), end: Some(EchoEnd::Failed(e)), inflated });
            }
        }
    }
    Ok(Echoed { consumed: pos, end: None, inflated })
}

enum EchoError<E> {
    Sink(E),
    Protocol(ProtocolError),
}

/// Echo one frame of a compressed message.
#[allow(clippy::too_many_arguments)]
fn echo_compressed<S: FrameSink>(
    c: &mut Compression<'_>,
    sink: &mut S,
    payload: &[u8],
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    first: bool,
    text: bool,
    limits: &Limits,
) -> Result<(), EchoError<S::Error>> {
    if c.codec.passthrough() {
        // Both sides reset per message and the client's window fits ours:
        // the received bytes are already a valid server message. Inflate
        // only to enforce the size limit and UTF-8.
        c.codec
            .on_frame(c.pool, payload, first, text, fin, limits.max_message, None, None)
            .map_err(EchoError::Protocol)?;
        sink.received(if text { OpCode::Text } else { OpCode::Binary }, fin, payload);
        return send_frame(sink, fin, rsv, opcode, payload).map_err(EchoError::Sink);
    }
    let mut out = std::mem::take(c.scratch);
    out.clear();
    let small_whole = first && fin && c.min_size > 0;
    let mut plain = Vec::new();
    let r = c.codec.on_frame(
        c.pool,
        payload,
        first,
        text,
        fin,
        limits.max_message,
        Some(&mut out),
        small_whole.then_some(&mut plain),
    );
    let msg_opcode = if text { OpCode::Text } else { OpCode::Binary };
    let result = match r {
        Err(e) => Err(EchoError::Protocol(e)),
        Ok(()) if small_whole && plain.len() < c.min_size => {
            sink.received(msg_opcode, fin, &plain);
            send_frame(sink, fin, 0, opcode, &plain).map_err(EchoError::Sink)
        }
        Ok(()) => {
            sink.received(msg_opcode, fin, &out);
            send_frame(sink, fin, rsv, opcode, &out).map_err(EchoError::Sink)
        }
    };
    // Keep the scratch for reuse unless a huge message inflated it.
    if out.capacity() <= 1 << 20 {
        *c.scratch = out;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::write_frame;
    use crate::proto::Role;

    #[test]
    fn echo_of_many_small_frames_is_their_unmasked_copy() {
        let mut input = Vec::new();
        let mut expect = Vec::new();
        for i in 0..100u8 {
            write_frame(&mut input, true, 0, OpCode::Binary, Some([i, 1, 2, 3]), &[i; 20]);
            write_frame(&mut expect, true, 0, OpCode::Binary, None, &[i; 20]);
        }
        let mut s = Session::new(Role::Server);
        let mut out = Vec::new();
        let r = echo_frames(&mut s, &mut input, &Limits::default(), &mut out, None).unwrap();
        assert_eq!(r, Echoed { consumed: input.len(), end: None, inflated: 0 });
        assert_eq!(out, expect);
    }

    #[test]
    fn close_is_answered_with_the_same_code_and_errors_with_theirs() {
        let mut input = Vec::new();
        write_frame(&mut input, true, 0, OpCode::Close, Some([1, 2, 3, 4]), &[0x0F, 0xA0]);
        let mut out = Vec::new();
        let r = echo_frames(&mut Session::new(Role::Server), &mut input, &Limits::default(), &mut out, None).unwrap();
        assert_eq!(r.end, Some(EchoEnd::PeerClosed(Some(CloseCode(4000)))));
        assert_eq!(out, vec![0x88, 0x02, 0x0F, 0xA0]);

        let mut bad = vec![0x81, 0x01, b'x']; // unmasked
        let mut out = Vec::new();
        let r = echo_frames(&mut Session::new(Role::Server), &mut bad, &Limits::default(), &mut out, None).unwrap();
        assert_eq!(r.end, Some(EchoEnd::Failed(ProtocolError::UnmaskedFrame)));
        assert_eq!(out, vec![0x88, 0x02, 0x03, 0xEA]);
    }
}
