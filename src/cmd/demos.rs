//! `spatialbot-edge demos`: demonstrations of the scripted expert in the simulated world, written
//! as a dataset a behaviour-cloning trainer reads (tools/train; docs/training.md describes the
//! format).
//!
//! Each episode starts from its seed's world; at every step the colour camera renders the
//! current state (the same renderer and calibration as the `sim:` camera), the expert
//! (`sim::expert::next_action`, privileged state) labels it, and the world applies the label —
//! or, with `--noise M`, while the expert is crossing (moving 2 cm along x or y), the label plus
//! a seeded uniform error of at most M metres per axis, so the data also covers states off the
//! expert's path (the label stays the expert's action for the state reached: it is stateless,
//! so it can label any state).
//!
//! The dataset is written into a temporary sibling folder and renamed to `--out` at the end:
//! an interrupted run leaves no half dataset under the name a trainer reads.
//!
//! [`DemoWriter`] writes an episode from the world it ended in (its start state and the actions
//! applied): `demos` hands it the expert's episodes, `eval --record` a model's — the DAgger
//! data, the states the policy itself visits, each labelled with the expert's action.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use spatialbot_edge::camera::sim::calibration;
use spatialbot_edge::progress::Progress;
use spatialbot_edge::sim::render::SimRenderer;
use spatialbot_edge::sim::{expert, Rng, TaskKind, World};

use super::{bad_input, print_json};

pub const SCHEMA: &str = "spatialbot-edge/demos/1";
/// Most episodes one command writes.
pub const MAX_EPISODES: u64 = 100_000;
/// The largest `--noise`, m per axis per step (the expert's own steps are at most 2 cm).
pub const MAX_NOISE_M: f64 = 0.05;
/// The wire's default layout, the order of `action` in steps.jsonl.
pub const ACTION_LAYOUT: [&str; 8] = spatialbot_edge::link::WIRE_AXIS_NAMES;

/// Write demonstrations of the scripted expert in the simulated world (frames, actions, goals).
#[derive(clap::Args)]
pub struct Args {
    /// The task: reach, pick or place.
    #[arg(long)]
    pub task: String,
    /// Episodes to write (1..=100000); episode i uses seed SEED + i.
    #[arg(long, default_value_t = 20)]
    pub episodes: u64,
    /// The first episode's seed. Keep training seeds apart from evaluation seeds (eval uses
    /// 1000 and up in docs/simulation.md).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Colour frame size, WxH (default: the sim camera's 640x480, what the runtime's policy sees).
    #[arg(long, default_value = "640x480", value_name = "WxH")]
    pub size: String,
    /// Perturb each executed step while crossing (the expert moving 2 cm along x or y) by a seeded
    /// uniform error of at most this many metres per axis (0..=0.05); the recorded action stays
    /// the expert's.
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
}

/// One line of steps.jsonl.
#[derive(Serialize)]
struct Step<'a> {
    step: u64,
    frame: String,
    goal: &'a str,
    /// The expert's action for this frame's state, in [`ACTION_LAYOUT`].
    action: [f32; 8],
    /// What the world applied: the expert's action plus `--noise`, or (`eval --record`) the
    /// model's.
    executed: [f32; 8],
    /// The frame's state: the TCP (m), its roll, pitch, yaw (rad), the gripper value (0 closed
    /// … 1 open), whether an object is held.
    tcp: [f64; 3],
    rpy: [f64; 3],
    gripper: f64,
    held: bool,
    /// Every object's name and centre (m) in the frame's state, in the world's order (privileged
    /// state: trainers may use it for auxiliary targets; the policy never sees it).
    objects: Vec<ObjectState<'a>>,
    /// The index in `objects` of the object the goal names.
    task_object: usize,
    /// The task had succeeded after this step.
    success: bool,
}

#[derive(Serialize)]
struct ObjectState<'a> {
    name: &'a str,
    pos: [f64; 3],
}

#[derive(Serialize)]
pub struct EpisodeMeta {
    seed: u64,
    goal: String,
    steps: u64,
    success: bool,
    success_step: Option<u64>,
}

