//! Checks of a board against its profile: libraries, permissions, links, memory, power mode.
//! Each check reads `/sys`, `/proc`, `/etc` or the loader cache and says pass, warn, fail or
//! skip, with the fix to apply. Nothing is opened that could move the arm or reset a device:
//! serial ports are judged by their mode bits, never opened.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{BackendChoice, Board};
use crate::telemetry::system;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a warn or fail; empty otherwise.
    pub fix: String,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.to_string(),
        status,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// What the checks read, so tests can point them at a fake `/sys` tree.
#[derive(Clone, Debug)]
pub struct Roots {
    pub sys: PathBuf,
    pub proc_: PathBuf,
    pub etc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            sys: "/sys".into(),
            proc_: "/proc".into(),
            etc: "/etc".into(),
        }
    }
}

/// Every check for `board` on this machine.
pub fn run_checks(board: &Board, roots: &Roots) -> Vec<Check> {
    let libs = loader_cache();
    vec![
        check(
            "board profile",
            Status::Pass,
            format!("{} ({})", board.name, board.source.display()),
            "",
        ),
        arch_check(board),
        l4t_check(board, roots),
        realsense_check(&libs),
        backend_check(board, &libs),
    ]
    .into_iter()
    .chain(backend_probe_checks(board))
    .chain([
        engine_cache_check(board),
        serial_check(board, roots),
        modemmanager_check(board, roots),
        ftdi_check(roots),
        camera_usb_check(board, roots),
        memory_check(board, roots),
        model_size_check(board),
        power_mode_check(board),
    ])
    .chain(model_folder_checks(board))
    .chain(triton_checks(board))
    .collect()
}

/// The profile's Triton server, for each model folder it would serve: live, ready, and each
/// model's metadata against the manifest. Fails when `backend.order` uses the server, warns
/// otherwise (the local backends run everything then).
fn triton_checks(board: &Board) -> Vec<Check> {
    let Some(server) = board.triton_config() else {
        return Vec::new();
    };
    let used = board.backend.order.contains(&BackendChoice::Triton);
    let mut folders = Vec::new();
    let policy = board.policy_model_dir();
    if policy.join("manifest.toml").exists() {
        folders.push(policy);
    }
    folders.extend(board.guard_model_dir());
    if folders.is_empty() {
        return vec![check(
            "triton server",
            Status::Skip,
            format!(
                "{}: no model folder of this profile is here to check it against",
                server.url
            ),
            "",
        )];
    }
    folders
        .into_iter()
        .map(|dir| {
            let manifest = match crate::model::folder::read_manifest(&dir) {
                Ok(m) => m,
                Err(e) => return check("triton server", Status::Skip, e.to_string(), ""),
            };
            let name = format!("triton server for {}", manifest.name);
            triton_check(&name, &server, &manifest, used)
        })
        .collect()
}

#[cfg(feature = "triton")]
fn triton_check(
    name: &str,
    server: &crate::model::backend::TritonConfig,
    manifest: &crate::model::manifest::Manifest,
    used: bool,
) -> Check {
    let c = crate::model::backend::triton::probe_server(server, manifest);
    let detail = format!(
        "{}: live {}, ready {}{}{}",
        c.url,
        c.live,
        c.ready,
        if c.models.is_empty() { "" } else { "; " },
        c.models.join("; ")
    );
    if c.usable {
        check(name, Status::Pass, detail, "")
    } else {
        let status = if used { Status::Fail } else { Status::Warn };
        check(
            name,
            status,
            format!("{detail}; {}", c.problem),
            "start the server with the repository `spatialbot-edge triton-repo --model DIR --out REPO` writes (docs/triton.md), or fix [backend.triton] url; meanwhile the next backend of backend.order runs every call",
        )
    }
}

#[cfg(not(feature = "triton"))]
fn triton_check(
    name: &str,
    _server: &crate::model::backend::TritonConfig,
    _manifest: &crate::model::manifest::Manifest,
    used: bool,
) -> Check {
    check(
        name,
        if used { Status::Fail } else { Status::Skip },
        crate::model::backend::triton::TRITON_UNAVAILABLE,
        "rebuild with the default features",
    )
}

fn arch_check(board: &Board) -> Check {
    let here = std::env::consts::ARCH;
    if here == board.arch {
        check("architecture", Status::Pass, here, "")
    } else {
        check(
            "architecture",
            Status::Warn,
            format!("this machine is {here}, the profile is for {}", board.arch),
            "pass the profile of this board with --board (boards/*.toml)",
        )
    }
}

