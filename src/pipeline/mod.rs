//! The `run` loop: camera → preprocessing + vision → language model → governor + link, each on
//! its own thread, joined by bounded channels.
//!
//! - The camera side keeps only the newest frame: a frame that arrives before the loop took the
//!   previous one replaces it, and the drop is counted. The loop never works through a queue.
//! - Vision runs on demand: when the language model has produced a step's answer, it asks for
//!   the next frame, so the vision thread encodes the newest frame while the answer is decoded
//!   and sent. Each frame goes through the vision graph once and its embedding is reused while
//!   it stays in the history ([`crate::policy::EmbeddingHistory`]).
//! - Every frame carries its capture and ready times; every action carries its frame's capture
//!   time; each stage boundary is recorded in [`stats::LoopStats`].
//! - Loop threads never write logs themselves: they hand events to the supervisor (the calling
//!   thread) through a bounded channel and drop them, counted, if it is behind. The supervisor
//!   also draws the status line, enforces the duration, and turns a signal into a clean stop.
//! - A stop of any kind ends with [`ActionSink::stop`] (Stop sent and acknowledged); the exit
//!   code follows [`StopReason`].
//!
//! Real parts plug in through the traits here: [`FrameSource`], [`VisionEncoder`],
//! [`LanguageModel`] and [`ActionSink`].

pub mod camera_source;
pub mod engine_model;
pub mod link_sink;
pub mod stats;
pub mod status;
pub mod verified;
pub mod vision;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::exit;
use crate::policy::guard::{GuardConfig, GuardVerdict};
use crate::policy::{
    action_from_answer, build_policy_prompt, EmbeddingHistory, PolicyPrompt, PolicySpec,
    PromptError,
};
use crate::rgbd::register::{RegisterError, Registrar};
use crate::rgbd::{DepthMm, RgbImage};

pub use stats::{LoopStats, RunSummary};

/// An error from a pluggable part (camera, model, link adapter), kept as its message chain.
pub type StageError = Box<dyn std::error::Error + Send + Sync>;

/// One RGB-D frame as the loop sees it.
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    /// Increases by one per frame the source delivered.
    pub seq: u64,
    /// When the sensor captured it, on the host monotonic clock.
    pub captured: Instant,
    /// When the sensor's frames reached this process.
    pub arrived: Instant,
    /// When the frame was ready in memory (depth registered, unless left to its consumers).
    pub ready: Instant,
    pub rgb: Arc<RgbImage>,
    /// Registered to colour; required when the policy takes depth.
    pub depth: Option<Arc<DepthMm>>,
    /// Depth still in the depth camera's frame (`depth` is then `None`); see
    /// [`CapturedFrame::register_depth`].
    pub unregistered_depth: Option<UnregisteredDepth>,
}

/// Depth as the depth camera delivered it, with what registers it into the colour camera's
/// frame: for consumers that need only some frames' depth (the guard).
#[derive(Clone, Debug)]
pub struct UnregisteredDepth {
    pub depth: Arc<DepthMm>,
    pub registrar: Arc<Registrar>,
}

impl UnregisteredDepth {
    pub fn register(&self) -> Result<DepthMm, RegisterError> {
        self.registrar.register(&self.depth)
    }
}

impl CapturedFrame {
    /// Registers depth that is still in the depth camera's frame; nothing to do otherwise.
    pub fn register_depth(&mut self) -> Result<(), RegisterError> {
        if let Some(raw) = self.unregistered_depth.take() {
            self.depth = Some(Arc::new(raw.register()?));
        }
        Ok(())
    }
}

/// A camera or a recording.
pub trait FrameSource: Send {
    /// Blocks until the next frame; `Ok(None)` when the source has ended (a recording's end).
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, StageError>;
}

/// Preprocessing and the vision graph.
pub trait VisionEncoder: Send {
    type Input: Send;
    type Embedding: Send + Sync + 'static;
    /// Image `image` of `frame` (0: RGB, 1: packed depth) → the vision graph's input tensor.
    fn preprocess(
        &mut self,
        frame: &CapturedFrame,
        image: usize,
    ) -> Result<Self::Input, StageError>;
    fn encode(&mut self, input: Self::Input) -> Result<Self::Embedding, StageError>;
}

/// The language model: a prompt with one embedding per image → the answer text.
pub trait LanguageModel<E>: Send {
    fn generate(
        &mut self,
        prompt: &PolicyPrompt,
        images: &[Arc<E>],
        max_new_tokens: usize,
    ) -> Result<String, StageError>;
}

/// The SpatialBot model answering the guard's yes/no question about one RGB-D frame.
pub trait GuardModel: Send {
    fn ask(&mut self, frame: &CapturedFrame, question: &str) -> Result<String, StageError>;
}

/// A decoded action, ready for the governor.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// 1-based policy step.
    pub step: u64,
    pub frame_seq: u64,
    /// Capture time of the newest frame the action was computed from.
    pub captured: Instant,
    /// The manifest's name for each index; indices beyond the layout are named `v{i}`.
    pub names: Arc<[String]>,
    pub values: Vec<f64>,
}

