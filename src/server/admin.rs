//! The metrics listener (`--metrics-addr`): `GET /metrics` and
//! `GET /healthz` on their own port, served by one small blocking thread so
//! nothing a scraper or a health checker does can reach the reactors.
//!
//! One request per connection (`Connection: close`), each connection in a
//! short-lived thread of its own, at most [`MAX_CLIENTS`] at once (more are
//! closed unanswered), so a stuck client cannot hold up a health check. A
//! client gets at most [`REQUEST_TIMEOUT`] and [`MAX_REQUEST_HEAD`] bytes to
//! send its request head; a slower or larger one is dropped.

use super::metrics::{Metrics, CONTENT_TYPE};
use crate::proto::handshake::write_response;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes read of a request head; anything longer is answered 431.
/// A scraper's request is a few hundred bytes.
pub const MAX_REQUEST_HEAD: usize = 4096;

/// Time a client has to send its request head (and to take our answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Most connections served at once (a scraper and a few health checkers
/// need one or two each); past it new ones are closed at once. Each costs a
/// thread for at most [`REQUEST_TIMEOUT`] (twice: reading, then writing).
pub const MAX_CLIENTS: usize = 16;

/// Whether the process is serving or draining, as `/healthz` reports it.
/// Cheap to clone; any thread may read or set it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    draining: Arc<AtomicBool>,
}

impl Health {
    /// From now on `/healthz` answers 503 `draining` (a balancer stops
    /// sending new connections). There is no way back: a drain ends in exit.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The running metrics listener. Its thread serves for the life of the
/// process.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
}

impl AdminServer {
    /// Bind `addr` and serve `/metrics` (from `metrics`) and `/healthz`
    /// (from `health`) in a thread named `metrics`.
    pub fn start(addr: SocketAddr, metrics: Metrics, health: Health) -> io::Result<AdminServer> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let active = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new().name("metrics".into()).spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                            active.fetch_sub(1, Ordering::SeqCst);
                            log::debug!("metrics listener: {MAX_CLIENTS} clients already, closing a new one");
                            continue;
                        }
                        let (metrics, health, done) = (metrics.clone(), health.clone(), active.clone());
                        let spawned = std::thread::Builder::new().name("metrics-client".into()).spawn(move || {
                            if let Err(e) = serve(s, &metrics, &health) {
                                log::debug!("metrics listener: {e}");
                            }
                            done.fetch_sub(1, Ordering::SeqCst);
                        });
                        if let Err(e) = spawned {
                            log::warn!("metrics listener: cannot start a thread: {e}");
                            active.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    Err(e) => {
                        // EMFILE and the like: do not spin.
                        log::warn!("metrics listener: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
        Ok(AdminServer { local_addr })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Read one request head (bounded in size and time) and answer it.
fn serve(mut s: TcpStream, metrics: &Metrics, health: &Health) -> io::Result<()> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let mut resp = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(()), // closed before a full request
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end + 4);
            route(&head, metrics, health, &mut resp);
            break;
        }
        if head.len() > MAX_REQUEST_HEAD {
            write_response(&mut resp, 431, "text/plain; charset=utf-8", &[], b"request head too large\n");
            break;
        }
    }
    s.write_all(&resp)?;
    // Send FIN after the answer; what the client sent beyond its head is
    // ignored.
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// The answer to a complete request head.
fn route(head: &[u8], metrics: &Metrics, health: &Health, resp: &mut Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let (method, path) = match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => (req.method.unwrap_or(""), req.path.unwrap_or("")),
        _ => {
            write_response(resp, 400, "text/plain; charset=utf-8", &[], b"bad request\n");
            return;
        }
    };
    let path = path.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    let text = "text/plain; charset=utf-8";
    let (status, ctype, body): (u16, &str, Vec<u8>) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (200, CONTENT_TYPE, metrics.render().into_bytes()),
        ("GET" | "HEAD", "/healthz") if health.is_draining() => (503, text, b"draining\n".to_vec()),
        ("GET" | "HEAD", "/healthz") => (200, text, b"ok\n".to_vec()),
        _ => (404, text, b"not found\n".to_vec()),
    };
    write_response(resp, status, ctype, &[], &body);
    if head_only {
        // Keep the head (with its Content-Length), drop the body.
        resp.truncate(resp.len() - body.len());
    }
}
