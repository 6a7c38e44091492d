//! Row kernels of the bicubic resampler, in Pillow's 22-bit fixed point: one output sample is
//! `clip8((2^21 + Σ w·x) >> 22)` with i32 arithmetic, whichever kernel computes it.
//!
//! - vertical: output row = weighted sum of whole input rows; written lane-parallel over the
//!   bytes of a row so the compiler vectorises it (built twice: AVX2 at run time, and the
//!   baseline of the target, which is NEON on aarch64);
//! - horizontal: each output pixel is a dot product of its own window of input pixels. The AVX2
//!   kernel splits every 22-bit weight into `hi · 2^16 + lo` (both fit i16) and sums with
//!   `pmaddwd`, four taps per step; `Σ x·w = (Σ x·hi) · 2^16 + Σ x·lo` holds exactly in i32.

pub(crate) const PRECISION_BITS: u32 = 32 - 8 - 2;
pub(crate) const HALF: i32 = 1 << (PRECISION_BITS - 1);

#[inline(always)]
pub(crate) fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The taps of the output samples `kept .. kept + n` of one axis, with every window widened to
/// `t` taps (a multiple of 4, zero weights outside the real taps) that stay inside the input
/// when it has at least `t` samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeptTaps {
    pub in_size: usize,
    pub n: usize,
    pub t: usize,
    /// First real tap of each output.
    pub first: Vec<usize>,
    /// Number of real taps of each output.
    pub count: Vec<usize>,
    /// First tap of each widened window.
    pub start: Vec<usize>,
    /// `n × t` weights aligned with `start`.
    pub weights: Vec<i32>,
    /// The weights split for the AVX2 horizontal kernel: per output and group of 4 taps,
    /// 16 i16 of `hi` then 16 of `lo`.
    pub split: Vec<i16>,
}

impl KeptTaps {
    /// `taps(o)` gives the first input index and the real weights of output `o`.
    pub fn new<'a>(
        in_size: usize,
        kept: std::ops::Range<usize>,
        taps: impl Fn(usize) -> (usize, &'a [i32]),
    ) -> Self {
        let n = kept.len();
        let widest = kept.clone().map(|o| taps(o).1.len()).max().unwrap_or(1);
        let t = widest.max(1).div_ceil(4) * 4;
        let mut first = Vec::with_capacity(n);
        let mut count = Vec::with_capacity(n);
        let mut start = Vec::with_capacity(n);
        let mut weights = vec![0i32; n * t];
        for (k, o) in kept.enumerate() {
            let (f, w) = taps(o);
            let s = if in_size >= t { f.min(in_size - t) } else { 0 };
            weights[k * t + (f - s)..k * t + (f - s) + w.len()].copy_from_slice(w);
            first.push(f);
            count.push(w.len());
            start.push(s);
        }
        let mut split = Vec::with_capacity(n * t * 8);
        for row in weights.chunks_exact(t) {
            for group in row.chunks_exact(4) {
                let hi: Vec<i16> = group.iter().map(|&w| ((w + 0x8000) >> 16) as i16).collect();
                let lo: Vec<i16> = group
                    .iter()
                    .zip(&hi)
                    .map(|(&w, &h)| (w - ((h as i32) << 16)) as i16)
                    .collect();
                for part in [&hi, &lo] {
                    for pair in part.chunks_exact(2) {
                        for _ in 0..3 {
                            split.extend_from_slice(pair);
                        }
                        split.extend_from_slice(&[0, 0]);
                    }
                }
            }
        }
        Self {
            in_size,
            n,
            t,
            first,
            count,
            start,
            weights,
            split,
        }
    }

    /// One tap of weight 1.0 per output: an axis whose size does not change.
    pub fn identity(in_size: usize, kept: std::ops::Range<usize>) -> Self {
        const ONE: [i32; 1] = [1 << PRECISION_BITS];
        Self::new(in_size, kept, |o| (o, &ONE[..]))
    }

    /// Real taps of kept output `k`: first input index and weights.
    #[inline(always)]
    pub fn real(&self, k: usize) -> (usize, &[i32]) {
        let (f, s) = (self.first[k], self.start[k]);
        let at = k * self.t + (f - s);
        (f, &self.weights[at..at + self.count[k]])
    }

    /// Input samples `lo .. hi` that the real taps of all kept outputs read.
    pub fn real_span(&self) -> (usize, usize) {
        let lo = self.first.iter().copied().min().unwrap_or(0);
        let hi = (0..self.n)
            .map(|k| self.first[k] + self.count[k])
            .max()
            .unwrap_or(0);
        (lo, hi)
    }

    /// Input samples `lo .. hi` that the widened windows cover (`hi` may pass `in_size` when
    /// the input is shorter than `t`).
    pub fn window_span(&self) -> (usize, usize) {
        let lo = self.start.iter().copied().min().unwrap_or(0);
        let hi = self.start.iter().copied().max().unwrap_or(0) + self.t;
        (lo, hi)
    }

    /// Bytes a horizontal source row must hold from pixel `base` on (widened windows plus the
    /// over-read of the 16-byte loads).
    pub fn row_bytes_needed(&self, base: usize) -> usize {
        3 * (self.window_span().1 - base) + 4
    }
}

