//! `wss://` for the blocking client: a rustls client config (webpki roots,
//! an extra CA file, or no verification at all for a self-signed test
//! server).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Which server certificates the client accepts.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The public web PKI (Mozilla's roots, from `webpki-roots`).
    #[default]
    WebPki,
    /// Only certificates that chain to the CA certificates (PEM) in this file.
    CaFile(std::path::PathBuf),
    /// Any certificate for any name: encrypted but not authenticated. For a
    /// throw-away self-signed test server only.
    Insecure,
}

/// A rustls client config for `trust`: TLS 1.2 and 1.3 with the ring
/// provider, ALPN `http/1.1`. An unreadable or empty CA file is an error
/// naming it.
pub fn client_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Trust::WebPki | Trust::CaFile(_) => {
            let mut roots = rustls::RootCertStore::empty();
            if let Trust::CaFile(path) = trust {
                add_ca_file(&mut roots, path)?;
            } else {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn add_ca_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read --ca file {}: {e}", path.display()))?;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("--ca {}: bad PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| format!("--ca {}: {e}", path.display()))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!("--ca {}: no CERTIFICATE in it", path.display()));
    }
    Ok(())
}

/// Accepts any certificate for any name, but still checks that the server
/// holds the certificate's key (the handshake signature), so the session is
/// at least bound to the certificate shown.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client TLS connection shared by the reading half (one thread, blocked
/// in `read` on the socket without holding the lock) and the writing halves.
#[derive(Debug)]
pub struct TlsWire {
    conn: std::sync::Mutex<rustls::ClientConnection>,
    sock: std::net::TcpStream,
}

impl TlsWire {
    /// Run the TLS handshake for `host` over `sock` (blocking, within the
    /// socket's timeouts). Certificate errors say which name and why.
    pub fn connect(
        mut sock: std::net::TcpStream,
        host: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Arc<TlsWire>> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let mut conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(|e| match e.get_ref().and_then(|i| i.downcast_ref()) {
                Some(rustls::Error::InvalidCertificate(why)) => std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("TLS: the server's certificate for {host} is not trusted ({why:?}); use --ca FILE, or --insecure for a test server"),
                ),
                _ => e,
            })?;
        }
        Ok(Arc::new(TlsWire { conn: std::sync::Mutex::new(conn), sock }))
    }

    /// The TCP socket (for timeouts, shutdown).
    pub fn socket(&self) -> &std::net::TcpStream {
        &self.sock
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, rustls::ClientConnection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read plaintext: what rustls holds, else ciphertext from the socket
    /// (read without the lock, so writers are not blocked meanwhile).
    pub fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Read;
        let mut cipher = [0u8; 16 * 1024];
        loop {
            {
                let mut conn = self.lock();
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let n = (&self.sock).read(&mut cipher)?;
            let mut conn = self.lock();
            let mut fed = &cipher[..n];
            loop {
                conn.read_tls(&mut fed)?; // Ok(0) at EOF is recorded by rustls
                let state = conn.process_new_packets();
                while conn.wants_write() {
                    conn.write_tls(&mut &self.sock)?;
                }
                state.map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                if fed.is_empty() {
                    break;
                }
            }
        }
    }

    /// Encrypt and send all of `buf`.
    pub fn write_all(&self, buf: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut conn = self.lock();
        conn.writer().write_all(buf)?;
        while conn.wants_write() {
            conn.write_tls(&mut &self.sock)?;
        }
        Ok(())
    }
}
