//! Bad model folders and bad inputs give errors that name the file and say what to do.

use std::path::{Path, PathBuf};

use crate::support;
use spatialbot_edge::model::{BackendConfig, Engine, ImageTensor, ModelError, ModelFolder};

fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = support::repo_root().join("models").join(name);
    let dst = tmp.path().join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
    }
    (tmp, dst)
}

fn rehash(dir: &Path, file: &str) {
    let manifest = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let hash = spatialbot_edge::model::folder::sha256_file(&dir.join(file)).unwrap();
    let line_start = text.find(&format!("\"{file}\" = \"")).unwrap();
    let value_start = line_start + file.len() + 6;
    let new = format!(
        "{}{}{}",
        &text[..value_start],
        hash,
        &text[value_start + 64..]
    );
    std::fs::write(manifest, new).unwrap();
}

fn edit_manifest(dir: &Path, from: &str, to: &str) {
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "fixture manifest has {from}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn changed_file_is_a_hash_mismatch_naming_it() {
    let (_tmp, dir) = copy_fixture("tiny-policy");
    let mut bytes = std::fs::read(dir.join("tokenizer.json")).unwrap();
    bytes.push(b' ');
    std::fs::write(dir.join("tokenizer.json"), bytes).unwrap();
    let err = ModelFolder::open(&dir).unwrap_err();
    assert!(matches!(err, ModelError::HashMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("tokenizer.json") && text.contains("re-export"),
        "{text}"
    );
}

#[test]
fn missing_graph_or_tokenizer_names_the_file() {
    for file in ["decoder.onnx", "tokenizer.json"] {
        let (_tmp, dir) = copy_fixture("tiny-spatialbot");
        std::fs::remove_file(dir.join(file)).unwrap();
        let err = ModelFolder::open(&dir).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(file) && text.contains("missing"), "{text}");
    }
}

#[test]
fn missing_manifest_says_what_a_model_folder_is() {
    let tmp = tempfile::tempdir().unwrap();
    let text = ModelFolder::open(tmp.path()).unwrap_err().to_string();
    assert!(
        text.contains("manifest.toml") && text.contains("MANIFEST.md"),
        "{text}"
    );
}

#[test]
fn manifest_shapes_that_disagree_with_the_graphs_are_refused_at_load() {
    let cases = [
        (
            "tokens_per_image = 4",
            "tokens_per_image = 5",
            "vision.onnx",
        ),
        ("vocab_size = 443", "vocab_size = 500", "decoder.onnx"),
        ("head_dim = 16", "head_dim = 8", "decoder.onnx"),
    ];
    for (from, to, file) in cases {
        let (_tmp, dir) = copy_fixture("tiny-spatialbot");
        edit_manifest(&dir, from, to);
        let folder = ModelFolder::open(&dir).unwrap();
        let err = Engine::load(&folder, &BackendConfig::default())
            .err()
            .expect("load must fail");
        let text = err.to_string();
        assert!(text.contains(file), "{from} → {to}: {text}");
        assert!(err.is_bad_input());
    }
}

#[test]
fn a_graph_replaced_by_another_is_refused() {
    let (_tmp, dir) = copy_fixture("tiny-spatialbot");
    std::fs::copy(dir.join("embed.onnx"), dir.join("vision.onnx")).unwrap();
    rehash(&dir, "vision.onnx");
    let folder = ModelFolder::open(&dir).unwrap();
    let text = Engine::load(&folder, &BackendConfig::default())
        .err()
        .expect("load must fail")
        .to_string();
    assert!(
        text.contains("vision.onnx") && text.contains("pixel_values"),
        "{text}"
    );
}

#[test]
fn bad_manifest_fields_are_named() {
    let (_tmp, dir) = copy_fixture("tiny-spatialbot");
    edit_manifest(&dir, "embed_dim = 64", "embed_dim = 65");
    let text = ModelFolder::open(&dir).unwrap_err().to_string();
    assert!(
        text.contains("manifest.toml") && text.contains("embed_dim"),
        "{text}"
    );
}

#[test]
fn wrong_shaped_image_tensor_is_bad_input() {
    let folder = ModelFolder::open(support::repo_root().join("models/tiny-spatialbot")).unwrap();
    let mut engine = Engine::load(
        &folder,
        &BackendConfig {
            threads: 1,
            ..BackendConfig::default()
        },
    )
    .unwrap();
    let err = engine
        .encode_images(&[ImageTensor {
            size: 27,
            data: vec![0.0; 3 * 27 * 27],
        }])
        .unwrap_err();
    assert!(
        err.is_bad_input() && err.to_string().contains("3×28×28"),
        "{err}"
    );
    let prompt = engine.prompt("hi", 2).unwrap();
    let err = engine
        .generate(&prompt, &[], &Default::default(), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("image slot 1"), "{err}");
}

#[cfg(not(feature = "ort"))]
#[test]
fn ort_backend_in_a_build_without_it_says_how_to_get_it() {
    let folder = ModelFolder::open(support::repo_root().join("models/tiny-policy")).unwrap();
    let config = BackendConfig {
        kind: spatialbot_edge::model::BackendKind::Ort,
        ..BackendConfig::default()
    };
    let text = Engine::load(&folder, &config)
        .err()
        .expect("no ort")
        .to_string();
    assert!(text.contains("--features ort"), "{text}");
}

#[cfg(feature = "ort")]
#[test]
fn missing_onnxruntime_library_is_named() {
    let folder = ModelFolder::open(support::repo_root().join("models/tiny-policy")).unwrap();
    let mut config = BackendConfig {
        kind: spatialbot_edge::model::BackendKind::Ort,
        ..BackendConfig::default()
    };
    config.ort.library = Some(PathBuf::from("/nonexistent/libonnxruntime.so"));
    let text = Engine::load(&folder, &config)
        .err()
        .expect("no library")
        .to_string();
    assert!(
        text.contains("/nonexistent/libonnxruntime.so") && text.contains("ORT_DYLIB_PATH"),
        "{text}"
    );
}
