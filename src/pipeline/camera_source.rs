//! The real [`FrameSource`]: a camera or recording from `crate::camera`, its depth registered to
//! colour as far as the loop's consumers need it ([`DepthNeed`]).

use std::time::Instant;

use crate::camera::{self, CameraSpec, OpenOptions, Source, SourceError};

pub use crate::rgbd::DepthNeed;

use super::{Depth, FrameSource, RgbdFrame, StageError};

pub struct CameraFrames {
    source: Box<dyn Source>,
    /// What the loop's consumers need of the camera's depth:
    /// - [`DepthNeed::None`] (an RGB policy and no guard): frames carry no depth; sources that
    ///   can (recordings, the synthetic camera, RealSense) do not read it either.
    /// - [`DepthNeed::Registered`] (an RGB-D policy): every frame's depth registered on the
    ///   capture thread as it arrives (measured faster in the loop than registering on the
    ///   vision thread beside the colour preprocessing).
    /// - [`DepthNeed::Raw`] (the guard of an RGB policy, asked every K steps): frames carry
    ///   raw depth, registered by whoever needs it ([`RgbdFrame::register_depth`]).
    depth: DepthNeed,
}

impl CameraFrames {
    /// Opens the camera a SPEC names. A calibration that cannot register depth is refused
    /// here, before the loop starts, unless depth is unused.
    pub fn open(spec: &CameraSpec, depth: DepthNeed) -> Result<Self, SourceError> {
        let source = camera::open(spec, &OpenOptions { depth })?;
        if depth == DepthNeed::Raw {
            source
                .depth_registration()
                .registrar()
                .map_err(|e| SourceError::Register(e.to_string()))?;
        }
        Ok(Self::from_source(source, depth))
    }

    /// A source opened elsewhere; depth it delivers unregistered is registered here with
    /// [`DepthNeed::Registered`], left to consumers with [`DepthNeed::Raw`], and dropped with
    /// [`DepthNeed::None`].
    pub fn from_source(source: Box<dyn Source>, depth: DepthNeed) -> Self {
        Self { source, depth }
    }

    pub fn describe(&self) -> String {
        match self.depth {
            DepthNeed::None => format!("{} (depth unused)", self.source.describe()),
            DepthNeed::Registered | DepthNeed::Raw => self.source.describe(),
        }
    }
}

impl FrameSource for CameraFrames {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, StageError> {
        let Some(mut frame) = self.source.next_frame()? else {
            return Ok(None);
        };
        match self.depth {
            DepthNeed::None => frame.depth = Depth::None,
            DepthNeed::Registered => frame.register_depth()?,
            DepthNeed::Raw => {}
        }
        let ready = Instant::now();
        frame.ready = ready;
        frame.capture = frame.capture.min(ready);
        frame.arrival = frame.arrival.min(ready);
        Ok(Some(frame))
    }
}
