//! PNG-folder recordings, the format `record` writes and `replay:` reads:
//!
//! ```text
//! PATH/recording.toml      format, frame count, whether depth is registered, drops while recording
//! PATH/calibration.toml    the camera's calibration (always the unregistered geometry)
//! PATH/timestamps.csv      one row per frame: frame numbers, device timestamp, capture/arrival times
//! PATH/color/NNNNNN.png    RGB8
//! PATH/depth/NNNNNN.png    16-bit grey, millimetres, saturated at 65535
//! PATH/depth24/NNNNNN.png  only for frames with depth > 65535 mm: the exact uint24 value as
//!                          RGB8 (R = bits 16–23, G = 8–15, B = 0–7); readers use it when present
//! ```
//!
//! Lossless PNG keeps every pixel bit-exact, any image tool can open the frames, and a 16-bit
//! depth PNG is what SpatialBot's own code reads. `recording.toml` is optional for reading, so
//! a hand-made folder of PNGs plays too.
//!
//! Nothing recorded is lost to a stop: the recorder writes `recording.toml` with
//! `complete = false` when it starts, appends a frame's row to `timestamps.csv` only once all of
//! that frame's PNGs are written (in frame order, syncing the file about once a second), and
//! rewrites `recording.toml` atomically with `complete = true` when it finishes. A recording cut
//! by SIGKILL or a power cut therefore replays up to its last complete frame: the reader ignores
//! an unfinished last line and trailing frames whose PNGs do not decode, and reports the
//! recording as cut (`Source::is_cut`, `Source::warnings`).
//!
//! Replay never trusts the timestamps with a wait: a capture time that goes backwards is played
//! with no gap, and a gap between frames (or a capture-to-arrival latency) over
//! [`MAX_REPLAY_WAIT`] is clamped to it, each with a warning naming the file and line.
//! A device timestamp that is not a finite number is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::pacing::LateStart;
use super::{
    Depth, DepthNeed, DepthRegistration, Pacing, ReplayOptions, RgbdFrame, Source, SourceError,
    SourceStats,
};
use crate::imageio;
use crate::rgbd::{Calibration, DepthMm, Intrinsics, RgbImage};

pub const FORMAT: &str = "spatialbot-edge png-folder v1";
pub const TIMESTAMPS_HEADER: &str =
    "index,color_frame_number,depth_frame_number,device_timestamp_ms,capture_ns,arrival_ns";

/// The longest real-time replay waits between handing over two frames of a pass: a larger gap
/// between two frames' capture times (or a larger capture-to-arrival latency) in
/// `timestamps.csv` is clamped to this.
pub const MAX_REPLAY_WAIT: Duration = Duration::from_secs(10);

/// How often the recorder syncs `timestamps.csv` to the disk.
const INDEX_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// `recording.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingInfo {
    pub format: String,
    pub frames: u64,
    pub depth_registered: bool,
    /// False when the camera had no depth (V4L2 alone): the depth PNGs are all zeros.
    #[serde(default = "depth_by_default")]
    pub has_depth: bool,
    /// What the frames came from, e.g. "synthetic tabletop 640x480 @ 30 fps".
    pub source: String,
    /// Frames the recorder dropped because encoding fell behind.
    pub dropped_while_recording: u64,
    /// False while the recorder runs, true once it has finished and `frames` is final. A folder
    /// left with false was cut (killed, power lost): it plays up to its last complete frame.
    /// Absent (folders from before this field) means true.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
}

fn depth_by_default() -> bool {
    true
}

fn complete_by_default() -> bool {
    true
}

/// One row of `timestamps.csv`. Times are nanoseconds since the first frame's capture.
#[derive(Clone, Debug, PartialEq)]
pub struct TimestampRow {
    pub index: u64,
    pub color_frame_number: u64,
    pub depth_frame_number: u64,
    pub device_timestamp_ms: Option<f64>,
    pub capture_ns: i64,
    pub arrival_ns: i64,
}

impl TimestampRow {
    pub fn to_csv_line(&self) -> String {
        let device = self
            .device_timestamp_ms
            .map(|t| format!("{t:?}"))
            .unwrap_or_default();
        format!(
            "{},{},{},{},{},{}",
            self.index,
            self.color_frame_number,
            self.depth_frame_number,
            device,
            self.capture_ns,
            self.arrival_ns
        )
    }

