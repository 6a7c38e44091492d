//! The engines that run the three graphs of a model folder, behind one trait.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ModelError, ModelFolder};

#[cfg(feature = "ort")]
pub mod ort;
#[cfg(feature = "tract")]
pub mod tract;
#[cfg(feature = "cuda")]
pub mod tract_cuda;
pub mod triton;

pub use triton::{RemoteCounts, RemoteStats, TritonConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// tract, pure Rust, CPU (the default build).
    Tract,
    /// onnxruntime loaded at run time (cargo feature `ort`).
    Ort,
    /// tract's CUDA runtime (cargo feature `cuda`).
    #[serde(rename = "tract-cuda")]
    TractCuda,
    /// A Triton Inference Server over KServe v2 gRPC (cargo feature `triton`, on by default),
    /// with the next backend of the order standing in call by call.
    Triton,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tract" => Ok(BackendKind::Tract),
            "ort" => Ok(BackendKind::Ort),
            "tract-cuda" => Ok(BackendKind::TractCuda),
            "triton" => Ok(BackendKind::Triton),
            other => Err(format!(
                "unknown backend {other:?}: use tract, ort, tract-cuda or triton"
            )),
        }
    }
}

/// One entry of a board's backend order: an engine and, for onnxruntime, its execution
/// provider (`tract-cpu`, `ort-tensorrt`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BackendChoice {
    /// tract, pure Rust, CPU. Always built in.
    #[serde(rename = "tract-cpu")]
    TractCpu,
    /// tract's CUDA runtime (feature `cuda`).
    #[serde(rename = "tract-cuda")]
    TractCuda,
    /// onnxruntime, CPU execution provider (feature `ort`).
    #[serde(rename = "ort-cpu")]
    OrtCpu,
    /// onnxruntime, CUDA execution provider (feature `ort`).
    #[serde(rename = "ort-cuda")]
    OrtCuda,
    /// onnxruntime, TensorRT execution provider (feature `ort`).
    #[serde(rename = "ort-tensorrt")]
    OrtTensorrt,
    /// A Triton Inference Server (`[backend.triton]` says where); the entries after it run
    /// what the server does not answer in time.
    #[serde(rename = "triton")]
    Triton,
}

impl BackendChoice {
    pub const ALL: [BackendChoice; 6] = [
        Self::TractCpu,
        Self::TractCuda,
        Self::OrtCpu,
        Self::OrtCuda,
        Self::OrtTensorrt,
        Self::Triton,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TractCpu => "tract-cpu",
            Self::TractCuda => "tract-cuda",
            Self::OrtCpu => "ort-cpu",
            Self::OrtCuda => "ort-cuda",
            Self::OrtTensorrt => "ort-tensorrt",
            Self::Triton => "triton",
        }
    }

    /// The engine that runs this choice.
    pub fn engine(self) -> BackendKind {
        match self {
            Self::TractCpu => BackendKind::Tract,
            Self::TractCuda => BackendKind::TractCuda,
            Self::OrtCpu | Self::OrtCuda | Self::OrtTensorrt => BackendKind::Ort,
            Self::Triton => BackendKind::Triton,
        }
    }

    /// The onnxruntime execution provider (`None` for the tract engines).
    pub fn provider(self) -> Option<Provider> {
        match self {
            Self::TractCpu | Self::TractCuda | Self::Triton => None,
            Self::OrtCpu => Some(Provider::Cpu),
            Self::OrtCuda => Some(Provider::Cuda),
            Self::OrtTensorrt => Some(Provider::Tensorrt),
        }
    }

    pub fn is_cpu(self) -> bool {
        matches!(self, Self::TractCpu | Self::OrtCpu)
    }

    /// Runs on another machine (the inference server).
    pub fn is_remote(self) -> bool {
        self == Self::Triton
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// onnxruntime execution providers, tried in the configured order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// TensorRT, with engine and timing caches.
    Tensorrt,
    Cuda,
    Cpu,
}

impl Provider {
    /// The name onnxruntime gives it (`GetAvailableProviders`).
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Tensorrt => "TensorrtExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::Cpu => "CPUExecutionProvider",
        }
    }

    pub fn is_gpu(self) -> bool {
        self != Provider::Cpu
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Tensorrt => "TensorRT",
            Provider::Cuda => "CUDA",
            Provider::Cpu => "CPU",
        })
    }
}

