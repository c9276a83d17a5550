//! The event loop: one `mio::Poll`, connections in a slab, a run queue for
//! connections that used up their read budget, timers, and the drain.
//!
//! A reactor shares nothing with the others of its process but [`Shared`]:
//! the stop flag and the count of open connections (for
//! `max_connections`), touched once per accepted or dropped connection.

use super::config::Config;
use super::conn::{Conn, Phase, Stream};
use super::ctx::{Ctx, DropReason, Fate, ReadMode};
use super::driver::{read_conn, timer_turn, turn};
use super::io;
use super::metrics::{phase_index, BuildInfo, Metrics, ReactorMetrics, PHASE_HANDSHAKING};
use super::output::{after_output, enter_closing, send_close, CloseKind};
use super::stats::{ReactorCounters, ReactorStats, Tally, SUMMARY_EVERY};
use super::sys::{self, ListenOptions};
use super::tls::Accept;
use crate::proto::handshake;
use crate::proto::CloseCode;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection tokens are slab keys offset by this.
const FIRST_CONN: usize = 2;

/// What the reactors of one process share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set once: every reactor drains and stops.
    stop: AtomicBool,
    /// Connections open across all reactors (accepted, not yet dropped);
    /// bounded by `max_connections`.
    open: AtomicUsize,
}

/// Asks running reactors (one [`Server`], or every reactor of a
/// [`Runtime`](super::Runtime)) to drain and stop; cheap to clone, usable from
/// any thread (e.g. a signal handler thread).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
}

impl ShutdownHandle {
    /// A handle that stops every reactor whose waker is given.
    pub(crate) fn new(shared: Arc<Shared>, wakers: Vec<Arc<Waker>>) -> ShutdownHandle {
        ShutdownHandle { shared, wakers }
    }

    /// Connections open now across the reactors this handle stops.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Stop accepting, send Close 1001 to every open connection, wait up to
    /// the grace period for them to close, then return from `run`.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for waker in &self.wakers {
            if let Err(e) = waker.wake() {
                log::error!("waking a reactor for shutdown: {e}");
            }
        }
    }
}

/// A single-threaded WebSocket echo reactor, serving one listener whose
/// connections run over `S` (plain TCP by default; a
/// [`TlsStream`](super::tls::TlsStream) reactor serves a TLS listener).
#[derive(Debug)]
pub struct Server<S: Accept = Stream> {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    /// Turns an accepted socket into an `S` (the rustls config for TLS).
    acceptor: S::Acceptor,
    conns: Slab<Conn<S>>,
    ctx: Ctx,
    /// Connections with input left after their budget ran out.
    ready: VecDeque<usize>,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    /// Set once draining started: the moment we give up waiting.
    drain_deadline: Option<Instant>,
    /// After an accept error (e.g. out of file descriptors), retry then.
    accept_retry: Option<Instant>,
    /// The last accept turn stopped at `accepts_per_wakeup`: accept again
    /// after the other connections' turn.
    accept_pending: bool,
    /// Whether accepted sockets inherit TCP_NODELAY from the listener
    /// (learned from the first one).
    nodelay_inherited: Option<bool>,
    next_id: u32,
    /// What this reactor counted so far (messages and bytes are copied in
    /// from `ctx` when a summary is due).
    tally: Tally,
    /// The tally at the last summary line, and when that was.
    reported: Tally,
    reported_at: Instant,
    /// When the next summary line is due; None while nothing changed since
    /// the last one (an idle reactor is not woken for it).
    summary_due: Option<Instant>,
    /// Counts other threads can read.
    counters: Arc<ReactorCounters>,
}

impl Server<Stream> {
    /// Bind a listener on `addr` (with `cfg.backlog` and, if set,
    /// `SO_REUSEPORT`) and build a reactor around it.
    pub fn bind(addr: SocketAddr, cfg: Config) -> std::io::Result<Server> {
        let opts = ListenOptions { reuse_port: cfg.reuse_port, backlog: cfg.backlog };
        Server::from_listener(TcpListener::from_std(sys::bind_listener(addr, opts)?), cfg)
    }

    /// Build a reactor around an already bound listener.
    pub fn from_listener(listener: TcpListener, cfg: Config) -> std::io::Result<Server> {
        // Reserve (virtual) room for every connection this process can hold,
        // so the slab never doubles: untouched pages cost no RSS, and each
        // connection's slot is committed as it is first used.
        let reserve = cfg.max_connections.min(sys::fd_soft_limit());
        Server::with_shared(listener, (), cfg, Arc::default(), reserve)
    }
}