    fn parse(line: &str) -> Result<Self, String> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 6 {
            return Err(format!(
                "expected 6 comma-separated fields ({TIMESTAMPS_HEADER}), found {}",
                fields.len()
            ));
        }
        let int = |i: usize, name: &str| {
            fields[i]
                .parse::<i64>()
                .map_err(|_| format!("{name} `{}` is not an integer", fields[i]))
        };
        let uint = |i: usize, name: &str| {
            fields[i]
                .parse::<u64>()
                .map_err(|_| format!("{name} `{}` is not a whole number", fields[i]))
        };
        let device_timestamp_ms = if fields[3].is_empty() {
            None
        } else {
            match fields[3].parse::<f64>() {
                Ok(t) if t.is_finite() => Some(t),
                _ => {
                    return Err(format!(
                        "device_timestamp_ms `{}` is not a finite number",
                        fields[3]
                    ))
                }
            }
        };
        Ok(Self {
            index: uint(0, "index")?,
            color_frame_number: uint(1, "color_frame_number")?,
            depth_frame_number: uint(2, "depth_frame_number")?,
            device_timestamp_ms,
            capture_ns: int(4, "capture_ns")?,
            arrival_ns: int(5, "arrival_ns")?,
        })
    }
}

pub fn color_path(dir: &Path, index: u64) -> PathBuf {
    dir.join("color").join(format!("{index:06}.png"))
}
pub fn depth_path(dir: &Path, index: u64) -> PathBuf {
    dir.join("depth").join(format!("{index:06}.png"))
}
pub fn depth24_path(dir: &Path, index: u64) -> PathBuf {
    dir.join("depth24").join(format!("{index:06}.png"))
}

fn signed_ns(later: Instant, earlier: Instant) -> i64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_nanos() as i64,
        None => -(earlier.duration_since(later).as_nanos() as i64),
    }
}

/// The `timestamps.csv` row for `frame` stored as `index`, with times relative to `origin`.
pub fn row_for(frame: &RgbdFrame, index: u64, origin: Instant) -> TimestampRow {
    TimestampRow {
        index,
        color_frame_number: frame.color_frame_number,
        depth_frame_number: frame.depth_frame_number,
        device_timestamp_ms: frame.device_timestamp_ms,
        capture_ns: signed_ns(frame.capture, origin),
        arrival_ns: signed_ns(frame.arrival, origin),
    }
}

/// Encoded files of one frame: (path, bytes).
pub fn encode_frame(
    dir: &Path,
    index: u64,
    color: &RgbImage,
    depth: &DepthMm,
) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::with_capacity(3);
    files.push((color_path(dir, index), imageio::rgb_to_png_bytes(color)));
    let over = depth.as_slice().iter().any(|&v| v > u16::MAX as u32);
    let low: Vec<u32> = if over {
        depth
            .as_slice()
            .iter()
            .map(|&v| v.min(u16::MAX as u32))
            .collect()
    } else {
        Vec::new()
    };
    let saturated;
    let depth16 = if over {
        saturated =
            DepthMm::from_mm(depth.width(), depth.height(), low).unwrap_or_else(|| depth.clone());
        &saturated
    } else {
        depth
    };
    // Saturated values always fit, so this cannot fail.
    let bytes = imageio::depth_to_png_bytes(depth16, "depth").unwrap_or_default();
    files.push((depth_path(dir, index), bytes));
    if over {
        let packed: Vec<u8> = depth
            .as_slice()
            .iter()
            .flat_map(|&v| [(v >> 16) as u8, (v >> 8) as u8, v as u8])
            .collect();
        if let Some(img) = RgbImage::new(depth.width(), depth.height(), packed) {
            files.push((depth24_path(dir, index), imageio::rgb_to_png_bytes(&img)));
        }
    }
    files
}

/// Creates the folder layout and writes `calibration.toml`. Refuses a non-empty folder.
pub fn create_folder(dir: &Path, calib: &Calibration) -> Result<(), SourceError> {
    let rec_err = |message: String| SourceError::Recording {
        path: dir.display().to_string(),
        message,
    };
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(rec_err(
                "folder exists and is not empty; choose a new --out or delete it".into(),
            ));
        }
    }
    for sub in ["color", "depth"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| rec_err(format!("cannot create `{sub}/`: {e}")))?;
    }
    write_file(
        &dir.join("calibration.toml"),
        calib.to_toml_string().as_bytes(),
    )
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SourceError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|e| SourceError::Recording {
                path: parent.display().to_string(),
                message: format!("cannot create: {e}"),
            })?;
        }
    }
    std::fs::write(path, bytes).map_err(|e| SourceError::Recording {
        path: path.display().to_string(),
        message: format!("cannot write: {e}"),
    })
}

