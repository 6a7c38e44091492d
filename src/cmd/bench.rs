//! `spatialbot-edge bench`: warm-up, then N frames through every pipeline stage this build has,
//! timed per stage; or `--compare A.json B.json`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use spatialbot_edge::bench::{
    self, stage, FrameStamps, HostInfo, Report, RunInfo, StageNotRun, StageRecorder,
};
use spatialbot_edge::board::Board;
use spatialbot_edge::camera::{self, CameraSpec, OpenOptions, RgbdFrame, Source, SourceStats};
use spatialbot_edge::exit::ExitError;
use spatialbot_edge::link::{self, ActionCommand, Link, LinkSpec, StopReason, ACTION_LEN};
use spatialbot_edge::preprocess::{Preprocessor, Tensor, Tower};
use spatialbot_edge::rgbd::pack::pack_into;
use spatialbot_edge::rgbd::{DepthMm, Encoding, Registrar};

use super::bad_input;

#[derive(clap::Args)]
pub struct Args {
    /// Board profile: a file, or a shipped profile name (default: dev-x86_64).
    #[arg(long)]
    board: Option<String>,
    /// Camera SPEC (default: the profile's camera.spec).
    #[arg(long)]
    camera: Option<String>,
    /// Frames to measure after the warm-up.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    frames: u64,
    /// Frames run before measuring (caches, allocator, clocks settle).
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Write report.json and latency.svg into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compare two reports: per-stage ratios B / A.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"], conflicts_with_all = ["board", "camera", "out"])]
    compare: Option<Vec<PathBuf>>,
}

/// The data one frame carries from stage to stage. Each stage fills what the next one eats.
struct Work {
    /// When the frame started, on the link's monotonic clock (µs).
    capture_us: u64,
    frame: Option<RgbdFrame>,
    /// Depth in the colour camera's frame.
    registered: Option<DepthMm>,
    /// The SpatialBot 3-channel depth image, interleaved RGB bytes.
    packed: Vec<u8>,
    /// The vision graph's input for the colour image.
    pixel_values: Option<Tensor>,
    /// The action to send: all zeros (the arm holds still) until a policy stage fills it.
    action: [f32; ACTION_LEN],
}

impl Work {
    fn new() -> Self {
        Self {
            capture_us: link::clock::monotonic_us(),
            frame: None,
            registered: None,
            packed: Vec::new(),
            pixel_values: None,
            action: [0.0; ACTION_LEN],
        }
    }
}

/// One pipeline stage as the bench runs it: the same library code `run` uses, nothing stubbed.
trait BenchStage {
    fn name(&self) -> &'static str;
    fn run(&mut self, work: &mut Work) -> anyhow::Result<()>;
    /// Frames this stage dropped since the last call.
    fn take_dropped(&mut self) -> u64 {
        0
    }
    /// Called once after the last frame.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// A line for the report about how the stage ran, known only after running.
    fn note(&self) -> Option<String> {
        None
    }
}

/// The next frame from the camera source (decode, for a recording).
struct CameraStage {
    source: Box<dyn Source>,
    reported: SourceStats,
}

impl BenchStage for CameraStage {
    fn name(&self) -> &'static str {
        stage::CAMERA
    }

    fn run(&mut self, work: &mut Work) -> anyhow::Result<()> {
        let frame = self.source.next_frame()?.ok_or_else(|| {
            anyhow::anyhow!("the camera source ended; use a looping recording (`replay,fast,loop:PATH`) or fewer --frames")
        })?;
        work.frame = Some(frame);
        Ok(())
    }

    fn take_dropped(&mut self) -> u64 {
        let now = self.source.stats();
        let lost = |s: &SourceStats| s.dropped_by_device + s.unpaired_color + s.unpaired_depth;
        let d = lost(&now).saturating_sub(lost(&self.reported));
        self.reported = now;
        d
    }
}

/// Depth registered into the colour camera's frame (skipped per frame where the camera already
/// delivers registered depth).
struct RegisterStage {
    registrar: Registrar,
    out: DepthMm,
    frames: u64,
    came_registered: u64,
}

