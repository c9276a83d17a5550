//! Differential test: the short-frame fast path (`Session::echo_short_run`,
//! taken by `echo_frames` for a sink that does not want each frame) against
//! the general path (`Session::next` + one `send_frame` per frame, taken for
//! a sink whose `wants_each_frame` is true).
//!
//! A seeded generator builds random client byte streams — short and long
//! text/binary frames, invalid UTF-8, pings, pongs, closes (valid, bad code,
//! 1-byte), fragmented messages (and continuations out of place), RSV bits,
//! unmasked frames, reserved opcodes, frames over the limits — with random
//! masks, cuts them at random points, and feeds both paths the way the
//! reactor does (append, echo, keep the unconsumed tail). Every call's
//! `Echoed`, the session's observable state after it, and the echo bytes must
//! be identical.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wsecho::proto::echo::{echo_frames, Echoed, FrameSink};
use wsecho::proto::frame::{write_frame, OpCode};
use wsecho::proto::{Limits, Role, Session};

/// A `Vec` sink that asks for every frame: `echo_frames` then never takes
/// the fast path.
struct EachFrame(Vec<u8>);

impl FrameSink for EachFrame {
    type Error = std::convert::Infallible;
    fn frame(&mut self, header: &[u8], payload: &[u8]) -> Result<(), Self::Error> {
        self.0.extend_from_slice(header);
        self.0.extend_from_slice(payload);
        Ok(())
    }
    fn wants_each_frame(&self) -> bool {
        true
    }
}

/// What one path did with a stream: per call, the result and the session's
/// observable state; then all echo bytes.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    calls: Vec<(Echoed, bool, bool, Option<bool>)>,
    out: Vec<u8>,
}

fn run<S: FrameSink<Error = std::convert::Infallible>>(
    input: &[u8],
    cuts: &[usize],
    limits: &Limits,
    sink: &mut S,
) -> Vec<(Echoed, bool, bool, Option<bool>)> {
    let mut s = Session::new(Role::Server);
    let mut buf = Vec::new();
    let mut calls = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        buf.extend_from_slice(&input[last..c]);
        last = c;
        let r = echo_frames(&mut s, &mut buf, limits, sink, None).unwrap();
        calls.push((r, s.in_message(), s.mid_frame(), s.msg_compressed()));
        if r.end.is_some() {
            break;
        }
        buf.drain(..r.consumed);
    }
    calls
}

/// Both paths over the same stream and cuts.
fn both(input: &[u8], cuts: &[usize], limits: &Limits) -> (Run, Run) {
    let mut fast = Vec::new();
    let calls = run(input, cuts, limits, &mut fast);
    let fast = Run { calls, out: fast };
    let mut general = EachFrame(Vec::new());
    let calls = run(input, cuts, limits, &mut general);
    (fast, Run { calls, out: general.0 })
}

/// One random client frame (sometimes a broken one) appended to `out`.
fn random_frame(rng: &mut StdRng, out: &mut Vec<u8>, in_message: &mut bool) {
    let key: [u8; 4] = rng.gen();
    let short = rng.gen_range(0..=125usize);
    let utf8 = |rng: &mut StdRng, n: usize| -> Vec<u8> {
        let s: String = (0..n).map(|_| ['a', 'é', '€', '𝄞', ' '][rng.gen_range(0..5)]).collect();
        s.into_bytes()
    };
    match rng.gen_range(0..100) {
        // The fast path's diet: complete short unfragmented data frames.
        0..=44 => {
            let p: Vec<u8> = (0..short).map(|_| rng.gen()).collect();
            write_frame(out, true, 0, OpCode::Binary, Some(key), &p);
        }
        45..=64 => {
            let mut p = utf8(rng, short / 4);
            p.truncate(125);
            // Cut inside a code point now and then: invalid at the end.
            if rng.gen_bool(0.1) && !p.is_empty() {
                p.pop();
            }
            write_frame(out, true, 0, OpCode::Text, Some(key), &p);
        }
        65..=67 => {
            let mut p: Vec<u8> = utf8(rng, 3);
            p.push(0xFF); // never UTF-8
            write_frame(out, true, 0, OpCode::Text, Some(key), &p);
        }
        68..=71 => {
            let p: Vec<u8> = (0..rng.gen_range(126..400)).map(|_| rng.gen()).collect();
            let op = if rng.gen() { OpCode::Binary } else { OpCode::Text };
            let p = if op == OpCode::Text { utf8(rng, p.len() / 2) } else { p };
            write_frame(out, true, 0, op, Some(key), &p);
        }
        72..=77 => {
            // A fragment: first, middle or last as the message stands.
            let p = utf8(rng, short / 4);
            let fin = rng.gen_bool(0.4);
            let op = if *in_message {
                OpCode::Continuation
            } else if rng.gen() {
                OpCode::Text
            } else {
                OpCode::Binary
            };
            write_frame(out, fin, 0, op, Some(key), &p);
            *in_message = !fin;
        }
        78..=80 => {
            let p: Vec<u8> = (0..rng.gen_range(0..20)).map(|_| rng.gen()).collect();
            write_frame(out, true, 0, OpCode::Ping, Some(key), &p);
        }
        81..=82 => write_frame(out, true, 0, OpCode::Pong, Some(key), b"pong"),
        83 => {
            let code: u16 = [1000, 1001, 4000, 1005, 999, 1016][rng.gen_range(0..6)];
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(b"bye");
            write_frame(out, true, 0, OpCode::Close, Some(key), &p);
        }
        84 => write_frame(out, true, 0, OpCode::Close, Some(key), &[3]),
        85..=86 => {
            let p = utf8(rng, 2);
            write_frame(out, true, 0x40 >> rng.gen_range(0..3), OpCode::Text, Some(key), &p);
        }
        87..=88 => write_frame(out, true, 0, OpCode::Binary, None, b"unmasked"),
        89 => {
            let op = [0x3u8, 0x7, 0xB, 0xF][rng.gen_range(0..4)];
            out.extend_from_slice(&[0x80 | op, 0x80, 1, 2, 3, 4]);
        }
        90..=91 => {
            // Continuation or a new message where the other was due.
            let op = if *in_message { OpCode::Binary } else { OpCode::Continuation };
            write_frame(out, true, 0, op, Some(key), b"x");
        }
        _ => {
            // Short frames near the small limits below (1009 paths).
            let p: Vec<u8> = (0..rng.gen_range(30..60)).map(|_| rng.gen()).collect();
            write_frame(out, true, 0, OpCode::Binary, Some(key), &p);
        }
    }
}

