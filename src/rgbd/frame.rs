//! Image buffers: 8-bit RGB colour and uint24 millimetre depth.

/// The largest depth a `DepthMm` pixel can hold: 2^24 − 1 mm (16.7 km).
pub const DEPTH_MM_MAX: u32 = (1 << 24) - 1;

/// Depth in millimetres, one `u32` per pixel, row-major, always within `0..=DEPTH_MM_MAX`.
/// 0 means "no data".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthMm {
    width: usize,
    height: usize,
    data: Vec<u32>,
}

impl DepthMm {
    /// An all-zero ("no data") depth image.
    pub fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height],
        }
    }

    /// Wraps millimetre values, saturating each at `DEPTH_MM_MAX`.
    /// Returns `None` when `data.len() != width * height`.
    pub fn from_mm(width: usize, height: usize, mut data: Vec<u32>) -> Option<Self> {
        if data.len() != width.checked_mul(height)? {
            return None;
        }
        for v in &mut data {
            *v = (*v).min(DEPTH_MM_MAX);
        }
        Some(Self {
            width,
            height,
            data,
        })
    }

    /// `from_mm` for values the caller already keeps within `0..=DEPTH_MM_MAX`: no saturating
    /// pass over the image.
    pub(crate) fn from_mm_in_range(width: usize, height: usize, data: Vec<u32>) -> Option<Self> {
        debug_assert!(data.iter().all(|&v| v <= DEPTH_MM_MAX));
        if data.len() != width.checked_mul(height)? {
            return None;
        }
        Some(Self {
            width,
            height,
            data,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn as_slice(&self) -> &[u32] {
        &self.data
    }
    /// Millimetres at column `x`, row `y`; `None` outside the image.
    pub fn get(&self, x: usize, y: usize) -> Option<u32> {
        if x < self.width && y < self.height {
            Some(self.data[y * self.width + x])
        } else {
            None
        }
    }
    /// Sets one pixel, saturating at `DEPTH_MM_MAX`. Out-of-range coordinates are ignored.
    pub fn set(&mut self, x: usize, y: usize, mm: u32) {
        if x < self.width && y < self.height {
            self.data[y * self.width + x] = mm.min(DEPTH_MM_MAX);
        }
    }
    pub fn into_vec(self) -> Vec<u32> {
        self.data
    }
}

/// 8-bit RGB, interleaved, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Returns `None` when `data.len() != width * height * 3`.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Option<Self> {
        if data.len() != width.checked_mul(height)?.checked_mul(3)? {
            return None;
        }
        Some(Self {
            width,
            height,
            data,
        })
    }

    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        let mut data = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            data.extend_from_slice(&rgb);
        }
        Self {
            width,
            height,
            data,
        }
    }

    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            Some([self.data[i], self.data[i + 1], self.data[i + 2]])
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_saturates_and_checks_length() {
        let d = DepthMm::from_mm(2, 1, vec![5, u32::MAX]).unwrap();
        assert_eq!(d.as_slice(), &[5, DEPTH_MM_MAX]);
        assert!(DepthMm::from_mm(2, 2, vec![0; 3]).is_none());
        assert_eq!(d.get(2, 0), None);
    }

    #[test]
    fn rgb_checks_length() {
        assert!(RgbImage::new(2, 2, vec![0; 11]).is_none());
        let img = RgbImage::filled(2, 1, [1, 2, 3]);
        assert_eq!(img.pixel(1, 0), Some([1, 2, 3]));
    }
}