impl BenchStage for RegisterStage {
    fn name(&self) -> &'static str {
        stage::REGISTER
    }

    fn run(&mut self, work: &mut Work) -> anyhow::Result<()> {
        let frame = work.frame.as_ref().context("no frame to register")?;
        self.frames += 1;
        if frame.depth_registered {
            self.came_registered += 1;
            work.registered = Some(frame.depth.clone());
        } else {
            self.registrar.register_into(&frame.depth, &mut self.out)?;
            work.registered = Some(self.out.clone());
        }
        Ok(())
    }

    fn note(&self) -> Option<String> {
        (self.came_registered > 0).then(|| {
            format!(
                "register: {} of {} frames came already registered from the camera; for those the stage only copied the depth",
                self.came_registered, self.frames
            )
        })
    }
}

/// SpatialBot depth packing (uint24 mm → 3 × uint8) of the registered depth.
struct PackStage;

impl BenchStage for PackStage {
    fn name(&self) -> &'static str {
        stage::PACK
    }

    fn run(&mut self, work: &mut Work) -> anyhow::Result<()> {
        let depth = match (&work.registered, &work.frame) {
            (Some(d), _) => d,
            (None, Some(f)) => &f.depth,
            (None, None) => anyhow::bail!("no depth to pack"),
        };
        work.packed.resize(depth.as_slice().len() * 3, 0);
        pack_into(depth.as_slice(), Encoding::SpatialBot, &mut work.packed)?;
        Ok(())
    }
}

/// The colour image → the policy vision tower's normalised CHW tensor.
struct PreprocessStage {
    preprocessor: Preprocessor,
}

impl BenchStage for PreprocessStage {
    fn name(&self) -> &'static str {
        stage::PREPROCESS
    }

    fn run(&mut self, work: &mut Work) -> anyhow::Result<()> {
        let frame = work.frame.as_ref().context("no frame to preprocess")?;
        work.pixel_values = Some(self.preprocessor.tensor(&frame.color)?);
        Ok(())
    }
}

