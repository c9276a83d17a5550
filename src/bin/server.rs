//! `wsecho`: the echo server. Parses flags, sets up logging and signals, and
//! runs the reactors (one per CPU by default); all logic lives in the library.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wsecho::proto::deflate::{CompressionMode, DeflateConfig};
use wsecho::proto::handshake::{OriginPolicy, UpgradePolicy};
use wsecho::proto::Limits;
use wsecho::server::{self, tls, AdminServer, BuildInfo, Config, Health, Runtime, RuntimeOptions};

/// Exit code for a bad flag or environment variable (clap's usage-error code).
const USAGE_ERROR: i32 = 2;

// Every numeric flag's range lives in one constant, used both to parse the
// flag and to write its help line, so the two cannot disagree.

/// Above a reactor buffer of 64 MiB nothing gets faster; it only costs memory.
const BUFFER_MAX: u64 = 64 << 20;
/// A memory cap beyond 1 TiB is no cap at all.
const MEMORY_MAX: u64 = 1 << 40;
/// `--read-buffer`: the reactor never reads into less than 4 KiB (and
/// raises it to twice `--max-request` by itself).
const READ_BUFFER: Whole = Whole::bytes(4096, BUFFER_MAX);
/// `--cork`: 0 turns batching off (every frame is its own write).
const CORK: Whole = Whole::bytes(0, BUFFER_MAX);
/// `--write-chunk`: the pool never makes chunks under 64 bytes; one chunk is
/// allocated per backlogged connection, so keep it well below memory.
const WRITE_CHUNK: Whole = Whole::bytes(64, BUFFER_MAX);
/// `--backpressure`: 0 pauses reading whenever anything is unsent.
const BACKPRESSURE: Whole = Whole::bytes(0, MEMORY_MAX);
/// `--max-pool-bytes`: at least [`POOL_MIN_CHUNKS`] of the smallest chunk
/// (checked against the actual `--write-chunk` in [`check_combinations`]).
const MAX_POOL_BYTES: Whole = Whole::bytes(POOL_MIN_CHUNKS * WRITE_CHUNK.min, MEMORY_MAX);
/// The reactor reads at most the pool's room left less two chunks of slack,
/// so a pool of two chunks or less never lets a connection be read at all;
/// three is the least that reads a chunk at a time.
const POOL_MIN_CHUNKS: u64 = 3;
/// The session counts frame and message lengths in 32 bits (anything over
/// 4 GiB - 1 would be silently lowered); 2 GiB is the round figure below.
const LENGTH_MAX: u64 = 1 << 31;
/// `--max-frame`: at least 125 bytes, so every control frame (RFC 6455
/// §5.5: payload ≤ 125) fits. Large frames are streamed, so this bounds
/// work, not memory.
const MAX_FRAME: Whole = Whole::bytes(125, LENGTH_MAX);
/// `--max-message`: messages are echoed frame by frame, so this bounds work,
/// not memory.
const MAX_MESSAGE: Whole = Whole::bytes(1, LENGTH_MAX);
/// `--max-fragments`: 0 would refuse every fragmented message, which RFC 6455
/// §5.4 requires us to accept.
const MAX_FRAGMENTS: Whole = Whole::count(1, 1 << 24);
/// `--max-request`: room for a minimal upgrade request (~140 bytes); the head
/// is buffered and rescanned per connection, so 1 MiB is plenty.
const MAX_REQUEST: Whole = Whole::bytes(256, 1 << 20);
/// `--max-headers`: an upgrade needs Host, Upgrade, Connection,
/// Sec-WebSocket-Key and -Version; the parser has 256 header slots.
const MAX_HEADERS: Whole = Whole::count(5, 256);
/// `--max-held-frame`: 0 streams every data frame; the reactor caps it at
/// half its read buffer.
const MAX_HELD_FRAME: Whole = Whole::bytes(0, BUFFER_MAX);
/// `--max-held-input`: 0 holds nothing but frame headers.
const MAX_HELD_INPUT: Whole = Whole::bytes(0, MEMORY_MAX);
/// `--max-inflaters`: 0 refuses every compressed message.
const MAX_INFLATERS: Whole = Whole::count(0, 1 << 24);
/// `--max-connections`: the open-file limit binds long before 16 Mi.
const MAX_CONNECTIONS: Whole = Whole::count(1, 1 << 24);
/// `--compression-level`: zlib's levels.
const COMPRESSION_LEVEL: Whole = Whole::count(0, 9);
/// `--server-max-window-bits` / `--client-max-window-bits` (RFC 7692 §7.1.2).
const WINDOW_BITS: Whole = Whole::count(8, 15);
/// `--compression-min-size`.
const COMPRESSION_MIN_SIZE: Whole = Whole::bytes(0, 1 << 30);
/// `--threads`: a reactor per CPU is the point; 1024 is far past any box.
const THREADS: Whole = Whole::count(1, 1024);
/// `--backlog`: what listen(2) takes (an int); Linux caps it at somaxconn.
const BACKLOG: Whole = Whole::count(1, i32::MAX as u64);

