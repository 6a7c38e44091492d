//! SpatialQA questions from ground truth.
//!
//! A [`Frame`] is a colour image, depth registered to it, a label image (which object each
//! colour pixel shows) and what is known about each object. Three sources fill it:
//! - the simulated world ([`Frame::from_world`]): a world in its start state
//!   (`World::new(task, seed)`) with the gripper moved to a seeded pose (grasping, touching,
//!   hovering above an object, or elsewhere), rendered by the sim camera; everything is known,
//!   so every category is asked;
//! - the synthetic tabletop (`camera::synthetic`): the renderer's labels, the boxes' and the
//!   ball's true sizes and positions; no gripper state, so no reaching questions;
//! - a recording with a calibration and an object annotation ([`Annotation`]): masks are the
//!   annotated boxes (the paper's rule for object depth), sizes and shapes only where annotated.
//!
//! The registered depth under an object's mask gives its depth (the paper's four values:
//! centre, max and min as the 95th and 5th percentiles, mean). Point and object depths and
//! proximity are answered through Depth API turns, with the value the runtime's lookup
//! (`model::depth_api`) returns for the coordinates written. A category whose ground truth a
//! source lacks is not asked.

use crate::model::depth_api;
use crate::rgbd::{DepthMm, RgbImage};
use crate::sim::render::{LABEL_BACKGROUND, LABEL_GRIPPER};
use crate::sim::world::{Shape, WORKSPACE_MAX, WORKSPACE_MIN};
use crate::sim::{task::REACH_TOLERANCE_M, Rng, World};

use super::{level_and_bench, Kind, Question, Turn};

/// An object's shape class (counting and existence ask about boxes and balls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeClass {
    Box,
    Ball,
}

/// What is known about one object. Positions and sizes are in table coordinates: x to the
/// right, y away from the camera, z up, metres.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectTruth {
    /// How questions name it: "the red box".
    pub name: String,
    pub colour: Option<String>,
    pub shape: Option<ShapeClass>,
    pub centre_m: Option<[f64; 3]>,
    /// Full extents (x, y, z).
    pub size_m: Option<[f64; 3]>,
}

/// A scene with its ground truth: colour, depth registered to it, what each colour pixel shows
/// (an index into `objects`, [`LABEL_GRIPPER`] or [`LABEL_BACKGROUND`]) and what is known.
pub struct Frame {
    pub rgb: RgbImage,
    pub depth: DepthMm,
    pub labels: Vec<u8>,
    pub objects: Vec<ObjectTruth>,
    /// The world's state, where the scene is the simulated world (the gripper's pose and the
    /// reach and grasp criteria: reaching and "is the gripper above" questions).
    pub world: Option<World>,
    /// The background is the tabletop scene's table and wall (the depth description says so).
    pub tabletop: bool,
    /// Existence questions: names known to be absent from the scene. `None`: the colour and
    /// shape vocabulary of the tabletop worlds decides.
    pub absent: Option<Vec<String>>,
}

impl Frame {
    /// A scene without a world: the objects as given, no table or wall assumed, existence from
    /// the tabletop vocabulary (set `tabletop` and `absent` where the source knows better).
    pub fn without_world(
        rgb: RgbImage,
        depth: DepthMm,
        labels: Vec<u8>,
        objects: Vec<ObjectTruth>,
    ) -> Self {
        Self {
            rgb,
            depth,
            labels,
            objects,
            world: None,
            tabletop: false,
            absent: None,
        }
    }

    /// A rendered simulated world: everything known.
    pub fn from_world(world: World, rgb: RgbImage, depth: DepthMm, labels: Vec<u8>) -> Self {
        let objects = world
            .objects
            .iter()
            .map(|o| ObjectTruth {
                name: o.name.clone(),
                colour: Some(o.colour.to_string()),
                shape: Some(match o.shape {
                    Shape::Box { .. } => ShapeClass::Box,
                    Shape::Ball { .. } => ShapeClass::Ball,
                }),
                centre_m: Some(o.pos),
                size_m: Some(o.half().map(|h| 2.0 * h)),
            })
            .collect();
        Self {
            rgb,
            depth,
            labels,
            objects,
            world: Some(world),
            tabletop: true,
            absent: None,
        }
    }
}

