//! One client connection of the swarm: its socket, what it still has to
//! write, and an incremental frame reader that verifies echoes as they
//! stream in (no per-connection copy of the payload is ever kept).

use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use wsecho::proto::frame::FrameHeader;
use wsecho::proto::{OpCode, Role, MAX_HEADER_LEN};

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
    /// The payload the server must echo back, unmasked.
    pub payload: Vec<u8>,
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
    /// Pre-encode everything for `size`-byte messages, `depth` in flight.
    pub fn new(size: usize, text: bool, depth: usize, host: &str, path: &str) -> Shared {
        let payload: Vec<u8> = if text {
            (0..size).map(|i| b'a' + (i % 26) as u8).collect()
        } else {
            (0..size).map(|i| (i * 31 + 7) as u8).collect()
        };
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let mut one = Vec::with_capacity(size + MAX_HEADER_LEN);
        wsecho::proto::frame::write_frame(&mut one, true, 0, opcode, Some(KEY), &payload);
        let frame_len = one.len();
        // Enough copies to cover `depth` or 64 KiB, whichever is more.
        let per_buf = depth.max((64 * 1024) / frame_len).clamp(1, 4096);
        let mut frames = Vec::with_capacity(frame_len * per_buf);
        for _ in 0..per_buf {
            frames.extend_from_slice(&one);
        }
        let key_b64 = "d3NlY2hvLWxvYWR0ZXN0IQ=="; // base64 of 16 bytes
        let mut request = Vec::new();
        wsecho::proto::handshake::write_request(&mut request, host, path, key_b64, &[], None);
        let accept = String::from_utf8_lossy(&wsecho::proto::handshake::accept_key(key_b64.as_bytes())).into_owned();
        let mut close_frame = Vec::new();
        wsecho::proto::frame::write_frame(&mut close_frame, true, 0, OpCode::Close, Some(KEY), &1000u16.to_be_bytes());
        Shared { frames, frame_len, per_buf, payload, opcode, request, accept, close_frame }
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
    /// The socket.
    pub stream: TcpStream,
    /// Unique id (slab keys are reused; rate-mode timers must not be).
    pub id: u64,
    /// Life phase.
    pub phase: Phase,
    /// When connect() was called, ns since the swarm started.
    pub started_ns: u64,
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
}

impl Conn {
    /// A connection whose connect() is in progress.
    pub fn new(stream: TcpStream, id: u64, now_ns: u64) -> Conn {
        Conn {
            stream,
            id,
            phase: Phase::Connecting,
            started_ns: now_ns,
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
        }
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
                            self.ctrl.clear();
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
                return Ok(Flush::Done);
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
    pub fn start_close(&mut self, sh: &Shared) {
        if self.sent_close {
            return;
        }
        self.pending = if self.mid_off > 0 { 1 } else { 0 };
        self.queue_ctrl(&sh.close_frame);
        self.sent_close = true;
        self.phase = Phase::Closing;
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
                    Some(OpCode::Text) | Some(OpCode::Binary) | Some(OpCode::Continuation) => {
                        if chunk != &sh.payload[self.rx_pos..self.rx_pos + n] {
                            return Err("payload_mismatch");
                        }
                    }
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
                match FrameHeader::decode(&self.hdr[..have], Role::Client, 0, u64::MAX >> 1) {
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
                match FrameHeader::decode(&data[i..], Role::Client, 0, u64::MAX >> 1) {
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
                    } else {
                        if self.in_msg {
                            return Err("interleaved_message");
                        }
                        if hdr.opcode != sh.opcode {
                            return Err("wrong_opcode");
                        }
                        self.in_msg = true;
                        self.msg_pos = 0;
                    }
                    if hdr.payload_len > (sh.payload.len() - self.msg_pos) as u64 {
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
                    if self.msg_pos != sh.payload.len() {
                        return Err("wrong_length");
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
        Conn::new(TcpStream::from_std(s), 0, 0)
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
}
