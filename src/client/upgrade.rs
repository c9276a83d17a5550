//! The client's checks of the server's 101 response (RFC 6455 §4.1, the
//! numbered list after "If the status code received from the server is not
//! 101"). Pure: bytes and our offer in, the agreement or an error out.

use super::ClientError;
use crate::proto::deflate::{self, Agreed};
use crate::proto::handshake::{accept_key, Response};
use crate::proto::HandshakeError;
use std::fmt;

/// Header lines we read from a 101 head at most; as many as
/// [`parse_response`](crate::proto::handshake::parse_response) accepts.
const MAX_RESPONSE_HEADERS: usize = 64;

/// What a 101 response broke of RFC 6455 §4.1 (the accept key has its own
/// [`ClientError::BadAccept`]). Each variant carries what the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    /// "If the response lacks an |Upgrade| header field or the |Upgrade|
    /// header field contains a value that is not an ASCII case-insensitive
    /// match for the value "websocket", the client MUST _Fail the WebSocket
    /// Connection_." The header's value, if it was there.
    Upgrade(Option<String>),
    /// "If the response lacks a |Connection| header field or the
    /// |Connection| header field doesn't contain a token that is an ASCII
    /// case-insensitive match for the value "Upgrade", the client MUST _Fail
    /// the WebSocket Connection_." The header's value, if it was there.
    Connection(Option<String>),
    /// "If the response includes a |Sec-WebSocket-Protocol| header field and
    /// this header field indicates the use of a subprotocol that was not
    /// present in the client's handshake [...], the client MUST _Fail the
    /// WebSocket Connection_." More than one value counts as one we did not
    /// offer: the server must select one.
    Protocol {
        /// The server's `Sec-WebSocket-Protocol`, all values joined.
        chosen: String,
        /// What we offered (empty: nothing).
        offered: Vec<String>,
    },
    /// "If the response includes a |Sec-WebSocket-Extensions| header field
    /// and this header field indicates the use of an extension that was not
    /// present in the client's handshake [...], the client MUST _Fail the
    /// WebSocket Connection_."
    Extension {
        /// The extension's name.
        name: String,
        /// The names we offered (empty: nothing).
        offered: Vec<String>,
    },
    /// The server accepted one extension twice (each can be in use once).
    DuplicateExtension(String),
    /// `Sec-WebSocket-Extensions` does not follow the RFC 6455 §9.1 grammar.
    ExtensionSyntax(String),
    /// permessage-deflate with parameters we did not ask for or cannot use
    /// (RFC 7692 §7.1: the client then "MUST _Fail the WebSocket
    /// Connection_").
    DeflateParams(String),
}

/// `"a", "b"`, or `none`.
fn quoted_list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Upgrade(None) => f.write_str("the 101 response has no \"Upgrade: websocket\" header"),
            UpgradeError::Upgrade(Some(v)) => write!(f, "the 101 response has \"Upgrade: {v}\", not websocket"),
            UpgradeError::Connection(None) => f.write_str("the 101 response has no \"Connection: upgrade\" header"),
            UpgradeError::Connection(Some(v)) => {
                write!(f, "the 101 response has \"Connection: {v}\", without the upgrade token")
            }
            UpgradeError::Protocol { chosen, offered } => write!(
                f,
                "the server chose subprotocol {chosen:?}, which we did not offer (we offered {})",
                quoted_list(offered)
            ),
            UpgradeError::Extension { name, offered } => write!(
                f,
                "the server accepted extension {name:?}, which we did not offer (we offered {})",
                quoted_list(offered)
            ),
            UpgradeError::DuplicateExtension(name) => write!(f, "the server accepted extension {name:?} twice"),
            UpgradeError::ExtensionSyntax(v) => {
                write!(f, "malformed Sec-WebSocket-Extensions in the 101 response: {v:?}")
            }
            UpgradeError::DeflateParams(v) => {
                write!(f, "the server's permessage-deflate answer {v:?} has parameters we cannot use")
            }
        }?;
        f.write_str(" (RFC 6455 §4.1)")
    }
}

