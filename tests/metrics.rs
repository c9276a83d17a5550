//! Issue 12: Prometheus metrics, /healthz and --drain-delay, checked on the
//! real `wsecho` binary in a child process over real sockets — and against
//! the real `promtool` and `prometheus` (Debian's `prometheus` package;
//! tests/run.sh installs it).

mod common;

use common::{
    expect_close, expect_tcp_closed, masked_frame, read_frame, read_to_end, upgraded_to, Launch, ServerProc, HTTP,
    METRICS,
};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wsecho::proto::frame::OpCode;

/// `wsecho ARGS…` in a child process with its metrics listener on a free
/// port; every stderr line is kept for the log checks.
fn start(args: &[&str]) -> ServerProc {
    Launch::new(&[&["--metrics-addr", "127.0.0.1:0"][..], args].concat()).wait_for(&[HTTP, METRICS]).start()
}

/// Scraping the metrics listener of a [`start`]ed server.
trait Scrape {
    fn metrics(&self) -> SocketAddr;
    fn scrape(&self) -> Samples;
    fn scrape_until(&self, key: &str, want: f64) -> Samples;
    fn scrape_when_idle(&self) -> Samples;
}

impl Scrape for ServerProc {
    fn metrics(&self) -> SocketAddr {
        self.addr_of(METRICS)
    }

    fn scrape(&self) -> Samples {
        let (status, body) = http_get(self.metrics(), "/metrics");
        assert_eq!(status, 200, "{body}");
        Samples::parse(&body)
    }

