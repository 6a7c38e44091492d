//! V4L2 colour cameras (UVC webcams and the like): YUYV or MJPEG to RGB8, buffer timestamps
//! mapped onto the host monotonic clock, dropped frames counted from sequence gaps.
//!
//! The frame assembly here is PURE and always compiled; the driver calls live in `device`
//! behind the `v4l2` feature. A V4L2 camera has no depth: its frames carry an all-zero ("no
//! data") depth image of the colour size, already "registered" with the colour intrinsics.

pub mod mjpeg;

#[cfg(feature = "v4l2")]
mod device;
#[cfg(feature = "v4l2")]
pub use device::{offered_modes, V4l2Source};

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clock::ClockMapper;
use super::yuv::{rgb_from_yuyv, YuvError};
use super::{Depth, RgbdFrame, SourceStats};
use crate::rgbd::{Calibration, Extrinsics, Intrinsics, RgbImage};
use mjpeg::MjpegError;

/// `struct v4l2_buffer` flags this module reads (linux/videodev2.h).
pub const BUF_FLAG_ERROR: u32 = 0x0000_0040;
pub const BUF_FLAG_TIMESTAMP_MASK: u32 = 0x0000_e000;
pub const BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = 0x0000_2000;
pub const BUF_FLAG_TIMESTAMP_COPY: u32 = 0x0000_4000;

/// A monotonic buffer stamp older than this at arrival is not believed.
const MAX_PLAUSIBLE_AGE: Duration = Duration::from_secs(2);
/// Undecodable frames in a row before the stream counts as broken rather than noisy.
pub const MAX_BAD_FRAMES_IN_A_ROW: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    Yuyv,
    Mjpeg,
}

impl PixelFormat {
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpeg => *b"MJPG",
        }
    }
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        match &code {
            b"YUYV" => Some(PixelFormat::Yuyv),
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            _ => None,
        }
    }
}

impl std::str::FromStr for PixelFormat {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "yuyv" => Ok(PixelFormat::Yuyv),
            "mjpeg" | "mjpg" => Ok(PixelFormat::Mjpeg),
            _ => Err(()),
        }
    }
}

/// What the driver agreed to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegotiatedFormat {
    pub pixel_format: PixelFormat,
    pub width: usize,
    pub height: usize,
    /// Bytes per row (YUYV); 0 for compressed formats.
    pub stride: usize,
}

/// Which clock stamped a buffer, from its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampClock {
    /// CLOCK_MONOTONIC: the host clock `Instant` also reads.
    Monotonic,
    /// Copied from an output buffer (mem2mem, loopback): the writer's clock, unknown to us.
    Copied,
    Unknown,
}

pub fn timestamp_clock(flags: u32) -> TimestampClock {
    match flags & BUF_FLAG_TIMESTAMP_MASK {
        BUF_FLAG_TIMESTAMP_MONOTONIC => TimestampClock::Monotonic,
        BUF_FLAG_TIMESTAMP_COPY => TimestampClock::Copied,
        _ => TimestampClock::Unknown,
    }
}

/// The parts of a dequeued `v4l2_buffer` frame assembly needs.
#[derive(Clone, Copy, Debug)]
pub struct BufferInfo {
    pub sequence: u32,
    pub flags: u32,
    /// `timestamp` as microseconds.
    pub timestamp_us: i64,
    pub bytes_used: usize,
}

