//! The `reactor_driver` scenario: fuzz bytes become a client script played
//! against one connection of the reactor over an in-memory stream
//! (`wsecho::server::testing`), with memory invariants checked after every
//! step and the echo checked at the end.
//!
//! Shared, unchanged, by `fuzz_targets/reactor_driver.rs` and the plain
//! `cargo test` in `tests/driver_in_memory.rs` (which includes this file by
//! path), so it depends on `std` and `wsecho` only.
//!
//! # Input layout
//!
//! Three config bytes, then operations until the input ends (every byte
//! string is a valid script; missing bytes read as 0):
//!
//! - byte 0: bits 0–1 `max_held_frame` (16 KiB, 16, 1, 300); bits 2–3 write
//!   chunk / pool cap (16 KiB / 256 MiB, 64 / 192, 64 / 1 KiB, 256 / 4 KiB);
//!   bits 4–5 `backpressure_bytes` (1 MiB, 0, 64, 1 KiB); bits 6–7
//!   `cork_size` (64 KiB, 16, 100, 1000).
//! - byte 1: bits 0–1 `read_budget` (256 KiB, 1, 100, 5000); bits 2–3
//!   `max_held_input` (16 MiB, 300, 40, 0); bit 4 small protocol limits;
//!   bit 5 small read buffer (4 KiB after `Ctx`'s floor); bit 6 epoll-style
//!   events (every bit that holds) instead of kqueue-style (only the bits
//!   whose edge fired); bit 7 vectored writes take only their first slice.
//! - byte 2: bits 0–1 request (upgrade, upgrade, `GET /`, garbage); bit 2
//!   impatient client (frames may follow the request before the 101); bit 3
//!   the client half-closes after its last byte; bit 4 the final drain
//!   grants write room in small steps; bit 5 short timeouts; bit 6 no
//!   keepalive; bit 7 `max_request_bytes` 512.
//! - operations: see [`Scenario::op`] — client messages (text/binary,
//!   fragmented, up to 70,000 bytes, pings between fragments), pings, pongs,
//!   closes, raw garbage, broken frames; arrivals of the client's bytes in
//!   sizes from 1 byte to everything; write room (none, a few bytes, any
//!   amount); write and read errors; `Interrupted`; the client's FIN;
//!   clock steps; spurious events; other connections holding pool chunks.
//!
//! After the operations, a final drain: the client's remaining bytes
//! arrive, its FIN if byte 2 says so, the write side accepts everything, and
//! the reactor runs until nothing moves.
//!
//! # Invariants
//!
//! After every step: no panic; held input ≤ max(`max_request_bytes`,
//! `max_held_frame` + 14, 139) and `held_bytes` equals it; queued output ≤
//! `backpressure_bytes` + read buffer + 64; pool bytes in use ≤
//! `max_pool_bytes` + [`pool_slack`], and exactly the chunks the queues
//! need (no chunk leaks); the cork is empty between turns; the stream is
//! never written after our FIN, never read into an empty buffer and never
//! given an empty write; a connection dropped for a reason that is not a
//! failure (close handshake done, the peer's FIN) had nothing left to send.
//!
//! At the end, the server's bytes, parsed by a parser of this file: one HTTP
//! response; after a 101, valid server frames (unmasked, no RSV, minimal
//! lengths, control frames ≤ 125 with FIN, data frames correctly sequenced)
//! and at most one Close, last. Their data, normalised per message
//! (payloads concatenated, since large frames are re-fragmented when
//! streamed), lies between two references from the protocol core over the
//! bytes the client delivered: **A**, whole frames only (what must have been
//! echoed), and **B**, fed a byte at a time with every data frame streamed
//! (the most that can have been echoed). Unless the run was cut short (a
//! read/write error, a timer: handshake, close, frame, backpressure or
//! keepalive timeout), the echo must reach A and end with A's Close (the
//! client's code, or the error's), or with none if A has none — whether or
//! not the client half-closed, so no echo is lost on a half-close. Cut
//! short, the echo is a prefix of B, ended by at most one Close (1008/1001
//! for a timer).

