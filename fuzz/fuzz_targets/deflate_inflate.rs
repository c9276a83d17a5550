//! permessage-deflate receive path: `PmdCodec::on_frame` on compressed bytes.
//!
//! Input: byte 0 seeds the frame cuts, byte 1 the configuration:
//! - bit 0: no context takeover in both directions (else both keep context);
//! - bit 1: the messages are text (UTF-8 checked after inflation);
//! - bit 2: "valid" mode — the rest is the *plain text* of one message, which
//!   the target compresses like a client before cutting it into frames;
//!   otherwise the rest is raw compressed payload, cut into frames and
//!   messages (a frame ends its message with probability 1/4);
//! - bits 3–5: `max_message` = 16 << n bytes (16 B – 2 KiB), so zip bombs and
//!   the 1009 path are reachable with small inputs;
//! - bit 6: `server_max_window_bits` = 8 (stored-block output) instead of 15.
//!
//! Invariants: no panic; no message inflates past `max_message` without
//! `MessageTooBig`; errors are only the three the codec documents; a codec
//! that only collects the inflated bytes and one that re-compresses them (the
//! echo path) agree frame by frame, and the re-compressed message inflates
//! to the same bytes on the client side. In valid mode, the result is exactly
//! what the plain text calls for.
#![no_main]

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use libfuzzer_sys::fuzz_target;
use wsecho::proto::deflate::{Agreed, CodecPool, PmdCodec, TAIL};
use wsecho::proto::ProtocolError;

/// Compress one message like a client: raw deflate, sync flush, tail stripped.
fn client_compress(plain: &[u8]) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::default(), false, 15);
    let mut out = Vec::with_capacity(plain.len() + 64);
    c.compress_vec(plain, &mut out, FlushCompress::Sync).unwrap();
    while !out.ends_with(&TAIL) || c.total_in() < plain.len() as u64 {
        out.reserve(64 + plain.len());
        let (done, before) = (c.total_in() as usize, out.len());
        c.compress_vec(&plain[done..], &mut out, FlushCompress::Sync).unwrap();
        assert!(out.len() > before || c.total_in() as usize > done, "client deflate made no progress");
    }
    out.truncate(out.len() - TAIL.len());
    out
}

/// Inflate a whole message (tail appended) as the client would.
fn client_inflate(d: &mut Decompress, msg: &[u8]) -> Vec<u8> {
    let mut input = msg.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::new();
    let mut rest = &input[..];
    loop {
        out.reserve(4096);
        let before = d.total_in();
        let before_out = out.len();
        d.decompress_vec(rest, &mut out, FlushDecompress::Sync).expect("our own deflate output inflates");
        rest = &rest[(d.total_in() - before) as usize..];
        if rest.is_empty() && out.len() < out.capacity() || (out.len() == before_out && d.total_in() == before) {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (seed, config, rest) = (data[0], data[1], &data[2..]);
    let nct = config & 1 != 0;
    let text = config & 2 != 0;
    let valid_mode = config & 4 != 0;
    let max_message: u64 = 16 << ((config >> 3) & 7);
    let agreed = Agreed {
        server_no_context_takeover: nct,
        client_no_context_takeover: nct,
        server_max_window_bits: if config & 64 != 0 { 8 } else { 15 },
        client_max_window_bits: 15,
    };

    let wire = if valid_mode { client_compress(rest) } else { rest.to_vec() };
    // Frames, and whether each ends its message.
    let mut rng = wsecho_fuzz::Rng::new(seed ^ 0x5A);
    let mut frames: Vec<(&[u8], bool)> = Vec::new();
    for piece in wsecho_fuzz::chunks(seed, &wire) {
        frames.push((piece, !valid_mode && rng.below(4) == 0));
    }
    match frames.last_mut() {
        Some(last) => last.1 = true,
        None => frames.push((&[], true)),
    }

    let mut pool_a = CodecPool::new(1, 2);
    let mut pool_b = CodecPool::new(1, 2);
    let mut plain_codec = PmdCodec::new(agreed);
    let mut echo_codec = PmdCodec::new(agreed);
    let mut client = Decompress::new_with_window_bits(false, 15);
    let mut first = true;
    let mut plain_msg = Vec::new();
    let mut echo_msg = Vec::new();
    for (payload, fin) in frames {
        let mut plain = Vec::new();
        let ra = plain_codec.on_frame(&mut pool_a, payload, first, text, fin, max_message, None, Some(&mut plain));
        let mut echoed = Vec::new();
        let rb = echo_codec.on_frame(&mut pool_b, payload, first, text, fin, max_message, Some(&mut echoed), None);
        assert_eq!(ra, rb, "collecting and re-compressing codecs disagree");
        plain_msg.extend_from_slice(&plain);
        echo_msg.extend_from_slice(&echoed);
        assert!(plain_msg.len() as u64 <= max_message, "inflated {} > limit {max_message}", plain_msg.len());
        if let Err(e) = ra {
            assert!(
                matches!(
                    e,
                    ProtocolError::BadCompressedData | ProtocolError::MessageTooBig | ProtocolError::InvalidUtf8
                ),
                "{e:?}"
            );
            if valid_mode {
                match e {
                    ProtocolError::MessageTooBig => assert!(rest.len() as u64 > max_message),
                    ProtocolError::InvalidUtf8 => assert!(text && std::str::from_utf8(rest).is_err()),
                    _ => panic!("a client's own deflate stream failed to inflate: {e:?}"),
                }
            }
            return;
        }
        if fin {
            if text {
                assert!(std::str::from_utf8(&plain_msg).is_ok(), "accepted text message is not UTF-8");
            }
            if nct {
                client.reset(false);
            }
            let back = client_inflate(&mut client, &echo_msg);
            assert_eq!(back, plain_msg, "re-compressed message inflates to different bytes");
            if valid_mode {
                assert_eq!(plain_msg, rest, "valid stream inflated to different bytes");
            }
            plain_msg.clear();
            echo_msg.clear();
        }
        first = fin;
    }
});
