//! Per-frame cost of the camera layer at 640×480 and 848×480, as wall time and as process CPU
//! time (the machines these run on are shared, so CPU time is the steadier number):
//! - a PNG-folder recording → `RgbdFrame`, without and with registration to colour;
//! - a RealSense `.bag` → `RgbdFrame`, without and with registration (feature `realsense`);
//! - encoding one frame for `record` (what one encoder thread must finish within a frame period);
//! - rendering one synthetic frame, in full and with the still scene cast once.
//!
//! `cargo bench --bench camera [--features realsense]`

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use spatialbot_edge::camera::recording::{self, RecordLimit, RecorderOptions};
use spatialbot_edge::camera::synthetic::{self, SyntheticSource};
use spatialbot_edge::camera::{self, CameraSpec, OpenOptions, Pacing, SyntheticOptions};

/// User + system CPU time of this process, in seconds (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn measure(label: &str, frames: usize, mut step: impl FnMut()) {
    step();
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    for _ in 0..frames {
        step();
    }
    let wall = wall0.elapsed().as_secs_f64() * 1000.0 / frames as f64;
    let cpu = (cpu_seconds() - cpu0) * 1000.0 / frames as f64;
    println!("{label:<48} {wall:>9.2} ms wall {cpu:>9.2} ms cpu   ({frames} frames)");
}

fn synthetic_source(w: usize, h: usize) -> SyntheticSource {
    SyntheticSource::new(SyntheticOptions {
        width: w,
        height: h,
        fps: 30,
        pacing: Pacing::AsFastAsPossible,
    })
}

fn make_recording(dir: &Path, w: usize, h: usize, frames: u64) {
    let opts = RecorderOptions {
        encoders: 2,
        queue: 8,
        block_when_full: true,
    };
    recording::record(
        &mut synthetic_source(w, h),
        dir,
        RecordLimit::Frames(frames),
        opts,
    )
    .expect("record");
}

#[cfg(feature = "realsense")]
fn bag_rows(tmp: &Path, w: usize, h: usize, frames: usize) {
    use spatialbot_edge::camera::realsense::software::BagWriter;
    let path = tmp.join(format!("bench{w}.bag"));
    let calib = synthetic::calibration(w, h);
    let mut bag = BagWriter::create(&path, &calib, 30, "BENCH").expect("bag");
    let (color, depth) = synthetic::render(&calib, 0, 30);
    for i in 0..frames as u64 {
        let t = i as f64 * 33.3;
        bag.depth(&depth, i, t).expect("depth");
        bag.color(&color, i, t + 0.5).expect("colour");
    }
    bag.finish();
    for register in [false, true] {
        let spec: CameraSpec = format!("replay,fast:{}", path.display())
            .parse()
            .expect("spec");
        let mut src = camera::open(&spec, &OpenOptions::with_register(register)).expect("open bag");
        let label = if register {
            "bag -> registered frame"
        } else {
            "bag -> frame"
        };
        measure(&format!("{w}x{h} {label}"), frames - 2, || {
            black_box(src.next_frame().expect("frame").expect("enough frames"));
        });
    }
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let frames = std::env::var("CAMERA_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60usize);
    for (w, h) in [(640usize, 480usize), (848, 480)] {
        let dir = tmp.path().join(format!("rec{w}"));
        make_recording(&dir, w, h, 8);
        for register in [false, true] {
            let spec: CameraSpec = format!("replay,fast,loop:{}", dir.display())
                .parse()
                .expect("spec");
            let mut src = camera::open(&spec, &OpenOptions::with_register(register)).expect("open");
            let label = if register {
                "png folder -> registered frame"
            } else {
                "png folder -> frame"
            };
            measure(&format!("{w}x{h} {label}"), frames, || {
                black_box(src.next_frame().expect("frame"));
            });
        }
        #[cfg(feature = "realsense")]
        bag_rows(tmp.path(), w, h, frames + 2);
        let calib = synthetic::calibration(w, h);
        let (color, depth) = synthetic::render(&calib, 3, 30);
        measure(&format!("{w}x{h} encode frame for record"), frames, || {
            black_box(recording::encode_frame(&dir, 0, &color, &depth));
        });
        measure(
            &format!("{w}x{h} render synthetic frame"),
            frames.min(10),
            || {
                black_box(synthetic::render(&calib, 7, 30));
            },
        );
        let renderer = synthetic::Renderer::new(&calib);
        let mut index = 0;
        measure(
            &format!("{w}x{h} render synthetic frame, still scene cached"),
            frames,
            || {
                index += 1;
                black_box(renderer.render(index, 30));
            },
        );
    }
}