fn l4t_check(board: &Board, roots: &Roots) -> Check {
    let release = std::fs::read_to_string(roots.etc.join("nv_tegra_release")).ok();
    match release.as_deref().and_then(|r| r.lines().next()) {
        None if board.arch == "aarch64" && board.power_mode != "none" => check(
            "JetPack (L4T)",
            Status::Warn,
            "no /etc/nv_tegra_release: not a Jetson, or L4T is not installed",
            "flash JetPack 6 (L4T R36) with SDK Manager or the SD-card image (docs/jetson.md)",
        ),
        None => check("JetPack (L4T)", Status::Skip, "not a Jetson", ""),
        Some(line) => {
            let line = line.trim_start_matches('#').trim().to_string();
            if line.starts_with("R36") {
                check(
                    "JetPack (L4T)",
                    Status::Pass,
                    format!("{line} (JetPack 6)"),
                    "",
                )
            } else {
                check(
                    "JetPack (L4T)",
                    Status::Warn,
                    format!("{line}: not JetPack 6 (R36); onnxruntime-gpu and librealsense wheels are built per JetPack"),
                    "flash JetPack 6, or install onnxruntime-gpu and librealsense built for this L4T release",
                )
            }
        }
    }
}

/// Shared libraries the dynamic loader knows (`ldconfig -p`), as (file name, path).
fn loader_cache() -> Vec<(String, PathBuf)> {
    let out = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| {
            std::process::Command::new("/sbin/ldconfig")
                .arg("-p")
                .output()
        });
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (left, path) = l.split_once("=>")?;
            let name = left.split_whitespace().next()?.to_string();
            Some((name, PathBuf::from(path.trim())))
        })
        .collect()
}

fn find_lib<'a>(libs: &'a [(String, PathBuf)], prefix: &str) -> Option<&'a (String, PathBuf)> {
    libs.iter().find(|(n, _)| n.starts_with(prefix))
}

/// The version in a library's real file name (`libonnxruntime.so.1.20.1` → `1.20.1`).
pub fn version_from_soname(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name()?.to_string_lossy().into_owned();
    let (_, v) = name.split_once(".so.")?;
    (!v.is_empty()).then(|| v.to_string())
}

/// The librealsense release this binary's bindings come from (`realsense-sys` in Cargo.toml).
pub const REALSENSE_BUILT_FOR: &str = "2.56";

/// `librealsense2.so*` in the `LD_LIBRARY_PATH` folders (where a pip wheel or a source build
/// outside the loader cache puts it), then in the loader cache.
fn find_realsense(libs: &[(String, PathBuf)]) -> Option<PathBuf> {
    let from_env = std::env::var_os("LD_LIBRARY_PATH").and_then(|v| {
        std::env::split_paths(&v).find_map(|dir| {
            let rd = std::fs::read_dir(&dir).ok()?;
            let mut names: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("librealsense2.so"))
                })
                .collect();
            names.sort();
            names.pop()
        })
    });
    from_env.or_else(|| find_lib(libs, "librealsense2.so").map(|(_, p)| p.clone()))
}

/// Whether a librealsense `version` (`2.56.5`, or the soname's `2.56`) is the release this
/// binary was built for: the library's soname carries major.minor, and its C API changes from
/// one minor release to the next.
pub fn realsense_version_verdict(version: &str) -> (Status, String) {
    let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    let found = major_minor(version);
    if found == REALSENSE_BUILT_FOR {
        (
            Status::Pass,
            format!("version {version}, built for {REALSENSE_BUILT_FOR}.x"),
        )
    } else {
        (
            Status::Fail,
            format!("version {version}, but this binary was built for {REALSENSE_BUILT_FOR}.x: the C API differs between releases"),
        )
    }
}

