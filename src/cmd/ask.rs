//! `spatialbot-edge ask`: SpatialBot VQA on one RGB-D pair, with the Depth API loop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use spatialbot_edge::camera::{self, CameraSpec, OpenOptions};
use spatialbot_edge::config::Board;
use spatialbot_edge::imageio;
use spatialbot_edge::model::backend::{BackendConfig, BackendKind, LoadStep, Provider};
use spatialbot_edge::model::manifest::ModelKind;
use spatialbot_edge::model::{
    npy, vqa, GenerateOptions, Grammar, ImageTensor, ModelError, ModelFolder, Overflow, Sampling,
};
use spatialbot_edge::preprocess;
use spatialbot_edge::rgbd::{pack, DepthMm, Encoding, RgbImage};

use super::{bad_input, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Model folder (manifest.toml + graphs), kind = "spatialbot".
    #[arg(long)]
    pub model: PathBuf,
    /// Colour image (8-bit RGB PNG).
    #[arg(long, requires = "depth")]
    pub rgb: Option<PathBuf>,
    /// Depth registered to the colour image (16-bit PNG, millimetres).
    #[arg(long, requires = "rgb")]
    pub depth: Option<PathBuf>,
    /// Camera to take one RGB-D frame from, depth registered to colour (realsense[:SERIAL],
    /// replay:PATH, synthetic, v4l2:DEVICE).
    #[arg(long, conflicts_with_all = ["rgb", "depth"])]
    pub camera: Option<String>,
    /// Inference backend: tract or ort (default: the --board profile's backend.order, else tract).
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// Board profile whose [backend] table to use (order, threads, TensorRT settings,
    /// onnxruntime_library): a file, or a shipped profile name.
    #[arg(long)]
    pub board: Option<String>,
    /// Threads for matrix products (0 = all cores, at most 64; default: the profile's, else 0).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run the graphs on this Triton Inference Server (gRPC URL), the other backend flags
    /// choosing the local backend that stands in when it does not answer in time.
    #[arg(long, value_name = "URL")]
    pub triton: Option<String>,
    /// Longest wait for one answer of the --triton server, ms.
    #[arg(long, default_value_t = 500, requires = "triton")]
    pub triton_deadline_ms: u64,
    /// The --triton server sends only the K largest logits per token (exact for greedy
    /// decoding), 1..=65536.
    #[arg(long, value_name = "K", requires = "triton", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub triton_top_k: Option<u32>,
    /// onnxruntime library (libonnxruntime.so) for the ort backend; default: the profile's
    /// backend.onnxruntime_library, else ORT_DYLIB_PATH, else the dynamic loader's path.
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// onnxruntime execution providers in the order to try (tensorrt,cuda,cpu).
    #[arg(long, value_delimiter = ',')]
    pub providers: Option<Vec<Provider>>,
    /// Let the CPU provider take over when a GPU provider fails to register.
    #[arg(long)]
    pub cpu_fallback: bool,
    /// Most tokens per answer, 1..=100000 (default: the manifest's max_new_tokens).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Sample at this temperature instead of greedy decoding (greater than 0, at most 100).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus mass kept when sampling (greater than 0, at most 1).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Refuse a prompt longer than the context limit instead of truncating it.
    #[arg(long)]
    pub refuse_overflow: bool,
    /// Constrained decoding: every Depth API call the model writes is `Depth(x, y)` with x, y
    /// in [0, 1] (docs/decoding.md). Default: off.
    #[arg(long, value_name = "on|off", default_value = "off")]
    pub constrain: super::OnOff,
    /// Already-preprocessed RGB tensor (.npy f32 [3,S,S]) instead of preprocessing --rgb
    /// (for checks against a reference preprocessing).
    #[arg(long, hide = true, requires = "depth_tensor")]
    pub rgb_tensor: Option<PathBuf>,
    /// Already-preprocessed packed-depth tensor (.npy f32 [3,S,S]).
    #[arg(long, hide = true, requires = "rgb_tensor")]
    pub depth_tensor: Option<PathBuf>,
    /// The question.
    pub question: String,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    answer: &'a str,
    /// Where the RGB-D pair came from.
    source: String,
    backend: String,
    rounds: &'a [vqa::Round],
    load: &'a [LoadStep],
    stage_ms: Vec<(&'static str, f64)>,
}

pub(super) fn model_error(e: ModelError) -> anyhow::Error {
    if e.is_bad_input() || e.is_not_built() {
        bad_input(e)
    } else {
        anyhow::Error::new(e)
    }
}

fn read_tensor(path: &Path, size: usize) -> anyhow::Result<ImageTensor> {
    let array = npy::read(path).map_err(model_error)?;
    if array.shape != [3, size, size] && array.shape != [1, 3, size, size] {
        return Err(bad_input(format!(
            "{}: shape {:?}, the model takes [3,{size},{size}]",
            path.display(),
            array.shape
        )));
    }
    Ok(ImageTensor {
        size,
        data: array.to_f32(),
    })
}

/// RGB and packed depth → the two `[3,S,S]` tensors the vision graph takes (pad as the manifest says).
fn preprocess_pair(
    folder: &ModelFolder,
    rgb: &RgbImage,
    depth: &DepthMm,
) -> anyhow::Result<Vec<ImageTensor>> {
    preprocess_images(folder, rgb, Some(depth))
}

/// RGB and, when given, its packed depth → the `[3,S,S]` tensors the vision graph takes.
pub(super) fn preprocess_images(
    folder: &ModelFolder,
    rgb: &RgbImage,
    depth: Option<&DepthMm>,
) -> anyhow::Result<Vec<ImageTensor>> {
    let v = &folder.manifest.vision;
    let tower = v.tower;
    let mut pre =
        preprocess::Preprocessor::new(tower, v.image_size, v.pad_to_square).map_err(bad_input)?;
    let packed = depth.map(|d| pack::pack(d, Encoding::SpatialBot).0);
    let mut out = Vec::with_capacity(2);
    for image in std::iter::once(rgb).chain(packed.as_ref()) {
        let t = pre.tensor(image).map_err(bad_input)?;
        out.push(ImageTensor {
            size: v.image_size,
            data: t.data,
        });
    }
    Ok(out)
}

/// The backend from --board (its [backend] table), then the flags on top.
fn backend_config(args: &Args) -> anyhow::Result<BackendConfig> {
    let mut config = match &args.board {
        Some(b) => Board::resolve(b).map_err(bad_input)?.backend_config(),
        None => BackendConfig::default(),
    };
    if let Some(kind) = args.backend {
        if kind != config.kind {
            config.fallback = None;
        }
        config.kind = kind;
    }
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    if let Some(library) = &args.ort_library {
        config.ort.library = Some(library.clone());
    }
    if let Some(providers) = &args.providers {
        config.ort.providers = providers.clone();
    }
    if args.cpu_fallback {
        config.ort.allow_cpu_fallback = true;
    }
    if config.kind != BackendKind::Ort
        && (args.ort_library.is_some() || args.providers.is_some() || args.cpu_fallback)
    {
        return Err(bad_input(
            "--ort-library, --providers and --cpu-fallback are for the ort backend: add --backend ort",
        ));
    }
    if let Some(url) = &args.triton {
        let mut server = spatialbot_edge::model::backend::TritonConfig::new(url.clone());
        server.deadline = std::time::Duration::from_millis(args.triton_deadline_ms.max(1));
        server.logits_top_k = args.triton_top_k;
        let local = (config.kind != BackendKind::Triton).then(|| Box::new(config.clone()));
        config = BackendConfig {
            kind: BackendKind::Triton,
            threads: config.threads,
            triton: Some(server),
            fallback: local,
            ..BackendConfig::default()
        };
    }
    Ok(config)
}

fn read_pair(rgb_path: &Path, depth_path: &Path) -> anyhow::Result<(RgbImage, DepthMm, String)> {
    let rgb = imageio::read_rgb_png(rgb_path).map_err(bad_input)?;
    let depth = imageio::read_depth_png(depth_path).map_err(bad_input)?;
    if (rgb.width, rgb.height) != (depth.width(), depth.height()) {
        return Err(bad_input(format!(
            "{} is {}×{} but {} is {}×{}: the depth must be registered to the colour image (`spatialbot-edge register`)",
            rgb_path.display(),
            rgb.width,
            rgb.height,
            depth_path.display(),
            depth.width(),
            depth.height()
        )));
    }
    let source = format!("{} + {}", rgb_path.display(), depth_path.display());
    Ok((rgb, depth, source))
}

fn camera_error(e: camera::SourceError) -> anyhow::Error {
    use camera::SourceError as E;
    match e {
        E::Spec { .. }
        | E::FeatureMissing { .. }
        | E::Recording { .. }
        | E::Image { .. }
        | E::Calibration(_) => bad_input(e),
        other => anyhow::Error::new(other),
    }
}

/// One frame from the camera, its depth registered into the colour camera's frame.
fn capture(spec: &str) -> anyhow::Result<(RgbImage, DepthMm, String)> {
    let parsed: CameraSpec = spec.parse().map_err(bad_input)?;
    let mut source =
        camera::open(&parsed, &OpenOptions::with_register(true)).map_err(camera_error)?;
    let described = source.describe();
    let frame = source
        .next_frame()
        .map_err(camera_error)
        .with_context(|| format!("reading a frame from {described}"))?
        .ok_or_else(|| bad_input(format!("{spec}: the source ended before its first frame")))?;
    tracing::info!(
        "captured frame {} ({}×{}) from {described}",
        frame.sequence,
        frame.color.width,
        frame.color.height
    );
    let depth = frame.depth.registered().cloned().ok_or_else(|| {
        bad_input(format!(
            "{described} is a colour-only camera: the question needs depth"
        ))
    })?;
    Ok((
        Arc::unwrap_or_clone(frame.color),
        Arc::unwrap_or_clone(depth),
        format!("{described}, frame {}", frame.sequence),
    ))
}

/// The count and sampling flags against their caps (`crate::limits`), before anything is loaded.
fn check_flag_limits(args: &Args) -> anyhow::Result<()> {
    use spatialbot_edge::limits as lim;
    if let Some(n) = args.threads {
        lim::check_usize("--threads", "", n, 0, lim::MAX_THREADS).map_err(bad_input)?;
    }
    if let Some(n) = args.max_new_tokens {
        lim::check_usize("--max-new-tokens", "", n, 1, lim::MAX_NEW_TOKENS).map_err(bad_input)?;
    }
    if let Some(t) = args.temperature {
        if !(t.is_finite() && t > 0.0 && t <= lim::MAX_TEMPERATURE) {
            return Err(bad_input(format!(
                "--temperature = {t} is not allowed; allowed: greater than 0, at most {} (docs/limits.md)",
                lim::MAX_TEMPERATURE
            )));
        }
    }
    if !(args.top_p.is_finite() && args.top_p > 0.0 && args.top_p <= 1.0) {
        return Err(bad_input(format!(
            "--top-p = {} is not allowed; allowed: greater than 0, at most 1",
            args.top_p
        )));
    }
    Ok(())
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let started = Instant::now();
    check_flag_limits(&args)?;
    let folder =
        spatialbot_edge::model::validate::validate_folder(&args.model, Some(ModelKind::Spatialbot))
            .map_err(model_error)?;
    let (rgb, depth, source) = match (&args.camera, &args.rgb, &args.depth) {
        (Some(spec), _, _) => capture(spec)?,
        (None, Some(rgb_path), Some(depth_path)) => read_pair(rgb_path, depth_path)?,
        _ => {
            return Err(bad_input(
                "give --rgb PNG and --depth PNG (or --camera SPEC)",
            ))
        }
    };
    let size = folder.manifest.vision.image_size;
    let preprocess_started = Instant::now();
    let tensors = match (&args.rgb_tensor, &args.depth_tensor) {
        (Some(r), Some(d)) => vec![read_tensor(r, size)?, read_tensor(d, size)?],
        _ => preprocess_pair(&folder, &rgb, &depth)?,
    };
    let preprocess_ms = preprocess_started.elapsed().as_secs_f64() * 1e3;

    let config = backend_config(&args)?;
    let order = match &args.board {
        Some(b) => format!("the backends of --board {b} and the command line"),
        None => "the command line's backend".to_string(),
    };
    let mut engine = super::assemble::load_engine_with(&folder, &config, &order, "model")?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    if !json {
        eprintln!("loaded on {}", engine.describe());
        for step in engine.load_steps() {
            eprintln!("  {}: {:.1} ms", step.what, step.millis);
        }
    }
    let vision_started = Instant::now();
    let images = engine.encode_images(&tensors).map_err(model_error)?;
    let vision_ms = vision_started.elapsed().as_secs_f64() * 1e3;

    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling: match args.temperature {
            Some(temperature) => Sampling::TopP {
                temperature,
                top_p: args.top_p,
                seed: args.seed,
            },
            None => Sampling::Greedy,
        },
        stop_ids: None,
        overflow: if args.refuse_overflow {
            Overflow::Refuse
        } else {
            Overflow::Truncate
        },
        grammar: args.constrain.is_on().then_some(Grammar::DepthCalls),
    };
    let generate_started = Instant::now();
    let mut stdout = std::io::stdout();
    let answer = vqa::answer(
        &mut engine,
        &images,
        &depth,
        &args.question,
        &options,
        &mut |_round, token| {
            if !json {
                let _ = write!(stdout, "{}", token.text);
                let _ = stdout.flush();
            }
        },
    )
    .map_err(model_error)?;
    let generate_ms = generate_started.elapsed().as_secs_f64() * 1e3;

    let stage_ms = vec![
        ("load", load_ms),
        ("preprocess", preprocess_ms),
        ("vision", vision_ms),
        ("generate", generate_ms),
        ("total", started.elapsed().as_secs_f64() * 1e3),
    ];
    if json {
        print_json(&Report {
            answer: &answer.text,
            source,
            backend: engine.describe(),
            rounds: &answer.rounds,
            load: engine.load_steps(),
            stage_ms,
        })?;
        return Ok(0);
    }
    outln!();
    for (k, round) in answer.rounds.iter().enumerate() {
        for call in &round.calls {
            let value = call
                .mm
                .map(|mm| format!("{mm} mm"))
                .unwrap_or_else(|| "unknown".into());
            outln!("round {}: Depth({}, {}) = {value}", k + 1, call.x, call.y);
        }
    }
    outln!("answer: {}", answer.text);
    let mut timing: Vec<String> = stage_ms
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.1} ms"))
        .collect();
    for (k, round) in answer.rounds.iter().enumerate() {
        let t = &round.generation.timings;
        timing.push(format!(
            "round {}: prefill {} pos {:.1} ms, {} tokens at {:.1} ms/token",
            k + 1,
            t.prefill_positions,
            t.prefill.as_secs_f64() * 1e3,
            round.generation.token_ids.len(),
            t.mean_decode().as_secs_f64() * 1e3
        ));
    }
    eprintln!("{} | {}", engine.describe(), timing.join(", "));
    Ok(0)
}
