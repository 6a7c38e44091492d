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

/// The README's first command: no flags at all, from the repository root and from an unrelated
/// folder (the binary finds the dev profile, the sample recording and the tiny policy itself).
#[test]
fn no_flags_runs_the_default_loop_to_a_clean_end() {
    let root = support::repo_root();
    let elsewhere = tempfile::tempdir().unwrap();
    for cwd in [root.as_path(), elsewhere.path()] {
        let out = Command::new(support::bin())
            .current_dir(cwd)
            .arg("run")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "in {}: {err}", cwd.display());
        assert!(err.contains("run stopped: steps (20 steps done)"), "{err}");
        assert!(err.contains("startup: first action"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