/// Why a step sent no action (the arm holds; heartbeats keep its watchdog fed). Each has a
/// stable [`Hold::name`], the key of the summary's `holds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The frame was older than the max age when the loop took it.
    StaleFrame { frame_seq: u64, age_ms: u64 },
    /// No fresh frame arrived within the max age.
    CameraStall,
    /// The model's answer did not parse into an action.
    UnparsableAnswer(String),
    /// The SpatialBot guard said no, or could not be asked.
    GuardVeto(String),
    /// The safety governor held the action.
    Governor(crate::link::governor::HoldReason),
    /// The link forbade an action (controller silent or without a session, shutting down).
    Link(crate::link::LinkHold),
}

impl Hold {
    pub fn name(&self) -> &'static str {
        use crate::link::governor::HoldReason;
        match self {
            Hold::StaleFrame { .. } => "stale_frame",
            Hold::CameraStall => "camera_stall",
            Hold::UnparsableAnswer(_) => "unparsable_answer",
            Hold::GuardVeto(_) => "guard_veto",
            Hold::Governor(HoldReason::ParseFailure) => "governor_parse_failure",
            Hold::Governor(HoldReason::NonFinite) => "governor_non_finite",
            Hold::Governor(HoldReason::Stale) => "governor_stale",
            Hold::Governor(HoldReason::RateLimited) => "governor_rate_limited",
            Hold::Link(l) => l.name(),
        }
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::StaleFrame { frame_seq, age_ms } => {
                write!(f, "frame {frame_seq} is {age_ms} ms old")
            }
            Hold::CameraStall => f.write_str("no fresh frame"),
            Hold::UnparsableAnswer(e) => write!(f, "unparsable answer: {e}"),
            Hold::GuardVeto(why) => f.write_str(why),
            Hold::Governor(r) => write!(f, "the safety governor held ({r:?})"),
            Hold::Link(l) => write!(f, "the link held ({})", l.name()),
        }
    }
}

/// What the governor did with an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Written to the link (possibly clamped).
    Sent,
    /// Not sent; the controller holds.
    Held(Hold),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("link to the arm controller lost: {0}")]
    LinkLost(String),
    #[error("emergency stop: {0}")]
    EStop(String),
    #[error("the arm controller did not acknowledge Stop: {0}")]
    NoStopAck(String),
    #[error("{0}")]
    ControllerRefused(String),
    #[error("{0}")]
    ControllerFault(String),
    #[error("{0}")]
    ControllerStopped(String),
    /// The policy ended the episode and the controller applied it (not a failure).
    #[error("{0}")]
    EpisodeEnded(String),
    /// A shutdown signal closed the link to actions.
    #[error("shutting down on SIGINT/SIGTERM")]
    ShuttingDown,
}

impl SinkError {
    /// The loop's stop reason for this error.
    pub fn stop_reason(&self) -> StopReason {
        match self {
            SinkError::LinkLost(_) | SinkError::NoStopAck(_) => StopReason::LinkLost,
            SinkError::EStop(_) => StopReason::EStop,
            SinkError::ControllerRefused(_) => StopReason::ControllerRefused,
            SinkError::ControllerFault(_) => StopReason::ControllerFault,
            SinkError::ControllerStopped(_) => StopReason::ControllerStopped,
            SinkError::EpisodeEnded(_) => StopReason::PolicyTerminated,
            SinkError::ShuttingDown => StopReason::Signal,
        }
    }
}

