//! The V4L2 driver side: negotiate a format, stream through mmap buffers, reopen after an
//! unplug. Decoding and timestamps are the pure [`FrameAssembler`]'s.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{
    nominal_calibration, Arrival, BufferInfo, FrameAssembler, NegotiatedFormat, OfferedMode,
    OfferedSize, PixelFormat,
};
use crate::camera::clock::RateMeter;
use crate::camera::spec::{StreamMode, V4l2Options};
use crate::camera::{RgbdFrame, Source, SourceError, SourceStats};
use crate::rgbd::Calibration;

const BUFFERS: u32 = 4;
const FRAME_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_MODE: StreamMode = StreamMode {
    width: 640,
    height: 480,
    fps: 30,
};

enum State {
    Streaming(Stream<'static>),
    Lost { since: Instant, reason: String },
}

/// A V4L2 colour camera as a [`Source`] of colour-only frames.
pub struct V4l2Source {
    path: PathBuf,
    mode: StreamMode,
    requested_format: Option<PixelFormat>,
    reconnect_timeout: Duration,
    calibration: Calibration,
    assembler: FrameAssembler,
    state: State,
    rate: RateMeter,
    epoch: Instant,
}

/// Why opening failed: worth retrying (the node is gone) or not (the camera cannot do it).
enum OpenError {
    Gone(String),
    Fatal(String),
}

fn monotonic_us() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i64 * 1_000_000 + ts.tv_nsec as i64 / 1000
}

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(libc::ENODEV | libc::ENXIO | libc::EIO)
        )
}

fn open_stream(
    path: &Path,
    mode: StreamMode,
    requested: Option<PixelFormat>,
) -> Result<(Stream<'static>, NegotiatedFormat), OpenError> {
    let shown = path.display();
    let device = Device::with_path(path).map_err(|e| {
        let message = format!(
            "{shown}: cannot open ({e}); check the node exists (`spatialbot-edge devices` lists them) and that this user may read it (group `video`)"
        );
        if is_gone(&e) {
            OpenError::Gone(message)
        } else {
            OpenError::Fatal(message)
        }
    })?;
    let caps = device
        .query_caps()
        .map_err(|e| OpenError::Gone(format!("{shown}: VIDIOC_QUERYCAP failed: {e}")))?;
    let capture_bit = v4l::capability::Flags::VIDEO_CAPTURE;
    if !caps.capabilities.contains(capture_bit) {
        return Err(OpenError::Fatal(format!(
            "{shown} ({}) is not a video capture node; UVC cameras often expose a second metadata node, try the other /dev/videoN",
            caps.card
        )));
    }
    let offered: Vec<PixelFormat> = device
        .enum_formats()
        .map_err(|e| OpenError::Gone(format!("{shown}: cannot list formats: {e}")))?
        .iter()
        .filter_map(|d| PixelFormat::from_fourcc(d.fourcc.repr))
        .collect();
    let candidates: Vec<PixelFormat> = match requested {
        Some(f) => vec![f],
        None => vec![PixelFormat::Yuyv, PixelFormat::Mjpeg],
    };
    let mut refusals = Vec::new();
    for pixel_format in candidates {
        if !offered.contains(&pixel_format) {
            refusals.push(format!("{pixel_format:?} is not offered"));
            continue;
        }
        let mut wanted = device
            .format()
            .map_err(|e| OpenError::Gone(format!("{shown}: VIDIOC_G_FMT failed: {e}")))?;
        wanted.width = mode.width as u32;
        wanted.height = mode.height as u32;
        wanted.fourcc = FourCC::new(&pixel_format.fourcc());
        let got = device
            .set_format(&wanted)
            .map_err(|e| OpenError::Fatal(format!("{shown}: VIDIOC_S_FMT failed: {e}")))?;
        if got.fourcc.repr != pixel_format.fourcc()
            || got.width as usize != mode.width
            || got.height as usize != mode.height
        {
            refusals.push(format!(
                "{pixel_format:?} {}x{} was answered with {} {}x{}",
                mode.width, mode.height, got.fourcc, got.width, got.height
            ));
            continue;
        }
        let params = device
            .set_params(&v4l::video::capture::Parameters::with_fps(mode.fps))
            .map_err(|e| OpenError::Fatal(format!("{shown}: VIDIOC_S_PARM failed: {e}")))?;
        let interval = params.interval;
        if interval.numerator > 0 {
            let fps = f64::from(interval.denominator) / f64::from(interval.numerator);
            if fps + 0.5 < f64::from(mode.fps) {
                tracing::warn!(device = %shown, asked = mode.fps, got = fps, "camera runs slower than asked");
            }
        }
        let stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS).map_err(|e| {
            let message = format!("{shown}: cannot map capture buffers: {e}");
            if is_gone(&e) {
                OpenError::Gone(message)
            } else {
                OpenError::Fatal(message)
            }
        })?;
        let negotiated = NegotiatedFormat {
            pixel_format,
            width: mode.width,
            height: mode.height,
            stride: match pixel_format {
                PixelFormat::Yuyv => (got.stride as usize).max(mode.width * 2),
                PixelFormat::Mjpeg => 0,
            },
        };
        return Ok((stream, negotiated));
    }
    Err(OpenError::Fatal(format!(
        "{shown} cannot deliver {}x{}: {}; the camera offers {offered:?} (see `v4l2-ctl --list-formats-ext -d {shown}`), pick another mode=WxH@FPS or format=",
        mode.width,
        mode.height,
        refusals.join("; ")
    )))
}

