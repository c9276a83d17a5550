//! TLS (`https://` and `wss://`): a [`Transport`] over rustls, and the
//! listener kinds a reactor can serve ([`Accept`]).
//!
//! The reactor and the per-connection code are generic over the transport,
//! so a TLS listener runs its own monomorphized reactor with a slab of
//! `Conn<TlsStream>` and a plain listener keeps `Conn<TcpStream>`, which TLS
//! does not grow by a byte.
//!
//! [`TlsStream`] keeps two promises the driver relies on:
//! - **A short read means drained.** [`TlsStream::read`] reads ciphertext
//!   into the caller's buffer and decrypts it in place until the buffer is
//!   full or the socket says `WouldBlock` (or EOF). If the buffer fills with
//!   an unfinished record first, the read is short although the socket may
//!   hold more, and [`Transport::holds_input`] tells the driver to read
//!   again.
//! - **Written means the kernel took it, within one write.** A write first
//!   pushes out ciphertext still held from earlier writes and returns
//!   `WouldBlock` while some remains; only then does it take at most
//!   [`MAX_UNSENT_PLAINTEXT`] bytes, encrypt them into the thread's scratch
//!   buffer and write them. So the bytes the kernel refused are in the
//!   connection's pooled queue (counted against backpressure and the pool
//!   cap), except for at most one write's ciphertext held by the stream,
//!   which [`Write::flush`] (called by the reactor on every writable event)
//!   sends.
//!
//! Closing: [`Transport::shutdown_write`] sends close_notify before our FIN,
//! and dropping a stream after its handshake sends close_notify with one
//! nonblocking write before the socket closes. A bad record, an alert or
//! plain HTTP fails that connection only.
//!
//! Memory: rustls's unbuffered API (`UnbufferedServerConnection`) works on
//! the caller's buffers, so an idle connection holds rustls's state (keys,
//! handshake or traffic secrets) and nothing else: tests/tls_memory.rs
//! measured 3,684 B of server RSS per idle `wss://` connection and 4,149 B
//! per connection mid-handshake at 10,000 connections (plain `ws://`: 159 B);
//! the buffered `ServerConnection`, which keeps a 4 KiB receive buffer per
//! connection, measured 7,862 and 8,294 B (at 2,000).

use super::conn::{Stream, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Most plaintext one write takes while its ciphertext may still be in
/// rustls rather than in the kernel: one TLS record (16 KiB), so that is all
/// a connection can hold outside its pooled queue.
pub const MAX_UNSENT_PLAINTEXT: usize = 16 * 1024;

/// The least read buffer a TLS reactor works with: two whole records
/// (16 KiB of plaintext plus up to 2 KiB of overhead each), so a read can
/// always finish the record it holds and start the next.
/// [`Runtime::start_with`](super::Runtime::start_with) raises
/// `Config::read_buffer_size` to this when it serves TLS.
pub const MIN_READ_BUFFER: usize = 2 * (16 * 1024 + 2048 + 5);

/// ALPN protocol offered to browsers: the page and the upgrade are HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A kind of listener a reactor serves: how an accepted TCP socket becomes
/// the connection's transport.
pub trait Accept: Transport + Sized + Send + 'static {
    /// What every accepted connection needs (nothing for plain TCP; the
    /// rustls config for TLS).
    type Acceptor: Clone + fmt::Debug + Send + 'static;
    /// Whether bytes on this listener are HTTP as they are (a refusal can be
    /// written as a plain 503).
    const PLAINTEXT: bool;
    /// Wrap a freshly accepted (and already registered) socket.
    fn accept(acceptor: &Self::Acceptor, stream: Stream) -> io::Result<Self>;
}

impl Accept for Stream {
    type Acceptor = ();
    const PLAINTEXT: bool = true;

    fn accept(_: &(), stream: Stream) -> io::Result<Stream> {
        Ok(stream)
    }
}

