//! The engine: a model folder's tokenizer and graphs on one backend; image encoding, prompt
//! splicing and generation with one KV cache per session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::{self, Backend, BackendConfig, KvCache, LoadStep};
use super::constrain::{Constrainer, TokenTable};
use super::grammar::Grammar;
use super::manifest::Manifest;
use super::prompt::{self, Prompt, PromptPiece};
use super::sampling::{self, Rng, Sampling};
use super::tokenizer::TextTokenizer;
use super::{ModelError, ModelFolder};

/// One preprocessed image: normalised `f32 [3,S,S]`, channel-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageTensor {
    pub size: usize,
    pub data: Vec<f32>,
}

/// One image's projected rows `[T,H]`, as the vision graph gave them. Clones share storage.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageEmbedding {
    pub tokens: usize,
    pub dim: usize,
    pub data: Arc<[f32]>,
}

/// What to do when the spliced prompt is longer than the context limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop positions past the limit and log a warning (the released code truncates).
    #[default]
    Truncate,
    /// Refuse with `ModelError::ContextOverflow`.
    Refuse,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// `None` = the manifest's `max_new_tokens`.
    pub max_new_tokens: Option<usize>,
    pub sampling: Sampling,
    /// `None` = the manifest's `stop_ids`.
    pub stop_ids: Option<Vec<u32>>,
    pub overflow: Overflow,
    /// Restricts the answer to a grammar (docs/decoding.md); `None`: unconstrained.
    pub grammar: Option<Grammar>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: None,
            sampling: Sampling::Greedy,
            stop_ids: None,
            overflow: Overflow::Truncate,
            grammar: None,
        }
    }
}

/// A generated token, as streamed to the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub id: u32,
    /// Its text (special tokens skipped).
    pub text: String,
    /// Time from the previous token (or from the end of the prefill).
    pub took: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
