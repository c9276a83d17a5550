//! A small blocking WebSocket client on the same protocol core: used by the
//! `wsecho-client` binary and by the integration tests.
//!
//! It masks every frame with a fresh random key, sends a random 16-byte
//! `Sec-WebSocket-Key`, checks the 101 as RFC 6455 §4.1 asks (see
//! [`UpgradeError`]), and keeps any bytes the server sent right behind its 101
//! response (they are frames, not noise).
//!
//! - [`address`]: the `ws://` URL.
//! - [`upgrade`]: the checks of the server's 101.
//! - [`interactive`]: the echo client's main loop (wsecho-client's modes).
//! - [`autobahn`]: the Autobahn TestSuite fuzzingserver's client protocol.

pub mod address;
pub mod autobahn;
pub mod interactive;
pub mod tls;
pub mod upgrade;

pub use address::WsUrl;
pub use upgrade::UpgradeError;

use crate::proto::close::CloseCode;
use crate::proto::deflate::{self, Agreed, CodecPool, PmdCodec};
use crate::proto::frame::RSV1;
use crate::proto::frame::{write_frame, OpCode};
use crate::proto::handshake;
use crate::proto::{Action, HandshakeError, Limits, ProtocolError, Role, Session};
use base64::Engine;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Subprotocols to offer, in preference order.
    pub protocols: Vec<String>,
    /// `Sec-WebSocket-Extensions` offer, sent as it is, instead of the one
    /// `compress` makes. The server may accept only extensions named in it;
    /// of those, the client itself implements permessage-deflate alone.
    pub extensions: Option<String>,
    /// Connect and handshake timeout.
    pub timeout: Duration,
    /// Limits for what the server may send.
    pub limits: Limits,
    /// Offer permessage-deflate (RFC 7692) unless `extensions` is set; if
    /// agreed, whole messages we send are compressed and compressed messages
    /// we receive are inflated.
    pub compress: bool,
    /// For `wss://`: which server certificates to accept (default: the web
    /// PKI's roots).
    pub trust: tls::Trust,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            protocols: Vec::new(),
            extensions: None,
            timeout: Duration::from_secs(10),
            limits: Limits::default(),
            compress: false,
            trust: tls::Trust::default(),
        }
    }
}

/// A received message (fragments already joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping (already answered with a pong).
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The server's Close frame: code and reason (None if empty). Already
    /// answered if we had not sent a Close ourselves.
    Close(Option<(u16, String)>),
}

/// Why a client operation failed.
#[derive(Debug)]
pub enum ClientError {
    /// The URL is not `ws://host[:port][/path]`.
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket error (connection refused, reset, timeout, EOF).
    Io(io::Error),
    /// The server answered the upgrade with another status.
    Status {
        /// HTTP status.
        status: u16,
        /// Response body (truncated to 64 KiB).
        body: String,
    },
    /// `Sec-WebSocket-Accept` missing or wrong.
    BadAccept,
    /// The 101 broke another rule of RFC 6455 §4.1.
    Upgrade(UpgradeError),
    /// The response was not valid HTTP.
    Handshake(HandshakeError),
    /// The server broke the protocol; we sent Close with its code.
    Protocol(ProtocolError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url { url, reason } => {
                write!(f, "bad URL {url:?}: {reason} (expected ws://host[:port][/path])")
            }
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Status { status, body } => {
                write!(f, "server answered HTTP {status} instead of 101: {}", body.trim_end())
            }
            ClientError::BadAccept => f.write_str("server sent a wrong Sec-WebSocket-Accept"),
            ClientError::Upgrade(e) => write!(f, "{e}"),
            ClientError::Handshake(e) => write!(f, "bad handshake response: {e}"),
            ClientError::Protocol(e) => write!(f, "protocol error from server: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("OS randomness");
    b
}

/// Sends frames; can be cloned off a [`Client`] to send from another thread.
#[derive(Debug)]
pub struct Sender {
    /// The socket and compressor, shared by every sender of one connection;
    /// the lock keeps frames from different threads from interleaving.
    shared: Arc<Mutex<WriteSide>>,
    scratch: Vec<u8>,
    /// Whether a Close frame has gone out on this connection, shared by all
    /// senders of one [`Client`]: a Close sent from another thread must stop
    /// [`Client::recv`] from answering the server's Close with a second one
    /// (RFC 6455 §5.5.1: no data or Close after our Close).
    close_sent: Arc<AtomicBool>,
}

/// A connection's byte stream: plain TCP, or TLS shared by its halves.
#[derive(Debug)]
enum Wire {
    Plain(TcpStream),
    Tls(Arc<tls::TlsWire>),
}

impl Wire {
    fn socket(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) => s,
            Wire::Tls(t) => t.socket(),
        }
    }

