//! Issue 13: `https://` and `wss://` with rustls. The real `wsecho` binary
//! in a child process (so the flags, their errors and exit codes are the
//! ones users see), and rustls clients over real sockets.

mod common;

use common::{masked_frame, upgrade_request, Launch, ServerProc, HTTP, HTTPS};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsecho::client::tls::{client_config, Trust};
use wsecho::proto::frame::{FrameHeader, OpCode};
use wsecho::proto::Role;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Start `wsecho --addr 127.0.0.1:0 --threads 1 ARGS…` (TLS flags among
/// them) and wait for its `https://` line, and with `--tls-addr` for the
/// plain listener's `http://` one too ([`ServerProc::addr_of`]).
fn tls_server(args: &[&str]) -> ServerProc {
    let markers: &[&str] = if args.contains(&"--tls-addr") { &[HTTPS, HTTP] } else { &[HTTPS] };
    Launch::new(&[&["--threads", "1"][..], args].concat()).wait_for(markers).start()
}

/// A certificate for localhost/127.0.0.1 with its key, as PEM files in a
/// fresh directory.
struct CertFiles {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl CertFiles {
    fn new(tag: &str) -> CertFiles {
        let dir = std::env::temp_dir().join(format!("wsecho-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        CertFiles { dir, cert, key, der: made.cert.der().clone() }
    }

    fn args(&self) -> Vec<String> {
        vec!["--tls-cert".into(), self.cert.display().to_string(), "--tls-key".into(), self.key.display().to_string()]
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn insecure() -> Arc<ClientConfig> {
    client_config(&Trust::Insecure).unwrap()
}

/// A TLS connection to `addr` for `name`, handshake completed.
fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> Result<Tls, std::io::Error> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// Upgrade over `tls` and check the 101.
fn upgrade(tls: &mut Tls) {
    tls.write_all(upgrade_request("dGhlIHNhbXBsZSBub25jZQ==").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut b).expect("response head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// Read one server frame: (opcode, payload).
fn read_frame(s: &mut impl Read) -> (OpCode, Vec<u8>) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    let (h, _) = loop {
        if let Some(x) = FrameHeader::decode(&buf, Role::Client, 0, u64::MAX >> 1).expect("valid server frame") {
            break x;
        }
        s.read_exact(&mut b).expect("frame header");
        buf.push(b[0]);
    };
    let mut payload = vec![0u8; h.payload_len as usize];
    s.read_exact(&mut payload).expect("frame payload");
    (h.opcode, payload)
}

/// Send `text` and expect it back.
fn echo(tls: &mut Tls, text: &str) {
    tls.write_all(&masked_frame(true, OpCode::Text, text.as_bytes())).unwrap();
    assert_eq!(read_frame(tls), (OpCode::Text, text.as_bytes().to_vec()));
}

/// A fresh wss client still gets its echo.
fn still_served(addr: SocketAddr) {
    let mut tls = tls_connect(addr, insecure(), "localhost").expect("TLS handshake");
    upgrade(&mut tls);
    echo(&mut tls, "still served");
}

#[test]
fn issue_13_wss_echo_with_self_signed_cert_and_logged_fingerprint() {
    let server = tls_server(&["--tls-self-signed"]);
    let mut tls = tls_connect(server.addr, insecure(), "localhost").expect("TLS handshake");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let leaf = tls.conn.peer_certificates().expect("a certificate")[0].clone();
    let fp = wsecho::server::tls::fingerprint(&leaf);
    assert!(server.log_text().contains(&format!("SHA-256 fingerprint {fp}")), "{}", server.log_text());
    upgrade(&mut tls);
    echo(&mut tls, "hello over wss");
    // A message larger than one TLS record (16 KiB) comes back whole.
    let big: String = "x".repeat(100_000);
    tls.write_all(&masked_frame(true, OpCode::Text, big.as_bytes())).unwrap();
    let mut got = Vec::new();
    while got.len() < big.len() {
        let (op, p) = read_frame(&mut tls);
        assert!(matches!(op, OpCode::Text | OpCode::Continuation), "{op:?}");
        got.extend_from_slice(&p);
    }
    assert_eq!(got, big.as_bytes());
}

#[test]
fn issue_13_records_straddling_small_reads_echo_whole() {
    // The smallest read buffer (raised to two records for TLS): a 1 MiB
    // message arrives as 64 records, and reads end in the middle of one.
    let server = tls_server(&["--tls-self-signed", "--read-buffer", "4096", "--max-held-frame", "0"]);
    assert!(server.log_text().contains("read buffer raised"), "{}", server.log_text());
    let mut tls = tls_connect(server.addr, insecure(), "localhost").unwrap();
    upgrade(&mut tls);
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    tls.write_all(&masked_frame(true, OpCode::Binary, &big)).unwrap();
    let mut got = Vec::new();
    while got.len() < big.len() {
        let (op, p) = read_frame(&mut tls);
        assert!(matches!(op, OpCode::Binary | OpCode::Continuation), "{op:?}");
        got.extend_from_slice(&p);
    }
    assert!(got == big, "echo differs");
    echo(&mut tls, "and then a small one");
}

#[test]
fn issue_13_wss_echo_with_cert_files_verified_tls13_and_tls12() {
    let files = CertFiles::new("pair");
    let args = files.args();
    let server = tls_server(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(files.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let mut tls = tls_connect(server.addr, Arc::new(config), "localhost").expect("verified TLS handshake");
        assert_eq!(tls.conn.protocol_version(), Some(version.version));
        upgrade(&mut tls);
        echo(&mut tls, &format!("hello over {:?}", version.version));
    }
}

#[test]
fn issue_13_https_page_and_plain_listener_side_by_side() {
    let server = tls_server(&["--tls-self-signed", "--tls-addr", "127.0.0.1:0"]);
    let plain = server.addr_of(HTTP);
    assert_ne!(plain, server.addr);
    let mut tls = tls_connect(server.addr, insecure(), "localhost").unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut page = Vec::new();
    // The server closes after the page, with close_notify: a clean EOF.
    tls.read_to_end(&mut page).expect("page, then close_notify");
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<html"), "{page}");
    // The plain listener still speaks plain ws://.
    let mut s = common::upgraded_to(plain);
    s.write_all(&masked_frame(true, OpCode::Text, b"plain")).unwrap();
    assert_eq!(common::read_frame(&mut s).2, b"plain");
}

/// Start the binary with `args`, expect exit 2 within 10 s and return stderr.
fn expect_usage_error(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wsecho"))
        .args(["--addr", "127.0.0.1:0", "--threads", "1"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run wsecho");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

#[test]
fn issue_13_bad_certificate_files_exit_2_with_one_clear_line() {
    let files = CertFiles::new("bad");
    let other = CertFiles::new("other");
    let cert = files.cert.to_str().unwrap();
    let key = files.key.to_str().unwrap();
    let missing = files.dir.join("missing.pem");
    let garbage = files.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let (missing, garbage) = (missing.to_str().unwrap(), garbage.to_str().unwrap());
    let cases: [(&[&str], &[&str]); 5] = [
        (&["--tls-cert", missing, "--tls-key", key], &["cannot read --tls-cert", missing]),
        (&["--tls-cert", cert, "--tls-key", missing], &["cannot read --tls-key", missing]),
        (&["--tls-cert", garbage, "--tls-key", key], &["--tls-cert", garbage, "no CERTIFICATE"]),
        (&["--tls-cert", cert, "--tls-key", garbage], &["--tls-key", garbage, "no usable private key"]),
        (&["--tls-cert", cert, "--tls-key", other.key.to_str().unwrap()], &["does not fit --tls-cert", cert]),
    ];
    for (args, want) in cases {
        let stderr = expect_usage_error(args);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        for w in want {
            assert!(stderr.contains(w), "{args:?}: {stderr:?} lacks {w:?}");
        }
    }
    // A key without a certificate is a usage error too.
    expect_usage_error(&["--tls-key", key]);
    let stderr = expect_usage_error(&["--tls-addr", "127.0.0.1:0"]);
    assert!(stderr.contains("--tls-addr needs"), "{stderr}");
}

#[test]
fn issue_13_certificate_flags_from_environment() {
    let files = CertFiles::new("env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsecho"))
        .args(["--addr", "127.0.0.1:0", "--threads", "1"])
        .env("WSECHO_TLS_CERT", &files.cert)
        .env("WSECHO_TLS_KEY", files.dir.join("missing.pem"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(2), "{err}");
    assert!(err.contains("cannot read --tls-key"), "{err}");
}

#[test]
fn issue_13_plain_http_to_tls_port_is_closed_cleanly_others_unaffected() {
    let server = tls_server(&["--tls-self-signed"]);
    let mut open = tls_connect(server.addr, insecure(), "localhost").unwrap();
    upgrade(&mut open);
    let mut s = common::raw_to(server.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    // At most a TLS alert record comes back, then a clean EOF (not a reset,
    // not a timeout).
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("clean close after an alert");
    assert!(got.len() <= 7 && got.first().map_or(true, |&t| t == 21), "not an alert: {got:?}");
    // Garbage bytes as well.
    let mut g = common::raw_to(server.addr);
    g.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0]).unwrap();
    common::expect_tcp_closed(&mut g);
    echo(&mut open, "undisturbed");
    still_served(server.addr);
}

#[test]
fn issue_13_stalled_tls_handshake_is_closed_by_handshake_timeout() {
    let server = tls_server(&["--tls-self-signed", "--handshake-timeout", "500ms"]);
    // Half a ClientHello.
    let name = ServerName::try_from("localhost").unwrap();
    let mut hello = ClientConnection::new(insecure(), name).unwrap();
    let mut bytes = Vec::new();
    hello.write_tls(&mut bytes).unwrap();
    let mut half = common::raw_to(server.addr);
    half.write_all(&bytes[..bytes.len() / 2]).unwrap();
    // And nothing at all after the TCP connect.
    let mut silent = common::raw_to(server.addr);
    let start = Instant::now();
    common::expect_tcp_closed_within(&mut half, Duration::from_secs(5));
    common::expect_tcp_closed_within(&mut silent, Duration::from_secs(5));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400), "closed after {took:?}, before the deadline");
    // The TLS handshake counts too: a client that completes TLS but sends no
    // upgrade request is closed by the same deadline.
    let mut quiet = tls_connect(server.addr, insecure(), "localhost").unwrap();
    let mut b = [0u8; 16];
    let start = Instant::now();
    let r = quiet.read(&mut b);
    assert!(matches!(r, Ok(0)), "expected close_notify then EOF, got {r:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    still_served(server.addr);
}

#[test]
fn issue_13_close_notify_precedes_eof_on_server_initiated_close() {
    let server = tls_server(&["--tls-self-signed"]);
    let mut tls = tls_connect(server.addr, insecure(), "localhost").unwrap();
    upgrade(&mut tls);
    // An unmasked frame: the server closes 1002 and then the connection.
    let mut frame = Vec::new();
    wsecho::proto::frame::write_frame(&mut frame, true, 0, OpCode::Text, None, b"unmasked");
    tls.write_all(&frame).unwrap();
    let (op, payload) = read_frame(&mut tls);
    assert_eq!(op, OpCode::Close);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    // rustls's reader says Ok(0) only after a close_notify; a bare TCP EOF
    // would be UnexpectedEof.
    let mut rest = Vec::new();
    let r = tls.read_to_end(&mut rest);
    assert!(r.is_ok(), "no close_notify before EOF: {r:?}");
    assert!(tls.conn.is_handshaking() || rest.is_empty());
}

/// Run `wsecho-client ARGS…` to completion (it stops by itself after
/// `--count`); returns (exit code, stderr).
fn run_client(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsecho-client"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run wsecho-client");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn issue_13_client_wss_with_ca_file_and_refusal_without_it() {
    let files = CertFiles::new("client");
    let args = files.args();
    let server = tls_server(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let ca = files.cert.to_str().unwrap();
    let once = ["--count", "1", "--interval", "0.05", "--message", "over wss"];
    let (code, err) = run_client(&[&["--url", &url, "--ca", ca][..], &once].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("recv: over wss"), "{err}");
    // The web PKI does not know a self-made certificate.
    let (code, err) = run_client(&[&["--url", &url][..], &once].concat());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not trusted") && err.contains("--ca"), "{err}");
}

#[test]
fn issue_13_client_insecure_accepts_self_signed_with_a_warning() {
    let server = tls_server(&["--tls-self-signed"]);
    let url = format!("wss://127.0.0.1:{}/echo", server.addr.port());
    let (code, err) =
        run_client(&["--url", &url, "--insecure", "--count", "2", "--interval", "0.05", "--message", "hi"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("--insecure") && err.contains("not verified"), "{err}");
    assert_eq!(err.matches("recv: hi").count(), 2, "{err}");
}

/// A sample of the metrics text at `metrics` (0 when absent).
fn sample(metrics: SocketAddr, key: &str) -> f64 {
    let mut s = common::raw_to(metrics);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let text = common::read_to_end(&mut s);
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(key));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0.0)
}

#[test]
fn issue_13_tls_write_path_stays_within_pool_cap_plus_a_record_per_connection_with_never_reading_wss_clients() {
    const MIB: u64 = 1 << 20;
    const HOGS: u64 = 8;
    const POOL_CAP: u64 = MIB;
    // Per connection outside the pool, from src/server/tls.rs: rustls's
    // state (3.7 KiB idle, tests/tls_memory.rs) plus at most one record in
    // each direction held by the stream (held_in, held_out, pending_plain:
    // 3 × (16 KiB + 2 KiB)); rounded up to 64 KiB.
    const PER_CONN: u64 = 64 << 10;
    // The allocator's and the reactor's slack (read buffer, record scratch,
    // spare pool chunks), as the plain-TCP test allows (8 MiB for 1 MiB).
    const SLACK: u64 = 6 * MIB;
    let cap = POOL_CAP.to_string();
    let server = Launch::new(&[
        "--threads",
        "1",
        "--tls-self-signed",
        "--metrics-addr",
        "127.0.0.1:0",
        "--max-pool-bytes",
        &cap,
        "--backpressure-timeout",
        "2",
        "--close-timeout",
        "1",
    ])
    .wait_for(&[HTTPS, common::METRICS])
    .start();
    let (addr, metrics) = (server.addr, server.addr_of(common::METRICS));
    still_served(addr);
    let before = server.rss();
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| {
            let mut tls = tls_connect(addr, insecure(), "localhost").unwrap();
            upgrade(&mut tls);
            tls.sock.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
            std::thread::spawn(move || {
                // One 16 MiB frame, never reading the echo.
                let total = 16usize << 20;
                let chunk = common::masked_part(&vec![b'x'; 64 * 1024], 0);
                let mut sent = 0;
                if tls.write_all(&common::masked_header(true, OpCode::Binary, total as u64)).is_ok() {
                    while sent < total && tls.write_all(&chunk).is_ok() {
                        sent += chunk.len();
                    }
                }
                (tls, sent)
            })
        })
        .collect();
    // Meanwhile a well-behaved wss client is echoed, and RSS is sampled.
    let mut good = tls_connect(addr, insecure(), "localhost").unwrap();
    upgrade(&mut good);
    let (mut peak, mut echoes, mut slowest) = (0, 0, Duration::ZERO);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        peak = peak.max(server.rss());
        let t = Instant::now();
        echo(&mut good, "well-behaved");
        slowest = slowest.max(t.elapsed());
        echoes += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let results: Vec<(Tls, usize)> = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    let growth = peak.saturating_sub(before);
    let bound = POOL_CAP + HOGS * PER_CONN + SLACK;
    let sent: Vec<usize> = results.iter().map(|r| r.1).collect();
    println!(
        "peak RSS growth with {HOGS} never-reading wss clients, pool cap {POOL_CAP}: {growth} bytes (bound {bound}); \
         server RSS {before} -> peak {peak}; sent {sent:?}; {echoes} echoes to a reading client meanwhile, slowest {slowest:?}"
    );
    // Echoed while the hogs were still open (before --backpressure-timeout).
    assert!(echoes >= 10 && slowest < Duration::from_secs(1), "{echoes} echoes, slowest {slowest:?}");
    for s in &sent {
        assert!(*s < 16 << 20, "server read a whole 16 MiB frame from a client that never reads");
    }
    assert!(growth <= bound, "RSS grew by {growth} bytes, over {bound}");
    // The hogs are paused, closed with 1008 (--backpressure-timeout), then
    // dropped (--close-timeout): their sockets reach EOF.
    let waiters: Vec<_> = results
        .into_iter()
        .map(|(tls, _)| {
            let mut sock = tls.sock;
            std::thread::spawn(move || common::expect_tcp_closed_within(&mut sock, Duration::from_secs(60)))
        })
        .collect();
    for w in waiters {
        w.join().unwrap();
    }
    assert!(sample(metrics, "wsecho_backpressure_pauses_total") >= HOGS as f64);
    assert_eq!(sample(metrics, "wsecho_close_frames_sent_total{code=\"1008\"}"), HOGS as f64);
    echo(&mut good, "still echoed");
    still_served(addr);
}
