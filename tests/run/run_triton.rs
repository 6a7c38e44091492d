//! `run` on the `triton` backend against a real Triton Inference Server on loopback
//! (tests/support/triton): every graph answered by the server and counted in the report; the
//! server killed mid-run: the loop falls back to the board's local backend, counts the switch
//! and goes on to the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support;
use crate::support::triton::TritonServer;

/// The dev profile with `order = ["triton", "tract-cpu"]` and the server's URL.
fn triton_board(dir: &Path, url: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(support::repo_root().join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace(
            "order = [\"tract-cpu\"]",
            "order = [\"triton\", \"tract-cpu\"]",
        )
        .replace(
            "[camera]",
            &format!("[backend.triton]\nurl = \"{url}\"\ndeadline_ms = 2000\nretry_after_ms = 300\n\n[camera]"),
        )
        .replace("max_age_ms = 1000", "max_age_ms = 10000");
    let path = dir.join("triton-board.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_args(board: &Path) -> Command {
    let mut c = Command::new(support::bin());
    c.current_dir(support::repo_root())
        .args(["run", "--board"])
        .arg(board)
        .args([
            "--camera",
            "replay,loop:tests/data/sample",
            "--model",
            "models/tiny-policy",
            "--link",
            "sim",
            "--json",
        ]);
    c
}

#[test]
fn run_on_the_server_counts_its_calls() {
    let root = support::repo_root();
    let Some(server) = TritonServer::start(&[&root.join("models/tiny-policy")], |_| {}) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let board = triton_board(dir.path(), &server.url);
    let out = run_args(&board).args(["--steps", "3"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["steps"], 3, "{s}");
    let r = &s["remote"];
    assert!(r["remote_calls"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["local_calls"], 0, "{r}");
    assert_eq!(r["switches_to_local"], 0, "{r}");
    assert!(r["bytes_sent"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(s["graphs"][0]["backend"], "triton", "{s}");
}

#[test]
fn run_goes_on_locally_when_the_server_is_killed() {
    let root = support::repo_root();
    let Some(mut server) = TritonServer::start(&[&root.join("models/tiny-policy")], |_| {}) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let board = triton_board(dir.path(), &server.url);
    let child = run_args(&board)
        .args(["--duration", "6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    server.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["stop_reason"], "duration", "{s}");
    let r = &s["remote"];
    assert!(r["remote_calls"].as_u64().unwrap() > 0, "{r}");
    assert!(r["switches_to_local"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["local_calls"].as_u64().unwrap() > 0, "{r}");
    assert!(
        s["actions_sent"].as_u64().unwrap() > 0,
        "actions went on after the switch: {s}"
    );
    assert!(
        stderr.contains("falling back to the local backend"),
        "the switch is logged: {stderr}"
    );
}
