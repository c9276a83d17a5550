//! `wsecho-loadtest`: a lean WebSocket load generator (a "swarm") for wsecho
//! and its peers. One mio event loop per process; more processes with
//! `--procs` for more than ~19,000 connections. Loopback targets only.
//!
//! ```text
//! wsecho-loadtest echo --conns 100 --size 20 --depth 1 --duration 10
//! wsecho-loadtest rate --conns 100 --rate 50000 --size 20
//! wsecho-loadtest idle --conns 19000 --procs 2 --source-ips 127.0.0.1,127.0.0.2
//! wsecho-loadtest handshakes --concurrency 50 --duration 10
//! wsecho-loadtest classic 100 127.0.0.1 8080 20
//! ```

mod chart;
mod conn;
mod net;
mod stats;
mod steps;
mod swarm;
mod tls;

use clap::{Args, Parser, Subcommand};
use conn::PayloadKind;
use stats::Report;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm::{Mode, Plan};

/// Environment variable that marks a child of `--procs`: "INDEX/COUNT".
const CHILD_ENV: &str = "WSECHO_LOADTEST_CHILD";
/// Most connections one process holds (the hard open-file limit is 20,000).
const MAX_PER_PROC: usize = 19_000;

#[derive(Parser, Debug)]
#[command(version, about = "WebSocket load generator for wsecho (loopback targets only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Closed loop: C connections, D messages in flight each.
    Echo {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        msg: MsgArgs,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 1)]
        depth: usize,
    },
    /// Open loop: a fixed total message rate; latency from intended send time.
    Rate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        msg: MsgArgs,
        /// Total messages per second, spread over all connections.
        #[arg(long)]
        rate: f64,
    },
    /// Open C connections and hold them (for measuring server memory).
    Idle {
        #[command(flatten)]
        common: Common,
        /// Send a Ping on every connection this often (seconds).
        #[arg(long)]
        ping_every: Option<f64>,
        /// Seconds to wait after the last open before reading the server's RSS.
        #[arg(long, default_value_t = 1.0)]
        settle: f64,
    },
    /// Connect + upgrade + close, K at a time, for T seconds.
    Handshakes {
        #[command(flatten)]
        common: Common,
        /// Handshakes in progress at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Closed loop, depth 1, with churn: each connection lives a random
    /// 1..10 s (see --lifetime-*), sends Close 1000, waits for the server's
    /// close, and is replaced by a new connection.
    Churn {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        msg: MsgArgs,
        /// Shortest connection lifetime, seconds.
        #[arg(long, default_value_t = 1.0)]
        lifetime_min: f64,
        /// Longest connection lifetime, seconds.
        #[arg(long, default_value_t = 10.0)]
        lifetime_max: f64,
        /// With --server-pid: sample the server's VmRSS and open fds this
        /// often (seconds), plus once all are open and at the end.
        #[arg(long, default_value_t = 30.0)]
        sample_every: f64,
    },
    /// The C1M benchmark's driver (see loadtest/c1m.sh): open connections in
    /// steps (e.g. 100000,250000,500000,1000000) over --procs processes, and
    /// at each step read the servers' total RSS and the kernel's slab, then
    /// run an echo sweep (one verified message on every connection). Finally
    /// close everything and check that the servers' fd counts return to
    /// their baseline and that no server died. A markdown table on stdout,
    /// the full report with --json-file.
    Steps {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cfg: steps::StepsArgs,
    },
    /// Draw charts from a saved JSON: a run's report (`--json-file`; the
    /// same charts as --report-dir) or a peer comparison (compare.sh's
    /// summary.json: grouped bar charts).
    Chart {
        /// The JSON file.
        #[arg(long)]
        from: PathBuf,
        /// Directory to write the SVG files (and, for a run, index.html) into.
        #[arg(long)]
        out: PathBuf,
    },
    /// uWebSockets load_test compatible: `classic CONNECTIONS HOST PORT [PAYLOAD_BYTES]`.
    Classic {
        /// Connections.
        connections: usize,
        /// Host (must be loopback).
        host: String,
        /// Port.
        port: u16,
        /// Payload bytes per message.
        #[arg(default_value_t = 20)]
        payload_bytes: usize,
        /// Request path.
        #[arg(long, default_value = "/echo")]
        path: String,
        /// Seconds to run (it stops by itself).
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Send text frames (default binary).
        #[arg(long)]
        text: bool,
        /// Connect with TLS (wss://).
        #[arg(long)]
        tls: bool,
        #[command(flatten)]
        tls_args: TlsArgs,
    },
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Server URL, ws:// or wss:// (TLS; needs --ca or --insecure); must be
    /// loopback (127.0.0.0/8 or ::1).
    #[arg(long, default_value = "ws://127.0.0.1:8080/echo")]
    target: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// Connections (handshakes mode: ignored, see --concurrency).
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Measuring window, seconds (idle: how long to hold).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up before the window, seconds (not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Split the connections over P child processes (each ≤ 19,000).
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// Bind client sockets to these loopback addresses, round robin.
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// Most connects/upgrades in flight during ramp-up.
    #[arg(long, default_value_t = 256)]
    ramp: usize,
    /// Read this server process's CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the final report as one JSON line on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the final report as JSON to this file (for scripts).
    #[arg(long, value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// After the run, write charts (latency percentiles, throughput and open
    /// connections, errors over time; SVG) and an index.html into DIR.
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Rolling-restart tests: when the server closes a connection with 1001
    /// (going away) or its TCP connection drops, open a new one for that slot
    /// (same target; failed attempts retried with backoff) and go on. Drops,
    /// reconnects and lost in-flight messages are reported. echo, rate, idle.
    #[arg(long)]
    reconnect: bool,
    /// No progress bar, no live line.
    #[arg(long)]
    quiet: bool,
}

/// TLS options for `wss://` targets.
#[derive(Args, Debug, Clone, Default)]
struct TlsArgs {
    /// wss://: trust this CA (or the server's self-signed certificate), PEM.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// wss://: accept any server certificate (self-signed test servers).
    #[arg(long)]
    insecure: bool,
    /// wss://: no TLS session resumption, every handshake a full one
    /// (default: one session cache per swarm process, so most resume).
    #[arg(long)]
    tls_no_resume: bool,
}

#[derive(Args, Debug, Clone)]
struct MsgArgs {
    /// Payload bytes per message.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Send text frames.
    #[arg(long, conflicts_with = "binary")]
    text: bool,
    /// Send binary frames (the default, except with --payload json).
    #[arg(long)]
    binary: bool,
    /// Payload content: `pattern` (a-z or a byte ramp) or `json` (JSON-like
    /// records, sent as text unless --binary).
    #[arg(long, value_enum, default_value_t = PayloadArg::Pattern)]
    payload: PayloadArg,
    /// Offer permessage-deflate (RFC 7692) and send every message compressed
    /// (pre-compressed once, RSV1 set). The run fails if the server does not agree.
    /// Echoes are compared byte for byte when both sides agreed no context
    /// takeover (the server passes them through), else inflated and compared.
    #[arg(long)]
    compress: bool,
    /// zlib level for --compress (0..9).
    #[arg(long, default_value_t = 6)]
    compress_level: u32,
    /// With --compress: always inflate echoes to verify them.
    #[arg(long)]
    inflate_echo: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadArg {
    Pattern,
    Json,
}

/// A parsed `--target`.
#[derive(Debug)]
struct Target {
    /// The address to connect to (loopback).
    addr: SocketAddr,
    /// The Host header.
    host_header: String,
    /// The request target (path and query).
    path: String,
    /// `wss://`: the host the certificate must name.
    tls_host: Option<url::Host<String>>,
}

/// Parse `ws[s]://host[:port]/path[?query]` (with the `url` crate), resolve
/// it, and refuse anything off loopback.
fn parse_target(target: &str) -> Result<Target, String> {
    let url = url::Url::parse(target).map_err(|e| format!("{target}: {e}"))?;
    let secure = match url.scheme() {
        "ws" => false,
        "wss" => true,
        _ => return Err(format!("{target}: only ws:// and wss:// URLs are supported")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{target}: credentials in the URL are not supported"));
    }
    // RFC 6455 §3: "Fragment identifiers are meaningless in the context of
    // WebSocket URIs and MUST NOT be used on these URIs."
    if url.fragment().is_some() {
        return Err(format!("{target}: a ws:// URL has no #fragment (RFC 6455 §3)"));
    }
    let host = url.host_str().ok_or_else(|| format!("{target}: no host"))?;
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    // RFC 6455 §3: the default port is 80 for ws and 443 for wss.
    let addrs = url.socket_addrs(|| Some(if secure { 443 } else { 80 })).map_err(|e| format!("{host_header}: {e}"))?;
    let addr = addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .copied()
        .ok_or_else(|| format!("{host_header}: not a loopback address; refusing to load it"))?;
    let localhost = matches!(url.host(), Some(url::Host::Domain("localhost")));
    if addrs.iter().any(|a| !a.ip().is_loopback()) && !localhost {
        return Err(format!("{host_header}: resolves off loopback; refusing"));
    }
    let path = url[url::Position::BeforePath..url::Position::AfterQuery].to_string();
    let tls_host = if secure { url.host().map(|h| h.to_owned()) } else { None };
    Ok(Target { addr, host_header, path, tls_host })
}

/// The TLS client for a `wss://` target (None for `ws://`).
fn tls_client(t: &Target, a: &TlsArgs) -> Result<Option<tls::TlsClient>, String> {
    let Some(host) = &t.tls_host else {
        if a.ca.is_some() || a.insecure || a.tls_no_resume {
            return Err("--ca, --insecure and --tls-no-resume need a wss:// target".into());
        }
        return Ok(None);
    };
    let host = match host {
        url::Host::Domain(d) => url::Host::Domain(d.as_str()),
        url::Host::Ipv4(i) => url::Host::Ipv4(*i),
        url::Host::Ipv6(i) => url::Host::Ipv6(*i),
    };
    if a.insecure {
        eprintln!("wsecho-loadtest: --insecure: the server's certificate is not verified");
    }
    let opts = tls::TlsOptions { ca: a.ca.clone(), insecure: a.insecure, no_resume: a.tls_no_resume };
    tls::TlsClient::new(&host, &opts).map(Some)
}

/// Raise the soft open-file limit to the hard one (each connection is a
/// file descriptor) and return what we got: (soft, hard).
fn raise_fd_limit() -> (u64, u64) {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("wsecho-loadtest: could not raise the open-file limit: {e}");
    }
    rlimit::Resource::NOFILE.get().unwrap_or((0, 0))
}

/// SIGINT/SIGTERM set the returned flag: the swarm then drains and reports.
fn install_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("wsecho-loadtest: cannot handle signal {sig}: {e}");
        }
    }
    stop
}

