//! Depth registration for the control loop, on the real synthetic camera: an RGB-D policy gets,
//! for each frame it takes, exactly the depth the camera module's own registering source
//! produces for that frame (registered at capture, by `CameraFrames` for a source opened
//! elsewhere, or on the vision thread when left to consumers); an RGB policy without a guard
//! gets no depth; the guard of an RGB policy gets registered depth for the frames it is asked
//! about, and nothing else registers.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::support::fakes::{FixedAnswer, RecordingSink, Seen, SeqEncoder};
use spatialbot_edge::camera::{self, CameraSpec, OpenOptions};
use spatialbot_edge::pipeline::camera_source::{CameraFrames, DepthNeed};
use spatialbot_edge::pipeline::{
    run_loop, GuardModel, LoopConfig, LoopParts, Report, RgbdFrame, StageError,
};
use spatialbot_edge::policy::guard::GuardConfig;
use spatialbot_edge::policy::PolicySpec;
use spatialbot_edge::rgbd::DepthMm;

const CAMERA: &str = "synthetic,fast:64x48@15";
const STEPS: u64 = 6;

fn spec(depth: bool) -> PolicySpec {
    let manifest = format!(
        r#"
kind = "policy"
[llm]
max_new_tokens = 16
[prompt]
template = "USER:{{images}}{{question}} ASSISTANT:"
image_placeholder = "<image {{n}}>\n"
[policy]
frames = 2
order = "newest_first"
pad = "repeat_oldest"
instruction = "Instruct the robot to {{goal}}\nAnswer with robot parameters."
depth = {depth}
"#
    );
    PolicySpec::from_manifest_toml(&manifest).unwrap()
}

fn camera_spec() -> CameraSpec {
    CAMERA.parse().unwrap()
}

/// What the camera module's registering source delivers for each of the first `n` frames.
fn registered_by_the_camera_module(n: u64) -> BTreeMap<u64, DepthMm> {
    let mut source = camera::open(&camera_spec(), &OpenOptions::with_register(true)).unwrap();
    let mut out = BTreeMap::new();
    while (out.len() as u64) < n {
        let f = source.next_frame().unwrap().unwrap();
        assert!(f.depth.is_registered());
        out.insert(f.sequence, (**f.depth.image().unwrap()).clone());
    }
    out
}

/// Frame and the registered depth the frame carried.
type Asked = Vec<(u64, Option<Arc<DepthMm>>)>;

/// Answers yes; records the depth of each frame it was asked about.
struct Guard(Arc<Mutex<Asked>>);

impl GuardModel for Guard {
    fn ask(&mut self, frame: &RgbdFrame, _question: &str) -> Result<String, StageError> {
        self.0
            .lock()
            .unwrap()
            .push((frame.sequence, frame.depth.registered().cloned()));
        Ok("Yes".into())
    }
}

fn opened(depth: DepthNeed) -> CameraFrames {
    CameraFrames::open(&camera_spec(), depth).unwrap()
}

fn run(
    spec: &PolicySpec,
    source: CameraFrames,
    guard: Option<(GuardConfig, Box<dyn GuardModel>)>,
) -> (Report, Seen) {
    let seen: Arc<Mutex<Seen>> = Default::default();
    let parts = LoopParts {
        source,
        vision: SeqEncoder {
            seen: seen.clone(),
            ..SeqEncoder::default()
        },
        model: FixedAnswer("[0,0.5,0.5,0.5,0.5,0.5,0.5,1]"),
        sink: RecordingSink::default(),
        guard,
    };
    let cfg = LoopConfig {
        goal: "stack the cubes".into(),
        steps: Some(STEPS),
        every_frame: true,
        ..LoopConfig::default()
    };
    let summary = run_loop(parts, spec, &cfg, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(summary.stop_reason, "steps", "{summary:?}");
    let seen = seen.lock().unwrap().clone();
    (summary, seen)
}

#[test]
fn an_rgbd_policy_sees_the_depth_the_camera_module_registers() {
    let want = registered_by_the_camera_module(STEPS);
    let raw = || camera::open(&camera_spec(), &OpenOptions::with_register(false)).unwrap();
    for (how, source, depth_from_image) in [
        ("registered at capture", opened(DepthNeed::Registered), 0),
        (
            "a source opened elsewhere",
            CameraFrames::from_source(raw(), DepthNeed::Registered),
            0,
        ),
        ("left to the vision thread", opened(DepthNeed::Raw), 1),
    ] {
        let (summary, seen) = run(&spec(true), source, None);
        assert_eq!(
            seen.len() as u64,
            2 * STEPS,
            "{how}: two images per new frame"
        );
        for (seq, image, depth) in &seen {
            let depth = depth.as_ref().map(|d| &**d);
            if *image >= depth_from_image {
                assert_eq!(depth, want.get(seq), "{how}: frame {seq} image {image}");
            }
        }
        assert_eq!(summary.stop_reason, "steps", "{how}");
    }
}

#[test]
fn an_rgb_policy_without_a_guard_gets_no_depth_and_registers_none() {
    let (_, seen) = run(&spec(false), opened(DepthNeed::None), None);
    assert_eq!(seen.len() as u64, STEPS);
    assert!(seen.iter().all(|(_, image, d)| *image == 0 && d.is_none()));
}

#[test]
fn the_guard_of_an_rgb_policy_gets_registered_depth_when_asked() {
    let want = registered_by_the_camera_module(STEPS);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let cfg: GuardConfig = toml::from_str("question = \"Is it safe?\"\nevery_steps = 2").unwrap();
    let (_, seen) = run(
        &spec(false),
        opened(DepthNeed::Raw),
        Some((cfg, Box::new(Guard(asked.clone())))),
    );
    assert!(
        seen.iter().all(|(_, _, d)| d.is_none()),
        "the vision thread of an RGB policy does not register"
    );
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len() as u64, STEPS / 2);
    for (seq, depth) in asked.iter() {
        assert_eq!(depth.as_deref(), want.get(seq), "frame {seq}");
    }
}
