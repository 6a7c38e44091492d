//! The portable kernels: plain Rust for every target, the reference the SIMD kernels equal bit
//! for bit. Registration's steps are written branch-free over fixed-size blocks so that the
//! compiler vectorises them for whatever the target (or an x86 `#[target_feature]` wrapper)
//! offers.

use super::{
    BrownConradyF32, ColorLens, Distort, InverseF64, ModifiedBrownConradyF32, NoDistortion,
    SplatGeometry, Steps, BEYOND_SPAN, CHUNK, MAX_FOOTPRINT, MIN_COLOR_Z_MM, NOWHERE,
};

// --- Packing -------------------------------------------------------------------------------

const PACK_CHUNK: usize = 16;

#[inline(always)]
fn pack_chunk<const MAX: u32, const SHIFT: u32, T: Copy + Into<u32>>(
    src: &[T],
    dst: &mut [u8],
) -> u32 {
    let mut saturated = 0u32;
    for (&d, out) in src.iter().zip(dst.chunks_exact_mut(3)) {
        let d: u32 = d.into();
        saturated += (d > MAX) as u32;
        let d = d.min(MAX);
        out[0] = ((d >> 10) << SHIFT) as u8;
        out[1] = (((d >> 5) & 31) << 3) as u8;
        out[2] = ((d & 31) << 3) as u8;
    }
    saturated
}

/// Packs `depth_mm` into `out`, 3 bytes per pixel, saturating at `MAX`; returns how many pixels
/// saturated.
pub(super) fn pack<const MAX: u32, const SHIFT: u32, T: Copy + Into<u32>>(
    depth_mm: &[T],
    out: &mut [u8],
) -> usize {
    let mut saturated = 0usize;
    let mut src = depth_mm.chunks_exact(PACK_CHUNK);
    let mut dst = out.chunks_exact_mut(PACK_CHUNK * 3);
    for (s, d) in (&mut src).zip(&mut dst) {
        saturated += pack_chunk::<MAX, SHIFT, T>(s, d) as usize;
    }
    saturated + pack_chunk::<MAX, SHIFT, T>(src.remainder(), dst.into_remainder()) as usize
}

// --- Registration --------------------------------------------------------------------------

impl Distort for NoDistortion {
    #[inline(always)]
    fn distort(&self, x: f32, y: f32) -> (f32, f32) {
        (x, y)
    }
}

impl Distort for BrownConradyF32 {
    #[inline(always)]
    fn distort(&self, x: f32, y: f32) -> (f32, f32) {
        let c = &self.0;
        let r2 = x * x + y * y;
        let f = 1.0 + r2 * (c[0] + r2 * (c[1] + r2 * c[4]));
        (
            x * f + 2.0 * c[2] * x * y + c[3] * (r2 + 2.0 * x * x),
            y * f + 2.0 * c[3] * x * y + c[2] * (r2 + 2.0 * y * y),
        )
    }
}

impl Distort for ModifiedBrownConradyF32 {
    #[inline(always)]
    fn distort(&self, x: f32, y: f32) -> (f32, f32) {
        let c = &self.0;
        let r2 = x * x + y * y;
        let f = 1.0 + r2 * (c[0] + r2 * (c[1] + r2 * c[4]));
        let (x, y) = (x * f, y * f);
        (
            x + 2.0 * c[2] * x * y + c[3] * (r2 + 2.0 * x * x),
            y + 2.0 * c[3] * x * y + c[2] * (r2 + 2.0 * y * y),
        )
    }
}

impl Distort for InverseF64 {
    #[inline(always)]
    fn distort(&self, x: f32, y: f32) -> (f32, f32) {
        let [a, b] = self.0.distort_plane(x as f64, y as f64);
        (a as f32, b as f32)
    }
}