/// Output pixels of one row: `dst[3k..3k+3]` from the window of kept output `k`, reading
/// `src` whose first pixel is input pixel `base`. `src` must hold `row_bytes_needed(base)`
/// bytes.
pub(crate) fn horizontal_row(taps: &KeptTaps, src: &[u8], base: usize, dst: &mut [u8]) {
    debug_assert!(src.len() >= taps.row_bytes_needed(base));
    debug_assert!(dst.len() >= taps.n * 3);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2")
            && src.len() >= taps.row_bytes_needed(base)
            && dst.len() >= taps.n * 3
        {
            // SAFETY: AVX2 is available (checked above) and the slice lengths the kernel reads
            // and writes without bounds checks were checked above.
            unsafe { x86::horizontal_row_avx2(taps, src, base, dst) };
            return;
        }
    }
    horizontal_row_portable(taps, src, base, dst);
}

fn horizontal_row_portable(taps: &KeptTaps, src: &[u8], base: usize, dst: &mut [u8]) {
    for (k, px) in dst.chunks_exact_mut(3).take(taps.n).enumerate() {
        let (first, weights) = taps.real(k);
        let window = &src[(first - base) * 3..(first - base + weights.len()) * 3];
        let (mut r, mut g, mut b) = (HALF, HALF, HALF);
        for (&w, s) in weights.iter().zip(window.chunks_exact(3)) {
            r += s[0] as i32 * w;
            g += s[1] as i32 * w;
            b += s[2] as i32 * w;
        }
        px[0] = clip8(r);
        px[1] = clip8(g);
        px[2] = clip8(b);
    }
}

/// One output row of the vertical pass: `dst[i] = clip8(HALF + Σ_k w[k] · rows[k·stride + i])`.
pub(crate) fn vertical_row(rows: &[u8], stride: usize, weights: &[i32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available (checked above); the kernel itself is safe code.
            unsafe { x86::vertical_row_avx2(rows, stride, weights, dst) };
            return;
        }
    }
    vertical_row_generic(rows, stride, weights, dst);
}

const LANES: usize = 32;

#[inline(always)]
fn vertical_row_generic(rows: &[u8], stride: usize, weights: &[i32], dst: &mut [u8]) {
    let width = dst.len();
    let mut c = 0;
    while c + LANES <= width {
        let mut acc = [HALF; LANES];
        for (k, &w) in weights.iter().enumerate() {
            let row = &rows[k * stride + c..][..LANES];
            for (a, &s) in acc.iter_mut().zip(row) {
                *a += s as i32 * w;
            }
        }
        for (d, &a) in dst[c..c + LANES].iter_mut().zip(&acc) {
            *d = clip8(a);
        }
        c += LANES;
    }
    for (i, d) in dst.iter_mut().enumerate().skip(c) {
        let mut acc = HALF;
        for (k, &w) in weights.iter().enumerate() {
            acc += rows[k * stride + i] as i32 * w;
        }
        *d = clip8(acc);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{KeptTaps, HALF, PRECISION_BITS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn vertical_row_avx2(
        rows: &[u8],
        stride: usize,
        weights: &[i32],
        dst: &mut [u8],
    ) {
        super::vertical_row_generic(rows, stride, weights, dst)
    }

    /// # Safety
    /// AVX2 must be available, `src.len() >= taps.row_bytes_needed(base)` and
    /// `dst.len() >= 3 * taps.n`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal_row_avx2(
        taps: &KeptTaps,
        src: &[u8],
        base: usize,
        dst: &mut [u8],
    ) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_weights_recombine() {
        let w: Vec<i32> = vec![
            -400_000, 4_194_304, 3_000_001, -1, 0, 65_535, 32_768, -32_769,
        ];
        let taps = KeptTaps::new(8, 0..1, |_| (0, &w[..]));
        assert_eq!(taps.t, 8);
        for g in 0..2 {
            for j in 0..4 {
                let lane = (j / 2) * 8 + j % 2;
                let hi = taps.split[g * 32 + lane] as i32;
                let lo = taps.split[g * 32 + 16 + lane] as i32;
                assert_eq!(hi * 65536 + lo, w[g * 4 + j]);
            }
        }
    }

    #[test]
    fn kernels_agree_with_the_portable_code() {
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for (in_w, out_w) in [(640, 448), (640, 384), (3, 7), (11, 2), (9, 9), (1, 5)] {
            let axis = super::super::resize::AxisTaps::new(in_w, out_w);
            let taps = KeptTaps::new(in_w, 0..out_w, |o| axis.of(o));
            let mut src: Vec<u8> = (0..in_w * 3).map(|_| next() as u8).collect();
            src.resize(taps.row_bytes_needed(0).max(src.len()), 0);
            let mut fast = vec![0u8; out_w * 3];
            let mut slow = vec![0u8; out_w * 3];
            horizontal_row(&taps, &src, 0, &mut fast);
            horizontal_row_portable(&taps, &src, 0, &mut slow);
            assert_eq!(fast, slow, "{in_w} -> {out_w}");
        }
        let rows: Vec<u8> = (0..5 * 100).map(|_| next() as u8).collect();
        let w = [-300_000, 2_000_000, 2_800_000, -300_000, -5_696];
        let mut fast = vec![0u8; 70];
        let mut slow = vec![0u8; 70];
        vertical_row(&rows, 100, &w, &mut fast);
        for (i, d) in slow.iter_mut().enumerate() {
            let acc: i32 = HALF + (0..5).map(|k| rows[k * 100 + i] as i32 * w[k]).sum::<i32>();
            *d = clip8(acc);
        }
        assert_eq!(fast, slow);
    }
}
