//! onnxruntime, loaded at run time (`load-dynamic`): execution providers in the configured order
//! (TensorRT with engine and timing caches → CUDA → CPU). The KV cache travels as explicit
//! tensors: each step's outputs are the next step's inputs.
//!
//! On the CPU provider (measured on the full-size policy, docs/performance.md, full-size models):
//! - the arena allocator is on. The `ort` crate's CPU provider turns it off by default, and glibc
//!   (with the binary's malloc thresholds, src/memory.rs) then serves every tensor. One `run`
//!   step of the full-size policy (a ~2,330-token prefill, then 128 tokens): peak RSS 4.63 GiB
//!   with the arena, 6.57 GiB without, generation 25 s against 65 s (one after the other);
//! - a long prefill runs in chunks of [`PREFILL_CHUNK`] positions, each attending to the cache
//!   the earlier chunks wrote. The attention scores of one pass are `heads × L × (past + L)`
//!   floats (16 × 2,300² × 4 B = 338 MB per tensor for the policy, several alive at once); chunks
//!   bound them and skip the masked upper blocks. tools/export/bench_fullsize.py does the same.
//!
//! The `ort` crate keeps one library and one environment per process; this module loads them
//! once ([`environment`]) and refuses a second, different library instead of silently reusing
//! the first.

use std::ffi::{c_char, c_int, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::ep;
use ort::session::Session;
use ort::value::Tensor;

/// Positions per decoder run when a prefill is longer (CPU provider).
pub const PREFILL_CHUNK: usize = 512;

use super::{
    check_onnxruntime_version, engine_cache_key, onnxruntime_install_hint, Backend, BackendConfig,
    KvCache, LoadStep, Provider, ORT_MIN_VERSION,
};
use crate::model::{ModelError, ModelFolder};

struct Graph {
    file: PathBuf,
    session: Session,
    provider: Provider,
}

pub struct OrtBackend {
    vision: Graph,
    embed: Graph,
    decoder: Graph,
    library: PathBuf,
    version: String,
    image_size: usize,
    hidden: usize,
    vocab: usize,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    threads: usize,
    /// Longest decoder run; a longer `decode` call runs in chunks of this many positions.
    prefill_chunk: usize,
    steps: Vec<LoadStep>,
}

/// past_key_i then past_value_i, `[1, KV, past, D]`: the previous step's outputs, fed back
/// as inputs without a copy.
struct OrtCache {
    tensors: Vec<ort::value::DynValue>,
}

fn backend_error(reason: impl std::fmt::Display) -> ModelError {
    ModelError::Backend {
        backend: "ort".into(),
        reason: reason.to_string(),
    }
}

fn graph_error(file: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Graph {
        file: file.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn library_error(library: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Library {
        library: library.display().to_string(),
        reason: reason.to_string(),
    }
}

/// An onnxruntime library that loaded and passed the version check.
#[derive(Clone, Debug, PartialEq)]
pub struct OrtLibrary {
    pub path: PathBuf,
    pub version: String,
    /// `GetAvailableProviders`, e.g. `CPUExecutionProvider`.
    pub providers: Vec<String>,
}

/// Opens `path` on its own (not through the `ort` crate's process-wide handle), reads its version
/// and the execution providers it was built with. Errors name the library and say what to install.
pub fn probe_library(path: &Path) -> Result<OrtLibrary, ModelError> {
    if path.components().count() > 1 && !path.exists() {
        return Err(library_error(
            path,
            format!(
                "not found; {} (or set the board profile's backend.onnxruntime_library, or --ort-library)",
                onnxruntime_install_hint()
            ),
        ));
    }
    // SAFETY: loading runs the library's initialisers; onnxruntime's are safe to run at any time.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
        library_error(
            path,
            format!(
                "cannot be loaded ({e}); it must be onnxruntime's shared library: {}",
                onnxruntime_install_hint()
            ),
        )
    })?;
    // SAFETY: the symbol's type is OrtGetApiBase's C signature.
    let get_base = unsafe {
        lib.get::<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase>(b"OrtGetApiBase")
    }
    .map_err(|_| {
        library_error(
            path,
            format!(
                "does not export OrtGetApiBase: it is not onnxruntime's C library; {}",
                onnxruntime_install_hint()
            ),
        )
    })?;
    // SAFETY: OrtGetApiBase takes nothing and returns a static table (or null).
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err(library_error(path, "OrtGetApiBase returned nothing"));
    }
    // SAFETY: base is onnxruntime's static OrtApiBase; the version string is static and NUL-terminated.
    let version = unsafe {
        let text = ((*base).GetVersionString)();
        if text.is_null() {
            return Err(library_error(path, "reports no version"));
        }
        CStr::from_ptr(text).to_string_lossy().into_owned()
    };
    check_onnxruntime_version(path, &version)?;
    // SAFETY: GetApi returns null for an API level the library does not offer.
    let api = unsafe { ((*base).GetApi)(ORT_MIN_VERSION.1) };
    if api.is_null() {
        return Err(library_error(
            path,
            format!(
                "onnxruntime {version} does not offer C API level {}; {}",
                ORT_MIN_VERSION.1,
                onnxruntime_install_hint()
            ),
        ));
    }
    let mut names: *mut *mut c_char = std::ptr::null_mut();
    let mut count: c_int = 0;
    // SAFETY: api is a valid OrtApi of level ≥ 17; GetAvailableProviders (API 1) fills an array
    // the library owns until ReleaseAvailableProviders.
    let providers = unsafe {
        let status = ((*api).GetAvailableProviders)(&mut names, &mut count);
        if !status.0.is_null() {
            let message = CStr::from_ptr(((*api).GetErrorMessage)(status.0))
                .to_string_lossy()
                .into_owned();
            ((*api).ReleaseStatus)(status.0);
            return Err(library_error(
                path,
                format!("GetAvailableProviders failed: {message}"),
            ));
        }
        let mut out = Vec::new();
        for k in 0..count.max(0) as usize {
            let name = *names.add(k);
            if !name.is_null() {
                out.push(CStr::from_ptr(name).to_string_lossy().into_owned());
            }
        }
        let status = ((*api).ReleaseAvailableProviders)(names, count);
        if !status.0.is_null() {
            ((*api).ReleaseStatus)(status.0);
        }
        out
    };
    // onnxruntime does not support being unloaded and loaded again in one process.
    std::mem::forget(lib);
    Ok(OrtLibrary {
        path: path.to_path_buf(),
        version,
        providers,
    })
}

