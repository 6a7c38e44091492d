//! A scripted expert with privileged state: it reads the world's true poses and answers the next
//! action in the wire's layout (dx, dy, dz, droll, dpitch, dyaw, gripper, terminate). It keeps
//! no state of its own, so it can take over any world mid-episode. It moves at most
//! [`MAX_STEP_M`] per axis per step, inside the dev board's safety limits.

use super::task::TaskKind;
use super::world::{Object, World, WORKSPACE_MIN};

/// The largest translation per axis per action.
pub const MAX_STEP_M: f64 = 0.02;
/// Close enough to a waypoint to act there.
const ARRIVED_M: f64 = 0.004;
/// How high above an object's top the fingertips travel before descending onto it.
const CLEARANCE_M: f64 = 0.05;
/// Where the ball's bottom is released above the target box's top.
const RELEASE_ABOVE_M: f64 = 0.015;

/// Open, standing still: the do-nothing policy's action.
pub const HOLD_STILL: [f32; 8] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];

fn action(delta: [f64; 3], gripper: f64) -> [f32; 8] {
    [
        delta[0] as f32,
        delta[1] as f32,
        delta[2] as f32,
        0.0,
        0.0,
        0.0,
        gripper as f32,
        0.0,
    ]
}

/// The step from `from` toward `to`, each axis clamped to ±[`MAX_STEP_M`].
fn toward(from: [f64; 3], to: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|a| (to[a] - from[a]).clamp(-MAX_STEP_M, MAX_STEP_M))
}

fn horizontal(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (dx, dy) = (a[0] - b[0], a[1] - b[1]);
    (dx * dx + dy * dy).sqrt()
}

fn arrived(a: [f64; 3], b: [f64; 3]) -> bool {
    (0..3).all(|i| (a[i] - b[i]).abs() <= ARRIVED_M)
}

/// Moves `tcp` to `goal` the way a careful arm does: up to `safe_z` first while far from it
/// horizontally, across, then straight down.
fn approach(tcp: [f64; 3], goal: [f64; 3], safe_z: f64, gripper: f64) -> [f32; 8] {
    let far = horizontal(tcp, goal) > ARRIVED_M;
    let target = if far {
        [goal[0], goal[1], safe_z.max(goal[2])]
    } else {
        goal
    };
    // Cross only once high enough; rise first.
    let mut d = toward(tcp, target);
    if far && tcp[2] < safe_z - ARRIVED_M {
        d[0] = 0.0;
        d[1] = 0.0;
    }
    action(d, gripper)
}

/// The next action of a pick of `o`: open, hover, descend, close. `None` once it is held.
fn pick(world: &World, index: usize, o: &Object) -> Option<[f32; 8]> {
    let g = &world.gripper;
    if g.held == Some(index) {
        return None;
    }
    if g.held.is_some() || g.is_closed() {
        // Holding something else, or closed on nothing: open where it is.
        return Some(action([0.0; 3], 1.0));
    }
    let grasp = [o.pos[0], o.pos[1], o.pos[2].max(WORKSPACE_MIN[2])];
    if arrived(g.pos, grasp) {
        return Some(action([0.0; 3], 0.0));
    }
    let safe_z = world.objects.iter().map(|p| p.top()).fold(0.0, f64::max) + CLEARANCE_M;
    Some(approach(g.pos, grasp, safe_z, 1.0))
}

/// The expert's next action for the world's task.
pub fn next_action(world: &World) -> [f32; 8] {
    let g = &world.gripper;
    let index = world.task.object;
    let o = world.object();
    match world.task.kind {
        TaskKind::Reach => {
            let goal = [o.pos[0], o.pos[1], o.top() + 0.01];
            let safe_z = o.top() + CLEARANCE_M;
            approach(g.pos, goal, safe_z, 1.0)
        }
        TaskKind::Pick => pick(world, index, o).unwrap_or_else(|| {
            // Held: lift straight up.
            action([0.0, 0.0, MAX_STEP_M], 0.0)
        }),
        TaskKind::Place => {
            let Some(b) = world.task.target.and_then(|t| world.objects.get(t)) else {
                return HOLD_STILL;
            };
            if let Some(a) = pick(world, index, o) {
                if o.fall_speed > 0.0 {
                    // Released and still falling: wait.
                    return HOLD_STILL;
                }
                return a;
            }
            // Held: carry it over the box and release it just above the top.
            let off = g.grip_offset;
            let half = o.half()[2];
            let release = [
                b.pos[0] - off[0],
                b.pos[1] - off[1],
                b.top() + RELEASE_ABOVE_M + half - off[2],
            ];
            if arrived(g.pos, release) {
                return action([0.0; 3], 1.0);
            }
            let tallest = world
                .objects
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != index)
                .map(|(_, p)| p.top())
                .fold(0.0, f64::max);
            let safe_z = tallest + CLEARANCE_M + 2.0 * half - off[2];
            approach(g.pos, release, safe_z, 0.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: TaskKind, seed: u64) -> World {
        let mut w = World::new(kind, seed);
        while !w.done() {
            let a = next_action(&w);
            w.apply(&a);
        }
        w
    }

    #[test]
    fn the_expert_solves_every_task_and_doing_nothing_solves_none() {
        for kind in TaskKind::ALL {
            let solved = (0..40)
                .filter(|&s| run(kind, s).success_step.is_some())
                .count();
            assert!(solved >= 38, "{kind}: {solved}/40");
            let idle = (0..40)
                .filter(|&s| {
                    let mut w = World::new(kind, s);
                    while !w.done() {
                        w.apply(&HOLD_STILL);
                    }
                    w.success_step.is_some()
                })
                .count();
            assert_eq!(idle, 0, "{kind}");
        }
    }

    #[test]
    fn expert_actions_stay_inside_the_dev_boards_limits() {
        for kind in TaskKind::ALL {
            let mut w = World::new(kind, 11);
            while !w.done() {
                let a = next_action(&w);
                assert!(a[..3].iter().all(|v| v.abs() <= 0.02 + 1e-6), "{a:?}");
                assert!((0.0..=1.0).contains(&a[6]));
                w.apply(&a);
            }
        }
    }
}
