//! `spatialbot-edge register`: the happy path and every bad input the issue names.

use crate::support::register_scene;

use std::path::Path;
use std::process::Command;

use crate::support;
use spatialbot_edge::imageio;
use spatialbot_edge::rgbd::{Calibration, RgbImage};

fn example_calib() -> std::path::PathBuf {
    support::repo_root().join("calibration/d435i.example.toml")
}

fn register(calib: &Path, depth: &Path, out: &Path, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(support::bin());
    cmd.arg("register")
        .arg("--calib")
        .arg(calib)
        .arg("--depth")
        .arg(depth)
        .arg("--out")
        .arg(out);
    if json {
        cmd.arg("--json");
    }
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn registers_a_depth_png_into_colour_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let depth_path = dir.path().join("depth.png");
    let out = dir.path().join("registered.png");
    let depth = register_scene::scene(848, 480, 9);
    imageio::write_depth_png(&depth_path, &depth).unwrap();
    let (code, stdout, stderr) = register(&example_calib(), &depth_path, &out, true);
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let registered = imageio::read_depth_png(&out).unwrap();
    assert_eq!((registered.width(), registered.height()), (1280, 720));
    let valid = registered.as_slice().iter().filter(|&&v| v != 0).count() as u64;
    assert_eq!(summary["valid_pixels"].as_u64(), Some(valid));
    assert_eq!(summary["holes"].as_u64(), Some(1280 * 720 - valid));
    assert_eq!(summary["width"].as_u64(), Some(1280));

    let calib = Calibration::from_toml_str(&std::fs::read_to_string(example_calib()).unwrap(), "x")
        .unwrap();
    let expected = spatialbot_edge::rgbd::register_depth_to_color(&depth, &calib).unwrap();
    assert_eq!(registered, expected);

    let (code, stdout, _) = register(&example_calib(), &depth_path, &out, false);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("1280x720") && stdout.contains("holes"),
        "{stdout}"
    );
}

/// Exit 2, one line naming `named`, and no output file.
fn assert_bad_input(calib: &Path, depth: &Path, named: &Path) {
    let out = depth.with_file_name("out.png");
    let (code, _, stderr) = register(calib, depth, &out, false);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&named.display().to_string()), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn bad_inputs_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    imageio::write_depth_png(&good, &register_scene::scene(848, 480, 1)).unwrap();

    let eight_bit = dir.path().join("eight-bit.png");
    std::fs::write(
        &eight_bit,
        imageio::rgb_to_png_bytes(&RgbImage::filled(848, 480, [9, 9, 9])),
    )
    .unwrap();
    assert_bad_input(&example_calib(), &eight_bit, &eight_bit);

    let truncated = dir.path().join("truncated.png");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_bad_input(&example_calib(), &truncated, &truncated);

    let wrong_size = dir.path().join("640x480.png");
    imageio::write_depth_png(&wrong_size, &register_scene::scene(640, 480, 1)).unwrap();
    assert_bad_input(&example_calib(), &wrong_size, &wrong_size);

    let zero_focal = dir.path().join("zero-focal.toml");
    let text = std::fs::read_to_string(example_calib())
        .unwrap()
        .replace("fx = 421.3", "fx = 0");
    std::fs::write(&zero_focal, text).unwrap();
    assert_bad_input(&zero_focal, &good, &zero_focal);

    let missing = dir.path().join("missing.toml");
    assert_bad_input(&missing, &good, &missing);
}
