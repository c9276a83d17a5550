//! The per-connection message state machine: frames in, actions out.
//!
//! [`Session::next`] looks at the front of a buffer of received bytes and
//! returns the next [`Action`] the caller owes the peer (echo or deliver a
//! data frame, answer a ping, answer a close) together with the number of
//! bytes it consumed — or `Ok(None)` when the buffer holds only part of a
//! frame. It never allocates and never does I/O; it unmasks payloads in place
//! so the caller can copy them straight out.
//!
//! Data is reported **frame by frame**: a fragmented message yields one
//! `Action::Data` per fragment, so nothing is reassembled. A frame larger
//! than [`Limits::max_held_frame`] is not awaited whole either: it is
//! **streamed**, each arriving piece returned at once as a frame of its own
//! (the first piece with the frame's opcode and RSV bits, then
//! continuations, the last with the frame's FIN), so a caller buffers at
//! most a frame header (≤ 14 bytes) of it. Text is still validated across
//! pieces, fragments and reads, failing at the first byte that cannot be
//! UTF-8 (≤ 3 bytes of a split code point are carried).

use super::close::{parse_close_payload, CloseCode};
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{Limits, Role};
use std::cell::Cell;
use std::ops::Range;

/// Frame and message lengths are kept in 32 bits (a smaller `Session` per
/// connection): limits above 4 GiB − 1 act as 4 GiB − 1.
const MAX_LEN: u64 = u32::MAX as u64;

/// What the caller owes the peer after a complete frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A data frame, already unmasked in place at `payload`.
    Data {
        /// `Text` or `Binary` on a message's first frame, `Continuation` after.
        opcode: OpCode,
        /// Whether this frame ends its message.
        fin: bool,
        /// RSV bits as received (RSV1 marks a compressed message).
        rsv: u8,
        /// Where the payload sits in the buffer passed to [`Session::next`].
        payload: Range<usize>,
    },
    /// A ping: answer with a pong carrying the same payload (RFC 6455 §5.5.2).
    Ping(Range<usize>),
    /// A pong: nothing is owed (RFC 6455 §5.5.3: "A response to an
    /// unsolicited Pong frame is not expected").
    Pong(Range<usize>),
    /// A valid close frame: its code (None if the payload was empty) and
    /// where its reason sits. RFC 6455 §5.5.1: the endpoint "MUST send a
    /// Close frame in response" and "typically echos the status code".
    Close(Option<(CloseCode, Range<usize>)>),
}

/// What one [`Session::echo_short_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShortRun {
    /// Input bytes consumed: whole frames only.
    pub consumed: usize,
    /// Echo bytes now at the front of the buffer (`consumed` minus 4 per
    /// frame).
    pub written: usize,
    /// Frames echoed (each one a whole message).
    pub frames: usize,
    /// Payload bytes echoed.
    pub payload: usize,
    /// Of `frames`, the Binary ones (the rest are Text).
    pub binary_frames: usize,
    /// Of `payload`, the bytes of Binary frames.
    pub binary_payload: usize,
}

// The short-frame fast path works on the buffer as `&[Cell<u8>]`: the
// echo is written a few bytes before the input it comes from, in the same
// buffer, and cells let the input and output views overlap in safe code
// while each keeps an exact length (so the word loop has no bounds checks).
// Whole-word `get`s and `set`s compile to single loads and stores.

/// The 8 bytes of `c` (exactly 8), little-endian.
#[inline(always)]
fn load8(c: &[Cell<u8>]) -> u64 {
    let a: &[Cell<u8>; 8] = c.try_into().expect("8 bytes");
    u64::from_le_bytes([a[0].get(), a[1].get(), a[2].get(), a[3].get(), a[4].get(), a[5].get(), a[6].get(), a[7].get()])
}

/// Store `v` little-endian into `c` (exactly 8 bytes).
#[inline(always)]
fn store8(c: &[Cell<u8>], v: u64) {
    let a: &[Cell<u8>; 8] = c.try_into().expect("8 bytes");
    for (d, b) in a.iter().zip(v.to_le_bytes()) {
        d.set(b);
    }
}

