//! The real [`FrameSource`]: a camera or recording from `crate::camera`. Depth leaves here as the
//! camera delivered it; the loop registers it to colour only for the frames it takes
//! ([`CapturedFrame::register_depth`]), and not at all when nothing consumes depth.

use std::sync::Arc;
use std::time::Instant;

use crate::camera::{self, CameraSpec, OpenOptions, Source, SourceError};
use crate::rgbd::register::Registrar;

use super::{CapturedFrame, FrameSource, StageError, UnregisteredDepth};

/// Whether anything in the loop consumes the camera's depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthUse {
    /// An RGB policy and no guard: frames carry no depth, and none is registered.
    Unused,
    /// An RGB-D policy or the SpatialBot guard: frames carry depth, to be registered to colour.
    Registered,
}

pub struct CameraFrames {
    source: Box<dyn Source>,
    depth: DepthUse,
    /// Built when the first frame with unregistered depth arrives.
    registrar: Option<Arc<Registrar>>,
}

impl CameraFrames {
    /// Opens the camera a SPEC names. With [`DepthUse::Registered`] a calibration that cannot
    /// register depth is refused here, before the loop starts.
    pub fn open(spec: &CameraSpec, depth: DepthUse) -> Result<Self, SourceError> {
        let source = camera::open(spec, &OpenOptions { register: false })?;
        let mut frames = Self::from_source(source, depth);
        if depth == DepthUse::Registered {
            frames.registrar = Some(frames.build_registrar()?);
        }
        Ok(frames)
    }

    pub fn from_source(source: Box<dyn Source>, depth: DepthUse) -> Self {
        Self {
            source,
            depth,
            registrar: None,
        }
    }

    pub fn describe(&self) -> String {
        match self.depth {
            DepthUse::Unused => format!("{} (depth unused)", self.source.describe()),
            DepthUse::Registered => self.source.describe(),
        }
    }

    fn build_registrar(&self) -> Result<Arc<Registrar>, SourceError> {
        Registrar::new(self.source.calibration())
            .map(Arc::new)
            .map_err(|e| SourceError::Register(e.to_string()))
    }
}

impl FrameSource for CameraFrames {
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, StageError> {
        let Some(frame) = self.source.next_frame()? else {
            return Ok(None);
        };
        let ready = Instant::now();
        let depth = (frame.has_depth && self.depth == DepthUse::Registered).then_some(frame.depth);
        let (registered, unregistered) = match depth {
            None => (None, None),
            Some(depth) if frame.depth_registered => (Some(Arc::new(depth)), None),
            Some(depth) => {
                let registrar = match &self.registrar {
                    Some(r) => r.clone(),
                    None => {
                        let r = self.build_registrar()?;
                        self.registrar = Some(r.clone());
                        r
                    }
                };
                let depth = Arc::new(depth);
                (None, Some(UnregisteredDepth { depth, registrar }))
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
