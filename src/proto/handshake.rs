//! The HTTP/1.1 upgrade (RFC 6455 §4), parsed incrementally with httparse.
//!
//! httparse is not resumable, so [`RequestScanner`] first looks for the blank
//! line that ends the head — resuming each search where the previous one
//! stopped — and parses only once the whole head is present. The request size
//! and header count are capped ([`Limits`]), so a slow or endless request costs
//! bounded memory and a linear amount of scanning.
//!
//! [`route`] then applies gorilla/websocket's `Upgrader` checks in gorilla's
//! order and with its statuses and reason texts, plus RFC 6455 §4.2.1's rule
//! that the key must be 16 base64-encoded bytes.

use super::error::HandshakeError;
use super::Limits;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3: the GUID appended to the client's key.
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 28];
    let n = B64.encode_slice(digest, &mut out).expect("20 bytes encode to 28");
    debug_assert_eq!(n, 28);
    out
}

/// Which origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// gorilla's default `checkSameOrigin`: allowed if there is no `Origin`
    /// header, or its host equals the `Host` header (ASCII case-insensitive).
    #[default]
    SameOrigin,
    /// Any origin.
    Any,
    /// These origins (e.g. `https://example.com`), compared ASCII
    /// case-insensitively; requests without `Origin` are allowed.
    List(Vec<String>),
}

/// How the server answers upgrade requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradePolicy {
    /// Origin check.
    pub origin: OriginPolicy,
    /// Supported subprotocols in server preference order.
    pub subprotocols: Vec<String>,
}

/// Finds the end of the request head across reads without rescanning.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestScanner {
    /// Bytes already searched for the terminator.
    scanned: usize,
}

/// 431 for a head that grows past the limits.
pub const TOO_LARGE: HandshakeError = HandshakeError { status: 431, reason: "request header fields too large" };
/// 400 for bytes that are not an HTTP/1.x request.
pub const MALFORMED: HandshakeError = HandshakeError { status: 400, reason: "malformed HTTP request" };
/// 400 for bytes that arrived after the request, before our 101.
pub const EARLY_DATA: HandshakeError =
    HandshakeError { status: 400, reason: "websocket: client sent data before handshake is complete" };
/// 404 for any path other than the page and the echo endpoint.
pub const NOT_FOUND: HandshakeError = HandshakeError { status: 404, reason: "not found" };
/// 405 for a non-GET request to the home page.
pub const PAGE_METHOD: HandshakeError = HandshakeError { status: 405, reason: "method not allowed" };

const BAD_CONNECTION: HandshakeError = HandshakeError {
    status: 400,
    reason:
        "websocket: the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header",
};
const BAD_UPGRADE: HandshakeError = HandshakeError {
    status: 400,
    reason:
        "websocket: the client is not using the websocket protocol: 'websocket' token not found in 'Upgrade' header",
};
const BAD_METHOD: HandshakeError = HandshakeError {
    status: 405,
    reason: "websocket: the client is not using the websocket protocol: request method is not GET",
};
/// 400 for a missing `Sec-WebSocket-Version: 13`; the response also carries
/// `Sec-WebSocket-Version: 13` (RFC 6455 §4.4).
pub const BAD_VERSION: HandshakeError = HandshakeError {
    status: 400,
    reason: "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header",
};
const BAD_ORIGIN: HandshakeError =
    HandshakeError { status: 403, reason: "websocket: request origin not allowed by Upgrader.CheckOrigin" };
const NO_KEY: HandshakeError = HandshakeError {
    status: 400,
    reason: "websocket: not a websocket handshake: `Sec-WebSocket-Key' header is missing or blank",
};
const BAD_KEY: HandshakeError = HandshakeError {
    status: 400,
    reason: "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header must be Base64 encoded value of 16-byte in length",
};

impl RequestScanner {
    /// Look for the end of the request head in `buf` (which holds every byte
    /// received so far). Returns the head length once `\r\n\r\n` is present,
    /// `Ok(None)` while it is not, or 431 once the head would exceed
    /// `limits.max_request_bytes`.
    pub fn feed(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, HandshakeError> {
        let from = self.scanned.saturating_sub(3);
        let window = &buf[from..buf.len().min(limits.max_request_bytes)];
        if let Some(i) = window.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(from + i + 4));
        }
        if buf.len() >= limits.max_request_bytes {
            return Err(TOO_LARGE);
        }
        self.scanned = buf.len();
        Ok(None)
    }
}

