//! The `ws://` or `wss://` URL the client connects to (RFC 6455 §3), parsed by the `url`
//! crate (the WHATWG URL Standard, as browsers parse `new WebSocket(url)`).

use super::ClientError;
use std::io;
use std::net::SocketAddr;
use url::{Position, Url};

/// A parsed `ws://host[:port][/path][?query]` (or `wss://`, over TLS) URL.
///
/// Other schemes are refused with a clear reason. RFC 6455 §3: "Fragment
/// identifiers are meaningless in the context of WebSocket URIs and MUST NOT
/// be used on these URIs", so a `#fragment` is refused too, and so are
/// credentials (`user:pass@`), which the handshake has no place for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// The parsed URL; its scheme is `ws`, so (a special scheme) it has a
    /// non-empty host.
    url: Url,
}

impl WsUrl {
    /// Parse `s`, or say why it is not a `ws://` URL we can use.
    pub fn parse(s: &str) -> Result<WsUrl, ClientError> {
        let bad = |reason: &str| ClientError::Url { url: s.to_string(), reason: reason.to_string() };
        let url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "ws" | "wss" => {}
            other => return Err(bad(&format!("scheme {other:?} is not ws or wss"))),
        }
        if url.fragment().is_some() {
            return Err(bad("a fragment (#...) is not allowed in a WebSocket URL (RFC 6455 §3)"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials (user@) are not supported"));
        }
        Ok(WsUrl { url })
    }

    /// `host:port`, the port always written (80 when the URL has none): the
    /// `Host` header we send and the address named in error messages. An IPv6
    /// host keeps its brackets.
    pub fn authority(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        format!("{host}:{}", self.url.port_or_known_default().unwrap_or(80))
    }

    /// `wss://`: the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "wss"
    }

    /// The host name or address alone (the TLS server name).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The request target: the path (`/` when the URL has none) and the
    /// query, if any, as RFC 6455 §3 builds the "resource name".
    pub fn resource(&self) -> &str {
        &self.url[Position::BeforePath..Position::AfterQuery]
    }

    /// The socket addresses the host resolves to (DNS for a name).
    pub fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.url.socket_addrs(|| Some(80))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String) {
        let u = WsUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (u.authority(), u.resource().to_string())
    }

    #[test]
    fn authority_always_has_a_port_and_resource_a_path() {
        assert_eq!(parts("ws://localhost:8080/echo"), ("localhost:8080".into(), "/echo".into()));
        assert_eq!(parts("ws://example.com"), ("example.com:80".into(), "/".into()));
        // The default port, written, is kept in the authority all the same.
        assert_eq!(parts("ws://example.com:80/x"), ("example.com:80".into(), "/x".into()));
        assert_eq!(parts("ws://[::1]:9001/"), ("[::1]:9001".into(), "/".into()));
        assert_eq!(parts("WS://Example.COM/A"), ("example.com:80".into(), "/A".into()));
    }

    #[test]
    fn wss_defaults_to_port_443_and_names_its_host() {
        let u = WsUrl::parse("wss://localhost/echo").unwrap();
        assert!(u.is_tls() && !WsUrl::parse("ws://localhost/").unwrap().is_tls());
        assert_eq!((u.authority(), u.host()), ("localhost:443".into(), "localhost"));
    }

    #[test]
    fn query_is_part_of_the_resource_name() {
        let (_, r) = parts("ws://127.0.0.1:9001/runCase?case=7&agent=wsecho-client");
        assert_eq!(r, "/runCase?case=7&agent=wsecho-client");
        // Spaces and other bytes a request line cannot carry are percent-encoded.
        assert_eq!(parts("ws://h/a b?c d").1, "/a%20b?c%20d");
    }

    #[test]
    fn ipv6_literal_resolves_without_dns() {
        let u = WsUrl::parse("ws://[::1]:9001/").unwrap();
        assert_eq!(u.socket_addrs().unwrap(), vec!["[::1]:9001".parse::<SocketAddr>().unwrap()]);
        let u = WsUrl::parse("ws://127.0.0.1/").unwrap();
        assert_eq!(u.socket_addrs().unwrap(), vec!["127.0.0.1:80".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn refused_urls_say_why() {
        for (url, why) in [
            ("http://x/", "scheme \"http\""),
            ("ws://", "empty host"),
            ("localhost:8080", "scheme \"localhost\""),
            ("echo", "relative URL"),
            ("ws://x:99999/", "invalid port"),
            ("ws://x/echo#frag", "fragment"),
            ("ws://u:p@x/", "credentials"),
        ] {
            match WsUrl::parse(url) {
                Err(ClientError::Url { url: u, reason }) => {
                    assert_eq!(u, url);
                    assert!(reason.contains(why), "{url}: {reason}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
