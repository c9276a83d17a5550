//! The echo decision: received bytes in, echo frames out.
//!
//! [`echo_frames`] decodes every complete frame at the front of a buffer and
//! hands the frames the peer is owed to a [`FrameSink`]: each data frame
//! echoed with its own opcode, FIN and RSV bits (so text stays text and a
//! fragmented message comes back fragmented), each ping answered by a pong,
//! and the closing handshake answered with the right code. The reactor's sink
//! writes to a socket; the benchmarks' sink is a `Vec<u8>`.

use super::close::CloseCode;
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use super::session::{Action, Session};
use super::Limits;

/// Where echo frames go. Headers and payloads come separately so a sink can
/// write large payloads without copying them.
pub trait FrameSink {
    /// Why the sink can fail (an I/O error for sockets).
    type Error;
    /// Queue one frame: `header` (2–14 bytes) then `payload`.
    fn frame(&mut self, header: &[u8], payload: &[u8]) -> Result<(), Self::Error>;
    /// Observe a received data frame (for logging); default: nothing.
    fn received(&mut self, _opcode: OpCode, _fin: bool, _payload: &[u8]) {}
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
    let n = FrameHeader {
        fin,
        rsv,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    }
    .encode(&mut hdr);
    sink.frame(&hdr[..n], payload)
}

/// Send a Close frame carrying `code` (or an empty one).
pub fn send_close<S: FrameSink>(sink: &mut S, code: Option<CloseCode>) -> Result<(), S::Error> {
    match code {
        Some(c) => send_frame(sink, true, 0, OpCode::Close, &c.0.to_be_bytes()),
        None => send_frame(sink, true, 0, OpCode::Close, &[]),
    }
}

/// Echo every complete frame at the front of `buf` (unmasking in place).
pub fn echo_frames<S: FrameSink>(
    session: &mut Session,
    buf: &mut [u8],
    limits: &Limits,
    sink: &mut S,
) -> Result<Echoed, S::Error> {
    let mut pos = 0;
    while pos < buf.len() {
        match session.next(&mut buf[pos..], limits) {
            Ok(None) => break,
            Ok(Some((action, used))) => {
                let frame = &buf[pos..pos + used];
                pos += used;
                match action {
                    Action::Data {
                        opcode,
                        fin,
                        rsv,
                        payload,
                    } => {
                        let p = &frame[payload];
                        sink.received(opcode, fin, p);
                        send_frame(sink, fin, rsv, opcode, p)?;
                    }
                    // RFC 6455 §5.5.2: "a Pong frame sent in response to a Ping
                    // frame must have identical Application data".
                    Action::Ping(payload) => {
                        send_frame(sink, true, 0, OpCode::Pong, &frame[payload])?
                    }
                    Action::Pong(_) => {}
                    Action::Close(c) => {
                        let code = c.map(|(code, _)| code);
                        send_close(sink, code)?;
                        return Ok(Echoed {
                            consumed: buf.len(),
                            end: Some(EchoEnd::PeerClosed(code)),
                        });
                    }
                }
            }
            Err(e) => {
                send_close(sink, Some(e.close_code()))?;
                return Ok(Echoed {
                    consumed: buf.len(),
                    end: Some(EchoEnd::Failed(e)),
                });
            }
        }
    }
    Ok(Echoed {
        consumed: pos,
        end: None,
    })
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
            write_frame(
                &mut input,
                true,
                0,
                OpCode::Binary,
                Some([i, 1, 2, 3]),
                &[i; 20],
            );
            write_frame(&mut expect, true, 0, OpCode::Binary, None, &[i; 20]);
        }
        let mut s = Session::new(Role::Server);
        let mut out = Vec::new();
        let r = echo_frames(&mut s, &mut input, &Limits::default(), &mut out).unwrap();
        assert_eq!(
            r,
            Echoed {
                consumed: input.len(),
                end: None
            }
        );
        assert_eq!(out, expect);
    }

    #[test]
    fn close_is_answered_with_the_same_code_and_errors_with_theirs() {
        let mut input = Vec::new();
        write_frame(
            &mut input,
            true,
            0,
            OpCode::Close,
            Some([1, 2, 3, 4]),
            &[0x0F, 0xA0],
        );
        let mut out = Vec::new();
        let r = echo_frames(
            &mut Session::new(Role::Server),
            &mut input,
            &Limits::default(),
            &mut out,
        )
        .unwrap();
        assert_eq!(r.end, Some(EchoEnd::PeerClosed(Some(CloseCode(4000)))));
        assert_eq!(out, vec![0x88, 0x02, 0x0F, 0xA0]);

        let mut bad = vec![0x81, 0x01, b'x']; // unmasked
        let mut out = Vec::new();
        let r = echo_frames(
            &mut Session::new(Role::Server),
            &mut bad,
            &Limits::default(),
            &mut out,
        )
        .unwrap();
        assert_eq!(r.end, Some(EchoEnd::Failed(ProtocolError::UnmaskedFrame)));
        assert_eq!(out, vec![0x88, 0x02, 0x03, 0xEA]);
    }
}
