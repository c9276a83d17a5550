//! The swarm: one mio event loop driving every client connection of this
//! process. Connections are opened at a bounded pace (ramp-up), upgraded,
//! then driven by the mode: closed-loop echo, open-loop rate, idle holding,
//! or handshake cycling.

use crate::conn::{Conn, MsgSpec, PayloadKind, Phase, RxEvent, Shared};
use crate::net::{connect, err_name};
use crate::stats::{self, new_histogram, Reconnects, Report};
use crate::tls::Transport;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mio::event::Event;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the swarm does once a connection is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Closed loop: `depth` messages in flight per connection.
    Echo,
    /// Open loop: a fixed total rate, latency from intended send time.
    Rate,
    /// Hold connections open.
    Idle,
    /// Connect, upgrade, close, repeat.
    Handshakes,
    /// Closed loop, depth 1, `Msg/sec: X` every 4 s (uWS load_test style).
    Classic,
    /// Closed loop, depth 1; every connection closes (Close 1000) after a
    /// random lifetime and is replaced by a new one.
    Churn,
    /// A child of `steps` (the C1M benchmark): opens connections, holds
    /// them, and runs echo sweeps when its parent says so on stdin.
    Steps,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Rate => "rate",
            Mode::Idle => "idle",
            Mode::Handshakes => "handshakes",
            Mode::Classic => "classic",
            Mode::Churn => "churn",
            Mode::Steps => "steps",
        }
    }
}

/// Everything one swarm process needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The mode.
    pub mode: Mode,
    /// The original ws:// URL (for the report).
    pub url: String,
    /// Server address (loopback only).
    pub addr: SocketAddr,
    /// Host header.
    pub host: String,
    /// Request path.
    pub path: String,
    /// Connections (handshakes mode: concurrency).
    pub conns: usize,
    /// Messages in flight per connection (closed loop).
    pub depth: usize,
    /// Payload bytes.
    pub size: usize,
    /// Text frames (else binary).
    pub text: bool,
    /// Payload content.
    pub kind: PayloadKind,
    /// Send compressed (permessage-deflate) at this zlib level.
    pub compress: Option<u32>,
    /// Verify compressed echoes by inflating them, even when the agreement
    /// would allow a verbatim (passthrough) echo.
    pub inflate_echo: bool,
    /// Churn mode: a connection's lifetime is uniform in this range.
    pub lifetime: (Duration, Duration),
    /// Sample the server's RSS and open fds this often (with `server_pid`).
    pub sample_every: Option<Duration>,
    /// Total messages per second (rate mode).
    pub rate: f64,
    /// Measuring window.
    pub duration: Duration,
    /// Warm-up before the window.
    pub warmup: Duration,
    /// Idle mode: send a Ping this often.
    pub ping_every: Option<Duration>,
    /// Bind client sockets to these addresses, round robin.
    pub source_ips: Vec<IpAddr>,
    /// First source index (children offset it so they spread the load).
    pub source_offset: usize,
    /// Most connects/upgrades in progress at once during ramp-up.
    pub ramp: usize,
    /// Read the server's CPU and RSS from /proc.
    pub server_pid: Option<u32>,
    /// Idle mode: wait this long after the last open before reading RSS.
    pub settle: Duration,
    /// Running as a child of `--procs`: JSON lines on stdout, no bars.
    pub child: bool,
    /// No progress bar or live line.
    pub quiet: bool,
    /// Print `Msg/sec` lines this often (classic mode).
    pub classic_every: Duration,
    /// Set by SIGINT/SIGTERM (registered with signal-hook in main): finish
    /// the run and report.
    pub stop: Arc<AtomicBool>,
    /// Reconnect a slot whose connection the server closed with 1001 or
    /// whose TCP connection dropped (echo, rate and idle modes).
    pub reconnect: bool,
    /// `wss://`: TLS on every connection.
    pub tls: Option<crate::tls::TlsClient>,
}

/// Live counters.
#[derive(Debug, Default)]
struct Counters {
    msgs_total: u64,
    msgs_window: u64,
    hs_total: u64,
    hs_window: u64,
    open: usize,
    open_max: usize,
    /// Connections in `Connecting` or `Handshaking`.
    in_progress: usize,
    errors: BTreeMap<String, u64>,
    errors_total: u64,
    close_codes: BTreeMap<String, u64>,
    /// Echoes that failed verification.
    corrupted: u64,
    /// Connections whose first connect was part of the ramp-up (ids 1..=n)
    /// and that are no longer connecting (open or failed).
    initial_limit: u64,
    initial_settled: u64,
}

impl Counters {
    fn err(&mut self, kind: &str) {
        self.errors_total += 1;
        if let Some(v) = self.errors.get_mut(kind) {
            *v += 1;
        } else {
            self.errors.insert(kind.to_string(), 1);
        }
    }
}

/// Print one JSON event line on stdout (child mode and script markers).
pub fn emit(v: serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// The run's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Ramp,
    Warmup,
    Window,
    Drain,
}

/// Where the run is in time.
#[derive(Debug)]
struct Clock {
    /// The swarm's start: every `*_ns` time counts from here.
    t0: Instant,
    stage: Stage,
    /// When the current stage ends (None: the ramp-up ends when it is done).
    stage_end: Option<Instant>,
    window_start: Instant,
    window_end: Instant,
    /// The ramp-up gives up at this time (30 s + 1 ms per connection).
    ramp_deadline: Instant,
    /// Idle mode: read the server's RSS at this time (after `--settle`).
    settle_at: Option<Instant>,
    /// Idle mode: the `all_open` line was printed.
    announced_open: bool,
}

impl Clock {
    /// `t` as nanoseconds since the start.
    fn ns(&self, t: Instant) -> u64 {
        t.duration_since(self.t0).as_nanos() as u64
    }

    /// The current stage has a deadline and it has passed.
    fn stage_over(&self, now: Instant) -> bool {
        self.stage_end.is_some_and(|e| now >= e)
    }
}

/// Readings of the server process (`--server-pid`).
#[derive(Debug, Default)]
struct Probe {
    pid: Option<u32>,
    /// Server CPU time (µs) at the start and end of the measuring window.
    cpu_start: Option<f64>,
    cpu_end: Option<f64>,
    /// Server VmRSS (KiB) before the run and once all idle connections are open.
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    /// RSS / fd samples (`--sample-every`), and when the last one was taken.
    samples: Vec<stats::Sample>,
    last_sample: Option<Instant>,
}

impl Probe {
    fn cpu_now(&self) -> Option<f64> {
        self.pid.and_then(stats::proc_cpu_us)
    }

    /// Take one RSS / fd sample (if there is a server to read).
    fn sample(&mut self, what: &str, t: Duration, open: usize, show: bool) {
        if let Some(pid) = self.pid {
            let s = stats::Sample::take(pid, what, t, open);
            if show {
                s.print();
            }
            self.samples.push(s);
        }
    }
}

