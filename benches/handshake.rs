//! The opening handshake for a typical browser request (Chrome-like, about
//! 500 bytes, 12 headers): find the end of the head (`RequestScanner::feed`),
//! parse and check it (`route`: httparse, gorilla's checks, key decode,
//! SHA-1 + base64 accept key) and write the `101` response. Component lines
//! (`scan`, `route`, `accept_key`, `write_101`) show where the time goes;
//! `full_scan_accept` is what the reactor runs — `accept`, which adds the
//! permessage-deflate negotiation of the request's offer to the above.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use wsecho::proto::deflate::DeflateConfig;
use wsecho::proto::handshake::{
    accept, accept_key, route, write_switching, Accepted, RequestScanner, Route, UpgradePolicy,
};
use wsecho::proto::Limits;

const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

fn handshake_once(req: &[u8], policy: &UpgradePolicy, limits: &Limits, out: &mut Vec<u8>) -> usize {
    let head = RequestScanner::default().feed(req, limits).unwrap().unwrap();
    let Ok(Route::Upgrade(up)) = route(&req[..head], policy, limits) else {
        panic!("not an upgrade");
    };
    out.clear();
    write_switching(out, &up, policy, None, &[]);
    out.len()
}

fn accept_once(
    req: &[u8],
    policy: &UpgradePolicy,
    deflate: &DeflateConfig,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> usize {
    let head = RequestScanner::default().feed(req, limits).unwrap().unwrap();
    out.clear();
    let accepted = accept(&req[..head], &req[head..], policy, deflate, limits, b"", out);
    assert!(matches!(accepted, Ok(Accepted::Upgrade { deflate: Some(_), .. })), "{accepted:?}");
    out.len()
}

fn bench_handshake(c: &mut Criterion) {
    let limits = Limits::default();
    let policy = UpgradePolicy::default();
    let headers = REQUEST.split(|&b| b == b'\n').count() - 3; // request line, blank line, end
    assert_eq!(headers, 12);
    let mut out = Vec::with_capacity(256);
    handshake_once(REQUEST, &policy, &limits, &mut out);
    // RFC 6455 §1.3's sample key and accept value.
    assert!(out.windows(28).any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));

    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("full_scan_route_write101", |b| {
        b.iter(|| handshake_once(black_box(REQUEST), &policy, &limits, &mut out))
    });
    let deflate = DeflateConfig::default();
    accept_once(REQUEST, &policy, &deflate, &limits, &mut out);
    assert!(out.windows(28).any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert!(out.windows(26).any(|w| w == b"Sec-WebSocket-Extensions: "));
    g.bench_function("full_scan_accept", |b| {
        b.iter(|| accept_once(black_box(REQUEST), &policy, &deflate, &limits, &mut out))
    });
    g.bench_function("scan", |b| b.iter(|| RequestScanner::default().feed(black_box(REQUEST), &limits)));
    g.bench_function("route", |b| b.iter(|| route(black_box(REQUEST), &policy, &limits)));
    g.bench_function("accept_key", |b| b.iter(|| accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ=="))));
    let Ok(Route::Upgrade(up)) = route(REQUEST, &policy, &limits) else { unreachable!() };
    g.bench_function("write_101", |b| {
        b.iter(|| {
            out.clear();
            write_switching(&mut out, black_box(&up), &policy, None, &[]);
            out.len()
        })
    });
    g.finish();
    eprintln!("handshake: request {} bytes, {headers} headers", REQUEST.len());
}

criterion_group!(benches, bench_handshake);
criterion_main!(benches);