/// What a complete request head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the home page.
    Home,
    /// A valid upgrade on `/echo`.
    Upgrade(Upgrade),
}

/// An accepted upgrade: what the 101 response must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept` value.
    pub accept: [u8; 28],
    /// Index into [`UpgradePolicy::subprotocols`] of the chosen subprotocol.
    pub protocol: Option<usize>,
    /// Raw `Sec-WebSocket-Extensions` offers (joined with `, `), for the
    /// extension negotiation layer.
    pub extensions: Option<String>,
}

/// Whether any comma-separated token of any `name` header equals `value`
/// (ASCII case-insensitive), like gorilla's `tokenListContainsValue`.
fn header_has_token(headers: &[httparse::Header<'_>], name: &str, value: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(value.as_bytes()))
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

fn origin_allowed(policy: &OriginPolicy, origin: Option<&[u8]>, host: Option<&[u8]>) -> bool {
    let Some(origin) = origin else { return true };
    match policy {
        OriginPolicy::Any => true,
        OriginPolicy::List(list) => list.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(origin.trim_ascii())),
        OriginPolicy::SameOrigin => {
            // gorilla: url.Parse(origin) then equalASCIIFold(u.Host, r.Host).
            let o = origin.trim_ascii();
            let Some(p) = o.windows(3).position(|w| w == b"://") else {
                return false;
            };
            let rest = &o[p + 3..];
            let end = rest.iter().position(|&b| b == b'/' || b == b'?' || b == b'#').unwrap_or(rest.len());
            let o_host = &rest[..end];
            let o_host = match o_host.iter().rposition(|&b| b == b'@') {
                Some(at) => &o_host[at + 1..],
                None => o_host,
            };
            host.is_some_and(|h| h.trim_ascii().eq_ignore_ascii_case(o_host))
        }
    }
}

/// Decide what a complete request head (`head` = bytes up to and including
/// the blank line) asks for, applying every upgrade check.
pub fn route(head: &[u8], policy: &UpgradePolicy, limits: &Limits) -> Result<Route, HandshakeError> {
    let mut storage = [httparse::EMPTY_HEADER; 256];
    let slots = &mut storage[..limits.max_headers.min(256)];
    let mut req = httparse::Request::new(slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(MALFORMED),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_LARGE),
        Err(_) => return Err(MALFORMED),
    }
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("");
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let h = req.headers;
    match path {
        "/" => {
            return if method == "GET" { Ok(Route::Home) } else { Err(PAGE_METHOD) };
        }
        "/echo" => {}
        _ => return Err(NOT_FOUND),
    }
    // gorilla's Upgrader order.
    if !header_has_token(h, "Connection", "upgrade") {
        return Err(BAD_CONNECTION);
    }
    if !header_has_token(h, "Upgrade", "websocket") {
        return Err(BAD_UPGRADE);
    }
    if method != "GET" {
        return Err(BAD_METHOD);
    }
    if !header_has_token(h, "Sec-WebSocket-Version", "13") {
        return Err(BAD_VERSION);
    }
    if !origin_allowed(&policy.origin, header(h, "Origin"), header(h, "Host")) {
        return Err(BAD_ORIGIN);
    }
    let key = header(h, "Sec-WebSocket-Key").map(|k| k.trim_ascii()).unwrap_or(b"");
    if key.is_empty() {
        return Err(NO_KEY);
    }
    // RFC 6455 §4.2.1: "a base64-encoded value that, when decoded, is 16 bytes
    // in length".
    let mut raw = [0u8; 18];
    match B64.decode_slice(key, &mut raw) {
        Ok(16) => {}
        _ => return Err(BAD_KEY),
    }
    let protocol = policy.subprotocols.iter().position(|ours| {
        h.iter()
            .filter(|x| x.name.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
            .flat_map(|x| x.value.split(|&b| b == b','))
            .any(|t| t.trim_ascii() == ours.as_bytes())
    });
    let mut extensions: Option<String> = None;
    for x in h.iter().filter(|x| x.name.eq_ignore_ascii_case("Sec-WebSocket-Extensions")) {
        let v = String::from_utf8_lossy(x.value);
        match &mut extensions {
            Some(e) => {
                e.push_str(", ");
                e.push_str(&v);
            }
            None => extensions = Some(v.into_owned()),
        }
    }
    Ok(Route::Upgrade(Upgrade { accept: accept_key(key), protocol, extensions }))
}

/// Append `value` to `out`, replacing bytes ≤ 31 with spaces so an
/// application-supplied header cannot split the response.
pub fn push_header_value(out: &mut Vec<u8>, value: &[u8]) {
    out.extend(value.iter().map(|&b| if b <= 31 { b' ' } else { b }));
}

/// Append `name: value` lines, both sanitised.
fn push_headers(out: &mut Vec<u8>, headers: &[(&str, &str)]) {
    for (name, value) in headers {
        push_header_value(out, name.as_bytes());
        out.extend_from_slice(b": ");
        push_header_value(out, value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Append a `101 Switching Protocols` response for `up`; `extension` is the
/// negotiated `Sec-WebSocket-Extensions` value, `extra` more headers.
pub fn write_switching(
    out: &mut Vec<u8>,
    up: &Upgrade,
    policy: &UpgradePolicy,
    extension: Option<&str>,
    extra: &[(&str, &str)],
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&up.accept);
    out.extend_from_slice(b"\r\n");
    if let Some(i) = up.protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        push_header_value(out, policy.subprotocols[i].as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(ext) = extension {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        push_header_value(out, ext.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    push_headers(out, extra);
    out.extend_from_slice(b"\r\n");
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Append a complete HTTP response with `Connection: close`.
pub fn write_response(out: &mut Vec<u8>, status: u16, content_type: &str, extra: &[(&str, &str)], body: &[u8]) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        status_text(status),
        body.len()
    );
    push_headers(out, extra);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Append the error response for `err`: `text/plain` reason (plus a newline,
/// as Go's `http.Error` does) and, for a version error,
/// `Sec-WebSocket-Version: 13`.
pub fn write_error(out: &mut Vec<u8>, err: &HandshakeError) {
    let extra: &[(&str, &str)] = if *err == BAD_VERSION { &[("Sec-WebSocket-Version", "13")] } else { &[] };
    let mut body = Vec::with_capacity(err.reason.len() + 1);
    body.extend_from_slice(err.reason.as_bytes());
    body.push(b'\n');
    write_response(out, err.status, "text/plain; charset=utf-8", extra, &body);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /echo HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn route_str(s: &str) -> Result<Route, HandshakeError> {
        route(s.as_bytes(), &UpgradePolicy::default(), &Limits::default())
    }

    #[test]
    fn accept_key_matches_rfc_and_seed_vectors() {
        // RFC 6455 §1.3.
        assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // The seed's example.
        assert_eq!(&accept_key(b"x3JJHMbDL1EzLkh9GBhXDw=="), b"HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    }

    #[test]
    fn scanner_finds_head_end_fed_one_byte_at_a_time() {
        let limits = Limits::default();
        let mut sc = RequestScanner::default();
        let b = GOOD.as_bytes();
        for i in 1..b.len() {
            assert_eq!(sc.feed(&b[..i], &limits), Ok(None), "at {i}");
        }
        assert_eq!(sc.feed(b, &limits), Ok(Some(b.len())));
    }

    #[test]
    fn scanner_caps_request_size_with_431() {
        let limits = Limits { max_request_bytes: 64, ..Limits::default() };
        let mut sc = RequestScanner::default();
        let big = vec![b'a'; 64];
        assert_eq!(sc.feed(&big, &limits), Err(TOO_LARGE));
    }

    #[test]
    fn gorilla_checks_in_order_with_statuses() {
        assert!(matches!(route_str(GOOD), Ok(Route::Upgrade(_))));
        let cases: &[(&str, &str, u16)] = &[
            ("Connection: keep-alive, Upgrade", "Connection: keep-alive", 400),
            ("Upgrade: websocket", "Upgrade: h2c", 400),
            ("GET /echo", "POST /echo", 405),
            ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 400),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Key: ", 400),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Key: c2hvcnQ=", 400),
            ("Host: localhost:8080", "Host: localhost:8080\r\nOrigin: http://evil.example", 403),
            ("GET /echo", "GET /nope", 404),
        ];
        for (from, to, status) in cases {
            let req = GOOD.replace(from, to);
            let err = route_str(&req).unwrap_err();
            assert_eq!(err.status, *status, "{to}: {err}");
        }
        // Same origin passes; Connection checked before method.
        let same = GOOD.replace("Host: localhost:8080", "Host: localhost:8080\r\nOrigin: http://LOCALHOST:8080");
        assert!(route_str(&same).is_ok());
        let both = GOOD.replace("GET /echo", "POST /echo").replace("keep-alive, Upgrade", "close");
        assert_eq!(route_str(&both).unwrap_err(), BAD_CONNECTION);
    }

    #[test]
    fn subprotocol_is_servers_first_match() {
        let policy = UpgradePolicy { subprotocols: vec!["chat".into(), "superchat".into()], ..Default::default() };
        let req = GOOD.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: superchat, chat\r\n\r\n");
        match route(req.as_bytes(), &policy, &Limits::default()).unwrap() {
            Route::Upgrade(up) => assert_eq!(up.protocol, Some(0)),
            r => panic!("{r:?}"),
        }
        let req = GOOD.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n");
        match route(req.as_bytes(), &policy, &Limits::default()).unwrap() {
            Route::Upgrade(up) => {
                assert_eq!(up.protocol, None);
                let mut out = Vec::new();
                write_switching(&mut out, &up, &policy, None, &[]);
                assert!(!String::from_utf8(out).unwrap().contains("Sec-WebSocket-Protocol"));
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn header_values_are_sanitised_against_response_splitting() {
        let mut out = Vec::new();
        write_response(&mut out, 200, "text/plain", &[("X-A", "a\r\nSet-Cookie: x")], b"");
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("X-A: a  Set-Cookie: x\r\n"));
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = Limits { max_headers: 4, ..Limits::default() };
        let err = route(GOOD.as_bytes(), &UpgradePolicy::default(), &limits).unwrap_err();
        assert_eq!(err.status, 431);
    }
}

/// Append a client upgrade request for `ws://host/path` with `key` (the
/// base64 of 16 random bytes), offering `protocols` and `extensions`.
pub fn write_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    key: &str,
    protocols: &[String],
    extensions: Option<&str>,
) {
    out.extend_from_slice(b"GET ");
    push_header_value(out, path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    push_header_value(out, host.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    push_header_value(out, key.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !protocols.is_empty() {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        push_header_value(out, protocols.join(", ").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(ext) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        push_header_value(out, ext.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed server response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Length of the head (the body or first frame starts here).
    pub head_len: usize,
    /// `Content-Length`, if given.
    pub content_length: Option<usize>,
    /// `Sec-WebSocket-Accept`, if given.
    pub accept: Option<String>,
    /// `Sec-WebSocket-Protocol`, if given.
    pub protocol: Option<String>,
    /// `Sec-WebSocket-Extensions`, if given.
    pub extensions: Option<String>,
    /// Whether `Upgrade: websocket` and `Connection: upgrade` are present.
    pub upgrade_headers_ok: bool,
}

/// Parse a response head from the front of `buf`: `Ok(None)` while
/// incomplete. Bytes after the head (a body, or frames the server sent right
/// after its 101) are left for the caller.
pub fn parse_response(buf: &[u8], limits: &Limits) -> Result<Option<Response>, HandshakeError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= limits.max_request_bytes { Err(TOO_LARGE) } else { Ok(None) };
    };
    let head_len = end + 4;
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut storage);
    match resp.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Err(MALFORMED),
    }
    let h = resp.headers;
    let text = |name: &str| header(h, name).map(|v| String::from_utf8_lossy(v.trim_ascii()).into_owned());
    Ok(Some(Response {
        status: resp.code.unwrap_or(0),
        head_len,
        content_length: text("Content-Length").and_then(|v| v.parse().ok()),
        accept: text("Sec-WebSocket-Accept"),
        protocol: text("Sec-WebSocket-Protocol"),
        extensions: text("Sec-WebSocket-Extensions"),
        upgrade_headers_ok: header_has_token(h, "Upgrade", "websocket") && header_has_token(h, "Connection", "upgrade"),
    }))
}
