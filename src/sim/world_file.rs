//! World files: a tabletop layout written by hand (`sim:TASK,world=FILE`) instead of drawn from
//! a seed — the boxes, the ball, the gripper's start and the objects the task names. A layout a
//! field engineer wants to try (the red box at the edge of the reach, two boxes touching) is
//! one file, and every run of it starts from the same state.
//!
//! ```toml
//! [gripper]
//! tcp = [0.0, 0.40, 0.22]          # start of the TCP, m (optional)
//!
//! [[boxes]]
//! colour = "red"                   # red, blue, yellow, purple
//! centre = [0.10, 0.60]            # x, y on the table, m
//! size = [0.07, 0.07, 0.05]        # full extents, m (0.02 ..= 0.10 each)
//!
//! [ball]
//! colour = "green"                 # green, orange
//! centre = [-0.10, 0.55]
//!
//! [task]
//! object = "the red box"           # reach / pick: the object the goal names
//! target = "the blue box"          # place: the box the ball goes on
//! step_limit = 60                  # optional (the task's default otherwise)
//! ```
//!
//! Everything is checked before a world exists: unknown keys, colours and names, sizes,
//! positions outside the workspace, objects that overlap, a task naming what is not there. The
//! error names the file and the field (the camera SPEC's error, exit code 2).

use serde::Deserialize;

use super::task::{Task, TaskKind};
use super::world::{
    Gripper, Object, Shape, World, BALL_COLOURS, BALL_RADIUS_M, BOX_COLOURS, WORKSPACE_MAX,
    WORKSPACE_MIN,
};