fn realsense_check(libs: &[(String, PathBuf)]) -> Check {
    let found = find_realsense(libs);
    let version = found.as_deref().and_then(version_from_soname);
    let found_text = found.as_ref().map(|p| {
        format!(
            "{} (version {})",
            p.display(),
            version.as_deref().unwrap_or("unknown")
        )
    });
    if cfg!(feature = "realsense") {
        match (&found, &version) {
            (Some(p), Some(v)) => {
                let (status, detail) = realsense_version_verdict(v);
                check(
                    "librealsense",
                    status,
                    format!("built in; {}: {detail}", p.display()),
                    if status == Status::Pass {
                        String::new()
                    } else {
                        format!("install librealsense {REALSENSE_BUILT_FOR}.x (on Jetson build that tag from source with -DFORCE_RSUSB_BACKEND=ON), or rebuild spatialbot-edge against the installed one (realsense-sys version in Cargo.toml)")
                    },
                )
            }
            (Some(p), None) => check(
                "librealsense",
                Status::Warn,
                format!("built in; {} has no version in its file name", p.display()),
                format!("make sure it is librealsense {REALSENSE_BUILT_FOR}.x (`rs-enumerate-devices --version`)"),
            ),
            (None, _) => check(
                "librealsense",
                Status::Fail,
                "built with the realsense feature but librealsense2.so is neither in the loader cache nor in LD_LIBRARY_PATH",
                format!("install librealsense {REALSENSE_BUILT_FOR}.x (Intel's apt repo on x86_64; on Jetson build it from source with -DFORCE_RSUSB_BACKEND=ON), then run `sudo ldconfig`"),
            ),
        }
    } else {
        check(
            "librealsense",
            Status::Skip,
            format!(
                "not built in (build with --features realsense){}",
                found_text
                    .map(|t| format!("; the system has {t}"))
                    .unwrap_or_default()
            ),
            "",
        )
    }
}

fn backend_check(board: &Board, libs: &[(String, PathBuf)]) -> Check {
    let mut notes = Vec::new();
    let mut usable = Vec::new();
    let mut missing = Vec::new();
    for kind in &board.backend.order {
        match kind {
            BackendChoice::TractCpu => usable.push(kind.to_string()),
            BackendChoice::Triton if !cfg!(feature = "triton") => missing.push(format!(
                "{kind}: not built in (build with the default features)"
            )),
            BackendChoice::Triton => usable.push(format!(
                "{kind} ({}; the server is checked below)",
                board
                    .backend
                    .triton
                    .as_ref()
                    .map_or("no [backend.triton]", |t| t.url.as_str())
            )),
            BackendChoice::TractCuda if !cfg!(feature = "cuda") => {
                missing.push(format!("{kind}: not built in (build with --features cuda)"))
            }
            BackendChoice::TractCuda => {
                match find_lib(libs, "libcudart.so").or_else(|| find_lib(libs, "libcuda.so")) {
                    Some((_, p)) => usable.push(format!("{kind} ({})", p.display())),
                    None => missing.push(format!("{kind}: no CUDA runtime in the loader cache")),
                }
            }
            BackendChoice::OrtCpu | BackendChoice::OrtCuda | BackendChoice::OrtTensorrt => {
                if !cfg!(feature = "ort") {
                    missing.push(format!("{kind}: not built in (build with --features ort)"));
                    continue;
                }
                let ort = std::env::var_os("ORT_DYLIB_PATH")
                    .map(PathBuf::from)
                    .filter(|p| p.exists())
                    .or_else(|| find_lib(libs, "libonnxruntime.so").map(|(_, p)| p.clone()));
                let Some(ort) = ort else {
                    missing.push(format!("{kind}: libonnxruntime.so not found (ORT_DYLIB_PATH unset, not in the loader cache)"));
                    continue;
                };
                let v = version_from_soname(&ort).unwrap_or_else(|| "unknown".into());
                let needs = match kind {
                    BackendChoice::OrtTensorrt => Some("libnvinfer.so"),
                    BackendChoice::OrtCuda => Some("libcudart.so"),
                    _ => None,
                };
                match needs.map(|n| (n, find_lib(libs, n))) {
                    Some((n, None)) => {
                        missing.push(format!("{kind}: onnxruntime {v} found but {n} is not"))
                    }
                    Some((_, Some((_, p)))) => usable.push(format!(
                        "{kind} (onnxruntime {v}, {} {})",
                        p.display(),
                        version_from_soname(p).unwrap_or_default()
                    )),
                    None => usable.push(format!("{kind} (onnxruntime {v} at {})", ort.display())),
                }
            }
        }
    }
    if !usable.is_empty() {
        notes.push(format!("usable: {}", usable.join("; ")));
    }
    if !missing.is_empty() {
        notes.push(format!("unavailable: {}", missing.join("; ")));
    }
    let first_ok = usable
        .first()
        .map(|u| u.starts_with(board.backend.order[0].as_str()))
        .unwrap_or(false);
    let (status, fix) = if usable.is_empty() {
        (Status::Fail, "build with the backend's feature and install its libraries (docs/jetson.md), or pass a profile whose backend.order lists what this machine has")
    } else if !first_ok {
        (Status::Warn, "the profile's first backend cannot start here; the next one in backend.order will run (see docs/jetson.md)")
    } else {
        (Status::Pass, "")
    };
    check("inference backends", status, notes.join(" | "), fix)
}

