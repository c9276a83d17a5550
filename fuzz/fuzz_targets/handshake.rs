//! The upgrade request path: `RequestScanner::feed` over chunked input, then
//! `route` and `accept` (the responses and extension negotiation that follow).
//!
//! Input: byte 0 seeds the chunk sizes, byte 1 picks limits and policy
//! (bit 0: small limits — 32..=1039 request bytes and 0..=7 headers — so the
//! 431 paths are reachable; bits 1–2: origin policy; bit 7: compression off),
//! the rest is what the client sent (bytes after the head are `accept`'s
//! `rest`: early data or pipelined requests).
//!
//! Invariants: no panic; chunked scanning agrees with scanning everything at
//! once; a head ends at the *first* `\r\n\r\n` and fits both the input and the
//! limit; 431 from the scanner only once the limit is reached without a
//! terminator inside it, `Ok(None)` only below the limit; `route` answers only
//! with the statuses it documents; an accepted upgrade is HTTP/1.1 with exactly
//! one `Host` and one `Sec-WebSocket-Key` line and at most one
//! `Sec-WebSocket-Version` and `Origin` line (counted by a line splitter of
//! our own, not httparse); `accept` agrees with `route` + `negotiate` +
//! `write_response`/`write_switching`, refuses bytes after the head exactly
//! for valid upgrades, and writes nothing on error; responses never contain a
//! header-splitting CR/LF from client-supplied values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsecho::proto::deflate::{negotiate, CompressionMode, DeflateConfig};
use wsecho::proto::handshake::{
    accept, parse_response, route, write_error, write_response, write_switching, Accepted, OriginPolicy,
    RequestScanner, Route, UpgradePolicy, EARLY_DATA, TOO_LARGE,
};
use wsecho::proto::Limits;

const HOME_PAGE: &[u8] = b"<!doctype html><p>home</p>";

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

/// The head's lines after the request line, split on LF with any CR before
/// it dropped (httparse also takes bare LF), and the request line itself
/// (httparse skips empty lines before it).
fn lines(head: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let mut it = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).skip_while(|l| l.is_empty());
    let request_line = it.next().unwrap_or(b"");
    (request_line, it.filter(|l| !l.is_empty()).collect())
}

/// How many header lines are named `name` (ASCII case-insensitive).
fn lines_named(head: &[u8], name: &str) -> usize {
    let (_, headers) = lines(head);
    headers.iter().filter(|l| l.split(|&b| b == b':').next().is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))).count()
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
    let deflate = if config & 0x80 != 0 {
        DeflateConfig { mode: CompressionMode::Off, ..DeflateConfig::default() }
    } else {
        DeflateConfig::default()
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

    let rest = &input[head_len..];

    let routed = route(head, &policy, &limits);
    // What accept must have written for this head (None: an error).
    let mut expected: Option<(Accepted, Vec<u8>)> = None;
    let mut expected_err = None;
    let mut out = Vec::new();
    match &routed {
        Ok(Route::Home) => {
            write_response(&mut out, 200, "text/html; charset=utf-8", &[], HOME_PAGE);
            expected = Some((Accepted::Home, out));
        }
        Ok(Route::Upgrade(up)) => {
            assert!(up.protocol.is_none_or(|i| i < policy.subprotocols.len()));
            assert!(up.accept.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)));
            let (request_line, _) = lines(head);
            assert!(request_line.ends_with(b" HTTP/1.1"), "upgrade not over HTTP/1.1");
            assert_eq!(lines_named(head, "Host"), 1, "upgrade without exactly one Host");
            assert_eq!(lines_named(head, "Sec-WebSocket-Key"), 1, "upgrade without exactly one key");
            assert!(lines_named(head, "Sec-WebSocket-Version") == 1, "upgrade with a repeated version");
            assert!(lines_named(head, "Origin") <= 1, "upgrade with a repeated Origin");
            let agreed = match up.extensions.as_deref() {
                Some(e) => negotiate(e, &deflate),
                None => Ok(None),
            };
            match agreed {
                _ if !rest.is_empty() => expected_err = Some(EARLY_DATA),
                Err(e) => expected_err = Some(e),
                Ok(agreed) => {
                    write_switching(&mut out, up, &policy, agreed.as_ref().map(|x| x.1.as_str()), &[]);
                    assert_eq!(first_terminator(&out), Some(out.len()), "101 response split by a header value");
                    assert!(out.starts_with(b"HTTP/1.1 101 "));
                    let acc = Accepted::Upgrade { deflate: agreed.map(|x| x.0), protocol: up.protocol };
                    expected = Some((acc, out));
                }
            }
        }
        Err(e) => {
            assert!(matches!(e.status, 400 | 403 | 404 | 405 | 431), "unexpected status {}", e.status);
            if e.status == 431 {
                assert!(header_count(head) > limits.max_headers.min(256), "431 with few headers");
            }
            expected_err = Some(*e);
        }
    }
    if let Ok(Route::Home) = routed {
        // Home needs Host on HTTP/1.1 and never two.
        let (request_line, _) = lines(head);
        let hosts = lines_named(head, "Host");
        assert!(hosts <= 1 && (hosts == 1 || !request_line.ends_with(b" HTTP/1.1")), "home with {hosts} Host lines");
    }

    let mut acc_out = b"prior".to_vec();
    let accepted = accept(head, rest, &policy, &deflate, &limits, HOME_PAGE, &mut acc_out);
    assert!(acc_out.starts_with(b"prior"), "accept overwrote earlier output");
    let written = &acc_out[5..];
    match (accepted, expected, expected_err) {
        (Ok(got), Some((want, bytes)), None) => {
            assert_eq!(got, want);
            assert_eq!(written, &bytes[..], "accept wrote other bytes than route + write_*");
        }
        (Err(got), None, Some(want)) => {
            assert_eq!(got, want);
            assert!(written.is_empty(), "accept wrote bytes on error");
            let mut err = Vec::new();
            write_error(&mut err, &got);
            assert_eq!(first_terminator(&err).map(|n| &err[n..]), Some(format!("{}\n", got.reason).as_bytes()));
        }
        (got, want, want_err) => panic!("accept gave {got:?}, expected {want:?} / {want_err:?}"),
    }

    // The client side parses response heads; the same bytes must not panic it.
    if let Ok(Some(r)) = parse_response(input, &limits) {
        assert!(r.head_len <= input.len());
        assert_eq!(first_terminator(input), Some(r.head_len));
    }
});