/// Churn mode: connection lifetimes, uniform in `lo..=hi` ns (xorshift64).
#[derive(Debug)]
struct Lifetimes {
    rng: u64,
    lo: u64,
    hi: u64,
}

impl Lifetimes {
    fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn next_ns(&mut self) -> u64 {
        self.lo + self.next_u64() % (self.hi.saturating_sub(self.lo) + 1)
    }
}

/// `--reconnect`: a failed attempt to restore a slot waits this long, doubled
/// per further failure up to `RETRY_MAX` (times 0.5..1.0 at random, so slots
/// lost together do not retry in lockstep).
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between two reconnect attempts of one slot.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// An error kind that means the TCP connection went away (not a protocol or
/// verification failure): the connection ended at EOF or a socket error.
fn is_tcp_drop(kind: &str) -> bool {
    kind == "eof" || kind == "eof_after_server_close" || kind.starts_with("read_") || kind.starts_with("write_")
}

/// When the periodic jobs last ran, and the counters they diff against.
#[derive(Debug)]
struct Ticks {
    /// The once-a-second live line (or child `tick` event).
    last_tick: Instant,
    tick_msgs: u64,
    tick_hs: u64,
    /// Classic mode's `Msg/sec` line.
    last_classic: Instant,
    classic_msgs: u64,
    /// Idle mode's pings.
    last_ping: Instant,
    /// The stale-connection sweep.
    last_sweep: Instant,
    /// Counts at the last tick, for the per-second series.
    tick_errors: u64,
    tick_drops: u64,
}

/// How reading a connection ended.
#[derive(Debug)]
enum End {
    /// Drained to `WouldBlock`; still alive.
    Alive,
    /// Failed: count this error kind (unless it is part of the final drain).
    Dead(String),
    /// An echo failed verification (or the frames around it were malformed).
    Corrupt(&'static str),
    /// The peer closed TCP.
    Eof,
}

/// Progress of the server's upgrade response.
#[derive(Debug)]
enum Upgrade {
    /// The head is not complete yet.
    Pending,
    /// Refused or malformed: this error kind.
    Failed(String),
    /// Upgraded; frames start at this offset of the bytes just read.
    Done(usize),
}

/// Everything of a run but the connections, the poller and the read buffer
/// (so a connection can be borrowed from the slab while this is updated).
#[derive(Debug)]
struct State<'p> {
    plan: &'p Plan,
    sh: Shared,
    /// Messages in flight per connection (0 for modes that send none).
    depth: usize,
    clock: Clock,
    c: Counters,
    hist: Histogram<u64>,
    probe: Probe,
    /// Rate-mode sends and churn-mode lifetimes: (due ns, slab key, conn id).
    timers: BinaryHeap<Reverse<(u64, usize, u64)>>,
    /// Rate mode: time between two sends of one connection, ns.
    rate_interval_ns: u64,
    life: Lifetimes,
    ticks: Ticks,
    /// `--reconnect`: lost slots waiting for a new connection:
    /// (due ns, attempt number, ns the slot was lost).
    retries: BinaryHeap<Reverse<(u64, u32, u64)>>,
    /// `--reconnect` counts.
    rc: Reconnects,
    /// `wss://`: full and resumed handshakes.
    tls: stats::TlsCounts,
    /// One point per tick (about a second): the charts' time series.
    series: Vec<stats::Point>,
    /// Sum of reconnect gaps, ns (for the mean).
    gap_ns_sum: u64,
    /// Id of the last connection started (ids start at 1 and are never reused).
    next_id: u64,
    /// Connects started (ramp-up accounting; not handshakes mode).
    attempts: usize,
    /// Connects the ramp-up makes in all: `plan.conns`, or (steps mode)
    /// the number the parent last asked for.
    target: usize,
    /// Steps mode: commands from the parent, and the sweep in progress.
    ctl: Option<Control>,
    bar: Option<ProgressBar>,
    /// Live lines on stderr (not a child, not --quiet).
    show: bool,
}

/// The token of the waker that announces a command from the parent on
/// stdin (steps mode); no connection ever gets it (slab keys stay far below).
const CONTROL: Token = Token(usize::MAX);

/// Steps mode: what the parent process drives over this child's stdin, one
/// command a line:
/// - `open N SECS`: make connects until N were attempted in all (at most
///   `--ramp` in progress), giving up after SECS; then print
///   `{"ev":"opened",...}` with the open count and the errors so far;
/// - `stop`: make no further connects (the parent saw memory run low);
/// - `sweep SECS`: every open connection sends one message; once every echo
///   is in (verified), or lost with its connection, or SECS passed, print
///   `{"ev":"swept",...}` with the counts, the time and the latency histogram;
/// - `close` (or stdin's end): close everything politely and report.
#[derive(Debug)]
struct Control {
    rx: std::sync::mpsc::Receiver<String>,
    /// Kept alive for the reader thread (dropping it unregisters the waker).
    _waker: Arc<mio::Waker>,
    sweep: Option<Sweep>,
}

/// One echo sweep in progress.
#[derive(Debug)]
struct Sweep {
    start: Instant,
    deadline: Instant,
    /// Messages sent (one per open connection).
    sent: u64,
    /// `msgs_total` when the sweep began (echoes since = this sweep's).
    base: u64,
    /// Messages whose connection ended before the echo came.
    lost: u64,
}

/// One swarm process: the connections and the event loop around them.
#[derive(Debug)]
struct Swarm<'p> {
    conns: Slab<Conn>,
    poll: Poll,
    /// One read buffer for every connection.
    rbuf: Vec<u8>,
    st: State<'p>,
}

/// Run the swarm described by `plan` to completion and report.
pub fn run(plan: &Plan) -> io::Result<Report> {
    let mut swarm = Swarm::new(plan)?;
    let mut events = Events::with_capacity(4096);
    loop {
        let now = Instant::now();
        swarm.commands(now);
        swarm.check_sweep(now);
        swarm.open_connections(now)?;
        if swarm.advance_stage(now) {
            break;
        }
        swarm.fire_timers(now);
        swarm.periodic(now);
        let timeout = swarm.st.poll_timeout();
        match swarm.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        swarm.handle_events(&events)?;
    }
    Ok(swarm.st.report())
}