impl V4l2Source {
    /// Opens the camera and starts streaming; a camera that is not there is an error here.
    pub fn open(path: PathBuf, options: V4l2Options) -> Result<Self, SourceError> {
        let mode = options.mode.unwrap_or(DEFAULT_MODE);
        let calibration = match &options.calibration {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    SourceError::Device(format!(
                        "{}: cannot read the calibration: {e}",
                        file.display()
                    ))
                })?;
                let calib = Calibration::from_toml_str(&text, &file.display().to_string())?;
                if (calib.color.width, calib.color.height) != (mode.width, mode.height) {
                    return Err(SourceError::Device(format!(
                        "{}: its colour intrinsics are for {}x{}, the camera is set to {}x{}; calibrate at this mode or change mode=",
                        file.display(),
                        calib.color.width,
                        calib.color.height,
                        mode.width,
                        mode.height
                    )));
                }
                calib
            }
            None => nominal_calibration(mode.width, mode.height),
        };
        let (stream, format) = open_stream(&path, mode, options.format).map_err(|e| match e {
            OpenError::Gone(m) | OpenError::Fatal(m) => SourceError::Device(m),
        })?;
        let assembler = FrameAssembler::new(format, calibration.color.clone(), Instant::now());
        Ok(Self {
            path,
            mode,
            requested_format: options.format,
            reconnect_timeout: options
                .reconnect_timeout_s
                .map(Duration::from_secs_f64)
                .unwrap_or(Duration::from_secs(30)),
            calibration,
            assembler,
            state: State::Streaming(stream),
            rate: RateMeter::new(2000.0),
            epoch: Instant::now(),
        })
    }

    fn measure_rate(&mut self, frame: &RgbdFrame) {
        let capture_ms = frame
            .capture
            .saturating_duration_since(self.epoch)
            .as_secs_f64()
            * 1000.0;
        let asked = f64::from(self.mode.fps);
        if let Some(rate) = self.rate.frame(capture_ms, asked) {
            self.assembler.stats_mut().measured_fps = Some(rate.fps);
            if rate.slow {
                tracing::warn!(
                    device = %self.path.display(),
                    asked,
                    delivered = format!("{:.1}", rate.fps),
                    "camera delivers fewer frames per second than asked: UVC cameras lengthen exposure in low light (light the scene or turn off auto-exposure priority), or the USB link is short of bandwidth"
                );
            }
        }
    }

    fn lose(&mut self, reason: String) {
        tracing::warn!(device = %self.path.display(), %reason, "camera lost; retrying");
        self.assembler.stats_mut().disconnects += 1;
        self.state = State::Lost {
            since: Instant::now(),
            reason,
        };
    }
}

