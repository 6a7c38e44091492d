//! SpatialBot VQA on one RGB-D pair with the Depth API loop: generate; if the answer calls
//! `Depth(x, y)`, look the values up and ask again with the conversation so far plus a USER turn
//! holding the values, at most `max_rounds` rounds in all. Each round's prompt is tokenised
//! from scratch (as the reference pipeline does), so each round is prefilled anew; the image
//! embeddings are computed once.

use super::depth_api::{self, DepthAnswer};
use super::engine::{Engine, GenerateOptions, Generation, ImageEmbedding, Token};
use super::prompt::Prompt;
use super::ModelError;
use crate::rgbd::frame::DepthMm;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Round {
    /// The text that filled the template's `{question}` slot this round.
    pub question: String,
    pub input_len: usize,
    pub generation: Generation,
    /// The Depth API calls this round's answer made, with their values (empty in the last round).
    pub calls: Vec<DepthAnswer>,
    /// The USER turn sent back (empty when none was).
    pub reply: String,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VqaAnswer {
    /// The last round's text.
    pub text: String,
    pub rounds: Vec<Round>,
}

/// The `{question}` text of the next round: the conversation so far, the answer, the stop
/// token's text and the follow-up turn; the template adds its own text after `{question}`.
pub fn next_question(
    previous: &str,
    template: &str,
    answer: &str,
    stop_text: &str,
    turn: &str,
) -> String {
    let after_question = template
        .split_once("{question}")
        .map(|(_, tail)| tail)
        .unwrap_or("");
    format!("{previous}{after_question} {answer}{stop_text}{turn}")
}

/// Answers `question` about the already-encoded `images` (RGB first, packed depth second),
/// looking Depth API calls up in `depth` (registered millimetres at original resolution).
/// `on_token` sees every generated token with its round (0-based).
pub fn answer(
    engine: &mut Engine,
    images: &[ImageEmbedding],
    depth: &DepthMm,
    question: &str,
    options: &GenerateOptions,
    on_token: &mut dyn FnMut(usize, &Token),
) -> Result<VqaAnswer, ModelError> {
    let settings = engine.manifest().depth_api();
    let template = engine.manifest().prompt.template.clone();
    let stop_id = options
        .stop_ids
        .as_ref()
        .unwrap_or(&engine.manifest().llm.stop_ids)
        .first()
        .copied();
    let stop_text = match stop_id {
        Some(id) => engine.tokenizer().decode(&[id], false)?,
        None => String::new(),
    };
    let mut rounds: Vec<Round> = Vec::new();
    let mut current = question.to_string();
    loop {
        let round = rounds.len();
        let prompt: Prompt = engine.prompt(&current, images.len())?;
        let input_len = prompt.pieces.len();
        let generation = engine.generate(&prompt, images, options, &mut |t| on_token(round, t))?;
        let calls = depth_api::parse_calls(&generation.text);
        if calls.is_empty() || round + 1 >= settings.max_rounds.max(1) {
            let text = generation.text.clone();
            rounds.push(Round {
                question: current,
                input_len,
                generation,
                calls: Vec::new(),
                reply: String::new(),
            });
            return Ok(VqaAnswer { text, rounds });
        }
        let answers = depth_api::answer_calls(&calls, depth, settings.neighbourhood);
        let reply = depth_api::reply_text(&answers, &settings);
        let turn = settings.turn.replace("{reply}", &reply);
        let next = next_question(&current, &template, &generation.text, &stop_text, &turn);
        rounds.push(Round {
            question: std::mem::replace(&mut current, next),
            input_len,
            generation,
            calls: answers,
            reply,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_round_continues_the_bunny_conversation() {
        let q = next_question(
            "How far?",
            "{system} USER: {images}{question} ASSISTANT:",
            "It is Depth(0.5,0.5).",
            "<|endoftext|>",
            "USER: API: Depth(0.5,0.5)=1234",
        );
        assert_eq!(
            q,
            "How far? ASSISTANT: It is Depth(0.5,0.5).<|endoftext|>USER: API: Depth(0.5,0.5)=1234"
        );
    }
}
