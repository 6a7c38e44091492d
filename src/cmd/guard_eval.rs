//! `spatialbot-edge guard-eval`: precision and recall of the SpatialBot guard on labelled
//! gripper-close decisions from the simulated world (docs/decoding.md, "The guard").
//!
//! Each seeded `pick` episode is played by the scripted expert up to the step where it closes
//! the gripper. Three states of it become decisions: the state the expert closes in
//! (`before_close`), the last state of the descent before it (`descending`) and one state of
//! the approach chosen by the seed (`approach`). Each state's label is the world's own
//! answer: a copy of the world closes its gripper there, and the label is "yes" when that
//! grasps the task's object. The state is rendered by the sim camera and goes through the
//! loop's own guard path (`pipeline::consult_guard`: depth registration, the SpatialBot model
//! with its Depth API rounds, the verdict). A decision is positive when the guard lets the
//! close through.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use spatialbot_edge::camera::sim::{SimOptions, SimSource};
use spatialbot_edge::camera::Source;
use spatialbot_edge::config::Board;
use spatialbot_edge::pipeline::consult_guard;
use spatialbot_edge::policy::guard::{parse_yes_no, GuardVerdict};
use spatialbot_edge::progress::Progress;
use spatialbot_edge::sim::{expert, Rng, TaskKind, World};
use spatialbot_edge::telemetry::LatencyHistogram;

use super::assemble::{self, Startup};
use super::{bad_input, print_json};

pub const SCHEMA: &str = "spatialbot-edge/guard-eval/1";
/// Most episodes one run takes.
pub const MAX_EPISODES: u64 = 10_000;

