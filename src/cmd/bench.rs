//! `spatialbot-edge bench`: warm-up, then N frames through the control loop's own parts —
//! the camera source, depth registration, the vision encoder, the language model, the action
//! decoding and the link with its safety governor, each assembled as `run` assembles it
//! (`assemble`) — driven one frame at a time so each stage is timed alone, into the one
//! telemetry (`spatialbot_edge::telemetry`) `run --json` reports with; or `--compare A B`.
//!
//! A SpatialBot model (which answers questions and proposes no action) runs the path `ask`
//! takes per frame instead: both images through the vision graph, then the question.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use spatialbot_edge::config::Board;
use spatialbot_edge::link::LinkSpec;
use spatialbot_edge::model::manifest::ModelKind;
use spatialbot_edge::model::{Engine, GenerateOptions, ImageEmbedding, Prompt};
use spatialbot_edge::pipeline::camera_source::{CameraFrames, DepthNeed};
use spatialbot_edge::pipeline::engine_model::{EngineModel, EngineVision};
use spatialbot_edge::pipeline::link_sink::LinkSink;
use spatialbot_edge::pipeline::vision::FrameTensors;
use spatialbot_edge::pipeline::{
    Action, ActionSink, Delivery, FrameSource, LanguageModel, StopReason, VisionEncoder,
};
use spatialbot_edge::policy::{
    action_from_answer, build_policy_prompt, EmbeddingHistory, PolicyPrompt, PolicySpec,
};
use spatialbot_edge::progress::Progress;
use spatialbot_edge::telemetry::{
    self, stage, FrameStamps, GraphBackend, HostInfo, ModelRun, Report, RunInfo, StageNotRun,
    StageRecorder,
};

use super::assemble::{self, Replay, Startup};
use super::bad_input;

const DEFAULT_GOAL: &str = "pick up the red cube";
const DEFAULT_QUESTION: &str = "What is the depth value of the object in the center of the image?";

#[derive(clap::Args)]
pub struct Args {
    /// Board profile: a file, or a shipped profile name (default: dev-x86_64).
    #[arg(long)]
    board: Option<String>,
    /// Camera SPEC (default: the profile's camera.spec; `auto` without a camera attached: the
    /// shipped sample recording, looped, as fast as the stages take it).
    #[arg(long)]
    camera: Option<String>,
    /// Model folder for the vision, prefill, decode (and, for a policy, action) stages: a
    /// policy or a SpatialBot model. Default: the profile's models.policy, else the shipped
    /// models/tiny-policy.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Measure the camera-to-link stages only, without a model (the link sends a hold-still
    /// action).
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

/// What answers each frame: the policy (through the loop's parts), a SpatialBot model (the
/// `ask` path), or nothing (`--no-model`). One per bench: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Brain {
    Policy {
        spec: PolicySpec,
        /// The policy prompt for the bench's goal, built once (the loop builds it once too).
        prompt: PolicyPrompt,
        vision: EngineVision,
        model: EngineModel,
        history: EmbeddingHistory<ImageEmbedding>,
        names: Arc<[String]>,
        unparsable: u64,
    },
    SpatialBot {
        engine: Arc<Mutex<Engine>>,
        vision: EngineVision,
        prompt: Prompt,
        options: GenerateOptions,
    },
    NoModel {
        tensors: FrameTensors,
        /// The policy's action names (all zero: hold still).
        names: Arc<[String]>,
    },
}

/// The loop's parts, driven one frame at a time.
struct Bench {
    source: CameraFrames,
    /// Whether the frames' depth is registered (`register` stage): where the model takes depth.
    register: bool,
    brain: Brain,
    /// `None` for a SpatialBot model: it proposes nothing to send.
    sink: Option<LinkSink>,
    step: u64,
    /// Actions the governor or the link held, since the last measured frame.
    held: u64,
    last_answer: String,
    prefill_positions: u64,
}

fn stage_error(e: spatialbot_edge::pipeline::StageError) -> anyhow::Error {
    anyhow::anyhow!(e)
}

