//! The HTTP/1.1 upgrade (RFC 6455 §4), parsed incrementally with httparse.
//!
//! httparse is not resumable, so [`RequestScanner`] first looks for the blank
//! line that ends the head — resuming each search where the previous one
//! stopped — and parses only once the whole head is present. The request size
//! and header count are capped ([`Limits`]), so a slow or endless request costs
//! bounded memory and a linear amount of scanning.
//!
//! [`route`] then applies the HTTP/1.1 rules Go's `net/http` applies before
//! any handler runs (`Host` present, once, well formed: RFC 9112 §3.2), routes
//! on the target's path (origin-form or absolute-form, RFC 9112 §3.2.1–3.2.2),
//! and applies gorilla/websocket's `Upgrader` checks in gorilla's order and
//! with its statuses and reason texts, plus the RFC 6455 rules gorilla leaves
//! out (HTTP/1.1 or higher, a 16-byte key, no repeated `Sec-WebSocket-Key`,
//! `Sec-WebSocket-Version` or `Origin`, no request body).
//!
//! [`accept`] is the whole server side after the head is complete: route,
//! refuse early data, negotiate permessage-deflate, write the response bytes.
//! It does no I/O; the reactor only sends what it wrote and switches phase.

use super::deflate::{negotiate, Agreed, DeflateConfig};
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
    /// A timestamp the caller keeps with the request; the scanner never
    /// reads it. The reactor stores when it accepted the connection (in
    /// nanoseconds since its clock started), for the handshake latency
    /// metric, here rather than in the connection: this state exists only
    /// while handshaking, and it fits in the room the Open phase's session
    /// takes anyway.
    pub started: u64,
}

/// 431 for a head that grows past the limits.
pub const TOO_LARGE: HandshakeError = HandshakeError { status: 431, reason: "request header fields too large" };
/// 400 for bytes that are not an HTTP/1.x request.
pub const MALFORMED: HandshakeError = HandshakeError { status: 400, reason: "malformed HTTP request" };
/// 400 for bytes that arrived after an upgrade request, before our 101
/// (RFC 6455 §4.1: the client waits for the 101). Never for bytes after a
/// home-page request: those are pipelined requests (see [`accept`]).
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

// The rules below are not gorilla's (Go's net/http or RFC 6455 enforce them);
// the HTTP-level ones use net/http's texts, the upgrade ones gorilla's style.

/// 400 for an HTTP/1.1 request without `Host` (RFC 9112 §3.2; net/http's text).
const NO_HOST: HandshakeError = HandshakeError { status: 400, reason: "missing required Host header" };
/// 400 for a request with more than one `Host` line (RFC 9112 §3.2; net/http's text).
const MANY_HOSTS: HandshakeError = HandshakeError { status: 400, reason: "too many Host headers" };
/// 400 for a `Host` value that is not `uri-host [ ":" port ]` (RFC 9112 §3.2; net/http's text).
const BAD_HOST: HandshakeError = HandshakeError { status: 400, reason: "malformed Host header" };
const OLD_HTTP: HandshakeError = HandshakeError {
    status: 400,
    reason: "websocket: the client is not using the websocket protocol: request version is not HTTP/1.1 or higher",
};
const REPEATED_VERSION: HandshakeError = HandshakeError {
    status: 400,
    reason: "websocket: not a websocket handshake: 'Sec-WebSocket-Version' header is repeated",
};
const REPEATED_ORIGIN: HandshakeError =
    HandshakeError { status: 400, reason: "websocket: not a websocket handshake: 'Origin' header is repeated" };
const REPEATED_KEY: HandshakeError = HandshakeError {
    status: 400,
    reason: "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header is repeated",
};
const HAS_BODY: HandshakeError = HandshakeError {
    status: 400,
    reason: "websocket: not a websocket handshake: request has a body (Content-Length or Transfer-Encoding)",
};

