//! Outputs never destroy inputs, recordings survive being stopped or killed, and replay never
//! waits on absurd timestamps: driven through the real `spatialbot-edge` binary.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

fn sample() -> PathBuf {
    support::repo_root().join("tests/data/sample")
}

/// Copies of the sample's calibration and first depth and colour frames in `dir`.
fn inputs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let calib = dir.join("calib.toml");
    let depth = dir.join("depth.png");
    let color = dir.join("color.png");
    std::fs::copy(sample().join("calibration.toml"), &calib).unwrap();
    std::fs::copy(sample().join("depth/000000.png"), &depth).unwrap();
    std::fs::copy(sample().join("color/000000.png"), &color).unwrap();
    (calib, depth, color)
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(support::bin()).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Files in `dir` whose names say they are this crate's temporaries.
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// Waits for `child` at most `limit`; kills it and fails the test past that.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stderr: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill failed");
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (calib, depth, color) = inputs(dir.path());
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let hard = dir.path().join("hard.png");
    std::fs::hard_link(&depth, &hard).unwrap();
    let soft = dir.path().join("soft.png");
    std::os::unix::fs::symlink(&depth, &soft).unwrap();
    let dotdot = sub.join("..").join("depth.png");
    let depth_bytes = std::fs::read(&depth).unwrap();
    let calib_bytes = std::fs::read(&calib).unwrap();
    let color_bytes = std::fs::read(&color).unwrap();

    for out in [&depth, &hard, &soft, &dotdot] {
        for args in [
            vec!["pack".as_ref(), "--depth".as_ref(), depth.as_os_str()],
            vec![
                "register".as_ref(),
                "--calib".as_ref(),
                calib.as_os_str(),
                "--depth".as_ref(),
                depth.as_os_str(),
            ],
        ] {
            let mut args = args.clone();
            args.extend(["--out".as_ref(), out.as_os_str()]);
            let o = run(&args);
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("--depth")
                    && err.contains(&depth.display().to_string())
                    && err.contains(&out.display().to_string()),
                "{args:?}: {err}"
            );
        }
    }
    let o = run(&[
        "register".as_ref(),
        "--calib".as_ref(),
        calib.as_os_str(),
        "--depth".as_ref(),
        depth.as_os_str(),
        "--out".as_ref(),
        calib.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--calib"), "{}", text(&o.stderr));
    let o = run(&[
        "preprocess".as_ref(),
        "--image".as_ref(),
        color.as_os_str(),
        "--tower".as_ref(),
        "clip".as_ref(),
        "--out".as_ref(),
        color.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--image"), "{}", text(&o.stderr));
    // A folder is not a file name.
    let o = run(&[
        "pack".as_ref(),
        "--depth".as_ref(),
        depth.as_os_str(),
        "--out".as_ref(),
        sub.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));

    assert_eq!(std::fs::read(&depth).unwrap(), depth_bytes);
    assert_eq!(std::fs::read(&calib).unwrap(), calib_bytes);
    assert_eq!(std::fs::read(&color).unwrap(), color_bytes);
    assert!(temps(dir.path()).is_empty() && temps(&sub).is_empty());
}

#[test]
fn a_symlink_output_is_written_through_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_, depth, _) = inputs(dir.path());
    let real_dir = dir.path().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("packed.png");
    std::fs::write(&real, b"old contents").unwrap();
    let link = dir.path().join("link.png");
    std::os::unix::fs::symlink("real/packed.png", &link).unwrap();
    let o = run(&[
        "pack".as_ref(),
        "--depth".as_ref(),
        depth.as_os_str(),
        "--out".as_ref(),
        link.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let packed = spatialbot_edge::imageio::read_rgb_png(&real).unwrap();
    let want = spatialbot_edge::imageio::read_depth_png(&depth).unwrap();
    assert_eq!((packed.width, packed.height), (want.width(), want.height()));
    assert!(temps(dir.path()).is_empty() && temps(&real_dir).is_empty());
}

#[test]
fn sigterm_mid_write_removes_the_temporary_file() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Noise does not compress: a ~95 MB PNG whose write takes long enough to catch, inside the
    // image cap (src/limits.rs: at most 8192×4096 pixels).
    let (w, h) = (8000usize, 4000usize);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mm: Vec<u32> = (0..w * h)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 48) as u32
        })
        .collect();
    let depth = dir.path().join("noise.png");
    let image = spatialbot_edge::rgbd::DepthMm::from_mm(w, h, mm).unwrap();
    spatialbot_edge::imageio::write_depth_png(&depth, &image).unwrap();
    drop(image);
    let out = dir.path().join("out.png");
    let mut caught = false;
    for _attempt in 0..3 {
        let mut child = Command::new(support::bin())
            .args(["pack", "--depth"])
            .arg(&depth)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = false;
        while Instant::now() < deadline {
            if !temps(dir.path()).is_empty() {
                seen = true;
                break;
            }
            if out.exists() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "pack failed before writing: {status:?}");
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if !seen {
            // The write finished between two looks: try again.
            wait_bounded(child, Duration::from_secs(60));
            let _ = std::fs::remove_file(&out);
            continue;
        }
        signal(&child, libc::SIGTERM);
        let o = wait_bounded(child, Duration::from_secs(60));
        if o.status.success() {
            // The signal came after the rename: nothing to clean up; try again.
            let _ = std::fs::remove_file(&out);
            continue;
        }
        assert_eq!(o.status.signal(), Some(libc::SIGTERM), "{o:?}");
        assert!(
            text(&o.stderr).contains("removed the unfinished"),
            "{}",
            text(&o.stderr)
        );
        assert!(temps(dir.path()).is_empty(), "{:?}", temps(dir.path()));
        assert!(!out.exists());
        caught = true;
        break;
    }
    assert!(caught, "never caught the write in progress in 3 tries");
}