/// Timeouts that must be positive.
const TIMEOUT: Span = Span { zero: None };
/// `--idle-timeout`: 0 turns keepalive off.
const IDLE: Span = Span { zero: Some("keepalive off") };
/// `--shutdown-grace`: 0 closes at once without waiting for the peers.
const GRACE: Span = Span { zero: Some("do not wait") };
/// `--drain-delay`: 0 starts closing connections as soon as the signal comes.
const DRAIN_DELAY: Span = Span { zero: Some("close at once") };

/// A lean WebSocket (RFC 6455) echo server: a page at `/`, echo at `/echo`.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Durations: 250ms, 5s, 1m, 1h30m, or plain seconds (5, 0.5); at most 1 day.\n\
                  Every flag can also be set by its environment variable; a flag given \
                  on the command line wins."
)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, env = "WSECHO_ADDR", value_name = "HOST:PORT", default_value = "localhost:8080",
          value_parser = resolve_addr)]
    addr: SocketAddr,
    /// Allowed Origin (repeatable, or comma-separated), or `*` for any.
    /// Default: same origin as Host.
    #[arg(long = "allow-origin", env = "WSECHO_ALLOW_ORIGIN", value_name = "ORIGIN", value_delimiter = ',')]
    allow_origin: Vec<String>,
    /// Supported subprotocol, in preference order (repeatable, or
    /// comma-separated).
    #[arg(long = "subprotocol", env = "WSECHO_SUBPROTOCOL", value_name = "NAME", value_delimiter = ',')]
    subprotocols: Vec<String>,
    #[arg(long, env = "WSECHO_HANDSHAKE_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = TIMEOUT.parser(), help = TIMEOUT.help("Time a client has to complete its upgrade request."))]
    handshake_timeout: Duration,
    #[arg(long, env = "WSECHO_CLOSE_TIMEOUT", value_name = "DURATION", default_value = "5s",
          value_parser = TIMEOUT.parser(),
          help = TIMEOUT.help("Time to wait for the peer after we send a Close or an HTTP error."))]
    close_timeout: Duration,
    #[arg(long, env = "WSECHO_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "5s",
          value_parser = GRACE.parser(), help = GRACE.help("Time open connections get to close on SIGINT/SIGTERM."))]
    shutdown_grace: Duration,
    #[arg(long, env = "WSECHO_MAX_FRAME", value_name = "BYTES", default_value_t = 16 << 20,
          value_parser = MAX_FRAME.parser::<u64>(),
          help = MAX_FRAME.help("Largest frame payload (over it: close 1009); a frame is also held to --max-message."))]
    max_frame: u64,
    #[arg(long, env = "WSECHO_MAX_MESSAGE", value_name = "BYTES", default_value_t = 16 << 20,
          value_parser = MAX_MESSAGE.parser::<u64>(), help = MAX_MESSAGE.help("Largest message (over it: close 1009)."))]
    max_message: u64,
    #[arg(long, env = "WSECHO_MAX_FRAGMENTS", value_name = "N", default_value_t = 131_072,
          value_parser = MAX_FRAGMENTS.parser::<u32>(),
          help = MAX_FRAGMENTS.help("Most fragments in one message (over it: close 1009)."))]
    max_fragments: u32,
    #[arg(long, env = "WSECHO_MAX_REQUEST", value_name = "BYTES", default_value_t = 8192,
          value_parser = MAX_REQUEST.parser::<usize>(),
          help = MAX_REQUEST.help("Largest upgrade request head (over it: 431)."))]
    max_request: usize,
    #[arg(long, env = "WSECHO_MAX_HEADERS", value_name = "N", default_value_t = 64,
          value_parser = MAX_HEADERS.parser::<usize>(),
          help = MAX_HEADERS.help("Most headers in the upgrade request (over it: 431)."))]
    max_headers: usize,
    #[arg(long, env = "WSECHO_MAX_CONNECTIONS", value_name = "N", default_value_t = 1_000_000,
          value_parser = MAX_CONNECTIONS.parser::<usize>(),
          help = MAX_CONNECTIONS.help("Most simultaneous connections (over it: 503)."))]
    max_connections: usize,
    #[arg(long, env = "WSECHO_READ_BUFFER", value_name = "BYTES", default_value_t = 128 * 1024,
          value_parser = READ_BUFFER.parser::<usize>(),
          help = READ_BUFFER.help("The reactor's read buffer (one per reactor; raised to twice --max-request if smaller)."))]
    read_buffer: usize,
    #[arg(long, env = "WSECHO_CORK", value_name = "BYTES", default_value_t = 64 * 1024,
          value_parser = CORK.parser::<usize>(),
          help = CORK.help("Cork (batched write) buffer, one per reactor; 0 writes every frame by itself."))]
    cork: usize,
    #[arg(long, env = "WSECHO_WRITE_CHUNK", value_name = "BYTES", default_value_t = 16 * 1024,
          value_parser = WRITE_CHUNK.parser::<usize>(),
          help = WRITE_CHUNK.help(&format!("Pooled write chunk, held only while the kernel refuses bytes; --max-pool-bytes must hold {POOL_MIN_CHUNKS}.")))]
    write_chunk: usize,
    #[arg(long, env = "WSECHO_BACKPRESSURE", value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = BACKPRESSURE.parser::<usize>(),
          help = BACKPRESSURE.help("Unsent bytes per connection above which it is not read (backpressure)."))]
    backpressure: usize,
    /// permessage-deflate policy: off, no-context-takeover (no zlib state
    /// kept between messages), or context-takeover (better ratio, ~300 KiB
    /// per compressing connection).
    #[arg(long, env = "WSECHO_COMPRESSION", value_enum, default_value_t = Compression::NoContextTakeover)]
    compression: Compression,
    #[arg(long, env = "WSECHO_COMPRESSION_LEVEL", value_name = "N", default_value_t = 1,
          value_parser = COMPRESSION_LEVEL.parser::<u32>(),
          help = COMPRESSION_LEVEL.help("zlib level for messages we compress."))]
    compression_level: u32,
    #[arg(long, env = "WSECHO_SERVER_MAX_WINDOW_BITS", value_name = "BITS", default_value_t = 15,
          value_parser = WINDOW_BITS.parser::<u8>(), help = WINDOW_BITS.help("Largest window we compress with."))]
    server_max_window_bits: u8,
    #[arg(long, env = "WSECHO_CLIENT_MAX_WINDOW_BITS", value_name = "BITS", default_value_t = 15,
          value_parser = WINDOW_BITS.parser::<u8>(),
          help = WINDOW_BITS.help("Largest window we ask clients to compress with."))]
    client_max_window_bits: u8,
    #[arg(long, env = "WSECHO_COMPRESSION_MIN_SIZE", value_name = "BYTES", default_value_t = 0,
          value_parser = COMPRESSION_MIN_SIZE.parser::<usize>(),
          help = COMPRESSION_MIN_SIZE.help("Re-compressed messages smaller than this are echoed uncompressed."))]
    compression_min_size: usize,
    #[arg(long, env = "WSECHO_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s",
          value_parser = IDLE.parser(), help = IDLE.help("Silence before a keepalive Ping."))]
    idle_timeout: Duration,
    #[arg(long, env = "WSECHO_PING_TIMEOUT", value_name = "DURATION", default_value = "30s",
          value_parser = TIMEOUT.parser(),
          help = TIMEOUT.help("Time to wait for any answer to the keepalive Ping before closing 1001."))]
    ping_timeout: Duration,
    #[arg(long, env = "WSECHO_BACKPRESSURE_TIMEOUT", value_name = "DURATION", default_value = "30s",
          value_parser = TIMEOUT.parser(),
          help = TIMEOUT.help("Time a connection may stay paused by backpressure (peer not reading) before close 1008."))]
    backpressure_timeout: Duration,
    #[arg(long, env = "WSECHO_MAX_POOL_BYTES", value_name = "BYTES", default_value_t = 256 << 20,
          value_parser = MAX_POOL_BYTES.parser::<usize>(),
          help = MAX_POOL_BYTES.help(&format!("Cap on write-chunk memory lent out across all connections; at least {POOL_MIN_CHUNKS} × --write-chunk.")))]
    max_pool_bytes: usize,
    #[arg(long, env = "WSECHO_MAX_HELD_FRAME", value_name = "BYTES", default_value_t = 64 * 1024,
          value_parser = MAX_HELD_FRAME.parser::<u64>(),
          help = MAX_HELD_FRAME.help("Data frames up to this payload are held until complete; larger ones are echoed piece by piece as they arrive (capped at the read buffer less 1 KiB)."))]
    max_held_frame: u64,
    #[arg(long, env = "WSECHO_MAX_HELD_INPUT", value_name = "BYTES", default_value_t = 16 << 20,
          value_parser = MAX_HELD_INPUT.parser::<usize>(),
          help = MAX_HELD_INPUT.help("Budget for unfinished frames and request heads held across all connections (split evenly among the reactors); over it frames stream and unfinished request heads get 503."))]
    max_held_input: usize,
    #[arg(long, env = "WSECHO_FRAME_TIMEOUT", value_name = "DURATION", default_value = "30s",
          value_parser = TIMEOUT.parser(),
          help = TIMEOUT.help("Time a frame may take from its header to its last byte; slow-drip frames are closed 1008."))]
    frame_timeout: Duration,
    #[arg(long, env = "WSECHO_MAX_INFLATERS", value_name = "COUNT", default_value_t = 1024,
          value_parser = MAX_INFLATERS.parser::<usize>(),
          help = MAX_INFLATERS.help("Most zlib inflaters (~43 KiB each) in use at once; past it a new compressed message is closed 1013."))]
    max_inflaters: usize,
    #[arg(long, env = "WSECHO_THREADS", value_name = "N", value_parser = THREADS.parser::<usize>(),
          help = THREADS.help("Reactor threads, each with its own SO_REUSEPORT listener; 1: a single reactor. Default: the CPUs this process may use (taskset, cgroups)."))]
    threads: Option<usize>,
    /// Pin reactor i to the i-th CPU this process may use.
    #[arg(long, env = "WSECHO_PIN", value_parser = clap::builder::BoolishValueParser::new())]
    pin: bool,
    /// Set SO_REUSEPORT so several wsecho processes can share the port (the
    /// kernel spreads new connections across them); implied by --threads > 1.
    #[arg(long, env = "WSECHO_REUSE_PORT", value_parser = clap::builder::BoolishValueParser::new())]
    reuse_port: bool,
    #[arg(long, env = "WSECHO_BACKLOG", value_name = "N", default_value_t = 4096,
          value_parser = BACKLOG.parser::<u32>(),
          help = BACKLOG.help("Accept-queue length requested per listener; the kernel caps it at net.core.somaxconn."))]
    backlog: u32,
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET
    /// /healthz: 200 "ok", 503 "draining" once SIGTERM/SIGINT came) on this
    /// separate address. Default: off.
    #[arg(long, env = "WSECHO_METRICS_ADDR", value_name = "HOST:PORT", value_parser = resolve_addr)]
    metrics_addr: Option<SocketAddr>,
    #[arg(long, env = "WSECHO_DRAIN_DELAY", value_name = "DURATION", default_value = "0",
          value_parser = DRAIN_DELAY.parser(),
          help = DRAIN_DELAY.help("On SIGTERM/SIGINT, keep serving (and accepting) this long with /healthz answering 503, so a load balancer stops sending new connections, before closing them with 1001; a second signal skips the rest."))]
    drain_delay: Duration,
    /// PEM certificate chain (leaf first) to serve https:// and wss:// with;
    /// needs --tls-key. --addr then serves TLS, unless --tls-addr is given.
    #[arg(long, env = "WSECHO_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "WSECHO_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve TLS with a throw-away certificate for localhost, 127.0.0.1 and
    /// ::1 made at start; its SHA-256 fingerprint is logged. For trying out.
    #[arg(long, env = "WSECHO_TLS_SELF_SIGNED", value_parser = clap::builder::BoolishValueParser::new(),
          conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_self_signed: bool,
    /// Serve TLS on this address and plain http:// and ws:// on --addr.
    #[arg(long, env = "WSECHO_TLS_ADDR", value_name = "HOST:PORT", value_parser = resolve_addr)]
    tls_addr: Option<SocketAddr>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Compression {
    Off,
    NoContextTakeover,
    ContextTakeover,
}

