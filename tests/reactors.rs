//! Issue 11, one reactor per core and many processes on one port: several
//! reactors in one process (a `Runtime`, in-process), and the `wsecho`
//! binary run as real processes (`--threads`, `--reuse-port`, `--backlog`,
//! SIGTERM, the log lines).
mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wsecho::client::{Client, ClientOptions, Message};
use wsecho::server::Config;

/// Poll `f` until it holds, for at most 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn echo_once(c: &mut Client, text: &str) {
    c.send_text(text).unwrap();
    assert_eq!(c.recv().unwrap(), Message::Text(text.into()));
}

// ---- several reactors in this process ----------------------------------

#[test]
fn two_reactors_both_accept_connections() {
    let server = TestServer::reactors(2, Config::default());
    // The kernel hashes each connection's 4-tuple onto a listener: 64
    // connections all landing on one of two has odds of 2^-63.
    let mut clients: Vec<Client> = (0..64).map(|_| server.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        echo_once(c, &format!("hello {i}"));
    }
    let stats = server.stats();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats.iter().map(|s| s.accepted).sum::<u64>(), 64, "{stats:?}");
    assert_eq!(stats.iter().map(|s| s.open).sum::<usize>(), 64, "{stats:?}");
    assert!(stats.iter().all(|s| s.accepted > 0), "one reactor got every connection: {stats:?}");
    drop(clients);
    eventually("every connection dropped", || server.stats().iter().all(|s| s.open == 0));
    server.stop();
}

#[test]
fn max_connections_holds_across_reactors() {
    let max = 6;
    let server = TestServer::reactors(2, Config { max_connections: max, ..Config::default() });
    let mut held: Vec<Client> = (0..max).map(|_| server.client()).collect();
    let stats = server.stats();
    assert_eq!(stats.iter().map(|s| s.open).sum::<usize>(), max, "{stats:?}");
    assert!(stats.iter().all(|s| s.open < max), "all held connections on one reactor: {stats:?}");
    // Every reactor is at the process-wide limit, whichever the kernel picks.
    for _ in 0..16 {
        let mut extra = server.raw();
        let resp = read_to_end(&mut extra);
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    }
    for c in held.iter_mut() {
        echo_once(c, "still here");
    }
    // One slot frees up: exactly one new connection is served again.
    held.pop();
    eventually("a slot freed", || server.stats().iter().map(|s| s.open).sum::<usize>() == max - 1);
    let mut again = server.client();
    echo_once(&mut again, "in");
    let mut extra = server.raw();
    assert!(read_to_end(&mut extra).starts_with("HTTP/1.1 503"));
    server.stop();
}

#[test]
fn shutdown_drains_every_reactor_with_1001() {
    let server = TestServer::reactors(2, Config::default());
    let mut clients: Vec<Client> = (0..32).map(|_| server.client()).collect();
    for c in clients.iter_mut() {
        echo_once(c, "before");
    }
    let stats = server.stats();
    assert!(stats.iter().all(|s| s.open > 0), "not every reactor holds a connection: {stats:?}");
    server.handle.shutdown();
    for c in clients.iter_mut() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match c.recv().unwrap() {
            Message::Close(Some((code, _))) => assert_eq!(code, 1001),
            other => panic!("expected Close 1001, got {other:?}"),
        }
        // recv answered the Close; the server closes TCP.
        assert!(c.wait_for_eof(), "server did not close TCP after the close handshake");
    }
    server.stop(); // every reactor returned Ok
}

#[test]
fn draining_reactors_close_their_listeners_at_once() {
    // One connection per reactor that never answers our Close keeps both
    // reactors draining for the whole grace period; meanwhile the listeners
    // must be gone (a new client is refused at once, not queued to be reset
    // when the process ends).
    // On an address of its own: once our listeners are closed, a server of
    // another test (all on 127.0.0.1) may be given the freed port.
    let cfg = Config { shutdown_grace: Duration::from_secs(3), ..Config::default() };
    let server = TestServer::reactors_on("127.0.0.3:0".parse().unwrap(), 2, cfg);
    let mut silent = Vec::new();
    while server.stats().iter().any(|s| s.open == 0) {
        assert!(silent.len() < 64, "connections never reached both reactors");
        silent.push(server.upgraded());
        let n = silent.len();
        eventually("accepted", || server.stats().iter().map(|s| s.open).sum::<usize>() == n);
    }
    server.handle.shutdown();
    for s in silent.iter_mut() {
        assert_eq!(expect_close(s), 1001);
    }
    let refused = TcpStream::connect(server.addr).map(drop);
    assert_eq!(
        refused.as_ref().map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "a draining server still takes connections: {refused:?}"
    );
    assert!(server.stats().iter().all(|s| s.open > 0), "the silent peers should still be draining");
    server.stop();
}

