//! `spatialbot-edge triton-repo`: a Triton Inference Server model repository for a model folder,
//! so a server runs exactly the folder's graphs: `{prefix}_vision` (dynamic batching: images of
//! several robots in one run), `{prefix}_embed`, `{prefix}_decoder` (sequence batching: each
//! robot's key/value cache stays on the server, keyed by its correlation id).
//!
//! Two platforms:
//! - `onnxruntime` (a GPU or CPU server with Triton's onnxruntime backend): the decoder's cache
//!   is Triton's implicit state (`past_*` ← `present_*`), optionally with the TensorRT
//!   accelerator;
//! - `python` (any server with the python backend, e.g. the `tritonserver` in the
//!   `nvidia-pytriton` wheel on a CPU machine): `tools/triton/model.py` runs each graph on
//!   onnxruntime and keeps each sequence's cache itself. The server must be started with
//!   `PYTHONPATH` naming a site-packages with numpy and onnxruntime.
//!
//! The repository is built in a temporary folder beside `--out` and renamed into place.

use std::path::{Path, PathBuf};

use spatialbot_edge::model::backend::triton::model_names;
use spatialbot_edge::model::manifest::Manifest;

use super::{bad_input, print_json};

/// The python-backend model every graph of the `python` platform runs.
const MODEL_PY: &str = include_str!("../../tools/triton/model.py");

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// Triton's onnxruntime backend (GPU servers; TensorRT with --tensorrt).
    Onnxruntime,
    /// Triton's python backend running onnxruntime in model.py (CPU; the pytriton wheel).
    Python,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InstanceKind {
    Gpu,
    Cpu,
}

#[derive(clap::Args)]
pub struct Args {
    /// The model folder (manifest.toml, vision.onnx, embed.onnx, decoder.onnx).
    #[arg(long)]
    model: PathBuf,
    /// The repository folder to write; refused if it exists, unless --force.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "onnxruntime")]
    platform: Platform,
    /// Where each model's instances run (default: gpu for onnxruntime, cpu for python).
    #[arg(long, value_enum)]
    instance_kind: Option<InstanceKind>,
    /// Instances of each model (more serve more robots at once).
    #[arg(long, default_value_t = 1)]
    instances: u32,
    /// Largest batch of images the vision model runs at once (dynamic batching).
    #[arg(long, default_value_t = 8)]
    max_batch: u32,
    /// How long the vision model waits for more images to batch, microseconds.
    #[arg(long, default_value_t = 2000)]
    queue_delay_us: u64,
    /// Sequences (robots) the decoder keeps a cache for at once.
    #[arg(long, default_value_t = 64)]
    max_sequences: u32,
    /// A sequence idle this long is dropped with its cache, seconds.
    #[arg(long, default_value_t = 60)]
    sequence_idle_s: u64,
    /// onnxruntime platform: run the graphs with the TensorRT accelerator (FP16).
    #[arg(long)]
    tensorrt: bool,
    /// Model names are `{prefix}_vision` …; default: the manifest's name.
    #[arg(long)]
    prefix: Option<String>,
    /// Replace an existing --out.
    #[arg(long)]
    force: bool,
}

