//! Constrained decoding in the loop, and the guard's measurement, through the real binary on
//! the real tiny models (docs/decoding.md).

use std::process::Command;

use serde_json::Value;

use crate::support;

fn run_json(args: &[&str]) -> Value {
    let out = Command::new(support::bin())
        .current_dir(support::repo_root())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.stdout.is_empty(), "no output: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// The tiny policy on the sim camera: off its training images it answers run-on lists without
/// a bracket; under the grammar every step is an action.
#[test]
fn the_grammar_turns_the_tiny_policys_garbage_into_actions_on_the_sim_camera() {
    let common = [
        "run",
        "--json",
        "--camera",
        "sim:reach,fast,size=160x120",
        "--model",
        "models/tiny-policy",
        "--link",
        "sim",
        "--every-frame",
        "--steps",
        "6",
        "--constrain",
    ];
    let on = run_json(&[&common[..], &["on"]].concat());
    assert_eq!(on["exit_code"], 0, "{on}");
    assert_eq!(on["steps"], 6, "{on}");
    assert!(on["holds"].get("unparsable_answer").is_none(), "{on}");
    let off = run_json(&[&common[..], &["off"]].concat());
    eprintln!(
        "unconstrained: {} steps, holds {}",
        off["steps"], off["holds"]
    );
}

/// tiny-spatialbot never answers yes or no: the guard vetoes every decision (fail-safe), so
/// recall is 0 and no close goes through on a wrong label.
#[test]
fn guard_eval_counts_the_tiny_models_fail_safe_vetoes() {
    let r = run_json(&[
        "guard-eval",
        "--json",
        "--model",
        "models/tiny-spatialbot",
        "--episodes",
        "2",
        "--seed",
        "5",
        "--camera-options",
        "size=160x120",
    ]);
    assert_eq!(r["schema"], "spatialbot-edge/guard-eval/1");
    assert_eq!(r["question"], "Can the gripper close now?");
    assert_eq!(r["decisions"], 6, "{r}");
    assert_eq!(r["label_yes"], 2, "{r}");
    assert_eq!(r["counts"]["not_yes_no"], 6, "{r}");
    assert_eq!(r["counts"]["false_proceed"], 0);
    assert_eq!(r["recall"], 0.0);
    assert_eq!(r["veto_rate_on_no"], 1.0);
    assert!(r["precision"].is_null());
    let results = r["results"].as_array().unwrap();
    assert!(results
        .iter()
        .all(|d| d["label_yes"] == (d["state"] == "before_close")));
}

/// Asked about a point off its training grid, the tiny SpatialBot opens a Depth API call it
/// never closes (`Depth(0.2,0.0.2,…`); under the grammar the call is well-formed, looked up, and
/// the second round answers with its millimetres.
#[test]
fn ask_under_the_grammar_makes_a_well_formed_depth_call() {
    let ask = |constrain: &str| {
        run_json(&[
            "ask",
            "--json",
            "--model",
            "models/tiny-spatialbot",
            "--camera",
            "replay:tests/data/sample",
            "--constrain",
            constrain,
            "What is the depth value of point <0.55,0.25>?",
        ])
    };
    let on = ask("on");
    let rounds = on["rounds"].as_array().unwrap();
    let calls = rounds[0]["calls"].as_array().unwrap();
    assert!(!calls.is_empty(), "{on}");
    for c in calls {
        for k in ["x", "y"] {
            let v: f64 = c[k].as_str().unwrap().parse().unwrap();
            assert!((0.0..=1.0).contains(&v), "{on}");
        }
        assert!(c["mm"].is_u64(), "{on}");
    }
    let off = ask("off");
    eprintln!("unconstrained: {}", off["rounds"][0]["generation"]["text"]);
}
