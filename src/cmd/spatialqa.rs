//! `spatialbot-edge spatialqa`: generates a SpatialQA question set from ground truth
//! (`spatialqa::generate`), in the format docs/spatialqa.md describes.
//!
//! Sources:
//! - `sim` / `sim:TASK`: seed s gives one scene, the world `World::new(task, s)` (the task
//!   cycling reach, pick, place with `sim`), the gripper posed from the seed, rendered by the
//!   sim camera with depth registered to colour. Splits are told apart by their seed ranges;
//!   disjoint ranges give disjoint layouts.
//! - `synthetic`: frame s of the synthetic tabletop (`--camera synthetic`, 15 fps), its
//!   renderer's labels and object states.
//! - `recording:DIR`: a PNG-folder recording with `objects.json` (`spatialqa::annotation`);
//!   every annotated frame (within `--seeds` if given), depth registered through the
//!   recording's calibration where it was recorded raw.

use std::path::{Path, PathBuf};

use spatialbot_edge::camera::recording::PngFolderSource;
use spatialbot_edge::camera::sim::calibration;
use spatialbot_edge::camera::synthetic;
use spatialbot_edge::camera::{Pacing, ReplayOptions, Source};
use spatialbot_edge::fsutil;
use spatialbot_edge::imageio;
use spatialbot_edge::progress::Progress;
use spatialbot_edge::rgbd::{DepthMm, Registrar, RgbImage};
use spatialbot_edge::sim::render::{DepthNoise, SimRenderer};
use spatialbot_edge::sim::{Rng, TaskKind, World};
use spatialbot_edge::spatialqa::annotation::{self, AnnotatedFrame};
use spatialbot_edge::spatialqa::generate::{self, Frame, ObjectTruth, ShapeClass};
use spatialbot_edge::spatialqa::{Meta, Question, SCHEMA};

use super::{bad_input, print_json};

/// Most scenes one run generates.
pub const MAX_SCENES: u64 = 1_000_000;

#[derive(clap::Args)]
pub struct Args {
    /// Where the scenes come from: `sim` (the task cycling reach, pick, place by seed),
    /// `sim:TASK`, `synthetic` (the synthetic tabletop's frames) or `recording:DIR` (a
    /// PNG-folder recording with an objects.json annotation).
    #[arg(long, default_value = "sim")]
    pub source: String,
    /// Seeds A..B: one scene per seed (sim), frame indices (synthetic; for a recording, only
    /// its annotated frames in this range), A included, B not.
    #[arg(long, value_name = "A..B")]
    pub seeds: Option<String>,
    /// The split's name written in meta.json: train, val or test.
    #[arg(long)]
    pub split: String,
    /// Folder to write (created): meta.json, questions.jsonl, images/, depth/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Frame size WxH (at least 32x24, at most 1280x960; a recording keeps its own).
    #[arg(long, default_value = "128x96")]
    pub size: String,
    /// Extra point-depth, proximity and position questions per scene.
    #[arg(long, default_value_t = 0)]
    pub extra: usize,
    /// Seeded depth noise and holes, as the `sim:…,noise` camera.
    #[arg(long)]
    pub noise: bool,
    /// Also write each scene's label map (`labels/ID.png`: per colour pixel the index of the
    /// object it shows in `scenes.jsonl`, 254 the gripper, 255 background) and `scenes.jsonl`
    /// (per scene: image, depth, labels, object names): privileged targets for a trainer.
    #[arg(long)]
    pub labels: bool,
}

/// One line of `scenes.jsonl` (written with `--labels`).
#[derive(serde::Serialize)]
struct SceneLabels<'a> {
    image: &'a str,
    depth: &'a str,
    labels: &'a str,
    /// Label value i is `objects[i]`.
    objects: Vec<&'a str>,
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

enum SourceKind {
    Sim(Option<TaskKind>),
    Synthetic,
    Recording(PathBuf),
}

fn parse_source(text: &str) -> anyhow::Result<SourceKind> {
    match text.split_once(':') {
        None if text == "sim" => Ok(SourceKind::Sim(None)),
        None if text == "synthetic" => Ok(SourceKind::Synthetic),
        Some(("sim", task)) => task
            .parse()
            .map(|t| SourceKind::Sim(Some(t)))
            .map_err(|e: String| bad_input(format!("--source {text}: {e}"))),
        Some(("recording", dir)) if !dir.is_empty() => Ok(SourceKind::Recording(dir.into())),
        _ => Err(bad_input(format!(
            "--source {text}: give sim, sim:TASK (reach, pick, place), synthetic or recording:DIR"
        ))),
    }
}

/// The frame rate the synthetic tabletop's frames are timed at (`--camera synthetic`'s
/// default).
const SYNTHETIC_FPS: u32 = 15;

