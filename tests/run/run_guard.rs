//! The SpatialBot guard as the board profile configures it: `[guard]` is validated like the rest
//! of the file, and `run` asks models/tiny-spatialbot its question about the frame each action
//! was computed from. The tiny model answers these frames with a sentence that is neither yes
//! nor no (the same one `ask` gives), so every asked step is vetoed: the arm holds, the veto is
//! counted, the loop goes on.

use std::path::Path;
use std::process::Command;

use crate::support;
use serde_json::Value;
use spatialbot_edge::config::Board;

fn dev_text() -> String {
    std::fs::read_to_string(support::repo_root().join("boards/dev-x86_64.toml")).unwrap()
}

fn with_guard(guard: &str) -> String {
    let text = dev_text();
    let start = text
        .find("\n[guard]\n")
        .expect("the dev profile has a [guard] section");
    format!("{}\n[guard]\n{guard}\n", &text[..start])
}

fn load(dir: &Path, text: &str) -> Result<Board, String> {
    let path = dir.join("guard-board.toml");
    std::fs::write(&path, text).unwrap();
    Board::load(&path).map_err(|e| e.to_string())
}

#[test]
fn shipped_dev_profile_has_the_guard_off() {
    let board = Board::load(&support::repo_root().join("boards/dev-x86_64.toml")).unwrap();
    let g = board.guard.as_ref().unwrap();
    assert!(!g.enabled);
    assert!(g.before_gripper_close);
    assert_eq!(board.guard_model_dir(), None, "off: no model to load");
}

#[test]
fn guard_section_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let ok = load(
        dir.path(),
        &with_guard("enabled = true\nquestion = \"Is it safe?\"\nevery_steps = 3"),
    )
    .unwrap();
    let cfg = ok.guard_config().unwrap();
    assert_eq!((cfg.every_steps, cfg.before_gripper_close), (3, false));
    assert!(ok
        .guard_model_dir()
        .unwrap()
        .ends_with("../models/tiny-spatialbot"));

    for (guard, key) in [
        (
            "enabled = true\nquestion = \"  \"\nevery_steps = 1",
            "guard.question",
        ),
        ("enabled = true\nquestion = \"q?\"", "guard.every_steps"),
        (
            "enabled = true\nquestion = \"q?\"\nevery_steps = 1000000",
            "guard.every_steps",
        ),
        (
            "enabled = true\nquestion = \"q?\"\nbefore_gripper_close = true\ngripper = \"claw\"",
            "guard.gripper",
        ),
        (
            "enabled = true\nquestion = \"q?\"\nbefore_gripper_close = true\nclose_threshold = 2.0",
            "guard.close_threshold",
        ),
        (
            "enabled = true\nquestion = \"q?\"\nevery_steps = 1\nmodel = \"\"",
            "guard.model",
        ),
    ] {
        let err = load(dir.path(), &with_guard(guard)).expect_err(guard);
        assert!(err.contains("guard-board.toml"), "{err}");
        assert!(err.contains(key), "{guard}: {err}");
    }
    let err = load(
        dir.path(),
        &with_guard("enabled = true\nquestion = \"q?\"\nevery_steps = 1\nasked = 1"),
    )
    .unwrap_err();
    assert!(err.contains("asked") && err.contains("[guard]"), "{err}");
    let err = load(
        dir.path(),
        &with_guard("enabled = true\nquestion = \"q?\"\nevery_steps = 1\nproceed_if = \"maybe\""),
    )
    .unwrap_err();
    assert!(err.contains("maybe"), "{err}");
    let no_spatialbot = with_guard("enabled = true\nquestion = \"q?\"\nevery_steps = 1")
        .replace("spatialbot = \"../models/tiny-spatialbot\"\n", "");
    let err = load(dir.path(), &no_spatialbot).unwrap_err();
    assert!(err.contains("guard.model"), "{err}");
}

fn answer_of_ask(root: &Path, frame: &str, question: &str) -> String {
    let out = Command::new(support::bin())
        .current_dir(root)
        .args([
            "ask",
            "--json",
            "--model",
            "models/tiny-spatialbot",
            "--rgb",
        ])
        .arg(format!("tests/data/sample/color/{frame}.png"))
        .arg("--depth")
        .arg(format!("tests/data/sample/depth/{frame}.png"))
        .arg(question)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["answer"].as_str().unwrap().to_string()
}

#[test]
fn run_asks_the_spatialbot_model_and_its_veto_holds_the_arm() {
    let root = support::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let question = "Is the gripper around the object?";
    // Off in the file, turned on by --guard; asked on steps 2 and 4. Relative model paths
    // resolve against the profile's folder, so name the model folder absolutely.
    let text = with_guard(&format!(
        "enabled = false\nquestion = \"{question}\"\nevery_steps = 2\nmodel = \"{}\"",
        root.join("models/tiny-spatialbot").display()
    ))
    .replace("rate_limit_hz = 10.0", "rate_limit_hz = 1000.0")
    .replace("max_age_ms = 1000", "max_age_ms = 10000");
    let board = dir.path().join("guard-board.toml");
    std::fs::write(&board, text).unwrap();
    let out = Command::new(support::bin())
        .current_dir(&root)
        .args(["--log", "info", "run", "--guard", "--board"])
        .arg(&board)
        .args([
            "--camera",
            "replay,fast:tests/data/sample",
            "--model",
            "models/tiny-policy",
            "--link",
            "sim",
            "--every-frame",
            "--steps",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["stop_reason"], "steps", "{s}");
    assert_eq!(s["steps"], 4, "{s}");
    assert_eq!(s["holds"]["guard_veto"], 2, "{s}");
    assert_eq!(s["actions_sent"], 2, "{s}");
    let guard = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["name"] == "guard")
        .unwrap();
    assert_eq!(guard["count"], 2, "{s}");
    assert!(s["startup"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["what"] == "guard model"));

    // Step 2 acts on the sample's second frame; the guard's answer is `ask`'s for that frame.
    let want = answer_of_ask(&root, "000001", question);
    assert!(
        stderr.contains(&format!("step 2: guard {question:?} → {want:?}")),
        "guard answer for step 2 should be {want:?}: {stderr}"
    );
    assert!(
        stderr.contains("is neither yes nor no"),
        "the veto names its reason: {stderr}"
    );

    let off = Command::new(support::bin())
        .current_dir(&root)
        .args(["run", "--no-guard", "--board"])
        .arg(&board)
        .args([
            "--camera",
            "replay,fast:tests/data/sample",
            "--link",
            "sim",
            "--every-frame",
            "--steps",
            "2",
            "--json",
            "--model",
            "models/tiny-policy",
        ])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&off.stdout).unwrap();
    assert_eq!(
        (s["actions_sent"].as_u64(), s["holds"].clone()),
        (Some(2), serde_json::json!({})),
        "{s}"
    );
}
