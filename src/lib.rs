//! wsecho: a WebSocket (RFC 6455) echo server built to hold very many
//! connections on one machine.
#![deny(missing_docs, missing_debug_implementations)]

pub mod proto;
