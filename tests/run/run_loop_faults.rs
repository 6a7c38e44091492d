//! The control loop's threads, channels, stamps and stops, driven through its traits by small
//! parts: a paced frame generator, a vision encoder that counts its calls, a sink that records
//! what reached the "wire" (`support::fakes`), and a language model that answers from the
//! embeddings it was given (here). The loop itself is the real one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::fakes::{Frames, RecordingSink, SeqEncoder};
use spatialbot_edge::exit;
use spatialbot_edge::pipeline::GuardModel;
use spatialbot_edge::pipeline::{
    run_loop, Action, ActionSink, Delivery, Hold, LanguageModel, LoopConfig, LoopParts, Report,
    RgbdFrame, SinkError, StageError, StopReason,
};
use spatialbot_edge::policy::guard::GuardConfig;
use spatialbot_edge::policy::{PolicyPrompt, PolicySpec};

const MANIFEST: &str = r#"
kind = "policy"
[llm]
max_new_tokens = 16
[prompt]
template = "USER:{images}{question} ASSISTANT:"
image_placeholder = "<image {n}>\n"
[policy]
frames = 4
order = "newest_first"
pad = "repeat_oldest"
instruction = "Instruct the robot to {goal}\nAnswer with robot parameters."
"#;

fn spec() -> PolicySpec {
    PolicySpec::from_manifest_toml(MANIFEST).unwrap()
}

/// Answers `[0, s0/100, s1/100, s2/100, s3/100, 0.5, 0.5, 1]` from the frames it was shown,
/// unless `script` says otherwise for that step.
#[derive(Clone)]
struct Model {
    delay: Duration,
    seen: Arc<Mutex<Vec<Vec<u64>>>>,
    script: Arc<dyn Fn(u64) -> Option<String> + Send + Sync>,
    step: u64,
}

impl Model {
    fn new(delay_ms: u64) -> Self {
        Self {
            delay: Duration::from_millis(delay_ms),
            seen: Default::default(),
            script: Arc::new(|_| None),
            step: 0,
        }
    }
}

impl LanguageModel<u64> for Model {
    fn generate(
        &mut self,
        prompt: &PolicyPrompt,
        images: &[Arc<u64>],
        max_new_tokens: usize,
    ) -> Result<String, StageError> {
        assert_eq!(prompt.images(), images.len());
        assert_eq!(max_new_tokens, 16);
        assert!(prompt
            .text
            .contains("Instruct the robot to stack the cubes"));
        self.step += 1;
        std::thread::sleep(self.delay);
        let seqs: Vec<u64> = images.iter().map(|a| **a).collect();
        self.seen.lock().unwrap().push(seqs.clone());
        if let Some(text) = (self.script)(self.step) {
            return Ok(text);
        }
        let v: Vec<String> = seqs
            .iter()
            .map(|s| format!("{}", *s as f64 / 100.0))
            .collect();
        Ok(format!("[0, {}, 0.5, 0.5, 1]", v.join(", ")))
    }
}

fn config() -> LoopConfig {
    LoopConfig {
        goal: "stack the cubes".into(),
        ..LoopConfig::default()
    }
}

fn run(
    source: Frames,
    encoder: SeqEncoder,
    model: Model,
    sink: RecordingSink,
    cfg: LoopConfig,
    signal: Arc<AtomicBool>,
) -> Report {
    run_guarded(source, encoder, model, sink, cfg, signal, None)
}

fn run_guarded(
    source: Frames,
    encoder: SeqEncoder,
    model: Model,
    sink: RecordingSink,
    cfg: LoopConfig,
    signal: Arc<AtomicBool>,
    guard: Option<(GuardConfig, Box<dyn GuardModel>)>,
) -> Report {
    run_loop(
        LoopParts {
            source,
            vision: encoder,
            model,
            sink,
            guard,
        },
        &spec(),
        &cfg,
        signal,
    )
    .unwrap()
}

