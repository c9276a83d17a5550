//! Split equivalence, property-tested: however the reads cut the client's byte
//! stream, the server decodes the same frames and echoes the same bytes.
//!
//! The same check as `fuzz/fuzz_targets/frames_chunked.rs`, run on every
//! `cargo test` with structured inputs: random sequences of messages (text
//! split inside code points, binary, fragments with pings and pongs between
//! them, close frames) and broken frames (bad UTF-8, unmasked, reserved
//! opcodes and RSV bits, bad close payloads, oversized or fragmented control
//! frames, orphan continuations, 64-bit lengths with the top bit set,
//! messages over the limits), each masked with its own random key, then fed
//! unsplit and cut at random points. Feeding follows the reactor: one buffer,
//! new bytes appended to the bytes the session already unmasked in part, the
//! consumed prefix dropped after each read.
//!
//! With a small `Limits::max_held_frame` (16, 1 or 0 bytes) frames are
//! streamed piece by piece as they arrive, so the cuts change the framing of
//! data: decoded actions and echoes are then compared per message
//! (`fuzz/src/echo_view.rs`, shared with the fuzz targets). Without an error
//! the messages are identical; with one, the unsplit run's are a prefix of
//! the split run's (a piece before the bad byte may go out first).

#[allow(dead_code)]
#[path = "../fuzz/src/echo_view.rs"]
mod echo_view;

use echo_view::{is_prefix, normalise_server, parse_server_frames, push_data, Item};
use proptest::prelude::*;
use wsecho::proto::close::CloseCode;
use wsecho::proto::echo::{echo_frames, send_close, EchoEnd};
use wsecho::proto::frame::{write_frame, OpCode, RSV1};
use wsecho::proto::{Action, Limits, ProtocolError, Role, Session};

/// One frame as the client puts it on the wire.
#[derive(Debug, Clone)]
struct Wire {
    b0: u8,
    payload: Vec<u8>,
    key: Option<[u8; 4]>,
}

impl Wire {
    fn new(fin: bool, opcode: u8, payload: Vec<u8>, key: [u8; 4]) -> Self {
        Wire { b0: (fin as u8) << 7 | opcode, payload, key: Some(key) }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mask_bit = if self.key.is_some() { 0x80 } else { 0 };
        out.push(self.b0);
        let n = self.payload.len();
        if n <= 125 {
            out.push(mask_bit | n as u8);
        } else if n <= 0xFFFF {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        match self.key {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ k[i & 3]));
            }
            None => out.extend_from_slice(&self.payload),
        }
    }
}

/// Cut `bytes` into `parts + 1` fragments at the given fractions, so text is
/// split at arbitrary bytes, including inside code points.
fn fragment(bytes: &[u8], cuts: &[u16]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|&c| c as usize * bytes.len() / 1000).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in at.into_iter().chain(std::iter::once(bytes.len())) {
        out.push(bytes[last..c].to_vec());
        last = c;
    }
    out
}

/// A message made of fragments, with control frames between the fragments.
fn data_message(opcode: u8, bytes: Vec<u8>, cuts: Vec<u16>, ping: Option<Vec<u8>>, key: [u8; 4]) -> Vec<Wire> {
    let parts = fragment(&bytes, &cuts);
    let last = parts.len() - 1;
    let mut frames = Vec::new();
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            if let Some(ping) = &ping {
                let op = if i % 2 == 0 { 0xA } else { 0x9 };
                frames.push(Wire::new(true, op, ping.clone(), key));
            }
        }
        frames.push(Wire::new(i == last, if i == 0 { opcode } else { 0 }, p, key));
    }
    frames
}

fn key() -> impl Strategy<Value = [u8; 4]> {
    any::<[u8; 4]>()
}

fn cuts() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(0u16..=1000, 0..4)
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=125)
}

