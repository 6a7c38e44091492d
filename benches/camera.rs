//! Per-frame costs of the camera layer at 640×480 and 848×480:
//! - replay of a PNG folder (decode colour + 16-bit depth) into an `RgbdFrame`, with and without
//!   registration of depth to colour (the step every bag or live frame goes through);
//! - encoding a frame for `record` (what one encoder thread must do within a frame period);
//! - rendering one synthetic frame.
//!
//! `cargo bench --bench camera`

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use spatialbot_edge::camera::recording::{self, RecordLimit, RecorderOptions};
use spatialbot_edge::camera::synthetic::{self, SyntheticSource};
use spatialbot_edge::camera::{self, CameraSpec, OpenOptions, Pacing, SyntheticOptions};

fn make_recording(dir: &Path, w: usize, h: usize, frames: u64) {
    let mut src = SyntheticSource::new(SyntheticOptions {
        width: w,
        height: h,
        fps: 30,
        pacing: Pacing::AsFastAsPossible,
    });
    let opts = RecorderOptions {
        encoders: 2,
        queue: 8,
        block_when_full: true,
    };
    recording::record(&mut src, dir, RecordLimit::Frames(frames), opts).expect("record");
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (w, h) in [(640usize, 480usize), (848, 480)] {
        let dir = tmp.path().join(format!("rec{w}"));
        make_recording(&dir, w, h, 8);
        let spec: CameraSpec = format!("replay,fast,loop:{}", dir.display())
            .parse()
            .expect("spec");

        let mut group = c.benchmark_group(format!("camera {w}x{h}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));

        let mut plain = camera::open(&spec, &OpenOptions { register: false }).expect("open");
        group.bench_function("png folder -> frame", |b| {
            b.iter(|| black_box(plain.next_frame().expect("frame")))
        });

        let mut registered = camera::open(&spec, &OpenOptions { register: true }).expect("open");
        group.bench_function("png folder -> registered frame", |b| {
            b.iter(|| black_box(registered.next_frame().expect("frame")))
        });

        let calib = synthetic::calibration(w, h);
        let (color, depth) = synthetic::render(&calib, 3, 30);
        group.bench_function("encode frame for record", |b| {
            b.iter(|| black_box(recording::encode_frame(&dir, 0, &color, &depth)))
        });
        group.bench_function("render synthetic frame", |b| {
            b.iter(|| black_box(synthetic::render(&calib, 7, 30)))
        });
        group.finish();
    }
}

criterion_group!(camera_benches, benches);
criterion_main!(camera_benches);