use crate::echo_view::{is_prefix, normalise_server, parse_server_frames, push_data, show, Item};
use std::time::Duration;
use wsecho::proto::frame::{write_frame, OpCode};
use wsecho::proto::{Action, Limits, Role, Session};
use wsecho::server::conn::Phase;
use wsecho::server::testing::{mem_pair, Driver, MemStream, Peer, Readiness};
use wsecho::server::{Config, DropReason, HOME_PAGE};

/// Most operations read from one input (the rest is ignored).
const MAX_OPS: usize = 3000;
/// Most client bytes one script may generate.
const MAX_CLIENT_BYTES: usize = 300_000;
/// Most reactor iterations in the final drain before it counts as stuck.
const MAX_DRAIN_ITERATIONS: usize = 200_000;

const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const HOME: &[u8] = b"GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n";

/// What a run exercised (the plain test checks that the paths were reached).
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// The server answered 101.
    pub upgraded: bool,
    /// Whole messages echoed.
    pub messages: usize,
    /// Reading was paused (backpressure or pool) at some point.
    pub paused: bool,
    /// The connection waited for room in the write-chunk pool.
    pub pool_waited: bool,
    /// A frame was being streamed at some point (payload bigger than
    /// `max_held_frame`).
    pub streamed: bool,
    /// The client's FIN arrived while the server still had bytes queued.
    pub eof_with_backlog: bool,
    /// The echo ended with a Close.
    pub closed: bool,
    /// The run was cut short by an error or a timer.
    pub cut_short: bool,
    /// The connection was dropped, and why.
    pub dropped: Option<DropReason>,
    /// Most bytes the pool was ever over `max_pool_bytes`.
    pub pool_excess: usize,
    /// The HTTP status the server answered with, if any.
    pub status: Option<u16>,
}

/// Play the script in `data`; panics if an invariant fails.
pub fn run(data: &[u8]) -> Report {
    let mut s = Scenario::new(data);
    let mut ops = 0;
    while !s.input.done() && ops < MAX_OPS {
        s.op();
        ops += 1;
    }
    s.final_drain();
    s.verify()
}

/// Whether to print every step (`DRIVER_TRACE=1`), for minimised inputs.
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("DRIVER_TRACE").is_some())
}

/// A deterministic generator for payload bytes (xorshift32).
#[derive(Debug, Clone)]
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.next() as usize % n
        }
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo)
    }

    fn key(&mut self) -> [u8; 4] {
        self.next().to_le_bytes()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Valid UTF-8 of about `n` bytes, with multi-byte code points so that
    /// fragment and read boundaries fall inside them.
    fn text(&mut self, n: usize) -> Vec<u8> {
        const CHARS: [&str; 7] = ["a", "b", " ", "é", "€", "𝄞", "z"];
        let mut s = Vec::with_capacity(n + 4);
        while s.len() < n {
            s.extend_from_slice(CHARS[self.below(CHARS.len())].as_bytes());
        }
        s
    }
}

/// The fuzz input, read front to back; reads past the end give 0.
#[derive(Debug)]
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let start = self.pos.min(self.data.len());
        let end = (self.pos + n).min(self.data.len());
        self.pos += n;
        self.data[start..end].to_vec()
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// The client: its request, the frame bytes it has generated, how much of
/// each has arrived at the server.
#[derive(Debug)]
struct Client {
    request: Vec<u8>,
    frames: Vec<u8>,
    request_sent: usize,
    frames_sent: usize,
    /// Frames may follow the request before the 101 arrives.
    impatient: bool,
    /// The client's FIN was sent.
    finished: bool,
    /// The server's response head, once complete: (length, status).
    response: Option<(usize, u16)>,
}

impl Client {
    /// Bytes the client is willing to send now.
    fn deliverable(&mut self, peer: &Peer) -> usize {
        if self.finished {
            return 0;
        }
        if self.request_sent < self.request.len() {
            let left = self.request.len() - self.request_sent;
            return if self.impatient { left + self.frames.len() - self.frames_sent } else { left };
        }
        if self.impatient || self.response(peer).is_some_and(|(_, status)| status == 101) {
            self.frames.len() - self.frames_sent
        } else {
            0
        }
    }

    /// The server's response head as seen so far.
    fn response(&mut self, peer: &Peer) -> Option<(usize, u16)> {
        if self.response.is_none() {
            self.response = parse_response_head(&peer.written());
        }
        self.response
    }

