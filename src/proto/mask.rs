//! Payload masking (RFC 6455 §5.3): `octet i of the transformed data is the
//! XOR of octet i of the original data with octet at index i modulo 4 of the
//! masking key`.
//!
//! [`apply_mask`] is the fast path; [`apply_mask_ref`] is the byte loop it is
//! tested against. The fast path has two shapes:
//! - under 64 bytes (most chat-sized frames): 8-byte words, then 4, then
//!   bytes — a handful of instructions, small enough to inline;
//! - 64 bytes and up: a head of at most 15 bytes brings the pointer to a
//!   16-byte boundary, then 64-byte blocks XORed with a 64-byte key pattern,
//!   which the compiler turns into aligned SSE2 `pxor`s (four 16-byte stores
//!   per block, none crossing a cache line).

/// `key` rotated left by `phase` bytes: index 0 is the key byte for the
/// next payload byte.
#[inline]
fn rotate(key: [u8; 4], phase: usize) -> [u8; 4] {
    u32::from_le_bytes(key).rotate_right(8 * (phase & 3) as u32).to_le_bytes()
}

/// XOR `buf` with `key` repeated, from key index 0. For short buffers.
#[inline]
fn xor_short(buf: &mut [u8], key: [u8; 4]) {
    // The key twice, in either byte order: the two halves are identical.
    let k8 = u64::from(u32::from_ne_bytes(key)) * 0x1_0000_0001;
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        let v = u64::from_ne_bytes((&*w).try_into().expect("8 bytes")) ^ k8;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    // Fewer than 8 bytes left, starting at a multiple of 8: key index 0.
    let rest = words.into_remainder();
    let (four, bytes) = rest.split_at_mut(rest.len() & 4);
    if let Ok(w) = <[u8; 4]>::try_from(&*four) {
        let v = u32::from_ne_bytes(w) ^ u32::from_ne_bytes(key);
        four.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in bytes.iter_mut().zip(key) {
        *b ^= k;
    }
}

/// XOR `buf` (64 bytes or more) with `key` repeated, from key index 0.
fn xor_long(buf: &mut [u8], key: [u8; 4]) {
    let head = buf.as_ptr().align_offset(16).min(buf.len());
    let (head_bytes, body) = buf.split_at_mut(head);
    xor_short(head_bytes, key);
    let key = rotate(key, head);
    let mut k64 = [0u8; 64];
    for (i, k) in k64.iter_mut().enumerate() {
        *k = key[i & 3];
    }
    let mut blocks = body.chunks_exact_mut(64);
    for block in &mut blocks {
        for (b, k) in block.iter_mut().zip(k64.iter()) {
            *b ^= *k;
        }
    }
    // Fewer than 64 bytes left, starting at a multiple of 64 after the head.
    xor_short(blocks.into_remainder(), key);
}

/// XOR `buf` with `key`, starting at key index `phase` (0..4), so a payload
/// can be unmasked in pieces as it arrives. Returns the phase for the byte
/// after `buf`.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let next = (phase + buf.len()) & 3;
    let key = rotate(key, phase);
    if buf.len() < 64 {
        xor_short(buf, key);
    } else {
        xor_long(buf, key);
    }
    next
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
        let src: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        // Lengths on both sides of the 64-byte switch to the block loop,
        // with every alignment head (0..16) and block remainder.
        for offset in 0..16 {
            for len in 0..=300 {
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