/// A server-side TLS connection over a nonblocking TCP socket, on rustls's
/// unbuffered API: ciphertext is read into the caller's buffer (the
/// reactor's read buffer) and decrypted in place, and records are encoded
/// into one scratch buffer per thread (per reactor). The connection keeps
/// bytes only while they are in flight: an unfinished record in `held_in`,
/// ciphertext the kernel refused in `held_out`.
///
/// A read needs room for a whole record (16 KiB + 2 KiB overhead) in the
/// caller's buffer; with less (a tiny `--read-buffer`, or the write pool
/// near its cap) it reports `WouldBlock` with [`Transport::holds_input`] set
/// and the driver waits for room as it does for the pool.
pub struct TlsStream {
    sock: Stream,
    /// Boxed: rustls's state is large, and the slab slot stays small.
    tls: Box<UnbufferedServerConnection>,
    /// Ciphertext read but not yet decrypted (an unfinished record, or
    /// handshake bytes rustls keeps), in an allocation of exactly its size.
    held_in: Option<Box<[u8]>>,
    /// Ciphertext the kernel refused; sent before anything else.
    held_out: Option<Box<[u8]>>,
    /// Plaintext rustls handed out that did not fit the caller's buffer.
    pending_plain: Option<Box<[u8]>>,
    /// The last read stopped for lack of room, not at `WouldBlock` or EOF:
    /// the socket may hold more (see [`Transport::holds_input`]).
    more: bool,
    /// The peer's close_notify arrived, or its TCP EOF: reads return `Ok(0)`
    /// once the plaintext before it is out.
    peer_done: bool,
    /// We queued our close_notify.
    notified: bool,
    /// The TLS session failed (bad record, alert): nothing more is sent.
    failed: bool,
}

thread_local! {
    /// Where records are encoded before they are written: one per reactor
    /// thread, like the cork. Grows to the largest flight (the server's
    /// first handshake flight with its certificate chain, or one write's
    /// records).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Accept for TlsStream {
    type Acceptor = Arc<rustls::ServerConfig>;
    const PLAINTEXT: bool = false;

    fn accept(config: &Arc<rustls::ServerConfig>, sock: Stream) -> io::Result<TlsStream> {
        let tls = UnbufferedServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Ok(TlsStream {
            sock,
            tls: Box::new(tls),
            held_in: None,
            held_out: None,
            pending_plain: None,
            more: false,
            peer_done: false,
            notified: false,
            failed: false,
        })
    }
}

/// One step of [`TlsStream::process`]: a record's plaintext to keep, or why
/// processing stops.
enum Step {
    /// Plaintext at this offset (within the incoming slice) and length.
    Data(usize, usize),
    /// Plaintext rustls held itself (app data that came with the
    /// handshake's last flight).
    Copied(Box<[u8]>),
    /// Handshake bytes were sent (or held); process again.
    Again,
    /// rustls needs more ciphertext.
    NeedMore,
    /// The peer sent close_notify.
    PeerClosed,
}