    fn try_clone(&self) -> io::Result<Wire> {
        Ok(match self {
            Wire::Plain(s) => Wire::Plain(s.try_clone()?),
            Wire::Tls(t) => Wire::Tls(Arc::clone(t)),
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(buf),
            Wire::Tls(t) => t.read(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Wire::Plain(s) => s.write_all(buf),
            Wire::Tls(t) => t.write_all(buf),
        }
    }
}

/// The writing half of a connection.
#[derive(Debug)]
struct WriteSide {
    stream: Wire,
    /// permessage-deflate compressor state, when negotiated.
    deflate: Option<(PmdCodec, CodecPool)>,
}

/// The agreement seen from the client: our compressor follows the
/// `client_*` parameters, our inflater the `server_*` ones. [`PmdCodec`] is
/// written from the server's side, so swap them.
fn mirrored(a: Agreed) -> Agreed {
    Agreed {
        server_no_context_takeover: a.client_no_context_takeover,
        client_no_context_takeover: a.server_no_context_takeover,
        server_max_window_bits: a.client_max_window_bits,
        client_max_window_bits: a.server_max_window_bits,
    }
}

impl Sender {
    /// Send one complete frame, masked with a fresh key. A whole text or
    /// binary message is compressed if permessage-deflate was agreed.
    pub fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let mut side = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        self.scratch.clear();
        let whole_data = fin && matches!(opcode, OpCode::Text | OpCode::Binary);
        match side.deflate.as_mut() {
            Some((codec, pool)) if whole_data => {
                let mut packed = Vec::with_capacity(payload.len() / 2 + 64);
                codec.deflate_into(pool, payload, &mut packed);
                codec.finish_message(pool, &mut packed);
                write_frame(&mut self.scratch, true, RSV1, opcode, Some(random::<4>()), &packed);
            }
            _ => write_frame(&mut self.scratch, fin, 0, opcode, Some(random::<4>()), payload),
        }
        side.stream.write_all(&self.scratch)
    }

    /// Send a text message.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(true, OpCode::Text, text.as_bytes())
    }

    /// Send a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_frame(true, OpCode::Binary, data)
    }

    /// Send a Close frame with `code` and `reason`.
    pub fn send_close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.close_sent.store(true, Ordering::SeqCst);
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(reason.as_bytes());
        self.send_frame(true, OpCode::Close, &body)
    }

    /// Whether a Close frame has been sent on this connection (by any of its
    /// senders, or by [`Client::recv`] answering the server's Close).
    pub fn close_sent(&self) -> bool {
        self.close_sent.load(Ordering::SeqCst)
    }

    /// Send raw bytes as they are (for tests of malformed input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut side = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        side.stream.write_all(bytes)
    }
}

/// A connected, upgraded client.
#[derive(Debug)]
pub struct Client {
    reader: Wire,
    sender: Sender,
    /// permessage-deflate inflater, when negotiated.
    inflate: Option<(PmdCodec, CodecPool)>,
    session: Session,
    limits: Limits,
    /// Received bytes not yet decoded.
    buf: Vec<u8>,
    /// The message being joined from fragments.
    msg: Vec<u8>,
    msg_text: bool,
    /// The subprotocol the server chose.
    protocol: Option<String>,
    /// The server's `Sec-WebSocket-Extensions` answer.
    extensions: Option<String>,
}

