//! The `triton` backend against a real Triton Inference Server on loopback (tests/support/triton):
//! the tiny fixtures' reference cases through the server, a server whose models disagree with the
//! manifest, a server killed mid-generation and a server slower than the deadline (both: the
//! local backend takes over, counted).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::model_reference::{check_fixture, max_abs, read};
use crate::support;
use crate::support::triton::TritonServer;
use spatialbot_edge::model::backend::{self, BackendConfig, BackendKind, TritonConfig};
use spatialbot_edge::model::{sampling, ModelFolder};

fn folder(name: &str) -> PathBuf {
    support::repo_root().join("models").join(name)
}

fn tract() -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Tract,
        threads: 1,
        ..BackendConfig::default()
    }
}

/// The server alone (`local = false`: no stand-in, so every answer is the server's) or with
/// tract standing in.
fn triton(url: &str, deadline_ms: u64, local: bool) -> BackendConfig {
    let mut server = TritonConfig::new(url);
    server.deadline = Duration::from_millis(deadline_ms);
    server.retry_after = Duration::from_millis(200);
    BackendConfig {
        kind: BackendKind::Triton,
        threads: 1,
        triton: Some(server),
        fallback: local.then(|| Box::new(tract())),
        ..BackendConfig::default()
    }
}

#[test]
fn reference_cases_through_the_server() {
    let Some(server) = TritonServer::start(
        &[&folder("tiny-policy"), &folder("tiny-spatialbot")],
        |_| {},
    ) else {
        return;
    };
    for name in ["tiny-policy", "tiny-spatialbot"] {
        check_fixture(name, &triton(&server.url, 10_000, false));
    }
}

#[test]
fn a_server_whose_models_disagree_with_the_manifest_is_refused_naming_the_model() {
    let Some(server) = TritonServer::start(&[&folder("tiny-policy")], |_| {}) else {
        return;
    };
    // The SpatialBot fixture against the policy's models (same names, other shapes).
    let f = ModelFolder::open(folder("tiny-spatialbot")).unwrap();
    let mut config = triton(&server.url, 10_000, true);
    if let Some(t) = config.triton.as_mut() {
        t.model_prefix = Some("tiny-policy".into());
    }
    let err = match backend::load(&f, &config) {
        Ok(b) => panic!("loaded on {}", b.describe()),
        Err(e) => e,
    };
    assert!(err.is_bad_input(), "{err}");
    let text = err.to_string();
    assert!(text.contains("tiny-policy_"), "{text}");
    assert!(text.contains("disagrees with the manifest"), "{text}");
}

/// Prefill and greedy steps from the reference case; the server is killed after `kill_after`
/// steps; the tokens and logits must still be the reference's.
#[test]
fn a_server_killed_mid_generation_falls_back_and_goes_on() {
    let Some(mut server) = TritonServer::start(&[&folder("tiny-policy")], |_| {}) else {
        return;
    };
    let f = ModelFolder::open(folder("tiny-policy")).unwrap();
    let mut b = backend::load(&f, &triton(&server.url, 10_000, true)).unwrap();
    let stats = b.remote_stats().expect("remote stats");
    let r = f.dir.join("reference");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("cases.json")).unwrap()).unwrap();
    let tolerance = cases["tolerance"]["logits"].as_f64().unwrap() as f32;
    let steps = cases["decode_steps"].as_u64().unwrap() as usize;
    let mut cache = b.new_cache().unwrap();
    for k in 0..=steps {
        if k == 2 {
            server.kill();
        }
        let dir = r.join(format!("case_decoder/step_{k}"));
        let embeds = read(&dir.join("in_inputs_embeds.npy"));
        let logits = b
            .decode(&mut cache, &embeds.to_f32(), embeds.shape[1])
            .unwrap_or_else(|e| panic!("step {k}: {e}"));
        let want = read(&dir.join("out_logits.npy")).to_f32();
        let err = max_abs(&logits, &want);
        assert!(err <= tolerance, "step {k}: max abs {err}");
        assert_eq!(
            sampling::argmax(&logits) as u64,
            cases["greedy_tokens"][k].as_u64().unwrap(),
            "token at step {k}"
        );
    }
    let c = stats.counts();
    assert_eq!(c.remote_calls, 2, "{c:?}");
    assert_eq!(c.switches_unreachable, 1, "{c:?}");
    assert_eq!(c.replays, 1, "{c:?}");
    assert!(c.local_calls as usize >= steps - 1, "{c:?}");
    // The next image goes to the local backend too, without waiting on the dead server.
    let pixels = read(&r.join("case_vision/in_pixel_values.npy"));
    let got = b.vision(&pixels.to_f32(), pixels.shape[0]).unwrap();
    let want = read(&r.join("case_vision/out_image_embeds.npy")).to_f32();
    assert!(max_abs(&got, &want) <= 1e-3);
    assert_eq!(stats.remote_calls.load(Ordering::Relaxed), 2);
}

