//! `spatialbot-edge run`: the control loop, camera → policy → safety governor → arm.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use spatialbot_edge::exit::ExitError;
use spatialbot_edge::pipeline::{LoopConfig, RunSummary};
use spatialbot_edge::policy::PolicySpec;

use super::{bad_input, print_json};

/// Steps `run` takes when neither --steps nor --duration is given, so the README's first
/// command ends by itself.
const DEFAULT_STEPS: u64 = 20;
const DEFAULT_GOAL: &str = "pick up the red cube";
const DEFAULT_MODEL: &str = "models/tiny-policy";
const SAMPLE_RECORDING: &str = "tests/data/sample";

#[derive(clap::Args)]
pub struct Args {
    /// Board profile (TOML). Default: the dev profile.
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
    /// Camera: realsense[:SERIAL], v4l2:/dev/videoN, replay:PATH, synthetic. Default: a
    /// RealSense camera if one is attached, else the shipped sample recording.
    #[arg(long, value_name = "SPEC")]
    pub camera: Option<String>,
    /// Policy model folder. Default: models/tiny-policy.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Link to the arm controller: serial:/dev/ttyACM0@921600, pty:PATH, sim. Default: sim.
    #[arg(long, value_name = "SPEC")]
    pub link: Option<String>,
    /// Stop after this many policy steps. Default: 20 when --duration is not given either.
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// What the robot should do; goes into the policy prompt.
    #[arg(long, default_value = DEFAULT_GOAL)]
    pub goal: String,
    /// Act on every frame of the camera or recording, in order, never dropping one (offline
    /// evaluation and tests). Default: act on the newest frame and count the ones skipped.
    #[arg(long)]
    pub every_frame: bool,
    /// A frame older than this when the loop takes it is not acted on (the step holds).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub max_age_ms: u64,
    /// No fresh frame for this long stops the loop (exit code 3).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub stall_stop_ms: u64,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let process_start = std::time::Instant::now();
    let signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, signal.clone())
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    let mut cfg = loop_config(&args)?;
    cfg.process_start = Some(process_start);
    let model_dir = match &args.model {
        Some(dir) => dir.clone(),
        None => find_shipped(DEFAULT_MODEL).ok_or_else(|| {
            bad_input(format!("no --model given and {DEFAULT_MODEL} was not found near the current directory or the binary; pass --model DIR"))
        })?,
    };
    let spec = load_policy_spec(&model_dir)?;
    let camera = match &args.camera {
        Some(c) => c.clone(),
        None => default_camera()?,
    };
    let link = args.link.clone().unwrap_or_else(|| "sim".to_string());
    tracing::info!(model = %model_dir.display(), camera = %camera, link = %link, "starting the control loop");

    let summary = run_with_parts(&args, &spec, &cfg, &model_dir, &camera, &link, signal)?;
    if json {
        print_json(&summary)?;
    } else {
        eprint!("{}", summary.to_text());
    }
    Ok(summary.exit_code)
}

fn loop_config(args: &Args) -> anyhow::Result<LoopConfig> {
    let duration = match args.duration {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(bad_input(format!(
                "--duration must be a positive number of seconds, got {s}"
            )))
        }
        None => None,
    };
    let steps = match (args.steps, duration) {
        (None, None) => Some(DEFAULT_STEPS),
        (s, _) => s,
    };
    if args.max_age_ms == 0 || args.stall_stop_ms < args.max_age_ms {
        return Err(bad_input(format!(
            "--max-age-ms must be > 0 and --stall-stop-ms at least --max-age-ms (got {} and {})",
            args.max_age_ms, args.stall_stop_ms
        )));
    }
    Ok(LoopConfig {
        goal: args.goal.clone(),
        steps,
        duration,
        max_frame_age: Duration::from_millis(args.max_age_ms),
        camera_stall_stop: Duration::from_millis(args.stall_stop_ms),
        every_frame: args.every_frame,
        status_line: std::io::stderr().is_terminal(),
        ..LoopConfig::default()
    })
}

fn load_policy_spec(dir: &Path) -> anyhow::Result<PolicySpec> {
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad_input(format!(
            "{}: {e}; pass --model with a policy model folder",
            path.display()
        ))
    })?;
    PolicySpec::from_manifest_toml(&text).map_err(|e| bad_input(format!("{}: {e}", path.display())))
}

/// A RealSense camera when the build has the feature and one is attached; else the sample
/// recording shipped with the repository.
fn default_camera() -> anyhow::Result<String> {
    let sample = find_shipped(SAMPLE_RECORDING).ok_or_else(|| {
        bad_input(format!(
            "no --camera given, no RealSense camera found, and the sample recording {SAMPLE_RECORDING} was not found near the current directory or the binary; pass --camera SPEC"
        ))
    })?;
    Ok(format!("replay:{}", sample.display()))
}

/// `rel` under the current directory, an ancestor of the binary, or the source tree this binary
/// was built from.
fn find_shipped(rel: &str) -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots.into_iter().map(|r| r.join(rel)).find(|p| p.exists())
}

fn run_with_parts(
    _args: &Args,
    _spec: &PolicySpec,
    _cfg: &LoopConfig,
    _model_dir: &Path,
    camera: &str,
    link: &str,
    _signal: Arc<AtomicBool>,
) -> anyhow::Result<RunSummary> {
    Err(ExitError::runtime(format!(
        "this build cannot run the loop yet: the camera source ({camera}), the inference engine and the link ({link}) are not integrated into `run`"
    ))
    .into())
}
