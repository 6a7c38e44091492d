//! Camera SPEC strings: `KIND[,OPTION...][:ARGUMENT]`.
//!
//! - `synthetic[,fast][:WxH[@FPS]]`
//! - `replay[,fast][,loop]:PATH` — a PNG-folder recording (or a `.bag` with the `realsense` feature)
//! - `realsense[,depth=WxH@FPS][,color=WxH@FPS][,reset][,retry=SECONDS][:SERIAL]`
//! - `v4l2[,mode=WxH@FPS][,format=yuyv|mjpeg][,calib=FILE][,retry=SECONDS]:/dev/videoN`
//! - `sim:TASK[,seed=N][,size=WxH[@FPS]][,fast][,noise]` — the simulated tabletop world
//!   (`crate::sim`), rendering the world the in-process arm controller moves
//! - `pair[,calib=FILE][,skew=MS]:COLOUR_SPEC+DEPTH_SPEC` — the colour of one camera (a V4L2
//!   webcam) with the depth of another, paired by host capture time; FILE calibrates the pair
//!
//! Live-like sources pace frames in real time unless `fast` is given.

use std::path::PathBuf;

use super::SourceError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Deliver frames at the rate they were captured.
    RealTime,
    /// Deliver frames as fast as the consumer takes them.
    AsFastAsPossible,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticOptions {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub pacing: Pacing,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 30,
            pacing: Pacing::RealTime,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReplayOptions {
    pub path: PathBuf,
    pub pacing: Pacing,
    pub looping: bool,
}

/// Width × height @ frame rate of one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamMode {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
}

/// V4L2 colour camera options; an unset mode means 640×480 @ 30, an unset format YUYV when the
/// camera offers it at that mode, else MJPEG.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct V4l2Options {
    pub mode: Option<StreamMode>,
    pub format: Option<super::v4l2::PixelFormat>,
    /// A calibration TOML for the camera; nominal intrinsics without one.
    pub calibration: Option<PathBuf>,
    /// How long to keep retrying a lost camera, seconds.
    pub reconnect_timeout_s: Option<f64>,
}

/// RealSense options; unset modes mean 640×480 @ 30.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RealSenseOptions {
    pub depth: Option<StreamMode>,
    pub color: Option<StreamMode>,
    /// Power-cycle the camera's USB connection before streaming.
    pub hardware_reset: bool,
    /// How long to keep retrying a lost camera, seconds.
    pub reconnect_timeout_s: Option<f64>,
    /// Largest colour/depth timestamp difference paired into one frame, ms.
    pub max_skew_ms: Option<f64>,
}

/// Options of a `pair` of cameras.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairOptions {
    /// The pair's calibration TOML: colour intrinsics of the colour camera, depth intrinsics of
    /// the depth camera, depth→colour extrinsics between them.
    pub calibration: Option<PathBuf>,
    /// Largest difference of the two halves' capture times paired into one frame, ms.
    pub max_skew_ms: Option<f64>,
}

/// Fills what a SPEC leaves unset (the configuration's `[camera]` table).
#[derive(Clone, Debug, Default)]
pub struct SpecDefaults {
    pub depth: Option<StreamMode>,
    pub color: Option<StreamMode>,
    /// A RealSense serial number to insist on.
    pub serial: Option<String>,
    pub max_skew_ms: Option<f64>,
}

/// `WIDTHxHEIGHT@FPS`, e.g. `848x480@30`.
pub fn parse_mode(text: &str) -> Option<StreamMode> {
    let (size, fps) = text.split_once('@')?;
    let (w, h) = size.split_once('x')?;
    let mode = StreamMode {
        width: w.parse().ok()?,
        height: h.parse().ok()?,
        fps: fps.parse().ok()?,
    };
    ((1..=8192).contains(&mode.width)
        && (1..=8192).contains(&mode.height)
        && (1..=1000).contains(&mode.fps))
    .then_some(mode)
}

