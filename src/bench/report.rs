//! The bench report (JSON schema `spatialbot-edge.bench/1`, documented in `bench/mod.rs`) and
//! the comparison of two reports.

use serde::{Deserialize, Serialize};

use super::histogram::LatencyHistogram;
use super::system::HostInfo;

pub const SCHEMA: &str = "spatialbot-edge.bench/1";

/// Where and how a run was measured; filled by the caller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Board profile name and the file it came from.
    pub board: String,
    pub board_file: String,
    /// The camera SPEC the frames came from.
    pub camera: String,
    /// Frames run before measuring (not in the statistics).
    pub warmup_frames: u64,
    /// Stages that exist in the pipeline but were not run, and why.
    pub stages_not_run: Vec<StageNotRun>,
    /// What the stages ran with (camera, image sizes, link), one line each.
    pub notes: Vec<String>,
    pub host: HostInfo,
    /// The model folder the inference stages ran, when they ran.
    pub model: Option<ModelRun>,
}

/// The model folder behind the `vision`, `prefill` and `decode` stages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRun {
    /// The folder, as given.
    pub dir: String,
    /// `name` and `kind` (`policy` or `spatialbot`) from its manifest.
    pub name: String,
    pub kind: String,
    /// What the backend says about itself (library, providers, threads).
    pub backend: String,
    /// Manifest check, tokenizer and graph loading (TensorRT engine builds included), ms.
    pub load_ms: f64,
    /// Images through the vision graph per frame.
    pub images_per_frame: u64,
    /// Positions prefilled per frame (prompt text and image rows), the last frame's.
    pub prefill_positions: u64,
    /// Tokens generated over the measured frames (the first of each frame comes from the
    /// prefill; each later one is one `decode` sample).
    pub generated_tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageNotRun {
    pub name: String,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphBackend {
    pub graph: String,
    pub backend: String,
    pub provider: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub name: String,
    pub count: u64,
    pub dropped: u64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// What one sample is: `frame`, `image` (the vision graph, once per image) or `token`
    /// (decode, once per generated token after the first).
    #[serde(default = "per_frame")]
    pub per: String,
    /// `[seconds since start, milliseconds]` per sample, thinned on long runs.
    #[serde(default)]
    pub series: Vec<[f64; 2]>,
}

fn per_frame() -> String {
    super::recorder::per::FRAME.to_string()
}

fn ms(ns: Option<u64>) -> f64 {
    ns.map(|v| v as f64 / 1e6).unwrap_or(0.0)
}

impl StageSummary {
    pub(crate) fn from_histogram(
        name: &str,
        per: &str,
        h: &LatencyHistogram,
        dropped: u64,
        series: Vec<[f64; 2]>,
    ) -> Self {
        Self {
            name: name.to_string(),
            count: h.count(),
            dropped,
            mean_ms: h.mean_ns().map(|v| v / 1e6).unwrap_or(0.0),
            min_ms: ms(h.min_ns()),
            p50_ms: ms(h.quantile_ns(0.50)),
            p90_ms: ms(h.quantile_ns(0.90)),
            p99_ms: ms(h.quantile_ns(0.99)),
            max_ms: ms(h.max_ns()),
            per: per.to_string(),
            series,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frames {
    pub warmup: u64,
    pub measured: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub tool_version: String,
    pub board: String,
    pub board_file: String,
    pub camera: String,
    pub frames: Frames,
    pub wall_s: f64,
    pub fps: f64,
    pub startup_ms: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub stages: Vec<StageSummary>,
    pub end_to_end: Option<StageSummary>,
    pub stages_not_run: Vec<StageNotRun>,
    #[serde(default)]
    pub notes: Vec<String>,
    pub graphs: Vec<GraphBackend>,
    pub host: HostInfo,
    #[serde(default)]
    pub model: Option<ModelRun>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        info: RunInfo,
        stages: Vec<StageSummary>,
        end_to_end: Option<StageSummary>,
        measured: u64,
        dropped: u64,
        wall_s: f64,
        startup: Option<std::time::Duration>,
        graphs: Vec<GraphBackend>,
    ) -> Self {
        Self {
            schema: SCHEMA.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            board: info.board,
            board_file: info.board_file,
            camera: info.camera,
            frames: Frames {
                warmup: info.warmup_frames,
                measured,
                dropped,
            },
            wall_s,
            fps: if wall_s > 0.0 {
                measured as f64 / wall_s
            } else {
                0.0
            },
            startup_ms: startup.map(|d| d.as_secs_f64() * 1e3),
            peak_rss_mb: super::system::peak_rss_mb(),
            stages,
            end_to_end,
            stages_not_run: info.stages_not_run,
            notes: info.notes,
            graphs,
            host: info.host,
            model: info.model,
        }
    }

    /// Sets the measured wall time (e.g. excluding warm-up) and recomputes fps.
    pub fn set_wall_s(&mut self, wall_s: f64) {
        self.wall_s = wall_s;
        self.fps = if wall_s > 0.0 {
            self.frames.measured as f64 / wall_s
        } else {
            0.0
        };
    }

    /// Parses a report; refuses other schemas with a message naming `source`.
    pub fn from_json(text: &str, source: &str) -> Result<Report, ReportError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ReportError::Parse {
                source_name: source.to_string(),
                message: e.to_string(),
            })?;
        let schema = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        if schema != SCHEMA {
            return Err(ReportError::Schema {
                source_name: source.to_string(),
                found: schema.to_string(),
            });
        }
        serde_json::from_value(value).map_err(|e| ReportError::Parse {
            source_name: source.to_string(),
            message: e.to_string(),
        })
    }

    /// The stages then end-to-end, for tables.
    pub fn all_stages(&self) -> impl Iterator<Item = &StageSummary> {
        self.stages.iter().chain(self.end_to_end.iter())
    }

    /// A plain-text table for terminals.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let h = &self.host;
        out.push_str(&format!(
            "board {} ({}) on {} {}, {} CPUs; power mode: {}; CPU governor: {}\n",
            self.board, self.board_file, h.arch, h.model, h.cpus, h.power_mode, h.cpu_governor
        ));
        out.push_str(&format!(
            "camera {}: {} frames measured after {} warm-up, {} dropped, {:.2} s, {:.2} frames/s\n",
            self.camera,
            self.frames.measured,
            self.frames.warmup,
            self.frames.dropped,
            self.wall_s,
            self.fps
        ));
        if let Some(m) = &self.model {
            out.push_str(&format!(
                "model {} ({}) from {}: loaded in {:.0} ms on {}; {} image(s) and {} prefill positions per frame, {} tokens generated\n",
                m.name, m.kind, m.dir, m.load_ms, m.backend, m.images_per_frame, m.prefill_positions, m.generated_tokens
            ));
        }
        out.push_str(&format!(
            "{:<12} {:>6} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "stage", "per", "count", "dropped", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        for s in self.all_stages() {
            out.push_str(&format!(
                "{:<12} {:>6} {:>7} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
                s.name,
                s.per,
                s.count,
                s.dropped,
                s.mean_ms,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.max_ms
            ));
        }
        for n in &self.stages_not_run {
            out.push_str(&format!("not run: {:<12} {}\n", n.name, n.why));
        }
        for n in &self.notes {
            out.push_str(&format!("{n}\n"));
        }
        for g in &self.graphs {
            out.push_str(&format!(
                "graph {}: {} ({})\n",
                g.graph, g.backend, g.provider
            ));
        }
        match self.startup_ms {
            Some(ms) => out.push_str(&format!(
                "startup (process start → first action): {ms:.0} ms\n"
            )),
            None => out.push_str("startup: not measured (no action was sent)\n"),
        }
        match self.peak_rss_mb {
            Some(mb) => out.push_str(&format!("peak RSS: {mb:.1} MiB\n")),
            None => out.push_str("peak RSS: unknown\n"),
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{source_name}: not a bench report: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: schema {found:?} is not {SCHEMA:?}; re-run `spatialbot-edge bench --json` with this version")]
    Schema { source_name: String, found: String },
}

/// One row of `bench --compare A B`: B's figure over A's (below 1: B is faster).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComparedStage {
    pub name: String,
    pub a_p50_ms: f64,
    pub b_p50_ms: f64,
    pub ratio_p50: Option<f64>,
    pub a_p99_ms: f64,
    pub b_p99_ms: f64,
    pub ratio_p99: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    /// Stages in both reports.
    pub stages: Vec<ComparedStage>,
    /// Stages in only one of them.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    pub ratio_peak_rss: Option<f64>,
    pub ratio_startup: Option<f64>,
}

fn ratio(b: f64, a: f64) -> Option<f64> {
    (a > 0.0 && b.is_finite()).then(|| b / a)
}

/// Per-stage ratios B / A.
pub fn compare(a: &Report, a_name: &str, b: &Report, b_name: &str) -> Comparison {
    let mut stages = Vec::new();
    let mut only_in_a = Vec::new();
    for sa in a.all_stages() {
        match b.all_stages().find(|sb| sb.name == sa.name) {
            Some(sb) => stages.push(ComparedStage {
                name: sa.name.clone(),
                a_p50_ms: sa.p50_ms,
                b_p50_ms: sb.p50_ms,
                ratio_p50: ratio(sb.p50_ms, sa.p50_ms),
                a_p99_ms: sa.p99_ms,
                b_p99_ms: sb.p99_ms,
                ratio_p99: ratio(sb.p99_ms, sa.p99_ms),
            }),
            None => only_in_a.push(sa.name.clone()),
        }
    }
    let only_in_b = b
        .all_stages()
        .filter(|sb| !a.all_stages().any(|sa| sa.name == sb.name))
        .map(|s| s.name.clone())
        .collect();
    Comparison {
        a: a_name.to_string(),
        b: b_name.to_string(),
        stages,
        only_in_a,
        only_in_b,
        ratio_peak_rss: a
            .peak_rss_mb
            .zip(b.peak_rss_mb)
            .and_then(|(x, y)| ratio(y, x)),
        ratio_startup: a
            .startup_ms
            .zip(b.startup_ms)
            .and_then(|(x, y)| ratio(y, x)),
    }
}

impl Comparison {
    pub fn to_text(&self) -> String {
        let f = |r: Option<f64>| {
            r.map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".to_string())
        };
        let mut out = format!(
            "A = {}\nB = {}\nratio = B / A (below 1: B is faster)\n",
            self.a, self.b
        );
        out.push_str(&format!(
            "{:<12} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8}\n",
            "stage", "A p50 ms", "B p50 ms", "p50 B/A", "A p99 ms", "B p99 ms", "p99 B/A"
        ));
        for s in &self.stages {
            out.push_str(&format!(
                "{:<12} {:>10.3} {:>10.3} {:>8} {:>10.3} {:>10.3} {:>8}\n",
                s.name,
                s.a_p50_ms,
                s.b_p50_ms,
                f(s.ratio_p50),
                s.a_p99_ms,
                s.b_p99_ms,
                f(s.ratio_p99)
            ));
        }
        if !self.only_in_a.is_empty() {
            out.push_str(&format!("only in A: {}\n", self.only_in_a.join(", ")));
        }
        if !self.only_in_b.is_empty() {
            out.push_str(&format!("only in B: {}\n", self.only_in_b.join(", ")));
        }
        out.push_str(&format!(
            "peak RSS B/A: {}\nstartup B/A: {}\n",
            f(self.ratio_peak_rss),
            f(self.ratio_startup)
        ));
        out
    }
}
