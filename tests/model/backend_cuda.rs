//! tract's CUDA runtime (`--features cuda`) through the real tract-cuda and the real dynamic
//! loader. Where no CUDA library or GPU is present, loading fails with an error that names what
//! is missing, the fall-back to tract on CPU works, and `doctor`/`devices` say why. Where a GPU
//! is present, the tiny policy's reference case runs on it instead.
#![cfg(feature = "cuda")]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use spatialbot_edge::model::backend::{self, tract_cuda, BackendConfig, BackendKind};
use spatialbot_edge::model::{npy, sampling, ModelError, ModelFolder};

/// GPU kernels sum in another order than PyTorch on CPU; the fixtures' logits are O(1).
const GPU_TOLERANCE: f32 = 1e-3;
/// The vision towers on tract-cuda (H200, CUDA 13.0 libraries with the CUDA 12 runtime):
/// tiny-policy's CLIP within 4.7e-6 of PyTorch, tiny-spatialbot's SigLIP within 1.5e-3; the
/// decoders within 3e-6 and the greedy tokens identical on both.
const GPU_VISION_TOLERANCE: f32 = 5e-3;

fn folder(name: &str) -> ModelFolder {
    ModelFolder::open(support::repo_root().join("models").join(name)).expect("open fixture")
}

fn cuda_config() -> BackendConfig {
    BackendConfig {
        kind: BackendKind::TractCuda,
        threads: 1,
        ..BackendConfig::default()
    }
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

/// The fixture's reference case (PyTorch outputs) on the GPU: vision, embed, prefill and decode
/// logits within tolerance, greedy tokens identical. Every difference is printed before any is
/// judged, so one run on a GPU machine shows them all.
fn check_reference_on_gpu(name: &str) {
    let f = folder(name);
    let mut b = backend::load(&f, &cuda_config()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let described = b.describe();
    assert!(described.contains("CUDA"), "{described}");
    let r = f.dir.join("reference");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("cases.json")).unwrap()).unwrap();
    let tolerance =
        |key: &str| (cases["tolerance"][key].as_f64().unwrap() as f32).max(GPU_TOLERANCE);
    // (what, max abs difference, tolerance)
    let mut differences: Vec<(String, f32, f32)> = Vec::new();

    let pixels = read(&r.join("case_vision/in_pixel_values.npy"));
    let want = read(&r.join("case_vision/out_image_embeds.npy")).to_f32();
    let got = b.vision(&pixels.to_f32(), pixels.shape[0]).unwrap();
    differences.push((
        "vision".into(),
        max_abs(&got, &want),
        tolerance("image_embeds").max(GPU_VISION_TOLERANCE),
    ));

    let ids = read(&r.join("case_embed/in_input_ids.npy"));
    let ids: Vec<u32> = ids.to_i64().iter().map(|&i| i as u32).collect();
    let want = read(&r.join("case_embed/out_inputs_embeds.npy")).to_f32();
    differences.push((
        "embed".into(),
        max_abs(&b.embed(&ids).unwrap(), &want),
        tolerance("inputs_embeds"),
    ));

    let steps = cases["decode_steps"].as_u64().unwrap() as usize;
    let greedy: Vec<u64> = cases["greedy_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut cache = b.new_cache().unwrap();
    assert_eq!(greedy.len(), steps + 1, "one greedy token per decoder step");
    let mut tokens = Vec::new();
    for k in 0..greedy.len() {
        let dir = r.join(format!("case_decoder/step_{k}"));
        let embeds = read(&dir.join("in_inputs_embeds.npy"));
        let logits = b
            .decode(&mut cache, &embeds.to_f32(), embeds.shape[1])
            .unwrap();
        let want = read(&dir.join("out_logits.npy")).to_f32();
        differences.push((
            format!("decoder step {k}"),
            max_abs(&logits, &want),
            tolerance("logits"),
        ));
        tokens.push(sampling::argmax(&logits) as u64);
    }
    for (what, err, tol) in &differences {
        eprintln!("{name} on {described}: {what}: max abs {err:.3e} (tolerance {tol:.1e})");
    }
    for (what, err, tol) in &differences {
        assert!(err <= tol, "{name} on {described}: {what}: max abs {err}");
    }
    assert_eq!(tokens, greedy, "{name} on {described}: greedy tokens");
}

#[test]
fn tiny_policy_on_tract_cuda_runs_or_names_what_is_missing() {
    if tract_cuda::probe().usable {
        check_reference_on_gpu("tiny-policy");
        check_reference_on_gpu("tiny-spatialbot");
        return;
    }
    assert!(
        tract_cuda::runtime_registered(),
        "tract-cuda's runtime is not linked into this binary"
    );
    let libraries = tract_cuda::find_libraries();
    let missing: Vec<&tract_cuda::CudaLibrary> =
        libraries.iter().filter(|l| l.opened.is_none()).collect();
    let incompatible = libraries.iter().any(|l| l.incompatible.is_some());
    let err = match backend::load(&folder("tiny-policy"), &cuda_config()) {
        Ok(b) => panic!(
            "tract-cuda loaded ({}) but its probe said unusable",
            b.describe()
        ),
        Err(e) => e,
    };
    let text = err.to_string();
    // A machine problem, not a bad model folder: a profile's CPU fall-back may take over.
    assert!(!err.is_bad_input(), "{text}");
    let ModelError::Library { library, reason } = &err else {
        panic!("not a library error: {err:?}");
    };
    if let Some(first) = missing.first() {
        assert_eq!(library, &format!("lib{}.so", first.name), "{text}");
        for l in &missing {
            assert!(
                text.contains(&format!("lib{} (", l.name)),
                "{text} does not name lib{}",
                l.name
            );
            assert!(text.contains(&format!("lib{}.so{{", l.name)), "{text}");
        }
        assert!(text.contains("LD_LIBRARY_PATH"), "no fix in: {text}");
    } else if incompatible {
        // A CUDA 13 runtime where tract-cuda's CUDA 12 bindings need a CUDA 12 one.
        assert!(text.contains("cudaGetDeviceProperties_v2"), "{text}");
        assert!(text.contains("libcudart.so.12"), "{text}");
    } else {
        // Every library opens but no GPU initialises (a container without /dev/nvidia*).
        assert!(reason.contains("cannot use a GPU"), "{text}");
    }
}

#[test]
fn tract_cuda_falls_back_to_tract_on_cpu_when_it_cannot_start() {
    let config = BackendConfig {
        fallback: Some(Box::new(BackendConfig {
            kind: BackendKind::Tract,
            threads: 1,
            ..BackendConfig::default()
        })),
        ..cuda_config()
    };
    let b = backend::load(&folder("tiny-policy"), &config).unwrap_or_else(|e| panic!("{e}"));
    if tract_cuda::probe().usable {
        assert!(b.describe().contains("CUDA"), "{}", b.describe());
    } else {
        assert!(b.describe().contains("CPU"), "{}", b.describe());
    }
}

fn json_of(args: &[&str]) -> serde_json::Value {
    let out = Command::new(support::bin()).args(args).output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// A copy of the dev profile whose backend order starts with tract-cuda.
fn cuda_first_profile(dir: &Path) -> PathBuf {
    profile_with_order(dir, "order = [\"tract-cuda\", \"tract-cpu\"]")
}

fn profile_with_order(dir: &Path, order: &str) -> PathBuf {
    let dev = std::fs::read_to_string(support::repo_root().join("boards/dev-x86_64.toml")).unwrap();
    let cuda = dev.replace("order = [\"tract-cpu\"]", order);
    assert_ne!(
        dev, cuda,
        "boards/dev-x86_64.toml no longer has order = [\"tract-cpu\"]"
    );
    let path = dir.join("cuda-first.toml");
    std::fs::write(&path, cuda).unwrap();
    path
}

#[test]
fn doctor_and_devices_report_tract_cuda() {
    let probe = tract_cuda::probe();
    assert!(probe.compiled);

    let v = json_of(&["devices", "--json"]);
    let cuda = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "tract-cuda")
        .unwrap_or_else(|| panic!("no tract-cuda in {v}"));
    assert_eq!(cuda["compiled"], true, "{cuda}");
    assert_eq!(cuda["usable"], probe.usable, "{cuda}");

    let dir = tempfile::tempdir().unwrap();
    let profile = cuda_first_profile(dir.path());
    let v = json_of(&["doctor", "--json", "--board", profile.to_str().unwrap()]);
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backend tract-cuda")
        .unwrap_or_else(|| panic!("no backend tract-cuda check in {v}"))
        .clone();
    let detail = check["detail"].as_str().unwrap_or_default();
    if probe.usable {
        assert_eq!(check["status"], "pass", "{check}");
        return;
    }
    // The profile asks for tract-cuda first: that it cannot start is a failure, with the reason.
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        !check["fix"].as_str().unwrap_or_default().is_empty(),
        "{check}"
    );
    assert_eq!(detail, probe.detail, "{check}");
    for l in tract_cuda::find_libraries()
        .iter()
        .filter(|l| l.opened.is_none())
    {
        assert!(detail.contains(&format!("lib{} (", l.name)), "{check}");
    }
}

