//! The reactor: one thread, one `mio::Poll`, connections in a slab.
//!
//! ```text
//!  accept ─► Handshaking ──101──► Open ──Close/error──► Closing ─► dropped
//!               │  (httparse, once the head is complete)     ▲
//!               └──4xx / home page───────────────────────────┘
//! ```
//!
//! Memory: the reactor owns one read buffer, one cork buffer and a pool of
//! write chunks ([`BufPool`]). A connection owns only what is in flight — a
//! partial frame or request in `inbuf`, bytes the kernel refused in `out` —
//! so an idle connection is just its [`Conn`] slot.
//!
//! Fairness: a connection is read until `WouldBlock` or until it has used its
//! per-wakeup byte budget; in the latter case it goes to the back of a run
//! queue (epoll will not wake it again by itself), so one flooding client
//! cannot starve the others.
//!
//! Several reactors can run side by side (each a `Server` value in its own
//! thread, e.g. one per core on `SO_REUSEPORT` listeners): nothing here is
//! global.

pub mod conn;
pub mod io;
pub mod timers;

use crate::pool::{BufPool, OutQueue};
use crate::proto::deflate::{self, CodecPool, DeflateConfig, PmdCodec};
use crate::proto::echo::{self, EchoEnd, FrameSink};
use crate::proto::frame::{OpCode, RSV1};
use crate::proto::handshake::{self, Route, UpgradePolicy};
use crate::proto::HandshakeError;
use crate::proto::{Action, CloseCode, Limits, Role, Session};
use conn::{Conn, Phase, Stream};
use io::IoStep;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timers::{DeadlineQueue, TimerWheel};

/// The page served at `GET /`, compiled in.
pub const HOME_PAGE: &str = include_str!("../../static/home.html");

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection tokens are slab keys offset by this.
const FIRST_CONN: usize = 2;

/// Everything the reactor can be told; every default is documented.
#[derive(Debug, Clone)]
pub struct Config {
    /// Protocol size limits (request, frame, message, fragments).
    pub limits: Limits,
    /// Origin and subprotocol policy for upgrades.
    pub policy: UpgradePolicy,
    /// permessage-deflate policy (default: no context takeover).
    pub deflate: DeflateConfig,
    /// A connection must complete its upgrade request within this. Default
    /// 10 s; slow or silent (slowloris) connections are closed after it.
    pub handshake_timeout: Duration,
    /// After we send a Close frame or an HTTP error, how long we wait for the
    /// peer to close before dropping it. Default 5 s.
    pub close_timeout: Duration,
    /// On shutdown, how long open connections get to finish their close
    /// handshake. Default 5 s.
    pub shutdown_grace: Duration,
    /// Most simultaneous connections; the next one gets HTTP 503 and is
    /// closed. Default 1,000,000 (in practice the open-file limit binds first).
    pub max_connections: usize,
    /// The reactor's single read buffer, in bytes. Default 64 KiB (one per
    /// reactor, not per connection).
    pub read_buffer_size: usize,
    /// Echoes of one read are gathered in a cork buffer of this size and
    /// written with one syscall; payloads larger than it are written straight
    /// from the read buffer. Default 64 KiB (one per reactor).
    pub cork_size: usize,
    /// Size of a pooled write chunk, in bytes. Default 16 KiB. Chunks hold
    /// only bytes the kernel refused.
    pub write_chunk_size: usize,
    /// Spare chunks kept for reuse. Default 1,024 (16 MiB at 16 KiB).
    pub max_free_chunks: usize,
    /// While a connection has more unsent bytes than this, it is not read
    /// (backpressure); reading resumes below half of it. Default 1 MiB.
    pub backpressure_bytes: usize,
    /// Bytes read from one connection per wakeup before others get a turn.
    /// Default 256 KiB.
    pub read_budget: usize,
    /// If a connection stays paused by backpressure this long (the peer does
    /// not read), it is closed with 1008. Default 30 s.
    pub backpressure_timeout: Duration,
    /// Cap on write-chunk memory lent out across all connections. Over it, a
    /// connection with queued bytes is not read until its queue drains.
    /// Default 256 MiB.
    pub max_pool_bytes: usize,
    /// Keepalive: after this much silence an open connection gets a Ping.
    /// Default 60 s; None disables keepalive.
    pub idle_timeout: Option<Duration>,
    /// Keepalive: if nothing arrives this long after our Ping, close 1001.
    /// Default 30 s.
    pub ping_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            policy: UpgradePolicy::default(),
            deflate: DeflateConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_connections: 1_000_000,
            read_buffer_size: 64 * 1024,
            cork_size: 64 * 1024,
            write_chunk_size: 16 * 1024,
            max_free_chunks: 1024,
            backpressure_bytes: 1024 * 1024,
            read_budget: 256 * 1024,
            backpressure_timeout: Duration::from_secs(30),
            max_pool_bytes: 256 << 20,
            idle_timeout: Some(Duration::from_secs(60)),
            ping_timeout: Duration::from_secs(30),
        }
    }
}

