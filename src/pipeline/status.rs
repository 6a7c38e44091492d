//! The live status line on a terminal: per-stage p50/p99, loop rate, drops, holds.

use std::io::Write;
use std::time::{Duration, Instant};

use super::stats::{stage, LoopStats};

/// One line, no newline: `step 12  4.8 Hz  vision 3.1/4.0  generate 180/210  e2e 190/230 ms (p50/p99)  dropped 3  holds 1`.
pub fn format_status(stats: &LoopStats, loop_hz: f64) -> String {
    let mut s = format!("step {}  {:.1} Hz", stats.steps, loop_hz);
    for (label, name) in [
        ("vision", stage::VISION),
        ("generate", stage::GENERATE),
        ("link", stage::LINK),
        ("e2e", stage::END_TO_END),
    ] {
        if let Some(h) = stats.stage(name) {
            s += &format!(
                "  {label} {:.1}/{:.1}",
                h.quantile_ms(0.5),
                h.quantile_ms(0.99)
            );
        }
    }
    s += &format!(
        " ms (p50/p99)  dropped {}  holds {}",
        stats.frames_dropped,
        stats.holds_total()
    );
    if let Some(n) = stats.holds.get("guard_veto") {
        s += &format!(" (guard {n})");
    }
    if let Some(h) = stats.stage(stage::STARTUP) {
        s += &format!("  first action {:.0} ms", h.max_ms());
    }
    s
}

pub struct StatusLine {
    enabled: bool,
    interval: Duration,
    last_draw: Option<Instant>,
    /// Steps and time at the previous draw, for the current rate.
    last_steps: (u64, Instant),
    drawn: bool,
}

impl StatusLine {
    pub fn new(enabled: bool, interval: Duration) -> Self {
        Self {
            enabled,
            interval,
            last_draw: None,
            last_steps: (0, Instant::now()),
            drawn: false,
        }
    }

    /// Redraws the line if the interval has passed. Called by the supervisor, never a loop thread.
    pub fn tick(&mut self, stats: &LoopStats) {
        if !self.enabled || self.last_draw.is_some_and(|t| t.elapsed() < self.interval) {
            return;
        }
        let now = Instant::now();
        let (steps0, t0) = self.last_steps;
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        let hz = if dt > 0.0 {
            stats.steps.saturating_sub(steps0) as f64 / dt
        } else {
            0.0
        };
        let line = format_status(stats, hz);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.last_draw = Some(now);
        self.last_steps = (stats.steps, now);
        self.drawn = true;
    }

    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_names_stages_drops_and_holds() {
        let mut st = LoopStats {
            steps: 7,
            frames_dropped: 3,
            ..LoopStats::default()
        };
        st.hold("stale_frame");
        st.record(stage::GENERATE, Duration::from_millis(20));
        let line = format_status(&st, 4.25);
        assert!(line.starts_with("step 7  4.2 Hz"), "{line}");
        assert!(line.contains("generate 20.0/20.0"), "{line}");
        assert!(!line.contains("vision"), "{line}");
        assert!(line.ends_with("dropped 3  holds 1"), "{line}");

        st.hold("guard_veto");
        st.record(stage::STARTUP, Duration::from_millis(700));
        let line = format_status(&st, 4.25);
        assert!(
            line.ends_with("holds 2 (guard 1)  first action 700 ms"),
            "{line}"
        );
    }
}
