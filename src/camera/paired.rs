//! Two cameras as one RGB-D source: the colour half of one (a V4L2 webcam) beside the depth half
//! of another (a RealSense, a recording). Their hardware clocks are unrelated, so frames are
//! paired by capture time on the host monotonic clock, which every source already maps its
//! frames onto. The pair's geometry (both intrinsics, depth→colour extrinsics) comes from a
//! calibration file measured for the two cameras as mounted.
//!
//! Each half runs on its own thread (a source blocks until its next frame); the pairing and
//! the counting happen on the caller's thread in [`PairedSource::next_frame`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use super::pairing::Pairer;
use super::{Depth, DepthRegistration, RgbdFrame, Source, SourceError, SourceStats};
use crate::rgbd::Calibration;

/// Colour frames (or depth frames) that may wait for a partner before the oldest is dropped.
const MAX_WAITING: usize = 8;
/// Frames a half may deliver ahead of the pairing before its thread waits.
const CHANNEL_DEPTH: usize = 4;

#[derive(Clone, Debug)]
pub struct PairedOptions {
    /// Colour and depth captured further apart than this (host clock) are not a pair.
    pub max_skew_ms: f64,
    /// Where the pair's calibration came from, for error messages.
    pub calibration_file: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Half {
    Color,
    Depth,
}

impl Half {
    fn index(self) -> usize {
        match self {
            Half::Color => 0,
            Half::Depth => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Half::Color => "colour",
            Half::Depth => "depth",
        }
    }
}

type Delivery = (Half, Result<Option<RgbdFrame>, SourceError>);

/// The colour of one source paired with the depth of another by host capture time.
pub struct PairedSource {
    calibration: Calibration,
    /// What registers the pair's depth (its calibration's).
    registration: Arc<DepthRegistration>,
    options: PairedOptions,
    rx: crossbeam_channel::Receiver<Delivery>,
    pairer: Pairer<RgbdFrame, RgbdFrame>,
    /// Capture times are taken relative to this for pairing.
    epoch: Instant,
    delivered: u64,
    half_stats: Arc<Mutex<[SourceStats; 2]>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    description: String,
    ended: bool,
    /// A half that ended or failed, and how; its frames already waiting may still pair with
    /// the other half's next ones, so the end is delivered once they have.
    finishing: Option<(Half, Option<SourceError>)>,
}

/// Milliseconds from `epoch` to `t`, negative when `t` is earlier.
fn ms_since(epoch: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(epoch) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(epoch.duration_since(t).as_secs_f64() * 1000.0),
    }
}

