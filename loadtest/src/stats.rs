//! Counters, the latency histogram, the report every mode ends with, and
//! readings of the server process from `/proc` (CPU time, RSS).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Latency histogram in microseconds: 1 µs to 100 s, 3 significant digits.
/// Recording never allocates (hdrhistogram sizes its buckets up front).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("histogram bounds")
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

/// One point of the percentile distribution: `p` of the samples took at
/// most `us` microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Quantile {
    /// Quantile, 0..1 (0.99 = the 99th percentile).
    pub p: f64,
    /// Latency, µs.
    pub us: u64,
}

/// One interval (about a second) of a run, for the charts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Point {
    /// End of the interval, seconds since the swarm started.
    pub t_s: f64,
    /// Echoes verified per second in the interval.
    pub msgs_per_s: f64,
    /// Handshakes (handshakes mode) or new connections (churn) per second.
    pub connects_per_s: f64,
    /// Connections open at the end of the interval.
    pub open: usize,
    /// Errors counted in the interval.
    pub errors: u64,
    /// `--reconnect` drops in the interval.
    pub drops: u64,
}

impl Latency {
    /// The percentile distribution of `h` (HdrHistogram's iteration by
    /// quantile, 5 steps per halving of the distance to 100%). Empty if `h` is.
    pub fn curve(h: &Histogram<u64>) -> Vec<Quantile> {
        h.iter_quantiles(5).map(|v| Quantile { p: v.quantile_iterated_to(), us: v.value_iterated_to() }).collect()
    }

    /// Summarise `h`.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Readings of the server process, taken by the swarm itself at the edges of
/// the measuring window (`--server-pid`), so no script has to time them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerUsage {
    /// utime+stime of the server over the measuring window, microseconds.
    pub cpu_us: Option<f64>,
    /// `cpu_us` / messages echoed in the window.
    pub cpu_us_per_msg: Option<f64>,
    /// `cpu_us` / handshakes completed in the window.
    pub cpu_us_per_handshake: Option<f64>,
    /// VmRSS before the idle connections were opened, KiB.
    pub rss_before_kib: Option<u64>,
    /// VmRSS once all idle connections were open (after a short settle), KiB.
    pub rss_after_kib: Option<u64>,
    /// (after - before) / connections, bytes.
    pub rss_per_conn_bytes: Option<f64>,
}

/// `--reconnect`: what happened to connections the server closed with 1001
/// (going away) or whose TCP connection dropped, and to their replacements.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reconnects {
    /// Open connections lost, by cause: `close_1001` (the server's Close
    /// 1001; our Close answered it), or the TCP error that ended it (`eof`,
    /// `read_reset`, `write_broken_pipe`, ...). Each queued a reconnect.
    pub drops: BTreeMap<String, u64>,
    /// Sum of `drops`.
    pub dropped: u64,
    /// Lost slots that were open again (upgraded) before the run ended.
    pub reconnected: u64,
    /// Reconnect attempts that failed before the upgrade, by error kind
    /// (`connect_refused` while nothing listens, `http_503`, ...). Each was
    /// retried after a backoff (50 ms doubling to 2 s, with jitter).
    pub failed_attempts: BTreeMap<String, u64>,
    /// Messages written in full but never echoed before the connection was
    /// lost (in-flight messages lost).
    pub lost_in_flight: u64,
    /// Messages queued but not (fully) written when the connection was lost:
    /// the server never had them.
    pub unsent_at_drop: u64,
    /// Slots still without a connection when the run ended.
    pub pending_at_end: u64,
    /// Time from losing a slot (the server's Close, or the drop) to its new
    /// connection's 101, milliseconds: mean and largest.
    pub gap_ms_mean: f64,
    /// See `gap_ms_mean`.
    pub gap_ms_max: f64,
}

/// `wss://`: how the TLS handshakes went (upgraded connections only).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsCounts {
    /// Full handshakes (a HelloRetryRequest included).
    pub full: u64,
    /// Resumed sessions (the server took our ticket or session id).
    pub resumed: u64,
    /// Connections that negotiated TLS 1.3 (the rest: 1.2).
    pub tls13: u64,
}

