//! `spatialbot-edge pack`: a 16-bit millimetre depth PNG → the SpatialBot 3-channel PNG.

use std::path::PathBuf;

use spatialbot_edge::imageio::{self, ImageIoError};
use spatialbot_edge::rgbd::{pack, Encoding};

use super::{bad_input, prepare_output, print_json};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum EncodingArg {
    /// The released SpatialBot code: 0..=65535 mm (deeper pixels saturate).
    Spatialbot,
    /// The paper's 17-bit variant: 0..=131071 mm.
    Paper,
}

#[derive(clap::Args)]
pub struct Args {
    /// 16-bit grayscale PNG of millimetres.
    #[arg(long)]
    depth: PathBuf,
    /// Where to write the 8-bit RGB PNG: written to a temporary file beside it and renamed; a
    /// symbolic link is written through (its target replaced, the link kept); an input is refused.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "spatialbot")]
    encoding: EncodingArg,
}

/// Read errors are bad input (exit 2); write errors are runtime failures (exit 1).
pub(crate) fn image_error(e: ImageIoError) -> anyhow::Error {
    match e {
        ImageIoError::Write { .. } => anyhow::Error::new(e),
        other => bad_input(other),
    }
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let encoding = match args.encoding {
        EncodingArg::Spatialbot => Encoding::SpatialBot,
        EncodingArg::Paper => Encoding::Paper,
    };
    prepare_output("--out", &args.out, &[("--depth", &args.depth)])?;
    let depth = imageio::read_depth_png(&args.depth).map_err(image_error)?;
    let (packed, report) = pack::pack(&depth, encoding);
    imageio::write_rgb_png(&args.out, &packed).map_err(image_error)?;
    if json {
        print_json(&serde_json::json!({
            "out": args.out.display().to_string(),
            "width": packed.width,
            "height": packed.height,
            "encoding": encoding.name(),
            "max_mm": encoding.max_mm(),
            "pixels": report.pixels,
            "saturated_pixels": report.saturated_pixels,
        }))?;
    } else {
        println!(
            "{}: {}x{} packed ({}); saturated pixels (deeper than {} mm): {}",
            args.out.display(),
            packed.width,
            packed.height,
            encoding.name(),
            encoding.max_mm(),
            report.saturated_pixels
        );
    }
    Ok(spatialbot_edge::exit::OK)
}