/// The 4 bytes of `c` (exactly 4), little-endian.
#[inline(always)]
fn load4(c: &[Cell<u8>]) -> u32 {
    let a: &[Cell<u8>; 4] = c.try_into().expect("4 bytes");
    u32::from_le_bytes([a[0].get(), a[1].get(), a[2].get(), a[3].get()])
}

/// Store `v` little-endian into `c` (exactly 4 bytes).
#[inline(always)]
fn store4(c: &[Cell<u8>], v: u32) {
    let a: &[Cell<u8>; 4] = c.try_into().expect("4 bytes");
    for (d, b) in a.iter().zip(v.to_le_bytes()) {
        d.set(b);
    }
}

/// High bit of every byte of a word: a word of ASCII has none.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Write the masked bytes of `inp`, unmasked with the key `k4` (key byte
/// 0 in the low byte) from key index 0, to `out` (same length, the same
/// buffer, starting at least 4 bytes before `inp`), writing exactly
/// `out`'s bytes. Returns the OR of the unmasked bytes (in the low byte
/// lanes of a word), so `& HIGH_BITS == 0` means they are ASCII.
///
/// 8-byte words front to back, then one last word that ends at the
/// payload's end (loaded before any store, so the overlap cannot change
/// it; it rewrites up to 7 bytes with the same values). Moving left by at
/// least 4, every other load happens before a store can reach its bytes.
#[inline(always)]
fn unmask_left(inp: &[Cell<u8>], out: &[Cell<u8>], k4: u32) -> u64 {
    let len = inp.len();
    debug_assert_eq!(len, out.len());
    if len >= 8 {
        let k8 = u64::from(k4) * 0x1_0000_0001;
        // Payload byte `len - 8 + j` takes key byte `(len + j) & 3`.
        let tail = load8(&inp[len - 8..]) ^ k8.rotate_right(8 * (len as u32 & 3));
        let mut seen = tail;
        for (o, i) in out.chunks_exact(8).zip(inp.chunks_exact(8)) {
            let v = load8(i) ^ k8;
            store8(o, v);
            seen |= v;
        }
        store8(&out[len - 8..], tail);
        seen
    } else if len >= 4 {
        let head = load4(&inp[..4]) ^ k4;
        let tail = load4(&inp[len - 4..]) ^ k4.rotate_right(8 * (len as u32 & 3));
        store4(&out[..4], head);
        store4(&out[len - 4..], tail);
        u64::from(head | tail)
    } else {
        let (mut seen, mut k) = (0, k4);
        for (o, i) in out.iter().zip(inp) {
            let b = i.get() ^ k as u8;
            o.set(b);
            seen |= b;
            k >>= 8;
        }
        u64::from(seen)
    }
}

/// Where [`short_frames`] got to in the buffer.
#[derive(Default)]
struct RunPos {
    /// Input bytes consumed.
    r: usize,
    /// Echo bytes written at the front.
    w: usize,
    /// Text frames echoed and their payload bytes (the rest are Binary).
    text_frames: usize,
    text_payload: usize,
    /// The first byte of the last frame echoed.
    last_b0: u8,
}

/// The loop of [`Session::echo_short_run`] from `p` on: echo frames until
/// one is not handled (`None`), or until a text frame whose payload is not
/// ASCII, which is left unmasked at `p.w + 2` (not yet counted in `p`) for
/// the caller to check: then its second header byte and key are returned.
#[inline(always)]
fn short_frames(buf: &mut [u8], p: &mut RunPos, max: usize) -> Option<(u8, u32)> {
    let cells = Cell::from_mut(buf).as_slice_of_cells();
    // The input from `r`, and the buffer from `w` (`w <= r`, overlapping).
    let mut rest = &cells[p.r..];
    let mut out = &cells[p.w..];
    let mut stop = None;
    while let Some((hdr, after)) = rest.split_first_chunk::<6>() {
        let (b0, b1) = (hdr[0].get(), hdr[1].get());
        // FIN, no RSV bits, Text (0x1) or Binary (0x2); MASK set and a
        // 7-bit length (126/127 announce longer frames).
        if !(b0 == 0x81 || b0 == 0x82) || b1 < 0x80 {
            break;
        }
        let len = (b1 & 0x7F) as usize;
        if len > max {
            break;
        }
        let Some((inp, next)) = after.split_at_checked(len) else { break };
        // Always there (the echo is 4 bytes shorter than the frame).
        let Some(o) = out.get(2..2 + len) else { break };
        let k4 = load4(&hdr[2..]);
        let seen = unmask_left(inp, o, k4);
        if b0 == 0x81 {
            if seen & HIGH_BITS != 0 {
                stop = Some((b1, k4));
                break;
            }
            p.text_frames += 1;
            p.text_payload += len;
        }
        out[0].set(b0);
        out[1].set(len as u8);
        p.last_b0 = b0;
        out = &out[2 + len..];
        rest = next;
    }
    p.r = cells.len() - rest.len();
    p.w = cells.len() - out.len();
    stop
}

