//! A deterministic synthetic tabletop: a table, three boxes, a rolling ball and a gripper that
//! descends and sweeps, seen by a depth camera and a colour camera 15 mm apart with a known
//! calibration. Rendering is exact ray casting with only IEEE-exact operations (no libm), so
//! every machine produces the same pixels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pacing::LateStart;
use super::{
    Depth, DepthNeed, DepthRegistration, Pacing, RgbdFrame, Source, SourceError, SourceStats,
    SyntheticOptions,
};
use crate::rgbd::{Calibration, DepthMm, DistortionModel, Extrinsics, Intrinsics, RgbImage};
use crate::sim::render::{LABEL_BACKGROUND, LABEL_GRIPPER};

/// Depth beyond this is reported as 0 ("no data"), like a real sensor's range limit.
pub const MAX_RANGE_M: f64 = 4.0;

/// The camera looks down at the table: its optical axis in world coordinates (y down).
const AXIS_X: [f64; 3] = [1.0, 0.0, 0.0];
const AXIS_Y: [f64; 3] = [0.0, 0.8, -0.6];
const AXIS_Z: [f64; 3] = [0.0, 0.6, 0.8];
/// The colour camera sits this far along the depth camera's +x axis.
const BASELINE_M: f64 = 0.015;
const TABLE_Y: f64 = 0.5;
const FLOOR_Y: f64 = 1.2;
const WALL_Z: f64 = 2.2;

/// The synthetic camera pair's calibration at `width`×`height` (both streams the same size).
pub fn calibration(width: usize, height: usize) -> Calibration {
    let w = width as f64;
    let h = height as f64;
    Calibration {
        depth_scale: 0.001,
        depth: Intrinsics {
            width,
            height,
            fx: 0.6 * w,
            fy: 0.6 * w,
            ppx: w / 2.0 - 0.5,
            ppy: h / 2.0 - 0.5,
            model: DistortionModel::None,
            coeffs: [0.0; 5],
        },
        color: Intrinsics {
            width,
            height,
            fx: 0.95 * w,
            fy: 0.95 * w,
            ppx: w / 2.0 + 1.25,
            ppy: h / 2.0 - 0.75,
            model: DistortionModel::None,
            coeffs: [0.0; 5],
        },
        depth_to_color: Extrinsics {
            rotation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            translation: [-BASELINE_M, 0.0, 0.0],
        },
    }
}

/// 0 → 1 → 0 once per unit of `x`.
fn triangle(x: f64) -> f64 {
    let f = x - x.floor();
    1.0 - (2.0 * f - 1.0).abs()
}

#[derive(Clone, Copy)]
struct Aabb {
    center: [f64; 3],
    half: [f64; 3],
    rgb: [f64; 3],
}

#[derive(Clone, Copy)]
struct Sphere {
    center: [f64; 3],
    radius: f64,
    rgb: [f64; 3],
}

/// The scene at time `t_s`, in world coordinates (metres, y down, z away from the camera).
struct Scene {
    boxes: Vec<Aabb>,
    ball: Option<Sphere>,
}

/// The boxes standing on the table; they never move.
const STILL_BOXES: usize = 3;

/// The objects' names and colours, by label: the three boxes, then the ball.
pub const OBJECTS: [(&str, &str); 4] = [
    ("the red box", "red"),
    ("the blue box", "blue"),
    ("the yellow box", "yellow"),
    ("the green ball", "green"),
];
const BALL_LABEL: u8 = 3;

/// One object of the synthetic tabletop at a frame's time, in table coordinates (x right, y
/// away from the camera, z up; metres).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectState {
    pub name: &'static str,
    pub colour: &'static str,
    pub is_ball: bool,
    pub centre_m: [f64; 3],
    /// Full extents along x, y, z.
    pub size_m: [f64; 3],
}

/// World (x right, y down, z away) → table (x right, y away, z up) coordinates.
fn table_coords(p: [f64; 3]) -> [f64; 3] {
    [p[0], p[2], -p[1]]
}

