//! The `sim:TASK[,seed=N][,world=FILE][,size=WxH[@FPS]][,fast][,noise]` camera (default 640×480 @ 9 fps): it renders a simulated world
//! (`crate::sim`) with the synthetic camera's calibration.
//!
//! Parsing the SPEC creates the world in its start state ([`SharedWorld`], an
//! `Arc<Mutex<World>>`) and the SPEC carries it: `camera::open` renders that world, and the
//! command that assembles the loop (`cmd/assemble.rs`) gives the link a hook
//! (`LinkConfig::on_applied`) through which the built-in controller (`--link sim`) applies each
//! action it accepts to the same world. No global registry: two loops in one process (tests,
//! `eval` episodes) each get their own world.
//!
//! The source ends (`Ok(None)`, the loop's `source_ended` stop) once the episode is over:
//! success, terminate = 1, or the task's step limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Pacing, Source, SourceError, SourceStats};
use crate::rgbd::{Calibration, Depth, DepthNeed, DepthRegistration, RgbdFrame};
use crate::sim::render::{DepthNoise, SimRenderer};
use crate::sim::{SharedWorld, TaskKind, World};

/// The simulated camera pair's calibration at `width`×`height`: the synthetic camera's (same
/// intrinsics, same depth→colour extrinsics), which the renderer's ray casting follows.
pub fn calibration(width: usize, height: usize) -> Calibration {
    super::synthetic::calibration(width, height)
}

/// What a `sim:` SPEC says.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    pub task: TaskKind,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub pacing: Pacing,
    /// Seeded depth noise and holes.
    pub noise: bool,
    /// The world, created in its start state when the SPEC was parsed.
    pub world: SharedWorld,
}

/// The default frame size and rate: a RealSense's 640×480, at 9 fps. The world steps 0.1 s per
/// action (10 Hz control) and the dev board's governor sends at most 10 actions a second; a
/// frame every 111 ms keeps the loop's step just above the governor's 100 ms interval, so the
/// loop's jitter does not hold steps (at 10 fps about half would be held for arriving a few ms
/// early, at 15 fps a third at least).
pub const DEFAULT_SIZE: (usize, usize, u32) = (640, 480, 9);

impl SimOptions {
    pub fn new(task: TaskKind, seed: u64) -> Self {
        Self {
            task,
            seed,
            width: DEFAULT_SIZE.0,
            height: DEFAULT_SIZE.1,
            fps: DEFAULT_SIZE.2,
            pacing: Pacing::RealTime,
            noise: false,
            world: SharedWorld::new(World::new(task, seed)),
        }
    }

    /// Parses `TASK[,OPTION...]` (the part after `sim:`) with `head` options given before the
    /// colon (`sim,fast:reach`). Options: `seed=N`, `world=FILE` (a layout written by hand,
    /// `sim::world_file`; the error names the file and the field), `size=WxH[@FPS]`, `fast`,
    /// `noise`.
    pub fn parse(head: &[&str], argument: Option<&str>) -> Result<Self, String> {
        let usage = "give the task, e.g. `sim:reach`, `sim:pick,seed=3` or `sim:place,seed=7,size=320x240@15,fast` (tasks: reach, pick, place)";
        let argument = argument
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| usage.to_string())?;
        let mut parts = argument.split(',').map(str::trim);
        let task: TaskKind = parts.next().unwrap_or_default().parse()?;
        let mut seed = 0u64;
        let (mut width, mut height, mut fps) = DEFAULT_SIZE;
        let mut pacing = Pacing::RealTime;
        let mut noise = false;
        let mut world_file: Option<std::path::PathBuf> = None;
        for option in head.iter().copied().chain(parts).filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                None if option == "fast" => pacing = Pacing::AsFastAsPossible,
                None if option == "noise" => noise = true,
                Some(("seed", v)) => {
                    seed = v.parse().map_err(|_| {
                        format!("seed={v}: give a whole number from 0 to {}, e.g. seed=3", u64::MAX)
                    })?
                }
                Some(("world", v)) if !v.is_empty() => world_file = Some(v.into()),
                Some(("size", v)) => {
                    let bad = || format!("size={v}: give WxH or WxH@FPS, 16..=4096 pixels and 1..=1000 fps, e.g. size=320x240@15");
                    let (size, rate) = match v.split_once('@') {
                        Some((s, f)) => (s, Some(f)),
                        None => (v, None),
                    };
                    let (w, h) = size.split_once('x').ok_or_else(bad)?;
                    width = w.parse().map_err(|_| bad())?;
                    height = h.parse().map_err(|_| bad())?;
                    if let Some(f) = rate {
                        fps = f.parse().map_err(|_| bad())?;
                    }
                    if !(16..=4096).contains(&width) || !(16..=4096).contains(&height) || !(1..=1000).contains(&fps) {
                        return Err(bad());
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown option `{option}` for `sim` (it takes `seed=N`, `world=FILE`, `size=WxH[@FPS]`, `fast` and `noise`)"
                    ))
                }
            }
        }
        let mut options = Self {
            width,
            height,
            fps,
            pacing,
            noise,
            ..Self::new(task, seed)
        };
        if let Some(path) = world_file {
            let world = crate::sim::world_file::load(&path, task, seed)
                .map_err(|e| format!("world={}: {e}", path.display()))?;
            options.world = SharedWorld::new(world);
        }
        Ok(options)
    }
}