/// Undo [`unmask_left`] on `f[dst..dst + len]` back to `f[src..src + len]`
/// (rare path: a text payload that is not UTF-8 goes back where it came
/// from, masked, for [`Session::next`] to report).
/// Back to front: moving right, every byte is read before a store reaches it.
#[cold]
fn remask_right(f: &mut [u8], src: usize, dst: usize, len: usize, key: [u8; 4]) {
    for i in (0..len).rev() {
        f[src + i] = f[dst + i] ^ key[i & 3];
    }
}

/// `Session::bits`: the RSV bits an extension allows.
const RSV_BITS: u8 = 0x70;
/// `Session::bits`: a fragmented message is in progress (its first frame
/// had FIN clear).
const IN_MESSAGE: u8 = 0x01;
/// `Session::bits`: the message in progress is text (validate it as UTF-8).
const MSG_TEXT: u8 = 0x02;
/// `Session::bits`: the message in progress is compressed; its UTF-8 is
/// checked after inflation, not here.
const MSG_COMPRESSED: u8 = 0x04;

/// Decoding state of one connection (28 bytes; see the size test in
/// `server::conn`).
#[derive(Debug, Clone)]
pub struct Session {
    /// Which side we are; decides the MASK rule.
    role: Role,
    /// RSV bits a negotiated extension gave meaning to (0x70 bits; 0
    /// without one), and the message flags `IN_MESSAGE`, `MSG_TEXT`,
    /// `MSG_COMPRESSED` in the low bits — one byte instead of four.
    bits: u8,
    /// Frames of the message in progress so far.
    fragments: u32,
    /// Payload bytes of the message in progress so far.
    msg_len: u32,
    /// A held (incomplete) frame at the front of the buffer: payload bytes
    /// already unmasked and validated by an earlier call. A streamed frame:
    /// payload bytes already returned (the mask phase of the next piece).
    partial_done: u32,
    /// Payload bytes of the streamed frame still to come (0: no frame is
    /// being streamed, the buffer starts with a frame header).
    stream_left: u32,
    /// The streamed frame's masking key (zeros when unmasked).
    stream_key: [u8; 4],
    /// UTF-8 state carried across reads and fragments.
    utf8: Utf8Validator,
}

impl Session {
    /// A session for `role` with no extension negotiated.
    pub fn new(role: Role) -> Self {
        Session {
            role,
            bits: 0,
            fragments: 0,
            msg_len: 0,
            partial_done: 0,
            stream_left: 0,
            stream_key: [0; 4],
            utf8: Utf8Validator::new(),
        }
    }

    /// Allow RSV bits that a negotiated extension defines (RSV1 for
    /// permessage-deflate).
    pub fn set_rsv_allowed(&mut self, rsv: u8) {
        self.bits = (self.bits & !RSV_BITS) | (rsv & RSV_BITS);
    }

    #[inline]
    fn flag(&self, f: u8) -> bool {
        self.bits & f != 0
    }

    #[inline]
    fn set_flag(&mut self, f: u8, on: bool) {
        if on {
            self.bits |= f;
        } else {
            self.bits &= !f;
        }
    }

