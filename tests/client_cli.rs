//! The `wsecho-client` binary, run as a process against the real server
//! in-process on port 0 (and, for handshake failures, against a fake one
//! built on a std listener).

mod common;

use common::TestServer;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wsecho::proto::frame::{write_frame, FrameHeader, OpCode, RSV1};
use wsecho::proto::handshake::{accept_key, UpgradePolicy};
use wsecho::proto::mask::apply_mask;
use wsecho::proto::{Limits, Role};
use wsecho::server::Config;

const BIN: &str = env!("CARGO_BIN_EXE_wsecho-client");

/// The client with logging on at info, without colours.
fn client(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("RUST_LOG", "info")
        .env("RUST_LOG_STYLE", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Wait for `child` at most `limit` (killing it after that), collecting its
/// output.
fn finish(mut child: Child, limit: Duration) -> Finished {
    let start = Instant::now();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let st = child.wait().unwrap();
            panic!("wsecho-client still running after {limit:?} ({st}); stderr:\n{}", err_t.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    Finished { status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap(), elapsed }
}

fn run(args: &[&str], limit: Duration) -> Finished {
    finish(client(args).spawn().expect("spawn wsecho-client"), limit)
}

fn recv_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter_map(|l| l.split_once("recv: ").map(|(_, m)| m)).collect()
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn ticker_interval_and_count_get_three_echoes_then_close_1000_exit_0() {
    let server = TestServer::start();
    let r = run(&["--url", &server.url(), "--interval", "0.1", "--count", "3"], Duration::from_secs(10));
    assert!(r.status.success(), "{}\n{}", r.status, r.stderr);
    let recv = recv_lines(&r.stderr);
    assert_eq!(recv.len(), 3, "{}", r.stderr);
    for m in recv {
        // The current time, RFC 3339 UTC: 2024-02-29T23:59:59.123Z
        assert_eq!(m.len(), 24, "{m:?}");
        assert!(m.ends_with('Z') && m.as_bytes()[10] == b'T', "{m:?}");
    }
    assert!(r.stderr.contains("server closed: 1000"), "{}", r.stderr);
}

#[test]
fn addr_flag_connects_to_the_echo_path() {
    let server = TestServer::start();
    let addr = server.addr.to_string();
    let r = run(&["--addr", &addr, "--interval", "0.05", "--count", "1"], Duration::from_secs(10));
    assert!(r.status.success(), "{}\n{}", r.status, r.stderr);
    assert!(r.stderr.contains(&format!("connecting to ws://{addr}/echo")), "{}", r.stderr);
    assert_eq!(recv_lines(&r.stderr).len(), 1, "{}", r.stderr);
}

#[test]
fn message_flag_sends_that_text_instead_of_the_time() {
    let server = TestServer::start();
    let r = run(
        &["--url", &server.url(), "--interval", "0.05", "--count", "2", "--message", "hello, wsecho"],
        Duration::from_secs(10),
    );
    assert!(r.status.success(), "{}\n{}", r.status, r.stderr);
    assert_eq!(recv_lines(&r.stderr), ["hello, wsecho", "hello, wsecho"], "{}", r.stderr);
}

#[test]
fn stdin_mode_prints_each_reply_on_stdout_and_exits_0_after_eof() {
    let server = TestServer::start();
    let mut child = client(&["--stdin", "--url", &server.url()]).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hi\nthere\n").unwrap(); // dropped here: EOF
    let r = finish(child, Duration::from_secs(5));
    assert!(r.status.success(), "{}\n{}", r.status, r.stderr);
    assert_eq!(r.stdout, "hi\nthere\n", "{}", r.stderr);
    assert!(r.elapsed < Duration::from_secs(2), "{:?}", r.elapsed);
}

#[test]
fn sigint_sends_close_1000_and_exits_0_within_2s() {
    let server = TestServer::start();
    let mut child = client(&["--url", &server.url(), "--interval", "0.2"]).spawn().unwrap();
    // Read stderr line by line until the first echo, keeping everything.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let mut log = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("no recv: line ({e}); log so far:\n{log}"));
        log.push_str(&line);
        log.push('\n');
        if line.contains("recv: ") {
            break;
        }
    }
    let start = Instant::now();
    common::signal(child.id(), "INT");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(2) {
            let _ = child.kill();
            panic!("still running 2 s after SIGINT; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("interrupt"), "{log}");
    // The server echoes the code of the Close it received.
    assert!(log.contains("server closed: 1000"), "{log}");
}

#[test]
fn refused_connection_exits_1_naming_the_address() {
    let port = closed_port();
    let addr = format!("127.0.0.1:{port}");
    let r = run(&["--addr", &addr], Duration::from_secs(10));
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("connection refused to {addr}")), "{}", r.stderr);
}

#[test]
fn non_101_status_is_printed_with_its_body_and_exits_1() {
    let server = TestServer::start();
    let url = format!("ws://{}/nope", server.addr);
    let r = run(&["--url", &url], Duration::from_secs(10));
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("HTTP 404"), "{}", r.stderr);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
}

#[test]
fn wrong_accept_key_is_rejected_with_exit_1() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let head = common::read_head(&mut s);
        assert!(head.starts_with("GET /echo "), "{head}");
        // The RFC's sample accept, which does not match the client's random key.
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        );
        std::thread::sleep(Duration::from_secs(1));
    });
    let r = run(&["--addr", &addr.to_string()], Duration::from_secs(10));
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("Sec-WebSocket-Accept"), "{}", r.stderr);
}