/// Writes `recording.toml` atomically.
pub fn write_info(dir: &Path, info: &RecordingInfo) -> Result<(), SourceError> {
    let path = dir.join("recording.toml");
    let toml = toml::to_string(info).map_err(|e| SourceError::Recording {
        path: path.display().to_string(),
        message: format!("cannot serialise: {e}"),
    })?;
    crate::fsutil::write_atomic(&path, toml.as_bytes()).map_err(|e| SourceError::Recording {
        path: path.display().to_string(),
        message: format!("cannot write: {e}"),
    })
}

/// Writes a whole `timestamps.csv` and then `recording.toml`, both atomically (the recorder
/// itself appends rows as frames complete; this is for folders made in one go).
pub fn finish_folder(
    dir: &Path,
    rows: &[TimestampRow],
    info: &RecordingInfo,
) -> Result<(), SourceError> {
    let mut csv = String::with_capacity(64 * (rows.len() + 1));
    csv.push_str(TIMESTAMPS_HEADER);
    csv.push('\n');
    for row in rows {
        csv.push_str(&row.to_csv_line());
        csv.push('\n');
    }
    let atomic = |path: PathBuf, bytes: &[u8]| {
        crate::fsutil::write_atomic(&path, bytes).map_err(|e| SourceError::Recording {
            path: path.display().to_string(),
            message: format!("cannot write: {e}"),
        })
    };
    atomic(dir.join("timestamps.csv"), csv.as_bytes())?;
    write_info(dir, info)
}

/// When one row of a recording plays.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Timing {
    /// After the first row's capture.
    offset: Duration,
    /// From capture to arrival.
    latency: Duration,
}

/// The rows' play times: each gap between captures is clamped to 0..=[`MAX_REPLAY_WAIT`], and so
/// is each latency, and a frame is handed over at most [`MAX_REPLAY_WAIT`] after the one before
/// it; one warning per kind of problem (first line, how many rows).
fn schedule(rows: &[TimestampRow], ts_path: &str) -> (Vec<Timing>, Vec<String>) {
    let max_ns = MAX_REPLAY_WAIT.as_nanos() as i128;
    let mut out = Vec::with_capacity(rows.len());
    let mut offset = Duration::ZERO;
    // (first line, count) of gaps that went backwards, jumped too far, absurd latencies.
    let mut backwards: Option<(usize, u64)> = None;
    let mut jumps: Option<(usize, u64)> = None;
    let mut latencies: Option<(usize, u64)> = None;
    let note = |seen: &mut Option<(usize, u64)>, line: usize| match seen {
        Some((_, n)) => *n += 1,
        None => *seen = Some((line, 1)),
    };
    for (i, row) in rows.iter().enumerate() {
        // The header is line 1, so row i is line i + 2.
        let line = i + 2;
        if i > 0 {
            let gap = row.capture_ns as i128 - rows[i - 1].capture_ns as i128;
            let clamped = if gap < 0 {
                note(&mut backwards, line);
                0
            } else if gap > max_ns {
                note(&mut jumps, line);
                max_ns
            } else {
                gap
            };
            offset += Duration::from_nanos(clamped as u64);
        }
        let latency = row.arrival_ns as i128 - row.capture_ns as i128;
        if latency > max_ns {
            note(&mut latencies, line);
        }
        let mut latency = Duration::from_nanos(latency.clamp(0, max_ns) as u64);
        // A frame arrives (and replay hands it over) at offset + latency: keep that at most
        // MAX_REPLAY_WAIT after the previous frame's, so no single wait is longer.
        if let Some(prev) = out.last() {
            let prev: &Timing = prev;
            let limit = (prev.offset + prev.latency + MAX_REPLAY_WAIT).saturating_sub(offset);
            latency = latency.min(limit);
        }
        out.push(Timing { offset, latency });
    }
    let max_s = MAX_REPLAY_WAIT.as_secs();
    let mut warnings = Vec::new();
    if let Some((line, n)) = backwards {
        warnings.push(format!(
            "{ts_path}: line {line}: capture_ns goes backwards ({n} rows); those frames play with no wait"
        ));
    }
    if let Some((line, n)) = jumps {
        warnings.push(format!(
            "{ts_path}: line {line}: capture_ns jumps by more than {max_s} s ({n} rows); real-time replay waits at most {max_s} s"
        ));
    }
    if let Some((line, n)) = latencies {
        warnings.push(format!(
            "{ts_path}: line {line}: arrival_ns is more than {max_s} s after capture_ns ({n} rows); clamped to {max_s} s"
        ));
    }
    (out, warnings)
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    fn row(index: u64, capture_ns: i64, arrival_ns: i64) -> TimestampRow {
        TimestampRow {
            index,
            color_frame_number: index,
            depth_frame_number: index,
            device_timestamp_ms: None,
            capture_ns,
            arrival_ns,
        }
    }

    #[test]
    fn no_hand_over_is_further_than_the_bound_from_the_last() {
        let rows = [
            row(0, 0, 1_000_000),
            row(1, i64::MAX - 5, i64::MAX),
            row(2, i64::MIN, i64::MAX),
            row(3, 33_000_000, i64::MAX),
            row(4, 66_000_000, 67_000_000),
        ];
        let (timing, warnings) = schedule(&rows, "t.csv");
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("line 4") && warnings[0].contains("backwards"));
        assert!(warnings[1].contains("line 3") && warnings[1].contains("10 s"));
        assert!(warnings[2].contains("line 4") && warnings[2].contains("arrival_ns"));
        let mut previous = Duration::ZERO;
        for t in &timing {
            let hand_over = t.offset + t.latency;
            assert!(hand_over <= previous + MAX_REPLAY_WAIT, "{timing:?}");
            previous = previous.max(hand_over);
        }
        assert_eq!(timing[1].offset, MAX_REPLAY_WAIT);
        assert_eq!(timing[2].offset, MAX_REPLAY_WAIT);
    }
}