/// How the gripper was posed (for the record; the answers follow the true state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pose {
    Grasp,
    Touch,
    Hover,
    Free,
}

impl Pose {
    pub fn name(self) -> &'static str {
        match self {
            Pose::Grasp => "grasp",
            Pose::Touch => "touch",
            Pose::Hover => "hover",
            Pose::Free => "free",
        }
    }
}

/// Moves the gripper (open) to a seeded pose around object `world.objects[target]`; returns
/// the pose drawn.
pub fn pose_gripper(world: &mut World, target: usize, rng: &mut Rng) -> Pose {
    let r = rng.unit();
    let Some(o) = world.objects.get(target).cloned() else {
        return Pose::Free;
    };
    let h = o.half();
    let (pose, pos) = if r < 0.3 {
        (
            Pose::Grasp,
            [
                o.pos[0] + rng.range(-0.015, 0.015),
                o.pos[1] + rng.range(-0.015, 0.015),
                o.pos[2] + rng.range(-0.01, 0.01),
            ],
        )
    } else if r < 0.5 {
        (
            Pose::Touch,
            [
                o.pos[0] + rng.range(-h[0], h[0]),
                o.pos[1] + rng.range(-h[1], h[1]),
                o.top() + rng.range(0.0, 0.018),
            ],
        )
    } else if r < 0.8 {
        (
            Pose::Hover,
            [
                o.pos[0] + rng.range(-h[0], h[0]),
                o.pos[1] + rng.range(-h[1], h[1]),
                o.top() + rng.range(0.035, 0.15),
            ],
        )
    } else {
        (
            Pose::Free,
            [
                rng.range(-0.25, 0.25),
                rng.range(0.35, 0.85),
                rng.range(0.05, 0.3),
            ],
        )
    };
    let g = &mut world.gripper;
    for a in 0..3 {
        g.pos[a] = pos[a].clamp(WORKSPACE_MIN[a], WORKSPACE_MAX[a]);
    }
    g.rpy = [0.0, 0.0, rng.range(-0.5, 0.5)];
    g.opening = 1.0;
    g.held = None;
    pose
}

/// One object as the colour image shows it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub index: usize,
    pub name: String,
    pub pixels: usize,
    /// Mask bounding box `[u0, v0, u1, v1]` (inclusive).
    pub bbox: [usize; 4],
    /// The mask pixel nearest the box's centre, as Depth API text and its looked-up value.
    pub centre: Option<(String, String, u32)>,
    /// Centre, max (95th percentile), min (5th percentile) and mean depth, mm.
    pub depth: Option<[u32; 4]>,
    /// Centre column as a fraction of the width.
    pub u_frac: f64,
}

/// Fewer mask pixels than this (at 128×96; scaled with the frame's area) and an object counts
/// as not seen.
const MIN_PIXELS_128: f64 = 8.0;

fn coord_text(u: usize, n: usize) -> String {
    format!("{:.2}", (u as f64 + 0.5) / n as f64)
}