struct Loaded {
    library: OrtLibrary,
    environment: ort::environment::Environment,
}

static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// The process's onnxruntime environment, loading `library` on first use. A different library
/// afterwards is refused: the `ort` crate binds one library per process.
fn environment(library: &Path) -> Result<(OrtLibrary, ort::environment::Environment), ModelError> {
    let mut loaded = LOADED
        .lock()
        .map_err(|_| backend_error("an earlier onnxruntime load panicked"))?;
    if let Some(l) = loaded.as_ref() {
        if l.library.path != library {
            probe_library(library)?;
            return Err(library_error(
                library,
                format!(
                    "this process already runs onnxruntime from {}; one library per process: use that one, or start another process",
                    l.library.path.display()
                ),
            ));
        }
        return Ok((l.library.clone(), l.environment.clone()));
    }
    let found = probe_library(library)?;
    ort::init_from(library)
        .map_err(|e| library_error(library, e))?
        .with_name("spatialbot-edge")
        .build()
        .map_err(|e| library_error(library, format!("cannot create an environment: {e}")))
        .map(|environment| {
            *loaded = Some(Loaded {
                library: found.clone(),
                environment: environment.clone(),
            });
            (found, environment)
        })
}

/// TensorRT's version (`getInferLibVersion` of libnvinfer), e.g. `10.3.0`.
fn tensorrt_version() -> Result<String, String> {
    let mut last = String::new();
    for name in ["libnvinfer.so", "libnvinfer.so.10", "libnvinfer.so.8"] {
        // SAFETY: loading libnvinfer runs its initialisers only.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => {
                // SAFETY: getInferLibVersion is `int32_t getInferLibVersion(void)` (NvInferRuntime.h).
                let version = unsafe {
                    lib.get::<unsafe extern "C" fn() -> i32>(b"getInferLibVersion")
                        .map(|f| f())
                }
                .map_err(|e| format!("{name} has no getInferLibVersion: {e}"))?;
                std::mem::forget(lib);
                return Ok(tensorrt_version_string(version));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("libnvinfer.so (TensorRT) cannot be loaded: {last}"))
}