/// The inclusive range of a whole-number flag.
#[derive(Debug, Clone, Copy)]
struct Whole {
    min: u64,
    max: u64,
    /// Whether the number is a size in bytes (shown as KiB/MiB/...).
    bytes: bool,
}

impl Whole {
    const fn bytes(min: u64, max: u64) -> Whole {
        Whole { min, max, bytes: true }
    }

    const fn count(min: u64, max: u64) -> Whole {
        Whole { min, max, bytes: false }
    }

    /// `what` followed by the allowed range, for `--help`.
    fn help(self, what: &str) -> String {
        if self.bytes {
            format!("{what} [range: {} to {}]", size(self.min), size(self.max))
        } else {
            format!("{what} [range: {} to {}]", self.min, self.max)
        }
    }

    /// A clap value parser accepting exactly `min..=max`. The error names
    /// the range in plain digits (what the flag takes) and, for sizes, in
    /// binary units as well.
    fn parser<T>(self) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
    where
        T: TryFrom<u64> + Clone + Send + Sync + 'static,
    {
        move |s: &str| {
            let n = s.trim().parse::<u64>().ok().filter(|n| (self.min..=self.max).contains(n));
            match n.and_then(|n| T::try_from(n).ok()) {
                Some(v) => Ok(v),
                None if self.bytes => Err(format!(
                    "expected a whole number of bytes from {} to {} ({} to {})",
                    self.min,
                    self.max,
                    size(self.min),
                    size(self.max)
                )),
                None => Err(format!("expected a whole number from {} to {}", self.min, self.max)),
            }
        }
    }
}

