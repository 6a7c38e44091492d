//! The one place that decides which SIMD kernels run: the instruction sets the kernels of
//! `rgbd::kernels` (depth packing, registration) and `preprocess::kernels` (the Pillow-exact
//! resampler) are written for, and which of them this CPU has.
//!
//! Each kernel module has a portable implementation (plain Rust, every target, the reference the
//! others are tested against bit for bit) and per-architecture ones, and picks among them by an
//! [`Isa`]. Only this module makes an `Isa`, and only for an instruction set the running CPU
//! has, so holding one is what lets a kernel module call its `#[target_feature]` code.
//!
//! Levels, each including the ones before it on its architecture:
//! - x86_64: portable → SSSE3 → AVX2 → AVX-512 (F/BW/VL/DQ, with FMA) → AVX-512 with VBMI;
//! - aarch64: portable → NEON. NEON (Advanced SIMD) is part of the aarch64 baseline, so on
//!   `aarch64-unknown-linux-gnu` it is known at compile time and nothing is probed.
//!
//! `SBE_ISA=<name>` in the environment (a [`Level::name`]) lowers the level [`Isa::detected`]
//! returns, for timing one implementation against another on the same machine (e.g.
//! `SBE_ISA=portable`). A name the CPU cannot run, or an unknown one, is ignored with a warning.
//! It is read once, at the first detection.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Plain Rust; every target.
    Portable,
    /// x86_64 SSSE3.
    Ssse3,
    /// x86_64 AVX2 (and SSSE3).
    Avx2,
    /// x86_64 AVX-512 F, BW, VL and DQ, with FMA (and AVX2).
    Avx512,
    /// x86_64 `Avx512` plus AVX-512 VBMI (byte permutes).
    Avx512Vbmi,
    /// aarch64 Advanced SIMD.
    Neon,
}

impl Level {
    const ALL: [Level; 6] = [
        Level::Portable,
        Level::Ssse3,
        Level::Avx2,
        Level::Avx512,
        Level::Avx512Vbmi,
        Level::Neon,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Ssse3 => "ssse3",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Avx512Vbmi => "avx512vbmi",
            Level::Neon => "neon",
        }
    }

    /// Levels of this target's architecture, lowest first.
    fn of_this_target() -> &'static [Level] {
        if cfg!(target_arch = "x86_64") {
            &Level::ALL[..5]
        } else if cfg!(all(target_arch = "aarch64", target_feature = "neon")) {
            &[Level::Portable, Level::Neon]
        } else {
            &Level::ALL[..1]
        }
    }
}

/// A [`Level`] the running CPU supports. Only [`Isa::detected`], [`Isa::all_runnable`] and
/// [`Isa::PORTABLE`] make one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Isa(Level);

/// The detected level's index in `Level::ALL` plus one; 0 until the first detection.
static DETECTED: AtomicU8 = AtomicU8::new(0);

impl Isa {
    /// The portable kernels, which every CPU runs.
    pub const PORTABLE: Isa = Isa(Level::Portable);

    /// The highest level this CPU runs, lowered by `SBE_ISA` when that names a lower one.
    /// Detected once; afterwards one atomic load.
    #[inline]
    pub fn detected() -> Isa {
        match DETECTED.load(Ordering::Relaxed) {
            0 => {
                let isa = Self::detect_with_override();
                let index = Level::ALL.iter().position(|&l| l == isa.0).unwrap_or(0);
                DETECTED.store(index as u8 + 1, Ordering::Relaxed);
                isa
            }
            n => Isa(Level::ALL[(n as usize - 1).min(Level::ALL.len() - 1)]),
        }
    }

    /// Every level this CPU runs, portable first, regardless of `SBE_ISA` (what the tests that
    /// compare implementations iterate over).
    pub fn all_runnable() -> Vec<Isa> {
        let top = Self::hardware();
        Level::of_this_target()
            .iter()
            .filter(|&&l| l <= top.0)
            .map(|&l| Isa(l))
            .collect()
    }

    pub const fn level(self) -> Level {
        self.0
    }

    pub const fn name(self) -> &'static str {
        self.0.name()
    }

    fn detect_with_override() -> Isa {
        let top = Self::hardware();
        let Ok(wanted) = std::env::var("SBE_ISA") else {
            return top;
        };
        let runnable = Self::all_runnable();
        match runnable.iter().find(|isa| isa.name() == wanted.trim()) {
            Some(&isa) => isa,
            None => {
                let names: Vec<&str> = runnable.iter().map(|i| i.name()).collect();
                tracing::warn!(
                    "SBE_ISA={wanted:?} is not one of the levels this CPU runs ({}); using {}",
                    names.join(", "),
                    top.name()
                );
                top
            }
        }
    }

    /// The highest level the hardware supports.
    fn hardware() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let level = if !has!("ssse3") {
                Level::Portable
            } else if !has!("avx2") {
                Level::Ssse3
            } else if !(has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vl")
                && has!("avx512dq")
                && has!("fma"))
            {
                Level::Avx2
            } else if !has!("avx512vbmi") {
                Level::Avx512
            } else {
                Level::Avx512Vbmi
            };
            Isa(level)
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        {
            Isa(Level::Neon)
        }
        #[cfg(not(any(
            target_arch = "x86_64",
            all(target_arch = "aarch64", target_feature = "neon")
        )))]
        {
            Isa(Level::Portable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_levels_start_portable_and_end_at_the_hardware() {
        let all = Isa::all_runnable();
        assert_eq!(all.first(), Some(&Isa::PORTABLE));
        assert_eq!(all.last(), Some(&Isa::hardware()));
        assert!(all.windows(2).all(|w| w[0].level() < w[1].level()));
        assert!(all.contains(&Isa::detected()));
        assert_eq!(Isa::detected(), Isa::detected());
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        assert_eq!(Isa::hardware().level(), Level::Neon);
    }
}