/// Plays a PNG-folder recording.
pub struct PngFolderSource {
    dir: PathBuf,
    options: ReplayOptions,
    calib: Calibration,
    info: RecordingInfo,
    rows: Vec<TimestampRow>,
    /// Per row: when it plays, after the first row's capture, and its capture-to-arrival
    /// latency; both made monotonic and bounded from the rows' times at open.
    schedule: Vec<Timing>,
    /// What was wrong with the folder but did not stop it playing (cut, clamped times).
    warnings: Vec<String>,
    next: usize,
    sequence: u64,
    /// Host time of the first frame's capture in the current pass, for real-time pacing.
    pass_start: Option<Instant>,
    stats: SourceStats,
    /// [`DepthNeed::None`]: depth images are not read, and frames carry none.
    depth: DepthNeed,
    /// What registers the recording's depth (its calibration's) when it was recorded raw.
    registration: Arc<DepthRegistration>,
    /// In real time a frame is decoded just before it is due, not beside the loop's work.
    late_start: LateStart,
}

impl PngFolderSource {
    /// [`DepthNeed::None`]: leave the depth images unread (a consumer that does not use
    /// depth); frames then carry [`Depth::None`]. Otherwise frames carry depth as recorded.
    pub fn with_depth(mut self, need: DepthNeed) -> Self {
        self.depth = need;
        self
    }

