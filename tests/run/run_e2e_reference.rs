//! End to end, every part real and in separate processes: `spatialbot-edge run` on the shipped
//! sample recording with models/tiny-policy, over a pseudo-terminal to `spatialbot-edge arm-sim`.
//! The actions the simulator applied equal, value for value, those the Python reference
//! pipeline (PyTorch, the tiny checkpoint) computed for the same frames:
//! models/tiny-policy/reference/e2e-sample/e2e.json, written by `tools/export/reference.py e2e
//! --sample tests/data/sample` with one goal over consecutive frames, as `run --every-frame`
//! acts.
//!
//! The governor sits between the two: the test first checks that no reference action is outside
//! the board's limits or moves an axis by more than its `max_step` (so the governor passes each
//! unchanged), and runs with a rate limit the loop cannot reach and a frame age limit a debug
//! build cannot reach, so no step is held. The sample's actions are then compared exactly, as
//! the f32 the wire carries.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support;
use serde_json::Value;
use spatialbot_edge::config::Board;

const GOAL: &str = "pick up the box";

/// Policy order (terminate, dx..dyaw, gripper) → wire order (dx..dyaw, gripper, terminate).
fn wire_order(policy: &[f64]) -> Vec<f32> {
    policy[1..8]
        .iter()
        .chain(&policy[..1])
        .map(|v| *v as f32)
        .collect()
}

