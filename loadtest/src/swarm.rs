//! The swarm: one mio event loop driving every client connection of this
//! process. Connections are opened at a bounded pace (ramp-up), upgraded,
//! then driven by the mode: closed-loop echo, open-loop rate, idle holding,
//! or handshake cycling.

use crate::conn::{Conn, MsgSpec, PayloadKind, Phase, RxEvent, Shared};
use crate::stats::{self, new_histogram, Report};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: finish the run and report.
pub static STOP: AtomicBool = AtomicBool::new(false);

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
    errors: BTreeMap<String, u64>,
    errors_total: u64,
    close_codes: BTreeMap<String, u64>,
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

/// Open a nonblocking TCP socket bound to `src` (if any), connecting to `dst`.
fn connect(src: Option<IpAddr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let family = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // Own the fd at once so every error path closes it.
        let std_stream = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let setopt = |level, name| {
            libc::setsockopt(
                fd,
                level,
                name,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        setopt(libc::IPPROTO_TCP, libc::TCP_NODELAY);
        if let Some(src) = src {
            // Let connect() pick the port, so ports are shared per 4-tuple.
            setopt(libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT);
            let (sa, len) = sockaddr(SocketAddr::new(src, 0));
            if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let (sa, len) = sockaddr(dst);
        if libc::connect(fd, &sa as *const _ as *const libc::sockaddr, len) < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(std_stream))
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (ss, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
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

/// Run the swarm described by `plan` to completion and report.
pub fn run(plan: &Plan) -> io::Result<Report> {
    let t0 = Instant::now();
    let ns = |t: Instant| t.duration_since(t0).as_nanos() as u64;
    let spec = MsgSpec { size: plan.size, text: plan.text, kind: plan.kind, compress: plan.compress };
    let sh = Shared::build(spec, if plan.mode == Mode::Echo { plan.depth } else { 1 }, &plan.host, &plan.path);
    if plan.compress.is_some() && show_info(plan) {
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
    let churn = plan.mode == Mode::Churn;
    let mut rng: u64 = (t0.elapsed().as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32))
        .wrapping_add(plan.source_offset as u64 * 0x9E37_79B9_7F4A_7C15)
        | 1;
    let (life_lo, life_hi) = (plan.lifetime.0.as_nanos() as u64, plan.lifetime.1.as_nanos() as u64);
    let mut lifetime_ns = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        life_lo + rng % (life_hi.saturating_sub(life_lo) + 1)
    };
    let mut samples: Vec<stats::Sample> = Vec::new();
    let mut last_sample: Option<Instant> = None;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut conns: Slab<Conn> = Slab::with_capacity(plan.conns.min(1 << 16));
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut hist: Histogram<u64> = new_histogram();
    let mut c = Counters { initial_limit: plan.conns as u64, ..Default::default() };
    let mut next_id: u64 = 0;
    let mut attempts: usize = 0; // connects started (not handshakes mode)
    let mut in_progress: usize = 0; // Connecting or Handshaking
    let mut stage = Stage::Ramp;
    let mut stage_end: Option<Instant> = None;
    let mut window_start = t0;
    let mut window_end = t0;
    let mut cpu_start: Option<f64> = None;
    let mut cpu_end: Option<f64> = None;
    let rss_before = plan.server_pid.and_then(stats::proc_rss_kib);
    let mut rss_after: Option<u64> = None;
    let mut settle_at: Option<Instant> = None;
    let mut announced_open = false;
    // Rate mode timers: (due ns, slab key, conn id).
    let mut timers: BinaryHeap<Reverse<(u64, usize, u64)>> = BinaryHeap::new();
    let rate_interval_ns =
        if plan.mode == Mode::Rate { (plan.conns as f64 / plan.rate.max(0.001) * 1e9) as u64 } else { 0 };
    let mut last_tick = Instant::now();
    let mut last_tick_msgs = 0u64;
    let mut last_tick_hs = 0u64;
    let mut last_classic = Instant::now();
    let mut last_classic_msgs = 0u64;
    let mut last_ping = Instant::now();
    let mut last_sweep = Instant::now();
    let ramp_deadline = t0 + Duration::from_secs(30) + Duration::from_millis(plan.conns as u64);

    let show = !plan.child && !plan.quiet;
    let bar = if show && plan.mode != Mode::Handshakes {
        let b = ProgressBar::with_draw_target(Some(plan.conns as u64), ProgressDrawTarget::stderr_with_hz(5));
        b.set_style(
            ProgressStyle::with_template("ramp-up {bar:40} {pos}/{len} open  {per_sec}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let handshake_mode = plan.mode == Mode::Handshakes;
    if handshake_mode {
        stage = Stage::Warmup;
        stage_end = Some(t0 + plan.warmup);
        if plan.warmup.is_zero() {
            stage = Stage::Window;
            stage_end = Some(t0 + plan.duration);
            cpu_start = plan.server_pid.and_then(stats::proc_cpu_us);
            window_start = t0;
        }
    }

    loop {
        let now = Instant::now();
        // ---- open new connections ----
        let want_more = if handshake_mode {
            matches!(stage, Stage::Warmup | Stage::Window) && conns.len() < plan.conns
        } else if churn {
            stage != Stage::Drain && conns.len() < plan.conns
        } else {
            attempts < plan.conns && stage == Stage::Ramp
        };
        if want_more && !STOP.load(Ordering::Relaxed) {
            let limit = if handshake_mode { plan.conns } else { plan.ramp };
            let refill = handshake_mode || churn;
            while in_progress < limit && (if refill { conns.len() < plan.conns } else { attempts < plan.conns }) {
                let src = if plan.source_ips.is_empty() {
                    None
                } else {
                    let k = (plan.source_offset + next_id as usize) % plan.source_ips.len();
                    Some(plan.source_ips[k])
                };
                attempts += 1;
                next_id += 1;
                match connect(src, plan.addr) {
                    Ok(mut stream) => {
                        let entry = conns.vacant_entry();
                        let key = entry.key();
                        poll.registry().register(&mut stream, Token(key), Interest::READABLE | Interest::WRITABLE)?;
                        entry.insert(Conn::new(stream, next_id, ns(now)));
                        in_progress += 1;
                    }
                    Err(e) => {
                        c.err(&format!("connect_{}", err_name(&e)));
                        if refill {
                            break; // try again next turn
                        }
                    }
                }
            }
        }

        // ---- stage transitions ----
        if stage == Stage::Ramp {
            let ramp_done =
                if churn { c.initial_settled >= plan.conns as u64 } else { attempts >= plan.conns && in_progress == 0 };
            if ramp_done || now >= ramp_deadline || STOP.load(Ordering::Relaxed) {
                if !ramp_done {
                    c.err("ramp_timeout");
                }
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                if show {
                    eprintln!("ramp-up done: {} open in {:.2} s", c.open, now.duration_since(t0).as_secs_f64());
                }
                if churn {
                    if plan.child {
                        emit(serde_json::json!({"ev": "open", "n": c.open}));
                    } else {
                        emit(serde_json::json!({"ev": "all_open", "n": c.open}));
                    }
                    if let Some(pid) = plan.server_pid {
                        samples.push(stats::Sample::take(pid, "all_open", now.duration_since(t0), c.open));
                        last_sample = Some(now);
                        if show {
                            samples[samples.len() - 1].print();
                        }
                    }
                }
                if plan.mode == Mode::Idle {
                    settle_at = Some(now + plan.settle);
                    stage = Stage::Window;
                    window_start = now;
                    stage_end = Some(now + plan.settle + plan.duration);
                } else {
                    stage = Stage::Warmup;
                    stage_end = Some(now + plan.warmup);
                }
            }
        }
        if let Some(at) = settle_at {
            if now >= at {
                settle_at = None;
                rss_after = plan.server_pid.and_then(stats::proc_rss_kib);
                if !announced_open {
                    announced_open = true;
                    if plan.child {
                        emit(serde_json::json!({"ev": "open", "n": c.open}));
                    } else {
                        emit(serde_json::json!({"ev": "all_open", "n": c.open,
                            "rss_kib": rss_after}));
                        if show {
                            eprintln!(
                                "ALL_OPEN {} connections; holding for {:.0} s (Ctrl-C stops)",
                                c.open,
                                plan.duration.as_secs_f64()
                            );
                        }
                    }
                }
            }
        }
        if stage == Stage::Warmup && stage_end.is_some_and(|e| now >= e) {
            stage = Stage::Window;
            window_start = now;
            stage_end = Some(now + plan.duration);
            cpu_start = plan.server_pid.and_then(stats::proc_cpu_us);
            if plan.child {
                emit(serde_json::json!({"ev": "window_start"}));
            }
        }
        let stopping = STOP.load(Ordering::Relaxed);
        if (stage == Stage::Window && stage_end.is_some_and(|e| now >= e)) || (stopping && stage != Stage::Drain) {
            if stage == Stage::Window {
                window_end = now;
                cpu_end = plan.server_pid.and_then(stats::proc_cpu_us);
                if let (Some(pid), true) = (plan.server_pid, plan.sample_every.is_some()) {
                    samples.push(stats::Sample::take(pid, "end", now.duration_since(t0), c.open));
                    if show {
                        samples[samples.len() - 1].print();
                    }
                }
            } else {
                window_start = now;
                window_end = now;
            }
            if plan.child {
                emit(serde_json::json!({"ev": "window_end"}));
            }
            stage = Stage::Drain;
            stage_end = Some(now + Duration::from_secs(2));
            // Close every connection politely: the server closes TCP first,
            // so TIME_WAIT lands on its side and our ports stay free.
            let keys: Vec<usize> = conns.iter().map(|(k, _)| k).collect();
            for k in keys {
                let conn = &mut conns[k];
                if conn.phase == Phase::Open {
                    conn.start_close(&sh, ns(now));
                    if conn.flush(&sh).is_err() {
                        drop_conn(&mut conns, k, &poll, &mut c, &mut in_progress);
                    }
                } else if conn.phase != Phase::Closing {
                    drop_conn(&mut conns, k, &poll, &mut c, &mut in_progress);
                }
            }
        }
        if stage == Stage::Drain && (conns.is_empty() || stage_end.is_some_and(|e| now >= e)) {
            break;
        }

        // ---- rate-mode sends due now ----
        if plan.mode == Mode::Rate && matches!(stage, Stage::Ramp | Stage::Warmup | Stage::Window) {
            let now_ns = ns(now);
            while let Some(&Reverse((due, key, id))) = timers.peek() {
                if due > now_ns {
                    break;
                }
                timers.pop();
                let Some(conn) = conns.get_mut(key) else { continue };
                if conn.id != id || conn.phase != Phase::Open {
                    continue;
                }
                conn.pending += 1;
                conn.inflight.push_back(due);
                timers.push(Reverse((due + rate_interval_ns, key, id)));
                if let Err(e) = conn.flush(&sh) {
                    c.err(&format!("write_{}", err_name(&e)));
                    drop_conn(&mut conns, key, &poll, &mut c, &mut in_progress);
                }
            }
        }

        // ---- churn: close connections whose lifetime is over ----
        if churn && matches!(stage, Stage::Ramp | Stage::Warmup | Stage::Window) {
            let now_ns = ns(now);
            while let Some(&Reverse((due, key, id))) = timers.peek() {
                if due > now_ns {
                    break;
                }
                timers.pop();
                let Some(conn) = conns.get_mut(key) else { continue };
                if conn.id != id || conn.phase != Phase::Open {
                    continue;
                }
                conn.start_close(&sh, now_ns);
                if let Err(e) = conn.flush(&sh) {
                    c.err(&format!("write_{}", err_name(&e)));
                    drop_conn(&mut conns, key, &poll, &mut c, &mut in_progress);
                }
            }
        }

        // ---- server samples (RSS, open fds) ----
        if let (Some(pid), Some(every), Some(last)) = (plan.server_pid, plan.sample_every, last_sample) {
            if now.duration_since(last) >= every && stage != Stage::Drain {
                last_sample = Some(now);
                samples.push(stats::Sample::take(pid, "run", now.duration_since(t0), c.open));
                if show {
                    samples[samples.len() - 1].print();
                }
            }
        }

        // ---- idle pings ----
        if let Some(every) = plan.ping_every {
            if plan.mode == Mode::Idle && now.duration_since(last_ping) >= every {
                last_ping = now;
                let mut ping = Vec::new();
                wsecho::proto::frame::write_frame(
                    &mut ping,
                    true,
                    0,
                    wsecho::proto::OpCode::Ping,
                    Some(crate::conn::KEY),
                    b"lt",
                );
                let keys: Vec<usize> = conns.iter().map(|(k, _)| k).collect();
                for k in keys {
                    let conn = &mut conns[k];
                    if conn.phase == Phase::Open {
                        conn.queue_ctrl(&ping);
                        if conn.flush(&sh).is_err() {
                            c.err("write_ping");
                            drop_conn(&mut conns, k, &poll, &mut c, &mut in_progress);
                        }
                    }
                }
            }
        }

        // ---- once a second: live line, timeouts ----
        if now.duration_since(last_tick) >= Duration::from_secs(1) {
            let dt = now.duration_since(last_tick).as_secs_f64();
            let m = c.msgs_total - last_tick_msgs;
            let h = c.hs_total - last_tick_hs;
            last_tick = now;
            last_tick_msgs = c.msgs_total;
            last_tick_hs = c.hs_total;
            if plan.child {
                emit(serde_json::json!({"ev": "tick", "msgs": m, "hs": h, "open": c.open,
                    "errors": c.errors_total, "dt": dt}));
            } else if show && stage != Stage::Ramp && plan.mode != Mode::Classic {
                let secs = now.duration_since(t0).as_secs();
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
            } else if let Some(b) = &bar {
                b.set_message(format!("errors {}", c.errors_total));
            }
        }
        if now.duration_since(last_sweep) >= Duration::from_millis(500) {
            last_sweep = now;
            let limit = ns(now).saturating_sub(10_000_000_000);
            let stale: Vec<usize> =
                conns.iter().filter(|(_, k)| k.phase != Phase::Open && k.phase_ns < limit).map(|(k, _)| k).collect();
            for k in stale {
                if stage != Stage::Drain {
                    let what = match conns[k].phase {
                        Phase::Connecting => "timeout_connect",
                        Phase::Handshaking => "timeout_handshake",
                        _ => "timeout_close",
                    };
                    c.err(what);
                }
                drop_conn(&mut conns, k, &poll, &mut c, &mut in_progress);
            }
        }
        if plan.mode == Mode::Classic && stage != Stage::Ramp && now.duration_since(last_classic) >= plan.classic_every
        {
            let dt = now.duration_since(last_classic).as_secs_f64();
            let m = c.msgs_total - last_classic_msgs;
            last_classic = now;
            last_classic_msgs = c.msgs_total;
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "Msg/sec: {}", (m as f64 / dt) as u64);
            let _ = out.flush();
        }

        // ---- wait ----
        let mut timeout = Duration::from_millis(250);
        if let Some(&Reverse((due, _, _))) = timers.peek() {
            let d = Duration::from_nanos(due.saturating_sub(ns(Instant::now())));
            timeout = timeout.min(d);
        }
        if let Some(e) = stage_end {
            timeout = timeout.min(e.saturating_duration_since(Instant::now()));
        }
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        let now_ns = ns(now);
        let measuring = stage == Stage::Window;
        for event in events.iter() {
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else { continue };
            // Connecting: wait until the kernel says connected or failed.
            if conn.phase == Phase::Connecting {
                match conn.stream.take_error() {
                    Ok(Some(e)) | Err(e) => {
                        c.err(&format!("connect_{}", err_name(&e)));
                        drop_conn(&mut conns, key, &poll, &mut c, &mut in_progress);
                        continue;
                    }
                    Ok(None) => {}
                }
                match conn.stream.peer_addr() {
                    Ok(_) => {
                        conn.phase = Phase::Handshaking;
                        conn.queue_ctrl(&sh.request);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => {
                        c.err(&format!("connect_{}", err_name(&e)));
                        drop_conn(&mut conns, key, &poll, &mut c, &mut in_progress);
                        continue;
                    }
                }
            }
            // Read everything available.
            let mut dead: Option<String> = None;
            let mut eof = false;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                loop {
                    let n = match conn.read_into(&mut rbuf) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            dead = Some(format!("read_{}", err_name(&e)));
                            break;
                        }
                    };
                    let mut data = &rbuf[..n];
                    if conn.phase == Phase::Handshaking {
                        conn.head.extend_from_slice(data);
                        let limits = wsecho::proto::Limits::default();
                        match wsecho::proto::handshake::parse_response(&conn.head, &limits) {
                            Ok(None) => continue,
                            Err(_) => {
                                dead = Some("bad_response".into());
                                break;
                            }
                            Ok(Some(resp)) => {
                                if resp.status != 101 {
                                    dead = Some(format!("http_{}", resp.status));
                                    break;
                                }
                                if resp.accept.as_deref() != Some(sh.accept.as_str()) {
                                    dead = Some("bad_accept".into());
                                    break;
                                }
                                if plan.compress.is_some() {
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
                                    if plan.inflate_echo || !verbatim {
                                        conn.inflate_echoes(a.server_no_context_takeover);
                                    }
                                }
                                // Bytes after the head are frames: keep them.
                                let already = conn.head.len() - n;
                                let start = resp.head_len.saturating_sub(already);
                                data = &rbuf[start..n];
                                conn.head = Vec::new();
                                in_progress -= 1;
                                c.open += 1;
                                c.open_max = c.open_max.max(c.open);
                                if let Some(b) = &bar {
                                    b.inc(1);
                                }
                                if measuring && handshake_mode {
                                    let us = (now_ns - conn.started_ns) / 1000;
                                    let _ = hist.record(us.max(1));
                                }
                                conn.phase_ns = now_ns;
                                if conn.id <= c.initial_limit {
                                    c.initial_settled += 1;
                                }
                                match plan.mode {
                                    Mode::Handshakes => conn.start_close(&sh, now_ns),
                                    Mode::Churn => {
                                        conn.phase = Phase::Open;
                                        conn.pending += 1;
                                        conn.inflight.push_back(now_ns);
                                        c.hs_total += 1;
                                        if measuring {
                                            c.hs_window += 1;
                                        }
                                        timers.push(Reverse((now_ns + lifetime_ns(), key, conn.id)));
                                    }
                                    Mode::Echo | Mode::Classic => {
                                        conn.phase = Phase::Open;
                                        conn.pending += depth as u64;
                                        for _ in 0..depth {
                                            conn.inflight.push_back(now_ns);
                                        }
                                    }
                                    Mode::Rate => {
                                        conn.phase = Phase::Open;
                                        // Spread first sends over one interval.
                                        let off = conn.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) % rate_interval_ns.max(1);
                                        let due = now_ns + off;
                                        timers.push(Reverse((due, key, conn.id)));
                                    }
                                    Mode::Idle => conn.phase = Phase::Open,
                                }
                            }
                        }
                    }
                    let mode = plan.mode;
                    let in_window = stage == Stage::Window;
                    let in_drain = stage == Stage::Drain;
                    let res = conn.consume(data, &sh, |k, ev| match ev {
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
                                // The server closed first: not part of any mode's plan.
                                if !in_drain {
                                    c.err(&format!("server_close_{code}"));
                                }
                                k.start_close(&sh, now_ns);
                            }
                        }
                        RxEvent::Ping => k.queue_pong(),
                    });
                    if let Err(kind) = res {
                        dead = Some(kind.to_string());
                        break;
                    }
                }
            }
            if dead.is_none() && !eof {
                if let Err(e) = conn.flush(&sh) {
                    if !conn.got_close {
                        dead = Some(format!("write_{}", err_name(&e)));
                    } else {
                        eof = true;
                    }
                }
            }
            if let Some(kind) = dead {
                if stage != Stage::Drain || !conn.sent_close {
                    c.err(&kind);
                }
                drop_conn(&mut conns, key, &poll, &mut c, &mut in_progress);
            } else if eof {
                let ok_end = conn.sent_close && conn.got_close;
                let was_hs = conn.phase == Phase::Closing && handshake_mode && ok_end;
                if !ok_end && stage != Stage::Drain {
                    c.err(match conn.phase {
                        Phase::Handshaking => "eof_in_handshake",
                        _ if conn.got_close => "eof_after_server_close",
                        _ => "eof",
                    });
                }
                if was_hs {
                    c.hs_total += 1;
                    if measuring {
                        c.hs_window += 1;
                    }
                }
                drop_conn(&mut conns, key, &poll, &mut c, &mut in_progress);
            }
        }
    }

    let window = window_end.duration_since(window_start).as_secs_f64().max(1e-9);
    let mut r = Report {
        mode: plan.mode.name().into(),
        target: plan.url.clone(),
        conns: plan.conns,
        conns_open_max: c.open_max,
        size: plan.size,
        depth,
        window_s: window,
        msgs: c.msgs_window,
        msgs_per_s: c.msgs_window as f64 / window,
        mb_per_s: c.msgs_window as f64 * plan.size as f64 / window / 1e6,
        handshakes: c.hs_window,
        handshakes_per_s: c.hs_window as f64 / window,
        errors: c.errors,
        close_codes: c.close_codes,
        compressed_size: plan.compress.map(|_| sh.payload.len()),
        samples,
        ..Default::default()
    };
    if plan.mode == Mode::Idle {
        r.window_s = window_end.duration_since(window_start).as_secs_f64();
        r.msgs_per_s = 0.0;
        r.mb_per_s = 0.0;
    }
    r.set_histogram(&hist, plan.child);
    if let (Some(a), Some(b)) = (cpu_start, cpu_end) {
        let cpu = b - a;
        r.server.cpu_us = Some(cpu);
        if r.msgs > 0 {
            r.server.cpu_us_per_msg = Some(cpu / r.msgs as f64);
        }
        if r.handshakes > 0 {
            r.server.cpu_us_per_handshake = Some(cpu / r.handshakes as f64);
        }
    }
    if plan.mode == Mode::Idle {
        r.server.rss_before_kib = rss_before;
        r.server.rss_after_kib = rss_after;
        if let (Some(b), Some(a)) = (rss_before, rss_after) {
            if c.open_max > 0 {
                r.server.rss_per_conn_bytes = Some((a as f64 - b as f64) * 1024.0 / c.open_max as f64);
            }
        }
    }
    Ok(r)
}

fn drop_conn(conns: &mut Slab<Conn>, key: usize, poll: &Poll, c: &mut Counters, in_progress: &mut usize) {
    if let Some(mut conn) = conns.try_remove(key) {
        let _ = poll.registry().deregister(&mut conn.stream);
        match conn.phase {
            Phase::Connecting | Phase::Handshaking => {
                *in_progress -= 1;
                if conn.id <= c.initial_limit {
                    c.initial_settled += 1;
                }
            }
            _ => c.open -= 1,
        }
    }
}

fn err_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused".into(),
        Some(libc::ECONNRESET) => "reset".into(),
        Some(libc::EPIPE) => "broken_pipe".into(),
        Some(libc::EADDRNOTAVAIL) => "addr_not_avail".into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too_many_files".into(),
        Some(libc::ETIMEDOUT) => "timed_out".into(),
        _ => format!("{:?}", e.kind()).to_lowercase(),
    }
}

fn show_info(plan: &Plan) -> bool {
    !plan.child && !plan.quiet
}