    pub fn open(options: ReplayOptions) -> Result<Self, SourceError> {
        let dir = options.path.clone();
        if dir
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("bag"))
        {
            return Err(SourceError::FeatureMissing {
                kind: "replay of a .bag",
                feature: "realsense",
            });
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| SourceError::Recording {
                path: p.display().to_string(),
                message: format!("cannot read ({e}); a recording folder needs calibration.toml and timestamps.csv beside color/ and depth/"),
            })
        };
        let calib_path = dir.join("calibration.toml");
        let calib = Calibration::from_toml_str(
            &read("calibration.toml")?,
            &calib_path.display().to_string(),
        )?;
        let info_path = dir.join("recording.toml");
        let info = if info_path.exists() {
            let text = read("recording.toml")?;
            toml::from_str::<RecordingInfo>(&text).map_err(|e| SourceError::Recording {
                path: info_path.display().to_string(),
                message: e.to_string().replace('\n', " "),
            })?
        } else {
            RecordingInfo {
                format: FORMAT.into(),
                frames: 0,
                depth_registered: false,
                has_depth: true,
                source: "unknown".into(),
                dropped_while_recording: 0,
                complete: true,
            }
        };
        let ts_path = dir.join("timestamps.csv").display().to_string();
        let text = read("timestamps.csv")?;
        let mut rows = Vec::new();
        let mut warnings = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        // A cut recording's last line may be unfinished: the line the recorder was appending.
        let unfinished_tail = !info.complete && !text.ends_with('\n');
        for (n, line) in lines.iter().enumerate() {
            if n == 0 && line.starts_with("index") {
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let row = match TimestampRow::parse(line) {
                Ok(row) => row,
                Err(_) if unfinished_tail && n + 1 == lines.len() => {
                    warnings.push(format!(
                        "{ts_path}: line {}: unfinished (the recording was cut while writing it); ignored",
                        n + 1
                    ));
                    break;
                }
                Err(m) => {
                    return Err(SourceError::Recording {
                        path: ts_path.clone(),
                        message: format!("line {}: {m}", n + 1),
                    })
                }
            };
            if row.index != rows.len() as u64 {
                return Err(SourceError::Recording {
                    path: ts_path,
                    message: format!(
                        "line {}: index {} out of order (expected {})",
                        n + 1,
                        row.index,
                        rows.len()
                    ),
                });
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(SourceError::Recording {
                path: ts_path,
                message: if info.complete {
                    "holds no frames".into()
                } else {
                    "holds no frames: the recording was cut before its first frame was complete"
                        .into()
                },
            });
        }
        if info_path.exists() && info.complete && info.frames != rows.len() as u64 {
            return Err(SourceError::Recording {
                path: info_path.display().to_string(),
                message: format!(
                    "says {} frames but timestamps.csv lists {}",
                    info.frames,
                    rows.len()
                ),
            });
        }
        let (schedule, timing_warnings) = schedule(&rows, &ts_path);
        warnings.extend(timing_warnings);
        let mut source = Self {
            dir,
            options,
            registration: Arc::new(DepthRegistration::new(calib.clone())),
            calib,
            info,
            rows,
            schedule,
            warnings,
            next: 0,
            sequence: 0,
            pass_start: None,
            stats: SourceStats::default(),
            depth: DepthNeed::Raw,
            late_start: LateStart::default(),
        };
        if !source.info.complete {
            source.drop_undecodable_tail()?;
        }
        for warning in &source.warnings {
            tracing::warn!("{warning}");
        }
        Ok(source)
    }

    /// A cut recording (power lost after a row was appended but before its PNGs reached the
    /// disk) may end in frames that do not decode: plays up to the last one that does, and
    /// says it was cut.
    fn drop_undecodable_tail(&mut self) -> Result<(), SourceError> {
        let listed = self.rows.len();
        while let Some(last) = self.rows.last() {
            if self.read_images(last.index).is_ok() {
                break;
            }
            self.rows.pop();
            self.schedule.pop();
        }
        let ts_path = self.dir.join("timestamps.csv");
        if self.rows.is_empty() {
            return Err(SourceError::Recording {
                path: ts_path.display().to_string(),
                message: format!(
                    "the recording was cut and none of its {listed} listed frames decodes"
                ),
            });
        }
        let dropped = listed - self.rows.len();
        self.warnings.insert(
            0,
            format!(
                "{} was cut (recording.toml says complete = false: the recorder was killed or lost power); playing its {} complete frames{}",
                self.dir.display(),
                self.rows.len(),
                if dropped > 0 {
                    format!(", {dropped} unreadable frames at the end left out")
                } else {
                    String::new()
                }
            ),
        );
        Ok(())
    }

    pub fn info(&self) -> &RecordingInfo {
        &self.info
    }
    pub fn rows(&self) -> &[TimestampRow] {
        &self.rows
    }
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Reads frame `index`'s images, checking their sizes against the calibration.
    pub fn read_images(&self, index: u64) -> Result<(RgbImage, DepthMm), SourceError> {
        let color = self.read_color(index)?;
        let depth = self.read_depth(index)?;
        Ok((color, depth))
    }

    /// Reads frame `index`'s colour image, checking its size against the calibration.
    fn read_color(&self, index: u64) -> Result<RgbImage, SourceError> {
        let image_err = |source| SourceError::Image {
            frame: index,
            source,
        };
        let color = imageio::read_rgb_png(&color_path(&self.dir, index)).map_err(image_err)?;
        let c = &self.calib.color;
        if (color.width, color.height) != (c.width, c.height) {
            return Err(self.size_mismatch(
                color_path(&self.dir, index),
                index,
                (color.width, color.height),
                c,
            ));
        }
        Ok(color)
    }

    fn size_mismatch(
        &self,
        path: PathBuf,
        index: u64,
        (w, h): (usize, usize),
        want: &Intrinsics,
    ) -> SourceError {
        SourceError::Recording {
            path: path.display().to_string(),
            message: format!(
                "frame {index}: image is {w}x{h} but calibration.toml says {}x{}",
                want.width, want.height
            ),
        }
    }

    /// Reads frame `index`'s depth image, checking its size against the calibration.
    fn read_depth(&self, index: u64) -> Result<DepthMm, SourceError> {
        let image_err = |source| SourceError::Image {
            frame: index,
            source,
        };
        let p24 = depth24_path(&self.dir, index);
        let depth = if p24.exists() {
            let packed = imageio::read_rgb_png(&p24).map_err(image_err)?;
            let mm = packed
                .data
                .chunks_exact(3)
                .map(|p| (p[0] as u32) << 16 | (p[1] as u32) << 8 | p[2] as u32)
                .collect();
            DepthMm::from_mm(packed.width, packed.height, mm)
                .unwrap_or_else(|| DepthMm::zeros(0, 0))
        } else {
            imageio::read_depth_png(&depth_path(&self.dir, index)).map_err(image_err)?
        };
        let want = if self.info.depth_registered {
            &self.calib.color
        } else {
            &self.calib.depth
        };
        if (depth.width(), depth.height()) != (want.width, want.height) {
            return Err(self.size_mismatch(
                depth_path(&self.dir, index),
                index,
                (depth.width(), depth.height()),
                want,
            ));
        }
        Ok(depth)
    }
}

