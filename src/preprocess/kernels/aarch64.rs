//! The aarch64 resampler kernels in NEON (Advanced SIMD, part of the aarch64 baseline: this
//! module is compiled only where the target has it, and nothing is checked at run time). The
//! kernels are `#[target_feature(enable = "neon")]`, as the intrinsics they call are, so that
//! Rust lets them call those safely; `preprocess::kernels` calls them in `unsafe` blocks.
//! Integer sums are exact, so summing in another order gives the portable kernels' bytes.

use std::arch::aarch64::*;

use super::{portable, KeptTaps, HALF, PRECISION_BITS};

/// `tbl` indices that spread four RGB pixels (the first 12 of 16 loaded bytes) into one
/// channel's four 32-bit lanes (index 255: a zero byte).
const SPREAD: [[u8; 16]; 3] = {
    let mut t = [[255u8; 16]; 3];
    let mut c = 0;
    while c < 3 {
        let mut p = 0;
        while p < 4 {
            t[c][4 * p] = (3 * p + c) as u8;
            p += 1;
        }
        c += 1;
    }
    t
};

/// `clip8` of `HALF + acc` on four lanes, as bytes 0..4 of the result.
#[target_feature(enable = "neon")]
#[inline]
fn clip8x4(acc: int32x4_t) -> uint8x8_t {
    let shifted = vshrq_n_s32::<{ PRECISION_BITS as i32 }>(vaddq_s32(acc, vdupq_n_s32(HALF)));
    // Saturating narrowings: below 0 → 0, above 255 → 255.
    let words = vqmovun_s32(shifted);
    vqmovn_u16(vcombine_u16(words, words))
}

/// The horizontal pass, four taps per step over the widened windows: 16 bytes loaded at the
/// window (12 used), spread per channel into i32 lanes, multiplied by the four i32 weights and
/// summed; the three sums are reduced pairwise into one vector for the shift and clip.
///
/// # Safety
/// `base` is at most every window start (`taps.window_span().0`), `src.len() >=
/// taps.row_bytes_needed(base)` and `dst.len() >= 3 * taps.n`: window `k` then reads bytes
/// `3 (start[k] − base) .. 3 (start[k] − base + t) + 4` of `src` (the last 16-byte load reads 4
/// past the window), all inside `src`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn horizontal_row(taps: &KeptTaps, src: &[u8], base: usize, dst: &mut [u8]) {
    // SAFETY: each table is 16 bytes.
    let [tr, tg, tb] = SPREAD.map(|t| unsafe { vld1q_u8(t.as_ptr()) });
    let t = taps.t;
    for (k, px) in dst.chunks_exact_mut(3).take(taps.n).enumerate() {
        let s = taps.start[k] - base;
        let weights = &taps.weights[k * t..k * t + t];
        let mut acc = [vdupq_n_s32(0); 3];
        for (g, w) in weights.chunks_exact(4).enumerate() {
            // SAFETY: 3 (s + 4g) + 16 <= 3 (s + t) + 4 <= src.len() (the caller's bounds), and
            // `w` holds 4 i32.
            let (pixels, w) = unsafe {
                (
                    vld1q_u8(src.as_ptr().add(3 * (s + 4 * g))),
                    vld1q_s32(w.as_ptr()),
                )
            };
            for (a, table) in acc.iter_mut().zip([tr, tg, tb]) {
                let channel = vreinterpretq_s32_u8(vqtbl1q_u8(pixels, table));
                *a = vmlaq_s32(*a, channel, w);
            }
        }
        let [r, g, b] = acc;
        // (r, g, b, b) summed across lanes.
        let sums = vpaddq_s32(vpaddq_s32(r, g), vpaddq_s32(b, b));
        let bytes = vget_lane_u32::<0>(vreinterpret_u32_u8(clip8x4(sums))).to_le_bytes();
        px.copy_from_slice(&bytes[..3]);
    }
}

/// The vertical pass, 32 bytes of the row per step (then 16, then the tail one byte at a time
/// as the portable kernel does): each input row's bytes widened to i32 and multiplied by its
/// weight into eight accumulators.
#[target_feature(enable = "neon")]
pub(super) fn vertical_row(rows: &[u8], stride: usize, weights: &[i32], dst: &mut [u8]) {
    let width = dst.len();
    let mut c = 0;
    while c + 32 <= width {
        vertical_block::<2>(rows, stride, weights, c, &mut dst[c..c + 32]);
        c += 32;
    }
    if c + 16 <= width {
        vertical_block::<1>(rows, stride, weights, c, &mut dst[c..c + 16]);
        c += 16;
    }
    portable::vertical_tail(rows, stride, weights, dst, c);
}

/// `B` blocks of 16 output bytes from columns `c .. c + 16 B` of every input row
/// (`out.len() == 16 B`).
#[target_feature(enable = "neon")]
#[inline]
fn vertical_block<const B: usize>(
    rows: &[u8],
    stride: usize,
    weights: &[i32],
    c: usize,
    out: &mut [u8],
) {
    let mut acc = [[vdupq_n_s32(0); 4]; B];
    for (k, &w) in weights.iter().enumerate() {
        let row = &rows[k * stride + c..][..16 * B];
        for (b, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `row` holds 16 B bytes and 16 b + 16 <= 16 B.
            let px = unsafe { vld1q_u8(row.as_ptr().add(16 * b)) };
            let (lo, hi) = (vmovl_u8(vget_low_u8(px)), vmovl_high_u8(px));
            let quads = [
                vmovl_u16(vget_low_u16(lo)),
                vmovl_high_u16(lo),
                vmovl_u16(vget_low_u16(hi)),
                vmovl_high_u16(hi),
            ];
            for (a, q) in acc.iter_mut().zip(quads) {
                *a = vmlaq_n_s32(*a, vreinterpretq_s32_u32(q), w);
            }
        }
    }
    for (b, acc) in acc.iter().enumerate() {
        let [a0, a1, a2, a3] = acc.map(|a| {
            vqmovun_s32(vshrq_n_s32::<{ PRECISION_BITS as i32 }>(vaddq_s32(
                a,
                vdupq_n_s32(HALF),
            )))
        });
        let bytes = vcombine_u8(
            vqmovn_u16(vcombine_u16(a0, a1)),
            vqmovn_u16(vcombine_u16(a2, a3)),
        );
        let block = &mut out[16 * b..16 * b + 16];
        // SAFETY: `block` holds 16 bytes.
        unsafe { vst1q_u8(block.as_mut_ptr(), bytes) };
    }
}
