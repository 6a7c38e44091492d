//! SpatialBot depth packing: golden vectors of the reference (§1.3), the exact inverse, the one
//! deliberate divergence (saturate instead of wrap), a differential test against the reference
//! numpy formula, and the `pack` command.

use std::process::Command;

use crate::support;
use spatialbot_edge::imageio;
use spatialbot_edge::rgbd::pack::{self, decode_pixel, encode_pixel};
use spatialbot_edge::rgbd::{DepthMm, Encoding, RgbImage};

/// (depth mm, what the released code outputs, what that decodes to) — reference §1.3.
const REFERENCE_VECTORS: &[(u32, [u8; 3], u32)] = &[
    (0, [0, 0, 0], 0),
    (1, [0, 0, 8], 1),
    (31, [0, 0, 248], 31),
    (32, [0, 8, 0], 32),
    (33, [0, 8, 8], 33),
    (1023, [0, 248, 248], 1023),
    (1024, [4, 0, 0], 1024),
    (1500, [4, 112, 224], 1500),
    (12345, [48, 8, 200], 12345),
    (40000, [156, 16, 0], 40000),
    (65535, [252, 248, 248], 65535),
    // int32 input: the reference wraps modulo 65536.
    (65536, [0, 0, 0], 0),
    (100000, [132, 168, 0], 34464),
    (131071, [252, 248, 248], 65535),
    (131072, [0, 0, 0], 0),
];

/// The released numpy code, including its silent modulo-256 cast.
fn reference_wrapping(d: u32) -> [u8; 3] {
    [
        ((d / 1024) * 4) as u8,
        ((d / 32) * 8) as u8,
        ((d % 32) * 8) as u8,
    ]
}

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn golden_vectors_in_range_match_the_reference() {
    for &(d, rgb, decoded) in REFERENCE_VECTORS {
        assert_eq!(reference_wrapping(d), rgb, "the table itself at {d}");
        if d <= 65535 {
            assert_eq!(encode_pixel(d, Encoding::SpatialBot), rgb, "encode {d}");
            assert_eq!(
                decode_pixel(rgb, Encoding::SpatialBot),
                decoded,
                "decode {d}"
            );
        }
    }
}

#[test]
fn beyond_65535_we_saturate_where_the_reference_wraps() {
    let deep: Vec<u32> = REFERENCE_VECTORS
        .iter()
        .map(|v| v.0)
        .filter(|&d| d > 65535)
        .collect();
    let depth = DepthMm::from_mm(deep.len(), 1, deep.clone()).unwrap();
    let (img, report) = pack::pack(&depth, Encoding::SpatialBot);
    assert_eq!(report.saturated_pixels, deep.len());
    assert_eq!(report.pixels, deep.len());
    for (&d, px) in deep.iter().zip(img.data.chunks_exact(3)) {
        assert_eq!(px, [252, 248, 248], "{d} saturates to 65535");
        let wrapped = REFERENCE_VECTORS.iter().find(|v| v.0 == d).unwrap();
        // 131071 wraps onto 65535, so there the two agree by coincidence; elsewhere they differ.
        assert_eq!(px == wrapped.1, d == 131071, "divergence at {d}");
    }
    let decoded = pack::unpack(&img, Encoding::SpatialBot);
    assert!(decoded.as_slice().iter().all(|&v| v == 65535));
}

#[test]
fn decode_inverts_encode_exhaustively() {
    let all: Vec<u32> = (0..=65535).collect();
    let depth = DepthMm::from_mm(256, 256, all.clone()).unwrap();
    let (img, report) = pack::pack(&depth, Encoding::SpatialBot);
    assert_eq!(report.saturated_pixels, 0);
    assert_eq!(pack::unpack(&img, Encoding::SpatialBot), depth);
    for (&d, px) in all.iter().zip(img.data.chunks_exact(3)) {
        assert_eq!(px, reference_wrapping(d));
    }

    let all: Vec<u32> = (0..=131071).collect();
    let depth = DepthMm::from_mm(512, 256, all).unwrap();
    let (img, report) = pack::pack(&depth, Encoding::Paper);
    assert_eq!(report.saturated_pixels, 0);
    assert_eq!(pack::unpack(&img, Encoding::Paper), depth);
    for (d, px) in depth.as_slice().iter().zip(img.data.chunks_exact(3)) {
        assert_eq!(
            px,
            [
                ((d / 1024) * 2) as u8,
                (((d / 32) % 32) * 8) as u8,
                ((d % 32) * 8) as u8
            ]
        );
    }
}

