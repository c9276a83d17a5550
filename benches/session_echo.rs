//! The whole in-memory echo step: masked client frames in, unmasked server
//! frames out, through `echo_frames` with a `Vec<u8>` sink — header decode,
//! session rules, unmask, (UTF-8 for text), header encode, payload copy.
//!
//! `echo_frames` unmasks in place, so every iteration first restores the
//! masked input with `copy_from_slice` into a buffer allocated once, *inside*
//! the timed loop. That copy is deliberately counted: the reactor pays the
//! same kind of copy when it reads from the socket into its buffer. (The
//! `copy_only` line measures it alone, for scale.) The output `Vec` is
//! reserved once and cleared each iteration, so nothing is allocated per
//! iteration; `benches/alloc_check.rs` checks that with a counting allocator.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsecho::proto::echo::echo_frames;
use wsecho::proto::frame::{write_frame, OpCode};
use wsecho::proto::{Limits, Role, Session};

/// Masked client frames carrying `payloads`, and the echo they should get.
fn build(opcode: OpCode, payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let mut input = Vec::new();
    let mut expect = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let key = (i as u32).wrapping_mul(0x9E37_79B9).to_le_bytes();
        write_frame(&mut input, true, 0, opcode, Some(key), p);
        write_frame(&mut expect, true, 0, opcode, None, p);
    }
    (input, expect)
}

/// One echo step over a fresh copy of `input`; returns bytes consumed.
#[inline]
fn echo_once(input: &[u8], work: &mut [u8], out: &mut Vec<u8>, limits: &Limits) -> usize {
    work.copy_from_slice(input);
    out.clear();
    let r = echo_frames(&mut Session::new(Role::Server), work, limits, out, None).unwrap();
    r.consumed
}

/// Run once outside the timer and check the echo is right.
fn check(input: &[u8], expect: &[u8], limits: &Limits) {
    let mut work = input.to_vec();
    let mut out = Vec::new();
    let r = echo_frames(&mut Session::new(Role::Server), &mut work, limits, &mut out, None).unwrap();
    assert_eq!(r.consumed, input.len());
    assert!(r.end.is_none());
    assert_eq!(out, expect);
}

fn bench_single(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("echo_one_frame");
    for (size, label) in [(20usize, "20B"), (1024, "1KiB"), (64 * 1024, "64KiB"), (1024 * 1024, "1MiB")] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let (input, expect) = build(OpCode::Binary, &[payload]);
        check(&input, &expect, &limits);
        let mut work = vec![0u8; input.len()];
        let mut out = Vec::with_capacity(expect.len());
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("binary", label), &input, |b, inp| {
            b.iter(|| echo_once(black_box(inp), &mut work, &mut out, &limits))
        });
    }
    g.finish();
}

fn bench_many_small(c: &mut Criterion) {
    const FRAMES: usize = 1000;
    let limits = Limits::default();
    let mut g = c.benchmark_group("echo_1000_frames_20B");
    g.throughput(Throughput::Elements(FRAMES as u64));
    for (name, opcode) in [("binary", OpCode::Binary), ("text", OpCode::Text)] {
        let payloads: Vec<Vec<u8>> = (0..FRAMES).map(|i| format!("msg {i:>15} ").into_bytes()).collect();
        assert!(payloads.iter().all(|p| p.len() == 20));
        let (input, expect) = build(opcode, &payloads);
        check(&input, &expect, &limits);
        let mut work = vec![0u8; input.len()];
        let mut out = Vec::with_capacity(expect.len());
        g.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, inp| {
            b.iter(|| echo_once(black_box(inp), &mut work, &mut out, &limits))
        });
        if opcode == OpCode::Binary {
            g.bench_with_input(BenchmarkId::from_parameter("copy_only"), &input, |b, inp| {
                b.iter(|| {
                    work.copy_from_slice(black_box(inp));
                    black_box(work.as_ptr());
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_single, bench_many_small);
criterion_main!(benches);
