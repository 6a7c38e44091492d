//! The real [`FrameSource`]: a camera or recording from `crate::camera`, its depth registered to
//! colour as far as the loop's consumers need it ([`DepthNeed`]).

use std::time::{Duration, Instant};

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
    /// How long registering the last frame's depth took, when this source registered it.
    registration: Option<Duration>,
    /// The registered image's buffer, reused from frame to frame where nothing else holds it.
    spare: Vec<u32>,
}

impl CameraFrames {
    /// Opens the camera a SPEC names. A calibration that cannot register depth is refused
    /// here, before the loop starts, unless depth is unused.
    pub fn open(spec: &CameraSpec, depth: DepthNeed) -> Result<Self, SourceError> {
        // Registration happens here, not in the camera, so the loop times it (`register`).
        let from_camera = match depth {
            DepthNeed::Registered => DepthNeed::Raw,
            other => other,
        };
        let source = camera::open(spec, &OpenOptions { depth: from_camera })?;
        if depth != DepthNeed::None {
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
        Self {
            source,
            depth,
            registration: None,
            spare: Vec::new(),
        }
    }

    pub fn describe(&self) -> String {
        match self.depth {
            DepthNeed::None => format!("{} (depth unused)", self.source.describe()),
            DepthNeed::Registered | DepthNeed::Raw => self.source.describe(),
        }
    }
}

impl FrameSource for CameraFrames {
    fn last_registration(&self) -> Option<Duration> {
        self.registration
    }

    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, StageError> {
        let Some(mut frame) = self.source.next_frame()? else {
            return Ok(None);
        };
        self.registration = None;
        match self.depth {
            DepthNeed::None => frame.depth = Depth::None,
            DepthNeed::Registered if frame.depth.is_raw() => {
                let t = Instant::now();
                frame.register_depth_reusing(&mut self.spare)?;
                self.registration = Some(t.elapsed());
            }
            DepthNeed::Registered | DepthNeed::Raw => {}
        }
        let ready = Instant::now();
        frame.ready = ready;
        frame.capture = frame.capture.min(ready);
        frame.arrival = frame.arrival.min(ready);
        Ok(Some(frame))
    }
}
