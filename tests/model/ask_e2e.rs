//! `spatialbot-edge ask` on models/tiny-spatialbot reproduces the reference pipeline's tokens
//! (reference/e2e/e2e.json): several RGB-D pairs, non-square ones and Depth API rounds included.
//! Each case runs twice: with the runtime's own preprocessing, and with tensors made by the
//! reference numpy/Pillow code (so a preprocessing difference and an engine difference show
//! apart).

use std::path::Path;
use std::process::Command;

use crate::support;

const PREPROCESS: &str = r#"
import sys, numpy as np
from PIL import Image
rgb_path, depth_path, size, out_rgb, out_depth = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def pack(d):
    d = d.astype(np.int64)
    return np.stack([((d // 1024) * 4) % 256, ((d // 32) * 8) % 256, ((d % 32) * 8) % 256], -1).astype(np.uint8)
def square(a, color):
    h, w = a.shape[:2]
    if h == w:
        return a
    s = max(h, w)
    out = np.empty((s, s, 3), np.uint8)
    out[:, :] = np.array(color, np.uint8)
    if w > h:
        out[(w - h) // 2:(w - h) // 2 + h, :] = a
    else:
        out[:, (h - w) // 2:(h - w) // 2 + w] = a
    return out
def prep(a):
    a = square(a, [127, 127, 127])
    a = np.asarray(Image.fromarray(a, "RGB").resize((size, size), Image.BICUBIC))
    x = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(x.transpose(2, 0, 1))
rgb = np.asarray(Image.open(rgb_path).convert("RGB"))
depth = np.asarray(Image.open(depth_path)).astype(np.uint16)
np.save(out_rgb, prep(rgb))
np.save(out_depth, prep(pack(depth)))
"#;

#[test]
fn ask_reproduces_the_reference_pipeline() {
    let py = support::reference_python();
    let model = support::repo_root().join("models/tiny-spatialbot");
    let e2e_dir = model.join("reference/e2e");
    let e2e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e2e_dir.join("e2e.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cases = e2e["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for (k, case) in cases.iter().enumerate() {
        let rgb = e2e_dir.join(case["rgb"].as_str().unwrap());
        let depth = e2e_dir.join(case["depth"].as_str().unwrap());
        let rgb_t = tmp.path().join(format!("rgb_{k}.npy"));
        let depth_t = tmp.path().join(format!("depth_{k}.npy"));
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let mut modes = vec![false];
        if let Some(py) = &py {
            support::run_python(
                py,
                PREPROCESS,
                &[&s(&rgb), &s(&depth), "28", &s(&rgb_t), &s(&depth_t)],
            );
            modes.push(true);
        }
        for with_tensors in modes {
            let mut cmd = Command::new(support::bin());
            cmd.args(["ask", "--json", "--threads", "1", "--model"])
                .arg(&model)
                .arg("--rgb")
                .arg(&rgb)
                .arg("--depth")
                .arg(&depth);
            if with_tensors {
                cmd.arg("--rgb-tensor")
                    .arg(&rgb_t)
                    .arg("--depth-tensor")
                    .arg(&depth_t);
            }
            let out = cmd
                .arg(case["question"].as_str().unwrap())
                .output()
                .unwrap();
            let k = format!("{k} (reference tensors: {with_tensors})");
            assert!(
                out.status.success(),
                "ask failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let want_rounds = case["rounds"].as_array().unwrap();
            let got_rounds = report["rounds"].as_array().unwrap();
            assert_eq!(got_rounds.len(), want_rounds.len(), "case {k}: rounds");
            for (r, (got, want)) in got_rounds.iter().zip(want_rounds).enumerate() {
                assert_eq!(
                    got["generation"]["token_ids"], want["tokens"],
                    "case {k} round {r}: tokens"
                );
                assert_eq!(
                    got["generation"]["text"], want["answer"],
                    "case {k} round {r}: answer"
                );
                let want_calls = want["calls"].as_array().unwrap();
                let got_calls = got["calls"].as_array().unwrap();
                assert_eq!(
                    got_calls.len(),
                    want_calls.len(),
                    "case {k} round {r}: calls"
                );
                for (g, w) in got_calls.iter().zip(want_calls) {
                    let value = g["mm"]
                        .as_u64()
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "unknown".into());
                    assert_eq!(
                        value,
                        w["value"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| w["value"].to_string())
                    );
                }
                if let Some(reply) = want.get("reply") {
                    assert_eq!(&got["reply"], reply, "case {k} round {r}: reply");
                }
            }
            assert_eq!(report["answer"], case["answer"], "case {k}: final answer");
        }
    }
}

#[test]
fn ask_refuses_a_policy_folder_and_mismatched_images() {
    let model = support::repo_root().join("models/tiny-policy");
    let e2e = support::repo_root().join("models/tiny-spatialbot/reference/e2e");
    let out = Command::new(support::bin())
        .args(["ask", "--model"])
        .arg(&model)
        .arg("--rgb")
        .arg(e2e.join("rgb_0.png"))
        .arg("--depth")
        .arg(e2e.join("depth_0.png"))
        .arg("q")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spatialbot"));
}

fn ask_json(extra: &[&str], question: &str) -> serde_json::Value {
    let model = support::repo_root().join("models/tiny-spatialbot");
    let out = Command::new(support::bin())
        .args(["ask", "--json", "--threads", "1", "--model"])
        .arg(&model)
        .args(extra)
        .arg(question)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ask {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn token_rounds(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["generation"]["token_ids"].clone())
        .collect()
}

#[test]
fn ask_on_the_sample_recording_answers_on_its_first_frame() {
    let sample = support::repo_root().join("tests/data/sample");
    let spec = format!("replay,fast:{}", sample.display());
    let question = "How far is the box? Use Depth(0.5, 0.5).";
    let from_camera = ask_json(&["--camera", &spec], question);
    let rgb = sample.join("color/000000.png");
    let depth = sample.join("depth/000000.png");
    let from_files = ask_json(
        &[
            "--rgb",
            rgb.to_str().unwrap(),
            "--depth",
            depth.to_str().unwrap(),
        ],
        question,
    );
    assert!(
        from_camera["source"].as_str().unwrap().contains("frame 0"),
        "{}",
        from_camera["source"]
    );
    assert_eq!(token_rounds(&from_camera), token_rounds(&from_files));
    assert_eq!(from_camera["answer"], from_files["answer"]);
}

#[test]
fn ask_on_a_synthetic_camera_frame_matches_the_same_frame_from_files() {
    use spatialbot_edge::camera::{self, CameraSpec, OpenOptions};
    let spec: CameraSpec = "synthetic,fast".parse().unwrap();
    let mut source = camera::open(&spec, &OpenOptions::with_register(true)).unwrap();
    let frame = source.next_frame().unwrap().unwrap();
    assert!(frame.depth.is_registered());
    let tmp = tempfile::tempdir().unwrap();
    let rgb = tmp.path().join("rgb.png");
    let depth = tmp.path().join("depth.png");
    spatialbot_edge::imageio::write_rgb_png(&rgb, &frame.color).unwrap();
    spatialbot_edge::imageio::write_depth_png(&depth, frame.depth.image().unwrap()).unwrap();
    let question = "What is on the table?";
    let from_camera = ask_json(&["--camera", "synthetic,fast"], question);
    let from_files = ask_json(
        &[
            "--rgb",
            rgb.to_str().unwrap(),
            "--depth",
            depth.to_str().unwrap(),
        ],
        question,
    );
    assert!(from_camera["source"]
        .as_str()
        .unwrap()
        .contains("synthetic"));
    assert_eq!(token_rounds(&from_camera), token_rounds(&from_files));
}

#[test]
fn ask_refuses_a_bad_camera_spec_and_an_empty_recording() {
    let model = support::repo_root().join("models/tiny-spatialbot");
    let tmp = tempfile::tempdir().unwrap();
    for spec in [
        "nonsense:1".to_string(),
        format!("replay:{}", tmp.path().join("missing").display()),
    ] {
        let out = Command::new(support::bin())
            .args(["ask", "--model"])
            .arg(&model)
            .args(["--camera", &spec, "q"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nonsense") || err.contains("missing"), "{err}");
    }
}

/// The ort backend (CPU provider, the reference venv's onnxruntime) gives the tokens tract and
/// the reference pipeline give, on every reference pair.
#[cfg(feature = "ort")]
#[test]
fn ask_on_ort_gives_the_same_tokens_as_tract() {
    let Some(library) = support::ort_library() else {
        return;
    };
    let e2e_dir = support::repo_root().join("models/tiny-spatialbot/reference/e2e");
    let e2e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e2e_dir.join("e2e.json")).unwrap()).unwrap();
    for (k, case) in e2e["cases"].as_array().unwrap().iter().enumerate() {
        let rgb = e2e_dir.join(case["rgb"].as_str().unwrap());
        let depth = e2e_dir.join(case["depth"].as_str().unwrap());
        let pair = [
            "--rgb",
            rgb.to_str().unwrap(),
            "--depth",
            depth.to_str().unwrap(),
        ];
        let question = case["question"].as_str().unwrap();
        let tract = ask_json(&pair, question);
        let mut on_ort = pair.to_vec();
        on_ort.extend([
            "--backend",
            "ort",
            "--ort-library",
            library.to_str().unwrap(),
        ]);
        let ort = ask_json(&on_ort, question);
        assert!(
            ort["backend"].as_str().unwrap().contains("onnxruntime"),
            "{}",
            ort["backend"]
        );
        assert_eq!(token_rounds(&ort), token_rounds(&tract), "case {k}");
        let want: Vec<serde_json::Value> = case["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["tokens"].clone())
            .collect();
        assert_eq!(token_rounds(&ort), want, "case {k}: reference tokens");
    }
}
