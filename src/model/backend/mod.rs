//! The engines that run the three graphs of a model folder, behind one trait.

use std::any::Any;
use std::path::PathBuf;
use std::time::Duration;

use super::{ModelError, ModelFolder};

#[cfg(feature = "ort")]
pub mod ort;
#[cfg(feature = "tract")]
pub mod tract;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// tract, pure Rust, CPU (the default build).
    Tract,
    /// onnxruntime loaded at run time (cargo feature `ort`).
    Ort,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tract" => Ok(BackendKind::Tract),
            "ort" => Ok(BackendKind::Ort),
            other => Err(format!("unknown backend {other:?}: use tract or ort")),
        }
    }
}

/// onnxruntime execution providers, tried in the configured order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// TensorRT, fp16, with engine and timing caches.
    Tensorrt,
    Cuda,
    Cpu,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrtConfig {
    /// `libonnxruntime.so`; `None` = `ORT_DYLIB_PATH`, then the dynamic loader's path.
    pub library: Option<PathBuf>,
    pub providers: Vec<Provider>,
    /// When a provider fails to register: true = log and try the next, false = error.
    pub allow_fallback: bool,
    /// TensorRT engine and timing caches; `None` = `<model folder>/.trt-cache`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for OrtConfig {
    fn default() -> Self {
        OrtConfig {
            library: None,
            providers: vec![Provider::Cpu],
            allow_fallback: false,
            cache_dir: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// Threads for matrix products; 0 = all cores.
    pub threads: usize,
    pub ort: OrtConfig,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            kind: BackendKind::Tract,
            threads: 0,
            ort: OrtConfig::default(),
        }
    }
}

impl BackendConfig {
    pub fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

/// A load step and how long it took, for the startup log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadStep {
    pub what: String,
    pub millis: f64,
}

impl LoadStep {
    pub fn new(what: impl Into<String>, took: Duration) -> LoadStep {
        LoadStep {
            what: what.into(),
            millis: took.as_secs_f64() * 1e3,
        }
    }
}

/// A decoder's key/value cache, owned by the caller and threaded through `Backend::decode`.
pub struct KvCache {
    /// Positions already in the cache.
    pub past_len: usize,
    pub(crate) inner: Box<dyn Any + Send>,
}

/// Runs a model folder's graphs. Shapes: `vision` takes `n` images `[n,3,S,S]` and returns
/// `[n,T,H]`; `embed` returns `[L,H]`; `decode` appends `L` positions of `[L,H]` embeddings to the
/// cache and returns the last position's logits `[V]`.
pub trait Backend: Send {
    /// Backend, provider(s) and threads, for logs.
    fn describe(&self) -> String;
    /// What loading did and how long each step took.
    fn load_steps(&self) -> &[LoadStep];
    fn vision(&mut self, pixels: &[f32], n: usize) -> Result<Vec<f32>, ModelError>;
    fn embed(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError>;
    fn new_cache(&self) -> Result<KvCache, ModelError>;
    fn decode(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        len: usize,
    ) -> Result<Vec<f32>, ModelError>;
}

/// Loads the backend `config` names.
pub fn load(folder: &ModelFolder, config: &BackendConfig) -> Result<Box<dyn Backend>, ModelError> {
    match config.kind {
        #[cfg(feature = "tract")]
        BackendKind::Tract => Ok(Box::new(tract::TractBackend::load(folder, config)?)),
        #[cfg(not(feature = "tract"))]
        BackendKind::Tract => Err(ModelError::Backend {
            backend: "tract".into(),
            reason: "this binary was built without tract; rebuild with the default features".into(),
        }),
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Box::new(ort::OrtBackend::load(folder, config)?)),
        #[cfg(not(feature = "ort"))]
        BackendKind::Ort => Err(ModelError::Backend {
            backend: "ort".into(),
            reason:
                "this binary was built without onnxruntime support; rebuild with `--features ort`"
                    .into(),
        }),
    }
}
