//! One client connection of the swarm: its socket, what it still has to
//! write, and an incremental frame reader that verifies echoes as they
//! stream in (no per-connection copy of the payload is ever kept).

use crate::tls::Transport;
use flate2::{Compress, Compression, Decompress, FlushDecompress, Status};
use std::collections::VecDeque;
use std::io;
use wsecho::proto::deflate::{self, TAIL};
use wsecho::proto::frame::FrameHeader;
use wsecho::proto::{OpCode, Role, MAX_HEADER_LEN};

/// RSV1: the "compressed" bit of permessage-deflate (RFC 7692 §6).
pub const RSV1: u8 = 0x40;

/// What the payload bytes look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// `abc...z` (text) or a byte ramp (binary): cheap, compresses absurdly well.
    Pattern,
    /// JSON-like records (`{"id":..,"user":..,"action":..,"items":[..]}`):
    /// realistic text for measuring compression.
    Json,
}

/// How the swarm sends and checks messages.
#[derive(Debug, Clone, Copy)]
pub struct MsgSpec {
    /// Uncompressed payload bytes.
    pub size: usize,
    /// Text frames (else binary).
    pub text: bool,
    /// Payload content.
    pub kind: PayloadKind,
    /// Offer permessage-deflate and send every message compressed at this
    /// zlib level (raw deflate, window 15, no context between messages).
    pub compress: Option<u32>,
}

/// `size` bytes of JSON: records in an array, padded with spaces before the
/// closing bracket to the exact length (still valid JSON for size >= 2).
/// Deterministic pseudo-random field values, so it compresses like real
/// traffic rather than like a repeated string.
pub fn json_payload(size: usize) -> Vec<u8> {
    const USERS: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
    const ACTIONS: [&str; 6] = ["update", "create", "delete", "view", "share", "comment"];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(size + 128);
    out.push(b'[');
    let mut id = 1000u64;
    loop {
        let r = next();
        id += 1 + r % 7;
        let mut rec = format!(
            "{{\"id\":{id},\"user\":\"{}\",\"action\":\"{}\",\"ts\":{},\"items\":[",
            USERS[(r >> 8) as usize % USERS.len()],
            ACTIONS[(r >> 16) as usize % ACTIONS.len()],
            1_700_000_000 + (r >> 24) % 10_000_000
        );
        let n = 1 + (r >> 40) % 4;
        for j in 0..n {
            let v = next();
            if j > 0 {
                rec.push(',');
            }
            rec.push_str(&format!("{{\"sku\":\"A{:05}\",\"qty\":{}}}", v % 100_000, 1 + (v >> 20) % 9));
        }
        rec.push_str("]}");
        let sep = usize::from(out.len() > 1);
        if out.len() + sep + rec.len() + 1 > size {
            break;
        }
        if sep == 1 {
            out.push(b',');
        }
        out.extend_from_slice(rec.as_bytes());
    }
    if size < 2 {
        out.clear();
        out.resize(size, b' ');
        return out;
    }
    out.resize(size - 1, b' ');
    out.push(b']');
    out
}

/// Compress `plain` as one permessage-deflate message: raw deflate, window
/// 15, a fresh compressor, sync flush, the trailing `00 00 ff ff` removed
/// (RFC 7692 §7.2.1). A message compressed this way needs no context, so it
/// is valid whatever context-takeover the server agreed for the client.
pub fn deflate_message(plain: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::new(level.min(9)), false, 15);
    let mut out = Vec::with_capacity(plain.len() / 2 + 64);
    deflate::compress_into(&mut c, plain, &mut out);
    deflate::end_message(&mut c, &mut out);
    out
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// connect() returned EINPROGRESS; waiting for writability.
    Connecting,
    /// The upgrade request is (being) sent; waiting for the 101.
    Handshaking,
    /// Upgraded; messages flow.
    Open,
    /// We sent a Close; waiting for the server's Close and then its FIN.
    Closing,
}

/// Everything the frame reader reports to the swarm.
#[derive(Debug, PartialEq, Eq)]
pub enum RxEvent {
    /// One complete, verified echo.
    Echo,
    /// A Close frame with this code (1005 if it had none).
    Close(u16),
    /// A Ping: answer it.
    Ping,
}

