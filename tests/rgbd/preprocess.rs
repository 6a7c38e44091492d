//! Preprocessing: the golden hashes of the reference (§2.4), bit-exact differential tests against
//! Pillow's bicubic resize and the Hugging Face CLIP/SigLIP steps done with Pillow + numpy, and
//! the `preprocess` command.

use std::process::Command;

use crate::support;
use sha2::{Digest, Sha256};
use spatialbot_edge::imageio;
use spatialbot_edge::preprocess::{resize_bicubic, Normalizer, PassOrder, Preprocessor, Tower};
use spatialbot_edge::rgbd::pack;
use spatialbot_edge::rgbd::{DepthMm, Encoding, RgbImage};

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn image(&mut self, w: usize, h: usize) -> RgbImage {
        // Smooth gradients plus noise: exercises both the clipping and the interior of the kernel.
        let (a, b, c) = (self.below(7), self.below(5), self.below(3));
        let data: Vec<u8> = (0..w * h * 3)
            .map(|i| {
                let (p, ch) = (i / 3, i % 3);
                let (x, y) = (p % w, p / w);
                match self.below(3) {
                    0 => self.next() as u8,
                    _ => ((x * (a + ch) + y * (b + 1) + c * 40) % 256) as u8,
                }
            })
            .collect();
        RgbImage::new(w, h, data).unwrap()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn synthetic_depth() -> DepthMm {
    let (w, h) = (640usize, 480usize);
    let mm: Vec<u32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| ((x * 97 + y * 131) % 65536) as u32))
        .collect();
    DepthMm::from_mm(w, h, mm).unwrap()
}

fn synthetic_rgb() -> RgbImage {
    let (w, h) = (640usize, 480usize);
    let data: Vec<u8> = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                [
                    (x * 3 % 256) as u8,
                    (y * 5 % 256) as u8,
                    ((x + y) * 7 % 256) as u8,
                ]
            })
        })
        .collect();
    RgbImage::new(w, h, data).unwrap()
}

#[test]
fn golden_vectors_of_the_reference() {
    let (encoded, _) = pack::pack(&synthetic_depth(), Encoding::SpatialBot);
    assert_eq!(
        sha256_hex(&encoded.data),
        "b5cfcdd8fddca499c3cdac9bd62dbb479099f61ffdfa45e07feb6d448851df2b"
    );
    let rgb = synthetic_rgb();
    // (image, pad, sha256 of the 384×384 uint8 image, pixel (192,192), tensor sum)
    let cases: [(&RgbImage, bool, &str, [u8; 3], f64); 4] = [
        (
            &encoded,
            true,
            "c76543b5270cbfb4a0655a9965bce4dd28681d648cadd092c0aa790a3918e01f",
            [244, 37, 139],
            -7505.413885,
        ),
        (
            &encoded,
            false,
            "9c3274e470f053c5d1db7cf6d7d1154d4dd110bae757a58257a997e7e3eb1604",
            [244, 28, 134],
            -9430.133871,
        ),
        (
            &rgb,
            true,
            "1046b33cbec88e33f11b9a9319d4a3f0583a6defbe817e7dbbcb1a6051d7ce7c",
            [193, 178, 84],
            -6739.673352,
        ),
        (
            &rgb,
            false,
            "8891d35b38b9157d592180822b85a529445ca46bcc152978e3ba509bda017c5e",
            [193, 177, 83],
            -8442.299360,
        ),
    ];
    for (i, (img, pad, sha, px, sum)) in cases.into_iter().enumerate() {
        let mut pre = Preprocessor::new(Tower::Siglip, 384, pad).unwrap();
        let resized = pre.resized(img).unwrap();
        assert_eq!((resized.width, resized.height), (384, 384));
        assert_eq!(sha256_hex(&resized.data), sha, "case {i}");
        assert_eq!(resized.pixel(192, 192), Some(px), "case {i}");
        // The full path once; the other cases normalise the image already resized.
        let tensor = if i == 0 {
            pre.tensor(img).unwrap()
        } else {
            Normalizer::new([0.5; 3], [0.5; 3]).chw(&resized)
        };
        assert_eq!(tensor.shape, vec![3, 384, 384]);
        assert!(
            (tensor.sum() - sum).abs() < 2e-3,
            "case {i}: sum {} vs {sum}",
            tensor.sum()
        );
    }
}

const PILLOW_RESIZE: &str = r#"
import sys
from PIL import Image
blob = open(sys.argv[1], 'rb').read()
out = sys.stdout.buffer
pos = 0
for line in open(sys.argv[2]):
    w, h, ow, oh = map(int, line.split())
    n = w * h * 3
    img = Image.frombytes('RGB', (w, h), blob[pos:pos + n])
    pos += n
    out.write(img.resize((ow, oh), Image.BICUBIC).tobytes())