/// The Depth API's answer for the coordinates as written, and the pixel they land on.
fn lookup(depth: &DepthMm, x: &str, y: &str) -> Option<((usize, usize), u32)> {
    let calls = depth_api::parse_calls(&format!("Depth({x},{y})"));
    let answer = depth_api::answer_calls(&calls, depth, 0)
        .into_iter()
        .next()?;
    Some((answer.pixel?, answer.mm?))
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    let i = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Each object's mask, bounding box, centre and depth values.
pub fn seen_objects(frame: &Frame) -> Vec<Seen> {
    let (w, h) = (frame.rgb.width, frame.rgb.height);
    let min_pixels = (MIN_PIXELS_128 * (w * h) as f64 / (128.0 * 96.0)).max(1.0) as usize;
    let mut out = Vec::new();
    for (i, o) in frame.objects.iter().enumerate() {
        let mut pixels = Vec::new();
        for v in 0..h {
            for u in 0..w {
                if frame.labels.get(v * w + u).copied() == Some(i as u8) {
                    pixels.push((u, v));
                }
            }
        }
        if pixels.len() < min_pixels {
            out.push(Seen {
                index: i,
                name: o.name.clone(),
                pixels: pixels.len(),
                bbox: [0; 4],
                centre: None,
                depth: None,
                u_frac: 0.5,
            });
            continue;
        }
        let mut bbox = [usize::MAX, usize::MAX, 0, 0];
        for &(u, v) in &pixels {
            bbox = [
                bbox[0].min(u),
                bbox[1].min(v),
                bbox[2].max(u),
                bbox[3].max(v),
            ];
        }
        let cx = (bbox[0] + bbox[2]) as f64 / 2.0;
        let cy = (bbox[1] + bbox[3]) as f64 / 2.0;
        // The mask pixel nearest the box's centre whose written coordinates land on the mask.
        let mut order = pixels.clone();
        order.sort_by(|a, b| {
            let da = (a.0 as f64 - cx).powi(2) + (a.1 as f64 - cy).powi(2);
            let db = (b.0 as f64 - cx).powi(2) + (b.1 as f64 - cy).powi(2);
            da.total_cmp(&db).then(a.cmp(b))
        });
        let centre = order.iter().find_map(|&(u, v)| {
            let (x, y) = (coord_text(u, w), coord_text(v, h));
            let ((pu, pv), mm) = lookup(&frame.depth, &x, &y)?;
            (frame.labels.get(pv * w + pu).copied() == Some(i as u8)).then_some((x, y, mm))
        });
        let mut values: Vec<u32> = pixels
            .iter()
            .filter_map(|&(u, v)| frame.depth.get(u, v).filter(|&mm| mm > 0))
            .collect();
        values.sort_unstable();
        let depth = match (&centre, values.is_empty()) {
            (Some((_, _, c)), false) => {
                let mean = values.iter().map(|&v| u64::from(v)).sum::<u64>() / values.len() as u64;
                Some([
                    *c,
                    percentile(&values, 95.0),
                    percentile(&values, 5.0),
                    mean as u32,
                ])
            }
            _ => None,
        };
        out.push(Seen {
            index: i,
            name: o.name.clone(),
            pixels: pixels.len(),
            bbox,
            centre,
            depth,
            u_frac: cx / w as f64,
        });
    }
    out
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// A question under construction: category, text, final answer, kind and conversation.
struct Draft {
    category: &'static str,
    question: String,
    answer: String,
    kind: Kind,
    choices: Vec<String>,
    tolerance: Option<f64>,
    /// The turns after the first human one.
    turns: Vec<Turn>,
}

impl Draft {
    fn direct(
        category: &'static str,
        question: String,
        reply: String,
        answer: &str,
        kind: Kind,
    ) -> Self {
        Self {
            category,
            question,
            answer: answer.to_string(),
            kind,
            choices: Vec::new(),
            tolerance: None,
            turns: vec![Turn::gpt(reply)],
        }
    }
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len())]
}

/// A pixel with depth, as written coordinates and the API's value; `on` restricts it to the
/// pixels of that label.
fn sample_point(frame: &Frame, rng: &mut Rng, on: Option<u8>) -> Option<(String, String, u32)> {
    let (w, h) = (frame.rgb.width, frame.rgb.height);
    for _ in 0..200 {
        let (u, v) = (rng.below(w), rng.below(h));
        if let Some(label) = on {
            if frame.labels.get(v * w + u).copied() != Some(label) {
                continue;
            }
        }
        let (x, y) = (coord_text(u, w), coord_text(v, h));
        if let Some((_, mm)) = lookup(&frame.depth, &x, &y) {
            return Some((x, y, mm));
        }
    }
    None
}

