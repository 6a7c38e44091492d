//! PNG reading and writing for colour and depth images. Every error names the file.

use std::path::Path;

use crate::limits::{self, LimitError};
use crate::rgbd::{DepthMm, RgbImage};

#[derive(Debug, thiserror::Error)]
pub enum ImageIoError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid PNG: {message}")]
    Decode { path: String, message: String },
    #[error("{path}: not a valid JPEG: {message}")]
    Jpeg { path: String, message: String },
    #[error("{path}: expected {expected}, found {found}")]
    WrongFormat {
        path: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// The header claims more pixels than `crate::limits` allows; nothing was decoded.
    #[error("{0}")]
    TooLarge(LimitError),
    #[error("{path}: depth {value} mm at ({x},{y}) does not fit a 16-bit PNG (max 65535)")]
    DepthTooLarge {
        path: String,
        x: usize,
        y: usize,
        value: u32,
    },
}

struct Decoded {
    width: usize,
    height: usize,
    color: png::ColorType,
    depth: png::BitDepth,
    bytes: Vec<u8>,
}

/// Width and height from a PNG's IHDR chunk (the first chunk after the 8-byte signature),
/// read without decoding anything; `None` when the bytes do not start like a PNG.
pub fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    let head = bytes.get(..24)?;
    if head[..8] != SIGNATURE || &head[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    Some((be(16), be(20)))
}

/// Refuses a PNG whose header claims more pixels than [`limits::MAX_IMAGE_PIXELS`] (or a side
/// over [`limits::MAX_IMAGE_SIDE`]) before any pixel buffer is allocated.
pub fn check_png_size(bytes: &[u8], path: &str) -> Result<(), ImageIoError> {
    if let Some((w, h)) = png_dimensions(bytes) {
        limits::check_image(path, u64::from(w), u64::from(h)).map_err(ImageIoError::TooLarge)?;
    }
    Ok(())
}