/// Asks a running [`Server`] to drain and stop; cheap to clone, usable from
/// any thread (e.g. a signal handler thread).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Stop accepting, send Close 1001 to every open connection, wait up to
    /// the grace period for them to close, then return from `run`.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("waking the reactor for shutdown: {e}");
        }
    }
}

/// What happens to a connection after it was driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Wait for the next event.
    Keep,
    /// More input may be waiting: give it another turn after the others.
    Requeue,
    /// Close it now.
    Drop(&'static str),
}

/// Reactor-wide resources that connection handlers borrow.
#[derive(Debug)]
struct Ctx {
    cfg: Config,
    pool: BufPool,
    /// The one read buffer (always `read_buffer_size` long).
    readbuf: Vec<u8>,
    /// Echoes gathered during one read, written with one syscall.
    cork: Vec<u8>,
    handshake_timers: DeadlineQueue,
    close_timers: DeadlineQueue,
    now: Instant,
    /// Spare zlib states for permessage-deflate.
    codecs: CodecPool,
    /// Scratch for re-compressed echoes.
    deflate_scratch: Vec<u8>,
    /// Keepalive and backpressure checks.
    wheel: TimerWheel,
    /// `now` in wheel ticks (250 ms) since the reactor started.
    tick: u32,
    /// When tick 0 began (the wheel's epoch).
    wheel_epoch: Instant,
}

impl Ctx {
    fn set_now(&mut self, now: Instant) {
        self.now = now;
        let since = now.saturating_duration_since(self.wheel_epoch);
        self.tick = (since.as_nanos() / TimerWheel::SLOT.as_nanos()).min(u32::MAX as u128) as u32;
    }

    fn ticks(d: Duration) -> u32 {
        d.as_nanos().div_ceil(TimerWheel::SLOT.as_nanos()).min(u32::MAX as u128) as u32
    }

    fn instant_of(&self, tick: u32) -> Instant {
        self.now + TimerWheel::SLOT * tick.saturating_sub(self.tick)
    }

    /// Make sure the connection's live wheel entry fires no later than
    /// `tick`.
    fn arm(&mut self, conn: &mut Conn, key: usize, tick: u32) {
        let at = self.instant_of(tick);
        if conn.armed == u32::MAX || self.wheel.tick_of(at) < conn.armed {
            conn.armed = self.wheel.arm(at, key, conn.id);
        }
    }

    fn pool_over_cap(&self) -> bool {
        self.pool.in_use() * self.pool.chunk_size() > self.cfg.max_pool_bytes
    }
}

/// A single-threaded WebSocket echo reactor.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    conns: Slab<Conn>,
    ctx: Ctx,
    /// Connections with input left after their budget ran out.
    ready: VecDeque<usize>,
    shutdown: ShutdownHandle,
    /// Set once draining started: the moment we give up waiting.
    drain_deadline: Option<Instant>,
    /// After an accept error (e.g. out of file descriptors), retry then.
    accept_retry: Option<Instant>,
    /// Whether accepted sockets inherit TCP_NODELAY from the listener
    /// (learned from the first one).
    nodelay_inherited: Option<bool>,
    next_id: u32,
}

