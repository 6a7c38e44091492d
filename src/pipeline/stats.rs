//! Loop counters and per-stage latencies (in the telemetry's recorder), and the end-of-run
//! report built from them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::policy::CacheCounts;
pub use crate::telemetry::recorder::stage;
pub use crate::telemetry::report::{
    LinkOutcomes, StartupPhase, StartupSummary, VisionCacheSummary,
};
use crate::telemetry::{LatencyHistogram, Report, RunInfo, StageRecorder};

/// Counters and histograms the loop threads update and the status thread reads.
#[derive(Clone, Debug)]
pub struct LoopStats {
    pub frames_captured: u64,
    /// Frames the camera side dropped because a newer one arrived before the loop took it.
    pub frames_dropped: u64,
    /// Frames the loop skipped because they were captured before its last action reached the
    /// arm ([`super::LoopConfig::frame_after_action`]).
    pub frames_before_action: u64,
    pub steps: u64,
    pub actions_sent: u64,
    /// Steps that ended without a sent action, by reason.
    pub holds: BTreeMap<String, u64>,
    /// Tracing events dropped because the logger was behind (the loop never waits for it).
    pub log_events_dropped: u64,
    pub cache: CacheCounts,
    /// Per-stage latencies, in the one telemetry's recorder.
    pub recorder: StageRecorder,
    /// What the controller answered, when the sink talks to one (set when the loop stops).
    pub link: Option<LinkOutcomes>,
}

impl Default for LoopStats {
    fn default() -> Self {
        // No latency-over-time series: a loop may run for days, and its report (`run --json`)
        // must stay small. The report lists stages in the order a frame meets them.
        let mut recorder = StageRecorder::with_epoch(std::time::Instant::now(), 0);
        recorder.declare_stages(&stage::ALL);
        Self {
            frames_captured: 0,
            frames_dropped: 0,
            frames_before_action: 0,
            steps: 0,
            actions_sent: 0,
            holds: BTreeMap::new(),
            log_events_dropped: 0,
            cache: CacheCounts::default(),
            recorder,
            link: None,
        }
    }
}

impl LoopStats {
    pub fn record(&mut self, stage: &'static str, d: Duration) {
        self.recorder.record(stage, d);
    }

    pub fn hold(&mut self, reason: &str) {
        *self.holds.entry(reason.to_string()).or_default() += 1;
    }

    pub fn holds_total(&self) -> u64 {
        self.holds.values().sum()
    }

    pub fn stage(&self, name: &str) -> Option<&LatencyHistogram> {
        self.recorder.histogram(name)
    }
}

/// The controller's answers as the report gives them.
pub fn link_outcomes(c: &crate::link::LinkCounters, session: u32) -> LinkOutcomes {
    LinkOutcomes {
        session: format!("{session:#010x}"),
        actions_sent: c.actions_sent,
        applied: c.acks_applied,
        held: c.acks_held,
        rejected: c.acks_rejected,
        duplicate: c.acks_duplicate,
        unacknowledged: c.unacknowledged,
        heartbeats_sent: c.heartbeats_sent,
        statuses: c.statuses,
        faults: c.faults,
        controller_watchdogs: c.controller_watchdogs,
        limit_violations: c.limit_violations,
        bad_frames: c.bad_frames,
        reconnects: c.reconnects,
        rehellos: c.rehellos,
        new_sessions: c.new_sessions,
        silent_holds: c.silent_holds,
        unacknowledged_holds: c.unacknowledged_holds,
    }
}

/// The report of a loop run from its counters: how it ended, its stages, the controller's
/// answers. The command fills in what the loop does not know (board, camera, model, host).
pub fn report(
    stats: &LoopStats,
    elapsed: Duration,
    stop_reason: String,
    stop_detail: String,
    exit_code: u8,
) -> Report {
    let mut r = stats.recorder.report(RunInfo::default());
    r.set_frames_measured(stats.steps, elapsed.as_secs_f64());
    r.stop_reason = stop_reason;
    r.stop_detail = stop_detail;
    r.exit_code = exit_code;
    r.actions_sent = stats.actions_sent;
    r.holds = stats.holds.clone();
    r.frames.captured = stats.frames_captured;
    r.frames.dropped = stats.frames_dropped;
    r.frames.before_action = stats.frames_before_action;
    r.log_events_dropped = stats.log_events_dropped;
    r.vision_cache = VisionCacheSummary {
        images_encoded: stats.cache.images_encoded,
        images_referenced: stats.cache.images_referenced,
        encode_ratio: stats.cache.encode_ratio(),
    };
    r.startup.first_action_ms = stats.stage(stage::STARTUP).map(|h| h.max_ms());
    r.link = stats.link.clone();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_one_percent() {
        let mut h = LatencyHistogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us * 10));
        }
        let p50 = h.quantile_ms(0.5);
        assert!((5.0..=5.0 * 1.0101).contains(&p50), "{p50}");
        let p99 = h.quantile_ms(0.99);
        assert!((9.9..=9.9 * 1.0101).contains(&p99), "{p99}");
        assert_eq!(h.quantile_ms(1.0), 10.0);
        assert_eq!(h.count(), 1000);
        assert_eq!(LatencyHistogram::new().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn extremes_do_not_panic() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(100_000));
        assert_eq!(h.count(), 2);
        assert!(h.quantile_ms(0.5) <= 0.001);
    }
}