fn point_depth(frame: &Frame, rng: &mut Rng, seen: &[Seen]) -> Option<Draft> {
    let visible: Vec<&Seen> = seen.iter().filter(|s| s.depth.is_some()).collect();
    let on = if !visible.is_empty() && rng.unit() < 0.5 {
        Some(pick(rng, &visible).index as u8)
    } else {
        None
    };
    let (x, y, mm) = sample_point(frame, rng, on)?;
    let question = pick(
        rng,
        &[
            "What is the depth value of point <{x},{y}>?",
            "Please provide the depth value of point <{x},{y}>.",
            "How far from the camera is point <{x},{y}>?",
        ],
    )
    .replace("{x}", &x)
    .replace("{y}", &y);
    Some(Draft {
        category: "point_depth",
        question,
        answer: mm.to_string(),
        kind: Kind::DepthMm,
        choices: Vec::new(),
        tolerance: Some(tenth(f64::from(mm) * 0.02)),
        turns: vec![
            Turn::gpt(format!(
                "The depth value of point({x},{y}) is Depth({x},{y})."
            )),
            Turn::human(format!("API: Depth({x},{y})={mm}")),
            Turn::gpt(format!("The depth value of point({x},{y}) is {mm} mm.")),
        ],
    })
}

fn object_depth(rng: &mut Rng, seen: &[Seen]) -> Option<Draft> {
    let visible: Vec<&Seen> = seen.iter().filter(|s| s.depth.is_some()).collect();
    if visible.is_empty() {
        return None;
    }
    let s = pick(rng, &visible);
    let (x, y, _) = s.centre.clone()?;
    let [c, max, min, mean] = s.depth?;
    let name = &s.name;
    let (question, last) = if rng.unit() < 0.5 {
        (
            format!("What is the depth of {name}?"),
            format!(
                "{} has a center depth of {c} mm, with max depth {max}, min depth {min}, and mean depth {mean}.",
                capital(name)
            ),
        )
    } else {
        (
            format!("How far is {name} from the camera?"),
            format!("{} is {c} mm from the camera.", capital(name)),
        )
    };
    Some(Draft {
        category: "object_depth",
        question,
        answer: c.to_string(),
        kind: Kind::DepthMm,
        choices: Vec::new(),
        // Any point of the object is an answer within its depth extent.
        tolerance: Some(tenth(
            (f64::from(max.saturating_sub(min)) / 2.0).max(f64::from(c) * 0.03),
        )),
        turns: vec![
            Turn::gpt(format!("{} is at Depth({x},{y}).", capital(name))),
            Turn::human(format!("API: Depth({x},{y})={c}")),
            Turn::gpt(last),
        ],
    })
}

/// Rounded to 0.1 mm (tolerances).
fn tenth(mm: f64) -> f64 {
    (mm * 10.0).round() / 10.0
}

/// Rounded to 10 mm, for descriptions.
fn about(mm: u32) -> u32 {
    (mm + 5) / 10 * 10
}

fn depth_description(frame: &Frame, seen: &[Seen]) -> Option<Draft> {
    let (w, h) = (frame.rgb.width, frame.rgb.height);
    let mut by_depth: Vec<(&Seen, u32)> = seen
        .iter()
        .filter_map(|s| s.depth.map(|d| (s, d[0])))
        .collect();
    if by_depth.len() < 2 {
        return None;
    }
    by_depth.sort_by_key(|(_, d)| *d);
    // The table at the bottom centre and at the top of the table (the background's nearest
    // and farthest table rows in the middle column).
    let column = w / 2;
    let mut table: Vec<u32> = (0..h)
        .filter(|&v| frame.labels.get(v * w + column).copied() == Some(LABEL_BACKGROUND))
        .filter_map(|v| frame.depth.get(column, v).filter(|&mm| mm > 0 && mm < 1500))
        .collect();
    table.sort_unstable();
    let (nearest, nd) = by_depth[0];
    let (farthest, fd) = by_depth[by_depth.len() - 1];
    let gripper = (0..w * h)
        .filter(|&i| frame.labels.get(i).copied() == Some(LABEL_GRIPPER))
        .filter_map(|i| frame.depth.get(i % w, i / w).filter(|&mm| mm > 0))
        .min();
    let objects = format!(
        "{} is the closest object, at about {} mm; {} is the farthest, at about {} mm.",
        capital(&nearest.name),
        about(nd),
        farthest.name,
        about(fd)
    );
    let mut text = if frame.tabletop {
        let (near, far) = (*table.first()?, *table.last()?);
        format!(
            "The depth map shows a table top from about {} mm at the bottom of the image to about {} mm further up, with a wall behind it. {objects}",
            about(near),
            about(far),
        )
    } else {
        objects
    };
    if let Some(g) = gripper {
        text.push_str(&format!(" The gripper is about {} mm away.", about(g)));
    }
    Some(Draft::direct(
        "depth_description",
        "Describe the depth map.".into(),
        text,
        &nearest.name,
        Kind::Text,
    ))
}

