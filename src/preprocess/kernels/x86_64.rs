//! The x86_64 resampler kernels: the portable vertical pass compiled for AVX2, and an AVX2
//! horizontal pass (`pmaddwd` on weights split into i16 halves).

use super::{KeptTaps, HALF, PRECISION_BITS};
use std::arch::x86_64::*;

/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn vertical_row_avx2(
    rows: &[u8],
    stride: usize,
    weights: &[i32],
    dst: &mut [u8],
) {
    super::portable::vertical_row(rows, stride, weights, dst)
}

/// # Safety
/// AVX2 must be available, `base` at most every window start (`taps.window_span().0`),
/// `src.len() >= taps.row_bytes_needed(base)` and `dst.len() >= 3 * taps.n`. Those bound every
/// unchecked access below: window `k` reads bytes `3 (start[k] − base) .. 3 (start[k] − base +
/// t) + 4` of `src` (the last 16-byte load over-reads 4), and output `k` writes
/// `dst[3k..3k + 3]`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn horizontal_row_avx2(taps: &KeptTaps, src: &[u8], base: usize, dst: &mut [u8]) {
    // Lane 0 takes taps 0 and 1, lane 1 taps 2 and 3 of the 16 bytes at the window:
    // (r_a, r_b, g_a, g_b, b_a, b_b, 0, 0) as i16, ready for pmaddwd with (w_a, w_b) pairs.
    let shuffle = _mm256_setr_epi8(
        0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1, //
        6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1,
    );
    let half = _mm_setr_epi32(HALF, HALF, HALF, 0);
    let groups = taps.t / 4;
    let src_ptr = src.as_ptr();
    let split_ptr = taps.split.as_ptr();
    let mut out = [0u8; 4];
    for k in 0..taps.n {
        let s = *taps.start.get_unchecked(k) - base;
        let mut acc_hi = _mm256_setzero_si256();
        let mut acc_lo = _mm256_setzero_si256();
        let wk = split_ptr.add(k * groups * 32);
        for g in 0..groups {
            let px = _mm_loadu_si128(src_ptr.add(3 * (s + 4 * g)) as *const __m128i);
            let x = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(px), shuffle);
            let hi = _mm256_loadu_si256(wk.add(g * 32) as *const __m256i);
            let lo = _mm256_loadu_si256(wk.add(g * 32 + 16) as *const __m256i);
            acc_hi = _mm256_add_epi32(acc_hi, _mm256_madd_epi16(x, hi));
            acc_lo = _mm256_add_epi32(acc_lo, _mm256_madd_epi16(x, lo));
        }
        let acc = _mm256_add_epi32(_mm256_slli_epi32(acc_hi, 16), acc_lo);
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256(acc, 1),
        );
        let shifted = _mm_srai_epi32(_mm_add_epi32(sum, half), PRECISION_BITS as i32);
        let words = _mm_packs_epi32(shifted, shifted);
        let bytes = _mm_packus_epi16(words, words);
        out.copy_from_slice(&_mm_cvtsi128_si32(bytes).to_le_bytes());
        dst.get_unchecked_mut(3 * k..3 * k + 3)
            .copy_from_slice(&out[..3]);
    }
}
