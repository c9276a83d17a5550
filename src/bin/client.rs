//! `wsecho-client`: gorilla/websocket's echo client (connect to
//! `ws://ADDR/echo`, log every message received, send the time every second,
//! close 1000 on Ctrl-C), plus a few modes for scripts and for the Autobahn
//! TestSuite. Parses flags and drives [`wsecho::client`]; the protocol lives
//! in the library.
//!
//! Exit status: 0 on a normal end; 1 if we could not connect or upgrade;
//! 2 for bad arguments; 3 if the connection ended badly (the server closed
//! with a code other than 1000, broke the protocol, dropped TCP, or echoes
//! were missing); 130 on a second interrupt.

use clap::Parser;
use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wsecho::client::{parse_url, Client, ClientError, ClientOptions, Message, Sender};

/// Normal end.
const EXIT_OK: i32 = 0;
/// Could not connect or upgrade: refused, timeout, non-101, bad accept key.
const EXIT_CONNECT: i32 = 1;
/// The connection ended badly (error close code, protocol error, reset,
/// missing echoes). 2 is taken by clap for usage errors.
const EXIT_ABNORMAL: i32 = 3;
/// A second interrupt while waiting for the server to close.
const EXIT_INTERRUPTED: i32 = 130;

/// How long we wait for the server to close after our Close (the seed's
/// "waits up to one second").
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// With `--count`: how long we wait for the last echoes after the last send.
const ECHO_WAIT: Duration = Duration::from_secs(5);
/// Autobahn mode: a case that sends nothing for this long is abandoned.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Autobahn mode: how long we wait for the server to drop TCP after the
/// closing handshake (or after we failed the connection).
const CASE_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// WebSocket echo client: sends the time every second and logs each echo.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Server address; connects to ws://ADDR/echo.
    #[arg(long, default_value = "localhost:8080")]
    addr: String,
    /// Full URL, ws://host[:port][/path]; overrides --addr.
    #[arg(long)]
    url: Option<String>,
    /// Seconds between messages (fractions allowed).
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    interval: f64,
    /// Send N messages, wait for their echoes (at most 5 s), close and exit.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Send this text instead of the current time.
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
    /// Send each line of stdin and print each reply on stdout; close at EOF.
    #[arg(long, conflicts_with_all = ["interval", "count", "message"])]
    stdin: bool,
    /// Offer this subprotocol (repeatable, in preference order).
    #[arg(long = "subprotocol", value_name = "NAME")]
    subprotocols: Vec<String>,
    /// Act as the Autobahn fuzzingserver's client at this URL
    /// (ws://127.0.0.1:PORT): run every case, echoing, then update reports.
    #[arg(long, value_name = "URL", conflicts_with_all = ["url", "interval", "count", "message", "stdin"])]
    autobahn: Option<String>,
    /// Agent name reported to the Autobahn fuzzingserver.
    #[arg(long, default_value = "wsecho-client", requires = "autobahn")]
    agent: String,
    /// Seconds allowed for the TCP connect and the upgrade.
    #[arg(long, default_value_t = 10.0, value_parser = parse_interval)]
    connect_timeout: f64,
    /// Offer permessage-deflate (RFC 7692); if the server agrees, messages
    /// are sent compressed.
    #[arg(long)]
    compress: bool,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let opts = ClientOptions {
        protocols: args.subprotocols.clone(),
        timeout: Duration::from_secs_f64(args.connect_timeout),
        compress: args.compress,
        ..ClientOptions::default()
    };
    let code = match &args.autobahn {
        Some(base) => autobahn(base, &args.agent, &opts),
        None => interactive(&args, &opts),
    };
    // The reader and stdin threads may be blocked in a read: exit without
    // joining them.
    std::process::exit(code);
}

/// Connect, logging a clear reason on failure.
fn connect(url: &str, opts: &ClientOptions) -> Result<Client, i32> {
    Client::connect(url, opts).map_err(|e| {
        log::error!("{}", connect_error(url, &e));
        EXIT_CONNECT
    })
}