#[derive(Clone, Debug, PartialEq)]
pub enum CameraSpec {
    RealSense {
        serial: Option<String>,
        options: RealSenseOptions,
    },
    V4l2 {
        device: PathBuf,
        options: V4l2Options,
    },
    Replay(ReplayOptions),
    Synthetic(SyntheticOptions),
    /// The simulated world (`crate::sim`); the options carry the world itself.
    Sim(super::sim::SimOptions),
    Pair {
        color: Box<CameraSpec>,
        depth: Box<CameraSpec>,
        options: PairOptions,
    },
}

impl CameraSpec {
    /// Gives a `pair` the calibration file named outside the SPEC (`--calib FILE`), unless the
    /// SPEC names one itself. Other kinds are returned unchanged.
    pub fn with_pair_calibration(self, file: Option<PathBuf>) -> Self {
        match self {
            CameraSpec::Pair {
                color,
                depth,
                mut options,
            } => {
                if options.calibration.is_none() {
                    options.calibration = file;
                }
                CameraSpec::Pair {
                    color,
                    depth,
                    options,
                }
            }
            other => other,
        }
    }

    /// Fills modes, serial and skew the SPEC leaves unset (a RealSense, also as the depth half
    /// of a pair) from `defaults`, e.g. the board profile's `[camera]`.
    pub fn with_defaults(self, defaults: &SpecDefaults) -> Self {
        match self {
            CameraSpec::RealSense { serial, options } => CameraSpec::RealSense {
                serial: serial.or_else(|| defaults.serial.clone()),
                options: RealSenseOptions {
                    depth: options.depth.or(defaults.depth),
                    color: options.color.or(defaults.color),
                    max_skew_ms: options.max_skew_ms.or(defaults.max_skew_ms),
                    ..options
                },
            },
            CameraSpec::Pair {
                color,
                depth,
                options,
            } => CameraSpec::Pair {
                color,
                depth: Box::new(depth.with_defaults(&SpecDefaults {
                    max_skew_ms: None,
                    ..defaults.clone()
                })),
                options: PairOptions {
                    max_skew_ms: options.max_skew_ms.or(defaults.max_skew_ms),
                    ..options
                },
            },
            other => other,
        }
    }
}

impl std::str::FromStr for CameraSpec {
    type Err = SourceError;

