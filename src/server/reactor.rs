//! The event loop: one `mio::Poll`, connections in a slab, a run queue for
//! connections that used up their read budget, timers, and the drain.

use super::config::Config;
use super::conn::{Conn, Phase};
use super::ctx::{Ctx, DropReason, Fate, ReadMode};
use super::driver::read_conn;
use super::io;
use super::keepalive::check_conn;
use super::output::{after_output, enter_closing, flush_out, send_close, CloseKind};
use super::sys;
use crate::proto::handshake;
use crate::proto::CloseCode;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection tokens are slab keys offset by this.
const FIRST_CONN: usize = 2;

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
    /// The last accept turn stopped at `accepts_per_wakeup`: accept again
    /// after the other connections' turn.
    accept_pending: bool,
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
        sys::set_listener_nodelay(&listener);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let local_addr = listener.local_addr()?;
        let cfg_max_conns = cfg.max_connections;
        let ctx = Ctx::new(cfg, Instant::now());
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            // Reserve (virtual) room for every connection this process can
            // hold, so the slab never doubles: untouched pages cost no RSS,
            // and each connection's slot is committed as it is first used.
            conns: Slab::with_capacity(cfg_max_conns.min(sys::fd_soft_limit())),
            ctx,
            ready: VecDeque::new(),
            shutdown: ShutdownHandle { flag: Arc::new(AtomicBool::new(false)), waker },
            drain_deadline: None,
            accept_retry: None,
            accept_pending: false,
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
            if self.accept_pending {
                self.accept();
            }
            self.wake_pool_waiters();
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
        if !self.ready.is_empty() || self.accept_pending {
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
        self.accept_pending = false;
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        for _ in 0..self.ctx.cfg.accepts_per_wakeup {
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
        let ctx = &mut self.ctx;
        let mut fate = Fate::Keep;
        if writable {
            fate = flush_out(conn, ctx);
        }
        if fate == Fate::Requeue || (fate == Fate::Keep && read.is_some()) {
            fate = read_conn(conn, ctx, key, read.unwrap_or(ReadMode::UntilShort));
        }
        if fate == Fate::Keep {
            fate = after_output(conn);
        }
        self.settle(key, fate);
    }

    /// Act on what driving a connection decided.
    fn settle(&mut self, key: usize, fate: Fate) {
        match fate {
            Fate::Keep => {}
            Fate::Requeue => {
                if let Some(conn) = self.conns.get_mut(key) {
                    if !conn.queued {
                        conn.queued = true;
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
            if c.id != id || !c.read_paused || !c.out.is_empty() {
                continue; // gone, reused, or paused by its own backlog
            }
            c.resume_reading(self.ctx.tick);
            if !c.queued {
                c.queued = true;
                self.ready.push_back(key);
            }
        }
    }

    fn drop_conn(&mut self, key: usize, why: DropReason) {
        if let Some(mut c) = self.conns.try_remove(key) {
            log::info!("conn {}: closed ({})", c.id, why.as_str());
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
        while let Some((key, id)) = self.ctx.handshake_timers.pop_expired(now) {
            if self.conns.get(key).is_some_and(|c| c.id == id && matches!(c.phase, Phase::Handshaking(_))) {
                self.drop_conn(key, DropReason::HandshakeTimeout);
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
            if fate == Fate::Keep {
                fate = after_output(conn);
            }
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
            let _ = self.poll.registry().deregister(&mut l);
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
