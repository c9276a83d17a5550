//! wsecho: a WebSocket (RFC 6455) echo server built to hold very many
//! connections on one machine.
//!
//! # Layout
//!
//! ```text
//!  bin/server.rs ── args, logging, signals ──► server::Server::run
//!                                               │  (mio reactor, slab, timers)
//!                     server::io (syscalls) ◄───┤
//!                     pool (shared write chunks)┤
//!                                               ▼
//!  proto/ (sans-I/O): handshake · frame · mask · utf8 · close · session
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