fn lock(engine: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bench {
    /// The stages this bench runs, in order.
    fn stages(&self) -> Vec<&'static str> {
        let mut v = vec![stage::CAMERA];
        if self.register {
            v.push(stage::REGISTER);
        }
        v.push(stage::PREPROCESS);
        if !matches!(self.brain, Brain::NoModel { .. }) {
            v.extend([
                stage::VISION,
                stage::PREFILL,
                stage::DECODE,
                stage::GENERATE,
            ]);
        }
        if matches!(self.brain, Brain::Policy { .. }) {
            v.push(stage::ACTION);
        }
        if self.sink.is_some() {
            v.push(stage::LINK);
        }
        v
    }

    /// One frame through every stage, each marked on `stamps` as it ends; prefill and decode
    /// (inside `generate`) go to `recorder` directly when it is given.
    fn frame(
        &mut self,
        stamps: &mut FrameStamps,
        mut recorder: Option<&mut StageRecorder>,
    ) -> anyhow::Result<()> {
        let mut frame = self.source.next_frame().map_err(stage_error)?.ok_or_else(|| {
            anyhow::anyhow!("the camera source ended; use a looping recording (`replay,fast,loop:PATH`) or fewer --frames")
        })?;
        stamps.mark(stage::CAMERA);
        if self.register {
            frame
                .register_depth()
                .with_context(|| format!("registering frame {}'s depth", frame.sequence))?;
            stamps.mark(stage::REGISTER);
        }
        self.step += 1;
        let step = self.step;
        let action = match &mut self.brain {
            Brain::Policy {
                spec,
                prompt,
                vision,
                model,
                history,
                names,
                unparsable,
            } => {
                let per_frame = spec.images_per_frame();
                let mut inputs = Vec::with_capacity(per_frame);
                for image in 0..per_frame {
                    inputs.push(vision.preprocess(&frame, image).map_err(stage_error)?);
                }
                stamps.mark(stage::PREPROCESS);
                let mut inputs = inputs.into_iter();
                let images = history.step(frame.sequence, |_| {
                    let input = inputs
                        .next()
                        .context("the embedding cache asked for more images than a frame has")?;
                    let e = vision.encode(input).map_err(stage_error)?;
                    stamps.mark(stage::VISION);
                    anyhow::Ok(e)
                })?;
                let answer = model
                    .generate(prompt, &images, spec.max_new_tokens)
                    .map_err(stage_error)?;
                stamps.mark(stage::GENERATE);
                if let (Some(t), Some(r)) = (model.last_timings(), recorder.as_deref_mut()) {
                    r.record(stage::PREFILL, t.embed + t.prefill);
                    for d in &t.decode_steps {
                        r.record(stage::DECODE, *d);
                    }
                    self.prefill_positions = t.prefill_positions as u64;
                }
                let action = match action_from_answer(&spec.actions, &answer) {
                    Ok(values) => Some(Action {
                        step,
                        frame_seq: frame.sequence,
                        captured: frame.capture,
                        names: names.clone(),
                        values,
                    }),
                    Err(_) => {
                        *unparsable += 1;
                        None
                    }
                };
                stamps.mark(stage::ACTION);
                self.last_answer = answer;
                action
            }
            Brain::SpatialBot {
                engine,
                vision,
                prompt,
                options,
            } => {
                let inputs = (0..2)
                    .map(|image| vision.preprocess(&frame, image))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(stage_error)?;
                stamps.mark(stage::PREPROCESS);
                let mut images = Vec::with_capacity(2);
                for input in inputs {
                    images.push(vision.encode(input).map_err(stage_error)?);
                    stamps.mark(stage::VISION);
                }
                let generation = lock(engine).generate(prompt, &images, options, &mut |_| {})?;
                stamps.mark(stage::GENERATE);
                let t = &generation.timings;
                if let Some(r) = recorder {
                    r.record(stage::PREFILL, t.embed + t.prefill);
                    for d in &t.decode_steps {
                        r.record(stage::DECODE, *d);
                    }
                }
                self.prefill_positions = t.prefill_positions as u64;
                self.last_answer = generation.text;
                None
            }
            Brain::NoModel { tensors, names } => {
                tensors.tensor(&frame, 0).map_err(stage_error)?;
                stamps.mark(stage::PREPROCESS);
                Some(Action {
                    step,
                    frame_seq: frame.sequence,
                    captured: frame.capture,
                    names: names.clone(),
                    values: vec![0.0; names.len()],
                })
            }
        };
        if let Some(sink) = &mut self.sink {
            let now = Instant::now();
            let delivery = match &action {
                Some(a) => sink.send(a, now)?,
                None => {
                    let hold = spatialbot_edge::pipeline::Hold::UnparsableAnswer(
                        "the answer did not parse into an action".into(),
                    );
                    sink.hold(&hold, now)?;
                    Delivery::Held(hold)
                }
            };
            if matches!(delivery, Delivery::Held(_)) {
                self.held += 1;
            }
            stamps.mark(stage::LINK);
        }
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.last_answer.is_empty() {
            notes.push(format!(
                "model: the last answer was {:?}",
                self.last_answer.chars().take(120).collect::<String>()
            ));
        }
        if let Brain::Policy {
            history,
            unparsable,
            ..
        } = &self.brain
        {
            let c = history.counts();
            notes.push(format!(
                "vision: the embedding cache sent {} of the {} images the prompts referenced through the vision graph",
                c.images_encoded, c.images_referenced
            ));
            notes.push(format!(
                "action: {unparsable} answers did not parse into an action"
            ));
        }
        if let Some(sink) = &self.sink {
            notes.push(format!(
                "link: {}; {} steps held (governor or link)",
                sink.governor().counters().summary(),
                self.held
            ));
        }
        notes
    }
}