/// Where the scenes come from, opened.
enum Scenes {
    Sim {
        task: Option<TaskKind>,
        renderer: Box<SimRenderer>,
        registrar: Registrar,
        noise: bool,
    },
    Synthetic {
        calib: spatialbot_edge::rgbd::Calibration,
        registrar: Registrar,
    },
    Recording {
        source: Box<PngFolderSource>,
        registrar: Option<Registrar>,
        frames: Vec<AnnotatedFrame>,
    },
}

impl Scenes {
    /// The scene with this seed (frame index), and the object the gripper was posed around.
    fn frame(&self, seed: u64, rng: &mut Rng) -> anyhow::Result<(Frame, usize)> {
        match self {
            Scenes::Sim {
                task,
                renderer,
                registrar,
                noise,
            } => {
                let kind = task.unwrap_or(TaskKind::ALL[(seed % 3) as usize]);
                let mut world = World::new(kind, seed);
                let target = rng.below(world.objects.len());
                generate::pose_gripper(&mut world, target, rng);
                let noise = DepthNoise {
                    enabled: *noise,
                    seed,
                };
                let (rgb, raw) = renderer.render(&world, noise, 0);
                let depth = registrar
                    .register(&raw)
                    .map_err(|e| anyhow::anyhow!("registering seed {seed}: {e}"))?;
                let labels = renderer.color_labels(&world);
                Ok((Frame::from_world(world, rgb, depth, labels), target))
            }
            Scenes::Synthetic { calib, registrar } => {
                let (rgb, raw) = synthetic::render(calib, seed, SYNTHETIC_FPS);
                let depth = registrar
                    .register(&raw)
                    .map_err(|e| anyhow::anyhow!("registering frame {seed}: {e}"))?;
                let (states, labels) = synthetic::ground_truth(calib, seed, SYNTHETIC_FPS);
                let objects = states
                    .into_iter()
                    .map(|o| ObjectTruth {
                        name: o.name.to_string(),
                        colour: Some(o.colour.to_string()),
                        shape: Some(if o.is_ball {
                            ShapeClass::Ball
                        } else {
                            ShapeClass::Box
                        }),
                        centre_m: Some(o.centre_m),
                        size_m: Some(o.size_m),
                    })
                    .collect::<Vec<_>>();
                let target = rng.below(objects.len().max(1));
                let frame = Frame {
                    tabletop: true,
                    ..Frame::without_world(rgb, depth, labels, objects)
                };
                Ok((frame, target))
            }
            Scenes::Recording {
                source,
                registrar,
                frames,
            } => {
                let Some(annotated) = frames.iter().find(|f| f.frame == seed) else {
                    anyhow::bail!("frame {seed} is not annotated");
                };
                let (rgb, raw) = source
                    .read_images(seed)
                    .map_err(|e| bad_input(format!("recording frame {seed}: {e}")))?;
                let depth = match registrar {
                    Some(r) => r
                        .register(&raw)
                        .map_err(|e| anyhow::anyhow!("registering frame {seed}: {e}"))?,
                    None => raw,
                };
                let (labels, objects) =
                    annotation::labels_and_objects(annotated, &depth, rgb.width, rgb.height);
                let target = rng.below(objects.len().max(1));
                let frame = Frame {
                    absent: Some(annotated.absent.clone()),
                    ..Frame::without_world(rgb, depth, labels, objects)
                };
                Ok((frame, target))
            }
        }
    }
}

