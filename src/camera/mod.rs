//! Frame sources: RealSense (feature `realsense`), V4L2 (feature `v4l2`), replay of PNG-folder
//! recordings, and a deterministic synthetic tabletop.
//!
//! Every source yields [`RgbdFrame`]s through the [`Source`] trait. Sources are opened from a
//! camera SPEC string (see [`CameraSpec`]).

pub mod clock;
pub mod enumerate;
pub mod live;
pub mod pairing;
#[cfg(feature = "realsense")]
pub mod realsense;
pub mod recording;
pub mod spec;
pub mod synthetic;
pub mod v4l2;
pub mod yuv;

use std::time::Instant;

use crate::imageio::ImageIoError;
use crate::rgbd::calibration::CalibrationError;
use crate::rgbd::{Calibration, DepthMm, Intrinsics, RgbImage};

pub use spec::{
    CameraSpec, Pacing, RealSenseOptions, ReplayOptions, StreamMode, SyntheticOptions, V4l2Options,
};

/// One colour image and the depth image paired with it.
#[derive(Clone, Debug)]
pub struct RgbdFrame {
    pub color: RgbImage,
    /// Millimetres; in the colour camera's frame when `depth_registered`.
    pub depth: DepthMm,
    pub depth_registered: bool,
    pub color_intrinsics: Intrinsics,
    /// Intrinsics of `depth` as delivered: the colour intrinsics when `depth_registered`.
    pub depth_intrinsics: Intrinsics,
    /// The sensor's own frame counters.
    pub color_frame_number: u64,
    pub depth_frame_number: u64,
    /// Counts frames this source delivered, from 0.
    pub sequence: u64,
    /// The sensor's hardware timestamp of the colour frame (ms, the device's clock), when it has one.
    pub device_timestamp_ms: Option<f64>,
    /// When the light hit the sensor, on the host monotonic clock (device time mapped onto it).
    pub capture: Instant,
    /// When the host received the frame.
    pub arrival: Instant,
}

/// Counters a source keeps about frames it could not deliver.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceStats {
    pub delivered: u64,
    /// Colour or depth frames that found no partner within the allowed skew.
    pub unpaired_color: u64,
    pub unpaired_depth: u64,
    /// Gaps in the sensor's frame numbers (frames the device or transport lost).
    pub dropped_by_device: u64,
    pub disconnects: u64,
    pub reconnects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("camera SPEC `{spec}`: {message}")]
    Spec { spec: String, message: String },
    #[error("camera `{kind}` needs the `{feature}` feature: rebuild with `cargo build --release --features {feature}`")]
    FeatureMissing {
        kind: &'static str,
        feature: &'static str,
    },
    #[error("{path}: {message}")]
    Recording { path: String, message: String },
    #[error("frame {frame}: {source}")]
    Image { frame: u64, source: ImageIoError },
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error("registration failed: {0}")]
    Register(String),
    #[error("camera lost: {what}; gave up after {waited_s:.1} s of retries (plug it back in, check the cable, or raise --reconnect-timeout)")]
    DeviceLost { what: String, waited_s: f64 },
    #[error("camera: {0}")]
    Device(String),
}

/// A stream of RGB-D frames.
pub trait Source: Send {
    /// The next frame; `Ok(None)` when a finite source (a recording) has ended.
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError>;
    /// The calibration of the camera this source reads (always the unregistered geometry).
    fn calibration(&self) -> &Calibration;
    fn stats(&self) -> SourceStats;
    /// One line for logs and `devices`.
    fn describe(&self) -> String;
}

/// What the caller wants from a source besides its SPEC.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Deliver depth registered to the colour camera.
    pub register: bool,
}

