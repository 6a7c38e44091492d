//! `spatialbot-edge bench`: warm-up, then N frames through every pipeline stage this build has,
//! timed per stage; or `--compare A.json B.json`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use spatialbot_edge::bench::{
    self, per, stage, FrameStamps, HostInfo, ModelRun, Report, RunInfo, StageNotRun, StageRecorder,
};
use spatialbot_edge::board::Board;
use spatialbot_edge::camera::{self, CameraSpec, OpenOptions, RgbdFrame, Source, SourceStats};
use spatialbot_edge::link::governor::{Decision, Governor, Proposal};
use spatialbot_edge::link::{self, ActionCommand, Link, LinkSpec, StopReason, ACTION_LEN};
use spatialbot_edge::model::manifest::{ModelKind, Tower as ManifestTower};
use spatialbot_edge::model::{
    BackendConfig, Engine, GenerateOptions, ImageEmbedding, Prompt, PromptPiece,
};
use spatialbot_edge::pipeline::engine_model::EngineVision;
use spatialbot_edge::pipeline::link_sink::wire_slots;
use spatialbot_edge::pipeline::vision::FrameTensors;
use spatialbot_edge::pipeline::{Depth, VisionEncoder};
use spatialbot_edge::policy::{
    action_from_answer, build_policy_prompt, ActionLayout, EmbeddingHistory, PolicySpec,
};
use spatialbot_edge::preprocess::{Preprocessor, Tower};
use spatialbot_edge::rgbd::pack::pack_into;
use spatialbot_edge::rgbd::{DepthMm, Encoding, Registrar};

use super::bad_input;

const DEFAULT_GOAL: &str = "pick up the red cube";
const DEFAULT_QUESTION: &str = "What is the depth value of the object in the center of the image?";
const SHIPPED_POLICY: &str = "models/tiny-policy";

#[derive(clap::Args)]
pub struct Args {
    /// Board profile: a file, or a shipped profile name (default: dev-x86_64).
    #[arg(long)]
    board: Option<String>,
    /// Camera SPEC (default: the profile's camera.spec).
    #[arg(long)]
    camera: Option<String>,
    /// Model folder for the vision, prefill, decode (and, for a policy, action) stages: a
    /// policy or a SpatialBot model. Default: the profile's models.policy, else the shipped
    /// models/tiny-policy.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Measure the camera-to-link stages only, without a model.
    #[arg(long, conflicts_with = "model")]
    no_model: bool,
    /// The policy's goal (policy models).
    #[arg(long, default_value = DEFAULT_GOAL)]
    goal: String,
    /// The question asked about every frame (SpatialBot models).
    #[arg(long, default_value = DEFAULT_QUESTION)]
    question: String,
    /// Tokens to generate per frame at most, 1..=100000 (default: the manifest's max_new_tokens).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_new_tokens: Option<u64>,
    /// Frames to measure after the warm-up, 1..=10000000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    frames: u64,
    /// Frames run before measuring (caches, allocator, clocks settle), at most 1000000.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    warmup: u64,
    /// Write report.json and latency.svg into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compare two reports: per-stage ratios B / A.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"], conflicts_with_all = ["board", "camera", "out", "model"])]
    compare: Option<Vec<PathBuf>>,
}

/// The data one frame carries from stage to stage. Each stage fills what the next one eats.
struct Work {
    /// When the frame started, on the link's monotonic clock (µs).
    capture_us: u64,
    frame: Option<RgbdFrame>,
    /// The frame as the control loop's stages take it: colour, and depth registered to it.
    captured: Option<RgbdFrame>,
    /// The SpatialBot 3-channel depth image, interleaved RGB bytes.
    packed: Vec<u8>,
    /// The action the governor let through; `None`: nothing to send (no policy, or held).
    action: Option<[f32; ACTION_LEN]>,
}

impl Work {
    fn new() -> Self {
        Self {
            capture_us: link::clock::monotonic_us(),
            frame: None,
            captured: None,
            packed: Vec::new(),
            action: None,
        }
    }
}