/// Valid messages and control frames.
fn valid() -> impl Strategy<Value = Vec<Wire>> {
    prop_oneof![
        // Text, fragmented anywhere (also inside code points).
        3 => (".{0,40}", cuts(), prop::option::of(control_payload()), key())
            .prop_map(|(s, c, p, k): (String, _, _, _)| data_message(0x1, s.into_bytes(), c, p, k)),
        // Binary, up to two 16-bit-length frames.
        3 => (prop::collection::vec(any::<u8>(), 0..300), cuts(), prop::option::of(control_payload()), key())
            .prop_map(|(b, c, p, k)| data_message(0x2, b, c, p, k)),
        1 => (control_payload(), key()).prop_map(|(p, k)| vec![Wire::new(true, 0x9, p, k)]),
        1 => (control_payload(), key()).prop_map(|(p, k)| vec![Wire::new(true, 0xA, p, k)]),
        // Close with a receivable code and a UTF-8 reason, or empty.
        1 => (prop::sample::select(vec![1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999]), "[a-zé]{0,20}", key())
            .prop_map(|(code, reason, k)| {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                vec![Wire::new(true, 0x8, p, k)]
            }),
        1 => key().prop_map(|k| vec![Wire::new(true, 0x8, Vec::new(), k)]),
    ]
}

/// Frames that break a rule (the decoder must fail the same way however the
/// stream is cut).
fn invalid() -> impl Strategy<Value = Vec<Wire>> {
    prop_oneof![
        // Text that is (almost always) not UTF-8, possibly fragmented.
        (prop::collection::vec(any::<u8>(), 1..40), cuts(), key())
            .prop_map(|(b, c, k)| data_message(0x1, b, c, None, k)),
        (prop::collection::vec(any::<u8>(), 0..20), key()).prop_map(|(p, _)| vec![Wire {
            b0: 0x82,
            payload: p,
            key: None
        }]),
        (prop::sample::select(vec![0x3u8, 0x7, 0xB, 0xF]), key()).prop_map(|(op, k)| vec![Wire::new(
            true,
            op,
            vec![1],
            k
        )]),
        (prop::sample::select(vec![0x40u8, 0x20, 0x10]), key()).prop_map(|(rsv, k)| {
            let mut w = Wire::new(true, 0x1, b"rsv".to_vec(), k);
            w.b0 |= rsv;
            vec![w]
        }),
        key().prop_map(|k| vec![Wire::new(true, 0x8, vec![0x03], k)]),
        (prop::sample::select(vec![0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000]), key())
            .prop_map(|(c, k)| vec![Wire::new(true, 0x8, c.to_be_bytes().to_vec(), k)]),
        key().prop_map(|k| vec![Wire::new(true, 0x8, vec![0x03, 0xE8, 0xFF], k)]),
        key().prop_map(|k| vec![Wire::new(true, 0x9, vec![0; 126], k)]),
        key().prop_map(|k| vec![Wire::new(false, 0x9, vec![], k)]),
        key().prop_map(|k| vec![Wire::new(true, 0x0, b"orphan".to_vec(), k)]),
        key().prop_map(|k| vec![Wire::new(false, 0x1, b"a".to_vec(), k), Wire::new(true, 0x1, b"b".to_vec(), k)]),
        // Over the small limits' 200-byte frame / 500-byte message caps.
        (cuts(), key()).prop_map(|(c, k)| data_message(0x2, vec![0x55; 520], c, None, k)),
    ]
}

/// A client stream: frames, optionally a raw trailer (a 64-bit length with
/// the top bit set, or garbage), and a cut-off point to leave a partial frame.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let item = prop_oneof![4 => valid(), 1 => invalid()];
    (
        prop::collection::vec(item, 0..8),
        prop_oneof![
            Just(Vec::new()),
            Just(vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            prop::collection::vec(any::<u8>(), 0..16),
        ],
        prop::option::of(0usize..2000),
    )
        .prop_map(|(items, trailer, cut_off)| {
            let mut out = Vec::new();
            for w in items.iter().flatten() {
                w.encode(&mut out);
            }
            out.extend_from_slice(&trailer);
            if let Some(n) = cut_off {
                out.truncate(n);
            }
            out
        })
}

