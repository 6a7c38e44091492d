//! `spatialbot-edge record`.
//!
//! SIGINT or SIGTERM stops the recording cleanly: queued frames are encoded, the index is
//! finished, and it exits 0 saying how many frames it kept. A second signal ends it at once
//! (exit 130); the folder is then a cut recording that replays up to its last complete frame.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use spatialbot_edge::camera::recording::{self, RecordLimit, RecorderOptions};
use spatialbot_edge::camera::{self, CameraSpec, OpenOptions, Pacing, SourceError};

use super::{bad_input, print_json};

/// Record an RGB-D session into a PNG folder that `replay:` plays back bit-exactly.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("limit").required(true).args(["frames", "duration"]))]
pub struct Args {
    /// Camera SPEC: realsense[:SERIAL], v4l2:/dev/videoN, pair:COLOUR+DEPTH, replay:PATH, synthetic[,fast][:WxH[@FPS]].
    #[arg(long)]
    pub camera: String,
    /// Output folder (must not exist or be empty). Ctrl-C or SIGTERM stops early and keeps
    /// what was recorded.
    #[arg(long)]
    pub out: PathBuf,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this many seconds (at most 31536000, 365 days).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Store depth registered to the colour camera.
    #[arg(long)]
    pub register: bool,
    /// Calibration of a `pair:` of cameras (unless its SPEC names one with `calib=`).
    #[arg(long, value_name = "FILE")]
    pub calib: Option<PathBuf>,
    /// Encoder threads, 1..=64 (default: cores, at most 4).
    #[arg(long)]
    pub encoders: Option<usize>,
    /// Frames that may wait for an encoder before live frames are dropped (at most 4096).
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let spec = args
        .camera
        .parse::<CameraSpec>()
        .map_err(bad_input)?
        .with_pair_calibration(args.calib.clone());
    use spatialbot_edge::limits as lim;
    if let Some(n) = args.encoders {
        lim::check_usize("--encoders", "", n, 1, lim::MAX_ENCODERS).map_err(bad_input)?;
    }
    lim::check_usize("--queue", "", args.queue, 0, lim::MAX_QUEUE).map_err(bad_input)?;
    let limit = match (args.frames, args.duration) {
        (Some(n), _) => RecordLimit::Frames(n),
        (None, Some(s)) => {
            RecordLimit::Duration(lim::duration_s("--duration", "", s).map_err(bad_input)?)
        }
        _ => return Err(bad_input("--duration must be a positive number of seconds")),
    };
    let not_live = matches!(
        &spec,
        CameraSpec::Synthetic(o) if o.pacing == Pacing::AsFastAsPossible
    ) || matches!(&spec, CameraSpec::Replay(o) if o.pacing == Pacing::AsFastAsPossible);
    let mut source =
        camera::open(&spec, &OpenOptions::with_register(args.register)).map_err(source_error)?;
    let mut options = RecorderOptions {
        queue: args.queue,
        block_when_full: not_live,
        ..RecorderOptions::default()
    };
    if let Some(n) = args.encoders {
        options.encoders = n;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping ends the process at once (exit 130).
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .and_then(|_| signal_hook::flag::register_usize(sig, which.clone(), sig as usize))
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    let summary = recording::record_until(source.as_mut(), &args.out, limit, options, &stop)
        .map_err(source_error)
        .with_context(|| format!("recording into {}", args.out.display()))?;
    let stopped_by = summary
        .stopped_early
        .then(|| match which.load(Ordering::SeqCst) as i32 {
            signal_hook::consts::SIGINT => "SIGINT",
            signal_hook::consts::SIGTERM => "SIGTERM",
            _ => "a signal",
        });
    if json {
        let mut value = serde_json::to_value(&summary)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("stopped_by".into(), serde_json::json!(stopped_by));
        }
        print_json(&value)?;
    } else {
        if let Some(sig) = stopped_by {
            println!("stopped by {sig}: kept every frame captured so far");
        }
        println!(
            "recorded {} frames in {:.2} s to {} (depth {}), {} dropped by the recorder; source: {}",
            summary.frames,
            summary.seconds,
            summary.out,
            if summary.depth_registered { "registered to colour" } else { "in the depth camera's frame" },
            summary.dropped_while_recording,
            summary.source
        );
    }
    if summary.dropped_while_recording > 0 {
        eprintln!(
            "warning: {} frames dropped because encoding fell behind; use --encoders or a faster disk",
            summary.dropped_while_recording
        );
    }
    Ok(spatialbot_edge::exit::OK)
}

/// Bad SPECs, files and missing features are the user's to fix (exit 2); the rest is runtime.
pub fn source_error(e: SourceError) -> anyhow::Error {
    match e {
        SourceError::Spec { .. }
        | SourceError::FeatureMissing { .. }
        | SourceError::Recording { .. }
        | SourceError::Image { .. }
        | SourceError::Calibration(_) => bad_input(e),
        other => anyhow::Error::new(other),
    }
}
