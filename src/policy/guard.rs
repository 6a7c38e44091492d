//! The SpatialBot guard: a yes/no question asked of the SpatialBot model every K steps and/or
//! before a gripper-close action; an answer other than the expected one vetoes the action.
//! An answer that is neither yes nor no vetoes too: the guard fails safe.

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// e.g. "Is the gripper around the object?"
    pub question: String,
    /// The answer that lets the action through; the other one vetoes it.
    #[serde(default = "yes")]
    pub proceed_if: YesNo,
    /// Ask every this many steps (0: never on a schedule).
    #[serde(default)]
    pub every_steps: u64,
    /// Ask before an action that closes the gripper.
    #[serde(default)]
    pub before_gripper_close: bool,
    /// The action name of the gripper.
    #[serde(default = "gripper")]
    pub gripper: String,
    /// The gripper closes when its value goes from below this to at or above it (or the other
    /// way round with `closed_is_below`).
    #[serde(default = "half")]
    pub close_threshold: f64,
    #[serde(default)]
    pub closed_is_below: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum YesNo {
    Yes,
    No,
}

fn yes() -> YesNo {
    YesNo::Yes
}
fn gripper() -> String {
    "gripper".to_string()
}
fn half() -> f64 {
    0.5
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardVerdict {
    Proceed,
    Veto(String),
}

impl GuardConfig {
    fn is_closed(&self, v: f64) -> bool {
        if self.closed_is_below {
            v <= self.close_threshold
        } else {
            v >= self.close_threshold
        }
    }

    /// Whether to ask before sending the action of 1-based `step`. `previous_gripper` is the
    /// gripper value of the last action sent (open when none was).
    pub fn is_due(
        &self,
        step: u64,
        names: &[String],
        values: &[f64],
        previous_gripper: Option<f64>,
    ) -> bool {
        if self.every_steps > 0 && step.is_multiple_of(self.every_steps) {
            return true;
        }
        if !self.before_gripper_close {
            return false;
        }
        let Some(g) = names
            .iter()
            .position(|n| *n == self.gripper)
            .and_then(|i| values.get(i))
        else {
            return false;
        };
        self.is_closed(*g) && !previous_gripper.is_some_and(|p| self.is_closed(p))
    }

    pub fn verdict(&self, answer: &str) -> GuardVerdict {
        match (parse_yes_no(answer), self.proceed_if) {
            (Some(YesNo::Yes), YesNo::Yes) | (Some(YesNo::No), YesNo::No) => GuardVerdict::Proceed,
            (Some(_), _) => {
                GuardVerdict::Veto(format!("guard answered {answer:?} to {:?}", self.question))
            }
            (None, _) => {
                GuardVerdict::Veto(format!("guard answer {answer:?} is neither yes nor no"))
            }
        }
    }
}

/// "Yes", "yes.", "No, it is not" → the answer; anything else → `None`.
pub fn parse_yes_no(answer: &str) -> Option<YesNo> {
    let first: String = answer
        .trim()
        .chars()
        .take_while(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect();
    match first.as_str() {
        "yes" => Some(YesNo::Yes),
        "no" => Some(YesNo::No),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GuardConfig {
        toml::from_str("question = \"Is the gripper around the object?\"\nbefore_gripper_close = true\nevery_steps = 5").unwrap()
    }

    #[test]
    fn yes_no_parsing() {
        assert_eq!(parse_yes_no(" Yes."), Some(YesNo::Yes));
        assert_eq!(parse_yes_no("no, it is not"), Some(YesNo::No));
        assert_eq!(parse_yes_no("NO"), Some(YesNo::No));
        assert_eq!(parse_yes_no("nope"), None);
        assert_eq!(parse_yes_no("yesterday"), None);
        assert_eq!(parse_yes_no(""), None);
    }

    #[test]
    fn due_on_schedule_and_before_closing() {
        let c = cfg();
        let names: Vec<String> = ["dx", "gripper"].iter().map(|s| s.to_string()).collect();
        assert!(c.is_due(5, &names, &[0.0, 0.0], None));
        assert!(!c.is_due(4, &names, &[0.0, 0.0], None));
        assert!(c.is_due(4, &names, &[0.0, 1.0], None));
        assert!(c.is_due(4, &names, &[0.0, 1.0], Some(0.0)));
        assert!(
            !c.is_due(4, &names, &[0.0, 1.0], Some(1.0)),
            "already closed"
        );
        assert!(
            !c.is_due(4, &names[..1], &[0.0], None),
            "no gripper in the layout"
        );
    }

    #[test]
    fn veto_fails_safe() {
        let c = cfg();
        assert_eq!(c.verdict("Yes"), GuardVerdict::Proceed);
        assert!(matches!(c.verdict("No"), GuardVerdict::Veto(_)));
        assert!(matches!(c.verdict("[0.1, 0.2]"), GuardVerdict::Veto(_)));
        assert!(toml::from_str::<GuardConfig>("question = \"q\"\nunknown = 1").is_err());
    }
}
