//! "No allocation per echoed message on the steady-state path", checked
//! with a counting global allocator (this is a `harness = false` bench, so
//! `cargo bench --bench alloc_check` runs it; it exits non-zero on failure).
//!
//! 10,000 masked client frames — binary and text, 20 B to 4 KiB, pings and
//! pongs, and fragmented messages — are echoed by `echo_frames` into a
//! `Vec<u8>` reserved beforehand: once as one buffer, and once fed in 4 KiB
//! "reads" that split frames (and code points) at arbitrary points, keeping
//! unconsumed bytes at the front of a preallocated buffer as the reactor
//! does. Every allocation, reallocation and deallocation made while
//! `echo_frames` runs is counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use wsecho::proto::echo::echo_frames;
use wsecho::proto::frame::{write_frame, FrameHeader, OpCode};
use wsecho::proto::{Limits, Role, Session};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static REALLOCS: AtomicUsize = AtomicUsize::new(0);
static FREES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCS.fetch_add(1, Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCS.fetch_add(1, Relaxed);
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            REALLOCS.fetch_add(1, Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Relaxed) {
            FREES.fetch_add(1, Relaxed);
        }
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FRAMES: usize = 10_000;
const READ: usize = 4096;

/// The client's frames, the number of frames, and the exact echo expected.
fn workload() -> (Vec<u8>, usize, Vec<u8>) {
    let mut input = Vec::new();
    let mut expect = Vec::new();
    let text = "héllo wörld κόσμε 世界 🚀 ".repeat(200);
    let mut frames = 0;
    let mut i = 0u32;
    while frames < FRAMES {
        let key = i.wrapping_mul(0x9E37_79B9).to_le_bytes();
        let mut frame = |fin: bool, op: OpCode, p: &[u8], reply: Option<OpCode>| {
            write_frame(&mut input, fin, 0, op, Some(key), p);
            if let Some(r) = reply {
                write_frame(&mut expect, fin, 0, r, None, p);
            }
            frames += 1;
        };
        match i % 8 {
            0..=2 => frame(true, OpCode::Binary, &[i as u8; 20], Some(OpCode::Binary)),
            3 => frame(true, OpCode::Text, b"hello, echo server!!", Some(OpCode::Text)),
            4 => {
                let n = text.char_indices().nth(17 + (i as usize % 400)).unwrap().0;
                frame(true, OpCode::Text, &text.as_bytes()[..n], Some(OpCode::Text))
            }
            5 => frame(true, OpCode::Ping, b"ping", Some(OpCode::Pong)),
            6 => frame(true, OpCode::Pong, b"pong", None),
            _ => {
                // A text message in three fragments, cut inside code points.
                let t = &text.as_bytes()[..301];
                frame(false, OpCode::Text, &t[..100], Some(OpCode::Text));
                frame(false, OpCode::Continuation, &t[100..200], Some(OpCode::Continuation));
                frame(true, OpCode::Continuation, &t[200..], Some(OpCode::Continuation));
            }
        }
        i += 1;
    }
    assert!(std::str::from_utf8(&text.as_bytes()[..301]).is_ok());
    (input, frames, expect)
}

/// Echo `input` in one call; returns (allocs, reallocs, frees).
fn whole(input: &[u8], out: &mut Vec<u8>) -> (usize, usize, usize) {
    let limits = Limits::default();
    let mut session = Session::new(Role::Server);
    let mut buf = input.to_vec();
    out.clear();
    counted(|| {
        let r = echo_frames(&mut session, &mut buf, &limits, out, None).unwrap();
        assert_eq!((r.consumed, r.end), (input.len(), None));
    })
}

/// Echo `input` arriving in `READ`-byte reads, keeping the unfinished frame
/// at the front of a preallocated buffer like the reactor.
fn chunked(input: &[u8], out: &mut Vec<u8>) -> (usize, usize, usize) {
    let limits = Limits::default();
    let mut session = Session::new(Role::Server);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    out.clear();
    counted(|| {
        for read in input.chunks(READ) {
            buf.extend_from_slice(read); // within capacity: no allocation
            let r = echo_frames(&mut session, &mut buf, &limits, out, None).unwrap();
            assert!(r.end.is_none());
            buf.copy_within(r.consumed.., 0);
            buf.truncate(buf.len() - r.consumed);
        }
        assert!(buf.is_empty());
    })
}

/// Eight 1 MiB frames arriving in 64 KiB reads: each is streamed (echoed
/// piece by piece as it arrives), so the buffer never holds more than one
/// read plus a frame header. Returns the counts and the echoed payload.
fn large_streamed(out: &mut Vec<u8>) -> ((usize, usize, usize), Vec<u8>, Vec<u8>) {
    const FRAME: usize = 1 << 20;
    let limits = Limits::default();
    let mut session = Session::new(Role::Server);
    let mut plain = Vec::new();
    let mut input = Vec::new();
    for f in 0..8u32 {
        let payload: Vec<u8> = (0..FRAME as u32).map(|i| (i.wrapping_mul(31) ^ f) as u8).collect();
        write_frame(&mut input, true, 0, OpCode::Binary, Some([9, 8, 7, f as u8]), &payload);
        plain.extend_from_slice(&payload);
    }
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024 + 64);
    out.clear();
    let counts = counted(|| {
        for read in input.chunks(64 * 1024) {
            buf.extend_from_slice(read); // within capacity: no allocation
            let r = echo_frames(&mut session, &mut buf, &limits, out, None).unwrap();
            assert!(r.end.is_none());
            buf.copy_within(r.consumed.., 0);
            buf.truncate(buf.len() - r.consumed);
            assert!(buf.len() <= 14, "held {} bytes of a streamed frame", buf.len());
        }
        assert!(buf.is_empty());
    });
    // The echo, frame by frame: payloads concatenated.
    let mut echoed = Vec::with_capacity(plain.len());
    let mut at = 0;
    while at < out.len() {
        let (h, n) = FrameHeader::decode(&out[at..], Role::Client, 0, u64::MAX >> 1).unwrap().unwrap();
        echoed.extend_from_slice(&out[at + n..at + n + h.payload_len as usize]);
        at += n + h.payload_len as usize;
    }
    (counts, echoed, plain)
}

