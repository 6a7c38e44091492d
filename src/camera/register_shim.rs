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
        let color_pixel = |u: f64, v: f64, z: f64| {
            let x = (u - d.ppx) / d.fx * z;
            let y = (v - d.ppy) / d.fy * z;
            let cx = r[0] * x + r[1] * y + r[2] * z + t[0];
            let cy = r[3] * x + r[4] * y + r[5] * z + t[1];
            let cz = r[6] * x + r[7] * y + r[8] * z + t[2];
            (cx / cz * c.fx + c.ppx, cy / cz * c.fy + c.ppy)
        };
        let src = depth.as_slice();
        for v in 0..d.height {
            for u in 0..d.width {
                let mm = src[v * d.width + u];
                if mm == 0 {
                    continue;
                }
                let z = mm as f64 / 1000.0;
                let (u0, v0) = color_pixel(u as f64 - 0.5, v as f64 - 0.5, z);
                let (u1, v1) = color_pixel(u as f64 + 0.5, v as f64 + 0.5, z);
                let x0 = (u0 + 0.5).floor().max(0.0) as usize;
                let y0 = (v0 + 0.5).floor().max(0.0) as usize;
                let x1 = ((u1 + 0.5).floor() as i64).min(c.width as i64 - 1);
                let y1 = ((v1 + 0.5).floor() as i64).min(c.height as i64 - 1);
                if x1 < 0 || y1 < 0 {
                    continue;
                }
                for y in y0..=y1 as usize {
                    for x in x0..=x1 as usize {
                        let slot = &mut z_buffer[y * c.width + x];
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
