//! Registration checked against geometry rather than against librealsense: every lens model on
//! both sides (librealsense's `align` ignores or mishandles several of them), the snapping rule,
//! nearest-wins and holes.

use crate::support::register_scene;

use register_scene::{calibration, intrinsics, Rng};
use spatialbot_edge::rgbd::{Calibration, DepthMm, DistortionModel, RegisterError, Registrar};

const MODELS: [DistortionModel; 4] = [
    DistortionModel::None,
    DistortionModel::BrownConrady,
    DistortionModel::InverseBrownConrady,
    DistortionModel::ModifiedBrownConrady,
];
const COEFFS: [f64; 5] = [0.081, -0.142, 0.0013, -0.0009, 0.035];
const ROTATION: [f64; 9] = [
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
const TRANSLATION: [f64; 3] = [0.0251, -0.0012, 0.0034];

/// The models' defining formulas, written out here independently of the library.
fn bc(c: [f64; 5], x: f64, y: f64) -> [f64; 2] {
    let r2 = x * x + y * y;
    let f = 1.0 + c[0] * r2 + c[1] * r2 * r2 + c[4] * r2 * r2 * r2;
    [
        x * f + 2.0 * c[2] * x * y + c[3] * (r2 + 2.0 * x * x),
        y * f + 2.0 * c[3] * x * y + c[2] * (r2 + 2.0 * y * y),
    ]
}

fn modified_bc(c: [f64; 5], x: f64, y: f64) -> [f64; 2] {
    let r2 = x * x + y * y;
    let f = 1.0 + c[0] * r2 + c[1] * r2 * r2 + c[4] * r2 * r2 * r2;
    let (x, y) = (x * f, y * f);
    [
        x + 2.0 * c[2] * x * y + c[3] * (r2 + 2.0 * x * x),
        y + 2.0 * c[3] * x * y + c[2] * (r2 + 2.0 * y * y),
    ]
}

/// Asserts that pixel `(u, v)` of a camera with `model` sees the normalised point `q`.
fn assert_sees(
    model: DistortionModel,
    f: (f64, f64),
    pp: (f64, f64),
    (u, v): (f64, f64),
    q: [f64; 2],
    what: &str,
) {
    let d = [(u - pp.0) / f.0, (v - pp.1) / f.1];
    let (got, want) = match model {
        DistortionModel::None => (d, q),
        DistortionModel::BrownConrady => (d, bc(COEFFS, q[0], q[1])),
        DistortionModel::ModifiedBrownConrady => (d, modified_bc(COEFFS, q[0], q[1])),
        // The coefficients undistort: applying the polynomial to the pixel gives the point.
        DistortionModel::InverseBrownConrady => (bc(COEFFS, d[0], d[1]), q),
    };
    let tol = 1e-9 * (1.0 + want[0].abs().max(want[1].abs()));
    assert!(
        (got[0] - want[0]).abs() < tol && (got[1] - want[1]).abs() < tol,
        "{what} {model:?}: {got:?} vs {want:?} (point {q:?})"
    );
}

fn lens_calib(
    depth_model: DistortionModel,
    color_model: DistortionModel,
    color_w: usize,
    color_h: usize,
    color_f: f64,
) -> Calibration {
    calibration(
        intrinsics(160, 120, 95.0, depth_model, COEFFS),
        intrinsics(color_w, color_h, color_f, color_model, COEFFS),
        ROTATION,
        TRANSLATION,
    )
}

#[test]
fn every_lens_model_maps_points_as_its_formula_says() {
    let mut rng = Rng::new(3);
    for depth_model in MODELS {
        for color_model in MODELS {
            let calib = lens_calib(depth_model, color_model, 640, 480, 400.0);
            let reg = Registrar::new(&calib).unwrap();
            for _ in 0..50 {
                let (x, y, z) = (
                    rng.range(0.0, 159.0),
                    rng.range(0.0, 119.0),
                    rng.range(300.0, 5000.0),
                );
                let p = reg.depth_point(x, y, z);
                assert!((p[2] - z).abs() < 1e-9);
                let d = &calib.depth;
                assert_sees(
                    depth_model,
                    (d.fx, d.fy),
                    (d.ppx, d.ppy),
                    (x, y),
                    [p[0] / z, p[1] / z],
                    "depth",
                );

                let r = ROTATION;
                let t = TRANSLATION.map(|v| v * 1000.0);
                let q = [
                    r[0] * p[0] + r[1] * p[1] + r[2] * p[2] + t[0],
                    r[3] * p[0] + r[4] * p[1] + r[5] * p[2] + t[1],
                    r[6] * p[0] + r[7] * p[1] + r[8] * p[2] + t[2],
                ];
                let [u, v] = reg.color_from_depth_pixel(x, y, z).unwrap();
                let c = &calib.color;
                assert_sees(
                    color_model,
                    (c.fx, c.fy),
                    (c.ppx, c.ppy),
                    (u, v),
                    [q[0] / q[2], q[1] / q[2]],
                    "colour",
                );
            }
        }
    }
}

/// Colour pixels a lone depth pixel fills, as (min u, min v, max u, max v, count).
fn lone_pixel_footprint(
    reg: &Registrar,
    x: usize,
    y: usize,
    mm: u32,
) -> Option<(i64, i64, i64, i64, usize)> {
    let (w, h) = reg.depth_size();
    let mut depth = DepthMm::zeros(w, h);
    depth.set(x, y, mm);
    let out = reg.register(&depth).unwrap();
    let mut b: Option<(i64, i64, i64, i64, usize)> = None;
    for (i, &v) in out.as_slice().iter().enumerate() {
        if v != 0 {
            assert_eq!(
                v, mm,
                "a registered pixel holds the depth pixel's own value"
            );
            let (u, v) = ((i % out.width()) as i64, (i / out.width()) as i64);
            b = Some(match b {
                None => (u, v, u, v, 1),
                Some((a, c, d, e, n)) => (a.min(u), c.min(v), d.max(u), e.max(v), n + 1),
            });
        }
    }
    b
}

#[test]
fn footprints_follow_the_documented_snapping_rule_for_every_model() {
    let mut rng = Rng::new(11);
    for depth_model in MODELS {
        for color_model in MODELS {
            // Colour denser than depth: footprints are filled.
            let calib = lens_calib(depth_model, color_model, 480, 360, 300.0);
            let reg = Registrar::new(&calib).unwrap();
            assert!(reg.splats_footprint());
            for _ in 0..6 {
                let (x, y) = (
                    (rng.range(20.0, 140.0)) as usize,
                    (rng.range(20.0, 100.0)) as usize,
                );
                let mm = rng.range(400.0, 4000.0) as u32;
                let snap = |dx: f64, dy: f64| {
                    let [u, v] = reg
                        .color_from_depth_pixel(x as f64 + dx, y as f64 + dy, mm as f64)
                        .unwrap();
                    (
                        (u + 0.5).round_ties_even() as i64,
                        (v + 0.5).round_ties_even() as i64,
                    )
                };
                let (tl, br) = (snap(-0.5, -0.5), snap(0.5, 0.5));
                let (u0, v0, u1, v1, n) =
                    lone_pixel_footprint(&reg, x, y, mm).expect("lands inside");
                // f32 in the hot path may snap a corner that sits within float noise of a
                // boundary to the neighbouring pixel.
                for (got, want) in [(u0, tl.0), (v0, tl.1), (u1, br.0), (v1, br.1)] {
                    assert!(
                        (got - want).abs() <= 1,
                        "{depth_model:?}/{color_model:?} ({x},{y}) {mm} mm: {got} vs {want}"
                    );
                }
                assert_eq!(
                    n as i64,
                    (u1 - u0 + 1) * (v1 - v0 + 1),
                    "a filled rectangle"
                );
                // The projected centre lies inside the filled rectangle.
                let [uc, vc] = reg
                    .color_from_depth_pixel(x as f64, y as f64, mm as f64)
                    .unwrap();
                assert!(
                    uc >= u0 as f64 - 0.5
                        && uc <= u1 as f64 + 0.5
                        && vc >= v0 as f64 - 0.5
                        && vc <= v1 as f64 + 0.5
                );
            }
            // Depth denser than colour: one colour pixel per depth pixel, next to its centre.
            let calib = lens_calib(depth_model, color_model, 80, 60, 45.0);
            let reg = Registrar::new(&calib).unwrap();
            assert!(!reg.splats_footprint());
            for _ in 0..6 {
                let (x, y) = (
                    (rng.range(30.0, 130.0)) as usize,
                    (rng.range(25.0, 95.0)) as usize,
                );
                let mm = rng.range(400.0, 4000.0) as u32;
                let (u0, v0, u1, v1, n) =
                    lone_pixel_footprint(&reg, x, y, mm).expect("lands inside");
                assert_eq!((n, u0, v0), (1, u1, v1));
                let [uc, vc] = reg
                    .color_from_depth_pixel(x as f64, y as f64, mm as f64)
                    .unwrap();
                assert!(
                    (u0 as f64 - uc).abs() <= 1.0 && (v0 as f64 - vc).abs() <= 1.0,
                    "({u0},{v0}) vs ({uc},{vc})"
                );
            }
        }
    }
}

#[test]
fn identical_cameras_register_to_the_same_image() {
    let i = intrinsics(64, 48, 50.0, DistortionModel::None, [0.0; 5]);
    let calib = calibration(
        i.clone(),
        i,
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        [0.0; 3],
    );
    let depth = register_scene::scene(64, 48, 5);
    assert_eq!(
        Registrar::new(&calib).unwrap().register(&depth).unwrap(),
        depth
    );
}

#[test]
fn nearest_surface_wins_and_holes_stay_empty() {
    // A 30 mm baseline: a near box shifts further than the wall behind it and covers part of it.
    let i = intrinsics(160, 120, 120.0, DistortionModel::None, [0.0; 5]);
    let calib = calibration(
        i.clone(),
        i,
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        [0.03, 0.0, 0.0],
    );
    let reg = Registrar::new(&calib).unwrap();
    let mut depth = DepthMm::from_mm(160, 120, vec![2000; 160 * 120]).unwrap();
    for y in 40..80 {
        for x in 40..80 {
            depth.set(x, y, 400);
        }
        depth.set(120, y, 0);
    }
    let out = reg.register(&depth).unwrap();
    for y in 41..79 {
        for x in 41..79 {
            let [u, v] = reg
                .color_from_depth_pixel(x as f64, y as f64, 400.0)
                .unwrap();
            assert_eq!(
                out.get(u.round() as usize, v.round() as usize),
                Some(400),
                "box pixel ({x},{y}) lost to the wall"
            );
        }
    }
    // The wall's missing column stays a hole, and so does the strip the baseline uncovers.
    let [u, v] = reg.color_from_depth_pixel(120.0, 60.0, 2000.0).unwrap();
    assert_eq!(out.get(u.round() as usize, v.round() as usize), Some(0));
    assert!(out.as_slice().iter().filter(|&&v| v == 0).count() > 120);
    assert!(out
        .as_slice()
        .iter()
        .all(|&v| v == 0 || v == 400 || v == 2000));

    let empty = reg.register(&DepthMm::zeros(160, 120)).unwrap();
    assert!(empty.as_slice().iter().all(|&v| v == 0));
}

#[test]
fn register_into_reuses_the_buffer_and_checks_sizes() {
    let calib = lens_calib(
        DistortionModel::None,
        DistortionModel::BrownConrady,
        640,
        480,
        400.0,
    );
    let reg = Registrar::new(&calib).unwrap();
    let a = register_scene::scene(160, 120, 1);
    let b = register_scene::scene(160, 120, 2);
    let mut out = DepthMm::zeros(640, 480);
    reg.register_into(&a, &mut out).unwrap();
    reg.register_into(&b, &mut out).unwrap();
    assert_eq!(out, reg.register(&b).unwrap());
    assert_eq!(
        out,
        spatialbot_edge::rgbd::register_depth_to_color(&b, &calib).unwrap()
    );

    let err = reg.register(&DepthMm::zeros(161, 120)).unwrap_err();
    assert!(
        matches!(
            err,
            RegisterError::DepthSize {
                found_width: 161,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("160x120"), "{err}");
    let mut wrong = DepthMm::zeros(10, 10);
    assert!(matches!(
        reg.register_into(&a, &mut wrong),
        Err(RegisterError::OutputSize { .. })
    ));
}

#[test]
fn registrar_rejects_an_invalid_calibration() {
    let mut calib = lens_calib(
        DistortionModel::None,
        DistortionModel::None,
        640,
        480,
        400.0,
    );
    calib.color.fx = 0.0;
    let err = Registrar::new(&calib).unwrap_err().to_string();
    assert!(err.contains("color.fx"), "{err}");
}
