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
