//! Writes the synthetic tabletop as a RealSense `.bag` through librealsense's own software
//! device and recorder, for measuring `run --camera replay,loop:FILE.bag`.
//!
//! librealsense's recorder stamps each message with the wall time it reached the recorder, and
//! real-time playback sleeps by those stamps, not by the frames' own timestamps. So frames are
//! handed over on the frame grid (this takes FRAMES / FPS seconds), and the bag plays at its rate.
//!
//! `cargo run --release --features realsense --example synthetic_bag -- OUT.bag [WxH] [FRAMES] [FPS]`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use spatialbot_edge::camera::realsense::software::BagWriter;
use spatialbot_edge::camera::synthetic;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: synthetic_bag OUT.bag [WxH] [FRAMES] [FPS]");
        return ExitCode::from(2);
    };
    let size = args.get(1).map(String::as_str).unwrap_or("640x480");
    let parsed = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?)));
    let (Some((w, h)), Ok(frames), Ok(fps)) = (
        parsed,
        args.get(2).map_or(Ok(300), |s| s.parse::<u64>()),
        args.get(3).map_or(Ok(15), |s| s.parse::<u32>()),
    ) else {
        eprintln!("usage: synthetic_bag OUT.bag [WxH] [FRAMES] [FPS]");
        return ExitCode::from(2);
    };
    let calib = synthetic::calibration(w, h);
    let mut bag = match BagWriter::create(out.as_ref(), &calib, fps, "SYNTH") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{out}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let period_ms = 1000.0 / fps as f64;
    let renderer = synthetic::Renderer::new(&calib);
    let start = Instant::now();
    for i in 0..frames {
        let (color, depth) = renderer.render(i, fps);
        let due = start + Duration::from_secs_f64(i as f64 * period_ms / 1000.0);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = 1_000.0 + i as f64 * period_ms;
        if let Err(e) = bag
            .depth(&depth, i, t)
            .and_then(|()| bag.color(&color, i, t + 0.5))
        {
            eprintln!("{out}: frame {i}: {e}");
            return ExitCode::FAILURE;
        }
    }
    bag.finish();
    println!("wrote {frames} frames of {w}x{h} @ {fps} fps to {out}");
    ExitCode::SUCCESS
}