fn decode_png(bytes: &[u8], path: &str, expand: bool) -> Result<Decoded, ImageIoError> {
    check_png_size(bytes, path)?;
    let decode_err = |e: png::DecodingError| ImageIoError::Decode {
        path: path.to_string(),
        message: e.to_string(),
    };
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(if expand {
        png::Transformations::EXPAND
    } else {
        png::Transformations::IDENTITY
    });
    let mut reader = decoder.read_info().map_err(decode_err)?;
    // The decoder's own view of the header, checked again: the buffer below is sized from it.
    let (w, h) = (reader.info().width, reader.info().height);
    limits::check_image(path, u64::from(w), u64::from(h)).map_err(ImageIoError::TooLarge)?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(decode_err)?;
    buf.truncate(info.buffer_size());
    Ok(Decoded {
        width: info.width as usize,
        height: info.height as usize,
        color: info.color_type,
        depth: info.bit_depth,
        bytes: buf,
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, ImageIoError> {
    std::fs::read(path).map_err(|source| ImageIoError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Decodes a 16-bit single-channel PNG holding millimetres.
pub fn depth_from_png_bytes(bytes: &[u8], name: &str) -> Result<DepthMm, ImageIoError> {
    let d = decode_png(bytes, name, false)?;
    if d.color != png::ColorType::Grayscale || d.depth != png::BitDepth::Sixteen {
        return Err(ImageIoError::WrongFormat {
            path: name.to_string(),
            expected: "a 16-bit grayscale PNG of millimetres",
            found: format!("{:?} {}-bit", d.color, d.depth as u8),
        });
    }
    // PNG stores 16-bit samples big-endian.
    let mm: Vec<u32> = d
        .bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .collect();
    DepthMm::from_mm(d.width, d.height, mm).ok_or_else(|| ImageIoError::Decode {
        path: name.to_string(),
        message: "pixel count does not match the header".into(),
    })
}

/// Decodes any 8-bit PNG (grey, grey+alpha, RGB, RGBA, palette) into RGB8.
pub fn rgb_from_png_bytes(bytes: &[u8], name: &str) -> Result<RgbImage, ImageIoError> {
    let d = decode_png(bytes, name, true)?;
    if d.depth != png::BitDepth::Eight {
        return Err(ImageIoError::WrongFormat {
            path: name.to_string(),
            expected: "an 8-bit colour PNG",
            found: format!("{:?} {}-bit", d.color, d.depth as u8),
        });
    }
    let px = d.width * d.height;
    let data: Vec<u8> = match d.color {
        png::ColorType::Rgb => d.bytes,
        png::ColorType::Rgba => d
            .bytes
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => d.bytes.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => d
            .bytes
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        png::ColorType::Indexed => {
            return Err(ImageIoError::WrongFormat {
                path: name.to_string(),
                expected: "an 8-bit colour PNG",
                found: "an unexpanded palette image".into(),
            })
        }
    };
    if data.len() != px * 3 {
        return Err(ImageIoError::Decode {
            path: name.to_string(),
            message: "pixel count does not match the header".into(),
        });
    }
    RgbImage::new(d.width, d.height, data).ok_or_else(|| ImageIoError::Decode {
        path: name.to_string(),
        message: "bad dimensions".into(),
    })
}

pub fn read_depth_png(path: &Path) -> Result<DepthMm, ImageIoError> {
    depth_from_png_bytes(&read_file(path)?, &path.display().to_string())
}

pub fn read_rgb_png(path: &Path) -> Result<RgbImage, ImageIoError> {
    rgb_from_png_bytes(&read_file(path)?, &path.display().to_string())
}

/// Reads an 8-bit colour image, PNG or baseline/progressive JPEG (told apart by their first
/// bytes), into RGB8 (datasets such as SpatialBench ship JPEGs).
pub fn read_rgb_image(path: &Path) -> Result<RgbImage, ImageIoError> {
    let bytes = read_file(path)?;
    let name = path.display().to_string();
    if bytes.starts_with(&[0xFF, 0xD8]) {
        rgb_from_jpeg_bytes(&bytes, &name)
    } else {
        rgb_from_png_bytes(&bytes, &name)
    }
}

/// Decodes a JPEG into RGB8; sizes over `crate::limits` are refused before decoding.
pub fn rgb_from_jpeg_bytes(bytes: &[u8], name: &str) -> Result<RgbImage, ImageIoError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let side = crate::limits::MAX_IMAGE_SIDE as usize;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(side)
        .set_max_height(side);
    let bad = |message: String| ImageIoError::Jpeg {
        path: name.to_string(),
        message,
    };
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(bytes, options);
    decoder
        .decode_headers()
        .map_err(|e| bad(format!("{e:?}")))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| bad("no frame header".into()))?;
    crate::limits::check_image(name, w as u64, h as u64).map_err(ImageIoError::TooLarge)?;
    let data = decoder.decode().map_err(|e| bad(format!("{e:?}")))?;
    RgbImage::new(w, h, data)
        .ok_or_else(|| bad("decoder returned a buffer of the wrong size".into()))
}

fn encode_png(
    width: usize,
    height: usize,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(depth);
        enc.set_compression(png::Compression::Fast);
        // Writing into a Vec with a matching buffer length cannot fail.
        if let Ok(mut w) = enc.write_header() {
            let _ = w.write_image_data(data);
        }
    }
    out
}

/// Encodes depth as a 16-bit grayscale PNG. Fails (naming `name`) if a pixel exceeds 65535 mm.
pub fn depth_to_png_bytes(depth: &DepthMm, name: &str) -> Result<Vec<u8>, ImageIoError> {
    let mut be = Vec::with_capacity(depth.as_slice().len() * 2);
    for (i, &v) in depth.as_slice().iter().enumerate() {
        if v > u16::MAX as u32 {
            return Err(ImageIoError::DepthTooLarge {
                path: name.to_string(),
                x: i % depth.width(),
                y: i / depth.width(),
                value: v,
            });
        }
        be.extend_from_slice(&(v as u16).to_be_bytes());
    }
    Ok(encode_png(
        depth.width(),
        depth.height(),
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &be,
    ))
}

pub fn rgb_to_png_bytes(img: &RgbImage) -> Vec<u8> {
    encode_png(
        img.width,
        img.height,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &img.data,
    )
}

/// Writes depth as a 16-bit PNG atomically.
pub fn write_depth_png(path: &Path, depth: &DepthMm) -> Result<(), ImageIoError> {
    let bytes = depth_to_png_bytes(depth, &path.display().to_string())?;
    write_png_bytes(path, &bytes)
}

/// Writes RGB8 as a PNG atomically.
pub fn write_rgb_png(path: &Path, img: &RgbImage) -> Result<(), ImageIoError> {
    write_png_bytes(path, &rgb_to_png_bytes(img))
}

/// Writes encoded PNG bytes atomically, naming the path on failure.
fn write_png_bytes(path: &Path, bytes: &[u8]) -> Result<(), ImageIoError> {
    crate::fsutil::write_atomic(path, bytes).map_err(|source| ImageIoError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Writes one byte per pixel (row-major, `width × height`) as an 8-bit greyscale PNG atomically:
/// label maps.
pub fn write_gray8_png(
    path: &Path,
    width: usize,
    height: usize,
    data: &[u8],
) -> Result<(), ImageIoError> {
    let bytes = encode_png(
        width,
        height,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        data,
    );
    write_png_bytes(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_png_round_trip() {
        let d = DepthMm::from_mm(3, 2, vec![0, 1, 255, 256, 40000, 65535]).unwrap();
        let bytes = depth_to_png_bytes(&d, "t").unwrap();
        assert_eq!(depth_from_png_bytes(&bytes, "t").unwrap(), d);
    }

    #[test]
    fn rgb_png_round_trip_and_wrong_kind() {
        let img = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let bytes = rgb_to_png_bytes(&img);
        assert_eq!(rgb_from_png_bytes(&bytes, "t").unwrap(), img);
        let err = depth_from_png_bytes(&bytes, "x.png")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.png") && err.contains("16-bit"), "{err}");
    }

    #[test]
    fn truncated_png_is_an_error() {
        let d = DepthMm::zeros(64, 64);
        let bytes = depth_to_png_bytes(&d, "t").unwrap();
        let err = depth_from_png_bytes(&bytes[..bytes.len() / 2], "cut.png")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.png"), "{err}");
    }

    #[test]
    fn huge_header_is_refused_before_decoding() {
        let d = DepthMm::zeros(4, 4);
        let mut bytes = depth_to_png_bytes(&d, "t").unwrap();
        // IHDR width and height (the CRC no longer matches: the size check comes first).
        bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = depth_from_png_bytes(&bytes, "big.png").unwrap_err();
        assert!(matches!(err, ImageIoError::TooLarge(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("big.png") && text.contains("100000x100000"),
            "{text}"
        );
        assert_eq!(png_dimensions(&bytes), Some((100_000, 100_000)));
    }

    #[test]
    fn too_deep_for_png() {
        let d = DepthMm::from_mm(1, 1, vec![70000]).unwrap();
        assert!(depth_to_png_bytes(&d, "t").is_err());
    }
}
