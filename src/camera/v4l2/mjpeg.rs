//! Motion-JPEG frames to RGB8. PURE.
//!
//! UVC cameras may send MJPEG frames without a DHT segment: the UVC payload specification lets
//! them rely on the default Huffman tables of the JPEG standard (ITU T.81 Annex K.3), which a
//! JPEG decoder does not assume. [`with_default_huffman_tables`] puts them back.

use std::borrow::Cow;

use crate::rgbd::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum MjpegError {
    #[error("MJPEG frame of {0} bytes does not start with a JPEG SOI marker (the camera sent something that is not a JPEG)")]
    NotJpeg(usize),
    #[error("MJPEG frame is truncated inside its headers at byte {0}")]
    Truncated(usize),
    #[error("MJPEG frame does not decode: {0}")]
    Decode(String),
    #[error("MJPEG frame is {got_width}x{got_height}, the camera was set to {width}x{height}")]
    WrongSize {
        width: usize,
        height: usize,
        got_width: usize,
        got_height: usize,
    },
}

const DHT: u8 = 0xC4;
const SOS: u8 = 0xDA;
const SOI: u8 = 0xD8;

/// Table class/id byte, 16 code counts by length, then the symbols (T.81 Table K.3 to K.6).
const DC_LUMINANCE: (u8, [u8; 16], &[u8]) = (
    0x00,
    [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const DC_CHROMINANCE: (u8, [u8; 16], &[u8]) = (
    0x01,
    [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const AC_LUMINANCE: (u8, [u8; 16], &[u8]) = (
    0x10,
    [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
    &[
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
);
const AC_CHROMINANCE: (u8, [u8; 16], &[u8]) = (
    0x11,
    [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    &[
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
);

/// One DHT segment (marker included) holding the four Annex K tables.
pub fn default_dht_segment() -> Vec<u8> {
    let tables = [DC_LUMINANCE, AC_LUMINANCE, DC_CHROMINANCE, AC_CHROMINANCE];
    let body_len: usize = tables.iter().map(|(_, _, v)| 17 + v.len()).sum();
    let length = (body_len + 2) as u16;
    let mut segment = Vec::with_capacity(body_len + 4);
    segment.extend_from_slice(&[0xFF, DHT]);
    segment.extend_from_slice(&length.to_be_bytes());
    for (class_id, counts, symbols) in tables {
        segment.push(class_id);
        segment.extend_from_slice(&counts);
        segment.extend_from_slice(symbols);
    }
    segment
}

/// The frame unchanged when it defines Huffman tables before its scan, otherwise a copy with
/// the default tables inserted just before the SOS marker.
pub fn with_default_huffman_tables(jpeg: &[u8]) -> Result<Cow<'_, [u8]>, MjpegError> {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != SOI {
        return Err(MjpegError::NotJpeg(jpeg.len()));
    }
    let mut at = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes (T.81 B.1.1.2).
        while at < jpeg.len() && jpeg[at] == 0xFF && jpeg.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if at + 4 > jpeg.len() || jpeg[at] != 0xFF {
            return Err(MjpegError::Truncated(at));
        }
        let marker = jpeg[at + 1];
        if marker == DHT {
            return Ok(Cow::Borrowed(jpeg));
        }
        if marker == SOS {
            let dht = default_dht_segment();
            let mut fixed = Vec::with_capacity(jpeg.len() + dht.len());
            fixed.extend_from_slice(&jpeg[..at]);
            fixed.extend_from_slice(&dht);
            fixed.extend_from_slice(&jpeg[at..]);
            return Ok(Cow::Owned(fixed));
        }
        let length = u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
        if length < 2 {
            return Err(MjpegError::Truncated(at));
        }
        at += 2 + length;
    }
}

/// Decodes one MJPEG frame to RGB8 and checks it has the size the camera was set to.
pub fn rgb_from_mjpeg(width: usize, height: usize, jpeg: &[u8]) -> Result<RgbImage, MjpegError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let jpeg = with_default_huffman_tables(jpeg)?;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(8192)
        .set_max_height(8192);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(jpeg.as_ref(), options);
    let data = decoder
        .decode()
        .map_err(|e| MjpegError::Decode(format!("{e:?}")))?;
    let (got_width, got_height) = decoder
        .dimensions()
        .ok_or_else(|| MjpegError::Decode("no frame header".into()))?;
    if (got_width, got_height) != (width, height) {
        return Err(MjpegError::WrongSize {
            width,
            height,
            got_width,
            got_height,
        });
    }
    RgbImage::new(width, height, data)
        .ok_or_else(|| MjpegError::Decode("decoder returned a buffer of the wrong size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dht_segment_layout() {
        let seg = default_dht_segment();
        assert_eq!(&seg[..2], &[0xFF, 0xC4]);
        assert_eq!(u16::from_be_bytes([seg[2], seg[3]]) as usize, seg.len() - 2);
        for (_, counts, symbols) in [DC_LUMINANCE, AC_LUMINANCE, DC_CHROMINANCE, AC_CHROMINANCE] {
            assert_eq!(
                counts.iter().map(|&c| c as usize).sum::<usize>(),
                symbols.len()
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_jpeg() {
        assert!(matches!(
            with_default_huffman_tables(b"hello"),
            Err(MjpegError::NotJpeg(5))
        ));
        assert!(matches!(
            with_default_huffman_tables(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]),
            Err(MjpegError::Truncated(_))
        ));
        assert!(rgb_from_mjpeg(2, 2, &[0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0]).is_err());
    }
}
