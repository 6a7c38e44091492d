//! The aarch64 kernels in NEON (Advanced SIMD). NEON is part of the aarch64 baseline, so this
//! module is compiled only where the target has it (`target_feature = "neon"`) and nothing is
//! checked at run time; `rgbd::kernels` still reaches it through `Isa` like every other
//! implementation.
//!
//! The intrinsics are `#[target_feature(enable = "neon")]` functions, which Rust lets only code
//! that itself lists the feature call safely, even where the whole target has it. So the
//! kernels here list it too, and the trait methods and `rgbd::kernels` call them in `unsafe`
//! blocks that are sound because this module exists only on targets with NEON.
//!
//! Bit-exactness with the portable code: integer steps are the same operations lane for lane;
//! float steps are the same IEEE operations in the same order (a multiply and an add stay two
//! instructions, never a fused `fmla`), division is `fdiv`, and the int→float conversion rounds
//! to nearest as `as f32` does.

use std::arch::aarch64::*;

use super::portable::{self, scatter_pairs};
use super::{
    splat_with, BrownConradyF32, ColorLens, Distort, InverseF64, ModifiedBrownConradyF32,
    NoDistortion, SplatGeometry, Steps, BEYOND_SPAN, CHUNK, MAX_FOOTPRINT, MIN_COLOR_Z_MM, NOWHERE,
};

// --- Packing -------------------------------------------------------------------------------

/// The three channels of 16 pixels, from each pixel's `d >> 10` (at most 127 once saturated)
/// and the low 16 bits of `d`, both as u16 (pixels 0..8 in `*_lo`, 8..16 in `*_hi`):
/// `R = (d >> 10) << SHIFT`, `G = (d >> 2) & 0xF8` (bits 5..10 of d moved to 3..8),
/// `B = (d << 3)` truncated to a byte (bits 0..5 of d moved to 3..8).
#[target_feature(enable = "neon")]
#[inline]
fn channels<const SHIFT: u32>(
    coarse_lo: uint16x8_t,
    coarse_hi: uint16x8_t,
    low_lo: uint16x8_t,
    low_hi: uint16x8_t,
) -> uint8x16x3_t {
    let shift = vdup_n_s8(SHIFT as i8);
    let r = vcombine_u8(
        vshl_u8(vmovn_u16(coarse_lo), shift),
        vshl_u8(vmovn_u16(coarse_hi), shift),
    );
    let mask_g = vdup_n_u8(0xF8);
    let g = vcombine_u8(
        vand_u8(vshrn_n_u16::<2>(low_lo), mask_g),
        vand_u8(vshrn_n_u16::<2>(low_hi), mask_g),
    );
    let b = vcombine_u8(
        vshl_n_u8::<3>(vmovn_u16(low_lo)),
        vshl_n_u8::<3>(vmovn_u16(low_hi)),
    );
    uint8x16x3_t(r, g, b)
}

/// 32-bit millimetres, 16 pixels per step: saturate with `umin`, count the saturated ones
/// with an unsigned compare, narrow, and store the three channels interleaved with `st3`.
#[target_feature(enable = "neon")]
pub(super) fn pack_u32<const MAX: u32, const SHIFT: u32>(
    depth_mm: &[u32],
    out: &mut [u8],
) -> usize {
    let max = vdupq_n_u32(MAX);
    let mut saturated = 0usize;
    // Per lane, minus the number of saturated pixels seen since the last flush (each step
    // subtracts at most 4 from a lane, so flushing every 2^28 steps never wraps).
    let mut over = vdupq_n_u32(0);
    let mut steps = 0u32;
    let mut src = depth_mm.chunks_exact(16);
    let mut dst = out.chunks_exact_mut(48);
    for (s, d) in (&mut src).zip(&mut dst) {
        // SAFETY: `s` holds 16 u32: the four loads read its 4 × 4 values.
        let q = [0, 1, 2, 3].map(|k| unsafe { vld1q_u32(s.as_ptr().add(4 * k)) });
        let gt = q.map(|q| vcgtq_u32(q, max));
        over = vaddq_u32(
            over,
            vaddq_u32(vaddq_u32(gt[0], gt[1]), vaddq_u32(gt[2], gt[3])),
        );
        let q = q.map(|q| vminq_u32(q, max));
        let rgb = channels::<SHIFT>(
            vcombine_u16(vshrn_n_u32::<10>(q[0]), vshrn_n_u32::<10>(q[1])),
            vcombine_u16(vshrn_n_u32::<10>(q[2]), vshrn_n_u32::<10>(q[3])),
            vcombine_u16(vmovn_u32(q[0]), vmovn_u32(q[1])),
            vcombine_u16(vmovn_u32(q[2]), vmovn_u32(q[3])),
        );
        // SAFETY: `d` holds 48 bytes, what `st3` of three 16-byte vectors writes.
        unsafe { vst3q_u8(d.as_mut_ptr(), rgb) };
        steps += 1;
        if steps == 1 << 28 {
            saturated += vaddlvq_u32(vnegq_s32_u32(over)) as usize;
            over = vdupq_n_u32(0);
            steps = 0;
        }
    }
    saturated += vaddlvq_u32(vnegq_s32_u32(over)) as usize;
    saturated + portable::pack::<MAX, SHIFT, u32>(src.remainder(), dst.into_remainder())
}

