//! The configuration root: board profiles (`boards/*.toml`) — which inference backends to try
//! and how, the camera's modes, the arm link, the safety limits, the model folders and the
//! memory budget of one kind of robot computer.
//!
//! This module is the only one that reads a profile. It parses and validates it here, and
//! [`translate`] turns it into each subsystem's own settings type (the camera's
//! [`SpecDefaults`](crate::camera::SpecDefaults), the model's
//! [`BackendConfig`](crate::model::BackendConfig), the link's [`LinkConfig`] and governor
//! [`Limits`], the guard's [`GuardConfig`]). Subsystems never see a `Board`; a test
//! (`subsystems_never_import_the_configuration`) keeps it so.
//!
//! # Using a profile
//!
//! ```no_run
//! use spatialbot_edge::config::Board;
//! let board = Board::default_dev()?;                 // boards/dev-x86_64.toml (or the built-in copy)
//! let board = Board::load("boards/jetson-orin-nx-16gb.toml".as_ref())?;
//! let board = Board::resolve("jetson-orin-nano-8gb")?; // a file path or a profile name
//! # Ok::<(), spatialbot_edge::config::BoardError>(())
//! ```
//!
//! Everything is validated when loaded: a `Board` you hold is internally consistent, so the
//! consumers below need not re-check ranges.
//!
//! - `board.backend` — [`Backend`]: `order` is the list of [`BackendChoice`]s to try, first that
//!   starts wins; `cpu_fallback` says whether a GPU backend that fails to start may be replaced
//!   by a later CPU entry of `order` (false: stop with an error instead); `threads` is the
//!   intra-op thread count for CPU kernels; `tensorrt_fp16` and `engine_cache_dir` configure
//!   the TensorRT execution provider (engines and the timing cache are kept there so a restart
//!   never rebuilds them: see [`Board::engine_cache_dir`]); `triton` in `order` runs the graphs
//!   on the inference server of `[backend.triton]` ([`TritonServer`]: url, per-call deadline,
//!   rest after a failure, CA certificate), the entries after it standing in per call
//!   ([`Board::triton_config`]).
//! - `board.camera` — [`Camera`]: `spec` is a camera SPEC as on the command line, or `auto`
//!   (a RealSense camera if one is attached, else the shipped sample recording); `serial` is
//!   `any` or the RealSense serial number to insist on; `depth` and `color` are the requested
//!   [`StreamMode`]s; `max_skew_ms` is the largest colour/depth timestamp difference accepted
//!   as one RGB-D frame.
//! - `board.link` — [`Link`]: `spec` is `sim`, `serial:PATH` or `pty:PATH` (the baud rate is
//!   `baud`, never inside `spec`; [`Link::cli_spec`] gives the command-line form);
//!   `watchdog_ms` is how long the controller waits without a valid frame before it stops the
//!   arm; `heartbeat_ms` is how often the host sends one when it has no action to send
//!   (always at most half of `watchdog_ms`). [`Board::link_spec`] and [`Board::link_config`]
//!   give the `link` module's types directly.
//! - `board.safety` — [`Safety`]: per-axis absolute limits and largest change between two
//!   consecutive actions ([`AxisLimit`], axis names match the policy manifest's action names),
//!   `max_age_ms` (an action computed from a frame captured longer ago than this is not sent)
//!   and `rate_limit_hz` (the most actions per second sent to the arm).
//!   [`Board::governor_limits`] places them in the wire layout for the safety governor.
//! - `board.models` — [`Models`]: model folders and the precision to run them at.
//! - `board.guard` — [`Guard`], optional: the SpatialBot guard `run` asks before acting
//!   ([`Guard::config`] for the loop, [`Board::guard_model_dir`] for its model folder).
//! - `board.memory_budget_mb` — what this process may use, checked by `doctor`.
//!
//! Relative paths in a profile (model folders, the engine cache) are relative to the folder
//! that holds the profile file; use [`Board::path`] to resolve them.

pub mod translate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::camera::StreamMode;
pub use crate::model::backend::BackendChoice;
use crate::policy::guard::YesNo;

/// The profile `run` and `bench` use when no `--board` is given.
pub const DEV_PROFILE: &str = "dev-x86_64";