// ---- setup and the connect ramp ----
impl<'p> Swarm<'p> {
    fn new(plan: &'p Plan) -> io::Result<Swarm<'p>> {
        let t0 = Instant::now();
        let spec = MsgSpec { size: plan.size, text: plan.text, kind: plan.kind, compress: plan.compress };
        let sh = Shared::build(spec, if plan.mode == Mode::Echo { plan.depth } else { 1 }, &plan.host, &plan.path);
        let show = !plan.child && !plan.quiet;
        if plan.compress.is_some() && show {
            eprintln!(
                "permessage-deflate: {} B payload compresses to {} B (level {}), sent with RSV1",
                sh.plain.len(),
                sh.payload.len(),
                plan.compress.unwrap_or(0)
            );
        }
        let depth = match plan.mode {
            Mode::Echo => plan.depth.max(1),
            Mode::Classic | Mode::Churn => 1,
            _ => 0,
        };
        let rng = (t0.elapsed().as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32))
            .wrapping_add((plan.source_offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            | 1;
        let life = Lifetimes { rng, lo: plan.lifetime.0.as_nanos() as u64, hi: plan.lifetime.1.as_nanos() as u64 };
        let mut probe = Probe {
            pid: plan.server_pid,
            rss_before: plan.server_pid.and_then(stats::proc_rss_kib),
            ..Default::default()
        };
        let rate_interval_ns =
            if plan.mode == Mode::Rate { (plan.conns as f64 / plan.rate.max(0.001) * 1e9) as u64 } else { 0 };
        let mut clock = Clock {
            t0,
            stage: Stage::Ramp,
            stage_end: None,
            window_start: t0,
            window_end: t0,
            ramp_deadline: t0 + Duration::from_secs(30) + Duration::from_millis(plan.conns as u64),
            settle_at: None,
            announced_open: false,
        };
        let bar = if show && !matches!(plan.mode, Mode::Handshakes | Mode::Steps) {
            let b = ProgressBar::with_draw_target(Some(plan.conns as u64), ProgressDrawTarget::stderr_with_hz(5));
            b.set_style(
                ProgressStyle::with_template("ramp-up {bar:40} {pos}/{len} open  {per_sec}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Some(b)
        } else {
            None
        };
        // Handshakes mode has no ramp-up: its connections are the workload.
        if plan.mode == Mode::Handshakes {
            clock.stage = Stage::Warmup;
            clock.stage_end = Some(t0 + plan.warmup);
            if plan.warmup.is_zero() {
                clock.stage = Stage::Window;
                clock.stage_end = Some(t0 + plan.duration);
                probe.cpu_start = probe.cpu_now();
                clock.window_start = t0;
            }
        }
        let poll = Poll::new()?;
        let ctl = if plan.mode == Mode::Steps { Some(Control::from_stdin(&poll)?) } else { None };
        let target = if plan.mode == Mode::Steps { 0 } else { plan.conns };
        let now = Instant::now();
        Ok(Swarm {
            conns: Slab::with_capacity(plan.conns.min(1 << 16)),
            poll,
            rbuf: vec![0u8; 256 * 1024],
            st: State {
                plan,
                sh,
                depth,
                clock,
                c: Counters { initial_limit: plan.conns as u64, ..Default::default() },
                hist: new_histogram(),
                probe,
                timers: BinaryHeap::new(),
                rate_interval_ns,
                life,
                ticks: Ticks {
                    last_tick: now,
                    tick_msgs: 0,
                    tick_hs: 0,
                    last_classic: now,
                    classic_msgs: 0,
                    last_ping: now,
                    last_sweep: now,
                    tick_errors: 0,
                    tick_drops: 0,
                },
                series: Vec::with_capacity(
                    (plan.warmup + plan.duration + plan.settle).as_secs() as usize + plan.conns / 1000 + 64,
                ),
                retries: BinaryHeap::new(),
                rc: Reconnects::default(),
                tls: stats::TlsCounts::default(),
                gap_ns_sum: 0,
                next_id: 0,
                attempts: 0,
                target,
                ctl,
                bar,
                show,
            },
        })
    }

    /// Start connects: during the ramp-up at most `--ramp` in progress; in
    /// handshakes and churn mode, refill every free slot all run long.
    fn open_connections(&mut self, now: Instant) -> io::Result<()> {
        let st = &mut self.st;
        let plan = st.plan;
        let handshake_mode = plan.mode == Mode::Handshakes;
        let churn = plan.mode == Mode::Churn;
        let want_more = if handshake_mode {
            matches!(st.clock.stage, Stage::Warmup | Stage::Window) && self.conns.len() < plan.conns
        } else if churn {
            st.clock.stage != Stage::Drain && self.conns.len() < plan.conns
        } else {
            st.attempts < st.target && st.clock.stage == Stage::Ramp
        };
        if plan.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if want_more {
            let limit = if handshake_mode { plan.conns } else { plan.ramp };
            let refill = handshake_mode || churn;
            while self.st.c.in_progress < limit
                && (if refill { self.conns.len() < plan.conns } else { self.st.attempts < self.st.target })
            {
                self.st.attempts += 1;
                if let Some(e) = self.start_connect(now, 0, 0)? {
                    self.st.c.err(&format!("connect_{}", err_name(&e)));
                    if refill {
                        break; // try again next turn
                    }
                }
            }
        }
        self.reopen_lost_slots(now)
    }

    /// `--reconnect`: start a new connection for every lost slot that is
    /// due, at most `--ramp` connects in progress.
    fn reopen_lost_slots(&mut self, now: Instant) -> io::Result<()> {
        if self.st.clock.stage == Stage::Drain {
            return Ok(());
        }
        let now_ns = self.st.clock.ns(now);
        while self.st.c.in_progress < self.st.plan.ramp {
            let Some(&Reverse((due, attempt, lost_at))) = self.st.retries.peek() else { break };
            if due > now_ns {
                break;
            }
            self.st.retries.pop();
            if let Some(e) = self.start_connect(now, attempt, lost_at)? {
                self.st.retry_failed(&format!("connect_{}", err_name(&e)), attempt + 1, lost_at, now_ns);
            }
        }
        Ok(())
    }

    /// Start one nonblocking connect (for a lost slot if `retry` > 0);
    /// `Ok(Some(e))` if connect() itself failed.
    fn start_connect(&mut self, now: Instant, retry: u32, lost_at_ns: u64) -> io::Result<Option<io::Error>> {
        let st = &mut self.st;
        let plan = st.plan;
        let src = if plan.source_ips.is_empty() {
            None
        } else {
            let k = (plan.source_offset + st.next_id as usize) % plan.source_ips.len();
            Some(plan.source_ips[k])
        };
        st.next_id += 1;
        let mut stream = match connect(src, plan.addr).and_then(|s| Transport::new(s, plan.tls.as_ref())) {
            Ok(stream) => stream,
            Err(e) => return Ok(Some(e)),
        };
        let entry = self.conns.vacant_entry();
        self.poll.registry().register(&mut stream, Token(entry.key()), Interest::READABLE | Interest::WRITABLE)?;
        let mut conn = Conn::new(stream, st.next_id, st.clock.ns(now));
        conn.retry = retry;
        conn.lost_at_ns = lost_at_ns;
        entry.insert(conn);
        st.c.in_progress += 1;
        Ok(None)
    }

    /// Forget connection `key`: deregister it (closing the socket) and update
    /// the open / in-progress counts.
    fn drop_conn(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Some(sweep) = self.st.ctl.as_mut().and_then(|ctl| ctl.sweep.as_mut()) {
                sweep.lost += conn.inflight.len() as u64;
            }
            let c = &mut self.st.c;
            match conn.phase {
                Phase::Connecting | Phase::Handshaking => {
                    c.in_progress -= 1;
                    if conn.id <= c.initial_limit {
                        c.initial_settled += 1;
                    }
                }
                _ => c.open -= 1,
            }
        }
    }

    /// Connection `key` is over: count `error` (if any) and drop it. With
    /// `--reconnect`, outside the final drain, a connection the server closed
    /// with 1001 or whose TCP connection dropped instead counts as a drop and
    /// its slot is queued for a new connection; a failed attempt to restore a
    /// slot is retried after a backoff.
    fn end_conn(&mut self, key: usize, error: Option<&str>, now_ns: u64) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let st = &mut self.st;
        if st.plan.reconnect && st.clock.stage != Stage::Drain {
            let upgraded = !matches!(conn.phase, Phase::Connecting | Phase::Handshaking);
            if !upgraded && conn.retry > 0 {
                st.retry_failed(error.unwrap_or("closed"), conn.retry + 1, conn.lost_at_ns, now_ns);
                self.drop_conn(key);
                return;
            }
            let went_away = conn.server_close == Some(1001);
            if upgraded && (went_away || error.is_some_and(is_tcp_drop)) {
                let cause = if went_away { "close_1001" } else { error.unwrap_or("closed") };
                *st.rc.drops.entry(cause.to_string()).or_default() += 1;
                st.rc.dropped += 1;
                let (sent, unsent) = conn.take_outstanding();
                st.rc.lost_in_flight += sent;
                st.rc.unsent_at_drop += unsent;
                let lost_at = if went_away { conn.lost_at_ns } else { now_ns };
                st.retries.push(Reverse((now_ns, 1, lost_at)));
                self.drop_conn(key);
                return;
            }
        }
        if let Some(kind) = error {
            st.c.err(kind);
        }
        self.drop_conn(key);
    }
}

// ---- stages: ramp-up -> warm-up -> window -> drain ----
impl Swarm<'_> {
    /// Move the run along its stages; true once the final drain is over.
    fn advance_stage(&mut self, now: Instant) -> bool {
        let st = &mut self.st;
        if st.clock.stage == Stage::Ramp {
            st.end_ramp_if_done(now);
        }
        st.settle(now);
        if st.clock.stage == Stage::Warmup && st.clock.stage_over(now) {
            st.open_window(now);
        }
        let stopping = st.plan.stop.load(Ordering::Relaxed);
        let window_over = st.clock.stage == Stage::Window && st.clock.stage_over(now);
        if window_over || (stopping && st.clock.stage != Stage::Drain) {
            self.begin_drain(now);
        }
        self.st.clock.stage == Stage::Drain && (self.conns.is_empty() || self.st.clock.stage_over(now))
    }

    /// End the window and close every connection politely: the server
    /// closes TCP first, so TIME_WAIT lands on its side and our ports stay free.
    fn begin_drain(&mut self, now: Instant) {
        self.st.close_window(now);
        if self.st.plan.reconnect {
            let connecting = self
                .conns
                .iter()
                .filter(|(_, k)| k.retry > 0 && matches!(k.phase, Phase::Connecting | Phase::Handshaking))
                .count();
            self.st.rc.pending_at_end = (self.st.retries.len() + connecting) as u64;
            self.st.retries.clear();
        }
        let now_ns = self.st.clock.ns(now);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            let conn = &mut self.conns[k];
            if conn.phase == Phase::Open {
                conn.start_close(&self.st.sh, now_ns);
                if conn.flush(&self.st.sh).is_err() {
                    self.drop_conn(k);
                }
            } else if conn.phase != Phase::Closing {
                self.drop_conn(k);
            }
        }
    }
}

