//! What the control loop itself costs, outside inference: thread hops, the newest-frame slot,
//! the embedding history, answer parsing and decoding, stamps and stats, at 640×480.
//!
//! `cargo bench --bench loop_overhead` prints per-stage p50/p99 from the loop's own stats and
//! the vision-cache ratio. The parts plugged in here cost nothing by design (the frame is
//! shared, not copied; "inference" returns at once), so what is left is the loop's overhead.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spatialbot_edge::pipeline::{
    run_loop, Action, ActionSink, CapturedFrame, Delivery, FrameSource, LanguageModel, LoopConfig,
    LoopParts, SinkError, StageError, StopReason, VisionEncoder,
};
use spatialbot_edge::policy::{
    action_from_answer, ActionLayout, EmbeddingHistory, PolicyPrompt, PolicySpec,
};
use spatialbot_edge::rgbd::{DepthMm, RgbImage};

const MANIFEST: &str = r#"
kind = "policy"
[prompt]
template = "USER:{images}{question} ASSISTANT:"
image_placeholder = "<image {n}>\n"
[policy]
frames = 4
order = "newest_first"
pad = "repeat_oldest"
instruction = "Instruct the robot to {goal}\nAnswer with robot parameters."
"#;

struct Frames {
    seq: u64,
    rgb: Arc<RgbImage>,
    depth: Arc<DepthMm>,
    interval: Duration,
}

impl FrameSource for Frames {
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, StageError> {
        std::thread::sleep(self.interval);
        let now = Instant::now();
        self.seq += 1;
        Ok(Some(CapturedFrame {
            seq: self.seq,
            captured: now,
            arrived: now,
            ready: now,
            rgb: self.rgb.clone(),
            depth: Some(self.depth.clone()),
        }))
    }
}

struct Vision;
impl VisionEncoder for Vision {
    type Input = u64;
    type Embedding = u64;
    fn preprocess(&mut self, frame: &CapturedFrame, _image: usize) -> Result<u64, StageError> {
        Ok(frame.seq)
    }
    fn encode(&mut self, input: u64) -> Result<u64, StageError> {
        Ok(input)
    }
}

struct Model;
impl LanguageModel<u64> for Model {
    fn generate(
        &mut self,
        _p: &PolicyPrompt,
        images: &[Arc<u64>],
        _max: usize,
    ) -> Result<String, StageError> {
        Ok(format!(
            "[0,0.{:02},0.51,0.49,0.5,0.5,0.5,1]",
            *images[0] % 100
        ))
    }
}

struct Sink;
impl ActionSink for Sink {
    fn send(&mut self, action: &Action, _now: Instant) -> Result<Delivery, SinkError> {
        std::hint::black_box(&action.values);
        Ok(Delivery::Sent)
    }
    fn hold(&mut self, _reason: &str, _now: Instant) -> Result<(), SinkError> {
        Ok(())
    }
    fn stop(&mut self, _why: StopReason) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Real preprocessing, no vision graph: what the loop spends before inference.
struct PreprocessOnly(spatialbot_edge::pipeline::vision::FrameTensors);
impl VisionEncoder for PreprocessOnly {
    type Input = spatialbot_edge::preprocess::Tensor;
    type Embedding = usize;
    fn preprocess(
        &mut self,
        frame: &CapturedFrame,
        image: usize,
    ) -> Result<Self::Input, StageError> {
        self.0.tensor(frame, image)
    }
    fn encode(&mut self, input: Self::Input) -> Result<usize, StageError> {
        Ok(input.data.len())
    }
}

struct FixedAnswer;
impl LanguageModel<usize> for FixedAnswer {
    fn generate(
        &mut self,
        _p: &PolicyPrompt,
        _images: &[Arc<usize>],
        _max: usize,
    ) -> Result<String, StageError> {
        Ok("[0,0.51,0.49,0.5,0.5,0.5,0.5,1]".to_string())
    }
}

/// The sample recording (640×480, registered), CLIP-336 preprocessing, the governor and the
/// wire link to the in-process simulator; inference replaced by nothing.
fn real_parts(spec: &PolicySpec) {
    use spatialbot_edge::board::{Board, BUILTIN_PROFILES};
    use spatialbot_edge::pipeline::camera_source::CameraFrames;
    use spatialbot_edge::pipeline::link_sink::LinkSink;
    use spatialbot_edge::pipeline::vision::FrameTensors;
    use spatialbot_edge::preprocess::Tower;

    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample");
    let camera = CameraFrames::open(
        &format!("replay,fast,loop:{sample}")
            .parse()
            .expect("camera spec"),
    )
    .expect("sample recording");
    let text = BUILTIN_PROFILES[0]
        .1
        .replace("rate_limit_hz = 10.0", "rate_limit_hz = 1000.0");
    let board =
        Board::from_toml_str(&text, "bench-board.toml".as_ref(), ".".as_ref()).expect("board");
    let names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
    let sink = LinkSink::open(&"sim".parse().expect("link spec"), &board, &names)
        .expect("link to the simulator");
    let vision = PreprocessOnly(FrameTensors::new(Tower::Clip, 336, false).expect("preprocessor"));
    let cfg = LoopConfig {
        goal: "pick up the red cube".into(),
        steps: Some(300),
        ..LoopConfig::default()
    };
    let parts = LoopParts {
        source: camera,
        vision,
        model: FixedAnswer,
        sink,
        guard: None,
    };
    let summary = run_loop(parts, spec, &cfg, Arc::new(AtomicBool::new(false))).expect("loop");
    println!("\nreal parts outside inference: sample recording 640x480 (decoded as fast as possible), CLIP-336 preprocessing, governor + wire to the simulator:");
    print!("{}", summary.to_text());
}

fn main() {
    let spec = PolicySpec::from_manifest_toml(MANIFEST).expect("bench manifest");
    let (w, h) = (640, 480);
    let frames = Frames {
        seq: 0,
        rgb: Arc::new(RgbImage::filled(w, h, [90, 120, 150])),
        depth: Arc::new(DepthMm::zeros(w, h)),
        interval: Duration::from_micros(1000),
    };
    let cfg = LoopConfig {
        goal: "pick up the red cube".into(),
        steps: Some(2000),
        ..LoopConfig::default()
    };
    let parts = LoopParts {
        source: frames,
        vision: Vision,
        model: Model,
        sink: Sink,
        guard: None,
    };
    let summary = run_loop(parts, &spec, &cfg, Arc::new(AtomicBool::new(false))).expect("loop");
    println!(
        "loop over {} steps at {w}x{h}, camera at 1 kHz, zero-cost inference:",
        summary.steps
    );
    print!("{}", summary.to_text());

    real_parts(&spec);

    let layout = ActionLayout::maniskill();
    let n = 200_000;
    let t = Instant::now();
    for i in 0..n {
        let text = if i % 2 == 0 {
            "[0, 0.51, 0.49, 0.5, 0.25, 0.75, 0.5, 1]"
        } else {
            "[0,0.12,0.88,0.5,0.5,0.5,0.5,0]"
        };
        std::hint::black_box(
            action_from_answer(&layout, std::hint::black_box(text)).expect("parses"),
        );
    }
    println!(
        "answer parse + decode: {:.3} µs per action",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    let mut history: EmbeddingHistory<u64> = EmbeddingHistory::new(&spec);
    let t = Instant::now();
    for seq in 0..n as u64 {
        std::hint::black_box(history.step(seq, |_| Ok::<_, ()>(seq)).expect("encodes"));
    }
    println!(
        "embedding history step: {:.3} µs per step",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
