//! The tiny fixtures' reference cases (PyTorch outputs) reproduced by every backend built in:
//! tract always, onnxruntime (CPU provider, the reference venv's wheel) in the `ort` build.

use std::path::{Path, PathBuf};

use crate::support;
use spatialbot_edge::model::backend::{self, Backend, BackendConfig, BackendKind};
use spatialbot_edge::model::{npy, sampling, ModelFolder};

fn folder(name: &str) -> PathBuf {
    support::repo_root().join("models").join(name)
}

/// The backends this build has, each on one thread.
fn configs() -> Vec<BackendConfig> {
    #[allow(unused_mut)]
    let mut configs = vec![BackendConfig {
        kind: BackendKind::Tract,
        threads: 1,
        ..BackendConfig::default()
    }];
    #[cfg(feature = "ort")]
    if let Some(library) = support::ort_library() {
        configs.push(BackendConfig {
            kind: BackendKind::Ort,
            threads: 1,
            ort: spatialbot_edge::model::backend::OrtConfig {
                library: Some(library),
                ..Default::default()
            },
            ..BackendConfig::default()
        });
    }
    configs
}

fn load(name: &str, config: &BackendConfig) -> (ModelFolder, Box<dyn Backend>, serde_json::Value) {
    let f = ModelFolder::open(folder(name)).expect("open fixture");
    let b = backend::load(&f, config).unwrap_or_else(|e| panic!("load {:?}: {e}", config.kind));
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.dir.join("reference/cases.json")).unwrap())
            .unwrap();
    (f, b, cases)
}

pub(crate) fn read(path: &Path) -> npy::NpyArray {
    npy::read(path).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tolerance(cases: &serde_json::Value, key: &str) -> f32 {
    cases["tolerance"][key].as_f64().unwrap() as f32
}

pub(crate) fn check_fixture(name: &str, config: &BackendConfig) {
    let (f, mut b, cases) = load(name, config);
    let name = format!("{name} on {}", b.describe());
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
    #[allow(clippy::needless_range_loop)] // k also names the step's fixture folder
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
    for config in configs() {
        check_fixture("tiny-spatialbot", &config);
    }
}

#[test]
fn sim_spatialbot_reference_cases() {
    for config in configs() {
        check_fixture("sim-spatialbot", &config);
    }
}

#[test]
fn tiny_policy_reference_cases() {
    for config in configs() {
        check_fixture("tiny-policy", &config);
    }
}

/// 24 greedy steps from the reference prefill, stop ids ignored, against onnxruntime in Python
/// feeding its own cache: the token sequences must be identical.
fn greedy_against_onnxruntime(name: &str, config: &BackendConfig) {
    let Some(py) = support::reference_python() else {
        return;
    };
    let (f, mut b, _) = load(name, config);
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
    let out = support::run_python(&py, code, &[f.dir.to_str().unwrap()]);
    let theirs: Vec<u32> = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        ours,
        theirs,
        "{name} on {}: greedy tokens over 24 steps",
        b.describe()
    );
}

#[test]
fn tiny_spatialbot_greedy_24_steps_match_onnxruntime() {
    for config in configs() {
        greedy_against_onnxruntime("tiny-spatialbot", &config);
    }
}

#[test]
fn tiny_policy_greedy_24_steps_match_onnxruntime() {
    for config in configs() {
        greedy_against_onnxruntime("tiny-policy", &config);
    }
}
