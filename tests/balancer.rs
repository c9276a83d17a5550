//! Scale-out behind real load balancers: Debian's `haproxy` and `nginx`
//! running the shipped `deploy/haproxy.cfg` and `deploy/nginx.conf` in front of
//! three wsecho instances on 127.0.0.2–4 (standing in for three hosts), with
//! the loadtest swarm as the clients.
//!
//! `tests/run.sh` installs both programs; run alone with
//! `cargo build --release --workspace --bins && cargo nextest run --release --test balancer`.

mod common;

use common::ServerProc;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Instances stand in for hosts on these loopback addresses.
const HOSTS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

/// `--drain-delay` of each instance: above HAProxy's time to see /healthz
/// fail (`inter 1s fall 2` in deploy/haproxy.cfg: at most ~3 s).
const DRAIN_DELAY_S: u64 = 4;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The swarm binary, built next to `wsecho` (`cargo build --workspace --bins`).
fn swarm_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_wsecho")).with_file_name("wsecho-loadtest");
    assert!(p.exists(), "{} missing: run `cargo build --workspace --bins` with the same profile", p.display());
    p
}

/// A port free on 127.0.0.1 and on every address in `HOSTS`.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if HOSTS.iter().all(|h| TcpListener::bind((*h, port)).is_ok()) {
            return port;
        }
    }
}

/// One wsecho instance of the fleet: public port `port`, /healthz and
/// /metrics on `metrics_port`, both on `host`.
fn start_instance(host: &str, port: u16, metrics_port: u16) -> ServerProc {
    let metrics = format!("{host}:{metrics_port}");
    let drain = format!("{DRAIN_DELAY_S}s");
    ServerProc::start_on(
        &format!("{host}:{port}"),
        &["--threads", "1", "--metrics-addr", &metrics, "--drain-delay", &drain, "--shutdown-grace", "10s"],
    )
}

/// A plain HTTP/1.1 GET; returns (status, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A balancer child process, killed on drop; its output goes to a file that
/// is printed if the test fails.
struct Balancer {
    child: Child,
    log: PathBuf,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

fn spawn_logged(cmd: &mut Command, log: PathBuf) -> Balancer {
    let out = std::fs::File::create(&log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e} (tests/run.sh installs haproxy and nginx-light)"));
    Balancer { child, log }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wsecho-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// HAProxy running deploy/haproxy.cfg unchanged, its addresses from the
/// environment.
struct Haproxy {
    proc: Balancer,
    stats: String,
}

impl Haproxy {
    fn start(dir: &Path, bind: &str, port: u16, metrics_port: u16) -> Haproxy {
        let stats = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new("haproxy");
        cmd.args(["-db", "-f"]).arg(repo().join("deploy/haproxy.cfg"));
        cmd.env("WSECHO_LB_BIND", bind).env("WSECHO_LB_STATS", &stats);
        cmd.env("WSECHO_HEALTH_PORT", metrics_port.to_string());
        // Two sockets per proxied connection within this machine's 20,000
        // open files per process.
        cmd.env("WSECHO_LB_MAXCONN", "9000");
        for (i, h) in HOSTS.iter().enumerate() {
            cmd.env(format!("WSECHO_S{}", i + 1), format!("{h}:{port}"));
        }
        let proc = spawn_logged(&mut cmd, dir.join("haproxy.log"));
        Haproxy { proc, stats }
    }

    /// Server name → HAProxy's status for it (`UP`, `DOWN`, `UP 1/2`, ...),
    /// from the stats page's CSV.
    fn statuses(&self) -> Vec<(String, String)> {
        let Ok((200, csv)) = http_get(&self.stats, "/stats;csv") else { return Vec::new() };
        csv.lines()
            .filter(|l| l.starts_with("wsecho,s"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].to_string(), f[17].to_string())
            })
            .collect()
    }

    fn status(&self, server: &str) -> String {
        self.statuses().into_iter().find(|(s, _)| s == server).map(|(_, st)| st).unwrap_or_default()
    }