impl<S: Accept> Server<S> {
    /// Bind a listener on `addr` whose connections are wrapped by
    /// `acceptor` (e.g. a TLS listener), as [`Server::bind`] does for plain
    /// TCP.
    pub fn bind_with(addr: SocketAddr, acceptor: S::Acceptor, cfg: Config) -> std::io::Result<Server<S>> {
        let opts = ListenOptions { reuse_port: cfg.reuse_port, backlog: cfg.backlog };
        let listener = TcpListener::from_std(sys::bind_listener(addr, opts)?);
        let reserve = cfg.max_connections.min(sys::fd_soft_limit());
        Server::with_shared(listener, acceptor, cfg, Arc::default(), reserve)
    }

    /// Build one of several reactors: `shared` is common to all of them, and
    /// `reserve` is this reactor's share of the slab reservation (the slab
    /// grows past it if the kernel sends this reactor more than its share).
    pub(crate) fn with_shared(
        mut listener: TcpListener,
        acceptor: S::Acceptor,
        cfg: Config,
        shared: Arc<Shared>,
        reserve: usize,
    ) -> std::io::Result<Server<S>> {
        sys::set_listener_nodelay(&listener);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let local_addr = listener.local_addr()?;
        let now = Instant::now();
        let ctx = Ctx::new(cfg, now);
        ctx.metrics.pool_cap.set(ctx.cfg.max_pool_bytes as u64);
        ctx.metrics.held_cap.set(ctx.cfg.max_held_input as u64);
        ctx.metrics.inflaters_cap.set(ctx.cfg.max_inflaters as u64);
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            acceptor,
            conns: Slab::with_capacity(reserve),
            ctx,
            ready: VecDeque::new(),
            shared,
            waker,
            drain_deadline: None,
            accept_retry: None,
            accept_pending: false,
            nodelay_inherited: None,
            next_id: 1,
            tally: Tally::default(),
            reported: Tally::default(),
            reported_at: now,
            summary_due: None,
            counters: Arc::default(),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that makes [`run`](Server::run) drain and return.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(self.shared.clone(), vec![self.waker.clone()])
    }

    /// This reactor's waker (a [`Runtime`](super::Runtime) wakes them all).
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Where this reactor publishes its counts.
    pub(crate) fn counters(&self) -> Arc<ReactorCounters> {
        self.counters.clone()
    }

    /// This reactor's metric cells.
    pub(crate) fn metric_cells(&self) -> Arc<ReactorMetrics> {
        self.ctx.metrics.clone()
    }

    /// This reactor's metrics, for an [`AdminServer`](super::AdminServer)
    /// (a [`Runtime`](super::Runtime) has [`metrics`](super::Runtime::metrics)
    /// for all of its reactors).
    pub fn metrics(&self, build: BuildInfo) -> Metrics {
        Metrics::new(vec![self.metric_cells()], build)
    }

