//! The one telemetry: stage names, the latency histogram, the recorder, and the report that
//! `run --json`, `bench --json` and `bench --out DIR/report.json` all write (one schema), with
//! the comparison of two reports and the latency plot.
//!
//! # Feeding it
//!
//! ```
//! use spatialbot_edge::telemetry::{stage, FrameStamps, RunInfo, StageRecorder};
//! let mut recorder = StageRecorder::new();
//! recorder.declare_stages(&[stage::CAMERA, stage::PREPROCESS]); // optional: fixes report order
//! for n in 0..3 {
//!     let mut stamps = FrameStamps::start(n);  // or start_at(capture time on the host clock)
//!     // … grab the frame …
//!     stamps.mark(stage::CAMERA);              // end of a stage = start of the next
//!     // … preprocess …
//!     stamps.mark(stage::PREPROCESS);
//!     recorder.record_frame(&stamps);          // in the thread that owns the recorder
//! }
//! recorder.record_dropped(stage::CAMERA, 1);   // a frame the camera stage threw away
//! let report = recorder.report(RunInfo::default());
//! assert_eq!(report.frames.measured, 3);
//! ```
//!
//! The control loop (`pipeline`) keeps a [`StageRecorder`] in its shared counters and records
//! each stage as its thread finishes it; `bench` drives the same parts one frame at a time
//! with [`FrameStamps`].
//!
//! # JSON schema `spatialbot-edge.report/2`
//!
//! All times are milliseconds unless the name says otherwise; `null` means not measured. A
//! reader must ignore fields it does not know; fields are only ever added within a schema.
//! `bench --compare` also reads `spatialbot-edge.bench/1`, the schema `bench` wrote before
//! (its fields are a subset: no loop outcome, `startup_ms` instead of `startup`).
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | `"spatialbot-edge.report/2"` |
//! | `tool_version` | string | the `spatialbot-edge` version that measured |
//! | `command` | string | `run` or `bench` |
//! | `stop_reason`, `stop_detail` | string | why the loop ended (`steps`, `duration`, `signal`, `link_lost`, `estop`, …) and in words |
//! | `exit_code` | int | the process's exit code for that ending (`run --help` has the table) |
//! | `steps`, `actions_sent` | int | policy steps taken; actions written to the link |
//! | `holds` | object | steps that sent no action, by reason (`governor_rate_limited`, `stale_frame`, `controller_silent`, …) |
//! | `log_events_dropped` | int | log events dropped because the logger fell behind |
//! | `vision_cache` | object | `images_encoded`, `images_referenced`, `encode_ratio` |
//! | `startup` | object | `first_action_ms` (process start → first action on the link; null: none sent), `loop_started_ms`, `phases[]` (`what`, `ms`) |
//! | `link` | object\|null | the controller's answers: `session`, `actions_sent`, `applied`, `held`, `rejected`, `duplicate`, `unacknowledged`, `heartbeats_sent`, `statuses`, `faults`, `controller_watchdogs`, `limit_violations`, `bad_frames`, `reconnects`, `rehellos`, `new_sessions`, `silent_holds`, `unacknowledged_holds` |
//! | `board`, `board_file` | string | board profile name and the file it came from |
//! | `camera` | string | the camera SPEC frames came from |
//! | `frames.warmup` | int | frames run before measuring (`bench --warmup`; not in the statistics) |
//! | `frames.measured` | int | frames in the statistics (`run`: its steps) |
//! | `frames.captured`, `frames.dropped` | int | frames the camera side delivered; frames dropped (a newer one arrived first, or a stage threw it away) |
//! | `frames.before_action` | int | frames the loop skipped because they were captured before its last action reached the arm (`run`'s `--frames-before-action` turns this off) |
//! | `wall_s`, `fps` | number | seconds measured; `frames.measured / wall_s` |
//! | `peak_rss_mb` | number\|null | peak resident memory (`VmHWM`), MiB |
//! | `stages[]` | array | one per stage that ran, in the order a frame meets them ([`stage::ALL`]): |
//! | `stages[].name` | string | `camera`, `register`, `queue`, `preprocess`, `vision`, `prefill`, `decode`, `generate`, `action`, `guard`, `link`, `overhead`, `end_to_end`, `step_interval`, `startup` |
//! | `stages[].per` | string | what one sample is: `frame`; `image` (`vision`: one per image through the vision graph); `token` (`decode`: one per generated token after the first, i.e. ms/token) |
//! | `stages[].count`, `.dropped` | int | samples, and frames this stage dropped (`link` in `bench`: actions the governor or the link held) |
//! | `stages[].mean_ms`, `.min_ms`, `.p50_ms`, `.p90_ms`, `.p99_ms`, `.max_ms` | number | nearest-rank quantiles, at most 0.1 % high; min and max exact |
//! | `stages[].series` | array of `[s, ms]` | latency over time (thinned to ≤ 2,000 points); `bench` only, absent in `run`'s report |
//! | `stages_not_run[]` | `{name, why}` | stages this build, model or run did not run |
//! | `notes[]` | string | what the stages ran with: camera, image sizes, link |
//! | `graphs[]` | `{graph, backend, provider}` | which backend (`tract`, `onnxruntime`) and execution provider (`cpu`, `cuda`, `tensorrt`) ran each graph (`vision`, `embed`, `decoder`) |
//! | `model` | object\|null | the model folder: `dir`, `name`, `kind` (`policy`/`spatialbot`), `backend` (the engine's own description), `load_ms`, `images_per_frame`, `prefill_positions` (of the last frame; 0 where not known), `generated_tokens` |
//! | `host` | object | `arch`, `model`, `cpus`, `kernel`, `l4t`, `power_mode`, `cpu_governor`, `cpu_cur_mhz[]`, `cpu_max_mhz`, `devfreq[]` (`name`, `cur_mhz`, `max_mhz`), `mem_total_mb`, `mem_available_mb`; `"unknown"`/`null` where not readable |
//!
//! `prefill` is the prompt's embedding, splicing and decoder prefill up to the first token;
//! `decode` one decode step, sampling and detokenising per later token; `generate` both;
//! `preprocess` includes the SpatialBot packing of the depth image; `action` the answer's
//! parsing and decoding; `link` the safety governor, the wire encoding and the write. In `run`
//! the stages overlap (four threads); `bench` runs one frame at a time, so each stage is timed
//! alone. `end_to_end` is capture → the action on the wire.

pub mod histogram;
pub mod recorder;
pub mod report;
pub mod svg;
pub mod system;

pub use histogram::LatencyHistogram;
pub use recorder::{per, stage, FrameStamps, StageRecorder};
pub use report::{
    compare, Comparison, GraphBackend, ModelRun, Report, ReportError, RunInfo, StageNotRun,
    StageSummary, Stages, SCHEMA,
};
pub use system::HostInfo;
