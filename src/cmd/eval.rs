//! `spatialbot-edge eval`: closed-loop success rate in the simulated world (`crate::sim`).
//!
//! N seeded episodes of one task (episode i uses seed S + i), each ending on success, on
//! terminate = 1, or at the task's step limit. The policy under test is the scripted expert, a
//! do-nothing policy, or a policy model folder; for a model each episode drives the real control
//! loop (`pipeline::run_loop`, assembled as `run` assembles it: camera `sim:TASK,seed=N`, link
//! `sim`, the board's governor), and the expert (ceiling) and do-nothing (floor) run on the same
//! seeds. docs/simulation.md describes the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use spatialbot_edge::camera::CameraSpec;
use spatialbot_edge::config::Board;
use spatialbot_edge::link::LinkSpec;
use spatialbot_edge::pipeline::LoopConfig;
use spatialbot_edge::progress::Progress;
use spatialbot_edge::sim::{expert, render, TaskKind, World};

use super::assemble::{self, Assembled, AssembledLoop, LoopRequest, Startup};
use super::{bad_input, print_json};

/// Most episodes one eval runs.
pub const MAX_EPISODES: u64 = 100_000;
pub const SCHEMA: &str = "spatialbot-edge/eval/1";

#[derive(clap::Args)]
pub struct Args {
    /// The task: reach, pick or place.
    #[arg(long)]
    pub task: String,
    /// Episodes to run (1..=100000); episode i uses seed SEED + i.
    #[arg(long, default_value_t = 20)]
    pub episodes: u64,
    /// The first episode's seed (0..=18446744073709551615).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub seed: u64,
    /// The policy under test: `expert` (scripted, privileged state), `none` (does nothing), or
    /// a policy model folder driven through the real control loop.
    #[arg(
        long,
        visible_alias = "model",
        default_value = "expert",
        value_name = "expert|none|MODEL_DIR"
    )]
    pub policy: String,
    /// Write report.json, a top-down picture per episode (episodes/POLICY-SEED.png) and a
    /// contact sheet of the camera's view per episode of the policy under test
    /// (episodes/POLICY-SEED-frames.png) here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Board profile for a model's loop (backend, governor limits, link). Default: the dev
    /// profile.
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
    /// Extra options of the model loop's camera, appended to `sim:TASK,seed=N`, e.g.
    /// `size=320x240@15`, `fast` or `noise`.
    #[arg(long, value_name = "OPTIONS")]
    pub camera_options: Option<String>,
    /// Constrained decoding of a model's answers (docs/decoding.md). Default: the board's
    /// `models.constrain`.
    #[arg(long, value_name = "on|off")]
    pub constrain: Option<super::OnOff>,
    /// Also write a policy model's episodes as a demonstrations dataset (docs/training.md):
    /// the states the policy itself visited, each labelled with the expert's action (DAgger's
    /// data; `executed` is what the model did). The folder must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Ask the board's [guard] question in a model's loop even where the profile has
    /// `enabled = false` (the dev profile: "Can the gripper close now?" before every gripper
    /// close). A guard that names no model of its own asks models/sim-spatialbot. Its vetoes are
    /// counted under held steps (`guard_veto`).
    #[arg(long, conflicts_with = "no_guard")]
    pub guard: bool,
    /// Do not ask the board's [guard] question.
    #[arg(long)]
    pub no_guard: bool,
}

/// One episode's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Episode {
    pub seed: u64,
    pub goal: String,
    pub success: bool,
    /// Actions the world applied.
    pub steps: u64,
    /// The step at which the task succeeded.
    pub success_step: Option<u64>,
    /// `success`, `terminated` (terminate = 1 before success), `step_limit`, or for a model the
    /// loop's stop reason when it ended before the world did.
    pub end: String,
    /// Wall time of the episode: for a model the control loop's (start-up excluded).
    pub seconds: f64,
    /// The gripper's distance to the task's object at the end, m.
    pub final_distance_m: f64,
    /// A model's loop: policy steps, actions sent, steps held by reason, loop rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions_sent: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub holds: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_fps: Option<f64>,
    /// A model's loop: each stage's median latency in this episode, ms.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_p50_ms: BTreeMap<String, f64>,
}

