//! Helpers for the link's end-to-end tests: an `arm-sim` child on a pty and its JSON log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spatialbot_edge::link::{Limits, LinkConfig, ACTION_LEN};

pub use super::bin;

/// Starts `arm-sim --link pty:<dir>/arm` and waits until the pty link exists.
pub fn spawn_arm_sim(dir: &Path, extra: &[&str]) -> (Child, PathBuf, PathBuf) {
    let link = dir.join("arm");
    let log = dir.join("arm-sim.jsonl");
    let child = Command::new(bin())
        .arg("arm-sim")
        .arg("--link")
        .arg(format!("pty:{}", link.display()))
        .arg("--log-file")
        .arg(&log)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn arm-sim");
    let t0 = Instant::now();
    while link.symlink_metadata().is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "arm-sim did not create {}",
            link.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, link, log)
}

/// Limits wide enough that random test actions pass unchanged, and no rate limit.
pub fn open_limits() -> Limits {
    Limits {
        min: [-1.0; ACTION_LEN],
        max: [1.0; ACTION_LEN],
        max_step: [2.0; ACTION_LEN],
        min_interval_ms: 0,
        ..Limits::default()
    }
}

pub fn test_config(watchdog_ms: u16) -> LinkConfig {
    let mut cfg = LinkConfig::new(open_limits());
    cfg.watchdog_ms = watchdog_ms;
    cfg.hello_timeout = Duration::from_secs(10);
    cfg.stop_ack_timeout = Duration::from_secs(2);
    cfg
}

/// Waits for a child with a limit; kills it on timeout.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn read_log(log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // While arm-sim runs, the last line may be half written: only complete lines count.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line is JSON"))
        .collect()
}

pub fn events<'a>(log: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    log.iter().filter(|e| e["event"] == kind).collect()
}

/// The last line of stdout that parses as the simulator's JSON summary.
pub fn summary_of(stdout: &[u8]) -> serde_json::Value {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get("exit").is_some())
        })
        .expect("arm-sim printed a summary")
}

/// Deterministic pseudo-random action values in [-0.9, 0.9] (xorshift; the test needs no
/// statistical quality, only variety).
pub struct Values(u64);

impl Values {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next(&mut self) -> [f32; ACTION_LEN] {
        std::array::from_fn(|_| {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 1.8 - 0.9
        })
    }
}
