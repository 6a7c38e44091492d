//! `spatialbot-edge run`: the control loop, camera → policy → safety governor → arm.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use spatialbot_edge::config::Board;
use spatialbot_edge::link::LinkSpec;
use spatialbot_edge::pipeline::LoopConfig;
use spatialbot_edge::telemetry::{stage, HostInfo, ModelRun};

use super::assemble::{self, Assembled, AssembledLoop, LoopRequest, Replay, Startup};
use super::{bad_input, print_json};

/// Steps `run` takes when neither --steps nor --duration is given, so the README's first
/// command ends by itself.
const DEFAULT_STEPS: u64 = 20;
/// The generation deadline when --generate-deadline-ms is not given: far above a full-size
/// model's step on a Jetson CPU (seconds), far below "hung".
const DEFAULT_GENERATE_DEADLINE_MS: u64 = 30_000;
const DEFAULT_GOAL: &str = "pick up the red cube";

#[derive(clap::Args)]
pub struct Args {
    /// Board profile (TOML). Default: the dev profile.
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
    /// Camera: realsense[:SERIAL], v4l2:/dev/videoN, replay:PATH, synthetic, sim:TASK. Default: a
    /// RealSense camera if one is attached, else the simulated world's reach task
    /// (sim:reach,seed=1000; the sample recording is `replay,loop:tests/data/sample`).
    #[arg(long, value_name = "SPEC")]
    pub camera: Option<String>,
    /// Policy model folder. Default: models/sim-policy on a sim: camera, else the profile's
    /// models.policy (models/tiny-policy).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Link to the arm controller: serial:/dev/ttyACM0@921600, pty:PATH, sim. Default: sim.
    #[arg(long, value_name = "SPEC")]
    pub link: Option<String>,
    /// Stop after this many policy steps (at most 1000000000). Default: 20 when --duration is
    /// not given either; on a sim: camera, when the world's episode ends.
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
    /// Let a step act on a frame captured before the previous step's action reached the arm
    /// (the newest frame when the model asks for one). Default: the loop waits for a frame
    /// taken after it, so each step sees what its last action did; with a model slower than
    /// the camera this costs up to one frame period per step.
    #[arg(long, conflicts_with = "every_frame")]
    pub frames_before_action: bool,
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
    /// Constrained decoding of the policy's answers (a well-formed action list of the
    /// manifest's length, each value in range; docs/decoding.md). Default: the board's
    /// `models.constrain` (on in the shipped profiles).
    #[arg(long, value_name = "on|off")]
    pub constrain: Option<super::OnOff>,
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
    assemble::apply_guard_flags(&mut board, args.guard, args.no_guard)?;
    check_flag_limits(&args)?;
    let mut startup = Startup::new(process_start);
    startup.phase("board profile");
    let mut cfg = loop_config(&args, &board)?;
    cfg.process_start = Some(process_start);
    // No camera named, none attached: the closed loop in the simulated world.
    let camera = args
        .camera
        .clone()
        .or_else(|| assemble::run_default_camera(&board, args.camera.as_deref()));
    let (camera_arg, camera_spec) =
        assemble::camera_spec(&board, camera.as_deref(), Replay::RealTime)?;
    let sim_world = match &camera_spec {
        spatialbot_edge::camera::CameraSpec::Sim(sim) => Some(sim.world.clone()),
        _ => None,
    };
    if sim_world.is_some() {
        assemble::sim_world_guard(&mut board);
    }
    let (model_dir, note) = match (&sim_world, args.model.as_deref()) {
        // The simulated world's policy is the one trained there.
        (Some(_), None) => match assemble::shipped_sim_policy() {
            Some(dir) => (dir, None),
            None => assemble::policy_dir(&board, None)?,
        },
        (_, model) => assemble::policy_dir(&board, model)?,
    };
    if let Some(note) = note {
        tracing::info!("{note}");
    }
    if let Some(world) = &sim_world {
        let w = world.lock();
        // The simulated world names its own goal unless --goal says otherwise.
        if args.goal == DEFAULT_GOAL {
            cfg.goal = w.task.goal.clone();
        }
        // The world ends the episode (success, terminate, its step limit) and the camera with
        // it; this bounds a loop whose steps all hold.
        if args.steps.is_none() && args.duration.is_none() {
            cfg.steps = Some(2 * w.step_limit + 10);
        }
    }
    let link_arg = args.link.clone().unwrap_or_else(|| board.link.cli_spec());
    let link_spec: LinkSpec = link_arg.parse().map_err(bad_input)?;
    tracing::info!(board = %board.name, model = %model_dir.display(), camera = %camera_arg, link = %link_arg, "starting the control loop");