/// Why a connection attempt failed, naming the address for socket errors.
fn connect_error(url: &str, e: &ClientError) -> String {
    let target = parse_url(url).map_or_else(|_| url.to_string(), |(authority, _)| authority);
    match e {
        ClientError::Io(io) => match io.kind() {
            io::ErrorKind::ConnectionRefused => {
                format!("connection refused to {target} (is the server running?)")
            }
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                format!("timed out connecting to {target}")
            }
            _ => format!("cannot connect to {target}: {io}"),
        },
        _ => format!("{url}: {e}"),
    }
}

/// A well-known close code's name, for logs.
fn close_code_name(code: u16) -> &'static str {
    match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1007 => "invalid payload data",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "mandatory extension",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        _ => "",
    }
}

/// `1009 (message too big) "reason"`, or `no status code` for an empty Close.
fn describe_close(c: &Option<(u16, String)>) -> String {
    match c {
        None => "no status code".to_string(),
        Some((code, reason)) => {
            let mut s = code.to_string();
            let name = close_code_name(*code);
            if !name.is_empty() {
                s.push_str(&format!(" ({name})"));
            }
            if !reason.is_empty() {
                s.push_str(&format!(" {reason:?}"));
            }
            s
        }
    }
}

/// What the main loop waits for: one channel from every source.
enum Event {
    /// SIGINT or SIGTERM.
    Signal,
    /// A line of stdin (`--stdin`).
    Line(String),
    /// Stdin ended (`--stdin`).
    StdinEof,
    /// A message from the server (pings are answered by the library).
    Msg(Message),
    /// After the server's Close: whether it then closed TCP within the wait.
    TcpClosed(bool),
    /// Receiving failed; on a protocol error the library has sent our Close.
    Failed(ClientError),
}

/// Receives in the background and forwards everything to the main loop.
fn reader(mut client: Client, tx: mpsc::Sender<Event>) {
    loop {
        match client.recv() {
            Ok(Message::Close(c)) => {
                let _ = tx.send(Event::Msg(Message::Close(c)));
                // The library has answered (or we had sent Close first); RFC
                // 6455 §7.1.1: the server should now close TCP.
                let _ = client.set_read_timeout(Some(CLOSE_WAIT));
                let _ = tx.send(Event::TcpClosed(client.wait_for_eof()));
                return;
            }
            Ok(m) => {
                if tx.send(Event::Msg(m)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Event::Failed(e));
                return;
            }
        }
    }
}

/// The default, `--count` and `--stdin` modes.
fn interactive(args: &Args, opts: &ClientOptions) -> i32 {
    let url = args.url.clone().unwrap_or_else(|| format!("ws://{}/echo", args.addr));
    log::info!("connecting to {url}");
    let client = match connect(&url, opts) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.subprotocols.is_empty() {
        match client.protocol() {
            Some(p) => log::info!("server chose subprotocol {p:?}"),
            None => log::info!("server chose no subprotocol"),
        }
    }
    let sender = match client.try_clone_sender() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot clone the socket: {e}");
            return EXIT_ABNORMAL;
        }
    };

    let (tx, rx) = mpsc::channel();
    {
        let tx = tx.clone();
        std::thread::spawn(move || reader(client, tx));
    }
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]) {
        Ok(mut signals) => {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    if tx.send(Event::Signal).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => log::warn!("cannot install signal handlers: {e}"),
    }
    if args.stdin {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Event::Line(l)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        log::error!("reading stdin: {e}");
                        break;
                    }
                }
            }
            let _ = tx.send(Event::StdinEof);
        });
    }
    drop(tx);

    let interval = Duration::from_secs_f64(args.interval);
    let mut run = Run {
        sender,
        print_replies: args.stdin,
        message: args.message.clone(),
        count: args.count,
        sent: 0,
        received: 0,
        next_tick: (!args.stdin).then(|| Instant::now() + interval),
        echo_deadline: None,
        close_deadline: None,
        server_close: None,
        trouble: false,
    };
    if run.count == Some(0) {
        run.start_close();
    }
    run.main_loop(&rx, interval)
}

