//! Prometheus metrics: what each reactor counts, and how the counts of all
//! reactors are exposed.
//!
//! Each reactor owns one `ReactorMetrics`: plain 64-bit cells that only
//! that reactor writes (a relaxed load and store — no read-modify-write, no
//! lock, no shared cache line with another reactor) and that the metrics
//! thread reads at scrape time. The hot echo path adds to two cells per data
//! frame (messages and bytes, by opcode); everything else is counted once
//! per connection event. Gauges that change everywhere (pool bytes, held
//! input, inflaters) are published once per reactor wakeup.
//!
//! [`Metrics`] sums the reactors when scraped and writes the Prometheus text
//! format (0.0.4) with the `prometheus-client` crate's encoder.

use super::conn::Phase;
use super::ctx::DropReason;
use crate::proto::CloseCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The `Content-Type` of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A 64-bit cell written by one thread (its reactor) and read by others.
/// `add` is a relaxed load and store, not an atomic add: with one writer
/// nothing is lost, and on x86-64 it compiles to a plain `add` to memory.
#[derive(Debug, Default)]
pub(crate) struct Cell(AtomicU64);

impl Cell {
    /// Add `n` (wrapping). Only the owning reactor may call this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Subtract `n` (wrapping; a gauge going down). Owning reactor only.
    #[inline]
    pub(crate) fn sub(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_sub(n), Ordering::Relaxed);
    }

    /// Overwrite (a gauge). Owning reactor only.
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value (any thread).
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// HTTP statuses an upgrade can be refused with (those
/// `handshake::write_response` names); anything else counts as "other".
pub(crate) const STATUSES: [u16; 8] = [400, 403, 404, 405, 408, 431, 500, 503];

/// Close codes we can put in a Close frame, one counter each: 1000–1014
/// except the three that must never be sent (1004 reserved, 1005 and 1006
/// RFC 6455 §7.4.1 "MUST NOT be set as a status code in a Close control
/// frame"). Codes a peer chose (3000–4999, echoed back) count as "other";
/// an empty Close (echoing one without a code) as "none".
const CODES: [u16; 12] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014];
/// Index of "other" in the close-code cells.
const CODE_OTHER: usize = CODES.len();
/// Index of "none" in the close-code cells.
const CODE_NONE: usize = CODES.len() + 1;

/// The cell index of close code `code` (None: an empty Close).
fn code_index(code: Option<CloseCode>) -> usize {
    match code {
        None => CODE_NONE,
        Some(c) => CODES.iter().position(|&k| k == c.0).unwrap_or(CODE_OTHER),
    }
}

/// Upper bounds of the handshake latency buckets, in microseconds: 100 µs
/// (loopback) to 10 s (the default handshake timeout).
const HANDSHAKE_BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 2_500_000, 10_000_000];

/// Connection phases, in the order of the `phase` gauge's cells.
pub(crate) const PHASES: [&str; 3] = ["handshaking", "open", "closing"];
/// Cell of [`Phase::Handshaking`].
pub(crate) const PHASE_HANDSHAKING: usize = 0;
/// Cell of [`Phase::Open`].
pub(crate) const PHASE_OPEN: usize = 1;
/// Cell of [`Phase::Closing`].
pub(crate) const PHASE_CLOSING: usize = 2;

/// The `phase` cell a connection in `p` is counted in.
pub(crate) fn phase_index(p: &Phase) -> usize {
    match p {
        Phase::Handshaking(_) => PHASE_HANDSHAKING,
        Phase::Open(_) => PHASE_OPEN,
        Phase::Closing { .. } => PHASE_CLOSING,
    }
}

/// Opcodes of echoed data, in the order of the per-opcode cells.
const OPCODES: [&str; 2] = ["text", "binary"];

