//! A model folder on disk: its manifest, and every file checked against the manifest's sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, MANIFEST_FILE};
use super::ModelError;

/// A model folder whose manifest parsed and whose files all match their sha256.
#[derive(Clone, Debug)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// How long reading the manifest and hashing the files took.
    pub open_time: Duration,
}

/// Reads and parses `DIR/manifest.toml`; a missing file asks whether DIR is a model folder.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ModelError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| ModelError::Io {
        file: manifest_path.clone(),
        reason: format!(
            "{e}; is {} a model folder (models/MANIFEST.md)?",
            dir.display()
        ),
    })?;
    Manifest::parse(&text, &manifest_path.display().to_string())
}

impl ModelFolder {
    /// Reads `DIR/manifest.toml` and checks the sha256 of every file it lists.
    pub fn open(dir: impl AsRef<Path>) -> Result<ModelFolder, ModelError> {
        let started = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        let manifest = read_manifest(&dir)?;
        for (name, expected) in &manifest.files {
            let path = dir.join(name);
            let actual = sha256_file(&path)?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(ModelError::HashMismatch {
                    file: path,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(ModelFolder {
            dir,
            manifest,
            open_time: started.elapsed(),
        })
    }

    /// Path of a file inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A short identity for caches: 16 hex digits of a sha256 over the manifest's file hashes.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, hash) in &self.manifest.files {
            hasher.update(name.as_bytes());
            hasher.update(hash.as_bytes());
        }
        hex(&hasher.finalize())[..16].to_string()
    }
}

pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io_err = |e: std::io::Error| ModelError::Io {
        file: path.to_path_buf(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "missing: the manifest lists it; re-export the model folder".to_string()
        } else {
            e.to_string()
        },
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
