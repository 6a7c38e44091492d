//! The world seen by a RealSense-like camera pair: a depth camera and a colour camera 15 mm to
//! its right, both looking forward and down at the table, with the calibration of
//! `camera::synthetic::calibration` (same intrinsics, same depth→colour extrinsics). Exact ray
//! casting with IEEE-exact operations only (no libm), so every machine renders the same pixels.
//!
//! The table, floor and wall never move: each camera's view of them is cast once per
//! [`SimRenderer`]. A frame casts only the pixels inside the projected bounding boxes of the
//! objects and the gripper, and keeps a pixel's background where nothing nearer is hit.

use crate::rgbd::{Calibration, DepthMm, RgbImage};

use super::world::{Shape, World, TABLE_X, TABLE_Y};
use super::{hash_unit, sin_cos};

/// The depth camera's centre in world coordinates (x right, y forward, z up; the table top is
/// z = 0).
pub const CAMERA_POS: [f64; 3] = [0.0, -0.05, 0.55];
/// Its axes in world coordinates: image right, image down, and the optical axis (forward and
/// down, 36.9° below the horizon).
pub const AXIS_X: [f64; 3] = [1.0, 0.0, 0.0];
pub const AXIS_Y: [f64; 3] = [0.0, -0.6, -0.8];
pub const AXIS_Z: [f64; 3] = [0.0, 0.8, -0.6];
/// Depth beyond this is reported as 0 ("no data"), like a real sensor's range limit.
pub const MAX_RANGE_M: f64 = 4.0;
const FLOOR_Z: f64 = -0.75;
const WALL_Y: f64 = 1.8;
/// Pixels around a projected bounding box that are cast too (rounding never reaches them).
const COVER_MARGIN_PX: f64 = 2.0;

