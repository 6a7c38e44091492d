//! Live cameras: a device layer that delivers colour and depth frames one at a time, and the
//! source built on it that pairs them, maps their timestamps onto the host clock, counts what
//! was lost, and rides out an unplug.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clock::{ClockMapper, RateMeter};
use super::pairing::Pairer;
use super::{Depth, DepthRegistration, RgbdFrame, Source, SourceError, SourceStats};
use crate::rgbd::{Calibration, DepthMm, RgbImage};

#[derive(Clone, Debug)]
pub enum Payload {
    Color(RgbImage),
    Depth(DepthMm),
}

/// One frame of one stream, as the device delivered it.
#[derive(Clone, Debug)]
pub struct RawFrame {
    pub payload: Payload,
    pub frame_number: u64,
    /// The sensor's hardware timestamp, when the device gives one.
    pub device_timestamp_ms: Option<f64>,
    pub arrival: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device went away (unplugged, USB reset): worth waiting for.
    #[error("device disconnected: {0}")]
    Disconnected(String),
    /// No device to open (yet).
    #[error("device not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
    /// A recording has no more frames.
    #[error("end of recording")]
    Ended,
}

/// What a camera driver provides. Implemented by the RealSense and V4L2 back ends, and by test
/// doubles that script unplugs.
pub trait DeviceLayer: Send {
    /// Opens the device and starts streaming; called again after a disconnect.
    fn start(&mut self) -> Result<(), DeviceError>;
    /// The next frame of either stream; `Ok(None)` when nothing came within `timeout`.
    fn poll(&mut self, timeout: Duration) -> Result<Option<RawFrame>, DeviceError>;
    fn stop(&mut self);
    /// Power-cycles the device's USB connection (RealSense `hardware_reset`).
    fn hardware_reset(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn calibration(&self) -> &Calibration;
    fn describe(&self) -> String;
    /// The USB link type, e.g. "3.2" or "2.1", when known.
    fn usb_type(&self) -> Option<String> {
        None
    }
    /// False where depth frames come without their pixels (asked for no depth).
    fn delivers_depth(&self) -> bool {
        true
    }
}

#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Colour and depth stamped further apart than this are not a pair.
    pub max_skew_ms: f64,
    /// No frame for this long counts as losing the device (a hung USB link looks like this).
    pub frame_timeout: Duration,
    /// How long to keep trying to get a lost device back before giving up.
    pub reconnect_timeout: Duration,
    pub retry_interval: Duration,
    pub hardware_reset_on_start: bool,
    /// The frame rate asked of the device; a lower delivered rate is reported.
    pub asked_fps: Option<f64>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            max_skew_ms: 15.0,
            frame_timeout: Duration::from_secs(2),
            reconnect_timeout: Duration::from_secs(30),
            retry_interval: Duration::from_millis(500),
            hardware_reset_on_start: false,
            asked_fps: None,
        }
    }
}

struct Stamped<T> {
    image: T,
    frame_number: u64,
    device_timestamp_ms: Option<f64>,
    capture: Instant,
    arrival: Instant,
}

enum State {
    NotStarted,
    Streaming,
    Lost { since: Instant, reason: String },
}

pub struct LiveSource<D: DeviceLayer> {
    device: D,
    options: LiveOptions,
    state: State,
    pairer: Pairer<Stamped<RgbImage>, Stamped<DepthMm>>,
    /// Both streams of one device are stamped by the same hardware clock.
    clock: ClockMapper,
    epoch: Instant,
    last_color_number: Option<u64>,
    last_depth_number: Option<u64>,
    rate: RateMeter,
    stats: SourceStats,
    /// What registers the device's depth, for its calibration as last seen (a reconnect may
    /// bring another).
    registration: Option<Arc<DepthRegistration>>,
}

