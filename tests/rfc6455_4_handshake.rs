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
