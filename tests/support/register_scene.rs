//! Synthetic depth scenes and calibrations shared by the registration tests and benches.
#![allow(dead_code)]

use spatialbot_edge::rgbd::{Calibration, DepthMm, DistortionModel, Extrinsics, Intrinsics};

/// xorshift64*: deterministic and dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A slanted background plane, nearer boxes (flat and slanted), a bump, a rectangular hole and
/// scattered missing pixels; millimetres in 200..=65535.
pub fn scene(width: usize, height: usize, seed: u64) -> DepthMm {
    let mut rng = Rng::new(seed);
    let base = rng.range(900.0, 3000.0);
    let (gx, gy) = (rng.range(-2.0, 2.0), rng.range(-2.0, 2.0));
    let mut z: Vec<f64> = (0..width * height)
        .map(|i| {
            base + gx * ((i % width) as f64 - width as f64 / 2.0)
                + gy * ((i / width) as f64 - height as f64 / 2.0)
        })
        .collect();
    for _ in 0..6 {
        let (bw, bh) = (
            rng.range(0.05, 0.3) * width as f64,
            rng.range(0.05, 0.3) * height as f64,
        );
        let (x0, y0) = (
            rng.range(0.0, width as f64 - bw),
            rng.range(0.0, height as f64 - bh),
        );
        let near = rng.range(300.0, base - 100.0);
        let (sx, sy) = if rng.range(0.0, 1.0) < 0.5 {
            (0.0, 0.0)
        } else {
            (rng.range(-1.5, 1.5), rng.range(-1.5, 1.5))
        };
        for y in y0 as usize..(y0 + bh) as usize {
            for x in x0 as usize..(x0 + bw) as usize {
                let v = near + sx * (x as f64 - x0) + sy * (y as f64 - y0);
                let p = &mut z[y * width + x];
                *p = p.min(v);
            }
        }
    }
    let (cx, cy, r) = (
        rng.range(0.3, 0.7) * width as f64,
        rng.range(0.3, 0.7) * height as f64,
        0.1 * height as f64,
    );
    for y in 0..height {
        for x in 0..width {
            let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
            if d2 < r * r {
                let p = &mut z[y * width + x];
                *p -= 200.0 * (1.0 - d2 / (r * r)).sqrt();
            }
        }
    }
    let (hx, hy) = (
        rng.range(0.0, 0.8) * width as f64,
        rng.range(0.0, 0.8) * height as f64,
    );
    let mut mm: Vec<u32> = z
        .iter()
        .map(|v| v.round().clamp(200.0, 65535.0) as u32)
        .collect();
    for y in hy as usize..(hy as usize + height / 10) {
        for x in hx as usize..(hx as usize + width / 10) {
            mm[y * width + x] = 0;
        }
    }
    for _ in 0..width * height / 30 {
        let i = (rng.next_u64() % (width * height) as u64) as usize;
        mm[i] = 0;
    }
    DepthMm::from_mm(width, height, mm).expect("sizes match")
}

pub fn intrinsics(
    width: usize,
    height: usize,
    f: f64,
    model: DistortionModel,
    coeffs: [f64; 5],
) -> Intrinsics {
    Intrinsics {
        width,
        height,
        fx: f,
        fy: f * 1.0007,
        ppx: width as f64 / 2.0 - 0.37,
        ppy: height as f64 / 2.0 + 0.61,
        model,
        coeffs,
    }
}

const SMALL_ROTATION: [f64; 9] = [
    0.999992735,
    -0.001054871,
    -0.003662980,
    0.001047190,
    0.999997250,
    -0.002098231,
    0.003665183,
    0.002094380,
    0.999991090,
];
const IDENTITY: [f64; 9] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];

pub fn calibration(
    depth: Intrinsics,
    color: Intrinsics,
    rotation: [f64; 9],
    translation: [f64; 3],
) -> Calibration {
    Calibration {
        depth_scale: 0.001,
        depth,
        color,
        depth_to_color: Extrinsics {
            rotation,
            translation,
        },
    }
}

/// The calibrations the differential test runs, by name. Only lens models librealsense's
/// x86 `align` handles correctly (see src/rgbd/register.rs).
pub fn reference_cases() -> Vec<(&'static str, Calibration)> {
    use DistortionModel::*;
    let z = [0.0; 5];
    let t = [0.01485, 0.00012, 0.00031];
    vec![
        (
            "identity_640x480",
            calibration(
                intrinsics(640, 480, 600.0, None, z),
                intrinsics(640, 480, 600.0, None, z),
                IDENTITY,
                [0.0; 3],
            ),
        ),
        (
            "d435i_848x480_to_640x480",
            calibration(
                intrinsics(848, 480, 421.3, BrownConrady, z),
                intrinsics(640, 480, 605.6, InverseBrownConrady, z),
                SMALL_ROTATION,
                t,
            ),
        ),
        (
            "d435i_848x480_to_1280x720",
            calibration(
                intrinsics(848, 480, 421.3, BrownConrady, z),
                intrinsics(1280, 720, 908.4, InverseBrownConrady, z),
                SMALL_ROTATION,
                t,
            ),
        ),
        (
            "d435_640x480_to_640x480",
            calibration(
                intrinsics(640, 480, 383.2, None, z),
                intrinsics(640, 480, 615.1, None, z),
                SMALL_ROTATION,
                [0.0150, -0.0002, 0.0004],
            ),
        ),
        (
            "depth_inverse_bc_848x480_to_1280x720",
            calibration(
                intrinsics(
                    848,
                    480,
                    421.3,
                    InverseBrownConrady,
                    [0.031, -0.052, 0.0011, -0.0008, 0.012],
                ),
                intrinsics(1280, 720, 908.4, None, z),
                SMALL_ROTATION,
                t,
            ),
        ),
        (
            "depth_denser_848x480_to_424x240",
            calibration(
                intrinsics(848, 480, 421.3, None, z),
                intrinsics(424, 240, 300.2, None, z),
                IDENTITY,
                [-0.0151, 0.0003, 0.0],
            ),
        ),
    ]
}
