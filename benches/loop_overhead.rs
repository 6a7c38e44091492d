//! What the control loop itself costs, outside inference: thread hops, the newest-frame slot,
//! the embedding history, answer parsing and decoding, stamps and stats, at 640×480.
//!
//! `cargo bench --bench loop_overhead` prints per-stage p50/p99 from the loop's own stats and
//! the vision-cache ratio. The parts plugged in here cost nothing by design (the frame is
//! shared, not copied; "inference" returns at once), so what is left is the loop's overhead.
//!
//! Then the issue's overhead outside inference, measured twice: inside the threaded loop (its
//! `overhead` stage, which also holds whatever the scheduler adds on a loaded machine), and step
//! by step on one thread (wall and thread CPU time per frame): registered frame ready → CLIP-336
//! tensor (and the packed-depth tensor of an RGB-D policy) + answer → action → governor → bytes
//! written to the simulator. The Pillow + numpy preprocessing of the same frame runs in the same
//! command when the reference Python is found (`SBE_PYTHON`, else `.venv/bin/python`). The load
//! average is printed with each table: on a shared machine it explains the tails.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spatialbot_edge::pipeline::{
    run_loop, Action, ActionSink, Delivery, Depth, FrameSource, LanguageModel, LoopConfig,
    LoopParts, RgbdFrame, SinkError, StageError, StopReason, VisionEncoder,
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
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, StageError> {
        std::thread::sleep(self.interval);
        let now = Instant::now();
        self.seq += 1;
        Ok(Some(RgbdFrame {
            depth: Depth::Registered(self.depth.clone()),
            ..RgbdFrame::new(self.seq, self.rgb.clone(), now)
        }))
    }
}

struct Vision;
impl VisionEncoder for Vision {
    type Input = u64;
    type Embedding = u64;
    fn preprocess(&mut self, frame: &RgbdFrame, _image: usize) -> Result<u64, StageError> {
        Ok(frame.sequence)
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
    fn hold(
        &mut self,
        _reason: &spatialbot_edge::pipeline::Hold,
        _now: Instant,
    ) -> Result<(), SinkError> {
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
    fn preprocess(&mut self, frame: &RgbdFrame, image: usize) -> Result<Self::Input, StageError> {
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
    use spatialbot_edge::config::{Board, BUILTIN_PROFILES};
    use spatialbot_edge::pipeline::camera_source::{CameraFrames, DepthNeed};
    use spatialbot_edge::pipeline::link_sink::LinkSink;
    use spatialbot_edge::pipeline::vision::FrameTensors;
    use spatialbot_edge::preprocess::Tower;

    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample");
    let camera = CameraFrames::open(
        &format!("replay,fast,loop:{sample}")
            .parse()
            .expect("camera spec"),
        DepthNeed::Registered,
    )
    .expect("sample recording");
    let text = BUILTIN_PROFILES[0]
        .1
        .replace("rate_limit_hz = 10.0", "rate_limit_hz = 1000.0");
    let board =
        Board::from_toml_str(&text, "bench-board.toml".as_ref(), ".".as_ref()).expect("board");
    let names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
    let sink = LinkSink::open(
        &"sim".parse().expect("link spec"),
        board.link_config().expect("link config"),
        &names,
    )
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
    println!("\nreal parts outside inference, threaded loop: sample recording 640x480 (decoded as fast as possible), CLIP-336 preprocessing, governor + wire to the simulator; load average {}:", load_average());
    print!("{}", summary.to_text());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// p50, p99 and max in milliseconds.
fn quantiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.99), at(1.0))
}

/// The issue's overhead outside inference, one step at a time on this thread.
fn inline_overhead(spec: &PolicySpec, with_depth: bool, steps: usize) -> Option<RgbImage> {
    use spatialbot_edge::config::{Board, BUILTIN_PROFILES};
    use spatialbot_edge::pipeline::camera_source::{CameraFrames, DepthNeed};
    use spatialbot_edge::pipeline::link_sink::LinkSink;
    use spatialbot_edge::pipeline::vision::FrameTensors;
    use spatialbot_edge::pipeline::{ActionSink, FrameSource};
    use spatialbot_edge::preprocess::Tower;

    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample");
    let mut camera = CameraFrames::open(
        &format!("replay,fast,loop:{sample}")
            .parse()
            .expect("camera spec"),
        DepthNeed::Registered,
    )
    .expect("sample recording");
    let text = BUILTIN_PROFILES[0]
        .1
        .replace("rate_limit_hz = 10.0", "rate_limit_hz = 1000.0");
    let board =
        Board::from_toml_str(&text, "bench-board.toml".as_ref(), ".".as_ref()).expect("board");
    let names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
    let mut sink = LinkSink::open(
        &"sim".parse().expect("link spec"),
        board.link_config().expect("link config"),
        &names,
    )
    .expect("link to the simulator");
    let mut tensors = FrameTensors::new(Tower::Clip, 336, false).expect("preprocessor");
    let names: Arc<[String]> = names.into();
    let load_before = load_average();
    let (mut ready, mut pre, mut act, mut total, mut cpu) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut sent = 0;
    let mut first = None;
    for step in 0..steps as u64 {
        let frame = camera
            .next_frame()
            .expect("sample frame")
            .expect("looped recording");
        let (c0, t0) = (thread_cpu(), Instant::now());
        let rgb = tensors.tensor(&frame, 0).expect("colour tensor");
        std::hint::black_box(&rgb);
        if with_depth {
            std::hint::black_box(tensors.tensor(&frame, 1).expect("depth tensor"));
        }
        let t1 = Instant::now();
        let answer = if step % 2 == 0 {
            "[0,0.51,0.49,0.5,0.5,0.5,0.5,1]"
        } else {
            "[0,0.49,0.51,0.5,0.5,0.5,0.5,1]"
        };
        let values = action_from_answer(&spec.actions, answer).expect("parses");
        let action = Action {
            step: step + 1,
            frame_seq: frame.sequence,
            captured: frame.capture,
            names: names.clone(),
            values,
        };
        if let Ok(Delivery::Sent) = sink.send(&action, Instant::now()) {
            sent += 1;
        }
        let (t2, c2) = (Instant::now(), thread_cpu());
        let registered = frame.ready.saturating_duration_since(frame.arrival);
        ready.push(registered);
        pre.push(t1 - t0);
        act.push(t2 - t1);
        total.push(registered + (t2 - t0));
        cpu.push(c2.saturating_sub(c0));
        if first.is_none() {
            first = Some((*frame.color).clone());
        }
    }
    let _ = sink.stop(StopReason::StepsDone);
    println!(
        "\noverhead outside inference, one thread, {steps} frames of the sample recording (640x480), CLIP-336{}; {sent} actions written to the simulator; load average {load_before} before, {} after:",
        if with_depth { " colour + packed depth" } else { " colour" },
        load_average()
    );
    println!(
        "  {:<44} {:>9} {:>9} {:>9}",
        "stage", "p50 ms", "p99 ms", "max ms"
    );
    for (name, samples) in [
        ("registered frame ready (arrival -> ready)", &mut ready),
        ("frame -> tensors", &mut pre),
        ("answer -> action -> governor -> wire", &mut act),
        ("total overhead (wall)", &mut total),
        ("preprocess + action, thread CPU time", &mut cpu),
    ] {
        let (p50, p99, max) = quantiles(samples);
        println!("  {name:<44} {p50:>9.3} {p99:>9.3} {max:>9.3}");
    }
    first
}

/// Pillow + numpy doing the same CLIP-336 preprocessing of the same frame, per call.
const PILLOW_CLIP: &str = r#"
import sys, time
import numpy as np
from PIL import Image
w, h, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
img = Image.frombytes('RGB', (w, h), open(sys.argv[1], 'rb').read())
mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
def clip():
    short, long = min(w, h), max(w, h)
    nl = int(336 * long / short)
    ow, oh = (336, nl) if w <= h else (nl, 336)
    arr = np.array(img.resize((ow, oh), Image.BICUBIC))
    top, left = (oh - 336) // 2, (ow - 336) // 2
    arr = arr[top:top + 336, left:left + 336]
    x = (arr * (1 / 255)).astype(np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))
