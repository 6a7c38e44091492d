//! The reference Python (the project venv): found one way for every test.

use std::path::PathBuf;
use std::process::Command;

/// The reference venv's interpreter: `SBE_PYTHON` (set by `scripts/test.sh`), else the
/// repository's `.venv/bin/python` when it exists. The `ort` tests find the onnxruntime wheel's
/// library from it too (`super::ort`).
pub fn venv_python() -> Option<PathBuf> {
    std::env::var_os("SBE_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let venv = super::repo_root().join(".venv/bin/python");
            venv.exists().then_some(venv)
        })
}

/// The Python interpreter that has the reference implementations (numpy, Pillow, …).
/// `scripts/test.sh` sets SBE_PYTHON to the project venv. Under CI a missing interpreter is a
/// failure, never a silent skip; locally the test prints why it skipped.
pub fn reference_python() -> Option<PathBuf> {
    let candidate = venv_python();
    match candidate {
        Some(p) if p.exists() => Some(p),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("CI: the reference Python (SBE_PYTHON or .venv) is missing; run scripts/setup-python.sh");
            }
            eprintln!("skipped: no reference Python; run scripts/setup-python.sh");
            None
        }
    }
}

/// Runs a Python snippet with the reference interpreter; returns stdout bytes.
pub fn run_python(py: &PathBuf, code: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(py)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
