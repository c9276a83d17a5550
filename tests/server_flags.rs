//! The `wsecho` binary's flags, run as a real process (issues 10 and 12).
//!
//! Issue 10: `--close-timeout inf` panicked at start and `--close-timeout
//! 1e19` at the first close (exit 101). Every bad value must instead exit 2
//! with one line naming the flag and its allowed range, and no panic.
//! Durations take humantime (`5s`, `250ms`) or plain seconds (`0.5`).
//! Issue 12: every flag can also be set through `WSECHO_<FLAG>`; the command
//! line wins.
//!
//! The allowed ranges are not repeated here: each test reads a flag's range
//! from the binary's own error message and checks that exactly that range is
//! enforced at both ends.

mod common;

use common::{expect_close, expect_tcp_closed, masked_frame, read_frame, read_head, read_to_end, upgrade_request};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wsecho::proto::frame::OpCode;

const BIN: &str = env!("CARGO_BIN_EXE_wsecho");

/// How long a process gets to exit with a usage error or to start listening.
const PATIENCE: Duration = Duration::from_secs(20);

/// Duration flags; `true` where 0 is a valid value (keepalive off, do not
/// wait).
const DURATION_FLAGS: [(&str, bool); 6] = [
    ("--handshake-timeout", false),
    ("--close-timeout", false),
    ("--shutdown-grace", true),
    ("--idle-timeout", true),
    ("--ping-timeout", false),
    ("--backpressure-timeout", false),
];

/// Whole-number flags (sizes and counts).
const WHOLE_FLAGS: [&str; 15] = [
    "--read-buffer",
    "--cork",
    "--write-chunk",
    "--backpressure",
    "--max-pool-bytes",
    "--max-connections",
    "--max-frame",
    "--max-message",
    "--max-fragments",
    "--max-request",
    "--max-headers",
    "--compression-level",
    "--server-max-window-bits",
    "--client-max-window-bits",
    "--compression-min-size",
];

/// Values no duration flag may take: not finite, negative, beyond `Duration`
/// or beyond a day, below a millisecond, not a duration at all.
const BAD_DURATIONS: [&str; 15] = [
    "inf",
    "NaN",
    "-1",
    "-0.5",
    "-1e3",
    "1e19",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e-7",
    "2days",
    "5 parsecs",
    "abc",
    "",
    "5s5",
    "0x10",
];

/// Values no whole-number flag may take.
const BAD_WHOLES: [&str; 14] = [
    "inf",
    "NaN",
    "-1",
    "-0",
    "1e19",
    "1.5",
    "18446744073709551616",
    "99999999999999999999999999",
    "abc",
    "",
    "0x10",
    "64KiB",
    "1 024",
    "-18446744073709551616",
];

/// The server binary with a clean environment of `WSECHO_*` variables (so the
/// caller's shell cannot change the outcome), logging at info, no colours,
/// and any port.
fn wsecho(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WSECHO_") {
            c.env_remove(k);
        }
    }
    if !env.iter().any(|(k, _)| *k == "WSECHO_ADDR") && !args.contains(&"--addr") {
        c.args(["--addr", "127.0.0.1:0"]);
    }
    c.args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .env("RUST_LOG_STYLE", "never")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Run the server expecting a usage error: it must exit 2 within
/// [`PATIENCE`], print exactly one line, and not panic. Returns the line.
fn rejected(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = wsecho(args, env).spawn().expect("spawn wsecho");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} {env:?}: accepted (still running after {PATIENCE:?}), expected exit 2");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{args:?} {env:?}: panicked:\n{stderr}");
    assert_eq!(status.code(), Some(2), "{args:?} {env:?}: exit {status}, stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?} {env:?}: expected one line, got:\n{stderr}");
    lines[0].to_owned()
}

/// [`rejected`] for one bad `value` of `flag`; the line must name the flag.
fn rejects(flag: &str, value: &str) -> String {
    let line = rejected(&[flag, value], &[]);
    assert!(line.contains(&format!("'{flag} ")), "{flag} {value:?}: message does not name the flag: {line}");
    line
}

/// A server process that has logged "listening on ..."; killed on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
    /// The rest of its log, line by line.
    log: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the server and wait for its "listening on http://ADDR" line.