impl Reconnects {
    /// Add `o` (another process's counts) to these.
    pub fn add(&mut self, o: &Reconnects) {
        for (k, v) in &o.drops {
            *self.drops.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.failed_attempts {
            *self.failed_attempts.entry(k.clone()).or_default() += v;
        }
        let n = self.reconnected + o.reconnected;
        if n > 0 {
            self.gap_ms_mean =
                (self.gap_ms_mean * self.reconnected as f64 + o.gap_ms_mean * o.reconnected as f64) / n as f64;
        }
        self.gap_ms_max = self.gap_ms_max.max(o.gap_ms_max);
        self.dropped += o.dropped;
        self.reconnected = n;
        self.lost_in_flight += o.lost_in_flight;
        self.unsent_at_drop += o.unsent_at_drop;
        self.pending_at_end += o.pending_at_end;
    }
}

/// The result of one run (or of one child process, before the parent sums).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// echo, rate, idle, handshakes or classic.
    pub mode: String,
    /// The target URL.
    pub target: String,
    /// Connections asked for.
    pub conns: usize,
    /// Most connections open at once.
    pub conns_open_max: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages in flight per connection (closed loop).
    pub depth: usize,
    /// Length of the measuring window, seconds.
    pub window_s: f64,
    /// Start of the measuring window, seconds since the swarm started.
    #[serde(default)]
    pub window_start_s: f64,
    /// Messages echoed (and verified) in the window.
    pub msgs: u64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6) per second, one direction.
    pub mb_per_s: f64,
    /// Handshakes completed in the window (handshakes mode).
    pub handshakes: u64,
    /// Handshakes per second.
    pub handshakes_per_s: f64,
    /// Latency in microseconds: message round trip (echo, classic), from the
    /// intended send time (rate), connect-to-101 (handshakes).
    pub latency_us: Latency,
    /// Echoes received and verified over the whole run (warm-up and final
    /// drain included), not just in the window.
    #[serde(default)]
    pub msgs_run: u64,
    /// Echoes that failed verification (wrong bytes, length, opcode, framing
    /// or deflate stream): the sum of those kinds in `errors`.
    #[serde(default)]
    pub corrupted: u64,
    /// Errors by kind, over the whole run (warm-up included).
    pub errors: BTreeMap<String, u64>,
    /// Close frames received from the server, by code.
    pub close_codes: BTreeMap<String, u64>,
    /// Server process readings, if `--server-pid` was given.
    pub server: ServerUsage,
    /// Wire size of the compressed payload (`--compress`), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_size: Option<usize>,
    /// `--reconnect` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<Reconnects>,
    /// `wss://`: full and resumed TLS handshakes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsCounts>,
    /// Server RSS / fd samples (`--server-pid` with `--sample-every`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// The latency percentile distribution (for the chart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_curve: Vec<Quantile>,
    /// One point per second of the run (for the charts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Point>,
    /// The histogram as (value, count) pairs, so a parent can merge children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hist: Vec<(u64, u64)>,
}

impl Report {
    /// Server CPU over the measured window (utime+stime µs at its start and
    /// end), per message and per handshake.
    pub fn set_server_cpu(&mut self, start: Option<f64>, end: Option<f64>) {
        if let (Some(a), Some(b)) = (start, end) {
            let cpu = b - a;
            self.server.cpu_us = Some(cpu);
            if self.msgs > 0 {
                self.server.cpu_us_per_msg = Some(cpu / self.msgs as f64);
            }
            if self.handshakes > 0 {
                self.server.cpu_us_per_handshake = Some(cpu / self.handshakes as f64);
            }
        }
    }

    /// Attach `h` (for merging) and its percentiles.
    pub fn set_histogram(&mut self, h: &Histogram<u64>, keep_raw: bool) {
        self.latency_us = Latency::of(h);
        self.latency_curve = Latency::curve(h);
        if keep_raw {
            self.hist = h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
        }
    }

