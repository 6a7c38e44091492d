//! A closed-loop tabletop simulation: a world the policy's actions really move, a camera that
//! renders it, tasks with success criteria, and a scripted expert. docs/simulation.md describes
//! it; `spatialbot-edge eval` drives it.
//!
//! - [`world`]: the table, coloured boxes, a ball and the gripper; actions in the wire's layout
//!   move the gripper (clamped to the workspace), close/open it to grasp and release, and a
//!   released object falls to what is under it. Deterministic from a seed; only IEEE-exact
//!   arithmetic (no libm), so every machine computes the same states and pixels.
//! - [`task`]: reach / pick / place with their goal text and success criteria.
//! - [`render`]: a RealSense-like depth + colour pair (the calibration conventions of
//!   `camera::synthetic`) ray-casting the world's current state; a top-down picture of an episode.
//! - [`world_file`]: a layout written by hand (`sim:TASK,world=FILE`) instead of a seed's.
//! - [`expert`]: a scripted policy reading the world's true state.
//! - [`SharedWorld`]: the handle one camera renders (`camera::sim`, the `sim:TASK[,seed=N]`
//!   camera) and one controller moves (the in-process arm controller of `--link sim`, through
//!   the hook `cmd/assemble.rs` gives the link).
//!
//! This module depends on `rgbd` alone: the camera and the link reach the world, never the
//! other way round.

pub mod expert;
pub mod render;
pub mod task;
pub mod world;
pub mod world_file;

use std::sync::{Arc, Mutex, MutexGuard};

pub use task::{Task, TaskKind};
pub use world::World;

/// The world one camera renders and one controller moves.
#[derive(Clone)]
pub struct SharedWorld(Arc<Mutex<World>>);

impl SharedWorld {
    pub fn new(world: World) -> Self {
        Self(Arc::new(Mutex::new(world)))
    }

    /// The world, also after a thread panicked holding it (its state is still a valid world).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> World {
        self.lock().clone()
    }
}

impl std::fmt::Debug for SharedWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // try_lock: formatting a handle must never wait for (or deadlock on) the world.
        match self.0.try_lock() {
            Ok(w) => write!(
                f,
                "SharedWorld({} seed {}, step {})",
                w.task.kind, w.seed, w.steps
            ),
            Err(_) => f.write_str("SharedWorld(in use)"),
        }
    }
}

/// Two handles are equal when they are the same world.
impl PartialEq for SharedWorld {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// SplitMix64: a small, fast, portable generator; the same sequence on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5bd1_e995_9e37_79b9)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A stateless hash of a few integers to [0, 1): per-pixel noise that does not depend on the
/// order pixels are drawn in.
pub fn hash_unit(a: u64, b: u64, c: u64) -> f64 {
    let mut r =
        Rng::new(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.rotate_left(21) ^ c.rotate_left(42));
    r.unit()
}

/// sin and cos of `x` for |x| ≤ π (a Taylor series after folding to |x| ≤ π/2): only +, −, ×,
/// so the same bits on every machine, unlike the platform's libm.
pub fn sin_cos(x: f64) -> (f64, f64) {
    use std::f64::consts::{FRAC_PI_2, PI};
    let x = x.clamp(-PI, PI);
    // sin(π − x) = sin x, cos(π − x) = −cos x.
    let (y, cos_sign) = if x > FRAC_PI_2 {
        (PI - x, -1.0)
    } else if x < -FRAC_PI_2 {
        (-PI - x, -1.0)
    } else {
        (x, 1.0)
    };
    let y2 = y * y;
    let mut sin = 0.0;
    let mut cos = 0.0;
    let mut term_s = y;
    let mut term_c = 1.0;
    for k in 0..12 {
        sin += term_s;
        cos += term_c;
        let k = k as f64;
        term_s *= -y2 / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        term_c *= -y2 / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
    }
    (sin, cos_sign * cos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_matches_libm_closely() {
        for i in -100..=100 {
            let x = i as f64 * std::f64::consts::PI / 100.0;
            let (s, c) = sin_cos(x);
            assert!((s - x.sin()).abs() < 1e-12, "{x}");
            assert!((c - x.cos()).abs() < 1e-12, "{x}");
        }
    }

    #[test]
    fn rng_is_reproducible() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(7);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.unit())));
    }
}