/// Renders the shared world's current state, frame after frame, until the episode is over.
pub struct SimSource {
    options: SimOptions,
    renderer: SimRenderer,
    /// [`DepthNeed::None`]: depth is not rendered, and frames carry none.
    depth: DepthNeed,
    registration: Arc<DepthRegistration>,
    next_index: u64,
    start: Option<Instant>,
}

impl SimSource {
    pub fn new(options: SimOptions) -> Self {
        let calib = calibration(options.width, options.height);
        Self {
            renderer: SimRenderer::new(&calib),
            registration: Arc::new(DepthRegistration::new(calib)),
            options,
            depth: DepthNeed::Raw,
            next_index: 0,
            start: None,
        }
    }

    /// [`DepthNeed::None`]: render colour only; frames then carry [`Depth::None`]. Otherwise
    /// frames carry raw depth (in the depth camera's frame).
    pub fn with_depth(mut self, need: DepthNeed) -> Self {
        self.depth = need;
        self
    }

    pub fn world(&self) -> &SharedWorld {
        &self.options.world
    }
}

impl Source for SimSource {
    fn next_frame(&mut self) -> Result<Option<RgbdFrame>, SourceError> {
        let index = self.next_index;
        let fps = self.options.fps.max(1);
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(index as f64 / f64::from(fps));
        if self.options.pacing == Pacing::RealTime {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        // A copy, so the controller is never kept waiting while a frame renders. The instant of
        // the copy is the frame's capture: the state it shows is the world's then.
        let capture = Instant::now();
        let world = self.options.world.snapshot();
        if world.done() {
            return Ok(None);
        }
        let noise = DepthNoise {
            enabled: self.options.noise,
            seed: self.options.seed,
        };
        let color = self.renderer.color(&world);
        let depth = if self.depth == DepthNeed::None {
            Depth::None
        } else {
            Depth::Raw {
                depth: Arc::new(self.renderer.depth(&world, noise, index)),
                registration: self.registration.clone(),
            }
        };
        let arrival = Instant::now();
        self.next_index = index + 1;
        let calib = self.renderer.calibration();
        Ok(Some(RgbdFrame {
            color: Arc::new(color),
            depth,
            color_intrinsics: calib.color.clone(),
            color_frame_number: index,
            depth_frame_number: index,
            sequence: index,
            device_timestamp_ms: Some(index as f64 * 1000.0 / f64::from(fps)),
            capture,
            arrival,
            ready: arrival,
        }))
    }

    fn calibration(&self) -> &Calibration {
        self.renderer.calibration()
    }

    fn depth_registration(&self) -> Arc<DepthRegistration> {
        self.registration.clone()
    }

    fn stats(&self) -> SourceStats {
        SourceStats {
            delivered: self.next_index,
            ..SourceStats::default()
        }
    }

    fn describe(&self) -> String {
        let o = &self.options;
        let w = o.world.lock();
        format!(
            "simulated tabletop, task {} seed {} (\"{}\"), {}x{} @ {} fps",
            o.task, o.seed, w.task.goal, o.width, o.height, o.fps
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec() {
        let o = SimOptions::parse(&[], Some("pick,seed=3,size=64x48@30,fast,noise")).unwrap();
        assert_eq!(
            (o.task, o.seed, o.width, o.height, o.fps),
            (TaskKind::Pick, 3, 64, 48, 30)
        );
        assert_eq!(o.pacing, Pacing::AsFastAsPossible);
        assert!(o.noise);
        assert_eq!(o.world.snapshot(), World::new(TaskKind::Pick, 3));
        let o = SimOptions::parse(&["fast"], Some("reach")).unwrap();
        assert_eq!(
            (o.seed, o.width, o.fps, o.pacing),
            (0, 640, 9, Pacing::AsFastAsPossible)
        );
        for bad in [
            None,
            Some(""),
            Some("push"),
            Some("reach,seed=-1"),
            Some("reach,seed=x"),
            Some("reach,size=8x8"),
            Some("reach,loop"),
        ] {
            assert!(SimOptions::parse(&[], bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_source_renders_the_current_state_and_ends_with_the_episode() {
        let o = SimOptions::parse(&[], Some("reach,seed=2,size=64x48,fast")).unwrap();
        let world = o.world.clone();
        let mut src = SimSource::new(o);
        let a = src.next_frame().unwrap().unwrap();
        world
            .lock()
            .apply(&[0.05, 0.05, -0.05, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let b = src.next_frame().unwrap().unwrap();
        assert_ne!(a.color, b.color, "the gripper moved");
        let depth_width = b.depth.image().map(|d| d.width());
        assert_eq!((b.sequence, b.color.width, depth_width), (1, 64, Some(64)));
        world
            .lock()
            .apply(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
        assert!(src.next_frame().unwrap().is_none(), "terminated");
    }
}
