//! RFC 6455 §5 framing, against the real server over real sockets.
mod common;

use common::*;
use std::io::Write;
use wsecho::client::Message;
use wsecho::proto::frame::OpCode;
use wsecho::proto::Limits;
use wsecho::server::Config;

#[test]
fn echoes_text_and_binary_at_length_boundaries() {
    let server = TestServer::start();
    let mut c = server.client();
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 200_000] {
        let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        c.send_text(&text).unwrap();
        assert_eq!(c.recv().unwrap(), Message::Text(text), "text {len}");
        let bin: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        c.send_binary(&bin).unwrap();
        assert_eq!(c.recv().unwrap(), Message::Binary(bin), "binary {len}");
    }
}

#[test]
fn echoes_a_16_mib_message() {
    let server = TestServer::start();
    let mut c = server.client();
    let big: Vec<u8> = (0..16 * 1024 * 1024).map(|i: usize| (i % 253) as u8).collect();
    let mut sender = c.try_clone_sender().unwrap();
    let data = big.clone();
    // Send from another thread: the echo comes back while we are still sending.
    let t = std::thread::spawn(move || sender.send_binary(&data).unwrap());
    assert_eq!(c.recv().unwrap(), Message::Binary(big));
    t.join().unwrap();
}

#[test]
fn rfc6455_5_4_fragments_with_an_interleaved_ping() {
    let server = TestServer::start();
    let mut s = server.upgraded();
    let mut bytes = masked_frame(false, OpCode::Text, "héllo ".as_bytes());
    bytes.extend(masked_frame(true, OpCode::Ping, b"are you there"));
    bytes.extend(masked_frame(false, OpCode::Continuation, "世界".as_bytes()));
    bytes.extend(masked_frame(true, OpCode::Continuation, " 🚀".as_bytes()));
    s.write_all(&bytes).unwrap();
    let mut text = Vec::new();
    let mut got_pong = false;
    loop {
        let (fin, op, p) = read_frame(&mut s);
        match op {
            OpCode::Pong => {
                assert_eq!(p, b"are you there");
                got_pong = true;
            }
            OpCode::Text | OpCode::Continuation => {
                text.extend(p);
                if fin {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_pong);
    assert_eq!(String::from_utf8(text).unwrap(), "héllo 世界 🚀");
}

#[test]
fn rfc6455_5_1_unmasked_frame_closes_1002() {
    let server = TestServer::start();
    let mut s = server.upgraded();
    s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(expect_close(&mut s), 1002);
    expect_tcp_closed(&mut s);
}

#[test]
fn rfc6455_5_2_reserved_bits_and_opcodes_close_1002() {
    let server = TestServer::start();
    for first in [0xC1u8, 0x83, 0x8B, 0x09] {
        let mut s = server.upgraded();
        let mut f = masked_frame(true, OpCode::Text, b"x");
        f[0] = first;
        s.write_all(&f).unwrap();
        assert_eq!(expect_close(&mut s), 1002, "first byte {first:#x}");
    }
}

#[test]
fn rfc6455_8_1_invalid_utf8_closes_1007_also_across_fragments() {
    let server = TestServer::start();
    let mut s = server.upgraded();
    s.write_all(&masked_frame(true, OpCode::Text, &[b'o', b'k', 0xFF])).unwrap();
    assert_eq!(expect_close(&mut s), 1007);

    let mut s = server.upgraded();
    let mut bytes = masked_frame(false, OpCode::Text, &[b'a', 0xE2, 0x82]);
    bytes.extend(masked_frame(true, OpCode::Continuation, &[0x41]));
    s.write_all(&bytes).unwrap();
    let (_, op, p) = read_frame(&mut s);
    assert_eq!((op, p), (OpCode::Text, vec![b'a', 0xE2, 0x82]));
    assert_eq!(expect_close(&mut s), 1007);
}

#[test]
fn invalid_utf8_fails_fast_before_the_frame_is_complete() {
    let server = TestServer::start();
    let mut s = server.upgraded();
    // Announce 1000 bytes but send only an invalid prefix: the server must not
    // wait for the rest.
    let frame = masked_frame(true, OpCode::Text, &[0xF4, 0x90, 0x80, 0x80].repeat(250));
    s.write_all(&frame[..8 + 10]).unwrap();
    assert_eq!(expect_close(&mut s), 1007);
}

#[test]
fn over_the_frame_and_message_limits_closes_1009() {
    let cfg = Config {
        limits: Limits { max_frame_payload: 1000, max_message: 1500, ..Limits::default() },
        ..Config::default()
    };
    let server = TestServer::start_with(cfg);
    let mut s = server.upgraded();
    // Only the header of a 2^40-byte frame: refused without waiting or allocating.
    let mut hdr = vec![0x82, 0xFF];
    hdr.extend_from_slice(&(1u64 << 40).to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&hdr).unwrap();
    assert_eq!(expect_close(&mut s), 1009);

    let mut s = server.upgraded();
    let mut bytes = masked_frame(false, OpCode::Binary, &[0; 900]);
    bytes.extend(masked_frame(true, OpCode::Continuation, &[0; 900]));
    s.write_all(&bytes).unwrap();
    assert_eq!(expect_close(&mut s), 1009);
}

#[test]
fn a_thousand_concurrent_connections_echo() {
    let server = TestServer::start();
    let mut clients: Vec<_> = (0..1000).map(|_| server.client()).collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send_text(&format!("c{i} r{round}")).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(c.recv().unwrap(), Message::Text(format!("c{i} r{round}")));
        }
    }
}

#[test]
fn pipelined_messages_come_back_in_order() {
    let server = TestServer::start();
    let mut s = server.upgraded();
    let mut bytes = Vec::new();
    for i in 0..5000u32 {
        bytes.extend(masked_frame(true, OpCode::Binary, &i.to_be_bytes()));
    }
    s.write_all(&bytes).unwrap();
    for i in 0..5000u32 {
        let (fin, op, p) = read_frame(&mut s);
        assert!(fin);
        assert_eq!((op, p), (OpCode::Binary, i.to_be_bytes().to_vec()));
    }
}

mod permessage_deflate {
    use super::*;
    use wsecho::client::{Client, ClientOptions};
    use wsecho::proto::deflate::{CompressionMode, DeflateConfig};

    fn roundtrip(mode: CompressionMode) {
        let cfg = Config { deflate: DeflateConfig { mode, ..DeflateConfig::default() }, ..Config::default() };
        let server = TestServer::start_with(cfg);
        let opts = ClientOptions { compress: true, ..Default::default() };
        let mut c = Client::connect(&server.url(), &opts).unwrap();
        let ext = c.extensions().map(str::to_owned);
        match mode {
            CompressionMode::Off => assert_eq!(ext, None),
            _ => assert!(ext.as_deref().unwrap().starts_with("permessage-deflate")),
        }
        for i in 0..20 {
            let json = format!("{{\"id\":{i},\"items\":[{}]}}", "{\"name\":\"wsecho\",\"ok\":true},".repeat(i * 10));
            c.send_text(&json).unwrap();
            assert_eq!(c.recv().unwrap(), Message::Text(json));
            let bin: Vec<u8> = (0..i * 1000).map(|j| (j % 7) as u8).collect();
            c.send_binary(&bin).unwrap();
            assert_eq!(c.recv().unwrap(), Message::Binary(bin));
        }
        // Uncompressed messages on a compressed connection come back as sent.
        c.sender().send_frame(true, OpCode::Text, b"plain").unwrap();
        assert_eq!(c.recv().unwrap(), Message::Text("plain".into()));
    }

    #[test]
    fn rfc7692_round_trip_without_context_takeover() {
        roundtrip(CompressionMode::NoContextTakeover);
    }

    #[test]
    fn rfc7692_round_trip_with_context_takeover() {
        roundtrip(CompressionMode::ContextTakeover);
    }

    #[test]
    fn rfc7692_compression_off_declines_the_offer() {
        roundtrip(CompressionMode::Off);
    }

    #[test]
    fn rfc7692_rsv1_without_negotiation_closes_1002() {
        let server = TestServer::start();
        let mut s = server.upgraded();
        let mut f = masked_frame(true, OpCode::Text, b"x");
        f[0] |= 0x40;
        s.write_all(&f).unwrap();
        assert_eq!(expect_close(&mut s), 1002);
    }

    #[test]
    fn rfc7692_zip_bomb_closes_1009_with_bounded_memory() {
        use flate2::{Compress, Compression, FlushCompress};
        let cfg = Config {
            limits: wsecho::proto::Limits { max_message: 1 << 20, ..Default::default() },
            ..Config::default()
        };
        let server = TestServer::start_with(cfg);
        let mut s = server.raw();
        let req = upgrade_request("dGhlIHNhbXBsZSBub25jZQ==")
            .replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.contains("permessage-deflate"), "{head}");
        // 8 MiB of zeros deflate to ~8 KiB.
        let mut c = Compress::new_with_window_bits(Compression::best(), false, 15);
        let zeros = vec![0u8; 8 << 20];
        let mut wire = Vec::with_capacity(1 << 20);
        c.compress_vec(&zeros, &mut wire, FlushCompress::Sync).unwrap();
        let mut f = masked_frame(true, OpCode::Binary, &wire);
        f[0] |= 0x40;
        s.write_all(&f).unwrap();
        assert_eq!(expect_close(&mut s), 1009);
    }

    #[test]
    fn rfc7692_malformed_extension_header_is_400() {
        let server = TestServer::start();
        let mut s = server.raw();
        let req = upgrade_request("dGhlIHNhbXBsZSBub25jZQ==")
            .replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate; a=\"x\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let resp = read_to_end(&mut s);
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    }
}