impl Server {
    /// Bind a listener on `addr` and build a reactor around it.
    pub fn bind(addr: SocketAddr, cfg: Config) -> std::io::Result<Server> {
        Server::from_listener(TcpListener::bind(addr)?, cfg)
    }

    /// Build a reactor around an already bound listener (e.g. one of several
    /// `SO_REUSEPORT` listeners).
    pub fn from_listener(mut listener: TcpListener, cfg: Config) -> std::io::Result<Server> {
        set_listener_nodelay(&listener);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let local_addr = listener.local_addr()?;
        let start = Instant::now();
        let cfg_max_conns = cfg.max_connections;
        let ctx = Ctx {
            pool: BufPool::new(cfg.write_chunk_size, cfg.max_free_chunks),
            readbuf: vec![0; cfg.read_buffer_size.max(1024)],
            cork: Vec::with_capacity(cfg.cork_size),
            handshake_timers: DeadlineQueue::new(cfg.handshake_timeout),
            close_timers: DeadlineQueue::new(cfg.close_timeout),
            now: start,
            codecs: CodecPool::new(cfg.deflate.level, 64),
            deflate_scratch: Vec::new(),
            wheel: TimerWheel::new(start),
            tick: 0,
            wheel_epoch: start,
            cfg,
        };
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            // Reserve (virtual) room for every connection this process can
            // hold, so the slab never doubles: untouched pages cost no RSS,
            // and each connection's slot is committed as it is first used.
            conns: Slab::with_capacity(cfg_max_conns.min(fd_soft_limit())),
            ctx,
            ready: VecDeque::new(),
            shutdown: ShutdownHandle { flag: Arc::new(AtomicBool::new(false)), waker },
            drain_deadline: None,
            accept_retry: None,
            nodelay_inherited: None,
            next_id: 1,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that makes [`run`](Server::run) drain and return.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Run until shut down and drained.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.ctx.set_now(Instant::now());
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {
                        if self.shutdown.flag.load(Ordering::SeqCst) {
                            self.begin_drain();
                        }
                    }
                    Token(t) => {
                        // A short read means the socket is empty: Linux epoll
                        // signals every later arrival as a new edge, so we stop
                        // there instead of paying a read that returns
                        // WouldBlock. Only when the peer's FIN (or an error)
                        // came with the event do we read on to see it.
                        let read = if event.is_read_closed() || event.is_error() {
                            Some(ReadMode::UntilWouldBlock)
                        } else if event.is_readable() {
                            Some(ReadMode::UntilShort)
                        } else {
                            None
                        };
                        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
                        self.drive(t - FIRST_CONN, read, writable);
                    }
                }
            }
            // One more turn for connections that ran out of budget; ones that
            // run out again go to the back for the next round.
            for _ in 0..self.ready.len() {
                let Some(key) = self.ready.pop_front() else {
                    break;
                };
                if let Some(c) = self.conns.get_mut(key) {
                    c.queued = false;
                    self.drive(key, Some(ReadMode::UntilShort), false);
                }
            }
            self.expire_timers();
            if let Some(deadline) = self.drain_deadline {
                if self.conns.is_empty() || self.ctx.now >= deadline {
                    log::info!("drained; {} connections left, exiting", self.conns.len());
                    return Ok(());
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            self.ctx.handshake_timers.next(),
            self.ctx.close_timers.next(),
            self.drain_deadline,
            self.accept_retry,
            self.ctx.wheel.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.ctx.cfg.max_connections {
                        log::warn!("{peer}: over max-connections ({}), answering 503", self.ctx.cfg.max_connections);
                        let mut resp = Vec::new();
                        handshake::write_response(
                            &mut resp,
                            503,
                            "text/plain; charset=utf-8",
                            &[],
                            b"server at connection limit\n",
                        );
                        let _ = io::write_now(&mut stream, &resp, &[]);
                        continue;
                    }
                    // Linux copies TCP_NODELAY from the listener to accepted
                    // sockets; check that once, and only set it per socket
                    // where it is not inherited.
                    let inherited = *self.nodelay_inherited.get_or_insert_with(|| stream.nodelay().unwrap_or(false));
                    if !inherited {
                        if let Err(e) = stream.set_nodelay(true) {
                            log::debug!("{peer}: TCP_NODELAY: {e}");
                        }
                    }
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(key + FIRST_CONN),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("{peer}: register: {e}");
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id = self.next_id.wrapping_add(1);
                    entry.insert(Conn::new(stream, id));
                    self.ctx.handshake_timers.push(self.ctx.now, key, id);
                    log::info!("conn {id}: accepted from {peer}");
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Typically EMFILE. The pending connection stays in the
                    // backlog and epoll will not repeat the edge: retry soon.
                    log::warn!("accept: {e}; retrying in 100 ms");
                    self.accept_retry = Some(self.ctx.now + Duration::from_millis(100));
                    break;
                }
            }
        }
    }

    /// Handle readiness for connection `key` and settle its fate.
    fn drive(&mut self, key: usize, read: Option<ReadMode>, writable: bool) {
        // Events are hints: the connection may be gone (or its slot reused).
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let ctx = &mut self.ctx;
        let mut fate = Fate::Keep;
        if writable {
            fate = flush_out(conn, ctx);
        }
        if fate == Fate::Requeue || (fate == Fate::Keep && read.is_some()) {
            fate = read_conn(conn, ctx, key, read.unwrap_or(ReadMode::UntilShort));
        }
        if fate != Fate::Requeue && !matches!(fate, Fate::Drop(_)) {
            fate = after_output(conn, ctx);
        }
        match fate {
            Fate::Keep => {}
            Fate::Requeue => {
                if !conn.queued {
                    conn.queued = true;
                    self.ready.push_back(key);
                }
            }
            Fate::Drop(why) => self.drop_conn(key, why),
        }
    }

    fn drop_conn(&mut self, key: usize, why: &'static str) {
        if let Some(mut c) = self.conns.try_remove(key) {
            log::info!("conn {}: closed ({why})", c.id);
            c.out.clear(&mut self.ctx.pool);
            // No epoll_ctl(DEL): closing the socket (its only descriptor)
            // removes it from the epoll set, one syscall fewer per connection.
            drop(c);
        }
    }

    fn expire_timers(&mut self) {
        let now = self.ctx.now;
        if self.accept_retry.is_some_and(|t| t <= now) {
            self.accept_retry = None;
            self.accept();
        }
        while let Some((key, id)) = self.ctx.handshake_timers.pop_expired(now) {
            if self.conns.get(key).is_some_and(|c| c.id == id && matches!(c.phase, Phase::Handshaking(_))) {
                self.drop_conn(key, "handshake timeout");
            }
        }
        let mut due = Vec::new();
        self.ctx.wheel.expire(now, &mut due);
        for (key, id, tick) in due {
            let Some(conn) = self.conns.get_mut(key) else { continue };
            if conn.id != id || conn.armed != tick {
                continue; // stale: the connection re-armed or the slot was reused
            }
            conn.armed = u32::MAX;
            let mut fate = check_conn(conn, &mut self.ctx, key);
            if !matches!(fate, Fate::Drop(_)) {
                fate = after_output(conn, &mut self.ctx);
            }
            if let Fate::Drop(why) = fate {
                self.drop_conn(key, why);
            }
        }
        while let Some((key, id)) = self.ctx.close_timers.pop_expired(now) {
            if self.conns.get(key).is_some_and(|c| c.id == id && matches!(c.phase, Phase::Closing { .. })) {
                self.drop_conn(key, "close timeout");
            }
        }
    }

    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        log::info!("shutting down: no new connections; closing {} with 1001", self.conns.len());
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.drain_deadline = Some(self.ctx.now + self.ctx.cfg.shutdown_grace);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.phase {
                Phase::Handshaking(_) => self.drop_conn(key, "shutdown"),
                Phase::Open(_) => {
                    // Echo what has already arrived, then say goodbye.
                    let mut fate = read_conn(conn, &mut self.ctx, key, ReadMode::UntilWouldBlock);
                    if matches!(conn.phase, Phase::Open(_)) {
                        let r = send_close(conn, &mut self.ctx, CloseCode::GOING_AWAY);
                        enter_closing(conn, &mut self.ctx, key, true, true);
                        if r.is_err() {
                            fate = Fate::Drop("write error");
                        }
                    }
                    if !matches!(fate, Fate::Drop(_)) {
                        fate = after_output(conn, &mut self.ctx);
                    }
                    if let Fate::Drop(why) = fate {
                        self.drop_conn(key, why);
                    }
                }
                Phase::Closing { .. } => {}
            }
        }
    }
}

