//! Frame sources: RealSense (feature `realsense`), V4L2 (feature `v4l2`), replay of PNG-folder
//! recordings, and a deterministic synthetic tabletop.
//!
//! Every source yields [`RgbdFrame`]s through the [`Source`] trait. Sources are opened from a
//! camera SPEC string (see [`CameraSpec`]).

pub mod clock;
pub mod enumerate;
pub mod live;
pub mod pacing;
pub mod paired;
pub mod pairing;
#[cfg(feature = "realsense")]
pub mod realsense;
pub mod recording;
pub mod sim;
pub mod spec;
pub mod synthetic;
pub mod v4l2;
pub mod yuv;

use std::sync::Arc;

use crate::imageio::ImageIoError;
use crate::rgbd::calibration::CalibrationError;
use crate::rgbd::Calibration;

pub use crate::rgbd::{Depth, DepthNeed, DepthRegistration, RgbdFrame};

pub use spec::{
    CameraSpec, Pacing, PairOptions, RealSenseOptions, ReplayOptions, SpecDefaults, StreamMode,
    SyntheticOptions, V4l2Options,
};

/// Counters a source keeps about frames it could not deliver.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SourceStats {
    pub delivered: u64,
    /// Colour or depth frames that found no partner within the allowed skew.
    pub unpaired_color: u64,
    pub unpaired_depth: u64,
    /// Gaps in the sensor's frame numbers (frames the device or transport lost); for a
    /// recording played in real time, frames the reader was too slow to take.
    pub dropped_by_device: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    /// Frames per second delivered over the last measuring window (live cameras).
    pub measured_fps: Option<f64>,
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
    /// What registers this source's raw depth, shared with the frames it delivers
    /// ([`Depth::Raw`]); a fresh one from [`Source::calibration`] unless the source keeps its own.
    fn depth_registration(&self) -> Arc<DepthRegistration> {
        Arc::new(DepthRegistration::new(self.calibration().clone()))
    }
    fn stats(&self) -> SourceStats;
    /// One line for logs and `devices`.
    fn describe(&self) -> String;
    /// What is wrong with the source but did not stop it playing (a recording that was cut,
    /// timestamps clamped); each was also logged as a warning when the source opened.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// True for a recording its recorder never finished (killed, power lost).
    fn is_cut(&self) -> bool {
        false
    }
}

/// What the caller wants from a source besides its SPEC.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// What the consumer needs of the camera's depth. [`DepthNeed::Registered`]: the source is
    /// wrapped in [`Registering`]. [`DepthNeed::None`]: sources that can skip reading,
    /// converting or rendering depth (PNG recordings, RealSense cameras and `.bag` files, the
    /// synthetic camera) deliver frames without it; a `pair:` still delivers the depth that
    /// pairs it.
    pub depth: DepthNeed,
}

impl OpenOptions {
    /// Depth registered to colour ([`DepthNeed::Registered`]) or as delivered
    /// ([`DepthNeed::Raw`]).
    pub fn with_register(register: bool) -> Self {
        Self {
            depth: if register {
                DepthNeed::Registered
            } else {
                DepthNeed::Raw
            },
        }
    }
}

