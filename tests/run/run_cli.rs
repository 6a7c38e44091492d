//! `spatialbot-edge run` refuses bad input with exit code 2 and a message naming the problem.

use std::process::Command;

use crate::support;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(support::bin())
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_model_folders_and_arguments_exit_2() {
    let root = support::repo_root();
    let (code, err) = run(&["--model", "no/such/folder"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no/such/folder/manifest.toml"), "{err}");

    let spatialbot = root.join("models/tiny-spatialbot");
    let (code, err) = run(&["--model", spatialbot.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not \"policy\""), "{err}");

    let (code, err) = run(&["--duration=-1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--duration"), "{err}");

    let (code, err) = run(&["--link", "carrier-pigeon:1"]);
    assert_eq!(code, 2, "{err}");

    let (code, err) = run(&["--board", "no/such/board.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no/such/board.toml"), "{err}");
}

#[test]
fn missing_recording_exits_2_and_defaults_name_what_is_missing() {
    let (code, err) = run(&["--camera", "replay:no/such/recording"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no/such/recording"), "{err}");
}

/// The README's first command without flags that choose what runs, from the repository root
/// and from an unrelated folder (the binary finds the dev profile, the simulated world and
/// models/sim-policy itself): the closed loop on the reach task, saying how the world's episode
/// stands at the end. A debug build under load is far slower than the camera, so the run is
/// bounded (3 steps) and no frame counts as stale; `eval` tests whole episodes.
#[test]
fn no_flags_runs_the_closed_loop_in_the_simulated_world() {
    let root = support::repo_root();
    let elsewhere = tempfile::tempdir().unwrap();
    let bounded = [
        "--steps",
        "3",
        "--max-age-ms",
        "600000",
        "--stall-stop-ms",
        "600000",
    ];
    for cwd in [root.as_path(), elsewhere.path()] {
        let out = Command::new(support::bin())
            .current_dir(cwd)
            .arg("run")
            .args(bounded)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0 | 9)),
            "in {}: {err}",
            cwd.display()
        );
        assert!(err.contains("run stopped: "), "{err}");
        assert!(err.contains("sim:reach,seed=1000"), "{err}");
        assert!(err.contains("models/sim-policy"), "{err}");
        assert!(err.contains("sim reach (seed 1000): \"reach the "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // --json carries the episode's outcome.
    let out = Command::new(support::bin())
        .current_dir(&root)
        .arg("run")
        .args(bounded)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sim"]["task"], "reach", "{v}");
    assert_eq!(v["sim"]["seed"], 1000, "{v}");
    assert!(v["sim"]["success"].is_boolean(), "{v}");
    assert!(v["sim"]["steps"].as_u64().unwrap() >= 1, "{v}");
}

/// The old default, by flags: the sample recording and the tiny policy, 20 steps.
#[test]
fn the_sample_recording_and_tiny_policy_run_by_flags() {
    let root = support::repo_root();
    let out = Command::new(support::bin())
        .current_dir(&root)
        .args([
            "run",
            "--camera",
            "replay,loop:tests/data/sample",
            "--model",
            "models/tiny-policy",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("run stopped: steps (20 steps done)"), "{err}");
    assert!(err.contains("startup: first action"), "{err}");
}