/// `getInferLibVersion`'s integer as MAJOR.MINOR.PATCH: TensorRT 10 packs it as
/// major·10000 + minor·100 + patch, TensorRT 8 as major·1000 + minor·100 + patch.
pub fn tensorrt_version_string(packed: i32) -> String {
    let v = packed.max(0) as u32;
    let (major, rest) = if v >= 10_000 {
        (v / 10_000, v % 10_000)
    } else {
        (v / 1000, v % 1000)
    };
    format!("{major}.{}.{}", rest / 100, rest % 100)
}

/// The first GPU's name and compute capability, through the CUDA driver (`libcuda.so.1`).
fn gpu_identity() -> Result<(String, (u32, u32)), String> {
    type CuInit = unsafe extern "C" fn(u32) -> c_int;
    type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
    const MAJOR: c_int = 75; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    const MINOR: c_int = 76; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
                             // SAFETY: libcuda's initialisers only; every call below follows cuda.h's signatures.
    unsafe {
        let lib = libloading::Library::new("libcuda.so.1")
            .map_err(|e| format!("the CUDA driver (libcuda.so.1) cannot be loaded: {e}"))?;
        let sym = |e: libloading::Error| format!("libcuda.so.1: {e}");
        let init = lib.get::<CuInit>(b"cuInit").map_err(sym)?;
        let device_get = lib.get::<CuDeviceGet>(b"cuDeviceGet").map_err(sym)?;
        let get_name = lib
            .get::<CuDeviceGetName>(b"cuDeviceGetName")
            .map_err(sym)?;
        let get_attribute = lib
            .get::<CuDeviceGetAttribute>(b"cuDeviceGetAttribute")
            .map_err(sym)?;
        let code = init(0);
        if code != 0 {
            return Err(format!(
                "cuInit failed with CUDA error {code} (no GPU, or the driver does not match)"
            ));
        }
        let mut device: c_int = 0;
        if device_get(&mut device, 0) != 0 {
            return Err("no CUDA device 0".into());
        }
        let mut name = [0 as c_char; 256];
        if get_name(name.as_mut_ptr(), name.len() as c_int, device) != 0 {
            return Err("cuDeviceGetName failed".into());
        }
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        if get_attribute(&mut major, MAJOR, device) != 0
            || get_attribute(&mut minor, MINOR, device) != 0
        {
            return Err("cuDeviceGetAttribute (compute capability) failed".into());
        }
        let name = CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
        std::mem::forget(lib);
        Ok((name, (major.max(0) as u32, minor.max(0) as u32)))
    }
}

/// The TensorRT provider with its caches in `<cache_dir>/<engine_cache_key>`; fails before
/// registration when the key cannot be made (no TensorRT or no GPU), naming what is missing.
fn tensorrt_dispatch(
    folder: &ModelFolder,
    config: &BackendConfig,
) -> Result<(ep::ExecutionProviderDispatch, PathBuf), String> {
    let version = tensorrt_version()?;
    let (gpu, cc) = gpu_identity()?;
    let base = config
        .ort
        .cache_dir
        .clone()
        .unwrap_or_else(|| folder.dir.join(".trt-cache"));
    let dir = base.join(engine_cache_key(&folder.fingerprint(), &version, &gpu, cc));
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the TensorRT cache {}: {e}", dir.display()))?;
    let path = dir.display().to_string();
    let dispatch = ep::TensorRT::default()
        .with_fp16(config.ort.tensorrt_fp16)
        .with_engine_cache(true)
        .with_engine_cache_path(&path)
        .with_timing_cache(true)
        .with_timing_cache_path(&path)
        .build()
        .error_on_failure();
    Ok((dispatch, dir))
}

fn provider_dispatch(
    provider: Provider,
    folder: &ModelFolder,
    config: &BackendConfig,
) -> Result<(ep::ExecutionProviderDispatch, Option<PathBuf>), String> {
    match provider {
        Provider::Tensorrt => tensorrt_dispatch(folder, config).map(|(d, dir)| (d, Some(dir))),
        Provider::Cuda => Ok((ep::CUDA::default().build().error_on_failure(), None)),
        Provider::Cpu => Ok((
            ep::CPU::default()
                .with_arena_allocator(true)
                .build()
                .error_on_failure(),
            None,
        )),
    }
}