/// `n` bytes in the largest binary unit that divides it exactly.
fn size(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(u, _)| n != 0 && n % u == 0) {
        Some((u, name)) => format!("{} {name}", n / u),
        None => format!("{n} B"),
    }
}

/// The range of a duration flag: [`Span::MIN`] to [`Span::MAX`], plus 0 if
/// `zero` says what 0 means.
#[derive(Debug, Clone, Copy)]
struct Span {
    zero: Option<&'static str>,
}

impl Span {
    /// Timers are not finer than a millisecond.
    const MIN: Duration = Duration::from_millis(1);
    /// One day. Longer is a mistake, and deadlines are `Instant + timeout`,
    /// which must not overflow.
    const MAX: Duration = Duration::from_secs(86_400);

    fn range(self) -> String {
        let span = format!("{} to {}", humantime::format_duration(Self::MIN), humantime::format_duration(Self::MAX));
        match self.zero {
            Some(means) => format!("0 ({means}) or {span}"),
            None => span,
        }
    }

    fn help(self, what: &str) -> String {
        format!("{what} [range: {}]", self.range())
    }

    /// A clap value parser: humantime (`250ms`, `5s`, `1m`) or plain seconds
    /// (`5`, `0.5`), within range.
    fn parser(self) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
        move |s: &str| {
            parse_duration(s)
                .filter(|d| (d.is_zero() && self.zero.is_some()) || (Self::MIN..=Self::MAX).contains(d))
                .ok_or_else(|| {
                    format!("expected a duration from {} (e.g. 250ms, 5s, 1m, or plain seconds: 0.5)", self.range())
                })
        }
    }
}