fn reference_steps(root: &Path) -> Vec<Value> {
    let path = root.join("models/tiny-policy/reference/e2e-sample/e2e.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let e2e: Value = serde_json::from_str(&text).unwrap();
    let steps = e2e["steps"].as_array().unwrap().clone();
    for (k, step) in steps.iter().enumerate() {
        assert_eq!(step["goal"], GOAL, "step {k}: the reference uses one goal");
        let frames: Vec<&str> = step["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        // Newest first, consecutive, padded with the oldest: what the loop's history holds.
        let want: Vec<String> = (0..4)
            .map(|i| format!("tests/data/sample/color/{:06}.png", k.saturating_sub(i)))
            .collect();
        assert_eq!(frames, want, "step {k}");
    }
    steps
}

/// The dev profile with limits the loop cannot hit on timing: no step is rate limited or
/// stale, and no controller reply late enough to hold, whatever the machine's load.
pub(crate) fn write_board(dir: &Path) -> (PathBuf, Board) {
    let root = support::repo_root();
    let text = std::fs::read_to_string(root.join("boards/dev-x86_64.toml")).unwrap();
    for from in [
        "rate_limit_hz = 10.0",
        "max_age_ms = 1000",
        "watchdog_ms = 200",
        "heartbeat_ms = 50\n",
    ] {
        assert!(text.contains(from), "dev profile lacks {from}");
    }
    let text = text
        .replace("rate_limit_hz = 10.0", "rate_limit_hz = 1000.0")
        .replace("max_age_ms = 1000", "max_age_ms = 10000")
        .replace("watchdog_ms = 200", "watchdog_ms = 5000")
        .replace(
            "heartbeat_ms = 50\n",
            "heartbeat_ms = 50\nreply_timeout_ms = 5000\nlost_link_ms = 20000\n",
        );
    let path = dir.join("e2e-board.toml");
    std::fs::write(&path, text).unwrap();
    let board = Board::load(&path).unwrap();
    (path, board)
}

/// Each reference action is inside the limits and within `max_step` of the previous one (the
/// governor starts delta axes from 0 and puts no step limit on the first gripper value).
fn assert_governor_passes_unchanged(board: &Board, actions: &[Vec<f32>]) {
    let limits = board.governor_limits().unwrap();
    let mut previous: Vec<Option<f32>> = limits
        .layout
        .iter()
        .map(|a| (a.is_delta() || a.name() == "terminate").then_some(0.0))
        .collect();
    for (k, a) in actions.iter().enumerate() {
        for i in 0..a.len() {
            let v = a[i];
            assert!(
                (limits.min[i]..=limits.max[i]).contains(&v),
                "reference step {k}, axis {i} = {v} is outside the board's limits: the governor would clamp it"
            );
            if let Some(p) = previous[i] {
                assert!(
                    (v - p).abs() <= limits.max_step[i],
                    "reference step {k}, axis {i}: {p} → {v} exceeds max_step: the governor would limit it"
                );
            }
            previous[i] = Some(v);
        }
    }
}

#[test]
fn actions_on_the_wire_equal_the_python_reference_pipeline() {
    let root = support::repo_root();
    let steps = reference_steps(&root);
    let want: Vec<Vec<f32>> = steps
        .iter()
        .map(|s| {
            let a: Vec<f64> = s["actions"]
                .as_array()
                .unwrap_or_else(|| panic!("reference step without actions: {s}"))
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            wire_order(&a)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (board_path, board) = write_board(dir.path());
    assert_governor_passes_unchanged(&board, &want);

    let link = dir.path().join("arm");
    let log = dir.path().join("applied.jsonl");
    let mut sim = Command::new(support::bin())
        .args(["arm-sim", "--json", "--exit-on-stop", "--link"])
        .arg(format!("pty:{}", link.display()))
        .arg("--log-file")
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(sim.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains("ready"), "arm-sim said {ready:?}");

    let out = Command::new(support::bin())
        .current_dir(&root)
        .arg("run")
        .arg("--board")
        .arg(&board_path)
        .arg("--camera")
        .arg(format!(
            "replay,fast:{}",
            root.join("tests/data/sample").display()
        ))
        .arg("--model")
        .arg(root.join("models/tiny-policy"))
        .arg("--link")
        .arg(format!("pty:{}", link.display()))
        .args(["--every-frame", "--goal", GOAL, "--json", "--steps"])
        .arg(steps.len().to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "run failed: {stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["stop_reason"], "steps", "{summary}");
    assert_eq!(summary["steps"], steps.len() as u64, "{summary}");
    assert_eq!(summary["actions_sent"], steps.len() as u64, "{summary}");
    assert_eq!(summary["holds"], serde_json::json!({}), "{summary}");
    assert_eq!(summary["frames"]["dropped"], 0, "{summary}");
    assert!(
        summary["startup"]["first_action_ms"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert!(
        sim.wait().unwrap().success(),
        "arm-sim exits 0 after acknowledging Stop"
    );

    let events: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let applied: Vec<Vec<f32>> = events
        .iter()
        .filter(|v| v["event"] == "applied")
        .map(|v| {
            v["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(applied.len(), want.len(), "{events:?}");
    for (k, (got, want)) in applied.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "step {}", k + 1);
    }
    assert!(
        events.iter().any(|v| v["event"] == "stop"),
        "the simulator saw Stop: {events:?}"
    );
}

/// The reference's other recording (models/tiny-policy/reference/e2e: two shots of three
/// frames, 160×120, where the tiny policy's answer changes with the frames) played as a PNG
/// recording with flat depth. Its steps alternate goals; the ones whose goal is this run's
/// (steps 1, 3 and 6) have the same consecutive, newest-first, padded history `run` builds,
/// so their actions must match — which pins the history and the embedding cache on frames
/// that change the answer.
#[test]
fn history_over_frames_that_change_the_answer_matches_the_reference() {
    let root = support::repo_root();
    let ref_dir = root.join("models/tiny-policy/reference/e2e");
    let e2e: Value =
        serde_json::from_str(&std::fs::read_to_string(ref_dir.join("e2e.json")).unwrap()).unwrap();
    let steps = e2e["steps"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("recording");
    std::fs::create_dir_all(rec.join("color")).unwrap();
    std::fs::create_dir_all(rec.join("depth")).unwrap();
    let mut csv = String::from(
        "index,color_frame_number,depth_frame_number,device_timestamp_ms,capture_ns,arrival_ns\n",
    );
    for i in 0..steps.len() {
        let name = format!("{i:06}.png");
        std::fs::copy(
            ref_dir.join("frames").join(&name),
            rec.join("color").join(&name),
        )
        .unwrap();
        let depth =
            spatialbot_edge::rgbd::DepthMm::from_mm(160, 120, vec![800; 160 * 120]).unwrap();
        spatialbot_edge::imageio::write_depth_png(&rec.join("depth").join(&name), &depth).unwrap();
        let ns = i as u64 * 66_666_667;
        csv += &format!("{i},{i},{i},{},{ns},{ns}\n", ns as f64 / 1e6);
    }
    std::fs::write(rec.join("timestamps.csv"), csv).unwrap();
    let sample_calib =
        std::fs::read_to_string(root.join("tests/data/sample/calibration.toml")).unwrap();
    let calib = sample_calib
        .replace("width = 640", "width = 160")
        .replace("height = 480", "height = 120");
    std::fs::write(rec.join("calibration.toml"), calib).unwrap();
    let info = std::fs::read_to_string(root.join("tests/data/sample/recording.toml"))
        .unwrap()
        .replace("frames = 60", &format!("frames = {}", steps.len()));
    std::fs::write(rec.join("recording.toml"), info).unwrap();

    let (board_path, _) = write_board(dir.path());
    let out = Command::new(support::bin())
        .current_dir(&root)
        .arg("run")
        .arg("--board")
        .arg(&board_path)
        .arg("--camera")
        .arg(format!("replay,fast:{}", rec.display()))
        .arg("--model")
        .arg(root.join("models/tiny-policy"))
        .args(["--link", "sim", "--every-frame", "--goal", GOAL, "--json"])
        .arg("--log")
        .arg("info")
        .arg("--steps")
        .arg(steps.len().to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "run failed: {stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], steps.len() as u64, "{summary}");

    // The loop logs each step's answer text ("step K: frame S → TEXT"); compare the text, which
    // decides the action bit for bit (tests/policy_reference.rs).
    let mut checked = Vec::new();
    let mut distinct = std::collections::BTreeSet::new();
    for (k, step) in steps.iter().enumerate() {
        if step["goal"] != GOAL {
            continue;
        }
        let text = step["text"].as_str().unwrap();
        let line = format!("step {}: frame {} → {text}", k + 1, k);
        assert!(
            stderr.contains(&line),
            "reference step {} ({:?}) answered {text:?}; the loop's log: {stderr}",
            k + 1,
            step["frames"]
        );
        checked.push(k + 1);
        distinct.insert(text.to_string());
    }
    assert_eq!(checked, [1, 3, 6]);
    assert!(
        distinct.len() > 1,
        "the frames change the answer: {distinct:?}"
    );
}
