//! The loop, the real governor and wire link over a pseudo-terminal, and the arm simulator on
//! the pty's other side: every action the loop sent is applied by the simulator with the same
//! values, in order; the simulator going away mid-run ends the loop with LINK_LOST, no panic.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::fakes::{Frames, SeqEncoder};
use spatialbot_edge::config::{Board, BUILTIN_PROFILES};
use spatialbot_edge::exit;
use spatialbot_edge::link::controller::Event;
use spatialbot_edge::link::sim::{run_controller, SimConfig, SimExit};
use spatialbot_edge::link::transport::{create_pty, PtyEndpoint};
use spatialbot_edge::link::Action;
use spatialbot_edge::pipeline::link_sink::LinkSink;
use spatialbot_edge::pipeline::{
    run_loop, ActionSink, Delivery, LanguageModel, LoopConfig, LoopParts, Report, SinkError,
    StageError, StopReason,
};
use spatialbot_edge::policy::{PolicyPrompt, PolicySpec};

use crate::support::fakes::RELEASED_POLICY_MANIFEST as MANIFEST;

/// Small moves that stay inside the dev board's limits, different every step.
struct Model;
impl LanguageModel<u64> for Model {
    fn generate(
        &mut self,
        _p: &PolicyPrompt,
        images: &[Arc<u64>],
        _max: usize,
    ) -> Result<String, StageError> {
        let k = *images[0] % 10;
        Ok(format!("[0,0.5{k},0.4{k},0.5,0.5,0.5,0.5,0.{k}]"))
    }
}

/// Records what the governor let through, as f32 in the wire's order.
struct Recording<S> {
    inner: S,
    sent: Arc<Mutex<Vec<Vec<f64>>>>,
}
impl<S: ActionSink> ActionSink for Recording<S> {
    fn send(
        &mut self,
        action: &spatialbot_edge::pipeline::Action,
        now: Instant,
    ) -> Result<Delivery, SinkError> {
        let d = self.inner.send(action, now)?;
        if d == Delivery::Sent {
            self.sent.lock().unwrap().push(action.values.clone());
        }
        Ok(d)
    }
    fn hold(
        &mut self,
        reason: &spatialbot_edge::pipeline::Hold,
        now: Instant,
    ) -> Result<(), SinkError> {
        self.inner.hold(reason, now)
    }
    fn idle(&mut self, now: Instant) -> Result<(), SinkError> {
        self.inner.idle(now)
    }
    fn stop(&mut self, why: StopReason) -> Result<(), SinkError> {
        self.inner.stop(why)
    }
    fn outcomes(&self) -> Option<spatialbot_edge::pipeline::stats::LinkOutcomes> {
        self.inner.outcomes()
    }
}

/// The simulated controller on the master side of a pty whose slave is linked at `dir/arm`,
/// on its own thread. (`arm-sim` as a separate process is the same code behind a CLI.) The
/// thread ends, closing the pty, when the host stops it or `kill` is raised.
struct Sim {
    link: std::path::PathBuf,
    applied: Arc<Mutex<Vec<Action>>>,
    kill: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(SimExit, Option<PtyEndpoint>)>,
}

fn spawn_sim(dir: &std::path::Path) -> Sim {
    let link = dir.join("arm");
    let tick = Duration::from_millis(1);
    let pty = create_pty(&link, tick).unwrap();
    let duplex = pty.duplex().unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let kill = Arc::new(AtomicBool::new(false));
    let (log, flag) = (applied.clone(), kill.clone());
    let thread = std::thread::spawn(move || {
        let cfg = SimConfig {
            tick,
            exit_on_stop: true,
            ..SimConfig::default()
        };
        let summary = run_controller(duplex, &cfg, &flag, &mut |e: &Event| {
            if let Event::Applied { action, .. } = e {
                log.lock().unwrap().push(*action);
            }
        })
        .unwrap();
        // Killed: the pty goes away at once. Stopped: it stays open until the test has read
        // the acknowledgement (a closing master would flush it unread).
        let keep = (!flag.load(std::sync::atomic::Ordering::SeqCst)).then_some(pty);
        (summary.exit, keep)
    });
    Sim {
        link,
        applied,
        kill,
        thread,
    }
}

fn board() -> Board {
    let text = BUILTIN_PROFILES[0]
        .1
        .replace("rate_limit_hz = 10.0", "rate_limit_hz = 1000.0");
    Board::from_toml_str(&text, "test-board.toml".as_ref(), ".".as_ref()).unwrap()
}

fn run(link: &std::path::Path, steps: Option<u64>, sent: Arc<Mutex<Vec<Vec<f64>>>>) -> Report {
    run_with(link, steps, sent, Model)
}

fn run_with<M: LanguageModel<u64> + 'static>(
    link: &std::path::Path,
    steps: Option<u64>,
    sent: Arc<Mutex<Vec<Vec<f64>>>>,
    model: M,
) -> Report {
    let spec = PolicySpec::from_manifest_toml(MANIFEST).unwrap();
    let names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
    let sink = LinkSink::open(
        &format!("pty:{}", link.display()).parse().unwrap(),
        board().link_config().unwrap(),
        &names,
    )
    .unwrap();
    let cfg = LoopConfig {
        goal: "stack the cubes".into(),
        steps,
        ..LoopConfig::default()
    };
    let parts = LoopParts {
        source: Frames::endless(5),
        vision: SeqEncoder::default(),
        model,
        sink: Recording { inner: sink, sent },
        guard: None,
    };
    run_loop(parts, &spec, &cfg, Arc::new(AtomicBool::new(false))).unwrap()
}

