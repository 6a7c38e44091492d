//! Maps a sensor's hardware timestamps onto the host monotonic clock. PURE: times are passed in
//! as milliseconds on each clock.

use std::collections::VecDeque;

/// Estimates `host − device` as the smallest offset seen over the last `window` frames: the
/// frame that reached the host fastest bounds the transport latency best, and a sliding window
/// follows the slow drift between the two oscillators. A device clock that jumps (a reset after
/// a reconnect, or a wrap) restarts the estimate.
#[derive(Debug)]
pub struct ClockMapper {
    offsets: VecDeque<f64>,
    window: usize,
    last_device_ms: Option<f64>,
    max_jump_ms: f64,
    pub resets: u64,
}

impl ClockMapper {
    pub fn new(window: usize, max_jump_ms: f64) -> Self {
        Self {
            offsets: VecDeque::new(),
            window: window.max(1),
            last_device_ms: None,
            max_jump_ms,
            resets: 0,
        }
    }

    /// The host time (ms) at which the frame stamped `device_ms` was captured, given that it
    /// arrived at `arrival_host_ms`. Never later than the arrival.
    pub fn capture_host_ms(&mut self, device_ms: f64, arrival_host_ms: f64) -> f64 {
        if let Some(last) = self.last_device_ms {
            if device_ms < last || device_ms - last > self.max_jump_ms {
                self.offsets.clear();
                self.resets += 1;
            }
        }
        self.last_device_ms = Some(device_ms);
        self.offsets.push_back(arrival_host_ms - device_ms);
        if self.offsets.len() > self.window {
            self.offsets.pop_front();
        }
        let offset = self.offsets.iter().copied().fold(f64::INFINITY, f64::min);
        (device_ms + offset).min(arrival_host_ms)
    }

    pub fn reset(&mut self) {
        self.offsets.clear();
        self.last_device_ms = None;
    }
}

/// Measures the frame rate a camera actually delivers, window by window, from capture times.
#[derive(Debug)]
pub struct RateMeter {
    window_ms: f64,
    first_ms: Option<f64>,
    frames: u64,
}

/// One finished measuring window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub fps: f64,
    /// Below `SLOW_FRACTION` of the rate asked for.
    pub slow: bool,
}

/// A camera delivering under this fraction of the asked rate is reported.
pub const SLOW_FRACTION: f64 = 0.9;

impl RateMeter {
    pub fn new(window_ms: f64) -> Self {
        Self {
            window_ms,
            first_ms: None,
            frames: 0,
        }
    }

    /// Counts a frame captured at `capture_ms`; returns the rate when a window closes.
    pub fn frame(&mut self, capture_ms: f64, asked_fps: f64) -> Option<Rate> {
        let first = *self.first_ms.get_or_insert(capture_ms);
        self.frames += 1;
        let span = capture_ms - first;
        if span < self.window_ms {
            return None;
        }
        let fps = (self.frames - 1) as f64 * 1000.0 / span;
        self.first_ms = Some(capture_ms);
        self.frames = 1;
        Some(Rate {
            fps,
            slow: fps < asked_fps * SLOW_FRACTION,
        })
    }

    /// Starts over (after a reconnect).
    pub fn reset(&mut self) {
        self.first_ms = None;
        self.frames = 0;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rate_meter_reports_each_window_and_flags_a_slow_camera() {
        let mut m = super::RateMeter::new(1000.0);
        let mut rates = Vec::new();
        // 30 fps for 1.5 s, then 15 fps (auto-exposure in low light halves a RealSense's rate).
        let mut t = 0.0;
        while t < 1500.0 {
            rates.extend(m.frame(t, 30.0));
            t += 1000.0 / 30.0;
        }
        while t < 4000.0 {
            rates.extend(m.frame(t, 30.0));
            t += 1000.0 / 15.0;
        }
        assert_eq!(rates.len(), 3, "{rates:?}");
        assert!(
            (rates[0].fps - 30.0).abs() < 0.5 && !rates[0].slow,
            "{rates:?}"
        );
        assert!(
            rates[2].slow && (rates[2].fps - 15.0).abs() < 0.5,
            "{rates:?}"
        );
    }

    use super::*;

    #[test]
    fn recovers_constant_latency_under_jitter() {
        let mut m = ClockMapper::new(30, 1000.0);
        let base = 5_000.0;
        for i in 0..60 {
            let device = i as f64 * 33.0;
            let jitter = ((i * 7) % 5) as f64;
            let capture = m.capture_host_ms(device, base + device + 2.0 + jitter);
            if i >= 5 {
                assert!(
                    (capture - (base + device + 2.0)).abs() < 1e-9,
                    "frame {i}: {capture}"
                );
            }
        }
    }

    #[test]
    fn device_clock_reset_restarts_the_estimate() {
        let mut m = ClockMapper::new(30, 1000.0);
        m.capture_host_ms(10_000.0, 100.0);
        let c = m.capture_host_ms(0.0, 50_000.0);
        assert_eq!(c, 50_000.0);
        assert_eq!(m.resets, 1);
    }
}