/// Everything one reactor counts. Written only by its reactor thread.
#[derive(Debug, Default)]
pub(crate) struct ReactorMetrics {
    /// Connections accepted and kept.
    pub(crate) accepted: Cell,
    /// Connections answered 503 at accept (over max-connections, or
    /// draining).
    pub(crate) refused: Cell,
    /// Connections now in each phase ([`PHASES`] order).
    pub(crate) phase: [Cell; 3],
    /// Upgrade requests answered with an HTTP error, by status
    /// ([`STATUSES`] order, then "other").
    pub(crate) rejected: [Cell; STATUSES.len() + 1],
    /// Connections dropped, by reason (`DropReason as usize`).
    pub(crate) closed: [Cell; DropReason::ALL.len()],
    /// Close frames we sent, by code (see [`code_index`]).
    pub(crate) close_sent: [Cell; CODES.len() + 2],
    /// Protocol errors (connections failed with a Close), by close code.
    pub(crate) protocol_errors: [Cell; CODES.len() + 2],
    /// Complete data messages echoed, by opcode (text, binary).
    pub(crate) messages: [Cell; 2],
    /// Payload bytes of data frames echoed, by opcode.
    pub(crate) bytes: [Cell; 2],
    /// Times a connection stopped being read for backpressure (its own
    /// unsent bytes, or the write-chunk pool at its cap).
    pub(crate) backpressure_pauses: Cell,
    /// Keepalive pings sent.
    pub(crate) pings: Cell,
    /// Write-chunk bytes lent out, and the cap (published per wakeup).
    pub(crate) pool_bytes: Cell,
    pub(crate) pool_cap: Cell,
    /// Input held for unfinished frames and request heads, and its cap.
    pub(crate) held_bytes: Cell,
    pub(crate) held_cap: Cell,
    /// zlib inflaters lent out, and the cap.
    pub(crate) inflaters: Cell,
    pub(crate) inflaters_cap: Cell,
    /// Handshake latency: observations per bucket
    /// ([`HANDSHAKE_BUCKETS_US`], then +Inf), not cumulative.
    pub(crate) handshake_buckets: [Cell; HANDSHAKE_BUCKETS_US.len() + 1],
    /// Sum of the handshake latencies, in microseconds.
    pub(crate) handshake_sum_us: Cell,
}

impl ReactorMetrics {
    /// Count an upgrade refused with HTTP `status`.
    pub(crate) fn rejected(&self, status: u16) {
        let i = STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len());
        self.rejected[i].add(1);
    }

    /// Count a Close frame we sent with `code` (None: empty).
    pub(crate) fn close_sent(&self, code: Option<CloseCode>) {
        self.close_sent[code_index(code)].add(1);
    }

    /// Count a protocol error that failed a connection with `code`.
    pub(crate) fn protocol_error(&self, code: CloseCode) {
        self.protocol_errors[code_index(Some(code))].add(1);
    }

    /// Count one echoed data frame: `binary` picks the opcode, `fin` ends a
    /// message, `len` payload bytes. The hot path: two cell adds.
    #[inline]
    pub(crate) fn echoed(&self, binary: bool, fin: bool, len: usize) {
        let i = usize::from(binary);
        self.messages[i].add(u64::from(fin));
        self.bytes[i].add(len as u64);
    }

    /// Count `messages` echoed whole single-frame messages of one opcode
    /// carrying `len` payload bytes in all (a run of the short-frame fast
    /// path): the same totals as `echoed` once per frame.
    #[inline]
    pub(crate) fn echoed_run(&self, binary: bool, messages: usize, len: usize) {
        let i = usize::from(binary);
        self.messages[i].add(messages as u64);
        self.bytes[i].add(len as u64);
    }

    /// Record one completed handshake that took `us` microseconds.
    pub(crate) fn handshake(&self, us: u64) {
        let i = HANDSHAKE_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(HANDSHAKE_BUCKETS_US.len());
        self.handshake_buckets[i].add(1);
        self.handshake_sum_us.add(us);
    }

    /// A connection moved from phase `from` to phase `to` (indices into
    /// [`PHASES`]; None: not counted before / gone after).
    #[inline]
    pub(crate) fn phase_change(&self, from: Option<usize>, to: Option<usize>) {
        if let Some(f) = from {
            self.phase[f].sub(1);
        }
        if let Some(t) = to {
            self.phase[t].add(1);
        }
    }

    /// Messages echoed so far, all opcodes (the summary line).
    pub(crate) fn messages_total(&self) -> u64 {
        self.messages.iter().map(Cell::get).sum()
    }

    /// Payload bytes echoed so far, all opcodes (the summary line).
    pub(crate) fn bytes_total(&self) -> u64 {
        self.bytes.iter().map(Cell::get).sum()
    }
}

/// What `wsecho_build_info` reports besides the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// Reactor threads.
    pub threads: usize,
    /// permessage-deflate mode, as the `--compression` flag spells it.
    pub compression: String,
}