/// The ground truth of frame `index` at `fps`: the objects' states (indexed as the labels) and
/// what each colour pixel shows (an index into [`OBJECTS`], [`LABEL_GRIPPER`] or
/// [`LABEL_BACKGROUND`]), row by row.
pub fn ground_truth(calib: &Calibration, index: u64, fps: u32) -> (Vec<ObjectState>, Vec<u8>) {
    let scene = Scene::at(index as f64 / fps.max(1) as f64);
    let mut objects: Vec<ObjectState> = scene
        .boxes
        .iter()
        .take(STILL_BOXES)
        .zip(OBJECTS)
        .map(|(b, (name, colour))| ObjectState {
            name,
            colour,
            is_ball: false,
            centre_m: table_coords(b.center),
            size_m: [2.0 * b.half[0], 2.0 * b.half[2], 2.0 * b.half[1]],
        })
        .collect();
    if let Some(ball) = &scene.ball {
        let (name, colour) = OBJECTS[BALL_LABEL as usize];
        objects.push(ObjectState {
            name,
            colour,
            is_ball: true,
            centre_m: table_coords(ball.center),
            size_m: [2.0 * ball.radius; 3],
        });
    }
    let k = &calib.color;
    let mut labels = Vec::with_capacity(k.width * k.height);
    for v in 0..k.height {
        for u in 0..k.width {
            let label = scene
                .hit_labelled(COLOR_ORIGIN, ray(k, u, v))
                .map_or(LABEL_BACKGROUND, |(_, _, _, l)| l);
            labels.push(label);
        }
    }
    (objects, labels)
}

impl Scene {
    fn at(t_s: f64) -> Self {
        let mut boxes = vec![
            Aabb {
                center: [-0.18, TABLE_Y - 0.05, 0.75],
                half: [0.05, 0.05, 0.05],
                rgb: [0.80, 0.15, 0.12],
            },
            Aabb {
                center: [0.20, TABLE_Y - 0.04, 0.90],
                half: [0.06, 0.04, 0.08],
                rgb: [0.15, 0.25, 0.80],
            },
            Aabb {
                center: [0.02, TABLE_Y - 0.09, 1.05],
                half: [0.04, 0.09, 0.04],
                rgb: [0.90, 0.80, 0.15],
            },
        ];
        let gx = 0.15 - 0.30 * triangle(t_s / 6.0);
        let gy = 0.25 + 0.12 * triangle(t_s / 3.0);
        let gz = 0.62;
        let opening = 0.025 + 0.02 * triangle(t_s / 2.0);
        let grey = [0.55, 0.55, 0.58];
        let dark = [0.25, 0.25, 0.28];
        boxes.push(Aabb {
            center: [gx, gy, gz],
            half: [0.06, 0.015, 0.025],
            rgb: grey,
        });
        boxes.push(Aabb {
            center: [gx, gy - 0.3, gz],
            half: [0.015, 0.285, 0.015],
            rgb: dark,
        });
        for side in [-1.0, 1.0] {
            boxes.push(Aabb {
                center: [gx + side * opening, gy + 0.05, gz],
                half: [0.008, 0.035, 0.015],
                rgb: dark,
            });
        }
        let radius = 0.045;
        let ball = Sphere {
            center: [-0.30 + 0.60 * triangle(t_s / 4.0), TABLE_Y - radius, 0.55],
            radius,
            rgb: [0.15, 0.70, 0.25],
        };
        Self {
            boxes,
            ball: Some(ball),
        }
    }

    /// Only what never moves: the table, floor, wall and the boxes on the table.
    fn still() -> Self {
        let mut scene = Scene::at(0.0);
        scene.boxes.truncate(STILL_BOXES);
        scene.ball = None;
        scene
    }

    /// World-space bounding boxes, (min corner, max corner), of everything that moves.
    fn moving_bounds(&self) -> Vec<([f64; 3], [f64; 3])> {
        let boxes = self.boxes.iter().skip(STILL_BOXES).map(|b| {
            (
                [0, 1, 2].map(|a| b.center[a] - b.half[a]),
                [0, 1, 2].map(|a| b.center[a] + b.half[a]),
            )
        });
        let ball = self.ball.iter().map(|s| {
            (
                s.center.map(|c| c - s.radius),
                s.center.map(|c| c + s.radius),
            )
        });
        boxes.chain(ball).collect()
    }

    /// The nearest hit along `origin + t·dir`: (t, surface normal, albedo).
    fn hit(&self, origin: [f64; 3], dir: [f64; 3]) -> Option<(f64, [f64; 3], [f64; 3])> {
        self.hit_labelled(origin, dir)
            .map(|(t, n, rgb, _)| (t, n, rgb))
    }

