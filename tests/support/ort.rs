//! Finds the onnxruntime library the `ort` backend tests run on.

use std::path::PathBuf;

/// `ORT_DYLIB_PATH`, else the `libonnxruntime.so.*` the reference venv's onnxruntime wheel ships
/// (`<venv>/lib/python3.*/site-packages/onnxruntime/capi/`, found from SBE_PYTHON). Under CI a
/// missing library is a failure; locally the test says why it skipped.
pub fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let found = super::venv_python().and_then(|python| {
        let venv = python.parent()?.parent()?.to_path_buf();
        let lib = std::fs::read_dir(venv.join("lib")).ok()?;
        lib.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/onnxruntime/capi"))
            .filter_map(|capi| std::fs::read_dir(capi).ok())
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so."))
            })
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("CI: no onnxruntime library: set ORT_DYLIB_PATH or run scripts/setup-python.sh (the onnxruntime wheel ships it)");
        }
        eprintln!(
            "skipped: no onnxruntime library (ORT_DYLIB_PATH, or the venv's onnxruntime wheel)"
        );
    }
    found
}
