//! `wsecho-client`: gorilla/websocket's echo client (connect to
//! `ws://ADDR/echo`, log every message received, send the time every second,
//! close 1000 on Ctrl-C), plus a few modes for scripts and for the Autobahn
//! TestSuite. Parses flags, starts the threads that read the socket, signals
//! and stdin, and maps the outcome to an exit status; the protocol, the
//! main loop ([`wsecho::client::interactive`]) and the Autobahn driver
//! ([`wsecho::client::autobahn`]) live in the library.
//!
//! Exit status: 0 on a normal end; 1 if we could not connect or upgrade;
//! 2 for bad arguments; 3 if the connection ended badly (the server closed
//! with a code other than 1000, broke the protocol, dropped TCP, or echoes
//! were missing); 130 on a second interrupt.

use clap::Parser;
use std::io::{self, BufRead};
use std::sync::mpsc;
use std::time::Duration;
use wsecho::client::autobahn::{self, AutobahnError};
use wsecho::client::interactive::{self, Event, Outcome, Settings};
use wsecho::client::tls::Trust;
use wsecho::client::{connect_error, Client, ClientOptions};

/// Normal end.
const EXIT_OK: i32 = 0;
/// Could not connect or upgrade: refused, timeout, non-101, bad accept key.
const EXIT_CONNECT: i32 = 1;
/// The connection ended badly (error close code, protocol error, reset,
/// missing echoes). 2 is taken by clap for usage errors.
const EXIT_ABNORMAL: i32 = 3;
/// A second interrupt while waiting for the server to close.
const EXIT_INTERRUPTED: i32 = 130;

/// WebSocket echo client: sends the time every second and logs each echo.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Server address; connects to ws://ADDR/echo.
    #[arg(long, default_value = "localhost:8080")]
    addr: String,
    /// Full URL, ws://host[:port][/path] or wss://…; overrides --addr.
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
    /// For wss://: trust only the CA certificate(s) in this PEM file (e.g. a
    /// test server's own certificate) instead of the web PKI's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<std::path::PathBuf>,
    /// For wss://: accept any certificate (a throw-away self-signed test
    /// server); the connection is encrypted but the server is not verified.
    #[arg(long)]
    insecure: bool,
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
    let trust = match (&args.ca, args.insecure) {
        (Some(ca), _) => Trust::CaFile(ca.clone()),
        (None, true) => {
            log::warn!("--insecure: the server's TLS certificate is not verified (anyone can pose as it)");
            Trust::Insecure
        }
        (None, false) => Trust::WebPki,
    };
    let opts = ClientOptions {
        trust,
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

/// The default, `--count` and `--stdin` modes: connect, start the event
/// sources (socket reader, signals, stdin lines) and run
/// [`interactive::run`].
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
    interactive::spawn_reader(client, tx.clone());
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

    let settings = Settings {
        interval: (!args.stdin).then(|| Duration::from_secs_f64(args.interval)),
        count: args.count,
        message: args.message.clone(),
        print_replies: args.stdin,
    };
    match interactive::run(sender, &rx, settings, io::stdout()) {
        Outcome::Normal => EXIT_OK,
        Outcome::Abnormal => EXIT_ABNORMAL,
        Outcome::Interrupted => EXIT_INTERRUPTED,
    }
}