"#;

/// Camera-sized shapes the runtime resizes: these must match Pillow bit for bit.
/// (640×640 → 384×384 is covered by the golden hashes.)
const CAMERA_SHAPES: &[(usize, usize, usize, usize)] = &[
    (640, 480, 384, 384),
    (1280, 720, 384, 384),
    (640, 480, 448, 336),
    (480, 640, 336, 448),
    (480, 640, 384, 384),
];

#[test]
fn bicubic_resize_is_bit_exact_with_pillow() {
    let Some(py) = support::reference_python() else {
        return;
    };
    let mut rng = SplitMix(0x5EED_0002);
    let mut cases: Vec<(usize, usize, usize, usize)> = vec![
        (1, 1, 1, 1),
        (1, 1, 5, 3),
        (2, 3, 1, 1),
        (2, 3, 7, 5),
        (3, 2, 2, 3),
        (5, 5, 5, 2),
        (9, 4, 9, 4),
    ];
    cases.extend_from_slice(CAMERA_SHAPES);
    cases.push((97, 31, 384, 384));
    cases.push((67, 19, 191, 2));
    while cases.len() < 100 {
        let (w, h) = (1 + rng.below(90), 1 + rng.below(90));
        let (ow, oh) = match rng.below(6) {
            0 => (1 + rng.below(3 * w), 1 + rng.below(3 * h)),
            1 => (1 + rng.below(w), 1 + rng.below(h)),
            2 => (w, 1 + rng.below(120)),
            3 => (1 + rng.below(120), h),
            4 => (w + 1 + rng.below(60), 1 + rng.below(h)),
            _ => (1 + rng.below(w), 1 + rng.below(h)),
        };
        cases.push((w, h, ow, oh));
    }
    let images: Vec<RgbImage> = cases.iter().map(|&(w, h, _, _)| rng.image(w, h)).collect();
    let dir = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = images.iter().flat_map(|i| i.data.iter().copied()).collect();
    std::fs::write(dir.path().join("in.bin"), blob).unwrap();
    let spec: String = cases
        .iter()
        .map(|(w, h, ow, oh)| format!("{w} {h} {ow} {oh}\n"))
        .collect();
    std::fs::write(dir.path().join("cases.txt"), spec).unwrap();
    let want = support::run_python(
        &py,
        PILLOW_RESIZE,
        &[
            dir.path().join("in.bin").to_str().unwrap(),
            dir.path().join("cases.txt").to_str().unwrap(),
        ],
    );
    let mut pos = 0;
    for (img, &(w, h, ow, oh)) in images.iter().zip(&cases) {
        let ours = resize_bicubic(img, ow, oh).unwrap();
        let theirs = &want[pos..pos + ow * oh * 3];
        pos += ow * oh * 3;
        if ours.data != theirs {
            let i = ours
                .data
                .iter()
                .zip(theirs)
                .position(|(a, b)| a != b)
                .unwrap();
            let order = PassOrder::pillow(w, h, ow, oh);
            panic!(
                "{w}x{h} -> {ow}x{oh} ({order:?}): first difference at byte {i}: ours {} pillow {}",
                ours.data[i], theirs[i]
            );
        }
    }
    assert_eq!(pos, want.len());
}

