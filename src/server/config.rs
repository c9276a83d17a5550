//! Every setting of a reactor, each documented with its default.

use crate::proto::deflate::DeflateConfig;
use crate::proto::handshake::UpgradePolicy;
use crate::proto::Limits;
use std::time::Duration;

/// Everything the reactor can be told; every default is documented.
///
/// With several reactors (a [`Runtime`](super::Runtime) of N), the settings
/// apply to each reactor, except: `max_connections` counts the connections of
/// all reactors together, and the memory caps `max_pool_bytes`,
/// `max_held_input` and `max_free_chunks` are split, `1/N` to each reactor,
/// so the process stays within them.
#[derive(Debug, Clone)]
pub struct Config {
    /// Protocol size limits (request, frame, message, fragments).
    pub limits: Limits,
    /// Origin and subprotocol policy for upgrades.
    pub policy: UpgradePolicy,
    /// permessage-deflate policy (default: no context takeover).
    pub deflate: DeflateConfig,
    /// A connection must complete its upgrade request within this. Default
    /// 10 s; slow or silent (slowloris) connections are closed after it.
    pub handshake_timeout: Duration,
    /// After we send a Close frame or an HTTP error, how long we wait for the
    /// peer to close before dropping it. Default 5 s.
    pub close_timeout: Duration,
    /// On shutdown, how long open connections get to finish their close
    /// handshake. Default 5 s.
    pub shutdown_grace: Duration,
    /// Most simultaneous connections; the next one gets HTTP 503 and is
    /// closed. Default 1,000,000 (in practice the open-file limit binds first).
    pub max_connections: usize,
    /// The reactor's single read buffer, in bytes. Default 64 KiB (one per
    /// reactor, not per connection).
    pub read_buffer_size: usize,
    /// Echoes of one read are gathered in a cork buffer of this size and
    /// written with one syscall; payloads larger than it are written straight
    /// from the read buffer. Default 64 KiB (one per reactor).
    pub cork_size: usize,
    /// Size of a pooled write chunk, in bytes. Default 16 KiB. Chunks hold
    /// only bytes the kernel refused.
    pub write_chunk_size: usize,
    /// Spare chunks kept for reuse. Default 1,024 (16 MiB at 16 KiB).
    pub max_free_chunks: usize,
    /// While a connection has more unsent bytes than this, it is not read
    /// (backpressure); reading resumes below half of it. Default 1 MiB.
    pub backpressure_bytes: usize,
    /// Work one connection may do per wakeup before others get a turn:
    /// bytes read plus bytes inflated (a compressed message costs its
    /// inflated size, not its wire size). Default 256 KiB.
    pub read_budget: usize,
    /// Reactor-wide budget for held input: unfinished request heads and small
    /// frames kept between reads (each at most `max_request_bytes` /
    /// `Limits::max_held_frame` + 14). Over it, frames are streamed instead of
    /// held (a connection keeps at most a 14-byte frame header) and a request
    /// head that would have to be held is answered 503. Default 16 MiB.
    pub max_held_input: usize,
    /// A frame whose header has arrived must be complete within this, or the
    /// connection is closed with 1008 (slow-drip frames, like slowloris for
    /// the handshake). Not counted while the connection is paused by
    /// backpressure. Default 30 s.
    pub frame_timeout: Duration,
    /// Most zlib inflaters (~43 KiB each) lent at once: one per compressed
    /// message in progress, or per connection with client context takeover.
    /// Past it a new compressed message is refused with close 1013 (try again
    /// later). Default 1,024 (~43 MiB).
    pub max_inflaters: usize,
    /// Most connections accepted per wakeup before the others get a turn.
    /// Default 256.
    pub accepts_per_wakeup: usize,
    /// If a connection stays paused by backpressure this long (the peer does
    /// not read), it is closed with 1008. Default 30 s.
    pub backpressure_timeout: Duration,
    /// Cap on write-chunk memory lent out across all connections. Checked
    /// before each read: a read is never larger than the room left (less two
    /// chunks of slack), and with no room the connection is not read until
    /// chunks come back (a peer that never reads is closed 1008 after
    /// `backpressure_timeout`). Exact for plain and passed-through echoes; a
    /// re-compressed echo (context takeover) can exceed its input by its
    /// compression ratio, and the check after the read then pauses it.
    /// Default 256 MiB.
    pub max_pool_bytes: usize,
    /// Keepalive: after this much silence an open connection gets a Ping.
    /// Default 60 s; None disables keepalive.
    pub idle_timeout: Option<Duration>,
    /// Keepalive: if nothing arrives this long after our Ping, close 1001.
    /// Default 30 s.
    pub ping_timeout: Duration,
    /// Requested accept-queue length of each listener. Default 4,096; Linux
    /// clamps it to `net.core.somaxconn` (see
    /// [`granted_backlog`](super::sys::granted_backlog)). A burst of connects
    /// larger than this, arriving faster than the reactor accepts, sees SYNs
    /// dropped and retried after 1 s.
    pub backlog: u32,
    /// Set `SO_REUSEPORT` on the listener, so other processes (or reactors)
    /// that also set it can listen on the same port; the kernel spreads new
    /// connections across them. Default off. Several reactors in one
    /// [`Runtime`](super::Runtime) always set it.
    pub reuse_port: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            policy: UpgradePolicy::default(),
            deflate: DeflateConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_connections: 1_000_000,
            read_buffer_size: 128 * 1024,
            cork_size: 64 * 1024,
            write_chunk_size: 16 * 1024,
            max_free_chunks: 1024,
            backpressure_bytes: 1024 * 1024,
            read_budget: 256 * 1024,
            max_held_input: 16 << 20,
            frame_timeout: Duration::from_secs(30),
            accepts_per_wakeup: 256,
            max_inflaters: 1024,
            backpressure_timeout: Duration::from_secs(30),
            max_pool_bytes: 256 << 20,
            idle_timeout: Some(Duration::from_secs(60)),
            ping_timeout: Duration::from_secs(30),
            backlog: 4096,
            reuse_port: false,
        }
    }
}
