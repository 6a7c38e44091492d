//! Registration of depth into the colour camera's frame.
//!
//! Each depth pixel is deprojected with the depth intrinsics (honouring its lens model),
//! moved into the colour camera with the depth→colour extrinsics and projected with the colour
//! intrinsics (honouring its lens model). The output holds, at each colour pixel, the depth
//! camera's own millimetre value (as librealsense's `align` does); where several depth pixels
//! land on one colour pixel the nearest (smallest) wins, and colour pixels nothing lands on stay
//! 0.
//!
//! Where a depth pixel lands (the documented rounding rule, pixel centres at integer
//! coordinates): its footprint is the square between the corners (x−½, y−½) and (x+½, y+½).
//! Each corner is projected to (u, v) and snapped to the colour pixel whose centre is nearest to
//! (u+½, v+½), ties to even — for the top-left corner that is the first colour pixel whose
//! centre lies at or past the corner.
//! - When the colour stream has more pixels per degree than depth (along either axis), each
//!   depth pixel fills the whole rectangle between its two snapped corners, bounds included.
//!   Neighbouring footprints therefore overlap by one column and one row on their far sides,
//!   where the nearer surface wins: no cracks, and an edge errs towards the nearer object.
//! - Otherwise each depth pixel writes the one colour pixel of its snapped top-left corner,
//!   which for equal scales is the colour pixel nearest its centre.
//!
//! This is the footprint rule of librealsense's x86 (SSE) `align`, so the two agree on
//! calibrations where librealsense's lens handling is right. They deliberately differ where it is
//! not (see docs/registration.md): colour `brown_conrady` and
//! `inverse_brown_conrady` coefficients (ignored there), the colour `modified_brown_conrady`
//! y tangential term (uses the x term there), depth `brown_conrady` and
//! `modified_brown_conrady` (ignored there), and mirrored footprints (skipped there, ordered
//! here). librealsense's two hard-coded resolution pairs that force footprint mode are not
//! copied.

use super::calibration::{Calibration, CalibrationError, DistortionModel};
use super::distortion::Lens;
use super::frame::DepthMm;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("invalid calibration: {0}")]
    Calibration(#[from] CalibrationError),
    #[error(
        "depth image is {found_width}x{found_height} but the calibration's depth stream is \
         {width}x{height}; use the calibration of the camera mode that recorded it"
    )]
    DepthSize {
        width: usize,
        height: usize,
        found_width: usize,
        found_height: usize,
    },
    #[error(
        "output image is {found_width}x{found_height} but the colour stream is {width}x{height}"
    )]
    OutputSize {
        width: usize,
        height: usize,
        found_width: usize,
        found_height: usize,
    },
    #[error("calibration stream size {width}x{height} is too large to register")]
    TooLarge { width: usize, height: usize },
}

/// Registration precomputed for one calibration: create once, call `register_into` per frame.
#[derive(Clone, Debug)]
pub struct Registrar {
    depth_width: usize,
    depth_height: usize,
    color_width: usize,
    color_height: usize,
    rays: CornerRays,
    /// Depth→colour translation in millimetres.
    translation_mm: [f32; 3],
    projection: Projection,
    splat_footprint: bool,
    depth_lens: Lens,
    color_lens: Lens,
    rotation: [f64; 9],
    translation_m: [f64; 3],
}

