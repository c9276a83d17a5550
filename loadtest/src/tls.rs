//! `wss://`: the swarm's transport, plain TCP or TLS (rustls, ring provider)
//! over the same nonblocking mio socket.
//!
//! A buffered `rustls::ClientConnection` sits between the connection's frame
//! code and the socket. The upgrade request is written into it as soon as
//! TCP connects (rustls holds it until its handshake is done), so every mode
//! works unchanged: the "handshake" phase is TLS + HTTP upgrade, and
//! handshakes mode measures both.
//!
//! Edge-triggered readiness needs two rules here:
//! - a read returns `WouldBlock` only when the socket did and rustls holds
//!   no decrypted bytes (so draining a readable event to `WouldBlock` still
//!   drains everything);
//! - bytes rustls holds for the socket are pushed out before new plaintext is
//!   taken, and a flush reports [`Flush::Blocked`](crate::conn::Flush) while
//!   any remain, so a writable event always follows.
//!
//! The swarm waits for the server to close first (as over `ws://`); a
//! server's close_notify, or its FIN without one, ends a connection as EOF.

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use wsecho::client::tls::{client_config, Trust};

/// What rustls may hold for the socket before a write is refused
/// (`WouldBlock`): one pre-encoded frame buffer's worth.
const TLS_SEND_LIMIT: usize = 64 * 1024;

/// How the swarm reaches the server over TLS: one config (and so one
/// session cache) shared by every connection of a process.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// The `--ca`, `--insecure` and `--tls-no-resume` choices.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of the CA (or the self-signed certificate) to trust.
    pub ca: Option<std::path::PathBuf>,
    /// Accept any certificate (the handshake's signatures are still checked).
    pub insecure: bool,
    /// No session resumption: every handshake is a full one.
    pub no_resume: bool,
}

impl TlsClient {
    /// A client for `host` (the URL's host: a name or an IP address).
    /// Loopback servers have no publicly trusted certificate, so `--ca` or
    /// `--insecure` is required.
    pub fn new(host: &url::Host<&str>, opts: &TlsOptions) -> Result<TlsClient, String> {
        // The same config as wsecho-client's (ring, TLS 1.2 + 1.3, ALPN
        // http/1.1, the same --ca loading and --insecure verifier); the
        // swarm only adds the resumption switch.
        let trust = if opts.insecure {
            Trust::Insecure
        } else {
            let Some(ca) = &opts.ca else {
                return Err("wss://: give --ca FILE (the server's CA or self-signed certificate, PEM) \
                            or --insecure (no verification)"
                    .into());
            };
            Trust::CaFile(ca.clone())
        };
        let mut config = ClientConfig::clone(&*client_config(&trust)?);
        if opts.no_resume {
            config.resumption = Resumption::disabled();
        }
        let name = match host {
            url::Host::Domain(d) => ServerName::try_from(d.to_string()).map_err(|e| format!("TLS name {d}: {e}"))?,
            url::Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(*ip).into()),
            url::Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(*ip).into()),
        };
        Ok(TlsClient { config: Arc::new(config), name })
    }

    /// A TLS session for one connection.
    fn session(&self) -> io::Result<ClientConnection> {
        let mut c = ClientConnection::new(Arc::clone(&self.config), self.name.clone()).map_err(io::Error::other)?;
        c.set_buffer_limit(Some(TLS_SEND_LIMIT));
        Ok(c)
    }
}

/// A connection's byte stream: the socket itself, or TLS over it.
#[derive(Debug)]
pub enum Transport {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://` (boxed: a rustls session is large and most runs are plain).
    Tls(Box<TlsStream>),
}

/// rustls over a nonblocking socket.
#[derive(Debug)]
pub struct TlsStream {
    sock: TcpStream,
    tls: ClientConnection,
}

impl Transport {
    /// Wrap a connecting socket; with `tls`, start a TLS session on it.
    pub fn new(sock: TcpStream, tls: Option<&TlsClient>) -> io::Result<Transport> {
        Ok(match tls {
            None => Transport::Plain(sock),
            Some(t) => Transport::Tls(Box::new(TlsStream { sock, tls: t.session()? })),
        })
    }

    fn sock(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }

