//! Per-frame stage stamps and the recorder that turns them into per-stage statistics.

use std::time::{Duration, Instant};

use super::histogram::LatencyHistogram;
use super::report::{GraphBackend, Report, RunInfo, StageSummary};

/// The one list of stage names, in the order a frame meets them. The loop records them
/// (`run`, and `bench`, which drives the same loop); reports from either compare.
pub mod stage {
    /// Frame assembly: arrival → the frame ready in memory, registration excluded.
    pub const CAMERA: &str = "camera";
    /// Depth registered into the colour camera's frame (only where the policy takes depth and
    /// the camera did not register it).
    pub const REGISTER: &str = "register";
    /// Frame ready → picked up by the vision thread (waiting in the newest-frame slot).
    pub const QUEUE: &str = "queue";
    /// Pad, resize and normalise into the vision graph's tensors, per new frame.
    pub const PREPROCESS: &str = "preprocess";
    /// Vision tower + projector, per image (cache hits cost nothing).
    pub const VISION: &str = "vision";
    /// Prompt embedding, splicing and decoder prefill up to the first token.
    pub const PREFILL: &str = "prefill";
    /// One decode step, sampling and detokenising, per token after the first.
    pub const DECODE: &str = "decode";
    /// The whole generation of a step: prefill and every decode step.
    pub const GENERATE: &str = "generate";
    /// Answer text → decoded action values.
    pub const ACTION: &str = "action";
    /// The SpatialBot guard's question, when asked.
    pub const GUARD: &str = "guard";
    /// Governor + wire encoding + bytes written to the link.
    pub const LINK: &str = "link";
    /// Everything outside inference: camera + preprocess + action + link.
    pub const OVERHEAD: &str = "overhead";
    /// Capture → the action's bytes on the wire.
    pub const END_TO_END: &str = "end_to_end";
    /// Start of one step → start of the next.
    pub const STEP_INTERVAL: &str = "step_interval";
    /// Process start → the first action sent (recorded once).
    pub const STARTUP: &str = "startup";

    /// Every stage, in report order.
    pub const ALL: [&str; 15] = [
        CAMERA,
        REGISTER,
        QUEUE,
        PREPROCESS,
        VISION,
        PREFILL,
        DECODE,
        GENERATE,
        ACTION,
        GUARD,
        LINK,
        OVERHEAD,
        END_TO_END,
        STEP_INTERVAL,
        STARTUP,
    ];

    /// What one sample of `stage` is.
    pub fn per(stage: &str) -> &'static str {
        match stage {
            VISION => super::per::IMAGE,
            DECODE => super::per::TOKEN,
            _ => super::per::FRAME,
        }
    }
}

/// What one sample of a stage is ([`super::StageSummary::per`]).
pub mod per {
    /// One sample per frame (most stages).
    pub const FRAME: &str = "frame";
    /// One per image through the vision graph.
    pub const IMAGE: &str = "image";
    /// One per generated token (decode steps).
    pub const TOKEN: &str = "token";
}

/// Monotonic stamps one frame collects at each stage boundary. It travels with the frame
/// through the pipeline's channels; each stage calls [`FrameStamps::mark`] when it is done.
/// The duration of a stage is the time from the previous mark (or the origin) to its mark.
#[derive(Clone, Debug)]
pub struct FrameStamps {
    frame: u64,
    origin: Instant,
    marks: Vec<(&'static str, Instant)>,
}

impl FrameStamps {
    /// Starts a frame now. Use [`FrameStamps::start_at`] with the capture time mapped to the
    /// host monotonic clock when the source has one.
    pub fn start(frame: u64) -> Self {
        Self::start_at(frame, Instant::now())
    }

    pub fn start_at(frame: u64, origin: Instant) -> Self {
        Self {
            frame,
            origin,
            marks: Vec::with_capacity(10),
        }
    }

    /// Starts a frame at a capture time given in µs of the host monotonic clock
    /// ([`crate::link::clock::monotonic_us`], the clock camera timestamps are mapped to).
    /// A capture time in the future is taken as now.
    pub fn start_at_monotonic_us(frame: u64, capture_us: u64) -> Self {
        let now = Instant::now();
        let age_us = crate::link::clock::monotonic_us().saturating_sub(capture_us);
        let origin = now
            .checked_sub(Duration::from_micros(age_us))
            .unwrap_or(now);
        Self::start_at(frame, origin)
    }

    /// Ends `stage` now; returns its duration.
    pub fn mark(&mut self, stage: &'static str) -> Duration {
        self.mark_at(stage, Instant::now())
    }

    /// Ends `stage` at `at`; returns its duration (zero if `at` is before the previous mark).
    pub fn mark_at(&mut self, stage: &'static str, at: Instant) -> Duration {
        let from = self.marks.last().map(|m| m.1).unwrap_or(self.origin);
        self.marks.push((stage, at));
        at.saturating_duration_since(from)
    }