    let request = LoopRequest {
        board: &board,
        model_dir: &model_dir,
        camera: &camera_spec,
        link: &link_spec,
        link_config: board.link_config().map_err(bad_input)?,
        signal: signal.clone(),
        constrain: args.constrain.map(super::OnOff::is_on),
    };
    let assembled = match assemble::assemble_loop(request, &mut startup)? {
        Assembled::Ready(assembled) => assembled,
        Assembled::Interrupted(phase) => {
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
    // A signal from here on reaches the loop: it sends no Action and stops the arm.
    let AssembledLoop {
        spec,
        parts,
        backend,
        model_name,
        model_load_ms,
        remote,
    } = *assembled;
    let images_per_frame = spec.images_per_frame() as u64;
    let mut summary =
        spatialbot_edge::pipeline::run_loop(parts, &spec, &cfg, signal).map_err(bad_input)?;
    summary.startup.phases = startup.phases;
    summary.command = "run".to_string();
    summary.board = board.name.clone();
    summary.board_file = board.source.display().to_string();
    summary.camera = camera_arg;
    summary.host = HostInfo::read();
    summary.graphs = assemble::graph_backends(&backend);
    summary.remote = remote
        .map(|r| serde_json::to_value(r.counts()))
        .transpose()?;
    let count = |name: &str| summary.stages.get(name).map_or(0, |s| s.count);
    summary.model = Some(ModelRun {
        dir: model_dir.display().to_string(),
        name: model_name,
        kind: "policy".to_string(),
        backend,
        load_ms: model_load_ms,
        images_per_frame,
        prefill_positions: 0,
        generated_tokens: count(stage::PREFILL) + count(stage::DECODE),
    });
    let episode = sim_world.map(|w| SimEpisode::of(&w.snapshot()));
    if json {
        let mut value = serde_json::to_value(&summary)?;
        if let (Some(map), Some(e)) = (value.as_object_mut(), &episode) {
            map.insert("sim".into(), serde_json::to_value(e)?);
        }
        print_json(&value)?;
    } else {
        let mut text = summary.to_text();
        if let Some(e) = &episode {
            text.push_str(&e.to_text());
        }
        // Not eprint!: a closed stderr must not replace the loop's exit code with a panic.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
    }
    Ok(summary.exit_code)
}

/// How the simulated world's episode ended (`run` on a `sim:` camera): `sim` in --json.
#[derive(serde::Serialize)]
struct SimEpisode {
    task: spatialbot_edge::sim::TaskKind,
    seed: u64,
    goal: String,
    success: bool,
    /// Actions the world applied.
    steps: u64,
    /// The step at which the task succeeded.
    success_step: Option<u64>,
    step_limit: u64,
    /// `success`, `terminated`, `step_limit`, or `running` when the loop stopped first.
    end: &'static str,
    /// The gripper's distance to the task's object at the end, m.
    final_distance_m: f64,
}

impl SimEpisode {
    fn of(w: &spatialbot_edge::sim::World) -> Self {
        let end = if w.success_step.is_some() {
            "success"
        } else if w.terminated {
            "terminated"
        } else if w.steps >= w.step_limit {
            "step_limit"
        } else {
            "running"
        };
        Self {
            task: w.task.kind,
            seed: w.seed,
            goal: w.task.goal.clone(),
            success: w.success_step.is_some(),
            steps: w.steps,
            success_step: w.success_step,
            step_limit: w.step_limit,
            end,
            final_distance_m: w.object().distance(w.gripper.pos),
        }
    }

    fn to_text(&self) -> String {
        let what = format!("sim {} (seed {}): \"{}\"", self.task, self.seed, self.goal);
        match (self.success_step, self.end) {
            (Some(n), _) => format!("{what}: succeeded in {n} steps\n"),
            (None, "running") => format!(
                "{what}: not done: the loop stopped after {} applied actions (gripper {:.3} m from the object)\n",
                self.steps, self.final_distance_m
            ),
            (None, end) => format!(
                "{what}: failed ({end} after {} steps; gripper {:.3} m from the object)\n",
                self.steps, self.final_distance_m
            ),
        }
    }
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
        frame_after_action: !args.frames_before_action,
        stage_deadline: Some(Duration::from_millis(args.generate_deadline_ms)),
        status_line: std::io::stderr().is_terminal(),
        ..LoopConfig::default()
    })
}
