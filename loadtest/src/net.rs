//! Client sockets: a nonblocking connect bound to a chosen loopback source
//! address (socket2, because std and mio cannot bind before connect), and
//! short names for socket errors.

use mio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// Open a nonblocking TCP socket bound to `src` (if any), connecting to `dst`.
pub fn connect(src: Option<IpAddr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let ty = Type::STREAM.nonblocking().cloexec();
    let sock = Socket::new(Domain::for_address(dst), ty, Some(Protocol::TCP))?;
    sock.set_nodelay(true)?;
    if let Some(src) = src {
        // Let connect() pick the port, so a source port is shared by every
        // 4-tuple that differs (socket2 has no setter for this option).
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd and a c_int option value of the size given.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    }
    match sock.connect(&SockAddr::from(dst)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
}

/// A short, stable name for a socket error, used as an error-count key
/// (`connect_refused`, `read_reset`, ...).
pub fn err_name(e: &io::Error) -> String {
    if let Some(name) = crate::tls::tls_err_name(e) {
        return name;
    }
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
