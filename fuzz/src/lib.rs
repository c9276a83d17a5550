//! Helpers shared by the fuzz targets.
//!
//! The chunking follows uWebSockets' `fuzzing/helpers.h` idea — the input
//! decides where the stream is cut — but with a single seed byte in front
//! instead of a length byte before every chunk, so the rest of the input is
//! exactly the byte stream under test (seeds stay readable and a crash's
//! stream can be copied out with `tail -c +2`).

pub mod driver_scenario;
pub mod echo_view;

/// A tiny deterministic generator (xorshift32): same seed, same cuts.
#[derive(Debug, Clone)]
pub struct Rng(u32);

impl Rng {
    /// A generator seeded from one byte (never the all-zero state).
    pub fn new(seed: u8) -> Self {
        Rng(0x9E37_79B9 ^ (seed as u32).wrapping_mul(0x0101_0101) | 1)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u32() as usize) % n
    }
}

/// Chunk lengths covering `len` bytes, picked by `seed`: the low two bits
/// choose the size class (1 byte, 0–7, 0–63 or 0–1023 bytes; empty chunks
/// model a wake-up with nothing new), the rest seeds the generator.
pub fn chunk_sizes(seed: u8, len: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed >> 2);
    let max = match seed & 3 {
        0 => 1,
        1 => 8,
        2 => 64,
        _ => 1024,
    };
    let mut sizes = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = if max == 1 { 1 } else { rng.below(max) }.min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

/// `data` cut into the chunks [`chunk_sizes`] picks.
pub fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for n in chunk_sizes(seed, data.len()) {
        out.push(&data[at..at + n]);
        at += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in 0..=255u8 {
            let joined: Vec<u8> = chunks(seed, &data).concat();
            assert_eq!(joined, data, "seed {seed}");
        }
    }
}
