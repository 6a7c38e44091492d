//! The `ort` backend on the real onnxruntime library (the reference venv's wheel, CPU provider):
//! loading, the version gate, provider registration with and without CPU fallback, and one
//! library per process. The reference cases themselves run in model_reference.rs.
#![cfg(feature = "ort")]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use spatialbot_edge::model::backend::{
    self, ort::probe_library, BackendConfig, BackendKind, OrtConfig, Provider,
};
use spatialbot_edge::model::{ModelError, ModelFolder};

fn fixture() -> ModelFolder {
    ModelFolder::open(support::repo_root().join("models/tiny-spatialbot")).unwrap()
}

fn ort_config(library: &Path, providers: &[Provider], allow_cpu_fallback: bool) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Ort,
        threads: 1,
        ort: OrtConfig {
            library: Some(library.to_path_buf()),
            providers: providers.to_vec(),
            allow_cpu_fallback,
            ..OrtConfig::default()
        },
        fallback: None,
        triton: None,
    }
}

fn load_error(config: &BackendConfig) -> String {
    match backend::load(&fixture(), config) {
        Ok(b) => panic!("loaded on {}", b.describe()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_wheel_library_loads_with_its_version_and_providers() {
    let Some(library) = support::ort_library() else {
        return;
    };
    let found = probe_library(&library).unwrap();
    assert!(found.version.starts_with("1."), "{}", found.version);
    assert!(
        found.providers.iter().any(|p| p == "CPUExecutionProvider"),
        "{:?}",
        found.providers
    );
    let probes = backend::probe(Some(&library));
    let ort = probes.iter().find(|p| p.backend == "ort").unwrap();
    assert!(ort.usable, "{}", ort.detail);
    assert_eq!(ort.version.as_deref(), Some(found.version.as_str()));

    let b = backend::load(&fixture(), &ort_config(&library, &[Provider::Cpu], false)).unwrap();
    let described = b.describe();
    assert!(
        described.contains(&found.version) && described.contains("decoder on CPU"),
        "{described}"
    );
    let steps: Vec<&str> = b.load_steps().iter().map(|s| s.what.as_str()).collect();
    for graph in ["vision.onnx", "embed.onnx", "decoder.onnx"] {
        assert!(
            steps.iter().any(|s| s.contains(graph) && s.contains("CPU")),
            "{steps:?}"
        );
    }
}

#[test]
fn a_missing_library_is_named_with_where_to_get_one() {
    let missing = PathBuf::from("/nonexistent/onnxruntime/libonnxruntime.so.1.32.0");
    let err = load_error(&ort_config(&missing, &[Provider::Cpu], false));
    assert!(
        err.contains("/nonexistent/onnxruntime/libonnxruntime.so.1.32.0"),
        "{err}"
    );
    assert!(
        err.contains("not found") && err.contains("ORT_DYLIB_PATH"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_onnxruntime_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("libonnxruntime.so.1.32.0");
    std::fs::write(&text, "not a shared library").unwrap();
    let err = load_error(&ort_config(&text, &[Provider::Cpu], false));
    assert!(
        err.contains(text.to_str().unwrap()) && err.contains("cannot be loaded"),
        "{err}"
    );

    // A real shared library, but not onnxruntime's.
    let libm = Path::new("libm.so.6");
    let err = probe_library(libm).unwrap_err();
    assert!(matches!(err, ModelError::Library { .. }));
    let err = err.to_string();
    assert!(
        err.contains("libm.so.6") && err.contains("OrtGetApiBase"),
        "{err}"
    );
}

#[test]
fn cuda_on_a_machine_without_it_fails_unless_cpu_fallback_is_allowed() {
    let Some(library) = support::ort_library() else {
        return;
    };
    let err = load_error(&ort_config(&library, &[Provider::Cuda], false));
    assert!(err.contains("CUDA") && err.contains("vision.onnx"), "{err}");

    let err = load_error(&ort_config(
        &library,
        &[Provider::Cuda, Provider::Cpu],
        false,
    ));
    assert!(
        err.contains("CUDA") && err.contains("allow CPU fallback"),
        "{err}"
    );

    let err = load_error(&ort_config(&library, &[Provider::Tensorrt], false));
    assert!(err.contains("TensorRT"), "{err}");

    let b = backend::load(
        &fixture(),
        &ort_config(
            &library,
            &[Provider::Tensorrt, Provider::Cuda, Provider::Cpu],
            true,
        ),
    )
    .unwrap();
    assert!(b.describe().contains("decoder on CPU"), "{}", b.describe());
}

#[test]
fn a_backend_that_cannot_start_gives_way_to_its_fallback() {
    let Some(library) = support::ort_library() else {
        return;
    };
    let mut config = ort_config(&library, &[Provider::Cuda], false);
    config.fallback = Some(Box::new(BackendConfig {
        threads: 1,
        ..BackendConfig::default()
    }));
    let b = backend::load(&fixture(), &config).unwrap();
    assert!(
        b.describe().to_lowercase().contains("tract"),
        "{}",
        b.describe()
    );
}

#[test]
fn a_second_library_in_one_process_is_refused() {
    let Some(library) = support::ort_library() else {
        return;
    };
    backend::load(&fixture(), &ort_config(&library, &[Provider::Cpu], false)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("libonnxruntime.so");
    std::os::unix::fs::symlink(&library, &other).unwrap();
    let err = load_error(&ort_config(&other, &[Provider::Cpu], false));
    assert!(err.contains("already runs onnxruntime from"), "{err}");
}

#[test]
fn ask_and_devices_name_the_provider_and_the_library() {
    let Some(library) = support::ort_library() else {
        return;
    };
    let e2e = support::repo_root().join("models/tiny-spatialbot/reference/e2e");
    let ask = |extra: &[&str]| {
        Command::new(support::bin())
            .args([
                "ask",
                "--json",
                "--threads",
                "1",
                "--backend",
                "ort",
                "--model",
            ])
            .arg(support::repo_root().join("models/tiny-spatialbot"))
            .arg("--rgb")
            .arg(e2e.join("rgb_0.png"))
            .arg("--depth")
            .arg(e2e.join("depth_0.png"))
            .args(extra)
            .arg("q")
            .env("ORT_DYLIB_PATH", &library)
            .output()
            .unwrap()
    };
    let out = ask(&["--providers", "cuda"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CUDA"), "{err}");

    let out = ask(&["--providers", "cuda,cpu", "--cpu-fallback"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["backend"]
            .as_str()
            .unwrap()
            .contains("decoder on CPU"),
        "{}",
        report["backend"]
    );
    assert!(report["load"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["what"].as_str().unwrap().contains("onnxruntime")));

    let out = Command::new(support::bin())
        .args(["devices", "--json"])
        .env("ORT_DYLIB_PATH", &library)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ort = &v["backends"][1];
    assert_eq!(ort["backend"], "ort");
    assert_eq!(ort["usable"], true, "{ort}");
    assert!(ort["providers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "CPUExecutionProvider"));

    let out = Command::new(support::bin())
        .args(["doctor", "--json"])
        .env("ORT_DYLIB_PATH", &library)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backend ort")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "pass", "{check}");
}