/// The bytes every connection sends, shared by all of them.
#[derive(Debug)]
pub struct Shared {
    /// One masked frame, repeated `per_buf` times (so one write() can carry
    /// many pipelined messages without copying).
    pub frames: Vec<u8>,
    /// Length of one frame.
    pub frame_len: usize,
    /// Frames in `frames`.
    pub per_buf: usize,
    /// The payload bytes on the wire, unmasked (compressed with `--compress`):
    /// what a verbatim echo must carry.
    pub payload: Vec<u8>,
    /// The uncompressed payload (what an inflated echo must equal).
    pub plain: Vec<u8>,
    /// RSV bits we send and accept: RSV1 with compression, else none.
    pub rsv: u8,
    /// The opcode we send (and expect back).
    pub opcode: OpCode,
    /// The upgrade request.
    pub request: Vec<u8>,
    /// The Sec-WebSocket-Accept we expect.
    pub accept: String,
    /// A masked Close 1000 frame.
    pub close_frame: Vec<u8>,
}

/// The fixed masking key: load generation needs no secrecy.
pub const KEY: [u8; 4] = [0x5a, 0x17, 0xc3, 0x9e];

impl Shared {
    /// Pre-encode everything for `size`-byte pattern messages, `depth` in flight.
    #[cfg(test)]
    pub fn new(size: usize, text: bool, depth: usize, host: &str, path: &str) -> Shared {
        Shared::build(MsgSpec { size, text, kind: PayloadKind::Pattern, compress: None }, depth, host, path)
    }

    /// Pre-encode everything for `spec`, `depth` messages in flight.
    pub fn build(spec: MsgSpec, depth: usize, host: &str, path: &str) -> Shared {
        let (size, text) = (spec.size, spec.text);
        let plain: Vec<u8> = match spec.kind {
            PayloadKind::Json => json_payload(size),
            PayloadKind::Pattern if text => (0..size).map(|i| b'a' + (i % 26) as u8).collect(),
            PayloadKind::Pattern => (0..size).map(|i| (i * 31 + 7) as u8).collect(),
        };
        let (payload, rsv) = match spec.compress {
            Some(level) => (deflate_message(&plain, level), RSV1),
            None => (plain.clone(), 0),
        };
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let mut one = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
        wsecho::proto::frame::write_frame(&mut one, true, rsv, opcode, Some(KEY), &payload);
        let frame_len = one.len();
        // Enough copies to cover `depth` or 64 KiB, whichever is more.
        let per_buf = depth.max((64 * 1024) / frame_len).clamp(1, 4096);
        let mut frames = Vec::with_capacity(frame_len * per_buf);
        for _ in 0..per_buf {
            frames.extend_from_slice(&one);
        }
        let key_b64 = "d3NlY2hvLWxvYWR0ZXN0IQ=="; // base64 of 16 bytes
        let mut request = Vec::new();
        // Offer plain permessage-deflate: without client_max_window_bits the
        // server may not shrink our window, so the pre-compressed payload
        // (window 15) stays valid whatever it answers.
        let offer = spec.compress.map(|_| "permessage-deflate");
        wsecho::proto::handshake::write_request(&mut request, host, path, key_b64, &[], offer);
        let accept = String::from_utf8_lossy(&wsecho::proto::handshake::accept_key(key_b64.as_bytes())).into_owned();
        let mut close_frame = Vec::new();
        wsecho::proto::frame::write_frame(&mut close_frame, true, 0, OpCode::Close, Some(KEY), &1000u16.to_be_bytes());
        Shared { frames, frame_len, per_buf, payload, plain, rsv, opcode, request, accept, close_frame }
    }
}