/// The profiles shipped in `boards/`, built into the binary so it works from any folder.
pub const BUILTIN_PROFILES: [(&str, &str); 4] = [
    ("dev-x86_64", include_str!("../../boards/dev-x86_64.toml")),
    (
        "jetson-orin-nano-8gb",
        include_str!("../../boards/jetson-orin-nano-8gb.toml"),
    ),
    (
        "jetson-orin-nx-16gb",
        include_str!("../../boards/jetson-orin-nx-16gb.toml"),
    ),
    (
        "jetson-agx-orin-64gb",
        include_str!("../../boards/jetson-agx-orin-64gb.toml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("cannot read board profile {}: {source}; pass an existing profile file or one of {} to --board", path.display(), builtin_names())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("board profile {}{}: {message}", path.display(), at.as_deref().map(|a| format!(" ({a})")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        at: Option<String>,
        message: String,
    },
    #[error("board profile {}: `{key}` = {value} is not allowed; allowed: {allowed}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        allowed: String,
    },
    #[error(
        "no board profile named `{name}`; use a profile file path or one of {}",
        builtin_names()
    )]
    UnknownName { name: String },
}

fn builtin_names() -> String {
    BUILTIN_PROFILES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One board profile. See the module docs for what each part means to its consumer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// The profile's name; equals the file stem for shipped profiles.
    pub name: String,
    pub description: String,
    /// CPU architecture the profile is for: `x86_64` or `aarch64`.
    pub arch: String,
    /// Physical memory of the board (shared by CPU and GPU on Jetson), MiB.
    pub memory_total_mb: u32,
    /// What this process may use (weights, KV cache, buffers, engine workspace), MiB.
    pub memory_budget_mb: u32,
    /// The nvpmodel power mode the numbers were measured in (`doctor` warns on another), or
    /// `none` where the board has no power modes.
    pub power_mode: String,
    pub backend: Backend,
    pub camera: Camera,
    pub link: Link,
    pub safety: Safety,
    pub models: Models,
    #[serde(default)]
    pub guard: Option<Guard>,
    /// The file this profile was loaded from (`<built-in>/NAME.toml` for an embedded copy).
    #[serde(skip)]
    pub source: PathBuf,
    /// The folder relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Backends to try, in order; the first that starts runs the graphs.
    pub order: Vec<BackendChoice>,
    /// Threads for CPU kernels (1..=64).
    pub threads: u32,
    /// Let TensorRT build FP16 engines.
    pub tensorrt_fp16: bool,
    /// Where TensorRT engines and the timing cache are kept between runs.
    pub engine_cache_dir: PathBuf,
    /// May a later CPU backend of `order` replace a GPU backend that failed to start?
    pub cpu_fallback: bool,
    /// `libonnxruntime.so` for the `ort-*` backends (relative to the profile's folder); unset:
    /// `ORT_DYLIB_PATH`, then the dynamic loader's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnxruntime_library: Option<PathBuf>,
    /// The inference server the `triton` entry of `order` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triton: Option<TritonServer>,
}

/// `[backend.triton]`: a Triton Inference Server serving the repository `triton-repo` writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TritonServer {
    /// `grpc://HOST:PORT`, `https://HOST:PORT` (TLS) or `HOST:PORT` (Triton's gRPC port, 8001).
    pub url: String,
    /// Longest wait for one answer (an image, an embedding, a decoder step), ms; a call past it
    /// runs on the next backend of `order`.
    #[serde(default = "default_triton_deadline_ms")]
    pub deadline_ms: u32,
    /// Longest wait for a connection, ms.
    #[serde(default = "default_triton_deadline_ms")]
    pub connect_timeout_ms: u32,
    /// After a failed call the server is left alone this long, ms.
    #[serde(default = "default_triton_retry_after_ms")]
    pub retry_after_ms: u32,
    /// PEM CA certificate for an `https://` server (relative to the profile's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PathBuf>,
    /// Model names on the server are `{prefix}_vision`, `_embed`, `_decoder`; unset: the
    /// model folder's manifest name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_prefix: Option<String>,
    /// The server sends only the k largest logits per token (exact for greedy decoding);
    /// unset: all of them (vocabulary × 4 bytes per token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logits_top_k: Option<u32>,
}

fn default_triton_deadline_ms() -> u32 {
    500
}