const LIMIT: u32 = 1024;

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    for (flag, v) in [
        ("--instances", args.instances),
        ("--max-batch", args.max_batch),
        ("--max-sequences", args.max_sequences),
    ] {
        if !(1..=LIMIT).contains(&v) {
            return Err(bad_input(format!("{flag} must be 1..={LIMIT}, got {v}")));
        }
    }
    let manifest = spatialbot_edge::model::folder::read_manifest(&args.model)
        .map_err(|e| bad_input(format!("--model: {e}")))?;
    let prefix = args.prefix.clone().unwrap_or_else(|| manifest.name.clone());
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad_input(format!(
            "--prefix {prefix:?}: use letters, digits, '-', '_' and '.'"
        )));
    }
    if args.out.exists() && !args.force {
        return Err(bad_input(format!(
            "--out {} exists; pass --force to replace it",
            args.out.display()
        )));
    }
    let graphs = ["vision", "embed", "decoder"];
    for g in graphs {
        let file = args.model.join(format!("{g}.onnx"));
        if !file.is_file() {
            return Err(bad_input(format!("--model: {} is missing", file.display())));
        }
    }
    let names = model_names(&prefix);
    let staging = staging_dir(&args.out);
    let written = write_repo(&args, &manifest, &names, &staging);
    let result = written.and_then(|files| {
        replace_dir(&staging, &args.out)?;
        Ok(files)
    });
    let files = match result {
        Ok(files) => files,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(anyhow::anyhow!(
                "writing the repository {}: {e}",
                args.out.display()
            ));
        }
    };
    if json {
        print_json(&serde_json::json!({
            "out": args.out.display().to_string(),
            "platform": format!("{:?}", args.platform).to_lowercase(),
            "models": names,
            "files": files,
        }))?;
    } else {
        println!(
            "{}: Triton repository for {} ({:?} platform): models {}",
            args.out.display(),
            manifest.name,
            args.platform,
            names.join(", ")
        );
        if args.platform == Platform::Python {
            println!("serve it with PYTHONPATH naming a site-packages that has numpy and onnxruntime (see docs/triton.md)");
        }
    }
    Ok(spatialbot_edge::exit::OK)
}

fn staging_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into());
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Renames `staging` to `out`; an existing `out` is moved aside first and removed after.
fn replace_dir(staging: &Path, out: &Path) -> std::io::Result<()> {
    if out.exists() {
        let old = staging.with_extension("old");
        std::fs::rename(out, &old)?;
        if let Err(e) = std::fs::rename(staging, out) {
            let _ = std::fs::rename(&old, out);
            return Err(e);
        }
        std::fs::remove_dir_all(&old)
    } else {
        std::fs::rename(staging, out)
    }
}

fn write_repo(
    args: &Args,
    manifest: &Manifest,
    names: &[String; 3],
    staging: &Path,
) -> std::io::Result<Vec<String>> {
    let _ = std::fs::remove_dir_all(staging);
    let mut files = Vec::new();
    for (graph, name) in ["vision", "embed", "decoder"].into_iter().zip(names) {
        let version = staging.join(name).join("1");
        std::fs::create_dir_all(&version)?;
        let config = model_config(args, manifest, graph, name);
        write_file(&staging.join(name).join("config.pbtxt"), config.as_bytes())?;
        files.push(format!("{name}/config.pbtxt"));
        link_or_copy(
            &args.model.join(format!("{graph}.onnx")),
            &version.join("model.onnx"),
        )?;
        files.push(format!("{name}/1/model.onnx"));
        // External weights keep their file name: the graph refers to it.
        let data = format!("{graph}.onnx.data");
        if args.model.join(&data).is_file() {
            link_or_copy(&args.model.join(&data), &version.join(&data))?;
            files.push(format!("{name}/1/{data}"));
        }
        if args.platform == Platform::Python {
            write_file(&version.join("model.py"), MODEL_PY.as_bytes())?;
            files.push(format!("{name}/1/model.py"));
        }
    }
    Ok(files)
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A hard link where the file system allows it (graphs can be gigabytes), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ())
}

