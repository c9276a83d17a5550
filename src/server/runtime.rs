//! N reactors on one port: one thread, one `SO_REUSEPORT` listener, one
//! `mio::Poll`, slab, pool and timer set each. The kernel spreads new
//! connections across the listeners; the reactors share only the stop flag
//! and the count of open connections (see `reactor::Shared`).
//!
//! ```no_run
//! use wsecho::server::{Config, Runtime, RuntimeOptions};
//! let rt = Runtime::start("127.0.0.1:0".parse().unwrap(), Config::default(), RuntimeOptions::default())?;
//! println!("listening on {} with {} reactors", rt.local_addr(), rt.reactors());
//! rt.shutdown_handle().shutdown();
//! rt.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use super::config::Config;
use super::conn::Stream;
use super::metrics::{BuildInfo, Metrics, ReactorMetrics};
use super::reactor::{Server, Shared, ShutdownHandle};
use super::stats::{ReactorCounters, ReactorStats};
use super::sys::{self, ListenOptions};
use super::tls::{Accept, TlsStream};
use mio::net::TcpListener;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// How many reactors, and where they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Number of reactors (threads). Default: [`default_threads`], the CPUs
    /// this process may run on. 1 is a single reactor, as `Server::run`.
    pub threads: usize,
    /// Pin reactor `i` to the `i`-th CPU this process may run on (wrapping
    /// around if there are more reactors than CPUs). Default off: the
    /// scheduler places the threads.
    pub pin: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions { threads: default_threads(), pin: false }
    }
}

/// The CPUs this process may use: `std::thread::available_parallelism`,
/// which honours the affinity mask (taskset) and cgroup CPU quotas; 1 if
/// unknown.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Reactors running in their own threads, named `r0`, `r1`, … (a log format
/// that prints the thread name tells their lines apart; the `wsecho` binary's
/// does).
#[derive(Debug)]
pub struct Runtime {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    handle: ShutdownHandle,
    reactors: Vec<Reactor>,
}

#[derive(Debug)]
struct Reactor {
    thread: JoinHandle<io::Result<()>>,
    counters: Arc<ReactorCounters>,
    metrics: Arc<ReactorMetrics>,
}

impl Runtime {
    /// Bind `opts.threads` listeners on `addr` and start a reactor on each.
    ///
    /// With more than one reactor every listener sets `SO_REUSEPORT`
    /// (whatever `cfg.reuse_port` says), and with port 0 the first listener
    /// picks the port and the others bind the port it got.
    /// `cfg.max_connections` holds across all reactors; each reactor reserves
    /// slab room for its share of it (and of the open-file limit) only. The
    /// memory caps are for the process too: each reactor gets `1/N` of
    /// `max_pool_bytes`, `max_held_input`, `max_free_chunks` and
    /// `max_inflaters` (see
    /// [`Config`]).
    pub fn start(addr: SocketAddr, cfg: Config, opts: RuntimeOptions) -> io::Result<Runtime> {
        Runtime::start_with(Some(addr), None, cfg, opts)
    }