/// One or more pipeline stages as the bench runs them: the same library code `run` uses,
/// nothing stubbed.
trait BenchStage {
    /// The stages this runs, in order, each with what one of its samples is ([`per`]).
    fn stages(&self) -> Vec<(&'static str, &'static str)>;
    /// Runs one frame, marking each stage on `stamps` as it ends (a stage may mark several
    /// times: once per image, once per token).
    fn run(&mut self, work: &mut Work, stamps: &mut FrameStamps) -> anyhow::Result<()>;
    /// Frames each stage dropped since the last call.
    fn take_dropped(&mut self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Called once after the last frame.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Lines for the report about how the stages ran, known only after running.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Positions the last prefill ran (model stages only).
    fn prefill_positions(&self) -> Option<u64> {
        None
    }
}

/// The next frame from the camera source (decode, for a recording).
struct CameraStage {
    source: Box<dyn Source>,
    reported: SourceStats,
}

impl BenchStage for CameraStage {
    fn stages(&self) -> Vec<(&'static str, &'static str)> {
        vec![(stage::CAMERA, per::FRAME)]
    }

    fn run(&mut self, work: &mut Work, stamps: &mut FrameStamps) -> anyhow::Result<()> {
        let frame = self.source.next_frame()?.ok_or_else(|| {
            anyhow::anyhow!("the camera source ended; use a looping recording (`replay,fast,loop:PATH`) or fewer --frames")
        })?;
        work.frame = Some(frame);
        stamps.mark(stage::CAMERA);
        Ok(())
    }

    fn take_dropped(&mut self) -> Vec<(&'static str, u64)> {
        let now = self.source.stats();
        let lost = |s: &SourceStats| s.dropped_by_device + s.unpaired_color + s.unpaired_depth;
        let d = lost(&now).saturating_sub(lost(&self.reported));
        self.reported = now;
        vec![(stage::CAMERA, d)]
    }
}

/// Depth registered into the colour camera's frame (skipped per frame where the camera already
/// delivers registered depth); hands the frame on to the control loop's stages.
struct RegisterStage {
    registrar: Registrar,
    out: DepthMm,
    frames: u64,
    came_registered: u64,
}

impl BenchStage for RegisterStage {
    fn stages(&self) -> Vec<(&'static str, &'static str)> {
        vec![(stage::REGISTER, per::FRAME)]
    }

    fn run(&mut self, work: &mut Work, stamps: &mut FrameStamps) -> anyhow::Result<()> {
        let mut frame = work.frame.take().context("no frame to register")?;
        self.frames += 1;
        match &frame.depth {
            Depth::Raw { depth, .. } => {
                self.registrar.register_into(depth, &mut self.out)?;
                frame.depth = Depth::Registered(Arc::new(self.out.clone()));
            }
            Depth::Registered(_) => self.came_registered += 1,
            // A colour-only camera: the later stages take all-zero depth of the colour size.
            Depth::None => {
                self.came_registered += 1;
                let zeros = DepthMm::zeros(frame.color.width, frame.color.height);
                frame.depth = Depth::Registered(Arc::new(zeros));
            }
        }
        frame.ready = Instant::now();
        work.captured = Some(frame);
        stamps.mark(stage::REGISTER);
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        if self.came_registered == 0 {
            return Vec::new();
        }
        vec![format!(
            "register: {} of {} frames came already registered from the camera; for those the stage only handed the depth on",
            self.came_registered, self.frames
        )]
    }
}

/// SpatialBot depth packing (uint24 mm → 3 × uint8) of the registered depth.
struct PackStage;

impl BenchStage for PackStage {
    fn stages(&self) -> Vec<(&'static str, &'static str)> {
        vec![(stage::PACK, per::FRAME)]
    }

    fn run(&mut self, work: &mut Work, stamps: &mut FrameStamps) -> anyhow::Result<()> {
        let depth = work
            .captured
            .as_ref()
            .and_then(|f| f.depth.registered())
            .context("no depth to pack")?;
        work.packed.resize(depth.as_slice().len() * 3, 0);
        pack_into(depth.as_slice(), Encoding::SpatialBot, &mut work.packed)?;
        stamps.mark(stage::PACK);
        Ok(())
    }
}

/// Without a model: the colour image → the policy vision tower's normalised CHW tensor.
struct PreprocessStage {
    preprocessor: Preprocessor,
}

impl BenchStage for PreprocessStage {
    fn stages(&self) -> Vec<(&'static str, &'static str)> {
        vec![(stage::PREPROCESS, per::FRAME)]
    }