#[test]
fn a_server_slower_than_the_deadline_is_not_waited_for() {
    // The vision model waits 8 s before it answers; the deadline is 1.5 s (room for a loaded
    // machine: the embed call below must make it).
    let Some(server) = TritonServer::start(&[&folder("tiny-policy")], |repo| {
        let config = repo.join("tiny-policy_vision/config.pbtxt");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("parameters: { key: \"delay_ms\" value: { string_value: \"8000\" } }\n");
        std::fs::write(&config, text).unwrap();
    }) else {
        return;
    };
    let f = ModelFolder::open(folder("tiny-policy")).unwrap();
    let mut b = backend::load(&f, &triton(&server.url, 1500, true)).unwrap();
    let stats = b.remote_stats().unwrap();
    let r = f.dir.join("reference");
    let ids = read(&r.join("case_embed/in_input_ids.npy"));
    let ids: Vec<u32> = ids.to_i64().iter().map(|&i| i as u32).collect();
    let want_embeds = read(&r.join("case_embed/out_inputs_embeds.npy")).to_f32();
    // The embed model answers (its first run, the slowest, is done before the clock matters).
    assert!(max_abs(&b.embed(&ids).unwrap(), &want_embeds) <= 1e-4);
    let pixels = read(&r.join("case_vision/in_pixel_values.npy"));
    let want = read(&r.join("case_vision/out_image_embeds.npy")).to_f32();
    let got = b.vision(&pixels.to_f32(), pixels.shape[0]).unwrap();
    assert!(max_abs(&got, &want) <= 1e-3);
    let c = stats.counts();
    assert_eq!(c.switches_deadline, 1, "{c:?}");
    assert_eq!((c.remote_calls, c.local_calls), (1, 1), "{c:?}");
    // The other graphs answer from the server again once it has rested (a few tries: on a
    // loaded machine one may miss the deadline too, and run locally).
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(250));
        assert!(max_abs(&b.embed(&ids).unwrap(), &want_embeds) <= 1e-4);
        if stats.counts().switches_back > 0 {
            break;
        }
    }
    let c = stats.counts();
    assert_eq!(c.switches_back, 1, "{c:?}");
    assert!(c.remote_calls >= 2, "{c:?}");
}