#[derive(Serialize)]
struct Meta<'a> {
    schema: &'static str,
    task: TaskKind,
    first_seed: u64,
    episodes: Vec<EpisodeMeta>,
    noise_m: f64,
    width: usize,
    height: usize,
    calibration: &'a spatialbot_edge::rgbd::Calibration,
    action_layout: [&'static str; 8],
    /// Who labelled each step (`action`).
    expert: &'static str,
    /// Who chose what the world applied (`executed`): `expert` or `model:DIR`.
    driven_by: &'a str,
    frames: &'static str,
}

fn parse_size(text: &str) -> Option<(usize, usize)> {
    let (w, h) = text.split_once('x')?;
    let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    ((16..=4096).contains(&w) && (16..=4096).contains(&h)).then_some((w, h))
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let kind: TaskKind = args
        .task
        .parse()
        .map_err(|e| bad_input(format!("--task: {e}")))?;
    super::eval::check_episodes(args.episodes, args.seed, MAX_EPISODES)?;
    let size = parse_size(&args.size).ok_or_else(|| {
        bad_input(format!(
            "--size {}: give WxH, 16..=4096 pixels each, e.g. 640x480",
            args.size
        ))
    })?;
    if !(0.0..=MAX_NOISE_M).contains(&args.noise) {
        return Err(bad_input(format!(
            "--noise {}: give metres from 0 to {MAX_NOISE_M}",
            args.noise
        )));
    }
    let mut writer = DemoWriter::create("--out", &args.out, size)?;
    let progress = Progress::new(args.episodes, &format!("demos {kind}")).with_unit("episodes");
    for i in 0..args.episodes {
        let seed = args.seed + i;
        writer.add(&expert_episode(kind, seed, args.noise))?;
        progress.inc();
    }
    progress.finish();
    let (frames, successes, episodes) = writer.finish(kind, args.seed, args.noise, "expert")?;
    let out = &args.out;
    if json {
        print_json(&serde_json::json!({
            "out": out.display().to_string(),
            "task": kind,
            "episodes": episodes,
            "successes": successes,
            "frames": frames,
        }))?;
    } else {
        outln!(
            "wrote {episodes} {kind} episodes ({successes} successful, {frames} frames) to {}",
            out.display()
        );
    }
    Ok(spatialbot_edge::exit::OK)
}

/// The expert's episode of `kind` for `seed`: labels applied as they are, or with `noise` while
/// crossing (see the module's comment).
fn expert_episode(kind: TaskKind, seed: u64, noise: f64) -> World {
    let mut world = World::new(kind, seed);
    let mut rng = Rng::new(seed ^ 0xde40_5eed);
    while !world.done() {
        let mut executed = expert::next_action(&world);
        // Only while crossing (the expert moving at full speed along x or y): near the goal and
        // while descending its labels are exact moves onto it, and an error there makes it climb
        // back to its safe height (over and over: no episode would end).
        let transit = executed[..2]
            .iter()
            .any(|v| f64::from(v.abs()) >= expert::MAX_STEP_M - 1e-6);
        if noise > 0.0 && transit {
            for v in executed.iter_mut().take(3) {
                *v += rng.range(-noise, noise) as f32;
            }
        }
        world.apply(&executed);
    }
    world
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("writing {}: {e}", path.display())
}

/// A demonstrations dataset being written: into a temporary sibling folder of `out`, renamed to
/// `out` by [`DemoWriter::finish`]; dropped unfinished, it removes the temporary folder.
pub struct DemoWriter {
    out: PathBuf,
    tmp: PathBuf,
    size: (usize, usize),
    renderer: SimRenderer,
    episodes: Vec<EpisodeMeta>,
    finished: bool,
}

