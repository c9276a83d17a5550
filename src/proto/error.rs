//! Errors of the protocol core. Each one knows the close code or HTTP status
//! it maps to, so codec unit tests can assert the code and the reactor never
//! has to guess.

use super::close::CloseCode;
use std::fmt;

/// A violation found while decoding frames or messages. `Copy`, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV1–3 set without an extension that defines them (RFC 6455 §5.2).
    ReservedBits,
    /// Opcode 0x3–0x7 or 0xB–0xF (RFC 6455 §5.2).
    ReservedOpcode(u8),
    /// A control frame with FIN clear (RFC 6455 §5.5).
    FragmentedControl,
    /// A control frame with more than 125 payload bytes (RFC 6455 §5.5).
    ControlTooLong,
    /// A client frame without the MASK bit (RFC 6455 §5.1).
    UnmaskedFrame,
    /// A server frame with the MASK bit set (RFC 6455 §5.1).
    MaskedFrame,
    /// A 64-bit length with the most significant bit set (RFC 6455 §5.2).
    LengthTopBit,
    /// A continuation frame with no message in progress (RFC 6455 §5.4).
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is unfinished.
    ExpectedContinuation,
    /// A frame payload over [`Limits::max_frame_payload`](super::Limits).
    FrameTooBig,
    /// A message over [`Limits::max_message`](super::Limits).
    MessageTooBig,
    /// More fragments than [`Limits::max_fragments`](super::Limits).
    TooManyFragments,
    /// Text payload or close reason that is not UTF-8 (RFC 6455 §8.1).
    InvalidUtf8,
    /// A close frame with a 1-byte payload (RFC 6455 §5.5.1).
    CloseTooShort,
    /// A compressed message that does not inflate (RFC 7692 §8.1).
    BadCompressedData,
    /// A close code that may not be received (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A compressed message needs an inflater and the reactor's cap on
    /// inflaters in use is reached (close 1013, try again later).
    InflatersBusy,
}

impl ProtocolError {
    /// The close code we send when failing the connection for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompressedData => CloseCode::INVALID_DATA,
            ProtocolError::FrameTooBig | ProtocolError::MessageTooBig | ProtocolError::TooManyFragments => {
                CloseCode::TOO_BIG
            }
            ProtocolError::InflatersBusy => CloseCode::TRY_AGAIN_LATER,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => f.write_str("reserved bits set without an extension"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::FragmentedControl => f.write_str("fragmented control frame"),
            ProtocolError::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::MaskedFrame => f.write_str("server frame is masked"),
            ProtocolError::LengthTopBit => f.write_str("64-bit length has its top bit set"),
            ProtocolError::UnexpectedContinuation => f.write_str("continuation frame without a message in progress"),
            ProtocolError::ExpectedContinuation => f.write_str("new data frame inside a fragmented message"),
            ProtocolError::FrameTooBig => f.write_str("frame payload over the limit"),
            ProtocolError::MessageTooBig => f.write_str("message over the limit"),
            ProtocolError::TooManyFragments => f.write_str("too many fragments in one message"),
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            ProtocolError::CloseTooShort => f.write_str("close frame with a 1-byte payload"),
            ProtocolError::BadCompressedData => f.write_str("compressed message does not inflate"),
            ProtocolError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            ProtocolError::InflatersBusy => f.write_str("all inflaters in use (--max-inflaters)"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A rejected HTTP upgrade request: the status and reason text we answer with.
/// `Copy`, no allocation: every reason is a static string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    /// HTTP status code of the error response.
    pub status: u16,
    /// Reason text; becomes the `text/plain` body of the response.
    pub reason: &'static str,
}

impl HandshakeError {
    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> u16 {
        self.status
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HandshakeError {}