    /// Send up to `n` bytes (as one arrival).
    fn send(&mut self, peer: &Peer, n: usize) -> usize {
        let n = n.min(self.deliverable(peer));
        if n == 0 {
            return 0;
        }
        let mut chunk = Vec::with_capacity(n);
        let from_req = n.min(self.request.len() - self.request_sent);
        chunk.extend_from_slice(&self.request[self.request_sent..self.request_sent + from_req]);
        self.request_sent += from_req;
        let from_frames = n - from_req;
        chunk.extend_from_slice(&self.frames[self.frames_sent..self.frames_sent + from_frames]);
        self.frames_sent += from_frames;
        peer.send(&chunk);
        n
    }
}

/// Bounds checked after every step, from the settings in force.
#[derive(Debug)]
struct Bounds {
    held: usize,
    out: usize,
    pool: usize,
    max_pool: usize,
    chunk: usize,
}

/// Slack over `max_pool_bytes` that the pool may show: the read before
/// which the pool had room can also complete bytes held from earlier reads
/// (a small frame ≤ `held` bytes) or an HTTP response (≤ the home page),
/// whose output is not covered by the two chunks the read size leaves free.
pub fn pool_slack(held: usize, chunk: usize) -> usize {
    let response = HOME_PAGE.len() + 256;
    held.max(response).div_ceil(chunk) * chunk
}

/// The run.
struct Scenario<'a> {
    input: Input<'a>,
    rng: Rng,
    driver: Driver<MemStream>,
    peer: Peer,
    client: Client,
    /// Report every readiness bit that holds (epoll) or only edges (kqueue).
    level: bool,
    /// The final drain grants write room in small steps.
    trickle: bool,
    /// The client sends its FIN after its last byte.
    fin_at_end: bool,
    /// A valid request was sent but a small `max_held_input` may answer 503.
    busy_possible: bool,
    bounds: Bounds,
    /// A timer closed the connection (Close 1008/1001) or dropped it.
    timer_cut: bool,
    report: Report,
}

