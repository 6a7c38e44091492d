//! Backend selection without running a model: board profiles → backend configs, the onnxruntime
//! version gate, the TensorRT engine-cache key, and what `probe`, `devices` and `doctor` say.

use std::path::Path;
use std::process::Command;

use crate::support;
use spatialbot_edge::config::Board;
use spatialbot_edge::model::backend::{
    self, check_onnxruntime_version, engine_cache_key, BackendKind, Provider,
};
use spatialbot_edge::model::ModelError;

#[test]
fn version_gate_refuses_old_and_malformed_onnxruntime() {
    let lib = Path::new("/opt/ort/libonnxruntime.so.1.16.3");
    assert_eq!(
        check_onnxruntime_version(lib, "1.32.0").unwrap(),
        (1, 32, 0)
    );
    assert_eq!(
        check_onnxruntime_version(lib, "1.17.1").unwrap(),
        (1, 17, 1)
    );
    assert_eq!(
        check_onnxruntime_version(lib, "2.0.0-dev").unwrap(),
        (2, 0, 0)
    );
    let old = check_onnxruntime_version(lib, "1.16.3").unwrap_err();
    assert!(matches!(old, ModelError::Library { .. }));
    let text = old.to_string();
    for needed in [
        "libonnxruntime.so.1.16.3",
        "1.16.3",
        "1.17 or newer",
        "ORT_DYLIB_PATH",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from: {text}");
    }
    if cfg!(target_arch = "aarch64") {
        assert!(
            text.contains("onnxruntime-gpu") && text.contains("JetPack"),
            "{text}"
        );
    } else {
        assert!(text.contains("pip install"), "{text}");
    }
    for garbage in ["", "banana", "1", "x.y.z"] {
        let e = check_onnxruntime_version(lib, garbage).unwrap_err();
        assert!(e.to_string().contains("not a released onnxruntime"), "{e}");
    }
}

#[test]
fn engine_cache_key_separates_models_tensorrt_versions_and_gpus() {
    let a = engine_cache_key("abc123", "10.3.0", "Orin (nvgpu)", (8, 7));
    assert_eq!(a, "abc123-trt10.3.0-Orin--nvgpu-sm87");
    assert_ne!(
        a,
        engine_cache_key("abc124", "10.3.0", "Orin (nvgpu)", (8, 7))
    );
    assert_ne!(
        a,
        engine_cache_key("abc123", "8.6.2", "Orin (nvgpu)", (8, 7))
    );
    assert_ne!(
        a,
        engine_cache_key("abc123", "10.3.0", "NVIDIA H100", (9, 0))
    );
    assert_ne!(
        a,
        engine_cache_key("abc123", "10.3.0", "Orin (nvgpu)", (8, 6))
    );
    assert!(!a.contains('/') && !a.contains(' '));
}

#[test]
fn tensorrt_packed_versions_read_as_releases() {
    #[cfg(feature = "ort")]
    {
        use spatialbot_edge::model::backend::ort::tensorrt_version_string;
        assert_eq!(tensorrt_version_string(100300), "10.3.0");
        assert_eq!(tensorrt_version_string(8602), "8.6.2");
        assert_eq!(tensorrt_version_string(8501), "8.5.1");
    }
}

fn profile(backend_table: &str) -> Board {
    let shipped = Board::named("dev-x86_64").unwrap();
    let text =
        std::fs::read_to_string(support::repo_root().join("boards/dev-x86_64.toml")).unwrap();
    let start = text.find("[backend]").unwrap();
    let end = start + text[start..].find("\n[camera]").unwrap();
    let text = format!("{}{}{}", &text[..start], backend_table, &text[end..]);
    Board::from_toml_str(&text, &shipped.source, Path::new("/srv/profiles")).unwrap()
}