    /// The socket's pending error (a failed connect).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.sock().take_error()
    }

    /// The peer's address (`NotConnected` while connect() is in progress).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock().peer_addr()
    }

    /// Read decrypted bytes (or the socket's bytes). `Ok(0)` is the end of
    /// the stream; `WouldBlock` means the socket is empty *and* nothing
    /// decrypted is waiting.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }

    /// Write bytes; with TLS they are encrypted into rustls's buffer and
    /// pushed to the socket as far as it takes them. `WouldBlock` when the
    /// socket refused what rustls already held.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }

    /// With TLS, once its handshake is done: (resumed, TLS 1.3).
    pub fn tls_kind(&self) -> Option<(bool, bool)> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => {
                let resumed = t.tls.handshake_kind()? == rustls::HandshakeKind::Resumed;
                Some((resumed, t.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)))
            }
        }
    }

    /// Push out what TLS holds for the socket: `Ok(true)` once nothing is
    /// left (always, for a plain socket), `Ok(false)` if the socket is full.
    pub fn drain(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.drain(),
        }
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the server's close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without a close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => {
                    // EOF: let rustls see it, then the reader says how it ended.
                    self.process()?;
                    return match self.tls.reader().read(buf) {
                        Ok(n) => Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                        Err(e) => Err(e),
                    };
                }
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Decrypt what came in; answer the handshake at once if the socket
    /// takes it. A failed write here is left to the next flush to report:
    /// the bytes just read (a Close, the server's EOF) come first.
    fn process(&mut self) -> io::Result<()> {
        if let Err(e) = self.tls.process_new_packets() {
            // rustls queued an alert for the server: try to send it.
            let _ = self.drain();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        let _ = self.drain();
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.drain()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write(buf)?;
        self.drain()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn drain(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Source for Transport {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.register(registry, token, interests),
            Transport::Tls(t) => t.sock.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.reregister(registry, token, interests),
            Transport::Tls(t) => t.sock.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.deregister(registry),
            Transport::Tls(t) => t.sock.deregister(registry),
        }
    }
}

/// A short name for a TLS failure (an error-count key), if `e` is one.
pub fn tls_err_name(e: &io::Error) -> Option<String> {
    let t = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    // The variant's name only (Debug may carry names and addresses).
    let head = |d: String| d.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    Some(match t {
        rustls::Error::InvalidCertificate(c) => format!("tls_bad_certificate_{}", head(format!("{c:?}"))),
        rustls::Error::AlertReceived(a) => format!("tls_alert_{}", head(format!("{a:?}"))),
        rustls::Error::NoApplicationProtocol => "tls_no_alpn".into(),
        rustls::Error::InvalidMessage(_) => "tls_invalid_message".into(),
        rustls::Error::PeerIncompatible(_) => "tls_incompatible".into(),
        _ => "tls_error".into(),
    })
}

#[cfg(test)]
mod tests {
    //! The swarm over `wss://` against a small in-test TLS WebSocket echo
    //! server (rustls, blocking, a thread per connection): until wsecho
    //! itself speaks TLS, this is the server end.
    use crate::stats::Report;
    use clap::Parser;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{HandshakeKind, ServerConfig, ServerConnection, StreamOwned};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use wsecho::proto::frame::{write_frame, FrameHeader};
    use wsecho::proto::{OpCode, Role};

    /// A throw-away self-signed certificate for localhost and 127.0.0.1,
    /// written to a PEM file (for `--ca`), and its key.
    fn cert(tag: &str) -> (PathBuf, rustls::pki_types::CertificateDer<'static>, PrivateKeyDer<'static>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let path = std::env::temp_dir().join(format!("wsecho-loadtest-{}-{tag}.pem", std::process::id()));
        std::fs::write(&path, ck.cert.pem()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        (path, ck.cert.der().clone(), key)
    }

    /// The in-test server: its address, the CA file to trust, and how many
    /// TLS handshakes it completed in full and resumed.
    struct WssEcho {
        addr: SocketAddr,
        ca: PathBuf,
        full: Arc<AtomicUsize>,
        resumed: Arc<AtomicUsize>,
    }

    fn wss_echo(tag: &str) -> WssEcho {
        let (ca, der, key) = cert(tag);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (full, resumed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (f, r) = (Arc::clone(&full), Arc::clone(&resumed));
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { continue };
                let (config, f, r) = (Arc::clone(&config), Arc::clone(&f), Arc::clone(&r));
                std::thread::spawn(move || {
                    let _ = serve(sock, config, &f, &r);
                });
            }
        });
        WssEcho { addr, ca, full, resumed }
    }

    /// One connection: TLS, the upgrade, then echo every data frame (and
    /// answer Ping and Close) until the client's Close.
    fn serve(
        sock: TcpStream,
        config: Arc<ServerConfig>,
        full: &AtomicUsize,
        resumed: &AtomicUsize,
    ) -> std::io::Result<()> {
        let mut s = StreamOwned::new(ServerConnection::new(config).map_err(std::io::Error::other)?, sock);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        match s.conn.handshake_kind() {
            Some(HandshakeKind::Resumed) => resumed.fetch_add(1, Ordering::Relaxed),
            _ => full.fetch_add(1, Ordering::Relaxed),
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let key = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key")))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let accept = wsecho::proto::handshake::accept_key(key.as_bytes());
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            String::from_utf8_lossy(&accept)
        );
        s.write_all(resp.as_bytes())?;
        buf.drain(..head_end);
        loop {
            while let Some((h, hl)) = FrameHeader::decode(&buf, Role::Server, 0, 1 << 24).ok().flatten() {
                let len = h.payload_len as usize;
                if buf.len() < hl + len {
                    break;
                }
                let mut payload = buf[hl..hl + len].to_vec();
                wsecho::proto::mask::apply_mask(&mut payload, h.mask.unwrap_or([0; 4]), 0);
                buf.drain(..hl + len);
                let mut out = Vec::new();
                match h.opcode {
                    OpCode::Ping => write_frame(&mut out, true, 0, OpCode::Pong, None, &payload),
                    OpCode::Pong => {}
                    OpCode::Close => {
                        write_frame(&mut out, true, 0, OpCode::Close, None, &payload);
                        s.write_all(&out)?;
                        s.conn.send_close_notify();
                        s.flush()?;
                        return s.sock.shutdown(std::net::Shutdown::Write);
                    }
                    op => write_frame(&mut out, h.fin, 0, op, None, &payload),
                }
                s.write_all(&out)?;
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Run the swarm as the command line `args` would.
    fn swarm(args: &[&str]) -> Report {
        let mut argv = vec!["wsecho-loadtest"];
        argv.extend_from_slice(args);
        let cli = crate::Cli::try_parse_from(argv).unwrap();
        let (plan, _, _) = crate::build_plan(cli.cmd, Arc::new(AtomicBool::new(false)));
        crate::swarm::run(&plan).unwrap()
    }

    fn target(s: &WssEcho) -> String {
        format!("wss://127.0.0.1:{}/echo", s.addr.port())
    }

    #[test]
    fn wss_echo_verifies_every_echo_with_the_ca_or_insecure() {
        let s = wss_echo("echo");
        let (t, ca) = (target(&s), s.ca.display().to_string());
        for trust in [vec!["--ca", ca.as_str()], vec!["--insecure"]] {
            let mut args = vec!["echo", "--target", &t, "--conns", "8", "--depth", "2", "--size", "300"];
            args.extend_from_slice(&["--duration", "0.7", "--warmup", "0.2", "--quiet"]);
            args.extend_from_slice(&trust);
            let r = swarm(&args);
            assert!(r.errors.is_empty(), "{trust:?}: {:?}", r.errors);
            assert_eq!((r.conns_open_max, r.corrupted), (8, 0), "{trust:?}");
            assert!(r.msgs > 0, "{trust:?}: no echo in the window");
            assert_eq!(r.close_codes.get("1000"), Some(&8), "{trust:?}: every close completes");
        }
        // A 70,000-byte message spans several TLS records each way.
        let r = swarm(&[
            "echo",
            "--target",
            &t,
            "--ca",
            &ca,
            "--conns",
            "2",
            "--size",
            "70000",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--quiet",
        ]);
        assert!(r.errors.is_empty() && r.msgs > 0, "{:?}, {} msgs", r.errors, r.msgs);
    }

    #[test]
    fn wss_with_an_untrusted_certificate_fails_the_tls_handshake() {
        let s = wss_echo("server");
        let (other, _, _) = cert("other");
        let r = swarm(&[
            "echo",
            "--target",
            &target(&s),
            "--ca",
            &other.display().to_string(),
            "--conns",
            "3",
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "--quiet",
        ]);
        assert_eq!(r.msgs_run, 0);
        // Both certificates name the same subject: the chain check finds the
        // "issuer" and rejects its signature (a different name: UnknownIssuer).
        let cert_errors: u64 =
            r.errors.iter().filter(|(k, _)| k.starts_with("read_tls_bad_certificate_")).map(|(_, v)| v).sum();
        assert_eq!((cert_errors, r.errors.len()), (3, 1), "{:?}", r.errors);
        assert_eq!(s.full.load(Ordering::Relaxed) + s.resumed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn wss_handshakes_resume_sessions_unless_told_not_to() {
        let s = wss_echo("hs");
        let (t, ca) = (target(&s), s.ca.display().to_string());
        let r = swarm(&[
            "handshakes",
            "--target",
            &t,
            "--ca",
            &ca,
            "--concurrency",
            "4",
            "--duration",
            "0.6",
            "--warmup",
            "0.1",
            "--quiet",
        ]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r.handshakes > 0);
        let (full, resumed) = (s.full.load(Ordering::Relaxed), s.resumed.load(Ordering::Relaxed));
        assert!(resumed > full, "one session cache per process: {full} full, {resumed} resumed");
        let t = r.tls.unwrap();
        assert!(t.resumed > 0 && t.resumed <= resumed as u64 && t.full <= full as u64, "{t:?} vs {full}/{resumed}");
        assert_eq!(t.tls13, t.full + t.resumed, "rustls prefers TLS 1.3");

        let s = wss_echo("hs-full");
        let r = swarm(&[
            "handshakes",
            "--target",
            &target(&s),
            "--ca",
            &s.ca.display().to_string(),
            "--tls-no-resume",
            "--concurrency",
            "4",
            "--duration",
            "0.6",
            "--warmup",
            "0.1",
            "--quiet",
        ]);
        assert!(r.errors.is_empty() && r.handshakes > 0, "{:?}", r.errors);
        assert_eq!(s.resumed.load(Ordering::Relaxed), 0);
        assert!(s.full.load(Ordering::Relaxed) as u64 >= r.handshakes);
        assert_eq!(r.tls.unwrap().resumed, 0);
    }

    #[test]
    fn wss_idle_rate_churn_and_classic_modes_run_clean() {
        let s = wss_echo("modes");
        let (t, ca) = (target(&s), s.ca.display().to_string());
        let base = ["--target", t.as_str(), "--ca", ca.as_str(), "--quiet"];
        let run = |mode: &str, extra: &[&str]| {
            let mut a = vec![mode];
            a.extend_from_slice(&base);
            a.extend_from_slice(extra);
            swarm(&a)
        };
        let r = run("idle", &["--conns", "12", "--duration", "0.3", "--settle", "0", "--ping-every", "0.1"]);
        assert!(r.errors.is_empty() && r.conns_open_max == 12, "idle: {:?} {}", r.errors, r.conns_open_max);
        let r = run("rate", &["--conns", "4", "--rate", "400", "--duration", "0.5", "--warmup", "0.1"]);
        assert!(r.errors.is_empty() && r.msgs > 0, "rate: {:?} {}", r.errors, r.msgs);
        let r = run(
            "churn",
            &["--conns", "4", "--lifetime-min", "0.05", "--lifetime-max", "0.1", "--duration", "0.6", "--warmup", "0"],
        );
        assert!(r.errors.is_empty() && r.handshakes > 4, "churn: {:?} {}", r.errors, r.handshakes);
        let port = s.addr.port().to_string();
        let r = swarm(&["classic", "3", "127.0.0.1", &port, "64", "--tls", "--ca", &ca, "--duration", "0.5"]);
        assert!(r.errors.is_empty() && r.msgs_run > 0, "classic: {:?} {}", r.errors, r.msgs_run);
    }
}