fn dims(d: &[i64]) -> String {
    d.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

fn tensor(name: &str, datatype: &str, d: &[i64]) -> String {
    format!(
        "  {{ name: \"{name}\" data_type: {datatype} dims: [ {} ] }}",
        dims(d)
    )
}

/// One model's `config.pbtxt`.
pub fn model_config(args: &Args, manifest: &Manifest, graph: &str, name: &str) -> String {
    let v = &manifest.vision;
    let l = &manifest.llm;
    let (s, t, e, h, vocab) = (
        v.image_size as i64,
        v.tokens_per_image as i64,
        v.embed_dim as i64,
        l.hidden_size as i64,
        l.vocab_size as i64,
    );
    let python = args.platform == Platform::Python;
    let kind = match args.instance_kind.unwrap_or(if python {
        InstanceKind::Cpu
    } else {
        InstanceKind::Gpu
    }) {
        InstanceKind::Gpu => "KIND_GPU",
        InstanceKind::Cpu => "KIND_CPU",
    };
    let mut c = format!(
        "# Written by `spatialbot-edge triton-repo` for {} ({graph} graph); see docs/triton.md.\nname: \"{name}\"\nbackend: \"{}\"\n",
        manifest.name,
        if python { "python" } else { "onnxruntime" }
    );
    match graph {
        "vision" => {
            c += &format!(
                "max_batch_size: {}\ninput [\n{}\n]\noutput [\n{}\n]\ndynamic_batching {{ max_queue_delay_microseconds: {} }}\n",
                args.max_batch,
                tensor("pixel_values", "TYPE_FP32", &[3, s, s]),
                tensor("image_embeds", "TYPE_FP32", &[t, e]),
                args.queue_delay_us
            );
        }
        "embed" => {
            c += &format!(
                "max_batch_size: 0\ninput [\n{}\n]\noutput [\n{}\n]\n",
                tensor("input_ids", "TYPE_INT64", &[1, -1]),
                tensor("inputs_embeds", "TYPE_FP32", &[1, -1, h])
            );
        }
        _ => {
            c += &format!(
                "max_batch_size: 0\ninput [\n{},\n{},\n{}\n]\noutput [\n{}\n]\n",
                tensor("inputs_embeds", "TYPE_FP32", &[1, -1, h]),
                tensor("attention_mask", "TYPE_INT64", &[1, -1]),
                tensor("position_ids", "TYPE_INT64", &[1, -1]),
                tensor("logits", "TYPE_FP32", &[1, 1, vocab])
            );
            c += &format!(
                "sequence_batching {{\n  max_sequence_idle_microseconds: {}\n  oldest {{ max_candidate_sequences: {} }}\n",
                args.sequence_idle_s.saturating_mul(1_000_000),
                args.max_sequences
            );
            if python {
                c += "  control_input [\n    { name: \"START\" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },\n    { name: \"END\" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },\n    { name: \"CORRID\" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }\n  ]\n";
            } else {
                // Implicit state: each step's present_* become the next step's past_*; a
                // sequence starts from an empty cache.
                let kv = [1, l.num_kv_heads as i64, -1, l.head_dim as i64];
                let empty = [1, l.num_kv_heads as i64, 0, l.head_dim as i64];
                let mut states = Vec::new();
                for i in 0..l.num_layers {
                    for which in ["key", "value"] {
                        states.push(format!(
                            "    {{ input_name: \"past_{which}_{i}\" output_name: \"present_{which}_{i}\" data_type: TYPE_FP32 dims: [ {} ]\n      initial_state: {{ name: \"empty\" data_type: TYPE_FP32 dims: [ {} ] zero_data: true }} }}",
                            dims(&kv),
                            dims(&empty)
                        ));
                    }
                }
                c += &format!("  state [\n{}\n  ]\n", states.join(",\n"));
            }
            c += "}\n";
        }
    }
    c += &format!(
        "instance_group [ {{ kind: {kind} count: {} }} ]\n",
        args.instances
    );
    if python {
        c += &format!(
            "parameters: {{ key: \"graph\" value: {{ string_value: \"{graph}\" }} }}\nparameters: {{ key: \"max_sequences\" value: {{ string_value: \"{}\" }} }}\n",
            args.max_sequences
        );
    } else if args.tensorrt {
        c += "optimization { execution_accelerators { gpu_execution_accelerator: [ {\n  name: \"tensorrt\"\n  parameters { key: \"precision_mode\" value: \"FP16\" }\n  parameters { key: \"max_workspace_size_bytes\" value: \"4294967296\" }\n} ] } }\n";
    }
    c
}