/// One policy over all episodes.
#[derive(Clone, Debug, Serialize)]
pub struct PolicySummary {
    pub policy: String,
    pub episodes: u64,
    pub successes: u64,
    pub success_rate: f64,
    /// 95 % Wilson score interval of the success rate.
    pub ci95: [f64; 2],
    /// Over the successful episodes; `None` without one.
    pub mean_steps_to_success: Option<f64>,
    pub mean_seconds_to_success: Option<f64>,
    /// How episodes ended, counted.
    pub ends: BTreeMap<String, u64>,
    /// A model's held steps by reason, over all episodes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub holds: BTreeMap<String, u64>,
    /// A model's loop: each stage's median latency, averaged over the episodes, ms.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_p50_ms: BTreeMap<String, f64>,
    pub per_episode: Vec<Episode>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub schema: String,
    pub task: TaskKind,
    pub first_seed: u64,
    pub episodes: u64,
    pub step_limit: u64,
    /// The policy under test.
    pub policy: PolicySummary,
    /// The scripted expert on the same seeds: the ceiling.
    pub expert: PolicySummary,
    /// Doing nothing on the same seeds: the floor.
    pub none: PolicySummary,
    /// An episode interrupted by SIGINT/SIGTERM (the report covers the episodes before it).
    pub interrupted: bool,
    /// The SpatialBot guard in the model's loop; absent when it was off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<EvalGuard>,
}

/// The guard a model's loop asked before acting (the board's `[guard]`).
#[derive(Clone, Debug, Serialize)]
pub struct EvalGuard {
    pub model: String,
    pub question: String,
}

/// The 95 % Wilson score interval for `k` successes in `n` trials.
pub fn wilson95(k: u64, n: u64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let z = 1.959_963_984_540_054_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // Exact at the ends (rounding would leave 0.9999999999999999 for k = n).
    let lo = if k == 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    [lo, hi]
}

fn summarise(policy: &str, episodes: Vec<Episode>) -> PolicySummary {
    let n = episodes.len() as u64;
    let wins: Vec<&Episode> = episodes.iter().filter(|e| e.success).collect();
    let k = wins.len() as u64;
    let mean = |f: &dyn Fn(&Episode) -> f64| {
        (!wins.is_empty()).then(|| wins.iter().map(|e| f(e)).sum::<f64>() / wins.len() as f64)
    };
    let mut ends = BTreeMap::new();
    let mut holds = BTreeMap::new();
    let mut stages: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    for e in &episodes {
        *ends.entry(e.end.clone()).or_insert(0) += 1;
        for (r, c) in &e.holds {
            *holds.entry(r.clone()).or_insert(0) += c;
        }
        for (stage, ms) in &e.stage_p50_ms {
            let s = stages.entry(stage.clone()).or_insert((0.0, 0));
            *s = (s.0 + ms, s.1 + 1);
        }
    }
    let stage_p50_ms = stages
        .into_iter()
        .map(|(k, (sum, n))| (k, sum / f64::from(n.max(1))))
        .collect();
    PolicySummary {
        policy: policy.to_string(),
        episodes: n,
        successes: k,
        success_rate: if n == 0 { 0.0 } else { k as f64 / n as f64 },
        ci95: wilson95(k, n),
        mean_steps_to_success: mean(&|e| e.success_step.unwrap_or(e.steps) as f64),
        mean_seconds_to_success: mean(&|e| e.seconds),
        ends,
        holds,
        stage_p50_ms,
        per_episode: episodes,
    }
}

fn world_end(w: &World) -> &'static str {
    if w.success_step.is_some() {
        "success"
    } else if w.terminated {
        "terminated"
    } else {
        "step_limit"
    }
}

fn episode_of(w: &World, seconds: f64) -> Episode {
    Episode {
        seed: w.seed,
        goal: w.task.goal.clone(),
        success: w.success_step.is_some(),
        steps: w.steps,
        success_step: w.success_step,
        end: world_end(w).to_string(),
        seconds,
        final_distance_m: w.object().distance(w.gripper.pos),
        loop_steps: None,
        actions_sent: None,
        holds: BTreeMap::new(),
        loop_fps: None,
        stage_p50_ms: BTreeMap::new(),
    }
}

