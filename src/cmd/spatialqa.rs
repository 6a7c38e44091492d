//! `spatialbot-edge spatialqa`: generates a SpatialQA question set from the simulated
//! tabletop's ground truth (`spatialqa::generate`), in the format docs/spatialqa.md describes.
//!
//! Seed s gives one scene: the world `World::new(task, s)` (the task cycling reach, pick, place
//! with `--source sim`), the gripper posed from the seed, rendered by the sim camera with depth
//! registered to colour. Splits are told apart by their seed ranges; disjoint ranges give
//! disjoint layouts.

use std::path::PathBuf;

use spatialbot_edge::camera::sim::calibration;
use spatialbot_edge::fsutil;
use spatialbot_edge::imageio;
use spatialbot_edge::progress::Progress;
use spatialbot_edge::rgbd::Registrar;
use spatialbot_edge::sim::render::{DepthNoise, SimRenderer};
use spatialbot_edge::sim::{Rng, TaskKind, World};
use spatialbot_edge::spatialqa::generate::{self, Frame};
use spatialbot_edge::spatialqa::{Meta, SCHEMA};

use super::{bad_input, print_json};

/// Most scenes one run generates.
pub const MAX_SCENES: u64 = 1_000_000;

#[derive(clap::Args)]
pub struct Args {
    /// Where the scenes come from: `sim` (the task cycling reach, pick, place by seed) or
    /// `sim:TASK`.
    #[arg(long, default_value = "sim")]
    pub source: String,
    /// Seeds A..B: one scene per seed, A included, B not.
    #[arg(long, value_name = "A..B")]
    pub seeds: String,
    /// The split's name written in meta.json: train, val or test.
    #[arg(long)]
    pub split: String,
    /// Folder to write (created): meta.json, questions.jsonl, images/, depth/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Frame size WxH (at least 32x24, at most 1280x960).
    #[arg(long, default_value = "128x96")]
    pub size: String,
    /// Extra point-depth, proximity and position questions per scene.
    #[arg(long, default_value_t = 0)]
    pub extra: usize,
    /// Seeded depth noise and holes, as the `sim:…,noise` camera.
    #[arg(long)]
    pub noise: bool,
}

fn parse_seeds(text: &str) -> anyhow::Result<(u64, u64)> {
    let usage = || {
        bad_input(format!(
            "--seeds {text}: give A..B with whole numbers A < B, e.g. 0..500"
        ))
    };
    let (a, b) = text.split_once("..").ok_or_else(usage)?;
    let a: u64 = a.trim().parse().map_err(|_| usage())?;
    let b: u64 = b.trim().parse().map_err(|_| usage())?;
    if a >= b {
        return Err(usage());
    }
    if b - a > MAX_SCENES {
        return Err(bad_input(format!(
            "--seeds {text}: {} scenes; at most {MAX_SCENES} (docs/limits.md)",
            b - a
        )));
    }
    Ok((a, b))
}

fn parse_size(text: &str) -> anyhow::Result<(usize, usize)> {
    let bad = || {
        bad_input(format!(
            "--size {text}: give WxH from 32x24 to 1280x960, e.g. 128x96"
        ))
    };
    let (w, h) = text.split_once('x').ok_or_else(bad)?;
    let (w, h): (usize, usize) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(32..=1280).contains(&w) || !(24..=960).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

fn parse_source(text: &str) -> anyhow::Result<Option<TaskKind>> {
    match text.split_once(':') {
        None if text == "sim" => Ok(None),
        Some(("sim", task)) => task
            .parse()
            .map(Some)
            .map_err(|e: String| bad_input(format!("--source {text}: {e}"))),
        _ => Err(bad_input(format!(
            "--source {text}: give sim or sim:TASK (reach, pick, place)"
        ))),
    }
}

#[derive(serde::Serialize)]
struct Summary {
    out: String,
    split: String,
    scenes: u64,
    questions: usize,
    per_category: std::collections::BTreeMap<String, usize>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let (first, end) = parse_seeds(&args.seeds)?;
    let (width, height) = parse_size(&args.size)?;
    let task = parse_source(&args.source)?;
    if !matches!(args.split.as_str(), "train" | "val" | "test") {
        return Err(bad_input(format!(
            "--split {}: give train, val or test",
            args.split
        )));
    }
    if args.extra > 16 {
        return Err(bad_input("--extra: at most 16"));
    }
    if args.out.exists() && !args.out.is_dir() {
        return Err(bad_input(format!(
            "--out {}: exists and is not a folder",
            args.out.display()
        )));
    }
    for sub in ["images", "depth"] {
        std::fs::create_dir_all(args.out.join(sub))
            .map_err(|e| bad_input(format!("--out {}: {e}", args.out.display())))?;
    }
    fsutil::remove_temps_on_signal()
        .map_err(|e| anyhow::anyhow!("installing the SIGINT/SIGTERM cleanup: {e}"))?;
    let calib = calibration(width, height);
    let renderer = SimRenderer::new(&calib);
    let registrar = Registrar::new(&calib).map_err(|e| anyhow::anyhow!("registration: {e}"))?;
    let progress = Progress::new(end - first, "scenes");
    let mut questions = Vec::new();
    for seed in first..end {
        let kind = task.unwrap_or(TaskKind::ALL[(seed % 3) as usize]);
        let mut world = World::new(kind, seed);
        let mut rng = Rng::new(seed ^ 0x5a17_a1c0_0000_0000);
        let target = rng.below(world.objects.len());
        generate::pose_gripper(&mut world, target, &mut rng);
        let noise = DepthNoise {
            enabled: args.noise,
            seed,
        };
        let (rgb, raw) = renderer.render(&world, noise, 0);
        let depth = registrar
            .register(&raw)
            .map_err(|e| anyhow::anyhow!("registering seed {seed}: {e}"))?;
        let labels = renderer.color_labels(&world);
        let frame = Frame {
            world,
            rgb,
            depth,
            labels,
        };
        let image = format!("images/{seed:06}.png");
        let depth_rel = format!("depth/{seed:06}.png");
        imageio::write_rgb_png(&args.out.join(&image), &frame.rgb)?;
        imageio::write_depth_png(&args.out.join(&depth_rel), &frame.depth)?;
        questions.extend(generate::questions(
            &frame,
            target,
            &mut rng,
            &format!("{}-{seed:06}", args.split),
            &image,
            &depth_rel,
            args.extra,
        ));
        progress.inc();
    }
    progress.finish();
    let mut lines = String::new();
    let mut per_category = std::collections::BTreeMap::new();
    for q in &questions {
        lines.push_str(&serde_json::to_string(q)?);
        lines.push('\n');
        *per_category.entry(q.category.clone()).or_insert(0) += 1;
    }
    fsutil::write_atomic(&args.out.join("questions.jsonl"), lines.as_bytes())?;
    let meta = Meta {
        schema: SCHEMA.into(),
        split: args.split.clone(),
        source: args.source.clone(),
        seeds: [first, end],
        count: questions.len(),
        size: Some([width, height]),
    };
    fsutil::write_atomic(
        &args.out.join("meta.json"),
        (serde_json::to_string_pretty(&meta)? + "\n").as_bytes(),
    )?;
    let summary = Summary {
        out: args.out.display().to_string(),
        split: args.split,
        scenes: end - first,
        questions: questions.len(),
        per_category,
    };
    if json {
        print_json(&summary)?;
    } else {
        outln!(
            "{} questions about {} scenes → {}",
            summary.questions,
            summary.scenes,
            summary.out
        );
        for (c, n) in &summary.per_category {
            outln!("  {c:<18} {n}");
        }
    }
    Ok(0)
}