impl State<'_> {
    /// The ramp-up is over once every first connect settled (or on timeout
    /// or Ctrl-C): announce it, then warm up (idle: settle and hold).
    fn end_ramp_if_done(&mut self, now: Instant) {
        let plan = self.plan;
        let churn = plan.mode == Mode::Churn;
        let ramp_done = if churn {
            self.c.initial_settled >= plan.conns as u64
        } else {
            self.attempts >= self.target && self.c.in_progress == 0
        };
        if !(ramp_done || now >= self.clock.ramp_deadline || plan.stop.load(Ordering::Relaxed)) {
            return;
        }
        if !ramp_done {
            self.c.err("ramp_timeout");
        }
        if plan.mode == Mode::Steps {
            // Hold (a window without an end) until the parent's next command.
            self.clock.stage = Stage::Window;
            self.clock.stage_end = None;
            emit(serde_json::json!({"ev": "opened", "open": self.c.open, "attempts": self.attempts,
                "errors": self.c.errors_total, "errors_by": self.c.errors, "ramp_timeout": !ramp_done}));
            return;
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.show {
            eprintln!("ramp-up done: {} open in {:.2} s", self.c.open, now.duration_since(self.clock.t0).as_secs_f64());
        }
        if churn {
            if plan.child {
                emit(serde_json::json!({"ev": "open", "n": self.c.open}));
            } else {
                emit(serde_json::json!({"ev": "all_open", "n": self.c.open}));
            }
            if plan.server_pid.is_some() {
                self.probe.sample("all_open", now.duration_since(self.clock.t0), self.c.open, self.show);
                self.probe.last_sample = Some(now);
            }
        }
        if plan.mode == Mode::Idle {
            self.clock.settle_at = Some(now + plan.settle);
            self.clock.stage = Stage::Window;
            self.clock.window_start = now;
            self.clock.stage_end = Some(now + plan.settle + plan.duration);
        } else {
            self.clock.stage = Stage::Warmup;
            self.clock.stage_end = Some(now + plan.warmup);
        }
    }

    /// Idle mode: once settled, read the server's RSS and say all are open.
    fn settle(&mut self, now: Instant) {
        let Some(at) = self.clock.settle_at else { return };
        if now < at {
            return;
        }
        self.clock.settle_at = None;
        self.probe.rss_after = self.plan.server_pid.and_then(stats::proc_rss_kib);
        if self.clock.announced_open {
            return;
        }
        self.clock.announced_open = true;
        if self.plan.child {
            emit(serde_json::json!({"ev": "open", "n": self.c.open}));
        } else {
            emit(serde_json::json!({"ev": "all_open", "n": self.c.open, "rss_kib": self.probe.rss_after}));
            if self.show {
                eprintln!(
                    "ALL_OPEN {} connections; holding for {:.0} s (Ctrl-C stops)",
                    self.c.open,
                    self.plan.duration.as_secs_f64()
                );
            }
        }
    }

    /// Warm-up over: start measuring.
    fn open_window(&mut self, now: Instant) {
        self.clock.stage = Stage::Window;
        self.clock.window_start = now;
        self.clock.stage_end = Some(now + self.plan.duration);
        self.probe.cpu_start = self.probe.cpu_now();
        if self.plan.child {
            emit(serde_json::json!({"ev": "window_start"}));
        }
    }

    /// Stop measuring (an empty window if stopped before it began) and enter
    /// the drain, which lasts at most 2 s.
    fn close_window(&mut self, now: Instant) {
        if self.clock.stage == Stage::Window {
            self.clock.window_end = now;
            // The window's last part-second, so the series covers all of it.
            if now.duration_since(self.ticks.last_tick) >= Duration::from_millis(100) {
                self.record_point(now);
            }
            self.probe.cpu_end = self.probe.cpu_now();
            if self.plan.sample_every.is_some() {
                self.probe.sample("end", now.duration_since(self.clock.t0), self.c.open, self.show);
            }
        } else {
            self.clock.window_start = now;
            self.clock.window_end = now;
        }
        if self.plan.child {
            emit(serde_json::json!({"ev": "window_end"}));
        }
        self.clock.stage = Stage::Drain;
        // Steps mode closes up to 19,000 connections per process on a box
        // busy with a million: give the closing handshakes more time.
        let drain = if self.plan.mode == Mode::Steps { Duration::from_secs(60) } else { Duration::from_secs(2) };
        self.clock.stage_end = Some(now + drain);
    }

    /// `--reconnect`: attempt `attempt - 1` to restore a slot failed with
    /// `kind`; queue attempt `attempt` after the backoff.
    fn retry_failed(&mut self, kind: &str, attempt: u32, lost_at: u64, now_ns: u64) {
        *self.rc.failed_attempts.entry(kind.to_string()).or_default() += 1;
        let max = RETRY_MAX.as_nanos() as u64;
        let base = (RETRY_FIRST.as_nanos() as u64).saturating_mul(1 << (attempt.saturating_sub(2)).min(16)).min(max);
        let wait = base / 2 + self.life.next_u64() % (base / 2 + 1);
        self.retries.push(Reverse((now_ns + wait, attempt, lost_at)));
    }

    /// How long the poller may sleep: until the next timer or stage end,
    /// and never more than 250 ms (the periodic jobs).
    fn poll_timeout(&self) -> Duration {
        let mut timeout = Duration::from_millis(250);
        if let Some(&Reverse((due, _, _))) = self.timers.peek() {
            let d = Duration::from_nanos(due.saturating_sub(self.clock.ns(Instant::now())));
            timeout = timeout.min(d);
        }
        if let Some(&Reverse((due, _, _))) = self.retries.peek() {
            let d = Duration::from_nanos(due.saturating_sub(self.clock.ns(Instant::now())));
            timeout = timeout.min(d);
        }
        if let Some(e) = self.clock.stage_end {
            timeout = timeout.min(e.saturating_duration_since(Instant::now()));
        }
        timeout
    }
}

