//! `doctor`: runs on this machine with a pass/warn/fail/skip per check, and judges a fake
//! `/sys` tree (FTDI latency timers, a RealSense on a USB 2 link) the way a real one would be.

use std::path::Path;
use std::process::Command;

use crate::support;
use spatialbot_edge::config::Board;
use spatialbot_edge::doctor::{realsense_usb, run_checks, Roots, Status};

#[test]
fn doctor_runs_here_and_exits_zero_without_failures() {
    let out = Command::new(support::bin())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.len() >= 10);
    for c in checks {
        let status = c["status"].as_str().unwrap();
        assert!(["pass", "warn", "fail", "skip"].contains(&status), "{c}");
        if status == "warn" || status == "fail" {
            assert!(
                !c["fix"].as_str().unwrap().is_empty(),
                "a {status} must say what to do: {c}"
            );
        }
    }
    let failed = v["summary"]["fail"].as_u64().unwrap();
    assert_eq!(out.status.code(), Some(if failed > 0 { 1 } else { 0 }));

    let out = Command::new(support::bin())
        .args(["doctor", "--board", "no-such-board"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn fake_sysfs_ftdi_timer_and_usb2_camera_are_warned_about() {
    let root = tempfile::tempdir().unwrap();
    let sys = root.path().join("sys");
    write(
        &sys.join("bus/usb-serial/devices/ttyUSB0/latency_timer"),
        "16\n",
    );
    write(&sys.join("bus/usb/devices/2-1/idVendor"), "8086\n");
    write(
        &sys.join("bus/usb/devices/2-1/product"),
        "Intel(R) RealSense(TM) Depth Camera 435i\n",
    );
    write(&sys.join("bus/usb/devices/2-1/speed"), "480\n");
    write(&sys.join("bus/usb/devices/1-3/idVendor"), "046d\n");
    let proc_ = root.path().join("proc");
    write(
        &proc_.join("meminfo"),
        "MemTotal:       16000000 kB\nMemAvailable:    2000000 kB\n",
    );
    let roots = Roots {
        sys: sys.clone(),
        proc_,
        etc: root.path().join("etc"),
    };

    let cams = realsense_usb(&roots);
    assert_eq!(cams.len(), 1);
    assert_eq!(cams[0].2, 480);

    let board = Board::named("jetson-orin-nx-16gb").unwrap();
    let checks = run_checks(&board, &roots);
    let get = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    };
    assert_eq!(get("FTDI latency timer").status, Status::Warn);
    assert!(get("FTDI latency timer").fix.contains("latency_timer"));
    assert_eq!(get("camera USB link").status, Status::Warn);
    assert!(get("camera USB link").detail.contains("480 Mbit/s"));
    assert_eq!(get("memory").status, Status::Warn, "{:?}", get("memory"));
    assert_eq!(get("JetPack (L4T)").status, Status::Warn);

    write(
        &sys.join("bus/usb-serial/devices/ttyUSB0/latency_timer"),
        "1\n",
    );
    write(&sys.join("bus/usb/devices/2-1/speed"), "5000\n");
    write(
        &roots.etc.join("nv_tegra_release"),
        "# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64\n",
    );
    let checks = run_checks(&board, &roots);
    let get = |name: &str| checks.iter().find(|c| c.name == name).unwrap().status;
    assert_eq!(get("FTDI latency timer"), Status::Pass);
    assert_eq!(get("camera USB link"), Status::Pass);
    assert_eq!(get("JetPack (L4T)"), Status::Pass);
}

#[test]
fn model_files_over_the_memory_budget_fail() {
    let root = tempfile::tempdir().unwrap();
    let dev = std::fs::read_to_string(support::repo_root().join("boards/dev-x86_64.toml")).unwrap();
    let text = dev
        .replace("memory_budget_mb = 4096", "memory_budget_mb = 256")
        .replace(
            "policy = \"../models/tiny-policy\"",
            "policy = \"../big-policy\"",
        )
        .replace("spatialbot = \"../models/tiny-spatialbot\"\n", "");
    write(&root.path().join("boards/small.toml"), &text);
    std::fs::create_dir_all(root.path().join("big-policy")).unwrap();
    // Sparse: 300 MiB of length, no disk used.
    let f = std::fs::File::create(root.path().join("big-policy/decoder.onnx")).unwrap();
    f.set_len(300 << 20).unwrap();
    let board = Board::load(&root.path().join("boards/small.toml")).unwrap();
    let checks = run_checks(&board, &Roots::default());
    let c = checks.iter().find(|c| c.name == "model files").unwrap();
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail.contains("300") && c.detail.contains("256"),
        "{c:?}"
    );

    std::fs::remove_dir_all(root.path().join("big-policy")).unwrap();
    let checks = run_checks(&board, &Roots::default());
    let c = checks.iter().find(|c| c.name == "model files").unwrap();
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.detail.contains("big-policy"), "{c:?}");
}