/// The safety governor and the link to the arm controller.
pub trait ActionSink: Send {
    fn send(&mut self, action: &Action, now: Instant) -> Result<Delivery, SinkError>;
    /// No action this step; `hold` says why. The controller keeps holding.
    fn hold(&mut self, hold: &Hold, now: Instant) -> Result<(), SinkError>;
    /// Called when the link thread had nothing to send for a tick (heartbeats go here).
    fn idle(&mut self, _now: Instant) -> Result<(), SinkError> {
        Ok(())
    }
    /// Sends Stop and waits, bounded, for the controller's acknowledgement.
    /// `why` is the loop's stop reason (the wire's Stop carries it).
    fn stop(&mut self, why: StopReason) -> Result<(), SinkError>;
    /// What the controller answered, for the summary (`None`: no controller behind this sink).
    fn outcomes(&self) -> Option<stats::LinkOutcomes> {
        None
    }
}

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    StepsDone,
    DurationDone,
    SourceEnded,
    /// SIGINT or SIGTERM.
    Signal,
    /// No fresh frame within the stall limit.
    CameraStalled,
    /// Generation ran past its deadline.
    StageStuck,
    SourceFailed,
    ModelFailed,
    /// Too many consecutive unparsable answers.
    UnparsableAnswers,
    LinkLost,
    EStop,
    /// The controller refused the session or our actions (Rejected in a row, Duplicate).
    ControllerRefused,
    /// The controller reported a fault other than an e-stop.
    ControllerFault,
    /// The controller stopped the session without our Stop.
    ControllerStopped,
    /// The policy ended the episode (terminate = 1) and the controller applied it.
    PolicyTerminated,
    /// The run ended as asked but the arm applied none of its actions.
    NothingApplied,
    /// A loop thread panicked (a bug).
    Internal,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::StepsDone => "steps",
            StopReason::DurationDone => "duration",
            StopReason::SourceEnded => "source_ended",
            StopReason::Signal => "signal",
            StopReason::CameraStalled => "camera_stalled",
            StopReason::StageStuck => "stage_stuck",
            StopReason::SourceFailed => "source_failed",
            StopReason::ModelFailed => "model_failed",
            StopReason::UnparsableAnswers => "unparsable_answers",
            StopReason::LinkLost => "link_lost",
            StopReason::EStop => "estop",
            StopReason::ControllerRefused => "controller_refused",
            StopReason::ControllerFault => "controller_fault",
            StopReason::ControllerStopped => "controller_stopped",
            StopReason::PolicyTerminated => "policy_terminated",
            StopReason::NothingApplied => "nothing_applied",
            StopReason::Internal => "internal",
        }
    }

    /// The reason the wire's Stop carries (SPEC §4 StopReason).
    pub fn wire(self) -> crate::link::StopReason {
        use crate::link::StopReason as Wire;
        match self {
            StopReason::Signal => Wire::Operator,
            StopReason::StepsDone
            | StopReason::DurationDone
            | StopReason::SourceEnded
            | StopReason::PolicyTerminated
            | StopReason::NothingApplied => Wire::Finished,
            StopReason::CameraStalled | StopReason::StageStuck => Wire::Watchdog,
            StopReason::EStop => Wire::Estop,
            StopReason::SourceFailed
            | StopReason::ModelFailed
            | StopReason::UnparsableAnswers
            | StopReason::LinkLost
            | StopReason::ControllerRefused
            | StopReason::ControllerFault
            | StopReason::ControllerStopped
            | StopReason::Internal => Wire::HostFault,
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            StopReason::StepsDone
            | StopReason::DurationDone
            | StopReason::SourceEnded
            | StopReason::Signal
            | StopReason::PolicyTerminated => exit::OK,
            StopReason::CameraStalled | StopReason::StageStuck => exit::WATCHDOG_STOP,
            StopReason::LinkLost => exit::LINK_LOST,
            StopReason::EStop => exit::ESTOP,
            StopReason::ControllerRefused => exit::CONTROLLER_REFUSED,
            StopReason::ControllerFault => exit::CONTROLLER_FAULT,
            StopReason::ControllerStopped => exit::CONTROLLER_STOPPED,
            StopReason::NothingApplied => exit::NOTHING_APPLIED,
            StopReason::SourceFailed
            | StopReason::ModelFailed
            | StopReason::UnparsableAnswers
            | StopReason::Internal => exit::RUNTIME,
        }
    }

    /// An orderly stop lets the step in flight finish and reach the link; any other stop sends
    /// Stop at once.
    fn is_orderly(self) -> bool {
        matches!(
            self,
            StopReason::StepsDone | StopReason::DurationDone | StopReason::SourceEnded
        )
    }
}

#[derive(Clone, Debug)]
pub struct LoopConfig {
    pub goal: String,
    pub steps: Option<u64>,
    pub duration: Option<Duration>,
    /// A frame older than this when the loop takes it is not acted on: the step holds.
    pub max_frame_age: Duration,
    /// No fresh frame for this long → watchdog stop.
    pub camera_stall_stop: Duration,
    /// This many unparsable answers in a row → stop.
    pub max_consecutive_unparsable: u32,
    /// Act on every frame of the source in order, never dropping one, however old it is by the
    /// time the loop takes it (recordings, tests); the source is paced by the loop. The
    /// governor's own age limit still applies at send time. Off: the loop acts on the newest
    /// frame.
    pub every_frame: bool,
    /// A generation running longer than this stops the loop (exit 3); `None`: no deadline.
    pub stage_deadline: Option<Duration>,
    /// When the process started, for the `startup` stage (→ first action sent); default: when
    /// the loop started.
    pub process_start: Option<Instant>,
    /// Draw a status line on stderr (only when it is a terminal).
    pub status_line: bool,
    pub status_interval: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            goal: String::new(),
            steps: None,
            duration: None,
            max_frame_age: Duration::from_millis(500),
            camera_stall_stop: Duration::from_secs(2),
            max_consecutive_unparsable: 5,
            every_frame: false,
            process_start: None,
            stage_deadline: None,
            status_line: false,
            status_interval: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error("cannot start the {thread} thread: {source}")]
    Spawn {
        thread: &'static str,
        source: std::io::Error,
    },
}

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(10);
/// How long the supervisor waits for a thread stuck in a device or model call after a stop.
const JOIN_GRACE: Duration = Duration::from_secs(5);
const LOG_QUEUE: usize = 1024;

#[derive(Default)]
struct StopCell {
    flag: AtomicBool,
    reason: Mutex<Option<(StopReason, String)>>,
}

