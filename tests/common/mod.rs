//! Shared helpers: the real server in-process on port 0, raw sockets, and a
//! masked-frame builder.
//!
//! `WSECHO_TEST_THREADS=N` runs every suite's server as N reactors (a
//! `Runtime` on N `SO_REUSEPORT` listeners) instead of one `Server`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;
use wsecho::client::{Client, ClientOptions, Message};
use wsecho::proto::frame::{write_frame, FrameHeader, OpCode};
use wsecho::proto::Role;
use wsecho::server::{Config, ReactorStats, Runtime, RuntimeOptions, Server, ShutdownHandle};

/// A server running in this test process: one reactor in a thread, or a
/// `Runtime` of several.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ShutdownHandle,
    running: Option<Running>,
}

enum Running {
    /// `Server::run` in a thread.
    One(JoinHandle<std::io::Result<()>>),
    /// Reactor threads owned by a `Runtime`.
    Many(Runtime),
}

impl Running {
    fn join(self) -> std::io::Result<()> {
        match self {
            Running::One(t) => t.join().expect("reactor thread panicked"),
            Running::Many(rt) => rt.join(),
        }
    }
}

/// Reactors per test server: `WSECHO_TEST_THREADS`, default 1.
pub fn test_threads() -> usize {
    match std::env::var("WSECHO_TEST_THREADS") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("WSECHO_TEST_THREADS={v}: not a number")),
        Err(_) => 1,
    }
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(Config::default())
    }

    /// `test_threads()` reactors with `cfg`.
    pub fn start_with(cfg: Config) -> TestServer {
        match test_threads() {
            1 => TestServer::single(cfg),
            n => TestServer::reactors(n, cfg),
        }
    }

    /// One `Server` in a thread.
    pub fn single(cfg: Config) -> TestServer {
        let _ = wsecho::server::raise_fd_limit();
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), cfg).expect("bind");
        let addr = server.local_addr();
        let handle = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run());
        TestServer { addr, handle, running: Some(Running::One(thread)) }
    }

    /// `n` reactors on one port of 127.0.0.1 (a `Runtime`).
    pub fn reactors(n: usize, cfg: Config) -> TestServer {
        TestServer::reactors_on("127.0.0.1:0".parse().unwrap(), n, cfg)
    }

    /// `n` reactors on `addr` (a `Runtime`).
    pub fn reactors_on(addr: SocketAddr, n: usize, cfg: Config) -> TestServer {
        let _ = wsecho::server::raise_fd_limit();
        let rt = Runtime::start(addr, cfg, RuntimeOptions { threads: n, pin: false }).expect("start reactors");
        assert_eq!(rt.reactors(), n);
        TestServer { addr: rt.local_addr(), handle: rt.shutdown_handle(), running: Some(Running::Many(rt)) }
    }

    /// Each reactor's accepted/open counts (a `Runtime` only).
    pub fn stats(&self) -> Vec<ReactorStats> {
        match &self.running {
            Some(Running::Many(rt)) => rt.stats(),
            _ => panic!("per-reactor stats need TestServer::reactors"),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/echo", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.url(), &ClientOptions::default()).expect("connect")
    }

    /// A raw socket with a 10 s read timeout.
    pub fn raw(&self) -> TcpStream {
        raw_to(self.addr)
    }

    /// A raw socket that has completed the upgrade.
    pub fn upgraded(&self) -> TcpStream {
        upgraded_to(self.addr)
    }

    /// Ask the server to drain and wait until every reactor returned.
    pub fn stop(mut self) {
        self.handle.shutdown();
        self.running.take().unwrap().join().unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.handle.shutdown();
            let _ = r.join();
        }
    }
}