#[test]
fn fast_path_output_and_errors_match_the_general_path_over_random_streams() {
    let mut rng = StdRng::seed_from_u64(0x5eed_f457);
    let mut fast_frames = 0usize;
    for case in 0..3000 {
        let mut input = Vec::new();
        let mut in_message = false;
        for _ in 0..rng.gen_range(1..40) {
            random_frame(&mut rng, &mut input, &mut in_message);
        }
        let mut cuts: Vec<usize> = (0..rng.gen_range(0..6)).map(|_| rng.gen_range(0..=input.len())).collect();
        cuts.sort_unstable();
        let limits = match case % 3 {
            0 => Limits::default(),
            1 => Limits { max_frame_payload: 50, max_message: 200, ..Limits::default() },
            _ => Limits { max_held_frame: rng.gen_range(0..30), max_message: 45, ..Limits::default() },
        };
        let (fast, general) = both(&input, &cuts, &limits);
        assert_eq!(fast, general, "case {case}: cuts {cuts:?}, input {input:02x?}");
        fast_frames += fast.calls.iter().filter(|c| c.0.end.is_none()).count();
    }
    assert!(fast_frames > 0);
}

/// The generator must reach the fast path, or the comparison above proves
/// nothing: a run of short frames is echoed by it, and the general path
/// gives the same bytes.
#[test]
fn fast_path_is_taken_for_a_run_of_short_frames() {
    let mut input = Vec::new();
    for i in 0..10u8 {
        write_frame(&mut input, true, 0, OpCode::Binary, Some([i, 7, 9, 1]), &[i; 20]);
    }
    let mut s = Session::new(Role::Server);
    let mut copy = input.clone();
    let run = s.echo_short_run(&mut copy, &Limits::default());
    assert_eq!((run.frames, run.consumed, run.written, run.payload), (10, input.len(), input.len() - 40, 200));
    let (fast, general) = both(&input, &[], &Limits::default());
    assert_eq!(fast, general);
    assert_eq!(&copy[..run.written], &fast.out[..]);
}

/// Every payload length the fast path takes (0..=125: the byte, 4-byte and
/// word shapes of its unmasking), Binary and Text (ASCII, other UTF-8, and
/// invalid UTF-8 at the end of a run), each run starting at every offset of
/// the echo's lag behind its input: the run's counts, its echo, and that
/// the frame it stops at is left exactly as it came.
#[test]
fn fast_path_counts_echo_and_leftover_at_every_short_length() {
    let mut rng = StdRng::seed_from_u64(0xfa57_1e55);
    for len in 0..=125usize {
        for lead in 0..4usize {
            let mut input = Vec::new();
            let mut expect = Vec::new();
            let (mut binary_frames, mut binary_payload, mut frames, mut payload) = (0, 0, 0, 0);
            // `lead` frames before the one of length `len`, so the echo
            // lags its input by 4, 8, 12 or 16 bytes when it gets there.
            let mut lens: Vec<usize> = (0..lead).map(|_| rng.gen_range(0..=125)).collect();
            lens.push(len);
            for (i, &n) in lens.iter().enumerate() {
                let key: [u8; 4] = rng.gen();
                let (op, p) = match (i + len) % 3 {
                    0 => (OpCode::Binary, (0..n).map(|_| rng.gen()).collect::<Vec<u8>>()),
                    1 => (OpCode::Text, (0..n).map(|_| rng.gen_range(0x20..0x7F)).collect()),
                    _ => {
                        let mut p: Vec<u8> = "é".repeat(n / 2).into_bytes();
                        p.resize(n, b'a');
                        (OpCode::Text, p)
                    }
                };
                write_frame(&mut input, true, 0, op, Some(key), &p);
                write_frame(&mut expect, true, 0, op, None, &p);
                frames += 1;
                payload += n;
                if op == OpCode::Binary {
                    binary_frames += 1;
                    binary_payload += n;
                }
            }
            // Then a text frame that is not UTF-8: the run stops there.
            let stop = input.len();
            let bad: Vec<u8> = (0..len.max(1)).map(|i| if i == len.max(1) - 1 { 0xFF } else { b'a' }).collect();
            write_frame(&mut input, true, 0, OpCode::Text, Some(rng.gen()), &bad);
            let mut buf = input.clone();
            let mut s = Session::new(Role::Server);
            let run = s.echo_short_run(&mut buf, &Limits::default());
            assert_eq!(
                (run.consumed, run.written, run.frames, run.payload, run.binary_frames, run.binary_payload),
                (stop, expect.len(), frames, payload, binary_frames, binary_payload),
                "len {len} lead {lead}"
            );
            assert_eq!(&buf[..run.written], &expect[..], "len {len} lead {lead}");
            assert_eq!(&buf[stop..], &input[stop..], "len {len} lead {lead}");
            assert_eq!(s.msg_text(), (lead + len) % 3 != 0, "len {len} lead {lead}");
        }
    }
}