fn proximity(frame: &Frame, rng: &mut Rng, seen: &[Seen]) -> Option<Draft> {
    let visible: Vec<&Seen> = seen.iter().filter(|s| s.depth.is_some()).collect();
    let objects = visible.len() >= 2 && rng.unit() < 0.5;
    let (a, b) = if objects {
        let i = rng.below(visible.len());
        let mut j = rng.below(visible.len() - 1);
        if j >= i {
            j += 1;
        }
        let (sa, sb) = (visible[i], visible[j]);
        let (ax, ay, ad) = sa.centre.clone()?;
        let (bx, by, bd) = sb.centre.clone()?;
        ((sa.name.clone(), ax, ay, ad), (sb.name.clone(), bx, by, bd))
    } else {
        let (ax, ay, ad) = sample_point(frame, rng, None)?;
        let (bx, by, bd) = sample_point(frame, rng, None)?;
        (
            (format!("point({ax},{ay})"), ax, ay, ad),
            (format!("point({bx},{by})"), bx, by, bd),
        )
    };
    if a.3.abs_diff(b.3) < 20 || a.0 == b.0 {
        return None;
    }
    let closer_asked = rng.unit() < 0.6;
    let (word, pick_a) = if closer_asked {
        ("closer to", a.3 < b.3)
    } else {
        ("farther from", a.3 > b.3)
    };
    let show = |n: &str| -> String {
        if objects {
            n.to_string()
        } else {
            n.replace("point(", "point <").replace(')', ">")
        }
    };
    let question = format!(
        "Which is {word} the camera, {} or {}?",
        show(&a.0),
        show(&b.0)
    );
    let winner = if pick_a { &a.0 } else { &b.0 };
    // The reply restates the two values in the order they were asked, then compares them: each
    // value is a copy from a fixed API line, and the comparison is one token (`<` or `>`) with
    // both values already written.
    let cmp = if a.3 < b.3 { "<" } else { ">" };
    Some(Draft {
        category: "proximity",
        question,
        answer: winner.clone(),
        kind: Kind::Choice,
        choices: vec![a.0.clone(), b.0.clone()],
        tolerance: None,
        turns: vec![
            Turn::gpt(format!(
                "{} is at Depth({},{}), and {} is at Depth({},{}).",
                capital(&a.0),
                a.1,
                a.2,
                b.0,
                b.1,
                b.2
            )),
            Turn::human(format!(
                "API: Depth({},{})={}\nAPI: Depth({},{})={}",
                a.1, a.2, a.3, b.1, b.2, b.3
            )),
            Turn::gpt(format!(
                "Since {} {cmp} {}, {winner} is {word} the camera.",
                a.3, b.3
            )),
        ],
    })
}

