//! Loop counters and per-stage latency histograms, and the end-of-run summary.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::policy::CacheCounts;

/// Latency histogram with logarithmic buckets 1 % wide from 1 µs to ~100 s: fixed memory,
/// O(buckets) percentiles, so a status line can read it while the loop runs for hours.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    count: u64,
    max_us: f64,
}

const BUCKET_GROWTH: f64 = 1.01;
const MAX_US: f64 = 1e8;

fn bucket_count() -> usize {
    (MAX_US.ln() / BUCKET_GROWTH.ln()).ceil() as usize + 2
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; bucket_count()],
            count: 0,
            max_us: 0.0,
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let idx = if us <= 1.0 {
            0
        } else {
            ((us.ln() / BUCKET_GROWTH.ln()).ceil() as usize).min(self.counts.len() - 1)
        };
        self.counts[idx] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ms(&self) -> f64 {
        self.max_us / 1e3
    }

    /// The `q`-quantile (0..=1) in milliseconds: the upper edge of the bucket that holds it
    /// (at most 1 % above the true value), never above the largest sample.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let upper_us = BUCKET_GROWTH.powi(i as i32);
                return upper_us.min(self.max_us) / 1e3;
            }
        }
        self.max_ms()
    }

    pub fn summary(&self) -> StageSummary {
        StageSummary {
            count: self.count,
            p50_ms: self.quantile_ms(0.5),
            p90_ms: self.quantile_ms(0.9),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.max_ms(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StageSummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Stage names, in the order a frame meets them; the shared ones match `bench`'s.
pub mod stage {
    /// Arrival → the frame ready in memory (frame assembly, and depth registration when the
    /// policy takes depth).
    pub const CAMERA: &str = "camera";
    /// Frame ready → picked up by the vision thread (waiting in the newest-frame slot).
    pub const QUEUE: &str = "queue";
    /// Image → tensor, per new frame.
    pub const PREPROCESS: &str = "preprocess";
    /// Vision graph, per new frame (cache hits cost nothing).
    pub const VISION: &str = "vision";
    /// Prompt, prefill and token generation.
    pub const GENERATE: &str = "generate";
    /// Answer text → decoded action values.
    pub const ACTION: &str = "action";
    /// The SpatialBot guard's question, when asked.
    pub const GUARD: &str = "guard";
    /// Governor + encoding + bytes written to the link.
    pub const LINK: &str = "link";
    /// Everything outside inference: camera + preprocess + action + link.
    pub const OVERHEAD: &str = "overhead";
    /// Capture → the action's bytes on the wire.
    pub const END_TO_END: &str = "end_to_end";
    /// Process start → the first action sent (recorded once).
    pub const STARTUP: &str = "startup";
    /// Start of one step → start of the next.
    pub const STEP_INTERVAL: &str = "step_interval";
}

/// Counters and histograms the loop threads update and the status thread reads.
#[derive(Clone, Debug, Default)]
pub struct LoopStats {
    pub frames_captured: u64,
    /// Frames the camera side dropped because a newer one arrived before the loop took it.
    pub frames_dropped: u64,
    pub steps: u64,
    pub actions_sent: u64,
    /// Steps that ended without a sent action, by reason.
    pub holds: BTreeMap<String, u64>,
    /// Tracing events dropped because the logger was behind (the loop never waits for it).
    pub log_events_dropped: u64,
    pub cache: CacheCounts,
    pub stages: BTreeMap<&'static str, LatencyHistogram>,
    /// What the controller answered, when the sink talks to one (set when the loop stops).
    pub link: Option<LinkOutcomes>,
}

impl LoopStats {
    pub fn record(&mut self, stage: &'static str, d: Duration) {
        self.stages.entry(stage).or_default().record(d);
    }

    pub fn hold(&mut self, reason: &str) {
        *self.holds.entry(reason.to_string()).or_default() += 1;
    }

    pub fn holds_total(&self) -> u64 {
        self.holds.values().sum()
    }

    pub fn stage(&self, name: &str) -> Option<&LatencyHistogram> {
        self.stages.get(name)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VisionCacheSummary {
    pub images_encoded: u64,
    pub images_referenced: u64,
    /// images_encoded / images_referenced: vision work relative to re-encoding the history.
    pub encode_ratio: f64,
}

/// One part of startup, in the order it happened (model load steps nest inside their model's).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StartupPhase {
    pub what: String,
    pub ms: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StartupSummary {
    /// Process start → the first action's bytes on the link; `None` when none was sent.
    pub first_action_ms: Option<f64>,
    /// Process start → the loop's threads started.
    pub loop_started_ms: Option<f64>,
    pub phases: Vec<StartupPhase>,
}

/// What `run` prints at the end (and writes with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub stop_reason: String,
    pub stop_detail: String,
    pub exit_code: u8,
    pub steps: u64,
    pub actions_sent: u64,
    pub holds: BTreeMap<String, u64>,
    pub frames_captured: u64,
    pub frames_dropped: u64,
    pub log_events_dropped: u64,
    pub duration_s: f64,
    pub loop_hz: f64,
    pub vision_cache: VisionCacheSummary,
    pub startup: StartupSummary,
    pub stages: BTreeMap<String, StageSummary>,
    /// The controller's side of the actions sent: applied, held, rejected, duplicate,
    /// unacknowledged (absent when the loop drove no link).
    pub link: Option<LinkOutcomes>,
}

/// Per-action outcomes reported by the controller, and what the host did about them.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LinkOutcomes {
    pub session: String,
    pub actions_sent: u64,
    pub applied: u64,
    pub held: u64,
    pub rejected: u64,
    pub duplicate: u64,
    pub unacknowledged: u64,
    pub heartbeats_sent: u64,
    pub statuses: u64,
    pub faults: u64,
    pub controller_watchdogs: u64,
    pub limit_violations: u64,
    pub bad_frames: u32,
    pub reconnects: u64,
    pub rehellos: u64,
    pub new_sessions: u64,
    pub silent_holds: u64,
    pub unacknowledged_holds: u64,
}

impl LinkOutcomes {
    pub fn from_counters(c: &crate::link::LinkCounters, session: u32) -> Self {
        Self {
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
}

impl RunSummary {
    pub fn from_stats(
        stats: &LoopStats,
        elapsed: Duration,
        stop_reason: String,
        stop_detail: String,
        exit_code: u8,
    ) -> Self {
        let secs = elapsed.as_secs_f64();
        RunSummary {
            stop_reason,
            stop_detail,
            exit_code,
            steps: stats.steps,
            actions_sent: stats.actions_sent,
            holds: stats.holds.clone(),
            frames_captured: stats.frames_captured,
            frames_dropped: stats.frames_dropped,
            log_events_dropped: stats.log_events_dropped,
            duration_s: secs,
            loop_hz: if secs > 0.0 {
                stats.steps as f64 / secs
            } else {
                0.0
            },
            vision_cache: VisionCacheSummary {
                images_encoded: stats.cache.images_encoded,
                images_referenced: stats.cache.images_referenced,
                encode_ratio: stats.cache.encode_ratio(),
            },
            startup: StartupSummary {
                first_action_ms: stats.stage(stage::STARTUP).map(|h| h.max_ms()),
                ..StartupSummary::default()
            },
            stages: stats
                .stages
                .iter()
                .map(|(k, h)| (k.to_string(), h.summary()))
                .collect(),
            link: stats.link.clone(),
        }
    }

    /// The human summary, several lines.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "run stopped: {} ({})\n  steps {}  actions sent {}  holds {}  loop {:.2} Hz over {:.1} s\n  frames captured {}  dropped {}\n  vision cache: {} images encoded for {} used ({:.2}x of re-encoding)\n",
            self.stop_reason,
            self.stop_detail,
            self.steps,
            self.actions_sent,
            self.holds.values().sum::<u64>(),
            self.loop_hz,
            self.duration_s,
            self.frames_captured,
            self.frames_dropped,
            self.vision_cache.images_encoded,
            self.vision_cache.images_referenced,
            self.vision_cache.encode_ratio,
        );
        match self.startup.first_action_ms {
            Some(ms) => s += &format!("  startup: first action {ms:.1} ms after process start"),
            None => s += "  startup: no action sent",
        }
        if let Some(ms) = self.startup.loop_started_ms {
            s += &format!(" (loop running after {ms:.1} ms)");
        }
        s += "\n";
        if !self.startup.phases.is_empty() {
            let p: Vec<String> = self
                .startup
                .phases
                .iter()
                .map(|p| format!("{} {:.1}", p.what, p.ms))
                .collect();
            s += &format!("    startup ms: {}\n", p.join(", "));
        }
        if let Some(l) = &self.link {
            s += &format!(
                "  arm (session {}): {} applied, {} held, {} rejected, {} duplicate, {} unacknowledged of {} sent; {} faults, {} bad frames, {} reconnects, {} new hellos, {} new sessions\n",
                l.session, l.applied, l.held, l.rejected, l.duplicate, l.unacknowledged, l.actions_sent,
                l.faults, l.bad_frames, l.reconnects, l.rehellos, l.new_sessions
            );
        }
        if !self.holds.is_empty() {
            let h: Vec<String> = self.holds.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s += &format!("  holds by reason: {}\n", h.join(", "));
        }
        s += "  stage            count      p50 ms      p90 ms      p99 ms      max ms\n";
        for (name, st) in &self.stages {
            s += &format!(
                "  {:<14} {:>7} {:>11.3} {:>11.3} {:>11.3} {:>11.3}\n",
                name, st.count, st.p50_ms, st.p90_ms, st.p99_ms, st.max_ms
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_one_percent() {
        let mut h = LatencyHistogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us * 10));
        }
        let p50 = h.quantile_ms(0.5);
        assert!((5.0..=5.0 * 1.0101).contains(&p50), "{p50}");
        let p99 = h.quantile_ms(0.99);
        assert!((9.9..=9.9 * 1.0101).contains(&p99), "{p99}");
        assert_eq!(h.quantile_ms(1.0), 10.0);
        assert_eq!(h.count(), 1000);
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn extremes_do_not_panic() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(100_000));
        assert_eq!(h.count(), 2);
        assert!(h.quantile_ms(0.5) <= 0.001);
    }
}