fn default_triton_retry_after_ms() -> u32 {
    1000
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// `auto`, `realsense`, `realsense:SERIAL`, `v4l2:/dev/videoN`, `replay:PATH` or `synthetic`.
    pub spec: String,
    /// `any`, or the RealSense serial number to insist on.
    pub serial: String,
    pub depth: StreamMode,
    pub color: StreamMode,
    /// Largest colour/depth timestamp difference paired into one frame, ms.
    pub max_skew_ms: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// `sim`, `serial:PATH` or `pty:PATH`.
    pub spec: String,
    pub baud: u32,
    pub watchdog_ms: u32,
    pub heartbeat_ms: u32,
    /// No valid frame from the controller for this long: the host sends no Action (heartbeats
    /// only) until it speaks again. Default 150 (three of the controller's Status periods).
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u32,
    /// No valid frame from the controller for this long: the link is lost (exit 5).
    #[serde(default = "default_lost_link_ms")]
    pub lost_link_ms: u32,
    /// This many actions Rejected by the controller in a row stop the run (exit 6).
    #[serde(default = "default_max_rejected_in_a_row")]
    pub max_rejected_in_a_row: u32,
}

fn default_reply_timeout_ms() -> u32 {
    crate::link::DEFAULT_REPLY_TIMEOUT_MS as u32
}
fn default_lost_link_ms() -> u32 {
    crate::link::DEFAULT_LOST_LINK_MS as u32
}
fn default_max_rejected_in_a_row() -> u32 {
    crate::link::DEFAULT_MAX_REJECTED_IN_A_ROW
}

impl Link {
    /// The link SPEC as the command line writes it: `serial:PATH@BAUD`, `pty:PATH` or `sim`.
    pub fn cli_spec(&self) -> String {
        if self.spec.starts_with("serial:") {
            format!("{}@{}", self.spec, self.baud)
        } else {
            self.spec.clone()
        }
    }