const NUMPY_PACK: &str = r#"
import sys, numpy as np
h, w, dtype = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
img = np.fromfile(sys.argv[1], dtype=dtype).reshape(h, w)
out = np.zeros((h, w, 3), np.uint8)
out[:,:,0] = (img // 1024) * 4
out[:,:,1] = (img // 32) * 8
out[:,:,2] = (img % 32) * 8
sys.stdout.buffer.write(out.tobytes())
"#;

#[test]
fn differential_against_reference_numpy() {
    let Some(py) = support::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SplitMix(0x5EED_0001);
    let (w, h) = (97, 61);
    let mut values: Vec<u32> = vec![
        0, 1, 31, 32, 33, 1023, 1024, 1025, 32767, 32768, 65534, 65535,
    ];
    while values.len() < w * h {
        values.push((rng.next() & 0xFFFF) as u32);
    }
    let raw: Vec<u8> = values
        .iter()
        .flat_map(|&v| (v as u16).to_le_bytes())
        .collect();
    let path = dir.path().join("depth.u16");
    std::fs::write(&path, raw).unwrap();
    let want = support::run_python(
        &py,
        NUMPY_PACK,
        &[
            path.to_str().unwrap(),
            &h.to_string(),
            &w.to_string(),
            "<u2",
        ],
    );
    let (img, report) = pack::pack(
        &DepthMm::from_mm(w, h, values).unwrap(),
        Encoding::SpatialBot,
    );
    assert_eq!(report.saturated_pixels, 0);
    assert_eq!(img.data, want, "uint16 input: packing differs from numpy");

    // int32 input beyond 65535: numpy wraps, we saturate; identical everywhere else.
    let deep: Vec<u32> = (0..w * h).map(|_| (rng.next() % 200_000) as u32).collect();
    let raw: Vec<u8> = deep
        .iter()
        .flat_map(|&v| (v as i32).to_le_bytes())
        .collect();
    let path = dir.path().join("depth.i32");
    std::fs::write(&path, raw).unwrap();
    let wrapped = support::run_python(
        &py,
        NUMPY_PACK,
        &[
            path.to_str().unwrap(),
            &h.to_string(),
            &w.to_string(),
            "<i4",
        ],
    );
    let (img, report) = pack::pack(
        &DepthMm::from_mm(w, h, deep.clone()).unwrap(),
        Encoding::SpatialBot,
    );
    assert_eq!(
        report.saturated_pixels,
        deep.iter().filter(|&&d| d > 65535).count()
    );
    for ((&d, ours), theirs) in deep
        .iter()
        .zip(img.data.chunks_exact(3))
        .zip(wrapped.chunks_exact(3))
    {
        assert_eq!(theirs, reference_wrapping(d), "numpy wraps {d}");
        if d <= 65535 {
            assert_eq!(ours, theirs, "{d}");
        } else {
            assert_eq!(ours, [252, 248, 248], "{d}");
        }
    }
}

fn write_depth_png(path: &std::path::Path, w: usize, h: usize, values: Vec<u32>) {
    imageio::write_depth_png(path, &DepthMm::from_mm(w, h, values).unwrap()).unwrap();
}

#[test]
fn pack_command_writes_the_packed_png() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("depth.png");
    let out = dir.path().join("packed.png");
    write_depth_png(&input, 3, 2, vec![0, 1, 1500, 12345, 40000, 65535]);
    let res = Command::new(support::bin())
        .args(["--json", "pack", "--depth"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(report["saturated_pixels"], 0);
    assert_eq!(report["encoding"], "spatialbot");
    let img = imageio::read_rgb_png(&out).unwrap();
    assert_eq!(img.pixel(2, 0), Some([4, 112, 224]));
    assert_eq!(img.pixel(2, 1), Some([252, 248, 248]));

    let res = Command::new(support::bin())
        .args(["pack", "--encoding", "paper", "--depth"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&res.stdout).contains("saturated pixels"));
    let img = imageio::read_rgb_png(&out).unwrap();
    assert_eq!(img.pixel(2, 1), Some([126, 248, 248]));
}

#[test]
fn pack_command_rejects_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rgb8 = dir.path().join("colour.png");
    imageio::write_rgb_png(&rgb8, &RgbImage::filled(4, 4, [1, 2, 3])).unwrap();
    let good = dir.path().join("depth.png");
    write_depth_png(&good, 64, 64, vec![1000; 64 * 64]);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = dir.path().join("missing.png");

    for bad in [&rgb8, &truncated, &missing] {
        let out = dir.path().join("out.png");
        let res = Command::new(support::bin())
            .arg("pack")
            .arg("--depth")
            .arg(bad)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{}: {stderr}", bad.display());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(bad.file_name().unwrap().to_str().unwrap()),
            "{stderr}"
        );
        assert!(!out.exists());
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 3, "{leftovers:?}");
}