#[test]
fn actions_reach_the_simulator_over_a_pty_value_for_value() {
    let dir = tempfile::tempdir().unwrap();
    let sim = spawn_sim(dir.path());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let s = run(&sim.link, Some(30), sent.clone());
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("steps", exit::OK),
        "{s:?}"
    );
    // The governor's rate limit (1 ms here) may hold a step that came right after another.
    assert_eq!(
        s.actions_sent + s.holds.get("governor_rate_limited").unwrap_or(&0),
        30,
        "{s:?}"
    );
    assert_eq!(
        sim.thread.join().unwrap().0,
        SimExit::Stopped,
        "the simulator acknowledged Stop"
    );

    let applied = sim.applied.lock().unwrap();
    let sent = sent.lock().unwrap();
    assert_eq!(applied.len(), sent.len());
    for (a, policy) in applied.iter().zip(sent.iter()) {
        // Policy order terminate, dx..dyaw, gripper → wire order dx..dyaw, gripper, terminate.
        let want: Vec<f32> = policy[1..8]
            .iter()
            .chain(&policy[..1])
            .map(|v| *v as f32)
            .collect();
        assert_eq!(a.values.to_vec(), want);
        assert!(a.capture_us <= a.send_us);
    }
    assert!(applied.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[test]
fn simulator_dying_ends_the_loop_with_link_lost() {
    let dir = tempfile::tempdir().unwrap();
    let sim = spawn_sim(dir.path());
    let kill = sim.kill.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        kill.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let s = run(&sim.link, None, Arc::new(Mutex::new(Vec::new())));
    killer.join().unwrap();
    assert_eq!(sim.thread.join().unwrap().0, SimExit::Shutdown);
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("link_lost", exit::LINK_LOST),
        "{s:?}"
    );
    assert!(s.actions_sent > 0);
}

/// `spatialbot-edge arm-sim` as a separate process on the pty.
fn spawn_arm_sim(
    dir: &std::path::Path,
) -> (std::process::Child, std::path::PathBuf, std::path::PathBuf) {
    use std::io::{BufRead, BufReader};
    let link = dir.join("arm");
    let log = dir.join("applied.jsonl");
    let mut child = std::process::Command::new(support::bin())
        .args(["arm-sim", "--json", "--exit-on-stop", "--link"])
        .arg(format!("pty:{}", link.display()))
        .arg("--log-file")
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("ready"), "arm-sim said {line:?}");
    (child, link, log)
}

#[test]
fn arm_sim_process_applies_what_the_loop_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, link, log) = spawn_arm_sim(dir.path());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let s = run(&link, Some(20), sent.clone());
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("steps", exit::OK),
        "{s:?}"
    );
    assert!(
        child.wait().unwrap().success(),
        "arm-sim exits 0 after acknowledging Stop"
    );
    let applied: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "applied")
        .collect();
    let sent = sent.lock().unwrap();
    assert_eq!(applied.len(), sent.len());
    for (a, policy) in applied.iter().zip(sent.iter()) {
        let wire: Vec<f32> = a["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let want: Vec<f32> = policy[1..8]
            .iter()
            .chain(&policy[..1])
            .map(|v| *v as f32)
            .collect();
        assert_eq!(wire, want);
    }
}

#[test]
fn arm_sim_process_killed_ends_the_loop_with_link_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, link, _log) = spawn_arm_sim(dir.path());
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
    });
    let s = run(&link, None, Arc::new(Mutex::new(Vec::new())));
    killer.join().unwrap();
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("link_lost", exit::LINK_LOST),
        "{s:?}"
    );
    assert!(s.actions_sent > 0);
}

/// Small moves, then terminate = 1 from the third step on.
struct Terminating(u64);
impl LanguageModel<u64> for Terminating {
    fn generate(
        &mut self,
        _p: &PolicyPrompt,
        _images: &[Arc<u64>],
        _max: usize,
    ) -> Result<String, StageError> {
        self.0 += 1;
        let terminate = u8::from(self.0 >= 3);
        Ok(format!("[{terminate},0.5,0.5,0.5,0.5,0.5,0.5,0.5]"))
    }
}

#[test]
fn an_applied_terminate_ends_the_episode_with_exit_0_and_no_action_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = spawn_sim(dir.path());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let s = run_with(&sim.link, Some(30), sent.clone(), Terminating(0));
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("policy_terminated", exit::OK),
        "{s:?}"
    );
    assert_eq!(sim.thread.join().unwrap().0, SimExit::Stopped);
    let applied = sim.applied.lock().unwrap();
    // The terminating action was applied and is the last one (wire slot 7 is terminate).
    let last = applied.last().expect("actions applied");
    assert_eq!(last.values[7], 1.0);
    assert!(applied[..applied.len() - 1]
        .iter()
        .all(|a| a.values[7] == 0.0));
    let link = s.link.expect("link outcomes");
    assert_eq!(link.applied, applied.len() as u64);
}
