//! A full-size exported folder's own reference case (PyTorch logits of a long prefill, then
//! single-token steps) reproduced by tract, with the KV cache in plan state where the decoder
//! allows it. The folders are not committed: set SBE_FULLSIZE_POLICY to one and run
//! `cargo test --release --test model tract_fullsize_reference:: -- --ignored`.

use spatialbot_edge::model::backend::{self, BackendConfig, BackendKind};
use spatialbot_edge::model::{npy, sampling, ModelFolder};

fn read(path: &std::path::Path) -> npy::NpyArray {
    npy::read(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "needs a full-size exported folder in SBE_FULLSIZE_POLICY"]
fn fullsize_policy_reference_case() {
    let Some(dir) = std::env::var_os("SBE_FULLSIZE_POLICY") else {
        eprintln!("skipped: SBE_FULLSIZE_POLICY is not set");
        return;
    };
    let f = ModelFolder::open(&dir).expect("open folder");
    let config = BackendConfig {
        kind: BackendKind::Tract,
        threads: 2,
        ..BackendConfig::default()
    };
    let mut b = backend::load(&f, &config).expect("load");
    assert!(
        b.describe().contains("KV cache in plan state"),
        "the decoder kept its explicit cache: {}",
        b.describe()
    );
    let r = f.dir.join("reference");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("cases.json")).unwrap()).unwrap();
    let tolerance = cases["tolerance"]["logits"].as_f64().unwrap() as f32;
    let steps = cases["decode_steps"].as_u64().unwrap() as usize;
    let greedy = cases["greedy_tokens"].as_array().unwrap();
    let mut cache = b.new_cache().unwrap();
    #[allow(clippy::needless_range_loop)] // k also names the step's fixture folder
    for k in 0..=steps {
        let step = r.join(format!("case_decoder/step_{k}"));
        let embeds = read(&step.join("in_inputs_embeds.npy"));
        let logits = b
            .decode(&mut cache, &embeds.to_f32(), embeds.shape[1])
            .unwrap();
        let want = read(&step.join("out_logits.npy")).to_f32();
        let err = logits
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "step {k}: {} positions, logits max |Δ| {err:.2e}",
            embeds.shape[1]
        );
        assert!(err <= tolerance, "step {k}: logits max abs {err}");
        assert_eq!(
            sampling::argmax(&logits) as u64,
            greedy[k].as_u64().unwrap(),
            "greedy token at step {k}"
        );
    }
}