impl std::str::FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tensorrt" | "trt" => Ok(Provider::Tensorrt),
            "cuda" => Ok(Provider::Cuda),
            "cpu" => Ok(Provider::Cpu),
            other => Err(format!(
                "unknown execution provider {other:?}: use tensorrt, cuda or cpu"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrtConfig {
    /// `libonnxruntime.so`; `None` = `ORT_DYLIB_PATH`, then the dynamic loader's path.
    pub library: Option<PathBuf>,
    pub providers: Vec<Provider>,
    /// May the CPU provider take over when a GPU provider listed before it failed to register?
    /// A GPU provider may always give way to the next GPU provider of the list.
    pub allow_cpu_fallback: bool,
    /// TensorRT builds fp16 engines.
    pub tensorrt_fp16: bool,
    /// TensorRT engine and timing caches; `None` = `<model folder>/.trt-cache`. Engines go in a
    /// sub-folder named by [`engine_cache_key`].
    pub cache_dir: Option<PathBuf>,
}

impl Default for OrtConfig {
    fn default() -> Self {
        OrtConfig {
            library: None,
            providers: vec![Provider::Cpu],
            allow_cpu_fallback: false,
            tensorrt_fp16: true,
            cache_dir: None,
        }
    }
}

impl OrtConfig {
    /// The library to load: the configured path, else `ORT_DYLIB_PATH`, else `libonnxruntime.so`
    /// on the dynamic loader's path.
    pub fn library_path(&self) -> PathBuf {
        self.library
            .clone()
            .or_else(|| {
                std::env::var_os("ORT_DYLIB_PATH")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// Threads for matrix products; 0 = all cores.
    pub threads: usize,
    pub ort: OrtConfig,
    /// Loaded instead when this backend cannot start (its library or provider is missing), as a
    /// board profile with `cpu_fallback = true` allows. A bad model folder is never retried.
    /// For `triton`: loaded beside it, and runs each call the server does not answer in time.
    pub fallback: Option<Box<BackendConfig>>,
    /// The server, for `kind = Triton`.
    pub triton: Option<TritonConfig>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            kind: BackendKind::Tract,
            threads: 0,
            ort: OrtConfig::default(),
            fallback: None,
            triton: None,
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

    /// The engines for an ordered list of backend choices (a board profile's `backend.order`):
    /// consecutive `ort-*` entries become one onnxruntime provider list, and each engine falls
    /// back to the next. `ort` is the onnxruntime template (library, caches, CPU fallback);
    /// its provider list is replaced.
    pub fn from_order(
        order: &[BackendChoice],
        threads: usize,
        ort: &OrtConfig,
        triton: Option<&TritonConfig>,
    ) -> BackendConfig {
        let mut groups: Vec<BackendConfig> = Vec::new();
        for choice in order {
            match (choice.provider(), groups.last_mut()) {
                (Some(p), Some(last)) if last.kind == BackendKind::Ort => {
                    last.ort.providers.push(p)
                }
                (provider, _) => groups.push(BackendConfig {
                    kind: choice.engine(),
                    threads,
                    ort: OrtConfig {
                        providers: vec![provider.unwrap_or(Provider::Cpu)],
                        ..ort.clone()
                    },
                    fallback: None,
                    triton: triton.filter(|_| choice.is_remote()).cloned(),
                }),
            }
        }
        let mut config: Option<BackendConfig> = None;
        for mut group in groups.into_iter().rev() {
            group.fallback = config.map(Box::new);
            config = Some(group);
        }
        config.unwrap_or_default()
    }
}

/// Where TensorRT engines built for one model on one machine live: a folder name from the model
/// folder's fingerprint, the TensorRT version and the GPU (name and compute capability), so an
/// engine is never reused by another TensorRT or GPU (TensorRT refuses or mis-runs such engines).
pub fn engine_cache_key(
    model_fingerprint: &str,
    tensorrt_version: &str,
    gpu_name: &str,
    compute_capability: (u32, u32),
) -> String {
    let gpu: String = gpu_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let gpu = gpu.trim_matches('-');
    format!(
        "{model_fingerprint}-trt{tensorrt_version}-{gpu}-sm{}{}",
        compute_capability.0, compute_capability.1
    )
}

/// The oldest onnxruntime this build talks to: the `api-17` feature of the `ort` crate.
pub const ORT_MIN_VERSION: (u32, u32) = (1, 17);

/// Where to get a usable onnxruntime on this machine's architecture.
pub fn onnxruntime_install_hint() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "on a Jetson install the onnxruntime-gpu wheel built for your JetPack (Jetson AI Lab pip index or NVIDIA's Jetson Zoo) and point ORT_DYLIB_PATH at its onnxruntime/capi/libonnxruntime.so.*"
    } else {
        "install the PyPI wheel (`pip install 'onnxruntime>=1.20'`; wheels from 1.20 on ship onnxruntime/capi/libonnxruntime.so.*, older ones have no such library) and point ORT_DYLIB_PATH at that file"
    }
}

/// Parses onnxruntime's version string (`GetVersionString`, e.g. `1.32.0`) and refuses one
/// older than [`ORT_MIN_VERSION`], saying what is needed and where to get it.
pub fn check_onnxruntime_version(
    library: &Path,
    version: &str,
) -> Result<(u32, u32, u32), ModelError> {
    let fail = |reason: String| ModelError::Library {
        library: library.display().to_string(),
        reason,
    };
    let mut parts = version.trim().split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
    });
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return Err(fail(format!(
            "reports version {version:?}, which is not MAJOR.MINOR.PATCH; it is not a released onnxruntime: {}",
            onnxruntime_install_hint()
        )));
    };
    let patch = parts.next().and_then(Result::ok).unwrap_or(0);
    if (major, minor) < ORT_MIN_VERSION {
        return Err(fail(format!(
            "is onnxruntime {version}, too old: this build needs onnxruntime {}.{} or newer; {}",
            ORT_MIN_VERSION.0,
            ORT_MIN_VERSION.1,
            onnxruntime_install_hint()
        )));
    }
    Ok((major, minor, patch))
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
    #[cfg_attr(not(any(feature = "tract", feature = "ort")), allow(dead_code))]
    pub(crate) inner: Box<dyn Any + Send>,
}