/// Write queued bytes until done or `WouldBlock`; resume reading when a
/// backlog has drained below half the cap.
fn flush_out(conn: &mut Conn, ctx: &mut Ctx) -> Fate {
    while !conn.out.is_empty() {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = conn.out.slices(&mut slices);
        match io::write_step(&mut conn.stream, &slices[..n]) {
            Ok(IoStep::Progress(k)) => conn.out.consume(k, &mut ctx.pool),
            Ok(IoStep::WouldBlock) => break,
            Ok(IoStep::Eof) | Err(_) => return Fate::Drop("write error"),
        }
    }
    if conn.read_paused
        && (conn.out.is_empty() || (conn.out.len() <= ctx.cfg.backpressure_bytes / 2 && !ctx.pool_over_cap()))
    {
        conn.read_paused = false;
        return Fate::Requeue;
    }
    Fate::Keep
}

/// Read and process until `WouldBlock`, the budget, or a phase change.
/// How far to read a readable connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// Stop after a read that did not fill the buffer (the socket is empty).
    UntilShort,
    /// Read until WouldBlock or EOF (the event reported the peer's FIN).
    UntilWouldBlock,
}

fn read_conn(conn: &mut Conn, ctx: &mut Ctx, key: usize, mode: ReadMode) -> Fate {
    let mut budget = ctx.cfg.read_budget;
    loop {
        if conn.read_paused {
            return Fate::Keep;
        }
        let n = match io::read_step(&mut conn.stream, &mut ctx.readbuf) {
            Ok(IoStep::Progress(n)) => n,
            Ok(IoStep::WouldBlock) => return Fate::Keep,
            Ok(IoStep::Eof) => {
                return Fate::Drop(match conn.phase {
                    Phase::Open(_) => "peer closed TCP without a close frame",
                    Phase::Handshaking(_) => "peer closed during handshake",
                    Phase::Closing { .. } => "peer closed",
                })
            }
            Err(_) => return Fate::Drop("read error"),
        };
        if matches!(conn.phase, Phase::Open(_)) {
            conn.last_seen = ctx.tick;
            conn.ping_sent = false;
        }
        if let Fate::Drop(why) = process_input(conn, ctx, key, n) {
            return Fate::Drop(why);
        }
        if conn.out.len() > ctx.cfg.backpressure_bytes || (!conn.out.is_empty() && ctx.pool_over_cap()) {
            log::debug!("conn {}: {} bytes unsent, pausing reads", conn.id, conn.out.len());
            conn.read_paused = true;
            conn.paused_at = ctx.tick;
            let deadline = ctx.tick.saturating_add(Ctx::ticks(ctx.cfg.backpressure_timeout));
            ctx.arm(conn, key, deadline);
            return Fate::Keep;
        }
        if n >= budget {
            return Fate::Requeue;
        }
        budget -= n;
        if mode == ReadMode::UntilShort && n < ctx.readbuf.len() {
            return Fate::Keep;
        }
    }
}