// ---- the mode's own work: timers and periodic jobs ----
impl Swarm<'_> {
    /// Rate mode: send every message that is due. Churn mode: close every
    /// connection whose lifetime is over.
    fn fire_timers(&mut self, now: Instant) {
        let mode = self.st.plan.mode;
        if !matches!(mode, Mode::Rate | Mode::Churn)
            || !matches!(self.st.clock.stage, Stage::Ramp | Stage::Warmup | Stage::Window)
        {
            return;
        }
        let now_ns = self.st.clock.ns(now);
        while let Some(&Reverse((due, key, id))) = self.st.timers.peek() {
            if due > now_ns {
                break;
            }
            self.st.timers.pop();
            let Some(conn) = self.conns.get_mut(key) else { continue };
            if conn.id != id || conn.phase != Phase::Open {
                continue;
            }
            if mode == Mode::Rate {
                conn.pending += 1;
                conn.inflight.push_back(due);
                self.st.timers.push(Reverse((due + self.st.rate_interval_ns, key, id)));
            } else {
                conn.start_close(&self.st.sh, now_ns);
            }
            if let Err(e) = conn.flush(&self.st.sh) {
                self.end_conn(key, Some(&format!("write_{}", err_name(&e))), now_ns);
            }
        }
    }

    /// Server samples, idle pings, the live line, the stale sweep, and
    /// classic mode's `Msg/sec` line, each when its time has come.
    fn periodic(&mut self, now: Instant) {
        self.st.sample_server(now);
        self.send_pings(now);
        self.st.tick(now);
        self.sweep_stale(now);
        self.st.classic_line(now);
    }

    /// Idle mode with `--ping-every`: a Ping on every open connection.
    fn send_pings(&mut self, now: Instant) {
        let Some(every) = self.st.plan.ping_every else { return };
        if self.st.plan.mode != Mode::Idle || now.duration_since(self.st.ticks.last_ping) < every {
            return;
        }
        self.st.ticks.last_ping = now;
        let mut ping = Vec::new();
        wsecho::proto::frame::write_frame(
            &mut ping,
            true,
            0,
            wsecho::proto::OpCode::Ping,
            Some(crate::conn::KEY),
            b"lt",
        );
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            let conn = &mut self.conns[k];
            if conn.phase == Phase::Open {
                conn.queue_ctrl(&ping);
                if conn.flush(&self.st.sh).is_err() {
                    let now_ns = self.st.clock.ns(now);
                    self.end_conn(k, Some("write_ping"), now_ns);
                }
            }
        }
    }

    /// Every 500 ms: drop connections stuck 10 s connecting, upgrading or closing.
    fn sweep_stale(&mut self, now: Instant) {
        if now.duration_since(self.st.ticks.last_sweep) < Duration::from_millis(500) {
            return;
        }
        self.st.ticks.last_sweep = now;
        let limit = self.st.clock.ns(now).saturating_sub(10_000_000_000);
        let stale: Vec<usize> =
            self.conns.iter().filter(|(_, k)| k.phase != Phase::Open && k.phase_ns < limit).map(|(k, _)| k).collect();
        let now_ns = self.st.clock.ns(now);
        for k in stale {
            let what = match self.conns[k].phase {
                Phase::Connecting => "timeout_connect",
                Phase::Handshaking => "timeout_handshake",
                _ => "timeout_close",
            };
            let error = if self.st.clock.stage != Stage::Drain { Some(what) } else { None };
            self.end_conn(k, error, now_ns);
        }
    }
}

