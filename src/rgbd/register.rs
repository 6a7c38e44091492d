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
use super::kernels::{self, ColorLens, CornerRays, SplatGeometry};
use crate::cpu::Isa;

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
    /// What the per-frame kernels read (`rgbd::kernels`).
    splat: SplatGeometry,
    depth_lens: Lens,
    color_lens: Lens,
    rotation: [f64; 9],
    translation_m: [f64; 3],
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
        let splat = SplatGeometry {
            depth_width: w,
            color_width: calib.color.width,
            color_height: calib.color.height,
            rays,
            translation_mm: [
                (t[0] * 1000.0) as f32,
                (t[1] * 1000.0) as f32,
                (t[2] * 1000.0) as f32,
            ],
            fx: calib.color.fx as f32,
            fy: calib.color.fy as f32,
            ppx_half: (calib.color.ppx + 0.5) as f32,
            ppy_half: (calib.color.ppy + 0.5) as f32,
            lens,
            splat_footprint: color_is_denser(calib),
        };
        Ok(Registrar {
            depth_width: w,
            depth_height: h,
            color_width: calib.color.width,
            color_height: calib.color.height,
            splat,
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

    /// What the kernels read, for the tests that compare implementations.
    #[cfg(test)]
    pub(super) fn splat_geometry(&self) -> &SplatGeometry {
        &self.splat
    }

    /// Whether each depth pixel fills its whole projected footprint (colour denser than depth)
    /// rather than one colour pixel.
    pub fn splats_footprint(&self) -> bool {
        self.splat.splat_footprint
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
        kernels::splat(Isa::detected(), &self.splat, depth.as_slice(), &mut dst);
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

    fn splat_on(reg: &Registrar, isa: Isa, src: &[u32]) -> Vec<u32> {
        let mut dst = vec![0u32; reg.color_width * reg.color_height];
        kernels::splat(isa, &reg.splat, src, &mut dst);
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
                let portable = splat_on(&reg, Isa::PORTABLE, depth.as_slice());
                assert_eq!(fastest.as_slice(), &portable[..], "{model:?} {w}");
                assert!(portable.iter().filter(|&&v| v != 0).count() > w * w / 4);
                for isa in Isa::all_runnable() {
                    let simd = splat_on(&reg, isa, depth.as_slice());
                    assert_eq!(simd, portable, "{isa:?} {model:?} {w}");
                }
            }
        }
    }
}
