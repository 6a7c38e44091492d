//! `spatialbot-edge run`: the control loop, camera → policy → safety governor → arm.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use spatialbot_edge::board::Board;
use spatialbot_edge::camera::{CameraSpec, SpecDefaults};
use spatialbot_edge::link::LinkSpec;
use spatialbot_edge::model::backend::LoadStep;
use spatialbot_edge::model::{manifest, BackendConfig, Engine, ModelFolder};
use spatialbot_edge::pipeline::camera_source::{CameraFrames, DepthNeed};
use spatialbot_edge::pipeline::engine_model::{EngineGuard, EngineModel, EngineVision};
use spatialbot_edge::pipeline::link_sink::LinkSink;
use spatialbot_edge::pipeline::stats::StartupPhase;
use spatialbot_edge::pipeline::verified::open_model_folder;
use spatialbot_edge::pipeline::vision::FrameTensors;
use spatialbot_edge::pipeline::{GuardModel, LoopConfig, LoopParts, RunSummary};
use spatialbot_edge::policy::guard::GuardConfig;
use spatialbot_edge::policy::PolicySpec;
use spatialbot_edge::preprocess::Tower;

use super::{bad_input, print_json};

/// Steps `run` takes when neither --steps nor --duration is given, so the README's first
/// command ends by itself.
const DEFAULT_STEPS: u64 = 20;
/// The generation deadline when --generate-deadline-ms is not given: far above a full-size
/// model's step on a Jetson CPU (seconds), far below "hung".
const DEFAULT_GENERATE_DEADLINE_MS: u64 = 30_000;
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
    /// Stop after this many policy steps (at most 1000000000). Default: 20 when --duration is
    /// not given either.
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Stop after this many seconds (at most 31536000, 365 days).
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// What the robot should do; goes into the policy prompt.
    #[arg(long, default_value = DEFAULT_GOAL)]
    pub goal: String,
    /// Act on every frame the camera or recording delivers, in order, never dropping one
    /// (offline evaluation and tests; with a recording use `replay,fast:`, since a real-time
    /// replay skips frames its reader is too slow for, as a camera does). Default: act on the
    /// newest frame and count the ones skipped.
    #[arg(long)]
    pub every_frame: bool,
    /// A frame older than this when the loop takes it is not acted on (the step holds).
    /// At most 86400000. Default: the board's safety.max_age_ms.
    #[arg(long, value_name = "MS")]
    pub max_age_ms: Option<u64>,
    /// No fresh frame for this long stops the loop (exit code 3); at most
    /// 86400000. Default: twice the max age.
    #[arg(long, value_name = "MS")]
    pub stall_stop_ms: Option<u64>,
    /// A generation running longer than this sends Stop{Watchdog} to the arm and ends the run
    /// (exit code 3): a hung model must not keep the session alive on heartbeats. At most
    /// 86400000.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_GENERATE_DEADLINE_MS)]
    pub generate_deadline_ms: u64,
    /// Ask the board's [guard] question even where the profile has `enabled = false`.
    #[arg(long, conflicts_with = "no_guard")]
    pub guard: bool,
    /// Do not ask the board's [guard] question.
    #[arg(long)]
    pub no_guard: bool,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let process_start = Instant::now();
    // First thing: from here on a SIGINT/SIGTERM is never lost. Before the link's first Hello
    // it ends start-up at the next phase (a second one at once, exit 130); after it, the loop
    // sends no further Action and stops the arm.
    let signal = spatialbot_edge::link::signals::shutdown_flag()
        .context("installing the SIGINT/SIGTERM handler")?;
    let mut board = match &args.board {
        Some(path) => Board::load(path),
        None => Board::default_dev(),
    }
    .map_err(bad_input)?;
    if let Some(g) = board.guard.as_mut() {
        g.enabled = (g.enabled || args.guard) && !args.no_guard;
        let never_due = g.every_steps == 0 && !g.before_gripper_close;
        if g.enabled && never_due {
            return Err(bad_input(format!(
                "--guard: the [guard] of {} is never asked (every_steps = 0, before_gripper_close = false); set one of them",
                board.source.display()
            )));
        }
        if g.enabled && board.guard_model_dir().is_none() {
            return Err(bad_input(format!(
                "--guard: the [guard] of {} names no model (guard.model or models.spatialbot)",
                board.source.display()
            )));
        }
    } else if args.guard {
        return Err(bad_input(format!(
            "--guard: the board profile {} has no [guard] section; add one (see boards/dev-x86_64.toml)",
            board.source.display()
        )));
    }
    check_flag_limits(&args)?;
    let mut startup = Startup::new(process_start);
    startup.phase("board profile");
    let mut cfg = loop_config(&args, &board)?;
    cfg.process_start = Some(process_start);
    let model_dir = match &args.model {
        Some(dir) => dir.clone(),
        None => Some(board.policy_model_dir())
            .filter(|d| d.join("manifest.toml").exists())
            .or_else(|| find_shipped(DEFAULT_MODEL))
            .ok_or_else(|| {
                bad_input(format!(
                    "no --model given, and neither the board's policy model ({}) nor {DEFAULT_MODEL} was found; pass --model DIR",
                    board.policy_model_dir().display()
                ))
            })?,
    };
    let spec = load_policy_spec(&model_dir)?;
    let camera_arg = match args.camera.as_deref().unwrap_or(board.camera.spec.as_str()) {
        "auto" => default_camera()?,
        other => other.to_string(),
    };
    let camera_spec = camera_arg
        .parse::<CameraSpec>()
        .map_err(bad_input)?
        .with_defaults(&SpecDefaults::from_board(&board.camera));
    let link_arg = args.link.clone().unwrap_or_else(|| board.link.cli_spec());
    let link_spec: LinkSpec = link_arg.parse().map_err(bad_input)?;
    tracing::info!(board = %board.name, model = %model_dir.display(), camera = %camera_arg, link = %link_arg, "starting the control loop");

    let summary = match run_with_parts(
        &spec,
        &cfg,
        &board,
        &model_dir,
        &camera_spec,
        &link_spec,
        signal,
        startup,
    )? {
        Started::Ran(summary) => *summary,
        Started::Interrupted(phase) => {
            let detail = format!(
                "interrupted during start-up ({phase}); no session with the arm was open, nothing was sent"
            );
            if json {
                print_json(
                    &serde_json::json!({"stop_reason": "signal", "stop_detail": detail, "exit_code": 0}),
                )?;
            } else {
                eprintln!("run stopped: signal ({detail})");
            }
            return Ok(spatialbot_edge::exit::OK);
        }
    };
    if json {
        print_json(&summary)?;
    } else {
        // Not eprint!: a closed stderr must not replace the loop's exit code with a panic.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.to_text().as_bytes());
    }
    Ok(summary.exit_code)
}