impl Client {
    /// Connect to `url` (`ws://host[:port][/path][?query]`) and upgrade.
    pub fn connect(url: &str, opts: &ClientOptions) -> Result<Client, ClientError> {
        let url = WsUrl::parse(url)?;
        let addr = url
            .socket_addrs()?
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Io(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
        let stream = TcpStream::connect_timeout(&addr, opts.timeout)?;
        if !url.is_tls() {
            return Client::handshake(stream, &url.authority(), url.resource(), opts);
        }
        stream.set_read_timeout(Some(opts.timeout))?;
        stream.set_write_timeout(Some(opts.timeout))?;
        let config = tls::client_config(&opts.trust).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let wire = tls::TlsWire::connect(stream, url.host(), config)?;
        wire.socket().set_write_timeout(None)?;
        Client::handshake_over(Wire::Tls(wire), &url.authority(), url.resource(), opts)
    }

    /// Upgrade an already connected stream: `host` is the `Host` header,
    /// `path` the request target.
    pub fn handshake(stream: TcpStream, host: &str, path: &str, opts: &ClientOptions) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        Client::handshake_over(Wire::Plain(stream), host, path, opts)
    }

    fn handshake_over(mut stream: Wire, host: &str, path: &str, opts: &ClientOptions) -> Result<Client, ClientError> {
        stream.socket().set_nodelay(true)?;
        stream.socket().set_read_timeout(Some(opts.timeout))?;
        let key = base64::engine::general_purpose::STANDARD.encode(random::<16>());
        let mut req = Vec::new();
        let offer = opts.extensions.as_deref().or(opts.compress.then(deflate::client_offer));
        handshake::write_request(&mut req, host, path, &key, &opts.protocols, offer);
        stream.write_all(&req)?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let resp = loop {
            if let Some(r) = handshake::parse_response(&buf, &opts.limits).map_err(ClientError::Handshake)? {
                break r;
            }
            let n = stream.read(&mut tmp)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed during handshake").into());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        if resp.status != 101 {
            let want = resp.content_length.unwrap_or(64 * 1024).min(64 * 1024);
            while buf.len() - resp.head_len < want {
                match stream.read(&mut tmp) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            let end = buf.len().min(resp.head_len + want);
            let body = String::from_utf8_lossy(&buf[resp.head_len..end]).into_owned();
            return Err(ClientError::Status { status: resp.status, body });
        }
        let offer = upgrade::Offer { key: &key, protocols: &opts.protocols, extensions: offer };
        let agreement = upgrade::check(&buf[..resp.head_len], &resp, &offer)?;
        // Frames may have arrived in the same read as the 101: keep them.
        buf.drain(..resp.head_len);
        stream.socket().set_read_timeout(None)?;
        let writer = stream.try_clone()?;
        let mut session = Session::new(Role::Client);
        let (inflate, deflate) = match agreement.deflate {
            Some(a) => {
                session.set_rsv_allowed(RSV1);
                let a = mirrored(a);
                (Some(PmdCodec::new(a)), Some((PmdCodec::new(a), CodecPool::new(6, 2))))
            }
            None => (None, None),
        };
        Ok(Client {
            reader: stream,
            sender: Sender {
                shared: Arc::new(Mutex::new(WriteSide { stream: writer, deflate })),
                scratch: Vec::new(),
                close_sent: Arc::new(AtomicBool::new(false)),
            },
            inflate: inflate.map(|c| (c, CodecPool::new(6, 2))),
            session,
            limits: opts.limits,
            buf,
            msg: Vec::new(),
            msg_text: false,
            protocol: agreement.protocol,
            extensions: agreement.extensions,
        })
    }

    /// The subprotocol the server selected.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The server's `Sec-WebSocket-Extensions` answer (every header line,
    /// joined with `", "`).
    pub fn extensions(&self) -> Option<&str> {
        self.extensions.as_deref()
    }

    /// The sending half.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// A second sending half for another thread.
    pub fn try_clone_sender(&self) -> io::Result<Sender> {
        Ok(Sender {
            shared: Arc::clone(&self.sender.shared),
            scratch: Vec::new(),
            close_sent: Arc::clone(&self.sender.close_sent),
        })
    }

    /// Read timeout for [`recv`](Client::recv).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.reader.socket().set_read_timeout(t)
    }

