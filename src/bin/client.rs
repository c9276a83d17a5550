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
use std::time::{Duration, Instant};
use wsecho::client::autobahn::{self, AutobahnError};
use wsecho::client::{connect_error, describe_close, Client, ClientError, ClientOptions, Message, Sender};

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
        Some(base) => match autobahn::run(base, &args.agent, &opts) {
            Ok(_) => EXIT_OK,
            Err(e) => {
                log::error!("{e}");
                match e {
                    AutobahnError::Connect { .. } => EXIT_CONNECT,
                    _ => EXIT_ABNORMAL,
                }
            }
        },
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
                None => now_rfc3339(),
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

/// The current time as RFC 3339 UTC with milliseconds (truncated):
/// `2024-02-29T23:59:59.123Z`, the text the default mode sends.
fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}
