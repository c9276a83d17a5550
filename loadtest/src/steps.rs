//! `steps`: the parent side of the C1M benchmark (`loadtest/c1m.sh`).
//!
//! The connections live in `--procs` child processes of this executable
//! (each one a swarm in [`Mode::Steps`](crate::swarm::Mode::Steps), at most
//! 19,000 connections: the open-file hard limit here is 20,000). The parent
//! drives them over their stdin, one step at a time:
//!
//! 1. `open N` to every child (its share of the step), a progress line per
//!    second (with MemAvailable; below `--min-available-mib` the children are
//!    told to `stop` and the step ends where it is);
//! 2. once all have answered, `--settle` seconds, then the readings: the
//!    servers' VmRSS summed over `--server-pids`, `/proc/meminfo` Slab and
//!    MemAvailable, the children's own RSS;
//! 3. `sweep`: every held connection sends one message and gets it back,
//!    verified; the sweep's time is the slowest child's, the latency
//!    percentiles come from the children's histograms merged.
//!
//! A step that did not hold every connection, had errors, or lost echoes is
//! the last one. Then `close`, and the checks: every server's fd count back
//! to its baseline (waited for up to `--fd-wait` s) and every server alive.

use crate::stats::{new_histogram, proc_fd_count, proc_pss_kib, proc_rss_kib, Latency};
use crate::swarm::Plan;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags of `steps`.
#[derive(clap::Args, Debug, Clone)]
pub struct StepsArgs {
    /// Connection counts to reach, in increasing order (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100000,250000,500000,1000000")]
    pub steps: Vec<usize>,
    /// The server processes (comma-separated pids): RSS summed, fds and
    /// liveness checked.
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Payload bytes of the sweep's message.
    #[arg(long, default_value_t = 20)]
    pub size: usize,
    /// Seconds a step may take to open its connections.
    #[arg(long, default_value_t = 300.0)]
    pub step_timeout: f64,
    /// Seconds an echo sweep may take.
    #[arg(long, default_value_t = 60.0)]
    pub sweep_timeout: f64,
    /// Seconds to wait after a step's connections are open before reading
    /// memory (the servers finish their accept and upgrade work).
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds to wait, after closing, for the servers' fd counts to fall
    /// back to their baseline.
    #[arg(long, default_value_t = 60.0)]
    pub fd_wait: f64,
    /// Stop opening connections when MemAvailable falls below this (MiB):
    /// the box is shared, and the OOM killer would pick someone's process.
    #[arg(long, default_value_t = 2048)]
    pub min_available_mib: u64,
}

/// The readings before the first step.
#[derive(Debug, Default, Serialize)]
pub struct Baseline {
    /// Sum of the servers' VmRSS, KiB.
    pub server_rss_kib: u64,
    /// Sum of the servers' PSS, KiB (shared code counted once).
    pub server_pss_kib: u64,
    /// Each server's open fds, in `--server-pids` order.
    pub server_fds: Vec<u64>,
    /// `/proc/meminfo` Slab, KiB.
    pub slab_kib: u64,
    /// `/proc/meminfo` MemAvailable, KiB.
    pub mem_available_kib: u64,
}

/// One echo sweep, summed over the children.
#[derive(Debug, Default, Serialize)]
pub struct SweepResult {
    /// Messages sent (one per held connection).
    pub sent: u64,
    /// Echoes received and verified.
    pub echoed: u64,
    /// Messages whose connection ended before the echo.
    pub lost: u64,
    /// From the parent's `sweep` to the last child's answer, seconds.
    pub time_s: f64,
    /// Round trip of each message, µs (merged over the children).
    pub latency_us: Latency,
    /// A child did not answer in time.
    pub incomplete: bool,
}

