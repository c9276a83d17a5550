//! `FrameHeader::decode` on masked client headers, one per length form:
//! 7-bit (2 + 4 bytes), 16-bit (4 + 4 bytes) and 64-bit (10 + 4 bytes).
//!
//! Throughput is in headers decoded (Elements(1) per iteration).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use wsecho::proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use wsecho::proto::{Limits, Role};

fn masked_header(payload_len: u64) -> ([u8; MAX_HEADER_LEN], usize) {
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n =
        FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: Some([0x37, 0xfa, 0x21, 0x3d]), payload_len }
            .encode(&mut buf);
    (buf, n)
}

fn bench_decode(c: &mut Criterion) {
    let max = Limits::default().max_frame_payload;
    let mut g = c.benchmark_group("frame_decode");
    g.throughput(Throughput::Elements(1));
    for (name, len, expect_hdr) in [("len7_20B", 20u64, 6usize), ("len16_1KiB", 1024, 8), ("len64_1MiB", 1 << 20, 14)] {
        let (buf, n) = masked_header(len);
        assert_eq!(n, expect_hdr);
        let decoded = FrameHeader::decode(&buf[..n], Role::Server, 0, max);
        assert!(matches!(decoded, Ok(Some((h, used))) if h.payload_len == len && used == n));
        g.bench_function(name, |b| {
            b.iter(|| FrameHeader::decode(black_box(&buf[..n]), Role::Server, 0, black_box(max)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
