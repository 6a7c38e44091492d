//! The report of a loop run — `run --json`, `bench --json`, `bench --out DIR/report.json`, one
//! schema (`spatialbot-edge.report/2`, documented in `telemetry/mod.rs`) — and the comparison of
//! two reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::histogram::LatencyHistogram;
use super::system::HostInfo;

pub const SCHEMA: &str = "spatialbot-edge.report/2";
/// The schema `bench` wrote before `run` and `bench` shared one; `bench --compare` still reads
/// it (its fields are a subset of this schema's).
pub const SCHEMA_BENCH_1: &str = "spatialbot-edge.bench/1";

/// Where and how a run was measured; filled by the caller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The command that drove the loop: `run` or `bench`.
    pub command: String,
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
    /// `[seconds since start, milliseconds]` per sample, thinned on long runs (`bench`; the
    /// loop of `run` keeps none, so its report stays small however long it runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Frames {
    /// Frames run before measuring (`bench --warmup`; not in the statistics).
    pub warmup: u64,
    /// Frames in the statistics: the loop's steps.
    pub measured: u64,
    /// Frames the camera side delivered.
    #[serde(default)]
    pub captured: u64,
    /// Frames dropped: a newer one arrived before the loop took it, or a stage threw it away.
    pub dropped: u64,
    /// Frames the loop skipped because they were captured before its last action reached the
    /// arm (`run`; 0 in `bench`).
    #[serde(default)]
    pub before_action: u64,
}

/// The per-stage summaries in the order a frame meets the stages; indexable by stage name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stages(pub Vec<StageSummary>);

impl Stages {
    pub fn get(&self, name: &str) -> Option<&StageSummary> {
        self.0.iter().find(|s| s.name == name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The stage names, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|s| s.name.as_str()).collect()
    }
}

impl std::ops::Deref for Stages {
    type Target = [StageSummary];
    fn deref(&self) -> &[StageSummary] {
        &self.0
    }
}

impl std::ops::Index<usize> for Stages {
    type Output = StageSummary;
    fn index(&self, i: usize) -> &StageSummary {
        &self.0[i]
    }
}

impl std::ops::Index<&str> for Stages {
    type Output = StageSummary;
    /// Panics when the stage was not recorded; use [`Stages::get`] where it may be absent.
    fn index(&self, name: &str) -> &StageSummary {
        match self.get(name) {
            Some(s) => s,
            None => panic!("no stage {name:?} in the report"),
        }
    }
}

/// Vision-graph work relative to re-encoding every frame of the prompt's history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VisionCacheSummary {
    pub images_encoded: u64,
    pub images_referenced: u64,
    /// images_encoded / images_referenced.
    pub encode_ratio: f64,
}

/// One part of startup, in the order it happened (model load steps nest inside their model's).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StartupPhase {
    pub what: String,
    pub ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StartupSummary {
    /// Process start → the first action's bytes on the link; `None` when none was sent.
    pub first_action_ms: Option<f64>,
    /// Process start → the loop's threads started.
    pub loop_started_ms: Option<f64>,
    pub phases: Vec<StartupPhase>,
}