    /// Sum the reports of several child processes.
    pub fn merge(parts: &[Report]) -> Report {
        let mut out = parts.first().cloned().unwrap_or_default();
        let mut h = new_histogram();
        out.conns = 0;
        out.conns_open_max = 0;
        out.msgs = 0;
        out.msgs_run = 0;
        out.corrupted = 0;
        out.reconnect = parts.first().and_then(|p| p.reconnect.as_ref()).map(|_| Reconnects::default());
        out.tls = parts.first().and_then(|p| p.tls).map(|_| TlsCounts::default());
        out.handshakes = 0;
        out.msgs_per_s = 0.0;
        out.mb_per_s = 0.0;
        out.handshakes_per_s = 0.0;
        out.errors.clear();
        out.close_codes.clear();
        out.window_s = 0.0;
        for p in parts {
            out.conns += p.conns;
            out.conns_open_max += p.conns_open_max;
            out.msgs += p.msgs;
            out.msgs_run += p.msgs_run;
            out.corrupted += p.corrupted;
            if let (Some(a), Some(b)) = (&mut out.reconnect, &p.reconnect) {
                a.add(b);
            }
            if let (Some(a), Some(b)) = (&mut out.tls, &p.tls) {
                a.full += b.full;
                a.resumed += b.resumed;
                a.tls13 += b.tls13;
            }
            out.handshakes += p.handshakes;
            out.msgs_per_s += p.msgs_per_s;
            out.mb_per_s += p.mb_per_s;
            out.handshakes_per_s += p.handshakes_per_s;
            out.window_s = out.window_s.max(p.window_s);
            for (k, v) in &p.errors {
                *out.errors.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &p.close_codes {
                *out.close_codes.entry(k.clone()).or_default() += v;
            }
            for &(v, c) in &p.hist {
                let _ = h.record_n(v.max(1), c);
            }
        }
        out.hist.clear();
        out.latency_us = Latency::of(&h);
        out.latency_curve = Latency::curve(&h);
        // Children tick about once a second from about the same start: add
        // their points up by index.
        out.series.clear();
        for p in parts {
            if out.series.len() < p.series.len() {
                out.series.resize(p.series.len(), Point::default());
            }
            for (o, q) in out.series.iter_mut().zip(&p.series) {
                o.t_s = o.t_s.max(q.t_s);
                o.msgs_per_s += q.msgs_per_s;
                o.connects_per_s += q.connects_per_s;
                o.open += q.open;
                o.errors += q.errors;
                o.drops += q.drops;
            }
        }
        out
    }

    /// The human-readable final table.
    pub fn print_table(&self) {
        let e = |s: &str| eprintln!("{s}");
        e("");
        e(&format!("  mode        {} -> {}", self.mode, self.target));
        e(&format!("  conns       {} asked, {} open at most", self.conns, self.conns_open_max));
        if let Some(z) = self.compressed_size {
            e(&format!("  compressed  {} B payload -> {} B on the wire (permessage-deflate)", self.size, z));
        }
        if self.mode != "handshakes" && self.mode != "idle" {
            e(&format!(
                "  messages    {} in {:.2} s, {} B each, depth {}",
                self.msgs, self.window_s, self.size, self.depth
            ));
            e(&format!("  throughput  {:.0} msgs/s, {:.2} MB/s", self.msgs_per_s, self.mb_per_s));
        }
        if self.mode == "churn" {
            e(&format!(
                "  connects    {} in {:.2} s = {:.0}/s (each closed with 1000 after its lifetime)",
                self.handshakes, self.window_s, self.handshakes_per_s
            ));
        }
        if self.mode == "handshakes" {
            e(&format!("  handshakes  {} in {:.2} s = {:.0}/s", self.handshakes, self.window_s, self.handshakes_per_s));
        }
        if self.latency_us.count > 0 {
            let l = &self.latency_us;
            e(&format!(
                "  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {:.1}, n {})",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.count
            ));
        }
        if let Some(c) = self.server.cpu_us {
            e(&format!("  server cpu  {:.0} µs in window", c));
        }
        if let Some(c) = self.server.cpu_us_per_msg {
            e(&format!("  server cpu  {:.3} µs per message", c));
        }
        if let Some(c) = self.server.cpu_us_per_handshake.filter(|_| self.mode == "handshakes") {
            e(&format!("  server cpu  {:.2} µs per handshake", c));
        }
        if let (Some(b), Some(a)) = (self.server.rss_before_kib, self.server.rss_after_kib) {
            e(&format!(
                "  server rss  {} KiB -> {} KiB = {:.0} B per connection",
                b,
                a,
                self.server.rss_per_conn_bytes.unwrap_or(0.0)
            ));
        }
        if self.errors.is_empty() {
            e("  errors      none");
        } else {
            for (k, v) in &self.errors {
                e(&format!("  error       {k}: {v}"));
            }
        }
        for (k, v) in &self.close_codes {
            e(&format!("  close code  {k}: {v}"));
        }
        if self.mode != "handshakes" && self.mode != "idle" {
            e(&format!("  verified    {} echoes over the whole run, {} corrupted", self.msgs_run, self.corrupted));
        }
        if let Some(t) = &self.tls {
            e(&format!(
                "  tls         {} full handshakes, {} resumed; {} TLS 1.3, {} TLS 1.2",
                t.full,
                t.resumed,
                t.tls13,
                t.full + t.resumed - t.tls13
            ));
        }
        if let Some(r) = &self.reconnect {
            let drops: Vec<String> = r.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
            e(&format!(
                "  reconnect   {} dropped ({}), {} reconnected, {} still down at the end",
                r.dropped,
                if drops.is_empty() { "none".to_string() } else { drops.join(", ") },
                r.reconnected,
                r.pending_at_end
            ));
            e(&format!(
                "  reconnect   {} in-flight messages lost (written, never echoed), {} unsent",
                r.lost_in_flight, r.unsent_at_drop
            ));
            if r.reconnected > 0 {
                e(&format!(
                    "  reconnect   gap to the new 101: mean {:.1} ms, max {:.1} ms",
                    r.gap_ms_mean, r.gap_ms_max
                ));
            }
            for (k, v) in &r.failed_attempts {
                e(&format!("  reconnect   failed attempt {k}: {v} (retried)"));
            }
        }
        if !self.samples.is_empty() {
            e("  server samples (t s, what, VmRSS KiB, open fds, client conns open):");
            for s in &self.samples {
                e(&format!("    {:>7.1}  {:<8}  {:>8}  {:>6}  {:>6}", s.t_s, s.what, s.rss_kib, s.fds, s.open));
            }
        }
    }
}

/// One reading of the server process during a long run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the swarm started.
    pub t_s: f64,
    /// `all_open`, `run` or `end`.
    pub what: String,
    /// VmRSS, KiB (0 if unreadable).
    pub rss_kib: u64,
    /// Entries in /proc/PID/fd (0 if unreadable).
    pub fds: u64,
    /// Client connections open at that moment (this swarm's count).
    pub open: usize,
}