/// The model loop's camera for one episode: `sim:TASK,seed=N` and `--camera-options`.
fn sim_camera(kind: TaskKind, seed: u64, options: Option<&str>) -> anyhow::Result<CameraSpec> {
    let mut text = format!("sim:{kind},seed={seed}");
    if let Some(extra) = options.filter(|o| !o.is_empty()) {
        text = format!("{text},{extra}");
    }
    text.parse()
        .map_err(|e| bad_input(format!("--camera-options: {e}")))
}

/// The start state of an episode: the seed's, or the world file's (`world=FILE` in
/// `--camera-options`).
fn start_world(kind: TaskKind, seed: u64, options: Option<&str>) -> anyhow::Result<World> {
    match sim_camera(kind, seed, options)? {
        CameraSpec::Sim(sim) => Ok(sim.world.snapshot()),
        other => Err(anyhow::anyhow!("{other:?} is not a sim camera")),
    }
}

/// An episode of a policy that reads the world directly (the expert, doing nothing).
fn scripted(mut w: World, policy: impl Fn(&World) -> [f32; 8]) -> (World, Episode) {
    let started = Instant::now();
    while !w.done() {
        let a = policy(&w);
        w.apply(&a);
    }
    let e = episode_of(&w, started.elapsed().as_secs_f64());
    (w, e)
}

enum Candidate {
    Expert,
    Nothing,
    Model(Box<ModelRunner>),
}

/// What a model's episodes share: the board, the policy loaded once, the signal flag.
struct ModelRunner {
    board: Board,
    dir: PathBuf,
    policy: Option<assemble::LoadedPolicy>,
    /// The board's guard, loaded with the policy; `None` when it is off.
    guard: Option<assemble::LoadedGuard>,
    camera_options: Option<String>,
    signal: std::sync::Arc<std::sync::atomic::AtomicBool>,
    constrain: Option<bool>,
}

impl ModelRunner {
    /// One episode through the real control loop; `None` when a signal interrupted it.
    fn episode(&self, kind: TaskKind, seed: u64) -> anyhow::Result<Option<(World, Episode)>> {
        let started = Instant::now();
        let camera = sim_camera(kind, seed, self.camera_options.as_deref())?;
        let CameraSpec::Sim(sim) = &camera else {
            return Err(anyhow::anyhow!("{camera:?} is not a sim camera"));
        };
        let world = sim.world.clone();
        let goal = world.lock().task.goal.clone();
        let link = LinkSpec::Sim;
        let request = LoopRequest {
            board: &self.board,
            model_dir: &self.dir,
            camera: &camera,
            link: &link,
            link_config: self.board.link_config().map_err(bad_input)?,
            signal: self.signal.clone(),
            constrain: self.constrain,
        };
        let mut startup = Startup::new(started);
        let Some(policy) = self.policy.as_ref() else {
            return Err(anyhow::anyhow!("the policy model is not loaded"));
        };
        let assembled = match assemble::attach(policy, self.guard.as_ref(), request, &mut startup)?
        {
            Assembled::Ready(a) => a,
            Assembled::Interrupted(_) => return Ok(None),
        };
        let AssembledLoop { spec, parts, .. } = *assembled;
        let max_age_ms = u64::from(self.board.safety.max_age_ms);
        let cfg = LoopConfig {
            goal,
            // The world ends the episode at its step limit (the camera then ends); this bounds a
            // loop whose steps all hold.
            steps: Some(2 * kind.step_limit() + 10),
            max_frame_age: Duration::from_millis(max_age_ms),
            camera_stall_stop: Duration::from_millis(2 * max_age_ms),
            stage_deadline: Some(Duration::from_secs(30)),
            ..LoopConfig::default()
        };
        let report = spatialbot_edge::pipeline::run_loop(parts, &spec, &cfg, self.signal.clone())
            .map_err(bad_input)?;
        if self.signal.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let w = world.snapshot();
        let mut e = episode_of(&w, started.elapsed().as_secs_f64());
        // The loop ended before the world did (a link fault, a stalled camera, its own step
        // bound): say why.
        if !w.done() {
            e.end = format!("loop_{}", report.stop_reason);
        }
        // The loop's own time, without loading the model.
        e.seconds = report.wall_s;
        e.loop_steps = Some(report.steps);
        e.actions_sent = Some(report.actions_sent);
        e.holds = report.holds.clone();
        e.loop_fps = Some(report.fps);
        e.stage_p50_ms = report
            .stages
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| (s.name.clone(), s.p50_ms))
            .collect();
        Ok(Some((w, e)))
    }
}