/// Every count and duration flag against its cap (`crate::limits`), before anything uses it.
fn check_flag_limits(args: &Args) -> anyhow::Result<()> {
    use spatialbot_edge::limits as lim;
    if let Some(s) = args.duration {
        lim::duration_s("--duration", "", s).map_err(bad_input)?;
    }
    if let Some(n) = args.steps {
        lim::check_count("--steps", "", n, 1, lim::MAX_STEPS).map_err(bad_input)?;
    }
    lim::check_count(
        "--generate-deadline-ms",
        "",
        args.generate_deadline_ms,
        1,
        lim::MAX_MS,
    )
    .map_err(bad_input)?;
    for (flag, value) in [
        ("--max-age-ms", args.max_age_ms),
        ("--stall-stop-ms", args.stall_stop_ms),
    ] {
        if let Some(ms) = value {
            lim::check_count(flag, "", ms, 0, lim::MAX_MS).map_err(bad_input)?;
        }
    }
    Ok(())
}

fn loop_config(args: &Args, board: &Board) -> anyhow::Result<LoopConfig> {
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
    let max_age_ms = args
        .max_age_ms
        .unwrap_or(u64::from(board.safety.max_age_ms));
    let stall_stop_ms = args.stall_stop_ms.unwrap_or(2 * max_age_ms);
    if max_age_ms == 0 || stall_stop_ms < max_age_ms {
        return Err(bad_input(format!(
            "--max-age-ms must be > 0 and --stall-stop-ms at least --max-age-ms (got {max_age_ms} and {stall_stop_ms})"
        )));
    }
    Ok(LoopConfig {
        goal: args.goal.clone(),
        steps,
        duration,
        max_frame_age: Duration::from_millis(max_age_ms),
        camera_stall_stop: Duration::from_millis(stall_stop_ms),
        every_frame: args.every_frame,
        stage_deadline: Some(Duration::from_millis(args.generate_deadline_ms)),
        status_line: std::io::stderr().is_terminal(),
        ..LoopConfig::default()
    })
}