/// Per-action outcomes reported by the controller, and what the host did about them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkOutcomes {
    pub session: String,
    pub actions_sent: u64,
    pub applied: u64,
    pub held: u64,
    pub rejected: u64,
    pub duplicate: u64,
    pub unacknowledged: u64,
    pub heartbeats_sent: u64,
    pub statuses: u64,
    pub faults: u64,
    pub controller_watchdogs: u64,
    pub limit_violations: u64,
    pub bad_frames: u32,
    pub reconnects: u64,
    pub rehellos: u64,
    pub new_sessions: u64,
    pub silent_holds: u64,
    pub unacknowledged_holds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub tool_version: String,
    /// `run` or `bench`.
    #[serde(default)]
    pub command: String,
    /// Why the loop ended (`steps`, `duration`, `signal`, `link_lost`, …) and in words.
    #[serde(default)]
    pub stop_reason: String,
    #[serde(default)]
    pub stop_detail: String,
    /// The process's exit code for this ending (docs/link.md has the table).
    #[serde(default)]
    pub exit_code: u8,
    /// Policy steps taken, actions written to the link, and the steps that held, by reason.
    #[serde(default)]
    pub steps: u64,
    #[serde(default)]
    pub actions_sent: u64,
    #[serde(default)]
    pub holds: BTreeMap<String, u64>,
    /// Log events dropped because the logger fell behind (the loop never waits for it).
    #[serde(default)]
    pub log_events_dropped: u64,
    #[serde(default)]
    pub vision_cache: VisionCacheSummary,
    #[serde(default)]
    pub startup: StartupSummary,
    /// The controller's side of the actions sent (absent when the loop drove no link).
    #[serde(default)]
    pub link: Option<LinkOutcomes>,
    pub board: String,
    pub board_file: String,
    pub camera: String,
    pub frames: Frames,
    pub wall_s: f64,
    /// `frames.measured / wall_s`: the loop's rate.
    pub fps: f64,
    pub peak_rss_mb: Option<f64>,
    pub stages: Stages,
    pub stages_not_run: Vec<StageNotRun>,
    #[serde(default)]
    pub notes: Vec<String>,
    pub graphs: Vec<GraphBackend>,
    /// The inference server's share of the run (the `triton` backend): calls it answered, calls
    /// the local backend ran instead, switches between them and why, bytes on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<serde_json::Value>,
    pub host: HostInfo,
    #[serde(default)]
    pub model: Option<ModelRun>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        info: RunInfo,
        stages: Vec<StageSummary>,
        measured: u64,
        dropped: u64,
        wall_s: f64,
        startup: Option<std::time::Duration>,
        graphs: Vec<GraphBackend>,
    ) -> Self {
        Self {
            schema: SCHEMA.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            command: info.command,
            stop_reason: String::new(),
            stop_detail: String::new(),
            exit_code: 0,
            steps: measured,
            actions_sent: 0,
            holds: BTreeMap::new(),
            log_events_dropped: 0,
            vision_cache: VisionCacheSummary::default(),
            startup: StartupSummary {
                first_action_ms: startup.map(|d| d.as_secs_f64() * 1e3),
                ..StartupSummary::default()
            },
            link: None,
            board: info.board,
            board_file: info.board_file,
            camera: info.camera,
            frames: Frames {
                warmup: info.warmup_frames,
                measured,
                captured: 0,
                dropped,
                before_action: 0,
            },
            wall_s,
            fps: if wall_s > 0.0 {
                measured as f64 / wall_s
            } else {
                0.0
            },
            peak_rss_mb: super::system::peak_rss_mb(),
            stages: Stages(stages),
            stages_not_run: info.stages_not_run,
            notes: info.notes,
            graphs,
            remote: None,
            host: info.host,
            model: info.model,
        }
    }

    /// Sets the frames measured (the loop's steps) over `wall_s` seconds, and the rate.
    pub fn set_frames_measured(&mut self, measured: u64, wall_s: f64) {
        self.frames.measured = measured;
        self.steps = measured;
        self.set_wall_s(wall_s);
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
        if schema != SCHEMA && schema != SCHEMA_BENCH_1 {
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

    /// Every stage, in order, for tables.
    pub fn all_stages(&self) -> impl Iterator<Item = &StageSummary> {
        self.stages.iter()
    }

    /// The report for a terminal: how the loop ended, what it ran on, then the stage table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let command = if self.command.is_empty() {
            "bench"
        } else {
            &self.command
        };
        if !self.stop_reason.is_empty() {
            out.push_str(&format!(
                "{command} stopped: {} ({})\n  steps {}  actions sent {}  holds {}  loop {:.2} Hz over {:.1} s\n",
                self.stop_reason,
                self.stop_detail,
                self.steps,
                self.actions_sent,
                self.holds.values().sum::<u64>(),
                self.fps,
                self.wall_s,
            ));
        }
        let h = &self.host;
        if !self.board.is_empty() {
            out.push_str(&format!(
                "  board {} ({}) on {} {}, {} CPUs; power mode: {}; CPU governor: {}\n",
                self.board, self.board_file, h.arch, h.model, h.cpus, h.power_mode, h.cpu_governor
            ));
        }
        out.push_str(&format!(
            "  camera {}: {} frames captured, {} measured after {} warm-up, {} dropped, {:.2} frames/s\n",
            self.camera,
            self.frames.captured,
            self.frames.measured,
            self.frames.warmup,
            self.frames.dropped,
            self.fps
        ));
        if let Some(m) = &self.model {
            out.push_str(&format!(
                "  model {} ({}) from {}: loaded in {:.0} ms on {}; {} image(s) and {} prefill positions per frame, {} tokens generated\n",
                m.name, m.kind, m.dir, m.load_ms, m.backend, m.images_per_frame, m.prefill_positions, m.generated_tokens
            ));
        }
        let c = &self.vision_cache;
        if c.images_referenced > 0 {
            out.push_str(&format!(
                "  vision cache: {} images encoded for {} used ({:.2}x of re-encoding)\n",
                c.images_encoded, c.images_referenced, c.encode_ratio
            ));
        }
        match self.startup.first_action_ms {
            Some(ms) => out.push_str(&format!(
                "  startup: first action {ms:.1} ms after process start"
            )),
            None => out.push_str("  startup: no action sent"),
        }
        if let Some(ms) = self.startup.loop_started_ms {
            out.push_str(&format!(" (loop running after {ms:.1} ms)"));
        }
        out.push('\n');
        if !self.startup.phases.is_empty() {
            let p: Vec<String> = self
                .startup
                .phases
                .iter()
                .map(|p| format!("{} {:.1}", p.what, p.ms))
                .collect();
            out.push_str(&format!("    startup ms: {}\n", p.join(", ")));
        }
        if let Some(l) = &self.link {
            out.push_str(&format!(
                "  arm (session {}): {} applied, {} held, {} rejected, {} duplicate, {} unacknowledged of {} sent; {} faults, {} bad frames, {} reconnects, {} new hellos, {} new sessions\n",
                l.session, l.applied, l.held, l.rejected, l.duplicate, l.unacknowledged, l.actions_sent,
                l.faults, l.bad_frames, l.reconnects, l.rehellos, l.new_sessions
            ));
        }
        if let Some(r) = &self.remote {
            let n = |k: &str| r[k].as_u64().unwrap_or(0);
            out.push_str(&format!(
                "  inference server {}: {} calls answered, {} ran locally; {} switches to local ({} unreachable, {} deadline, {} server error), {} back; {} generations replayed locally; {} B sent, {} B received\n",
                r["url"].as_str().unwrap_or(""),
                n("remote_calls"), n("local_calls"), n("switches_to_local"),
                n("switches_unreachable"), n("switches_deadline"), n("switches_server_error"),
                n("switches_back"), n("replays"), n("bytes_sent"), n("bytes_received")
            ));
        }
        if !self.holds.is_empty() {
            let h: Vec<String> = self.holds.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out.push_str(&format!("  holds by reason: {}\n", h.join(", ")));
        }
        out.push_str(&format!(
            "  {:<13} {:>6} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "stage", "per", "count", "dropped", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        for s in self.all_stages() {
            out.push_str(&format!(
                "  {:<13} {:>6} {:>7} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
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
            out.push_str(&format!("  not run: {:<12} {}\n", n.name, n.why));
        }
        for n in &self.notes {
            out.push_str(&format!("  {n}\n"));
        }
        for g in &self.graphs {
            out.push_str(&format!(
                "  graph {}: {} ({})\n",
                g.graph, g.backend, g.provider
            ));
        }
        match self.peak_rss_mb {
            Some(mb) => out.push_str(&format!("  peak RSS: {mb:.1} MiB\n")),
            None => out.push_str("  peak RSS: unknown\n"),
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{source_name}: not a report of `run --json` or `bench --json`: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: schema {found:?} is not {SCHEMA:?} (or {SCHEMA_BENCH_1:?}); re-run `spatialbot-edge bench --json` with this version")]
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
            .startup
            .first_action_ms
            .zip(b.startup.first_action_ms)
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
