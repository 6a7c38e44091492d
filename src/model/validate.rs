//! The one validator of model folders, used by `run`, `bench`, `ask` and `doctor`: what a folder
//! needs before any backend loads it. Every error is the user's to fix and names the file (and
//! the field): the manifest (schema, caps from `crate::limits`, action names against the wire's
//! axes), each listed file's sha256, the folder's kind, the policy section as the control loop
//! reads it, and `tokenizer.json` (it must load and fit `llm.vocab_size`). The graphs' inputs and
//! outputs are checked against the manifest when a backend loads them (`Engine::load`), with
//! errors naming the graph file.

use std::path::Path;

use super::manifest::{ModelKind, MANIFEST_FILE};
use super::tokenizer::TextTokenizer;
use super::{ModelError, ModelFolder};

/// Checks an opened folder: its kind (when `want` is given) and, for a policy, its `[policy]`
/// and `[prompt]` sections as the control loop reads them. Cheap: no file besides the manifest
/// is read.
pub fn check_opened(folder: &ModelFolder, want: Option<ModelKind>) -> Result<(), ModelError> {
    let manifest_path = folder.path(MANIFEST_FILE);
    let manifest_err = |reason: String| ModelError::Manifest {
        file: manifest_path.display().to_string(),
        reason,
    };
    if let Some(want) = want {
        if folder.manifest.kind != want {
            return Err(manifest_err(format!(
                "kind is \"{}\", not \"{}\"; pass a {} model folder",
                folder.manifest.kind.name(),
                want.name(),
                want.name()
            )));
        }
    }
    if folder.manifest.kind == ModelKind::Policy {
        folder
            .manifest
            .policy_spec()
            .map_err(|e| manifest_err(e.to_string()))?;
    }
    Ok(())
}

/// Loads the folder's `tokenizer.json` and checks it against `llm.vocab_size`.
pub fn load_tokenizer(folder: &ModelFolder) -> Result<TextTokenizer, ModelError> {
    let path = folder.path("tokenizer.json");
    if !path.exists() {
        return Err(ModelError::Tokenizer {
            file: path,
            reason: "missing: the model folder needs it (models/MANIFEST.md)".into(),
        });
    }
    let tokenizer = TextTokenizer::from_file(&path)?;
    let vocab = tokenizer.vocab_size();
    if vocab > folder.manifest.llm.vocab_size {
        return Err(ModelError::Tokenizer {
            file: path,
            reason: format!(
                "has {vocab} tokens but llm.vocab_size is {}; the tokenizer does not belong to this model",
                folder.manifest.llm.vocab_size
            ),
        });
    }
    Ok(tokenizer)
}

/// The whole check of the folder at `dir`: manifest, sha256 of every file, kind, policy
/// sections and tokenizer. The opened folder on success.
pub fn validate_folder(dir: &Path, want: Option<ModelKind>) -> Result<ModelFolder, ModelError> {
    let folder = ModelFolder::open(dir)?;
    check_opened(&folder, want)?;
    load_tokenizer(&folder)?;
    Ok(folder)
}