/// The largest world file read, in bytes.
pub const MAX_WORLD_FILE_BYTES: u64 = 64 * 1024;
/// Most boxes on the table (one per box colour).
pub const MAX_BOXES: usize = BOX_COLOURS.len();
/// A box's full extent along each axis, m.
pub const BOX_SIZE_M: [f64; 2] = [0.02, 0.10];
/// The most steps a world file may give an episode.
pub const MAX_STEP_LIMIT: u64 = 10_000;
/// Where the gripper starts when the file does not say.
pub const DEFAULT_TCP: [f64; 3] = [0.0, 0.40, 0.23];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorldFile {
    #[serde(default)]
    gripper: Option<GripperEntry>,
    #[serde(default)]
    boxes: Vec<BoxEntry>,
    ball: BallEntry,
    task: TaskEntry,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GripperEntry {
    tcp: [f64; 3],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoxEntry {
    colour: String,
    centre: [f64; 2],
    size: [f64; 3],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BallEntry {
    colour: String,
    centre: [f64; 2],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskEntry {
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    step_limit: Option<u64>,
}

/// Reads and checks `path`, and builds the start state of `kind` it describes. The error says
/// `PATH: FIELD: reason`.
pub fn load(path: &std::path::Path, kind: TaskKind, seed: u64) -> Result<World, String> {
    let origin = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{origin}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{origin}: not a file"));
    }
    if meta.len() > MAX_WORLD_FILE_BYTES {
        return Err(format!(
            "{origin}: {} bytes; a world file is at most {MAX_WORLD_FILE_BYTES}",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: {e}"))?;
    parse(&text, kind, seed).map_err(|e| format!("{origin}: {e}"))
}

/// [`load`] on the file's text; the error says `FIELD: reason`.
pub fn parse(text: &str, kind: TaskKind, seed: u64) -> Result<World, String> {
    let file: WorldFile = toml::from_str(text).map_err(|e| {
        // toml's message spans several lines (a caret under the source); one line is enough.
        e.message().to_string()
    })?;
    build(&file, kind, seed)
}

fn finite_in(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{field}: {v} is outside {lo} ..= {hi}"))
    }
}

/// An (x, y) centre on the table inside the TCP's workspace (anything outside it could not be
/// reached).
fn check_centre(field: &str, c: [f64; 2]) -> Result<(), String> {
    finite_in(
        &format!("{field}[0] (x)"),
        c[0],
        WORKSPACE_MIN[0],
        WORKSPACE_MAX[0],
    )?;
    finite_in(
        &format!("{field}[1] (y)"),
        c[1],
        WORKSPACE_MIN[1],
        WORKSPACE_MAX[1],
    )
}

fn colour_of(
    field: &str,
    name: &str,
    table: &[(&'static str, [f64; 3])],
) -> Result<(&'static str, [f64; 3]), String> {
    table
        .iter()
        .find(|(c, _)| *c == name)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(c, _)| *c).collect();
            format!(
                "{field}: unknown colour `{name}` (one of {})",
                known.join(", ")
            )
        })
}

fn build(file: &WorldFile, kind: TaskKind, seed: u64) -> Result<World, String> {
    if file.boxes.len() > MAX_BOXES {
        return Err(format!(
            "boxes: {} boxes; at most {MAX_BOXES} (one per colour)",
            file.boxes.len()
        ));
    }
    let mut objects: Vec<Object> = Vec::new();
    for (i, b) in file.boxes.iter().enumerate() {
        let field = format!("boxes[{i}]");
        let (colour, rgb) = colour_of(&format!("{field}.colour"), &b.colour, &BOX_COLOURS)?;
        if objects.iter().any(|o| o.colour == colour) {
            return Err(format!(
                "{field}.colour: a second {colour} box (a goal could not tell them apart)"
            ));
        }
        check_centre(&format!("{field}.centre"), b.centre)?;
        for (a, axis) in ["x", "y", "z"].iter().enumerate() {
            finite_in(
                &format!("{field}.size[{a}] ({axis})"),
                b.size[a],
                BOX_SIZE_M[0],
                BOX_SIZE_M[1],
            )?;
        }
        let half = b.size.map(|s| s / 2.0);
        objects.push(Object {
            name: format!("the {colour} box"),
            colour,
            shape: Shape::Box { half },
            pos: [b.centre[0], b.centre[1], half[2]],
            rgb,
            fall_speed: 0.0,
            start_bottom: 0.0,
        });
    }
    let (colour, rgb) = colour_of("ball.colour", &file.ball.colour, &BALL_COLOURS)?;
    check_centre("ball.centre", file.ball.centre)?;
    objects.push(Object {
        name: "the ball".to_string(),
        colour,
        shape: Shape::Ball {
            radius: BALL_RADIUS_M,
        },
        pos: [file.ball.centre[0], file.ball.centre[1], BALL_RADIUS_M],
        rgb,
        fall_speed: 0.0,
        start_bottom: 0.0,
    });
    // Footprints (x, y rectangles; the ball's is its bounding square) must not overlap: the
    // world has no contact model, so overlapping objects would stand inside each other.
    for i in 0..objects.len() {
        for j in i + 1..objects.len() {
            let (a, b) = (&objects[i], &objects[j]);
            let (ha, hb) = (a.half(), b.half());
            let apart = (0..2).any(|k| (a.pos[k] - b.pos[k]).abs() >= ha[k] + hb[k]);
            if !apart {
                return Err(format!(
                    "{}: overlaps {} on the table (move a centre)",
                    field_of(&objects, i),
                    b.name
                ));
            }
        }
    }
    let tcp = file.gripper.as_ref().map_or(DEFAULT_TCP, |g| g.tcp);
    for (a, axis) in ["x", "y", "z"].iter().enumerate() {
        finite_in(
            &format!("gripper.tcp[{a}] ({axis})"),
            tcp[a],
            WORKSPACE_MIN[a],
            WORKSPACE_MAX[a],
        )?;
    }
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let find = |field: &str, name: &str| {
        objects.iter().position(|o| o.name == name).ok_or_else(|| {
            format!(
                "{field}: no object is `{name}` (there are {})",
                names.join(", ")
            )
        })
    };
    let ball = objects.len() - 1;
    let t = &file.task;
    let task = match kind {
        TaskKind::Reach | TaskKind::Pick => {
            if t.target.is_some() {
                return Err(format!(
                    "task.target: only a place task has a target ({kind} names task.object)"
                ));
            }
            let name = t
                .object
                .as_deref()
                .ok_or_else(|| format!("task.object: missing (which object to {kind})"))?;
            let object = find("task.object", name)?;
            let verb = if kind == TaskKind::Reach {
                "reach"
            } else {
                "pick up"
            };
            Task {
                kind,
                object,
                target: None,
                goal: format!("{verb} {}", objects[object].name),
            }
        }
        TaskKind::Place => {
            if let Some(o) = t.object.as_deref().filter(|o| *o != "the ball") {
                return Err(format!("task.object: `{o}`; a place task moves the ball"));
            }
            let name = t
                .target
                .as_deref()
                .ok_or_else(|| "task.target: missing (the box to place the ball on)".to_string())?;
            let target = find("task.target", name)?;
            if target == ball {
                return Err("task.target: the ball cannot go on itself; name a box".into());
            }
            Task {
                kind,
                object: ball,
                target: Some(target),
                goal: format!("place the ball on {}", objects[target].name),
            }
        }
    };
    let step_limit = match t.step_limit {
        None => kind.step_limit(),
        Some(n) if (1..=MAX_STEP_LIMIT).contains(&n) => n,
        Some(n) => return Err(format!("task.step_limit: {n}; give 1 ..= {MAX_STEP_LIMIT}")),
    };
    let gripper = Gripper {
        pos: tcp,
        rpy: [0.0; 3],
        opening: 1.0,
        held: None,
        grip_offset: [0.0; 3],
    };
    Ok(World::from_start(seed, task, objects, gripper, step_limit))
}

/// The file's field of object `i` (boxes first, the ball last).
fn field_of(objects: &[Object], i: usize) -> String {
    if i + 1 == objects.len() {
        "ball.centre".into()
    } else {
        format!("boxes[{i}].centre")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[gripper]
tcp = [0.0, 0.40, 0.22]

[[boxes]]
colour = "red"
centre = [0.10, 0.60]
size = [0.07, 0.07, 0.05]

[[boxes]]
colour = "blue"
centre = [-0.12, 0.70]
size = [0.06, 0.06, 0.04]

[ball]
colour = "green"
centre = [-0.10, 0.50]

[task]
object = "the red box"
target = "the blue box"
"#;

    fn without_target(text: &str) -> String {
        text.replace("target = \"the blue box\"\n", "")
    }

    #[test]
    fn a_good_file_builds_the_world_it_describes() {
        let w = parse(&without_target(GOOD), TaskKind::Pick, 7).unwrap();
        assert_eq!(w.objects.len(), 3);
        assert_eq!(w.task.goal, "pick up the red box");
        assert_eq!(w.objects[0].pos, [0.10, 0.60, 0.025]);
        assert_eq!(w.gripper.pos, [0.0, 0.40, 0.22]);
        assert_eq!(w.step_limit, TaskKind::Pick.step_limit());
        let place = parse(
            &GOOD.replace("object = \"the red box\"\n", ""),
            TaskKind::Place,
            0,
        )
        .unwrap();
        assert_eq!(place.task.goal, "place the ball on the blue box");
        // Replaying starts from the file's layout, not a seed's.
        let mut w2 = w.clone();
        w2.apply(&[0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(w2.replay(0).gripper.pos, [0.0, 0.40, 0.22]);
        assert_eq!(w2.replay(0).objects, w.objects);
    }

    #[test]
    fn the_expert_solves_a_file_world() {
        for kind in TaskKind::ALL {
            let text = match kind {
                TaskKind::Place => GOOD.replace("object = \"the red box\"\n", ""),
                _ => without_target(GOOD),
            };
            let mut w = parse(&text, kind, 0).unwrap();
            while !w.done() {
                let a = super::super::expert::next_action(&w);
                w.apply(&a);
            }
            assert!(w.success_step.is_some(), "{kind}");
        }
    }

    #[test]
    fn nonsense_is_refused_naming_the_field() {
        let reach = without_target(GOOD);
        let cases: Vec<(String, &str)> = vec![
            (
                reach.replace("\"red\"", "\"pink\""),
                "boxes[0].colour: unknown colour `pink`",
            ),
            (
                reach.replace("\"blue\"", "\"red\""),
                "boxes[1].colour: a second red box",
            ),
            (
                reach.replace("[0.10, 0.60]", "[0.9, 0.60]"),
                "boxes[0].centre[0] (x)",
            ),
            (
                reach.replace("[0.10, 0.60]", "[0.10, nan]"),
                "boxes[0].centre[1] (y)",
            ),
            (
                reach.replace("[0.07, 0.07, 0.05]", "[0.07, 0.5, 0.05]"),
                "boxes[0].size[1] (y)",
            ),
            (
                reach.replace("[-0.10, 0.50]", "[0.11, 0.61]"),
                "boxes[0].centre: overlaps the ball",
            ),
            (
                reach.replace("[0.0, 0.40, 0.22]", "[0.0, 0.40, 2.0]"),
                "gripper.tcp[2] (z)",
            ),
            (
                reach.replace("the red box", "the pink box"),
                "task.object: no object is `the pink box`",
            ),
            (
                reach.replace("object = \"the red box\"\n", ""),
                "task.object: missing",
            ),
            (GOOD.to_string(), "task.target: only a place task"),
            (
                reach.replace("[task]", "[task]\nstep_limit = 0"),
                "task.step_limit: 0",
            ),
            (
                reach.replace("[task]", "[task]\nspeed = 3"),
                "unknown field `speed`",
            ),
            (
                reach.replace("[ball]\ncolour = \"green\"\ncentre = [-0.10, 0.50]\n", ""),
                "missing field `ball`",
            ),
            ("this is not toml".to_string(), ""),
        ];
        for (text, want) in cases {
            let err = parse(&text, TaskKind::Reach, 0).unwrap_err();
            assert!(err.contains(want), "want `{want}` in `{err}`");
        }
        let err = parse(
            &reach.replace(
                "object = \"the red box\"",
                "object = \"the ball\"\ntarget = \"the ball\"",
            ),
            TaskKind::Place,
            0,
        )
        .unwrap_err();
        assert!(
            err.contains("task.target: the ball cannot go on itself"),
            "{err}"
        );
    }
}
