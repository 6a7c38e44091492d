//! The safety governor between the policy and the wire. Pure: values in, a decision out.
//!
//! Per proposal, in this order: a parse failure → hold; a non-finite value → hold; a frame
//! older than `max_age_us` at send time → hold; less than `min_interval_us` since the last
//! action → hold (rate limit); otherwise each value is clamped to `[min, max]` and then to
//! `previous ± max_step` (the previous value sent on that axis; after a hold, delta axes
//! count from 0 because the arm stood still) and sent.

use serde::{Deserialize, Serialize};
use spatialbot_link::{Axis, ACTION_LEN, DEFAULT_LAYOUT};

/// The limits the governor enforces; also sent to the controller in `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub layout: [Axis; ACTION_LEN],
    pub min: [f32; ACTION_LEN],
    pub max: [f32; ACTION_LEN],
    /// Largest change of a value from one action to the next.
    pub max_step: [f32; ACTION_LEN],
    /// An action computed from a frame captured longer ago than this is not sent.
    pub max_age_ms: u32,
    /// Fewest milliseconds between two actions sent (0: no rate limit).
    pub min_interval_ms: u32,
}

impl Default for Limits {
    /// Conservative limits for the default layout: 2 cm and 0.1 rad per step.
    fn default() -> Self {
        Self {
            layout: DEFAULT_LAYOUT,
            min: [-0.02, -0.02, -0.02, -0.1, -0.1, -0.1, 0.0, 0.0],
            max: [0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0, 1.0],
            max_step: [0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.5, 1.0],
            max_age_ms: 250,
            min_interval_ms: 5,
        }
    }
}

/// Why limits are unusable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LimitsError {
    #[error("limits for axis {index} ({axis}): min {min} is not below max {max}; fix min/max in the board profile")]
    Inverted {
        index: usize,
        axis: &'static str,
        min: f32,
        max: f32,
    },
    #[error("limits for axis {index} ({axis}): a bound is not finite; give finite min/max in the board profile")]
    NotFinite { index: usize, axis: &'static str },
    #[error("limits for axis {index} ({axis}): max_step {max_step} must be > 0; fix max_step in the board profile")]
    Step {
        index: usize,
        axis: &'static str,
        max_step: f32,
    },
}

impl Limits {
    pub fn validate(&self) -> Result<(), LimitsError> {
        for i in 0..ACTION_LEN {
            let axis = self.layout[i].name();
            if !self.min[i].is_finite() || !self.max[i].is_finite() {
                return Err(LimitsError::NotFinite { index: i, axis });
            }
            if self.min[i] > self.max[i] {
                return Err(LimitsError::Inverted {
                    index: i,
                    axis,
                    min: self.min[i],
                    max: self.max[i],
                });
            }
            if self.max_step[i].is_nan() || self.max_step[i] <= 0.0 {
                return Err(LimitsError::Step {
                    index: i,
                    axis,
                    max_step: self.max_step[i],
                });
            }
        }
        Ok(())
    }
}

/// What the policy proposes for one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Proposal {
    /// Parsed action values and the capture time (µs, host monotonic clock) of their frame.
    Values {
        values: [f32; ACTION_LEN],
        capture_us: u64,
    },
    /// The policy's output could not be parsed into an action.
    ParseFailure,
}

/// Why the governor held instead of acting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    ParseFailure,
    NonFinite,
    Stale,
    RateLimited,
}

/// The governor's verdict on one proposal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Send these values. `clamped`/`step_limited` say which axes were changed (bit i = axis i).
    Act {
        values: [f32; ACTION_LEN],
        clamped: u8,
        step_limited: u8,
    },
    /// Send nothing this step (the controller holds; heartbeats keep its watchdog fed).
    Hold(HoldReason),
}

/// Every decision the governor made, for status lines and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GovernorCounters {
    pub proposals: u64,
    pub acted: u64,
    /// Actions with at least one value clamped to `[min, max]`.
    pub clamped: u64,
    /// Actions with at least one value limited by `max_step`.
    pub step_limited: u64,
    pub held_parse_failure: u64,
    pub held_non_finite: u64,
    pub held_stale: u64,
    pub held_rate_limited: u64,
}

impl GovernorCounters {
    pub fn held(&self) -> u64 {
        self.held_parse_failure + self.held_non_finite + self.held_stale + self.held_rate_limited
    }

