//! A colour camera beside a depth camera (`pair:`): the real `PairedSource` (threads, pairing by
//! host capture time, counting, registration into the colour camera) driven by two scripted
//! cameras whose frames carry chosen capture times. Also: a colour-only camera's frames say they
//! have no depth, and a policy that needs depth refuses them.

use std::collections::VecDeque;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;
use spatialbot_edge::camera::paired::{PairedOptions, PairedSource};
use spatialbot_edge::camera::{
    synthetic, Depth, DepthRegistration, Registering, RgbdFrame, Source, SourceError, SourceStats,
};
use spatialbot_edge::pipeline::camera_source::{CameraFrames, DepthNeed};
use spatialbot_edge::pipeline::vision::FrameTensors;
use spatialbot_edge::pipeline::FrameSource;
use spatialbot_edge::preprocess::Tower;
use spatialbot_edge::rgbd::register::Registrar;
use spatialbot_edge::rgbd::{Calibration, DepthMm, RgbImage};

enum Step {
    /// A frame captured `at_ms` after the script's start, delivered then.
    Frame { at_ms: f64, number: u64 },
    /// The camera was lost and came back (what a live source's own recovery reports).
    Reconnected,
    /// The camera was lost for good.
    Lost,
    /// A recording ends.
    End { at_ms: f64 },
}

/// One camera of the pair: frames of a chosen size at chosen capture times, in real time.
struct Scripted {
    name: &'static str,
    start: Instant,
    steps: VecDeque<Step>,
    calib: Calibration,
    color: bool,
    stats: SourceStats,
}

impl Scripted {
    fn new(
        name: &'static str,
        start: Instant,
        calib: Calibration,
        color: bool,
        steps: Vec<Step>,
    ) -> Self {
        Self {
            name,
            start,
            steps: steps.into(),
            calib,
            color,
            stats: SourceStats::default(),
        }
    }

    fn wait_until(&self, at_ms: f64) -> Instant {
        let due = self.start + Duration::from_secs_f64(at_ms / 1000.0);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        due
    }
}