impl KvCache {
    /// The backend's own cache state; a cache made by another backend is an input error.
    #[cfg_attr(not(any(feature = "tract", feature = "ort")), allow(dead_code))]
    pub(crate) fn state_mut<T: 'static>(&mut self) -> Result<&mut T, ModelError> {
        self.inner
            .downcast_mut::<T>()
            .ok_or_else(|| ModelError::Input("a KV cache from another backend".into()))
    }
}

/// What every backend's `decode` checks first: `len > 0` positions of `hidden` values each.
#[cfg_attr(not(any(feature = "tract", feature = "ort")), allow(dead_code))]
pub(crate) fn check_decode_input(
    embeds: &[f32],
    len: usize,
    hidden: usize,
) -> Result<(), ModelError> {
    if embeds.len() != len * hidden || len == 0 {
        return Err(ModelError::Input(format!(
            "{} embedding values for {len} positions of {hidden}",
            embeds.len()
        )));
    }
    Ok(())
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
    /// A remote backend's counters (calls, fall-backs, bytes); `None` for local backends.
    fn remote_stats(&self) -> Option<std::sync::Arc<RemoteStats>> {
        None
    }
}

/// Loads the backend `config` names; when it cannot start and `config.fallback` is set, loads
/// that one instead (with a warning saying why).
pub fn load(folder: &ModelFolder, config: &BackendConfig) -> Result<Box<dyn Backend>, ModelError> {
    if config.kind == BackendKind::Triton {
        return load_triton(folder, config);
    }
    match load_one(folder, config) {
        Err(e) if !e.is_bad_input() && config.fallback.is_some() => {
            let Some(next) = config.fallback.as_deref() else {
                return Err(e);
            };
            tracing::warn!(
                "backend {} cannot start ({e}); falling back to {}",
                config.kind.as_str(),
                next.kind.as_str()
            );
            load(folder, next)
        }
        other => other,
    }
}

/// The Triton backend with the rest of the order loaded beside it as its local stand-in.
#[cfg(feature = "triton")]
fn load_triton(
    folder: &ModelFolder,
    config: &BackendConfig,
) -> Result<Box<dyn Backend>, ModelError> {
    let Some(server) = config.triton.as_ref() else {
        return Err(ModelError::Input(
            "the triton backend needs a server: [backend.triton] url".into(),
        ));
    };
    let local = match config.fallback.as_deref() {
        Some(next) => Some(load(folder, next)?),
        None => None,
    };
    Ok(Box::new(triton::TritonBackend::load(
        folder, server, local,
    )?))
}

#[cfg(not(feature = "triton"))]
fn load_triton(
    _folder: &ModelFolder,
    _config: &BackendConfig,
) -> Result<Box<dyn Backend>, ModelError> {
    Err(ModelError::NotBuilt {
        backend: "triton".into(),
        reason: triton::TRITON_UNAVAILABLE.into(),
    })
}

#[cfg_attr(not(any(feature = "tract", feature = "ort")), allow(unused_variables))]
fn load_one(folder: &ModelFolder, config: &BackendConfig) -> Result<Box<dyn Backend>, ModelError> {
    match config.kind {
        #[cfg(feature = "tract")]
        BackendKind::Tract => Ok(Box::new(tract::TractBackend::load(folder, config)?)),
        #[cfg(not(feature = "tract"))]
        BackendKind::Tract => Err(ModelError::NotBuilt {
            backend: "tract".into(),
            reason: "this binary was built without tract; rebuild with the default features".into(),
        }),
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Box::new(ort::OrtBackend::load(folder, config)?)),
        #[cfg(not(feature = "ort"))]
        BackendKind::Ort => Err(ModelError::NotBuilt {
            backend: "ort".into(),
            reason:
                "this binary was built without onnxruntime support; rebuild with `--features ort`"
                    .into(),
        }),
        #[cfg(feature = "cuda")]
        BackendKind::TractCuda => Ok(Box::new(tract_cuda::TractCudaBackend::load(
            folder, config,
        )?)),
        #[cfg(not(feature = "cuda"))]
        BackendKind::TractCuda => Err(ModelError::NotBuilt {
            backend: "tract-cuda".into(),
            reason: TRACT_CUDA_UNAVAILABLE.into(),
        }),
        BackendKind::Triton => load_triton(folder, config),
    }
}