/// Opens the source a SPEC names.
pub fn open(spec: &CameraSpec, options: &OpenOptions) -> Result<Box<dyn Source>, SourceError> {
    let need = options.depth;
    let source: Box<dyn Source> = match spec {
        CameraSpec::Synthetic(opts) => {
            let source = synthetic::SyntheticSource::new(opts.clone());
            Box::new(source.with_depth(need))
        }
        CameraSpec::Sim(opts) => Box::new(sim::SimSource::new(opts.clone()).with_depth(need)),
        #[cfg(feature = "realsense")]
        CameraSpec::Replay(opts) if is_bag(&opts.path) => {
            let path = opts.path.clone();
            let real_time = opts.pacing == Pacing::RealTime;
            let open_bag = move || -> Result<Box<dyn Source>, SourceError> {
                Ok(Box::new(realsense::open_bag(&path, real_time, need)?))
            };
            if opts.looping {
                Box::new(Looping::new(open_bag)?)
            } else {
                open_bag()?
            }
        }
        CameraSpec::Replay(opts) => {
            let source = recording::PngFolderSource::open(opts.clone())?;
            Box::new(source.with_depth(need))
        }
        #[cfg(feature = "realsense")]
        CameraSpec::RealSense { serial, options } => {
            let defaults = realsense::Modes::default();
            let modes = realsense::Modes {
                depth: options.depth.unwrap_or(defaults.depth),
                color: options.color.unwrap_or(defaults.color),
            };
            let mut live = live::LiveOptions {
                hardware_reset_on_start: options.hardware_reset,
                ..Default::default()
            };
            if let Some(s) = options.reconnect_timeout_s {
                live.reconnect_timeout = std::time::Duration::from_secs_f64(s);
            }
            if let Some(ms) = options.max_skew_ms {
                live.max_skew_ms = ms;
            }
            Box::new(realsense::open_live(serial.clone(), modes, live, need)?)
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
        CameraSpec::Pair {
            color,
            depth,
            options: pair,
        } => Box::new(open_pair(color, depth, pair)?),
    };
    if need == DepthNeed::Registered {
        Ok(Box::new(Registering::new(source)?))
    } else {
        Ok(source)
    }
}

/// Default largest capture-time difference of a pair's halves: two free-running 30 fps cameras
/// are never more than half a period (16.7 ms) from their nearest partner.
pub const PAIR_MAX_SKEW_MS: f64 = 20.0;

fn open_pair(
    color: &CameraSpec,
    depth: &CameraSpec,
    options: &PairOptions,
) -> Result<paired::PairedSource, SourceError> {
    let Some(file) = &options.calibration else {
        return Err(SourceError::Spec {
            spec: "pair".into(),
            message: "a pair needs its calibration (colour and depth intrinsics, depth→colour extrinsics as the two cameras are mounted): give `pair,calib=FILE:...` or --calib FILE".into(),
        });
    };
    let text = std::fs::read_to_string(file).map_err(|e| SourceError::Recording {
        path: file.display().to_string(),
        message: format!("cannot read the pair's calibration: {e}"),
    })?;
    let calibration = Calibration::from_toml_str(&text, &file.display().to_string())?;
    let plain = OpenOptions::default();
    let color = open(color, &plain)?;
    let depth = open(depth, &plain)?;
    Ok(paired::PairedSource::new(
        color,
        depth,
        calibration,
        paired::PairedOptions {
            max_skew_ms: options.max_skew_ms.unwrap_or(PAIR_MAX_SKEW_MS),
            calibration_file: file.display().to_string(),
        },
    ))
}

/// Plays a finite source again from its start each time it ends (`replay,loop:` of a `.bag`;
/// PNG folders loop by themselves). Capture times keep moving forward: each pass is a fresh
/// playback on the host clock.
pub struct Looping<F> {
    reopen: F,
    current: Box<dyn Source>,
    sequence: u64,
    delivered_this_pass: u64,
    /// Counters of the passes before the current one.
    earlier: SourceStats,
}

impl<F> Looping<F>
where
    F: FnMut() -> Result<Box<dyn Source>, SourceError> + Send,
{
    pub fn new(mut reopen: F) -> Result<Self, SourceError> {
        let current = reopen()?;
        Ok(Self {
            reopen,
            current,
            sequence: 0,
            delivered_this_pass: 0,
            earlier: SourceStats::default(),
        })
    }
}

fn add_stats(a: &SourceStats, b: &SourceStats) -> SourceStats {
    SourceStats {
        delivered: a.delivered + b.delivered,
        unpaired_color: a.unpaired_color + b.unpaired_color,
        unpaired_depth: a.unpaired_depth + b.unpaired_depth,
        dropped_by_device: a.dropped_by_device + b.dropped_by_device,
        disconnects: a.disconnects + b.disconnects,
        reconnects: a.reconnects + b.reconnects,
        measured_fps: b.measured_fps.or(a.measured_fps),
    }
}

impl<F> Source for Looping<F>
where
    F: FnMut() -> Result<Box<dyn Source>, SourceError> + Send,
{
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        loop {
            if let Some(mut frame) = self.current.next_frame()? {
                frame.sequence = self.sequence;
                self.sequence += 1;
                self.delivered_this_pass += 1;
                return Ok(Some(frame));
            }
            // A recording without a single frame would loop forever doing nothing.
            if self.delivered_this_pass == 0 {
                return Ok(None);
            }
            self.earlier = add_stats(&self.earlier, &self.current.stats());
            self.current = (self.reopen)()?;
            self.delivered_this_pass = 0;
        }
    }
    fn calibration(&self) -> &Calibration {
        self.current.calibration()
    }
    fn depth_registration(&self) -> Arc<DepthRegistration> {
        self.current.depth_registration()
    }
    fn stats(&self) -> SourceStats {
        add_stats(&self.earlier, &self.current.stats())
    }
    fn describe(&self) -> String {
        format!("{} (looping)", self.current.describe())
    }
}

pub fn is_bag(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bag"))
}

/// Wraps a source and registers its depth into the colour camera's frame
/// ([`RgbdFrame::register_depth_reusing`]).
pub struct Registering {
    inner: Box<dyn Source>,
    /// The previous frame's unregistered depth buffer, reused for the next registered one:
    /// a fresh multi-megabyte allocation costs page faults on every frame.
    spare: Vec<u32>,
}

impl Registering {
    /// Refuses a source whose calibration cannot register depth.
    pub fn new(inner: Box<dyn Source>) -> Result<Self, SourceError> {
        inner
            .depth_registration()
            .registrar()
            .map_err(|e| SourceError::Register(e.to_string()))?;
        Ok(Self {
            inner,
            spare: Vec::new(),
        })
    }
}

impl Source for Registering {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        let Some(mut frame) = self.inner.next_frame()? else {
            return Ok(None);
        };
        frame
            .register_depth_reusing(&mut self.spare)
            .map_err(|e| SourceError::Register(e.to_string()))?;
        Ok(Some(frame))
    }
    fn calibration(&self) -> &Calibration {
        self.inner.calibration()
    }
    fn depth_registration(&self) -> Arc<DepthRegistration> {
        self.inner.depth_registration()
    }
    fn stats(&self) -> SourceStats {
        self.inner.stats()
    }
    fn describe(&self) -> String {
        format!("{} (depth registered to colour)", self.inner.describe())
    }
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }
    fn is_cut(&self) -> bool {
        self.inner.is_cut()
    }
}
