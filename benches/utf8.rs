//! UTF-8 validation of text payloads: `Utf8Validator::push` (+ `finish`) on
//! pure ASCII and on mixed multibyte text (Latin-1, Greek, CJK, emoji) at
//! 1 KiB, 64 KiB and 1 MiB, next to `std::str::from_utf8` as the reference
//! line. Throughput is in payload bytes.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsecho::proto::utf8::Utf8Validator;

const SIZES: [(usize, &str); 3] = [(1024, "1KiB"), (64 * 1024, "64KiB"), (1024 * 1024, "1MiB")];

/// `size` bytes of ASCII text.
fn ascii(size: usize) -> Vec<u8> {
    b"The quick brown fox jumps over the lazy dog. 0123456789\n".iter().copied().cycle().take(size).collect()
}

/// About `size` bytes of valid mixed text (1-, 2-, 3- and 4-byte sequences),
/// cut back to the last whole code point.
fn mixed(size: usize) -> Vec<u8> {
    let sample = "héllo wörld — κόσμε, 世界你好, Привет мир 🚀🎉 naïve café; ";
    let mut s = String::with_capacity(size + sample.len());
    while s.len() < size {
        s.push_str(sample);
    }
    let mut end = size;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.into_bytes()
}

fn bench_utf8(c: &mut Criterion) {
    for (kind, make) in [("ascii", ascii as fn(usize) -> Vec<u8>), ("mixed", mixed)] {
        let mut g = c.benchmark_group(format!("utf8_{kind}"));
        for (size, label) in SIZES {
            let data = make(size);
            assert!(std::str::from_utf8(&data).is_ok());
            g.throughput(Throughput::Bytes(data.len() as u64));
            g.bench_with_input(BenchmarkId::new("validator_push", label), &data, |b, d| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    v.push(black_box(d)).unwrap();
                    v.finish().unwrap();
                })
            });
            g.bench_with_input(BenchmarkId::new("std_from_utf8", label), &data, |b, d| {
                b.iter(|| std::str::from_utf8(black_box(d)).is_ok())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_utf8);
criterion_main!(benches);