/// Feed `n` freshly read bytes (in `ctx.readbuf`) through the connection's
/// phase, keeping any unfinished request or frame in `conn.inbuf`, then write
/// the resulting output.
fn process_input(conn: &mut Conn, ctx: &mut Ctx, key: usize, n: usize) -> Fate {
    if !conn.phase.reads_input() {
        return Fate::Keep; // Closing: input is discarded.
    }
    let from_inbuf = !conn.inbuf.is_empty();
    let mut buf = if from_inbuf {
        conn.inbuf.extend_from_slice(&ctx.readbuf[..n]);
        std::mem::take(&mut conn.inbuf)
    } else {
        std::mem::take(&mut ctx.readbuf)
    };
    let len = if from_inbuf { buf.len() } else { n };
    let (consumed, fate) = consume(conn, ctx, key, &mut buf[..len]);
    let rest = if conn.phase.reads_input() { &buf[consumed..len] } else { &[][..] };
    if from_inbuf {
        if !rest.is_empty() {
            buf.drain(..consumed);
            conn.inbuf = buf;
        } // else: dropped, so a connection between frames holds no buffer.
    } else {
        if !rest.is_empty() {
            conn.inbuf.extend_from_slice(rest);
        }
        ctx.readbuf = buf;
    }
    let w = finish_cork(&mut conn.stream, &mut conn.out, ctx);
    if w.is_err() {
        return Fate::Drop("write error");
    }
    fate
}