/// Lane-wise `0 - v`: the count of all-ones compare results added into `v`.
#[target_feature(enable = "neon")]
#[inline]
fn vnegq_s32_u32(v: uint32x4_t) -> uint32x4_t {
    vsubq_u32(vdupq_n_u32(0), v)
}

/// 16-bit millimetres, 16 pixels per step. Nothing saturates: every u16 is in range.
#[target_feature(enable = "neon")]
pub(super) fn pack_u16<const SHIFT: u32>(depth_mm: &[u16], out: &mut [u8]) {
    let mut src = depth_mm.chunks_exact(16);
    let mut dst = out.chunks_exact_mut(48);
    for (s, d) in (&mut src).zip(&mut dst) {
        // SAFETY: `s` holds 16 u16: the two loads read 8 each.
        let (lo, hi) = unsafe { (vld1q_u16(s.as_ptr()), vld1q_u16(s.as_ptr().add(8))) };
        let rgb = channels::<SHIFT>(vshrq_n_u16::<10>(lo), vshrq_n_u16::<10>(hi), lo, hi);
        // SAFETY: `d` holds 48 bytes, what `st3` of three 16-byte vectors writes.
        unsafe { vst3q_u8(d.as_mut_ptr(), rgb) };
    }
    portable::pack::<{ u16::MAX as u32 }, SHIFT, u16>(src.remainder(), dst.into_remainder());
}

// --- Registration --------------------------------------------------------------------------

/// `Distort` on four points at once, lane for lane the same as `Distort::distort`.
pub(super) trait Distort4: Distort {
    fn distort4(&self, x: float32x4_t, y: float32x4_t) -> (float32x4_t, float32x4_t);
}

impl Distort4 for NoDistortion {
    #[inline(always)]
    fn distort4(&self, x: float32x4_t, y: float32x4_t) -> (float32x4_t, float32x4_t) {
        (x, y)
    }
}

/// `1 + r2 * (c0 + r2 * (c1 + r2 * c4))`, the radial factor, in the portable code's order.
#[target_feature(enable = "neon")]
#[inline]
fn radial(c: &[f32; 5], r2: float32x4_t) -> float32x4_t {
    let inner = vaddq_f32(vdupq_n_f32(c[1]), vmulq_n_f32(r2, c[4]));
    let middle = vaddq_f32(vdupq_n_f32(c[0]), vmulq_f32(r2, inner));
    vaddq_f32(vdupq_n_f32(1.0), vmulq_f32(r2, middle))
}

/// The tangential terms in the portable code's order:
/// `(x + 2 c2 x y + c3 (r2 + 2 x x), y + 2 c3 x y + c2 (r2 + 2 y y))` with `x`, `y` the scaled
/// coordinates and `(xs, ys)` what is added first (`x f`, `y f` or the scaled x, y themselves).
#[target_feature(enable = "neon")]
#[inline]
fn tangential(
    c: &[f32; 5],
    r2: float32x4_t,
    x: float32x4_t,
    y: float32x4_t,
    xs: float32x4_t,
    ys: float32x4_t,
) -> (float32x4_t, float32x4_t) {
    // `2.0 * c[2] * x * y` is `((2 c2) x) y`; `2.0 * x * x` is `(2 x) x`.
    let cross_x = vmulq_f32(vmulq_n_f32(x, 2.0 * c[2]), y);
    let cross_y = vmulq_f32(vmulq_n_f32(x, 2.0 * c[3]), y);
    let sq_x = vmulq_n_f32(vaddq_f32(r2, vmulq_f32(vmulq_n_f32(x, 2.0), x)), c[3]);
    let sq_y = vmulq_n_f32(vaddq_f32(r2, vmulq_f32(vmulq_n_f32(y, 2.0), y)), c[2]);
    (
        vaddq_f32(vaddq_f32(xs, cross_x), sq_x),
        vaddq_f32(vaddq_f32(ys, cross_y), sq_y),
    )
}

