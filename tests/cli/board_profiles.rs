//! Board profiles: the shipped files load, and every kind of mistake is refused with a message
//! naming the file, the key and what is allowed.

use std::path::{Path, PathBuf};

use crate::support;
use spatialbot_edge::config::{BackendChoice, Board, BoardError, BUILTIN_PROFILES, DEV_PROFILE};

fn boards_dir() -> PathBuf {
    support::repo_root().join("boards")
}

fn dev_text() -> String {
    std::fs::read_to_string(boards_dir().join("dev-x86_64.toml")).unwrap()
}

/// Writes `text` to a temp profile and loads it; returns the error's message.
fn load_err(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my-board.toml");
    std::fs::write(&path, text).unwrap();
    let err = Board::load(&path).expect_err("profile should be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("my-board.toml"),
        "error does not name the file: {msg}"
    );
    msg
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture lacks {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn shipped_files_load_and_match_the_built_in_copies() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(boards_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let board = Board::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert_eq!(board.name, stem);
        let builtin = BUILTIN_PROFILES
            .iter()
            .find(|(n, _)| *n == stem)
            .expect("every shipped profile is built in");
        assert_eq!(builtin.1, std::fs::read_to_string(&path).unwrap());
        names.push(stem);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "dev-x86_64",
            "jetson-agx-orin-64gb",
            "jetson-orin-nano-8gb",
            "jetson-orin-nx-16gb"
        ]
    );
}

#[test]
fn jetson_profiles_use_the_gpu_and_keep_engines() {
    for name in [
        "jetson-orin-nano-8gb",
        "jetson-orin-nx-16gb",
        "jetson-agx-orin-64gb",
    ] {
        let b = Board::named(name).unwrap();
        assert_eq!(b.arch, "aarch64");
        assert_eq!(b.backend.order[0], BackendChoice::OrtTensorrt, "{name}");
        assert!(
            b.engine_cache_dir().is_absolute(),
            "{name}: engines must survive a reinstall"
        );
        assert!(
            b.link.cli_spec().starts_with("serial:/dev/spatialbot-arm@"),
            "{name}"
        );
        assert!(b.memory_budget_mb < b.memory_total_mb);
        for axis in ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"] {
            assert!(b.safety.axis(axis).is_some(), "{name}: no limit for {axis}");
        }
    }
    assert!(Board::named("jetson-orin-nano-8gb")
        .unwrap()
        .models
        .spatialbot
        .is_none());
}

#[test]
fn default_dev_resolves_relative_paths_against_the_profile_folder() {
    let b = Board::default_dev().unwrap();
    assert_eq!(b.name, DEV_PROFILE);
    assert_eq!(b.link.cli_spec(), "sim");
    assert_eq!(b.backend.order, [BackendChoice::TractCpu]);
    let policy = b.policy_model_dir();
    assert!(
        policy.ends_with("boards/../models/tiny-policy"),
        "{}",
        policy.display()
    );
}