impl Source for Scripted {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        loop {
            match self.steps.pop_front() {
                Some(Step::Frame { at_ms, number }) => {
                    let capture = self.wait_until(at_ms);
                    let c = &self.calib.color;
                    let d = &self.calib.depth;
                    self.stats.delivered += 1;
                    let arrival = Instant::now();
                    return Ok(Some(RgbdFrame {
                        color: Arc::new(RgbImage::filled(
                            c.width,
                            c.height,
                            [number as u8, if self.color { 1 } else { 2 }, 0],
                        )),
                        depth: Depth::Raw {
                            depth: Arc::new(
                                DepthMm::from_mm(
                                    d.width,
                                    d.height,
                                    vec![600 + number as u32; d.width * d.height],
                                )
                                .unwrap(),
                            ),
                            registration: Arc::new(DepthRegistration::new(self.calib.clone())),
                        },
                        color_intrinsics: c.clone(),
                        color_frame_number: number,
                        depth_frame_number: number,
                        sequence: self.stats.delivered - 1,
                        device_timestamp_ms: Some(1e6 + at_ms),
                        capture,
                        arrival,
                        ready: arrival,
                    }));
                }
                Some(Step::Reconnected) => {
                    self.stats.disconnects += 1;
                    self.stats.reconnects += 1;
                    self.stats.dropped_by_device += 3;
                }
                Some(Step::Lost) => {
                    self.stats.disconnects += 1;
                    return Err(SourceError::DeviceLost {
                        what: format!("{}: USB device removed", self.name),
                        waited_s: 0.2,
                    });
                }
                Some(Step::End { at_ms }) => {
                    self.wait_until(at_ms);
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
    }
    fn calibration(&self) -> &Calibration {
        &self.calib
    }
    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
    fn describe(&self) -> String {
        self.name.into()
    }
}

/// The pair's geometry: a 32x24 colour camera beside a 16x12 depth camera.
fn pair_calibration() -> Calibration {
    let mut calib = synthetic::calibration(32, 24);
    calib.depth = synthetic::calibration(16, 12).depth;
    calib.depth_to_color.translation = [0.03, 0.0, 0.0];
    calib
}

fn frames_at(period_ms: f64, offset_ms: f64, numbers: impl IntoIterator<Item = u64>) -> Vec<Step> {
    numbers
        .into_iter()
        .map(|n| Step::Frame {
            at_ms: offset_ms + n as f64 * period_ms,
            number: n,
        })
        .collect()
}

fn pair(color: Vec<Step>, depth: Vec<Step>, skew: f64) -> PairedSource {
    let start = Instant::now() + Duration::from_millis(30);
    let calib = pair_calibration();
    let mut webcam_calib = calib.clone();
    webcam_calib.depth = calib.color.clone();
    PairedSource::new(
        Box::new(Scripted::new("webcam", start, webcam_calib, true, color)),
        Box::new(Scripted::new(
            "depth camera",
            start,
            calib.clone(),
            false,
            depth,
        )),
        calib,
        PairedOptions {
            max_skew_ms: skew,
            calibration_file: "pair.toml".into(),
        },
    )
}

fn drain(src: &mut dyn Source) -> (Vec<RgbdFrame>, Option<SourceError>) {
    let mut frames = Vec::new();
    loop {
        match src.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

fn numbers(frames: &[RgbdFrame]) -> Vec<(u64, u64)> {
    frames
        .iter()
        .map(|f| (f.color_frame_number, f.depth_frame_number))
        .collect()
}

#[test]
fn free_running_cameras_pair_by_host_capture_time_and_count_the_rest() {
    // Depth at 30 fps from t=0; the webcam 7 ms behind and one frame late to start; depth frame
    // 5 never arrives (its colour partner finds none), the webcam drops frame 8.
    let mut depth: Vec<Step> = frames_at(33.3, 0.0, (0..10).filter(|&n| n != 5));
    depth.push(Step::End { at_ms: 700.0 });
    let mut color = frames_at(33.3, 7.0, (1..10).filter(|&n| n != 8));
    color.push(Step::End { at_ms: 800.0 });
    let mut src = pair(color, depth, 15.0);
    let (frames, err) = drain(&mut src);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        numbers(&frames),
        vec![(1, 1), (2, 2), (3, 3), (4, 4), (6, 6), (7, 7), (9, 9)]
    );
    let stats = src.stats();
    assert_eq!(stats.delivered, 7);
    assert_eq!(
        (stats.unpaired_color, stats.unpaired_depth),
        (1, 2),
        "{stats:?}"
    );
    let calib = pair_calibration();
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.sequence, i as u64);
        // Colour from the webcam, depth from the depth camera, geometry from the pair's file.
        assert_eq!(
            f.color.pixel(0, 0),
            Some([f.color_frame_number as u8, 1, 0])
        );
        let depth = f.depth.image().unwrap();
        assert_eq!((depth.width(), depth.height()), (16, 12));
        assert_eq!(depth.get(0, 0), Some(600 + f.depth_frame_number as u32));
        assert!(f.depth.is_raw());
        assert_eq!(f.color_intrinsics, calib.color);
        assert_eq!(f.depth_intrinsics(), Some(&calib.depth));
        assert_eq!(
            f.device_timestamp_ms,
            Some(1e6 + 7.0 + f.color_frame_number as f64 * 33.3)
        );
        assert!(f.capture <= f.arrival);
    }
    assert!(src.describe().contains("webcam") && src.describe().contains("pair.toml"));
}

#[test]
fn the_skew_is_what_decides() {
    let script = |offset| {
        let mut steps = frames_at(33.3, offset, 0..6);
        steps.push(Step::End { at_ms: 500.0 });
        steps
    };
    let (tight, _) = drain(&mut pair(script(12.0), script(0.0), 10.0));
    assert!(tight.is_empty(), "12 ms apart is not a pair within 10 ms");
    let (loose, _) = drain(&mut pair(script(12.0), script(0.0), 14.0));
    assert_eq!(loose.len(), 6);
}

#[test]
fn a_camera_that_comes_back_is_counted_and_one_that_does_not_is_an_error_after_the_frames_before() {
    let mut color = frames_at(33.3, 2.0, 0..4);
    color.push(Step::Reconnected);
    color.extend(frames_at(33.3, 2.0, 4..7));
    color.push(Step::Lost);
    let mut depth = frames_at(33.3, 0.0, 0..12);
    depth.push(Step::End { at_ms: 1000.0 });
    let mut src = pair(color, depth, 10.0);
    let (frames, err) = drain(&mut src);
    assert_eq!(frames.len(), 7);
    let err = err.expect("the lost webcam ends the pair").to_string();
    assert!(
        err.contains("colour camera") && err.contains("webcam: USB device removed"),
        "{err}"
    );
    let stats = src.stats();
    assert_eq!(
        (stats.disconnects, stats.reconnects, stats.dropped_by_device),
        (2, 1, 3),
        "{stats:?}"
    );
}

#[test]
fn a_calibration_for_another_mode_is_refused_naming_the_file() {
    let start = Instant::now();
    let calib = pair_calibration();
    let mut wrong = calib.clone();
    wrong.color = synthetic::calibration(64, 48).color;
    let mut webcam_calib = calib.clone();
    webcam_calib.depth = calib.color.clone();
    let mut src = PairedSource::new(
        Box::new(Scripted::new(
            "webcam",
            start,
            webcam_calib,
            true,
            frames_at(33.3, 0.0, 0..3),
        )),
        Box::new(Scripted::new(
            "depth camera",
            start,
            calib,
            false,
            frames_at(33.3, 0.0, 0..3),
        )),
        wrong,
        PairedOptions {
            max_skew_ms: 10.0,
            calibration_file: "rig/pair.toml".into(),
        },
    );
    let err = src.next_frame().unwrap_err().to_string();
    assert!(
        err.contains("rig/pair.toml") && err.contains("64x48") && err.contains("32x24"),
        "{err}"
    );
}

#[test]
fn depth_registers_into_the_colour_camera_of_the_pair() {
    let mut depth = frames_at(33.3, 0.0, 0..3);
    depth.push(Step::End { at_ms: 300.0 });
    let mut color = frames_at(33.3, 1.0, 0..3);
    color.push(Step::End { at_ms: 300.0 });
    let paired = pair(color, depth, 10.0);
    let mut registered = Registering::new(Box::new(paired)).unwrap();
    let registrar = Registrar::new(&pair_calibration()).unwrap();
    let (frames, err) = drain(&mut registered);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(frames.len(), 3);
    for f in &frames {
        let raw =
            DepthMm::from_mm(16, 12, vec![600 + f.depth_frame_number as u32; 16 * 12]).unwrap();
        assert!(f.depth.is_registered());
        let depth = f.depth.image().unwrap();
        assert_eq!((depth.width(), depth.height()), (32, 24));
        assert_eq!(f.depth_intrinsics(), Some(&pair_calibration().color));
        assert_eq!(**depth, registrar.register(&raw).unwrap());
        assert!(depth.as_slice().iter().any(|&mm| mm > 0));
    }
}

/// A colour-only camera (V4L2 alone) as the pipeline sees it.
struct ColourOnly(Scripted);

impl Source for ColourOnly {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        Ok(self.0.next_frame()?.map(|mut f| {
            f.depth = Depth::None;
            f
        }))
    }
    fn calibration(&self) -> &Calibration {
        self.0.calibration()
    }
    fn stats(&self) -> SourceStats {
        self.0.stats()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

#[test]
fn rgb_only_frames_feed_colour_and_refuse_depth() {
    let calib = synthetic::calibration(32, 24);
    let webcam = ColourOnly(Scripted::new(
        "webcam",
        Instant::now(),
        calib,
        true,
        frames_at(1.0, 0.0, 0..1),
    ));
    let mut frames = CameraFrames::from_source(Box::new(webcam), DepthNeed::Registered);
    let frame = frames.next_frame().unwrap().unwrap();
    assert!(
        frame.depth.is_none(),
        "a colour-only camera hands the pipeline no depth"
    );
    let mut tensors = FrameTensors::new(Tower::Clip, 16, true).unwrap();
    tensors.tensor(&frame, 0).expect("colour goes through");
    let err = tensors.tensor(&frame, 1).unwrap_err().to_string();
    assert!(
        err.contains("takes depth") && err.contains("has none"),
        "{err}"
    );
}

#[test]
fn a_colour_only_depth_half_is_refused() {
    let start = Instant::now();
    let calib = pair_calibration();
    let mut webcam_calib = calib.clone();
    webcam_calib.depth = calib.color.clone();
    let mut depth_calib = calib.clone();
    depth_calib.color = calib.depth.clone();
    let mut src = PairedSource::new(
        Box::new(Scripted::new(
            "webcam",
            start,
            webcam_calib,
            true,
            frames_at(33.3, 0.0, 0..3),
        )),
        Box::new(ColourOnly(Scripted::new(
            "webcam 2",
            start,
            depth_calib,
            true,
            frames_at(33.3, 0.0, 0..3),
        ))),
        calib,
        PairedOptions {
            max_skew_ms: 10.0,
            calibration_file: "pair.toml".into(),
        },
    );
    let err = src.next_frame().unwrap_err().to_string();
    assert!(err.contains("colour-only"), "{err}");
}

#[test]
fn cli_pairs_two_sources_given_a_calibration_and_refuses_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let calib_path = dir.path().join("pair.toml");
    let mut calib = synthetic::calibration(64, 48);
    calib.depth = synthetic::calibration(48, 36).depth;
    std::fs::write(&calib_path, calib.to_toml_string()).unwrap();
    let spec = "pair,skew=25:synthetic:64x48@30+synthetic:48x36@30";
    let out = Command::new(support::bin())
        .args(["replay", "--json", "--frames", "4", "--calib"])
        .arg(&calib_path)
        .arg(spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["frames"], 4);
    assert_eq!(report["width"], 64);
    assert_eq!(report["depth_registered"], false);

    let out = Command::new(support::bin())
        .args(["replay", "--frames", "2", spec])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("calib=FILE") && stderr.contains("--calib"),
        "{stderr}"
    );
}
