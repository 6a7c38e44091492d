//! The real vision encoder and language model: one `model::Engine`, shared by the vision and
//! language-model threads. They take turns on it; the loop asks for the next frame only when
//! an answer is out, so the two rarely wait on each other.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::{
    Engine, GenerateOptions, Grammar, ImageEmbedding, ImageTensor, Prompt, PromptPiece,
};
use crate::policy::PolicyPrompt;

use super::vision::FrameTensors;
use super::{LanguageModel, RgbdFrame, StageError, VisionEncoder};

fn lock(e: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    e.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct EngineVision {
    engine: Arc<Mutex<Engine>>,
    tensors: FrameTensors,
}

impl EngineVision {
    pub fn new(engine: Arc<Mutex<Engine>>, tensors: FrameTensors) -> Self {
        Self { engine, tensors }
    }
}

impl VisionEncoder for EngineVision {
    type Input = ImageTensor;
    type Embedding = ImageEmbedding;
    fn preprocess(&mut self, frame: &RgbdFrame, image: usize) -> Result<ImageTensor, StageError> {
        let t = self.tensors.tensor(frame, image)?;
        Ok(ImageTensor {
            size: t.shape.get(1).copied().unwrap_or(0),
            data: t.data,
        })
    }
    fn encode(&mut self, input: ImageTensor) -> Result<ImageEmbedding, StageError> {
        let mut out = lock(&self.engine).encode_images(std::slice::from_ref(&input))?;
        out.pop()
            .ok_or_else(|| "the vision graph returned no embedding".into())
    }
}

pub struct EngineModel {
    engine: Arc<Mutex<Engine>>,
    /// The prompt is the same every step: tokenised once.
    tokenised: Option<(Vec<String>, Prompt)>,
    timings: Option<crate::model::GenerationTimings>,
    /// The grammar answers are constrained to (docs/decoding.md); `None`: unconstrained.
    grammar: Option<Grammar>,
}

impl EngineModel {
    pub fn new(engine: Arc<Mutex<Engine>>) -> Self {
        Self {
            engine,
            tokenised: None,
            timings: None,
            grammar: None,
        }
    }

    /// Constrains every answer to `grammar` (the policy's action list).
    pub fn with_grammar(mut self, grammar: Option<Grammar>) -> Self {
        self.grammar = grammar;
        self
    }
}

impl LanguageModel<ImageEmbedding> for EngineModel {
    fn generate(
        &mut self,
        prompt: &PolicyPrompt,
        images: &[Arc<ImageEmbedding>],
        max_new_tokens: usize,
    ) -> Result<String, StageError> {
        let mut engine = lock(&self.engine);
        if self
            .tokenised
            .as_ref()
            .is_none_or(|(chunks, _)| *chunks != prompt.chunks)
        {
            let mut pieces = Vec::new();
            for (k, chunk) in prompt.chunks.iter().enumerate() {
                if k > 0 {
                    pieces.push(PromptPiece::Image(k - 1));
                }
                let ids = engine.tokenizer().encode(chunk)?;
                if !ids.is_empty() {
                    pieces.push(PromptPiece::Text(ids));
                }
            }
            self.tokenised = Some((prompt.chunks.clone(), Prompt { pieces }));
        }
        let Some((_, tokens)) = self.tokenised.as_ref() else {
            return Err("no prompt".into());
        };
        let embeddings: Vec<ImageEmbedding> = images.iter().map(|e| (**e).clone()).collect();
        let options = GenerateOptions {
            max_new_tokens: Some(max_new_tokens),
            grammar: self.grammar.clone(),
            ..GenerateOptions::default()
        };
        let generation = engine.generate(tokens, &embeddings, &options, &mut |_| {})?;
        self.timings = Some(generation.timings);
        Ok(generation.text)
    }

    fn last_timings(&self) -> Option<crate::model::GenerationTimings> {
        self.timings.clone()
    }
}

/// The SpatialBot guard on a SpatialBot engine: the frame's colour image and packed depth through
/// the SpatialBot vision graph, then the question (Depth API rounds included).
pub struct EngineGuard {
    engine: Arc<Mutex<Engine>>,
    tensors: FrameTensors,
}

impl EngineGuard {
    /// `engine` must hold a SpatialBot model; `tensors` its manifest's preprocessing. Guards on
    /// one engine share it (`eval` loads the guard model once for all its episodes).
    pub fn new(engine: Arc<Mutex<Engine>>, tensors: FrameTensors) -> Self {
        Self { engine, tensors }
    }
}

impl super::GuardModel for EngineGuard {
    fn ask(&mut self, frame: &RgbdFrame, question: &str) -> Result<String, StageError> {
        let depth = frame.depth.registered().ok_or_else(|| {
            format!(
                "the guard needs depth but frame {} has none",
                frame.sequence
            )
        })?;
        let mut inputs = Vec::with_capacity(2);
        for image in 0..2 {
            let t = self.tensors.tensor(frame, image)?;
            inputs.push(ImageTensor {
                size: t.shape.get(1).copied().unwrap_or(0),
                data: t.data,
            });
        }
        let mut engine = lock(&self.engine);
        let images = engine.encode_images(&inputs)?;
        let answer = crate::model::vqa::answer(
            &mut engine,
            &images,
            depth,
            question,
            &GenerateOptions::default(),
            &mut |_, _| {},
        )?;
        Ok(answer.text)
    }
}