fn counted(f: impl FnOnce()) -> (usize, usize, usize) {
    ALLOCS.store(0, Relaxed);
    REALLOCS.store(0, Relaxed);
    FREES.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    f();
    COUNTING.store(false, Relaxed);
    (ALLOCS.load(Relaxed), REALLOCS.load(Relaxed), FREES.load(Relaxed))
}

fn main() {
    // The counter itself works: one Vec allocation is seen as one.
    let (a, _, f) = counted(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(64))));
    assert_eq!((a, f), (1, 1), "counting allocator is not counting");

    let (input, frames, expect) = workload();
    let mut out = Vec::with_capacity(expect.len());
    let mut failed = false;
    for (name, run) in
        [("one buffer", whole as fn(&[u8], &mut Vec<u8>) -> (usize, usize, usize)), ("4 KiB reads", chunked)]
    {
        let (a, r, f) = run(&input, &mut out);
        assert_eq!(out, expect, "{name}: wrong echo");
        println!(
            "alloc_check ({name}): {frames} frames, {} input bytes, {} output bytes: \
             {a} allocations, {r} reallocations, {f} frees",
            input.len(),
            out.len()
        );
        failed |= a + r + f != 0;
    }
    let mut out = Vec::with_capacity(9 << 20);
    let ((a, r, f), echoed, plain) = large_streamed(&mut out);
    assert!(echoed == plain, "1 MiB frames: wrong echo");
    println!(
        "alloc_check (1 MiB frames, 64 KiB reads, streamed): 8 frames, {} output bytes: \
         {a} allocations, {r} reallocations, {f} frees",
        out.len()
    );
    failed |= a + r + f != 0;
    if failed {
        eprintln!("alloc_check: FAILED, the steady-state echo path allocated");
        std::process::exit(1);
    }
    println!("alloc_check: ok, 0 allocations on the steady-state echo path");
}