    /// The serial device path, for `serial:` links.
    pub fn serial_path(&self) -> Option<&Path> {
        self.spec.strip_prefix("serial:").map(Path::new)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisLimit {
    /// The action name in the policy manifest (`dx`, `droll`, `gripper`, …).
    pub name: String,
    pub min: f64,
    pub max: f64,
    /// Largest change from the previous action sent on this axis.
    pub max_step: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    /// An action whose source frame was captured longer ago than this is not sent, ms.
    pub max_age_ms: u32,
    /// The most actions sent to the arm per second.
    pub rate_limit_hz: f64,
    pub axes: Vec<AxisLimit>,
}

impl Safety {
    pub fn axis(&self, name: &str) -> Option<&AxisLimit> {
        self.axes.iter().find(|a| a.name == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    /// The robot-policy model folder.
    pub policy: PathBuf,
    /// The SpatialBot VQA model folder (`ask`); absent on boards too small for it.
    #[serde(default)]
    pub spatialbot: Option<PathBuf>,
    /// Precision the GPU backends run at; CPU backends run the graphs' own dtype.
    pub precision: Precision,
    /// Constrained decoding of the policy's answers: each is a well-formed action list of the
    /// manifest's length with every value in its range (docs/decoding.md). Default on;
    /// `run --constrain off` overrides it.
    #[serde(default = "constrain_on")]
    pub constrain: bool,
}

fn constrain_on() -> bool {
    true
}

/// `[guard]`: a yes/no question asked of the SpatialBot model every `every_steps` steps and/or
/// before an action that closes the gripper; the other answer (or none) holds the arm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// false keeps the settings but asks nothing.
    pub enabled: bool,
    /// The SpatialBot model folder; default `models.spatialbot`.
    #[serde(default)]
    pub model: Option<PathBuf>,
    pub question: String,
    /// The answer that lets the action through: `yes` or `no`.
    #[serde(default = "guard_yes")]
    pub proceed_if: YesNo,
    /// Ask every this many steps; 0: not on a schedule.
    #[serde(default)]
    pub every_steps: u64,
    #[serde(default)]
    pub before_gripper_close: bool,
    /// The gripper's action name, and the value at which it counts as closed.
    #[serde(default = "guard_gripper")]
    pub gripper: String,
    #[serde(default = "guard_half")]
    pub close_threshold: f64,
    /// The gripper is closed at or below `close_threshold` (default: at or above).
    #[serde(default)]
    pub closed_is_below: bool,
}

fn guard_yes() -> YesNo {
    YesNo::Yes
}
fn guard_gripper() -> String {
    "gripper".into()
}
fn guard_half() -> f64 {
    0.5
}

const CAMERA_SPECS: &str = "`auto`, `realsense[:SERIAL]`, `v4l2:/dev/videoN`, `replay[,fast][,loop]:PATH`, `synthetic[,fast][:WxH[@FPS]]`";
const LINK_SPECS: &str = "`sim`, `serial:PATH` or `pty:PATH` (baud rate in `link.baud`)";

impl Board {
    /// Loads and validates a profile file.
    pub fn load(path: &Path) -> Result<Board, BoardError> {
        let text = std::fs::read_to_string(path).map_err(|source| BoardError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml_str(&text, path, &base)
    }

    /// Parses and validates profile text. `source` is named in errors; relative paths resolve
    /// against `base_dir`.
    pub fn from_toml_str(text: &str, source: &Path, base_dir: &Path) -> Result<Board, BoardError> {
        let mut board: Board = toml::from_str(text).map_err(|e| parse_error(source, text, &e))?;
        board.source = source.to_path_buf();
        board.base_dir = base_dir.to_path_buf();
        board.validate()?;
        Ok(board)
    }

    /// The dev profile: `boards/dev-x86_64.toml` found next to the binary, in the current
    /// folder or in the source tree, else the copy built into the binary.
    pub fn default_dev() -> Result<Board, BoardError> {
        Self::named(DEV_PROFILE)
    }

    /// A shipped profile by name: the file in the first `boards/` folder found (see
    /// [`boards_dirs`]), else the built-in copy.
    pub fn named(name: &str) -> Result<Board, BoardError> {
        let builtin = BUILTIN_PROFILES
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| BoardError::UnknownName {
                name: name.to_string(),
            })?;
        let file = format!("{name}.toml");
        for dir in boards_dirs() {
            let path = dir.join(&file);
            if path.is_file() {
                return Self::load(&path);
            }
        }
        let base = std::env::current_dir().unwrap_or_default().join("boards");
        Self::from_toml_str(builtin.1, &Path::new("<built-in>").join(&file), &base)
    }

    /// `--board` argument: an existing file, else a shipped profile name.
    pub fn resolve(arg: &str) -> Result<Board, BoardError> {
        let path = Path::new(arg);
        if path.is_file() {
            return Self::load(path);
        }
        let is_name = !arg.contains('/') && !arg.ends_with(".toml");
        if is_name {
            return Self::named(arg);
        }
        Self::load(path)
    }

    /// A path from the profile, resolved against the profile's folder.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn engine_cache_dir(&self) -> PathBuf {
        self.path(&self.backend.engine_cache_dir)
    }

    pub fn policy_model_dir(&self) -> PathBuf {
        self.path(&self.models.policy)
    }

    pub fn spatialbot_model_dir(&self) -> Option<PathBuf> {
        self.models.spatialbot.as_deref().map(|p| self.path(p))
    }

    /// The enabled guard's model folder: `guard.model`, else `models.spatialbot`.
    pub fn guard_model_dir(&self) -> Option<PathBuf> {
        let g = self.guard.as_ref().filter(|g| g.enabled)?;
        match &g.model {
            Some(p) => Some(self.path(p)),
            None => self.spatialbot_model_dir(),
        }
    }

    fn invalid(
        &self,
        key: &str,
        value: impl fmt::Display,
        allowed: impl Into<String>,
    ) -> BoardError {
        BoardError::Invalid {
            path: self.source.clone(),
            key: key.to_string(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    fn check_u32(&self, key: &str, v: u32, lo: u32, hi: u32) -> Result<(), BoardError> {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(self.invalid(key, v, format!("{lo}..={hi}")))
        }
    }

    fn validate(&self) -> Result<(), BoardError> {
        if self.name.trim().is_empty() {
            return Err(self.invalid("name", "\"\"", "a non-empty name"));
        }
        if !matches!(self.arch.as_str(), "x86_64" | "aarch64") {
            return Err(self.invalid(
                "arch",
                format!("{:?}", self.arch),
                "\"x86_64\" or \"aarch64\"",
            ));
        }
        self.check_u32("memory_total_mb", self.memory_total_mb, 512, 1 << 22)?;
        self.check_u32(
            "memory_budget_mb",
            self.memory_budget_mb,
            256,
            self.memory_total_mb,
        )?;
        if self.power_mode.trim().is_empty() {
            return Err(self.invalid("power_mode", "\"\"", "an nvpmodel mode name, or \"none\""));
        }

        let b = &self.backend;
        if b.order.is_empty() {
            return Err(self.invalid("backend.order", "[]", kinds_list()));
        }
        for (i, k) in b.order.iter().enumerate() {
            if b.order[..i].contains(k) {
                return Err(self.invalid("backend.order", k, "each backend at most once"));
            }
        }
        self.check_u32(
            "backend.threads",
            b.threads,
            1,
            crate::limits::MAX_THREADS as u32,
        )?;
        if b.order.contains(&BackendChoice::OrtTensorrt)
            && b.engine_cache_dir.as_os_str().is_empty()
        {
            return Err(self.invalid(
                "backend.engine_cache_dir",
                "\"\"",
                "a folder (engines take minutes to build; they must be kept between runs)",
            ));
        }
        match (&b.triton, b.order.contains(&BackendChoice::Triton)) {
            (None, true) => return Err(self.invalid(
                "backend.triton",
                "(none)",
                "a [backend.triton] table with the server's url, since backend.order names triton",
            )),
            (Some(t), _) => {
                if t.url.trim().is_empty() {
                    return Err(self.invalid("backend.triton.url", "\"\"", "grpc://HOST:PORT"));
                }
                self.check_u32("backend.triton.deadline_ms", t.deadline_ms, 1, 600_000)?;
                self.check_u32(
                    "backend.triton.connect_timeout_ms",
                    t.connect_timeout_ms,
                    1,
                    600_000,
                )?;
                self.check_u32(
                    "backend.triton.retry_after_ms",
                    t.retry_after_ms,
                    0,
                    3_600_000,
                )?;
            }
            (None, false) => {}
        }
        if !b.cpu_fallback {
            let first_gpu = b.order.iter().position(|k| !k.is_cpu() && !k.is_remote());
            if let Some(cpu_after_gpu) =
                first_gpu.and_then(|g| b.order[g..].iter().find(|k| k.is_cpu()))
            {
                return Err(self.invalid(
                    "backend.order",
                    cpu_after_gpu,
                    "with cpu_fallback = false, CPU backends only before the first GPU backend (or set cpu_fallback = true)",
                ));
            }
        }
        if b.cpu_fallback && !b.order.iter().any(|k| k.is_cpu()) {
            return Err(self.invalid(
                "backend.cpu_fallback",
                true,
                "false, or list a CPU backend (tract-cpu or ort-cpu) in backend.order",
            ));
        }

        let c = &self.camera;
        if !camera_spec_ok(&c.spec) {
            return Err(self.invalid("camera.spec", format!("{:?}", c.spec), CAMERA_SPECS));
        }
        if c.serial != "any"
            && (c.serial.is_empty() || !c.serial.chars().all(|ch| ch.is_ascii_alphanumeric()))
        {
            return Err(self.invalid(
                "camera.serial",
                format!("{:?}", c.serial),
                "\"any\" or a serial number (letters and digits)",
            ));
        }
        for (key, m) in [("camera.depth", &c.depth), ("camera.color", &c.color)] {
            let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            self.check_u32(&format!("{key}.width"), size(m.width), 16, 3840)?;
            self.check_u32(&format!("{key}.height"), size(m.height), 16, 2160)?;
            self.check_u32(&format!("{key}.fps"), m.fps, 1, 300)?;
        }
        self.check_u32("camera.max_skew_ms", c.max_skew_ms, 0, 1000)?;

        let l = &self.link;
        if !link_spec_ok(&l.spec) {
            return Err(self.invalid("link.spec", format!("{:?}", l.spec), LINK_SPECS));
        }
        self.check_u32("link.baud", l.baud, 9600, 12_000_000)?;
        self.check_u32("link.watchdog_ms", l.watchdog_ms, 10, 10_000)?;
        self.check_u32("link.heartbeat_ms", l.heartbeat_ms, 1, l.watchdog_ms / 2)?;
        // A reply must be able to arrive: the host hears at least one Ack or Status per
        // heartbeat, so the reply timeout is at least two heartbeat periods.
        self.check_u32(
            "link.reply_timeout_ms",
            l.reply_timeout_ms,
            (2 * l.heartbeat_ms).max(20),
            10_000,
        )?;
        self.check_u32(
            "link.lost_link_ms",
            l.lost_link_ms,
            l.reply_timeout_ms,
            60_000,
        )?;
        self.check_u32(
            "link.max_rejected_in_a_row",
            l.max_rejected_in_a_row,
            1,
            1000,
        )?;

        let s = &self.safety;
        self.check_u32("safety.max_age_ms", s.max_age_ms, 1, 10_000)?;
        if !(s.rate_limit_hz.is_finite() && s.rate_limit_hz > 0.0 && s.rate_limit_hz <= 1000.0) {
            return Err(self.invalid(
                "safety.rate_limit_hz",
                s.rate_limit_hz,
                "greater than 0, at most 1000",
            ));
        }
        if s.axes.is_empty() {
            return Err(self.invalid("safety.axes", "[]", "at least one [[safety.axes]] entry"));
        }
        for (i, a) in s.axes.iter().enumerate() {
            let key = |f: &str| format!("safety.axes[{i}].{f}");
            if s.axes[..i].iter().any(|o| o.name == a.name) {
                return Err(self.invalid(
                    &key("name"),
                    format!("{:?}", a.name),
                    "a name used once",
                ));
            }
            if !crate::link::WIRE_AXIS_NAMES.contains(&a.name.as_str()) {
                return Err(self.invalid(
                    &key("name"),
                    format!("{:?}", a.name),
                    crate::link::WIRE_AXIS_NAMES.join(", "),
                ));
            }
            if !a.min.is_finite() {
                return Err(self.invalid(&key("min"), a.min, "a finite number"));
            }
            if !(a.max.is_finite() && a.max > a.min) {
                return Err(self.invalid(
                    &key("max"),
                    a.max,
                    format!("a finite number greater than min ({})", a.min),
                ));
            }
            let span = a.max - a.min;
            if !(a.max_step.is_finite() && a.max_step > 0.0 && a.max_step <= span) {
                return Err(self.invalid(
                    &key("max_step"),
                    a.max_step,
                    format!("greater than 0, at most max - min ({span})"),
                ));
            }
        }

        for required in REQUIRED_AXES {
            if s.axis(required).is_none() {
                return Err(self.invalid(
                    "safety.axes",
                    format!("no entry named {required:?}"),
                    format!(
                        "one [[safety.axes]] entry for each of {}",
                        REQUIRED_AXES.join(", ")
                    ),
                ));
            }
        }

        if self.models.policy.as_os_str().is_empty() {
            return Err(self.invalid("models.policy", "\"\"", "a model folder path"));
        }
        // What the link and governor will be given must be usable: refuse it here, at load,
        // so `doctor` fails what `run` would.
        self.governor_limits()?;
        self.validate_guard()
    }

    fn validate_guard(&self) -> Result<(), BoardError> {
        let Some(g) = &self.guard else {
            return Ok(());
        };
        if g.question.trim().is_empty() {
            return Err(self.invalid("guard.question", "\"\"", "a yes/no question"));
        }
        if g.every_steps > 100_000 {
            return Err(self.invalid("guard.every_steps", g.every_steps, "0..=100000"));
        }
        if g.enabled && g.every_steps == 0 && !g.before_gripper_close {
            return Err(self.invalid(
                "guard.every_steps",
                0,
                "at least 1 when before_gripper_close = false (or set enabled = false)",
            ));
        }
        let Some(gripper) = self.safety.axis(&g.gripper) else {
            return Err(self.invalid(
                "guard.gripper",
                format!("{:?}", g.gripper),
                "the name of a [[safety.axes]] entry",
            ));
        };
        if !(g.close_threshold.is_finite()
            && (gripper.min..=gripper.max).contains(&g.close_threshold))
        {
            return Err(self.invalid(
                "guard.close_threshold",
                g.close_threshold,
                format!(
                    "within the {} axis limits {}..={}",
                    g.gripper, gripper.min, gripper.max
                ),
            ));
        }
        if g.model.as_ref().is_some_and(|m| m.as_os_str().is_empty()) {
            return Err(self.invalid("guard.model", "\"\"", "a SpatialBot model folder path"));
        }
        if g.enabled && g.model.is_none() && self.models.spatialbot.is_none() {
            return Err(self.invalid(
                "guard.model",
                "(none, and no models.spatialbot)",
                "a SpatialBot model folder path",
            ));
        }
        Ok(())
    }
}

/// Every profile limits these; `terminate` defaults to 0..=1.
const REQUIRED_AXES: [&str; 7] = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"];

fn kinds_list() -> String {
    BackendChoice::ALL
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `auto`, or anything the camera module's SPEC grammar accepts.
fn camera_spec_ok(spec: &str) -> bool {
    spec == "auto" || spec.parse::<crate::camera::CameraSpec>().is_ok()
}

fn link_spec_ok(spec: &str) -> bool {
    match spec.split_once(':') {
        None => spec == "sim",
        Some(("serial", path)) | Some(("pty", path)) => !path.is_empty() && !path.contains('@'),
        Some(_) => false,
    }
}

/// Turns a TOML/serde error into one line naming the line and the table it happened in.
fn parse_error(source: &Path, text: &str, err: &toml::de::Error) -> BoardError {
    let at = err.span().map(|span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let table = before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('[') && l.ends_with(']'))
            .map(|t| format!(" in {t}"))
            .unwrap_or_else(|| " at the top level".to_string());
        // The key on that line, when it has one: `threads` for `threads = nan`.
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with(['#', '[', '{', '"']))
            .map(|k| format!(", `{k}`"))
            .unwrap_or_default();
        format!("line {line}{table}{key}")
    });
    let mut message = err.message().trim().replace('\n', " ");
    if message.starts_with("unknown variant") && message.contains("tract-cpu") {
        message.push_str(" (backend.order)");
    }
    BoardError::Parse {
        path: source.to_path_buf(),
        at,
        message,
    }
}

/// Folders searched for shipped profiles, in order: `$SPATIALBOT_EDGE_HOME/boards`, beside the
/// binary (`bin/../boards`, `bin/../share/spatialbot-edge/boards`, and the source tree for
/// `target/<profile>/` binaries), then `./boards`.
pub fn boards_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("SPATIALBOT_EDGE_HOME") {
        dirs.push(PathBuf::from(home).join("boards"));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("boards"));
        for up in exe_dir.ancestors().skip(1).take(3) {
            dirs.push(up.join("boards"));
            dirs.push(up.join("share/spatialbot-edge/boards"));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join("boards"));
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_is_valid_and_named_after_its_file() {
        for (name, text) in BUILTIN_PROFILES {
            let b = Board::from_toml_str(text, Path::new(name), Path::new("boards"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(b.name, name);
        }
    }

    #[test]
    fn link_cli_spec_carries_the_baud_rate() {
        let b = Board::from_toml_str(BUILTIN_PROFILES[2].1, Path::new("x"), Path::new("")).unwrap();
        assert!(b.link.cli_spec().starts_with("serial:/dev/"));
        assert!(b.link.cli_spec().ends_with(&format!("@{}", b.link.baud)));
    }
}

/// The crate's layering, checked on the source: every subsystem may use only the modules listed
/// for it (so the board profile stays a leaf that only this module and the commands read, and
/// no two modules import each other).
#[cfg(test)]
mod layering {
    /// Each module and the crate modules its code may use (`crate::NAME`; tests may use any).
    const ALLOWED: &[(&str, &[&str])] = &[
        ("exit", &[]),
        ("limits", &[]),
        ("fsutil", &[]),
        ("memory", &[]),
        ("cpu", &[]),
        ("policy", &[]),
        ("rgbd", &["cpu", "limits"]),
        ("imageio", &["fsutil", "limits", "rgbd"]),
        ("preprocess", &["cpu", "rgbd", "limits"]),
        ("link", &["exit", "limits"]),
        ("telemetry", &["link"]),
        ("sim", &["rgbd"]),
        ("camera", &["fsutil", "imageio", "limits", "rgbd", "sim"]),
        ("model", &["limits", "link", "policy", "preprocess", "rgbd"]),
        ("spatialqa", &["fsutil", "model", "rgbd", "sim"]),
        (
            "pipeline",
            &[
                "camera",
                "exit",
                "fsutil",
                "link",
                "model",
                "policy",
                "preprocess",
                "rgbd",
                "telemetry",
                "limits",
                "memory",
            ],
        ),
    ];

    fn sources(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for p in entries {
                sources(&p, out);
            }
        } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
    }

    #[test]
    fn subsystems_never_import_the_configuration_and_follow_the_layers() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for (module, allowed) in ALLOWED {
            let mut files = Vec::new();
            sources(&src.join(module), &mut files);
            sources(&src.join(format!("{module}.rs")), &mut files);
            assert!(!files.is_empty(), "no sources for {module}");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                // The module's own code; its tests (`#[cfg(test)]`, at the end of a file) may
                // use anything.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (i, _) in code.match_indices("crate::") {
                    let used: String = code[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        used == *module || allowed.contains(&used.as_str()),
                        "{} uses crate::{used}; {module} may use only {allowed:?}",
                        file.display()
                    );
                }
            }
        }
    }
}
