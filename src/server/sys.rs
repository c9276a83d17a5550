//! Operating-system settings the reactor needs: listener sockets and the
//! open-file limit. Uses `socket2` and `rlimit` rather than raw `libc` calls.

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// How a listening socket is built.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Set `SO_REUSEPORT` so several reactors (threads or processes) can bind
    /// the same address; the kernel spreads new connections across them.
    pub reuse_port: bool,
    /// Requested accept-queue length; the kernel clamps it to
    /// `net.core.somaxconn`.
    pub backlog: u32,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions { reuse_port: false, backlog: 4096 }
    }
}

/// Bind a nonblocking listener on `addr` with `SO_REUSEADDR`, optionally
/// `SO_REUSEPORT`, `TCP_NODELAY` (inherited by accepted sockets on Linux) and
/// the requested backlog.
pub fn bind_listener(addr: SocketAddr, opts: ListenOptions) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog.min(i32::MAX as u32) as i32)?;
    let listener: std::net::TcpListener = socket.into();
    set_listener_nodelay(&listener);
    Ok(listener)
}

/// Set TCP_NODELAY on the listening socket so accepted sockets inherit it
/// (echo latency must not wait for Nagle). Best effort.
pub fn set_listener_nodelay<S: std::os::fd::AsFd>(listener: &S) {
    if let Err(e) = SockRef::from(listener).set_nodelay(true) {
        log::debug!("TCP_NODELAY on the listener: {e}");
    }
}

/// The accept-queue length Linux grants for a `listen(requested)`: the
/// request clamped to `net.core.somaxconn` (what `ss -ltn` shows as Send-Q).
pub fn granted_backlog(requested: u32) -> u32 {
    match std::fs::read_to_string("/proc/sys/net/core/somaxconn") {
        Ok(s) => s.trim().parse::<u32>().map_or(requested, |max| requested.min(max)),
        Err(_) => requested,
    }
}

/// This process's open-file soft limit (a bound on its connections).
pub fn fd_soft_limit() -> usize {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) => soft.min(1 << 22) as usize,
        Err(_) => 1024,
    }
}

/// Raise this process's open-file soft limit to its hard limit; returns
/// (soft, hard) after the change.
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    rlimit::Resource::NOFILE.get()
}