    fn run(&mut self, work: &mut Work, stamps: &mut FrameStamps) -> anyhow::Result<()> {
        let frame = work.captured.as_ref().context("no frame to preprocess")?;
        self.preprocessor.tensor(&frame.color)?;
        stamps.mark(stage::PREPROCESS);
        Ok(())
    }
}

/// The policy vision tower, image size and padding from the board's policy manifest; CLIP-L/336
/// without padding (the robot policy's tower) where the manifest cannot be read.
fn policy_vision(board: &Board) -> (Tower, usize, bool, String) {
    let path = board.policy_model_dir().join("manifest.toml");
    let parsed = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok());
    let vision = parsed
        .as_ref()
        .and_then(|t| t.get("vision"))
        .and_then(|v| v.as_table());
    let tower = vision
        .and_then(|v| v.get("tower"))
        .and_then(|v| v.as_str())
        .and_then(|t| t.parse::<Tower>().ok());
    let size = vision
        .and_then(|v| v.get("image_size"))
        .and_then(|v| v.as_integer())
        .and_then(|n| usize::try_from(n).ok());
    let pad = vision
        .and_then(|v| v.get("pad_to_square"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    match (tower, size) {
        (Some(t), Some(n)) => (
            t,
            n,
            pad,
            format!(
                "preprocess: {} {n}x{n}, pad {pad}, from {}",
                t.name(),
                path.display()
            ),
        ),
        _ => (
            Tower::Clip,
            Tower::Clip.default_size(),
            false,
            format!(
                "preprocess: clip 336x336 (no readable manifest at {})",
                path.display()
            ),
        ),
    }
}

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a policy does with its answer: parse and decode it per the manifest's action layout,
/// then the safety governor with the board's limits.
struct PolicyAction {
    history: EmbeddingHistory<ImageEmbedding>,
    layout: ActionLayout,
    /// For each wire slot, the index of the policy value that fills it.
    slots: [Option<usize>; ACTION_LEN],
    governor: Governor,
    unparsable: u64,
    reported_held: u64,
}

/// The model stages, through the engine `run` uses: preprocess and the vision graph per image
/// (`EngineVision`, as the control loop's vision thread), the prompt's prefill, one decode
/// sample per generated token, and for a policy the action (parse, decode, governor).
struct ModelStage {
    engine: Arc<Mutex<Engine>>,
    vision: EngineVision,
    images_per_frame: usize,
    prompt: Prompt,
    options: GenerateOptions,
    policy: Option<PolicyAction>,
    prefill_positions: u64,
    last_answer: String,
}

fn stage_error(e: spatialbot_edge::pipeline::StageError) -> anyhow::Error {
    anyhow::anyhow!(e)
}

impl BenchStage for ModelStage {
    fn stages(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![
            (stage::PREPROCESS, per::FRAME),
            (stage::VISION, per::IMAGE),
            (stage::PREFILL, per::FRAME),
            (stage::DECODE, per::TOKEN),
        ];
        if self.policy.is_some() {
            v.push((stage::ACTION, per::FRAME));
        }
        v
    }

    fn run(&mut self, work: &mut Work, stamps: &mut FrameStamps) -> anyhow::Result<()> {
        let frame = work.captured.as_ref().context("no frame for the model")?;
        let mut inputs = Vec::with_capacity(self.images_per_frame);
        for image in 0..self.images_per_frame {
            inputs.push(
                self.vision
                    .preprocess(frame, image)
                    .map_err(stage_error)
                    .with_context(|| format!("preprocessing image {image}"))?,
            );
        }
        stamps.mark(stage::PREPROCESS);
        let mut encoded = Vec::with_capacity(self.images_per_frame);
        for input in inputs {
            encoded.push(self.vision.encode(input).map_err(stage_error)?);
            stamps.mark(stage::VISION);
        }
        let images: Vec<ImageEmbedding> = match &mut self.policy {
            Some(p) => {
                let mut fresh = encoded.into_iter();
                p.history
                    .step(frame.sequence, |_| {
                        fresh
                            .next()
                            .context("the embedding cache asked for more images than a frame has")
                    })?
                    .iter()
                    .map(|e| (**e).clone())
                    .collect()
            }
            None => encoded,
        };
        let mut first = true;
        let generation =
            lock(&self.engine).generate(&self.prompt, &images, &self.options, &mut |_| {
                stamps.mark(if first { stage::PREFILL } else { stage::DECODE });
                first = false;
            })?;
        self.prefill_positions = generation.timings.prefill_positions as u64;
        if let Some(p) = &mut self.policy {
            let proposal = match action_from_answer(&p.layout, &generation.text) {
                Ok(values) => {
                    let mut wire = [0f32; ACTION_LEN];
                    for (v, slot) in wire.iter_mut().zip(&p.slots) {
                        if let Some(i) = slot {
                            *v = values.get(*i).copied().unwrap_or(f64::NAN) as f32;
                        }
                    }
                    Proposal::Values {
                        values: wire,
                        capture_us: work.capture_us,
                    }
                }
                Err(_) => {
                    p.unparsable += 1;
                    Proposal::ParseFailure
                }
            };
            work.action = match p.governor.decide(&proposal, link::clock::monotonic_us()) {
                Decision::Act { values, .. } => Some(values),
                Decision::Hold(_) => None,
            };
            stamps.mark(stage::ACTION);
        }
        self.last_answer = generation.text;
        Ok(())
    }

    fn take_dropped(&mut self) -> Vec<(&'static str, u64)> {
        match &mut self.policy {
            Some(p) => {
                let held = p.governor.counters().held();
                let d = held.saturating_sub(p.reported_held);
                p.reported_held = held;
                vec![(stage::ACTION, d)]
            }
            None => Vec::new(),
        }
    }

    fn prefill_positions(&self) -> Option<u64> {
        Some(self.prefill_positions)
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "model: the last answer was {:?}",
            self.last_answer.chars().take(120).collect::<String>()
        )];
        if let Some(p) = &self.policy {
            notes.push(format!(
                "action: {} answers did not parse into an action; {}",
                p.unparsable,
                p.governor.counters().summary()
            ));
            let c = p.history.counts();
            notes.push(format!(
                "vision: the embedding cache sent {} of the {} images the prompts referenced through the vision graph",
                c.images_encoded, c.images_referenced
            ));
        }
        notes
    }
}