impl State<'_> {
    /// `--sample-every` with `--server-pid`: the server's RSS and fds.
    fn sample_server(&mut self, now: Instant) {
        let (Some(every), Some(last)) = (self.plan.sample_every, self.probe.last_sample) else { return };
        if self.probe.pid.is_some() && now.duration_since(last) >= every && self.clock.stage != Stage::Drain {
            self.probe.last_sample = Some(now);
            self.probe.sample("run", now.duration_since(self.clock.t0), self.c.open, self.show);
        }
    }

    /// Close the interval since the last tick: append its point to the
    /// series and return (seconds, messages, handshakes) in it.
    fn record_point(&mut self, now: Instant) -> (f64, u64, u64) {
        let c = &self.c;
        let dt = now.duration_since(self.ticks.last_tick).as_secs_f64();
        let m = c.msgs_total - self.ticks.tick_msgs;
        let h = c.hs_total - self.ticks.tick_hs;
        self.ticks.last_tick = now;
        self.ticks.tick_msgs = c.msgs_total;
        self.ticks.tick_hs = c.hs_total;
        self.series.push(stats::Point {
            t_s: now.duration_since(self.clock.t0).as_secs_f64(),
            msgs_per_s: m as f64 / dt.max(1e-9),
            connects_per_s: h as f64 / dt.max(1e-9),
            open: c.open,
            errors: c.errors_total - self.ticks.tick_errors,
            drops: self.rc.dropped - self.ticks.tick_drops,
        });
        self.ticks.tick_errors = c.errors_total;
        self.ticks.tick_drops = self.rc.dropped;
        (dt, m, h)
    }

    /// Once a second: a point of the series, and the live line (or a
    /// child's `tick` event).
    fn tick(&mut self, now: Instant) {
        if now.duration_since(self.ticks.last_tick) < Duration::from_secs(1) {
            return;
        }
        let (dt, m, h) = self.record_point(now);
        let plan = self.plan;
        let c = &self.c;
        let stage = self.clock.stage;
        if plan.child {
            emit(serde_json::json!({"ev": "tick", "msgs": m, "hs": h, "open": c.open,
                "errors": c.errors_total, "dt": dt}));
        } else if self.show && stage != Stage::Ramp && plan.mode != Mode::Classic {
            let secs = now.duration_since(self.clock.t0).as_secs();
            match plan.mode {
                Mode::Handshakes => eprintln!(
                    "[{secs:>4}s] {:>8.0} handshakes/s  open {:>6}  errors {}  {:?}",
                    h as f64 / dt,
                    c.open,
                    c.errors_total,
                    stage
                ),
                Mode::Churn => eprintln!(
                    "[{secs:>4}s] {:>9.0} msgs/s {:>7.0} connects/s  open {:>6}  errors {}  {:?}",
                    m as f64 / dt,
                    h as f64 / dt,
                    c.open,
                    c.errors_total,
                    stage
                ),
                _ => eprintln!(
                    "[{secs:>4}s] {:>9.0} msgs/s {:>9.2} MB/s  open {:>6}  errors {}  {:?}",
                    m as f64 / dt,
                    m as f64 * plan.size as f64 / dt / 1e6,
                    c.open,
                    c.errors_total,
                    stage
                ),
            }
        } else if let Some(b) = &self.bar {
            b.set_message(format!("errors {}", c.errors_total));
        }
    }

    /// Classic mode: `Msg/sec: X` every `classic_every`.
    fn classic_line(&mut self, now: Instant) {
        if self.plan.mode != Mode::Classic
            || self.clock.stage == Stage::Ramp
            || now.duration_since(self.ticks.last_classic) < self.plan.classic_every
        {
            return;
        }
        let dt = now.duration_since(self.ticks.last_classic).as_secs_f64();
        let m = self.c.msgs_total - self.ticks.classic_msgs;
        self.ticks.last_classic = now;
        self.ticks.classic_msgs = self.c.msgs_total;
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "Msg/sec: {}", (m as f64 / dt) as u64);
        let _ = out.flush();
    }
}

// ---- I/O events: connect, upgrade, frames ----
impl Swarm<'_> {
    fn handle_events(&mut self, events: &Events) -> io::Result<()> {
        let now_ns = self.st.clock.ns(Instant::now());
        for event in events.iter() {
            self.on_event(event, now_ns)?;
        }
        Ok(())
    }

    /// One readiness event: finish the connect, read everything, write what
    /// is owed, and drop the connection if it failed or ended.
    fn on_event(&mut self, event: &Event, now_ns: u64) -> io::Result<()> {
        let key = event.token().0;
        let Some(conn) = self.conns.get(key) else { return Ok(()) };
        if conn.phase == Phase::Connecting && !self.connected(key, now_ns) {
            return Ok(());
        }
        let mut end = if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_all(key, now_ns)?
        } else {
            End::Alive
        };
        if let (End::Alive, Some(conn)) = (&end, self.conns.get_mut(key)) {
            if let Err(e) = conn.flush(&self.st.sh) {
                end = if !conn.got_close { End::Dead(format!("write_{}", err_name(&e))) } else { End::Eof };
            }
        }
        self.finish(key, end, now_ns);
        Ok(())
    }

    /// A connecting socket got an event: true once it is connected (the
    /// upgrade request is then queued); a failed connect is dropped.
    fn connected(&mut self, key: usize, now_ns: u64) -> bool {
        let Some(conn) = self.conns.get_mut(key) else { return false };
        let err = match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => e,
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => {
                    conn.phase = Phase::Handshaking;
                    conn.queue_ctrl(&self.st.sh.request);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
                Err(e) => e,
            },
        };
        self.end_conn(key, Some(&format!("connect_{}", err_name(&err))), now_ns);
        false
    }

    /// Read connection `key` to `WouldBlock`, feeding the upgrade response
    /// and then the frames to their parsers.
    fn read_all(&mut self, key: usize, now_ns: u64) -> io::Result<End> {
        let Swarm { conns, rbuf, st, .. } = self;
        let Some(conn) = conns.get_mut(key) else { return Ok(End::Alive) };
        loop {
            let n = match conn.read_into(rbuf) {
                Ok(0) => return Ok(End::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(End::Alive),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(End::Dead(format!("read_{}", err_name(&e)))),
            };
            let mut data = &rbuf[..n];
            if conn.phase == Phase::Handshaking {
                match st.on_response_bytes(conn, key, data, now_ns)? {
                    Upgrade::Pending => continue,
                    Upgrade::Failed(kind) => return Ok(End::Dead(kind)),
                    Upgrade::Done(start) => data = &rbuf[start..n],
                }
            }
            if let Err(kind) = st.on_frames(conn, data, now_ns) {
                return Ok(End::Corrupt(kind));
            }
        }
    }

    /// Count how a connection ended and drop it (`End::Alive`: keep it).
    fn finish(&mut self, key: usize, end: End, now_ns: u64) {
        let Some(conn) = self.conns.get(key) else { return };
        let st = &mut self.st;
        let in_drain = st.clock.stage == Stage::Drain;
        let error: Option<String> = match end {
            End::Alive => return,
            End::Corrupt(kind) => {
                st.c.corrupted += 1;
                Some(kind.to_string())
            }
            End::Dead(kind) => (!in_drain || !conn.sent_close).then_some(kind),
            End::Eof => {
                let ok_end = conn.sent_close && conn.got_close;
                // Handshakes mode: a cycle counts once the server's FIN is in.
                if ok_end && conn.phase == Phase::Closing && st.plan.mode == Mode::Handshakes {
                    st.c.hs_total += 1;
                    if st.clock.stage == Stage::Window {
                        st.c.hs_window += 1;
                    }
                }
                (!ok_end && !in_drain).then(|| {
                    match conn.phase {
                        Phase::Handshaking => "eof_in_handshake",
                        _ if conn.got_close => "eof_after_server_close",
                        _ => "eof",
                    }
                    .to_string()
                })
            }
        };
        self.end_conn(key, error.as_deref(), now_ns);
    }
}

