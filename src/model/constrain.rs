//! Constrained decoding: a [`Grammar`] turned into a mask over the tokenizer's vocabulary at
//! each step, applied to the logits before the choice (docs/decoding.md).
//!
//! Each token's text is decoded once per tokenizer ([`TokenTable`]); the allowed set of a
//! grammar state is computed once (running the state machine over every token's text) and kept
//! ([`Constrainer`]'s cache), so a step costs a hash look-up and a pass over the allowed ids
//! (structured states) or over the logits (free text).

use std::collections::HashMap;
use std::sync::Arc;

use super::grammar::{Grammar, State};
use super::sampling::{self, Rng, Sampling};
use super::tokenizer::TextTokenizer;
use super::ModelError;

/// Most grammar states whose masks are kept; past it the cache starts again.
const MAX_CACHED_STATES: usize = 4096;

/// Every token's text, special tokens as "" (they are skipped in the answer's text).
pub struct TokenTable {
    texts: Vec<Box<str>>,
}

impl TokenTable {
    pub fn new(tokenizer: &TextTokenizer, vocab_size: usize) -> Result<TokenTable, ModelError> {
        let mut texts = Vec::with_capacity(vocab_size);
        for id in 0..vocab_size {
            let text = tokenizer.decode(&[id as u32], true)?;
            texts.push(text.into_boxed_str());
        }
        Ok(TokenTable { texts })
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    pub fn text(&self, id: u32) -> &str {
        self.texts.get(id as usize).map_or("", |t| t)
    }
}

/// The tokens a state allows.
#[derive(Debug)]
enum Mask {
    /// Only these ids, ascending.
    Only(Vec<u32>),
    /// All but these ids, ascending.
    AllBut(Vec<u32>),
}

impl Mask {
    fn allows(&self, id: u32) -> bool {
        match self {
            Mask::Only(ids) => ids.binary_search(&id).is_ok(),
            Mask::AllBut(ids) => ids.binary_search(&id).is_err(),
        }
    }
}

/// A grammar over one tokenizer's vocabulary, with the masks of the states seen so far.
pub struct Constrainer {
    grammar: Grammar,
    table: Arc<TokenTable>,
    stop_ids: Vec<u32>,
    masks: HashMap<State, Arc<Mask>>,
}

impl Constrainer {
    /// Refuses a grammar the vocabulary cannot finish: each character of the grammar's
    /// alphabet must be a token of its own, and an action list needs a stop token.
    pub fn new(
        grammar: Grammar,
        table: Arc<TokenTable>,
        stop_ids: &[u32],
    ) -> Result<Constrainer, ModelError> {
        for c in grammar.alphabet().chars() {
            let mut buf = [0u8; 4];
            let s: &str = c.encode_utf8(&mut buf);
            if !table.texts.iter().any(|t| &**t == s) {
                return Err(ModelError::Input(format!(
                    "constrained decoding: the tokenizer has no token for {c:?}, which the grammar needs"
                )));
            }
        }
        if matches!(grammar, Grammar::ActionList { .. }) && stop_ids.is_empty() {
            return Err(ModelError::Input(
                "constrained decoding: an action list needs a stop token (llm.stop_ids is empty)"
                    .into(),
            ));
        }
        let mut stop_ids = stop_ids.to_vec();
        stop_ids.sort_unstable();
        Ok(Constrainer {
            grammar,
            table,
            stop_ids,
            masks: HashMap::new(),
        })
    }

    pub fn grammar(&self) -> &Grammar {
        &self.grammar
    }

    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    fn mask(&mut self, state: State) -> Arc<Mask> {
        if let Some(m) = self.masks.get(&state) {
            return m.clone();
        }
        let accepting = self.grammar.accepts(&state);
        let structured = !self.grammar.is_free(&state);
        let allowed = |id: u32, text: &str| -> bool {
            if self.stop_ids.binary_search(&id).is_ok() {
                return accepting;
            }
            if text.is_empty() {
                // A token that adds no text: harmless in free text, never progress inside a
                // structure.
                return !structured;
            }
            self.grammar.run(state, text).is_some()
        };
        let ids = (0..self.table.len() as u32).filter(|&id| {
            let ok = allowed(id, self.table.text(id));
            ok == structured
        });
        let mask = Arc::new(if structured {
            Mask::Only(ids.collect())
        } else {
            Mask::AllBut(ids.collect())
        });
        if self.masks.len() >= MAX_CACHED_STATES {
            self.masks.clear();
        }
        self.masks.insert(state, mask.clone());
        mask
    }

