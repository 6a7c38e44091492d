//! The real [`FrameSource`]: a camera or recording from `crate::camera`, its depth registered to
//! colour as far as the loop's consumers need it ([`DepthUse`]).

use std::sync::Arc;
use std::time::Instant;

use crate::camera::{self, CameraSpec, OpenOptions, Source, SourceError};
use crate::rgbd::register::Registrar;

use super::{CapturedFrame, FrameSource, StageError, UnregisteredDepth};

/// What the loop's consumers need of the camera's depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthUse {
    /// An RGB policy and no guard: frames carry no depth, and none is registered; sources that
    /// can (recordings, the synthetic camera) do not read it either.
    Unused,
    /// An RGB-D policy: every frame's depth registered on the capture thread as it arrives
    /// (measured faster in the loop than registering on the vision thread beside the colour
    /// preprocessing).
    Registered,
    /// Only some frames' depth is needed (the guard of an RGB policy, asked every K steps):
    /// frames carry raw depth, registered by whoever needs it
    /// ([`CapturedFrame::register_depth`]).
    OnDemand,
}

pub struct CameraFrames {
    source: Box<dyn Source>,
    depth: DepthUse,
    /// Built for the first frame whose depth is not registered yet.
    registrar: Option<Arc<Registrar>>,
}

impl CameraFrames {
    /// Opens the camera a SPEC names. A calibration that cannot register depth is refused
    /// here, before the loop starts, unless depth is unused.
    pub fn open(spec: &CameraSpec, depth: DepthUse) -> Result<Self, SourceError> {
        let register = depth == DepthUse::Registered;
        let options = OpenOptions {
            register,
            without_depth: depth == DepthUse::Unused,
        };
        let source = camera::open(spec, &options)?;
        let mut frames = Self::from_source(source, depth);
        if depth == DepthUse::OnDemand {
            frames.registrar()?;
        }
        Ok(frames)
    }

    /// A source opened elsewhere; depth it delivers unregistered is registered here (or left to
    /// consumers with [`DepthUse::OnDemand`]).
    pub fn from_source(source: Box<dyn Source>, depth: DepthUse) -> Self {
        Self {
            source,
            depth,
            registrar: None,
        }
    }

    fn registrar(&mut self) -> Result<Arc<Registrar>, SourceError> {
        if let Some(r) = &self.registrar {
            return Ok(r.clone());
        }
        let r = Registrar::new(self.source.calibration())
            .map(Arc::new)
            .map_err(|e| SourceError::Register(e.to_string()))?;
        self.registrar = Some(r.clone());
        Ok(r)
    }

    pub fn describe(&self) -> String {
        match self.depth {
            DepthUse::Unused => format!("{} (depth unused)", self.source.describe()),
            DepthUse::Registered | DepthUse::OnDemand => self.source.describe(),
        }
    }
}

impl FrameSource for CameraFrames {
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, StageError> {
        let Some(frame) = self.source.next_frame()? else {
            return Ok(None);
        };
        let ready = Instant::now();
        let depth = (frame.has_depth && self.depth != DepthUse::Unused).then_some(frame.depth);
        let (registered, unregistered) = match depth {
            None => (None, None),
            Some(depth) if frame.depth_registered => (Some(Arc::new(depth)), None),
            Some(depth) => {
                let raw = UnregisteredDepth {
                    depth: Arc::new(depth),
                    registrar: self.registrar()?,
                };
                match self.depth {
                    DepthUse::OnDemand => (None, Some(raw)),
                    DepthUse::Registered | DepthUse::Unused => {
                        (Some(Arc::new(raw.register()?)), None)
                    }
                }
            }
        };
        Ok(Some(CapturedFrame {
            seq: frame.sequence,
            captured: frame.capture.min(ready),
            arrived: frame.arrival.min(ready),
            ready,
            rgb: Arc::new(frame.color),
            depth: registered,
            unregistered_depth: unregistered,
        }))
    }
}
