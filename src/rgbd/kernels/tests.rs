//! Every implementation this CPU runs (`Isa::all_runnable`: the x86 ones on x86_64, NEON on
//! aarch64, under qemu in CI) against the portable one, bit for bit, on random inputs of odd
//! sizes (every block tail and vector tail).

use super::*;
use crate::rgbd::calibration::{Calibration, DistortionModel, Extrinsics, Intrinsics};
use crate::rgbd::register::Registrar;

/// xorshift32: deterministic, no dependency.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        self.next() as f64 / u32::MAX as f64
    }
    /// Depths that hit every case: none, near, typical, at and around both encodings'
    /// saturation, the uint24 top, and (for packing) any u32.
    fn depth(&mut self, any_u32: bool) -> u32 {
        match self.below(10) {
            0 => 0,
            1 => 1 + self.below(200),
            2 => 65_530 + self.below(12),
            3 => 131_066 + self.below(12),
            4 => (1 << 24) - 1 - self.below(3),
            5 if any_u32 => self.next(),
            5 => self.below(1 << 24),
            _ => 250 + self.below(8_000),
        }
    }
}

#[test]
fn packing_every_isa_matches_portable() {
    let mut rng = Rng(0x2545_F491);
    let mut lens: Vec<usize> = (0..100).collect();
    lens.extend([127, 128, 129, 191, 192, 193, 255, 256, 257, 1000, 4099]);
    for &len in &lens {
        let depth: Vec<u32> = (0..len).map(|_| rng.depth(true)).collect();
        let depth_u16: Vec<u16> = depth.iter().map(|&d| d as u16).collect();
        let mut want = vec![0u8; len * 3];
        let mut got = vec![0u8; len * 3];
        let want_sb = portable::pack::<65_535, 2, u32>(&depth, &mut want);
        let want_sb_bytes = want.clone();
        let want_paper = portable::pack::<131_071, 1, u32>(&depth, &mut want);
        let want_paper_bytes = want.clone();
        for isa in Isa::all_runnable() {
            got.fill(0xA5);
            let n = pack_u32::<65_535, 2>(isa, &depth, &mut got);
            assert_eq!(
                (n, &got),
                (want_sb, &want_sb_bytes),
                "{isa:?} spatialbot {len}"
            );
            got.fill(0xA5);
            let n = pack_u32::<131_071, 1>(isa, &depth, &mut got);
            assert_eq!(
                (n, &got),
                (want_paper, &want_paper_bytes),
                "{isa:?} paper {len}"
            );
            for shift in [1, 2] {
                portable_u16(shift, &depth_u16, &mut want);
                got.fill(0xA5);
                match shift {
                    1 => pack_u16::<1>(isa, &depth_u16, &mut got),
                    _ => pack_u16::<2>(isa, &depth_u16, &mut got),
                }
                assert_eq!(got, want, "{isa:?} u16 shift {shift} {len}");
            }
        }
    }
}

fn portable_u16(shift: u32, depth: &[u16], out: &mut [u8]) {
    let saturated = match shift {
        1 => portable::pack::<65_535, 1, u16>(depth, out),
        _ => portable::pack::<65_535, 2, u16>(depth, out),
    };
    assert_eq!(saturated, 0);
}

