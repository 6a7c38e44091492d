//! Watchdogs and signals with real processes: `arm-sim` as a child, and the host as a second
//! child (this test binary re-run in a host mode chosen by SBE_LINK_HOST_MODE).

mod link_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use link_common::*;
use spatialbot_edge::exit;
use spatialbot_edge::link::clock::monotonic_us;
use spatialbot_edge::link::watchdog::{OnTrip, StageWatchdog};
use spatialbot_edge::link::{signals, ActionCommand, Link, LinkSpec, StopReason};

/// Long enough that a loaded test machine does not trip it while the host runs.
const WATCHDOG_MS: u16 = 250;
/// arm-sim's watchdog tick (its default `--tick-ms`).
const TICK_MS: u64 = 1;
/// How late a loaded CI machine may wake the simulator's tick.
const SCHEDULING_ALLOWANCE_US: u64 = 150_000;

/// The host side, run in a child process. Streams actions at 100 Hz until told otherwise.
#[test]
fn host_child() {
    let Ok(mode) = std::env::var("SBE_LINK_HOST_MODE") else {
        return;
    };
    let path = std::env::var("SBE_LINK_PATH").unwrap();
    let shutdown = signals::shutdown_flag().unwrap();
    let mut link = Link::open(
        &LinkSpec::Pty { path: path.into() },
        test_config(WATCHDOG_MS),
    )
    .unwrap();
    let watchdog = StageWatchdog::spawn(
        link.stopper(),
        Duration::from_millis(2),
        OnTrip::ExitProcess,
    )
    .unwrap();
    // Generous against a loaded test machine; the stall below lasts far longer.
    let policy = watchdog.stage("policy", Duration::from_millis(2_000));
    let mut gen = Values::new(7);
    for i in 0u32.. {
        if shutdown.load(Ordering::Relaxed) {
            // Stopping is not a pipeline stage: its own bound is the stop-ack timeout.
            policy.disarm();
            link.stop(StopReason::Operator).unwrap();
            std::process::exit(i32::from(exit::OK));
        }
        policy.beat();
        if mode == "stall-stage" && i == 20 {
            // A stuck inference: the stage watchdog must stop the arm and end the process.
            std::thread::sleep(Duration::from_secs(30));
        }
        link.send_action(&ActionCommand {
            chunk_id: 0,
            chunk_index: 0,
            capture_us: monotonic_us(),
            values: gen.next(),
        })
        .unwrap();
        link.poll().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_host(mode: &str, link: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "host_child", "--nocapture", "--test-threads=1"])
        .env("SBE_LINK_HOST_MODE", mode)
        .env("SBE_LINK_PATH", link)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn wait_for_applied(log: &Path, n: usize) {
    let t0 = Instant::now();
    while events(&read_log(log), "applied").len() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the host never got {n} actions applied"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// The simulator must hold within watchdog_ms + one tick of the last valid frame. Scheduling
/// on a loaded machine can delay the simulator's own wake-up; that delay is allowed for
/// separately and the measured silence is printed.
fn assert_held_in_time(log: &Path) {
    let log = read_log(log);
    let holds = events(&log, "hold");
    assert_eq!(holds.len(), 1, "exactly one watchdog hold");
    let silence_us = holds[0]["silence_us"].as_u64().unwrap();
    let bound_us = u64::from(WATCHDOG_MS) * 1000 + TICK_MS * 1000;
    eprintln!("watchdog hold after {silence_us} µs of silence (bound {bound_us} µs + scheduling)");
    assert!(silence_us > u64::from(WATCHDOG_MS) * 1000);
    // The decision itself is exact (see link_governor.rs); here the simulator process may be
    // scheduled late on a loaded machine, so allow for that.
    assert!(
        silence_us <= bound_us + SCHEDULING_ALLOWANCE_US,
        "held after {silence_us} µs"
    );
    let last_applied_us = events(&log, "applied").last().unwrap()["at_us"]
        .as_u64()
        .unwrap();
    assert!(holds[0]["at_us"].as_u64().unwrap() >= last_applied_us);
}

fn host_gone_makes_the_simulator_hold(stall: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, link, log) = spawn_arm_sim(dir.path(), &["--exit-on-watchdog"]);
    let mut host = spawn_host("stream", &link);
    wait_for_applied(&log, 20);
    signal(&host, if stall { libc::SIGSTOP } else { libc::SIGKILL });
    let status = wait_with_timeout(&mut sim, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(i32::from(exit::WATCHDOG_STOP)),
        "arm-sim exits with the watchdog code"
    );
    assert_held_in_time(&log);
    if stall {
        signal(&host, libc::SIGCONT);
    }
    let _ = host.kill();
    let _ = host.wait();
}

#[test]
fn killed_host_makes_the_simulator_hold() {
    host_gone_makes_the_simulator_hold(false);
}

#[test]
fn stalled_host_makes_the_simulator_hold() {
    host_gone_makes_the_simulator_hold(true);
}

#[test]
fn stuck_stage_sends_stop_and_exits_with_the_watchdog_code() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, link, log) = spawn_arm_sim(dir.path(), &["--exit-on-stop"]);
    let mut host = spawn_host("stall-stage", &link);
    let status = wait_with_timeout(&mut host, Duration::from_secs(30));
    assert_eq!(status.code(), Some(i32::from(exit::WATCHDOG_STOP)));
    assert!(wait_with_timeout(&mut sim, Duration::from_secs(10)).success());
    let log = read_log(&log);
    assert_eq!(events(&log, "stop")[0]["reason"], "Watchdog");
    assert_eq!(events(&log, "applied").len(), 20);
    // The stall also silenced the link, so the controller's own watchdog (250 ms) held first;
    // the host's Stop (2 s deadline) then stopped it for good.
    assert!(!events(&log, "hold").is_empty());
}

#[test]
fn sigterm_sends_stop_waits_for_the_ack_and_exits_0() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let (mut sim, link, log) = spawn_arm_sim(dir.path(), &["--exit-on-stop"]);
        let mut host = spawn_host("stream", &link);
        wait_for_applied(&log, 10);
        signal(&host, sig);
        let status = wait_with_timeout(&mut host, Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "host exit after signal {sig}");
        assert!(wait_with_timeout(&mut sim, Duration::from_secs(10)).success());
        let log = read_log(&log);
        assert_eq!(events(&log, "stop")[0]["reason"], "Operator");
    }
}