    /// [`Scene::hit`] with what was hit: an index into [`OBJECTS`], [`LABEL_GRIPPER`] or
    /// [`LABEL_BACKGROUND`] (table, floor, wall).
    fn hit_labelled(
        &self,
        origin: [f64; 3],
        dir: [f64; 3],
    ) -> Option<(f64, [f64; 3], [f64; 3], u8)> {
        let mut best: Option<(f64, [f64; 3], [f64; 3], u8)> = None;
        let mut consider = |t: f64, n: [f64; 3], rgb: [f64; 3], label: u8| {
            if t > 1e-6 && best.is_none_or(|(bt, _, _, _)| t < bt) {
                best = Some((t, n, rgb, label));
            }
        };
        for (i, b) in self.boxes.iter().enumerate() {
            if let Some((t, n)) = hit_box(b, origin, dir) {
                let label = if i < STILL_BOXES {
                    i as u8
                } else {
                    LABEL_GRIPPER
                };
                consider(t, n, b.rgb, label);
            }
        }
        if let Some(ball) = &self.ball {
            if let Some((t, n)) = hit_sphere(ball, origin, dir) {
                consider(t, n, ball.rgb, BALL_LABEL);
            }
        }
        if dir[1] > 0.0 {
            let t = (TABLE_Y - origin[1]) / dir[1];
            let x = origin[0] + t * dir[0];
            let z = origin[2] + t * dir[2];
            if (-0.5..=0.5).contains(&x) && (0.25..=1.2).contains(&z) {
                let check = ((x / 0.1).floor() + (z / 0.1).floor()) as i64 & 1;
                let rgb = if check == 0 {
                    [0.62, 0.45, 0.30]
                } else {
                    [0.55, 0.39, 0.25]
                };
                consider(t, [0.0, -1.0, 0.0], rgb, LABEL_BACKGROUND);
            }
            consider(
                (FLOOR_Y - origin[1]) / dir[1],
                [0.0, -1.0, 0.0],
                [0.35, 0.35, 0.38],
                LABEL_BACKGROUND,
            );
        }
        if dir[2] > 0.0 {
            consider(
                (WALL_Z - origin[2]) / dir[2],
                [0.0, 0.0, -1.0],
                [0.85, 0.82, 0.75],
                LABEL_BACKGROUND,
            );
        }
        best
    }
}

fn hit_box(b: &Aabb, o: [f64; 3], d: [f64; 3]) -> Option<(f64, [f64; 3])> {
    let mut t_near = f64::NEG_INFINITY;
    let mut t_far = f64::INFINITY;
    let mut near_axis = 0;
    for a in 0..3 {
        let lo = b.center[a] - b.half[a];
        let hi = b.center[a] + b.half[a];
        if d[a] == 0.0 {
            if o[a] < lo || o[a] > hi {
                return None;
            }
            continue;
        }
        let (t0, t1) = {
            let t0 = (lo - o[a]) / d[a];
            let t1 = (hi - o[a]) / d[a];
            if t0 < t1 {
                (t0, t1)
            } else {
                (t1, t0)
            }
        };
        if t0 > t_near {
            t_near = t0;
            near_axis = a;
        }
        t_far = t_far.min(t1);
    }
    if t_near > t_far || t_near <= 0.0 {
        return None;
    }
    let mut n = [0.0; 3];
    n[near_axis] = if d[near_axis] > 0.0 { -1.0 } else { 1.0 };
    Some((t_near, n))
}

fn hit_sphere(s: &Sphere, o: [f64; 3], d: [f64; 3]) -> Option<(f64, [f64; 3])> {
    let oc = [o[0] - s.center[0], o[1] - s.center[1], o[2] - s.center[2]];
    let a = dot(d, d);
    let b = dot(oc, d);
    let c = dot(oc, oc) - s.radius * s.radius;
    let disc = b * b - a * c;
    if disc < 0.0 {
        return None;
    }
    let t = (-b - disc.sqrt()) / a;
    if t <= 0.0 {
        return None;
    }
    let p = [o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2]];
    let n = [
        (p[0] - s.center[0]) / s.radius,
        (p[1] - s.center[1]) / s.radius,
        (p[2] - s.center[2]) / s.radius,
    ];
    Some((t, n))
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// World direction of the ray through pixel (u, v) of a camera with intrinsics `k`, scaled so
/// that its component along the optical axis is 1: the hit parameter is then the camera-frame z.
fn ray(k: &Intrinsics, u: usize, v: usize) -> [f64; 3] {
    let x = (u as f64 - k.ppx) / k.fx;
    let y = (v as f64 - k.ppy) / k.fy;
    [
        x * AXIS_X[0] + y * AXIS_Y[0] + AXIS_Z[0],
        x * AXIS_X[1] + y * AXIS_Y[1] + AXIS_Z[1],
        x * AXIS_X[2] + y * AXIS_Y[2] + AXIS_Z[2],
    ]
}