impl TlsStream {
    /// Whether the TLS handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    fn fail(&mut self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
        self.failed = true;
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Write `bytes` after any held ciphertext; keep what the kernel refuses.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(held) = self.held_out.take() {
            let mut all = held.into_vec();
            all.extend_from_slice(bytes);
            self.held_out = Some(all.into_boxed_slice());
            return self.push_out().or_else(would_block_ok);
        }
        let n = write_some(&mut self.sock, bytes)?;
        if n < bytes.len() {
            self.held_out = Some(bytes[n..].into());
        }
        Ok(())
    }

    /// Write held ciphertext: `Ok` once none is left, `WouldBlock` while
    /// some remains.
    fn push_out(&mut self) -> io::Result<()> {
        let Some(held) = self.held_out.take() else { return Ok(()) };
        let n = write_some(&mut self.sock, &held)?;
        if n < held.len() {
            self.held_out = Some(held[n..].into());
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }

    /// Run rustls over `incoming` until it yields a record, needs more bytes
    /// or the peer closed; handshake records it produces are sent. Returns
    /// the step and how many bytes to discard from the front of `incoming`.
    fn step(&mut self, incoming: &mut [u8]) -> io::Result<(usize, Step)> {
        let base = incoming.as_ptr() as usize;
        let incoming_len = incoming.len();
        let status = self.tls.process_tls_records(incoming);
        let mut discard = status.discard;
        let step = match status.state {
            Err(e) => {
                self.failed = true;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            Ok(ConnectionState::ReadTraffic(mut r)) => match r.next_record() {
                Some(Ok(rec)) => {
                    discard += rec.discard;
                    // Usually decrypted in place, inside `incoming`; data
                    // that came with the handshake's last flight is handed
                    // out from rustls's own buffer instead.
                    let len = rec.payload.len();
                    match (rec.payload.as_ptr() as usize).checked_sub(base) {
                        _ if len == 0 => Step::Again,
                        Some(off) if off + len <= incoming_len => Step::Data(off, len),
                        _ => Step::Copied(rec.payload.into()),
                    }
                }
                Some(Err(e)) => return Err(self.fail(e)),
                None => Step::Again,
            },
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                SCRATCH.with_borrow_mut(|out| loop {
                    let used = out.len();
                    out.resize(out.capacity().max(used + 4096), 0);
                    match e.encode(&mut out[used..]) {
                        Ok(n) => {
                            out.truncate(used + n);
                            return Ok(());
                        }
                        Err(EncodeError::InsufficientSize(s)) => {
                            out.truncate(used);
                            out.reserve(s.required_size);
                        }
                        Err(err) => {
                            out.truncate(used);
                            return Err(io::Error::other(err));
                        }
                    }
                })?;
                Step::Again
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                let sent = SCRATCH.with_borrow_mut(|out| {
                    let r = self_send(&mut self.sock, &mut self.held_out, out);
                    out.clear();
                    r
                });
                t.done();
                sent?;
                Step::Again
            }
            Ok(ConnectionState::BlockedHandshake) | Ok(ConnectionState::WriteTraffic(_)) => Step::NeedMore,
            Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => Step::PeerClosed,
            Ok(_) => return Err(self.fail("unexpected TLS state (early data is not enabled)")),
        };
        Ok((discard, step))
    }

    /// Process the ciphertext in `buf[*filled..*end]`: each record's
    /// plaintext moves down to `buf[*filled..]` (advancing `filled`), the
    /// ciphertext still unprocessed follows it (ending at `end`).
    fn process(&mut self, buf: &mut [u8], filled: &mut usize, end: &mut usize) -> io::Result<()> {
        loop {
            let (discard, step) = self.step(&mut buf[*filled..*end])?;
            let at = *filled;
            if let Step::Data(off, len) = step {
                buf.copy_within(at + off..at + off + len, at);
                *filled += len;
            }
            // The rest of the ciphertext follows the plaintext.
            buf.copy_within(at + discard..*end, *filled);
            *end = *filled + (*end - at - discard);
            if let Step::Copied(plain) = &step {
                let len = plain.len();
                if *end + len > buf.len() {
                    // No room now: handed out first by the next read.
                    self.pending_plain = Some(plain.clone());
                    self.more = true;
                    return Ok(());
                }
                buf.copy_within(*filled..*end, *filled + len);
                buf[*filled..*filled + len].copy_from_slice(plain);
                *filled += len;
                *end += len;
            }
            match step {
                Step::Data(..) | Step::Copied(_) | Step::Again => {}
                Step::NeedMore => return Ok(()),
                Step::PeerClosed => {
                    self.peer_done = true;
                    return Ok(());
                }
            }
        }
    }

    /// Before encrypting: let rustls send what it has queued (handshake
    /// messages, a key update) and pass the edge-triggered PeerClosed, so
    /// the next `process_tls_records(&mut [])` yields `WriteTraffic` if
    /// writing is possible at all. Plaintext met on the way is kept for the
    /// next read.
    fn settle(&mut self) -> io::Result<()> {
        for _ in 0..16 {
            match self.step(&mut [])?.1 {
                Step::NeedMore => return Ok(()),
                Step::PeerClosed => self.peer_done = true,
                Step::Copied(plain) => {
                    let mut all = self.pending_plain.take().map(Vec::from).unwrap_or_default();
                    all.extend_from_slice(&plain);
                    self.pending_plain = Some(all.into_boxed_slice());
                }
                Step::Data(..) | Step::Again => {}
            }
        }
        Ok(())
    }

    /// Encode our close_notify and send it (best effort for the bytes).
    fn notify_close(&mut self) {
        if self.notified || self.failed || self.tls.is_handshaking() {
            return;
        }
        self.notified = true;
        if self.settle().is_err() {
            return;
        }
        let status = self.tls.process_tls_records(&mut []);
        if let Ok(ConnectionState::WriteTraffic(mut w)) = status.state {
            let mut alert = [0u8; 64];
            if let Ok(n) = w.queue_close_notify(&mut alert) {
                let _ = self.send(&alert[..n]);
            }
        }
    }
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("handshaking", &self.tls.is_handshaking())
            .field("held_in", &self.held_in.as_ref().map(|b| b.len()))
            .field("held_out", &self.held_out.as_ref().map(|b| b.len()))
            .field("more", &self.more)
            .field("peer_done", &self.peer_done)
            .field("failed", &self.failed)
            .finish()
    }
}