impl PairedSource {
    /// Starts both halves. `calibration` describes the pair: its colour intrinsics are the
    /// colour half's camera, its depth intrinsics the depth half's depth as delivered.
    pub fn new(
        color: Box<dyn Source>,
        depth: Box<dyn Source>,
        calibration: Calibration,
        options: PairedOptions,
    ) -> Self {
        let description = format!(
            "colour of [{}] paired with depth of [{}] within {} ms (calibration {})",
            color.describe(),
            depth.describe(),
            options.max_skew_ms,
            options.calibration_file
        );
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_DEPTH);
        let half_stats = Arc::new(Mutex::new([color.stats(), depth.stats()]));
        let stop = Arc::new(AtomicBool::new(false));
        // A thread that cannot start (the process is out of threads or memory) ends the source
        // with that error through the usual end-of-half path, instead of a panic.
        let mut start_error: Option<(Half, Option<SourceError>)> = None;
        let threads = [(Half::Color, color), (Half::Depth, depth)]
            .into_iter()
            .filter_map(|(half, source)| {
                let tx = tx.clone();
                let stats = Arc::clone(&half_stats);
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name("sbe-pair-half".into())
                    .spawn(move || run_half(half, source, tx, stats, stop))
                    .map_err(|e| {
                        start_error.get_or_insert((
                            half,
                            Some(SourceError::Device(format!(
                                "cannot start a camera thread of the pair: {e}"
                            ))),
                        ));
                    })
                    .ok()
            })
            .collect();
        Self {
            registration: Arc::new(DepthRegistration::new(calibration.clone())),
            calibration,
            pairer: Pairer::new(options.max_skew_ms, MAX_WAITING),
            options,
            rx,
            epoch: Instant::now(),
            delivered: 0,
            half_stats,
            stop,
            threads,
            description,
            ended: false,
            finishing: start_error,
        }
    }

    fn check_size(&self, half: Half, frame: &RgbdFrame) -> Result<(), SourceError> {
        let (what, got, want) = match (half, frame.depth.image()) {
            (Half::Color, _) => (
                "colour",
                (frame.color.width, frame.color.height),
                &self.calibration.color,
            ),
            (Half::Depth, Some(depth)) => (
                "depth",
                (depth.width(), depth.height()),
                &self.calibration.depth,
            ),
            (Half::Depth, None) => {
                return Err(SourceError::Spec {
                    spec: self.description.clone(),
                    message: "the depth half is a colour-only camera; give a camera with depth (realsense, replay, synthetic)".into(),
                });
            }
        };
        if got != (want.width, want.height) {
            return Err(SourceError::Recording {
                path: self.options.calibration_file.clone(),
                message: format!(
                    "its {what} intrinsics are for {}x{} but the {what} camera delivers {}x{}; calibrate the pair at this mode or change the mode",
                    want.width, want.height, got.0, got.1
                ),
            });
        }
        Ok(())
    }

    /// Ends the pair: with the first half's error if it failed (else `other`), or cleanly.
    fn finish(&mut self, other: Option<SourceError>) -> Result<Option<RgbdFrame>, SourceError> {
        self.ended = true;
        let first = self.finishing.take().and_then(|(_, e)| e);
        match first.or(other) {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The depth half's frames passed [`Self::check_size`]: they carry depth, taken as it is
    /// (in the depth camera's frame, which the pair's calibration describes).
    fn combine(&mut self, color: RgbdFrame, depth: RgbdFrame) -> RgbdFrame {
        let arrival = color.arrival.max(depth.arrival);
        let frame = RgbdFrame {
            color: color.color,
            depth: match depth.depth.image() {
                Some(image) => Depth::Raw {
                    depth: image.clone(),
                    registration: self.registration.clone(),
                },
                None => Depth::None,
            },
            color_intrinsics: self.calibration.color.clone(),
            color_frame_number: color.color_frame_number,
            depth_frame_number: depth.depth_frame_number,
            sequence: self.delivered,
            device_timestamp_ms: color.device_timestamp_ms,
            capture: color.capture,
            arrival,
            ready: arrival,
        };
        self.delivered += 1;
        frame
    }
}

fn run_half(
    half: Half,
    mut source: Box<dyn Source>,
    tx: crossbeam_channel::Sender<Delivery>,
    stats: Arc<Mutex<[SourceStats; 2]>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let result = source.next_frame();
        stats.lock().unwrap_or_else(PoisonError::into_inner)[half.index()] = source.stats();
        let last = !matches!(result, Ok(Some(_)));
        if tx.send((half, result)).is_err() || last {
            return;
        }
    }
}

impl Source for PairedSource {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if let Some((half, _)) = &self.finishing {
                let (color, depth) = self.pairer.waiting();
                let waiting = match half {
                    Half::Color => color,
                    Half::Depth => depth,
                };
                if waiting == 0 {
                    return self.finish(None);
                }
            }
            let Ok((half, result)) = self.rx.recv() else {
                return self.finish(None);
            };
            let frame = match result {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if self.finishing.is_some() {
                        return self.finish(None);
                    }
                    self.finishing = Some((half, None));
                    continue;
                }
                Err(e) => {
                    let e = SourceError::Device(format!("{} camera: {e}", half.name()));
                    if self.finishing.is_some() {
                        return self.finish(Some(e));
                    }
                    self.finishing = Some((half, Some(e)));
                    continue;
                }
            };
            if let Err(e) = self.check_size(half, &frame) {
                return self.finish(Some(e));
            }
            let at = ms_since(self.epoch, frame.capture);
            let pair = match half {
                Half::Color => self.pairer.push_color(at, frame),
                Half::Depth => self.pairer.push_depth(at, frame),
            };
            if let Some(pair) = pair {
                return Ok(Some(self.combine(pair.color, pair.depth)));
            }
        }
    }

    fn calibration(&self) -> &Calibration {
        &self.calibration
    }
    fn depth_registration(&self) -> Arc<DepthRegistration> {
        self.registration.clone()
    }

    fn stats(&self) -> SourceStats {
        let halves = self
            .half_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let [color, depth] = &halves;
        SourceStats {
            delivered: self.delivered,
            unpaired_color: self.pairer.unpaired_color,
            unpaired_depth: self.pairer.unpaired_depth,
            // Depth frames the depth half could not pair inside itself never reached us.
            dropped_by_device: color.dropped_by_device
                + depth.dropped_by_device
                + depth.unpaired_depth,
            disconnects: color.disconnects + depth.disconnects,
            reconnects: color.reconnects + depth.reconnects,
            measured_fps: color.measured_fps,
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for PairedSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock halves waiting to send; a half inside its camera's `next_frame` finishes
        // that frame and then sees the closed channel.
        let (_, closed) = crossbeam_channel::bounded(0);
        drop(std::mem::replace(&mut self.rx, closed));
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
