//! Conversions from what sensors and datasets store into `DepthMm`, and the compact
//! 3-bytes-per-pixel uint24 storage format.
//!
//! Rounding rules:
//! - RealSense Z16: when the depth scale is a power of ten (D4xx 0.001 m, D405 0.0001 m, …) the
//!   conversion is integer math: a multiply when one unit is a whole number of millimetres
//!   (exact), a division rounded half up otherwise (0.0001 m: raw 15 → 2 mm). Any other scale is
//!   converted in f64 and rounded to the nearest millimetre, halves away from zero.
//! - Float metres truncate toward zero after an f32 multiply by 1000, as SpatialBot's ZoeDepth
//!   export does (`(depth_m * 1000).astype(np.uint16)`), but NaN, ±inf and negative values become
//!   0 ("no data") and large values saturate at `DEPTH_MM_MAX` instead of wrapping.
//! - KITTI u16 (value / 256 = metres): `value * 1000 / 256` rounded half up.

use super::frame::{DepthMm, DEPTH_MM_MAX};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DepthError {
    #[error("{what}: expected {expected} values for {width}x{height}, found {found}")]
    LengthMismatch {
        what: &'static str,
        width: usize,
        height: usize,
        expected: usize,
        found: usize,
    },
    #[error("depth scale {0} m per unit is not a positive finite number; use the value the camera reports (D4xx: 0.001, D405: 0.0001)")]
    BadDepthScale(f64),
    #[error("image size {width}x{height} overflows memory")]
    TooLarge { width: usize, height: usize },
}

/// Bytes per pixel of the uint24 storage format.
pub const UINT24_BYTES_PER_PIXEL: usize = 3;

fn pixel_count(width: usize, height: usize) -> Result<usize, DepthError> {
    width
        .checked_mul(height)
        .ok_or(DepthError::TooLarge { width, height })
}

fn check_len(
    what: &'static str,
    width: usize,
    height: usize,
    per_pixel: usize,
    found: usize,
) -> Result<(), DepthError> {
    let expected = pixel_count(width, height)?
        .checked_mul(per_pixel)
        .ok_or(DepthError::TooLarge { width, height })?;
    if found != expected {
        return Err(DepthError::LengthMismatch {
            what,
            width,
            height,
            expected,
            found,
        });
    }
    Ok(())
}

/// How one Z16 unit turns into millimetres.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Z16Scale {
    /// One unit is this many whole millimetres.
    Multiply(u32),
    /// One unit is 1/this of a millimetre.
    Divide(u32),
    /// Anything else: millimetres per unit.
    Float(f64),
}

fn z16_scale(depth_scale_m: f64) -> Result<Z16Scale, DepthError> {
    if !(depth_scale_m.is_finite() && depth_scale_m > 0.0) {
        return Err(DepthError::BadDepthScale(depth_scale_m));
    }
    let mm_per_unit = depth_scale_m * 1000.0;
    // Cameras report the scale as an f32 (0.001 becomes 0.0010000000475), hence the tolerance.
    for exp in -6i32..=6 {
        let power = 10f64.powi(exp);
        if ((mm_per_unit - power) / power).abs() < 1e-6 {
            return Ok(if exp >= 0 {
                Z16Scale::Multiply(10u32.pow(exp as u32))
            } else {
                Z16Scale::Divide(10u32.pow((-exp) as u32))
            });
        }
    }
    Ok(Z16Scale::Float(mm_per_unit))
}

impl DepthMm {
    /// RealSense Z16 raw units with the camera's depth scale (metres per unit). 0 stays 0.
    pub fn from_z16(
        width: usize,
        height: usize,
        raw: &[u16],
        depth_scale_m: f64,
    ) -> Result<Self, DepthError> {
        check_len("Z16 depth", width, height, 1, raw.len())?;
        let data: Vec<u32> = match z16_scale(depth_scale_m)? {
            Z16Scale::Multiply(m) => raw
                .iter()
                .map(|&v| (v as u64 * m as u64).min(DEPTH_MM_MAX as u64) as u32)
                .collect(),
            Z16Scale::Divide(d) => raw.iter().map(|&v| (v as u32 + d / 2) / d).collect(),
            Z16Scale::Float(mm_per_unit) => raw
                .iter()
                .map(|&v| (v as f64 * mm_per_unit).round().min(DEPTH_MM_MAX as f64) as u32)
                .collect(),
        };
        Self::from_mm(width, height, data).ok_or(DepthError::TooLarge { width, height })
    }

    /// Float metres (NYU, ZoeDepth, Depth Anything). NaN, ±inf and negative values → 0.
    pub fn from_metres_f32(
        width: usize,
        height: usize,
        metres: &[f32],
    ) -> Result<Self, DepthError> {
        check_len("float depth", width, height, 1, metres.len())?;
        let data: Vec<u32> = metres
            .iter()
            .map(|&m| {
                if !m.is_finite() || m <= 0.0 {
                    0
                } else {
                    // `as` truncates toward zero and saturates at u32::MAX; from_mm clamps further.
                    (m * 1000.0f32) as u32
                }
            })
            .collect();
        Self::from_mm(width, height, data).ok_or(DepthError::TooLarge { width, height })
    }

