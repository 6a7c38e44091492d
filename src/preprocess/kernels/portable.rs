//! The portable resampler kernels: plain Rust for every target, the reference the SIMD kernels
//! equal bit for bit.

use super::{clip8, KeptTaps, HALF};

/// `super::horizontal_row`, reading only the real taps of each window.
pub(super) fn horizontal_row(taps: &KeptTaps, src: &[u8], base: usize, dst: &mut [u8]) {
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

const LANES: usize = 32;

/// `super::vertical_row`, `LANES` bytes at a time in a loop the compiler vectorises (for the
/// target's baseline, or for AVX2 inside `x86_64::vertical_row_avx2`).
#[inline(always)]
pub(super) fn vertical_row(rows: &[u8], stride: usize, weights: &[i32], dst: &mut [u8]) {
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
    vertical_tail(rows, stride, weights, dst, c);
}

/// `vertical_row` on `dst[from..]`, one byte at a time.
#[inline(always)]
pub(super) fn vertical_tail(
    rows: &[u8],
    stride: usize,
    weights: &[i32],
    dst: &mut [u8],
    from: usize,
) {
    for (i, d) in dst.iter_mut().enumerate().skip(from) {
        let mut acc = HALF;
        for (k, &w) in weights.iter().enumerate() {
            acc += rows[k * stride + i] as i32 * w;
        }
        *d = clip8(acc);
    }
}
