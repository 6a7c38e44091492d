//! V4L2 colour camera, the parts that need no device: YUYV and MJPEG frames to RGB8 against
//! numpy/Pillow, the UVC default Huffman tables, and buffer timestamps on the host clock.

use std::time::{Duration, Instant};

use crate::support;
use spatialbot_edge::camera::v4l2::mjpeg::{rgb_from_mjpeg, with_default_huffman_tables};
use spatialbot_edge::camera::v4l2::{
    nominal_calibration, Arrival, BufferInfo, FrameAssembler, NegotiatedFormat, PixelFormat,
    BUF_FLAG_TIMESTAMP_COPY, BUF_FLAG_TIMESTAMP_MONOTONIC,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = support::repo_root().join("tests/data/v4l2").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assembler(
    pixel_format: PixelFormat,
    width: usize,
    height: usize,
    stride: usize,
    epoch: Instant,
) -> FrameAssembler {
    FrameAssembler::new(
        NegotiatedFormat {
            pixel_format,
            width,
            height,
            stride,
        },
        nominal_calibration(width, height).color,
        epoch,
    )
}

fn max_abs_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// Random YUYV frames with padded rows, converted by numpy from the BT.601 limited-range
/// definition in float64; ours is fixed point, so ±1.
#[test]
fn yuyv_frames_match_numpy_bt601() {
    let Some(py) = support::reference_python() else {
        return;
    };
    let (width, height, stride) = (64usize, 12usize, 160usize);
    let code = r#"
import sys
import numpy as np
w, h, stride = (int(a) for a in sys.argv[1:4])
rng = np.random.default_rng(2026)
raw = rng.integers(0, 256, size=(h, stride), dtype=np.uint8)
pairs = raw[:, : w * 2].reshape(h, w // 2, 4).astype(np.float64)
y = np.stack([pairs[..., 0], pairs[..., 2]], -1).reshape(h, w)
cb = np.repeat(pairs[..., 1], 2, axis=1)
cr = np.repeat(pairs[..., 3], 2, axis=1)
yy = (y - 16.0) * 255.0 / 219.0
pb = (cb - 128.0) * 255.0 / 224.0
pr = (cr - 128.0) * 255.0 / 224.0
rgb = np.stack([yy + 1.402 * pr, yy - 0.344136 * pb - 0.714136 * pr, yy + 1.772 * pb], -1)
rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
sys.stdout.buffer.write(raw.tobytes() + rgb.tobytes())
"#;
    let out = support::run_python(
        &py,
        code,
        &[&width.to_string(), &height.to_string(), &stride.to_string()],
    );
    let (yuyv, want) = out.split_at(stride * height);
    let epoch = Instant::now();
    let mut a = assembler(PixelFormat::Yuyv, width, height, stride, epoch);
    let info = BufferInfo {
        sequence: 0,
        flags: BUF_FLAG_TIMESTAMP_MONOTONIC,
        timestamp_us: 0,
        bytes_used: yuyv.len(),
    };
    let frame = a
        .assemble(
            yuyv,
            &info,
            Arrival {
                instant: epoch,
                monotonic_us: 0,
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!((frame.color.width, frame.color.height), (width, height));
    assert!(max_abs_diff(&frame.color.data, want) <= 1);
}

/// Pillow (libjpeg) encoded and decoded these. The decoders differ in IDCT rounding and in how
/// they interpolate subsampled chroma on these noisy, high-contrast images (measured: up to 7
/// levels on single pixels of the 4:2:2 fixture), so this bounds the worst pixel at 8; the
/// frame without Huffman tables must decode exactly like the one with them.
#[test]
fn mjpeg_frames_match_pillow() {
    for (name, width, height, tolerance) in [("yuv422", 32, 24, 8), ("yuv420", 48, 32, 8)] {
        let want = fixture(&format!("{name}.rgb"));
        let with_tables = rgb_from_mjpeg(width, height, &fixture(&format!("{name}.jpg"))).unwrap();
        let without =
            rgb_from_mjpeg(width, height, &fixture(&format!("{name}_nodht.jpg"))).unwrap();
        assert_eq!(
            with_tables, without,
            "{name}: the default tables must be Pillow's"
        );
        let diff = max_abs_diff(&with_tables.data, &want);
        assert!(diff <= tolerance, "{name}: max difference to Pillow {diff}");
    }
}

#[test]
fn default_huffman_tables_are_inserted_only_when_missing() {
    let full = fixture("yuv422.jpg");
    assert!(matches!(
        with_default_huffman_tables(&full).unwrap(),
        std::borrow::Cow::Borrowed(_)
    ));
    let stripped = fixture("yuv422_nodht.jpg");
    let fixed = with_default_huffman_tables(&stripped).unwrap();
    assert!(fixed.len() > stripped.len());
    assert!(fixed.windows(2).any(|w| w == [0xFF, 0xC4]));
    assert!(!stripped.windows(2).any(|w| w == [0xFF, 0xC4]));
}

#[test]
fn mjpeg_of_the_wrong_size_or_truncated_is_an_error_not_a_panic() {
    let jpeg = fixture("yuv420.jpg");
    let err = rgb_from_mjpeg(640, 480, &jpeg).unwrap_err().to_string();
    assert!(err.contains("48x32") && err.contains("640x480"), "{err}");
    for cut in [3, 20, 200, jpeg.len() / 2] {
        let _ = rgb_from_mjpeg(48, 32, &jpeg[..cut]);
    }
}

fn gray_frame() -> Vec<u8> {
    [128u8, 128].repeat(8 * 2)
}

/// CLOCK_MONOTONIC buffer stamps are exact on the host clock: capture = arrival − age.
#[test]
fn monotonic_timestamps_map_exactly() {
    let epoch = Instant::now();
    let mut a = assembler(PixelFormat::Yuyv, 8, 2, 16, epoch);
    let bytes = gray_frame();
    let arrival_instant = epoch + Duration::from_millis(500);
    for (seq, age_us) in [(0u32, 12_345i64), (1, 0), (2, 40_000)] {
        let arrival_monotonic_us = 1_000_000_000 + i64::from(seq) * 33_000;
        let info = BufferInfo {
            sequence: seq,
            flags: BUF_FLAG_TIMESTAMP_MONOTONIC,
            timestamp_us: arrival_monotonic_us - age_us,
            bytes_used: bytes.len(),
        };
        let frame = a
            .assemble(
                &bytes,
                &info,
                Arrival {
                    instant: arrival_instant,
                    monotonic_us: arrival_monotonic_us,
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            arrival_instant - frame.capture,
            Duration::from_micros(age_us as u64)
        );
        assert_eq!(frame.arrival, arrival_instant);
        assert_eq!(
            frame.device_timestamp_ms,
            Some(info.timestamp_us as f64 / 1000.0)
        );
    }
    // A stamp from the future or far in the past is not believed: capture falls back to arrival.
    for timestamp_us in [2_000_000_000i64, 1] {
        let info = BufferInfo {
            sequence: 3,
            flags: BUF_FLAG_TIMESTAMP_MONOTONIC,
            timestamp_us,
            bytes_used: bytes.len(),
        };
        let (capture, _) = a.capture_time(
            &info,
            Arrival {
                instant: arrival_instant,
                monotonic_us: 1_000_000_000,
            },
        );
        assert_eq!(capture, arrival_instant);
    }
}

/// Copied or unknown stamps are another clock: the offset to the host is estimated as the
/// smallest seen (the fastest frame), so jittered arrivals give a steady capture time, never
/// after the arrival.
#[test]
fn non_monotonic_timestamps_map_through_the_offset_estimate() {
    for flags in [BUF_FLAG_TIMESTAMP_COPY, 0] {
        let epoch = Instant::now();
        let mut a = assembler(PixelFormat::Yuyv, 8, 2, 16, epoch);
        let bytes = gray_frame();
        let device_base_us = 7_000_000_000i64;
        for seq in 0..40u32 {
            let device_us = device_base_us + i64::from(seq) * 33_333;
            let latency_us = 3_000 + i64::from((seq * 7) % 5) * 1_000;
            let host_us = 100_000 + i64::from(seq) * 33_333 + latency_us;
            let arrival = epoch + Duration::from_micros(host_us as u64);
            let info = BufferInfo {
                sequence: seq,
                flags,
                timestamp_us: device_us,
                bytes_used: bytes.len(),
            };
            let frame = a
                .assemble(
                    &bytes,
                    &info,
                    Arrival {
                        instant: arrival,
                        monotonic_us: 0,
                    },
                )
                .unwrap()
                .unwrap();
            assert!(frame.capture <= frame.arrival);
            if seq >= 5 {
                let want = epoch
                    + Duration::from_micros((100_000 + i64::from(seq) * 33_333 + 3_000) as u64);
                let err = if frame.capture > want {
                    frame.capture - want
                } else {
                    want - frame.capture
                };
                assert!(
                    err < Duration::from_micros(2),
                    "flags {flags:#x} frame {seq}: off by {err:?}"
                );
            }
        }
    }
}

#[test]
fn colour_only_frames_carry_no_depth() {
    let epoch = Instant::now();
    let mut a = assembler(PixelFormat::Mjpeg, 32, 24, 0, epoch);
    let jpeg = fixture("yuv422_nodht.jpg");
    let info = BufferInfo {
        sequence: 7,
        flags: BUF_FLAG_TIMESTAMP_MONOTONIC,
        timestamp_us: 0,
        bytes_used: jpeg.len(),
    };
    // The mapped buffer is larger than the frame; bytes_used bounds it.
    let mut buffer = jpeg.clone();
    buffer.resize(jpeg.len() + 1000, 0xAB);
    let frame = a
        .assemble(
            &buffer,
            &info,
            Arrival {
                instant: epoch,
                monotonic_us: 0,
            },
        )
        .unwrap()
        .unwrap();
    assert!(frame.depth.is_none(), "a colour-only camera says so");
    assert_eq!(frame.depth_intrinsics(), None);
    assert_eq!(frame.color_frame_number, 7);
    assert_eq!(frame.device_timestamp_ms, None);
}

/// With the feature on, a node that does not exist is a clear error, not a panic.
#[cfg(feature = "v4l2")]
#[test]
fn missing_device_is_a_clear_error() {
    let spec: spatialbot_edge::camera::CameraSpec =
        "v4l2:/dev/video-does-not-exist".parse().unwrap();
    let err = match spatialbot_edge::camera::open(&spec, &Default::default()) {
        Ok(_) => panic!("opened a device that does not exist"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("/dev/video-does-not-exist") && err.contains("devices"),
        "{err}"
    );
}

#[cfg(not(feature = "v4l2"))]
#[test]
fn without_the_feature_v4l2_names_it() {
    let spec: spatialbot_edge::camera::CameraSpec = "v4l2:/dev/video0".parse().unwrap();
    let err = match spatialbot_edge::camera::open(&spec, &Default::default()) {
        Ok(_) => panic!("opened v4l2 without the feature"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--features v4l2"), "{err}");
}