/// Interpret bytes according to the phase; returns bytes consumed.
fn consume(conn: &mut Conn, ctx: &mut Ctx, key: usize, buf: &mut [u8]) -> (usize, Fate) {
    match &mut conn.phase {
        Phase::Handshaking(scanner) => {
            let limits = ctx.cfg.limits;
            match scanner.feed(buf, &limits) {
                Ok(None) => (0, Fate::Keep),
                Ok(Some(head)) if head < buf.len() => {
                    log::info!("conn {}: client sent data before handshake is complete", conn.id);
                    reject(conn, ctx, key, &handshake::EARLY_DATA);
                    (buf.len(), Fate::Keep)
                }
                Ok(Some(head)) => {
                    match handshake::route(&buf[..head], &ctx.cfg.policy, &limits) {
                        Ok(Route::Home) => {
                            handshake::write_response(
                                &mut ctx.cork,
                                200,
                                "text/html; charset=utf-8",
                                &[],
                                HOME_PAGE.as_bytes(),
                            );
                            log::info!("conn {}: GET / (home page)", conn.id);
                            enter_closing(conn, ctx, key, true, false);
                        }
                        Ok(Route::Upgrade(up)) => {
                            let agreed = match up.extensions.as_deref() {
                                Some(offers) => match deflate::negotiate(offers, &ctx.cfg.deflate) {
                                    Ok(a) => a,
                                    Err(e) => {
                                        reject(conn, ctx, key, &e);
                                        return (buf.len(), Fate::Keep);
                                    }
                                },
                                None => None,
                            };
                            let ext = agreed.as_ref().map(|(_, resp)| resp.as_str());
                            handshake::write_switching(&mut ctx.cork, &up, &ctx.cfg.policy, ext, &[]);
                            log::info!(
                                "conn {}: upgraded{}",
                                conn.id,
                                if ext.is_some() { " (permessage-deflate)" } else { "" }
                            );
                            let mut session = Session::new(Role::Server);
                            if let Some((a, _)) = agreed {
                                session.set_rsv_allowed(RSV1);
                                conn.pmd = Some(Box::new(PmdCodec::new(a)));
                            }
                            conn.set_phase(Phase::Open(session));
                            conn.last_seen = ctx.tick;
                            if let Some(idle) = ctx.cfg.idle_timeout {
                                let at = ctx.tick.saturating_add(Ctx::ticks(idle));
                                ctx.arm(conn, key, at);
                            }
                        }
                        Err(e) => reject(conn, ctx, key, &e),
                    }
                    (buf.len(), Fate::Keep)
                }
                Err(e) => {
                    reject(conn, ctx, key, &e);
                    (buf.len(), Fate::Keep)
                }
            }
        }
        Phase::Open(_) => echo_frames(conn, ctx, key, buf),
        Phase::Closing { session: Some(session), .. } => {
            // We sent Close; wait for the peer's, ignoring data meanwhile.
            let mut pos = 0;
            while pos < buf.len() {
                match session.next(&mut buf[pos..], &ctx.cfg.limits) {
                    Ok(Some((Action::Close(_), _))) => return (buf.len(), Fate::Drop("close handshake done")),
                    Ok(Some((_, used))) => pos += used,
                    Ok(None) => break,
                    Err(_) => return (buf.len(), Fate::Drop("protocol error while closing")),
                }
            }
            (pos, Fate::Keep)
        }
        Phase::Closing { session: None, .. } => (buf.len(), Fate::Keep),
    }
}