/// A plain number is seconds; anything else goes to humantime. `None` for
/// what is neither, and for negative, NaN, infinite or over-a-day numbers
/// (which `Duration::from_secs_f64` would panic on) and for a nonzero number
/// too small to be a whole nanosecond.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    match s.parse::<f64>() {
        Ok(0.0) => Some(Duration::ZERO),
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= Span::MAX.as_secs_f64() => {
            Some(Duration::from_secs_f64(secs)).filter(|d| !d.is_zero())
        }
        Ok(_) => None,
        Err(_) => humantime::parse_duration(s).ok(),
    }
}

/// `--addr`: resolved once, at start-up.
fn resolve_addr(s: &str) -> Result<SocketAddr, String> {
    match s.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err("resolves to no address".into()),
        Err(e) => Err(format!("expected HOST:PORT ({e})")),
    }
}

/// Parse flags and environment, exiting 2 with a one-line message on a bad
/// value. Help, version and other usage errors keep clap's own output.
fn parse_args() -> Args {
    // `--close-timeout -1` is a bad value for that flag, not an unknown flag
    // `-1`. (Only number-like values: `--close-timeout --addr x` still says
    // that --close-timeout lacks a value.)
    let cmd =
        Args::command().mut_args(|a| if a.get_action().takes_values() { a.allow_negative_numbers(true) } else { a });
    let parsed = cmd.try_get_matches().and_then(|m| Args::from_arg_matches(&m));
    let args = match parsed {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) => {
            // clap renders "error: …", then "[possible values: …]" for
            // enums, then a blank line and tips: keep what precedes the tips.
            let text = e.to_string();
            let lines: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            eprintln!("{}{}", lines.join(" "), env_source(&e).unwrap_or_default());
            std::process::exit(USAGE_ERROR);
        }
        Err(e) => e.exit(),
    };
    if let Err(msg) = check_combinations(&args) {
        eprintln!("error: {msg}");
        std::process::exit(USAGE_ERROR);
    }
    args
}

