//! Issue 10: memory bounded for every client, and no echoed byte lost.
//!
//! Each test pushes past a documented cap with the real `wsecho` binary in a
//! child process and reads the server's own `/proc/PID/status` VmRSS to
//! prove the bound, or checks the bytes a half-closing client gets back.
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wsecho::proto::frame::OpCode;

const MIB: u64 = 1 << 20;

/// Deterministic payload bytes that differ per connection and offset.
fn pattern(conn: usize, offset: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((offset + i) as u32).wrapping_mul(2654435761).wrapping_add(conn as u32) as u8).collect()
}

/// Send `len` bytes of a frame's payload starting at `offset`, in 64 KiB
/// writes, reading each piece's echo back before the next.
fn stream_payload(s: &mut TcpStream, conn: usize, offset: usize, len: usize) {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(64 * 1024);
        let plain = pattern(conn, offset + done, n);
        s.write_all(&masked_part(&plain, offset + done)).unwrap();
        assert_eq!(read_data(s, n), plain, "conn {conn}: echo of bytes {}..{}", offset + done, offset + done + n);
        done += n;
    }
}

#[test]
fn issue_10_thousand_connections_mid_16mib_frame_grow_rss_by_at_most_32mib() {
    let server = ServerProc::start(&[]);
    let mut conns: Vec<TcpStream> = (0..1000).map(|_| server.upgraded()).collect();
    let before = server.rss();
    // Each announces a 16 MiB frame and sends 128 KiB of it: the old reactor
    // buffered every partial frame whole (1000 × 128 KiB = 125 MiB).
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&masked_header(true, OpCode::Binary, 16 * MIB)).unwrap();
        stream_payload(s, i, 0, 128 * 1024);
    }
    let after = server.rss();
    let growth = after.saturating_sub(before);
    println!("server RSS {before} -> {after} bytes: {growth} bytes for 1000 connections mid-frame");
    assert!(growth <= 32 * MIB, "RSS grew by {growth} bytes");
    server.served();
}

#[test]
fn issue_10_leftover_after_a_large_frame_is_not_kept() {
    let server = ServerProc::start(&[]);
    let mut conns: Vec<TcpStream> = (0..8).map(|_| server.upgraded()).collect();
    let before = server.rss();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&masked_header(true, OpCode::Binary, 8 * MIB)).unwrap();
        stream_payload(s, i, 0, 8 << 20);
        // One byte of the next frame's header.
        s.write_all(&[0x82]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let growth = server.rss().saturating_sub(before);
    println!("RSS growth with 8 connections holding 1 byte after an 8 MiB frame: {growth} bytes");
    // The old reactor kept each 8 MiB allocation (73 MiB for 8).
    assert!(growth <= 20 * MIB, "RSS grew by {growth} bytes");
    server.served();
}