/// Outcome of a flush.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued was written.
    Done,
    /// The kernel refused more; wait for writability.
    Blocked,
}

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket (plain, or TLS over it for `wss://`).
    pub stream: Transport,
    /// Unique id (slab keys are reused; rate-mode timers must not be).
    pub id: u64,
    /// Life phase.
    pub phase: Phase,
    /// When connect() was called, ns since the swarm started.
    pub started_ns: u64,
    /// When the current phase began (for the stale sweep), ns.
    pub phase_ns: u64,
    /// The response head, while handshaking.
    pub head: Vec<u8>,
    /// Control bytes to write before the next data frame (request, pongs,
    /// close), and how much of them is already written.
    pub ctrl: Vec<u8>,
    /// Written prefix of `ctrl`.
    pub ctrl_off: usize,
    /// Data frames queued, counting a partly written one.
    pub pending: u64,
    /// Bytes of the current data frame already written.
    pub mid_off: usize,
    /// Send (or intended send) time of each message in flight, ns.
    pub inflight: VecDeque<u64>,
    /// A partial frame header carried between reads.
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    /// Payload bytes left in the current frame, and the offset reached.
    rx_left: u64,
    rx_pos: usize,
    rx_op: Option<OpCode>,
    rx_fin: bool,
    rx_ctrl: Vec<u8>,
    /// Inside a fragmented echo: bytes of the message received so far.
    in_msg: bool,
    msg_pos: usize,
    /// We queued a Close.
    pub sent_close: bool,
    /// The server's Close arrived.
    pub got_close: bool,
    /// The code of a Close the server sent before we sent ours.
    pub server_close: Option<u16>,
    /// `--reconnect`: 0 for a slot's first connection, n for the n-th
    /// attempt to restore a slot whose connection was lost.
    pub retry: u32,
    /// `--reconnect`: when this slot lost its connection, ns (for the gap).
    pub lost_at_ns: u64,
    /// Echo verification: `None` compares the wire bytes (plain, or a
    /// compressed echo passed through unchanged); `Some` inflates compressed
    /// echoes and compares the result with the plain payload.
    inflate: Option<Box<Inflate>>,
    /// The message being received carries RSV1.
    rx_compressed: bool,
}

/// Inflating verification of one connection's echoes.
#[derive(Debug)]
struct Inflate {
    d: Decompress,
    /// Reset after every message (`server_no_context_takeover` agreed).
    reset_each: bool,
    /// Inflated bytes of the message so far (== offset into `plain`).
    pos: usize,
    /// The message's deflate stream ended with a BFINAL block.
    ended: bool,
    scratch: Vec<u8>,
}

impl Inflate {
    /// Inflate `input` and compare the output with `plain` at `pos`.
    fn feed(&mut self, mut input: &[u8], plain: &[u8]) -> Result<(), &'static str> {
        while !input.is_empty() || !self.ended {
            if self.ended {
                return Err("bad_deflate_after_final");
            }
            self.scratch.clear();
            self.scratch.reserve(16 * 1024);
            let before = self.d.total_in();
            let st =
                self.d.decompress_vec(input, &mut self.scratch, FlushDecompress::Sync).map_err(|_| "bad_deflate")?;
            let used = (self.d.total_in() - before) as usize;
            input = &input[used..];
            let n = self.scratch.len();
            if n > 0 {
                if self.pos + n > plain.len() {
                    return Err("wrong_length");
                }
                if self.scratch[..] != plain[self.pos..self.pos + n] {
                    return Err("payload_mismatch");
                }
                self.pos += n;
            }
            if st == Status::StreamEnd {
                self.ended = true;
                if !input.is_empty() {
                    return Err("bad_deflate_after_final");
                }
                break;
            }
            if input.is_empty() && n < self.scratch.capacity() {
                break; // all input used and the output was not cut short
            }
            if used == 0 && n == 0 {
                return Err("bad_deflate");
            }
        }
        Ok(())
    }
}

impl Conn {
    /// A connection whose connect() is in progress.
    pub fn new(stream: Transport, id: u64, now_ns: u64) -> Conn {
        Conn {
            stream,
            id,
            phase: Phase::Connecting,
            started_ns: now_ns,
            phase_ns: now_ns,
            head: Vec::new(),
            ctrl: Vec::new(),
            ctrl_off: 0,
            pending: 0,
            mid_off: 0,
            inflight: VecDeque::new(),
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            rx_left: 0,
            rx_pos: 0,
            rx_op: None,
            rx_fin: false,
            rx_ctrl: Vec::new(),
            in_msg: false,
            msg_pos: 0,
            sent_close: false,
            got_close: false,
            server_close: None,
            retry: 0,
            lost_at_ns: 0,
            inflate: None,
            rx_compressed: false,
        }
    }

    /// Verify compressed echoes by inflating them (the server re-compresses,
    /// e.g. with context takeover), keeping the inflater's window across
    /// messages unless `reset_each`.
    pub fn inflate_echoes(&mut self, reset_each: bool) {
        self.inflate = Some(Box::new(Inflate {
            d: Decompress::new_with_window_bits(false, 15),
            reset_each,
            pos: 0,
            ended: false,
            scratch: Vec::new(),
        }));
    }

