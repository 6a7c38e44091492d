//! Model folders verified once per file version, not at every start: hashing a full-size policy
//! (3.5 GB) costs seconds of startup. A stamp beside the engine cache records, per file the
//! manifest lists, the identity the file had when its sha256 was checked (device, inode, size,
//! mtime, ctime) and the hash it matched. A file whose identity and manifest hash are unchanged
//! is not hashed again; any write to it changes its ctime, so it is.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::folder::{read_manifest, sha256_file};
use crate::model::{ModelError, ModelFolder};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    sha256: String,
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stamps {
    files: BTreeMap<String, FileStamp>,
}

fn identity(path: &Path, sha256: &str) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        sha256: sha256.to_ascii_lowercase(),
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}

/// The stamp file for model folder `dir` inside `stamp_dir`.
pub fn stamp_path(stamp_dir: &Path, dir: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    stamp_dir.join(format!("verified-{hex}.json"))
}

/// What [`open_model_folder`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub files_hashed: usize,
    pub files_trusted: usize,
    /// Why the stamp could not be written (verification itself succeeded), if it could not.
    pub stamp_error: Option<String>,
}

/// [`ModelFolder::open`] with the sha256 check skipped for files unchanged since a previous
/// check recorded in `stamp_dir`. Without `stamp_dir`, every file is hashed.
pub fn open_model_folder(
    dir: &Path,
    stamp_dir: Option<&Path>,
) -> Result<(ModelFolder, Verification), ModelError> {
    let started = Instant::now();
    let manifest = read_manifest(dir)?;
    let stamp_file = stamp_dir.map(|d| stamp_path(d, dir));
    let previous: Stamps = stamp_file
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut now = Stamps::default();
    let mut v = Verification {
        files_hashed: 0,
        files_trusted: 0,
        stamp_error: None,
    };
    for (name, expected) in &manifest.files {
        let path = dir.join(name);
        let before = identity(&path, expected);
        if before.is_some() && previous.files.get(name) == before.as_ref() {
            v.files_trusted += 1;
        } else {
            let actual = sha256_file(&path)?;
            v.files_hashed += 1;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(ModelError::HashMismatch {
                    file: path,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        // Identity taken before hashing: a write during the hash leaves a stale stamp.
        if let Some(stamp) = before {
            now.files.insert(name.clone(), stamp);
        }
    }
    if let Some(p) = stamp_file.filter(|_| v.files_hashed > 0) {
        v.stamp_error = write_stamps(&p, &now).err();
    }
    let folder = ModelFolder {
        dir: dir.to_path_buf(),
        manifest,
        open_time: started.elapsed(),
    };
    Ok((folder, v))
}

fn write_stamps(path: &Path, stamps: &Stamps) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(stamps).map_err(|e| e.to_string())?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    crate::fsutil::write_atomic(path, &text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with the tiny policy's manifest whose four files are small stand-ins;
    /// `decoder.onnx` holds `content`.
    fn folder(dir: &Path, content: &[u8]) {
        let manifest = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-policy/manifest.toml"),
        )
        .unwrap();
        let mut text = manifest[..manifest.find("[files]").unwrap()].to_string() + "[files]\n";
        for name in [
            "decoder.onnx",
            "embed.onnx",
            "tokenizer.json",
            "vision.onnx",
        ] {
            let bytes = if name == "decoder.onnx" {
                content.to_vec()
            } else {
                name.as_bytes().to_vec()
            };
            std::fs::write(dir.join(name), &bytes).unwrap();
            let hash: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            text += &format!("\"{name}\" = \"{hash}\"\n");
        }
        std::fs::write(dir.join("manifest.toml"), text).unwrap();
    }

    #[test]
    fn hashes_once_then_again_after_a_change() {
        let tmp = tempfile::tempdir().unwrap();
        let (model, stamps) = (tmp.path().join("m"), tmp.path().join("cache"));
        std::fs::create_dir_all(&model).unwrap();
        folder(&model, b"weights v1");
        let (_, v) = open_model_folder(&model, Some(&stamps)).unwrap();
        assert_eq!(
            (v.files_hashed, v.files_trusted, v.stamp_error),
            (4, 0, None)
        );
        let (_, v) = open_model_folder(&model, Some(&stamps)).unwrap();
        assert_eq!((v.files_hashed, v.files_trusted), (0, 4));

        // Same length, new content, manifest not updated: found, because ctime moved.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(model.join("decoder.onnx"), b"weights v2").unwrap();
        assert!(matches!(
            open_model_folder(&model, Some(&stamps)),
            Err(ModelError::HashMismatch { .. })
        ));
        folder(&model, b"weights v2");
        let (_, v) = open_model_folder(&model, Some(&stamps)).unwrap();
        assert_eq!((v.files_hashed, v.files_trusted), (4, 0), "rewritten files");
        let (_, v) = open_model_folder(&model, Some(&stamps)).unwrap();
        assert_eq!((v.files_hashed, v.files_trusted), (0, 4));
        let (_, v) = open_model_folder(&model, None).unwrap();
        assert_eq!((v.files_hashed, v.files_trusted), (4, 0));
    }
}