impl Source for PngFolderSource {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        if self.next >= self.rows.len() {
            if !self.options.looping {
                return Ok(None);
            }
            self.next = 0;
            // The next pass starts one frame period after the last frame of this one.
            let last = self.schedule.last().map(|t| t.offset).unwrap_or_default();
            let period = last / (self.schedule.len().clamp(2, u32::MAX as usize) - 1) as u32;
            self.pass_start = self.pass_start.map(|s| s + last + period);
        }
        if let (Pacing::RealTime, Some(start)) = (self.options.pacing, self.pass_start) {
            // Like a live camera, a reader slower than the recording misses frames instead of
            // falling ever further behind: skip rows whose successor is already due.
            let now = Instant::now();
            while let Some(following) = self.schedule.get(self.next + 1) {
                let due = start + following.offset;
                if due > now {
                    break;
                }
                self.next += 1;
                self.stats.dropped_by_device += 1;
            }
        }
        let row = self.rows[self.next].clone();
        let Timing { offset, latency } = self.schedule[self.next];
        if let (Pacing::RealTime, Some(start)) = (self.options.pacing, self.pass_start) {
            self.late_start.wait_to_make(start + offset + latency);
        }
        let decoding = Instant::now();
        // A colour-only recording's depth images are all zeros: not read either.
        let (color, depth) = if self.depth == DepthNeed::None || !self.info.has_depth {
            (self.read_color(row.index)?, Depth::None)
        } else {
            let (color, depth) = self.read_images(row.index)?;
            let depth = Arc::new(depth);
            let depth = if self.info.depth_registered {
                Depth::Registered(depth)
            } else {
                Depth::Raw {
                    depth,
                    registration: self.registration.clone(),
                }
            };
            (color, depth)
        };
        self.late_start.made(decoding.elapsed());
        let (capture, arrival) = match self.options.pacing {
            Pacing::RealTime => {
                let start = *self.pass_start.get_or_insert_with(Instant::now);
                let due = start + offset;
                let now = Instant::now();
                if due + latency > now {
                    std::thread::sleep(due + latency - now);
                }
                (due, Instant::now())
            }
            Pacing::AsFastAsPossible => {
                let now = Instant::now();
                (now.checked_sub(latency).unwrap_or(now), now)
            }
        };
        self.next += 1;
        let sequence = self.sequence;
        self.sequence += 1;
        self.stats.delivered += 1;
        Ok(Some(RgbdFrame {
            color: Arc::new(color),
            depth,
            color_intrinsics: self.calib.color.clone(),
            color_frame_number: row.color_frame_number,
            depth_frame_number: row.depth_frame_number,
            sequence,
            device_timestamp_ms: row.device_timestamp_ms,
            capture,
            arrival,
            ready: arrival,
        }))
    }
    fn calibration(&self) -> &Calibration {
        &self.calib
    }
    fn depth_registration(&self) -> Arc<DepthRegistration> {
        self.registration.clone()
    }
    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
    fn describe(&self) -> String {
        format!(
            "recording {} ({} frames of {})",
            self.dir.display(),
            self.rows.len(),
            self.info.source
        )
    }
    /// That the folder was cut, timestamps that went backwards or jumped further than
    /// [`MAX_REPLAY_WAIT`].
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
    fn is_cut(&self) -> bool {
        !self.info.complete
    }
}

