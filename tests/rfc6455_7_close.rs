//! RFC 6455 §5.5.1 and §7 close handshake, against the real server.
mod common;

use common::*;
use std::io::Write;
use wsecho::client::Message;
use wsecho::proto::frame::OpCode;

fn close_with_payload(server: &TestServer, payload: &[u8]) -> (u16, bool) {
    let mut s = server.upgraded();
    s.write_all(&masked_frame(true, OpCode::Close, payload)).unwrap();
    let (_, op, p) = read_frame(&mut s);
    assert_eq!(op, OpCode::Close);
    let code = if p.len() >= 2 { u16::from_be_bytes([p[0], p[1]]) } else { 0 };
    expect_tcp_closed(&mut s);
    (code, p.is_empty())
}

#[test]
fn rfc6455_7_4_valid_codes_are_echoed_back() {
    let server = TestServer::start();
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"reason");
        assert_eq!(close_with_payload(&server, &payload).0, code, "code {code}");
    }
}

#[test]
fn rfc6455_7_4_invalid_codes_get_1002() {
    let server = TestServer::start();
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
        assert_eq!(close_with_payload(&server, &code.to_be_bytes()).0, 1002, "code {code}");
    }
    // A 1-byte close payload.
    assert_eq!(close_with_payload(&server, &[0x03]).0, 1002);
}

#[test]
fn rfc6455_5_5_1_empty_close_gets_empty_close_and_bad_reason_gets_1007() {
    let server = TestServer::start();
    assert_eq!(close_with_payload(&server, &[]), (0, true));
    assert_eq!(close_with_payload(&server, &[0x03, 0xE8, 0xFF, 0xFE]).0, 1007);
}

#[test]
fn graceful_shutdown_sends_1001_to_every_client() {
    let server = TestServer::start();
    let mut clients: Vec<_> = (0..50).map(|_| server.client()).collect();
    for c in clients.iter_mut() {
        c.send_text("last words").unwrap();
        assert_eq!(c.recv().unwrap(), Message::Text("last words".into()));
    }
    let handle = server.handle.clone();
    let waiter = std::thread::spawn(move || server.stop());
    handle.shutdown();
    for c in clients.iter_mut() {
        match c.recv().unwrap() {
            Message::Close(Some((code, _))) => assert_eq!(code, 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
        assert!(c.wait_for_eof());
    }
    waiter.join().unwrap();
}

#[test]
fn shutdown_echoes_what_already_arrived_before_closing() {
    let server = TestServer::start();
    let mut c = server.client();
    c.send_text("ping").unwrap();
    assert_eq!(c.recv().unwrap(), Message::Text("ping".into()));
    for i in 0..100 {
        c.send_text(&format!("m{i}")).unwrap();
    }
    // Give the bytes time to reach the server's socket buffer.
    std::thread::sleep(std::time::Duration::from_millis(100));
    server.handle.shutdown();
    for i in 0..100 {
        assert_eq!(c.recv().unwrap(), Message::Text(format!("m{i}")));
    }
    assert!(matches!(c.recv().unwrap(), Message::Close(Some((1001, _)))));
}
