//! The composition root: the one place that turns a board profile and the command line into
//! the control loop's parts — the policy's model folder, its engine on the board's backend
//! order, the guard, the camera source, the link — and times the start-up. `run` and `bench`
//! assemble the loop here; `ask` and `bench` find their model folders and default camera here.
//!
//! Settings come from [`Board`]'s translations (`config::translate`); nothing here reads a
//! profile field that a translation already covers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use spatialbot_edge::camera::CameraSpec;
use spatialbot_edge::config::Board;
use spatialbot_edge::link::{AppliedHook, LinkConfig, LinkSpec};
use spatialbot_edge::model::backend::LoadStep;
use spatialbot_edge::model::{manifest, BackendConfig, Engine, Grammar, ModelFolder};
use spatialbot_edge::pipeline::camera_source::{CameraFrames, DepthNeed};
use spatialbot_edge::pipeline::engine_model::{EngineGuard, EngineModel, EngineVision};
use spatialbot_edge::pipeline::link_sink::LinkSink;
use spatialbot_edge::pipeline::stats::StartupPhase;
use spatialbot_edge::pipeline::verified::open_model_folder;
use spatialbot_edge::pipeline::vision::FrameTensors;
use spatialbot_edge::pipeline::{GuardModel, LoopParts};
use spatialbot_edge::policy::guard::GuardConfig;
use spatialbot_edge::policy::PolicySpec;
use spatialbot_edge::telemetry::GraphBackend;

use super::bad_input;

/// The policy folder used when neither `--model` nor the profile's `models.policy` exists here.
pub const SHIPPED_POLICY: &str = "models/tiny-policy";
/// The recording `auto` falls back to where no camera is attached (`ask`, `bench`).
pub const SAMPLE_RECORDING: &str = "tests/data/sample";
/// The policy trained in the simulated world: `run`'s default where it runs that world.
pub const SHIPPED_SIM_POLICY: &str = "models/sim-policy";
/// The SpatialBot model trained on SpatialQA from the simulated world: the guard's model there.
pub const SHIPPED_SIM_SPATIALBOT: &str = "models/sim-spatialbot";
/// `run`'s camera where the profile says `auto` and no camera is attached: the simulated world's
/// reach task, on a seed no demonstration was recorded on (docs/simulation.md).
pub const SIM_DEFAULT_CAMERA: &str = "sim:reach,seed=1000";

/// `run`'s camera SPEC when the command line names none: the simulated world
/// ([`SIM_DEFAULT_CAMERA`]) where the profile's camera is `auto` and no RealSense camera is
/// on USB; `None` leaves the choice to [`camera_spec`].
pub fn run_default_camera(board: &Board, arg: Option<&str>) -> Option<String> {
    use spatialbot_edge::camera::enumerate;
    let auto = arg.is_none() && board.camera.spec == "auto";
    (auto && enumerate::first_realsense().is_none() && enumerate::realsense_on_usb().is_empty())
        .then(|| SIM_DEFAULT_CAMERA.to_string())
}

/// The shipped sim policy, where it is found.
pub fn shipped_sim_policy() -> Option<PathBuf> {
    find_shipped(SHIPPED_SIM_POLICY).filter(|d| d.join("manifest.toml").is_file())
}

/// In the simulated world the guard asks the SpatialBot model trained there: an enabled
/// `[guard]` that names no `model` of its own gets the shipped [`SHIPPED_SIM_SPATIALBOT`]
/// (where found) instead of `models.spatialbot`, as the loop's default policy there is
/// [`SHIPPED_SIM_POLICY`]. `run` (with a sim camera) and `eval` call it.
pub fn sim_world_guard(board: &mut Board) {
    let Some(g) = board
        .guard
        .as_mut()
        .filter(|g| g.enabled && g.model.is_none())
    else {
        return;
    };
    if let Some(dir) =
        find_shipped(SHIPPED_SIM_SPATIALBOT).filter(|d| d.join("manifest.toml").is_file())
    {
        g.model = Some(dir);
    }
}

/// The loop `run` and `bench` drive: the real camera source, vision, model and link parts.
pub type PolicyLoopParts = LoopParts<CameraFrames, EngineVision, EngineModel, LinkSink>;

/// `rel` under the current folder, an ancestor of the binary, `$SPATIALBOT_EDGE_HOME`, or the
/// source tree this binary was built from; the first that exists.
pub fn find_shipped(rel: &str) -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    roots.extend(std::env::current_dir().ok());
    if let Some(home) = std::env::var_os("SPATIALBOT_EDGE_HOME") {
        roots.push(PathBuf::from(home));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots.into_iter().map(|r| r.join(rel)).find(|p| p.exists())
}

