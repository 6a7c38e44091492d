//! `spatialbot-edge replay`.

use std::path::PathBuf;
use std::time::Instant;

use spatialbot_edge::camera::{self, CameraSpec, OpenOptions, Pacing};

use super::{bad_input, print_json};
use crate::cmd::record::source_error;

/// Play back an RGB-D recording, check every frame decodes, and report what it holds.
#[derive(clap::Args)]
pub struct Args {
    /// A recording folder (or .bag), or any camera SPEC such as `replay,loop:PATH`.
    pub recording: String,
    /// Pace frames as they were captured (default: as fast as possible). No wait is longer
    /// than 10 s: larger gaps between a recording's frames are clamped, with a warning.
    #[arg(long)]
    pub real_time: bool,
    /// Register depth to the colour camera (a no-op for recordings stored registered).
    #[arg(long)]
    pub register: bool,
    /// Stop after this many frames (required with a SPEC that never ends: `replay,loop:`,
    /// `synthetic`).
    #[arg(long)]
    pub frames: Option<u64>,
    /// Calibration of a `pair:` of cameras (unless its SPEC names one with `calib=`).
    #[arg(long, value_name = "FILE")]
    pub calib: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Report {
    source: String,
    frames: u64,
    width: usize,
    height: usize,
    depth_registered: bool,
    /// False for a colour-only camera (V4L2 alone): its depth is all zeros.
    has_depth: bool,
    first_device_timestamp_ms: Option<f64>,
    last_device_timestamp_ms: Option<f64>,
    depth_min_mm: u32,
    depth_max_mm: u32,
    depth_valid_fraction: f64,
    ms_per_frame: f64,
    stats: camera::SourceStats,
    /// The recording was never finished by its recorder (killed, power lost): it played up to
    /// its last complete frame.
    cut: bool,
    /// What was wrong with the recording but did not stop it playing.
    warnings: Vec<String>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let spec: CameraSpec =
        if args.recording.contains(':') && !std::path::Path::new(&args.recording).exists() {
            args.recording.parse().map_err(source_error)?
        } else {
            format!("replay,fast:{}", args.recording)
                .parse()
                .map_err(source_error)?
        };
    let spec = match spec.with_pair_calibration(args.calib.clone()) {
        CameraSpec::Replay(mut o) if args.real_time => {
            o.pacing = Pacing::RealTime;
            CameraSpec::Replay(o)
        }
        other => other,
    };
    let endless = match &spec {
        CameraSpec::Replay(o) => o.looping,
        CameraSpec::Synthetic(_) | CameraSpec::Sim(_) => true,
        _ => false,
    };
    if endless && args.frames.is_none() {
        return Err(bad_input(format!(
            "`{}` never ends: give --frames N",
            args.recording
        )));
    }
    let mut source =
        camera::open(&spec, &OpenOptions::with_register(args.register)).map_err(source_error)?;
    let started = Instant::now();
    let mut report = Report {
        source: source.describe(),
        frames: 0,
        width: 0,
        height: 0,
        depth_registered: false,
        has_depth: true,
        first_device_timestamp_ms: None,
        last_device_timestamp_ms: None,
        depth_min_mm: u32::MAX,
        depth_max_mm: 0,
        depth_valid_fraction: 0.0,
        ms_per_frame: 0.0,
        stats: Default::default(),
        cut: source.is_cut(),
        warnings: source.warnings(),
    };
    let mut valid = 0u64;
    let mut pixels = 0u64;
    while args.frames.is_none_or(|n| report.frames < n) {
        let Some(frame) = source.next_frame().map_err(source_error)? else {
            break;
        };
        if report.frames == 0 {
            report.width = frame.color.width;
            report.height = frame.color.height;
            // A colour-only camera's frames count as registered, as recordings store them.
            report.depth_registered = !frame.depth.is_raw();
            report.has_depth = !frame.depth.is_none();
            report.first_device_timestamp_ms = frame.device_timestamp_ms;
        }
        report.last_device_timestamp_ms = frame.device_timestamp_ms;
        // A colour-only camera's frames count as all-zero depth of the colour size.
        let depth = frame
            .depth
            .image()
            .map(|d| d.as_slice())
            .unwrap_or_default();
        for &mm in depth {
            if mm > 0 {
                valid += 1;
                report.depth_min_mm = report.depth_min_mm.min(mm);
                report.depth_max_mm = report.depth_max_mm.max(mm);
            }
        }
        pixels += match frame.depth.image() {
            Some(d) => d.as_slice().len() as u64,
            None => (frame.color.width * frame.color.height) as u64,
        };
        report.frames += 1;
    }
    if report.depth_min_mm == u32::MAX {
        report.depth_min_mm = 0;
    }
    report.depth_valid_fraction = if pixels > 0 {
        valid as f64 / pixels as f64
    } else {
        0.0
    };
    report.ms_per_frame = started.elapsed().as_secs_f64() * 1000.0 / report.frames.max(1) as f64;
    report.stats = source.stats();
    if json {
        print_json(&report)?;
    } else {
        println!("{}", report.source);
        println!(
            "{} frames {}x{}, depth {} ({}..{} mm, {:.1}% valid), device time {:?}..{:?} ms, {:.2} ms/frame",
            report.frames,
            report.width,
            report.height,
            if !report.has_depth { "absent (colour-only camera)" } else if report.depth_registered { "registered to colour" } else { "in the depth camera's frame" },
            report.depth_min_mm,
            report.depth_max_mm,
            report.depth_valid_fraction * 100.0,
            report.first_device_timestamp_ms.unwrap_or(f64::NAN),
            report.last_device_timestamp_ms.unwrap_or(f64::NAN),
            report.ms_per_frame
        );
        let s = &report.stats;
        println!(
            "unpaired colour {}, unpaired depth {}, dropped by device {}, disconnects {}, reconnects {}",
            s.unpaired_color, s.unpaired_depth, s.dropped_by_device, s.disconnects, s.reconnects
        );
        if report.cut {
            println!(
                "cut: the recorder never finished this recording; played its {} complete frames",
                report.frames
            );
        }
    }
    Ok(spatialbot_edge::exit::OK)
}