/// A raw socket to `addr` with a 10 s read timeout.
pub fn raw_to(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A raw socket to `addr` that has completed the upgrade.
pub fn upgraded_to(addr: SocketAddr) -> TcpStream {
    let mut s = raw_to(addr);
    s.write_all(upgrade_request("dGhlIHNhbXBsZSBub25jZQ==").as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

pub fn upgrade_request(key: &str) -> String {
    format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Read an HTTP response head byte by byte (so nothing after it is consumed).
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Read a whole HTTP response (the server closes after an error response).
pub fn read_to_end(s: &mut TcpStream) -> String {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    String::from_utf8_lossy(&v).into_owned()
}

pub fn masked_frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_frame(&mut v, fin, 0, op, Some([0x12, 0x34, 0x56, 0x78]), payload);
    v
}

/// Read one server frame: (fin, opcode, payload). Panics on a masked frame.
pub fn read_frame(s: &mut TcpStream) -> (bool, OpCode, Vec<u8>) {
    read_frame_rsv(s, 0)
}

/// [`read_frame`] allowing the RSV bits in `rsv` (0x40: permessage-deflate).
pub fn read_frame_rsv(s: &mut TcpStream, rsv: u8) -> (bool, OpCode, Vec<u8>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1];
    let (h, n) = loop {
        if let Some(x) = FrameHeader::decode(&buf, Role::Client, rsv, u64::MAX >> 1).expect("valid server frame") {
            break x;
        }
        s.read_exact(&mut tmp).expect("frame header");
        buf.push(tmp[0]);
    };
    assert_eq!(n, buf.len());
    let mut payload = vec![0u8; h.payload_len as usize];
    s.read_exact(&mut payload).expect("frame payload");
    (h.fin, h.opcode, payload)
}

/// Expect a Close frame next and return its code.
pub fn expect_close(s: &mut TcpStream) -> u16 {
    loop {
        let (_, op, p) = read_frame(s);
        if op == OpCode::Close {
            assert!(p.len() >= 2, "close without a code");
            return u16::from_be_bytes([p[0], p[1]]);
        }
    }
}

/// After a close, the server must close TCP: the next read gives EOF (or a
/// reset) rather than timing out.
pub fn expect_tcp_closed(s: &mut TcpStream) {
    expect_tcp_closed_within(s, Duration::from_secs(10));
}

/// As [`expect_tcp_closed`], waiting up to `limit` for the close.
pub fn expect_tcp_closed_within(s: &mut TcpStream, limit: Duration) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("server did not close TCP: {e}"),
        }
    }
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Another client still gets its echo.
pub fn served(server: &TestServer) {
    let mut c = server.client();
    c.send_text("still served").unwrap();
    assert_eq!(c.recv().unwrap(), Message::Text("still served".into()));
}

/// Close with RST instead of FIN (SO_LINGER with a zero timeout).
pub fn reset(s: std::net::TcpStream) {
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
    drop(s);
}

/// The plain listener's log line (`--addr`, or `--tls-addr`'s plain side).
pub const HTTP: &str = "listening on http://";
/// The TLS listener's log line (`--tls-self-signed`, `--tls-cert`).
pub const HTTPS: &str = "listening on https://";
/// The `--metrics-addr` listener's log line.
pub const METRICS: &str = "metrics on http://";

/// How to start a [`ServerProc`]: `wsecho --addr ADDR [--threads N] ARGS…`
/// with environment `ENV`, waiting for the log lines `markers`.
pub struct Launch {
    addr: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    markers: Vec<&'static str>,
}

impl Launch {
    /// On 127.0.0.1:0 with `RUST_LOG=info`, waiting for [`HTTP`].
    pub fn new(args: &[&str]) -> Launch {
        Launch {
            addr: "127.0.0.1:0".into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![("RUST_LOG".into(), "info".into())],
            markers: vec![HTTP],
        }
    }

    /// `--addr addr` instead of 127.0.0.1:0.
    pub fn on(mut self, addr: &str) -> Launch {
        self.addr = addr.into();
        self
    }

    /// Set `key=value` in the server's environment (replacing an earlier
    /// value, e.g. the default `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// Wait for a log line with each of `markers` (e.g. [`HTTPS`],
    /// [`METRICS`]), each followed by an address; the first one's is
    /// [`ServerProc::addr`], all are [`ServerProc::addr_of`].
    pub fn wait_for(mut self, markers: &[&'static str]) -> Launch {
        assert!(!markers.is_empty(), "wait for at least one address");
        self.markers = markers.to_vec();
        self
    }

    /// Start it and wait (up to 20 s) for every marker's address; stderr is
    /// read in a thread, so logging never blocks the server, and every line
    /// is kept ([`ServerProc::log`]). Without `--threads` in the arguments it
    /// runs `test_threads()` reactors (like `TestServer`), not one per CPU.
    pub fn start(self) -> ServerProc {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wsecho"));
        cmd.args(["--addr", &self.addr]);
        if !self.args.iter().any(|a| a == "--threads") {
            cmd.args(["--threads", &test_threads().to_string()]);
        }
        cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v))).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start wsecho");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (kept, markers) = (log.clone(), self.markers.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let found: Vec<_> = markers
                    .iter()
                    .filter_map(|&m| Some((m, line.split(m).nth(1)?)))
                    .map(|(m, rest)| (m, rest.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect()))
                    .collect();
                // Kept before the addresses are reported: what was logged up
                // to them is in `log` when `start` returns.
                kept.lock().unwrap().push(line);
                for (m, a) in found {
                    let _ = tx.send((m, a));
                }
            }
        });
        let mut addrs: Vec<(&'static str, SocketAddr)> = Vec::new();
        while let Some(&missing) = self.markers.iter().find(|m| !addrs.iter().any(|(k, _)| k == *m)) {
            let (m, a): (&str, String) = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|e| {
                panic!("wsecho {:?}: no {missing:?} line ({e}); its log: {:#?}", self.args, log.lock().unwrap())
            });
            let a = a.parse().unwrap_or_else(|e| panic!("{m}{a}: {e}"));
            if !addrs.iter().any(|(k, _)| *k == m) {
                addrs.push((m, a));
            }
        }
        let addr = addrs.iter().find(|(k, _)| *k == self.markers[0]).unwrap().1;
        ServerProc { child, addr, addrs, log }
    }
}