fn counting(rng: &mut Rng, frame: &Frame, seen: &[Seen]) -> Option<Draft> {
    let (w, h) = (frame.rgb.width, frame.rgb.height);
    let min_pixels = (MIN_PIXELS_128 * (w * h) as f64 / (128.0 * 96.0)).max(1.0) as usize;
    // A partly hidden object makes the count ambiguous: no counting question then.
    if seen.iter().any(|s| s.pixels > 0 && s.pixels < min_pixels) {
        return None;
    }
    let shape = |s: &Seen| frame.objects.get(s.index).and_then(|o| o.shape);
    let shapes_known = seen.iter().all(|s| shape(s).is_some());
    let boxes = seen
        .iter()
        .filter(|s| s.pixels > 0 && shape(s) == Some(ShapeClass::Box))
        .count();
    let all = seen.iter().filter(|s| s.pixels > 0).count();
    let (question, n, noun) = if rng.unit() < 0.6 {
        if !shapes_known {
            return None;
        }
        ("How many boxes are there in the image?", boxes, "boxes")
    } else if frame.tabletop {
        ("How many objects are on the table?", all, "objects")
    } else {
        (
            "How many of the named objects are in the image?",
            all,
            "objects",
        )
    };
    let reply = if n == 1 {
        format!(
            "There is 1 {}.",
            noun.trim_end_matches("es").trim_end_matches('s')
        )
    } else {
        format!("There are {n} {noun}.")
    };
    Some(Draft::direct(
        "counting",
        question.into(),
        reply,
        &n.to_string(),
        Kind::Count,
    ))
}

const BOX_COLOURS: [&str; 4] = ["red", "blue", "yellow", "purple"];
const BALL_COLOURS: [&str; 2] = ["green", "orange"];

fn existence(rng: &mut Rng, frame: &Frame, seen: &[Seen]) -> Option<Draft> {
    if let Some(absent) = &frame.absent {
        return existence_by_name(rng, seen, absent);
    }
    let ball = rng.unit() < 0.25;
    let colours: &[&str] = if ball { &BALL_COLOURS } else { &BOX_COLOURS };
    let noun = if ball { "ball" } else { "box" };
    let shape = if ball {
        ShapeClass::Ball
    } else {
        ShapeClass::Box
    };
    let is = |s: &Seen, c: &str| {
        frame
            .objects
            .get(s.index)
            .is_some_and(|o| o.colour.as_deref() == Some(c) && o.shape == Some(shape))
    };
    let present = |c: &str| seen.iter().any(|s| s.pixels > 0 && is(s, c));
    let hidden = |c: &str| seen.iter().any(|s| s.pixels == 0 && is(s, c));
    let want_yes = rng.unit() < 0.5;
    let candidates: Vec<&str> = colours
        .iter()
        .copied()
        .filter(|c| present(c) == want_yes && !hidden(c))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let c = *pick(rng, &candidates);
    let article = if c.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    let reply = if want_yes {
        format!("Yes, there is {article} {c} {noun}.")
    } else {
        format!("No, there is no {c} {noun}.")
    };
    Some(Draft::direct(
        "existence",
        format!("Is there {article} {c} {noun} in the image?"),
        reply,
        yes_no(want_yes),
        Kind::YesNo,
    ))
}

/// Existence from an annotation: an annotated object in view (yes) or a name annotated as
/// absent (no), half each where both exist.
fn existence_by_name(rng: &mut Rng, seen: &[Seen], absent: &[String]) -> Option<Draft> {
    let present: Vec<&str> = seen
        .iter()
        .filter(|s| s.pixels > 0)
        .map(|s| s.name.as_str())
        .collect();
    let want_yes = rng.unit() < 0.5;
    let (names, yes): (Vec<&str>, bool) = match (want_yes, present.is_empty(), absent.is_empty()) {
        (_, true, true) => return None,
        (true, false, _) | (false, false, true) => (present, true),
        _ => (absent.iter().map(String::as_str).collect(), false),
    };
    let name = *pick(rng, &names);
    let reply = if yes {
        format!("Yes, there is {name} in the image.")
    } else {
        format!("No, there is no {} in the image.", strip_article(name))
    };
    Some(Draft::direct(
        "existence",
        format!("Is there {} in the image?", with_indefinite(name)),
        reply,
        yes_no(yes),
        Kind::YesNo,
    ))
}

/// "the red box" → "red box".
fn strip_article(name: &str) -> &str {
    name.strip_prefix("the ").unwrap_or(name)
}