#[target_feature(enable = "neon")]
#[inline]
fn brown_conrady4(c: &[f32; 5], x: float32x4_t, y: float32x4_t) -> (float32x4_t, float32x4_t) {
    let r2 = vaddq_f32(vmulq_f32(x, x), vmulq_f32(y, y));
    let f = radial(c, r2);
    tangential(c, r2, x, y, vmulq_f32(x, f), vmulq_f32(y, f))
}

#[target_feature(enable = "neon")]
#[inline]
fn modified_brown_conrady4(
    c: &[f32; 5],
    x: float32x4_t,
    y: float32x4_t,
) -> (float32x4_t, float32x4_t) {
    let r2 = vaddq_f32(vmulq_f32(x, x), vmulq_f32(y, y));
    let f = radial(c, r2);
    let (x, y) = (vmulq_f32(x, f), vmulq_f32(y, f));
    tangential(c, r2, x, y, x, y)
}

impl Distort4 for BrownConradyF32 {
    #[inline(always)]
    fn distort4(&self, x: float32x4_t, y: float32x4_t) -> (float32x4_t, float32x4_t) {
        // SAFETY: this module exists only on targets with NEON.
        unsafe { brown_conrady4(&self.0, x, y) }
    }
}

impl Distort4 for ModifiedBrownConradyF32 {
    #[inline(always)]
    fn distort4(&self, x: float32x4_t, y: float32x4_t) -> (float32x4_t, float32x4_t) {
        // SAFETY: this module exists only on targets with NEON.
        unsafe { modified_brown_conrady4(&self.0, x, y) }
    }
}

impl Distort4 for InverseF64 {
    /// A numerical inversion in f64 per point: one lane at a time through the scalar code.
    #[inline(always)]
    fn distort4(&self, x: float32x4_t, y: float32x4_t) -> (float32x4_t, float32x4_t) {
        let (mut xs, mut ys) = ([0f32; 4], [0f32; 4]);
        // SAFETY: this module exists only on targets with NEON; each array holds the 4 f32 a
        // vector store writes.
        unsafe {
            vst1q_f32(xs.as_mut_ptr(), x);
            vst1q_f32(ys.as_mut_ptr(), y);
        }
        for (x, y) in xs.iter_mut().zip(&mut ys) {
            (*x, *y) = self.distort(*x, *y);
        }
        // SAFETY: as above; each array holds the 4 f32 a vector load reads.
        unsafe { (vld1q_f32(xs.as_ptr()), vld1q_f32(ys.as_ptr())) }
    }
}

/// `portable::snap` on four lanes: clamp into ±4·10⁶ with compare-and-select (so NaN, which
/// fails both compares, becomes −4·10⁶ as there), add 1.5·2²³ (round to nearest, ties to even)
/// and subtract the bit patterns.
#[target_feature(enable = "neon")]
#[inline]
fn snap4(v: float32x4_t) -> int32x4_t {
    const MAGIC: f32 = 12_582_912.0;
    let (lo, hi) = (vdupq_n_f32(-4.0e6), vdupq_n_f32(4.0e6));
    let c = vbslq_f32(vcgtq_f32(v, lo), v, lo);
    let c = vbslq_f32(vcltq_f32(c, hi), c, hi);
    vsubq_s32(
        vreinterpretq_s32_f32(vaddq_f32(c, vdupq_n_f32(MAGIC))),
        vdupq_n_s32(MAGIC.to_bits() as i32),
    )
}

/// `keep_nearest_or_skip` on four lanes: `min(out − 1, mm − 1) + 1`, wrapping.
#[target_feature(enable = "neon")]
#[inline]
fn keep_nearest(out: uint32x4_t, mm_minus_1: uint32x4_t) -> uint32x4_t {
    let one = vdupq_n_u32(1);
    vaddq_u32(vminq_u32(vsubq_u32(out, one), mm_minus_1), one)
}

/// The NEON steps, four lanes at a time.
pub(super) struct Neon;

impl<D: Distort4> Steps<D> for Neon {
    #[inline(always)]
    fn snap_block(
        g: &SplatGeometry,
        lens: &D,
        rays: [&[f32; CHUNK]; 3],
        offset: [f32; 3],
        mm: &[u32; CHUNK],
        u: &mut [i32; CHUNK],
        v: &mut [i32; CHUNK],
    ) {
        // SAFETY: this module exists only on targets with NEON.
        unsafe { snap_block_neon(g, lens, rays, offset, mm, u, v) }
    }