    /// Send a text message.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.sender.send_text(text)
    }

    /// Send a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.sender.send_binary(data)
    }

    /// Start the closing handshake.
    pub fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.sender.send_close(code, reason)
    }

    /// Receive the next message, answering pings and closes on the way.
    pub fn recv(&mut self) -> Result<Message, ClientError> {
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            match self.session.next(&mut self.buf, &self.limits) {
                Err(e) => {
                    let _ = self.sender.send_close(e.close_code().0, "");
                    return Err(ClientError::Protocol(e));
                }
                Ok(Some((action, used))) => {
                    let out = match action {
                        Action::Data { opcode, fin, payload, .. } => {
                            let first = opcode != OpCode::Continuation;
                            if first {
                                self.msg.clear();
                                self.msg_text = opcode == OpCode::Text;
                            }
                            match (self.session.msg_compressed(), self.inflate.as_mut()) {
                                (Some(text), Some((codec, pool))) => {
                                    let max = self.limits.max_message;
                                    let data = &self.buf[payload];
                                    if let Err(e) =
                                        codec.on_frame(pool, data, first, text, fin, max, None, Some(&mut self.msg))
                                    {
                                        let _ = self.sender.send_close(e.close_code().0, "");
                                        return Err(ClientError::Protocol(e));
                                    }
                                }
                                _ => self.msg.extend_from_slice(&self.buf[payload]),
                            }
                            if fin {
                                let data = std::mem::take(&mut self.msg);
                                Some(if self.msg_text {
                                    // Validated by the session already.
                                    Message::Text(String::from_utf8(data).unwrap_or_default())
                                } else {
                                    Message::Binary(data)
                                })
                            } else {
                                None
                            }
                        }
                        Action::Ping(p) => {
                            let data = self.buf[p].to_vec();
                            self.sender.send_frame(true, OpCode::Pong, &data)?;
                            Some(Message::Ping(data))
                        }
                        Action::Pong(p) => Some(Message::Pong(self.buf[p].to_vec())),
                        Action::Close(c) => {
                            let c = c.map(|(code, r)| (code.0, String::from_utf8_lossy(&self.buf[r]).into_owned()));
                            if !self.sender.close_sent.swap(true, Ordering::SeqCst) {
                                let body = c.as_ref().map(|(code, _)| code.to_be_bytes().to_vec()).unwrap_or_default();
                                let _ = self.sender.send_frame(true, OpCode::Close, &body);
                            }
                            Some(Message::Close(c))
                        }
                    };
                    self.buf.drain(..used);
                    if let Some(m) = out {
                        return Ok(m);
                    }
                }
                Ok(None) => {
                    let n = self.reader.read(&mut tmp)?;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed TCP").into());
                    }
                    self.buf.extend_from_slice(&tmp[..n]);
                }
            }
        }
    }

    /// Read until the server closes TCP (after a close handshake); returns
    /// whether it did within the current read timeout.
    pub fn wait_for_eof(&mut self) -> bool {
        let mut tmp = [0u8; 4096];
        loop {
            match self.reader.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Why connecting to `url` failed, in words: socket errors name the
/// `host:port` (`connection refused to 127.0.0.1:9 (is the server
/// running?)`), other errors are prefixed with the URL.
pub fn connect_error(url: &str, e: &ClientError) -> String {
    let target = WsUrl::parse(url).map_or_else(|_| url.to_string(), |u| u.authority());
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
        ClientError::Url { .. } => e.to_string(),
        _ => format!("{url}: {e}"),
    }
}

/// A received Close for logs: `1009 (message too big) "reason"`, `4000`, or
/// `no status code` for an empty Close.
pub fn describe_close(c: &Option<(u16, String)>) -> String {
    match c {
        None => "no status code".to_string(),
        Some((code, reason)) => {
            let mut s = code.to_string();
            let name = CloseCode(*code).name();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_descriptions() {
        assert_eq!(describe_close(&None), "no status code");
        assert_eq!(describe_close(&Some((1009, "too big".into()))), "1009 (message too big) \"too big\"");
        assert_eq!(describe_close(&Some((1000, String::new()))), "1000 (normal closure)");
        assert_eq!(describe_close(&Some((4000, String::new()))), "4000");
    }
}
