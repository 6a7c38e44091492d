//! The simulated tabletop (src/sim/) through its seams: the `sim:` camera, the in-process
//! controller moving the camera's world, the expert and do-nothing policies, and the `eval`
//! and `run` commands of the real binary. Frames are small (64×48): debug builds are slow.

use std::process::Command;
use std::time::{Duration, Instant};

use spatialbot_edge::camera::{self, CameraSpec, OpenOptions};
use spatialbot_edge::link::governor::Limits;
use spatialbot_edge::link::{ActionCommand, AppliedHook, Link, LinkConfig, LinkSpec, StopReason};
use spatialbot_edge::rgbd::DepthNeed;
use spatialbot_edge::sim::{expert, TaskKind, World};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spatialbot-edge"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn sim_spec(text: &str) -> (CameraSpec, spatialbot_edge::sim::SharedWorld) {
    let spec: CameraSpec = text.parse().unwrap();
    let CameraSpec::Sim(o) = &spec else {
        panic!("{text} is not a sim camera")
    };
    let world = o.world.clone();
    (spec, world)
}

#[test]
fn the_same_seed_renders_the_same_frames_and_another_seed_does_not() {
    let frames = |text: &str| {
        let (spec, world) = sim_spec(text);
        let mut src = camera::open(&spec, &OpenOptions::default()).unwrap();
        let mut out = Vec::new();
        for _ in 0..3 {
            let f = src.next_frame().unwrap().unwrap();
            out.push((f.color, f.depth));
            let a = expert::next_action(&world.lock());
            world.lock().apply(&a);
        }
        out
    };
    let a = frames("sim:place,seed=4,size=64x48,fast,noise");
    assert!(a == frames("sim:place,seed=4,size=64x48,fast,noise"));
    assert!(a != frames("sim:place,seed=5,size=64x48,fast,noise"));
    assert!(a[0] != a[2], "the expert moved the gripper between frames");
}

#[test]
fn bad_sim_specs_are_refused_with_a_hint() {
    for bad in [
        "sim",
        "sim:",
        "sim:push",
        "sim:reach,seed=-2",
        "sim:reach,size=1x1",
        "sim:reach,loop",
    ] {
        let err = bad.parse::<CameraSpec>().unwrap_err().to_string();
        assert!(
            err.contains("camera SPEC") && err.contains("sim"),
            "{bad}: {err}"
        );
    }
}