/// Why a build without the `cuda` feature has no tract CUDA backend.
pub const TRACT_CUDA_UNAVAILABLE: &str = "this binary was built without tract's CUDA runtime; rebuild with `--features cuda` (needs the NVIDIA driver, CUDA 12.2+ with NVRTC, cuBLAS and cuDNN at run time), or use the ort backend with the CUDA or TensorRT provider (`--features ort`)";

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::Ort => "ort",
            BackendKind::TractCuda => "tract-cuda",
            BackendKind::Triton => "triton",
        }
    }
}

/// Whether a backend can run here, for `doctor` and `devices`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BackendProbe {
    pub backend: &'static str,
    /// Compiled into this binary.
    pub compiled: bool,
    /// Compiled in and its runtime libraries load.
    pub usable: bool,
    /// The runtime's version, when known.
    pub version: Option<String>,
    /// The library it loaded (onnxruntime).
    pub library: Option<String>,
    /// Execution providers the library offers (onnxruntime's `GetAvailableProviders`).
    pub providers: Vec<String>,
    pub detail: String,
    /// What to do when it is not usable; empty otherwise.
    pub fix: String,
}

/// Every backend this project has: compiled in or not, and whether its libraries load here.
/// `ort_library` is the profile's `onnxruntime_library` (else `ORT_DYLIB_PATH`, then the loader path).
pub fn probe(ort_library: Option<&Path>) -> Vec<BackendProbe> {
    let tract = BackendProbe {
        backend: "tract",
        compiled: true,
        usable: true,
        version: Some("0.23".into()),
        library: None,
        providers: vec!["cpu".into()],
        detail: format!(
            "pure Rust, CPU, {} threads available",
            BackendConfig::default().thread_count()
        ),
        fix: String::new(),
    };
    let ort_config = OrtConfig {
        library: ort_library.map(Path::to_path_buf),
        ..OrtConfig::default()
    };
    let library = ort_config.library_path();
    #[cfg(feature = "ort")]
    let ort = match ort::probe_library(&library) {
        Ok(found) => BackendProbe {
            backend: "ort",
            compiled: true,
            usable: true,
            detail: format!(
                "onnxruntime {} from {}; providers {}",
                found.version,
                found.path.display(),
                found.providers.join(", ")
            ),
            version: Some(found.version),
            library: Some(found.path.display().to_string()),
            providers: found.providers,
            fix: String::new(),
        },
        Err(e) => BackendProbe {
            backend: "ort",
            compiled: true,
            usable: false,
            version: None,
            library: Some(library.display().to_string()),
            providers: Vec::new(),
            detail: e.to_string(),
            fix: format!(
                "set ORT_DYLIB_PATH (or the profile's backend.onnxruntime_library) to a libonnxruntime.so {}.{} or newer: {}",
                ORT_MIN_VERSION.0,
                ORT_MIN_VERSION.1,
                onnxruntime_install_hint()
            ),
        },
    };
    #[cfg(not(feature = "ort"))]
    let ort = BackendProbe {
        backend: "ort",
        compiled: false,
        usable: false,
        version: None,
        library: Some(library.display().to_string()),
        providers: Vec::new(),
        detail: "not built in".into(),
        fix: "rebuild with `cargo build --release --features ort`".into(),
    };
    #[cfg(feature = "cuda")]
    let cuda = tract_cuda::probe();
    #[cfg(not(feature = "cuda"))]
    let cuda = BackendProbe {
        backend: "tract-cuda",
        compiled: false,
        usable: false,
        version: None,
        library: None,
        providers: Vec::new(),
        detail: "not built in".into(),
        fix: TRACT_CUDA_UNAVAILABLE.into(),
    };
    let triton = BackendProbe {
        backend: "triton",
        compiled: cfg!(feature = "triton"),
        usable: cfg!(feature = "triton"),
        version: None,
        library: None,
        providers: Vec::new(),
        detail: if cfg!(feature = "triton") {
            "KServe v2 gRPC client (TLS with https://); a server is checked by `doctor` (the profile's [backend.triton]) or `devices --triton URL`".into()
        } else {
            "not built in".into()
        },
        fix: if cfg!(feature = "triton") {
            String::new()
        } else {
            triton::TRITON_UNAVAILABLE.into()
        },
    };
    vec![tract, ort, cuda, triton]
}
