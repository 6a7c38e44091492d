//! SpatialQA: depth-aware question sets built from ground truth (the paper's three levels),
//! their on-disk format, SpatialBench's released layout, and the paper's scoring rules.
//! docs/spatialqa.md describes the format and the categories.
//!
//! - [`generate`]: questions about a frame with ground truth (the simulated world, the
//!   synthetic tabletop, an annotated recording) from object masks and what is known of each
//!   object; the conversations use the Depth API turns as the runtime does
//!   (`model::depth_api`).
//! - [`annotation`]: a recording's `objects.json` (objects as boxes in annotated frames).
//! - [`set`]: reading a question set, ours (`meta.json` + `questions.jsonl`) or SpatialBench's
//!   (one JSON file per task), into one list of [`Question`]s.
//! - [`score`]: whether an answer is right, per kind, and the per-category summary.

pub mod annotation;
pub mod generate;
pub mod score;
pub mod set;

use serde::{Deserialize, Serialize};

/// `meta.json`'s schema name.
pub const SCHEMA: &str = "spatialbot-edge.spatialqa/1";

/// The question categories, low to high level (the paper's §III).
pub const CATEGORIES: [&str; 9] = [
    "point_depth",
    "object_depth",
    "depth_description",
    "proximity",
    "counting",
    "existence",
    "position",
    "reaching",
    "size",
];

/// Level and SpatialBench category of a category name.
pub fn level_and_bench(category: &str) -> Option<(&'static str, &'static str)> {
    Some(match category {
        "point_depth" | "object_depth" | "depth_description" => ("low", "depth"),
        "proximity" => ("middle", "depth"),
        "counting" => ("middle", "counting"),
        "existence" => ("middle", "existence"),
        "position" => ("high", "position"),
        "reaching" => ("high", "reaching"),
        "size" => ("high", "size"),
        _ => return None,
    })
}

/// `meta.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub schema: String,
    pub split: String,
    pub source: String,
    pub seeds: [u64; 2],
    pub count: usize,
    /// Frame size of the images, `[width, height]` (generated sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[usize; 2]>,
}

/// One turn of a conversation, in the released SpatialQA form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// "human" or "gpt".
    pub from: String,
    pub value: String,
}

impl Turn {
    pub fn human(value: impl Into<String>) -> Self {
        Self {
            from: "human".into(),
            value: value.into(),
        }
    }
    pub fn gpt(value: impl Into<String>) -> Self {
        Self {
            from: "gpt".into(),
            value: value.into(),
        }
    }
}

/// How an answer is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The answer's first word is the expected "Yes" or "No" (case ignored).
    YesNo,
    /// The answer names the expected choice and no other.
    Choice,
    /// The first whole number in the answer is within `tolerance` mm of the expected one.
    DepthMm,
    /// The first whole number in the answer equals the expected count.
    Count,
    /// The expected text occurs in the answer (SpatialBench's `gt in response`).
    Text,
}

/// One line of `questions.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    pub category: String,
    pub bench_category: String,
    pub level: String,
    /// Relative to the set's folder.
    pub image: String,
    pub depth: String,
    pub question: String,
    pub answer: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    #[serde(default)]
    pub conversation: Vec<Turn>,
}