    pub fn frame(&self) -> u64 {
        self.frame
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Each stage with its duration, in the order they were marked.
    pub fn stages(&self) -> impl Iterator<Item = (&'static str, Duration)> + '_ {
        let mut prev = self.origin;
        self.marks.iter().map(move |&(name, at)| {
            let d = at.saturating_duration_since(prev);
            prev = at;
            (name, d)
        })
    }

    /// Origin to the last mark.
    pub fn end_to_end(&self) -> Duration {
        self.marks
            .last()
            .map(|m| m.1.saturating_duration_since(self.origin))
            .unwrap_or_default()
    }

    /// How old the frame is at `now` (for `safety.max_age_ms`).
    pub fn age_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }
}

/// Per-stage time series kept for the latency-over-time plot: bounded, thinned by half (every
/// other point dropped, stride doubled) each time it fills, so it always spans the whole run.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    cap: usize,
    stride: u64,
    seen: u64,
    pub(crate) points: Vec<[f64; 2]>,
}

impl Series {
    /// `cap` 0 keeps no points at all.
    fn new(cap: usize) -> Self {
        Self {
            cap: if cap == 0 { 0 } else { cap.max(2) },
            stride: 1,
            seen: 0,
            points: Vec::new(),
        }
    }

    fn push(&mut self, t_s: f64, ms: f64) {
        if self.cap == 0 {
            return;
        }
        if self.seen.is_multiple_of(self.stride) {
            if self.points.len() >= self.cap {
                let mut keep = 0;
                self.points.retain(|_| {
                    keep += 1;
                    keep % 2 == 1
                });
                self.stride *= 2;
            }
            if self.seen.is_multiple_of(self.stride) {
                self.points.push([t_s, ms]);
            }
        }
        self.seen += 1;
    }
}

#[derive(Clone, Debug)]
struct StageStats {
    name: String,
    per: &'static str,
    hist: LatencyHistogram,
    dropped: u64,
    series: Series,
}

/// Collects stage durations, drops, the startup time and which backend ran each graph, and
/// produces a [`Report`]. One thread owns it (the pipeline's last stage, or a stats thread fed
/// by a channel of [`FrameStamps`]); nothing in it locks. Memory is bounded whatever the run
/// length: ~60 KiB per stage plus `series_cap` points per stage.
#[derive(Clone, Debug)]
pub struct StageRecorder {
    epoch: Instant,
    series_cap: usize,
    stages: Vec<StageStats>,
    frames: u64,
    startup: Option<Duration>,
    graphs: Vec<GraphBackend>,
}

impl Default for StageRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl StageRecorder {
    /// A recorder whose time axis starts now, keeping up to 2,000 plot points per stage.
    pub fn new() -> Self {
        Self::with_epoch(Instant::now(), 2000)
    }

    pub fn with_epoch(epoch: Instant, series_cap: usize) -> Self {
        Self {
            epoch,
            series_cap,
            stages: Vec::new(),
            frames: 0,
            startup: None,
            graphs: Vec::new(),
        }
    }

    /// Fixes the report order of stages before any is recorded (else: first-seen order).
    pub fn declare_stages(&mut self, names: &[&str]) {
        for n in names {
            self.stage_mut(n);
        }
    }

    /// Says what one sample of `stage` is (default [`per::FRAME`]). A stage marked several
    /// times in one frame (`vision` once per image, `decode` once per token) records one
    /// sample per mark.
    pub fn set_per(&mut self, stage: &str, per: &'static str) {
        self.stage_mut(stage).per = per;
    }