/// State of the main loop of [`interactive`].
struct Run {
    /// Sends our messages and our Close.
    sender: Sender,
    /// `--stdin`: replies go to stdout, one per line, instead of the log.
    print_replies: bool,
    /// `--message`, else the current time is sent.
    message: Option<String>,
    /// `--count`: stop sending after this many.
    count: Option<u64>,
    /// Messages sent so far.
    sent: u64,
    /// Data messages received so far.
    received: u64,
    /// When the ticker sends next (None: not ticking).
    next_tick: Option<Instant>,
    /// `--count`: all sent; the echoes must arrive before this.
    echo_deadline: Option<Instant>,
    /// A Close is under way (ours or the server's): exit at this instant at
    /// the latest.
    close_deadline: Option<Instant>,
    /// The server's Close, once received.
    server_close: Option<Option<(u16, String)>>,
    /// Something went wrong that makes the exit status non-zero unless the
    /// server's close code says otherwise (echoes missing, a send failed).
    trouble: bool,
}

impl Run {
    fn main_loop(&mut self, rx: &mpsc::Receiver<Event>, interval: Duration) -> i32 {
        loop {
            let deadline = [self.next_tick, self.echo_deadline, self.close_deadline].into_iter().flatten().min();
            let event = match deadline {
                None => rx.recv().ok(),
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(ev) => Some(ev),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Some(code) = self.on_timer(interval) {
                            return code;
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(event) = event else {
                // Every source has ended; cannot happen while the reader runs.
                return self.exit_status();
            };
            if let Some(code) = self.on_event(event) {
                return code;
            }
        }
    }

    /// A deadline passed; `Some(status)` to exit.
    fn on_timer(&mut self, interval: Duration) -> Option<i32> {
        let now = Instant::now();
        if self.close_deadline.is_some_and(|d| d <= now) {
            match &self.server_close {
                None => log::warn!("the server did not answer our Close within {CLOSE_WAIT:?}"),
                Some(_) => log::warn!("the server did not close TCP within {CLOSE_WAIT:?}"),
            }
            return Some(self.exit_status());
        }
        if self.echo_deadline.is_some_and(|d| d <= now) {
            log::warn!("received {} of {} echoes within {ECHO_WAIT:?}", self.received, self.sent);
            self.trouble = true;
            self.start_close();
            return None;
        }
        if self.next_tick.is_some_and(|t| t <= now) {
            let text = match &self.message {
                Some(m) => m.clone(),
                None => rfc3339_utc(SystemTime::now()),
            };
            if let Err(e) = self.sender.send_text(&text) {
                self.send_failed(e);
                return None;
            }
            self.sent += 1;
            if self.count.is_some_and(|n| self.sent >= n) {
                self.next_tick = None;
                self.echo_deadline = Some(now + ECHO_WAIT);
                self.close_if_all_echoed();
            } else {
                // Keep the cadence, but never burst to catch up.
                let next = self.next_tick.unwrap_or(now) + interval;
                self.next_tick = Some(next.max(now));
            }
        }
        None
    }

    /// `Some(status)` to exit.
    fn on_event(&mut self, event: Event) -> Option<i32> {
        match event {
            Event::Signal => {
                if self.close_deadline.is_some() {
                    log::warn!("second interrupt: exiting now");
                    return Some(EXIT_INTERRUPTED);
                }
                log::info!("interrupt");
                self.start_close();
            }
            Event::Line(line) => {
                if self.close_deadline.is_none() {
                    match self.sender.send_text(&line) {
                        Ok(()) => self.sent += 1,
                        Err(e) => self.send_failed(e),
                    }
                }
            }
            Event::StdinEof => self.start_close(),
            Event::Msg(Message::Text(t)) => {
                self.received += 1;
                if self.print_replies {
                    let mut out = io::stdout().lock();
                    let _ = writeln!(out, "{t}").and_then(|_| out.flush());
                } else {
                    log::info!("recv: {t}");
                }
                self.close_if_all_echoed();
            }
            Event::Msg(Message::Binary(b)) => {
                self.received += 1;
                if self.print_replies {
                    let mut out = io::stdout().lock();
                    let _ = writeln!(out, "{}", String::from_utf8_lossy(&b)).and_then(|_| out.flush());
                } else {
                    log::info!("recv: ({} bytes binary) {:02x?}", b.len(), &b[..b.len().min(32)]);
                }
                self.close_if_all_echoed();
            }
            Event::Msg(Message::Ping(p)) => log::debug!("ping ({} bytes), answered", p.len()),
            Event::Msg(Message::Pong(p)) => log::debug!("pong ({} bytes)", p.len()),
            Event::Msg(Message::Close(c)) => {
                let text = describe_close(&c);
                let normal = !matches!(&c, Some((code, _)) if *code != 1000);
                if self.close_deadline.is_some() {
                    // We asked first; this is the server's answer.
                    if normal {
                        log::info!("server closed: {text}");
                    } else {
                        log::error!("server closed: {text}");
                    }
                } else {
                    if normal {
                        log::info!("server closed the connection: {text}");
                    } else {
                        log::error!("server closed the connection: {text}");
                    }
                    self.close_deadline = Some(Instant::now() + CLOSE_WAIT);
                }
                self.server_close = Some(c);
                self.next_tick = None;
                self.echo_deadline = None;
            }
            Event::TcpClosed(eof) => {
                if !eof {
                    log::warn!("the server did not close TCP within {CLOSE_WAIT:?}");
                }
                return Some(self.exit_status());
            }
            Event::Failed(e) => {
                match &e {
                    ClientError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
                        if self.close_deadline.is_some() && self.server_close.is_none() {
                            log::warn!("server closed TCP without answering our Close");
                            return Some(self.exit_status());
                        }
                        log::error!("server closed TCP without a Close frame (1006, abnormal closure)");
                    }
                    ClientError::Protocol(p) => {
                        log::error!("{e}; sent Close {}", describe_close(&Some((p.close_code().0, String::new()))))
                    }
                    _ => log::error!("connection error: {e}"),
                }
                return Some(EXIT_ABNORMAL);
            }
        }
        None
    }

    /// `--count`: every message sent has come back; close.
    fn close_if_all_echoed(&mut self) {
        if let Some(n) = self.count {
            if self.sent >= n && self.received >= n {
                self.start_close();
            }
        }
    }

    /// Send Close 1000 once and give the server [`CLOSE_WAIT`] to close.
    fn start_close(&mut self) {
        self.next_tick = None;
        self.echo_deadline = None;
        if self.close_deadline.is_some() {
            return;
        }
        if let Err(e) = self.sender.send_close(1000, "") {
            log::warn!("sending Close failed: {e}");
        }
        self.close_deadline = Some(Instant::now() + CLOSE_WAIT);
    }

    /// A send failed: stop sending and give the reader a moment to say why.
    fn send_failed(&mut self, e: io::Error) {
        log::error!("send failed: {e}");
        self.trouble = true;
        self.next_tick = None;
        self.echo_deadline = None;
        if self.close_deadline.is_none() {
            self.close_deadline = Some(Instant::now() + CLOSE_WAIT);
        }
    }

    /// 0 unless the server closed with an error code, or (with no close code
    /// from the server) something else went wrong.
    fn exit_status(&self) -> i32 {
        match &self.server_close {
            Some(Some((code, _))) if *code != 1000 => EXIT_ABNORMAL,
            Some(_) if self.received < self.count.unwrap_or(0) => EXIT_ABNORMAL,
            Some(_) => EXIT_OK,
            None if self.trouble => EXIT_ABNORMAL,
            None => EXIT_OK,
        }
    }
}

/// `--autobahn`: the fuzzingserver's client protocol.
fn autobahn(base: &str, agent: &str, opts: &ClientOptions) -> i32 {
    let base = base.trim_end_matches('/');
    let count = match case_count(base, opts) {
        Ok(n) => n,
        Err(code) => return code,
    };
    log::info!("autobahn: {count} cases at {base} (agent {agent})");
    let started = Instant::now();
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        log::info!("case {case}/{count}");
        match Client::connect(&url, opts) {
            Ok(client) => echo_case(client, case),
            Err(e) => log::warn!("case {case}: {}", connect_error(&url, &e)),
        }
    }
    log::info!("ran {count} cases in {:.1?}", started.elapsed());
    let url = format!("{base}/updateReports?agent={agent}");
    let mut client = match connect(&url, opts) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _ = client.set_read_timeout(Some(CASE_TIMEOUT));
    loop {
        match client.recv() {
            Ok(Message::Close(_)) => {
                let _ = client.set_read_timeout(Some(CASE_CLOSE_WAIT));
                client.wait_for_eof();
                break;
            }
            Ok(_) => {}
            Err(e) => {
                log::error!("updateReports: {e}");
                return EXIT_ABNORMAL;
            }
        }
    }
    log::info!("reports updated");
    EXIT_OK
}

