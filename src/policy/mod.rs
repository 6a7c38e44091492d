//! Robot policy: frame history, vision-embedding cache, prompt, action text parsing and decoding.
//! PURE: no files, clocks, threads or devices.

pub mod action;
pub mod cache;
pub mod guard;
pub mod history;
pub mod prompt;
pub mod spec;

pub use action::{parse_action_text, ActionDecodeError, ActionDim, ActionLayout, ActionParseError};
pub use cache::{CacheCounts, EmbeddingHistory, EncodedFrame};
pub use history::FrameHistory;
pub use prompt::{build_policy_prompt, PolicyPrompt, PromptError};
pub use spec::{FrameOrder, HistoryPad, PolicySpec, PromptSpec, SpecError};

/// Why a step's answer did not become an action.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Parse(#[from] ActionParseError),
    #[error(transparent)]
    Decode(#[from] ActionDecodeError),
}

/// The model's answer text → decoded action values, per the manifest's action layout.
pub fn action_from_answer(layout: &ActionLayout, answer: &str) -> Result<Vec<f64>, AnswerError> {
    let values = parse_action_text(answer)?;
    Ok(layout.decode(&values)?)
}
