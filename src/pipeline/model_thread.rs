//! The model thread: prompt + embeddings → answer → decoded action, the guard when due, then
//! the action (or a hold) to the link thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::shared::*;
use super::{error_chain, stats, Action, GuardModel, Hold, LanguageModel, RgbdFrame, StopReason};
use crate::policy::guard::{GuardConfig, GuardVerdict};
use crate::policy::{action_from_answer, PolicyPrompt};

pub(super) struct ModelCtx {
    pub(super) prompt: PolicyPrompt,
    pub(super) layout: crate::policy::ActionLayout,
    pub(super) names: Arc<[String]>,
    pub(super) max_new_tokens: usize,
    pub(super) steps: Option<u64>,
    pub(super) max_consecutive_unparsable: u32,
    pub(super) guard: Option<(GuardConfig, Box<dyn GuardModel>)>,
}

pub(super) fn model_thread<E, L: LanguageModel<E>>(
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
        // Before the request: the vision thread must see that this step's action may be on
        // its way to the arm.
        shared.answered_step.fetch_max(step, Ordering::SeqCst);
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
        let timings = model.last_timings();
        {
            let mut st = shared.stats();
            st.record(stats::stage::GENERATE, generated - start);
            if let Some(t) = timings {
                st.record(stats::stage::PREFILL, t.embed + t.prefill);
                for d in t.decode_steps {
                    st.record(stats::stage::DECODE, d);
                }
            }
            st.record(stats::stage::ACTION, decode_time);
            st.steps = step;
        }
        let msg = match decoded {
            Ok(values) => {
                unparsable_in_a_row = 0;
                shared.log(
                    LogLevel::Info,
                    format!("step {step}: frame {} → {answer}", input.frame.sequence),
                );
                let action = Action {
                    step,
                    frame_seq: input.frame.sequence,
                    captured: input.frame.capture,
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
        let acts = matches!(msg, LinkMsg::Act { .. });
        if link.send(msg).is_err() {
            return;
        }
        if !acts {
            // A hold moves nothing: there is no action to wait for.
            shared.delivered(step);
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

pub(super) fn gripper_value(ctx: &ModelCtx, action: &Action) -> Option<f64> {
    let (cfg, _) = ctx.guard.as_ref()?;
    let i = action.names.iter().position(|n| *n == cfg.gripper)?;
    action.values.get(i).copied()
}

/// Asks the guard when it is due; a guard that fails vetoes (the arm holds, the loop goes on).
pub(super) fn ask_guard(
    ctx: &mut ModelCtx,
    action: &Action,
    frame: &mut RgbdFrame,
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
    let (verdict, answer) = super::consult_guard(cfg, model.as_mut(), frame);
    shared.stats().record(stats::stage::GUARD, t0.elapsed());
    if let Ok(a) = &answer {
        shared.log(
            LogLevel::Info,
            format!("step {}: guard {:?} → {a:?}", action.step, cfg.question),
        );
    }
    verdict
}
