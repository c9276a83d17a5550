//! The reactor: one thread, one `mio::Poll`, connections in a slab.
//!
//! ```text
//!  accept ─► Handshaking ──101──► Open ──Close/error──► Closing ─► dropped
//!               │  (httparse, once the head is complete)     ▲
//!               └──4xx / home page───────────────────────────┘
//! ```
//!
//! Memory: the reactor owns one read buffer, one cork buffer and a pool of
//! write chunks ([`BufPool`](crate::pool::BufPool)). A connection owns only
//! what is in flight — a partial frame or request in `inbuf`, bytes the
//! kernel refused in `out` — so an idle connection is just its [`Conn`] slot.
//!
//! Fairness: a connection is read until `WouldBlock` or until it has used its
//! per-wakeup byte budget; in the latter case it goes to the back of a run
//! queue (epoll will not wake it again by itself), so one flooding client
//! cannot starve the others.
//!
//! Several reactors run side by side in a [`Runtime`]: one thread, one
//! `SO_REUSEPORT` listener, poll, slab, pool and timer set each, so nothing
//! on the hot path is shared. What must be global is: the stop flag (one
//! shutdown drains every reactor) and the count of open connections (so
//! `max_connections` holds for the process), one atomic add per connection.
//!
//! # Layout
//!
//! Each file uses only the ones listed below it:
//!
//! ```text
//!  runtime.rs     Runtime: N reactors on one port, one thread each, optionally pinned
//!  reactor.rs     Server, ShutdownHandle: the mio loop — accept, dispatch, timers, drain
//!  stats.rs       what a reactor counts; its periodic summary line
//!  driver.rs      one connection's turn: read, hand bytes to its phase, backpressure
//!  upgrade.rs     the Handshaking phase: route, negotiate deflate, 101 or error
//!  open.rs        the Open phase: frames in, echoes out
//!  keepalive.rs   wheel deadlines: idle pings, backpressure timeout
//!  output.rs      bytes out: cork, queue, flush, Closing transitions
//!  ctx.rs         Ctx, Fate, DropReason, ReadMode: what handlers borrow and answer
//!  config.rs      Config: every setting with its default
//!  admin.rs       the metrics listener: /metrics, /healthz (its own thread)
//!  metrics.rs     per-reactor metric cells; the Prometheus collector over them
//!  sys.rs         listener sockets (socket2) and the file limit (rlimit)
//!  tls.rs         TlsStream (rustls) and Accept: the listener kinds (plain, TLS)
//!  conn.rs io.rs timers.rs   a connection's state (generic over its Transport), the syscalls, deadlines
//! ```
//!
//! `testing.rs` (hidden) runs one connection through the same code over an
//! in-memory stream, for the `reactor_driver` fuzz target.

pub mod admin;
pub mod config;
pub mod conn;
mod ctx;
mod driver;
pub mod io;
mod keepalive;
pub mod metrics;
mod open;
mod output;
mod reactor;
mod runtime;
mod stats;
pub mod sys;
#[doc(hidden)]
pub mod testing;
pub mod timers;
pub mod tls;
mod upgrade;

pub use admin::{AdminServer, Health};
pub use config::Config;
pub use ctx::DropReason;
pub use metrics::{BuildInfo, Metrics};
pub use reactor::{Server, ShutdownHandle};
pub use runtime::{default_threads, Runtime, RuntimeOptions};
pub use stats::{ReactorStats, SUMMARY_EVERY};
pub use sys::raise_fd_limit;
pub use upgrade::HOME_PAGE;