impl Source for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        loop {
            match &mut self.state {
                State::Lost { since, reason } => {
                    let waited = since.elapsed();
                    if waited >= self.reconnect_timeout {
                        return Err(SourceError::DeviceLost {
                            what: format!("{}: {reason}", self.path.display()),
                            waited_s: waited.as_secs_f64(),
                        });
                    }
                    match open_stream(&self.path, self.mode, self.requested_format) {
                        Ok((stream, format)) => {
                            tracing::warn!(device = %self.path.display(), "camera back; streaming resumed");
                            self.assembler.restart(format);
                            self.rate.reset();
                            self.assembler.stats_mut().reconnects += 1;
                            self.state = State::Streaming(stream);
                        }
                        Err(OpenError::Fatal(m)) => return Err(SourceError::Device(m)),
                        Err(OpenError::Gone(_)) => std::thread::sleep(RETRY_INTERVAL),
                    }
                }
                State::Streaming(stream) => {
                    stream.set_timeout(FRAME_TIMEOUT);
                    let outcome = match CaptureStream::next(stream) {
                        Ok((bytes, meta)) => {
                            let arrival = Arrival {
                                instant: Instant::now(),
                                monotonic_us: monotonic_us(),
                            };
                            let info = BufferInfo {
                                sequence: meta.sequence,
                                flags: meta.flags.bits(),
                                timestamp_us: meta.timestamp.sec as i64 * 1_000_000
                                    + meta.timestamp.usec as i64,
                                bytes_used: meta.bytesused as usize,
                            };
                            Ok(self.assembler.assemble(bytes, &info, arrival))
                        }
                        Err(e) => Err(e),
                    };
                    match outcome {
                        Ok(Ok(Some(frame))) => {
                            self.measure_rate(&frame);
                            return Ok(Some(frame));
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            return Err(SourceError::Device(format!(
                                "{}: {e}",
                                self.path.display()
                            )))
                        }
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            self.lose(format!("no frame for {:.1} s", FRAME_TIMEOUT.as_secs_f64()))
                        }
                        Err(e) => self.lose(e.to_string()),
                    }
                }
            }
        }
    }

    fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    fn stats(&self) -> SourceStats {
        self.assembler.stats().clone()
    }

    fn describe(&self) -> String {
        let f = self.assembler.format();
        format!(
            "v4l2 {} {:?} {}x{}@{} (colour only)",
            self.path.display(),
            f.pixel_format,
            f.width,
            f.height,
            self.mode.fps
        )
    }
}

/// What a V4L2 node offers for capture: every pixel format, frame size and frame rate the driver
/// lists. `Ok(None)` for a node that does not capture video (a UVC metadata node).
pub fn offered_modes(path: &Path) -> io::Result<Option<Vec<OfferedMode>>> {
    let device = Device::with_path(path)?;
    let caps = device.query_caps()?;
    if !caps
        .capabilities
        .contains(v4l::capability::Flags::VIDEO_CAPTURE)
    {
        return Ok(None);
    }
    let mut modes = Vec::new();
    for format in device.enum_formats()? {
        let fourcc = format.fourcc.str().unwrap_or("????").to_string();
        for frame_size in device.enum_framesizes(format.fourcc)? {
            let (size, fps) = match frame_size.size {
                v4l::framesize::FrameSizeEnum::Discrete(d) => {
                    let fps = device
                        .enum_frameintervals(format.fourcc, d.width, d.height)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|i| match i.interval {
                            v4l::frameinterval::FrameIntervalEnum::Discrete(f)
                                if f.numerator > 0 =>
                            {
                                Some(f64::from(f.denominator) / f64::from(f.numerator))
                            }
                            _ => None,
                        })
                        .collect();
                    (
                        OfferedSize::Discrete {
                            width: d.width,
                            height: d.height,
                        },
                        fps,
                    )
                }
                v4l::framesize::FrameSizeEnum::Stepwise(s) => (
                    OfferedSize::Stepwise {
                        min: (s.min_width, s.min_height),
                        max: (s.max_width, s.max_height),
                        step: (s.step_width, s.step_height),
                    },
                    Vec::new(),
                ),
            };
            modes.push(OfferedMode {
                fourcc: fourcc.clone(),
                size,
                fps,
            });
        }
    }
    Ok(Some(modes))
}
