//! Encoding server (unmasked) frames: header encode plus the payload copy
//! into a `Vec<u8>`, as the echo path's `Vec` sink does. The output `Vec` is
//! reserved once and cleared every iteration, so no allocation is timed.
//! Throughput is in payload bytes.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsecho::proto::echo::send_frame;
use wsecho::proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};

const SIZES: [(usize, &str); 3] = [(20, "20B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_encode");
    for (size, label) in SIZES {
        let payload = vec![0xA5u8; size];
        let mut out: Vec<u8> = Vec::with_capacity(size + MAX_HEADER_LEN);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("send_frame_vec", label), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                send_frame(&mut out, true, 0, OpCode::Binary, black_box(p)).unwrap();
                black_box(out.len())
            })
        });
    }
    // The header alone, for scale.
    g.throughput(Throughput::Elements(1));
    g.bench_function("header_only_64KiB", |b| {
        let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: 64 * 1024 };
        let mut hdr = [0u8; MAX_HEADER_LEN];
        b.iter(|| black_box(&h).encode(black_box(&mut hdr)))
    });
    g.finish();
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