/// One check per inference backend: compiled in, and whether its runtime loads here (onnxruntime:
/// version and providers). A backend the profile's `backend.order` uses fails when it cannot
/// start; one it does not use only warns.
fn backend_probe_checks(board: &Board) -> Vec<Check> {
    let library = board
        .backend
        .onnxruntime_library
        .as_deref()
        .map(|p| board.path(p));
    crate::model::backend::probe(library.as_deref())
        .into_iter()
        .map(|p| {
            let used = board.backend.order.iter().any(|k| match p.backend {
                "tract" => *k == BackendChoice::TractCpu,
                "ort" => matches!(
                    k,
                    BackendChoice::OrtCpu | BackendChoice::OrtCuda | BackendChoice::OrtTensorrt
                ),
                "tract-cuda" => *k == BackendChoice::TractCuda,
                "triton" => *k == BackendChoice::Triton,
                _ => false,
            });
            let name = format!("backend {}", p.backend);
            if p.usable {
                let mut detail = p.detail.clone();
                if p.backend == "ort" {
                    for (kind, provider) in [
                        (BackendChoice::OrtTensorrt, "TensorrtExecutionProvider"),
                        (BackendChoice::OrtCuda, "CUDAExecutionProvider"),
                    ] {
                        if board.backend.order.contains(&kind)
                            && !p.providers.iter().any(|q| q == provider)
                        {
                            return check(
                                &name,
                                Status::Fail,
                                format!("{detail}; the profile asks for {kind} but this onnxruntime has no {provider}"),
                                "install onnxruntime-gpu built for this JetPack/CUDA (docs/jetson.md) and point ORT_DYLIB_PATH at it",
                            );
                        }
                    }
                }
                if !used {
                    detail.push_str(" (not in this profile's backend.order)");
                }
                check(&name, Status::Pass, detail, "")
            } else if used {
                check(&name, Status::Fail, p.detail, p.fix)
            } else if !p.compiled {
                check(
                    &name,
                    Status::Skip,
                    format!("{} (not in this profile's backend.order)", p.detail),
                    "",
                )
            } else {
                check(&name, Status::Warn, p.detail, p.fix)
            }
        })
        .collect()
}

fn engine_cache_check(board: &Board) -> Check {
    if !board.backend.order.contains(&BackendChoice::OrtTensorrt) {
        return check(
            "TensorRT engine cache",
            Status::Skip,
            "the profile does not use TensorRT",
            "",
        );
    }
    let dir = board.engine_cache_dir();
    match std::fs::read_dir(&dir) {
        Ok(rd) => {
            let engines = rd
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".engine"))
                .count();
            let writable = std::fs::metadata(&dir)
                .map(|m| !m.permissions().readonly())
                .unwrap_or(false);
            if !writable {
                check(
                    "TensorRT engine cache",
                    Status::Warn,
                    format!("{} is read-only", dir.display()),
                    format!("sudo chown spatialbot: {}", dir.display()),
                )
            } else if engines == 0 {
                check(
                    "TensorRT engine cache",
                    Status::Warn,
                    format!("{} holds no engines: the first start builds them (minutes, silently inside TensorRT)", dir.display()),
                    "run `spatialbot-edge bench --frames 1` once after installing, before the robot needs to move",
                )
            } else {
                check(
                    "TensorRT engine cache",
                    Status::Pass,
                    format!("{} engines in {}", engines, dir.display()),
                    "",
                )
            }
        }
        Err(_) => check(
            "TensorRT engine cache",
            Status::Warn,
            format!(
                "{} does not exist: engines would be rebuilt at every start",
                dir.display()
            ),
            format!(
                "sudo mkdir -p {0} && sudo chown spatialbot: {0} (install.sh does this)",
                dir.display()
            ),
        ),
    }
}