/// A decoded action with its payload bytes copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Data { opcode: OpCode, fin: bool, rsv: u8, bytes: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(CloseCode, Vec<u8>)>),
}

#[derive(Debug, PartialEq, Eq)]
struct SessionRun {
    events: Vec<Event>,
    err: Option<ProtocolError>,
    leftover: Vec<u8>,
}

/// `held`: 0 keeps the default `max_held_frame`; 1, 2, 3 make it 16, 1, 0
/// (frames stream).
fn config(small: bool, rsv1: bool, held: usize) -> (Limits, u8) {
    let mut limits = if small {
        Limits { max_frame_payload: 200, max_message: 500, max_fragments: 3, ..Limits::default() }
    } else {
        Limits::default()
    };
    limits.max_held_frame = [limits.max_held_frame, 16, 1, 0][held];
    (limits, if rsv1 { RSV1 } else { 0 })
}

/// The decoded events per message.
fn messages(events: &[Event]) -> Vec<Item> {
    let mut items = Vec::new();
    for ev in events {
        match ev {
            Event::Data { opcode, fin, rsv, bytes } => push_data(&mut items, *opcode as u8, *rsv, *fin, bytes),
            Event::Ping(p) => items.push(Item::Ping(p.clone())),
            Event::Pong(p) => items.push(Item::Pong(p.clone())),
            Event::Close(c) => {
                let mut p = Vec::new();
                if let Some((code, reason)) = c {
                    p.extend_from_slice(&code.0.to_be_bytes());
                    p.extend_from_slice(reason);
                }
                items.push(Item::Close(p));
            }
        }
    }
    items
}

/// Whole and split session runs agree: same error; without one the same
/// messages and kept bytes, with one the whole run's messages a prefix of
/// the split run's.
fn same_messages(whole: &SessionRun, split: &SessionRun) -> Result<(), TestCaseError> {
    prop_assert_eq!(whole.err, split.err);
    let (w, s) = (messages(&whole.events), messages(&split.events));
    if whole.err.is_none() {
        prop_assert_eq!(&w, &s);
        prop_assert_eq!(&whole.leftover, &split.leftover);
    } else {
        prop_assert!(is_prefix(&w, &s), "whole {:?}\nsplit {:?}", w, s);
    }
    Ok(())
}

/// An echo per message, and its Close.
fn echo_messages(out: &[u8], rsv: u8) -> (Vec<Item>, Option<Option<u16>>) {
    let (frames, used) = parse_server_frames(out, rsv);
    assert_eq!(used, out.len(), "echo ends in a partial frame");
    let echo = normalise_server(&frames);
    (echo.items, echo.close)
}

fn session(rsv: u8) -> Session {
    let mut s = Session::new(Role::Server);
    s.set_rsv_allowed(rsv);
    s
}

/// `input` as the reads cut it at `cut_points` (fractions of 1000).
fn reads<'a>(input: &'a [u8], cut_points: &[u16]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cut_points.iter().map(|&c| c as usize * input.len() / 1000).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in at.into_iter().chain(std::iter::once(input.len())) {
        out.push(&input[last..c]);
        last = c;
    }
    out
}

fn run_session(reads: &[&[u8]], limits: &Limits, rsv: u8) -> SessionRun {
    let mut s = session(rsv);
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        let mut pos = 0;
        loop {
            match s.next(&mut buf[pos..], limits) {
                Ok(Some((action, used))) => {
                    let frame = &buf[pos..pos + used];
                    events.push(match action {
                        Action::Data { opcode, fin, rsv, payload } => {
                            Event::Data { opcode, fin, rsv, bytes: frame[payload].to_vec() }
                        }
                        Action::Ping(p) => Event::Ping(frame[p].to_vec()),
                        Action::Pong(p) => Event::Pong(frame[p].to_vec()),
                        Action::Close(c) => Event::Close(c.map(|(code, r)| (code, frame[r].to_vec()))),
                    });
                    pos += used;
                }
                Ok(None) => break,
                Err(e) => return SessionRun { events, err: Some(e), leftover: Vec::new() },
            }
        }
        buf.drain(..pos);
    }
    SessionRun { events, err: None, leftover: buf }
}