#[test]
fn resolve_takes_a_path_or_a_name() {
    let by_path = Board::resolve(
        boards_dir()
            .join("jetson-orin-nx-16gb.toml")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let by_name = Board::resolve("jetson-orin-nx-16gb").unwrap();
    assert_eq!(by_path.link, by_name.link);
    let err = Board::resolve("orin-nano").unwrap_err();
    assert!(matches!(err, BoardError::UnknownName { .. }));
    assert!(err.to_string().contains("jetson-orin-nano-8gb"), "{err}");
    let err = Board::resolve("no/such/board.toml").unwrap_err();
    assert!(err.to_string().contains("no/such/board.toml"), "{err}");
}

#[test]
fn unknown_keys_are_named_with_their_table_and_line() {
    let text = replace_once(
        &dev_text(),
        "heartbeat_ms = 50\n",
        "heartbeat_ms = 50\nheartbeat_hz = 20\n",
    );
    let msg = load_err(&text);
    assert!(msg.contains("heartbeat_hz"), "{msg}");
    assert!(msg.contains("[link]"), "{msg}");
    assert!(msg.contains("line "), "{msg}");
    assert!(
        msg.contains("watchdog_ms"),
        "should list the allowed keys: {msg}"
    );

    let msg = load_err(&format!("colour = \"red\"\n{}", dev_text()));
    assert!(msg.contains("colour") && msg.contains("top level"), "{msg}");
}

#[test]
fn missing_keys_and_wrong_types_are_named() {
    let msg = load_err(&replace_once(&dev_text(), "threads = 2\n", ""));
    assert!(msg.contains("threads"), "{msg}");
    let msg = load_err(&replace_once(
        &dev_text(),
        "threads = 2",
        "threads = \"two\"",
    ));
    assert!(msg.contains("[backend]") && msg.contains("string"), "{msg}");
    let msg = load_err(&replace_once(
        &dev_text(),
        "order = [\"tract-cpu\"]",
        "order = [\"tensorrt\"]",
    ));
    assert!(
        msg.contains("tensorrt") && msg.contains("ort-tensorrt"),
        "{msg}"
    );
}

#[test]
fn impossible_values_name_the_key_and_the_allowed_range() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("threads = 2", "threads = 0", "backend.threads", "1..=64"),
        (
            "memory_budget_mb = 4096",
            "memory_budget_mb = 20000",
            "memory_budget_mb",
            "256..=16384",
        ),
        ("arch = \"x86_64\"", "arch = \"riscv64\"", "arch", "aarch64"),
        (
            "max_skew_ms = 20",
            "max_skew_ms = 5000",
            "camera.max_skew_ms",
            "0..=1000",
        ),
        (
            "depth = { width = 640, height = 480, fps = 30 }",
            "depth = { width = 640, height = 480, fps = 0 }",
            "camera.depth.fps",
            "1..=300",
        ),
        (
            "spec = \"auto\"",
            "spec = \"webcam\"",
            "camera.spec",
            "replay[,fast][,loop]:PATH",
        ),
        (
            "serial = \"any\"",
            "serial = \"12 34\"",
            "camera.serial",
            "serial number",
        ),
        (
            "spec = \"sim\"",
            "spec = \"serial:/dev/ttyACM0@115200\"",
            "link.spec",
            "link.baud",
        ),
        (
            "baud = 921600",
            "baud = 300",
            "link.baud",
            "9600..=12000000",
        ),
        (
            "heartbeat_ms = 50",
            "heartbeat_ms = 150",
            "link.heartbeat_ms",
            "1..=100",
        ),
        (
            "heartbeat_ms = 50",
            "heartbeat_ms = 50\nreply_timeout_ms = 60",
            "link.reply_timeout_ms",
            "100..=10000",
        ),
        (
            "heartbeat_ms = 50",
            "heartbeat_ms = 50\nlost_link_ms = 100",
            "link.lost_link_ms",
            "150..=60000",
        ),
        (
            "heartbeat_ms = 50",
            "heartbeat_ms = 50\nmax_rejected_in_a_row = 0",
            "link.max_rejected_in_a_row",
            "1..=1000",
        ),
        (
            "max_age_ms = 1000",
            "max_age_ms = 0",
            "safety.max_age_ms",
            "1..=10000",
        ),
        (
            "rate_limit_hz = 10.0",
            "rate_limit_hz = -1.0",
            "safety.rate_limit_hz",
            "greater than 0",
        ),
        (
            "min = 0.0\nmax = 1.0",
            "min = 1.0\nmax = 0.5",
            "safety.axes[6].max",
            "greater than min",
        ),
        (
            "max_step = 1.0",
            "max_step = 2.0",
            "safety.axes[6].max_step",
            "at most max - min",
        ),
        (
            "name = \"dy\"",
            "name = \"dx\"",
            "safety.axes[1].name",
            "used once",
        ),
        (
            "order = [\"tract-cpu\"]",
            "order = [\"tract-cpu\", \"tract-cpu\"]",
            "backend.order",
            "at most once",
        ),
        (
            "order = [\"tract-cpu\"]",
            "order = [\"ort-cuda\"]",
            "backend.cpu_fallback",
            "list a CPU backend",
        ),
    ];
    for (from, to, key, allowed) in cases {
        let msg = load_err(&replace_once(&dev_text(), from, to));
        assert!(
            msg.contains(&format!("`{key}`")),
            "{to}: key not named: {msg}"
        );
        assert!(
            msg.contains(allowed),
            "{to}: allowed range not given: {msg}"
        );
    }
}

