//! Times packing and preprocessing in release mode; `scripts/bench-core.sh` runs it next to the
//! numpy / Pillow reference and prints ratios. Output: one `name ns` line per case, the fastest
//! run (the machines are shared: the minimum is the least disturbed estimate; the reference side
//! uses the same estimator).

use std::hint::black_box;
use std::time::Instant;

use spatialbot_edge::preprocess::{BicubicResize, Preprocessor, Tower};
use spatialbot_edge::rgbd::pack::{self, pack_into};
use spatialbot_edge::rgbd::{DepthMm, Encoding, RgbImage};

fn min_ns(mut f: impl FnMut(), iters: usize) -> u128 {
    for _ in 0..iters.div_ceil(10) {
        f();
    }
    let mut times: Vec<u128> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos()
        })
        .collect();
    times.sort_unstable();
    times[0]
}

fn synthetic_depth(w: usize, h: usize) -> DepthMm {
    let mm: Vec<u32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| ((x * 97 + y * 131) % 65536) as u32))
        .collect();
    DepthMm::from_mm(w, h, mm).unwrap_or_else(|| DepthMm::zeros(w, h))
}

fn main() {
    for (w, h) in [(640usize, 480usize), (1280, 720)] {
        let depth = synthetic_depth(w, h);
        let mut out = vec![0u8; w * h * 3];
        let ns = min_ns(
            || {
                let _ = black_box(pack_into(
                    black_box(depth.as_slice()),
                    Encoding::SpatialBot,
                    &mut out,
                ));
            },
            400,
        );
        println!("pack_{w}x{h} {ns}");
        let depth_u16: Vec<u16> = depth.as_slice().iter().map(|&v| v as u16).collect();
        let ns = min_ns(
            || {
                let _ = black_box(pack::pack_u16_into(
                    black_box(&depth_u16),
                    Encoding::SpatialBot,
                    &mut out,
                ));
            },
            400,
        );
        println!("pack_u16_{w}x{h} {ns}");
        let src3 = vec![7u8; w * h * 3];
        let mut dst3 = vec![0u8; w * h * 3];
        let ns = min_ns(|| dst3.copy_from_slice(black_box(&src3)), 400);
        println!("memcpy_out_{w}x{h} {ns}");
        let src4 = vec![7u8; w * h * 4];
        let mut dst4 = vec![0u8; w * h * 4];
        let ns = min_ns(|| dst4.copy_from_slice(black_box(&src4)), 400);
        println!("memcpy_in_{w}x{h} {ns}");
        let ns = min_ns(
            || {
                black_box(pack::pack(black_box(&depth), Encoding::SpatialBot));
            },
            200,
        );
        println!("pack_alloc_{w}x{h} {ns}");
    }
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
    let rgb = RgbImage::new(w, h, data).unwrap_or_else(|| RgbImage::filled(w, h, [0, 0, 0]));
    for (name, tower, pad) in [
        ("siglip_pad", Tower::Siglip, true),
        ("siglip_squash", Tower::Siglip, false),
        ("clip", Tower::Clip, false),
    ] {
        let Ok(mut pre) = Preprocessor::new(tower, tower.default_size(), pad) else {
            return;
        };
        let ns = min_ns(
            || {
                let _ = black_box(pre.tensor(black_box(&rgb)));
            },
            60,
        );
        println!("preprocess_{name}_640x480 {ns}");
    }
    let square = RgbImage::filled(640, 640, [10, 200, 30]);
    let horizontal = RgbImage::filled(384, 640, [10, 200, 30]);
    for (name, src, w, h) in [
        ("resize_640sq_384", &square, 384, 384),
        ("horizontal_only", &square, 384, 640),
        ("vertical_only", &horizontal, 384, 384),
    ] {
        let Ok(r) = BicubicResize::new(src.width, src.height, w, h) else {
            return;
        };
        let mut scratch = Vec::new();
        let ns = min_ns(
            || {
                let _ = black_box(r.apply_with(black_box(src), &mut scratch));
            },
            40,
        );
        println!("{name} {ns}");
    }
}
