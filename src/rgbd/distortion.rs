//! Lens models of RealSense streams: pixel ↔ normalised image plane ↔ 3-D point.
//!
//! Coefficients are `[k1, k2, p1, p2, k3]`. Conventions (which way each model maps):
//! - `brown_conrady`: the coefficients distort. `distorted = bc(undistorted)`, with
//!   `r² = x² + y²`, `f = 1 + k1 r² + k2 r⁴ + k3 r⁶`,
//!   `x' = x f + 2 p1 x y + p2 (r² + 2x²)`, `y' = y f + 2 p2 x y + p1 (r² + 2y²)`.
//!   Projection applies it; deprojection inverts it numerically.
//! - `modified_brown_conrady`: as above but the tangential terms use the radially scaled
//!   `x f`, `y f` (with the unscaled r²). Projection applies it; deprojection inverts it.
//! - `inverse_brown_conrady`: the coefficients undistort. `undistorted = bc(distorted)`, the same
//!   polynomial as `brown_conrady` applied to the pixel's normalised coordinates. Deprojection
//!   applies it (as librealsense's `align` does for depth); projection inverts it numerically.
//! - `none`: pinhole.
//!
//! A model whose coefficients are all zero is a pinhole and is treated as `none`.

use super::calibration::{DistortionModel, Intrinsics};

/// A lens model reduced to what the maths needs: `None` when the coefficients cannot move a
/// point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lens {
    pub fx: f64,
    pub fy: f64,
    pub ppx: f64,
    pub ppy: f64,
    pub distortion: Option<(DistortionModel, [f64; 5])>,
}

impl Lens {
    pub fn of(intr: &Intrinsics) -> Self {
        let distortion = match intr.model {
            DistortionModel::None => None,
            _ if intr.coeffs.iter().all(|&c| c == 0.0) => None,
            m => Some((m, intr.coeffs)),
        };
        Self {
            fx: intr.fx,
            fy: intr.fy,
            ppx: intr.ppx,
            ppy: intr.ppy,
            distortion,
        }
    }

    /// The undistorted normalised image-plane point (x/z, y/z) seen at pixel `(u, v)`.
    pub fn plane_from_pixel(&self, u: f64, v: f64) -> [f64; 2] {
        let xd = (u - self.ppx) / self.fx;
        let yd = (v - self.ppy) / self.fy;
        match self.distortion {
            None => [xd, yd],
            Some((DistortionModel::InverseBrownConrady, c)) => brown_conrady(c, xd, yd),
            Some((DistortionModel::BrownConrady, c)) => {
                invert(|x, y| brown_conrady(c, x, y), xd, yd)
            }
            Some((DistortionModel::ModifiedBrownConrady, c)) => {
                invert(|x, y| modified_brown_conrady(c, x, y), xd, yd)
            }
            Some((DistortionModel::None, _)) => [xd, yd],
        }
    }

    /// The pixel at which the undistorted normalised image-plane point `(x, y)` is seen.
    pub fn pixel_from_plane(&self, x: f64, y: f64) -> [f64; 2] {
        let [xd, yd] = self.distort_plane(x, y);
        [xd * self.fx + self.ppx, yd * self.fy + self.ppy]
    }

    /// Undistorted → distorted normalised coordinates.
    pub fn distort_plane(&self, x: f64, y: f64) -> [f64; 2] {
        match self.distortion {
            None => [x, y],
            Some((DistortionModel::BrownConrady, c)) => brown_conrady(c, x, y),
            Some((DistortionModel::ModifiedBrownConrady, c)) => modified_brown_conrady(c, x, y),
            Some((DistortionModel::InverseBrownConrady, c)) => {
                invert(|a, b| brown_conrady(c, a, b), x, y)
            }
            Some((DistortionModel::None, _)) => [x, y],
        }
    }

    /// The 3-D point (same unit as `depth`) at pixel `(u, v)` whose z is `depth`.
    pub fn point_from_pixel(&self, u: f64, v: f64, depth: f64) -> [f64; 3] {
        let [x, y] = self.plane_from_pixel(u, v);
        [x * depth, y * depth, depth]
    }

    /// The pixel at which the 3-D point is seen; `None` for a point at or behind the camera
    /// plane.
    pub fn pixel_from_point(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        if p[2].is_nan() || p[2] <= 0.0 {
            return None;
        }
        Some(self.pixel_from_plane(p[0] / p[2], p[1] / p[2]))
    }
}

/// The Brown-Conrady polynomial (OpenCV's radial + tangential model).
pub fn brown_conrady(c: [f64; 5], x: f64, y: f64) -> [f64; 2] {
    let r2 = x * x + y * y;
    let f = 1.0 + r2 * (c[0] + r2 * (c[1] + r2 * c[4]));
    [
        x * f + 2.0 * c[2] * x * y + c[3] * (r2 + 2.0 * x * x),
        y * f + 2.0 * c[3] * x * y + c[2] * (r2 + 2.0 * y * y),
    ]
}