#[test]
fn server_close_code_is_shown_and_exit_is_nonzero() {
    // Frames over 16 bytes are too big for this server: it closes with 1009.
    let server = TestServer::start_with(Config {
        limits: Limits { max_frame_payload: 16, ..Limits::default() },
        ..Config::default()
    });
    let long = "x".repeat(100);
    let r = run(&["--url", &server.url(), "--interval", "0.05", "--message", &long], Duration::from_secs(10));
    assert_eq!(r.status.code(), Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("server closed the connection: 1009 (message too big)"), "{}", r.stderr);
}

#[test]
fn subprotocol_offer_logs_the_servers_choice() {
    let server = TestServer::start_with(Config {
        policy: UpgradePolicy { subprotocols: vec!["chat".into()], ..UpgradePolicy::default() },
        ..Config::default()
    });
    let r = run(
        &[
            "--url",
            &server.url(),
            "--subprotocol",
            "superchat",
            "--subprotocol",
            "chat",
            "--count",
            "1",
            "--interval",
            "0.05",
        ],
        Duration::from_secs(10),
    );
    assert!(r.status.success(), "{}\n{}", r.status, r.stderr);
    assert!(r.stderr.contains("server chose subprotocol \"chat\""), "{}", r.stderr);
}

// RFC 6455 §4.1: the client checks the server's 101 before it sends
// anything. A fake server on 127.0.0.1:0 answers the real client's request
// with a crafted 101 whose accept key is right, so each test breaks one rule.

/// What the fake server saw of one connection.
struct Seen {
    /// The client's request head (the fake fuzzingserver keeps only the
    /// request target).
    request: String,
    /// Frames the client sent after the 101, unmasked: (opcode, payload).
    frames: Vec<(OpCode, Vec<u8>)>,
}

/// A header's value in a request head (first match, name case-insensitive).
fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Read one masked client frame: (fin, rsv, opcode, unmasked payload); None
/// at EOF or after 10 s of silence.
fn read_client_frame(s: &mut TcpStream) -> Option<(bool, u8, OpCode, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    let (h, _) = loop {
        if let Some(x) = FrameHeader::decode(&buf, Role::Server, RSV1, u64::MAX >> 1).expect("valid client frame") {
            break x;
        }
        s.read_exact(&mut b).ok()?;
        buf.push(b[0]);
    };
    let mut payload = vec![0u8; h.payload_len as usize];
    s.read_exact(&mut payload).ok()?;
    apply_mask(&mut payload, h.mask.expect("client frames are masked"), 0);
    Some((h.fin, h.rsv, h.opcode, payload))
}

/// Serve one connection: answer the upgrade with the head `answer` builds
/// from the correct `Sec-WebSocket-Accept` value, then echo every frame
/// unmasked (RSV bits kept, so compressed messages come back compressed)
/// until the client's Close, which is echoed before TCP is closed.
fn fake_server(answer: impl FnOnce(&str) -> String + Send + 'static) -> (SocketAddr, JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = common::read_head(&mut s);
        let key = header_value(&request, "Sec-WebSocket-Key").expect("request has a key");
        let accept = accept_key(key.as_bytes());
        let _ = s.write_all(answer(std::str::from_utf8(&accept).unwrap()).as_bytes());
        let mut frames = Vec::new();
        while let Some((fin, rsv, op, payload)) = read_client_frame(&mut s) {
            let mut out = Vec::new();
            write_frame(&mut out, fin, rsv, op, None, &payload);
            let _ = s.write_all(&out);
            frames.push((op, payload));
            if op == OpCode::Close {
                break;
            }
        }
        Seen { request, frames }
    });
    (addr, t)
}