    /// One line for a status display.
    pub fn summary(&self) -> String {
        format!(
            "governor: {} proposals, {} acted ({} clamped, {} step-limited), held {} (parse {}, non-finite {}, stale {}, rate {})",
            self.proposals,
            self.acted,
            self.clamped,
            self.step_limited,
            self.held(),
            self.held_parse_failure,
            self.held_non_finite,
            self.held_stale,
            self.held_rate_limited
        )
    }
}

pub struct Governor {
    limits: Limits,
    previous: [f32; ACTION_LEN],
    last_act_us: Option<u64>,
    counters: GovernorCounters,
}

impl Governor {
    pub fn new(limits: Limits) -> Result<Self, LimitsError> {
        limits.validate()?;
        let previous = core::array::from_fn(|i| rest_value(&limits, i));
        Ok(Self {
            limits,
            previous,
            last_act_us: None,
            counters: GovernorCounters::default(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn counters(&self) -> GovernorCounters {
        self.counters
    }

    /// The arm did not move (the controller held or rejected an action, or the link held the
    /// step): delta axes count from rest again, as after a hold.
    pub fn arm_held(&mut self) {
        for i in 0..ACTION_LEN {
            if self.limits.layout[i].is_delta() {
                self.previous[i] = rest_value(&self.limits, i);
            }
        }
    }

    /// Decides what to do with `proposal` when it is about to be sent at `now_us`.
    pub fn decide(&mut self, proposal: &Proposal, now_us: u64) -> Decision {
        self.counters.proposals += 1;
        let decision = self.judge(proposal, now_us);
        match decision {
            Decision::Act {
                values,
                clamped,
                step_limited,
            } => {
                self.counters.acted += 1;
                self.counters.clamped += u64::from(clamped != 0);
                self.counters.step_limited += u64::from(step_limited != 0);
                self.previous = values;
                self.last_act_us = Some(now_us);
            }
            Decision::Hold(reason) => {
                let c = match reason {
                    HoldReason::ParseFailure => &mut self.counters.held_parse_failure,
                    HoldReason::NonFinite => &mut self.counters.held_non_finite,
                    HoldReason::Stale => &mut self.counters.held_stale,
                    HoldReason::RateLimited => &mut self.counters.held_rate_limited,
                };
                *c += 1;
                if reason != HoldReason::RateLimited {
                    for i in 0..ACTION_LEN {
                        if self.limits.layout[i].is_delta() {
                            self.previous[i] = rest_value(&self.limits, i);
                        }
                    }
                }
            }
        }
        decision
    }

    fn judge(&self, proposal: &Proposal, now_us: u64) -> Decision {
        let (values, capture_us) = match *proposal {
            Proposal::ParseFailure => return Decision::Hold(HoldReason::ParseFailure),
            Proposal::Values { values, capture_us } => (values, capture_us),
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Decision::Hold(HoldReason::NonFinite);
        }
        let age_us = now_us.saturating_sub(capture_us);
        if age_us > u64::from(self.limits.max_age_ms) * 1000 {
            return Decision::Hold(HoldReason::Stale);
        }
        if let Some(last) = self.last_act_us {
            if now_us.saturating_sub(last) < u64::from(self.limits.min_interval_ms) * 1000 {
                return Decision::Hold(HoldReason::RateLimited);
            }
        }
        let mut out = [0f32; ACTION_LEN];
        let mut clamped = 0u8;
        let mut step_limited = 0u8;
        for i in 0..ACTION_LEN {
            let l = &self.limits;
            let mut v = values[i].clamp(l.min[i], l.max[i]);
            if v != values[i] {
                clamped |= 1 << i;
            }
            let lo = self.previous[i] - l.max_step[i];
            let hi = self.previous[i] + l.max_step[i];
            if v < lo || v > hi {
                v = v.clamp(lo, hi).clamp(l.min[i], l.max[i]);
                step_limited |= 1 << i;
            }
            out[i] = v;
        }
        Decision::Act {
            values: out,
            clamped,
            step_limited,
        }
    }
}

/// The value an axis has when the arm is at rest: 0 for deltas (inside the limits).
fn rest_value(limits: &Limits, i: usize) -> f32 {
    if limits.layout[i].is_delta()
        || limits.layout[i] == Axis::Terminate
        || limits.layout[i] == Axis::Unused
    {
        0f32.clamp(limits.min[i], limits.max[i])
    } else {
        // Absolute axes (the gripper) have no known rest value before the first action: no step
        // limit applies to the first one.
        f32::NAN
    }
}