fn fail(msg: String) -> ! {
    eprintln!("wsecho-loadtest: {msg}");
    std::process::exit(2);
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Chart { from, out } = &cli.cmd {
        draw_from_json(from, out);
        return;
    }
    let stop = install_signals();
    let child = std::env::var(CHILD_ENV).ok().and_then(|v| {
        let (i, n) = v.split_once('/')?;
        Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?))
    });
    let (soft, hard) = raise_fd_limit();
    if child.is_none() {
        eprintln!("open-file limit: soft {soft}, hard {hard}");
    }

    let steps_cfg = match &cli.cmd {
        Cmd::Steps { common, cfg } => Some((common.clone(), cfg.clone())),
        _ => None,
    };
    let (mut plan, common, json) = build_plan(cli.cmd, stop);
    for ip in &plan.source_ips {
        if !ip.is_loopback() {
            fail(format!("source ip {ip} is not loopback"));
        }
    }

    if let Some((i, n)) = child {
        // A child: take our share of the connections and report in JSON.
        plan.child = true;
        plan.conns = plan.conns / n + usize::from(i < plan.conns % n);
        plan.source_offset = i;
        plan.server_pid = None; // the parent reads the server
        let r = swarm::run(&plan).unwrap_or_else(|e| fail(format!("swarm: {e}")));
        swarm::emit(serde_json::json!({"ev": "result", "report": r}));
        return;
    }

    let procs = common.as_ref().map_or(1, |c| c.procs).max(1);
    let per = plan.conns.div_ceil(procs);
    if per > MAX_PER_PROC || per as u64 + 64 > soft {
        fail(format!(
            "{} connections over {procs} process(es) is {per} each; the limit is {} \
             (open files {soft}): use --procs {}",
            plan.conns,
            MAX_PER_PROC.min(soft.saturating_sub(64) as usize),
            plan.conns.div_ceil(MAX_PER_PROC)
        ));
    }
    if plan.source_ips.len() <= 1 && plan.conns > 20_000 {
        eprintln!("note: one source IP has ~28k ephemeral ports; consider --source-ips");
    }

    if plan.mode == Mode::Steps {
        let Some((common, cfg)) = steps_cfg else { unreachable!("steps mode has its arguments") };
        let ok = steps::run_parent(&plan, procs, &cfg, common.json_file.as_deref());
        std::process::exit(if ok { 0 } else { 1 });
    }
    let report = if procs == 1 {
        swarm::run(&plan).unwrap_or_else(|e| fail(format!("swarm: {e}")))
    } else {
        run_children(&plan, procs)
    };
    if json {
        swarm::emit(serde_json::to_value(&report).unwrap_or_default());
    }
    if let Some(path) = common.as_ref().and_then(|c| c.json_file.as_ref()) {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(path, text) {
            fail(format!("--json-file {}: {e}", path.display()));
        }
    }
    report.print_table();
    if let Some(dir) = common.as_ref().and_then(|c| c.report_dir.as_ref()) {
        match chart::write_run_report(dir, &report) {
            Ok(()) => eprintln!("\n  report      {}", dir.join("index.html").display()),
            Err(e) => fail(format!("--report-dir {}: {e}", dir.display())),
        }
    }
}