impl State<'_> {
    /// Bytes of the server's upgrade response arrived on `conn`.
    fn on_response_bytes(&mut self, conn: &mut Conn, key: usize, data: &[u8], now_ns: u64) -> io::Result<Upgrade> {
        conn.head.extend_from_slice(data);
        let limits = wsecho::proto::Limits::default();
        let resp = match wsecho::proto::handshake::parse_response(&conn.head, &limits) {
            Ok(None) => return Ok(Upgrade::Pending),
            Err(_) => return Ok(Upgrade::Failed("bad_response".into())),
            Ok(Some(resp)) => resp,
        };
        if resp.status != 101 {
            return Ok(Upgrade::Failed(format!("http_{}", resp.status)));
        }
        if resp.accept.as_deref() != Some(self.sh.accept.as_str()) {
            return Ok(Upgrade::Failed("bad_accept".into()));
        }
        if self.plan.compress.is_some() {
            let ext = resp.extensions.as_deref().unwrap_or("");
            let agreed = wsecho::proto::deflate::client_agreed(ext);
            let Some(a) = agreed.filter(|a| a.client_max_window_bits == 15) else {
                return Err(io::Error::other(format!(
                    "--compress: the server's 101 does not agree to permessage-deflate \
                     as offered (Sec-WebSocket-Extensions: {:?}); is it running with \
                     compression off?",
                    resp.extensions
                )));
            };
            // Both sides reset per message: the server may echo
            // our compressed bytes verbatim; otherwise inflate.
            let verbatim = a.server_no_context_takeover && a.client_no_context_takeover;
            if self.plan.inflate_echo || !verbatim {
                conn.inflate_echoes(a.server_no_context_takeover);
            }
        }
        // Bytes after the head are frames: keep them.
        let already = conn.head.len() - data.len();
        let start = resp.head_len.saturating_sub(already);
        conn.head = Vec::new();
        self.on_upgraded(conn, key, now_ns);
        Ok(Upgrade::Done(start))
    }

    /// `conn` is upgraded: count it and start the mode's traffic.
    fn on_upgraded(&mut self, conn: &mut Conn, key: usize, now_ns: u64) {
        let c = &mut self.c;
        let measuring = self.clock.stage == Stage::Window;
        c.in_progress -= 1;
        c.open += 1;
        c.open_max = c.open_max.max(c.open);
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        if measuring && self.plan.mode == Mode::Handshakes {
            let us = (now_ns - conn.started_ns) / 1000;
            let _ = self.hist.record(us.max(1));
        }
        conn.phase_ns = now_ns;
        if let Some((resumed, tls13)) = conn.stream.tls_kind() {
            let t = &mut self.tls;
            if resumed {
                t.resumed += 1;
            } else {
                t.full += 1;
            }
            t.tls13 += u64::from(tls13);
        }
        if conn.id <= c.initial_limit {
            c.initial_settled += 1;
        }
        if conn.retry > 0 {
            self.rc.reconnected += 1;
            let gap = now_ns.saturating_sub(conn.lost_at_ns);
            self.gap_ns_sum += gap;
            self.rc.gap_ms_max = self.rc.gap_ms_max.max(gap as f64 / 1e6);
        }
        match self.plan.mode {
            Mode::Handshakes => conn.start_close(&self.sh, now_ns),
            Mode::Churn => {
                conn.phase = Phase::Open;
                conn.pending += 1;
                conn.inflight.push_back(now_ns);
                c.hs_total += 1;
                if measuring {
                    c.hs_window += 1;
                }
                self.timers.push(Reverse((now_ns + self.life.next_ns(), key, conn.id)));
            }
            Mode::Echo | Mode::Classic => {
                conn.phase = Phase::Open;
                conn.pending += self.depth as u64;
                for _ in 0..self.depth {
                    conn.inflight.push_back(now_ns);
                }
            }
            Mode::Rate => {
                conn.phase = Phase::Open;
                // Spread first sends over one interval.
                let off = conn.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.rate_interval_ns.max(1);
                self.timers.push(Reverse((now_ns + off, key, conn.id)));
            }
            Mode::Idle | Mode::Steps => conn.phase = Phase::Open,
        }
    }

    /// Frames arrived on an open (or closing) `conn`: verify echoes, time
    /// them, keep the closed loop going, answer pings and closes.
    fn on_frames(&mut self, conn: &mut Conn, data: &[u8], now_ns: u64) -> Result<(), &'static str> {
        let mode = self.plan.mode;
        let in_window = self.clock.stage == Stage::Window;
        let in_drain = self.clock.stage == Stage::Drain;
        let reconnect = self.plan.reconnect && !in_drain;
        let (c, hist, sh, rc) = (&mut self.c, &mut self.hist, &self.sh, &mut self.rc);
        conn.consume(data, sh, |k, ev| match ev {
            RxEvent::Echo => {
                let Some(sent) = k.inflight.pop_front() else {
                    return;
                };
                c.msgs_total += 1;
                if in_window {
                    c.msgs_window += 1;
                    let _ = hist.record(((now_ns.saturating_sub(sent)) / 1000).max(1));
                }
                if matches!(mode, Mode::Echo | Mode::Classic | Mode::Churn) && !k.sent_close {
                    k.pending += 1;
                    k.inflight.push_back(now_ns);
                }
            }
            RxEvent::Close(code) => {
                let e = c.close_codes.entry(code.to_string()).or_default();
                *e += 1;
                if !k.sent_close {
                    k.server_close = Some(code);
                    if reconnect && code == 1001 {
                        // Going away: expected in a rolling restart. What we
                        // sent and will not get back is lost; the slot is
                        // reconnected once this close completes (end_conn).
                        let (sent, unsent) = k.take_outstanding();
                        rc.lost_in_flight += sent;
                        rc.unsent_at_drop += unsent;
                        k.lost_at_ns = now_ns;
                    } else if !in_drain {
                        // The server closed first: not part of any mode's plan.
                        c.err(&format!("server_close_{code}"));
                    }
                    k.start_close(sh, now_ns);
                }
            }
            RxEvent::Ping => k.queue_pong(),
        })
    }
}