/// What one step reached and measured.
#[derive(Debug, Default, Serialize)]
pub struct StepRow {
    /// Connections asked for.
    pub target: usize,
    /// Connections open (upgraded) once the step settled.
    pub held: u64,
    /// Connections opened in this step per second of its ramp-up.
    pub connect_rate: f64,
    /// Seconds from `open` to the last child's answer.
    pub ramp_s: f64,
    /// Errors so far by kind (summed over the children; cumulative).
    pub errors: BTreeMap<String, u64>,
    /// Sum of the servers' VmRSS, KiB.
    pub server_rss_kib: u64,
    /// (server RSS − baseline) / held, bytes.
    pub server_rss_per_conn_b: f64,
    /// server RSS / held, bytes (the baseline included).
    pub server_rss_total_per_conn_b: f64,
    /// Sum of the servers' PSS, KiB: the memory they hold between them,
    /// their shared code and libraries counted once (a VmRSS sum counts
    /// them once per process).
    pub server_pss_kib: u64,
    /// `/proc/meminfo` Slab, KiB.
    pub slab_kib: u64,
    /// (Slab − baseline) / held, bytes: kernel memory per connection pair
    /// (the client socket and the server socket, both on this box).
    pub slab_per_conn_b: f64,
    /// `/proc/meminfo` MemAvailable, KiB.
    pub mem_available_kib: u64,
    /// Sum of the swarm children's VmRSS, KiB.
    pub swarm_rss_kib: u64,
    /// The most and the fewest fds a server process had (the reuseport
    /// hash spreads connections unevenly; each process may hold 20,000).
    pub server_fds_max: u64,
    /// The fewest fds a server process had.
    pub server_fds_min: u64,
    /// The `TCP:` line of /proc/net/sockstat (sockets in use, orphans,
    /// TIME_WAIT, allocated, buffer pages).
    pub sockstat_tcp: String,
    /// The echo sweep.
    pub sweep: SweepResult,
    /// Why this was the last step (None: it held and the next one runs).
    pub stopped: Option<String>,
}

/// After the last step.
#[derive(Debug, Default, Serialize)]
pub struct Teardown {
    /// Each server's fds at the end of the wait.
    pub server_fds: Vec<u64>,
    /// Every server's fd count came back to its baseline (or below).
    pub fds_back_to_baseline: bool,
    /// Seconds it took (or the whole wait, if they did not).
    pub wait_s: f64,
    /// Servers no longer running.
    pub dead_servers: Vec<u32>,
    /// Children that ended with a non-zero status, or had to be killed.
    pub failed_children: Vec<usize>,
    /// Sum of the servers' VmRSS after closing, KiB.
    pub server_rss_kib: u64,
    /// `/proc/meminfo` Slab after closing, KiB.
    pub slab_kib: u64,
}

/// The whole benchmark.
#[derive(Debug, Default, Serialize)]
pub struct StepsReport {
    /// The target URL.
    pub target: String,
    /// Swarm processes.
    pub procs: usize,
    /// Server processes (pids).
    pub server_pids: Vec<u32>,
    /// Source addresses.
    pub source_ips: Vec<String>,
    /// Kernel settings read at the start (`/proc/sys/...`).
    pub sysctl: BTreeMap<String, String>,
    /// Readings before the first step.
    pub baseline: Baseline,
    /// The steps that ran.
    pub steps: Vec<StepRow>,
    /// Closing and its checks.
    pub teardown: Teardown,
    /// Every step held, echoed everything, no errors, fds back, no server died.
    pub ok: bool,
}

/// A value of `/proc/meminfo`, KiB.
pub fn meminfo_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The kernel settings a million loopback connections depend on.
fn sysctls() -> BTreeMap<String, String> {
    let keys = [
        "net/ipv4/ip_local_port_range",
        "net/core/somaxconn",
        "net/ipv4/tcp_max_syn_backlog",
        "net/netfilter/nf_conntrack_max",
        "net/netfilter/nf_conntrack_count",
        "fs/file-max",
        "fs/nr_open",
        "net/ipv4/tcp_mem",
        "net/ipv4/tcp_max_tw_buckets",
    ];
    let mut m = BTreeMap::new();
    for k in keys {
        let v = std::fs::read_to_string(format!("/proc/sys/{k}"))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "(absent)".into());
        m.insert(k.replace('/', "."), v);
    }
    m
}

