//! Inference: model folders, backends, tokenizer, prompt, generation and the Depth API.
//!
//! # Using it
//!
//! ```no_run
//! use spatialbot_edge::model::{BackendConfig, Engine, GenerateOptions, ImageTensor, ModelFolder};
//! # fn demo(rgb: ImageTensor, depth: ImageTensor) -> Result<(), spatialbot_edge::model::ModelError> {
//! let folder = ModelFolder::open("models/tiny-spatialbot")?;       // manifest + sha256 of every file
//! let mut engine = Engine::load(&folder, &BackendConfig::default())?; // graphs loaded and optimised once
//! let images = engine.encode_images(&[rgb, depth])?;                // one vision run for the batch
//! let prompt = engine.prompt("How far is the cup?", images.len())?; // chunked tokenisation, no BOS
//! let answer = engine.generate(&prompt, &images, &GenerateOptions::default(), &mut |_token| {})?;
//! println!("{} ({} tokens, {:?}/token)", answer.text, answer.token_ids.len(), answer.timings.mean_decode());
//! # Ok(()) }
//! ```
//!
//! - [`ModelFolder::open`] reads `manifest.toml` (models/MANIFEST.md) and refuses a folder whose
//!   files disagree with their sha256; [`Engine::load`] also checks each graph's inputs and
//!   outputs against the manifest's shapes, naming the file on any mismatch.
//! - Images enter as normalised `f32 [3,S,S]` tensors ([`ImageTensor`], made by
//!   `crate::preprocess`). [`ImageEmbedding`]s are cheap to clone (shared storage): a control loop
//!   encodes each frame once and reuses the embedding while the frame stays in its history.
//! - A [`Prompt`] is a list of token-id chunks and image slots ([`PromptPiece`]); slot `k` takes
//!   the `k`-th embedding passed to [`Engine::generate`]. [`prompt::build`] makes one from the
//!   manifest's template; callers with their own text (the policy's instruction) use
//!   [`Engine::prompt_from_text`] or build pieces themselves with [`Engine::tokenizer`].
//! - [`Session`] keeps one KV cache across prefill and decode and across turns: the Depth API
//!   loop ([`depth_api`], [`vqa`]) appends the tool's reply to the same session.
//! - Backends sit behind [`backend::Backend`]: tract (default, CPU) and onnxruntime (`ort`
//!   feature, TensorRT → CUDA → CPU providers).

pub mod backend;
pub mod constrain;
pub mod depth_api;
pub mod engine;
pub mod folder;
pub mod grammar;
pub mod manifest;
pub mod npy;
pub mod prompt;
pub mod sampling;
pub mod tokenizer;
pub mod validate;
pub mod vqa;

use std::path::PathBuf;

pub use backend::{BackendChoice, BackendConfig, BackendKind};
pub use engine::{
    Engine, FinishReason, GenerateOptions, Generation, GenerationTimings, ImageEmbedding,
    ImageTensor, Overflow, Session, Token,
};
pub use folder::ModelFolder;
pub use grammar::{Grammar, ValueRange};
pub use manifest::Manifest;
pub use prompt::{Prompt, PromptPiece};
pub use sampling::Sampling;
pub use tokenizer::TextTokenizer;

/// What can go wrong loading or running a model. Errors a user can cause name the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {reason}", file.display())]
    Io { file: PathBuf, reason: String },
    #[error("{file}: {reason}")]
    Manifest { file: String, reason: String },
    #[error(
        "{}: sha256 is {actual} but the manifest says {expected}; the file changed after export: re-export the folder or restore the file",
        file.display()
    )]
    HashMismatch {
        file: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: {reason}", file.display())]
    Graph { file: PathBuf, reason: String },
    #[error("{}: {reason}", file.display())]
    Tokenizer { file: PathBuf, reason: String },
    #[error("bad input: {0}")]
    Input(String),
    #[error("the prompt is {len} positions long but the context limit is {limit}; shorten the question or use fewer images")]
    ContextOverflow { len: usize, limit: usize },
    #[error("{library}: {reason}")]
    Library { library: String, reason: String },
    #[error("backend {backend}: {reason}")]
    Backend { backend: String, reason: String },
    /// The backend is not compiled into this binary (a cargo feature is off).
    #[error("backend {backend}: {reason}")]
    NotBuilt { backend: String, reason: String },
}

impl ModelError {
    /// True when the backend asked for is not in this build: the profile's or the command
    /// line's choice to fix (exit 2), though a later backend of the order may stand in.
    pub fn is_not_built(&self) -> bool {
        matches!(self, ModelError::NotBuilt { .. })
    }

    /// True when the error is the user's to fix (a bad file or argument) rather than a failure.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ModelError::Io { .. }
                | ModelError::Manifest { .. }
                | ModelError::HashMismatch { .. }
                | ModelError::Graph { .. }
                | ModelError::Tokenizer { .. }
                | ModelError::Input(_)
                | ModelError::ContextOverflow { .. }
        )
    }
}
