//! SpatialBot depth packing: millimetres → the 3-channel uint8 image SpatialBot models eat,
//! and the exact inverse.
//!
//! `Encoding::SpatialBot` is what the released code computes:
//! `R = ((d >> 10) & 63) << 2`, `G = ((d >> 5) & 31) << 3`, `B = (d & 31) << 3`, exact for
//! 0..=65535 mm. The one deliberate divergence: the reference numpy code wraps depths above
//! 65535 mm modulo 65536 (a wall at 70 m would read as 4.5 m); we saturate them at 65535 and
//! count them in the `PackReport`. `Encoding::Paper` is the paper's 17-bit variant: R carries
//! `(d >> 10) << 1`, range 0..=131071 mm, saturating above.

use super::frame::{DepthMm, RgbImage};
use super::kernels;
use crate::cpu::Isa;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The released SpatialBot code (16 bits, 0..=65535 mm). The checkpoints were trained on it.
    #[default]
    SpatialBot,
    /// The paper's 17-bit variant (0..=131071 mm).
    Paper,
}

impl Encoding {
    /// The largest depth this encoding represents; deeper pixels saturate to it.
    pub const fn max_mm(self) -> u32 {
        match self {
            Encoding::SpatialBot => 65_535,
            Encoding::Paper => 131_071,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Encoding::SpatialBot => "spatialbot",
            Encoding::Paper => "paper",
        }
    }

    /// Left shift applied to `d >> 10` in the R channel.
    const fn coarse_shift(self) -> u32 {
        match self {
            Encoding::SpatialBot => 2,
            Encoding::Paper => 1,
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = PackError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spatialbot" => Ok(Encoding::SpatialBot),
            "paper" => Ok(Encoding::Paper),
            other => Err(PackError::UnknownEncoding(other.to_string())),
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("unknown depth encoding {0:?}; use \"spatialbot\" (the released code) or \"paper\" (17-bit)")]
    UnknownEncoding(String),
    #[error("output buffer holds {found} bytes, {expected} needed (3 per depth pixel)")]
    OutputLength { expected: usize, found: usize },
}

/// What packing did to the depth it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackReport {
    pub encoding: Encoding,
    pub pixels: usize,
    /// Pixels deeper than `encoding.max_mm()`, written as `max_mm()`.
    pub saturated_pixels: usize,
}

/// One pixel. Depths above `encoding.max_mm()` saturate.
#[inline(always)]
pub fn encode_pixel(depth_mm: u32, encoding: Encoding) -> [u8; 3] {
    let d = depth_mm.min(encoding.max_mm());
    [
        ((d >> 10) << encoding.coarse_shift()) as u8,
        (((d >> 5) & 31) << 3) as u8,
        ((d & 31) << 3) as u8,
    ]
}

/// The exact inverse of `encode_pixel` on freshly packed pixels. Low bits that packing leaves
/// zero (and a resize fills) are ignored.
#[inline(always)]
pub fn decode_pixel(rgb: [u8; 3], encoding: Encoding) -> u32 {
    ((rgb[0] as u32 >> encoding.coarse_shift()) << 10)
        | ((rgb[1] as u32 >> 3) << 5)
        | (rgb[2] as u32 >> 3)
}

/// The packing kernel `isa` names for `encoding`: `out.len() == 3 * depth_mm.len()`.
fn pack_slice(isa: Isa, depth_mm: &[u32], encoding: Encoding, out: &mut [u8]) -> usize {
    match encoding {
        Encoding::SpatialBot => kernels::pack_u32::<65_535, 2>(isa, depth_mm, out),
        Encoding::Paper => kernels::pack_u32::<131_071, 1>(isa, depth_mm, out),
    }
}

/// Packs row-major millimetres into interleaved RGB bytes (`out.len() == 3 * depth_mm.len()`).
/// Returns the number of saturated pixels.
pub fn pack_into(depth_mm: &[u32], encoding: Encoding, out: &mut [u8]) -> Result<usize, PackError> {
    let expected = depth_mm.len() * 3;
    if out.len() != expected {
        return Err(PackError::OutputLength {
            expected,
            found: out.len(),
        });
    }
    Ok(pack_slice(Isa::detected(), depth_mm, encoding, out))
}

/// Packs 16-bit millimetres (a RealSense Z16 frame at 1 mm per unit, a 16-bit depth PNG) into
/// interleaved RGB bytes (`out.len() == 3 * depth_mm.len()`). Same bytes as `pack_into` on the
/// same values; nothing saturates in either encoding.
pub fn pack_u16_into(
    depth_mm: &[u16],
    encoding: Encoding,
    out: &mut [u8],
) -> Result<(), PackError> {
    let expected = depth_mm.len() * 3;
    if out.len() != expected {
        return Err(PackError::OutputLength {
            expected,
            found: out.len(),
        });
    }
    match encoding {
        Encoding::SpatialBot => kernels::pack_u16::<2>(Isa::detected(), depth_mm, out),
        Encoding::Paper => kernels::pack_u16::<1>(Isa::detected(), depth_mm, out),
    }
    Ok(())
}