    /// The next token in `state`: the choice `sampling` makes among the allowed tokens. The
    /// highest allowed logit under greedy (ties to the lowest id, NaN never wins); the lowest
    /// allowed id when no allowed logit is above −∞.
    pub fn choose(
        &mut self,
        state: State,
        logits: &[f32],
        sampling: &Sampling,
        rng: &mut Rng,
    ) -> Result<u32, ModelError> {
        let mask = self.mask(state);
        let first = match &*mask {
            Mask::Only(ids) => ids.first().copied(),
            Mask::AllBut(ids) => (0..logits.len() as u32).find(|i| ids.binary_search(i).is_err()),
        };
        let Some(first) = first.filter(|&id| (id as usize) < logits.len()) else {
            return Err(ModelError::Input(format!(
                "constrained decoding: no token can continue the answer in state {state:?}"
            )));
        };
        let best = match &*mask {
            Mask::Only(ids) => masked_argmax(logits, ids.iter().copied(), first),
            Mask::AllBut(ids) => {
                let mut skip = ids.iter().copied().peekable();
                let allowed = (0..logits.len() as u32).filter(move |&i| {
                    while skip.next_if(|&s| s < i).is_some() {}
                    skip.peek() != Some(&i)
                });
                masked_argmax(logits, allowed, first)
            }
        };
        match sampling {
            Sampling::Greedy => Ok(best),
            Sampling::TopP { .. } => {
                if !logits.get(best as usize).is_some_and(|v| v.is_finite()) {
                    return Ok(best);
                }
                let masked: Vec<f32> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        if mask.allows(i as u32) {
                            v
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect();
                let id = sampling::choose(&masked, sampling, rng) as u32;
                Ok(if mask.allows(id) { id } else { best })
            }
        }
    }

    /// The state after token `id`; `None` when the token leaves the grammar (never for a token
    /// [`Constrainer::choose`] gave).
    pub fn advance(&self, state: State, id: u32) -> Option<State> {
        if self.stop_ids.binary_search(&id).is_ok() {
            return self.grammar.accepts(&state).then_some(state);
        }
        self.grammar.run(state, self.table.text(id))
    }

    /// Grammar states whose masks are cached.
    pub fn cached_states(&self) -> usize {
        self.masks.len()
    }
}

/// The allowed id with the highest logit, the first on ties; `fallback` when none is above −∞.
fn masked_argmax(logits: &[f32], allowed: impl Iterator<Item = u32>, fallback: u32) -> u32 {
    let mut best = fallback;
    let mut best_value = f32::NEG_INFINITY;
    for id in allowed {
        if let Some(&v) = logits.get(id as usize) {
            if v > best_value {
                best = id;
                best_value = v;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::grammar::ValueRange;
    use crate::policy::{action_from_answer, ActionLayout};

    fn table(model: &str) -> (TextTokenizer, Arc<TokenTable>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(model)
            .join("tokenizer.json");
        let tok = TextTokenizer::from_file(&path).unwrap();
        let n = tok.vocab_size();
        let table = Arc::new(TokenTable::new(&tok, n).unwrap());
        (tok, table)
    }

    /// Runs `c` to the end with `logits(step, state)` as the model.
    fn decode(
        c: &mut Constrainer,
        tok: &TextTokenizer,
        max: usize,
        mut logits: impl FnMut(usize) -> Vec<f32>,
    ) -> String {
        let mut state = c.grammar().start();
        let mut ids = Vec::new();
        let mut rng = Rng::new(1);
        for step in 0..max {
            let id = c
                .choose(state, &logits(step), &Sampling::Greedy, &mut rng)
                .unwrap();
            state = c
                .advance(state, id)
                .expect("a chosen token stays in the grammar");
            if c.stop_ids().contains(&id) {
                break;
            }
            ids.push(id);
        }
        tok.decode(&ids, true).unwrap()
    }

    #[test]
    fn hostile_logits_still_give_a_well_formed_action() {
        let (tok, table) = table("tiny-policy");
        let layout = ActionLayout::maniskill();
        let grammar = Grammar::for_actions(&layout).unwrap();
        let mut c = Constrainer::new(grammar, table.clone(), &[0]).unwrap();
        let n = table.len();
        // Letters and brackets of the wrong kind high, everything else low; the stop token
        // highest of all; then NaN and −∞ everywhere; then a seeded random vector per step.
        let garbage: Vec<f32> = (0..n as u32)
            .map(|id| {
                let t = table.text(id);
                if id == 0 {
                    100.0
                } else if t.chars().any(|ch| ch.is_alphabetic() || "({<".contains(ch)) {
                    50.0
                } else {
                    -50.0
                }
            })
            .collect();
        let mut noise = Rng::new(7);
        let vectors: Vec<Box<dyn FnMut(usize) -> Vec<f32>>> = vec![
            Box::new(|_| garbage.clone()),
            Box::new(|_| vec![f32::NAN; n]),
            Box::new(|_| vec![f32::NEG_INFINITY; n]),
            Box::new(move |_| (0..n).map(|_| noise.next_f64() as f32 * 20.0).collect()),
        ];
        for (k, mut v) in vectors.into_iter().enumerate() {
            let text = decode(&mut c, &tok, 128, &mut v);
            let values = action_from_answer(&layout, &text)
                .unwrap_or_else(|e| panic!("vector {k}: {text:?}: {e}"));
            assert_eq!(values.len(), 8, "{text:?}");
            for (d, v) in layout.dims().iter().zip(&values) {
                if let (Some(lo), Some(hi)) = (d.min, d.max) {
                    let eps = 1e-6;
                    assert!(
                        *v >= f64::from(lo) - eps && *v <= f64::from(hi) + eps,
                        "vector {k}: {} = {v} outside [{lo}, {hi}] in {text:?}",
                        d.name
                    );
                }
            }
        }
    }

    #[test]
    fn a_depth_call_opened_by_hostile_logits_is_always_closed_well() {
        let (tok, table) = table("tiny-spatialbot");
        let mut c = Constrainer::new(Grammar::DepthCalls, table.clone(), &[0]).unwrap();
        let id_of = |s: &str| {
            (0..table.len() as u32)
                .find(|&i| table.text(i) == s)
                .unwrap()
        };
        // Spell "Depth(" and then push garbage: letters and a far-out "9" high.
        let opening: Vec<u32> = "Depth(".chars().map(|ch| id_of(&ch.to_string())).collect();
        let nine = id_of("9");
        let text = decode(&mut c, &tok, 40, |step| {
            let mut l = vec![0.0f32; table.len()];
            if let Some(&id) = opening.get(step) {
                l[id as usize] = 100.0;
            } else {
                for (i, v) in l.iter_mut().enumerate() {
                    if table.text(i as u32).chars().all(char::is_alphabetic) {
                        *v = 60.0;
                    }
                }
                l[nine as usize] = 80.0;
                l[0] = 90.0;
            }
            l
        });
        let calls = crate::model::depth_api::parse_calls(&text);
        assert_eq!(calls.len(), 1, "{text:?}");
        let (x, y) = (calls[0].x.unwrap(), calls[0].y.unwrap());
        assert!(
            (0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y),
            "{text:?}"
        );
    }

    #[test]
    fn a_vocabulary_without_the_grammars_characters_is_refused() {
        let (_, table) = table("tiny-policy");
        let empty = Arc::new(TokenTable {
            texts: table
                .texts
                .iter()
                .map(|t| t.replace(['[', ']'], "x").into())
                .collect(),
        });
        let g = Grammar::action_list(vec![ValueRange::UNIT]).unwrap();
        assert!(Constrainer::new(g.clone(), empty, &[0]).is_err());
        assert!(Constrainer::new(g, table, &[]).is_err(), "no stop token");
    }
}