/// Starts `record` of a paced synthetic camera and waits until `timestamps.csv` lists `rows`
/// frames. The caller waits for the child it gets back.
#[allow(clippy::zombie_processes)]
fn start_recording(out: &Path, rows: usize) -> Child {
    let mut child = Command::new(support::bin())
        .args([
            "record",
            "--camera",
            "synthetic:64x48@30",
            "--duration",
            "120",
            "--json",
            "--out",
        ])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = std::fs::read_to_string(out.join("timestamps.csv"))
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if listed >= rows {
            return child;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the recorder wrote no rows");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn replay_json(dir: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let o = Command::new(support::bin())
        .args(["replay", "--json"])
        .args(extra)
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    (serde_json::from_slice(&o.stdout).unwrap(), text(&o.stderr))
}

#[test]
fn sigint_and_sigterm_finish_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let out = dir.path().join(name);
        let child = start_recording(&out, 3);
        signal(&child, sig);
        let o = wait_bounded(child, Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(summary["stopped_by"], name);
        assert_eq!(summary["stopped_early"], true);
        let frames = summary["frames"].as_u64().unwrap();
        assert!(frames >= 3, "{summary}");
        let info = std::fs::read_to_string(out.join("recording.toml")).unwrap();
        assert!(info.contains("complete = true"), "{info}");
        let (report, stderr) = replay_json(&out, &[]);
        assert_eq!(report["frames"].as_u64(), Some(frames), "{report}");
        assert_eq!(report["cut"], false);
        assert!(!stderr.contains("cut"), "{stderr}");
        assert!(temps(&out).is_empty());
    }
}