#[test]
fn issue_10_half_close_after_close_frame_loses_no_echo() {
    let server = ServerProc::start(&[]);
    // The 4 KiB receive buffer is set before connecting, so the window the
    // client advertises is sized for it from the start.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(upgrade_request("dGhlIHNhbXBsZSBub25jZQ==").as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut writer = s.try_clone().unwrap();
    let msgs = 128;
    let size = 64 * 1024;
    let sender = std::thread::spawn(move || {
        for i in 0..msgs {
            writer.write_all(&masked_frame(true, OpCode::Binary, &pattern(i, 0, size))).unwrap();
        }
        writer.write_all(&masked_frame(true, OpCode::Close, &1000u16.to_be_bytes())).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut r = s;
    r.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for i in 0..msgs {
        // Large messages may come back re-fragmented; reassemble one.
        let mut msg = Vec::new();
        loop {
            let (fin, op, p) = read_frame(&mut r);
            assert!(!op.is_control(), "message {i}: got {op:?} before all echoes");
            msg.extend_from_slice(&p);
            if fin {
                break;
            }
        }
        assert_eq!(msg.len(), size, "message {i}");
        assert!(msg == pattern(i, 0, size), "message {i} corrupted");
    }
    let (_, op, p) = read_frame(&mut r);
    assert_eq!(op, OpCode::Close);
    assert_eq!(p, 1000u16.to_be_bytes());
    expect_tcp_closed(&mut r);
    sender.join().unwrap();
}

#[test]
fn issue_10_pool_cap_holds_with_never_reading_clients() {
    let server =
        ServerProc::start(&["--max-pool-bytes", "1048576", "--backpressure-timeout", "2", "--close-timeout", "1"]);
    let before = server.rss();
    let hogs: Vec<_> = (0..8)
        .map(|i| {
            let mut s = server.upgraded();
            s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
            std::thread::spawn(move || {
                // One 16 MiB frame, never reading the echo.
                let _ = s.write_all(&masked_header(true, OpCode::Binary, 16 * MIB));
                let chunk = masked_part(&pattern(i, 0, 64 * 1024), 0);
                let mut sent = 0;
                while sent < 16 << 20 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                (s, sent)
            })
        })
        .collect();
    let mut peak = 0;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        peak = peak.max(server.rss());
        std::thread::sleep(Duration::from_millis(20));
    }
    let results: Vec<(TcpStream, usize)> = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    let growth = peak.saturating_sub(before);
    println!("peak RSS growth with 8 never-reading clients, pool cap 1 MiB: {growth} bytes");
    for (_, sent) in &results {
        assert!(*sent < 16 << 20, "server read a whole 16 MiB frame from a client that never reads");
    }
    // Cap 1 MiB plus the kept spare chunks and one read's slack; the old
    // check let this reach 110 MiB.
    assert!(growth <= 8 * MIB, "RSS grew by {growth} bytes");
    // The hogs are closed (1008, then the close deadline) a few at a time:
    // those holding chunks first, then those that waited for room.
    let waiters: Vec<_> = results
        .into_iter()
        .map(|(mut s, _)| std::thread::spawn(move || expect_tcp_closed_within(&mut s, Duration::from_secs(90))))
        .collect();
    for w in waiters {
        w.join().unwrap();
    }
    server.served();
}

#[test]
fn issue_10_held_input_budget_makes_small_frames_stream() {
    // 1000 connections each hold 16 KiB − 1 of a 16 KiB frame: 16 MiB held
    // without a budget; with a 1 MiB budget the rest stream.
    let server = ServerProc::start(&["--max-held-input", "1048576"]);
    let mut conns: Vec<TcpStream> = (0..1000).map(|_| server.upgraded()).collect();
    let before = server.rss();
    let n = 16 * 1024 - 1;
    for (i, s) in conns.iter_mut().enumerate() {
        let mut bytes = masked_header(true, OpCode::Binary, 16 * 1024);
        bytes.extend_from_slice(&masked_part(&pattern(i, 0, n), 0));
        s.write_all(&bytes).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    // Held connections echo nothing yet; streamed ones echo the piece.
    let mut streamed = 0;
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let ready = s.peek(&mut b).is_ok();
        s.set_nonblocking(false).unwrap();
        if ready {
            assert_eq!(read_data(s, n), pattern(i, 0, n));
            streamed += 1;
        }
    }
    let growth = server.rss().saturating_sub(before);
    println!("{streamed} of 1000 partial 16 KiB frames streamed; RSS growth {growth} bytes");
    assert!(streamed >= 900, "only {streamed} streamed: the budget did not bind");
    assert!(growth <= 6 * MIB, "RSS grew by {growth} bytes");
    // Every frame still completes correctly, held or streamed.
    for (i, s) in conns.iter_mut().enumerate() {
        let last = pattern(i, n, 1);
        s.write_all(&masked_part(&last, n)).unwrap();
        let mut msg = Vec::new();
        loop {
            let (fin, op, p) = read_frame(s);
            assert!(!op.is_control());
            msg.extend_from_slice(&p);
            if fin {
                break;
            }
        }
        let tail = &msg[msg.len() - 1..];
        assert_eq!(tail, &last[..], "conn {i}");
    }
    server.served();
}

#[test]
fn issue_10_slow_drip_frame_is_closed_1008_after_frame_timeout() {
    let server = ServerProc::start(&["--frame-timeout", "1"]);
    for len in [200u64, 1 << 20] {
        let mut s = server.upgraded();
        s.write_all(&masked_header(true, OpCode::Binary, len)).unwrap();
        let started = Instant::now();
        let mut dripper = s.try_clone().unwrap();
        let drip = std::thread::spawn(move || {
            for i in 0..15 {
                if dripper.write_all(&masked_part(b"x", i)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        assert_eq!(expect_close(&mut s), 1008, "frame of {len} bytes");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "closed after {took:?}");
        expect_tcp_closed(&mut s);
        drip.join().unwrap();
    }
    server.served();
}

#[test]
fn issue_10_compressed_bomb_does_not_delay_another_connection() {
    use flate2::{Compress, Compression, FlushCompress};
    // 16 MiB of zeros compressed once (about 16 KB on the wire).
    let mut c = Compress::new(Compression::best(), false);
    let zeros = vec![0u8; 16 << 20];
    let mut deflated = Vec::with_capacity(64 * 1024);
    c.compress_vec(&zeros, &mut deflated, FlushCompress::Sync).unwrap();
    assert!(deflated.ends_with(&[0, 0, 0xff, 0xff]));
    deflated.truncate(deflated.len() - 4);
    let mut frame = Vec::new();
    wsecho::proto::frame::write_frame(&mut frame, true, 0x40, OpCode::Binary, Some([1, 2, 3, 4]), &deflated);

    // Fairness inside one reactor: bomb and probe must share it.
    let server = ServerProc::start(&["--threads", "1"]);
    let mut bomb = server.raw();
    bomb.write_all(
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut bomb);
    assert!(head.contains("permessage-deflate"), "{head}");
    let mut probe = server.upgraded();
    // Drain the bomb's echoes in the background.
    let mut drain = bomb.try_clone().unwrap();
    let echoed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = echoed.clone();
    let reader = std::thread::spawn(move || {
        let mut sink = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = drain.read(&mut sink) {
            counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut w = bomb.try_clone().unwrap();
    let frame_len = frame.len();
    let writer = std::thread::spawn(move || {
        for _ in 0..48 {
            w.write_all(&frame).unwrap();
        }
    });
    // Each echo is the compressed payload passed through, unmasked.
    let echoes_len = 48 * (frame_len - 4);
    let mut rtts = Vec::new();
    let ping = masked_frame(true, OpCode::Binary, b"rtt probe");
    let started = Instant::now();
    while echoed.load(std::sync::atomic::Ordering::Relaxed) < echoes_len || rtts.len() < 20 {
        let t = Instant::now();
        probe.write_all(&ping).unwrap();
        let (_, _, p) = read_frame(&mut probe);
        rtts.push(t.elapsed());
        assert_eq!(p, b"rtt probe");
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    writer.join().unwrap();
    let got = echoed.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(got, echoes_len, "the bomb's 48 messages were not all echoed");
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    let p90 = rtts[rtts.len() * 9 / 10];
    println!("probe round trips during the bomb: {} samples, median {median:?}, p90 {p90:?}", rtts.len());
    // Before: one turn inflated a whole read's worth of messages (28.8 ms).
    // Now a turn stops after the message that spends the budget; one 16 MiB
    // inflate is ~3 ms optimised, hundreds of ms in a debug build, so the
    // figure is checked only where it means something (CI runs --release).
    if !cfg!(debug_assertions) {
        assert!(median < Duration::from_millis(10), "median round trip {median:?}");
    }
    let _ = bomb.shutdown(std::net::Shutdown::Both);
    let _ = reader.join();
}

#[test]
fn issue_10_inflater_cap_refuses_a_new_compressed_message_with_1013() {
    // Two connections each start a compressed message and leave it
    // unfinished; with one inflater allowed, the second is closed 1013.
    let server = ServerProc::start(&["--max-inflaters", "1", "--threads", "1"]);
    let deflate_upgrade = |s: &mut TcpStream| {
        s.write_all(
            b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        )
        .unwrap();
        let head = read_head(s);
        assert!(head.contains("permessage-deflate"), "{head}");
    };
    // A stored (uncompressed) deflate block holding "hi", without BFINAL:
    // valid first fragment of a message that never ends.
    let first = [0x00, 0x02, 0x00, 0xfd, 0xff, b'h', b'i'];
    let mut frame = Vec::new();
    wsecho::proto::frame::write_frame(&mut frame, false, 0x40, OpCode::Text, Some([1, 2, 3, 4]), &first);
    let mut a = server.raw();
    deflate_upgrade(&mut a);
    a.write_all(&frame).unwrap();
    let (fin, op, _) = read_frame_rsv(&mut a, 0x40);
    assert_eq!((fin, op), (false, OpCode::Text), "first connection's fragment echoed");
    let mut b = server.raw();
    deflate_upgrade(&mut b);
    b.write_all(&frame).unwrap();
    assert_eq!(expect_close(&mut b), 1013);
    // Once the first connection goes away, its inflater is free again.
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = server.raw();
    deflate_upgrade(&mut c);
    c.write_all(&frame).unwrap();
    let (fin, op, _) = read_frame_rsv(&mut c, 0x40);
    assert_eq!((fin, op), (false, OpCode::Text));
}