impl std::error::Error for UpgradeError {}

/// What we sent in the upgrade request that the answer is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Offer<'a> {
    /// Our `Sec-WebSocket-Key`.
    pub key: &'a str,
    /// The subprotocols we offered.
    pub protocols: &'a [String],
    /// Our `Sec-WebSocket-Extensions` value, if we sent one.
    pub extensions: Option<&'a str>,
}

/// A 101 that passed every check: what was agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Agreement {
    /// The subprotocol the server selected (one we offered).
    pub protocol: Option<String>,
    /// The server's `Sec-WebSocket-Extensions`, every header joined with
    /// `", "` (each extension named in it was offered).
    pub extensions: Option<String>,
    /// The permessage-deflate parameters, if it was agreed.
    pub deflate: Option<Agreed>,
}

/// Every value of the headers this check reads, in order of appearance.
#[derive(Debug, Default)]
struct Fields {
    upgrade: Vec<String>,
    connection: Vec<String>,
    protocol: Vec<String>,
    extensions: Vec<String>,
}

/// Collect [`Fields`] from a complete response head.
fn fields(head: &[u8]) -> Result<Fields, ClientError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(ClientError::Handshake(HandshakeError { status: 101, reason: "malformed 101 response head" }))
        }
    }
    let mut f = Fields::default();
    for h in resp.headers.iter() {
        let list = match h.name.to_ascii_lowercase().as_str() {
            "upgrade" => &mut f.upgrade,
            "connection" => &mut f.connection,
            "sec-websocket-protocol" => &mut f.protocol,
            "sec-websocket-extensions" => &mut f.extensions,
            _ => continue,
        };
        list.push(String::from_utf8_lossy(h.value.trim_ascii()).into_owned());
    }
    Ok(f)
}