impl<D: DeviceLayer> LiveSource<D> {
    pub fn new(device: D, options: LiveOptions) -> Self {
        let skew = options.max_skew_ms;
        Self {
            device,
            options,
            state: State::NotStarted,
            pairer: Pairer::new(skew, 8),
            clock: ClockMapper::new(64, 1000.0),
            epoch: Instant::now(),
            last_color_number: None,
            last_depth_number: None,
            rate: RateMeter::new(2000.0),
            stats: SourceStats::default(),
            registration: None,
        }
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    fn host_ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.epoch).as_secs_f64() * 1000.0
    }

    fn at_host_ms(&self, ms: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    fn lose(&mut self, reason: String) {
        tracing::warn!(device = %self.device.describe(), %reason, "camera lost; retrying");
        self.device.stop();
        self.stats.disconnects += 1;
        self.state = State::Lost {
            since: Instant::now(),
            reason,
        };
    }

    fn resume(&mut self) {
        self.pairer.clear();
        self.clock.reset();
        self.last_color_number = None;
        self.last_depth_number = None;
        self.rate.reset();
        if let Some(usb) = self.device.usb_type() {
            if is_usb2_or_older(&usb) {
                tracing::error!(
                    device = %self.device.describe(),
                    usb = %usb,
                    "camera is on a USB {usb} link: expect lower resolutions and frame rates; use a USB 3 port and cable"
                );
            }
        }
        self.state = State::Streaming;
    }

    fn count_gap(last: &mut Option<u64>, number: u64) -> Result<u64, ()> {
        let gap = match *last {
            Some(prev) if number <= prev => return Err(()),
            Some(prev) => number - prev - 1,
            None => 0,
        };
        *last = Some(number);
        Ok(gap)
    }

    /// The registration for the device's calibration now, kept while the calibration stays.
    fn current_registration(&mut self) -> Arc<DepthRegistration> {
        let calib = self.device.calibration();
        match &self.registration {
            Some(r) if r.calibration() == calib => r.clone(),
            _ => {
                let r = Arc::new(DepthRegistration::new(calib.clone()));
                self.registration = Some(r.clone());
                r
            }
        }
    }

    fn accept(&mut self, raw: RawFrame) -> Option<RgbdFrame> {
        let arrival_ms = self.host_ms(raw.arrival);
        let is_color = matches!(raw.payload, Payload::Color(_));
        let capture_ms = match raw.device_timestamp_ms {
            Some(device) => self.clock.capture_host_ms(device, arrival_ms),
            None => arrival_ms,
        };
        // Pair on the device's own clock where it has one: host arrival adds USB jitter.
        let pairing_ms = raw.device_timestamp_ms.unwrap_or(arrival_ms);
        let capture = self.at_host_ms(capture_ms);
        let last = if is_color {
            &mut self.last_color_number
        } else {
            &mut self.last_depth_number
        };
        match Self::count_gap(last, raw.frame_number) {
            Ok(gap) => self.stats.dropped_by_device += gap,
            // A repeated or stale frame number: the device re-sent a frame; skip it.
            Err(()) => return None,
        }
        let pair = match raw.payload {
            Payload::Color(image) => self.pairer.push_color(
                pairing_ms,
                Stamped {
                    image,
                    frame_number: raw.frame_number,
                    device_timestamp_ms: raw.device_timestamp_ms,
                    capture,
                    arrival: raw.arrival,
                },
            ),
            Payload::Depth(image) => self.pairer.push_depth(
                pairing_ms,
                Stamped {
                    image,
                    frame_number: raw.frame_number,
                    device_timestamp_ms: raw.device_timestamp_ms,
                    capture,
                    arrival: raw.arrival,
                },
            ),
        }?;
        let depth = if self.device.delivers_depth() {
            Depth::Raw {
                depth: Arc::new(pair.depth.image),
                registration: self.current_registration(),
            }
        } else {
            Depth::None
        };
        let arrival = pair.color.arrival.max(pair.depth.arrival);
        let frame = RgbdFrame {
            color: Arc::new(pair.color.image),
            depth,
            color_intrinsics: self.device.calibration().color.clone(),
            color_frame_number: pair.color.frame_number,
            depth_frame_number: pair.depth.frame_number,
            sequence: self.stats.delivered,
            device_timestamp_ms: pair.color.device_timestamp_ms,
            capture: pair.color.capture,
            arrival,
            ready: arrival,
        };
        self.stats.delivered += 1;
        if let Some(asked) = self.options.asked_fps {
            let capture_ms = self.host_ms(frame.capture);
            if let Some(rate) = self.rate.frame(capture_ms, asked) {
                self.stats.measured_fps = Some(rate.fps);
                if rate.slow {
                    tracing::warn!(
                        device = %self.device.describe(),
                        asked,
                        delivered = format!("{:.1}", rate.fps),
                        "camera delivers fewer frames per second than asked: in low light auto-exposure lengthens frames (light the scene or fix the exposure), on USB 2 the bandwidth is short, or the host is too busy"
                    );
                }
            }
        }
        Some(frame)
    }
}

