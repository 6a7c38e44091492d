//! The real [`FrameSource`]: a camera or recording from `crate::camera`, depth registered to
//! colour.

use std::sync::Arc;
use std::time::Instant;

use crate::camera::{self, CameraSpec, OpenOptions, Source, SourceError};

use super::{CapturedFrame, FrameSource, StageError};

pub struct CameraFrames {
    source: Box<dyn Source>,
}

impl CameraFrames {
    /// Opens the camera a SPEC names, delivering depth registered to colour.
    pub fn open(spec: &CameraSpec) -> Result<Self, SourceError> {
        let source = camera::open(spec, &OpenOptions { register: true })?;
        Ok(Self { source })
    }

    pub fn from_source(source: Box<dyn Source>) -> Self {
        Self { source }
    }

    pub fn describe(&self) -> String {
        self.source.describe()
    }
}

impl FrameSource for CameraFrames {
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, StageError> {
        let Some(frame) = self.source.next_frame()? else {
            return Ok(None);
        };
        let ready = Instant::now();
        Ok(Some(CapturedFrame {
            seq: frame.sequence,
            captured: frame.capture.min(ready),
            arrived: frame.arrival.min(ready),
            ready,
            rgb: Arc::new(frame.color),
            depth: frame.has_depth.then(|| Arc::new(frame.depth)),
        }))
    }
}
