//! The `run` loop: camera → preprocessing + vision → language model → governor + link, each on
//! its own thread, joined by bounded channels.
//!
//! - The camera side keeps only the newest frame: a frame that arrives before the loop took the
//!   previous one replaces it, and the drop is counted. The loop never works through a queue.
//! - Vision runs on demand: when the language model has produced a step's answer, it asks for
//!   the next frame; the vision thread waits until the link thread is done with that step's
//!   action and takes the first frame captured after it ([`LoopConfig::frame_after_action`]).
//!   Each frame goes through the vision graph once and its embedding is reused while it stays
//!   in the history ([`crate::policy::EmbeddingHistory`]).
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

mod capture_thread;
mod link_thread;
mod model_thread;
mod shared;
mod supervisor;
mod vision_thread;

pub mod camera_source;
pub mod engine_model;
pub mod link_sink;
pub mod stats;
pub mod status;
pub mod verified;
pub mod vision;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exit;
use crate::policy::{PolicyPrompt, PromptError};
pub use crate::rgbd::{Depth, DepthNeed, RgbdFrame};
pub use crate::telemetry::Report;
pub use stats::LoopStats;
pub use supervisor::{run_loop, LoopParts};

/// An error from a pluggable part (camera, model, link adapter), kept as its message chain.
pub type StageError = Box<dyn std::error::Error + Send + Sync>;

/// A camera or a recording.
pub trait FrameSource: Send {
    /// Blocks until the next frame; `Ok(None)` when the source has ended (a recording's end).
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, StageError>;

    /// How long registering the last frame's depth took, where this source registered it (the
    /// `register` stage; the `camera` stage is the rest of the frame's assembly).
    fn last_registration(&self) -> Option<Duration> {
        None
    }
}

/// Preprocessing and the vision graph.
pub trait VisionEncoder: Send {
    type Input: Send;
    type Embedding: Send + Sync + 'static;
    /// Image `image` of `frame` (0: RGB, 1: packed depth) → the vision graph's input tensor.
    fn preprocess(&mut self, frame: &RgbdFrame, image: usize) -> Result<Self::Input, StageError>;
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

    /// Where the last `generate` spent its time (prefill, each decode step), for the `prefill`
    /// and `decode` stages; `None` where the model does not say.
    fn last_timings(&self) -> Option<GenerationTimings> {
        None
    }
}

pub use crate::model::GenerationTimings;

/// The SpatialBot model answering the guard's yes/no question about one RGB-D frame.
pub trait GuardModel: Send {
    fn ask(&mut self, frame: &RgbdFrame, question: &str) -> Result<String, StageError>;
}

/// Registers `frame`'s depth, asks `cfg`'s question of `model` and judges the answer: the
/// loop's one path from a frame to a guard verdict (`guard-eval` measures this same path).
/// Returns the verdict and the answer (an error's text when the guard could not be asked).
pub fn consult_guard(
    cfg: &crate::policy::guard::GuardConfig,
    model: &mut dyn GuardModel,
    frame: &mut RgbdFrame,
) -> (crate::policy::guard::GuardVerdict, Result<String, String>) {
    use crate::policy::guard::GuardVerdict;
    if let Err(e) = frame.register_depth() {
        let why = format!("guard: cannot register the frame's depth: {e}");
        return (GuardVerdict::Veto(why.clone()), Err(why));
    }
    match model.ask(frame, &cfg.question) {
        Ok(a) => (cfg.verdict(&a), Ok(a)),
        Err(e) => {
            let why = format!("guard failed: {}", error_chain(&*e));
            (GuardVerdict::Veto(why.clone()), Err(why))
        }
    }
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
    /// Act only on frames captured after the previous step's action reached the arm: the loop
    /// waits for the link to finish with an action, then skips frames captured before that
    /// (counted in `frames.before_action`). Each step then sees the state its last action made,
    /// as the demonstrations a policy learns from do, however slow the model is. Off: the
    /// newest frame when the loop takes it, which a model slower than the camera's frame
    /// period finds already waiting, taken before its last action moved the arm. Ignored with
    /// `every_frame`.
    pub frame_after_action: bool,
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
            frame_after_action: true,
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
