//! `spatialbot-edge qa-eval`: a SpatialBot model on a question set (ours or SpatialBench's
//! layout), scored per category by the paper's rules (`spatialqa::score`).
//!
//! Each question is asked as `ask` asks it: the same model loading (`assemble::load_engine_with`),
//! preprocessing and Depth API loop (`model::vqa::answer`), greedy decoding, so the same numbers
//! come out every run. `--no-depth` is the paper's RGB rows: one image, the prompt with one
//! placeholder, and Depth API calls answered "unknown" (there is no depth map to read).
//! Questions whose image cannot be read or whose prompt is over the context limit are skipped
//! and counted with the reason; a malformed set is bad input (exit 2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use spatialbot_edge::fsutil;
use spatialbot_edge::imageio;
use spatialbot_edge::model::backend::{BackendConfig, BackendKind};
use spatialbot_edge::model::manifest::ModelKind;
use spatialbot_edge::model::{vqa, GenerateOptions, ImageEmbedding, ModelError, Overflow};
use spatialbot_edge::progress::Progress;
use spatialbot_edge::rgbd::DepthMm;
use spatialbot_edge::spatialqa::score::{self, BenchRecord};
use spatialbot_edge::spatialqa::set::{self, QuestionSet};
use spatialbot_edge::spatialqa::{Question, CATEGORIES};

use super::ask::{model_error, preprocess_images};
use super::{bad_input, print_json};

pub const SCHEMA: &str = "spatialbot-edge/qa-eval/1";

#[derive(clap::Args)]
pub struct Args {
    /// SpatialBot model folder (kind = "spatialbot").
    #[arg(long)]
    pub model: PathBuf,
    /// The question set: our folder (meta.json + questions.jsonl), or SpatialBench's folder or
    /// one of its task files.
    #[arg(long, value_name = "PATH")]
    pub set: PathBuf,
    /// RGB only (the paper's RGB rows): no depth image, Depth API calls answered "unknown".
    #[arg(long)]
    pub no_depth: bool,
    /// Write results.jsonl (one line per question) and report.json into this folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Ask only the first N questions.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only these categories (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub categories: Option<Vec<String>>,
    /// Inference backend (tract or ort).
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// Threads for matrix products (0 = all cores, at most 64).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Most tokens per answer round (default: the manifest's max_new_tokens).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
}

