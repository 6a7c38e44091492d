//! Stage timing, latency histograms and reports, shared by `bench` and the `run` loop.
//!
//! # Feeding it from a pipeline
//!
//! ```
//! use spatialbot_edge::bench::{stage, FrameStamps, RunInfo, StageRecorder};
//! let mut recorder = StageRecorder::new();
//! recorder.declare_stages(&[stage::CAMERA, stage::PACK]);      // optional: fixes report order
//! for n in 0..3 {
//!     let mut stamps = FrameStamps::start(n);  // or start_at(capture time on the host clock)
//!     // … grab the frame …
//!     stamps.mark(stage::CAMERA);              // end of a stage = start of the next
//!     // … pack …
//!     stamps.mark(stage::PACK);
//!     recorder.record_frame(&stamps);          // in the thread that owns the recorder
//! }
//! recorder.record_dropped(stage::CAMERA, 1);   // a frame the camera stage threw away
//! let report = recorder.report(RunInfo::default());
//! assert_eq!(report.frames.measured, 3);
//! ```
//!
//! `FrameStamps` travels with the frame through the channels; only the thread that owns the
//! `StageRecorder` touches it. The first action sent should call
//! `recorder.record_startup(bench::system::process_age().unwrap_or(since_main))`.
//!
//! # JSON schema `spatialbot-edge.bench/1` (`bench --json`, `bench --out DIR/report.json`)
//!
//! All times are milliseconds unless the name says otherwise; `null` means not measured.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | `"spatialbot-edge.bench/1"` |
//! | `tool_version` | string | the `spatialbot-edge` version that measured |
//! | `board`, `board_file` | string | board profile name and the file it came from |
//! | `camera` | string | the camera SPEC frames came from |
//! | `frames.warmup` | int | frames run before measuring (not in the statistics) |
//! | `frames.measured` | int | frames in the statistics |
//! | `frames.dropped` | int | frames dropped by any stage during the measurement |
//! | `wall_s` | number | seconds of the measured part |
//! | `fps` | number | `frames.measured / wall_s` |
//! | `startup_ms` | number\|null | process start → first action sent (10 ms resolution) |
//! | `peak_rss_mb` | number\|null | peak resident memory (`VmHWM`), MiB |
//! | `stages[]` | array | one per stage run, in pipeline order: |
//! | `stages[].name` | string | `camera`, `register`, `pack`, `preprocess`, `vision`, `prefill`, `decode`, `action`, `link`, … |
//! | `stages[].per` | string | what one sample is: `frame`; `image` (`vision`: one per image through the vision graph); `token` (`decode`: one per generated token after the first, i.e. ms/token). Absent in older reports: `frame` |
//! | `stages[].count`, `.dropped` | int | samples, and frames this stage dropped (`action`: actions the safety governor held) |
//! | `stages[].mean_ms`, `.min_ms`, `.p50_ms`, `.p90_ms`, `.p99_ms`, `.max_ms` | number | nearest-rank quantiles within 0.8 %; min and max exact |
//! | `stages[].series` | array of `[s, ms]` | per-frame latency over time (thinned to ≤ 2,000 points) |
//! | `end_to_end` | object\|null | as a stage: frame origin (capture) → last stage |
//! | `stages_not_run[]` | `{name, why}` | pipeline stages this build or run could not measure |
//! | `notes[]` | string | what the stages ran with: camera, image sizes, link |
//! | `graphs[]` | `{graph, backend, provider}` | which backend (`tract`, `onnxruntime`) and execution provider (`cpu`, `cuda`, `tensorrt`) ran each graph (`vision`, `embed`, `decoder`) |
//! | `model` | object\|null | the model folder the inference stages ran (null: none ran): `dir`, `name`, `kind` (`policy`/`spatialbot`), `backend` (the engine's own description), `load_ms` (manifest hashes, tokenizer, graphs, engine builds), `images_per_frame`, `prefill_positions` (of the last frame), `generated_tokens` (measured frames) |
//! | `host` | object | `arch`, `model`, `cpus`, `kernel`, `l4t`, `power_mode`, `cpu_governor`, `cpu_cur_mhz[]`, `cpu_max_mhz`, `devfreq[]` (`name`, `cur_mhz`, `max_mhz`), `mem_total_mb`, `mem_available_mb`; `"unknown"`/`null` where not readable |
//!
//! The `prefill` stage is the prompt's embedding, splicing and decoder prefill up to the first
//! token; `decode` one decode step, sampling and detokenising per later token; `action` the
//! answer's parsing and decoding and the safety governor (plus the engine's last cache
//! append). Per-image and per-token stages add one sample per image or token, so their `count`
//! differs from `frames.measured`; `end_to_end` is always per frame.
//!
//! Fields are only ever added within schema 1; a reader must ignore fields it does not know.
//! Added after the first version: `stages[].per`, `model`.

pub mod histogram;
pub mod recorder;
pub mod report;
pub mod svg;
pub mod system;

pub use histogram::LatencyHistogram;
pub use recorder::{per, stage, FrameStamps, StageRecorder};
pub use report::{
    compare, Comparison, GraphBackend, ModelRun, Report, ReportError, RunInfo, StageNotRun,
    StageSummary, SCHEMA,
};
pub use system::HostInfo;