/// Where the colour camera sits, in world coordinates.
const COLOR_ORIGIN: [f64; 3] = [
    BASELINE_M * AXIS_X[0],
    BASELINE_M * AXIS_X[1],
    BASELINE_M * AXIS_X[2],
];

/// The depth camera's reading (mm) at pixel (u, v).
fn depth_pixel(scene: &Scene, k: &Intrinsics, u: usize, v: usize) -> u32 {
    match scene.hit([0.0; 3], ray(k, u, v)) {
        Some((z, _, _)) if z <= MAX_RANGE_M => (z * 1000.0).round() as u32,
        _ => 0,
    }
}

/// The colour camera's pixel (u, v).
fn color_pixel(scene: &Scene, k: &Intrinsics, u: usize, v: usize) -> [u8; 3] {
    let light = {
        let l = [0.3, -1.0, -0.5];
        let n = dot(l, l).sqrt();
        [l[0] / n, l[1] / n, l[2] / n]
    };
    let (albedo, shade) = match scene.hit(COLOR_ORIGIN, ray(k, u, v)) {
        Some((_, n, albedo)) => (albedo, 0.35 + 0.65 * dot(n, light).max(0.0)),
        None => ([0.0; 3], 0.0),
    };
    albedo.map(|a| (a * shade * 255.0).round().clamp(0.0, 255.0) as u8)
}

/// Renders `scene` in full: colour from the colour camera, depth (mm) from the depth camera.
fn render_scene(calib: &Calibration, scene: &Scene) -> (RgbImage, DepthMm) {
    let k = &calib.depth;
    let mut depth = Vec::with_capacity(k.width * k.height);
    for v in 0..k.height {
        for u in 0..k.width {
            depth.push(depth_pixel(scene, k, u, v));
        }
    }
    let k = &calib.color;
    let mut rgb = Vec::with_capacity(k.width * k.height * 3);
    for v in 0..k.height {
        for u in 0..k.width {
            rgb.extend_from_slice(&color_pixel(scene, k, u, v));
        }
    }
    let depth = DepthMm::from_mm(calib.depth.width, calib.depth.height, depth)
        .unwrap_or_else(|| DepthMm::zeros(calib.depth.width, calib.depth.height));
    let color = RgbImage::new(k.width, k.height, rgb)
        .unwrap_or_else(|| RgbImage::filled(k.width, k.height, [0; 3]));
    (color, depth)
}

/// Renders frame `index` of a sequence at `fps`: colour from the colour camera, depth (mm) from
/// the depth camera, each in its own frame as a real RGB-D camera delivers them. Casts every
/// pixel; a stream of frames is cheaper through `Renderer`.
pub fn render(calib: &Calibration, index: u64, fps: u32) -> (RgbImage, DepthMm) {
    render_scene(calib, &Scene::at(index as f64 / fps.max(1) as f64))
}

/// Pixels around a moving object's projected bounding box that are cast again too: a ray this
/// far outside the projection misses the object by far more than any rounding.
const COVER_MARGIN_PX: f64 = 2.0;

/// The pixel rectangle `[u0, u1) × [v0, v1)` of a camera at `origin` with intrinsics `k` that
/// the world-space box `lo`..`hi` can cover, or `None` where it covers none. A box reaching to
/// or behind the camera plane covers the whole image.
fn covered_rect(
    k: &Intrinsics,
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
        // Also false for NaN.
        (first < end).then_some((first as usize, end as usize))
    };
    let (u0, u1) = clip(u_range, k.width)?;
    let (v0, v1) = clip(v_range, k.height)?;
    Some([u0, u1, v0, v1])
}

/// The sorted, disjoint column ranges that the rectangles cover in row `v`.
fn covered_spans(rects: &[[usize; 4]], v: usize) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = rects
        .iter()
        .filter(|r| (r[2]..r[3]).contains(&v))
        .map(|r| (r[0], r[1]))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Renders the synthetic scene frame after frame for one calibration, pixel for pixel as
/// `render` does. The table, floor, wall and the boxes on the table never move: each camera's
/// view of them is cast once, and a frame casts again only the pixels the gripper or the ball
/// can cover. A real camera delivers frames for a few percent of a core; a synthetic one that
/// cast every pixel would take most of one and skew every measurement of the loop beside it.
pub struct Renderer {
    calib: Calibration,
    still_color: RgbImage,
    still_depth: DepthMm,
}