/// `chart --from FILE --out DIR`: a run's report or a peer comparison.
fn draw_from_json(from: &std::path::Path, out: &std::path::Path) {
    let text = std::fs::read_to_string(from).unwrap_or_else(|e| fail(format!("{}: {e}", from.display())));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| fail(format!("{}: not JSON: {e}", from.display())));
    let done = if v.get("charts").is_some() {
        let c: chart::Comparison =
            serde_json::from_value(v).unwrap_or_else(|e| fail(format!("{}: {e}", from.display())));
        chart::write_comparison(out, &c)
    } else if v.get("mode").is_some() {
        let r: Report = serde_json::from_value(v).unwrap_or_else(|e| fail(format!("{}: {e}", from.display())));
        chart::write_run_report(out, &r)
    } else {
        fail(format!("{}: neither a run report (\"mode\") nor a comparison (\"charts\")", from.display()))
    };
    if let Err(e) = done {
        fail(format!("{}: {e}", out.display()));
    }
    eprintln!("charts written to {}", out.display());
}

fn build_plan(cmd: Cmd, stop: Arc<AtomicBool>) -> (Plan, Option<Common>, bool) {
    let mk = |mode: Mode, c: &Common, size: usize, text: bool| {
        let t = parse_target(&c.target).unwrap_or_else(|e| fail(e));
        let tls = tls_client(&t, &c.tls).unwrap_or_else(|e| fail(e));
        let Target { addr, host_header: host, path, .. } = t;
        Plan {
            mode,
            url: c.target.clone(),
            addr,
            host,
            path,
            conns: c.conns,
            depth: 1,
            size,
            text,
            kind: PayloadKind::Pattern,
            compress: None,
            inflate_echo: false,
            lifetime: (Duration::from_secs(1), Duration::from_secs(10)),
            sample_every: None,
            rate: 0.0,
            duration: Duration::from_secs_f64(c.duration.max(0.0)),
            warmup: Duration::from_secs_f64(c.warmup.max(0.0)),
            ping_every: None,
            source_ips: c.source_ips.clone(),
            source_offset: 0,
            ramp: c.ramp.max(1),
            server_pid: c.server_pid,
            settle: Duration::from_secs(1),
            child: false,
            quiet: c.quiet || c.json,
            classic_every: Duration::from_secs(4),
            stop: Arc::clone(&stop),
            reconnect: c.reconnect,
            tls,
        }
    };
    match cmd {
        Cmd::Echo { common, msg, depth } => {
            let mut p = mk(Mode::Echo, &common, msg.size, msg.text);
            apply_msg(&mut p, &msg);
            p.depth = depth.max(1);
            let j = common.json;
            (p, Some(common), j)
        }
        Cmd::Rate { common, msg, rate } => {
            if rate.is_nan() || rate <= 0.0 {
                fail("--rate must be > 0".into());
            }
            let mut p = mk(Mode::Rate, &common, msg.size, msg.text);
            apply_msg(&mut p, &msg);
            p.rate = rate;
            let j = common.json;
            (p, Some(common), j)
        }
        Cmd::Churn { common, msg, lifetime_min, lifetime_max, sample_every } => {
            if common.reconnect {
                fail("--reconnect: churn already replaces every connection that ends".into());
            }
            if !(lifetime_min > 0.0 && lifetime_max >= lifetime_min) {
                fail("need 0 < --lifetime-min <= --lifetime-max".into());
            }
            let mut p = mk(Mode::Churn, &common, msg.size, msg.text);
            apply_msg(&mut p, &msg);
            p.lifetime = (Duration::from_secs_f64(lifetime_min), Duration::from_secs_f64(lifetime_max));
            p.sample_every = Some(Duration::from_secs_f64(sample_every.max(1.0)));
            let j = common.json;
            (p, Some(common), j)
        }
        Cmd::Idle { common, ping_every, settle } => {
            let mut p = mk(Mode::Idle, &common, 0, false);
            p.ping_every = ping_every.map(|s| Duration::from_secs_f64(s.max(0.01)));
            p.settle = Duration::from_secs_f64(settle.max(0.0));
            p.warmup = Duration::ZERO;
            let j = common.json;
            (p, Some(common), j)
        }
        Cmd::Handshakes { mut common, concurrency } => {
            if common.reconnect {
                fail("--reconnect: handshakes mode opens a new connection for every cycle anyway".into());
            }
            common.conns = concurrency.max(1);
            let p = mk(Mode::Handshakes, &common, 0, false);
            let j = common.json;
            (p, Some(common), j)
        }
        Cmd::Classic { connections, host, port, payload_bytes, path, duration, text, tls, tls_args } => {
            let scheme = if tls { "wss" } else { "ws" };
            let url = if host.contains(':') {
                format!("{scheme}://[{host}]:{port}{path}")
            } else {
                format!("{scheme}://{host}:{port}{path}")
            };
            let common = Common {
                target: url,
                conns: connections,
                duration,
                warmup: 0.0,
                procs: 1,
                source_ips: Vec::new(),
                ramp: 256,
                server_pid: None,
                json: false,
                json_file: None,
                report_dir: None,
                reconnect: false,
                quiet: true,
                tls: tls_args,
            };
            let p = mk(Mode::Classic, &common, payload_bytes, text);
            (p, None, false)
        }
        Cmd::Steps { mut common, cfg } => {
            if common.reconnect {
                fail("--reconnect: steps mode counts every lost connection as an error".into());
            }
            if cfg.steps.is_empty() || cfg.steps.windows(2).any(|w| w[1] <= w[0]) {
                fail("--steps: give increasing connection counts, e.g. 100000,250000".into());
            }
            common.conns = cfg.steps.iter().copied().max().unwrap_or(0);
            let mut p = mk(Mode::Steps, &common, cfg.size, false);
            p.warmup = Duration::ZERO;
            p.quiet = true;
            (p, Some(common), false)
        }
        Cmd::Chart { .. } => unreachable!("main handles chart before planning a run"),
    }
}

