//! tract: each graph loaded once, typed with symbolic batch / sequence / past lengths, optimised
//! once, and one plan serving prefill and decode. Where every decoder layer has the standard
//! attention pattern the KV cache lives in the plan's state ([`attention`]); otherwise it travels
//! as explicit tensors.

mod attention;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tract_onnx::prelude::*;

use super::{Backend, BackendConfig, KvCache, LoadStep};
use crate::model::manifest::Manifest;
use crate::model::{ModelError, ModelFolder};

pub(super) type Plan = Arc<TypedRunnableModel>;

/// Turns a typed, checked graph into a plan: tract's CPU optimiser here, tract-cuda's runtime in
/// `tract_cuda.rs`.
pub(super) type MakePlan = fn(TypedModel, &Path) -> Result<Plan, ModelError>;

struct Graph {
    file: PathBuf,
    plan: Plan,
    /// The decoder keeps its KV cache in plan state: it takes no past and returns no present.
    kv_in_state: bool,
    /// Position in the graph's inputs of each input this backend feeds, in its own order.
    inputs: Vec<usize>,
    /// Position in the graph's outputs of each output this backend reads, in its own order.
    outputs: Vec<usize>,
}

pub struct TractBackend {
    vision: Graph,
    embed: Graph,
    decoder: Graph,
    image_size: usize,
    tokens_per_image: usize,
    hidden: usize,
    vocab: usize,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    threads: usize,
    steps: Vec<LoadStep>,
}

enum TractCache {
    /// past_key_0 … past_key_{n-1}, past_value_0 … past_value_{n-1}.
    Tensors(Vec<TValue>),
    /// The decoder plan's state, which holds every layer's keys and values.
    State(Box<TypedSimpleState>),
}