/// `--episodes` within 1..=`max`, and every episode's seed (`seed` + i) a u64: exit 2 naming
/// the flag otherwise. The one check of `eval`, `demos` and `guard-eval`.
pub fn check_episodes(episodes: u64, seed: u64, max: u64) -> anyhow::Result<()> {
    spatialbot_edge::limits::check_count("--episodes", "", episodes, 1, max).map_err(bad_input)?;
    if seed.checked_add(episodes).is_none() {
        return Err(bad_input(format!(
            "--seed {seed}: the episodes' seeds SEED..SEED+{episodes} overflow; give a smaller seed"
        )));
    }
    Ok(())
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let kind: TaskKind = args
        .task
        .parse()
        .map_err(|e| bad_input(format!("--task: {e}")))?;
    check_episodes(args.episodes, args.seed, MAX_EPISODES)?;
    let mut candidate = match args.policy.as_str() {
        "expert" => Candidate::Expert,
        "none" => Candidate::Nothing,
        dir => {
            let dir = PathBuf::from(dir);
            if !dir.join("manifest.toml").is_file() {
                return Err(bad_input(format!(
                    "--policy {}: not `expert`, `none`, or a model folder with a manifest.toml",
                    dir.display()
                )));
            }
            Candidate::Model(Box::new(ModelRunner {
                board: Board::default_dev().map_err(bad_input)?,
                dir,
                policy: None,
                guard: None,
                camera_options: args.camera_options.clone(),
                signal: spatialbot_edge::link::signals::shutdown_flag()?,
                constrain: args.constrain.map(super::OnOff::is_on),
            }))
        }
    };
    if args.record.is_some() && !matches!(candidate, Candidate::Model(_)) {
        return Err(bad_input(
            "--record: records a policy model's episodes (DAgger); for the expert's, use `demos`",
        ));
    }
    if args.record.is_some() && args.record == args.out {
        return Err(bad_input(
            "--record and --out name the same folder; give two",
        ));
    }
    // A bad --camera-options (a world file that makes no sense) fails here, before anything runs.
    let options = args.camera_options.as_deref();
    let CameraSpec::Sim(first) = sim_camera(kind, args.seed, options)? else {
        return Err(bad_input("--camera-options: not options of a sim camera"));
    };
    // Recorded frames have the camera's size: what the policy saw.
    let mut record = match &args.record {
        Some(dir) => Some(super::demos::DemoWriter::create(
            "--record",
            dir,
            (first.width, first.height),
        )?),
        None => None,
    };
    if let Some(out) = &args.out {
        if out.is_file() {
            return Err(bad_input(format!(
                "--out {}: is a file; give a folder",
                out.display()
            )));
        }
    }
    if let Candidate::Model(runner) = &mut candidate {
        if let Some(path) = &args.board {
            runner.board = Board::load(path).map_err(bad_input)?;
        }
        assemble::apply_guard_flags(&mut runner.board, args.guard, args.no_guard)?;
        assemble::sim_world_guard(&mut runner.board);
        // Loaded once, before any episode: a bad folder fails here, and no episode pays for
        // loading it.
        let mut startup = Startup::new(Instant::now());
        runner.policy = Some(assemble::load_policy(
            &runner.board,
            &runner.dir,
            &mut startup,
        )?);
        runner.guard = assemble::load_guard(&runner.board, &mut startup)?;
    } else if args.guard {
        return Err(bad_input(
            "--guard: asked in a policy model's loop; the expert and `none` have none",
        ));
    }
    let seeds: Vec<u64> = (0..args.episodes).map(|i| args.seed + i).collect();
    let n = args.episodes;
    let total = match candidate {
        Candidate::Model(_) => 3 * n,
        _ => 2 * n,
    };
    let progress = Progress::new(total, &format!("eval {kind}")).with_unit("episodes");
    let mut pictures: Vec<(String, World, World)> = Vec::new();
    let keep_pictures = args.out.is_some();
    let mut run_scripted =
        |label: &str, policy: &dyn Fn(&World) -> [f32; 8]| -> anyhow::Result<Vec<Episode>> {
            let mut out = Vec::new();
            for &seed in &seeds {
                let (w, e) = scripted(start_world(kind, seed, options)?, policy);
                if keep_pictures {
                    pictures.push((label.to_string(), w.replay(0), w));
                }
                out.push(e);
                progress.inc();
            }
            Ok(out)
        };
    let expert_episodes = run_scripted("expert", &expert::next_action)?;
    let none_episodes = run_scripted("none", &|_| expert::HOLD_STILL)?;
    let mut interrupted = false;
    let policy = match &candidate {
        Candidate::Expert => summarise("expert", expert_episodes.clone()),
        Candidate::Nothing => summarise("none", none_episodes.clone()),
        Candidate::Model(runner) => {
            let mut episodes = Vec::new();
            for &seed in &seeds {
                match runner.episode(kind, seed)? {
                    Some((w, e)) => {
                        if let Some(r) = record.as_mut() {
                            r.add(&w)?;
                        }
                        if keep_pictures {
                            pictures.push(("model".into(), w.replay(0), w));
                        }
                        episodes.push(e);
                    }
                    None => {
                        interrupted = true;
                        break;
                    }
                }
                progress.inc();
            }
            summarise(&format!("model:{}", runner.dir.display()), episodes)
        }
    };
    progress.finish();
    let report = EvalReport {
        schema: SCHEMA.to_string(),
        task: kind,
        first_seed: args.seed,
        episodes: n,
        step_limit: kind.step_limit(),
        policy,
        expert: summarise("expert", expert_episodes),
        none: summarise("none", none_episodes),
        interrupted,
        guard: match &candidate {
            Candidate::Model(runner) => runner.guard.as_ref().map(|g| EvalGuard {
                model: g.dir.display().to_string(),
                question: g.config().question.clone(),
            }),
            _ => None,
        },
    };
    if let Some(dir) = &args.out {
        write_out(dir, &report, &pictures)?;
    }
    // An interrupted eval keeps the episodes it finished (each is whole).
    if let (Some(r), Candidate::Model(runner)) = (record, &candidate) {
        let driven_by = format!("model:{}", runner.dir.display());
        let (frames, _, episodes) = r.finish(kind, args.seed, 0.0, &driven_by)?;
        if !json {
            outln!(
                "recorded {episodes} episodes ({frames} frames, labelled by the expert) to {}",
                args.record.as_deref().unwrap_or(Path::new("")).display()
            );
        }
    }
    if json {
        print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(spatialbot_edge::exit::OK)
}

fn write_out(
    dir: &Path,
    report: &EvalReport,
    pictures: &[(String, World, World)],
) -> anyhow::Result<()> {
    let pics = dir.join("episodes");
    std::fs::create_dir_all(&pics)
        .map_err(|e| bad_input(format!("--out {}: cannot create it: {e}", dir.display())))?;
    for (label, start, end) in pictures {
        let path = pics.join(format!("{label}-{}.png", end.seed));
        spatialbot_edge::imageio::write_rgb_png(&path, &render::top_down(start, end))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // The policy under test's episodes (the expert's when it is the one under test): the world
    // replays the actions it applied to show what its camera saw.
    let renderer =
        render::SimRenderer::new(&spatialbot_edge::camera::sim::calibration(SHEET_W, SHEET_H));
    let under_test = if pictures.iter().any(|(l, _, _)| l == "model") {
        "model"
    } else {
        report.policy.policy.as_str()
    };
    for (label, _, end) in pictures.iter().filter(|(l, _, _)| l == under_test) {
        let path = pics.join(format!("{label}-{}-frames.png", end.seed));
        let sheet = contact_sheet(&renderer, end);
        spatialbot_edge::imageio::write_rgb_png(&path, &sheet)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    let path = dir.join("report.json");
    spatialbot_edge::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// A contact sheet's tiles: 4 × 2 colour frames of 160 × 120.
const SHEET_W: usize = 160;
const SHEET_H: usize = 120;
const SHEET_COLS: usize = 4;
const SHEET_ROWS: usize = 2;

/// The colour camera's view at 8 evenly spaced steps of an episode that ended in `end`, from
/// its start to its end, left to right and top to bottom (replayed from the actions it applied).
fn contact_sheet(renderer: &render::SimRenderer, end: &World) -> spatialbot_edge::rgbd::RgbImage {
    let tiles = (SHEET_COLS * SHEET_ROWS) as u64;
    let steps = end.applied.len() as u64;
    let (w, h) = (SHEET_W * SHEET_COLS, SHEET_H * SHEET_ROWS);
    let mut data = vec![0u8; w * h * 3];
    let mut world = end.replay(0);
    for tile in 0..tiles {
        let at_step = steps * tile / (tiles - 1).max(1);
        for a in end
            .applied
            .iter()
            .take(at_step as usize)
            .skip(world.applied.len())
        {
            world.apply(a);
        }
        let frame = renderer.color(&world);
        let (col, row) = (tile as usize % SHEET_COLS, tile as usize / SHEET_COLS);
        for y in 0..SHEET_H {
            let src = &frame.data[y * SHEET_W * 3..(y + 1) * SHEET_W * 3];
            let at = ((row * SHEET_H + y) * w + col * SHEET_W) * 3;
            if let Some(dst) = data.get_mut(at..at + SHEET_W * 3) {
                dst.copy_from_slice(src);
            }
        }
    }
    spatialbot_edge::rgbd::RgbImage::new(w, h, data)
        .unwrap_or_else(|| spatialbot_edge::rgbd::RgbImage::filled(w, h, [0; 3]))
}

fn print_text(r: &EvalReport) {
    outln!(
        "eval {}: {} episodes from seed {} (step limit {})",
        r.task,
        r.episodes,
        r.first_seed,
        r.step_limit
    );
    outln!(
        "{:<28} {:>9} {:>7}  {:<16} {}",
        "policy",
        "success",
        "rate",
        "95% CI",
        "mean steps to success"
    );
    let mut rows = vec![(r.policy.policy.clone(), &r.policy)];
    if r.policy.policy != "expert" {
        rows.push(("expert (ceiling)".into(), &r.expert));
    }
    if r.policy.policy != "none" {
        rows.push(("none (floor)".into(), &r.none));
    }
    for (label, s) in rows {
        outln!(
            "{:<28} {:>4}/{:<4} {:>6.1}%  [{:>5.1}, {:>5.1}]   {}",
            label,
            s.successes,
            s.episodes,
            100.0 * s.success_rate,
            100.0 * s.ci95[0],
            100.0 * s.ci95[1],
            s.mean_steps_to_success
                .map_or("-".to_string(), |m| format!("{m:.1}"))
        );
    }
    if let Some(g) = &r.guard {
        outln!("guard: {:?} asked of {}", g.question, g.model);
    }
    if !r.policy.holds.is_empty() {
        let holds: Vec<String> = r
            .policy
            .holds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        outln!("held steps: {}", holds.join(", "));
    }
    // An episode the loop ended before the world did measured the loop, not the policy: say so
    // next to the rate (e.g. `fast` frames outrunning the board's rate limit hold most steps
    // until the loop's step bound ends the episode).
    let loop_ends: Vec<(&String, &u64)> = r
        .policy
        .ends
        .iter()
        .filter(|(k, _)| k.starts_with("loop_"))
        .collect();
    if !loop_ends.is_empty() {
        let n: u64 = loop_ends.iter().map(|(_, n)| **n).sum();
        let ends: Vec<String> = loop_ends.iter().map(|(k, n)| format!("{k} {n}")).collect();
        outln!(
            "warning: {n} of {} episodes ended in the loop before the world did ({}); see held steps",
            r.policy.episodes,
            ends.join(", ")
        );
    }
    if !r.policy.stage_p50_ms.is_empty() {
        let stages: Vec<String> = [
            "preprocess",
            "vision",
            "generate",
            "end_to_end",
            "step_interval",
        ]
        .iter()
        .filter_map(|k| {
            r.policy
                .stage_p50_ms
                .get(*k)
                .map(|ms| format!("{k} {ms:.1} ms"))
        })
        .collect();
        outln!("loop medians: {}", stages.join(", "));
    }
    if r.interrupted {
        outln!("interrupted: the report covers the episodes before the signal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_known_values() {
        let [lo, hi] = wilson95(10, 10);
        assert!((lo - 0.7225).abs() < 1e-3 && hi == 1.0, "{lo} {hi}");
        let [lo, hi] = wilson95(0, 10);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-3, "{lo} {hi}");
        let [lo, hi] = wilson95(5, 10);
        assert!(
            (lo - 0.2366).abs() < 1e-3 && (hi - 0.7634).abs() < 1e-3,
            "{lo} {hi}"
        );
    }
}