/// The policy's vision tower, image size and padding from its manifest; CLIP-L/336 without
/// padding (the robot policy's tower) where the manifest cannot be read.
fn policy_vision(board: &Board) -> (Tower, usize, bool, String) {
    let path = board.policy_model_dir().join("manifest.toml");
    let parsed = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok());
    let vision = parsed
        .as_ref()
        .and_then(|t| t.get("vision"))
        .and_then(|v| v.as_table());
    let tower = vision
        .and_then(|v| v.get("tower"))
        .and_then(|v| v.as_str())
        .and_then(|t| t.parse::<Tower>().ok());
    let size = vision
        .and_then(|v| v.get("image_size"))
        .and_then(|v| v.as_integer())
        .and_then(|n| usize::try_from(n).ok());
    let pad = vision
        .and_then(|v| v.get("pad_to_square"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    match (tower, size) {
        (Some(t), Some(n)) => (
            t,
            n,
            pad,
            format!(
                "preprocess: {} {n}x{n}, pad {pad}, from {}",
                t.name(),
                path.display()
            ),
        ),
        _ => (
            Tower::Clip,
            Tower::Clip.default_size(),
            false,
            format!(
                "preprocess: clip 336x336 (no readable manifest at {})",
                path.display()
            ),
        ),
    }
}

/// `auto`: a RealSense where this build has it, else the shipped sample recording (looped, as
/// fast as the stages take it), else the synthetic scene.
fn resolve_camera(spec: &str) -> String {
    if spec != "auto" {
        return spec.to_string();
    }
    if cfg!(feature = "realsense") {
        return "realsense".to_string();
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("SPATIALBOT_EDGE_HOME") {
        candidates.push(PathBuf::from(home).join("recordings/sample"));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        candidates.push(exe_dir.join("../recordings/sample"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample"));
    candidates.push(PathBuf::from("tests/data/sample"));
    match candidates
        .into_iter()
        .find(|p| p.join("recording.toml").is_file())
    {
        Some(p) => format!("replay,fast,loop:{}", p.display()),
        None => "synthetic,fast".to_string(),
    }
}

/// Wire encode + write of one action to the in-process controller simulator, then handling
/// of whatever it sent back (acks, status).
struct LinkStage {
    link: Link,
    chunk_id: u32,
}

impl BenchStage for LinkStage {
    fn name(&self) -> &'static str {
        stage::LINK
    }

    fn run(&mut self, work: &mut Work) -> anyhow::Result<()> {
        self.link.send_action(&ActionCommand {
            chunk_id: self.chunk_id,
            chunk_index: 0,
            capture_us: work.capture_us,
            values: work.action,
        })?;
        self.link.poll()?;
        self.chunk_id = self.chunk_id.wrapping_add(1);
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.link.stop(StopReason::Finished)?;
        Ok(())
    }
}

struct Plan {
    stages: Vec<Box<dyn BenchStage>>,
    not_run: Vec<StageNotRun>,
    /// What the stages ran with, for the report.
    notes: Vec<String>,
}

fn not_run(name: &str, why: &str) -> StageNotRun {
    StageNotRun {
        name: name.to_string(),
        why: why.to_string(),
    }
}

/// The stages this build can run for `board`, in pipeline order, and the ones it cannot.
fn plan(board: &Board, camera: &str) -> anyhow::Result<Plan> {
    let mut stages: Vec<Box<dyn BenchStage>> = Vec::new();
    let mut notes = Vec::new();
    let spec = camera
        .parse::<CameraSpec>()
        .map_err(bad_input)?
        .with_defaults(&camera::SpecDefaults::from_board(&board.camera));
    let source = camera::open(&spec, &OpenOptions { register: false })
        .with_context(|| format!("cannot open camera `{camera}`"))?;
    notes.push(format!("camera: {}", source.describe()));
    let registrar = Registrar::new(source.calibration())
        .context("cannot register depth with this camera's calibration")?;
    let (color_w, color_h) = registrar.color_size();
    stages.push(Box::new(CameraStage {
        source,
        reported: SourceStats::default(),
    }));
    stages.push(Box::new(RegisterStage {
        registrar,
        out: DepthMm::zeros(color_w, color_h),
        frames: 0,
        came_registered: 0,
    }));
    stages.push(Box::new(PackStage));
    let (tower, size, pad, note) = policy_vision(board);
    notes.push(note);
    stages.push(Box::new(PreprocessStage {
        preprocessor: Preprocessor::new(tower, size, pad)?,
    }));

    let mut not_run = vec![
        not_run(stage::VISION, "the policy's vision graph is not wired into bench yet"),
        not_run(stage::PREFILL, "the policy's prefill is not wired into bench yet"),
        not_run(stage::DECODE, "the policy's decode is not wired into bench yet"),
        not_run(
            stage::ACTION,
            "no policy is built into this version: the link stage sends a hold-still action (all zeros)",
        ),
    ];
    // Always the simulator: a bench never moves a real arm.
    // The stages run one after another here, with no heartbeat thread beside them as in `run`,
    // so the simulated controller's watchdog is set out of reach.
    let mut link_config = board.link_config();
    link_config.watchdog_ms = u16::MAX;
    let link = Link::open(&LinkSpec::Sim, link_config)
        .context("cannot open the link to the built-in arm simulator")?;
    notes.push(
        "link: the built-in arm simulator, watchdog off (a bench never drives a real arm)"
            .to_string(),
    );
    stages.push(Box::new(LinkStage { link, chunk_id: 0 }));
    not_run.retain(|n| !stages.iter().any(|s| s.name() == n.name));
    Ok(Plan {
        stages,
        not_run,
        notes,
    })
}

/// A one-line progress display on stderr, only when stderr is a terminal.
struct Progress {
    enabled: bool,
    total: u64,
    last: Instant,
    start: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Self {
            enabled: std::io::stderr().is_terminal(),
            total,
            last: now,
            start: now,
        }
    }

    fn update(&mut self, done: u64, phase: &str) {
        if !self.enabled || (self.last.elapsed() < Duration::from_millis(200) && done < self.total)
        {
            return;
        }
        self.last = Instant::now();
        let width = 30usize;
        let filled = (done as f64 / self.total.max(1) as f64 * width as f64) as usize;
        let fps = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let _ = write!(
            std::io::stderr(),
            "\r{phase:<8} [{}{}] {done}/{} frames, {fps:.1} frames/s ",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            self.total
        );
    }

    fn finish(&self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn run_frame(stages: &mut [Box<dyn BenchStage>], stamps: &mut FrameStamps) -> anyhow::Result<()> {
    let mut work = Work::new();
    for s in stages.iter_mut() {
        s.run(&mut work)
            .with_context(|| format!("stage {}", s.name()))?;
        stamps.mark(s.name());
    }
    Ok(())
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    if let Some(files) = &args.compare {
        return compare(&files[0], &files[1], json);
    }
    let board = match &args.board {
        Some(b) => Board::resolve(b),
        None => Board::default_dev(),
    }
    .map_err(bad_input)?;
    let camera = resolve_camera(
        &args
            .camera
            .clone()
            .unwrap_or_else(|| board.camera.spec.clone()),
    );
    let Plan {
        mut stages,
        not_run,
        notes,
    } = plan(&board, &camera)?;

    let camera_ran = stages.iter().any(|s| s.name() == stage::CAMERA);
    let info = RunInfo {
        board: board.name.clone(),
        board_file: board.source.display().to_string(),
        camera: if camera_ran {
            camera.clone()
        } else {
            format!("none ({camera} not run)")
        },
        warmup_frames: args.warmup,
        stages_not_run: not_run,
        notes,
        host: HostInfo::read(),
    };

    if stages.is_empty() {
        let report = StageRecorder::new().report(RunInfo {
            warmup_frames: 0,
            ..info
        });
        emit(&report, json, args.out.as_deref())?;
        return Err(ExitError::runtime("no pipeline stage is built into this version, so there is nothing to measure (see `not run` above)").into());
    }

    // Process start → the first frame through every stage (its action sent, when the link
    // stage runs): what a supervisor waits for after a restart.
    let mut startup = None;
    let mut progress = Progress::new(args.warmup);
    for n in 0..args.warmup {
        let mut stamps = FrameStamps::start(n);
        run_frame(&mut stages, &mut stamps)?;
        startup = startup.or_else(bench::system::process_age);
        progress.update(n + 1, "warm-up");
    }
    for s in stages.iter_mut() {
        s.take_dropped();
    }
    progress.finish();

    let mut recorder = StageRecorder::new();
    recorder.declare_stages(&stages.iter().map(|s| s.name()).collect::<Vec<_>>());
    let mut progress = Progress::new(args.frames);
    let start = Instant::now();
    for n in 0..args.frames {
        let mut stamps = FrameStamps::start(n);
        run_frame(&mut stages, &mut stamps)?;
        startup = startup.or_else(bench::system::process_age);
        recorder.record_frame(&stamps);
        for s in stages.iter_mut() {
            let d = s.take_dropped();
            if d > 0 {
                recorder.record_dropped(s.name(), d);
            }
        }
        progress.update(n + 1, "measure");
    }
    let wall = start.elapsed();
    progress.finish();
    for s in stages.iter_mut() {
        s.finish()
            .with_context(|| format!("stage {} did not shut down cleanly", s.name()))?;
    }
    if let Some(d) = startup {
        recorder.record_startup(d);
    }

    let mut report = recorder.report(info);
    report.notes.extend(stages.iter().filter_map(|s| s.note()));
    report.set_wall_s(wall.as_secs_f64());
    emit(&report, json, args.out.as_deref())?;
    Ok(spatialbot_edge::exit::OK)
}

fn emit(report: &Report, json: bool, out: Option<&Path>) -> anyhow::Result<()> {
    if json {
        super::print_json(report)?;
    } else {
        print!("{}", report.to_text());
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
        let json_path = dir.join("report.json");
        let svg_path = dir.join("latency.svg");
        spatialbot_edge::fsutil::write_atomic(
            &json_path,
            serde_json::to_string_pretty(report)?.as_bytes(),
        )
        .with_context(|| format!("cannot write {}", json_path.display()))?;
        spatialbot_edge::fsutil::write_atomic(
            &svg_path,
            bench::svg::latency_plot(report).as_bytes(),
        )
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
        if !json {
            println!("wrote {} and {}", json_path.display(), svg_path.display());
        }
    }
    Ok(())
}

fn load_report(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("cannot read bench report {}: {e}; pass a file written by `bench --json` or `bench --out`", path.display())))?;
    Report::from_json(&text, &path.display().to_string()).map_err(bad_input)
}

fn compare(a: &Path, b: &Path, json: bool) -> anyhow::Result<u8> {
    let ra = load_report(a)?;
    let rb = load_report(b)?;
    let cmp = bench::compare(&ra, &a.display().to_string(), &rb, &b.display().to_string());
    if json {
        super::print_json(&cmp)?;
    } else {
        print!("{}", cmp.to_text());
    }
    Ok(spatialbot_edge::exit::OK)
}