#[derive(clap::Args)]
pub struct Args {
    /// The guard's SpatialBot model folder. Default: the board's guard.model, else
    /// models.spatialbot.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Board profile: the [guard] question and the backends. Default: the dev profile.
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
    /// The question asked. Default: the board's guard.question.
    #[arg(long)]
    pub question: Option<String>,
    /// Episodes (1..=10000); three decisions each. Episode i uses seed SEED + i.
    #[arg(long, default_value_t = 40)]
    pub episodes: u64,
    /// The first episode's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Options of the sim camera the states are rendered by, appended to `sim:pick,seed=N`
    /// (e.g. `size=320x240`, `noise`).
    #[arg(long, value_name = "OPTIONS")]
    pub camera_options: Option<String>,
    /// Write the report (with every decision) to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// One labelled decision.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub seed: u64,
    /// `before_close`, `descending` or `approach`.
    pub state: &'static str,
    /// The world's truth: closing here grasps the task's object.
    pub label_yes: bool,
    /// The TCP's distance to the object's surface (0 inside), m.
    pub distance_m: f64,
    /// The guard's answer (an error's text when it could not be asked).
    pub answer: String,
    /// The answer was yes or no.
    pub answered_yes_no: bool,
    /// The guard let the close through.
    pub proceed: bool,
    pub ms: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Let through, label yes.
    pub true_proceed: u64,
    /// Let through, label no: the gripper would have closed on nothing.
    pub false_proceed: u64,
    /// Vetoed, label no.
    pub true_veto: u64,
    /// Vetoed, label yes.
    pub false_veto: u64,
    /// Answers that were neither yes nor no (vetoed, fail-safe).
    pub not_yes_no: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub model: String,
    pub question: String,
    pub episodes: u64,
    pub first_seed: u64,
    pub decisions: u64,
    pub label_yes: u64,
    pub counts: Counts,
    /// Of the closes let through, the share whose label is yes; `None` when none was.
    pub precision: Option<f64>,
    /// Of the label-yes states, the share let through.
    pub recall: Option<f64>,
    /// Of the label-no states, the share vetoed.
    pub veto_rate_on_no: Option<f64>,
    /// Per question, the loop's guard path end to end.
    pub latency_ms: Latency,
    pub per_state: Vec<StateSummary>,
    pub results: Vec<Decision>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StateSummary {
    pub state: &'static str,
    pub decisions: u64,
    pub label_yes: u64,
    pub proceeded: u64,
}

/// The expert's pick episode up to its first close: the states it passed, the closing one
/// last. `None` when the expert never closed within the step limit.
fn states_until_close(seed: u64) -> Option<Vec<World>> {
    let mut world = World::new(TaskKind::Pick, seed);
    let mut states = Vec::new();
    while !world.done() {
        let action = expert::next_action(&world);
        let closes = action[6] < 0.5 && !world.gripper.is_closed();
        states.push(world.clone());
        if closes {
            return Some(states);
        }
        world.apply(&action);
    }
    None
}

/// The world's answer to "would closing the gripper now grasp the task's object?".
fn closing_grasps(world: &World) -> bool {
    let mut w = world.clone();
    w.apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    w.gripper.held == Some(w.task.object)
}

/// The three labelled states of one episode: (name, state).
fn episode_states(seed: u64) -> Vec<(&'static str, World)> {
    let Some(mut states) = states_until_close(seed) else {
        return Vec::new();
    };
    let Some(closing) = states.pop() else {
        return Vec::new();
    };
    let mut out = vec![("before_close", closing)];
    // The descent's last state the gripper is not yet around the object in.
    if let Some(i) = states.iter().rposition(|w| !closing_grasps(w)) {
        let w = states.remove(i);
        out.push(("descending", w));
        // A state of the approach, at least 5 cm from the object.
        let far: Vec<&World> = states[..i.min(states.len())]
            .iter()
            .filter(|w| w.object().distance(w.gripper.pos) >= 0.05)
            .collect();
        if !far.is_empty() {
            let k = Rng::new(seed ^ 0x6775_6172).below(far.len());
            out.push(("approach", far[k].clone()));
        }
    }
    out
}

fn ratio(k: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    super::eval::check_episodes(args.episodes, args.seed, MAX_EPISODES)?;
    let mut board = match &args.board {
        Some(p) => Board::load(p).map_err(bad_input)?,
        None => Board::default_dev().map_err(bad_input)?,
    };
    let Some(mut cfg) = board.guard_config() else {
        return Err(bad_input(format!(
            "{} has no [guard]: guard-eval asks its question",
            board.source.display()
        )));
    };
    if let Some(q) = &args.question {
        if q.trim().is_empty() {
            return Err(bad_input("--question: empty; give a yes/no question"));
        }
        cfg.question = q.clone();
    }
    if let Some(g) = board.guard.as_mut() {
        g.enabled = true;
    }
    let dir = match args.model.clone().or_else(|| board.guard_model_dir()) {
        Some(d) => d,
        None => {
            return Err(bad_input(format!(
                "no guard model: pass --model or set guard.model / models.spatialbot in {}",
                board.source.display()
            )))
        }
    };
    if let Some(out) = &args.out {
        super::prepare_output("--out", out, &[])?;
    }
    let mut startup = Startup::new(Instant::now());
    let mut model =
        assemble::open_guard(&board, dir.clone(), cfg.clone(), &mut startup)?.model()?;

    let progress = Progress::new(args.episodes, "guard-eval").with_unit("episodes");
    let mut results: Vec<Decision> = Vec::new();
    let mut latency = LatencyHistogram::new();
    for seed in args.seed..args.seed + args.episodes {
        let mut spec = format!("pick,seed={seed}");
        if let Some(extra) = args.camera_options.as_deref().filter(|o| !o.is_empty()) {
            spec = format!("{spec},{extra}");
        }
        let options = SimOptions::parse(&["fast"], Some(&spec))
            .map_err(|e| bad_input(format!("--camera-options: {e}")))?;
        let mut source = SimSource::new(options);
        for (state, world) in episode_states(seed) {
            let label_yes = closing_grasps(&world);
            let distance_m = world.object().distance(world.gripper.pos);
            *source.world().lock() = world;
            let Some(mut frame) = source.next_frame()? else {
                continue;
            };
            let started = Instant::now();
            let (verdict, answer) = consult_guard(&cfg, model.as_mut(), &mut frame);
            let took = started.elapsed();
            latency.record(took);
            let answer = answer.unwrap_or_else(|e| e);
            results.push(Decision {
                seed,
                state,
                label_yes,
                distance_m,
                answered_yes_no: parse_yes_no(&answer).is_some(),
                answer,
                proceed: verdict == GuardVerdict::Proceed,
                ms: took.as_secs_f64() * 1e3,
            });
        }
        progress.inc();
    }
    progress.finish();
    let report = summarise(&args, &cfg.question, &dir, results, &latency);
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&report)?;
        spatialbot_edge::fsutil::write_atomic(out, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    }
    if json {
        print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(0)
}

fn summarise(
    args: &Args,
    question: &str,
    dir: &std::path::Path,
    results: Vec<Decision>,
    latency: &LatencyHistogram,
) -> Report {
    let mut c = Counts::default();
    for d in &results {
        match (d.proceed, d.label_yes) {
            (true, true) => c.true_proceed += 1,
            (true, false) => c.false_proceed += 1,
            (false, false) => c.true_veto += 1,
            (false, true) => c.false_veto += 1,
        }
        if !d.answered_yes_no {
            c.not_yes_no += 1;
        }
    }
    let per_state = ["before_close", "descending", "approach"]
        .iter()
        .map(|&state| {
            let of: Vec<&Decision> = results.iter().filter(|d| d.state == state).collect();
            StateSummary {
                state,
                decisions: of.len() as u64,
                label_yes: of.iter().filter(|d| d.label_yes).count() as u64,
                proceeded: of.iter().filter(|d| d.proceed).count() as u64,
            }
        })
        .collect();
    let ms = |ns: Option<u64>| ns.map_or(0.0, |n| Duration::from_nanos(n).as_secs_f64() * 1e3);
    Report {
        schema: SCHEMA,
        model: dir.display().to_string(),
        question: question.to_string(),
        episodes: args.episodes,
        first_seed: args.seed,
        decisions: results.len() as u64,
        label_yes: c.true_proceed + c.false_veto,
        precision: ratio(c.true_proceed, c.true_proceed + c.false_proceed),
        recall: ratio(c.true_proceed, c.true_proceed + c.false_veto),
        veto_rate_on_no: ratio(c.true_veto, c.true_veto + c.false_proceed),
        latency_ms: Latency {
            p50: ms(latency.quantile_ns(0.5)),
            p90: ms(latency.quantile_ns(0.9)),
            max: ms(latency.max_ns()),
            mean: latency.mean_ns().unwrap_or(0.0) / 1e6,
        },
        counts: c,
        per_state,
        results,
    }
}

fn print_text(r: &Report) {
    let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1} %", v * 100.0));
    let c = &r.counts;
    outln!("guard-eval: {} asked {:?}", r.model, r.question);
    outln!(
        "{} decisions from {} pick episodes (seeds {}..{}), {} labelled yes",
        r.decisions,
        r.episodes,
        r.first_seed,
        r.first_seed + r.episodes,
        r.label_yes
    );
    outln!(
        "  let through: {} right, {} wrong (closed on nothing); vetoed: {} right, {} wrong; {} answers neither yes nor no",
        c.true_proceed, c.false_proceed, c.true_veto, c.false_veto, c.not_yes_no
    );
    outln!(
        "  precision {}  recall {}  veto rate on no {}",
        pct(r.precision),
        pct(r.recall),
        pct(r.veto_rate_on_no)
    );
    for s in &r.per_state {
        outln!(
            "  {:<13} {:>4} decisions, {:>4} labelled yes, {:>4} let through",
            s.state,
            s.decisions,
            s.label_yes,
            s.proceeded
        );
    }
    let l = &r.latency_ms;
    outln!(
        "  latency per question: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms, mean {:.1} ms",
        l.p50,
        l.p90,
        l.max,
        l.mean
    );
}