/// One question's outcome (a line of results.jsonl).
#[derive(Clone, Debug, Serialize)]
pub struct QuestionResult {
    pub id: String,
    pub category: String,
    pub bench_category: String,
    pub question: String,
    pub expected: String,
    /// The final answer; `None` when skipped.
    pub response: Option<String>,
    pub correct: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Every round's answer, the last one included.
    pub rounds: Vec<String>,
    /// Depth API calls: (x, y, millimetres or null).
    pub depth_calls: Vec<(String, String, Option<u32>)>,
    /// The Depth API loop's time for this question (prefills and decoding), ms.
    pub latency_ms: f64,
    /// Tokens generated over all rounds.
    pub tokens: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CategoryScore {
    pub answered: usize,
    pub correct: usize,
    /// correct / answered, in %; `None` with nothing answered.
    pub accuracy: Option<f64>,
    pub skipped: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub model: String,
    pub model_name: String,
    pub set: String,
    pub layout: &'static str,
    /// "rgbd" or "rgb".
    pub input: &'static str,
    pub backend: String,
    pub questions: usize,
    pub answered: usize,
    pub correct: usize,
    pub accuracy: Option<f64>,
    pub per_category: BTreeMap<String, CategoryScore>,
    pub per_bench_category: BTreeMap<String, CategoryScore>,
    /// SpatialBench's own score per task file (its script's rules), for its layout.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub spatialbench: BTreeMap<String, f64>,
    /// Skip reasons, counted.
    pub skipped: BTreeMap<String, usize>,
    pub depth_api_calls: usize,
    pub depth_api_calls_per_question: f64,
    /// Per answered question: the Depth API loop (all rounds).
    pub latency: Option<Latency>,
    /// Per distinct image (pair): preprocessing and the vision graph, ms.
    pub vision_mean_ms: Option<f64>,
    pub wall_s: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn tally(
    results: &[QuestionResult],
    key: impl Fn(&QuestionResult) -> String,
) -> BTreeMap<String, CategoryScore> {
    let mut out: BTreeMap<String, CategoryScore> = BTreeMap::new();
    for r in results {
        let c = out.entry(key(r)).or_default();
        if r.skipped.is_some() {
            c.skipped += 1;
        } else {
            c.answered += 1;
            c.correct += usize::from(r.correct);
        }
    }
    for c in out.values_mut() {
        c.accuracy = (c.answered > 0).then(|| 100.0 * c.correct as f64 / c.answered as f64);
    }
    out
}

/// One question's images encoded, with the depth its Depth API calls read; `Err` is a skip
/// reason.
type Encoded = Result<(Vec<ImageEmbedding>, DepthMm), String>;

/// The images of one question, encoded; `Err` is a skip reason.
fn encode(
    engine: &mut spatialbot_edge::model::Engine,
    folder: &spatialbot_edge::model::ModelFolder,
    set: &QuestionSet,
    q: &Question,
    no_depth: bool,
) -> anyhow::Result<Encoded> {
    let image = set.image_path(q);
    let rgb = match imageio::read_rgb_image(&image) {
        Ok(rgb) => rgb,
        Err(e) => return Ok(Err(format!("image: {e}"))),
    };
    let depth = if no_depth {
        DepthMm::zeros(rgb.width, rgb.height)
    } else {
        let Some(path) = set.depth_path(q) else {
            return Ok(Err("no depth image".into()));
        };
        match imageio::read_depth_png(&path) {
            Ok(d) if (d.width(), d.height()) == (rgb.width, rgb.height) => d,
            Ok(d) => {
                return Ok(Err(format!(
                    "depth: {} is {}×{}, the image {}×{}: not registered to it",
                    path.display(),
                    d.width(),
                    d.height(),
                    rgb.width,
                    rgb.height
                )))
            }
            Err(e) => return Ok(Err(format!("depth: {e}"))),
        }
    };
    let tensors = preprocess_images(folder, &rgb, (!no_depth).then_some(&depth))?;
    let images = engine.encode_images(&tensors).map_err(model_error)?;
    Ok(Ok((images, depth)))
}

/// The first words of a skip reason, so that reasons count together ("image: …: cannot read").
fn reason_kind(reason: &str) -> String {
    if reason.starts_with("over the context limit") {
        return "over the context limit".into();
    }
    reason.split(':').next().unwrap_or(reason).to_string()
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let started = Instant::now();
    if let Some(n) = args.threads {
        spatialbot_edge::limits::check_usize(
            "--threads",
            "",
            n,
            0,
            spatialbot_edge::limits::MAX_THREADS,
        )
        .map_err(bad_input)?;
    }
    if let Some(n) = args.max_new_tokens {
        spatialbot_edge::limits::check_usize(
            "--max-new-tokens",
            "",
            n,
            1,
            spatialbot_edge::limits::MAX_NEW_TOKENS,
        )
        .map_err(bad_input)?;
    }
    if let Some(cats) = &args.categories {
        if let Some(c) = cats.iter().find(|c| !CATEGORIES.contains(&c.as_str())) {
            return Err(bad_input(format!(
                "--categories: {c:?} is not one of {}",
                CATEGORIES.join(", ")
            )));
        }
    }
    let set = set::read(&args.set).map_err(bad_input)?;
    if let Some(out) = &args.out {
        if out.exists() && !out.is_dir() {
            return Err(bad_input(format!(
                "--out {}: exists and is not a folder",
                out.display()
            )));
        }
        let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
        if same(out, &set.root) || same(out, &args.model) {
            return Err(bad_input(format!(
                "--out {}: is the set's or the model's folder; give another",
                out.display()
            )));
        }
    }
    let folder =
        spatialbot_edge::model::validate::validate_folder(&args.model, Some(ModelKind::Spatialbot))
            .map_err(model_error)?;
    let mut config = BackendConfig::default();
    if let Some(kind) = args.backend {
        config.kind = kind;
        config.fallback = None;
    }
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    let mut engine =
        super::assemble::load_engine_with(&folder, &config, "the command line's backend", "model")?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        overflow: Overflow::Refuse,
        ..GenerateOptions::default()
    };

    let mut questions: Vec<(usize, &Question)> = set
        .questions
        .iter()
        .enumerate()
        .filter(|(_, q)| {
            args.categories
                .as_ref()
                .is_none_or(|c| c.contains(&q.category))
        })
        .collect();
    if let Some(n) = args.limit {
        questions.truncate(n);
    }
    let progress = Progress::new(questions.len() as u64, "questions");
    let mut results: Vec<QuestionResult> = Vec::with_capacity(questions.len());
    let mut cached: Option<(String, Encoded)> = None;
    let mut vision_ms: Vec<f64> = Vec::new();
    for &(_, q) in &questions {
        let key = format!("{}|{}", q.image, q.depth);
        if cached.as_ref().is_none_or(|(k, _)| *k != key) {
            let t = Instant::now();
            let encoded = encode(&mut engine, &folder, &set, q, args.no_depth)?;
            if encoded.is_ok() {
                vision_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            cached = Some((key, encoded));
        }
        let mut result = QuestionResult {
            id: q.id.clone(),
            category: q.category.clone(),
            bench_category: q.bench_category.clone(),
            question: q.question.clone(),
            expected: q.answer.clone(),
            response: None,
            correct: false,
            skipped: None,
            rounds: Vec::new(),
            depth_calls: Vec::new(),
            latency_ms: 0.0,
            tokens: 0,
        };
        match cached.as_ref().map(|(_, e)| e) {
            Some(Ok((images, depth))) => {
                let t = Instant::now();
                match vqa::answer(
                    &mut engine,
                    images,
                    depth,
                    &q.question,
                    &options,
                    &mut |_, _| {},
                ) {
                    Ok(answer) => {
                        result.latency_ms = t.elapsed().as_secs_f64() * 1e3;
                        result.correct = score::is_correct(q, &answer.text);
                        for round in &answer.rounds {
                            result.rounds.push(round.generation.text.clone());
                            result.tokens += round.generation.token_ids.len();
                            for call in &round.calls {
                                result
                                    .depth_calls
                                    .push((call.x.clone(), call.y.clone(), call.mm));
                            }
                        }
                        result.response = Some(answer.text);
                    }
                    Err(ModelError::ContextOverflow { len, limit }) => {
                        result.skipped = Some(format!(
                            "over the context limit: {len} positions, the model takes {limit}"
                        ));
                    }
                    Err(e) if e.is_bad_input() => result.skipped = Some(format!("input: {e}")),
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!("question {}", q.id)))
                    }
                }
            }
            Some(Err(reason)) => result.skipped = Some(reason.clone()),
            None => result.skipped = Some("not encoded".into()),
        }
        results.push(result);
        progress.inc();
    }
    progress.finish();
    for (id, reason) in &set.skipped {
        results.push(QuestionResult {
            id: id.clone(),
            category: String::new(),
            bench_category: String::new(),
            question: String::new(),
            expected: String::new(),
            response: None,
            correct: false,
            skipped: Some(reason.clone()),
            rounds: Vec::new(),
            depth_calls: Vec::new(),
            latency_ms: 0.0,
            tokens: 0,
        });
    }

    let answered: Vec<&QuestionResult> = results.iter().filter(|r| r.skipped.is_none()).collect();
    let correct = answered.iter().filter(|r| r.correct).count();
    let mut latencies: Vec<f64> = answered.iter().map(|r| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let calls: usize = answered.iter().map(|r| r.depth_calls.len()).sum();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        if let Some(reason) = &r.skipped {
            *skipped.entry(reason_kind(reason)).or_default() += 1;
        }
    }
    let mut spatialbench = BTreeMap::new();
    if set.layout == "spatialbench" {
        let by_id: BTreeMap<&str, &QuestionResult> =
            results.iter().map(|r| (r.id.as_str(), r)).collect();
        let records: Vec<BenchRecord<'_>> = questions
            .iter()
            .filter_map(|&(i, q)| {
                let (file, index) = set.records.get(i)?.as_ref()?;
                Some(BenchRecord {
                    file,
                    index: *index,
                    answer: &q.answer,
                    response: by_id.get(q.id.as_str()).and_then(|r| r.response.as_deref()),
                })
            })
            .collect();
        for (file, _) in set::SPATIALBENCH_FILES {
            if let Some(s) = score::spatialbench_score(file, &records) {
                spatialbench.insert(file.to_string(), s);
            }
        }
    }
    let report = Report {
        schema: SCHEMA,
        model: args.model.display().to_string(),
        model_name: folder.manifest.name.clone(),
        set: args.set.display().to_string(),
        layout: set.layout,
        input: if args.no_depth { "rgb" } else { "rgbd" },
        backend: engine.describe(),
        questions: results.len(),
        answered: answered.len(),
        correct,
        accuracy: (!answered.is_empty()).then(|| 100.0 * correct as f64 / answered.len() as f64),
        per_category: tally(&results, |r| r.category.clone()),
        per_bench_category: tally(&results, |r| r.bench_category.clone()),
        spatialbench,
        skipped,
        depth_api_calls: calls,
        depth_api_calls_per_question: if answered.is_empty() {
            0.0
        } else {
            calls as f64 / answered.len() as f64
        },
        latency: (!latencies.is_empty()).then(|| Latency {
            mean_ms: latencies.iter().sum::<f64>() / latencies.len() as f64,
            p50_ms: percentile(&latencies, 50.0),
            p95_ms: percentile(&latencies, 95.0),
            max_ms: latencies.last().copied().unwrap_or(0.0),
        }),
        vision_mean_ms: (!vision_ms.is_empty())
            .then(|| vision_ms.iter().sum::<f64>() / vision_ms.len() as f64),
        wall_s: started.elapsed().as_secs_f64(),
    };
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .map_err(|e| bad_input(format!("--out {}: {e}", out.display())))?;
        fsutil::remove_temps_on_signal()
            .map_err(|e| anyhow::anyhow!("installing the SIGINT/SIGTERM cleanup: {e}"))?;
        let mut lines = String::new();
        for r in &results {
            lines.push_str(&serde_json::to_string(r)?);
            lines.push('\n');
        }
        fsutil::write_atomic(&out.join("results.jsonl"), lines.as_bytes())?;
        fsutil::write_atomic(
            &out.join("report.json"),
            (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
        )?;
    }
    if json {
        print_json(&report)?;
    } else {
        print_table(&report);
    }
    Ok(0)
}