/// A random but valid calibration: the colour camera rotated about its axis and shifted, either
/// denser or sparser than depth, with any lens model on either side.
fn random_calibration(rng: &mut Rng, depth_w: usize, depth_h: usize) -> Calibration {
    let models = [
        DistortionModel::None,
        DistortionModel::BrownConrady,
        DistortionModel::ModifiedBrownConrady,
        DistortionModel::InverseBrownConrady,
    ];
    let intr = |rng: &mut Rng, w: usize, h: usize| {
        let f = (w.max(h) as f64) * (0.6 + rng.unit());
        let mut coeffs = [0.0; 5];
        for c in &mut coeffs {
            *c = (rng.unit() - 0.5) * 0.1;
        }
        Intrinsics {
            width: w,
            height: h,
            fx: f,
            fy: f * (0.95 + 0.1 * rng.unit()),
            ppx: w as f64 / 2.0 + (rng.unit() - 0.5) * 4.0,
            ppy: h as f64 / 2.0 + (rng.unit() - 0.5) * 4.0,
            model: models[rng.below(4) as usize],
            coeffs,
        }
    };
    let depth = intr(rng, depth_w, depth_h);
    let scale = 0.4 + 1.8 * rng.unit();
    let (cw, ch) = (
        ((depth_w as f64 * scale) as usize).max(1),
        ((depth_h as f64 * scale) as usize).max(1),
    );
    let color = intr(rng, cw, ch);
    let a = (rng.unit() - 0.5) * 0.1;
    Calibration {
        depth_scale: 0.001,
        depth,
        color,
        depth_to_color: Extrinsics {
            rotation: [a.cos(), -a.sin(), 0.0, a.sin(), a.cos(), 0.0, 0.0, 0.0, 1.0],
            translation: [
                (rng.unit() - 0.5) * 0.1,
                (rng.unit() - 0.5) * 0.02,
                (rng.unit() - 0.5) * 0.02,
            ],
        },
    }
}

#[test]
fn registration_every_isa_matches_portable() {
    let mut rng = Rng(0x9E37_79B9);
    let widths = [1, 2, 3, 5, 31, 127, 128, 129, 133, 259];
    let mut footprint_cases = [0usize; 2];
    for case in 0..48 {
        let w = widths[case % widths.len()];
        let h = 1 + rng.below(12) as usize;
        let calib = random_calibration(&mut rng, w, h);
        let reg = Registrar::new(&calib).expect("the random calibration is valid");
        let g = reg.splat_geometry();
        footprint_cases[g.splat_footprint as usize] += 1;
        let depth: Vec<u32> = (0..w * h).map(|_| rng.depth(false)).collect();
        let mut want = vec![0xDEAD_BEEF; g.color_width * g.color_height];
        portable::splat(g, &depth, &mut want);
        assert!(
            want.iter().all(|&v| v != 0xDEAD_BEEF),
            "case {case}: not all written"
        );
        for isa in Isa::all_runnable() {
            let mut got = vec![0x5A5A_5A5A; want.len()];
            splat(isa, g, &depth, &mut got);
            assert_eq!(
                got, want,
                "{isa:?} case {case}: {w}x{h} -> {}x{}, lens {:?}, footprint {}",
                g.color_width, g.color_height, g.lens, g.splat_footprint
            );
        }
    }
    assert!(
        footprint_cases.iter().all(|&n| n > 0),
        "{footprint_cases:?}"
    );
}

