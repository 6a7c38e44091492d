//! Reading a question set: ours (a folder with `meta.json` and `questions.jsonl`).
//! Every error names the file, the line and the field.

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
    let io = |source| SetError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(bad(
            path,
            format!("{len} bytes; at most {MAX_FILE_BYTES} are read (docs/limits.md)"),
        ));
    }
    std::fs::read_to_string(path).map_err(io)
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
        questions,
    })
}
