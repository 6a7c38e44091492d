//! Bounded, deterministic fuzzing of the parsers that read user files: the PNG reader (header
//! and pixels), board profiles, model manifests (as the model folder and the control loop read
//! them), calibration files, camera SPECs and a recording's index (`timestamps.csv`,
//! `recording.toml`). Each parser gets a few thousand inputs mutated
//! from a valid one by a fixed-seed generator, in process; the test fails on any panic (and an
//! allocation sized from a forged header would abort the process). Same seed, same inputs, so a
//! failure reproduces; `FUZZ_ROUNDS` scales the number of inputs for a longer local run.

use crate::support;
use spatialbot_edge::config::Board;
use spatialbot_edge::imageio;
use spatialbot_edge::model::Manifest;
use spatialbot_edge::policy::PolicySpec;
use spatialbot_edge::rgbd::{Calibration, DepthMm, RgbImage};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn rounds(default: usize) -> usize {
    std::env::var("FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Values that break parsers: extremes, non-finite numbers, wrong types, odd text.
const NASTY: &[&str] = &[
    "0",
    "-1",
    "1e300",
    "-1e300",
    "nan",
    "inf",
    "-inf",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "9223372036854775807",
    "100000",
    "0.0",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "true",
    "\"\u{0}\"",
    "\"../../etc/passwd\"",
    "[1e300, nan, inf]",
];

/// One mutation of `bytes`: a flipped, inserted, removed or overwritten byte run, a truncation,
/// a duplicated slice, or a big-endian u32 written somewhere.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    match rng.below(7) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(bytes.len() + 1);
            bytes.insert(i, rng.next() as u8);
        }
        2 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes.remove(i);
        }
        3 => {
            let n = rng.below(bytes.len() + 1);
            bytes.truncate(n);
        }
        4 if bytes.len() > 8 => {
            let a = rng.below(bytes.len());
            let b = (a + rng.below(64)).min(bytes.len());
            let slice = bytes[a..b].to_vec();
            let at = rng.below(bytes.len());
            bytes.splice(at..at, slice);
        }
        5 if bytes.len() >= 4 => {
            let i = rng.below(bytes.len() - 3);
            let v = match rng.below(4) {
                0 => u32::MAX,
                1 => 0,
                2 => 1 << rng.below(32),
                _ => rng.next() as u32,
            };
            bytes[i..i + 4].copy_from_slice(&v.to_be_bytes());
        }
        _ if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        _ => bytes.push(rng.next() as u8),
    }
}