/// Opens a recording and its annotation; the frames to ask about (annotated, within `seeds`).
fn open_recording(dir: &Path, seeds: Option<(u64, u64)>) -> anyhow::Result<(Scenes, Vec<u64>)> {
    let source = PngFolderSource::open(ReplayOptions {
        path: dir.to_path_buf(),
        pacing: Pacing::AsFastAsPossible,
        looping: false,
    })
    .map_err(|e| bad_input(format!("--source recording:{}: {e}", dir.display())))?;
    if !source.info().has_depth {
        return Err(bad_input(format!(
            "--source recording:{}: recorded without depth; SpatialQA needs depth",
            dir.display()
        )));
    }
    let calib = source.calibration().clone();
    let path = dir.join("objects.json");
    let text = fsutil::read_to_string_limited(&path, annotation::MAX_BYTES)
        .map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
    let (w, h) = (calib.color.width, calib.color.height);
    let parsed = annotation::parse(&text, w, h)
        .map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
    let mut wanted: Vec<u64> = parsed
        .frames
        .iter()
        .map(|f| f.frame)
        .filter(|&i| seeds.is_none_or(|(a, b)| (a..b).contains(&i)))
        .collect();
    wanted.sort_unstable();
    if let Some(&missing) = wanted.iter().find(|&&i| i >= source.len() as u64) {
        return Err(bad_input(format!(
            "{}: frame {missing} is annotated but the recording has {} frames",
            path.display(),
            source.len()
        )));
    }
    if wanted.is_empty() {
        return Err(bad_input(format!(
            "{}: no annotated frame in --seeds",
            path.display()
        )));
    }
    let registrar = if source.info().depth_registered {
        None
    } else {
        Some(Registrar::new(&calib).map_err(|e| {
            bad_input(format!(
                "{}: calibration: {e}",
                dir.join("calibration.toml").display()
            ))
        })?)
    };
    let scenes = Scenes::Recording {
        source: Box::new(source),
        registrar,
        frames: parsed.frames,
    };
    Ok((scenes, wanted))
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
    let seeds = args.seeds.as_deref().map(parse_seeds).transpose()?;
    let (width, height) = parse_size(&args.size)?;
    let source = parse_source(&args.source)?;
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
    let needs_seeds = || {
        seeds.ok_or_else(|| {
            bad_input(format!(
                "--seeds: give A..B (scenes or frames) for --source {}",
                args.source
            ))
        })
    };
    let (scenes, wanted): (Scenes, Vec<u64>) = match source {
        SourceKind::Sim(task) => {
            let (first, end) = needs_seeds()?;
            let calib = calibration(width, height);
            let registrar =
                Registrar::new(&calib).map_err(|e| anyhow::anyhow!("registration: {e}"))?;
            let scenes = Scenes::Sim {
                task,
                renderer: Box::new(SimRenderer::new(&calib)),
                registrar,
                noise: args.noise,
            };
            (scenes, (first..end).collect())
        }
        SourceKind::Synthetic => {
            let (first, end) = needs_seeds()?;
            let calib = synthetic::calibration(width, height);
            let registrar =
                Registrar::new(&calib).map_err(|e| anyhow::anyhow!("registration: {e}"))?;
            (
                Scenes::Synthetic { calib, registrar },
                (first..end).collect(),
            )
        }
        SourceKind::Recording(dir) => open_recording(&dir, seeds)?,
    };
    let subs: &[&str] = if args.labels {
        &["images", "depth", "labels"]
    } else {
        &["images", "depth"]
    };
    for sub in subs {
        std::fs::create_dir_all(args.out.join(sub))
            .map_err(|e| bad_input(format!("--out {}: {e}", args.out.display())))?;
    }
    fsutil::remove_temps_on_signal()
        .map_err(|e| anyhow::anyhow!("installing the SIGINT/SIGTERM cleanup: {e}"))?;
    let progress = Progress::new(wanted.len() as u64, "scenes");
    let mut questions: Vec<Question> = Vec::new();
    let mut scene_lines = String::new();
    let mut size = None;
    for &seed in &wanted {
        let mut rng = Rng::new(seed ^ 0x5a17_a1c0_0000_0000);
        let (frame, target) = scenes.frame(seed, &mut rng)?;
        size = Some([frame.rgb.width, frame.rgb.height]);
        let image = format!("images/{seed:06}.png");
        let depth_rel = format!("depth/{seed:06}.png");
        write_images(&args.out, &image, &depth_rel, &frame.rgb, &frame.depth)?;
        if args.labels {
            if frame.labels.len() != frame.rgb.width * frame.rgb.height {
                anyhow::bail!("scene {seed}: the label map does not cover the colour frame");
            }
            let labels = format!("labels/{seed:06}.png");
            imageio::write_gray8_png(
                &args.out.join(&labels),
                frame.rgb.width,
                frame.rgb.height,
                &frame.labels,
            )?;
            let line = SceneLabels {
                image: &image,
                depth: &depth_rel,
                labels: &labels,
                objects: frame.objects.iter().map(|o| o.name.as_str()).collect(),
            };
            scene_lines.push_str(&serde_json::to_string(&line)?);
            scene_lines.push('\n');
        }
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
    if args.labels {
        fsutil::write_atomic(&args.out.join("scenes.jsonl"), scene_lines.as_bytes())?;
    }
    let meta = Meta {
        schema: SCHEMA.into(),
        split: args.split.clone(),
        source: args.source.clone(),
        seeds: [
            wanted.first().copied().unwrap_or(0),
            wanted.last().map_or(0, |&l| l + 1),
        ],
        count: questions.len(),
        size,
    };
    fsutil::write_atomic(
        &args.out.join("meta.json"),
        (serde_json::to_string_pretty(&meta)? + "\n").as_bytes(),
    )?;
    let summary = Summary {
        out: args.out.display().to_string(),
        split: args.split,
        scenes: wanted.len() as u64,
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

fn write_images(
    out: &Path,
    image: &str,
    depth: &str,
    rgb: &RgbImage,
    mm: &DepthMm,
) -> anyhow::Result<()> {
    imageio::write_rgb_png(&out.join(image), rgb)?;
    imageio::write_depth_png(&out.join(depth), mm)?;
    Ok(())
}
