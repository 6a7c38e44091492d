//! `spatialbot-edge register`: a depth PNG registered into the colour camera's frame.

use std::path::PathBuf;

use anyhow::Context;
use spatialbot_edge::imageio;
use spatialbot_edge::rgbd::{Calibration, Registrar};

use super::{bad_input, prepare_output, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Camera calibration TOML (see calibration/*.example.toml).
    #[arg(long)]
    calib: PathBuf,
    /// Depth as a 16-bit grayscale PNG of millimetres, at the calibration's depth resolution.
    #[arg(long)]
    depth: PathBuf,
    /// Where to write the registered depth: a 16-bit PNG of millimetres at the colour
    /// resolution; 0 where no depth pixel landed. Written to a temporary file beside it and
    /// renamed; a symbolic link is written through; an input is refused.
    #[arg(long)]
    out: PathBuf,
}

#[derive(serde::Serialize)]
struct Summary {
    out: String,
    width: usize,
    height: usize,
    valid_pixels: usize,
    holes: usize,
    footprint_splatting: bool,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    prepare_output(
        "--out",
        &args.out,
        &[("--calib", &args.calib), ("--depth", &args.depth)],
    )?;
    let calib_name = args.calib.display().to_string();
    let text = std::fs::read_to_string(&args.calib)
        .map_err(|e| bad_input(format!("{calib_name}: cannot read: {e}")))?;
    let calib = Calibration::from_toml_str(&text, &calib_name).map_err(bad_input)?;
    let registrar = Registrar::new(&calib).map_err(|e| bad_input(format!("{calib_name}: {e}")))?;
    let depth = imageio::read_depth_png(&args.depth).map_err(bad_input)?;
    let registered = registrar
        .register(&depth)
        .map_err(|e| bad_input(format!("{}: {e}", args.depth.display())))?;
    imageio::write_depth_png(&args.out, &registered)
        .with_context(|| "writing the registered depth")?;

    let valid_pixels = registered.as_slice().iter().filter(|&&mm| mm != 0).count();
    let summary = Summary {
        out: args.out.display().to_string(),
        width: registered.width(),
        height: registered.height(),
        valid_pixels,
        holes: registered.as_slice().len() - valid_pixels,
        footprint_splatting: registrar.splats_footprint(),
    };
    if json {
        print_json(&summary)?;
    } else {
        let total = summary.valid_pixels + summary.holes;
        println!(
            "{}: {}x{}, {} valid pixels, {} holes ({:.1}%)",
            summary.out,
            summary.width,
            summary.height,
            summary.valid_pixels,
            summary.holes,
            100.0 * summary.holes as f64 / total.max(1) as f64
        );
    }
    Ok(spatialbot_edge::exit::OK)
}