/// One mutation of TOML-like text: a value swapped for a nasty one, a line dropped or doubled,
/// a key renamed, or a byte-level mutation (kept as text).
fn mutate_text(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return NASTY[rng.below(NASTY.len())].to_string();
    }
    let i = rng.below(lines.len());
    match rng.below(6) {
        0 | 1 => {
            if let Some((key, _)) = lines[i].split_once(" = ") {
                lines[i] = format!("{key} = {}", NASTY[rng.below(NASTY.len())]);
            }
        }
        2 => {
            lines.remove(i);
        }
        3 => {
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        4 => {
            if let Some((key, value)) = lines[i].split_once(" = ") {
                lines[i] = format!("{key}x = {value}");
            }
        }
        _ => {
            let mut bytes = lines[i].clone().into_bytes();
            mutate_bytes(rng, &mut bytes);
            lines[i] = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    lines.join("\n")
}

/// Applies 1..=3 mutations, so some inputs stray further from the valid one.
fn text_input(rng: &mut Rng, base: &str) -> String {
    let mut text = base.to_string();
    for _ in 0..=rng.below(3) {
        text = mutate_text(rng, &text);
    }
    text
}

#[test]
fn png_reader_never_panics() {
    let mut rng = Rng(0x5eed_0001);
    let depth = DepthMm::from_mm(12, 9, (0..108).map(|v| v * 601 % 65536).collect()).unwrap();
    let rgb = RgbImage::new(7, 5, (0..105).map(|v| (v * 37) as u8).collect()).unwrap();
    let seeds = [
        imageio::depth_to_png_bytes(&depth, "seed").unwrap(),
        imageio::rgb_to_png_bytes(&rgb),
    ];
    let mut refused_for_size = 0;
    for n in 0..rounds(3000) {
        let mut bytes = seeds[n % 2].clone();
        for _ in 0..=rng.below(3) {
            mutate_bytes(&mut rng, &mut bytes);
        }
        // Every fourth input gets a header claiming a random, often enormous, size.
        if n % 4 == 0 && bytes.len() >= 24 {
            let w = 1u32 << rng.below(32);
            let h = rng.next() as u32;
            bytes[16..20].copy_from_slice(&w.to_be_bytes());
            bytes[20..24].copy_from_slice(&h.to_be_bytes());
        }
        for result in [
            imageio::depth_from_png_bytes(&bytes, "fuzz.png").map(|_| ()),
            imageio::rgb_from_png_bytes(&bytes, "fuzz.png").map(|_| ()),
        ] {
            if let Err(e) = result {
                let text = e.to_string();
                assert!(
                    text.contains("fuzz.png"),
                    "error does not name the file: {text}"
                );
                if matches!(e, imageio::ImageIoError::TooLarge(_)) {
                    refused_for_size += 1;
                }
            }
        }
    }
    assert!(refused_for_size > 0, "no forged size was refused");
}

#[test]
fn board_profiles_never_panic() {
    let base =
        std::fs::read_to_string(support::repo_root().join("boards/dev-x86_64.toml")).unwrap();
    let source = std::path::Path::new("fuzz-board.toml");
    let mut rng = Rng(0x5eed_0002);
    let mut refused = 0;
    for _ in 0..rounds(3000) {
        let text = text_input(&mut rng, &base);
        match Board::from_toml_str(&text, source, std::path::Path::new("/nonexistent")) {
            Ok(board) => {
                // A profile that passes yields finite limits and a parsable camera and link.
                for axis in &board.safety.axes {
                    assert!(axis.min.is_finite() && axis.max.is_finite(), "{text}");
                }
                assert!(board.safety.rate_limit_hz.is_finite(), "{text}");
            }
            Err(e) => {
                refused += 1;
                let msg = e.to_string();
                assert!(
                    msg.contains("fuzz-board.toml"),
                    "error does not name the file: {msg}"
                );
            }
        }
    }
    assert!(refused > 0);
}

#[test]
fn manifests_never_panic() {
    let root = support::repo_root();
    let mut rng = Rng(0x5eed_0003);
    let bases = [
        std::fs::read_to_string(root.join("models/tiny-policy/manifest.toml")).unwrap(),
        std::fs::read_to_string(root.join("models/tiny-spatialbot/manifest.toml")).unwrap(),
    ];
    for n in 0..rounds(3000) {
        let text = text_input(&mut rng, &bases[n % 2]);
        match Manifest::parse(&text, "fuzz-manifest.toml") {
            Ok(m) => {
                // What passes is within the caps of crate::limits.
                use spatialbot_edge::limits as lim;
                assert!(m.vision.image_size as u64 <= lim::MAX_MODEL_IMAGE_SIZE);
                assert!(
                    m.depth_api().neighbourhood as u64 <= lim::MAX_DEPTH_NEIGHBOURHOOD,
                    "{text}"
                );
                assert!(m.llm.context_limit as u64 <= lim::MAX_CONTEXT);
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("fuzz-manifest.toml"), "{msg}");
            }
        }
        let _ = PolicySpec::from_manifest_toml(&text);
    }
}

#[test]
fn calibrations_and_camera_specs_never_panic() {
    let root = support::repo_root();
    let mut rng = Rng(0x5eed_0004);
    let bases = [
        std::fs::read_to_string(root.join("calibration/d435i.example.toml")).unwrap(),
        std::fs::read_to_string(root.join("calibration/d405.example.toml")).unwrap(),
    ];
    for n in 0..rounds(3000) {
        let text = text_input(&mut rng, &bases[n % 2]);
        if let Ok(calib) = Calibration::from_toml_str(&text, "fuzz-calib.toml") {
            // A calibration that passes builds a registrar without panicking either.
            let _ = spatialbot_edge::rgbd::Registrar::new(&calib);
        }
    }
    let specs = [
        "synthetic,fast:640x480@30",
        "replay,fast,loop:tests/data/sample",
        "realsense,depth=848x480@30,retry=30:123",
        "v4l2,mode=1280x720@30,format=mjpeg,retry=5:/dev/video0",
        "pair,skew=20:synthetic+synthetic",
    ];
    for n in 0..rounds(3000) {
        let mut bytes = specs[n % specs.len()].as_bytes().to_vec();
        for _ in 0..=rng.below(3) {
            mutate_bytes(&mut rng, &mut bytes);
        }
        let mut spec = String::from_utf8_lossy(&bytes).into_owned();
        if n % 3 == 0 {
            // A nasty number where one was.
            let nasty = ["1e300", "inf", "nan", "99999999999", "-1", "0"][rng.below(6)];
            spec = spec.replacen("30", nasty, 1);
        }
        let _ = spec.parse::<spatialbot_edge::camera::CameraSpec>();
    }
}

/// The recording index as replay reads it: `timestamps.csv` and `recording.toml` of a small
/// recording (made once by `record`), each mutated in turn, then the folder opened and played
/// through (as fast as possible, so a forged timestamp cannot make the test wait). A refusal
/// must name the file; nothing may panic.
#[test]
fn recording_index_never_panics() {
    use spatialbot_edge::camera::recording::PngFolderSource;
    use spatialbot_edge::camera::{Pacing, ReplayOptions, Source};
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let out = std::process::Command::new(support::bin())
        .args([
            "record",
            "--camera",
            "synthetic,fast:32x24",
            "--frames",
            "3",
            "--out",
        ])
        .arg(&base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = ["timestamps.csv", "recording.toml"];
    let originals: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(base.join(f)).unwrap())
        .collect();
    let mut rng = Rng(0x5eed_0006);
    let (mut refused, mut played) = (0, 0);
    for n in 0..rounds(1500) {
        let k = n % files.len();
        let text = if k == 0 {
            // CSV: byte-level mutations and nasty values in a random field.
            let mut lines: Vec<String> = originals[0].lines().map(str::to_string).collect();
            let i = rng.below(lines.len());
            if rng.below(2) == 0 {
                let mut fields: Vec<String> = lines[i].split(',').map(str::to_string).collect();
                let j = rng.below(fields.len());
                fields[j] = NASTY[rng.below(NASTY.len())].to_string();
                lines[i] = fields.join(",");
            } else {
                let mut bytes = lines[i].clone().into_bytes();
                mutate_bytes(&mut rng, &mut bytes);
                lines[i] = String::from_utf8_lossy(&bytes).into_owned();
            }
            lines.join("\n") + "\n"
        } else {
            text_input(&mut rng, &originals[1])
        };
        std::fs::write(base.join(files[k]), &text).unwrap();
        let opened = PngFolderSource::open(ReplayOptions {
            path: base.clone(),
            pacing: Pacing::AsFastAsPossible,
            looping: false,
        });
        match opened {
            Ok(mut source) => {
                played += 1;
                // At most the recording's 3 frames (and a few more for safety), never a hang.
                for _ in 0..8 {
                    match source.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            Err(e) => {
                refused += 1;
                let msg = e.to_string();
                assert!(
                    files.iter().any(|f| msg.contains(f)) || msg.contains("calibration"),
                    "error does not name the file: {msg}"
                );
            }
        }
        std::fs::write(base.join(files[k]), &originals[k]).unwrap();
    }
    assert!(
        refused > 0 && played > 0,
        "refused {refused}, played {played}"
    );
}