/// This child's share of `total` connections.
fn share(total: usize, i: usize, n: usize) -> usize {
    total / n + usize::from(i < total % n)
}

/// The children and the channel their stdout lines arrive on.
struct Kids {
    procs: Vec<Child>,
    stdin: Vec<Option<ChildStdin>>,
    rx: Receiver<(usize, serde_json::Value)>,
    /// Each child's last `tick`: open connections.
    open: Vec<u64>,
    /// Children whose stdout ended.
    exited: Vec<bool>,
    /// SIGINT/SIGTERM (e.g. `timeout` in c1m.sh): stop waiting, close, report.
    stop: Arc<AtomicBool>,
}

impl Kids {
    fn spawn(procs: usize, stop: Arc<AtomicBool>) -> Kids {
        let exe = std::env::current_exe().unwrap_or_else(|e| crate::fail(format!("current_exe: {e}")));
        let args: Vec<String> = std::env::args().skip(1).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut kids =
            Kids { procs: Vec::new(), stdin: Vec::new(), rx, open: vec![0; procs], exited: vec![false; procs], stop };
        for i in 0..procs {
            let mut child = Command::new(&exe)
                .args(&args)
                .env(crate::CHILD_ENV, format!("{i}/{procs}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| crate::fail(format!("spawn: {e}")));
            let out = child.stdout.take().expect("piped stdout");
            kids.stdin.push(child.stdin.take());
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if tx.send((i, v)).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send((i, serde_json::json!({"ev": "exit"})));
            });
            kids.procs.push(child);
        }
        kids
    }

    /// Send one command line to child `i` (a child that is gone is skipped).
    fn send(&mut self, i: usize, line: &str) {
        if let Some(w) = &mut self.stdin[i] {
            if writeln!(w, "{line}").and_then(|_| w.flush()).is_err() {
                self.stdin[i] = None;
            }
        }
    }

    fn send_all(&mut self, line: &str) {
        for i in 0..self.procs.len() {
            self.send(i, line);
        }
    }

    /// Wait until every live child sent an `ev` event (or exited), or until
    /// `deadline`; `each_second` runs about once a second meanwhile (it may
    /// send commands). Returns the events by child (None: no answer).
    fn gather(
        &mut self,
        ev: &str,
        deadline: Instant,
        mut each_second: impl FnMut(&mut Kids),
    ) -> Vec<Option<serde_json::Value>> {
        let n = self.procs.len();
        let mut got: Vec<Option<serde_json::Value>> = vec![None; n];
        let mut last = Instant::now();
        while (0..n).any(|i| got[i].is_none() && !self.exited[i]) {
            let now = Instant::now();
            if now >= deadline || self.stop.load(Ordering::Relaxed) {
                break;
            }
            if now.duration_since(last) >= Duration::from_secs(1) {
                last = now;
                each_second(self);
            }
            let wait = deadline.saturating_duration_since(now).min(Duration::from_millis(200));
            match self.rx.recv_timeout(wait) {
                Ok((i, v)) => match v.get("ev").and_then(|e| e.as_str()).unwrap_or("") {
                    "tick" => self.open[i] = v.get("open").and_then(|x| x.as_u64()).unwrap_or(0),
                    "exit" => self.exited[i] = true,
                    e if e == ev => {
                        if let Some(o) = v.get("open").and_then(|x| x.as_u64()) {
                            self.open[i] = o;
                        }
                        got[i] = Some(v);
                    }
                    _ => {}
                },
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        got
    }
}

fn sum_u64(got: &[Option<serde_json::Value>], key: &str) -> u64 {
    got.iter().flatten().map(|v| v.get(key).and_then(|x| x.as_u64()).unwrap_or(0)).sum()
}

fn sum_errors(got: &[Option<serde_json::Value>]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for v in got.iter().flatten() {
        if let Some(o) = v.get("errors_by").and_then(|x| x.as_object()) {
            for (k, c) in o {
                *m.entry(k.clone()).or_default() += c.as_u64().unwrap_or(0);
            }
        }
    }
    m
}

fn servers_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| proc_rss_kib(p)).sum()
}

