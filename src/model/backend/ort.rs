//! onnxruntime, loaded at run time (`load-dynamic`): execution providers in the configured order
//! (TensorRT fp16 with engine and timing caches → CUDA → CPU). The KV cache travels as explicit
//! tensors, copied back in after each step.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ort::ep;
use ort::session::Session;
use ort::value::Tensor;

use super::{Backend, BackendConfig, KvCache, LoadStep, Provider};
use crate::model::{ModelError, ModelFolder};

/// The oldest onnxruntime this build talks to (the `api-17` feature).
pub const MIN_ORT_MINOR: u32 = 17;

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
    image_size: usize,
    hidden: usize,
    vocab: usize,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    steps: Vec<LoadStep>,
}

struct OrtCache {
    /// past_key_i then past_value_i: data of shape [1, KV, past, D].
    tensors: Vec<Vec<f32>>,
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

/// The library `config` names, else `ORT_DYLIB_PATH`, else `libonnxruntime.so` on the loader path.
pub fn library_path(config: &BackendConfig) -> PathBuf {
    config
        .ort
        .library
        .clone()
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
}

fn init_library(library: &Path) -> Result<ort::environment::Environment, ModelError> {
    let lib_error = |reason: String| ModelError::Library {
        library: library.display().to_string(),
        reason,
    };
    if library.components().count() > 1 && !library.exists() {
        return Err(lib_error(format!(
            "not found; install onnxruntime ≥ 1.{MIN_ORT_MINOR} (e.g. `pip install onnxruntime`) and point ORT_DYLIB_PATH at its libonnxruntime.so"
        )));
    }
    let builder = ort::init_from(library).map_err(|e| {
        let text = e.to_string();
        if text.contains("expected version") {
            lib_error(format!("{text}; this build needs onnxruntime ≥ 1.{MIN_ORT_MINOR}: install a newer one"))
        } else {
            lib_error(format!("{text}; it must be onnxruntime ≥ 1.{MIN_ORT_MINOR}'s libonnxruntime.so (wheels before 1.20 do not ship one)"))
        }
    })?;
    builder
        .with_name("spatialbot-edge")
        .build()
        .map_err(|e| lib_error(e.to_string()))
}

fn provider_dispatch(provider: Provider, cache_dir: &Path) -> ep::ExecutionProviderDispatch {
    match provider {
        Provider::Tensorrt => ep::TensorRT::default()
            .with_fp16(true)
            .with_engine_cache(true)
            .with_engine_cache_path(cache_dir.display())
            .with_timing_cache(true)
            .with_timing_cache_path(cache_dir.display())
            .build()
            .error_on_failure(),
        Provider::Cuda => ep::CUDA::default().build().error_on_failure(),
        Provider::Cpu => ep::CPU::default().build().error_on_failure(),
    }
}

fn open_graph(
    env: &ort::environment::Environment,
    file: &Path,
    config: &BackendConfig,
    cache_dir: &Path,
    steps: &mut Vec<LoadStep>,
) -> Result<Graph, ModelError> {
    if !file.exists() {
        return Err(graph_error(
            file,
            "missing: the model folder needs it (models/MANIFEST.md)",
        ));
    }
    let started = Instant::now();
    let mut last_error = String::new();
    for (k, &provider) in config.ort.providers.iter().enumerate() {
        let attempt = Session::builder(env)
            .map_err(|e| backend_error(e.to_string()))?
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
            .and_then(|b| b.with_intra_threads(config.thread_count()))
            .and_then(|b| b.with_execution_providers([provider_dispatch(provider, cache_dir)]));
        match attempt {
            Ok(mut builder) => {
                let session = builder
                    .commit_from_file(file)
                    .map_err(|e| graph_error(file, format!("onnxruntime cannot load it: {e}")))?;
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                tracing::info!("{name} runs on onnxruntime {provider:?}");
                steps.push(LoadStep::new(
                    format!("ort load {name} on {provider:?}"),
                    started.elapsed(),
                ));
                return Ok(Graph {
                    file: file.to_path_buf(),
                    session,
                    provider,
                });
            }
            Err(e) => {
                last_error = e.to_string();
                let more = k + 1 < config.ort.providers.len();
                if !(config.ort.allow_fallback && more) {
                    return Err(backend_error(format!(
                        "execution provider {provider:?} failed to register ({last_error}); install its libraries, or list a fallback and allow it"
                    )));
                }
                tracing::warn!("execution provider {provider:?} failed to register ({last_error}); falling back");
            }
        }
    }
    Err(backend_error(format!(
        "no execution provider configured ({last_error})"
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
        let library = library_path(config);
        let started = Instant::now();
        let env = init_library(&library)?;
        let mut steps = vec![LoadStep::new(
            format!("load {}", library.display()),
            started.elapsed(),
        )];
        let cache_dir = config
            .ort
            .cache_dir
            .clone()
            .unwrap_or_else(|| folder.dir.join(".trt-cache"))
            .join(folder.fingerprint());
        if config.ort.providers.contains(&Provider::Tensorrt) {
            std::fs::create_dir_all(&cache_dir).map_err(|e| ModelError::Io {
                file: cache_dir.clone(),
                reason: format!("cannot create the TensorRT cache: {e}"),
            })?;
        }
        let m = &folder.manifest;
        let vision = open_graph(
            &env,
            &folder.path("vision.onnx"),
            config,
            &cache_dir,
            &mut steps,
        )?;
        check_names(&vision, &["pixel_values".into()], &["image_embeds".into()])?;
        let embed = open_graph(
            &env,
            &folder.path("embed.onnx"),
            config,
            &cache_dir,
            &mut steps,
        )?;
        check_names(&embed, &["input_ids".into()], &["inputs_embeds".into()])?;
        let decoder = open_graph(
            &env,
            &folder.path("decoder.onnx"),
            config,
            &cache_dir,
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
        Ok(OrtBackend {
            vision,
            embed,
            decoder,
            library,
            image_size: m.vision.image_size,
            hidden: m.llm.hidden_size,
            vocab: m.llm.vocab_size,
            layers: n,
            kv_heads: m.llm.num_kv_heads,
            head_dim: m.llm.head_dim,
            steps,
        })
    }
}

fn tensor<T: ort::tensor::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
    shape: &[usize],
    data: Vec<T>,
) -> Result<ort::value::DynValue, ModelError> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::from_array((shape, data))
        .map(|t| t.into_dyn())
        .map_err(|e| backend_error(e.to_string()))
}

fn run_error(graph: &Graph, e: impl std::fmt::Display) -> ModelError {
    backend_error(format!(
        "{} on {:?} failed: {e}",
        graph.file.display(),
        graph.provider
    ))
}

impl Backend for OrtBackend {
    fn describe(&self) -> String {
        format!(
            "onnxruntime from {} (vision on {:?}, embed on {:?}, decoder on {:?})",
            self.library.display(),
            self.vision.provider,
            self.embed.provider,
            self.decoder.provider
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
        let graph = &mut self.vision;
        let outputs = graph
            .session
            .run(ort::inputs!["pixel_values" => input])
            .map_err(|e| run_error(graph, e))?;
        let (_, values) = outputs["image_embeds"]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(graph, e))?;
        Ok(values.to_vec())
    }

    fn embed(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let input = tensor(&[1, ids.len()], ids)?;
        let graph = &mut self.embed;
        let outputs = graph
            .session
            .run(ort::inputs!["input_ids" => input])
            .map_err(|e| run_error(graph, e))?;
        let (_, values) = outputs["inputs_embeds"]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(graph, e))?;
        Ok(values.to_vec())
    }

    fn new_cache(&self) -> Result<KvCache, ModelError> {
        Ok(KvCache {
            past_len: 0,
            inner: Box::new(OrtCache {
                tensors: vec![Vec::new(); 2 * self.layers],
            }),
        })
    }

    fn decode(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        len: usize,
    ) -> Result<Vec<f32>, ModelError> {
        if embeds.len() != len * self.hidden || len == 0 {
            return Err(ModelError::Input(format!(
                "{} embedding values for {len} positions of {}",
                embeds.len(),
                self.hidden
            )));
        }
        let past = cache.past_len;
        let state = cache
            .inner
            .downcast_mut::<OrtCache>()
            .ok_or_else(|| ModelError::Input("a KV cache from another backend".into()))?;
        let (kv, d, layers) = (self.kv_heads, self.head_dim, self.layers);
        let mut inputs: Vec<(
            std::borrow::Cow<'static, str>,
            ort::session::SessionInputValue<'static>,
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
            inputs.push((name.into(), tensor(&[1, kv, past, d], data.clone())?.into()));
        }
        let graph = &mut self.decoder;
        let outputs = graph.session.run(inputs).map_err(|e| run_error(graph, e))?;
        let (_, logits) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(graph, e))?;
        if logits.len() != self.vocab {
            return Err(graph_error(
                &graph.file,
                format!(
                    "gave {} logits, the vocabulary has {}",
                    logits.len(),
                    self.vocab
                ),
            ));
        }
        let logits = logits.to_vec();
        for i in 0..2 * layers {
            let name = if i < layers {
                format!("present_key_{i}")
            } else {
                format!("present_value_{}", i - layers)
            };
            let (_, values) = outputs[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| run_error(graph, e))?;
            state.tensors[i] = values.to_vec();
        }
        cache.past_len = past + len;
        Ok(logits)
    }
}
