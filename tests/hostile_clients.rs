//! Hostile and broken clients: limits, timeouts, keepalive, resets. Each
//! test checks the offender gets the right answer and everyone else is
//! still served.
mod common;

use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use wsecho::client::Message;
use wsecho::proto::frame::OpCode;
use wsecho::server::Config;

#[test]
fn over_max_connections_gets_503_and_others_stay_served() {
    let server = TestServer::start_with(Config { max_connections: 3, ..Config::default() });
    let mut held: Vec<_> = (0..3).map(|_| server.client()).collect();
    let mut extra = server.raw();
    let resp = read_to_end(&mut extra);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    for c in held.iter_mut() {
        c.send_text("x").unwrap();
        assert_eq!(c.recv().unwrap(), Message::Text("x".into()));
    }
    drop(held);
    // Slots free up again.
    std::thread::sleep(Duration::from_millis(200));
    served(&server);
}

#[test]
fn keepalive_pings_a_silent_peer_then_closes_1001() {
    let cfg = Config {
        idle_timeout: Some(Duration::from_millis(300)),
        ping_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let server = TestServer::start_with(cfg);
    let mut s = server.upgraded();
    let started = Instant::now();
    let (_, op, payload) = read_frame(&mut s);
    assert_eq!(op, OpCode::Ping);
    assert!(payload.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
    // We do not answer: the server gives up with 1001.
    assert_eq!(expect_close(&mut s), 1001);
    served(&server);
}

#[test]
fn keepalive_keeps_a_peer_that_answers() {
    let cfg = Config {
        idle_timeout: Some(Duration::from_millis(200)),
        ping_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let server = TestServer::start_with(cfg);
    let mut c = server.client();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut pings = 0;
    while pings < 4 {
        match c.recv().unwrap() {
            Message::Ping(_) => pings += 1, // recv() already answered it
            other => panic!("unexpected {other:?}"),
        }
    }
    c.send_text("alive").unwrap();
    loop {
        match c.recv().unwrap() {
            Message::Ping(_) => continue,
            m => {
                assert_eq!(m, Message::Text("alive".into()));
                break;
            }
        }
    }
}

#[test]
fn peer_that_never_reads_is_closed_after_the_backpressure_timeout() {
    let cfg = Config {
        backpressure_bytes: 64 * 1024,
        backpressure_timeout: Duration::from_millis(300),
        close_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let server = TestServer::start_with(cfg);
    let mut hog = server.upgraded();
    hog.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    let frame = masked_frame(true, OpCode::Binary, &[7u8; 16 * 1024]);
    while hog.write_all(&frame).is_ok() {}
    served(&server);
    std::thread::sleep(Duration::from_millis(1500));
    // Now drain what we were sent: the connection must end.
    hog.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match hog.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

#[test]
fn half_close_and_reset_mid_frame_are_cleaned_up() {
    let server = TestServer::start();
    let frame = masked_frame(true, OpCode::Binary, &[1u8; 1000]);
    let mut a = server.upgraded();
    a.write_all(&frame[..500]).unwrap();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    expect_tcp_closed(&mut a);
    let mut b = server.upgraded();
    b.write_all(&frame[..500]).unwrap();
    reset(b);
    served(&server);
}