    /// Which side this session decodes for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether a fragmented message is in progress.
    pub fn in_message(&self) -> bool {
        self.flag(IN_MESSAGE)
    }

    /// Whether a frame is being streamed: the next bytes are the rest of its
    /// payload, not a frame header.
    pub fn mid_frame(&self) -> bool {
        self.stream_left > 0
    }

    /// Whether the data message in progress (or the last one) is text:
    /// the opcode of its first frame, which its continuation frames share.
    pub fn msg_text(&self) -> bool {
        self.flag(MSG_TEXT)
    }

    /// Whether the message of the last data frame returned is compressed
    /// (its first frame had RSV1) and, if so, whether it is text.
    pub fn msg_compressed(&self) -> Option<bool> {
        self.flag(MSG_COMPRESSED).then_some(self.flag(MSG_TEXT))
    }

    /// Decode the next frame at the front of `buf`.
    ///
    /// Returns the action and the bytes consumed, `Ok(None)` if the frame is
    /// not complete yet (nothing consumed; call again with the same bytes
    /// still at the front and more appended), or the error to fail the
    /// connection with. On `Ok(None)` a partial text payload has already been
    /// validated, so invalid UTF-8 fails fast inside a frame.
    pub fn next(&mut self, buf: &mut [u8], limits: &Limits) -> Result<Option<(Action, usize)>, ProtocolError> {
        if self.stream_left > 0 {
            return self.stream_piece(buf, 0, OpCode::Continuation, 0);
        }
        let (h, hlen) =
            match FrameHeader::decode(buf, self.role, self.bits & RSV_BITS, limits.max_frame_payload.min(MAX_LEN))? {
                Some(x) => x,
                None => return Ok(None),
            };
        let len = h.payload_len;
        let is_data = !h.opcode.is_control();
        if is_data {
            match (h.opcode, self.in_message()) {
                // RFC 6455 §5.4: fragments of one message arrive in order, and
                // a message's first frame carries its opcode.
                (OpCode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
                (OpCode::Text | OpCode::Binary, true) => return Err(ProtocolError::ExpectedContinuation),
                _ => {}
            }
            // RSV1 belongs on the first frame of a message only (RFC 7692 §6).
            if h.opcode == OpCode::Continuation && h.rsv != 0 {
                return Err(ProtocolError::ReservedBits);
            }
            let have = if self.in_message() { self.msg_len as u64 } else { 0 };
            if len > limits.max_message.min(MAX_LEN).saturating_sub(have) {
                return Err(ProtocolError::MessageTooBig);
            }
            if self.in_message() && self.fragments >= limits.max_fragments {
                return Err(ProtocolError::TooManyFragments);
            }
        } else if h.rsv != 0 {
            // Control frames are never compressed.
            return Err(ProtocolError::ReservedBits);
        }
        let text = if h.opcode == OpCode::Continuation {
            self.flag(MSG_TEXT) && !self.flag(MSG_COMPRESSED)
        } else {
            h.opcode == OpCode::Text && h.rsv & super::frame::RSV1 == 0
        };

        let avail = (buf.len() - hlen) as u64;
        if avail < len && is_data && len > limits.max_held_frame && avail > 0 {
            // Too large to hold: stream it, starting with what is here.
            self.begin_data_frame(h.opcode, h.fin, h.rsv, len);
            self.stream_left = len as u32;
            self.stream_key = h.mask.unwrap_or([0; 4]);
            return self.stream_piece(buf, hlen, h.opcode, h.rsv);
        }
        if avail < len {
            // Incomplete: unmask and validate what is here, so bad UTF-8 fails
            // now rather than when the last byte of a large frame arrives.
            if is_data && avail > self.partial_done as u64 {
                let from = hlen + self.partial_done as usize;
                let part = &mut buf[from..];
                if let Some(key) = h.mask {
                    apply_mask(part, key, self.partial_done as usize);
                }
                if text {
                    self.utf8.push(part).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                self.partial_done = avail as u32;
            }
            return Ok(None);
        }

        let end = hlen + len as usize;
        let done = if is_data { self.partial_done as usize } else { 0 };
        self.partial_done = 0;
        let rest = &mut buf[hlen + done..end];
        if let Some(key) = h.mask {
            apply_mask(rest, key, done);
        }
        let payload = hlen..end;
        let action = match h.opcode {
            OpCode::Ping => Action::Ping(payload),
            OpCode::Pong => Action::Pong(payload),
            OpCode::Close => {
                let parsed = parse_close_payload(&buf[payload.clone()])?;
                Action::Close(parsed.map(|(code, reason)| (code, end - reason.len()..end)))
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if text {
                    self.utf8.push(rest).map_err(|_| ProtocolError::InvalidUtf8)?;
                    if h.fin {
                        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                }
                self.begin_data_frame(h.opcode, h.fin, h.rsv, len);
                Action::Data { opcode: h.opcode, fin: h.fin, rsv: h.rsv, payload }
            }
        };
        Ok(Some((action, end)))
    }

    /// The fast path for a run of complete short frames: echo every
    /// complete, masked, unfragmented Text or Binary frame with at most 125
    /// payload bytes and no RSV bits at the front of `buf`, re-encoded as
    /// server frames **in place**: the echo bytes are written at
    /// `buf[..written]` (each frame shrinks by its 4-byte key, so the output
    /// never overtakes the input it still has to read).
    ///
    /// It stops, consuming nothing more, at the first frame it does not
    /// handle — incomplete, a control frame, fragmented, longer than 125
    /// bytes or than the limits, RSV bits, unmasked, text that is not UTF-8,
    /// or any frame while a message or a streamed frame is in progress —
    /// and leaves that frame's bytes untouched for [`Session::next`], which
    /// then answers exactly as it would have. For the frames it does handle,
    /// the output, the session state after them, and the bytes consumed are
    /// those of calling `next` once per frame and encoding each echo with
    /// [`super::frame::FrameHeader::encode`] (the differential test in
    /// `tests/fast_path_vs_general.rs` and the `fast_path` fuzz target
    /// check it).
    pub fn echo_short_run(&mut self, buf: &mut [u8], limits: &Limits) -> ShortRun {
        if self.role != Role::Server || self.in_message() || self.stream_left != 0 || self.partial_done != 0 {
            return ShortRun::default();
        }
        let max = limits.max_frame_payload.min(limits.max_message).min(125) as usize;
        let mut p = RunPos::default();
        while let Some((b1, k4)) = short_frames(buf, &mut p, max) {
            // Text that is not ASCII, unmasked at `w + 2`: UTF-8 is echoed;
            // anything else is put back as it came, for `next` to report.
            let len = (b1 & 0x7F) as usize;
            let key = k4.to_le_bytes();
            let (src, end) = (p.r + 6 - p.w, p.r + 6 + len);
            let f = &mut buf[p.w..end];
            if !super::utf8::is_valid(&f[2..2 + len]) {
                remask_right(f, src, 2, len, key);
                f[src - 6..src].copy_from_slice(&[0x81, b1, key[0], key[1], key[2], key[3]]);
                break;
            }
            f[0] = 0x81;
            f[1] = len as u8;
            p.text_frames += 1;
            p.text_payload += len;
            p.last_b0 = 0x81;
            p.w += 2 + len;
            p.r = end;
        }
        let RunPos { r, w, text_frames, text_payload, last_b0 } = p;
        let frames = (r - w) / 4;
        let payload = w - 2 * frames;
        if frames > 0 {
            // As `begin_data_frame` leaves it after a FIN frame.
            self.set_flag(MSG_TEXT, last_b0 == 0x81);
            self.set_flag(MSG_COMPRESSED, false);
            self.msg_len = 0;
            self.fragments = 0;
        }
        ShortRun {
            consumed: r,
            written: w,
            frames,
            payload,
            binary_frames: frames - text_frames,
            binary_payload: payload - text_payload,
        }
    }

    /// Message bookkeeping for a data frame whose header was accepted (done
    /// up front for a streamed frame: no other data frame can start before
    /// it ends).
    fn begin_data_frame(&mut self, opcode: OpCode, fin: bool, rsv: u8, len: u64) {
        if opcode != OpCode::Continuation {
            self.set_flag(MSG_TEXT, opcode == OpCode::Text);
            self.set_flag(MSG_COMPRESSED, rsv & super::frame::RSV1 != 0);
            self.msg_len = 0;
            self.fragments = 0;
        }
        if fin {
            self.set_flag(IN_MESSAGE, false);
            self.msg_len = 0;
            self.fragments = 0;
        } else {
            self.set_flag(IN_MESSAGE, true);
            self.msg_len += len as u32;
            self.fragments += 1;
        }
    }

    /// Return the next piece of the streamed frame: the payload bytes at
    /// `buf[hlen..]` (up to what the frame has left), unmasked and validated.
    /// `opcode`/`rsv` are the piece's: the frame's own for its first piece,
    /// Continuation/0 after. On the first piece (`hlen > 0`) the first
    /// `partial_done` bytes may already be unmasked (the frame was held
    /// before the reactor's budget made it stream).
    fn stream_piece(
        &mut self,
        buf: &mut [u8],
        hlen: usize,
        opcode: OpCode,
        rsv: u8,
    ) -> Result<Option<(Action, usize)>, ProtocolError> {
        let avail = (buf.len() - hlen) as u64;
        if avail == 0 {
            return Ok(None);
        }
        let take = avail.min(self.stream_left as u64) as u32;
        // Frame offset of this piece's first byte, and how many of its bytes
        // an earlier call already unmasked.
        let (start, done) = if hlen > 0 { (0, self.partial_done) } else { (self.partial_done, 0) };
        let end = hlen + take as usize;
        let fresh = &mut buf[hlen + done as usize..end];
        if self.role == Role::Server {
            apply_mask(fresh, self.stream_key, (start + done) as usize);
        }
        // Text that is not compressed is validated as it streams.
        if self.flag(MSG_TEXT) && !self.flag(MSG_COMPRESSED) {
            self.utf8.push(fresh).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        self.partial_done = start + take;
        self.stream_left -= take;
        // The frame's FIN was booked in `in_message` when streaming began.
        let last = self.stream_left == 0;
        let fin = last && !self.in_message();
        if last {
            self.partial_done = 0;
            if fin && self.flag(MSG_TEXT) && !self.flag(MSG_COMPRESSED) {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        Ok(Some((Action::Data { opcode, fin, rsv, payload: hlen..end }, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::write_frame;

    const KEY: [u8; 4] = [0xA1, 0xB2, 0xC3, 0xD4];

    fn masked(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_frame(&mut v, fin, 0, op, Some(KEY), payload);
        v
    }

    /// Feed `input` to a fresh server session in pieces cut at `cuts`,
    /// keeping unconsumed bytes like the reactor does. Returns the actions
    /// with their payload bytes, and the error if any.
    fn run(input: &[u8], cuts: &[usize]) -> (Vec<(Action, Vec<u8>)>, Option<ProtocolError>) {
        let limits = Limits::default();
        let mut s = Session::new(Role::Server);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            buf.extend_from_slice(&input[last..c]);
            last = c;
            loop {
                match s.next(&mut buf, &limits) {
                    Ok(Some((a, used))) => {
                        let bytes = match &a {
                            Action::Data { payload, .. } | Action::Ping(payload) | Action::Pong(payload) => {
                                buf[payload.clone()].to_vec()
                            }
                            Action::Close(_) => Vec::new(),
                        };
                        out.push((a, bytes));
                        buf.drain(..used);
                    }
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn strip_ranges(v: Vec<(Action, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        v.into_iter()
            .map(|(a, b)| {
                let tag = match a {
                    Action::Data { opcode, fin, .. } => format!("{opcode:?}/{fin}"),
                    Action::Ping(_) => "ping".into(),
                    Action::Pong(_) => "pong".into(),
                    Action::Close(c) => format!("close {:?}", c.map(|x| x.0)),
                };
                (tag, b)
            })
            .collect()
    }

    fn sample_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(masked(false, OpCode::Text, "héllo ".as_bytes()));
        s.extend(masked(true, OpCode::Ping, b"p"));
        s.extend(masked(false, OpCode::Continuation, "世".as_bytes()));
        s.extend(masked(true, OpCode::Continuation, "界 🚀".as_bytes()));
        s.extend(masked(true, OpCode::Binary, &[0u8, 1, 2, 255]));
        s.extend(masked(true, OpCode::Binary, &vec![7u8; 300]));
        s.extend(masked(true, OpCode::Pong, b""));
        s.extend(masked(true, OpCode::Close, b"\x03\xe8bye"));
        s
    }

    #[test]
    fn decoder_fed_at_every_split_point_equals_unsplit() {
        let input = sample_stream();
        let (whole, err) = run(&input, &[]);
        assert_eq!(err, None);
        assert_eq!(whole.len(), 8);
        let whole = strip_ranges(whole);
        for cut in 0..=input.len() {
            let (parts, err) = run(&input, &[cut]);
            assert_eq!(err, None);
            assert_eq!(strip_ranges(parts), whole, "cut {cut}");
        }
        // Also one byte at a time.
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(strip_ranges(run(&input, &every).0), whole);
    }

    #[test]
    fn invalid_utf8_fails_fast_inside_a_frame_and_across_fragments() {
        // The frame announces 20 bytes but only the invalid prefix arrived.
        let mut f = masked(
            true,
            OpCode::Text,
            &[
                b'a', 0xF4, 0x90, 0x80, 0x80, b'b', b'c', b'd', b'e', b'f', b'g', b'h', b'i', b'j', b'k', b'l', b'm',
                b'n', b'o', b'p',
            ],
        );
        f.truncate(6 + 3);
        let (_, err) = run(&f, &[]);
        assert_eq!(err, Some(ProtocolError::InvalidUtf8));
        assert_eq!(err.unwrap().close_code(), CloseCode::INVALID_DATA);
        // Split across fragments: the code point begins in one frame and
        // goes wrong in the next.
        let mut s = masked(false, OpCode::Text, &[b'x', 0xE2, 0x82]);
        s.extend(masked(true, OpCode::Continuation, &[0x28]));
        assert_eq!(run(&s, &[]).1, Some(ProtocolError::InvalidUtf8));
        // Valid split code point passes.
        let mut s = masked(false, OpCode::Text, &[b'x', 0xE2, 0x82]);
        s.extend(masked(true, OpCode::Continuation, &[0xAC]));
        assert_eq!(run(&s, &[]).1, None);
    }

    #[test]
    fn message_sequencing_and_limits() {
        assert_eq!(run(&masked(true, OpCode::Continuation, b"x"), &[]).1, Some(ProtocolError::UnexpectedContinuation));
        let mut s = masked(false, OpCode::Text, b"a");
        s.extend(masked(true, OpCode::Text, b"b"));
        assert_eq!(run(&s, &[]).1, Some(ProtocolError::ExpectedContinuation));
        let mut s = masked(true, OpCode::Close, &[0x03, 0xE8]);
        s.truncate(6 + 1);
        s[1] = 0x81;
        assert_eq!(run(&s, &[]).1, Some(ProtocolError::CloseTooShort));

        let limits = Limits { max_message: 10, max_fragments: 2, ..Limits::default() };
        let mut sess = Session::new(Role::Server);
        let mut a = masked(false, OpCode::Binary, &[0; 6]);
        assert!(sess.next(&mut a, &limits).unwrap().is_some());
        let mut b = masked(false, OpCode::Continuation, &[0; 5]);
        assert_eq!(sess.next(&mut b, &limits), Err(ProtocolError::MessageTooBig));
        let mut sess = Session::new(Role::Server);
        for _ in 0..2 {
            let mut f = masked(false, OpCode::Binary, b"");
            if sess.in_message() {
                f = masked(false, OpCode::Continuation, b"");
            }
            assert!(sess.next(&mut f, &limits).unwrap().is_some());
        }
        let mut f = masked(false, OpCode::Continuation, b"");
        assert_eq!(sess.next(&mut f, &limits), Err(ProtocolError::TooManyFragments));
    }
}