#[test]
fn sigkill_leaves_a_recording_that_replays_and_says_it_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let mut child = start_recording(&out, 4);
    signal(&child, libc::SIGKILL);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let info = std::fs::read_to_string(out.join("recording.toml")).unwrap();
    assert!(info.contains("complete = false"), "{info}");
    let listed = std::fs::read_to_string(out.join("timestamps.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let (report, stderr) = replay_json(&out, &[]);
    assert_eq!(report["cut"], true, "{report}");
    let played = report["frames"].as_u64().unwrap();
    assert!(
        played >= 4 && played <= listed as u64,
        "{played} of {listed}"
    );
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("was cut")),
        "{report}"
    );
    assert!(stderr.contains("was cut"), "{stderr}");
    // The text report says so too.
    let o = Command::new(support::bin())
        .arg("replay")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("cut"), "{}", text(&o.stdout));

    // A frame whose PNGs never made it to the disk (power cut) is left out at the end.
    let last = played - 1;
    std::fs::write(out.join(format!("color/{last:06}.png")), b"").unwrap();
    let (report, _) = replay_json(&out, &[]);
    assert_eq!(report["frames"].as_u64(), Some(last), "{report}");
    // So is a last line cut in half.
    let ts = out.join("timestamps.csv");
    let mut csv = std::fs::read_to_string(&ts).unwrap();
    csv.push_str("99,3");
    std::fs::write(&ts, csv).unwrap();
    let (report, _) = replay_json(&out, &[]);
    assert_eq!(report["frames"].as_u64(), Some(last), "{report}");
}

fn record_fast(out: &Path, frames: u32) {
    let o = Command::new(support::bin())
        .args(["record", "--camera", "synthetic,fast:32x24", "--frames"])
        .arg(frames.to_string())
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// Rewrites column `col` of data row `row` (0-based, after the header) of timestamps.csv.
fn edit_timestamps(out: &Path, row: usize, col: usize, value: &str) {
    let ts = out.join("timestamps.csv");
    let csv = std::fs::read_to_string(&ts).unwrap();
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    let mut fields: Vec<String> = lines[row + 1].split(',').map(String::from).collect();
    fields[col] = value.into();
    lines[row + 1] = fields.join(",");
    std::fs::write(&ts, lines.join("\n") + "\n").unwrap();
}

#[test]
fn timestamps_that_jump_by_centuries_do_not_hang_replay() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    record_fast(&out, 3);
    // Three centuries after the first frame (i64 nanoseconds reach 292 years).
    edit_timestamps(&out, 1, 4, "9000000000000000000");
    edit_timestamps(&out, 2, 4, "9000000000033000000");
    edit_timestamps(&out, 2, 5, "9000000000034000000");
    let started = Instant::now();
    let child = Command::new(support::bin())
        .args(["replay", "--json", "--real-time"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_bounded(child, Duration::from_secs(40));
    let took = started.elapsed();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["frames"].as_u64(), Some(3));
    assert!(took < Duration::from_secs(25), "{took:?}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("timestamps.csv") && warnings.contains("line 3"),
        "{warnings}"
    );
    assert!(
        text(&o.stderr).contains("at most 10 s"),
        "{}",
        text(&o.stderr)
    );

    // Going backwards plays with no wait, and says so.
    edit_timestamps(&out, 1, 4, "-5000000");
    edit_timestamps(&out, 1, 5, "-4000000");
    edit_timestamps(&out, 2, 4, "66000000");
    edit_timestamps(&out, 2, 5, "67000000");
    let child = Command::new(support::bin())
        .args(["replay", "--json", "--real-time"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_bounded(child, Duration::from_secs(40));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        report["warnings"].to_string().contains("backwards"),
        "{report}"
    );

    // A device timestamp that is no number is refused, naming the file and line.
    edit_timestamps(&out, 2, 3, "inf");
    let o = Command::new(support::bin())
        .arg("replay")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("timestamps.csv") && err.contains("line 4"),
        "{err}"
    );
}

#[test]
fn an_endless_replay_needs_frames() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    record_fast(&out, 2);
    let spec = format!("replay,loop:{}", out.display());
    let child = Command::new(support::bin())
        .args(["replay", &spec])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_bounded(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--frames"), "{}", text(&o.stderr));
    let (report, _) = replay_json(Path::new(&spec), &["--frames", "5"]);
    assert_eq!(report["frames"].as_u64(), Some(5));
    let o = run(&["replay".as_ref(), "synthetic,fast:8x8".as_ref()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}