/// `ask --triton URL` gives the tokens of the reference pipeline (and of tract), every call
/// answered by the server; with `--triton-top-k 1` (the server sends only each step's largest
/// logit) too.
#[test]
fn ask_on_the_server_gives_the_reference_tokens() {
    let Some(server) = TritonServer::start(&[&folder("tiny-spatialbot")], |_| {}) else {
        return;
    };
    let e2e_dir = folder("tiny-spatialbot").join("reference/e2e");
    let e2e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e2e_dir.join("e2e.json")).unwrap()).unwrap();
    let case = &e2e["cases"][0];
    for extra in [&[][..], &["--triton-top-k", "1"][..]] {
        let out = std::process::Command::new(support::bin())
            .args(["ask", "--json", "--threads", "1", "--triton", &server.url])
            .args(["--triton-deadline-ms", "10000", "--model"])
            .arg(folder("tiny-spatialbot"))
            .arg("--rgb")
            .arg(e2e_dir.join(case["rgb"].as_str().unwrap()))
            .arg("--depth")
            .arg(e2e_dir.join(case["depth"].as_str().unwrap()))
            .args(extra)
            .arg(case["question"].as_str().unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            report["backend"].as_str().unwrap().starts_with("triton"),
            "{}",
            report["backend"]
        );
        let got: Vec<serde_json::Value> = report["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["generation"]["token_ids"].clone())
            .collect();
        let want: Vec<serde_json::Value> = case["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["tokens"].clone())
            .collect();
        assert_eq!(got, want, "{extra:?}: reference tokens");
        assert!(!stderr.contains("falling back"), "{extra:?}: {stderr}");
    }
}

/// The dev profile with the server first in its order, its model paths made absolute.
fn triton_board(dir: &std::path::Path, url: &str) -> PathBuf {
    let root = support::repo_root();
    let text = std::fs::read_to_string(root.join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace(
            "order = [\"tract-cpu\"]",
            "order = [\"triton\", \"tract-cpu\"]",
        )
        .replace(
            "[camera]",
            &format!("[backend.triton]\nurl = \"{url}\"\ndeadline_ms = 5000\n\n[camera]"),
        )
        .replace("\"../models/", &format!("\"{}/models/", root.display()));
    let path = dir.join("triton-board.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn doctor_checks(board: &std::path::Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(support::bin())
        .args(["doctor", "--json", "--board"])
        .arg(board)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    report["checks"]
        .as_array()
        .or_else(|| report.as_array())
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("triton server"))
        .cloned()
        .collect()
}

/// `doctor` checks the profile's server for each of its model folders: the policy's models are
/// served and match; the SpatialBot guard's are not served (fail, naming the model).
#[test]
fn doctor_checks_the_server_against_each_manifest() {
    let Some(server) = TritonServer::start(&[&folder("tiny-policy")], |_| {}) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let checks = doctor_checks(&triton_board(dir.path(), &server.url));
    let policy = checks
        .iter()
        .find(|c| c["name"] == "triton server for tiny-policy")
        .unwrap_or_else(|| panic!("{checks:?}"));
    assert_eq!(policy["status"], "pass", "{policy}");
    assert!(
        policy["detail"]
            .as_str()
            .unwrap()
            .contains("tiny-policy_decoder: ready, matches the manifest"),
        "{policy}"
    );
    let devices = std::process::Command::new(support::bin())
        .args(["devices", "--json", "--triton", &server.url, "--model"])
        .arg(folder("tiny-spatialbot"))
        .output()
        .unwrap();
    assert!(devices.status.success());
    let d: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    assert_eq!(d["triton"]["live"], true, "{d}");
    assert_eq!(d["triton"]["usable"], false, "{d}");
    assert!(
        d["triton"]["problem"]
            .as_str()
            .unwrap()
            .contains("tiny-spatialbot_vision"),
        "{d}"
    );
}

#[test]
fn triton_repo_writes_each_graph_atomically_and_keeps_an_existing_repository() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("repo");
    let run = |extra: &[&str]| {
        std::process::Command::new(support::bin())
            .args(["triton-repo", "--model"])
            .arg(folder("tiny-policy"))
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(run(&["--tensorrt", "--instances", "2"]).status.success());
    let decoder = std::fs::read_to_string(out.join("tiny-policy_decoder/config.pbtxt")).unwrap();
    // Implicit state for every layer's key and value; no control tensors (the graph has none).
    assert_eq!(
        decoder.matches("input_name: \"past_").count(),
        4,
        "{decoder}"
    );
    assert!(
        decoder.contains("output_name: \"present_value_1\""),
        "{decoder}"
    );
    assert!(
        decoder.contains("oldest { max_candidate_sequences: 64 }"),
        "{decoder}"
    );
    assert!(!decoder.contains("CORRID"), "{decoder}");
    assert!(decoder.contains("name: \"tensorrt\""), "{decoder}");
    assert!(decoder.contains("kind: KIND_GPU count: 2"), "{decoder}");
    let vision = std::fs::read_to_string(out.join("tiny-policy_vision/config.pbtxt")).unwrap();
    assert!(vision.contains("max_batch_size: 8"), "{vision}");
    assert!(vision.contains("dynamic_batching"), "{vision}");
    assert_eq!(
        std::fs::read(out.join("tiny-policy_vision/1/model.onnx")).unwrap(),
        std::fs::read(folder("tiny-policy").join("vision.onnx")).unwrap()
    );
    // An existing repository is kept unless --force; nothing is left beside it.
    let again = run(&["--platform", "python"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(!out.join("tiny-policy_vision/1/model.py").exists());
    assert!(run(&["--platform", "python", "--force"]).status.success());
    assert!(out.join("tiny-policy_vision/1/model.py").exists());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("repo")]);
}
