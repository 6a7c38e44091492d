//! Models and backends: the reference cases on tract and onnxruntime (`ort` feature), tract's
//! CUDA runtime (`cuda` feature), tokenizer and prompts, policy parsing, backend configuration,
//! model errors and `ask` end to end.
//!
//! One test binary per area (a module per former test file); `tests/support` is shared by all.

#[path = "../support/mod.rs"]
mod support;

mod ask_e2e;
mod backend_config;
mod backend_cuda;
mod backend_ort;
mod backend_triton;
mod constrained;
mod model_errors;
mod model_reference;
mod model_tokenizer;
mod policy_reference;
mod sim_spatialbot;
mod tract_fullsize_reference;
