//! Faults through the real binary, every part real: a short copy of the sample recording (so it
//! ends mid-run, or stalls where its timestamps leave a gap), models/tiny-policy (or a copy
//! that stops generating after a few tokens, so its answers never parse), and `arm-sim` as a
//! separate process over a pseudo-terminal. Each ends with Stop acknowledged by the simulator,
//! the exit code the stop reason defines, and no panic.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support;
use serde_json::Value;
use spatialbot_edge::exit;

/// The first `n` frames of the sample; frame `gap_at` and later are captured `gap_ms` later
/// than the recording's own pacing.
fn short_recording(dir: &Path, n: usize, gap_at: Option<(usize, i64)>) -> PathBuf {
    let sample = support::repo_root().join("tests/data/sample");
    let out = dir.join("recording");
    for sub in ["color", "depth"] {
        std::fs::create_dir_all(out.join(sub)).unwrap();
        for i in 0..n {
            let name = format!("{i:06}.png");
            std::fs::copy(sample.join(sub).join(&name), out.join(sub).join(&name)).unwrap();
        }
    }
    std::fs::copy(
        sample.join("calibration.toml"),
        out.join("calibration.toml"),
    )
    .unwrap();
    let info = std::fs::read_to_string(sample.join("recording.toml")).unwrap();
    assert!(info.contains("frames = 60"));
    std::fs::write(
        out.join("recording.toml"),
        info.replace("frames = 60", &format!("frames = {n}")),
    )
    .unwrap();
    let csv = std::fs::read_to_string(sample.join("timestamps.csv")).unwrap();
    let mut lines: Vec<String> = csv.lines().take(n + 1).map(str::to_string).collect();
    if let Some((at, gap_ms)) = gap_at {
        for line in lines.iter_mut().skip(1 + at) {
            let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
            let shift = |v: &str, by: i64| (v.parse::<i64>().unwrap() + by).to_string();
            let ms: f64 = f[3].parse().unwrap();
            f[3] = format!("{}", ms + gap_ms as f64);
            f[4] = shift(&f[4], gap_ms * 1_000_000);
            f[5] = shift(&f[5], gap_ms * 1_000_000);
            *line = f.join(",");
        }
    }
    std::fs::write(out.join("timestamps.csv"), lines.join("\n") + "\n").unwrap();
    out
}

struct ArmSim {
    child: Child,
    link: PathBuf,
    log: PathBuf,
}

fn spawn_arm_sim(dir: &Path) -> ArmSim {
    let link = dir.join("arm");
    let log = dir.join("arm.jsonl");
    let mut child = Command::new(support::bin())
        .args(["arm-sim", "--json", "--exit-on-stop", "--link"])
        .arg(format!("pty:{}", link.display()))
        .arg("--log-file")
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains("ready"), "arm-sim said {ready:?}");
    ArmSim { child, link, log }
}

impl ArmSim {
    /// Waits for the simulator to exit after Stop; the events it logged.
    fn finish(mut self) -> Vec<Value> {
        assert!(
            self.child.wait().unwrap().success(),
            "arm-sim exits 0 after acknowledging Stop"
        );
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// `run` with the dev profile; returns the exit code, the JSON summary and stderr.
fn run(sim: &ArmSim, camera: String, model: &Path, extra: &[&str]) -> (i32, Value, String) {
    let out = Command::new(support::bin())
        .current_dir(support::repo_root())
        .arg("run")
        .arg("--camera")
        .arg(camera)
        .arg("--model")
        .arg(model)
        .arg("--link")
        .arg(format!("pty:{}", sim.link.display()))
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {stderr}"));
    (out.status.code().unwrap_or(-1), summary, stderr)
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

#[test]
fn recording_ending_mid_run_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let rec = short_recording(dir.path(), 3, None);
    let sim = spawn_arm_sim(dir.path());
    let model = support::repo_root().join("models/tiny-policy");
    let (code, s, err) = run(
        &sim,
        format!("replay,fast:{}", rec.display()),
        &model,
        &["--every-frame", "--steps", "100"],
    );
    assert_eq!(code, i32::from(exit::OK), "{err}");
    assert_eq!(s["stop_reason"], "source_ended", "{s}");
    assert_eq!(s["steps"], 3, "{s}");
    let events = sim.finish();
    assert_eq!(
        count(&events, "applied") as u64,
        s["actions_sent"].as_u64().unwrap()
    );
    assert_eq!(count(&events, "stop"), 1, "{events:?}");
}

#[test]
fn unparsable_answers_hold_then_stop() {
    let dir = tempfile::tempdir().unwrap();
    // The real model, cut off after 4 tokens: "[0.0" never parses.
    let src = support::repo_root().join("models/tiny-policy");
    let model = dir.path().join("cut-policy");
    std::fs::create_dir_all(&model).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, model.join(path.file_name().unwrap())).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(model.join("manifest.toml")).unwrap();
    assert!(manifest.contains("max_new_tokens = 128"));
    std::fs::write(
        model.join("manifest.toml"),
        manifest.replace("max_new_tokens = 128", "max_new_tokens = 4"),
    )
    .unwrap();
    let sim = spawn_arm_sim(dir.path());
    let (code, s, err) = run(
        &sim,
        format!(
            "replay,fast:{}",
            support::repo_root().join("tests/data/sample").display()
        ),
        &model,
        &["--every-frame", "--steps", "20"],
    );
    assert_eq!(code, i32::from(exit::RUNTIME), "{err}");
    assert_eq!(s["stop_reason"], "unparsable_answers", "{s}");
    assert_eq!(s["actions_sent"], 0, "{s}");
    assert_eq!(s["holds"]["unparsable_answer"], 5, "{s}");
    let events = sim.finish();
    assert_eq!(count(&events, "applied"), 0, "{events:?}");
    assert_eq!(count(&events, "stop"), 1, "{events:?}");
}

#[test]
fn camera_stalling_past_max_age_holds_then_watchdog_stops() {
    let dir = tempfile::tempdir().unwrap();
    // Three frames at the recording's pace, then nothing for 30 s.
    let rec = short_recording(dir.path(), 4, Some((3, 30_000)));
    let sim = spawn_arm_sim(dir.path());
    let model = support::repo_root().join("models/tiny-policy");
    let (code, s, err) = run(
        &sim,
        format!("replay:{}", rec.display()),
        &model,
        &["--max-age-ms", "200", "--stall-stop-ms", "1000"],
    );
    assert_eq!(code, i32::from(exit::WATCHDOG_STOP), "{err}");
    assert_eq!(s["stop_reason"], "camera_stalled", "{s}");
    let holds = s["holds"]["camera_stall"].as_u64().unwrap_or(0)
        + s["holds"]["stale_frame"].as_u64().unwrap_or(0);
    assert!(holds >= 1, "the arm was told to hold before the stop: {s}");
    let events = sim.finish();
    assert_eq!(count(&events, "stop"), 1, "{events:?}");
}
