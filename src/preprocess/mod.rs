//! PURE image preprocessing: expand2square, Pillow-exact bicubic resize, normalisation.
//!
//! SigLIP (SpatialBot-3B): optional pad to square, bicubic squash-resize to S×S, uint8, then
//! `(x − 0.5) / 0.5`. CLIP (the robot policy): optional pad, bicubic shortest-edge resize to S,
//! centre crop S×S, then CLIP's mean/std. Depth is packed at native resolution first
//! (`rgbd::pack`), then goes through the same steps as colour.

pub mod geometry;
mod kernels;
pub mod resize;
pub mod tensor;

pub use geometry::{
    center_crop_offset, crop, expand2square, shortest_edge_size, square_paste_offset,
};
pub use resize::{resize_bicubic, BicubicResize, PassOrder, ResizeError};
use resize::{Placement, Resampler};
pub use tensor::{Normalizer, Tensor};

use crate::rgbd::RgbImage;

/// The values of the CLIP processor config, as written there (f32 rounds them).
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
pub const SIGLIP_MEAN: [f32; 3] = [0.5; 3];
pub const SIGLIP_STD: [f32; 3] = [0.5; 3];

/// Which vision tower the tensor is for (a model manifest's `vision.tower`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tower {
    Siglip,
    Clip,
}

impl Tower {
    pub const fn default_size(self) -> usize {
        match self {
            Tower::Siglip => 384,
            Tower::Clip => 336,
        }
    }
    pub const fn mean(self) -> [f32; 3] {
        match self {
            Tower::Siglip => SIGLIP_MEAN,
            Tower::Clip => CLIP_MEAN,
        }
    }
    pub const fn std(self) -> [f32; 3] {
        match self {
            Tower::Siglip => SIGLIP_STD,
            Tower::Clip => CLIP_STD,
        }
    }
    /// The reference's pad colour: `int(mean * 255)` per channel (the mean as a Python float).
    pub const fn pad_color(self) -> [u8; 3] {
        match self {
            Tower::Siglip => [127, 127, 127],
            Tower::Clip => [122, 116, 104],
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            Tower::Siglip => "siglip",
            Tower::Clip => "clip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreprocessError {
    #[error("unknown vision tower {0:?}; use \"siglip\" or \"clip\"")]
    UnknownTower(String),
    #[error("image is empty ({width}x{height}); give an image of at least 1x1 pixels")]
    EmptyImage { width: usize, height: usize },
    #[error("output size must be at least 1, got {0}")]
    BadSize(usize),
    #[error(transparent)]
    Resize(#[from] ResizeError),
}

impl std::str::FromStr for Tower {
    type Err = PreprocessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "siglip" => Ok(Tower::Siglip),
            "clip" => Ok(Tower::Clip),
            other => Err(PreprocessError::UnknownTower(other.to_string())),
        }
    }
}

/// The geometric steps for one input size, precomputed: where the image lies on the canvas
/// (padding) and the resize that computes only the kept centre crop.
#[derive(Clone, Debug)]
struct Plan {
    in_w: usize,
    in_h: usize,
    at: Placement,
    resampler: Resampler,
}

/// Image → tensor for one tower. Holds the resize tables of the last input size and its
/// buffers, so a stream of same-sized frames pays only the arithmetic and allocates nothing
/// (with `tensor_into`).
#[derive(Clone, Debug)]
pub struct Preprocessor {
    tower: Tower,
    size: usize,
    pad: bool,
    normalizer: Normalizer,
    plan: Option<Plan>,
    scratch: Vec<u8>,
}

impl Preprocessor {
    pub fn new(tower: Tower, size: usize, pad: bool) -> Result<Self, PreprocessError> {
        if size == 0 {
            return Err(PreprocessError::BadSize(size));
        }
        Ok(Self {
            tower,
            size,
            pad,
            normalizer: Normalizer::new(tower.mean(), tower.std()),
            plan: None,
            scratch: Vec::new(),
        })
    }

    pub fn tower(&self) -> Tower {
        self.tower
    }
    pub fn size(&self) -> usize {
        self.size
    }

