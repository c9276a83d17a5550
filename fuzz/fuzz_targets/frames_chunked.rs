//! Split equivalence for the frame decoder and the echo decision.
//!
//! Input: byte 0 seeds the chunk sizes (see `wsecho_fuzz::chunk_sizes`),
//! byte 1 picks the configuration (bit 0: small limits, so 1009 paths are
//! reachable; bit 1: RSV1 allowed, as after permessage-deflate; bits 2–3:
//! `Limits::max_held_frame` 16 KiB (default), 16, 1 or 0, so frames are
//! streamed), and the rest is the client-to-server byte stream.
//!
//! The stream is fed to a server `Session` and to `echo_frames` twice: all at
//! once, and in chunks the way the reactor does it (append the new bytes to
//! the *same* buffer — which the session may already have unmasked in part —
//! decode, drop the consumed prefix, repeat). A frame larger than
//! `max_held_frame` is streamed — returned piece by piece as its bytes
//! arrive — so how the stream is cut changes the framing of data but never
//! the messages: actions and echo output are compared **per message**
//! (`wsecho_fuzz::echo_view`: payloads concatenated, control frames in
//! place). The final error and, without one, the messages and the bytes
//! left over must be identical; with an error, the unsplit run's messages
//! are a prefix of the split run's (a piece before the bad byte may be
//! echoed before the error is seen, never after). The echo output must also
//! be exactly, frame by frame, what the session's actions call for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsecho::proto::close::CloseCode;
use wsecho::proto::echo::{echo_frames, send_close, EchoEnd};
use wsecho::proto::frame::{write_frame, OpCode, RSV1};
use wsecho::proto::{Action, Limits, ProtocolError, Role, Session};
use wsecho_fuzz::echo_view::{is_prefix, normalise_server, parse_server_frames, push_data, show, Item};

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
    /// Unconsumed bytes at the end (only compared when there is no error).
    leftover: Vec<u8>,
}

fn event(action: Action, frame: &[u8]) -> Event {
    match action {
        Action::Data { opcode, fin, rsv, payload } => Event::Data { opcode, fin, rsv, bytes: frame[payload].to_vec() },
        Action::Ping(p) => Event::Ping(frame[p].to_vec()),
        Action::Pong(p) => Event::Pong(frame[p].to_vec()),
        Action::Close(c) => Event::Close(c.map(|(code, r)| (code, frame[r].to_vec()))),
    }
}

fn new_session(rsv: u8) -> Session {
    let mut s = Session::new(Role::Server);
    s.set_rsv_allowed(rsv);
    s
}