/// "the red box" → "a red box", "the orange ball" → "an orange ball".
fn with_indefinite(name: &str) -> String {
    let bare = strip_article(name);
    let article = if bare.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {bare}")
}

fn two_visible<'a>(rng: &mut Rng, seen: &'a [Seen]) -> Option<(&'a Seen, &'a Seen)> {
    let visible: Vec<&Seen> = seen.iter().filter(|s| s.depth.is_some()).collect();
    if visible.len() < 2 {
        return None;
    }
    let i = rng.below(visible.len());
    let mut j = rng.below(visible.len() - 1);
    if j >= i {
        j += 1;
    }
    Some((visible[i], visible[j]))
}

fn position(rng: &mut Rng, frame: &Frame, seen: &[Seen], target: usize) -> Option<Draft> {
    let r = rng.unit();
    if r < 0.4 {
        let (a, b) = two_visible(rng, seen)?;
        if (a.u_frac - b.u_frac).abs() < 0.08 {
            return None;
        }
        let side = if a.u_frac < b.u_frac { "left" } else { "right" };
        let mut d = Draft::direct(
            "position",
            format!("Is {} to the left or to the right of {}?", a.name, b.name),
            format!("{} is to the {side} of {}.", capital(&a.name), b.name),
            side,
            Kind::Choice,
        );
        d.choices = vec!["left".into(), "right".into()];
        Some(d)
    } else if r < 0.7 {
        let (a, b) = two_visible(rng, seen)?;
        // Distance from the camera along the table: the true centres where known, otherwise
        // the centre depths (an annotated recording).
        let along = |s: &Seen| match frame.objects.get(s.index).and_then(|o| o.centre_m) {
            Some(c) => Some(c[1]),
            None => s.depth.map(|d| f64::from(d[0]) / 1000.0),
        };
        let (ya, yb) = (along(a)?, along(b)?);
        if (ya - yb).abs() < 0.04 {
            return None;
        }
        let rel = if ya < yb { "in front of" } else { "behind" };
        let mut d = Draft::direct(
            "position",
            format!("Is {} in front of or behind {}?", a.name, b.name),
            format!("{} is {rel} {}.", capital(&a.name), b.name),
            rel,
            Kind::Choice,
        );
        d.choices = vec!["in front of".into(), "behind".into()];
        Some(d)
    } else {
        let world = frame.world.as_ref()?;
        let o = world.objects.get(target)?;
        let g = world.gripper.pos;
        let h = o.half();
        let over = (g[0] - o.pos[0]).abs() <= h[0] && (g[1] - o.pos[1]).abs() <= h[1];
        let above = over && g[2] > o.top();
        let reply = if above {
            format!("Yes, the gripper is above {}.", o.name)
        } else {
            format!("No, the gripper is not above {}.", o.name)
        };
        Some(Draft::direct(
            "position",
            format!("Is the gripper above {}?", o.name),
            reply,
            yes_no(above),
            Kind::YesNo,
        ))
    }
}

fn reaching(rng: &mut Rng, frame: &Frame, target: usize, close: bool) -> Option<Draft> {
    let world = frame.world.as_ref()?;
    if close {
        let graspable = world.graspable();
        let reply = match graspable.and_then(|i| world.objects.get(i)) {
            Some(o) => format!("Yes, {} is between the fingers.", o.name),
            None => "No, nothing is between the fingers.".to_string(),
        };
        let question = pick(
            rng,
            &[
                "Can the gripper close now?",
                "Would closing the gripper now grasp an object?",
            ],
        );
        return Some(Draft::direct(
            "reaching",
            question.to_string(),
            reply,
            yes_no(graspable.is_some()),
            Kind::YesNo,
        ));
    }
    let o = world.objects.get(target)?;
    let touched = o.distance(world.gripper.pos) <= REACH_TOLERANCE_M;
    let verb = pick(rng, &["touched", "reached"]);
    let reply = if touched {
        format!("Yes, the gripper has {verb} {}.", o.name)
    } else {
        format!("No, the gripper has not {verb} {}.", o.name)
    };
    Some(Draft::direct(
        "reaching",
        format!("Has the gripper {verb} {}?", o.name),
        reply,
        yes_no(touched),
        Kind::YesNo,
    ))
}

