//! `spatialbot-edge preprocess`: one 8-bit PNG → the f32 `[3, S, S]` tensor as `.npy`.

use std::path::PathBuf;

use spatialbot_edge::imageio;
use spatialbot_edge::preprocess::{Preprocessor, Tower};

use super::pack::image_error;
use super::{bad_input, prepare_output, print_json};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TowerArg {
    /// SigLIP (SpatialBot-3B): squash-resize to S×S, mean 0.5, std 0.5. S defaults to 384.
    Siglip,
    /// CLIP (robot policy): shortest-edge resize, centre crop, CLIP mean/std. S defaults to 336.
    Clip,
}

#[derive(clap::Args)]
pub struct Args {
    /// 8-bit PNG (RGB, or a depth image already packed with `pack`).
    #[arg(long)]
    image: PathBuf,
    #[arg(long, value_enum)]
    tower: TowerArg,
    /// Pad to a square with the tower's mean colour first (what training and the HF path do).
    #[arg(long)]
    pad: bool,
    /// Output side S, at most 4096 (default: the tower's, 384 for SigLIP, 336 for CLIP).
    #[arg(long)]
    size: Option<usize>,
    /// Where to write the little-endian f32 `.npy`, shape [3, S, S]: written to a temporary file
    /// beside it and renamed; a symbolic link is written through; an input is refused.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let tower = match args.tower {
        TowerArg::Siglip => Tower::Siglip,
        TowerArg::Clip => Tower::Clip,
    };
    let size = args.size.unwrap_or(tower.default_size());
    spatialbot_edge::limits::check_usize(
        "--size",
        "",
        size,
        1,
        spatialbot_edge::limits::MAX_MODEL_IMAGE_SIZE,
    )
    .map_err(bad_input)?;
    let mut pre =
        Preprocessor::new(tower, size, args.pad).map_err(|e| bad_input(format!("--size: {e}")))?;
    prepare_output("--out", &args.out, &[("--image", &args.image)])?;
    let img = imageio::read_rgb_png(&args.image).map_err(image_error)?;
    let tensor = pre
        .tensor(&img)
        .map_err(|e| bad_input(format!("{}: {e}", args.image.display())))?;
    spatialbot_edge::fsutil::write_atomic(&args.out, &tensor.to_npy_bytes())
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", args.out.display()))?;
    if json {
        print_json(&serde_json::json!({
            "out": args.out.display().to_string(),
            "tower": tower.name(),
            "pad": args.pad,
            "shape": tensor.shape,
            "sum": tensor.sum(),
        }))?;
    } else {
        println!(
            "{}: {} tensor {:?} from {}x{} (pad: {}), sum {:.6}",
            args.out.display(),
            tower.name(),
            tensor.shape,
            img.width,
            img.height,
            args.pad,
            tensor.sum()
        );
    }
    Ok(spatialbot_edge::exit::OK)
}