/// Runs `work`, logging every 10 s that it is still running (TensorRT engine builds take minutes).
fn with_progress<T>(what: &str, work: impl FnOnce() -> T) -> T {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let started = Instant::now();
        // Without a thread (the process is out of them) the work runs without progress lines.
        let progress = std::thread::Builder::new().spawn_scoped(scope, move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                wait.recv_timeout(Duration::from_secs(10))
            {
                tracing::warn!(
                    "{what}: still running after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        });
        if let Err(e) = progress {
            tracing::debug!("{what}: no progress lines, cannot start a thread: {e}");
        }
        let out = work();
        let _ = done.send(());
        out
    })
}

fn open_graph(
    env: &ort::environment::Environment,
    folder: &ModelFolder,
    file: &Path,
    config: &BackendConfig,
    steps: &mut Vec<LoadStep>,
) -> Result<Graph, ModelError> {
    if !file.exists() {
        return Err(graph_error(
            file,
            "missing: the model folder needs it (models/MANIFEST.md)",
        ));
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let providers = &config.ort.providers;
    if providers.is_empty() {
        return Err(backend_error(
            "no execution provider configured: list tensorrt, cuda or cpu",
        ));
    }
    let mut failed: Vec<String> = Vec::new();
    for &provider in providers {
        if !failed.is_empty() && !provider.is_gpu() && !config.ort.allow_cpu_fallback {
            break;
        }
        let started = Instant::now();
        let attempt = provider_dispatch(provider, folder, config).and_then(|(dispatch, cache)| {
            let builder = Session::builder(env)
                .map_err(|e| e.to_string())?
                .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
                .map_err(|e| e.to_string())?
                .with_intra_threads(config.thread_count())
                .map_err(|e| e.to_string())?
                .with_execution_providers([dispatch])
                .map_err(|e| e.to_string())?;
            Ok((builder, cache))
        });
        let (mut builder, cache) = match attempt {
            Ok(ok) => ok,
            Err(reason) => {
                tracing::warn!(
                    "{name}: execution provider {provider} failed to register: {reason}"
                );
                failed.push(format!("{provider}: {reason}"));
                continue;
            }
        };
        if let Some(dir) = &cache {
            tracing::warn!(
                "{name}: TensorRT builds its engine on the first start (minutes); cached in {}",
                dir.display()
            );
        }
        let session = with_progress(&format!("loading {name} on {provider}"), || {
            builder.commit_from_file(file)
        })
        .map_err(|e| {
            graph_error(
                file,
                format!("onnxruntime cannot load it on {provider}: {e}"),
            )
        })?;
        tracing::info!("{name} runs on onnxruntime {provider}");
        steps.push(LoadStep::new(
            format!("ort: load {name} on {provider}"),
            started.elapsed(),
        ));
        return Ok(Graph {
            file: file.to_path_buf(),
            session,
            provider,
        });
    }
    let cpu_listed_later = providers.contains(&Provider::Cpu) && !config.ort.allow_cpu_fallback;
    Err(backend_error(format!(
        "{name}: no execution provider could be registered ({}){}",
        failed.join("; "),
        if cpu_listed_later {
            "; install the provider's libraries (CUDA, cuDNN, TensorRT and an onnxruntime built with them: onnxruntime-gpu), or allow CPU fallback (board profile cpu_fallback = true, or --cpu-fallback)"
        } else {
            "; install the provider's libraries (CUDA, cuDNN, TensorRT and an onnxruntime built with them: onnxruntime-gpu), or list another provider"
        }
    )))
}

/// Checks a session's input and output names against the model contract.
fn check_names(graph: &Graph, inputs: &[String], outputs: &[String]) -> Result<(), ModelError> {
    let have_in: Vec<String> = graph
        .session
        .inputs()
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    let have_out: Vec<String> = graph
        .session
        .outputs()
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    for name in inputs {
        if !have_in.contains(name) {
            return Err(graph_error(
                &graph.file,
                format!("has no input named {name} (it has {have_in:?})"),
            ));
        }
    }
    for name in outputs {
        if !have_out.contains(name) {
            return Err(graph_error(
                &graph.file,
                format!("has no output named {name} (it has {have_out:?})"),
            ));
        }
    }
    Ok(())
}

impl OrtBackend {
    pub fn load(folder: &ModelFolder, config: &BackendConfig) -> Result<OrtBackend, ModelError> {
        let library = config.ort.library_path();
        let started = Instant::now();
        let (found, env) = environment(&library)?;
        let mut steps = vec![LoadStep::new(
            format!(
                "ort: load onnxruntime {} from {}",
                found.version,
                library.display()
            ),
            started.elapsed(),
        )];
        let m = &folder.manifest;
        let vision = open_graph(
            &env,
            folder,
            &folder.path("vision.onnx"),
            config,
            &mut steps,
        )?;
        check_names(&vision, &["pixel_values".into()], &["image_embeds".into()])?;
        let embed = open_graph(&env, folder, &folder.path("embed.onnx"), config, &mut steps)?;
        check_names(&embed, &["input_ids".into()], &["inputs_embeds".into()])?;
        let decoder = open_graph(
            &env,
            folder,
            &folder.path("decoder.onnx"),
            config,
            &mut steps,
        )?;
        let n = m.llm.num_layers;
        let mut ins = vec![
            "inputs_embeds".to_string(),
            "attention_mask".into(),
            "position_ids".into(),
        ];
        ins.extend((0..n).map(|i| format!("past_key_{i}")));
        ins.extend((0..n).map(|i| format!("past_value_{i}")));
        let mut outs = vec!["logits".to_string()];
        outs.extend((0..n).map(|i| format!("present_key_{i}")));
        outs.extend((0..n).map(|i| format!("present_value_{i}")));
        check_names(&decoder, &ins, &outs)?;
        let prefill_chunk = if decoder.provider == Provider::Cpu {
            PREFILL_CHUNK
        } else {
            usize::MAX
        };
        if decoder.provider == Provider::Cpu {
            tracing::info!(
                "onnxruntime CPU: arena allocator on, memory pattern on, {} intra-op threads, prefill in chunks of {prefill_chunk} positions",
                config.thread_count()
            );
        }
        Ok(OrtBackend {
            vision,
            embed,
            decoder,
            library: found.path,
            version: found.version,
            image_size: m.vision.image_size,
            hidden: m.llm.hidden_size,
            vocab: m.llm.vocab_size,
            layers: n,
            kv_heads: m.llm.num_kv_heads,
            head_dim: m.llm.head_dim,
            threads: config.thread_count(),
            prefill_chunk,
            steps,
        })
    }
}

fn tensor<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
    shape: &[usize],
    data: Vec<T>,
) -> Result<ort::value::DynValue, ModelError> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::from_array((shape, data))
        .map(|t| t.into_dyn())
        .map_err(|e| backend_error(e.to_string()))
}