#[test]
fn slow_model_acts_on_newest_frames_and_encodes_each_once() {
    let encoder = SeqEncoder::checked();
    let model = Model::new(25);
    let sink = RecordingSink::default();
    let cfg = LoopConfig {
        steps: Some(8),
        ..config()
    };
    let s = run(
        Frames::paced(1000, 2),
        encoder.clone(),
        model.clone(),
        sink.clone(),
        cfg,
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("steps", exit::OK),
        "{s:?}"
    );
    assert_eq!((s.steps, s.actions_sent), (8, 8));
    assert!(
        s.frames.dropped > 0,
        "a camera 10x faster than the model must drop frames: {s:?}"
    );
    assert!(sink.stopped.load(Ordering::SeqCst));

    // One vision call per step: the history's other frames come from the cache.
    assert_eq!(encoder.calls.load(Ordering::SeqCst), 8);
    assert_eq!(s.vision_cache.images_encoded, 8);
    assert_eq!(s.vision_cache.images_referenced, 32);
    assert!(s.vision_cache.encode_ratio <= 0.3);

    let seen = model.seen.lock().unwrap().clone();
    let sent = sink.sent.lock().unwrap().clone();
    for (i, (images, action)) in seen.iter().zip(&sent).enumerate() {
        // Newest first, padded with the oldest, and the action is the newest frame's.
        assert_eq!(images[0], action.frame_seq);
        assert!(images.windows(2).all(|w| w[0] >= w[1]), "{images:?}");
        let distinct: std::collections::BTreeSet<_> = images.iter().collect();
        assert_eq!(distinct.len(), (i + 1).min(4), "{images:?}");
        assert_eq!(action.step, i as u64 + 1);
        // ManiSkill decoding of what the model answered.
        let want: Vec<f64> = std::iter::once(0.0)
            .chain(
                images
                    .iter()
                    .map(|s| (*s as f64 / 100.0) * f64::from(0.4f32) + f64::from(-0.2f32)),
            )
            .chain([
                0.5 * f64::from(0.4f32) + f64::from(-0.2f32),
                0.5 * f64::from(0.4f32) + f64::from(-0.2f32),
                1.0,
            ])
            .collect();
        assert_eq!(action.values, want);
        assert_eq!(
            &action.names[..8],
            [
                "terminate",
                "dx",
                "dy",
                "dz",
                "droll",
                "dpitch",
                "dyaw",
                "gripper"
            ]
        );
    }
    // Frames move forward and are never reused out of order.
    assert!(sent.windows(2).all(|w| w[1].frame_seq > w[0].frame_seq));
    for stage in [
        "camera",
        "queue",
        "preprocess",
        "vision",
        "generate",
        "action",
        "link",
        "overhead",
        "end_to_end",
        "step_interval",
    ] {
        assert!(
            s.stages.contains_key(stage),
            "missing stage {stage}: {:?}",
            s.stages.keys()
        );
    }
    assert_eq!(s.stages["vision"].count, 8);
}

#[test]
fn recording_ending_mid_run_stops_cleanly() {
    let sink = RecordingSink::default();
    let cfg = LoopConfig {
        steps: Some(100),
        ..config()
    };
    let s = run(
        Frames::paced(5, 5),
        SeqEncoder::checked(),
        Model::new(1),
        sink.clone(),
        cfg,
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("source_ended", exit::OK),
        "{s:?}"
    );
    assert!(s.actions_sent >= 1 && s.actions_sent <= 5);
    assert!(sink.stopped.load(Ordering::SeqCst));
}

#[test]
fn unparsable_answers_hold_then_stop() {
    let sink = RecordingSink::default();
    let mut model = Model::new(1);
    model.script = Arc::new(|step| (step == 2).then(|| "move the arm left".to_string()));
    let cfg = LoopConfig {
        steps: Some(4),
        ..config()
    };
    let s = run(
        Frames::paced(1000, 2),
        SeqEncoder::checked(),
        model,
        sink.clone(),
        cfg,
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("steps", exit::OK),
        "{s:?}"
    );
    assert_eq!((s.steps, s.actions_sent), (4, 3));
    assert_eq!(s.holds.get("unparsable_answer"), Some(&1));
    assert_eq!(sink.holds.lock().unwrap().len(), 1);

    let sink = RecordingSink::default();
    let mut model = Model::new(1);
    model.script = Arc::new(|_| Some("[0.1, nan, 0.2]".to_string()));
    let s = run(
        Frames::paced(1000, 2),
        SeqEncoder::checked(),
        model,
        sink.clone(),
        config(),
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("unparsable_answers", exit::RUNTIME),
        "{s:?}"
    );
    assert_eq!(s.actions_sent, 0);
    assert_eq!(s.holds.get("unparsable_answer"), Some(&5));
    assert!(sink.stopped.load(Ordering::SeqCst));
}

#[test]
fn link_dying_stops_with_link_lost() {
    let sink = RecordingSink {
        die_after: Some(3),
        ..RecordingSink::default()
    };
    let s = run(
        Frames::paced(1000, 2),
        SeqEncoder::checked(),
        Model::new(1),
        sink.clone(),
        config(),
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("link_lost", exit::LINK_LOST),
        "{s:?}"
    );
    assert_eq!(s.actions_sent, 3);
}