impl<'a> Scenario<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut input = Input { data, pos: 0 };
        let (c0, c1, c2) = (input.u8(), input.u8(), input.u8());
        let seed = data.iter().fold(0x9E37_79B9u32, |h, &b| h.rotate_left(5) ^ b as u32) | 1;
        let mut cfg = Config::default();
        cfg.limits.max_held_frame = [16 * 1024, 16, 1, 300][(c0 & 3) as usize];
        let (chunk, pool) = [(16 * 1024, 256 << 20), (64, 192), (64, 1024), (256, 4096)][(c0 >> 2 & 3) as usize];
        cfg.write_chunk_size = chunk;
        cfg.max_pool_bytes = pool;
        cfg.backpressure_bytes = [1 << 20, 0, 64, 1024][(c0 >> 4 & 3) as usize];
        cfg.cork_size = [64 * 1024, 16, 100, 1000][(c0 >> 6 & 3) as usize];
        cfg.read_budget = [256 * 1024, 1, 100, 5000][(c1 & 3) as usize];
        cfg.max_held_input = [16 << 20, 300, 40, 0][(c1 >> 2 & 3) as usize];
        if c1 & 0x10 != 0 {
            cfg.limits.max_frame_payload = 2000;
            cfg.limits.max_message = 5000;
            cfg.limits.max_fragments = 4;
        }
        if c1 & 0x20 != 0 {
            cfg.read_buffer_size = 1024;
        }
        if c2 & 0x20 != 0 {
            cfg.handshake_timeout = Duration::from_secs(2);
            cfg.close_timeout = Duration::from_secs(1);
            cfg.frame_timeout = Duration::from_secs(1);
            cfg.backpressure_timeout = Duration::from_secs(1);
            cfg.idle_timeout = Some(Duration::from_secs(2));
            cfg.ping_timeout = Duration::from_secs(1);
        }
        if c2 & 0x40 != 0 {
            cfg.idle_timeout = None;
        }
        if c2 & 0x80 != 0 {
            cfg.limits.max_request_bytes = 512;
        }
        let request = match c2 & 3 {
            0 | 1 => UPGRADE.to_vec(),
            2 => HOME.to_vec(),
            _ => {
                let n = input.u8() as usize % 64;
                let mut r = input.take(n);
                r.extend_from_slice(b"\r\n\r\n");
                r
            }
        };
        let busy_possible = cfg.max_held_input < request.len();
        let (stream, peer) = mem_pair();
        peer.set_first_slice_only(c1 & 0x80 != 0);
        let driver = Driver::new(cfg, stream);
        let eff = driver.config();
        let held = eff.limits.max_request_bytes.max(eff.limits.max_held_frame as usize + 14).max(125 + 14);
        let chunk = driver.chunk_size();
        let bounds = Bounds {
            held,
            out: eff.backpressure_bytes + driver.readbuf_len() + 64,
            pool: eff.max_pool_bytes + pool_slack(held, chunk),
            max_pool: eff.max_pool_bytes,
            chunk,
        };
        Scenario {
            input,
            rng: Rng(seed),
            driver,
            peer,
            client: Client {
                request,
                frames: Vec::new(),
                request_sent: 0,
                frames_sent: 0,
                impatient: c2 & 4 != 0,
                finished: false,
                response: None,
            },
            level: c1 & 0x40 != 0,
            trickle: c2 & 0x10 != 0,
            fin_at_end: c2 & 8 != 0,
            busy_possible,
            bounds,
            timer_cut: false,
            report: Report::default(),
        }
    }

    /// One operation, then one reactor iteration.
    fn op(&mut self) {
        let tag = self.input.u8() % 32;
        let arg = self.input.u8();
        if tracing() {
            eprintln!("op {tag} arg {arg}");
        }
        match tag {
            0..=6 => self.message(arg),
            7 | 8 => {
                let payload = self.rng.bytes(arg as usize % 126);
                let op = if tag == 7 { OpCode::Ping } else { OpCode::Pong };
                self.frame(true, 0, op, &payload);
            }
            9 => self.close(arg),
            10 => {
                let junk = self.input.take(arg as usize % 16);
                self.push_raw(&junk);
            }
            11 => self.broken_frame(arg),
            12..=17 => {
                let n = match arg % 6 {
                    0 => 1,
                    1 => self.rng.range(1, 8),
                    2 => self.rng.range(8, 64),
                    3 => self.rng.range(64, 1024),
                    4 => self.rng.range(1024, 8192),
                    _ => usize::MAX,
                };
                let sent = self.client.send(&self.peer, n);
                self.trace(&format!("arrival {sent}"));
            }
            18 | 19 => {
                let n = match arg % 5 {
                    0 => 0,
                    1 => self.rng.range(1, 8),
                    2 => self.rng.range(8, 128),
                    3 => self.rng.range(128, 4096),
                    _ => usize::MAX,
                };
                self.peer.set_write_room(n);
            }
            20 => self.peer.grant_write_room(arg as usize * 4),
            21 => {
                if arg % 8 == 0 {
                    self.peer.fail_writes(std::io::ErrorKind::ConnectionReset);
                } else {
                    self.peer.set_write_room(0);
                }
            }
            22 => self.client_fin(),
            23 | 24 => {
                let d = match arg % 4 {
                    0 => Duration::from_millis(250),
                    1 => Duration::from_millis(250) * (arg as u32 % 16),
                    2 => Duration::from_secs(arg as u64 % 64),
                    _ => self.driver.next_deadline().unwrap_or(Duration::from_secs(1)),
                };
                self.advance(d);
            }
            25 => {
                let r = Readiness {
                    readable: arg & 1 != 0,
                    read_closed: arg & 4 != 0 && self.peer.client_finished(),
                    writable: arg & 2 != 0,
                    error: false,
                };
                if r.any() {
                    self.driver.event(r);
                    self.check();
                }
            }
            26 => {
                if arg % 8 == 0 {
                    self.peer.fail_reads(std::io::ErrorKind::ConnectionReset);
                }
            }
            27 => self.peer.interrupt((arg & 3) as u32, (arg >> 2 & 3) as u32),
            28 => {
                if arg & 1 == 0 {
                    // Other connections queue bytes, never past the cap.
                    let room = self.bounds.max_pool.saturating_sub(self.driver.pool_bytes());
                    let n = (arg as usize * self.bounds.chunk / 8).min(room);
                    self.driver.others_queue(n);
                } else {
                    self.driver.others_drain();
                }
                self.check();
            }
            29 => self.peer.set_first_slice_only(arg & 1 != 0),
            _ => {
                for _ in 0..arg % 4 {
                    self.iterate();
                }
            }
        }
        self.iterate();
    }

    /// Append a client frame (masked with a fresh key).
    fn frame(&mut self, fin: bool, rsv: u8, op: OpCode, payload: &[u8]) {
        if self.client.frames.len() + payload.len() + 14 > MAX_CLIENT_BYTES {
            return;
        }
        let key = self.rng.key();
        write_frame(&mut self.client.frames, fin, rsv, op, Some(key), payload);
    }

    fn push_raw(&mut self, bytes: &[u8]) {
        if self.client.frames.len() + bytes.len() <= MAX_CLIENT_BYTES {
            self.client.frames.extend_from_slice(bytes);
        }
    }

    /// A data message: text or binary, 1–4 fragments, with pings between
    /// fragments if asked.
    fn message(&mut self, arg: u8) {
        let text = arg & 1 != 0;
        let parts = 1 + (arg >> 1 & 3) as usize;
        let len = match arg >> 3 & 7 {
            0 => 0,
            1 => self.rng.range(1, 8),
            2 => self.rng.range(8, 126),
            3 => self.rng.range(126, 300),
            4 => self.rng.range(300, 2000),
            5 => self.rng.range(2000, 9000),
            6 if self.rng.below(4) == 0 => self.rng.range(60_000, 70_000),
            6 => self.rng.range(9000, 20_000),
            _ => self.input.u8() as usize % 32,
        };
        let payload = if text { self.rng.text(len) } else { self.rng.bytes(len) };
        let ping_between = self.rng.below(3) == 0;
        let mut cuts: Vec<usize> = (1..parts).map(|_| self.rng.below(payload.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut from = 0;
        for (i, &to) in cuts.iter().enumerate() {
            if i > 0 && ping_between {
                let n = self.rng.below(20);
                let p = self.rng.bytes(n);
                self.frame(true, 0, OpCode::Ping, &p);
            }
            let op = match (i, text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            self.frame(i == cuts.len() - 1, 0, op, &payload[from..to]);
            from = to;
        }
    }

    /// A Close frame, valid or not.
    fn close(&mut self, arg: u8) {
        let payload: Vec<u8> = match arg % 6 {
            0 => Vec::new(),
            1 => 1000u16.to_be_bytes().to_vec(),
            2 => [&1001u16.to_be_bytes()[..], b"bye"].concat(),
            3 => [&4000u16.to_be_bytes()[..], "fin é".as_bytes()].concat(),
            4 => 1005u16.to_be_bytes().to_vec(), // not receivable: 1002
            _ => vec![0x03],                     // one byte: 1002
        };
        self.frame(true, 0, OpCode::Close, &payload);
    }

    /// A frame that breaks a rule.
    fn broken_frame(&mut self, arg: u8) {
        match arg % 7 {
            0 => {
                // Text with an invalid byte somewhere (often a streamed frame).
                let len = self.rng.range(1, 400);
                let mut p = self.rng.text(len);
                let at = self.rng.below(p.len());
                p[at] = 0xFF;
                self.frame(true, 0, OpCode::Text, &p);
            }
            1 => {
                let mut raw = Vec::new();
                write_frame(&mut raw, true, 0, OpCode::Binary, None, b"unmasked");
                self.push_raw(&raw);
            }
            2 => self.push_raw(&[0x83, 0x80, 1, 2, 3, 4]), // reserved opcode 3
            3 => self.frame(true, 0x20, OpCode::Text, b"rsv2"),
            4 => self.frame(true, 0, OpCode::Continuation, b"orphan"),
            5 => self.frame(true, 0, OpCode::Ping, &[0; 126]),
            _ => self.frame(false, 0, OpCode::Ping, b""),
        }
    }

    fn client_fin(&mut self) {
        if self.client.finished {
            return;
        }
        self.client.finished = true;
        self.trace("client FIN");
        if self.driver.conn().is_some_and(|c| !c.out.is_empty()) {
            self.report.eof_with_backlog = true;
        }
        self.peer.finish();
    }

    fn advance(&mut self, d: Duration) {
        let open_before = self.driver.conn().is_some_and(|c| matches!(c.phase, Phase::Open(_)));
        let alive_before = self.driver.conn().is_some();
        self.driver.advance(d);
        if d > Duration::ZERO {
            self.trace(&format!("advance {d:?}"));
        }
        let open_after = self.driver.conn().is_some_and(|c| matches!(c.phase, Phase::Open(_)));
        if (open_before && !open_after) || (alive_before && self.driver.conn().is_none()) {
            self.timer_cut = true;
        }
        self.check();
    }

    /// One pass of the reactor's loop: the pending event, the run queue,
    /// pool waiters, timers due now.
    fn iterate(&mut self) {
        if let Some(ev) = self.peer.take_event(self.level) {
            self.driver.event(ev);
            self.trace(&format!("event {ev:?}"));
            self.check();
        }
        if self.driver.run_queue() {
            self.trace("run queue");
            self.check();
        }
        self.driver.wake_pool_waiters();
        self.advance(Duration::ZERO);
    }

    fn trace(&self, what: &str) {
        if !tracing() {
            return;
        }
        let state = match self.driver.conn() {
            Some(c) => format!(
                "{} in {} out {} paused {} queued {}",
                c.phase_name(),
                c.inbuf.as_deref().map_or(0, <[u8]>::len),
                c.out.len(),
                c.read_paused(),
                self.driver.queued()
            ),
            None => format!("dropped {:?}", self.driver.dropped()),
        };
        eprintln!(
            "  {what}: {state}; sent {}+{} unread {} read {} written {} pool {} t {:?}",
            self.client.request_sent,
            self.client.frames_sent,
            self.peer.unread(),
            self.peer.bytes_read(),
            self.peer.written_len(),
            self.driver.pool_bytes(),
            self.driver.elapsed()
        );
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        let b = &self.bounds;
        assert_eq!(self.driver.cork_len(), 0, "cork not empty between turns");
        assert_eq!(self.peer.misuse(), (0, 0, 0), "stream misused: (writes after FIN, empty reads, empty writes)");
        let others = self.driver.others_bytes().div_ceil(b.chunk) * b.chunk;
        let pool = self.driver.pool_bytes();
        self.report.pool_excess = self.report.pool_excess.max(pool.saturating_sub(b.max_pool));
        assert!(pool <= b.pool, "pool {pool} bytes > cap {} + slack {}", b.max_pool, b.pool - b.max_pool);
        match self.driver.conn() {
            Some(conn) => {
                let held = conn.inbuf.as_deref().map_or(0, <[u8]>::len);
                assert!(held <= b.held, "connection holds {held} input bytes > {}", b.held);
                assert_eq!(self.driver.held_bytes(), held, "held_bytes out of step with inbuf");
                let out = conn.out.len();
                assert!(out <= b.out, "{out} bytes queued > {}", b.out);
                let own = pool - others;
                let min = out.div_ceil(b.chunk) * b.chunk;
                assert!(
                    own >= min && own <= min + b.chunk,
                    "connection holds {own} pool bytes for {out} queued bytes (chunk {})",
                    b.chunk
                );
                self.report.paused |= conn.read_paused();
                self.report.pool_waited |= self.driver.waiting_for_pool();
                if let Phase::Open(s) = &conn.phase {
                    self.report.streamed |= s.mid_frame();
                }
            }
            None => {
                assert_eq!(self.driver.held_bytes(), 0, "held bytes left after the drop");
                assert_eq!(pool, others, "pool chunks leaked by the dropped connection");
                let (why, lost) = self.driver.dropped().expect("gone means dropped");
                let failure = matches!(
                    why,
                    DropReason::ReadError
                        | DropReason::WriteError
                        | DropReason::HandshakeTimeout
                        | DropReason::CloseTimeout
                        | DropReason::ProtocolErrorWhileClosing
                        | DropReason::Shutdown
                );
                assert!(failure || lost == 0, "dropped ({}) with {lost} bytes unsent", why.as_str());
            }
        }
    }

    /// Everything arrives, the write side takes everything, the reactor
    /// runs until nothing moves.
    fn final_drain(&mut self) {
        self.driver.others_drain();
        self.check();
        self.peer.interrupt(0, 0);
        if !self.trickle {
            self.peer.set_write_room(usize::MAX);
        }
        let mut idle = 0;
        for _ in 0..MAX_DRAIN_ITERATIONS {
            let before = (self.peer.written_len(), self.peer.bytes_read(), self.client.frames_sent);
            if self.trickle {
                let step = self.rng.range(1, 64);
                self.peer.grant_write_room(step);
            }
            let n = match self.rng.below(4) {
                0 => self.rng.range(1, 16),
                1 => self.rng.range(16, 2048),
                _ => usize::MAX,
            };
            self.client.send(&self.peer, n);
            if self.fin_at_end && self.client.deliverable(&self.peer) == 0 && !self.waiting_for_response() {
                self.client_fin();
            }
            self.iterate();
            let after = (self.peer.written_len(), self.peer.bytes_read(), self.client.frames_sent);
            let backlog = self.driver.conn().is_some_and(|c| !c.out.is_empty());
            if before == after && !self.peer.has_event() && !self.driver.queued() && !backlog {
                idle += 1;
                if idle >= 3 {
                    return;
                }
            } else {
                idle = 0;
            }
        }
        panic!("final drain did not settle in {MAX_DRAIN_ITERATIONS} iterations");
    }

    /// A patient client still waits for the server's response head.
    fn waiting_for_response(&mut self) -> bool {
        let sent_request = self.client.request_sent == self.client.request.len();
        sent_request
            && !self.client.impatient
            && self.client.response(&self.peer).is_none()
            && self.driver.conn().is_some()
    }

    /// The end-of-run checks on what the server wrote.
    fn verify(mut self) -> Report {
        let written = self.peer.written();
        let dropped = self.driver.dropped();
        self.report.dropped = dropped.map(|d| d.0);
        let failed = matches!(
            dropped.map(|d| d.0),
            Some(
                DropReason::ReadError
                    | DropReason::WriteError
                    | DropReason::HandshakeTimeout
                    | DropReason::CloseTimeout
                    | DropReason::ProtocolErrorWhileClosing
            )
        );
        let cut_short = failed || self.timer_cut;
        self.report.cut_short = cut_short;
        if !cut_short {
            if let Some(conn) = self.driver.conn() {
                assert!(conn.out.is_empty(), "{} bytes still queued after the drain", conn.out.len());
            }
        }

        let Some((head, status)) = parse_response_head(&written) else {
            let request_complete = self.client.request_sent == self.client.request.len();
            assert!(
                cut_short
                    || !request_complete
                    || self.client.request.len() > self.driver.config().limits.max_request_bytes,
                "no HTTP response to a complete request ({} bytes written)",
                written.len()
            );
            return self.report;
        };
        self.report.status = Some(status);
        if status != 101 {
            if self.client.request == UPGRADE || self.client.request == HOME {
                let ok = (status == 503 && self.busy_possible)
                    || (status == 400 && self.client.impatient)
                    || (status == 200 && self.client.request == HOME);
                assert!(ok, "status {status} for a valid request");
            }
            let body = content_length(&written[..head]).expect("an error response has a Content-Length");
            assert!(written.len() <= head + body, "bytes after the HTTP response");
            if !cut_short {
                assert_eq!(written.len(), head + body, "HTTP response cut short");
                assert!(
                    self.peer.server_shut_write() || self.peer.server_closed(),
                    "after its last bytes the server neither shut its side nor closed"
                );
            }
            return self.report;
        }
        self.report.upgraded = true;
        assert!(self.client.request == UPGRADE || self.client.request.starts_with(b"GET "), "101 for garbage");

        let (frames, used) = parse_server_frames(&written[head..], 0);
        if !cut_short {
            assert_eq!(head + used, written.len(), "a partial frame at the end of the server's output");
        }
        let got = normalise_server(&frames);
        self.report.messages = got.items.iter().filter(|i| **i == Item::End).count();
        self.report.closed = got.close.is_some();

        let sent = &self.client.frames[..self.client.frames_sent];
        let limits = self.driver.config().limits;
        let whole = reference(sent, &limits, false);
        let streamed = reference(sent, &limits, true);
        assert_eq!(whole.close, streamed.close, "the protocol core ends differently fed whole and byte by byte");
        assert!(is_prefix(&whole.items, &streamed.items), "the core's whole-frame echo is not within its streamed one");
        assert!(
            is_prefix(&got.items, &streamed.items),
            "the echo is not a prefix of the client's messages\n got: {}\nmost: {}",
            show(&got.items),
            show(&streamed.items)
        );

        if cut_short {
            if let Some(code) = got.close {
                let timer = self.timer_cut && matches!(code, Some(1008) | Some(1001));
                let regular = Some(code) == whole.close.map(|c| c.code()) && is_prefix(&whole.items, &got.items);
                assert!(timer || regular, "Close {code:?} after a cut-short run (expected {:?})", whole.close);
            }
            return self.report;
        }
        assert!(
            is_prefix(&whole.items, &got.items),
            "echo lost: the server did not echo every complete frame\n got: {}\nneed: {}",
            show(&got.items),
            show(&whole.items)
        );
        assert_eq!(got.close, whole.close.map(|c| c.code()), "wrong or missing Close");
        match whole.close {
            Some(End::Peer(_)) => assert!(
                self.peer.server_closed() && dropped.is_some_and(|d| d.0 == DropReason::CloseHandshakeDone),
                "the client's Close was answered but TCP not closed ({dropped:?})"
            ),
            Some(End::Error(_)) => assert!(
                self.peer.server_shut_write() || self.peer.server_closed(),
                "after its Close the server neither shut its side nor closed"
            ),
            None if self.client.finished => {
                assert!(self.peer.server_closed(), "the client's FIN did not close the connection")
            }
            None => {}
        }
        self.report
    }
}

/// The length of the HTTP response head and its status, once complete.
fn parse_response_head(written: &[u8]) -> Option<(usize, u16)> {
    let end = written.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let line = &written[..end];
    assert!(line.starts_with(b"HTTP/1.1 "), "not an HTTP response: {:?}", String::from_utf8_lossy(line));
    let status = std::str::from_utf8(&line[9..12]).ok().and_then(|s| s.parse().ok()).expect("a status code");
    Some((end, status))
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.trim().parse().ok())
}

/// How the reference echo ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client's Close: echoed with its code (None if empty).
    Peer(Option<u16>),
    /// A protocol error: Close with its code.
    Error(u16),
}