    fn from_str(spec: &str) -> Result<Self, SourceError> {
        let bad = |message: String| SourceError::Spec {
            spec: spec.to_string(),
            message,
        };
        if let Some(rest) = spec.strip_prefix("pair") {
            if rest.is_empty() || rest.starts_with([',', ':']) {
                return parse_pair(spec, rest);
            }
        }
        let (head, argument) = match spec.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (spec, None),
        };
        let mut words = head.split(',');
        let kind = words.next().unwrap_or_default().trim();
        let options: Vec<&str> = words.map(str::trim).collect();
        if kind == "sim" {
            return super::sim::SimOptions::parse(&options, argument)
                .map(CameraSpec::Sim)
                .map_err(bad);
        }
        let mut pacing = Pacing::RealTime;
        let mut looping = false;
        let mut realsense = RealSenseOptions::default();
        let mut v4l2 = V4l2Options::default();
        for option in &options {
            let (key, value) = match option.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (*option, None),
            };
            match (key, value, kind) {
                ("fast", None, "synthetic" | "replay") => pacing = Pacing::AsFastAsPossible,
                ("loop", None, "replay") => looping = true,
                ("reset", None, "realsense") => realsense.hardware_reset = true,
                ("depth" | "color", Some(v), "realsense") => {
                    let mode = parse_mode(v).ok_or_else(|| bad(format!("{key}={v}: give WIDTHxHEIGHT@FPS, e.g. 848x480@30")))?;
                    if key == "depth" {
                        realsense.depth = Some(mode);
                    } else {
                        realsense.color = Some(mode);
                    }
                }
                ("skew", Some(v), "realsense") => {
                    realsense.max_skew_ms = Some(parse_skew(v).ok_or_else(|| bad(format!("skew={v}: give milliseconds, e.g. skew=20")))?);
                }
                ("retry", Some(v), "realsense" | "v4l2") => {
                    // Capped (crate::limits) so the later conversion to a Duration cannot overflow.
                    let secs = v.parse::<f64>().ok().filter(|s| crate::limits::duration_s_or_zero("retry", "", *s).is_ok());
                    let secs = Some(secs.ok_or_else(|| bad(format!("retry={v}: give a number of seconds from 0 to {}, e.g. retry=30", crate::limits::MAX_DURATION_S)))?);
                    if kind == "v4l2" {
                        v4l2.reconnect_timeout_s = secs;
                    } else {
                        realsense.reconnect_timeout_s = secs;
                    }
                }
                ("mode", Some(v), "v4l2") => {
                    v4l2.mode = Some(parse_mode(v).ok_or_else(|| bad(format!("mode={v}: give WIDTHxHEIGHT@FPS, e.g. 1280x720@30")))?);
                }
                ("format", Some(v), "v4l2") => {
                    v4l2.format = Some(v.parse().map_err(|()| bad(format!("format={v}: give `yuyv` or `mjpeg`")))?);
                }
                ("calib", Some(v), "v4l2") if !v.is_empty() => v4l2.calibration = Some(PathBuf::from(v)),
                _ => {
                    return Err(bad(format!(
                        "unknown option `{option}` for `{kind}` (replay takes `fast` and `loop`, synthetic takes `fast`, \
                         realsense takes `depth=WxH@FPS`, `color=WxH@FPS`, `reset`, `skew=MS` and `retry=SECONDS`, \
                         v4l2 takes `mode=WxH@FPS`, `format=yuyv|mjpeg`, `calib=FILE` and `retry=SECONDS`)"
                    )))
                }
            }
        }
        match kind {
            "realsense" => Ok(CameraSpec::RealSense {
                serial: argument.filter(|s| !s.is_empty()).map(str::to_string),
                options: realsense,
            }),
            "v4l2" => match argument {
                Some(dev) if !dev.is_empty() => Ok(CameraSpec::V4l2 { device: PathBuf::from(dev), options: v4l2 }),
                _ => Err(bad("give the device node, e.g. `v4l2:/dev/video0`".into())),
            },
            "replay" => match argument {
                Some(path) if !path.is_empty() => {
                    Ok(CameraSpec::Replay(ReplayOptions { path: PathBuf::from(path), pacing, looping }))
                }
                _ => Err(bad("give the recording, e.g. `replay:tests/data/sample` or `replay,fast,loop:session.bag`".into())),
            },
            "synthetic" => {
                let mut opts = SyntheticOptions { pacing, ..SyntheticOptions::default() };
                if let Some(arg) = argument.filter(|a| !a.is_empty()) {
                    let (size, fps) = match arg.split_once('@') {
                        Some((s, f)) => (s, Some(f)),
                        None => (arg, None),
                    };
                    let size_err = || bad(format!("size `{arg}` must look like 640x480 or 640x480@30"));
                    let (w, h) = size.split_once('x').ok_or_else(size_err)?;
                    opts.width = w.parse().map_err(|_| size_err())?;
                    opts.height = h.parse().map_err(|_| size_err())?;
                    if let Some(f) = fps {
                        opts.fps = f.parse().map_err(|_| size_err())?;
                    }
                    if !(16..=4096).contains(&opts.width) || !(16..=4096).contains(&opts.height) || !(1..=1000).contains(&opts.fps)
                    {
                        return Err(bad("width and height must be 16..=4096 and fps 1..=1000".into()));
                    }
                }
                Ok(CameraSpec::Synthetic(opts))
            }
            "" => Err(bad("empty; use realsense[:SERIAL], v4l2:/dev/videoN, pair:COLOUR+DEPTH, replay:PATH, synthetic or sim:TASK".into())),
            other => Err(bad(format!(
                "unknown camera kind `{other}`; use realsense[:SERIAL], v4l2:/dev/videoN, pair:COLOUR+DEPTH, replay:PATH, synthetic or sim:TASK"
            ))),
        }
    }
}

fn parse_skew(v: &str) -> Option<f64> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=1000.0).contains(s))
}