/// The steps one by one on blocks of extreme values (NaN-producing rays, points behind the
/// camera, footprints at the size limit), where a whole image rarely goes.
#[test]
fn registration_steps_match_portable_on_extreme_blocks() {
    let mut rng = Rng(0x1234_5678);
    for case in 0..64 {
        let calib = random_calibration(&mut rng, 40, 30);
        let reg = Registrar::new(&calib).expect("the random calibration is valid");
        let g = reg.splat_geometry();
        let mut rays = [[0f32; CHUNK]; 3];
        for (k, axis) in rays.iter_mut().enumerate() {
            for r in axis.iter_mut() {
                *r = match rng.below(12) {
                    0 => 0.0,
                    1 => -1.0e-3,
                    2 => f32::from_bits(rng.next()),
                    3 => 1.0e30,
                    _ if k == 2 => 0.5 + rng.unit() as f32,
                    _ => (rng.unit() as f32 - 0.5) * 2.0,
                };
            }
        }
        let mm: [u32; CHUNK] = std::array::from_fn(|_| rng.depth(false));
        let offset = [0.01, -0.02, (rng.unit() as f32 - 0.5) * 0.1];
        let [rx, ry, rz] = &rays;
        let mut want = [[0i32; CHUNK]; 4];
        let mut got = [[0i32; CHUNK]; 4];
        let n = 1 + rng.below(CHUNK as u32) as usize;
        let first = rng.below(1 << 20);
        let spread = (1u32 << rng.below(12)) - 1;
        with_lens_steps(g, |steps| {
            let [wu0, wv0, wu1, wv1] = &mut want;
            steps.portable_snap(g, [rx, ry, rz], offset, &mm, wu0, wv0);
            steps.portable_snap(g, [ry, rz, rx], offset, &mm, wu1, wv1);
            let [gu0, gv0, gu1, gv1] = &mut got;
            steps.fast_snap(g, [rx, ry, rz], offset, &mm, gu0, gv0);
            steps.fast_snap(g, [ry, rz, rx], offset, &mm, gu1, gv1);
        });
        assert_eq!(got, want, "snap, case {case}, lens {:?}", g.lens);
        // Corners from the snapped ones and from anywhere nearby, footprints at the limits.
        for u in want.iter_mut() {
            for x in u.iter_mut() {
                match rng.below(4) {
                    0 => *x = NOWHERE,
                    1 => *x = rng.below(80) as i32 - 8,
                    _ => {}
                }
            }
        }
        let [u0, v0, u1, v1] = &want;
        let mut rects_want = [[0u32; CHUNK]; 3];
        let last_want = <portable::Portable as Steps<NoDistortion>>::footprint_rects(
            g,
            u0,
            v0,
            u1,
            v1,
            &mut rects_want,
        );
        let (mut index_want, mut value_want) = ([0u32; CHUNK], [0u32; CHUNK]);
        let last_px_want = <portable::Portable as Steps<NoDistortion>>::pixel_targets(
            g,
            u0,
            v0,
            &mm[..n],
            first,
            spread,
            &mut index_want,
            &mut value_want,
        );
        for isa in Isa::all_runnable() {
            let mut rects = [[0u32; CHUNK]; 3];
            let (mut index, mut value) = ([0u32; CHUNK], [0u32; CHUNK]);
            let (last, last_px) = steps_on(
                isa,
                g,
                &want,
                &mm[..n],
                first,
                spread,
                &mut rects,
                &mut index,
                &mut value,
            );
            assert_eq!(
                (last, &rects),
                (last_want, &rects_want),
                "{isa:?} rects {case}"
            );
            assert_eq!(
                (last_px, &index, &value),
                (last_px_want, &index_want, &value_want),
                "{isa:?} targets {case}"
            );
        }
    }
}

/// The footprint and single-pixel steps of `isa`, on one block.
#[allow(clippy::too_many_arguments)]
fn steps_on(
    isa: Isa,
    g: &SplatGeometry,
    corners: &[[i32; CHUNK]; 4],
    mm: &[u32],
    first: u32,
    spread: u32,
    rects: &mut [[u32; CHUNK]; 3],
    index: &mut [u32; CHUNK],
    value: &mut [u32; CHUNK],
) -> (usize, usize) {
    let [u0, v0, u1, v1] = corners;
    match isa.level() {
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Level::Neon => {
            type S = aarch64::Neon;
            (
                <S as Steps<NoDistortion>>::footprint_rects(g, u0, v0, u1, v1, rects),
                <S as Steps<NoDistortion>>::pixel_targets(
                    g, u0, v0, mm, first, spread, index, value,
                ),
            )
        }
        // The x86 builds are the portable steps compiled for wider vectors: the whole-image
        // test above covers them.
        _ => {
            type S = portable::Portable;
            (
                <S as Steps<NoDistortion>>::footprint_rects(g, u0, v0, u1, v1, rects),
                <S as Steps<NoDistortion>>::pixel_targets(
                    g, u0, v0, mm, first, spread, index, value,
                ),
            )
        }
    }
}

