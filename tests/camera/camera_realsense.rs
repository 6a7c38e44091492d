//! RealSense `.bag` playback through real librealsense (feature `realsense`): bags are written
//! by librealsense's own software device + recorder, then played back through our source.
#![cfg(feature = "realsense")]

use std::path::Path;

use spatialbot_edge::camera::realsense::software::BagWriter;
use spatialbot_edge::camera::synthetic;
use spatialbot_edge::camera::{
    self, CameraSpec, DepthNeed, OpenOptions, RgbdFrame, Source, SourceStats,
};
use spatialbot_edge::rgbd::{Calibration, Intrinsics};

const W: usize = 48;
const H: usize = 32;

/// What a calibration looks like after a trip through librealsense's f32 fields.
fn as_f32(c: &Calibration) -> Calibration {
    let k = |i: &Intrinsics| Intrinsics {
        fx: i.fx as f32 as f64,
        fy: i.fy as f32 as f64,
        ppx: i.ppx as f32 as f64,
        ppy: i.ppy as f32 as f64,
        coeffs: i.coeffs.map(|v| v as f32 as f64),
        ..i.clone()
    };
    let mut out = c.clone();
    out.depth_scale = c.depth_scale as f32 as f64;
    out.depth = k(&c.depth);
    out.color = k(&c.color);
    out.depth_to_color.rotation = c.depth_to_color.rotation.map(|v| v as f32 as f64);
    out.depth_to_color.translation = c.depth_to_color.translation.map(|v| v as f32 as f64);
    out
}

enum Shift {
    None,
    /// Colour starts one frame late and its numbers lag depth's by one.
    ColorOneFrameLate,
    /// Depth frame 3 is missing.
    DropDepth3,
}

fn write_bag(path: &Path, frames: u64, shift: Shift) -> Calibration {
    let calib = synthetic::calibration(W, H);
    let mut bag = BagWriter::create(path, &calib, 30, "0000TEST").expect("bag writer");
    for i in 0..frames {
        let (color, depth) = synthetic::render(&calib, i, 30);
        let t = 1_000.0 + i as f64 * 33.0;
        if !matches!(shift, Shift::DropDepth3) || i != 3 {
            bag.depth(&depth, 100 + i, t).expect("depth frame");
        }
        match shift {
            Shift::ColorOneFrameLate if i == 0 => {}
            Shift::ColorOneFrameLate => bag
                .color(&color, 200 + i - 1, t + 0.5)
                .expect("colour frame"),
            _ => bag.color(&color, 200 + i, t + 0.5).expect("colour frame"),
        }
    }
    bag.finish();
    calib
}

fn play(path: &Path) -> (Vec<RgbdFrame>, Box<dyn Source>) {
    play_with(path, &OpenOptions::default())
}

fn play_with(path: &Path, options: &OpenOptions) -> (Vec<RgbdFrame>, Box<dyn Source>) {
    let spec: CameraSpec = format!("replay,fast:{}", path.display()).parse().unwrap();
    let mut src = camera::open(&spec, options).expect("open bag");
    let mut frames = Vec::new();
    while let Some(f) = src.next_frame().expect("frame") {
        frames.push(f);
    }
    (frames, src)
}

#[test]
fn bag_playback_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("scene.bag");
    let calib = write_bag(&bag, 6, Shift::None);
    let (frames, src) = play(&bag);
    assert_eq!(
        src.calibration(),
        &as_f32(&calib),
        "every intrinsic and the extrinsics"
    );
    assert_eq!(frames.len(), 6, "every frame, including the first");
    for (i, f) in frames.iter().enumerate() {
        let (color, depth) = synthetic::render(&calib, i as u64, 30);
        assert_eq!(*f.color, color, "colour pixels of frame {i}");
        assert_eq!(
            **f.depth.image().unwrap(),
            depth,
            "depth pixels of frame {i}"
        );
        assert_eq!(
            (f.color_frame_number, f.depth_frame_number),
            (200 + i as u64, 100 + i as u64)
        );
        assert_eq!(f.device_timestamp_ms, Some(1_000.0 + i as f64 * 33.0 + 0.5));
        assert_eq!(f.color_intrinsics, as_f32(&calib).color);
        assert!(f.capture <= f.arrival);
    }
    let s = src.stats();
    assert_eq!(
        (s.unpaired_color, s.unpaired_depth, s.dropped_by_device),
        (0, 0, 0)
    );
}