impl Renderer {
    pub fn new(calib: &Calibration) -> Self {
        let (still_color, still_depth) = render_scene(calib, &Scene::still());
        Self {
            calib: calib.clone(),
            still_color,
            still_depth,
        }
    }

    /// Frame `index` of a sequence at `fps`; the same pixels as `render(calib, index, fps)`.
    pub fn render(&self, index: u64, fps: u32) -> (RgbImage, DepthMm) {
        let scene = Scene::at(index as f64 / fps.max(1) as f64);
        (self.color(&scene), self.depth(&scene))
    }

    /// Only the colour image of frame `index`.
    pub fn render_color(&self, index: u64, fps: u32) -> RgbImage {
        self.color(&Scene::at(index as f64 / fps.max(1) as f64))
    }

    fn depth(&self, scene: &Scene) -> DepthMm {
        let moving = scene.moving_bounds();
        let mut depth = self.still_depth.clone();
        let k = &self.calib.depth;
        let rects: Vec<[usize; 4]> = moving
            .iter()
            .filter_map(|&b| covered_rect(k, [0.0; 3], b))
            .collect();
        for v in 0..k.height {
            for (u0, u1) in covered_spans(&rects, v) {
                for u in u0..u1 {
                    depth.set(u, v, depth_pixel(scene, k, u, v));
                }
            }
        }
        depth
    }

    fn color(&self, scene: &Scene) -> RgbImage {
        let moving = scene.moving_bounds();
        let k = &self.calib.color;
        let rects: Vec<[usize; 4]> = moving
            .iter()
            .filter_map(|&b| covered_rect(k, COLOR_ORIGIN, b))
            .collect();
        let mut rgb = self.still_color.data.clone();
        for v in 0..k.height {
            for (u0, u1) in covered_spans(&rects, v) {
                for u in u0..u1 {
                    let at = (v * k.width + u) * 3;
                    if let Some(px) = rgb.get_mut(at..at + 3) {
                        px.copy_from_slice(&color_pixel(scene, k, u, v));
                    }
                }
            }
        }
        RgbImage::new(k.width, k.height, rgb)
            .unwrap_or_else(|| RgbImage::filled(k.width, k.height, [0; 3]))
    }
}

/// The synthetic scene as an endless source; real-time pacing by default.
pub struct SyntheticSource {
    options: SyntheticOptions,
    calib: Calibration,
    renderer: Renderer,
    next_index: u64,
    start: Option<Instant>,
    /// Frames skipped in real time because rendering fell behind the frame grid.
    skipped: u64,
    /// [`DepthNeed::None`]: depth is not rendered, and frames carry none.
    depth: DepthNeed,
    registration: Arc<DepthRegistration>,
    /// In real time a frame is rendered just before it is due, not beside the loop's work.
    late_start: LateStart,
}

impl SyntheticSource {
    pub fn new(options: SyntheticOptions) -> Self {
        let calib = calibration(options.width, options.height);
        Self {
            options,
            renderer: Renderer::new(&calib),
            registration: Arc::new(DepthRegistration::new(calib.clone())),
            calib,
            next_index: 0,
            start: None,
            skipped: 0,
            depth: DepthNeed::Raw,
            late_start: LateStart::default(),
        }
    }

    /// [`DepthNeed::None`]: render colour only (a consumer that does not use depth); frames
    /// then carry [`Depth::None`]. Otherwise frames carry raw depth.
    pub fn with_depth(mut self, need: DepthNeed) -> Self {
        self.depth = need;
        self
    }
}