/// The metrics of a set of reactors, summed at scrape time: a
/// `prometheus-client` [`Collector`]. Cheap to clone; reading never blocks a
/// reactor.
#[derive(Debug, Clone)]
pub struct Metrics {
    reactors: Vec<Arc<ReactorMetrics>>,
    build: BuildInfo,
}

impl Metrics {
    /// Metrics over `reactors`, labelled with `build`.
    pub(crate) fn new(reactors: Vec<Arc<ReactorMetrics>>, build: BuildInfo) -> Metrics {
        Metrics { reactors, build }
    }

    /// The sum over reactors of the cell `pick` selects.
    fn sum(&self, pick: impl Fn(&ReactorMetrics) -> &Cell) -> u64 {
        self.reactors.iter().map(|r| pick(r).get()).fold(0, u64::wrapping_add)
    }

    /// Every metric in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).expect("writing to a String");
        out
    }
}

/// One metric family of `kind` with a label `key`, a series per
/// (label value, value).
fn family<'v>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    key: &str,
    series: impl IntoIterator<Item = (&'v str, u64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (value, v) in series {
        let labels = [(key, value)];
        let e = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(e)?,
            _ => ConstGauge::new(v as i64).encode(e)?,
        }
    }
    Ok(())
}

/// One metric without labels.
fn single(enc: &mut DescriptorEncoder, name: &str, help: &str, kind: MetricType, v: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(v as i64).encode(m),
    }
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        use MetricType::{Counter, Gauge};
        let e = &mut enc;
        {
            let threads = self.build.threads.to_string();
            let labels = [
                ("version", env!("CARGO_PKG_VERSION")),
                ("threads", threads.as_str()),
                ("compression", self.build.compression.as_str()),
            ];
            let mut m = e.encode_descriptor("wsecho_build_info", "Build and configuration; always 1.", None, Gauge)?;
            ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        }
        family(
            e,
            "wsecho_connections",
            "Connections held now, by phase.",
            Gauge,
            "phase",
            // A connection is counted in one reactor's cells only, but a
            // read may see a transition half done (-1 here, +1 not yet
            // there): clamp the sum at 0.
            PHASES.iter().enumerate().map(|(i, &p)| (p, (self.sum(|r| &r.phase[i]) as i64).max(0) as u64)),
        )?;
        single(e, "wsecho_connections_accepted", "Connections accepted.", Counter, self.sum(|r| &r.accepted))?;
        single(
            e,
            "wsecho_connections_refused",
            "Connections answered 503 at accept (over --max-connections, or draining).",
            Counter,
            self.sum(|r| &r.refused),
        )?;
        let statuses: Vec<String> = STATUSES.iter().map(u16::to_string).chain(["other".into()]).collect();
        family(
            e,
            "wsecho_upgrade_rejections",
            "Upgrade requests answered with an HTTP error, by status.",
            Counter,
            "status",
            statuses.iter().enumerate().map(|(i, s)| (s.as_str(), self.sum(|r| &r.rejected[i]))),
        )?;
        family(
            e,
            "wsecho_connections_closed",
            "Connections dropped, by reason.",
            Counter,
            "reason",
            DropReason::ALL.iter().map(|&why| (why.as_str(), self.sum(|r| &r.closed[why as usize]))),
        )?;
        let codes: Vec<String> = CODES.iter().map(u16::to_string).chain(["other".into(), "none".into()]).collect();
        family(
            e,
            "wsecho_close_frames_sent",
            "Close frames sent (replies to the peer's and our own), by close code; 'other' is a peer's \
             3000-4999 code echoed back, 'none' an empty Close echoed.",
            Counter,
            "code",
            codes.iter().enumerate().map(|(i, c)| (c.as_str(), self.sum(|r| &r.close_sent[i]))),
        )?;
        family(
            e,
            "wsecho_protocol_errors",
            "Connections failed for breaking the protocol, by the close code sent.",
            Counter,
            "code",
            codes.iter().enumerate().take(CODES.len()).map(|(i, c)| (c.as_str(), self.sum(|r| &r.protocol_errors[i]))),
        )?;
        family(
            e,
            "wsecho_messages_echoed",
            "Complete data messages echoed, by opcode.",
            Counter,
            "opcode",
            OPCODES.iter().enumerate().map(|(i, &o)| (o, self.sum(|r| &r.messages[i]))),
        )?;
        family(
            e,
            "wsecho_echoed_bytes",
            "Payload bytes of data frames echoed, by opcode.",
            Counter,
            "opcode",
            OPCODES.iter().enumerate().map(|(i, &o)| (o, self.sum(|r| &r.bytes[i]))),
        )?;
        single(
            e,
            "wsecho_backpressure_pauses",
            "Times a connection stopped being read because its unsent bytes or the write-chunk pool were \
             over their caps.",
            Counter,
            self.sum(|r| &r.backpressure_pauses),
        )?;
        single(
            e,
            "wsecho_keepalive_pings",
            "Keepalive pings sent to idle connections.",
            Counter,
            self.sum(|r| &r.pings),
        )?;
        single(e, "wsecho_write_pool_bytes", "Write-chunk bytes lent out.", Gauge, self.sum(|r| &r.pool_bytes))?;
        single(
            e,
            "wsecho_write_pool_limit_bytes",
            "Cap on write-chunk bytes lent out (--max-pool-bytes).",
            Gauge,
            self.sum(|r| &r.pool_cap),
        )?;
        single(
            e,
            "wsecho_held_input_bytes",
            "Input bytes held for unfinished frames and request heads.",
            Gauge,
            self.sum(|r| &r.held_bytes),
        )?;
        single(
            e,
            "wsecho_held_input_limit_bytes",
            "Cap on held input (--max-held-input).",
            Gauge,
            self.sum(|r| &r.held_cap),
        )?;
        single(e, "wsecho_inflaters", "zlib inflaters in use.", Gauge, self.sum(|r| &r.inflaters))?;
        single(
            e,
            "wsecho_inflaters_limit",
            "Cap on inflaters in use (--max-inflaters).",
            Gauge,
            self.sum(|r| &r.inflaters_cap),
        )?;
        {
            let mut m = e.encode_descriptor(
                "wsecho_handshake_duration_seconds",
                "Time from accepting a connection to sending its 101 (successful upgrades only).",
                None,
                MetricType::Histogram,
            )?;
            let mut buckets: Vec<(f64, u64)> = HANDSHAKE_BUCKETS_US
                .iter()
                .enumerate()
                .map(|(i, &b)| (b as f64 / 1e6, self.sum(|r| &r.handshake_buckets[i])))
                .collect();
            buckets.push((f64::INFINITY, self.sum(|r| &r.handshake_buckets[HANDSHAKE_BUCKETS_US.len()])));
            let count = buckets.iter().map(|b| b.1).sum();
            let sum = self.sum(|r| &r.handshake_sum_us) as f64 / 1e6;
            m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_to_their_cell_and_unknown_ones_to_other() {
        assert_eq!(code_index(Some(CloseCode(1000))), 0);
        assert_eq!(code_index(Some(CloseCode(1014))), CODES.len() - 1);
        assert_eq!(code_index(Some(CloseCode(4000))), CODE_OTHER);
        assert_eq!(code_index(None), CODE_NONE);
    }

    #[test]
    fn render_sums_reactors_and_names_follow_conventions() {
        let a = Arc::new(ReactorMetrics::default());
        let b = Arc::new(ReactorMetrics::default());
        a.accepted.add(2);
        b.accepted.add(3);
        a.echoed(false, true, 10);
        b.echoed(true, false, 7);
        b.echoed(true, true, 1);
        a.handshake(50);
        b.handshake(20_000_000);
        a.rejected(400);
        b.rejected(418);
        let m = Metrics::new(vec![a, b], BuildInfo { threads: 2, compression: "off".into() });
        let text = m.render();
        for line in [
            "wsecho_connections_accepted_total 5",
            "wsecho_messages_echoed_total{opcode=\"text\"} 1",
            "wsecho_messages_echoed_total{opcode=\"binary\"} 1",
            "wsecho_echoed_bytes_total{opcode=\"binary\"} 8",
            "wsecho_upgrade_rejections_total{status=\"400\"} 1",
            "wsecho_upgrade_rejections_total{status=\"other\"} 1",
            "wsecho_handshake_duration_seconds_bucket{le=\"0.0001\"} 1",
            "wsecho_handshake_duration_seconds_bucket{le=\"+Inf\"} 2",
            "wsecho_handshake_duration_seconds_count 2",
            "wsecho_handshake_duration_seconds_sum 20.00005",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("wsecho_build_info{version=\""), "{text}");
    }
}