    fn plan_for(&self, in_w: usize, in_h: usize) -> Result<Plan, PreprocessError> {
        let padded = self.pad && in_w != in_h;
        let (w, h) = if padded {
            let side = in_w.max(in_h);
            (side, side)
        } else {
            (in_w, in_h)
        };
        let at = if padded {
            let (left, top) = square_paste_offset(in_w, in_h);
            Placement {
                left,
                top,
                fill: self.tower.pad_color(),
            }
        } else {
            Placement::WHOLE
        };
        let (rw, rh) = match self.tower {
            Tower::Siglip => (self.size, self.size),
            Tower::Clip => shortest_edge_size(w, h, self.size),
        };
        let (keep_at, keep_size) = match self.tower {
            Tower::Siglip => ((0, 0), (rw, rh)),
            Tower::Clip => match center_crop_offset(rw, rh, self.size, self.size) {
                Some(at) => (at, (self.size, self.size)),
                None => ((0, 0), (rw, rh)),
            },
        };
        let order = PassOrder::pillow(w, h, rw, rh);
        let resampler = Resampler::new((w, h), (rw, rh), keep_at, keep_size, order)?;
        Ok(Plan {
            in_w,
            in_h,
            at,
            resampler,
        })
    }

    fn plan(&mut self, img: &RgbImage) -> Result<&Plan, PreprocessError> {
        if img.width == 0 || img.height == 0 {
            return Err(PreprocessError::EmptyImage {
                width: img.width,
                height: img.height,
            });
        }
        let stale = self
            .plan
            .as_ref()
            .is_none_or(|p| (p.in_w, p.in_h) != (img.width, img.height));
        if stale {
            self.plan = Some(self.plan_for(img.width, img.height)?);
        }
        self.plan.as_ref().ok_or(PreprocessError::EmptyImage {
            width: img.width,
            height: img.height,
        })
    }

    /// Width and height of the output for an input of this size (S×S but for a CLIP crop
    /// that does not fit).
    fn output_size(&mut self, img: &RgbImage) -> Result<(usize, usize), PreprocessError> {
        Ok(self.plan(img)?.resampler.kept_size())
    }

    /// The uint8 S×S image the tower sees (after pad, resize and crop).
    pub fn resized(&mut self, img: &RgbImage) -> Result<RgbImage, PreprocessError> {
        let (w, h) = self.output_size(img)?;
        let mut data = vec![0u8; w * h * 3];
        let stride = w * 3;
        let Some(plan) = self.plan.as_ref() else {
            return Err(PreprocessError::EmptyImage {
                width: 0,
                height: 0,
            });
        };
        plan.resampler
            .run(img, plan.at, &mut self.scratch, |y, row| {
                data[y * stride..(y + 1) * stride].copy_from_slice(row)
            })?;
        Ok(RgbImage {
            width: w,
            height: h,
            data,
        })
    }

    /// The f32 `[3, S, S]` tensor for the vision graph, written into `out` (resized to fit;
    /// no allocation once it has the capacity). Returns the shape.
    pub fn tensor_into(
        &mut self,
        img: &RgbImage,
        out: &mut Vec<f32>,
    ) -> Result<[usize; 3], PreprocessError> {
        let (w, h) = self.output_size(img)?;
        let plane = w * h;
        out.resize(plane * 3, 0.0);
        let Some(plan) = self.plan.as_ref() else {
            return Err(PreprocessError::EmptyImage {
                width: 0,
                height: 0,
            });
        };
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let normalizer = &self.normalizer;
        plan.resampler
            .run(img, plan.at, &mut self.scratch, |y, row| {
                let at = y * w..(y + 1) * w;
                normalizer.planar_row(row, &mut r[at.clone()], &mut g[at.clone()], &mut b[at]);
            })?;
        Ok([3, h, w])
    }

    /// The f32 `[3, S, S]` tensor for the vision graph.
    pub fn tensor(&mut self, img: &RgbImage) -> Result<Tensor, PreprocessError> {
        let mut data = Vec::new();
        let shape = self.tensor_into(img, &mut data)?;
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_colours_are_int_of_mean_times_255() {
        for tower in [Tower::Siglip, Tower::Clip] {
            let want: Vec<u8> = tower
                .mean()
                .iter()
                .map(|&m| (m as f64 * 255.0) as u8)
                .collect();
            assert_eq!(tower.pad_color().to_vec(), want);
        }
    }

    #[test]
    fn clip_output_is_square_for_any_aspect() {
        let mut p = Preprocessor::new(Tower::Clip, 8, false).unwrap();
        for (w, h) in [(20, 9), (9, 20), (8, 8), (1, 3)] {
            let img = RgbImage::filled(w, h, [10, 20, 30]);
            let t = p.tensor(&img).unwrap();
            assert_eq!(t.shape, vec![3, 8, 8]);
        }
    }
}