times = []
for _ in range(n):
    t = time.perf_counter_ns(); clip(); times.append(time.perf_counter_ns() - t)
times.sort()
q = lambda p: times[min(len(times) - 1, max(0, int(len(times) * p + 0.999999) - 1))] / 1e6
print(f"{q(0.5):.3f} {q(0.99):.3f} {times[-1] / 1e6:.3f}")
"#;

fn reference_preprocess(frame: &RgbImage, steps: usize) {
    let python = std::env::var_os("SBE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").into());
    let dir = std::env::temp_dir().join(format!("sbe-loop-overhead-{}", std::process::id()));
    let ran = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join("frame.color"), &frame.data))
        .and_then(|_| {
            std::process::Command::new(&python)
                .arg("-c")
                .arg(PILLOW_CLIP)
                .arg(dir.join("frame.color"))
                .args([
                    frame.width.to_string(),
                    frame.height.to_string(),
                    steps.to_string(),
                ])
                .output()
        });
    let _ = std::fs::remove_dir_all(&dir);
    match ran {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let v: Vec<&str> = text.split_whitespace().collect();
            if let [p50, p99, max] = v[..] {
                println!(
                    "  {:<44} {p50:>9} {p99:>9} {max:>9}   (reference, same frame, load average {})",
                    "Pillow + numpy: frame -> CLIP-336 tensor",
                    load_average()
                );
            }
        }
        _ => println!(
            "  (reference Pillow + numpy skipped: no Python with Pillow at {}; set SBE_PYTHON)",
            python.display()
        ),
    }
}

fn main() {
    // As the binary does at start.
    spatialbot_edge::memory::tune_for_frame_buffers();
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
    let first = inline_overhead(&spec, false, 1000);
    if let Some(frame) = first {
        reference_preprocess(&frame, 300);
    }
    inline_overhead(&spec, true, 500);

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