    /// Queue bytes to go out at the next frame boundary.
    pub fn queue_ctrl(&mut self, bytes: &[u8]) {
        if self.ctrl_off == self.ctrl.len() {
            self.ctrl.clear();
            self.ctrl_off = 0;
        }
        self.ctrl.extend_from_slice(bytes);
    }

    /// Write as much as the kernel takes.
    pub fn flush(&mut self, sh: &Shared) -> io::Result<Flush> {
        loop {
            if self.mid_off == 0 && self.ctrl_off < self.ctrl.len() {
                match self.stream.write(&self.ctrl[self.ctrl_off..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.ctrl_off += n;
                        if self.ctrl_off == self.ctrl.len() {
                            // Control bytes are rare (request, pongs, close):
                            // give the buffer back, so an idle connection
                            // holds none (C1M: 1M x the request's ~200 B).
                            self.ctrl = Vec::new();
                            self.ctrl_off = 0;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if self.pending == 0 {
                // With TLS, what rustls still holds must reach the socket too.
                return Ok(if self.stream.drain()? { Flush::Done } else { Flush::Blocked });
            }
            let n_frames = (self.pending.min(sh.per_buf as u64)) as usize;
            let end = n_frames * sh.frame_len;
            match self.stream.write(&sh.frames[self.mid_off..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let total = self.mid_off + n;
                    self.pending -= (total / sh.frame_len) as u64;
                    self.mid_off = total % sh.frame_len;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Stop sending data: keep only a partly written frame (it must be
    /// finished for the stream to stay valid), then queue a Close 1000.
    pub fn start_close(&mut self, sh: &Shared, now_ns: u64) {
        if self.sent_close {
            return;
        }
        self.phase_ns = now_ns;
        self.pending = if self.mid_off > 0 { 1 } else { 0 };
        self.queue_ctrl(&sh.close_frame);
        self.sent_close = true;
        self.phase = Phase::Closing;
    }

    /// Forget every message in flight and say how many were written in full
    /// (the server had them; their echo is now lost) and how many were still
    /// queued or half written (they never reached the server).
    pub fn take_outstanding(&mut self) -> (u64, u64) {
        let all = self.inflight.len() as u64;
        let unsent = self.pending.min(all);
        self.inflight.clear();
        (all - unsent, unsent)
    }

    /// Read from the socket into `buf` once.
    pub fn read_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    /// Feed received frame bytes; calls `ev` for every complete frame.
    /// Echoes are verified byte for byte against `sh.payload`.
    pub fn consume(
        &mut self,
        data: &[u8],
        sh: &Shared,
        mut ev: impl FnMut(&mut Conn, RxEvent),
    ) -> Result<(), &'static str> {
        let mut i = 0;
        while i < data.len() {
            if self.rx_op.is_some() {
                let n = (self.rx_left.min((data.len() - i) as u64)) as usize;
                let chunk = &data[i..i + n];
                match self.rx_op {
                    Some(OpCode::Text) | Some(OpCode::Binary) | Some(OpCode::Continuation) => match &mut self.inflate {
                        Some(inf) if self.rx_compressed => inf.feed(chunk, &sh.plain)?,
                        Some(_) => {
                            if self.rx_pos + n > sh.plain.len() {
                                return Err("wrong_length");
                            }
                            if chunk != &sh.plain[self.rx_pos..self.rx_pos + n] {
                                return Err("payload_mismatch");
                            }
                        }
                        None => {
                            if chunk != &sh.payload[self.rx_pos..self.rx_pos + n] {
                                return Err("payload_mismatch");
                            }
                        }
                    },
                    _ => self.rx_ctrl.extend_from_slice(chunk),
                }
                i += n;
                self.rx_pos += n;
                self.rx_left -= n as u64;
                if self.rx_left == 0 {
                    self.finish_frame(sh, &mut ev)?;
                }
                continue;
            }
            // A header: either continue a partial one or decode in place.
            let (hdr, used) = if self.hdr_len > 0 {
                let take = (MAX_HEADER_LEN - self.hdr_len).min(data.len() - i);
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[i..i + take]);
                let have = self.hdr_len + take;
                match FrameHeader::decode(&self.hdr[..have], Role::Client, sh.rsv, u64::MAX >> 1) {
                    Ok(Some((h, hl))) => {
                        let used = hl - self.hdr_len;
                        self.hdr_len = 0;
                        (h, used)
                    }
                    Ok(None) => {
                        self.hdr_len = have;
                        i += take;
                        continue;
                    }
                    Err(_) => return Err("bad_frame"),
                }
            } else {
                match FrameHeader::decode(&data[i..], Role::Client, sh.rsv, u64::MAX >> 1) {
                    Ok(Some((h, hl))) => (h, hl),
                    Ok(None) => {
                        let rest = &data[i..];
                        self.hdr[..rest.len()].copy_from_slice(rest);
                        self.hdr_len = rest.len();
                        return Ok(());
                    }
                    Err(_) => return Err("bad_frame"),
                }
            };
            i += used;
            // A server may re-fragment an echo (ws-rs splits at 65,535 bytes):
            // fragments are verified against the payload at their offset.
            self.rx_pos = 0;
            match hdr.opcode {
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    if hdr.opcode == OpCode::Continuation {
                        if !self.in_msg {
                            return Err("unexpected_continuation");
                        }
                        if hdr.rsv & RSV1 != 0 {
                            return Err("rsv1_on_continuation");
                        }
                    } else {
                        if self.in_msg {
                            return Err("interleaved_message");
                        }
                        if hdr.opcode != sh.opcode {
                            return Err("wrong_opcode");
                        }
                        self.in_msg = true;
                        self.msg_pos = 0;
                        self.rx_compressed = hdr.rsv & RSV1 != 0;
                        if sh.rsv & RSV1 != 0 && !self.rx_compressed && self.inflate.is_none() {
                            // We sent it compressed; a passthrough echo must be too.
                            return Err("echo_not_compressed");
                        }
                        if let Some(inf) = &mut self.inflate {
                            inf.pos = 0;
                            inf.ended = false;
                        }
                    }
                    let expect = if self.inflate.is_some() { sh.plain.len() } else { sh.payload.len() };
                    if !(self.inflate.is_some() && self.rx_compressed)
                        && hdr.payload_len > (expect - self.msg_pos) as u64
                    {
                        return Err("wrong_length");
                    }
                    self.rx_pos = self.msg_pos;
                }
                _ => self.rx_ctrl.clear(),
            }
            self.rx_op = Some(hdr.opcode);
            self.rx_fin = hdr.fin;
            self.rx_left = hdr.payload_len;
            if self.rx_left == 0 {
                self.finish_frame(sh, &mut ev)?;
            }
        }
        Ok(())
    }

    fn finish_frame(&mut self, sh: &Shared, ev: &mut impl FnMut(&mut Conn, RxEvent)) -> Result<(), &'static str> {
        let op = self.rx_op.take();
        match op {
            Some(OpCode::Text) | Some(OpCode::Binary) | Some(OpCode::Continuation) => {
                self.msg_pos = self.rx_pos;
                if self.rx_fin {
                    self.in_msg = false;
                    match &mut self.inflate {
                        Some(inf) if self.rx_compressed => {
                            if !inf.ended {
                                inf.feed(&TAIL, &sh.plain)?;
                            }
                            if inf.pos != sh.plain.len() {
                                return Err("wrong_length");
                            }
                            if inf.reset_each || inf.ended {
                                inf.d.reset(false);
                            }
                            if inf.scratch.capacity() > 64 * 1024 {
                                inf.scratch = Vec::new();
                            }
                        }
                        Some(_) if self.msg_pos != sh.plain.len() => return Err("wrong_length"),
                        None if self.msg_pos != sh.payload.len() => return Err("wrong_length"),
                        _ => {}
                    }
                    ev(self, RxEvent::Echo)
                }
            }
            Some(OpCode::Close) => {
                let code =
                    if self.rx_ctrl.len() >= 2 { u16::from_be_bytes([self.rx_ctrl[0], self.rx_ctrl[1]]) } else { 1005 };
                self.got_close = true;
                ev(self, RxEvent::Close(code))
            }
            Some(OpCode::Ping) => ev(self, RxEvent::Ping),
            _ => {}
        }
        Ok(())
    }

    /// A masked Pong echoing the last Ping's payload.
    pub fn queue_pong(&mut self) {
        let mut f = Vec::with_capacity(self.rx_ctrl.len() + MAX_HEADER_LEN);
        wsecho::proto::frame::write_frame(&mut f, true, 0, OpCode::Pong, Some(KEY), &self.rx_ctrl);
        self.queue_ctrl(&f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        wsecho::proto::frame::write_frame(&mut v, true, 0, op, None, payload);
        v
    }

    fn conn() -> Conn {
        // A socket that never connects anywhere: only its parser is used.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        Conn::new(Transport::Plain(mio::net::TcpStream::from_std(s)), 0, 0)
    }

    #[test]
    fn echoes_verified_at_every_split() {
        for size in [0usize, 5, 125, 126, 70_000] {
            let sh = Shared::new(size, size % 2 == 0, 1, "h", "/echo");
            let mut stream = server_frame(sh.opcode, &sh.payload);
            stream.extend(server_frame(OpCode::Ping, b"hi"));
            stream.extend(server_frame(sh.opcode, &sh.payload));
            stream.extend(server_frame(OpCode::Close, &1001u16.to_be_bytes()));
            let step = if size > 1000 { 997 } else { 1 };
            for split in (0..stream.len()).step_by(step) {
                let mut c = conn();
                let mut got = Vec::new();
                for part in [&stream[..split], &stream[split..]] {
                    c.consume(part, &sh, |_, e| got.push(e)).unwrap();
                }
                assert_eq!(
                    got,
                    vec![RxEvent::Echo, RxEvent::Ping, RxEvent::Echo, RxEvent::Close(1001)],
                    "size {size} split {split}"
                );
            }
        }
    }

    #[test]
    fn take_outstanding_splits_written_from_queued_and_forgets_them() {
        let mut c = conn();
        c.inflight.extend([10, 20, 30, 40, 50]);
        c.pending = 2; // the last two are queued (or half written)
        assert_eq!(c.take_outstanding(), (3, 2));
        assert!(c.inflight.is_empty());
        assert_eq!(c.take_outstanding(), (0, 0), "nothing is counted twice");
    }

    #[test]
    fn fragmented_echo_is_reassembled_and_verified() {
        let sh = Shared::new(70_000, false, 1, "h", "/echo");
        let mut stream = Vec::new();
        let (a, b) = sh.payload.split_at(65_535);
        wsecho::proto::frame::write_frame(&mut stream, false, 0, sh.opcode, None, a);
        wsecho::proto::frame::write_frame(&mut stream, true, 0, OpCode::Ping, None, b"p");
        wsecho::proto::frame::write_frame(&mut stream, true, 0, OpCode::Continuation, None, b);
        for split in (0..stream.len()).step_by(4999) {
            let mut c = conn();
            let mut got = Vec::new();
            c.consume(&stream[..split], &sh, |_, e| got.push(e)).unwrap();
            c.consume(&stream[split..], &sh, |_, e| got.push(e)).unwrap();
            assert_eq!(got, vec![RxEvent::Ping, RxEvent::Echo], "split {split}");
        }
        let mut short = Vec::new();
        wsecho::proto::frame::write_frame(&mut short, false, 0, sh.opcode, None, a);
        wsecho::proto::frame::write_frame(&mut short, true, 0, OpCode::Continuation, None, &b[..b.len() - 1]);
        assert_eq!(conn().consume(&short, &sh, |_, _| {}), Err("wrong_length"));
    }

    #[test]
    fn corrupted_echo_is_caught() {
        let sh = Shared::new(100, false, 1, "h", "/echo");
        let mut bad = sh.payload.clone();
        bad[77] ^= 1;
        let mut c = conn();
        assert_eq!(c.consume(&server_frame(sh.opcode, &bad), &sh, |_, _| {}), Err("payload_mismatch"));
        let mut c = conn();
        assert_eq!(c.consume(&server_frame(sh.opcode, &sh.payload[..99]), &sh, |_, _| {}), Err("wrong_length"));
    }

    #[test]
    fn pre_encoded_frame_unmasks_to_payload() {
        let sh = Shared::new(300, true, 8, "h", "/echo");
        let (h, hl) = FrameHeader::decode(&sh.frames, Role::Server, 0, 1 << 20).unwrap().unwrap();
        let mut p = sh.frames[hl..hl + 300].to_vec();
        wsecho::proto::mask::apply_mask(&mut p, h.mask.unwrap(), 0);
        assert_eq!(p, sh.payload);
        assert_eq!(sh.frames.len(), sh.frame_len * sh.per_buf);
    }

    fn server_frame_rsv(op: OpCode, rsv: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        wsecho::proto::frame::write_frame(&mut v, true, rsv, op, None, payload);
        v
    }

    fn json_spec(size: usize, compress: Option<u32>) -> MsgSpec {
        MsgSpec { size, text: true, kind: PayloadKind::Json, compress }
    }

    #[test]
    fn json_payload_has_the_exact_size_and_parses() {
        for size in [0usize, 1, 2, 10, 100, 1024, 4096, 70_000] {
            let p = json_payload(size);
            assert_eq!(p.len(), size);
            if size >= 2 {
                let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
                assert!(v.is_array());
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&json_payload(1024)).unwrap();
        assert!(v.as_array().unwrap().len() >= 5, "records fill 1 KiB");
    }

    #[test]
    fn compressed_payload_inflates_to_plain() {
        let sh = Shared::build(json_spec(1024, Some(6)), 1, "h", "/echo");
        assert!(sh.payload.len() < sh.plain.len() / 2, "{} B", sh.payload.len());
        assert_eq!(sh.rsv, RSV1);
        let (h, _) = FrameHeader::decode(&sh.frames, Role::Server, RSV1, 1 << 20).unwrap().unwrap();
        assert_eq!((h.rsv, h.opcode), (RSV1, OpCode::Text));
        let mut d = Decompress::new_with_window_bits(false, 15);
        let mut input = sh.payload.clone();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(4096);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
        assert_eq!(out, sh.plain);
        assert!(String::from_utf8_lossy(&sh.request).contains("Sec-WebSocket-Extensions: permessage-deflate\r\n"));
    }

    #[test]
    fn passthrough_echo_needs_rsv1_and_the_same_bytes() {
        let sh = Shared::build(json_spec(1024, Some(6)), 1, "h", "/echo");
        let good = server_frame_rsv(OpCode::Text, RSV1, &sh.payload);
        for split in 0..good.len() {
            let mut got = Vec::new();
            let mut c = conn();
            c.consume(&good[..split], &sh, |_, e| got.push(e)).unwrap();
            c.consume(&good[split..], &sh, |_, e| got.push(e)).unwrap();
            assert_eq!(got, vec![RxEvent::Echo]);
        }
        let no_rsv = server_frame_rsv(OpCode::Text, 0, &sh.payload);
        assert_eq!(conn().consume(&no_rsv, &sh, |_, _| {}), Err("echo_not_compressed"));
        let mut bad = sh.payload.clone();
        bad[3] ^= 0x10;
        assert_eq!(
            conn().consume(&server_frame_rsv(OpCode::Text, RSV1, &bad), &sh, |_, _| {}),
            Err("payload_mismatch")
        );
    }

    #[test]
    fn recompressed_echoes_are_inflated_with_context_kept() {
        // A server with context takeover: one deflater across messages, so the
        // second message is mostly back-references into the first.
        let sh = Shared::build(json_spec(2000, Some(6)), 1, "h", "/echo");
        let mut z = Compress::new_with_window_bits(Compression::new(1), false, 15);
        let mut stream = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut out = Vec::with_capacity(4096);
            z.compress_vec(&sh.plain, &mut out, flate2::FlushCompress::Sync).unwrap();
            assert!(out.ends_with(&TAIL));
            out.truncate(out.len() - 4);
            sizes.push(out.len());
            stream.extend(server_frame_rsv(OpCode::Text, RSV1, &out));
        }
        assert!(sizes[1] < sizes[0] / 4, "context takeover: {sizes:?}");
        stream.extend(server_frame(OpCode::Text, &sh.plain)); // uncompressed is allowed too
        for split in (0..stream.len()).step_by(7) {
            let mut c = conn();
            c.inflate_echoes(false);
            let mut got = Vec::new();
            c.consume(&stream[..split], &sh, |_, e| got.push(e)).unwrap();
            c.consume(&stream[split..], &sh, |_, e| got.push(e)).unwrap();
            assert_eq!(got.len(), 4, "split {split}");
        }
        // Reset per message when the agreement says so: the back-references break.
        let mut c = conn();
        c.inflate_echoes(true);
        assert!(c.consume(&stream, &sh, |_, _| {}).is_err());
    }
}