/// Whether a comma-separated token list across `values` holds `token`
/// (ASCII case-insensitive).
fn has_token(values: &[String], token: &str) -> bool {
    values.iter().flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `None` if no header had this name, else every value joined with `", "`.
fn joined(values: &[String]) -> Option<String> {
    (!values.is_empty()).then(|| values.join(", "))
}

/// Check a 101 response (`head` is its bytes, `resp` its parse) against what
/// we offered, in RFC 6455 §4.1's order: Upgrade, Connection,
/// Sec-WebSocket-Accept, Sec-WebSocket-Extensions, Sec-WebSocket-Protocol.
pub(super) fn check(head: &[u8], resp: &Response, offer: &Offer<'_>) -> Result<Agreement, ClientError> {
    let f = fields(head)?;
    if !resp.upgrade_headers_ok {
        let e = if has_token(&f.upgrade, "websocket") {
            UpgradeError::Connection(joined(&f.connection))
        } else {
            UpgradeError::Upgrade(joined(&f.upgrade))
        };
        return Err(ClientError::Upgrade(e));
    }
    if resp.accept.as_deref().map(str::as_bytes) != Some(&accept_key(offer.key.as_bytes())[..]) {
        return Err(ClientError::BadAccept);
    }
    let extensions = joined(&f.extensions);
    let deflate = match &extensions {
        Some(answer) => check_extensions(answer, offer.extensions).map_err(ClientError::Upgrade)?,
        None => None,
    };
    let protocol = joined(&f.protocol);
    if let Some(chosen) = &protocol {
        if !offer.protocols.iter().any(|p| p == chosen) {
            let e = UpgradeError::Protocol { chosen: chosen.clone(), offered: offer.protocols.to_vec() };
            return Err(ClientError::Upgrade(e));
        }
    }
    Ok(Agreement { protocol, extensions, deflate })
}

/// Every extension in `answer` must be named in our offer, once; a
/// permessage-deflate among them must have parameters we can use.
fn check_extensions(answer: &str, offer: Option<&str>) -> Result<Option<Agreed>, UpgradeError> {
    // Our own offer is well-formed when we built it; a malformed one given
    // through `ClientOptions::extensions` offers nothing.
    let offers = offer.and_then(|o| deflate::parse_extensions(o).ok()).unwrap_or_default();
    let accepted = deflate::parse_extensions(answer).map_err(|_| UpgradeError::ExtensionSyntax(answer.to_string()))?;
    let mut agreed = None;
    for (i, (name, params)) in accepted.iter().enumerate() {
        let Some((_, offered_params)) = offers.iter().find(|(n, _)| n == name) else {
            let offered = offers.into_iter().map(|(n, _)| n).collect();
            return Err(UpgradeError::Extension { name: name.clone(), offered });
        };
        if accepted[..i].iter().any(|(n, _)| n == name) {
            return Err(UpgradeError::DuplicateExtension(name.clone()));
        }
        if name == "permessage-deflate" {
            let element = std::iter::once(name.clone())
                .chain(params.iter().map(|(p, v)| match v {
                    Some(v) => format!("{p}={v}"),
                    None => p.clone(),
                }))
                .collect::<Vec<_>>()
                .join("; ");
            // RFC 7692 §7.1.2.2: "If a received extension negotiation
            // response includes the "client_max_window_bits" extension
            // parameter, and the received extension negotiation offer doesn't
            // have it, the client MUST _Fail the WebSocket Connection_."
            let unasked = |p: &str| params.iter().any(|(q, _)| q == p) && !offered_params.iter().any(|(q, _)| q == p);
            match deflate::client_agreed(&element) {
                Some(a) if !unasked("client_max_window_bits") => agreed = Some(a),
                _ => return Err(UpgradeError::DeflateParams(element)),
            }
        }
    }
    Ok(agreed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::parse_response;
    use crate::proto::Limits;

    /// The RFC 6455 §1.3 sample key and its accept value.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn check_head(extra: &str, protocols: &[&str], extensions: Option<&str>) -> Result<Agreement, ClientError> {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        );
        check_raw(&head, protocols, extensions)
    }

    fn check_raw(head: &str, protocols: &[&str], extensions: Option<&str>) -> Result<Agreement, ClientError> {
        let resp = parse_response(head.as_bytes(), &Limits::default()).unwrap().unwrap();
        let protocols: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
        check(head.as_bytes(), &resp, &Offer { key: KEY, protocols: &protocols, extensions })
    }

    fn upgrade_error(r: Result<Agreement, ClientError>) -> UpgradeError {
        match r {
            Err(ClientError::Upgrade(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc_sample_answer_passes_with_nothing_agreed() {
        let a = check_head("", &[], None).unwrap();
        assert_eq!(a, Agreement { protocol: None, extensions: None, deflate: None });
    }

    #[test]
    fn upgrade_and_connection_tokens_match_case_insensitively_in_lists() {
        let head = format!(
            "HTTP/1.1 101 x\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, UPGRADE\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        assert!(check_raw(&head, &[], None).is_ok());
    }

    #[test]
    fn rfc6455_4_1_missing_or_wrong_upgrade_fails() {
        let no_upgrade = format!("HTTP/1.1 101 x\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
        assert_eq!(upgrade_error(check_raw(&no_upgrade, &[], None)), UpgradeError::Upgrade(None));
        let h2c =
            format!("HTTP/1.1 101 x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
        assert_eq!(upgrade_error(check_raw(&h2c, &[], None)), UpgradeError::Upgrade(Some("h2c".into())));
    }

    #[test]
    fn rfc6455_4_1_missing_or_wrong_connection_fails() {
        let none = format!("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
        assert_eq!(upgrade_error(check_raw(&none, &[], None)), UpgradeError::Connection(None));
        let ka = format!(
            "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        assert_eq!(upgrade_error(check_raw(&ka, &[], None)), UpgradeError::Connection(Some("keep-alive".into())));
    }

    #[test]
    fn wrong_or_missing_accept_fails_after_the_upgrade_headers() {
        let wrong = "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        assert!(matches!(check_raw(wrong, &[], None), Err(ClientError::BadAccept)));
        let missing = "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert!(matches!(check_raw(missing, &[], None), Err(ClientError::BadAccept)));
    }

    #[test]
    fn rfc6455_4_1_subprotocol_must_be_one_we_offered() {
        let chat = "Sec-WebSocket-Protocol: chat\r\n";
        assert_eq!(check_head(chat, &["superchat", "chat"], None).unwrap().protocol.as_deref(), Some("chat"));
        assert_eq!(
            upgrade_error(check_head(chat, &[], None)),
            UpgradeError::Protocol { chosen: "chat".into(), offered: vec![] }
        );
        assert_eq!(
            upgrade_error(check_head(chat, &["superchat"], None)),
            UpgradeError::Protocol { chosen: "chat".into(), offered: vec!["superchat".into()] }
        );
        // Names are compared exactly, and the server must pick one.
        assert!(check_head("Sec-WebSocket-Protocol: Chat\r\n", &["chat"], None).is_err());
        assert!(check_head("Sec-WebSocket-Protocol: chat, superchat\r\n", &["superchat", "chat"], None).is_err());
        let twice = "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n";
        assert!(check_head(twice, &["chat"], None).is_err());
    }

    #[test]
    fn rfc6455_4_1_extension_must_be_one_we_offered() {
        let pmd = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
        assert_eq!(
            upgrade_error(check_head(pmd, &[], None)),
            UpgradeError::Extension { name: "permessage-deflate".into(), offered: vec![] }
        );
        let offer = Some(deflate::client_offer());
        assert_eq!(
            upgrade_error(check_head("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", &[], offer)),
            UpgradeError::Extension {
                name: "x-webkit-deflate-frame".into(),
                offered: vec!["permessage-deflate".into()]
            }
        );
        // A second header line counts as much as the first.
        let second = "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: x-foo\r\n";
        assert_eq!(
            upgrade_error(check_head(second, &[], offer)),
            UpgradeError::Extension { name: "x-foo".into(), offered: vec!["permessage-deflate".into()] }
        );
        let twice = "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n";
        assert_eq!(
            upgrade_error(check_head(twice, &[], offer)),
            UpgradeError::DuplicateExtension("permessage-deflate".into())
        );
        let bad = "Sec-WebSocket-Extensions: permessage-deflate; =\r\n";
        assert!(matches!(upgrade_error(check_head(bad, &[], offer)), UpgradeError::ExtensionSyntax(_)));
    }

    #[test]
    fn offered_permessage_deflate_is_agreed_with_its_parameters() {
        let offer = Some(deflate::client_offer());
        let ok =
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n";
        let a = check_head(ok, &[], offer).unwrap();
        let d = a.deflate.unwrap();
        assert!(d.server_no_context_takeover && !d.client_no_context_takeover);
        assert_eq!((d.server_max_window_bits, d.client_max_window_bits), (15, 10));
        assert_eq!(
            a.extensions.as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")
        );
        let odd = "Sec-WebSocket-Extensions: permessage-deflate; x_param\r\n";
        assert_eq!(
            upgrade_error(check_head(odd, &[], offer)),
            UpgradeError::DeflateParams("permessage-deflate; x_param".into())
        );
        // A window for our compressor we did not say we can use.
        let window = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n";
        assert_eq!(
            upgrade_error(check_head(window, &[], Some("permessage-deflate"))),
            UpgradeError::DeflateParams("permessage-deflate; client_max_window_bits=10".into())
        );
        assert!(check_head(window, &[], offer).is_ok());
    }

    #[test]
    fn messages_name_what_the_server_sent_and_the_rfc() {
        let e = UpgradeError::Protocol { chosen: "mqtt".into(), offered: vec![] };
        assert_eq!(
            e.to_string(),
            "the server chose subprotocol \"mqtt\", which we did not offer (we offered none) (RFC 6455 §4.1)"
        );
        let e = UpgradeError::Extension { name: "x".into(), offered: vec!["permessage-deflate".into()] };
        assert!(e.to_string().contains("(we offered \"permessage-deflate\")"), "{e}");
        assert!(UpgradeError::Upgrade(None).to_string().contains("no \"Upgrade: websocket\" header"));
    }
}
