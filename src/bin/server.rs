//! `wsecho`: the echo server. Parses flags, sets up logging and signals, and
//! runs one reactor; all logic lives in the library.

use clap::Parser;
use std::net::ToSocketAddrs;
use std::time::Duration;
use wsecho::proto::deflate::{CompressionMode, DeflateConfig};
use wsecho::proto::handshake::{OriginPolicy, UpgradePolicy};
use wsecho::proto::Limits;
use wsecho::server::{self, Config, Server};

/// A lean WebSocket (RFC 6455) echo server: a page at `/`, echo at `/echo`.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "localhost:8080")]
    addr: String,
    /// Allowed Origin (repeatable), or `*` for any. Default: same origin as Host.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Supported subprotocol, in preference order (repeatable).
    #[arg(long = "subprotocol", value_name = "NAME")]
    subprotocols: Vec<String>,
    /// Seconds a client has to complete its upgrade request.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds to wait for the peer after we send a Close or an HTTP error.
    #[arg(long, default_value_t = 5.0)]
    close_timeout: f64,
    /// Seconds open connections get to close on SIGINT/SIGTERM.
    #[arg(long, default_value_t = 5.0)]
    shutdown_grace: f64,
    /// Largest frame payload, bytes (over it: close 1009).
    #[arg(long, default_value_t = 16 << 20)]
    max_frame: u64,
    /// Largest message, bytes (over it: close 1009).
    #[arg(long, default_value_t = 16 << 20)]
    max_message: u64,
    /// Most fragments in one message (over it: close 1009).
    #[arg(long, default_value_t = 131_072)]
    max_fragments: u32,
    /// Largest upgrade request head, bytes (over it: 431).
    #[arg(long, default_value_t = 8192)]
    max_request: usize,
    /// Most headers in the upgrade request (over it: 431).
    #[arg(long, default_value_t = 64)]
    max_headers: usize,
    /// Most simultaneous connections (over it: 503).
    #[arg(long, default_value_t = 1_000_000)]
    max_connections: usize,
    /// The reactor's read buffer, bytes (one per reactor).
    #[arg(long, default_value_t = 64 * 1024)]
    read_buffer: usize,
    /// Cork (batched write) buffer, bytes (one per reactor).
    #[arg(long, default_value_t = 64 * 1024)]
    cork: usize,
    /// Pooled write chunk, bytes (held only while the kernel refuses bytes).
    #[arg(long, default_value_t = 16 * 1024)]
    write_chunk: usize,
    /// Unsent bytes per connection above which it is not read (backpressure).
    #[arg(long, default_value_t = 1 << 20)]
    backpressure: usize,
    /// permessage-deflate policy: off, no-context-takeover (no zlib state
    /// kept between messages), or context-takeover (better ratio, ~300 KiB
    /// per compressing connection).
    #[arg(long, value_enum, default_value_t = Compression::NoContextTakeover)]
    compression: Compression,
    /// zlib level for messages we compress, 0-9.
    #[arg(long, default_value_t = 1)]
    compression_level: u32,
    /// Largest window we compress with, 8-15.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u8).range(8..=15))]
    server_max_window_bits: u8,
    /// Largest window we ask clients to compress with, 8-15.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u8).range(8..=15))]
    client_max_window_bits: u8,
    /// Re-compressed messages smaller than this are echoed uncompressed.
    #[arg(long, default_value_t = 0)]
    compression_min_size: usize,
    /// Seconds of silence before a keepalive Ping (0 disables keepalive).
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
    /// Seconds to wait for any answer to the keepalive Ping before closing 1001.
    #[arg(long, default_value_t = 30.0)]
    ping_timeout: f64,
    /// Seconds a connection may stay paused by backpressure (peer not
    /// reading) before it is closed with 1008.
    #[arg(long, default_value_t = 30.0)]
    backpressure_timeout: f64,
    /// Cap on write-chunk memory lent out across all connections, bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_pool_bytes: usize,
    /// Data frames up to this payload are held until complete; larger ones
    /// are echoed piece by piece as they arrive, bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    max_held_frame: u64,
    /// Budget for unfinished frames and request heads held across all
    /// connections of a reactor, bytes (over it: frames stream, request heads 503).
    #[arg(long, default_value_t = 16 << 20)]
    max_held_input: usize,
    /// Seconds a frame may take from its header to its last byte (slow-drip
    /// frames are closed 1008).
    #[arg(long, default_value_t = 30.0)]
    frame_timeout: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Compression {
    Off,
    NoContextTakeover,
    ContextTakeover,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.001))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();

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
        handshake_timeout: secs(args.handshake_timeout),
        close_timeout: secs(args.close_timeout),
        shutdown_grace: secs(args.shutdown_grace),
        max_connections: args.max_connections,
        read_buffer_size: args.read_buffer,
        cork_size: args.cork,
        write_chunk_size: args.write_chunk,
        backpressure_bytes: args.backpressure,
        backpressure_timeout: secs(args.backpressure_timeout),
        max_pool_bytes: args.max_pool_bytes,
        max_held_input: args.max_held_input,
        frame_timeout: secs(args.frame_timeout),
        idle_timeout: (args.idle_timeout > 0.0).then(|| secs(args.idle_timeout)),
        ping_timeout: secs(args.ping_timeout),
        deflate: DeflateConfig {
            mode: match args.compression {
                Compression::Off => CompressionMode::Off,
                Compression::NoContextTakeover => CompressionMode::NoContextTakeover,
                Compression::ContextTakeover => CompressionMode::ContextTakeover,
            },
            level: args.compression_level.min(9),
            server_max_window_bits: args.server_max_window_bits,
            client_max_window_bits: args.client_max_window_bits,
            min_size: args.compression_min_size,
        },
        ..Config::default()
    };

    let addr = match args.addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            eprintln!("wsecho: cannot resolve --addr {}", args.addr);
            std::process::exit(2);
        }
    };
    let server = match Server::bind(addr, cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsecho: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    log::info!("listening on http://{} (page at /, echo at /echo)", server.local_addr());

    // First SIGINT/SIGTERM: drain gracefully. Second: exit at once.
    let handle = server.shutdown_handle();
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                let mut seen = 0;
                for sig in signals.forever() {
                    seen += 1;
                    if seen == 1 {
                        log::info!("signal {sig}: draining (send again to exit at once)");
                        handle.shutdown();
                    } else {
                        log::warn!("second signal: exiting now");
                        std::process::exit(1);
                    }
                }
            });
        }
        Err(e) => log::warn!("cannot install signal handlers: {e}"),
    }

    if let Err(e) = server.run() {
        log::error!("reactor failed: {e}");
        std::process::exit(1);
    }
}
