//! What the integration-test binaries share (each `tests/<area>/main.rs` includes this folder as
//! `mod support`): where the built binary, the repository and the reference Python are, the
//! onnxruntime library of the `ort` tests, the `arm-sim` helpers of the link tests, synthetic
//! registration scenes, and the fake loop stages (frame source, vision encoder, language
//! model, action sink) of the in-process `run_loop` tests.
//!
//! Nothing here changes process-wide state (environment, working directory, signal handlers):
//! the tests of an area share one process.
// Not every binary uses every helper.
#![allow(dead_code, unused_imports)]

pub mod fakes;
pub mod link;
pub mod ort;
pub mod python;
pub mod register_scene;
pub mod triton;

use std::path::PathBuf;

pub use ort::ort_library;
pub use python::{reference_python, run_python, venv_python};

/// Path of the built `spatialbot-edge` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spatialbot-edge"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
