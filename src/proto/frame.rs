//! Frame headers (RFC 6455 §5.2): decode incrementally, encode into a stack
//! buffer.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! ```

use super::error::ProtocolError;
use super::Role;

/// The longest possible header: 2 + 8 (length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

/// RSV1 (permessage-deflate uses it to mark a compressed message).
pub const RSV1: u8 = 0x40;

/// Frame opcodes (RFC 6455 §5.2, §11.8). Reserved values are rejected at
/// decode time and never represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation = 0x0,
    /// 0x1: text (UTF-8) data.
    Text = 0x1,
    /// 0x2: binary data.
    Binary = 0x2,
    /// 0x8: connection close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Whether this is a control opcode (0x8 and above).
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    fn from_u8(b: u8) -> Result<OpCode, ProtocolError> {
        Ok(match b {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of its message.
    pub fin: bool,
    /// RSV1..RSV3 as the bits 0x40, 0x20, 0x10.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decode a header from the front of `buf`, as received by `role`.
    ///
    /// Returns `Ok(None)` if `buf` holds only part of the header. Every rule
    /// that the header alone decides is checked as soon as the bytes that
    /// carry it are present — before the rest of the header and long before
    /// the payload: RSV bits not in `rsv_allowed`, reserved opcodes, control
    /// frames that are fragmented or longer than 125 bytes, the MASK bit, a
    /// 64-bit length with its top bit set, and `max_payload`.
    #[inline]
    pub fn decode(
        buf: &[u8],
        role: Role,
        rsv_allowed: u8,
        max_payload: u64,
    ) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if buf.len() < 2 {
            if let Some(&b0) = buf.first() {
                check_first_byte(b0, rsv_allowed)?;
            }
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let opcode = check_first_byte(b0, rsv_allowed)?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            // RFC 6455 §5.5: "All control frames MUST have a payload length of
            // 125 bytes or less and MUST NOT be fragmented."
            if !fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlTooLong);
            }
        }
        // RFC 6455 §5.1: "The server MUST close the connection upon receiving a
        // frame that is not masked" / "A client MUST close a connection if it
        // detects a masked frame."
        match (role, masked) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(b);
                // RFC 6455 §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBit);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        if payload_len > max_payload {
            return Err(ProtocolError::FrameTooBig);
        }
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some((FrameHeader { fin, rsv: b0 & 0x70, opcode, mask, payload_len }, pos)))
    }

    /// Encode this header into `out`; returns the number of bytes written
    /// (2 to 14). Uses the shortest length encoding (RFC 6455 §5.2: "the
    /// minimal number of bytes MUST be used").
    #[inline]
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (self.fin as u8) << 7 | (self.rsv & 0x70) | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[inline]
fn check_first_byte(b0: u8, rsv_allowed: u8) -> Result<OpCode, ProtocolError> {
    // RFC 6455 §5.2: "If a nonzero value is received and none of the
    // negotiated extensions defines the meaning of such a nonzero value, the
    // receiving endpoint MUST _Fail the WebSocket Connection_."
    if b0 & 0x70 & !rsv_allowed != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    OpCode::from_u8(b0 & 0x0F)
}

/// Append a complete frame (header, then `payload`, masked with `mask` if
/// given) to `out`. Used by clients, tests and benches; the reactor writes
/// headers and payloads separately to avoid a copy.
pub fn write_frame(out: &mut Vec<u8>, fin: bool, rsv: u8, opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) {
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 }.encode(&mut hdr);
    out.extend_from_slice(&hdr[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        super::mask::apply_mask(&mut out[start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MAX: u64 = 1 << 24;

    fn dec(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        FrameHeader::decode(buf, Role::Server, 0, MAX)
    }

    #[test]
    fn encode_then_decode_round_trips_every_length_class() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, MAX] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask, payload_len: len };
                let mut buf = [0u8; MAX_HEADER_LEN];
                let n = h.encode(&mut buf);
                let role = if mask.is_some() { Role::Server } else { Role::Client };
                assert_eq!(FrameHeader::decode(&buf[..n], role, 0, MAX), Ok(Some((h, n))));
                for cut in 0..n {
                    assert_eq!(FrameHeader::decode(&buf[..cut], role, 0, MAX), Ok(None), "cut {cut}");
                }
            }
        }
    }

    #[test]
    fn rfc6455_5_2_header_rules_fail_before_payload() {
        assert_eq!(dec(&[0xC1]), Err(ProtocolError::ReservedBits));
        assert_eq!(dec(&[0x83]), Err(ProtocolError::ReservedOpcode(3)));
        assert_eq!(dec(&[0x8B]), Err(ProtocolError::ReservedOpcode(0xB)));
        assert_eq!(dec(&[0x09, 0x80]), Err(ProtocolError::FragmentedControl));
        assert_eq!(dec(&[0x89, 0xFE]), Err(ProtocolError::ControlTooLong));
        assert_eq!(dec(&[0x81, 0x05]), Err(ProtocolError::UnmaskedFrame));
        let mut big = vec![0x82, 0xFF];
        big.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(dec(&big), Err(ProtocolError::LengthTopBit));
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(dec(&huge), Err(ProtocolError::FrameTooBig));
        assert_eq!(FrameHeader::decode(&[0x81, 0x85], Role::Client, 0, MAX), Err(ProtocolError::MaskedFrame));
        // With RSV1 negotiated, RSV1 passes but RSV2 does not.
        assert!(FrameHeader::decode(&[0xC1, 0x80, 0, 0, 0, 0], Role::Server, RSV1, MAX).is_ok());
        assert_eq!(FrameHeader::decode(&[0xA1], Role::Server, RSV1, MAX), Err(ProtocolError::ReservedBits));
    }
}