/// Builds stand-in CUDA libraries (empty, except a driver whose `cuInit` reports "no device",
/// CUDA_ERROR_NO_DEVICE = 100) so the real dynamic loader and tract-cuda's driver check take the
/// paths a machine with CUDA installed but no usable GPU takes. `None` where no C compiler runs.
fn stand_in_libraries(dir: &Path, files: &[&str]) -> Option<()> {
    stand_in_libraries_with(dir, files, 100)
}

/// As [`stand_in_libraries`], with the code `cuInit` returns (0: the driver check passes, and
/// the first real driver call finds no symbol).
fn stand_in_libraries_with(dir: &Path, files: &[&str], cu_init: i32) -> Option<()> {
    stand_in_libraries_of(dir, files, cu_init, true)
}

/// As [`stand_in_libraries_with`]; `cuda12_runtime` false makes the runtime stand-in lack
/// `cudaGetDeviceProperties_v2`, as CUDA 13's runtime does.
fn stand_in_libraries_of(
    dir: &Path,
    files: &[&str],
    cu_init: i32,
    cuda12_runtime: bool,
) -> Option<()> {
    let driver = dir.join("driver.c");
    std::fs::write(
        &driver,
        format!(
            "int cuInit(unsigned int flags) {{ (void)flags; return {cu_init}; }}\n\
             int cuDriverGetVersion(int *version) {{ *version = 12020; return 0; }}\n"
        ),
    )
    .unwrap();
    let empty = dir.join("empty.c");
    std::fs::write(&empty, "int spatialbot_edge_stand_in;\n").unwrap();
    let runtime = dir.join("runtime.c");
    std::fs::write(
        &runtime,
        "int cudaGetDeviceProperties_v2(void *p, int d) { (void)p; (void)d; return 100; }\n",
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    // Each stand-in also under its unversioned name, the first one the loader is asked for, so
    // that a CUDA installed on this machine (found through the loader's cache) is not opened
    // instead.
    let mut names: Vec<String> = Vec::new();
    for file in files {
        names.push(file.to_string());
        if let Some((stem, _)) = file.split_once(".so.") {
            names.push(format!("{stem}.so"));
        }
    }
    for file in &names {
        let source = if file.starts_with("libcuda.") {
            &driver
        } else if file.starts_with("libcudart.") && cuda12_runtime {
            &runtime
        } else {
            &empty
        };
        let status = Command::new(&cc)
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.join(file))
            .arg(source)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("skipped: {cc} cannot build a shared library");
            return None;
        }
    }
    Some(())
}