fn reject(conn: &mut Conn, ctx: &mut Ctx, key: usize, err: &HandshakeError) {
    log::info!("conn {}: upgrade rejected: {} {}", conn.id, err.status, err.reason);
    handshake::write_error(&mut ctx.cork, err);
    enter_closing(conn, ctx, key, true, false);
}

/// Leave Open/Handshaking after queueing our last bytes. With `keep_session`
/// (a clean close we started) the peer's frames are still decoded so its
/// Close can end the connection promptly.
fn enter_closing(conn: &mut Conn, ctx: &mut Ctx, key: usize, linger: bool, keep_session: bool) {
    let closing = Phase::Closing { linger, write_shut: false, session: None };
    let session = match std::mem::replace(&mut conn.phase, closing) {
        Phase::Open(s) if keep_session => Some(s),
        _ => None,
    };
    if session.is_none() {
        conn.inbuf = Vec::new();
    }
    conn.set_phase(Phase::Closing { linger, write_shut: false, session });
    ctx.close_timers.push(ctx.now, key, conn.id);
}

/// The reactor's [`FrameSink`]: frames go to the cork, or straight to the
/// socket for large payloads, and whatever the kernel refuses to the
/// connection's queue.
struct ConnSink<'a> {
    stream: &'a mut Stream,
    out: &'a mut OutQueue,
    ctx: &'a mut Ctx,
    id: u32,
}

impl FrameSink for ConnSink<'_> {
    type Error = std::io::Error;

    #[inline]
    fn frame(&mut self, header: &[u8], payload: &[u8]) -> std::io::Result<()> {
        send(self.stream, self.out, self.ctx, header, payload)
    }

    fn received(&mut self, _opcode: OpCode, fin: bool, payload: &[u8]) {
        if fin && log::log_enabled!(log::Level::Debug) {
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(256)]);
            log::debug!("conn {}: recv: {shown}", self.id);
        }
    }
}

/// Echo every complete frame in `buf`; leave Open on Close or error.
fn echo_frames(conn: &mut Conn, ctx: &mut Ctx, key: usize, buf: &mut [u8]) -> (usize, Fate) {
    let Conn { stream, phase, out, id, pmd, .. } = conn;
    let Phase::Open(session) = phase else {
        return (buf.len(), Fate::Keep);
    };
    let limits = ctx.cfg.limits;
    let id = *id;
    // The codec pool and scratch leave ctx for the call: the sink borrows ctx.
    let mut codecs = std::mem::replace(&mut ctx.codecs, CodecPool::new(0, 0));
    let mut scratch = std::mem::take(&mut ctx.deflate_scratch);
    let compression = pmd.as_deref_mut().map(|codec| echo::Compression {
        codec,
        pool: &mut codecs,
        scratch: &mut scratch,
        min_size: ctx.cfg.deflate.min_size,
    });
    let mut sink = ConnSink { stream, out, ctx, id };
    let result = echo::echo_frames(session, buf, &limits, &mut sink, compression);
    ctx.codecs = codecs;
    ctx.deflate_scratch = scratch;
    let echoed = match result {
        Ok(e) => e,
        Err(_) => return (buf.len(), Fate::Drop("write error")),
    };
    match echoed.end {
        None => {}
        Some(EchoEnd::PeerClosed(code)) => {
            log::info!("conn {id}: close from peer ({}), replied", code.map_or(1005, |c| c.0));
            enter_closing(conn, ctx, key, false, false);
        }
        Some(EchoEnd::Failed(e)) => {
            log::info!("conn {id}: {e}; closing with {}", e.close_code().0);
            enter_closing(conn, ctx, key, true, false);
        }
    }
    (echoed.consumed, Fate::Keep)
}

fn send_close(conn: &mut Conn, ctx: &mut Ctx, code: CloseCode) -> std::io::Result<()> {
    send_control(conn, ctx, OpCode::Close, &code.0.to_be_bytes())
}

