//! The supervisor: starts the four loop threads, watches signals, deadlines and the duration,
//! draws the status line, and turns the stop request into the run's summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;

use crossbeam_channel::bounded;

use super::capture_thread::capture_thread;
use super::link_thread::link_thread;
use super::model_thread::{model_thread, ModelCtx};
use super::shared::*;
use super::stats::{self, LoopStats};
use super::vision_thread::{vision_thread, VisionCtx};
use super::{
    status, ActionSink, FrameSource, GuardModel, LanguageModel, LoopConfig, LoopError, StopReason,
    VisionEncoder,
};
use crate::policy::guard::GuardConfig;
use crate::policy::{build_policy_prompt, EmbeddingHistory, PolicySpec};
use crate::telemetry::Report;

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
) -> Result<Report, LoopError>
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
        answered_step: AtomicU64::new(0),
        delivered_step: AtomicU64::new(0),
        last_action_us: AtomicU64::new(0),
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
            frame_after_action: cfg.frame_after_action && !cfg.every_frame,
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
                Box::new(move || link_thread(sink, process_start, link_rx, &signal, shared, done)),
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
    let mut summary = stats::report(
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

pub(super) fn drain_logs(rx: &Receiver<LogEvent>) {
    while let Ok(ev) = rx.try_recv() {
        match ev.level {
            LogLevel::Info => tracing::info!(target: "spatialbot_edge::run", "{}", ev.message),
            LogLevel::Warn => tracing::warn!(target: "spatialbot_edge::run", "{}", ev.message),
        }
    }
}