    #[inline(always)]
    fn footprint_rects(
        g: &SplatGeometry,
        u0: &[i32; CHUNK],
        v0: &[i32; CHUNK],
        u1: &[i32; CHUNK],
        v1: &[i32; CHUNK],
        rects: &mut [[u32; CHUNK]; 3],
    ) -> usize {
        // SAFETY: this module exists only on targets with NEON.
        unsafe { footprint_rects_neon(g, u0, v0, u1, v1, rects) }
    }

    #[inline(always)]
    fn pixel_targets(
        g: &SplatGeometry,
        u: &[i32; CHUNK],
        v: &[i32; CHUNK],
        mm: &[u32],
        first: u32,
        spread_mask: u32,
        index: &mut [u32; CHUNK],
        value: &mut [u32; CHUNK],
    ) -> usize {
        // SAFETY: this module exists only on targets with NEON.
        unsafe { pixel_targets_neon(g, u, v, mm, first, spread_mask, index, value) }
    }

    #[inline(always)]
    fn keep_nearest_4(out: &mut [u32; 4], mm: u32, width: usize) {
        // SAFETY: this module exists only on targets with NEON.
        unsafe { keep_nearest_4_neon(out, mm, width) }
    }

    #[inline(always)]
    fn scatter_nearest(dst: &mut [u32], index: &[u32; CHUNK], value: &[u32; CHUNK], n: usize) {
        // SAFETY: this module exists only on targets with NEON.
        unsafe { scatter_nearest_neon(dst, index, value, n) }
    }
}

#[target_feature(enable = "neon")]
#[inline]
fn snap_block_neon<D: Distort4>(
    g: &SplatGeometry,
    lens: &D,
    rays: [&[f32; CHUNK]; 3],
    offset: [f32; 3],
    mm: &[u32; CHUNK],
    u: &mut [i32; CHUNK],
    v: &mut [i32; CHUNK],
) {
    let [tx, ty, tz] = g.translation_mm.map(|t| vdupq_n_f32(t));
    let off = offset.map(|o| vdupq_n_f32(o));
    let (ppx_half, ppy_half) = (vdupq_n_f32(g.ppx_half), vdupq_n_f32(g.ppy_half));
    let (one, min_z, nowhere) = (
        vdupq_n_f32(1.0),
        vdupq_n_f32(MIN_COLOR_Z_MM),
        vdupq_n_s32(NOWHERE),
    );
    for i in (0..CHUNK).step_by(4) {
        // SAFETY: i + 4 <= CHUNK, the length of `mm` and of each ray array.
        let (depth, ray) = unsafe {
            (
                vld1q_u32(mm.as_ptr().add(i)),
                rays.map(|r| vld1q_f32(r.as_ptr().add(i))),
            )
        };
        // As `mm[i] as i32 as f32`.
        let z = vcvtq_f32_s32(vreinterpretq_s32_u32(depth));
        let ray = [0, 1, 2].map(|k| vaddq_f32(ray[k], off[k]));
        let pz = vaddq_f32(vmulq_f32(z, ray[2]), tz);
        let inv = vdivq_f32(one, pz);
        let x = vmulq_f32(vaddq_f32(vmulq_f32(z, ray[0]), tx), inv);
        let y = vmulq_f32(vaddq_f32(vmulq_f32(z, ray[1]), ty), inv);
        let (x, y) = lens.distort4(x, y);
        let su = snap4(vaddq_f32(vmulq_n_f32(x, g.fx), ppx_half));
        let sv = snap4(vaddq_f32(vmulq_n_f32(y, g.fy), ppy_half));
        let seen = vandq_u32(vmvnq_u32(vceqzq_u32(depth)), vcgtq_f32(pz, min_z));
        // SAFETY: i + 4 <= CHUNK, the length of `u` and `v`.
        unsafe {
            vst1q_s32(u.as_mut_ptr().add(i), vbslq_s32(seen, su, nowhere));
            vst1q_s32(v.as_mut_ptr().add(i), vbslq_s32(seen, sv, nowhere));
        }
    }
}

