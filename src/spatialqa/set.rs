//! Reading a question set: ours (a folder with `meta.json` and `questions.jsonl`) or
//! SpatialBench's released layout (a folder of `positional.json`, `existence.json`,
//! `counting.json`, `reach.json`, `size.json`; docs/spatialqa.md). Every error names the file,
//! the line or record, and the field.

use std::path::{Path, PathBuf};

use super::{Kind, Meta, Question, CATEGORIES, SCHEMA};

/// Most questions one set may hold, and the largest `questions.jsonl` / `meta.json` read.
pub const MAX_QUESTIONS: usize = 1_000_000;
pub const MAX_FILE_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{path}: {message}")]
    Bad { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn bad(path: &Path, message: impl Into<String>) -> SetError {
    SetError::Bad {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn read_text(path: &Path) -> Result<String, SetError> {
    crate::fsutil::read_to_string_limited(path, MAX_FILE_BYTES).map_err(|source| SetError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A question set read into memory: where its files are relative to, and its questions.
#[derive(Clone, Debug)]
pub struct QuestionSet {
    /// The folder `image` and `depth` paths are relative to.
    pub root: PathBuf,
    /// "spatialqa" (ours) or "spatialbench".
    pub layout: &'static str,
    pub meta: Option<Meta>,
    pub questions: Vec<Question>,
    /// SpatialBench: each question's file stem and record index (for the paired scores).
    pub records: Vec<Option<(String, usize)>>,
    /// Records that cannot be asked, with the reason (counted as skipped).
    pub skipped: Vec<(String, String)>,
}

impl QuestionSet {
    pub fn image_path(&self, q: &Question) -> PathBuf {
        self.root.join(&q.image)
    }
    pub fn depth_path(&self, q: &Question) -> Option<PathBuf> {
        (!q.depth.is_empty()).then(|| self.root.join(&q.depth))
    }
}

/// A relative path inside the set (no absolute path, no `..`).
fn check_relative(file: &Path, line: usize, field: &str, value: &str) -> Result<(), SetError> {
    let p = Path::new(value);
    if value.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(bad(
            file,
            format!(
                "line {line}: field `{field}` = {value:?} must be a relative path inside the set"
            ),
        ));
    }
    Ok(())
}

/// Reads our layout: `DIR/meta.json` and `DIR/questions.jsonl`.
pub fn read_ours(dir: &Path) -> Result<QuestionSet, SetError> {
    let meta_path = dir.join("meta.json");
    let meta: Meta = serde_json::from_str(&read_text(&meta_path)?)
        .map_err(|e| bad(&meta_path, format!("not a set's meta.json: {e}")))?;
    if meta.schema != SCHEMA {
        return Err(bad(
            &meta_path,
            format!("field `schema` = {:?}; this reads {SCHEMA:?}", meta.schema),
        ));
    }
    let qpath = dir.join("questions.jsonl");
    let text = read_text(&qpath)?;
    let mut questions = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if questions.len() >= MAX_QUESTIONS {
            return Err(bad(
                &qpath,
                format!("more than {MAX_QUESTIONS} questions (docs/limits.md)"),
            ));
        }
        let q: Question =
            serde_json::from_str(line).map_err(|e| bad(&qpath, format!("line {n}: {e}")))?;
        if !CATEGORIES.contains(&q.category.as_str()) {
            return Err(bad(
                &qpath,
                format!(
                    "line {n}: field `category` = {:?}; one of {}",
                    q.category,
                    CATEGORIES.join(", ")
                ),
            ));
        }
        check_relative(&qpath, n, "image", &q.image)?;
        if !q.depth.is_empty() {
            check_relative(&qpath, n, "depth", &q.depth)?;
        }
        if q.kind == Kind::Choice && q.choices.len() < 2 {
            return Err(bad(
                &qpath,
                format!("line {n}: field `choices`: a choice question needs at least two"),
            ));
        }
        if q.kind == Kind::DepthMm && !q.tolerance.is_some_and(|t| t.is_finite() && t >= 0.0) {
            return Err(bad(
                &qpath,
                format!("line {n}: field `tolerance`: a depth_mm question needs a number ≥ 0"),
            ));
        }
        if !ids.insert(q.id.clone()) {
            return Err(bad(
                &qpath,
                format!("line {n}: field `id` = {:?} repeats", q.id),
            ));
        }
        questions.push(q);
    }
    if questions.len() != meta.count {
        return Err(bad(
            &meta_path,
            format!(
                "field `count` = {} but {} holds {} questions",
                meta.count,
                qpath.display(),
                questions.len()
            ),
        ));
    }
    Ok(QuestionSet {
        root: dir.to_path_buf(),
        layout: "spatialqa",
        meta: Some(meta),
        records: vec![None; questions.len()],
        questions,
        skipped: Vec::new(),
    })
}

/// SpatialBench's task files and the category each holds.
pub const SPATIALBENCH_FILES: [(&str, &str); 5] = [
    ("positional", "position"),
    ("existence", "existence"),
    ("counting", "counting"),
    ("reach", "reaching"),
    ("size", "size"),
];

/// Reads `path`: our layout when it is a folder with `meta.json`, SpatialBench's when it is a
/// folder with any of its task files or one such file.
pub fn read(path: &Path) -> Result<QuestionSet, SetError> {
    if path.is_dir() && path.join("meta.json").is_file() {
        return read_ours(path);
    }
    if path.is_file() && path.extension().is_some_and(|e| e == "json") {
        let root = path.parent().unwrap_or(Path::new("."));
        return read_spatialbench(root, &[path.to_path_buf()]);
    }
    if path.is_dir() {
        let files: Vec<PathBuf> = SPATIALBENCH_FILES
            .iter()
            .map(|(stem, _)| path.join(format!("{stem}.json")))
            .filter(|p| p.is_file())
            .collect();
        if !files.is_empty() {
            return read_spatialbench(path, &files);
        }
    }
    Err(bad(
        path,
        "not a question set: give a folder with meta.json and questions.jsonl (ours), or \
         SpatialBench's folder (positional.json, existence.json, counting.json, reach.json, \
         size.json) or one of its files",
    ))
}

/// SpatialBench's layout: each file is a JSON list of records {image: path or [paths],
/// question, answer, id?}; an image `SUBSET/NAME.EXT` has its depth at `SUBSET_d/STEM.png`
/// (STEM: NAME up to its first dot), both relative to the folder.
fn read_spatialbench(root: &Path, files: &[PathBuf]) -> Result<QuestionSet, SetError> {
    let mut set = QuestionSet {
        root: root.to_path_buf(),
        layout: "spatialbench",
        meta: None,
        questions: Vec::new(),
        records: Vec::new(),
        skipped: Vec::new(),
    };
    for file in files {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let category = SPATIALBENCH_FILES
            .iter()
            .find(|(s, _)| *s == stem)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                bad(
                    file,
                    "not one of SpatialBench's task files (positional, existence, counting, reach, size .json)",
                )
            })?;
        let value: serde_json::Value = serde_json::from_str(&read_text(file)?)
            .map_err(|e| bad(file, format!("not JSON: {e}")))?;
        let records = value
            .as_array()
            .ok_or_else(|| bad(file, "expected a JSON list of records"))?;
        for (i, r) in records.iter().enumerate() {
            if set.questions.len() + set.skipped.len() >= MAX_QUESTIONS {
                return Err(bad(
                    file,
                    format!("more than {MAX_QUESTIONS} records (docs/limits.md)"),
                ));
            }
            let field = |name: &str| -> Result<String, SetError> {
                match r.get(name) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                    _ => Err(bad(
                        file,
                        format!("record {i}: field `{name}` missing or not a string"),
                    )),
                }
            };
            let question = field("question")?;
            let answer = field("answer")?;
            let id = match r.get("id") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => i.to_string(),
            };
            let id = format!("{stem}-{id}");
            let images: Vec<String> = match r.get("image") {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        bad(file, format!("record {i}: field `image`: a list of paths"))
                    })?,
                _ => return Err(bad(file, format!("record {i}: field `image` missing"))),
            };
            if images.len() != 1 {
                set.skipped.push((
                    id,
                    format!(
                        "{} images; the model takes one RGB image and its depth",
                        images.len()
                    ),
                ));
                continue;
            }
            let image = images[0].clone();
            check_relative(file, i, "image", &image)?;
            let subset = image.split('/').next().unwrap_or_default();
            let name = image.rsplit('/').next().unwrap_or_default();
            let depth_stem = name.split('.').next().unwrap_or_default();
            let depth = format!("{subset}_d/{depth_stem}.png");
            let (level, bench) = super::level_and_bench(category).unwrap_or(("high", "position"));
            let kind = if category == "counting" {
                Kind::Count
            } else {
                Kind::Text
            };
            set.questions.push(Question {
                id,
                category: category.to_string(),
                bench_category: bench.to_string(),
                level: level.to_string(),
                image,
                depth,
                question,
                answer,
                kind,
                choices: Vec::new(),
                tolerance: None,
                conversation: Vec::new(),
            });
            set.records.push(Some((stem.clone(), i)));
        }
    }
    Ok(set)
}
