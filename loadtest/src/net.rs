//! Client sockets: a nonblocking connect bound to a chosen loopback source
//! address (libc, because std and mio cannot bind before connect with
//! `IP_BIND_ADDRESS_NO_PORT`), and short names for socket errors.

use mio::net::TcpStream;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::FromRawFd;

/// Open a nonblocking TCP socket bound to `src` (if any), connecting to `dst`.
pub fn connect(src: Option<IpAddr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let family = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // Own the fd at once so every error path closes it.
        let std_stream = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let setopt = |level, name| {
            libc::setsockopt(
                fd,
                level,
                name,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        setopt(libc::IPPROTO_TCP, libc::TCP_NODELAY);
        if let Some(src) = src {
            // Let connect() pick the port, so ports are shared per 4-tuple.
            setopt(libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT);
            let (sa, len) = sockaddr(SocketAddr::new(src, 0));
            if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let (sa, len) = sockaddr(dst);
        if libc::connect(fd, &sa as *const _ as *const libc::sockaddr, len) < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(std_stream))
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (ss, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// A short, stable name for a socket error, used as an error-count key
/// (`connect_refused`, `read_reset`, ...).
pub fn err_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused".into(),
        Some(libc::ECONNRESET) => "reset".into(),
        Some(libc::EPIPE) => "broken_pipe".into(),
        Some(libc::EADDRNOTAVAIL) => "addr_not_avail".into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too_many_files".into(),
        Some(libc::ETIMEDOUT) => "timed_out".into(),
        _ => format!("{:?}", e.kind()).to_lowercase(),
    }
}