fn load_policy_spec(dir: &Path) -> anyhow::Result<PolicySpec> {
    // The model validator's manifest checks first (schema, caps, action names), so an error
    // names the field as every command names it.
    spatialbot_edge::model::folder::read_manifest(dir)
        .map_err(|e| bad_input(format!("{e}; pass --model with a policy model folder")))?;
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad_input(format!(
            "{}: {e}; pass --model with a policy model folder",
            path.display()
        ))
    })?;
    PolicySpec::from_manifest_toml(&text).map_err(|e| bad_input(format!("{}: {e}", path.display())))
}

/// The shipped sample recording, looped so the default step count is reached. A RealSense camera is used only when named (`--camera
/// realsense`): this build has no way to list attached cameras yet.
fn default_camera() -> anyhow::Result<String> {
    use spatialbot_edge::camera::enumerate;
    if let Some(spec) = enumerate::first_realsense() {
        return Ok(spec);
    }
    // Never act on the sample recording with a real camera in front of the arm.
    if let Some(camera) = enumerate::realsense_on_usb().first() {
        let why = if cfg!(feature = "realsense") {
            "librealsense cannot open it (are its udev rules installed? is another process using it?)"
        } else {
            "this binary was built without the `realsense` feature (rebuild with `cargo build --release --features realsense`)"
        };
        return Err(bad_input(format!(
            "a RealSense camera is attached ({camera}), but {why}; not falling back to the sample recording with a camera present. To run on the recording anyway, pass --camera replay,loop:{SAMPLE_RECORDING}"
        )));
    }
    let sample = find_shipped(SAMPLE_RECORDING).ok_or_else(|| {
        bad_input(format!(
            "no --camera given and the sample recording {SAMPLE_RECORDING} was not found near the current directory or the binary; pass --camera SPEC"
        ))
    })?;
    Ok(format!("replay,loop:{}", sample.display()))
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

/// Where the time from process start to the loop's start went.
struct Startup {
    last: Instant,
    phases: Vec<StartupPhase>,
}

impl Startup {
    fn new(process_start: Instant) -> Self {
        Self {
            last: process_start,
            phases: Vec::new(),
        }
    }

    /// Ends the phase that began where the previous one ended.
    fn phase(&mut self, what: &str) {
        let now = Instant::now();
        self.phases.push(StartupPhase {
            what: what.to_string(),
            ms: (now - self.last).as_secs_f64() * 1e3,
        });
        self.last = now;
    }

    fn model_load_steps(&mut self, model: &str, steps: &[LoadStep]) {
        // The folder check is its own phase already.
        for s in steps
            .iter()
            .filter(|s| !s.what.starts_with("read manifest"))
        {
            self.phases.push(StartupPhase {
                what: format!("{model}: {}", s.what),
                ms: s.millis,
            });
        }
    }
}

fn tower(t: manifest::Tower) -> Tower {
    match t {
        manifest::Tower::Clip => Tower::Clip,
        manifest::Tower::Siglip => Tower::Siglip,
    }
}

/// The model on the board's backend order (`BackendConfig::from_board`: onnxruntime providers in
/// the board's order, TensorRT engines kept in the board's engine cache so a restart loads them
/// instead of building them again; later entries load when an earlier one cannot start).
/// A file of the folder that is wrong (a graph whose inputs disagree with the manifest, a
/// tokenizer that does not load) is bad input (exit 2) naming that file; only a backend that
/// cannot start here is a runtime failure.
fn load_engine(folder: &ModelFolder, board: &Board, what: &str) -> anyhow::Result<Engine> {
    Engine::load(folder, &BackendConfig::from_board(board)).map_err(|e| {
        if e.is_bad_input() {
            bad_input(format!(
                "loading the {what} from {}: {e}",
                folder.dir.display()
            ))
        } else {
            anyhow::anyhow!(
                "loading the {what} from {}: no backend of the board's order ({}) started: {e}",
                folder.dir.display(),
                board.source.display()
            )
        }
    })
}

/// The model folder, its files' sha256 checked unless unchanged since a check recorded in the
/// board's engine cache folder, then the validator's checks of an opened folder
/// (`model::validate::check_opened`).
fn open_folder(
    dir: &Path,
    board: &Board,
    startup: &mut Startup,
) -> Result<ModelFolder, spatialbot_edge::model::ModelError> {
    let stamps = board.engine_cache_dir();
    let (folder, v) = open_model_folder(dir, Some(&stamps))?;
    spatialbot_edge::model::validate::check_opened(&folder, None)?;
    startup.phase(&format!(
        "{}: manifest, {} files hashed, {} unchanged since verified",
        folder.manifest.name, v.files_hashed, v.files_trusted
    ));
    if let Some(e) = v.stamp_error {
        tracing::warn!(
            "cannot record the verified model files ({e}); the next start hashes them again"
        );
    }
    Ok(folder)
}

/// The SpatialBot guard the board profile configures, loaded; `None` when it is off.
fn load_guard(
    board: &Board,
    startup: &mut Startup,
) -> anyhow::Result<Option<(GuardConfig, Box<dyn GuardModel>)>> {
    let (Some(g), Some(dir)) = (board.guard.as_ref(), board.guard_model_dir()) else {
        return Ok(None);
    };
    let folder = open_folder(&dir, board, startup).map_err(|e| {
        bad_input(format!(
            "the [guard] of {}: {e}; fix guard.model or pass --no-guard",
            board.source.display()
        ))
    })?;
    if folder.manifest.kind != manifest::ModelKind::Spatialbot {
        return Err(bad_input(format!(
            "the [guard] of {}: {} is not a SpatialBot model folder (kind is not \"spatialbot\"); fix guard.model",
            board.source.display(),
            dir.display()
        )));
    }
    let v = &folder.manifest.vision;
    let tensors = FrameTensors::new(tower(v.tower), v.image_size, v.pad_to_square)
        .map_err(|e| anyhow::anyhow!(e))?;
    let engine = load_engine(&folder, board, "guard's SpatialBot model")?;
    startup.phase("guard model");
    startup.model_load_steps("guard", engine.load_steps());
    Ok(Some((
        g.config(),
        Box::new(EngineGuard::new(engine, tensors)),
    )))
}

/// How start-up ended.
enum Started {
    Ran(Box<RunSummary>),
    /// A signal arrived before any Hello was sent; the phase it was noticed after.
    Interrupted(&'static str),
}

#[allow(clippy::too_many_arguments)]
fn run_with_parts(
    spec: &PolicySpec,
    cfg: &LoopConfig,
    board: &Board,
    model_dir: &Path,
    camera: &CameraSpec,
    link: &LinkSpec,
    signal: Arc<AtomicBool>,
    mut startup: Startup,
) -> anyhow::Result<Started> {
    let interrupted = || signal.load(std::sync::atomic::Ordering::SeqCst);
    let mut link_config = board.link_config().map_err(bad_input)?;
    link_config.shutdown = Some(signal.clone());
    let folder = open_folder(model_dir, board, &mut startup).map_err(bad_input)?;
    let v = &folder.manifest.vision;
    let tensors = FrameTensors::new(tower(v.tower), v.image_size, v.pad_to_square)
        .map_err(|e| anyhow::anyhow!(e))?;
    startup.phase("policy preprocessing");
    let engine = load_engine(&folder, board, "policy model")?;
    startup.phase("policy model");
    startup.model_load_steps("policy", engine.load_steps());
    if interrupted() {
        return Ok(Started::Interrupted("after loading the policy model"));
    }
    let engine = Arc::new(std::sync::Mutex::new(engine));
    let guard = load_guard(board, &mut startup)?;
    let depth = if spec.depth {
        DepthNeed::Registered
    } else if guard.is_some() {
        DepthNeed::Raw
    } else {
        DepthNeed::None
    };
    let source = CameraFrames::open(camera, depth).map_err(bad_input)?;
    startup.phase("camera");
    if interrupted() {
        return Ok(Started::Interrupted("after opening the camera"));
    }
    let names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
    let sink = LinkSink::open(link, link_config, &names).map_err(|e| {
        let code = e.exit_code();
        anyhow::Error::new(spatialbot_edge::exit::ExitError {
            code,
            message: format!("opening the link to the arm: {e}"),
        })
    })?;
    startup.phase("link");
    // A signal from here on reaches the loop: it sends no Action and stops the arm.
    let parts = LoopParts {
        source,
        vision: EngineVision::new(engine.clone(), tensors),
        model: EngineModel::new(engine),
        sink,
        guard,
    };
    let mut summary =
        spatialbot_edge::pipeline::run_loop(parts, spec, cfg, signal).map_err(bad_input)?;
    summary.startup.phases = startup.phases;
    Ok(Started::Ran(Box::new(summary)))
}