fn servers_pss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| proc_pss_kib(p)).sum()
}

fn dead(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().filter(|p| !Path::new(&format!("/proc/{p}")).exists()).collect()
}

/// Run the benchmark; prints the table, writes `json_file`; true if it all held.
pub fn run_parent(plan: &Plan, procs: usize, cfg: &StepsArgs, json_file: Option<&Path>) -> bool {
    let t0 = Instant::now();
    let pids = &cfg.server_pids;
    let mut rep = StepsReport {
        target: plan.url.clone(),
        procs,
        server_pids: pids.clone(),
        source_ips: plan.source_ips.iter().map(|i| i.to_string()).collect(),
        sysctl: sysctls(),
        ..Default::default()
    };
    rep.baseline = Baseline {
        server_rss_kib: servers_rss_kib(pids),
        server_pss_kib: servers_pss_kib(pids),
        server_fds: pids.iter().map(|&p| proc_fd_count(p).unwrap_or(0)).collect(),
        slab_kib: meminfo_kib("Slab"),
        mem_available_kib: meminfo_kib("MemAvailable"),
    };
    eprintln!(
        "baseline: {} server(s) {} KiB RSS ({} KiB PSS), slab {} KiB, MemAvailable {} MiB; {procs} swarm processes",
        pids.len(),
        rep.baseline.server_rss_kib,
        rep.baseline.server_pss_kib,
        rep.baseline.slab_kib,
        rep.baseline.mem_available_kib / 1024
    );
    let mut kids = Kids::spawn(procs, Arc::clone(&plan.stop));
    // Every child answers `opened` with 0 connections once it is ready.
    let ready = kids.gather("opened", Instant::now() + Duration::from_secs(30), |_| {});
    let mut all_ok = ready.iter().all(|r| r.is_some());
    let min_avail_kib = cfg.min_available_mib * 1024;
    let mut held_before = 0u64;
    for &target in &cfg.steps {
        if !all_ok {
            break;
        }
        let mut row = StepRow { target, ..Default::default() };
        let started = Instant::now();
        for i in 0..procs {
            kids.send(i, &format!("open {} {}", share(target, i, procs), cfg.step_timeout));
        }
        // Each child gives up at --step-timeout after it read `open`; on a
        // box loaded to a load average of 70 (a million connects on 2 cores)
        // its answer can take a while longer.
        let deadline = started + Duration::from_secs_f64(cfg.step_timeout + 60.0);
        let mut low_memory = false;
        let mut prev = (Instant::now(), held_before);
        let got = kids.gather("opened", deadline, |k| {
            let open: u64 = k.open.iter().sum();
            let avail = meminfo_kib("MemAvailable");
            let (t, n) = prev;
            let rate = open.saturating_sub(n) as f64 / t.elapsed().as_secs_f64().max(1e-3);
            prev = (Instant::now(), open);
            eprintln!(
                "[{:>5.0}s] step {target}: open {open} ({:.0}%)  {rate:.0}/s  MemAvailable {} MiB  slab {} MiB",
                t0.elapsed().as_secs_f64(),
                open as f64 * 100.0 / target.max(1) as f64,
                avail / 1024,
                meminfo_kib("Slab") / 1024
            );
            if avail < min_avail_kib && !low_memory {
                low_memory = true;
                eprintln!("MemAvailable {} MiB < {} MiB: no more connects", avail / 1024, cfg.min_available_mib);
                k.send_all("stop");
            }
        });
        row.ramp_s = started.elapsed().as_secs_f64();
        // Every child's last word: its answer, or its last tick if it gave none.
        row.held = kids.open.iter().sum();
        row.connect_rate = row.held.saturating_sub(held_before) as f64 / row.ramp_s.max(1e-3);
        row.errors = sum_errors(&got);
        held_before = row.held;
        let answered = got.iter().filter(|g| g.is_some()).count();
        std::thread::sleep(Duration::from_secs_f64(cfg.settle));
        row.server_rss_kib = servers_rss_kib(pids);
        row.server_pss_kib = servers_pss_kib(pids);
        row.slab_kib = meminfo_kib("Slab");
        row.mem_available_kib = meminfo_kib("MemAvailable");
        row.swarm_rss_kib = kids.procs.iter().filter_map(|c| proc_rss_kib(c.id())).sum();
        let fds: Vec<u64> = pids.iter().filter_map(|&p| proc_fd_count(p)).collect();
        row.server_fds_max = fds.iter().copied().max().unwrap_or(0);
        row.server_fds_min = fds.iter().copied().min().unwrap_or(0);
        row.sockstat_tcp = std::fs::read_to_string("/proc/net/sockstat")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("TCP:"))
            .unwrap_or("")
            .to_string();
        if row.held > 0 {
            let held = row.held as f64;
            row.server_rss_per_conn_b =
                (row.server_rss_kib as f64 - rep.baseline.server_rss_kib as f64) * 1024.0 / held;
            row.server_rss_total_per_conn_b = row.server_rss_kib as f64 * 1024.0 / held;
            row.slab_per_conn_b = (row.slab_kib as f64 - rep.baseline.slab_kib as f64) * 1024.0 / held;
        }
        eprintln!(
            "step {target}: held {} in {:.1} s ({:.0}/s); servers {} MiB RSS, {} MiB PSS ({:.0} B/conn over baseline); \
             slab +{:.0} B/conn; fds per server {}..{}; {}; sweeping...",
            row.held,
            row.ramp_s,
            row.connect_rate,
            row.server_rss_kib / 1024,
            row.server_pss_kib / 1024,
            row.server_rss_per_conn_b,
            row.slab_per_conn_b,
            row.server_fds_min,
            row.server_fds_max,
            row.sockstat_tcp
        );
        row.sweep = sweep(&mut kids, cfg, t0);
        let errors: u64 = row.errors.values().sum();
        let dead_now = dead(pids);
        row.stopped = if plan.stop.load(Ordering::Relaxed) {
            Some("interrupted (SIGINT/SIGTERM)".into())
        } else if answered < procs {
            Some(format!("{} of {procs} swarm processes did not finish the step", procs - answered))
        } else if low_memory {
            Some(format!("MemAvailable fell below {} MiB", cfg.min_available_mib))
        } else if !dead_now.is_empty() {
            Some(format!("server(s) died: {dead_now:?}"))
        } else if row.held < target as u64 || errors > 0 {
            Some(format!("held {} of {target}, errors {:?}", row.held, row.errors))
        } else if row.sweep.incomplete || row.sweep.echoed < row.sweep.sent {
            Some(format!("echo sweep: {} of {} echoed", row.sweep.echoed, row.sweep.sent))
        } else {
            None
        };
        eprintln!(
            "step {target}: sweep {} of {} echoed in {:.2} s, p50 {} µs, p99 {} µs{}",
            row.sweep.echoed,
            row.sweep.sent,
            row.sweep.time_s,
            row.sweep.latency_us.p50,
            row.sweep.latency_us.p99,
            row.stopped.as_ref().map(|s| format!("; last step: {s}")).unwrap_or_default()
        );
        all_ok &= row.stopped.is_none();
        rep.steps.push(row);
        // Saved after every step: a run cut short (--max-time) keeps them.
        if let Some(path) = json_file {
            let _ = std::fs::write(path, serde_json::to_string_pretty(&rep).unwrap_or_default() + "\n");
        }
    }
    if plan.stop.load(Ordering::Relaxed) {
        // Interrupted (c1m.sh's --max-time): show what we have, then close.
        kids.stop.store(false, Ordering::Relaxed);
        print_markdown(&rep);
    }
    rep.teardown = teardown(&mut kids, cfg, pids, &rep.baseline);
    let td = &rep.teardown;
    rep.ok = all_ok
        && rep.steps.len() == cfg.steps.len()
        && td.fds_back_to_baseline
        && td.dead_servers.is_empty()
        && td.failed_children.is_empty();
    print_markdown(&rep);
    if let Some(path) = json_file {
        let text = serde_json::to_string_pretty(&rep).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("--json-file {}: {e}", path.display());
            return false;
        }
    }
    rep.ok
}

