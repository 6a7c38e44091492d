//! The tabletop world: a table (its top at z = 0), 2–3 coloured boxes, a ball, and a parallel
//! gripper moved by actions in the wire's layout.
//!
//! Coordinates are the arm's: metres, x to the right, y away from the robot (forward), z up.
//! One [`World::apply`] is one control step: the gripper's centre point (between the finger
//! pads, the "TCP") moves by dx, dy, dz and its orientation by droll, dpitch, dyaw, each clamped
//! to the workspace; the gripper value is absolute (0 closed … 1 open, crates/link/SPEC.md).
//! Closing (the value falling below 0.5) with an object's centre within the grasp tolerance
//! between the fingers grasps it; opening releases it, and a released object falls (gravity,
//! one step = [`STEP_S`]) onto the table or the box under it. The gripper passes through
//! objects (there is no contact model beyond grasping and resting).

use serde::Serialize;

use super::task::{Task, TaskKind, LIFT_M, REACH_TOLERANCE_M};
use super::{sin_cos, Rng};

/// Simulated time per action (10 Hz control), for falling objects.
pub const STEP_S: f64 = 0.1;
const GRAVITY: f64 = 9.81;
/// The TCP's workspace box (min, max); its z floor keeps the fingertips above the table.
pub const WORKSPACE_MIN: [f64; 3] = [-0.30, 0.30, 0.015];
pub const WORKSPACE_MAX: [f64; 3] = [0.30, 0.95, 0.40];
/// |roll|, |pitch| and |yaw| limits, rad.
pub const ANGLE_LIMITS: [f64; 3] = [0.5, 0.5, 1.5];
/// The finger gap fully open (gripper = 1) and fully closed (gripper = 0), m.
pub const GAP_OPEN_M: f64 = 0.10;
pub const GAP_CLOSED_M: f64 = 0.01;
/// The gripper counts as closed below this value.
pub const CLOSED_BELOW: f64 = 0.5;
/// An object's centre must be this close to the TCP horizontally, and vertically, to be grasped.
pub const GRASP_XY_M: f64 = 0.025;
pub const GRASP_Z_M: f64 = 0.025;
/// The table top's extent (x, y); objects beyond it would fall to the floor (they never get
/// there: the workspace is inside it).
pub const TABLE_X: [f64; 2] = [-0.5, 0.5];
pub const TABLE_Y: [f64; 2] = [0.2, 1.2];

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// An axis-aligned box with these half extents.
    Box {
        half: [f64; 3],
    },
    Ball {
        radius: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Object {
    /// How a goal names it: "the red box", "the ball".
    pub name: String,
    pub colour: &'static str,
    pub shape: Shape,
    /// The centre.
    pub pos: [f64; 3],
    #[serde(skip)]
    pub rgb: [f64; 3],
    /// Vertical velocity while falling (m/s, down positive); 0 at rest or held.
    pub fall_speed: f64,
    /// Where its bottom rested at the start.
    pub start_bottom: f64,
}

impl Object {
    /// Half extents of its bounding box.
    pub fn half(&self) -> [f64; 3] {
        match self.shape {
            Shape::Box { half } => half,
            Shape::Ball { radius } => [radius; 3],
        }
    }

    pub fn bottom(&self) -> f64 {
        self.pos[2] - self.half()[2]
    }

    pub fn top(&self) -> f64 {
        self.pos[2] + self.half()[2]
    }

    /// Distance from `p` to the object's surface (0 inside).
    pub fn distance(&self, p: [f64; 3]) -> f64 {
        match self.shape {
            Shape::Box { half } => {
                let d = [0, 1, 2].map(|a| ((p[a] - self.pos[a]).abs() - half[a]).max(0.0));
                (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
            }
            Shape::Ball { radius } => (norm(sub(p, self.pos)) - radius).max(0.0),
        }
    }

    /// Its width between fingers closing along the horizontal direction (c, s).
    fn width_along(&self, c: f64, s: f64) -> f64 {
        match self.shape {
            Shape::Box { half } => 2.0 * (c.abs() * half[0] + s.abs() * half[1]),
            Shape::Ball { radius } => 2.0 * radius,
        }
    }

    /// Whether the horizontal point (x, y) is over its top face (boxes only hold things up).
    fn supports(&self, x: f64, y: f64) -> bool {
        match self.shape {
            Shape::Box { half } => {
                (x - self.pos[0]).abs() <= half[0] && (y - self.pos[1]).abs() <= half[1]
            }
            Shape::Ball { .. } => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gripper {
    /// The TCP: the point midway between the finger pads.
    pub pos: [f64; 3],
    /// Roll, pitch, yaw (rad); yaw turns the fingers' closing direction (x at yaw 0).
    pub rpy: [f64; 3],
    /// The last gripper value (0 closed … 1 open).
    pub opening: f64,
    /// The object between the fingers.
    pub held: Option<usize>,
    /// The held object's centre relative to the TCP.
    #[serde(skip)]
    pub grip_offset: [f64; 3],
}

impl Gripper {
    /// The finger gap as drawn: the object's width while holding one.
    pub fn gap(&self, objects: &[Object]) -> f64 {
        let (s, c) = sin_cos(self.rpy[2]);
        match self.held.and_then(|i| objects.get(i)) {
            Some(o) => o.width_along(c, s),
            None => GAP_CLOSED_M + (GAP_OPEN_M - GAP_CLOSED_M) * self.opening,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.opening < CLOSED_BELOW
    }
}

/// The whole state. Cloning it is cheap (a few objects).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct World {
    pub seed: u64,
    pub task: Task,
    pub objects: Vec<Object>,
    pub gripper: Gripper,
    /// Actions applied.
    pub steps: u64,
    /// The episode ends after this many actions (the task's [`TaskKind::step_limit`]).
    pub step_limit: u64,
    /// An applied action had terminate = 1.
    pub terminated: bool,
    /// The step at which the task first succeeded.
    pub success_step: Option<u64>,
    /// The TCP after each step, from the start (for the episode's top-down picture).
    #[serde(skip)]
    pub path: Vec<[f64; 3]>,
    /// The actions applied, in order (the default layout): replaying them on the start state
    /// reproduces every state of the episode (`World::replay`), e.g. for a contact sheet.
    #[serde(skip)]
    pub applied: Vec<[f32; 8]>,
    /// The start state's objects and gripper, which [`World::replay`] starts from (a seed's
    /// layout or a world file's).
    #[serde(skip)]
    start: Box<(Vec<Object>, Gripper)>,
}

pub(super) const BOX_COLOURS: [(&str, [f64; 3]); 4] = [
    ("red", [0.80, 0.15, 0.12]),
    ("blue", [0.15, 0.25, 0.80]),
    ("yellow", [0.90, 0.80, 0.15]),
    ("purple", [0.55, 0.20, 0.65]),
];
pub(super) const BALL_COLOURS: [(&str, [f64; 3]); 2] = [
    ("green", [0.15, 0.70, 0.25]),
    ("orange", [0.95, 0.50, 0.10]),
];
pub const BALL_RADIUS_M: f64 = 0.025;
/// Objects' centres start at least this far apart (room for the open fingers).
const MIN_SPACING_M: f64 = 0.13;

impl World {
    /// The start state of `kind` for `seed`: how many boxes, their colours, sizes and places,
    /// the ball's colour and place, the gripper's start, and which objects the task names all
    /// follow from the seed.
    pub fn new(kind: TaskKind, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n_boxes = 2 + rng.below(2);
        let mut colours: Vec<(&'static str, [f64; 3])> = BOX_COLOURS.to_vec();
        // Fisher–Yates.
        for i in (1..colours.len()).rev() {
            colours.swap(i, rng.below(i + 1));
        }
        let mut centres: Vec<[f64; 2]> = Vec::new();
        for _ in 0..=n_boxes {
            let mut spacing = MIN_SPACING_M;
            let mut tries = 0;
            let c = loop {
                let c = [rng.range(-0.2, 0.2), rng.range(0.45, 0.8)];
                let free = centres.iter().all(|o| {
                    let d = [c[0] - o[0], c[1] - o[1]];
                    d[0] * d[0] + d[1] * d[1] >= spacing * spacing
                });
                if free {
                    break c;
                }
                tries += 1;
                if tries % 200 == 0 {
                    spacing *= 0.9;
                }
            };
            centres.push(c);
        }
        let mut objects = Vec::new();
        for (i, &(colour, rgb)) in colours.iter().take(n_boxes).enumerate() {
            let half = [
                rng.range(0.03, 0.04),
                rng.range(0.03, 0.04),
                rng.range(0.02, 0.035),
            ];
            objects.push(Object {
                name: format!("the {colour} box"),
                colour,
                shape: Shape::Box { half },
                pos: [centres[i][0], centres[i][1], half[2]],
                rgb,
                fall_speed: 0.0,
                start_bottom: 0.0,
            });
        }
        let (colour, rgb) = BALL_COLOURS[rng.below(BALL_COLOURS.len())];
        objects.push(Object {
            name: "the ball".to_string(),
            colour,
            shape: Shape::Ball {
                radius: BALL_RADIUS_M,
            },
            pos: [centres[n_boxes][0], centres[n_boxes][1], BALL_RADIUS_M],
            rgb,
            fall_speed: 0.0,
            start_bottom: 0.0,
        });
        let ball = n_boxes;
        let gripper = Gripper {
            pos: [
                rng.range(-0.1, 0.1),
                rng.range(0.35, 0.45),
                rng.range(0.20, 0.26),
            ],
            rpy: [0.0; 3],
            opening: 1.0,
            held: None,
            grip_offset: [0.0; 3],
        };
        let task = match kind {
            TaskKind::Reach => {
                let object = rng.below(objects.len());
                Task {
                    kind,
                    object,
                    target: None,
                    goal: format!("reach {}", objects[object].name),
                }
            }
            TaskKind::Pick => {
                let object = rng.below(objects.len());
                Task {
                    kind,
                    object,
                    target: None,
                    goal: format!("pick up {}", objects[object].name),
                }
            }
            TaskKind::Place => {
                let target = rng.below(n_boxes);
                Task {
                    kind,
                    object: ball,
                    target: Some(target),
                    goal: format!("place the ball on {}", objects[target].name),
                }
            }
        };
        Self::from_start(seed, task, objects, gripper, kind.step_limit())
    }

    /// A world in the start state given (a seed's draw, or a world file's layout,
    /// `sim::world_file`).
    pub fn from_start(
        seed: u64,
        task: Task,
        objects: Vec<Object>,
        gripper: Gripper,
        step_limit: u64,
    ) -> Self {
        let start = Box::new((objects.clone(), gripper.clone()));
        Self {
            seed,
            task,
            path: vec![gripper.pos],
            objects,
            gripper,
            steps: 0,
            step_limit,
            terminated: false,
            success_step: None,
            applied: Vec::new(),
            start,
        }
    }

    /// The state after the first `steps` of `applied`, replayed from the start state of this
    /// world's task and seed (the world is deterministic).
    pub fn replay(&self, steps: usize) -> World {
        let (objects, gripper) = (*self.start).clone();
        let mut w = World::from_start(
            self.seed,
            self.task.clone(),
            objects,
            gripper,
            self.step_limit,
        );
        for a in self.applied.iter().take(steps) {
            w.apply(a);
        }
        w
    }

    /// Applies one action in the wire's default layout: dx, dy, dz (m), droll, dpitch, dyaw
    /// (rad), gripper (0 closed … 1 open), terminate (exactly 1 ends the episode). A value that
    /// is not finite leaves its axis alone (the controller rejects such an action anyway).
    ///
    /// Once the episode is over ([`World::done`]) actions change nothing: the state the episode
    /// ended in is the one it is judged by, whatever a loop still had in flight.
    pub fn apply(&mut self, action: &[f32; 8]) {
        if self.done() {
            return;
        }
        let v = action.map(|x| {
            if x.is_finite() {
                f64::from(x)
            } else {
                f64::NAN
            }
        });
        self.steps += 1;
        self.applied.push(*action);
        let g = &mut self.gripper;
        for a in 0..3 {
            if v[a].is_finite() {
                g.pos[a] = (g.pos[a] + v[a]).clamp(WORKSPACE_MIN[a], WORKSPACE_MAX[a]);
            }
            if v[3 + a].is_finite() {
                g.rpy[a] = (g.rpy[a] + v[3 + a]).clamp(-ANGLE_LIMITS[a], ANGLE_LIMITS[a]);
            }
        }
        if v[6].is_finite() {
            let was_closed = g.is_closed();
            g.opening = v[6].clamp(0.0, 1.0);
            if !was_closed && g.is_closed() {
                self.try_grasp();
            } else if was_closed && !self.gripper.is_closed() {
                self.gripper.held = None;
            }
        }
        self.carry_held();
        self.settle();
        if v[7] == 1.0 {
            self.terminated = true;
        }
        self.path.push(self.gripper.pos);
        if self.success_step.is_none() && self.succeeded() {
            self.success_step = Some(self.steps);
        }
    }

    /// Applies an action whose slots follow `layout` (the layout the host sent in `Hello`).
    pub fn apply_layout(&mut self, layout: &[spatialbot_link::Axis; 8], values: &[f32; 8]) {
        use spatialbot_link::Axis;
        let mut action = [0.0f32; 8];
        // The gripper keeps its value unless the layout carries it.
        action[6] = self.gripper.opening as f32;
        for (axis, &v) in layout.iter().zip(values) {
            let slot = match axis {
                Axis::Dx => 0,
                Axis::Dy => 1,
                Axis::Dz => 2,
                Axis::Droll => 3,
                Axis::Dpitch => 4,
                Axis::Dyaw => 5,
                Axis::Gripper => 6,
                Axis::Terminate => 7,
                Axis::Unused => continue,
            };
            action[slot] = v;
        }
        self.apply(&action);
    }

    /// The object closing the gripper now would grasp: the nearest whose centre is within the
    /// grasp tolerance between the fingers and that fits between them open.
    pub fn graspable(&self) -> Option<usize> {
        let g = &self.gripper;
        let (s, c) = sin_cos(g.rpy[2]);
        let mut best: Option<(usize, f64)> = None;
        for (i, o) in self.objects.iter().enumerate() {
            if Some(i) == g.held {
                continue;
            }
            let d = sub(o.pos, g.pos);
            let dxy = (d[0] * d[0] + d[1] * d[1]).sqrt();
            if dxy <= GRASP_XY_M
                && d[2].abs() <= GRASP_Z_M
                && o.width_along(c, s) <= GAP_OPEN_M
                && best.is_none_or(|(_, bd)| dxy < bd)
            {
                best = Some((i, dxy));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The gripper closed: grasps the nearest object whose centre is within the tolerance
    /// between the fingers and that fitted between them open.
    fn try_grasp(&mut self) {
        if let Some(i) = self.graspable() {
            self.gripper.held = Some(i);
            self.gripper.grip_offset = sub(self.objects[i].pos, self.gripper.pos);
            self.objects[i].fall_speed = 0.0;
        }
    }

    /// The held object follows the TCP; it is never pushed into the table (the TCP stops).
    fn carry_held(&mut self) {
        let Some(i) = self.gripper.held else { return };
        let Some(o) = self.objects.get_mut(i) else {
            self.gripper.held = None;
            return;
        };
        let half = o.half()[2];
        let mut pos = add(self.gripper.pos, self.gripper.grip_offset);
        if pos[2] - half < 0.0 {
            let lift = half - pos[2];
            pos[2] += lift;
            self.gripper.pos[2] += lift;
        }
        o.pos = pos;
    }

    /// The table or box top under (x, y), below `below` (+ a little), ignoring `skip`.
    fn support_height(&self, skip: usize, x: f64, y: f64) -> f64 {
        let mut h: f64 = 0.0;
        for (j, p) in self.objects.iter().enumerate() {
            if j != skip && Some(j) != self.gripper.held && p.supports(x, y) {
                h = h.max(p.top());
            }
        }
        h
    }

    /// Objects not held fall (one step of gravity) onto what is under them; one that ended up
    /// inside a box (released there) rests on its top.
    fn settle(&mut self) {
        // Lowest first, so a stack settles from the bottom up within one step.
        let mut order: Vec<usize> = (0..self.objects.len()).collect();
        order.sort_by(|&a, &b| {
            self.objects[a]
                .bottom()
                .total_cmp(&self.objects[b].bottom())
        });
        for i in order {
            if Some(i) == self.gripper.held {
                continue;
            }
            let (x, y) = (self.objects[i].pos[0], self.objects[i].pos[1]);
            let support = self.support_height(i, x, y);
            let o = &mut self.objects[i];
            let half = o.half()[2];
            let bottom = o.pos[2] - half;
            if bottom <= support + 1e-9 {
                o.pos[2] = support + half;
                o.fall_speed = 0.0;
                continue;
            }
            o.fall_speed += GRAVITY * STEP_S;
            let next = bottom - o.fall_speed * STEP_S;
            if next <= support {
                o.pos[2] = support + half;
                o.fall_speed = 0.0;
            } else {
                o.pos[2] = next + half;
            }
        }
    }

    /// Whether the task's success criterion holds now.
    pub fn succeeded(&self) -> bool {
        let Some(o) = self.objects.get(self.task.object) else {
            return false;
        };
        match self.task.kind {
            TaskKind::Reach => o.distance(self.gripper.pos) <= REACH_TOLERANCE_M,
            TaskKind::Pick => {
                self.gripper.held == Some(self.task.object) && o.bottom() >= o.start_bottom + LIFT_M
            }
            TaskKind::Place => {
                let Some(b) = self.task.target.and_then(|t| self.objects.get(t)) else {
                    return false;
                };
                self.gripper.held != Some(self.task.object)
                    && o.fall_speed == 0.0
                    && b.supports(o.pos[0], o.pos[1])
                    && (o.bottom() - b.top()).abs() < 1e-6
            }
        }
    }

    /// The episode is over: success, terminate = 1, or the task's step limit.
    pub fn done(&self) -> bool {
        self.success_step.is_some() || self.terminated || self.steps >= self.step_limit
    }

    /// The task's object.
    pub fn object(&self) -> &Object {
        &self.objects[self.task.object.min(self.objects.len() - 1)]
    }
}

pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

pub(crate) fn norm(a: [f64; 3]) -> f64 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn still() -> [f32; 8] {
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    }

    #[test]
    fn the_same_seed_gives_the_same_world_and_seeds_vary_it() {
        assert_eq!(
            World::new(TaskKind::Place, 5),
            World::new(TaskKind::Place, 5)
        );
        let goals: std::collections::BTreeSet<String> = (0..20)
            .map(|s| World::new(TaskKind::Reach, s).task.goal)
            .collect();
        assert!(goals.len() >= 3, "{goals:?}");
        let counts: std::collections::BTreeSet<usize> = (0..20)
            .map(|s| World::new(TaskKind::Reach, s).objects.len())
            .collect();
        assert_eq!(counts.len(), 2, "2 or 3 boxes and a ball");
    }

    #[test]
    fn the_arm_integrates_actions_and_stops_at_the_workspace() {
        let mut w = World::new(TaskKind::Reach, 1);
        w.step_limit = u64::MAX;
        let start = w.gripper.pos;
        w.apply(&[0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 1.0, 0.0]);
        let p = w.gripper.pos;
        assert!((p[0] - start[0] - 0.01).abs() < 1e-6);
        assert!((p[1] - start[1] + 0.02).abs() < 1e-6);
        assert!((p[2] - start[2] - 0.005).abs() < 1e-6);
        assert!((w.gripper.rpy[2] - 0.1).abs() < 1e-6);
        for _ in 0..100 {
            w.apply(&[0.2, 0.2, -0.2, 0.2, 0.2, 0.2, 1.0, 0.0]);
        }
        assert_eq!(
            w.gripper.pos,
            [WORKSPACE_MAX[0], WORKSPACE_MAX[1], WORKSPACE_MIN[2]]
        );
        assert_eq!(w.gripper.rpy, ANGLE_LIMITS);
        assert_eq!(w.steps, 101);
        // Not-finite values leave their axis alone.
        let before = w.gripper.pos;
        w.apply(&[f32::NAN, f32::INFINITY, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(w.gripper.pos, before);
    }

    /// Puts the TCP at the ball's centre, open.
    fn at_ball(kind: TaskKind, seed: u64) -> (World, usize) {
        let mut w = World::new(kind, seed);
        let ball = w.objects.len() - 1;
        w.gripper.pos = w.objects[ball].pos;
        (w, ball)
    }

    #[test]
    fn closing_around_an_object_grasps_it_opening_releases_it_and_it_falls() {
        let (mut w, ball) = at_ball(TaskKind::Place, 3);
        w.apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(w.gripper.held, Some(ball));
        for _ in 0..10 {
            w.apply(&[0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0]);
        }
        assert!((w.objects[ball].bottom() - 0.10).abs() < 1e-6, "carried up");
        w.apply(&still());
        assert_eq!(w.gripper.held, None, "released");
        let mut heights = vec![w.objects[ball].bottom()];
        for _ in 0..5 {
            w.apply(&still());
            heights.push(w.objects[ball].bottom());
        }
        assert!(heights.windows(2).all(|h| h[1] <= h[0]), "{heights:?}");
        assert!(
            heights[0] > 0.0 && heights[0] < 0.1,
            "falls over more than one step: {heights:?}"
        );
        assert_eq!(*heights.last().unwrap(), 0.0, "on the table");
        assert_eq!(w.objects[ball].fall_speed, 0.0);
    }

    #[test]
    fn closing_away_from_objects_grasps_nothing() {
        let (mut w, _) = at_ball(TaskKind::Pick, 3);
        w.gripper.pos[0] += GRASP_XY_M + 0.005;
        w.apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(w.gripper.held, None);
        // Already closed: moving onto the ball and staying closed does not grasp it either.
        w.apply(&[
            -(GRASP_XY_M as f32 + 0.005),
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ]);
        assert_eq!(w.gripper.held, None);
    }

    #[test]
    fn a_released_ball_over_a_box_lands_on_it() {
        let mut w = World::new(TaskKind::Place, 2);
        let ball = w.task.object;
        let target = w.task.target.unwrap();
        let top = w.objects[target].top();
        w.gripper.pos = w.objects[ball].pos;
        w.apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let b = w.objects[target].pos;
        w.gripper.pos = [b[0], b[1], top + 0.1];
        w.apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(!w.succeeded(), "held, not placed");
        for _ in 0..5 {
            w.apply(&still());
        }
        assert!((w.objects[ball].bottom() - top).abs() < 1e-9);
        assert!(w.succeeded());
        assert!(w.success_step.is_some());
    }

    #[test]
    fn each_criterion() {
        // Reach: within 2 cm of the surface.
        let mut w = World::new(TaskKind::Reach, 4);
        let o = w.object().clone();
        w.gripper.pos = [o.pos[0], o.pos[1], o.top() + 0.025];
        assert!(!w.succeeded());
        w.gripper.pos[2] = o.top() + 0.015;
        assert!(w.succeeded());
        // Pick: held and lifted 5 cm.
        let (mut w, ball) = at_ball(TaskKind::Pick, 6);
        w.task.object = ball;
        w.apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        w.apply(&[0.0, 0.0, 0.045, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(!w.succeeded());
        w.apply(&[0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(w.succeeded());
        assert_eq!(w.success_step, Some(3));
        assert!(w.done());
        // Terminate ends the episode, not successfully; so does the step limit.
        let mut w = World::new(TaskKind::Reach, 4);
        w.apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
        assert!(w.terminated && w.done() && w.success_step.is_none());
        let mut w = World::new(TaskKind::Reach, 4);
        w.gripper.pos = [0.3, 0.3, 0.4];
        for _ in 0..TaskKind::Reach.step_limit() {
            assert!(!w.done());
            w.apply(&still());
        }
        assert!(w.done() && w.success_step.is_none());
        // After the end nothing moves.
        let end = w.clone();
        w.apply(&[0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(w, end);
    }
}
