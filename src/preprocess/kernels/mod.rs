//! Row kernels of the bicubic resampler, in Pillow's 22-bit fixed point: one output sample is
//! `clip8((2^21 + Σ w·x) >> 22)` with i32 arithmetic, whichever kernel computes it (integer
//! sums are exact, so every kernel gives the portable one's bytes).
//!
//! - vertical: output row = weighted sum of whole input rows, lane-parallel over the bytes of a
//!   row. Portable: written so the compiler vectorises it; x86_64: that code compiled for AVX2;
//!   aarch64: NEON, 16 bytes per step (`umull`-free: bytes widened to i32, `mla` by the weight).
//! - horizontal: each output pixel is a dot product of its own window of input pixels, every
//!   window widened to `t` taps (a multiple of 4, zero weights outside the real ones). x86_64:
//!   AVX2 splits every 22-bit weight into `hi · 2^16 + lo` (both fit i16) and sums with
//!   `pmaddwd`, four taps per step; `Σ x·w = (Σ x·hi) · 2^16 + Σ x·lo` holds exactly in i32.
//!   aarch64: NEON spreads four pixels' channels into i32 lanes with `tbl` and multiplies by the
//!   i32 weights, four taps per step.
//!
//! Which implementation runs is `crate::cpu::Isa::detected()`; the test at the bottom runs every
//! one this CPU has against the portable one.

use crate::cpu::{Isa, Level};

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod aarch64;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86_64;

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
    /// `window_span()`, computed once.
    window: (usize, usize),
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
        let window = (
            start.iter().copied().min().unwrap_or(0),
            start.iter().copied().max().unwrap_or(0) + t,
        );
        Self {
            in_size,
            n,
            t,
            first,
            count,
            start,
            weights,
            split,
            window,
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
        self.window
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
    horizontal_row_on(Isa::detected(), taps, src, base, dst)
}

/// `horizontal_row` with the implementation `isa` names. The SIMD kernels read 16 bytes at a
/// time without bounds checks; they run only when the slices hold what they read (otherwise the
/// portable kernel runs, and panics on a too-short `src` as slice indexing does).
pub(crate) fn horizontal_row_on(
    isa: Isa,
    taps: &KeptTaps,
    src: &[u8],
    base: usize,
    dst: &mut [u8],
) {
    debug_assert!(src.len() >= taps.row_bytes_needed(base));
    debug_assert!(dst.len() >= taps.n * 3);
    let fits = || {
        taps.n > 0
            && base <= taps.window_span().0
            && src.len() >= taps.row_bytes_needed(base)
            && dst.len() >= taps.n * 3
    };
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 | Level::Avx512 | Level::Avx512Vbmi if fits() => {
            // SAFETY: an `Isa` at these levels exists only when the CPU has AVX2; `fits`
            // checked the window start and the slice lengths the kernel reads and writes
            // without bounds checks.
            unsafe { x86_64::horizontal_row_avx2(taps, src, base, dst) }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Level::Neon if fits() => {
            // SAFETY: the aarch64 module exists only on targets with NEON; `fits` checked the
            // window start and the slice lengths the kernel reads and writes without bounds
            // checks.
            unsafe { aarch64::horizontal_row(taps, src, base, dst) }
        }
        _ => portable::horizontal_row(taps, src, base, dst),
    }
}

/// One output row of the vertical pass: `dst[i] = clip8(HALF + Σ_k w[k] · rows[k·stride + i])`.
pub(crate) fn vertical_row(rows: &[u8], stride: usize, weights: &[i32], dst: &mut [u8]) {
    vertical_row_on(Isa::detected(), rows, stride, weights, dst)
}

/// `vertical_row` with the implementation `isa` names.
pub(crate) fn vertical_row_on(
    isa: Isa,
    rows: &[u8],
    stride: usize,
    weights: &[i32],
    dst: &mut [u8],
) {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 | Level::Avx512 | Level::Avx512Vbmi => {
            // SAFETY: an `Isa` at these levels exists only when the CPU has AVX2; the kernel
            // itself is safe code.
            unsafe { x86_64::vertical_row_avx2(rows, stride, weights, dst) }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Level::Neon => {
            // SAFETY: the aarch64 module exists only on targets with NEON.
            unsafe { aarch64::vertical_row(rows, stride, weights, dst) }
        }
        _ => portable::vertical_row(rows, stride, weights, dst),
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
            portable::horizontal_row(&taps, &src, 0, &mut slow);
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

    /// Every implementation this CPU runs against the portable one: random sizes (tails of every
    /// vector width), windows read from an offset `base`, random vertical weights (negative
    /// ones, sums that clip both ways).
    #[test]
    fn every_isa_matches_portable() {
        let mut seed = 0xDEAD_BEEFu32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let isas = Isa::all_runnable();
        for case in 0..400 {
            let in_w = 1 + next() as usize % 90;
            let out_w = 1 + next() as usize % 90;
            let axis = super::super::resize::AxisTaps::new(in_w, out_w);
            let kept_from = next() as usize % out_w;
            let kept = kept_from..kept_from + 1 + next() as usize % (out_w - kept_from);
            let taps = KeptTaps::new(in_w, kept.clone(), |o| axis.of(o));
            let base = taps.window_span().0 - next() as usize % (taps.window_span().0 + 1);
            let len = taps.row_bytes_needed(base) + next() as usize % 5;
            let src: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut want = vec![0u8; taps.n * 3];
            portable::horizontal_row(&taps, &src, base, &mut want);
            for &isa in &isas {
                let mut got = vec![0x5Au8; taps.n * 3];
                horizontal_row_on(isa, &taps, &src, base, &mut got);
                assert_eq!(
                    got, want,
                    "{isa:?} case {case}: {in_w} -> {out_w} kept {kept:?} base {base}"
                );
            }

            let width = next() as usize % 200;
            let stride = width + next() as usize % 7;
            let n = 1 + next() as usize % 7;
            let rows: Vec<u8> = (0..stride * (n - 1) + width)
                .map(|_| next() as u8)
                .collect();
            // |Σ w·x| stays below 2^31 (7 · 255 · 2^20), as the portable kernel's i32 sums need.
            let weights: Vec<i32> = (0..n)
                .map(|_| (next() % (1 << 21)) as i32 - (1 << 20))
                .collect();
            let mut want = vec![0u8; width];
            portable::vertical_row(&rows, stride, &weights, &mut want);
            for &isa in &isas {
                let mut got = vec![0xA5u8; width];
                vertical_row_on(isa, &rows, stride, &weights, &mut got);
                assert_eq!(got, want, "{isa:?} case {case}: vertical {width} x {n}");
            }
        }
    }
}