/// The supplementary and effective group ids of this process (`/proc/self/status`).
fn my_groups(roots: &Roots) -> (u32, Vec<u32>) {
    let status = std::fs::read_to_string(roots.proc_.join("self/status")).unwrap_or_default();
    let field = |k: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let uid = field("Uid:").get(1).copied().unwrap_or(u32::MAX);
    let mut groups = field("Groups:");
    if let Some(&egid) = field("Gid:").get(1) {
        groups.push(egid);
    }
    (uid, groups)
}

fn serial_check(board: &Board, roots: &Roots) -> Check {
    let Some(path) = board.link.serial_path() else {
        return check(
            "serial port",
            Status::Skip,
            format!("link is {:?}, not a serial port", board.link.spec),
            "",
        );
    };
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => {
            return check(
                "serial port",
                Status::Fail,
                format!("{} does not exist", path.display()),
                "plug in the arm controller; install packaging/99-spatialbot-edge.rules for the /dev/spatialbot-arm symlink (edit its idVendor/idProduct to your adapter's, see `udevadm info -a -n /dev/ttyUSB0`)",
            )
        }
    };
    let (uid, groups) = my_groups(roots);
    let mode = meta.mode();
    let rw = |shift: u32| (mode >> shift) & 0o6 == 0o6;
    let ok = uid == 0
        || (meta.uid() == uid && rw(6))
        || (groups.contains(&meta.gid()) && rw(3))
        || rw(0);
    if ok {
        check(
            "serial port",
            Status::Pass,
            format!("{} is readable and writable by this user", path.display()),
            "",
        )
    } else {
        check(
            "serial port",
            Status::Fail,
            format!("{} (mode {:o}, group id {}) is not writable by this user", path.display(), mode & 0o777, meta.gid()),
            "sudo usermod -aG dialout $USER, then log in again (the systemd unit runs in group dialout)",
        )
    }
}

fn modemmanager_check(board: &Board, roots: &Roots) -> Check {
    if board.link.serial_path().is_none() {
        return check("ModemManager", Status::Skip, "no serial link", "");
    }
    let running = std::fs::read_dir(&roots.proc_)
        .map(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .map(|c| c.trim() == "ModemManager")
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if running {
        check(
            "ModemManager",
            Status::Warn,
            "ModemManager is running: it probes new ttyACM/ttyUSB ports and can grab the arm's port for seconds",
            "install packaging/99-spatialbot-edge.rules (sets ID_MM_DEVICE_IGNORE), or `sudo systemctl disable --now ModemManager`",
        )
    } else {
        check("ModemManager", Status::Pass, "not running", "")
    }
}

fn ftdi_check(roots: &Roots) -> Check {
    let dir = roots.sys.join("bus/usb-serial/devices");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return check(
            "FTDI latency timer",
            Status::Skip,
            "no USB-serial adapters (usb-serial driver not loaded)",
            "",
        );
    };
    let mut slow = Vec::new();
    let mut fast = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(v) = std::fs::read_to_string(e.path().join("latency_timer")) {
            match v.trim().parse::<u32>() {
                Ok(ms) if ms <= 1 => fast.push(name),
                Ok(ms) => slow.push(format!("{name} {ms} ms")),
                Err(_) => {}
            }
        }
    }
    if !slow.is_empty() {
        check(
            "FTDI latency timer",
            Status::Warn,
            format!("{}: each read waits up to this long for more bytes", slow.join(", ")),
            "install packaging/99-spatialbot-edge.rules (sets latency_timer to 1 ms), or `echo 1 | sudo tee /sys/bus/usb-serial/devices/ttyUSB0/latency_timer`",
        )
    } else if !fast.is_empty() {
        check(
            "FTDI latency timer",
            Status::Pass,
            format!("{}: 1 ms", fast.join(", ")),
            "",
        )
    } else {
        check(
            "FTDI latency timer",
            Status::Skip,
            "no adapter with a latency timer (FTDI) attached",
            "",
        )
    }
}

/// RealSense cameras on the USB bus: (sysfs name, product, link speed in Mbit/s).
pub fn realsense_usb(roots: &Roots) -> Vec<(String, String, u32)> {
    let Ok(rd) = std::fs::read_dir(roots.sys.join("bus/usb/devices")) else {
        return Vec::new();
    };
    let mut found: Vec<_> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let p = e.path();
            let vendor = std::fs::read_to_string(p.join("idVendor")).ok()?;
            if vendor.trim() != "8086" {
                return None;
            }
            let product = std::fs::read_to_string(p.join("product"))
                .unwrap_or_default()
                .trim()
                .to_string();
            if !product.contains("RealSense") {
                return None;
            }
            let speed = std::fs::read_to_string(p.join("speed"))
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()? as u32;
            Some((e.file_name().to_string_lossy().into_owned(), product, speed))
        })
        .collect();
    found.sort();
    found
}