#[target_feature(enable = "neon")]
#[inline]
fn footprint_rects_neon(
    g: &SplatGeometry,
    u0: &[i32; CHUNK],
    v0: &[i32; CHUNK],
    u1: &[i32; CHUNK],
    v1: &[i32; CHUNK],
    rects: &mut [[u32; CHUNK]; 3],
) -> usize {
    let (cw, ch) = (g.color_width as i32, g.color_height as i32);
    let (cw_v, last_u, last_v) = (vdupq_n_s32(cw), vdupq_n_s32(cw - 1), vdupq_n_s32(ch - 1));
    let (zero, one) = (vdupq_n_s32(0), vdupq_n_s32(1));
    let (limit, nowhere) = (vdupq_n_s32(MAX_FOOTPRINT), vdupq_n_s32(NOWHERE));
    let [start, width, height] = rects;
    let mut last_row = zero;
    for i in (0..CHUNK).step_by(4) {
        // SAFETY: i + 4 <= CHUNK, the length of every corner array.
        let [a_u, a_v, b_u, b_v] =
            unsafe { [u0, v0, u1, v1].map(|c| vld1q_s32(c.as_ptr().add(i))) };
        let (ua, ub) = (vminq_s32(a_u, b_u), vmaxq_s32(a_u, b_u));
        let (va, vb) = (vminq_s32(a_v, b_v), vmaxq_s32(a_v, b_v));
        let small = vandq_u32(
            vcleq_s32(vsubq_s32(ub, ua), limit),
            vcleq_s32(vsubq_s32(vb, va), limit),
        );
        let (ua, ub) = (vmaxq_s32(ua, zero), vminq_s32(ub, last_u));
        let (va, vb) = (vmaxq_s32(va, zero), vminq_s32(vb, last_v));
        let known = vbicq_u32(vmvnq_u32(vceqq_s32(a_u, nowhere)), vceqq_s32(b_u, nowhere));
        let fills = vandq_u32(
            vandq_u32(known, small),
            vandq_u32(vcleq_s32(ua, ub), vcleq_s32(va, vb)),
        );
        let keep = vreinterpretq_s32_u32(fills);
        let at = vandq_s32(vaddq_s32(vmulq_s32(va, cw_v), ua), keep);
        let w = vandq_s32(vaddq_s32(vsubq_s32(ub, ua), one), keep);
        let h = vandq_s32(vaddq_s32(vsubq_s32(vb, va), one), keep);
        last_row = vmaxq_s32(last_row, vandq_s32(vb, keep));
        // SAFETY: i + 4 <= CHUNK, the length of each rectangle array.
        unsafe {
            vst1q_u32(start.as_mut_ptr().add(i), vreinterpretq_u32_s32(at));
            vst1q_u32(width.as_mut_ptr().add(i), vreinterpretq_u32_s32(w));
            vst1q_u32(height.as_mut_ptr().add(i), vreinterpretq_u32_s32(h));
        }
    }
    vmaxvq_s32(last_row) as usize
}

#[target_feature(enable = "neon")]
#[inline]
#[allow(clippy::too_many_arguments)]
fn pixel_targets_neon(
    g: &SplatGeometry,
    u: &[i32; CHUNK],
    v: &[i32; CHUNK],
    mm: &[u32],
    first: u32,
    spread_mask: u32,
    index: &mut [u32; CHUNK],
    value: &mut [u32; CHUNK],
) -> usize {
    let (cw, ch) = (g.color_width as i32, g.color_height as i32);
    let (cw_v, ch_v, zero) = (vdupq_n_s32(cw), vdupq_n_s32(ch), vdupq_n_s32(0));
    let mask = vdupq_n_u32(spread_mask);
    let lane = [0u32, 1, 2, 3];
    // SAFETY: `lane` holds 4 u32.
    let mut pixel = vaddq_u32(vdupq_n_u32(first), unsafe { vld1q_u32(lane.as_ptr()) });
    let mut last_row = zero;
    for i in (0..CHUNK).step_by(4) {
        // SAFETY: i + 4 <= CHUNK, the length of `u` and `v`.
        let (uq, vq) = unsafe { (vld1q_s32(u.as_ptr().add(i)), vld1q_s32(v.as_ptr().add(i))) };
        let inside = vandq_u32(
            vandq_u32(vcgeq_s32(uq, zero), vcltq_s32(uq, cw_v)),
            vandq_u32(vcgeq_s32(vq, zero), vcltq_s32(vq, ch_v)),
        );
        let spread = vandq_u32(pixel, mask);
        pixel = vaddq_u32(pixel, vdupq_n_u32(4));
        let target = vreinterpretq_u32_s32(vaddq_s32(vmulq_s32(vq, cw_v), uq));
        let at = vorrq_u32(vandq_u32(target, inside), vbicq_u32(spread, inside));
        // Pixels past the end of `mm` have no depth.
        let depth = match mm.get(i..i + 4) {
            // SAFETY: the slice holds 4 u32.
            Some(four) => unsafe { vld1q_u32(four.as_ptr()) },
            None => {
                let padded: [u32; 4] = std::array::from_fn(|k| mm.get(i + k).copied().unwrap_or(0));
                // SAFETY: `padded` holds 4 u32.
                unsafe { vld1q_u32(padded.as_ptr()) }
            }
        };
        last_row = vmaxq_s32(last_row, vandq_s32(vq, vreinterpretq_s32_u32(inside)));
        // SAFETY: i + 4 <= CHUNK, the length of `index` and `value`.
        unsafe {
            vst1q_u32(index.as_mut_ptr().add(i), at);
            vst1q_u32(value.as_mut_ptr().add(i), vandq_u32(depth, inside));
        }
    }
    vmaxvq_s32(last_row) as usize
}

