//! Payload masking (RFC 6455 §5.3): `octet i of the transformed data is the
//! XOR of octet i of the original data with octet at index i modulo 4 of the
//! masking key`.
//!
//! [`apply_mask`] is the fast path (16 bytes per step, which the compiler turns
//! into SSE2 loads and XORs); [`apply_mask_ref`] is the byte loop it is tested
//! against.

/// XOR `buf` with `key`, starting at key index `phase` (0..4), so a payload
/// can be unmasked in pieces as it arrives. Returns the phase for the byte
/// after `buf`.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let phase = phase & 3;
    // Rotate the key so that index 0 lines up with buf[0].
    let rotated = [key[phase], key[(phase + 1) & 3], key[(phase + 2) & 3], key[(phase + 3) & 3]];
    let k32 = u32::from_ne_bytes(rotated) as u128;
    let k128 = k32 | (k32 << 32) | (k32 << 64) | (k32 << 96);

    let mut chunks = buf.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let mut w = [0u8; 16];
        w.copy_from_slice(chunk);
        let v = u128::from_ne_bytes(w) ^ k128;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // The tail is shorter than 16 bytes and starts at a multiple of 16, so the
    // rotated key still lines up at its index 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rotated[i & 3];
    }
    (phase + buf.len()) & 3
}

/// The reference byte loop: the oracle for tests, benches and fuzzing.
pub fn apply_mask_ref(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(phase + i) & 3];
    }
    (phase + buf.len()) & 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_mask_equals_byte_loop_at_every_length_offset_and_phase() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for offset in 0..16 {
            for len in 0..=64 {
                for phase in 0..4 {
                    let mut a = src.clone();
                    let mut b = src.clone();
                    let pa = apply_mask(&mut a[offset..offset + len], key, phase);
                    let pb = apply_mask_ref(&mut b[offset..offset + len], key, phase);
                    assert_eq!(a, b, "offset {offset} len {len} phase {phase}");
                    assert_eq!(pa, pb);
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 250];
        let src: Vec<u8> = (0..100u8).collect();
        let mut whole = src.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..src.len() {
            let mut parts = src.clone();
            let (a, b) = parts.split_at_mut(split);
            let p = apply_mask(a, key, 0);
            apply_mask(b, key, p);
            assert_eq!(parts, whole, "split {split}");
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: "A single-frame masked text message" = "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
