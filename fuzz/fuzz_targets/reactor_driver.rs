//! The reactor's per-connection driver over an in-memory stream.
//!
//! Input: a script (see `wsecho_fuzz::driver_scenario` for the layout) —
//! three config bytes (tiny pool cap, tiny backpressure, small
//! `max_held_frame`, small read budget and buffer, …), then a client's
//! messages and broken frames, how its bytes arrive, how much the write side
//! accepts (or `WouldBlock`, or an error), its FIN, clock steps and spurious
//! events. The driver is the reactor's own code (`wsecho::server::testing`):
//! held input, queued output and pool bytes stay within their bounds after
//! every step, and the echo, compared per message with the protocol core's,
//! is complete — also after a half-close — unless an error or a timer cut
//! the run short.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wsecho_fuzz::driver_scenario::run(data);
});