#[test]
fn camera_specs_follow_the_camera_grammar() {
    for ok in [
        "synthetic,fast:320x240@15",
        "replay,fast,loop:tests/data/sample",
        "realsense:123456",
        "v4l2:/dev/video0",
    ] {
        let text = replace_once(&dev_text(), "spec = \"auto\"", &format!("spec = \"{ok}\""));
        Board::from_toml_str(&text, Path::new("x.toml"), Path::new(""))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let msg = load_err(&replace_once(
        &dev_text(),
        "spec = \"auto\"",
        "spec = \"synthetic:big\"",
    ));
    assert!(
        msg.contains("`camera.spec`") && msg.contains("WxH"),
        "{msg}"
    );
}

#[test]
fn gpu_only_profiles_may_not_hide_a_cpu_fallback() {
    let jetson = std::fs::read_to_string(boards_dir().join("jetson-orin-nx-16gb.toml")).unwrap();
    let text = replace_once(
        &jetson,
        "order = [\"ort-tensorrt\", \"ort-cuda\"]",
        "order = [\"ort-tensorrt\", \"tract-cpu\"]",
    );
    let msg = load_err(&text);
    assert!(
        msg.contains("`backend.order`") && msg.contains("cpu_fallback"),
        "{msg}"
    );
}

#[test]
fn embedded_copy_is_used_where_no_file_is_found() {
    let text = BUILTIN_PROFILES[0].1;
    let b = Board::from_toml_str(
        text,
        Path::new("<built-in>/dev-x86_64.toml"),
        Path::new("/opt/x/boards"),
    )
    .unwrap();
    assert_eq!(
        b.policy_model_dir(),
        Path::new("/opt/x/boards/../models/tiny-policy")
    );
}

#[test]
fn governor_limits_and_link_config_follow_the_profile() {
    use spatialbot_edge::link::{Axis, LinkSpec};
    for (name, _) in BUILTIN_PROFILES {
        let b = Board::named(name).unwrap();
        let limits = b.governor_limits().unwrap();
        limits.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, axis) in limits.layout.iter().enumerate() {
            match b.safety.axis(axis.name()) {
                Some(a) => {
                    assert_eq!(
                        (limits.min[i], limits.max[i], limits.max_step[i]),
                        (a.min as f32, a.max as f32, a.max_step as f32)
                    );
                }
                None => assert_eq!(*axis, Axis::Terminate, "{name}: {axis:?} has no limit"),
            }
        }
        assert_eq!(limits.max_age_ms, b.safety.max_age_ms);
        assert_eq!(limits.min_interval_ms, 100, "10 Hz → 100 ms");
        assert_eq!(
            u32::from(b.link_config().unwrap().watchdog_ms),
            b.link.watchdog_ms
        );
    }
    let nx = Board::named("jetson-orin-nx-16gb").unwrap();
    assert_eq!(
        nx.link_spec().unwrap(),
        LinkSpec::Serial {
            path: "/dev/spatialbot-arm".into(),
            baud: 921_600
        }
    );
    assert_eq!(
        Board::default_dev().unwrap().link_spec().unwrap(),
        LinkSpec::Sim
    );
}

#[test]
fn axes_must_be_wire_axes_and_cover_the_layout() {
    let msg = load_err(&replace_once(
        &dev_text(),
        "name = \"dyaw\"",
        "name = \"elbow\"",
    ));
    assert!(
        msg.contains("`safety.axes[5].name`") && msg.contains("gripper, terminate"),
        "{msg}"
    );
    let text = replace_once(
        &dev_text(),
        "[[safety.axes]]\nname = \"gripper\"\nmin = 0.0\nmax = 1.0\nmax_step = 1.0\n",
        "",
    );
    let msg = load_err(&text);
    assert!(
        msg.contains("`safety.axes`") && msg.contains("\"gripper\""),
        "{msg}"
    );
}

