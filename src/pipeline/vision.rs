//! Frame → the vision graph's input tensor, per the policy manifest's `[vision]`: image 0 is
//! the colour image, image 1 the SpatialBot-packed depth (released encoding) of the same frame.

use crate::preprocess::{Preprocessor, Tensor, Tower};
use crate::rgbd::{pack, Encoding, RgbImage};

use super::{Depth, RgbdFrame, StageError};

#[derive(Debug, thiserror::Error)]
pub enum FrameTensorError {
    #[error("the policy takes depth but frame {0} has none; use a camera with depth")]
    NoDepth(u64),
    #[error("frame {0}'s depth is not registered to colour yet")]
    NotRegistered(u64),
    #[error("the policy asks for image {0} of a frame; a frame has 2 (colour, depth)")]
    NoSuchImage(usize),
}

pub struct FrameTensors {
    pre: Preprocessor,
    /// The packed depth image, reused from frame to frame.
    packed: RgbImage,
}

impl FrameTensors {
    pub fn new(tower: Tower, size: usize, pad_to_square: bool) -> Result<Self, StageError> {
        Ok(Self {
            pre: Preprocessor::new(tower, size, pad_to_square)?,
            packed: RgbImage::filled(0, 0, [0; 3]),
        })
    }

    pub fn tensor(&mut self, frame: &RgbdFrame, image: usize) -> Result<Tensor, StageError> {
        match image {
            0 => Ok(self.pre.tensor(&frame.color)?),
            1 => {
                let depth = match &frame.depth {
                    Depth::Registered(depth) => depth,
                    Depth::Raw { .. } => {
                        return Err(FrameTensorError::NotRegistered(frame.sequence).into())
                    }
                    Depth::None => return Err(FrameTensorError::NoDepth(frame.sequence).into()),
                };
                let packed = &mut self.packed;
                packed.width = depth.width();
                packed.height = depth.height();
                packed.data.resize(depth.as_slice().len() * 3, 0);
                pack::pack_into(depth.as_slice(), Encoding::SpatialBot, &mut packed.data)?;
                Ok(self.pre.tensor(packed)?)
            }
            n => Err(FrameTensorError::NoSuchImage(n).into()),
        }
    }
}