/// " (from WSECHO_X)" when the bad value came from the environment rather
/// than the command line: clap's message names only the flag.
fn env_source(e: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let cmd = Args::command();
    let var = cmd.get_arguments().find(|a| a.get_long() == Some(long))?.get_env()?.to_owned();
    let flag = format!("--{long}");
    let on_cmdline = std::env::args().skip(1).any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    (!on_cmdline && std::env::var_os(&var).is_some()).then(|| format!(" (from {})", var.to_string_lossy()))
}

/// Ranges that depend on more than one flag.
fn check_combinations(args: &Args) -> Result<(), String> {
    // A read is never larger than the pool's room less two chunks of slack:
    // with a pool of two chunks or less no connection is ever read (not even
    // its upgrade request) and every one times out.
    if args.tls_addr.is_some() && args.tls_cert.is_none() && !args.tls_self_signed {
        return Err("--tls-addr needs --tls-cert and --tls-key, or --tls-self-signed".into());
    }
    let least = args.write_chunk as u64 * POOL_MIN_CHUNKS;
    if (args.max_pool_bytes as u64) < least {
        return Err(format!(
            "--max-pool-bytes ({}) must be at least {POOL_MIN_CHUNKS} × --write-chunk ({}), i.e. {least}",
            args.max_pool_bytes, args.write_chunk
        ));
    }
    Ok(())
}

/// The TLS config the flags ask for (None: no TLS); exits 2 with a one-line
/// message naming the file if a certificate or key cannot be used.
fn tls_config(args: &Args) -> Option<Arc<rustls::ServerConfig>> {
    let made = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => tls::server_config_from_files(cert, key),
        _ if args.tls_self_signed => tls::self_signed().map(|s| {
            log::info!("self-signed certificate for localhost, 127.0.0.1, ::1; SHA-256 fingerprint {}", s.fingerprint);
            s.config
        }),
        _ => return None,
    };
    match made {
        Ok(config) => Some(config),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(USAGE_ERROR);
        }
    }
}