#[test]
fn camera_stall_holds_then_watchdog_stops() {
    let sink = RecordingSink::default();
    let mut frames = Frames::paced(3, 2);
    frames.stall_after = Some(Duration::from_secs(3));
    let cfg = LoopConfig {
        max_frame_age: Duration::from_millis(50),
        camera_stall_stop: Duration::from_millis(300),
        ..config()
    };
    let s = run(
        frames,
        SeqEncoder::checked(),
        Model::new(1),
        sink.clone(),
        cfg,
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("camera_stalled", exit::WATCHDOG_STOP),
        "{s:?}"
    );
    // The camera went quiet: the arm was told to hold (once per wait) before the stop.
    let holds =
        s.holds.get("camera_stall").unwrap_or(&0) + s.holds.get("stale_frame").unwrap_or(&0);
    assert!(holds >= 1, "{s:?}");
    assert!(!sink.holds.lock().unwrap().is_empty());
    assert!(sink.stopped.load(Ordering::SeqCst));
}

#[test]
fn stale_frames_are_not_acted_on() {
    let sink = RecordingSink::default();
    let mut frames = Frames::paced(1000, 2);
    frames.age = Duration::from_secs(1);
    let cfg = LoopConfig {
        max_frame_age: Duration::from_millis(100),
        camera_stall_stop: Duration::from_millis(200),
        ..config()
    };
    let s = run(
        frames,
        SeqEncoder::checked(),
        Model::new(1),
        sink.clone(),
        cfg,
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("camera_stalled", exit::WATCHDOG_STOP),
        "{s:?}"
    );
    assert_eq!(s.actions_sent, 0);
    assert_eq!(s.holds.get("stale_frame"), Some(&1));
}

#[test]
fn signal_and_duration_stop_cleanly() {
    let sink = RecordingSink::default();
    let signal = Arc::new(AtomicBool::new(false));
    let raise = signal.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        raise.store(true, Ordering::SeqCst);
    });
    let s = run(
        Frames::paced(100_000, 2),
        SeqEncoder::checked(),
        Model::new(5),
        sink.clone(),
        config(),
        signal,
    );
    t.join().unwrap();
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("signal", exit::OK),
        "{s:?}"
    );
    assert!(sink.stopped.load(Ordering::SeqCst));

    let cfg = LoopConfig {
        duration: Some(Duration::from_millis(150)),
        ..config()
    };
    let s = run(
        Frames::paced(100_000, 2),
        SeqEncoder::checked(),
        Model::new(5),
        RecordingSink::default(),
        cfg,
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("duration", exit::OK),
        "{s:?}"
    );
    assert!(s.steps >= 1);
}

/// Answers "No" about frames with an odd sequence number, and cannot answer about frame 4.
struct Guard {
    asked: Arc<Mutex<Vec<(u64, String)>>>,
}

impl GuardModel for Guard {
    fn ask(&mut self, frame: &RgbdFrame, question: &str) -> Result<String, StageError> {
        self.asked
            .lock()
            .unwrap()
            .push((frame.sequence, question.to_string()));
        match frame.sequence {
            4 => Err("spatialbot: out of memory".into()),
            s if s % 2 == 1 => Ok("No.".into()),
            _ => Ok("Yes, it is.".into()),
        }
    }
}

#[test]
fn guard_vetoes_hold_the_arm() {
    let sink = RecordingSink::default();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let guard_cfg: GuardConfig =
        toml::from_str("question = \"Is the gripper around the object?\"\nevery_steps = 1")
            .unwrap();
    let guard: Box<dyn GuardModel> = Box::new(Guard {
        asked: asked.clone(),
    });
    // A camera slower than the model: every frame is acted on, so sequence numbers are steps.
    let cfg = LoopConfig {
        steps: Some(6),
        ..config()
    };
    let s = run_guarded(
        Frames::paced(1000, 15),
        SeqEncoder::checked(),
        Model::new(1),
        sink.clone(),
        cfg,
        Default::default(),
        Some((guard_cfg, guard)),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("steps", exit::OK),
        "{s:?}"
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 6);
    assert!(asked
        .iter()
        .all(|(_, q)| q == "Is the gripper around the object?"));
    let vetoed = asked
        .iter()
        .filter(|(seq, _)| seq % 2 == 1 || *seq == 4)
        .count() as u64;
    assert_eq!(s.holds.get("guard_veto").copied().unwrap_or(0), vetoed);
    assert_eq!(s.actions_sent, 6 - vetoed);
    let sent = sink.sent.lock().unwrap();
    assert!(sent
        .iter()
        .all(|a| a.frame_seq % 2 == 0 && a.frame_seq != 4));
    assert_eq!(s.stages["guard"].count, 6);
}