/// A 101 with the given accept value and extra header lines.
fn head_101(upgrade: &str, connection: &str, accept: &str, extra: &str) -> String {
    format!("HTTP/1.1 101 Switching Protocols\r\n{upgrade}{connection}Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n")
}

const UPGRADE: &str = "Upgrade: websocket\r\n";
const CONNECTION: &str = "Connection: Upgrade\r\n";

/// Run the client against a fake server answering with `answer`, sending
/// one message: its result, and what the server saw.
fn against_fake(args: &[&str], answer: impl FnOnce(&str) -> String + Send + 'static) -> (Finished, Seen) {
    let (addr, seen) = fake_server(answer);
    let addr = addr.to_string();
    let mut all = vec!["--addr", &addr, "--count", "1", "--interval", "0.05", "--message", "hello"];
    all.extend_from_slice(args);
    let r = run(&all, Duration::from_secs(10));
    (r, seen.join().unwrap())
}

/// The client refused the 101: exit 1, `message` logged, nothing sent.
fn assert_refused(r: &Finished, seen: &Seen, message: &str) {
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains(message), "expected {message:?} in:\n{}", r.stderr);
    assert!(r.stderr.contains("(RFC 6455 §4.1)"), "{}", r.stderr);
    assert!(seen.frames.is_empty(), "client sent {:?} after a bad 101", seen.frames);
}

#[test]
fn rfc6455_4_1_good_101_from_the_fake_server_is_accepted_and_echoes_flow() {
    let (r, seen) = against_fake(&["--subprotocol", "chat", "--compress"], |accept| {
        let extra = "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n";
        head_101("upgrade: WebSocket\r\n", "Connection: keep-alive, upgrade\r\n", accept, extra)
    });
    assert!(r.status.success(), "{}\n{}", r.status, r.stderr);
    assert_eq!(recv_lines(&r.stderr), ["hello"], "{}", r.stderr);
    assert!(r.stderr.contains("server chose subprotocol \"chat\""), "{}", r.stderr);
    assert!(
        header_value(&seen.request, "Sec-WebSocket-Extensions").is_some_and(|v| v.starts_with("permessage-deflate"))
    );
    // The message went out compressed (RSV1 is only allowed once agreed).
    let ops: Vec<OpCode> = seen.frames.iter().map(|(op, _)| *op).collect();
    assert_eq!(ops, [OpCode::Text, OpCode::Close], "{}", r.stderr);
    assert_ne!(seen.frames[0].1, b"hello", "not compressed");
}

#[test]
fn rfc6455_4_1_101_without_upgrade_websocket_exits_1() {
    let (r, seen) = against_fake(&[], |accept| head_101("", CONNECTION, accept, ""));
    assert_refused(&r, &seen, "the 101 response has no \"Upgrade: websocket\" header");
    let (r, seen) = against_fake(&[], |accept| head_101("Upgrade: h2c\r\n", CONNECTION, accept, ""));
    assert_refused(&r, &seen, "the 101 response has \"Upgrade: h2c\", not websocket");
}

#[test]
fn rfc6455_4_1_101_without_connection_upgrade_exits_1() {
    let (r, seen) = against_fake(&[], |accept| head_101(UPGRADE, "", accept, ""));
    assert_refused(&r, &seen, "the 101 response has no \"Connection: upgrade\" header");
    let (r, seen) = against_fake(&[], |accept| head_101(UPGRADE, "Connection: close\r\n", accept, ""));
    assert_refused(&r, &seen, "the 101 response has \"Connection: close\", without the upgrade token");
}

#[test]
fn rfc6455_4_1_subprotocol_we_did_not_offer_exits_1() {
    let chat = |accept: &str| head_101(UPGRADE, CONNECTION, accept, "Sec-WebSocket-Protocol: chat\r\n");
    let (r, seen) = against_fake(&[], chat);
    assert!(header_value(&seen.request, "Sec-WebSocket-Protocol").is_none(), "{}", seen.request);
    assert_refused(&r, &seen, "the server chose subprotocol \"chat\", which we did not offer (we offered none)");
    let (r, seen) = against_fake(&["--subprotocol", "superchat"], chat);
    assert_refused(
        &r,
        &seen,
        "the server chose subprotocol \"chat\", which we did not offer (we offered \"superchat\")",
    );
}