impl End {
    fn code(self) -> Option<u16> {
        match self {
            End::Peer(c) => c,
            End::Error(c) => Some(c),
        }
    }
}

#[derive(Debug)]
struct Reference {
    items: Vec<Item>,
    close: Option<End>,
}

/// The echo the protocol core calls for over `sent`: fed whole with whole
/// frames only (`streamed` false: the least a server must have echoed), or
/// a byte at a time with every data frame streamed (the most it can have).
fn reference(sent: &[u8], limits: &Limits, streamed: bool) -> Reference {
    let limits = Limits { max_held_frame: if streamed { 0 } else { u64::MAX }, ..*limits };
    let mut session = Session::new(Role::Server);
    let mut items = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let step = if streamed { 1 } else { sent.len().max(1) };
    for piece in sent.chunks(step) {
        buf.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            match session.next(&mut buf[pos..], &limits) {
                Ok(Some((action, used))) => {
                    let frame = &buf[pos..pos + used];
                    match action {
                        Action::Data { opcode, fin, rsv, payload } => {
                            push_data(&mut items, opcode as u8, rsv, fin, &frame[payload])
                        }
                        Action::Ping(p) => items.push(Item::Pong(frame[p].to_vec())),
                        Action::Pong(_) => {}
                        Action::Close(c) => {
                            return Reference { items, close: Some(End::Peer(c.map(|(code, _)| code.0))) };
                        }
                    }
                    pos += used;
                }
                Ok(None) => break,
                Err(e) => return Reference { items, close: Some(End::Error(e.close_code().0)) },
            }
        }
        buf.drain(..pos);
    }
    Reference { items, close: None }
}