impl Source for SyntheticSource {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        let mut index = self.next_index;
        let fps = self.options.fps.max(1);
        let start = *self.start.get_or_insert_with(Instant::now);
        if self.options.pacing == Pacing::RealTime {
            // A camera whose reader falls behind loses frames; it never delivers a backlog.
            let on_grid = (start.elapsed().as_secs_f64() * fps as f64).floor() as u64;
            if on_grid > index {
                self.skipped += on_grid - index;
                index = on_grid;
            }
        }
        let due = start + Duration::from_secs_f64(index as f64 / fps as f64);
        if self.options.pacing == Pacing::RealTime {
            self.late_start.wait_to_make(due);
        }
        let rendering = Instant::now();
        let (color, depth) = if self.depth == DepthNeed::None {
            (self.renderer.render_color(index, fps), Depth::None)
        } else {
            let (color, depth) = self.renderer.render(index, fps);
            let depth = Depth::Raw {
                depth: Arc::new(depth),
                registration: self.registration.clone(),
            };
            (color, depth)
        };
        self.late_start.made(rendering.elapsed());
        // Without pacing the scene runs in its own time: capture stamps stay on the nominal
        // grid (so recordings of it are reproducible) and each frame arrives as it is captured.
        let arrival = match self.options.pacing {
            Pacing::RealTime => {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                Instant::now()
            }
            Pacing::AsFastAsPossible => due,
        };
        self.next_index = index + 1;
        Ok(Some(RgbdFrame {
            color: Arc::new(color),
            depth,
            color_intrinsics: self.calib.color.clone(),
            color_frame_number: index,
            depth_frame_number: index,
            sequence: index,
            device_timestamp_ms: Some(index as f64 * 1000.0 / fps as f64),
            capture: due,
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
        SourceStats {
            delivered: self.next_index - self.skipped,
            dropped_by_device: self.skipped,
            ..SourceStats::default()
        }
    }
    fn describe(&self) -> String {
        let o = &self.options;
        format!(
            "synthetic tabletop {}x{} @ {} fps",
            o.width, o.height, o.fps
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_falls_behind_loses_frames_instead_of_getting_a_backlog() {
        let mut src = SyntheticSource::new(SyntheticOptions {
            width: 64,
            height: 48,
            fps: 100,
            pacing: Pacing::RealTime,
        });
        let first = src.next_frame().unwrap().unwrap();
        // At least five frame periods pass while the reader is busy elsewhere.
        std::thread::sleep(Duration::from_millis(50));
        let next = src.next_frame().unwrap().unwrap();
        assert!(next.sequence >= first.sequence + 5, "{}", next.sequence);
        let stats = src.stats();
        assert_eq!(stats.dropped_by_device, next.sequence - first.sequence - 1);
        assert_eq!(stats.delivered, 2);
    }

    #[test]
    fn the_renderer_casts_the_same_pixels_as_a_full_render() {
        // One period of the motion is 12 s; sample it at steps coprime with the frame grid.
        for (w, h, frames) in [(160, 120, 0..360u64), (97, 61, 5..365)] {
            let calib = calibration(w, h);
            let renderer = Renderer::new(&calib);
            for index in frames.step_by(11) {
                assert!(
                    renderer.render(index, 30) == render(&calib, index, 30),
                    "{w}x{h} frame {index}"
                );
            }
        }
        let calib = calibration(640, 480);
        let renderer = Renderer::new(&calib);
        for index in [0, 97] {
            assert!(
                renderer.render(index, 15) == render(&calib, index, 15),
                "frame {index}"
            );
        }
    }

    #[test]
    fn moving_objects_cover_some_pixels_but_not_the_whole_image() {
        let calib = calibration(640, 480);
        let scene = Scene::at(1.0);
        let rects: Vec<_> = scene
            .moving_bounds()
            .into_iter()
            .filter_map(|b| covered_rect(&calib.depth, [0.0; 3], b))
            .collect();
        let covered: usize = (0..480)
            .flat_map(|v| covered_spans(&rects, v))
            .map(|(a, b)| b - a)
            .sum();
        assert!(covered > 0 && covered < 640 * 480 / 4, "{covered}");
    }

    #[test]
    fn known_depths_and_motion() {
        let calib = calibration(160, 120);
        let (c0, d0) = render(&calib, 0, 30);
        let (c0b, d0b) = render(&calib, 0, 30);
        assert_eq!((&c0, &d0), (&c0b, &d0b), "deterministic");
        // The optical axis meets the bare table 0.5 m below the camera at z = 0.5 / 0.6 m —
        // unless an object sits there; check a ray to the left of the centre instead.
        let k = &calib.depth;
        let dir = ray(k, 20, 100);
        let t = TABLE_Y / dir[1];
        let x = t * dir[0];
        let z = t * dir[2];
        assert!((-0.5..=0.5).contains(&x) && (0.25..=1.2).contains(&z));
        assert_eq!(d0.get(20, 100), Some((t * 1000.0).round() as u32));
        let (c1, d1) = render(&calib, 15, 30);
        assert_ne!(c0, c1, "the scene moves");
        assert_ne!(d0, d1);
        assert!(d0.as_slice().iter().all(|&v| v <= 4000));
    }
}
