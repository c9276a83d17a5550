//! The upgrade request path: `RequestScanner::feed` over chunked input, then
//! `route` (and the responses and extension negotiation that follow it).
//!
//! Input: byte 0 seeds the chunk sizes, byte 1 picks limits and policy
//! (bit 0: small limits — 32..=1039 request bytes and 0..=7 headers — so the
//! 431 paths are reachable; bits 1–2: origin policy), the rest is what the
//! client sent.
//!
//! Invariants: no panic; chunked scanning agrees with scanning everything at
//! once; a head ends at the *first* `\r\n\r\n` and fits both the input and the
//! limit; 431 from the scanner only once the limit is reached without a
//! terminator inside it, `Ok(None)` only below the limit; `route` answers only
//! with the statuses it documents; responses never contain a header-splitting
//! CR/LF from client-supplied values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsecho::proto::deflate::{negotiate, DeflateConfig};
use wsecho::proto::handshake::{
    parse_response, route, write_error, write_switching, OriginPolicy, RequestScanner, Route, UpgradePolicy, TOO_LARGE,
};
use wsecho::proto::Limits;

fn first_terminator(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Feed `chunks` to a fresh scanner the way the reactor does: every call sees
/// all bytes so far; stop at the first answer.
fn scan(chunks: &[&[u8]], limits: &Limits) -> (Result<Option<usize>, wsecho::proto::HandshakeError>, usize) {
    let mut sc = RequestScanner::default();
    let mut buf = Vec::new();
    let mut r = Ok(None);
    for c in chunks {
        buf.extend_from_slice(c);
        r = sc.feed(&buf, limits);
        if !matches!(r, Ok(None)) {
            break;
        }
    }
    (r, buf.len())
}

fn header_count(head: &[u8]) -> usize {
    // Lines between the request line and the blank line (httparse also
    // accepts bare LF, so count LFs: never fewer than the real headers).
    head.iter().filter(|&&b| b == b'\n').count().saturating_sub(2)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (seed, config, input) = (data[0], data[1], &data[2..]);
    let limits = if config & 1 != 0 {
        Limits {
            max_request_bytes: 32 + ((config as usize) << 2),
            max_headers: (config as usize >> 3) & 7,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let policy = UpgradePolicy {
        origin: match (config >> 1) & 3 {
            0 | 3 => OriginPolicy::SameOrigin,
            1 => OriginPolicy::Any,
            _ => OriginPolicy::List(vec!["http://localhost:8080".into(), "https://example.com".into()]),
        },
        subprotocols: vec!["chat".into(), "superchat".into()],
    };

    let chunks = wsecho_fuzz::chunks(seed, input);
    let (split, seen) = scan(&chunks, &limits);
    let (whole, _) = scan(&[input], &limits);
    // The reactor stops reading once it has an answer, so the chunked scan can
    // only have seen a prefix; both must give the same answer.
    assert_eq!(split, whole, "chunked scan differs from one-shot scan");
    let max = limits.max_request_bytes;
    match whole {
        Ok(Some(head)) => {
            assert!(head <= input.len() && head <= max && head <= seen, "head {head} input {} max {max}", input.len());
            assert_eq!(first_terminator(input), Some(head), "head does not end at the first blank line");
        }
        Ok(None) => {
            assert!(input.len() < max, "no answer at {} bytes with limit {max}", input.len());
            assert_eq!(first_terminator(input), None);
        }
        Err(e) => {
            assert_eq!(e, TOO_LARGE);
            assert!(input.len() >= max, "431 below the limit");
            assert!(first_terminator(&input[..max]).is_none(), "431 although the head fits");
        }
    }
    let Ok(Some(head_len)) = whole else { return };
    let head = &input[..head_len];

    let mut out = Vec::new();
    match route(head, &policy, &limits) {
        Ok(Route::Home) => {}
        Ok(Route::Upgrade(up)) => {
            assert!(up.protocol.is_none_or(|i| i < policy.subprotocols.len()));
            let ext = up.extensions.as_deref().and_then(|e| negotiate(e, &DeflateConfig::default()).ok().flatten());
            write_switching(&mut out, &up, &policy, ext.as_ref().map(|x| x.1.as_str()), &[]);
            assert_eq!(first_terminator(&out), Some(out.len()), "101 response split by a header value");
            assert!(out.starts_with(b"HTTP/1.1 101 "));
            assert!(up.accept.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)));
        }
        Err(e) => {
            assert!(matches!(e.status, 400 | 403 | 404 | 405 | 431), "unexpected status {}", e.status);
            if e.status == 431 {
                assert!(header_count(head) > limits.max_headers.min(256), "431 with few headers");
            }
            write_error(&mut out, &e);
            assert_eq!(first_terminator(&out).map(|n| &out[n..]), Some(format!("{}\n", e.reason).as_bytes()));
        }
    }

    // The client side parses response heads; the same bytes must not panic it.
    if let Ok(Some(r)) = parse_response(input, &limits) {
        assert!(r.head_len <= input.len());
        assert_eq!(first_terminator(input), Some(r.head_len));
    }
});
