//! Stand-in for `rgbd::register` (being written on the `register` branch) with the same API.
//! Delete this file and import `crate::rgbd::register::Registrar` once that lands on main.

use crate::rgbd::{Calibration, DepthMm};

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(
        "depth image is {got_w}x{got_h} but the calibration's depth stream is {want_w}x{want_h}"
    )]
    SizeMismatch {
        got_w: usize,
        got_h: usize,
        want_w: usize,
        want_h: usize,
    },
}

/// Forward-projects each depth pixel's footprint into the colour image, keeping the nearest
/// surface. Distortion is ignored.
pub struct Registrar {
    calib: Calibration,
}

impl Registrar {
    pub fn new(calib: &Calibration) -> Result<Self, RegisterError> {
        Ok(Self {
            calib: calib.clone(),
        })
    }

    pub fn register(&self, depth: &DepthMm) -> Result<DepthMm, RegisterError> {
        let c = &self.calib.color;
        let mut out = DepthMm::zeros(c.width, c.height);
        self.register_into(depth, &mut out)?;
        Ok(out)
    }

    pub fn register_into(&self, depth: &DepthMm, out: &mut DepthMm) -> Result<(), RegisterError> {
        let d = &self.calib.depth;
        let c = &self.calib.color;
        if depth.width() != d.width || depth.height() != d.height {
            return Err(RegisterError::SizeMismatch {
                got_w: depth.width(),
                got_h: depth.height(),
                want_w: d.width,
                want_h: d.height,
            });
        }
        if out.width() != c.width || out.height() != c.height {
            *out = DepthMm::zeros(c.width, c.height);
        }
        let mut z_buffer = vec![u32::MAX; c.width * c.height];
        let r = &self.calib.depth_to_color.rotation;
        let t = &self.calib.depth_to_color.translation;
        // Normalised ray coordinates of pixel edges, per column and per row.
        let edge_x: Vec<f64> = (0..=d.width)
            .map(|u| (u as f64 - 0.5 - d.ppx) / d.fx)
            .collect();
        let edge_y: Vec<f64> = (0..=d.height)
            .map(|v| (v as f64 - 0.5 - d.ppy) / d.fy)
            .collect();
        let (cw, ch) = (c.width as i64, c.height as i64);
        // Colour pixel index nearest to a projected coordinate, as a signed integer.
        let nearest = |p: f64| -> i64 {
            let q = p + 0.5;
            if q >= 0.0 {
                q as i64
            } else {
                -1
            }
        };
        let project = |a: f64, b: f64, z: f64| {
            let cx = z * (r[0] * a + r[1] * b + r[2]) + t[0];
            let cy = z * (r[3] * a + r[4] * b + r[5]) + t[1];
            let cz = z * (r[6] * a + r[7] * b + r[8]) + t[2];
            let inv = 1.0 / cz;
            (cx * inv * c.fx + c.ppx, cy * inv * c.fy + c.ppy)
        };
        let src = depth.as_slice();
        for v in 0..d.height {
            let (b0, b1) = (edge_y[v], edge_y[v + 1]);
            let row = &src[v * d.width..(v + 1) * d.width];
            for (u, &mm) in row.iter().enumerate() {
                if mm == 0 {
                    continue;
                }
                let z = mm as f64 * 0.001;
                let (u0, v0) = project(edge_x[u], b0, z);
                let (u1, v1) = project(edge_x[u + 1], b1, z);
                let x0 = nearest(u0).max(0);
                let y0 = nearest(v0).max(0);
                let x1 = nearest(u1).min(cw - 1);
                let y1 = nearest(v1).min(ch - 1);
                if x1 < x0 || y1 < y0 {
                    continue;
                }
                for y in y0 as usize..=y1 as usize {
                    let line = &mut z_buffer[y * c.width + x0 as usize..=y * c.width + x1 as usize];
                    for slot in line {
                        if mm < *slot {
                            *slot = mm;
                        }
                    }
                }
            }
        }
        let data: Vec<u32> = z_buffer
            .into_iter()
            .map(|z| if z == u32::MAX { 0 } else { z })
            .collect();
        if let Some(d) = DepthMm::from_mm(c.width, c.height, data) {
            *out = d;
        }
        Ok(())
    }
}
