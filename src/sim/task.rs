//! Tasks: what the robot is asked ("reach the red box"), which objects it names, when it has
//! succeeded, and how many steps it gets.

use serde::Serialize;

/// The kinds of task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// The gripper within [`REACH_TOLERANCE_M`] of the named object.
    Reach,
    /// The named object held and lifted at least [`LIFT_M`] above where it rested.
    Pick,
    /// The ball resting on the named box, released.
    Place,
}

/// Reach succeeds with the gripper's centre this close to the object's surface (or inside it).
pub const REACH_TOLERANCE_M: f64 = 0.02;
/// Pick succeeds with the object's bottom this far above its resting height.
pub const LIFT_M: f64 = 0.05;

impl TaskKind {
    pub const ALL: [TaskKind; 3] = [TaskKind::Reach, TaskKind::Pick, TaskKind::Place];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Reach => "reach",
            TaskKind::Pick => "pick",
            TaskKind::Place => "place",
        }
    }

    /// Steps an episode gets before it ends as a failure.
    pub fn step_limit(self) -> u64 {
        match self {
            TaskKind::Reach => 60,
            TaskKind::Pick => 100,
            TaskKind::Place => 160,
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TaskKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TaskKind::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown task `{s}`; the tasks are reach, pick and place"))
    }
}

/// One episode's task: its kind and the objects it names (indices into `World::objects`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    pub kind: TaskKind,
    /// The object to reach or pick, or the object to place (the ball).
    pub object: usize,
    /// Where to place it (a box); `None` for reach and pick.
    pub target: Option<usize>,
    /// "reach the red box", "pick up the ball", "place the ball on the blue box".
    pub goal: String,
}

impl Task {
    /// The policy manifest's instruction wraps this: "Instruct the robot to {goal}".
    pub fn goal(&self) -> &str {
        &self.goal
    }
}