#[test]
fn rfc6455_4_1_extension_we_did_not_offer_exits_1() {
    let pmd = |accept: &str| head_101(UPGRADE, CONNECTION, accept, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    let (r, seen) = against_fake(&[], pmd);
    assert!(header_value(&seen.request, "Sec-WebSocket-Extensions").is_none(), "{}", seen.request);
    assert_refused(
        &r,
        &seen,
        "the server accepted extension \"permessage-deflate\", which we did not offer (we offered none)",
    );
    let unknown = |accept: &str| head_101(UPGRADE, CONNECTION, accept, "Sec-WebSocket-Extensions: x-foo\r\n");
    let (r, seen) = against_fake(&["--compress"], unknown);
    assert_refused(
        &r,
        &seen,
        "the server accepted extension \"x-foo\", which we did not offer (we offered \"permessage-deflate\")",
    );
}

// `--autobahn`: the driver in wsecho::client::autobahn, against a fake
// fuzzingserver that speaks its URL protocol.

/// Serve `conns` connections as the Autobahn fuzzingserver would for a
/// two-case run: `/getCaseCount` sends "2"; each `/runCase` sends one text
/// and one binary message and expects them echoed; `/updateReports` just
/// closes. Returns, per connection, the request target (as `request`) and
/// the echoes.
fn fake_fuzzingserver(conns: usize) -> (SocketAddr, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut log = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let request = common::read_head(&mut s);
            let target = request.split(' ').nth(1).unwrap_or_default().to_string();
            let key = header_value(&request, "Sec-WebSocket-Key").expect("request has a key");
            let accept = accept_key(key.as_bytes());
            let mut out = head_101(UPGRADE, CONNECTION, std::str::from_utf8(&accept).unwrap(), "").into_bytes();
            let mut expect = 0;
            if target == "/getCaseCount" {
                write_frame(&mut out, true, 0, OpCode::Text, None, b"2");
            } else if target.starts_with("/runCase?") {
                write_frame(&mut out, true, 0, OpCode::Text, None, target.as_bytes());
                write_frame(&mut out, true, 0, OpCode::Binary, None, &[0, 1, 2, 255]);
                expect = 2;
            }
            s.write_all(&out).unwrap();
            let mut echoed = Vec::new();
            while echoed.len() < expect {
                let (_, _, op, payload) = read_client_frame(&mut s).expect("an echo");
                echoed.push((op, payload));
            }
            let mut close = Vec::new();
            write_frame(&mut close, true, 0, OpCode::Close, None, &1000u16.to_be_bytes());
            s.write_all(&close).unwrap();
            // The client answers our Close; then we close TCP first.
            while let Some((_, _, op, _)) = read_client_frame(&mut s) {
                if op == OpCode::Close {
                    break;
                }
            }
            log.push(Seen { request: target, frames: echoed });
        }
        log
    });
    (addr, t)
}

#[test]
fn autobahn_mode_runs_every_case_as_an_echo_peer_then_updates_reports() {
    let (addr, server) = fake_fuzzingserver(4);
    let base = format!("ws://{addr}");
    let r = run(&["--autobahn", &base, "--agent", "fake-agent"], Duration::from_secs(30));
    assert!(r.status.success(), "{}\n{}", r.status, r.stderr);
    let log = server.join().unwrap();
    let targets: Vec<&str> = log.iter().map(|seen| seen.request.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/getCaseCount",
            "/runCase?case=1&agent=fake-agent",
            "/runCase?case=2&agent=fake-agent",
            "/updateReports?agent=fake-agent"
        ]
    );
    for case in &log[1..3] {
        let sent = [(OpCode::Text, case.request.clone().into_bytes()), (OpCode::Binary, vec![0, 1, 2, 255])];
        assert_eq!(case.frames, sent);
    }
    assert!(r.stderr.contains("autobahn: 2 cases at"), "{}", r.stderr);
    assert!(r.stderr.contains("reports updated"), "{}", r.stderr);
}

#[test]
fn autobahn_mode_exits_1_when_the_fuzzingserver_is_not_there() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let r = run(&["--autobahn", &format!("ws://{addr}")], Duration::from_secs(10));
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("connection refused to {addr}")), "{}", r.stderr);
}