/// librealsense's modified Brown-Conrady: tangential terms on the radially scaled point.
pub fn modified_brown_conrady(c: [f64; 5], x: f64, y: f64) -> [f64; 2] {
    let r2 = x * x + y * y;
    let f = 1.0 + r2 * (c[0] + r2 * (c[1] + r2 * c[4]));
    let (xf, yf) = (x * f, y * f);
    [
        xf + 2.0 * c[2] * xf * yf + c[3] * (r2 + 2.0 * xf * xf),
        yf + 2.0 * c[3] * xf * yf + c[2] * (r2 + 2.0 * yf * yf),
    ]
}

/// Solves `model(p) = target` by Newton's method with a finite-difference Jacobian, starting at
/// `target`. Converges to machine precision within a few steps for lens-like distortion.
fn invert(model: impl Fn(f64, f64) -> [f64; 2], tx: f64, ty: f64) -> [f64; 2] {
    const H: f64 = 1e-7;
    let (mut x, mut y) = (tx, ty);
    for _ in 0..20 {
        let [fx, fy] = model(x, y);
        let (ex, ey) = (fx - tx, fy - ty);
        if ex.abs() < 1e-15 && ey.abs() < 1e-15 {
            break;
        }
        let [ax, ay] = model(x + H, y);
        let [bx, by] = model(x, y + H);
        let (j11, j21) = ((ax - fx) / H, (ay - fy) / H);
        let (j12, j22) = ((bx - fx) / H, (by - fy) / H);
        let det = j11 * j22 - j12 * j21;
        if det.is_nan() || det.abs() <= 1e-12 {
            break;
        }
        x -= (j22 * ex - j12 * ey) / det;
        y -= (j11 * ey - j21 * ex) / det;
    }
    [x, y]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intr(model: DistortionModel, coeffs: [f64; 5]) -> Intrinsics {
        Intrinsics {
            width: 640,
            height: 480,
            fx: 600.0,
            fy: 605.0,
            ppx: 321.5,
            ppy: 238.25,
            model,
            coeffs,
        }
    }

    const COEFFS: [f64; 5] = [0.12, -0.25, 0.0011, -0.0007, 0.09];

    #[test]
    fn every_model_round_trips_pixel_point_pixel() {
        for model in [
            DistortionModel::None,
            DistortionModel::BrownConrady,
            DistortionModel::InverseBrownConrady,
            DistortionModel::ModifiedBrownConrady,
        ] {
            let lens = Lens::of(&intr(model, COEFFS));
            for &(u, v) in &[
                (0.0, 0.0),
                (639.0, 479.0),
                (321.5, 238.25),
                (100.3, 400.7),
                (600.0, 20.0),
            ] {
                let p = lens.point_from_pixel(u, v, 1234.5);
                let [u2, v2] = lens.pixel_from_point(p).unwrap();
                assert!(
                    (u2 - u).abs() < 1e-6 && (v2 - v).abs() < 1e-6,
                    "{model:?} ({u},{v}) → ({u2},{v2})"
                );
            }
        }
    }

    #[test]
    fn brown_conrady_matches_opencv_form_by_hand() {
        // x = 0.3, y = -0.2: r² = 0.13; f = 1 + 0.12·0.13 − 0.25·0.0169 + 0.09·0.002197.
        let [x, y] = brown_conrady(COEFFS, 0.3, -0.2);
        let r2: f64 = 0.13;
        let f = 1.0 + 0.12 * r2 - 0.25 * r2 * r2 + 0.09 * r2 * r2 * r2;
        let ex = 0.3 * f + 2.0 * 0.0011 * 0.3 * -0.2 + -0.0007 * (r2 + 2.0 * 0.09);
        let ey = -0.2 * f + 2.0 * -0.0007 * 0.3 * -0.2 + 0.0011 * (r2 + 2.0 * 0.04);
        assert!((x - ex).abs() < 1e-15 && (y - ey).abs() < 1e-15);
    }

    #[test]
    fn zero_coefficients_are_a_pinhole() {
        let lens = Lens::of(&intr(DistortionModel::BrownConrady, [0.0; 5]));
        assert_eq!(lens.distortion, None);
        assert_eq!(
            lens.pixel_from_point([100.0, -50.0, 1000.0]),
            Some([0.1 * 600.0 + 321.5, -0.05 * 605.0 + 238.25])
        );
        assert_eq!(lens.pixel_from_point([0.0, 0.0, 0.0]), None);
    }
}