impl<D: DeviceLayer> Source for LiveSource<D> {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        loop {
            match &self.state {
                State::NotStarted => {
                    if self.options.hardware_reset_on_start {
                        self.device
                            .hardware_reset()
                            .map_err(|e| SourceError::Device(e.to_string()))?;
                    }
                    match self.device.start() {
                        Ok(()) => self.resume(),
                        Err(DeviceError::Failed(m)) => return Err(SourceError::Device(m)),
                        Err(e) => {
                            self.state = State::Lost {
                                since: Instant::now(),
                                reason: e.to_string(),
                            };
                        }
                    }
                }
                State::Lost { since, reason } => {
                    let waited = since.elapsed();
                    if waited >= self.options.reconnect_timeout {
                        return Err(SourceError::DeviceLost {
                            what: format!("{}: {reason}", self.device.describe()),
                            waited_s: waited.as_secs_f64(),
                        });
                    }
                    match self.device.start() {
                        Ok(()) => {
                            self.stats.reconnects += 1;
                            tracing::warn!(device = %self.device.describe(), "camera back; streaming resumed");
                            self.resume();
                        }
                        Err(DeviceError::Failed(m)) => return Err(SourceError::Device(m)),
                        Err(_) => std::thread::sleep(self.options.retry_interval),
                    }
                }
                State::Streaming => match self.device.poll(self.options.frame_timeout) {
                    Ok(Some(raw)) => {
                        if let Some(frame) = self.accept(raw) {
                            self.sync_counters();
                            return Ok(Some(frame));
                        }
                        self.sync_counters();
                    }
                    Err(DeviceError::Ended) => return Ok(None),
                    Ok(None) => {
                        let reason = format!(
                            "no frame for {:.1} s",
                            self.options.frame_timeout.as_secs_f64()
                        );
                        self.lose(reason);
                    }
                    Err(DeviceError::Failed(m)) => return Err(SourceError::Device(m)),
                    Err(e) => self.lose(e.to_string()),
                },
            }
        }
    }

    fn calibration(&self) -> &Calibration {
        self.device.calibration()
    }

    fn depth_registration(&self) -> Arc<DepthRegistration> {
        let calib = self.device.calibration();
        match &self.registration {
            Some(r) if r.calibration() == calib => r.clone(),
            _ => Arc::new(DepthRegistration::new(calib.clone())),
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }

    fn describe(&self) -> String {
        match self.device.usb_type().filter(|u| is_usb2_or_older(u)) {
            Some(usb) => format!(
                "{} (WARNING: USB {usb} link, modes and rates are limited; use a USB 3 port and cable)",
                self.device.describe()
            ),
            None => self.device.describe(),
        }
    }
}

fn is_usb2_or_older(usb_type: &str) -> bool {
    usb_type.starts_with('2') || usb_type.starts_with('1')
}

impl<D: DeviceLayer> LiveSource<D> {
    /// Starts the device now, so that its calibration is known before the first frame.
    /// A device that is not there is an error here: at start, nothing was lost.
    pub fn prime(&mut self) -> Result<(), SourceError> {
        if !matches!(self.state, State::NotStarted) {
            return Ok(());
        }
        if self.options.hardware_reset_on_start {
            self.device
                .hardware_reset()
                .map_err(|e| SourceError::Device(e.to_string()))?;
        }
        self.device
            .start()
            .map_err(|e| SourceError::Device(e.to_string()))?;
        self.resume();
        Ok(())
    }

    fn sync_counters(&mut self) {
        self.stats.unpaired_color = self.pairer.unpaired_color;
        self.stats.unpaired_depth = self.pairer.unpaired_depth;
    }
}