/// Rounds to the nearest integer, ties to even, for |v| < 2²²; larger magnitudes and NaN are
/// first clamped into ±4·10⁶, far outside any image. Adding 1.5·2²³ leaves the rounded integer in
/// the low mantissa bits, so this is two compares, an add and an integer subtract: it
/// vectorises without SSE4.1's `roundps` or a saturating float→int conversion.
#[inline(always)]
pub(super) fn snap(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let c = if v > -4.0e6 { v } else { -4.0e6 };
    let c = if c < 4.0e6 { c } else { 4.0e6 };
    (c + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// Keeps the nearer of `out` and `mm`, where 0 means no data on either side (`mm` 0 leaves
/// `out` unchanged): shifted down by one, 0 wraps to the largest value, so nearest-wins is a
/// plain `min`.
#[inline(always)]
pub(super) fn keep_nearest_or_skip(out: &mut u32, mm: u32) {
    *out = out.wrapping_sub(1).min(mm.wrapping_sub(1)).wrapping_add(1);
}

/// The portable steps.
pub(super) struct Portable;

impl<D: Distort> Steps<D> for Portable {
    /// A branch-free loop of known length, read in place: what the compiler vectorises (except
    /// through `InverseF64`).
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
        let [tx, ty, tz] = g.translation_mm;
        let (fx, fy, ppx_half, ppy_half) = (g.fx, g.fy, g.ppx_half, g.ppy_half);
        for i in 0..CHUNK {
            // Depth fits 24 bits, so the signed conversion (one SSE2 instruction) is exact.
            let depth = mm[i] as i32;
            let z = depth as f32;
            let ray = [0, 1, 2].map(|k| rays[k][i] + offset[k]);
            let pz = z * ray[2] + tz;
            let inv = 1.0 / pz;
            let (x, y) = lens.distort((z * ray[0] + tx) * inv, (z * ray[1] + ty) * inv);
            let (su, sv) = (snap(x * fx + ppx_half), snap(y * fy + ppy_half));
            // Masks rather than `if`: the compiler turns a shared condition into a branch and
            // gives up vectorising the loop.
            let seen = -(((depth != 0) & (pz > MIN_COLOR_Z_MM)) as i32);
            u[i] = (su & seen) | (NOWHERE & !seen);
            v[i] = (sv & seen) | (NOWHERE & !seen);
        }
    }

    /// Branch-free, so it vectorises.
    #[inline(always)]
    fn footprint_rects(
        g: &SplatGeometry,
        u0: &[i32; CHUNK],
        v0: &[i32; CHUNK],
        u1: &[i32; CHUNK],
        v1: &[i32; CHUNK],
        rects: &mut [[u32; CHUNK]; 3],
    ) -> usize {
        let (cw, ch) = (g.color_width as i32, g.color_height as i32);
        let [start, width, height] = rects;
        let mut last_row = 0;
        for i in 0..CHUNK {
            let (ua, ub) = (u0[i].min(u1[i]), u0[i].max(u1[i]));
            let (va, vb) = (v0[i].min(v1[i]), v0[i].max(v1[i]));
            let small = (ub - ua <= MAX_FOOTPRINT) & (vb - va <= MAX_FOOTPRINT);
            let (ua, ub) = (ua.max(0), ub.min(cw - 1));
            let (va, vb) = (va.max(0), vb.min(ch - 1));
            let fills = (u0[i] != NOWHERE) & (u1[i] != NOWHERE) & small & (ua <= ub) & (va <= vb);
            let keep = -(fills as i32);
            start[i] = (va.wrapping_mul(cw).wrapping_add(ua) & keep) as u32;
            width[i] = ((ub - ua + 1) & keep) as u32;
            height[i] = ((vb - va + 1) & keep) as u32;
            last_row = last_row.max(vb & keep);
        }
        last_row as usize
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
        let (cw, ch) = (g.color_width as i32, g.color_height as i32);
        let mut last_row = 0;
        for i in 0..CHUNK {
            let (u, v) = (u[i], v[i]);
            let inside = -(((u >= 0) & (u < cw) & (v >= 0) & (v < ch)) as i32);
            let spread = (first.wrapping_add(i as u32)) & spread_mask;
            index[i] =
                (v.wrapping_mul(cw).wrapping_add(u) & inside) as u32 | (spread & !inside as u32);
            value[i] = mm.get(i).copied().unwrap_or(0) & inside as u32;
            last_row = last_row.max(v & inside);
        }
        last_row as usize
    }

    /// One 4-lane operation.
    #[inline(always)]
    fn keep_nearest_4(out: &mut [u32; 4], mm: u32, width: usize) {
        let beyond = BEYOND_SPAN[width.min(4)];
        for k in 0..4 {
            // As `keep_nearest_or_skip`; a lane beyond the span is min'ed with all ones:
            // unchanged.
            out[k] = out[k]
                .wrapping_sub(1)
                .min(mm.wrapping_sub(1) | beyond[k])
                .wrapping_add(1);
        }
    }

    /// In groups of `RUN`. A group landing on `RUN` consecutive colour pixels (neighbours
    /// staying neighbours: the usual case when the cameras have similar resolutions) is one
    /// vector `min`. Otherwise even pixels go first, then odd ones: where depth is denser than
    /// colour, neighbours land on the same pixel, and a read of a value still being stored waits
    /// for it.
    #[inline(always)]
    fn scatter_nearest(dst: &mut [u32], index: &[u32; CHUNK], value: &[u32; CHUNK], n: usize) {
        const RUN: usize = 16;
        let n = n.min(CHUNK);
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
            let mut consecutive = lanes == RUN;
            for (k, &i) in idx.iter().enumerate() {
                consecutive &= i == first.wrapping_add(k as u32);
            }
            if consecutive {
                if let Some(out) = dst.get_mut(first as usize..first as usize + RUN) {
                    for (out, &mm) in out.iter_mut().zip(val) {
                        keep_nearest_or_skip(out, mm);
                    }
                    continue;
                }
            }
            scatter_pairs(dst, idx, val, lanes);
        }
    }
}

/// `keep_nearest_or_skip` of `val[k]` into `dst[idx[k]]` for `k < lanes`, even `k` first, then
/// odd ones.
#[inline(always)]
pub(super) fn scatter_pairs(dst: &mut [u32], idx: &[u32], val: &[u32], lanes: usize) {
    for phase in 0..2 {
        let mut k = phase;
        while k < lanes {
            if let Some(out) = dst.get_mut(idx[k] as usize) {
                keep_nearest_or_skip(out, val[k]);
            }
            k += 2;
        }
    }
}

/// The portable splat, one copy per colour lens. `#[inline(always)]` so that the x86
/// `#[target_feature]` wrappers compile all of it for their instruction set.
#[inline(always)]
pub(super) fn splat(g: &SplatGeometry, src: &[u32], dst: &mut [u32]) {
    use super::splat_with;
    match g.lens {
        ColorLens::Pinhole => splat_with::<Portable, _>(g, &NoDistortion, src, dst),
        ColorLens::BrownConrady(c) => splat_with::<Portable, _>(g, &BrownConradyF32(c), src, dst),
        ColorLens::ModifiedBrownConrady(c) => {
            splat_with::<Portable, _>(g, &ModifiedBrownConradyF32(c), src, dst)
        }
        ColorLens::Inverse(lens) => splat_with::<Portable, _>(g, &InverseF64(lens), src, dst),
    }
}