    /// KITTI-style u16 where value / 256 is metres. 0 ("no data") stays 0.
    pub fn from_kitti_u16(width: usize, height: usize, raw: &[u16]) -> Result<Self, DepthError> {
        check_len("KITTI depth", width, height, 1, raw.len())?;
        // v * 1000 / 256 = v * 125 / 32
        let data: Vec<u32> = raw.iter().map(|&v| (v as u32 * 125 + 16) / 32).collect();
        Self::from_mm(width, height, data).ok_or(DepthError::TooLarge { width, height })
    }

    /// The uint24 storage format: 3 little-endian bytes per pixel, row-major.
    pub fn to_uint24_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.as_slice().len() * UINT24_BYTES_PER_PIXEL];
        for (dst, &v) in out
            .chunks_exact_mut(UINT24_BYTES_PER_PIXEL)
            .zip(self.as_slice())
        {
            let b = v.to_le_bytes();
            dst.copy_from_slice(&b[..3]);
        }
        out
    }

    /// Reads the uint24 storage format written by `to_uint24_bytes`.
    pub fn from_uint24_bytes(
        width: usize,
        height: usize,
        bytes: &[u8],
    ) -> Result<Self, DepthError> {
        check_len(
            "uint24 depth bytes",
            width,
            height,
            UINT24_BYTES_PER_PIXEL,
            bytes.len(),
        )?;
        let data: Vec<u32> = bytes
            .chunks_exact(UINT24_BYTES_PER_PIXEL)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
            .collect();
        Self::from_mm(width, height, data).ok_or(DepthError::TooLarge { width, height })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z16_d4xx_is_identity_and_d405_rounds() {
        let d = DepthMm::from_z16(4, 1, &[0, 1, 1500, 65535], 0.001).unwrap();
        assert_eq!(d.as_slice(), &[0, 1, 1500, 65535]);
        let f32_scale = 0.001f32 as f64;
        assert_eq!(
            DepthMm::from_z16(1, 1, &[1234], f32_scale)
                .unwrap()
                .as_slice(),
            &[1234]
        );
        let d = DepthMm::from_z16(5, 1, &[0, 4, 5, 15, 65535], 0.0001).unwrap();
        assert_eq!(d.as_slice(), &[0, 0, 1, 2, 6554]);
        let d = DepthMm::from_z16(2, 1, &[3, 65535], 0.01).unwrap();
        assert_eq!(d.as_slice(), &[30, 655350]);
    }

    #[test]
    fn z16_other_scales_round_to_nearest() {
        let d = DepthMm::from_z16(3, 1, &[1, 2, 3], 0.00025).unwrap();
        assert_eq!(d.as_slice(), &[0, 1, 1]);
        let d = DepthMm::from_z16(1, 1, &[65535], 1.0).unwrap();
        assert_eq!(d.as_slice(), &[65_535_000u32.min(DEPTH_MM_MAX)]);
    }

    #[test]
    fn z16_rejects_bad_scale_and_length() {
        assert!(matches!(
            DepthMm::from_z16(1, 1, &[1], 0.0),
            Err(DepthError::BadDepthScale(_))
        ));
        assert!(matches!(
            DepthMm::from_z16(1, 1, &[1], f64::NAN),
            Err(DepthError::BadDepthScale(_))
        ));
        assert!(matches!(
            DepthMm::from_z16(2, 1, &[1], 0.001),
            Err(DepthError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn metres_follow_reference_truncation_and_clean_bad_values() {
        let m = [
            1.2345f32,
            0.0015,
            70.0,
            -0.5,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e9,
        ];
        let d = DepthMm::from_metres_f32(8, 1, &m).unwrap();
        assert_eq!(d.as_slice(), &[1234, 1, 70000, 0, 0, 0, 0, DEPTH_MM_MAX]);
    }

    #[test]
    fn kitti_rounds_half_up() {
        let d = DepthMm::from_kitti_u16(4, 1, &[0, 256, 1, 65535]).unwrap();
        // 1/256 m = 3.906 mm; 65535/256 m = 255996.09 mm
        assert_eq!(d.as_slice(), &[0, 1000, 4, 255996]);
    }

    #[test]
    fn uint24_round_trips_exactly_and_checks_length() {
        let values = vec![0, 1, 255, 256, 65535, 65536, 1 << 20, DEPTH_MM_MAX];
        let d = DepthMm::from_mm(4, 2, values).unwrap();
        let bytes = d.to_uint24_bytes();
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[3..6], &[1, 0, 0]);
        assert_eq!(&bytes[21..24], &[255, 255, 255]);
        assert_eq!(DepthMm::from_uint24_bytes(4, 2, &bytes).unwrap(), d);
        assert!(matches!(
            DepthMm::from_uint24_bytes(4, 2, &bytes[1..]),
            Err(DepthError::LengthMismatch { .. })
        ));
    }
}
