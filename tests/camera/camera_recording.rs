//! PNG-folder recordings: record → replay is bit-exact, faults name the file and frame, and the
//! shipped sample is what the synthetic source renders.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;
use spatialbot_edge::camera::recording::{self, RecordLimit, RecorderOptions};
use spatialbot_edge::camera::synthetic::{self, SyntheticSource};
use spatialbot_edge::camera::{
    self, CameraSpec, Depth, DepthNeed, DepthRegistration, OpenOptions, Pacing, ReplayOptions,
    RgbdFrame, Source, SourceError, SourceStats, SyntheticOptions,
};
use spatialbot_edge::rgbd::{Calibration, DepthMm, RgbImage};

fn fast_synthetic(w: usize, h: usize) -> SyntheticSource {
    SyntheticSource::new(SyntheticOptions {
        width: w,
        height: h,
        fps: 30,
        pacing: Pacing::AsFastAsPossible,
    })
}

fn replay(dir: &Path, looping: bool) -> Box<dyn Source> {
    let spec = CameraSpec::Replay(ReplayOptions {
        path: dir.into(),
        pacing: Pacing::AsFastAsPossible,
        looping,
    });
    camera::open(&spec, &OpenOptions::default()).unwrap()
}

/// Records `frames` frames of the synthetic camera at `w`×`h` into `parent/rec`.
fn record_synthetic(parent: &Path, w: usize, h: usize, frames: u64) -> PathBuf {
    let out = parent.join("rec");
    recording::record(
        &mut fast_synthetic(w, h),
        &out,
        RecordLimit::Frames(frames),
        blocking(),
    )
    .unwrap();
    out
}

fn blocking() -> RecorderOptions {
    RecorderOptions {
        encoders: 2,
        queue: 4,
        block_when_full: true,
    }
}

#[test]
fn synthetic_record_replay_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let mut reference = fast_synthetic(48, 32);
    let expected: Vec<RgbdFrame> = (0..6)
        .map(|_| reference.next_frame().unwrap().unwrap())
        .collect();
    let summary = recording::record(
        &mut fast_synthetic(48, 32),
        &out,
        RecordLimit::Frames(6),
        blocking(),
    )
    .unwrap();
    assert_eq!((summary.frames, summary.dropped_while_recording), (6, 0));

    let mut src = replay(&out, false);
    assert_eq!(src.calibration(), &synthetic::calibration(48, 32));
    let origin = expected[0].capture;
    let rows = std::fs::read_to_string(out.join("timestamps.csv")).unwrap();
    for (i, want) in expected.iter().enumerate() {
        let got = src.next_frame().unwrap().unwrap();
        assert_eq!(got.color, want.color, "colour of frame {i}");
        assert_eq!(got.depth, want.depth, "depth of frame {i}");
        assert_eq!(got.color_intrinsics, want.color_intrinsics);
        assert_eq!(got.depth_intrinsics(), want.depth_intrinsics());
        assert_eq!(
            (got.color_frame_number, got.depth_frame_number),
            (want.color_frame_number, want.depth_frame_number)
        );
        assert_eq!(
            got.device_timestamp_ms, want.device_timestamp_ms,
            "device timestamp of frame {i}"
        );
        assert_eq!(got.sequence, i as u64);
        assert!(!got.depth.is_registered());
        let row = recording::row_for(want, i as u64, origin);
        assert_eq!(rows.lines().nth(i + 1).unwrap(), row.to_csv_line());
    }
    assert!(src.next_frame().unwrap().is_none());
    assert_eq!(src.stats().delivered, 6);
}

#[test]
fn registered_recording_replays_registered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let spec: CameraSpec = "synthetic,fast:40x30".parse().unwrap();
    let mut live = camera::open(&spec, &OpenOptions::with_register(true)).unwrap();
    recording::record(live.as_mut(), &out, RecordLimit::Frames(2), blocking()).unwrap();
    let mut reference = camera::open(&spec, &OpenOptions::with_register(true)).unwrap();
    let mut src = replay(&out, false);
    for _ in 0..2 {
        let (want, got) = (
            reference.next_frame().unwrap().unwrap(),
            src.next_frame().unwrap().unwrap(),
        );
        assert!(got.depth.is_registered());
        assert_eq!(got.depth, want.depth);
        assert_eq!(got.depth_intrinsics(), Some(&got.color_intrinsics));
    }
}