/// Limits wide enough for any test action, no rate limit.
fn open_link(world: &spatialbot_edge::sim::SharedWorld) -> Link {
    let limits = Limits {
        min: [-0.2, -0.2, -0.2, -0.2, -0.2, -0.2, 0.0, 0.0],
        max: [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 1.0, 1.0],
        max_step: [1.0; 8],
        min_interval_ms: 0,
        ..Limits::default()
    };
    let mut cfg = LinkConfig::new(limits);
    let moved = world.clone();
    cfg.on_applied = Some(AppliedHook(std::sync::Arc::new(move |layout, values| {
        moved.lock().apply_layout(layout, values)
    })));
    cfg.watchdog_ms = 2000;
    Link::open(&LinkSpec::Sim, cfg).unwrap()
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn the_in_process_controller_moves_the_world_the_camera_renders() {
    let (spec, world) = sim_spec("sim:pick,seed=1,size=64x48,fast");
    let mut src = camera::open(&spec, &OpenOptions::default()).unwrap();
    let before = src.next_frame().unwrap().unwrap();
    let start = world.lock().gripper.pos;
    let mut link = open_link(&world);
    for _ in 0..3 {
        link.send_action(&ActionCommand {
            chunk_id: 0,
            chunk_index: 0,
            capture_us: spatialbot_edge::link::clock::monotonic_us(),
            values: [0.02, 0.0, -0.01, 0.0, 0.0, 0.0, 1.0, 0.0],
        })
        .unwrap();
    }
    wait_for(|| {
        let _ = link.poll();
        world.lock().steps == 3
    });
    let pos = world.lock().gripper.pos;
    assert!(
        (pos[0] - start[0] - 0.06).abs() < 1e-6,
        "{pos:?} from {start:?}"
    );
    assert!((pos[2] - start[2] + 0.03).abs() < 1e-6);
    let after = src.next_frame().unwrap().unwrap();
    assert!(before.color != after.color, "the camera sees the arm move");
    // An action beyond the controller's limits is rejected there and never reaches the world.
    let _ = link.send_action(&ActionCommand {
        chunk_id: 0,
        chunk_index: 0,
        capture_us: spatialbot_edge::link::clock::monotonic_us(),
        values: [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    });
    std::thread::sleep(Duration::from_millis(50));
    let _ = link.poll();
    assert_eq!(world.lock().steps, 3);
    let _ = link.stop(StopReason::Finished);
}

#[test]
fn the_expert_solves_95_percent_of_each_task_and_doing_nothing_none() {
    for kind in TaskKind::ALL {
        let mut solved = 0;
        let mut idle_solved = 0;
        for seed in 100..160 {
            let mut w = World::new(kind, seed);
            while !w.done() {
                let a = expert::next_action(&w);
                w.apply(&a);
            }
            solved += usize::from(w.success_step.is_some());
            let mut w = World::new(kind, seed);
            while !w.done() {
                w.apply(&expert::HOLD_STILL);
            }
            idle_solved += usize::from(w.success_step.is_some());
        }
        assert!(solved >= 57, "{kind}: {solved}/60");
        assert_eq!(idle_solved, 0, "{kind}");
    }
}

#[test]
fn eval_expert_through_the_binary_reports_a_rate_with_a_confidence_interval() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "eval",
            "--task",
            "pick",
            "--policy",
            "expert",
            "--episodes",
            "5",
            "--seed",
            "7",
            "--json",
            "--out",
        ])
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "spatialbot-edge/eval/1");
    assert_eq!(v["policy"]["policy"], "expert");
    assert!(v["policy"]["success_rate"].as_f64().unwrap() >= 0.99, "{v}");
    let ci = v["policy"]["ci95"].as_array().unwrap();
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!((0.5..0.6).contains(&lo) && hi == 1.0, "{lo} {hi}");
    assert_eq!(v["none"]["success_rate"], 0.0);
    assert_eq!(v["policy"]["per_episode"].as_array().unwrap().len(), 5);
    assert_eq!(v["policy"]["per_episode"][0]["seed"], 7);
    assert!(v["policy"]["mean_steps_to_success"].as_f64().unwrap() > 5.0);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["policy"]["successes"], v["policy"]["successes"]);
    for seed in 7..12 {
        for policy in ["expert", "none"] {
            let png = out_dir.path().join(format!("episodes/{policy}-{seed}.png"));
            assert!(png.is_file(), "{}", png.display());
        }
        let sheet = out_dir
            .path()
            .join(format!("episodes/expert-{seed}-frames.png"));
        assert!(sheet.is_file(), "{}", sheet.display());
    }
}