#[test]
fn board_profiles_map_to_backend_configs() {
    let dev = Board::named("dev-x86_64").unwrap().backend_config();
    assert_eq!(dev.kind, BackendKind::Tract);
    assert!(dev.fallback.is_none());

    let orin = Board::named("jetson-orin-nx-16gb")
        .unwrap()
        .backend_config();
    assert_eq!(orin.kind, BackendKind::Ort);
    assert_eq!(orin.ort.providers, [Provider::Tensorrt, Provider::Cuda]);
    assert!(!orin.ort.allow_cpu_fallback);
    assert!(orin.ort.tensorrt_fp16);
    assert!(orin.fallback.is_none());

    let mixed = profile(
        "[backend]\norder = [\"ort-tensorrt\", \"ort-cuda\", \"ort-cpu\", \"tract-cpu\"]\nthreads = 3\ntensorrt_fp16 = false\nengine_cache_dir = \"engines\"\ncpu_fallback = true\nonnxruntime_library = \"lib/libonnxruntime.so.1.20.0\"\n",
    );
    let c = mixed.backend_config();
    assert_eq!(c.kind, BackendKind::Ort);
    assert_eq!(c.threads, 3);
    assert_eq!(
        c.ort.providers,
        [Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
    );
    assert!(c.ort.allow_cpu_fallback && !c.ort.tensorrt_fp16);
    assert_eq!(
        c.ort.library.as_deref(),
        Some(Path::new("/srv/profiles/lib/libonnxruntime.so.1.20.0"))
    );
    assert_eq!(
        c.ort.cache_dir.as_deref(),
        Some(Path::new("/srv/profiles/engines"))
    );
    let next = c.fallback.as_deref().unwrap();
    assert_eq!(next.kind, BackendKind::Tract);
    assert!(next.fallback.is_none());
}

#[test]
fn probe_reports_every_backend() {
    let probes = backend::probe(Some(Path::new("/nonexistent/libonnxruntime.so.1.32.0")));
    let names: Vec<&str> = probes.iter().map(|p| p.backend).collect();
    assert_eq!(names, ["tract", "ort", "tract-cuda", "triton"]);
    assert!(probes[0].usable && probes[0].compiled);
    let ort = &probes[1];
    assert_eq!(ort.compiled, cfg!(feature = "ort"));
    assert!(!ort.usable);
    assert!(!ort.fix.is_empty());
    if cfg!(feature = "ort") {
        assert!(
            ort.detail.contains("/nonexistent/libonnxruntime.so.1.32.0"),
            "{}",
            ort.detail
        );
        assert!(ort.detail.contains("not found"), "{}", ort.detail);
    } else {
        assert!(ort.fix.contains("--features ort"), "{}", ort.fix);
    }
    assert!(!probes[2].usable && !probes[2].fix.is_empty());
    assert_eq!(probes[3].compiled, cfg!(feature = "triton"));
}

#[test]
fn devices_and_doctor_list_the_backends() {
    let out = Command::new(support::bin())
        .args(["devices", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let backends = v["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 4);
    assert_eq!(backends[0]["backend"], "tract");
    assert_eq!(backends[0]["usable"], true);
    assert_eq!(backends[1]["compiled"], cfg!(feature = "ort"));

    let out = Command::new(support::bin())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
    };
    assert_eq!(find("backend tract")["status"], "pass");
    let ort = find("backend ort");
    if !cfg!(feature = "ort") {
        assert_eq!(ort["status"], "skip", "{ort}");
    }
    find("backend tract-cuda");
    assert_eq!(find("backend triton")["status"], "pass");

    // A Jetson profile asks for onnxruntime: without it built in (or loadable) that is a failure
    // with a fix, never a silent CPU run.
    let out = Command::new(support::bin())
        .args(["doctor", "--json", "--board", "jetson-orin-nano-8gb"])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ort = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backend ort")
        .unwrap()
        .clone();
    assert_eq!(ort["status"], "fail", "{ort}");
    assert!(!ort["fix"].as_str().unwrap().is_empty());
}

#[test]
fn ask_without_the_backend_built_in_says_how_to_get_it() {
    if cfg!(feature = "ort") {
        return;
    }
    let e2e = support::repo_root().join("models/tiny-spatialbot/reference/e2e");
    let out = Command::new(support::bin())
        .args(["ask", "--backend", "ort", "--model"])
        .arg(support::repo_root().join("models/tiny-spatialbot"))
        .arg("--rgb")
        .arg(e2e.join("rgb_0.png"))
        .arg("--depth")
        .arg(e2e.join("depth_0.png"))
        .arg("q")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features ort"), "{err}");
}