/// When `record` stops.
#[derive(Clone, Copy, Debug)]
pub enum RecordLimit {
    Frames(u64),
    Duration(Duration),
}

#[derive(Clone, Copy, Debug)]
pub struct RecorderOptions {
    /// Encoder threads.
    pub encoders: usize,
    /// Frames that may wait for an encoder; beyond this a live frame is dropped and counted.
    pub queue: usize,
    /// Wait for an encoder instead of dropping: right for sources that are not live.
    pub block_when_full: bool,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self {
            encoders: cores.clamp(1, 4),
            queue: 16,
            block_when_full: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RecordSummary {
    pub out: String,
    pub frames: u64,
    pub dropped_while_recording: u64,
    pub depth_registered: bool,
    pub seconds: f64,
    pub source: String,
    pub source_stats: SourceStats,
    /// Stopped by the caller's stop flag (a signal) before the frame or time limit.
    pub stopped_early: bool,
}

/// Records `source` into a new PNG folder at `dir`. Frames are encoded on worker threads behind
/// a bounded queue, so a slow disk or CPU costs counted drops, never a stalled camera.
pub fn record(
    source: &mut dyn Source,
    dir: &Path,
    limit: RecordLimit,
    options: RecorderOptions,
) -> Result<RecordSummary, SourceError> {
    record_until(source, dir, limit, options, &AtomicBool::new(false))
}

/// `timestamps.csv` as the recorder grows it: rows are appended in frame order as frames
/// complete, and the file is synced about once a second and when it is closed.
struct IndexWriter {
    path: PathBuf,
    file: std::fs::File,
    /// Rows of completed frames waiting for an earlier frame to complete.
    waiting: std::collections::BTreeMap<u64, TimestampRow>,
    written: u64,
    last_sync: Instant,
}

impl IndexWriter {
    fn create(dir: &Path) -> Result<Self, SourceError> {
        let path = dir.join("timestamps.csv");
        let mut file = std::fs::File::create(&path).map_err(|e| Self::error(&path, e))?;
        file.write_all(format!("{TIMESTAMPS_HEADER}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Self::error(&path, e))?;
        Ok(Self {
            path,
            file,
            waiting: Default::default(),
            written: 0,
            last_sync: Instant::now(),
        })
    }

    fn error(path: &Path, e: std::io::Error) -> SourceError {
        SourceError::Recording {
            path: path.display().to_string(),
            message: format!("cannot write: {e}"),
        }
    }

    /// Frame `row.index` has all its files written.
    fn completed(&mut self, row: TimestampRow) -> Result<(), SourceError> {
        self.waiting.insert(row.index, row);
        while let Some(row) = self.waiting.remove(&self.written) {
            // One write per line, so a kill leaves whole lines (a power cut may leave a part).
            let line = format!("{}\n", row.to_csv_line());
            self.file
                .write_all(line.as_bytes())
                .map_err(|e| Self::error(&self.path, e))?;
            self.written += 1;
        }
        if self.last_sync.elapsed() >= INDEX_SYNC_INTERVAL {
            self.file
                .sync_data()
                .map_err(|e| Self::error(&self.path, e))?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Syncs and returns how many rows were written.
    fn close(self) -> Result<u64, SourceError> {
        self.file
            .sync_data()
            .map_err(|e| Self::error(&self.path, e))?;
        Ok(self.written)
    }
}

/// Like [`record`], and stops early, keeping and finishing everything recorded so far, once
/// `stop` is raised (by a SIGINT/SIGTERM handler, say). [`RecordSummary::stopped_early`] then
/// says so.
pub fn record_until(
    source: &mut dyn Source,
    dir: &Path,
    limit: RecordLimit,
    options: RecorderOptions,
    stop: &AtomicBool,
) -> Result<RecordSummary, SourceError> {
    create_folder(dir, source.calibration())?;
    let mut info = RecordingInfo {
        format: FORMAT.into(),
        frames: 0,
        depth_registered: false,
        has_depth: true,
        source: source.describe(),
        dropped_while_recording: 0,
        complete: false,
    };
    write_info(dir, &info)?;
    let mut index = IndexWriter::create(dir)?;
    let (tx, rx) = crossbeam_channel::bounded::<(TimestampRow, RgbdFrame)>(options.queue.max(1));
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<TimestampRow>();
    let spawn_failed = |what: &str, e: std::io::Error| SourceError::Recording {
        path: dir.display().to_string(),
        message: format!("cannot start the {what} thread: {e}"),
    };
    let workers = (0..options.encoders.max(1))
        .map(|_| {
            let rx = rx.clone();
            let done_tx = done_tx.clone();
            let dir = dir.to_path_buf();
            std::thread::Builder::new()
                .name("record-encode".into())
                .spawn(move || -> Result<(), SourceError> {
                    for (row, frame) in rx {
                        // A colour-only camera's frames are stored with all-zero depth.
                        let zeros;
                        let depth = match frame.depth.image() {
                            Some(depth) => &**depth,
                            None => {
                                zeros = DepthMm::zeros(frame.color.width, frame.color.height);
                                &zeros
                            }
                        };
                        for (path, bytes) in encode_frame(&dir, row.index, &frame.color, depth) {
                            write_file(&path, &bytes)?;
                        }
                        // The index thread is gone only after an error of its own, reported there.
                        let _ = done_tx.send(row);
                    }
                    Ok(())
                })
        })
        .collect::<Result<Vec<_>, _>>()
        // Encoders already started end when `tx` goes away with this return.
        .map_err(|e| spawn_failed("encoder", e))?;
    drop(rx);
    drop(done_tx);
    let indexer = std::thread::Builder::new()
        .name("record-index".into())
        .spawn(move || -> Result<u64, SourceError> {
            for row in done_rx {
                index.completed(row)?;
            }
            index.close()
        })
        .map_err(|e| spawn_failed("index", e))?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut dropped = 0u64;
    let mut origin: Option<Instant> = None;
    let mut failure: Option<SourceError> = None;
    let mut source_failure: Option<SourceError> = None;
    let mut stopped_early = false;
    loop {
        let done = match limit {
            RecordLimit::Frames(n) => sent >= n,
            RecordLimit::Duration(d) => started.elapsed() >= d,
        };
        if done {
            break;
        }
        if stop.load(Ordering::SeqCst) {
            stopped_early = true;
            break;
        }
        let frame = match source.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                source_failure = Some(e);
                break;
            }
        };
        let origin = *origin.get_or_insert(frame.capture);
        // A colour-only camera's all-zero depth is stored as registered: colour-sized.
        let (depth_registered, has_depth) = match frame.depth {
            Depth::None => (true, false),
            Depth::Raw { .. } => (false, true),
            Depth::Registered(_) => (true, true),
        };
        if sent == 0 && (depth_registered, has_depth) != (false, true) {
            // A cut recording is read with these, so they are on disk before any row is.
            info.depth_registered = depth_registered;
            info.has_depth = has_depth;
            write_info(dir, &info)?;
        }
        let row = row_for(&frame, sent, origin);
        let result = if options.block_when_full {
            tx.send((row, frame)).map_err(|_| ())
        } else {
            match tx.try_send((row, frame)) {
                Ok(()) => Ok(()),
                Err(crossbeam_channel::TrySendError::Full(_)) => {
                    dropped += 1;
                    tracing::warn!(dropped, "recorder: encoders fell behind, frame dropped");
                    continue;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(()),
            }
        };
        if result.is_err() {
            break;
        }
        sent += 1;
    }
    // Drain: the encoders finish every queued frame, then the index takes their rows.
    drop(tx);
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => {
                failure = failure.or(Some(SourceError::Device(
                    "an encoder thread panicked".into(),
                )))
            }
        }
    }
    let written = match indexer.join() {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return Err(failure.unwrap_or(e)),
        Err(_) => {
            return Err(failure.unwrap_or(SourceError::Device("the index thread panicked".into())))
        }
    };
    // A folder whose frames could not all be written stays marked cut: it plays up to the last
    // complete frame.
    if let Some(e) = failure {
        return Err(e);
    }
    info.frames = written;
    info.dropped_while_recording = dropped;
    info.complete = true;
    // Frames recorded before the source failed stay a playable, finished recording.
    write_info(dir, &info)?;
    if let Some(e) = source_failure {
        return Err(e);
    }
    Ok(RecordSummary {
        out: dir.display().to_string(),
        frames: info.frames,
        dropped_while_recording: dropped,
        depth_registered: info.depth_registered,
        seconds: started.elapsed().as_secs_f64(),
        source: info.source,
        source_stats: source.stats(),
        stopped_early,
    })
}
