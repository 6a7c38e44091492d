//! The real [`ActionSink`]: the safety governor, then the wire link to the arm controller.
//!
//! Per step: everything the controller said is acted on first ([`Link::poll`]); an action goes
//! out only when the link's gate is open (the controller holds a session and was heard within
//! the reply timeout, no shutdown signal) *and* the governor approves it. A controller that
//! did not apply an action makes the governor count from where the arm stands.

use std::time::{Duration, Instant};

use crate::link::clock;
use crate::link::governor::{Decision, Governor, LimitsError, Proposal};
use crate::link::{ActionCommand, Axis, Link, LinkConfig, LinkError, LinkSpec, ACTION_LEN};

use super::{Action, ActionSink, Delivery, Hold, SinkError, StopReason};

#[derive(Debug, thiserror::Error)]
pub enum LinkSinkError {
    #[error("the arm expects axis {axis:?} but the policy's actions have no such name ({names}); use a model whose [[policy.action]] names match the link layout")]
    MissingPolicyAxis { axis: &'static str, names: String },
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl LinkSinkError {
    /// The process exit code: a policy/board mismatch is bad input, a link error its own code.
    pub fn exit_code(&self) -> u8 {
        match self {
            LinkSinkError::MissingPolicyAxis { .. } | LinkSinkError::Limits(_) => {
                crate::exit::BAD_INPUT
            }
            LinkSinkError::Link(e) => e.exit_code(),
        }
    }
}

/// For each wire slot, the index of the policy value that fills it (`None`: an unused slot).
pub fn wire_slots(
    layout: &[Axis; ACTION_LEN],
    names: &[String],
) -> Result<[Option<usize>; ACTION_LEN], LinkSinkError> {
    let mut slots = [None; ACTION_LEN];
    for (slot, axis) in slots.iter_mut().zip(layout) {
        if *axis == Axis::Unused {
            continue;
        }
        *slot = Some(names.iter().position(|n| n == axis.name()).ok_or_else(|| {
            LinkSinkError::MissingPolicyAxis {
                axis: axis.name(),
                names: names.join(", "),
            }
        })?);
    }
    Ok(slots)
}

/// A point in time as CLOCK_MONOTONIC µs, the clock the wire's timestamps use.
fn monotonic_us_of(t: Instant) -> u64 {
    let now = Instant::now();
    let now_us = clock::monotonic_us();
    if t <= now {
        now_us.saturating_sub(now.duration_since(t).as_micros() as u64)
    } else {
        now_us + t.duration_since(now).as_micros() as u64
    }
}

pub struct LinkSink {
    link: Link,
    governor: Governor,
    slots: [Option<usize>; ACTION_LEN],
    terminate_slot: Option<usize>,
    heartbeat: Duration,
    last_sent: Instant,
}

impl LinkSink {
    /// Opens the link (handshake included) with `cfg` (from `Board::link_config`); `names` are
    /// the policy's action names, matched to the wire layout by name.
    pub fn open(spec: &LinkSpec, cfg: LinkConfig, names: &[String]) -> Result<Self, LinkSinkError> {
        let slots = wire_slots(&cfg.limits.layout, names)?;
        let governor = Governor::new(cfg.limits)?;
        let terminate_slot = cfg.limits.layout.iter().position(|a| *a == Axis::Terminate);
        let heartbeat = cfg.heartbeat;
        if cfg.shutdown.is_some() {
            crate::link::signals::mark_session_may_open();
        }
        let link = Link::open(spec, cfg)?;
        Ok(Self {
            link,
            governor,
            slots,
            terminate_slot,
            heartbeat,
            last_sent: Instant::now(),
        })
    }

    pub fn governor(&self) -> &Governor {
        &self.governor
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Acts on the controller's replies; a refused action makes the governor count from rest.
    fn check_controller(&mut self) -> Result<(), SinkError> {
        self.link.poll().map_err(link_error)?;
        if self.link.take_not_applied() {
            self.governor.arm_held();
        }
        if self.link.episode_ended() {
            return Err(SinkError::EpisodeEnded(
                "the policy ended the episode (terminate = 1, applied by the controller)".into(),
            ));
        }
        Ok(())
    }

    fn heartbeat(&mut self) -> Result<(), SinkError> {
        self.link.heartbeat().map_err(link_error)?;
        self.last_sent = Instant::now();
        Ok(())
    }
}

fn link_error(e: LinkError) -> SinkError {
    let code = e.exit_code();
    let text = e.to_string();
    match e {
        LinkError::NoStopAck { .. } => SinkError::NoStopAck(text),
        LinkError::Estop { .. } => SinkError::EStop(text),
        LinkError::ShuttingDown => SinkError::ShuttingDown,
        _ if code == crate::exit::CONTROLLER_REFUSED => SinkError::ControllerRefused(text),
        _ if code == crate::exit::CONTROLLER_FAULT => SinkError::ControllerFault(text),
        _ if code == crate::exit::CONTROLLER_STOPPED => SinkError::ControllerStopped(text),
        _ => SinkError::LinkLost(text),
    }
}

impl ActionSink for LinkSink {
    fn send(&mut self, action: &Action, _now: Instant) -> Result<Delivery, SinkError> {
        self.check_controller()?;
        if let Err(hold) = self.link.gate() {
            self.link.count_hold(hold);
            self.governor.arm_held();
            self.heartbeat()?;
            return Ok(Delivery::Held(Hold::Link(hold)));
        }
        let mut values = [0f32; ACTION_LEN];
        for (v, slot) in values.iter_mut().zip(&self.slots) {
            if let Some(i) = slot {
                *v = action.values.get(*i).copied().unwrap_or(f64::NAN) as f32;
            }
        }
        let capture_us = monotonic_us_of(action.captured);
        let decision = self.governor.decide(
            &Proposal::Values { values, capture_us },
            clock::monotonic_us(),
        );
        let delivery = match decision {
            Decision::Act { values, .. } => {
                let cmd = ActionCommand {
                    chunk_id: 0,
                    chunk_index: 0,
                    capture_us,
                    values,
                };
                let terminate = self.terminate_slot.is_some_and(|i| values[i] == 1.0);
                match self.link.send_action_ending(&cmd, terminate) {
                    Ok(_) => {}
                    Err(LinkError::ShuttingDown) => {
                        return Ok(Delivery::Held(Hold::Link(
                            crate::link::LinkHold::ShuttingDown,
                        )))
                    }
                    Err(e) => return Err(link_error(e)),
                }
                self.last_sent = Instant::now();
                Delivery::Sent
            }
            Decision::Hold(reason) => {
                self.heartbeat()?;
                Delivery::Held(Hold::Governor(reason))
            }
        };
        self.check_controller()?;
        Ok(delivery)
    }

    fn hold(&mut self, hold: &Hold, _now: Instant) -> Result<(), SinkError> {
        if matches!(hold, Hold::UnparsableAnswer(_)) {
            let _ = self
                .governor
                .decide(&Proposal::ParseFailure, clock::monotonic_us());
        }
        self.heartbeat()?;
        self.check_controller()
    }

    fn idle(&mut self, _now: Instant) -> Result<(), SinkError> {
        if self.last_sent.elapsed() >= self.heartbeat {
            self.heartbeat()?;
        }
        self.check_controller()
    }

    fn stop(&mut self, why: StopReason) -> Result<(), SinkError> {
        self.link.stop(why.wire()).map(|_| ()).map_err(link_error)
    }

    fn outcomes(&self) -> Option<super::stats::LinkOutcomes> {
        Some(super::stats::link_outcomes(
            &self.link.counters(),
            self.link.session(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_map_onto_the_wire_layout() {
        let names: Vec<String> = [
            "terminate",
            "dx",
            "dy",
            "dz",
            "droll",
            "dpitch",
            "dyaw",
            "gripper",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let slots = wire_slots(&crate::link::Limits::default().layout, &names).unwrap();
        // Wire: dx dy dz droll dpitch dyaw gripper terminate.
        assert_eq!(
            slots,
            [
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(0)
            ]
        );
        assert!(matches!(
            wire_slots(&crate::link::Limits::default().layout, &names[..7]),
            Err(LinkSinkError::MissingPolicyAxis {
                axis: "gripper",
                ..
            })
        ));
    }
}