fn camera_usb_check(board: &Board, roots: &Roots) -> Check {
    let cams = realsense_usb(roots);
    let wants_realsense = board.camera.spec.starts_with("realsense");
    if cams.is_empty() {
        return if wants_realsense {
            check(
                "camera USB link",
                Status::Warn,
                "no RealSense camera on the USB bus",
                "plug the camera into a USB 3 port with a USB 3 cable; check `lsusb | grep 8086`",
            )
        } else {
            check(
                "camera USB link",
                Status::Skip,
                "no RealSense camera attached",
                "",
            )
        };
    }
    let slow: Vec<_> = cams.iter().filter(|c| c.2 < 5000).collect();
    let list = cams
        .iter()
        .map(|(n, p, s)| format!("{p} at {n}: {s} Mbit/s"))
        .collect::<Vec<_>>()
        .join(", ");
    if slow.is_empty() {
        check("camera USB link", Status::Pass, list, "")
    } else {
        check(
            "camera USB link",
            Status::Warn,
            format!("{list}: a USB 2 link limits depth to 640x480 at 30 Hz and drops frames"),
            "use a USB 3 port (blue) and a short USB 3 cable; reseat the Type-C plug (it links at USB 2 when half inserted)",
        )
    }
}

fn memory_check(board: &Board, roots: &Roots) -> Check {
    let meminfo = std::fs::read_to_string(roots.proc_.join("meminfo")).unwrap_or_default();
    let total = system::meminfo_kb(&meminfo, "MemTotal:").map(|kb| kb / 1024.0);
    let avail = system::meminfo_kb(&meminfo, "MemAvailable:").map(|kb| kb / 1024.0);
    let budget = board.memory_budget_mb as f64;
    match (total, avail) {
        (Some(t), _) if t < budget => check(
            "memory",
            Status::Fail,
            format!("{t:.0} MiB in total, the profile's budget is {budget:.0} MiB"),
            "use the profile of this board (smaller models or precision), or lower memory_budget_mb",
        ),
        (Some(t), Some(a)) if a < budget => check(
            "memory",
            Status::Warn,
            format!("{a:.0} MiB available of {t:.0} MiB; the profile's budget is {budget:.0} MiB"),
            "stop other programs (a desktop session takes ~1 GB on Jetson: `sudo systemctl set-default multi-user.target`), or add swap (zram) as a cushion",
        ),
        (Some(t), Some(a)) => check("memory", Status::Pass, format!("{a:.0} MiB available of {t:.0} MiB; budget {budget:.0} MiB"), ""),
        _ => check("memory", Status::Skip, "cannot read /proc/meminfo", ""),
    }
}

/// Bytes of the files directly in a folder (a model folder is flat).
fn folder_bytes(dir: &Path) -> Option<u64> {
    let rd = std::fs::read_dir(dir).ok()?;
    Some(
        rd.filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum(),
    )
}

fn model_size_check(board: &Board) -> Check {
    let mut folders = vec![("policy", board.policy_model_dir())];
    if let Some(dir) = board.spatialbot_model_dir() {
        folders.push(("spatialbot", dir));
    }
    let mut missing = Vec::new();
    let mut total = 0u64;
    let mut parts = Vec::new();
    for (kind, dir) in &folders {
        match folder_bytes(dir) {
            Some(bytes) => {
                total += bytes;
                parts.push(format!("{kind} {:.1} MiB", bytes as f64 / 1048576.0));
            }
            None => missing.push(format!("{kind} ({})", dir.display())),
        }
    }
    let budget = board.memory_budget_mb as f64 * 1048576.0;
    if !missing.is_empty() {
        return check(
            "model files",
            Status::Warn,
            format!("model folder not found: {}", missing.join(", ")),
            "convert the checkpoints with tools/export and copy the folders there, or fix models.* in the profile",
        );
    }
    // Weights are read into memory once per backend; the rest of the budget holds the KV cache,
    // activations and the engine workspace.
    if total as f64 > 0.75 * budget {
        check(
            "model files",
            Status::Fail,
            format!("{} = {:.0} MiB, over 75 % of the {} MiB budget", parts.join(" + "), total as f64 / 1048576.0, board.memory_budget_mb),
            "use a smaller precision (models.precision) or leave SpatialBot out of this board's profile (models.spatialbot)",
        )
    } else {
        check(
            "model files",
            Status::Pass,
            format!(
                "{} within the {} MiB budget",
                parts.join(" + "),
                board.memory_budget_mb
            ),
            "",
        )
    }
}

