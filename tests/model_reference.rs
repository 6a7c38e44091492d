//! The tiny fixtures' reference cases (PyTorch outputs) reproduced by the engine's backends.
//! `SBE_BACKEND=ort` runs the same checks on onnxruntime (the `ort` feature build).

mod common;

use std::path::{Path, PathBuf};

use spatialbot_edge::model::backend::{self, Backend, BackendConfig, BackendKind};
use spatialbot_edge::model::{npy, sampling, ModelFolder};

fn folder(name: &str) -> PathBuf {
    common::repo_root().join("models").join(name)
}

fn config() -> BackendConfig {
    let kind = match std::env::var("SBE_BACKEND").as_deref() {
        Ok("ort") => BackendKind::Ort,
        _ => BackendKind::Tract,
    };
    BackendConfig {
        kind,
        threads: 1,
        ..BackendConfig::default()
    }
}

fn load(name: &str) -> (ModelFolder, Box<dyn Backend>, serde_json::Value) {
    let f = ModelFolder::open(folder(name)).expect("open fixture");
    let b = backend::load(&f, &config()).expect("load backend");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.dir.join("reference/cases.json")).unwrap())
            .unwrap();
    (f, b, cases)
}

fn read(path: &Path) -> npy::NpyArray {
    npy::read(path).unwrap_or_else(|e| panic!("{e}"))
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tolerance(cases: &serde_json::Value, key: &str) -> f32 {
    cases["tolerance"][key].as_f64().unwrap() as f32
}

fn check_fixture(name: &str) {
    let (f, mut b, cases) = load(name);
    let r = f.dir.join("reference");

    let pixels = read(&r.join("case_vision/in_pixel_values.npy"));
    let want = read(&r.join("case_vision/out_image_embeds.npy"));
    let got = b.vision(&pixels.to_f32(), pixels.shape[0]).unwrap();
    let err = max_abs(&got, &want.to_f32());
    assert!(
        err <= tolerance(&cases, "image_embeds"),
        "{name} vision: max abs {err}"
    );

    let ids = read(&r.join("case_embed/in_input_ids.npy"));
    let want = read(&r.join("case_embed/out_inputs_embeds.npy"));
    let ids: Vec<u32> = ids.to_i64().iter().map(|&i| i as u32).collect();
    let err = max_abs(&b.embed(&ids).unwrap(), &want.to_f32());
    assert!(
        err <= tolerance(&cases, "inputs_embeds"),
        "{name} embed: max abs {err}"
    );

    let mut cache = b.new_cache().unwrap();
    let steps = cases["decode_steps"].as_u64().unwrap() as usize;
    let greedy: Vec<u64> = cases["greedy_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for k in 0..=steps {
        let dir = r.join(format!("case_decoder/step_{k}"));
        let embeds = read(&dir.join("in_inputs_embeds.npy"));
        let positions = read(&dir.join("in_position_ids.npy")).to_i64();
        assert_eq!(
            positions[0] as usize, cache.past_len,
            "positions continue over the cache"
        );
        let logits = b
            .decode(&mut cache, &embeds.to_f32(), embeds.shape[1])
            .unwrap();
        let want = read(&dir.join("out_logits.npy")).to_f32();
        let err = max_abs(&logits, &want);
        assert!(
            err <= tolerance(&cases, "logits"),
            "{name} decoder step {k}: max abs {err}"
        );
        assert_eq!(
            sampling::argmax(&logits) as u64,
            greedy[k],
            "{name} greedy token at step {k}"
        );
    }
}

#[test]
fn tiny_spatialbot_reference_cases() {
    check_fixture("tiny-spatialbot");
}

#[test]
fn tiny_policy_reference_cases() {
    check_fixture("tiny-policy");
}

/// 24 greedy steps from the reference prefill, stop ids ignored, against onnxruntime in Python
/// feeding its own cache: the token sequences must be identical.
fn greedy_against_onnxruntime(name: &str) {
    let Some(py) = common::reference_python() else {
        return;
    };
    let (f, mut b, _) = load(name);
    let r = f.dir.join("reference");
    let prefill = read(&r.join("case_decoder/step_0/in_inputs_embeds.npy"));
    let mut cache = b.new_cache().unwrap();
    let mut logits = b
        .decode(&mut cache, &prefill.to_f32(), prefill.shape[1])
        .unwrap();
    let mut ours = Vec::new();
    for _ in 0..24 {
        let id = sampling::argmax(&logits) as u32;
        ours.push(id);
        let row = b.embed(&[id]).unwrap();
        logits = b.decode(&mut cache, &row, 1).unwrap();
    }
    let code = r#"
import sys, json, numpy as np, onnxruntime as ort
d = sys.argv[1]
o = dict(providers=["CPUExecutionProvider"])
emb = ort.InferenceSession(d + "/embed.onnx", **o)
dec = ort.InferenceSession(d + "/decoder.onnx", **o)
x = np.load(d + "/reference/case_decoder/step_0/in_inputs_embeds.npy")
names = [i.name for i in dec.get_inputs()]
pasts = [i for i in dec.get_inputs() if i.name.startswith("past_")]
feed = {p.name: np.zeros([1, p.shape[1], 0, p.shape[3]], np.float32) for p in pasts}
P, out = 0, []
for step in range(25):
    L = x.shape[1]
    feed.update(inputs_embeds=x, attention_mask=np.ones([1, P + L], np.int64), position_ids=np.arange(P, P + L, dtype=np.int64)[None])
    res = dict(zip([o.name for o in dec.get_outputs()], dec.run(None, feed)))
    for p in pasts:
        feed[p.name] = res[p.name.replace("past_", "present_")]
    P += L
    t = int(np.argmax(res["logits"][0, -1]))
    out.append(t)
    x = emb.run(None, {"input_ids": np.array([[t]], np.int64)})[0]
print(json.dumps(out[:24]))
"#;
    let out = common::run_python(&py, code, &[f.dir.to_str().unwrap()]);
    let theirs: Vec<u32> = serde_json::from_slice(&out).unwrap();
    assert_eq!(ours, theirs, "{name}: greedy tokens over 24 steps");
}

#[test]
fn tiny_spatialbot_greedy_24_steps_match_onnxruntime() {
    greedy_against_onnxruntime("tiny-spatialbot");
}

#[test]
fn tiny_policy_greedy_24_steps_match_onnxruntime() {
    greedy_against_onnxruntime("tiny-policy");
}