#[test]
fn every_frame_mode_acts_on_each_frame_in_order() {
    let sink = RecordingSink::default();
    let model = Model::new(5);
    let cfg = LoopConfig {
        steps: Some(50),
        every_frame: true,
        ..config()
    };
    let s = run(
        Frames::paced(6, 0),
        SeqEncoder::checked(),
        model.clone(),
        sink.clone(),
        cfg,
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("source_ended", exit::OK),
        "{s:?}"
    );
    assert_eq!((s.frames.dropped, s.actions_sent), (0, 6));
    let seen = model.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            [0, 0, 0, 0],
            [1, 0, 0, 0],
            [2, 1, 0, 0],
            [3, 2, 1, 0],
            [4, 3, 2, 1],
            [5, 4, 3, 2]
        ]
    );
}

/// Records when each action left the sink: the instant the arm had it.
#[derive(Clone, Default)]
struct TimedSink {
    sent: Arc<Mutex<Vec<(Instant, Instant)>>>,
}

impl ActionSink for TimedSink {
    fn send(&mut self, action: &Action, _now: Instant) -> Result<Delivery, SinkError> {
        // Captured, delivered.
        self.sent
            .lock()
            .unwrap()
            .push((action.captured, Instant::now()));
        Ok(Delivery::Sent)
    }
    fn hold(&mut self, _reason: &Hold, _now: Instant) -> Result<(), SinkError> {
        Ok(())
    }
    fn stop(&mut self, _why: StopReason) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A model 12× slower than the camera: the newest frame when it answers was taken before its
/// action reached the arm. By default the loop skips such frames; `frame_after_action = false`
/// acts on them.
#[test]
fn each_step_sees_a_frame_taken_after_its_previous_action() {
    for frame_after_action in [true, false] {
        let sink = TimedSink::default();
        let cfg = LoopConfig {
            steps: Some(8),
            frame_after_action,
            ..config()
        };
        let s = run_loop(
            LoopParts {
                source: Frames::endless(2),
                vision: SeqEncoder::checked(),
                model: Model::new(25),
                sink: sink.clone(),
                guard: None,
            },
            &spec(),
            &cfg,
            Default::default(),
        )
        .unwrap();
        assert_eq!((s.steps, s.actions_sent), (8, 8), "{s:?}");
        let sent = sink.sent.lock().unwrap().clone();
        let after = sent.windows(2).filter(|w| w[1].0 >= w[0].1).count();
        if frame_after_action {
            assert_eq!(
                after, 7,
                "every frame after the previous delivery: {sent:?}"
            );
            assert!(s.frames.before_action > 0, "{s:?}");
        } else {
            assert!(after < 7, "the newest frame predates the action: {sent:?}");
            assert_eq!(s.frames.before_action, 0, "{s:?}");
        }
    }
}

/// The real governor and wire link to the in-process controller simulator.
#[test]
fn real_governor_and_link_to_the_simulator() {
    use spatialbot_edge::config::Board;
    use spatialbot_edge::pipeline::link_sink::LinkSink;

    let dev = spatialbot_edge::config::BUILTIN_PROFILES[0].1;
    let text = dev.replace("rate_limit_hz = 10.0", "rate_limit_hz = 1000.0");
    let board = Board::from_toml_str(&text, "test-board.toml".as_ref(), ".".as_ref()).unwrap();
    let names: Vec<String> = spec()
        .actions
        .dims()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let sink = LinkSink::open(
        &"sim".parse().unwrap(),
        board.link_config().unwrap(),
        &names,
    )
    .unwrap();
    let cfg = LoopConfig {
        steps: Some(10),
        ..config()
    };
    let s = run_loop(
        LoopParts {
            source: Frames::paced(1000, 2),
            vision: SeqEncoder::checked(),
            model: Model::new(1),
            sink,
            guard: None,
        },
        &spec(),
        &cfg,
        Default::default(),
    )
    .unwrap();
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("steps", exit::OK),
        "{s:?}"
    );
    assert_eq!(s.actions_sent, 10, "{s:?}");
}

#[test]
fn generation_past_its_deadline_stops_with_watchdog() {
    let sink = RecordingSink::default();
    let mut model = Model::new(1);
    model.delay = Duration::from_millis(800);
    let cfg = LoopConfig {
        stage_deadline: Some(Duration::from_millis(100)),
        ..config()
    };
    let s = run(
        Frames::paced(1000, 2),
        SeqEncoder::checked(),
        model,
        sink.clone(),
        cfg,
        Default::default(),
    );
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("stage_stuck", exit::WATCHDOG_STOP),
        "{s:?}"
    );
    assert_eq!(s.actions_sent, 0);
    assert!(
        sink.stopped.load(Ordering::SeqCst),
        "Stop was sent while the model was still busy"
    );
}