fn print_table(r: &Report) {
    let pct = |a: Option<f64>| a.map_or("–".to_string(), |a| format!("{a:.1} %"));
    outln!(
        "{} on {} ({} layout, {}): {} questions, {} answered",
        r.model_name,
        r.set,
        r.layout,
        if r.input == "rgb" {
            "RGB only"
        } else {
            "RGB-D"
        },
        r.questions,
        r.answered
    );
    outln!(
        "{:<18} {:>8} {:>9} {:>8}",
        "category",
        "right",
        "accuracy",
        "skipped"
    );
    for (c, s) in &r.per_category {
        if c.is_empty() {
            continue;
        }
        outln!(
            "{:<18} {:>8} {:>9} {:>8}",
            c,
            format!("{}/{}", s.correct, s.answered),
            pct(s.accuracy),
            s.skipped
        );
    }
    outln!(
        "{:<18} {:>8} {:>9}",
        "all",
        format!("{}/{}", r.correct, r.answered),
        pct(r.accuracy)
    );
    for (file, s) in &r.spatialbench {
        outln!("SpatialBench {file}: {s:.1}");
    }
    for (reason, n) in &r.skipped {
        outln!("skipped {n}: {reason}");
    }
    if let Some(l) = &r.latency {
        outln!(
            "Depth API calls: {} ({:.2} per question); per question: mean {:.1} ms, p50 {:.1} ms, p95 {:.1} ms; vision per image {:.1} ms ({})",
            r.depth_api_calls,
            r.depth_api_calls_per_question,
            l.mean_ms,
            l.p50_ms,
            l.p95_ms,
            r.vision_mean_ms.unwrap_or(0.0),
            r.backend
        );
    }
}
