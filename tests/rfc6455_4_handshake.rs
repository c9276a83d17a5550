//! RFC 6455 §4 and gorilla's Upgrader checks, against the real server.
mod common;

use common::*;
use std::io::Write;
use std::time::Duration;
use wsecho::client::{Client, ClientError, ClientOptions};
use wsecho::proto::handshake::UpgradePolicy;
use wsecho::server::Config;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn exchange(server: &TestServer, request: &str) -> String {
    let mut s = server.raw();
    s.write_all(request.as_bytes()).unwrap();
    read_to_end(&mut s)
}

fn status_and_body(resp: &str) -> (u16, String) {
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn rfc6455_4_2_2_accept_key_for_the_rfc_and_seed_keys() {
    let server = TestServer::start();
    for (key, accept) in
        [(KEY, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), ("x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk=")]
    {
        let mut s = server.raw();
        s.write_all(upgrade_request(key).as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
        assert!(head.contains(&format!("Sec-WebSocket-Accept: {accept}\r\n")), "{head}");
    }
}

#[test]
fn each_upgrade_rejection_has_gorillas_status_and_reason() {
    let server = TestServer::start();
    let good = upgrade_request(KEY);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("Connection: Upgrade", "Connection: keep-alive", 400, "'upgrade' token not found in 'Connection' header"),
        ("Upgrade: websocket", "Upgrade: h2c", 400, "'websocket' token not found in 'Upgrade' header"),
        ("GET /echo", "PUT /echo", 405, "request method is not GET"),
        (
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 8",
            400,
            "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header",
        ),
        (
            "Host: localhost",
            "Host: localhost\r\nOrigin: http://evil.example",
            403,
            "websocket: request origin not allowed by Upgrader.CheckOrigin",
        ),
        (KEY, "", 400, "websocket: not a websocket handshake: `Sec-WebSocket-Key' header is missing or blank"),
        (KEY, "c2hvcnQ=", 400, "must be Base64 encoded value of 16-byte in length"),
        ("GET /echo", "GET /elsewhere", 404, "not found"),
    ];
    for (from, to, status, reason) in cases {
        let resp = exchange(&server, &good.replace(from, to));
        let (got, body) = status_and_body(&resp);
        assert_eq!(got, *status, "{to}: {resp}");
        assert!(body.contains(reason), "{to}: {body}");
        assert!(resp.contains("Content-Type: text/plain"), "{resp}");
        assert!(resp.contains("Connection: close"), "{resp}");
        if *status == 400 && to.contains("Version") {
            assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"), "{resp}");
        }
    }
}

#[test]
fn oversized_request_gets_431() {
    let server = TestServer::start();
    let big = upgrade_request(KEY).replace("\r\n\r\n", &format!("\r\nX-Pad: {}\r\n\r\n", "a".repeat(9000)));
    assert_eq!(status_and_body(&exchange(&server, &big)).0, 431);
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = upgrade_request(KEY).replace("\r\n\r\n", &format!("\r\n{many}\r\n"));
    assert_eq!(status_and_body(&exchange(&server, &req)).0, 431);
}

#[test]
fn request_written_one_byte_per_write_upgrades() {
    let server = TestServer::start();
    let mut s = server.raw();
    for b in upgrade_request(KEY).as_bytes() {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(&masked_frame(true, wsecho::proto::OpCode::Text, b"after")).unwrap();
    assert_eq!(read_frame(&mut s).2, b"after");
}

#[test]
fn early_data_before_the_101_is_rejected_and_never_echoed() {
    let server = TestServer::start();
    let mut bytes = upgrade_request(KEY).into_bytes();
    bytes.extend(masked_frame(true, wsecho::proto::OpCode::Text, b"too soon"));
    let mut s = server.raw();
    s.write_all(&bytes).unwrap();
    let resp = read_to_end(&mut s);
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("client sent data before handshake is complete"), "{resp}");
    assert!(!resp.contains("101"), "{resp}");
    assert!(!resp.contains("too soon"));
}

#[test]
fn home_page_is_served_at_root_with_the_seed_controls() {
    let server = TestServer::start();
    let resp = exchange(&server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("text/html"));
    for id in ["id=\"open\"", "id=\"close\"", "id=\"send\"", "id=\"input\"", "id=\"output\"", "/echo"] {
        assert!(resp.contains(id), "page lacks {id}");
    }
    assert_eq!(status_and_body(&exchange(&server, "POST / HTTP/1.1\r\nHost: x\r\n\r\n")).0, 405);
}

#[test]
fn subprotocol_is_the_servers_first_match_or_absent() {
    let cfg = Config {
        policy: UpgradePolicy { subprotocols: vec!["chat".into(), "superchat".into()], ..Default::default() },
        ..Config::default()
    };
    let server = TestServer::start_with(cfg);
    let opts = ClientOptions { protocols: vec!["superchat".into(), "chat".into()], ..Default::default() };
    let c = Client::connect(&server.url(), &opts).unwrap();
    assert_eq!(c.protocol(), Some("chat"));
    let opts = ClientOptions { protocols: vec!["mqtt".into()], ..Default::default() };
    let c = Client::connect(&server.url(), &opts).unwrap();
    assert_eq!(c.protocol(), None);
}

#[test]
fn silent_connection_is_closed_at_the_handshake_deadline() {
    let cfg = Config { handshake_timeout: Duration::from_millis(300), ..Config::default() };
    let server = TestServer::start_with(cfg);
    let mut silent = server.raw();
    silent.write_all(b"GET /echo HTTP/1.1\r\n").unwrap();
    let started = std::time::Instant::now();
    // Others are still served meanwhile.
    let mut c = server.client();
    c.send_text("still here").unwrap();
    assert_eq!(c.recv().unwrap(), wsecho::client::Message::Text("still here".into()));
    expect_tcp_closed(&mut silent);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn client_reports_non_101_status_with_body() {
    let server = TestServer::start();
    let url = format!("ws://{}/nope", server.addr);
    match Client::connect(&url, &ClientOptions::default()) {
        Err(ClientError::Status { status, body }) => {
            assert_eq!(status, 404);
            assert!(body.contains("not found"));
        }
        other => panic!("{other:?}"),
    }
}

/// `upgrade_request(KEY)` with `line` added as the last header.
fn upgrade_with(line: &str) -> String {
    upgrade_request(KEY).replace("\r\n\r\n", &format!("\r\n{line}\r\n\r\n"))
}

/// Send `request`, expect `status` with `reason` in a `text/plain` body and
/// the connection closed (never a 101).
fn expect_rejected(server: &TestServer, request: &str, status: u16, reason: &str) {
    let resp = exchange(server, request);
    let (got, body) = status_and_body(&resp);
    assert_eq!(got, status, "{request:?}: {resp}");
    assert_eq!(body, format!("{reason}\n"), "{request:?}");
    assert!(resp.contains("Content-Type: text/plain"), "{resp}");
    assert!(resp.contains("Connection: close"), "{resp}");
}

#[test]
fn rfc9112_3_2_request_without_host_gets_400() {
    let server = TestServer::start();
    let reason = "missing required Host header";
    expect_rejected(&server, "GET / HTTP/1.1\r\n\r\n", 400, reason);
    expect_rejected(&server, &upgrade_request(KEY).replace("Host: localhost\r\n", ""), 400, reason);
    // HTTP/1.0 did not require Host: its home page request is still served.
    let resp = exchange(&server, "GET / HTTP/1.0\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
}

#[test]
fn rfc9112_3_2_repeated_or_malformed_host_gets_400() {
    let server = TestServer::start();
    let two = "Host: localhost\r\nHost: evil.example\r\n";
    expect_rejected(&server, &upgrade_request(KEY).replace("Host: localhost\r\n", two), 400, "too many Host headers");
    expect_rejected(&server, &format!("GET / HTTP/1.1\r\n{two}\r\n"), 400, "too many Host headers");
    let bad = upgrade_request(KEY).replace("Host: localhost", "Host: local host");
    expect_rejected(&server, &bad, 400, "malformed Host header");
}

#[test]
fn rfc6455_4_1_upgrade_over_http_1_0_gets_400_not_101() {
    let server = TestServer::start();
    let reason = "websocket: the client is not using the websocket protocol: request version is not HTTP/1.1 or higher";
    expect_rejected(&server, &upgrade_request(KEY).replace("HTTP/1.1", "HTTP/1.0"), 400, reason);
}

#[test]
fn rfc6455_11_3_repeated_key_version_or_origin_gets_400() {
    let server = TestServer::start();
    let cases = [
        ("Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==", "'Sec-WebSocket-Key' header is repeated"),
        (&*format!("Sec-WebSocket-Key: {KEY}"), "'Sec-WebSocket-Key' header is repeated"),
        ("Sec-WebSocket-Version: 13", "'Sec-WebSocket-Version' header is repeated"),
        ("Origin: http://localhost\r\nOrigin: http://evil.example", "'Origin' header is repeated"),
    ];
    for (line, what) in cases {
        let reason = format!("websocket: not a websocket handshake: {what}");
        expect_rejected(&server, &upgrade_with(line), 400, &reason);
    }
}

#[test]
fn upgrade_request_declaring_a_body_gets_400() {
    let server = TestServer::start();
    let reason = "websocket: not a websocket handshake: request has a body (Content-Length or Transfer-Encoding)";
    for line in ["Content-Length: 4", "Transfer-Encoding: chunked"] {
        expect_rejected(&server, &upgrade_with(line), 400, reason);
    }
    // An explicit empty body is no body.
    let mut s = server.raw();
    s.write_all(upgrade_with("Content-Length: 0").as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[test]
fn rfc9112_3_2_2_absolute_form_target_routes_on_its_path() {
    let server = TestServer::start();
    let target = |t: &str| upgrade_request(KEY).replace("GET /echo", &format!("GET {t}"));
    let mut s = server.raw();
    s.write_all(target("http://localhost/echo").as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    s.write_all(&masked_frame(true, wsecho::proto::OpCode::Text, b"absolute")).unwrap();
    assert_eq!(read_frame(&mut s).2, b"absolute");

    for home in [
        "GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET http://localhost HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let resp = exchange(&server, home);
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{home:?}: {resp}");
        assert!(resp.contains("id=\"open\""), "{resp}");
    }
    expect_rejected(&server, &target("http://localhost/elsewhere"), 404, "not found");
    expect_rejected(&server, &target("http://user@localhost/echo"), 400, "malformed HTTP request");
}

// The two tests below need the reactor to call `proto::handshake::accept`
// (it still rejects every byte after the head with "data before handshake"
// before routing). Remove the `ignore` once it does.

#[test]
fn rfc9112_9_3_2_pipelined_home_page_requests_get_the_page_not_400() {
    let server = TestServer::start();
    let home = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp = exchange(&server, &home.repeat(2));
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("id=\"open\""), "{resp}");
    // One answer, then close: the second request is not processed
    // (RFC 9112 §9.6, after `Connection: close`).
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{resp}");
    assert!(!resp.contains("before handshake"), "{resp}");
}

#[test]
fn invalid_upgrade_with_trailing_bytes_gets_its_own_error_not_early_data() {
    let server = TestServer::start();
    let mut bytes = upgrade_request(KEY).replace("GET /echo", "GET /elsewhere").into_bytes();
    bytes.extend(masked_frame(true, wsecho::proto::OpCode::Text, b"too soon"));
    let mut s = server.raw();
    s.write_all(&bytes).unwrap();
    let (status, body) = status_and_body(&read_to_end(&mut s));
    assert_eq!((status, body.as_str()), (404, "not found\n"));
}