/// Send one control frame of our own (not an echo) right away.
fn send_control(conn: &mut Conn, ctx: &mut Ctx, opcode: OpCode, payload: &[u8]) -> std::io::Result<()> {
    let id = conn.id;
    let mut sink = ConnSink { stream: &mut conn.stream, out: &mut conn.out, ctx, id };
    echo::send_frame(&mut sink, true, 0, opcode, payload)?;
    finish_cork(&mut conn.stream, &mut conn.out, ctx)
}

/// A connection's wheel entry fired: keepalive and backpressure deadlines.
fn check_conn(conn: &mut Conn, ctx: &mut Ctx, key: usize) -> Fate {
    if !matches!(conn.phase, Phase::Open(_)) {
        return Fate::Keep;
    }
    let now = ctx.tick;
    let mut next = u32::MAX;
    if conn.read_paused {
        let limit = conn.paused_at.saturating_add(Ctx::ticks(ctx.cfg.backpressure_timeout));
        if now >= limit {
            log::warn!("conn {}: peer not reading for {:?}, closing with 1008", conn.id, ctx.cfg.backpressure_timeout);
            return close_now(conn, ctx, key, CloseCode::POLICY);
        }
        next = limit;
    }
    if let Some(idle) = ctx.cfg.idle_timeout {
        let idle = Ctx::ticks(idle);
        let silent_since = conn.last_seen;
        if now >= silent_since.saturating_add(idle) {
            let give_up = silent_since.saturating_add(idle).saturating_add(Ctx::ticks(ctx.cfg.ping_timeout));
            if !conn.ping_sent {
                log::debug!("conn {}: idle, sending ping", conn.id);
                conn.ping_sent = true;
                if send_control(conn, ctx, OpCode::Ping, b"").is_err() {
                    return Fate::Drop("write error");
                }
                next = next.min(give_up.max(now + 1));
            } else if now >= give_up {
                log::info!("conn {}: no answer to keepalive ping, closing with 1001", conn.id);
                return close_now(conn, ctx, key, CloseCode::GOING_AWAY);
            } else {
                next = next.min(give_up);
            }
        } else {
            next = next.min(silent_since.saturating_add(idle));
        }
    }
    if next != u32::MAX {
        ctx.arm(conn, key, next);
    }
    Fate::Keep
}

/// Start a server-initiated close with `code` (we wait for the peer's Close).
fn close_now(conn: &mut Conn, ctx: &mut Ctx, key: usize, code: CloseCode) -> Fate {
    if send_close(conn, ctx, code).is_err() {
        return Fate::Drop("write error");
    }
    enter_closing(conn, ctx, key, true, true);
    Fate::Keep
}

/// Queue one frame (`hdr` + `payload`) for the peer: into the cork if it
/// fits, else (large payloads) written straight from the caller's buffer.
fn send(stream: &mut Stream, out: &mut OutQueue, ctx: &mut Ctx, hdr: &[u8], payload: &[u8]) -> std::io::Result<()> {
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
fn finish_cork(stream: &mut Stream, out: &mut OutQueue, ctx: &mut Ctx) -> std::io::Result<()> {
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

/// After output: finish a Closing connection whose last bytes are out.
fn after_output(conn: &mut Conn, _ctx: &mut Ctx) -> Fate {
    if let Phase::Closing { linger, write_shut, .. } = &mut conn.phase {
        if conn.out.is_empty() {
            if !*linger {
                return Fate::Drop("close handshake done");
            }
            if !*write_shut {
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                *write_shut = true;
            }
        }
    }
    Fate::Keep
}

/// Set TCP_NODELAY on the listening socket so accepted sockets inherit it
/// (echo latency must not wait for Nagle). Best effort.
fn set_listener_nodelay(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a valid socket fd with a correctly sized int.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::debug!("TCP_NODELAY on the listener: {}", std::io::Error::last_os_error());
    }
}

/// This process's open-file soft limit (a bound on its connections).
fn fd_soft_limit() -> usize {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    rl.rlim_cur.min(1 << 22) as usize
}

/// Raise this process's open-file soft limit to its hard limit; returns
/// (soft, hard) after the change.
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok((rl.rlim_cur, rl.rlim_max))
    }
}
