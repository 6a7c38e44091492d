//! Pad to square, shortest-edge sizing and centre crop, with the reference's integer rules.

use crate::rgbd::RgbImage;

/// Where `expand2square` pastes a `width`×`height` image on its `max(width, height)` square:
/// `(x, y)` with floor division, as the reference computes it.
pub fn square_paste_offset(width: usize, height: usize) -> (usize, usize) {
    if width >= height {
        (0, (width - height) / 2)
    } else {
        ((height - width) / 2, 0)
    }
}

/// The reference's `expand2square`: the image on a `max(w, h)` square filled with `fill`.
/// A square image is returned unchanged.
pub fn expand2square(img: &RgbImage, fill: [u8; 3]) -> RgbImage {
    if img.width == img.height {
        return img.clone();
    }
    let side = img.width.max(img.height);
    let mut out = RgbImage::filled(side, side, fill);
    paste(img, &mut out, square_paste_offset(img.width, img.height));
    out
}

/// Copies `src` into `dst` with its top-left corner at `(x, y)`; whatever falls outside is
/// dropped.
pub fn paste(src: &RgbImage, dst: &mut RgbImage, (x, y): (usize, usize)) {
    if x >= dst.width || y >= dst.height {
        return;
    }
    let w = src.width.min(dst.width - x);
    let dst_stride = dst.width * 3;
    for (row, src_row) in src
        .data
        .chunks_exact(src.width * 3)
        .take(dst.height - y)
        .enumerate()
    {
        let start = (y + row) * dst_stride + x * 3;
        dst.data[start..start + w * 3].copy_from_slice(&src_row[..w * 3]);
    }
}

/// Hugging Face `CLIPImageProcessor`'s output size for `shortest_edge = size`:
/// the short side becomes `size`, the long side `int(size * long / short)`. Returns `(w, h)`.
pub fn shortest_edge_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = if short == 0 {
        0
    } else {
        ((size * long) as f64 / short as f64) as usize
    };
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// Hugging Face `center_crop` offsets: `((w − cw) // 2, (h − ch) // 2)`, when the crop fits.
pub fn center_crop_offset(
    width: usize,
    height: usize,
    crop_w: usize,
    crop_h: usize,
) -> Option<(usize, usize)> {
    (crop_w <= width && crop_h <= height).then(|| ((width - crop_w) / 2, (height - crop_h) / 2))
}

/// The `crop_w`×`crop_h` window at `(x, y)`; `None` if it does not fit.
pub fn crop(
    img: &RgbImage,
    (x, y): (usize, usize),
    crop_w: usize,
    crop_h: usize,
) -> Option<RgbImage> {
    if x.checked_add(crop_w)? > img.width || y.checked_add(crop_h)? > img.height {
        return None;
    }
    let stride = img.width * 3;
    let mut data = Vec::with_capacity(crop_w * crop_h * 3);
    for row in y..y + crop_h {
        let start = row * stride + x * 3;
        data.extend_from_slice(&img.data[start..start + crop_w * 3]);
    }
    RgbImage::new(crop_w, crop_h, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_offsets_floor() {
        assert_eq!(square_paste_offset(640, 480), (0, 80));
        assert_eq!(square_paste_offset(5, 2), (0, 1));
        assert_eq!(square_paste_offset(2, 5), (1, 0));
        assert_eq!(square_paste_offset(3, 3), (0, 0));
    }

    #[test]
    fn expand_pads_with_fill() {
        let img = RgbImage::filled(3, 1, [9, 9, 9]);
        let sq = expand2square(&img, [1, 2, 3]);
        assert_eq!((sq.width, sq.height), (3, 3));
        assert_eq!(sq.pixel(0, 0), Some([1, 2, 3]));
        assert_eq!(sq.pixel(2, 1), Some([9, 9, 9]));
        assert_eq!(sq.pixel(1, 2), Some([1, 2, 3]));
    }

    #[test]
    fn clip_sizes_match_hf() {
        assert_eq!(shortest_edge_size(640, 480, 336), (448, 336));
        assert_eq!(shortest_edge_size(480, 640, 336), (336, 448));
        assert_eq!(shortest_edge_size(1000, 3, 336), (112000, 336));
        assert_eq!(shortest_edge_size(7, 5, 336), (470, 336));
        assert_eq!(center_crop_offset(448, 336, 336, 336), Some((56, 0)));
        assert_eq!(center_crop_offset(337, 336, 336, 336), Some((0, 0)));
        assert_eq!(center_crop_offset(10, 10, 11, 10), None);
    }

    #[test]
    fn crop_takes_the_window() {
        let img = RgbImage::new(3, 2, (0..18).collect()).unwrap();
        let c = crop(&img, (1, 1), 2, 1).unwrap();
        assert_eq!(c.data, vec![12, 13, 14, 15, 16, 17]);
        assert!(crop(&img, (2, 0), 2, 1).is_none());
    }
}