/// A source of hand-made frames: the thing under test is the recorder and the reader.
struct Frames {
    calib: Calibration,
    frames: Vec<RgbdFrame>,
    fail_at_end: bool,
}

impl Source for Frames {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        if self.frames.is_empty() && self.fail_at_end {
            return Err(SourceError::DeviceLost {
                what: "test camera".into(),
                waited_s: 0.0,
            });
        }
        Ok(if self.frames.is_empty() {
            None
        } else {
            Some(self.frames.remove(0))
        })
    }
    fn calibration(&self) -> &Calibration {
        &self.calib
    }
    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
    fn describe(&self) -> String {
        "hand-made frames".into()
    }
}

#[test]
fn depth_beyond_16_bits_survives_exactly() {
    let calib = synthetic::calibration(16, 16);
    let now = Instant::now();
    let mut mm: Vec<u32> = (0..256u32).map(|i| i * 65_521 % (1 << 24)).collect();
    mm[5] = (1 << 24) - 1;
    let registration = Arc::new(DepthRegistration::new(calib.clone()));
    let raw = |depth: DepthMm| Depth::Raw {
        depth: Arc::new(depth),
        registration: registration.clone(),
    };
    let frame = RgbdFrame {
        color: Arc::new(RgbImage::filled(16, 16, [9, 8, 7])),
        depth: raw(DepthMm::from_mm(16, 16, mm.clone()).unwrap()),
        color_intrinsics: calib.color.clone(),
        color_frame_number: 41,
        depth_frame_number: 40,
        sequence: 0,
        device_timestamp_ms: Some(1234.5678901234567),
        capture: now,
        arrival: now + Duration::from_micros(1500),
        ready: now + Duration::from_micros(1500),
    };
    let mut plain = frame.clone();
    plain.depth = raw(DepthMm::from_mm(16, 16, vec![65_535; 256]).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let mut src = Frames {
        calib,
        frames: vec![frame, plain.clone()],
        fail_at_end: false,
    };
    recording::record(&mut src, &out, RecordLimit::Frames(10), blocking()).unwrap();
    assert!(recording::depth24_path(&out, 0).exists());
    assert!(
        !recording::depth24_path(&out, 1).exists(),
        "only frames that need it get a depth24 file"
    );
    // Tools that only read depth/ see saturated values, never wrapped ones.
    let low = spatialbot_edge::imageio::read_depth_png(&recording::depth_path(&out, 0)).unwrap();
    assert!(low
        .as_slice()
        .iter()
        .zip(&mm)
        .all(|(&l, &v)| l == v.min(65_535)));

    let mut back = replay(&out, false);
    let got = back.next_frame().unwrap().unwrap();
    assert_eq!(got.depth.image().unwrap().as_slice(), &mm[..]);
    assert_eq!((got.color_frame_number, got.depth_frame_number), (41, 40));
    assert_eq!(got.device_timestamp_ms, Some(1234.5678901234567));
    assert_eq!(got.arrival - got.capture, Duration::from_micros(1500));
    assert_eq!(back.next_frame().unwrap().unwrap().depth, plain.depth);
}

#[test]
fn colour_only_recordings_replay_as_colour_only() {
    let calib = synthetic::calibration(16, 12);
    let now = Instant::now();
    let frame = |n: u64| RgbdFrame {
        color: Arc::new(RgbImage::filled(16, 12, [n as u8, 2, 3])),
        depth: Depth::None,
        color_intrinsics: calib.color.clone(),
        color_frame_number: n,
        depth_frame_number: n,
        sequence: n,
        device_timestamp_ms: None,
        capture: now + Duration::from_millis(33 * n),
        arrival: now + Duration::from_millis(33 * n + 2),
        ready: now + Duration::from_millis(33 * n + 2),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("webcam");
    let mut src = Frames {
        calib: calib.clone(),
        frames: vec![frame(0), frame(1)],
        fail_at_end: false,
    };
    recording::record(&mut src, &out, RecordLimit::Frames(2), blocking()).unwrap();
    let info = std::fs::read_to_string(out.join("recording.toml")).unwrap();
    assert!(info.contains("has_depth = false"), "{info}");
    let mut back = replay(&out, false);
    for n in 0..2u64 {
        let got = back.next_frame().unwrap().unwrap();
        assert!(got.depth.is_none());
        assert_eq!(got.color, frame(n).color);
    }
    assert!(back.next_frame().unwrap().is_none());
}

#[test]
fn truncated_png_names_file_and_frame_after_earlier_frames() {
    let dir = tempfile::tempdir().unwrap();
    let out = record_synthetic(dir.path(), 32, 24, 4);
    let victim = recording::depth_path(&out, 2);
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let mut src = replay(&out, false);
    assert!(src.next_frame().unwrap().is_some());
    assert!(src.next_frame().unwrap().is_some());
    let err = src.next_frame().unwrap_err().to_string();
    assert!(
        err.contains("frame 2") && err.contains(&victim.display().to_string()),
        "{err}"
    );

    std::fs::remove_file(recording::color_path(&out, 1)).unwrap();
    let mut src = replay(&out, false);
    src.next_frame().unwrap();
    let err = src.next_frame().unwrap_err().to_string();
    assert!(
        err.contains("frame 1") && err.contains("000001.png"),
        "{err}"
    );
}

#[test]
fn sources_asked_for_no_depth_leave_it_unread() {
    let dir = tempfile::tempdir().unwrap();
    let out = record_synthetic(dir.path(), 32, 24, 3);
    let expected: Vec<RgbdFrame> = {
        let mut src = replay(&out, false);
        (0..3).map(|_| src.next_frame().unwrap().unwrap()).collect()
    };
    // Depth files that cannot be read: a source that reads them would fail.
    for index in 0..3 {
        std::fs::write(recording::depth_path(&out, index), b"not a png").unwrap();
    }
    let without_depth = OpenOptions {
        depth: DepthNeed::None,
    };
    let spec = CameraSpec::Replay(ReplayOptions {
        path: out.clone(),
        pacing: Pacing::AsFastAsPossible,
        looping: false,
    });
    let mut src = camera::open(&spec, &without_depth).unwrap();
    for want in &expected {
        let got = src.next_frame().unwrap().unwrap();
        assert!(got.depth.is_none());
        assert_eq!(got.color, want.color);
        assert_eq!(got.capture, got.capture.min(got.arrival));
    }
    assert!(src.next_frame().unwrap().is_none());
    assert!(replay(&out, false).next_frame().is_err());

    // The synthetic camera renders colour only, the same colour.
    let spec = CameraSpec::Synthetic(SyntheticOptions {
        width: 32,
        height: 24,
        fps: 30,
        pacing: Pacing::AsFastAsPossible,
    });
    let mut full = camera::open(&spec, &OpenOptions::default()).unwrap();
    let mut colour_only = camera::open(&spec, &without_depth).unwrap();
    for _ in 0..3 {
        let (a, b) = (
            full.next_frame().unwrap().unwrap(),
            colour_only.next_frame().unwrap().unwrap(),
        );
        assert!(!a.depth.is_none() && b.depth.is_none());
        assert_eq!((a.color, a.sequence), (b.color, b.sequence));
    }

    // Registration needs depth: asking for it registered delivers it.
    let both = OpenOptions::with_register(true);
    let frame = camera::open(&spec, &both)
        .unwrap()
        .next_frame()
        .unwrap()
        .unwrap();
    assert!(frame.depth.is_registered());
}

#[test]
fn bad_folders_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = record_synthetic(dir.path(), 32, 24, 3);
    let open = |p: &Path| {
        camera::open(
            &CameraSpec::Replay(ReplayOptions {
                path: p.into(),
                pacing: Pacing::AsFastAsPossible,
                looping: false,
            }),
            &OpenOptions::default(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let ts = out.join("timestamps.csv");
    let good = std::fs::read_to_string(&ts).unwrap();
    std::fs::write(&ts, good.replace("\n1,1,1,", "\n1,x,1,")).unwrap();
    let err = open(&out);
    assert!(
        err.contains("timestamps.csv")
            && err.contains("line 3")
            && err.contains("color_frame_number"),
        "{err}"
    );
    std::fs::write(&ts, good.lines().take(2).collect::<Vec<_>>().join("\n")).unwrap();
    let err = open(&out);
    assert!(
        err.contains("recording.toml") && err.contains("3 frames"),
        "{err}"
    );
    std::fs::write(&ts, good).unwrap();
    std::fs::write(out.join("calibration.toml"), "depth_scale = -1").unwrap();
    assert!(open(&out).contains("calibration.toml"));
    assert!(open(&dir.path().join("missing")).contains("calibration.toml"));
    // Recording over an existing recording is refused.
    let err = recording::record(
        &mut fast_synthetic(32, 24),
        &out,
        RecordLimit::Frames(1),
        blocking(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn looping_replay_keeps_time_moving() {
    let dir = tempfile::tempdir().unwrap();
    let out = record_synthetic(dir.path(), 16, 16, 3);
    let mut src = replay(&out, true);
    let frames: Vec<RgbdFrame> = (0..7).map(|_| src.next_frame().unwrap().unwrap()).collect();
    assert_eq!(frames[3].color, frames[0].color);
    assert_eq!(frames[6].color_frame_number, 0);
    assert_eq!(
        frames.iter().map(|f| f.sequence).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
}

#[test]
fn shipped_sample_is_the_synthetic_tabletop() {
    let sample = support::repo_root().join("tests/data/sample");
    let mut src = replay(&sample, false);
    assert_eq!(src.calibration(), &synthetic::calibration(640, 480));
    let mut frames = Vec::new();
    while let Some(f) = src.next_frame().unwrap() {
        frames.push(f);
    }
    assert_eq!(frames.len(), 60);
    let calib = synthetic::calibration(640, 480);
    for index in [0usize, 59] {
        let f = &frames[index];
        assert!(f.depth.is_registered());
        let (color, _) = synthetic::render(&calib, index as u64, 15);
        assert_eq!(*f.color, color, "colour of sample frame {index}");
        assert_eq!(f.device_timestamp_ms, Some(index as f64 * 1000.0 / 15.0));
        let depth = f.depth.image().unwrap();
        let valid = depth.as_slice().iter().filter(|&&v| v > 0).count();
        assert!(
            valid * 100 > depth.as_slice().len() * 95,
            "frame {index}: {valid} valid depth pixels"
        );
        assert!(depth
            .as_slice()
            .iter()
            .all(|&v| v == 0 || (300..=4000).contains(&v)));
    }
    assert_ne!(frames[0].color, frames[30].color, "the scene moves");
    let size: u64 = walk(&sample);
    assert!(size <= 5 * 1024 * 1024, "sample is {size} bytes");
}

fn walk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

#[test]
fn cli_record_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli");
    let rec = Command::new(support::bin())
        .args([
            "record",
            "--camera",
            "synthetic,fast:32x24",
            "--frames",
            "3",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        rec.status.success(),
        "{}",
        String::from_utf8_lossy(&rec.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&rec.stdout).unwrap();
    assert_eq!(summary["frames"], 3);
    let rep = Command::new(support::bin())
        .args(["replay", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(
        (report["frames"].as_u64(), report["width"].as_u64()),
        (Some(3), Some(32))
    );

    for (args, needle) in [
        (
            vec![
                "record", "--camera", "kinect", "--frames", "1", "--out", "x",
            ],
            "unknown camera kind",
        ),
        (vec!["replay", "/no/such/recording"], "calibration.toml"),
    ] {
        let o = Command::new(support::bin()).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(needle),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn a_source_failure_keeps_the_frames_recorded_before_it() {
    let mut reference = fast_synthetic(16, 16);
    let frames: Vec<RgbdFrame> = (0..3)
        .map(|_| reference.next_frame().unwrap().unwrap())
        .collect();
    let mut src = Frames {
        calib: synthetic::calibration(16, 16),
        frames: frames.clone(),
        fail_at_end: true,
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let err = recording::record(&mut src, &out, RecordLimit::Frames(10), blocking()).unwrap_err();
    assert!(err.to_string().contains("test camera"), "{err}");
    let mut back = replay(&out, false);
    for want in &frames {
        assert_eq!(back.next_frame().unwrap().unwrap().color, want.color);
    }
    assert!(back.next_frame().unwrap().is_none());
}
