//! `spatialbot-edge devices`: no camera is a valid answer; the synthetic source and the CPU
//! backend are always there.

use std::process::Command;

use crate::support;

#[test]
fn devices_json_lists_what_is_there() {
    let out = Command::new(support::bin())
        .args(["devices", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["cameras"].is_array());
    assert!(v["serial_ports"].is_array());
    assert!(v["synthetic"].as_str().unwrap().contains("synthetic"));
    assert!(v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["backend"] == "tract" && b["usable"] == true));
    let human = Command::new(support::bin())
        .arg("devices")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains("cameras:"));
}

#[cfg(not(feature = "realsense"))]
#[test]
fn calib_out_without_realsense_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(support::bin())
        .args(["devices", "--calib-out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features realsense"));
}