/// One echo sweep over every child.
fn sweep(kids: &mut Kids, cfg: &StepsArgs, t0: Instant) -> SweepResult {
    let started = Instant::now();
    kids.send_all(&format!("sweep {}", cfg.sweep_timeout));
    let got = kids.gather("swept", started + Duration::from_secs_f64(cfg.sweep_timeout + 10.0), |_| {
        eprintln!("[{:>5.0}s] sweeping...", t0.elapsed().as_secs_f64());
    });
    let mut h = new_histogram();
    for v in got.iter().flatten() {
        if let Some(pairs) = v.get("hist").and_then(|x| x.as_array()) {
            for p in pairs {
                let (Some(val), Some(n)) = (p.get(0).and_then(|x| x.as_u64()), p.get(1).and_then(|x| x.as_u64()))
                else {
                    continue;
                };
                let _ = h.record_n(val.max(1), n);
            }
        }
    }
    SweepResult {
        sent: sum_u64(&got, "sent"),
        echoed: sum_u64(&got, "echoed"),
        lost: sum_u64(&got, "lost"),
        time_s: got.iter().flatten().filter_map(|v| v.get("time_s").and_then(|x| x.as_f64())).fold(0.0, f64::max),
        latency_us: Latency::of(&h),
        incomplete: got.iter().any(|g| g.is_none()),
    }
}

