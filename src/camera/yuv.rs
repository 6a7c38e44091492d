//! Colour conversions for cameras that deliver YUV (V4L2 webcams). PURE.

use crate::rgbd::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum YuvError {
    #[error(
        "YUYV frame {width}x{height} with {stride} bytes per row needs {needed} bytes, got {got}"
    )]
    ShortFrame {
        width: usize,
        height: usize,
        stride: usize,
        needed: usize,
        got: usize,
    },
    #[error("YUYV needs an even width, got {0}")]
    OddWidth(usize),
}

/// BT.601 limited-range YCbCr → RGB8 for one pixel, in 16.16 fixed point with rounding.
#[inline]
fn rgb_from_ycbcr(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let c = (y as i32 - 16) * 76_309; // 1.164383 · 2^16
    let d = cb as i32 - 128;
    let e = cr as i32 - 128;
    let clamp = |v: i32| ((v + 32_768) >> 16).clamp(0, 255) as u8;
    [
        clamp(c + 104_597 * e),             // 1.596027
        clamp(c - 25_675 * d - 53_279 * e), // 0.391762, 0.812968
        clamp(c + 132_201 * d),             // 2.017232
    ]
}

/// Converts a packed YUYV 4:2:2 frame (Y0 U Y1 V per pixel pair), the usual raw format of UVC
/// cameras, to RGB8. `stride` is the bytes per row the driver reports.
pub fn rgb_from_yuyv(
    width: usize,
    height: usize,
    stride: usize,
    bytes: &[u8],
) -> Result<RgbImage, YuvError> {
    if !width.is_multiple_of(2) {
        return Err(YuvError::OddWidth(width));
    }
    let needed = if height == 0 {
        0
    } else {
        stride * (height - 1) + width * 2
    };
    if stride < width * 2 || bytes.len() < needed {
        return Err(YuvError::ShortFrame {
            width,
            height,
            stride,
            needed,
            got: bytes.len(),
        });
    }
    let mut rgb = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        let line = &bytes[row * stride..row * stride + width * 2];
        for quad in line.chunks_exact(4) {
            rgb.extend_from_slice(&rgb_from_ycbcr(quad[0], quad[1], quad[3]));
            rgb.extend_from_slice(&rgb_from_ycbcr(quad[2], quad[1], quad[3]));
        }
    }
    Ok(RgbImage {
        width,
        height,
        data: rgb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference in f64 from the BT.601 definition.
    fn reference(y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let y = (y as f64 - 16.0) * 255.0 / 219.0;
        let cb = (cb as f64 - 128.0) * 255.0 / 224.0;
        let cr = (cr as f64 - 128.0) * 255.0 / 224.0;
        let r = y + 1.402 * cr;
        let g = y - 0.344136 * cb - 0.714136 * cr;
        let b = y + 1.772 * cb;
        [r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8)
    }

    #[test]
    fn matches_bt601_within_one_level() {
        let mut seed = 0x2545_f491_u32;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let [y, cb, cr, _] = seed.to_le_bytes();
            let got = rgb_from_ycbcr(y, cb, cr);
            let want = reference(y, cb, cr);
            for k in 0..3 {
                assert!(
                    (got[k] as i32 - want[k] as i32).abs() <= 1,
                    "{y} {cb} {cr}: {got:?} vs {want:?}"
                );
            }
        }
        assert_eq!(rgb_from_ycbcr(16, 128, 128), [0, 0, 0]);
        assert_eq!(rgb_from_ycbcr(235, 128, 128), [255, 255, 255]);
    }

    #[test]
    fn yuyv_frame_with_padding() {
        // 4x2 pixels, rows padded to 12 bytes: black/white pairs, then a red pair (BT.601 red).
        let bytes = [
            16, 128, 235, 128, 235, 128, 16, 128, 0xAA, 0xAA, 0xAA, 0xAA, //
            81, 90, 81, 240, 16, 128, 16, 128, 0xAA, 0xAA, 0xAA, 0xAA,
        ];
        let img = rgb_from_yuyv(4, 2, 12, &bytes).unwrap();
        assert_eq!(img.pixel(0, 0), Some([0, 0, 0]));
        assert_eq!(img.pixel(1, 0), Some([255, 255, 255]));
        assert_eq!(img.pixel(2, 0), Some([255, 255, 255]));
        let red = img.pixel(0, 1).unwrap();
        assert!(red[0] >= 254 && red[1] <= 1 && red[2] <= 1, "{red:?}");
        assert!(rgb_from_yuyv(4, 2, 12, &bytes[..15]).is_err());
        assert!(rgb_from_yuyv(3, 2, 12, &bytes).is_err());
    }
}