// ---- teardown: the report ----
impl State<'_> {
    fn report(self) -> Report {
        let plan = self.plan;
        let c = self.c;
        let window_len = self.clock.window_end.duration_since(self.clock.window_start);
        let window = window_len.as_secs_f64().max(1e-9);
        let mut r = Report {
            mode: plan.mode.name().into(),
            target: plan.url.clone(),
            conns: plan.conns,
            conns_open_max: c.open_max,
            size: plan.size,
            depth: self.depth,
            window_s: window,
            window_start_s: self.clock.window_start.duration_since(self.clock.t0).as_secs_f64(),
            series: self.series,
            msgs: c.msgs_window,
            msgs_per_s: c.msgs_window as f64 / window,
            mb_per_s: c.msgs_window as f64 * plan.size as f64 / window / 1e6,
            handshakes: c.hs_window,
            handshakes_per_s: c.hs_window as f64 / window,
            msgs_run: c.msgs_total,
            corrupted: c.corrupted,
            errors: c.errors,
            close_codes: c.close_codes,
            compressed_size: plan.compress.map(|_| self.sh.payload.len()),
            samples: self.probe.samples,
            ..Default::default()
        };
        if matches!(plan.mode, Mode::Idle | Mode::Steps) {
            r.window_s = window_len.as_secs_f64();
            r.msgs_per_s = 0.0;
            r.mb_per_s = 0.0;
        }
        r.set_histogram(&self.hist, plan.child);
        if plan.reconnect {
            let mut rc = self.rc;
            if rc.reconnected > 0 {
                rc.gap_ms_mean = self.gap_ns_sum as f64 / rc.reconnected as f64 / 1e6;
            }
            r.reconnect = Some(rc);
        }
        r.set_server_cpu(self.probe.cpu_start, self.probe.cpu_end);
        if plan.tls.is_some() {
            r.tls = Some(self.tls);
        }
        if plan.mode == Mode::Idle {
            r.server.rss_before_kib = self.probe.rss_before;
            r.server.rss_after_kib = self.probe.rss_after;
            if let (Some(b), Some(a)) = (self.probe.rss_before, self.probe.rss_after) {
                if c.open_max > 0 {
                    r.server.rss_per_conn_bytes = Some((a as f64 - b as f64) * 1024.0 / c.open_max as f64);
                }
            }
        }
        r
    }
}

// ---- steps mode: the parent's commands ----
impl Control {
    /// Read the parent's commands from stdin in a thread; each line wakes
    /// the poller. The end of stdin (the parent is gone) reads as `close`,
    /// so a child never outlives its parent's pipe.
    fn from_stdin(poll: &Poll) -> io::Result<Control> {
        let waker = Arc::new(mio::Waker::new(poll.registry(), CONTROL)?);
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Arc::clone(&waker);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    return;
                }
                let _ = w.wake();
            }
            let _ = tx.send("close".to_string());
            let _ = w.wake();
        });
        Ok(Control { rx, _waker: waker, sweep: None })
    }
}

/// `SECS` of a command, or `default`.
fn secs_arg(word: Option<&str>, default: f64) -> Duration {
    Duration::from_secs_f64(word.and_then(|w| w.parse::<f64>().ok()).filter(|s| *s >= 0.0).unwrap_or(default))
}

impl Swarm<'_> {
    /// Steps mode: carry out the parent's commands that arrived.
    fn commands(&mut self, now: Instant) {
        let Some(ctl) = &self.st.ctl else { return };
        let cmds: Vec<String> = ctl.rx.try_iter().collect();
        for cmd in cmds {
            let mut w = cmd.split_whitespace();
            match w.next() {
                Some("open") => {
                    let n = w.next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
                    let st = &mut self.st;
                    if st.clock.stage == Stage::Drain {
                        continue;
                    }
                    st.target = n.max(st.attempts);
                    st.clock.stage = Stage::Ramp;
                    st.clock.stage_end = None;
                    st.clock.ramp_deadline = now + secs_arg(w.next(), 300.0);
                }
                Some("stop") => self.st.target = self.st.attempts,
                Some("sweep") => self.start_sweep(now, secs_arg(w.next(), 60.0)),
                Some("close") if self.st.clock.stage != Stage::Drain => self.begin_drain(now),
                _ => {}
            }
        }
    }

    /// Every open connection sends one message (the echo is verified as
    /// usual); `check_sweep` reports once all are back.
    fn start_sweep(&mut self, now: Instant, timeout: Duration) {
        let now_ns = self.st.clock.ns(now);
        self.st.hist.reset();
        let base = self.st.c.msgs_total;
        if let Some(ctl) = &mut self.st.ctl {
            ctl.sweep = Some(Sweep { start: now, deadline: now + timeout, sent: 0, base, lost: 0 });
        }
        let keys: Vec<usize> = self.conns.iter().filter(|(_, c)| c.phase == Phase::Open).map(|(k, _)| k).collect();
        for k in keys {
            let conn = &mut self.conns[k];
            conn.pending += 1;
            conn.inflight.push_back(now_ns);
            if let Some(s) = self.st.ctl.as_mut().and_then(|c| c.sweep.as_mut()) {
                s.sent += 1;
            }
            if let Err(e) = conn.flush(&self.st.sh) {
                self.end_conn(k, Some(&format!("write_{}", err_name(&e))), now_ns);
            }
        }
    }

    /// Report the sweep once every message came back or was lost, or at
    /// its deadline.
    fn check_sweep(&mut self, now: Instant) {
        let st = &mut self.st;
        let Some(sweep) = st.ctl.as_ref().and_then(|c| c.sweep.as_ref()) else { return };
        let echoed = st.c.msgs_total - sweep.base;
        if echoed + sweep.lost < sweep.sent && now < sweep.deadline {
            return;
        }
        let hist: Vec<(u64, u64)> =
            st.hist.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
        emit(serde_json::json!({"ev": "swept", "sent": sweep.sent, "echoed": echoed, "lost": sweep.lost,
            "time_s": now.duration_since(sweep.start).as_secs_f64(), "open": st.c.open,
            "errors": st.c.errors_total, "errors_by": st.c.errors, "hist": hist}));
        if let Some(ctl) = &mut st.ctl {
            ctl.sweep = None;
        }
    }
}
