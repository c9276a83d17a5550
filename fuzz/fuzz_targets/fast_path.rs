//! The short-frame fast path against the general path.
//!
//! Input: byte 0 seeds the chunk sizes (`wsecho_fuzz::chunk_sizes`), byte 1
//! picks the limits (bits 0–1: default, `max_frame_payload` 50, `max_message`
//! 45, or `max_held_frame` 0 so frames stream; bit 2: RSV1 allowed, as after
//! permessage-deflate), the rest is the client-to-server byte stream.
//!
//! The stream is fed reactor-style (append the new chunk, echo, drop the
//! consumed prefix) twice through `echo_frames`: once into a `Vec<u8>` sink,
//! which lets `echo_frames` take `Session::echo_short_run` for runs of
//! complete short frames, and once into a sink whose `wants_each_frame` is
//! true, which keeps it on `Session::next` + `send_frame`. Every call's
//! `Echoed`, the session's observable state after it, and all echo bytes
//! must be identical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsecho::proto::echo::{echo_frames, Echoed, FrameSink};
use wsecho::proto::frame::RSV1;
use wsecho::proto::{Limits, Role, Session};

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

type Call = (Echoed, bool, bool, Option<bool>);

fn run<S: FrameSink<Error = std::convert::Infallible>>(
    stream: &[u8],
    sizes: &[usize],
    limits: &Limits,
    rsv: u8,
    sink: &mut S,
) -> Vec<Call> {
    let mut s = Session::new(Role::Server);
    s.set_rsv_allowed(rsv);
    let mut buf = Vec::new();
    let mut calls = Vec::new();
    let mut at = 0;
    for &n in sizes.iter().chain(std::iter::once(&0)) {
        buf.extend_from_slice(&stream[at..at + n]);
        at += n;
        let r = echo_frames(&mut s, &mut buf, limits, sink, None).unwrap();
        calls.push((r, s.in_message(), s.mid_frame(), s.msg_compressed()));
        if r.end.is_some() {
            break;
        }
        buf.drain(..r.consumed);
    }
    calls
}

fuzz_target!(|data: &[u8]| {
    let [seed, config, stream @ ..] = data else { return };
    let limits = match config & 3 {
        0 => Limits::default(),
        1 => Limits { max_frame_payload: 50, ..Limits::default() },
        2 => Limits { max_message: 45, ..Limits::default() },
        _ => Limits { max_held_frame: 0, ..Limits::default() },
    };
    let rsv = if config & 4 != 0 { RSV1 } else { 0 };
    let sizes = wsecho_fuzz::chunk_sizes(*seed, stream.len());
    let mut fast = Vec::new();
    let fast_calls = run(stream, &sizes, &limits, rsv, &mut fast);
    let mut general = EachFrame(Vec::new());
    let general_calls = run(stream, &sizes, &limits, rsv, &mut general);
    assert_eq!(fast_calls, general_calls);
    assert_eq!(fast, general.0);
});
