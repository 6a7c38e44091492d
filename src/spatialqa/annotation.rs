//! Object annotations of a recording (`objects.json` beside its frames): which objects each
//! annotated frame shows, as boxes in the colour image, so SpatialQA can be generated from any
//! recording with a calibration (docs/spatialqa.md, "Recordings").
//!
//! A box is the object's mask, as in the paper's SpatialQA (object depth from the registered
//! depth under the box, its percentile rule). Where boxes overlap, the nearer object (the lower
//! median depth under its box) owns the shared pixels.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::generate::{ObjectTruth, ShapeClass};
use crate::rgbd::DepthMm;
use crate::sim::render::LABEL_BACKGROUND;

/// `objects.json`'s schema name.
pub const SCHEMA: &str = "spatialbot-edge.objects/1";
/// Most objects in one frame (labels are bytes below the gripper's and the background's).
pub const MAX_OBJECTS: usize = 64;
/// Largest `objects.json` read.
pub const MAX_BYTES: u64 = 16 << 20;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotation {
    pub schema: String,
    pub frames: Vec<AnnotatedFrame>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotatedFrame {
    /// The recording's frame index (its `color/NNNNNN.png`).
    pub frame: u64,
    pub objects: Vec<AnnotatedObject>,
    /// Names known not to be in view (existence questions answered "No").
    #[serde(default)]
    pub absent: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotatedObject {
    /// How questions name it, with its article: "the red box".
    pub name: String,
    /// `[u0, v0, u1, v1]`, colour-image pixels, inclusive.
    pub bbox: [usize; 4],
    #[serde(default)]
    pub shape: Option<ShapeClass>,
    #[serde(default)]
    pub colour: Option<String>,
    /// Full extents in metres (x right, y away from the camera, z up): size questions.
    #[serde(default)]
    pub size_m: Option<[f64; 3]>,
    /// Centre in metres, table coordinates: in front of / behind from it rather than depth.
    #[serde(default)]
    pub centre_m: Option<[f64; 3]>,
}

/// Parses and checks `objects.json` against a colour image of `width`×`height`; the error names
/// the field (`frames[2].objects[0].bbox: …`).
pub fn parse(text: &str, width: usize, height: usize) -> Result<Annotation, String> {
    let a: Annotation = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if a.schema != SCHEMA {
        return Err(format!("schema: `{}`; expected `{SCHEMA}`", a.schema));
    }
    if a.frames.is_empty() {
        return Err("frames: empty; annotate at least one frame".into());
    }
    let mut seen_frames = BTreeSet::new();
    for (i, f) in a.frames.iter().enumerate() {
        let at = format!("frames[{i}]");
        if !seen_frames.insert(f.frame) {
            return Err(format!("{at}.frame: frame {} is annotated twice", f.frame));
        }
        if f.objects.len() > MAX_OBJECTS {
            return Err(format!(
                "{at}.objects: {} objects; at most {MAX_OBJECTS}",
                f.objects.len()
            ));
        }
        let mut names = BTreeSet::new();
        for (j, o) in f.objects.iter().enumerate() {
            let at = format!("{at}.objects[{j}]");
            check_name(&o.name).map_err(|e| format!("{at}.name: {e}"))?;
            if !names.insert(o.name.as_str()) {
                return Err(format!("{at}.name: `{}` twice in one frame", o.name));
            }
            let [u0, v0, u1, v1] = o.bbox;
            if u0 > u1 || v0 > v1 || u1 >= width || v1 >= height {
                return Err(format!(
                    "{at}.bbox: {:?} is not [u0, v0, u1, v1] with u0 ≤ u1 < {width}, v0 ≤ v1 < {height} (the colour image's pixels, inclusive)",
                    o.bbox
                ));
            }
            for (field, value) in [("size_m", o.size_m), ("centre_m", o.centre_m)] {
                if let Some(v) = value {
                    let ok = v.iter().all(|x| x.is_finite() && x.abs() <= 100.0)
                        && (field != "size_m" || v.iter().all(|&x| x > 0.0));
                    if !ok {
                        return Err(format!(
                            "{at}.{field}: {v:?} must be finite metres (sizes above 0, at most 100)"
                        ));
                    }
                }
            }
            if let Some(c) = &o.colour {
                check_name(c).map_err(|e| format!("{at}.colour: {e}"))?;
            }
        }
        for (j, name) in f.absent.iter().enumerate() {
            check_name(name).map_err(|e| format!("{at}.absent[{j}]: {e}"))?;
            if names.contains(name.as_str()) {
                return Err(format!(
                    "{at}.absent[{j}]: `{name}` is also annotated as in view"
                ));
            }
        }
    }
    Ok(a)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err("give 1 to 64 characters".into());
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '?' || c == '<' || c == '>')
    {
        return Err(format!(
            "`{}`: no control characters, `?`, `<` or `>`",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// The frame's label image (an object index per colour pixel, background elsewhere; nearer
/// objects own overlapping pixels) and what is known of each object.
pub fn labels_and_objects(
    frame: &AnnotatedFrame,
    depth: &DepthMm,
    width: usize,
    height: usize,
) -> (Vec<u8>, Vec<ObjectTruth>) {
    let median = |b: [usize; 4]| {
        let mut v: Vec<u32> = (b[1]..=b[3])
            .flat_map(|y| (b[0]..=b[2]).map(move |x| (x, y)))
            .filter_map(|(x, y)| depth.get(x, y).filter(|&mm| mm > 0))
            .collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(u32::MAX)
    };
    let mut order: Vec<(u32, usize)> = frame
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (median(o.bbox), i))
        .collect();
    // Farthest first, so nearer objects paint over them.
    order.sort_by(|a, b| b.cmp(a));
    let mut labels = vec![LABEL_BACKGROUND; width * height];
    for (_, i) in order {
        let [u0, v0, u1, v1] = frame.objects[i].bbox;
        for v in v0..=v1.min(height.saturating_sub(1)) {
            for u in u0..=u1.min(width.saturating_sub(1)) {
                labels[v * width + u] = i as u8;
            }
        }
    }
    let objects = frame
        .objects
        .iter()
        .map(|o| ObjectTruth {
            name: o.name.clone(),
            colour: o.colour.clone(),
            shape: o.shape,
            centre_m: o.centre_m,
            size_m: o.size_m,
        })
        .collect();
    (labels, objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(objects: &str) -> String {
        format!(r#"{{"schema": "{SCHEMA}", "frames": [{{"frame": 0, "objects": [{objects}]}}]}}"#)
    }

    #[test]
    fn a_good_annotation_and_nonsense_named_by_field() {
        let good = one(
            r#"{"name": "the red box", "bbox": [1, 2, 10, 12], "shape": "box", "size_m": [0.1, 0.1, 0.1]}"#,
        );
        assert!(parse(&good, 64, 48).is_ok());
        for (text, field) in [
            (
                one(r#"{"name": "the red box", "bbox": [10, 2, 1, 12]}"#),
                "objects[0].bbox",
            ),
            (
                one(r#"{"name": "the red box", "bbox": [1, 2, 64, 12]}"#),
                "objects[0].bbox",
            ),
            (
                one(r#"{"name": "", "bbox": [1, 2, 3, 4]}"#),
                "objects[0].name",
            ),
            (
                one(r#"{"name": "a?", "bbox": [1, 2, 3, 4]}"#),
                "objects[0].name",
            ),
            (
                one(r#"{"name": "x", "bbox": [1, 2, 3, 4]}, {"name": "x", "bbox": [1, 2, 3, 4]}"#),
                "objects[1].name",
            ),
            (
                one(r#"{"name": "x", "bbox": [1, 2, 3, 4], "size_m": [0, 1, 1]}"#),
                "size_m",
            ),
            (
                one(r#"{"name": "x", "bbox": [1, 2, 3, 4], "shape": "cone"}"#),
                "cone",
            ),
            (
                one(r#"{"name": "x", "bbox": [1, 2, 3, 4], "weight": 3}"#),
                "weight",
            ),
            (
                format!(r#"{{"schema": "{SCHEMA}", "frames": []}}"#),
                "frames",
            ),
            (r#"{"schema": "other", "frames": []}"#.to_string(), "schema"),
        ] {
            let e = parse(&text, 64, 48).expect_err(&text);
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn nearer_objects_own_overlapping_pixels() {
        let text =
            one(r#"{"name": "far", "bbox": [0, 0, 5, 5]}, {"name": "near", "bbox": [3, 3, 7, 7]}"#);
        let a = parse(&text, 8, 8).unwrap();
        let mut mm = vec![2000u32; 64];
        for v in 3..8 {
            for u in 3..8 {
                mm[v * 8 + u] = 800;
            }
        }
        let depth = DepthMm::from_mm(8, 8, mm).unwrap();
        let (labels, objects) = labels_and_objects(&a.frames[0], &depth, 8, 8);
        assert_eq!(objects.len(), 2);
        assert_eq!(labels[0], 0);
        assert_eq!(labels[4 * 8 + 4], 1, "the nearer box wins the overlap");
        assert_eq!(labels[7 * 8 + 0], LABEL_BACKGROUND);
    }
}