fn graph_error(file: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Graph {
        file: file.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// tract's error with its causes on one line (also tract-cuda's).
pub(super) fn chain(e: &TractError) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn input_names(model: &InferenceModel) -> TractResult<Vec<String>> {
    Ok(model
        .input_outlets()?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect())
}

fn typed_input_names(model: &TypedModel) -> TractResult<Vec<String>> {
    Ok(model
        .input_outlets()?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect())
}

fn output_names(model: &TypedModel) -> TractResult<Vec<String>> {
    Ok(model
        .output_outlets()?
        .iter()
        .map(|o| {
            model
                .outlet_label(*o)
                .map(str::to_string)
                .unwrap_or_else(|| model.node(o.node).name.clone())
        })
        .collect())
}

fn position_of(
    names: &[String],
    wanted: &str,
    file: &Path,
    kind: &str,
) -> Result<usize, ModelError> {
    names.iter().position(|n| n == wanted).ok_or_else(|| {
        graph_error(file, format!("has no {kind} named {wanted} (it has {names:?}); the folder does not follow models/MANIFEST.md"))
    })
}

/// Checks an output's static dims (`None` = symbolic, not checked).
fn check_output(
    model: &TypedModel,
    ix: usize,
    name: &str,
    expected: &[Option<i64>],
    file: &Path,
) -> Result<(), ModelError> {
    let fact = model
        .output_fact(ix)
        .map_err(|e| graph_error(file, chain(&e)))?;
    let dims: Vec<TDim> = fact.shape.dims().to_vec();
    let shown: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let want: Vec<String> = expected
        .iter()
        .map(|d| d.map(|v| v.to_string()).unwrap_or_else(|| "?".into()))
        .collect();
    let agrees = dims.len() == expected.len()
        && dims.iter().zip(expected).all(|(d, e)| match e {
            Some(v) => d.to_i64().map(|x| x == *v).unwrap_or(true),
            None => true,
        });
    if !agrees {
        return Err(graph_error(
            file,
            format!("output {name} has shape [{}] but the manifest implies [{}]; re-export the folder or fix manifest.toml", shown.join(","), want.join(",")),
        ));
    }
    Ok(())
}

fn f32_fact(dims: Vec<TDim>) -> InferenceFact {
    InferenceFact::dt_shape(f32::datum_type(), dims)
}

fn i64_fact(dims: Vec<TDim>) -> InferenceFact {
    InferenceFact::dt_shape(i64::datum_type(), dims)
}

impl TractBackend {
    pub fn load(folder: &ModelFolder, config: &BackendConfig) -> Result<TractBackend, ModelError> {
        Self::load_with(folder, config, cpu_plan)
    }

    pub(super) fn load_with(
        folder: &ModelFolder,
        config: &BackendConfig,
        make_plan: MakePlan,
    ) -> Result<TractBackend, ModelError> {
        let threads = config.thread_count();
        set_threads(threads);
        let m = &folder.manifest;
        let mut steps = Vec::new();
        let vision = load_vision(&folder.path("vision.onnx"), m, &mut steps, make_plan)?;
        let embed = load_embed(&folder.path("embed.onnx"), m, &mut steps, make_plan)?;
        let decoder = load_decoder(&folder.path("decoder.onnx"), m, &mut steps, make_plan)?;
        Ok(TractBackend {
            vision,
            embed,
            decoder,
            image_size: m.vision.image_size,
            tokens_per_image: m.vision.tokens_per_image,
            hidden: m.llm.hidden_size,
            vocab: m.llm.vocab_size,
            layers: m.llm.num_layers,
            kv_heads: m.llm.num_kv_heads,
            head_dim: m.llm.head_dim,
            threads,
            steps,
        })
    }
}

/// Multiply-adds above which tract-linalg splits a matrix–vector product over the threads.
/// Its default (2^21) keeps a decode step's 1024×1024 projections (2^20, a 4 MB weight stream
/// each) on one thread, and those are a third of a Qwen1.5-0.5B layer's weights; at 2^16 every
/// full-size product is split while the tiny fixtures' stay inline.
const GEMV_THREADING_MACS: usize = 1 << 16;

/// tract's matrix products run on a process-wide executor.
fn set_threads(threads: usize) {
    if threads > 1 {
        multithread::set_default_executor(multithread::Executor::multithread(threads));
        multithread::set_threading_mac_threshold(GEMV_THREADING_MACS);
    }
}

/// Hands the heap's free pages back to the system. Optimising a graph packs every matrix of
/// weights into a new buffer and frees the original, about the graph's weight bytes in all;
/// glibc keeps most of that (below its mmap threshold) and the process would carry it for life.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Reads, types (checking the outputs) and optimises one graph.
fn prepare(
    file: &Path,
    steps: &mut Vec<LoadStep>,
    inputs: &[&str],
    facts: impl FnOnce(&SymbolScope) -> Vec<InferenceFact>,
    outputs: &[&str],
    check: impl FnOnce(&TypedModel, &[usize]) -> Result<(), ModelError>,
    make_plan: MakePlan,
) -> Result<Graph, ModelError> {
    let started = Instant::now();
    if !file.exists() {
        return Err(graph_error(
            file,
            "missing: the model folder needs it (models/MANIFEST.md)",
        ));
    }
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(file)
        .map_err(|e| graph_error(file, format!("cannot read the ONNX graph: {}", chain(&e))))?;
    let names = input_names(&model).map_err(|e| graph_error(file, chain(&e)))?;
    if names.len() != inputs.len() {
        return Err(graph_error(
            file,
            format!(
                "has inputs {names:?} but {} expected: {inputs:?}",
                inputs.len()
            ),
        ));
    }
    let positions: Vec<usize> = inputs
        .iter()
        .map(|n| position_of(&names, n, file, "input"))
        .collect::<Result<_, _>>()?;
    let facts = facts(&model.symbols);
    for (fact, &ix) in facts.into_iter().zip(&positions) {
        model
            .set_input_fact(ix, fact)
            .map_err(|e| graph_error(file, chain(&e)))?;
    }
    let read = started.elapsed();
    let started = Instant::now();
    let typed = model.into_typed().map_err(|e| {
        graph_error(
            file,
            format!(
                "its shapes do not agree with the manifest ({}); re-export the folder",
                chain(&e)
            ),
        )
    })?;
    let out_names = output_names(&typed).map_err(|e| graph_error(file, chain(&e)))?;
    let out_positions: Vec<usize> = outputs
        .iter()
        .map(|n| position_of(&out_names, n, file, "output"))
        .collect::<Result<_, _>>()?;
    check(&typed, &out_positions)?;
    let plan = make_plan(typed, file)?;
    release_free_heap();
    // A plan that keeps the KV cache in its state takes no past and returns no present: find
    // the inputs still fed and the outputs still read.
    let plan_inputs = typed_input_names(plan.model()).map_err(|e| graph_error(file, chain(&e)))?;
    let kv_in_state = inputs.iter().any(|n| !plan_inputs.iter().any(|m| m == n));
    let (positions, out_positions) = if kv_in_state {
        let out_names = output_names(plan.model()).map_err(|e| graph_error(file, chain(&e)))?;
        (
            inputs
                .iter()
                .filter_map(|n| plan_inputs.iter().position(|m| m == n))
                .collect(),
            outputs
                .iter()
                .filter_map(|n| out_names.iter().position(|m| m == n))
                .collect(),
        )
    } else {
        (positions, out_positions)
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    steps.push(LoadStep::new(format!("tract read {name}"), read));
    steps.push(LoadStep::new(
        format!("tract type+optimise {name}"),
        started.elapsed(),
    ));
    Ok(Graph {
        file: file.to_path_buf(),
        plan,
        kv_in_state,
        inputs: positions,
        outputs: out_positions,
    })
}

/// tract's CPU optimiser, after moving a decoder's KV cache into plan state where every layer
/// has the attention pattern ([`attention`]; a graph with no `past_key_*` input is left as is).
fn cpu_plan(typed: TypedModel, file: &Path) -> Result<Plan, ModelError> {
    let cannot_optimise =
        |e: TractError| graph_error(file, format!("tract cannot optimise it: {}", chain(&e)));
    let layers = typed_input_names(&typed)
        .map_err(|e| graph_error(file, chain(&e)))?
        .iter()
        .filter(|n| n.starts_with("past_key_"))
        .count();
    let mut decluttered = typed.into_decluttered().map_err(cannot_optimise)?;
    attention::keep_kv_cache_in_state(&mut decluttered, layers).map_err(cannot_optimise)?;
    decluttered
        .into_optimized()
        .map_err(cannot_optimise)?
        .into_runnable()
        .map_err(|e| graph_error(file, chain(&e)))
}

fn load_vision(
    file: &Path,
    m: &Manifest,
    steps: &mut Vec<LoadStep>,
    make_plan: MakePlan,
) -> Result<Graph, ModelError> {
    let s = m.vision.image_size as i64;
    let (t, h) = (m.vision.tokens_per_image as i64, m.vision.embed_dim as i64);
    prepare(
        file,
        steps,
        &["pixel_values"],
        |sym| {
            vec![f32_fact(vec![
                sym.sym("N").into(),
                3.to_dim(),
                s.to_dim(),
                s.to_dim(),
            ])]
        },
        &["image_embeds"],
        |typed, outs| {
            check_output(
                typed,
                outs[0],
                "image_embeds",
                &[None, Some(t), Some(h)],
                file,
            )
        },
        make_plan,
    )
}

fn load_embed(
    file: &Path,
    m: &Manifest,
    steps: &mut Vec<LoadStep>,
    make_plan: MakePlan,
) -> Result<Graph, ModelError> {
    let h = m.llm.hidden_size as i64;
    prepare(
        file,
        steps,
        &["input_ids"],
        |sym| vec![i64_fact(vec![1.to_dim(), sym.sym("L").into()])],
        &["inputs_embeds"],
        |typed, outs| {
            check_output(
                typed,
                outs[0],
                "inputs_embeds",
                &[Some(1), None, Some(h)],
                file,
            )
        },
        make_plan,
    )
}

fn decoder_input_names(layers: usize) -> Vec<String> {
    let mut names = vec![
        "inputs_embeds".to_string(),
        "attention_mask".into(),
        "position_ids".into(),
    ];
    names.extend((0..layers).map(|i| format!("past_key_{i}")));
    names.extend((0..layers).map(|i| format!("past_value_{i}")));
    names
}

fn decoder_output_names(layers: usize) -> Vec<String> {
    let mut names = vec!["logits".to_string()];
    names.extend((0..layers).map(|i| format!("present_key_{i}")));
    names.extend((0..layers).map(|i| format!("present_value_{i}")));
    names
}

fn load_decoder(
    file: &Path,
    m: &Manifest,
    steps: &mut Vec<LoadStep>,
    make_plan: MakePlan,
) -> Result<Graph, ModelError> {
    let l = &m.llm;
    let (h, kv, d, v) = (
        l.hidden_size as i64,
        l.num_kv_heads as i64,
        l.head_dim as i64,
        l.vocab_size as i64,
    );
    let inputs = decoder_input_names(l.num_layers);
    let outputs = decoder_output_names(l.num_layers);
    let input_refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let output_refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let layers = l.num_layers;
    prepare(
        file,
        steps,
        &input_refs,
        |sym| {
            let seq: TDim = sym.sym("L").into();
            let past: TDim = sym.sym("P").into();
            let mut facts = vec![
                f32_fact(vec![1.to_dim(), seq.clone(), h.to_dim()]),
                i64_fact(vec![1.to_dim(), past.clone() + seq.clone()]),
                i64_fact(vec![1.to_dim(), seq]),
            ];
            for _ in 0..2 * layers {
                facts.push(f32_fact(vec![
                    1.to_dim(),
                    kv.to_dim(),
                    past.clone(),
                    d.to_dim(),
                ]));
            }
            facts
        },
        &output_refs,
        |typed, outs| {
            check_output(typed, outs[0], "logits", &[Some(1), Some(1), Some(v)], file)?;
            for (i, name) in output_refs.iter().enumerate().skip(1) {
                check_output(
                    typed,
                    outs[i],
                    name,
                    &[Some(1), Some(kv), None, Some(d)],
                    file,
                )?;
            }
            Ok(())
        },
        make_plan,
    )
}

fn run(graph: &Graph, fed: Vec<TValue>) -> Result<TVec<TValue>, ModelError> {
    run_in(graph, None, fed)
}

/// Runs the graph's plan, in `state` when the graph keeps state between runs.
fn run_in(
    graph: &Graph,
    state: Option<&mut TypedSimpleState>,
    fed: Vec<TValue>,
) -> Result<TVec<TValue>, ModelError> {
    let mut ordered: Vec<Option<TValue>> = vec![None; fed.len()];
    for (value, &ix) in fed.into_iter().zip(&graph.inputs) {
        if let Some(slot) = ordered.get_mut(ix) {
            *slot = Some(value);
        }
    }
    let inputs: TVec<TValue> = ordered.into_iter().flatten().collect();
    match state {
        Some(state) => state.run(inputs),
        None => graph.plan.run(inputs),
    }
    .map_err(|e| ModelError::Backend {
        backend: "tract".into(),
        reason: format!("{} failed: {}", graph.file.display(), chain(&e)),
    })
}

fn f32_values(graph: &Graph, value: &TValue) -> Result<Vec<f32>, ModelError> {
    value
        .try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>().map(|s| s.to_vec()))
        .map_err(|e| ModelError::Backend {
            backend: "tract".into(),
            reason: format!("{}: {}", graph.file.display(), chain(&e)),
        })
}

fn tensor<T: Datum + Copy>(shape: &[usize], data: &[T]) -> Result<TValue, ModelError> {
    Tensor::from_shape(shape, data)
        .map(|t| t.into_tvalue())
        .map_err(|e| {
            ModelError::Input(format!(
                "{} values do not make a {shape:?} tensor: {}",
                data.len(),
                chain(&e)
            ))
        })
}

/// A vision graph alone, for timing a tower without loading its language model.
pub struct TractVision {
    graph: Graph,
    image_size: usize,
    values_per_image: usize,
}

impl TractVision {
    pub fn load(folder: &ModelFolder, config: &BackendConfig) -> Result<TractVision, ModelError> {
        set_threads(config.thread_count());
        let m = &folder.manifest;
        let graph = load_vision(&folder.path("vision.onnx"), m, &mut Vec::new(), cpu_plan)?;
        Ok(TractVision {
            graph,
            image_size: m.vision.image_size,
            values_per_image: m.vision.tokens_per_image * m.vision.embed_dim,
        })
    }

    /// `n` images `[n,3,S,S]` → `[n,T,H]`.
    pub fn run(&self, pixels: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let s = self.image_size;
        if pixels.len() != n * 3 * s * s {
            return Err(ModelError::Input(format!(
                "{} pixel values for {n} images of 3×{s}×{s}",
                pixels.len()
            )));
        }
        let out = run(&self.graph, vec![tensor(&[n, 3, s, s], pixels)?])?;
        let values = f32_values(&self.graph, &out[self.graph.outputs[0]])?;
        if values.len() != n * self.values_per_image {
            return Err(graph_error(
                &self.graph.file,
                format!("gave {} values for {n} images", values.len()),
            ));
        }
        Ok(values)
    }
}

impl Backend for TractBackend {
    fn describe(&self) -> String {
        let cache = if self.decoder.kv_in_state {
            "KV cache in plan state"
        } else {
            "KV cache as tensors"
        };
        format!("tract 0.23 on CPU, {} thread(s), {cache}", self.threads)
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
        let out = run(&self.vision, vec![tensor(&[n, 3, s, s], pixels)?])?;
        let values = f32_values(&self.vision, &out[self.vision.outputs[0]])?;
        if values.len() != n * self.tokens_per_image * self.hidden {
            return Err(graph_error(
                &self.vision.file,
                format!("gave {} values for {n} images", values.len()),
            ));
        }
        Ok(values)
    }

    fn embed(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let out = run(&self.embed, vec![tensor(&[1, ids.len()], &ids)?])?;
        f32_values(&self.embed, &out[self.embed.outputs[0]])
    }

    fn new_cache(&self) -> Result<KvCache, ModelError> {
        let inner = if self.decoder.kv_in_state {
            let state =
                TypedSimpleState::new(&self.decoder.plan).map_err(|e| ModelError::Backend {
                    backend: "tract".into(),
                    reason: format!("{}: {}", self.decoder.file.display(), chain(&e)),
                })?;
            TractCache::State(Box::new(state))
        } else {
            let shape = [1, self.kv_heads, 0, self.head_dim];
            let empty = tensor::<f32>(&shape, &[])?;
            TractCache::Tensors(vec![empty; 2 * self.layers])
        };
        Ok(KvCache {
            past_len: 0,
            inner: Box::new(inner),
        })
    }

    fn decode(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        len: usize,
    ) -> Result<Vec<f32>, ModelError> {
        super::check_decode_input(embeds, len, self.hidden)?;
        let past = cache.past_len;
        let state = cache.state_mut::<TractCache>()?;
        let mask = vec![1i64; past + len];
        let positions: Vec<i64> = (past..past + len).map(|p| p as i64).collect();
        let mut fed = vec![
            tensor(&[1, len, self.hidden], embeds)?,
            tensor(&[1, past + len], &mask)?,
            tensor(&[1, len], &positions)?,
        ];
        let out = match state {
            TractCache::Tensors(tensors) => {
                fed.extend(tensors.iter().cloned());
                run(&self.decoder, fed)?
            }
            TractCache::State(plan_state) => run_in(&self.decoder, Some(plan_state), fed)?,
        };
        let logits = f32_values(&self.decoder, &out[self.decoder.outputs[0]])?;
        if logits.len() != self.vocab {
            return Err(graph_error(
                &self.decoder.file,
                format!(
                    "gave {} logits, the vocabulary has {}",
                    logits.len(),
                    self.vocab
                ),
            ));
        }
        if let TractCache::Tensors(tensors) = state {
            *tensors = self.decoder.outputs[1..]
                .iter()
                .map(|&ix| out[ix].clone())
                .collect();
        }
        cache.past_len = past + len;
        Ok(logits)
    }
}