    /// Scrape until sample `key` reads `want` (a gauge published at the end
    /// of a reactor wakeup); panics after 5 s.
    fn scrape_until(&self, key: &str, want: f64) -> Samples {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.scrape();
            let got = s.get(key);
            if got == want {
                return s;
            }
            assert!(Instant::now() < end, "{key} is {got}, not {want}, after 5 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Scrape until every connection is gone (closes finish asynchronously).
    fn scrape_when_idle(&self) -> Samples {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.scrape();
            let open: f64 = ["handshaking", "open", "closing"]
                .iter()
                .map(|p| s.get(&format!("wsecho_connections{{phase=\"{p}\"}}")))
                .sum();
            if open == 0.0 {
                return s;
            }
            assert!(Instant::now() < end, "connections still open after 10 s: {open}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One GET with `Connection: close`: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// [`http_get`], with connection errors returned (a server still starting).
fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let resp = read_to_end(&mut s);
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// The samples of one scrape: `name{labels}` → value.
struct Samples(HashMap<String, f64>);

impl Samples {
    fn parse(text: &str) -> Samples {
        let map = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("sample line");
                (k.to_owned(), v.parse::<f64>().unwrap_or_else(|_| panic!("value in {l:?}")))
            })
            .collect();
        Samples(map)
    }

    /// A sample that must be present.
    fn get(&self, key: &str) -> f64 {
        *self.0.get(key).unwrap_or_else(|| panic!("no sample {key}"))
    }

    /// The sum of every sample of metric `name` (all label values).
    fn sum(&self, name: &str) -> f64 {
        self.0.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(_, v)| v).sum()
    }
}

/// A known workload: `conns` clients each echo `msgs` text messages of
/// `size` bytes and one binary message of `bin` bytes, then close 1000.
fn echo_workload(addr: SocketAddr, conns: usize, msgs: usize, size: usize, bin: usize) {
    let mut socks: Vec<TcpStream> = (0..conns).map(|_| upgraded_to(addr)).collect();
    for (i, s) in socks.iter_mut().enumerate() {
        for m in 0..msgs {
            let text: Vec<u8> = (0..size).map(|k| b'a' + ((i + m + k) % 26) as u8).collect();
            s.write_all(&masked_frame(true, OpCode::Text, &text)).unwrap();
            assert_eq!(read_frame(s), (true, OpCode::Text, text));
        }
        let blob = vec![0xA5u8; bin];
        s.write_all(&masked_frame(true, OpCode::Binary, &blob)).unwrap();
        assert_eq!(read_frame(s), (true, OpCode::Binary, blob));
    }
    for s in &mut socks {
        s.write_all(&masked_frame(true, OpCode::Close, &1000u16.to_be_bytes())).unwrap();
        assert_eq!(expect_close(s), 1000);
        expect_tcp_closed(s);
    }
}

/// A request for a path we do not serve: 404 (an upgrade rejection).
fn rejected_upgrade(addr: SocketAddr) {
    let mut s = common::raw_to(addr);
    s.write_all(b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let resp = read_to_end(&mut s);
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

/// An unmasked client frame: close 1002 (RFC 6455 §5.1).
fn protocol_error(addr: SocketAddr) {
    let mut s = upgraded_to(addr);
    s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(expect_close(&mut s), 1002);
    drop(s);
}

#[test]
fn issue_12_metrics_show_exactly_a_known_workload() {
    let server = start(&["--threads", "2"]);
    let (conns, msgs, size, bin) = (5, 4, 100, 33);
    echo_workload(server.addr, conns, msgs, size, bin);
    rejected_upgrade(server.addr);
    protocol_error(server.addr);
    let s = server.scrape_when_idle();

    let c = conns as f64;
    assert_eq!(s.get("wsecho_connections_accepted_total"), c + 2.0);
    assert_eq!(s.get("wsecho_connections_refused_total"), 0.0);
    assert_eq!(s.get("wsecho_upgrade_rejections_total{status=\"404\"}"), 1.0);
    assert_eq!(s.sum("wsecho_upgrade_rejections_total"), 1.0);
    assert_eq!(s.get("wsecho_messages_echoed_total{opcode=\"text\"}"), c * msgs as f64);
    assert_eq!(s.get("wsecho_messages_echoed_total{opcode=\"binary\"}"), c);
    assert_eq!(s.get("wsecho_echoed_bytes_total{opcode=\"text\"}"), c * (msgs * size) as f64);
    assert_eq!(s.get("wsecho_echoed_bytes_total{opcode=\"binary\"}"), c * bin as f64);
    assert_eq!(s.get("wsecho_close_frames_sent_total{code=\"1000\"}"), c);
    assert_eq!(s.get("wsecho_close_frames_sent_total{code=\"1002\"}"), 1.0);
    assert_eq!(s.sum("wsecho_close_frames_sent_total"), c + 1.0);
    assert_eq!(s.get("wsecho_protocol_errors_total{code=\"1002\"}"), 1.0);
    assert_eq!(s.sum("wsecho_protocol_errors_total"), 1.0);
    assert_eq!(s.get("wsecho_connections_closed_total{reason=\"close handshake done\"}"), c);
    assert_eq!(s.sum("wsecho_connections_closed_total"), c + 2.0);
    // Successful upgrades only: the echo clients and the protocol breaker.
    assert_eq!(s.get("wsecho_handshake_duration_seconds_count"), c + 1.0);
    assert_eq!(s.get("wsecho_handshake_duration_seconds_bucket{le=\"+Inf\"}"), c + 1.0);
    assert!(s.get("wsecho_handshake_duration_seconds_sum") > 0.0);
    assert_eq!(s.get("wsecho_keepalive_pings_total"), 0.0);
    assert_eq!(s.get("wsecho_backpressure_pauses_total"), 0.0);
    assert_eq!(s.get("wsecho_write_pool_bytes"), 0.0);
    assert_eq!(s.get("wsecho_held_input_bytes"), 0.0);
    assert_eq!(s.get("wsecho_inflaters"), 0.0);
    // The caps are the process's (split across the two reactors, summed back).
    assert_eq!(s.get("wsecho_write_pool_limit_bytes"), (256u64 << 20) as f64);
    assert_eq!(s.get("wsecho_held_input_limit_bytes"), (16u64 << 20) as f64);
    assert_eq!(s.get("wsecho_inflaters_limit"), 1024.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        s.get(&format!("wsecho_build_info{{version=\"{version}\",threads=\"2\",compression=\"no-context-takeover\"}}")),
        1.0
    );
}

#[test]
fn issue_12_metrics_count_keepalive_pings_and_open_connections_by_phase() {
    let server = start(&["--threads", "1", "--idle-timeout", "300ms"]);
    let mut s = upgraded_to(server.addr);
    let _half = common::raw_to(server.addr); // connected, no request yet: handshaking
    let (fin, op, _) = read_frame(&mut s);
    assert!(fin && op == OpCode::Ping, "expected a keepalive ping, got {op:?}");
    let m = server.scrape();
    assert_eq!(m.get("wsecho_keepalive_pings_total"), 1.0);
    assert_eq!(m.get("wsecho_connections{phase=\"open\"}"), 1.0);
    assert_eq!(m.get("wsecho_connections{phase=\"handshaking\"}"), 1.0);
    assert_eq!(m.get("wsecho_connections{phase=\"closing\"}"), 0.0);
}

#[test]
fn issue_12_promtool_check_metrics_passes_on_our_output() {
    let server = start(&["--threads", "2"]);
    echo_workload(server.addr, 3, 2, 10, 5);
    rejected_upgrade(server.addr);
    protocol_error(server.addr);
    server.scrape_when_idle();
    let (status, body) = http_get(server.metrics(), "/metrics");
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; tests/run.sh installs it)");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {}\n{said}", out.status);
}

#[test]
fn issue_12_metrics_listener_serves_only_metrics_and_healthz_and_bounds_requests() {
    let server = start(&["--threads", "1"]);
    assert_eq!(http_get(server.metrics(), "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(server.metrics(), "/nope").0, 404);
    assert_eq!(http_get(server.metrics(), "/").0, 404);
    // Never on the public port.
    assert_eq!(http_get(server.addr, "/metrics").0, 404);
    assert_eq!(http_get(server.addr, "/healthz").0, 404);
    // A head that never ends is cut off at the cap.
    let mut big = TcpStream::connect(server.metrics()).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let filler = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(wsecho::server::admin::MAX_REQUEST_HEAD));
    big.write_all(filler.as_bytes()).unwrap();
    assert!(read_to_end(&mut big).starts_with("HTTP/1.1 431"));
    // A silent client does not hold up a health check, and is dropped after
    // the request timeout.
    let mut silent = TcpStream::connect(server.metrics()).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    assert_eq!(http_get(server.metrics(), "/healthz").0, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "health check waited {:?} behind a silent client", t.elapsed());
    let mut b = [0u8; 16];
    let n = silent.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "silent client got an answer");
    let waited = t.elapsed();
    assert!(waited >= wsecho::server::admin::REQUEST_TIMEOUT - Duration::from_millis(100), "{waited:?}");
    assert!(waited < wsecho::server::admin::REQUEST_TIMEOUT + Duration::from_secs(2), "{waited:?}");
    assert_eq!(http_get(server.metrics(), "/healthz").0, 200);
}

#[test]
fn issue_12_metrics_listener_closes_clients_past_its_cap_unanswered() {
    use wsecho::server::admin::{MAX_CLIENTS, REQUEST_TIMEOUT};
    let server = start(&["--threads", "1"]);
    let held: Vec<TcpStream> = (0..MAX_CLIENTS).map(|_| TcpStream::connect(server.metrics()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200)); // let the listener take them all
    let t = Instant::now();
    let (status, _) = try_http_get(server.metrics(), "/healthz").unwrap_or((0, String::new()));
    assert_eq!(status, 0, "answered past the cap of {MAX_CLIENTS}");
    assert!(t.elapsed() < REQUEST_TIMEOUT, "not closed at once: {:?}", t.elapsed());
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http_get(server.metrics(), "/healthz").0, 200);
}

#[test]
fn issue_12_healthz_503_at_sigterm_connections_echo_through_drain_delay_then_1001_and_exit_0() {
    let delay = Duration::from_secs(2);
    let mut server = start(&["--threads", "2", "--drain-delay", "2s"]);
    let mut s = upgraded_to(server.addr);
    assert_eq!(http_get(server.metrics(), "/healthz"), (200, "ok\n".into()));

    let sent = Instant::now();
    common::signal(server.child.id(), "TERM");
    // 503 at once (the signal is handled on another thread: allow it a moment).
    let end = sent + Duration::from_millis(500);
    loop {
        let (status, body) = http_get(server.metrics(), "/healthz");
        if status == 503 {
            assert_eq!(body, "draining\n");
            break;
        }
        assert!(Instant::now() < end, "/healthz still {status} 500 ms after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    // During the delay: the open connection echoes, and new ones are served.
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&masked_frame(true, OpCode::Text, b"still here")).unwrap();
    assert_eq!(read_frame(&mut s), (true, OpCode::Text, b"still here".to_vec()));
    let mut late = upgraded_to(server.addr);
    late.write_all(&masked_frame(true, OpCode::Binary, b"late")).unwrap();
    assert_eq!(read_frame(&mut late), (true, OpCode::Binary, b"late".to_vec()));
    assert!(sent.elapsed() < delay, "the checks above took the whole delay; the test proves nothing");

    // Then: 1001, no earlier than the delay.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(expect_close(&mut s), 1001);
    let at = sent.elapsed();
    assert!(at >= delay - Duration::from_millis(50), "1001 after {at:?}, before the {delay:?} delay");
    s.write_all(&masked_frame(true, OpCode::Close, &1001u16.to_be_bytes())).unwrap();
    expect_tcp_closed(&mut s);
    assert_eq!(expect_close(&mut late), 1001);
    late.write_all(&masked_frame(true, OpCode::Close, &1001u16.to_be_bytes())).unwrap();

    let st = server.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{st}");
    for step in [
        "drain requested",
        "drain delay: serving on for 2s, 1 connection(s) open",
        "drain delay over",
        "draining: closing 2 connections with 1001",
    ] {
        assert!(server.wait_log(step, Duration::from_secs(1)), "no log line {step:?} in {:#?}", server.log());
    }
}

#[test]
fn issue_12_second_sigterm_skips_the_rest_of_the_drain_delay() {
    let mut server = start(&["--threads", "1", "--drain-delay", "60s"]);
    let mut s = upgraded_to(server.addr);
    common::signal(server.child.id(), "TERM");
    assert!(server.wait_log("drain delay: serving on for 1m", Duration::from_secs(5)));
    let t = Instant::now();
    common::signal(server.child.id(), "TERM");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(expect_close(&mut s), 1001);
    assert!(t.elapsed() < Duration::from_secs(5), "1001 only after {:?}", t.elapsed());
    s.write_all(&masked_frame(true, OpCode::Close, &1001u16.to_be_bytes())).unwrap();
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(server.wait_log("skipping the rest of the drain delay", Duration::from_secs(1)));
}

#[test]
fn issue_12_help_shows_the_new_flags_with_their_env_names() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsecho")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for s in ["--metrics-addr", "[env: WSECHO_METRICS_ADDR=]", "--drain-delay", "[env: WSECHO_DRAIN_DELAY=]"] {
        assert!(help.contains(s), "{s} missing from --help:\n{help}");
    }
}