/// Opens the source a SPEC names.
pub fn open(spec: &CameraSpec, options: &OpenOptions) -> Result<Box<dyn Source>, SourceError> {
    let source: Box<dyn Source> = match spec {
        CameraSpec::Synthetic(opts) => Box::new(synthetic::SyntheticSource::new(opts.clone())),
        #[cfg(feature = "realsense")]
        CameraSpec::Replay(opts) if is_bag(&opts.path) => {
            if opts.looping {
                return Err(SourceError::Spec {
                    spec: format!("replay,loop:{}", opts.path.display()),
                    message:
                        "looping is not supported for .bag files yet; record it as a PNG folder"
                            .into(),
                });
            }
            Box::new(realsense::open_bag(
                &opts.path,
                opts.pacing == Pacing::RealTime,
            )?)
        }
        CameraSpec::Replay(opts) => Box::new(recording::PngFolderSource::open(opts.clone())?),
        #[cfg(feature = "realsense")]
        CameraSpec::RealSense { serial, options } => {
            let defaults = realsense::Modes::default();
            let mode = |m: Option<spec::StreamMode>, d: realsense::Mode| {
                m.map(|m| realsense::Mode {
                    width: m.width,
                    height: m.height,
                    fps: m.fps,
                })
                .unwrap_or(d)
            };
            let modes = realsense::Modes {
                depth: mode(options.depth, defaults.depth),
                color: mode(options.color, defaults.color),
            };
            let mut live = live::LiveOptions {
                hardware_reset_on_start: options.hardware_reset,
                ..Default::default()
            };
            if let Some(s) = options.reconnect_timeout_s {
                live.reconnect_timeout = std::time::Duration::from_secs_f64(s);
            }
            Box::new(realsense::open_live(serial.clone(), modes, live)?)
        }
        #[cfg(not(feature = "realsense"))]
        CameraSpec::RealSense { .. } => {
            return Err(SourceError::FeatureMissing {
                kind: "realsense",
                feature: "realsense",
            })
        }
        #[cfg(feature = "v4l2")]
        CameraSpec::V4l2 { device, options } => {
            Box::new(v4l2::V4l2Source::open(device.clone(), options.clone())?)
        }
        #[cfg(not(feature = "v4l2"))]
        CameraSpec::V4l2 { .. } => {
            return Err(SourceError::FeatureMissing {
                kind: "v4l2",
                feature: "v4l2",
            })
        }
    };
    if options.register {
        Ok(Box::new(Registering::new(source)?))
    } else {
        Ok(source)
    }
}

pub fn is_bag(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bag"))
}

/// Wraps a source and registers its depth into the colour camera's frame.
pub struct Registering {
    inner: Box<dyn Source>,
    registrar: crate::rgbd::register::Registrar,
    /// The previous frame's unregistered depth buffer, reused for the next registered one:
    /// a fresh multi-megabyte allocation costs page faults on every frame.
    spare: Vec<u32>,
}

impl Registering {
    pub fn new(inner: Box<dyn Source>) -> Result<Self, SourceError> {
        let registrar = crate::rgbd::register::Registrar::new(inner.calibration())
            .map_err(|e| SourceError::Register(e.to_string()))?;
        Ok(Self {
            inner,
            registrar,
            spare: Vec::new(),
        })
    }
}

impl Source for Registering {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        let Some(mut frame) = self.inner.next_frame()? else {
            return Ok(None);
        };
        if !frame.depth_registered {
            let (w, h) = self.registrar.color_size();
            let mut buffer = std::mem::take(&mut self.spare);
            buffer.resize(w * h, 0);
            let mut registered = DepthMm::from_mm_in_range(w, h, buffer)
                .ok_or_else(|| SourceError::Register(format!("colour size {w}x{h}")))?;
            self.registrar
                .register_into(&frame.depth, &mut registered)
                .map_err(|e| SourceError::Register(e.to_string()))?;
            self.spare = std::mem::replace(&mut frame.depth, registered).into_vec();
            frame.depth_registered = true;
            frame.depth_intrinsics = frame.color_intrinsics.clone();
        }
        Ok(Some(frame))
    }
    fn calibration(&self) -> &Calibration {
        self.inner.calibration()
    }
    fn stats(&self) -> SourceStats {
        self.inner.stats()
    }
    fn describe(&self) -> String {
        format!("{} (depth registered to colour)", self.inner.describe())
    }
}