/// The policy model folder: `--model`, else the profile's `models.policy` where it has a
/// manifest here, else the shipped tiny policy. The second value says when the shipped one
/// stood in for the profile's.
pub fn policy_dir(board: &Board, arg: Option<&Path>) -> anyhow::Result<(PathBuf, Option<String>)> {
    if let Some(dir) = arg {
        return Ok((dir.to_path_buf(), None));
    }
    let from_board = board.policy_model_dir();
    if from_board.join("manifest.toml").is_file() {
        return Ok((from_board, None));
    }
    let shipped = find_shipped(SHIPPED_POLICY)
        .filter(|d| d.join("manifest.toml").is_file())
        .ok_or_else(|| {
            bad_input(format!(
                "no --model given, and neither the board's policy model ({}) nor {SHIPPED_POLICY} was found; pass --model DIR",
                from_board.display()
            ))
        })?;
    let note = format!(
        "model: the profile's models.policy ({}) has no manifest.toml here; used the shipped {} instead (pass --model DIR)",
        from_board.display(),
        shipped.display()
    );
    Ok((shipped, Some(note)))
}

/// How frames of the `auto` camera's fall-back recording are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// As recorded, looped (`run`: the loop sees what a camera would give it).
    RealTime,
    /// As fast as the consumer takes them, looped (`bench`: the stages set the pace).
    Fast,
}

/// The camera SPEC for `arg` (the command line's, else the profile's `camera.spec`): `auto` is
/// a RealSense camera where one is attached and usable, else the shipped sample recording
/// (refused while an unusable RealSense is attached: never act on a recording with a camera in
/// front of the arm).
pub fn camera_spec(
    board: &Board,
    arg: Option<&str>,
    replay: Replay,
) -> anyhow::Result<(String, CameraSpec)> {
    let text = match arg.unwrap_or(board.camera.spec.as_str()) {
        "auto" => default_camera(replay)?,
        other => other.to_string(),
    };
    let spec = text
        .parse::<CameraSpec>()
        .map_err(bad_input)?
        .with_defaults(&board.camera_defaults());
    Ok((text, spec))
}

fn default_camera(replay: Replay) -> anyhow::Result<String> {
    use spatialbot_edge::camera::enumerate;
    if let Some(spec) = enumerate::first_realsense() {
        return Ok(spec);
    }
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
    Ok(match replay {
        Replay::RealTime => format!("replay,loop:{}", sample.display()),
        Replay::Fast => format!("replay,fast,loop:{}", sample.display()),
    })
}

/// The policy parts of a model folder's manifest, after the model validator's checks (so an
/// error names the field as every command names it).
pub fn load_policy_spec(dir: &Path) -> anyhow::Result<PolicySpec> {
    let manifest = spatialbot_edge::model::folder::read_manifest(dir)
        .map_err(|e| bad_input(format!("{e}; pass --model with a policy model folder")))?;
    manifest.policy_spec().map_err(|e| {
        bad_input(format!(
            "{}: {e}",
            dir.join(manifest::MANIFEST_FILE).display()
        ))
    })
}

/// Where the time from process start to the loop's start went.
pub struct Startup {
    last: Instant,
    pub phases: Vec<StartupPhase>,
}

impl Startup {
    pub fn new(process_start: Instant) -> Self {
        Self {
            last: process_start,
            phases: Vec::new(),
        }
    }