/// A free TCP port on 127.0.0.1 (bound and released: another process could
/// take it in between, which only makes the test fail loudly).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The real Prometheus server scraping one target every second, with its
/// data in a temporary directory.
struct Prometheus {
    child: Child,
    web: SocketAddr,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("wsecho-prom-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: wsecho\n    \
             static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
        let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package prometheus; tests/run.sh installs it)");
        Prometheus { child, web, dir }
    }

    /// The value of the instant query `q`, if it returned one sample.
    fn query(&self, q: &str) -> Option<f64> {
        let enc: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let (status, body) = try_http_get(self.web, &format!("/api/v1/query?query={enc}")).ok()?;
        if status != 200 {
            return None;
        }
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733.1,"42"]}]}}
        let v = body.split("\"value\":[").nth(1)?;
        let v = v.split(',').nth(1)?.trim_start().strip_prefix('"')?;
        v.split('"').next()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn issue_12_a_real_prometheus_scrapes_us_and_reads_the_echo_counter_back() {
    let server = start(&["--threads", "2"]);
    let (conns, msgs) = (4, 7);
    echo_workload(server.addr, conns, msgs, 64, 16);
    let prom = Prometheus::start(server.metrics());
    let want = (conns * msgs) as f64;
    let q = "sum(wsecho_messages_echoed_total{opcode=\"text\"})";
    let end = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < end {
        last = prom.query(q);
        if last == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(prom.dir.join("prometheus.log")).unwrap_or_default();
    assert_eq!(last, Some(want), "Prometheus never returned {want} for {q}; prometheus log:\n{log}");
    // The scrape itself was healthy.
    assert_eq!(prom.query("up{job=\"wsecho\"}"), Some(1.0));
    assert_eq!(prom.query("sum(wsecho_connections_accepted_total)"), Some(conns as f64));
}

#[test]
fn issue_12_a_client_that_never_reads_shows_as_a_backpressure_pause_and_pool_bytes() {
    let server = start(&["--threads", "1"]);
    let mut hog = upgraded_to(server.addr);
    hog.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let before = server.scrape();
    assert_eq!(before.get("wsecho_backpressure_pauses_total"), 0.0);
    assert_eq!(before.get("wsecho_write_pool_bytes"), 0.0);
    // Push echoes until the kernel buffers are full and the server stops
    // reading us (our writes time out).
    let frame = masked_frame(true, OpCode::Binary, &vec![0xAB; 64 * 1024]);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && hog.write_all(&frame).is_ok() {}
    let m = server.scrape();
    assert!(m.get("wsecho_backpressure_pauses_total") >= 1.0, "no pause counted");
    assert!(m.get("wsecho_write_pool_bytes") > 0.0, "the backlog holds no pool chunk");
    assert_eq!(m.get("wsecho_connections{phase=\"open\"}"), 1.0);
}

#[test]
fn issue_12_fragmented_messages_count_under_their_first_frames_opcode_and_hold_an_inflater_while_compressed() {
    use flate2::{Compress, Compression, FlushCompress};
    let server = start(&["--threads", "1"]);
    let mut s = common::raw_to(server.addr);
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    )
    .unwrap();
    let head = common::read_head(&mut s);
    assert!(head.contains("permessage-deflate"), "{head}");
    let text = b"hello hello hello hello";
    let mut deflated = Vec::with_capacity(256);
    Compress::new(Compression::default(), false).compress_vec(text, &mut deflated, FlushCompress::Sync).unwrap();
    assert!(deflated.ends_with(&[0, 0, 0xff, 0xff]));
    deflated.truncate(deflated.len() - 4);
    // First fragment (RSV1: compressed, no FIN): an inflater is lent until
    // the message ends.
    let mut first = Vec::new();
    wsecho::proto::frame::write_frame(&mut first, false, 0x40, OpCode::Text, Some([1, 2, 3, 4]), &deflated);
    s.write_all(&first).unwrap();
    let (fin, op, _) = common::read_frame_rsv(&mut s, 0x40);
    assert!(!fin && op == OpCode::Text);
    // Gauges are published at the end of the reactor's wakeup, which may
    // come a moment after the echo reached us.
    let mid = server.scrape_until("wsecho_inflaters", 1.0);
    assert_eq!(mid.get("wsecho_messages_echoed_total{opcode=\"text\"}"), 0.0);
    // The last fragment, a continuation: the message counts as text.
    s.write_all(&masked_frame(true, OpCode::Continuation, b"")).unwrap();
    let (fin, op, _) = common::read_frame_rsv(&mut s, 0x40);
    assert!(fin && op == OpCode::Continuation);
    let done = server.scrape_until("wsecho_inflaters", 0.0);
    assert_eq!(done.get("wsecho_messages_echoed_total{opcode=\"text\"}"), 1.0);
    assert_eq!(done.get("wsecho_messages_echoed_total{opcode=\"binary\"}"), 0.0);
    // An uncompressed fragmented binary message: its continuation's bytes
    // count as binary too.
    s.write_all(&masked_frame(false, OpCode::Binary, b"ab")).unwrap();
    s.write_all(&masked_frame(true, OpCode::Continuation, b"cde")).unwrap();
    assert_eq!(common::read_frame(&mut s), (false, OpCode::Binary, b"ab".to_vec()));
    assert_eq!(common::read_frame(&mut s), (true, OpCode::Continuation, b"cde".to_vec()));
    let last = server.scrape();
    assert_eq!(last.get("wsecho_messages_echoed_total{opcode=\"binary\"}"), 1.0);
    assert_eq!(last.get("wsecho_echoed_bytes_total{opcode=\"binary\"}"), 5.0);
    assert_eq!(last.get("wsecho_messages_echoed_total{opcode=\"text\"}"), 1.0);
}

#[test]
fn issue_12_sigterm_as_soon_as_the_addresses_are_logged_drains_rather_than_kills() {
    // The handlers are installed before anything is logged: a balancer or
    // test that signals at once gets a drain (exit 0), not death by SIGTERM.
    for _ in 0..5 {
        let mut server = start(&["--threads", "1"]);
        common::signal(server.child.id(), "TERM");
        let st = server.wait_exit(Duration::from_secs(10));
        assert_eq!(st.code(), Some(0), "{st}");
    }
}
