//! The `wsecho-client` binary, run as a process against the real server
//! in-process on port 0 (and, for handshake failures, against a fake one).

mod common;

use common::TestServer;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wsecho::proto::handshake::UpgradePolicy;
use wsecho::proto::Limits;
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
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
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