    /// Ends the phase that began where the previous one ended.
    pub fn phase(&mut self, what: &str) {
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

/// The model on the board's backend order (`Board::backend_config`: onnxruntime providers in
/// the board's order, TensorRT engines kept in the board's engine cache so a restart loads them
/// instead of building them again; later entries load when an earlier one cannot start).
pub fn load_engine(folder: &ModelFolder, board: &Board, what: &str) -> anyhow::Result<Engine> {
    let order = format!("the board's backend order ({})", board.source.display());
    load_engine_with(folder, &board.backend_config(), &order, what)
}

/// The model on `config`'s backends (`order` names where they came from, for errors). A file of
/// the folder that is wrong (a graph whose inputs disagree with the manifest, a tokenizer that
/// does not load) is bad input (exit 2) naming that file; so is a backend this build lacks (the
/// profile's or the command line's choice); only a backend that fails here is a runtime failure.
pub fn load_engine_with(
    folder: &ModelFolder,
    config: &BackendConfig,
    order: &str,
    what: &str,
) -> anyhow::Result<Engine> {
    Engine::load(folder, config).map_err(|e| {
        let context = format!(
            "loading the {what} from {} on {order}",
            folder.dir.display()
        );
        if e.is_bad_input() || e.is_not_built() {
            bad_input(format!("{context}: {e}"))
        } else {
            anyhow::anyhow!("{context}: no backend started: {e}")
        }
    })
}

/// The model folder, its files' sha256 checked unless unchanged since a check recorded in the
/// board's engine cache folder, then the validator's checks of an opened folder
/// (`model::validate::check_opened`).
pub fn open_folder(
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

/// The board's `[guard]` as `--guard` / `--no-guard` leave it: `on` asks the question even
/// where the profile has `enabled = false`, `off` never asks it. Exit 2 when the guard would be
/// on but is never due or names no model, or `on` is given and the profile has no `[guard]`.
/// The one check of `run`'s and `eval`'s flags.
pub fn apply_guard_flags(board: &mut Board, on: bool, off: bool) -> anyhow::Result<()> {
    let source = board.source.display().to_string();
    let Some(g) = board.guard.as_mut() else {
        if on {
            return Err(bad_input(format!(
                "--guard: the board profile {source} has no [guard] section; add one (see boards/dev-x86_64.toml)"
            )));
        }
        return Ok(());
    };
    g.enabled = (g.enabled || on) && !off;
    if g.enabled && g.every_steps == 0 && !g.before_gripper_close {
        return Err(bad_input(format!(
            "--guard: the [guard] of {source} is never asked (every_steps = 0, before_gripper_close = false); set one of them"
        )));
    }
    if g.enabled && board.guard_model_dir().is_none() {
        return Err(bad_input(format!(
            "--guard: the [guard] of {source} names no model (guard.model or models.spatialbot)"
        )));
    }
    Ok(())
}

/// A model's image preprocessing from its manifest: tower, image size, pad to square.
type Preprocessing = (spatialbot_edge::preprocess::Tower, usize, bool);

/// The SpatialBot guard, loaded once: its question and rules, and its model's engine. Each
/// loop gets its own [`GuardModel`] on the shared engine ([`LoadedGuard::model`]).
pub struct LoadedGuard {
    config: GuardConfig,
    engine: Arc<Mutex<Engine>>,
    tensors: Preprocessing,
    /// The guard model's folder.
    pub dir: PathBuf,
}

impl LoadedGuard {
    /// The guard's question and rules.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// A guard model for one loop, on the shared engine.
    pub fn model(&self) -> anyhow::Result<Box<dyn GuardModel>> {
        let (tower, size, pad) = self.tensors;
        let tensors = FrameTensors::new(tower, size, pad).map_err(|e| anyhow::anyhow!(e))?;
        Ok(Box::new(EngineGuard::new(self.engine.clone(), tensors)))
    }
}

/// The SpatialBot guard the board profile configures, loaded; `None` when it is off.
pub fn load_guard(board: &Board, startup: &mut Startup) -> anyhow::Result<Option<LoadedGuard>> {
    let (Some(config), Some(dir)) = (board.guard_config(), board.guard_model_dir()) else {
        return Ok(None);
    };
    open_guard(board, dir, config, startup).map(Some)
}

/// The guard's SpatialBot model folder `dir` on the board's backends, asking `config`'s
/// question (`guard-eval` opens it here with its own question; a loop's guard is
/// [`load_guard`]'s).
pub fn open_guard(
    board: &Board,
    dir: PathBuf,
    config: GuardConfig,
    startup: &mut Startup,
) -> anyhow::Result<LoadedGuard> {
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
    // Checked here, so that a bad size fails at start-up rather than in a loop.
    FrameTensors::new(v.tower, v.image_size, v.pad_to_square).map_err(|e| anyhow::anyhow!(e))?;
    let tensors = (v.tower, v.image_size, v.pad_to_square);
    let engine = load_engine(&folder, board, "guard's SpatialBot model")?;
    startup.phase("guard model");
    startup.model_load_steps("guard", engine.load_steps());
    Ok(LoadedGuard {
        config,
        engine: Arc::new(Mutex::new(engine)),
        tensors,
        dir,
    })
}

/// Which backend and provider ran each graph, from the loaded engine's description of itself
/// (the board's order may have fallen back past its first entry).
pub fn graph_backends(describe: &str) -> Vec<GraphBackend> {
    if let Some(rest) = describe.strip_prefix("triton ") {
        let url = rest.split_whitespace().next().unwrap_or("");
        return ["vision", "embed", "decoder"]
            .iter()
            .map(|g| GraphBackend {
                graph: g.to_string(),
                backend: "triton".to_string(),
                provider: url.to_string(),
            })
            .collect();
    }
    let ort = describe.starts_with("onnxruntime");
    ["vision", "embed", "decoder"]
        .iter()
        .map(|g| {
            let (backend, provider) = if ort {
                let provider = describe
                    .split(&format!("{g} on "))
                    .nth(1)
                    .and_then(|rest| rest.split([',', ')', ';']).next())
                    .map(|p| p.trim().to_lowercase())
                    .unwrap_or_else(|| "unknown".to_string());
                ("onnxruntime".to_string(), provider)
            } else {
                ("tract".to_string(), "cpu".to_string())
            };
            GraphBackend {
                graph: g.to_string(),
                backend,
                provider,
            }
        })
        .collect()
}

/// The built-in controller's hook that moves `world` by each action it applies: the one
/// place the link and the simulated world meet.
pub fn sim_world_hook(world: &spatialbot_edge::sim::SharedWorld) -> AppliedHook {
    let world = world.clone();
    AppliedHook(Arc::new(move |layout, values| {
        world.lock().apply_layout(layout, values)
    }))
}

/// The grammar the policy's answers are constrained to (docs/decoding.md): `constrain` (the
/// command line), else the board's `models.constrain`; `None` when off.
pub fn policy_grammar(
    board: &Board,
    constrain: Option<bool>,
    spec: &PolicySpec,
    model_dir: &Path,
) -> anyhow::Result<Option<Grammar>> {
    if !constrain.unwrap_or(board.models.constrain) {
        return Ok(None);
    }
    Grammar::for_actions(&spec.actions).map(Some).map_err(|e| {
        bad_input(format!(
            "{}: constrained decoding: {e}; fix [[policy.action]] or turn it off (--constrain off, or models.constrain = false in the board profile)",
            model_dir.join("manifest.toml").display()
        ))
    })
}

/// What the loop is assembled from, besides the board.
pub struct LoopRequest<'a> {
    pub board: &'a Board,
    pub model_dir: &'a Path,
    pub camera: &'a CameraSpec,
    pub link: &'a LinkSpec,
    /// From `Board::link_config`, adjusted by the command (`bench` turns the watchdog and the
    /// rate limit off).
    pub link_config: LinkConfig,
    /// SIGINT/SIGTERM: checked between start-up phases; the link refuses actions once raised.
    pub signal: Arc<AtomicBool>,
    /// Constrained decoding of the policy's answers; `None`: the board's `models.constrain`.
    pub constrain: Option<bool>,
}

/// The assembled loop, ready for `pipeline::run_loop`.
pub struct AssembledLoop {
    pub spec: PolicySpec,
    pub parts: PolicyLoopParts,
    /// The engine's description of itself (backend and providers per graph).
    pub backend: String,
    pub model_name: String,
    /// Loading the policy model folder and its engine, ms.
    pub model_load_ms: f64,
    /// The inference server's counters, when the policy runs on the `triton` backend.
    pub remote: Option<Arc<spatialbot_edge::model::backend::RemoteStats>>,
}

/// How assembly ended.
pub enum Assembled {
    Ready(Box<AssembledLoop>),
    /// A signal arrived before any Hello was sent; the phase it was noticed after.
    Interrupted(&'static str),
}

/// A policy model folder loaded on the board's backends, ready to drive any number of loops
/// (`eval` runs every episode on one: loading it again per episode would cost each a start-up).
pub struct LoadedPolicy {
    pub spec: PolicySpec,
    engine: Arc<Mutex<Engine>>,
    tower: spatialbot_edge::preprocess::Tower,
    image_size: usize,
    pad_to_square: bool,
    /// The engine's description of itself (backend and providers per graph).
    pub backend: String,
    pub model_name: String,
    /// Loading the policy model folder and its engine, ms.
    pub model_load_ms: f64,
    /// The remote (Triton) backend's switch counters, when the engine has one.
    pub remote: Option<Arc<spatialbot_edge::model::backend::RemoteStats>>,
}

/// Loads the policy model folder (its manifest's policy section, files, engine).
pub fn load_policy(
    board: &Board,
    model_dir: &Path,
    startup: &mut Startup,
) -> anyhow::Result<LoadedPolicy> {
    let spec = load_policy_spec(model_dir)?;
    let load_started = Instant::now();
    let folder = open_folder(model_dir, board, startup).map_err(bad_input)?;
    let v = &folder.manifest.vision;
    let (tower, image_size, pad_to_square) = (v.tower, v.image_size, v.pad_to_square);
    // Checked here, once: every loop builds its own from these.
    FrameTensors::new(tower, image_size, pad_to_square).map_err(|e| anyhow::anyhow!(e))?;
    startup.phase("policy preprocessing");
    let engine = load_engine(&folder, board, "policy model")?;
    let model_load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    startup.phase("policy model");
    startup.model_load_steps("policy", engine.load_steps());
    Ok(LoadedPolicy {
        spec,
        backend: engine.describe(),
        remote: engine.remote_stats(),
        model_name: folder.manifest.name.clone(),
        engine: Arc::new(Mutex::new(engine)),
        tower,
        image_size,
        pad_to_square,
        model_load_ms,
    })
}

/// Opens everything the loop needs, in the order that keeps the arm safest: the model folder
/// and engine, the guard, the camera, and only then the link (whose Hello opens a session).
pub fn assemble_loop(req: LoopRequest<'_>, startup: &mut Startup) -> anyhow::Result<Assembled> {
    let policy = load_policy(req.board, req.model_dir, startup)?;
    if req.signal.load(Ordering::SeqCst) {
        return Ok(Assembled::Interrupted("after loading the policy model"));
    }
    let guard = load_guard(req.board, startup)?;
    if req.signal.load(Ordering::SeqCst) {
        return Ok(Assembled::Interrupted("after loading the guard model"));
    }
    attach(&policy, guard.as_ref(), req, startup)
}

/// The loop around a loaded policy and guard (`None`: no guard): the camera, and only then the
/// link. `req`'s model folder is the one `policy` was loaded from; `guard` is the board's
/// ([`load_guard`]).
pub fn attach(
    policy: &LoadedPolicy,
    guard: Option<&LoadedGuard>,
    req: LoopRequest<'_>,
    startup: &mut Startup,
) -> anyhow::Result<Assembled> {
    let interrupted = || req.signal.load(Ordering::SeqCst);
    let mut link_config = req.link_config;
    link_config.shutdown = Some(req.signal.clone());
    // The simulated camera and the built-in controller share one world: the actions the
    // controller applies move what the camera renders (crate::sim).
    match (req.camera, req.link) {
        (CameraSpec::Sim(sim), LinkSpec::Sim) => {
            link_config.on_applied = Some(sim_world_hook(&sim.world))
        }
        (CameraSpec::Sim(_), _) => tracing::warn!(
            "the sim camera renders a world that only the built-in controller (--link sim) moves; over {} it stays where it started",
            req.link
        ),
        _ => {}
    }
    let spec = policy.spec.clone();
    let tensors = FrameTensors::new(policy.tower, policy.image_size, policy.pad_to_square)
        .map_err(|e| anyhow::anyhow!(e))?;
    let engine = policy.engine.clone();
    let guard = match guard {
        Some(g) => Some((g.config().clone(), g.model()?)),
        None => None,
    };
    let depth = if spec.depth {
        DepthNeed::Registered
    } else if guard.is_some() {
        DepthNeed::Raw
    } else {
        DepthNeed::None
    };
    let source = CameraFrames::open(req.camera, depth).map_err(bad_input)?;
    startup.phase("camera");
    if interrupted() {
        return Ok(Assembled::Interrupted("after opening the camera"));
    }
    let grammar = policy_grammar(req.board, req.constrain, &spec, req.model_dir)?;
    let names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
    let sink = LinkSink::open(req.link, link_config, &names).map_err(|e| {
        let code = e.exit_code();
        anyhow::Error::new(spatialbot_edge::exit::ExitError {
            code,
            message: format!("opening the link to the arm: {e}"),
        })
    })?;
    startup.phase("link");
    Ok(Assembled::Ready(Box::new(AssembledLoop {
        spec,
        parts: LoopParts {
            source,
            vision: EngineVision::new(engine.clone(), tensors),
            model: EngineModel::new(engine).with_grammar(grammar),
            sink,
            guard,
        },
        backend: policy.backend.clone(),
        model_name: policy.model_name.clone(),
        model_load_ms: policy.model_load_ms,
        remote: policy.remote.clone(),
    })))
}