fn tract_cuda_probe_with(dir: &Path) -> serde_json::Value {
    let out = Command::new(support::bin())
        .args(["devices", "--json"])
        .env("LD_LIBRARY_PATH", dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "tract-cuda")
        .unwrap_or_else(|| panic!("no tract-cuda in {v}"))
        .clone()
}

/// Stand-ins for every library tract-cuda opens, cuDNN last.
const STAND_INS: [&str; 5] = [
    "libcuda.so.1",
    "libcudart.so.12",
    "libnvrtc.so.12",
    "libcublas.so.12",
    "libcudnn.so.9",
];

#[test]
fn libraries_present_but_no_gpu_is_reported_from_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    if stand_in_libraries(dir.path(), &STAND_INS).is_none() {
        return;
    }
    let cuda = tract_cuda_probe_with(dir.path());
    let detail = cuda["detail"].as_str().unwrap_or_default();
    assert_eq!(cuda["usable"], false, "{cuda}");
    assert_eq!(cuda["library"], "libcuda.so.1", "{cuda}");
    assert!(detail.contains("cannot use a GPU"), "{cuda}");
    // tract-cuda's own driver check, through the real loader: cuInit's code is passed on.
    assert!(detail.contains("cuInit returned 100"), "{cuda}");
    assert!(
        cuda["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("nvidia-smi"),
        "{cuda}"
    );
}

