//! TLS (`https://` and `wss://`): a [`Transport`] over rustls, and the
//! listener kinds a reactor can serve ([`Accept`]).
//!
//! The reactor and the per-connection code are generic over the transport,
//! so a TLS listener runs its own monomorphized reactor with a slab of
//! `Conn<TlsStream>` and a plain listener keeps `Conn<TcpStream>`, which TLS
//! does not grow by a byte.
//!
//! [`TlsStream`] keeps two promises the driver relies on:
//! - **Reads drain rustls.** rustls may hold decrypted bytes that the socket
//!   no longer shows, so a short read cannot mean "the socket is empty"
//!   unless the stream makes it so: [`TlsStream::read`] fills the caller's
//!   buffer from rustls's plaintext, reading more ciphertext whenever rustls
//!   has none, and returns short only when the socket said `WouldBlock` (or
//!   at EOF). A short read therefore still means "drained".
//! - **Written means the kernel took it, within one record.** A write first
//!   pushes out any ciphertext still pending from earlier writes and returns
//!   `WouldBlock` while some remains; only then does it take at most
//!   [`MAX_UNSENT_PLAINTEXT`] bytes, encrypt them and write them. So the
//!   bytes the kernel refused are in the connection's pooled queue (counted
//!   against backpressure and the pool cap), except for at most one record's
//!   ciphertext kept by rustls, which [`Write::flush`] (called by the
//!   reactor on every writable event) sends.
//!
//! Closing: [`Transport::shutdown_write`] sends close_notify before our FIN,
//! and dropping a stream sends close_notify (or the alert of a failed
//! handshake) with one nonblocking write before the socket closes.
//!
//! This uses rustls's buffered `ServerConnection`: an idle connection keeps
//! rustls's 4 KiB receive buffer and its key schedule (see the README for the
//! measured figure). The unbuffered API would let it use the reactor's
//! buffers instead; not done yet.

use super::conn::{Stream, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConnection;
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Most plaintext one write takes while its ciphertext may still be in
/// rustls rather than in the kernel: one TLS record (16 KiB), so that is all
/// a connection can hold outside its pooled queue.
pub const MAX_UNSENT_PLAINTEXT: usize = 16 * 1024;

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

/// A server-side TLS connection over a nonblocking TCP socket.
#[derive(Debug)]
pub struct TlsStream {
    sock: Stream,
    /// Boxed: rustls's state is large, and the slab slot stays small.
    tls: Box<ServerConnection>,
    /// The TLS session failed (bad record, alert): no close_notify is sent,
    /// only the alert rustls queued.
    failed: bool,
}

impl Accept for TlsStream {
    type Acceptor = Arc<rustls::ServerConfig>;
    const PLAINTEXT: bool = false;

    fn accept(config: &Arc<rustls::ServerConfig>, sock: Stream) -> io::Result<TlsStream> {
        let tls = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Ok(TlsStream { sock, tls: Box::new(tls), failed: false })
    }
}

impl TlsStream {
    /// Whether the TLS handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Write pending ciphertext until none is left (`Ok`) or the kernel
    /// refuses more (`WouldBlock`).
    fn push_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for TlsStream {
    /// Fill `buf` with plaintext: first what rustls holds, then by reading
    /// and decrypting more ciphertext, until `buf` is full, the socket says
    /// `WouldBlock` (short read, or `WouldBlock` if nothing at all), or EOF
    /// (`Ok(0)` once nothing is left; a missing close_notify counts as EOF —
    /// the WebSocket close handshake already says whether the end was clean).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.tls.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled), // close_notify received
                Ok(n) => {
                    filled += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {} // rustls holds nothing: read more
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.sock) {
                // Ok(0), the socket's EOF, is recorded by rustls: the reader
                // reports it on the next round.
                Ok(_) => {
                    let processed = self.tls.process_new_packets();
                    // Handshake messages and alerts go out now; what the
                    // kernel refuses waits for the next writable event.
                    let pushed = self.push_tls();
                    if let Err(e) = processed {
                        self.failed = true;
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if let Err(e) = pushed {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            return Err(e);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Take at most [`MAX_UNSENT_PLAINTEXT`] bytes, and only once every
    /// earlier record is in the kernel (`WouldBlock` before that).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.push_tls()?;
        let mut taken = 0;
        for b in bufs {
            let want = b.len().min(MAX_UNSENT_PLAINTEXT - taken);
            if want == 0 {
                break;
            }
            let n = self.tls.writer().write(&b[..want])?;
            taken += n;
            if n < want {
                break;
            }
        }
        match self.push_tls() {
            Ok(()) => Ok(taken),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(taken),
            Err(e) => Err(e),
        }
    }

    /// Send the ciphertext rustls still holds; `WouldBlock` if some remains.
    fn flush(&mut self) -> io::Result<()> {
        self.push_tls()
    }
}

impl Transport for TlsStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.failed {
            self.tls.send_close_notify();
        }
        // close_notify is 24 bytes behind an already flushed queue; if the
        // kernel refuses even that, the peer sees a FIN without it.
        let _ = self.push_tls();
        self.sock.shutdown(std::net::Shutdown::Write)
    }
}

impl Drop for TlsStream {
    /// close_notify (or a failed handshake's alert) before the socket closes:
    /// one best-effort nonblocking write.
    fn drop(&mut self) {
        if !self.failed && !self.tls.is_handshaking() {
            self.tls.send_close_notify();
        }
        let _ = self.push_tls();
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

    /// TLS lives in its own reactor's slab: a plain `Conn` does not grow, and
    /// a TLS one grows only by the boxed rustls state's pointer and a flag.
    #[test]
    fn tls_conn_adds_only_a_box_to_the_slot() {
        let plain = std::mem::size_of::<Conn>();
        let tls = std::mem::size_of::<Conn<TlsStream>>();
        println!("size_of::<Conn>() = {plain}, size_of::<Conn<TlsStream>>() = {tls}");
        assert!(tls <= plain + 16, "Conn<TlsStream> is {tls} bytes, Conn {plain}");
    }

    #[test]
    fn fingerprint_is_colon_separated_sha256() {
        // SHA-256("") (FIPS 180-2 test vector).
        assert!(fingerprint(b"").starts_with("E3:B0:C4:42:98:FC:1C:14"));
        assert_eq!(fingerprint(b"x").len(), 32 * 3 - 1);
    }
}