/// The message options every message-sending mode shares.
fn apply_msg(p: &mut Plan, m: &MsgArgs) {
    p.kind = match m.payload {
        PayloadArg::Pattern => PayloadKind::Pattern,
        PayloadArg::Json => PayloadKind::Json,
    };
    if p.kind == PayloadKind::Json && !m.binary {
        p.text = true;
    }
    if m.compress {
        p.compress = Some(m.compress_level.min(9));
        p.inflate_echo = m.inflate_echo;
    } else if m.inflate_echo {
        fail("--inflate-echo needs --compress".into());
    }
}

/// Run `procs` children of this executable, each with its share, show a live
/// line from their ticks, and sum their results.
fn run_children(plan: &Plan, procs: usize) -> Report {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(format!("current_exe: {e}")));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, serde_json::Value)>();
    let mut kids = Vec::new();
    for i in 0..procs {
        let mut child = Command::new(&exe)
            .args(&args)
            .env(CHILD_ENV, format!("{i}/{procs}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| fail(format!("spawn: {e}")));
        let out = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if tx.send((i, v)).is_err() {
                        break;
                    }
                }
            }
            let _ = tx.send((i, serde_json::json!({"ev": "exit"})));
        });
        kids.push(child);
    }
    drop(tx);
    let show = !plan.quiet;
    let t0 = Instant::now();
    let rss_before = plan.server_pid.and_then(stats::proc_rss_kib);
    let mut rss_after = None;
    let mut opened = vec![None::<u64>; procs];
    let mut win_started = 0usize;
    let mut cpu_start = None;
    let mut cpu_end = None;
    let mut tick = vec![(0u64, 0u64, 0u64, 0u64); procs]; // msgs, hs, open, errors
    let mut ticked = 0usize;
    let mut results: Vec<Report> = Vec::new();
    let mut exited = 0;
    let mut samples: Vec<stats::Sample> = Vec::new();
    let mut last_sample: Option<Instant> = None;
    let open_now = |tick: &[(u64, u64, u64, u64)]| tick.iter().map(|t| t.2).sum::<u64>() as usize;
    while exited < procs {
        let Ok((i, v)) = rx.recv() else { break };
        let g = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        match v.get("ev").and_then(|e| e.as_str()).unwrap_or("") {
            "tick" => {
                tick[i] = (g("msgs"), g("hs"), g("open"), g("errors"));
                ticked += 1;
                if let (Some(pid), Some(every), Some(last)) = (plan.server_pid, plan.sample_every, last_sample) {
                    if last.elapsed() >= every && cpu_end.is_none() {
                        last_sample = Some(Instant::now());
                        samples.push(stats::Sample::take(pid, "run", t0.elapsed(), open_now(&tick)));
                        if show {
                            samples[samples.len() - 1].print();
                        }
                    }
                }
                if ticked % procs == 0 && show {
                    let s: (u64, u64, u64, u64) =
                        tick.iter().fold((0, 0, 0, 0), |a, t| (a.0 + t.0, a.1 + t.1, a.2 + t.2, a.3 + t.3));
                    eprintln!(
                        "[{:>4}s] {:>9} msgs/s {:>7} handshakes/s  open {:>6}  errors {}",
                        t0.elapsed().as_secs(),
                        s.0,
                        s.1,
                        s.2,
                        s.3
                    );
                }
            }
            "open" => {
                opened[i] = Some(g("n"));
                if opened.iter().all(|o| o.is_some()) {
                    rss_after = plan.server_pid.and_then(stats::proc_rss_kib);
                    let n: u64 = opened.iter().map(|o| o.unwrap_or(0)).sum();
                    if let (Some(pid), Some(_)) = (plan.server_pid, plan.sample_every) {
                        last_sample = Some(Instant::now());
                        samples.push(stats::Sample::take(pid, "all_open", t0.elapsed(), n as usize));
                    }
                    swarm::emit(serde_json::json!({"ev": "all_open", "n": n, "rss_kib": rss_after}));
                    if show {
                        eprintln!("ALL_OPEN {n} connections over {procs} processes");
                    }
                }
            }
            "window_start" => {
                win_started += 1;
                if win_started == procs {
                    cpu_start = plan.server_pid.and_then(stats::proc_cpu_us);
                }
            }
            "window_end" if cpu_end.is_none() => {
                cpu_end = plan.server_pid.and_then(stats::proc_cpu_us);
                if let (Some(pid), Some(_)) = (plan.server_pid, plan.sample_every) {
                    samples.push(stats::Sample::take(pid, "end", t0.elapsed(), open_now(&tick)));
                }
            }
            "result" => {
                if let Ok(r) = serde_json::from_value::<Report>(v["report"].clone()) {
                    results.push(r);
                }
            }
            "exit" => exited += 1,
            _ => {}
        }
    }
    for mut k in kids {
        let _ = k.wait();
    }
    if results.len() != procs {
        eprintln!("warning: {} of {procs} children reported", results.len());
    }
    let mut r = Report::merge(&results);
    r.samples = samples;
    r.set_server_cpu(cpu_start, cpu_end);
    if plan.mode == Mode::Idle {
        r.server.rss_before_kib = rss_before;
        r.server.rss_after_kib = rss_after;
        if let (Some(b), Some(a)) = (rss_before, rss_after) {
            if r.conns_open_max > 0 {
                r.server.rss_per_conn_bytes = Some((a as f64 - b as f64) * 1024.0 / r.conns_open_max as f64);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(parse_target("ws://127.0.0.1:9001/echo").is_ok());
        assert!(parse_target("ws://127.0.0.2:9001/").is_ok());
        assert!(parse_target("ws://[::1]:9001/echo").is_ok());
        assert!(parse_target("ws://10.0.0.1:9001/echo").is_err());
        assert!(parse_target("ws://8.8.8.8:80/").is_err());
        assert!(parse_target("wss://10.0.0.1:1/").is_err());
        let t = parse_target("ws://127.0.0.1:8080/echo").unwrap();
        assert_eq!((t.addr.port(), t.host_header.as_str(), t.path.as_str()), (8080, "127.0.0.1:8080", "/echo"));
        assert!(t.tls_host.is_none());
    }

    #[test]
    fn target_port_path_and_query() {
        let parts = |u: &str| {
            let t = parse_target(u).unwrap();
            (t.addr.port(), t.host_header, t.path, t.tls_host.map(|h| h.to_string()))
        };
        assert_eq!(parts("ws://127.0.0.1/"), (80, "127.0.0.1".into(), "/".into(), None));
        assert_eq!(parts("ws://127.0.0.1:9001"), (9001, "127.0.0.1:9001".into(), "/".into(), None));
        assert_eq!(
            parts("ws://[::1]:9001/echo?room=a%20b"),
            (9001, "[::1]:9001".into(), "/echo?room=a%20b".into(), None)
        );
        assert_eq!(parts("ws://127.0.0.1:9001?x=1"), (9001, "127.0.0.1:9001".into(), "/?x=1".into(), None));
    }

    #[test]
    fn wss_target_defaults_to_443_and_names_its_host() {
        let t = parse_target("wss://127.0.0.1/echo").unwrap();
        assert_eq!((t.addr.port(), t.tls_host.map(|h| h.to_string())), (443, Some("127.0.0.1".into())));
        let t = parse_target("wss://localhost:9443/echo").unwrap();
        assert_eq!((t.addr.port(), t.tls_host.map(|h| h.to_string())), (9443, Some("localhost".into())));
        let t = parse_target("wss://[::1]:9443/").unwrap();
        assert_eq!(t.tls_host.map(|h| h.to_string()), Some("[::1]".into()));
    }

    #[test]
    fn wss_needs_a_ca_or_insecure_and_tls_flags_need_wss() {
        let wss = parse_target("wss://127.0.0.1:9443/echo").unwrap();
        let ws = parse_target("ws://127.0.0.1:9001/echo").unwrap();
        let none = TlsArgs::default();
        let insecure = TlsArgs { insecure: true, ..Default::default() };
        assert!(tls_client(&wss, &none).unwrap_err().contains("--ca"));
        assert!(tls_client(&wss, &insecure).unwrap().is_some());
        assert!(tls_client(&ws, &none).unwrap().is_none());
        assert!(tls_client(&ws, &insecure).is_err());
        let missing = TlsArgs { ca: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(tls_client(&wss, &missing).unwrap_err().contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn target_refuses_what_the_swarm_cannot_send() {
        assert!(parse_target("ws://127.0.0.1:99999/").is_err(), "port out of range");
        assert!(parse_target("ws://user:pw@127.0.0.1:9001/").is_err(), "credentials");
        assert!(parse_target("ws://127.0.0.1:9001/echo#frag").is_err(), "fragment");
        assert!(parse_target("http://127.0.0.1:9001/").is_err(), "scheme");
        assert!(parse_target("https://127.0.0.1:9001/").is_err(), "scheme");
        assert!(parse_target("127.0.0.1:9001").is_err(), "no scheme");
    }
}