#[test]
fn colour_a_frame_late_pairs_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("late.bag");
    let calib = write_bag(&bag, 5, Shift::ColorOneFrameLate);
    let (frames, src) = play(&bag);
    let numbers: Vec<_> = frames
        .iter()
        .map(|f| (f.color_frame_number, f.depth_frame_number))
        .collect();
    assert_eq!(
        numbers,
        vec![(200, 101), (201, 102), (202, 103), (203, 104)]
    );
    for f in &frames {
        let index = f.depth_frame_number - 100;
        assert_eq!(
            *f.color,
            synthetic::render(&calib, index, 30).0,
            "colour and depth of one instant"
        );
    }
    assert_eq!(src.stats().unpaired_depth, 1);
}

#[test]
fn dropped_frames_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("drop.bag");
    write_bag(&bag, 6, Shift::DropDepth3);
    let (frames, src) = play(&bag);
    assert_eq!(frames.len(), 5);
    let s = src.stats();
    assert_eq!((s.dropped_by_device, s.unpaired_color), (1, 1));
}

#[test]
fn a_bag_asked_for_no_depth_pairs_the_same_frames_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("scene.bag");
    write_bag(&bag, 6, Shift::ColorOneFrameLate);
    let (full, full_src) = play(&bag);
    let without_depth = OpenOptions {
        depth: DepthNeed::None,
    };
    let (colour_only, src) = play_with(&bag, &without_depth);
    assert_eq!(colour_only.len(), full.len());
    for (a, b) in full.iter().zip(&colour_only) {
        assert!(!a.depth.is_none() && b.depth.is_none());
        assert_eq!(a.color, b.color);
        assert_eq!(
            (a.color_frame_number, a.depth_frame_number),
            (b.color_frame_number, b.depth_frame_number)
        );
    }
    let counts = |s: SourceStats| (s.unpaired_color, s.unpaired_depth, s.dropped_by_device);
    assert_eq!(counts(src.stats()), counts(full_src.stats()));
}

#[test]
fn registered_bag_frames() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("scene.bag");
    write_bag(&bag, 2, Shift::None);
    let spec: CameraSpec = format!("replay,fast:{}", bag.display()).parse().unwrap();
    let mut src = camera::open(&spec, &OpenOptions::with_register(true)).unwrap();
    let f = src.next_frame().unwrap().unwrap();
    assert!(f.depth.is_registered());
    let depth = f.depth.image().unwrap();
    assert_eq!((depth.width(), depth.height()), (W, H));
}

#[test]
fn truncated_or_corrupt_bag_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("scene.bag");
    write_bag(&bag, 4, Shift::None);
    let bytes = std::fs::read(&bag).unwrap();
    let cut = dir.path().join("cut.bag");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let garbage = dir.path().join("garbage.bag");
    std::fs::write(&garbage, b"#ROSBAG V2.0\nnot really").unwrap();
    for path in [&cut, &garbage] {
        let spec: CameraSpec = format!("replay,fast:{}", path.display()).parse().unwrap();
        // librealsense needs the bag's index (at its end) to open it at all: a damaged bag is
        // refused up front, before any frame.
        let result = camera::open(&spec, &OpenOptions::default()).map(|_| ());
        let err = result
            .expect_err("a damaged bag must not play silently")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("truncated or corrupt"), "{err}");
    }
}

#[test]
fn looping_bag_plays_again_with_time_moving_forward() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("scene.bag");
    write_bag(&bag, 4, Shift::None);
    let spec: CameraSpec = format!("replay,fast,loop:{}", bag.display())
        .parse()
        .unwrap();
    let mut src = camera::open(&spec, &OpenOptions::default()).expect("open bag");
    let frames: Vec<RgbdFrame> = (0..10)
        .map(|_| {
            src.next_frame()
                .expect("frame")
                .expect("a looping bag never ends")
        })
        .collect();
    let numbers: Vec<u64> = frames.iter().map(|f| f.depth_frame_number).collect();
    assert_eq!(
        numbers,
        vec![100, 101, 102, 103, 100, 101, 102, 103, 100, 101]
    );
    for (i, pair) in frames.windows(2).enumerate() {
        assert_eq!(pair[1].sequence, i as u64 + 1);
        assert!(pair[1].capture >= pair[0].capture, "frame {}", i + 1);
    }
    assert_eq!(frames[4].color, frames[0].color);
    assert_eq!(frames[4].depth, frames[0].depth);
    assert_eq!(src.stats().delivered, 10);
}