/// Runs `f` with snap functions for the geometry's lens: the portable one and this target's
/// own (NEON on aarch64; elsewhere the portable one again).
fn with_lens_steps(g: &SplatGeometry, f: impl FnOnce(&dyn SnapPair)) {
    match g.lens {
        ColorLens::Pinhole => f(&Lensed(NoDistortion)),
        ColorLens::BrownConrady(c) => f(&Lensed(BrownConradyF32(c))),
        ColorLens::ModifiedBrownConrady(c) => f(&Lensed(ModifiedBrownConradyF32(c))),
        ColorLens::Inverse(lens) => f(&Lensed(InverseF64(lens))),
    }
}

type Rays<'a> = [&'a [f32; CHUNK]; 3];

trait SnapPair {
    fn portable_snap(
        &self,
        g: &SplatGeometry,
        rays: Rays,
        offset: [f32; 3],
        mm: &[u32; CHUNK],
        u: &mut [i32; CHUNK],
        v: &mut [i32; CHUNK],
    );
    fn fast_snap(
        &self,
        g: &SplatGeometry,
        rays: Rays,
        offset: [f32; 3],
        mm: &[u32; CHUNK],
        u: &mut [i32; CHUNK],
        v: &mut [i32; CHUNK],
    );
}

struct Lensed<D>(D);

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
type Fast = aarch64::Neon;
#[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
type Fast = portable::Portable;

impl<D: Distort> SnapPair for Lensed<D>
where
    Fast: Steps<D>,
{
    fn portable_snap(
        &self,
        g: &SplatGeometry,
        rays: Rays,
        offset: [f32; 3],
        mm: &[u32; CHUNK],
        u: &mut [i32; CHUNK],
        v: &mut [i32; CHUNK],
    ) {
        <portable::Portable as Steps<D>>::snap_block(g, &self.0, rays, offset, mm, u, v)
    }
    fn fast_snap(
        &self,
        g: &SplatGeometry,
        rays: Rays,
        offset: [f32; 3],
        mm: &[u32; CHUNK],
        u: &mut [i32; CHUNK],
        v: &mut [i32; CHUNK],
    ) {
        <Fast as Steps<D>>::snap_block(g, &self.0, rays, offset, mm, u, v)
    }
}

#[test]
fn nearest_wins_writes_match_portable() {
    let mut rng = Rng(0xC0FF_EE11);
    for case in 0..200 {
        let len = 1 + rng.below(300) as usize;
        let base: Vec<u32> = (0..len).map(|_| rng.depth(false)).collect();
        // Mostly consecutive runs (the vector path), sometimes scattered or out of range.
        let start = rng.below(len as u32);
        let index: [u32; CHUNK] = std::array::from_fn(|i| match rng.below(16) {
            0 => rng.below(len as u32 + 20),
            _ => start.wrapping_add(i as u32),
        });
        let value: [u32; CHUNK] = std::array::from_fn(|_| rng.depth(false));
        let n = rng.below(CHUNK as u32 + 1) as usize;
        let mut want = base.clone();
        <portable::Portable as Steps<NoDistortion>>::scatter_nearest(&mut want, &index, &value, n);
        let mm = 1 + rng.below(70_000);
        let width = rng.below(5) as usize;
        let mut four_want = [base[0], rng.depth(false), 0, rng.depth(false)];
        let four_base = four_want;
        <portable::Portable as Steps<NoDistortion>>::keep_nearest_4(&mut four_want, mm, width);
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        {
            type S = aarch64::Neon;
            let mut got = base.clone();
            <S as Steps<NoDistortion>>::scatter_nearest(&mut got, &index, &value, n);
            assert_eq!(got, want, "neon scatter, case {case}");
            let mut four = four_base;
            <S as Steps<NoDistortion>>::keep_nearest_4(&mut four, mm, width);
            assert_eq!(four, four_want, "neon keep_nearest_4, case {case}");
        }
        // Elsewhere the portable steps are the only ones with their own 4-lane and scatter
        // code (the x86 builds compile them): the whole-image test above covers those.
        let _ = (case, four_base, want);
    }
}