fn started(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut child = wsecho(args, env).spawn().expect("spawn wsecho");
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => {
                assert!(!line.contains("panicked"), "{args:?} {env:?}: panicked: {line}");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                    return Running { child, addr, log };
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!("{args:?} {env:?}: did not start ({status}); log:\n{}", seen.join("\n"));
            }
        }
    }
}

/// The `from A to B` range a whole-number flag's error message states.
fn whole_range(flag: &str) -> (u64, u64) {
    let line = rejects(flag, "abc");
    let after = line.split(" from ").nth(1).unwrap_or_else(|| panic!("{flag}: no range in: {line}"));
    let mut words = after.split_whitespace();
    let min = words.next().unwrap().parse().unwrap_or_else(|_| panic!("{flag}: bad range in: {line}"));
    assert_eq!(words.next(), Some("to"), "{line}");
    let max = words.next().unwrap().trim_matches(|c: char| !c.is_ascii_digit());
    (min, max.parse().unwrap_or_else(|_| panic!("{flag}: bad range in: {line}")))
}

/// Extra flags a boundary value of `flag` needs to be valid in combination:
/// the smallest pool cap holds only chunks of the smallest size.
fn companions(flag: &str) -> Vec<String> {
    match flag {
        "--max-pool-bytes" => vec!["--write-chunk".into(), whole_range("--write-chunk").0.to_string()],
        _ => Vec::new(),
    }
}

fn started_with(flag: &str, value: u64) -> Running {
    let v = value.to_string();
    let extra = companions(flag);
    let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
    args.extend([flag, v.as_str()]);
    started(&args, &[])
}

