//! `Utf8Validator` fed in random pieces against `std::str::from_utf8`.
//!
//! Input: byte 0 seeds the piece sizes, the rest is the text under test.
//!
//! Exact fail-fast semantics: a push must fail exactly when the bytes seen so
//! far can no longer begin valid UTF-8 — i.e. when std reports an error with
//! `error_len() == Some(_)` for that prefix (an error with `None` is only a
//! truncated code point, which more bytes could still complete). So with
//! std's error at `p` with `error_len` `n`, the validator fails at the latest
//! in the push holding byte `min(p + n, len - 1)`, and never before the
//! prefix goes bad. `finish` must then agree with std on the whole input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsecho::proto::utf8::{is_valid, Utf8Validator};

fn definitely_invalid(prefix: &[u8]) -> bool {
    matches!(std::str::from_utf8(prefix), Err(e) if e.error_len().is_some())
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else { return };
    let std_ok = std::str::from_utf8(bytes).is_ok();
    assert_eq!(is_valid(bytes), std_ok, "is_valid disagrees with std on {bytes:x?}");

    let mut v = Utf8Validator::new();
    let mut end = 0;
    for piece in wsecho_fuzz::chunks(seed, bytes) {
        end += piece.len();
        let pushed = v.push(piece);
        let bad = definitely_invalid(&bytes[..end]);
        assert_eq!(pushed.is_err(), bad, "push ending at {end} of {bytes:x?}: validator {pushed:?}, std invalid {bad}");
        if bad {
            assert!(!std_ok);
            return;
        }
    }
    assert_eq!(v.finish().is_ok(), std_ok, "finish disagrees with std on {bytes:x?}");
    // finish() resets: the validator is ready for the next message.
    assert_eq!(v, Utf8Validator::new());
});
