//! wsecho: a WebSocket (RFC 6455) echo server built to hold very many
//! connections on one machine.
//!
//! # Layout
//!
//! ```text
//!  bin/server.rs ── args, logging, signals ──► server::Runtime (N reactors)
//!                                               │  each: server::Server, one mio Poll,
//!                                               │  slab, pool, timers — in layers:
//!                                               │  reactor → driver → upgrade/open/keepalive
//!                                               │  → output → ctx → config/sys/conn/io/timers
//!                     pool (shared write chunks)┤
//!  server::AdminServer (--metrics-addr) ──► /metrics: sums each reactor's metric cells
//!                                            /healthz: 200, or 503 once draining
//!                                               ▼
//!  proto/ (sans-I/O): handshake · frame · mask · utf8 · close · session · echo · deflate
//! ```
//!
//! - [`proto`] is the protocol core: bytes in, decisions out; no sockets.
//! - [`server`] is one single-threaded reactor; run several for several cores.
//! - [`pool`] holds the write chunks every connection of a reactor shares.
#![deny(missing_docs, missing_debug_implementations)]

pub mod client;
pub mod pool;
pub mod proto;
pub mod server;
