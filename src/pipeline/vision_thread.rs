//! The vision thread: on the model thread's request, the newest fresh frame → registration (when
//! left to consumers) → preprocessing → the vision graph, through the embedding history.
//!
//! With `frame_after_action` it first waits until the link thread is done with the previous
//! step's action, then skips frames captured before that action reached the arm: each step
//! sees the state its last action made.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::shared::*;
use super::{error_chain, stats, Hold, StageError, StopReason, VisionEncoder};
use crate::policy::EmbeddingHistory;

/// How often the vision thread looks whether the link thread is done with the last action.
const ACTION_POLL: Duration = Duration::from_micros(200);

pub(super) enum VisionFailure {
    Model(StageError),
    Register(String),
}

pub(super) struct VisionCtx<E> {
    pub(super) history: EmbeddingHistory<E>,
    pub(super) every_frame: bool,
    pub(super) frame_after_action: bool,
    pub(super) max_frame_age: Duration,
    pub(super) camera_stall_stop: Duration,
}

/// Tells the arm to hold (counted), once per wait for a frame.
fn hold_once(held: &mut bool, hold: Hold, hold_tx: &Sender<LinkMsg>, shared: &Shared) {
    if std::mem::replace(held, true) {
        return;
    }
    shared.stats().hold(hold.name());
    let _ = hold_tx.try_send(LinkMsg::Hold(hold));
}

#[allow(clippy::too_many_arguments)]
pub(super) fn vision_thread<V: VisionEncoder>(
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
        let not_before_us = if ctx.frame_after_action {
            // The model thread asks for the next frame as soon as it has an answer; the action
            // is on its way to the arm until the link thread is done with it (microseconds, or
            // the guard's question first).
            while shared.delivered_step.load(Ordering::SeqCst)
                < shared.answered_step.load(Ordering::SeqCst)
            {
                if shared.stop.is_set() {
                    return;
                }
                std::thread::sleep(ACTION_POLL);
            }
            shared.last_action_us.load(Ordering::SeqCst)
        } else {
            0
        };
        let waiting_since = Instant::now();
        let mut held = false;
        let frame = loop {
            if shared.stop.is_set() {
                return;
            }
            match frames.recv_timeout(TICK) {
                Ok(CaptureMsg::Frame(f)) if shared.micros(f.capture) < not_before_us => {
                    // Captured before the last action reached the arm: the state it shows is
                    // one the policy has already acted on. Not fresh, so a long wait for a
                    // later one holds and then stops as a stalled camera does.
                    shared.stats().frames_before_action += 1;
                    if waiting_since.elapsed() > ctx.max_frame_age {
                        hold_once(&mut held, Hold::CameraStall, &hold_tx, &shared);
                    }
                }
                Ok(CaptureMsg::Frame(f)) => {
                    let age = Instant::now().saturating_duration_since(f.capture);
                    if ctx.every_frame || age <= ctx.max_frame_age {
                        break f;
                    }
                    if !held {
                        shared.log(
                            LogLevel::Warn,
                            format!(
                                "frame {} is {:.0} ms old; holding",
                                f.sequence,
                                age.as_secs_f64() * 1e3
                            ),
                        );
                        let hold = Hold::StaleFrame {
                            frame_seq: f.sequence,
                            age_ms: age.as_millis() as u64,
                        };
                        hold_once(&mut held, hold, &hold_tx, &shared);
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
                    if waiting_since.elapsed() > ctx.max_frame_age {
                        hold_once(&mut held, Hold::CameraStall, &hold_tx, &shared);
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
        let mut register = None;
        let mut preprocess = Duration::ZERO;
        // One sample per image through the vision graph (`stage::per`).
        let mut vision = Vec::with_capacity(2);
        let result = ctx.history.step(frame.sequence, |image| {
            if image == 1 && frame.depth.is_raw() {
                // A source that leaves registration to its consumers (`DepthNeed::Raw`).
                let t = Instant::now();
                frame
                    .register_depth()
                    .map_err(|e| VisionFailure::Register(e.to_string()))?;
                register = Some(t.elapsed());
            }
            let t0 = Instant::now();
            let input = encoder
                .preprocess(&frame, image)
                .map_err(VisionFailure::Model)?;
            let t1 = Instant::now();
            let embedding = encoder.encode(input).map_err(VisionFailure::Model)?;
            preprocess += t1 - t0;
            vision.push(t1.elapsed());
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
                    format!(
                        "registering frame {}'s depth to colour: {e}",
                        frame.sequence
                    ),
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
            if let Some(d) = register {
                st.record(stats::stage::REGISTER, d);
            }
            if !vision.is_empty() {
                st.record(stats::stage::PREPROCESS, preprocess);
                for d in &vision {
                    st.record(stats::stage::VISION, *d);
                }
            }
            st.cache = ctx.history.counts();
        }
        let mut input = StepInput {
            frame_overhead: frame.ready.saturating_duration_since(frame.arrival)
                + register.unwrap_or_default()
                + preprocess,
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
