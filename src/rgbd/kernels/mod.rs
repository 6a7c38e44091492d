//! The per-pixel loops of depth packing (`pack`) and registration (`register`), one
//! implementation per instruction set, chosen by a [`crate::cpu::Isa`]:
//! - `portable`: plain Rust, every target; the reference every other implementation equals bit
//!   for bit (and the code the differential tests against numpy and librealsense ran first);
//! - `x86_64`: SSSE3, AVX2 and AVX-512 packing kernels; registration's portable loops compiled
//!   for AVX2 and for AVX-512;
//! - `aarch64`: NEON packing and registration (projection, footprints, nearest-wins writes).
//!
//! The domain files (`pack.rs`, `register.rs`) keep the maths and the checks of their inputs and
//! call the entry points here with `Isa::detected()`; the test at the bottom runs every
//! implementation this CPU has against the portable one.

use crate::cpu::{Isa, Level};

use super::distortion::Lens;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod aarch64;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86_64;

// --- Packing -------------------------------------------------------------------------------

/// Packs `depth_mm` into `out` (3 bytes per pixel; callers pass `out.len() == 3 * depth_mm.len()`)
/// with the encoding's saturation `MAX` and R shift `SHIFT`; returns how many pixels saturated.
pub(super) fn pack_u32<const MAX: u32, const SHIFT: u32>(
    isa: Isa,
    depth_mm: &[u32],
    out: &mut [u8],
) -> usize {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512Vbmi if MAX == u16::MAX as u32 => {
            // SAFETY: an `Isa` at this level exists only when the CPU has AVX-512 F/BW/VBMI.
            unsafe { x86_64::pack_u32_narrowing_avx512::<SHIFT>(depth_mm, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 | Level::Avx512 | Level::Avx512Vbmi => {
            if MAX == u16::MAX as u32 {
                // SAFETY: an `Isa` at these levels exists only when the CPU has AVX2.
                unsafe { x86_64::pack_u32_narrowing_avx2::<SHIFT>(depth_mm, out) }
            } else {
                // SAFETY: as above.
                unsafe { x86_64::pack_avx2::<MAX, SHIFT>(depth_mm, out) }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Ssse3 => {
            // SAFETY: an `Isa` at this level exists only when the CPU has SSSE3.
            unsafe { x86_64::pack_ssse3::<MAX, SHIFT>(depth_mm, out) }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Level::Neon => {
            // SAFETY: the aarch64 module exists only on targets with NEON.
            unsafe { aarch64::pack_u32::<MAX, SHIFT>(depth_mm, out) }
        }
        _ => portable::pack::<MAX, SHIFT, u32>(depth_mm, out),
    }
}

/// `pack_u32` for 16-bit millimetres, which no encoding saturates.
pub(super) fn pack_u16<const SHIFT: u32>(isa: Isa, depth_mm: &[u16], out: &mut [u8]) {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512Vbmi => {
            // SAFETY: an `Isa` at this level exists only when the CPU has AVX-512 F/BW/VBMI.
            unsafe { x86_64::pack_u16_avx512::<SHIFT>(depth_mm, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 | Level::Avx512 => {
            // SAFETY: an `Isa` at these levels exists only when the CPU has AVX2.
            unsafe { x86_64::pack_u16_avx2::<SHIFT>(depth_mm, out) }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Level::Neon => {
            // SAFETY: the aarch64 module exists only on targets with NEON.
            unsafe { aarch64::pack_u16::<SHIFT>(depth_mm, out) }
        }
        _ => {
            portable::pack::<{ u16::MAX as u32 }, SHIFT, u16>(depth_mm, out);
        }
    }
}

// --- Registration --------------------------------------------------------------------------

/// Pixels processed per pass: their snapped corners live on the stack between the two passes.
pub(super) const CHUNK: usize = 128;

/// Points closer to the colour camera plane than this (mm) are not projected.
const MIN_COLOR_Z_MM: f32 = 1e-3;

/// A snapped coordinate that lies outside any image: marks a depth pixel that writes nothing.
const NOWHERE: i32 = -4_000_000;

/// A footprint wider or taller than this many colour pixels comes from a point almost on the
/// colour camera's plane; it is dropped rather than smeared across the image.
const MAX_FOOTPRINT: i32 = 64;

/// All ones: a lane `keep_nearest_4` must leave alone.
const EMPTY: u32 = u32::MAX;

/// Per span width 0..=4: which of four lanes lie beyond the span (all ones) and so must be left
/// alone by `keep_nearest_4`.
const BEYOND_SPAN: [[u32; 4]; 5] = [
    [EMPTY, EMPTY, EMPTY, EMPTY],
    [0, EMPTY, EMPTY, EMPTY],
    [0, 0, EMPTY, EMPTY],
    [0, 0, 0, EMPTY],
    [0, 0, 0, 0],
];

/// For every footprint corner (cx−½, cy−½), cx in 0..=W, cy in 0..=H: the direction
/// `R · (x, y, 1)` in the colour camera's frame of the depth ray through it, so that the corner's
/// point at depth z (mm) is `z · ray + t`. Stored as separate x, y, z arrays so the per-pixel
/// arithmetic vectorises.
#[derive(Clone, Debug)]
pub(super) enum CornerRays {
    /// Without depth-lens distortion x depends only on the column and y only on the row:
    /// `ray = column[cx] + row[cy]`.
    Separable {
        column: [Vec<f32>; 3],
        row: Vec<[f32; 3]>,
    },
    /// One ray per corner, row-major, (W+1)×(H+1).
    Grid { stride: usize, rays: [Vec<f32>; 3] },
}

impl CornerRays {
    /// The rays of corners (cx, cy) for cx in `first_cx..first_cx + n`, as three slices plus a
    /// term to add to each.
    #[inline(always)]
    fn corner_row(&self, cy: usize, first_cx: usize, n: usize) -> ([&[f32]; 3], [f32; 3]) {
        match self {
            CornerRays::Separable { column, row } => (
                column.each_ref().map(|c| &c[first_cx..first_cx + n]),
                row[cy],
            ),
            CornerRays::Grid { stride, rays } => {
                let start = cy * stride + first_cx;
                (rays.each_ref().map(|c| &c[start..start + n]), [0.0; 3])
            }
        }
    }
}

/// The colour lens as the projection applies it (f32, except `Inverse`).
#[derive(Clone, Copy, Debug)]
pub(super) enum ColorLens {
    Pinhole,
    BrownConrady([f32; 5]),
    ModifiedBrownConrady([f32; 5]),
    /// Needs a numerical inversion per point: done in f64 through `Lens`.
    Inverse(Lens),
}

/// Everything the per-frame splat reads, precomputed from the calibration by `Registrar::new`.
#[derive(Clone, Debug)]
pub(super) struct SplatGeometry {
    pub depth_width: usize,
    pub color_width: usize,
    pub color_height: usize,
    pub rays: CornerRays,
    /// Depth→colour translation in millimetres.
    pub translation_mm: [f32; 3],
    /// Colour projection in f32, with ½ pre-added to the principal point for the snapping rule.
    pub fx: f32,
    pub fy: f32,
    pub ppx_half: f32,
    pub ppy_half: f32,
    pub lens: ColorLens,
    /// Whether each depth pixel fills its whole projected footprint rather than one pixel.
    pub splat_footprint: bool,
}

/// A colour-lens distortion of a normalised image-plane point.
trait Distort {
    fn distort(&self, x: f32, y: f32) -> (f32, f32);
}

struct NoDistortion;
struct BrownConradyF32([f32; 5]);
struct ModifiedBrownConradyF32([f32; 5]);
struct InverseF64(Lens);

/// The steps of the splat that an implementation writes its own way; `splat_with` strings
/// them together. Each must give exactly the portable step's result.
trait Steps<D> {
    /// Snaps one corner per pixel (`rays[k][i] + offset[k]` is pixel i's ray) at depth `mm[i]`
    /// into `u`, `v`; pixels without depth, or whose point is not in front of the colour
    /// camera, get `NOWHERE`.
    fn snap_block(
        g: &SplatGeometry,
        lens: &D,
        rays: [&[f32; CHUNK]; 3],
        offset: [f32; 3],
        mm: &[u32; CHUNK],
        u: &mut [i32; CHUNK],
        v: &mut [i32; CHUNK],
    );

    /// From snapped corners to the colour rectangle each footprint fills, clipped to the image:
    /// `[first pixel index, width, height]`; height 0 for a pixel that fills nothing (no depth,
    /// behind the colour camera, outside the image, or a footprint over `MAX_FOOTPRINT`).
    /// Returns the last colour row any of them fills.
    fn footprint_rects(
        g: &SplatGeometry,
        u0: &[i32; CHUNK],
        v0: &[i32; CHUNK],
        u1: &[i32; CHUNK],
        v1: &[i32; CHUNK],
        rects: &mut [[u32; CHUNK]; 3],
    ) -> usize;

    /// Single-pixel mode: the colour pixel index each depth pixel of `mm` (the first `mm.len()`
    /// of the block, whose first pixel is depth pixel `first`) writes and the value it writes.
    /// A pixel that lands nowhere gets value 0 (which leaves any target unchanged, see
    /// `keep_nearest_or_skip`) at the spread in-bounds index `(first + i) & spread_mask`: no
    /// branch, and no chain of writes to one slot. Returns the last colour row written.
    #[allow(clippy::too_many_arguments)]
    fn pixel_targets(
        g: &SplatGeometry,
        u: &[i32; CHUNK],
        v: &[i32; CHUNK],
        mm: &[u32],
        first: u32,
        spread_mask: u32,
        index: &mut [u32; CHUNK],
        value: &mut [u32; CHUNK],
    ) -> usize;

    /// `keep_nearest_or_skip` of `mm` (not 0) into the first `width` (0..=4) of four pixels.
    fn keep_nearest_4(out: &mut [u32; 4], mm: u32, width: usize);

    /// `keep_nearest_or_skip` of `value[i]` into `dst[index[i]]` for the first `n` pixels
    /// (indices past `dst` are skipped).
    fn scatter_nearest(dst: &mut [u32], index: &[u32; CHUNK], value: &[u32; CHUNK], n: usize);
}

/// Registers `src` (depth, `g.depth_width` wide) into `dst` (colour-sized), overwriting all of
/// `dst`, with the implementation `isa` names.
pub(super) fn splat(isa: Isa, g: &SplatGeometry, src: &[u32], dst: &mut [u32]) {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 | Level::Avx512Vbmi => {
            // SAFETY: an `Isa` at these levels exists only when the CPU has AVX-512
            // F/BW/VL/DQ and FMA, what `splat_avx512` is compiled for.
            unsafe { x86_64::splat_avx512(g, src, dst) }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => {
            // SAFETY: an `Isa` at this level exists only when the CPU has AVX2.
            unsafe { x86_64::splat_avx2(g, src, dst) }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Level::Neon => aarch64::splat(g, src, dst),
        _ => portable::splat(g, src, dst),
    }
}

/// The splat, from the steps of `S`: per row of depth, per block of `CHUNK` pixels, snap the
/// corners, then write nearest-wins.
#[inline(always)]
fn splat_with<S: Steps<D>, D>(g: &SplatGeometry, lens: &D, src: &[u32], dst: &mut [u32]) {
    let (cw, ch) = (g.color_width, g.color_height);
    let w = g.depth_width;
    let [mut u0, mut v0, mut u1, mut v1] = [[0i32; CHUNK]; 4];
    let mut rects = [[0u32; CHUNK]; 3];
    // `dst[..zeroed]` is cleared. Rows are cleared just before the first footprint that
    // reaches them, while they are about to be in cache anyway.
    let mut zeroed = 0;
    // The largest all-ones mask below the output's length (see `Steps::pixel_targets`).
    let spread_mask = (dst.len().max(1).next_power_of_two() >> 1).saturating_sub(1) as u32;
    for (y, row) in src.chunks_exact(w).enumerate() {
        for (k, mm) in row.chunks(CHUNK).enumerate() {
            let x0 = k * CHUNK;
            let n = mm.len();
            snap_corners::<S, D>(g, lens, g.rays.corner_row(y, x0, n), mm, &mut u0, &mut v0);
            if !g.splat_footprint {
                let [index, value, _] = &mut rects;
                let first = (y * w + x0) as u32;
                let last_row = S::pixel_targets(g, &u0, &v0, mm, first, spread_mask, index, value);
                clear_through(dst, &mut zeroed, (last_row + 1) * cw);
                S::scatter_nearest(dst, index, value, n);
                continue;
            }
            snap_corners::<S, D>(
                g,
                lens,
                g.rays.corner_row(y + 1, x0 + 1, n),
                mm,
                &mut u1,
                &mut v1,
            );
            let last_row = S::footprint_rects(g, &u0, &v0, &u1, &v1, &mut rects);
            clear_through(dst, &mut zeroed, (last_row + 1) * cw);
            let [start, width, height] = &rects;
            // Neighbouring footprints overlap, and a 4-lane load that partly overlaps a
            // store still in flight waits for it to retire. Every fourth pixel's footprint
            // is clear of the one before it, and nearest-wins does not depend on order.
            for phase in 0..4 {
                let mut i = phase;
                while i < n {
                    let (at, width, height) =
                        (start[i] as usize, width[i] as usize, height[i] as usize);
                    let mm = mm[i];
                    i += 4;
                    if height == 0 {
                        continue;
                    }
                    let end = at + (height - 1) * cw + 4;
                    match dst.get_mut(at..end) {
                        Some(rect) if width <= 4 => {
                            for row in 0..height {
                                if let Some(four) = rect[row * cw..].first_chunk_mut::<4>() {
                                    S::keep_nearest_4(four, mm, width);
                                }
                            }
                        }
                        _ => {
                            for row in 0..height {
                                let at = at + row * cw;
                                for out in &mut dst[at..at + width] {
                                    portable::keep_nearest_or_skip(out, mm);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    clear_through(dst, &mut zeroed, cw * ch);
}

/// Snaps one corner per pixel of `mm` (the corners of one corner row, see `corner_row`)
/// into `u`, `v` (see `Steps::snap_block`).
#[inline(always)]
fn snap_corners<S: Steps<D>, D>(
    g: &SplatGeometry,
    lens: &D,
    rays: ([&[f32]; 3], [f32; 3]),
    mm: &[u32],
    u: &mut [i32; CHUNK],
    v: &mut [i32; CHUNK],
) {
    let ([rx, ry, rz], offset) = rays;
    if let (Some(mm), Some(rx), Some(ry), Some(rz)) = (
        mm.first_chunk::<CHUNK>(),
        rx.first_chunk::<CHUNK>(),
        ry.first_chunk::<CHUNK>(),
        rz.first_chunk::<CHUNK>(),
    ) {
        return S::snap_block(g, lens, [rx, ry, rz], offset, mm, u, v);
    }
    // The last, partial block of a row: pad with "no depth", which snaps to `NOWHERE`.
    let mut padded_mm = [0u32; CHUNK];
    let mut padded_rays = [[0f32; CHUNK]; 3];
    padded_mm[..mm.len()].copy_from_slice(mm);
    for (padded, r) in padded_rays.iter_mut().zip([rx, ry, rz]) {
        padded[..r.len()].copy_from_slice(r);
    }
    let [px, py, pz] = &padded_rays;
    S::snap_block(g, lens, [px, py, pz], offset, &padded_mm, u, v)
}

/// Clears `dst[*zeroed..end]` (when `end` is past `*zeroed`) and moves the mark.
#[inline(always)]
fn clear_through(dst: &mut [u32], zeroed: &mut usize, end: usize) {
    let end = end.min(dst.len());
    if let Some(rows) = dst.get_mut(*zeroed..end) {
        rows.fill(0);
        *zeroed = end;
    }
}

#[cfg(test)]
mod tests;
