//! Camera SPEC strings: `KIND[,OPTION...][:ARGUMENT]`.
//!
//! - `synthetic[,fast][:WxH[@FPS]]`
//! - `replay[,fast][,loop]:PATH` — a PNG-folder recording (or a `.bag` with the `realsense` feature)
//! - `realsense[:SERIAL]`
//! - `v4l2:/dev/videoN`
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

#[derive(Clone, Debug, PartialEq)]
pub enum CameraSpec {
    RealSense { serial: Option<String> },
    V4l2 { device: PathBuf },
    Replay(ReplayOptions),
    Synthetic(SyntheticOptions),
}

impl std::str::FromStr for CameraSpec {
    type Err = SourceError;

    fn from_str(spec: &str) -> Result<Self, SourceError> {
        let bad = |message: String| SourceError::Spec {
            spec: spec.to_string(),
            message,
        };
        let (head, argument) = match spec.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (spec, None),
        };
        let mut words = head.split(',');
        let kind = words.next().unwrap_or_default().trim();
        let options: Vec<&str> = words.map(str::trim).collect();
        let mut pacing = Pacing::RealTime;
        let mut looping = false;
        for option in &options {
            match (*option, kind) {
                ("fast", "synthetic" | "replay") => pacing = Pacing::AsFastAsPossible,
                ("loop", "replay") => looping = true,
                (other, _) => {
                    return Err(bad(format!(
                        "unknown option `{other}` for `{kind}` (replay takes `fast` and `loop`, synthetic takes `fast`)"
                    )))
                }
            }
        }
        match kind {
            "realsense" => Ok(CameraSpec::RealSense { serial: argument.filter(|s| !s.is_empty()).map(str::to_string) }),
            "v4l2" => match argument {
                Some(dev) if !dev.is_empty() => Ok(CameraSpec::V4l2 { device: PathBuf::from(dev) }),
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
            "" => Err(bad("empty; use realsense[:SERIAL], v4l2:/dev/videoN, replay:PATH or synthetic".into())),
            other => Err(bad(format!(
                "unknown camera kind `{other}`; use realsense[:SERIAL], v4l2:/dev/videoN, replay:PATH or synthetic"
            ))),
        }
    }
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
            CameraSpec::RealSense { serial: None }
        );
        assert_eq!(
            parse("realsense:0123").unwrap(),
            CameraSpec::RealSense {
                serial: Some("0123".into())
            }
        );
        assert_eq!(
            parse("v4l2:/dev/video2").unwrap(),
            CameraSpec::V4l2 {
                device: "/dev/video2".into()
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
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("camera SPEC"), "{bad}: {err}");
        }
    }
}