    /// Wait until `server`'s status satisfies `want`; returns the wait.
    fn wait_for(&self, server: &str, what: &str, want: impl Fn(&str) -> bool, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let st = self.status(server);
            if want(&st) {
                return t0.elapsed();
            }
            assert!(t0.elapsed() < limit, "HAProxy: {server} not {what} after {limit:?} (status {st:?})");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The swarm in `echo --reconnect` mode against `url`, in the background.
fn start_swarm(url: &str, conns: usize, duration_s: u64, json: &Path) -> Child {
    Command::new(swarm_bin())
        .args(["echo", "--target", url, "--conns", &conns.to_string(), "--size", "64", "--depth", "1"])
        .args(["--warmup", "1", "--duration", &duration_s.to_string(), "--reconnect", "--quiet", "--json-file"])
        .arg(json)
        .stdout(Stdio::null())
        .spawn()
        .expect("start wsecho-loadtest")
}

fn finish_swarm(mut swarm: Child, json: &Path) -> serde_json::Value {
    let st = swarm.wait().unwrap();
    assert!(st.success(), "wsecho-loadtest exited with {st}");
    serde_json::from_str(&std::fs::read_to_string(json).expect("swarm JSON report")).expect("JSON")
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// SIGTERM one instance and wait for it to exit 0.
fn stop_instance(inst: &mut ServerProc) {
    common::signal(inst.pid(), "TERM");
    wait_exit(inst);
}

/// Wait for an instance that was sent SIGTERM to exit 0 (a second signal
/// would cut its --drain-delay short).
fn wait_exit(inst: &mut ServerProc) {
    let st = inst.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "drained instance exited with {st}");
}

/// The checks shared by both balancers: every connection lost was closed by
/// the server with 1001 and came back through the balancer, nothing was
/// corrupted, nothing else went wrong, and echoes flowed. Prints the
/// in-flight loss per drained connection.
fn check_rolling_report(who: &str, r: &serde_json::Value, conns: u64, min_drops: u64) {
    let rc = &r["reconnect"];
    println!("{who}: {}", serde_json::to_string(rc).unwrap());
    println!(
        "{who}: {} echoes verified, {} msgs/s in the window, errors {}",
        n(&r["msgs_run"]),
        r["msgs_per_s"],
        r["errors"]
    );
    assert_eq!(n(&r["corrupted"]), 0, "{who}: corrupted echoes");
    assert!(r["errors"].as_object().map_or(true, |e| e.is_empty()), "{who}: errors {}", r["errors"]);
    let dropped = n(&rc["dropped"]);
    let by_1001 = n(&rc["drops"]["close_1001"]);
    assert!(dropped >= min_drops, "{who}: only {dropped} connections were drained (expected ≥ {min_drops})");
    assert_eq!(by_1001, dropped, "{who}: every lost connection must have been closed with 1001: {}", rc["drops"]);
    assert_eq!(n(&rc["reconnected"]), dropped, "{who}: every drained connection reconnects");
    assert_eq!(n(&rc["pending_at_end"]), 0, "{who}: slots still down at the end");
    assert!(n(&r["msgs_run"]) > 10 * conns, "{who}: too few echoes ({})", n(&r["msgs_run"]));
    let lost = n(&rc["lost_in_flight"]);
    println!(
        "{who}: {lost} in-flight messages lost over {dropped} drained connections ({:.3} per connection)",
        lost as f64 / dropped as f64
    );
}

/// HAProxy (deploy/haproxy.cfg) in front of three instances; the swarm keeps
/// 3,000 connections echoing through it while each instance in turn gets
/// SIGTERM, exits, and is started again. With `--drain-delay` longer than
/// HAProxy's health checks take to see /healthz fail, HAProxy stops sending
/// new connections to a draining instance before it closes anything: every
/// connection it held gets 1001 and reconnects at the first attempt.
#[test]
fn haproxy_rolling_restart_every_drained_connection_gets_1001_and_reconnects() {
    let dir = temp_dir("haproxy");
    let (port, metrics_port) = (free_port(), free_port());
    let mut fleet: Vec<ServerProc> = HOSTS.iter().map(|h| start_instance(h, port, metrics_port)).collect();
    let lb = format!("127.0.0.1:{}", free_port());
    let haproxy = Haproxy::start(&dir, &lb, port, metrics_port);
    for s in ["s1", "s2", "s3"] {
        haproxy.wait_for(s, "UP", |st| st == "UP", Duration::from_secs(20));
    }

    const CONNS: usize = 3000;
    let json = dir.join("swarm.json");
    let rss0 = common::pid_rss_bytes(haproxy.proc.child.id());
    let swarm = start_swarm(&format!("ws://{lb}/echo"), CONNS, 40, &json);
    std::thread::sleep(Duration::from_secs(5));
    let rss1 = common::pid_rss_bytes(haproxy.proc.child.id());
    println!(
        "haproxy: VmRSS {} KiB before, {} KiB with {CONNS} WebSockets echoing ({} B per connection)",
        rss0 / 1024,
        rss1 / 1024,
        rss1.saturating_sub(rss0) / CONNS as u64
    );
    for (i, host) in HOSTS.iter().enumerate() {
        let server = format!("s{}", i + 1);
        let health = format!("{host}:{metrics_port}");
        assert_eq!(http_get(&health, "/healthz").unwrap().0, 200, "{server} healthy before the drain");
        let t0 = Instant::now();
        common::signal(fleet[i].pid(), "TERM");
        // /healthz turns 503 at once...
        loop {
            match http_get(&health, "/healthz") {
                Ok((503, _)) => break,
                Ok((200, _)) => {}
                other => panic!("{server}: /healthz during the drain: {other:?}"),
            }
            assert!(t0.elapsed() < Duration::from_secs(1), "{server}: /healthz still 200 1 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        // ...and HAProxy takes the instance out before the delay ends.
        haproxy.wait_for(&server, "DOWN", |st| st.starts_with("DOWN"), Duration::from_secs(DRAIN_DELAY_S));
        let down_after = t0.elapsed();
        assert!(
            down_after < Duration::from_secs(DRAIN_DELAY_S),
            "{server}: HAProxy saw it down only after {down_after:?}, past --drain-delay"
        );
        wait_exit(&mut fleet[i]);
        let exited_after = t0.elapsed();
        println!("{server}: DOWN in HAProxy {down_after:?} after SIGTERM, exited after {exited_after:?}");
        assert!(exited_after >= Duration::from_secs(DRAIN_DELAY_S), "{server} exited before --drain-delay passed");
        fleet[i] = start_instance(host, port, metrics_port);
        haproxy.wait_for(&server, "UP", |st| st == "UP", Duration::from_secs(20));
    }
    let report = finish_swarm(swarm, &json);
    check_rolling_report("haproxy", &report, CONNS as u64, CONNS as u64);
    let failed = &report["reconnect"]["failed_attempts"];
    assert!(
        failed.as_object().map_or(true, |m| m.is_empty()),
        "a reconnect reached a draining or stopped instance: {failed}"
    );
}

/// nginx running deploy/nginx.conf with its addresses rewritten.
fn start_nginx(dir: &Path, listen: &str, port: u16) -> Balancer {
    let mut conf = std::fs::read_to_string(repo().join("deploy/nginx.conf")).unwrap();
    for (i, h) in HOSTS.iter().enumerate() {
        let from = format!("server 10.0.0.{}:8080", i + 1);
        assert!(conf.contains(&from), "deploy/nginx.conf lost its `{from}` line");
        conf = conf.replace(&from, &format!("server {h}:{port}"));
    }
    assert!(conf.contains("listen 8080;"), "deploy/nginx.conf lost its `listen 8080;` line");
    conf = conf.replace("listen 8080;", &format!("listen {listen};"));
    // Within this machine's 20,000 open files per process.
    conf = conf.replace("worker_rlimit_nofile 200000;", "worker_rlimit_nofile 19000;");
    conf = conf.replace("worker_connections 100000;", "worker_connections 9000;");
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new("nginx");
    cmd.arg("-p").arg(dir).arg("-c").arg(&path);
    cmd.arg("-g").arg(format!("daemon off; pid {}/nginx.pid;", dir.display()));
    cmd.arg("-e").arg(dir.join("error.log"));
    let b = spawn_logged(&mut cmd, dir.join("nginx.out"));
    let t0 = Instant::now();
    while TcpStream::connect(listen).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "nginx did not listen on {listen}");
        std::thread::sleep(Duration::from_millis(50));
    }
    b
}

/// The same rolling restart through nginx (deploy/nginx.conf), smaller:
/// 500 connections. nginx has no active health checks, so a reconnect may
/// meet a closed listener; nginx then tries the next instance and the client
/// sees no error.
#[test]
fn nginx_rolling_restart_every_drained_connection_gets_1001_and_reconnects() {
    let dir = temp_dir("nginx");
    for sub in ["logs", "client_body_temp", "proxy_temp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let (port, metrics_port) = (free_port(), free_port());
    let mut fleet: Vec<ServerProc> = HOSTS.iter().map(|h| start_instance(h, port, metrics_port)).collect();
    let listen = format!("127.0.0.1:{}", free_port());
    let _nginx = start_nginx(&dir, &listen, port);

    const CONNS: usize = 500;
    let json = dir.join("swarm.json");
    let swarm = start_swarm(&format!("ws://{listen}/echo"), CONNS, 35, &json);
    std::thread::sleep(Duration::from_secs(4));
    for (i, host) in HOSTS.iter().enumerate() {
        stop_instance(&mut fleet[i]);
        fleet[i] = start_instance(host, port, metrics_port);
        std::thread::sleep(Duration::from_secs(1));
    }
    let report = finish_swarm(swarm, &json);
    check_rolling_report("nginx", &report, CONNS as u64, CONNS as u64);
}

/// The shipped systemd unit passes `systemd-analyze verify` (with ExecStart
/// pointed at this build's binary).
#[test]
fn systemd_unit_verifies() {
    let dir = temp_dir("unit");
    let unit = std::fs::read_to_string(repo().join("deploy/wsecho@.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/wsecho"));
    let unit = unit.replace("ExecStart=/usr/local/bin/wsecho", &format!("ExecStart={}", env!("CARGO_BIN_EXE_wsecho")));
    std::fs::write(dir.join("wsecho@.service"), unit).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(dir.join("wsecho@1.service")).output();
    let out = out.expect("systemd-analyze (package systemd)");
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify: {text}");
}