/// Log lines from a reactor thread carry its name (`r0`, `r1`, …) before
/// the message, so `r1 conn 7: …` is told apart from `r0 conn 7: …`.
fn init_logging() {
    use std::io::Write;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            let thread = std::thread::current();
            let reactor = thread.name().filter(|n| n.starts_with('r')).map_or(String::new(), |n| format!("{n} "));
            writeln!(buf, "[{} {:<5} {}] {reactor}{}", buf.timestamp(), record.level(), record.target(), record.args())
        })
        .init();
}

fn main() {
    init_logging();
    let args = parse_args();
    // Certificate trouble is a usage error: report it before anything else.
    let tls = tls_config(&args);
    // Catch SIGINT/SIGTERM before anything is announced: a signal sent as
    // soon as the listening line appears is queued, not fatal.
    let signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]);

    match server::raise_fd_limit() {
        Ok((soft, hard)) => log::info!("open-file limit: {soft} (hard {hard})"),
        Err(e) => log::warn!("could not raise the open-file limit: {e}"),
    }

    let origin = if args.allow_origin.iter().any(|o| o == "*") {
        OriginPolicy::Any
    } else if args.allow_origin.is_empty() {
        OriginPolicy::SameOrigin
    } else {
        OriginPolicy::List(args.allow_origin.clone())
    };
    let cfg = Config {
        limits: Limits {
            max_request_bytes: args.max_request,
            max_headers: args.max_headers,
            max_frame_payload: args.max_frame,
            max_message: args.max_message,
            max_fragments: args.max_fragments,
            max_held_frame: args.max_held_frame,
        },
        policy: UpgradePolicy { origin, subprotocols: args.subprotocols.clone() },
        handshake_timeout: args.handshake_timeout,
        close_timeout: args.close_timeout,
        shutdown_grace: args.shutdown_grace,
        max_connections: args.max_connections,
        read_buffer_size: args.read_buffer,
        cork_size: args.cork,
        write_chunk_size: args.write_chunk,
        backpressure_bytes: args.backpressure,
        backpressure_timeout: args.backpressure_timeout,
        max_pool_bytes: args.max_pool_bytes,
        max_held_input: args.max_held_input,
        frame_timeout: args.frame_timeout,
        max_inflaters: args.max_inflaters,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        ping_timeout: args.ping_timeout,
        backlog: args.backlog,
        reuse_port: args.reuse_port,
        deflate: DeflateConfig {
            mode: match args.compression {
                Compression::Off => CompressionMode::Off,
                Compression::NoContextTakeover => CompressionMode::NoContextTakeover,
                Compression::ContextTakeover => CompressionMode::ContextTakeover,
            },
            level: args.compression_level,
            server_max_window_bits: args.server_max_window_bits,
            client_max_window_bits: args.client_max_window_bits,
            min_size: args.compression_min_size,
        },
        ..Config::default()
    };

    let addr = args.addr;
    let opts = RuntimeOptions { threads: args.threads.unwrap_or_else(server::default_threads), pin: args.pin };
    let (plain, tls) = match (tls, args.tls_addr) {
        (Some(config), Some(tls_addr)) => (Some(addr), Some((tls_addr, config))),
        (Some(config), None) => (None, Some((addr, config))),
        (None, _) => (Some(addr), None),
    };
    let scheme = if plain.is_some() { "http" } else { "https" };
    let runtime = match Runtime::start_with(plain, tls, cfg, opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wsecho: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    log::info!(
        "listening on {scheme}://{} (page at /, echo at /echo): {} reactor{}{}, backlog {} (asked {}){}",
        runtime.local_addr(),
        runtime.reactors(),
        if runtime.reactors() == 1 { "" } else { "s" },
        if args.pin { " pinned" } else { "" },
        server::sys::granted_backlog(args.backlog),
        args.backlog,
        if args.reuse_port || runtime.reactors() > 1 { ", SO_REUSEPORT" } else { "" },
    );

    let health = Health::default();
    if let Some(maddr) = args.metrics_addr {
        let build = BuildInfo { threads: runtime.reactors(), compression: compression_name(args.compression) };
        match AdminServer::start(maddr, runtime.metrics(build), health.clone()) {
            Ok(admin) => log::info!("metrics on http://{}/metrics, health on /healthz", admin.local_addr()),
            Err(e) => {
                eprintln!("wsecho: cannot listen on {maddr} (--metrics-addr): {e}");
                std::process::exit(1);
            }
        }
    }

    if let (Some(tls_addr), true) = (runtime.tls_addr(), scheme == "http") {
        log::info!("listening on https://{tls_addr} (page at /, wss echo at /echo)");
    }

    // First SIGINT/SIGTERM: /healthz turns 503, serve on for --drain-delay
    // (a second signal cuts it short), then drain. Next signal: exit at once.
    let handle = runtime.shutdown_handle();
    match signals {
        Ok(mut signals) => {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for sig in signals.forever() {
                    let _ = tx.send(sig);
                }
            });
            let delay = args.drain_delay;
            std::thread::spawn(move || drain_on_signals(&rx, delay, &handle, &health));
        }
        Err(e) => log::warn!("cannot install signal handlers: {e}"),
    }

    if let Err(e) = runtime.join() {
        log::error!("reactor failed: {e}");
        std::process::exit(1);
    }
}