/// The Hugging Face processor steps, done with Pillow + numpy as the slow processors do them.
const HF_STEPS: &str = r#"
import sys
import numpy as np
from PIL import Image
blob = open(sys.argv[1], 'rb').read()
out = sys.stdout.buffer
pos = 0
for line in open(sys.argv[2]):
    tower, pad, w, h, size = line.split()
    w, h, size, pad = int(w), int(h), int(size), pad == '1'
    n = w * h * 3
    img = Image.frombytes('RGB', (w, h), blob[pos:pos + n])
    pos += n
    if tower == 'clip':
        mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    else:
        mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    if pad and w != h:
        side = max(w, h)
        sq = Image.new('RGB', (side, side), tuple(int(x * 255) for x in mean))
        sq.paste(img, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
        img = sq
    if tower == 'clip':
        W, H = img.size
        short, long = (W, H) if W <= H else (H, W)
        new_short, new_long = size, int(size * long / short)
        ow, oh = (new_short, new_long) if W <= H else (new_long, new_short)
        arr = np.array(img.resize((ow, oh), Image.BICUBIC))
        top, left = (oh - size) // 2, (ow - size) // 2
        arr = arr[top:top + size, left:left + size]
    else:
        arr = np.array(img.resize((size, size), Image.BICUBIC))
    x = (arr * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    out.write(np.ascontiguousarray(x.transpose(2, 0, 1)).astype('<f4').tobytes())
"#;

#[test]
fn towers_match_hf_steps_with_pillow_and_numpy() {
    let Some(py) = support::reference_python() else {
        return;
    };
    let mut rng = SplitMix(0x5EED_0003);
    let mut cases: Vec<(Tower, bool, usize, usize, usize)> = vec![
        (Tower::Clip, false, 640, 480, 336),
        (Tower::Clip, true, 640, 480, 336),
        (Tower::Siglip, true, 480, 640, 384),
        (Tower::Siglip, false, 640, 480, 384),
        (Tower::Clip, false, 480, 640, 336),
        (Tower::Clip, true, 480, 640, 336),
        (Tower::Clip, false, 1, 1, 7),
        (Tower::Clip, false, 2, 3, 5),
        (Tower::Clip, true, 3, 2, 5),
    ];
    while cases.len() < 33 {
        let tower = if rng.below(2) == 0 {
            Tower::Clip
        } else {
            Tower::Siglip
        };
        cases.push((
            tower,
            rng.below(2) == 0,
            1 + rng.below(80),
            1 + rng.below(80),
            1 + rng.below(48),
        ));
    }
    let images: Vec<RgbImage> = cases
        .iter()
        .map(|&(_, _, w, h, _)| rng.image(w, h))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = images.iter().flat_map(|i| i.data.iter().copied()).collect();
    std::fs::write(dir.path().join("in.bin"), blob).unwrap();
    let spec: String = cases
        .iter()
        .map(|(t, pad, w, h, s)| format!("{} {} {w} {h} {s}\n", t.name(), *pad as u8))
        .collect();
    std::fs::write(dir.path().join("cases.txt"), spec).unwrap();
    let want = support::run_python(
        &py,
        HF_STEPS,
        &[
            dir.path().join("in.bin").to_str().unwrap(),
            dir.path().join("cases.txt").to_str().unwrap(),
        ],
    );
    let mut pos = 0;
    for (img, &(tower, pad, w, h, size)) in images.iter().zip(&cases) {
        let mut pre = Preprocessor::new(tower, size, pad).unwrap();
        let ours = pre.tensor(img).unwrap();
        assert_eq!(ours.shape, vec![3, size, size]);
        let n = 3 * size * size * 4;
        let theirs: Vec<f32> = want[pos..pos + n]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        pos += n;
        let same = ours
            .data
            .iter()
            .zip(&theirs)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{} pad={pad} {w}x{h} -> {size}: tensor differs from HF steps",
            tower.name()
        );
    }
    assert_eq!(pos, want.len());
}

fn read_npy(path: &std::path::Path) -> (String, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8(b[10..10 + hlen].to_vec()).unwrap();
    let data = b[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (header, data)
}

#[test]
fn preprocess_command_writes_npy() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rgb.png");
    let img = SplitMix(7).image(40, 30);
    imageio::write_rgb_png(&input, &img).unwrap();
    for (tower, t, pad) in [
        ("siglip", Tower::Siglip, true),
        ("clip", Tower::Clip, false),
    ] {
        let out = dir.path().join(format!("{tower}.npy"));
        let res = Command::new(support::bin())
            .args([
                "--json",
                "preprocess",
                "--tower",
                tower,
                "--size",
                "24",
                "--image",
            ])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(if pad { &["--pad"][..] } else { &[][..] })
            .output()
            .unwrap();
        assert_eq!(
            res.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
        assert_eq!(report["shape"], serde_json::json!([3, 24, 24]));
        let (header, data) = read_npy(&out);
        assert!(
            header.contains("'descr': '<f4'") && header.contains("(3, 24, 24)"),
            "{header}"
        );
        let want = Preprocessor::new(t, 24, pad).unwrap().tensor(&img).unwrap();
        assert_eq!(data, want.data);
    }
}

#[test]
fn preprocess_command_rejects_bad_input_and_keeps_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let depth16 = dir.path().join("depth16.png");
    imageio::write_depth_png(&depth16, &DepthMm::from_mm(4, 4, vec![5; 16]).unwrap()).unwrap();
    let good = dir.path().join("rgb.png");
    imageio::write_rgb_png(&good, &SplitMix(9).image(64, 64)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = dir.path().join("missing.png");
    let out = dir.path().join("out.npy");
    std::fs::write(&out, b"previous").unwrap();
    for bad in [&depth16, &truncated, &missing] {
        let res = Command::new(support::bin())
            .args(["preprocess", "--tower", "siglip", "--image"])
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
        assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
}