fn run_echo(reads: &[&[u8]], limits: &Limits, rsv: u8) -> (Vec<u8>, Option<EchoEnd>, Vec<u8>) {
    let mut s = session(rsv);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        let r = echo_frames(&mut s, &mut buf, limits, &mut out, None).unwrap();
        if r.end.is_some() {
            return (out, r.end, Vec::new());
        }
        buf.drain(..r.consumed);
    }
    (out, None, buf)
}

/// What the echo must be for a session's actions: data echoed unmasked with
/// its opcode, FIN and RSV; pings answered; a Close on the first Close or
/// error, and nothing after it.
fn expected_echo(run: &SessionRun) -> (Vec<u8>, Option<EchoEnd>) {
    let mut out = Vec::new();
    for ev in &run.events {
        match ev {
            Event::Data { opcode, fin, rsv, bytes } => write_frame(&mut out, *fin, *rsv, *opcode, None, bytes),
            Event::Ping(p) => write_frame(&mut out, true, 0, OpCode::Pong, None, p),
            Event::Pong(_) => {}
            Event::Close(c) => {
                let code = c.as_ref().map(|x| x.0);
                send_close(&mut out, code).unwrap();
                return (out, Some(EchoEnd::PeerClosed(code)));
            }
        }
    }
    match run.err {
        Some(e) => {
            send_close(&mut out, Some(e.close_code())).unwrap();
            (out, Some(EchoEnd::Failed(e)))
        }
        None => (out, None),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Session::next gives the same actions, payloads, error and kept bytes
    /// for the stream unsplit and cut at random read boundaries.
    #[test]
    fn session_actions_do_not_depend_on_read_splits(
        input in stream(),
        cut_points in prop::collection::vec(0u16..=1000, 1..12),
        small in any::<bool>(),
        rsv1 in any::<bool>(),
        held in 0usize..4,
    ) {
        let (limits, rsv) = config(small, rsv1, held);
        let whole = run_session(&[&input], &limits, rsv);
        let split = run_session(&reads(&input, &cut_points), &limits, rsv);
        same_messages(&whole, &split)?;
    }

    /// echo_frames writes the same bytes and stops for the same reason for the
    /// stream unsplit and cut at random read boundaries, and what it writes is
    /// exactly what the session's actions call for.
    #[test]
    fn echo_output_does_not_depend_on_read_splits(
        input in stream(),
        cut_points in prop::collection::vec(0u16..=1000, 1..12),
        small in any::<bool>(),
        rsv1 in any::<bool>(),
        held in 0usize..4,
    ) {
        let (limits, rsv) = config(small, rsv1, held);
        let whole = run_echo(&[&input], &limits, rsv);
        let split = run_echo(&reads(&input, &cut_points), &limits, rsv);
        prop_assert_eq!(whole.1, split.1);
        let (w, w_close) = echo_messages(&whole.0, rsv);
        let (s, s_close) = echo_messages(&split.0, rsv);
        prop_assert_eq!(w_close, s_close);
        if matches!(whole.1, Some(EchoEnd::Failed(_))) {
            prop_assert!(is_prefix(&w, &s), "whole {:?}\nsplit {:?}", w, s);
        } else {
            prop_assert_eq!(&w, &s);
            prop_assert_eq!(&whole.2, &split.2);
        }
        let (out, end) = expected_echo(&run_session(&[&input], &limits, rsv));
        prop_assert_eq!(whole.1, end);
        prop_assert_eq!(whole.0, out);
    }

    /// Every byte-at-a-time feed (the worst case for partial unmasking and
    /// UTF-8 carry-over) equals the unsplit decode.
    #[test]
    fn session_fed_one_byte_per_read_equals_unsplit(input in stream(), small in any::<bool>(), held in 0usize..4) {
        let (limits, rsv) = config(small, false, held);
        let whole = run_session(&[&input], &limits, rsv);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let split = run_session(&bytes, &limits, rsv);
        same_messages(&whole, &split)?;
    }
}