/// Packs a depth image at its native resolution.
pub fn pack(depth: &DepthMm, encoding: Encoding) -> (RgbImage, PackReport) {
    let pixels = depth.as_slice().len();
    let mut data = vec![0u8; pixels * 3];
    let saturated_pixels = pack_slice(Isa::detected(), depth.as_slice(), encoding, &mut data);
    let image = RgbImage {
        width: depth.width(),
        height: depth.height(),
        data,
    };
    (
        image,
        PackReport {
            encoding,
            pixels,
            saturated_pixels,
        },
    )
}

/// Decodes a packed image back to millimetres.
pub fn unpack(image: &RgbImage, encoding: Encoding) -> DepthMm {
    let mm: Vec<u32> = image
        .data
        .chunks_exact(3)
        .map(|p| decode_pixel([p[0], p[1], p[2]], encoding))
        .collect();
    match DepthMm::from_mm(image.width, image.height, mm) {
        Some(d) => d,
        // An RgbImage always holds width * height pixels.
        None => DepthMm::zeros(image.width, image.height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_path_matches_pixel_function() {
        let depth: Vec<u32> = (0..1000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) >> 14)
            .collect();
        for enc in [Encoding::SpatialBot, Encoding::Paper] {
            let mut out = vec![0u8; depth.len() * 3];
            let sat = pack_into(&depth, enc, &mut out).unwrap();
            assert_eq!(sat, depth.iter().filter(|&&d| d > enc.max_mm()).count());
            for (d, px) in depth.iter().zip(out.chunks_exact(3)) {
                assert_eq!(px, encode_pixel(*d, enc));
            }
        }
    }

    #[test]
    fn simd_path_matches_portable_path() {
        let depth: Vec<u32> = (0..16 * 37 + 5)
            .map(|i: u32| i.wrapping_mul(2_654_435_761) >> 14)
            .collect();
        let mut fast = vec![0u8; depth.len() * 3];
        let mut portable = vec![0u8; depth.len() * 3];
        for enc in [Encoding::SpatialBot, Encoding::Paper] {
            let b = pack_slice(Isa::PORTABLE, &depth, enc, &mut portable);
            let a = pack_slice(Isa::detected(), &depth, enc, &mut fast);
            assert_eq!((a, &fast), (b, &portable));
            // Every implementation this CPU runs (the AVX2 narrowing and SSSE3 kernels on x86).
            for isa in Isa::all_runnable() {
                let a = pack_slice(isa, &depth, enc, &mut fast);
                assert_eq!((a, &fast), (b, &portable), "{isa:?} {enc}");
            }
        }
    }

    #[test]
    fn u16_entry_point_matches_u32_path() {
        let mut mm: Vec<u16> = (0..32 * 41 + 13)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 16) as u16)
            .collect();
        mm[..8].copy_from_slice(&[0, 1, 31, 32, 1023, 1024, 65535, 65534]);
        let wide: Vec<u32> = mm.iter().map(|&v| v as u32).collect();
        for enc in [Encoding::SpatialBot, Encoding::Paper] {
            for len in [0, 1, 31, 32, 33, 95, mm.len()] {
                let mut from_u16 = vec![0u8; len * 3];
                let mut from_u32 = vec![1u8; len * 3];
                pack_u16_into(&mm[..len], enc, &mut from_u16).unwrap();
                assert_eq!(pack_into(&wide[..len], enc, &mut from_u32).unwrap(), 0);
                assert_eq!(from_u16, from_u32, "{enc} {len}");
                for (d, px) in mm[..len].iter().zip(from_u16.chunks_exact(3)) {
                    assert_eq!(px, encode_pixel(*d as u32, enc));
                }
            }
        }
    }

    #[test]
    fn saturation_is_counted_wherever_it_falls() {
        let base: Vec<u32> = (0..32 * 9 + 7)
            .map(|i: u32| i.wrapping_mul(2_654_435_761) >> 16)
            .collect();
        for at in [0, 5, 31, 32, 100, 32 * 9 - 1, 32 * 9, base.len() - 1] {
            for deep in [65_536, 65_537, 131_071, 131_072, 16_777_215] {
                let mut depth = base.clone();
                depth[at] = deep;
                depth[(at * 7 + 3) % base.len()] = 65_535;
                for enc in [Encoding::SpatialBot, Encoding::Paper] {
                    let mut out = vec![0u8; depth.len() * 3];
                    let sat = pack_into(&depth, enc, &mut out).unwrap();
                    assert_eq!(sat, (deep > enc.max_mm()) as usize, "{enc} {at} {deep}");
                    for (d, px) in depth.iter().zip(out.chunks_exact(3)) {
                        assert_eq!(px, encode_pixel(*d, enc));
                    }
                }
            }
        }
    }

    #[test]
    fn paper_round_trips_17_bits() {
        for d in [0u32, 1, 1023, 1024, 65535, 65536, 100_000, 131_071] {
            assert_eq!(
                decode_pixel(encode_pixel(d, Encoding::Paper), Encoding::Paper),
                d
            );
        }
        assert_eq!(encode_pixel(131_071, Encoding::Paper), [254, 248, 248]);
        assert_eq!(encode_pixel(200_000, Encoding::Paper), [254, 248, 248]);
    }

    #[test]
    fn wrong_output_length_is_an_error() {
        let mut out = vec![0u8; 5];
        assert!(matches!(
            pack_into(&[1, 2], Encoding::SpatialBot, &mut out),
            Err(PackError::OutputLength { .. })
        ));
    }
}