/// The real `wsecho` binary in a child process (for figures read from its
/// own `/proc/PID/status`, untouched by the test's clients, and for its
/// flags, log lines, signals and exit codes); killed on drop.
pub struct ServerProc {
    pub child: std::process::Child,
    /// The address on the first line waited for ([`HTTP`] unless
    /// [`Launch::wait_for`] said otherwise).
    pub addr: SocketAddr,
    addrs: Vec<(&'static str, SocketAddr)>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProc {
    /// Start `wsecho --addr 127.0.0.1:0 ARGS…` and wait for its plain
    /// listening line (see [`Launch`] for more).
    pub fn start(args: &[&str]) -> ServerProc {
        Launch::new(args).start()
    }

    /// `start` on a given `--addr` (e.g. one of several instances sharing a
    /// port on distinct 127.0.0.x addresses).
    pub fn start_on(addr: &str, args: &[&str]) -> ServerProc {
        Launch::new(args).on(addr).start()
    }

    /// The address logged after `marker` (one that [`Launch::wait_for`]
    /// waited for).
    pub fn addr_of(&self, marker: &str) -> SocketAddr {
        self.addrs.iter().find(|(k, _)| *k == marker).unwrap_or_else(|| panic!("{marker:?} was not waited for")).1
    }

    /// Every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Every stderr line so far, as one text.
    pub fn log_text(&self) -> String {
        self.log().join("\n")
    }

    /// Wait up to `limit` for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let end = std::time::Instant::now() + limit;
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the process to exit (panics after `limit`); its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let end = std::time::Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(std::time::Instant::now() < end, "wsecho did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident set size, in bytes.
    pub fn rss(&self) -> u64 {
        pid_rss_bytes(self.pid())
    }

    /// A raw socket with a 10 s read timeout.
    pub fn raw(&self) -> TcpStream {
        raw_to(self.addr)
    }

    /// A raw socket that has completed the upgrade.
    pub fn upgraded(&self) -> TcpStream {
        upgraded_to(self.addr)
    }

    /// The server still answers a fresh client.
    pub fn served(&self) {
        let mut c = Client::connect(&format!("ws://{}/echo", self.addr), &ClientOptions::default()).expect("connect");
        c.send_text("still served").unwrap();
        assert_eq!(c.recv().unwrap(), Message::Text("still served".into()));
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of process `pid`, in bytes.
pub fn pid_rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Read server frames until `want` payload bytes of data have arrived
/// (large frames come back re-fragmented); returns the payload bytes.
pub fn read_data(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        let (_, op, p) = read_frame(s);
        assert!(!op.is_control(), "unexpected {op:?} while reading data");
        got.extend_from_slice(&p);
    }
    assert_eq!(got.len(), want, "more data than sent");
    got
}

/// A client frame header (masked with `masked_frame`'s key) announcing
/// `len` payload bytes, without the payload.
pub fn masked_header(fin: bool, op: OpCode, len: u64) -> Vec<u8> {
    let h = FrameHeader { fin, rsv: 0, opcode: op, mask: Some([0x12, 0x34, 0x56, 0x78]), payload_len: len };
    let mut buf = [0u8; wsecho::proto::MAX_HEADER_LEN];
    let n = h.encode(&mut buf);
    buf[..n].to_vec()
}

/// `payload` masked with `masked_frame`'s key, as if it started at byte
/// `offset` of a frame's payload.
pub fn masked_part(payload: &[u8], offset: usize) -> Vec<u8> {
    let key = [0x12u8, 0x34, 0x56, 0x78];
    payload.iter().enumerate().map(|(i, b)| b ^ key[(offset + i) % 4]).collect()
}

/// Send signal `sig` (e.g. "TERM", "INT", "STOP") to process `pid`, with the
/// system's `kill`.
pub fn signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
    assert!(st.success(), "kill -{sig} {pid}: {st}");
}