/// Drive a session like the reactor: one buffer, new bytes appended, the
/// consumed prefix drained after each read. Keeps decoding after a Close so
/// the decoder's later state is compared too.
fn run_session(chunks: &[&[u8]], limits: &Limits, rsv: u8) -> SessionRun {
    let mut s = new_session(rsv);
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            match s.next(&mut buf[pos..], limits) {
                Ok(Some((action, used))) => {
                    assert!(used > 0 && used <= buf.len() - pos, "consumed {used} of {}", buf.len() - pos);
                    events.push(event(action, &buf[pos..pos + used]));
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

#[derive(Debug, PartialEq, Eq)]
struct EchoRun {
    out: Vec<u8>,
    end: Option<EchoEnd>,
    leftover: Vec<u8>,
}

fn run_echo(chunks: &[&[u8]], limits: &Limits, rsv: u8) -> EchoRun {
    let mut s = new_session(rsv);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let r = echo_frames(&mut s, &mut buf, limits, &mut out, None).unwrap();
        assert!(r.consumed <= buf.len());
        if r.end.is_some() {
            return EchoRun { out, end: r.end, leftover: Vec::new() };
        }
        buf.drain(..r.consumed);
    }
    EchoRun { out, end: None, leftover: buf }
}

/// What `echo_frames` must write for a session run: data echoed unmasked
/// with its own opcode/FIN/RSV, pings answered, and a Close on the first
/// Close or error.
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

/// The events per message (data payloads run together).
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

/// An echo per message, and its Close.
fn echo_messages(out: &[u8], rsv: u8) -> (Vec<Item>, Option<Option<u16>>) {
    let (frames, used) = parse_server_frames(out, rsv);
    assert_eq!(used, out.len(), "echo ends in a partial frame");
    let echo = normalise_server(&frames);
    (echo.items, echo.close)
}

/// Properties of the decoded events themselves.
fn check_events(run: &SessionRun) {
    let mut text: Option<Vec<u8>> = None;
    for ev in &run.events {
        match ev {
            Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
            Event::Close(Some((code, reason))) => {
                assert!(code.is_receivable(), "{code:?}");
                assert!(reason.len() <= 123 && std::str::from_utf8(reason).is_ok());
            }
            Event::Close(None) => {}
            Event::Data { opcode, fin, rsv, bytes } => {
                if *opcode == OpCode::Text && *rsv == 0 {
                    text = Some(Vec::new());
                } else if *opcode != OpCode::Continuation {
                    text = None;
                }
                if let Some(t) = text.as_mut() {
                    t.extend_from_slice(bytes);
                    if *fin {
                        assert!(std::str::from_utf8(t).is_ok(), "text message is not UTF-8: {t:x?}");
                    }
                }
                if *fin {
                    text = None;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (seed, config, stream) = (data[0], data[1], &data[2..]);
    let mut limits = if config & 1 != 0 {
        Limits { max_frame_payload: 200, max_message: 500, max_fragments: 3, ..Limits::default() }
    } else {
        Limits::default()
    };
    limits.max_held_frame = [limits.max_held_frame, 16, 1, 0][(config >> 2 & 3) as usize];
    let rsv = if config & 2 != 0 { RSV1 } else { 0 };
    let chunks = wsecho_fuzz::chunks(seed, stream);

    let whole = run_session(&[stream], &limits, rsv);
    let split = run_session(&chunks, &limits, rsv);
    assert_eq!(whole.err, split.err, "errors differ");
    let (whole_msgs, split_msgs) = (messages(&whole.events), messages(&split.events));
    if whole.err.is_none() {
        assert_eq!(
            whole_msgs,
            split_msgs,
            "messages differ\nwhole: {}\nsplit: {}",
            show(&whole_msgs),
            show(&split_msgs)
        );
        assert_eq!(whole.leftover, split.leftover, "kept bytes differ");
    } else {
        assert!(
            is_prefix(&whole_msgs, &split_msgs),
            "before the error, the unsplit messages are not a prefix of the split ones\nwhole: {}\nsplit: {}",
            show(&whole_msgs),
            show(&split_msgs)
        );
    }
    check_events(&whole);
    check_events(&split);

    let echo_whole = run_echo(&[stream], &limits, rsv);
    let echo_split = run_echo(&chunks, &limits, rsv);
    assert_eq!(echo_whole.end, echo_split.end, "echo ends differ");
    let (whole_items, whole_close) = echo_messages(&echo_whole.out, rsv);
    let (split_items, split_close) = echo_messages(&echo_split.out, rsv);
    assert_eq!(whole_close, split_close, "echo Close differs");
    if matches!(echo_whole.end, Some(EchoEnd::Failed(_))) {
        assert!(is_prefix(&whole_items, &split_items), "echo before the error: unsplit not a prefix of split");
    } else {
        assert_eq!(whole_items, split_items, "echo messages differ");
        assert_eq!(echo_whole.leftover, echo_split.leftover, "echo kept bytes differ");
    }
    let (out, end) = expected_echo(&whole);
    assert_eq!(echo_whole.end, end, "echo end differs from the session's");
    assert_eq!(echo_whole.out, out, "echo output differs from the session's actions");
});
