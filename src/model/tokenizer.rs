//! The model folder's `tokenizer.json`, through the `tokenizers` crate (pure-Rust regex backend).

use std::path::{Path, PathBuf};

use super::ModelError;

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    file: PathBuf,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<TextTokenizer, ModelError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            file: path.to_path_buf(),
            reason: format!("not a loadable tokenizer.json ({e}); re-export the model folder"),
        })?;
        Ok(TextTokenizer {
            inner,
            file: path.to_path_buf(),
        })
    }

    /// Token ids of `text` with no special tokens added (no BOS: reference §2.2).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| self.error(format!("cannot tokenise {text:?}: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special` drops special tokens such as `<|endoftext|>`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| self.error(format!("cannot decode {ids:?}: {e}")))
    }

    /// The id of a token string, e.g. `"<|endoftext|>"`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn error(&self, reason: String) -> ModelError {
        ModelError::Tokenizer {
            file: self.file.clone(),
            reason,
        }
    }
}