/// `pair[,calib=FILE][,skew=MS]:COLOUR_SPEC+DEPTH_SPEC`; `rest` follows `pair`.
fn parse_pair(spec: &str, rest: &str) -> Result<CameraSpec, SourceError> {
    let bad = |message: String| SourceError::Spec {
        spec: spec.to_string(),
        message,
    };
    let usage = "e.g. `pair,calib=webcam+d435.toml:v4l2:/dev/video0+realsense`";
    let (head, halves) = rest
        .split_once(':')
        .ok_or_else(|| bad(format!("give the colour and the depth camera, {usage}")))?;
    let mut options = PairOptions::default();
    for option in head.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("calib", v)) if !v.is_empty() => options.calibration = Some(PathBuf::from(v)),
            Some(("skew", v)) => {
                options.max_skew_ms = Some(
                    parse_skew(v)
                        .ok_or_else(|| bad(format!("skew={v}: give milliseconds, e.g. skew=20")))?,
                )
            }
            _ => {
                return Err(bad(format!(
                    "unknown option `{option}` for `pair` (it takes `calib=FILE` and `skew=MS`)"
                )))
            }
        }
    }
    let (color, depth) = halves.split_once('+').ok_or_else(|| {
        bad(format!(
            "give COLOUR_SPEC+DEPTH_SPEC (the colour camera first), {usage}"
        ))
    })?;
    let color: CameraSpec = color.trim().parse()?;
    let depth: CameraSpec = depth.trim().parse()?;
    if matches!(color, CameraSpec::Pair { .. }) || matches!(depth, CameraSpec::Pair { .. }) {
        return Err(bad("a pair cannot contain a pair".into()));
    }
    if matches!(depth, CameraSpec::V4l2 { .. }) {
        return Err(bad(
            "a V4L2 camera has no depth: put it first, as the colour half".into(),
        ));
    }
    Ok(CameraSpec::Pair {
        color: Box::new(color),
        depth: Box::new(depth),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CameraSpec, SourceError> {
        s.parse()
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            parse("realsense").unwrap(),
            CameraSpec::RealSense {
                serial: None,
                options: RealSenseOptions::default()
            }
        );
        assert_eq!(
            parse("realsense:0123").unwrap(),
            CameraSpec::RealSense {
                serial: Some("0123".into()),
                options: RealSenseOptions::default()
            }
        );
        assert_eq!(
            parse("realsense,depth=848x480@60,color=1280x720@30,reset,retry=12.5,skew=20:0123")
                .unwrap(),
            CameraSpec::RealSense {
                serial: Some("0123".into()),
                options: RealSenseOptions {
                    depth: Some(StreamMode {
                        width: 848,
                        height: 480,
                        fps: 60
                    }),
                    color: Some(StreamMode {
                        width: 1280,
                        height: 720,
                        fps: 30
                    }),
                    hardware_reset: true,
                    reconnect_timeout_s: Some(12.5),
                    max_skew_ms: Some(20.0),
                },
            }
        );
        assert_eq!(
            parse("v4l2:/dev/video2").unwrap(),
            CameraSpec::V4l2 {
                device: "/dev/video2".into(),
                options: V4l2Options::default(),
            }
        );
        assert_eq!(
            parse("v4l2,mode=1280x720@60,format=mjpeg,calib=cam.toml,retry=5:/dev/video0").unwrap(),
            CameraSpec::V4l2 {
                device: "/dev/video0".into(),
                options: V4l2Options {
                    mode: Some(StreamMode {
                        width: 1280,
                        height: 720,
                        fps: 60
                    }),
                    format: Some(crate::camera::v4l2::PixelFormat::Mjpeg),
                    calibration: Some("cam.toml".into()),
                    reconnect_timeout_s: Some(5.0),
                },
            }
        );
        assert_eq!(
            parse("replay,fast,loop:a:b/rec").unwrap(),
            CameraSpec::Replay(ReplayOptions {
                path: "a:b/rec".into(),
                pacing: Pacing::AsFastAsPossible,
                looping: true
            })
        );
        assert_eq!(
            parse("synthetic").unwrap(),
            CameraSpec::Synthetic(SyntheticOptions::default())
        );
        assert_eq!(
            parse("synthetic,fast:320x240@15").unwrap(),
            CameraSpec::Synthetic(SyntheticOptions {
                width: 320,
                height: 240,
                fps: 15,
                pacing: Pacing::AsFastAsPossible
            })
        );
    }

    #[test]
    fn pairs_a_colour_camera_with_a_depth_camera() {
        assert_eq!(
            parse("pair,calib=pair.toml,skew=25:v4l2,format=mjpeg:/dev/video0+realsense:0123")
                .unwrap(),
            CameraSpec::Pair {
                color: Box::new(parse("v4l2,format=mjpeg:/dev/video0").unwrap()),
                depth: Box::new(parse("realsense:0123").unwrap()),
                options: PairOptions {
                    calibration: Some("pair.toml".into()),
                    max_skew_ms: Some(25.0),
                },
            }
        );
        let no_calib = parse("pair:v4l2:/dev/video0+replay,fast:a+b/rec").unwrap();
        let CameraSpec::Pair { depth, options, .. } = &no_calib else {
            panic!("{no_calib:?}")
        };
        assert_eq!(**depth, parse("replay,fast:a+b/rec").unwrap());
        assert_eq!(options.calibration, None);
        let given = no_calib.with_pair_calibration(Some("cli.toml".into()));
        let CameraSpec::Pair { options, .. } = &given else {
            panic!()
        };
        assert_eq!(options.calibration, Some("cli.toml".into()));
        // The SPEC's own file wins over --calib.
        let own = parse("pair,calib=own.toml:synthetic+synthetic")
            .unwrap()
            .with_pair_calibration(Some("cli.toml".into()));
        let CameraSpec::Pair { options, .. } = &own else {
            panic!()
        };
        assert_eq!(options.calibration, Some("own.toml".into()));
    }

    #[test]
    fn board_defaults_fill_only_what_the_spec_leaves_unset() {
        let mode = |width, height, fps| StreamMode { width, height, fps };
        let defaults = SpecDefaults {
            depth: Some(mode(848, 480, 30)),
            color: Some(mode(640, 480, 30)),
            serial: Some("777".into()),
            max_skew_ms: Some(20.0),
        };
        assert_eq!(
            parse("realsense,color=1280x720@15")
                .unwrap()
                .with_defaults(&defaults),
            CameraSpec::RealSense {
                serial: Some("777".into()),
                options: RealSenseOptions {
                    depth: Some(mode(848, 480, 30)),
                    color: Some(mode(1280, 720, 15)),
                    max_skew_ms: Some(20.0),
                    ..RealSenseOptions::default()
                }
            }
        );
        let CameraSpec::Pair { depth, .. } = parse("pair:v4l2:/dev/video0+realsense:1")
            .unwrap()
            .with_defaults(&defaults)
        else {
            panic!()
        };
        let CameraSpec::RealSense { serial, options } = *depth else {
            panic!()
        };
        assert_eq!(serial.as_deref(), Some("1"));
        assert_eq!(options.depth, Some(mode(848, 480, 30)));
        assert_eq!(
            parse("synthetic").unwrap().with_defaults(&defaults),
            parse("synthetic").unwrap()
        );
    }

    #[test]
    fn rejects_with_a_hint() {
        for bad in [
            "",
            "kinect",
            "replay",
            "v4l2",
            "synthetic:640",
            "synthetic:0x0",
            "realsense,loop",
            "replay,slow:x",
            "realsense,depth=848x480",
            "realsense,retry=-1",
            "synthetic,reset",
            "v4l2,format=rgb3:/dev/video0",
            "v4l2,mode=640x480:/dev/video0",
            "v4l2,reset:/dev/video0",
            "realsense,skew=fast",
            "pair",
            "pair:v4l2:/dev/video0",
            "pair,loop:v4l2:/dev/video0+synthetic",
            "pair:synthetic+v4l2:/dev/video0",
            "pair:kinect+synthetic",
            "pair,skew=-3:synthetic+synthetic",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("camera SPEC"), "{bad}: {err}");
        }
    }
}
