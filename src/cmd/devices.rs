//! `spatialbot-edge devices`.

use std::path::PathBuf;

use serde::Serialize;
use spatialbot_edge::camera::enumerate::{self, CameraInfo};
use spatialbot_edge::model::backend::{self, BackendProbe};

use super::{bad_input, print_json};

/// List cameras, the synthetic source, serial ports and inference backends.
#[derive(clap::Args)]
pub struct Args {
    /// Write each RealSense camera's factory calibration to DIR/<serial>.toml.
    #[arg(long, value_name = "DIR")]
    pub calib_out: Option<PathBuf>,
    /// Depth mode the calibration is for (intrinsics depend on it), e.g. 848x480@30.
    #[arg(
        long,
        value_name = "WxH@FPS",
        default_value = "640x480@30",
        requires = "calib_out"
    )]
    pub depth: String,
    /// Colour mode the calibration is for, e.g. 1280x720@30.
    #[arg(
        long,
        value_name = "WxH@FPS",
        default_value = "640x480@30",
        requires = "calib_out"
    )]
    pub color: String,
    /// Also check this Triton Inference Server (gRPC URL): live, ready, and its models'
    /// metadata against --model's manifest.
    #[arg(long, value_name = "URL")]
    pub triton: Option<String>,
    /// The model folder the server should serve (default: the shipped tiny policy).
    #[arg(long, value_name = "DIR", requires = "triton")]
    pub model: Option<PathBuf>,
}

#[derive(Serialize)]
struct SerialPortInfo {
    name: String,
    kind: String,
}

#[derive(Serialize)]
struct Report {
    cameras: Vec<CameraInfo>,
    synthetic: String,
    serial_ports: Vec<SerialPortInfo>,
    gpus: Vec<spatialbot_edge::telemetry::system::GpuInfo>,
    backends: Vec<BackendProbe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    triton: Option<serde_json::Value>,
    notes: Vec<String>,
    calibrations_written: Vec<String>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let mut notes = Vec::new();
    let mut cameras = Vec::new();
    let calibrations_written: Vec<String>;
    #[cfg(feature = "realsense")]
    {
        match spatialbot_edge::camera::realsense::enumerate() {
            Ok(found) => cameras.extend(found),
            Err(e) => notes.push(format!("RealSense: {e}")),
        }
        calibrations_written = match &args.calib_out {
            Some(dir) => {
                use spatialbot_edge::camera::realsense::{self, Modes};
                let mode = |flag: &str, text: &str| {
                    spatialbot_edge::camera::spec::parse_mode(text).ok_or_else(|| {
                        bad_input(format!(
                            "--{flag} {text}: give WIDTHxHEIGHT@FPS, e.g. 848x480@30"
                        ))
                    })
                };
                let modes = Modes {
                    depth: mode("depth", &args.depth)?,
                    color: mode("color", &args.color)?,
                };
                realsense::write_calibrations(dir, modes).map_err(bad_input)?
            }
            None => Vec::new(),
        };
    }
    #[cfg(not(feature = "realsense"))]
    {
        notes
            .push("RealSense support is not built in (rebuild with `--features realsense`)".into());
        for camera in enumerate::realsense_on_usb() {
            notes.push(format!(
                "a RealSense camera is on the USB bus ({camera}) but this build cannot open it"
            ));
        }
        if args.calib_out.is_some() {
            return Err(bad_input("--calib-out reads RealSense factory calibration: rebuild with `--features realsense`"));
        }
        calibrations_written = Vec::new();
    }
    cameras.extend(enumerate::v4l2_nodes());
    if !cfg!(feature = "v4l2") && cameras.iter().any(|c| c.kind == "v4l2") {
        notes.push("V4L2 capture is not built in (rebuild with `--features v4l2`)".into());
    }
    let serial_ports = match serialport::available_ports() {
        Ok(ports) => ports
            .into_iter()
            .map(|p| SerialPortInfo {
                name: p.port_name,
                kind: match p.port_type {
                    serialport::SerialPortType::UsbPort(u) => format!(
                        "usb {:04x}:{:04x} {}",
                        u.vid,
                        u.pid,
                        u.product.unwrap_or_default()
                    )
                    .trim()
                    .to_string(),
                    serialport::SerialPortType::PciPort => "pci".into(),
                    serialport::SerialPortType::BluetoothPort => "bluetooth".into(),
                    serialport::SerialPortType::Unknown => "unknown".into(),
                },
            })
            .collect(),
        Err(e) => {
            notes.push(format!("serial ports: {e}"));
            Vec::new()
        }
    };
    let report = Report {
        cameras,
        synthetic: "synthetic (tabletop scene, 640x480 @ 30 fps; `synthetic[,fast][:WxH[@FPS]]`)"
            .into(),
        serial_ports,
        gpus: spatialbot_edge::telemetry::system::gpus(),
        backends: backend::probe(None),
        triton: match &args.triton {
            Some(url) => Some(triton_server(url, args.model.as_deref())?),
            None => None,
        },
        notes,
        calibrations_written,
    };
    if json {
        print_json(&report)?;
        return Ok(spatialbot_edge::exit::OK);
    }
    outln!("cameras:");
    if report.cameras.is_empty() {
        outln!("  none found");
    }
    for c in &report.cameras {
        let mut line = format!("  {}  {}", c.spec, c.name);
        for (label, v) in [
            ("serial", &c.serial),
            ("firmware", &c.firmware),
            ("usb", &c.usb_type),
        ] {
            if let Some(v) = v {
                line.push_str(&format!("  {label} {v}"));
            }
        }
        outln!("{line}");
        for m in &c.modes {
            outln!("    {m}");
        }
        for w in &c.warnings {
            outln!("    WARNING: {w}");
        }
    }
    outln!("  {}", report.synthetic);
    outln!("serial ports:");
    if report.serial_ports.is_empty() {
        outln!("  none found");
    }
    for p in &report.serial_ports {
        outln!("  {}  ({})", p.name, p.kind);
    }
    outln!("GPUs:");
    if report.gpus.is_empty() {
        outln!("  none found");
    }
    for g in &report.gpus {
        outln!("  {}  ({}, {})", g.name, g.kind, g.detail);
    }
    print_backends(&report.backends);
    if let Some(t) = &report.triton {
        outln!("triton server {}:", t["url"].as_str().unwrap_or(""));
        outln!("  live {}  ready {}", t["live"], t["ready"]);
        for m in t["models"].as_array().into_iter().flatten() {
            outln!("  {}", m.as_str().unwrap_or(""));
        }
        if let Some(p) = t["problem"].as_str().filter(|p| !p.is_empty()) {
            outln!("  problem: {p}");
        }
    }
    for path in &report.calibrations_written {
        outln!("wrote {path}");
    }
    for n in &report.notes {
        outln!("note: {n}");
    }
    Ok(spatialbot_edge::exit::OK)
}