impl Sample {
    /// Read the server's RSS and fd count now.
    pub fn take(pid: u32, what: &str, t: std::time::Duration, open: usize) -> Sample {
        Sample {
            t_s: t.as_secs_f64(),
            what: what.into(),
            rss_kib: proc_rss_kib(pid).unwrap_or(0),
            fds: proc_fd_count(pid).unwrap_or(0),
            open,
        }
    }

    /// One live line on stderr.
    pub fn print(&self) {
        eprintln!(
            "[{:>6.1}s] server sample {:<8} VmRSS {} KiB  fds {}  (client open {})",
            self.t_s, self.what, self.rss_kib, self.fds, self.open
        );
    }
}

/// Open file descriptors of process `pid`.
pub fn proc_fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// utime + stime of process `pid` (all its threads), in microseconds.
pub fn proc_cpu_us(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) * 1e6 / hz)
}

/// VmRSS of process `pid`, KiB.
/// A process's proportional set size (KiB), from `/proc/PID/smaps_rollup`:
/// its private pages plus its share of pages it maps with others. Summed
/// over processes of one binary this counts the shared code once, where a
/// VmRSS sum counts it once per process.
pub fn proc_pss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A process's VmRSS (KiB), from `/proc/PID/status`.
pub fn proc_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_reconnects_sum_counts_and_weight_the_mean_gap() {
        let a = Reconnects {
            drops: [("close_1001".to_string(), 3)].into(),
            dropped: 3,
            reconnected: 3,
            gap_ms_mean: 10.0,
            gap_ms_max: 12.0,
            lost_in_flight: 1,
            ..Default::default()
        };
        let b = Reconnects {
            drops: [("close_1001".to_string(), 1), ("eof".to_string(), 1)].into(),
            dropped: 2,
            reconnected: 1,
            gap_ms_mean: 30.0,
            gap_ms_max: 30.0,
            pending_at_end: 1,
            ..Default::default()
        };
        let parts = [a, b].map(|rc| Report { reconnect: Some(rc), ..Default::default() });
        let m = Report::merge(&parts).reconnect.expect("reconnect counts kept");
        assert_eq!(m.drops, [("close_1001".to_string(), 4), ("eof".to_string(), 1)].into());
        assert_eq!((m.dropped, m.reconnected, m.lost_in_flight, m.pending_at_end), (5, 4, 1, 1));
        assert_eq!((m.gap_ms_mean, m.gap_ms_max), (15.0, 30.0));
    }
}
