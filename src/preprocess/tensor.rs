//! f32 CHW tensors, normalisation as the Hugging Face processors compute it, and `.npy` bytes.

use crate::rgbd::RgbImage;

/// A dense f32 tensor, row-major (C order).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// Little-endian `.npy` (format 1.0) bytes of this tensor, dtype `<f4`.
    pub fn to_npy_bytes(&self) -> Vec<u8> {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        // magic (6) + version (2) + header length (2) + header, padded to 64 bytes, ending in '\n'.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + self.data.len() * 4);
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for v in &self.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Sum in f64 (for checks and reports).
    pub fn sum(&self) -> f64 {
        self.data.iter().map(|&v| v as f64).sum()
    }
}

/// Per-channel lookup tables from u8 to the normalised f32 the reference computes:
/// `x = f32(u8 * (1/255 as f64))`, then `(x − f32(mean)) / f32(std)` in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalizer {
    lut: [[f32; 256]; 3],
}

impl Normalizer {
    pub fn new(mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut lut = [[0f32; 256]; 3];
        let rescale = 1.0f64 / 255.0;
        for c in 0..3 {
            for (v, slot) in lut[c].iter_mut().enumerate() {
                let x = (v as f64 * rescale) as f32;
                *slot = (x - mean[c]) / std[c];
            }
        }
        Self { lut }
    }

    /// `[3, h, w]` from an interleaved RGB image, writing into `out` (resized to fit).
    pub fn chw_into(&self, img: &RgbImage, out: &mut Vec<f32>) {
        let plane = img.width * img.height;
        out.clear();
        out.resize(plane * 3, 0.0);
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let [lr, lg, lb] = &self.lut;
        for (((px, r), g), b) in img.data.chunks_exact(3).zip(r).zip(g).zip(b) {
            *r = lr[px[0] as usize];
            *g = lg[px[1] as usize];
            *b = lb[px[2] as usize];
        }
    }

    /// One interleaved RGB row into the same row of the three planes.
    #[inline]
    pub fn planar_row(&self, rgb: &[u8], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
        let [lr, lg, lb] = &self.lut;
        for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
            *r = lr[px[0] as usize];
            *g = lg[px[1] as usize];
            *b = lb[px[2] as usize];
        }
    }

    pub fn chw(&self, img: &RgbImage) -> Tensor {
        let mut data = Vec::new();
        self.chw_into(img, &mut data);
        Tensor {
            shape: vec![3, img.height, img.width],
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siglip_values() {
        let n = Normalizer::new([0.5; 3], [0.5; 3]);
        let img = RgbImage::new(3, 1, vec![0, 0, 0, 127, 127, 127, 255, 255, 255]).unwrap();
        let t = n.chw(&img);
        assert_eq!(t.shape, vec![3, 1, 3]);
        assert_eq!(
            &t.data[..3],
            &[-1.0, (127.0f64 / 255.0) as f32 * 2.0 - 1.0, 1.0]
        );
        assert!((t.data[1] + 0.0039216).abs() < 1e-6);
    }

    #[test]
    fn npy_header_is_aligned() {
        let t = Tensor {
            shape: vec![3, 2, 2],
            data: vec![1.5; 12],
        };
        let b = t.to_npy_bytes();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(b[10 + hlen - 1], b'\n');
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (3, 2, 2)"), "{header}");
        assert_eq!(b.len(), 10 + hlen + 48);
        assert_eq!(&b[10 + hlen..10 + hlen + 4], &1.5f32.to_le_bytes());
    }
}