    /// As [`start`](Runtime::start), with a TLS listener on `tls.0` (served
    /// with the rustls config `tls.1`) and, if `plain` is given, a plain one
    /// there too. Each listener gets `opts.threads` reactors of its own;
    /// `max_connections` and the memory caps hold for all of them together.
    /// With TLS the read buffer is at least
    /// [`MIN_READ_BUFFER`](super::tls::MIN_READ_BUFFER).
    pub fn start_with(
        plain: Option<SocketAddr>,
        tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
        cfg: Config,
        opts: RuntimeOptions,
    ) -> io::Result<Runtime> {
        let n = opts.threads.max(1);
        let groups = usize::from(plain.is_some()) + usize::from(tls.is_some());
        let mut cfg = cfg;
        if tls.is_some() && cfg.read_buffer_size < super::tls::MIN_READ_BUFFER {
            log::info!("read buffer raised to {} bytes for TLS (two records)", super::tls::MIN_READ_BUFFER);
            cfg.read_buffer_size = super::tls::MIN_READ_BUFFER;
        }
        let cfg = share(cfg, n * groups.max(1));
        let shared = Arc::new(Shared::default());
        let reserve = cfg.max_connections.min(sys::fd_soft_limit()).div_ceil(n * groups.max(1));
        let plain = match plain {
            Some(addr) => Some(Group::<Stream>::bind(addr, (), n, &cfg, &shared, reserve)?),
            None => None,
        };
        let tls = match tls {
            Some((addr, config)) => Some(Group::<TlsStream>::bind(addr, config, n, &cfg, &shared, reserve)?),
            None => None,
        };
        let mut wakers: Vec<_> = plain.iter().flat_map(|g| g.servers.iter().map(Server::waker)).collect();
        wakers.extend(tls.iter().flat_map(|g| g.servers.iter().map(Server::waker)));
        let handle = ShutdownHandle::new(shared, wakers);
        let local_addr = plain.as_ref().map(|g| g.addr).or(tls.as_ref().map(|g| g.addr)).expect("a listener");
        let tls_addr = tls.as_ref().map(|g| g.addr);
        let cpus = if opts.pin { allowed_cpus(n) } else { Vec::new() };
        let mut reactors = Vec::with_capacity(n * groups);
        let spawned = match plain {
            Some(g) => spawn(g.servers, &cpus, &handle, &mut reactors),
            None => Ok(()),
        }
        .and_then(|()| match tls {
            Some(g) => spawn(g.servers, &cpus, &handle, &mut reactors),
            None => Ok(()),
        });
        if let Err(e) = spawned {
            handle.shutdown();
            for r in reactors {
                let _ = r.thread.join();
            }
            return Err(e);
        }
        Ok(Runtime { local_addr, tls_addr, handle, reactors })
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The address every plain listener is bound to (the TLS one's if there
    /// is no plain listener).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of reactors.
    pub fn reactors(&self) -> usize {
        self.reactors.len()
    }

    /// A handle that makes every reactor drain and stop.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Each reactor's counts, in reactor order (`r0` first).
    pub fn stats(&self) -> Vec<ReactorStats> {
        self.reactors.iter().map(|r| r.counters.snapshot()).collect()
    }

    /// The metrics of every reactor, plain and TLS, summed when scraped
    /// (serve them with an [`AdminServer`](super::AdminServer)).
    pub fn metrics(&self, build: BuildInfo) -> Metrics {
        Metrics::new(self.reactors.iter().map(|r| r.metrics.clone()).collect(), build)
    }

    /// Wait for every reactor to finish (after a shutdown, once drained).
    /// Returns the first error; a reactor that panicked is an error too.
    pub fn join(self) -> io::Result<()> {
        let mut first = Ok(());
        for (i, r) in self.reactors.into_iter().enumerate() {
            let result = r.thread.join().unwrap_or_else(|_| Err(io::Error::other(format!("reactor r{i} panicked"))));
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// The reactors of one listener address, before they run.
struct Group<S: Accept> {
    addr: SocketAddr,
    servers: Vec<Server<S>>,
}

impl<S: Accept> Group<S> {
    /// Bind `n` listeners on `addr` (with more than one, every listener sets
    /// `SO_REUSEPORT`, and with port 0 the first picks the port) and build a
    /// reactor on each.
    fn bind(
        addr: SocketAddr,
        acceptor: S::Acceptor,
        n: usize,
        cfg: &Config,
        shared: &Arc<Shared>,
        reserve: usize,
    ) -> io::Result<Group<S>> {
        let listen = ListenOptions { reuse_port: cfg.reuse_port || n > 1, backlog: cfg.backlog };
        let first = sys::bind_listener(addr, listen)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..n {
            listeners.push(sys::bind_listener(addr, listen)?);
        }
        let servers = listeners
            .into_iter()
            .map(|l| {
                Server::with_shared(TcpListener::from_std(l), acceptor.clone(), cfg.clone(), shared.clone(), reserve)
            })
            .collect::<io::Result<Vec<Server<S>>>>()?;
        Ok(Group { addr, servers })
    }
}

/// Start a thread (named `r0`, `r1`, … continuing from `reactors.len()`) for
/// each of `servers`.
fn spawn<S: Accept>(
    servers: Vec<Server<S>>,
    cpus: &[core_affinity::CoreId],
    handle: &ShutdownHandle,
    reactors: &mut Vec<Reactor>,
) -> io::Result<()> {
    for server in servers {
        let i = reactors.len();
        let counters = server.counters();
        let metrics = server.metric_cells();
        let cpu = cpus.get(i % cpus.len().max(1)).copied();
        let stop = StopOnPanic(handle.clone());
        let thread = std::thread::Builder::new().name(format!("r{i}")).spawn(move || {
            if let Some(cpu) = cpu {
                if core_affinity::set_for_current(cpu) {
                    log::debug!("pinned to CPU {}", cpu.id);
                } else {
                    log::warn!("could not pin to CPU {}", cpu.id);
                }
            }
            let result = server.run();
            if let Err(e) = &result {
                log::error!("reactor failed: {e}; stopping the others");
                stop.0.shutdown();
            }
            result
        })?;
        reactors.push(Reactor { thread, counters, metrics });
    }
    Ok(())
}

/// One reactor's share of the process-wide memory caps in `cfg`, for `n`
/// reactors. The pool keeps at least four chunks per reactor (it needs two of
/// slack), so a tiny cap can be exceeded by that much.
fn share(mut cfg: Config, n: usize) -> Config {
    if n > 1 {
        cfg.max_pool_bytes = (cfg.max_pool_bytes / n).max(4 * cfg.write_chunk_size);
        cfg.max_held_input = cfg.max_held_input.div_ceil(n);
        cfg.max_free_chunks = cfg.max_free_chunks.div_ceil(n);
        cfg.max_inflaters = cfg.max_inflaters.div_ceil(n);
    }
    cfg
}

/// The CPUs this thread may run on (as taskset or a cgroup cpuset allow),
/// for pinning `n` reactors; empty (no pinning) if they cannot be read.
fn allowed_cpus(n: usize) -> Vec<core_affinity::CoreId> {
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    if cpus.is_empty() {
        log::warn!("--pin: cannot read the allowed CPUs; not pinning");
    } else if cpus.len() < n {
        log::warn!("--pin: {n} reactors on {} allowed CPUs: some CPUs get two", cpus.len());
    }
    cpus
}

/// Held by a reactor thread: if the reactor panics, the others drain and
/// stop too, so the process does not go on with a share of its connections
/// silently unserved.
struct StopOnPanic(ShutdownHandle);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.shutdown();
        }
    }
}