/// `/getCaseCount`: a connection whose one text message is the count.
fn case_count(base: &str, opts: &ClientOptions) -> Result<u32, i32> {
    let url = format!("{base}/getCaseCount");
    let mut client = connect(&url, opts)?;
    let _ = client.set_read_timeout(Some(CASE_TIMEOUT));
    let mut count = None;
    loop {
        match client.recv() {
            Ok(Message::Text(t)) => match t.trim().parse::<u32>() {
                Ok(n) => count = Some(n),
                Err(_) => {
                    log::error!("getCaseCount: not a number: {t:?}");
                    return Err(EXIT_ABNORMAL);
                }
            },
            Ok(Message::Close(_)) => {
                let _ = client.set_read_timeout(Some(CASE_CLOSE_WAIT));
                client.wait_for_eof();
                break;
            }
            Ok(_) => {}
            Err(e) => {
                if count.is_some() {
                    break;
                }
                log::error!("getCaseCount: {e}");
                return Err(EXIT_ABNORMAL);
            }
        }
    }
    count.ok_or_else(|| {
        log::error!("getCaseCount: the server closed without sending the count");
        EXIT_ABNORMAL
    })
}

/// One Autobahn case: echo every message with its type until the server
/// closes. `recv` answers pings and Close, validates UTF-8 and, on a
/// protocol error, sends our Close with the right code; then we only wait for
/// the server to drop TCP.
fn echo_case(mut client: Client, case: u32) {
    let _ = client.set_read_timeout(Some(CASE_TIMEOUT));
    loop {
        let sent = match client.recv() {
            Ok(Message::Text(t)) => client.send_text(&t),
            Ok(Message::Binary(b)) => client.send_binary(&b),
            Ok(Message::Ping(_) | Message::Pong(_)) => Ok(()),
            Ok(Message::Close(c)) => {
                log::debug!("case {case}: server closed: {}", describe_close(&c));
                break;
            }
            Err(ClientError::Protocol(e)) => {
                log::debug!("case {case}: failed the connection: {e}");
                break;
            }
            Err(e) => {
                log::debug!("case {case}: {e}");
                return;
            }
        };
        if let Err(e) = sent {
            // Keep reading: the server's Close (or a reset) ends the case.
            log::debug!("case {case}: send failed: {e}");
        }
    }
    let _ = client.set_read_timeout(Some(CASE_CLOSE_WAIT));
    if !client.wait_for_eof() {
        log::debug!("case {case}: server did not close TCP within {CASE_CLOSE_WAIT:?}");
    }
}

/// `SystemTime` as RFC 3339 UTC with milliseconds: `2024-02-29T23:59:59.123Z`.
fn rfc3339_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, d.subsec_millis())
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's `civil_from_days` (eras of 400 years, March-based years
/// so the leap day comes last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        let at = |s: u64, ms: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn civil_from_days_round_trips_every_day_of_four_centuries() {
        let mut expect = (1970i64, 1u32, 1u32);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), expect, "day {days}");
            let (y, m, d) = expect;
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            expect = if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn close_descriptions() {
        assert_eq!(describe_close(&None), "no status code");
        assert_eq!(describe_close(&Some((1009, "too big".into()))), "1009 (message too big) \"too big\"");
        assert_eq!(describe_close(&Some((4000, String::new()))), "4000");
    }
}