impl RequestScanner {
    /// Look for the end of the request head in `buf` (which holds every byte
    /// received so far). Returns the head length once `\r\n\r\n` is present,
    /// `Ok(None)` while it is not, or 431 once the head would exceed
    /// `limits.max_request_bytes`. Bytes after the head are not looked at:
    /// hand them to [`accept`] as `rest`, which decides whether they are early
    /// data (after an upgrade request) or pipelined requests (after `GET /`).
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

/// How many header lines are named `name` (ASCII case-insensitive).
fn header_count(headers: &[httparse::Header<'_>], name: &str) -> usize {
    headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count()
}

/// Whether `v` is a valid `Host` value: RFC 9112 §3.2 `Host = uri-host [ ":"
/// port ]`, i.e. RFC 3986 reg-name / IPv4 / IP-literal characters, `:` and
/// digits. Empty is valid: RFC 9110 §7.2 has clients send an empty `Host` for
/// a target without an authority.
fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// Split a request target into the path we route on and, for the
/// absolute-form, its authority (host and port).
///
/// RFC 9112 §3.2.2: "When an origin server receives a request with an
/// absolute-form of request-target, the origin server MUST ignore the received
/// Host header field (if any) and instead use the host information of the
/// request-target." An empty path means `/` (RFC 9110 §4.2.1 and §4.2.3).
/// The asterisk- and authority-forms are returned as the path (and so get 404).
fn split_target(target: &str) -> Result<(&str, Option<&[u8]>), HandshakeError> {
    fn strip(p: &str) -> &str {
        &p[..p.find(['?', '#']).unwrap_or(p.len())]
    }
    if target.starts_with('/') {
        return Ok((strip(target), None));
    }
    let Some(colon) = target.find("://") else {
        return Ok((target, None));
    };
    // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    let scheme = &target.as_bytes()[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let rest = &target[colon + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest.as_bytes()[..end];
    // RFC 9110 §4.2.1: a recipient "MUST reject as invalid" an http URI with
    // an empty host; §4.2.4: userinfo ("@") is treated as an error.
    if !scheme_ok || authority.is_empty() || authority.contains(&b'@') || !valid_host(authority) {
        return Err(MALFORMED);
    }
    let path = strip(&rest[end..]);
    Ok((if path.is_empty() { "/" } else { path }, Some(authority)))
}

/// Whether the request declares a body: any `Transfer-Encoding`, or a
/// `Content-Length` other than 0 (RFC 9112 §6.3).
fn has_body(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("Transfer-Encoding")
            || (h.name.eq_ignore_ascii_case("Content-Length")
                && h.value.split(|&b| b == b',').any(|n| n.trim_ascii() != b"0"))
    })
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
/// the blank line) asks for, applying every check, in this order:
///
/// 1. The `Host` rules Go's `net/http` applies before any handler: present
///    (on HTTP/1.1), at most once, well formed — else 400.
/// 2. Routing on the target's path (origin-form `/echo?x`, or absolute-form
///    `http://host/echo`): `/` is the home page (GET only, else 405), `/echo`
///    the upgrade, anything else 404.
/// 3. gorilla's `Upgrader` checks in gorilla's order — `Connection`,
///    `Upgrade`, method, `Sec-WebSocket-Version`, origin, key — each followed
///    by the RFC 6455 rule gorilla leaves out for the same item: HTTP/1.1 or
///    higher after the method, `Sec-WebSocket-Version` and `Origin` not
///    repeated after their checks, and the key 16 bytes and not repeated.
///    Last, the request must not declare a body.
///
/// A new rule comes after the existing check on the same item, so every
/// request the existing checks rejected keeps its status and reason text.
pub fn route(head: &[u8], policy: &UpgradePolicy, limits: &Limits) -> Result<Route, HandshakeError> {
    let mut storage = [httparse::EMPTY_HEADER; 256];
    let slots = &mut storage[..limits.max_headers.min(256)];
    let mut req = httparse::Request::new(slots);
    match req.parse(head) {
        // httparse also ends a head at a bare `\n\n`; bytes between that and
        // the `\r\n\r\n` the scanner found would be neither headers nor
        // frames, so the two ends must agree.
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(httparse::Status::Complete(_)) => return Err(MALFORMED),
        Ok(httparse::Status::Partial) => return Err(MALFORMED),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_LARGE),
        Err(_) => return Err(MALFORMED),
    }
    let method = req.method.unwrap_or("");
    // httparse accepts only HTTP/1.0 (0) and HTTP/1.1 (1).
    let http_1_1 = req.version == Some(1);
    let h = req.headers;

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field and
    // to any request message that contains more than one Host header field
    // line or a Host header field with an invalid field value." (HTTP/1.0
    // did not require Host, so an HTTP/1.0 `GET /` without it is served.)
    let host = header(h, "Host");
    match header_count(h, "Host") {
        0 if http_1_1 => return Err(NO_HOST),
        0 | 1 => {}
        _ => return Err(MANY_HOSTS),
    }
    if host.is_some_and(|v| !valid_host(v.trim_ascii())) {
        return Err(BAD_HOST);
    }
    let (path, authority) = split_target(req.path.unwrap_or(""))?;
    // The host the origin is compared with: the target's in absolute-form.
    let host = authority.or(host);
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
    // RFC 6455 §4.1: "The method of the request MUST be GET, and the HTTP
    // version MUST be at least 1.1." §4.2.1: a handshake that does not match
    // ("An HTTP/1.1 or higher GET request") gets "an HTTP response with an
    // appropriate error code (such as 400 Bad Request)". We answer 400 (not
    // 505: HTTP/1.0 is a version we speak, just not one that can upgrade).
    if !http_1_1 {
        return Err(OLD_HTTP);
    }
    if !header_has_token(h, "Sec-WebSocket-Version", "13") {
        return Err(BAD_VERSION);
    }
    // RFC 6455 §11.3.5: "The |Sec-WebSocket-Version| header field MUST NOT
    // appear more than once in an HTTP request".
    if header_count(h, "Sec-WebSocket-Version") > 1 {
        return Err(REPEATED_VERSION);
    }
    if !origin_allowed(&policy.origin, header(h, "Origin"), host) {
        return Err(BAD_ORIGIN);
    }
    // RFC 6454 §7.3: "The user agent MUST NOT include more than one Origin
    // header field in any HTTP request." With two, the origin we checked may
    // not be the one another hop acts on.
    if header_count(h, "Origin") > 1 {
        return Err(REPEATED_ORIGIN);
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
    // RFC 6455 §11.3.1: "The |Sec-WebSocket-Key| header field MUST NOT appear
    // more than once in an HTTP request."
    if header_count(h, "Sec-WebSocket-Key") > 1 {
        return Err(REPEATED_KEY);
    }
    // After the request the client sends only frames (RFC 6455 §4.1: it waits
    // for the 101), so a declared body could only be read as frames — or, by
    // another hop, as the body. RFC 9112 §6.3 calls Content-Length together
    // with Transfer-Encoding a possible smuggling attempt; we refuse any body.
    if has_body(h) {
        return Err(HAS_BODY);
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

/// What [`accept`] decided; the response bytes are already in its `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// `GET /`: a `200` with the page and `Connection: close` was written.
    /// Send it, then close gracefully; bytes after the head (pipelined
    /// requests) are discarded, never answered (see [`accept`]).
    Home,
    /// A valid upgrade with nothing after the head: the `101` was written.
    /// The connection is now a WebSocket (server role).
    Upgrade {
        /// The permessage-deflate agreement, if one was reached: the caller
        /// allows RSV1 on incoming frames and sets up a codec for it.
        deflate: Option<Agreed>,
        /// Index into [`UpgradePolicy::subprotocols`] of the subprotocol
        /// named in the `101`, if any.
        protocol: Option<usize>,
    },
}

/// Answer a complete request head: the server side of the opening handshake
/// after [`RequestScanner::feed`] has found the head, with no I/O.
///
/// - `head`: the request up to and including its blank line.
/// - `rest`: whatever was received after the head (only its emptiness
///   matters). After an upgrade request that must be nothing: RFC 6455 §4.1
///   has the client wait for the 101 before sending frames, so bytes here
///   are refused with [`EARLY_DATA`] (gorilla checks this after its header
///   checks, and so do we: an invalid request gets its own error). After a
///   home-page request they are pipelined requests, and not an error.
/// - `home_page`: the body served at `GET /` as `text/html; charset=utf-8`.
/// - `out`: the response is appended here — only on `Ok`; on `Err` nothing
///   is written, and the caller answers with [`write_error`] as it does for
///   the scanner's errors.
///
/// What the server does with the result:
/// - `Ok(Accepted::Home)`: send `out`, then close gracefully and discard
///   `rest` and everything that still arrives. The response says
///   `Connection: close`, and RFC 9112 §9.6 then lets us ignore pipelined
///   requests: "The server MUST NOT process any further requests received on
///   that connection." Graceful means half-close after the page is flushed
///   and keep reading (and dropping) until the peer closes or a timeout: a
///   socket closed with unread input sends a RST that can destroy the page
///   before the client reads it (RFC 9112 §9.6, "Tear-down").
/// - `Ok(Accepted::Upgrade { deflate, .. })`: send `out` and switch the
///   connection to a server-role session; with `Some(agreed)`, allow RSV1 and
///   create the permessage-deflate codec from `agreed`.
/// - `Err(e)`: `write_error(out, &e)`, send it, close gracefully.
pub fn accept(
    head: &[u8],
    rest: &[u8],
    policy: &UpgradePolicy,
    deflate: &DeflateConfig,
    limits: &Limits,
    home_page: &[u8],
    out: &mut Vec<u8>,
) -> Result<Accepted, HandshakeError> {
    let up = match route(head, policy, limits)? {
        Route::Home => {
            write_response(out, 200, "text/html; charset=utf-8", &[], home_page);
            return Ok(Accepted::Home);
        }
        Route::Upgrade(up) => up,
    };
    if !rest.is_empty() {
        return Err(EARLY_DATA);
    }
    let agreed = match up.extensions.as_deref() {
        Some(offers) => negotiate(offers, deflate)?,
        None => None,
    };
    write_switching(out, &up, policy, agreed.as_ref().map(|(_, resp)| resp.as_str()), &[]);
    Ok(Accepted::Upgrade { deflate: agreed.map(|(a, _)| a), protocol: up.protocol })
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
    use crate::proto::deflate::CompressionMode;

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

    /// `GOOD` with `line` added as the last header.
    fn with_header(line: &str) -> String {
        GOOD.replace("\r\n\r\n", &format!("\r\n{line}\r\n\r\n"))
    }

    #[test]
    fn rfc9112_3_2_host_missing_repeated_or_malformed_is_400_on_every_path() {
        for target in ["/", "/echo", "/nope"] {
            let req = GOOD.replace("GET /echo", &format!("GET {target}"));
            let no_host = req.replace("Host: localhost:8080\r\n", "");
            assert_eq!(route_str(&no_host), Err(NO_HOST), "{target}");
            let two = req.replace("Host: localhost:8080\r\n", "Host: localhost:8080\r\nHost: evil.example\r\n");
            assert_eq!(route_str(&two), Err(MANY_HOSTS), "{target}");
            let same_twice = req.replace("Host: localhost:8080\r\n", "Host: a\r\nhost: a\r\n");
            assert_eq!(route_str(&same_twice), Err(MANY_HOSTS), "{target}");
            let bad = req.replace("Host: localhost:8080", "Host: local host");
            assert_eq!(route_str(&bad), Err(BAD_HOST), "{target}");
        }
        // Empty (RFC 9110 §7.2) and IPv6 literal hosts are valid.
        assert!(route_str(&GOOD.replace("Host: localhost:8080", "Host: [::1]:8080")).is_ok());
        assert_eq!(route_str("GET / HTTP/1.1\r\nHost:\r\n\r\n"), Ok(Route::Home));
        // HTTP/1.0 did not require Host; two are still ambiguous.
        assert_eq!(route_str("GET / HTTP/1.0\r\n\r\n"), Ok(Route::Home));
        assert_eq!(route_str("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), Err(MANY_HOSTS));
    }

    #[test]
    fn rfc6455_4_1_upgrade_over_http_1_0_is_400_after_gorillas_method_check() {
        let old = GOOD.replace("HTTP/1.1", "HTTP/1.0");
        let err = route_str(&old).unwrap_err();
        assert_eq!(err, OLD_HTTP);
        assert_eq!(err.status, 400);
        // Checked after Connection, Upgrade and method, before the version header.
        assert_eq!(route_str(&old.replace("keep-alive, Upgrade", "close")), Err(BAD_CONNECTION));
        assert_eq!(route_str(&old.replace("GET /echo", "POST /echo")), Err(BAD_METHOD));
        assert_eq!(route_str(&old.replace("Version: 13", "Version: 8")), Err(OLD_HTTP));
    }

    #[test]
    fn rfc6455_11_3_repeated_key_version_or_origin_is_400() {
        let key2 = with_header("Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==");
        assert_eq!(route_str(&key2), Err(REPEATED_KEY));
        let key_same = with_header("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(route_str(&key_same), Err(REPEATED_KEY));
        assert_eq!(route_str(&with_header("Sec-WebSocket-Version: 8")), Err(REPEATED_VERSION));
        assert_eq!(route_str(&with_header("Sec-WebSocket-Version: 13")), Err(REPEATED_VERSION));
        let origins = with_header("Origin: http://localhost:8080\r\nOrigin: http://evil.example");
        assert_eq!(route_str(&origins), Err(REPEATED_ORIGIN));
        // The existing check on the same item still answers first.
        let bad_first = GOOD
            .replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")
            .replace("\r\n\r\n", "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        assert_eq!(route_str(&bad_first), Err(BAD_KEY));
        let evil_first = with_header("Origin: http://evil.example\r\nOrigin: http://localhost:8080");
        assert_eq!(route_str(&evil_first), Err(BAD_ORIGIN));
        // Lists that may repeat still may.
        let lists = with_header("Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\nConnection: Upgrade");
        assert!(route_str(&lists).is_ok());
    }

    #[test]
    fn upgrade_declaring_a_body_is_400() {
        for line in ["Content-Length: 5", "Transfer-Encoding: chunked", "Content-Length: 0, 3"] {
            assert_eq!(route_str(&with_header(line)), Err(HAS_BODY), "{line}");
        }
        assert!(route_str(&with_header("Content-Length: 0")).is_ok());
        // The home page closes after its answer: a body there is harmless.
        assert_eq!(route_str("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"), Ok(Route::Home));
    }

    #[test]
    fn rfc9112_3_2_2_absolute_form_routes_on_its_path() {
        let up = |target: &str| route_str(&GOOD.replace("GET /echo", &format!("GET {target}")));
        for t in ["http://localhost:8080/echo", "ws://localhost:8080/echo?x=1", "HTTP://h/echo"] {
            assert!(matches!(up(t), Ok(Route::Upgrade(_))), "{t}");
        }
        for t in ["http://localhost:8080/", "http://localhost:8080", "http://h?q"] {
            assert_eq!(up(t), Ok(Route::Home), "{t}");
        }
        assert_eq!(up("http://localhost:8080/nope"), Err(NOT_FOUND));
        assert_eq!(up("http://h/echo/"), Err(NOT_FOUND));
        for t in ["http:///echo", "http://user@h/echo", "1http://h/echo", "://h/echo", "http://h h/echo"] {
            assert_eq!(up(t), Err(MALFORMED), "{t}");
        }
        // Asterisk- and authority-form are not resources we serve.
        assert_eq!(up("*"), Err(NOT_FOUND));
        assert_eq!(up("localhost:8080"), Err(NOT_FOUND));
    }

    #[test]
    fn rfc9112_3_2_2_same_origin_compares_with_the_absolute_targets_host() {
        let req = |target: &str, host: &str| {
            GOOD.replace("GET /echo", &format!("GET {target}"))
                .replace("Host: localhost:8080", &format!("Host: {host}\r\nOrigin: http://localhost:8080"))
        };
        // The Host header is ignored for the comparison...
        assert!(route_str(&req("http://localhost:8080/echo", "other.example")).is_ok());
        assert_eq!(route_str(&req("http://evil.example/echo", "localhost:8080")), Err(BAD_ORIGIN));
        // ...but is still required and checked (RFC 9112 §3.2).
        let no_host = req("http://localhost:8080/echo", "x").replace("Host: x\r\n", "");
        assert_eq!(route_str(&no_host), Err(NO_HOST));
    }

    #[test]
    fn head_ending_early_at_a_bare_lf_pair_is_400() {
        // httparse stops at "\n\n"; the scanner's head goes on to "\r\n\r\n".
        let req = "GET / HTTP/1.1\nHost: x\n\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(route_str(req), Err(MALFORMED));
        // A bare LF ending a header line is still accepted (RFC 9112 §2.2).
        assert_eq!(route_str("GET / HTTP/1.1\nHost: x\r\n\r\n"), Ok(Route::Home));
    }

    const PAGE: &[u8] = b"<!doctype html><p>page</p>";

    fn accept_str(head: &str, rest: &[u8], deflate: &DeflateConfig) -> (Result<Accepted, HandshakeError>, Vec<u8>) {
        let mut out = b"before".to_vec();
        let r = accept(head.as_bytes(), rest, &UpgradePolicy::default(), deflate, &Limits::default(), PAGE, &mut out);
        assert!(out.starts_with(b"before"), "accept must append, not replace");
        (r, out.split_off(6))
    }

    #[test]
    fn accept_home_writes_the_page_and_ignores_pipelined_requests() {
        let home = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut page = Vec::new();
        write_response(&mut page, 200, "text/html; charset=utf-8", &[], PAGE);
        for rest in [&b""[..], home.as_bytes(), b"garbage"] {
            let (r, out) = accept_str(home, rest, &DeflateConfig::default());
            assert_eq!(r, Ok(Accepted::Home));
            assert_eq!(out, page);
        }
        let s = String::from_utf8(page).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n") && s.contains("Connection: close\r\n"), "{s}");
        assert!(s.contains(&format!("Content-Length: {}\r\n", PAGE.len())), "{s}");
    }

    #[test]
    fn accept_upgrade_writes_101_with_the_agreed_extension() {
        let (r, out) = accept_str(GOOD, b"", &DeflateConfig::default());
        assert_eq!(r, Ok(Accepted::Upgrade { deflate: None, protocol: None }));
        let Ok(Route::Upgrade(up)) = route_str(GOOD) else { panic!() };
        let mut expected = Vec::new();
        write_switching(&mut expected, &up, &UpgradePolicy::default(), None, &[]);
        assert_eq!(out, expected);

        let offer = with_header("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits");
        let (r, out) = accept_str(&offer, b"", &DeflateConfig::default());
        let (agreed, resp) = negotiate("permessage-deflate; client_max_window_bits", &DeflateConfig::default())
            .unwrap()
            .expect("default config agrees");
        assert_eq!(r, Ok(Accepted::Upgrade { deflate: Some(agreed), protocol: None }));
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 101 "), "{s}");
        assert!(s.contains(&format!("\r\nSec-WebSocket-Extensions: {resp}\r\n")), "{s}");

        let off = DeflateConfig { mode: CompressionMode::Off, ..DeflateConfig::default() };
        let (r, out) = accept_str(&offer, b"", &off);
        assert_eq!(r, Ok(Accepted::Upgrade { deflate: None, protocol: None }));
        assert!(!String::from_utf8(out).unwrap().contains("Sec-WebSocket-Extensions"));
    }

    #[test]
    fn accept_upgrade_carries_the_chosen_subprotocol() {
        let policy = UpgradePolicy { subprotocols: vec!["chat".into(), "superchat".into()], ..Default::default() };
        let req = with_header("Sec-WebSocket-Protocol: superchat");
        let mut out = Vec::new();
        let r = accept(req.as_bytes(), b"", &policy, &DeflateConfig::default(), &Limits::default(), PAGE, &mut out);
        assert_eq!(r, Ok(Accepted::Upgrade { deflate: None, protocol: Some(1) }));
        assert!(String::from_utf8(out).unwrap().contains("\r\nSec-WebSocket-Protocol: superchat\r\n"));
    }

    #[test]
    fn accept_refuses_early_data_only_after_a_valid_upgrade_and_writes_nothing_on_error() {
        let (r, out) = accept_str(GOOD, b"\x81\x80", &DeflateConfig::default());
        assert_eq!(r, Err(EARLY_DATA));
        assert!(out.is_empty());
        // An invalid request gets its own error, as in gorilla (early data is
        // checked after the headers).
        let (r, out) = accept_str(&GOOD.replace("/echo", "/nope"), b"\x81\x80", &DeflateConfig::default());
        assert_eq!(r, Err(NOT_FOUND));
        assert!(out.is_empty());
        // A malformed extension offer is the negotiation's 400.
        let bad_ext = with_header("Sec-WebSocket-Extensions: permessage-deflate; =");
        let (r, out) = accept_str(&bad_ext, b"", &DeflateConfig::default());
        let e = negotiate("permessage-deflate; =", &DeflateConfig::default()).unwrap_err();
        assert_eq!(r, Err(e));
        assert_eq!(e.status, 400);
        assert!(out.is_empty());
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
