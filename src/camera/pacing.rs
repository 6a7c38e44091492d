//! When a simulated camera (the synthetic scene, a replayed recording) makes its next frame.
//!
//! A real camera's sensor and USB transfer cost the host almost nothing before a frame arrives.
//! A source that renders or decodes its next frame as soon as it has handed over the last one
//! instead works beside the loop while the loop works on that last frame, and on a small board
//! that slows the very stages it is there to exercise. [`LateStart`] starts the work as late as
//! the recent frames say it can start and still be ready when due.

use std::time::{Duration, Instant};

/// Slack beyond the slowest recent frame, for a frame that takes longer than those before it.
const MARGIN: Duration = Duration::from_millis(2);

/// The time a frame takes to make, as a decaying maximum of the recent ones.
#[derive(Debug, Default)]
pub struct LateStart {
    estimate: Duration,
}

impl LateStart {
    /// Sleeps until making a frame due at `due` should start: its estimated cost, a quarter more
    /// and [`MARGIN`] ahead of it. Returns at once when that is already past.
    pub fn wait_to_make(&self, due: Instant) {
        let lead = self.estimate + self.estimate / 4 + MARGIN;
        if let Some(start) = due.checked_sub(lead) {
            let now = Instant::now();
            if start > now {
                std::thread::sleep(start - now);
            }
        }
    }

    /// Records how long making a frame took. A slower frame raises the estimate at once; faster
    /// ones lower it by 1/16 of the gap per frame, so one quick frame does not make the next one
    /// late.
    pub fn made(&mut self, took: Duration) {
        self.estimate = if took >= self.estimate {
            took
        } else {
            self.estimate - (self.estimate - took) / 16
        };
    }

    pub fn estimate(&self) -> Duration {
        self.estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_rises_at_once_and_falls_slowly() {
        let mut late = LateStart::default();
        late.made(Duration::from_millis(8));
        assert_eq!(late.estimate(), Duration::from_millis(8));
        late.made(Duration::from_millis(0));
        assert_eq!(late.estimate(), Duration::from_micros(7500));
        late.made(Duration::from_millis(12));
        assert_eq!(late.estimate(), Duration::from_millis(12));
    }

    #[test]
    fn it_waits_until_the_estimated_start_and_not_when_that_is_past() {
        let mut late = LateStart::default();
        late.made(Duration::from_millis(4));
        let t0 = Instant::now();
        let due = t0 + Duration::from_millis(40);
        late.wait_to_make(due);
        let waited = t0.elapsed();
        // 40 ms − (4 + 1 + 2) ms = 33 ms; sleeping never returns early.
        assert!(waited >= Duration::from_millis(33), "{waited:?}");
        // A start already past does not sleep, even for a long estimate.
        late.made(Duration::from_secs(60));
        let t1 = Instant::now();
        late.wait_to_make(t1 + Duration::from_secs(1));
        assert!(t1.elapsed() < Duration::from_secs(30));
    }
}