    /// Connections accepted so far and open now, as last published.
    pub fn stats(&self) -> ReactorStats {
        self.counters.snapshot()
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
                        if self.shared.stop.load(Ordering::SeqCst) {
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
                    c.set_queued(false);
                    self.drive(key, Some(ReadMode::UntilShort), false);
                }
            }
            if self.accept_pending {
                self.accept();
            }
            self.wake_pool_waiters();
            self.expire_timers();
            self.summarize();
            self.publish_gauges();
            if let Some(deadline) = self.drain_deadline {
                if self.conns.is_empty() || self.ctx.now >= deadline {
                    self.summary_due = Some(self.ctx.now);
                    self.summarize();
                    log::info!("drained; {} connections left, exiting", self.conns.len());
                    return Ok(());
                }
            }
        }
    }

    /// Arm the summary once something changed; write it when due.
    fn summarize(&mut self) {
        if !log::log_enabled!(log::Level::Info) {
            return;
        }
        self.tally.messages = self.ctx.metrics.messages_total();
        self.tally.bytes = self.ctx.metrics.bytes_total();
        if self.tally == self.reported {
            self.summary_due = None;
            return;
        }
        let now = self.ctx.now;
        let due = *self.summary_due.get_or_insert(now.max(self.reported_at + SUMMARY_EVERY));
        if now >= due {
            let span = now.saturating_duration_since(self.reported_at);
            log::info!("{}", self.tally.summary(&self.reported, self.conns.len(), span));
            self.reported = self.tally;
            self.reported_at = now;
            self.summary_due = None;
        }
    }

    /// Publish the gauges that change all over the reactor (a few relaxed
    /// stores per wakeup, none per message).
    fn publish_gauges(&self) {
        let (m, ctx) = (&self.ctx.metrics, &self.ctx);
        m.pool_bytes.set(ctx.pool_bytes() as u64);
        m.held_bytes.set(ctx.held_bytes as u64);
        m.inflaters.set(ctx.codecs.inflaters_in_use() as u64);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() || self.accept_pending {
            return Some(Duration::ZERO);
        }
        let next = [
            self.ctx.close_timers.next(),
            self.drain_deadline,
            self.accept_retry,
            self.ctx.wheel.next_deadline(),
            self.summary_due,
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    fn accept(&mut self) {
        self.accept_pending = false;
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        for _ in 0..self.ctx.cfg.accepts_per_wakeup {
            match listener.accept() {
                Ok((stream, peer)) => {
                    // One atomic add per connection keeps the limit exact
                    // across reactors; over it, take the add back.
                    let max = self.ctx.cfg.max_connections;
                    if self.shared.open.fetch_add(1, Ordering::Relaxed) >= max {
                        self.shared.open.fetch_sub(1, Ordering::Relaxed);
                        log::warn!("{peer}: over max-connections ({max}), answering 503");
                        refuse::<S>(stream, b"server at connection limit\n");
                        self.tally.refused += 1;
                        self.ctx.metrics.refused.add(1);
                        continue;
                    }
                    let mut stream = stream;
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
                        self.shared.open.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                    let stream = match S::accept(&self.acceptor, stream) {
                        Ok(s) => s,
                        Err(e) => {
                            log::warn!("{peer}: {e}");
                            self.shared.open.fetch_sub(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let id = self.next_id;
                    self.next_id = self.next_id.wrapping_add(1);
                    let conn = entry.insert(Conn::new(stream, id));
                    if let Phase::Handshaking(scanner) = &mut conn.phase {
                        scanner.started = self.ctx.clock_ns();
                    }
                    let deadline = self.ctx.now + self.ctx.cfg.handshake_timeout;
                    self.ctx.arm_at(conn, key, deadline);
                    self.tally.accepted += 1;
                    self.ctx.metrics.accepted.add(1);
                    self.ctx.metrics.phase_change(None, Some(PHASE_HANDSHAKING));
                    self.counters.publish(self.tally.accepted, self.conns.len());
                    log::debug!("conn {id}: accepted from {peer}");
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Typically EMFILE. The pending connection stays in the
                    // backlog and epoll will not repeat the edge: retry soon.
                    log::warn!("accept: {e}; retrying in 100 ms");
                    self.accept_retry = Some(self.ctx.now + Duration::from_millis(100));
                    return;
                }
            }
        }
        // Out of turns with connections possibly still waiting: epoll will
        // not repeat the edge, so accept again after the others' turn.
        self.accept_pending = true;
    }

    /// Handle readiness for connection `key` and settle its fate.
    fn drive(&mut self, key: usize, read: Option<ReadMode>, writable: bool) {
        // Events are hints: the connection may be gone (or its slot reused).
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let fate = turn(conn, &mut self.ctx, key, read, writable);
        self.settle(key, fate);
    }

    /// Act on what driving a connection decided.
    fn settle(&mut self, key: usize, fate: Fate) {
        match fate {
            Fate::Keep => {}
            Fate::Requeue => {
                if let Some(conn) = self.conns.get_mut(key) {
                    if !conn.queued() {
                        conn.set_queued(true);
                        self.ready.push_back(key);
                    }
                }
            }
            Fate::Drop(why) => self.drop_conn(key, why),
        }
    }

    /// Connections that waited for room in the write-chunk pool get a turn
    /// once there is room again.
    fn wake_pool_waiters(&mut self) {
        if self.ctx.pool_waiters.is_empty() || self.ctx.pool_room() == 0 {
            return;
        }
        for (key, id) in std::mem::take(&mut self.ctx.pool_waiters) {
            let Some(c) = self.conns.get_mut(key) else { continue };
            if c.id != id || !c.read_paused() || !c.out.is_empty() {
                continue; // gone, reused, or paused by its own backlog
            }
            c.resume_reading(self.ctx.tick);
            if !c.queued() {
                c.set_queued(true);
                self.ready.push_back(key);
            }
        }
    }

    fn drop_conn(&mut self, key: usize, why: DropReason) {
        if let Some(mut c) = self.conns.try_remove(key) {
            log::debug!("conn {}: closed ({})", c.id, why.as_str());
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            self.tally.count_close(why);
            self.ctx.metrics.closed[why as usize].add(1);
            self.ctx.metrics.phase_change(Some(phase_index(&c.phase)), None);
            self.counters.publish(self.tally.accepted, self.conns.len());
            c.out.clear(&mut self.ctx.pool);
            self.ctx.set_inbuf(&mut c, &[]);
            if c.pmd.as_ref().is_some_and(|p| p.holds_inflater()) {
                self.ctx.codecs.release_inflater();
            }
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
        let mut due = Vec::new();
        self.ctx.wheel.expire(now, &mut due);
        for (key, id, tick) in due {
            let Some(conn) = self.conns.get_mut(key) else { continue };
            if conn.id != id || conn.armed != tick {
                continue; // stale: the connection re-armed or the slot was reused
            }
            let fate = timer_turn(conn, &mut self.ctx, key);
            self.settle(key, fate);
        }
        while let Some((key, id)) = self.ctx.close_timers.pop_expired(now) {
            if self.conns.get(key).is_some_and(|c| c.id == id && matches!(c.phase, Phase::Closing { .. })) {
                self.drop_conn(key, DropReason::CloseTimeout);
            }
        }
    }

    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        log::info!("shutting down: no new connections; closing {} with 1001", self.conns.len());
        if let Some(mut l) = self.listener.take() {
            // Answer whoever is already in the accept queue, then close the
            // listener at once rather than after the drain: closing a
            // listener resets the connections still queued on it, and a
            // listener kept open keeps being handed new ones (by
            // SO_REUSEPORT, a share of all new ones) that it would only reset
            // later. Closed, it takes no more: new clients go to the
            // reuse-port peers, or without peers are refused at once instead
            // of waiting out the grace period. Only a connection that lands
            // between the last accept and the close is reset (none at all
            // where net.ipv4.tcp_migrate_req=1 moves it to a peer).
            let _ = self.poll.registry().deregister(&mut l);
            loop {
                match l.accept() {
                    Ok((stream, _)) => {
                        refuse::<S>(stream, b"server shutting down\n");
                        self.tally.refused += 1;
                        self.ctx.metrics.refused.add(1);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break, // WouldBlock: the queue is empty
                }
            }
        }
        self.drain_deadline = Some(self.ctx.now + self.ctx.cfg.shutdown_grace);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.phase {
                Phase::Handshaking(_) => self.drop_conn(key, DropReason::Shutdown),
                Phase::Open(_) => {
                    // Echo what has already arrived, then say goodbye.
                    let mut fate = read_conn(conn, &mut self.ctx, key, ReadMode::UntilWouldBlock);
                    if matches!(conn.phase, Phase::Open(_)) {
                        let r = send_close(conn, &mut self.ctx, CloseCode::GOING_AWAY);
                        enter_closing(conn, &mut self.ctx, key, CloseKind::AwaitPeerClose);
                        if r.is_err() {
                            fate = Fate::Drop(DropReason::WriteError);
                        }
                    }
                    if !fate.is_drop() {
                        let after = after_output(conn);
                        if after != Fate::Keep {
                            fate = after;
                        }
                    }
                    self.settle(key, fate);
                }
                Phase::Closing { .. } => {}
            }
        }
    }
}

/// Answer a connection we will not serve with HTTP 503 and close it. What
/// the client already sent is read first (one nonblocking read, discarded),
/// so closing does not turn the answer into a reset. A TLS listener's
/// connection is just closed (its client expects a ServerHello, not HTTP).
fn refuse<S: Accept>(mut stream: mio::net::TcpStream, body: &[u8]) {
    if !S::PLAINTEXT {
        return;
    }
    let mut scratch = [0u8; 4096]; // an upgrade request is a few hundred bytes
    let _ = io::read_step(&mut stream, &mut scratch);
    let mut resp = Vec::new();
    handshake::write_response(&mut resp, 503, "text/plain; charset=utf-8", &[], body);
    let _ = io::write_now(&mut stream, &resp, &[]);
}