fn not_run(name: &str, why: &str) -> StageNotRun {
    StageNotRun {
        name: name.to_string(),
        why: why.to_string(),
    }
}

/// Everything `plan` assembled, with what the report says about it.
struct Plan {
    bench: Bench,
    not_run: Vec<StageNotRun>,
    notes: Vec<String>,
    model: Option<ModelRun>,
    graphs: Vec<GraphBackend>,
    /// The inference server's counters (the `triton` backend).
    remote: Option<Arc<spatialbot_edge::model::backend::RemoteStats>>,
}

/// Assembles the loop's parts for `board` as `run` does (model folder and engine, camera,
/// link), with the bench's own frames (as fast as the stages take them) and link settings.
fn plan(board: &Board, args: &Args) -> anyhow::Result<(String, Plan)> {
    let mut notes = Vec::new();
    let mut not_run_list = Vec::new();
    let (camera_text, camera) = assemble::camera_spec(board, args.camera.as_deref(), Replay::Fast)?;
    let mut startup = Startup::new(Instant::now());
    let dir = if args.no_model {
        None
    } else {
        let (dir, note) = assemble::policy_dir(board, args.model.as_deref())?;
        notes.extend(note);
        Some(dir)
    };
    let manifest = match &dir {
        Some(d) => Some(
            spatialbot_edge::model::folder::read_manifest(d)
                .map_err(|e| bad_input(format!("{e}; pass --model with a model folder")))?,
        ),
        None => None,
    };
    let kind = manifest.as_ref().map(|m| m.kind);
    // The policy whose action names and preprocessing the hold-still path uses.
    let policy_spec = match (&dir, kind) {
        (Some(d), Some(ModelKind::Policy)) => Some(assemble::load_policy_spec(d)?),
        (None, _) => {
            let (d, _) = assemble::policy_dir(board, None)?;
            Some(assemble::load_policy_spec(&d)?)
        }
        _ => None,
    };
    let takes_depth = match kind {
        Some(ModelKind::Spatialbot) => true,
        _ => policy_spec.as_ref().is_some_and(|s| s.depth),
    };
    let depth = if takes_depth {
        DepthNeed::Raw
    } else {
        DepthNeed::None
    };
    let source = CameraFrames::open(&camera, depth).map_err(bad_input)?;
    notes.push(format!("camera: {}", source.describe()));
    if !takes_depth {
        not_run_list.push(not_run(
            stage::REGISTER,
            "the model takes colour only: the loop registers no depth",
        ));
    }

    let mut model_run = None;
    let mut graphs = Vec::new();
    let mut remote = None;
    let max_new_tokens = args.max_new_tokens.map(|n| n as usize);
    let brain = match (&dir, kind) {
        (Some(dir), Some(kind)) => {
            let started = Instant::now();
            let folder = assemble::open_folder(dir, board, &mut startup).map_err(bad_input)?;
            let engine = assemble::load_engine(&folder, board, "model")?;
            let load_ms = started.elapsed().as_secs_f64() * 1e3;
            let describe = engine.describe();
            graphs = assemble::graph_backends(&describe);
            remote = engine.remote_stats();
            let v = &folder.manifest.vision;
            let tensors = FrameTensors::new(v.tower, v.image_size, v.pad_to_square)
                .map_err(|e| anyhow::anyhow!(e))?;
            notes.push(format!(
                "preprocess: {} {}x{}, pad {}, from {}",
                v.tower.name(),
                v.image_size,
                v.image_size,
                v.pad_to_square,
                dir.join("manifest.toml").display()
            ));
            let images_per_frame;
            let brain = match kind {
                ModelKind::Policy => {
                    let mut spec = policy_spec.clone().context("policy spec")?;
                    if let Some(n) = max_new_tokens {
                        spec.max_new_tokens = n;
                    }
                    images_per_frame = spec.images_per_frame();
                    let engine = Arc::new(Mutex::new(engine));
                    let names: Arc<[String]> =
                        spec.actions.dims().iter().map(|d| d.name.clone()).collect();
                    Brain::Policy {
                        prompt: build_policy_prompt(&spec, &args.goal).map_err(bad_input)?,
                        history: EmbeddingHistory::new(&spec),
                        vision: EngineVision::new(engine.clone(), tensors),
                        model: EngineModel::new(engine).with_grammar(
                            super::assemble::policy_grammar(board, None, &spec, dir)?,
                        ),
                        spec,
                        names,
                        unparsable: 0,
                    }
                }
                ModelKind::Spatialbot => {
                    images_per_frame = 2;
                    let prompt = engine.prompt(&args.question, 2)?;
                    let max = max_new_tokens.unwrap_or(folder.manifest.llm.max_new_tokens);
                    let engine = Arc::new(Mutex::new(engine));
                    not_run_list.push(not_run(
                        stage::ACTION,
                        "a SpatialBot model answers questions, it proposes no action",
                    ));
                    not_run_list.push(not_run(
                        stage::LINK,
                        "a SpatialBot model proposes no action: nothing to send",
                    ));
                    Brain::SpatialBot {
                        vision: EngineVision::new(engine.clone(), tensors),
                        engine,
                        prompt,
                        options: GenerateOptions {
                            max_new_tokens: Some(max),
                            ..GenerateOptions::default()
                        },
                    }
                }
            };
            model_run = Some(ModelRun {
                dir: dir.display().to_string(),
                name: folder.manifest.name.clone(),
                kind: kind.name().to_string(),
                backend: describe,
                load_ms,
                images_per_frame: images_per_frame as u64,
                prefill_positions: 0,
                generated_tokens: 0,
            });
            brain
        }
        _ => {
            let spec = policy_spec.clone().context("policy spec")?;
            let (d, _) = assemble::policy_dir(board, None)?;
            let m = spatialbot_edge::model::folder::read_manifest(&d).map_err(bad_input)?;
            let v = &m.vision;
            notes.push(format!(
                "preprocess: {} {}x{}, pad {}, from {} (no model runs)",
                v.tower.name(),
                v.image_size,
                v.image_size,
                v.pad_to_square,
                d.join("manifest.toml").display()
            ));
            for name in [
                stage::VISION,
                stage::PREFILL,
                stage::DECODE,
                stage::GENERATE,
                stage::ACTION,
            ] {
                not_run_list.push(not_run(name, "--no-model"));
            }
            Brain::NoModel {
                tensors: FrameTensors::new(v.tower, v.image_size, v.pad_to_square)
                    .map_err(|e| anyhow::anyhow!(e))?,
                names: spec.actions.dims().iter().map(|d| d.name.clone()).collect(),
            }
        }
    };

    // Always the simulator: a bench never moves a real arm. Frames follow each other as fast
    // as the stages take them, one at a time with no heartbeat thread beside them: the rate
    // limit (which would hold most actions and time a heartbeat instead) and the controller's
    // watchdog are off, and a frame is never too old to act on.
    let sink = match &brain {
        Brain::SpatialBot { .. } => None,
        Brain::Policy { names, .. } | Brain::NoModel { names, .. } => {
            let mut link_config = board.link_config().map_err(bad_input)?;
            link_config.watchdog_ms = u16::MAX;
            link_config.limits.min_interval_ms = 0;
            link_config.limits.max_age_ms = u32::MAX;
            link_config.reply_timeout = Duration::from_secs(3600);
            link_config.lost_link = Duration::from_secs(3600);
            notes.push(format!(
                "link: the built-in arm simulator through the loop's link sink and safety governor with {}'s limits (rate limit, frame age and the controller's watchdog off: frames come back to back)",
                board.name
            ));
            Some(
                LinkSink::open(&LinkSpec::Sim, link_config, names)
                    .context("cannot open the link to the built-in arm simulator")?,
            )
        }
    };
    let bench = Bench {
        source,
        register: takes_depth,
        brain,
        sink,
        step: 0,
        held: 0,
        last_answer: String::new(),
        prefill_positions: 0,
    };
    Ok((
        camera_text,
        Plan {
            bench,
            not_run: not_run_list,
            notes,
            model: model_run,
            graphs,
            remote,
        },
    ))
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
    let (camera, plan) = plan(&board, &args)?;
    let Plan {
        mut bench,
        not_run,
        notes,
        model,
        graphs,
        remote,
    } = plan;

    let info = RunInfo {
        command: "bench".to_string(),
        board: board.name.clone(),
        board_file: board.source.display().to_string(),
        camera,
        warmup_frames: args.warmup,
        stages_not_run: not_run,
        notes,
        host: HostInfo::read(),
        model,
    };

    // Process start → the first frame through every stage (its action sent): what a supervisor
    // waits for after a restart. Model loading (and TensorRT engine builds) are inside it.
    let mut startup = None;
    let progress = Progress::new(args.warmup, "warm-up").with_unit("frames");
    for n in 0..args.warmup {
        let mut stamps = FrameStamps::start(n);
        bench.frame(&mut stamps, None)?;
        startup = startup.or_else(telemetry::system::process_age);
        progress.inc();
    }
    bench.held = 0;
    progress.finish();

    let mut recorder = StageRecorder::new();
    recorder.declare_stages(&bench.stages());
    for g in &graphs {
        recorder.record_graph_backend(&g.graph, &g.backend, &g.provider);
    }
    let progress = Progress::new(args.frames, "measure").with_unit("frames");
    let start = Instant::now();
    for n in 0..args.frames {
        let mut stamps = FrameStamps::start(n);
        bench.frame(&mut stamps, Some(&mut recorder))?;
        startup = startup.or_else(telemetry::system::process_age);
        recorder.record_frame(&stamps);
        progress.inc();
    }
    let wall = start.elapsed();
    progress.finish();
    if bench.held > 0 {
        recorder.record_dropped(stage::LINK, bench.held);
    }
    if let Some(sink) = &mut bench.sink {
        sink.stop(StopReason::StepsDone)
            .context("the link did not shut down cleanly")?;
    }
    if let Some(d) = startup {
        recorder.record_startup(d);
    }

    let mut report = recorder.report(info);
    report.notes.extend(bench.notes());
    report.stop_reason = StopReason::StepsDone.name().to_string();
    report.stop_detail = format!("{} frames measured", args.frames);
    if let Some(sink) = &bench.sink {
        report.link = sink.outcomes();
        report.actions_sent = report.link.as_ref().map_or(0, |l| l.actions_sent);
    }
    if let Some(m) = report.model.as_mut() {
        let count = |name: &str| report.stages.get(name).map_or(0, |s| s.count);
        // Each frame's first token comes from the prefill, each later one is a decode sample.
        m.generated_tokens = count(stage::PREFILL) + count(stage::DECODE);
        m.prefill_positions = bench.prefill_positions;
    }
    report.remote = remote
        .map(|r| serde_json::to_value(r.counts()))
        .transpose()?;
    report.set_frames_measured(args.frames, wall.as_secs_f64());
    report.frames.captured = args.warmup + args.frames;
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
            telemetry::svg::latency_plot(report).as_bytes(),
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
        .map_err(|e| bad_input(format!("cannot read report {}: {e}; pass a file written by `bench --json`, `bench --out` or `run --json`", path.display())))?;
    Report::from_json(&text, &path.display().to_string()).map_err(bad_input)
}

fn compare(a: &Path, b: &Path, json: bool) -> anyhow::Result<u8> {
    let ra = load_report(a)?;
    let rb = load_report(b)?;
    let cmp = telemetry::compare(&ra, &a.display().to_string(), &rb, &b.display().to_string());
    if json {
        super::print_json(&cmp)?;
    } else {
        out!("{}", cmp.to_text());
    }
    Ok(spatialbot_edge::exit::OK)
}