/// Upgrade, echo a one-byte text message, close 1000: a minimal session.
fn echo_once(server: &Running, flag: &str, value: u64) {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(upgrade_request("dGhlIHNhbXBsZSBub25jZQ==").as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{flag} {value}: {head}");
    s.write_all(&masked_frame(true, OpCode::Text, b"x")).unwrap();
    assert_eq!(read_frame(&mut s), (true, OpCode::Text, b"x".to_vec()), "{flag} {value}");
    s.write_all(&masked_frame(true, OpCode::Close, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(expect_close(&mut s), 1000, "{flag} {value}");
}

/// The duration range a duration flag's error message states, as
/// (min, max) — min is the smallest nonzero value.
fn duration_range(flag: &str) -> (Duration, Duration) {
    let line = rejects(flag, "abc");
    let after = line.split(" from ").nth(1).unwrap_or_else(|| panic!("{flag}: no range in: {line}"));
    // "[0 (what it means) or ]1ms to 1day (e.g. …)"
    let after = if after.starts_with("0 (") { after.split_once(") or ").unwrap().1 } else { after };
    let mut words = after.split_whitespace();
    let min = humantime::parse_duration(words.next().unwrap()).unwrap();
    assert_eq!(words.next(), Some("to"), "{line}");
    let max = humantime::parse_duration(words.next().unwrap()).unwrap();
    (min, max)
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

#[test]
fn issue_10_bad_durations_exit_2_with_one_line_naming_the_flag() {
    for (flag, zero_ok) in DURATION_FLAGS {
        for value in BAD_DURATIONS {
            rejects(flag, value);
        }
        if !zero_ok {
            for zero in ["0", "0s", "0.0", "0ms"] {
                rejects(flag, zero);
            }
        }
    }
}

#[test]
fn issue_10_durations_are_enforced_at_exactly_the_stated_range() {
    for (flag, zero_ok) in DURATION_FLAGS {
        let (min, max) = duration_range(flag);
        let line = rejects(flag, "abc");
        assert!(line.contains("from 0 (") == zero_ok, "{flag}: zero in the message? {line}");
        // Both ends, as humantime and as plain seconds.
        for ok in [humantime::format_duration(min).to_string(), humantime::format_duration(max).to_string(), secs(max)]
        {
            drop(started(&[flag, &ok], &[]));
        }
        let over = max + Duration::from_millis(1);
        rejects(flag, &humantime::format_duration(over).to_string());
        rejects(flag, &secs(over));
        let under = min - Duration::from_micros(1);
        rejects(flag, &humantime::format_duration(under).to_string());
        if zero_ok {
            drop(started(&[flag, "0"], &[]));
        }
    }
}

#[test]
fn issue_10_close_timeout_takes_humantime_and_plain_seconds() {
    for value in ["5s", "250ms", "0.5", "1m", "5"] {
        let server = started(&["--close-timeout", value], &[]);
        assert!(server.addr.ip().is_loopback());
    }
}

/// A parsed duration is the one given, not off by a unit: with a 250 ms
/// handshake timeout, a silent client is dropped in well under a second
/// (and not before 250 ms).
#[test]
fn issue_10_handshake_timeout_250ms_is_250_milliseconds() {
    let server = started(&["--handshake-timeout", "250ms"], &[]);
    // Timed from before connect: the server's clock starts at accept, later.
    let t = Instant::now();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = read_to_end(&mut s);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(250), "closed after {waited:?}");
    assert!(waited < Duration::from_secs(5), "closed only after {waited:?}: not read as 250 ms");
}

#[test]
fn issue_10_bad_whole_numbers_exit_2_with_one_line_naming_the_flag() {
    for flag in WHOLE_FLAGS {
        for value in BAD_WHOLES {
            rejects(flag, value);
        }
    }
}

#[test]
fn issue_10_whole_numbers_are_enforced_at_exactly_the_stated_range() {
    for flag in WHOLE_FLAGS {
        let (min, max) = whole_range(flag);
        assert!(min <= max, "{flag}: {min} > {max}");
        // Both ends start, and serve: a limit at its smallest still lets a
        // minimal session through.
        echo_once(&started_with(flag, min), flag, min);
        echo_once(&started_with(flag, max), flag, max);
        rejects(flag, &(max + 1).to_string());
        rejects(flag, &(max * 1000).to_string());
        if min > 0 {
            rejects(flag, &(min - 1).to_string());
        }
        if min > 1 {
            rejects(flag, "0");
        }
    }
}

/// The reactor reads at most the pool's room less two chunks of slack, so a
/// pool cap under three write chunks would never let a connection be read:
/// refused at start, naming both flags.
#[test]
fn issue_10_max_pool_bytes_under_3_write_chunks_exits_2_naming_both() {
    let (chunk_min, _) = whole_range("--write-chunk");
    // (Chunks above the smallest, so every pool tried is within its own range.)
    for chunk in [chunk_min * 4, chunk_min * 64] {
        let c = chunk.to_string();
        for pool in [chunk, 2 * chunk, 3 * chunk - 1] {
            let line = rejected(&["--write-chunk", &c, "--max-pool-bytes", &pool.to_string()], &[]);
            assert!(line.contains("--write-chunk") && line.contains("--max-pool-bytes"), "{line}");
        }
        let server = started(&["--write-chunk", &c, "--max-pool-bytes", &(3 * chunk).to_string()], &[]);
        echo_once(&server, "--max-pool-bytes", 3 * chunk);
    }
}

#[test]
fn issue_10_compression_level_over_9_and_unknown_mode_exit_2() {
    let line = rejects("--compression-level", "10");
    assert!(line.contains("0 to 9"), "{line}");
    let line = rejects("--compression", "gzip");
    assert!(line.contains("possible values"), "{line}");
}

#[test]
fn issue_10_unresolvable_addr_exits_2_naming_the_flag() {
    for addr in ["nohost", "127.0.0.1:99999", "", "[::1"] {
        let line = rejected(&["--addr", addr], &[]);
        assert!(line.contains("'--addr "), "{line}");
    }
}

/// The old crash: `Instant + close_timeout` overflowed at the first close.
/// With every duration at its maximum, a full session — upgrade, echo, Close
/// from the client, an HTTP error — is answered, and the server keeps
/// serving, then drains and exits 0 on SIGTERM.
#[test]
fn issue_10_max_durations_survive_a_real_close_and_shutdown() {
    let mut args = Vec::new();
    let maxes: Vec<(String, String)> =
        DURATION_FLAGS.iter().map(|(f, _)| (f.to_string(), secs(duration_range(f).1))).collect();
    for (f, v) in &maxes {
        args.push(f.as_str());
        args.push(v.as_str());
    }
    let mut server = started(&args, &[]);
    assert!(args.contains(&"--close-timeout") && args.contains(&"86400"), "{args:?}");

    for round in 0..2 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(upgrade_request("dGhlIHNhbXBsZSBub25jZQ==").as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "round {round}: {head}");
        s.write_all(&masked_frame(true, OpCode::Text, b"hello")).unwrap();
        assert_eq!(read_frame(&mut s), (true, OpCode::Text, b"hello".to_vec()));
        s.write_all(&masked_frame(true, OpCode::Close, &1000u16.to_be_bytes())).unwrap();
        assert_eq!(expect_close(&mut s), 1000, "round {round}");
        expect_tcp_closed(&mut s);
        assert!(server.child.try_wait().unwrap().is_none(), "server exited after a close");

        // An HTTP error also arms the close deadline.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let resp = read_to_end(&mut s);
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
        assert!(server.child.try_wait().unwrap().is_none(), "server exited after an HTTP error");
    }

    // SIGTERM: drain with a one-day grace; nothing is open, so it exits now.
    common::signal(server.child.id(), "TERM");
    let t = Instant::now();
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < PATIENCE, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    let log: Vec<String> = server.log.try_iter().collect();
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:#?}");
    assert_eq!(status.code(), Some(0), "{status}; log:\n{}", log.join("\n"));
}

#[test]
fn issue_12_wsecho_addr_sets_the_listen_address() {
    let server = started(&[], &[("WSECHO_ADDR", "127.0.0.1:0")]);
    assert!(server.addr.ip().is_loopback());
    assert_ne!(server.addr.port(), 0);
    // And a bad one is refused like the flag, naming where it came from.
    let line = rejected(&[], &[("WSECHO_ADDR", "nohost")]);
    assert!(line.contains("'--addr ") && line.contains("WSECHO_ADDR"), "{line}");
}

#[test]
fn issue_12_every_numeric_env_var_is_read_and_checked() {
    let all = DURATION_FLAGS.iter().map(|(f, _)| *f).chain(WHOLE_FLAGS).chain(["--compression"]);
    for flag in all {
        let var = format!("WSECHO_{}", flag.trim_start_matches("--").replace('-', "_").to_uppercase());
        let line = rejected(&[], &[(&var, "abc")]);
        assert!(line.contains(&format!("'{flag} ")), "{var}=abc: message does not name {flag}: {line}");
        assert!(line.contains(&var), "{var}=abc: message does not name {var}: {line}");
    }
}

#[test]
fn issue_12_a_flag_on_the_command_line_wins_over_its_env_var() {
    drop(started(&["--close-timeout", "5s"], &[("WSECHO_CLOSE_TIMEOUT", "abc")]));
    // The bad value on the command line is reported without blaming the
    // (good) environment variable.
    let line = rejected(&["--close-timeout", "abc"], &[("WSECHO_CLOSE_TIMEOUT", "5s")]);
    assert!(!line.contains("WSECHO_CLOSE_TIMEOUT"), "{line}");
}

/// The env var's value is the one used: a 250 ms handshake timeout from the
/// environment drops a silent client in well under a second.
#[test]
fn issue_12_env_duration_takes_effect() {
    let server = started(&[], &[("WSECHO_HANDSHAKE_TIMEOUT", "250ms")]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let t = Instant::now();
    let _ = read_to_end(&mut s);
    assert!(t.elapsed() < Duration::from_secs(5), "closed only after {:?}", t.elapsed());
}

#[test]
fn issue_12_help_lists_an_env_var_for_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| l.split([' ', ',']).next().unwrap())
        .filter(|f| !["help", "version"].contains(f))
        .collect();
    assert!(flags.len() > WHOLE_FLAGS.len(), "{help}");
    for flag in flags {
        let var = format!("[env: WSECHO_{}=", flag.replace('-', "_").to_uppercase());
        assert!(help.contains(&var), "--help lacks {var}");
    }
    // And says the duration syntax and the cap.
    assert!(help.contains("250ms") && help.contains("1 day"), "{help}");
}