/// The drain, driven by the signals arriving on `rx`: turn unhealthy, wait
/// `delay` (or until the next signal), close every connection with 1001; a
/// signal after that exits at once.
fn drain_on_signals(
    rx: &std::sync::mpsc::Receiver<i32>,
    delay: Duration,
    handle: &server::ShutdownHandle,
    health: &Health,
) {
    let Ok(sig) = rx.recv() else { return };
    health.set_draining();
    log::info!("signal {sig}: drain requested; /healthz now answers 503");
    if !delay.is_zero() {
        log::info!(
            "drain delay: serving on for {}, {} connection(s) open; then closing (signal again to skip)",
            humantime::format_duration(delay),
            handle.open_connections()
        );
        match rx.recv_timeout(delay) {
            Ok(sig) => log::info!("signal {sig}: skipping the rest of the drain delay"),
            Err(_) => log::info!("drain delay over"),
        }
    }
    log::info!("draining: closing {} connections with 1001 (signal again to exit at once)", handle.open_connections());
    handle.shutdown();
    if rx.recv().is_ok() {
        log::warn!("another signal: exiting now");
        std::process::exit(1);
    }
}

/// `--compression` as it is spelled on the command line.
fn compression_name(c: Compression) -> String {
    use clap::ValueEnum;
    c.to_possible_value().map_or_else(String::new, |v| v.get_name().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn plain_numbers_are_seconds_and_words_are_humantime() {
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("-0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("86400"), Some(Span::MAX));
    }

    #[test]
    fn durations_that_used_to_panic_are_refused() {
        for s in ["inf", "-inf", "NaN", "1e19", "1e400", "-1", "86400.001", "1e-300", "", "abc"] {
            assert_eq!(parse_duration(s), None, "{s:?}");
        }
    }

    #[test]
    fn span_zero_only_where_it_means_something() {
        assert!(TIMEOUT.parser()("0").is_err());
        assert_eq!(IDLE.parser()("0"), Ok(Duration::ZERO));
        assert!(TIMEOUT.parser()("999us").is_err());
        assert_eq!(TIMEOUT.parser()("1ms"), Ok(Span::MIN));
        assert_eq!(TIMEOUT.parser()("1day"), Ok(Span::MAX));
        assert!(TIMEOUT.parser()("1day 1ms").is_err());
    }

    #[test]
    fn whole_range_is_inclusive_and_fits_the_type() {
        let p = Whole::count(8, 15).parser::<u8>();
        assert_eq!(p("8"), Ok(8));
        assert_eq!(p("15"), Ok(15));
        assert!(p("7").is_err() && p("16").is_err() && p("-1").is_err() && p("1.0").is_err());
        // A range wider than the type still refuses what the type cannot hold.
        assert!(Whole::count(0, 1000).parser::<u8>()("256").is_err());
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(125), "125 B");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(1536), "1536 B");
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(1 << 40), "1 TiB");
    }
}