/// For every footprint corner (cx−½, cy−½), cx in 0..=W, cy in 0..=H: the direction
/// `R · (x, y, 1)` in the colour camera's frame of the depth ray through it, so that the corner's
/// point at depth z (mm) is `z · ray + t`. Stored as separate x, y, z arrays so the per-pixel
/// arithmetic vectorises.
#[derive(Clone, Debug)]
enum CornerRays {
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

/// Colour projection in f32, with ½ pre-added to the principal point for the snapping rule.
#[derive(Clone, Copy, Debug)]
struct Projection {
    fx: f32,
    fy: f32,
    ppx_half: f32,
    ppy_half: f32,
    lens: ColorLens,
}

#[derive(Clone, Copy, Debug)]
enum ColorLens {
    Pinhole,
    BrownConrady([f32; 5]),
    ModifiedBrownConrady([f32; 5]),
    /// Needs a numerical inversion per point: done in f64 through `Lens`.
    Inverse(Lens),
}

trait Distort {
    fn distort(&self, x: f32, y: f32) -> (f32, f32);
}

struct NoDistortion;
impl Distort for NoDistortion {
    #[inline(always)]
    fn distort(&self, x: f32, y: f32) -> (f32, f32) {
        (x, y)
    }
}

struct BrownConradyF32([f32; 5]);
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

struct ModifiedBrownConradyF32([f32; 5]);
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

struct InverseF64(Lens);
impl Distort for InverseF64 {
    #[inline(always)]
    fn distort(&self, x: f32, y: f32) -> (f32, f32) {
        let [a, b] = self.0.distort_plane(x as f64, y as f64);
        (a as f32, b as f32)
    }
}

/// Points closer to the colour camera plane than this (mm) are not projected.
const MIN_COLOR_Z_MM: f32 = 1e-3;

/// A snapped coordinate that lies outside any image: marks a depth pixel that writes nothing.
const NOWHERE: i32 = -4_000_000;

/// Rounds to the nearest integer, ties to even, for |v| < 2²²; larger magnitudes and NaN are
/// first clamped into ±4·10⁶, far outside any image. Adding 1.5·2²³ leaves the rounded integer in
/// the low mantissa bits, so this is two compares, an add and an integer subtract: it
/// vectorises without SSE4.1's `roundps` or a saturating float→int conversion.
#[inline(always)]
fn snap(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let c = if v > -4.0e6 { v } else { -4.0e6 };
    let c = if c < 4.0e6 { c } else { 4.0e6 };
    (c + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// Pixels processed per pass: their snapped corners live on the stack between the two passes.
const CHUNK: usize = 128;

/// A footprint wider or taller than this many colour pixels comes from a point almost on the
/// colour camera's plane; it is dropped rather than smeared across the image.
const MAX_FOOTPRINT: i32 = 64;

/// All ones: a lane `keep_nearest_4` must leave alone.
const EMPTY: u32 = u32::MAX;

/// Keeps the nearer of `out` and `mm`, where 0 means no data on either side (`mm` 0 leaves
/// `out` unchanged): shifted down by one, 0 wraps to the largest value, so nearest-wins is a
/// plain `min`.
#[inline(always)]
fn keep_nearest_or_skip(out: &mut u32, mm: u32) {
    *out = out.wrapping_sub(1).min(mm.wrapping_sub(1)).wrapping_add(1);
}

/// `keep_nearest_or_skip` of `value[i]` into `dst[index[i]]` for the first `n` pixels, in
/// groups of `RUN`. A group landing on `RUN` consecutive colour pixels (neighbours staying
/// neighbours: the usual case when the cameras have similar resolutions) is one vector `min`.
/// Otherwise even pixels go first, then odd ones: where depth is denser than colour, neighbours
/// land on the same pixel, and a read of a value still being stored waits for it.
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
}

/// Per span width 0..=4: which of four lanes lie beyond the span (all ones) and so must be left
/// alone by `keep_nearest_4`.
const BEYOND_SPAN: [[u32; 4]; 5] = [
    [EMPTY, EMPTY, EMPTY, EMPTY],
    [0, EMPTY, EMPTY, EMPTY],
    [0, 0, EMPTY, EMPTY],
    [0, 0, 0, EMPTY],
    [0, 0, 0, 0],
];

/// `keep_nearest_or_skip` on the first `width` (0..=4) of four pixels, as one 4-lane operation.
#[inline(always)]
fn keep_nearest_4(out: &mut [u32; 4], mm: u32, width: usize) {
    let beyond = BEYOND_SPAN[width.min(4)];
    for k in 0..4 {
        // As `keep_nearest_or_skip`; a lane beyond the span is min'ed with all ones: unchanged.
        out[k] = out[k]
            .wrapping_sub(1)
            .min((mm - 1) | beyond[k])
            .wrapping_add(1);
    }
}

impl Registrar {
    /// Precomputes everything that depends only on the calibration.
    pub fn new(calib: &Calibration) -> Result<Registrar, RegisterError> {
        calib.validate("calibration")?;
        for intr in [&calib.depth, &calib.color] {
            let fits = intr.width < (1 << 20)
                && intr.height < (1 << 20)
                && intr
                    .width
                    .checked_mul(intr.height)
                    .is_some_and(|n| n < (1 << 31));
            if !fits {
                return Err(RegisterError::TooLarge {
                    width: intr.width,
                    height: intr.height,
                });
            }
        }
        let depth_lens = Lens::of(&calib.depth);
        let color_lens = Lens::of(&calib.color);
        let r = calib.depth_to_color.rotation;
        let rotate = |x: f64, y: f64, z: f64| -> [f32; 3] {
            [
                (r[0] * x + r[1] * y + r[2] * z) as f32,
                (r[3] * x + r[4] * y + r[5] * z) as f32,
                (r[6] * x + r[7] * y + r[8] * z) as f32,
            ]
        };
        let (w, h) = (calib.depth.width, calib.depth.height);
        let rays = if depth_lens.distortion.is_none() {
            let column: Vec<[f32; 3]> = (0..=w)
                .map(|cx| rotate((cx as f64 - 0.5 - depth_lens.ppx) / depth_lens.fx, 0.0, 0.0))
                .collect();
            let row = (0..=h)
                .map(|cy| rotate(0.0, (cy as f64 - 0.5 - depth_lens.ppy) / depth_lens.fy, 1.0))
                .collect();
            CornerRays::Separable {
                column: [0, 1, 2].map(|k| column.iter().map(|r| r[k]).collect()),
                row,
            }
        } else {
            let mut rays: [Vec<f32>; 3] = Default::default();
            for cy in 0..=h {
                for cx in 0..=w {
                    let [x, y] = depth_lens.plane_from_pixel(cx as f64 - 0.5, cy as f64 - 0.5);
                    for (k, v) in rotate(x, y, 1.0).into_iter().enumerate() {
                        rays[k].push(v);
                    }
                }
            }
            CornerRays::Grid {
                stride: w + 1,
                rays,
            }
        };
        let t = calib.depth_to_color.translation;
        let lens = match color_lens.distortion {
            None => ColorLens::Pinhole,
            Some((DistortionModel::BrownConrady, c)) => {
                ColorLens::BrownConrady(c.map(|v| v as f32))
            }
            Some((DistortionModel::ModifiedBrownConrady, c)) => {
                ColorLens::ModifiedBrownConrady(c.map(|v| v as f32))
            }
            Some((DistortionModel::InverseBrownConrady, _)) => ColorLens::Inverse(color_lens),
            Some((DistortionModel::None, _)) => ColorLens::Pinhole,
        };
        let projection = Projection {
            fx: calib.color.fx as f32,
            fy: calib.color.fy as f32,
            ppx_half: (calib.color.ppx + 0.5) as f32,
            ppy_half: (calib.color.ppy + 0.5) as f32,
            lens,
        };
        Ok(Registrar {
            depth_width: w,
            depth_height: h,
            color_width: calib.color.width,
            color_height: calib.color.height,
            rays,
            translation_mm: [
                (t[0] * 1000.0) as f32,
                (t[1] * 1000.0) as f32,
                (t[2] * 1000.0) as f32,
            ],
            projection,
            splat_footprint: color_is_denser(calib),
            depth_lens,
            color_lens,
            rotation: r,
            translation_m: t,
        })
    }

    /// Depth stream size this registrar expects, (width, height).
    pub fn depth_size(&self) -> (usize, usize) {
        (self.depth_width, self.depth_height)
    }

    /// Colour stream size it produces, (width, height).
    pub fn color_size(&self) -> (usize, usize) {
        (self.color_width, self.color_height)
    }

    /// Whether each depth pixel fills its whole projected footprint (colour denser than depth)
    /// rather than one colour pixel.
    pub fn splats_footprint(&self) -> bool {
        self.splat_footprint
    }

    /// Registers one depth frame into a new colour-sized image.
    pub fn register(&self, depth: &DepthMm) -> Result<DepthMm, RegisterError> {
        let mut out = DepthMm::zeros(self.color_width, self.color_height);
        self.register_into(depth, &mut out)?;
        Ok(out)
    }

    /// Registers one depth frame into `out` (colour-sized), overwriting all of it. Allocates
    /// nothing.
    pub fn register_into(&self, depth: &DepthMm, out: &mut DepthMm) -> Result<(), RegisterError> {
        if (depth.width(), depth.height()) != (self.depth_width, self.depth_height) {
            return Err(RegisterError::DepthSize {
                width: self.depth_width,
                height: self.depth_height,
                found_width: depth.width(),
                found_height: depth.height(),
            });
        }
        if (out.width(), out.height()) != (self.color_width, self.color_height) {
            return Err(RegisterError::OutputSize {
                width: self.color_width,
                height: self.color_height,
                found_width: out.width(),
                found_height: out.height(),
            });
        }
        // Borrow the buffer out of `out` (no allocation: an empty Vec does not allocate).
        let mut dst = std::mem::replace(out, DepthMm::zeros(0, 0)).into_vec();
        let src = depth.as_slice();
        match self.projection.lens {
            ColorLens::Pinhole => self.splat_fastest(&NoDistortion, src, &mut dst),
            ColorLens::BrownConrady(c) => self.splat_fastest(&BrownConradyF32(c), src, &mut dst),
            ColorLens::ModifiedBrownConrady(c) => {
                self.splat_fastest(&ModifiedBrownConradyF32(c), src, &mut dst)
            }
            ColorLens::Inverse(lens) => self.splat_fastest(&InverseF64(lens), src, &mut dst),
        }
        // Every value written is an input depth, already within the uint24 range.
        *out = DepthMm::from_mm_in_range(self.color_width, self.color_height, dst).ok_or(
            RegisterError::OutputSize {
                width: self.color_width,
                height: self.color_height,
                found_width: 0,
                found_height: 0,
            },
        )?;
        Ok(())
    }

    /// Snaps one corner per pixel of `mm` (the corners of one corner row, see `corner_row`)
    /// into `u`, `v`; pixels without depth, or whose point is not in front of the colour camera,
    /// get `NOWHERE`.
    #[inline(always)]
    fn snap_corners<D: Distort>(
        &self,
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
            return self.snap_block(lens, [rx, ry, rz], offset, mm, u, v);
        }
        // The last, partial block of a row: pad with "no depth", which snaps to `NOWHERE`.
        let mut padded_mm = [0u32; CHUNK];
        let mut padded_rays = [[0f32; CHUNK]; 3];
        padded_mm[..mm.len()].copy_from_slice(mm);
        for (padded, r) in padded_rays.iter_mut().zip([rx, ry, rz]) {
            padded[..r.len()].copy_from_slice(r);
        }
        let [px, py, pz] = &padded_rays;
        self.snap_block(lens, [px, py, pz], offset, &padded_mm, u, v)
    }

    /// `snap_corners` on one whole block, read in place: a branch-free loop of known length is
    /// what the compiler vectorises (except through `InverseF64`).
    #[inline(always)]
    fn snap_block<D: Distort>(
        &self,
        lens: &D,
        rays: [&[f32; CHUNK]; 3],
        offset: [f32; 3],
        mm: &[u32; CHUNK],
        u: &mut [i32; CHUNK],
        v: &mut [i32; CHUNK],
    ) {
        let [tx, ty, tz] = self.translation_mm;
        let p = &self.projection;
        let (fx, fy, ppx_half, ppy_half) = (p.fx, p.fy, p.ppx_half, p.ppy_half);
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

    /// From snapped corners to the colour rectangle each footprint fills, clipped to the image:
    /// `[first pixel index, width, height]`; height 0 for a pixel that fills nothing (no depth,
    /// behind the colour camera, outside the image, or a footprint over `MAX_FOOTPRINT`).
    /// Branch-free, so it vectorises. Returns the last colour row any of them fills.
    #[inline(always)]
    fn footprint_rects(
        &self,
        u0: &[i32; CHUNK],
        v0: &[i32; CHUNK],
        u1: &[i32; CHUNK],
        v1: &[i32; CHUNK],
        rects: &mut [[u32; CHUNK]; 3],
    ) -> usize {
        let (cw, ch) = (self.color_width as i32, self.color_height as i32);
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

    /// `splat` compiled for the widest vector unit this CPU has (AVX-512: 16 lanes, and its
    /// mask registers for the branch-free selects). Same arithmetic either way: Rust never fuses
    /// a multiply and an add, so FMA hardware cannot change a result.
    fn splat_fastest<D: Distort>(&self, lens: &D, src: &[u32], dst: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512_usable() {
            // SAFETY: this CPU has the AVX-512 subsets `splat_avx512` enables, checked just above.
            unsafe { self.splat_avx512(lens, src, dst) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: this CPU has AVX2, checked just above.
            unsafe { self.splat_avx2(lens, src, dst) };
            return;
        }
        self.splat(lens, src, dst)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
    unsafe fn splat_avx512<D: Distort>(&self, lens: &D, src: &[u32], dst: &mut [u32]) {
        self.splat(lens, src, dst)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn splat_avx2<D: Distort>(&self, lens: &D, src: &[u32], dst: &mut [u32]) {
        self.splat(lens, src, dst)
    }

    #[inline(always)]
    fn splat<D: Distort>(&self, lens: &D, src: &[u32], dst: &mut [u32]) {
        let (cw, ch) = (self.color_width, self.color_height);
        let w = self.depth_width;
        let [mut u0, mut v0, mut u1, mut v1] = [[0i32; CHUNK]; 4];
        let mut rects = [[0u32; CHUNK]; 3];
        // `dst[..zeroed]` is cleared. Rows are cleared just before the first footprint that
        // reaches them, while they are about to be in cache anyway.
        let mut zeroed = 0;
        // The largest all-ones mask below the output's length (see the single-pixel path).
        let spread_mask = (dst.len().max(1).next_power_of_two() >> 1).saturating_sub(1) as u32;
        for (y, row) in src.chunks_exact(w).enumerate() {
            for (k, mm) in row.chunks(CHUNK).enumerate() {
                let x0 = k * CHUNK;
                let n = mm.len();
                self.snap_corners(lens, self.rays.corner_row(y, x0, n), mm, &mut u0, &mut v0);
                if !self.splat_footprint {
                    let (cw_i, ch_i) = (cw as i32, ch as i32);
                    let [index, value, _] = &mut rects;
                    let mut last_row = 0;
                    let first = (y * w + x0) as u32;
                    for i in 0..CHUNK {
                        let (u, v) = (u0[i], v0[i]);
                        let inside = -(((u >= 0) & (u < cw_i) & (v >= 0) & (v < ch_i)) as i32);
                        // A pixel that lands nowhere still does a read-modify-write, of a value
                        // that leaves its target unchanged (0: see `keep_nearest_or_skip`), at a
                        // spread in-bounds index: no branch, and no chain of writes to one slot.
                        let spread = (first + i as u32) & spread_mask;
                        index[i] = (v.wrapping_mul(cw_i).wrapping_add(u) & inside) as u32
                            | (spread & !inside as u32);
                        value[i] = mm.get(i).copied().unwrap_or(0) & inside as u32;
                        last_row = last_row.max(v & inside);
                    }
                    clear_through(dst, &mut zeroed, (last_row as usize + 1) * cw);
                    scatter_nearest(dst, index, value, n);
                    continue;
                }
                self.snap_corners(
                    lens,
                    self.rays.corner_row(y + 1, x0 + 1, n),
                    mm,
                    &mut u1,
                    &mut v1,
                );
                let last_row = self.footprint_rects(&u0, &v0, &u1, &v1, &mut rects);
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
                                        keep_nearest_4(four, mm, width);
                                    }
                                }
                            }
                            _ => {
                                for row in 0..height {
                                    let at = at + row * cw;
                                    for out in &mut dst[at..at + width] {
                                        keep_nearest_or_skip(out, mm);
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

    /// The 3-D point (mm, depth camera frame) of depth pixel `(x, y)` at `depth_mm`; pixel
    /// centres are at integer coordinates.
    pub fn depth_point(&self, x: f64, y: f64, depth_mm: f64) -> [f64; 3] {
        self.depth_lens.point_from_pixel(x, y, depth_mm)
    }

    /// A point of the depth camera's frame expressed in the colour camera's frame (mm).
    pub fn color_point_from_depth_point(&self, p: [f64; 3]) -> [f64; 3] {
        let (r, t) = (&self.rotation, &self.translation_m);
        [
            r[0] * p[0] + r[1] * p[1] + r[2] * p[2] + t[0] * 1000.0,
            r[3] * p[0] + r[4] * p[1] + r[5] * p[2] + t[1] * 1000.0,
            r[6] * p[0] + r[7] * p[1] + r[8] * p[2] + t[2] * 1000.0,
        ]
    }

    /// The colour pixel coordinates (sub-pixel, centres at integers) at which depth pixel
    /// `(x, y)` seen at `depth_mm` lands; `None` if it lands behind the colour camera.
    pub fn color_from_depth_pixel(&self, x: f64, y: f64, depth_mm: f64) -> Option<[f64; 2]> {
        let p = self.color_point_from_depth_point(self.depth_point(x, y, depth_mm));
        self.color_lens.pixel_from_point(p)
    }
}

/// Whether this CPU has every AVX-512 subset `splat_avx512` is compiled for.
#[cfg(target_arch = "x86_64")]
fn avx512_usable() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("fma")
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

/// librealsense's switch: footprints are filled when colour has more pixels per degree of field
/// of view than depth along either axis.
fn color_is_denser(calib: &Calibration) -> bool {
    let per_degree = |i: &super::Intrinsics| {
        let fov = |pp: f64, f: f64, size: usize| {
            ((pp + 0.5).atan2(f) + (size as f64 - (pp + 0.5)).atan2(f)).to_degrees()
        };
        (
            i.width as f64 / fov(i.ppx, i.fx, i.width),
            i.height as f64 / fov(i.ppy, i.fy, i.height),
        )
    };
    let (dx, dy) = per_degree(&calib.depth);
    let (cx, cy) = per_degree(&calib.color);
    dx < cx || dy < cy
}

/// One-shot registration (precomputes per call; prefer `Registrar` for streams).
pub fn register_depth_to_color(
    depth: &DepthMm,
    calib: &Calibration,
) -> Result<DepthMm, RegisterError> {
    Registrar::new(calib)?.register(depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rgbd::{Extrinsics, Intrinsics};

    fn calib(color_w: usize, color_f: f64, model: DistortionModel) -> Calibration {
        let intr = |w: usize, h: usize, f: f64, model| Intrinsics {
            width: w,
            height: h,
            fx: f,
            fy: f,
            ppx: w as f64 / 2.0 - 0.3,
            ppy: h as f64 / 2.0 + 0.2,
            model,
            coeffs: [0.05, -0.02, 0.001, -0.001, 0.003],
        };
        Calibration {
            depth_scale: 0.001,
            depth: intr(96, 64, 80.0, DistortionModel::InverseBrownConrady),
            color: intr(color_w, color_w * 2 / 3, color_f, model),
            depth_to_color: Extrinsics {
                rotation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                translation: [0.02, 0.001, 0.0],
            },
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Path {
        Portable,
        #[cfg(target_arch = "x86_64")]
        Avx2,
        #[cfg(target_arch = "x86_64")]
        Avx512,
    }

    fn splat_on<D: Distort>(reg: &Registrar, path: Path, lens: &D, src: &[u32], dst: &mut [u32]) {
        match path {
            Path::Portable => reg.splat(lens, src, dst),
            // SAFETY: callers pass these paths only where the CPU has the features.
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => unsafe { reg.splat_avx2(lens, src, dst) },
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => unsafe { reg.splat_avx512(lens, src, dst) },
        }
    }

    fn with_lens(reg: &Registrar, path: Path, src: &[u32]) -> Vec<u32> {
        let mut dst = vec![0u32; reg.color_width * reg.color_height];
        match reg.projection.lens {
            ColorLens::Pinhole => splat_on(reg, path, &NoDistortion, src, &mut dst),
            ColorLens::BrownConrady(c) => splat_on(reg, path, &BrownConradyF32(c), src, &mut dst),
            ColorLens::ModifiedBrownConrady(c) => {
                splat_on(reg, path, &ModifiedBrownConradyF32(c), src, &mut dst)
            }
            ColorLens::Inverse(lens) => splat_on(reg, path, &InverseF64(lens), src, &mut dst),
        }
        dst
    }

    /// Every code path (portable, and each SIMD one this CPU has) gives the same image.
    #[test]
    fn every_code_path_gives_the_same_image() {
        let mm: Vec<u32> = (0..96 * 64)
            .map(|i| {
                if i % 17 == 0 {
                    0
                } else {
                    500 + (i * 7919 % 3000) as u32
                }
            })
            .collect();
        let depth = DepthMm::from_mm(96, 64, mm).unwrap();
        for (w, f) in [(144, 120.0), (48, 40.0)] {
            for model in [
                DistortionModel::None,
                DistortionModel::BrownConrady,
                DistortionModel::InverseBrownConrady,
                DistortionModel::ModifiedBrownConrady,
            ] {
                let reg = Registrar::new(&calib(w, f, model)).unwrap();
                let fastest = reg.register(&depth).unwrap();
                let portable = with_lens(&reg, Path::Portable, depth.as_slice());
                assert_eq!(fastest.as_slice(), &portable[..], "{model:?} {w}");
                assert!(portable.iter().filter(|&&v| v != 0).count() > w * w / 4);
                #[cfg(target_arch = "x86_64")]
                for (path, usable) in [
                    (Path::Avx2, std::arch::is_x86_feature_detected!("avx2")),
                    (Path::Avx512, avx512_usable()),
                ] {
                    if usable {
                        let simd = with_lens(&reg, path, depth.as_slice());
                        assert_eq!(simd, portable, "{path:?} {model:?} {w}");
                    }
                }
            }
        }
    }
}
