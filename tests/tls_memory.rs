//! Issue 13: what an idle `wss://` connection costs the server, measured as
//! the growth of the `wsecho` child process's VmRSS. Ignored by default (it
//! opens thousands of loopback connections); run it with
//!
//! ```text
//! WSECHO_MEM_CONNS=10000 cargo test --release --test tls_memory -- --ignored --nocapture
//! ```
//!
//! Three figures, each per connection: idle upgraded `wss://` connections
//! after one echoed message each; connections stalled mid-handshake (a full
//! ClientHello sent, nothing after); and idle plain `ws://` ones for
//! comparison. Clients run in this process on 4 threads; after its echo a
//! client keeps only its TCP socket (its rustls state is dropped without a
//! close_notify), so the server sees an idle TLS peer.

mod common;

use common::{masked_frame, pid_rss_bytes, upgrade_request, Launch, ServerProc, HTTP, HTTPS};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsecho::client::tls::{client_config, Trust};
use wsecho::proto::frame::OpCode;

/// Connections per figure (env `WSECHO_MEM_CONNS`, default 2,000; at most
/// 15,000 so client and server stay under a 20,000 open-file limit).
fn conns() -> usize {
    std::env::var("WSECHO_MEM_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000).clamp(100, 15_000)
}

const THREADS: usize = 4;

/// `wsecho` with one reactor and generous timeouts (nothing may be closed
/// while we count).
fn server(extra: &[&str]) -> ServerProc {
    let marker = if extra.contains(&"--tls-self-signed") { HTTPS } else { HTTP };
    Launch::new(&[&["--threads", "1", "--handshake-timeout", "10m", "--idle-timeout", "0"][..], extra].concat())
        .env("RUST_LOG", "warn,wsecho=info")
        .wait_for(&[marker])
        .start()
}

/// Open `n` connections with `open` on [`THREADS`] threads; returns what
/// they keep open.
fn open_many<T: Send + 'static>(n: usize, open: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let open = Arc::new(open);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let open = open.clone();
            std::thread::spawn(move || (t..n).step_by(THREADS).map(|i| open(i)).collect::<Vec<T>>())
        })
        .collect();
    threads.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

/// RSS after the server has settled (two equal readings 200 ms apart).
fn settled_rss(pid: u32) -> u64 {
    let mut last = pid_rss_bytes(pid);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = pid_rss_bytes(pid);
        if now == last {
            return now;
        }
        last = now;
    }
}

fn wss_idle(addr: SocketAddr) -> TcpStream {
    let config = client_config(&Trust::Insecure).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(upgrade_request("dGhlIHNhbXBsZSBub25jZQ==").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut b).unwrap();
        got.push(b[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
    // The message only after the 101 (early data is refused, RFC 6455 §4.1).
    tls.write_all(&masked_frame(true, OpCode::Text, b"one message")).unwrap();
    let mut echo = [0u8; 13];
    tls.read_exact(&mut echo).unwrap();
    assert_eq!(&echo[2..], b"one message");
    let (_conn, sock) = tls.into_parts();
    sock
}

fn ws_idle(addr: SocketAddr) -> TcpStream {
    let mut s = common::upgraded_to(addr);
    s.write_all(&masked_frame(true, OpCode::Text, b"one message")).unwrap();
    assert_eq!(common::read_frame(&mut s).2, b"one message");
    s
}

fn mid_handshake(addr: SocketAddr) -> TcpStream {
    let config = client_config(&Trust::Insecure).unwrap();
    let mut conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&hello).unwrap();
    // Wait for the server's first flight, so it has done its part.
    let mut b = [0u8; 1];
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.read_exact(&mut b).unwrap();
    s
}

/// Per-connection RSS growth of `server` from `n` connections made by
/// `open`, after 100 warm-up ones (pools, slab pages, allocator arenas).
fn per_conn<T: Send + 'static>(what: &str, server: &ServerProc, open: fn(SocketAddr) -> T) -> f64 {
    let n = conns();
    let addr = server.addr;
    let warm = open_many(100, move |_| open(addr));
    let before = settled_rss(server.child.id());
    let start = Instant::now();
    let held = open_many(n, move |_| open(addr));
    let took = start.elapsed();
    let after = settled_rss(server.child.id());
    let each = (after as f64 - before as f64) / n as f64;
    println!(
        "{what}: {n} connections in {took:.1?}; server RSS {:.1} MiB -> {:.1} MiB: {each:.0} B per connection",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    drop(held);
    drop(warm);
    each
}

#[test]
#[ignore = "opens thousands of loopback connections; run by hand (see the file's doc)"]
fn issue_13_rss_per_idle_wss_connection() {
    let tls = server(&["--tls-self-signed"]);
    let idle = per_conn("idle wss:// (after one echo)", &tls, wss_idle);
    drop(tls);
    let tls = server(&["--tls-self-signed"]);
    let hs = per_conn("wss:// mid-handshake (ClientHello only)", &tls, mid_handshake);
    drop(tls);
    let plain = server(&[]);
    let ws = per_conn("idle ws:// (after one echo)", &plain, ws_idle);
    assert!(idle > ws, "a TLS connection cannot cost less than a plain one ({idle:.0} vs {ws:.0} B)");
    assert!(hs > 0.0);
}

/// The server's CPU time so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the
    // 14th field of the line, stime the 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ
}

/// Connect, handshake (TLS and upgrade), one echo, close: `n` times on one
/// thread; returns the server CPU per connection in microseconds.
fn cpu_per_conn(what: &str, server: &ServerProc, n: usize, mut one: impl FnMut()) -> f64 {
    for _ in 0..20 {
        one(); // warm-up
    }
    let before = cpu_seconds(server.child.id());
    let start = Instant::now();
    for _ in 0..n {
        one();
    }
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_seconds(server.child.id()) - before;
    let us = cpu * 1e6 / n as f64;
    println!("{what}: {n} connections in {:.1?}; server CPU {cpu:.2} s: {us:.0} µs per connection", start.elapsed());
    us
}

fn echo_once_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(upgrade_request("dGhlIHNhbXBsZSBub25jZQ==").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut b).unwrap();
        got.push(b[0]);
    }
    tls.write_all(&masked_frame(true, OpCode::Text, b"one message")).unwrap();
    let mut echo = [0u8; 13];
    tls.read_exact(&mut echo).unwrap();
    tls.write_all(&masked_frame(true, OpCode::Close, &1000u16.to_be_bytes())).unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
}

#[test]
#[ignore = "measures server CPU per handshake; run by hand (see the file's doc)"]
fn issue_13_cpu_per_tls_handshake_full_resumed_and_plain() {
    let n = (conns() / 4).max(100);
    let tls = server(&["--tls-self-signed"]);
    let addr = tls.addr;
    let full = cpu_per_conn("wss:// full handshake", &tls, n, || {
        echo_once_tls(addr, client_config(&Trust::Insecure).unwrap())
    });
    let shared = client_config(&Trust::Insecure).unwrap();
    let resumed = cpu_per_conn("wss:// resumed (TLS 1.3 ticket)", &tls, n, || echo_once_tls(addr, shared.clone()));
    drop(tls);
    let plain = server(&[]);
    let addr = plain.addr;
    let ws = cpu_per_conn("ws:// (no TLS)", &plain, n, || {
        let mut s = ws_idle(addr);
        s.write_all(&masked_frame(true, OpCode::Close, &1000u16.to_be_bytes())).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    assert!(full > ws, "a TLS handshake cannot cost less than none ({full:.0} vs {ws:.0} µs)");
    assert!(resumed < full * 1.5, "resumption should not cost more than a full handshake");
}