/// Close everything, wait for the children, then for the servers' fds.
fn teardown(kids: &mut Kids, cfg: &StepsArgs, pids: &[u32], base: &Baseline) -> Teardown {
    let mut td = Teardown::default();
    eprintln!("closing every connection...");
    kids.send_all("close");
    for w in kids.stdin.iter_mut() {
        *w = None; // stdin's end means close too
    }
    // The children give up their drain after 60 s (then exit, which
    // closes what is left): wait a little longer than that.
    let deadline = Instant::now() + Duration::from_secs(75);
    let _ = kids.gather("result", deadline, |k| {
        eprintln!("  still open in the swarm: {}", k.open.iter().sum::<u64>());
    });
    for (i, c) in kids.procs.iter_mut().enumerate() {
        let status = match c.try_wait() {
            Ok(Some(s)) => Some(s),
            _ => {
                // Give a child that answered a moment to exit, then kill it.
                std::thread::sleep(Duration::from_millis(200));
                match c.try_wait() {
                    Ok(Some(s)) => Some(s),
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        None
                    }
                }
            }
        };
        if !status.is_some_and(|s| s.success()) {
            td.failed_children.push(i);
        }
    }
    let started = Instant::now();
    let wait = Duration::from_secs_f64(cfg.fd_wait);
    loop {
        td.server_fds = pids.iter().map(|&p| proc_fd_count(p).unwrap_or(0)).collect();
        td.fds_back_to_baseline = td.server_fds.iter().zip(&base.server_fds).all(|(now, b)| now <= b);
        if td.fds_back_to_baseline || started.elapsed() >= wait {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    td.wait_s = started.elapsed().as_secs_f64();
    td.dead_servers = dead(pids);
    td.server_rss_kib = servers_rss_kib(pids);
    td.slab_kib = meminfo_kib("Slab");
    eprintln!(
        "closed: server fds {} (baseline {}) after {:.1} s; {} server(s) dead; {} swarm process(es) failed",
        td.server_fds.iter().sum::<u64>(),
        base.server_fds.iter().sum::<u64>(),
        td.wait_s,
        td.dead_servers.len(),
        td.failed_children.len()
    );
    td
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The table on stdout.
fn print_markdown(r: &StepsReport) {
    let mut out = String::new();
    out.push_str(&format!(
        "\n{} server process(es), {} swarm process(es), {} source address(es), target {}\n\n",
        r.server_pids.len(),
        r.procs,
        r.source_ips.len().max(1),
        r.target
    ));
    out.push_str(
        "| step | held | connects/s | server RSS total | server PSS total | server RSS / conn (over baseline) | \
         kernel slab / conn pair | echo sweep | sweep p50 / p99 / max | errors |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n");
    for s in &r.steps {
        let errors: u64 = s.errors.values().sum();
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} MB | {:.1} MB | {:.0} B | {:.0} B | {} / {} echoed in {:.2} s | {:.1} / {:.1} / {:.1} ms | {} |\n",
            thousands(s.target as u64),
            thousands(s.held),
            s.connect_rate,
            s.server_rss_kib as f64 * 1024.0 / 1e6,
            s.server_pss_kib as f64 * 1024.0 / 1e6,
            s.server_rss_per_conn_b,
            s.slab_per_conn_b,
            thousands(s.sweep.echoed),
            thousands(s.sweep.sent),
            s.sweep.time_s,
            s.sweep.latency_us.p50 as f64 / 1000.0,
            s.sweep.latency_us.p99 as f64 / 1000.0,
            s.sweep.latency_us.max as f64 / 1000.0,
            if errors == 0 { "0".to_string() } else { format!("{errors} {:?}", s.errors) },
        ));
    }
    let td = &r.teardown;
    out.push_str(&format!(
        "\nbaseline: servers {:.1} MB RSS ({:.1} MB PSS), slab {:.1} MB. After closing: server fds {} (baseline {}), back to baseline: {} \
         (after {:.1} s); servers dead: {}; swarm processes failed: {}; servers {:.1} MB RSS, slab {:.1} MB.\n",
        r.baseline.server_rss_kib as f64 * 1024.0 / 1e6,
        r.baseline.server_pss_kib as f64 * 1024.0 / 1e6,
        r.baseline.slab_kib as f64 * 1024.0 / 1e6,
        td.server_fds.iter().sum::<u64>(),
        r.baseline.server_fds.iter().sum::<u64>(),
        if td.fds_back_to_baseline { "yes" } else { "NO" },
        td.wait_s,
        td.dead_servers.len(),
        td.failed_children.len(),
        td.server_rss_kib as f64 * 1024.0 / 1e6,
        td.slab_kib as f64 * 1024.0 / 1e6,
    ));
    for s in &r.steps {
        if let Some(why) = &s.stopped {
            out.push_str(&format!("Stopped after step {}: {why}\n", thousands(s.target as u64)));
        }
    }
    out.push_str(&format!("Result: {}\n", if r.ok { "OK" } else { "NOT OK" }));
    print!("{out}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_step() {
        for (total, n) in [(100_000, 7), (1_000_000, 53), (5, 8), (0, 3)] {
            let sum: usize = (0..n).map(|i| share(total, i, n)).sum();
            assert_eq!(sum, total);
            let max = (0..n).map(|i| share(total, i, n)).max().unwrap();
            assert!(max <= total.div_ceil(n));
        }
    }

    #[test]
    fn meminfo_fields_are_read() {
        assert!(meminfo_kib("MemTotal") > 0);
        assert!(meminfo_kib("Slab") > 0);
        assert_eq!(meminfo_kib("NoSuchField"), 0);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