#[test]
fn eval_refuses_bad_input_naming_the_flag() {
    for (args, flag) in [
        (vec!["--task", "push"], "--task"),
        (vec!["--task", "reach", "--seed", "x"], "--seed"),
        (vec!["--task", "reach", "--seed", "-1"], "--seed"),
        (vec!["--task", "reach", "--episodes", "0"], "--episodes"),
        (
            vec![
                "--task",
                "reach",
                "--seed",
                "18446744073709551615",
                "--episodes",
                "2",
            ],
            "--seed",
        ),
        (
            vec!["--task", "reach", "--policy", "no/such/model"],
            "--policy",
        ),
        // The expert and `none` drive the world directly: no loop asks a guard.
        (vec!["--task", "pick", "--guard"], "--guard"),
        (
            vec![
                "--task",
                "pick",
                "--guard",
                "--no-guard",
                "--policy",
                "none",
            ],
            "--guard",
        ),
    ] {
        let out = bin().arg("eval").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn run_drives_the_tiny_policy_in_the_simulated_world() {
    let out = bin()
        .args([
            "run",
            "--camera",
            "sim:reach,seed=2,size=64x48",
            "--link",
            "sim",
            "--model",
            "models/tiny-policy",
            "--steps",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The tiny policy was not trained here: its answers may not parse (every step holds, exit
    // 9 "nothing applied"); either way the loop ran its three steps on the world's frames.
    let reason = v["stop_reason"].as_str().unwrap();
    assert!(matches!(reason, "steps" | "nothing_applied"), "{v}");
    assert!(matches!(out.status.code(), Some(0 | 9)), "{err}");
    assert_eq!(v["steps"], 3, "{v}");
    assert!(v["camera"].as_str().unwrap().starts_with("sim:reach"));
}

#[test]
fn eval_of_a_model_runs_the_real_loop_until_the_world_ends_the_episode() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "eval",
            "--task",
            "reach",
            "--episodes",
            "2",
            "--seed",
            "3",
            "--model",
            "models/tiny-policy",
            "--camera-options",
            "size=64x48",
            "--json",
            "--out",
        ])
        .arg(out_dir.path())
        .output()
        .unwrap();
    // Both episodes ran on the one loaded model, and each has its contact sheet.
    for seed in [3, 4] {
        let sheet = out_dir
            .path()
            .join(format!("episodes/model-{seed}-frames.png"));
        assert!(sheet.is_file(), "{}", sheet.display());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["policy"]["per_episode"][0];
    assert!(v["policy"]["policy"]
        .as_str()
        .unwrap()
        .starts_with("model:"));
    // The tiny policy solves nothing; its episode ends one way or another, and the loop's
    // numbers come with it.
    assert!(e["end"].is_string(), "{v}");
    assert!(e["loop_steps"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["expert"]["success_rate"], 1.0);
}

/// Frames faster than the board's rate limit: most steps hold, the loop's step bound ends the
/// episode before the world's step limit, and the report says so next to the rate.
#[test]
fn eval_warns_when_the_loop_ends_an_episode_before_the_world_does() {
    let dir = tempfile::tempdir().unwrap();
    let dev = std::fs::read_to_string("boards/dev-x86_64.toml").unwrap();
    assert!(dev.contains("rate_limit_hz = 10.0"));
    let board = dir.path().join("slow-arm.toml");
    // One action per two seconds; the cache folder stays inside the temporary folder.
    let slow = dev
        .replace("rate_limit_hz = 10.0", "rate_limit_hz = 0.5")
        .replace("../target/engine-cache", "engine-cache");
    std::fs::write(&board, slow).unwrap();
    let out = bin()
        .args([
            "eval",
            "--task",
            "reach",
            "--episodes",
            "1",
            "--seed",
            "1000",
            "--model",
            "models/sim-policy",
            "--camera-options",
            "size=64x48,fast",
            "--board",
        ])
        .arg(&board)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    assert!(text.contains("governor_rate_limited"), "{text}");
    assert!(
        text.contains(
            "warning: 1 of 1 episodes ended in the loop before the world did (loop_steps 1)"
        ),
        "{text}"
    );
}

/// `eval --guard`: the dev profile's guard, off in the profile, asks its question in the model's
/// loop; in the simulated world it asks the SpatialBot trained there. Each question is the
/// `guard` stage, each veto a `guard_veto` hold, and the report names the guard.
#[test]
fn eval_guard_asks_the_sim_spatialbot_before_each_close() {
    let eval = |extra: &[&str]| -> serde_json::Value {
        let out = bin()
            .args([
                "eval",
                "--task",
                "pick",
                "--episodes",
                "1",
                "--seed",
                "1000",
            ])
            .args(["--model", "models/sim-policy", "--json"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {err}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = eval(&["--camera-options", "size=128x96", "--guard"]);
    assert_eq!(v["guard"]["question"], "Can the gripper close now?", "{v}");
    let model = v["guard"]["model"].as_str().unwrap();
    assert!(
        std::path::Path::new(model).ends_with("models/sim-spatialbot"),
        "{model}"
    );
    let e = &v["policy"]["per_episode"][0];
    // The guard is asked only before a close; a veto needs an asked step.
    let asked = e["stage_p50_ms"].get("guard").is_some();
    let vetoes = e["holds"]["guard_veto"].as_u64().unwrap_or(0);
    assert!(asked || vetoes == 0, "{e}");
    // Without --guard the dev profile's guard stays off.
    let v = eval(&["--camera-options", "size=64x48"]);
    assert!(v.get("guard").is_none(), "{v}");
    let e = &v["policy"]["per_episode"][0];
    assert!(e["stage_p50_ms"].get("guard").is_none(), "{e}");
}

/// One expert step; a finished episode starts again (another seed), so frames keep coming.
fn step_or_restart(world: &spatialbot_edge::sim::SharedWorld) {
    let mut w = world.lock();
    let a = expert::next_action(&w);
    w.apply(&a);
    if w.done() {
        let seed = w.seed + 1;
        *w = World::new(TaskKind::Pick, seed);
    }
}

/// CPU time per 640×480 frame; run in release:
/// `cargo test --release --test run sim:: -- --ignored --nocapture render_cost`.
#[test]
#[ignore = "a measurement; run in release"]
fn render_cost_640x480() {
    for (what, text, depth) in [
        ("colour + depth", "sim:pick,seed=1,fast", DepthNeed::Raw),
        (
            "colour + depth, noise",
            "sim:pick,seed=1,fast,noise",
            DepthNeed::Raw,
        ),
        ("colour only", "sim:pick,seed=1,fast", DepthNeed::None),
    ] {
        let (spec, world) = sim_spec(text);
        let options = OpenOptions { depth };
        let mut src = camera::open(&spec, &options).unwrap();
        let mut times = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            let f = src.next_frame().unwrap().unwrap();
            times.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(f.color.width, 640);
            step_or_restart(&world);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{what}: median {:.2} ms, p90 {:.2} ms per 640x480 frame",
            times[times.len() / 2],
            times[times.len() * 9 / 10]
        );
    }
}

#[test]
fn arm_sim_over_a_pty_moves_a_world_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let pty = dir.path().join("arm");
    let mut arm = bin()
        .args([
            "arm-sim",
            "--world",
            "sim:reach,seed=3",
            "--exit-on-stop",
            "--json",
            "--link",
        ])
        .arg(format!("pty:{}", pty.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| pty.exists());
    let run = bin()
        .args([
            "run",
            "--camera",
            "sim:reach,seed=3,size=64x48",
            "--model",
            "models/tiny-policy",
            "--steps",
            "6",
            "--link",
        ])
        .arg(format!("pty:{}", pty.display()))
        .output()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while arm.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = arm.kill();
            panic!("arm-sim did not exit after the run's Stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = arm.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(&text[text.find("\n{\n").unwrap() + 1..]).unwrap();
    assert!(run.status.code().is_some());
    let applied = summary["applied"].as_u64().unwrap();
    assert!(applied > 0, "{summary}");
    assert_eq!(
        summary["world"]["steps"].as_u64(),
        Some(applied),
        "{summary}"
    );
    assert_eq!(summary["world"]["goal"], "reach the ball");
}

#[test]
fn arm_sim_refuses_a_world_that_is_not_a_sim_spec() {
    for bad in ["reach", "sim:push", "sim:reach,seed=x"] {
        let out = bin()
            .args(["arm-sim", "--link", "pty:/nonexistent/x", "--world", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--world"), "{bad}: {err}");
    }
}

/// Reads a dataset episode's steps.jsonl and replays its `executed` actions from `w` (its start
/// state): every frame exists, every goal is the world's, every label is the expert's action
/// for the state it was recorded in. Returns the lines and the world at the end.
fn replay_dataset_episode(
    folder: &std::path::Path,
    mut w: World,
) -> (Vec<serde_json::Value>, World) {
    let text = std::fs::read_to_string(folder.join("steps.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for line in &lines {
        assert!(folder.join(line["frame"].as_str().unwrap()).is_file());
        assert_eq!(line["goal"], w.task.goal.as_str());
        let label: Vec<f32> = serde_json::from_value(line["action"].clone()).unwrap();
        assert_eq!(label, expert::next_action(&w).to_vec());
        let executed: [f32; 8] = serde_json::from_value(line["executed"].clone()).unwrap();
        w.apply(&executed);
    }
    (lines, w)
}

/// `demos`: the expert's episodes as a dataset (docs/training.md): meta.json, a colour frame and
/// a steps.jsonl line per step, every episode solved; the labels are the expert's actions for
/// the frames' states (replaying the executed actions reproduces them).
#[test]
fn demos_write_the_experts_episodes_as_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demos");
    let run = bin()
        .args([
            "demos",
            "--task",
            "pick",
            "--episodes",
            "2",
            "--seed",
            "40",
            "--size",
            "64x48",
        ])
        .args(["--noise", "0.01", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["schema"], "spatialbot-edge/demos/1");
    assert_eq!(meta["width"], 64);
    assert_eq!(meta["action_layout"][6], "gripper");
    for (i, seed) in [40u64, 41].into_iter().enumerate() {
        let ep = &meta["episodes"][i];
        assert_eq!(ep["seed"], seed);
        assert_eq!(ep["success"], true, "{ep}");
        let folder = out.join(format!("episodes/{seed}"));
        let (lines, w) = replay_dataset_episode(&folder, World::new(TaskKind::Pick, seed));
        assert_eq!(lines.len() as u64, ep["steps"].as_u64().unwrap());
        assert!(w.success_step.is_some());
        assert_eq!(lines.last().unwrap()["success"], true);
    }
    // An output that is not empty is refused, and so are bad flags, naming them.
    for (args, flag) in [
        (
            vec!["--task", "pick", "--out", out.to_str().unwrap()],
            "--out",
        ),
        (vec!["--task", "push", "--out", "x"], "--task"),
        (
            vec!["--task", "reach", "--noise", "0.5", "--out", "x"],
            "--noise",
        ),
        (
            vec!["--task", "reach", "--size", "8x8", "--out", "x"],
            "--size",
        ),
        (
            vec!["--task", "reach", "--episodes", "0", "--out", "x"],
            "--episodes",
        ),
    ] {
        let run = bin()
            .arg("demos")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    assert!(!dir.path().join("x").exists());
}

const WORLD_FILE: &str = r#"
[gripper]
tcp = [0.05, 0.40, 0.20]

[[boxes]]
colour = "red"
centre = [0.10, 0.60]
size = [0.07, 0.07, 0.05]

[ball]
colour = "orange"
centre = [-0.12, 0.55]

[task]
object = "the red box"
"#;

/// `sim:TASK,world=FILE`: the file's layout in `eval` (the expert solves it, the goal names the
/// file's object); a file that makes no sense exits 2 naming the file and the field, in `eval`
/// and in `run`.
#[test]
fn world_files_set_the_layout_and_nonsense_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, WORLD_FILE).unwrap();
    let out = bin()
        .args(["eval", "--task", "reach", "--episodes", "2", "--json"])
        .arg("--camera-options")
        .arg(format!("world={}", good.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expert"]["successes"], 2, "{v}");
    for e in v["expert"]["per_episode"].as_array().unwrap() {
        assert_eq!(e["goal"], "reach the red box", "{v}");
    }
    let bad = dir.path().join("bad.toml");
    for (text, field) in [
        (
            WORLD_FILE.replace("[0.10, 0.60]", "[-0.11, 0.56]"),
            "boxes[0].centre: overlaps the ball",
        ),
        (WORLD_FILE.replace("\"red\"", "\"pink\""), "boxes[0].colour"),
        (
            WORLD_FILE.replace("the red box", "the blue box"),
            "task.object",
        ),
        (WORLD_FILE.replace("0.20]", "9.0]"), "gripper.tcp[2]"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let spec = format!("world={}", bad.display());
        let eval = bin()
            .args([
                "eval",
                "--task",
                "reach",
                "--episodes",
                "1",
                "--camera-options",
            ])
            .arg(&spec)
            .output()
            .unwrap();
        let run = bin()
            .args(["run", "--link", "sim", "--steps", "1", "--camera"])
            .arg(format!("sim:reach,{spec}"))
            .output()
            .unwrap();
        for out in [eval, run] {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{field}: {err}");
            assert!(
                err.contains("bad.toml") && err.contains(field),
                "{field}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

/// `eval --record`: a model's episodes as a demonstrations dataset — the frames the policy saw
/// (the camera's size), the expert's label for each state, and what the model did (`executed`):
/// replaying `executed` reproduces the states the labels are for (DAgger's data).
#[test]
fn eval_records_a_models_episodes_labelled_by_the_expert() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("dagger");
    let out = bin()
        .args([
            "eval",
            "--task",
            "reach",
            "--episodes",
            "1",
            "--seed",
            "5",
            "--model",
            "models/tiny-policy",
            "--camera-options",
            "size=64x48",
            "--json",
            "--record",
        ])
        .arg(&rec)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["schema"], "spatialbot-edge/demos/1");
    assert_eq!(meta["width"], 64);
    assert!(
        meta["driven_by"].as_str().unwrap().starts_with("model:"),
        "{meta}"
    );
    let (lines, _) =
        replay_dataset_episode(&rec.join("episodes/5"), World::new(TaskKind::Reach, 5));
    assert_eq!(
        meta["episodes"][0]["steps"].as_u64().unwrap(),
        lines.len() as u64
    );
    // Only a model's episodes are recorded; the expert's are `demos`'.
    let out = bin()
        .args(["eval", "--task", "reach", "--episodes", "1", "--record"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--record"));
    assert!(!dir.path().join("x").exists());
}