/// The board's model folders through the validator `run`, `bench` and `ask` use
/// (`crate::model::validate`): a folder `run` would refuse fails here too. The policy folder is
/// only checked where it holds a manifest (without one `run` takes the shipped tiny policy); the
/// enabled guard's folder always is (`run` refuses to start without it).
fn model_folder_checks(board: &Board) -> Vec<Check> {
    use crate::model::manifest::ModelKind;
    let mut folders = Vec::new();
    let policy = board.policy_model_dir();
    if policy.join("manifest.toml").exists() {
        folders.push(("policy model", policy, ModelKind::Policy));
    }
    if let Some(dir) = board.guard_model_dir() {
        folders.push(("guard model", dir, ModelKind::Spatialbot));
    }
    folders
        .into_iter()
        .map(
            |(name, dir, kind)| match validate_like_run(board, &dir, kind) {
                Ok(folder) => check(
                    name,
                    Status::Pass,
                    format!("{} ({}): manifest, files and tokenizer valid", folder.manifest.name, dir.display()),
                    "",
                ),
                Err(e) => check(
                    name,
                    Status::Fail,
                    e.to_string(),
                    "re-export the model folder (tools/export) or fix the models.* / guard.model path in the profile",
                ),
            },
        )
        .collect()
}

/// What `run` checks before loading a folder: the files' sha256 (skipped for files unchanged
/// since a check recorded in the board's engine cache folder, as `run` does), then the
/// validator's checks, tokenizer included.
fn validate_like_run(
    board: &Board,
    dir: &Path,
    kind: crate::model::manifest::ModelKind,
) -> Result<crate::model::ModelFolder, crate::model::ModelError> {
    use crate::model::validate;
    let (folder, _) =
        crate::pipeline::verified::open_model_folder(dir, Some(&board.engine_cache_dir()))?;
    validate::check_opened(&folder, Some(kind))?;
    validate::load_tokenizer(&folder)?;
    Ok(folder)
}

fn power_mode_check(board: &Board) -> Check {
    if board.power_mode == "none" {
        return check(
            "power mode",
            Status::Skip,
            "the profile has no power modes",
            "",
        );
    }
    match system::power_mode() {
        None => check(
            "power mode",
            Status::Warn,
            format!("cannot read the power mode (no nvpmodel); the profile expects {}", board.power_mode),
            "on a Jetson: `sudo nvpmodel -q`; numbers measured in another mode do not compare",
        ),
        Some(m) if m.eq_ignore_ascii_case(&board.power_mode) || m.replace('_', " ").starts_with(&board.power_mode) => {
            check("power mode", Status::Pass, m, "")
        }
        Some(m) => check(
            "power mode",
            Status::Warn,
            format!("power mode is {m}, the profile expects {}: speed differs by up to 2-3x between modes", board.power_mode),
            format!("`sudo nvpmodel -m <id of {}>` (ids: `grep POWER_MODEL /etc/nvpmodel.conf`), then `sudo jetson_clocks` for steady clocks", board.power_mode),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realsense_versions_compare_by_major_and_minor() {
        assert_eq!(
            realsense_version_verdict(&format!("{REALSENSE_BUILT_FOR}.5")).0,
            Status::Pass
        );
        assert_eq!(
            realsense_version_verdict(REALSENSE_BUILT_FOR).0,
            Status::Pass
        );
        let (status, detail) = realsense_version_verdict("2.50.0");
        assert_eq!(status, Status::Fail);
        assert!(detail.contains("2.50.0") && detail.contains(REALSENSE_BUILT_FOR));
    }

    #[test]
    fn sonames_give_versions() {
        assert_eq!(
            version_from_soname(Path::new("/nonexistent/libonnxruntime.so.1.20.1")).as_deref(),
            Some("1.20.1")
        );
        assert_eq!(
            version_from_soname(Path::new("/nonexistent/libfoo.so")),
            None
        );
    }
}