#[target_feature(enable = "neon")]
#[inline]
fn keep_nearest_4_neon(out: &mut [u32; 4], mm: u32, width: usize) {
    let beyond = &BEYOND_SPAN[width.min(4)];
    // SAFETY: `out` and `beyond` hold 4 u32 each.
    unsafe {
        let m = vorrq_u32(vdupq_n_u32(mm.wrapping_sub(1)), vld1q_u32(beyond.as_ptr()));
        vst1q_u32(out.as_mut_ptr(), keep_nearest(vld1q_u32(out.as_ptr()), m));
    }
}

/// As the portable steps: a group of 16 landing on 16 consecutive colour pixels is four
/// vector `min`s; other groups write one pixel at a time, even ones first.
#[target_feature(enable = "neon")]
#[inline]
fn scatter_nearest_neon(dst: &mut [u32], index: &[u32; CHUNK], value: &[u32; CHUNK], n: usize) {
    const RUN: usize = 16;
    let n = n.min(CHUNK);
    let lane = [0u32, 1, 2, 3];
    // SAFETY: `lane` holds 4 u32.
    let lane = unsafe { vld1q_u32(lane.as_ptr()) };
    let one = vdupq_n_u32(1);
    for (group, (idx, val)) in index
        .chunks_exact(RUN)
        .zip(value.chunks_exact(RUN))
        .enumerate()
    {
        let lanes = n.saturating_sub(group * RUN).min(RUN);
        if lanes == 0 {
            break;
        }
        let first = idx[0];
        if lanes == RUN {
            let mut expected = vaddq_u32(vdupq_n_u32(first), lane);
            let mut consecutive = vdupq_n_u32(u32::MAX);
            for q in 0..4 {
                // SAFETY: `idx` holds RUN = 16 u32 and 4 q + 4 <= 16.
                let got = unsafe { vld1q_u32(idx.as_ptr().add(4 * q)) };
                consecutive = vandq_u32(consecutive, vceqq_u32(got, expected));
                expected = vaddq_u32(expected, vdupq_n_u32(4));
            }
            if vminvq_u32(consecutive) == u32::MAX {
                if let Some(out) = dst.get_mut(first as usize..first as usize + RUN) {
                    for q in 0..4 {
                        // SAFETY: `out` and `val` hold 16 u32 and 4 q + 4 <= 16.
                        unsafe {
                            let mm = vsubq_u32(vld1q_u32(val.as_ptr().add(4 * q)), one);
                            let at = out.as_mut_ptr().add(4 * q);
                            vst1q_u32(at, keep_nearest(vld1q_u32(at), mm));
                        }
                    }
                    continue;
                }
            }
        }
        scatter_pairs(dst, idx, val, lanes);
    }
}

/// The NEON splat, one copy per colour lens.
pub(super) fn splat(g: &SplatGeometry, src: &[u32], dst: &mut [u32]) {
    match g.lens {
        ColorLens::Pinhole => splat_with::<Neon, _>(g, &NoDistortion, src, dst),
        ColorLens::BrownConrady(c) => splat_with::<Neon, _>(g, &BrownConradyF32(c), src, dst),
        ColorLens::ModifiedBrownConrady(c) => {
            splat_with::<Neon, _>(g, &ModifiedBrownConradyF32(c), src, dst)
        }
        ColorLens::Inverse(lens) => splat_with::<Neon, _>(g, &InverseF64(lens), src, dst),
    }
}