#[test]
fn a_cuda_13_runtime_is_refused_naming_the_runtime_to_use() {
    let dir = tempfile::tempdir().unwrap();
    if stand_in_libraries_of(dir.path(), &STAND_INS, 0, false).is_none() {
        return;
    }
    let cuda = tract_cuda_probe_with(dir.path());
    let detail = cuda["detail"].as_str().unwrap_or_default();
    let fix = cuda["fix"].as_str().unwrap_or_default();
    assert_eq!(cuda["usable"], false, "{cuda}");
    assert!(
        cuda["library"]
            .as_str()
            .unwrap_or_default()
            .starts_with("libcudart.so"),
        "{cuda}"
    );
    assert!(detail.contains("libcudart (the CUDA runtime"), "{cuda}");
    assert!(detail.contains("cudaGetDeviceProperties_v2"), "{cuda}");
    for fine in ["libcuda (", "libnvrtc (", "libcublas (", "libcudnn ("] {
        assert!(!detail.contains(fine), "{fine} is blamed: {cuda}");
    }
    assert!(fix.contains("libcudart.so.12"), "{cuda}");
}

#[test]
fn one_missing_library_is_named_alone() {
    if tract_cuda::find_libraries()
        .iter()
        .any(|l| l.name == "cudnn" && l.opened.is_some())
    {
        eprintln!("skipped: this machine has cuDNN installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    if stand_in_libraries(dir.path(), &STAND_INS[..4]).is_none() {
        return;
    }
    let cuda = tract_cuda_probe_with(dir.path());
    let detail = cuda["detail"].as_str().unwrap_or_default();
    assert_eq!(cuda["usable"], false, "{cuda}");
    assert_eq!(cuda["library"], "libcudnn.so", "{cuda}");
    assert!(detail.contains("1 of the 5"), "{cuda}");
    assert!(detail.contains("libcudnn (cuDNN"), "{cuda}");
    for present in ["libcuda (", "libcudart (", "libnvrtc (", "libcublas ("] {
        assert!(!detail.contains(present), "{present} is there: {cuda}");
    }
}

#[test]
fn a_driver_that_fails_after_its_check_stops_run_with_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    if stand_in_libraries_with(dir.path(), &STAND_INS, 0).is_none() {
        return;
    }
    let profile = profile_with_order(dir.path(), "order = [\"tract-cuda\"]")
        .to_str()
        .unwrap()
        .to_string();
    std::fs::write(
        &profile,
        std::fs::read_to_string(&profile)
            .unwrap()
            .replace("cpu_fallback = true", "cpu_fallback = false"),
    )
    .unwrap();
    let out = Command::new(support::bin())
        .args(["run", "--board", &profile, "--steps", "1"])
        .env("LD_LIBRARY_PATH", dir.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 101 would be a Rust panic that escaped; 1 is a runtime failure with a message.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tract-cuda stopped while setting up the GPU"),
        "{stderr}"
    );
}