/// The "inference backends" section: compiled in or not, and whether each one's libraries load.
fn print_backends(backends: &[BackendProbe]) {
    outln!("inference backends:");
    for b in backends {
        let state = match (b.compiled, b.usable) {
            (true, true) => "usable",
            (true, false) => "built in, cannot start",
            (false, _) => "not built in",
        };
        outln!("  {:<11} {state}: {}", b.backend, b.detail);
        if !b.fix.is_empty() {
            outln!("  {:<11} fix: {}", "", b.fix);
        }
    }
}

/// The server at `url` checked against the manifest of `model` (default: the shipped policy).
#[cfg(feature = "triton")]
fn triton_server(url: &str, model: Option<&std::path::Path>) -> anyhow::Result<serde_json::Value> {
    let dir = match model {
        Some(d) => d.to_path_buf(),
        None => {
            super::assemble::find_shipped(super::assemble::SHIPPED_POLICY).ok_or_else(|| {
                bad_input("--triton: no --model given and the shipped policy was not found")
            })?
        }
    };
    let manifest = spatialbot_edge::model::folder::read_manifest(&dir)
        .map_err(|e| bad_input(format!("--model: {e}")))?;
    let config = backend::TritonConfig::new(url);
    let check = backend::triton::probe_server(&config, &manifest);
    Ok(serde_json::to_value(check)?)
}

#[cfg(not(feature = "triton"))]
fn triton_server(
    _url: &str,
    _model: Option<&std::path::Path>,
) -> anyhow::Result<serde_json::Value> {
    Err(bad_input(format!(
        "--triton: {}",
        backend::triton::TRITON_UNAVAILABLE
    )))
}
