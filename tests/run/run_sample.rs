//! The loop on the shipped sample recording (tests/data/sample, 640×480), frame by frame, with the
//! real camera source, the real preprocessing for models/tiny-policy's vision tower, and the
//! real governor and link to the in-process simulator. Only the vision graph and the language
//! model are stand-ins here (a tensor checksum and a fixed answer): the engine has its own tests.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::support;
use spatialbot_edge::config::{Board, BUILTIN_PROFILES};
use spatialbot_edge::exit;
use spatialbot_edge::pipeline::camera_source::{CameraFrames, DepthNeed};
use spatialbot_edge::pipeline::link_sink::LinkSink;
use spatialbot_edge::pipeline::vision::FrameTensors;
use spatialbot_edge::pipeline::{
    run_loop, LanguageModel, LoopConfig, LoopParts, RgbdFrame, StageError, VisionEncoder,
};
use spatialbot_edge::policy::{PolicyPrompt, PolicySpec};
use spatialbot_edge::preprocess::{Tensor, Tower};

struct Checksum(FrameTensors);
impl VisionEncoder for Checksum {
    type Input = Tensor;
    type Embedding = (u64, f64);
    fn preprocess(&mut self, frame: &RgbdFrame, image: usize) -> Result<Tensor, StageError> {
        assert_eq!((frame.color.width, frame.color.height), (640, 480));
        let t = self.0.tensor(frame, image)?;
        assert_eq!(t.shape, [3, 28, 28]);
        Ok(t)
    }
    fn encode(&mut self, input: Tensor) -> Result<(u64, f64), StageError> {
        Ok((0, input.data.iter().map(|v| *v as f64).sum()))
    }
}

struct Answer(Arc<Mutex<Vec<usize>>>);
impl LanguageModel<(u64, f64)> for Answer {
    fn generate(
        &mut self,
        prompt: &PolicyPrompt,
        images: &[Arc<(u64, f64)>],
        _max: usize,
    ) -> Result<String, StageError> {
        self.0.lock().unwrap().push(images.len());
        assert_eq!(prompt.images(), 4);
        Ok("[0,0.5,0.5,0.5,0.5,0.5,0.5,1]".into())
    }
}

#[test]
fn every_frame_of_the_sample_through_camera_preprocessing_and_link() {
    let root = support::repo_root();
    let manifest = std::fs::read_to_string(root.join("models/tiny-policy/manifest.toml")).unwrap();
    let spec = PolicySpec::from_manifest_toml(&manifest).unwrap();
    let sample = root.join("tests/data/sample");
    let camera = CameraFrames::open(
        &format!("replay,fast:{}", sample.display()).parse().unwrap(),
        DepthNeed::None,
    )
    .unwrap();
    // Debug builds preprocess slowly: let the governor accept old frames and any rate.
    let text = BUILTIN_PROFILES[0]
        .1
        .replace("rate_limit_hz = 10.0", "rate_limit_hz = 1000.0")
        .replace("max_age_ms = 1000", "max_age_ms = 10000");
    let board = Board::from_toml_str(&text, "test-board.toml".as_ref(), ".".as_ref()).unwrap();
    let names: Vec<String> = spec.actions.dims().iter().map(|d| d.name.clone()).collect();
    let sink = LinkSink::open(
        &"sim".parse().unwrap(),
        board.link_config().unwrap(),
        &names,
    )
    .unwrap();
    let vision = Checksum(FrameTensors::new(Tower::Clip, 28, false).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cfg = LoopConfig {
        goal: "pick up the box".into(),
        steps: Some(8),
        every_frame: true,
        ..LoopConfig::default()
    };
    let parts = LoopParts {
        source: camera,
        vision,
        model: Answer(seen.clone()),
        sink,
        guard: None,
    };
    let s = run_loop(parts, &spec, &cfg, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(
        (s.stop_reason.as_str(), s.exit_code),
        ("steps", exit::OK),
        "{s:?}"
    );
    assert_eq!((s.steps, s.frames.dropped), (8, 0), "{s:?}");
    let held = s.holds.get("governor_rate_limited").copied().unwrap_or(0);
    assert_eq!(s.actions_sent + held, 8, "{s:?}");
    assert_eq!(s.vision_cache.images_encoded, 8);
    assert!(seen.lock().unwrap().iter().all(|&n| n == 4));
    for stage in ["camera", "preprocess", "overhead", "end_to_end"] {
        assert!(
            s.stages.contains_key(stage),
            "{stage}: {:?}",
            s.stages.keys()
        );
    }
}