/// Why generation ended (not to be confused with why a run stopped, `pipeline::StopReason`).
pub enum FinishReason {
    StopToken,
    MaxNewTokens,
    ContextLimit,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GenerationTimings {
    /// Text-embedding lookups and splicing.
    pub embed: Duration,
    /// Positions prefilled (after truncation) and how long it took.
    pub prefill_positions: usize,
    pub prefill: Duration,
    /// One entry per decode step (the first token comes from the prefill).
    pub decode_steps: Vec<Duration>,
    /// Time spent masking the logits to the grammar, all steps together (zero unconstrained).
    pub constrain: Duration,
}

impl GenerationTimings {
    /// Mean decode step; zero when no step ran.
    pub fn mean_decode(&self) -> Duration {
        if self.decode_steps.is_empty() {
            return Duration::ZERO;
        }
        self.decode_steps.iter().sum::<Duration>() / self.decode_steps.len() as u32
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Generation {
    /// Decoded with special tokens skipped, then trimmed (as the released code does).
    pub text: String,
    /// Generated ids, the stop token included when one ended the generation.
    pub token_ids: Vec<u32>,
    pub stop: FinishReason,
    /// Positions dropped from the prompt's end to fit the context limit.
    pub truncated: usize,
    pub timings: GenerationTimings,
}

pub struct Engine {
    manifest: Manifest,
    tokenizer: TextTokenizer,
    backend: Box<dyn Backend>,
    steps: Vec<LoadStep>,
    /// Every token's text, made the first time a grammar is used.
    token_table: Option<Arc<TokenTable>>,
    /// The last grammar used, with its cached masks.
    constrainer: Option<Constrainer>,
}

impl Engine {
    /// Loads the tokenizer and the three graphs on the configured backend, checking shapes.
    pub fn load(folder: &ModelFolder, config: &BackendConfig) -> Result<Engine, ModelError> {
        let mut steps = vec![LoadStep::new(
            "read manifest and check sha256 of every file",
            folder.open_time,
        )];
        let started = Instant::now();
        let tokenizer = super::validate::load_tokenizer(folder)?;
        steps.push(LoadStep::new("load tokenizer.json", started.elapsed()));
        let backend = backend::load(folder, config)?;
        steps.extend(backend.load_steps().iter().cloned());
        for step in &steps {
            tracing::info!(model = %folder.manifest.name, "{}: {:.1} ms", step.what, step.millis);
        }
        tracing::info!(model = %folder.manifest.name, dir = %folder.dir.display(), "loaded on {}", backend.describe());
        Ok(Engine {
            manifest: folder.manifest.clone(),
            tokenizer,
            backend,
            steps,
            token_table: None,
            constrainer: None,
        })
    }

    /// The constrainer for `grammar` and `stop_ids`, taken out of the engine (the cached one
    /// when it matches, else a new one); [`Engine::keep_constrainer`] puts it back.
    fn take_constrainer(
        &mut self,
        grammar: &Grammar,
        stop_ids: &[u32],
    ) -> Result<Constrainer, ModelError> {
        if let Some(c) = self.constrainer.take() {
            let mut sorted = stop_ids.to_vec();
            sorted.sort_unstable();
            if c.grammar() == grammar && c.stop_ids() == sorted {
                return Ok(c);
            }
        }
        let table = match &self.token_table {
            Some(t) => t.clone(),
            None => {
                let t = Arc::new(TokenTable::new(
                    &self.tokenizer,
                    self.manifest.llm.vocab_size,
                )?);
                self.token_table = Some(t.clone());
                t
            }
        };
        Constrainer::new(grammar.clone(), table, stop_ids)
    }

    fn keep_constrainer(&mut self, c: Constrainer) {
        self.constrainer = Some(c);
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Backend, provider and threads.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Each load step and its duration.
    pub fn load_steps(&self) -> &[LoadStep] {
        &self.steps
    }

    /// The remote backend's counters (calls, fall-backs, bytes); `None` on a local backend.
    pub fn remote_stats(&self) -> Option<Arc<backend::RemoteStats>> {
        self.backend.remote_stats()
    }

    /// One vision run for all `images`; one embedding per image, in order.
    pub fn encode_images(
        &mut self,
        images: &[ImageTensor],
    ) -> Result<Vec<ImageEmbedding>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.manifest.vision.image_size;
        let mut pixels = Vec::with_capacity(images.len() * 3 * s * s);
        for (k, image) in images.iter().enumerate() {
            if image.size != s || image.data.len() != 3 * s * s {
                return Err(ModelError::Input(format!(
                    "image {k} is a tensor of {} values (size {}), the vision graph takes 3×{s}×{s}",
                    image.data.len(),
                    image.size
                )));
            }
            pixels.extend_from_slice(&image.data);
        }
        let values = self.backend.vision(&pixels, images.len())?;
        let (t, h) = (
            self.manifest.vision.tokens_per_image,
            self.manifest.vision.embed_dim,
        );
        Ok(values
            .chunks_exact(t * h)
            .map(|rows| ImageEmbedding {
                tokens: t,
                dim: h,
                data: Arc::from(rows),
            })
            .collect())
    }

    /// The manifest's prompt for `question` with `images` image slots.
    pub fn prompt(&self, question: &str, images: usize) -> Result<Prompt, ModelError> {
        let p = &self.manifest.prompt;
        prompt::build(
            &p.template,
            &p.system,
            &p.image_placeholder,
            images,
            question,
            |t| self.tokenizer.encode(t),
        )
    }

    /// The manifest's template with `{question}` replaced by `text` (which may itself hold the
    /// policy's instruction).
    pub fn prompt_from_text(&self, text: &str, images: usize) -> Result<Prompt, ModelError> {
        self.prompt(text, images)
    }

    /// A fresh session (empty KV cache).
    pub fn session(&self) -> Result<Session, ModelError> {
        Ok(Session {
            cache: self.backend.new_cache()?,
            pending: Vec::new(),
            pending_len: 0,
            last_logits: None,
            truncated: 0,
            embed_time: Duration::ZERO,
        })
    }

    /// Generates the answer to `prompt` in a fresh session.
    pub fn generate(
        &mut self,
        prompt: &Prompt,
        images: &[ImageEmbedding],
        options: &GenerateOptions,
        on_token: &mut dyn FnMut(&Token),
    ) -> Result<Generation, ModelError> {
        let mut session = self.session()?;
        session.append(self, prompt, images, options.overflow)?;
        session.generate(self, options, on_token)
    }
}

/// One conversation's KV cache and the positions queued for the next forward pass.
pub struct Session {
    cache: KvCache,
    /// Spliced embeddings not yet run through the decoder, `[pending_len, H]`.
    pending: Vec<f32>,
    pending_len: usize,
    last_logits: Option<Vec<f32>>,
    truncated: usize,
    embed_time: Duration,
}

impl Session {
    /// Positions in the cache plus those queued.
    pub fn len(&self) -> usize {
        self.cache.past_len + self.pending_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `prompt`, with its image slots filled by `images`, after what the session holds.
    pub fn append(
        &mut self,
        engine: &mut Engine,
        prompt: &Prompt,
        images: &[ImageEmbedding],
        overflow: Overflow,
    ) -> Result<(), ModelError> {
        let started = Instant::now();
        let h = engine.manifest.llm.hidden_size;
        let limit = engine.manifest.llm.context_limit;
        let mut rows: Vec<f32> = Vec::new();
        let mut count = 0;
        for piece in &prompt.pieces {
            match piece {
                PromptPiece::Text(ids) => {
                    if let Some(bad) = ids
                        .iter()
                        .find(|&&id| id as usize >= engine.manifest.llm.vocab_size)
                    {
                        return Err(ModelError::Input(format!(
                            "token id {bad} is outside the vocabulary"
                        )));
                    }
                    if ids.is_empty() {
                        continue;
                    }
                    let embedded = engine.backend.embed(ids)?;
                    if embedded.len() != ids.len() * h {
                        return Err(ModelError::Input(format!(
                            "embed gave {} values for {} tokens",
                            embedded.len(),
                            ids.len()
                        )));
                    }
                    rows.extend_from_slice(&embedded);
                    count += ids.len();
                }
                PromptPiece::Image(k) => {
                    let image = images.get(*k).ok_or_else(|| {
                        ModelError::Input(format!(
                            "the prompt has image slot {} but {} image(s) were given",
                            k + 1,
                            images.len()
                        ))
                    })?;
                    if image.dim != h || image.data.len() != image.tokens * h {
                        return Err(ModelError::Input(format!(
                            "image {} embedding is {}×{}, the decoder takes rows of {h}",
                            k + 1,
                            image.tokens,
                            image.dim
                        )));
                    }
                    rows.extend_from_slice(&image.data);
                    count += image.tokens;
                }
            }
        }
        let total = self.len() + count;
        if total > limit {
            match overflow {
                Overflow::Refuse => return Err(ModelError::ContextOverflow { len: total, limit }),
                Overflow::Truncate => {
                    let drop = prompt::overflow(total, limit).min(count);
                    tracing::warn!("prompt is {total} positions, context limit {limit}: dropping the last {drop}");
                    count -= drop;
                    rows.truncate(count * h);
                    self.truncated += drop;
                }
            }
        }
        self.pending.extend_from_slice(&rows);
        self.pending_len += count;
        self.embed_time += started.elapsed();
        Ok(())
    }

    /// Queues text token ids (e.g. a stop token the model generated, or a follow-up turn).
    pub fn append_tokens(
        &mut self,
        engine: &mut Engine,
        ids: &[u32],
        overflow: Overflow,
    ) -> Result<(), ModelError> {
        self.append(
            engine,
            &Prompt {
                pieces: vec![PromptPiece::Text(ids.to_vec())],
            },
            &[],
            overflow,
        )
    }

    /// Runs what is queued, then decodes until a stop id, `max_new_tokens` or the context limit.
    /// Each new token goes to `on_token` as soon as it is chosen. Generated tokens stay in the
    /// cache (the last one is queued), so a follow-up `append` continues the conversation.
    pub fn generate(
        &mut self,
        engine: &mut Engine,
        options: &GenerateOptions,
        on_token: &mut dyn FnMut(&Token),
    ) -> Result<Generation, ModelError> {
        let limit = engine.manifest.llm.context_limit;
        let max_new = options
            .max_new_tokens
            .unwrap_or(engine.manifest.llm.max_new_tokens);
        let stop_ids = options
            .stop_ids
            .clone()
            .unwrap_or_else(|| engine.manifest.llm.stop_ids.clone());
        let mut rng = Rng::new(match options.sampling {
            Sampling::TopP { seed, .. } => seed,
            Sampling::Greedy => 0,
        });
        let mut timings = GenerationTimings {
            embed: std::mem::take(&mut self.embed_time),
            ..Default::default()
        };
        let started = Instant::now();
        timings.prefill_positions = self.pending_len;
        let mut logits = self.flush(engine)?;
        timings.prefill = started.elapsed();
        let mut constraint = match &options.grammar {
            Some(g) => {
                let c = engine.take_constrainer(g, &stop_ids)?;
                let start = c.grammar().start();
                Some((c, start))
            }
            None => None,
        };
        let mut ids: Vec<u32> = Vec::new();
        let mut stop = FinishReason::MaxNewTokens;
        let mut last = Instant::now();
        while ids.len() < max_new {
            let Some(current) = logits.take() else {
                return Err(ModelError::Input(
                    "nothing to generate from: the prompt is empty".into(),
                ));
            };
            let id = match constraint.as_mut() {
                None => sampling::choose(&current, &options.sampling, &mut rng) as u32,
                Some((c, state)) => {
                    let t = Instant::now();
                    let id = c.choose(*state, &current, &options.sampling, &mut rng)?;
                    *state = c.advance(*state, id).ok_or_else(|| {
                        ModelError::Input(format!(
                            "constrained decoding: token {id} left the grammar in state {state:?}"
                        ))
                    })?;
                    timings.constrain += t.elapsed();
                    id
                }
            };
            ids.push(id);
            let text = engine.tokenizer.decode(&[id], true)?;
            on_token(&Token {
                id,
                text,
                took: last.elapsed(),
            });
            self.last_logits = None;
            if stop_ids.contains(&id) {
                stop = FinishReason::StopToken;
                self.queue_token(engine, id)?;
                break;
            }
            if ids.len() >= max_new {
                self.queue_token(engine, id)?;
                break;
            }
            if self.cache.past_len + 1 > limit {
                stop = FinishReason::ContextLimit;
                break;
            }
            let step = Instant::now();
            self.queue_token(engine, id)?;
            logits = self.flush(engine)?;
            timings.decode_steps.push(step.elapsed());
            last = Instant::now();
        }
        if let Some((c, _)) = constraint {
            engine.keep_constrainer(c);
        }
        let text = engine.tokenizer.decode(&ids, true)?.trim().to_string();
        Ok(Generation {
            text,
            token_ids: ids,
            stop,
            truncated: std::mem::take(&mut self.truncated),
            timings,
        })
    }

    fn queue_token(&mut self, engine: &mut Engine, id: u32) -> Result<(), ModelError> {
        let row = engine.backend.embed(&[id])?;
        self.pending.extend_from_slice(&row);
        self.pending_len += 1;
        Ok(())
    }

    /// Runs the queued positions through the decoder; the last position's logits.
    fn flush(&mut self, engine: &mut Engine) -> Result<Option<Vec<f32>>, ModelError> {
        if self.pending_len == 0 {
            return Ok(self.last_logits.take());
        }
        let logits = engine
            .backend
            .decode(&mut self.cache, &self.pending, self.pending_len)?;
        self.pending.clear();
        self.pending_len = 0;
        Ok(Some(logits))
    }
}