fn run_error(file: &Path, provider: Provider, e: impl std::fmt::Display) -> ModelError {
    backend_error(format!("{} on {provider} failed: {e}", file.display()))
}

impl Backend for OrtBackend {
    fn describe(&self) -> String {
        format!(
            "onnxruntime {} from {} (vision on {}, embed on {}, decoder on {}; {} threads)",
            self.version,
            self.library.display(),
            self.vision.provider,
            self.embed.provider,
            self.decoder.provider,
            self.threads
        )
    }

    fn load_steps(&self) -> &[LoadStep] {
        &self.steps
    }

    fn vision(&mut self, pixels: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let s = self.image_size;
        if pixels.len() != n * 3 * s * s {
            return Err(ModelError::Input(format!(
                "{} pixel values for {n} images of 3×{s}×{s}",
                pixels.len()
            )));
        }
        let input = tensor(&[n, 3, s, s], pixels.to_vec())?;
        let Graph {
            session,
            file,
            provider,
        } = &mut self.vision;
        let outputs = session
            .run(ort::inputs!["pixel_values" => input])
            .map_err(|e| run_error(file, *provider, e))?;
        let (_, values) = outputs["image_embeds"]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(file, *provider, e))?;
        Ok(values.to_vec())
    }

    fn embed(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let input = tensor(&[1, ids.len()], ids)?;
        let Graph {
            session,
            file,
            provider,
        } = &mut self.embed;
        let outputs = session
            .run(ort::inputs!["input_ids" => input])
            .map_err(|e| run_error(file, *provider, e))?;
        let (_, values) = outputs["inputs_embeds"]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(file, *provider, e))?;
        Ok(values.to_vec())
    }

    fn new_cache(&self) -> Result<KvCache, ModelError> {
        let empty = [1, self.kv_heads, 0, self.head_dim];
        let tensors = (0..2 * self.layers)
            .map(|_| tensor(&empty, Vec::<f32>::new()))
            .collect::<Result<_, _>>()?;
        Ok(KvCache {
            past_len: 0,
            inner: Box::new(OrtCache { tensors }),
        })
    }

    fn decode(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        len: usize,
    ) -> Result<Vec<f32>, ModelError> {
        super::check_decode_input(embeds, len, self.hidden)?;
        let chunk = self.prefill_chunk.max(1);
        let mut logits = Vec::new();
        for part in embeds.chunks(chunk.saturating_mul(self.hidden)) {
            logits = self.decode_run(cache, part, part.len() / self.hidden)?;
        }
        Ok(logits)
    }
}