impl StopCell {
    /// The first request wins.
    fn request(&self, reason: StopReason, detail: impl Into<String>) {
        let mut r = lock(&self.reason);
        if r.is_none() {
            *r = Some((reason, detail.into()));
        }
        self.flag.store(true, Ordering::SeqCst);
    }
    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
    fn reason(&self) -> Option<(StopReason, String)> {
        lock(&self.reason).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone, Debug)]
enum LogLevel {
    Info,
    Warn,
}

#[derive(Clone, Debug)]
struct LogEvent {
    level: LogLevel,
    message: String,
}

/// What the loop threads share.
struct Shared {
    stop: StopCell,
    /// µs since the loop started when the model thread's current generation
    /// began; 0 while it is not in one. Read by the supervisor's stage watchdog.
    busy_since_us: AtomicU64,
    epoch: Instant,
    stats: Mutex<LoopStats>,
    log_tx: Sender<LogEvent>,
    log_dropped: AtomicU64,
}

impl Shared {
    fn log(&self, level: LogLevel, message: String) {
        if self.log_tx.try_send(LogEvent { level, message }).is_err() {
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn stats(&self) -> MutexGuard<'_, LoopStats> {
        lock(&self.stats)
    }
}

enum CaptureMsg {
    Frame(CapturedFrame),
    Ended,
    Failed(String),
}

struct StepInput<E> {
    frame: CapturedFrame,
    frame_overhead: Duration,
    embeddings: Vec<Arc<E>>,
}

enum LinkMsg {
    Act {
        action: Action,
        overhead_before_link: Duration,
    },
    Hold(Hold),
}

/// Sends a thread's name when it ends, panics included.
struct DoneGuard {
    name: &'static str,
    tx: Sender<(&'static str, bool)>,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.tx.send((self.name, std::thread::panicking()));
    }
}

/// Everything the loop runs.
pub struct LoopParts<S, V, L, A> {
    pub source: S,
    pub vision: V,
    pub model: L,
    pub sink: A,
    /// The SpatialBot guard, asked on the language-model thread before an action is sent.
    pub guard: Option<(GuardConfig, Box<dyn GuardModel>)>,
}

/// Runs the control loop until the steps or duration are done, the source ends, `signal` is
/// raised, or a part fails; returns the summary (its `exit_code` is the process's).
pub fn run_loop<S, V, L, A>(
    parts: LoopParts<S, V, L, A>,
    spec: &PolicySpec,
    cfg: &LoopConfig,
    signal: Arc<AtomicBool>,
) -> Result<RunSummary, LoopError>
where
    S: FrameSource + 'static,
    V: VisionEncoder + 'static,
    L: LanguageModel<V::Embedding> + 'static,
    A: ActionSink + 'static,
{
    let prompt = build_policy_prompt(spec, &cfg.goal)?;
    let (log_tx, log_rx) = bounded(LOG_QUEUE);
    let shared = Arc::new(Shared {
        stop: StopCell::default(),
        stats: Mutex::new(LoopStats::default()),
        log_tx,
        log_dropped: AtomicU64::new(0),
        busy_since_us: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let started = Instant::now();

    let (frame_tx, frame_rx) = bounded::<CaptureMsg>(1);
    let (want_tx, want_rx) = bounded::<()>(1);
    let (step_tx, step_rx) = bounded::<StepInput<V::Embedding>>(1);
    let (link_tx, link_rx) = bounded::<LinkMsg>(2);
    let (done_tx, done_rx) = bounded::<(&'static str, bool)>(4);

    let mut handles: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
    let spawn =
        |name: &'static str, f: Box<dyn FnOnce() + Send>| -> Result<JoinHandle<()>, LoopError> {
            std::thread::Builder::new()
                .name(format!("sbe-{name}"))
                .spawn(f)
                .map_err(|source| LoopError::Spawn {
                    thread: name,
                    source,
                })
        };

    {
        let shared = shared.clone();
        let evict_rx = frame_rx.clone();
        let done = DoneGuard {
            name: "capture",
            tx: done_tx.clone(),
        };
        let source = parts.source;
        let every_frame = cfg.every_frame;
        handles.push((
            "capture",
            spawn(
                "capture",
                Box::new(move || {
                    let evict = (!every_frame).then_some(evict_rx);
                    capture_thread(source, frame_tx, evict, shared, done)
                }),
            )?,
        ));
    }
    {
        let shared = shared.clone();
        let done = DoneGuard {
            name: "vision",
            tx: done_tx.clone(),
        };
        let ctx = VisionCtx {
            history: EmbeddingHistory::new(spec),
            every_frame: cfg.every_frame,
            max_frame_age: cfg.max_frame_age,
            camera_stall_stop: cfg.camera_stall_stop,
        };
        let encoder = parts.vision;
        let hold_tx = link_tx.clone();
        handles.push((
            "vision",
            spawn(
                "vision",
                Box::new(move || {
                    vision_thread(
                        encoder, ctx, frame_rx, want_rx, step_tx, hold_tx, shared, done,
                    )
                }),
            )?,
        ));
    }
    {
        let shared = shared.clone();
        let done = DoneGuard {
            name: "model",
            tx: done_tx.clone(),
        };
        let mut names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
        for i in names.len()..64 {
            names.push(format!("v{i}"));
        }
        let ctx = ModelCtx {
            prompt,
            layout: spec.actions.clone(),
            names: names.into(),
            max_new_tokens: spec.max_new_tokens,
            steps: cfg.steps,
            max_consecutive_unparsable: cfg.max_consecutive_unparsable,
            guard: parts.guard,
        };
        let model = parts.model;
        handles.push((
            "model",
            spawn(
                "model",
                Box::new(move || model_thread(model, ctx, step_rx, want_tx, link_tx, shared, done)),
            )?,
        ));
    }
    {
        let shared = shared.clone();
        let done = DoneGuard {
            name: "link",
            tx: done_tx.clone(),
        };
        let sink = parts.sink;
        let process_start = cfg.process_start.unwrap_or(started);
        let signal = signal.clone();
        handles.push((
            "link",
            spawn(
                "link",
                Box::new(move || {
                    link_thread(sink, process_start, link_rx, &signal, shared, done)
                }),
            )?,
        ));
    }
    drop(done_tx);

    let mut status = status::StatusLine::new(cfg.status_line, cfg.status_interval);
    let mut finished: Vec<(&'static str, bool)> = Vec::new();
    let mut stopped_at: Option<Instant> = None;
    // The capture thread may sit in a device read; the loop is over once the other three end.
    while finished.iter().filter(|(n, _)| *n != "capture").count() < 3 {
        match done_rx.recv_timeout(TICK * 5) {
            Ok((name, panicked)) => {
                if panicked {
                    shared
                        .stop
                        .request(StopReason::Internal, format!("the {name} thread panicked"));
                }
                finished.push((name, panicked));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if signal.load(Ordering::SeqCst) {
            shared
                .stop
                .request(StopReason::Signal, "interrupted; Stop sent to the arm");
        }
        if let Some(deadline) = cfg.stage_deadline {
            let since = shared.busy_since_us.load(Ordering::SeqCst);
            let now = shared.epoch.elapsed().as_micros() as u64;
            if since > 0 && now.saturating_sub(since) > deadline.as_micros() as u64 {
                shared.stop.request(
                    StopReason::StageStuck,
                    format!(
                        "generation ran past its {:.0} ms deadline; Stop sent to the arm",
                        deadline.as_secs_f64() * 1e3
                    ),
                );
            }
        }
        if let Some(limit) = cfg.duration {
            if started.elapsed() >= limit {
                shared.stop.request(
                    StopReason::DurationDone,
                    format!("{:.1} s elapsed", limit.as_secs_f64()),
                );
            }
        }
        drain_logs(&log_rx);
        if shared.stop.is_set() {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            if at.elapsed() > JOIN_GRACE {
                tracing::warn!(
                    "a loop thread did not end within {:?} of the stop; leaving it",
                    JOIN_GRACE
                );
                break;
            }
        }
        status.tick(&shared.stats());
    }
    status.clear();
    drain_logs(&log_rx);

    for (name, handle) in handles {
        if finished.iter().any(|(n, _)| *n == name) && handle.join().is_err() {
            shared
                .stop
                .request(StopReason::Internal, format!("the {name} thread panicked"));
        }
    }

    let (mut reason, mut detail) = shared.stop.reason().unwrap_or((
        StopReason::Internal,
        "the loop ended without a reason".into(),
    ));
    let mut stats = shared.stats().clone();
    // A run that ended as asked is a success only if the arm applied something.
    if let Some(link) = &stats.link {
        let asked_end = matches!(
            reason,
            StopReason::StepsDone | StopReason::DurationDone | StopReason::SourceEnded
        );
        if asked_end && link.applied == 0 && stats.steps > 0 {
            detail = format!(
                "{detail}, but the arm applied none of the {} actions sent ({} held by the controller, {} rejected, {} unacknowledged; holds: {:?})",
                link.actions_sent, link.held, link.rejected, link.unacknowledged, stats.holds
            );
            reason = StopReason::NothingApplied;
        }
    }
    stats.log_events_dropped = shared.log_dropped.load(Ordering::Relaxed);
    let mut summary = RunSummary::from_stats(
        &stats,
        started.elapsed(),
        reason.name().to_string(),
        detail,
        reason.exit_code(),
    );
    summary.startup.loop_started_ms = cfg
        .process_start
        .map(|p| started.saturating_duration_since(p).as_secs_f64() * 1e3);
    Ok(summary)
}

fn drain_logs(rx: &Receiver<LogEvent>) {
    while let Ok(ev) = rx.try_recv() {
        match ev.level {
            LogLevel::Info => tracing::info!(target: "spatialbot_edge::run", "{}", ev.message),
            LogLevel::Warn => tracing::warn!(target: "spatialbot_edge::run", "{}", ev.message),
        }
    }
}

/// Puts `msg` in the one-slot channel, evicting the frame already there.
fn send_newest(
    tx: &Sender<CaptureMsg>,
    evict: &Receiver<CaptureMsg>,
    mut msg: CaptureMsg,
    shared: &Shared,
) -> bool {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return true,
            Err(TrySendError::Full(back)) => {
                msg = back;
                if let Ok(CaptureMsg::Frame(_)) = evict.try_recv() {
                    shared.stats().frames_dropped += 1;
                }
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
}

fn send_each(tx: &Sender<CaptureMsg>, mut msg: CaptureMsg, shared: &Shared) -> bool {
    loop {
        match tx.send_timeout(msg, TICK) {
            Ok(()) => return true,
            Err(crossbeam_channel::SendTimeoutError::Timeout(back)) if !shared.stop.is_set() => {
                msg = back
            }
            Err(_) => return false,
        }
    }
}

/// With `evict`, a new frame replaces one the loop has not taken yet (counted as dropped);
/// without, the source waits until the loop takes each frame.
fn capture_thread<S: FrameSource>(
    mut source: S,
    tx: Sender<CaptureMsg>,
    evict: Option<Receiver<CaptureMsg>>,
    shared: Arc<Shared>,
    _done: DoneGuard,
) {
    while !shared.stop.is_set() {
        let msg = match source.next_frame() {
            Ok(Some(frame)) => {
                let mut st = shared.stats();
                st.frames_captured += 1;
                st.record(
                    stats::stage::CAMERA,
                    frame.ready.saturating_duration_since(frame.arrived),
                );
                CaptureMsg::Frame(frame)
            }
            Ok(None) => CaptureMsg::Ended,
            Err(e) => CaptureMsg::Failed(error_chain(&*e)),
        };
        let last = !matches!(msg, CaptureMsg::Frame(_));
        let delivered = match &evict {
            Some(evict) => send_newest(&tx, evict, msg, &shared),
            None => send_each(&tx, msg, &shared),
        };
        if !delivered || last {
            return;
        }
    }
}

enum VisionFailure {
    Model(StageError),
    Register(String),
}

struct VisionCtx<E> {
    history: EmbeddingHistory<E>,
    every_frame: bool,
    max_frame_age: Duration,
    camera_stall_stop: Duration,
}

#[allow(clippy::too_many_arguments)]
fn vision_thread<V: VisionEncoder>(
    mut encoder: V,
    mut ctx: VisionCtx<V::Embedding>,
    frames: Receiver<CaptureMsg>,
    want: Receiver<()>,
    steps: Sender<StepInput<V::Embedding>>,
    hold_tx: Sender<LinkMsg>,
    shared: Arc<Shared>,
    _done: DoneGuard,
) {
    'steps: loop {
        match want.recv_timeout(TICK) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) if !shared.stop.is_set() => continue,
            Err(_) => return,
        }
        let waiting_since = Instant::now();
        let mut held = false;
        let frame = loop {
            if shared.stop.is_set() {
                return;
            }
            match frames.recv_timeout(TICK) {
                Ok(CaptureMsg::Frame(f)) => {
                    let age = Instant::now().saturating_duration_since(f.captured);
                    if ctx.every_frame || age <= ctx.max_frame_age {
                        break f;
                    }
                    if !held {
                        held = true;
                        shared.log(
                            LogLevel::Warn,
                            format!(
                                "frame {} is {:.0} ms old; holding",
                                f.seq,
                                age.as_secs_f64() * 1e3
                            ),
                        );
                        let hold = Hold::StaleFrame {
                            frame_seq: f.seq,
                            age_ms: age.as_millis() as u64,
                        };
                        shared.stats().hold(hold.name());
                        let _ = hold_tx.try_send(LinkMsg::Hold(hold));
                    }
                }
                Ok(CaptureMsg::Ended) => {
                    shared
                        .stop
                        .request(StopReason::SourceEnded, "the recording ended");
                    return;
                }
                Ok(CaptureMsg::Failed(e)) => {
                    shared
                        .stop
                        .request(StopReason::SourceFailed, format!("camera failed: {e}"));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if waiting_since.elapsed() > ctx.max_frame_age && !held {
                        held = true;
                        shared.stats().hold(Hold::CameraStall.name());
                        let _ = hold_tx.try_send(LinkMsg::Hold(Hold::CameraStall));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    shared
                        .stop
                        .request(StopReason::SourceEnded, "the camera thread ended");
                    return;
                }
            }
            let waited = waiting_since.elapsed();
            if waited > ctx.camera_stall_stop {
                shared.stop.request(
                    StopReason::CameraStalled,
                    format!(
                        "no fresh frame for {:.0} ms (limit {:.0} ms)",
                        waited.as_secs_f64() * 1e3,
                        ctx.camera_stall_stop.as_secs_f64() * 1e3
                    ),
                );
                return;
            }
        };
        let picked = Instant::now();
        let mut frame = frame;
        let mut preprocess = Duration::ZERO;
        let mut vision = Duration::ZERO;
        let result = ctx.history.step(frame.seq, |image| {
            let t0 = Instant::now();
            if image == 1 {
                // A source that leaves registration to its consumers (see `DepthUse`).
                frame
                    .register_depth()
                    .map_err(|e| VisionFailure::Register(e.to_string()))?;
            }
            let input = encoder
                .preprocess(&frame, image)
                .map_err(VisionFailure::Model)?;
            let t1 = Instant::now();
            let embedding = encoder.encode(input).map_err(VisionFailure::Model)?;
            preprocess += t1 - t0;
            vision += t1.elapsed();
            Ok::<_, VisionFailure>(embedding)
        });
        let embeddings = match result {
            Ok(e) => e,
            Err(VisionFailure::Model(e)) => {
                shared.stop.request(
                    StopReason::ModelFailed,
                    format!("vision: {}", error_chain(&*e)),
                );
                return;
            }
            Err(VisionFailure::Register(e)) => {
                shared.stop.request(
                    StopReason::SourceFailed,
                    format!("registering frame {}'s depth to colour: {e}", frame.seq),
                );
                return;
            }
        };
        {
            let mut st = shared.stats();
            st.record(
                stats::stage::QUEUE,
                picked.saturating_duration_since(frame.ready),
            );
            if preprocess > Duration::ZERO || vision > Duration::ZERO {
                st.record(stats::stage::PREPROCESS, preprocess);
                st.record(stats::stage::VISION, vision);
            }
            st.cache = ctx.history.counts();
        }
        let mut input = StepInput {
            frame_overhead: frame.ready.saturating_duration_since(frame.arrived) + preprocess,
            frame,
            embeddings,
        };
        loop {
            match steps.send_timeout(input, TICK) {
                Ok(()) => continue 'steps,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back))
                    if !shared.stop.is_set() =>
                {
                    input = back
                }
                Err(_) => return,
            }
        }
    }
}

struct ModelCtx {
    prompt: PolicyPrompt,
    layout: crate::policy::ActionLayout,
    names: Arc<[String]>,
    max_new_tokens: usize,
    steps: Option<u64>,
    max_consecutive_unparsable: u32,
    guard: Option<(GuardConfig, Box<dyn GuardModel>)>,
}

fn model_thread<E, L: LanguageModel<E>>(
    mut model: L,
    mut ctx: ModelCtx,
    steps: Receiver<StepInput<E>>,
    want: Sender<()>,
    link: Sender<LinkMsg>,
    shared: Arc<Shared>,
    _done: DoneGuard,
) {
    if ctx.steps == Some(0) {
        shared.stop.request(StopReason::StepsDone, "0 steps asked");
        return;
    }
    let _ = want.try_send(());
    let mut step: u64 = 0;
    let mut unparsable_in_a_row = 0u32;
    let mut last_start: Option<Instant> = None;
    let mut previous_gripper: Option<f64> = None;
    loop {
        let mut input = match steps.recv_timeout(TICK) {
            Ok(i) => i,
            Err(RecvTimeoutError::Timeout) if !shared.stop.is_set() => continue,
            Err(_) => return,
        };
        step += 1;
        let start = Instant::now();
        if let Some(prev) = last_start.replace(start) {
            shared
                .stats()
                .record(stats::stage::STEP_INTERVAL, start - prev);
        }
        shared.busy_since_us.store(
            (shared.epoch.elapsed().as_micros() as u64).max(1),
            Ordering::SeqCst,
        );
        let answer = model.generate(&ctx.prompt, &input.embeddings, ctx.max_new_tokens);
        shared.busy_since_us.store(0, Ordering::SeqCst);
        let generated = Instant::now();
        let last_step = ctx.steps.is_some_and(|n| step >= n);
        if !last_step {
            let _ = want.try_send(());
        }
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                shared.stop.request(
                    StopReason::ModelFailed,
                    format!("generation: {}", error_chain(&*e)),
                );
                return;
            }
        };
        let decoded = action_from_answer(&ctx.layout, &answer);
        let decode_time = generated.elapsed();
        {
            let mut st = shared.stats();
            st.record(stats::stage::GENERATE, generated - start);
            st.record(stats::stage::ACTION, decode_time);
            st.steps = step;
        }
        let msg = match decoded {
            Ok(values) => {
                unparsable_in_a_row = 0;
                shared.log(
                    LogLevel::Info,
                    format!("step {step}: frame {} → {answer}", input.frame.seq),
                );
                let action = Action {
                    step,
                    frame_seq: input.frame.seq,
                    captured: input.frame.captured,
                    names: ctx.names.clone(),
                    values,
                };
                match ask_guard(
                    &mut ctx,
                    &action,
                    &mut input.frame,
                    previous_gripper,
                    &shared,
                ) {
                    GuardVerdict::Proceed => {
                        previous_gripper = gripper_value(&ctx, &action).or(previous_gripper);
                        LinkMsg::Act {
                            action,
                            overhead_before_link: input.frame_overhead + decode_time,
                        }
                    }
                    GuardVerdict::Veto(why) => {
                        let hold = Hold::GuardVeto(why);
                        shared.stats().hold(hold.name());
                        shared.log(LogLevel::Warn, format!("step {step}: holding: {hold}"));
                        LinkMsg::Hold(hold)
                    }
                }
            }
            Err(e) => {
                unparsable_in_a_row += 1;
                let hold = Hold::UnparsableAnswer(e.to_string());
                shared.stats().hold(hold.name());
                shared.log(LogLevel::Warn, format!("step {step}: holding: {hold}"));
                LinkMsg::Hold(hold)
            }
        };
        if link.send(msg).is_err() {
            return;
        }
        if unparsable_in_a_row >= ctx.max_consecutive_unparsable {
            shared.stop.request(
                StopReason::UnparsableAnswers,
                format!("{unparsable_in_a_row} unparsable answers in a row; the model does not produce actions"),
            );
            return;
        }
        if last_step {
            shared
                .stop
                .request(StopReason::StepsDone, format!("{step} steps done"));
            return;
        }
    }
}

fn gripper_value(ctx: &ModelCtx, action: &Action) -> Option<f64> {
    let (cfg, _) = ctx.guard.as_ref()?;
    let i = action.names.iter().position(|n| *n == cfg.gripper)?;
    action.values.get(i).copied()
}

/// Asks the guard when it is due; a guard that fails vetoes (the arm holds, the loop goes on).
fn ask_guard(
    ctx: &mut ModelCtx,
    action: &Action,
    frame: &mut CapturedFrame,
    previous_gripper: Option<f64>,
    shared: &Shared,
) -> GuardVerdict {
    let Some((cfg, model)) = ctx.guard.as_mut() else {
        return GuardVerdict::Proceed;
    };
    if !cfg.is_due(action.step, &action.names, &action.values, previous_gripper) {
        return GuardVerdict::Proceed;
    }
    let t0 = Instant::now();
    if let Err(e) = frame.register_depth() {
        return GuardVerdict::Veto(format!("guard: cannot register the frame's depth: {e}"));
    }
    let answer = model.ask(frame, &cfg.question);
    shared.stats().record(stats::stage::GUARD, t0.elapsed());
    match answer {
        Ok(a) => {
            shared.log(
                LogLevel::Info,
                format!("step {}: guard {:?} → {a:?}", action.step, cfg.question),
            );
            cfg.verdict(&a)
        }
        Err(e) => GuardVerdict::Veto(format!("guard failed: {}", error_chain(&*e))),
    }
}

fn link_thread<A: ActionSink>(
    mut sink: A,
    process_start: Instant,
    rx: Receiver<LinkMsg>,
    signal: &AtomicBool,
    shared: Arc<Shared>,
    _done: DoneGuard,
) {
    let failed = |e: SinkError| {
        shared.stop.request(e.stop_reason(), e.to_string());
    };
    loop {
        // The link thread sees a signal itself, not a supervisor tick later: the next thing
        // it writes is the Stop.
        if signal.load(Ordering::SeqCst) {
            shared
                .stop
                .request(StopReason::Signal, "interrupted; Stop sent to the arm");
        }
        let urgent_stop = shared.stop.reason().is_some_and(|(r, _)| !r.is_orderly());
        if urgent_stop {
            break;
        }
        match rx.recv_timeout(TICK) {
            Ok(LinkMsg::Act {
                action,
                overhead_before_link,
            }) => {
                let t0 = Instant::now();
                match sink.send(&action, t0) {
                    Ok(delivery) => {
                        let t1 = Instant::now();
                        let mut st = shared.stats();
                        st.record(stats::stage::LINK, t1 - t0);
                        match delivery {
                            Delivery::Sent => {
                                st.actions_sent += 1;
                                if st.actions_sent == 1 {
                                    st.record(
                                        stats::stage::STARTUP,
                                        t1.saturating_duration_since(process_start),
                                    );
                                }
                                st.record(
                                    stats::stage::END_TO_END,
                                    t1.saturating_duration_since(action.captured),
                                );
                                st.record(stats::stage::OVERHEAD, overhead_before_link + (t1 - t0));
                            }
                            Delivery::Held(hold) => st.hold(hold.name()),
                        }
                    }
                    Err(e) => {
                        failed(e);
                        break;
                    }
                }
            }
            Ok(LinkMsg::Hold(reason)) => {
                if let Err(e) = sink.hold(&reason, Instant::now()) {
                    failed(e);
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.stop.is_set() {
                    break;
                }
                if let Err(e) = sink.idle(Instant::now()) {
                    failed(e);
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    shared.stop.request(
        StopReason::Internal,
        "the link thread ended without a stop request",
    );
    let why = shared
        .stop
        .reason()
        .map_or(StopReason::Internal, |(r, _)| r);
    let stopped = sink.stop(why);
    shared.stats().link = sink.outcomes();
    if let Err(e) = stopped {
        shared.log(LogLevel::Warn, format!("stopping the arm: {e}"));
        let keep = shared.stop.reason().is_some_and(|(r, _)| {
            matches!(
                r,
                StopReason::LinkLost
                    | StopReason::EStop
                    | StopReason::ControllerFault
                    | StopReason::ControllerRefused
                    | StopReason::ControllerStopped
            )
        });
        if !keep {
            // Stop was not acknowledged: the process must not report a clean end.
            let mut r = lock(&shared.stop.reason);
            *r = Some((StopReason::LinkLost, e.to_string()));
        }
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s += ": ";
            s += &m;
        }
        cur = c.source();
    }
    s
}
