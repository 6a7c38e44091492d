//! The real [`ActionSink`]: the safety governor, then the wire link to the arm controller.

use std::time::{Duration, Instant};

use crate::board::Board;
use crate::link::clock;
use crate::link::governor::{Decision, Governor, HoldReason, Limits, LimitsError, Proposal};
use crate::link::{
    ActionCommand, Axis, ControllerState, Link, LinkConfig, LinkError, LinkSpec, ACTION_LEN,
};

use super::{Action, ActionSink, Delivery, SinkError, StopReason};

#[derive(Debug, thiserror::Error)]
pub enum LinkSinkError {
    #[error("board profile {board}: the arm expects axis {axis:?} but [[safety.axes]] has no entry for it; add one with min, max and max_step")]
    MissingAxisLimit { board: String, axis: &'static str },
    #[error("the arm expects axis {axis:?} but the policy's actions have no such name ({names}); use a model whose [[policy.action]] names match the link layout")]
    MissingPolicyAxis { axis: &'static str, names: String },
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// The governor's limits from the board profile's `[safety]`, in the wire layout.
pub fn limits_from_board(
    board: &Board,
    layout: [Axis; ACTION_LEN],
) -> Result<Limits, LinkSinkError> {
    let mut limits = Limits {
        layout,
        max_age_ms: board.safety.max_age_ms,
        min_interval_ms: if board.safety.rate_limit_hz > 0.0 {
            (1000.0 / board.safety.rate_limit_hz).floor() as u32
        } else {
            0
        },
        ..Limits::default()
    };
    for (i, axis) in layout.iter().enumerate() {
        let (min, max, step) = match (board.safety.axis(axis.name()), axis) {
            (Some(a), _) => (a.min as f32, a.max as f32, a.max_step as f32),
            (None, Axis::Terminate) => (0.0, 1.0, 1.0),
            (None, Axis::Unused) => (0.0, 0.0, 1.0),
            (None, _) => {
                return Err(LinkSinkError::MissingAxisLimit {
                    board: board.source.display().to_string(),
                    axis: axis.name(),
                })
            }
        };
        limits.min[i] = min;
        limits.max[i] = max;
        limits.max_step[i] = step;
    }
    limits.validate()?;
    Ok(limits)
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
    heartbeat: Duration,
    last_sent: Instant,
}

impl LinkSink {
    /// Opens the link (handshake included) with the board's limits; `names` are the policy's
    /// action names, matched to the wire layout by name.
    pub fn open(spec: &LinkSpec, board: &Board, names: &[String]) -> Result<Self, LinkSinkError> {
        let limits = limits_from_board(board, Limits::default().layout)?;
        let slots = wire_slots(&limits.layout, names)?;
        let governor = Governor::new(limits)?;
        let mut cfg = LinkConfig::new(limits);
        cfg.watchdog_ms = board.link.watchdog_ms.min(u16::MAX as u32) as u16;
        let link = Link::open(spec, cfg)?;
        Ok(Self {
            link,
            governor,
            slots,
            heartbeat: Duration::from_millis(board.link.heartbeat_ms as u64),
            last_sent: Instant::now(),
        })
    }

    pub fn governor(&self) -> &Governor {
        &self.governor
    }

    fn check_controller(&mut self) -> Result<(), SinkError> {
        self.link.poll().map_err(link_error)?;
        if self
            .link
            .last_status()
            .is_some_and(|s| s.state == ControllerState::Faulted)
        {
            return Err(SinkError::EStop(format!(
                "the arm controller reports a fault ({:?})",
                self.link.last_fault()
            )));
        }
        Ok(())
    }

    fn heartbeat(&mut self) -> Result<(), SinkError> {
        self.link.heartbeat().map_err(link_error)?;
        self.last_sent = Instant::now();
        Ok(())
    }
}

fn hold_name(reason: HoldReason) -> &'static str {
    match reason {
        HoldReason::ParseFailure => "parse_failure",
        HoldReason::NonFinite => "non_finite",
        HoldReason::Stale => "stale",
        HoldReason::RateLimited => "rate_limited",
    }
}

fn link_error(e: LinkError) -> SinkError {
    match e {
        LinkError::NoStopAck { .. } => SinkError::NoStopAck(e.to_string()),
        other => SinkError::LinkLost(other.to_string()),
    }
}

impl ActionSink for LinkSink {
    fn send(&mut self, action: &Action, _now: Instant) -> Result<Delivery, SinkError> {
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
                self.link.send_action(&cmd).map_err(link_error)?;
                self.last_sent = Instant::now();
                Delivery::Sent
            }
            Decision::Hold(reason) => {
                self.heartbeat()?;
                Delivery::Held(format!("governor_{}", hold_name(reason)))
            }
        };
        self.check_controller()?;
        Ok(delivery)
    }

    fn hold(&mut self, reason: &str, _now: Instant) -> Result<(), SinkError> {
        if reason.starts_with("unparsable") {
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
        use crate::link::StopReason as Wire;
        let reason = match why {
            StopReason::Signal => Wire::Operator,
            StopReason::StepsDone | StopReason::DurationDone | StopReason::SourceEnded => {
                Wire::Finished
            }
            StopReason::CameraStalled => Wire::Watchdog,
            StopReason::EStop => Wire::Estop,
            _ => Wire::HostFault,
        };
        self.link.stop(reason).map(|_| ()).map_err(link_error)
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
        let slots = wire_slots(&Limits::default().layout, &names).unwrap();
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
            wire_slots(&Limits::default().layout, &names[..7]),
            Err(LinkSinkError::MissingPolicyAxis {
                axis: "gripper",
                ..
            })
        ));
    }

    #[test]
    fn dev_board_limits() {
        let board = Board::default_dev().unwrap();
        let l = limits_from_board(&board, Limits::default().layout).unwrap();
        assert_eq!(l.min[0], -0.2f32);
        assert_eq!(l.max[6], 1.0);
        assert_eq!((l.min[7], l.max[7]), (0.0, 1.0));
        assert_eq!(l.max_age_ms, board.safety.max_age_ms);
    }
}