fn size(rng: &mut Rng, frame: &Frame, seen: &[Seen]) -> Option<Draft> {
    let (a, b) = two_visible(rng, seen)?;
    let (oa, ob) = (frame.objects.get(a.index)?, frame.objects.get(b.index)?);
    let (sa, sb) = (oa.size_m?, ob.size_m?);
    let volume = |o: &ObjectTruth, s: [f64; 3]| match o.shape {
        Some(ShapeClass::Ball) => std::f64::consts::PI / 6.0 * s[0] * s[1] * s[2],
        _ => s[0] * s[1] * s[2],
    };
    if rng.unit() < 0.6 {
        let (va, vb) = (volume(oa, sa), volume(ob, sb));
        if va.max(vb) < 1.25 * va.min(vb) {
            return None;
        }
        let bigger = rng.unit() < 0.5;
        let word = if bigger { "bigger" } else { "smaller" };
        let winner = if (va > vb) == bigger { a } else { b };
        let mut d = Draft::direct(
            "size",
            format!("Which is {word}, {} or {}?", a.name, b.name),
            format!("{} is {word}.", capital(&winner.name)),
            &winner.name,
            Kind::Choice,
        );
        d.choices = vec![a.name.clone(), b.name.clone()];
        Some(d)
    } else {
        let (ta, tb) = (sa[2], sb[2]);
        if ta.max(tb) < 1.25 * ta.min(tb) {
            return None;
        }
        let taller = ta > tb;
        let reply = if taller {
            format!("Yes, {} is taller than {}.", a.name, b.name)
        } else {
            format!("No, {} is shorter than {}.", a.name, b.name)
        };
        Some(Draft::direct(
            "size",
            format!("Is {} taller than {}?", a.name, b.name),
            reply,
            yes_no(taller),
            Kind::YesNo,
        ))
    }
}

/// The question set's images placeholders for RGB-D, in the released form.
pub const RGBD_PLACEHOLDERS: &str = "<image 1>\n<image 2>\n";

/// Questions about `frame`, one per category where the scene allows it (reaching twice: touched
/// and close-now), `extra` more point-depth and proximity questions. `target` is the object the
/// gripper was posed around. Ids are `{prefix}-{k}`.
pub fn questions(
    frame: &Frame,
    target: usize,
    rng: &mut Rng,
    prefix: &str,
    image: &str,
    depth: &str,
    extra: usize,
) -> Vec<Question> {
    let seen = seen_objects(frame);
    let mut drafts: Vec<Option<Draft>> = vec![
        point_depth(frame, rng, &seen),
        object_depth(rng, &seen),
        depth_description(frame, &seen),
        proximity(frame, rng, &seen),
        counting(rng, frame, &seen),
        existence(rng, frame, &seen),
        position(rng, frame, &seen, target),
        reaching(rng, frame, target, false),
        reaching(rng, frame, target, true),
        size(rng, frame, &seen),
    ];
    for _ in 0..extra {
        drafts.push(point_depth(frame, rng, &seen));
        drafts.push(proximity(frame, rng, &seen));
        drafts.push(position(rng, frame, &seen, target));
    }
    drafts
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(k, d)| {
            let (level, bench) = level_and_bench(d.category)?;
            let mut conversation = vec![Turn::human(format!("{RGBD_PLACEHOLDERS}{}", d.question))];
            conversation.extend(d.turns);
            Some(Question {
                id: format!("{prefix}-{k:02}"),
                category: d.category.to_string(),
                bench_category: bench.to_string(),
                level: level.to_string(),
                image: image.to_string(),
                depth: depth.to_string(),
                question: d.question,
                answer: d.answer,
                kind: d.kind,
                choices: d.choices,
                tolerance: d.tolerance,
                conversation,
            })
        })
        .collect()
}
