//! File helpers that never leave a half-written output behind and never write over an input.
//!
//! Every file a command writes under a name the user gave (`pack`, `preprocess`, `register`,
//! `bench --out`, a recording's index files) goes through [`write_atomic`] or
//! [`write_atomic_with`]:
//!
//! - the bytes go to a temporary file in the folder of the file being replaced
//!   (`.NAME.tmp-PID-N`), are synced, and the temporary is renamed over the target: a reader, a
//!   crash or a power cut sees the old file or the new one, never a truncated one;
//! - an error removes the temporary; after [`remove_temps_on_signal`], so does SIGINT or SIGTERM
//!   (the process then dies of that signal as it would have without the handler);
//! - an output that is a symbolic link is written *through*: the file the link (or chain of
//!   links) points to is replaced atomically and the link itself is kept. A hard link is a name
//!   like any other: the name given is replaced, other names of the old file keep the old bytes.
//!
//! [`check_output`] refuses, before any work, an output that is one of the command's inputs
//! (the same file by device and inode, so through symbolic links, `..` and hard links too) or a
//! folder.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

/// Temporary files being written now. The signal cleanup removes them while holding the lock and
/// never releases it, so a temporary is never created or renamed after the cleanup looked.
static LIVE_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn live_temps() -> MutexGuard<'static, Vec<PathBuf>> {
    LIVE_TEMPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads a text file of at most `max_bytes` (an input a user gave: never an unbounded read);
/// a larger one is an error saying its size and the limit.
pub fn read_to_string_limited(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    let len = std::fs::metadata(path)?.len();
    if len > max_bytes {
        return Err(std::io::Error::other(format!(
            "{len} bytes; at most {max_bytes} are read (docs/limits.md)"
        )));
    }
    std::fs::read_to_string(path)
}

/// Writes `bytes` to a temporary file beside the file `path` names, syncs it, then renames it
/// over that file. A crash or an error leaves either the old file or none, never a truncated one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], with `fill` writing the contents into the temporary file. An error from
/// `fill` (or from syncing or renaming) removes the temporary and is returned.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let target = resolve_output(path)?;
    let tmp = temp_sibling(&target);
    let mut file = {
        let mut live = live_temps();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        live.push(tmp.clone());
        file
    };
    let result = fill(&mut file).and_then(|()| file.sync_all());
    drop(file);
    let mut live = live_temps();
    let result = result.and_then(|()| std::fs::rename(&tmp, &target));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    live.retain(|p| p != &tmp);
    drop(live);
    if result.is_ok() {
        sync_parent(&target);
    }
    result
}

/// Syncs the folder holding `path`, so the rename itself survives a power cut (best effort).
fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The file a write to `path` replaces: `path` itself, or where its chain of symbolic links
/// ends (a relative link is relative to the folder holding it). Fails on a loop of links.
pub fn resolve_output(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = if link.is_absolute() {
                    link
                } else {
                    match current.parent() {
                        Some(dir) => dir.join(link),
                        None => link,
                    }
                };
            }
            _ => return Ok(current),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{name}.tmp-{}-{n}", std::process::id());
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tmp_name),
        _ => PathBuf::from(tmp_name),
    }
}

/// Why an output path was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{out_flag} {out} is the same file as {in_flag} {input}; refusing to overwrite an input (choose another {out_flag})")]
    SameAsInput {
        out_flag: String,
        out: String,
        in_flag: String,
        input: String,
    },
    #[error("{out_flag} {out} is a folder; give a file name")]
    IsFolder { out_flag: String, out: String },
}

/// Refuses an output file that is a folder, or that is (or resolves to, through symbolic links,
/// `..` or a hard link) one of `inputs`, given as (flag, path) pairs. An output that does not
/// exist yet is never an input.
pub fn check_output(
    out_flag: &str,
    out: &Path,
    inputs: &[(&str, &Path)],
) -> Result<(), OutputError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out_meta) = std::fs::metadata(out) else {
        return Ok(());
    };
    if out_meta.is_dir() {
        return Err(OutputError::IsFolder {
            out_flag: out_flag.into(),
            out: out.display().to_string(),
        });
    }
    for (in_flag, input) in inputs {
        if let Ok(in_meta) = std::fs::metadata(input) {
            if (in_meta.dev(), in_meta.ino()) == (out_meta.dev(), out_meta.ino()) {
                return Err(OutputError::SameAsInput {
                    out_flag: out_flag.into(),
                    out: out.display().to_string(),
                    in_flag: (*in_flag).into(),
                    input: input.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// From now on SIGINT and SIGTERM first remove the temporary files of writes in progress, then
/// end the process the way the signal's default action does (so the exit status still says which
/// signal it was). For commands with no signal handling of their own: one that stops gracefully
/// on a signal (`run`, `record`) must not call this. Installing twice is harmless.
pub fn remove_temps_on_signal() -> std::io::Result<()> {
    static INSTALLED: Once = Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| result = install_signal_cleanup());
    result
}

fn install_signal_cleanup() -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let (mut read, write) = UnixStream::pair()?;
    let which = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Handlers run in the order registered: the flag says which signal, the pipe wakes us.
        signal_hook::flag::register_usize(sig, which.clone(), sig as usize)?;
        signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
    }
    std::thread::Builder::new()
        .name("temp-cleanup".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            // Wakes once per signal; a read error (never expected) leaves the defaults in place.
            if read.read_exact(&mut byte).is_err() {
                return;
            }
            let sig = which.load(Ordering::SeqCst) as i32;
            let live = live_temps();
            for tmp in live.iter() {
                if std::fs::remove_file(tmp).is_ok() {
                    eprintln!("interrupted: removed the unfinished {}", tmp.display());
                }
            }
            let _ = std::io::stderr().flush();
            let _ = signal_hook::low_level::emulate_default_handler(sig);
            // Only reached if the default action did not end the process.
            std::process::exit(128 + sig);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_into_missing_dir_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("out.bin");
        assert!(write_atomic(&p, b"x").is_err());
    }

    #[test]
    fn a_failed_fill_removes_the_temp_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk on fire"));
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(live_temps().iter().all(|t| !t.starts_with(dir.path())));
    }

    #[test]
    fn a_rename_over_a_folder_fails_and_removes_the_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("keep"), b"k").unwrap();
        assert!(write_atomic(&p, b"x").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_is_written_through_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.bin");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink("real.bin", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_link_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(write_atomic(&a, b"x").is_err());
    }

    #[test]
    fn outputs_that_are_inputs_or_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.png");
        std::fs::write(&input, b"i").unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let dotdot = sub.join("..").join("in.png");
        let hard = dir.path().join("hard.png");
        std::fs::hard_link(&input, &hard).unwrap();
        let soft = dir.path().join("soft.png");
        std::os::unix::fs::symlink(&input, &soft).unwrap();
        for out in [&input, &dotdot, &hard, &soft] {
            let e = check_output("--out", out, &[("--depth", &input)]).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("--depth") && text.contains("in.png"),
                "{text}"
            );
        }
        assert!(matches!(
            check_output("--out", &sub, &[]),
            Err(OutputError::IsFolder { .. })
        ));
        let fresh = dir.path().join("new.png");
        check_output("--out", &fresh, &[("--depth", &input)]).unwrap();
        let other = dir.path().join("other.png");
        std::fs::write(&other, b"o").unwrap();
        check_output("--out", &other, &[("--depth", &input)]).unwrap();
    }
}