/// Where the colour camera sits: the calibration's baseline along the depth camera's x axis.
fn color_origin(calib: &Calibration) -> [f64; 3] {
    let b = -calib.depth_to_color.translation[0];
    [
        CAMERA_POS[0] + b * AXIS_X[0],
        CAMERA_POS[1] + b * AXIS_X[1],
        CAMERA_POS[2] + b * AXIS_X[2],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// World direction of the ray through pixel (u, v), scaled so that its component along the
/// optical axis is 1: a hit's parameter is then the camera-frame z (what depth reports).
fn ray(k: &crate::rgbd::Intrinsics, u: usize, v: usize) -> [f64; 3] {
    let x = (u as f64 - k.ppx) / k.fx;
    let y = (v as f64 - k.ppy) / k.fy;
    [0, 1, 2].map(|a| x * AXIS_X[a] + y * AXIS_Y[a] + AXIS_Z[a])
}

#[derive(Clone, Copy, Debug)]
enum Prim {
    Aabb {
        lo: [f64; 3],
        hi: [f64; 3],
        rgb: [f64; 3],
    },
    Sphere {
        c: [f64; 3],
        r: f64,
        rgb: [f64; 3],
    },
}

impl Prim {
    fn bounds(&self) -> ([f64; 3], [f64; 3]) {
        match *self {
            Prim::Aabb { lo, hi, .. } => (lo, hi),
            Prim::Sphere { c, r, .. } => (c.map(|x| x - r), c.map(|x| x + r)),
        }
    }

    /// (t, normal, albedo) of the first hit along `o + t·d`, t > 0.
    fn hit(&self, o: [f64; 3], d: [f64; 3]) -> Option<(f64, [f64; 3], [f64; 3])> {
        match *self {
            Prim::Aabb { lo, hi, rgb } => {
                let mut t_near = f64::NEG_INFINITY;
                let mut t_far = f64::INFINITY;
                let mut axis = 0;
                for a in 0..3 {
                    if d[a] == 0.0 {
                        if o[a] < lo[a] || o[a] > hi[a] {
                            return None;
                        }
                        continue;
                    }
                    let t0 = (lo[a] - o[a]) / d[a];
                    let t1 = (hi[a] - o[a]) / d[a];
                    let (t0, t1) = if t0 < t1 { (t0, t1) } else { (t1, t0) };
                    if t0 > t_near {
                        t_near = t0;
                        axis = a;
                    }
                    t_far = t_far.min(t1);
                }
                if t_near > t_far || t_near <= 0.0 {
                    return None;
                }
                let mut n = [0.0; 3];
                n[axis] = if d[axis] > 0.0 { -1.0 } else { 1.0 };
                Some((t_near, n, rgb))
            }
            Prim::Sphere { c, r, rgb } => {
                let oc = [o[0] - c[0], o[1] - c[1], o[2] - c[2]];
                let a = dot(d, d);
                let b = dot(oc, d);
                let cc = dot(oc, oc) - r * r;
                let disc = b * b - a * cc;
                if disc < 0.0 {
                    return None;
                }
                let t = (-b - disc.sqrt()) / a;
                if t <= 0.0 {
                    return None;
                }
                let p = [0, 1, 2].map(|i| o[i] + t * d[i]);
                Some((t, [0, 1, 2].map(|i| (p[i] - c[i]) / r), rgb))
            }
        }
    }
}

const GRIPPER_GREY: [f64; 3] = [0.55, 0.55, 0.58];
const GRIPPER_DARK: [f64; 3] = [0.25, 0.25, 0.28];

/// Everything that can move, as boxes and spheres.
fn primitives(world: &World) -> Vec<Prim> {
    let mut prims = Vec::with_capacity(world.objects.len() + 4);
    for o in &world.objects {
        prims.push(match o.shape {
            Shape::Box { half } => Prim::Aabb {
                lo: [0, 1, 2].map(|a| o.pos[a] - half[a]),
                hi: [0, 1, 2].map(|a| o.pos[a] + half[a]),
                rgb: o.rgb,
            },
            Shape::Ball { radius } => Prim::Sphere {
                c: o.pos,
                r: radius,
                rgb: o.rgb,
            },
        });
    }
    let g = &world.gripper;
    let p = g.pos;
    let cube = |c: [f64; 3], h: [f64; 3], rgb| Prim::Aabb {
        lo: [c[0] - h[0], c[1] - h[1], c[2] - h[2]],
        hi: [c[0] + h[0], c[1] + h[1], c[2] + h[2]],
        rgb,
    };
    let (s, c) = sin_cos(g.rpy[2]);
    let reach = g.gap(&world.objects) / 2.0 + 0.006;
    for side in [-1.0, 1.0] {
        prims.push(cube(
            [
                p[0] + side * reach * c,
                p[1] + side * reach * s,
                p[2] + 0.012,
            ],
            [0.006, 0.006, 0.027],
            GRIPPER_DARK,
        ));
    }
    prims.push(cube(
        [p[0], p[1], p[2] + 0.045],
        [0.062, 0.02, 0.01],
        GRIPPER_GREY,
    ));
    prims.push(cube(
        [p[0], p[1], p[2] + 0.205],
        [0.015, 0.015, 0.15],
        GRIPPER_DARK,
    ));
    prims
}

/// The background along a ray: (t, normal, albedo).
fn background(o: [f64; 3], d: [f64; 3]) -> Option<(f64, [f64; 3], [f64; 3])> {
    if d[2] < 0.0 {
        let t = -o[2] / d[2];
        let x = o[0] + t * d[0];
        let y = o[1] + t * d[1];
        if (TABLE_X[0]..=TABLE_X[1]).contains(&x) && (TABLE_Y[0]..=TABLE_Y[1]).contains(&y) {
            let check = ((x / 0.1).floor() + (y / 0.1).floor()) as i64 & 1;
            let rgb = if check == 0 {
                [0.62, 0.45, 0.30]
            } else {
                [0.55, 0.39, 0.25]
            };
            return Some((t, [0.0, 0.0, 1.0], rgb));
        }
        let t_floor = (FLOOR_Z - o[2]) / d[2];
        let y = o[1] + t_floor * d[1];
        if y < WALL_Y {
            return Some((t_floor, [0.0, 0.0, 1.0], [0.35, 0.35, 0.38]));
        }
    }
    if d[1] > 0.0 {
        return Some(((WALL_Y - o[1]) / d[1], [0.0, -1.0, 0.0], [0.85, 0.82, 0.75]));
    }
    None
}

/// The light: from above, a little from the right and behind the camera.
fn light() -> [f64; 3] {
    let l = [0.3, -0.5, 1.0];
    let n = dot(l, l).sqrt();
    [l[0] / n, l[1] / n, l[2] / n]
}

fn shade(albedo: [f64; 3], n: [f64; 3], l: [f64; 3]) -> [u8; 3] {
    let s = 0.35 + 0.65 * dot(n, l).max(0.0);
    albedo.map(|a| (a * s * 255.0).round().clamp(0.0, 255.0) as u8)
}

fn depth_mm(t: f64) -> u32 {
    if t <= MAX_RANGE_M {
        (t * 1000.0).round() as u32
    } else {
        0
    }
}

/// The pixel rectangle `[u0, u1) × [v0, v1)` that the world-space box `lo..hi` can cover in a
/// camera at `origin`; the whole image for a box reaching behind the camera plane.
fn covered_rect(
    k: &crate::rgbd::Intrinsics,
    origin: [f64; 3],
    (lo, hi): ([f64; 3], [f64; 3]),
) -> Option<[usize; 4]> {
    let mut u_range = (f64::INFINITY, f64::NEG_INFINITY);
    let mut v_range = (f64::INFINITY, f64::NEG_INFINITY);
    for corner in 0..8 {
        let p = [0, 1, 2].map(|a| if corner >> a & 1 == 0 { lo[a] } else { hi[a] } - origin[a]);
        let (xc, yc, zc) = (dot(p, AXIS_X), dot(p, AXIS_Y), dot(p, AXIS_Z));
        if zc.is_nan() || zc <= 1e-3 {
            return Some([0, k.width, 0, k.height]);
        }
        let (u, v) = (k.fx * xc / zc + k.ppx, k.fy * yc / zc + k.ppy);
        u_range = (u_range.0.min(u), u_range.1.max(u));
        v_range = (v_range.0.min(v), v_range.1.max(v));
    }
    let clip = |(a, b): (f64, f64), size: usize| -> Option<(usize, usize)> {
        let first = (a - COVER_MARGIN_PX).floor().max(0.0);
        let end = ((b + COVER_MARGIN_PX).ceil() + 1.0).min(size as f64);
        (first < end).then_some((first as usize, end as usize))
    };
    let (u0, u1) = clip(u_range, k.width)?;
    let (v0, v1) = clip(v_range, k.height)?;
    Some([u0, u1, v0, v1])
}

/// For each pixel of a rectangle list, the primitives whose rectangle covers it are cast.
fn for_each_covered(
    rects: &[([usize; 4], usize)],
    width: usize,
    height: usize,
    mut f: impl FnMut(usize, usize, &[usize]),
) {
    let mut active: Vec<usize> = Vec::with_capacity(rects.len());
    for v in 0..height {
        let rows: Vec<&([usize; 4], usize)> = rects
            .iter()
            .filter(|(r, _)| (r[2]..r[3]).contains(&v))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let u_min = rows.iter().map(|(r, _)| r[0]).min().unwrap_or(0);
        let u_max = rows.iter().map(|(r, _)| r[1]).max().unwrap_or(0).min(width);
        for u in u_min..u_max {
            active.clear();
            active.extend(
                rows.iter()
                    .filter(|(r, _)| (r[0]..r[1]).contains(&u))
                    .map(|(_, i)| *i),
            );
            if !active.is_empty() {
                f(u, v, &active);
            }
        }
    }
}

/// [`SimRenderer::color_labels`]: a pixel showing the table, floor or wall.
pub const LABEL_BACKGROUND: u8 = 255;
/// [`SimRenderer::color_labels`]: a pixel showing the gripper.
pub const LABEL_GRIPPER: u8 = 254;

/// Depth noise and holes, seeded: off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DepthNoise {
    pub enabled: bool,
    pub seed: u64,
}

/// The fraction of depth pixels left without data when noise is on.
pub const HOLE_FRACTION: f64 = 0.01;

/// Renders worlds for one calibration; see the module documentation.
pub struct SimRenderer {
    calib: Calibration,
    color_origin: [f64; 3],
    bg_depth_t: Vec<f64>,
    bg_depth: Vec<u32>,
    bg_color_t: Vec<f64>,
    bg_color: Vec<u8>,
}

impl SimRenderer {
    pub fn new(calib: &Calibration) -> Self {
        let color_origin = color_origin(calib);
        let k = &calib.depth;
        let mut bg_depth_t = Vec::with_capacity(k.width * k.height);
        for v in 0..k.height {
            for u in 0..k.width {
                let t = background(CAMERA_POS, ray(k, u, v)).map_or(f64::INFINITY, |h| h.0);
                bg_depth_t.push(t);
            }
        }
        let bg_depth = bg_depth_t.iter().map(|&t| depth_mm(t)).collect();
        let k = &calib.color;
        let l = light();
        let mut bg_color_t = Vec::with_capacity(k.width * k.height);
        let mut bg_color = Vec::with_capacity(k.width * k.height * 3);
        for v in 0..k.height {
            for u in 0..k.width {
                match background(color_origin, ray(k, u, v)) {
                    Some((t, n, albedo)) => {
                        bg_color_t.push(t);
                        bg_color.extend_from_slice(&shade(albedo, n, l));
                    }
                    None => {
                        bg_color_t.push(f64::INFINITY);
                        bg_color.extend_from_slice(&[0, 0, 0]);
                    }
                }
            }
        }
        Self {
            calib: calib.clone(),
            color_origin,
            bg_depth_t,
            bg_depth,
            bg_color_t,
            bg_color,
        }
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calib
    }

    /// Colour (colour camera) and depth in mm (depth camera, unregistered) of `world`.
    /// `frame` numbers the noise pattern.
    pub fn render(&self, world: &World, noise: DepthNoise, frame: u64) -> (RgbImage, DepthMm) {
        (self.color(world), self.depth(world, noise, frame))
    }

    /// For each colour pixel where a moving primitive is nearer than the background:
    /// `f(pixel index, primitive index, normal, albedo)` of the nearest one.
    fn cast_color(&self, prims: &[Prim], mut f: impl FnMut(usize, usize, [f64; 3], [f64; 3])) {
        let k = &self.calib.color;
        let o = self.color_origin;
        let rects: Vec<([usize; 4], usize)> = prims
            .iter()
            .enumerate()
            .filter_map(|(i, p)| covered_rect(k, o, p.bounds()).map(|r| (r, i)))
            .collect();
        for_each_covered(&rects, k.width, k.height, |u, v, active| {
            let d = ray(k, u, v);
            let at = v * k.width + u;
            let mut best = (self.bg_color_t[at], None);
            for &i in active {
                if let Some((t, n, albedo)) = prims[i].hit(o, d) {
                    if t < best.0 {
                        best = (t, Some((i, n, albedo)));
                    }
                }
            }
            if let Some((i, n, albedo)) = best.1 {
                f(at, i, n, albedo);
            }
        });
    }

    /// Only the colour image.
    pub fn color(&self, world: &World) -> RgbImage {
        let prims = primitives(world);
        let k = &self.calib.color;
        let mut rgb = self.bg_color.clone();
        let l = light();
        self.cast_color(&prims, |at, _, n, albedo| {
            if let Some(px) = rgb.get_mut(at * 3..at * 3 + 3) {
                px.copy_from_slice(&shade(albedo, n, l));
            }
        });
        RgbImage::new(k.width, k.height, rgb)
            .unwrap_or_else(|| RgbImage::filled(k.width, k.height, [0; 3]))
    }

    /// What each colour pixel shows, row by row: [`LABEL_BACKGROUND`], [`LABEL_GRIPPER`], or
    /// the index of the object in `world.objects` (the ground truth of the colour image's
    /// object masks).
    pub fn color_labels(&self, world: &World) -> Vec<u8> {
        let prims = primitives(world);
        let k = &self.calib.color;
        let objects = world.objects.len();
        let mut labels = vec![LABEL_BACKGROUND; k.width * k.height];
        self.cast_color(&prims, |at, i, _, _| {
            if let Some(px) = labels.get_mut(at) {
                *px = if i < objects {
                    u8::try_from(i).unwrap_or(LABEL_GRIPPER)
                } else {
                    LABEL_GRIPPER
                };
            }
        });
        labels
    }

    /// Only the depth image (mm, the depth camera's frame).
    pub fn depth(&self, world: &World, noise: DepthNoise, frame: u64) -> DepthMm {
        let prims = primitives(world);
        let k = &self.calib.depth;
        let rects: Vec<([usize; 4], usize)> = prims
            .iter()
            .enumerate()
            .filter_map(|(i, p)| covered_rect(k, CAMERA_POS, p.bounds()).map(|r| (r, i)))
            .collect();
        let mut mm = self.bg_depth.clone();
        for_each_covered(&rects, k.width, k.height, |u, v, active| {
            let d = ray(k, u, v);
            let at = v * k.width + u;
            let mut best = self.bg_depth_t[at];
            for &i in active {
                if let Some((t, _, _)) = prims[i].hit(CAMERA_POS, d) {
                    best = best.min(t);
                }
            }
            if best < self.bg_depth_t[at] {
                mm[at] = depth_mm(best);
            }
        });
        if noise.enabled {
            add_noise(&mut mm, noise.seed, frame);
        }
        DepthMm::from_mm(k.width, k.height, mm).unwrap_or_else(|| DepthMm::zeros(k.width, k.height))
    }
}

/// A RealSense-like error: σ ≈ 1 mm + 2 mm/m² · z², and [`HOLE_FRACTION`] of the pixels without
/// data; the same for the same seed and frame.
fn add_noise(mm: &mut [u32], seed: u64, frame: u64) {
    for (i, px) in mm.iter_mut().enumerate() {
        if *px == 0 {
            continue;
        }
        let h = hash_unit(seed, frame, i as u64);
        if h < HOLE_FRACTION {
            *px = 0;
            continue;
        }
        // Three more uniforms from the same pixel: their sum − 1.5 has σ = 0.5.
        let g = hash_unit(seed ^ 1, frame, i as u64)
            + hash_unit(seed ^ 2, frame, i as u64)
            + hash_unit(seed ^ 3, frame, i as u64)
            - 1.5;
        let z = f64::from(*px) / 1000.0;
        let sigma = 1.0 + 2.0 * z * z;
        let noisy = (f64::from(*px) + 2.0 * g * sigma).round();
        *px = noisy.max(1.0) as u32;
    }
}

/// A top-down picture of an episode: the table, the objects where they started (faint) and
/// where they ended, the gripper's path (dark, its start green and its end red), and the task's
/// object and target outlined in white. 2.5 mm per pixel over the workspace.
pub fn top_down(start: &World, end: &World) -> RgbImage {
    const MM_PER_PX: f64 = 2.5;
    let (x0, x1, y0, y1) = (-0.35, 0.35, 0.25, 0.95);
    let w = ((x1 - x0) * 1000.0 / MM_PER_PX) as usize;
    let h = ((y1 - y0) * 1000.0 / MM_PER_PX) as usize;
    let mut img = vec![0u8; w * h * 3];
    // Pixel (u, v): x grows to the right, y (forward) grows upwards in the picture.
    let to_px = |x: f64, y: f64| -> (f64, f64) {
        ((x - x0) * 1000.0 / MM_PER_PX, (y1 - y) * 1000.0 / MM_PER_PX)
    };
    let put = |img: &mut Vec<u8>, u: i64, v: i64, rgb: [u8; 3], alpha: f64| {
        if u < 0 || v < 0 || u as usize >= w || v as usize >= h {
            return;
        }
        let at = (v as usize * w + u as usize) * 3;
        for c in 0..3 {
            let old = f64::from(img[at + c]);
            img[at + c] = (old * (1.0 - alpha) + f64::from(rgb[c]) * alpha).round() as u8;
        }
    };
    for v in 0..h {
        for u in 0..w {
            let x = x0 + (u as f64 + 0.5) * MM_PER_PX / 1000.0;
            let y = y1 - (v as f64 + 0.5) * MM_PER_PX / 1000.0;
            let check = ((x / 0.1).floor() + (y / 0.1).floor()) as i64 & 1;
            let rgb = if check == 0 {
                [158, 115, 77]
            } else {
                [140, 99, 64]
            };
            put(&mut img, u as i64, v as i64, rgb, 1.0);
        }
    }
    let to_u8 = |c: [f64; 3]| c.map(|a| (a * 255.0).round().clamp(0.0, 255.0) as u8);
    let fill = |img: &mut Vec<u8>, o: &super::world::Object, alpha: f64, outline: bool| {
        let half = o.half();
        let (ua, va) = to_px(o.pos[0] - half[0], o.pos[1] + half[1]);
        let (ub, vb) = to_px(o.pos[0] + half[0], o.pos[1] - half[1]);
        for v in va.floor() as i64..=vb.ceil() as i64 {
            for u in ua.floor() as i64..=ub.ceil() as i64 {
                let x = x0 + (u as f64 + 0.5) * MM_PER_PX / 1000.0;
                let y = y1 - (v as f64 + 0.5) * MM_PER_PX / 1000.0;
                let inside = match o.shape {
                    Shape::Box { .. } => true,
                    Shape::Ball { radius } => {
                        let (dx, dy) = (x - o.pos[0], y - o.pos[1]);
                        dx * dx + dy * dy <= radius * radius
                    }
                };
                let edge = u == ua.floor() as i64
                    || u == ub.ceil() as i64
                    || v == va.floor() as i64
                    || v == vb.ceil() as i64;
                if outline && edge {
                    put(img, u, v, [255, 255, 255], 1.0);
                } else if inside {
                    put(img, u, v, to_u8(o.rgb), alpha);
                }
            }
        }
    };
    for o in &start.objects {
        fill(&mut img, o, 0.35, false);
    }
    let named = [Some(end.task.object), end.task.target];
    for (i, o) in end.objects.iter().enumerate() {
        fill(&mut img, o, 1.0, named.contains(&Some(i)));
    }
    let path = &end.path;
    for pair in path.windows(2) {
        let (a, b) = (to_px(pair[0][0], pair[0][1]), to_px(pair[1][0], pair[1][1]));
        let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
        for i in 0..=n {
            let f = i as f64 / n as f64;
            let (u, v) = (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f);
            put(
                &mut img,
                u.floor() as i64,
                v.floor() as i64,
                [20, 20, 20],
                1.0,
            );
        }
    }
    for (p, rgb) in [(path.first(), [40, 200, 60]), (path.last(), [220, 30, 30])] {
        if let Some(p) = p {
            let (u, v) = to_px(p[0], p[1]);
            for dv in -3..=3 {
                for du in -3..=3 {
                    put(
                        &mut img,
                        u.floor() as i64 + du,
                        v.floor() as i64 + dv,
                        rgb,
                        1.0,
                    );
                }
            }
        }
    }
    RgbImage::new(w, h, img).unwrap_or_else(|| RgbImage::filled(w, h, [0; 3]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::synthetic::calibration;
    use crate::sim::TaskKind;

    #[test]
    fn labels_mark_exactly_the_pixels_the_objects_and_gripper_colour() {
        let calib = calibration(128, 96);
        let r = SimRenderer::new(&calib);
        let world = World::new(TaskKind::Reach, 3);
        let labels = r.color_labels(&world);
        let rgb = r.color(&world);
        for (at, &label) in labels.iter().enumerate() {
            let moving = label != LABEL_BACKGROUND;
            let differs = rgb.data[at * 3..at * 3 + 3] != r.bg_color[at * 3..at * 3 + 3];
            // A moving primitive's pixel may shade like the background by chance, never the
            // other way round.
            assert!(moving || !differs, "pixel {at}");
        }
        for i in 0..world.objects.len() {
            assert!(labels.contains(&(i as u8)), "object {i} unseen");
        }
        assert!(labels.contains(&LABEL_GRIPPER));
    }

    /// Every pixel cast: what the renderer's shortcuts must equal.
    fn full(calib: &Calibration, world: &World) -> (RgbImage, DepthMm) {
        let prims = primitives(world);
        let l = light();
        let k = &calib.color;
        let o = color_origin(calib);
        let mut rgb = Vec::new();
        for v in 0..k.height {
            for u in 0..k.width {
                let d = ray(k, u, v);
                let mut best = background(o, d);
                for p in &prims {
                    if let Some(h) = p.hit(o, d) {
                        if best.is_none_or(|b| h.0 < b.0) {
                            best = Some(h);
                        }
                    }
                }
                rgb.extend_from_slice(&best.map_or([0; 3], |(_, n, a)| shade(a, n, l)));
            }
        }
        let k = &calib.depth;
        let mut mm = Vec::new();
        for v in 0..k.height {
            for u in 0..k.width {
                let d = ray(k, u, v);
                let mut best = background(CAMERA_POS, d).map_or(f64::INFINITY, |h| h.0);
                for p in &prims {
                    if let Some(h) = p.hit(CAMERA_POS, d) {
                        best = best.min(h.0);
                    }
                }
                mm.push(depth_mm(best));
            }
        }
        (
            RgbImage::new(calib.color.width, calib.color.height, rgb).unwrap(),
            DepthMm::from_mm(k.width, k.height, mm).unwrap(),
        )
    }

    #[test]
    fn the_shortcuts_cast_the_same_pixels_as_a_full_render() {
        let calib = calibration(96, 72);
        let r = SimRenderer::new(&calib);
        for seed in 0..4 {
            let mut w = World::new(TaskKind::Pick, seed);
            for step in 0..3 {
                let (c, d) = r.render(&w, DepthNoise::default(), 0);
                assert!((c, d) == full(&calib, &w), "seed {seed} step {step}");
                w.apply(&[0.03, 0.05, -0.05, 0.0, 0.0, 0.4, 0.3, 0.0]);
            }
        }
    }

    #[test]
    fn objects_and_gripper_are_in_view_and_depth_is_plausible() {
        let calib = calibration(128, 96);
        let r = SimRenderer::new(&calib);
        let w = World::new(TaskKind::Reach, 1);
        let (c, d) = r.render(&w, DepthNoise::default(), 0);
        // Every object and the gripper's TCP project inside the colour image.
        let o = color_origin(&calib);
        let k = &calib.color;
        for p in w.objects.iter().map(|o| o.pos).chain([w.gripper.pos]) {
            let q = [p[0] - o[0], p[1] - o[1], p[2] - o[2]];
            let (u, v) = (
                k.fx * dot(q, AXIS_X) / dot(q, AXIS_Z) + k.ppx,
                k.fy * dot(q, AXIS_Y) / dot(q, AXIS_Z) + k.ppy,
            );
            assert!(
                u > 0.0 && v > 0.0 && u < k.width as f64 && v < k.height as f64,
                "{p:?} → {u},{v}"
            );
        }
        assert!(d.as_slice().iter().all(|&mm| mm <= 4000));
        assert!(d.as_slice().iter().filter(|&&mm| mm > 0).count() > 90 * 96);
        assert_ne!(c, RgbImage::filled(128, 96, [0; 3]));
        let noisy = r.depth(
            &w,
            DepthNoise {
                enabled: true,
                seed: 9,
            },
            3,
        );
        assert_eq!(
            noisy,
            r.depth(
                &w,
                DepthNoise {
                    enabled: true,
                    seed: 9
                },
                3
            )
        );
        assert_ne!(noisy, d);
        let holes = noisy.as_slice().iter().filter(|&&mm| mm == 0).count();
        assert!(holes > 0 && holes < 128 * 96 / 20, "{holes}");
    }
}
