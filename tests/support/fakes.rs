//! Fake stages for the in-process `run_loop` tests (declared here once): a paced frame
//! generator, a vision encoder whose embedding is the frame's number, a language model with a
//! fixed answer and a sink that records what reached the "wire". Tests with a stage of their
//! own (a scripted model, a sink around the real link) keep it in their file.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spatialbot_edge::pipeline::{
    Action, ActionSink, Delivery, FrameSource, Hold, LanguageModel, RgbdFrame, SinkError,
    StageError, StopReason, VisionEncoder,
};
use spatialbot_edge::policy::PolicyPrompt;
use spatialbot_edge::rgbd::{DepthMm, RgbImage};

/// Frames numbered from `next`, one every `interval`, each 8×6 with every pixel
/// `(number as u8, 0, 0)`. After `count` frames: the end, or with `stall_after` that long
/// blocked first. Each frame was captured `age` before it arrives.
pub struct Frames {
    pub next: u64,
    pub count: u64,
    pub interval: Duration,
    /// After `count` frames: end (`None`) or stall (block) for this long.
    pub stall_after: Option<Duration>,
    pub age: Duration,
}

impl Frames {
    /// `count` frames numbered from 0, `interval_ms` apart, then the end.
    pub fn paced(count: u64, interval_ms: u64) -> Self {
        Self {
            next: 0,
            count,
            interval: Duration::from_millis(interval_ms),
            stall_after: None,
            age: Duration::ZERO,
        }
    }

    /// Frames numbered from 1, `interval_ms` apart, without end.
    pub fn endless(interval_ms: u64) -> Self {
        Self {
            next: 1,
            ..Self::paced(u64::MAX, interval_ms)
        }
    }
}

impl FrameSource for Frames {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, StageError> {
        if self.next >= self.count {
            match self.stall_after {
                Some(d) => std::thread::sleep(d),
                None => return Ok(None),
            }
            return Ok(None);
        }
        std::thread::sleep(self.interval);
        let now = Instant::now();
        let captured = now.checked_sub(self.age).unwrap_or(now);
        let seq = self.next;
        self.next += 1;
        Ok(Some(RgbdFrame {
            capture: captured,
            ..RgbdFrame::new(
                seq,
                Arc::new(RgbImage::filled(8, 6, [seq as u8, 0, 0])),
                now,
            )
        }))
    }
}

/// Frame, image index, and the registered depth the frame carried, per preprocessed image.
pub type Seen = Vec<(u64, usize, Option<Arc<DepthMm>>)>;

/// A vision stage whose embedding is the frame's number. It counts its encodes and records what
/// each preprocessing saw; [`SeqEncoder::checked`] also asserts that every frame is a
/// [`Frames`] frame taken as image 0.
#[derive(Clone, Default)]
pub struct SeqEncoder {
    pub calls: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Seen>>,
    pub check_frames: bool,
}

impl SeqEncoder {
    pub fn checked() -> Self {
        Self {
            check_frames: true,
            ..Self::default()
        }
    }
}

impl VisionEncoder for SeqEncoder {
    type Input = u64;
    type Embedding = u64;
    fn preprocess(&mut self, frame: &RgbdFrame, image: usize) -> Result<u64, StageError> {
        if self.check_frames {
            assert_eq!(image, 0);
            assert_eq!(frame.color.pixel(0, 0), Some([frame.sequence as u8, 0, 0]));
        }
        self.seen
            .lock()
            .unwrap()
            .push((frame.sequence, image, frame.depth.registered().cloned()));
        Ok(frame.sequence)
    }
    fn encode(&mut self, input: u64) -> Result<u64, StageError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(input)
    }
}

/// A language model that always gives the same answer.
pub struct FixedAnswer(pub &'static str);

impl<E> LanguageModel<E> for FixedAnswer {
    fn generate(
        &mut self,
        _prompt: &PolicyPrompt,
        _images: &[Arc<E>],
        _max: usize,
    ) -> Result<String, StageError> {
        Ok(self.0.into())
    }
}

/// Records what reached the "wire", the holds and whether it was stopped; with `die_after`
/// the link is lost after that many actions (and the Stop is not acknowledged).
#[derive(Clone, Default)]
pub struct RecordingSink {
    pub sent: Arc<Mutex<Vec<Action>>>,
    pub holds: Arc<Mutex<Vec<String>>>,
    pub stopped: Arc<AtomicBool>,
    pub die_after: Option<usize>,
}

impl ActionSink for RecordingSink {
    fn send(&mut self, action: &Action, now: Instant) -> Result<Delivery, SinkError> {
        assert!(now >= action.captured);
        let mut sent = self.sent.lock().unwrap();
        if self.die_after.is_some_and(|n| sent.len() >= n) {
            return Err(SinkError::LinkLost("write: broken pipe".into()));
        }
        sent.push(action.clone());
        Ok(Delivery::Sent)
    }
    fn hold(&mut self, reason: &Hold, _now: Instant) -> Result<(), SinkError> {
        self.holds.lock().unwrap().push(reason.to_string());
        Ok(())
    }
    fn stop(&mut self, _why: StopReason) -> Result<(), SinkError> {
        self.stopped.store(true, Ordering::SeqCst);
        if self.die_after.is_some() {
            return Err(SinkError::NoStopAck("link is down".into()));
        }
        Ok(())
    }
}

/// The released robot policy's `[prompt]` and `[policy]` tables (four frames, newest first),
/// as a manifest text for `PolicySpec::from_manifest_toml`.
pub const RELEASED_POLICY_MANIFEST: &str = r#"
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