/// `auto`: a RealSense where this build has it, else the shipped sample recording (looped, as
/// fast as the stages take it), else the synthetic scene.
fn resolve_camera(spec: &str) -> String {
    if spec != "auto" {
        return spec.to_string();
    }
    if cfg!(feature = "realsense") {
        return "realsense".to_string();
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("SPATIALBOT_EDGE_HOME") {
        candidates.push(PathBuf::from(home).join("recordings/sample"));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        candidates.push(exe_dir.join("../recordings/sample"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample"));
    candidates.push(PathBuf::from("tests/data/sample"));
    match candidates
        .into_iter()
        .find(|p| p.join("recording.toml").is_file())
    {
        Some(p) => format!("replay,fast,loop:{}", p.display()),
        None => "synthetic,fast".to_string(),
    }
}

/// Wire encode + write of the action (or, when the governor held, a heartbeat, as `run`
/// sends) to the in-process controller simulator, then handling of whatever it sent back.
struct LinkStage {
    link: Link,
    chunk_id: u32,
    /// No stage before this one produces actions: send a hold-still action (all zeros).
    hold_still: bool,
    heartbeats: u64,
}

impl BenchStage for LinkStage {
    fn stages(&self) -> Vec<(&'static str, &'static str)> {
        vec![(stage::LINK, per::FRAME)]
    }

    fn run(&mut self, work: &mut Work, stamps: &mut FrameStamps) -> anyhow::Result<()> {
        let values = match (work.action, self.hold_still) {
            (Some(v), _) => Some(v),
            (None, true) => Some([0.0; ACTION_LEN]),
            (None, false) => None,
        };
        match values {
            Some(values) => {
                self.link.send_action(&ActionCommand {
                    chunk_id: self.chunk_id,
                    chunk_index: 0,
                    capture_us: work.capture_us,
                    values,
                })?;
                self.chunk_id = self.chunk_id.wrapping_add(1);
            }
            None => {
                self.link.heartbeat()?;
                self.heartbeats += 1;
            }
        }
        self.link.poll()?;
        stamps.mark(stage::LINK);
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.link.stop(StopReason::Finished)?;
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        if self.heartbeats == 0 {
            return Vec::new();
        }
        vec![format!(
            "link: {} frames sent a heartbeat instead of an action (the governor held)",
            self.heartbeats
        )]
    }
}

struct Plan {
    stages: Vec<Box<dyn BenchStage>>,
    not_run: Vec<StageNotRun>,
    /// What the stages ran with, for the report.
    notes: Vec<String>,
    model: Option<ModelRun>,
    graphs: GraphBackends,
}

/// Which backend and provider ran each graph: (graph, backend, provider).
type GraphBackends = Vec<(String, String, String)>;

fn not_run(name: &str, why: &str) -> StageNotRun {
    StageNotRun {
        name: name.to_string(),
        why: why.to_string(),
    }
}

/// The model folder to bench: `--model`, else the profile's policy folder, else the shipped
/// tiny policy (with a note saying so). `None` where none is found.
fn model_dir(board: &Board, arg: Option<&Path>, notes: &mut Vec<String>) -> Option<PathBuf> {
    if let Some(dir) = arg {
        return Some(dir.to_path_buf());
    }
    let from_board = board.policy_model_dir();
    if from_board.join("manifest.toml").is_file() {
        return Some(from_board);
    }
    let shipped = find_shipped(SHIPPED_POLICY)?;
    notes.push(format!(
        "model: the profile's models.policy ({}) has no manifest.toml here; benched the shipped {} instead (pass --model DIR)",
        from_board.display(),
        shipped.display()
    ));
    Some(shipped)
}

/// `rel` under the current folder, a folder above the binary, or the source tree.
fn find_shipped(rel: &str) -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    roots.extend(std::env::current_dir().ok());
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots
        .into_iter()
        .map(|r| r.join(rel))
        .find(|p| p.join("manifest.toml").is_file())
}

/// Which backend and provider ran each graph, from the loaded engine's description of itself
/// (the board's order may have fallen back past its first entry).
fn graph_backends(describe: &str) -> GraphBackends {
    let graphs = ["vision", "embed", "decoder"];
    let ort = describe.starts_with("onnxruntime");
    graphs
        .iter()
        .map(|g| {
            if !ort {
                return (g.to_string(), "tract".to_string(), "cpu".to_string());
            }
            let provider = describe
                .split(&format!("{g} on "))
                .nth(1)
                .and_then(|rest| rest.split([',', ')', ';']).next())
                .map(|p| p.trim().to_lowercase())
                .unwrap_or_else(|| "unknown".to_string());
            (g.to_string(), "onnxruntime".to_string(), provider)
        })
        .collect()
}

/// Loads the model folder on the profile's backend and builds the model stages.
fn model_stage(
    board: &Board,
    dir: &Path,
    args: &Args,
    notes: &mut Vec<String>,
) -> anyhow::Result<(ModelStage, ModelRun, GraphBackends)> {
    let started = Instant::now();
    let folder = spatialbot_edge::model::validate::validate_folder(dir, None).map_err(bad_input)?;
    let config = BackendConfig::from_board(board);
    let context = || {
        format!(
            "loading the model in {} on the board's backend order ({})",
            dir.display(),
            board.source.display()
        )
    };
    // A backend this build or machine lacks is the profile's problem (exit 2), not a crash.
    let engine = match Engine::load(&folder, &config) {
        Ok(engine) => engine,
        Err(e @ spatialbot_edge::model::ModelError::Backend { .. }) => {
            return Err(bad_input(format!("{}: {e}", context())))
        }
        // A wrong graph or tokenizer in the folder: exit 2 naming that file.
        Err(e) if e.is_bad_input() => return Err(bad_input(format!("{}: {e}", context()))),
        Err(e) => return Err(anyhow::Error::new(e).context(context())),
    };
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let manifest = engine.manifest().clone();
    let describe = engine.describe();
    let graphs = graph_backends(&describe);
    let v = &manifest.vision;
    let tower = match v.tower {
        ManifestTower::Clip => Tower::Clip,
        ManifestTower::Siglip => Tower::Siglip,
    };
    let tensors =
        FrameTensors::new(tower, v.image_size, v.pad_to_square).map_err(|e| anyhow::anyhow!(e))?;
    notes.push(format!(
        "preprocess: {} {}x{}, pad {}, from {}",
        tower.name(),
        v.image_size,
        v.image_size,
        v.pad_to_square,
        dir.join("manifest.toml").display()
    ));
    let max_new_tokens = args.max_new_tokens.map(|n| n as usize);
    let (images_per_frame, prompt, policy, kind) = match manifest.kind {
        ModelKind::Policy => {
            let path = dir.join("manifest.toml");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
            let spec = PolicySpec::from_manifest_toml(&text)
                .map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
            let policy_prompt = build_policy_prompt(&spec, &args.goal).map_err(bad_input)?;
            let mut pieces = Vec::new();
            for (k, chunk) in policy_prompt.chunks.iter().enumerate() {
                if k > 0 {
                    pieces.push(PromptPiece::Image(k - 1));
                }
                let ids = engine.tokenizer().encode(chunk)?;
                if !ids.is_empty() {
                    pieces.push(PromptPiece::Text(ids));
                }
            }
            let mut limits = board.governor_limits().map_err(bad_input)?;
            // Frames follow each other as fast as the stages take them; the rate limit would
            // hold most of them and time a heartbeat instead of an action.
            limits.min_interval_ms = 0;
            let names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
            let slots = wire_slots(&limits.layout, &names).map_err(bad_input)?;
            notes.push(format!(
                "action: parse and decode per the manifest, then the safety governor with {}'s limits (rate limit off: frames come back to back)",
                board.name
            ));
            let policy = PolicyAction {
                history: EmbeddingHistory::new(&spec),
                layout: spec.actions.clone(),
                slots,
                governor: Governor::new(limits).map_err(bad_input)?,
                unparsable: 0,
                reported_held: 0,
            };
            let max = max_new_tokens.unwrap_or(spec.max_new_tokens);
            (
                spec.images_per_frame(),
                Prompt { pieces },
                Some(policy),
                ("policy", max),
            )
        }
        ModelKind::Spatialbot => {
            let prompt = engine.prompt(&args.question, 2)?;
            let max = max_new_tokens.unwrap_or(manifest.llm.max_new_tokens);
            (2, prompt, None, ("spatialbot", max))
        }
    };
    let (kind, max_new) = kind;
    let engine = Arc::new(Mutex::new(engine));
    let run = ModelRun {
        dir: dir.display().to_string(),
        name: manifest.name.clone(),
        kind: kind.to_string(),
        backend: describe,
        load_ms,
        images_per_frame: images_per_frame as u64,
        prefill_positions: 0,
        generated_tokens: 0,
    };
    let stage = ModelStage {
        vision: EngineVision::new(engine.clone(), tensors),
        engine,
        images_per_frame,
        prompt,
        options: GenerateOptions {
            max_new_tokens: Some(max_new),
            ..GenerateOptions::default()
        },
        policy,
        prefill_positions: 0,
        last_answer: String::new(),
    };
    Ok((stage, run, graphs))
}

/// The stages this build can run for `board`, in pipeline order, and the ones it cannot.
fn plan(board: &Board, camera: &str, args: &Args) -> anyhow::Result<Plan> {
    let mut stages: Vec<Box<dyn BenchStage>> = Vec::new();
    let mut notes = Vec::new();
    let spec = camera
        .parse::<CameraSpec>()
        .map_err(bad_input)?
        .with_defaults(&camera::SpecDefaults::from_board(&board.camera));
    let source = camera::open(&spec, &OpenOptions::with_register(false))
        .with_context(|| format!("cannot open camera `{camera}`"))?;
    notes.push(format!("camera: {}", source.describe()));
    let registrar = Registrar::new(source.calibration())
        .context("cannot register depth with this camera's calibration")?;
    let (color_w, color_h) = registrar.color_size();
    stages.push(Box::new(CameraStage {
        source,
        reported: SourceStats::default(),
    }));
    stages.push(Box::new(RegisterStage {
        registrar,
        out: DepthMm::zeros(color_w, color_h),
        frames: 0,
        came_registered: 0,
    }));
    stages.push(Box::new(PackStage));

    let mut skipped = Vec::new();
    let mut model = None;
    let mut graphs = Vec::new();
    let dir = if args.no_model {
        None
    } else {
        model_dir(board, args.model.as_deref(), &mut notes)
    };
    let has_policy = match dir {
        Some(dir) => {
            let (stage, run, g) = model_stage(board, &dir, args, &mut notes)?;
            let has_policy = stage.policy.is_some();
            if !has_policy {
                skipped.push(not_run(
                    stage::ACTION,
                    "a SpatialBot model answers questions, it proposes no action: the link stage sends a hold-still action (all zeros)",
                ));
            }
            stages.push(Box::new(stage));
            model = Some(run);
            graphs = g;
            has_policy
        }
        None => {
            let (tower, size, pad, note) = policy_vision(board);
            notes.push(note);
            stages.push(Box::new(PreprocessStage {
                preprocessor: Preprocessor::new(tower, size, pad)?,
            }));
            let why = if args.no_model {
                "--no-model"
            } else {
                "no model folder: neither the profile's models.policy nor the shipped models/tiny-policy was found (pass --model DIR)"
            };
            for name in [stage::VISION, stage::PREFILL, stage::DECODE, stage::ACTION] {
                skipped.push(not_run(name, why));
            }
            false
        }
    };

    // Always the simulator: a bench never moves a real arm.
    // The stages run one after another here, with no heartbeat thread beside them as in `run`,
    // so the simulated controller's watchdog is set out of reach.
    let mut link_config = board.link_config().map_err(bad_input)?;
    link_config.watchdog_ms = u16::MAX;
    let link = Link::open(&LinkSpec::Sim, link_config)
        .context("cannot open the link to the built-in arm simulator")?;
    notes.push(
        "link: the built-in arm simulator, watchdog off (a bench never drives a real arm)"
            .to_string(),
    );
    stages.push(Box::new(LinkStage {
        link,
        chunk_id: 0,
        hold_still: !has_policy,
        heartbeats: 0,
    }));
    Ok(Plan {
        stages,
        not_run: skipped,
        notes,
        model,
        graphs,
    })
}

/// A one-line progress display on stderr, only when stderr is a terminal.
struct Progress {
    enabled: bool,
    total: u64,
    last: Instant,
    start: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Self {
            enabled: std::io::stderr().is_terminal(),
            total,
            last: now,
            start: now,
        }
    }

    fn update(&mut self, done: u64, phase: &str) {
        if !self.enabled || (self.last.elapsed() < Duration::from_millis(200) && done < self.total)
        {
            return;
        }
        self.last = Instant::now();
        let width = 30usize;
        let filled = (done as f64 / self.total.max(1) as f64 * width as f64) as usize;
        let fps = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let _ = write!(
            std::io::stderr(),
            "\r{phase:<8} [{}{}] {done}/{} frames, {fps:.1} frames/s ",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            self.total
        );
    }

    fn finish(&self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn run_frame(stages: &mut [Box<dyn BenchStage>], stamps: &mut FrameStamps) -> anyhow::Result<()> {
    let mut work = Work::new();
    for s in stages.iter_mut() {
        s.run(&mut work, stamps).with_context(|| {
            let names: Vec<&str> = s.stages().iter().map(|(n, _)| *n).collect();
            format!("stage {}", names.join("/"))
        })?;
    }
    Ok(())
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    if let Some(files) = &args.compare {
        return compare(&files[0], &files[1], json);
    }
    let board = match &args.board {
        Some(b) => Board::resolve(b),
        None => Board::default_dev(),
    }
    .map_err(bad_input)?;
    let camera = resolve_camera(
        &args
            .camera
            .clone()
            .unwrap_or_else(|| board.camera.spec.clone()),
    );
    let Plan {
        mut stages,
        not_run,
        notes,
        model,
        graphs,
    } = plan(&board, &camera, &args)?;

    let info = RunInfo {
        board: board.name.clone(),
        board_file: board.source.display().to_string(),
        camera: camera.clone(),
        warmup_frames: args.warmup,
        stages_not_run: not_run,
        notes,
        host: HostInfo::read(),
        model,
    };

    // Process start → the first frame through every stage (its action sent): what a supervisor
    // waits for after a restart. Model loading (and TensorRT engine builds) are inside it.
    let mut startup = None;
    let mut progress = Progress::new(args.warmup);
    for n in 0..args.warmup {
        let mut stamps = FrameStamps::start(n);
        run_frame(&mut stages, &mut stamps)?;
        startup = startup.or_else(bench::system::process_age);
        progress.update(n + 1, "warm-up");
    }
    for s in stages.iter_mut() {
        s.take_dropped();
    }
    progress.finish();

    let mut recorder = StageRecorder::new();
    let declared: Vec<(&str, &str)> = stages.iter().flat_map(|s| s.stages()).collect();
    for (name, unit) in &declared {
        recorder.declare_stages(&[name]);
        recorder.set_per(name, unit);
    }
    for (graph, backend, provider) in &graphs {
        recorder.record_graph_backend(graph, backend, provider);
    }
    let mut progress = Progress::new(args.frames);
    let start = Instant::now();
    for n in 0..args.frames {
        let mut stamps = FrameStamps::start(n);
        run_frame(&mut stages, &mut stamps)?;
        startup = startup.or_else(bench::system::process_age);
        recorder.record_frame(&stamps);
        for s in stages.iter_mut() {
            for (name, d) in s.take_dropped() {
                if d > 0 {
                    recorder.record_dropped(name, d);
                }
            }
        }
        progress.update(n + 1, "measure");
    }
    let wall = start.elapsed();
    progress.finish();
    for s in stages.iter_mut() {
        s.finish().context("a stage did not shut down cleanly")?;
    }
    if let Some(d) = startup {
        recorder.record_startup(d);
    }

    let mut report = recorder.report(info);
    for s in &stages {
        report.notes.extend(s.notes());
    }
    if let Some(m) = report.model.as_mut() {
        let measured = |name: &str| {
            report
                .stages
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.count)
                .unwrap_or(0)
        };
        // Each frame's first token comes from the prefill, each later one is a decode sample.
        m.generated_tokens = measured(stage::PREFILL) + measured(stage::DECODE);
        if let Some(n) = stages.iter().find_map(|s| s.prefill_positions()) {
            m.prefill_positions = n;
        }
    }
    report.set_wall_s(wall.as_secs_f64());
    emit(&report, json, args.out.as_deref())?;
    Ok(spatialbot_edge::exit::OK)
}

fn emit(report: &Report, json: bool, out: Option<&Path>) -> anyhow::Result<()> {
    if json {
        super::print_json(report)?;
    } else {
        out!("{}", report.to_text());
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
        // Ctrl-C while the report is written removes the half-written temporary file.
        spatialbot_edge::fsutil::remove_temps_on_signal()
            .context("installing the SIGINT/SIGTERM cleanup")?;
        let json_path = dir.join("report.json");
        let svg_path = dir.join("latency.svg");
        spatialbot_edge::fsutil::write_atomic(
            &json_path,
            serde_json::to_string_pretty(report)?.as_bytes(),
        )
        .with_context(|| format!("cannot write {}", json_path.display()))?;
        spatialbot_edge::fsutil::write_atomic(
            &svg_path,
            bench::svg::latency_plot(report).as_bytes(),
        )
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
        if !json {
            outln!("wrote {} and {}", json_path.display(), svg_path.display());
        }
    }
    Ok(())
}

fn load_report(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("cannot read bench report {}: {e}; pass a file written by `bench --json` or `bench --out`", path.display())))?;
    Report::from_json(&text, &path.display().to_string()).map_err(bad_input)
}

fn compare(a: &Path, b: &Path, json: bool) -> anyhow::Result<u8> {
    let ra = load_report(a)?;
    let rb = load_report(b)?;
    let cmp = bench::compare(&ra, &a.display().to_string(), &rb, &b.display().to_string());
    if json {
        super::print_json(&cmp)?;
    } else {
        out!("{}", cmp.to_text());
    }
    Ok(spatialbot_edge::exit::OK)
}
