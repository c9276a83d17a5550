//! `apply_mask` (16 bytes per step) against the byte loop `apply_mask_ref`.
//!
//! Input: bytes 0–3 the key, byte 4 the starting phase (any value; only the
//! low two bits count), byte 5 the offset of the slice inside the buffer
//! (0..16, to vary alignment), byte 6 seeds the split points, the rest is the
//! payload. The fast mask applied to the whole slice, and piece by piece with
//! the returned phase carried along, must equal the reference; the returned
//! phases must match too. Masking twice must give the payload back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsecho::proto::mask::{apply_mask, apply_mask_ref};

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let key = [data[0], data[1], data[2], data[3]];
    let phase = data[4] as usize;
    let offset = (data[5] & 15) as usize;
    let seed = data[6];
    let payload = &data[7..];

    let mut reference = vec![0xAAu8; offset];
    reference.extend_from_slice(payload);
    let mut whole = reference.clone();
    let mut pieces = reference.clone();

    let ref_phase = apply_mask_ref(&mut reference[offset..], key, phase);
    let fast_phase = apply_mask(&mut whole[offset..], key, phase);
    assert_eq!(whole, reference, "whole slice differs");
    assert_eq!(fast_phase, ref_phase);
    assert_eq!(ref_phase, (phase + payload.len()) & 3);

    let mut at = offset;
    let mut p = phase;
    for n in wsecho_fuzz::chunk_sizes(seed, payload.len()) {
        p = apply_mask(&mut pieces[at..at + n], key, p);
        at += n;
    }
    assert_eq!(pieces, reference, "piecewise masking differs");
    // `p` is the raw starting phase if there were no pieces (empty payload).
    assert_eq!(p & 3, ref_phase);

    apply_mask(&mut whole[offset..], key, phase);
    assert_eq!(&whole[offset..], payload, "masking is not an involution");
});
