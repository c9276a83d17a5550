//! Payload unmasking: the word-at-a-time `apply_mask` against the byte loop
//! `apply_mask_ref`, at 20 B, 1 KiB, 64 KiB and 1 MiB.
//!
//! The buffer is masked in place over and over (XOR is its own inverse, so
//! the contents just toggle); no copy or allocation is timed. The `unaligned`
//! variant starts one byte into a 16-byte-aligned allocation, as a payload
//! does after a 6-byte header, and uses a non-zero key phase.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsecho::proto::mask::{apply_mask, apply_mask_ref};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [(usize, &str); 4] = [(20, "20B"), (1024, "1KiB"), (64 * 1024, "64KiB"), (1024 * 1024, "1MiB")];

fn bench_mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for (size, label) in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        // A Vec<u128> gives a 16-byte-aligned start; view it as bytes.
        let mut words = vec![0x5a5a_5a5a_5a5a_5a5a_5a5a_5a5a_5a5a_5a5au128; size / 16 + 2];
        let bytes: &mut [u8] = bytemuck_bytes(&mut words);
        g.bench_with_input(BenchmarkId::new("apply_mask", label), &size, |b, &n| {
            b.iter(|| apply_mask(black_box(&mut bytes[..n]), black_box(KEY), 0))
        });
        g.bench_with_input(BenchmarkId::new("apply_mask_unaligned", label), &size, |b, &n| {
            b.iter(|| apply_mask(black_box(&mut bytes[1..1 + n]), black_box(KEY), 3))
        });
        g.bench_with_input(BenchmarkId::new("apply_mask_ref", label), &size, |b, &n| {
            b.iter(|| apply_mask_ref(black_box(&mut bytes[..n]), black_box(KEY), 0))
        });
    }
    g.finish();
}

/// The bytes of a `u128` slice (safe: u8 has no alignment or validity needs).
fn bytemuck_bytes(words: &mut [u128]) -> &mut [u8] {
    let len = std::mem::size_of_val(words);
    // SAFETY: the pointer and length cover exactly the slice's initialized
    // memory, u8 accepts any bit pattern, and the borrow is carried over.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

criterion_group!(benches, bench_mask);
criterion_main!(benches);