/// The systemd unit and the udev rules in packaging/ agree with the program: the profile path
/// the unit passes exists for every shipped profile, the exit codes it does not restart on are
/// the bad-configuration and safety-stop codes, and the udev rules set what `doctor` checks.
#[test]
fn packaging_agrees_with_exit_codes_and_profiles() {
    use spatialbot_edge::exit;
    let root = support::repo_root();
    let unit = std::fs::read_to_string(root.join("packaging/spatialbot-edge.service")).unwrap();
    let line = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("the unit has no {key}"))
            .trim()
            .to_string()
    };
    let no_restart: Vec<u8> = line("RestartPreventExitStatus=")
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(
        no_restart,
        [
            exit::BAD_INPUT,
            exit::WATCHDOG_STOP,
            exit::ESTOP,
            exit::LINK_LOST,
            exit::CONTROLLER_REFUSED,
            exit::CONTROLLER_FAULT,
            exit::CONTROLLER_STOPPED,
            exit::NOTHING_APPLIED
        ]
    );
    assert!(!no_restart.contains(&exit::RUNTIME));
    assert_eq!(line("Restart="), "on-failure");
    let exec = line("ExecStart=");
    let board_arg = exec
        .split_whitespace()
        .skip_while(|w| *w != "--board")
        .nth(1)
        .unwrap();
    for (name, _) in BUILTIN_PROFILES {
        let path = board_arg
            .replace("${SPATIALBOT_EDGE_BOARD}", name)
            .replace("/opt/spatialbot-edge/", "");
        Board::load(&root.join(&path)).unwrap_or_else(|e| panic!("{exec}: {e}"));
    }

    let rules = std::fs::read_to_string(root.join("packaging/99-spatialbot-edge.rules")).unwrap();
    let active: Vec<&str> = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let has = |needle: &str| active.iter().any(|l| l.contains(needle));
    assert!(has(r#"ATTR{latency_timer}="1""#), "FTDI latency timer 1 ms");
    assert!(has(r#"SYMLINK+="spatialbot-arm""#), "stable serial symlink");
    assert!(has(r#"ATTR{idVendor}=="8086""#), "RealSense permissions");
    for name in [
        "jetson-orin-nano-8gb",
        "jetson-orin-nx-16gb",
        "jetson-agx-orin-64gb",
    ] {
        let b = Board::named(name).unwrap();
        assert_eq!(b.link.spec, "serial:/dev/spatialbot-arm", "{name}");
    }
}

#[test]
fn the_rate_limit_becomes_an_interval_rounded_up_so_the_rate_is_never_exceeded() {
    let text = std::fs::read_to_string(support::repo_root().join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace("rate_limit_hz = 10.0", "rate_limit_hz = 3.0");
    let b = Board::from_toml_str(&text, "three-hz.toml".as_ref(), ".".as_ref()).unwrap();
    let limits = b.governor_limits().unwrap();
    assert_eq!(limits.min_interval_ms, 334);
    assert!(1000.0 / f64::from(limits.min_interval_ms) <= 3.0);
    assert_eq!(b.link_config().unwrap().limits, limits);
}

#[test]
fn a_profile_without_a_motion_axis_is_refused_naming_the_file_and_axis() {
    let text = std::fs::read_to_string(support::repo_root().join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace(
            "[[safety.axes]]\nname = \"dyaw\"\nmin = -0.2\nmax = 0.2\nmax_step = 0.1\n",
            "",
        );
    assert!(!text.contains("\"dyaw\""));
    let err = Board::from_toml_str(&text, "no-dyaw.toml".as_ref(), ".".as_ref())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-dyaw.toml") && err.contains("dyaw"),
        "{err}"
    );
}

#[test]
fn link_timing_defaults_when_the_profile_omits_it() {
    let b = Board::named("dev-x86_64").unwrap();
    let cfg = b.link_config().unwrap();
    assert_eq!(cfg.reply_timeout, std::time::Duration::from_millis(150));
    assert_eq!(cfg.lost_link, std::time::Duration::from_millis(1000));
    assert_eq!(cfg.max_rejected_in_a_row, 3);
    assert_eq!(cfg.heartbeat, std::time::Duration::from_millis(50));
}