    fn stage_mut(&mut self, name: &str) -> &mut StageStats {
        let i = match self.stages.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                self.stages.push(StageStats {
                    name: name.to_string(),
                    per: stage::per(name),
                    hist: LatencyHistogram::new(),
                    dropped: 0,
                    series: Series::new(self.series_cap),
                });
                self.stages.len() - 1
            }
        };
        &mut self.stages[i]
    }

    fn t_s(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.epoch).as_secs_f64()
    }

    /// Records every stage of a finished frame and its end-to-end time.
    pub fn record_frame(&mut self, stamps: &FrameStamps) {
        let mut prev = stamps.origin;
        for &(name, at) in &stamps.marks {
            let d = at.saturating_duration_since(prev);
            prev = at;
            let t = self.t_s(at);
            let s = self.stage_mut(name);
            s.hist.record(d);
            s.series.push(t, d.as_secs_f64() * 1e3);
        }
        let e2e = stamps.end_to_end();
        let t = self.t_s(prev);
        let s = self.stage_mut(stage::END_TO_END);
        s.hist.record(e2e);
        s.series.push(t, e2e.as_secs_f64() * 1e3);
        self.frames += 1;
    }

    /// Records one duration of one stage that ended now (for stages outside a frame's path).
    pub fn record(&mut self, stage: &str, d: Duration) {
        let t = self.t_s(Instant::now());
        let s = self.stage_mut(stage);
        s.hist.record(d);
        s.series.push(t, d.as_secs_f64() * 1e3);
    }

    /// Counts frames `stage` dropped (a full queue, a stale frame, a skewed pair).
    pub fn record_dropped(&mut self, stage: &str, n: u64) {
        self.stage_mut(stage).dropped += n;
    }

    /// Records process start → first action, once; later calls are ignored. Use
    /// [`super::system::process_age`] for the process start, or an `Instant` from `main`.
    pub fn record_startup(&mut self, since_process_start: Duration) {
        if self.startup.is_none() {
            self.startup = Some(since_process_start);
        }
    }

    /// Records which backend and execution provider ran `graph` (`vision`, `decoder`, …).
    pub fn record_graph_backend(&mut self, graph: &str, backend: &str, provider: &str) {
        let entry = GraphBackend {
            graph: graph.to_string(),
            backend: backend.to_string(),
            provider: provider.to_string(),
        };
        match self.graphs.iter_mut().find(|g| g.graph == graph) {
            Some(g) => *g = entry,
            None => self.graphs.push(entry),
        }
    }

    /// The histogram of `stage`, when it has samples.
    pub fn histogram(&self, stage: &str) -> Option<&LatencyHistogram> {
        self.stages
            .iter()
            .find(|s| s.name == stage && s.hist.count() > 0)
            .map(|s| &s.hist)
    }

    /// Frames recorded with [`StageRecorder::record_frame`].
    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn dropped_total(&self) -> u64 {
        self.stages.iter().map(|s| s.dropped).sum()
    }

    /// Seconds since the recorder's epoch.
    pub fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The report of everything recorded so far. `info` says where and how it was measured.
    pub fn report(&self, info: RunInfo) -> Report {
        let summarise = |s: &StageStats| {
            StageSummary::from_histogram(
                &s.name,
                s.per,
                &s.hist,
                s.dropped,
                s.series.points.clone(),
            )
        };
        let wall_s = self.elapsed().as_secs_f64();
        Report::new(
            info,
            self.stages
                .iter()
                .filter(|s| s.hist.count() > 0 || s.dropped > 0)
                .map(summarise)
                .collect(),
            self.frames,
            self.dropped_total(),
            wall_s,
            self.startup,
            self.graphs.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_durations_are_differences_of_consecutive_marks() {
        let t0 = Instant::now();
        let mut f = FrameStamps::start_at(7, t0);
        assert_eq!(
            f.mark_at(stage::CAMERA, t0 + Duration::from_millis(5)),
            Duration::from_millis(5)
        );
        assert_eq!(
            f.mark_at("pack", t0 + Duration::from_millis(8)),
            Duration::from_millis(3)
        );
        let got: Vec<_> = f.stages().collect();
        assert_eq!(
            got,
            vec![
                (stage::CAMERA, Duration::from_millis(5)),
                ("pack", Duration::from_millis(3))
            ]
        );
        assert_eq!(f.end_to_end(), Duration::from_millis(8));

        let mut rec = StageRecorder::with_epoch(t0, 100);
        rec.record_frame(&f);
        rec.record_dropped(stage::CAMERA, 2);
        rec.record_startup(Duration::from_secs(3));
        rec.record_startup(Duration::from_secs(9));
        let r = rec.report(RunInfo::default());
        assert_eq!(r.frames.measured, 1);
        assert_eq!(r.frames.dropped, 2);
        assert_eq!(r.startup.first_action_ms, Some(3000.0));
        assert_eq!(r.stages[0].name, "camera");
        assert_eq!(r.stages[0].p50_ms, 5.0);
        assert_eq!(r.stages[1].max_ms, 3.0);
        assert_eq!(r.stages["end_to_end"].max_ms, 8.0);
    }

    #[test]
    fn capture_time_on_the_monotonic_clock_becomes_the_origin() {
        let capture_us = crate::link::clock::monotonic_us().saturating_sub(30_000);
        let mut f = FrameStamps::start_at_monotonic_us(0, capture_us);
        let d = f.mark(stage::CAMERA);
        assert!(d >= Duration::from_millis(29), "{d:?}");
    }

    #[test]
    fn series_stays_bounded_and_spans_the_run() {
        let mut s = Series::new(100);
        for i in 0..10_000 {
            s.push(i as f64, 1.0);
        }
        assert!(s.points.len() <= 100);
        assert_eq!(s.points[0][0], 0.0);
        assert!(s.points.last().unwrap()[0] > 9_000.0);
    }
}