/// When the host got a buffer, on both host clocks read together right after dequeuing it.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub instant: Instant,
    /// CLOCK_MONOTONIC, microseconds.
    pub monotonic_us: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Yuyv(#[from] YuvError),
    #[error(transparent)]
    Mjpeg(#[from] MjpegError),
    #[error("{count} frames in a row could not be decoded; the last: {last}")]
    Broken { count: u32, last: String },
}

/// Intrinsics for a camera nobody calibrated: a pinhole with a 70° horizontal field of view
/// centred on the image, no distortion. Give `calib=FILE` for real ones.
pub fn nominal_calibration(width: usize, height: usize) -> Calibration {
    let intrinsics = Intrinsics::nominal(width, height);
    Calibration {
        depth_scale: 0.001,
        depth: intrinsics.clone(),
        color: intrinsics,
        depth_to_color: Extrinsics {
            rotation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            translation: [0.0; 3],
        },
    }
}

/// One frame size a V4L2 camera offers in one pixel format, with its frame rates.
#[derive(Clone, Debug, PartialEq)]
pub struct OfferedMode {
    /// The fourcc as text, e.g. "YUYV", "MJPG".
    pub fourcc: String,
    pub size: OfferedSize,
    /// Frame rates (fps) when the driver lists them; empty when it gives a continuous range.
    pub fps: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OfferedSize {
    Discrete {
        width: u32,
        height: u32,
    },
    /// Any size in the range, in steps.
    Stepwise {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

/// Lines such as `YUYV 640x480 @ 30, 15 fps` for `devices`, formats we can decode marked.
pub fn describe_modes(modes: &[OfferedMode]) -> Vec<String> {
    modes
        .iter()
        .map(|m| {
            let size = match m.size {
                OfferedSize::Discrete { width, height } => format!("{width}x{height}"),
                OfferedSize::Stepwise { min, max, step } => format!(
                    "{}x{} to {}x{} in steps of {}x{}",
                    min.0, min.1, max.0, max.1, step.0, step.1
                ),
            };
            let rates = if m.fps.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = m
                    .fps
                    .iter()
                    .map(|f| format!("{}", (f * 100.0).round() / 100.0))
                    .collect();
                format!(" @ {} fps", list.join(", "))
            };
            let mut fourcc_bytes = [b' '; 4];
            for (dst, src) in fourcc_bytes.iter_mut().zip(m.fourcc.bytes()) {
                *dst = src;
            }
            let usable = if PixelFormat::from_fourcc(fourcc_bytes).is_some() {
                ""
            } else {
                " (not decoded by spatialbot-edge)"
            };
            format!("{} {size}{rates}{usable}", m.fourcc.trim())
        })
        .collect()
}

/// Turns dequeued buffers into frames: decodes the pixels, maps the timestamp, counts gaps.
#[derive(Debug)]
pub struct FrameAssembler {
    format: NegotiatedFormat,
    intrinsics: Intrinsics,
    clock: ClockMapper,
    epoch: Instant,
    last_sequence: Option<u32>,
    bad_in_a_row: u32,
    stats: SourceStats,
}

impl FrameAssembler {
    pub fn new(format: NegotiatedFormat, intrinsics: Intrinsics, epoch: Instant) -> Self {
        Self {
            format,
            intrinsics,
            clock: ClockMapper::new(64, 1000.0),
            epoch,
            last_sequence: None,
            bad_in_a_row: 0,
            stats: SourceStats::default(),
        }
    }

    pub fn format(&self) -> NegotiatedFormat {
        self.format
    }

    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    pub fn stats_mut(&mut self) -> &mut SourceStats {
        &mut self.stats
    }

    /// After the stream restarted (a reconnect): sequence numbers and the clock start over.
    pub fn restart(&mut self, format: NegotiatedFormat) {
        self.format = format;
        self.clock.reset();
        self.last_sequence = None;
        self.bad_in_a_row = 0;
    }

    /// When the buffer's light hit the sensor, on the host clock, and the stamp in device ms.
    pub fn capture_time(
        &mut self,
        buffer: &BufferInfo,
        arrival: Arrival,
    ) -> (Instant, Option<f64>) {
        if buffer.timestamp_us <= 0 {
            return (arrival.instant, None);
        }
        let device_ms = buffer.timestamp_us as f64 / 1000.0;
        match timestamp_clock(buffer.flags) {
            TimestampClock::Monotonic => {
                let age_us = arrival.monotonic_us - buffer.timestamp_us;
                let age = Duration::from_micros(age_us.max(0) as u64);
                if age_us >= 0 && age <= MAX_PLAUSIBLE_AGE {
                    let capture = arrival.instant.checked_sub(age).unwrap_or(arrival.instant);
                    (capture, Some(device_ms))
                } else {
                    (arrival.instant, Some(device_ms))
                }
            }
            TimestampClock::Copied | TimestampClock::Unknown => {
                let arrival_ms = arrival
                    .instant
                    .saturating_duration_since(self.epoch)
                    .as_secs_f64()
                    * 1000.0;
                let capture_ms = self.clock.capture_host_ms(device_ms, arrival_ms);
                let capture = self.epoch + Duration::from_secs_f64(capture_ms.max(0.0) / 1000.0);
                (capture, Some(device_ms))
            }
        }
    }

    /// Counts a gap in the driver's sequence numbers; a number that goes back means the driver
    /// restarted its count.
    fn count_sequence(&mut self, sequence: u32) {
        if let Some(prev) = self.last_sequence {
            if sequence > prev {
                self.stats.dropped_by_device += u64::from(sequence - prev - 1);
            }
        }
        self.last_sequence = Some(sequence);
    }

    fn decode(&self, bytes: &[u8]) -> Result<RgbImage, FrameError> {
        let f = self.format;
        Ok(match f.pixel_format {
            PixelFormat::Yuyv => rgb_from_yuyv(f.width, f.height, f.stride, bytes)?,
            PixelFormat::Mjpeg => mjpeg::rgb_from_mjpeg(f.width, f.height, bytes)?,
        })
    }

    /// One frame from one dequeued buffer (`bytes` is the whole mapped buffer). `Ok(None)` for
    /// a buffer the driver marked bad or that does not decode: it is counted as dropped, and
    /// only a run of [`MAX_BAD_FRAMES_IN_A_ROW`] of them is an error.
    pub fn assemble(
        &mut self,
        bytes: &[u8],
        buffer: &BufferInfo,
        arrival: Arrival,
    ) -> Result<Option<RgbdFrame>, FrameError> {
        self.count_sequence(buffer.sequence);
        let used = &bytes[..buffer.bytes_used.min(bytes.len())];
        let decoded = if buffer.flags & BUF_FLAG_ERROR != 0 {
            Err("the driver flagged the buffer as corrupt".to_string())
        } else {
            self.decode(used).map_err(|e| e.to_string())
        };
        let color = match decoded {
            Ok(color) => color,
            Err(last) => {
                self.stats.dropped_by_device += 1;
                self.bad_in_a_row += 1;
                if self.bad_in_a_row >= MAX_BAD_FRAMES_IN_A_ROW {
                    return Err(FrameError::Broken {
                        count: self.bad_in_a_row,
                        last,
                    });
                }
                return Ok(None);
            }
        };
        self.bad_in_a_row = 0;
        let (capture, device_timestamp_ms) = self.capture_time(buffer, arrival);
        let frame = RgbdFrame {
            color: Arc::new(color),
            depth: Depth::None,
            color_intrinsics: self.intrinsics.clone(),
            color_frame_number: u64::from(buffer.sequence),
            depth_frame_number: u64::from(buffer.sequence),
            sequence: self.stats.delivered,
            device_timestamp_ms,
            capture,
            arrival: arrival.instant,
            ready: arrival.instant,
        };
        self.stats.delivered += 1;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assembler(
        format: PixelFormat,
        width: usize,
        height: usize,
        epoch: Instant,
    ) -> FrameAssembler {
        let calib = nominal_calibration(width, height);
        FrameAssembler::new(
            NegotiatedFormat {
                pixel_format: format,
                width,
                height,
                stride: width * 2,
            },
            calib.color,
            epoch,
        )
    }

    fn gray_yuyv(width: usize, height: usize) -> Vec<u8> {
        [128u8, 128].repeat(width * height)
    }

    #[test]
    fn offered_modes_read_as_the_driver_lists_them() {
        let modes = [
            OfferedMode {
                fourcc: "YUYV".into(),
                size: OfferedSize::Discrete {
                    width: 640,
                    height: 480,
                },
                fps: vec![30.0, 15.0, 7.5],
            },
            OfferedMode {
                fourcc: "MJPG".into(),
                size: OfferedSize::Stepwise {
                    min: (160, 120),
                    max: (1920, 1080),
                    step: (16, 8),
                },
                fps: vec![],
            },
            OfferedMode {
                fourcc: "H264".into(),
                size: OfferedSize::Discrete {
                    width: 1280,
                    height: 720,
                },
                fps: vec![1e7 / 333_333.0],
            },
        ];
        assert_eq!(
            describe_modes(&modes),
            vec![
                "YUYV 640x480 @ 30, 15, 7.5 fps",
                "MJPG 160x120 to 1920x1080 in steps of 16x8",
                "H264 1280x720 @ 30 fps (not decoded by spatialbot-edge)",
            ]
        );
    }

    #[test]
    fn timestamp_clock_from_flags() {
        assert_eq!(timestamp_clock(0x2000 | 0x1), TimestampClock::Monotonic);
        assert_eq!(timestamp_clock(0x4000), TimestampClock::Copied);
        assert_eq!(timestamp_clock(0), TimestampClock::Unknown);
        assert_eq!(timestamp_clock(0xe000), TimestampClock::Unknown);
    }

    #[test]
    fn sequence_gaps_count_as_dropped_and_restarts_do_not() {
        let epoch = Instant::now();
        let mut a = assembler(PixelFormat::Yuyv, 4, 2, epoch);
        let bytes = gray_yuyv(4, 2);
        for seq in [10, 11, 14, 15, 3, 4] {
            let info = BufferInfo {
                sequence: seq,
                flags: BUF_FLAG_TIMESTAMP_MONOTONIC,
                timestamp_us: 0,
                bytes_used: bytes.len(),
            };
            let arrival = Arrival {
                instant: epoch,
                monotonic_us: 0,
            };
            let frame = a.assemble(&bytes, &info, arrival).unwrap().unwrap();
            assert_eq!(frame.color_frame_number, u64::from(seq));
            assert_eq!(frame.color.width, 4);
            assert!(frame.depth.is_none(), "a colour-only camera has no depth");
        }
        assert_eq!(a.stats().dropped_by_device, 2);
        assert_eq!(a.stats().delivered, 6);
    }

    #[test]
    fn corrupt_buffers_are_skipped_then_fail_when_persistent() {
        let epoch = Instant::now();
        let mut a = assembler(PixelFormat::Mjpeg, 4, 2, epoch);
        let arrival = Arrival {
            instant: epoch,
            monotonic_us: 0,
        };
        let junk = [0u8; 16];
        let mut result = Ok(None);
        for seq in 0..MAX_BAD_FRAMES_IN_A_ROW {
            let info = BufferInfo {
                sequence: seq,
                flags: 0,
                timestamp_us: 0,
                bytes_used: 16,
            };
            result = a.assemble(&junk, &info, arrival);
            if seq + 1 < MAX_BAD_FRAMES_IN_A_ROW {
                assert!(matches!(result, Ok(None)));
            }
        }
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("30 frames in a row") && err.contains("SOI"),
            "{err}"
        );
        assert_eq!(
            a.stats().dropped_by_device,
            u64::from(MAX_BAD_FRAMES_IN_A_ROW)
        );
    }
}
