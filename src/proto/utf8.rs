//! Incremental, fail-fast UTF-8 validation (RFC 6455 §8.1).
//!
//! A text message may be split across frames, and a frame across reads, at
//! any byte — even inside a code point. [`Utf8Validator`] carries at most the
//! three bytes of an unfinished code point between pushes, and reports an
//! error as soon as the bytes seen so far cannot begin any valid sequence
//! (Autobahn 6.4.x: "fail fast"), not only at the end of the message.
//! The bulk of the work is done by `simdutf8` (SIMD, the field's standard).

/// Whether `bytes` is complete, valid UTF-8.
#[inline]
pub fn is_valid(bytes: &[u8]) -> bool {
    simdutf8::basic::from_utf8(bytes).is_ok()
}

/// Streaming validator state: 4 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// The first bytes of a code point that the last push ended inside.
    carry: [u8; 3],
    /// How many bytes of `carry` are in use (0..=3).
    carry_len: u8,
}

/// The input is not UTF-8 (and no continuation could make it so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

/// Length of the sequence that begins with lead byte `b` (only called on the
/// first byte of a carried, valid prefix).
fn seq_len(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Validate `bytes` allowing an incomplete (but so far valid) code point at
/// the end; returns the length of that tail.
fn validate_prefix(bytes: &[u8]) -> Result<usize, Utf8Error> {
    if simdutf8::basic::from_utf8(bytes).is_ok() {
        return Ok(0);
    }
    match simdutf8::compat::from_utf8(bytes) {
        Ok(_) => Ok(0),
        Err(e) if e.error_len().is_none() => Ok(bytes.len() - e.valid_up_to()),
        Err(_) => Err(Utf8Error),
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Validator { carry: [0; 3], carry_len: 0 }
    }

    /// Feed the next bytes of the message.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), Utf8Error> {
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let need = seq_len(self.carry[0]) - have;
            let take = need.min(bytes.len());
            let mut tmp = [0u8; 4];
            tmp[..have].copy_from_slice(&self.carry[..have]);
            tmp[have..have + take].copy_from_slice(&bytes[..take]);
            let tail = validate_prefix(&tmp[..have + take])?;
            if take < need {
                // Still inside the code point; the prefix is valid so far.
                debug_assert_eq!(tail, have + take);
                self.carry.copy_from_slice(&tmp[..3]);
                self.carry_len = (have + take) as u8;
                return Ok(());
            }
            if tail != 0 {
                return Err(Utf8Error);
            }
            self.carry_len = 0;
            bytes = &bytes[take..];
        }
        let tail = validate_prefix(bytes)?;
        self.carry[..tail].copy_from_slice(&bytes[bytes.len() - tail..]);
        self.carry_len = tail as u8;
        Ok(())
    }

    /// The message ended: valid only if no code point is left unfinished.
    /// Resets the validator for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let ok = self.carry_len == 0;
        *self = Utf8Validator::new();
        if ok {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn split_validate(bytes: &[u8], cuts: &[usize]) -> bool {
        let mut v = Utf8Validator::new();
        let mut last = 0;
        for &c in cuts {
            if v.push(&bytes[last..c]).is_err() {
                return false;
            }
            last = c;
        }
        v.push(&bytes[last..]).is_ok() && v.finish().is_ok()
    }

    #[test]
    fn validator_matches_std_on_random_splits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6455);
        let samples: Vec<Vec<u8>> = vec![
            "héllo 世界 🚀 κόσμε".as_bytes().to_vec(),
            vec![0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80],
            vec![0xf4, 0x90, 0x80, 0x80],
            vec![0xf0, 0x9f, 0x9a, 0x80, 0xc0, 0xaf],
            vec![0xe0, 0x80, 0xaf],
        ];
        for s in &samples {
            let expect = std::str::from_utf8(s).is_ok();
            for cut in 0..=s.len() {
                assert_eq!(split_validate(s, &[cut]), expect, "{s:?} cut {cut}");
            }
        }
        for _ in 0..20_000 {
            let len = rng.gen_range(0..24);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.gen_range(0..4) {
                    0 => rng.gen_range(0..0x80),
                    1 => rng.gen_range(0x80..0xC0),
                    2 => rng.gen_range(0xC0..0xF8),
                    _ => rng.gen(),
                })
                .collect();
            let mut cuts: Vec<usize> = (0..rng.gen_range(0..4)).map(|_| rng.gen_range(0..=len)).collect();
            cuts.sort();
            assert_eq!(split_validate(&bytes, &cuts), std::str::from_utf8(&bytes).is_ok(), "{bytes:x?} cuts {cuts:?}");
        }
    }

    #[test]
    fn fails_fast_inside_a_code_point() {
        // 0xF4 0x90 starts no valid code point (> U+10FFFF): error at once,
        // before the sequence or message ends.
        let mut v = Utf8Validator::new();
        v.push(b"ok").unwrap();
        v.push(&[0xf4]).unwrap();
        assert_eq!(v.push(&[0x90]), Err(Utf8Error));
        let mut v = Utf8Validator::new();
        assert_eq!(v.push(&[b'a', 0xed, 0xa0]), Err(Utf8Error)); // surrogate
    }

    #[test]
    fn unfinished_code_point_at_end_is_invalid() {
        let mut v = Utf8Validator::new();
        v.push(&[0xe2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(Utf8Error));
        assert_eq!(v.finish(), Ok(()));
    }
}