// ---- the wsecho binary --------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_wsecho");

/// A `wsecho` process whose stderr lines arrive on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    log: Vec<String>,
    addr: SocketAddr,
}

impl Proc {
    /// Start `wsecho --addr 127.0.0.1:0 ARGS` (or the `--addr` in ARGS) at
    /// log level `level` and wait for its "listening on" line.
    fn start(args: &[&str], level: &str) -> Proc {
        let mut cmd = Command::new(BIN);
        if !args.contains(&"--addr") {
            cmd.args(["--addr", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", level)
            .env("RUST_LOG_STYLE", "never")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsecho");
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Proc { child, lines, log: Vec::new(), addr: "0.0.0.0:0".parse().unwrap() };
        let line = p.wait_line("listening on http://");
        let rest = &line[line.find("http://").unwrap() + 7..];
        p.addr = rest[..rest.find(' ').unwrap()].parse().unwrap();
        p
    }

    /// The next line containing `needle` (within 10 s).
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no line with {needle:?} ({e}); log:\n{}", self.log.join("\n")),
            }
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/echo", self.addr)
    }

    fn client(&self) -> Client {
        Client::connect(&self.url(), &ClientOptions::default()).expect("connect")
    }

    /// SIGTERM, then the exit status (within 10 s) and the whole log.
    fn terminate(self) -> (std::process::ExitStatus, Vec<String>) {
        signal(self.child.id(), "TERM");
        self.wait_exit()
    }

    /// The exit status (within 10 s; a signal was sent already) and the
    /// whole log.
    fn wait_exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("wsecho still running 10 s after SIGTERM; log:\n{}", self.log.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pipe closes when the process is gone: collect the rest.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.log.push(line);
        }
        (status, std::mem::take(&mut self.log))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_drains_every_reactor_of_the_binary_and_exits_0() {
    let p = Proc::start(&["--threads", "2"], "debug");
    let mut clients: Vec<Client> = (0..32).map(|_| p.client()).collect();
    for c in clients.iter_mut() {
        echo_once(c, "hi");
    }
    signal(p.child.id(), "TERM");
    for c in clients.iter_mut() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match c.recv().unwrap() {
            Message::Close(Some((code, _))) => assert_eq!(code, 1001),
            other => panic!("expected Close 1001, got {other:?}"),
        }
        assert!(c.wait_for_eof());
    }
    let (status, log) = p.wait_exit();
    let log = log.join("\n");
    assert!(status.success(), "{status}\n{log}");
    // Per-connection lines carry the reactor's number, and both reactors
    // served and drained.
    for r in ["r0", "r1"] {
        assert!(log.contains(&format!("] {r} conn ")), "no connection lines from {r}:\n{log}");
        assert!(log.contains(&format!("] {r} drained; 0 connections left")), "{r} did not drain:\n{log}");
    }
    let accepted = log.lines().filter(|l| l.contains(" conn ") && l.contains(": accepted from ")).count();
    assert_eq!(accepted, 32, "{log}");
}

#[test]
fn two_processes_with_reuse_port_share_the_port_and_both_serve() {
    let a = Proc::start(&["--threads", "1", "--reuse-port"], "debug");
    let port_addr = a.addr.to_string();
    // Without --reuse-port a second process cannot bind the port.
    let lone = Command::new(BIN)
        .args(["--addr", &port_addr, "--threads", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(lone.status.code(), Some(1), "{}", String::from_utf8_lossy(&lone.stderr));
    assert!(String::from_utf8_lossy(&lone.stderr).contains("cannot listen"));

    let b = Proc::start(&["--addr", &port_addr, "--threads", "1", "--reuse-port"], "debug");
    assert_eq!(b.addr, a.addr);
    let mut clients: Vec<Client> = (0..64).map(|_| a.client()).collect();
    for c in clients.iter_mut() {
        echo_once(c, "which one?");
    }
    for c in clients.iter_mut() {
        c.close(1000, "").unwrap();
        assert!(matches!(c.recv().unwrap(), Message::Close(Some((1000, _)))));
    }
    let (sa, la) = a.terminate();
    let (sb, lb) = b.terminate();
    assert!(sa.success() && sb.success());
    let count = |log: &[String]| log.iter().filter(|l| l.contains(": accepted from ")).count();
    let (na, nb) = (count(&la), count(&lb));
    assert_eq!(na + nb, 64, "A:\n{}\nB:\n{}", la.join("\n"), lb.join("\n"));
    assert!(na > 0 && nb > 0, "one process got every connection: A {na}, B {nb}");
}

#[test]
fn backlog_flag_sets_the_listen_queue_length() {
    let backlog = 5;
    let p = Proc::start(&["--threads", "1", "--backlog", &backlog.to_string()], "info");
    let line = p.log.last().unwrap().clone();
    assert!(line.contains(&format!("backlog {backlog} (asked {backlog})")), "{line}");
    // `ss` shows a listener's queue length as Send-Q (where iproute2 is
    // installed; the connect count below checks the same without it).
    if let Ok(out) = Command::new("ss").args(["-ltnH", &format!("sport = :{}", p.addr.port())]).output() {
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let send_q: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
        assert_eq!(send_q, [backlog.to_string()], "ss -ltn:\n{out}");
    }
    // With the server stopped (SIGSTOP), the kernel completes connections
    // into the accept queue until it is full — Linux admits backlog + 1 —
    // and then drops SYNs, so the next connect times out.
    signal(p.child.id(), "STOP");
    let pid = p.child.id();
    eventually("every thread of the server stopped", || all_threads_stopped(pid));
    let mut queued = Vec::new();
    let mut timed_out = 0;
    for _ in 0..backlog + 4 {
        match TcpStream::connect_timeout(&p.addr, Duration::from_millis(300)) {
            Ok(s) => queued.push(s),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                timed_out += 1;
            }
        }
    }
    signal(p.child.id(), "CONT");
    assert_eq!(queued.len(), backlog + 1, "connections that got into the accept queue");
    assert_eq!(timed_out, 3);
    // The queued ones are served once the server runs again.
    for s in queued.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(upgrade_request("dGhlIHNhbXBsZSBub25jZQ==").as_bytes()).unwrap();
        let head = read_head(s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    }
    drop(queued);
    let (status, log) = p.terminate();
    assert!(status.success(), "{}", log.join("\n"));
}

/// Whether every thread of process `pid` is in state T (stopped).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

#[test]
fn threads_default_to_the_cpus_the_process_may_use() {
    let n = std::thread::available_parallelism().unwrap().get();
    let p = Proc::start(&[], "info");
    let line = p.log.last().unwrap().clone();
    let want = if n == 1 { "1 reactor,".to_string() } else { format!("{n} reactors,") };
    assert!(line.contains(&want), "{line}");
    drop(p);
    // taskset narrows the allowed CPUs: one CPU, one reactor.
    if Command::new("taskset").arg("--version").output().is_ok() {
        let mut p1 = Command::new("taskset")
            .args(["-c", "0", BIN, "--addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("RUST_LOG_STYLE", "never")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(p1.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "taskset'd wsecho ended early");
        }
        let _ = p1.kill();
        let _ = p1.wait();
        assert!(line.contains(" 1 reactor,"), "{line}");
    }
}

#[test]
fn default_log_level_writes_no_line_per_connection_only_summaries() {
    let p = Proc::start(&["--threads", "2"], "info");
    let mut clients: Vec<Client> = (0..20).map(|_| p.client()).collect();
    for c in clients.iter_mut() {
        echo_once(c, "0123456789");
    }
    for c in clients.iter_mut() {
        c.close(1000, "").unwrap();
        assert!(matches!(c.recv().unwrap(), Message::Close(Some((1000, _)))));
    }
    let (status, log) = p.terminate();
    let text = log.join("\n");
    assert!(status.success(), "{text}");
    assert!(!text.contains(" conn "), "per-connection lines at info:\n{text}");
    // Each reactor's final summary (written at exit) adds up to what we did.
    let summaries: Vec<&String> = log.iter().filter(|l| l.contains(" open, ") && l.contains(" accepted")).collect();
    let field = |l: &str, before: &str| -> u64 {
        let head = &l[..l.find(before).unwrap_or_else(|| panic!("{before:?} in {l}"))];
        head.rsplit(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let accepted: u64 = summaries.iter().map(|l| field(l, " accepted")).sum();
    let messages: u64 = summaries.iter().map(|l| field(l, " messages")).sum();
    let closed: u64 = summaries.iter().map(|l| field(l, " closed")).sum();
    assert_eq!((accepted, messages, closed), (20, 20, 20), "{text}");
    assert!(summaries.iter().all(|l| l.contains("close handshake done")), "{text}");
}