impl OrtBackend {
    /// One decoder run: appends `len` positions to the cache, returns the last one's logits.
    fn decode_run(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        len: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let past = cache.past_len;
        let state = cache.state_mut::<OrtCache>()?;
        let layers = self.layers;
        let mut inputs: Vec<(
            std::borrow::Cow<'static, str>,
            ort::session::SessionInputValue<'_>,
        )> = vec![
            (
                "inputs_embeds".into(),
                tensor(&[1, len, self.hidden], embeds.to_vec())?.into(),
            ),
            (
                "attention_mask".into(),
                tensor(&[1, past + len], vec![1i64; past + len])?.into(),
            ),
            (
                "position_ids".into(),
                tensor(&[1, len], (past..past + len).map(|p| p as i64).collect())?.into(),
            ),
        ];
        for (i, data) in state.tensors.iter().enumerate() {
            let name = if i < layers {
                format!("past_key_{i}")
            } else {
                format!("past_value_{}", i - layers)
            };
            inputs.push((name.into(), data.into()));
        }
        let Graph {
            session,
            file,
            provider,
        } = &mut self.decoder;
        let mut outputs = session
            .run(inputs)
            .map_err(|e| run_error(file, *provider, e))?;
        let (_, logits) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(file, *provider, e))?;
        if logits.len() != self.vocab {
            return Err(graph_error(
                file,
                format!(
                    "gave {} logits, the vocabulary has {}",
                    logits.len(),
                    self.vocab
                ),
            ));
        }
        let logits = logits.to_vec();
        let mut fresh = Vec::with_capacity(2 * layers);
        for i in 0..2 * layers {
            let name = if i < layers {
                format!("present_key_{i}")
            } else {
                format!("present_value_{}", i - layers)
            };
            let present = outputs
                .remove(name.as_str())
                .ok_or_else(|| run_error(file, *provider, format!("no output {name}")))?;
            fresh.push(present);
        }
        drop(outputs);
        state.tensors = fresh;
        cache.past_len = past + len;
        Ok(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::backend::{BackendKind, OrtConfig};

    fn library() -> Option<PathBuf> {
        let found = std::env::var_os("ORT_DYLIB_PATH")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI: set ORT_DYLIB_PATH to the onnxruntime wheel's library"
            );
            eprintln!("skipped: ORT_DYLIB_PATH is not set");
        }
        found
    }

    fn load(library: PathBuf) -> OrtBackend {
        let folder =
            ModelFolder::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-policy"))
                .unwrap();
        let config = BackendConfig {
            kind: BackendKind::Ort,
            threads: 1,
            ort: OrtConfig {
                library: Some(library),
                providers: vec![Provider::Cpu],
                ..OrtConfig::default()
            },
            fallback: None,
            triton: None,
        };
        OrtBackend::load(&folder, &config).unwrap()
    }

    fn prefill_then_decode(b: &mut OrtBackend, chunk: usize, embeds: &[f32]) -> Vec<Vec<f32>> {
        b.prefill_chunk = chunk;
        let mut cache = b.new_cache().unwrap();
        let len = embeds.len() / b.hidden;
        let mut logits = vec![b.decode(&mut cache, embeds, len).unwrap()];
        for step in 0..3 {
            let row = &embeds[step * b.hidden..(step + 1) * b.hidden];
            logits.push(b.decode(&mut cache, row, 1).unwrap());
        }
        assert_eq!(cache.past_len, len + 3);
        logits
    }

    #[test]
    fn a_prefill_in_chunks_gives_the_logits_of_one_run() {
        let Some(library) = library() else {
            return;
        };
        let mut b = load(library);
        assert_eq!(b.prefill_chunk, PREFILL_CHUNK);
        let len = 37;
        let embeds: Vec<f32> = (0..len * b.hidden)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05)
            .collect();
        let whole = prefill_then_decode(&mut b, usize::MAX, &embeds);
        for chunk in [1, 5, 16, 36] {
            let parts = prefill_then_decode(&mut b, chunk, &embeds);
            for (step, (a, c)) in whole.iter().zip(&parts).enumerate() {
                let worst = a
                    .iter()
                    .zip(c)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst < 1e-4, "chunk {chunk}, step {step}: |Δ| {worst}");
            }
        }
    }
}