impl DemoWriter {
    /// Refuses an `out` (given by `flag`) that is a file or a folder with something in it
    /// (exit 2).
    pub fn create(flag: &str, out: &Path, (width, height): (usize, usize)) -> anyhow::Result<Self> {
        if out.is_file() || out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
            return Err(bad_input(format!(
                "{flag} {}: exists and is not an empty folder",
                out.display()
            )));
        }
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "demos".into());
        let tmp = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            size: (width, height),
            renderer: SimRenderer::new(&calibration(width, height)),
            episodes: Vec::new(),
            finished: false,
        })
    }

    /// Writes the episode that ended in `end`: replayed from its start state, every state's
    /// colour frame, the expert's label for it, and the action the world applied.
    pub fn add(&mut self, end: &World) -> anyhow::Result<()> {
        let folder = self.tmp.join("episodes").join(end.seed.to_string());
        if folder.exists() {
            return Err(anyhow::anyhow!(
                "{}: a second episode with seed {}",
                self.out.display(),
                end.seed
            ));
        }
        let color = folder.join("color");
        std::fs::create_dir_all(&color).map_err(|e| io_err(&color, e))?;
        let goal = end.task.goal.clone();
        let mut world = end.replay(0);
        let mut lines = Vec::new();
        for (step, executed) in (0u64..).zip(end.applied.iter()) {
            let frame = format!("color/{step:06}.png");
            let path = folder.join(&frame);
            spatialbot_edge::imageio::write_rgb_png(&path, &self.renderer.color(&world))
                .map_err(|e| io_err(&path, e))?;
            let action = expert::next_action(&world);
            let g = world.gripper.clone();
            let objects: Vec<(String, [f64; 3])> = world
                .objects
                .iter()
                .map(|o| (o.name.clone(), o.pos))
                .collect();
            world.apply(executed);
            let line = Step {
                step,
                frame,
                goal: &goal,
                action,
                executed: *executed,
                tcp: g.pos,
                rpy: g.rpy,
                gripper: g.opening,
                held: g.held.is_some(),
                objects: objects
                    .iter()
                    .map(|(name, pos)| ObjectState { name, pos: *pos })
                    .collect(),
                task_object: world.task.object,
                success: world.success_step.is_some(),
            };
            serde_json::to_writer(&mut lines, &line)?;
            lines.push(b'\n');
        }
        let path = folder.join("steps.jsonl");
        spatialbot_edge::fsutil::write_atomic_with(&path, |f| f.write_all(&lines))
            .map_err(|e| io_err(&path, e))?;
        self.episodes.push(EpisodeMeta {
            seed: end.seed,
            goal,
            steps: end.steps,
            success: end.success_step.is_some(),
            success_step: end.success_step,
        });
        Ok(())
    }

    /// Writes meta.json and renames the dataset to its name; returns (frames, successful
    /// episodes, episodes).
    pub fn finish(
        mut self,
        kind: TaskKind,
        first_seed: u64,
        noise_m: f64,
        driven_by: &str,
    ) -> anyhow::Result<(u64, usize, usize)> {
        let calib = calibration(self.size.0, self.size.1);
        let episodes = std::mem::take(&mut self.episodes);
        let meta = Meta {
            schema: SCHEMA,
            task: kind,
            first_seed,
            episodes,
            noise_m,
            width: self.size.0,
            height: self.size.1,
            calibration: &calib,
            action_layout: ACTION_LAYOUT,
            expert: "sim::expert::next_action",
            driven_by,
            frames: "episodes/SEED/color/NNNNNN.png: the colour frame before step NNNNNN",
        };
        let path = self.tmp.join("meta.json");
        spatialbot_edge::fsutil::write_atomic(
            &path,
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )
        .map_err(|e| io_err(&path, e))?;
        let out = &self.out;
        if out.is_dir() {
            std::fs::remove_dir(out).map_err(|e| {
                anyhow::anyhow!("replacing the empty folder {}: {e}", out.display())
            })?;
        }
        std::fs::rename(&self.tmp, out).map_err(|e| {
            anyhow::anyhow!("renaming {} to {}: {e}", self.tmp.display(), out.display())
        })?;
        self.finished = true;
        let frames = meta.episodes.iter().map(|e| e.steps).sum();
        let successes = meta.episodes.iter().filter(|e| e.success).count();
        Ok((frames, successes, meta.episodes.len()))
    }
}

impl Drop for DemoWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
