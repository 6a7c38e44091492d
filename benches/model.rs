//! Engine timings on one model folder: load, vision per image, prefill, decode ms/token at
//! given contexts, peak RSS. Prints one JSON object. Run through scripts/bench-model.sh, which
//! times onnxruntime / PyTorch in the same command and prints ratios.
//!
//! Env: SBE_BENCH_MODEL (folder, default models/tiny-policy), SBE_BENCH_BACKEND (tract|ort),
//! SBE_BENCH_THREADS (0 = all), SBE_BENCH_CONTEXTS (comma list, default "600"; empty = the
//! vision graph alone, tract only), SBE_BENCH_DECODE (steps per context, default 20),
//! SBE_BENCH_REPEAT (vision runs, default 3). SBE_BENCH_TRACT_MACS / SBE_BENCH_TRACT_PANELS
//! override tract-linalg's threading gates after loading (experiments on the decode threading).

use std::time::Instant;

use spatialbot_edge::model::backend::{self, tract::TractVision, BackendConfig, BackendKind};
use spatialbot_edge::model::ModelFolder;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// A `/proc/self/status` memory line (`VmHWM:`, `VmRSS:`) in MiB.
fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Experiments only: tract-linalg's gates below which a product runs on one thread.
fn set_tract_gates() {
    if let Ok(v) = std::env::var("SBE_BENCH_TRACT_MACS") {
        tract_linalg::multithread::set_threading_mac_threshold(v.parse().expect("macs"));
    }
    if let Ok(v) = std::env::var("SBE_BENCH_TRACT_PANELS") {
        tract_linalg::multithread::set_threading_panel_threshold(v.parse().expect("panels"));
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    // The binary's allocator settings (src/main.rs), so the numbers are the binary's.
    spatialbot_edge::memory::tune_for_frame_buffers();
    let dir = env_or("SBE_BENCH_MODEL", "models/tiny-policy");
    let kind = env_or("SBE_BENCH_BACKEND", "tract")
        .parse()
        .expect("backend");
    let threads: usize = env_or("SBE_BENCH_THREADS", "0").parse().expect("threads");
    let contexts: Vec<usize> = env_or("SBE_BENCH_CONTEXTS", "600")
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("context"))
        .collect();
    let decode_steps: usize = env_or("SBE_BENCH_DECODE", "20").parse().expect("decode");
    let repeat: usize = env_or("SBE_BENCH_REPEAT", "3").parse().expect("repeat");

    let started = Instant::now();
    let folder = ModelFolder::open(&dir).expect("model folder");
    let open_s = started.elapsed().as_secs_f64();
    let config = BackendConfig {
        kind,
        threads,
        ..BackendConfig::default()
    };
    let m = &folder.manifest;
    let s = m.vision.image_size;
    let pixels: Vec<f32> = (0..3 * s * s)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let graphs: &[&str] = if contexts.is_empty() {
        &["vision"]
    } else {
        &["vision", "embed", "decoder"]
    };
    let weight_bytes: u64 = graphs
        .iter()
        .flat_map(|g| [format!("{g}.onnx"), format!("{g}.onnx.data")])
        .filter_map(|f| std::fs::metadata(folder.path(&f)).ok())
        .map(|md| md.len())
        .sum();

    if contexts.is_empty() {
        assert!(
            kind == BackendKind::Tract,
            "vision-only runs are tract only"
        );
        let started = Instant::now();
        let v = TractVision::load(&folder, &config).expect("vision graph");
        let load_s = started.elapsed().as_secs_f64();
        set_tract_gates();
        v.run(&pixels, 1).expect("vision warm-up");
        let vision_ms: Vec<f64> = (0..repeat)
            .map(|_| {
                let t = Instant::now();
                v.run(&pixels, 1).expect("vision");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let out = serde_json::json!({
            "model": dir, "engine": format!("tract 0.23 CPU (ours), {} thread(s)", config.thread_count()),
            "open_s": open_s, "load_s": load_s, "vision_ms": vision_ms, "llm": [],
            "peak_rss_mb": peak_rss_mb(), "weight_bytes": weight_bytes,
        });
        println!("{out}");
        return;
    }

    let started = Instant::now();
    let mut b = backend::load(&folder, &config).expect("backend");
    let load_s = started.elapsed().as_secs_f64();
    let (load_peak_mb, loaded_rss_mb) = (peak_rss_mb(), status_mb("VmRSS:"));
    set_tract_gates();

    b.vision(&pixels, 1).expect("vision warm-up");
    let mut vision_ms = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        b.vision(&pixels, 1).expect("vision");
        vision_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    let h = m.llm.hidden_size;
    let mut rows = Vec::new();
    for &context in &contexts {
        let embeds: Vec<f32> = (0..context * h)
            .map(|i| ((i * 104729) % 2000) as f32 / 20000.0 - 0.05)
            .collect();
        let mut cache = b.new_cache().expect("cache");
        let t = Instant::now();
        b.decode(&mut cache, &embeds, context).expect("prefill");
        let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
        let peak_after_prefill_mb = peak_rss_mb();
        let row = &embeds[..h];
        let mut steps = Vec::new();
        for _ in 0..decode_steps {
            let t = Instant::now();
            b.decode(&mut cache, row, 1).expect("decode");
            steps.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let warm = if steps.len() > 1 {
            &steps[1..]
        } else {
            &steps[..]
        };
        let mean = warm.iter().sum::<f64>() / warm.len().max(1) as f64;
        rows.push(serde_json::json!({"context": context, "prefill_ms": prefill_ms, "decode_ms_per_token": mean, "decode_ms": warm, "peak_rss_after_prefill_mb": peak_after_prefill_mb, "rss_after_decode_mb": status_mb("VmRSS:")}));
    }
    let out = serde_json::json!({
        "model": dir,
        "backend": b.describe(),
        "engine": format!("{} (ours)", b.describe()),
        "weight_bytes": weight_bytes,
        "open_s": open_s,
        "load_s": load_s,
        "vision_ms": vision_ms,
        "llm": rows,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_after_load_mb": load_peak_mb,
        "rss_after_load_mb": loaded_rss_mb,
    });
    println!("{out}");
}