/// `send` on the stream's parts (the scratch buffer is borrowed apart).
fn self_send(sock: &mut Stream, held_out: &mut Option<Box<[u8]>>, bytes: &[u8]) -> io::Result<()> {
    if let Some(held) = held_out.take() {
        let mut all = held.into_vec();
        all.extend_from_slice(bytes);
        *held_out = Some(all.into_boxed_slice());
        return Ok(());
    }
    let n = write_some(sock, bytes)?;
    if n < bytes.len() {
        *held_out = Some(bytes[n..].into());
    }
    Ok(())
}

fn would_block_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(())
    } else {
        Err(e)
    }
}

/// Write as much of `bytes` as the kernel takes now.
fn write_some(sock: &mut Stream, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match sock.write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl Read for TlsStream {
    /// Fill `buf` with plaintext: ciphertext is read into `buf` itself,
    /// after any held bytes, and decrypted in place, until `buf` is full,
    /// the socket says `WouldBlock` (short read, or `WouldBlock` if nothing
    /// at all), or EOF (`Ok(0)` once nothing is left; a missing close_notify
    /// counts as EOF — the WebSocket close handshake already says whether the
    /// end was clean). If `buf` fills with ciphertext first, the read is
    /// short and [`Transport::holds_input`] says so.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.more = false;
        let mut filled = 0;
        let mut end = 0;
        if let Some(plain) = self.pending_plain.take() {
            let n = plain.len().min(buf.len());
            buf[..n].copy_from_slice(&plain[..n]);
            if n < plain.len() {
                self.pending_plain = Some(plain[n..].into());
                self.more = true;
                return Ok(n);
            }
            filled = n;
            end = n;
        }
        if let Some(held) = self.held_in.take() {
            if filled + held.len() >= buf.len() {
                self.held_in = Some(held);
                self.more = true;
                return if filled > 0 { Ok(filled) } else { Err(io::ErrorKind::WouldBlock.into()) };
            }
            buf[filled..filled + held.len()].copy_from_slice(&held);
            end = filled + held.len();
        }
        let mut blocked = false;
        loop {
            self.process(buf, &mut filled, &mut end)?;
            if self.peer_done || blocked || self.pending_plain.is_some() {
                break;
            }
            if end == buf.len() {
                self.more = true;
                break;
            }
            match self.sock.read(&mut buf[end..]) {
                Ok(0) => {
                    self.peer_done = true;
                    break;
                }
                Ok(n) => end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if end > filled && !self.peer_done {
            self.held_in = Some(buf[filled..end].into());
        }
        if filled > 0 || self.peer_done {
            Ok(filled)
        } else {
            // Nothing decrypted: the socket is drained, or (`more`) the
            // buffer is too small for the unfinished record.
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Take at most [`MAX_UNSENT_PLAINTEXT`] bytes, and only once every
    /// earlier record is in the kernel (`WouldBlock` before that).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.push_out()?;
        self.settle()?;
        let status = self.tls.process_tls_records(&mut []);
        let mut w = match status.state {
            Ok(ConnectionState::WriteTraffic(w)) => w,
            Ok(_) => return Err(io::ErrorKind::WouldBlock.into()), // still handshaking
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        let mut taken = 0;
        let encrypted = SCRATCH.with_borrow_mut(|out| {
            out.clear();
            for b in bufs {
                let want = b.len().min(MAX_UNSENT_PLAINTEXT - taken);
                if want == 0 {
                    break;
                }
                loop {
                    let used = out.len();
                    out.resize(out.capacity().max(used + want + 256), 0);
                    match w.encrypt(&b[..want], &mut out[used..]) {
                        Ok(n) => {
                            out.truncate(used + n);
                            break;
                        }
                        Err(EncryptError::InsufficientSize(s)) => {
                            out.truncate(used);
                            out.reserve(s.required_size);
                        }
                        Err(e) => {
                            out.truncate(used);
                            return Err(io::Error::other(e));
                        }
                    }
                }
                taken += want;
            }
            Ok(())
        });
        let sent = encrypted.and_then(|()| {
            SCRATCH.with_borrow_mut(|out| {
                let r = self_send(&mut self.sock, &mut self.held_out, out);
                out.clear();
                r
            })
        });
        sent.map(|()| taken)
    }

    /// Send the ciphertext the kernel refused before; `WouldBlock` if some
    /// remains.
    fn flush(&mut self) -> io::Result<()> {
        self.push_out()
    }
}

impl Transport for TlsStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        // close_notify is 24 bytes behind an already flushed queue; if the
        // kernel refuses even that, the peer sees a FIN without it.
        self.notify_close();
        self.sock.shutdown(std::net::Shutdown::Write)
    }

    fn holds_input(&self) -> bool {
        self.more
    }
}

impl Drop for TlsStream {
    /// close_notify before the socket closes: one best-effort nonblocking
    /// write.
    fn drop(&mut self) {
        self.notify_close();
    }
}

/// Why a certificate or key could not be used; `Display` is one line naming
/// the file.
#[derive(Debug)]
pub struct TlsSetupError(String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// A rustls server config from a PEM certificate chain (leaf first) and a
/// PEM private key (PKCS#8, PKCS#1 or SEC1): TLS 1.2 and 1.3 with the ring
/// provider, ALPN `http/1.1`. Errors name the file: missing or unreadable,
/// no certificate / key in it, or a key that does not match the certificate.
pub fn server_config_from_files(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| TlsSetupError(format!("cannot read {what} file {}: {e}", p.display())))
    };
    let cert_pem = read(cert, "--tls-cert")?;
    let key_pem = read(key, "--tls-key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError(format!("--tls-cert {}: bad PEM: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsSetupError(format!("--tls-cert {}: no CERTIFICATE in it", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsSetupError(format!("--tls-key {}: no usable private key in it ({e})", key.display())))?;
    server_config(chain, key_der).map_err(|e| {
        TlsSetupError(format!("--tls-key {} does not fit --tls-cert {}: {e}", key.display(), cert.display()))
    })
}

/// A rustls server config for `chain` and `key` (see
/// [`server_config_from_files`]).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A throw-away certificate for `localhost` and `127.0.0.1` (and `::1`),
/// made at start for trying TLS out: the server config, the certificate's
/// PEM (for a client's `--ca`), and its SHA-256 fingerprint (colon-separated
/// hex, as browsers show it).
#[derive(Debug)]
pub struct SelfSigned {
    /// The server config using the certificate.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate, PEM-encoded.
    pub cert_pem: String,
    /// SHA-256 of the certificate's DER, `AB:CD:…`.
    pub fingerprint: String,
}

/// Make a [`SelfSigned`] certificate.
pub fn self_signed() -> Result<SelfSigned, TlsSetupError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsSetupError(format!("--tls-self-signed: cannot make a certificate: {e}")))?;
    let der = made.cert.der().clone();
    let fingerprint = fingerprint(&der);
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
        .map_err(|e| TlsSetupError(format!("--tls-self-signed: {e}")))?;
    let config = server_config(vec![der], key).map_err(|e| TlsSetupError(format!("--tls-self-signed: {e}")))?;
    Ok(SelfSigned { config, cert_pem: made.cert.pem(), fingerprint })
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::conn::Conn;

    /// TLS lives in its own reactor's slab: a plain `Conn` does not grow,
    /// and a TLS one grows by the stream's own fields only (the boxed rustls
    /// state and the in-flight buffers, None while idle).
    #[test]
    fn tls_conn_grows_by_the_stream_only() {
        let plain = std::mem::size_of::<Conn>();
        let tls = std::mem::size_of::<Conn<TlsStream>>();
        let stream = std::mem::size_of::<TlsStream>();
        println!(
            "size_of::<Conn>() = {plain}, size_of::<Conn<TlsStream>>() = {tls}, size_of::<TlsStream>() = {stream}"
        );
        assert!(tls <= plain + stream, "Conn<TlsStream> is {tls} bytes, Conn {plain}, TlsStream {stream}");
        assert!(stream <= 96, "TlsStream grew to {stream} bytes");
    }

    #[test]
    fn fingerprint_is_colon_separated_sha256() {
        // SHA-256("") (FIPS 180-2 test vector).
        assert!(fingerprint(b"").starts_with("E3:B0:C4:42:98:FC:1C:14"));
        assert_eq!(fingerprint(b"x").len(), 32 * 3 - 1);
    }
}
