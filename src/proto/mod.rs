//! The sans-I/O protocol core: bytes in, decisions out.
//!
//! Nothing in this module touches a socket, a clock or an event loop; it
//! depends only on `httparse`, `sha1`, `base64` and `simdutf8`. The reactor in
//! [`crate::server`], the client in [`crate::client`] and the benchmarks all
//! drive the same code, and the fuzz targets can call it directly.
//!
//! Every parser here follows one rule: **incomplete input is `Ok(None)` and
//! consumes nothing** (the caller keeps the bytes and calls again with more).

pub mod close;
pub mod deflate;
pub mod echo;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod session;
pub mod utf8;

pub use close::CloseCode;
pub use error::{HandshakeError, ProtocolError};
pub use frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
pub use session::{Action, Session, ShortRun};

/// Which end of the connection this code speaks for.
///
/// RFC 6455 §5.1: "a client MUST mask all frames that it sends to the server"
/// and "A server MUST NOT mask any frames that it sends to the client".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection: incoming frames must be masked.
    Server,
    /// We opened the connection: incoming frames must not be masked.
    Client,
}

/// Every size limit the protocol core enforces, in one place.
///
/// Limits are checked against the *declared* sizes in headers before any
/// payload is awaited, and nothing is ever allocated from a length the peer
/// chose: buffers grow only as bytes actually arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest HTTP upgrade request (request line + headers), in bytes.
    /// Default 8 KiB: browsers send 0.5–2 KiB. Over it: HTTP 431.
    pub max_request_bytes: usize,
    /// Most header lines in the upgrade request. Default 64. Over it: HTTP 431.
    /// httparse needs one 32-byte slot per header on the stack (2 KiB).
    pub max_headers: usize,
    /// Largest payload of a single frame, in bytes. Default 16 MiB (Autobahn
    /// 9.x sends 16 MiB single-frame messages). Over it: close 1009. A
    /// connection buffers at most one frame, so this bounds its read memory.
    pub max_frame_payload: u64,
    /// Largest message (sum of its fragments), in bytes. Default 16 MiB.
    /// Over it: close 1009. Messages are echoed frame by frame, so this bounds
    /// work, not memory.
    pub max_message: u64,
    /// Most frames in one fragmented message. Default 131,072 (Autobahn 9.3
    /// sends a 4 MiB message in 64-byte fragments: 65,536 frames). Over it:
    /// close 1009. Stops floods of tiny fragments that would each cost a
    /// header of work and output.
    pub max_fragments: u32,
    /// Data frames whose payload is at most this many bytes are held whole
    /// until they are complete (so ordinary traffic keeps its framing);
    /// larger ones are **streamed**: each piece is returned as soon as it
    /// arrives, as a frame of its own (the first with the frame's opcode, then
    /// continuations, the last with the frame's FIN — RFC 6455 §5.4 lets an
    /// intermediary-like echo re-fragment). Default 64 KiB: messages up to
    /// that size (what most clients and benchmarks send) keep their framing
    /// and one write each; streaming a 64 KiB frame that straddles two reads
    /// cost 1.7× the server CPU per message (a second, tiny frame and write).
    /// 0 streams every data frame: the reactor uses it when its budget for
    /// held input is spent, so a connection then holds at most a frame header.
    pub max_held_frame: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 8 * 1024,
            max_headers: 64,
            max_frame_payload: 16 * 1024 * 1024,
            max_message: 16 * 1024 * 1024,
            max_fragments: 131_072,
            max_held_frame: 64 * 1024,
        }
    }
}
